"""VFIORamDiscardListener (pure-Python twin of rig.core.cy.vfio; hw/vfio/listener.c).

One listener per (container, MemoryRegionSection); granularity is the manager's block
size.  Populate maps one granule at a time, and on the first failure unmaps the whole
section and returns the error.  Discard unmaps the section with one call; its errors are
only reported (QEMU's error_report), here appended to ``discard_errors``.
"""

from __future__ import annotations

from collections import Counter

from rig.core.mutants import ACTIVE as _MUTANT
from rig.core.pure.ram_block_attributes import RamDiscardListener
from rig.errors import ENOENT

# Core mutant (rig.core.mutants): RIG_CORE_MUTANT, as the .pyx's macro.
_VFIO_POPULATE_NO_ROLLBACK = _MUTANT == "vfio-populate-no-rollback"
#: The core mutants this module implements: name -> flag.
MUTANT_FLAGS = {"vfio-populate-no-rollback": int(_VFIO_POPULATE_NO_ROLLBACK)}

_MARKS: Counter = Counter()
_U64_MAX = (1 << 64) - 1


def coverage_marks() -> dict:
    return dict(_MARKS)


def reset_coverage_marks() -> None:
    _MARKS.clear()


class VFIORamDiscardListener(RamDiscardListener):
    """@container: the IOMMU backend (type1 container or iommufd IOAS) to map into.
    @granularity: the manager's minimum granularity (block size), a power of two.
    @vaddr_base: the host address of offset 0 of the RAM region (what QEMU gets from
    memory_region_get_ram_ptr()); each granule maps ``vaddr_base + offset_within_region``.
    """

    double_discard_supported = True

    def __init__(self, container, granularity: int, vaddr_base: int = 0, readonly: bool = False):
        super().__init__()
        if granularity <= 0 or granularity & (granularity - 1):
            raise ValueError(f"granularity 0x{granularity:x} is not a power of two")
        self.container = container
        self.granularity = granularity
        self.vaddr_base = vaddr_base
        self.readonly_map = readonly
        self.discard_errors: list = []

    def notify_populate(self, section) -> int:
        """vfio_ram_discard_notify_populate(): "Map in (aligned within memory region)
        minimum granularity": the chunks are aligned on offset_within_region,
        ``next = ROUND_UP(start + 1, granularity)``, and each maps
        ``iova = start - offset_within_region + offset_within_address_space`` to
        ``ram_ptr + start`` (hwaddr arithmetic: mod 2^64, as the Cython core)."""
        owr = section.offset_within_region
        oas = section.offset_within_address_space
        start = owr
        left = section.size
        g = self.granularity
        while left:
            chunk = min(g - (start & (g - 1)), left)
            iova = (start - owr + oas) & _U64_MAX
            vaddr = (self.vaddr_base + start) & _U64_MAX
            ret = self.container.map_dma(iova, chunk, vaddr, self.readonly_map)
            if ret:
                # Rollback: one unmap of the whole section, mapped granules or not
                # (vfio-populate-no-rollback: none, the granules mapped so far stay).
                if not _VFIO_POPULATE_NO_ROLLBACK:
                    _MARKS["vfio.populate_rollback"] += 1
                    self.notify_discard(section)
                return ret
            start = (start + chunk) & _U64_MAX
            left -= chunk
        return 0

    def notify_discard(self, section) -> None:
        """vfio_ram_discard_notify_discard(): unmap with a single call."""
        ret = self.container.unmap_dma(section.offset_within_address_space, section.size)
        if ret == -ENOENT and self.container.enoent_is_success:
            ret = 0  # QEMU's iommufd backend treats a missing mapping as unmapped
        if ret < 0:
            self.discard_errors.append((section.offset_within_address_space, section.size, ret))
