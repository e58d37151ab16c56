"""``rig fuzz``: the main job.  Runs the harnesses of the registry (rig.drive.harnesses)
as libFuzzer processes of the in-package target (``python -m rig.drive.target NAME``)
against the instrumented core when it can be built, one harness after another, shows
live progress, triages every crash in the parent and turns each new finding into a
minimized trace.

Triage is the parent's, once.  Before a harness starts, the campaign knows the
signatures of the regression corpus (each trace of ``regressions/`` replayed: it counts
for the harnesses whose design is the trace's; the core traces of ``core/`` for the core
harnesses) and of its own earlier findings in the same scope (the design, or the core).
A harness process gets them in RIG_FUZZ_KNOWN and skips an input whose finding has one
(rig.drive.base.is_known), writing the signature to RIG_FUZZ_SEEN once; the campaign
reads the crash inputs as libFuzzer writes them, computes their signatures in-process
and tells the workers started from then on.  So one bug is one finding however many
inputs, workers, restarts and harnesses reach it, a restart does not die on the input
that ended the run before it, and the summary says which known findings were met.

Nothing found is ever lost: libFuzzer writes each crash input before it exits; the
campaign copies it atomically into corpora/crashes/ *before* decoding or minimizing it,
so a failure in the rig's own post-processing, or a Ctrl-C, still leaves the raw finding.

Nothing is reported that did not happen: a harness that executed no input, a worker
that died without an artifact that explains it, a canary that did not fail, a
harness that crashes again on a signature it was told is known, or an input on which
the rig is wrong about itself (rig.errors.RIG_BUG: the incremental oracle disagreeing
with the full one; the raw input is kept, nothing is minimized) is an infrastructure
failure (exit 3), one line each, never a finding about the design.  ``--time``
bounds the whole campaign's wall clock: the instrumented build, the corpus replays,
every worker's start-up and the minimizations included.

``--until-kill BASE`` (the bug benchmark, rig.drive.bugbench) minimizes each new finding
as soon as it is triaged and replays it on design BASE with the unmutated core; the first
one that is clean there kills the mutant under test and stops the campaign, the
harnesses not yet run included.  Every finding carries ``found_s`` and ``found_runs``,
when it was found and after how many inputs (FUZZ_JSON_FIELDS says which runs count).

``--jobs N`` is libFuzzer's -jobs/-workers model: N independent libFuzzer processes per
harness on one corpus folder, each reloading what the others add (-reload, every
second).  The campaign starts the N workers itself rather than through libFuzzer's
``-jobs=N`` launcher, which is one more instrumented interpreter start-up, writes each
worker's output to fuzz-<n>.log in the working folder and outlives -max_total_time
(``-jobs=2 -max_total_time=4`` took 7 s here): started here, every worker's progress,
crash and exit status reach the campaign, a worker a finding stopped is restarted told
the new signature, and each one is stopped (SIGTERM: libFuzzer prints its final
stats) at the end of its harness' slot.  Not fork mode (-fork=N): each fork job is a new
interpreter (1-2.5 s of start-up here) fuzzing 1 s, then 2 s, ...; the fork parent
runs a merge of its own first and waits for its jobs (``-fork=2 -max_total_time=10``
took 18.8 s here).
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from rig.drive import base, harnesses, native
from rig.errors import RIG_BUG

ROOT = Path(__file__).resolve().parents[2]
#: The version of ``rig fuzz --json``'s document (the fields are listed in `rig fuzz
#: --help`); a field's meaning never changes within one version.
SCHEMA = 1
STATUS = re.compile(r"^#(\d+)\s+(\w+)\s+cov: (\d+)(?: ft: \d+)? corp: (\d+)/")
FINAL_RUNS = re.compile(r"^stat::number_of_executed_units:\s*(\d+)")
DONE = re.compile(r"^Done (\d+) runs in ")
WRITTEN = re.compile(r"Test unit written to (\S+)")
DICTIONARY = re.compile(r"^Dictionary: (\d+) entries")
UNRECOGNIZED = re.compile(r"^WARNING: unrecognized flag '([^']*)'")
ARTIFACT_KINDS = ("crash", "timeout", "oom", "leak")
SMOKE_RUNS = {"canary": 100000, "native_canary": 300000}
SMOKE_RUNS_DEFAULT = 1500
SMOKE_RUNS_HELP = f"{SMOKE_RUNS_DEFAULT}; " + ", ".join(
    f"{n} for {name}" for name, n in SMOKE_RUNS.items())
#: First guess at a harness worker's start-up (the instrumented import, then libFuzzer
#: running the corpus once), for a harness no earlier campaign measured; each campaign
#: records what it measured (artifacts/startup.json) for the next one to plan with.
STARTUP_S = 2.5
#: The least fuzzing a harness is given once started: below it, it is dropped.
MIN_FUZZ_S = 1.0
#: What a harness needs after its workers are told to stop: their exit, the last triage.
POST_S = 0.5
#: The least time the minimization of one new finding gets, even in a late campaign.
MINIMIZE_MIN_S = 1.0
#: With --until-kill, the most a finding's minimization takes before its kill check
#: (within the campaign's --time; the bounded minimizer keeps its best so far).
UNTIL_KILL_MINIMIZE_S = 20.0
#: The campaign's document (``--json``'s), written into --artifacts by every campaign.
CAMPAIGN_JSON = "campaign.json"
#: Seconds between two samples of a harness' time series (HarnessRun.series).
SERIES_EVERY_S = 2.0
#: Restarts of the workers of one harness after findings within its time slot.
RESTARTS_MAX = 12
#: Seconds a worker told to stop (SIGTERM: libFuzzer prints its final stats) may take
#: before it is killed.
STOP_GRACE_S = 3.0
#: A worker crashing again on a signature it was told is known, this often, is a harness
#: that does not skip known findings: the campaign stops trusting its restarts.
REPEATS_MAX = 2
#: libFuzzer flags the campaign sets itself: after ``--`` they are refused, with the
#: option that replaces them.
OWN_FLAGS = {
    "fork": "--jobs", "jobs": "--jobs", "workers": "--jobs", "max_total_time": "--time",
    "seed": "--seed", "artifact_prefix": "--artifacts", "exact_artifact_path": "--artifacts",
    "merge": "nothing: the workers add new inputs to the corpus themselves",
    "set_cover_merge": "nothing", "minimize_crash": "rig minimize", "cleanse_crash": "nothing",
    "close_fd_mask": "nothing: the campaign reads libFuzzer's output",
    "print_final_stats": "nothing: the campaign needs them", "help": "nothing",
}


#: ``rig fuzz --json``'s document, for the help (``rig fuzz --help``) and the README.
FUZZ_JSON_FIELDS = f"""\
--json: stdout is one JSON document and nothing else, "schema": {SCHEMA} (every campaign
also writes it to ARTIFACTS/{CAMPAIGN_JSON}, which `rig report` reads):
  schema, seed, build (native-fuzzer, plain, pure-python, ...), mode (time | smoke),
  commit (git describe --always --dirty of the rig, or null), date (the campaign's
    start, UTC), machine (hostname, cpus, python, platform),
  time_budget_s, wall_seconds (the whole campaign), jobs, libfuzzer_flags,
  interrupted, exit_code, errors (one line each: the exit-3 reasons),
  findings (the new ones: harness, kind, signature, summary, raw, trace, known,
    inputs, seen_by, same_trace (the other signatures whose inputs minimized to the
    same trace: one bug, one finding), replay, found_s (seconds from the campaign's
    start to when its first raw crash was saved), found_runs (inputs executed up to it:
    every earlier harness' runs, the runs of the worker that found it up to its crash,
    its input included, and each other live worker's count as it last reported it,
    a lower bound; exact with --jobs 1), kills and kill_check (with --until-kill:
    whether its minimized trace is clean on BASE, and what it does there; else null)),
  until_kill (with --until-kill: base, killed (the signature of the finding that
    stopped the campaign, or null), not_run (the harnesses it stopped before)),
  silent_canaries, dropped and skipped ([{{name, reason}}]), not_run (interrupted),
  harnesses: one object each: name, kind, build, workers, runs (inputs executed, all
    workers and restarts), execs_per_s (runs per second of wall time), cov, corpus,
    new_inputs, seconds (wall time), startup_s, slot_s, restarts, restart_cap_left_s
    (the slot left when restarts ran out, else null), worker_runs (each
    worker's runs, in start order), exit_codes,
    findings, known_seen ([{{signature, source}}]: known findings it ran into),
    first_finding_s, dictionary, dictionary_entries, command (the first worker's),
    libfuzzer_args (its flags and corpus folders), error, interrupted,
    series (the harness over time: a sample every {SERIES_EVERY_S:g} s and one at its end,
    which holds its totals: [{{t (seconds from the campaign's start), elapsed (from the
    harness'), runs, execs_per_s (since the sample before), cov, corpus, findings}}])."""


@dataclass
class Finding:
    harness: str
    kind: str          # crash | timeout | oom | leak
    raw: str           # the raw input, in corpora/crashes/
    trace: str | None = None     # the minimized trace, if the harness decodes to one
    summary: str = ""
    signature: str = ""          # what kind of finding: told to later runs as known
    known: str | None = None     # the regression trace it matches, if it is not new
    inputs: int = 1              # crash inputs with this signature, in this campaign
    seen_by: list = field(default_factory=list)  # later harnesses that ran into it
    #: Other signatures whose inputs minimized to this same trace: one bug, one finding.
    same_trace: list = field(default_factory=list)
    #: Seconds from the campaign's start to when its first raw crash was saved, and the
    #: inputs executed up to it (FUZZ_JSON_FIELDS says which runs count).
    found_s: float | None = None
    found_runs: int | None = None
    #: With --until-kill: whether the minimized trace is clean on the base design (the
    #: finding kills the mutant; rig.drive.bugbench.kill_check), and what it does there.
    kills: bool | None = None
    kill_check: str | None = None

    def replay_command(self) -> str:
        from rig.world.designs import load_option

        load = load_option(self.harness.partition(":")[2])  # a design of one's own
        load = load + " " if load else ""
        if self.trace:
            return f"rig replay {load}{self.trace}"
        return f"rig replay {load}--harness {self.harness} {self.raw}"

    def to_json(self) -> dict:
        return {"harness": self.harness, "kind": self.kind, "raw": self.raw,
                "trace": self.trace, "summary": self.summary, "signature": self.signature,
                "known": self.known, "inputs": self.inputs, "seen_by": list(self.seen_by),
                "same_trace": list(self.same_trace), "replay": self.replay_command(),
                "found_s": self.found_s, "found_runs": self.found_runs,
                "kills": self.kills, "kill_check": self.kill_check}


@dataclass
class HarnessRun:
    name: str
    kind: str
    build: str
    workers: int = 1
    runs: int = 0                # inputs executed, every worker and restart together
    cov: int = 0
    corpus: int = 0
    new_inputs: int = 0          # files the corpus gained
    execs_per_s: int = 0         # runs per second of the harness' wall time
    seconds: float = 0.0         # wall time, start-up, triage and minimizing included
    startup_s: float | None = None   # a worker's start-up until libFuzzer fuzzes (mean)
    slot_s: float | None = None  # the wall time the plan gave it (None: smoke)
    restarts: int = 0
    #: Seconds of its slot left when a worker ended on a finding after RESTARTS_MAX
    #: restarts, and was not restarted (None: the cap was not reached).
    restart_cap_left_s: float | None = None
    worker_runs: list = field(default_factory=list)  # each worker's runs, in start order
    exit_codes: list = field(default_factory=list)
    findings: list = field(default_factory=list)
    known_seen: list = field(default_factory=list)  # [{"signature", "source"}]
    first_finding_s: float | None = None  # seconds from the harness' start
    dictionary: str | None = None
    dictionary_entries: int | None = None
    command: list = field(default_factory=list)         # the first worker's argv
    libfuzzer_args: list = field(default_factory=list)  # its flags and corpus folders
    error: str | None = None
    interrupted: bool = False
    #: The harness over time: a sample every SERIES_EVERY_S of its slot and one at its
    #: end (which holds the totals above), each {t: seconds from the campaign's start,
    #: elapsed: from the harness' start, runs, execs_per_s (since the sample before),
    #: cov, corpus, findings}, from its workers' libFuzzer status lines.
    series: list = field(default_factory=list)

    def sample(self, t: float, elapsed: float) -> None:
        """Append the harness' state now to ``series``."""
        last = self.series[-1] if self.series else {"elapsed": 0.0, "runs": 0}
        span = elapsed - last["elapsed"]
        self.series.append({
            "t": round(t, 2), "elapsed": round(elapsed, 2), "runs": self.runs,
            "execs_per_s": int((self.runs - last["runs"]) / span) if span > 0 else 0,
            "cov": self.cov, "corpus": self.corpus, "findings": len(self.findings)})

    def to_json(self) -> dict:
        out = {k: v for k, v in vars(self).items() if k != "findings"}
        out["findings"] = [f.to_json() for f in self.findings]
        out["seconds"] = round(self.seconds, 2)
        return out


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def default_jobs() -> int:
    """Every core this process may run on (its affinity mask, else the machine's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def corpus_dirs(root: Path, harness: str) -> list[str]:
    """The harness' corpus (created and seeded when empty), where the workers add new
    inputs, then read-only extras (trace_text: the regression corpus)."""
    from rig.trace import corpus

    base_name = harness.split(":")[0]
    main = root / base_name
    main.mkdir(parents=True, exist_ok=True)
    if not any(main.iterdir()):
        for i, seed in enumerate(harnesses.HARNESSES[base_name].seeds()):
            (main / f"seed-{i:02d}").write_bytes(seed)
    dirs = [str(main)]
    regressions = corpus.root() / "regressions"
    if base_name == "trace_text" and regressions.is_dir():
        dirs.append(str(regressions))
    return dirs


def _atomic_copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + f".tmp{os.getpid()}")
    shutil.copyfile(src, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, dst)


def _write_lines(path: Path, lines) -> None:
    """Replace ``path`` atomically: a worker starting now reads the old or the new list."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    os.replace(tmp, path)


def keep_raw(harness: str, path: Path, crashes: Path) -> Path:
    """Copy a libFuzzer artifact into corpora/crashes/, atomically, before anything else."""
    crashes.mkdir(parents=True, exist_ok=True)
    raw = crashes / f"{harness.replace(':', '_')}-{path.name}.raw"
    if not raw.exists():
        _atomic_copy(path, raw)
    return raw


def provenance(started: float) -> dict:
    """Where and from what a document was made: the rig's commit (``git describe
    --always --dirty``: a tree with uncommitted changes says so; None outside a git
    checkout), the date ``started`` (time.time(), UTC, to the second) and the machine.
    Said beside the results, never inside them: no figure depends on it."""
    import platform
    import socket

    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                                capture_output=True, text=True, timeout=10,
                                check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"commit": commit,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "machine": {"hostname": socket.gethostname(), "cpus": os.cpu_count(),
                        "python": platform.python_version(), "platform": platform.platform()}}


def write_document(path: Path, doc: dict) -> None:
    """``path`` holds ``doc`` (JSON) whole or not at all: a temp file, then os.replace,
    so a reader (``rig report``) never sees half a campaign."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _rel(path) -> str:
    """``path`` relative to the working directory when it is inside it (as the user typed
    the corpus and artifact folders), else absolute."""
    path = Path(path).resolve()
    cwd = Path.cwd().resolve()
    return str(path.relative_to(cwd)) if path.is_relative_to(cwd) else str(path)


def signature(harness: harnesses.Harness, data: bytes) -> str:
    """What a crash input does, in a few words (rig.drive.base.exception_signature): the
    campaign's one notion of "the same finding".  Computed with no known signature, so
    that what the harness would skip in a worker is still named here."""
    saved = base.KNOWN
    base.KNOWN = frozenset()
    try:
        harness.one_input(data)
    except Exception as exc:  # noqa: BLE001 - a finding, a core mismatch or a bug of the rig
        return base.exception_signature(exc)
    finally:
        base.KNOWN = saved
    return "does not reproduce in-process"


def scope_of(harness: harnesses.Harness) -> str:
    """What a harness' findings are about, so that a signature found by one is known to
    the others: its design (world harnesses), the core, or the canary itself."""
    if harness.kind == "core":
        return "core"
    if harness.kind == "world":
        return f"design {harness.name.partition(':')[2] or harnesses.DEFAULT_DESIGN}"
    return f"harness {harness.name}"


class Known:
    """The signatures the campaign has, by scope (``scope_of``), each with where it comes
    from: a regression trace, or the harness of this campaign that found it."""

    def __init__(self):
        self.by_scope: dict[str, dict[str, str]] = {}

    def add(self, scope: str, sig: str, source: str) -> bool:
        known = self.by_scope.setdefault(scope, {})
        if sig in known:
            return False
        known[sig] = source
        return True

    def source(self, scope: str, sig: str) -> str | None:
        return self.by_scope.get(scope, {}).get(sig)

    def signatures(self, scope: str) -> list[str]:
        return sorted(self.by_scope.get(scope, {}))


def load_regressions(known: Known, log=_log) -> int:
    """Replay the regression corpus (rig.trace.corpus.root()) and record each trace's
    signature as known: a world trace for its design, a core trace for the core.
    Returns how many were recorded."""
    from rig.check.session import run
    from rig.trace import core as core_trace
    from rig.trace import corpus
    from rig.trace.format import load

    count = 0
    for path in corpus.regressions():
        try:
            trace = load(str(path))
            if trace.expect is None or trace.expect.kind != "violation":
                continue  # an ok or VM-stop trace: no harness reports it
            result = run(trace.config, trace.ops)
        except Exception as exc:  # noqa: BLE001 - one broken file must not stop the campaign
            log(f"rig fuzz: WARNING: {_rel(path)}: {type(exc).__name__}: {exc}; not counted "
                "as a known finding")
            continue
        # Known is what the trace says it shows and still shows: a trace that no longer
        # fails as it expects names nothing known (the corpus tests report it).
        if trace.expect.matches(result.outcome):
            count += known.add(f"design {trace.config.design}",
                               base.violation_signature(result.outcome, result.steps),
                               _rel(path))
    for path in sorted((corpus.root() / "core").glob("*.trace")):
        try:
            trace = core_trace.load(str(path))
            if trace.expect is None or trace.expect.kind != "mismatch":
                continue  # the core's ok traces: a mismatch on one is new, not known
            result = core_trace.run_core(trace.config, trace.ops, harnesses._core_impls())
        except Exception as exc:  # noqa: BLE001
            log(f"rig fuzz: WARNING: {_rel(path)}: {type(exc).__name__}: {exc}; not counted "
                "as a known finding")
            continue
        if result.outcome.kind == "mismatch" and trace.expect.matches(result.outcome):
            count += known.add("core", result.outcome.error.signature, _rel(path))
    return count


def check_libfuzzer_args(extra: list[str]) -> None:
    """Refuse what is not a libFuzzer flag, and the flags the campaign sets itself."""
    from rig.errors import UsageError

    for arg in extra:
        if not re.match(r"^-[A-Za-z_]+=", arg):
            raise UsageError(f"{arg!r} after --: libFuzzer flags are -name=value (the "
                             "corpus folders are the campaign's: --corpus-dir)")
        flag = arg[1:].split("=", 1)[0]
        if flag in OWN_FLAGS:
            raise UsageError(f"-{flag} after --: the campaign sets it; use {OWN_FLAGS[flag]}")


# -- planning: wall-clock shares ------------------------------------------------------------

def harness_cost(startup: float) -> float:
    """The least wall time one harness needs: its start-up, a second of fuzzing and its
    stop."""
    return startup + MIN_FUZZ_S + POST_S


def plan(names: list[str], left: float, cost) -> tuple[list[str], list[str]]:
    """The harnesses that fit in ``left`` seconds, in order (``cost(name)``: each one's
    least wall time), and the ones dropped from the end."""
    kept: list[str] = []
    total = 0.0
    for name in names:
        if total + cost(name) > left:
            break
        kept.append(name)
        total += cost(name)
    return kept, names[len(kept):]


def slot(name: str, left: float, remaining: list[str], cost) -> float:
    """The wall time of the next harness, ``name``: its own least cost plus an equal share
    of what ``left`` holds beyond every remaining harness' least cost."""
    spare = left - sum(cost(n) for n in remaining)
    return cost(name) + max(0.0, spare) / len(remaining)


def _load_startup(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


# -- the workers ----------------------------------------------------------------------------

class Worker:
    """One libFuzzer process of a harness; its stderr is read by the campaign's loop."""

    def __init__(self, index: int, argv: list, env: dict, art_dir: Path, known: frozenset):
        self.index = index
        self.art_dir = art_dir
        self.known = known          # what it was told at its start
        self.started = time.monotonic()
        self.inited: float | None = None
        self.runs = 0
        self.final: int | None = None
        self.cov = 0
        self.corpus = 0
        self.written: list[Path] = []
        self.dictionary_entries: int | None = None
        self.unrecognized: list[str] = []
        self.tail: deque = deque(maxlen=40)
        self.stopping = False      # the campaign told it to stop
        self.eof = False
        self._buf = b""
        # A session of its own: a Ctrl-C on the terminal reaches the campaign only (in a
        # Python worker it would raise KeyboardInterrupt inside the harness, which
        # libFuzzer reports as a crash); the campaign stops its workers itself.
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True)
        os.set_blocking(self.proc.stderr.fileno(), False)

    @property
    def executed(self) -> int:
        return self.final if self.final is not None else self.runs

    def read(self) -> None:
        while True:
            try:
                chunk = os.read(self.proc.stderr.fileno(), 65536)
            except BlockingIOError:
                return
            if not chunk:
                self.eof = True
                if self._buf:
                    self._line(self._buf.decode("utf-8", "replace"))
                    self._buf = b""
                return
            self._buf += chunk
            *lines, self._buf = self._buf.split(b"\n")
            for line in lines:
                self._line(line.decode("utf-8", "replace"))

    def _line(self, line: str) -> None:
        line = line.rstrip("\r")
        if line.strip() and not line.startswith("INFO: Instrumenting"):
            self.tail.append(line)
        m = STATUS.match(line)
        if m:
            count, kind, cov, corp = m.groups()
            self.runs = max(self.runs, int(count))
            self.cov = max(self.cov, int(cov))
            self.corpus = int(corp)
            # Start-up ends at INITED; a large corpus is read with "pulse" lines first.
            if self.inited is None and kind == "INITED":
                self.inited = time.monotonic()
            return
        for pattern in (FINAL_RUNS, DONE):
            m = pattern.match(line)
            if m:
                self.final = max(self.final or 0, int(m.group(1)))
                return
        m = WRITTEN.search(line)
        if m:
            self.written.append(Path(m.group(1)))
            return
        m = DICTIONARY.match(line)
        if m:
            self.dictionary_entries = int(m.group(1))
            return
        m = UNRECOGNIZED.match(line)
        if m:
            self.unrecognized.append(m.group(1))

    def stop(self) -> None:
        if self.proc.poll() is None and not self.stopping:
            self.stopping = True
            try:
                self.proc.terminate()
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass

    def artifacts(self) -> list[Path]:
        if not self.art_dir.is_dir():
            return []
        return sorted(p for p in self.art_dir.iterdir()
                      if p.name.split("-")[0] in ARTIFACT_KINDS and ".tmp" not in p.name)

    def why(self) -> str:
        """The last line of its output that says something (for a one-line error)."""
        for line in reversed(self.tail):
            text = line.strip()
            if text and not text.startswith(("INFO:", "stat::", "MS:", "#", "***")):
                return text[:200]
        return "no output"


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class Campaign:
    """One ``rig fuzz`` run: its settings, what it knows, and the loop that runs a
    harness' workers."""

    def __init__(self, args, env: dict, build: str, corpus_root: Path, artifacts: Path,
                 extra: list[str], jobs: int, log=_log):
        self.args = args
        self.env = env
        self.build = build
        self.corpus_root = corpus_root
        self.artifacts = artifacts
        self.crashes = corpus_root / "crashes"
        self.extra = extra
        self.jobs = jobs
        self.log = log
        self.known = Known()
        self.findings: dict[tuple[str, str], Finding] = {}  # (scope, signature) -> finding
        self.interrupted = False
        self.usage_error: str | None = None
        #: The campaign's start (main sets it), for each finding's found_s.
        self.t0 = time.monotonic()
        #: Inputs the harnesses run so far executed (each harness adds its own at its end).
        self.runs_done = 0
        #: --until-kill BASE: the finding whose minimized trace is clean on BASE stops it.
        self.until_kill: str | None = getattr(args, "until_kill", None)
        self.killed: Finding | None = None
        self.live: list[Worker] = []
        self.progress = Progress()
        #: harness -> a worker's measured start-up (artifacts/startup.json, then this run)
        self.startup: dict[str, float] = {}
        self._dictionaries: dict | None = None

    # -- SIGINT -------------------------------------------------------------------------
    def on_sigint(self, signum, frame) -> None:
        if self.interrupted:
            raise KeyboardInterrupt  # a second Ctrl-C: stop at once
        self.interrupted = True
        self.log("\nrig fuzz: interrupted: stopping the workers, then the summary "
                 "(Ctrl-C again to stop at once)")

    def kill_all(self) -> None:
        for w in self.live:
            w.kill()
        for w in self.live:
            try:
                w.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    # -- one harness ----------------------------------------------------------------------
    def worker_argv(self, h, seed: int, wdir: Path, fuzz_left: float | None,
                    runs: int | None, dictionary: Path | None) -> list[str]:
        return (self.worker_flags(h, seed, wdir, fuzz_left, runs, dictionary)
                + corpus_dirs(self.corpus_root, h.name))

    def worker_flags(self, h, seed: int, wdir: Path, fuzz_left: float | None,
                     runs: int | None, dictionary: Path | None) -> list[str]:
        """A worker's command and libFuzzer flags, without the corpus folders (``rig
        bench campaign`` runs the same workers on a seed corpus of its own)."""
        args = [sys.executable, "-m", "rig.drive.target", h.base, f"-seed={seed}",
                f"-artifact_prefix={wdir}/", "-print_final_stats=1", "-timeout=20",
                "-rss_limit_mb=3072", "-max_len=4096"]
        if dictionary is not None and not any(a.startswith("-dict=") for a in self.extra):
            args.append(f"-dict={dictionary}")
        if runs is not None:
            args.append(f"-runs={runs}")
        else:
            # A backstop: the campaign stops its workers itself at the slot's end.
            args.append(f"-max_total_time={max(1, int(fuzz_left) + 2)}")
        return args + list(self.extra)

    def run_harness(self, name: str, slot_s: float | None, runs: int | None,
                    campaign_deadline: float | None) -> HarnessRun:
        h = harnesses.harness_for(name)
        scope = scope_of(h)
        jobs = 1 if runs is not None else self.jobs
        run = HarnessRun(name, h.kind, self.build, workers=jobs, slot_s=slot_s and round(slot_s, 2))
        start = time.monotonic()
        fuzz_end = start + slot_s - POST_S if slot_s is not None else None
        art_dir = self.artifacts / name.replace(":", "_")
        art_dir.mkdir(parents=True, exist_ok=True)
        self._salvage(name, art_dir)
        known_file, seen_file = art_dir / "known-signatures", art_dir / "seen-signatures"
        _write_lines(known_file, self.known.signatures(scope))
        seen_file.write_text("")
        dictionary = self.dictionary(name)
        run.dictionary = _rel(dictionary) if dictionary is not None else None
        main_corpus = Path(corpus_dirs(self.corpus_root, name)[0])
        corpus_before = sum(1 for _ in main_corpus.iterdir())
        env = dict(os.environ, **self.env, RIG_FUZZ_KNOWN=str(known_file),
                   RIG_FUZZ_SEEN=str(seen_file))
        env.pop("RIG_FUZZ_DESIGN", None)
        if h.kind == "world":
            env["RIG_FUZZ_DESIGN"] = name.partition(":")[2]
        groups: dict[str, tuple[Finding, bytes]] = {}   # new findings of this harness
        pending: list = []   # (finding, the worker that found it, the others' runs then)
        triaged: set = set()
        repeats: dict[str, int] = {}
        spawned = 0
        finished: list[Worker] = []
        errors: list[str] = []
        sel = selectors.DefaultSelector()

        def spawn() -> None:
            nonlocal spawned
            wdir = art_dir / f"worker-{spawned:02d}"
            shutil.rmtree(wdir, ignore_errors=True)
            wdir.mkdir(parents=True)
            left = None if fuzz_end is None else fuzz_end - time.monotonic()
            argv = self.worker_argv(h, self.args.seed + spawned, wdir, left, runs, dictionary)
            if not run.command:
                run.command = argv
                run.libfuzzer_args = argv[4:]
            w = Worker(spawned, argv, env, wdir, frozenset(self.known.signatures(scope)))
            spawned += 1
            self.live.append(w)
            sel.register(w.proc.stderr, selectors.EVENT_READ, w)

        def triage(w: Worker, path: Path) -> None:
            if path in triaged or not path.is_file():
                return
            triaged.add(path)
            raw = keep_raw(name, path, self.crashes)
            saved_s = time.monotonic() - self.t0
            kind = path.name.split("-")[0]
            data = raw.read_bytes()
            sig = signature(h, data) if kind == "crash" else kind
            finding = self.findings.get((scope, sig))
            if finding is not None or self.known.source(scope, sig) is not None:
                if kind == "crash" and sig in w.known and sig != "does not reproduce in-process":
                    repeats[sig] = repeats.get(sig, 0) + 1
                if finding is not None and finding.harness == name:
                    finding.inputs += 1
                    smallest = groups[sig][1]
                    if len(data) < len(smallest):
                        finding.raw = _rel(raw)
                        groups[sig] = (finding, data)
                else:
                    self._seen(run, scope, sig)
                return
            if run.first_finding_s is None:
                run.first_finding_s = round(time.monotonic() - start, 1)
            finding = Finding(name, kind, _rel(raw), signature=sig, found_s=round(saved_s, 2))
            # found_runs: the finding worker's own count is taken once it has ended (its
            # final stats); the others' as they stand now.
            pending.append((finding, w, self.runs_done + sum(
                o.executed for o in finished + self.live if o is not w)))
            self.findings[(scope, sig)] = finding
            self.known.add(scope, sig, f"found by {name} in this campaign")
            groups[sig] = (finding, data)
            run.findings.append(finding)
            if kind == "crash":
                # Workers started from now on skip it (restarts, the next harnesses).
                _write_lines(known_file, self.known.signatures(scope))
            if self.until_kill and kind == "crash" and self.killed is None:
                # Judged now, not after the slot: the first kill ends the campaign.
                now = time.monotonic()
                self.minimize(h, finding, data, max(now + MINIMIZE_MIN_S, min(
                    now + UNTIL_KILL_MINIMIZE_S, campaign_deadline or float("inf"))))
                self.judge_kill(finding)
                if finding.kills:
                    self.killed = finding

        def finish(w: Worker) -> None:
            sel.unregister(w.proc.stderr)
            w.proc.stderr.close()
            w.proc.wait()
            self.live.remove(w)
            finished.append(w)
            code = w.proc.returncode
            run.exit_codes.append(code)
            new = w.artifacts()
            for path in new:
                triage(w, path)
            if w.unrecognized and self.usage_error is None:
                self.usage_error = (f"libFuzzer does not know {', '.join(w.unrecognized)} "
                                    "(the flags after --; libFuzzer's -help=1 lists them)")
            if w.stopping or code == 0:
                return
            if not new:
                errors.append(f"worker {w.index} {_exit_text(code)} after "
                              f"{time.monotonic() - w.started:.1f} s with no artifact to "
                              f"explain it: {w.why()}")
                return
            # A finding ended the worker: start another, told what is known by now.
            if (runs is None and not self.interrupted and self.usage_error is None
                    and self.killed is None
                    and not any(n >= REPEATS_MAX for n in repeats.values())
                    and fuzz_end - time.monotonic() >= self.startup_estimate(name) + MIN_FUZZ_S):
                if run.restarts < RESTARTS_MAX:
                    run.restarts += 1
                    spawn()
                elif run.restart_cap_left_s is None:
                    # Said in the summary: the harness ends before its slot does.
                    run.restart_cap_left_s = round(fuzz_end - time.monotonic(), 1)

        for _ in range(jobs):
            spawn()
        stop_sent: float | None = None
        sampled = start
        smoke_deadline = start + 900.0
        try:
            while self.live:
                for key, _ in sel.select(timeout=0.2):
                    key.data.read()
                now = time.monotonic()
                for w in list(self.live):
                    for path in w.written:
                        triage(w, path)
                    if w.eof and w.proc.poll() is not None:
                        finish(w)
                    elif w.proc.poll() is not None and not w.eof:
                        w.read()
                end = fuzz_end if fuzz_end is not None else smoke_deadline
                if stop_sent is None and (now >= end or self.interrupted or self.killed
                                          or self.usage_error is not None):
                    stop_sent = now
                    run.interrupted = self.interrupted
                    for w in self.live:
                        w.stop()
                if stop_sent is not None:
                    for w in self.live:
                        w.stop()  # (a worker started just before the stop)
                        if now - stop_sent > STOP_GRACE_S:
                            w.kill()
                self._tally(run, finished, main_corpus)
                if now - sampled >= SERIES_EVERY_S:
                    sampled = now
                    run.sample(now - self.t0, now - start)
                self.progress.update(run, now - start, slot_s)
        except KeyboardInterrupt:
            run.interrupted = self.interrupted = True
            self.kill_all()
            for w in list(self.live):
                w.read()
                finish(w)
        sel.close()
        self._tally(run, finished, main_corpus)
        for sig in (seen_file.read_text().split("\n") if seen_file.exists() else ()):
            if sig:
                self._seen(run, scope, sig)
        startups = [w.inited - w.started for w in finished if w.inited is not None]
        run.startup_s = round(sum(startups) / len(startups), 2) if startups else None
        entries = [w.dictionary_entries for w in finished if w.dictionary_entries is not None]
        run.dictionary_entries = entries[0] if entries else None
        run.corpus = sum(1 for _ in main_corpus.iterdir())
        run.new_inputs = run.corpus - corpus_before
        if slot_s is not None:
            mdeadline = max(start + slot_s, time.monotonic() + MINIMIZE_MIN_S)
            if campaign_deadline is not None:
                mdeadline = min(mdeadline, max(campaign_deadline,
                                               time.monotonic() + MINIMIZE_MIN_S))
        else:
            mdeadline = time.monotonic() + 60.0
        for sig, (finding, data) in sorted(groups.items(), key=lambda kv: len(kv[1][1])):
            if finding.kills is None:  # (not minimized and judged already: --until-kill)
                self.minimize(h, finding, data, mdeadline)
        for finding, w, others in pending:
            finding.found_runs = others + w.executed
        for finding, _ in groups.values():
            n = finding.inputs
            finding.summary = f"{finding.signature} ({n} input{'s' if n > 1 else ''})" + \
                finding.summary
        repeated = sorted(s for s, n in repeats.items() if n >= REPEATS_MAX)
        if repeated:
            errors.insert(0, f"crashed {repeats[repeated[0]]} times on {repeated[0]!r}, which "
                          "its workers were told is known: the harness does not skip known "
                          "findings")
        if not errors and run.runs == 0 and not run.interrupted:
            if finished and all(w.stopping for w in finished):
                errors.append(f"0 inputs executed: its workers were stopped after "
                              f"{run.seconds:.1f} s, before libFuzzer ran an input "
                              "(start-up took longer than the harness' share of --time)")
            else:
                errors.append("0 inputs executed: its workers exited without running an "
                              f"input: {finished[-1].why() if finished else 'none started'}")
        run.error = errors[0] if errors else None
        run.seconds = time.monotonic() - start
        run.execs_per_s = int(run.runs / run.seconds) if run.seconds > 0 else 0
        run.sample(time.monotonic() - self.t0, run.seconds)
        self.runs_done += run.runs
        self.progress.update(run, run.seconds, slot_s, final=True)
        return run

    def _tally(self, run: HarnessRun, finished: list, main_corpus: Path) -> None:
        everyone = sorted(finished + self.live, key=lambda w: w.index)
        run.worker_runs = [w.executed for w in everyone]
        run.runs = sum(run.worker_runs)
        run.cov = max([run.cov] + [w.cov for w in everyone])
        live = [w.corpus for w in self.live if w.corpus]
        if live:
            run.corpus = max(live)

    def _seen(self, run: HarnessRun, scope: str, sig: str) -> None:
        """Harness ``run`` ran into ``sig``, which was known before it found it."""
        finding = self.findings.get((scope, sig))
        if finding is not None and finding.harness == run.name:
            return  # its own finding, met again by a worker started since
        if any(k["signature"] == sig for k in run.known_seen):
            return
        run.known_seen.append({"signature": sig,
                               "source": self.known.source(scope, sig) or "known"})
        if finding is not None and run.name not in finding.seen_by:
            finding.seen_by.append(run.name)

    def _salvage(self, name: str, art_dir: Path) -> None:
        """Artifacts an earlier campaign left (it was killed before its triage) go to
        corpora/crashes/ as they are; then the workers' folders start empty."""
        for wdir in sorted(art_dir.glob("worker-*")):
            for path in sorted(wdir.iterdir()) if wdir.is_dir() else ():
                if path.name.split("-")[0] in ARTIFACT_KINDS and ".tmp" not in path.name:
                    keep_raw(name, path, self.crashes)
            shutil.rmtree(wdir, ignore_errors=True)

    def dictionary(self, name: str) -> Path | None:
        """The libFuzzer dictionary of harness ``name``: fuzz/<name>.dict of a checkout,
        else the one rig.trace.dictionaries (their source of truth) generates, written
        into the artifacts folder once per campaign (an installed package has no fuzz/).
        None: the harness has none."""
        from rig.trace import dictionaries

        file = f"{name.split(':')[0]}.dict"
        if file not in {f"{n}.dict" for n in dictionaries.FILES}:
            return None
        checkout = ROOT / "fuzz" / file
        if (ROOT / "setup.py").is_file() and checkout.is_file():
            return checkout
        if self._dictionaries is None:
            out = self.artifacts / "dictionaries"
            out.mkdir(parents=True, exist_ok=True)
            self._dictionaries = {}
            for n, text in dictionaries.generate().items():
                _write_lines(out / n, text.splitlines())
                self._dictionaries[n] = out / n
        return self._dictionaries[file]

    def startup_estimate(self, name: str) -> float:
        return self.startup.get(name) or self.startup_default()

    def startup_default(self) -> float:
        measured = [v for v in self.startup.values() if v]
        return sum(measured) / len(measured) if measured else STARTUP_S

    # -- minimizing -------------------------------------------------------------------
    def judge_kill(self, finding: Finding) -> None:
        """--until-kill: whether the finding's minimized trace is clean on the base design
        (rig.drive.bugbench.kill_check, the bug benchmark's one kill criterion)."""
        from rig.drive.bugbench import kill_check

        if finding.trace is None:
            finding.kills, finding.kill_check = False, "no minimized trace to check"
            return
        verdict = kill_check(Path(finding.trace).read_text(encoding="utf-8"), self.until_kill)
        finding.kills = verdict.kills
        finding.kill_check = verdict.error or f"on {self.until_kill}: {verdict.outcome}"
        self.log(f"rig fuzz: --until-kill {self.until_kill}: {finding.signature}: "
                 + ("kills it" if verdict.kills else f"not a kill ({finding.kill_check})"))

    def minimize(self, h, finding: Finding, data: bytes, deadline: float) -> None:
        """The smallest trace that fails the same way, within ``deadline`` (a bounded
        minimizer keeps its best so far); the raw file is safe already, so whatever goes
        wrong here is reported on the finding and does not stop the campaign."""
        if (finding.kind != "crash" or self.args.no_minimize
                or finding.signature.startswith(RIG_BUG)):
            return  # (a bug of the rig: its raw input is what reproduces it)
        stop = (lambda: time.monotonic() >= deadline or self.interrupted)
        try:
            if h.kind == "core":
                from rig.trace import core as core_trace
                from rig.trace import corpus

                trace = h.to_core_trace(data)
                m = _bounded(core_trace.CoreMinimizer, stop)(trace, harnesses._core_impls())
                m.minimize()
                from dataclasses import replace as _replace

                from rig.core import MUTANT

                final = core_trace.finalize(m, len(trace.ops))
                # found on a core mutant: the trace names it, so that it replays there
                final.config = _replace(final.config, mutant=MUTANT)
                out, _ = core_trace.write(final, str(self.crashes))
                regression = corpus.root() / "core" / Path(out).name
            else:
                trace = h.to_trace(data)
                if trace is None:
                    return
                from rig.trace import corpus, minimize

                m = _bounded(minimize.Minimizer, stop)(trace)
                m.minimize()
                out, _ = minimize.write(minimize.finalize(m, len(trace.ops)), str(self.crashes))
                regression = corpus.root() / "regressions" / Path(out).name
            finding.trace = _rel(out)
            if m.stopped:
                finding.summary += (f" (minimizing stopped at the time limit after {m.runs} "
                                    "runs: `rig minimize` goes on)")
            if regression.exists():
                finding.known = _rel(regression)
                finding.summary += f" (known: {finding.known})"
        except ValueError:
            finding.summary += " (the decoded trace does not fail in-process: flaky?)"
        except Exception as exc:  # noqa: BLE001 - a bug of the rig's own post-processing
            finding.summary += f" (post-processing failed: {type(exc).__name__}: {exc})"


def merge_same_traces(results: list) -> None:
    """Findings whose inputs minimized to the same trace are one bug: the first (in
    campaign order) names the others' signatures, input counts and raw files, and they
    leave their runs' lists, so neither the count of findings nor the table says one bug twice.  (Signatures
    split a bug by the op that showed it and the faults that fired there; the minimized
    trace is what the bug needs.)"""
    first: dict = {}
    for run in results:
        kept = []
        for finding in run.findings:
            primary = first.get(finding.trace) if finding.trace else None
            if primary is None:
                if finding.trace:
                    first[finding.trace] = finding
                kept.append(finding)
                continue
            where = f" [{finding.harness}]" if finding.harness != primary.harness else ""
            n = finding.inputs
            primary.same_trace.append(f"{finding.signature}{where} ({n} input"
                                      f"{'s' if n > 1 else ''}, raw: {finding.raw})")
            primary.known = primary.known or finding.known
        run.findings = kept


def _bounded(cls, stop):
    """``cls`` (a Minimizer or a CoreMinimizer) that tries no candidate once ``stop()``:
    its passes then run out at once and it keeps the best trace so far."""

    class Bounded(cls):
        stopped = False

        def try_(self, config, ops) -> bool:
            if stop():
                self.stopped = True
                return False
            return super().try_(config, ops)

    return Bounded


class Progress:
    """One status line per harness on stderr: rewritten in place on a terminal, else
    every 5 s."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.last = 0.0

    def update(self, run: HarnessRun, elapsed: float, budget: float | None,
               final: bool = False):
        now = time.monotonic()
        if not final and (now - self.last < (0.5 if self.tty else 5.0)):
            return
        self.last = now
        share = f"/{budget:.0f}s" if budget is not None else "s"
        text = (f"[{run.name:<26}] {elapsed:5.1f}{share} runs={run.runs:<8} "
                f"cov={run.cov:<6} corpus={run.corpus:<5} findings={len(run.findings)}")
        if self.tty and not final:
            self.stream.write("\r" + text)
        else:
            self.stream.write(("\r" if self.tty else "") + text + "\n")
        self.stream.flush()


def resolve(names, design: str | None) -> list[str]:
    out = []
    for name in names:
        if name not in harnesses.HARNESSES:
            raise ValueError(f"--harness {name!r}: not one of {', '.join(harnesses.HARNESSES)}")
        base_name = name.split(":")[0]
        if base_name in harnesses.WORLD_HARNESSES and ":" not in name:
            name = f"{base_name}:{design or harnesses.DEFAULT_DESIGN}"
        out.append(name)
    return out


def summary_table(runs: list[HarnessRun]) -> list[str]:
    lines = [f"{'harness':<26} {'build':<14} {'workers':>7} {'runs':>9} {'exec/s':>7} "
             f"{'cov':>6} {'corpus':>6} {'new':>5} {'findings':>8} {'wall':>7} {'start-up':>8}"]
    for r in runs:
        startup = f"{r.startup_s:.1f}s" if r.startup_s is not None else "-"
        lines.append(f"{r.name:<26} {r.build:<14} {r.workers:>7} {r.runs:>9} "
                     f"{r.execs_per_s:>7} {r.cov:>6} {r.corpus:>6} {r.new_inputs:>5} "
                     f"{len(r.findings):>8} {r.seconds:>6.1f}s {startup:>8}")
    return lines


def _build(mode: str | None, log) -> tuple[dict, str]:
    """The environment and label of the core the workers run: this process's core
    mutant, if any (rig.cli.main.ensure_core_for put the campaign on the core its design
    needs), in the instrumented build of ``mode``."""
    import rig.core

    mutant = rig.core.MUTANT
    if rig.core.BACKEND == "pure":
        log("rig fuzz: the core is the pure-Python twin (RIG_PUREPYTHON=1): no native build")
        return {}, "pure-python"  # (the workers inherit RIG_CORE_MUTANT)
    return native.prepare(mode, log, mutant)


def main(args) -> int:
    from rig.errors import (EXIT_FINDING, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK,
                            EXIT_USAGE, UsageError)

    t0 = time.monotonic()
    started = time.time()  # (the document's date only: every duration is from t0)
    if args.time <= 0:
        raise UsageError("--time must be > 0 seconds")
    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs must be >= 1")
    extra = list(getattr(args, "libfuzzer", None) or [])
    check_libfuzzer_args(extra)
    if args.design:
        from rig.world.designs import resolve as resolve_design

        # A spec (path/to/file.py:Class, pkg.module:Class) is loaded here, and reaches
        # the harness processes through RIG_DESIGNS (rig.world.designs.load_design).
        args.design = resolve_design(args.design)
    if getattr(args, "until_kill", None):
        from rig.world.designs import resolve as resolve_design

        if args.no_minimize:
            raise UsageError("--until-kill judges each finding's minimized trace: it cannot "
                             "be used with --no-minimize")
        if args.smoke:
            raise UsageError("--until-kill stops a timed campaign: it cannot be used with "
                             "--smoke")
        args.until_kill = resolve_design(args.until_kill)
    names = args.harness or (list(harnesses.HARNESSES) if args.smoke
                           else list(harnesses.DEFAULT_CAMPAIGN))
    try:
        names = resolve(names, args.design)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    jobs = args.jobs or default_jobs()
    corpus_root = Path(args.corpus_dir).resolve()
    artifacts = Path(args.artifacts).resolve()
    artifacts.mkdir(parents=True, exist_ok=True)
    seed = args.seed
    mode = None if args.native == "none" else args.native
    deadline = None if args.smoke else t0 + args.time
    _log(f"rig fuzz: seed={seed} {'smoke' if args.smoke else f'time={args.time:g}s'} "
         f"jobs={1 if args.smoke else jobs} native={args.native} harnesses={','.join(names)}")
    _log(f"rig fuzz: corpora={corpus_root} artifacts={artifacts} "
         f"crashes={corpus_root / 'crashes'}")
    if extra:
        _log(f"rig fuzz: libFuzzer flags: {' '.join(extra)}")
    env, build = _build(mode, _log)
    c = Campaign(args, env, build, corpus_root, artifacts, extra, jobs)
    c.t0 = t0
    startup_file = artifacts / "startup.json"
    cache = _load_startup(startup_file)
    # Start-up depends on the build and on how many workers start at once.
    key = f"{build} jobs={1 if args.smoke else jobs}"
    c.startup = {k: v for k, v in (cache.get(key) or {}).items()
                 if isinstance(v, (int, float)) and v > 0}
    previous = signal.signal(signal.SIGINT, c.on_sigint)
    results: list[HarnessRun] = []
    late_start = False
    dropped: list[dict] = []
    skipped: list[dict] = []
    errors: list[str] = []
    try:
        regressions = load_regressions(c.known)
        _log(f"rig fuzz: {regressions} known signature(s) from the regression corpus; "
             f"set-up took {time.monotonic() - t0:.1f} s")
        todo = []
        for name in names:
            base_name = name.split(":")[0]
            if base_name == "native_canary" and build in ("plain", "pure-python"):
                why = ("the core is the pure-Python twin: it has no native branch to reach"
                       if build == "pure-python" else "it needs the instrumented build")
                _log(f"rig fuzz: skipping native_canary: {why}")
                skipped.append({"name": name, "reason": why})
                continue
            todo.append(name)

        def cost(name: str) -> float:
            return harness_cost(c.startup_estimate(name))

        if deadline is not None:
            left = deadline - time.monotonic()
            kept, late = plan(todo, left, cost)
            if late:
                need = sum(cost(n) for n in todo)
                why = (f"--time {args.time:g} leaves {left:.1f} s after set-up, below the "
                       f"{need:.1f} s that {len(todo)} harnesses need to start and fuzz for "
                       f"a second (about {need / len(todo):.1f} s each, start-up "
                       f"{'measured by earlier campaigns' if c.startup else 'estimated'})")
                if not kept:
                    # Nothing fits (a first campaign may spend its budget building the
                    # instrumented core): the first harness still runs, for its least
                    # cost, and the overrun is said, rather than a campaign that ran
                    # nothing.
                    kept, late, late_start = late[:1], late[1:], True
                    _log(f"rig fuzz: WARNING: {why}: running {kept[0]} anyway, so the "
                         f"campaign ends about {cost(kept[0]) - max(0.0, left):.1f} s after "
                         "its --time")
                if late:
                    _log(f"rig fuzz: WARNING: {why}: dropping {', '.join(late)}; give it "
                         "more time to run them")
                    dropped += [{"name": n, "reason": why} for n in late]
            todo = kept
        for i, name in enumerate(todo):
            if c.interrupted or c.usage_error or c.killed:
                break
            runs = None
            slot_s = None
            if args.smoke:
                runs = SMOKE_RUNS.get(name.split(":")[0], args.runs or SMOKE_RUNS_DEFAULT)
            else:
                left = deadline - time.monotonic()
                remaining, late = plan(todo[i:], left, cost)
                if late_start and i == 0:
                    remaining, late = todo[:1], []
                if late:
                    why = (f"the campaign ran late: {left:.1f} s left for {len(todo) - i} "
                           "harnesses")
                    _log(f"rig fuzz: WARNING: {why}: dropping {', '.join(late)}")
                    dropped += [{"name": n, "reason": why} for n in late]
                    todo[len(todo) - len(late):] = []
                if not remaining:
                    break
                slot_s = slot(name, left, remaining, cost)
            result = c.run_harness(name, slot_s, runs, deadline)
            results.append(result)
            if result.startup_s is not None:
                c.startup[name] = result.startup_s
    except KeyboardInterrupt:
        c.interrupted = True
    finally:
        c.kill_all()  # (none is left but after a second Ctrl-C or a bug of the rig)
        signal.signal(signal.SIGINT, previous)
    if c.usage_error:
        print(f"rig fuzz: {c.usage_error}", file=sys.stderr)
        return EXIT_USAGE
    if c.startup:
        cache[key] = c.startup
        try:
            _write_lines(startup_file, json.dumps(cache, indent=1, sort_keys=True).splitlines())
        except OSError:
            pass
    wall = time.monotonic() - t0
    until_kill = None
    if c.until_kill:
        ran = {r.name for r in results}
        until_kill = {"base": c.until_kill,
                      "killed": c.killed.signature if c.killed else None,
                      "not_run": [n for n in names if c.killed and n not in ran
                                  and n not in {d["name"] for d in dropped + skipped}]}
    merge_same_traces(results)
    findings = [f for r in results for f in r.findings]
    expected = {r.name for r in results if harnesses.harness_for(r.name).expect_crash}
    real = [f for f in findings if f.harness not in expected and not f.known]
    # A bug of the rig itself (rig.errors.RIG_BUG: the incremental oracle disagreeing
    # with the full one) says nothing about the design: an infrastructure failure.
    rig_bugs = [f for f in real if f.signature.startswith(RIG_BUG)]
    real = [f for f in real if f not in rig_bugs]
    silent_canaries = sorted(n for n in expected
                             if not any(f.harness == n for f in findings)
                             and not next(r for r in results if r.name == n).interrupted)
    for r in results:
        if r.error:
            errors.append(f"rig fuzz: {r.name}: {r.error}")
    for f in rig_bugs:
        errors.append(f"rig fuzz: {f.harness}: {f.signature.removeprefix(RIG_BUG)}: a bug "
                      f"of the rig, not a finding about the design ({f.inputs} input(s); "
                      f"kept: {f.raw}; {f.replay_command()})")
    for n in silent_canaries:
        errors.append(f"rig fuzz: {n}: the canary did not fail: the infrastructure is not "
                      "reporting failures, so nothing it says about the other harnesses counts")
    not_run = [] if not c.interrupted else [n for n in names if n not in
                                            {r.name for r in results} | {d["name"] for d in
                                                                           dropped + skipped}]
    if c.interrupted:
        code = EXIT_INTERRUPTED
    elif errors:
        code = EXIT_INTERNAL
    else:
        code = EXIT_FINDING if real else EXIT_OK
    for line in errors:
        _log(line)
    doc = {
        "schema": SCHEMA, "seed": seed, "build": build,
        "mode": "smoke" if args.smoke else "time",
        "time_budget_s": None if args.smoke else args.time,
        "wall_seconds": round(wall, 2), "jobs": 1 if args.smoke else jobs,
        "libfuzzer_flags": extra, "interrupted": c.interrupted,
        "harnesses": [r.to_json() for r in results],
        "dropped": dropped, "skipped": skipped, "not_run": not_run,
        "findings": [f.to_json() for f in real],
        "silent_canaries": silent_canaries, "errors": errors, "exit_code": code,
        "until_kill": until_kill, **provenance(started),
    }
    # The same document, on disk whether or not --json is given: what `rig report` reads.
    try:
        write_document(artifacts / CAMPAIGN_JSON, doc)
    except OSError as exc:
        _log(f"rig fuzz: WARNING: {artifacts / CAMPAIGN_JSON} not written: {exc}")
    if args.json:
        print(json.dumps(doc, indent=1), flush=True)
        return code
    print("\n".join(summary_table(results)))
    for reason in dict.fromkeys(d["reason"] for d in dropped):
        print(f"dropped {', '.join(d['name'] for d in dropped if d['reason'] == reason)}: "
              f"{reason}")
    for r in results:
        if r.first_finding_s is not None:
            print(f"{r.name}: first finding after {r.first_finding_s:.1f} s")
        for k in r.known_seen:
            print(f"{r.name}: known finding seen: {k['signature']} ({k['source']})")
        if r.restart_cap_left_s is not None:
            print(f"{r.name}: a worker ended on a finding after {RESTARTS_MAX} restarts and "
                  f"was not restarted, {r.restart_cap_left_s:.1f} s before the end of its "
                  "slot (so many new findings: fix some, or run the harness alone)")
    for f in findings:
        if f in rig_bugs:
            continue  # an infrastructure failure above, not a finding
        tag = " (expected: canary)" if f.harness in expected else ""
        print(f"finding [{f.harness}] {f.kind}{tag}: {f.summary}")
        print(f"    raw:    {f.raw}")
        if f.seen_by:
            print(f"    also seen by: {', '.join(f.seen_by)}")
        if f.same_trace:
            print(f"    same minimized trace as: {'; '.join(f.same_trace)}")
        print(f"    replay: {f.replay_command()}")
    if until_kill and c.killed:
        print(f"rig fuzz: --until-kill {c.until_kill}: {c.killed.signature} is clean on "
              f"{c.until_kill} (it kills the mutant), found after {c.killed.found_s:.1f} s and "
              f"{c.killed.found_runs} runs; the campaign stopped there"
              + (f"; not run: {', '.join(until_kill['not_run'])}" if until_kill["not_run"]
                 else ""))
    elif until_kill:
        print(f"rig fuzz: --until-kill {c.until_kill}: no finding was clean on {c.until_kill}")
    if c.interrupted:
        print(f"rig fuzz: interrupted after {wall:.1f} s"
              + (f"; not run: {', '.join(not_run)}" if not_run else ""))
    known = sum(1 for f in findings if f.known)
    budget = "" if args.smoke else f" of a {args.time:g} s budget"
    print(f"rig fuzz: {len(real)} new finding(s)" + (f", {known} known" if known else "")
          + f"; {sum(r.runs for r in results)} runs in {wall:.1f} s{budget}"
          + (f"; INFRASTRUCTURE FAILURE ({len(errors)}, exit 3: see stderr)" if errors
             and not c.interrupted else ""))
    return code
