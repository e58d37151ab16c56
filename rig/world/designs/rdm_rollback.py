"""The 2026 RamDiscardManager: listeners are rolled back on a populate failure."""

from rig.world.designs.base import Qemu101Conversion
from rig.world.events import RegisterError


class RdmRollback(Qemu101Conversion):
    """Contract: as ``qemu-10.1``, but when a listener refuses to populate, every listener
    notified before it gets notify_discard of its own section, so the listeners agree
    with each other.  The bitmap stays set and KVM's attribute is not restored, so the
    manager and KVM still diverge from what the listeners hold; errors still stop the
    VM.  A replay failure at hot-plug is logged and the device kept; the dma_max_mappings
    check refuses the device (QEMU >= 10.2).

    Expected verdict: listeners consistent; bitmap/KVM attribute diverge from the IOMMU
    after populate failures (shared-unmapped, atomic-failure).
    """

    name = "rdm-rollback"
    id = 3
    rollback = "listeners"
    budget_check = "refuse"

    def register_failed(self, world, device, ret):
        world.event(RegisterError(device.dev, ret))
        return 0
