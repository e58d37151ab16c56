"""The hypothesis state machine over the World: rules are ops, the oracle (rig.check.oracle)
is the invariant.

``WorldMachine`` drives one ``rig.check.session.Session`` (the world under test plus its
reference-model shadow, the oracle after every op) on the default world: one 64 KiB RAM
block, type1, 4 KiB blocks, explicit faults.  Each rule builds one op of the vocabulary
(rig.world.ops), with small, mostly block-aligned values, sometimes an explicit ``fault``
property or an ``interleave`` property, and steps the session with it; every op applied
is kept in ``self.ops``.  The ops of the registry that have no rule of their own (named
as the op) share one more, ``registered_op``, which draws an op of any of their kinds
from its spec's arg kinds and hints; it exists only while there are such ops, so the
rules, and what the harness' bytes mean to them, are the hand-written ones until then.
When the oracle reports a violation the machine raises
``rig.drive.harnesses.Finding`` whose message carries the run as a trace (rig.trace.format), so a
failure prints as something ``rig replay`` runs.  Once the VM has stopped, every rule
but ``vm_stopped_idle`` is disabled and the run idles to its end.

``machine_for(design, backend)`` is the machine for another design; ``StateMachineHarness``
is the ``statemachine`` fuzz harness (fuzz/statemachine.py), which feeds raw bytes to
the machine through hypothesis' ``fuzz_one_input``.

hypothesis is a test dependency, not a runtime one: it is imported, and the machine
class built, on first use (``WorldMachine`` is a lazy module attribute), so that the
harness registry, which imports this module, stays importable without it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

# Imported here, not on first use, so that they are loaded under a fuzz script's
# instrument_imports() block (which traces the world and the oracle, and leaves the run
# loop and the reference model untraced: rig.drive.target.UNTRACED), never half-way
# through a run.
import rig.check.session  # noqa: F401
import rig.drive.base
import rig.check.model  # noqa: F401
import rig.check.oracle  # noqa: F401
from rig.world.faults import SITES, FaultSpec
from rig.drive.base import DEFAULT_DESIGN, Finding, Harness
from rig.world.ops import OPS, OpSpec, nested_op, op
from rig.trace.format import MAGIC, Expect, Trace, serialize
from rig.world.config import WorldConfig

BS = 0x1000             # the block size (RamBlockAttributes granularity) of the world
RAM_SIZE = 0x10000      # one RAM block at GPA 0: 16 blocks
NBLOCKS = RAM_SIZE // BS
DEVICES = 2             # device numbers 0..1 (VFIO devices and generic listeners)
STEPS = 50              # stateful_step_count of the fuzz target
HARNESS_NAME = "statemachine"


def world_config(design: str) -> WorldConfig:
    """The machine's world: the default world of ``design`` with explicit faults."""
    return WorldConfig(design=design, faults="explicit").validate()


# -- recording: the ops of the runs made while a recorder is installed --------------------

_recorders: list[list] = []


def _record(machine) -> None:
    for recorder in _recorders:
        recorder.append(machine)


# -- the machine (built on first use: it needs hypothesis) --------------------------------

_machine_classes: dict[tuple[str, str], type] = {}


