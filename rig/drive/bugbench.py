"""``rig bench bugs``: how fast each engine kills each mutant (rig.world.mutants).

A mutant is a design (or a core build variant) with one planted defect and a ``base``,
the design it mutates.  The benchmark runs every (mutant, engine, seed) *cell* in a child
process of its own, with the mutant's environment (a core mutant's child runs the plain
variant build of the core, RIG_CORE_MUTANT set), until the engine reports a finding that
*kills* the mutant or the cell's cap runs out.  The figures follow Magma and FuzzBench:
ground-truth bugs, time to find, several seeds.

The kill criterion, one definition for every engine and for ``rig fuzz --until-kill``
(``kill_check``): a finding kills the mutant when its *minimized* trace is clean on the
unmutated design.  A world trace is replayed with its header's design swapped for the
mutant's ``base``; a core trace is replayed on the unmutated core.  The replay runs in a
fresh process whose environment has no RIG_CORE_MUTANT, RIG_NATIVE_DIR or LD_PRELOAD, so
that it cannot run the mutated core by accident.  Clean means the outcome ``ok``: no
violation, no VM stop (a core trace: no disagreement).  A finding that is not clean there
is a bug of the base too (a known-bad base's own), not the planted one: the engine goes
on, and its signature is not judged again (one signature is one finding, as in the
campaign), so a cell reports each signature that did not kill in ``non_kills``.

What the figures are (each cell's JSON line says it again):

- ``time_s``: wall seconds from the engine's start to the moment the finding that killed
  was found (before its minimizing and kill check, which take the engine's time too:
  a non-killing finding met earlier delays the next one).  The campaign engines count
  from ``rig fuzz``'s start, its set-up included (the regression corpus, each harness'
  start-up), but not the instrumented or variant build: the bench builds every variant
  before the first cell (``prepare_builds``).
- ``execs``: the inputs executed up to and including the killing one.  campaign: the
  campaign's ``found_runs`` (rig fuzz --help says which runs it counts; with ``--jobs 1``,
  which the bench passes, it is exact); swarm: random inputs fed to a decoder; statemachine:
  hypothesis test cases (one machine run of up to 50 steps each), shrinking not counted;
  fail-nth: trace runs (each sweep's unfaulted baseline and every faulted run).
- ``trace_ops``: the op count of the killing trace, minimized.

fail-nth is deterministic (no seed changes what it runs), so it has one cell per mutant
and reports at the granularity of one sweep: time and execs are taken at the end of the
sweep (one trace on one IOMMU backend) whose runs include the killing one.

The engines are a registry (``ENGINES``); a later engine is one entry.  Nothing here
prints a table: rig.cli.bench does.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: The version of a results line; a line of another version is refused, not guessed at.
SCHEMA = 1
#: What selects a mutated or instrumented core: the kill check's process has none of them.
CORE_ENV = ("RIG_CORE_MUTANT", "RIG_NATIVE_DIR", "LD_PRELOAD", "ASAN_OPTIONS")
#: The most one minimization of a finding may take (the bounded minimizer keeps its best).
MINIMIZE_S = 20.0
#: How long the kill check's replay may take before it counts as failed.
KILL_CHECK_TIMEOUT_S = 300.0
#: The world harnesses whose decoders the swarm feeds, round robin (the campaign's).
SWARM_DECODERS = ("convert", "convert_explicit", "trace_text")
#: The swarm's input lengths are uniform in 1..SWARM_MAX_LEN bytes (the decoders read at
#: most 40 ops, a few bytes each: longer inputs add nothing).
SWARM_MAX_LEN = 1024
#: hypothesis examples per statemachine round; a round that ends without a kill starts
#: the next one on the next seed.
STATEMACHINE_ROUND = 100_000
#: A cell's process is killed (and the cell recorded as an error) this long past its cap.
CELL_GRACE_S = 300.0
#: The keys a results line must have.
RESULT_KEYS = ("schema", "mutant", "engine", "seed", "cap_s", "found")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def backend() -> str:
    """The core backend this process runs (``pure`` under RIG_PUREPYTHON=1)."""
    import rig.core

    return rig.core.BACKEND


# -- the kill check ---------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    """Whether a minimized finding kills its mutant, and what it does on the base (the
    outcome, ``ok`` when it kills); ``error``: the check itself failed (not a kill)."""

    kills: bool
    outcome: str
    error: str | None = None


def clean_env(env=None) -> dict:
    """``env`` (default this process') without what selects a mutated or instrumented
    core: the unmutated build, whatever the caller runs."""
    out = dict(os.environ if env is None else env)
    for name in CORE_ENV:
        out.pop(name, None)
    return out


def kill_check(text: str, base: str) -> Verdict:
    """Replay the minimized trace ``text`` on the unmutated design ``base`` (a world
    trace) or on the unmutated core (a core trace), in a fresh process with a clean
    environment (``clean_env``); see the module docstring."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "rig.drive.bugbench", "kill-check", "--base", base, "-"],
            input=text, capture_output=True, text=True, env=clean_env(),
            timeout=KILL_CHECK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return Verdict(False, "", f"the kill check took over {KILL_CHECK_TIMEOUT_S:g} s")
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        return Verdict(False, "", f"the kill check failed (exit {proc.returncode}): "
                       + (lines[-1] if lines else "no output"))
    try:
        data = json.loads(proc.stdout)
        return Verdict(bool(data["clean"]), str(data["outcome"]))
    except (ValueError, KeyError, TypeError):
        return Verdict(False, "", f"the kill check printed no verdict: {proc.stdout[:200]!r}")


def replay_on_base(text: str, base: str) -> tuple[bool, str]:
    """(clean, outcome) of ``text`` on the unmutated design or core, in this process
    (the kill check's child runs it)."""
    from rig.trace import core as core_trace

    if core_trace.is_core_trace(text):
        from rig.check.differential import impls_for

        trace = core_trace.parse(text, "<finding>")
        config = trace.config
        if getattr(config, "mutant", None):
            # (the header names the core mutant it was found on: the replay is on the
            # unmutated core, which this process runs)
            config = dataclasses.replace(config, mutant=None)
        result = core_trace.run_core(config, trace.ops, impls_for(backend()))
        return result.outcome.kind == "ok", result.outcome.describe()
    from rig.check.session import run
    from rig.trace.format import parse

    trace = parse(with_design(text, base), "<finding>")
    result = run(trace.config, trace.ops, backend())
    return result.outcome.kind == "ok", result.outcome.describe()


def with_design(text: str, design: str) -> str:
    """The world trace ``text`` with its header's design replaced by ``design``, in the
    text: the mutant's own design is never loaded for the kill check's replay (a core
    mutant's design belongs with its mutated core)."""
    from rig.trace.format import MAGIC, split_lines

    out = []
    header, swapped = True, False
    for line in split_lines(text):
        if header and line.startswith("#") and line.strip() != MAGIC:
            words = line[1:].split()
            if words and all("=" in w for w in words):
                swapped = swapped or any(w.startswith("design=") for w in words)
                line = "# " + " ".join(f"design={design}" if w.startswith("design=") else w
                                       for w in words)
        elif line.strip() and not line.startswith("#"):
            header = False
        out.append(line)
    if not swapped:  # (the header left the design at its default: name the base)
        out.insert(1 if out and out[0].strip() == MAGIC else 0, f"# design={design}")
    return "\n".join(out) + "\n"


# -- one cell ---------------------------------------------------------------------------

@dataclass(frozen=True)
class CellSpec:
    """What a cell's child runs: ``mutant`` (a design name the child resolves: a
    registered mutant, or one loaded through RIG_DESIGNS), its ``base``, the engine, the
    seed, the cap and where the killing trace goes."""

    mutant: str
    base: str
    engine: str
    seed: int
    cap: float
    trace_out: str

    @property
    def key(self) -> tuple:
        return (self.mutant, self.engine, self.seed, float(self.cap))


@dataclass
class Kill:
    signature: str
    time_s: float | None
    execs: int | None
    text: str
    ops: int
    outcome: str          # on the mutant: the minimized trace's expect line


class Hunt:
    """What an in-process engine shares: its clock and cap, the exec count, the
    signatures judged so far, and the judging (minimize, then ``kill_check``)."""

    def __init__(self, spec: CellSpec, log=_log):
        self.spec = spec
        self.log = log
        self.t0 = time.monotonic()
        self.deadline = self.t0 + spec.cap
        self.execs = 0
        self.non_kills: dict[str, str] = {}   # signature -> what it does on the base
        self.kill: Kill | None = None
        self.note = ""

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def over(self) -> bool:
        return self.kill is not None or time.monotonic() >= self.deadline

    def judged(self, signature: str) -> bool:
        return signature in self.non_kills

    def judge(self, signature: str, trace, time_s: float | None, execs: int | None) -> bool:
        """Minimize ``trace`` (a world Trace or a core CoreTrace) on the mutant and
        kill-check it; True when it kills (``self.kill`` is then set)."""
        try:
            text, ops, outcome = minimized(trace)
        except ValueError as exc:  # the trace does not fail again: flaky, say so
            self.non_kills[signature] = f"not reproduced for minimizing: {exc}"
            return False
        verdict = kill_check(text, self.spec.base)
        if verdict.kills:
            self.kill = Kill(signature, time_s, execs, text, ops, outcome)
            return True
        self.non_kills[signature] = verdict.error or f"on {self.spec.base}: {verdict.outcome}"
        self.log(f"bugbench: {signature}: not a kill ({self.non_kills[signature]})")
        return False

    def result(self) -> dict:
        out = {"found": self.kill is not None, "time_s": None, "execs": None,
               "trace_ops": None, "signature": None, "outcome": None,
               "execs_total": self.execs, "non_kills": sorted(self.non_kills.items()),
               "note": self.note}
        if self.kill is not None:
            out.update(time_s=_round(self.kill.time_s), execs=self.kill.execs,
                       trace_ops=self.kill.ops, signature=self.kill.signature,
                       outcome=self.kill.outcome)
            _write(Path(self.spec.trace_out), self.kill.text)
        return out


def _round(value):
    return None if value is None else round(value, 3)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _bounded(cls, seconds: float):
    """``cls`` (a Minimizer or a CoreMinimizer) that tries no candidate after
    ``seconds``: its passes then run out at once and it keeps its best so far."""
    end = time.monotonic() + seconds

    class Bounded(cls):
        def try_(self, config, ops) -> bool:
            return time.monotonic() < end and super().try_(config, ops)

    return Bounded


def minimized(trace) -> tuple[str, int, str]:
    """(text, op count, expect) of ``trace`` minimized on this process' core, as ``rig
    minimize`` writes it.  ValueError: the trace does not fail."""
    from rig.trace import core as core_trace

    if isinstance(trace, core_trace.CoreTrace):
        from rig.check.differential import impls_for

        m = _bounded(core_trace.CoreMinimizer, MINIMIZE_S)(trace, impls_for(backend()))
        m.minimize()
        out = core_trace.finalize(m, len(trace.ops))
        return core_trace.serialize(out), len(out.ops), str(out.expect)
    from rig.trace import minimize
    from rig.trace.format import serialize

    m = _bounded(minimize.Minimizer, MINIMIZE_S)(trace, backend())
    m.minimize()
    out = minimize.finalize(m, len(trace.ops))
    return serialize(out), len(out.ops), str(out.expect)


def trace_ops(text: str) -> int:
    """The op count of a trace file's text (world or core)."""
    from rig.trace import core as core_trace
    from rig.trace.format import parse

    if core_trace.is_core_trace(text):
        return len(core_trace.parse(text, "<trace>", strict=False).ops)
    return len(parse(text, "<trace>", strict=False).ops)


# -- the engines ------------------------------------------------------------------------

@dataclass(frozen=True)
class Engine:
    """One way of hunting a mutant.  ``run(spec, log)`` runs a cell in the cell's child
    process and returns its figures (``Hunt.result``'s keys).  ``seeded``: False for a
    deterministic engine (one cell per mutant, seed 1, whatever --seeds says).
    ``build``: the core build its processes need, ``fuzzer`` (the instrumented build,
    which the bench builds before the first cell) or ``plain``.  ``doc``: one line for
    the help and the docs."""

    name: str
    run: object
    doc: str
    seeded: bool = True
    build: str = "plain"


def _campaign(spec: CellSpec, log, native: str) -> dict:
    """``rig fuzz --design M --until-kill BASE --jobs 1`` in a scratch folder."""
    work = Path(tempfile.mkdtemp(prefix="rig-bench-campaign-"))
    try:
        argv = [sys.executable, "-m", "rig.cli.main", "fuzz", "--design", spec.mutant,
                "--time", f"{spec.cap:g}", "--seed", str(spec.seed), "--jobs", "1",
                "--native", native, "--json", "--until-kill", spec.base,
                "--corpus-dir", str(work / "corpora"), "--artifacts", str(work / "artifacts")]
        log(f"bugbench: {' '.join(argv[1:])}")
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=sys.stderr, text=True,
                              cwd=work, timeout=spec.cap + CELL_GRACE_S)
        try:
            doc = json.loads(proc.stdout)
        except ValueError:
            raise RuntimeError(f"rig fuzz exited {proc.returncode} without its JSON "
                               "document (its log is the cell's log)") from None
        if doc.get("errors"):
            raise RuntimeError(f"rig fuzz: {doc['errors'][0]}")
        findings = doc.get("findings", [])
        kill = next((f for f in findings if f.get("kills")), None)
        out = {"found": kill is not None, "time_s": None, "execs": None, "trace_ops": None,
               "signature": None, "outcome": None,
               "execs_total": sum(h.get("runs", 0) for h in doc.get("harnesses", [])),
               "non_kills": sorted((f["signature"], f.get("kill_check") or "not a kill")
                                   for f in findings if f.get("kills") is False),
               "note": f"build {doc.get('build')}", "build": doc.get("build")}
        if kill is not None:
            text = (work / kill["trace"]).read_text(encoding="utf-8")
            _write(Path(spec.trace_out), text)
            from rig.trace.format import split_lines

            expect = next((line[len("# expect:"):].strip() for line in split_lines(text)
                           if line.startswith("# expect:")), None)
            out.update(time_s=kill.get("found_s"), execs=kill.get("found_runs"),
                       trace_ops=trace_ops(text), signature=kill["signature"],
                       outcome=expect)
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _statemachine(spec: CellSpec, log) -> dict:
    """hypothesis' state machine alone (rig.drive.stateful) on the mutant, seeded, no
    deadline, in rounds of STATEMACHINE_ROUND examples until a kill or the cap."""
    from hypothesis import HealthCheck, Phase, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis.errors import FlakyFailure, HypothesisException
    from hypothesis.stateful import get_state_machine_test

    import rig.drive.base
    from rig.drive import stateful
    from rig.trace.format import parse

    hunt = Hunt(spec, log)
    machine = stateful.machine_for(spec.mutant, backend())
    counter = _MachineCounter(hunt)
    stateful._recorders.append(counter)  # (told of every machine the test builds)
    saved_known = rig.drive.base.KNOWN
    rounds = 0
    try:
        while not hunt.over():
            # The signatures that did not kill are known: the machine's invariant skips
            # them (rig.drive.base.is_known), so the next failure is another one.
            rig.drive.base.KNOWN = frozenset(hunt.non_kills)
            test = get_state_machine_test(machine, settings=settings(
                database=None, deadline=None, derandomize=True, max_examples=STATEMACHINE_ROUND,
                suppress_health_check=list(HealthCheck), stateful_step_count=stateful.STEPS,
                report_multiple_bugs=False, phases=(Phase.generate,)))
            test = hypothesis_seed(spec.seed * 1_000_003 + rounds)(test)
            rounds += 1
            counter.start_round()
            try:
                test()
            except _CapReached:
                break
            except (HypothesisException, FlakyFailure) as exc:
                if counter.capped:
                    break  # (hypothesis may wrap the cap's exception, raised mid-draw)
                # (a failure hypothesis could not replay: no trace to judge; the next
                # round goes on from the next seed)
                log(f"bugbench: statemachine round {rounds}: {type(exc).__name__}: "
                    f"{str(exc).splitlines()[0] if str(exc) else ''}")
                continue
            except rig.drive.base.Finding as exc:
                first = counter.first
                text = stateful.trace_from_finding(str(exc))
                if text is None:
                    raise RuntimeError(f"a state machine finding without a trace: {exc}") from None
                if hunt.judged(exc.signature):
                    continue
                hunt.judge(exc.signature, parse(text, "<statemachine>"),
                           first[1] if first else None, first[0] if first else None)
                continue
    finally:
        stateful._recorders.remove(counter)
        rig.drive.base.KNOWN = saved_known
    hunt.execs = counter.execs
    hunt.note = f"{rounds} round(s) of hypothesis"
    return hunt.result()


