"""The one run loop: apply each op to the World, then judge it with the oracle.

Everything that runs ops goes through ``Session``: ``run`` (rig replay, the sweeps, the
report, the minimizer), the world fuzz harnesses, the hypothesis state machine and
``rig bench world``.  Beside the world under test, a shadow world runs the same ops on
the reference model's core (rig.check.model) when ``differential`` is on; after every
op the two must agree.

A run's ``Outcome`` is ``ok``, ``vm_stopped`` (errno, op k) or ``violation`` (invariant,
op k, detail); ``Expect`` is a pattern over outcomes (what a trace's ``# expect:`` line
says, and what the minimizer keeps), with the one ``matches``.  Exceptions raised here
are bugs of the rig, never findings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rig.check import model, oracle
from rig.errors import errno_name
from rig.world.config import WorldConfig
from rig.world.events import Exit, Fault
from rig.world.ops import Op, format_result
from rig.world.world import World


@dataclass
class Step:
    index: int
    op: Op
    result: object
    faults: list          # rig.world.events.Fault: the faults injected during this op
    events: list          # the other events of this op (interleavings, retries, ...)
    violations: list      # oracle.Violation, most severe first


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

    def __str__(self) -> str:
        """The outcome as an ``# expect:`` line names it: ``violation stale-mapping``."""
        return str(Expect.of(self))

    def describe(self, also: bool = False) -> str:
        """The outcome in one line, where it happened included: ``violation
        shared-unmapped at op 3; VM stopped (-ENOMEM) at op 3``.  ``also``: name the other
        invariants the headline op broke too (the designs table)."""
        if self.kind == "ok":
            return "ok"
        if self.kind == "vm_stopped":
            return f"vm_stopped {errno_name(self.errno)} at op {self.op_index}"
        text = f"violation {self.invariant} at op {self.op_index}"
        others = sorted({v.invariant for v in self.violations} - {self.invariant})
        if also and others:
            text += f" (also: {', '.join(others)})"
        if self.stop_errno is not None:
            text += f"; VM stopped ({format_result(self.stop_errno)}) at op {self.stop_index}"
        return text


@dataclass(frozen=True)
class Expect:
    """A pattern over outcomes: the kind, and the errno (vm_stopped) or invariant
    (violation) when given; None matches any."""

    kind: str                   # ok | vm_stopped | violation
    errno: int | None = None    # vm_stopped: negative errno (None: any)
    invariant: str | None = None

    @classmethod
    def of(cls, outcome: Outcome) -> "Expect":
        """The pattern that matches exactly ``outcome``'s kind and errno or invariant."""
        if outcome.kind == "vm_stopped":
            return cls("vm_stopped", outcome.errno)
        if outcome.kind == "violation":
            return cls("violation", None, outcome.invariant)
        return cls(outcome.kind)

    def __str__(self) -> str:
        if self.kind == "vm_stopped":
            return "vm_stopped" + (f" {errno_name(self.errno)}" if self.errno else "")
        if self.kind == "violation":
            return "violation" + (f" {self.invariant}" if self.invariant else "")
        return "ok"

    def matches(self, outcome: Outcome) -> bool:
        if outcome.kind != self.kind:
            return False
        if self.kind == "vm_stopped":
            return self.errno is None or outcome.errno == self.errno
        if self.kind == "violation":
            return self.invariant is None or outcome.invariant == self.invariant
        return True


@dataclass
class RunResult:
    outcome: Outcome
    steps: list
    world: World
    shadow: World | None

    @property
    def coverage(self) -> dict:
        return self.world.plan.coverage()


def _by_severity(violations: list) -> list:
    return sorted(violations, key=oracle.sort_key)


class Session:
    """A world (and its shadow on the reference model) stepped one op at a time."""

    def __init__(self, config: WorldConfig, backend: str = "cy", differential: bool = True):
        config.validate()
        self.world = World(config, backend)
        self.shadow = (World(config, model.backend())
                       if differential and backend != "model" else None)
        self.steps: list[Step] = []
        self.outcome = Outcome("ok")
        self.stopped = False
        #: The incremental oracle's memory of this world (rig.check.oracle.Memo), and
        #: what the last op's differential check compared (for ``oracle.verify``).
        self.memo = oracle.Memo()
        self._differential = None

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

        was_stopped = world.vm_stopped is not None
        result = world.apply(op, check_atomic)
        # The incremental oracle: what oracle.check reports, from the memo of this world
        # (compared with the full check every FULL_CHECK_EVERY ops and at the last op).
        view = oracle.OpView(world)
        violations = _by_severity(oracle.check_incremental(world, self.memo, view) + atomic)
        self._differential = None
        if shadow is not None:
            shadow.begin_op(index, op)
            shadow_result = shadow.apply(op)
            found = oracle.check_differential(world, shadow, result, shadow_result, view)
            violations += found
            self._differential = (shadow, result, shadow_result, found)
        events = world.events[events_before:]
        stopped = world.vm_stopped
        if (stopped is not None and not was_stopped
                and not any(isinstance(e, Exit) for e in events)):
            # The stop ends the guest, not the host: what the stop leaves behind (pins,
            # mappings, both files) is checked as the state the VM stays in.  Not when
            # QEMU exited at this op: the process is gone and the kernel released
            # everything it held.
            violations = _by_severity(violations + oracle.check_after_stop(world))
        step = Step(index, op, result, [e for e in events if isinstance(e, Fault)],
                    [e for e in events if not isinstance(e, Fault)], violations)
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
        if self.stopped or (index + 1) % oracle.FULL_CHECK_EVERY == 0:
            self.verify()
        return step

    def verify(self) -> None:
        """Compare the incremental oracle's results at the last op with the full checks
        (oracle.verify): a difference raises oracle.IncrementalMismatch, a bug of the rig.
        ``step`` calls it every FULL_CHECK_EVERY ops and when the run stops, ``run`` at
        its last op; the world must not have changed since that op."""
        if self.steps and self.memo.verified != self.steps[-1].index:
            oracle.verify(self.world, self.memo, self._differential)

    def run(self, ops, stop_at_violation: bool = True, observe=None) -> "RunResult":
        """Step through ``ops`` until the run stops (a violation, a VM stop) or they end.
        ``observe(world)`` is called before the first op and after every op."""
        if observe is not None:
            observe(self.world)
        for op in ops:
            self.step(op, stop_at_violation)
            if observe is not None:
                observe(self.world)
            if self.stopped:
                break
        self.verify()  # the last op (step verified it already if the run stopped there)
        return self.result()

    def result(self) -> RunResult:
        return RunResult(self.outcome, self.steps, self.world, self.shadow)


def run(config: WorldConfig, ops, backend: str = "cy", differential: bool = True,
        stop_at_violation: bool = True, observe=None) -> RunResult:
    """Run ``ops`` from a fresh world built from ``config`` (validated here)."""
    return Session(config, backend, differential).run(ops, stop_at_violation, observe)