def _build_world_machine() -> type:
    from hypothesis import strategies as st
    from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

    from rig.check.session import Session

    def sometimes(strategy, one_in: int):
        """``strategy`` about once in ``one_in`` draws, else None (shrinks to None)."""
        return st.integers(0, one_in - 1).flatmap(
            lambda i: strategy if i == 0 else st.none())

    def fault_spec(site_name: str):
        site = SITES[site_name]
        return st.builds(
            FaultSpec,
            st.just(site_name),
            st.sampled_from([-e for e in site.errnos]),
            st.integers(1, 2),
            st.integers(0, 4) if site.partial else st.none())

    #: An explicit ``fault`` property: one or two faults, any site (iommufd sites are
    #: never reached on the machine's type1 world).  One strategy per site, built once:
    #: a strategy built inside ``flatmap`` is a new object at every draw, and hypothesis
    #: validates each new one (a fifth of the harness' time went there); the draws, and
    #: so what an input's bytes mean, are the same.
    site_specs = {name: fault_spec(name) for name in sorted(SITES)}
    faults = sometimes(
        st.lists(st.sampled_from(sorted(SITES)).flatmap(site_specs.__getitem__), min_size=1,
                 max_size=2).map(tuple), 3)
    blocks = st.integers(0, NBLOCKS - 1)
    lengths = st.integers(1, 4)
    # Mostly block-aligned; rarely half a page off (every design must refuse it).
    skew = st.sampled_from((0,) * 15 + (0x800,))
    devices = st.integers(0, DEVICES - 1)
    conversion = st.builds(lambda b, n, private: op("kvm_convert_memory", b * BS, n * BS,
                                                    private),
                           blocks, lengths, st.booleans())
    #: An ``interleave`` property: a conversion after the k-th listener notification.
    interleaves = sometimes(st.tuples(st.integers(1, 3), conversion), 6)

    running = precondition(lambda self: not self.session.stopped)

    handwritten: set[str] = set()

    def op_rule(fn):
        """Marks a hand-written rule: the one of the op it is named after."""
        if fn.__name__ not in OPS:
            raise ValueError(f"rule {fn.__name__}: no such op in the registry")
        handwritten.add(fn.__name__)
        return fn

    def drawn_args(spec: OpSpec):
        """The arguments of ``spec``, from its arg kinds, as the hand-written rules draw
        them: a device number, a range of 1 to 4 blocks (for a ``whole_blocks`` op,
        shrinking to the whole RAM block, as QEMU's sections are), an address at a block
        (rarely half a page off), a size of 1 to 4 blocks, an enumeration."""
        parts = []
        for group in spec.groups:
            kind = spec.args[group[0]].kind
            if len(group) == 2:
                part = st.builds(lambda b, n, k: (b * BS + k, n * BS), blocks, lengths, skew)
                if spec.whole_blocks:
                    part = st.one_of(st.just((0x0, RAM_SIZE)), part)
            elif kind == "dev":
                part = st.tuples(devices)
            elif kind == "addr":
                part = st.builds(lambda b, k: (b * BS + k,), blocks, skew)
            elif kind == "size":
                part = st.builds(lambda n: (n * BS,), lengths)
            else:
                part = st.tuples(st.booleans())
            parts.append(part)
        return st.tuples(*parts).map(lambda values: sum(values, ()))

    def drawn_op(spec: OpSpec):
        """An op of kind ``spec``, with a ``fault`` property sometimes, and for an op
        that may carry one, an ``interleave`` property sometimes (the nested op drawn
        from its spec the same way)."""
        props = {"fault": faults}
        if spec.interleave:
            nested = nested_op()
            props["interleave"] = sometimes(st.tuples(
                st.integers(1, 3), drawn_args(nested).map(lambda a: op(nested.name, *a))), 6)
        return st.builds(lambda args, **p: op(spec.name, *args, **p), drawn_args(spec),
                         **props)

    class WorldMachine(RuleBasedStateMachine):
        """One World (and its model shadow) under the oracle; see the module docstring."""

        design = DEFAULT_DESIGN
        backend = "cy"

        def __init__(self):
            super().__init__()
            self.config = world_config(self.design)
            self.session = Session(self.config, self.backend)
            self.ops: list = []
            _record(self)

        # -- helpers ----------------------------------------------------------------
        def apply(self, o) -> None:
            self.ops.append(o)
            self.session.step(o)

        def trace(self, comment: str | None = None) -> Trace:
            """The ops applied so far as a trace, expecting the session's outcome."""
            outcome = self.session.outcome
            if outcome.kind == "violation":
                expect = Expect("violation", None, outcome.invariant)
            elif outcome.kind == "vm_stopped":
                expect = Expect("vm_stopped", outcome.errno)
            else:
                expect = Expect("ok")
            comments = [comment or f"hypothesis state machine {type(self).__name__} "
                        f"(rig.drive.stateful), backend {self.backend}"]
            return Trace(self.config, list(self.ops), expect, comments)

        # -- rules --------------------------------------------------------------------
        @op_rule
        @running
        @rule(block=blocks, nblocks=lengths, private=st.booleans(), skew=skew,
              fault=faults, interleave=interleaves)
        def kvm_convert_memory(self, block, nblocks, private, skew, fault, interleave):
            self.apply(op("kvm_convert_memory", block * BS + skew, nblocks * BS, private,
                          fault=fault, interleave=interleave))

        @op_rule
        @running
        @rule(page=blocks)
        def guest_touch(self, page):
            self.apply(op("guest_touch", page * BS))

        @op_rule
        @running
        @rule(dev=devices, page=blocks, npages=lengths, write=st.booleans())
        def device_dma(self, dev, page, npages, write):
            self.apply(op("device_dma", dev, page * BS, npages * BS, write))

        @op_rule
        @running
        @rule(dev=devices, fault=faults, interleave=interleaves)
        def vfio_register(self, dev, fault, interleave):
            self.apply(op("vfio_register", dev, 0x0, RAM_SIZE, fault=fault,
                          interleave=interleave))

        @op_rule
        @running
        @rule(dev=devices, fault=faults)
        def vfio_unregister(self, dev, fault):
            self.apply(op("vfio_unregister", dev, fault=fault))

        @op_rule
        @running
        @rule(dev=devices, fault=faults, interleave=interleaves)
        def listener_register(self, dev, fault, interleave):
            self.apply(op("listener_register", dev, 0x0, RAM_SIZE, fault=fault,
                          interleave=interleave))

        @op_rule
        @running
        @rule(dev=devices)
        def listener_unregister(self, dev):
            self.apply(op("listener_unregister", dev))

        @op_rule
        @running
        @rule(block=blocks, nblocks=lengths, populated=st.booleans())
        def replay(self, block, nblocks, populated):
            self.apply(op("replay", block * BS, nblocks * BS, populated))

        @precondition(lambda self: self.session.stopped)
        @rule()
        def vm_stopped_idle(self):
            """The VM has stopped: nothing runs any more (keeps a rule enabled)."""

        def teardown(self):
            """The run's last op: the incremental oracle is compared with the full one
            (rig.check.session.Session.verify; a run that stopped was compared then)."""
            self.session.verify()

        # -- the oracle -------------------------------------------------------------
        @invariant()
        def no_violation(self):
            outcome = self.session.outcome
            if outcome.kind != "violation":
                return
            # As rig.drive.harnesses.report_violation: one signature per invariant, and none
            # the running campaign already has (the session has stopped: the run idles).
            signature = rig.drive.base.violation_signature(outcome, self.session.steps)
            if rig.drive.base.is_known(signature):
                return
            trace = self.trace()
            finding = Finding(HARNESS_NAME, f"{signature} at op {outcome.op_index} "
                              f"({self.design}): {outcome.detail}", trace, signature)
            # The message carries the run as a trace: a failure prints as a replayable
            # file (rig.trace.format.parse reads it from the first line "# gmem-rig trace v1").
            finding.args = (f"{finding.args[0]}\n{serialize(trace)}",)
            raise finding

    # One rule for the ops without a rule of their own (the module docstring).
    generic = tuple(name for name in OPS if name not in handwritten)
    if generic:
        drawn_ops = {name: drawn_op(OPS[name]) for name in generic}  # built once (faults)

        @running
        @rule(o=st.sampled_from(generic).flatmap(drawn_ops.__getitem__))
        def registered_op(self, o):
            """An op of a registered kind that has no rule of its own, drawn from its
            spec (rig.world.ops.OpSpec)."""
            self.apply(o)

        WorldMachine.registered_op = registered_op

    WorldMachine.__qualname__ = "WorldMachine"
    return WorldMachine


