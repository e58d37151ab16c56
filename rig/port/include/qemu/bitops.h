/*
 * gmem-rig port stub layer: qemu/bitops.h, the single-bit helpers and the
 * find_next_* searches with QEMU's semantics: bits live in unsigned long
 * words, bit nr is bit (nr % BITS_PER_LONG) of word (nr / BITS_PER_LONG);
 * find_next_bit(addr, size, offset) returns the first set bit in
 * [offset, size), or size when there is none (also when offset >= size).
 *
 * One addition: every helper checks the word it touches against the bitmap
 * bitmap_new() allocated (rig_stub_bitmap_word_ok): a word past the end is
 * read as 0 and never written, and the access is recorded as a report.  In
 * QEMU such an access is undefined behaviour; here it is a deterministic,
 * visible event the differential check can report instead of a heap
 * corruption that shows up ops later.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef RIG_QEMU_BITOPS_H
#define RIG_QEMU_BITOPS_H

#define BITS_PER_BYTE CHAR_BIT
#define BITS_PER_LONG (sizeof(unsigned long) * BITS_PER_BYTE)
#define BIT_WORD(nr) ((nr) / BITS_PER_LONG)
#define BIT_MASK(nr) (1UL << ((nr) % BITS_PER_LONG))
#define BITS_TO_LONGS(nr) DIV_ROUND_UP(nr, BITS_PER_BYTE * sizeof(long))

/* True when word @word of @addr lies inside the bitmap bitmap_new() gave
 * (a pointer bitmap_new() did not allocate is taken as it is); otherwise
 * records the out-of-bounds access (@what: the helper) and returns false. */
bool rig_stub_bitmap_word_ok(const unsigned long *addr, unsigned long word,
                             const char *what);

static inline unsigned long rig_stub_word(const unsigned long *addr,
                                          unsigned long word,
                                          const char *what)
{
    return rig_stub_bitmap_word_ok(addr, word, what) ? addr[word] : 0;
}

static inline void set_bit(long nr, unsigned long *addr)
{
    if (rig_stub_bitmap_word_ok(addr, BIT_WORD((unsigned long)nr), "set_bit")) {
        addr[BIT_WORD((unsigned long)nr)] |= BIT_MASK((unsigned long)nr);
    }
}

static inline void clear_bit(long nr, unsigned long *addr)
{
    if (rig_stub_bitmap_word_ok(addr, BIT_WORD((unsigned long)nr),
                                "clear_bit")) {
        addr[BIT_WORD((unsigned long)nr)] &= ~BIT_MASK((unsigned long)nr);
    }
}

static inline int test_bit(long nr, const unsigned long *addr)
{
    return 1UL & (rig_stub_word(addr, BIT_WORD((unsigned long)nr), "test_bit")
                  >> ((unsigned long)nr & (BITS_PER_LONG - 1)));
}

unsigned long find_next_bit(const unsigned long *addr, unsigned long size,
                            unsigned long offset);
unsigned long find_next_zero_bit(const unsigned long *addr,
                                 unsigned long size,
                                 unsigned long offset);

static inline unsigned long find_first_bit(const unsigned long *addr,
                                           unsigned long size)
{
    return find_next_bit(addr, size, 0);
}

static inline unsigned long find_first_zero_bit(const unsigned long *addr,
                                                unsigned long size)
{
    return find_next_zero_bit(addr, size, 0);
}

#endif
