"""A hot-plugged device, as the world and the designs keep it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Device:
    """A hot-plugged device: a VFIO device (listeners or, uncoordinated, whole-RAM
    mappings) or a generic RamDiscardListener user."""

    dev: int
    kind: str  # "vfio" | "rdl"
    gpa: int
    size: int
    container: object = None                        # VFIO: its own container / IOAS
    listeners: list = field(default_factory=list)   # (RamBlock, listener)
    mappings: list = field(default_factory=list)    # (iova, size): uncoordinated designs