class _CapReached(BaseException):
    """Raised inside a hypothesis test case when the cap has passed and no failure is
    being shrunk: a BaseException, so hypothesis does not take it for a failure of the
    test (it would shrink it) and the round ends at once."""


class _MachineCounter:
    """Stands in rig.drive.stateful's recorder list: told of each WorldMachine a
    hypothesis test case builds.  Counts the test cases (the statemachine's execs) and
    notes the first one whose session reports a violation that is not known (the time
    and exec count of the finding, before hypothesis shrinks it)."""

    def __init__(self, hunt: Hunt):
        self.hunt = hunt
        self.execs = 0
        self.first: tuple[int, float] | None = None   # (execs, seconds) at the failure
        self.capped = False   # the cap has passed: _CapReached was raised

    def start_round(self) -> None:
        self.first = None

    def append(self, machine) -> None:
        if self.first is not None:
            return  # shrinking: neither counted nor stopped
        if time.monotonic() >= self.hunt.deadline:
            self.capped = True
            raise _CapReached
        self.execs += 1
        apply = machine.apply

        def watched(o) -> None:
            apply(o)
            outcome = machine.session.outcome
            if outcome.kind == "violation" and self.first is None:
                import rig.drive.base

                signature = rig.drive.base.violation_signature(outcome, machine.session.steps)
                if not rig.drive.base.is_known(signature):
                    self.first = (self.execs, self.hunt.elapsed())

        machine.apply = watched


