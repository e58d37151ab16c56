"""The C port of the hardened kvm_convert_memory() against the ``hardened`` design.

``rig/port/kvm/kvm-convert-memory.c`` is the conversion path of QEMU's
accel/kvm/kvm-all.c as rig/world/designs/hardened.py proves it (validation first, KVM
attribute restore, bounded retries), on top of the hardened state manager
(``rig/port/ram-block-attributes.c``).  This module builds it with the port's stub layer
and harness (rig.drive.portbuild) plus its KVM edge (``rig/port/kvm/kvm-harness.c``), and
runs seeded conversion streams through it and through the real ``Hardened`` design on a
real ``rig.world.World``, comparing after every op.

A stream: one or two RAM blocks at non-zero guest-physical bases (the second one right
after the first or past a gap; some streams back shared memory with 2 MiB hugetlb pages,
which is never discarded), one or two recording listeners on sections of them, and
ops: ``kvm_convert_memory`` over aligned, unaligned, empty, mixed, two-block and
out-of-RAM ranges, ``guest_touch`` (a vCPU write, which backs a page in the memfd or in
guest_memfd), a listener's next populate failing (``arm``), and (un)registration.  A
conversion may carry explicit faults, the world's own per-op property
(rig.world.faults, corpora/README.md): ``kvm.set_memory_attributes=ENOMEM@2*8`` fails
the 2nd to 9th counted KVM call of the op, ``memfd.punch_hole=EINTR@1*3/2`` the first
three punches, each after 2 pages.  Counts k = 1..10 keep and exceed the retry bound of 8.

What a *call* is, on both sides (the hit numbers of a fault count these, per op, from 1;
the world counts them in ``World.fault``, the C harness in ``rig_k_hit``):
``kvm.set_memory_attributes`` is a KVM_SET_MEMORY_ATTRIBUTES that passed the kernel's
checks (aligned, non-empty, no wrap, at most 64 GiB) and would change at least one page
(a call that finds every page already so returns 0 uncounted); ``memfd.punch_hole`` a
``ram_block_discard_range`` with page-aligned offset and length; ``gmem.punch_hole`` a
``ram_block_discard_guest_memfd_range`` with 4 KiB-aligned offset and length.  Both sides
log every counted call with its number, so that the mapping is itself compared.

After every op both sides must agree on: the op's result; the give-ups (the world's
``GiveUp`` events, the C's ``trace_kvm_convert_memory_give_up``) and retries; every
KVM_SET_MEMORY_ATTRIBUTES call (range, attribute, result); every counted fault-site call
(site, number, injected errno, pages punched first); every discard call (file, offset,
size, result); each listener's ordered notifications (with what the listener saw the
manager say from inside its callback); the order of all of those together; each block's
bitmap and listener list; KVM's attribute of every RAM page; which pages each memfd and
guest_memfd holds; and (C only) that no memory_region_find() reference is left.  A
mismatch prints as a core mismatch does: the op, what differs, both values.

May import: rig.world, rig.check, rig.trace, rig.core, rig.errors and
rig.drive.portbuild.
"""

from __future__ import annotations

import ctypes
import hashlib
import random
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from rig.check.differential import format_bits, format_core_value, format_first_entry
from rig.core import BACKEND
from rig.core.types import MemoryRegionSection
from rig.drive import portbuild
from rig.errors import EAGAIN, EBUSY, EFAULT, EINTR, EIO, ENOMEM, EPERM, UsageError
from rig.world.config import RamSpec, WorldConfig
from rig.world.events import GiveUp, Retry
from rig.world.faults import FaultSpec
from rig.world.ops import Op, format_op, op as world_op
from rig.world.world import World

PAGE = 0x1000
HUGE_PAGE = 0x200000
#: The C's KVM edge: its sources (compiled with the port's stub layer and harness).
KVM_DIR = portbuild.PORT_DIR / "kvm"
KVM_SOURCES = ("kvm-convert-memory.c", "kvm-harness.c")
KVM_HEADERS = ("kvm-stubs.h",)
#: kvm-stubs.h's site numbers, by the world's site names.
SITE_IDS = {"kvm.set_memory_attributes": 0, "memfd.punch_hole": 1, "gmem.punch_hole": 2}
SITE_NAMES = {v: k for k, v in SITE_IDS.items()}
FILES = ("memfd", "gmem")
LISTENERS = ("L0", "L1")
#: What a listener's armed populate returns.
ARM_ERRNOS = (-ENOMEM, -EFAULT, -EIO, -EBUSY, -EPERM)
OPS_MIN, OPS_MAX = 8, 30
#: The retry bound of the design (Hardened.retries) and of the C; counts up to 10
#: both keep it and exceed it.
FAULT_COUNT_MAX = 10

