/*
 * Crash reports for rig port-check
 *
 * The C under test is real code and may crash.  rig port-check runs it in a child
 * process and installs this handler there: on a fatal signal it writes one line per
 * frame of the stack, "rig-frame <object> 0x<offset>", the offset relative to the
 * object's load address, so that the parent can name the innermost function of the
 * code under test with addr2line (the static functions of ram-block-attributes.c
 * have no dynamic symbols: backtrace_symbols() cannot name them).  Then the signal
 * is raised again with its default action, so the child still dies of it.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static const int rig_crash_signals[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT };

static void rig_crash_handler(int sig)
{
    void *frames[64];
    char line[4096];
    int n = backtrace(frames, 64);
    int i;

    for (i = 0; i < n; i++) {
        Dl_info info;
        int len;

        if (!dladdr(frames[i], &info) || !info.dli_fname) {
            continue;
        }
        /* (a return address points after the call: -1 lands inside it) */
        len = snprintf(line, sizeof(line), "rig-frame %s 0x%lx\n", info.dli_fname,
                       (unsigned long)((uintptr_t)frames[i] - 1 -
                                       (uintptr_t)info.dli_fbase));
        if (len > 0 && write(2, line, (size_t)len < sizeof(line) ? (size_t)len
                                                                 : sizeof(line) - 1) < 0) {
            break;
        }
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

void rig_h_install_crash_handler(void)
{
    static char altstack[1 << 16];
    stack_t ss = { .ss_sp = altstack, .ss_size = sizeof(altstack) };
    void *warm[1];
    size_t i;

    /* backtrace() loads libgcc on its first call: not from inside the handler */
    backtrace(warm, 1);
    sigaltstack(&ss, NULL);  /* a stack overflow still gets its report */
    for (i = 0; i < sizeof(rig_crash_signals) / sizeof(rig_crash_signals[0]); i++) {
        struct sigaction sa;

        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = rig_crash_handler;
        sa.sa_flags = SA_RESETHAND | SA_NODEFER | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        sigaction(rig_crash_signals[i], &sa, NULL);
    }
}
