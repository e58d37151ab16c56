/*
 * gmem-rig port harness: the KVM edge kvm_convert_memory() needs
 * (kvm-stubs.h), over a small simulated machine that mirrors rig.world's
 * (rig/world/kvm.py, host.py and World's ram_block_discard_* and
 * kvm_set_memory_attributes), so that rig/drive/portworld.py can compare
 * the C port with the hardened design call for call.
 *
 * What a "call" of a fault site is, here and in rig.world alike (the fault
 * schedule counts them per op, from 1):
 *  - kvm.set_memory_attributes: a KVM_SET_MEMORY_ATTRIBUTES that passed the
 *    kernel's checks (aligned, non-empty, no wrap, at most 64 GiB) and
 *    would change at least one page; a call that finds every page already
 *    so returns 0 and is not counted;
 *  - memfd.punch_hole: a ram_block_discard_range() whose offset and length
 *    are multiples of the block's page size;
 *  - gmem.punch_hole: a ram_block_discard_guest_memfd_range() whose offset
 *    and length are 4 KiB aligned.
 * A failing KVM call changes nothing; a failing punch first punches the
 * fault's first `partial` pages (at most the call's), then returns.
 *
 * Guest-physical addresses outside the span of the RAM blocks (from the
 * first block's base to the last one's end, gaps included) have no
 * attribute here: a KVM call that would change one fails with -ERANGE and
 * is logged, so a port that calls KVM outside RAM (the hardened design
 * never does) shows up as a divergence.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qemu/error-report.h"
#include "system/memory.h"
#include "system/ramblock.h"
#include "rig-stubs.h"
#include "harness.h"
#include "kvm/kvm-stubs.h"

#define RIG_K_PAGE 4096ULL
#define RIG_K_MAX_RAM 4
#define RIG_K_MAX_FAULTS 16
#define RIG_K_ATTRIBUTES_MAX (1ULL << 36)
/* Where a block's shared memory is mapped in the host (never dereferenced:
 * the pointers only carry the block and the offset, as QEMU's do). */
#define RIG_K_HOST_BASE 0x7f0000000000ULL
#define RIG_K_HOST_STRIDE 0x10000000000ULL

typedef struct RigKRam {
    RAMBlock *rb;
    MemoryRegion *mr;
    uint64_t gpa;
    uint64_t size;
    uint64_t memfd_page_size;
    uint8_t *memfd;     /* one byte per memfd page: backed */
    uint8_t *gmem;      /* one byte per 4 KiB page: backed */
} RigKRam;

typedef struct RigKFault {
    int site;
    int errno_neg;
    unsigned nth;
    unsigned count;
    unsigned partial;
} RigKFault;

static struct {
    RigKRam ram[RIG_K_MAX_RAM];
    int nram;
    uint64_t span_lo, span_hi;      /* gpa span with attributes */
    uint8_t *private;               /* one byte per 4 KiB page of the span */
    RigKFault faults[RIG_K_MAX_FAULTS];
    int nfaults;
    unsigned hits[RIG_KVM_SITES];
    RigKvmLogEntry *log;
    size_t nlog, caplog;
    int refs;
    uint64_t host_page_size;
    RigStubLog reports;             /* error_report() during a conversion */
} rig_k;

static MemoryRegion rig_k_system_memory;

/* -- the log ----------------------------------------------------------------- */

static RigKvmLogEntry *rig_k_log_add(int kind)
{
    RigKvmLogEntry *e;

    if (rig_k.nlog == rig_k.caplog) {
        size_t cap = rig_k.caplog ? rig_k.caplog * 2 : 64;
        RigKvmLogEntry *grown = realloc(rig_k.log, cap * sizeof(*grown));

        if (!grown) {
            abort();
        }
        rig_k.log = grown;
        rig_k.caplog = cap;
    }
    e = &rig_k.log[rig_k.nlog++];
    memset(e, 0, sizeof(*e));
    e->kind = kind;
    e->block = -1;
    e->file = -1;
    e->site = -1;
    e->what = "";
    return e;
}

