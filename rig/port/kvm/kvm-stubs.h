/*
 * gmem-rig port stub layer: the KVM edge of accel/kvm/kvm-all.c's
 * kvm_convert_memory(), written for the rig (not QEMU's headers; the names
 * and prototypes are QEMU's where QEMU has the function).
 *
 * kvm-harness.c implements all of it over a small simulated machine: RAM
 * blocks at guest-physical bases (each one the RAMBlock + MemoryRegion +
 * RamBlockAttributes of the port's harness, rig/port/harness.c), KVM's
 * per-page private attribute, the shared memfd and the guest_memfd of each
 * block as "page backed" arrays, a log of every call the converter makes
 * to that edge, and a fault schedule.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef RIG_KVM_STUBS_H
#define RIG_KVM_STUBS_H

#include "qemu/osdep.h"
#include "system/memory.h"
#include "system/ramblock.h"
#include "harness.h"

typedef uint64_t ram_addr_t;

/* -- system/memory.c, physmem.c: finding the RAM behind a guest address -- */

/* The system address space: the RAM blocks the harness added, nothing else
 * (no MMIO region: a guest address outside RAM is "not assigned"). */
MemoryRegion *get_system_memory(void);

/*
 * memory_region_find: the lowest RAM block that intersects
 * [addr, addr + size) (compared as Int128: no wrap), as a section clipped
 * to the block, with a reference on its region; .mr is NULL if the range
 * meets no RAM.  QEMU's semantics.
 */
MemoryRegionSection memory_region_find(MemoryRegion *mr, hwaddr addr,
                                       uint64_t size);
void memory_region_unref(MemoryRegion *mr);
void *memory_region_get_ram_ptr(MemoryRegion *mr);
RAMBlock *qemu_ram_block_from_host(void *ptr, bool round_offset,
                                   ram_addr_t *offset);
/* The page size of the block's shared memory (2 MiB: hugetlb). */
size_t qemu_ram_pagesize(RAMBlock *rb);

/* -- KVM_SET_MEMORY_ATTRIBUTES ------------------------------------------- */

/*
 * As the kernel answers: -EINVAL for an unaligned, empty or wrapping range;
 * -ENOMEM for a range over 64 GiB; 0 if every page already has the
 * attribute (the fault schedule is not consulted: no call is counted);
 * otherwise one counted call of the site RIG_KVM_SITE_SET_ATTRIBUTES,
 * which either fails with no change or changes every page.
 */
int kvm_set_memory_attributes_private(hwaddr start, uint64_t size);
int kvm_set_memory_attributes_shared(hwaddr start, uint64_t size);

/*
 * Whether KVM has the page at @gpa private.  The kernel has no ioctl to
 * read attributes back: QEMU's hardened kvm_convert_memory() needs this as
 * a shadow that kvm-all.c keeps of every attribute it set (it is the only
 * writer), so that a failed conversion can put back exactly what was there.
 */
bool kvm_memory_attributes_is_private(hwaddr gpa);

/* -- system/physmem.c: freeing the side a conversion no longer uses -------- */

/* fallocate(PUNCH_HOLE) on the shared memfd: -EINVAL unless @start and
 * @length are multiples of the block's page size; else one counted call of
 * RIG_KVM_SITE_MEMFD_PUNCH (a fault may punch the first k pages first). */
int ram_block_discard_range(RAMBlock *rb, uint64_t start, size_t length);
/* fallocate(PUNCH_HOLE) on guest_memfd: -EINVAL unless 4 KiB aligned (the
 * kernel's check); else one counted call of RIG_KVM_SITE_GMEM_PUNCH. */
int ram_block_discard_guest_memfd_range(RAMBlock *rb, uint64_t start,
                                        size_t length);
/* Whether the shared memfd has a page at @offset (in QEMU: lseek(fd,
 * offset, SEEK_DATA) == offset on the block's memfd). */
bool ram_block_shared_page_present(RAMBlock *rb, ram_addr_t offset);

/* -- accel/kvm/trace-events ------------------------------------------------ */

void trace_kvm_convert_memory(uint64_t start, uint64_t size, const char *msg);
/* A retried step failed again: attempt @attempt (1-based) returned @ret. */
void trace_kvm_convert_memory_retry(const char *what, int attempt, int ret);
/* A retried step gave up on [start, start + size) with @ret. */
void trace_kvm_convert_memory_give_up(const char *what, uint64_t start,
                                      uint64_t size, int ret);

