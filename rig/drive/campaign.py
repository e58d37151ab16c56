"""``rig fuzz``: the main job.  Runs atheris harnesses (fuzz/*.py) as libFuzzer processes
against the instrumented core when it can be built, shows live progress, and turns every
crash into a minimized trace.

Nothing found is ever lost: libFuzzer writes each crash input before it exits; the
campaign then copies it atomically into corpora/crashes/ *before* decoding or minimizing
it, so a failure in the rig's own post-processing still leaves the raw finding.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from rig.drive import harnesses, native

ROOT = Path(__file__).resolve().parents[2]
STATUS = re.compile(r"^#(\d+)\s+(\w+)\s+cov: (\d+)(?: ft: \d+)? corp: (\d+)/\S+.*?exec/s: (\d+)")
FORK_STATUS = re.compile(r"^#(\d+): cov: (\d+) ft: \d+ corp: (\d+) exec/s:? (\d+)")
SMOKE_RUNS = {"canary": 100000, "native_canary": 300000}
SMOKE_RUNS_DEFAULT = 1500
#: First guess at the seconds a harness slot spends outside libFuzzer's -max_total_time
#: (two instrumented interpreter start-ups: the fuzzing run and the corpus merge).  The
#: campaign replaces it with what it measures on the harnesses already run.
OVERHEAD_S = 5.0
#: Restarts of one harness after findings within its time slot.
RESTARTS_MAX = 12


@dataclass
class Finding:
    harness: str
    kind: str          # crash | timeout | oom | leak
    raw: str           # the raw input, in corpora/crashes/
    trace: str | None = None     # the minimized trace, if the harness decodes to one
    summary: str = ""
    signature: str = ""          # what kind of finding: told to later runs as known
    known: str | None = None     # the regression trace it matches, if it is not new

    def replay_command(self) -> str:
        if self.trace:
            return f"rig replay {self.trace}"
        return f"rig replay --harness {self.harness} {self.raw}"


@dataclass
class HarnessRun:
    name: str
    build: str
    runs: int = 0
    cov: int = 0
    corpus: int = 0
    execs_per_s: int = 0
    seconds: float = 0.0
    exit_codes: list = field(default_factory=list)
    findings: list = field(default_factory=list)
    merged: int = 0
    first_finding_s: float | None = None  # seconds from the harness' start


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def corpus_dirs(root: Path, harness: str, scratch: Path | None = None) -> list[str]:
    """Where libFuzzer writes new inputs (``scratch``, merged later), then the harness'
    corpus (created and seeded when empty), then read-only extras."""
    base = harness.split(":")[0]
    main = root / base
    main.mkdir(parents=True, exist_ok=True)
    if not any(main.iterdir()):
        for i, seed in enumerate(harnesses.HARNESSES[base].seeds()):
            (main / f"seed-{i:02d}").write_bytes(seed)
    dirs = [str(main)]
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)
        dirs.insert(0, str(scratch))
    if base == "trace_text" and (root / "regressions").is_dir():
        dirs.append(str(root / "regressions"))
    return dirs


def merge(name: str, script: Path, env: dict, corpus_root: Path, scratch: Path,
          art_dir: Path, known_file: Path) -> int:
    """libFuzzer -merge=1: move the scratch inputs that add coverage into the corpus.
    Known signatures are passed on so inputs that hit a known finding do not crash the
    merge over and over.  Returns how many files the corpus gained."""
    main = corpus_root / name.split(":")[0]
    if not scratch.is_dir() or not any(scratch.iterdir()):
        return 0
    before = len(list(main.iterdir()))
    proc_env = dict(os.environ, **env, RIG_FUZZ_KNOWN=str(known_file))
    if ":" in name:
        proc_env["RIG_FUZZ_DESIGN"] = name.split(":", 1)[1]
    try:
        subprocess.run([sys.executable, str(script), "-merge=1", "-timeout=20",
                        f"-artifact_prefix={art_dir}/merge-", str(main), str(scratch)],
                       cwd=ROOT, env=proc_env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=300)
    except subprocess.TimeoutExpired:
        _log(f"{name}: corpus merge timed out; the new inputs stay in {scratch}")
    shutil.rmtree(scratch, ignore_errors=True)
    return len(list(main.iterdir())) - before


def _atomic_copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + f".tmp{os.getpid()}")
    shutil.copyfile(src, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, dst)


def keep_raw(harness: str, path: Path, crashes: Path) -> Path:
    """Copy a libFuzzer artifact into corpora/crashes/, atomically, before anything else."""
    crashes.mkdir(parents=True, exist_ok=True)
    raw = crashes / f"{harness.replace(':', '_')}-{path.name}.raw"
    if not raw.exists():
        _atomic_copy(path, raw)
    return raw


def _rel(path) -> str:
    path = Path(path)
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def signature(harness: harnesses.Harness, data: bytes) -> str:
    """What a crash input does, in a few words: used to minimize one input per kind."""
    try:
        harness.one_input(data)
    except harnesses.Finding as exc:
        return exc.signature
    except Exception as exc:  # noqa: BLE001 - a core mismatch or a bug of the rig
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
    return "does not reproduce in-process"


def process_artifacts(harness: str, paths: list, crashes: Path, minimize_traces: bool) -> list:
    """Raw files first (all of them), then one minimized trace per distinct outcome."""
    h = harnesses.harness_for(harness)
    kept = [(path.name.split("-")[0], keep_raw(harness, path, crashes)) for path in paths]
    groups: dict = {}
    counts: dict = {}
    for kind, raw in kept:
        data = raw.read_bytes()
        key = (kind, signature(h, data) if kind == "crash" else kind)
        counts[key] = counts.get(key, 0) + 1
        if key not in groups or len(data) < len(groups[key][1]):
            groups[key] = (raw, data)
    findings = []
    for (kind, sig), (raw, data) in sorted(groups.items()):
        n = counts[(kind, sig)]
        finding = Finding(harness, kind, _rel(raw), signature=sig,
                          summary=f"{sig} ({n} input{'s' if n > 1 else ''})")
        findings.append(finding)
        if kind != "crash" or not minimize_traces:
            continue
        # The raw file is safe already; whatever goes wrong from here is reported on the
        # finding and does not stop the campaign.
        try:
            trace = h.to_trace(data)
            if trace is None:
                continue
            from rig.trace import minimize

            m = minimize.Minimizer(trace)
            m.minimize()
            small = minimize.finalize(m, len(trace.ops))
            out, _ = minimize.write(small, str(crashes))
            finding.trace = _rel(out)
            known = crashes.parent / "regressions" / Path(out).name
            if known.exists():
                finding.known = _rel(known)
                finding.summary += f" (known: {finding.known})"
        except ValueError:
            finding.summary += " (the decoded trace does not fail in-process: flaky?)"
        except Exception as exc:  # noqa: BLE001 - a bug of the rig's own post-processing
            finding.summary += f" (post-processing failed: {type(exc).__name__}: {exc})"
    return findings


def slot_budget(time_left: float, harnesses_left: int, overhead: float) -> float:
    """libFuzzer's -max_total_time for the next harness: an equal share of the time left
    once every remaining harness has paid its overhead; at least one second, so each
    harness runs even when the campaign is already late."""
    return max(1.0, time_left / harnesses_left - overhead)


class Progress:
    """One status line per harness: rewritten in place on a terminal, else every 5 s."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.tty = stream.isatty()
        self.last = 0.0

    def update(self, run: HarnessRun, elapsed: float, budget: float, final: bool = False):
        now = time.monotonic()
        if not final and not self.tty and now - self.last < 5.0:
            return
        self.last = now
        text = (f"[{run.name:<24}] {elapsed:5.0f}/{budget:.0f}s runs={run.runs:<8} "
                f"exec/s={run.execs_per_s:<6} cov={run.cov:<6} corpus={run.corpus:<5} "
                f"findings={len(run.findings)}")
        if self.tty and not final:
            self.stream.write("\r" + text)
        else:
            self.stream.write(("\r" if self.tty else "") + text + "\n")
        self.stream.flush()


