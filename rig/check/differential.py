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

Every op prints in the core-trace syntax (``CORE_OPS``, ``format_core_op``; the trace
grammar is in corpora/README.md), and every value a mismatch shows prints in hex, so a
finding reads the way ``rig replay`` and the trace file write it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from rig.core import BACKEND, load_backend
from rig.core.types import MemoryRegionSection
from rig.errors import EBUSY, EFAULT, EIO, ENOMEM, ENOSPC, EPERM, ERRNO_NAMES
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
    #: The core mutant (rig/core/mutants.py) the trace was found on and replays on, or
    #: None for the package's core.  It selects no behaviour here (the process's core
    #: is what it is: rig.core.MUTANT); rig.trace.core.run_core refuses a trace whose
    #: mutant is not the process's, and ``rig`` re-executes on the right core.
    mutant: str | None = None

    def __str__(self) -> str:
        return (f"nblocks={self.nblocks} block_size=0x{self.block_size:x} "
                f"rollback={self.rollback} iommu={self.iommu} "
                f"dma_entry_limit={self.dma_entry_limit}"
                + (f" mutant={self.mutant}" if self.mutant else ""))


#: What a state comparison covers, in the order it is compared (the first key that
#: differs is the one reported): the blocks the manager has populated, the listener list
#: in notification order, the standalone bitmap, each recorder's call log, each VFIO
#: listener's discard errors, and each container's mappings and counters.
STATE_KEYS = ("bitmap", "listeners", "bitmap300",
              *(f"log.{name}" for name in RECORDERS),
              *(f"discard_errors.{name}" for name in VFIOS),
              *(f"{name}.{part}" for name in ("C", *CONTAINERS) for part in ("mappings", "counts")))
#: Every kind of disagreement: the op's result, the ordering oracle, or a state key.
MISMATCH_KINDS = ("result", "order", *STATE_KEYS)


class DifferentialMismatch(AssertionError):
    """The implementations disagree after op ``index``: on its result or on the state
    key ``what`` (``values``: each implementation's value).  ``signature`` is the kind of
    disagreement and the op kind, never the index or the arguments, so that one bug is
    one finding however many inputs reach it."""

    def __init__(self, index: int, op: tuple, what: str, values: dict):
        super().__init__("\n".join([f"op {index} {format_core_op(op)}: {what} differs"]
                                    + _format_values(what, values)))
        self.index = index
        self.op = op
        self.what = what
        self.values = values

    @property
    def signature(self) -> str:
        """``core mismatch order in state_change``."""
        return f"core mismatch {self.what} in {core_op_name(self.op)}"


class OrderViolation(DifferentialMismatch):
    """A listener saw the manager's state disagree with what it was being told: the
    bitmap is updated after the notification instead of before (the rules are
    check_order's)."""

    def __init__(self, index: int, op: tuple, impl: str, entry: tuple, rule: str):
        AssertionError.__init__(self, f"op {index} {format_core_op(op)}: notification order"
                                f" broken on {impl}\n  {impl}: {entry[0]} "
                                f"{format_log_entry(entry[1:])}\n  rule: {rule}")
        self.index = index
        self.op = op
        self.what = "order"
        self.values = {impl: entry, "rule": rule}
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


#: Managers beyond the core backends and the model, by implementation name:
#: ``name -> factory(cfg) -> (manager, listener base class)``, the manager with the core's
#: RamBlockAttributes API.  rig.drive.portcheck adds the C under test (a QEMU tree's state
#: manager or rig/port's, through ctypes); such a system's VFIO listeners, containers and
#: standalone bitmap are the process core's, which port-check's op streams leave alone.
MANAGERS: dict = {}


class _System:
    """One copy of the system, on one implementation ("cy", "pure", "model", or a name
    in ``MANAGERS``)."""

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
            b = load_backend(impl if impl in ("cy", "pure") else BACKEND)
            if impl in MANAGERS:
                self.rba, base = MANAGERS[impl](cfg)
            else:
                self.rba = b.RamBlockAttributes(region, cfg.block_size, cfg.rollback)
                base = b.RamDiscardListener
            recorder = _recorder_class(base)
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
            "listeners": [self.names[id(r)] for r in self.rba.listeners()],
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


def run(ops, cfg: CoreConfig = CoreConfig(), impls=("cy", "pure", "model"), observe=None) -> int:
    """Apply ``ops`` to every implementation; raise DifferentialMismatch on the first
    difference (OrderViolation on a wrong notification order).  Returns the number of
    ops applied.

    ``observe(index, op, results, states)``, if given, is called once per op applied,
    also for the op that raises: ``results`` maps each implementation to its result,
    ``states`` to its state after the op (None when the results already differ or the
    ordering oracle fired before the states were taken)."""
    systems = [_System(impl, cfg) for impl in impls]
    for index, op in enumerate(ops):
        marks = {s.impl: {n: len(s.listeners[n].log) for n in RECORDERS} for s in systems}
        nests = {s.impl: s.nests_fired for s in systems}
        results = {s.impl: _call(s, op) for s in systems}
        states = None
        try:
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
        finally:
            if observe is not None:
                observe(index, op, results, states)
    return len(ops)


