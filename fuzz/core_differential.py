"""Harness core_differential: the core, three ways, in lockstep.

Covers: RamBlockAttributes (state_change with all three rollback policies, mixtures,
register/unregister with replay, replay_populated/_discarded, is_populated), recording
listeners that fail on demand, the VFIO listener on a type1 container or an iommufd
IOAS, standalone containers (type1 with a memlock limit and an IOVA hole, iommufd), and
the word bitmap.  The Cython core, its pure-Python twin and the reference model must agree
on return codes, bitmaps, listener call logs, listener order and mappings after every op.

Does not cover: the World (host memory, KVM, designs): see convert.  Sizes stay small (at
most 130 blocks), so scale bugs (>2^32 bits) are left to the unit tests.

Masks: nothing known.  With the native build (RIG_SANITIZE=fuzzer) libFuzzer sees the
Cython core's C edges; without it the core is fuzzed blind (only Python is traced).
"""


import atheris
import hypothesis  # noqa: F401  (imported before instrumentation: third-party code is not instrumented)

with atheris.instrument_imports(include=["rig"]):
    from rig.drive.harnesses import fuzz_argv, harness_for

HARNESS = harness_for("core_differential", None)


def TestOneInput(data: bytes) -> None:
    HARNESS.one_input(data)


if __name__ == "__main__":
    atheris.Setup(fuzz_argv(__file__), TestOneInput)
    atheris.Fuzz()
