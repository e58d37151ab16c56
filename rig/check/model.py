"""The reference model: the core's semantics in the plainest Python there is.

A set of shared blocks instead of a bitmap, a dict of mappings instead of a page table,
per-block loops instead of word scans, and no cleverness anywhere: this is the executable
spec the Cython core and its pure-Python twin are differential-tested against after every
operation.  It reads docs/semantics.md 2.2, 2.4, 2.5 and 2.6 line by line; when it
disagrees with a backend, the backend is wrong until shown otherwise.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort

from rig.core.types import IommuMapping, MemoryRegionSection
from rig.errors import EEXIST, EFAULT, EINVAL, ENOENT, ENOMEM, ENOSPC, EOVERFLOW, EPERM

U64 = 1 << 64


def intersect(section: MemoryRegionSection, offset: int, size: int):
    """memory_region_section_intersect_range(): ends compared as unbounded ints (QEMU's
    Int128); the address-space offset is a uint64 hwaddr and wraps mod 2^64."""
    start = max(section.offset_within_region, offset)
    end = min(section.offset_within_region + section.size, offset + size)
    if end <= start:
        return None
    return MemoryRegionSection(start, end - start, (section.offset_within_address_space
                                                    + start - section.offset_within_region) % U64)


class ModelRamBlockAttributes:
    """docs/semantics.md 2.2.  Listeners: any objects with notify_populate/notify_discard.

    The listener list is a plain Python list of (listener, section), newest first, and
    every walk over it follows the rule of QEMU's QLIST_FOREACH, stated directly
    instead of by pointers: *after a callback returns, the next listener is the one
    that follows the current listener in the list as it is now; if the current
    listener is no longer in the list, the walk ends* (QLIST_REMOVE sets its next to
    NULL).  So removing another listener is safe, one inserted at the head is not
    visited, and a rollback walk that does not meet the failing listener runs to the end.
    """

    def __init__(self, region_size: int, block_size: int, rollback: str = "none"):
        self.region_size = region_size
        self.block_size = block_size
        self.rollback = rollback
        self.shared: set[int] = set()
        self.entries: list = []  # [listener, section], newest first

    def listeners(self) -> list:
        return [rdl for rdl, _ in self.entries]

    def is_valid_range(self, offset: int, size: int) -> bool:
        bs = self.block_size
        return (offset % bs == 0 and size % bs == 0 and size > 0
                and offset + size < U64 and offset + size <= self.region_size)

    def blocks(self, offset: int, size: int) -> list[int]:
        return list(range(offset // self.block_size, (offset + size) // self.block_size))

    def is_populated(self, section) -> bool:
        """Blocks offset // bs .. + size // bs, all shared.  No blocks: True, except at
        block 0, where the C's unsigned last_bit wraps.  Past the region's end: False."""
        first, count = section[0] // self.block_size, section[1] // self.block_size
        if count == 0:
            return first != 0
        if first + count > self.region_size // self.block_size:
            return False
        return all(b in self.shared for b in range(first, first + count))

    def position(self, rdl):
        """Where ``rdl`` is in the list now (None: not registered)."""
        for i, (r, _) in enumerate(self.entries):
            if r is rdl:
                return i
        return None

    def walk(self):
        """QLIST_FOREACH over the live list: yields (listener, its section now)."""
        i = 0
        while i < len(self.entries):
            rdl, section = self.entries[i]
            yield rdl, section
            i = self.position(rdl)
            if i is None:
                return
            i += 1

    def notify_populate(self, offset: int, size: int) -> int:
        ret, failing = 0, None
        for rdl, section in self.walk():
            part = intersect(section, offset, size)
            if part is None:
                continue
            ret = rdl.notify_populate(part)
            if ret:
                failing = rdl
                break
        if ret and self.rollback != "none":
            # From the head up to the failing listener; "sources" includes it.
            for rdl, section in self.walk():
                if rdl is failing and self.rollback != "sources":
                    break
                part = intersect(section, offset, size)
                if part is not None:
                    rdl.notify_discard(part)
                if rdl is failing:
                    break
        return ret

    def notify_discard(self, offset: int, size: int) -> None:
        for rdl, section in self.walk():
            part = intersect(section, offset, size)
            if part is not None:
                rdl.notify_discard(part)

    def state_change(self, offset: int, size: int, to_discard: bool) -> int:
        if not self.is_valid_range(offset, size):
            return -EINVAL
        bs = self.block_size
        blocks = self.blocks(offset, size)
        shared_now = [b for b in blocks if b in self.shared]
        private_now = [b for b in blocks if b not in self.shared]
        if to_discard:
            if not shared_now:
                return 0
            if not private_now:
                self.shared -= set(blocks)
                self.notify_discard(offset, size)
                return 0
            # Block by block, on the live state: a listener may convert blocks meanwhile.
            for b in blocks:
                if b in self.shared:
                    self.shared.discard(b)
                    self.notify_discard(b * bs, bs)
            return 0
        if not private_now:
            return 0
        if not shared_now:
            self.shared |= set(blocks)
            ret = self.notify_populate(offset, size)
            if ret and self.rollback == "full":
                self.shared -= set(blocks)
            return ret
        done = []
        for b in blocks:
            if b in self.shared:
                continue
            self.shared.add(b)
            ret = self.notify_populate(b * bs, bs)
            if ret:
                if self.rollback == "full":
                    self.shared.discard(b)
                    for d in reversed(done):
                        if d in self.shared:  # not already undone by a nested call
                            self.shared.discard(d)
                            self.notify_discard(d * bs, bs)
                return ret
            done.append(b)
        return 0

    def for_each(self, section, shared: bool, fn) -> int:
        """Walk runs of shared (or private) blocks from the section's first block, as QEMU
        does: each run is found on the *live* state (a listener may convert blocks while
        it is told), and the next search starts two blocks after the run's last block,
        the one after it having been seen in the other state."""
        bs = self.block_size
        n = self.region_size // bs
        b = section[0] // bs
        while True:
            while b < n and (b in self.shared) != shared:
                b += 1
            if b >= n:
                return 0
            first = b
            while b < n and (b in self.shared) == shared:
                b += 1
            last = b - 1
            part = intersect(MemoryRegionSection(*section), first * bs, (last - first + 1) * bs)
            if part is None:
                return 0
            ret = fn(part)
            if ret:
                return ret
            b = last + 2

    def register_listener(self, rdl, section) -> int:
        if any(r is rdl for r, _ in self.entries) or getattr(rdl, "section", None) is not None:
            return -EINVAL
        if not self.is_valid_range(section[0], section[1]):
            return -EINVAL
        section = MemoryRegionSection(*section)
        self.entries.insert(0, (rdl, section))
        rdl.section = section
        return self.for_each(section, True, rdl.notify_populate)

    def unregister_listener(self, rdl) -> int:
        i = self.position(rdl)
        if i is None:
            return -ENOENT
        section = self.entries[i][1]
        if getattr(rdl, "double_discard_supported", False) or self.rollback != "none":
            rdl.notify_discard(section)  # the 2026 managers: always the whole section
        else:
            self.for_each(section, True, lambda part: rdl.notify_discard(part) or 0)
        i = self.position(rdl)  # the callback may have changed the list
        if i is not None:
            del self.entries[i]
            rdl.section = None
        return 0

    def replay_populated(self, section, fn) -> int:
        return self.for_each(section, True, fn)

    def replay_discarded(self, section, fn) -> int:
        return self.for_each(section, False, fn)


class ModelIommu:
    """docs/semantics.md 2.5 (``kind="type1"``) and 2.6 (``kind="iommufd"``), with a plain
    dict, and its keys in order (``starts``) so that a lookup is a bisection: a world's
    shadow holds one mapping per shared page, and a scan of them all per map or per
    translated page made a large world quadratic."""

    #: the host kernel's PAGE_SIZE: iommufd checks uptr and bounds length in host pages
    HOST_PAGE_SIZE = 0x1000

    def __init__(self, kind: str, dma_entry_limit: int = 65535, pgsize: int = 0x1000,
                 iova_ranges=None, memlock_limit: int | None = None):
        self.kind = kind
        self.pgsize = pgsize
        self.dma_entry_limit = dma_entry_limit
        self.iova_ranges = list(iova_ranges or [(0, U64 - 1)])
        self.memlock_limit = memlock_limit
        self.maps: dict[int, IommuMapping] = {}
        self.starts: list[int] = []  # sorted(self.maps)
        self.pinner = None
        self.fault_hook = None
        self.enoent_is_success = kind == "iommufd"
        self.site_map = "vfio.dma_map" if kind == "type1" else "iommufd.ioas_map"
        self.site_unmap = "vfio.dma_unmap" if kind == "type1" else "iommufd.ioas_unmap"

    def _fault(self, site: str):
        """(errno, partial progress or None); errno 0 when no fault is injected."""
        if self.fault_hook is None:
            return 0, None
        answer = self.fault_hook(site)
        return answer if isinstance(answer, tuple) else (answer, None)

    @property
    def count(self) -> int:
        return len(self.maps)

    @property
    def dma_avail(self) -> int:
        if self.kind != "type1":
            raise AttributeError("iommufd has no dma_avail")
        return self.dma_entry_limit - len(self.maps)

    @property
    def locked_vm(self) -> int:
        return sum(len(m.frames) for m in self.maps.values())

    def mappings(self) -> list[IommuMapping]:
        return [self.maps[k] for k in self.starts]

    def _touching(self, iova: int, last: int) -> list[IommuMapping]:
        """The mappings with a byte in [iova, last], ascending (mappings never overlap)."""
        i = bisect_right(self.starts, iova) - 1
        if i < 0 or self.maps[self.starts[i]].iova + self.maps[self.starts[i]].size <= iova:
            i += 1
        return [self.maps[k] for k in self.starts[i:bisect_right(self.starts, last)]]

    def find(self, iova: int):
        i = bisect_right(self.starts, iova) - 1
        if i >= 0:
            m = self.maps[self.starts[i]]
            if m.iova <= iova < m.iova + m.size:
                return m
        return None

    def translate(self, iova: int, write: bool = False) -> int:
        m = self.find(iova)
        if m is None:
            return -EFAULT
        if write and m.readonly:
            return -EPERM
        return m.frames[(iova - m.iova) // self.pgsize]

    def _overlaps(self, iova: int, size: int) -> bool:
        if size == 0:  # (never asked: a size 0 is refused first)
            m = self.find(iova)
            return m is not None and m.iova < iova
        return bool(self._touching(iova, iova + size - 1))

    def _check_map_type1(self, iova: int, size: int, va: int) -> int:
        """vfio_dma_do_map(), in order."""
        pg = self.pgsize
        if size == 0 or size % pg or iova % pg or va % pg:
            return -EINVAL
        if iova + size > U64 or va + size > U64:
            return -EINVAL
        if self._overlaps(iova, size):
            return -EEXIST
        if self.dma_avail == 0:
            return -ENOSPC
        if not any(s <= iova and iova + size - 1 <= e for s, e in self.iova_ranges):
            return -EINVAL
        return 0

    def _check_map_iommufd(self, iova: int, size: int, va: int) -> int:
        """IOMMU_IOAS_MAP, in order: iommufd_ioas_map() (iova or length >= ULONG_MAX),
        iopt_alloc_user_pages() (uptr + length overflows; an end at 2^64 does),
        iopt_alloc_pages() (length 0 or > SIZE_MAX - PAGE_SIZE), iopt_alloc_area_pages()
        (length alignment), iopt_check_iova() (iova alignment, iova overflow, overlap),
        iopt_insert_area() (uptr's offset in its host page)."""
        pg = self.pgsize
        if iova >= U64 - 1 or size >= U64 - 1:
            return -EOVERFLOW
        if va + size >= U64:
            return -EOVERFLOW
        if size == 0 or size > U64 - 1 - self.HOST_PAGE_SIZE:
            return -EINVAL
        if size % pg:
            return -EINVAL
        if iova % pg:
            return -EINVAL
        if iova + size > U64:
            return -EOVERFLOW
        if self._overlaps(iova, size):
            return -EEXIST
        if va % pg:  # iopt_insert_area() (for pgsize > 4 KiB: iommu_map() at fill time)
            return -EINVAL
        return 0

    def map_dma(self, iova: int, size: int, vaddr, readonly: bool = False) -> int:
        pg = self.pgsize
        va = vaddr if isinstance(vaddr, int) else 0
        check = self._check_map_type1 if self.kind == "type1" else self._check_map_iommufd
        ret = check(iova, size, va)
        if ret:
            return ret
        ret, _ = self._fault(self.site_map)
        if ret:
            return ret
        # Pin first, then account RLIMIT_MEMLOCK (vfio_pin_pages_remote(); iommufd's
        # pfn_reader then incr_user_locked_vm()): a pin error wins over -ENOMEM, and
        # -ENOMEM puts back the pins it took.
        npages = size // pg
        over = self.memlock_limit is not None and \
            (self.locked_vm + npages) * pg > self.memlock_limit
        if isinstance(vaddr, int) and self.pinner is not None:
            frames = self.pinner.pin_pages(vaddr, npages)
            if isinstance(frames, int):
                return frames
            if over:
                self.pinner.unpin_pages(tuple(frames))
                return -ENOMEM
        elif over:
            return -ENOMEM
        elif isinstance(vaddr, int):
            frames = [vaddr // pg + i for i in range(npages)]
        else:
            frames = list(vaddr)
        self.maps[iova] = IommuMapping(iova, size, tuple(frames), bool(readonly))
        insort(self.starts, iova)
        return 0

    def _drop(self, m: IommuMapping) -> None:
        del self.maps[m.iova]
        del self.starts[bisect_left(self.starts, m.iova)]
        if self.pinner is not None:
            self.pinner.unpin_pages(m.frames)

    def unmap_dma(self, iova: int, size: int) -> int:
        if self.kind == "type1":
            return self._unmap_type1(iova, size)
        return self._unmap_iommufd(iova, size)

    def _unmap_type1(self, iova: int, size: int) -> int:
        pg = self.pgsize
        if iova % pg or size == 0 or size % pg or iova + size > U64:
            return -EINVAL
        end = iova + size
        for m in (self.find(iova), self.find(end)):
            if m is not None and m.iova < iova < m.iova + m.size:
                return -EINVAL  # would bisect at the start
            if m is not None and m.iova < end < m.iova + m.size:
                return -EINVAL  # would bisect at the end
        ret, _ = self._fault(self.site_unmap)
        if ret:
            return ret
        unmapped = 0
        for m in self._touching(iova, end - 1):
            if iova <= m.iova and m.iova + m.size <= iova + size:
                unmapped += m.size
                self._drop(m)
        return unmapped

    def _unmap_iommufd(self, iova: int, size: int) -> int:
        if size == 0:
            return -EINVAL
        if iova + size > U64:
            return -EOVERFLOW
        last = iova + size - 1
        ret, allowed = self._fault(self.site_unmap)
        if ret and allowed is None:
            return ret
        unmapped = 0
        for m in self._touching(iova, last):
            m_last = m.iova + m.size - 1
            if m_last < iova or m.iova > last:
                continue
            if m.iova < iova or m_last > last:
                return -ENOENT
            if ret and allowed == 0:
                break
            if ret:
                allowed -= 1
            unmapped += m.size
            self._drop(m)
        if ret:
            return ret
        return unmapped if unmapped else -ENOENT


class ModelVfioListener:
    """docs/semantics.md 2.4: map per granule, roll back with one unmap of the whole
    section."""

    double_discard_supported = True

    def __init__(self, container, granularity: int, vaddr_base: int = 0, readonly: bool = False):
        self.container = container
        self.granularity = granularity
        self.vaddr_base = vaddr_base
        self.readonly_map = readonly
        self.discard_errors: list = []

    def notify_populate(self, section) -> int:
        """vfio_ram_discard_notify_populate(): chunks aligned within the memory region
        (next = ROUND_UP(start + 1, granularity) on offset_within_region)."""
        start = section.offset_within_region
        end = section.offset_within_region + section.size
        while start < end:
            nxt = min((start // self.granularity + 1) * self.granularity, end)
            iova = (start - section.offset_within_region
                    + section.offset_within_address_space) % U64
            vaddr = (self.vaddr_base + start) % U64
            ret = self.container.map_dma(iova, nxt - start, vaddr, self.readonly_map)
            if ret:
                self.notify_discard(section)
                return ret
            start = nxt
        return 0

    def notify_discard(self, section) -> None:
        ret = self.container.unmap_dma(section.offset_within_address_space, section.size)
        if ret == -ENOENT and self.container.enoent_is_success:
            ret = 0
        if ret < 0:
            self.discard_errors.append((section.offset_within_address_space, section.size, ret))


class ModelBitmapView:
    """The model's shared-block set seen through the Bitmap methods the world reads."""

    def __init__(self, attr: "ModelRamBlockAttributes"):
        self.attr = attr
        self.nbits = attr.region_size // attr.block_size

    def test_bit(self, nr: int) -> bool:
        return nr in self.attr.shared

    def set_bits(self) -> list[int]:
        return sorted(self.attr.shared)

    def count(self) -> int:
        return len(self.attr.shared)


ModelRamBlockAttributes.bitmap = property(lambda self: ModelBitmapView(self))
ModelRamBlockAttributes.get_min_granularity = lambda self: self.block_size
ModelRamBlockAttributes.bitmap_size = property(lambda self: self.region_size // self.block_size)


class ModelRamDiscardListener:
    """Base class for listeners registered with the model (any object would do)."""

    double_discard_supported = False

    def __init__(self):
        self.section = None


def backend():
    """The model as a core backend namespace (same names as rig.core.load_backend), so a
    whole World can run on it beside the real core for the differential check (one
    namespace, built on first use: every shadow world asks for it)."""
    global _BACKEND
    if _BACKEND is None:
        _BACKEND = _backend()
    return _BACKEND


_BACKEND = None


def _backend():
    from types import SimpleNamespace

    return SimpleNamespace(
        name="model",
        RamBlockAttributes=ModelRamBlockAttributes,
        RamDiscardListener=ModelRamDiscardListener,
        VFIORamDiscardListener=ModelVfioListener,
        VfioType1Container=lambda dma_entry_limit=65535, pgsize=0x1000, iova_ranges=None,
        memlock_limit=None: ModelIommu("type1", dma_entry_limit, pgsize, iova_ranges,
                                       memlock_limit),
        IommufdIoas=lambda pgsize=0x1000, memlock_limit=None: ModelIommu(
            "iommufd", 0, pgsize, None, memlock_limit),
        coverage_marks=dict,
        reset_coverage_marks=lambda: None,
    )
