/*
 * gmem-rig port harness (harness.h): drives one state manager through the
 * functions QEMU's own callers use (ram_block_attributes_create/_destroy/
 * _state_change and the ram_discard_manager_* calls), with up to
 * RIG_H_SLOTS listeners whose callbacks call one hook.
 *
 * Every entry point brackets its work with rig_h_enter()/rig_h_leave(): they
 * make this manager's report log and block size the stub layer's current
 * ones and count the call depth, restoring the caller's on the way out, so
 * nested calls from hooks (and several managers in one process) work.
 *
 * Register's result.  The hardened port returns it.  QEMU's (10.1, 2026)
 * return void: then the result is 0 when the code under test reported no
 * error at this call's depth (errors of nested calls made by hooks are
 * theirs), else the return of the first failing notify_populate of the
 * registering slot made at this depth, which is its replay's (-EIO if an
 * error was reported and no such populate failed: the file reported an
 * error this harness cannot attribute).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qemu/error-report.h"
#include "system/memory.h"
#include "system/ramblock.h"
#include "rig-stubs.h"
#include "harness.h"

#define RIG_H_MAX_DEPTH 256

typedef struct RigHSlot {
    RamDiscardListener rdl;
    RigH *h;
    int slot;
    bool registered;
} RigHSlot;

/* What one register call at a depth saw: the first failing replay populate. */
typedef struct RigHFrame {
    int slot;        /* the registering slot, -1 when no register runs here */
    int fail_ret;
} RigHFrame;

struct RigH {
    MemoryRegion mr;
    RAMBlock rb;
    RamBlockAttributes *attr;
    uint64_t block_size;
    rig_h_hook_fn hook;
    RigHSlot slots[RIG_H_SLOTS];
    RigStubLog log;
    int depth;
    RigHFrame frames[RIG_H_MAX_DEPTH + 1];
};

typedef struct RigHSaved {
    RigStubLog *log;
    uintptr_t page_size;
} RigHSaved;

static RigHSaved rig_h_enter(RigH *h)
{
    RigHSaved saved = { rig_stub_log, rig_stub_host_page_size };

    if (h->depth >= RIG_H_MAX_DEPTH) {
        rig_stub_assert_failed(__FILE__, __LINE__, __func__,
                               "harness calls nested deeper than 256");
    }
    h->depth++;
    h->log.depth = h->depth;
    h->frames[h->depth].slot = -1;
    h->frames[h->depth].fail_ret = 0;
    rig_stub_log = &h->log;
    rig_stub_host_page_size = (uintptr_t)h->block_size;
    return saved;
}

static void rig_h_leave(RigH *h, RigHSaved saved)
{
    h->depth--;
    h->log.depth = h->depth;
    rig_stub_log = saved.log;
    rig_stub_host_page_size = saved.page_size;
}

const char *rig_h_flavour(void)
{
#if defined(RIG_QEMU_FLAVOUR_10_1)
    return "10.1";
#elif defined(RIG_QEMU_FLAVOUR_2026)
    return "2026";
#else
    return "hardened";
#endif
}

static RamDiscardManager *rig_h_rdm(RigH *h)
{
    return memory_region_get_ram_discard_manager(&h->mr);
}

/* The listener list the code under test walks (the manager's own). */
static RamDiscardListener *rig_h_first_listener(RigH *h)
{
#if RIG_RDM_INTERFACE
    return QLIST_FIRST(&h->attr->rdl_list);
#else
    return QLIST_FIRST(&rig_h_rdm(h)->rdl_list);
#endif
}

static int rig_h_notify_populate(RamDiscardListener *rdl,
                                 RIG_NOTIFY_SECTION *section)
{
    RigHSlot *s = container_of(rdl, RigHSlot, rdl);
    RigH *h = s->h;
    int depth = h->depth;
    int ret = 0;

    if (h->hook) {
        ret = h->hook(s->slot, RIG_H_EVENT_POPULATE,
                      section->offset_within_region,
                      int128_get64(section->size),
                      section->offset_within_address_space);
    }
    if (ret && h->frames[depth].slot == s->slot && !h->frames[depth].fail_ret) {
        h->frames[depth].fail_ret = ret;
    }
    return ret;
}

static void rig_h_notify_discard(RamDiscardListener *rdl,
                                 RIG_NOTIFY_SECTION *section)
{
    RigHSlot *s = container_of(rdl, RigHSlot, rdl);
    RigH *h = s->h;

    if (h->hook) {
        h->hook(s->slot, RIG_H_EVENT_DISCARD, section->offset_within_region,
                int128_get64(section->size),
                section->offset_within_address_space);
    }
}

