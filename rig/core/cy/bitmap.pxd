# Word-array bitmap with QEMU's helper names (include/qemu/bitmap.h, util/bitops.c).
# Sizes and bit numbers are uint64_t throughout: QEMU's `unsigned bitmap_size` overflows
# past 2^32 blocks (16 TiB at 4 KiB); the rig never truncates a size to 32 bits.

from libc.stdint cimport uint64_t

cdef enum:
    BITS_PER_LONG = 64

cdef uint64_t BITS_TO_LONGS(uint64_t nbits) noexcept nogil
cdef bint test_bit(uint64_t nr, const uint64_t *addr) noexcept nogil
cdef void set_bit(uint64_t nr, uint64_t *addr) noexcept nogil
cdef void clear_bit(uint64_t nr, uint64_t *addr) noexcept nogil
cdef void bitmap_set(uint64_t *map, uint64_t start, uint64_t nr) noexcept nogil
cdef void bitmap_clear(uint64_t *map, uint64_t start, uint64_t nr) noexcept nogil
cdef uint64_t find_next_bit(const uint64_t *addr, uint64_t size, uint64_t offset) noexcept nogil
cdef uint64_t find_next_zero_bit(const uint64_t *addr, uint64_t size, uint64_t offset) noexcept nogil
cdef uint64_t bitmap_count_one(const uint64_t *map, uint64_t nbits) noexcept nogil


cdef class Bitmap:
    cdef uint64_t *words
    cdef uint64_t nwords
    cdef readonly uint64_t nbits
    cdef int _check(self, uint64_t nr) except -1
    cdef int _check_range(self, uint64_t start, uint64_t nr) except -1