def run_harness(name: str, seconds: float, seed: int, env: dict, build: str, jobs: int,
                corpus_root: Path, artifacts: Path, crashes: Path, progress: Progress,
                runs: int | None = None, minimize_traces: bool = True,
                extra: list | None = None) -> HarnessRun:
    """One libFuzzer process for the harness.  A campaign runs in fork mode with crashes
    ignored, so one finding does not end the harness' time; smoke runs a fixed -runs."""
    h = harnesses.harness_for(name)
    script = ROOT / "fuzz" / f"{h.script}.py"
    run = HarnessRun(name, build)
    art_dir = artifacts / name.replace(":", "_")
    art_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    known_file = art_dir / "known-signatures"
    known_file.write_text("")
    known: list = []
    attempt = 0
    while True:
        remaining = seconds - (time.monotonic() - start)
        if runs is None and remaining < 1 and attempt:
            break  # (the first run always happens, for at least a second)
        new = _run_once(run, script, name, art_dir, known_file, seed + attempt, remaining,
                        runs, jobs, env, corpus_root, extra, progress, start, seconds)
        if new:
            if run.first_finding_s is None:
                run.first_finding_s = round(time.monotonic() - start, 1)
            found = process_artifacts(name, new, crashes, minimize_traces)
            run.findings += found
            known += [f.signature for f in found if f.signature]
            known_file.write_text("".join(f"{k}\n" for k in known))
        attempt += 1
        # A finding ends a libFuzzer run; start again, told to stop reporting what is
        # already known, until the time is used.  A smoke run is one fixed -runs pass.
        if runs is not None or not new or attempt >= RESTARTS_MAX:
            break
    if runs is None:
        run.merged = merge(name, script, env, corpus_root, art_dir / "new-inputs", art_dir,
                           known_file)
    run.seconds = time.monotonic() - start
    if run.runs and run.seconds and not run.execs_per_s:
        run.execs_per_s = int(run.runs / run.seconds)
    progress.update(run, run.seconds, seconds, final=True)
    return run


