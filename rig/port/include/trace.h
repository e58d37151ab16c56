/*
 * gmem-rig port stub layer: the one trace point system/ram-block-attributes.c
 * calls (QEMU generates trace.h from system/trace-events).  A no-op: the
 * rig observes the state manager through its listeners and its bitmap.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef RIG_TRACE_H
#define RIG_TRACE_H

static inline void trace_ram_block_attributes_state_change(uint64_t offset,
                                                           uint64_t size,
                                                           const char *from,
                                                           const char *to)
{
    (void)offset;
    (void)size;
    (void)from;
    (void)to;
}

#endif