#: Compared after every op, in this order (the first key that differs is reported).
STATE_KEYS = ("result", "give-ups", "retries", "kvm calls", "fault hits", "discards",
              *(f"log.{name}" for name in LISTENERS), "call order", "bitmaps",
              "listeners", "kvm private", "files", "region refs")


# -- the library ----------------------------------------------------------------------------

def kvm_sources() -> portbuild.Sources:
    """rig/port's hardened state manager plus the KVM edge and the converter."""
    base = portbuild.builtin_sources()
    missing = [n for n in (*KVM_SOURCES, *KVM_HEADERS) if not (KVM_DIR / n).is_file()]
    if missing:
        raise UsageError(f"{KVM_DIR / missing[0]}: the rig's KVM port is missing "
                         "(a broken install?)")
    return portbuild.Sources((*base.files, *(KVM_DIR / n for n in KVM_SOURCES)),
                             base.flavour, "rig-port-kvm", None)


def build(sources: portbuild.Sources | None = None, cache_dir=None) -> Path:
    """The shared library of the port's stub layer and harness, the hardened state
    manager and the KVM files, through portbuild.build (its cache, its diagnostics).  The KVM header is not a
    compiled file, so its hash names the cache's subfolder: an edit of it rebuilds."""
    sources = sources or kvm_sources()
    digest = hashlib.sha256()
    for name in KVM_HEADERS:
        digest.update((KVM_DIR / name).read_bytes())
    root = portbuild.cache_root(cache_dir) / f"kvm-{digest.hexdigest()[:16]}"
    return portbuild.build(sources, root)


class RigKvmLogEntry(ctypes.Structure):
    """kvm-stubs.h's RigKvmLogEntry, field for field."""

    _fields_ = [("kind", ctypes.c_int), ("site", ctypes.c_int), ("file", ctypes.c_int),
                ("block", ctypes.c_int), ("private", ctypes.c_int),
                ("attempt", ctypes.c_int), ("ret", ctypes.c_int), ("nth", ctypes.c_uint),
                ("partial", ctypes.c_uint), ("start", ctypes.c_uint64),
                ("size", ctypes.c_uint64), ("what", ctypes.c_char_p)]


_KVM_SIGS = {
    "rig_k_reset": (None, [ctypes.c_uint64]),
    "rig_k_add_ram": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64]),
    "rig_k_begin_op": (None, []),
    "rig_k_fault": (ctypes.c_int, [ctypes.c_int, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
                                   ctypes.c_uint]),
    "rig_k_convert": (ctypes.c_int, [ctypes.c_uint64, ctypes.c_uint64, ctypes.c_bool]),
    "rig_k_touch": (ctypes.c_int, [ctypes.c_uint64]),
    "rig_k_refs": (ctypes.c_int, []),
    "rig_k_file_pages": (ctypes.c_long, [ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                         ctypes.c_size_t]),
    "rig_k_private_pages": (None, [ctypes.c_uint64, ctypes.c_uint64, ctypes.c_char_p]),
    "rig_k_log_count": (ctypes.c_size_t, []),
    "rig_k_log": (ctypes.POINTER(RigKvmLogEntry), []),
    "rig_k_log_clear": (None, []),
}


def load(path) -> portbuild.CLibrary:
    """portbuild.load, with the KVM harness's functions typed (``lib.kvm.<name>``)."""
    lib = portbuild.load(path)
    if not hasattr(lib, "kvm"):
        kvm = SimpleNamespace()
        for name, (restype, argtypes) in _KVM_SIGS.items():
            try:
                fn = getattr(lib.lib, name)
            except AttributeError:
                raise UsageError(f"{lib.path}: no {name}: not a library built by "
                                 "rig.drive.portworld.build") from None
            fn.restype, fn.argtypes = restype, argtypes
            setattr(kvm, name[len("rig_k_"):], fn)
        lib.kvm = kvm
    return lib


