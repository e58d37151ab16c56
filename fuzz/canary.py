"""Harness canary: fails on purpose.

A planted failure that a few mutations reach from any seed.  `rig fuzz --smoke` and the
test suite require it to crash: if it does not, the infrastructure is not reporting
failures, and nothing it says about the other harnesses can be trusted.
"""


import atheris
import hypothesis  # noqa: F401  (imported before instrumentation: third-party code is not instrumented)

with atheris.instrument_imports(include=["rig"]):
    from rig.drive.harnesses import fuzz_argv, harness_for

HARNESS = harness_for("canary", None)


def TestOneInput(data: bytes) -> None:
    HARNESS.one_input(data)


if __name__ == "__main__":
    atheris.Setup(fuzz_argv(__file__), TestOneInput)
    atheris.Fuzz()
