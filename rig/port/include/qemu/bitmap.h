/*
 * gmem-rig port stub layer: qemu/bitmap.h, the range helpers the state
 * managers use (bitmap_new, bitmap_set, bitmap_clear), with QEMU's
 * semantics: sizes and starts are longs, words are unsigned long, a new
 * bitmap is all clear.  Implemented in qemu-stubs.c.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef RIG_QEMU_BITMAP_H
#define RIG_QEMU_BITMAP_H

#include "qemu/bitops.h"

unsigned long *bitmap_new(long nbits);
void bitmap_set(unsigned long *map, long start, long nr);
void bitmap_clear(unsigned long *map, long start, long nr);

#endif