size_t rig_k_log_count(void)
{
    return rig_k.nlog;
}

const RigKvmLogEntry *rig_k_log(void)
{
    return rig_k.log;
}

void rig_k_log_clear(void)
{
    rig_k.nlog = 0;
}

/* -- the machine ------------------------------------------------------------- */

void rig_k_reset(uint64_t host_page_size)
{
    int i;

    for (i = 0; i < rig_k.nram; i++) {
        free(rig_k.ram[i].memfd);
        free(rig_k.ram[i].gmem);
    }
    free(rig_k.private);
    free(rig_k.log);
    rig_stub_log_clear(&rig_k.reports);
    memset(&rig_k, 0, sizeof(rig_k));
    rig_k.host_page_size = host_page_size;
    rig_k_system_memory.name = "system";
    rig_k_system_memory.size = int128_2_64();
}

static RigKRam *rig_k_ram_of(RAMBlock *rb)
{
    int i;

    for (i = 0; i < rig_k.nram; i++) {
        if (rig_k.ram[i].rb == rb) {
            return &rig_k.ram[i];
        }
    }
    g_assert(!"a RAMBlock the harness does not know");
    return NULL;
}

int rig_k_add_ram(RigH *h, uint64_t gpa, uint64_t memfd_page_size)
{
    /*
     * harness.h keeps RigH opaque; its MemoryRegion is its first member,
     * and through it the manager and its RAMBlock are found the way QEMU
     * finds them (mr->rdm, attr->ram_block).  Checked against what
     * harness.c itself reports, so a change of its layout is an assertion
     * here rather than a wild pointer.
     */
    MemoryRegion *mr = (MemoryRegion *)h;
    RamBlockAttributes *attr;
    uint64_t nbits, size, old_lo, old_pages, pages, i;
    RigKRam *ram;
    uint8_t *private;

    if (!h || rig_k.nram == RIG_K_MAX_RAM || !memfd_page_size ||
        gpa % memfd_page_size || gpa % RIG_K_PAGE) {
        return -EINVAL;
    }
    attr = RAM_BLOCK_ATTRIBUTES(mr->rdm);
    g_assert(attr && attr->ram_block && attr->ram_block->mr == mr &&
             rig_h_bitmap(h, &nbits) == attr->bitmap);
    size = memory_region_size(mr);
    if (size % memfd_page_size ||
        (rig_k.nram && gpa < rig_k.span_hi) || gpa + size < gpa) {
        return -EINVAL;
    }
    ram = &rig_k.ram[rig_k.nram];
    ram->rb = attr->ram_block;
    ram->mr = mr;
    ram->gpa = gpa;
    ram->size = size;
    ram->memfd_page_size = memfd_page_size;
    ram->memfd = calloc(size / memfd_page_size, 1);
    ram->gmem = calloc(size / RIG_K_PAGE, 1);

    /* Widen the attribute span; the gap below the new block is shared. */
    old_lo = rig_k.nram ? rig_k.span_lo : gpa;
    old_pages = rig_k.nram ? (rig_k.span_hi - rig_k.span_lo) / RIG_K_PAGE : 0;
    pages = (gpa + size - old_lo) / RIG_K_PAGE;
    private = calloc(pages, 1);
    if (!ram->memfd || !ram->gmem || !private) {
        abort();
    }
    if (old_pages) {
        memcpy(private, rig_k.private, old_pages);
    }
    for (i = (gpa - old_lo) / RIG_K_PAGE; i < pages; i++) {
        private[i] = 1;
    }
    free(rig_k.private);
    rig_k.private = private;
    rig_k.span_lo = old_lo;
    rig_k.span_hi = gpa + size;
    return rig_k.nram++;
}

void rig_k_begin_op(void)
{
    memset(rig_k.hits, 0, sizeof(rig_k.hits));
    rig_k.nfaults = 0;
}

