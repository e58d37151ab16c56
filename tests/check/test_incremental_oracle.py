"""The incremental oracle reports exactly what the full one reports, after every op.

The session judges each op with ``oracle.check_incremental`` (fast twins of the checks,
and a memo that re-runs a check only when its key changed) and with the fast path of
``oracle.check_differential``; ``oracle.check`` and the differential check without a view
are the full, memo-less checks.  Here every op of every run is judged both ways and the
two must be equal, invariant, detail and items, check by check:

- the shipped corpus: every world trace under corpora/ (scenarios, on their own design
  and on every built-in design; the designs table's cases; the regressions; the
  unminimized findings; the mutants' kill traces, on their mutant), on every backend of
  the suite;
- 10,000 generated runs on the cy backend: seeded random bytes decoded by the convert
  and convert_explicit harnesses, on every built-in design and every world mutant (a
  mutant that needs a core flag runs on another build of the core and is left to
  tests/mutants), run past their violations (``stop_at_violation=False``) until the VM
  stops or the ops end.  Under RIG_PUREPYTHON=1 (the pure-Python twin, several times
  slower) the same generator makes 5,000 runs, to keep the suite's time.

Breaking one key by hand (dropping ``view.private`` from attr-agree's key, or
``view.maps`` from shared-unmapped's) makes the generated runs fail here, on the first
op where a conversion or an unmap leaves the rest of the key as it was.
"""

from __future__ import annotations

import random

import pytest

from rig.check import oracle
from rig.check.session import Session
from rig.drive.harnesses import harness_for
from rig.trace import core as core_trace
from rig.trace import corpus
from rig.trace.format import load, parse
from rig.world.designs import BUILT_IN, ensure
from rig.world.mutants import mutants

from tests.conftest import BACKENDS

HARNESSES = ("convert", "convert_explicit")
BACKEND = BACKENDS[0]  # cy, unless RIG_PUREPYTHON=1
RUNS = 10_000 if BACKEND == "cy" else 5_000

WORLD_MUTANTS = [name for name, cls in mutants().items() if cls.core_mutant is None]
DESIGNS = list(BUILT_IN) + WORLD_MUTANTS
ITEMS = [(harness, design) for design in DESIGNS for harness in HARNESSES]


def _signature(violations) -> list:
    return [(v.invariant, v.detail, list(v.items)) for v in violations]


def replay_comparing(config, ops, backend: str, stop_at_violation: bool = False) -> int:
    """Run ``ops`` as Session.run does, and after every op compare what the incremental
    oracle reported with the full checks; returns the ops compared."""
    session = Session(config, backend)
    world = session.world
    compared = 0
    for op in ops:
        session.step(op, stop_at_violation)
        memo = session.memo
        # Check by check: the memo's result is what the session reported for it.
        for inc in oracle.INCREMENTAL:
            full = inc.check(world)
            assert _signature(memo.results[inc.check]) == _signature(full), (
                f"{inc.name} at op {world.op_index} ({op}) on {config.design}")
        # As a whole: the state violations in the session's order.
        assert _signature(oracle.check_incremental(world, oracle.Memo())) == \
            _signature(oracle.check(world))
        shadow, result, shadow_result, fast = session._differential
        full = oracle._run("differential", world, shadow, result, shadow_result)
        assert _signature(fast) == _signature(full), (
            f"differential at op {world.op_index} ({op}) on {config.design}")
        compared += 1
        if session.stopped:
            break
    return compared


# -- the shipped corpus --------------------------------------------------------------------

def _corpus() -> list:
    """(name, config, ops) of every world trace shipped under corpora/."""
    cases = []
    for name, s in corpus.scenarios().items():
        cases.append((f"scenario {name}", s.config, s.ops))
        for design in BUILT_IN:
            if design != s.config.design:
                cases.append((f"scenario {name} on {design}", s.config.with_(design=design),
                              s.ops))
    for name, s in corpus.design_cases().items():
        cases.append((f"design case {name}", s.config, s.ops))
    for path in corpus.regressions():
        trace = load(str(path), strict=True)
        cases.append((f"regression {path.name}", trace.config, trace.ops))
    for trace in corpus.unminimized():
        cases.append((f"unminimized {trace.config.design}", trace.config, trace.ops))
    for path in sorted((corpus.root() / "mutants").glob("*.trace")):
        if core_trace.is_core_trace(path.read_text()):
            continue
        trace = load(str(path), strict=True)
        if trace.config.design not in WORLD_MUTANTS:
            continue  # needs a core flag: another build of the core
        cases.append((f"mutant {path.name}", trace.config, trace.ops))
    return cases


