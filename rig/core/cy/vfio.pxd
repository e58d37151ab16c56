# VFIORamDiscardListener: QEMU's VFIO listener for RAM discard managers (hw/vfio/listener.c).

from libc.stdint cimport uint64_t
from rig.core.cy.iommu cimport IoPageTable
from rig.core.cy.ram_block_attributes cimport MemoryRegionSection, RamDiscardListener


cdef class VFIORamDiscardListener(RamDiscardListener):
    cdef readonly IoPageTable container
    cdef readonly uint64_t granularity
    cdef readonly uint64_t vaddr_base
    cdef readonly bint readonly_map
    cdef readonly list discard_errors