def _swarm(spec: CellSpec, log) -> dict:
    """Random inputs, no feedback: random.Random(seed) draws each input's length
    (1..SWARM_MAX_LEN) and bytes, fed round robin to the convert, convert_explicit and
    trace_text harnesses on the mutant, each input run as the campaign's workers run it
    (the harness' one_input: the decoder, Session and the oracle)."""
    from rig.drive.base import Finding
    from rig.drive.harnesses import harness_for

    hunt = Hunt(spec, log)
    harnesses = [harness_for(name, spec.mutant) for name in SWARM_DECODERS]
    rng = random.Random(spec.seed)
    per = dict.fromkeys(SWARM_DECODERS, 0)
    while not hunt.over():
        harness = harnesses[hunt.execs % len(harnesses)]
        data = rng.randbytes(rng.randint(1, SWARM_MAX_LEN))
        hunt.execs += 1
        per[harness.base] += 1
        try:
            harness.one_input(data)
        except Finding as exc:
            if hunt.judged(exc.signature) or exc.trace is None:
                continue
            hunt.judge(exc.signature, exc.trace, hunt.elapsed(), hunt.execs)
    hunt.note = "inputs per decoder: " + ", ".join(f"{k} {v}" for k, v in per.items())
    return hunt.result()


def fail_nth_inputs() -> list[Path]:
    """The world traces the fail-nth engine sweeps: corpora/regressions/ and
    corpora/scenarios/, by name."""
    from rig.trace import corpus

    return corpus.regressions() + sorted((corpus.root() / "scenarios").glob("*.trace"))