def _run_once(run, script, name, art_dir, known_file, seed, remaining, runs, jobs, env,
              corpus_root, extra, progress, start, seconds) -> list:
    before = set(art_dir.iterdir())
    args = [sys.executable, str(script), f"-seed={seed}", f"-artifact_prefix={art_dir}/",
            "-print_final_stats=1", "-timeout=20", "-rss_limit_mb=3072", "-max_len=4096"]
    if runs is not None:
        args.append(f"-runs={runs}")
    else:
        args.append(f"-max_total_time={max(1, int(remaining))}")
        if jobs > 1:
            args += [f"-fork={jobs}", "-ignore_crashes=1", "-ignore_timeouts=1",
                     "-ignore_ooms=1"]
    args += list(extra or [])
    args += corpus_dirs(corpus_root, name, art_dir / "new-inputs" if runs is None else None)
    proc_env = dict(os.environ, **env, RIG_FUZZ_KNOWN=str(known_file))
    if ":" in name:
        proc_env["RIG_FUZZ_DESIGN"] = name.split(":", 1)[1]
    base_runs = run.runs
    proc = subprocess.Popen(args, cwd=ROOT, env=proc_env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, errors="replace")
    for line in proc.stderr:
        m = STATUS.match(line)
        if m:
            count, _, cov, corp, eps = m.groups()
        else:
            m = FORK_STATUS.match(line)
            if not m:
                if line.startswith("Done ") and " runs in " in line:
                    run.runs = base_runs + int(line.split()[1])
                continue
            count, cov, corp, eps = m.groups()
        run.runs = max(run.runs, base_runs + int(count))
        run.cov = max(run.cov, int(cov))
        run.corpus = int(corp)
        if int(eps):
            run.execs_per_s = int(eps)
        progress.update(run, time.monotonic() - start, seconds)
    proc.wait()
    run.exit_codes.append(proc.returncode)
    return sorted(p for p in set(art_dir.iterdir()) - before
                  if p.name.split("-")[0] in ("crash", "timeout", "oom", "leak"))


def resolve(names, design: str | None) -> list[str]:
    out = []
    for name in names:
        if name not in harnesses.HARNESSES:
            raise ValueError(f"--harness {name!r}: not one of {', '.join(harnesses.HARNESSES)}")
        base = name.split(":")[0]
        if base in harnesses.WORLD_HARNESSES and ":" not in name:
            name = f"{base}:{design or harnesses.DEFAULT_DESIGN}"
        out.append(name)
    return out


