"""`rig bench campaign` (rig.drive.benchcampaign, rig.cli.bench): the workers run the runs
asked, each with its own seed, and the report counts them; a worker that finds
something, exits non-zero, never starts fuzzing or runs fewer runs than asked makes the
suite FAIL (exit 2) naming the harness; bad flags are one line, exit 1.

The suite runs as the command does (``python -m rig.cli.main bench campaign``), with
TMPDIR in the test's folder so that what it leaves behind can be checked.  No figure is
asserted (wall-clock on a shared machine): only the counts.  The planted failures are
the canary harness (a real finding) and a sitecustomize that acts only in the workers
(RIG_FUZZ_KNOWN is set in their environment only), as tests/fuzz/test_campaign.py does.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rig.drive import benchcampaign
from rig.drive.harnesses import DEFAULT_CAMPAIGN, HARNESSES

ROOT = Path(__file__).resolve().parents[2]

needs_atheris = pytest.mark.skipif(importlib.util.find_spec("atheris") is None,
                                   reason="atheris is not installed (pip install -e .[fuzz])")


def bench(tmp_path, *args, env=None):
    """``rig bench campaign ARGS`` with its temporary folders under ``tmp_path/tmp``."""
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "rig.cli.main", "bench", "campaign", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, TMPDIR=str(tmp), **(env or {})))


def left_behind(tmp_path) -> list[Path]:
    return sorted((tmp_path / "tmp").glob("rig-bench-campaign-*"))


def _why(proc) -> str:
    return proc.stdout[-3000:] + "\n" + proc.stderr[-3000:]


def in_workers(tmp_path, code: str) -> dict:
    """PYTHONPATH with a sitecustomize that runs ``code`` in the harness workers only."""
    folder = tmp_path / "site"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(textwrap.dedent(f"""
        import os, sys
        if os.environ.get("RIG_FUZZ_KNOWN"):  # a worker, not the bench
            {code}
        """))
    path = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": str(folder) + (os.pathsep + path if path else "")}


# -- the suite on one harness -------------------------------------------------------------

@pytest.mark.slow
@needs_atheris
def test_each_worker_runs_the_runs_asked_with_its_own_seed(tmp_path):
    runs = 1000
    proc = bench(tmp_path, "--harness", "iommu", "--runs", str(runs), "--jobs", "1,2",
                 "--seed", "7", "--json")
    assert proc.returncode == 0, _why(proc)
    report = json.loads(proc.stdout)  # (stdout is the one object: progress is on stderr)
    assert report["config"]["jobs"] == [1, 2] and report["config"]["harnesses"] == ["iommu"]
    one, two = report["rows"]
    assert (one["jobs"], two["jobs"]) == (1, 2)
    for row in (one, two):
        assert row["harness"] == "iommu" and row["runs_asked"] == runs
        # One worker does exactly -runs; with two, a worker also runs what it reloads
        # from the other's new inputs (-reload), which may carry it past -runs at the
        # last reload, never short of it.
        if row["jobs"] == 1:
            assert row["runs"] == runs, row
        assert len(row["workers"]) == row["jobs"]
        assert all(w["runs"] >= runs for w in row["workers"]), row["workers"]
        assert row["runs"] == sum(w["runs"] for w in row["workers"]) >= runs * row["jobs"]
        assert [w["seed"] for w in row["workers"]] == [7 + i for i in range(row["jobs"])]
        for i, w in enumerate(row["workers"]):
            assert f"-seed={7 + i}" in w["argv"] and f"-runs={runs}" in w["argv"]
            # One corpus folder, the bench's own (never corpora/): the last argument.
            assert w["argv"][-1].startswith(str(tmp_path / "tmp")) and w["argv"][-2][0] == "-"
        assert len({w["argv"][-1] for w in row["workers"]}) == 1
        assert all(w["exit_code"] == 0 for w in row["workers"])
        # -runs counts the seed corpus' runs: the fuzzing runs are the rest (of what each
        # worker ran, which with two may pass -runs: a flake under load, when it was
        # computed from the -runs asked).
        assert row["fuzz_runs"] == sum(w["runs"] - w["inited_runs"]
                                       for w in row["workers"]) > 0
        assert row["fuzz_s"] > 0 and row["cpu_s"] > 0 and row["cores_used"] > 0
    assert one["workers"][0]["argv"][-1] != two["workers"][0]["argv"][-1]  # fresh per row
    # One worker's INITED comes after libFuzzer's empty input and each seed file.
    (w,) = one["workers"]
    assert w["inited_runs"] == 1 + len(HARNESSES["iommu"].seeds())
    assert one["ratio_to_jobs_1"] is None and two["ratio_to_jobs_1"] > 0
    totals = {t["jobs"]: t for t in report["totals"]}
    assert totals[1]["runs"] == runs and totals[2]["runs"] == two["runs"]
    assert left_behind(tmp_path) == []  # nothing failed: nothing kept


@pytest.mark.slow
@needs_atheris
def test_text_report_has_a_line_per_harness_and_jobs_and_totals(tmp_path):
    proc = bench(tmp_path, "--harness", "trace_text", "--runs", "300", "--jobs", "1")
    assert proc.returncode == 0, _why(proc)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("rig bench campaign: seed=1 runs=300")
    assert lines[1].startswith("machine: nproc=") and lines[2].startswith("core: commit")
    rows = [line for line in lines if line.startswith("trace_text:hardened ")]
    assert len(rows) == 1 and rows[0].split()[1:3] == ["1", "300"]
    assert any(line.startswith("total jobs=1: 1 harnesses, 300 runs") for line in lines)


# -- failures of the benchmark ------------------------------------------------------------

@pytest.mark.slow
@needs_atheris
def test_a_finding_fails_the_bench_naming_the_harness_and_keeps_the_input(tmp_path):
    proc = bench(tmp_path, "--harness", "canary", "--runs", "100000", "--jobs", "1")
    assert proc.returncode == 2, _why(proc)
    (line,) = [x for x in proc.stderr.splitlines() if "FAIL" in x]
    assert line.startswith("rig bench campaign: FAIL: canary jobs=1 worker 0 (-seed=1): "
                           "a finding, the canary sings"), line
    (kept,) = left_behind(tmp_path)
    (raw,) = kept.glob("canary-jobs1/worker-00/crash-*")
    assert str(raw) in line


@pytest.mark.slow
@needs_atheris
@pytest.mark.parametrize("code,why", ids=["exit-1", "exit-0", "fewer-runs"], argvalues=[
    ("os._exit(1)", "iommu jobs=1 worker 0 (-seed=1) exited with code 1"),
    ("os._exit(0)", "iommu jobs=1 worker 0 (-seed=1): libFuzzer never printed INITED"),
    # The last -runs wins in libFuzzer: the worker does 40 runs and exits 0.
    ("sys.argv.append('-runs=40')", "iommu jobs=1 worker 0 (-seed=1): executed 40 runs, "
     "fewer than the 500 asked"),
])
def test_a_worker_that_does_not_do_the_work_fails_the_bench(tmp_path, code, why):
    proc = bench(tmp_path, "--harness", "iommu", "--runs", "500", "--jobs", "1",
                 env=in_workers(tmp_path, code))
    assert proc.returncode == 2, _why(proc)
    assert f"rig bench campaign: FAIL: {why}" in proc.stderr, proc.stderr
    assert "total jobs=1" not in proc.stdout  # no figures printed for a failed run
    assert left_behind(tmp_path) == []  # no finding: nothing to keep


# -- flags --------------------------------------------------------------------------------

@pytest.mark.parametrize("args,needle", [
    (["--runs", "0"], "--runs must be >= 1, not 0"),
    (["--harness", "nope"], "--harness 'nope': not one of"),
    (["--jobs", "0"], "--jobs '0': must be >= 1"),
    (["--jobs", "1,x"], "--jobs '1,x': not a number of workers"),
])
def test_bad_flags_are_one_line_and_exit_1(tmp_path, args, needle):
    proc = bench(tmp_path, *args)
    assert proc.returncode == 1, _why(proc)
    assert proc.stderr.splitlines() == [proc.stderr.strip()], proc.stderr
    assert proc.stderr.startswith("rig bench campaign: ") and needle in proc.stderr
    assert proc.stdout == ""


def test_the_default_suite_is_the_default_campaign_on_hardened():
    names = benchcampaign.resolve(None)
    assert [n.split(":")[0] for n in names] == list(DEFAULT_CAMPAIGN)
    for name in names:
        h = HARNESSES[name]
        assert (name == f"{h.base}:hardened") == (h.kind == "world"), name
    assert benchcampaign.resolve(["iommu", "convert", "iommu"]) == ["iommu", "convert:hardened"]
    assert benchcampaign.default_jobs()[0] == 1
