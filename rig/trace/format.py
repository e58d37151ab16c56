"""The trace format v1: one text format for corpora, crash reports, minimizer output and
test fixtures.  The grammar is documented in corpora/README.md; keys are frozen.

    # gmem-rig trace v1
    # design=qemu-10.1 iommu=type1 ... ram=0x0+0x10000 faults=explicit seed=0 ...
    # expect: violation stale-mapping
    # any other comment
    vfio_register(0, 0x0, 0x10000)
    kvm_convert_memory(0x2000, 0x1000, shared)  (fault: vfio.dma_map=ENOSPC@2)

``parse(text, strict=True)`` rejects anything unknown with ``file:line: message``;
``strict=False`` (triage) skips what it cannot read and records a warning per skip.
``serialize(parse(text)) == text`` for canonical text, ``parse(serialize(t)) == t``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields

from rig.errors import ERRNO_BY_NAME, errno_name
from rig.check.session import Expect
from rig.world.faults import FaultSpec
from rig.world.ops import (OPS, POINT_ATTR, Op, before_point, format_arg, format_op,  # noqa: F401
                           format_props)
from rig.world.config import CONFIG_FIELDS, OPTIONAL_FIELDS, WorldConfig, parse_ram

MAGIC = "# gmem-rig trace v1"
from rig.check.oracle import INVARIANTS as INVARIANT_NAMES  # noqa: E402
_KV = re.compile(r"^[a-z_]+=\S*$")
_NAME = re.compile(r"[a-z_][a-z0-9_]*")
#: What str.splitlines() also ends a line at, besides "\n" and "\r\n".  A trace line ends
#: at "\n" only (editors and grep count lines so), and never contains one of these.
_STRAY_BREAK = re.compile("[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def split_lines(text: str) -> list[str]:
    r"""The lines of a trace: split at "\n" only, a "\r" before it dropped (CRLF text)."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def stray_break(line: str) -> str | None:
    """The error for a line holding a character some tools take as a line break, or
    None: without it, a tool splitting at that character would count lines differently."""
    m = _STRAY_BREAK.search(line)
    if m is None:
        return None
    return (f"U+{ord(m.group()):04X} {m.group()!r} at column {m.start() + 1}: only "
            "\"\\n\" (or \"\\r\\n\") ends a line of a trace")


class TraceError(ValueError):
    """A malformed trace: ``file:line: message`` naming the field."""

    def __init__(self, path: str, line: int, message: str):
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line
        self.message = message


@dataclass
class Trace:
    config: WorldConfig
    ops: list
    expect: Expect | None = None
    comments: list = field(default_factory=list)  # header comments, without "# "
    warnings: list = field(default_factory=list)  # lenient-mode skips

    def __eq__(self, other) -> bool:
        return (isinstance(other, Trace) and self.config == other.config
                and self.ops == other.ops and self.expect == other.expect
                and self.comments == other.comments)


# -- rendering ------------------------------------------------------------------------------

def format_value(name: str, value) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if name == "ram":
        return ",".join(str(r) for r in value)
    if name == "fault_sites":
        return ",".join(value) or "all"
    if name in ("dma_entry_limit", "max_memslots", "seed", "fail_nth"):
        return str(value)
    if isinstance(value, int):
        return f"0x{value:x}"
    return str(value)


def format_header(config: WorldConfig) -> str:
    return "# " + " ".join(f"{n}={format_value(n, getattr(config, n))}" for n in CONFIG_FIELDS
                           if n not in OPTIONAL_FIELDS or getattr(config, n) != _DEFAULT[n])


_DEFAULT = {n: getattr(WorldConfig(), n) for n in OPTIONAL_FIELDS}


def serialize(trace: Trace) -> str:
    """The canonical text: magic, full header, expect, comments, one op per line."""
    lines = [MAGIC, format_header(trace.config)]
    if trace.expect is not None:
        lines.append(f"# expect: {trace.expect}")
    lines += [f"# {c}" if c else "#" for c in trace.comments]
    lines += [format_op(o) for o in trace.ops]
    return "\n".join(lines) + "\n"


# -- parsing ------------------------------------------------------------------------------

_FIELD_TYPES = {f.name: f.type for f in fields(WorldConfig)}


