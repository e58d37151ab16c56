"""Host memory: files of frames (docs/semantics.md 2.7).

Per RAM block a shared memfd and a guest_memfd, each a map page index -> frame.  A frame
has an id (never reused), a pin count and a data tag (what was last written to it).
Touching a hole (guest CPU access, or pinning by the IOMMU) allocates a new frame.
``punch_hole`` (fallocate PUNCH_HOLE|KEEP_SIZE) drops the file's frames: a frame still
pinned is not freed but *leaked*; the file gets a fresh frame on the next touch.  That is
the stale-mapping bug in one sentence.

All of it is deterministic: frame ids come from one counter in allocation order.
"""

from __future__ import annotations

from dataclasses import dataclass

from rig.errors import EINVAL

PAGE_SIZE = 0x1000
HUGE_PAGE_SIZE = 0x200000


def kvm_gmem_fallocate(offset: int, length: int) -> int:
    """The argument check of guest_memfd's fallocate (virt/kvm/guest_memfd.c
    kvm_gmem_fallocate()), before kvm_gmem_punch_hole() runs:
    ``!PAGE_ALIGNED(offset) || !PAGE_ALIGNED(len)`` -> -EINVAL, nothing punched.
    (A memfd, shmem_fallocate(), would zero the partial pages instead; QEMU never asks
    it to: ram_block_discard_range() checks the alignment itself.)"""
    if offset % PAGE_SIZE or length % PAGE_SIZE:
        return -EINVAL
    return 0


@dataclass
class Frame:
    id: int
    file: "HostFile | None"  # None once the file dropped it
    index: int               # page index in that file (meaningful while file is set)
    pins: int = 0
    data: int = 0            # tag of the last write (0: zero-filled)

    @property
    def dropped(self) -> bool:
        return self.file is None

    def state(self) -> tuple:
        return (self.id, self.file.name if self.file else None, self.index, self.pins, self.data)


class FrameTable:
    """All frames ever allocated, by id; ids start at 1 and are never reused."""

    def __init__(self):
        self.frames: dict[int, Frame] = {}
        self.next_id = 1
        self.freed = 0

    def alloc(self, file: "HostFile", index: int) -> Frame:
        frame = Frame(self.next_id, file, index)
        self.frames[frame.id] = frame
        self.next_id += 1
        return frame

    def release(self, frame: Frame) -> None:
        """Free a frame nobody holds any more (dropped by its file, no pins)."""
        if frame.file is None and frame.pins == 0:
            del self.frames[frame.id]
            self.freed += 1

    def leaked(self) -> list[Frame]:
        """Frames their file dropped but the IOMMU still pins."""
        return [f for f in self.frames.values() if f.file is None and f.pins > 0]


class HostFile:
    """A memfd or guest_memfd of ``size`` bytes with pages of ``page_size``."""

    def __init__(self, name: str, size: int, page_size: int, table: FrameTable):
        self.name = name
        self.size = size
        self.page_size = page_size
        self.table = table
        self.pages: dict[int, Frame] = {}

    def frame_at(self, offset: int) -> Frame | None:
        return self.pages.get(offset // self.page_size)

    def touch(self, offset: int) -> Frame:
        """The frame backing ``offset``, allocated (zero-filled) if it is a hole."""
        index = offset // self.page_size
        frame = self.pages.get(index)
        if frame is None:
            frame = self.table.alloc(self, index)
            self.pages[index] = frame
        return frame

    def punch_hole(self, offset: int, size: int, limit_pages: int | None = None) -> int:
        """fallocate(PUNCH_HOLE|KEEP_SIZE) of ``[offset, offset+size)``.

        Drops every frame in the range in ascending order (at most ``limit_pages`` pages,
        for injected partial punches).  Returns the number of pages processed.
        """
        first = offset // self.page_size
        last = (offset + size - 1) // self.page_size
        done = 0
        for index in range(first, last + 1):
            if limit_pages is not None and done >= limit_pages:
                break
            frame = self.pages.pop(index, None)
            if frame is not None:
                frame.file = None
                self.table.release(frame)
            done += 1
        return done

    def backed(self, offset: int) -> bool:
        return (offset // self.page_size) in self.pages

    def state(self) -> tuple:
        return tuple(sorted((i, f.id) for i, f in self.pages.items()))
