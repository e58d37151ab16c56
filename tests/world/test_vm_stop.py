"""What a VM stop leaves behind (issue 9, section 4): the stop is shown even when the
stopping op also broke an invariant, and the state the stop leaves is checked."""

import json

import pytest

from rig.cli import replay
from rig.cli.main import main
from rig.errors import EIO, ENOMEM
from rig.check.session import run
from rig.world.faults import FaultSpec
from rig.world.ops import op
from rig.trace.format import Trace, serialize
from rig.world.config import RamSpec, WorldConfig

from tests.conftest import BACKENDS

PRIVATE, SHARED = True, False
BS = 0x1000


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


def partial_punch():
    """qemu-10.1: two shared pages, one touched; the conversion to private punches the
    memfd's first page only, then fails: the VM stops with the second page (gpa 0x1000)
    private for KVM and still backed by the memfd."""
    cfg = WorldConfig(design="qemu-10.1", ram=(RamSpec(0x0, 0x4000),))
    return cfg, [
        op("kvm_convert_memory", 0x0, 0x2000, SHARED),
        op("guest_touch", 0x1000),
        op("kvm_convert_memory", 0x0, 0x2000, PRIVATE,
           fault=(FaultSpec("memfd.punch_hole", -EIO, 1, 1),)),
    ]


def test_partial_memfd_punch_tail_is_reported_after_the_stop(backend):
    cfg, ops = partial_punch()
    result = run(cfg, ops, backend)
    assert result.world.vm_stopped == -EIO
    step = result.steps[2]
    after = [v for v in step.violations if v.detail.startswith("after the VM stop")]
    assert [v.invariant for v in after] == ["double-backing"]
    assert after[0].items == ["gpa 0x1000 (private, memfd not punched)"]
    assert result.outcome.stop_errno == -EIO and result.outcome.stop_index == 2


def test_guest_memfd_left_after_a_failed_populate_is_reported(backend):
    """To shared, the populate fails (10.1: no rollback, VM stop) before guest_memfd is
    punched: the guest's old private page stays beside the shared side."""
    cfg = WorldConfig(design="qemu-10.1", ram=(RamSpec(0x0, 0x4000),))
    ops = [op("vfio_register", 0, 0x0, 0x4000),
           op("guest_touch", 0x2000),
           op("kvm_convert_memory", 0x2000, BS, SHARED,
              fault=(FaultSpec("vfio.dma_map", -ENOMEM, 1),))]
    result = run(cfg, ops, backend)
    items = [i for v in result.steps[2].violations for i in v.items
             if v.detail.startswith("after the VM stop")]
    assert items == ["gpa 0x2000 (shared, guest_memfd not punched)"]


def test_a_stop_that_converted_nothing_leaves_nothing_to_report(backend):
    """KVM refused the attribute change (-ENOMEM before any change): the stop left the
    world as it was, and pages the op did not convert are not judged after the stop."""
    cfg = WorldConfig(design="uncoordinated", ram=(RamSpec(0x0, 0x4000),))
    ops = [op("vfio_register", 0, 0x0, 0x4000),   # pins (allocates) all of the memfd
           op("kvm_convert_memory", 0x0, BS, SHARED,
              fault=(FaultSpec("kvm.set_memory_attributes", -ENOMEM, 1),))]
    result = run(cfg, ops, backend)
    assert str(result.outcome) == "vm_stopped ENOMEM"
    assert result.steps[1].violations == []


def test_hardened_does_not_stop_and_retries_the_punch(backend):
    cfg, ops = partial_punch()
    result = run(cfg.with_(design="hardened"), ops, backend)
    assert result.world.vm_stopped is None and str(result.outcome) == "ok"


def test_replay_shows_the_stop_beside_the_violation(tmp_path, capsys):
    cfg, ops = partial_punch()
    path = tmp_path / "stop.trace"
    path.write_text(serialize(Trace(cfg, ops)))
    assert main(["replay", str(path)]) == 2
    out = capsys.readouterr().out
    assert "       VM stopped (-EIO)\n" in out
    assert "outcome: violation atomic-failure at op 2; VM stopped (-EIO) at op 2\n" in out
    assert "VIOLATION double-backing: after the VM stop, 1 converted page(s)" in out
    assert main(["replay", "--json", str(path)]) == 2
    data = json.loads(capsys.readouterr().out)
    assert data["outcome"]["kind"] == "violation"
    assert data["outcome"]["errno"] == "EIO"
    assert data["outcome"]["vm_stopped"] == {"errno": "EIO", "op_index": 2}
    assert "VM stopped (-EIO)" in data["steps"][2]["events"]


def test_replay_of_a_plain_stop_is_unchanged(tmp_path):
    cfg = WorldConfig(design="qemu-10.1", ram=(RamSpec(0x0, 0x4000),))
    ops = [op("kvm_convert_memory", 0x0, BS, SHARED,
              fault=(FaultSpec("kvm.set_memory_attributes", -ENOMEM, 1),))]
    path = tmp_path / "plain.trace"
    path.write_text(serialize(Trace(cfg, ops)))
    loaded = replay.load_input(str(path))
    result, lines, deltas = replay.replay(loaded, str(path))
    assert lines[-1] == "outcome: vm_stopped ENOMEM at op 0"
    data = replay.to_json(loaded, str(path), result, deltas)
    assert data["outcome"]["errno"] == "ENOMEM"
    assert data["outcome"]["vm_stopped"] == {"errno": "ENOMEM", "op_index": 0}
