"""The design interface, and the building blocks designs share.

A design is a conversion policy: how kvm_convert_memory orders KVM attributes, the state
manager and the discards, how device hot-plug registers with the manager, and what
happens on an error.  Each design is one file in rig/world/designs/ holding one
subclass that sets its own ``name`` and ``id``; ``rig.world.designs.DESIGNS`` finds it
there, so adding a design adds nothing anywhere else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rig.errors import EINVAL, ENOSPC
from rig.world.host import PAGE_SIZE
from rig.world.device import Device
from rig.world.events import Budget, Exit, Retry

if TYPE_CHECKING:
    from rig.world.world import World

U64 = 1 << 64


class Design:
    """Base class: QEMU's coordinated VFIO hot-plug, no conversion policy.

    Class attributes (the contract the oracle and the verdict table read):
    ``name``               what traces, harnesses and reports call the design
    ``id``                 the design's explicit, append-only number: the byte decoder
                           picks a design by it and reports list designs in its order
                           (None here: the base classes are not designs)
    ``rollback``           RamBlockAttributes policy (none | listeners | full | sources)
    ``inplace``            shared pages live in guest_memfd (in-place conversion)
    ``atomic``             a failed conversion promises to leave the world as before
    ``stops_vm``           a negative kvm_convert_memory return stops the VM
    ``budget_check``       dma_max_mappings check at hot-plug: refuse | warn
    ``serialize_hotplug``  conversions wait until a hot-plug finishes (one lock)
    ``retries``            attempts for idempotent undo steps (unmap, punch, attribute
                           restore) before giving up
    """

    name = "base"
    id: int | None = None
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
        """vfio_attach_device() with a new container: memory_listener_register()
        replays every RAM section of the range into vfio_listener_region_add() (one
        VFIORamDiscardListener per RAM block, vfio_ram_discard_register_listener()),
        and only then is the container ``initialized``.  So every section of a
        hot-plugged device, however many RAM blocks it spans, meets the
        dma_max_mappings check while its container is new: the first refusal is kept
        as the container's error, the remaining sections are still added, and the
        device is then refused gracefully (-ENOSPC), its container torn down."""
        device = Device(dev, "vfio", gpa, size, world.new_container())
        world.devices[("vfio", dev)] = device
        pieces = world.sections(gpa, size)
        if not pieces or not all(block.attr.is_valid_range(s.offset_within_region, s.size)
                                 for block, s in pieces):
            # QEMU asserts that a RAM discard section is granularity-aligned; the rig
            # refuses the device instead of aborting.
            self.teardown(world, device)
            return -EINVAL
        refused = False
        for block, section in pieces:
            ret = self.vfio_ram_discard_register_listener(world, device, block, section)
            if ret:
                return ret
            if self.dma_max_mappings_check(world, device, initialized=False, refused=refused):
                refused = True
        if refused:
            self.teardown(world, device)
            return -ENOSPC
        return 0

    def vfio_ram_discard_register_listener(self, world: World, device: Device, block,
                                           section) -> int:
        """Register (and replay) the device's listener for one RAM section; a replay
        failure is the design's (register_failed)."""
        rdl = world.new_vfio_listener(device, block)
        ret = block.attr.register_listener(rdl, section)
        device.listeners.append((block, rdl))
        if ret:
            return self.register_failed(world, device, ret)
        return 0

    def dma_max_mappings_check(self, world: World, device: Device, initialized: bool,
                               refused: bool = False) -> int:
        """The end of vfio_ram_discard_register_listener(), run after each section:
        the dma_max_mappings check over every listener of the container
        (``world.vfio_budget_exceeded``), and vfio_listener_region_add()'s ``fail:``
        path.  Over budget:
        - ``budget_check=warn`` (QEMU 10.1): warn_report(), the section stays;
        - container not yet initialized (device realize): the first error is stored
          in the container (``refused``: one already was) and the device will be
          refused gracefully: -ENOSPC;
        - container initialized (a RAM section added at runtime, i.e. RAM hot-add):
          hw_error("vfio: DMA mapping failed, unable to continue"), QEMU aborts: the
          VM stops: -ENOSPC.  The rig has no RAM hot-add op (its RAM blocks come from
          the trace header), so only vfio_ram_hot_add() reaches this case.
        0 otherwise.
        """
        if not world.vfio_budget_exceeded(device):
            return 0
        if world.budget_check == "warn":
            world.event(Budget(device.dev, "warning: possibly running out of DMA mappings"))
            return 0
        if not initialized:
            if not refused:
                world.event(Budget(device.dev, "refused: possibly running out of DMA mappings"))
            return -ENOSPC
        world.event(Budget(device.dev, "hw_error: possibly running out of DMA mappings;"
                           " vfio: DMA mapping failed, unable to continue"))
        world.event(Exit(device.dev, -ENOSPC))
        world.vm_stopped = -ENOSPC
        return -ENOSPC

    def vfio_ram_hot_add(self, world: World, dev: int, block) -> int:
        """vfio_listener_region_add() for a RAM section that appears after device
        ``dev``'s container was initialized (memory hot-add): the section of ``block``
        that intersects the device's range is registered, then checked against
        dma_max_mappings with an initialized container (hw_error on excess).  No op
        drives it (the rig's RAM is fixed at creation); it exists so the upstream path
        is modelled and tested.  0, or a negative errno."""
        device = world.devices[("vfio", dev)]
        pieces = [(b, s) for b, s in world.sections(device.gpa, device.size) if b is block]
        if not pieces:
            return 0
        _, section = pieces[0]
        ret = self.vfio_ram_discard_register_listener(world, device, block, section)
        if ret:
            return ret
        return self.dma_max_mappings_check(world, device, initialized=True)

    def register_failed(self, world: World, device: Device, ret: int) -> int:
        """QEMU 10.1: the replay failing in register_listener calls exit(1)."""
        world.event(Exit(device.dev, ret))
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
        """kvm_convert_memory()'s first check: start and size host-page aligned, size
        not 0.  A range that wraps 2^64 passes it (QEMU then finds no memory region)."""
        return start % PAGE_SIZE == 0 and size % PAGE_SIZE == 0 and size != 0

    @staticmethod
    def wraps(start: int, size: int) -> bool:
        """[start, start+size) runs past 2^64 (no u64 end)."""
        return start + size > U64

    def retry(self, world: World, what: str, step) -> int:
        """Run an idempotent step up to ``retries`` times until it returns 0."""
        ret = 0
        for attempt in range(self.retries):
            ret = step()
            if not ret:
                return 0
            world.event(Retry(what, attempt + 1, ret))
        return ret


class Qemu101Conversion(Design):
    """kvm_convert_memory() exactly as QEMU 10.1 orders it (accel/kvm/kvm-all.c)."""

    #: keep-shared never discards shared memory on conversion to private.
    discard_shared = True

    def kvm_convert_memory(self, world: World, start: int, size: int, to_private: bool) -> int:
        if not self.page_aligned(start, size):
            return -EINVAL
        # memory_region_find() works on Int128 ranges: a range that wraps 2^64 does not
        # come back round to low RAM; if nothing intersects it (the usual case) it is
        # "not assigned", and if RAM near the top does, KVM refuses the wrap (-EINVAL).
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
