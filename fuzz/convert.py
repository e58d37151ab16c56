"""Harness convert: a whole World end to end, with seeded faults.

Covers: every op of the vocabulary (hot-plug, conversions that may span two RAM blocks or
touch a gap, guest touches, device DMA, replays, generic listeners, interleavings; a
swarm bit of the input turns junk conversion ranges off, so QEMU's designs, which stop
the VM on the first one, still get deep runs), every
fault site in seeded (BUGGIFY) mode from the input bytes, every invariant after each
op, and the reference-model shadow world (the differential invariant).

The design is RIG_FUZZ_DESIGN, else hardened (the rig's own target: a crash is a bug in
hardened or in the rig).  With a known-bad design (uncoordinated, keep-shared, qemu-10.1,
rdm-rollback) it finds that design's defining bugs within seconds.

Does not cover: RAM blocks above 256 KiB, more than three devices, or more than 40 ops
per input (the decoder's bounds).

Masks: a design's first violation ends the run, so a second bug behind it in the same
input is not seen until the first is fixed.
"""

import os

import atheris
import hypothesis  # noqa: F401  (imported before instrumentation: third-party code is not instrumented)

with atheris.instrument_imports(include=["rig"]):
    from rig.drive.harnesses import fuzz_argv, harness_for

HARNESS = harness_for("convert", os.environ.get("RIG_FUZZ_DESIGN") or None)


def TestOneInput(data: bytes) -> None:
    HARNESS.one_input(data)


if __name__ == "__main__":
    atheris.Setup(fuzz_argv(__file__), TestOneInput)
    atheris.Fuzz()