def test_the_corpus_is_all_there():
    names = [name for name, _, _ in _corpus()]
    kinds = {name.split()[0] for name in names}
    assert kinds == {"scenario", "design", "regression", "unminimized", "mutant"}
    assert len(names) >= 50


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_corpus_judges_the_same_after_every_op(backend):
    cases = _corpus()
    ops = 0
    for name, config, trace_ops in cases:
        ensure(config.design)
        for stop in (True, False):
            compared = replay_comparing(config, trace_ops, backend, stop_at_violation=stop)
            assert compared >= 1, name
            ops += compared
    print(f"corpus on {backend}: {len(cases)} traces, twice each, {ops} ops compared")


# -- generated runs ------------------------------------------------------------------------

def _inputs(harness: str, design: str, n: int):
    rng = random.Random(f"incremental-oracle/{harness}/{design}")
    for _ in range(n):
        yield bytes(rng.randrange(256) for _ in range(rng.randrange(8, 400)))


@pytest.mark.parametrize("harness,design", ITEMS, ids=[f"{h}:{d}" for h, d in ITEMS])
def test_generated_runs_judge_the_same_after_every_op(harness, design):
    n = -(-RUNS // len(ITEMS))
    target = harness_for(harness, design)
    ops = 0
    for data in _inputs(harness, design, n):
        trace = target.to_trace(data)
        ops += replay_comparing(trace.config, trace.ops, BACKEND)
    assert ops >= n  # every run has at least one op
    print(f"{harness}:{design} on {BACKEND}: {n} runs, {ops} ops compared")


def test_ten_thousand_runs():
    """The items above add up to RUNS runs, over every design and both harnesses."""
    assert -(-RUNS // len(ITEMS)) * len(ITEMS) >= RUNS
    assert set(DESIGNS) >= set(BUILT_IN) and WORLD_MUTANTS


# -- the session's own full check ----------------------------------------------------------

def _broken_twin(monkeypatch, check, reports):
    """Make the twin of ``check`` report ``reports()``, whatever the world says."""
    monkeypatch.setattr(oracle, "INCREMENTAL", tuple(
        oracle.Incremental(inc.check, lambda world, view: reports()) if inc.check is check
        else inc for inc in oracle.INCREMENTAL))


def test_the_session_compares_with_the_full_check_when_the_run_stops(monkeypatch):
    """A regression whose last op breaks shared-unmapped (and stops the VM), judged by a
    twin that sees nothing: the full check at the op that ends the run says otherwise."""
    trace = load(str(corpus.root() / "regressions" /
                     "shared-unmapped-qemu-10.1-a0658dea.trace"), strict=True)
    _broken_twin(monkeypatch, oracle.check_listeners, list)
    with pytest.raises(oracle.IncrementalMismatch,
                       match=rf"check_listeners at op {len(trace.ops) - 1} reported \[\], "
                             r"the full check \['shared-unmapped: "):
        Session(trace.config, BACKEND).run(trace.ops)


TOUCHES = parse("# gmem-rig trace v1\n# design=hardened\n" + "guest_touch(0x0)\n" * 100)


def test_the_session_compares_with_the_full_check_every_n_ops(monkeypatch):
    """A twin reporting a violation the world does not have, on a run that goes on past
    violations: the full check every FULL_CHECK_EVERY ops catches it."""
    _broken_twin(monkeypatch, oracle.check_order,
                 lambda: [oracle.Violation("notify-order", "made up")])
    session = Session(TOUCHES.config, BACKEND)
    n = oracle.FULL_CHECK_EVERY
    for op in TOUCHES.ops[:n - 1]:
        session.step(op, stop_at_violation=False)
    assert session.steps[-1].violations and not session.stopped
    with pytest.raises(oracle.IncrementalMismatch,
                       match=rf"check_order at op {n - 1} reported \['notify-order: made up'\], "
                             r"the full check \[\]"):
        session.step(TOUCHES.ops[n - 1], stop_at_violation=False)


def test_the_session_compares_with_the_full_check_at_the_last_op(monkeypatch):
    _broken_twin(monkeypatch, oracle.check_order,
                 lambda: [oracle.Violation("notify-order", "made up")])
    with pytest.raises(oracle.IncrementalMismatch, match=r"check_order at op 4 "):
        Session(TOUCHES.config, BACKEND).run(TOUCHES.ops[:5], stop_at_violation=False)


def test_a_clean_run_is_verified_at_its_last_op():
    session = Session(TOUCHES.config, BACKEND)
    session.run(TOUCHES.ops[:5])
    assert session.memo.verified == 4 and session.outcome.kind == "ok"
