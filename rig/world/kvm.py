"""KVM memory attributes (docs/semantics.md 2.3, 2.7; Linux virt/kvm/kvm_main.c).

One private bit per guest page (gfn), for any gfn: attributes do not need a memslot.
QEMU sets every guest_memfd-backed memslot private when it creates it, so the world marks
its RAM private at start.
"""

from __future__ import annotations

from rig.errors import EAGAIN, EINVAL, ENOMEM

KVM_MEMORY_ATTRIBUTE_PRIVATE = 1 << 3
PAGE_SIZE = 0x1000
U64 = 1 << 64
#: The rig answers -ENOMEM for one call over this many bytes (64 GiB), as KVM's up-front
#: xa_reserve() would fail for a gigantic range; it also keeps the model's loops bounded.
ATTRIBUTES_MAX = 1 << 36


class Kvm:
    def __init__(self):
        self.private: set[int] = set()  # gfns with KVM_MEMORY_ATTRIBUTE_PRIVATE

    def is_private(self, gpa: int) -> bool:
        return gpa // PAGE_SIZE in self.private

    def check_range(self, start: int, size: int, flags: int = 0,
                    attributes: int = KVM_MEMORY_ATTRIBUTE_PRIVATE) -> int:
        """kvm_vm_ioctl_set_mem_attributes() validation: -EINVAL or 0.

        ``attrs->size == 0 || attrs->address + attrs->size < attrs->address`` is u64
        arithmetic: a range ending exactly at 2^64 wraps to 0 and is refused too."""
        if flags or attributes & ~KVM_MEMORY_ATTRIBUTE_PRIVATE:
            return -EINVAL
        if size == 0 or (start + size) % U64 < start:
            return -EINVAL
        if start % PAGE_SIZE or size % PAGE_SIZE:
            return -EINVAL
        return 0

    def set_memory_attributes(self, start: int, size: int, private: bool,
                              fault: int = 0, pinned=None) -> int:
        """KVM_SET_MEMORY_ATTRIBUTES: -EINVAL for bad input; 0 if the whole range already
        has the attribute; otherwise all or nothing (``fault`` is an injected -ENOMEM from
        the up-front xa_reserve, before any change).

        ``pinned(gpa) -> bool``: the in-place variant (KVM_SET_MEMORY_ATTRIBUTES2 on a
        guest_memfd with shared pages) refuses to make a pinned page private: -EAGAIN.
        """
        ret = self.check_range(start, size)
        if ret:
            return ret
        if size > ATTRIBUTES_MAX:
            return -ENOMEM  # xa_reserve() of that many entries fails
        gfns = range(start // PAGE_SIZE, (start + size) // PAGE_SIZE)
        if all((g in self.private) == private for g in gfns):
            return 0
        if fault:
            return fault
        if private and pinned is not None and any(pinned(g * PAGE_SIZE) for g in gfns):
            return -EAGAIN
        if private:
            self.private.update(gfns)
        else:
            self.private.difference_update(gfns)
        return 0

    def state(self) -> tuple:
        return tuple(sorted(self.private))
