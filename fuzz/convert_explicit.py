"""Harness convert_explicit: a whole World with explicit per-op fault properties.

Covers: as convert, but faults are decoded into per-op properties (site=ERRNO@nth/partial)
so the fuzzer controls exactly which hit of which site fails inside which op: the
rollback paths of every design, one fault at a time or several in one op.

Does not cover: seeded (run-wide) fault plans: see convert.

Masks: as convert.
"""

import os

import atheris
import hypothesis  # noqa: F401  (imported before instrumentation: third-party code is not instrumented)

with atheris.instrument_imports(include=["rig"]):
    from rig.drive.harnesses import fuzz_argv, harness_for

HARNESS = harness_for("convert_explicit", os.environ.get("RIG_FUZZ_DESIGN") or None)


def TestOneInput(data: bytes) -> None:
    HARNESS.one_input(data)


if __name__ == "__main__":
    atheris.Setup(fuzz_argv(__file__), TestOneInput)
    atheris.Fuzz()
