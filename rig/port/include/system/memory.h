/*
 * gmem-rig port stub layer: the part of QEMU's include/system/memory.h (and,
 * for the 2026 flavour, include/system/ram-discard-manager.h) that the state
 * managers use: MemoryRegion, MemoryRegionSection and its helpers, the
 * RamDiscardListener and the RamDiscardManager of each flavour.  Written for
 * the rig; the type and function names and the prototypes are QEMU's, so
 * that the upstream files compile unchanged (gcc >= 14 rejects a prototype
 * that differs in a pointer's constness).
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef RIG_SYSTEM_MEMORY_H
#define RIG_SYSTEM_MEMORY_H

#include "qemu/osdep.h"

/* 10.1 passes sections to listeners and replay callbacks as mutable
 * pointers; the 2026 manager passes them const. */
#if RIG_RDM_INTERFACE
#define RIG_NOTIFY_SECTION MemoryRegionSection
#else
#define RIG_NOTIFY_SECTION const MemoryRegionSection
#endif

#define TYPE_RAM_DISCARD_MANAGER "ram-discard-manager"
typedef struct RamDiscardManagerClass RamDiscardManagerClass;
typedef struct RamDiscardManager RamDiscardManager;
DECLARE_OBJ_CHECKERS(RamDiscardManager, RamDiscardManagerClass,
                     RAM_DISCARD_MANAGER, TYPE_RAM_DISCARD_MANAGER)

#if !RIG_RDM_INTERFACE
#define TYPE_RAM_DISCARD_SOURCE "ram-discard-source"
typedef struct RamDiscardSourceClass RamDiscardSourceClass;
typedef struct RamDiscardSource RamDiscardSource;
DECLARE_OBJ_CHECKERS(RamDiscardSource, RamDiscardSourceClass,
                     RAM_DISCARD_SOURCE, TYPE_RAM_DISCARD_SOURCE)
#endif

struct MemoryRegion {
    Object parent_obj;
    bool ram;
    Int128 size;
    RamDiscardManager *rdm;
    const char *name;
};

struct MemoryRegionSection {
    Int128 size;
    MemoryRegion *mr;
    FlatView *fv;
    hwaddr offset_within_region;
    hwaddr offset_within_address_space;
    bool readonly;
    bool nonvolatile;
    bool unmergeable;
};

/*
 * memory_region_section_intersect_range: clip @s to [offset, offset + size)
 * of its region.  The ends are compared as Int128 (no wrap); an empty
 * intersection (end <= start) returns false and leaves @s alone; otherwise
 * offset_within_address_space moves with the start.  QEMU's semantics.
 */
static inline bool memory_region_section_intersect_range(MemoryRegionSection *s,
                                                         uint64_t offset,
                                                         uint64_t size)
{
    uint64_t start = MAX(s->offset_within_region, offset);
    Int128 s_end = int128_add(int128_make64(s->offset_within_region), s->size);
    Int128 r_end = int128_add(int128_make64(offset), int128_make64(size));
    Int128 end = int128_min(s_end, r_end);

    if (int128_le(end, int128_make64(start))) {
        return false;
    }
    s->offset_within_address_space += start - s->offset_within_region;
    s->offset_within_region = start;
    s->size = int128_sub(end, int128_make64(start));
    return true;
}

MemoryRegionSection *memory_region_section_new_copy(MemoryRegionSection *s);
void memory_region_section_free_copy(MemoryRegionSection *s);
uint64_t memory_region_size(MemoryRegion *mr);
bool memory_region_is_ram(MemoryRegion *mr);

typedef struct RamDiscardListener RamDiscardListener;
typedef int (*NotifyRamPopulate)(RamDiscardListener *rdl,
                                 RIG_NOTIFY_SECTION *section);
typedef void (*NotifyRamDiscard)(RamDiscardListener *rdl,
                                 RIG_NOTIFY_SECTION *section);

struct RamDiscardListener {
    NotifyRamPopulate notify_populate;
    NotifyRamDiscard notify_discard;
    /*
     * 10.1: unregistration sends one discard of the whole section instead
     * of one per populated run.  The 2026 manager has no such field (it
     * always sends the one discard); it stays here, unused, so that the
     * harness is the same in every flavour.
     */
    bool double_discard_supported;
    MemoryRegionSection *section;
    QLIST_ENTRY(RamDiscardListener) next;
};

typedef int (*ReplayRamDiscardState)(RIG_NOTIFY_SECTION *section,
                                     void *opaque);

#if RIG_RDM_INTERFACE
static inline void ram_discard_listener_init(RamDiscardListener *rdl,
                                             NotifyRamPopulate populate_fn,
                                             NotifyRamDiscard discard_fn,
                                             bool double_discard_supported)
{
    rdl->notify_populate = populate_fn;
    rdl->notify_discard = discard_fn;
    rdl->double_discard_supported = double_discard_supported;
}

/* hardened: registration reports the replay's error instead of exiting. */
#if defined(RIG_QEMU_FLAVOUR_HARDENED)
#define RIG_REGISTER_RET int
#else
#define RIG_REGISTER_RET void
#endif

/* QEMU 10.1: RamDiscardManager is an interface its provider implements. */
struct RamDiscardManagerClass {
    InterfaceClass parent_class;

