# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""VFIORamDiscardListener (Cython; twin: rig.core.pure.vfio).

One listener per (container, MemoryRegionSection); granularity is the manager's block
size.  Populate maps one granule at a time, and on the first failure unmaps the whole
section and returns the error.  Discard unmaps the section with one call; its errors are
only reported (QEMU's error_report), here appended to ``discard_errors``.
"""

from libc.errno cimport ENOENT
from libc.stdint cimport int64_t, uint64_t

from rig.core.cy.iommu cimport IoPageTable
from rig.core.cy.ram_block_attributes cimport MemoryRegionSection, RamDiscardListener, section_to_py

# Core mutant (rig.core.mutants), 0 unless a variant build defines it.
cdef extern from *:
    """
    #ifndef RIG_MUTANT_VFIO_POPULATE_NO_ROLLBACK
    #define RIG_MUTANT_VFIO_POPULATE_NO_ROLLBACK 0
    #endif
    """
    const int RIG_MUTANT_VFIO_POPULATE_NO_ROLLBACK

#: The core mutants this module was compiled with: name -> flag.
MUTANT_FLAGS = {"vfio-populate-no-rollback": RIG_MUTANT_VFIO_POPULATE_NO_ROLLBACK}

cdef uint64_t mark_populate_rollback = 0


def coverage_marks():
    return {"vfio.populate_rollback": mark_populate_rollback} if mark_populate_rollback else {}


def reset_coverage_marks():
    global mark_populate_rollback
    mark_populate_rollback = 0


cdef class VFIORamDiscardListener(RamDiscardListener):
    """@container: the IOMMU backend (type1 container or iommufd IOAS) to map into.
    @granularity: the manager's minimum granularity (block size), a power of two.
    @vaddr_base: the host address of offset 0 of the RAM region (what QEMU gets from
    memory_region_get_ram_ptr()); each granule maps ``vaddr_base + offset_within_region``.
    """

    def __init__(self, IoPageTable container not None, uint64_t granularity,
                 uint64_t vaddr_base=0, bint readonly=False):
        if granularity == 0 or granularity & (granularity - 1):
            raise ValueError(f"granularity 0x{granularity:x} is not a power of two")
        self.container = container
        self.granularity = granularity
        self.vaddr_base = vaddr_base
        self.readonly_map = readonly
        self.double_discard_supported = True
        self.discard_errors = []

    cdef int _notify_populate(self, MemoryRegionSection *section) except? -2147483647:
        """vfio_ram_discard_notify_populate(): "Map in (aligned within memory region)
        minimum granularity": the chunks are aligned on offset_within_region,
        ``next = ROUND_UP(start + 1, granularity)``, and each maps
        ``iova = start - offset_within_region + offset_within_address_space`` to
        ``ram_ptr + start``."""
        global mark_populate_rollback
        cdef uint64_t start = section.offset_within_region
        cdef uint64_t left = section.size  # counted down: end may be 2^64 (u64 wrap)
        cdef uint64_t chunk, iova, vaddr
        cdef int ret
        while left:
            # next = MIN(ROUND_UP(start + 1, granularity), end)
            chunk = self.granularity - (start & (self.granularity - 1))
            if chunk > left:
                chunk = left
            iova = start - section.offset_within_region + section.offset_within_address_space
            vaddr = self.vaddr_base + start
            ret = self.container.dma_map(iova, chunk, vaddr, None, self.readonly_map)
            if ret:
                # Rollback: one unmap of the whole section, mapped granules or not
                # (vfio-populate-no-rollback: none, the granules mapped so far stay).
                if not RIG_MUTANT_VFIO_POPULATE_NO_ROLLBACK:
                    mark_populate_rollback += 1
                    self._notify_discard(section)
                return ret
            start += chunk
            left -= chunk
        return 0

    cdef int _notify_discard(self, MemoryRegionSection *section) except -1:
        """vfio_ram_discard_notify_discard(): unmap with a single call."""
        cdef int ret = self.container.dma_unmap(section.offset_within_address_space,
                                                    section.size)
        if ret == -ENOENT and self.container.enoent_is_success:
            ret = 0  # QEMU's iommufd backend treats a missing mapping as unmapped
        if ret < 0:
            self.discard_errors.append((section.offset_within_address_space, section.size,
                                        ret))
        return 0

    def notify_populate(self, section):
        cdef MemoryRegionSection s
        s.offset_within_region, s.size, s.offset_within_address_space = section
        return self._notify_populate(&s)

    def notify_discard(self, section):
        cdef MemoryRegionSection s
        s.offset_within_region, s.size, s.offset_within_address_space = section
        self._notify_discard(&s)
