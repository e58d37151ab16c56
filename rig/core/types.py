"""Value types shared by both core backends (what crosses the Python boundary).

QEMU's struct also carries the MemoryRegion and the address space; the rig has one region
per RamBlockAttributes, so a section keeps only the three numbers a listener uses.
"""

from __future__ import annotations

from typing import NamedTuple


class MemoryRegionSection(NamedTuple):
    """A window onto a RAM region: ``[offset_within_region, +size)`` of the region, seen
    at guest-physical (and, for VFIO, IOVA) ``offset_within_address_space``."""

    offset_within_region: int
    size: int
    offset_within_address_space: int = 0

    def intersect_range(self, offset: int, size: int) -> "MemoryRegionSection | None":
        """memory_region_section_intersect_range(): clip to ``[offset, offset+size)``.

        Returns the clipped section, or None when the intersection is empty (end <= start),
        which is the case a listener must be skipped for.  Ends are compared unbounded
        (QEMU's Int128); the address-space offset is a uint64 hwaddr, so it wraps.
        """
        start = max(self.offset_within_region, offset)
        end = min(self.offset_within_region + self.size, offset + size)
        if end <= start:
            return None
        return MemoryRegionSection(
            start,
            end - start,
            (self.offset_within_address_space + (start - self.offset_within_region))
            & 0xFFFF_FFFF_FFFF_FFFF,
        )

    def __repr__(self) -> str:
        return (
            f"MemoryRegionSection(0x{self.offset_within_region:x}+0x{self.size:x}"
            f" @0x{self.offset_within_address_space:x})"
        )


class IommuMapping(NamedTuple):
    """One DMA mapping as the fake IOMMU holds it: ``frames`` has one host frame id per
    IOMMU page (``size // pgsize`` of them), the frames this mapping pinned."""

    iova: int
    size: int
    frames: tuple
    readonly: bool = False

    def __repr__(self) -> str:
        ro = " ro" if self.readonly else ""
        return f"IommuMapping(0x{self.iova:x}+0x{self.size:x}{ro} frames={list(self.frames)})"