def parse_value(name: str, text: str):
    """A header value; raises ValueError naming what is wrong."""
    if name == "ram":
        return parse_ram(text)
    if name == "fault_sites":
        return () if text == "all" else tuple(text.split(","))
    kind = _FIELD_TYPES[name]
    if "bool" in str(kind):
        if text not in ("yes", "no"):
            raise ValueError(f"{name}: {text!r} is not yes or no")
        return text == "yes"
    if "float" in str(kind):
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{name}: {text!r} is not a number") from None
    if "int" in str(kind):
        if text == "none" and "None" in str(kind):
            return None
        try:
            return int(text, 0)
        except ValueError:
            raise ValueError(f"{name}: {text!r} is not a number") from None
    return text


def parse_expect(text: str) -> Expect:
    words = text.split()
    if not words or words[0] not in ("ok", "vm_stopped", "violation") or len(words) > 2:
        raise ValueError(f"expect: {text!r} is not 'ok', 'vm_stopped [ERRNO]' or "
                         "'violation [INVARIANT]'")
    if words[0] == "ok":
        if len(words) > 1:
            raise ValueError(f"expect: 'ok' takes no argument ({text!r})")
        return Expect("ok")
    if words[0] == "vm_stopped":
        if len(words) == 1:
            return Expect("vm_stopped")
        if words[1] not in ERRNO_BY_NAME:
            raise ValueError(f"expect: unknown errno {words[1]!r}")
        return Expect("vm_stopped", -ERRNO_BY_NAME[words[1]])
    if len(words) == 2 and words[1] not in INVARIANT_NAMES:
        raise ValueError(f"expect: unknown invariant {words[1]!r}")
    return Expect("violation", None, words[1] if len(words) == 2 else None)


class Cursor:
    """A scanner over one op line (world and core traces): names match ``names``."""

    def __init__(self, text: str, names: re.Pattern = _NAME):
        self.text = text
        self.pos = 0
        self.names = names

    def skip_ws(self):
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def peek(self) -> str:
        self.skip_ws()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str, what: str):
        if self.peek() != char:
            found = self.text[self.pos:self.pos + 12] or "end of line"
            raise ValueError(f"expected {char!r} {what}, found {found!r}")
        self.pos += 1

    def name(self, what: str) -> str:
        self.skip_ws()
        m = self.names.match(self.text, self.pos)
        if not m:
            raise ValueError(f"expected {what} at {self.text[self.pos:self.pos + 12]!r}")
        self.pos = m.end()
        return m.group()

    def until(self, stops: str) -> str:
        self.skip_ws()
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in stops:
            self.pos += 1
        return self.text[start:self.pos].strip()

    def call(self, specs: dict, what: str):
        """``NAME(arg, ...)``: (name, its spec in ``specs``, the argument texts), the
        number of arguments checked against ``spec.args``."""
        name = self.name("an op name")
        spec = specs.get(name)
        if spec is None:
            raise ValueError(f"unknown {what} {name!r}")
        self.expect("(", f"after {name}")
        raw = []
        if self.peek() != ")":
            while True:
                raw.append(self.until(",)"))
                if self.peek() == ",":
                    self.pos += 1
                    continue
                break
        self.expect(")", f"closing {name}(...)")
        if len(raw) != len(spec.args):
            raise ValueError(f"{name} takes {len(spec.args)} arguments "
                             f"({', '.join(a.name for a in spec.args)}), not {len(raw)}")
        return name, spec, raw


def _parse_arg(spec_arg, text: str, op_name: str):
    where = f"{op_name}: argument {spec_arg.name}"
    if not text:
        raise ValueError(f"{where} is missing")
    if spec_arg.hex:
        if not text.lower().startswith("0x"):
            raise ValueError(f"{where} {text!r}: addresses and sizes are hex (0x...)")
        try:
            value = int(text, 16)
        except ValueError:
            raise ValueError(f"{where} {text!r} is not a hex number") from None
        if value >= 1 << 64:
            raise ValueError(f"{where} {text!r} does not fit in 64 bits")
        return value
    if spec_arg.kind == "dev":
        if not text.isdigit():
            raise ValueError(f"{where} {text!r} is not a device number")
        return int(text)
    words = spec_arg.words
    if text not in words:
        raise ValueError(f"{where} {text!r} is not {words[0]} or {words[1]}")
    return text == words[0]


def _parse_call(cur: Cursor) -> tuple[str, tuple]:
    name, spec, raw = cur.call(OPS, "op")
    return name, tuple(_parse_arg(a, t, name) for a, t in zip(spec.args, raw))


