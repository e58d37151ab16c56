"""data-integrity and nested conversions (issue 9, section 5): a conversion never
preserves contents, so a page whose KVM attribute changed at any moment of an op (a
nested or interleaved conversion included) no longer carries what a device wrote."""

from pathlib import Path

import pytest

from rig.check import oracle
from rig.check.session import run
from rig.world.ops import op
from rig.trace.format import load
from rig.world.config import RamSpec, WorldConfig
from rig.world.world import World

from tests.conftest import BACKENDS

PRIVATE, SHARED = True, False
BS = 0x1000
REGRESSION = (Path(__file__).resolve().parents[2] / "corpora" / "regressions"
              / "ok-hardened-35b5422e.trace")


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


def test_issue_trace_private_and_back_inside_one_op_is_ok(backend):
    trace = load(str(REGRESSION))
    result = run(trace.config, trace.ops, backend)
    assert str(result.outcome) == "ok", result.outcome.detail
    assert result.world.expected_data == {}


@pytest.mark.parametrize("design", ["hardened", "qemu-10.1", "rdm-rollback"])
@pytest.mark.parametrize("at", [1, "before 1", "attr"])
def test_interleaved_conversion_back_forgets_the_page(backend, design, at):
    """The same race on designs that do not serialize it and at every point."""
    cfg = WorldConfig(design=design, ram=(RamSpec(0x8000, 0x4000),))
    ops = [op("kvm_convert_memory", 0x8000, BS, SHARED),
           op("vfio_register", 2, 0x8000, 0x4000),
           op("device_dma", 2, 0x8000, BS, True),
           op("kvm_convert_memory", 0x8000, BS, PRIVATE,
              interleave=(at, op("kvm_convert_memory", 0x8000, 0x4000, SHARED)))]
    result = run(cfg, ops, backend)
    assert "data-integrity" not in {v.invariant for v in result.outcome.violations}


def test_a_page_the_op_did_not_convert_is_still_checked(backend):
    """Forgetting is per page: a neighbour's conversion (and back) keeps 0x8000 expected,
    and a lost write there is still caught."""
    cfg = WorldConfig(design="hardened", ram=(RamSpec(0x8000, 0x4000),))
    ops = [op("kvm_convert_memory", 0x8000, 0x2000, SHARED),
           op("vfio_register", 2, 0x8000, 0x4000),
           op("device_dma", 2, 0x8000, 0x2000, True),
           op("kvm_convert_memory", 0x9000, BS, PRIVATE,
              interleave=(1, op("kvm_convert_memory", 0x9000, BS, SHARED)))]
    result = run(cfg, ops, backend)
    assert str(result.outcome) == "ok"
    world = result.world
    assert set(world.expected_data) == {0x8000}
    world.guest_frame(0x8000).data = 0  # the write is lost: the oracle must say so
    assert [v.invariant for v in oracle.check_data(world)] == ["data-integrity"]


def test_a_write_after_the_change_is_expected_again(backend):
    """The forgetting happens when the attribute changes, not at the end of the op: a
    device write to the page after it went shared again is checked."""
    world = World(WorldConfig(design="hardened", ram=(RamSpec(0x0, 0x4000),)), backend)
    world.begin_op(0, None)
    assert world.op_kvm_convert_memory(0x0, BS, SHARED) == 0
    assert world.op_vfio_register(0, 0x0, 0x4000) == 0
    assert world.op_device_dma(0, 0x0, BS, True) == 0
    assert 0x0 in world.expected_data
    world.begin_op(1, None)
    assert world.kvm_set_memory_attributes(0x0, BS, PRIVATE) == 0
    assert world.kvm_set_memory_attributes(0x0, BS, SHARED) == 0
    assert world.expected_data == {} and world.converted == {0x0}
    assert world.op_device_dma(0, 0x0, BS, True) == 0
    assert 0x0 in world.expected_data and oracle.check_data(world) == []


def test_two_writes_into_one_hugetlb_frame_are_not_a_lost_write(backend):
    """Found by the smoke campaign: with hugetlb shared memory two 4 KiB pages share one
    2 MiB frame, which keeps one tag; the second write replaced the first's tag."""
    cfg = WorldConfig(design="hardened", hugetlb=True, ram=(RamSpec(0x0, 0x400000),))
    ops = [op("kvm_convert_memory", 0x3bf000, 0x3000, SHARED),
           op("vfio_register", 0, 0x0, 0x400000),
           op("device_dma", 0, 0x3bf000, 0x2000, True)]
    result = run(cfg, ops, backend)
    assert str(result.outcome) == "ok", result.outcome.detail
