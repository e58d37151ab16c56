"""Harness canary: fails on purpose.

A planted failure that a few mutations reach from any seed.  `rig fuzz --smoke` and the
test suite require it to crash: if it does not, the infrastructure is not reporting
failures, and nothing it says about the other harnesses can be trusted.
"""

import os
import sys

import atheris
import hypothesis  # noqa: F401  (imported before instrumentation: third-party code is not instrumented)

with atheris.instrument_imports(include=["rig"]):
    from rig.harnesses import harness_for

HARNESS = harness_for("canary", None)


def TestOneInput(data: bytes) -> None:
    HARNESS.one_input(data)


if __name__ == "__main__":
    # argv[0] must re-execute this script: -merge, -fork and -minimize_crash rely on it.
    # A PyInstaller bundle (OSS-Fuzz's compile_python_fuzzer) re-executes itself.
    argv = sys.argv if getattr(sys, "frozen", False) else \
        [sys.executable + " " + os.path.abspath(__file__)] + sys.argv[1:]
    atheris.Setup(argv,
                  TestOneInput)
    atheris.Fuzz()
