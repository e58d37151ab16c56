"""Harness native_canary: a planted deep branch in the Cython core (rig/core/cy/planted.pyx).

Covers nothing real.  It proves the native build works: with RIG_SANITIZE=fuzzer
(`rig fuzz` does it) libFuzzer reaches the branch in a few hundred runs by tracing the
core's C comparisons; with the plain gcc build it has no feedback and does not reach it
within the same budget.  tests/fuzz/test_native.py asserts both.
"""


import atheris
import hypothesis  # noqa: F401  (imported before instrumentation: third-party code is not instrumented)

with atheris.instrument_imports(include=["rig"]):
    from rig.drive.harnesses import fuzz_argv, harness_for

HARNESS = harness_for("native_canary", None)


def TestOneInput(data: bytes) -> None:
    HARNESS.one_input(data)


if __name__ == "__main__":
    atheris.Setup(fuzz_argv(__file__), TestOneInput)
    atheris.Fuzz()
