"""Harness statemachine: the hypothesis state machine over the World (rig.drive.stateful).

Covers: the World stepped op by op through rig.check.session.Session (the world under test,
its reference-model shadow and the oracle after every op) with the machine's rules:
conversions (block-aligned, rarely half a page off, sometimes past the end of RAM),
guest touches, device DMA, VFIO hot-plug and unplug, generic listeners, replays; an
explicit fault property (one or two faults, any site, nth 1..2, partial progress 0..4)
on conversions, registrations and unplugs, and an interleaved conversion (after the
1st..3rd listener notification) on conversions and registrations.  The input bytes are
hypothesis' choice sequence (fuzz_one_input), not a trace; a crash raises Finding with
the run as a trace in its message, and ``rig replay``-style text comes from
``StateMachineHarness.to_trace`` / ``explain``.

The design is RIG_FUZZ_DESIGN, else hardened (the rig's own target: a crash is a bug in
hardened or in the rig).  With qemu-10.1, rdm-rollback, uncoordinated or keep-shared it
crashes within a few thousand runs from an empty corpus (about 2,000 to 6,500 runs,
10-15 s, at -seed=1..6: libFuzzer's length limit starts at 4 bytes, and a step needs a
few); hardened ran 80,000 runs clean.

Does not cover: any world but the default one (one 64 KiB RAM block at GPA 0, type1,
4 KiB blocks, dma_entry_limit 65535, no memlock limit, no hugetlb), so the iommufd fault
sites are never reached and the x86 layout (a gap after a block), two adjacent blocks,
the dma_entry_limit / budget-check paths and RLIMIT_MEMLOCK are left to the convert
harnesses; device sections other than the whole RAM block; seeded or fail_nth fault
plans; more than two devices; more than 50 steps per input.

Masks: a run ends at its first violation, so a second bug behind it in the same input is
not seen until the first is fixed; on designs that stop the VM (qemu-10.1, rdm-rollback,
uncoordinated, keep-shared) any failed conversion ends the useful part of the run, so
faults that stop the VM without breaking an invariant hide whatever would have followed.
On qemu-10.1 nearly every early crash is one op long: a conversion past the end of RAM
(qemu-10.1 does not clip the range: attr-agree, or shared-unmapped when it runs
interleaved in a hot-plug), which masks its populate-failure (no rollback) and
replay-race bugs; signatures are per invariant ("violation shared-unmapped"), so once a
campaign knows them (RIG_FUZZ_KNOWN) those bugs are not reported separately either.  An
interleaved conversion that fails does not stop the VM (the executor only looks at the
top-level op's result), so runs go on where QEMU would have stopped.  With hardened
(the default) every known bug of the other designs is masked by design.
"""

import os

import atheris
import hypothesis  # noqa: F401  (imported before instrumentation: third-party code is not instrumented)
import hypothesis.stateful  # noqa: F401  (idem: rig.drive.stateful imports it on first use)

with atheris.instrument_imports(include=["rig"]):
    from rig.drive.harnesses import fuzz_argv, harness_for

HARNESS = harness_for("statemachine", os.environ.get("RIG_FUZZ_DESIGN") or None)


def TestOneInput(data: bytes) -> None:
    HARNESS.one_input(data)


if __name__ == "__main__":
    atheris.Setup(fuzz_argv(__file__), TestOneInput)
    atheris.Fuzz()
