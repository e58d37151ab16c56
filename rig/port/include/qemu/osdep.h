/*
 * gmem-rig port stub layer: the part of QEMU's qemu/osdep.h that
 * system/ram-block-attributes.c and system/ram-discard-manager.c use.
 * Written for the rig (not a copy of QEMU's header); the names are QEMU's so
 * that the upstream files compile unchanged.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * The build passes exactly one flavour macro:
 *   RIG_QEMU_FLAVOUR_10_1      RamDiscardManager is an interface (QEMU 10.1)
 *   RIG_QEMU_FLAVOUR_2026      RamDiscardManager is an object over sources
 *   RIG_QEMU_FLAVOUR_HARDENED  the 10.1 layout, register_listener returns int
 */
#ifndef RIG_QEMU_OSDEP_H
#define RIG_QEMU_OSDEP_H

#if defined(RIG_QEMU_FLAVOUR_10_1) + defined(RIG_QEMU_FLAVOUR_2026) + \
    defined(RIG_QEMU_FLAVOUR_HARDENED) != 1
#error "define exactly one of RIG_QEMU_FLAVOUR_10_1, _2026, _HARDENED"
#endif

/* The 10.1 and hardened layouts: RamDiscardManager is an interface. */
#if defined(RIG_QEMU_FLAVOUR_10_1) || defined(RIG_QEMU_FLAVOUR_HARDENED)
#define RIG_RDM_INTERFACE 1
#else
#define RIG_RDM_INTERFACE 0
#endif

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * exit() is recorded, not fatal: QEMU 10.1 exits the process when a listener
 * refuses the register replay, and the rig wants to see what happens next
 * (the state the manager is left in), so the call returns to its caller.
 */
void rig_stub_exit(int status);
#define exit(status) rig_stub_exit(status)

/* g_assert: a broken assertion is a crash of the code under test (the
 * port-check driver runs it in a child process and reports the line). */
void rig_stub_assert_failed(const char *file, int line, const char *func,
                            const char *expr) __attribute__((noreturn));
#define g_assert(expr)                                                      \
    do {                                                                    \
        if (__builtin_expect(!(expr), 0)) {                                 \
            rig_stub_assert_failed(__FILE__, __LINE__, __func__, #expr);    \
        }                                                                   \
    } while (0)
#define g_assert_not_reached()                                              \
    rig_stub_assert_failed(__FILE__, __LINE__, __func__, "not reached")
#define assert(expr) g_assert(expr)

/* glib's allocators, as QEMU uses them (abort on out of memory). */
void *g_malloc0(size_t size);
void *g_malloc(size_t size);
void g_free(void *ptr);
#define g_new0(type, n) ((type *)g_malloc0(sizeof(type) * (size_t)(n)))
#define g_new(type, n) ((type *)g_malloc(sizeof(type) * (size_t)(n)))

#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif
#ifndef MAX
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#endif
#define QEMU_IS_ALIGNED(n, m) (((n) % (m)) == 0)
#define QEMU_ALIGN_DOWN(n, m) ((n) / (m) * (m))
#define QEMU_ALIGN_UP(n, m) QEMU_ALIGN_DOWN((n) + (m) - 1, (m))
#define ROUND_UP(n, d) QEMU_ALIGN_UP(n, d)
#define DIV_ROUND_UP(n, d) (((n) + (d) - 1) / (d))
#define ARRAY_SIZE(x) (sizeof(x) / sizeof((x)[0]))
#ifndef container_of
#define container_of(ptr, type, member)                                     \
    ((type *)((char *)(ptr) - offsetof(type, member)))
#endif
#define QEMU_BUILD_BUG_ON(x) _Static_assert(!(x), #x)

/*
 * The host page size the state manager tracks in: the harness sets it to the
 * block size of the manager it is driving (it can differ between managers in
 * one process, so the harness sets it on every entry).
 */
extern uintptr_t rig_stub_host_page_size;
static inline uintptr_t qemu_real_host_page_size(void)
{
    return rig_stub_host_page_size;
}

#include "qemu/typedefs.h"
#include "qemu/int128.h"
#include "qemu/queue.h"
#include "qemu/bitops.h"
#include "qemu/bitmap.h"
#include "qom/object.h"

#endif /* RIG_QEMU_OSDEP_H */
