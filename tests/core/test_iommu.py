"""Unit tests of the fake IOMMU (docs/semantics.md 2.5 VFIO type1, 2.6 iommufd), on
both core backends.

Each test's docstring names the Linux function it mirrors, from
drivers/vfio/vfio_iommu_type1.c (vfio_dma_do_map, vfio_dma_do_unmap, vfio_find_dma,
vfio_iommu_iova_dma_valid, vfio_lock_acct, vfio_pin_pages_remote) or
drivers/iommu/iommufd/io_pagetable.c (iopt_map_pages, iopt_check_iova, iopt_unmap_iova,
iopt_unmap_iova_range).  Return codes: map_dma gives 0 or -errno, unmap_dma the unmapped
byte count or -errno, translate a frame id or -EFAULT / -EPERM.
"""

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from rig.core import load_backend
from rig.core.types import IommuMapping
from rig.errors import (
    EEXIST,
    EFAULT,
    EINVAL,
    ENOENT,
    ENOMEM,
    ENOSPC,
    EOVERFLOW,
    EPERM,
    errno_name,
)
from rig.check.model import ModelIommu
from tests.conftest import BACKENDS

PG = 0x1000
U64_MAX = (1 << 64) - 1
TOP = (1 << 64) - PG  # the last 4 KiB page of the IOVA space


def make(core, kind, **kw):
    """A type1 container or an iommufd IOAS of ``core``."""
    if kind == "type1":
        return core.VfioType1Container(**kw)
    kw.pop("dma_entry_limit", None)
    kw.pop("iova_ranges", None)
    return core.IommufdIoas(**kw)


def state(c):
    """Everything observable about a container, for no-state-change checks."""
    out = {"mappings": c.mappings(), "count": c.count, "locked_vm": c.locked_vm}
    if hasattr(c, "dma_avail"):
        out["dma_avail"] = c.dma_avail
    return out


def iovas(c):
    return [(m.iova, m.size) for m in c.mappings()]