# -- streams --------------------------------------------------------------------------------

@dataclass(frozen=True)
class PortConfig:
    """The machine of a stream: RAM blocks as (guest-physical base, size), ascending;
    ``hugetlb``: their shared memory is in 2 MiB pages (never discarded)."""

    ram: tuple = ((0x100000000, 0x8000),)
    hugetlb: bool = False

    @property
    def memfd_page_size(self) -> int:
        return HUGE_PAGE if self.hugetlb else PAGE

    def world_config(self) -> WorldConfig:
        """The World's config: the state manager tracks 4 KiB blocks, the host page size,
        as the C's does (qemu_real_host_page_size())."""
        return WorldConfig(design="hardened", ram=tuple(RamSpec(g, s) for g, s in self.ram),
                           block_size=PAGE, hugetlb=self.hugetlb, faults="explicit").validate()

    def __str__(self) -> str:
        return ("ram=" + ",".join(f"0x{g:x}+0x{s:x}" for g, s in self.ram)
                + (" hugetlb=yes" if self.hugetlb else ""))


def stream(seed: int, index: int) -> tuple[PortConfig, list]:
    """Stream ``index`` of ``seed`` (seeded by text, the same in every process)."""
    rng = random.Random(f"rig port-world {seed} {index}")
    hugetlb = rng.random() < 0.08
    if hugetlb:
        # hugetlb-backed blocks are whole 2 MiB pages at 2 MiB-aligned bases
        base, size = rng.choice((0x100000000, 0x80000000, 0x40000000)), HUGE_PAGE
        ram = [(base, size)]
        if rng.random() < 0.45:
            ram.append((base + size + rng.choice((0, HUGE_PAGE)), size))
    else:
        n0 = rng.choice((4, 8, 16))
        base = rng.choice((0x100000000, 0x80000000, 0x40000, PAGE * rng.randrange(1, 1 << 20)))
        ram = [(base, n0 * PAGE)]
        if rng.random() < 0.45:
            gap = rng.choice((0, 0, PAGE, 4 * PAGE))
            ram.append((base + n0 * PAGE + gap, rng.choice((2, 4, 8)) * PAGE))
    cfg = PortConfig(tuple(ram), hugetlb)
    names = list(LISTENERS[:rng.randint(1, 2)])
    ops: list = [_register(rng, cfg, name) for name in names]
    length = rng.randint(OPS_MIN, OPS_MAX)
    while len(ops) < length:
        ops.extend(_ops(rng, cfg, names))
    return cfg, ops[:length]


def _register(rng, cfg: PortConfig, name: str) -> tuple:
    block = rng.randrange(len(cfg.ram))
    pages = cfg.ram[block][1] // PAGE
    first = rng.randrange(pages)
    return ("register", name, block, first * PAGE, rng.randint(1, pages - first) * PAGE)


