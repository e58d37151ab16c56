"""The one vocabulary of operations, used by every driver (traces, fuzzers, hypothesis
state machines, sweeps).  An op is a name, positional arguments, and properties.

Arguments are ints (addresses and sizes in bytes, device numbers) or the words of the
op's enumeration (``private``/``shared``, ``read``/``write``); properties carry what is
not an argument of the real call: injected faults, and an interleaving point.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ArgSpec:
    name: str
    kind: str  # "int" (hex in traces), "dev" (decimal), or "enum:<a>|<b>" (a -> True)

    @property
    def words(self) -> tuple[str, str] | None:
        if not self.kind.startswith("enum:"):
            return None
        a, b = self.kind[5:].split("|")
        return a, b


@dataclass(frozen=True)
class OpSpec:
    name: str
    args: tuple[ArgSpec, ...]
    doc: str


def _spec(name: str, doc: str, *args: str) -> OpSpec:
    parsed = []
    for a in args:
        arg_name, kind = a.split(":", 1)
        parsed.append(ArgSpec(arg_name, kind))
    return OpSpec(name, tuple(parsed), doc)


#: Every op the world understands, by name (QEMU spellings where QEMU has one).
OPS: dict[str, OpSpec] = {s.name: s for s in (
    _spec("vfio_register", "hot-plug device DEV: a VFIO listener per RAM block of the "
          "section [gpa, gpa+size), replaying shared memory into the IOMMU",
          "dev:dev", "gpa:int", "size:int"),
    _spec("vfio_unregister", "hot-unplug device DEV: unregister its listeners",
          "dev:dev"),
    _spec("listener_register", "register a generic (virtio-mem-like) RamDiscardListener "
          "DEV on each RAM block of the section [gpa, gpa+size)",
          "dev:dev", "gpa:int", "size:int"),
    _spec("listener_unregister", "unregister generic listener DEV", "dev:dev"),
    _spec("kvm_convert_memory", "the guest converts [gpa, gpa+size) (KVM_EXIT_MEMORY_FAULT)",
          "gpa:int", "size:int", "to_private:enum:private|shared"),
    _spec("guest_touch", "a vCPU writes the page at gpa (allocating it on first touch)",
          "gpa:int"),
    _spec("device_dma", "device DEV reads or writes [iova, iova+size) through its IOMMU",
          "dev:dev", "iova:int", "size:int", "write:enum:write|read"),
    _spec("replay", "walk the populated (or discarded) runs of [gpa, gpa+size) through "
          "ram_block_attributes_rdm_replay_populated/_discarded",
          "gpa:int", "size:int", "populated:enum:populated|discarded"),
)}


@dataclass(frozen=True)
class Op:
    """One operation.  ``props`` is a tuple of (key, value) pairs, in a canonical order.

    Known properties: ``fault`` (a tuple of fault specs, see rig.world.faults) and
    ``interleave`` (``(point, Op)``: apply that op at an interleaving point of this one,
    as a vCPU conversion racing a hot-plug under the BQL would; see
    ``interleave_point``).
    """

    name: str
    args: tuple
    props: tuple = field(default=())

    def __post_init__(self):
        spec = OPS.get(self.name)
        if spec is None:
            raise ValueError(f"unknown op {self.name!r}")
        if len(self.args) != len(spec.args):
            raise ValueError(f"{self.name} takes {len(spec.args)} arguments, "
                             f"not {len(self.args)}")

    def prop(self, key: str, default=None):
        for k, v in self.props:
            if k == key:
                return v
        return default

    def with_props(self, **updates) -> "Op":
        props = dict(self.props)
        for k, v in updates.items():
            if v is None:
                props.pop(k, None)
            else:
                props[k] = v
        return Op(self.name, self.args, tuple(sorted(props.items())))

    def __str__(self) -> str:
        return format_op(self)


# -- rendering: an op as a trace line shows it (the one renderer; rig.trace.format
# writes every op line with it) --------------------------------------------------------

def format_arg(kind: str, value) -> str:
    if kind == "int":
        return f"0x{value:x}"
    if kind == "dev":
        return str(value)
    a, b = kind[5:].split("|")
    return a if value else b


def format_props(op: Op) -> str:
    parts = []
    for key, value in op.props:
        if key == "fault":
            parts.append("fault: " + " ".join(str(spec) for spec in value))
        elif key == "interleave":
            at, nested = value
            parts.append(f"interleave: {at} {format_op(nested)}")
    return f"({', '.join(parts)})" if parts else ""


def format_op(op: Op) -> str:
    """``kvm_convert_memory(0x2000, 0x1000, private)  (fault: vfio.dma_map=ENOSPC@1)``"""
    spec = OPS[op.name]
    args = ", ".join(format_arg(a.kind, v) for a, v in zip(spec.args, op.args))
    props = format_props(op)
    return f"{op.name}({args})" + (f"  {props}" if props else "")


def op(name: str, *args, **props) -> Op:
    """Build an op: ``op("kvm_convert_memory", 0x2000, 0x1000, True)``."""
    return Op(name, tuple(args), tuple(sorted((k, v) for k, v in props.items() if v is not None)))


#: Interleaving points of the ``interleave`` property, as they are written in a trace:
#: ``N`` (an int >= 1): after the N-th listener notification of the op (trace v1);
#: ``"attr"``: right after the op's first KVM_SET_MEMORY_ATTRIBUTES, if it succeeded,
#: before the state manager is called (the window of QEMU's unlocked vCPU path);
#: ``"before N"``: at the start of the N-th listener notification, before the listener
#: acts (the bitmap has already changed).  A point the op never reaches (or that a
#: design serializes) runs the interleaved op after the op.
POINT_ATTR = "attr"


def interleave_point(at) -> tuple[str, int]:
    """``(kind, n)`` of an interleaving point: ``("after", N)``, ``("attr", 0)`` or
    ``("before", N)``; raises ValueError for anything else."""
    if isinstance(at, int) and not isinstance(at, bool) and at >= 1:
        return "after", at
    if at == POINT_ATTR:
        return "attr", 0
    if isinstance(at, str):
        word, _, n = at.partition(" ")
        if word == "before" and n.isdigit() and int(n) >= 1 and n == str(int(n)):
            return "before", int(n)
    raise ValueError(f"interleave: {at!r} is not a point (N, 'attr' or 'before N')")


def before_point(n: int) -> str:
    """The point ``before N``: at the start of the N-th listener notification."""
    return f"before {n}"