def summary_table(runs: list[HarnessRun]) -> list[str]:
    lines = [f"{'harness':<26} {'build':<14} {'runs':>9} {'exec/s':>7} {'cov':>6} "
             f"{'corpus':>6} {'merged':>6} {'findings':>8}"]
    for r in runs:
        lines.append(f"{r.name:<26} {r.build:<14} {r.runs:>9} {r.execs_per_s:>7} {r.cov:>6} "
                     f"{r.corpus:>6} {r.merged:>6} {len(r.findings):>8}")
    return lines


def main(args) -> int:
    from rig.errors import EXIT_FINDING, EXIT_INTERNAL, EXIT_OK, UsageError

    if args.time <= 0:
        raise UsageError("--time must be > 0 seconds")
    if args.jobs < 1:
        raise UsageError("--jobs must be >= 1")
    if args.design:
        from rig.world.designs import DESIGNS

        if args.design not in DESIGNS:
            raise UsageError(f"--design {args.design!r}: not one of {', '.join(DESIGNS)}")
    names = args.harness or (list(harnesses.HARNESSES) if args.smoke
                           else list(harnesses.DEFAULT_CAMPAIGN))
    try:
        names = resolve(names, args.design)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    corpus_root = Path(args.corpus_dir).resolve()
    artifacts = Path(args.artifacts).resolve()
    crashes = corpus_root / "crashes"
    seed = args.seed
    mode = None if args.native == "none" else args.native
    print(f"rig fuzz: seed={seed} {'smoke' if args.smoke else f'time={args.time}s'} "
          f"jobs={args.jobs} native={args.native} harnesses={','.join(names)}", flush=True)
    print(f"rig fuzz: corpora={corpus_root} artifacts={artifacts} crashes={crashes}", flush=True)
    env, build = native.prepare(mode, _log)
    progress = Progress()
    results = []
    # The budget is wall-clock for the whole campaign: each harness gets an equal share
    # of what is left, less the overhead (start-up, merge, minimizing) measured so far.
    deadline = time.monotonic() + args.time
    overruns: list[float] = []
    for i, name in enumerate(names):
        base = name.split(":")[0]
        if base == "native_canary" and build == "plain":
            _log("skipping native_canary: it needs the instrumented build")
            continue
        runs = SMOKE_RUNS.get(base, args.runs or SMOKE_RUNS_DEFAULT) if args.smoke else None
        overhead = sum(overruns) / len(overruns) if overruns else OVERHEAD_S
        budget = slot_budget(deadline - time.monotonic(), len(names) - i, overhead)
        result = run_harness(name, budget, seed, env, build, args.jobs, corpus_root,
                             artifacts, crashes, progress, runs=runs,
                             minimize_traces=not args.no_minimize)
        results.append(result)
        overruns.append(max(0.0, result.seconds - budget))
    findings = [f for r in results for f in r.findings]
    expected = {r.name for r in results if harnesses.harness_for(r.name).expect_crash}
    real = [f for f in findings if f.harness not in expected and not f.known]
    silent_canaries = sorted(n for n in expected
                             if not any(f.harness == n for f in findings))
    if args.json:
        print(json.dumps({
            "seed": seed, "build": build, "harnesses": [r.__dict__ | {
                "findings": [f.__dict__ for f in r.findings]} for r in results],
            "findings": [f.__dict__ for f in real],
            "silent_canaries": silent_canaries,
        }, indent=1))
    else:
        print()
        print("\n".join(summary_table(results)))
        for r in results:
            if r.first_finding_s is not None:
                print(f"{r.name}: first finding after {r.first_finding_s:.1f} s")
        for f in findings:
            tag = " (expected: canary)" if f.harness in expected else ""
            print(f"finding [{f.harness}] {f.kind}{tag}: {f.summary}")
            print(f"    raw:    {f.raw}")
            print(f"    replay: {f.replay_command()}")
        if silent_canaries:
            print(f"INFRASTRUCTURE FAILURE: the canary did not fail: {', '.join(silent_canaries)}")
        known = sum(1 for f in findings if f.known)
        print(f"rig fuzz: {len(real)} new finding(s)" + (f", {known} known" if known else ""))
    if silent_canaries:
        return EXIT_INTERNAL
    return EXIT_FINDING if real else EXIT_OK
