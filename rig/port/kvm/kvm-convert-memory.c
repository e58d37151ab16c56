/*
 * QEMU KVM support: kvm_convert_memory(), hardened
 *
 * The shared <-> private conversion of accel/kvm/kvm-all.c, as gmem-rig's
 * "hardened" design proves it (rig/world/designs/hardened.py is its
 * executable specification, on top of the state manager's full rollback,
 * rig/port/ram-block-attributes.c).  Written in kvm-all.c's style so that
 * it can replace kvm_convert_memory() there; rig/drive/portworld.py
 * differential-tests it against the design on a simulated machine.
 *
 * What it changes against QEMU 10.1 (each marked "Hardening:" below):
 *  - the whole range is validated before anything changes: every piece of
 *    it must be RAM and block-aligned, and a range crossing two RAM blocks
 *    is converted block by block (10.1 passed the unclipped size to the
 *    state manager, which refused it after KVM's attributes had changed);
 *  - a failed state change is undone completely: the blocks converted
 *    before it are converted back and KVM's attributes are restored page
 *    run by page run to exactly what they were (10.1 left them changed);
 *  - every undo step and the final discard are retried, a bounded number
 *    of times (punching a hole and setting an attribute are idempotent),
 *    and a step that still fails is given up on visibly.
 * The design's last rule, that a failure goes back to the guest instead of
 * stopping the VM, belongs to kvm_convert_memory()'s caller (kvm_cpu_exec()),
 * which is not ported here: after this function a failed conversion has
 * left nothing to stop the VM for.
 *
 * A replacement for kvm_convert_memory() of QEMU's accel/kvm/kvm-all.c
 * (Copyright IBM, Corp. 2008 and Red Hat, Inc. 2008, and its other
 * authors), written by the gmem-rig authors.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/error-report.h"
#include "system/memory.h"
#include "system/ramblock.h"
#include "kvm/kvm-stubs.h"

/*
 * Hardening: how often an idempotent undo step (an attribute restore, a
 * hole punch) is tried before the conversion gives up on it.  A transient
 * -ENOMEM or -EINTR clears within a few attempts; one that outlasts eight is
 * not transient, and retrying forever would hang the vCPU.
 */
#define KVM_CONVERT_MEMORY_RETRIES 8

/* One per RAM block the range covers. */
typedef struct KVMConvertPiece {
    RAMBlock *rb;
    RamBlockAttributes *attr;
    ram_addr_t offset;          /* in the RAM block */
    uint64_t size;
    hwaddr start;               /* guest-physical */
    unsigned long *populated;   /* the block's bitmap before the change */
} KVMConvertPiece;

typedef enum KVMConvertStepKind {
    KVM_CONVERT_SET_ATTRIBUTES,
    KVM_CONVERT_DISCARD_SHARED,
    KVM_CONVERT_DISCARD_PRIVATE,
} KVMConvertStepKind;

/* An idempotent step, retried by kvm_convert_memory_retry(). */
typedef struct KVMConvertStep {
    KVMConvertStepKind kind;
    RAMBlock *rb;
    uint64_t start;             /* gpa (attributes) or offset in rb */
    uint64_t size;
    bool to_private;
} KVMConvertStep;

static int kvm_set_memory_attributes_to(hwaddr start, uint64_t size,
                                        bool to_private)
{
    if (to_private) {
        return kvm_set_memory_attributes_private(start, size);
    }
    return kvm_set_memory_attributes_shared(start, size);
}

static int kvm_convert_memory_step(const KVMConvertStep *step)
{
    switch (step->kind) {
    case KVM_CONVERT_SET_ATTRIBUTES:
        return kvm_set_memory_attributes_to(step->start, step->size,
                                            step->to_private);
    case KVM_CONVERT_DISCARD_SHARED:
        return ram_block_discard_range(step->rb, step->start, step->size);
    case KVM_CONVERT_DISCARD_PRIVATE:
        return ram_block_discard_guest_memfd_range(step->rb, step->start,
                                                   step->size);
    }
    g_assert_not_reached();
}

/*
 * Hardening: run @step until it succeeds, at most KVM_CONVERT_MEMORY_RETRIES
 * times.  If it never does, give up on it, say so (@gpa/@size: what it
 * covers, guest-physical) and return its last error; the caller carries on
 * with the rest of its undo, since leaving one run behind is better than
 * leaving all of them.
 */
static int kvm_convert_memory_retry(const char *what,
                                    const KVMConvertStep *step,
                                    hwaddr gpa, uint64_t size)
{
    int attempt;
    int ret = 0;

    for (attempt = 1; attempt <= KVM_CONVERT_MEMORY_RETRIES; attempt++) {
        ret = kvm_convert_memory_step(step);
        if (!ret) {
            return 0;
        }
        trace_kvm_convert_memory_retry(what, attempt, ret);
    }
    trace_kvm_convert_memory_give_up(what, gpa, size, ret);
    error_report("%s: gave up on %s of 0x%" PRIx64 "+0x%" PRIx64 ": %s",
                 __func__, what, gpa, size, strerror(-ret));
    return ret;
}

