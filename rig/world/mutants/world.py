"""World-level mutants: designs with one deliberate defect in the conversion or hot-plug
path, each the class it mutates with one method changed (rig.world.mutants).

Each docstring's first paragraph says what is wrong and where it comes from; the second
what the oracle sees, and the kill trace is ``corpora/mutants/NAME.trace``.  A mutant
changes as little as it can: where the base design's method does several things, the
override keeps the base's helpers and drops or moves only the one step.
"""

from __future__ import annotations

from rig.core.types import MemoryRegionSection
from rig.errors import EINVAL
from rig.world.designs.hardened import Hardened
from rig.world.designs.inplace import InPlace
from rig.world.events import Budget
from rig.world.mutants import Mutant


class StateChangeErrorIgnored(Mutant, Hardened):
    """kvm_convert_memory() ignores state_change's return.  An early version of QEMU's
    RamBlockAttributes series called ram_block_attributes_state_change() without
    checking it, so a listener that refused to populate left KVM's attribute changed,
    the conversion reported success and the guest_memfd side was punched all the same.

    The manager (``full`` rollback) puts the bitmap and the listeners back, KVM keeps the
    page shared: a shared page no listener maps (shared-unmapped), KVM and the bitmap
    disagree (attr-agree).  Hardened's rollback is the base: the conversion fails
    cleanly there.
    """

    name = "state-change-error-ignored"
    base = "hardened"

    def kvm_convert_memory(self, world, start, size, to_private):
        """Hardened's conversion without its failure path: state_change's return is
        dropped, so nothing is undone and every piece's unused side is discarded."""
        if self.page_aligned(start, size) and not to_private and not world.sections(start, size):
            return 0
        pieces = self.pieces(world, start, size)
        if pieces is None:
            return -EINVAL
        ret = world.kvm_set_memory_attributes(start, size, to_private)
        if ret:
            return ret
        for block, section in pieces:
            block.attr.state_change(section.offset_within_region, section.size, to_private)
        for block, section in pieces:
            self.discard_unused_side(world, block, section, to_private)
        return 0


class ConvertCrossesRegions(Mutant, Hardened):
    """A conversion spanning two RAM blocks is applied to the first with the full size.
    kvm_convert_memory() takes the section memory_region_find() returns for the start
    and passes the guest's size unclipped to state_change (reported against QEMU by
    AMD; docs/semantics.md 2.3 step 2); the first block's manager refuses a range past
    its end.

    Every such conversion fails with -EINVAL, a valid request refused
    (spurious-failure); hardened splits the range per RAM block and converts both.
    """

    name = "convert-crosses-regions"
    base = "hardened"

    def pieces(self, world, start, size):
        """Hardened's pieces, except that a range over several RAM blocks becomes one
        piece: the first block, from the range's start, with the whole size."""
        pieces = super().pieces(world, start, size)
        if pieces is None or len(pieces) < 2:
            return pieces
        block, first = pieces[0]
        return [(block, MemoryRegionSection(first.offset_within_region, size,
                                            first.offset_within_address_space))]


class HugetlbBlockSize(Mutant, Hardened):
    """The block size is taken from a hugetlb RAM block's page size, not the host's.
    The conversion granularity comes from qemu_ram_pagesize() (2 MiB for hugetlb-backed
    shared memory), a real regression against the rule that
    ram_block_attributes_get_block_size() states ("page conversion could be manipulated
    in the size of at least 4K or 4K aligned, use the host page size as the
    granularity"): with hugetlb, every 4 KiB conversion the guest asks for is refused as
    unaligned.

    Valid conversions fail with -EINVAL (spurious-failure); without hugetlb the page size
    is the host's and nothing differs from hardened.
    """

    name = "hugetlb-block-size"
    base = "hardened"

    def pieces(self, world, start, size):
        """Hardened's pieces, also checked against the block's shared page size."""
        pieces = super().pieces(world, start, size)
        if pieces is None:
            return None
        for block, section in pieces:
            granularity = block.memfd.page_size  # the defect: not world.config.block_size
            if section.offset_within_region % granularity or section.size % granularity:
                return None
        return pieces


class LimitWarnOnly(Mutant, Hardened):
    """The type1 registration budget only warns.  The dma_max_mappings check of
    vfio_ram_discard_register_listener() warns about a device that could need more
    mappings than its container allows and keeps it, as QEMU 10.1 did (fixed upstream
    in 2025: the device is refused at realize), while the design's contract says the
    check refuses.  A later conversion that needs the mappings fails with -ENOSPC (on a
    design that stops the VM, the VM stops).

    The conversion fails from exhaustion on a device the refusing check should have kept
    out (mapping-exhaustion); hardened refuses the device at hot-plug.
    """

    name = "limit-warn-only"
    base = "hardened"

    def dma_max_mappings_check(self, world, device, initialized, refused=False):
        """Over budget: a warning, whatever the policy (``world.budget_check``) says."""
        if world.vfio_budget_exceeded(device):
            world.event(Budget(device.dev, "warning: possibly running out of DMA mappings"))
        return 0


