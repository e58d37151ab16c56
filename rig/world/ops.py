"""The one vocabulary of operations, used by every driver (traces, fuzzers, hypothesis
state machines, sweeps).  An op is a name, positional arguments, and properties.

Arguments are device numbers, addresses and sizes in bytes, or the words of the op's
enumeration (``private``/``shared``, ``read``/``write``); properties carry what is not an
argument of the real call: injected faults, and an interleaving point.

The registry.  Each op is declared once, where it is implemented: a ``World.op_<name>``
method in rig/world/world.py decorated with ``@world_op(id, doc, args, ...)``, which
records its ``OpSpec`` in ``OPS``.  The spec is everything a driver needs, as data: the
arg kinds (how to parse, print, draw, mutate and shrink each argument) and the drawing
hints below.  This module does not import world.py; the package rig.world does, so the
registry is complete as soon as anything in rig.world has been imported.

Ids are explicit and append-only: the decoder's swarm mask gives op ``id`` bit ``id``
(rig.trace.decode), so an id that changed or was reused would change the meaning of
every saved fuzz input.  A new op takes the next free id; an op that is removed keeps
its id retired.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable

from rig.errors import errno_name

#: Argument kinds.  ``dev``: a device number (decimal in traces); ``addr``: a guest-physical
#: address or an IOVA, and ``size``: a length in bytes (both hex); ``enum:<a>|<b>``: one of
#: two words, ``a`` -> True.  A ``size`` right after an ``addr`` makes the two a range,
#: which drivers draw together (a range inside RAM, or a whole RAM block).
ARG_KINDS = ("dev", "addr", "size")
HEX_KINDS = ("addr", "size")


@dataclass(frozen=True)
class ArgSpec:
    name: str
    kind: str  # one of ARG_KINDS, or "enum:<a>|<b>" (a -> True)

    def __post_init__(self):
        if self.kind not in ARG_KINDS and self.words is None:
            raise ValueError(f"argument {self.name}: unknown kind {self.kind!r}")

    @property
    def words(self) -> tuple[str, str] | None:
        if not self.kind.startswith("enum:"):
            return None
        words = tuple(self.kind[5:].split("|"))
        if len(words) != 2 or not all(words) or words[0] == words[1]:
            raise ValueError(f"argument {self.name}: {self.kind!r} is not enum:<a>|<b>")
        return words

    @property
    def hex(self) -> bool:
        return self.kind in HEX_KINDS


@dataclass(frozen=True)
class OpSpec:
    """One op of the registry (see the module docstring).

    The hints say how drivers draw the op beyond its arg kinds: ``interleave``, it may
    carry an ``interleave`` property (drivers draw one for it); ``nested``, it is the op
    drivers interleave into others (one op of the registry is); ``whole_blocks``, its
    range is mostly a whole RAM block, as the sections QEMU registers listeners on are;
    ``junk``, its addresses and sizes may be junk even when the decoder's swarm turns
    junk ranges off (what it does with one is an error the oracle judges, not a VM stop).
    ``impl`` is the ``World.op_<name>`` method that applies it.
    """

    name: str
    id: int
    args: tuple[ArgSpec, ...]
    doc: str
    interleave: bool = False
    nested: bool = False
    whole_blocks: bool = False
    junk: bool = False
    impl: Callable | None = field(default=None, compare=False, repr=False)
    #: The arguments in drawing units: ``(i,)`` for one argument, ``(i, i + 1)`` for a
    #: range (an ``addr`` followed by a ``size``).
    groups: tuple[tuple[int, ...], ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self):
        groups, i = [], 0
        while i < len(self.args):
            if (self.args[i].kind == "addr" and i + 1 < len(self.args)
                    and self.args[i + 1].kind == "size"):
                groups.append((i, i + 1))
                i += 2
            else:
                groups.append((i,))
                i += 1
        object.__setattr__(self, "groups", tuple(groups))

    def first_range(self, args: tuple) -> tuple[int, int] | None:
        """The ``(addr, size)`` of the first range among ``args`` (this op's), if any."""
        for group in self.groups:
            if len(group) == 2:
                return args[group[0]], args[group[1]]
        return None


#: Every op the world understands, by name (QEMU spellings where QEMU has one), in id
#: order.  Filled by ``world_op`` as rig/world/world.py is imported.
OPS: dict[str, OpSpec] = {}


def parse_args(args) -> tuple[ArgSpec, ...]:
    """``("dev:dev", "gpa:addr", ...)`` -> ArgSpecs."""
    parsed = []
    for a in args:
        name, sep, kind = a.partition(":")
        if not sep or not name.isidentifier():
            raise ValueError(f"argument {a!r} is not <name>:<kind>")
        parsed.append(ArgSpec(name, kind))
    return tuple(parsed)


def register(spec: OpSpec) -> OpSpec:
    """Add ``spec`` to ``OPS``: its name and its id must be new, and at most one op is
    the nested one.  ``OPS`` stays in id order."""
    if not spec.name.isidentifier():
        raise ValueError(f"op name {spec.name!r} is not an identifier")
    if not isinstance(spec.id, int) or isinstance(spec.id, bool) or spec.id < 0:
        raise ValueError(f"op {spec.name}: id {spec.id!r} is not an int >= 0")
    if spec.name in OPS:
        raise ValueError(f"op {spec.name} is registered twice")
    for other in OPS.values():
        if other.id == spec.id:
            raise ValueError(f"op {spec.name}: id {spec.id} is already {other.name}'s")
        if other.nested and spec.nested:
            raise ValueError(f"op {spec.name}: {other.name} is already the nested op")
    specs = sorted([*OPS.values(), spec], key=lambda s: s.id)
    OPS.clear()
    OPS.update((s.name, s) for s in specs)
    return spec


def world_op(id: int, doc: str, args: tuple[str, ...] = (), *, interleave: bool = False,
             nested: bool = False, whole_blocks: bool = False, junk: bool = False):
    """Declare the ``World.op_<name>`` method it decorates as op ``<name>`` with ``id``
    (explicit, append-only), ``doc`` and ``args`` (``"<name>:<kind>"``, ARG_KINDS), plus
    the drawing hints of OpSpec.  The method's parameters after ``self`` must be the
    declared arguments, by name, in order."""
    parsed = parse_args(args)

    def declare(fn):
        name = fn.__name__
        if not name.startswith("op_"):
            raise ValueError(f"{name}: an op's method is named op_<name>")
        params = list(inspect.signature(fn).parameters)[1:]
        if params != [a.name for a in parsed]:
            raise ValueError(f"{name}{tuple(params)} does not take the declared arguments "
                             f"{tuple(a.name for a in parsed)}")
        register(OpSpec(name[3:], id, parsed, doc, interleave=interleave, nested=nested,
                        whole_blocks=whole_blocks, junk=junk, impl=fn))
        return fn

    return declare


def nested_op() -> OpSpec:
    """The op drivers interleave into others (the spec with ``nested``)."""
    for spec in OPS.values():
        if spec.nested:
            return spec
    raise LookupError("no op of the registry is the nested one")


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
    if kind in HEX_KINDS:
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


def format_result(result) -> str:
    if isinstance(result, bool) or result is None:
        return str(result)
    if isinstance(result, int):
        return f"-{errno_name(result)}" if result < 0 else str(result)
    if isinstance(result, tuple):
        return "[" + ", ".join(f"0x{s[0]:x}+0x{s[1]:x}@0x{s[2]:x}" for s in result) + "]"
    return repr(result)


def format_point(at) -> str:
    """An interleaving point in words (rig.world.ops.interleave_point)."""
    kind, n = interleave_point(at)
    if kind == "attr":
        return "after KVM_SET_MEMORY_ATTRIBUTES"
    return f"{kind} notification {n}"


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
