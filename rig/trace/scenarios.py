"""Named seed scenarios: small op sequences every design is measured on.

They are the fixed inputs of ``rig designs``, the fail_nth sweeps and the regression
corpus, so their ops and configs are frozen: changing one changes published figures.
"""

from __future__ import annotations

from dataclasses import dataclass

from rig.world.ops import Op, op
from rig.world.config import RamSpec, WorldConfig

PRIVATE, SHARED = True, False
BS = 0x1000


@dataclass(frozen=True)
class Scenario:
    name: str
    doc: str
    config: WorldConfig
    ops: tuple[Op, ...]


def _seed() -> tuple[Op, ...]:
    return (
        op("vfio_register", 0, 0x0, 0x10000),
        op("kvm_convert_memory", 0x2000, BS, SHARED),
        op("guest_touch", 0x2000),
        op("kvm_convert_memory", 0x2000, BS, PRIVATE),
        op("guest_touch", 0x2000),
        op("kvm_convert_memory", 0x2000, BS, SHARED),
        op("guest_touch", 0x2000),
        op("device_dma", 0, 0x2000, BS, True),
    )


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario(
        "seed",
        "allocate shared page; convert to private; discard shared page; convert back; "
        "allocate shared page; device DMA (DESIGN.md 2.7)",
        WorldConfig(),
        _seed(),
    ),
    Scenario(
        "mixed-range",
        "convert a range that is partly shared and partly private, both ways "
        "(\"Unexpected mixture\": block by block)",
        WorldConfig(),
        (
            op("vfio_register", 0, 0x0, 0x10000),
            op("kvm_convert_memory", 0x1000, BS, SHARED),
            op("kvm_convert_memory", 0x3000, 2 * BS, SHARED),
            op("kvm_convert_memory", 0x0, 0x6000, SHARED),
            op("guest_touch", 0x4000),
            op("kvm_convert_memory", 0x2000, 0x3000, PRIVATE),
            op("device_dma", 0, 0x0, 0x6000, True),
        ),
    ),
    Scenario(
        "two-listeners",
        "two devices (two containers) whose sections overlap in part; a conversion "
        "across both sections",
        WorldConfig(),
        (
            op("vfio_register", 0, 0x0, 0x8000),
            op("vfio_register", 1, 0x4000, 0xC000),
            op("kvm_convert_memory", 0x2000, 0x6000, SHARED),
            op("device_dma", 1, 0x4000, 0x4000, True),
            op("kvm_convert_memory", 0x6000, BS, PRIVATE),
            op("device_dma", 0, 0x2000, 0x6000, False),
        ),
    ),
    Scenario(
        "hotplug-shared",
        "device hot-plug while memory is already shared (the registration replay), "
        "then conversions and unplug",
        WorldConfig(),
        (
            op("kvm_convert_memory", 0x0, 0x3000, SHARED),
            op("kvm_convert_memory", 0x8000, 0x2000, SHARED),
            op("guest_touch", 0x8000),
            op("vfio_register", 0, 0x0, 0x10000),
            op("kvm_convert_memory", 0x1000, BS, PRIVATE),
            op("device_dma", 0, 0x8000, BS, True),
            op("vfio_unregister", 0),
        ),
    ),
    Scenario(
        "generic-listener",
        "a generic (virtio-mem-like) RamDiscardListener beside a VFIO device: both are "
        "told of every conversion, and either may fail",
        WorldConfig(),
        (
            op("listener_register", 0, 0x0, 0x10000),
            op("vfio_register", 0, 0x0, 0x10000),
            op("kvm_convert_memory", 0x0, 0x4000, SHARED),
            op("kvm_convert_memory", 0x2000, 0x4000, SHARED),
            op("kvm_convert_memory", 0x1000, 0x2000, PRIVATE),
            op("listener_unregister", 0),
            op("device_dma", 0, 0x0, 0x6000, True),
        ),
    ),
    Scenario(
        "limit-exhaustion",
        "type1 with dma_entry_limit=6: shared memory needs more 4 KiB mappings than the "
        "container allows",
        WorldConfig(dma_entry_limit=6, max_memslots=0, ram=(RamSpec(0, 0x8000),)),
        (
            op("vfio_register", 0, 0x0, 0x8000),
            op("kvm_convert_memory", 0x0, 0x4000, SHARED),
            op("kvm_convert_memory", 0x4000, 0x4000, SHARED),
            op("device_dma", 0, 0x0, 0x4000, True),
        ),
    ),
)}


def two_listener_populate_failure(design: str) -> tuple[WorldConfig, tuple[Op, ...]]:
    """A populate failure in the 2nd of two listeners (DESIGN.md 2.2): listeners are
    notified newest first, so vfio1 maps (hit 1) and vfio0 fails (hit 2)."""
    from rig.errors import ENOMEM
    from rig.world.faults import FaultSpec

    return WorldConfig(design=design), (
        op("vfio_register", 0, 0x0, 0x10000),
        op("vfio_register", 1, 0x0, 0x10000),
        op("kvm_convert_memory", 0x2000, BS, SHARED,
           fault=(FaultSpec("vfio.dma_map", -ENOMEM, 2),)),
        op("device_dma", 1, 0x2000, BS, True),
    )
