"""Differential check of the core: Cython backend vs pure-Python twin vs reference model.

One op stream is applied to three copies of the same small system, and after every op the
results (return codes, exceptions), the bitmap, every listener's call log, the listener
order and every container's mappings and counters must be identical.  Used by the test
suite (with hypothesis streams), ``rig selftest`` (seeded streams) and the core fuzz
harness (streams decoded from bytes).

The system: one RamBlockAttributes; three recording listeners (R0, R2 without double
discard, R1 with); two VFIO listeners (V0, V1) on one IOMMU backend (type1 with a small
dma_entry_limit, or iommufd); two standalone containers (D: type1 with a memlock limit and
a hole in its IOVA ranges; E: iommufd) for direct map/unmap streams; one 300-bit bitmap.

Re-entrancy: the op ``("nest", R, k, op)`` makes recorder R run ``op`` (a register,
unregister, state change, replay, another nest...) from inside its k-th next callback,
as a hot-plug on another thread does in QEMU; the nested result goes into R's log.

Observable order: every recorder queries the manager from inside each callback, as
virtio-mem's users do (``is_populated`` of a populated section, ``replay_populated``
over a discarded one, and whether it is on the list), and logs what it saw.  Besides
the three-way comparison, :func:`check_order` turns a wrong order into an
:class:`OrderViolation`: a populate notification that finds its blocks still discarded
(bitmap set *after* notifying), a state change's discard notification that finds them
still populated, or a listener off the list during its register replay or its
unregister discard.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from rig.core import load_backend
from rig.core.types import MemoryRegionSection
from rig.errors import EBUSY, EFAULT, EIO, ENOMEM, ENOSPC, EPERM
from rig.check.model import ModelIommu, ModelRamBlockAttributes, ModelVfioListener

RECORDERS = ("R0", "R1", "R2")
# Ops a callback may run nested: the manager's own (a nest may nest again).
NESTABLE = ("register", "unregister", "state_change", "replay", "is_populated", "arm", "nest")
VFIOS = ("V0", "V1")
LISTENERS = RECORDERS + VFIOS
CONTAINERS = ("D", "E")
BITMAP_BITS = 300
ARM_ERRNOS = (-ENOMEM, -EFAULT, -EIO, -EBUSY, -EPERM, -ENOSPC)
# IOVA base of the VFIO sections: a real x86 guest's RAM above 4 GiB.
VFIO_IOVA_BASE = 0x100000000
D_MEMLOCK_PAGES = 48
# iommufd also charges RLIMIT_MEMLOCK; a limit keeps a fuzzed 2^52-page map from trying
# to record 2^52 frames (an out-of-memory, not a finding).
E_MEMLOCK_PAGES = 64
D_IOVA_RANGES = ((0, 0xFEDFFFFF), (0xFEF00000, (1 << 64) - 1))  # the x86 MSI window is a hole


@dataclass(frozen=True)
class CoreConfig:
    nblocks: int = 32
    block_size: int = 0x1000
    rollback: str = "none"
    iommu: str = "type1"
    dma_entry_limit: int = 12

    def __str__(self) -> str:
        return (f"nblocks={self.nblocks} block_size=0x{self.block_size:x} "
                f"rollback={self.rollback} iommu={self.iommu} "
                f"dma_entry_limit={self.dma_entry_limit}")


class DifferentialMismatch(AssertionError):
    def __init__(self, index: int, op: tuple, what: str, values: dict):
        lines = [f"op {index} {op!r}: {what} differs"]
        lines += [f"  {name}: {value!r}" for name, value in values.items()]
        super().__init__("\n".join(lines))
        self.index = index
        self.op = op
        self.what = what


class OrderViolation(DifferentialMismatch):
    """A listener saw the manager's state disagree with what it was being told: the
    bitmap is updated after the notification instead of before (DESIGN.md 2.2)."""

    def __init__(self, index: int, op: tuple, impl: str, entry: tuple, rule: str):
        super().__init__(index, op, "order", {impl: entry, "rule": rule})
        self.impl = impl
        self.entry = entry
        self.rule = rule


def _recorder_class(base):
    class Recorder(base):
        """Logs each call with what the manager showed it at that moment; may refuse
        its next populate (``armed``) and may run a nested op (``nest``)."""

        def __init__(self, double_discard: bool, system: "_System"):
            super().__init__()
            self.double_discard_supported = double_discard
            self.system = system
            self.log: list = []
            self.armed = 0
            self.nest = None  # [callbacks left, op]

        def notify_populate(self, section):
            ret, self.armed = self.armed, 0
            seen = self.system.rba.is_populated(section)
            self.log.append(("populate", tuple(section), ret, seen, self._listed()))
            self._maybe_nest()
            return ret

        def notify_discard(self, section):
            runs = []
            self.system.rba.replay_populated(section, lambda s: runs.append(tuple(s)) or 0)
            self.log.append(("discard", tuple(section), not runs, self._listed()))
            self._maybe_nest()

        def _listed(self):
            return any(r is self for r in self.system.rba.listeners())

        def _maybe_nest(self):
            if self.nest is None:
                return
            self.nest[0] -= 1
            if self.nest[0] > 0:
                return
            op, self.nest = self.nest[1], None
            self.system.nests_fired += 1
            self.log.append(("nested", op, _call(self.system, op)))

    return Recorder


class _ModelBitmap:
    def __init__(self, nbits: int):
        self.nbits = nbits
        self.bits: set[int] = set()

    def bitmap_set(self, start, nr):
        if start + nr > self.nbits:
            raise IndexError
        self.bits |= set(range(start, start + nr))

    def bitmap_clear(self, start, nr):
        if start + nr > self.nbits:
            raise IndexError
        self.bits -= set(range(start, start + nr))

    def find_next_bit(self, size, offset):
        size = min(size, self.nbits)
        return next((b for b in range(offset, size) if b in self.bits), size) if offset < size else size

    def find_next_zero_bit(self, size, offset):
        size = min(size, self.nbits)
        return next((b for b in range(offset, size) if b not in self.bits), size) if offset < size else size

    def set_bits(self):
        return sorted(self.bits)


class _System:
    """One copy of the system, on one implementation ("cy", "pure" or "model")."""

    def __init__(self, impl: str, cfg: CoreConfig):
        self.impl = impl
        region = cfg.nblocks * cfg.block_size
        if impl == "model":
            self.rba = ModelRamBlockAttributes(region, cfg.block_size, cfg.rollback)

            class Base:
                double_discard_supported = False

                def __init__(self):
                    pass

            recorder = _recorder_class(Base)
            self.container = ModelIommu(cfg.iommu, cfg.dma_entry_limit)
            vfio = ModelVfioListener
            self.standalone = {
                "D": ModelIommu("type1", 16, iova_ranges=D_IOVA_RANGES,
                                memlock_limit=D_MEMLOCK_PAGES * 0x1000),
                "E": ModelIommu("iommufd", memlock_limit=E_MEMLOCK_PAGES * 0x1000),
            }
            self.bitmap = _ModelBitmap(BITMAP_BITS)
        else:
            b = load_backend(impl)
            self.rba = b.RamBlockAttributes(region, cfg.block_size, cfg.rollback)
            recorder = _recorder_class(b.RamDiscardListener)
            if cfg.iommu == "type1":
                self.container = b.VfioType1Container(cfg.dma_entry_limit)
            else:
                self.container = b.IommufdIoas()
            vfio = b.VFIORamDiscardListener
            self.standalone = {
                "D": b.VfioType1Container(16, iova_ranges=D_IOVA_RANGES,
                                          memlock_limit=D_MEMLOCK_PAGES * 0x1000),
                "E": b.IommufdIoas(memlock_limit=E_MEMLOCK_PAGES * 0x1000),
            }
            self.bitmap = b.Bitmap(BITMAP_BITS)
        self.nests_fired = 0
        self.listeners = {
            "R0": recorder(False, self),
            "R1": recorder(True, self),
            "R2": recorder(False, self),
            "V0": vfio(self.container, cfg.block_size, vaddr_base=0x7F0000000000),
            "V1": vfio(self.container, cfg.block_size, vaddr_base=0x7F0000000000),
        }
        self.names = {id(v): k for k, v in self.listeners.items()}

    def apply(self, op: tuple):
        kind = op[0]
        rba = self.rba
        if kind == "register":
            _, who, offset, size, oas = op
            return rba.register_listener(self.listeners[who], MemoryRegionSection(offset, size, oas))
        if kind == "unregister":
            return rba.unregister_listener(self.listeners[op[1]])
        if kind == "state_change":
            return rba.state_change(op[1], op[2], op[3])
        if kind == "arm":
            self.listeners[op[1]].armed = op[2]
            return None
        if kind == "nest":
            self.listeners[op[1]].nest = [op[2], op[3]]
            return None
        if kind == "replay":
            _, populated, offset, size, fail_at = op
            seen = []

            def fn(section):
                seen.append(tuple(section))
                return -EIO if len(seen) == fail_at else 0

            section = MemoryRegionSection(offset, size, 0)
            ret = (rba.replay_populated if populated else rba.replay_discarded)(section, fn)
            return ret, seen
        if kind == "is_populated":
            return rba.is_populated(MemoryRegionSection(op[1], op[2], 0))
        if kind == "map":
            _, which, iova, size, vaddr, ro = op
            return self.standalone[which].map_dma(iova, size, vaddr, ro)
        if kind == "unmap":
            return self.standalone[op[1]].unmap_dma(op[2], op[3])
        if kind == "translate":
            return self.standalone[op[1]].translate(op[2], op[3])
        if kind == "bitmap":
            _, fn, a, b = op
            return getattr(self.bitmap, fn)(a, b)
        raise ValueError(f"unknown core op {kind!r}")

    def state(self) -> dict:
        out = {
            "bitmap": sorted(self._shared_blocks()),
            "order": [self.names[id(r)] for r in self.rba.listeners()],
            "bitmap300": list(self.bitmap.set_bits()),
        }
        for name in RECORDERS:
            out[f"log.{name}"] = list(self.listeners[name].log)
        for name in VFIOS:
            out[f"discard_errors.{name}"] = list(self.listeners[name].discard_errors)
        for name, c in [("C", self.container), *self.standalone.items()]:
            out[f"{name}.mappings"] = [tuple(m) for m in c.mappings()]
            out[f"{name}.counts"] = (c.count, c.locked_vm, getattr(c, "dma_avail", None))
        return out

    def _shared_blocks(self):
        if self.impl == "model":
            return self.rba.shared
        return self.rba.bitmap.set_bits()


def _call(system: _System, op: tuple):
    try:
        return ("ret", system.apply(op))
    except (IndexError, ValueError, OverflowError) as exc:
        # Both backends and the model must reject the same bad Python-level arguments.
        return ("raise", type(exc).__name__ if not isinstance(exc, OverflowError) else "ValueError")


def check_order(system: _System, index: int, op: tuple, marks: dict, nests: int) -> None:
    """The ordering oracle over the recorder log entries ``op`` added (``marks``: each
    log's length before it).  Judged only when no nested op ran: a nested conversion
    legitimately changes the state under a walk that is still going on."""
    if system.nests_fired != nests:
        return
    state_discard = op[0] == "state_change" and op[3]
    for name in RECORDERS:
        for entry in system.listeners[name].log[marks[name]:]:
            if op[0] in ("register", "unregister") and op[1] == name and not entry[-1]:
                raise OrderViolation(index, op, system.impl, (name,) + entry,
                                     "a listener must be on the list while its register"
                                     " replay or its unregister discard runs (insert,"
                                     " then replay; discard, then remove)")
            if entry[0] == "populate" and not entry[3]:
                raise OrderViolation(index, op, system.impl, (name,) + entry,
                                     "a populate notification finds its blocks discarded:"
                                     " the bitmap must be set before listeners are told")
            if entry[0] == "discard" and state_discard and not entry[2]:
                raise OrderViolation(index, op, system.impl, (name,) + entry,
                                     "a discard notification finds its blocks populated:"
                                     " the bitmap must be cleared before listeners are told")


def run(ops, cfg: CoreConfig = CoreConfig(), impls=("cy", "pure", "model")) -> int:
    """Apply ``ops`` to every implementation; raise DifferentialMismatch on the first
    difference (OrderViolation on a wrong notification order).  Returns the number of
    ops applied."""
    systems = [_System(impl, cfg) for impl in impls]
    for index, op in enumerate(ops):
        marks = {s.impl: {n: len(s.listeners[n].log) for n in RECORDERS} for s in systems}
        nests = {s.impl: s.nests_fired for s in systems}
        results = {s.impl: _call(s, op) for s in systems}
        if len({repr(r) for r in results.values()}) > 1:
            raise DifferentialMismatch(index, op, "result", results)
        for s in systems:
            check_order(s, index, op, marks[s.impl], nests[s.impl])
        states = {s.impl: s.state() for s in systems}
        first = states[impls[0]]
        for key in first:
            values = {impl: st[key] for impl, st in states.items()}
            if len({repr(v) for v in values.values()}) > 1:
                raise DifferentialMismatch(index, op, key, values)
    return len(ops)


# -- op streams ---------------------------------------------------------------------------

def random_ops(rng: random.Random, cfg: CoreConfig, count: int) -> list[tuple]:
    """A seeded op stream mixing valid and invalid arguments (used by ``rig selftest``)."""
    return [random_op(rng.randrange, cfg) for _ in range(count)]


def random_op(draw, cfg: CoreConfig) -> tuple:
    """One op from ``draw(n) -> int in [0, n)``: hypothesis, random or fuzzer bytes."""
    bs = cfg.block_size
    n = cfg.nblocks

    def block_range():
        first = draw(n + 2)
        return first * bs, (1 + draw(n + 1 - min(first, n))) * bs

    def odd(value):
        # Occasionally an unaligned, zero or wrapping value (the boundaries under test).
        pick = draw(16)
        if pick == 0:
            return value + 1
        if pick == 1:
            return 0
        if pick == 2:
            return (1 << 64) - bs
        return value

    kind = draw(22)
    if kind >= 20:
        # A nested op run from inside a recorder's callback: one of the manager's ops.
        nested = random_op(draw, cfg)
        while nested[0] not in NESTABLE:
            nested = random_op(draw, cfg)
        return ("nest", RECORDERS[draw(len(RECORDERS))], 1 + draw(3), nested)
    if kind < 3:
        offset, size = block_range()
        return ("register", LISTENERS[draw(len(LISTENERS))], odd(offset), size,
                VFIO_IOVA_BASE + offset)
    if kind < 4:
        return ("unregister", LISTENERS[draw(len(LISTENERS))])
    if kind < 10:
        offset, size = block_range()
        return ("state_change", odd(offset), odd(size), bool(draw(2)))
    if kind < 11:
        return ("arm", RECORDERS[draw(len(RECORDERS))], ARM_ERRNOS[draw(len(ARM_ERRNOS))])
    if kind < 12:
        offset, size = block_range()
        return ("replay", bool(draw(2)), offset, size, draw(4))
    if kind < 13:
        offset, size = block_range()
        return ("is_populated", offset, size)
    if kind < 16:
        pages = 64
        iova = (draw(pages) * 0x1000) if draw(8) else 0xFEE00000 + draw(3) * 0x1000
        return ("map", CONTAINERS[draw(2)], odd(iova), odd((1 + draw(6)) * 0x1000),
                draw(1024) * 0x1000, bool(draw(4) == 0))
    if kind < 18:
        return ("unmap", CONTAINERS[draw(2)], odd(draw(64) * 0x1000), odd((1 + draw(16)) * 0x1000))
    if kind < 19:
        return ("translate", CONTAINERS[draw(2)], draw(64 * 0x1000), bool(draw(2)))
    fn = ("bitmap_set", "bitmap_clear", "find_next_bit", "find_next_zero_bit")[draw(4)]
    return ("bitmap", fn, draw(BITMAP_BITS + 2), draw(BITMAP_BITS + 2))


def selftest_configs() -> list[CoreConfig]:
    return [
        CoreConfig(nblocks=n, block_size=bs, rollback=rb, iommu=io, dma_entry_limit=lim)
        for rb in ("none", "listeners", "full", "sources")
        for io, lim in (("type1", 12), ("iommufd", 0))
        for n, bs in ((32, 0x1000), (70, 0x2000))
    ]