def _fail_nth(spec: CellSpec, log) -> dict:
    """rig.drive.sweep.fail_nth_sweep of every trace of ``fail_nth_inputs`` with the
    mutant as design, on each IOMMU backend, in order, until a kill or the cap (checked
    between sweeps)."""
    from rig.drive.base import violation_signature
    from rig.drive.sweep import fail_nth_sweep
    from rig.trace import core as core_trace
    from rig.trace.format import Trace, load

    hunt = Hunt(spec, log)
    sweeps = 0
    for path in fail_nth_inputs():
        if core_trace.is_core_trace(path.read_text(encoding="utf-8")):
            continue
        trace = load(str(path))
        for iommu in ("type1", "iommufd"):
            if hunt.over():
                break
            config = trace.config.with_(design=spec.mutant, iommu=iommu)
            sweep = fail_nth_sweep(config, trace.ops, backend())
            sweeps += 1
            runs = [(None, sweep.baseline)] + list(sweep.runs)
            hunt.execs += len(runs)
            at, execs = hunt.elapsed(), hunt.execs
            for nth, result in runs:
                if result.outcome.kind != "violation":
                    continue
                signature = violation_signature(result.outcome, result.steps)
                if hunt.judged(signature):
                    continue
                faulted = (config.with_(faults="explicit") if nth is None
                           else config.with_(faults="fail_nth", fail_nth=nth))
                if hunt.judge(signature, Trace(faulted, list(trace.ops)), at, execs):
                    hunt.note = f"killed in the sweep of {path.name} on {iommu}"
                    return hunt.result()
    hunt.note = f"{sweeps} sweeps"
    return hunt.result()


