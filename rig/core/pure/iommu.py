"""Fake IOMMU backends: VFIO type1 containers and iommufd IOAS (pure-Python twin).

Mirrors ``rig.core.cy.iommu``: the same checks in the same order, the same return codes.
Linux references: drivers/vfio/vfio_iommu_type1.c (vfio_dma_do_map, vfio_dma_do_unmap),
drivers/iommu/iommufd/ioas.c (iommufd_ioas_map), io_pagetable.c (iopt_map_user_pages,
iopt_map_pages, iopt_check_iova, iopt_insert_area, iopt_unmap_iova_range), pages.c
(iopt_alloc_user_pages, iopt_alloc_pages).

Every mapping records the host frames it pinned, one per IOMMU page, because a mapping
whose frames no longer back the guest page is exactly the stale-mapping bug.  Frames come
from ``vaddr`` through the container's ``pinner`` (the world's host memory), or are given
directly as a sequence; with neither, frame = ``vaddr // pgsize + i`` (identity pinning).

``map_dma`` returns 0 or a negative errno; ``unmap_dma`` returns the unmapped byte count
(>= 0) or a negative errno.  ``last_unmapped`` keeps the bytes removed by the last unmap,
also when it failed part way (iommufd).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from rig.core.mutants import ACTIVE as _MUTANT
from rig.core.types import IommuMapping
from rig.errors import EEXIST, EFAULT, EINVAL, ENOENT, ENOMEM, ENOSPC, EOVERFLOW, EPERM

# Core mutant (rig.core.mutants): RIG_CORE_MUTANT, as the .pyx's macro.
_IOMMUFD_PARTIAL_UNMAP_IGNORED = _MUTANT == "iommufd-partial-unmap-ignored"
#: The core mutants this module implements: name -> flag.
MUTANT_FLAGS = {"iommufd-partial-unmap-ignored": int(_IOMMUFD_PARTIAL_UNMAP_IGNORED)}

U64_MAX = (1 << 64) - 1
#: The host kernel's PAGE_SIZE (x86-64): iommufd's uptr alignment and iopt_alloc_pages()'s
#: length bound are in host pages whatever the IOAS's iova_alignment (pgsize) is.
KERNEL_PAGE_SIZE = 0x1000
DEFAULT_DMA_ENTRY_LIMIT = 65535


class _IoPageTable:
    """Mappings kept sorted by IOVA: a start list for bisect plus a dict of records."""

    site_map = "iommu.map"
    site_unmap = "iommu.unmap"
    #: QEMU's iommufd backend turns an unmap's -ENOENT into success; its type1 one does not.
    enoent_is_success = False

    def __init__(self, pgsize: int, memlock_limit: int | None):
        if pgsize < 0x1000 or pgsize & (pgsize - 1):
            raise ValueError(f"pgsize 0x{pgsize:x} is not a power of two >= 0x1000")
        self.pgsize = pgsize
        self.memlock_limit = U64_MAX if memlock_limit is None else memlock_limit
        self.locked_vm = 0  # pinned IOMMU pages (same page in two mappings: counted twice)
        self.pinner = None
        self.fault_hook = None
        self.last_unmapped = 0
        self._fault_partial = None
        self._starts: list[int] = []
        self._maps: dict[int, IommuMapping] = {}

    # -- queries -------------------------------------------------------------------------
    @property
    def count(self) -> int:
        return len(self._starts)

    def mappings(self) -> list[IommuMapping]:
        return [self._maps[iova] for iova in self._starts]

    def find(self, iova: int) -> IommuMapping | None:
        """The mapping that contains ``iova``, if any."""
        i = bisect_right(self._starts, iova) - 1
        if i < 0:
            return None
        m = self._maps[self._starts[i]]
        return m if iova < m.iova + m.size else None

    def translate(self, iova: int, write: bool = False) -> int:
        """Device view of ``iova``: the frame id, -EFAULT if unmapped (an IOMMU fault), or
        -EPERM for a write through a read-only mapping."""
        m = self.find(iova)
        if m is None:
            return -EFAULT
        if write and m.readonly:
            return -EPERM
        return m.frames[(iova - m.iova) // self.pgsize]

    def _overlaps(self, iova: int, last: int) -> bool:
        if self.find(iova) is not None:
            return True
        i = bisect_right(self._starts, iova)
        return i < len(self._starts) and self._starts[i] <= last

    def _inside(self, iova: int, last: int) -> list[IommuMapping]:
        """Mappings intersecting ``[iova, last]``, ascending."""
        out = []
        first = self.find(iova)
        if first is not None:
            out.append(first)
        i = bisect_right(self._starts, iova)
        while i < len(self._starts) and self._starts[i] <= last:
            out.append(self._maps[self._starts[i]])
            i += 1
        return out

    # -- pinning and storage -------------------------------------------------------------
    def _fault(self, site: str) -> int:
        """The hook answers 0, a negative errno (fail before any change), or for a site
        with partial progress (errno, k): fail after k units of progress."""
        self._fault_partial = None
        if self.fault_hook is None:
            return 0
        answer = self.fault_hook(site)
        if isinstance(answer, tuple):
            self._fault_partial = answer[1]
            return answer[0]
        return answer

    def _pin(self, vaddr, npages: int):
        """Resolve and pin ``npages`` frames, then account them against RLIMIT_MEMLOCK;
        returns a tuple or a negative errno.  The kernel pins (faults in) before it
        accounts (vfio_pin_pages_remote(): vaddr_get_pfns(), then ``locked_vm +
        lock_acct + 1 > limit``; iommufd: pfn_reader, then incr_user_locked_vm()), so a
        pin error wins over -ENOMEM and -ENOMEM gives back the pins it took."""
        over = (self.locked_vm + npages) * self.pgsize > self.memlock_limit
        if not isinstance(vaddr, int):
            if self.pinner is not None:
                raise ValueError("explicit frames bypass the pinner: give a vaddr instead")
            frames = tuple(vaddr)
            if len(frames) != npages:
                raise ValueError(f"{len(frames)} frames given for {npages} pages")
            return -ENOMEM if over else frames
        if self.pinner is None:
            if over:
                return -ENOMEM  # vfio_lock_acct(): RLIMIT_MEMLOCK
            base = vaddr // self.pgsize
            return tuple(range(base, base + npages))
        frames = self.pinner.pin_pages(vaddr, npages)
        if isinstance(frames, int):
            if frames >= 0:
                raise ValueError(f"pinner returned {frames}: frames or a negative errno")
            return frames
        if len(frames) != npages:
            raise ValueError(f"{len(frames)} frames given for {npages} pages")
        if over:
            # RLIMIT_MEMLOCK: put back what was pinned (put_pfn(), vfio_batch_unpin()).
            self.pinner.unpin_pages(tuple(frames))
            return -ENOMEM
        return tuple(frames)

    def _insert(self, iova: int, size: int, frames: tuple, readonly: bool) -> None:
        i = bisect_left(self._starts, iova)
        self._starts.insert(i, iova)
        self._maps[iova] = IommuMapping(iova, size, frames, bool(readonly))
        self.locked_vm += len(frames)

    def _remove(self, m: IommuMapping) -> None:
        self._starts.pop(bisect_left(self._starts, m.iova))
        del self._maps[m.iova]
        self.locked_vm -= len(m.frames)
        if self.pinner is not None:
            self.pinner.unpin_pages(m.frames)

    def _unaligned(self, *values: int) -> bool:
        return any(v & (self.pgsize - 1) for v in values)


class VfioType1Container(_IoPageTable):
    """A VFIO type1 (v2) container.

    @dma_entry_limit: the module parameter (65535 by default) that seeds ``dma_avail``.
    @iova_ranges: valid IOVA ranges as inclusive ``(start, last)`` pairs.
    @memlock_limit: RLIMIT_MEMLOCK in bytes (None: unlimited).
    """

    site_map = "vfio.dma_map"
    site_unmap = "vfio.dma_unmap"

    def __init__(self, dma_entry_limit: int = DEFAULT_DMA_ENTRY_LIMIT, pgsize: int = 0x1000,
                 iova_ranges=None, memlock_limit: int | None = None):
        super().__init__(pgsize, memlock_limit)
        if dma_entry_limit < 0:
            raise ValueError("dma_entry_limit must be >= 0")
        self.dma_entry_limit = dma_entry_limit
        self.dma_avail = dma_entry_limit
        self.iova_ranges = tuple((int(s), int(e)) for s, e in (iova_ranges or [(0, U64_MAX)]))

    def map_dma(self, iova: int, size: int, vaddr, readonly: bool = False) -> int:
        """vfio_dma_do_map(): 0, or -EINVAL / -EEXIST / -ENOSPC / -EINVAL / pin errno."""
        va = vaddr if isinstance(vaddr, int) else 0
        if not size or self._unaligned(size, iova, va):
            return -EINVAL
        if iova + size - 1 > U64_MAX or va + size - 1 > U64_MAX:
            return -EINVAL  # IOVA or vaddr wrap
        last = iova + size - 1
        if self._overlaps(iova, last):
            return -EEXIST
        if not self.dma_avail:
            return -ENOSPC
        if not any(s <= iova and last <= e for s, e in self.iova_ranges):
            return -EINVAL
        ret = self._fault(self.site_map)
        if ret:
            return ret
        frames = self._pin(vaddr, size // self.pgsize)
        if isinstance(frames, int):
            return frames
        self.dma_avail -= 1
        self._insert(iova, size, frames, readonly)
        return 0

    def unmap_dma(self, iova: int, size: int) -> int:
        """vfio_dma_do_unmap() (v2): unmapped bytes, or -EINVAL (unaligned, zero, wrap, or
        bisecting a mapping at either end).  An empty range unmaps 0 bytes."""
        self.last_unmapped = 0
        if self._unaligned(iova) or not size or self._unaligned(size):
            return -EINVAL
        last = iova + size - 1
        if last > U64_MAX:
            return -EINVAL
        m = self.find(iova)
        if m is not None and m.iova != iova:
            return -EINVAL
        m = self.find(last)
        if m is not None and m.iova + m.size != iova + size:
            return -EINVAL
        ret = self._fault(self.site_unmap)
        if ret:
            return ret
        unmapped = 0
        for m in self._inside(iova, last):
            unmapped += m.size
            self._remove(m)
            self.dma_avail += 1
        self.last_unmapped = unmapped
        return unmapped


class IommufdIoas(_IoPageTable):
    """An iommufd IOAS: no mapping-count limit; unmap may fail after partial progress."""

    site_map = "iommufd.ioas_map"
    site_unmap = "iommufd.ioas_unmap"
    enoent_is_success = True

    def __init__(self, pgsize: int = 0x1000, memlock_limit: int | None = None):
        super().__init__(pgsize, memlock_limit)

    def map_dma(self, iova: int, size: int, vaddr, readonly: bool = False) -> int:
        """IOMMU_IOAS_MAP, in the kernel's order of checks:
        iommufd_ioas_map(): iova or length >= ULONG_MAX -> -EOVERFLOW;
        iopt_alloc_user_pages(): uptr + length overflows (an end exactly at 2^64 does)
        -> -EOVERFLOW;
        iopt_alloc_pages(): length 0 or > SIZE_MAX - PAGE_SIZE -> -EINVAL;
        iopt_alloc_area_pages(): length not iova_alignment-aligned -> -EINVAL;
        iopt_check_iova(): iova unaligned -> -EINVAL, iova + length - 1 overflows ->
        -EOVERFLOW, an existing area in the range -> -EEXIST;
        iopt_insert_area(): ``(uptr % PAGE_SIZE) & (iova_alignment - 1)`` -> -EINVAL
        (only after -EEXIST);
        then pinning (iopt_fill_domains_pages()): pin errno or -ENOMEM.  Atomic.
        With pgsize > PAGE_SIZE a uptr that is page- but not pgsize-aligned passes
        iopt_insert_area() and fails in iommu_map() when the domain is filled; the rig
        answers that -EINVAL at the iopt_insert_area() point, before pinning."""
        va = vaddr if isinstance(vaddr, int) else 0
        if iova >= U64_MAX or size >= U64_MAX:
            return -EOVERFLOW
        if va + size > U64_MAX:
            return -EOVERFLOW
        if not size or size > U64_MAX - KERNEL_PAGE_SIZE:
            return -EINVAL
        if self._unaligned(size):
            return -EINVAL
        if self._unaligned(iova):
            return -EINVAL
        last = iova + size - 1
        if last > U64_MAX:
            return -EOVERFLOW
        if self._overlaps(iova, last):
            return -EEXIST
        if self._unaligned(va):
            return -EINVAL
        ret = self._fault(self.site_map)
        if ret:
            return ret
        frames = self._pin(vaddr, size // self.pgsize)
        if isinstance(frames, int):
            return frames
        self._insert(iova, size, frames, readonly)
        return 0

    def unmap_dma(self, iova: int, size: int) -> int:
        """iopt_unmap_iova_range(): areas walked in ascending order; one not fully inside
        gives -ENOENT after the earlier ones were removed; nothing mapped gives -ENOENT."""
        self.last_unmapped = 0
        if not size:
            return -EINVAL
        last = iova + size - 1
        if last > U64_MAX:
            return -EOVERFLOW
        # An injected failure may come after k areas were removed (partial progress).
        ret = self._fault(self.site_unmap)
        if ret and self._fault_partial is None:
            return ret
        allowed = self._fault_partial
        unmapped = 0
        for m in self._inside(iova, last):
            if m.iova < iova or m.iova + m.size - 1 > last:
                if _IOMMUFD_PARTIAL_UNMAP_IGNORED and unmapped:
                    break  # to ``if (unmapped_bytes) rc = 0;``: a success
                self.last_unmapped = unmapped
                return -ENOENT
            if ret and allowed == 0:
                break
            if allowed is not None:
                allowed -= 1
            unmapped += m.size
            self._remove(m)
        self.last_unmapped = unmapped
        if ret:
            return ret
        return unmapped if unmapped else -ENOENT
