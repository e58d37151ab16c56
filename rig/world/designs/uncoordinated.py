"""Before the series: VFIO pins all RAM at device add; conversions never tell it."""

from rig.errors import EINVAL
from rig.world.designs.base import Qemu101Conversion
from rig.world.device import Device
from rig.world.events import UnmapError


class Uncoordinated(Qemu101Conversion):
    """Contract: none for VFIO.  Device add maps every RAM section of the device in one
    DMA mapping each (vfio_listener_region_add on a section with no RamDiscardManager),
    pinning (and so allocating) all of its shared memory.  Conversions follow QEMU's
    order (KVM attributes, bitmap, discard) but no listener is registered, so a page
    punched from the memfd stays pinned and mapped: the IOMMU keeps a stale mapping to a
    leaked frame, and device DMA lands where the guest no longer looks.

    Expected verdict: stale-mapping and pin-leak on the seed sequence.
    """

    name = "uncoordinated"
    id = 0
    budget_check = "warn"
    maps_private = True

    def vfio_device_add(self, world, dev, gpa, size):
        device = Device(dev, "vfio", gpa, size, world.new_container())
        for block, section in world.sections(gpa, size):
            vaddr = block.vaddr + section.offset_within_region
            ret = device.container.map_dma(section.offset_within_address_space, section.size,
                                           vaddr, False)
            if ret:
                world.release_container(device)
                return ret
            device.mappings.append((section.offset_within_address_space, section.size))
        if not device.mappings:
            return -EINVAL
        world.devices[("vfio", dev)] = device
        return 0

    def vfio_device_remove(self, world, dev):
        device = world.devices.pop(("vfio", dev))
        for iova, length in device.mappings:
            ret = device.container.unmap_dma(iova, length)
            if ret < 0:
                world.event(UnmapError(iova, length, ret))
        world.release_container(device)
        return 0