#: rig explore's engine: the world it searches and the deepest depth it goes to (the
#: cap stops it sooner, at the last whole depth).
EXPLORE_WORLD = "tiny"
EXPLORE_DEPTH = 8


def _explore(spec: CellSpec, log) -> dict:
    """rig explore on the ``EXPLORE_WORLD`` world with the mutant as design, breadth
    first until a kill or the cap: each violating sequence is judged as it is found
    (a shortest one first), execs are sequences run.  Deterministic: one seed."""
    from rig.check.session import run
    from rig.drive import explore
    from rig.drive.base import violation_signature
    from rig.trace.format import Trace

    hunt = Hunt(spec, log)
    world = explore.WORLDS[EXPLORE_WORLD]
    config = world.config.with_(design=spec.mutant)

    def found(ops, result) -> bool:
        hunt.execs = result.sequences
        if hunt.over():
            return True  # (the cap, met while judging: explore checks it between chunks)
        ran = run(config, list(ops), backend())
        signature = violation_signature(ran.outcome, ran.steps)
        if hunt.judged(signature):
            return False
        return hunt.judge(signature, Trace(config, list(ops)), hunt.elapsed(),
                          result.sequences)

    result = explore.explore(world, spec.mutant, EXPLORE_DEPTH, time_s=spec.cap,
                             backend=backend(), on_violation=found)
    hunt.execs = result.sequences
    hunt.note = (f"{EXPLORE_WORLD}: depth {result.depth} complete, {result.states:,} "
                 f"states" + (f" ({result.stopped})" if result.stopped else ""))
    return hunt.result()