int rig_k_fault(int site, int errno_neg, unsigned nth, unsigned count,
                unsigned partial)
{
    RigKFault *f;

    if (site < 0 || site >= RIG_KVM_SITES || errno_neg >= 0 || !nth ||
        !count || rig_k.nfaults == RIG_K_MAX_FAULTS) {
        return -EINVAL;
    }
    f = &rig_k.faults[rig_k.nfaults++];
    f->site = site;
    f->errno_neg = errno_neg;
    f->nth = nth;
    f->count = count;
    f->partial = partial;
    return 0;
}

/* A counted call of @site, whose work is @units pages: the injected error
 * (and *partial, the pages to do first), or 0. */
static int rig_k_hit(int site, uint64_t units, uint64_t *partial)
{
    unsigned nth = ++rig_k.hits[site];
    RigKvmLogEntry *e;
    int i;

    *partial = 0;
    for (i = 0; i < rig_k.nfaults; i++) {
        const RigKFault *f = &rig_k.faults[i];

        if (f->site == site && f->nth <= nth && nth - f->nth < f->count) {
            if (site != RIG_KVM_SITE_SET_ATTRIBUTES) {
                *partial = MIN(units, (uint64_t)f->partial);
            }
            e = rig_k_log_add(RIG_KVM_LOG_HIT);
            e->site = site;
            e->nth = nth;
            e->ret = f->errno_neg;
            e->partial = (unsigned)*partial;
            return f->errno_neg;
        }
    }
    e = rig_k_log_add(RIG_KVM_LOG_HIT);
    e->site = site;
    e->nth = nth;
    return 0;
}

static bool rig_k_in_span(uint64_t gpa)
{
    return rig_k.nram && gpa >= rig_k.span_lo && gpa < rig_k.span_hi;
}

bool kvm_memory_attributes_is_private(hwaddr gpa)
{
    return rig_k_in_span(gpa) &&
           rig_k.private[(gpa - rig_k.span_lo) / RIG_K_PAGE];
}

static int rig_k_set_attributes(hwaddr start, uint64_t size, bool to_private)
{
    uint64_t partial, gpa;
    bool have = true;
    int ret = 0;

    if (!size || start + size < start || start % RIG_K_PAGE ||
        size % RIG_K_PAGE) {
        return -EINVAL;
    }
    if (size > RIG_K_ATTRIBUTES_MAX) {
        return -ENOMEM;
    }
    for (gpa = start; gpa < start + size && have; gpa += RIG_K_PAGE) {
        have = kvm_memory_attributes_is_private(gpa) == to_private;
    }
    if (have) {
        return 0;
    }
    ret = rig_k_hit(RIG_KVM_SITE_SET_ATTRIBUTES, 1, &partial);
    if (ret) {
        return ret;
    }
    for (gpa = start; gpa < start + size; gpa += RIG_K_PAGE) {
        if (!rig_k_in_span(gpa) && to_private) {
            return -ERANGE;
        }
    }
    for (gpa = start; gpa < start + size; gpa += RIG_K_PAGE) {
        if (rig_k_in_span(gpa)) {
            rig_k.private[(gpa - rig_k.span_lo) / RIG_K_PAGE] = to_private;
        }
    }
    return 0;
}

static int rig_k_set_attributes_logged(hwaddr start, uint64_t size,
                                       bool to_private)
{
    int ret = rig_k_set_attributes(start, size, to_private);
    RigKvmLogEntry *e = rig_k_log_add(RIG_KVM_LOG_SET);

    e->start = start;
    e->size = size;
    e->private = to_private;
    e->ret = ret;
    return ret;
}

int kvm_set_memory_attributes_private(hwaddr start, uint64_t size)
{
    return rig_k_set_attributes_logged(start, size, true);
}

int kvm_set_memory_attributes_shared(hwaddr start, uint64_t size)
{
    return rig_k_set_attributes_logged(start, size, false);
}