def impls_for(backend: str = "cy", differential: bool = True) -> tuple:
    """The implementations a run compares: the Cython core (when ``backend`` is ``cy``
    and it is built), the pure-Python twin, and the reference model unless
    ``differential`` is off."""
    impls = ["pure"]
    if backend == "cy":
        try:
            load_backend("cy")
            impls.insert(0, "cy")
        except ImportError:
            pass
    if differential:
        impls.append("model")
    return tuple(impls)


# -- the op vocabulary, as a core trace writes it -----------------------------------------

@dataclass(frozen=True)
class CoreArg:
    name: str
    kind: str  # "hex" (0x...), "count" (decimal), "listener", "recorder", "container",
    #            "errno" (a name: ENOMEM), or "enum:<a>|<b>" (a -> True)


@dataclass(frozen=True)
class CoreOpSpec:
    """One op of a core trace.  ``name`` is the core function the op calls (the rig's
    own ``arm`` and ``nest`` aside); the op tuple is ``(kind, *fixed, *args)``, where
    ``fixed`` holds what the name implies (``replay_populated``: populated=True), and a
    ``nested`` op ends with ``(callbacks, op)``, written as its ``nested:`` property."""

    name: str
    kind: str
    args: tuple
    doc: str
    fixed: tuple = ()
    nested: bool = False


def _core_spec(name: str, kind: str, doc: str, *args: str, fixed: tuple = (),
               nested: bool = False) -> CoreOpSpec:
    return CoreOpSpec(name, kind, tuple(CoreArg(*a.split(":", 1)) for a in args), doc,
                      fixed, nested)


#: Every op of the core differential, by its name in a core trace.  Names, argument
#: words and the ``nested:`` property are frozen: a published core trace must replay
#: the same forever.
CORE_OPS: dict[str, CoreOpSpec] = {s.name: s for s in (
    _core_spec("register_listener", "register", "register listener L on the section "
               "[offset, +size) seen at offset_within_address_space; the manager replays "
               "the populated parts into it", "listener:listener", "offset:hex", "size:hex",
               "offset_within_address_space:hex"),
    _core_spec("unregister_listener", "unregister", "unregister listener L (a discard of "
               "its section first)", "listener:listener"),
    _core_spec("state_change", "state_change", "ram_block_attributes_state_change of "
               "[offset, +size) to discarded (private) or populated (shared)",
               "offset:hex", "size:hex", "to_discard:enum:discard|populate"),
    _core_spec("arm", "arm", "recorder R's next notify_populate returns -ERRNO",
               "recorder:recorder", "errno:errno"),
    _core_spec("nest", "nest", "recorder R runs the nested op from inside its CALLBACKS-th "
               "next callback, as a hot-plug on another thread does", "recorder:recorder",
               nested=True),
    _core_spec("replay_populated", "replay", "walk the populated runs of [offset, +size); "
               "the walk's callback fails with -EIO on run FAIL_AT (0: never)",
               "offset:hex", "size:hex", "fail_at:count", fixed=(True,)),
    _core_spec("replay_discarded", "replay", "walk the discarded runs of [offset, +size), "
               "failing as replay_populated does", "offset:hex", "size:hex", "fail_at:count",
               fixed=(False,)),
    _core_spec("is_populated", "is_populated", "whether every block of [offset, +size) is "
               "populated", "offset:hex", "size:hex"),
    _core_spec("map_dma", "map", "map [iova, +size) to vaddr in container D (type1) or E "
               "(iommufd)", "container:container", "iova:hex", "size:hex", "vaddr:hex",
               "readonly:enum:ro|rw"),
    _core_spec("unmap_dma", "unmap", "unmap [iova, +size) in the container",
               "container:container", "iova:hex", "size:hex"),
    _core_spec("translate", "translate", "what the container's IOMMU translates iova to, "
               "for a DMA write or read", "container:container", "iova:hex",
               "write:enum:write|read"),
    *(_core_spec(fn, "bitmap", f"{fn} on the standalone {BITMAP_BITS}-bit bitmap",
                 *args, fixed=(fn,))
      for fn, args in (("bitmap_set", ("start:hex", "nr:hex")),
                       ("bitmap_clear", ("start:hex", "nr:hex")),
                       ("find_next_bit", ("size:hex", "offset:hex")),
                       ("find_next_zero_bit", ("size:hex", "offset:hex")))),
)}
_BY_TUPLE = {(s.kind, s.fixed): s for s in CORE_OPS.values()}
_FIXED = {s.kind: len(s.fixed) for s in CORE_OPS.values()}
#: The words an argument kind may take in a trace.
CORE_WORDS = {"listener": LISTENERS, "recorder": RECORDERS, "container": CONTAINERS}