#: Every engine, in the order tables and plots list them.
ENGINES: dict[str, Engine] = {e.name: e for e in (
    Engine("campaign", lambda spec, log: _campaign(spec, log, "fuzzer"), build="fuzzer",
           doc="the default rig fuzz campaign (every default harness, the instrumented "
               "core), --jobs 1, stopped at the first kill (--until-kill)"),
    Engine("campaign-plain", lambda spec, log: _campaign(spec, log, "none"),
           doc="the same campaign on the plain build (--native none): the core fuzzed "
               "blind"),
    Engine("statemachine", _statemachine,
           doc="the hypothesis state machine alone (rig.drive.stateful), seeded, no "
               "deadline"),
    Engine("swarm", _swarm,
           doc="seeded random inputs through the world harnesses' decoders, no coverage "
               "feedback: the baseline"),
    Engine("explore", _explore, seeded=False,
           doc=f"rig explore on the {EXPLORE_WORLD} world, breadth first, every fault at "
               "every hit (at most one): shortest sequences first; deterministic: one "
               "seed"),
    Engine("fail-nth", _fail_nth, seeded=False,
           doc="the fail_nth sweep of corpora/regressions/ and corpora/scenarios/ on both "
               "IOMMU backends; deterministic: one seed"),
)}


def run_cell(spec: CellSpec, log=_log) -> dict:
    """Run one cell here (the cell's child process does) and return its results line."""
    from rig.world.designs import ensure

    if not ensure(spec.mutant):
        raise RuntimeError(f"design {spec.mutant!r} is not loaded in the cell's process "
                           "(RIG_DESIGNS?)")
    t0 = time.monotonic()
    out = ENGINES[spec.engine].run(spec, log)
    out["wall_s"] = round(time.monotonic() - t0, 3)
    out.setdefault("build", backend() + (f" variant {os.environ['RIG_CORE_MUTANT']}"
                                         if os.environ.get("RIG_CORE_MUTANT") else ""))
    return out


# -- the mutants and their builds -------------------------------------------------------

def resolve_mutants(names) -> list:
    """The Mutant classes to measure: each of ``names`` a registered mutant's name or a
    ``path/to/file.py:Class`` spec whose class is a Mutant (loaded, so the cells' child
    processes get it through RIG_DESIGNS); none: every registered mutant.  UsageError
    (one line) otherwise."""
    from rig.errors import UsageError
    from rig.world import mutants as registry
    from rig.world.designs import DESIGNS, ensure, is_spec, load_design

    known = registry.mutants()
    if not names:
        if not known:
            raise UsageError("no mutant is registered (rig/world/mutants/): name one of "
                             "your own with --mutant path/to/file.py:Class")
        return list(known.values())
    out = []
    for text in names:
        if text in known:
            cls = known[text]
        elif is_spec(text):
            cls = DESIGNS[load_design(text)]
            if not issubclass(cls, registry.Mutant):
                raise UsageError(f"--mutant {text!r}: {cls.__qualname__} is a design, not a "
                                 "mutant: mix rig.world.mutants.Mutant into it and set base")
        else:
            raise UsageError(f"--mutant {text!r}: not a registered mutant ("
                             f"{', '.join(known) or 'none is'}; `rig list mutants`) nor a "
                             "path/to/file.py:Class spec")
        if not cls.base or not ensure(cls.base):
            raise UsageError(f"--mutant {text!r}: its base {cls.base!r} is not a design")
        if cls not in out:
            out.append(cls)
    return out


def prepare_builds(classes, engines, log=_log) -> tuple[dict, dict]:
    """Build every core the cells will run before the first cell starts, so that no
    cell's time includes a build: the instrumented core when a ``fuzzer`` engine is
    selected, and for each core mutant its plain variant (what its cells' processes
    import) and, for a ``fuzzer`` engine, its instrumented variant.  Returns (mutant name
    -> the environment its cells run with, mutant name -> why it is skipped)."""
    from rig.drive import native

    fuzzer = any(ENGINES[e].build == "fuzzer" for e in engines)
    pure = backend() == "pure"
    envs: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    if fuzzer and not pure:
        t0 = time.monotonic()
        try:
            native.ensure_build("fuzzer", log=log)
            log(f"bugbench: the instrumented core is ready ({time.monotonic() - t0:.1f} s, "
                "not counted in any cell)")
        except native.NativeUnavailable as exc:
            log(f"bugbench: WARNING: {exc}; the campaign cells fall back to the plain "
                "build and say so in their build field")
    for cls in classes:
        flag = cls.core_mutant
        if not flag:
            envs[cls.name] = {}
            continue
        if pure:
            envs[cls.name] = {"RIG_CORE_MUTANT": flag}
            continue
        t0 = time.monotonic()
        try:
            plain = native.ensure_build(native.PLAIN, mutant=flag, log=log)
            if fuzzer:
                native.ensure_build("fuzzer", mutant=flag, log=log)
        except native.NativeUnavailable as exc:
            skipped[cls.name] = f"core mutant {flag}: its variant build failed: {exc}"
            log(f"bugbench: WARNING: skipping {cls.name}: {skipped[cls.name]}")
            continue
        log(f"bugbench: variant builds of {flag} ready ({time.monotonic() - t0:.1f} s, not "
            "counted)")
        envs[cls.name] = native.env_for(native.PLAIN, plain, flag)
    return envs, skipped


