/*
 * gmem-rig port stub layer: the functions QEMU's util/, qom/ and system/
 * would give the state manager files, written for the rig (not QEMU code).
 *
 *  - the report log: error_report() and exit() are recorded, in order, in
 *    the log the harness points rig_stub_log at (its manager's);
 *  - allocation (g_malloc0 / g_free) and the bitmap helpers, which check
 *    every word they touch against the bitmaps bitmap_new() handed out;
 *  - the QOM type registry (qom/object.h explains how small it is);
 *  - the MemoryRegion functions of system/memory.c, per flavour.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qemu/error-report.h"
#include "system/memory.h"
#include "rig-stubs.h"

uintptr_t rig_stub_host_page_size = 4096;

/* -- the report log ------------------------------------------------------ */

static RigStubLog rig_stub_global_log;
RigStubLog *rig_stub_log = &rig_stub_global_log;

void rig_stub_log_clear(RigStubLog *log)
{
    size_t i;

    for (i = 0; i < log->count; i++) {
        free(log->entries[i].message);
    }
    free(log->entries);
    log->entries = NULL;
    log->count = 0;
    log->capacity = 0;
    log->errors = 0;
    log->exits = 0;
}

static void rig_stub_record(int kind, int status, const char *message)
{
    RigStubLog *log = rig_stub_log;
    RigStubReport *r;

    if (log->count == log->capacity) {
        size_t cap = log->capacity ? log->capacity * 2 : 16;
        RigStubReport *grown = realloc(log->entries, cap * sizeof(*grown));

        if (!grown) {
            abort();
        }
        log->entries = grown;
        log->capacity = cap;
    }
    r = &log->entries[log->count++];
    r->kind = kind;
    r->status = status;
    r->depth = log->depth;
    r->message = strdup(message);
    if (!r->message) {
        abort();
    }
    if (kind == RIG_REPORT_ERROR) {
        log->errors++;
    } else if (kind == RIG_REPORT_EXIT) {
        log->exits++;
    }
}

static void rig_stub_vrecord(int kind, const char *fmt, va_list ap)
{
    char buf[512];

    vsnprintf(buf, sizeof(buf), fmt, ap);
    rig_stub_record(kind, 0, buf);
}

void error_report(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    rig_stub_vrecord(RIG_REPORT_ERROR, fmt, ap);
    va_end(ap);
}

void warn_report(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    rig_stub_vrecord(RIG_REPORT_WARN, fmt, ap);
    va_end(ap);
}

void info_report(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    rig_stub_vrecord(RIG_REPORT_INFO, fmt, ap);
    va_end(ap);
}

void rig_stub_exit(int status)
{
    char buf[32];

    snprintf(buf, sizeof(buf), "exit(%d)", status);
    rig_stub_record(RIG_REPORT_EXIT, status, buf);
}

void rig_stub_assert_failed(const char *file, int line, const char *func,
                            const char *expr)
{
    fprintf(stderr, "%s:%d: %s: assertion failed: (%s)\n", file, line, func,
            expr);
    fflush(stderr);
    abort();
}

/* -- memory and bitmaps -------------------------------------------------- */

void *g_malloc0(size_t size)
{
    void *p = calloc(1, size ? size : 1);

    if (!p) {
        abort();
    }
    return p;
}

void *g_malloc(size_t size)
{
    void *p = malloc(size ? size : 1);

    if (!p) {
        abort();
    }
    return p;
}

/* The bitmaps bitmap_new() handed out and not yet freed (a handful: one per
 * live state manager), newest first in the search. */
#define RIG_MAX_BITMAPS 64
static struct {
    const unsigned long *addr;
    unsigned long words;
    unsigned long nbits;
} rig_bitmaps[RIG_MAX_BITMAPS];
static int rig_nbitmaps;

void g_free(void *ptr)
{
    int i;

    for (i = rig_nbitmaps - 1; ptr && i >= 0; i--) {
        if (rig_bitmaps[i].addr == ptr) {
            rig_bitmaps[i] = rig_bitmaps[--rig_nbitmaps];
            break;
        }
    }
    free(ptr);
}

