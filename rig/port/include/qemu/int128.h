/*
 * gmem-rig port stub layer: Int128 (qemu/int128.h) on the compiler's
 * __int128, which is what QEMU itself uses where the compiler has it.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef RIG_QEMU_INT128_H
#define RIG_QEMU_INT128_H

typedef __int128_t Int128;

static inline Int128 int128_make64(uint64_t a)
{
    return (Int128)a;
}

static inline Int128 int128_make128(uint64_t lo, uint64_t hi)
{
    return (Int128)(((__uint128_t)hi << 64) | lo);
}

/* The value as a uint64_t; it must fit (QEMU asserts the same). */
static inline uint64_t int128_get64(Int128 a)
{
    uint64_t r = (uint64_t)a;
    g_assert(r == a);
    return r;
}

static inline uint64_t int128_getlo(Int128 a)
{
    return (uint64_t)a;
}

static inline int64_t int128_gethi(Int128 a)
{
    return (int64_t)(a >> 64);
}

static inline Int128 int128_zero(void)
{
    return 0;
}

static inline Int128 int128_one(void)
{
    return 1;
}

static inline Int128 int128_2_64(void)
{
    return (Int128)1 << 64;
}

static inline Int128 int128_add(Int128 a, Int128 b)
{
    return a + b;
}

static inline Int128 int128_sub(Int128 a, Int128 b)
{
    return a - b;
}

static inline Int128 int128_neg(Int128 a)
{
    return -a;
}

static inline bool int128_eq(Int128 a, Int128 b)
{
    return a == b;
}

static inline bool int128_ne(Int128 a, Int128 b)
{
    return a != b;
}

static inline bool int128_ge(Int128 a, Int128 b)
{
    return a >= b;
}

static inline bool int128_lt(Int128 a, Int128 b)
{
    return a < b;
}

static inline bool int128_le(Int128 a, Int128 b)
{
    return a <= b;
}

static inline bool int128_gt(Int128 a, Int128 b)
{
    return a > b;
}

static inline bool int128_nz(Int128 a)
{
    return a != 0;
}

static inline Int128 int128_min(Int128 a, Int128 b)
{
    return a < b ? a : b;
}

static inline Int128 int128_max(Int128 a, Int128 b)
{
    return a > b ? a : b;
}

#endif
