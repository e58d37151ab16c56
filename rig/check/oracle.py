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
from typing import Callable

from rig.errors import ENOMEM, ENOSPC
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


#: name -> Invariant, in declaration order.
REGISTRY: dict[str, Invariant] = {}

#: Derived from REGISTRY on every declaration (so at import; nothing declares later).
INVARIANTS: tuple[str, ...] = ()     # names, most severe first
DOC: dict[str, str] = {}             # name -> what it promises, most severe first
CHECKS: tuple = ()                   # the "state" checks ``check`` runs after every op
_BY_KIND: dict[str, tuple] = {}


def _declare(inv: Invariant) -> None:
    global INVARIANTS, DOC, CHECKS, _BY_KIND
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


def check_differential(world, shadow, result, shadow_result) -> list[Violation]:
    """The world under test and its shadow, with the op's result on each."""
    return _run("differential", world, shadow, result, shadow_result)


def check_after_stop(world) -> list[Violation]:
    """The op that stopped the VM, once (besides ``check``)."""
    return _run("after-stop", world)