bool rig_stub_bitmap_word_ok(const unsigned long *addr, unsigned long word,
                             const char *what)
{
    int i;
    char buf[160];

    for (i = rig_nbitmaps - 1; i >= 0; i--) {
        if (rig_bitmaps[i].addr == addr) {
            if (word < rig_bitmaps[i].words) {
                return true;
            }
            snprintf(buf, sizeof(buf),
                     "%s: word %lu is past the end of a bitmap of %lu bits",
                     what, word, rig_bitmaps[i].nbits);
            rig_stub_record(RIG_REPORT_OOB, 0, buf);
            return false;
        }
    }
    return true;
}

unsigned long *bitmap_new(long nbits)
{
    unsigned long words = BITS_TO_LONGS((unsigned long)nbits);
    unsigned long *map = g_malloc0(words * sizeof(unsigned long));

    if (rig_nbitmaps == RIG_MAX_BITMAPS) {
        rig_stub_assert_failed(__FILE__, __LINE__, __func__,
                               "fewer than RIG_MAX_BITMAPS live bitmaps");
    }
    rig_bitmaps[rig_nbitmaps].addr = map;
    rig_bitmaps[rig_nbitmaps].words = words;
    rig_bitmaps[rig_nbitmaps].nbits = (unsigned long)nbits;
    rig_nbitmaps++;
    return map;
}

/* Set or clear bits [start, start + nr), a word at a time. */
static void rig_bitmap_fill(unsigned long *map, long start, long nr, bool set,
                            const char *what)
{
    unsigned long pos = (unsigned long)start;
    unsigned long end = pos + (unsigned long)nr;

    if (nr <= 0) {
        return;
    }
    while (pos < end) {
        unsigned long word = BIT_WORD(pos);
        unsigned long bit = pos % BITS_PER_LONG;
        unsigned long n = MIN(BITS_PER_LONG - bit, end - pos);
        unsigned long mask = (n == BITS_PER_LONG ? ~0UL : ((1UL << n) - 1))
                             << bit;

        if (rig_stub_bitmap_word_ok(map, word, what)) {
            if (set) {
                map[word] |= mask;
            } else {
                map[word] &= ~mask;
            }
        } else {
            return; /* one report per call, not one per word */
        }
        pos += n;
    }
}

void bitmap_set(unsigned long *map, long start, long nr)
{
    rig_bitmap_fill(map, start, nr, true, "bitmap_set");
}

void bitmap_clear(unsigned long *map, long start, long nr)
{
    rig_bitmap_fill(map, start, nr, false, "bitmap_clear");
}

/* The first bit in [offset, size) equal to @want, or size. */
static unsigned long rig_find_next(const unsigned long *addr,
                                   unsigned long size, unsigned long offset,
                                   bool want, const char *what)
{
    unsigned long word, bits;

    if (offset >= size) {
        return size;
    }
    word = BIT_WORD(offset);
    bits = rig_stub_word(addr, word, what);
    if (!want) {
        bits = ~bits;
    }
    bits &= ~0UL << (offset % BITS_PER_LONG);
    for (;;) {
        if (bits) {
            unsigned long found = word * BITS_PER_LONG + __builtin_ctzl(bits);

            return MIN(found, size);
        }
        word++;
        if (word * BITS_PER_LONG >= size) {
            return size;
        }
        bits = rig_stub_word(addr, word, what);
        if (!want) {
            bits = ~bits;
        }
    }
}

unsigned long find_next_bit(const unsigned long *addr, unsigned long size,
                            unsigned long offset)
{
    return rig_find_next(addr, size, offset, true, "find_next_bit");
}

unsigned long find_next_zero_bit(const unsigned long *addr,
                                 unsigned long size, unsigned long offset)
{
    return rig_find_next(addr, size, offset, false, "find_next_zero_bit");
}

/* -- QOM ----------------------------------------------------------------- */

