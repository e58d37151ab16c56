# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""RamBlockAttributes: QEMU's shared/private state manager (Cython; twin:
rig.core.pure.ram_block_attributes, whose module docstring describes the rollback
policies).

One bit per block, 1 = populated (shared), 0 = discarded (private).  The listener list is
intrusive and head-inserted like QEMU's QLIST, so the newest listener is notified first.
Listeners written in Cython override ``_notify_populate``/``_notify_discard`` (C calls,
no Python on the path); Python subclasses override ``notify_populate``/``notify_discard``.
"""

from libc.stdint cimport uint64_t
from libc.stdlib cimport calloc, free

from rig.core.cy.bitmap cimport (Bitmap, bitmap_clear, bitmap_set, clear_bit,
                                 find_next_bit, find_next_zero_bit, set_bit, test_bit)
from rig.core.types import MemoryRegionSection as PyMemoryRegionSection

from libc.errno cimport EINVAL, ENOENT

cdef extern from *:
    ctypedef unsigned long long u128 "unsigned __int128"

# Core mutants (rig.core.mutants): each one deliberate defect of the bug benchmark, 0
# unless a variant build defines it (-DRIG_MUTANT_X=1, rig.drive.native); the C compiler
# folds ``if RIG_MUTANT_X:`` away in the package's build.
cdef extern from *:
    """
    #ifndef RIG_MUTANT_ROLLBACK_WRONG_SECTION
    #define RIG_MUTANT_ROLLBACK_WRONG_SECTION 0
    #endif
    #ifndef RIG_MUTANT_SIZE_UNALIGNED_ACCEPTED
    #define RIG_MUTANT_SIZE_UNALIGNED_ACCEPTED 0
    #endif
    #ifndef RIG_MUTANT_NO_WRAP_CHECK
    #define RIG_MUTANT_NO_WRAP_CHECK 0
    #endif
    #ifndef RIG_MUTANT_DOUBLE_POPULATE
    #define RIG_MUTANT_DOUBLE_POPULATE 0
    #endif
    #ifndef RIG_MUTANT_ROLLBACK_FORGETS_FAILING_BIT
    #define RIG_MUTANT_ROLLBACK_FORGETS_FAILING_BIT 0
    #endif
    """
    const int RIG_MUTANT_ROLLBACK_WRONG_SECTION
    const int RIG_MUTANT_SIZE_UNALIGNED_ACCEPTED
    const int RIG_MUTANT_NO_WRAP_CHECK
    const int RIG_MUTANT_DOUBLE_POPULATE
    const int RIG_MUTANT_ROLLBACK_FORGETS_FAILING_BIT

#: The core mutants this module was compiled with: name -> flag (rig.core checks them
#: against RIG_CORE_MUTANT when it loads this backend).
MUTANT_FLAGS = {
    "rollback-wrong-section": RIG_MUTANT_ROLLBACK_WRONG_SECTION,
    "size-unaligned-accepted": RIG_MUTANT_SIZE_UNALIGNED_ACCEPTED,
    "no-wrap-check": RIG_MUTANT_NO_WRAP_CHECK,
    "double-populate": RIG_MUTANT_DOUBLE_POPULATE,
    "rollback-forgets-failing-bit": RIG_MUTANT_ROLLBACK_FORGETS_FAILING_BIT,
}

ROLLBACK_POLICIES = ("none", "listeners", "full", "sources")  # append-only: ids are bytes

# Coverage marks: counters of rare paths, which tests read to prove they reach them.
cdef enum:
    MARK_MIXTURE = 0
    MARK_NOTIFY_ROLLBACK = 1
    MARK_FULL_ROLLBACK = 2
    MARK_COUNT = 3
cdef uint64_t marks[MARK_COUNT]
cdef tuple MARK_NAMES = ("state_change.mixture", "notify_populate.rollback",
                         "state_change.full_rollback")


def coverage_marks():
    """Counters of rare paths taken ("Unexpected mixture", rollbacks), for coverage tests."""
    return {MARK_NAMES[i]: marks[i] for i in range(MARK_COUNT) if marks[i]}


def reset_coverage_marks():
    cdef int i
    for i in range(MARK_COUNT):
        marks[i] = 0


cdef bint memory_region_section_intersect_range(MemoryRegionSection *s, uint64_t offset,
                                                uint64_t size) noexcept nogil:
    """memory_region_section_intersect_range(): clip @s to [offset, offset+size).

    Returns false, leaving @s untouched, when the intersection is empty (end <= start).
    Ends are 128-bit, as QEMU's Int128, so a range ending at 2^64 does not wrap.
    """
    cdef uint64_t start = s.offset_within_region if s.offset_within_region > offset else offset
    cdef u128 s_end = <u128>s.offset_within_region + s.size
    cdef u128 r_end = <u128>offset + size
    cdef u128 end = s_end if s_end < r_end else r_end
    if end <= start:
        return False
    s.offset_within_address_space += start - s.offset_within_region
    s.offset_within_region = start
    s.size = <uint64_t>(end - start)
    return True


cdef inline uint64_t no_wrap_check_clip(uint64_t offset, uint64_t size,
                                        uint64_t region_size) noexcept nogil:
    """The no-wrap-check mutant lets a range whose end wraps 2^64 through
    is_valid_range (its wrapped end is inside the region).  The C would then scan and
    write up to 2^52 bits past the bitmap; the mutant stops at the region's end instead,
    so that the process lives to be judged (the defect is the accepted range, not the
    memory corruption).  Identity for a range that does not wrap."""
    if offset + size >= offset:
        return size
    return region_size - offset if offset < region_size else 0


cdef object section_to_py(const MemoryRegionSection *s):
    return PyMemoryRegionSection(s.offset_within_region, s.size, s.offset_within_address_space)


cdef int section_from_py(object section, MemoryRegionSection *out) except -1:
    out.offset_within_region = section[0]
    out.size = section[1]
    out.offset_within_address_space = section[2] if len(section) > 2 else 0
    return 0


cdef class RamDiscardListener:
    """Base class of listeners: override ``notify_populate`` and ``notify_discard``.

    @notify_populate(section) returns 0 or a negative errno; @notify_discard(section)
    cannot fail.  ``section`` is the copy ``register_listener`` keeps while registered.
    """

    def __init__(self):
        pass

    @property
    def section(self):
        return section_to_py(&self.rdl_section) if self.registered else None

    def notify_populate(self, section):
        raise NotImplementedError

    def notify_discard(self, section):
        raise NotImplementedError

    cdef int _notify_populate(self, MemoryRegionSection *section) except? -2147483647:
        ret = self.notify_populate(section_to_py(section))
        return 0 if ret is None else ret

    cdef int _notify_discard(self, MemoryRegionSection *section) except -1:
        self.notify_discard(section_to_py(section))
        return 0


cdef int _notify_populate_cb(MemoryRegionSection *section, void *arg) except? -2147483647:
    return (<RamDiscardListener>arg)._notify_populate(section)


cdef int _notify_discard_cb(MemoryRegionSection *section, void *arg) except? -2147483647:
    (<RamDiscardListener>arg)._notify_discard(section)
    return 0


cdef int _py_replay_cb(MemoryRegionSection *section, void *arg) except? -2147483647:
    ret = (<object>arg)(section_to_py(section))
    return 0 if ret is None else ret


cdef class RamBlockAttributes:
    """The state manager of one RAM region of ``region_size`` bytes.

    ram_block_attributes_create(): all blocks start discarded (private).
    """

    def __init__(self, uint64_t region_size, uint64_t block_size=0x1000, str rollback="none"):
        if block_size == 0 or block_size & (block_size - 1):
            raise ValueError(f"block_size 0x{block_size:x} is not a power of two")
        if region_size == 0 or region_size % block_size:
            raise ValueError(
                f"region size 0x{region_size:x} is not a non-zero multiple of block_size"
                f" 0x{block_size:x}")
        if rollback not in ROLLBACK_POLICIES:
            raise ValueError(f"rollback must be one of {ROLLBACK_POLICIES}, not {rollback!r}")
        self.region_size = region_size
        self.block_size = block_size
        self.rollback_policy = <RamBlockAttributesRollback><int>ROLLBACK_POLICIES.index(rollback)
        self.bitmap_size = region_size // block_size
        self.bitmap = Bitmap(self.bitmap_size)
        self.rdl_list = None

    @property
    def rollback(self):
        return ROLLBACK_POLICIES[<int>self.rollback_policy]

    def destroy(self):
        """ram_block_attributes_destroy(): drop the bitmap and every listener."""
        cdef RamDiscardListener rdl = self.rdl_list
        while rdl is not None:
            rdl.registered = False
            rdl, rdl.next = rdl.next, None
        self.rdl_list = None
        self.bitmap = Bitmap(0)
        self.bitmap_size = 0
        self.region_size = 0

    # -- queries -------------------------------------------------------------------------
    def get_block_size(self):
        return self.block_size

    def get_min_granularity(self):
        """ram_block_attributes_rdm_get_min_granularity(): the block size."""
        return self.block_size

    def listeners(self):
        """Registered listeners in notification order (newest first)."""
        out = []
        cdef RamDiscardListener rdl = self.rdl_list
        while rdl is not None:
            out.append(rdl)
            rdl = rdl.next
        return out

    cdef bint c_is_valid_range(self, uint64_t offset, uint64_t size) noexcept:
        cdef uint64_t block_size = self.block_size
        if offset % block_size or (size % block_size and not RIG_MUTANT_SIZE_UNALIGNED_ACCEPTED):
            return False
        if offset + size <= offset and not RIG_MUTANT_NO_WRAP_CHECK:
            return False  # size 0, or the end wraps 2^64
        if offset + size > self.region_size:
            return False
        return True

    cdef bint c_is_range_populated(self, uint64_t offset, uint64_t size) noexcept:
        cdef uint64_t first_bit = offset // self.block_size
        cdef uint64_t last_bit = first_bit + size // self.block_size - 1
        return find_next_zero_bit(self.bitmap.words, last_bit + 1, first_bit) > last_bit

    cdef bint c_is_range_discarded(self, uint64_t offset, uint64_t size) noexcept:
        cdef uint64_t first_bit = offset // self.block_size
        cdef uint64_t last_bit = first_bit + size // self.block_size - 1
        return find_next_bit(self.bitmap.words, last_bit + 1, first_bit) > last_bit

    def is_valid_range(self, uint64_t offset, uint64_t size):
        """ram_block_attributes_is_valid_range(): block-aligned, no wrap, inside the region."""
        return self.c_is_valid_range(offset, size)

    def is_range_populated(self, uint64_t offset, uint64_t size):
        if not self.c_is_valid_range(offset, size):
            raise ValueError(f"0x{offset:x}+0x{size:x} is not a valid range of the region")
        if RIG_MUTANT_NO_WRAP_CHECK:
            size = no_wrap_check_clip(offset, size, self.region_size)
        return self.c_is_range_populated(offset, size)

    def is_range_discarded(self, uint64_t offset, uint64_t size):
        if not self.c_is_valid_range(offset, size):
            raise ValueError(f"0x{offset:x}+0x{size:x} is not a valid range of the region")
        if RIG_MUTANT_NO_WRAP_CHECK:
            size = no_wrap_check_clip(offset, size, self.region_size)
        return self.c_is_range_discarded(offset, size)

    def is_populated(self, section):
        """ram_block_attributes_rdm_is_populated(): no discarded block in the section's
        block range, computed as the C does: the offset rounds down, the size truncates,
        and ``last_bit`` is unsigned, so a zero-size section is vacuously populated
        except at block 0 (``last_bit`` wraps to ULONG_MAX).  A scan that would read
        past the bitmap's end (undefined in the C) is False."""
        cdef uint64_t offset = section[0]
        cdef uint64_t size = section[1]
        cdef uint64_t first_bit = offset // self.block_size
        cdef uint64_t last_bit = first_bit + size // self.block_size - 1
        if first_bit < last_bit + 1 and last_bit + 1 > self.bitmap_size:
            return False
        return find_next_zero_bit(self.bitmap.words, last_bit + 1, first_bit) > last_bit

    # -- notification --------------------------------------------------------------------
    cdef int c_notify_populate(self, uint64_t offset, uint64_t size) except? -2147483647:
        """QLIST_FOREACH walks: the next listener is read from the current one *after*
        its callback returns, so a callback may unregister any listener (one that
        unregisters itself ends the walk, its next being NULL), and a listener inserted
        at the head meanwhile is not visited.  The rollback walk starts again at the
        head and ends at the failing listener, or at NULL if that one is gone."""
        cdef RamDiscardListener rdl = self.rdl_list
        cdef RamDiscardListener done
        cdef MemoryRegionSection tmp
        cdef int ret = 0
        while rdl is not None:
            tmp = rdl.rdl_section
            if memory_region_section_intersect_range(&tmp, offset, size):
                ret = rdl._notify_populate(&tmp)
                if ret:
                    break
            rdl = rdl.next
        if ret and self.rollback_policy != RBA_ROLLBACK_NONE:
            # Every listener before the failing one (the multi-source manager: and the
            # failing one too), each with its own clipped section.
            marks[MARK_NOTIFY_ROLLBACK] += 1
            done = self.rdl_list
            while done is not None:
                if done is rdl and self.rollback_policy != RBA_ROLLBACK_SOURCES:
                    break
                # (rollback-wrong-section: virtio-mem's bug, the failing listener's.)
                tmp = rdl.rdl_section if RIG_MUTANT_ROLLBACK_WRONG_SECTION else done.rdl_section
                if memory_region_section_intersect_range(&tmp, offset, size):
                    done._notify_discard(&tmp)
                if done is rdl:
                    break
                done = done.next
        return ret

    cdef int c_notify_discard(self, uint64_t offset, uint64_t size) except -1:
        cdef RamDiscardListener rdl = self.rdl_list
        cdef MemoryRegionSection tmp
        while rdl is not None:
            tmp = rdl.rdl_section
            if memory_region_section_intersect_range(&tmp, offset, size):
                rdl._notify_discard(&tmp)
            rdl = rdl.next
        return 0

    def notify_populate(self, uint64_t offset, uint64_t size):
        """ram_block_attributes_notify_populate(): tell every listener, in list order.

        Returns 0 or the first failing listener's negative errno.  With a rollback policy
        other than ``none``, the listeners already told get ``notify_discard`` of their own
        clipped section before the error is returned.
        """
        return self.c_notify_populate(offset, size)

    def notify_discard(self, uint64_t offset, uint64_t size):
        """ram_block_attributes_notify_discard(): tell every listener; cannot fail."""
        self.c_notify_discard(offset, size)

    # -- conversion ----------------------------------------------------------------------
    cdef int c_state_change(self, uint64_t offset, uint64_t size, bint to_discard) except? -2147483647:
        cdef uint64_t block_size = self.block_size
        cdef uint64_t first_bit, nbits, end_bit, bit, i
        cdef uint64_t *words
        cdef uint64_t *mine = NULL
        cdef bint is_discarded, is_populated
        cdef int ret = 0

        if not self.c_is_valid_range(offset, size):
            return -EINVAL
        if RIG_MUTANT_NO_WRAP_CHECK:
            size = no_wrap_check_clip(offset, size, self.region_size)
        words = self.bitmap.words
        first_bit = offset // block_size
        nbits = size // block_size
        end_bit = first_bit + nbits
        is_discarded = self.c_is_range_discarded(offset, size)
        is_populated = self.c_is_range_populated(offset, size)

        if to_discard:
            if is_discarded:
                return 0
            if is_populated:
                bitmap_clear(words, first_bit, nbits)
                self.c_notify_discard(offset, size)
                return 0
            # Unexpected mixture: process individual blocks.
            marks[MARK_MIXTURE] += 1
            bit = find_next_bit(words, end_bit, first_bit)
            while bit < end_bit:
                clear_bit(bit, words)
                self.c_notify_discard(bit * block_size, block_size)
                bit = find_next_bit(words, end_bit, bit + 1)
            return 0

        if is_populated:
            return 0
        if is_discarded:
            bitmap_set(words, first_bit, nbits)
            ret = self.c_notify_populate(offset, size)
            if ret and self.rollback_policy == RBA_ROLLBACK_FULL:
                marks[MARK_FULL_ROLLBACK] += 1
                bitmap_clear(words, first_bit, nbits)
            return ret

        # Unexpected mixture: process individual blocks.
        marks[MARK_MIXTURE] += 1
        if self.rollback_policy == RBA_ROLLBACK_FULL:
            # The blocks this call sets (bit i - first_bit), to undo exactly them: a
            # listener may convert other blocks of the range from inside its callback.
            mine = <uint64_t *>calloc((nbits + 63) // 64, 8)
            if mine == NULL:
                raise MemoryError()
        try:
            # (double-populate: every block, the populated ones too.)
            bit = first_bit if RIG_MUTANT_DOUBLE_POPULATE else \
                find_next_zero_bit(words, end_bit, first_bit)
            while bit < end_bit:
                set_bit(bit, words)
                if mine != NULL:
                    set_bit(bit - first_bit, mine)
                ret = self.c_notify_populate(bit * block_size, block_size)
                if ret:
                    break
                bit = bit + 1 if RIG_MUTANT_DOUBLE_POPULATE else \
                    find_next_zero_bit(words, end_bit, bit + 1)
            if ret and mine != NULL:
                # The failing block's listeners were rolled back by notify_populate; undo
                # the blocks that succeeded, newest first, so every listener and bit is as
                # before.  A block a nested call cleared meanwhile is already undone.
                marks[MARK_FULL_ROLLBACK] += 1
                if not RIG_MUTANT_ROLLBACK_FORGETS_FAILING_BIT:
                    clear_bit(bit, words)
                i = bit
                while i > first_bit:
                    i -= 1
                    if test_bit(i - first_bit, mine) and test_bit(i, words):
                        clear_bit(i, words)
                        self.c_notify_discard(i * block_size, block_size)
        finally:
            free(mine)
        return ret

    def state_change(self, uint64_t offset, uint64_t size, bint to_discard):
        """ram_block_attributes_state_change(): convert ``[offset, offset+size)``.

        @offset, @size: the range within the region, block-aligned.
        @to_discard: True converts to discarded (private), False to populated (shared).

        Returns 0 on success (including "already in the target state"), -EINVAL for an
        invalid range, or the negative errno of the listener that refused to populate.
        """
        return self.c_state_change(offset, size, to_discard)

    # -- listeners -----------------------------------------------------------------------
    def register_listener(self, RamDiscardListener rdl not None, section):
        """ram_block_attributes_rdm_register_listener(): insert at head, replay populated.

        Returns 0, -EINVAL for a section that is not a valid range of this region (QEMU
        asserts), or the listener's errno from the replay (QEMU 10.1 exits on it; the
        listener stays registered, and the caller decides).
        """
        cdef MemoryRegionSection s
        if rdl.registered:
            return -EINVAL
        section_from_py(section, &s)
        if not self.c_is_valid_range(s.offset_within_region, s.size):
            return -EINVAL
        rdl.rdl_section = s
        rdl.registered = True
        rdl.next = self.rdl_list
        self.rdl_list = rdl
        # QEMU replays over the caller's section, not over rdl->section: a callback that
        # unregisters (or re-registers) the listener does not change the walk.
        return self.for_each_populated_section(&s, <void *>rdl, _notify_populate_cb)

    def unregister_listener(self, RamDiscardListener rdl not None):
        """ram_block_attributes_rdm_unregister_listener(): discard, then remove.

        One discard of the whole section when the listener supports double discard (VFIO
        does), else one per populated run.  Returns 0, or -ENOENT if not registered.
        """
        cdef MemoryRegionSection s, tmp
        if not rdl.registered or not self._on_list(rdl):
            return -ENOENT
        s = rdl.rdl_section
        if rdl.double_discard_supported or self.rollback_policy != RBA_ROLLBACK_NONE:
            # The 2026 manager discards the whole section whatever the listener supports.
            tmp = s
            rdl._notify_discard(&tmp)
        else:
            self.for_each_populated_section(&s, <void *>rdl, _notify_discard_cb)
        # QLIST_REMOVE goes through le_prev, which is current whatever the callback did
        # to the list: find the predecessor only now.  A callback that already removed
        # the listener leaves nothing to remove (in QEMU, a double QLIST_REMOVE).
        self._list_remove(rdl)
        return 0

    cdef bint _on_list(self, RamDiscardListener rdl):
        cdef RamDiscardListener cur = self.rdl_list
        while cur is not None:
            if cur is rdl:
                return True
            cur = cur.next
        return False

    cdef void _list_remove(self, RamDiscardListener rdl):
        cdef RamDiscardListener prev = None
        cdef RamDiscardListener cur = self.rdl_list
        while cur is not None and cur is not rdl:
            prev, cur = cur, cur.next
        if cur is None:
            return
        if prev is None:
            self.rdl_list = rdl.next
        else:
            prev.next = rdl.next
        rdl.next = None
        rdl.registered = False

    def replay_populated(self, section, replay_fn):
        """ram_block_attributes_rdm_replay_populated(): ``replay_fn(section)`` per run."""
        cdef MemoryRegionSection s
        section_from_py(section, &s)
        return self.for_each_populated_section(&s, <void *>replay_fn, _py_replay_cb)

    def replay_discarded(self, section, replay_fn):
        """ram_block_attributes_rdm_replay_discarded(): ``replay_fn(section)`` per run."""
        cdef MemoryRegionSection s
        section_from_py(section, &s)
        return self.for_each_discarded_section(&s, <void *>replay_fn, _py_replay_cb)

    cdef int for_each_populated_section(self, MemoryRegionSection *section, void *arg,
                                        ram_block_attributes_section_cb cb) except? -2147483647:
        """ram_block_attributes_for_each_populated_section(): walk maximal runs of set bits
        over the whole bitmap from the section's first block, clip each to the section,
        stop at the first run past its end or at the first error."""
        cdef uint64_t *words = self.bitmap.words
        cdef uint64_t size = self.bitmap_size
        cdef uint64_t block_size = self.block_size
        cdef uint64_t first_bit, last_bit
        cdef MemoryRegionSection tmp
        cdef int ret
        first_bit = find_next_bit(words, size, section.offset_within_region // block_size)
        while first_bit < size:
            tmp = section[0]
            last_bit = find_next_zero_bit(words, size, first_bit + 1) - 1
            if not memory_region_section_intersect_range(
                    &tmp, first_bit * block_size, (last_bit - first_bit + 1) * block_size):
                break
            ret = cb(&tmp, arg)
            if ret:
                return ret
            first_bit = find_next_bit(words, size, last_bit + 2)
        return 0

    cdef int for_each_discarded_section(self, MemoryRegionSection *section, void *arg,
                                        ram_block_attributes_section_cb cb) except? -2147483647:
        """ram_block_attributes_for_each_discarded_section(): as above, for clear bits."""
        cdef uint64_t *words = self.bitmap.words
        cdef uint64_t size = self.bitmap_size
        cdef uint64_t block_size = self.block_size
        cdef uint64_t first_bit, last_bit
        cdef MemoryRegionSection tmp
        cdef int ret
        first_bit = find_next_zero_bit(words, size, section.offset_within_region // block_size)
        while first_bit < size:
            tmp = section[0]
            last_bit = find_next_bit(words, size, first_bit + 1) - 1
            if not memory_region_section_intersect_range(
                    &tmp, first_bit * block_size, (last_bit - first_bit + 1) * block_size):
                break
            ret = cb(&tmp, arg)
            if ret:
                return ret
            first_bit = find_next_zero_bit(words, size, last_bit + 2)
        return 0
