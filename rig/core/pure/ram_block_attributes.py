"""RamBlockAttributes: QEMU's shared/private state manager (system/ram-block-attributes.c).

Pure-Python twin of ``rig.core.cy.ram_block_attributes``.  One bit per block,
1 = populated (shared), 0 = discarded (private).  Listeners are notified in list order and
are inserted at the head, so the newest listener is notified first.

Rollback policies on a populate failure (``rollback=``):

``none``       QEMU 10.1: stop at the failing listener; nothing is undone, the bitmap
               keeps the bits that were set before the listeners were told.
``listeners``  the 2026 RamDiscardManager: every listener notified before the failing one
               gets ``notify_discard`` of its own clipped section; the bitmap stays set.
``full``       the rig's hardened manager: listeners rolled back and the bitmap restored to
               exactly its prior bits, including the per-block "mixture" case.
``sources``    the multi-source RamDiscardManager (2026, system/memory.c): as
               ``listeners``, but the rollback also discards the failing listener, which
               may have been partially notified.

With every policy but ``none`` (the 2026 managers), ``unregister_listener`` sends one
discard of the whole section whether or not the listener supports double discard.

The listener list is intrusive (``rdl._rdl_next``) and walked as QLIST_FOREACH walks it:
the next listener is read from the current one after its callback returns.
"""

from __future__ import annotations

from collections import Counter

from rig.core.mutants import ACTIVE as _MUTANT
from rig.core.pure.bitmap import Bitmap
from rig.core.types import MemoryRegionSection
from rig.errors import EINVAL, ENOENT

ROLLBACK_POLICIES = ("none", "listeners", "full", "sources")  # append-only
U64_MAX = (1 << 64) - 1

# Core mutants (rig.core.mutants): the twin takes RIG_CORE_MUTANT where the Cython core
# takes -DRIG_MUTANT_X=1; each flag is tested where the .pyx tests its macro.
_ROLLBACK_WRONG_SECTION = _MUTANT == "rollback-wrong-section"
_SIZE_UNALIGNED_ACCEPTED = _MUTANT == "size-unaligned-accepted"
_NO_WRAP_CHECK = _MUTANT == "no-wrap-check"
_DOUBLE_POPULATE = _MUTANT == "double-populate"
_ROLLBACK_FORGETS_FAILING_BIT = _MUTANT == "rollback-forgets-failing-bit"
#: The core mutants this module implements: name -> flag (as the .pyx's MUTANT_FLAGS).
MUTANT_FLAGS = {
    "rollback-wrong-section": int(_ROLLBACK_WRONG_SECTION),
    "size-unaligned-accepted": int(_SIZE_UNALIGNED_ACCEPTED),
    "no-wrap-check": int(_NO_WRAP_CHECK),
    "double-populate": int(_DOUBLE_POPULATE),
    "rollback-forgets-failing-bit": int(_ROLLBACK_FORGETS_FAILING_BIT),
}


def _no_wrap_check_clip(offset: int, size: int, region_size: int) -> int:
    """As the .pyx's no_wrap_check_clip: a range whose end wraps 2^64 (let through by
    the no-wrap-check mutant) stops at the region's end instead of running 2^52 bits
    past the bitmap, as the C would."""
    if offset + size <= U64_MAX:
        return size
    return region_size - offset if offset < region_size else 0

_MARKS: Counter = Counter()


def coverage_marks() -> dict:
    """Counters of rare paths taken ("Unexpected mixture", rollbacks), for coverage tests."""
    return dict(_MARKS)


def reset_coverage_marks() -> None:
    _MARKS.clear()


class RamDiscardListener:
    """Base class of listeners: override ``notify_populate`` and ``notify_discard``.

    @notify_populate(section) returns 0 or a negative errno; @notify_discard(section)
    cannot fail.  ``section`` is set by ``register_listener`` (a copy of the caller's).
    """

    double_discard_supported = False
    #: QLIST_ENTRY(RamDiscardListener) next
    _rdl_next: "RamDiscardListener | None" = None

    def __init__(self) -> None:
        self.section: MemoryRegionSection | None = None

    def notify_populate(self, section: MemoryRegionSection) -> int:
        raise NotImplementedError

    def notify_discard(self, section: MemoryRegionSection) -> None:
        raise NotImplementedError


