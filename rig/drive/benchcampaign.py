"""``rig bench campaign``: the default campaign's throughput, as libFuzzer runs it.

``rig bench world`` times the world loop in one plain process; what a campaign gets is
less (atheris' Python instrumentation, the instrumented core, libFuzzer's mutation and
coverage bookkeeping) and depends on how many workers share the machine.  This suite
runs the default campaign's harnesses (rig.drive.harnesses.DEFAULT_CAMPAIGN, world
harnesses on hardened) as the campaign's workers, with the campaign's argv
(rig.drive.campaign.Campaign.worker_flags), dictionary, environment, known signatures
and instrumented build (rig.drive.campaign._build, rig.drive.native.prepare), for a
fixed ``-runs`` per worker rather than a time, so that two commits do the same work:

- each harness and jobs setting starts from a fresh temporary folder holding only the
  harness' own seeds (``Harness.seeds()``), never a user's corpora/ folder, which grows;
- with N workers, worker i runs ``-runs=R -seed=SEED+i``, all N on that one corpus
  folder, each reloading what the others add, as a campaign's workers do.

Per worker: the runs it executed (libFuzzer's final count, the seed corpus' runs
included: -runs counts them), its start-up (spawn to libFuzzer's INITED line), its wall
seconds of fuzzing (INITED to its exit) and the runs made in them, and its CPU time
(user + system, os.wait4).  Per harness and jobs setting: exec/s = the workers' fuzzing
runs / the seconds from the first INITED to the last exit (a worker that ends early
leaves the machine to the others: the span counts that against the setting), and cores
used = the workers' CPU seconds / the seconds from the first spawn to the last exit.

A worker that exits non-zero, dies on a signal, never reaches INITED, or executes fewer
runs than asked is a failure of the benchmark (BenchFailure): the figures would be
lies.  So is a finding: the default harnesses on hardened find nothing, or something
is wrong.  The temporary folder is then kept, with the raw input, and named.
"""

from __future__ import annotations

import os
import selectors
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from rig.drive import campaign, harnesses

#: ``-runs`` per worker unless --runs says otherwise: the whole default suite (6
#: harnesses at --jobs 1 and 2) took 115-120 s at 2,500 on the 2-core machine of
#: docs/benchmarks.md (commit 5105c02, before the issue-13 speed-ups), so 3,000 is about
#: 2.5 minutes there.
DEFAULT_RUNS = 3000
#: libFuzzer -seed of worker 0 (worker i gets SEED+i), as ``rig fuzz --seed``.
DEFAULT_SEED = 1
#: The native build mode, as ``rig fuzz``'s default --native.
MODE = "fuzzer"


class BenchFailure(Exception):
    """A worker did not do the work asked of it, or found something: the figures would be
    lies."""


@dataclass
class WorkerResult:
    index: int
    seed: int
    exit_code: int
    runs: int                # inputs executed (the final count: seed runs included)
    inited_runs: int         # of them, the seed corpus' runs, done before INITED
    startup_s: float         # spawn to INITED
    fuzz_s: float            # INITED to exit
    wall_s: float            # spawn to exit
    cpu_s: float             # user + system
    argv: list = field(default_factory=list)

    @property
    def fuzz_runs(self) -> int:
        return self.runs - self.inited_runs

    def to_json(self) -> dict:
        out = dict(vars(self))
        for key in ("startup_s", "fuzz_s", "wall_s", "cpu_s"):
            out[key] = round(out[key], 3)
        out["fuzz_runs"] = self.fuzz_runs
        out["execs_per_s"] = round(self.fuzz_runs / self.fuzz_s, 1) if self.fuzz_s > 0 else None
        return out


