"""VFIORamDiscardListener (docs/semantics.md 2.4; QEMU hw/vfio/listener.c), on both
backends."""

from rig.core.types import MemoryRegionSection as S
from rig.errors import EEXIST, EINVAL, ENOSPC

BS = 0x1000
IOVA = 0x100000000
VADDR = 0x7F0000000000


def setup(core, limit=64, iommufd=False, granularity=BS):
    container = core.IommufdIoas() if iommufd else core.VfioType1Container(limit)
    rba = core.RamBlockAttributes(32 * BS, granularity, "none")
    vrdl = core.VFIORamDiscardListener(container, granularity, vaddr_base=VADDR)
    return container, rba, vrdl


def test_populate_maps_one_mapping_per_granule(core):
    """vfio_ram_discard_notify_populate(): one DMA map per granule, iova from
    offset_within_address_space, vaddr from the region's host pointer."""
    container, rba, vrdl = setup(core)
    rba.register_listener(vrdl, S(0, 32 * BS, IOVA))
    assert rba.state_change(4 * BS, 3 * BS, False) == 0
    assert [(m.iova, m.size, m.frames) for m in container.mappings()] == [
        (IOVA + b * BS, BS, ((VADDR + b * BS) // BS,)) for b in (4, 5, 6)]


def test_populate_granularity_2m(core):
    """Granularity is the manager's block size: 2 MiB blocks -> 2 MiB mappings."""
    container = core.VfioType1Container(64)
    rba = core.RamBlockAttributes(8 * 0x200000, 0x200000, "none")
    vrdl = core.VFIORamDiscardListener(container, 0x200000, vaddr_base=VADDR)
    rba.register_listener(vrdl, S(0, 8 * 0x200000, IOVA))
    rba.state_change(0x200000, 2 * 0x200000, False)
    assert [(m.iova, m.size) for m in container.mappings()] == [
        (IOVA + 0x200000, 0x200000), (IOVA + 0x400000, 0x200000)]
    assert len(container.mappings()[0].frames) == 512


def test_populate_failure_unmaps_whole_section(core):
    """vfio_ram_discard_notify_populate(): on the first map failure, one unmap of the
    whole section ("Rollback") and the error is returned."""
    container, rba, vrdl = setup(core, limit=2)
    rba.register_listener(vrdl, S(0, 32 * BS, IOVA))
    assert rba.state_change(0, 4 * BS, False) == -ENOSPC
    assert container.count == 0 and container.dma_avail == 2
    assert core.coverage_marks()["vfio.populate_rollback"] == 1


def test_double_populate_rollback_removes_valid_older_mapping(core):
    """The hazard: populating a block that is already mapped fails with -EEXIST, and the
    rollback's whole-section unmap also removes the valid older mapping."""
    container, rba, vrdl = setup(core)
    rba.register_listener(vrdl, S(0, 32 * BS, IOVA))
    rba.state_change(2 * BS, BS, False)
    assert container.translate(IOVA + 2 * BS) >= 0
    # A second populate of the same section (what a mixture bug or a replay would do).
    assert vrdl.notify_populate(S(0, 4 * BS, IOVA)) == -EEXIST
    assert container.count == 0
    assert rba.bitmap.test_bit(2)  # the manager still believes block 2 is shared


def test_discard_is_one_unmap_and_errors_are_only_reported(core):
    """vfio_ram_discard_notify_discard(): one unmap call; an error is reported, never
    returned (type1 refuses to bisect a mapping: -EINVAL)."""
    container, rba, vrdl = setup(core)
    assert container.map_dma(IOVA, 4 * BS, VADDR) == 0
    vrdl.notify_discard(S(0, BS, IOVA))
    assert vrdl.discard_errors == [(IOVA, BS, -EINVAL)]
    assert container.count == 1


def test_iommufd_discard_of_nothing_is_success(core):
    """QEMU's iommufd backend turns the kernel's -ENOENT (nothing mapped) into success."""
    container, rba, vrdl = setup(core, iommufd=True)
    vrdl.notify_discard(S(0, 4 * BS, IOVA))
    assert vrdl.discard_errors == []


def test_unregister_unmaps_whole_section(core):
    """vfio_unregister_ram_discard_listener(): double_discard_supported, so one unmap."""
    container, rba, vrdl = setup(core)
    rba.register_listener(vrdl, S(0, 32 * BS, IOVA))
    rba.state_change(0, 3 * BS, False)
    rba.state_change(10 * BS, 2 * BS, False)
    assert container.count == 5
    assert rba.unregister_listener(vrdl) == 0
    assert container.count == 0 and container.locked_vm == 0
    assert vrdl.discard_errors == []


def test_register_replays_shared_memory_into_iommu(core):
    """Device add = register_listener: the replay maps all shared memory."""
    container, rba, vrdl = setup(core)
    rba.state_change(0, 2 * BS, False)
    rba.state_change(8 * BS, BS, False)
    assert rba.register_listener(vrdl, S(0, 32 * BS, IOVA)) == 0
    assert [m.iova for m in container.mappings()] == [IOVA, IOVA + BS, IOVA + 8 * BS]
