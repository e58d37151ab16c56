"""The band-aid: never discard shared pages on conversion."""

from rig.world.designs.uncoordinated import Uncoordinated


class KeepShared(Uncoordinated):
    """Contract: no stale mappings, at the price of memory.  Like ``uncoordinated``, VFIO
    pins all RAM at device add, but a conversion to private never punches the shared
    memfd, so every pinned frame stays the frame that backs its page.  A page the guest
    then uses privately is backed twice (memfd and guest_memfd): up to 2x memory.

    Expected verdict: double-backing (no stale mapping, no pin leak).
    """

    name = "keep-shared"
    id = 1
    discard_shared = False
