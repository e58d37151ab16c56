/*
 * gmem-rig port harness: a C API over one RamBlockAttributes state manager
 * (QEMU 10.1's, the 2026 multi-source pair, or the rig's hardened port),
 * for rig/drive/portbuild.py's ctypes adapter.  Every function is prefixed
 * rig_h_ and is re-entrant: a listener hook may call any of them on the
 * same manager (nested register, unregister, state change, replay, query).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef RIG_HARNESS_H
#define RIG_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RIG_H_SLOTS 8
#define RIG_H_EVENT_POPULATE 0
#define RIG_H_EVENT_DISCARD 1

typedef struct RigH RigH;

/* A listener callback: @event 0 populate (the return is notify_populate's),
 * 1 discard (the return is ignored); the section as offset, size and
 * offset_within_address_space. */
typedef int (*rig_h_hook_fn)(int slot, int event, uint64_t offset,
                             uint64_t size, uint64_t oas);
/* A replay callback: one run of the section; non-zero stops the replay. */
typedef int (*rig_h_replay_fn)(uint64_t offset, uint64_t size, uint64_t oas);

const char *rig_h_flavour(void);
/* crash-report.c: on a fatal signal, the stack's frames to stderr ("rig-frame OBJECT
 * 0xOFFSET" lines), then the signal's default action. */
void rig_h_install_crash_handler(void);
RigH *rig_h_create(uint64_t region_size, uint64_t block_size);
void rig_h_destroy(RigH *h);
void rig_h_set_hook(RigH *h, rig_h_hook_fn hook);
int rig_h_register(RigH *h, int slot, bool double_discard_supported,
                   uint64_t offset, uint64_t size, uint64_t oas);
int rig_h_unregister(RigH *h, int slot);
int rig_h_state_change(RigH *h, uint64_t offset, uint64_t size,
                       bool to_discard);
int rig_h_is_populated(RigH *h, uint64_t offset, uint64_t size, uint64_t oas);
int rig_h_replay(RigH *h, bool populated, uint64_t offset, uint64_t size,
                 uint64_t oas, rig_h_replay_fn fn);
int rig_h_listeners(RigH *h, int *out, int max);
const unsigned long *rig_h_bitmap(RigH *h, uint64_t *nbits);
size_t rig_h_report_count(RigH *h);
int rig_h_report(RigH *h, size_t index, int *kind, int *status,
                 const char **message);
size_t rig_h_error_count(RigH *h);
size_t rig_h_exit_count(RigH *h);
const char *rig_h_last_error(RigH *h);
void rig_h_reports_clear(RigH *h);

#endif
