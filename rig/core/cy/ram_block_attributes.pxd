# RamBlockAttributes: QEMU's shared/private state manager (system/ram-block-attributes.c).

from libc.stdint cimport uint64_t
from rig.core.cy.bitmap cimport Bitmap

ctypedef struct MemoryRegionSection:
    uint64_t offset_within_region
    uint64_t size
    uint64_t offset_within_address_space

cdef enum RamBlockAttributesRollback:
    RBA_ROLLBACK_NONE = 0       # QEMU 10.1
    RBA_ROLLBACK_LISTENERS = 1  # 2026 RamDiscardManager
    RBA_ROLLBACK_FULL = 2       # listeners + bitmap (the rig's hardened manager)
    RBA_ROLLBACK_SOURCES = 3    # multi-source RamDiscardManager: the failing listener too

ctypedef int (*ram_block_attributes_section_cb)(MemoryRegionSection *section, void *arg) except? -2147483647

cdef bint memory_region_section_intersect_range(MemoryRegionSection *s, uint64_t offset,
                                                uint64_t size) noexcept nogil
cdef object section_to_py(const MemoryRegionSection *s)
cdef int section_from_py(object section, MemoryRegionSection *out) except -1


cdef class RamDiscardListener:
    # QLIST_ENTRY(RamDiscardListener) next: the manager's list is intrusive, as in QEMU.
    cdef RamDiscardListener next
    cdef MemoryRegionSection rdl_section
    cdef bint registered
    cdef public bint double_discard_supported
    cdef int _notify_populate(self, MemoryRegionSection *section) except? -2147483647
    cdef int _notify_discard(self, MemoryRegionSection *section) except -1


cdef class RamBlockAttributes:
    cdef readonly uint64_t region_size
    cdef readonly uint64_t block_size
    cdef readonly uint64_t bitmap_size
    cdef readonly Bitmap bitmap
    cdef RamBlockAttributesRollback rollback_policy
    cdef RamDiscardListener rdl_list

    cdef bint c_is_valid_range(self, uint64_t offset, uint64_t size) noexcept
    cdef bint _on_list(self, RamDiscardListener rdl)
    cdef void _list_remove(self, RamDiscardListener rdl)
    cdef bint c_is_range_populated(self, uint64_t offset, uint64_t size) noexcept
    cdef bint c_is_range_discarded(self, uint64_t offset, uint64_t size) noexcept
    cdef int c_notify_populate(self, uint64_t offset, uint64_t size) except? -2147483647
    cdef int c_notify_discard(self, uint64_t offset, uint64_t size) except -1
    cdef int c_state_change(self, uint64_t offset, uint64_t size, bint to_discard) except? -2147483647
    cdef int for_each_populated_section(self, MemoryRegionSection *section, void *arg,
                                        ram_block_attributes_section_cb cb) except? -2147483647
    cdef int for_each_discarded_section(self, MemoryRegionSection *section, void *arg,
                                        ram_block_attributes_section_cb cb) except? -2147483647