class RamBlockAttributes:
    """The state manager of one RAM region of ``region_size`` bytes.

    ram_block_attributes_create(): all blocks start discarded (private).
    """

    def __init__(self, region_size: int, block_size: int = 0x1000, rollback: str = "none"):
        if block_size <= 0 or block_size & (block_size - 1):
            raise ValueError(f"block_size 0x{block_size:x} is not a power of two")
        if region_size <= 0 or region_size % block_size:
            raise ValueError(
                f"region size 0x{region_size:x} is not a non-zero multiple of block_size"
                f" 0x{block_size:x}"
            )
        if rollback not in ROLLBACK_POLICIES:
            raise ValueError(f"rollback must be one of {ROLLBACK_POLICIES}, not {rollback!r}")
        self.region_size = region_size
        self.block_size = block_size
        self.rollback = rollback
        self.bitmap_size = region_size // block_size
        self.bitmap = Bitmap(self.bitmap_size)
        self._rdl_head: RamDiscardListener | None = None

    def destroy(self) -> None:
        """ram_block_attributes_destroy(): drop the bitmap and every listener."""
        rdl = self._rdl_head
        while rdl is not None:
            rdl.section = None
            rdl, rdl._rdl_next = rdl._rdl_next, None
        self._rdl_head = None
        self.bitmap = Bitmap(0)
        self.bitmap_size = 0
        self.region_size = 0

    # -- queries -------------------------------------------------------------------------
    def get_block_size(self) -> int:
        return self.block_size

    def get_min_granularity(self) -> int:
        """ram_block_attributes_rdm_get_min_granularity(): the block size."""
        return self.block_size

    def listeners(self) -> list:
        """Registered listeners in notification order (newest first)."""
        out = []
        rdl = self._rdl_head
        while rdl is not None:
            out.append(rdl)
            rdl = rdl._rdl_next
        return out

    def is_valid_range(self, offset: int, size: int) -> bool:
        """ram_block_attributes_is_valid_range(): block-aligned, no wrap, inside the region."""
        block_size = self.block_size
        if offset % block_size or (size % block_size and not _SIZE_UNALIGNED_ACCEPTED):
            return False
        end = (offset + size) & U64_MAX  # a uint64_t, as in the C
        if end <= offset and not _NO_WRAP_CHECK:
            return False  # size 0, or the end wraps 2^64
        if end > self.region_size:
            return False
        return True

    def _check_range(self, offset: int, size: int) -> None:
        if not self.is_valid_range(offset, size):
            raise ValueError(f"0x{offset:x}+0x{size:x} is not a valid range of the region")

    def is_range_populated(self, offset: int, size: int) -> bool:
        self._check_range(offset, size)
        first_bit, last_bit = self._bit_range(offset, size)
        return self.bitmap.find_next_zero_bit((last_bit + 1) & U64_MAX, first_bit) > last_bit

    def is_range_discarded(self, offset: int, size: int) -> bool:
        self._check_range(offset, size)
        first_bit, last_bit = self._bit_range(offset, size)
        return self.bitmap.find_next_bit((last_bit + 1) & U64_MAX, first_bit) > last_bit

    def _bit_range(self, offset: int, size: int) -> tuple[int, int]:
        """(first_bit, last_bit) as the C computes them: ``last_bit`` is unsigned, so a
        range of no whole block at block 0 (only a mutant lets one through) wraps it to
        ULONG_MAX."""
        if _NO_WRAP_CHECK:
            size = _no_wrap_check_clip(offset, size, self.region_size)
        first_bit = offset // self.block_size
        return first_bit, (first_bit + size // self.block_size - 1) & U64_MAX

    def is_populated(self, section: MemoryRegionSection) -> bool:
        """ram_block_attributes_rdm_is_populated(): no discarded block in the section's
        block range, computed as the C does: the offset rounds down, the size truncates,
        and ``last_bit`` is unsigned, so a zero-size section is vacuously populated
        except at block 0 (``last_bit`` wraps to ULONG_MAX).  A scan that would read
        past the bitmap's end (undefined in the C) is False."""
        first_bit = section[0] // self.block_size
        last_bit = (first_bit + section[1] // self.block_size - 1) & U64_MAX
        end = (last_bit + 1) & U64_MAX
        if first_bit < end and end > self.bitmap_size:
            return False
        return self.bitmap.find_next_zero_bit(end, first_bit) > last_bit

    # -- notification --------------------------------------------------------------------
    def notify_populate(self, offset: int, size: int) -> int:
        """ram_block_attributes_notify_populate(): tell every listener, in list order.

        Returns 0 or the first failing listener's negative errno.  With a rollback policy
        other than ``none``, the listeners already told get ``notify_discard`` of their own
        clipped section before the error is returned.
        """
        ret = 0
        rdl = self._rdl_head
        while rdl is not None:
            tmp = rdl.section.intersect_range(offset, size)
            if tmp is not None:
                ret = rdl.notify_populate(tmp)
                if ret:
                    break
            rdl = rdl._rdl_next
        if ret and self.rollback != "none":
            # From the head to the failing listener (``sources``: including it), or to
            # the end if a callback removed it.
            _MARKS["notify_populate.rollback"] += 1
            done = self._rdl_head
            while done is not None:
                if done is rdl and self.rollback != "sources":
                    break
                # (rollback-wrong-section: virtio-mem's bug, the failing listener's; the
                # section it was last registered with, as the C's rdl->section.)
                tmp = (rdl._rdl_section if _ROLLBACK_WRONG_SECTION
                       else done.section).intersect_range(offset, size)
                if tmp is not None:
                    done.notify_discard(tmp)
                if done is rdl:
                    break
                done = done._rdl_next
        return ret

    def notify_discard(self, offset: int, size: int) -> None:
        """ram_block_attributes_notify_discard(): tell every listener; cannot fail."""
        rdl = self._rdl_head
        while rdl is not None:
            tmp = rdl.section.intersect_range(offset, size)
            if tmp is not None:
                rdl.notify_discard(tmp)
            rdl = rdl._rdl_next

    # -- conversion ----------------------------------------------------------------------
    def state_change(self, offset: int, size: int, to_discard: bool) -> int:
        """ram_block_attributes_state_change(): convert ``[offset, offset+size)``.

        @offset, @size: the range within the region, block-aligned.
        @to_discard: True converts to discarded (private), False to populated (shared).

        Returns 0 on success (including "already in the target state"), -EINVAL for an
        invalid range, or the negative errno of the listener that refused to populate.
        """
        if not self.is_valid_range(offset, size):
            return -EINVAL
        if _NO_WRAP_CHECK:
            size = _no_wrap_check_clip(offset, size, self.region_size)
        bitmap = self.bitmap
        block_size = self.block_size
        first_bit = offset // block_size
        nbits = size // block_size
        end_bit = first_bit + nbits
        is_discarded = self.is_range_discarded(offset, size)
        is_populated = self.is_range_populated(offset, size)

        if to_discard:
            if is_discarded:
                return 0
            if is_populated:
                bitmap.bitmap_clear(first_bit, nbits)
                self.notify_discard(offset, size)
                return 0
            # Unexpected mixture: process individual blocks.
            _MARKS["state_change.mixture"] += 1
            bit = bitmap.find_next_bit(end_bit, first_bit)
            while bit < end_bit:
                bitmap.clear_bit(bit)
                self.notify_discard(bit * block_size, block_size)
                bit = bitmap.find_next_bit(end_bit, bit + 1)
            return 0

        if is_populated:
            return 0
        if is_discarded:
            bitmap.bitmap_set(first_bit, nbits)
            ret = self.notify_populate(offset, size)
            if ret and self.rollback == "full":
                _MARKS["state_change.full_rollback"] += 1
                bitmap.bitmap_clear(first_bit, nbits)
            return ret
        # Unexpected mixture: process individual blocks.
        _MARKS["state_change.mixture"] += 1
        # (double-populate: every block, the populated ones too.)
        bit = first_bit if _DOUBLE_POPULATE else bitmap.find_next_zero_bit(end_bit, first_bit)
        populated_bits = []
        ret = 0
        while bit < end_bit:
            bitmap.set_bit(bit)
            ret = self.notify_populate(bit * block_size, block_size)
            if ret:
                break
            populated_bits.append(bit)
            bit = bit + 1 if _DOUBLE_POPULATE else bitmap.find_next_zero_bit(end_bit, bit + 1)
        if ret and self.rollback == "full":
            # The failing block's listeners were rolled back by notify_populate; undo the
            # blocks that succeeded, newest first, so every listener and bit is as before.
            # A block a nested call cleared meanwhile is already undone.
            _MARKS["state_change.full_rollback"] += 1
            if not _ROLLBACK_FORGETS_FAILING_BIT:
                bitmap.clear_bit(bit)
            for done in reversed(populated_bits):
                if bitmap.test_bit(done):
                    bitmap.clear_bit(done)
                    self.notify_discard(done * block_size, block_size)
        return ret

    # -- listeners -----------------------------------------------------------------------
    def register_listener(self, rdl: RamDiscardListener, section: MemoryRegionSection) -> int:
        """ram_block_attributes_rdm_register_listener(): insert at head, replay populated.

        Returns 0, -EINVAL for a section that is not a valid range of this region (QEMU
        asserts), or the listener's errno from the replay (QEMU 10.1 exits on it; the
        listener stays registered, and the caller decides).
        """
        if not isinstance(rdl, RamDiscardListener):
            raise TypeError("listener must subclass RamDiscardListener")
        if rdl.section is not None:  # registered (here or with another manager)
            return -EINVAL
        if not self.is_valid_range(section.offset_within_region, section.size):
            return -EINVAL
        rdl.section = section = MemoryRegionSection(*section)
        if _ROLLBACK_WRONG_SECTION:
            rdl._rdl_section = section  # (kept after unregistration, as the C struct's)
        rdl._rdl_next, self._rdl_head = self._rdl_head, rdl
        # Replayed over the caller's section (a local), whatever a callback does to rdl.
        return self._for_each_populated_section(section, rdl.notify_populate)

    def unregister_listener(self, rdl: RamDiscardListener) -> int:
        """ram_block_attributes_rdm_unregister_listener(): discard, then remove.

        One discard of the whole section when the listener supports double discard (VFIO
        does), else one per populated run.  Returns 0, or -ENOENT if not registered.
        """
        if not any(r is rdl for r in self.listeners()):
            return -ENOENT
        section = rdl.section
        if rdl.double_discard_supported or self.rollback != "none":
            rdl.notify_discard(section)
        else:
            self._for_each_populated_section(section, _discard_cb(rdl))
        # The predecessor is looked up only now (QLIST_REMOVE's le_prev is current); a
        # callback that already removed the listener leaves nothing to remove.
        self._list_remove(rdl)
        return 0

    def _list_remove(self, rdl: RamDiscardListener) -> None:
        prev, cur = None, self._rdl_head
        while cur is not None and cur is not rdl:
            prev, cur = cur, cur._rdl_next
        if cur is None:
            return
        if prev is None:
            self._rdl_head = rdl._rdl_next
        else:
            prev._rdl_next = rdl._rdl_next
        rdl._rdl_next = None
        rdl.section = None

    def replay_populated(self, section: MemoryRegionSection, replay_fn) -> int:
        """ram_block_attributes_rdm_replay_populated(): ``replay_fn(section)`` per run."""
        return self._for_each_populated_section(section, replay_fn)

    def replay_discarded(self, section: MemoryRegionSection, replay_fn) -> int:
        """ram_block_attributes_rdm_replay_discarded(): ``replay_fn(section)`` per run."""
        return self._for_each_discarded_section(section, replay_fn)

    def _for_each_populated_section(self, section, cb) -> int:
        return self._for_each_run(section, cb, self.bitmap.find_next_bit,
                                  self.bitmap.find_next_zero_bit)

    def _for_each_discarded_section(self, section, cb) -> int:
        return self._for_each_run(section, cb, self.bitmap.find_next_zero_bit,
                                  self.bitmap.find_next_bit)

    def _for_each_run(self, section, cb, find_start, find_end) -> int:
        """Walk maximal runs over the whole bitmap from the section's first block, clip
        each to the section, stop at the first run past its end or the first error."""
        block_size = self.block_size
        size = self.bitmap_size
        first_bit = find_start(size, section.offset_within_region // block_size)
        while first_bit < size:
            last_bit = find_end(size, first_bit + 1) - 1
            tmp = section.intersect_range(first_bit * block_size,
                                          (last_bit - first_bit + 1) * block_size)
            if tmp is None:
                break
            ret = cb(tmp)
            if ret:
                return ret
            first_bit = find_start(size, last_bit + 2)
        return 0


def _discard_cb(rdl):
    def cb(section):
        rdl.notify_discard(section)
        return 0
    return cb