def _parse_props(cur: Cursor, strict: bool, warnings: list) -> dict:
    props: dict = {}
    cur.expect("(", "opening the properties")
    while True:
        key = cur.name("a property name")
        cur.expect(":", f"after property {key}")
        if key == "fault":
            text = cur.until(",)")
            specs = tuple(FaultSpec.parse(t) for t in text.split())
            if not specs:
                raise ValueError("fault: expected site=ERRNO[@nth[*count]][/partial]")
            props["fault"] = specs
        elif key == "interleave":
            at_text = cur.until(" \t")
            if at_text == POINT_ATTR:
                at = POINT_ATTR
            else:
                before = at_text == "before"
                if before:
                    at_text = cur.until(" \t")
                if not at_text.isdigit() or int(at_text) < 1:
                    raise ValueError(f"interleave: {at_text!r} is not a notification number "
                                     f">= 1 (points: N, before N, {POINT_ATTR})")
                at = before_point(int(at_text)) if before else int(at_text)
            name, args = _parse_call(cur)
            props["interleave"] = (at, Op(name, args))
        else:
            if strict:
                raise ValueError(f"unknown property {key!r} (fault, interleave)")
            warnings.append(f"unknown property {key!r} ignored")
            cur.until(",)")
        if cur.peek() == ",":
            cur.pos += 1
            continue
        cur.expect(")", "closing the properties")
        return props


def parse_op_line(line: str, strict: bool = True, warnings: list | None = None) -> Op:
    """One op line (a trailing ``# comment`` is allowed and ignored)."""
    warnings = [] if warnings is None else warnings
    cur = Cursor(line)
    name, args = _parse_call(cur)
    props = {}
    if cur.peek() == "(":
        props = _parse_props(cur, strict, warnings)
    rest = cur.until("")
    if rest and not rest.startswith("#"):
        raise ValueError(f"unexpected text after the op: {rest!r}")
    return Op(name, args, tuple(sorted(props.items())))


def trace_lines(text: str, path: str, strict: bool):
    """What every trace (world or core) starts with: the lines split at "\\n" only, the
    magic line checked, and ``fail(lineno, message)`` that raises (strict) or records a
    warning.  Returns (lines, body, fail, warnings); ``body`` yields (line number, the
    stripped line) for each non-blank line after the magic line, stray line breaks
    refused."""
    lines = split_lines(text)
    warnings: list = []

    def fail(lineno: int, message: str):
        if strict:
            raise TraceError(path, lineno, message)
        warnings.append(f"{path}:{lineno}: {message} (skipped)")

    if lines and stray_break(lines[0]):
        fail(1, stray_break(lines[0]))
    if not lines or lines[0].strip() != MAGIC:
        if strict:
            raise TraceError(path, 1, f"not a gmem-rig trace: the first line must be {MAGIC!r}")
        warnings.append(f"{path}:1: missing {MAGIC!r}")

    def body():
        start = 1 if lines and lines[0].strip() == MAGIC else 0
        for lineno, raw in enumerate(lines[start:], start=start + 1):
            if lineno > 1 and stray_break(raw):
                fail(lineno, stray_break(raw))
                continue
            line = raw.strip()
            if line:
                yield lineno, line

    return lines, body(), fail, warnings


def parse(text: str, path: str = "<trace>", strict: bool = True) -> Trace:
    """Parse a trace; raises TraceError(path, line, message) on malformed input (strict)
    or records a warning and skips the line (lenient)."""
    lines, body, fail, warnings = trace_lines(text, path, strict)
    values: dict = {}
    expect = None
    comments: list = []
    ops: list = []
    for lineno, line in body:
        if line.startswith("#"):
            body = line[1:].strip()
            tokens = body.split()
            if body.startswith("expect:"):
                if ops and strict:
                    fail(lineno, "the expect line belongs in the header, before the ops")
                    continue
                try:
                    expect = parse_expect(body[len("expect:"):].strip())
                except ValueError as exc:
                    fail(lineno, str(exc))
                continue
            if tokens and all(_KV.match(t) for t in tokens):
                if ops:
                    fail(lineno, "header lines come before the first op")
                    continue
                for token in tokens:
                    key, value = token.split("=", 1)
                    if key not in CONFIG_FIELDS:
                        fail(lineno, f"unknown header key {key!r}")
                        continue
                    if key in values:
                        fail(lineno, f"header key {key!r} given twice")
                        continue
                    try:
                        values[key] = parse_value(key, value)
                    except ValueError as exc:
                        fail(lineno, str(exc))
                continue
            if not ops:
                comments.append(body)
            continue
        try:
            ops.append(parse_op_line(line, strict, warnings))
        except ValueError as exc:
            fail(lineno, str(exc))
    try:
        config = WorldConfig(**values).validate()
    except (ValueError, TypeError) as exc:
        # A header that asks for an impossible world: name the field, on its line.
        key = str(exc).split(":", 1)[0]
        lineno = next((i for i, raw in enumerate(lines, 1)
                       if raw.startswith("#") and f" {key}=" in f" {raw[1:]}"), 2)
        raise TraceError(path, lineno, f"impossible world: {exc}") from None
    return Trace(config, ops, expect, comments, warnings)


