"""In-place conversion: shared pages live in guest_memfd itself."""

from rig.errors import EINVAL
from rig.world.designs.hardened import Hardened
from rig.world.events import GiveUp


class InPlace(Hardened):
    """Contract: guest_memfd with shared pages (KVM_SET_MEMORY_ATTRIBUTES2 on the
    guest_memfd): the host and VFIO map guest_memfd's shared pages, there is no second
    copy and nothing to punch.  KVM refuses to make a page private while it is pinned
    (-EAGAIN), so the order is forced: unmap (state_change to discarded) *before* the
    attribute goes private, map (populate) *after* it goes shared.  On a failure the
    steps already taken are undone (re-map, attribute restore), as in ``hardened``.

    Expected verdict: consistent when the ordering is right; private-dma (a device can
    reach private memory) if a mapping survives a conversion to private.
    """

    name = "inplace"
    id = 5
    inplace = True

    def kvm_convert_memory(self, world, start, size, to_private):
        if not to_private:
            return super().kvm_convert_memory(world, start, size, to_private)
        pieces = self.pieces(world, start, size)
        if pieces is None:
            return -EINVAL
        saved = self.save_attributes(world, start, size)
        saved_bits = [(block, block.attr.bitmap.set_bits()) for block, _ in pieces]
        # Unmap first: a pinned page cannot become private.
        for block, section in pieces:
            block.attr.state_change(section.offset_within_region, section.size, True)
        ret = world.kvm_set_memory_attributes(start, size, True)
        if ret:
            self.remap(world, saved_bits)
            self.restore_attributes(world, start, saved)
        return ret

    def discard_unused_side(self, world, block, section, to_private) -> None:
        """Nothing to discard: the page itself changes sides."""

    def remap(self, world, saved_bits) -> None:
        """Populate again exactly the blocks that were shared before."""
        bs = world.config.block_size
        for block, bits in saved_bits:
            for bit in bits:
                if block.attr.bitmap.test_bit(bit):
                    continue
                ret = self.retry(world, "remap", lambda: block.attr.state_change(bit * bs, bs, False))
                if ret:
                    world.event(GiveUp("remap", block.gpa + bit * bs, bs, ret))
