"""`rig bench bugs` (rig.drive.bugbench, rig.cli.bench): every engine kills a planted
mutant and none "kills" a design with no planted defect; resume runs nothing twice; the
table, the JSON and the plot hold the figures; a corrupt results line is one clear error.

The mutants are this file's own, loaded as external design specs (``--mutant
tests/bench/test_bugbench.py:Class``), so the tests do not depend on the registry's
mutants, which other work adds: ``PlantedAttrNotRestored`` is hardened with one defect
(a failed conversion leaves KVM's attributes changed), ``UnmutatedQemu`` is qemu-10.1
unchanged and its own base: the engines find qemu-10.1's own bugs in it, and the kill
check must turn every one of them down.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from rig.world.designs.hardened import Hardened
from rig.world.designs.qemu_10_1 import Qemu101
from rig.world.mutants import Mutant

ROOT = Path(__file__).resolve().parents[2]
PURE = os.environ.get("RIG_PUREPYTHON", "") not in ("", "0")
HERE = Path(__file__).resolve()


class PlantedAttrNotRestored(Mutant, Hardened):
    """hardened that forgets to restore KVM's attributes when a conversion fails (the
    review concern behind attr-not-restored, planted here for the bench's own tests)."""

    name = "bench-attr-not-restored"
    base = "hardened"

    def restore_attributes(self, world, start, saved) -> None:
        return None


class UnmutatedQemu(Mutant, Qemu101):
    """qemu-10.1 as it is, passed as a mutant whose base is itself: whatever an engine
    finds in it is a bug of the base too, so nothing kills it."""

    name = "bench-unmutated-qemu"
    base = "bench-unmutated-qemu"


PLANTED = f"{HERE}:PlantedAttrNotRestored"
UNMUTATED = f"{HERE}:UnmutatedQemu"


def rig(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "rig.cli.main", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


class NotAMutant(Hardened):
    """A design of one's own that is not a mutant (no Mutant mixin): --mutant refuses it."""

    name = "bench-not-a-mutant"


FAST = ("statemachine", "swarm", "fail-nth")
CAP = "3"


def bench(tmp: Path, *args, mutants=(PLANTED, UNMUTATED), engines=FAST, cap=CAP, seeds="1",
          extra=(), timeout=900):
    argv = ["bench", "bugs", "--seeds", seeds, "--cap", cap, "--jobs", "2",
            "--results", str(tmp / "results.jsonl"), *args]
    for m in mutants:
        argv += ["--mutant", m]
    for e in engines:
        argv += ["--engine", e]
    return rig(*argv, *extra, timeout=timeout)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory):
    """One run of the fast engines on both mutants, shared by the tests below."""
    tmp = tmp_path_factory.mktemp("bugs")
    proc = bench(tmp, "--json", "--plot", str(tmp / "plot"))
    return tmp, proc


def _cells(doc, mutant):
    return {c["engine"]: c for c in doc["cells"] if c["mutant"] == mutant}


def test_each_fast_engine_kills_the_planted_mutant(fast_run):
    tmp, proc = fast_run
    # Exit 2: the unmutated "mutant" is killed by no engine (the next test).
    assert proc.returncode == 2, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    cells = _cells(doc, PlantedAttrNotRestored.name)
    assert set(cells) == set(FAST)
    for engine, cell in cells.items():
        assert cell["found"] is True and cell["error"] is None, (engine, cell)
        assert cell["time_s"] > 0 and cell["time_s"] <= float(CAP), (engine, cell)
        assert isinstance(cell["execs"], int) and 1 <= cell["execs"] <= cell["execs_total"]
        assert cell["signature"].startswith("violation ")
        trace = tmp / cell["trace"]
        text = trace.read_text()
        assert cell["trace_ops"] == sum(1 for line in text.splitlines()
                                        if line and not line.startswith("#")) >= 1
        # The killing trace fails on the mutant as it says, and is clean on its base.
        replay = rig("replay", "--quiet", "--load", PLANTED, str(trace))
        assert replay.returncode == 0 and "violation" in replay.stdout, replay.stdout
        on_base = tmp / f"{engine}-on-base.trace"
        on_base.write_text(text.replace(f"design={PlantedAttrNotRestored.name}",
                                        "design=hardened"))
        replay = rig("replay", "--quiet", str(on_base))
        assert replay.stdout.strip().endswith(": ok"), replay.stdout


