"""Unit tests of RamBlockAttributes (docs/semantics.md 2.2), on both core backends.

Each test names the QEMU function of system/ram-block-attributes.c it mirrors.
"""

import pytest

from rig.core.types import MemoryRegionSection as S
from rig.errors import EINVAL, EIO, ENOENT, ENOMEM

BS = 0x1000
REGION = 16 * BS


def recorder(core, name, log, fail=None, double_discard=False, rba=None):
    """A listener that appends (name, kind, section) to the shared ``log``.

    ``fail``: a dict {call_number: errno} of populate calls that fail.
    ``rba``: when given, the bitmap is recorded as seen during each populate call.
    """

    class Recorder(core.RamDiscardListener):
        def __init__(self):
            super().__init__()
            self.double_discard_supported = double_discard
            self.calls = 0
            self.seen_bits = []

        def notify_populate(self, section):
            self.calls += 1
            if rba is not None:
                self.seen_bits.append(rba.bitmap.set_bits())
            ret = (fail or {}).get(self.calls, 0)
            log.append((name, "populate", tuple(section), ret))
            return ret

        def notify_discard(self, section):
            log.append((name, "discard", tuple(section)))

    return Recorder()


def make(core, rollback="none", region=REGION, block_size=BS):
    return core.RamBlockAttributes(region, block_size, rollback)


# -- creation and ranges ---------------------------------------------------------------------

def test_create_all_discarded(core):
    """ram_block_attributes_create(): one bit per block, all 0 (private)."""
    rba = make(core)
    assert rba.bitmap_size == 16
    assert rba.bitmap.count() == 0
    assert rba.get_min_granularity() == BS
    assert rba.listeners() == []


@pytest.mark.parametrize("region,block_size", [(0, BS), (REGION, 0x1800), (REGION + 1, BS),
                                               (REGION, 0)])
def test_create_rejects_impossible_config(core, region, block_size):
    """ram_block_attributes_create(): block size a power of two, region a multiple."""
    with pytest.raises(ValueError):
        make(core, region=region, block_size=block_size)


def test_create_rejects_unknown_rollback(core):
    with pytest.raises(ValueError):
        make(core, rollback="sometimes")


@pytest.mark.parametrize("offset,size,valid", [
    (0, BS, True),                       # first block
    (15 * BS, BS, True),                 # last block
    (0, REGION, True),                   # whole region
    (0x800, BS, False),                  # unaligned offset
    (0, 0x800, False),                   # unaligned size
    (0, 0, False),                       # zero size
    (15 * BS, 2 * BS, False),            # past the end
    (REGION, BS, False),                 # starts at the end
    ((1 << 64) - BS, BS, False),         # end == 2^64 wraps to 0
    (BS, (1 << 64) - BS, False),         # size wraps
])
def test_is_valid_range(core, offset, size, valid):
    """ram_block_attributes_is_valid_range(): aligned, offset + size > offset, inside."""
    assert make(core).is_valid_range(offset, size) is valid


@pytest.mark.parametrize("offset,size", [(0x800, BS), (0, 0), ((1 << 64) - BS, BS),
                                         (0, REGION + BS)])
def test_state_change_invalid_range(core, offset, size):
    """ram_block_attributes_state_change(): -EINVAL on an invalid range, no change."""
    rba = make(core)
    log = []
    rba.register_listener(recorder(core, "A", log), S(0, REGION))
    assert rba.state_change(offset, size, False) == -EINVAL
    assert rba.state_change(offset, size, True) == -EINVAL
    assert rba.bitmap.count() == 0 and log == []


# -- state_change ------------------------------------------------------------------------------

def test_populate_whole_range_sets_bits_first(core):
    """ram_block_attributes_state_change(): all discarded -> bitmap_set, then one
    notify_populate of the whole range (the listener already sees the bits set)."""
    rba = make(core)
    log = []
    a = recorder(core, "A", log, rba=rba)
    rba.register_listener(a, S(0, REGION))
    assert rba.state_change(2 * BS, 3 * BS, False) == 0
    assert log == [("A", "populate", (2 * BS, 3 * BS, 2 * BS), 0)]
    assert a.seen_bits == [[2, 3, 4]]
    assert rba.bitmap.set_bits() == [2, 3, 4]


def test_already_in_target_state_is_a_no_op(core):
    """ram_block_attributes_state_change(): target state already holds -> 0, no calls."""
    rba = make(core)
    log = []
    rba.register_listener(recorder(core, "A", log), S(0, REGION))
    assert rba.state_change(0, 4 * BS, True) == 0
    rba.state_change(0, 4 * BS, False)
    log.clear()
    assert rba.state_change(0, 4 * BS, False) == 0
    assert rba.state_change(BS, BS, False) == 0
    assert log == []


