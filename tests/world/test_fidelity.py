"""Fidelity regressions for the world and the designs (issue 9, section 3).

Each test names the upstream function it follows: Linux vfio_pin_pages_remote()
(drivers/vfio/vfio_iommu_type1.c), kvm_vm_ioctl_set_mem_attributes() (virt/kvm/
kvm_main.c), kvm_gmem_fallocate() (virt/kvm/guest_memfd.c); QEMU kvm_convert_memory()
(accel/kvm/kvm-all.c), vfio_ram_discard_register_listener() and
vfio_listener_region_add() (hw/vfio/listener.c).
"""

import pytest

from rig.errors import EFAULT, EINVAL, ENOMEM, ENOSPC
from rig.check.session import run
from rig.world.ops import op
from rig.world.config import X86_LAYOUT, RamSpec, WorldConfig
from rig.world.designs import DESIGNS
from rig.world.kvm import Kvm
from rig.world.world import RamBlock, World
from rig.world.events import Budget

from tests.conftest import BACKENDS

PG = 0x1000
U64 = 1 << 64
PRIVATE, SHARED = True, False


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


def new_world(cfg, backend):
    """A world ready for direct calls (as inside op 0)."""
    world = World(cfg, backend)
    world.begin_op(0, None)
    return world


# == item 1: the host pinner ============================================================

def test_vfio_pin_pages_remote_enomem_leaves_faulted_in_pages(backend):
    """vfio_pin_pages_remote(): the batch is pinned (pin_user_pages_remote() faults the
    memfd pages in) before RLIMIT_MEMLOCK is checked page by page; on -ENOMEM every
    pin is put back, but the pages stay allocated in the memfd."""
    world = new_world(WorldConfig(design="qemu-10.1", memlock_limit=2 * PG), backend)
    block = world.blocks[0]
    assert world.pinner.pin_pages(block.vaddr, 4) == -ENOMEM
    assert [block.memfd.backed(i * PG) for i in range(5)] == [True] * 4 + [False]
    assert all(block.memfd.frame_at(i * PG).pins == 0 for i in range(4))
    assert world.pinner.locked_vm == 0
    frames = world.pinner.pin_pages(block.vaddr, 2)  # exactly at the limit: fine
    assert frames == [block.memfd.frame_at(i * PG).id for i in range(2)]
    assert world.pinner.locked_vm == 2


def test_vfio_pin_pages_remote_efault_wins_over_enomem(backend):
    """vfio_pin_pages_remote(): vaddr_get_pfns() comes before the RLIMIT_MEMLOCK check,
    so a page the host cannot map (a private guest_memfd page, in-place) is -EFAULT
    even when the limit is 0."""
    world = new_world(WorldConfig(design="inplace", memlock_limit=0), backend)
    block = world.blocks[0]
    assert world.pinner.pin_pages(block.vaddr, 1) == -EFAULT


def test_vfio_pin_pages_remote_efault_after_pinned_pages_unpins_them(backend):
    """vfio_pin_pages_remote(): pages before the unmappable one are pinned (faulted in)
    first; the -EFAULT of the next batch undoes their pins (vfio_remove_dma()), the
    pages stay in the file."""
    world = new_world(WorldConfig(design="inplace"), backend)
    block = world.blocks[0]
    world.kvm.private.difference_update({0, 1})  # pages 0 and 1 shared, 2 private
    assert world.pinner.pin_pages(block.vaddr, 3) == -EFAULT
    assert block.gmem.backed(0) and block.gmem.backed(PG) and not block.gmem.backed(2 * PG)
    assert block.gmem.frame_at(0).pins == 0 and world.pinner.locked_vm == 0


def test_vfio_pin_pages_remote_memlock_populate_failure_allocates_memfd(backend):
    """vfio_pin_pages_remote() through the world: a to-shared conversion whose
    populate hits RLIMIT_MEMLOCK on the 3rd page leaves that page allocated in the
    memfd (qemu-10.1 then stops the VM before punching guest_memfd)."""
    cfg = WorldConfig(design="qemu-10.1", memlock_limit=2 * PG)
    ops = [op("vfio_register", 0, 0, 0x10000), op("kvm_convert_memory", 0, 4 * PG, SHARED)]
    result = run(cfg, ops, backend, stop_at_violation=False)
    assert result.steps[1].result == -ENOMEM
    memfd = result.world.blocks[0].memfd
    assert [memfd.backed(i * PG) for i in range(4)] == [True, True, True, False]
    assert result.world.pinner.locked_vm == 0


# == item 3: kvm_convert_memory of a range that wraps 2^64 ==============================

@pytest.mark.parametrize("design", list(DESIGNS))
def test_kvm_convert_memory_wrapping_range_to_shared_is_ignored(backend, design):
    """kvm_convert_memory(): after the alignment/size check, memory_region_find() finds
    no region for a range that wraps 2^64 (Int128 ranges do not come back round to low
    RAM): "Ignore converting non-assigned region to shared" returns 0, no VM stop;
    to private it is -EINVAL."""
    result = run(WorldConfig(design=design),
                 [op("kvm_convert_memory", U64 - PG, 2 * PG, SHARED),
                  op("kvm_convert_memory", U64 - PG, 2 * PG, PRIVATE)], backend,
                 stop_at_violation=False)
    assert result.steps[0].result == 0
    assert result.steps[1].result == -EINVAL