def core_op_spec(op: tuple) -> CoreOpSpec:
    kind = op[0]
    if kind not in _FIXED:
        raise ValueError(f"unknown core op {kind!r}")
    spec = _BY_TUPLE.get((kind, tuple(op[1:1 + _FIXED[kind]])))
    if spec is None:
        raise ValueError(f"unknown core op {op!r}")
    return spec


def core_op_name(op: tuple) -> str:
    """The op's name in a core trace: ``("replay", True, ...)`` -> ``replay_populated``."""
    return core_op_spec(op).name


def build_core_op(name: str, args: tuple, nested: tuple | None = None) -> tuple:
    """The op tuple of ``name(args)`` (``nested``: ``(callbacks, op)`` of a ``nest``)."""
    spec = CORE_OPS[name]
    return (spec.kind, *spec.fixed, *args, *(nested if spec.nested else ()))


def core_op_parts(op: tuple) -> tuple[CoreOpSpec, tuple, tuple | None]:
    """``(spec, args, nested)``: the inverse of ``build_core_op``."""
    spec = core_op_spec(op)
    rest = op[1 + len(spec.fixed):]
    args = rest[:len(spec.args)]
    return spec, tuple(args), (tuple(rest[len(spec.args):]) if spec.nested else None)


def format_core_arg(kind: str, value) -> str:
    if kind == "hex":
        return f"0x{value:x}" if value >= 0 else f"-0x{-value:x}"
    if kind == "count":
        return str(value)
    if kind == "errno":
        return ERRNO_NAMES.get(-value, str(value))
    if kind.startswith("enum:"):
        a, b = kind[5:].split("|")
        return a if value else b
    return str(value)


def format_core_op(op: tuple) -> str:
    """``state_change(0x2000, 0x1000, discard)``; a nest carries its nested op as a
    property: ``nest(R1)  (nested: 2 register_listener(R0, 0x0, 0x8000, 0x100000000))``."""
    spec, args, nested = core_op_parts(op)
    text = f"{spec.name}({', '.join(format_core_arg(a.kind, v) for a, v in zip(spec.args, args))})"
    if nested is not None:
        callbacks, inner = nested
        text += f"  (nested: {callbacks} {format_core_op(inner)})"
    return text


# -- values in hex: results, log entries, state ---------------------------------------------

