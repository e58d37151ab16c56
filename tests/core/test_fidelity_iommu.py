"""Fidelity regressions for the fake IOMMU and the VFIO listener (issue 9, section 3), on
both core backends and on the reference model.

Each test names the upstream function whose order of checks it follows:
Linux drivers/vfio/vfio_iommu_type1.c (vfio_pin_pages_remote), drivers/iommu/iommufd/
ioas.c (iommufd_ioas_map), io_pagetable.c (iopt_alloc_area_pages, iopt_check_iova,
iopt_insert_area), pages.c (iopt_alloc_user_pages, iopt_alloc_pages); QEMU
hw/vfio/listener.c (vfio_ram_discard_notify_populate).
"""

import pytest

from rig.core.types import MemoryRegionSection as S
from rig.errors import EEXIST, EFAULT, EINVAL, ENOMEM, EOVERFLOW
from rig.check.model import ModelIommu, ModelVfioListener

PG = 0x1000
U64 = 1 << 64
U64_MAX = U64 - 1
KINDS = ["type1", "iommufd"]


class Pinner:
    """pin_pages(vaddr, npages) -> frames or -errno; records every call."""

    def __init__(self, fail=None):
        self.fail = fail
        self.calls = []

    def pin_pages(self, vaddr, npages):
        self.calls.append(("pin", vaddr, npages))
        if self.fail is not None:
            return self.fail
        return [100 + vaddr // PG + i for i in range(npages)]

    def unpin_pages(self, frames):
        self.calls.append(("unpin", tuple(frames)))


def containers(core, kind, **kw):
    """The backend's container and the model's, built alike."""
    if kind == "type1":
        return [core.VfioType1Container(**kw), ModelIommu("type1", **kw)]
    return [core.IommufdIoas(**kw), ModelIommu("iommufd", **kw)]


# == item 1: pin before RLIMIT_MEMLOCK ===================================================

@pytest.mark.parametrize("kind", KINDS)
def test_vfio_pin_pages_remote_efault_wins_over_enomem(core, kind):
    """vfio_pin_pages_remote(): vaddr_get_pfns() faults the page in (and fails with
    -EFAULT) before ``locked_vm + lock_acct + 1 > limit`` is checked, so a map that is
    both unpinnable and over RLIMIT_MEMLOCK fails with -EFAULT (the rig used to answer
    -ENOMEM without asking the pinner)."""
    for c in containers(core, kind, memlock_limit=PG):
        c.pinner = Pinner(fail=-EFAULT)
        assert c.map_dma(0, 2 * PG, 0x10000) == -EFAULT
        assert c.pinner.calls == [("pin", 0x10000, 2)]
        assert c.count == 0 and c.locked_vm == 0


@pytest.mark.parametrize("kind", KINDS)
def test_vfio_pin_pages_remote_enomem_after_pinning_unpins(core, kind):
    """vfio_pin_pages_remote(): over RLIMIT_MEMLOCK is found after the pages were
    pinned; the pins are put back (put_pfn / vfio_batch_unpin) and the map is undone
    (vfio_remove_dma), all or nothing."""
    for c in containers(core, kind, memlock_limit=2 * PG):
        c.pinner = Pinner()
        assert c.map_dma(0, PG, 0) == 0
        assert c.map_dma(4 * PG, 2 * PG, 0x40000) == -ENOMEM
        assert c.pinner.calls == [("pin", 0, 1), ("pin", 0x40000, 2),
                                  ("unpin", (100 + 0x40, 100 + 0x41))]
        assert c.count == 1 and c.locked_vm == 1


# == item 4: iommufd MAP argument order ==================================================

def iommufd_all(core, **kw):
    return [core.IommufdIoas(**kw), ModelIommu("iommufd", **kw)]


@pytest.mark.parametrize("iova,size,vaddr", [
    (U64_MAX, PG, 0),          # unaligned too: -EINVAL before
    (0, U64_MAX, 0),           # unaligned length too
    (U64_MAX, U64_MAX, PG),
])
def test_iommufd_ioas_map_ulong_max_eoverflow_first(core, iova, size, vaddr):
    """iommufd_ioas_map(): ``cmd->iova >= ULONG_MAX || cmd->length >= ULONG_MAX`` ->
    -EOVERFLOW before anything else."""
    for c in iommufd_all(core):
        assert c.map_dma(iova, size, vaddr) == -EOVERFLOW
        assert c.count == 0


@pytest.mark.parametrize("iova,size,vaddr", [
    (0, PG, U64 - PG),            # uptr + length == 2^64 exactly: overflow
    (0, 0x1800, U64 - PG),        # host overflow beats the unaligned length
    (0x800, 2 * PG, U64 - PG),    # ... and the unaligned iova
])
def test_iopt_alloc_user_pages_host_overflow_first(core, iova, size, vaddr):
    """iopt_alloc_user_pages(): ``check_add_overflow(uptr, length, &end)`` ->
    -EOVERFLOW, before iopt_alloc_pages() and the area/IOVA checks; an end exactly at
    2^64 counts (the sum wraps to 0)."""
    for c in iommufd_all(core):
        assert c.map_dma(iova, size, vaddr) == -EOVERFLOW
        assert c.count == 0


def test_iopt_alloc_pages_length_bound_einval(core):
    """iopt_alloc_pages(): ``length > SIZE_MAX - PAGE_SIZE || length == 0`` -> -EINVAL,
    before iopt_check_iova()'s -EOVERFLOW."""
    for c in iommufd_all(core):
        assert c.map_dma(4 * PG, U64 - PG, 0) == -EINVAL
        assert c.map_dma(4 * PG, U64 - 2 * PG, 0) == -EOVERFLOW  # in bound: iova overflow


def test_iopt_insert_area_uptr_alignment_after_eexist(core):
    """iopt_insert_area(): the uptr's offset in its page is checked only after
    iopt_check_iova() found no overlapping area, so an overlapping map with an
    unaligned uptr is -EEXIST, a free one -EINVAL."""
    for c in iommufd_all(core):
        assert c.map_dma(0, 2 * PG, 0) == 0
        assert c.map_dma(PG, PG, 0x800) == -EEXIST
        assert c.map_dma(4 * PG, PG, 0x800) == -EINVAL
        assert c.count == 1


# == item 2: VFIO populate chunks aligned within the region ==============================

def test_vfio_ram_discard_notify_populate_chunks_on_offset_within_region(core):
    """vfio_ram_discard_notify_populate(): ``next = ROUND_UP(start + 1, granularity)``
    on offset_within_region ("aligned within memory region"), iova = start -
    offset_within_region + offset_within_address_space, vaddr = ram_ptr + start.  A
    section whose region offset and IOVA are not congruent modulo the granularity is
    cut on the region's granules, not on the IOVA's."""
    g, iova, vbase = 0x2000, 0x100000000, 0x7F0000000000
    section = S(0x1000, 0x4000, iova)
    want = [(iova, 0x1000, (vbase + 0x1000) // PG),
            (iova + 0x1000, 0x2000, (vbase + 0x2000) // PG),
            (iova + 0x3000, 0x1000, (vbase + 0x4000) // PG)]
    impls = [(core.VfioType1Container(64), core.VFIORamDiscardListener),
             (ModelIommu("type1", 64), ModelVfioListener)]
    for container, cls in impls:
        vrdl = cls(container, g, vaddr_base=vbase)
        assert vrdl.notify_populate(section) == 0
        assert [(m.iova, m.size, m.frames[0]) for m in container.mappings()] == want
