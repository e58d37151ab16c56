# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Fake IOMMU backends: VFIO type1 containers and iommufd IOAS (Cython; twin:
rig.core.pure.iommu, whose docstring gives the API contract).

Data structure.  Mappings live in a radix page table keyed by IOVA page number, 512
entries per level, exactly the shape of a real IOMMU's io-pgtable.  Every mapped page has
a 32-byte PTE holding the host frame it pinned plus the (first pfn, length) of the
mapping that owns it.  Why this and not a balanced tree of mappings (the kernel's
vfio_dma rb-tree):
- the rig must record one frame per page anyway (that is how stale mappings are seen),
  and a page table stores exactly that with no per-mapping allocation: 4,194,304 4 KiB
  mappings (a 16 GiB guest) cost 4M x 32 B = 128 MiB plus 8,192 leaf headers;
- translate (device DMA) and the overlap / bisect checks are O(levels) = O(1) lookups;
- map and unmap are O(pages) (unavoidable, each page is pinned) + O(levels); walking
  a range skips absent subtrees, so unmapping a huge, mostly empty range is cheap.
"""

from libc.errno cimport EEXIST, EFAULT, EINVAL, ENOENT, ENOMEM, ENOSPC, EOVERFLOW, EPERM
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport calloc, free, malloc

from rig.core.types import IommuMapping

# Core mutant (rig.core.mutants), 0 unless a variant build defines it.
cdef extern from *:
    """
    #ifndef RIG_MUTANT_IOMMUFD_PARTIAL_UNMAP_IGNORED
    #define RIG_MUTANT_IOMMUFD_PARTIAL_UNMAP_IGNORED 0
    #endif
    """
    const int RIG_MUTANT_IOMMUFD_PARTIAL_UNMAP_IGNORED

#: The core mutants this module was compiled with: name -> flag.
MUTANT_FLAGS = {"iommufd-partial-unmap-ignored": RIG_MUTANT_IOMMUFD_PARTIAL_UNMAP_IGNORED}

cdef uint64_t U64_MAX = 0xFFFFFFFFFFFFFFFF
cdef uint64_t NO_PARTIAL = 0xFFFFFFFFFFFFFFFF
# The host kernel's PAGE_SIZE (x86-64): iommufd's uptr alignment and iopt_alloc_pages()'s
# length bound are in host pages whatever the IOAS's iova_alignment (pgsize) is.
cdef uint64_t KERNEL_PAGE_SIZE = 0x1000
DEFAULT_DMA_ENTRY_LIMIT = 65535


cdef void _free_tree(void *node, int level) noexcept nogil:
    cdef IoPtNode *n
    cdef int i
    if node == NULL:
        return
    if level > 0:
        n = <IoPtNode *>node
        for i in range(IOPT_ENTRIES):
            if n.child[i] != NULL:
                _free_tree(n.child[i], level - 1)
    free(node)


cdef bint _next_present(void *node, int level, uint64_t base, uint64_t lo, uint64_t hi,
                        uint64_t *out) noexcept nogil:
    # @node covers pfns [base, base + 512^(level+1)); find the first present PTE in
    # [lo, hi] below it.  Level 0 is a leaf.
    cdef IoPtLeaf *leaf
    cdef IoPtNode *n
    cdef uint64_t i, i0, i1, span_last, shift
    if level == 0:
        leaf = <IoPtLeaf *>node
        if leaf.nr_present == 0:
            return False
        i0 = (lo - base) if lo > base else 0
        i1 = (hi - base) if hi - base < IOPT_ENTRIES - 1 else IOPT_ENTRIES - 1
        i = i0
        while i <= i1:
            if leaf.pte[i].map_npages:
                out[0] = base + i
                return True
            i += 1
        return False
    n = <IoPtNode *>node
    shift = IOPT_BITS * level
    i0 = ((lo - base) >> shift) if lo > base else 0
    span_last = (hi - base) >> shift
    i1 = span_last if span_last < IOPT_ENTRIES - 1 else IOPT_ENTRIES - 1
    i = i0
    while i <= i1:
        if n.child[i] != NULL and _next_present(n.child[i], level - 1, base + (i << shift),
                                                lo, hi, out):
            return True
        i += 1
    return False


cdef class IoPageTable:
    """Storage and pinning shared by both backends; see the module docstring."""

    def __cinit__(self, *args, **kwargs):
        self.root = NULL

    def _init_table(self, uint64_t pgsize, memlock_limit):
        cdef int pfn_bits
        if pgsize == 0 or pgsize & (pgsize - 1) or pgsize < 0x1000:
            raise ValueError(f"pgsize 0x{pgsize:x} is not a power of two >= 0x1000")
        self.pgsize = pgsize
        self.pgshift = 0
        while (<uint64_t>1 << self.pgshift) != pgsize:
            self.pgshift += 1
        pfn_bits = 64 - self.pgshift
        self.max_pfn = U64_MAX >> self.pgshift
        # Interior levels needed above the leaves to cover every pfn.
        # At least one, so the root is always an interior node (huge pgsizes leave
        # fewer than 9 pfn bits).
        self.levels = (pfn_bits - IOPT_BITS + IOPT_BITS - 1) // IOPT_BITS
        if self.levels < 1:
            self.levels = 1
        self.root = <IoPtNode *>calloc(1, sizeof(IoPtNode))
        if self.root == NULL:
            raise MemoryError()
        self.memlock_limit = U64_MAX if memlock_limit is None else memlock_limit
        self.pinner = None
        self.fault_hook = None

    def __dealloc__(self):
        _free_tree(self.root, self.levels)

    # -- the page table ------------------------------------------------------------------
    cdef IoPte *pte_lookup(self, uint64_t pfn) noexcept nogil:
        cdef void *node = self.root
        cdef int level = self.levels
        while level > 0:
            node = (<IoPtNode *>node).child[(pfn >> (IOPT_BITS * level)) & (IOPT_ENTRIES - 1)]
            if node == NULL:
                return NULL
            level -= 1
        return &(<IoPtLeaf *>node).pte[pfn & (IOPT_ENTRIES - 1)]

    cdef IoPte *pte_alloc(self, uint64_t pfn) noexcept nogil:
        # Claim the (not present) PTE for @pfn, creating tables on the way and counting
        # it in its leaf; the caller makes it present.  NULL only when calloc fails.
        cdef IoPtNode *n = self.root
        cdef void *child
        cdef int level = self.levels
        cdef uint64_t idx
        while level > 0:
            idx = (pfn >> (IOPT_BITS * level)) & (IOPT_ENTRIES - 1)
            child = n.child[idx]
            if child == NULL:
                child = calloc(1, sizeof(IoPtLeaf) if level == 1 else sizeof(IoPtNode))
                if child == NULL:
                    return NULL
                n.child[idx] = child
                n.nr_children += 1
            if level == 1:
                (<IoPtLeaf *>child).nr_present += 1
                return &(<IoPtLeaf *>child).pte[pfn & (IOPT_ENTRIES - 1)]
            n = <IoPtNode *>child
            level -= 1
        return NULL

    cdef void pte_clear(self, uint64_t pfn) noexcept nogil:
        # Clear a present PTE; free tables that become empty, bottom-up.
        cdef IoPtNode *path[8]
        cdef uint64_t idx[8]
        cdef IoPtNode *n = self.root
        cdef IoPtLeaf *leaf
        cdef int level = self.levels
        cdef int depth = 0
        while level > 0:
            path[depth] = n
            idx[depth] = (pfn >> (IOPT_BITS * level)) & (IOPT_ENTRIES - 1)
            depth += 1
            if level == 1:
                break
            n = <IoPtNode *>n.child[idx[depth - 1]]
            level -= 1
        leaf = <IoPtLeaf *>path[depth - 1].child[idx[depth - 1]]
        leaf.pte[pfn & (IOPT_ENTRIES - 1)].map_npages = 0
        leaf.nr_present -= 1
        if leaf.nr_present:
            return
        free(leaf)
        while depth > 0:
            depth -= 1
            n = path[depth]
            n.child[idx[depth]] = NULL
            n.nr_children -= 1
            if n.nr_children or depth == 0:
                return
            free(n)

    cdef bint overlaps(self, uint64_t lo, uint64_t hi) noexcept nogil:
        """Any mapped pfn in [lo, hi]?  One-page ranges (the common 4 KiB map) are a
        single lookup instead of a walk."""
        cdef IoPte *pte
        cdef uint64_t found
        if lo == hi:
            pte = self.pte_lookup(lo)
            return pte != NULL and pte.map_npages != 0
        return self.next_present(lo, hi, &found)

    cdef bint next_present(self, uint64_t lo, uint64_t hi, uint64_t *out) noexcept nogil:
        """The first mapped pfn in [lo, hi], ascending; false if none."""
        if lo > hi:
            return False
        return _next_present(self.root, self.levels, 0, lo, hi, out)

    # -- pinning and storage -------------------------------------------------------------
    cdef int fault(self, str site) except? -2147483647:
        # The hook answers 0, a negative errno (fail before any change), or for a site
        # with partial progress (errno, k): fail after k units of progress.
        self.fault_partial = NO_PARTIAL
        if self.fault_hook is None:
            return 0
        answer = self.fault_hook(site)
        if isinstance(answer, tuple):
            self.fault_partial = answer[1]
            return answer[0]
        return answer

    cdef int pin_and_insert(self, uint64_t iova, uint64_t size, uint64_t vaddr, object frames,
                            bint readonly) except? -2147483647:
        # Pin the pages (frames given, the pinner's, or identity), then account them
        # against RLIMIT_MEMLOCK, then fill the PTEs.  The kernel pins (faults in) before
        # it accounts (vfio_pin_pages_remote(): vaddr_get_pfns() then the
        # ``locked_vm + lock_acct + 1 > limit`` check; iommufd: pfn_reader pins, then
        # incr_user_locked_vm()), so a pin error (-EFAULT) wins over -ENOMEM, and an
        # -ENOMEM gives back the pins it took (the pages stay faulted in: that is the
        # pinner's business).  All or nothing: nothing is stored unless every page is
        # pinned and accounted.
        cdef uint64_t npages = size >> self.pgshift
        cdef uint64_t pfn = iova >> self.pgshift
        cdef uint64_t limit_pages = self.memlock_limit // self.pgsize
        cdef uint64_t i, base
        cdef IoPte *pte
        cdef object pinned = None
        if frames is not None:
            if self.pinner is not None:
                raise ValueError("explicit frames bypass the pinner: give a vaddr instead")
            pinned = frames
        elif self.pinner is not None:
            pinned = self.pinner.pin_pages(vaddr, npages)
            if isinstance(pinned, int):
                if pinned >= 0:
                    raise ValueError(f"pinner returned {pinned}: frames or a negative errno")
                return pinned
        if pinned is not None and <uint64_t>len(pinned) != npages:
            raise ValueError(f"{len(pinned)} frames given for {npages} pages")
        if npages > limit_pages or self.locked_vm > limit_pages - npages:
            # vfio_pin_pages_remote() / vfio_lock_acct(): over RLIMIT_MEMLOCK; the pages
            # pinned so far are put back (put_pfn(), vfio_batch_unpin()).
            if frames is None and self.pinner is not None:
                self.pinner.unpin_pages(tuple(pinned))
            return -ENOMEM
        base = vaddr >> self.pgshift
        for i in range(npages):
            pte = self.pte_alloc(pfn + i)
            if pte == NULL:
                raise MemoryError()
            pte.frame = base + i if pinned is None else <uint64_t>pinned[i]
            pte.map_pfn = pfn
            pte.map_npages = npages
            pte.flags = IOPTE_READONLY if readonly else 0
        self.locked_vm += npages
        self.count += 1
        return 0

    cdef int remove_mapping(self, uint64_t map_pfn) except -1:
        cdef IoPte *pte = self.pte_lookup(map_pfn)
        cdef uint64_t npages = pte.map_npages
        cdef uint64_t i
        cdef list frames = None
        if self.pinner is not None:
            frames = [self.pte_lookup(map_pfn + i).frame for i in range(npages)]
        for i in range(npages):
            self.pte_clear(map_pfn + i)
        self.locked_vm -= npages
        self.count -= 1
        if frames is not None:
            self.pinner.unpin_pages(tuple(frames))
        return 0

    cdef bint unaligned(self, uint64_t value) noexcept:
        return (value & (self.pgsize - 1)) != 0

    cdef int dma_map(self, uint64_t iova, uint64_t size, uint64_t vaddr, object frames,
                     bint readonly) except? -2147483647:
        raise NotImplementedError

    cdef int dma_unmap(self, uint64_t iova, uint64_t size) except? -2147483647:
        raise NotImplementedError

    # -- Python API ----------------------------------------------------------------------
    def map_dma(self, uint64_t iova, uint64_t size, vaddr, bint readonly=False):
        """Map ``[iova, iova+size)`` to ``vaddr`` (an int, pinned through ``pinner``) or
        to the given frame ids (a sequence, one per page).  0 or a negative errno."""
        if isinstance(vaddr, int):
            return self.dma_map(iova, size, vaddr, None, readonly)
        return self.dma_map(iova, size, 0, tuple(vaddr), readonly)

    def unmap_dma(self, uint64_t iova, uint64_t size):
        """Unmap ``[iova, iova+size)``: the unmapped byte count, or a negative errno."""
        cdef int ret = self.dma_unmap(iova, size)
        return ret if ret < 0 else self.last_unmapped

    cdef object _mapping_at(self, uint64_t map_pfn):
        cdef IoPte *pte = self.pte_lookup(map_pfn)
        cdef uint64_t npages = pte.map_npages
        cdef uint64_t i
        frames = tuple([self.pte_lookup(map_pfn + i).frame for i in range(npages)])
        return IommuMapping(map_pfn << self.pgshift, npages << self.pgshift, frames,
                            bool(pte.flags & IOPTE_READONLY))

    def mappings(self):
        """Every mapping, ascending by IOVA."""
        out = []
        cdef uint64_t pfn = 0
        cdef IoPte *pte
        while pfn <= self.max_pfn and self.next_present(pfn, self.max_pfn, &pfn):
            out.append(self._mapping_at(pfn))
            pte = self.pte_lookup(pfn)
            if pte.map_npages > self.max_pfn - pfn:
                break
            pfn += pte.map_npages
        return out

    def find(self, uint64_t iova):
        """The mapping that contains ``iova``, if any."""
        cdef IoPte *pte = self.pte_lookup(iova >> self.pgshift)
        if pte == NULL or not pte.map_npages:
            return None
        return self._mapping_at(pte.map_pfn)

    def translate(self, uint64_t iova, bint write=False):
        """Device view of ``iova``: the frame id, -EFAULT if unmapped (an IOMMU fault), or
        -EPERM for a write through a read-only mapping."""
        cdef IoPte *pte = self.pte_lookup(iova >> self.pgshift)
        if pte == NULL or not pte.map_npages:
            return -EFAULT
        if write and pte.flags & IOPTE_READONLY:
            return -EPERM
        return pte.frame


cdef class VfioType1Container(IoPageTable):
    """A VFIO type1 (v2) container.

    @dma_entry_limit: the module parameter (65535 by default) that seeds ``dma_avail``.
    @iova_ranges: valid IOVA ranges as inclusive ``(start, last)`` pairs.
    @memlock_limit: RLIMIT_MEMLOCK in bytes (None: unlimited).
    """

    site_map = "vfio.dma_map"
    site_unmap = "vfio.dma_unmap"

    def __init__(self, uint64_t dma_entry_limit=DEFAULT_DMA_ENTRY_LIMIT, uint64_t pgsize=0x1000,
                 iova_ranges=None, memlock_limit=None):
        cdef int i
        self._init_table(pgsize, memlock_limit)
        self.dma_entry_limit = dma_entry_limit
        self.dma_avail = dma_entry_limit
        ranges = [(int(s), int(e)) for s, e in (iova_ranges or [(0, U64_MAX)])]
        self.c_iova_ranges = <uint64_t *>malloc(2 * len(ranges) * sizeof(uint64_t) + 1)
        if self.c_iova_ranges == NULL:
            raise MemoryError()
        self.nr_iova_ranges = len(ranges)
        for i, (s, e) in enumerate(ranges):
            self.c_iova_ranges[2 * i] = s
            self.c_iova_ranges[2 * i + 1] = e

    def __dealloc__(self):
        free(self.c_iova_ranges)

    @property
    def iova_ranges(self):
        return tuple((self.c_iova_ranges[2 * i], self.c_iova_ranges[2 * i + 1])
                     for i in range(self.nr_iova_ranges))

    cdef bint iova_dma_valid(self, uint64_t start, uint64_t last) noexcept:
        # vfio_iommu_iova_dma_valid(): inside one valid range.
        cdef int i
        for i in range(self.nr_iova_ranges):
            if self.c_iova_ranges[2 * i] <= start and last <= self.c_iova_ranges[2 * i + 1]:
                return True
        return False

    cdef int dma_map(self, uint64_t iova, uint64_t size, uint64_t vaddr, object frames,
                     bint readonly) except? -2147483647:
        """vfio_dma_do_map(): 0, or -EINVAL / -EEXIST / -ENOSPC / -EINVAL / pin errno."""
        cdef uint64_t last
        cdef int ret
        if size == 0 or self.unaligned(size) or self.unaligned(iova) or self.unaligned(vaddr):
            return -EINVAL
        if iova + size - 1 < iova or vaddr + size - 1 < vaddr:
            return -EINVAL  # IOVA or vaddr wrap
        last = iova + size - 1
        if self.overlaps(iova >> self.pgshift, last >> self.pgshift):
            return -EEXIST
        if not self.dma_avail:
            return -ENOSPC
        if not self.iova_dma_valid(iova, last):
            return -EINVAL
        ret = self.fault("vfio.dma_map") if self.fault_hook is not None else 0
        if ret:
            return ret
        ret = self.pin_and_insert(iova, size, vaddr, frames, readonly)
        if ret:
            return ret
        self.dma_avail -= 1
        return 0

    cdef int dma_unmap(self, uint64_t iova, uint64_t size) except? -2147483647:
        """vfio_dma_do_unmap() (v2): 0 (bytes in last_unmapped), or -EINVAL (unaligned, zero, wrap, or
        bisecting a mapping at either end).  An empty range unmaps 0 bytes."""
        cdef uint64_t last, pfn, last_pfn, next_pfn
        cdef uint64_t unmapped = 0
        cdef IoPte *pte
        cdef int ret
        self.last_unmapped = 0
        if self.unaligned(iova) or size == 0 or self.unaligned(size):
            return -EINVAL
        if iova + size - 1 < iova:
            return -EINVAL
        last = iova + size - 1
        pte = self.pte_lookup(iova >> self.pgshift)
        if pte != NULL and pte.map_npages and pte.map_pfn != iova >> self.pgshift:
            return -EINVAL
        pte = self.pte_lookup(last >> self.pgshift)
        if pte != NULL and pte.map_npages and \
                pte.map_pfn + pte.map_npages - 1 != last >> self.pgshift:
            return -EINVAL
        ret = self.fault("vfio.dma_unmap") if self.fault_hook is not None else 0
        if ret:
            return ret
        pfn = iova >> self.pgshift
        last_pfn = last >> self.pgshift
        while self.next_present(pfn, last_pfn, &pfn):
            pte = self.pte_lookup(pfn)
            unmapped += pte.map_npages << self.pgshift
            next_pfn = pfn + pte.map_npages
            self.remove_mapping(pfn)
            self.dma_avail += 1
            if next_pfn == 0:  # the mapping ended at the top of the IOVA space
                break
            pfn = next_pfn
        self.last_unmapped = unmapped
        return 0


cdef class IommufdIoas(IoPageTable):
    """An iommufd IOAS: no mapping-count limit; unmap may fail after partial progress."""

    site_map = "iommufd.ioas_map"
    site_unmap = "iommufd.ioas_unmap"

    def __init__(self, uint64_t pgsize=0x1000, memlock_limit=None):
        self._init_table(pgsize, memlock_limit)
        self.enoent_is_success = True

    cdef int dma_map(self, uint64_t iova, uint64_t size, uint64_t vaddr, object frames,
                     bint readonly) except? -2147483647:
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
        cdef int ret
        if iova == U64_MAX or size == U64_MAX:
            return -EOVERFLOW
        if vaddr > U64_MAX - size:
            return -EOVERFLOW
        if size == 0 or size > U64_MAX - KERNEL_PAGE_SIZE:
            return -EINVAL
        if self.unaligned(size):
            return -EINVAL
        if self.unaligned(iova):
            return -EINVAL
        if iova + size - 1 < iova:
            return -EOVERFLOW
        if self.overlaps(iova >> self.pgshift, (iova + size - 1) >> self.pgshift):
            return -EEXIST
        if self.unaligned(vaddr):
            return -EINVAL
        ret = self.fault("iommufd.ioas_map") if self.fault_hook is not None else 0
        if ret:
            return ret
        return self.pin_and_insert(iova, size, vaddr, frames, readonly)

    cdef int dma_unmap(self, uint64_t iova, uint64_t size) except? -2147483647:
        """iopt_unmap_iova_range(): areas walked in ascending order; one not fully inside
        gives -ENOENT after the earlier ones were removed; nothing mapped gives -ENOENT."""
        cdef uint64_t last, pfn, first_pfn, last_pfn, next_pfn, allowed
        cdef uint64_t unmapped = 0
        cdef IoPte *pte
        cdef int ret
        self.last_unmapped = 0
        if size == 0:
            return -EINVAL
        if iova + size - 1 < iova:
            return -EOVERFLOW
        last = iova + size - 1
        # An injected failure may come after k areas were removed (partial progress).
        self.fault_partial = NO_PARTIAL
        ret = self.fault("iommufd.ioas_unmap") if self.fault_hook is not None else 0
        if ret and self.fault_partial == NO_PARTIAL:
            return ret
        allowed = self.fault_partial
        first_pfn = iova >> self.pgshift
        last_pfn = last >> self.pgshift
        pfn = first_pfn
        while self.next_present(pfn, last_pfn, &pfn):
            pte = self.pte_lookup(pfn)
            # An area not fully inside [iova, last]: stop, keeping what was removed.
            if (pte.map_pfn << self.pgshift) < iova or \
                    ((pte.map_pfn + pte.map_npages) << self.pgshift) - 1 > last:
                if RIG_MUTANT_IOMMUFD_PARTIAL_UNMAP_IGNORED and unmapped:
                    break  # to ``if (unmapped_bytes) rc = 0;``: a success
                self.last_unmapped = unmapped
                return -ENOENT
            if ret and allowed == 0:
                break
            allowed -= 1
            unmapped += pte.map_npages << self.pgshift
            next_pfn = pte.map_pfn + pte.map_npages
            self.remove_mapping(pte.map_pfn)
            if next_pfn == 0:
                break
            pfn = next_pfn
        self.last_unmapped = unmapped
        if ret:
            return ret
        return 0 if unmapped else -ENOENT
