"""The design interface, and the building blocks designs share.

A design is a conversion policy: how kvm_convert_memory orders KVM attributes, the state
manager and the discards, how device hot-plug registers with the manager, and what
happens on an error.  Each design is one file holding one subclass, plus a line in
``rig.world.designs.DESIGNS``.
"""

from __future__ import annotations

from rig.errors import EINVAL, ENOSPC
from rig.world.host import PAGE_SIZE
from rig.world.world import Device, World

U64 = 1 << 64


class Design:
    """Base class: QEMU's coordinated VFIO hot-plug, no conversion policy.

    Class attributes (the contract the oracle and the verdict table read):
    ``rollback``           RamBlockAttributes policy (none | listeners | full)
    ``inplace``            shared pages live in guest_memfd (in-place conversion)
    ``atomic``             a failed conversion promises to leave the world as before
    ``stops_vm``           a negative kvm_convert_memory return stops the VM
    ``budget_check``       dma_max_mappings check at hot-plug: refuse | warn
    ``serialize_hotplug``  conversions wait until a hot-plug finishes (one lock)
    ``retries``            attempts for idempotent undo steps (unmap, punch, attribute
                           restore) before giving up
    """

    name = "base"
    rollback = "none"
    inplace = False
    atomic = False
    stops_vm = True
    budget_check = "refuse"
    serialize_hotplug = False
    retries = 1
    #: VFIO maps all guest RAM, private pages included (the pre-series designs).
    maps_private = False

    # -- conversion -------------------------------------------------------------------
    def kvm_convert_memory(self, world: World, start: int, size: int, to_private: bool) -> int:
        raise NotImplementedError

    # -- hot-plug -----------------------------------------------------------------------
    def vfio_device_add(self, world: World, dev: int, gpa: int, size: int) -> int:
        """vfio_listener_region_add() -> vfio_register_ram_discard_listener() per RAM
        block of the section, then QEMU's dma_max_mappings check."""
        device = Device(dev, "vfio", gpa, size, world.new_container())
        world.devices[("vfio", dev)] = device
        pieces = world.sections(gpa, size)
        if not pieces or not all(block.attr.is_valid_range(s.offset_within_region, s.size)
                                 for block, s in pieces):
            # QEMU asserts that a RAM discard section is granularity-aligned; the rig
            # refuses the device instead of aborting.
            self.teardown(world, device)
            return -EINVAL
        for block, section in pieces:
            rdl = world.new_vfio_listener(device, block)
            ret = block.attr.register_listener(rdl, section)
            device.listeners.append((block, rdl))
            if ret:
                ret = self.register_failed(world, device, ret)
                if ret:
                    return ret
        if world.vfio_budget_exceeded(device):
            if world.budget_check == "refuse":
                world.event("budget", dev, "refused: possibly running out of DMA mappings")
                self.teardown(world, device)
                return -ENOSPC
            world.event("budget", dev, "warning: possibly running out of DMA mappings")
        return 0

    def register_failed(self, world: World, device: Device, ret: int) -> int:
        """QEMU 10.1: the replay failing in register_listener calls exit(1)."""
        world.event("exit", device.dev, ret)
        world.vm_stopped = ret
        return ret

    def teardown(self, world: World, device: Device) -> None:
        for block, rdl in device.listeners:
            block.attr.unregister_listener(rdl)
        world.release_container(device)
        world.devices.pop(("vfio", device.dev), None)

    def vfio_device_remove(self, world: World, dev: int) -> int:
        """vfio_listener_region_del() -> vfio_unregister_ram_discard_listener()."""
        self.teardown(world, world.devices[("vfio", dev)])
        return 0

    # -- helpers --------------------------------------------------------------------------
    @staticmethod
    def page_aligned(start: int, size: int) -> bool:
        return start % PAGE_SIZE == 0 and size % PAGE_SIZE == 0 and size != 0 \
            and start + size <= U64

    def retry(self, world: World, what: str, step) -> int:
        """Run an idempotent step up to ``retries`` times until it returns 0."""
        ret = 0
        for attempt in range(self.retries):
            ret = step()
            if not ret:
                return 0
            world.event("retry", what, attempt + 1, ret)
        return ret


class Qemu101Conversion(Design):
    """kvm_convert_memory() exactly as QEMU 10.1 orders it (accel/kvm/kvm-all.c)."""

    #: keep-shared never discards shared memory on conversion to private.
    discard_shared = True

    def kvm_convert_memory(self, world: World, start: int, size: int, to_private: bool) -> int:
        if not self.page_aligned(start, size):
            return -EINVAL
        found = world.memory_region_find(start, size)
        if found is None:
            # Ignore converting a non-assigned region to shared (OVMF MapGPA on the
            # MMIO hole); converting it to private is an error.
            return -EINVAL if to_private else 0
        block, offset = found
        ret = world.kvm_set_memory_attributes(start, size, to_private)
        if ret:
            return ret
        # `size` is not clipped to the section memory_region_find returned: a range
        # that crosses a block end fails here, after KVM's attributes changed.
        ret = block.attr.state_change(offset, size, to_private)
        if ret:
            return ret  # KVM attributes are not restored
        if to_private:
            if world.config.hugetlb or not self.discard_shared:
                return 0  # hugetlb-backed shared memory is not discarded
            return world.ram_block_discard_range(block, offset, size)
        return world.ram_block_discard_guest_memfd_range(block, offset, size)
