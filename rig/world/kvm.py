"""KVM memory attributes (docs/semantics.md 2.3, 2.7; Linux virt/kvm/kvm_main.c).

One private bit per guest page (gfn), for any gfn: attributes do not need a memslot.
QEMU sets every guest_memfd-backed memslot private when it creates it, so the world marks
its RAM private at start.

The bits of RAM pages are a set of gfns (``private``: what the oracle and the world read
page by page); the bits of every other gfn, which only a conversion's "already has the
attribute" test ever reads, are kept as runs, so that one call over a range far larger
than RAM costs what the range holds (its RAM pages and the runs it meets), not its size.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from rig.errors import EAGAIN, EINVAL, ENOMEM

KVM_MEMORY_ATTRIBUTE_PRIVATE = 1 << 3
PAGE_SIZE = 0x1000
U64 = 1 << 64
#: The rig answers -ENOMEM for one call over this many bytes (64 GiB), as KVM's up-front
#: xa_reserve() would fail for a gigantic range; it also keeps the model's loops bounded.
ATTRIBUTES_MAX = 1 << 36


class _Runs:
    """Disjoint, non-adjacent gfn runs ``[lo, hi)``, ascending: the private bits outside
    RAM."""

    __slots__ = ("los", "his")

    def __init__(self):
        self.los: list[int] = []
        self.his: list[int] = []

    def __bool__(self) -> bool:
        return bool(self.los)

    def __contains__(self, gfn: int) -> bool:
        i = bisect_right(self.los, gfn) - 1
        return i >= 0 and gfn < self.his[i]

    def covers(self, lo: int, hi: int) -> bool:
        """Every gfn of [lo, hi) is in a run."""
        i = bisect_right(self.los, lo) - 1
        return i >= 0 and hi <= self.his[i]

    def meets(self, lo: int, hi: int) -> bool:
        """Some gfn of [lo, hi) is in a run."""
        i = bisect_left(self.his, lo + 1)  # the first run ending after lo
        return i < len(self.los) and self.los[i] < hi

    def add(self, lo: int, hi: int) -> None:
        i = bisect_left(self.his, lo)      # the first run that ends at or after lo
        j = bisect_right(self.los, hi)     # runs before j start at or before hi
        if i < j:
            lo, hi = min(lo, self.los[i]), max(hi, self.his[j - 1])
        self.los[i:j] = [lo]
        self.his[i:j] = [hi]

    def remove(self, lo: int, hi: int) -> None:
        i = bisect_right(self.his, lo)     # the first run ending after lo
        j = bisect_left(self.los, hi)      # runs before j start before hi
        if i >= j:
            return
        keep_los, keep_his = [], []
        if self.los[i] < lo:
            keep_los.append(self.los[i])
            keep_his.append(lo)
        if self.his[j - 1] > hi:
            keep_los.append(hi)
            keep_his.append(self.his[j - 1])
        self.los[i:j] = keep_los
        self.his[i:j] = keep_his

    def gfns(self) -> list[int]:
        return [g for lo, hi in zip(self.los, self.his) for g in range(lo, hi)]


class Kvm:
    """``ram``: the (gpa, size) of each RAM block, whose pages' bits are kept one by one
    in ``private``; any other gfn's bit is kept in runs."""

    def __init__(self, ram=()):
        self.private: set[int] = set()  # RAM gfns with KVM_MEMORY_ATTRIBUTE_PRIVATE
        self.ram = tuple(sorted((gpa // PAGE_SIZE, (gpa + size) // PAGE_SIZE)
                                for gpa, size in ram))
        self.elsewhere = _Runs()        # every other gfn with the attribute

    def is_private(self, gpa: int) -> bool:
        gfn = gpa // PAGE_SIZE
        if gfn in self.private:
            return True
        return bool(self.elsewhere.los) and gfn in self.elsewhere

    def split(self, lo: int, hi: int) -> tuple[list, list]:
        """The gfn range [lo, hi) as the runs that are RAM and the runs that are not."""
        inside, outside = [], []
        at = lo
        for first, end in self.ram:
            if end <= at:
                continue
            if first >= hi:
                break
            if at < first:
                outside.append((at, first))
            inside.append((max(at, first), min(hi, end)))
            at = min(hi, end)
        if at < hi:
            outside.append((at, hi))
        return inside, outside

    def has_attribute(self, start: int, size: int, private: bool) -> bool:
        """Whether every page of [start, start+size) already is private (``private``) or
        shared: KVM's "nothing to change" case."""
        inside, outside = self.split(start // PAGE_SIZE, (start + size) // PAGE_SIZE)
        have = self.private
        for lo, hi in inside:
            if private and not have.issuperset(range(lo, hi)):
                return False
            if not private and not have.isdisjoint(range(lo, hi)):
                return False
        runs = self.elsewhere
        return all(runs.covers(lo, hi) if private else not runs.meets(lo, hi)
                   for lo, hi in outside)

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
        It is asked about RAM pages only: nothing else can be pinned.
        """
        ret = self.check_range(start, size)
        if ret:
            return ret
        if size > ATTRIBUTES_MAX:
            return -ENOMEM  # xa_reserve() of that many entries fails
        if self.has_attribute(start, size, private):
            return 0
        if fault:
            return fault
        inside, outside = self.split(start // PAGE_SIZE, (start + size) // PAGE_SIZE)
        if private and pinned is not None and any(
                pinned(g * PAGE_SIZE) for lo, hi in inside for g in range(lo, hi)):
            return -EAGAIN
        for lo, hi in inside:
            if private:
                self.private.update(range(lo, hi))
            else:
                self.private.difference_update(range(lo, hi))
        for lo, hi in outside:
            if private:
                self.elsewhere.add(lo, hi)
            else:
                self.elsewhere.remove(lo, hi)
        return 0