def format_core_value(value) -> str:
    """Any result or state value in hex; a negative int is an errno (``-ENOMEM``)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        if value < 0:
            return f"-{ERRNO_NAMES[-value]}" if -value in ERRNO_NAMES else f"-0x{-value:x}"
        return "0" if value == 0 else f"0x{value:x}"
    if isinstance(value, list):
        return "[" + ", ".join(format_core_value(v) for v in value) + "]"
    if isinstance(value, tuple):
        return "(" + ", ".join(format_core_value(v) for v in value) + ")"
    return repr(value)


def _section(section) -> str:
    offset, size, oas = section
    return f"0x{offset:x}+0x{size:x}@0x{oas:x}"


def _yes(flag) -> str:
    return "yes" if flag else "no"


def format_core_result(result: tuple) -> str:
    """What ``_call`` returned: ``0``, ``-ENOMEM``, ``raises ValueError``, or a replay's
    return code and the sections its callback saw."""
    how, value = result
    if how == "raise":
        return f"raises {value}"
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], list):
        ret, seen = value
        return f"{format_core_value(ret)} after [{', '.join(_section(s) for s in seen)}]"
    return format_core_value(value)


def format_log_entry(entry: tuple) -> str:
    """One recorder log entry: what the recorder was told and what it saw."""
    if entry[0] == "populate":
        _, section, ret, seen, listed = entry
        return (f"populate {_section(section)} = {format_core_value(ret)} "
                f"(is_populated: {_yes(seen)}, listed: {_yes(listed)})")
    if entry[0] == "discard":
        _, section, discarded, listed = entry
        return f"discard {_section(section)} (discarded: {_yes(discarded)}, listed: {_yes(listed)})"
    if entry[0] == "nested":
        _, op, result = entry
        return f"nested {format_core_op(op)} = {format_core_result(result)}"
    return format_core_value(entry)


def format_mapping(mapping: tuple, frames: bool = True) -> str:
    """``0x1000+0x2000 ro frames [0x7f0000001, 0x7f0000002]`` (the frames it pinned)."""
    iova, size, pinned, readonly = mapping
    text = f"0x{iova:x}+0x{size:x}{' ro' if readonly else ''}"
    return text + (f" frames {format_core_value(list(pinned))}" if frames else "")


def format_bits(bits) -> str:
    """Set bits as runs: ``[0x0-0x3, 0x8]``."""
    runs, bits = [], sorted(bits)
    i = 0
    while i < len(bits):
        j = i
        while j + 1 < len(bits) and bits[j + 1] == bits[j] + 1:
            j += 1
        last = f"-{format_core_value(bits[j])}" if j > i else ""
        runs.append(format_core_value(bits[i]) + last)
        i = j + 1
    return "[" + ", ".join(runs) + "]"


def format_state_entry(key: str, entry) -> str:
    """One element of a list-valued state key, as replay and mismatches print it."""
    if key.startswith("log."):
        return format_log_entry(entry)
    if key.endswith(".mappings"):
        return format_mapping(entry)
    return format_core_value(entry)


def format_state(key: str, value) -> str:
    if key in ("bitmap", "bitmap300"):
        return format_bits(value)
    if key == "listeners":
        return "[" + ", ".join(value) + "]"
    if key.endswith(".counts"):
        count, locked_vm, dma_avail = value
        return (f"count {format_core_value(count)}, locked_vm {format_core_value(locked_vm)}"
                f", dma_avail {format_core_value(dma_avail)}")
    return "[" + ", ".join(format_state_entry(key, e) for e in value) + "]"


def _format_values(what: str, values: dict) -> list[str]:
    """Each implementation's value of ``what``; for a log or a list of mappings, only
    the first entry at which they differ (the logs can be long)."""
    if what == "result":
        return [f"  {impl}: {format_core_result(v)}" for impl, v in values.items()]
    if what in ("bitmap", "bitmap300", "listeners") or what.endswith(".counts"):
        return [f"  {impl}: {format_state(what, v)}" for impl, v in values.items()]
    return format_first_entry(values, lambda entry: format_state_entry(what, entry))


def format_first_entry(values: dict, fmt) -> list[str]:
    """Lists that differ (``values``: each side's), shown at the first entry at which
    they do: ``entry 3 (of cy 4, C 5)`` and each side's entry through ``fmt``."""
    lists = list(values.values())
    at = next((i for i in range(max(len(v) for v in lists))
               if len({repr(v[i]) if i < len(v) else "-" for v in lists}) > 1), 0)
    out = [f"  entry {at} (of " + ", ".join(f"{impl} {len(v)}" for impl, v in values.items()) + ")"]
    out += [f"  {impl}: " + (fmt(v[at]) if at < len(v) else "(none)")
            for impl, v in values.items()]
    return out


# -- op streams ---------------------------------------------------------------------------

def random_ops(rng: random.Random, cfg: CoreConfig, count: int) -> list[tuple]:
    """A seeded op stream mixing valid and invalid arguments (used by ``rig selftest``)."""
    return [random_op(rng.randrange, cfg) for _ in range(count)]


def random_op(draw, cfg: CoreConfig, iova_pages: int = 64) -> tuple:
    """One op from ``draw(n) -> int in [0, n)``: hypothesis, random or fuzzer bytes.

    ``iova_pages``: the window, in 4 KiB pages, that the standalone containers' maps,
    unmaps and translates draw their IOVAs from.  64 by default; a smaller one packs
    the areas together, so that an unmap covers one area whole and stops inside the
    next (iommufd's -ENOENT after a partial unmap) far more often: the iommu harness
    draws it per input."""
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
        nested = random_op(draw, cfg, iova_pages)
        while nested[0] not in NESTABLE:
            nested = random_op(draw, cfg, iova_pages)
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
        iova = (draw(iova_pages) * 0x1000) if draw(8) else 0xFEE00000 + draw(3) * 0x1000
        return ("map", CONTAINERS[draw(2)], odd(iova), odd((1 + draw(6)) * 0x1000),
                draw(1024) * 0x1000, bool(draw(4) == 0))
    if kind < 18:
        return ("unmap", CONTAINERS[draw(2)], odd(draw(iova_pages) * 0x1000),
                odd((1 + draw(16)) * 0x1000))
    if kind < 19:
        return ("translate", CONTAINERS[draw(2)], draw(iova_pages * 0x1000), bool(draw(2)))
    fn = ("bitmap_set", "bitmap_clear", "find_next_bit", "find_next_zero_bit")[draw(4)]
    return ("bitmap", fn, draw(BITMAP_BITS + 2), draw(BITMAP_BITS + 2))


def selftest_configs() -> list[CoreConfig]:
    return [
        CoreConfig(nblocks=n, block_size=bs, rollback=rb, iommu=io, dma_entry_limit=lim)
        for rb in ("none", "listeners", "full", "sources")
        for io, lim in (("type1", 12), ("iommufd", 0))
        for n, bs in ((32, 0x1000), (70, 0x2000))
    ]