RigH *rig_h_create(uint64_t region_size, uint64_t block_size)
{
    RigH *h;
    RigHSaved saved;
    int i;

    if (!block_size || (block_size & (block_size - 1)) || !region_size ||
        region_size % block_size) {
        return NULL;
    }
    h = g_new0(RigH, 1);
    h->block_size = block_size;
    h->mr.ram = true;
    h->mr.size = int128_make64(region_size);
    h->mr.name = "rig-ram";
    h->rb.mr = &h->mr;
    h->rb.used_length = region_size;
    h->rb.max_length = region_size;
    for (i = 0; i < RIG_H_SLOTS; i++) {
        h->slots[i].h = h;
        h->slots[i].slot = i;
        h->slots[i].rdl.notify_populate = rig_h_notify_populate;
        h->slots[i].rdl.notify_discard = rig_h_notify_discard;
    }
    saved = rig_h_enter(h);
    h->attr = ram_block_attributes_create(&h->rb);
    rig_h_leave(h, saved);
    if (!h->attr) {
        rig_stub_log_clear(&h->log);
        g_free(h);
        return NULL;
    }
    h->rb.attributes = h->attr;
    return h;
}

/*
 * Drops the manager without telling its listeners (as the core's destroy
 * does): the slots still registered are unlinked by hand first, so that
 * neither 10.1's destroy nor 2026's del_source walks them.
 */
void rig_h_destroy(RigH *h)
{
    RigHSaved saved;
    RamDiscardManager *rdm;
    int i;

    if (!h) {
        return;
    }
    saved = rig_h_enter(h);
    rdm = rig_h_rdm(h);
    for (i = 0; i < RIG_H_SLOTS; i++) {
        RigHSlot *s = &h->slots[i];

        if (s->registered) {
            if (QLIST_IS_INSERTED(&s->rdl, next)) {
                QLIST_REMOVE(&s->rdl, next);
            }
            memory_region_section_free_copy(s->rdl.section);
            s->rdl.section = NULL;
            s->registered = false;
#if !RIG_RDM_INTERFACE
            object_unref(rdm); /* the reference its register took */
#endif
        }
    }
    ram_block_attributes_destroy(h->attr);
#if !RIG_RDM_INTERFACE
    /* patchew's memory.c keeps the manager once its last source is gone. */
    h->mr.rdm = NULL;
    object_unref(rdm);
#else
    (void)rdm;
#endif
    h->attr = NULL;
    rig_h_leave(h, saved);
    rig_stub_log_clear(&h->log);
    g_free(h);
}

void rig_h_set_hook(RigH *h, rig_h_hook_fn hook)
{
    h->hook = hook;
}

static MemoryRegionSection rig_h_section(RigH *h, uint64_t offset,
                                         uint64_t size, uint64_t oas)
{
    MemoryRegionSection s = {
        .size = int128_make64(size),
        .mr = &h->mr,
        .offset_within_region = offset,
        .offset_within_address_space = oas,
    };
    return s;
}

/* -EINVAL: no such slot; -EBUSY: the slot is registered.  Callers check
 * the section themselves (QEMU's callers pass sections of the region). */
int rig_h_register(RigH *h, int slot, bool double_discard_supported,
                   uint64_t offset, uint64_t size, uint64_t oas)
{
    MemoryRegionSection section = rig_h_section(h, offset, size, oas);
    RigHSaved saved;
    RigHSlot *s;
    int ret = 0;

    if (slot < 0 || slot >= RIG_H_SLOTS) {
        return -EINVAL;
    }
    s = &h->slots[slot];
    if (s->registered) {
        return -EBUSY;
    }
    s->rdl.double_discard_supported = double_discard_supported;
    s->registered = true;
    saved = rig_h_enter(h);
    {
        size_t errors_before = h->log.count;
        int depth = h->depth;
        size_t i;

        h->frames[depth].slot = slot;
#if defined(RIG_QEMU_FLAVOUR_HARDENED)
        ret = ram_discard_manager_register_listener(rig_h_rdm(h), &s->rdl,
                                                    &section);
#else
        ram_discard_manager_register_listener(rig_h_rdm(h), &s->rdl,
                                              &section);
        for (i = errors_before; i < h->log.count; i++) {
            if (h->log.entries[i].depth == depth &&
                h->log.entries[i].kind == RIG_REPORT_ERROR) {
                ret = h->frames[depth].fail_ret ? h->frames[depth].fail_ret
                                                : -EIO;
                break;
            }
        }
#endif
        (void)errors_before;
        (void)i;
        h->frames[depth].slot = -1;
    }
    rig_h_leave(h, saved);
    return ret;
}