def load(path: str, strict: bool = True) -> Trace:
    try:
        with open(path, encoding="utf-8", newline="") as f:  # (lines end at "\n" only)
            text = f.read()
    except UnicodeDecodeError:
        raise TraceError(path, 1, "not a text trace (binary data)") from None
    return parse(text, path, strict)


def is_trace(data: bytes) -> bool:
    return data.lstrip().startswith(MAGIC.encode())


# -- op-level mutation (the trace_text fuzz harness) -----------------------------------------

def mutate_trace(trace: Trace, rng) -> Trace:
    """One structured mutation: insert, delete, swap or duplicate ops, change a size or an
    offset, toggle a fault property or an interleaving.  Deterministic for a given rng."""
    from rig.world.faults import SITES

    ops = list(trace.ops)
    bs = trace.config.block_size
    ram = trace.config.ram
    choice = rng.randrange(7)

    def random_gpa() -> int:
        block = ram[rng.randrange(len(ram))]
        return block.gpa + rng.randrange(max(1, block.size // bs)) * bs

    if not ops or choice == 0:  # insert a conversion or a touch
        gpa = random_gpa()
        new = (Op("kvm_convert_memory", (gpa, bs * (1 + rng.randrange(4)), bool(rng.randrange(2))))
               if rng.randrange(3) else Op("guest_touch", (gpa,)))
        ops.insert(rng.randrange(len(ops) + 1), new)
    elif choice == 1 and len(ops) > 1:
        del ops[rng.randrange(len(ops))]
    elif choice == 2 and len(ops) > 1:
        i, j = rng.randrange(len(ops)), rng.randrange(len(ops))
        ops[i], ops[j] = ops[j], ops[i]
    elif choice == 3:
        i = rng.randrange(len(ops))
        ops.insert(i, ops[i])
    elif choice == 4:  # change a size or an offset
        i = rng.randrange(len(ops))
        o = ops[i]
        spec = OPS[o.name]
        ints = [k for k, a in enumerate(spec.args) if a.hex]
        if ints:
            k = ints[rng.randrange(len(ints))]
            delta = bs * rng.choice((-2, -1, 1, 2))
            value = max(0, o.args[k] + delta)
            ops[i] = Op(o.name, o.args[:k] + (value,) + o.args[k + 1:], o.props)
    elif choice == 5:  # toggle a fault property
        i = rng.randrange(len(ops))
        o = ops[i]
        if o.prop("fault"):
            ops[i] = o.with_props(fault=None)
        else:
            site = SITES[rng.choice(sorted(SITES))]
            errno = -site.errnos[rng.randrange(len(site.errnos))]
            partial = rng.randrange(3) if site.partial else None
            ops[i] = o.with_props(fault=(FaultSpec(site.name, errno, 1 + rng.randrange(2), partial),))
    else:  # toggle an interleaving, or move it to another point
        i = rng.randrange(len(ops))
        o = ops[i]
        present = o.prop("interleave")
        if present and rng.randrange(2):
            ops[i] = o.with_props(interleave=None)
        elif present:
            ops[i] = o.with_props(interleave=(_random_point(rng), present[1]))
        else:
            if o.name == "kvm_convert_memory" and rng.randrange(2):
                # Race back over the op's own pages: the same range, the other way.
                nested = Op("kvm_convert_memory", (o.args[0], o.args[1], not o.args[2]))
            else:
                nested = Op("kvm_convert_memory", (random_gpa(), bs, bool(rng.randrange(2))))
            ops[i] = o.with_props(interleave=(_random_point(rng), nested))
    return Trace(trace.config, ops, trace.expect, trace.comments)


def _random_point(rng):
    """An interleaving point for the mutator: after the 1st..3rd notification, before
    the 1st or 2nd, or after KVM_SET_MEMORY_ATTRIBUTES (rig.world.ops.interleave_point)."""
    return (1, 2, 3, before_point(1), before_point(2), POINT_ATTR)[rng.randrange(6)]