    uint64_t (*get_min_granularity)(const RamDiscardManager *rdm,
                                    const MemoryRegion *mr);
    bool (*is_populated)(const RamDiscardManager *rdm,
                         const MemoryRegionSection *section);
    int (*replay_populated)(const RamDiscardManager *rdm,
                            MemoryRegionSection *section,
                            ReplayRamDiscardState replay_fn, void *opaque);
    int (*replay_discarded)(const RamDiscardManager *rdm,
                            MemoryRegionSection *section,
                            ReplayRamDiscardState replay_fn, void *opaque);
    RIG_REGISTER_RET (*register_listener)(RamDiscardManager *rdm,
                                          RamDiscardListener *rdl,
                                          MemoryRegionSection *section);
    void (*unregister_listener)(RamDiscardManager *rdm,
                                RamDiscardListener *rdl);
};

uint64_t ram_discard_manager_get_min_granularity(const RamDiscardManager *rdm,
                                                 const MemoryRegion *mr);
bool ram_discard_manager_is_populated(const RamDiscardManager *rdm,
                                      const MemoryRegionSection *section);
int ram_discard_manager_replay_populated(const RamDiscardManager *rdm,
                                         MemoryRegionSection *section,
                                         ReplayRamDiscardState replay_fn,
                                         void *opaque);
int ram_discard_manager_replay_discarded(const RamDiscardManager *rdm,
                                         MemoryRegionSection *section,
                                         ReplayRamDiscardState replay_fn,
                                         void *opaque);
RIG_REGISTER_RET ram_discard_manager_register_listener(RamDiscardManager *rdm,
                                                       RamDiscardListener *rdl,
                                                       MemoryRegionSection *section);
void ram_discard_manager_unregister_listener(RamDiscardManager *rdm,
                                             RamDiscardListener *rdl);

int memory_region_set_ram_discard_manager(MemoryRegion *mr,
                                          RamDiscardManager *rdm);

#else /* the 2026 multi-source manager */

static inline void ram_discard_listener_init(RamDiscardListener *rdl,
                                             NotifyRamPopulate populate_fn,
                                             NotifyRamDiscard discard_fn)
{
    rdl->notify_populate = populate_fn;
    rdl->notify_discard = discard_fn;
}

/* A source of populated/discarded state (virtio-mem, RamBlockAttributes). */
struct RamDiscardSourceClass {
    InterfaceClass parent_class;

    uint64_t (*get_min_granularity)(const RamDiscardSource *rds,
                                    const MemoryRegion *mr);
    bool (*is_populated)(const RamDiscardSource *rds,
                         const MemoryRegionSection *section);
    int (*replay_populated)(const RamDiscardSource *rds,
                            const MemoryRegionSection *section,
                            ReplayRamDiscardState replay_fn, void *opaque);
    int (*replay_discarded)(const RamDiscardSource *rds,
                            const MemoryRegionSection *section,
                            ReplayRamDiscardState replay_fn, void *opaque);
};

typedef struct RamDiscardSourceEntry RamDiscardSourceEntry;

struct RamDiscardSourceEntry {
    RamDiscardSource *rds;
    QLIST_ENTRY(RamDiscardSourceEntry) next;
};

/* The manager object: the AND of its sources, and the listeners. */
struct RamDiscardManager {
    Object parent;

    struct MemoryRegion *mr;
    QLIST_HEAD(, RamDiscardSourceEntry) source_list;
    uint64_t min_granularity;
    QLIST_HEAD(, RamDiscardListener) rdl_list;
};

RamDiscardManager *ram_discard_manager_new(MemoryRegion *mr);
int ram_discard_manager_add_source(RamDiscardManager *rdm,
                                   RamDiscardSource *source);
int ram_discard_manager_del_source(RamDiscardManager *rdm,
                                   RamDiscardSource *source);
uint64_t ram_discard_manager_get_min_granularity(const RamDiscardManager *rdm,
                                                 const MemoryRegion *mr);
bool ram_discard_manager_is_populated(const RamDiscardManager *rdm,
                                      const MemoryRegionSection *section);
int ram_discard_manager_replay_populated(const RamDiscardManager *rdm,
                                         const MemoryRegionSection *section,
                                         ReplayRamDiscardState replay_fn,
                                         void *opaque);
int ram_discard_manager_replay_discarded(const RamDiscardManager *rdm,
                                         const MemoryRegionSection *section,
                                         ReplayRamDiscardState replay_fn,
                                         void *opaque);
void ram_discard_manager_register_listener(RamDiscardManager *rdm,
                                           RamDiscardListener *rdl,
                                           MemoryRegionSection *section);
void ram_discard_manager_unregister_listener(RamDiscardManager *rdm,
                                             RamDiscardListener *rdl);
int ram_discard_manager_notify_populate(RamDiscardManager *rdm,
                                        RamDiscardSource *source,
                                        uint64_t offset, uint64_t size);
void ram_discard_manager_notify_discard(RamDiscardManager *rdm,
                                        RamDiscardSource *source,
                                        uint64_t offset, uint64_t size);
void ram_discard_manager_notify_discard_all(RamDiscardManager *rdm,
                                            RamDiscardSource *source);
int ram_discard_manager_replay_populated_to_listeners(RamDiscardManager *rdm);

int memory_region_add_ram_discard_source(MemoryRegion *mr,
                                         RamDiscardSource *source);
void memory_region_del_ram_discard_source(MemoryRegion *mr,
                                          RamDiscardSource *source);

#endif /* RIG_RDM_INTERFACE */

RamDiscardManager *memory_region_get_ram_discard_manager(MemoryRegion *mr);
bool memory_region_has_ram_discard_manager(MemoryRegion *mr);

#endif /* RIG_SYSTEM_MEMORY_H */
