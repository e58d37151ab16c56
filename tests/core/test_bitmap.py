"""Unit tests of the word-array Bitmap (docs/semantics.md 2.1), on both core backends.

Each test's docstring names the QEMU helper it mirrors, from include/qemu/bitmap.h,
include/qemu/bitops.h and util/bitops.c / util/bitmap.c (test_bit, set_bit, clear_bit,
bitmap_set, bitmap_clear, find_next_bit, find_next_zero_bit, bitmap_count_one,
bitmap_copy).  Bit ``nr`` lives in bit ``nr % 64`` of 64-bit word ``nr // 64``.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rig.core import load_backend
from tests.conftest import BACKENDS


def bits_of(bm):
    """The set bits, independently of set_bits(): one test_bit per index."""
    return [i for i in range(bm.nbits) if bm.test_bit(i)]


# == single bits ==========================================================================

def test_new_bitmap_is_all_clear(core):
    """bitmap_new(): zero-filled (every block discarded / private)."""
    bm = core.Bitmap(200)
    assert len(bm) == bm.nbits == 200
    assert bm.count() == 0
    assert bm.set_bits() == []
    assert bits_of(bm) == []
    assert bm.to_bytes() == bytes(8 * 4)


@pytest.mark.parametrize("nr", [0, 1, 62, 63, 64, 65, 127, 128, 199])
def test_set_test_clear_bit(core, nr):
    """set_bit() / test_bit() / clear_bit(): one bit, no neighbour touched."""
    bm = core.Bitmap(200)
    assert not bm.test_bit(nr)
    bm.set_bit(nr)
    assert bm.test_bit(nr)
    assert bits_of(bm) == [nr]
    bm.set_bit(nr)  # idempotent
    assert bm.count() == 1
    bm.clear_bit(nr)
    assert not bm.test_bit(nr)
    assert bm.count() == 0
    bm.clear_bit(nr)  # idempotent
    assert bm.count() == 0


def test_clear_bit_leaves_the_rest_of_the_word(core):
    """clear_bit(): ``*p &= ~mask`` clears one bit of a full word."""
    bm = core.Bitmap(128)
    bm.bitmap_set(0, 128)
    bm.clear_bit(63)
    bm.clear_bit(64)
    assert bm.count() == 126
    assert bits_of(bm) == [i for i in range(128) if i not in (63, 64)]


# == ranges ===============================================================================

@pytest.mark.parametrize("nbits", [256, 200, 193])
@pytest.mark.parametrize("start,nr", [
    (60, 10),     # crosses the word 0 / word 1 boundary
    (0, 64),      # exactly word 0
    (64, 64),     # exactly word 1
    (63, 130),    # partial first word, a whole word, partial last word
    (1, 62),      # inside one word, neither end aligned
    (5, 0),       # nothing
])
def test_bitmap_set_and_clear_ranges(core, nbits, start, nr):
    """bitmap_set() / bitmap_clear(): first partial word with BITMAP_FIRST_WORD_MASK,
    whole words, last partial word with BITMAP_LAST_WORD_MASK."""
    bm = core.Bitmap(nbits)
    bm.bitmap_set(start, nr)
    assert bm.set_bits() == list(range(start, start + nr))
    assert bits_of(bm) == list(range(start, start + nr))
    assert bm.count() == nr

    full = core.Bitmap(nbits)
    full.bitmap_set(0, nbits)
    full.bitmap_clear(start, nr)
    expect = [i for i in range(nbits) if not start <= i < start + nr]
    assert full.set_bits() == expect
    assert full.count() == nbits - nr


@pytest.mark.parametrize("nbits", [64, 128, 200, 193, 1])
@pytest.mark.parametrize("nr", [1, 3, 64])
def test_bitmap_set_up_to_exact_end(core, nbits, nr):
    """bitmap_set() / bitmap_clear() ending exactly at nbits: the last word's mask stops
    at the last valid bit and nothing past the map is written."""
    nr = min(nr, nbits)
    bm = core.Bitmap(nbits)
    bm.bitmap_set(nbits - nr, nr)
    assert bm.set_bits() == list(range(nbits - nr, nbits))
    assert bm.count() == nr  # no stray bits past nbits in the last word
    bm.bitmap_clear(nbits - nr, nr)
    assert bm.count() == 0
    assert bm.to_bytes() == bytes(len(bm.to_bytes()))


def test_bitmap_set_whole_map(core):
    """bitmap_set(map, 0, nbits) with nbits not a multiple of 64."""
    bm = core.Bitmap(130)
    bm.bitmap_set(0, 130)
    assert bm.count() == 130
    assert bm.find_next_zero_bit(130, 0) == 130
    # The last word holds exactly 2 valid bits, set.
    assert bm.to_bytes()[16:] == bytes([0b11]) + bytes(7)


@pytest.mark.parametrize("start,nr", [(0, 201), (200, 1), (199, 2), (201, 0), (150, 100)])
def test_bitmap_set_out_of_range_indexerror(core, start, nr):
    """bitmap_set() / bitmap_clear(): a range past nbits is refused (the C helpers would
    write past the allocation) and nothing changes."""
    bm = core.Bitmap(200)
    bm.set_bit(5)
    with pytest.raises(IndexError):
        bm.bitmap_set(start, nr)
    with pytest.raises(IndexError):
        bm.bitmap_clear(start, nr)
    assert bm.set_bits() == [5]


@pytest.mark.parametrize("nbits", [0, 1, 63, 64, 200])
def test_single_bit_out_of_range_indexerror(core, nbits):
    """test_bit() / set_bit() / clear_bit() at nr >= nbits raise IndexError."""
    bm = core.Bitmap(nbits)
    for nr in (nbits, nbits + 1, nbits + 64):
        with pytest.raises(IndexError):
            bm.test_bit(nr)
        with pytest.raises(IndexError):
            bm.set_bit(nr)
        with pytest.raises(IndexError):
            bm.clear_bit(nr)
    assert bm.count() == 0


# == find_next_bit / find_next_zero_bit ===================================================

def test_find_next_bit_basic(core):
    """find_next_bit(): the first set bit in [offset, size), or size."""
    bm = core.Bitmap(300)
    for nr in (3, 63, 64, 130, 299):
        bm.set_bit(nr)
    assert bm.find_next_bit(300, 0) == 3
    assert bm.find_next_bit(300, 3) == 3
    assert bm.find_next_bit(300, 4) == 63
    assert bm.find_next_bit(300, 64) == 64
    assert bm.find_next_bit(300, 65) == 130
    assert bm.find_next_bit(300, 131) == 299
    assert bm.find_next_bit(299, 131) == 299  # bit 299 is outside [131, 299)
    assert bm.find_next_bit(298, 131) == 298  # a set bit past size is not returned
    assert bm.find_next_bit(129, 65) == 129


def test_find_next_zero_bit_basic(core):
    """find_next_zero_bit(): the first clear bit in [offset, size), or size."""
    bm = core.Bitmap(300)
    bm.bitmap_set(0, 300)
    for nr in (3, 63, 64, 130, 299):
        bm.clear_bit(nr)
    assert bm.find_next_zero_bit(300, 0) == 3
    assert bm.find_next_zero_bit(300, 4) == 63
    assert bm.find_next_zero_bit(300, 65) == 130
    assert bm.find_next_zero_bit(300, 131) == 299
    assert bm.find_next_zero_bit(299, 131) == 299
    assert bm.find_next_zero_bit(298, 131) == 298  # a clear bit past size is not returned
    assert bm.find_next_zero_bit(129, 65) == 129
    assert bm.find_next_zero_bit(100, 65) == 100


@pytest.mark.parametrize("offset_delta", [0, 1, 63, 64, 1000])
def test_find_offset_at_or_past_size_returns_size(core, offset_delta):
    """find_next_bit() / find_next_zero_bit(): ``if (offset >= size) return size``."""
    bm = core.Bitmap(200)
    bm.bitmap_set(0, 100)
    for size in (0, 50, 100, 150, 200):
        offset = size + offset_delta
        assert bm.find_next_bit(size, offset) == size, (size, offset)
        assert bm.find_next_zero_bit(size, offset) == size, (size, offset)


@pytest.mark.parametrize("size", [65, 70, 100, 127])
def test_find_size_not_multiple_of_64_ignores_bits_past_size(core, size):
    """find_next_bit(): bits of the last word at or past ``size`` are not reported
    (``if (tmp == 0UL) return result + size``-style masking)."""
    bm = core.Bitmap(200)
    bm.bitmap_set(size + 1, 199 - size)  # set from size + 1 on, in the same word
    assert bm.find_next_bit(size, 0) == size
    assert bm.find_next_bit(size, 64) == size
    assert bm.find_next_bit(size + 1, 0) == size + 1
    assert bm.find_next_bit(size + 2, 0) == size + 1
    zeros = core.Bitmap(200)
    zeros.bitmap_set(0, size + 1)  # set below size + 1, clear from size + 1 on
    assert zeros.find_next_zero_bit(size, 0) == size
    assert zeros.find_next_zero_bit(size, size - 1) == size
    assert zeros.find_next_zero_bit(size + 2, 0) == size + 1


@pytest.mark.parametrize("nbits", [100, 128, 1])
def test_find_size_larger_than_nbits_is_clipped(core, nbits):
    """find_next_bit() / find_next_zero_bit() with size > nbits: the rig clips size to
    nbits rather than reading past the map."""
    bm = core.Bitmap(nbits)
    assert bm.find_next_bit(10 * nbits + 64, 0) == nbits
    bm.bitmap_set(0, nbits)
    assert bm.find_next_zero_bit(10 * nbits + 64, 0) == nbits
    bm.clear_bit(nbits - 1)
    assert bm.find_next_zero_bit(1 << 40, 0) == nbits - 1
    assert bm.find_next_bit(1 << 40, nbits + 5) == nbits


def test_find_on_empty_bitmap(core):
    """find_next_bit() on a zero-size map returns 0 (size)."""
    bm = core.Bitmap(0)
    assert len(bm) == 0
    assert bm.find_next_bit(0, 0) == 0
    assert bm.find_next_zero_bit(64, 0) == 0
    assert bm.to_bytes() == b""
    assert bm.count() == 0


def test_find_walks_runs_like_for_each_populated_section(core):
    """find_next_bit() + find_next_zero_bit(): the run walk of
    ram_block_attributes_for_each_populated_section (restart at last_bit + 2)."""
    bm = core.Bitmap(260)
    runs = [(0, 1), (62, 4), (128, 64), (255, 5)]
    for s, n in runs:
        bm.bitmap_set(s, n)
    out = []
    first = bm.find_next_bit(260, 0)
    while first < 260:
        last = bm.find_next_zero_bit(260, first + 1) - 1
        out.append((first, last - first + 1))
        first = bm.find_next_bit(260, last + 2)
    assert out == runs


# == whole-bitmap helpers =================================================================

def test_count(core):
    """bitmap_count_one(): popcount over the words."""
    bm = core.Bitmap(1000)
    bm.bitmap_set(10, 500)
    bm.set_bit(999)
    bm.clear_bit(200)
    assert bm.count() == 500
    assert bm.count() == len(bm.set_bits())


def test_to_bytes_layout_and_restore_round_trip(core):
    """Little-endian dump of the unsigned-long words (bit nr -> byte nr // 8 in word
    order) and its restore; equal bitmaps compare equal."""
    bm = core.Bitmap(130)
    for nr in (0, 9, 64, 129):
        bm.set_bit(nr)
    data = bm.to_bytes()
    assert len(data) == 3 * 8
    assert data[0] == 0x01 and data[1] == 0x02 and data[8] == 0x01 and data[16] == 0x02
    other = core.Bitmap(130)
    other.restore(data)
    assert other.set_bits() == [0, 9, 64, 129]
    assert other == bm
    assert other.to_bytes() == data
    other.clear_bit(9)
    assert other != bm


def test_restore_wrong_size_valueerror(core):
    """restore(): a dump of a different word count is refused and nothing changes."""
    bm = core.Bitmap(130)
    bm.set_bit(1)
    for n in (0, 16, 23, 25, 32):
        with pytest.raises(ValueError):
            bm.restore(bytes(n))
    assert bm.set_bits() == [1]


def test_to_bytes_identical_across_backends():
    """Both backends dump equal bitmaps to equal bytes and read each other's dumps."""
    if len(BACKENDS) < 2:
        pytest.skip("only one backend available")
    cy, pure = (load_backend(n) for n in ("cy", "pure"))
    a, b = cy.Bitmap(333), pure.Bitmap(333)
    for bm in (a, b):
        bm.bitmap_set(60, 10)
        bm.bitmap_set(200, 133)
        bm.set_bit(3)
    assert a.to_bytes() == b.to_bytes()
    assert a == b
    c = pure.Bitmap(333)
    c.restore(a.to_bytes())
    assert c.set_bits() == a.set_bits()


