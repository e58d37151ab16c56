/*
 * gmem-rig port stub layer: qemu/error-report.h.  error_report() does not
 * print: it records the formatted message (qemu-stubs.c keeps the count, the
 * last message and every message in order, and the harness reads them back:
 * rig_h_report_*), because what the code under test reported is part of
 * what the rig compares.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef RIG_QEMU_ERROR_REPORT_H
#define RIG_QEMU_ERROR_REPORT_H

void error_report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void warn_report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void info_report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
