/*
 * gmem-rig port stub layer: QEMU before 10.0 named the header exec/memory.h.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "system/memory.h"