/* -- the function under test (kvm-convert-memory.c) ------------------------ */

int kvm_convert_memory(hwaddr start, hwaddr size, bool to_private);

/* -- the harness's own API, for ctypes (names rig_k_*) --------------------- */

enum {
    RIG_KVM_SITE_SET_ATTRIBUTES = 0,    /* kvm.set_memory_attributes */
    RIG_KVM_SITE_MEMFD_PUNCH = 1,       /* memfd.punch_hole */
    RIG_KVM_SITE_GMEM_PUNCH = 2,        /* gmem.punch_hole */
    RIG_KVM_SITES = 3,
};

enum {
    RIG_KVM_LOG_HIT = 0,        /* a counted call of a site */
    RIG_KVM_LOG_SET = 1,        /* a KVM_SET_MEMORY_ATTRIBUTES call */
    RIG_KVM_LOG_DISCARD = 2,    /* a ram_block_discard_* call */
    RIG_KVM_LOG_RETRY = 3,      /* trace_kvm_convert_memory_retry */
    RIG_KVM_LOG_GIVE_UP = 4,    /* trace_kvm_convert_memory_give_up */
};

enum {
    RIG_KVM_FILE_MEMFD = 0,
    RIG_KVM_FILE_GMEM = 1,
};

/*
 * One log entry.  HIT: site, nth (the call's number within the op), ret
 * (the injected -errno, 0 if none), partial (pages punched first).  SET:
 * start, size, private, ret.  DISCARD: file, block, start (offset in the
 * block), size, ret.  RETRY: what, attempt, ret.  GIVE_UP: what, start,
 * size, ret.
 */
typedef struct RigKvmLogEntry {
    int kind;
    int site;
    int file;
    int block;
    int private;
    int attempt;
    int ret;
    unsigned nth;
    unsigned partial;
    uint64_t start;
    uint64_t size;
    const char *what;
} RigKvmLogEntry;

/* Forget every block, attribute, file page, log entry and fault; the host
 * page size kvm_convert_memory() sees from now on is @host_page_size. */
void rig_k_reset(uint64_t host_page_size);
/* Put the RAM block of @h (a state manager of the port's harness, harness.h)
 * at guest-physical @gpa, its shared memory in pages of @memfd_page_size;
 * blocks are added in ascending, non-overlapping order.  Its pages start
 * private (QEMU sets a guest_memfd memslot private when it creates it) and
 * both files empty.  The block's number, or -EINVAL. */
int rig_k_add_ram(RigH *h, uint64_t gpa, uint64_t memfd_page_size);
/* References memory_region_find() took and memory_region_unref() has not
 * dropped yet (0 between conversions, or the port leaks them). */
int rig_k_refs(void);
/* A new op: the per-op call counts restart at 0 and its faults are cleared. */
void rig_k_begin_op(void);
/* Fail calls @nth .. @nth + @count - 1 of @site within this op with
 * @errno_neg (after @partial pages, for the punch sites).  The first
 * matching fault wins, in the order they were added.  0 or -EINVAL. */
int rig_k_fault(int site, int errno_neg, unsigned nth, unsigned count,
                unsigned partial);
int rig_k_convert(uint64_t start, uint64_t size, bool to_private);
/* A vCPU writes the page at @gpa: its file (guest_memfd if private, else the
 * memfd) gets the page.  0, or -EFAULT outside RAM. */
int rig_k_touch(uint64_t gpa);
/* Which pages @file of block @block has: @out[i] is 1 for its page i (in
 * the file's page size).  The number of pages, or -EINVAL (also when @max is
 * too small: then nothing is written). */
long rig_k_file_pages(int block, int file, uint8_t *out, size_t max);
/* KVM's attribute of @npages 4 KiB pages from @gpa, one byte each. */
void rig_k_private_pages(uint64_t gpa, uint64_t npages, uint8_t *out);
size_t rig_k_log_count(void);
const RigKvmLogEntry *rig_k_log(void);
void rig_k_log_clear(void);

#endif /* RIG_KVM_STUBS_H */
