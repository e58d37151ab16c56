"""Cython core: bitmap, RamBlockAttributes, VFIO listener and the fake IOMMU.

Each module is a ``.pxd`` header (structs and cdef signatures) plus a ``.pyx``
implementation, written so that it reads like the QEMU/Linux C it mirrors.

RIG_NATIVE_DIR points at an instrumented build of these modules (rig/native.py): it is
searched first, so a fuzz harness imports the clang/-fsanitize=fuzzer-no-link modules
while everything else keeps the plain build.
"""

import os as _os

if _os.environ.get("RIG_NATIVE_DIR"):
    __path__.insert(0, _os.environ["RIG_NATIVE_DIR"])  # noqa: F821 (package __path__)
