"""`rig bench` keeps working: each suite runs at a tiny size and reports what it measured.
No figure is asserted (wall-clock on a shared machine); the counts it reports are."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rig(*args):
    return subprocess.run([sys.executable, "-m", "rig.cli.main", "bench", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_bench_core_small():
    proc = rig("core", "--ops", "2000", "--mappings", "4096", "--bits", "65536", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["config"]["ops"] == 2000 and report["type1"]


def test_bench_world_small():
    proc = rig("world", "--inputs", "8", "--repeats", "1", "--design", "hardened",
               "--design", "qemu-10.1", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report["designs"]) == {"hardened", "qemu-10.1"}
    for row in report["designs"].values():
        # The same inputs with and without the shadow world execute the same ops.
        assert row["shadow"]["ops"] == row["no_shadow"]["ops"] > 0
    shares = report["oracle"]["shares"]
    assert "check_attributes" in shares and "check_differential" in shares
    assert 0 < sum(shares.values()) < 1


def test_bench_bad_flags():
    assert rig("world", "--design", "nope").returncode == 1
    assert rig("world", "--inputs", "0").returncode != 0