class InplaceWrongOrder(Mutant, InPlace):
    """The in-place design changes the attribute before unmapping.  On a conversion to
    private it calls KVM_SET_MEMORY_ATTRIBUTES first and tells the listeners (VFIO
    unmaps) after, the order of the shared-memfd designs, which in-place conversion
    cannot keep: KVM refuses to make a page private while the IOMMU pins it (-EAGAIN,
    docs/semantics.md 2.7), so every conversion to private of a page a device maps fails.

    Valid conversions fail with -EAGAIN (spurious-failure); ``inplace`` unmaps first.
    """

    name = "inplace-wrong-order"
    base = "inplace"

    def kvm_convert_memory(self, world, start, size, to_private):
        if not to_private:
            return super().kvm_convert_memory(world, start, size, to_private)
        pieces = self.pieces(world, start, size)
        if pieces is None:
            return -EINVAL
        ret = world.kvm_set_memory_attributes(start, size, True)  # the defect: first
        if ret:
            return ret  # nothing was changed yet
        for block, section in pieces:
            block.attr.state_change(section.offset_within_region, section.size, True)
        return 0


class RegisterRace(Mutant, Hardened):
    """A conversion lands between a new listener's replay and its insertion into the
    list.  A real race in another VMM's implementation of the same idea, which replayed
    the populated ranges into the new listener and only then added it to the list,
    without holding the conversion lock over both.  QEMU inserts first and replays under
    the BQL (docs/semantics.md 2.2, Registration); hardened serializes hot-plug with
    conversions.

    Here the replay runs with the listener off the list and the hot-plug lock dropped,
    so a conversion interleaved into it (an ``interleave:`` point of the hot-plug) is
    not told to the new listener: a page made shared stays unmapped (shared-unmapped), a
    page made private stays mapped (stale-mapping).
    """

    name = "register-race"
    base = "hardened"

    def vfio_ram_discard_register_listener(self, world, device, block, section):
        rdl = world.new_vfio_listener(device, block)
        device.listeners.append((block, rdl))
        # The replay, into the listener before it is on the list, unlocked (the defect):
        # the world runs an interleaved conversion at its point in here.
        self.serialize_hotplug = False
        try:
            ret = block.attr.replay_populated(section, rdl.notify_populate)
        finally:
            del self.serialize_hotplug
        if ret:
            return self.register_failed(world, device, ret)
        # The insertion: the core's register_listener inserts and replays; this VMM's
        # insertion does not replay, so the listener swallows that second replay.
        rdl.notify_populate = lambda section: 0
        try:
            return block.attr.register_listener(rdl, section)
        finally:
            del rdl.notify_populate


class DiscardBeforeUnmap(Mutant, Hardened):
    """The shared page is punched before VFIO unmaps it.  On a conversion to private the
    memfd is discarded (ram_block_discard_range()) before the state manager tells the
    listeners, the order hardened's contract forbids ("unmap before freeing memory") and
    docs/semantics.md 2.3 gives QEMU (state_change, then the discard).  Until the unmap,
    the IOMMU points at a page the file already dropped: device DMA lands in memory
    that is being freed.

    The frame is punched while pinned (pin-leak, though VFIO unpins it later in the
    same op); hardened unmaps first.
    """

    name = "discard-before-unmap"
    base = "hardened"

    def kvm_convert_memory(self, world, start, size, to_private):
        """Hardened's conversion, preceded by the punch of a to-private range's shared
        side (hardened's own discard after the unmap then finds nothing to punch)."""
        pieces = self.pieces(world, start, size) if to_private else None
        for block, section in pieces or ():
            self.discard_unused_side(world, block, section, True)
        return super().kvm_convert_memory(world, start, size, to_private)


class AttrNotRestored(Mutant, Hardened):
    """``hardened`` forgets to restore KVM's attributes when a conversion fails.  The
    manager rolls the bitmap and the listeners back, but the pages keep the attribute
    the failed conversion gave them (QEMU 10.1 does not restore it either,
    docs/semantics.md 2.3; hardened's contract does).

    After a populate failure KVM says shared over a private bitmap and an unmapped page
    (shared-unmapped, attr-agree, atomic-failure); hardened restores the attribute.
    """

    name = "attr-not-restored"
    base = "hardened"

    def restore_attributes(self, world, start, saved) -> None:
        """Nothing: the defect."""


class FailedRealizeKeepsListener(Mutant, Hardened):
    """A device refused by the budget check stays registered and partly mapped.
    Upstream's vfio_ram_discard_register_listener() returns false only after it has
    registered the listener and replayed the populated memory into the container, so a
    realize that gives up there must unregister what it registered; this one reports
    the refusal (-ENOSPC) and forgets the listeners.

    The device is gone from the VM, its listeners are still on the managers' lists and
    its container keeps the replayed mappings and their pins (orphan-listener, and the
    pins count against no plugged device: pin-leak); hardened tears the device down.
    """

    name = "failed-realize-keeps-listener"
    base = "hardened"

    def dma_max_mappings_check(self, world, device, initialized, refused=False):
        """The check as hardened's, marking the device it refuses at realize."""
        ret = super().dma_max_mappings_check(world, device, initialized, refused)
        if ret and not initialized:
            device.budget_refused = True
        return ret

    def teardown(self, world, device) -> None:
        """A refused device is dropped from the VM and nothing else: its listeners stay
        registered, its container stays open (the defect)."""
        if getattr(device, "budget_refused", False):
            world.devices.pop(("vfio", device.dev), None)
            return
        super().teardown(world, device)
