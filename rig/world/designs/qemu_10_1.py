"""QEMU 10.1 as merged: RamBlockAttributes + VFIO RamDiscardListener."""

from rig.world.designs.base import Qemu101Conversion


class Qemu101(Qemu101Conversion):
    """Contract: VFIO is told about every conversion, in QEMU 10.1's order: alignment,
    memory_region_find, KVM_SET_MEMORY_ATTRIBUTES, state_change (bitmap first, then the
    listeners in list order, "Unexpected mixture" block by block), then discard of the
    now-unused side.  On a listener failure nothing is rolled back (the bitmap stays set,
    earlier listeners stay mapped) and KVM's attribute is not restored; any negative
    return stops the VM.  A replay failure at hot-plug exits QEMU.  The dma_max_mappings
    check only warns.

    Expected verdict: clean without faults; inconsistent (shared-unmapped, attr-agree,
    atomic-failure) after populate failures.
    """

    name = "qemu-10.1"
    id = 2
    rollback = "none"
    budget_check = "warn"