/* -EINVAL: no such slot; -ENOENT: not registered. */
int rig_h_unregister(RigH *h, int slot)
{
    RigHSaved saved;
    RigHSlot *s;

    if (slot < 0 || slot >= RIG_H_SLOTS) {
        return -EINVAL;
    }
    s = &h->slots[slot];
    if (!s->registered) {
        return -ENOENT;
    }
    saved = rig_h_enter(h);
    ram_discard_manager_unregister_listener(rig_h_rdm(h), &s->rdl);
    s->registered = false;
    rig_h_leave(h, saved);
    return 0;
}

int rig_h_state_change(RigH *h, uint64_t offset, uint64_t size,
                       bool to_discard)
{
    RigHSaved saved = rig_h_enter(h);
    int ret = ram_block_attributes_state_change(h->attr, offset, size,
                                                to_discard);

    rig_h_leave(h, saved);
    return ret;
}

int rig_h_is_populated(RigH *h, uint64_t offset, uint64_t size, uint64_t oas)
{
    MemoryRegionSection section = rig_h_section(h, offset, size, oas);
    RigHSaved saved = rig_h_enter(h);
    bool ret = ram_discard_manager_is_populated(rig_h_rdm(h), &section);

    rig_h_leave(h, saved);
    return ret;
}

static int rig_h_replay_cb(RIG_NOTIFY_SECTION *section, void *opaque)
{
    rig_h_replay_fn fn = *(rig_h_replay_fn *)opaque;

    return fn(section->offset_within_region, int128_get64(section->size),
              section->offset_within_address_space);
}

int rig_h_replay(RigH *h, bool populated, uint64_t offset, uint64_t size,
                 uint64_t oas, rig_h_replay_fn fn)
{
    MemoryRegionSection section = rig_h_section(h, offset, size, oas);
    RigHSaved saved = rig_h_enter(h);
    int ret;

    if (populated) {
        ret = ram_discard_manager_replay_populated(rig_h_rdm(h), &section,
                                                   rig_h_replay_cb, &fn);
    } else {
        ret = ram_discard_manager_replay_discarded(rig_h_rdm(h), &section,
                                                   rig_h_replay_cb, &fn);
    }
    rig_h_leave(h, saved);
    return ret;
}

/* The listener list in notification order, as slot numbers; a listener
 * that is not one of this harness's slots is -1.  Returns the list's
 * length (which may exceed @max: only @max are written). */
int rig_h_listeners(RigH *h, int *out, int max)
{
    RamDiscardListener *rdl;
    int n = 0;

    for (rdl = rig_h_first_listener(h); rdl; rdl = QLIST_NEXT(rdl, next)) {
        int slot = -1;
        int i;

        for (i = 0; i < RIG_H_SLOTS; i++) {
            if (rdl == &h->slots[i].rdl) {
                slot = i;
                break;
            }
        }
        if (n < max) {
            out[n] = slot;
        }
        if (++n > RIG_H_SLOTS) {
            break; /* a cycle: the list is corrupt; the caller sees > 8 */
        }
    }
    return n;
}

const unsigned long *rig_h_bitmap(RigH *h, uint64_t *nbits)
{
    *nbits = h->attr->bitmap_size;
    return h->attr->bitmap;
}

size_t rig_h_report_count(RigH *h)
{
    return h->log.count;
}

/* Report @index: its kind (rig-stubs.h RIG_REPORT_*), exit's status and the
 * message (owned by the log).  -ENOENT past the end. */
int rig_h_report(RigH *h, size_t index, int *kind, int *status,
                 const char **message)
{
    if (index >= h->log.count) {
        return -ENOENT;
    }
    *kind = h->log.entries[index].kind;
    *status = h->log.entries[index].status;
    *message = h->log.entries[index].message;
    return 0;
}

size_t rig_h_error_count(RigH *h)
{
    return h->log.errors;
}

size_t rig_h_exit_count(RigH *h)
{
    return h->log.exits;
}

const char *rig_h_last_error(RigH *h)
{
    size_t i;

    for (i = h->log.count; i > 0; i--) {
        if (h->log.entries[i - 1].kind == RIG_REPORT_ERROR) {
            return h->log.entries[i - 1].message;
        }
    }
    return NULL;
}

void rig_h_reports_clear(RigH *h)
{
    int depth = h->log.depth;

    rig_stub_log_clear(&h->log);
    h->log.depth = depth;
}