/* fallocate(PUNCH_HOLE) of [offset, offset + length) of one file. */
static int rig_k_punch(RigKRam *ram, int file, int site, uint64_t offset,
                       uint64_t length)
{
    const uint64_t page = file == RIG_KVM_FILE_MEMFD ? ram->memfd_page_size
                                                     : RIG_K_PAGE;
    uint8_t *backed = file == RIG_KVM_FILE_MEMFD ? ram->memfd : ram->gmem;
    const uint64_t npages = ram->size / page;
    uint64_t partial, index, done = 0;
    int ret = rig_k_hit(site, DIV_ROUND_UP(length, page), &partial);

    if (!length) {
        return ret;
    }
    for (index = offset / page; index <= (offset + length - 1) / page;
         index++) {
        if (ret && done >= partial) {
            break;
        }
        if (index < npages) {
            backed[index] = 0;
        }
        done++;
    }
    return ret;
}

static int rig_k_discard_logged(RAMBlock *rb, int file, uint64_t start,
                                size_t length)
{
    RigKRam *ram = rig_k_ram_of(rb);
    const uint64_t page = file == RIG_KVM_FILE_MEMFD ? ram->memfd_page_size
                                                     : RIG_K_PAGE;
    RigKvmLogEntry *e;
    int ret;

    if (start % page || length % page) {
        ret = -EINVAL;
    } else {
        ret = rig_k_punch(ram, file, file == RIG_KVM_FILE_MEMFD ?
                          RIG_KVM_SITE_MEMFD_PUNCH : RIG_KVM_SITE_GMEM_PUNCH,
                          start, length);
    }
    e = rig_k_log_add(RIG_KVM_LOG_DISCARD);
    e->file = file;
    e->block = (int)(ram - rig_k.ram);
    e->start = start;
    e->size = length;
    e->ret = ret;
    return ret;
}

int ram_block_discard_range(RAMBlock *rb, uint64_t start, size_t length)
{
    return rig_k_discard_logged(rb, RIG_KVM_FILE_MEMFD, start, length);
}

int ram_block_discard_guest_memfd_range(RAMBlock *rb, uint64_t start,
                                        size_t length)
{
    return rig_k_discard_logged(rb, RIG_KVM_FILE_GMEM, start, length);
}

bool ram_block_shared_page_present(RAMBlock *rb, ram_addr_t offset)
{
    RigKRam *ram = rig_k_ram_of(rb);

    return offset < ram->size && ram->memfd[offset / ram->memfd_page_size];
}

/* -- the address space --------------------------------------------------------- */

MemoryRegion *get_system_memory(void)
{
    return &rig_k_system_memory;
}

MemoryRegionSection memory_region_find(MemoryRegion *mr, hwaddr addr,
                                       uint64_t size)
{
    const Int128 end = int128_add(int128_make64(addr), int128_make64(size));
    MemoryRegionSection ret = { .size = int128_zero() };
    int i;

    g_assert(mr == &rig_k_system_memory);
    for (i = 0; i < rig_k.nram; i++) {
        const RigKRam *ram = &rig_k.ram[i];
        const Int128 ram_end = int128_make64(ram->gpa + ram->size);
        uint64_t from;

        if (!int128_lt(int128_make64(ram->gpa), end) ||
            !int128_lt(int128_make64(addr), ram_end)) {
            continue;
        }
        from = MAX(addr, ram->gpa);
        ret.mr = ram->mr;
        ret.offset_within_region = from - ram->gpa;
        ret.offset_within_address_space = from;
        ret.size = int128_sub(int128_min(end, ram_end), int128_make64(from));
        rig_k.refs++;
        break;
    }
    return ret;
}

void memory_region_unref(MemoryRegion *mr)
{
    g_assert(mr && rig_k.refs > 0);
    rig_k.refs--;
}

int rig_k_refs(void)
{
    return rig_k.refs;
}

void *memory_region_get_ram_ptr(MemoryRegion *mr)
{
    int i;

    for (i = 0; i < rig_k.nram; i++) {
        if (rig_k.ram[i].mr == mr) {
            return (void *)(uintptr_t)(RIG_K_HOST_BASE +
                                       (uint64_t)i * RIG_K_HOST_STRIDE);
        }
    }
    g_assert(!"memory_region_get_ram_ptr of a region that is not RAM");
    return NULL;
}