class Pinner:
    """The pinner protocol: pin_pages(vaddr, npages) -> list of frames or -errno;
    unpin_pages(frames).  Records every call."""

    def __init__(self, fail=None, base=5000):
        self.fail = fail  # -errno returned by every pin_pages, or None
        self.base = base
        self.calls = []

    def pin_pages(self, vaddr, npages):
        self.calls.append(("pin", vaddr, npages))
        if self.fail is not None:
            return self.fail
        return [self.base + vaddr // PG + i for i in range(npages)]

    def unpin_pages(self, frames):
        self.calls.append(("unpin", tuple(frames)))


KINDS = ["type1", "iommufd"]


# == VFIO type1: MAP ======================================================================

def test_type1_map_size_zero_einval(core):
    """vfio_dma_do_map(): ``!size`` -> -EINVAL."""
    c = core.VfioType1Container()
    assert c.map_dma(0, 0, 0) == -EINVAL
    assert state(c) == state(core.VfioType1Container())


@pytest.mark.parametrize("iova,size,vaddr", [
    (0x800, PG, 0),        # unaligned iova
    (0, 0x1800, 0),        # unaligned size
    (0, PG, 0x10),         # unaligned vaddr
    (0, 0x200, 0),         # size smaller than a page
])
def test_type1_map_unaligned_einval(core, iova, size, vaddr):
    """vfio_dma_do_map(): ``(size | iova | vaddr) & (pgsize - 1)`` -> -EINVAL."""
    c = core.VfioType1Container()
    assert c.map_dma(iova, size, vaddr) == -EINVAL
    assert c.count == 0 and c.dma_avail == c.dma_entry_limit


@pytest.mark.parametrize("iova,size,vaddr", [
    ((1 << 64) - 0x1000, 0x2000, 0),   # IOVA wrap
    (0, 0x2000, (1 << 64) - 0x1000),   # vaddr wrap
    (2 * PG, U64_MAX - PG + 1, 0),     # IOVA end one page past 2^64
])
def test_type1_map_wrap_einval(core, iova, size, vaddr):
    """vfio_dma_do_map(): ``iova + size - 1 < iova || vaddr + size - 1 < vaddr`` ->
    -EINVAL (the pre-2025-10 form; no -EOVERFLOW for type1 here)."""
    c = core.VfioType1Container()
    assert c.map_dma(iova, size, vaddr) == -EINVAL
    assert c.count == 0


def test_type1_map_up_to_top_of_iova_space_ok(core):
    """vfio_dma_do_map(): a mapping ending exactly at 2^64 - 1 does not wrap."""
    c = core.VfioType1Container()
    assert c.map_dma(TOP - PG, 2 * PG, 0x7000) == 0
    assert iovas(c) == [(TOP - PG, 2 * PG)]
    assert c.translate(U64_MAX) == 0x7000 // PG + 1


@pytest.mark.parametrize("iova,npages", [
    (4 * PG, 4),   # exact
    (2 * PG, 4),   # partial front: ends inside the existing mapping
    (6 * PG, 4),   # partial back: starts inside it
    (2 * PG, 8),   # containing it
    (5 * PG, 1),   # contained in it
    (7 * PG, 1),   # its last page
])
def test_type1_map_overlap_eexist(core, iova, npages):
    """vfio_dma_do_map() / vfio_find_dma(): any overlap with an existing vfio_dma ->
    -EEXIST; the existing mapping is untouched."""
    c = core.VfioType1Container()
    assert c.map_dma(4 * PG, 4 * PG, 0x40000) == 0
    before = state(c)
    assert c.map_dma(iova, npages * PG, 0x80000) == -EEXIST
    assert state(c) == before


def test_type1_map_adjacent_is_not_overlap(core):
    """vfio_find_dma(): ``start + size <= dma->iova`` and ``start >= dma->iova +
    dma->size`` are not matches, so touching neighbours map fine."""
    c = core.VfioType1Container()
    assert c.map_dma(4 * PG, 4 * PG, 0) == 0
    assert c.map_dma(0, 4 * PG, 0) == 0
    assert c.map_dma(8 * PG, PG, 0) == 0
    assert iovas(c) == [(0, 4 * PG), (4 * PG, 4 * PG), (8 * PG, PG)]


def test_type1_map_eexist_checked_before_enospc(core):
    """vfio_dma_do_map(): the -EEXIST check precedes ``if (!iommu->dma_avail)``."""
    c = core.VfioType1Container(dma_entry_limit=1)
    assert c.map_dma(0, PG, 0) == 0
    assert c.dma_avail == 0
    assert c.map_dma(0, PG, 0) == -EEXIST
    assert c.map_dma(PG, PG, 0) == -ENOSPC


def test_type1_map_enospc_at_limit_plus_one(core):
    """vfio_dma_do_map(): ``dma_avail`` (seeded from dma_entry_limit) runs out after
    exactly ``limit`` mappings; the next one gets -ENOSPC; an unmap gives one back."""
    limit = 5
    c = core.VfioType1Container(dma_entry_limit=limit)
    for i in range(limit):
        assert c.map_dma(2 * i * PG, PG, 0) == 0, f"mapping {i + 1} of {limit}"
    assert c.dma_avail == 0
    before = state(c)
    assert c.map_dma(100 * PG, PG, 0) == -ENOSPC
    assert state(c) == before
    assert c.unmap_dma(0, PG) == PG
    assert c.dma_avail == 1
    assert c.map_dma(100 * PG, PG, 0) == 0


def test_type1_map_limit_zero_enospc(core):
    """vfio_dma_do_map(): dma_entry_limit=0 refuses the first mapping."""
    c = core.VfioType1Container(dma_entry_limit=0)
    assert c.map_dma(0, PG, 0) == -ENOSPC
    assert c.count == 0


RANGES = [(0, 0xFFFF), (0x20000, 0x2FFFF), (0x40000, U64_MAX)]


@pytest.mark.parametrize("iova,size", [
    (0x10000, PG),        # in the first hole
    (0xF000, 0x2000),     # straddles the end of range 0 into the hole
    (0x1F000, 0x2000),    # straddles the hole into range 1
    (0x2F000, 0x12000),   # straddles range 1, a hole, range 2
    (0x0, 0x21000),       # spans two ranges and the hole between
])
def test_type1_map_outside_iova_ranges_einval(core, iova, size):
    """vfio_iommu_iova_dma_valid(): the whole [iova, iova + size - 1] must be inside one
    valid IOVA range, else vfio_dma_do_map() returns -EINVAL."""
    c = core.VfioType1Container(iova_ranges=RANGES)
    assert c.map_dma(iova, size, 0) == -EINVAL
    assert c.count == 0 and c.dma_avail == c.dma_entry_limit


@pytest.mark.parametrize("iova,size", [
    (0, 0x10000),         # all of range 0 (inclusive last = 0xFFFF)
    (0x20000, 0x10000),   # all of range 1
    (0x2F000, PG),        # last page of range 1
    (TOP, PG),            # last page of range 2
])
def test_type1_map_inside_iova_ranges_ok(core, iova, size):
    """vfio_iommu_iova_dma_valid(): ranges are inclusive (start, last) pairs."""
    c = core.VfioType1Container(iova_ranges=RANGES)
    assert c.map_dma(iova, size, 0) == 0
    assert c.iova_ranges == tuple(RANGES)


def test_type1_map_iova_range_checked_after_enospc(core):
    """vfio_dma_do_map(): ``!dma_avail`` -> -ENOSPC is checked before
    vfio_iommu_iova_dma_valid() -> -EINVAL."""
    c = core.VfioType1Container(dma_entry_limit=1, iova_ranges=RANGES)
    assert c.map_dma(0, PG, 0) == 0
    assert c.map_dma(0x10000, PG, 0) == -ENOSPC  # in a hole, but no entries left
    c2 = core.VfioType1Container(dma_entry_limit=1, iova_ranges=RANGES)
    assert c2.map_dma(0x10000, PG, 0) == -EINVAL


@pytest.mark.parametrize("kind", KINDS)
def test_map_memlock_enomem_all_or_nothing(core, kind):
    """vfio_pin_pages_remote() / vfio_lock_acct() (iopt_map_pages() for iommufd):
    locked_vm + npages over RLIMIT_MEMLOCK -> -ENOMEM, and the failed map is undone
    (vfio_remove_dma()), so nothing changes."""
    c = make(core, kind, memlock_limit=4 * PG)
    assert c.map_dma(0, 3 * PG, 0) == 0
    before = state(c)
    assert c.map_dma(8 * PG, 2 * PG, 0) == -ENOMEM
    assert state(c) == before
    assert c.translate(8 * PG) == -EFAULT
    assert c.map_dma(8 * PG, PG, 0) == 0  # exactly at the limit is fine
    assert c.locked_vm == 4
    assert c.map_dma(9 * PG, PG, 0) == -ENOMEM


@pytest.mark.parametrize("kind", KINDS)
def test_map_memlock_single_oversized_mapping_enomem(core, kind):
    """vfio_lock_acct(): one mapping bigger than RLIMIT_MEMLOCK fails on its own."""
    c = make(core, kind, memlock_limit=PG)
    assert c.map_dma(0, 2 * PG, 0) == -ENOMEM
    assert c.count == 0 and c.locked_vm == 0
    c0 = make(core, kind, memlock_limit=0)
    assert c0.map_dma(0, PG, 0) == -ENOMEM


def test_type1_memlock_checked_after_iova_range(core):
    """vfio_dma_do_map(): pinning (and its -ENOMEM) comes after
    vfio_iommu_iova_dma_valid()."""
    c = core.VfioType1Container(iova_ranges=RANGES, memlock_limit=0)
    assert c.map_dma(0x10000, PG, 0) == -EINVAL
    assert c.map_dma(0, PG, 0) == -ENOMEM


def test_type1_dma_avail_plus_count_is_the_limit(core):
    """vfio_dma_do_map() / vfio_remove_dma(): each mapping takes one dma_avail and each
    removal gives one back, failed maps and unmaps included."""
    limit = 4
    c = core.VfioType1Container(dma_entry_limit=limit, memlock_limit=6 * PG,
                                iova_ranges=[(0, 0x3FFFFF)])
    ops = [
        ("map", 0, PG), ("map", 0, PG), ("map", PG, 2 * PG), ("map", 0x400000, PG),
        ("map", 8 * PG, 4 * PG), ("map", 4 * PG, PG), ("map", 5 * PG, PG),
        ("map", 6 * PG, PG), ("unmap", PG, PG), ("unmap", 0, 3 * PG), ("map", 0, PG),
        ("unmap", 0, 0x400000), ("map", 0, 0x800), ("unmap", 0, 0),
    ]
    for op, iova, size in ops:
        if op == "map":
            c.map_dma(iova, size, 0)
        else:
            c.unmap_dma(iova, size)
        assert c.dma_avail + c.count == limit, (op, hex(iova), hex(size))
        assert c.count == len(c.mappings())


def test_type1_locked_vm_counts_a_page_mapped_twice_twice(core):
    """vfio_pin_pages_remote() / vfio_lock_acct(): no dedup across vfio_dma entries, so
    the same vaddr mapped at two IOVAs is accounted twice in locked_vm."""
    c = core.VfioType1Container(memlock_limit=4 * PG)
    assert c.map_dma(0, 2 * PG, 0x10000) == 0
    assert c.map_dma(0x100000, 2 * PG, 0x10000) == 0
    assert c.locked_vm == 4
    assert c.translate(0) == c.translate(0x100000) == 0x10
    assert c.map_dma(0x200000, PG, 0x10000) == -ENOMEM  # the 5th pin is over the limit
    assert c.unmap_dma(0, 2 * PG) == 2 * PG
    assert c.locked_vm == 2


@pytest.mark.parametrize("kind", KINDS)
def test_map_identity_frames_per_page(core, kind):
    """vfio_pin_map_dma(): one pinned frame per IOMMU page; with no pinner the rig's
    frame is ``vaddr // pgsize + i``."""
    c = make(core, kind)
    assert c.map_dma(0x40000, 3 * PG, 0x123000) == 0
    (m,) = c.mappings()
    assert m == IommuMapping(0x40000, 3 * PG, (0x123, 0x124, 0x125), False)
    assert [c.translate(0x40000 + i * PG + 0x7) for i in range(3)] == [0x123, 0x124, 0x125]
    assert c.locked_vm == 3


@pytest.mark.parametrize("kind", KINDS)
def test_map_explicit_frames_recorded_in_order(core, kind):
    """vfio_pin_map_dma(): frames given directly (a sequence) are recorded one per page,
    in order, not necessarily contiguous."""
    c = make(core, kind)
    assert c.map_dma(2 * PG, 4 * PG, [7, 3, 99, 3]) == 0
    assert c.mappings() == [IommuMapping(2 * PG, 4 * PG, (7, 3, 99, 3), False)]
    assert [c.translate((2 + i) * PG) for i in range(4)] == [7, 3, 99, 3]
    assert c.locked_vm == 4


@pytest.mark.parametrize("kind", KINDS)
def test_map_explicit_frames_wrong_count_valueerror(core, kind):
    """Rig contract (no upstream twin): explicit frames must give one frame per page."""
    c = make(core, kind)
    with pytest.raises(ValueError):
        c.map_dma(0, 2 * PG, [1, 2, 3])
    assert state(c) == state(make(core, kind))


@pytest.mark.parametrize("kind", KINDS)
def test_readonly_mapping_write_eperm(core, kind):
    """vfio_dma_do_map() without IOMMU_WRITE in prot: a device write through it faults
    (-EPERM here); reads translate normally."""
    c = make(core, kind)
    assert c.map_dma(0, 2 * PG, 0x5000, readonly=True) == 0
    assert c.map_dma(2 * PG, PG, 0x9000) == 0
    assert c.translate(PG, write=False) == 6
    assert c.translate(PG, write=True) == -EPERM
    assert c.translate(2 * PG, write=True) == 9
    assert c.find(0).readonly is True and c.find(2 * PG).readonly is False
    assert c.translate(3 * PG, write=True) == -EFAULT  # unmapped beats read-only


# == VFIO type1: UNMAP (v2) ===============================================================

@pytest.mark.parametrize("iova,size", [
    (0x800, PG),               # unaligned iova
    (0, 0x1800),               # unaligned size
    (0, 0),                    # size 0
    (PG, 0),                   # size 0 inside a mapping
    (TOP, 0x2000),             # wrap
    (2 * PG, U64_MAX - PG + 1),  # end one page past 2^64
])
def test_type1_unmap_invalid_einval(core, iova, size):
    """vfio_dma_do_unmap(): ``iova & (pgsize-1)``, ``!size``, ``size & (pgsize-1)`` or
    ``iova + size - 1 < iova`` -> -EINVAL before anything is removed."""
    c = core.VfioType1Container()
    assert c.map_dma(0, 4 * PG, 0) == 0
    before = state(c)
    assert c.unmap_dma(iova, size) == -EINVAL
    assert state(c) == before


@pytest.mark.parametrize("iova,size", [
    (PG, 3 * PG),       # cuts the start of [0, 4 pages)
    (PG, 8 * PG),       # starts inside it, covers the next one too
    (0, 2 * PG),        # cuts its end
    (0, 6 * PG),        # covers the first, cuts the end of [4, 8 pages)
    (2 * PG, PG),       # strictly inside
])
def test_type1_unmap_bisect_einval_nothing_removed(core, iova, size):
    """vfio_dma_do_unmap() (v2): ``vfio_find_dma(iova, 1)`` starting before ``iova`` or
    ``vfio_find_dma(iova + size - 1, 0)`` ending after ``iova + size`` -> -EINVAL, checked
    before the removal loop, so nothing is unmapped."""
    c = core.VfioType1Container()
    assert c.map_dma(0, 4 * PG, 0) == 0
    assert c.map_dma(4 * PG, 4 * PG, 0) == 0
    before = state(c)
    assert c.unmap_dma(iova, size) == -EINVAL
    assert state(c) == before
    assert c.last_unmapped == 0


def test_type1_unmap_several_whole_mappings(core):
    """vfio_dma_do_unmap(): every vfio_dma fully inside goes in one call; the byte count
    is returned and dma_avail / locked_vm come back."""
    c = core.VfioType1Container(dma_entry_limit=10)
    assert c.map_dma(0, PG, 0) == 0
    assert c.map_dma(PG, 2 * PG, 0) == 0
    assert c.map_dma(3 * PG, 3 * PG, 0) == 0
    assert c.map_dma(6 * PG, PG, 0) == 0
    assert c.unmap_dma(PG, 5 * PG) == 5 * PG
    assert c.last_unmapped == 5 * PG
    assert iovas(c) == [(0, PG), (6 * PG, PG)]
    assert c.dma_avail == 8 and c.locked_vm == 2
    assert c.translate(PG) == -EFAULT and c.translate(5 * PG) == -EFAULT


def test_type1_unmap_empty_range_returns_zero(core):
    """vfio_dma_do_unmap(): no vfio_dma in the range is success with 0 bytes."""
    c = core.VfioType1Container()
    assert c.unmap_dma(0, PG) == 0
    assert c.map_dma(4 * PG, PG, 0) == 0
    assert c.unmap_dma(0, 4 * PG) == 0
    assert c.unmap_dma(5 * PG, 100 * PG) == 0
    assert iovas(c) == [(4 * PG, PG)]


def test_type1_unmap_range_covering_mappings_and_holes(core):
    """vfio_dma_do_unmap(): the loop from vfio_find_dma_first_node() skips holes and
    removes each whole vfio_dma up to ``iova + size``."""
    c = core.VfioType1Container(dma_entry_limit=8)
    for iova, n in ((2 * PG, 1), (5 * PG, 2), (10 * PG, 3), (20 * PG, 1)):
        assert c.map_dma(iova, n * PG, 0) == 0
    assert c.unmap_dma(PG, 15 * PG) == 6 * PG  # [1, 16) pages: holes at both ends
    assert iovas(c) == [(20 * PG, PG)]
    assert c.dma_avail == 7 and c.locked_vm == 1


def test_type1_unmap_exact_boundaries_ok(core):
    """vfio_dma_do_unmap() (v2): a range whose ends coincide with mapping edges is not a
    bisection."""
    c = core.VfioType1Container()
    assert c.map_dma(0, 4 * PG, 0) == 0
    assert c.map_dma(4 * PG, 4 * PG, 0) == 0
    assert c.unmap_dma(4 * PG, 4 * PG) == 4 * PG
    assert iovas(c) == [(0, 4 * PG)]


# == iommufd: MAP =========================================================================

@pytest.mark.parametrize("iova,size,vaddr", [
    (0, 0, 0),            # length 0
    (0x800, PG, 0),       # unaligned iova
    (0, 0x1800, 0),       # unaligned length
    (0, PG, 0x800),       # unaligned user va
    (TOP + 0x800, 0x1000, 0),  # unaligned iova also overflowing: alignment comes first
])
def test_iommufd_map_invalid_einval(core, iova, size, vaddr):
    """iopt_alloc_area_pages() / iopt_check_iova(): ``!length`` or misaligned length or
    iova -> -EINVAL (alignment is checked before the overflow)."""
    c = core.IommufdIoas()
    assert c.map_dma(iova, size, vaddr) == -EINVAL
    assert c.count == 0


@pytest.mark.parametrize("iova,size", [
    ((1 << 64) - 0x1000, 0x2000),
    (4 * PG, U64_MAX - 3 * PG + 1),  # (U64_MAX - PG + 1 is > SIZE_MAX - PAGE_SIZE: -EINVAL)
])
def test_iommufd_map_overflow_eoverflow(core, iova, size):
    """iopt_check_iova(): ``check_add_overflow(iova, length - 1, &last)`` -> -EOVERFLOW."""
    c = core.IommufdIoas()
    assert c.map_dma(iova, size, 0) == -EOVERFLOW
    assert c.count == 0


@pytest.mark.parametrize("iova,npages", [
    (4 * PG, 4), (2 * PG, 4), (6 * PG, 4), (2 * PG, 8), (5 * PG, 1),
])
def test_iommufd_map_overlap_eexist(core, iova, npages):
    """iopt_check_iova(): ``iopt_area_iter_first(iova, last)`` -> -EEXIST on any overlap."""
    c = core.IommufdIoas()
    assert c.map_dma(4 * PG, 4 * PG, 0) == 0
    before = state(c)
    assert c.map_dma(iova, npages * PG, 0) == -EEXIST
    assert state(c) == before


def test_iommufd_map_has_no_count_limit(core):
    """iopt_map_pages(): an IOAS has no dma_entry_limit; 5000 separate areas map fine."""
    c = core.IommufdIoas()
    n = 5000
    for i in range(n):
        assert c.map_dma(2 * i * PG, PG, i * PG) == 0, f"area {i}"
    assert c.count == n and c.locked_vm == n
    assert not hasattr(c, "dma_avail")
    assert c.translate(2 * (n - 1) * PG) == n - 1
    assert c.unmap_dma(0, 2 * n * PG) == n * PG
    assert c.count == 0 and c.locked_vm == 0


# == iommufd: UNMAP =======================================================================

def _ioas_with_areas(core, pinner=None):
    """Areas [1,2) [3,5) [6,7) [8,11) in pages."""
    c = core.IommufdIoas()
    c.pinner = pinner
    for iova, n in ((1, 1), (3, 2), (6, 1), (8, 3)):
        assert c.map_dma(iova * PG, n * PG, iova * PG) == 0
    return c


def test_iommufd_unmap_removes_areas_ascending(core):
    """iopt_unmap_iova_range(): ``iopt_area_iter_first()`` repeatedly takes the lowest
    area intersecting [start, last]; every area fully inside goes, in ascending order."""
    p = Pinner()
    c = _ioas_with_areas(core, pinner=None)
    c.pinner = p  # unpin order is what we look at
    assert c.unmap_dma(0, 16 * PG) == 7 * PG
    assert c.last_unmapped == 7 * PG
    assert c.mappings() == [] and c.locked_vm == 0
    assert [call[1][0] for call in p.calls] == [1, 3, 6, 8]  # identity frames = page no.


def test_iommufd_unmap_cut_area_enoent_after_partial_progress(core):
    """iopt_unmap_iova_range(): an area not fully inside (``area_last > last``) gives
    -ENOENT after the earlier areas were already removed; ``*unmapped`` reports them."""
    c = _ioas_with_areas(core)
    # [0, 9) pages: [1,2) [3,5) [6,7) inside, [8,11) cut at its end.
    assert c.unmap_dma(0, 9 * PG) == -ENOENT
    assert c.last_unmapped == 4 * PG
    assert iovas(c) == [(8 * PG, 3 * PG)], "earlier areas must be gone, the cut one kept"
    assert c.locked_vm == 3
    assert c.translate(PG) == -EFAULT and c.translate(8 * PG) == 8


def test_iommufd_unmap_cut_area_in_the_middle_keeps_later_ones(core):
    """iopt_unmap_iova_range(): the walk stops at the first cut area; areas after it
    (even ones inside the range) remain."""
    c = _ioas_with_areas(core)
    # Range [1, 4) pages: [1,2) removed, [3,5) cut at the end -> stop.
    assert c.unmap_dma(PG, 3 * PG) == -ENOENT
    assert c.last_unmapped == PG
    assert iovas(c) == [(3 * PG, 2 * PG), (6 * PG, PG), (8 * PG, 3 * PG)]


def test_iommufd_unmap_first_area_starts_before_range_enoent(core):
    """iopt_unmap_iova_range(): ``area_first < start`` on the first iteration -> -ENOENT
    with nothing removed."""
    c = _ioas_with_areas(core)
    before = state(c)
    assert c.unmap_dma(4 * PG, 12 * PG) == -ENOENT  # starts inside [3,5)
    assert state(c) == before
    assert c.last_unmapped == 0


@pytest.mark.parametrize("iova,size", [(0, PG), (2 * PG, PG), (11 * PG, 100 * PG),
                                       (5 * PG, PG)])
def test_iommufd_unmap_nothing_mapped_enoent(core, iova, size):
    """iopt_unmap_iova() (native IOMMU_IOAS_UNMAP): no area in the range -> -ENOENT."""
    c = _ioas_with_areas(core)
    before = state(c)
    assert c.unmap_dma(iova, size) == -ENOENT
    assert state(c) == before
    assert core.IommufdIoas().unmap_dma(0, PG) == -ENOENT


def test_iommufd_unmap_length_zero_einval(core):
    """iopt_unmap_iova(): ``!length`` -> -EINVAL."""
    c = _ioas_with_areas(core)
    before = state(c)
    assert c.unmap_dma(PG, 0) == -EINVAL
    assert state(c) == before


def test_iommufd_unmap_overflow_eoverflow(core):
    """iopt_unmap_iova(): ``check_add_overflow(iova, length - 1)`` -> -EOVERFLOW."""
    c = core.IommufdIoas()
    assert c.map_dma(TOP, PG, 0) == 0
    assert c.unmap_dma(TOP, 0x2000) == -EOVERFLOW
    assert c.count == 1


def test_iommufd_unmap_has_no_alignment_check(core):
    """iopt_unmap_iova(): no alignment check; an unaligned range removes the areas fully
    inside it and gives -ENOENT only when it cuts one."""
    c = _ioas_with_areas(core)
    assert c.unmap_dma(0x800, 0x1000 + 0x800) == PG       # [0x800, 0x2000) holds [1,2)
    assert c.unmap_dma(3 * PG + 0x800, PG) == -ENOENT      # cuts [3,5)
    assert iovas(c) == [(3 * PG, 2 * PG), (6 * PG, PG), (8 * PG, 3 * PG)]


def test_enoent_is_success_flag(core):
    """QEMU iommufd_cdev / container backends: the iommufd backend treats an unmap's
    -ENOENT as success, the type1 backend does not."""
    assert core.IommufdIoas().enoent_is_success is True
    assert not core.VfioType1Container().enoent_is_success


# == translate / find / mappings / pinner =================================================

@pytest.mark.parametrize("kind", KINDS)
def test_translate_unmapped_efault(core, kind):
    """Device DMA through an absent IOPTE is an IOMMU fault: -EFAULT."""
    c = make(core, kind)
    assert c.translate(0) == -EFAULT
    assert c.map_dma(2 * PG, 2 * PG, 0) == 0
    for iova in (0, 2 * PG - 1, 4 * PG, 100 * PG, U64_MAX):
        assert c.translate(iova) == -EFAULT, hex(iova)
        assert c.find(iova) is None, hex(iova)


@pytest.mark.parametrize("kind", KINDS)
def test_translate_and_find_mapped(core, kind):
    """iommu_iova_to_phys(): the frame pinned for the IOMMU page holding ``iova``."""
    c = make(core, kind)
    assert c.map_dma(2 * PG, 2 * PG, 0x30000) == 0
    assert c.translate(2 * PG) == 0x30
    assert c.translate(3 * PG + 0xFFF) == 0x31
    m = IommuMapping(2 * PG, 2 * PG, (0x30, 0x31), False)
    assert c.find(2 * PG) == m and c.find(4 * PG - 1) == m


@pytest.mark.parametrize("kind", KINDS)
def test_mappings_ascending(core, kind):
    """vfio_dma rb-tree / iopt area interval tree: mappings walk in IOVA order whatever
    the order they were made in."""
    c = make(core, kind)
    for iova in (9, 1, 30, 4, 0, 17):
        assert c.map_dma(iova * PG, PG, iova * PG) == 0
    ms = c.mappings()
    assert [m.iova // PG for m in ms] == [0, 1, 4, 9, 17, 30]
    assert all(isinstance(m, IommuMapping) for m in ms)
    assert c.count == 6


@pytest.mark.parametrize("kind", KINDS)
def test_pinner_called_on_map_and_unmap(core, kind):
    """vfio_pin_pages_remote() on map, vfio_unpin_pages_remote() on unmap (iommufd:
    iopt_fill_domains_pages / iopt_put_pages): the container asks its pinner for
    frames and gives the same frames back when the mapping goes."""
    p = Pinner(base=5000)
    c = make(core, kind)
    c.pinner = p
    assert c.map_dma(0, 2 * PG, 0x10000) == 0
    assert c.map_dma(4 * PG, PG, 0x20000) == 0
    assert p.calls == [("pin", 0x10000, 2), ("pin", 0x20000, 1)]
    assert c.translate(PG) == 5000 + 0x11
    assert c.find(0).frames == (5000 + 0x10, 5000 + 0x11)
    assert c.unmap_dma(0, 8 * PG) == 3 * PG
    assert p.calls[2:] == [("unpin", (5000 + 0x10, 5000 + 0x11)), ("unpin", (5000 + 0x20,))]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("errno", [EFAULT, ENOMEM])
def test_pinner_failure_fails_map_with_no_state_change(core, kind, errno):
    """vfio_pin_map_dma(): a pin error (``npage <= 0``) fails the map with that errno,
    and vfio_remove_dma() undoes it: no mapping, dma_avail and locked_vm unchanged."""
    c = make(core, kind, dma_entry_limit=3)
    assert c.map_dma(0, PG, 0) == 0
    before = state(c)
    p = Pinner(fail=-errno)
    c.pinner = p
    assert c.map_dma(4 * PG, 2 * PG, 0x4000) == -errno
    assert state(c) == before
    assert p.calls == [("pin", 0x4000, 2)]


@pytest.mark.parametrize("kind", KINDS)
def test_pinner_not_called_when_checks_fail(core, kind):
    """vfio_dma_do_map() / iopt_map_pages(): argument and overlap checks come before any
    pinning.  Memlock accounting comes after the pin (vfio_pin_pages_remote() pins, then
    checks ``locked_vm + lock_acct + 1 > limit``), so an -ENOMEM map pins and unpins."""
    c = make(core, kind, memlock_limit=2 * PG)
    p = Pinner()
    c.pinner = p
    assert c.map_dma(0, PG, 0) == 0
    assert c.map_dma(0, PG, 0) == -EEXIST
    assert c.map_dma(PG, 0x800, 0) == -EINVAL
    assert c.map_dma(PG, 2 * PG, 0) == -ENOMEM
    assert p.calls == [("pin", 0, 1), ("pin", 0, 2), ("unpin", (5000, 5001))]


@pytest.mark.parametrize("kind", KINDS)
def test_explicit_frames_with_pinner_valueerror(core, kind):
    """Rig contract: explicit frames bypass the pinner, so giving both is a ValueError
    and changes nothing."""
    c = make(core, kind)
    p = Pinner()
    c.pinner = p
    before = state(c)
    with pytest.raises(ValueError):
        c.map_dma(0, 2 * PG, [1, 2])
    assert state(c) == before
    assert p.calls == []


@pytest.mark.parametrize("kind", KINDS)
def test_pinner_returning_wrong_frame_count_valueerror(core, kind):
    """vfio_pin_pages_remote() pins exactly npage pages.  A pinner answering with the
    wrong number of frames is refused like wrong explicit frames (ValueError) and maps
    nothing."""
    class Short(Pinner):
        def pin_pages(self, vaddr, npages):
            super().pin_pages(vaddr, npages)
            return [1, 2, 3]

    c = make(core, kind)
    c.pinner = Short()
    raised = False
    try:
        ret = c.map_dma(0, PG, 0)
    except ValueError:
        raised = True
    assert raised, (
        f"{core.name} backend (_pin / pin_and_insert): a pinner returning 3 frames for a "
        f"1-page map was accepted (ret={ret}, mappings={c.mappings()}, "
        f"locked_vm={c.locked_vm}); it must raise ValueError like wrong explicit frames")
    assert c.count == 0 and c.locked_vm == 0


# == large and sparse IOVAs ===============================================================

@pytest.mark.parametrize("kind", KINDS)
def test_mappings_at_zero_and_top_coexist(core, kind):
    """vfio_dma_do_map() / iopt_map_pages(): the whole 64-bit IOVA space is usable;
    a mapping at 0 and one ending at 2^64 - 1 are independent."""
    c = make(core, kind)
    assert c.map_dma(TOP, PG, 0x1000) == 0
    assert c.map_dma(0, PG, 0x2000) == 0
    assert c.map_dma(1 << 63, PG, 0x3000) == 0
    assert iovas(c) == [(0, PG), (1 << 63, PG), (TOP, PG)]
    assert c.translate(U64_MAX) == 1 and c.translate(0) == 2 and c.translate(1 << 63) == 3
    assert c.translate(TOP - 1) == -EFAULT
    assert c.find(U64_MAX).iova == TOP


@pytest.mark.parametrize("kind", KINDS)
def test_unmap_half_space_removes_only_what_is_inside(core, kind):
    """vfio_dma_do_unmap() / iopt_unmap_iova_range() over (0, 2^63): only the mappings
    inside go; the ones above 2^63 stay."""
    c = make(core, kind)
    for iova in (0, 0x7FFF_FFFF_FFFF_F000, 1 << 63, TOP, 0x1234_5000):
        assert c.map_dma(iova, PG, 0) == 0
    assert c.unmap_dma(0, 1 << 63) == 3 * PG
    assert iovas(c) == [(1 << 63, PG), (TOP, PG)]
    assert c.unmap_dma(1 << 63, 1 << 63) == 2 * PG  # the upper half, up to 2^64 - 1
    assert c.mappings() == [] and c.locked_vm == 0


@pytest.mark.parametrize("kind", KINDS)
def test_unmap_to_top_of_iova_space(core, kind):
    """vfio_dma_do_unmap(): ``iova + size - 1`` may be exactly 2^64 - 1 (no wrap)."""
    c = make(core, kind)
    assert c.map_dma(TOP - 2 * PG, 2 * PG, 0) == 0
    assert c.map_dma(TOP, PG, 0) == 0
    assert c.unmap_dma(TOP - 4 * PG, 5 * PG) == 3 * PG
    assert c.count == 0


@pytest.mark.parametrize("kind", KINDS)
def test_pgsize_2m_container(core, kind):
    """vfio_dma_do_map(): ``pgsize = 1 << __ffs(pgsize_bitmap)``; with 2 MiB IOMMU pages
    4 KiB alignment is not enough, and frames are per 2 MiB page."""
    big = 0x200000
    c = make(core, kind, pgsize=big)
    assert c.pgsize == big
    assert c.map_dma(PG, big, 0) == -EINVAL
    assert c.map_dma(0, PG, 0) == -EINVAL
    assert c.map_dma(0, big, PG) == -EINVAL
    assert c.map_dma(big, 2 * big, 4 * big) == 0
    assert c.map_dma((1 << 64) - big, big, big) == 0
    assert c.translate(big + 0x1234) == 4
    assert c.translate(3 * big - 1) == 5
    assert c.translate(U64_MAX) == 1
    assert c.locked_vm == 3
    assert c.unmap_dma(big, PG) == (-EINVAL if kind == "type1" else -ENOENT)
    assert c.unmap_dma(0, 1 << 63) == 2 * big
    assert iovas(c) == [((1 << 64) - big, big)]


@pytest.mark.parametrize("shift", [54, 55, 63])
def test_huge_pgsize_container(core, shift):
    """vfio_dma_do_map() with a very large minimum IOMMU page (any power of two the
    constructor accepts): one page maps, translates and unmaps."""
    pg = 1 << shift
    try:
        c = core.IommufdIoas(pgsize=pg)
    except ValueError:
        pytest.skip(f"{core.name} refuses pgsize 2^{shift}")
    try:
        ret = c.map_dma(0, pg, 0)
    except MemoryError:
        pytest.fail(
            f"{core.name} backend (IoPageTable._init_table): pgsize 2^{shift} is accepted "
            f"but the first map raises MemoryError; with pfn_bits {64 - shift} <= 9 the "
            f"radix table must still keep at least one interior level (levels >= 1), or "
            f"the root IoPtNode is used as an IoPtLeaf")
    assert ret == 0
    assert c.translate(pg - 1) == 0
    assert c.unmap_dma(0, pg) == pg


# == differential: both backends against rig.check.model.ModelIommu ============================

class _DetPinner:
    """Deterministic pinner for the differential run: fails for some vaddrs."""

    def __init__(self):
        self.calls = []

    def pin_pages(self, vaddr, npages):
        self.calls.append(("pin", vaddr, npages))
        if (vaddr // PG) % 7 == 3:
            return -EFAULT
        return [10_000 + vaddr // PG + i for i in range(npages)]

    def unpin_pages(self, frames):
        self.calls.append(("unpin", tuple(frames)))


_LOW = st.integers(0, 16)
_PAGE = st.one_of(_LOW, _LOW, st.integers((1 << 52) - 6, (1 << 52) - 1))
_VA = st.one_of(_LOW, _LOW, _LOW, st.integers((1 << 52) - 6, (1 << 52) - 1))
_MAP = st.tuples(st.just("map"), _PAGE, st.integers(0, 5), _VA, st.booleans(),
                 st.sampled_from([0, 0, 0, 0, 0x800]), st.booleans())
_UNMAP = st.tuples(st.just("unmap"), _PAGE,
                   st.one_of(st.integers(0, 12).map(lambda n: n * PG),
                             st.sampled_from([0x800, 1 << 63, (1 << 64) - PG])),
                   st.sampled_from([0, 0, 0, 0x800]))
# Unmap from the k-th existing mapping to the (k+j)-th: [start - lo pages, end + hi
# pages), so exact, multi-mapping, hole-including and cutting ranges all come up often.
_UNMAP_NEAR = st.tuples(st.just("unmap_near"), st.integers(0, 8), st.integers(0, 3),
                        st.integers(-1, 2), st.integers(-1, 2))
# Back-to-back areas (n of `pages` pages each from page `start`), expanded into maps:
# the states where unmaps remove several areas or stop part way.
_MAP_RUN = st.tuples(st.just("map_run"), _LOW, st.integers(2, 4), st.integers(1, 3),
                     st.booleans())
_TRANSLATE = st.tuples(st.just("translate"), _PAGE, st.integers(0, PG - 1), st.booleans())


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(KINDS),
       limit=st.integers(0, 6),
       memlock=st.one_of(st.none(), st.integers(0, 14)),
       ranges=st.sampled_from([None, [(0, 24 * PG - 1), (32 * PG, U64_MAX)]]),
       use_pinner=st.booleans(),
       ops=st.lists(st.one_of(_MAP, _MAP, _MAP_RUN, _UNMAP, _UNMAP_NEAR, _TRANSLATE),
                    min_size=4, max_size=40))
def test_backends_agree_with_model_iommu(kind, limit, memlock, ranges, use_pinner, ops):
    """vfio_dma_do_map / vfio_dma_do_unmap / iopt_map_pages / iopt_unmap_iova_range: every
    backend returns what rig.check.model.ModelIommu returns, and holds the same mappings,
    count, locked_vm, dma_avail and pinner calls, after every op."""
    kw = {"pgsize": PG, "memlock_limit": None if memlock is None else memlock * PG}
    if kind == "type1":
        kw.update(dma_entry_limit=limit, iova_ranges=ranges)
    impls = {"model": ModelIommu(kind, **kw)}
    for name in BACKENDS:
        impls[name] = make(load_backend(name), kind, **kw)
    if use_pinner:
        for impl in impls.values():
            impl.pinner = _DetPinner()

    def observe():
        out = {}
        for name, impl in impls.items():
            obs = (impl.mappings(), impl.count, impl.locked_vm,
                   impl.dma_avail if kind == "type1" else None,
                   impl.pinner.calls if use_pinner else None)
            out[name] = obs
        return out

    expanded = []
    for op in ops:
        if op[0] == "map_run":
            _, start, n, pages, readonly = op
            expanded += [("map", start + i * pages, pages, start + i * pages, readonly, 0, False)
                         for i in range(n)]
        else:
            expanded.append(op)

    for step, op in enumerate(expanded):
        if op[0] == "map":
            _, iova_pg, npages, va_pg, readonly, skew, explicit = op
            iova, size = iova_pg * PG + skew, npages * PG
            if explicit and not use_pinner:
                vaddr = tuple(3 * va_pg + i for i in range(npages))
            else:
                vaddr = va_pg * PG
            args = (iova, size, vaddr, readonly)
            rets = {n: impl.map_dma(*args[:3], readonly=readonly) for n, impl in impls.items()}
        elif op[0] == "unmap":
            _, iova_pg, size, skew = op
            args = (iova_pg * PG + skew, size)
            rets = {n: impl.unmap_dma(*args) for n, impl in impls.items()}
        elif op[0] == "unmap_near":
            _, k, j, lo, hi = op
            ms = impls["model"].mappings()
            if ms:
                first = ms[k % len(ms)]
                last = ms[min(k % len(ms) + j, len(ms) - 1)]
                start = min(max(0, first.iova - lo * PG), TOP)
                end = min(1 << 64, last.iova + last.size + hi * PG)
                # 2^64 is no u64 (the cy backend raises OverflowError): clamp.
                args = (start, min(max(0, end - start), U64_MAX - PG + 1))
            else:
                args = (0, PG)
            rets = {n: impl.unmap_dma(*args) for n, impl in impls.items()}
        else:
            _, iova_pg, off, write = op
            args = (iova_pg * PG + off, write)
            rets = {n: impl.translate(args[0], write=write) for n, impl in impls.items()}
        assert len(set(rets.values())) == 1, f"step {step} {op[0]}{args}: returns {rets}"
        ret = rets["model"]
        event(f"{kind} {op[0]} -> {errno_name(ret) if ret < 0 else 'ok'}"
              + (" after partial progress" if op[0].startswith("unmap") and ret < 0
                 and impls[BACKENDS[0]].last_unmapped else ""))
        obs = observe()
        for name in BACKENDS:
            assert obs[name] == obs["model"], (
                f"step {step} {op[0]}{args}: {name} state {obs[name]} != model {obs['model']}")
        if op[0].startswith("unmap") and len(BACKENDS) == 2:
            assert impls["cy"].last_unmapped == impls["pure"].last_unmapped, f"step {step}"
        if kind == "type1":
            for name in BACKENDS:
                assert impls[name].dma_avail + impls[name].count == limit