def _range(rng, cfg: PortConfig) -> tuple[int, int]:
    """A conversion range: mostly pages of RAM (one block, both, whole RAM), sometimes
    one that must be refused or ignored (unaligned, empty, in a gap, outside RAM, a wrap
    past 2^64)."""
    lo, hi = cfg.ram[0][0], cfg.ram[-1][0] + cfg.ram[-1][1]
    pick = rng.randrange(20)
    if pick < 9:
        gpa, size = cfg.ram[rng.randrange(len(cfg.ram))]
        first = rng.randrange(size // PAGE)
        return gpa + first * PAGE, rng.randint(1, size // PAGE - first) * PAGE
    if pick < 12:
        first = rng.randrange((hi - lo) // PAGE)
        return lo + first * PAGE, rng.randint(1, (hi - lo) // PAGE - first) * PAGE
    if pick == 12:
        return lo, hi - lo
    if pick == 13:
        start, size = _range(rng, cfg)
        return start + rng.choice((0x800, 0x1)), size
    if pick == 14:
        start, size = _range(rng, cfg)
        return start, size + 0x800
    if pick == 15:
        return _range(rng, cfg)[0], 0
    if pick == 16:
        return lo - rng.randint(1, 4) * PAGE, rng.randint(1, 8) * PAGE
    if pick == 17:
        return hi + rng.choice((0, PAGE, 1 << 30)), rng.randint(1, 4) * PAGE
    if pick == 18:
        return (1 << 64) - rng.randint(1, 2) * PAGE, rng.randint(2, 4) * PAGE
    return hi - rng.randint(1, 2) * PAGE, rng.randint(3, 6) * PAGE


def _faults(rng, size: int, to_private: bool) -> tuple:
    specs = []
    for _ in range(rng.choice((1, 1, 1, 2))):
        kind = rng.randrange(3)
        count = rng.randint(1, FAULT_COUNT_MAX)
        if kind == 0:
            # The op's first KVM call is the conversion's own; the next ones are the
            # restore's (after a listener refused): fail those in a row.
            specs.append(FaultSpec("kvm.set_memory_attributes",
                                   rng.choice((-ENOMEM, -EAGAIN)),
                                   rng.choice((1, 2, 2, 2, 3)), None, count))
        else:
            own = "memfd.punch_hole" if to_private else "gmem.punch_hole"
            site = own if kind == 1 or rng.random() < 0.7 else (
                "gmem.punch_hole" if to_private else "memfd.punch_hole")
            partial = rng.choice((None, 0, 1, rng.randint(0, max(1, size // PAGE))))
            specs.append(FaultSpec(site, rng.choice((-EINTR, -ENOMEM, -EIO)),
                                   rng.choice((1, 1, 2)), partial, count))
    return tuple(specs)


def _ops(rng, cfg: PortConfig, names: list) -> list:
    pick = rng.randrange(100)
    name = rng.choice(names)
    if pick < 58:
        start, size = _range(rng, cfg)
        to_private = rng.random() < 0.5
        out = []
        faults = None
        if rng.random() < 0.5:
            faults = _faults(rng, size, to_private)
            if not to_private and rng.random() < 0.6:
                # a refusing listener is what makes the restore (and its retries) run
                out.append(("arm", name, rng.choice(ARM_ERRNOS)))
        out.append(world_op("kvm_convert_memory", start, size, to_private, fault=faults))
        return out
    if pick < 70:
        return [("arm", name, rng.choice(ARM_ERRNOS))]
    if pick < 86:
        lo, hi = cfg.ram[0][0], cfg.ram[-1][0] + cfg.ram[-1][1]
        return [world_op("guest_touch", lo + rng.randrange(-2, (hi - lo) // PAGE + 2) * PAGE
                         + rng.choice((0, 0, 0x10)))]
    if pick < 93:
        return [("unregister", name)]
    return [_register(rng, cfg, name)]


def format_op_any(op) -> str:
    """A world op as a trace line writes it; a listener op in the same call syntax."""
    if isinstance(op, Op):
        return format_op(op)
    if op[0] == "register":
        _, name, block, offset, size = op
        return f"register_listener({name}, ram{block}, 0x{offset:x}, 0x{size:x})"
    if op[0] == "unregister":
        return f"unregister_listener({op[1]})"
    return f"arm({op[1]}, {format_core_value(op[2])})"


def op_kind(op) -> str:
    return op.name if isinstance(op, Op) else op[0]


# -- the two sides --------------------------------------------------------------------------

def _recorder_class(base):
    class PortRecorder(base):
        """A listener that logs each notification with what its manager says of the
        section from inside the callback (is_populated), and refuses its next populate
        when armed.  ``sink`` is the side's ordered log of everything."""

        def __init__(self, name: str, query, sink):
            super().__init__()
            self.double_discard_supported = True
            self.name = name
            self.query = query
            self.sink = sink
            self.armed = 0
            self.log: list = []

        def notify_populate(self, section):
            ret, self.armed = self.armed, 0
            entry = ("populate", tuple(section), ret, bool(self.query(section)))
            self.log.append(entry)
            self.sink(("notify", self.name, *entry))
            return ret

        def notify_discard(self, section):
            entry = ("discard", tuple(section), bool(self.query(section)))
            self.log.append(entry)
            self.sink(("notify", self.name, *entry))

    return PortRecorder


class PortWorld(World):
    """A World that logs what the design does at the KVM and host edge, in order: every
    KVM_SET_MEMORY_ATTRIBUTES, every fault-site call (with its number in the op), every
    discard, every retry and give-up."""

    def __init__(self, config: WorldConfig, backend=BACKEND):
        self.port_log: list = []
        super().__init__(config, backend)

    def kvm_set_memory_attributes(self, start, size, private):
        ret = super().kvm_set_memory_attributes(start, size, private)
        self.port_log.append(("kvm", start, size, bool(private), ret))
        return ret

    def fault(self, site, units=1):
        injected = super().fault(site, units)
        self.port_log.append(("hit", site, self.plan.op_hits[site],
                              injected.errno if injected else 0,
                              (injected.partial or 0) if injected else 0))
        return injected

    def ram_block_discard_range(self, block, offset, size):
        ret = super().ram_block_discard_range(block, offset, size)
        self.port_log.append(("discard", f"memfd{block.index}", offset, size, ret))
        return ret

    def ram_block_discard_guest_memfd_range(self, block, offset, size):
        ret = super().ram_block_discard_guest_memfd_range(block, offset, size)
        self.port_log.append(("discard", f"gmem{block.index}", offset, size, ret))
        return ret

    def event(self, event):
        super().event(event)
        if isinstance(event, Retry):
            self.port_log.append(("retry", event.what, event.attempt, event.value))
        elif isinstance(event, GiveUp):
            self.port_log.append(("give_up", event.what, event.start, event.size, event.ret))


class _WorldSide:
    def __init__(self, cfg: PortConfig):
        self.cfg = cfg
        self.world = PortWorld(cfg.world_config())
        recorder = _recorder_class(self.world.core.RamDiscardListener)
        self.listeners = {}
        for name in LISTENERS:
            self.listeners[name] = recorder(name, None, self.world.port_log.append)

    def apply(self, index: int, op):
        world = self.world
        world.port_log.clear()
        for rdl in self.listeners.values():
            rdl.log.clear()
        if isinstance(op, Op):
            world.begin_op(index, op)
            return world.apply(op)
        world.begin_op(index, None)
        kind, name = op[0], op[1]
        rdl = self.listeners[name]
        if kind == "arm":
            rdl.armed = op[2]
            return None
        if kind == "unregister":
            for block in world.blocks:
                if any(r is rdl for r in block.attr.listeners()):
                    return block.attr.unregister_listener(rdl)
            return world.blocks[0].attr.unregister_listener(rdl)
        _, _, b, offset, size = op
        block = world.blocks[b]
        if rdl.section is None:  # (registered, it keeps asking its own manager)
            rdl.query = block.attr.core_attr.is_populated
        return block.attr.register_listener(
            rdl, MemoryRegionSection(offset, size, block.gpa + offset))

    def state(self, result) -> dict:
        world = self.world
        log = list(world.port_log)
        out = _split(result, log, self.listeners)
        out["bitmaps"] = [b.attr.bitmap.set_bits() for b in world.blocks]
        out["listeners"] = [[r.name for r in b.attr.listeners()] for b in world.blocks]
        out["kvm private"] = sorted(world.kvm.private)
        files = []
        for b in world.blocks:
            files.append((f"memfd{b.index}", sorted(b.memfd.pages)))
            files.append((f"gmem{b.index}", sorted(b.gmem.pages)))
        out["files"] = files
        out["region refs"] = 0
        return out


def _split(result, log: list, listeners: dict) -> dict:
    """The keys the ordered log holds, each its own list, and the order of all."""
    out = {"result": result}
    out["give-ups"] = [e[1:] for e in log if e[0] == "give_up"]
    out["retries"] = [e[1:] for e in log if e[0] == "retry"]
    out["kvm calls"] = [e[1:] for e in log if e[0] == "kvm"]
    out["fault hits"] = [e[1:] for e in log if e[0] == "hit"]
    out["discards"] = [e[1:] for e in log if e[0] == "discard"]
    for name in LISTENERS:
        out[f"log.{name}"] = list(listeners[name].log)
    out["call order"] = [e[:2] for e in log]
    return out


class _CSide:
    """The C: one CRamBlockAttributes (A's adapter) per RAM block, put in the KVM
    harness's address space at its base; the harness's log read back after each op."""

    def __init__(self, lib, cfg: PortConfig):
        self.lib = lib
        self.kvm = lib.kvm
        self.cfg = cfg
        self.kvm.reset(PAGE)
        self.managers = [portbuild.CRamBlockAttributes(lib, size, PAGE) for _, size in cfg.ram]
        for (gpa, _), rba in zip(cfg.ram, self.managers):
            if self.kvm.add_ram(rba._h, gpa, cfg.memfd_page_size) < 0:
                raise RuntimeError(f"rig_k_add_ram refused ram at 0x{gpa:x}")
        recorder = _recorder_class(portbuild.CRamDiscardListener)
        self.pending: list = []   # (position in the C log, listener entry)
        self.listeners = {name: recorder(name, None, self._sink) for name in LISTENERS}

    def _sink(self, entry) -> None:
        self.pending.append((self.kvm.log_count(), entry))

    def apply(self, index: int, op):
        kvm = self.kvm
        kvm.begin_op()
        kvm.log_clear()
        self.pending.clear()
        for rdl in self.listeners.values():
            rdl.log.clear()
        if isinstance(op, Op):
            if op.name == "guest_touch":
                return kvm.touch(op.args[0])
            for spec in op.prop("fault", ()):
                ret = kvm.fault(SITE_IDS[spec.site], spec.errno, spec.nth, spec.count,
                                spec.partial or 0)
                if ret:
                    raise RuntimeError(f"rig_k_fault refused {spec}")
            start, size, to_private = op.args
            return kvm.convert(start, size, to_private)
        kind, name = op[0], op[1]
        rdl = self.listeners[name]
        if kind == "arm":
            rdl.armed = op[2]
            return None
        if kind == "unregister":
            owner = rdl._c_owner or self.managers[0]
            return owner.unregister_listener(rdl)
        _, _, b, offset, size = op
        rba = self.managers[b]
        if rdl._c_owner is None:
            rdl.query = rba.is_populated
        return rba.register_listener(rdl, MemoryRegionSection(offset, size,
                                                              self.cfg.ram[b][0] + offset))

    def _log(self) -> list:
        n = self.kvm.log_count()
        entries = self.kvm.log()
        out = []
        pending = list(self.pending)
        for i in range(n):
            while pending and pending[0][0] <= i:
                out.append(pending.pop(0)[1])
            e = entries[i]
            what = (e.what or b"").decode()
            if e.kind == 0:
                out.append(("hit", SITE_NAMES.get(e.site, f"site{e.site}"), e.nth, e.ret,
                            e.partial))
            elif e.kind == 1:
                out.append(("kvm", e.start, e.size, bool(e.private), e.ret))
            elif e.kind == 2:
                out.append(("discard", f"{FILES[e.file]}{e.block}", e.start, e.size, e.ret))
            elif e.kind == 3:
                out.append(("retry", what, e.attempt, e.ret))
            else:
                out.append(("give_up", what, e.start, e.size, e.ret))
        out += [entry for _, entry in pending]
        return out

    def state(self, result) -> dict:
        kvm = self.kvm
        out = _split(result, self._log(), self.listeners)
        out["bitmaps"] = [rba.bitmap.set_bits() for rba in self.managers]
        out["listeners"] = [[r.name for r in rba.listeners()] for rba in self.managers]
        private = []
        for gpa, size in self.cfg.ram:
            buf = ctypes.create_string_buffer(size // PAGE)
            kvm.private_pages(gpa, size // PAGE, buf)
            private += [gpa // PAGE + i for i, b in enumerate(buf.raw) if b]
        out["kvm private"] = private
        files = []
        for i, (_, size) in enumerate(self.cfg.ram):
            for f in range(len(FILES)):
                buf = ctypes.create_string_buffer(size // PAGE)
                n = kvm.file_pages(i, f, buf, len(buf))
                if n < 0:
                    raise RuntimeError(f"rig_k_file_pages({i}, {f}) failed")
                files.append((f"{FILES[f]}{i}", [p for p, b in enumerate(buf.raw[:n]) if b]))
        out["files"] = files
        out["region refs"] = kvm.refs()
        return out

    def destroy(self) -> None:
        for rba in self.managers:
            rba.destroy()
        self.managers = []
        self.kvm.reset(PAGE)


# -- comparing ------------------------------------------------------------------------------

class PortWorldMismatch(AssertionError):
    """The C and the design disagree after op ``index`` on ``what`` (``values``: each
    side's value)."""

    def __init__(self, index: int, op, what: str, values: dict):
        super().__init__("\n".join([f"op {index} {format_op_any(op)}: {what} differs"]
                                   + _format_values(what, values)))
        self.index = index
        self.op = op
        self.what = what
        self.values = values

    @property
    def signature(self) -> str:
        return f"port-world mismatch {self.what} in {op_kind(self.op)}"


def _format_entry(value) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(_format_entry(v) for v in value) + ")"
    if isinstance(value, list):
        return "[" + ", ".join(_format_entry(v) for v in value) + "]"
    return format_core_value(value)


def _format_values(what: str, values: dict) -> list[str]:
    if what in ("kvm private",):
        return [f"  {side}: gfns {format_bits(v)}" for side, v in values.items()]
    if what == "bitmaps":
        return [f"  {side}: " + ", ".join(f"ram{i} {format_bits(b)}" for i, b in enumerate(v))
                for side, v in values.items()]
    lists = list(values.values())
    if not all(isinstance(v, list) for v in lists) or what in ("listeners", "files"):
        return [f"  {side}: {_format_entry(v)}" for side, v in values.items()]
    return format_first_entry(values, _format_entry)


@dataclass(frozen=True)
class WorldStreamResult:
    """One stream: the ops compared (up to and including a diverging one), the
    divergence if any, and how many give-ups and retries each side made."""

    index: int
    ops: int
    kind: str = "ok"                 # ok | mismatch
    what: str | None = None
    op: str | None = None
    op_index: int | None = None
    message: str = ""
    give_ups: tuple = (0, 0)         # (world, C)
    retries: tuple = (0, 0)
    gave_up_on: tuple = ()           # (what, errno) of each step given up on, sorted

    @property
    def key(self) -> tuple:
        return (self.kind, self.what, self.op)


_LIBRARY: dict = {}


def _library(library=None):
    if library is None:
        if "builtin" not in _LIBRARY:
            _LIBRARY["builtin"] = build()
        library = _LIBRARY["builtin"]
    return load(library) if not isinstance(library, portbuild.CLibrary) else load(
        library.path)


def states(cfg: PortConfig, ops: list, library=None):
    """Yield ``(index, op, {"world": state, "C": state})`` after every op of ``ops``, run
    on the design and on the C side by side (the C's machine is torn down at the end,
    also when the caller stops early)."""
    lib = _library(library)
    world, c = _WorldSide(cfg), _CSide(lib, cfg)
    try:
        for index, op in enumerate(ops):
            yield index, op, {"world": world.state(world.apply(index, op)),
                              "C": c.state(c.apply(index, op))}
    finally:
        c.destroy()


def compare(cfg: PortConfig, ops: list, library=None) -> dict:
    """Run ``ops`` on the design and on the C, comparing after every op; raises
    PortWorldMismatch at the first difference, else returns what was compared:
    ``{"ops", "give_ups": (world, C), "retries": (world, C), "gave_up_on"}`` (the
    steps given up on, as (what, errno) pairs, sorted)."""
    give_ups, retries, kinds = [0, 0], [0, 0], set()
    for index, op, st in states(cfg, ops, library):
        for i, side in enumerate(("world", "C")):
            give_ups[i] += len(st[side]["give-ups"])
            retries[i] += len(st[side]["retries"])
        for key in STATE_KEYS:
            values = {side: state[key] for side, state in st.items()}
            if repr(values["world"]) != repr(values["C"]):
                raise PortWorldMismatch(index, op, key, values)
        kinds.update((what, ret) for what, _, _, ret in st["world"]["give-ups"])
    return {"ops": len(ops), "give_ups": tuple(give_ups), "retries": tuple(retries),
            "gave_up_on": tuple(sorted(kinds))}


def run_streams(library, seed: int, streams: int, progress=None) -> list[WorldStreamResult]:
    """Every stream's result, in stream order (in this process: the C's harness state is
    process-wide, one stream at a time)."""
    lib = _library(library)
    out = []
    for index in range(streams):
        cfg, ops = stream(seed, index)
        try:
            got = compare(cfg, ops, lib)
            out.append(WorldStreamResult(index, got["ops"], give_ups=got["give_ups"],
                                         retries=got["retries"],
                                         gave_up_on=got["gave_up_on"]))
        except PortWorldMismatch as exc:
            out.append(WorldStreamResult(index, exc.index + 1, "mismatch", exc.what,
                                         op_kind(exc.op), exc.index, str(exc)))
        if progress:
            progress(index + 1, streams)
    return out

