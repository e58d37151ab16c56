"""The fuzz harness registry (TigerBeetle's fuzzer registry): every harness's target,
decoder and seeds, declared once in ``HARNESSES`` and shared by the atheris target
(rig.drive.target, which the generated fuzz/<name>.py scripts call), ``rig fuzz``,
``rig replay``, ``rig list`` and the tests.  Adding a harness is one entry here (plus
its class, if no existing one fits) and ``python ci/make_fuzz_seeds.py --write-targets
fuzz/``.

A harness turns bytes into a run and raises ``Finding`` when the run breaks an invariant
(atheris reports any uncaught exception as a crash).  World harnesses decode bytes with
the one decoder (rig.trace.decode), so every crash file prints as a trace.  A harness name may
carry a fixed design after a colon (``convert:qemu-10.1``); the default design of a world
harness is the rig's own target, ``hardened``, so that the main campaign finds nothing
unless something is wrong.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

# Everything a harness runs is imported here, at module level: rig.drive.target imports
# this module under atheris.instrument_imports(), and a module first imported later (a
# lazy import inside one_input) would run uninstrumented, giving libFuzzer no feedback.
# (The run loop and the reference model are imported here too, and left untraced on
# purpose: rig.drive.target.UNTRACED.)
import rig.check.differential  # noqa: F401
import rig.check.model  # noqa: F401
import rig.check.oracle  # noqa: F401
from rig.check.session import run
from rig.trace.decode import FAULT_COUNT_MAX, DecodeOptions, Reader, decode
from rig.world.faults import longest_failing_run
from rig.world.ops import Op
from rig.trace.format import Trace, TraceError, parse, serialize
from rig.drive.base import (DEFAULT_DESIGN, KNOWN, Finding, Harness, report_violation,  # noqa: F401
                             skipping_known, violation_signature)
from rig.drive.stateful import StateMachineHarness

# -- world harnesses --------------------------------------------------------------------

@dataclass(frozen=True)
class WorldHarness(Harness):
    options: DecodeOptions = DecodeOptions()

    def to_trace(self, data: bytes) -> Trace:
        config, ops = decode(data, self.options)
        ops = [_within_retry_bound(o) for o in ops]
        return Trace(config, ops, comments=[f"decoded from {len(data)} raw bytes by harness "
                                            f"{self.name}"])

    def one_input(self, data: bytes) -> None:
        with skipping_known():  # a bug of the rig the campaign already has
            trace = self.to_trace(data)
            result = run(trace.config, trace.ops)
            report_violation(self.name, result.outcome, trace, result.steps)

    def for_design(self, design: str | None) -> "WorldHarness":
        design = design or self.options.design or DEFAULT_DESIGN
        base = self.name.split(":")[0]
        return replace(self, name=f"{base}:{design}", options=replace(self.options, design=design))


# -- core harnesses: the Cython core vs the twin vs the model -----------------------------

CORE_KINDS = None  # every kind of core op
IOMMU_KINDS = ("map", "unmap", "translate")


@dataclass(frozen=True)
class CoreHarness(Harness):
    kinds: tuple | None = None
    #: IOVA windows (pages) for the standalone containers' ops, one drawn per input after
    #: the config (rig.check.differential.random_op); None: the default 64 pages.
    iova_windows: tuple | None = None

    def decode_ops(self, data: bytes):
        from rig.check.differential import CoreConfig, random_op

        r = Reader(data)
        cfg = CoreConfig(nblocks=(8, 24, 67, 130)[r.below(4)],
                         block_size=(0x1000, 0x2000)[r.below(2)],
                         rollback=("none", "listeners", "full", "sources")[r.below(4)],
                         iommu=("type1", "iommufd")[r.below(2)],
                         dma_entry_limit=(2, 6, 12, 64)[r.below(4)])
        pages = self.iova_windows[r.below(len(self.iova_windows))] if self.iova_windows else 64
        ops = []
        while not r.exhausted and len(ops) < 64:
            candidate = random_op(r.below, cfg, pages)
            if self.kinds is None or candidate[0] in self.kinds:
                ops.append(candidate)
        return cfg, ops

    def one_input(self, data: bytes) -> None:
        from rig.check.differential import run

        cfg, ops = self.decode_ops(data)
        # Raises DifferentialMismatch (an AssertionError) on the first disagreement; its
        # message shows the op as a core trace writes it, its signature the kind of
        # disagreement and the op kind: one the campaign already has is skipped.
        with skipping_known():
            run(ops, cfg, _core_impls())

    def to_core_trace(self, data: bytes):
        """The input as a core trace (rig.trace.core), for rig replay and rig minimize."""
        from rig.trace.core import CoreTrace

        cfg, ops = self.decode_ops(data)
        return CoreTrace(cfg, ops, comments=[f"decoded from {len(data)} raw bytes by harness "
                                             f"{self.name}"])

    def explain(self, data: bytes) -> list[str]:
        from rig.trace.core import serialize as serialize_core

        return serialize_core(self.to_core_trace(data)).splitlines()


def _core_impls() -> tuple:
    try:
        from rig.core import load_backend

        load_backend("cy")
        return ("cy", "pure", "model")
    except ImportError:
        return ("pure", "model")


# -- trace text with an op-level mutator --------------------------------------------------

@dataclass(frozen=True)
class TextHarness(Harness):
    design: str | None = None

    def parse(self, data: bytes) -> Trace | None:
        try:
            trace = parse(data.decode("utf-8", "replace"), "<input>", strict=False)
        except TraceError:
            return None
        design = self.design or DEFAULT_DESIGN
        try:
            trace.config = trace.config.with_(design=design).validate()
        except ValueError:
            return None
        trace.ops = [_within_retry_bound(o) for o in trace.ops]
        return trace

    def to_trace(self, data: bytes) -> Trace | None:
        return self.parse(data)

    def one_input(self, data: bytes) -> None:
        with skipping_known():
            trace = self.parse(data)
            if trace is None or not trace.ops:
                return
            result = run(trace.config, trace.ops[:64])
            report_violation(self.name, result.outcome, trace, result.steps)

    def for_design(self, design: str | None) -> "TextHarness":
        design = design or self.design or DEFAULT_DESIGN
        return replace(self, name=f"{self.name.split(':')[0]}:{design}", design=design)

    def seeds(self) -> list[bytes]:
        from rig.trace.corpus import regressions

        return [path.read_bytes() for path in regressions()] or super().seeds()

    def mutate(self, data: bytes, max_size: int, seed: int) -> bytes:
        """Op-level mutation: insert, delete, swap or duplicate ops, change a size or an
        offset, toggle a fault property or an interleaving."""
        from rig.trace.format import mutate_trace

        trace = self.parse(data)
        if trace is None:
            import atheris

            return atheris.Mutate(data, max_size)
        out = serialize(mutate_trace(trace, random.Random(seed))).encode()
        return out[:max_size]


def _within_retry_bound(o: Op) -> Op:
    """The op with no site failing more than FAULT_COUNT_MAX hits in a row (every world
    harness runs its ops through this): a fault that outlasts hardened's retry loop is its
    documented limit (corpora/regressions/ pins one), not a finding for every campaign to
    report.  Counts are clamped; a spec that would extend another's run past the bound is
    dropped."""
    specs, nested = o.prop("fault", ()), o.prop("interleave")
    kept: list = []
    for spec in specs:
        spec = replace(spec, count=min(spec.count, FAULT_COUNT_MAX))
        if longest_failing_run(kept + [spec], spec.site) <= FAULT_COUNT_MAX:
            kept.append(spec)
    if tuple(kept) != tuple(specs):
        o = o.with_props(fault=tuple(kept) or None)
    if nested is not None:
        o = o.with_props(interleave=(nested[0], _within_retry_bound(nested[1])))
    return o


# -- the canary: fails on purpose ------------------------------------------------------------

@dataclass(frozen=True)
class CanaryHarness(Harness):
    def one_input(self, data: bytes) -> None:
        # Reachable in a handful of mutations from any seed: the infrastructure must see
        # and report this failure, or nothing it says about the real harnesses counts.
        if len(data) >= 2 and data[0] == 0x42 and data[1] == 0x21:
            with skipping_known():  # once it has sung, a campaign's restart goes on
                raise Finding(self.name, "the canary sings (planted failure)")


@dataclass(frozen=True)
class NativeCanaryHarness(Harness):
    def one_input(self, data: bytes) -> None:
        if _planted().deep_branch(data):
            with skipping_known():
                raise Finding(self.name, "reached the planted deep branch of the core")


def _planted():
    """The planted module of the core backend in use (rig.core.BACKEND)."""
    import importlib

    import rig.core

    return importlib.import_module(f"rig.core.{rig.core.BACKEND}.planted")


class _Registry(dict):
    """name -> Harness, in the order campaigns run them.  ``HARNESSES["convert:qemu-10.1"]``
    is a world harness with a fixed design, for every design."""

    def __init__(self, harnesses):
        super().__init__()
        for h in harnesses:
            if dict.__contains__(self, h.name) or ":" in h.name:
                raise ValueError(f"harness name {h.name!r}: taken, or carries a design")
            dict.__setitem__(self, h.name, h)

    def __contains__(self, name) -> bool:
        base, _, design = str(name).partition(":")
        if not dict.__contains__(self, base):
            return False
        if design:
            from rig.world.designs import ensure

            return ensure(design) and dict.__getitem__(self, base).kind == "world"
        return True

    def __getitem__(self, name):
        if name not in self:
            raise KeyError(name)
        base, _, design = str(name).partition(":")
        harness = dict.__getitem__(self, base)
        return harness.for_design(design) if design else harness


#: Every fuzz harness, declared once.  fuzz/<name>.py is generated from its entry
#: (``python ci/make_fuzz_seeds.py --write-targets fuzz/``); the campaign's lists, the
#: shipped fuzzers and ``rig list`` read it.
HARNESSES = _Registry((
    CoreHarness(
        "core_differential", kind="core", in_default=True, doc="""
        random op streams on RamBlockAttributes, listeners, the VFIO listener and both
        IOMMU backends: Cython vs twin vs model, in lockstep.

        Covers: RamBlockAttributes (state_change with all four rollback policies,
        mixtures, register/unregister with replay, replay_populated/_discarded,
        is_populated), recording listeners that fail on demand, the VFIO listener on a
        type1 container or an iommufd IOAS, standalone containers (type1 with a memlock
        limit and an IOVA hole, iommufd), and the word bitmap.  The Cython core, its
        pure-Python twin and the reference model must agree on return codes, bitmaps,
        listener call logs, listener order and mappings after every op.

        Does not cover: the World (host memory, KVM, designs): see convert.  Sizes stay
        small (at most 130 blocks), so scale bugs (>2^32 bits) are left to the unit tests.

        Masks: nothing known.  With the native build (RIG_SANITIZE=fuzzer) libFuzzer sees
        the Cython core's C edges; without it the core is fuzzed blind (only Python is
        traced).
        """),
    CoreHarness(
        "iommu", kind="core", in_default=True, kinds=IOMMU_KINDS, iova_windows=(8, 16, 64),
        doc="""
        type1 and iommufd map/unmap/translate streams under small dma_entry_limit and
        memlock limits, vs the model.

        Covers: vfio_dma_do_map / vfio_dma_do_unmap check order (EINVAL, EEXIST, ENOSPC,
        IOVA ranges, RLIMIT_MEMLOCK), v2 no-bisect unmap, empty unmaps, iommufd's
        partial unmap (-ENOENT after earlier areas were removed), identity pinning,
        dma_avail and locked_vm accounting, under small dma_entry_limit (2..64) and
        memlock limits; each input packs its IOVAs into 8, 16 or 64 pages, so that unmaps
        meet several areas at once.

        Does not cover: pinning through host memory, listeners, faults (see convert).

        Masks: nothing known.
        """),
    WorldHarness(
        "convert", kind="world", in_default=True,
        options=DecodeOptions(design=DEFAULT_DESIGN, faults="seeded"), doc="""
        a whole World with seeded faults from the input bytes; the oracle after every op.

        Covers: every op of the vocabulary (hot-plug, conversions that may span two RAM
        blocks or touch a gap, guest touches, device DMA, replays, generic listeners,
        interleavings; a swarm bit of the input turns junk conversion ranges off, so
        QEMU's designs, which stop the VM on the first one, still get deep runs), every
        fault site in seeded (BUGGIFY) mode from the input bytes, every invariant after
        each op, and the reference-model shadow world (the differential invariant).

        The design is RIG_FUZZ_DESIGN, else hardened (the rig's own target: a crash is a
        bug in hardened or in the rig).  With a known-bad design (uncoordinated,
        keep-shared, qemu-10.1, rdm-rollback) it finds that design's defining bugs within
        seconds.

        Does not cover: RAM blocks above 256 KiB, more than three devices, or more than
        40 ops per input (the decoder's bounds).

        Masks: a design's first violation ends the run, so a second bug behind it in the
        same input is not seen until the first is fixed.
        """),
    WorldHarness(
        "convert_explicit", kind="world", in_default=True,
        options=DecodeOptions(design=DEFAULT_DESIGN, faults="explicit"), doc="""
        a whole World with explicit per-op fault properties decoded from the input.

        Covers: as convert, but faults are decoded into per-op properties
        (site=ERRNO@nth/partial) so the fuzzer controls exactly which hit of which site
        fails inside which op: the rollback paths of every design, one fault at a time or
        several in one op.

        Does not cover: seeded (run-wide) fault plans: see convert.

        Masks: as convert.
        """),
    TextHarness(
        "trace_text", kind="world", in_default=True, doc="""
        trace text mutated at the op level, seeded from corpora/regressions/, run against
        the target design.

        Covers: the trace parser in lenient mode, and op sequences derived from the known
        findings in corpora/regressions/ (insert, delete, swap, duplicate ops; change a
        size or an offset; toggle a fault property or an interleaving), replayed against
        the target design (RIG_FUZZ_DESIGN, else hardened) whatever the header says.

        Does not cover: strict-mode parse errors (the parser's own tests do).

        Masks: inputs that do not parse are dropped, so byte-level mutations mostly go to
        waste; the custom mutator (``mutate``) keeps inputs parseable.
        """),
    StateMachineHarness(
        "statemachine", kind="world", in_default=True, doc="""
        the hypothesis state machine over the World (rig.drive.stateful) through
        fuzz_one_input.

        Covers: the World stepped op by op through rig.check.session.Session (the world
        under test, its reference-model shadow and the oracle after every op) with the
        machine's rules: conversions (block-aligned, rarely half a page off, sometimes
        past the end of RAM), guest touches, device DMA, VFIO hot-plug and unplug,
        generic listeners, replays; an explicit fault property (one or two faults, any
        site, nth 1..2, partial progress 0..4) on conversions, registrations and unplugs,
        and an interleaved conversion (after the 1st..3rd listener notification) on
        conversions and registrations.  The input bytes are hypothesis' choice sequence
        (fuzz_one_input), not a trace; a crash raises Finding with the run as a trace in
        its message, and ``StateMachineHarness.to_trace`` turns an input into the trace
        of the run it drives (``rig replay --harness statemachine`` replays it).

        The design is RIG_FUZZ_DESIGN, else hardened (the rig's own target: a crash is a
        bug in hardened or in the rig).  With qemu-10.1, rdm-rollback, uncoordinated or
        keep-shared it crashes within a few thousand runs from an empty corpus (about
        2,000 to 6,500 runs, 10-15 s, at -seed=1..6: libFuzzer's length limit starts at 4
        bytes, and a step needs a few); hardened ran 80,000 runs clean.

        Does not cover: any world but the default one (one 64 KiB RAM block at GPA 0,
        type1, 4 KiB blocks, dma_entry_limit 65535, no memlock limit, no hugetlb), so the
        iommufd fault sites are never reached and the x86 layout (a gap after a block),
        two adjacent blocks, the dma_entry_limit / budget-check paths and RLIMIT_MEMLOCK
        are left to the convert harnesses; device sections other than the whole RAM
        block; seeded or fail_nth fault plans; more than two devices; more than 50 steps
        per input.

        Masks: a run ends at its first violation, so a second bug behind it in the same
        input is not seen until the first is fixed; on designs that stop the VM
        (qemu-10.1, rdm-rollback, uncoordinated, keep-shared) any failed conversion ends
        the useful part of the run, so faults that stop the VM without breaking an
        invariant hide whatever would have followed.  On qemu-10.1 nearly every early
        crash is one op long: a conversion past the end of RAM (qemu-10.1 does not clip
        the range: attr-agree, or shared-unmapped when it runs interleaved in a
        hot-plug), which masks its populate-failure (no rollback) and replay-race bugs;
        signatures are per invariant ("violation shared-unmapped"), so once a campaign
        knows them (RIG_FUZZ_KNOWN) those bugs are not reported separately either.  An
        interleaved conversion that fails does not stop the VM (the session only looks at
        the top-level op's result), so runs go on where QEMU would have stopped.  With
        hardened (the default) every known bug of the other designs is masked by design.
        """),
    CanaryHarness(
        "canary", kind="canary", in_default=False, doc="""
        fails on purpose: proves failures are reported.

        A planted failure that a few mutations reach from any seed.  `rig fuzz --smoke`
        and the test suite require it to crash: if it does not, the infrastructure is not
        reporting failures, and nothing it says about the other harnesses can be trusted.
        """),
    NativeCanaryHarness(
        "native_canary", kind="canary", in_default=False, doc="""
        a planted deep branch in the Cython core (rig/core/cy/planted.pyx): found with
        the instrumented build, not with the plain one.

        Covers nothing real.  It proves the native build works: with RIG_SANITIZE=fuzzer
        (`rig fuzz` does it) libFuzzer reaches the branch in a few hundred runs by tracing
        the core's C comparisons; with the plain gcc build it has no feedback and does not
        reach it within the same budget.  tests/fuzz/test_native.py asserts both.
        """),
))

#: The harnesses whose inputs are world traces (rig replay / rig minimize decode them).
WORLD_HARNESSES = tuple(name for name, h in HARNESSES.items() if h.kind == "world")
#: The harnesses of the default `rig fuzz` campaign, in registry order.
DEFAULT_CAMPAIGN = tuple(name for name, h in HARNESSES.items() if h.in_default)
#: The harness `rig replay` decodes a raw file with when none is named.
DEFAULT = "convert"


def harness_for(name: str, design: str | None = None) -> Harness:
    harness = HARNESSES[name]
    if design and ":" not in name:
        harness = harness.for_design(design)
    return harness
