/*
 * gmem-rig port stub layer: include/system/ramblock.h, the RAMBlock and the
 * RamBlockAttributes state manager (the fields the state manager files use:
 * its RAMBlock, the bitmap of populated blocks and, in the 10.1 layout, its
 * listener list).
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef RIG_SYSTEM_RAMBLOCK_H
#define RIG_SYSTEM_RAMBLOCK_H

#include "qemu/osdep.h"
#include "system/memory.h"

#define TYPE_RAM_BLOCK_ATTRIBUTES "ram-block-attributes"
OBJECT_DECLARE_SIMPLE_TYPE(RamBlockAttributes, RAM_BLOCK_ATTRIBUTES)

struct RamBlockAttributes {
    Object parent;

    RAMBlock *ram_block;

    /* 1-setting of the bitmap represents ram is populated (shared) */
    unsigned bitmap_size;
    unsigned long *bitmap;

    QLIST_HEAD(, RamDiscardListener) rdl_list;
};

struct RAMBlock {
    MemoryRegion *mr;
    uint64_t used_length;
    uint64_t max_length;
    RamBlockAttributes *attributes;
};

RamBlockAttributes *ram_block_attributes_create(RAMBlock *ram_block);
void ram_block_attributes_destroy(RamBlockAttributes *attr);
int ram_block_attributes_state_change(RamBlockAttributes *attr,
                                      uint64_t offset, uint64_t size,
                                      bool to_discard);

#endif