def test_discard_whole_range_clears_then_one_notify(core):
    """ram_block_attributes_state_change(): all populated -> bitmap_clear, one discard."""
    rba = make(core)
    log = []
    rba.register_listener(recorder(core, "A", log), S(0, REGION))
    rba.state_change(0, 8 * BS, False)
    log.clear()
    assert rba.state_change(4 * BS, 4 * BS, True) == 0
    assert log == [("A", "discard", (4 * BS, 4 * BS, 4 * BS))]
    assert rba.bitmap.set_bits() == [0, 1, 2, 3]


def test_discard_mixture_goes_block_by_block(core):
    """ram_block_attributes_state_change(): "Unexpected mixture" -> each set bit, in
    ascending order: clear it, then notify_discard of that one block."""
    rba = make(core)
    log = []
    rba.register_listener(recorder(core, "A", log), S(0, REGION))
    rba.state_change(1 * BS, BS, False)
    rba.state_change(3 * BS, 2 * BS, False)
    log.clear()
    assert rba.state_change(0, 6 * BS, True) == 0
    assert log == [("A", "discard", (b * BS, BS, b * BS)) for b in (1, 3, 4)]
    assert rba.bitmap.count() == 0
    assert core.coverage_marks()["state_change.mixture"] == 1


def test_populate_mixture_stops_at_first_error(core):
    """ram_block_attributes_state_change(): mixture populate sets each clear bit then
    notifies that block, stopping at the first error; with rollback none the failing
    block's bit stays set (QEMU 10.1)."""
    rba = make(core)
    log = []
    rba.register_listener(recorder(core, "A", log, fail={3: -ENOMEM}), S(0, REGION))
    rba.state_change(1 * BS, BS, False)  # call 1
    assert rba.state_change(0, 5 * BS, False) == -ENOMEM  # blocks 0 (2), 2 (3: fails)
    assert [e[2][0] // BS for e in log] == [1, 0, 2]
    assert rba.bitmap.set_bits() == [0, 1, 2]


def test_populate_mixture_full_rollback_restores_exact_bits(core):
    """Rig policy ``full``: a failing mixture populate leaves bitmap and listeners exactly
    as before: the blocks that succeeded are discarded again, newest first."""
    rba = make(core, rollback="full")
    log = []
    rba.register_listener(recorder(core, "A", log, fail={4: -EIO}), S(0, REGION))
    rba.state_change(1 * BS, BS, False)   # call 1
    rba.state_change(3 * BS, BS, False)   # call 2
    before = rba.bitmap.set_bits()
    log.clear()
    assert rba.state_change(0, 6 * BS, False) == -EIO  # block 0 (3), block 2 (4: fails)
    assert rba.bitmap.set_bits() == before == [1, 3]
    assert log == [
        ("A", "populate", (0, BS, 0), 0),
        ("A", "populate", (2 * BS, BS, 2 * BS), -EIO),
        ("A", "discard", (0, BS, 0)),
    ]
    assert core.coverage_marks()["state_change.full_rollback"] == 1


# -- listeners ---------------------------------------------------------------------------------

def test_listeners_inserted_at_head(core):
    """ram_block_attributes_rdm_register_listener(): QLIST_INSERT_HEAD, so the newest
    listener is notified first."""
    rba = make(core)
    log = []
    a, b, c = (recorder(core, n, log) for n in "ABC")
    for rdl in (a, b, c):
        rba.register_listener(rdl, S(0, REGION))
    assert rba.listeners() == [c, b, a]
    rba.state_change(0, BS, False)
    assert [e[0] for e in log] == ["C", "B", "A"]


def test_each_listener_gets_its_own_clipped_section(core):
    """ram_block_attributes_notify_populate(): memory_region_section_intersect_range per
    listener; non-intersecting listeners are skipped; offset_within_address_space moves
    with the clipped start."""
    rba = make(core)
    log = []
    rba.register_listener(recorder(core, "A", log), S(0, 4 * BS, 0x100000000))
    rba.register_listener(recorder(core, "B", log), S(4 * BS, 4 * BS, 0x200000000))
    rba.register_listener(recorder(core, "C", log), S(12 * BS, 4 * BS, 0x300000000))
    assert rba.state_change(2 * BS, 4 * BS, False) == 0
    assert log == [
        ("B", "populate", (4 * BS, 2 * BS, 0x200000000), 0),
        ("A", "populate", (2 * BS, 2 * BS, 0x100000000 + 2 * BS), 0),
    ]


@pytest.mark.parametrize("rollback", ["none", "listeners", "full"])
def test_populate_failure_in_second_of_three_listeners(core, rollback):
    """ram_block_attributes_notify_populate() with the failure in the 2nd of 3 listeners.

    none: the 1st stays populated, the 3rd is never told, bitmap stays set (QEMU 10.1).
    listeners: the 1st gets notify_discard of ITS OWN clipped section (the virtio-mem bug
    used the failing listener's section), bitmap stays set (2026 manager).
    full: as listeners, and the bitmap is restored.
    """
    rba = make(core, rollback=rollback)
    log = []
    third = recorder(core, "third", log)
    second = recorder(core, "second", log, fail={1: -ENOMEM})
    first = recorder(core, "first", log)
    # Registered in reverse so that notification order is first, second, third.
    rba.register_listener(third, S(0, REGION, 0x300000000))
    rba.register_listener(second, S(4 * BS, 8 * BS, 0x200000000))
    rba.register_listener(first, S(0, 8 * BS, 0x100000000))
    assert rba.state_change(2 * BS, 4 * BS, False) == -ENOMEM
    expected = [
        ("first", "populate", (2 * BS, 4 * BS, 0x100000000 + 2 * BS), 0),
        ("second", "populate", (4 * BS, 2 * BS, 0x200000000), -ENOMEM),
    ]
    if rollback != "none":
        expected.append(("first", "discard", (2 * BS, 4 * BS, 0x100000000 + 2 * BS)))
    assert log == expected
    assert rba.bitmap.set_bits() == ([] if rollback == "full" else [2, 3, 4, 5])


def test_register_replays_populated_runs_into_new_listener_only(core):
    """ram_block_attributes_rdm_register_listener(): replay every populated run inside
    the section, clipped, through the new listener's notify_populate."""
    rba = make(core)
    log = []
    rba.register_listener(recorder(core, "old", log), S(0, REGION))
    rba.state_change(0, 2 * BS, False)
    rba.state_change(5 * BS, 3 * BS, False)
    rba.state_change(14 * BS, BS, False)
    log.clear()
    assert rba.register_listener(recorder(core, "new", log), S(BS, 10 * BS, 0x1000000)) == 0
    assert log == [
        ("new", "populate", (BS, BS, 0x1000000), 0),
        ("new", "populate", (5 * BS, 3 * BS, 0x1000000 + 4 * BS), 0),
    ]


def test_register_replay_failure_returns_errno_and_stays_registered(core):
    """ram_block_attributes_rdm_register_listener(): QEMU 10.1 exits on a replay error;
    the rig returns it (the design decides) and the listener is registered."""
    rba = make(core)
    rba.state_change(0, BS, False)
    rba.state_change(4 * BS, BS, False)
    log = []
    rdl = recorder(core, "A", log, fail={2: -EIO})
    assert rba.register_listener(rdl, S(0, REGION)) == -EIO
    assert rba.listeners() == [rdl]
    assert len(log) == 2


@pytest.mark.parametrize("section", [S(0x800, BS), S(0, 0), S(0, REGION + BS),
                                     S(REGION, BS)])
def test_register_rejects_invalid_section(core, section):
    """register_listener(): QEMU asserts a valid section; the rig returns -EINVAL."""
    rba = make(core)
    assert rba.register_listener(recorder(core, "A", []), section) == -EINVAL
    assert rba.listeners() == []


def test_register_twice_is_einval(core):
    rba = make(core)
    rdl = recorder(core, "A", [])
    assert rba.register_listener(rdl, S(0, BS)) == 0
    assert rba.register_listener(rdl, S(0, BS)) == -EINVAL


def test_unregister_double_discard_supported_is_one_call(core):
    """ram_block_attributes_rdm_unregister_listener(): double_discard_supported -> one
    notify_discard of the whole section, populated or not."""
    rba = make(core)
    log = []
    rdl = recorder(core, "A", log, double_discard=True)
    rba.register_listener(rdl, S(0, 8 * BS, 0x5000000))
    rba.state_change(BS, BS, False)
    log.clear()
    assert rba.unregister_listener(rdl) == 0
    assert log == [("A", "discard", (0, 8 * BS, 0x5000000))]
    assert rba.listeners() == [] and rdl.section is None


def test_unregister_without_double_discard_is_per_populated_run(core):
    """ram_block_attributes_rdm_unregister_listener(): otherwise one discard per run."""
    rba = make(core)
    log = []
    keep = recorder(core, "keep", [])
    rdl = recorder(core, "A", log)
    rba.register_listener(keep, S(0, REGION))
    rba.register_listener(rdl, S(2 * BS, 8 * BS, 0x5000000))
    rba.state_change(BS, 2 * BS, False)
    rba.state_change(6 * BS, BS, False)
    log.clear()
    assert rba.unregister_listener(rdl) == 0
    assert log == [("A", "discard", (2 * BS, BS, 0x5000000)),
                   ("A", "discard", (6 * BS, BS, 0x5000000 + 4 * BS))]
    assert rba.listeners() == [keep]


def test_unregister_unknown_listener(core):
    assert make(core).unregister_listener(recorder(core, "A", [])) == -ENOENT


# -- replay and queries ------------------------------------------------------------------------

def _populate_blocks(rba, *blocks):
    for b in blocks:
        rba.state_change(b * BS, BS, False)


def test_replay_populated_walks_maximal_runs_clipped(core):
    """ram_block_attributes_for_each_populated_section(): maximal runs, clipped, and the
    first block of a section with a non-zero offset is found (virtio-mem divided by the
    bitmap size instead of the block size there)."""
    rba = make(core)
    _populate_blocks(rba, 1, 2, 3, 7, 8, 12)
    seen = []
    assert rba.replay_populated(S(2 * BS, 9 * BS, 0x9000000), lambda s: seen.append(tuple(s))) == 0
    assert seen == [(2 * BS, 2 * BS, 0x9000000), (7 * BS, 2 * BS, 0x9000000 + 5 * BS)]


def test_replay_discarded_walks_clear_runs(core):
    """ram_block_attributes_for_each_discarded_section()."""
    rba = make(core)
    _populate_blocks(rba, 1, 2, 3, 7, 8, 12)
    seen = []
    assert rba.replay_discarded(S(0, REGION), lambda s: seen.append(tuple(s))) == 0
    assert [(s[0] // BS, s[1] // BS) for s in seen] == [(0, 1), (4, 3), (9, 3), (13, 3)]


def test_replay_run_at_last_block(core):
    """The run end: a run reaching the last block, and a section ending on it."""
    rba = make(core)
    _populate_blocks(rba, 14, 15)
    seen = []
    rba.replay_populated(S(15 * BS, BS), lambda s: seen.append(tuple(s)))
    assert seen == [(15 * BS, BS, 0)]


def test_replay_stops_at_first_error_and_returns_it(core):
    """replay_populated(): the first non-zero return ends the walk and is returned."""
    rba = make(core)
    _populate_blocks(rba, 0, 2, 4, 6)
    seen = []

    def fn(s):
        seen.append(s)
        return -EIO if len(seen) == 2 else 0

    assert rba.replay_populated(S(0, REGION), fn) == -EIO
    assert len(seen) == 2


def test_replay_stops_at_run_past_section_end(core):
    """for_each_populated_section(): break at the first run whose clip is empty."""
    rba = make(core)
    _populate_blocks(rba, 1, 9)
    seen = []
    rba.replay_populated(S(0, 4 * BS), lambda s: seen.append(tuple(s)))
    assert seen == [(BS, BS, BS)]


def test_is_populated(core):
    """ram_block_attributes_rdm_is_populated(): no clear bit in the section."""
    rba = make(core)
    _populate_blocks(rba, 2, 3, 4)
    assert rba.is_populated(S(2 * BS, 3 * BS))
    assert not rba.is_populated(S(2 * BS, 4 * BS))
    assert not rba.is_populated(S(0, BS))


def test_listener_exception_propagates(core):
    """A Python listener that raises is a bug in the listener: it must surface, not be
    swallowed or turned into an errno."""

    class Broken(core.RamDiscardListener):
        def notify_populate(self, section):
            raise RuntimeError("listener bug")

        def notify_discard(self, section):
            pass

    rba = make(core)
    rba.register_listener(Broken(), S(0, REGION))
    with pytest.raises(RuntimeError, match="listener bug"):
        rba.state_change(0, BS, False)


def test_large_region_does_not_truncate_sizes(core):
    """No 32-bit sizes: a 32 TiB region at 4 KiB has 2^33 blocks, past QEMU's unsigned
    bitmap_size.  Only the pure twin would allocate lazily, so use 2 MiB blocks there."""
    block_size = 0x1000 if core.name == "cy" else 0x200000
    region = 1 << 45
    rba = make(core, region=region, block_size=block_size)
    assert rba.bitmap_size == region // block_size
    last = region - block_size
    assert rba.state_change(last, block_size, False) == 0
    assert rba.bitmap.find_next_bit(rba.bitmap_size, 0) == rba.bitmap_size - 1
