/*
 * gmem-rig port stub layer: what qemu-stubs.c shares with harness.c (the
 * report log).  Not a QEMU header.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef RIG_STUBS_H
#define RIG_STUBS_H

enum {
    RIG_REPORT_ERROR = 0,   /* error_report() */
    RIG_REPORT_EXIT = 1,    /* exit(status), recorded instead of exiting */
    RIG_REPORT_WARN = 2,    /* warn_report() */
    RIG_REPORT_INFO = 3,    /* info_report() */
    RIG_REPORT_OOB = 4,     /* a bitmap helper touched a word past the end */
};

typedef struct RigStubReport {
    int kind;
    int status;      /* exit's status, else 0 */
    int depth;       /* the harness call depth the report was made at */
    char *message;
} RigStubReport;

typedef struct RigStubLog {
    RigStubReport *entries;
    size_t count;
    size_t capacity;
    size_t errors;
    size_t exits;
    int depth;       /* set by the harness: its current call depth */
} RigStubLog;

/* Where reports go: the harness points it at the log of the manager it is
 * running (a process-wide log otherwise). */
extern RigStubLog *rig_stub_log;
void rig_stub_log_clear(RigStubLog *log);

#endif