static void kvm_convert_memory_free_pieces(KVMConvertPiece *pieces,
                                           unsigned npieces)
{
    unsigned i;

    for (i = 0; i < npieces; i++) {
        g_free(pieces[i].populated);
        memory_region_unref(pieces[i].rb->mr);
    }
    g_free(pieces);
}

/*
 * Hardening: the per-RAM-block pieces of [start, start + size), each with a
 * reference on its region.  Returns how many there are; *covered is how
 * much of the range they cover (less than @size: part of it is not RAM).
 * 10.1 looked up the first piece only and converted @size bytes of it.
 */
static unsigned kvm_convert_memory_find_pieces(hwaddr start, hwaddr size,
                                               KVMConvertPiece **out,
                                               uint64_t *covered)
{
    const Int128 end = int128_add(int128_make64(start), int128_make64(size));
    KVMConvertPiece *pieces = NULL;
    unsigned npieces = 0;
    Int128 at = int128_make64(start);

    *covered = 0;
    while (int128_lt(at, end) && int128_lt(at, int128_2_64())) {
        MemoryRegionSection section;
        ram_addr_t offset;
        KVMConvertPiece *piece;
        void *addr;

        section = memory_region_find(get_system_memory(), int128_get64(at),
                                     int128_get64(int128_sub(end, at)));
        if (!section.mr) {
            break;
        }
        if (!(npieces & (npieces - 1))) {
            /* grow at 1, 2, 4, ... pieces */
            KVMConvertPiece *grown = g_new(KVMConvertPiece,
                                           npieces ? npieces * 2 : 1);

            if (npieces) {
                memcpy(grown, pieces, npieces * sizeof(*pieces));
            }
            g_free(pieces);
            pieces = grown;
        }
        piece = &pieces[npieces++];
        addr = memory_region_get_ram_ptr(section.mr) +
               section.offset_within_region;
        piece->rb = qemu_ram_block_from_host(addr, false, &offset);
        piece->attr = RAM_BLOCK_ATTRIBUTES(section.mr->rdm);
        piece->offset = offset;
        piece->size = int128_get64(section.size);
        piece->start = section.offset_within_address_space;
        piece->populated = NULL;
        *covered += piece->size;
        at = int128_add(int128_make64(piece->start), section.size);
    }
    *out = pieces;
    return npieces;
}

/* A copy of @attr's bitmap (bitmap_size bits). */
static unsigned long *kvm_convert_memory_save_bitmap(RamBlockAttributes *attr)
{
    unsigned long *copy = bitmap_new(attr->bitmap_size);

    memcpy(copy, attr->bitmap,
           BITS_TO_LONGS(attr->bitmap_size) * sizeof(unsigned long));
    return copy;
}

/*
 * Hardening: discard, newest block first, every block of @piece's RAM block
 * that is populated now and was not before this conversion.  Only a block
 * that this conversion already converted to shared needs it: the state
 * manager rolled back the failing block itself, and a discard cannot fail.
 */
static void kvm_convert_memory_discard_new_bits(KVMConvertPiece *piece)
{
    RamBlockAttributes *attr = piece->attr;
    const size_t block_size = qemu_real_host_page_size();
    unsigned long bit;

    for (bit = attr->bitmap_size; bit-- > 0;) {
        if (test_bit(bit, attr->bitmap) && !test_bit(bit, piece->populated)) {
            ram_block_attributes_state_change(attr, bit * block_size,
                                              block_size, true);
        }
    }
}

/*
 * Hardening: put KVM's attributes of [start, start + npages pages) back to
 * @saved, one KVM_SET_MEMORY_ATTRIBUTES per run of pages that were alike
 * (each call is all or nothing), every run retried.  10.1 left the whole
 * range converted in KVM while the state manager said otherwise.
 */
static void kvm_convert_memory_restore_attributes(hwaddr start,
                                                  const bool *saved,
                                                  uint64_t npages)
{
    const size_t page_size = qemu_real_host_page_size();
    uint64_t i = 0;

    while (i < npages) {
        KVMConvertStep step = { .kind = KVM_CONVERT_SET_ATTRIBUTES };
        uint64_t j = i;

        while (j < npages && saved[j] == saved[i]) {
            j++;
        }
        step.start = start + i * page_size;
        step.size = (j - i) * page_size;
        step.to_private = saved[i];
        kvm_convert_memory_retry("kvm attribute restore", &step, step.start,
                                 step.size);
        i = j;
    }
}

/*
 * Hardening: a failed conversion to shared may have left shared (memfd)
 * pages behind for pages that were private before it (a listener pinning
 * them faults them in); free them again, or the guest's memory is backed
 * twice.  Not for hugetlb-backed shared memory, which is never discarded.
 */
