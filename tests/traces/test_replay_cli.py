"""`rig replay` and `rig minimize` as a user meets them: exact text, exit codes, raw crash
files, malformed input (one line, exit 1, never a traceback)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rig.cli.main import main
from rig.trace.corpus import unminimized
from rig.trace.minimize import Minimizer
from rig.trace.format import serialize

ROOT = Path(__file__).resolve().parents[2]
REG = ROOT / "corpora" / "regressions"

EXPECTED_IOMMUFD = """\
replay: {path} (trace)
config: design=qemu-10.1 iommu=iommufd dma_entry_limit=65535 max_memslots=32764 memlock_limit=none block_size=0x1000 hugetlb=no budget_check=auto ram=0x0+0x8000 faults=explicit fail_nth=0 seed=0 p_activate=0.25 p_fire=0.1
backend: cy, differential: on
#0   vfio_register(0, 0x0, 0x8000) = 0
       vfio0 plugged: 0 mappings
#1   kvm_convert_memory(0x4000, 0x2000, shared) = 0
       kvm shared: 0x4000+0x2000
       bitmap ram0: +[4,5]
       mappings vfio0: 0 -> 2
       pinned pages: 0 -> 2
#2   kvm_convert_memory(0x4000, 0x2000, private)  (fault: iommufd.ioas_unmap=ENOENT@1/1) = 0
       injected: iommufd.ioas_unmap=ENOENT after 1 units
       kvm private: 0x4000+0x2000
       bitmap ram0: -[4,5]
       mappings vfio0: 2 -> 1
       pinned pages: 2 -> 1
       VIOLATION stale-mapping: 1 IOMMU page(s) point at a frame that no longer backs the page: vfio0: iova 0x5000 -> frame #2 (dropped, 1 pins), page backed by a hole
       VIOLATION pin-leak: 1 frame(s) dropped by their file but still pinned: frame #2 (1 pins)
outcome: violation stale-mapping at op 2
expect: violation stale-mapping (matches)
"""

EXPECTED_SEED_HARDENED = """\
replay: {path} (trace)
config: design=hardened iommu=type1 dma_entry_limit=65535 max_memslots=32764 memlock_limit=none block_size=0x1000 hugetlb=no budget_check=auto ram=0x0+0x10000 faults=explicit fail_nth=0 seed=0 p_activate=0.25 p_fire=0.1
backend: cy, differential: on
#0   vfio_register(0, 0x0, 0x10000) = 0
       vfio0 plugged: 0 mappings
#1   kvm_convert_memory(0x2000, 0x1000, shared) = 0
       kvm shared: 0x2000+0x1000
       bitmap ram0: +[2]
       mappings vfio0: 0 -> 1
       pinned pages: 0 -> 1
#2   guest_touch(0x2000) = 0
#3   kvm_convert_memory(0x2000, 0x1000, private) = 0
       kvm private: 0x2000+0x1000
       bitmap ram0: -[2]
       mappings vfio0: 1 -> 0
       pinned pages: 1 -> 0
#4   guest_touch(0x2000) = 0
#5   kvm_convert_memory(0x2000, 0x1000, shared) = 0
       kvm shared: 0x2000+0x1000
       bitmap ram0: +[2]
       mappings vfio0: 0 -> 1
       pinned pages: 0 -> 1
#6   guest_touch(0x2000) = 0
#7   device_dma(0, 0x2000, 0x1000, write) = 0
outcome: ok
expect: ok (matches)
"""


def seed_trace(tmp_path):
    from rig.trace.corpus import scenarios
    from rig.trace.format import Expect, Trace

    sc = scenarios()["seed"]
    path = tmp_path / "seed.trace"
    path.write_text(serialize(Trace(sc.config, list(sc.ops), Expect("ok"))))
    return path


def test_replay_text_exact_violation(capsys):
    path = next(REG.glob("stale-mapping-qemu-10.1-*.trace"))
    rel = os.path.relpath(path)
    assert main(["replay", rel]) == 0
    assert capsys.readouterr().out == EXPECTED_IOMMUFD.format(path=rel)


def test_replay_text_exact_clean_run(capsys, tmp_path):
    path = seed_trace(tmp_path)
    assert main(["replay", str(path)]) == 0
    assert capsys.readouterr().out == EXPECTED_SEED_HARDENED.format(path=path)


def test_replay_exit_2_when_outcome_differs(tmp_path, capsys):
    text = serialize(unminimized()[0]).replace("# expect: violation stale-mapping",
                                               "# expect: ok")
    path = tmp_path / "wrong.trace"
    path.write_text(text)
    assert main(["replay", str(path)]) == 2
    assert "expect: ok (DIFFERS)" in capsys.readouterr().out


def test_replay_json(capsys):
    path = str(next(REG.glob("double-backing-*.trace")))
    assert main(["replay", "--json", path]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["outcome"]["invariant"] == "double-backing" and report["matches"] is True
    assert report["steps"] and all("op" in step for step in report["steps"])


def test_replay_raw_crash_file(tmp_path, capsys):
    raw = tmp_path / "crash-123"
    raw.write_bytes(bytes(range(7, 250, 3)))
    code = main(["replay", "--harness", "convert:uncoordinated", str(raw)])
    out = capsys.readouterr().out
    assert out.startswith(f"replay: {raw} (raw input, harness convert:uncoordinated)")
    assert "config: design=uncoordinated" in out
    assert code in (0, 2)


def rig(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "rig.cli.main", *args], capture_output=True,
                          text=True, cwd=cwd)


@pytest.mark.parametrize("content,message", [
    ("# gmem-rig trace v1\nguest_touch(0x0\n", "bad.trace:2: expected ')'"),
    ("# gmem-rig trace v1\n# block_size=0x0\n", "bad.trace:2: impossible world: block_size"),
    ("hello\n", "bad.trace:1: not a gmem-rig trace"),
])
def test_malformed_file_one_line_exit_1(tmp_path, content, message):
    bad = tmp_path / "bad.trace"
    bad.write_text(content)
    proc = rig("replay", str(bad))
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_flags_and_missing_file_exit_1(tmp_path):
    assert rig("replay").returncode == 1
    assert rig("replay", "--backend", "gpu", "x").returncode == 1
    proc = rig("replay", str(tmp_path / "missing.trace"))
    assert proc.returncode == 1 and "cannot read" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("index", range(6))
def test_minimize_each_known_finding_to_8_ops(index):
    trace = unminimized()[index]
    assert len(trace.ops) == 40
    m = Minimizer(trace)
    result = m.minimize()
    assert len(result.ops) <= 8
    assert m.target == trace.expect


def test_minimize_cli_writes_and_dedups(tmp_path):
    src = tmp_path / "finding.trace"
    src.write_text(serialize(unminimized()[5]))
    out = tmp_path / "reg"
    first = rig("minimize", str(src), "--out", str(out))
    assert first.returncode == 0, first.stderr
    written = list(out.glob("stale-mapping-qemu-10.1-*.trace"))
    assert len(written) == 1 and "wrote:" in first.stdout
    second = rig("minimize", str(src), "--out", str(out))
    assert "already known" in second.stdout and len(list(out.iterdir())) == 1
    assert rig("replay", str(written[0])).returncode == 0


def test_minimize_refuses_a_passing_trace(tmp_path):
    path = seed_trace(tmp_path)
    proc = rig("minimize", str(path))
    assert proc.returncode == 1 and "does not fail" in proc.stderr
