"""The oracle: the invariants of docs/semantics.md 4.1, checked after every op.

Each invariant is declared once, by ``@invariant(name, severity=..., doc=...)`` on the
check that reports it; everything else is derived from those declarations: ``INVARIANTS``
(the names, most severe first: what ``# expect:`` lines accept), ``DOC``, the checks that
run after every op (``CHECKS``), ``severity`` (the sort key of a step's violations) and
``rig list``.  Adding an invariant is one decorated check here, plus its row in
tests/world/test_invariants.py.

Severity is an explicit number, lower is more severe, with gaps so that a new invariant
can go between two others.  It picks the headline of an outcome (the first violation of
its op), hence the finding signature and the regression file name (rig/trace/minimize.py):
changing a number renames findings, so numbers, like the names, stay as published.

A check has a *kind*, which says when it runs and what it is given (``KINDS``): most look
at the world after an op; atomic-failure compares the world before and after a failed
conversion, differential compares the world with its shadow on the reference model, and
one double-backing check looks at the VM that an op stopped.  The session calls one entry
point per kind (``check``, ``check_atomic``, ``check_differential``, ``check_after_stop``),
each running every check declared with that kind.

Each check returns Violations whose detail names pages, frames and mappings in hex, so a
report says *what* broke, not just *that* something did.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from operator import attrgetter
from typing import Callable

from rig.errors import ENOMEM, ENOSPC, RIG_BUG
from rig.world.host import PAGE_SIZE
from rig.world.ops import format_result

#: When a check runs, and what the session hands it.
KINDS = {
    "state": "after every op, on the world (check)",
    "atomic": "after a failed conversion, on the world before and after it (check_atomic)",
    "differential": "after every op, on the world and its shadow on the reference model, "
                    "with both results (check_differential)",
    "after-stop": "once, on the op that stopped the VM (check_after_stop)",
}


@dataclass(frozen=True)
class Invariant:
    """One invariant: its ``name`` (reports and ``# expect:`` lines), its ``severity``
    (lower is more severe), what it promises (``doc``), and the ``check`` that reports
    it, of ``kind``.  ``also`` holds further (kind, check) pairs reporting the same
    invariant at another point (double-backing on a stopped VM)."""

    name: str
    severity: int
    doc: str
    check: Callable
    kind: str = "state"
    also: tuple = ()

    @property
    def checks(self) -> tuple:
        """Every (kind, check) that reports this invariant."""
        return ((self.kind, self.check),) + self.also


@dataclass(frozen=True)
class Incremental:
    """A state check (``check``, one of ``CHECKS``), its fast twin ``run(world, view)``
    (exactly ``check(world)``, see "the incremental oracle" below) and, if it has one,
    its ``key(world, view)``."""

    check: Callable
    run: Callable
    key: Callable | None = None

    @property
    def name(self) -> str:
        return self.check.__name__


#: check -> its Incremental, for the checks declared with a twin (``_twin``).
_TWINS: dict = {}


def _as_is(check: Callable) -> Incremental:
    """A check with no twin: it runs as it is, every op."""
    return Incremental(check, lambda world, view: check(world))


def _twin(check: Callable, key: Callable | None = None):
    """Declare the decorated function the fast twin of ``check`` (with ``key``)."""
    def declare(run: Callable) -> Callable:
        global INCREMENTAL
        _TWINS[check] = Incremental(check, run, key)
        INCREMENTAL = tuple(_TWINS.get(fn) or _as_is(fn) for fn in CHECKS)
        return run
    return declare


#: name -> Invariant, in declaration order.
REGISTRY: dict[str, Invariant] = {}

#: Derived from REGISTRY on every declaration (so at import; nothing declares later).
INVARIANTS: tuple[str, ...] = ()     # names, most severe first
DOC: dict[str, str] = {}             # name -> what it promises, most severe first
CHECKS: tuple = ()                   # the "state" checks ``check`` runs after every op
#: CHECKS' Incremental twins, in their order (what ``check_incremental`` runs).
INCREMENTAL: tuple = ()
_BY_KIND: dict[str, tuple] = {}


def _declare(inv: Invariant) -> None:
    global INVARIANTS, DOC, CHECKS, INCREMENTAL, _BY_KIND
    for kind, _ in inv.checks:
        if kind not in KINDS:
            raise ValueError(f"invariant {inv.name!r}: kind {kind!r} is not one of "
                             f"{', '.join(KINDS)}")
    REGISTRY[inv.name] = inv
    ordered = sorted(REGISTRY.values(), key=lambda i: i.severity)
    INVARIANTS = tuple(i.name for i in ordered)
    DOC = {i.name: i.doc for i in ordered}
    by_kind: dict[str, list] = {kind: [] for kind in KINDS}
    for i in ordered:
        for kind, fn in i.checks:
            if fn not in by_kind[kind]:  # one check may report several invariants
                by_kind[kind].append(fn)
    _BY_KIND = {kind: tuple(fns) for kind, fns in by_kind.items()}
    CHECKS = _BY_KIND["state"]
    INCREMENTAL = tuple(_TWINS.get(fn) or _as_is(fn) for fn in CHECKS)


def invariant(name: str, severity: int, doc: str, kind: str = "state"):
    """Declare the invariant ``name``, reported by the decorated check.  A check that
    reports several invariants carries one decorator for each."""
    if name in REGISTRY:
        raise ValueError(f"invariant {name!r} is declared twice")
    taken = {i.severity: i.name for i in REGISTRY.values()}
    if severity in taken:
        # Equal severities would leave the headline to the order of the checks.
        raise ValueError(f"invariant {name!r}: severity {severity} is {taken[severity]!r}'s")

    def declare(fn: Callable) -> Callable:
        _declare(Invariant(name, severity, doc, fn, kind))
        return fn
    return declare


def also_reported(name: str, kind: str):
    """The decorated check reports ``name`` (declared above it) at another point."""
    def declare(fn: Callable) -> Callable:
        inv = REGISTRY[name]
        _declare(replace(inv, also=inv.also + ((kind, fn),)))
        return fn
    return declare


def severity(name: str) -> int:
    """The sort key of a violation of ``name``: lower is more severe."""
    return REGISTRY[name].severity


def sort_key(violation: "Violation") -> int:
    return REGISTRY[violation.invariant].severity


#: How many offending items a detail line lists before "and N more".
DETAIL_ITEMS = 4


@dataclass
class Violation:
    invariant: str
    detail: str
    items: list = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.invariant}: {self.detail}"


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:DETAIL_ITEMS])
    more = len(items) - DETAIL_ITEMS
    return shown + (f", and {more} more" if more > 0 else "")


def _frame_desc(world, frame_id: int) -> str:
    frame = world.frames.frames.get(frame_id)
    if frame is None:
        return f"frame #{frame_id} (freed)"
    if frame.file is None:
        return f"frame #{frame_id} (dropped, {frame.pins} pins)"
    return f"frame #{frame_id} ({frame.file.name}[0x{frame.index * frame.file.page_size:x}])"


@invariant("stale-mapping", severity=10,
           doc="every IOMMU mapping points at the frame that currently backs its guest page")
@invariant("private-dma", severity=20, doc="no IOMMU mapping reaches a private page")
def check_mappings(world) -> list[Violation]:
    """stale-mapping and private-dma, from one walk over the IOMMU's mappings."""
    stale, private = [], []
    inplace = world.design.inplace
    for device, container in world.containers():
        stale_d, private_d = _check_container(world, container, inplace)
        stale += [f"vfio{device.dev}: {item}" for item in stale_d]
        private += [f"vfio{device.dev}: {item}" for item in private_d]
    out = []
    if stale:
        out.append(Violation("stale-mapping", f"{len(stale)} IOMMU page(s) point at a frame "
                             f"that no longer backs the page: {_listing(stale)}", stale))
    if private:
        out.append(Violation("private-dma", f"{len(private)} IOMMU page(s) reach private "
                             f"guest_memfd memory: {_listing(private)}", private))
    return out


def _check_container(world, container, inplace):
    stale, private = [], []
    for mapping in container.mappings():
        for i, frame_id in enumerate(mapping.frames):
            gpa = mapping.iova + i * PAGE_SIZE
            block = world.block_at(gpa)
            if block is None:
                stale.append(f"iova 0x{gpa:x} (not RAM) -> {_frame_desc(world, frame_id)}")
                continue
            current = block.shared_file(inplace).frame_at(gpa - block.gpa)
            if current is None or current.id != frame_id:
                now = f"#{current.id}" if current is not None else "a hole"
                stale.append(f"iova 0x{gpa:x} -> {_frame_desc(world, frame_id)}, "
                             f"page backed by {now}")
            elif not inplace and not world.design.maps_private and world.kvm.is_private(gpa):
                # The frame still backs the shared side, but the guest made the page
                # private: device DMA lands where the guest no longer looks.
                stale.append(f"iova 0x{gpa:x} -> {_frame_desc(world, frame_id)}, "
                             f"page is private")
            frame = world.frames.frames.get(frame_id)
            if (frame is not None and frame.file is block.gmem
                    and world.kvm.is_private(gpa)):
                private.append(f"iova 0x{gpa:x} -> {_frame_desc(world, frame_id)}")
    return stale, private


@invariant("pin-leak", severity=30,
           doc="no frame is pinned after its file dropped it; locked_vm equals the pins")
def check_pins(world) -> list[Violation]:
    """pin-leak: no dropped frame is still pinned; locked_vm equals the pins taken.

    A frame punched while pinned and unpinned later in the same op (memory freed before
    the IOMMU let go of it: a device could reach it in between) is pinned after its file
    dropped it too, if only for a while: the world records each such punch
    (``World.punched_pinned``), and the ones of this op whose frame is no longer leaked
    are reported here."""
    out = []
    leaked = world.frames.leaked()
    if leaked:
        items = [f"frame #{f.id} ({f.pins} pins)" for f in sorted(leaked, key=lambda f: f.id)]
        out.append(Violation("pin-leak", f"{len(leaked)} frame(s) dropped by their file but "
                             f"still pinned: {_listing(items)}", items))
    still = {f.id for f in leaked}
    punched = [f"frame #{frame_id} ({name})" for index, frame_id, name in world.punched_pinned
               if index == world.op_index and frame_id not in still]
    if punched:
        out.append(Violation("pin-leak", f"{len(punched)} frame(s) punched from their file "
                             f"while the IOMMU still pinned them (unpinned later in the op): "
                             f"{_listing(punched)}", punched))
    pins = sum(f.pins for f in world.frames.frames.values())
    locked = sum(c.locked_vm for _, c in world.containers())
    if locked != pins or world.pinner.locked_vm != pins:
        out.append(Violation("pin-leak", f"locked_vm {locked} (containers) / "
                             f"{world.pinner.locked_vm} (process) != {pins} pinned pages"))
    return out


@invariant("orphan-listener", severity=25,
           doc="every listener registered with a state manager belongs to a plugged "
               "device: a device refused at hot-plug, or unplugged, holds no listener and "
               "no mapping")
def check_orphans(world) -> list[Violation]:
    """orphan-listener: a listener left on a RAM block's list by a device the world no
    longer has (its hot-plug returned an error, or it was unplugged) is still told of
    every conversion, and a VFIO one keeps mapping guest memory into a container nobody
    owns: the device's DMA reaches memory the VM does not know it gave away, and the
    pages it pins are accounted to no plugged device."""
    owned = {id(rdl) for device in world.devices.values() for _, rdl in device.listeners}
    items = []
    for block in world.blocks:
        for rdl in block.attr.listeners():
            if id(rdl) in owned:
                continue
            container = getattr(rdl, "container", None)
            pages = sum(m.size for m in container.mappings()) // PAGE_SIZE if container else 0
            items.append(f"{getattr(rdl, 'name', type(rdl).__name__)} on {block.name}"
                         + (f" ({pages} page(s) mapped)" if pages else ""))
    if not items:
        return []
    return [Violation("orphan-listener", f"{len(items)} listener(s) registered for no "
                      f"plugged device: {_listing(items)}", items)]


@invariant("shared-unmapped", severity=50,
           doc="every shared page inside a registered listener's section is mapped "
               "(populated)")
def check_listeners(world) -> list[Violation]:
    """shared-unmapped: every page KVM says is shared, inside a registered section, is
    mapped (VFIO) or populated (generic listeners)."""
    items = []
    for (kind, dev), device in sorted(world.devices.items()):
        translate = device.container.translate if kind == "vfio" else None
        if kind == "vfio" and device.mappings:
            sections = [(None, iova, size) for iova, size in device.mappings]
        else:
            sections = [(rdl, rdl.section.offset_within_address_space, rdl.section.size)
                        for _, rdl in device.listeners if rdl.section is not None]
        for rdl, iova, size in sections:
            for gpa in range(iova, iova + size, PAGE_SIZE):
                if world.kvm.is_private(gpa) or world.block_at(gpa) is None:
                    continue
                if kind == "vfio":
                    if translate(gpa) < 0:
                        items.append(f"vfio{dev}: gpa 0x{gpa:x} not mapped")
                else:
                    block = world.block_at(gpa)
                    bs = world.config.block_size
                    if (gpa - block.gpa) // bs * bs not in rdl.populated:
                        items.append(f"rdl{dev}: gpa 0x{gpa:x} not populated")
    if not items:
        return []
    return [Violation("shared-unmapped", f"{len(items)} shared page(s) missing from a "
                      f"listener: {_listing(items)}", items)]


@invariant("double-backing", severity=90,
           doc="no guest page is backed in both memfd and guest_memfd")
def check_backing(world) -> list[Violation]:
    """double-backing (not for in-place designs, nor hugetlb shared memory, which QEMU
    deliberately keeps)."""
    if world.design.inplace or world.config.hugetlb:
        return []
    items = []
    for block in world.blocks:
        for index in sorted(set(block.memfd.pages) & set(block.gmem.pages)):
            items.append(f"gpa 0x{block.gpa + index * PAGE_SIZE:x}")
    if not items:
        return []
    return [Violation("double-backing", f"{len(items)} page(s) backed in both memfd and "
                      f"guest_memfd ({len(items)} extra frames): {_listing(items)}", items)]


@also_reported("double-backing", kind="after-stop")
def check_stopped_backing(world) -> list[Violation]:
    """What a VM stop leaves behind, checked once, on the op that stopped the VM (the
    session runs ``check`` there too, so pins, stale mappings, accounting and pages
    backed in both files are judged on the stopped VM as on a running one).

    A stopped VM stays as the failure left it: nothing will finish the conversion that
    stopped it.  KVM's attribute and the bitmap may stay mid-conversion (``check`` says
    whether they disagree), but the host memory is real: a page whose attribute that
    conversion changed and whose old side was not discarded (the tail of a partial memfd
    punch to private, of a partial guest_memfd punch to shared, or a discard never
    reached) keeps a second backing, besides the side the guest now uses, until the VM
    is destroyed.  ``check_backing`` sees a page only once both files hold it, which on
    a stopped VM never happens.  Pages the op did not convert are not judged here (a
    design's deliberate double backing shows on the running VM).  Not for in-place
    designs (one file) nor hugetlb shared memory (QEMU keeps it on purpose)."""
    if world.design.inplace or world.config.hugetlb:
        return []
    items = []
    for gpa in sorted(world.converted):
        block = world.block_at(gpa)
        offset = gpa - block.gpa
        memfd, gmem = block.memfd.backed(offset), block.gmem.backed(offset)
        if memfd and gmem:
            continue  # check_backing reports it
        if world.kvm.is_private(gpa) and memfd:
            items.append(f"gpa 0x{gpa:x} (private, memfd not punched)")
        elif not world.kvm.is_private(gpa) and gmem:
            items.append(f"gpa 0x{gpa:x} (shared, guest_memfd not punched)")
    if not items:
        return []
    return [Violation("double-backing", f"after the VM stop, {len(items)} converted page(s) "
                      f"still backed on the side the guest left: {_listing(items)}", items)]


@invariant("attr-agree", severity=60,
           doc="KVM's private attribute agrees with the bitmap for every block")
def check_attributes(world) -> list[Violation]:
    """attr-agree: bit set <=> every page of the block is shared for KVM.

    Set algebra over each RAM block's pages, in C when a block is one page: this check
    runs after every op, and a page-by-page walk was a third of a world harness' time
    (rig bench world)."""
    items = []
    bs = world.config.block_size
    ppb = bs // PAGE_SIZE
    for block in world.blocks:
        first = block.gpa // PAGE_SIZE
        gfns = range(first, first + block.size // PAGE_SIZE)
        private = world.kvm.private.intersection(gfns)
        bits = block.attr.bitmap.set_bits()
        # The pages the bitmap says are shared.
        if ppb == 1:
            shared = set(map(first.__add__, bits))
        else:
            shared = {first + nr * ppb + k for nr in bits for k in range(ppb)}
        # A shared bit over a private page, or a clear bit over a shared page.
        bad = (shared & private) | (set(gfns) - shared - private)
        for nr in sorted({(gfn - first) // ppb for gfn in bad}):
            page = first + nr * ppb
            n = sum(page + k in private for k in range(ppb))
            kvm = "private" if n == ppb else "shared" if n == 0 else "mixed"
            items.append(f"gpa 0x{page * PAGE_SIZE:x} bitmap "
                         f"{'shared' if page in shared else 'private'} kvm {kvm}")
    if not items:
        return []
    return [Violation("attr-agree", f"{len(items)} block(s) where KVM and the bitmap "
                      f"disagree: {_listing(items)}", items)]


@invariant("dma-accounting", severity=80,
           doc="dma_avail + mappings == dma_entry_limit (type1)")
def check_accounting(world) -> list[Violation]:
    if world.config.iommu != "type1":
        return []
    items = [f"vfio{d.dev}: dma_avail {c.dma_avail} + {c.count} mappings"
             for d, c in world.containers()
             if c.dma_avail + c.count != world.config.dma_entry_limit]
    if not items:
        return []
    return [Violation("dma-accounting", f"{_listing(items)} != dma_entry_limit "
                      f"{world.config.dma_entry_limit}", items)]


@invariant("data-integrity", severity=40,
           doc="what a device wrote to a shared page is what the guest reads")
def check_data(world) -> list[Violation]:
    items = []
    for page, tag in sorted(world.expected_data.items()):
        frame = world.guest_frame(page)
        seen = frame.data if frame is not None else 0
        # A frame holds one tag: on a hugetlb page (2 MiB frame) a later write to another
        # 4 KiB page of the same frame replaces it.  Tags only grow, so a newer tag there
        # is not a lost write.
        huge = frame is not None and frame.file is not None and frame.file.page_size > PAGE_SIZE
        if seen != tag and not (huge and seen > tag):
            items.append(f"gpa 0x{page:x}: device wrote tag {tag}, guest reads {seen}")
    if not items:
        return []
    return [Violation("data-integrity", f"{len(items)} device write(s) lost: "
                      f"{_listing(items)}", items)]


@invariant("atomic-failure", severity=70, kind="atomic",
           doc="a conversion that returns an error leaves the world as before")
def check_snapshots(before: dict, after: dict) -> list[Violation]:
    changed = [key for key in before if before[key] != after[key]]
    if not changed:
        return []
    parts = []
    for key in changed:
        if key == "files":
            names = [n for n in before[key] if before[key][n] != after[key][n]]
            parts.append(f"files ({', '.join(names)})")
        else:
            parts.append(key)
    return [Violation("atomic-failure", "the failed conversion changed "
                      + ", ".join(parts), changed)]


def _failed_valid_conversion(world):
    """The op's own conversion, if it failed on a valid request with no fault injected
    into it: (gpa, size, to_private, errno), else None.

    Valid is what every design must accept (docs/semantics.md 2.2, 2.3, 2.7):
    page-aligned, not empty, ending below 2^64 (KVM's u64 end wraps to 0 at 2^64), every
    page RAM (a range may span adjacent RAM blocks, not a gap) and each RAM block's piece
    aligned to the world's block size.  A conversion that an interleaved op raced with
    mid-way is not judged (it has no single request to judge, as atomic-failure skips
    it); a fault fired anywhere in the op (its interleaved op included) excuses any
    failure.  An interleaved conversion's own result is not judged either: what it
    leaves behind is (shared-unmapped, stale-mapping, ...)."""
    applied = world.applied
    if applied is None:
        return None
    op, result = applied
    if op.name != "kvm_convert_memory" or not isinstance(result, int) or result >= 0:
        return None
    if world.interleaved_midway or any(i == world.op_index for i, _ in world.plan.fired):
        return None
    gpa, size, to_private = op.args
    if size == 0 or gpa % PAGE_SIZE or size % PAGE_SIZE or gpa + size >= 1 << 64:
        return None
    pieces = world.sections(gpa, size)
    bs = world.config.block_size
    if sum(s.size for _, s in pieces) != size or any(
            s.offset_within_region % bs or s.size % bs for _, s in pieces):
        return None
    return gpa, size, to_private, result


def _conversion(gpa: int, size: int, to_private: bool, errno: int) -> str:
    return (f"kvm_convert_memory(0x{gpa:x}, 0x{size:x}, "
            f"{'private' if to_private else 'shared'}) = {format_result(errno)}")


@invariant("mapping-exhaustion", severity=85,
           doc="a VFIO device that a refusing dma_max_mappings check admitted never makes "
               "a valid conversion fail from exhausted DMA mappings (-ENOSPC)")
def check_exhaustion(world) -> list[Violation]:
    """mapping-exhaustion: with the budget check refusing (the design's, or the header's
    ``budget_check=refuse``), every plugged device fits dma_max_mappings, so no
    conversion can run a type1 container out of mappings.  A valid conversion failing
    with -ENOSPC while a plugged device is over QEMU's budget is a device the check let
    through.  One whose devices all fit is the world's, not the design's: QEMU's sum
    counts a memslot per listener, which a world with fewer ``max_memslots`` than RAM
    blocks undercounts.  With a budget check that only warns (QEMU 10.1) the design
    said it may run out, and spurious-failure lets -ENOSPC pass as a resource limit."""
    failed = _failed_valid_conversion(world)
    if failed is None or failed[3] != -ENOSPC or world.budget_check != "refuse":
        return []
    over = [f"vfio{d.dev}" for d in world.vfio_devices() if world.vfio_budget_exceeded(d)]
    if not over:
        return []
    return [Violation("mapping-exhaustion", f"{_conversion(*failed)}: the DMA mappings ran "
                      f"out on a budget check that refuses, with {_listing(over)} plugged "
                      f"over dma_max_mappings", over)]


@invariant("spurious-failure", severity=95,
           doc="a conversion of a valid range fails (and so stops the VM) only from an "
               "injected fault or an exhausted resource limit")
def check_failures(world) -> list[Violation]:
    """spurious-failure: a guest's valid conversion succeeds unless a fault was injected
    into the op or a resource limit ran out: the type1 mappings (-ENOSPC; whether the
    design admitted to that limit is mapping-exhaustion's) or RLIMIT_MEMLOCK (-ENOMEM,
    with a ``memlock_limit``).  Any other error on a valid request is one the design
    made up by itself: QEMU stops the VM on it, a design that does not stop it hands a
    guest that did nothing wrong an error it cannot recover from."""
    failed = _failed_valid_conversion(world)
    if failed is None:
        return []
    errno = failed[3]
    if errno == -ENOSPC or (errno == -ENOMEM and world.config.memlock_limit is not None):
        return []
    text = _conversion(*failed)
    return [Violation("spurious-failure", f"{text}: a valid conversion failed with no fault "
                      f"injected and no resource limit reached", [text])]


@invariant("notify-order", severity=100,
           doc="a listener told of a conversion finds the bitmap already updated "
               "(bitmap first, then notify)")
def check_order(world) -> list[Violation]:
    """notify-order: what the observing listeners saw during this op (the bitmap is
    updated before listeners are told, both directions: docs/semantics.md 2.2)."""
    items = [f"{name} told {kind} of 0x{section[0]:x}+0x{section[1]:x} during "
             f"{'state_change to ' + call if call in ('populate', 'discard') else call}: {saw}"
             for index, name, kind, section, call, saw in world.order_violations
             if index == world.op_index]
    if not items:
        return []
    return [Violation("notify-order", f"{len(items)} notification(s) sent before the "
                      f"bitmap was updated: {_listing(items)}", items)]


@invariant("differential", severity=110, kind="differential",
           doc="the core and the reference model agree")
def check_shadow(world, shadow, result, shadow_result) -> list[Violation]:
    """The core under test and the reference model, run side by side, agree."""
    diffs = []
    if repr(result) != repr(shadow_result):
        diffs.append(f"result {result!r} vs model {shadow_result!r}")
    for block, model_block in zip(world.blocks, shadow.blocks):
        a, b = block.attr.bitmap.set_bits(), model_block.attr.bitmap.set_bits()
        if list(a) != list(b):
            diffs.append(f"{block.name} bitmap {list(a)} vs model {list(b)}")
    a = [(d.dev, [tuple(m) for m in c.mappings()]) for d, c in world.containers()]
    b = [(d.dev, [tuple(m) for m in c.mappings()]) for d, c in shadow.containers()]
    if a != b:
        diffs.append(f"mappings {a} vs model {b}")
    if world.listener_log != shadow.listener_log:
        diffs.append(f"listener calls {len(world.listener_log)} vs model "
                     f"{len(shadow.listener_log)}")
    if not diffs:
        return []
    return [Violation("differential", "; ".join(diffs), diffs)]


# -- the session's entry points, one per kind --------------------------------------------

def _run(kind: str, *args) -> list[Violation]:
    out: list[Violation] = []
    for fn in _BY_KIND[kind]:
        out.extend(fn(*args))
    out.sort(key=sort_key)
    return out


def check(world) -> list[Violation]:
    """Every state invariant on ``world`` after an op, most severe first."""
    out: list[Violation] = []
    for fn in CHECKS:  # a module global, so that rig bench can time each check
        out.extend(fn(world))
    out.sort(key=sort_key)
    return out


def check_atomic(before: dict, after: dict) -> list[Violation]:
    """A failed conversion: the world snapshots before and after it (the session calls
    this for failed conversions only)."""
    return _run("atomic", before, after)


def check_differential(world, shadow, result, shadow_result, view=None) -> list[Violation]:
    """The world under test and its shadow, with the op's result on each.  With the op's
    ``OpView`` of ``world`` (the session's incremental path), the comparisons run on what
    the view read first, and the checks only when something differs."""
    if view is not None and _shadow_agrees(world, shadow, result, shadow_result, view):
        return []
    return _run("differential", world, shadow, result, shadow_result)


def check_after_stop(world) -> list[Violation]:
    """The op that stopped the VM, once (besides ``check``)."""
    return _run("after-stop", world)


# -- the incremental oracle: what the session runs after every op -------------------------
#
# ``check`` runs every check in full; the session runs ``check_incremental`` instead, with
# a per-world ``Memo`` (``Session.memo``), and reports exactly what ``check`` reports:
#
# - Each state check has a fast twin, ``run(world, view)``, that either proves the check
#   clean (returns []) from what the op's ``OpView`` already read, or calls the check
#   itself.  Every violation's detail and items therefore come from the check: the twin
#   only has to decide "no violation" exactly, by reading the same state more cheaply
#   (one read of the IOMMU's mappings and the bitmaps per op, set algebra instead of
#   per-page lookups, early exits when what a check judges is absent).
# - A twin with a ``key(world, view)`` runs only when its key changed since the op
#   before; otherwise its previous violations are reported again.  A key is a value
#   snapshot (frozensets, tuples of ints) of everything the check reads that can change
#   during a world's life, read from the state itself, never a counter bumped by hand:
#   the check is a pure function of it, so an equal key means an equal result.  The
#   RAM blocks, the config and the design are fixed for a world's life, so no key holds
#   them.  A check whose key would cost what the check costs has none.
# - Every FULL_CHECK_EVERY ops, and at the op that ends a run, the session compares the
#   incremental result with the full one (``verify``): a difference is a bug of the rig
#   (``IncrementalMismatch``), never a finding.  tests/check/test_incremental_oracle.py
#   proves the equivalence after every op of the shipped corpus and 10,000 generated runs.

#: The session compares the incremental oracle with the full one every this many ops of a
#: run, and at the op that ends it.
FULL_CHECK_EVERY = 64


class IncrementalMismatch(RuntimeError):
    """The incremental oracle and the full one disagree on ``check``: a bug of the rig.
    Its ``signature`` names the check only (not the op or the violations), so that a
    campaign counts one such bug once, and reports it as the rig's (rig.errors.RIG_BUG),
    not the design's."""

    def __init__(self, check: str, message: str):
        super().__init__(message)
        self.signature = (f"{RIG_BUG}the incremental oracle disagrees with the full one "
                          f"on {check}")


class OpView:
    """What several checks read of the world after one op, read once for all of them:
    the plugged VFIO devices and their containers (``vfio``, as ``world.containers()``),
    each container's mappings (``maps``, tuples of IommuMapping: immutable values), each
    RAM block's set bits (``bits``), KVM's private RAM gfns (``private``, a frozenset
    copy) and its private runs outside RAM (``elsewhere``, () when there are none), and
    the op's failed valid conversion (``failed``, ``_failed_valid_conversion``)."""

    __slots__ = ("vfio", "maps", "bits", "private", "elsewhere", "failed")

    def __init__(self, world):
        self.vfio = vfio = world.containers()
        self.maps = tuple([tuple(c.mappings()) for _, c in vfio])
        self.bits = tuple([tuple(b.attr.bitmap.set_bits()) for b in world.blocks])
        kvm = world.kvm
        self.private = frozenset(kvm.private)
        runs = kvm.elsewhere
        self.elsewhere = (tuple(runs.los), tuple(runs.his)) if runs.los else ()
        self.failed = _failed_valid_conversion(world)


def _key_attributes(world, view):
    """attr-agree reads KVM's private RAM gfns and each block's set bits (the blocks'
    ranges and the block size are fixed)."""
    return view.private, view.bits


@_twin(check_attributes, key=_key_attributes)
def _attributes(world, view) -> list[Violation]:
    """Clean when, in every block of one page per bit, the pages the bitmap says are
    shared are inside the block, as many as the pages KVM does not hold private, and
    none of them private: then no bit is shared over a private page and no page is
    missing from both, which is the check's test.  Larger blocks go to the check."""
    if world.config.block_size // PAGE_SIZE != 1:
        return check_attributes(world)
    private = world.kvm.private
    for block, bits in zip(world.blocks, view.bits):
        first = block.gpa // PAGE_SIZE
        gfns = range(first, first + block.size // PAGE_SIZE)
        held = private.intersection(gfns)
        shared = set(map(first.__add__, bits))
        if (len(shared) != len(gfns) - len(held) or not shared.isdisjoint(held)
                or not shared.issubset(gfns)):
            return check_attributes(world)
    return []


def _key_listeners(world, view):
    """shared-unmapped reads, per plugged device (by kind and number): its uncoordinated
    mappings, its listeners' sections and, for generic listeners, the blocks they were
    told are populated; the VFIO containers' mappings (what ``translate`` answers); and
    KVM's private gfns, in RAM and outside it (the RAM blocks are fixed)."""
    if not world.devices:
        return ()  # no device: nothing to judge, whatever the rest says
    devices = []
    for (kind, dev), device in sorted(world.devices.items()):
        if kind == "vfio":
            listeners = tuple([rdl.section for _, rdl in device.listeners])
        else:
            listeners = tuple([(rdl.section, frozenset(rdl.populated))
                               for _, rdl in device.listeners])
        devices.append((kind, dev, tuple(device.mappings), listeners))
    return tuple(devices), view.maps, view.private, view.elsewhere


@_twin(check_listeners, key=_key_listeners)
def _listeners(world, view) -> list[Violation]:
    """Clean when, for every section the check walks, each RAM page of it that KVM does
    not hold private is mapped (``translate``) or, for a generic listener, populated:
    the same test as the check's, on the shared RAM pages of each block only (set
    algebra over gfns instead of a block lookup and an attribute lookup per page).  An
    unaligned section, or private runs outside RAM, go to the check."""
    if not world.devices:
        return []
    if view.elsewhere:
        return check_listeners(world)
    private = world.kvm.private
    blocks = world.blocks
    bs = world.config.block_size
    for (kind, dev), device in sorted(world.devices.items()):
        vfio = kind == "vfio"
        if vfio and device.mappings:
            sections = [(None, iova, size) for iova, size in device.mappings]
        else:
            sections = []
            for _, rdl in device.listeners:
                section = rdl.section  # a new object per read on the Cython core
                if section is not None:
                    sections.append((rdl, section.offset_within_address_space, section.size))
        translate = device.container.translate if vfio else None
        for rdl, iova, size in sections:
            if iova % PAGE_SIZE:
                return check_listeners(world)
            lo = iova // PAGE_SIZE
            hi = lo + len(range(iova, iova + size, PAGE_SIZE))
            for block in blocks:
                first = max(lo, -(-block.gpa // PAGE_SIZE))
                end = min(hi, -(-block.end // PAGE_SIZE))
                if first >= end:
                    continue
                shared = set(range(first, end)).difference(private)
                if vfio:
                    for gfn in shared:
                        if translate(gfn * PAGE_SIZE) < 0:
                            return check_listeners(world)
                else:
                    populated = rdl.populated
                    for gfn in shared:
                        if (gfn * PAGE_SIZE - block.gpa) // bs * bs not in populated:
                            return check_listeners(world)
    return []


@_twin(check_mappings)
def _mappings(world, view) -> list[Violation]:
    """Clean when every mapped IOMMU page is RAM, its frame still backs the page's
    shared side, and the page is not private where that is stale or where the frame is
    guest_memfd's: the check's tests, on the mappings the view read, with the block
    looked up once per run of pages inside it (blocks never overlap: the config is
    validated).  No key: what it reads of the frames (file, pins) costs as much to
    snapshot as to test."""
    if not any(view.maps):
        return []
    if view.elsewhere:
        return check_mappings(world)
    design = world.design
    inplace = design.inplace
    private_is_stale = not inplace and not design.maps_private
    private = world.kvm.private
    frames = world.frames.frames
    block = None
    for maps in view.maps:
        for mapping in maps:
            gpa = mapping.iova
            for frame_id in mapping.frames:
                if block is None or not block.gpa <= gpa < block.end:
                    block = world.block_at(gpa)
                    if block is None:
                        return check_mappings(world)
                    shared_file = block.shared_file(inplace)
                current = shared_file.frame_at(gpa - block.gpa)
                if current is None or current.id != frame_id:
                    return check_mappings(world)
                if gpa // PAGE_SIZE in private:
                    if private_is_stale:
                        return check_mappings(world)
                    frame = frames.get(frame_id)
                    if frame is not None and frame.file is block.gmem:
                        return check_mappings(world)
                gpa += PAGE_SIZE
    return []


_file = attrgetter("file")
_pins = attrgetter("pins")


@_twin(check_pins)
def _pins_twin(world, view) -> list[Violation]:
    """Clean when no frame has been dropped by its file (so none is leaked), no punch
    of a pinned frame was recorded, and the pins add up to both locked_vm counts.  No
    key: the pins of every frame are what it reads."""
    frames = world.frames.frames.values()
    if world.punched_pinned or None in map(_file, frames):
        return check_pins(world)
    pins = sum(map(_pins, frames))
    if world.pinner.locked_vm != pins or sum(c.locked_vm for _, c in view.vfio) != pins:
        return check_pins(world)
    return []


@_twin(check_orphans)
def _orphans(world, view) -> list[Violation]:
    """Clean when every listener on a block's list is one a plugged device holds."""
    owned = {id(rdl) for device in world.devices.values() for _, rdl in device.listeners}
    for block in world.blocks:
        if not owned.issuperset(map(id, block.attr.listeners())):
            return check_orphans(world)
    return []


@_twin(check_backing)
def _backing(world, view) -> list[Violation]:
    """Clean when no block's memfd and guest_memfd hold the same page index."""
    if world.design.inplace or world.config.hugetlb:
        return []
    for block in world.blocks:
        if not block.memfd.pages.keys().isdisjoint(block.gmem.pages):
            return check_backing(world)
    return []


@_twin(check_accounting)
def _accounting(world, view) -> list[Violation]:
    if world.config.iommu != "type1":
        return []
    limit = world.config.dma_entry_limit
    for _, container in view.vfio:
        if container.dma_avail + container.count != limit:
            return check_accounting(world)
    return []


@_twin(check_data)
def _data(world, view) -> list[Violation]:
    """Clean when no device write is expected anywhere."""
    return check_data(world) if world.expected_data else []


@_twin(check_exhaustion)
def _exhaustion(world, view) -> list[Violation]:
    failed = view.failed
    if failed is None or failed[3] != -ENOSPC:
        return []
    return check_exhaustion(world)


@_twin(check_failures)
def _failures(world, view) -> list[Violation]:
    return [] if view.failed is None else check_failures(world)


@_twin(check_order)
def _order(world, view) -> list[Violation]:
    """Clean when no listener ever saw the bitmap contradict a notification."""
    return check_order(world) if world.order_violations else []


class Memo:
    """The incremental oracle's memory of one world (a Session's): each check's last key
    and violations, and the op the incremental results were last compared with the full
    check at."""

    __slots__ = ("keys", "results", "verified")

    def __init__(self):
        self.keys: dict = {}
        self.results: dict = {}
        self.verified: int | None = None


def _again(violations: list) -> list:
    """Violations reported again: fresh objects, so that no two steps share one."""
    return [Violation(v.invariant, v.detail, list(v.items)) for v in violations]


def check_incremental(world, memo: Memo, view: OpView | None = None) -> list[Violation]:
    """What ``check(world)`` reports, from the twins and ``memo`` (see above)."""
    if view is None:
        view = OpView(world)
    keys, results = memo.keys, memo.results
    out: list[Violation] = []
    for check, run, key_of in _plan():
        if key_of is None:
            found = results[check] = run(world, view)
        else:
            key = key_of(world, view)
            if keys.get(check, _NO_KEY) == key:
                found = results[check]
            else:
                keys[check] = key
                found = results[check] = run(world, view)
        if found:
            out.extend(_again(found))
    if out:
        out.sort(key=sort_key)
    return out


_NO_KEY = object()  # equal to no key: a check's first op runs it
_PLAN: list = [None, ()]


def _plan() -> tuple:
    """INCREMENTAL as (check, run, key) triples, rebuilt when INCREMENTAL is replaced (a
    later declaration, or rig bench's timers): INCREMENTAL is read at every call."""
    if _PLAN[0] is not INCREMENTAL:
        _PLAN[:] = [INCREMENTAL, tuple((i.check, i.run, i.key) for i in INCREMENTAL)]
    return _PLAN[1]


def _same(a: list, b: list) -> bool:
    return [(v.invariant, v.detail, list(v.items)) for v in a] == \
        [(v.invariant, v.detail, list(v.items)) for v in b]


def verify(world, memo: Memo, differential=None) -> None:
    """Compare the incremental oracle's last results on ``world`` with the full checks
    (``differential``: (shadow, result, shadow_result, what the fast differential check
    reported), compared with ``check_differential`` without a view).  Raises
    IncrementalMismatch naming the check and the op on a difference."""
    for inc in INCREMENTAL:
        full = inc.check(world)
        if inc.check not in memo.results or not _same(memo.results[inc.check], full):
            raise IncrementalMismatch(
                inc.name, f"incremental oracle: {inc.name} at op {world.op_index} reported "
                f"{[str(v) for v in memo.results.get(inc.check, [])]}, the full check "
                f"{[str(v) for v in full]}")
    if differential is not None:
        shadow, result, shadow_result, fast = differential
        full = _run("differential", world, shadow, result, shadow_result)
        if not _same(fast, full):
            raise IncrementalMismatch(
                "check_shadow", f"incremental oracle: check_shadow at op {world.op_index} "
                f"reported {[str(v) for v in fast]}, the full check {[str(v) for v in full]}")
    memo.verified = world.op_index


def _shadow_agrees(world, shadow, result, shadow_result, view: OpView) -> bool:
    """check_shadow's four comparisons, on what the view read of the world: the results'
    reprs, the bitmaps' set bits block by block, the devices and their mappings, the
    listener call logs."""
    if repr(result) != repr(shadow_result):
        return False
    blocks = shadow.blocks
    if len(blocks) != len(view.bits):
        return False
    for bits, block in zip(view.bits, blocks):
        if bits != tuple(block.attr.bitmap.set_bits()):
            return False
    theirs = shadow.containers()
    if len(theirs) != len(view.vfio):
        return False
    for (device, _), maps, (other, container) in zip(view.vfio, view.maps, theirs):
        if device.dev != other.dev or maps != tuple(container.mappings()):
            return False
    return world.listener_log == shadow.listener_log