static void kvm_convert_memory_discard_holes(KVMConvertPiece *pieces,
                                             unsigned npieces,
                                             hwaddr start, const bool *saved,
                                             uint64_t npages)
{
    const size_t page_size = qemu_real_host_page_size();
    unsigned p = 0;
    uint64_t i;

    for (i = 0; i < npages; i++) {
        const hwaddr gpa = start + i * page_size;
        KVMConvertStep step = { .kind = KVM_CONVERT_DISCARD_SHARED };

        while (p < npieces && gpa >= pieces[p].start + pieces[p].size) {
            p++;
        }
        if (!saved[i] || p == npieces ||
            qemu_ram_pagesize(pieces[p].rb) != page_size) {
            continue;
        }
        step.rb = pieces[p].rb;
        step.start = pieces[p].offset + (gpa - pieces[p].start);
        step.size = page_size;
        if (ram_block_shared_page_present(step.rb, step.start)) {
            kvm_convert_memory_retry("discard", &step, gpa, page_size);
        }
    }
}

/*
 * Free the side @piece no longer uses: the shared memfd after a conversion
 * to private (not hugetlb: that memory is preallocated), guest_memfd after a
 * conversion to shared.  Hardening: retried, and last: nothing after it can
 * fail, so the conversion itself has succeeded whatever this returns.
 */
static void kvm_convert_memory_discard_unused(KVMConvertPiece *piece,
                                              bool to_private)
{
    KVMConvertStep step = {
        .kind = to_private ? KVM_CONVERT_DISCARD_SHARED
                           : KVM_CONVERT_DISCARD_PRIVATE,
        .rb = piece->rb,
        .start = piece->offset,
        .size = piece->size,
    };

    if (to_private &&
        qemu_ram_pagesize(piece->rb) != qemu_real_host_page_size()) {
        return;
    }
    kvm_convert_memory_retry("discard", &step, piece->start, piece->size);
}

int kvm_convert_memory(hwaddr start, hwaddr size, bool to_private)
{
    const size_t page_size = qemu_real_host_page_size();
    KVMConvertPiece *pieces;
    unsigned npieces, i;
    uint64_t covered, npages, page;
    bool *saved;
    int ret = -EINVAL;

    trace_kvm_convert_memory(start, size, to_private ? "shared_to_private" :
                                                       "private_to_shared");

    if (!QEMU_IS_ALIGNED(start, page_size) ||
        !QEMU_IS_ALIGNED(size, page_size) || !size) {
        return ret;
    }

    npieces = kvm_convert_memory_find_pieces(start, size, &pieces, &covered);
    if (!npieces) {
        /*
         * Ignore converting a non-assigned region to shared (OVMF converts
         * the MMIO hole); converting it to private is an error.
         */
        g_free(pieces);
        return to_private ? ret : 0;
    }

    /*
     * Hardening: refuse the whole range before changing anything if any of
     * it is not RAM (a gap between blocks, past the last one, a wrap past
     * 2^64) or a piece is not a whole number of the state manager's blocks.
     */
    if (covered != size ||
        int128_gt(int128_add(int128_make64(start), int128_make64(size)),
                  int128_2_64())) {
        goto out;
    }
    for (i = 0; i < npieces; i++) {
        if (!QEMU_IS_ALIGNED(pieces[i].offset, page_size) ||
            !QEMU_IS_ALIGNED(pieces[i].size, page_size)) {
            goto out;
        }
    }

    /*
     * Hardening: what a failure must restore: KVM's attribute of each page
     * and each block's populated bits.
     */
    npages = size / page_size;
    saved = g_new(bool, npages);
    for (page = 0; page < npages; page++) {
        saved[page] = kvm_memory_attributes_is_private(start +
                                                       page * page_size);
    }
    for (i = 0; i < npieces; i++) {
        pieces[i].populated = kvm_convert_memory_save_bitmap(pieces[i].attr);
    }

    ret = kvm_set_memory_attributes_to(start, size, to_private);
    if (ret) {
        /* All or nothing: nothing changed. */
        goto out_saved;
    }

    for (i = 0; i < npieces; i++) {
        ret = ram_block_attributes_state_change(pieces[i].attr,
                                                pieces[i].offset,
                                                pieces[i].size, to_private);
        if (ret) {
            /*
             * Hardening: only a populate fails, and the state manager rolled
             * back its own block (listeners and bitmap); convert the blocks
             * done before it back, newest first, then KVM's attributes.
             */
            error_report("Failed to notify the listener the state change of "
                         "(0x%" PRIx64 " + 0x%" PRIx64 ") to %s",
                         start, size, to_private ? "private" : "shared");
            while (i-- > 0) {
                kvm_convert_memory_discard_new_bits(&pieces[i]);
            }
            kvm_convert_memory_restore_attributes(start, saved, npages);
            if (!to_private) {
                kvm_convert_memory_discard_holes(pieces, npieces, start, saved,
                                                 npages);
            }
            goto out_saved;
        }
    }

    for (i = 0; i < npieces; i++) {
        kvm_convert_memory_discard_unused(&pieces[i], to_private);
    }
    ret = 0;

out_saved:
    g_free(saved);
out:
    kvm_convert_memory_free_pieces(pieces, npieces);
    return ret;
}
