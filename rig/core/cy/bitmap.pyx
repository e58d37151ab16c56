# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Word-array bitmap with QEMU's helper names (Cython; twin: rig.core.pure.bitmap).

The C functions work on a plain ``uint64_t *`` so that RamBlockAttributes uses them with
no Python in the loop; ``Bitmap`` owns the words and is the Python-facing object.
"""

from libc.stdint cimport uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset

cdef extern from *:
    int __builtin_ctzll(unsigned long long) nogil
    int __builtin_popcountll(unsigned long long) nogil

cdef uint64_t ALL_ONES = 0xFFFFFFFFFFFFFFFF


cdef inline uint64_t BITMAP_FIRST_WORD_MASK(uint64_t start) noexcept nogil:
    return ALL_ONES << (start & (BITS_PER_LONG - 1))


cdef inline uint64_t BITMAP_LAST_WORD_MASK(uint64_t nbits) noexcept nogil:
    # Mask of the valid bits of the word holding bit nbits - 1.
    return ALL_ONES >> ((BITS_PER_LONG - (nbits & (BITS_PER_LONG - 1))) & (BITS_PER_LONG - 1))


cdef uint64_t BITS_TO_LONGS(uint64_t nbits) noexcept nogil:
    return (nbits + BITS_PER_LONG - 1) // BITS_PER_LONG


cdef bint test_bit(uint64_t nr, const uint64_t *addr) noexcept nogil:
    return (addr[nr >> 6] >> (nr & 63)) & 1


cdef void set_bit(uint64_t nr, uint64_t *addr) noexcept nogil:
    addr[nr >> 6] |= (<uint64_t>1) << (nr & 63)


cdef void clear_bit(uint64_t nr, uint64_t *addr) noexcept nogil:
    addr[nr >> 6] &= ~((<uint64_t>1) << (nr & 63))


cdef void _bitmap_fill(uint64_t *map, uint64_t start, uint64_t nr, bint value) noexcept nogil:
    # Partial first word, whole words with memset, partial last word.
    cdef uint64_t end = start + nr
    cdef uint64_t first_word = start >> 6
    cdef uint64_t last_word
    cdef uint64_t mask
    if nr == 0:
        return
    last_word = (end - 1) >> 6
    if first_word == last_word:
        mask = BITMAP_FIRST_WORD_MASK(start) & BITMAP_LAST_WORD_MASK(end)
        if value:
            map[first_word] |= mask
        else:
            map[first_word] &= ~mask
        return
    mask = BITMAP_FIRST_WORD_MASK(start)
    if value:
        map[first_word] |= mask
    else:
        map[first_word] &= ~mask
    if last_word > first_word + 1:
        memset(&map[first_word + 1], 0xFF if value else 0,
               (last_word - first_word - 1) * sizeof(uint64_t))
    mask = BITMAP_LAST_WORD_MASK(end)
    if value:
        map[last_word] |= mask
    else:
        map[last_word] &= ~mask


cdef void bitmap_set(uint64_t *map, uint64_t start, uint64_t nr) noexcept nogil:
    _bitmap_fill(map, start, nr, True)


cdef void bitmap_clear(uint64_t *map, uint64_t start, uint64_t nr) noexcept nogil:
    _bitmap_fill(map, start, nr, False)


cdef inline uint64_t _find_next(const uint64_t *addr, uint64_t size, uint64_t offset,
                                uint64_t invert) noexcept nogil:
    cdef uint64_t idx, last_idx, word, found
    if offset >= size:
        return size
    idx = offset >> 6
    last_idx = (size - 1) >> 6
    word = (addr[idx] ^ invert) & BITMAP_FIRST_WORD_MASK(offset)
    while True:
        if word:
            found = (idx << 6) + <uint64_t>__builtin_ctzll(word)
            return found if found < size else size
        idx += 1
        if idx > last_idx:
            return size
        word = addr[idx] ^ invert


cdef uint64_t find_next_bit(const uint64_t *addr, uint64_t size, uint64_t offset) noexcept nogil:
    """find_next_bit(): the first set bit in [offset, size), or size if none."""
    return _find_next(addr, size, offset, 0)


cdef uint64_t find_next_zero_bit(const uint64_t *addr, uint64_t size,
                                 uint64_t offset) noexcept nogil:
    """find_next_zero_bit(): the first clear bit in [offset, size), or size if none."""
    return _find_next(addr, size, offset, ALL_ONES)


cdef uint64_t bitmap_count_one(const uint64_t *map, uint64_t nbits) noexcept nogil:
    cdef uint64_t i, n = 0
    cdef uint64_t nwords = BITS_TO_LONGS(nbits)
    for i in range(nwords):
        n += <uint64_t>__builtin_popcountll(map[i])
    return n


cdef class Bitmap:
    """A fixed-size bitmap of ``nbits`` bits, all clear at creation."""

    def __cinit__(self, uint64_t nbits):
        self.nbits = nbits
        self.nwords = BITS_TO_LONGS(nbits)
        # calloc(0) may return NULL; always allocate at least one word.
        self.words = <uint64_t *>calloc(self.nwords if self.nwords else 1, sizeof(uint64_t))
        if self.words == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.words)

    cdef int _check(self, uint64_t nr) except -1:
        if nr >= self.nbits:
            raise IndexError(f"bit {nr} out of range 0..{self.nbits}")
        return 0

    cdef int _check_range(self, uint64_t start, uint64_t nr) except -1:
        if start > self.nbits or nr > self.nbits - start:
            raise IndexError(f"bits [{start}, {start + nr}) out of range 0..{self.nbits}")
        return 0

    def test_bit(self, uint64_t nr):
        self._check(nr)
        return test_bit(nr, self.words)

    def set_bit(self, uint64_t nr):
        self._check(nr)
        set_bit(nr, self.words)

    def clear_bit(self, uint64_t nr):
        self._check(nr)
        clear_bit(nr, self.words)

    def bitmap_set(self, uint64_t start, uint64_t nr):
        """Set bits ``[start, start+nr)``, a word at a time."""
        self._check_range(start, nr)
        with nogil:
            bitmap_set(self.words, start, nr)

    def bitmap_clear(self, uint64_t start, uint64_t nr):
        """Clear bits ``[start, start+nr)``, a word at a time."""
        self._check_range(start, nr)
        with nogil:
            bitmap_clear(self.words, start, nr)

    def find_next_bit(self, uint64_t size, uint64_t offset):
        """Index of the first set bit in ``[offset, size)``, or ``size`` if there is none."""
        if size > self.nbits:
            size = self.nbits
        with nogil:
            offset = find_next_bit(self.words, size, offset)
        return offset

    def find_next_zero_bit(self, uint64_t size, uint64_t offset):
        """Index of the first clear bit in ``[offset, size)``, or ``size`` if there is none."""
        if size > self.nbits:
            size = self.nbits
        with nogil:
            offset = find_next_zero_bit(self.words, size, offset)
        return offset

    def count(self):
        """bitmap_count_one(): the number of set bits."""
        return bitmap_count_one(self.words, self.nbits)

    def copy(self):
        cdef Bitmap other = Bitmap(self.nbits)
        memcpy(other.words, self.words, self.nwords * sizeof(uint64_t))
        return other

    def to_bytes(self):
        """Little-endian word dump; equal bitmaps give equal bytes on both backends."""
        cdef bytearray out = bytearray(self.nwords * 8)
        cdef uint64_t i, w
        cdef int b
        cdef unsigned char *p = out
        for i in range(self.nwords):
            w = self.words[i]
            for b in range(8):
                p[i * 8 + b] = (w >> (8 * b)) & 0xFF
        return bytes(out)

    def restore(self, const unsigned char[:] data):
        """Load a ``to_bytes()`` dump of a bitmap of the same size."""
        cdef uint64_t i, w
        cdef int b
        if <uint64_t>data.shape[0] != self.nwords * 8:
            raise ValueError("bitmap dump has the wrong size")
        for i in range(self.nwords):
            w = 0
            for b in range(8):
                w |= (<uint64_t>data[i * 8 + b]) << (8 * b)
            self.words[i] = w

    def set_bits(self):
        """Every set bit, ascending (slow path for tests and reports)."""
        out = []
        cdef uint64_t nr = find_next_bit(self.words, self.nbits, 0)
        while nr < self.nbits:
            out.append(nr)
            nr = find_next_bit(self.words, self.nbits, nr + 1)
        return out

    def __eq__(self, other):
        if not hasattr(other, "to_bytes") or not hasattr(other, "nbits"):
            return NotImplemented
        return self.nbits == other.nbits and self.to_bytes() == other.to_bytes()

    __hash__ = None

    def __len__(self):
        return self.nbits

    def __repr__(self):
        return f"Bitmap(nbits={self.nbits}, set={self.count()})"
