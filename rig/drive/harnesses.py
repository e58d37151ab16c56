"""The fuzz harness registry (TigerBeetle's fuzzer registry): every harness's target,
decoder and seeds, shared by the atheris scripts in fuzz/, ``rig fuzz``, ``rig replay``
and the tests.

A harness turns bytes into a run and raises ``Finding`` when the run breaks an invariant
(atheris reports any uncaught exception as a crash).  World harnesses decode bytes with
the one decoder (rig.trace.decode), so every crash file prints as a trace.  A harness name may
carry a fixed design after a colon (``convert:qemu-10.1``); the default design of a world
harness is the rig's own target, ``hardened``, so that the main campaign finds nothing
unless something is wrong.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, replace

# Everything a harness runs is imported here, at module level: the fuzz scripts import
# this module under atheris.instrument_imports(), and a module first imported later (a
# lazy import inside one_input) would run uninstrumented, giving libFuzzer no feedback.
import rig.check.differential  # noqa: F401
import rig.check.session  # noqa: F401
import rig.check.model  # noqa: F401
import rig.check.oracle  # noqa: F401
from rig.trace.decode import FAULT_COUNT_MAX, DecodeOptions, Reader, decode
from rig.world.faults import longest_failing_run
from rig.world.ops import Op
from rig.trace.format import Trace, TraceError, parse, serialize
from rig.drive.base import (DEFAULT_DESIGN, KNOWN, Finding, Harness, report_violation,  # noqa: F401
                             violation_signature)
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
        from rig.check.session import Session

        trace = self.to_trace(data)
        session = Session(trace.config)
        for o in trace.ops:
            session.step(o)
            if session.stopped:
                break
        report_violation(self.name, session.outcome, trace, session.steps)

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

    def decode_ops(self, data: bytes):
        from rig.check.differential import CoreConfig, random_op

        r = Reader(data)
        cfg = CoreConfig(nblocks=(8, 24, 67, 130)[r.below(4)],
                         block_size=(0x1000, 0x2000)[r.below(2)],
                         rollback=("none", "listeners", "full", "sources")[r.below(4)],
                         iommu=("type1", "iommufd")[r.below(2)],
                         dma_entry_limit=(2, 6, 12, 64)[r.below(4)])
        ops = []
        while not r.exhausted and len(ops) < 64:
            candidate = random_op(r.below, cfg)
            if self.kinds is None or candidate[0] in self.kinds:
                ops.append(candidate)
        return cfg, ops

    def one_input(self, data: bytes) -> None:
        from rig.check.differential import run

        cfg, ops = self.decode_ops(data)
        run(ops, cfg, _core_impls())  # raises DifferentialMismatch (an AssertionError)

    def explain(self, data: bytes) -> list[str]:
        cfg, ops = self.decode_ops(data)
        return [f"# core config: {cfg}"] + [repr(o) for o in ops]


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
        from rig.check.session import run

        trace = self.parse(data)
        if trace is None or not trace.ops:
            return
        result = run(trace.config, trace.ops[:64])
        report_violation(self.name, result.outcome, trace, result.steps)

    def for_design(self, design: str | None) -> "TextHarness":
        design = design or self.design or DEFAULT_DESIGN
        return replace(self, name=f"{self.name.split(':')[0]}:{design}", design=design)

    def seeds(self) -> list[bytes]:
        root = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                            "corpora", "regressions")
        out = []
        if os.path.isdir(root):
            for name in sorted(os.listdir(root)):
                if name.endswith(".trace"):
                    with open(os.path.join(root, name), "rb") as f:
                        out.append(f.read())
        return out or super().seeds()

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
            raise Finding(self.name, "the canary sings (planted failure)")


@dataclass(frozen=True)
class NativeCanaryHarness(Harness):
    def one_input(self, data: bytes) -> None:
        if _planted().deep_branch(data):
            raise Finding(self.name, "reached the planted deep branch of the core")


def _planted():
    import importlib
    import os as _os

    name = "pure" if _os.environ.get("RIG_PUREPYTHON", "") not in ("", "0") else "cy"
    return importlib.import_module(f"rig.core.{name}.planted")


class _Registry(dict):
    """``HARNESSES["convert:qemu-10.1"]`` works for every design."""

    def __contains__(self, name) -> bool:
        base, _, design = str(name).partition(":")
        if not dict.__contains__(self, base):
            return False
        if design:
            from rig.world.designs import DESIGNS

            return design in DESIGNS and hasattr(dict.__getitem__(self, base), "for_design") \
                and not isinstance(dict.__getitem__(self, base), (CoreHarness, CanaryHarness))
        return True

    def __getitem__(self, name):
        if name not in self:
            raise KeyError(name)
        base, _, design = str(name).partition(":")
        harness = dict.__getitem__(self, base)
        return harness.for_design(design) if design else harness


HARNESSES = _Registry((h.name, h) for h in (
    CoreHarness("core_differential", "random op streams on RamBlockAttributes, listeners, "
                "the VFIO listener and both IOMMU backends: Cython vs twin vs model",
                "core_differential"),
    CoreHarness("iommu", "type1 and iommufd map/unmap/translate streams under small "
                "dma_entry_limit and memlock limits, vs the model", "iommu",
                kinds=IOMMU_KINDS),
    WorldHarness("convert", "a whole World with seeded faults from the input bytes; the "
                 "oracle after every op", "convert",
                 options=DecodeOptions(design=DEFAULT_DESIGN, faults="seeded")),
    WorldHarness("convert_explicit", "a whole World with explicit per-op fault properties "
                 "decoded from the input", "convert_explicit",
                 options=DecodeOptions(design=DEFAULT_DESIGN, faults="explicit")),
    TextHarness("trace_text", "trace text mutated at the op level, seeded from "
                "corpora/regressions/, run against the target design", "trace_text"),
    StateMachineHarness("statemachine", "the hypothesis state machine over the World "
            "(rig.drive.stateful) through fuzz_one_input", "statemachine"),
    CanaryHarness("canary", "fails on purpose: proves failures are reported", "canary",
                  expect_crash=True),
    NativeCanaryHarness("native_canary", "a planted deep branch in the Cython core: found "
                        "with the instrumented build, not with the plain one",
                        "native_canary", expect_crash=True),
))

#: The harnesses whose inputs decode to world traces (rig replay / rig minimize).
WORLD_HARNESSES = ("convert", "convert_explicit", "trace_text")
DEFAULT = "convert"


def fuzz_argv(script: str) -> list:
    """The argv a fuzz/ script hands atheris.Setup.  argv[0] must re-execute the script:
    -merge, -fork and -minimize_crash rely on it.  A PyInstaller bundle (OSS-Fuzz's
    compile_python_fuzzer) re-executes itself, so it keeps its own argv."""
    import sys

    if getattr(sys, "frozen", False):
        return sys.argv
    return [sys.executable + " " + os.path.abspath(script)] + sys.argv[1:]


def harness_for(name: str, design: str | None = None) -> Harness:
    harness = HARNESSES[name]
    if design and ":" not in name:
        harness = harness.for_design(design)
    return harness
