# Fake IOMMU: VFIO type1 containers and iommufd IOAS on one radix page table.

from libc.stdint cimport int64_t, uint64_t

ctypedef struct IoPte:
    uint64_t frame       # host frame id this IOMMU page points at (and pinned)
    uint64_t map_pfn     # first pfn of the mapping that owns this page
    uint64_t map_npages  # that mapping's length in pages; 0 = this page is not mapped
    uint64_t flags       # IOPTE_READONLY

cdef enum:
    IOPT_BITS = 9                 # 512 entries per table, as x86 and ARM page tables
    IOPT_ENTRIES = 512
    IOPTE_READONLY = 1

ctypedef struct IoPtLeaf:
    uint64_t nr_present
    IoPte pte[IOPT_ENTRIES]

ctypedef struct IoPtNode:
    uint64_t nr_children
    void *child[IOPT_ENTRIES]     # IoPtNode *, or IoPtLeaf * one level above the leaves


cdef class IoPageTable:
    cdef IoPtNode *root
    cdef int levels               # interior levels above the leaves
    cdef readonly uint64_t pgsize
    cdef int pgshift
    cdef uint64_t max_pfn
    cdef readonly uint64_t count          # mappings
    cdef readonly uint64_t locked_vm      # pinned IOMMU pages (a page in 2 mappings counts 2)
    cdef readonly uint64_t memlock_limit  # RLIMIT_MEMLOCK, bytes
    cdef readonly uint64_t last_unmapped
    cdef public object pinner
    cdef public object fault_hook
    cdef readonly bint enoent_is_success
    cdef uint64_t fault_partial   # progress allowed before an injected failure (NO_PARTIAL: none)

    cdef IoPte *pte_lookup(self, uint64_t pfn) noexcept nogil
    cdef IoPte *pte_alloc(self, uint64_t pfn) noexcept nogil
    cdef void pte_clear(self, uint64_t pfn) noexcept nogil
    cdef bint overlaps(self, uint64_t lo, uint64_t hi) noexcept nogil
    cdef bint next_present(self, uint64_t lo, uint64_t hi, uint64_t *out) noexcept nogil
    cdef int fault(self, str site) except? -2147483647
    cdef int pin_and_insert(self, uint64_t iova, uint64_t size, uint64_t vaddr, object frames,
                            bint readonly) except? -2147483647
    cdef int remove_mapping(self, uint64_t map_pfn) except -1
    cdef bint unaligned(self, uint64_t value) noexcept
    cdef object _mapping_at(self, uint64_t map_pfn)
    cdef int dma_map(self, uint64_t iova, uint64_t size, uint64_t vaddr, object frames,
                     bint readonly) except? -2147483647
    cdef int dma_unmap(self, uint64_t iova, uint64_t size) except? -2147483647


cdef class VfioType1Container(IoPageTable):
    cdef readonly uint64_t dma_entry_limit
    cdef readonly uint64_t dma_avail
    cdef uint64_t *c_iova_ranges  # pairs (start, last), inclusive
    cdef int nr_iova_ranges
    cdef bint iova_dma_valid(self, uint64_t start, uint64_t last) noexcept


cdef class IommufdIoas(IoPageTable):
    pass