def test_kvm_convert_memory_wrapping_range_over_top_ram_kvm_einval(backend):
    """kvm_convert_memory(): when RAM sits right below 2^64, memory_region_find() finds
    it and KVM_SET_MEMORY_ATTRIBUTES refuses the wrapping range (-EINVAL) before any
    state change."""
    cfg = WorldConfig(design="qemu-10.1", ram=(RamSpec(U64 - 0x10000, 0x10000),))
    result = run(cfg, [op("kvm_convert_memory", U64 - PG, 2 * PG, SHARED)], backend,
                 stop_at_violation=False)
    assert result.steps[0].result == -EINVAL
    assert result.world.kvm.is_private(U64 - PG)


# == item 5: KVM_SET_MEMORY_ATTRIBUTES ending at 2^64 ===================================

def test_kvm_vm_ioctl_set_mem_attributes_end_at_2_64_einval(backend):
    """kvm_vm_ioctl_set_mem_attributes(): ``attrs->address + attrs->size <
    attrs->address`` in u64: a range ending exactly at 2^64 wraps to 0 -> -EINVAL."""
    kvm = Kvm()
    assert kvm.set_memory_attributes(U64 - PG, PG, True) == -EINVAL
    assert kvm.set_memory_attributes(U64 - 2 * PG, PG, True) == 0
    world = new_world(WorldConfig(), backend)
    assert world.kvm_set_memory_attributes(U64 - PG, PG, True) == -EINVAL


# == item 6: guest_memfd PUNCH_HOLE alignment ==========================================

@pytest.mark.parametrize("offset,size", [(0x800, PG), (0, 0x800), (PG, 0x1800)])
def test_kvm_gmem_fallocate_unaligned_punch_einval(backend, offset, size):
    """kvm_gmem_fallocate(): ``!PAGE_ALIGNED(offset) || !PAGE_ALIGNED(len)`` -> -EINVAL
    before kvm_gmem_punch_hole(); ram_block_discard_guest_memfd_range() passes the
    error on and nothing is punched (the rig used to round outward and punch)."""
    world = new_world(WorldConfig(), backend)
    block = world.blocks[0]
    for i in range(4):
        block.gmem.touch(i * PG)
    assert world.ram_block_discard_guest_memfd_range(block, offset, size) == -EINVAL
    assert all(block.gmem.backed(i * PG) for i in range(4))
    assert world.ram_block_discard_guest_memfd_range(block, PG, PG) == 0
    assert not block.gmem.backed(PG)


# == item 7: the dma_max_mappings budget =================================================

def test_vfio_ram_discard_register_listener_checks_each_section(backend):
    """vfio_ram_discard_register_listener(): the dma_max_mappings check runs after each
    section's registration over the container's listeners so far; QEMU 10.1 warns
    each time (a device spanning two RAM blocks over budget warns twice)."""
    cfg = WorldConfig(design="qemu-10.1", ram=X86_LAYOUT, dma_entry_limit=4, max_memslots=0)
    result = run(cfg, [op("vfio_register", 0, 0, 0x100008000)], backend)
    warnings = [e for e in result.steps[0].events if isinstance(e, Budget)]
    assert len(warnings) == 2 and all("warning" in e.message for e in warnings)
    assert result.steps[0].result == 0 and result.world.devices


@pytest.mark.parametrize("design", ["rdm-rollback", "hardened"])
def test_vfio_listener_region_add_new_container_refuses_gracefully(backend, design):
    """vfio_listener_region_add() ``fail:`` with ``!bcontainer->initialized``: a device
    whose second RAM block goes over budget is refused (-ENOSPC) after all its sections
    were added, its container torn down; no hw_error, the VM runs on."""
    # Section 1: 8 mappings + 12 memslots - 1 = 19 <= 20; with section 2: 26 > 20.
    cfg = WorldConfig(design=design, ram=X86_LAYOUT, dma_entry_limit=20, max_memslots=12)
    result = run(cfg, [op("vfio_register", 0, 0, 0x100008000)], backend)
    assert result.steps[0].result == -ENOSPC
    assert not result.world.devices and result.world.vm_stopped is None
    budget = [e for e in result.steps[0].events if isinstance(e, Budget)]
    assert len(budget) == 1 and "refused" in budget[0].message


@pytest.mark.parametrize("design,stops", [("hardened", True), ("rdm-rollback", True),
                                          ("qemu-10.1", False)])
def test_vfio_listener_region_add_initialized_container_hw_error(backend, design, stops):
    """vfio_listener_region_add() ``fail:`` with ``bcontainer->initialized``: a RAM
    section added after the device's container was set up (RAM hot-add) and over
    budget ends in hw_error("vfio: DMA mapping failed, unable to continue"): the VM
    stops.  QEMU 10.1 only warns.  (The rig has no RAM hot-add op; the block is added
    by hand.)"""
    cfg = WorldConfig(design=design, dma_entry_limit=20, max_memslots=0)
    world = new_world(cfg, backend)
    assert world.apply(op("vfio_register", 0, 0, 0x20000)) == 0  # 16 - 1 <= 20
    world.blocks.append(RamBlock(1, 0x10000, 0x10000, world))     # memory hot-add
    ret = world.design.vfio_ram_hot_add(world, 0, world.blocks[1])  # 32 - 2 > 20
    device = world.devices[("vfio", 0)]
    assert len(device.listeners) == 2
    if stops:
        assert ret == -ENOSPC and world.vm_stopped == -ENOSPC
        assert any(isinstance(e, Budget) and "hw_error" in e.message for e in world.events)
    else:
        assert ret == 0 and world.vm_stopped is None