def machine_for(design: str, backend: str = "cy") -> type:
    """The WorldMachine for ``design`` on core ``backend`` (cached: one class each)."""
    key = (design, backend)
    cls = _machine_classes.get(key)
    if cls is None:
        world_config(design)  # refuse an unknown design here, not in the first example
        base = _machine_classes.get((DEFAULT_DESIGN, "cy"))
        if base is None:
            base = _machine_classes[(DEFAULT_DESIGN, "cy")] = _build_world_machine()
        if key == (DEFAULT_DESIGN, "cy"):
            return base
        slug = re.sub(r"\W", "_", design) + ("" if backend == "cy" else f"_{backend}")
        cls = type(f"WorldMachine_{slug}", (base,),
                   {"design": design, "backend": backend, "__module__": __name__})
        _machine_classes[key] = cls
    return cls


def __getattr__(name: str):
    if name == "WorldMachine":  # lazy: building it imports hypothesis
        return machine_for(DEFAULT_DESIGN)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def trace_from_finding(text: str) -> str | None:
    """The trace text inside a Finding's message (None if there is none)."""
    start = text.find(MAGIC)
    return text[start:] if start >= 0 else None


# -- the fuzz harness -------------------------------------------------------------------

_fuzz_tests: dict[tuple[str, str], object] = {}


def fuzz_test(design: str, backend: str = "cy"):
    """The hypothesis test of ``design``'s machine (built once): ``.hypothesis.
    fuzz_one_input(data)`` runs the machine once, driven by ``data``."""
    key = (design, backend)
    test = _fuzz_tests.get(key)
    if test is None:
        from hypothesis import HealthCheck, settings
        from hypothesis.stateful import get_state_machine_test

        test = get_state_machine_test(
            machine_for(design, backend),
            settings=settings(database=None, deadline=None, derandomize=True,
                              suppress_health_check=list(HealthCheck),
                              stateful_step_count=STEPS, report_multiple_bugs=False))
        _fuzz_tests[key] = test
    return test


@dataclass(frozen=True)
class StateMachineHarness(Harness):
    """The ``statemachine`` harness: bytes drive ``WorldMachine`` through hypothesis'
    fuzz_one_input (the bytes are hypothesis' choice sequence, not a decoded trace);
    a violation raises ``Finding`` with the run as a trace."""

    design: str | None = None   # None: rig.drive.harnesses.DEFAULT_DESIGN
    backend: str = "cy"

    @property
    def target_design(self) -> str:
        return self.design or DEFAULT_DESIGN

    def one_input(self, data: bytes) -> None:
        with rig.drive.base.skipping_known():  # a bug of the rig the campaign already has
            fuzz_test(self.target_design, self.backend).hypothesis.fuzz_one_input(data)

    def to_trace(self, data: bytes) -> Trace | None:
        """Run the input once, recording the machine: the trace of the ops it applied,
        expecting the outcome they had (None if no machine ran)."""
        recorded: list = []
        _recorders.append(recorded)
        try:
            self.one_input(data)
        except Exception:  # a Finding, or a bug of the rig: the ops are what matter
            pass
        finally:
            _recorders.remove(recorded)
        if not recorded:
            return None
        machine = recorded[-1]
        return machine.trace(f"hypothesis state machine run of {len(data)} raw bytes by "
                             f"harness {self.name}")

    def for_design(self, design: str | None) -> "StateMachineHarness":
        design = design or self.design or DEFAULT_DESIGN
        return replace(self, name=f"{HARNESS_NAME}:{design}", design=design)