SWARM_RECOUNT = """
import random, sys
from rig.drive import bugbench
from rig.drive.base import Finding
from rig.drive.harnesses import harness_for
from rig.world.designs import load_design

name = load_design(sys.argv[1])
harnesses = [harness_for(h, name) for h in bugbench.SWARM_DECODERS]
rng = random.Random(1)
n = 0
while True:
    data = rng.randbytes(rng.randint(1, bugbench.SWARM_MAX_LEN))
    n += 1
    try:
        harnesses[(n - 1) % 3].one_input(data)
    except Finding as exc:
        print(n, exc.signature)
        break
"""


def test_the_swarm_counts_its_execs_exactly(fast_run):
    """The swarm's execs is the index of the killing input in its seeded stream, recounted
    here from random.Random(1) with the same decoders (the planted mutant's first
    finding is the kill: it has no non_kills)."""
    tmp, proc = fast_run
    cell = _cells(json.loads(proc.stdout), PlantedAttrNotRestored.name)["swarm"]
    assert cell["non_kills"] == []
    recount = subprocess.run([sys.executable, "-c", SWARM_RECOUNT, PLANTED], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    assert recount.returncode == 0, recount.stderr
    n, signature = recount.stdout.split(" ", 1)
    assert (int(n), signature.strip()) == (cell["execs"], cell["signature"])
    assert cell["execs_total"] == cell["execs"]


def test_no_engine_kills_a_design_whose_base_is_itself(fast_run):
    """qemu-10.1 unmutated, its own base: the engines find its bugs, and the kill check
    turns each down (non_kills), so every engine reports not found."""
    tmp, proc = fast_run
    doc = json.loads(proc.stdout)
    cells = _cells(doc, UnmutatedQemu.name)
    assert set(cells) == set(FAST)
    for engine, cell in cells.items():
        assert cell["found"] is False and cell["error"] is None, (engine, cell)
        assert cell["time_s"] is None and cell["execs"] is None and cell["trace_ops"] is None
        assert cell["non_kills"], f"{engine} found nothing to judge in qemu-10.1: {cell}"
        assert all(f"on {UnmutatedQemu.name}: violation" in why for _, why in cell["non_kills"])
        assert cell["execs_total"] > 0
    assert doc["missed"] == [UnmutatedQemu.name]


def test_the_json_rows_and_totals_hold_the_figures(fast_run):
    tmp, proc = fast_run
    doc = json.loads(proc.stdout)
    planted = _cells(doc, PlantedAttrNotRestored.name)
    rows = {(r["mutant"], r["engine"]): r for r in doc["rows"]}
    for engine, cell in planted.items():
        row = rows[(PlantedAttrNotRestored.name, engine)]
        assert (row["found"], row["cells"]) == (1, 1)
        assert (row["median_time_s"], row["median_execs"], row["median_ops"]) == (
            cell["time_s"], cell["execs"], cell["trace_ops"])
        row = rows[(UnmutatedQemu.name, engine)]
        assert (row["found"], row["cells"], row["median_time_s"]) == (0, 1, None)
    totals = {t["engine"]: t for t in doc["totals"]}
    for engine in FAST:
        assert (totals[engine]["mutants_found"], totals[engine]["mutants"]) == (1, 2)
        swarm = planted["swarm"]["time_s"]
        assert totals[engine]["swarm_ratio"] == pytest.approx(planted[engine]["time_s"] / swarm)
        assert totals[engine]["swarm_ratio_mutants"] == 1
    assert doc["cells_run"] == 2 * len(FAST) and doc["cells_before"] == 0
    assert len(lines(tmp / "results.jsonl")) == 2 * len(FAST)


def test_resume_runs_only_the_cells_not_in_the_results(fast_run, tmp_path):
    tmp, _ = fast_run
    results = tmp_path / "results.jsonl"
    shutil.copy(tmp / "results.jsonl", results)
    before = results.read_bytes()
    # The same command again: every cell is there, nothing runs, the file is untouched.
    proc = bench(tmp_path, "--json")
    doc = json.loads(proc.stdout)
    cells = 2 * len(FAST)
    assert (doc["cells_run"], doc["cells_before"]) == (0, cells), proc.stderr
    assert results.read_bytes() == before
    assert f"{cells} finished before" in proc.stderr and "0 to run" in proc.stderr
    assert not (tmp_path / "results-logs").exists()  # (no cell process was started)
    # Without the swarm line of the planted mutant, exactly that cell runs again.
    kept = [line for line in before.decode().splitlines()
            if not ('"engine": "swarm"' in line and PlantedAttrNotRestored.name in line)]
    results.write_text("\n".join(kept) + "\n")
    proc = bench(tmp_path, "--json")
    doc = json.loads(proc.stdout)
    assert (doc["cells_run"], doc["cells_before"]) == (1, cells - 1), proc.stderr
    again = lines(results)[-1]
    assert (again["mutant"], again["engine"], again["found"]) == (
        PlantedAttrNotRestored.name, "swarm", True)
    assert [p.name for p in (tmp_path / "results-logs").iterdir()] == [
        f"{PlantedAttrNotRestored.name}-swarm-seed1.log"]


def test_the_explore_engine_kills_the_planted_mutant_with_a_shortest_trace(tmp_path):
    """explore stops at its first kill (about a second here), but judging it minimizes
    and replays on the base in a fresh process: its own cell, with a cap that a loaded
    machine cannot miss (the fast engines' 3 s could)."""
    proc = bench(tmp_path, "--json", mutants=(PLANTED,), engines=("explore",), cap="60")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (cell,) = json.loads(proc.stdout)["cells"]
    assert cell["found"] is True and cell["error"] is None, cell
    assert cell["trace_ops"] == 2 and cell["execs"] >= 1
    assert "tiny: depth 1 complete" in cell["note"], cell["note"]
    replay = rig("replay", "--quiet", "--load", PLANTED, str(tmp_path / cell["trace"]))
    assert replay.returncode == 0 and "violation" in replay.stdout, replay.stdout


def test_the_text_and_markdown_tables(fast_run, tmp_path):
    tmp, proc = fast_run
    doc = json.loads(proc.stdout)
    shutil.copy(tmp / "results.jsonl", tmp_path / "results.jsonl")
    text = bench(tmp_path).stdout
    markdown = bench(tmp_path, "--markdown").stdout
    planted = _cells(doc, PlantedAttrNotRestored.name)
    for engine in FAST:
        row = next(line for line in text.splitlines()
                   if line.startswith(f"{PlantedAttrNotRestored.name} ") and f" {engine} " in line)
        found = "1/1 (det.)" if engine in ("fail-nth", "explore") else "1/1"
        assert found in row and f" {planted[engine]['execs']} " in f" {row} ", row
        assert row.split()[-1] == str(planted[engine]["trace_ops"])
        assert f"| {UnmutatedQemu.name} | {engine} | 0/1" in markdown
    assert "| mutant | engine | found | median time (s) | median execs | median ops |" in markdown
    assert "| swarm | 1/2 | 1.00x (1 mutants) |" in markdown
    assert f"no engine killed: {UnmutatedQemu.name}" in text


def test_the_plot(fast_run, tmp_path):
    """PNG and SVG exist, the SVG is XML with one line per engine, and drawing it again
    from the same results gives the same bytes (no date in it)."""
    tmp, _ = fast_run
    png, svg = tmp / "plot.png", tmp / "plot.svg"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    root = ET.parse(svg).getroot()
    ids = sorted(e.get("id") for e in root.iter() if (e.get("id") or "").startswith("engine-"))
    assert ids == sorted(f"engine-{e}" for e in FAST)
    for e in root.iter():
        if e.get("id", "").startswith("engine-"):
            assert any(child.tag.endswith("path") for child in e.iter()), e.get("id")
    shutil.copy(tmp / "results.jsonl", tmp_path / "results.jsonl")
    proc = bench(tmp_path, "--plot", str(tmp_path / "again"))
    assert proc.returncode == 2, proc.stderr
    assert (tmp_path / "again.svg").read_bytes() == svg.read_bytes()
    assert (tmp_path / "again.png").read_bytes() == png.read_bytes()


def test_a_corrupt_results_line_is_one_clear_error(tmp_path):
    results = tmp_path / "results.jsonl"
    good = {"schema": 1, "mutant": PlantedAttrNotRestored.name, "engine": "swarm", "seed": 1,
            "cap_s": 3.0, "found": False, "error": None}
    for bad in ('{"schema": 1, "mutant": "x"', '{"schema": 1}', "[1, 2]",
                json.dumps(dict(good, schema=99))):
        results.write_text(json.dumps(good) + "\n\n" + bad + "\n")
        proc = bench(tmp_path, mutants=(PLANTED,), engines=("swarm",))
        assert proc.returncode == 1, proc.stderr
        err = proc.stderr.strip().splitlines()
        assert err[-1].startswith(f"rig bench bugs: {results}:3: not a rig bench bugs "
                                  "results line ("), err
        assert "Traceback" not in proc.stderr and not proc.stdout


def test_usage_errors_are_one_line(tmp_path):
    for mutants, what in (((f"{HERE}:NotAMutant",), "is a design, not a mutant"),
                          (("no-such-mutant",), "not a registered mutant"),
                          ((f"{HERE}:NoSuchClass",), "has no class")):
        proc = bench(tmp_path, mutants=mutants, engines=("swarm",))
        assert proc.returncode == 1 and what in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    proc = bench(tmp_path, mutants=(PLANTED,), engines=("swarm",), cap="0")
    assert proc.returncode == 1 and "--cap" in proc.stderr


# -- the kill check and the summary, in this process -----------------------------------

def test_the_kill_check_runs_without_the_mutated_core(monkeypatch):
    """Whatever selects a mutated or instrumented core is gone from the kill check's
    environment; what loads designs (RIG_DESIGNS) is kept."""
    from rig.drive import bugbench

    seen = {}

    def fake_run(argv, **kwargs):
        seen.update(kwargs["env"])
        return subprocess.CompletedProcess(argv, 0, '{"clean": true, "outcome": "ok"}', "")

    for name in bugbench.CORE_ENV:
        monkeypatch.setenv(name, "/somewhere")
    monkeypatch.setenv("RIG_DESIGNS", PLANTED)
    monkeypatch.setattr(bugbench.subprocess, "run", fake_run)
    assert bugbench.kill_check("text", "hardened") == bugbench.Verdict(True, "ok")
    assert not set(bugbench.CORE_ENV) & set(seen)
    assert seen["RIG_DESIGNS"] == PLANTED


def test_the_kill_check_is_clean_only_on_the_base(monkeypatch):
    """A qemu-10.1 regression trace: clean on hardened (where its bug is not), not clean
    on qemu-10.1 (its own bug)."""
    from rig.drive import bugbench

    text = (ROOT / "corpora" / "regressions" / "stale-mapping-qemu-10.1-c4341ccb.trace").read_text()
    assert bugbench.kill_check(text, "hardened").kills is True
    verdict = bugbench.kill_check(text, "qemu-10.1")
    assert verdict.kills is False and verdict.outcome.startswith("violation stale-mapping")
    assert verdict.error is None


def test_the_kill_check_never_loads_the_mutant_design():
    """The header's design is swapped in the text before the replay parses it: the
    kill check's process need not (and, for a core mutant, must not) load the mutant."""
    from rig.drive import bugbench

    text = (ROOT / "corpora" / "regressions" / "stale-mapping-qemu-10.1-c4341ccb.trace").read_text()
    ghost = text.replace("design=qemu-10.1", "design=no-such-mutant")
    assert bugbench.kill_check(ghost, "hardened") == bugbench.Verdict(True, "ok")
    assert bugbench.kill_check(ghost, "qemu-10.1").kills is False
    swapped = bugbench.with_design(ghost, "hardened")
    assert "no-such-mutant" not in swapped and swapped.count("design=hardened") == 1
    bare = "# gmem-rig trace v1\n# expect: ok\nvfio_register(0, 0x0, 0x8000)\n"
    assert bugbench.with_design(bare, "qemu-10.1").splitlines()[1] == "# design=qemu-10.1"


CORE_KILL_TRACES = sorted(p for p in (ROOT / "corpora" / "mutants").glob("*.trace")
                          if p.read_text().split("\n", 2)[1].startswith("# core "))


@pytest.mark.skipif(not CORE_KILL_TRACES, reason="no core-trace kill trace in corpora/mutants/")
def test_the_kill_check_replays_a_core_trace_on_the_unmutated_core():
    """A core mutant's kill trace names the mutant in its header; the kill check runs it
    on the unmutated core anyway (where it is clean: every implementation agrees)."""
    from rig.drive import bugbench

    for path in CORE_KILL_TRACES:
        assert bugbench.kill_check(path.read_text(), "hardened") == bugbench.Verdict(
            True, "ok"), path.name


def test_summary_medians_ratios_and_curve_times():
    from types import SimpleNamespace

    from rig.drive import bugbench

    classes = [SimpleNamespace(name=n, base="hardened") for n in ("a", "b")]
    cells = bugbench.plan(classes, ["swarm", "statemachine", "fail-nth"], 3, 10.0,
                          Path("/nowhere/r.jsonl"))
    assert len(cells) == 2 * (3 + 3 + 1)
    times = {("a", "swarm"): [1.0, 2.0, 4.0], ("a", "statemachine"): [0.5, None, 0.25],
             ("b", "swarm"): [None, None, 8.0], ("b", "statemachine"): [2.0, 2.0, 2.0],
             ("a", "fail-nth"): [0.1], ("b", "fail-nth"): [None]}
    done = {}
    for spec in cells:
        t = times[(spec.mutant, spec.engine)][spec.seed - 1]
        done[spec.key] = {"found": t is not None, "time_s": t, "execs": None if t is None else 10,
                          "trace_ops": None if t is None else 2}
    summary = bugbench.summarize(cells, done, set(), classes, ["swarm", "statemachine", "fail-nth"])
    rows = {(r.mutant, r.engine): r for r in summary["rows"]}
    assert (rows[("a", "statemachine")].found, rows[("a", "statemachine")].cells) == (2, 3)
    assert rows[("a", "statemachine")].median_time_s == 0.375   # over the seeds that found it
    assert rows[("b", "swarm")].median_time_s == 8.0
    # The curves count a mutant at the median of all its seeds, misses as never.
    assert bugbench.median_time_to_find(rows[("a", "statemachine")]) == 0.5
    assert bugbench.median_time_to_find(rows[("b", "swarm")]) is None
    assert bugbench.median_time_to_find(rows[("a", "fail-nth")]) == 0.1
    totals = summary["totals"]
    # statemachine vs swarm: a 0.375 / 2.0, b 2.0 / 8.0 -> median 0.21875 over 2 mutants.
    assert totals["statemachine"]["swarm_ratio"] == pytest.approx((0.375 / 2 + 2 / 8) / 2)
    assert totals["statemachine"]["swarm_ratio_mutants"] == 2
    assert totals["fail-nth"]["swarm_ratio"] == pytest.approx(0.1 / 2.0)
    assert totals["fail-nth"]["mutants_found"] == 1 and totals["swarm"]["mutants_found"] == 2


# -- the campaign engines (slow: each cell is a rig fuzz campaign) ----------------------

@pytest.mark.slow
@pytest.mark.parametrize("engine", ["campaign", "campaign-plain"])
def test_the_campaign_engines_kill_the_planted_mutant(engine, tmp_path):
    proc = bench(tmp_path, "--json", mutants=(PLANTED,), engines=(engine,), cap="40")
    assert proc.returncode == 0, proc.stderr[-3000:]
    cell = _cells(json.loads(proc.stdout), PlantedAttrNotRestored.name)[engine]
    assert cell["found"] is True and cell["error"] is None, cell
    assert 0 < cell["time_s"] < 40 and 0 < cell["execs"] <= cell["execs_total"]
    # (without clang the instrumented campaign falls back to the plain build, and says so)
    builds = {"campaign": {"native-fuzzer", "plain"}, "campaign-plain": {"plain"}}[engine]
    assert cell["build"] in ({"pure-python"} if PURE else builds), cell["build"]
    assert (tmp_path / cell["trace"]).is_file() and cell["trace_ops"] >= 1
    # Stopped at the kill (--until-kill), not at the end of the cap.
    assert cell["wall_s"] < 40, cell


def fuzz(tmp: Path, design: str, base: str, time_s: str, *harnesses):
    argv = ["fuzz", "--design", design, "--until-kill", base, "--time", time_s, "--jobs", "1",
            "--native", "none", "--json", "--corpus-dir", str(tmp / "c"),
            "--artifacts", str(tmp / "a")]
    for h in harnesses:
        argv += ["--harness", h]
    return rig(*argv)


@pytest.mark.slow
def test_rig_fuzz_until_kill_stops_at_the_first_kill(tmp_path):
    proc = fuzz(tmp_path, PLANTED, "hardened", "60", "convert", "convert_explicit")
    assert proc.returncode == 2, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    killed = doc["until_kill"]["killed"]
    kill = next(f for f in doc["findings"] if f["kills"])
    assert killed == kill["signature"] and kill["kill_check"] == "on hardened: ok"
    assert all(f["kills"] is False for f in doc["findings"] if f is not kill)
    assert 0 < kill["found_s"] <= doc["wall_seconds"] < 60   # stopped there, not at --time
    runs = {h["name"]: h["runs"] for h in doc["harnesses"]}
    assert 0 < kill["found_runs"] <= sum(runs.values())
    # The harness that killed it stopped then, well before the end of its share.
    mine = next(h for h in doc["harnesses"] if h["name"] == kill["harness"])
    assert mine["seconds"] < mine["slot_s"] - 5, mine
    if kill["harness"].startswith("convert:"):
        assert doc["until_kill"]["not_run"] == [f"convert_explicit:{PlantedAttrNotRestored.name}"]
        assert list(runs) == [kill["harness"]]


@pytest.mark.slow
def test_rig_fuzz_until_kill_judges_every_finding_and_goes_on_when_none_kills(tmp_path):
    proc = fuzz(tmp_path, UNMUTATED, UnmutatedQemu.name, "20", "convert")
    assert proc.returncode == 2, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["until_kill"] == {"base": UnmutatedQemu.name, "killed": None, "not_run": []}
    assert doc["findings"], "qemu-10.1's own bugs were not found"
    for f in doc["findings"]:
        assert f["kills"] is False, f
        assert f["kill_check"].startswith(f"on {UnmutatedQemu.name}: violation"), f
        assert 0 < f["found_s"] and 0 < f["found_runs"] <= doc["harnesses"][0]["runs"]
    found = [f["found_s"] for f in doc["findings"]]
    assert found == sorted(found)


def test_the_statemachine_engine_leaves_no_hypothesis_folder_where_it_runs(tmp_path):
    """hypothesis' runner writes its constants cache at the first draw: under the rig's
    cache folder, not in the folder the user runs the benchmark from."""
    work, cache = tmp_path / "work", tmp_path / "cache"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "HYPOTHESIS_STORAGE_DIRECTORY"}
    env["RIG_NATIVE_CACHE"] = str(cache)
    proc = subprocess.run(
        [sys.executable, "-m", "rig.cli.main", "bench", "bugs", "--mutant",
         "attr-not-restored", "--engine", "statemachine", "--seeds", "1", "--cap", "20",
         "--results", str(tmp_path / "results.jsonl")],
        cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert not (work / ".hypothesis").exists(), sorted(p.name for p in work.iterdir())
    assert (cache / "hypothesis" / "constants").is_dir()
