/*
 * gmem-rig port stub layer: in the 2026 tree the RamDiscardManager types
 * have their own header; the stub layer keeps them in system/memory.h.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "system/memory.h"