# -- the results file -------------------------------------------------------------------

def result_key(record: dict) -> tuple:
    return (record["mutant"], record["engine"], int(record["seed"]), float(record["cap_s"]))


def load_results(path: Path) -> dict:
    """key -> the last results line of each finished cell (a line with an ``error`` is an
    infrastructure failure: its cell runs again).  UsageError naming file:line for a line
    that is not a results line."""
    from rig.errors import UsageError

    done: dict = {}
    if not path.exists():
        return done
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
                missing = [k for k in RESULT_KEYS if k not in record]
                if missing:
                    raise ValueError(f"no {', '.join(missing)}")
                if record["schema"] != SCHEMA:
                    raise ValueError(f"schema {record['schema']!r}, this rig writes {SCHEMA}")
                key = result_key(record)
            except (ValueError, TypeError) as exc:
                raise UsageError(f"{path}:{lineno}: not a rig bench bugs results line "
                                 f"({exc}); remove the line or pass another --results"
                                 ) from None
            if record.get("error"):
                done.pop(key, None)
            else:
                done[key] = record
    return done


def _append(path: Path, record: dict) -> None:
    """One line, written in one call and synced: a restart finds every finished cell."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


# -- running the cells ------------------------------------------------------------------

def plan(classes, engines, seeds: int, cap: float, results: Path) -> list[CellSpec]:
    """Every cell, mutant by mutant, then engine, then seed (1..seeds; 1 alone for a
    deterministic engine)."""
    traces = results.parent / f"{results.stem}-traces"
    cells = []
    for cls in classes:
        for name in engines:
            for seed in (range(1, seeds + 1) if ENGINES[name].seeded else (1,)):
                out = traces / cls.name / f"{name}-seed{seed}.trace"
                cells.append(CellSpec(cls.name, cls.base, name, seed, float(cap), str(out)))
    return cells


@dataclass
class _Running:
    spec: CellSpec
    proc: subprocess.Popen
    out: object
    err: object
    log_path: Path
    started: float


class Progress:
    """``[#####.....] 12/40 cells, 9 found, 123 s`` on stderr: rewritten in place on a
    terminal, else one line per finished cell."""

    def __init__(self, total: int, stream=None):
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.t0 = time.monotonic()

    def show(self, done: int, found: int, running: int, final: bool = False) -> None:
        width = 24
        filled = width * done // self.total if self.total else width
        text = (f"[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} cells, "
                f"{found} found, {running} running, {time.monotonic() - self.t0:.0f} s")
        if self.tty:
            self.stream.write("\r" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def run_cells(cells, envs: dict, jobs: int, results: Path, log=_log) -> list[dict]:
    """Run ``cells`` (the ones not finished yet), ``jobs`` child processes at a time, each
    with its mutant's environment; append each one's results line to ``results`` as it
    ends.  Returns the lines written."""
    logs = results.parent / f"{results.stem}-logs"
    logs.mkdir(parents=True, exist_ok=True)
    todo = list(cells)
    running: list[_Running] = []
    written: list[dict] = []
    progress = Progress(len(cells))
    found = 0

    def start(spec: CellSpec) -> None:
        name = f"{spec.mutant}-{spec.engine}-seed{spec.seed}"
        log_path = logs / f"{name}.log"
        out = tempfile.TemporaryFile("w+", encoding="utf-8")
        err = open(log_path, "w", encoding="utf-8")
        env = dict(os.environ, **envs.get(spec.mutant, {}))
        proc = subprocess.Popen(
            [sys.executable, "-m", "rig.drive.bugbench", "cell", json.dumps(asdict(spec))],
            stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)
        running.append(_Running(spec, proc, out, err, log_path, time.monotonic()))

    def finish(r: _Running, error: str | None = None) -> dict:
        code = r.proc.wait()
        r.err.close()
        r.out.seek(0)
        text = r.out.read()
        r.out.close()
        record = {"schema": SCHEMA, "mutant": r.spec.mutant, "base": r.spec.base,
                  "engine": r.spec.engine, "seed": r.spec.seed, "cap_s": r.spec.cap,
                  "found": False, "error": error}
        if error is None:
            try:
                record.update(json.loads(text.strip().splitlines()[-1]))
            except (ValueError, IndexError):
                tail = [line for line in r.log_path.read_text(errors="replace").splitlines()
                        if line.strip()]
                record["error"] = (f"the cell's process exited {code} with no result: "
                                   + (tail[-1][:300] if tail else "no output")
                                   + f" (log: {r.log_path})")
        if record.get("found") and record.get("trace") is None:
            record["trace"] = os.path.relpath(r.spec.trace_out, results.parent)
        record["log"] = os.path.relpath(r.log_path, results.parent)
        return record

    try:
        while todo or running:
            while todo and len(running) < jobs:
                start(todo.pop(0))
            time.sleep(0.2)
            for r in list(running):
                late = time.monotonic() - r.started > r.spec.cap + CELL_GRACE_S
                if r.proc.poll() is None and not late:
                    continue
                error = None
                if late and r.proc.poll() is None:
                    r.proc.kill()
                    error = (f"the cell ran {CELL_GRACE_S:g} s past its cap and was killed "
                             f"(log: {r.log_path})")
                running.remove(r)
                record = finish(r, error)
                _append(results, record)
                written.append(record)
                found += bool(record.get("found"))
                if record.get("error"):
                    log(f"bugbench: {r.spec.mutant} {r.spec.engine} seed {r.spec.seed}: "
                        f"ERROR: {record['error']}")
                progress.show(len(written), found, len(running), final=not todo and not running)
    finally:
        for r in running:  # (interrupted: the finished cells are in the file already)
            r.proc.kill()
            r.proc.wait()
            r.out.close()
            r.err.close()
    return written


def default_jobs() -> int:
    """Every core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


# -- the summary ------------------------------------------------------------------------

def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


@dataclass
class Row:
    """One (mutant, engine): found in ``found`` of ``cells`` finished cells; the medians
    are over the cells that found it (None: none did, or the engine cannot measure it)."""

    mutant: str
    engine: str
    found: int = 0
    cells: int = 0
    expected: int = 0       # the cells the plan has for it
    errors: int = 0
    median_time_s: float | None = None
    median_execs: float | None = None
    median_ops: float | None = None
    deterministic: bool = False
    times: list = field(default_factory=list)   # per planned cell: seconds, or None


def summarize(cells, done: dict, errors: dict, classes, engines) -> dict:
    """The table's rows, the per-engine totals and the curves' data, from the finished
    cells (``done``: key -> results line) of the plan ``cells``."""
    rows: dict[tuple, Row] = {}
    for cls in classes:
        for name in engines:
            rows[(cls.name, name)] = Row(cls.name, name, deterministic=not ENGINES[name].seeded)
    for spec in cells:
        row = rows[(spec.mutant, spec.engine)]
        row.expected += 1
        record = done.get(spec.key)
        if record is None:
            row.errors += spec.key in errors
            continue
        row.cells += 1
        row.found += bool(record.get("found"))
        row.times.append(record.get("time_s") if record.get("found") else None)
    for row in rows.values():
        found = [done[s.key] for s in cells if (s.mutant, s.engine) == (row.mutant, row.engine)
                 and s.key in done and done[s.key].get("found")]
        row.median_time_s = _median([r.get("time_s") for r in found])
        row.median_execs = _median([r.get("execs") for r in found])
        row.median_ops = _median([r.get("trace_ops") for r in found])
    totals = {}
    for name in engines:
        mine = [rows[(cls.name, name)] for cls in classes]
        both = [(r, rows[(r.mutant, "swarm")]) for r in mine if "swarm" in engines
                and r.found and rows[(r.mutant, "swarm")].found
                and r.median_time_s is not None and rows[(r.mutant, "swarm")].median_time_s]
        ratios = [r.median_time_s / s.median_time_s for r, s in both]
        totals[name] = {"engine": name, "mutants": len(mine),
                        "mutants_found": sum(1 for r in mine if r.found),
                        "swarm_ratio": _median(ratios), "swarm_ratio_mutants": len(ratios)}
    return {"rows": list(rows.values()), "totals": totals}


def median_time_to_find(row: Row) -> float | None:
    """The plot's time for one (mutant, engine): the median over its cells, a cell that
    did not find it counting as never (so it is found only when more than half of its
    seeds found it)."""
    if not row.cells:
        return None
    value = statistics.median(t if t is not None else float("inf") for t in row.times)
    return None if value == float("inf") else value


# -- the processes ----------------------------------------------------------------------

def _child_main(argv) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m rig.drive.bugbench")
    sub = parser.add_subparsers(dest="what", required=True)
    c = sub.add_parser("cell", help="run one cell; its results as one JSON line on stdout")
    c.add_argument("spec", help="the CellSpec as JSON")
    k = sub.add_parser("kill-check", help="replay a minimized trace on the unmutated "
                       "design or core; {clean, outcome} as JSON on stdout")
    k.add_argument("--base", required=True, help="the unmutated design")
    k.add_argument("file", help="the trace, or - for stdin")
    args = parser.parse_args(argv)
    if args.what == "kill-check":
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
        clean, outcome = replay_on_base(text, args.base)
        print(json.dumps({"clean": clean, "outcome": outcome}))
        return 0
    spec = CellSpec(**json.loads(args.spec))
    print(json.dumps(run_cell(spec), sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    from rig.drive import bugbench  # (the module, not a second copy of it as __main__)

    sys.exit(bugbench._child_main(sys.argv[1:]))
