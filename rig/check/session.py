"""The one executor: apply each op to the World, then run the oracle (DESIGN.md 4).

Beside the world under test, a shadow world runs the same ops on the reference model's
core (rig.check.model) when ``differential`` is on; after every op the two must agree.
Outcome per run: ``ok``, ``vm_stopped`` (errno, op k) or ``violation`` (invariant, op k,
detail).  Exceptions raised here are bugs of the rig, never findings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rig.check import model, oracle
from rig.errors import errno_name
from rig.world.ops import Op
from rig.world.config import WorldConfig
from rig.world.world import World


@dataclass
class Step:
    index: int
    op: Op
    result: object
    faults: list          # (site, errno, partial) injected during this op
    events: list          # world events of this op (interleavings, retries, warnings, ...)
    violations: list      # oracle.Violation


@dataclass
class Outcome:
    kind: str                     # ok | vm_stopped | violation
    op_index: int | None = None
    errno: int | None = None
    invariant: str | None = None
    detail: str = ""
    violations: list = field(default_factory=list)
    #: The VM stop of the run, whatever the kind: a violation found at (or before) the
    #: op that stopped the VM keeps kind "violation" and still says that the VM stopped.
    stop_errno: int | None = None
    stop_index: int | None = None

    def matches(self, other: "Outcome") -> bool:
        """Same kind, and same errno / invariant where they apply (expect: lines)."""
        return (self.kind == other.kind and
                (self.kind != "vm_stopped" or other.errno is None or self.errno == other.errno) and
                (self.kind != "violation" or other.invariant is None
                 or self.invariant == other.invariant))

    def __str__(self) -> str:
        if self.kind == "ok":
            return "ok"
        if self.kind == "vm_stopped":
            return f"vm_stopped {errno_name(self.errno)}"
        return f"violation {self.invariant}"


@dataclass
class RunResult:
    outcome: Outcome
    steps: list
    world: World
    shadow: World | None

    @property
    def coverage(self) -> dict:
        return self.world.plan.coverage()


class Session:
    """A world (and its shadow on the reference model) stepped one op at a time: the one
    apply-then-check path that ``run``, the hypothesis state machine and the fuzz
    harnesses share."""

    def __init__(self, config: WorldConfig, backend: str = "cy", differential: bool = True):
        config.validate()
        self.world = World(config, backend)
        self.shadow = (World(config, model.backend())
                       if differential and backend != "model" else None)
        self.steps: list[Step] = []
        self.outcome = Outcome("ok")
        self.stopped = False

    def step(self, op: Op, stop_at_violation: bool = True) -> Step:
        world, shadow = self.world, self.shadow
        index = len(self.steps)
        events_before = len(world.events)
        world.begin_op(index, op)
        before = world.snapshot() if op.name == "kvm_convert_memory" else None
        atomic: list = []

        def check_atomic(result):
            # "As before" is judged on the state the conversion itself left, before a
            # deferred (serialized) interleaved op runs; a conversion another one raced
            # with mid-way has no "before" to return to, and is not judged.
            if before is not None and isinstance(result, int) and result < 0 \
                    and not world.interleaved_midway:
                atomic.extend(oracle.check_atomic(before, world.snapshot()))

        result = world.apply(op, check_atomic)
        violations = sorted(oracle.check(world) + atomic,
                            key=lambda v: oracle.INVARIANTS.index(v.invariant))
        if shadow is not None:
            shadow.begin_op(index, op)
            shadow_result = shadow.apply(op)
            violations += oracle.check_differential(world, shadow, result, shadow_result)
        was_stopped = self.outcome.stop_errno is not None
        stopped = world.vm_stopped
        if (stopped is None and op.name == "kvm_convert_memory" and isinstance(result, int)
                and result < 0 and world.design.stops_vm):
            stopped = world.vm_stopped = result
            world.event("vm_stop", result)
        if stopped is not None and not was_stopped and not _exited(world, index):
            # The stop ends the guest, not the host: what the stop leaves behind (pins,
            # mappings, both files) is checked as the state the VM stays in.
            violations = sorted(violations + oracle.check_after_stop(world),
                                key=lambda v: oracle.INVARIANTS.index(v.invariant))
        events = world.events[events_before:]
        faults = [(e[2], e[3], e[4]) for e in events if e[0] == "fault"]
        step = Step(index, op, result, faults, [e for e in events if e[0] != "fault"], violations)
        self.steps.append(step)
        if violations:
            if self.outcome.kind != "violation":
                head = violations[0]
                self.outcome = Outcome("violation", index, None, head.invariant, head.detail,
                                       list(violations), self.outcome.stop_errno,
                                       self.outcome.stop_index)
            if stop_at_violation:
                self.stopped = True
        if stopped is not None:
            if self.outcome.kind == "ok":
                self.outcome = Outcome("vm_stopped", index, stopped)
            if not was_stopped:
                self.outcome.stop_errno, self.outcome.stop_index = stopped, index
            self.stopped = True
        return step

    def result(self) -> RunResult:
        return RunResult(self.outcome, self.steps, self.world, self.shadow)


def _exited(world: World, index: int) -> bool:
    """QEMU exited at this op (a replay failure at hot-plug, 10.1): the process is gone
    and the kernel released everything it held, so no state is left behind to check."""
    return any(e[0] == "exit" and e[1] == index for e in world.events)


def run(config: WorldConfig, ops, backend: str = "cy", differential: bool = True,
        stop_at_violation: bool = True, observe=None) -> RunResult:
    """Run ``ops`` from a fresh world built from ``config`` (validated here).
    ``observe(world)`` is called before the first op and after every op."""
    session = Session(config, backend, differential)
    if observe is not None:
        observe(session.world)
    for op in ops:
        session.step(op, stop_at_violation)
        if observe is not None:
            observe(session.world)
        if session.stopped:
            break
    return session.result()