RAMBlock *qemu_ram_block_from_host(void *ptr, bool round_offset,
                                   ram_addr_t *offset)
{
    const uint64_t host = (uint64_t)(uintptr_t)ptr;
    uint64_t index;

    (void)round_offset;
    if (host < RIG_K_HOST_BASE) {
        return NULL;
    }
    index = (host - RIG_K_HOST_BASE) / RIG_K_HOST_STRIDE;
    if (index >= (uint64_t)rig_k.nram ||
        (host - RIG_K_HOST_BASE) % RIG_K_HOST_STRIDE >= rig_k.ram[index].size) {
        return NULL;
    }
    *offset = (host - RIG_K_HOST_BASE) % RIG_K_HOST_STRIDE;
    return rig_k.ram[index].rb;
}

size_t qemu_ram_pagesize(RAMBlock *rb)
{
    return rig_k_ram_of(rb)->memfd_page_size;
}

/* -- trace points ----------------------------------------------------------------- */

void trace_kvm_convert_memory(uint64_t start, uint64_t size, const char *msg)
{
    (void)start;
    (void)size;
    (void)msg;
}

void trace_kvm_convert_memory_retry(const char *what, int attempt, int ret)
{
    RigKvmLogEntry *e = rig_k_log_add(RIG_KVM_LOG_RETRY);

    e->what = what;
    e->attempt = attempt;
    e->ret = ret;
}

void trace_kvm_convert_memory_give_up(const char *what, uint64_t start,
                                      uint64_t size, int ret)
{
    RigKvmLogEntry *e = rig_k_log_add(RIG_KVM_LOG_GIVE_UP);

    e->what = what;
    e->start = start;
    e->size = size;
    e->ret = ret;
}

/* -- the entry points -------------------------------------------------------------- */

int rig_k_convert(uint64_t start, uint64_t size, bool to_private)
{
    RigStubLog *log = rig_stub_log;
    uintptr_t page_size = rig_stub_host_page_size;
    int ret;

    /* The conversion's own reports go to this harness's log, not to the
     * last manager's; a hook's nested rig_h_* call switches to its own. */
    rig_stub_log = &rig_k.reports;
    rig_stub_host_page_size = (uintptr_t)rig_k.host_page_size;
    ret = kvm_convert_memory(start, size, to_private);
    rig_stub_log = log;
    rig_stub_host_page_size = page_size;
    rig_stub_log_clear(&rig_k.reports);
    return ret;
}

int rig_k_touch(uint64_t gpa)
{
    int i;

    for (i = 0; i < rig_k.nram; i++) {
        RigKRam *ram = &rig_k.ram[i];
        uint64_t offset;

        if (gpa < ram->gpa || gpa - ram->gpa >= ram->size) {
            continue;
        }
        offset = (gpa - ram->gpa) / RIG_K_PAGE * RIG_K_PAGE;
        if (kvm_memory_attributes_is_private(gpa)) {
            ram->gmem[offset / RIG_K_PAGE] = 1;
        } else {
            ram->memfd[offset / ram->memfd_page_size] = 1;
        }
        return 0;
    }
    return -EFAULT;
}

long rig_k_file_pages(int block, int file, uint8_t *out, size_t max)
{
    const RigKRam *ram;
    uint64_t pages;

    if (block < 0 || block >= rig_k.nram ||
        (file != RIG_KVM_FILE_MEMFD && file != RIG_KVM_FILE_GMEM)) {
        return -EINVAL;
    }
    ram = &rig_k.ram[block];
    pages = ram->size / (file == RIG_KVM_FILE_MEMFD ? ram->memfd_page_size
                                                    : RIG_K_PAGE);
    if (pages > max) {
        return -EINVAL;
    }
    memcpy(out, file == RIG_KVM_FILE_MEMFD ? ram->memfd : ram->gmem, pages);
    return (long)pages;
}

void rig_k_private_pages(uint64_t gpa, uint64_t npages, uint8_t *out)
{
    uint64_t i;

    for (i = 0; i < npages; i++) {
        out[i] = kvm_memory_attributes_is_private(gpa + i * RIG_K_PAGE);
    }
}
