/*
 * gmem-rig port stub layer: QEMU's forward type names (qemu/typedefs.h).
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef RIG_QEMU_TYPEDEFS_H
#define RIG_QEMU_TYPEDEFS_H

typedef struct MemoryRegion MemoryRegion;
typedef struct MemoryRegionSection MemoryRegionSection;
typedef struct FlatView FlatView;
typedef struct RAMBlock RAMBlock;
typedef struct Object Object;
typedef struct ObjectClass ObjectClass;
typedef uint64_t hwaddr;

#endif
