"""`rig fuzz` as CI and users run it: the smoke mode (canaries must fail), and a short
campaign on a known-bad design that must find, minimize and replay its defining bug."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def rig(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "rig.cli.main", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_smoke_every_harness_and_the_canary_fails(tmp_path):
    proc = rig("fuzz", "--smoke", "--json", "--corpus-dir", str(tmp_path / "corpora"),
               "--artifacts", str(tmp_path / "art"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert report["findings"] == [] and report["silent_canaries"] == []
    names = {h["name"] for h in report["harnesses"]}
    assert {"core_differential", "iommu", "convert:hardened", "trace_text:hardened",
            "statemachine:hardened", "canary"} <= names
    canary = next(h for h in report["harnesses"] if h["name"] == "canary")
    assert len(canary["findings"]) == 1
    assert all(h["runs"] > 0 for h in report["harnesses"])


def test_campaign_finds_stale_mapping_on_uncoordinated(tmp_path):
    corpora = tmp_path / "corpora"
    proc = rig("fuzz", "--design", "uncoordinated", "--harness", "convert", "--time", "45",
               "--json", "--corpus-dir", str(corpora), "--artifacts", str(tmp_path / "art"))
    assert proc.returncode == 2, proc.stderr[-3000:]
    report = json.loads(proc.stdout[proc.stdout.index("{"):])
    stale = [f for f in report["findings"] if f["signature"].startswith("violation stale-mapping")]
    assert stale, [f["signature"] for f in report["findings"]]
    trace = Path(stale[0]["trace"])
    trace = trace if trace.is_absolute() else ROOT / trace
    assert trace.exists() and Path(stale[0]["raw"]).exists()
    assert len([line for line in trace.read_text().splitlines() if not line.startswith("#")]) <= 8
    replay = rig("replay", str(trace))
    assert replay.returncode == 0 and "expect: violation stale-mapping (matches)" in replay.stdout


def test_bad_flags_exit_1():
    assert rig("fuzz", "--time", "0").returncode == 1
    assert rig("fuzz", "--harness", "nope").returncode == 1
    assert rig("fuzz", "--design", "nope").returncode == 1


def test_slot_budget_shares_what_is_left_after_overheads():
    from rig.drive.campaign import slot_budget

    assert slot_budget(60.0, 6, 5.0) == 5.0
    # A campaign that runs late still gives each remaining harness a second.
    assert slot_budget(4.0, 2, 6.0) == 1.0
    assert slot_budget(-3.0, 1, 6.0) == 1.0