def test_copy_is_independent(core):
    """bitmap_copy() into a fresh map: changing either side leaves the other alone."""
    bm = core.Bitmap(200)
    bm.bitmap_set(60, 10)
    cp = bm.copy()
    assert cp == bm and cp is not bm and cp.nbits == 200
    cp.set_bit(0)
    cp.clear_bit(65)
    bm.set_bit(199)
    assert bm.set_bits() == list(range(60, 70)) + [199]
    assert cp.set_bits() == [0] + [i for i in range(60, 70) if i != 65]


def test_bitmap_is_unhashable(core):
    """Mutable: no __hash__."""
    with pytest.raises(TypeError):
        hash(core.Bitmap(8))


# == differential against a plain set =====================================================

_OPS = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["set_bit", "clear_bit", "test_bit"]), st.integers(0, 300)),
        st.tuples(st.sampled_from(["bitmap_set", "bitmap_clear"]), st.integers(0, 300),
                  st.integers(0, 200)),
        st.tuples(st.sampled_from(["find_next_bit", "find_next_zero_bit"]),
                  st.integers(0, 400), st.integers(0, 400)),
    ),
    max_size=60,
)


def _model(op, bits, nbits):
    """The plain-set reading of each helper; returns (result, raises IndexError)."""
    name = op[0]
    if name in ("set_bit", "clear_bit", "test_bit"):
        nr = op[1]
        if nr >= nbits:
            return None, True
        if name == "set_bit":
            bits.add(nr)
        elif name == "clear_bit":
            bits.discard(nr)
        else:
            return nr in bits, False
        return None, False
    if name in ("bitmap_set", "bitmap_clear"):
        start, nr = op[1], op[2]
        if start + nr > nbits:
            return None, True
        rng = set(range(start, start + nr))
        if name == "bitmap_set":
            bits |= rng
        else:
            bits -= rng
        return None, False
    size, offset = min(op[1], nbits), op[2]
    want = name == "find_next_bit"
    for i in range(offset, size):
        if (i in bits) == want:
            return i, False
    return size, False


@settings(max_examples=150, deadline=None)
@given(nbits=st.integers(0, 300), ops=_OPS)
def test_backends_agree_with_a_set(nbits, ops):
    """test_bit / set_bit / clear_bit / bitmap_set / bitmap_clear / find_next_bit /
    find_next_zero_bit on every backend match a plain Python set, op by op."""
    maps = {n: load_backend(n).Bitmap(nbits) for n in BACKENDS}
    bits: set = set()
    for step, op in enumerate(ops):
        want, want_raise = _model(op, bits, nbits)
        for name, bm in maps.items():
            if want_raise:
                with pytest.raises(IndexError):
                    getattr(bm, op[0])(*op[1:])
                continue
            got = getattr(bm, op[0])(*op[1:])
            assert got == want, f"step {step} {op}: {name} gave {got}, model {want}"
        for name, bm in maps.items():
            assert bm.set_bits() == sorted(bits), f"step {step} {op}: {name}"
            assert bm.count() == len(bits)
    dumps = {bm.to_bytes() for bm in maps.values()}
    assert len(dumps) == 1
