"""Cython core: bitmap, RamBlockAttributes, VFIO listener and the fake IOMMU.

Each module is a ``.pxd`` header (structs and cdef signatures) plus a ``.pyx``
implementation, written so that it reads like the QEMU/Linux C it mirrors.
"""