struct TypeImpl {
    const TypeInfo *info;
    struct TypeImpl *parent;
    ObjectClass *class;
};

#define RIG_MAX_TYPES 16
static struct TypeImpl rig_types[RIG_MAX_TYPES];
static int rig_ntypes;

static struct TypeImpl *rig_type_find(const char *name)
{
    int i;

    for (i = 0; name && i < rig_ntypes; i++) {
        if (strcmp(rig_types[i].info->name, name) == 0) {
            return &rig_types[i];
        }
    }
    return NULL;
}

Type type_register_static(const TypeInfo *info)
{
    struct TypeImpl *t;

    g_assert(info->name);
    g_assert(!rig_type_find(info->name));
    g_assert(rig_ntypes < RIG_MAX_TYPES);
    t = &rig_types[rig_ntypes++];
    t->info = info;
    return t;
}

/* The parent's class_init runs first, so a child's class_init overrides. */
static void rig_class_init_chain(struct TypeImpl *t, ObjectClass *klass)
{
    struct TypeImpl *parent = rig_type_find(t->info->parent);

    if (parent) {
        rig_class_init_chain(parent, klass);
    }
    if (t->info->class_init) {
        t->info->class_init(klass, t->info->class_data);
    }
}

static ObjectClass *rig_type_class(struct TypeImpl *t)
{
    if (!t->class) {
        g_assert(t->info->class_size <= RIG_CLASS_SIZE);
        t->class = g_malloc0(RIG_CLASS_SIZE);
        t->class->type = t;
        rig_class_init_chain(t, t->class);
    }
    return t->class;
}

static void rig_instance_init_chain(struct TypeImpl *t, Object *obj)
{
    struct TypeImpl *parent = rig_type_find(t->info->parent);

    if (parent) {
        rig_instance_init_chain(parent, obj);
    }
    if (t->info->instance_init) {
        t->info->instance_init(obj);
    }
}

Object *object_new(const char *typename)
{
    struct TypeImpl *t = rig_type_find(typename);
    Object *obj;

    if (!t) {
        fprintf(stderr, "object_new: type '%s' is not registered\n", typename);
        abort();
    }
    g_assert(!t->info->abstract);
    g_assert(t->info->instance_size >= sizeof(Object));
    obj = g_malloc0(t->info->instance_size);
    obj->class = rig_type_class(t);
    obj->ref = 1;
    rig_instance_init_chain(t, obj);
    return obj;
}

ObjectClass *object_get_class(Object *obj)
{
    return obj->class;
}

Object *object_ref(void *objptr)
{
    Object *obj = objptr;

    if (obj) {
        obj->ref++;
    }
    return obj;
}

void object_unref(void *objptr)
{
    Object *obj = objptr;
    struct TypeImpl *t;

    if (!obj) {
        return;
    }
    g_assert(obj->ref > 0);
    if (--obj->ref) {
        return;
    }
    for (t = obj->class->type; t; t = rig_type_find(t->info->parent)) {
        if (t->info->instance_finalize) {
            t->info->instance_finalize(obj);
        }
    }
    g_free(obj);
}

void object_unparent(Object *obj)
{
    (void)obj;
}

/* -- system/memory.c ----------------------------------------------------- */

MemoryRegionSection *memory_region_section_new_copy(MemoryRegionSection *s)
{
    MemoryRegionSection *copy = g_new(MemoryRegionSection, 1);

    *copy = *s;
    return copy;
}

void memory_region_section_free_copy(MemoryRegionSection *s)
{
    g_free(s);
}

uint64_t memory_region_size(MemoryRegion *mr)
{
    if (int128_eq(mr->size, int128_2_64())) {
        return UINT64_MAX;
    }
    return int128_get64(mr->size);
}

bool memory_region_is_ram(MemoryRegion *mr)
{
    return mr->ram;
}

RamDiscardManager *memory_region_get_ram_discard_manager(MemoryRegion *mr)
{
    return mr->rdm;
}

bool memory_region_has_ram_discard_manager(MemoryRegion *mr)
{
    return mr->rdm != NULL;
}