@dataclass
class Row:
    """One harness at one jobs setting."""

    harness: str
    kind: str
    jobs: int
    runs_asked: int          # per worker
    workers: list = field(default_factory=list)
    #: Known findings (the regression corpus') its workers met and skipped, as a
    #: campaign's do: not a failure, but inputs that did less than a whole run.
    known_seen: list = field(default_factory=list)
    fuzz_s: float = 0.0      # the first worker's INITED to the last worker's exit
    wall_s: float = 0.0      # the first spawn to the last exit

    @property
    def runs(self) -> int:
        return sum(w.runs for w in self.workers)

    @property
    def fuzz_runs(self) -> int:
        return sum(w.fuzz_runs for w in self.workers)

    @property
    def cpu_s(self) -> float:
        return sum(w.cpu_s for w in self.workers)

    @property
    def startup_s(self) -> float:
        return sum(w.startup_s for w in self.workers) / len(self.workers)

    @property
    def execs_per_s(self) -> float:
        return self.fuzz_runs / self.fuzz_s if self.fuzz_s > 0 else 0.0

    @property
    def cores_used(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    def to_json(self) -> dict:
        return {"harness": self.harness, "kind": self.kind, "jobs": self.jobs,
                "runs_asked": self.runs_asked, "runs": self.runs, "fuzz_runs": self.fuzz_runs,
                "startup_s": round(self.startup_s, 3), "fuzz_s": round(self.fuzz_s, 3),
                "wall_s": round(self.wall_s, 3), "cpu_s": round(self.cpu_s, 3),
                "execs_per_s": round(self.execs_per_s, 1),
                "cores_used": round(self.cores_used, 3),
                "known_seen": list(self.known_seen),
                "workers": [w.to_json() for w in self.workers]}


class _Worker(campaign.Worker):
    """A campaign worker that also notes when libFuzzer printed INITED and after how many
    runs (the campaign's Worker takes the first status line, which may be a pulse of the
    seed corpus' runs)."""

    inited_at: float | None = None
    inited_runs: int | None = None

    def _line(self, line: str) -> None:
        m = campaign.STATUS.match(line.rstrip("\r"))
        if m and m.group(2) == "INITED" and self.inited_at is None:
            self.inited_at = time.monotonic()
            self.inited_runs = int(m.group(1))
        super()._line(line)


def resolve(names) -> list[str]:
    """The harnesses to run (default: the default campaign's), world harnesses on
    hardened unless the name fixes a design; ValueError names an unknown one."""
    return list(dict.fromkeys(campaign.resolve(names or harnesses.DEFAULT_CAMPAIGN, None)))


def default_jobs() -> list[int]:
    """One worker, then every core (rig.drive.campaign.default_jobs)."""
    return list(dict.fromkeys([1, campaign.default_jobs()]))


class Bench:
    """The workers' build, environment and campaign settings, shared by every row."""

    def __init__(self, runs: int, seed: int, log=campaign._log):
        self.runs = runs
        self.seed = seed
        self.log = log
        self.env, self.build = campaign._build(MODE, log)
        self.known = campaign.Known()
        campaign.load_regressions(self.known, log)
        self.tmp = Path(tempfile.mkdtemp(prefix="rig-bench-campaign-"))
        # The campaign's own worker_flags and dictionary: the same command as `rig fuzz`.
        self.campaign = campaign.Campaign(
            SimpleNamespace(seed=seed, no_minimize=True), self.env, self.build,
            self.tmp / "corpora", self.tmp / "artifacts", [], 1, log=log)
        #: A finding's raw input is in the temporary folder: it is kept.
        self.keep = False

    def close(self) -> None:
        """Remove the temporary folder, unless a finding left its input in it."""
        if not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def run(self, names: list[str], jobs: list[int], on_row=None) -> list[Row]:
        """Every harness of ``names`` at every jobs setting, in that order (``on_row(row)``
        as each one ends), then ``close``."""
        rows: list[Row] = []
        try:
            for name in names:
                for n in jobs:
                    row = self.run_row(name, n)
                    rows.append(row)
                    if on_row is not None:
                        on_row(row)
        finally:
            self.close()
        return rows

    def run_row(self, name: str, jobs: int) -> Row:
        h = harnesses.harness_for(name)
        folder = self.tmp / f"{name.replace(':', '_')}-jobs{jobs}"
        corpus = folder / "corpus"
        corpus.mkdir(parents=True)
        for i, seed in enumerate(harnesses.HARNESSES[h.base].seeds()):
            (corpus / f"seed-{i:02d}").write_bytes(seed)
        scope = campaign.scope_of(h)
        known_file, seen_file = folder / "known-signatures", folder / "seen-signatures"
        known_file.write_text("".join(f"{s}\n" for s in self.known.signatures(scope)))
        seen_file.write_text("")
        env = dict(os.environ, **self.env, RIG_FUZZ_KNOWN=str(known_file),
                   RIG_FUZZ_SEEN=str(seen_file))
        env.pop("RIG_FUZZ_DESIGN", None)
        if h.kind == "world":
            env["RIG_FUZZ_DESIGN"] = name.partition(":")[2]
        dictionary = self.campaign.dictionary(name)
        row = Row(name, h.kind, jobs, self.runs)
        workers: list[_Worker] = []
        ended: dict[int, tuple[float, int, float]] = {}  # index -> (exit time, code, cpu)
        sel = selectors.DefaultSelector()
        try:
            for i in range(jobs):
                wdir = folder / f"worker-{i:02d}"
                wdir.mkdir()
                argv = self.campaign.worker_flags(h, self.seed + i, wdir, None, self.runs,
                                                  dictionary) + [str(corpus)]
                w = _Worker(i, argv, env, wdir, frozenset())
                workers.append(w)
                sel.register(w.proc.stderr, selectors.EVENT_READ, w)
            while len(ended) < len(workers):
                for key, _ in sel.select(timeout=1.0):
                    w = key.data
                    w.read()
                    if w.eof:
                        sel.unregister(w.proc.stderr)
                        w.proc.stderr.close()
                        # Reaped here, for its CPU time: Popen then sees the code as set.
                        _, status, usage = os.wait4(w.proc.pid, 0)
                        w.proc.returncode = os.waitstatus_to_exitcode(status)
                        ended[w.index] = (time.monotonic(), w.proc.returncode,
                                          usage.ru_utime + usage.ru_stime)
        except BaseException:
            for w in workers:
                w.kill()
                if w.proc.returncode is None:
                    w.proc.wait()
            raise
        finally:
            sel.close()
        for w in workers:
            exit_at, code, cpu = ended[w.index]
            self._check(h, name, jobs, w, code)
            row.workers.append(WorkerResult(
                w.index, self.seed + w.index, code, w.executed, w.inited_runs,
                w.inited_at - w.started, exit_at - w.inited_at, exit_at - w.started, cpu,
                w.proc.args))
        row.known_seen = sorted(set(filter(None, seen_file.read_text().split("\n"))))
        row.fuzz_s = max(e[0] for e in ended.values()) - min(w.inited_at for w in workers)
        row.wall_s = max(e[0] for e in ended.values()) - min(w.started for w in workers)
        return row

    def _check(self, h, name: str, jobs: int, w: _Worker, code: int) -> None:
        where = f"{name} jobs={jobs} worker {w.index} (-seed={self.seed + w.index})"
        artifacts = w.artifacts()
        if artifacts:
            self.keep = True
            path = artifacts[0]
            sig = campaign.signature(h, path.read_bytes())
            raise BenchFailure(
                f"{where}: a finding, {sig} ({path.name.split('-')[0]}, raw input kept: "
                f"{path}): the benchmark's harnesses must find nothing "
                f"(`rig replay --harness {name} {path}`)")
        if code != 0:
            raise BenchFailure(f"{where} {campaign._exit_text(code)} after "
                               f"{w.executed} runs: {w.why()}")
        if w.inited_at is None:
            raise BenchFailure(f"{where}: libFuzzer never printed INITED: {w.why()}")
        if w.executed < self.runs:
            raise BenchFailure(f"{where}: executed {w.executed} runs, fewer than the "
                               f"{self.runs} asked")


def ratios(rows: list[Row]) -> dict[int, float]:
    """jobs -> its exec/s over the jobs=1 exec/s of the same harness (rows of one
    harness; empty when jobs=1 was not run)."""
    one = next((r for r in rows if r.jobs == 1), None)
    if one is None or one.execs_per_s <= 0:
        return {}
    return {r.jobs: r.execs_per_s / one.execs_per_s for r in rows if r.jobs != 1}


def totals(rows: list[Row], jobs: list[int]) -> dict:
    """Per jobs setting over the harnesses: the runs, the seconds, the mean of the
    harness' exec/s (a campaign that gives each harness an equal slot makes this many
    per second of its wall time), cores used; and each setting's mean over jobs=1's."""
    out: dict = {}
    for n in jobs:
        mine = [r for r in rows if r.jobs == n]
        if not mine:
            continue
        wall = sum(r.wall_s for r in mine)
        out[n] = {"jobs": n, "harnesses": len(mine), "runs": sum(r.runs for r in mine),
                  "fuzz_runs": sum(r.fuzz_runs for r in mine),
                  "fuzz_s": round(sum(r.fuzz_s for r in mine), 3), "wall_s": round(wall, 3),
                  "mean_execs_per_s": round(sum(r.execs_per_s for r in mine) / len(mine), 1),
                  "cores_used": round(sum(r.cpu_s for r in mine) / wall, 3) if wall else 0.0}
    base = out.get(1)
    for n, t in out.items():
        t["ratio_to_jobs_1"] = (round(t["mean_execs_per_s"] / base["mean_execs_per_s"], 3)
                                if base and base["mean_execs_per_s"] and n != 1 else None)
    return out