#if RIG_RDM_INTERFACE

/* 10.1's memory.c: the interface's TypeInfo and the wrappers dispatching
 * through the provider's class. */
static const TypeInfo rig_ram_discard_manager_info = {
    .parent = TYPE_INTERFACE,
    .name = TYPE_RAM_DISCARD_MANAGER,
    .class_size = sizeof(RamDiscardManagerClass),
};

static void rig_memory_register_types(void)
{
    type_register_static(&rig_ram_discard_manager_info);
}

type_init(rig_memory_register_types)

int memory_region_set_ram_discard_manager(MemoryRegion *mr,
                                          RamDiscardManager *rdm)
{
    g_assert(memory_region_is_ram(mr));
    if (mr->rdm && rdm) {
        return -EBUSY;
    }
    mr->rdm = rdm;
    return 0;
}

uint64_t ram_discard_manager_get_min_granularity(const RamDiscardManager *rdm,
                                                 const MemoryRegion *mr)
{
    RamDiscardManagerClass *rdmc = RAM_DISCARD_MANAGER_GET_CLASS(rdm);

    g_assert(rdmc->get_min_granularity);
    return rdmc->get_min_granularity(rdm, mr);
}

bool ram_discard_manager_is_populated(const RamDiscardManager *rdm,
                                      const MemoryRegionSection *section)
{
    RamDiscardManagerClass *rdmc = RAM_DISCARD_MANAGER_GET_CLASS(rdm);

    g_assert(rdmc->is_populated);
    return rdmc->is_populated(rdm, section);
}

int ram_discard_manager_replay_populated(const RamDiscardManager *rdm,
                                         MemoryRegionSection *section,
                                         ReplayRamDiscardState replay_fn,
                                         void *opaque)
{
    RamDiscardManagerClass *rdmc = RAM_DISCARD_MANAGER_GET_CLASS(rdm);

    g_assert(rdmc->replay_populated);
    return rdmc->replay_populated(rdm, section, replay_fn, opaque);
}

int ram_discard_manager_replay_discarded(const RamDiscardManager *rdm,
                                         MemoryRegionSection *section,
                                         ReplayRamDiscardState replay_fn,
                                         void *opaque)
{
    RamDiscardManagerClass *rdmc = RAM_DISCARD_MANAGER_GET_CLASS(rdm);

    g_assert(rdmc->replay_discarded);
    return rdmc->replay_discarded(rdm, section, replay_fn, opaque);
}

RIG_REGISTER_RET ram_discard_manager_register_listener(RamDiscardManager *rdm,
                                                       RamDiscardListener *rdl,
                                                       MemoryRegionSection *section)
{
    RamDiscardManagerClass *rdmc = RAM_DISCARD_MANAGER_GET_CLASS(rdm);

    g_assert(rdmc->register_listener);
#if defined(RIG_QEMU_FLAVOUR_HARDENED)
    return rdmc->register_listener(rdm, rdl, section);
#else
    rdmc->register_listener(rdm, rdl, section);
#endif
}

void ram_discard_manager_unregister_listener(RamDiscardManager *rdm,
                                             RamDiscardListener *rdl)
{
    RamDiscardManagerClass *rdmc = RAM_DISCARD_MANAGER_GET_CLASS(rdm);

    g_assert(rdmc->unregister_listener);
    rdmc->unregister_listener(rdm, rdl);
}

#else /* the 2026 multi-source manager: patchew's memory.c */

int memory_region_add_ram_discard_source(MemoryRegion *mr,
                                         RamDiscardSource *source)
{
    g_assert(memory_region_is_ram(mr));
    if (!mr->rdm) {
        mr->rdm = ram_discard_manager_new(mr);
    }
    return ram_discard_manager_add_source(mr->rdm, source);
}

void memory_region_del_ram_discard_source(MemoryRegion *mr,
                                          RamDiscardSource *source)
{
    g_assert(mr->rdm);
    ram_discard_manager_del_source(mr->rdm, source);
}

#endif
