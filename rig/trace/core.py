"""Core traces: the core differential's op streams in the trace format v1, and their
minimizer.  The grammar is documented in corpora/README.md (``Core traces``); keys, op
names and argument words are frozen.

    # gmem-rig trace v1
    # core nblocks=8 block_size=0x1000 rollback=listeners iommu=type1 dma_entry_limit=12
    # expect: mismatch order in state_change
    register_listener(R0, 0x0, 0x8000, 0x100000000)
    arm(R0, ENOMEM)
    nest(R1)  (nested: 2 state_change(0x2000, 0x1000, discard))
    state_change(0x0, 0x4000, populate)

A world trace and a core trace share the magic line; the line after it tells them apart
(a world header has only ``key=value`` words, a core header starts with the word
``core``), so every world trace parses and serializes as it always did.  A core trace
runs on every implementation of the core at once (the Cython core, the pure-Python twin,
the reference model: rig.check.differential), and its outcome is ``ok`` or the first
disagreement: ``mismatch WHAT in OP`` at op k, where WHAT is ``result``, ``order`` (the
ordering oracle) or the state key that differs (``differential.STATE_KEYS``).

``parse(text, strict=True)`` rejects anything unknown with ``file:line: message``;
``strict=False`` (triage) skips what it cannot read and records a warning per skip.
``serialize(parse(text)) == text`` for canonical text, ``parse(serialize(t)) == t``.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field, replace

from rig.check.differential import (CORE_OPS, CORE_WORDS, MISMATCH_KINDS, NESTABLE, CoreConfig,
                                    DifferentialMismatch, OrderViolation, build_core_op,
                                    core_op_name, core_op_parts, format_core_op, run)
from rig.core import ROLLBACK_POLICIES
from rig.errors import ERRNO_BY_NAME
from rig.trace.format import MAGIC, Cursor, TraceError, split_lines, trace_lines
from rig.trace.minimize import write_new

#: The core header's keys, in canonical order (CoreConfig's fields).  ``mutant`` (added
#: with the bug benchmark; absent = the package's core, so older traces mean what they
#: meant) is written only when set.
CORE_FIELDS = ("nblocks", "block_size", "rollback", "iommu", "dma_entry_limit", "mutant")
ROLLBACKS = ROLLBACK_POLICIES  # append-only, as the core keeps it
IOMMUS = ("type1", "iommufd")
#: More blocks than any decoder or test uses, few enough that a hand-edited header
#: cannot ask for a region the model's bit sets take seconds to walk.
NBLOCKS_MAX = 4096
_CORE_HEADER = re.compile(r"^#\s*core(\s.*)?$")
_KV = re.compile(r"^[a-z_]+=\S*$")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: Runs one minimization may spend before it stops shrinking (it still keeps its best).
RUNS_MAX = 20000


@dataclass(frozen=True)
class CoreOutcome:
    """``ok``, or the first disagreement: ``what`` (``result``, ``order`` or a state
    key) after op ``op_index``, whose name is ``op``."""

    kind: str                        # ok | mismatch
    op_index: int | None = None
    what: str | None = None
    op: str | None = None
    error: DifferentialMismatch | None = field(default=None, compare=False)

    @classmethod
    def of(cls, error: DifferentialMismatch | None) -> "CoreOutcome":
        if error is None:
            return cls("ok")
        return cls("mismatch", error.index, error.what, core_op_name(error.op), error)

    def __str__(self) -> str:
        return str(CoreExpect.of(self))

    def describe(self) -> str:
        """``mismatch order in state_change at op 3``."""
        return "ok" if self.kind == "ok" else f"{self} at op {self.op_index}"


@dataclass(frozen=True)
class CoreExpect:
    """What a core trace's ``# expect:`` line says: ``ok``, or ``mismatch`` with the
    kind of disagreement and the op kind when given (None matches any)."""

    kind: str                # ok | mismatch
    what: str | None = None
    op: str | None = None

    @classmethod
    def of(cls, outcome: CoreOutcome) -> "CoreExpect":
        return cls(outcome.kind, outcome.what, outcome.op)

    def __str__(self) -> str:
        if self.kind == "ok":
            return "ok"
        return " ".join(["mismatch"] + ([self.what] if self.what else [])
                        + ([f"in {self.op}"] if self.op else []))

    def matches(self, outcome: CoreOutcome) -> bool:
        return (outcome.kind == self.kind
                and (self.what is None or outcome.what == self.what)
                and (self.op is None or outcome.op == self.op))


@dataclass
class CoreTrace:
    config: CoreConfig
    ops: list                                     # op tuples (rig.check.differential)
    expect: CoreExpect | None = None
    comments: list = field(default_factory=list)  # header comments, without "# "
    warnings: list = field(default_factory=list)  # lenient-mode skips

    def __eq__(self, other) -> bool:
        return (isinstance(other, CoreTrace) and self.config == other.config
                and self.ops == other.ops and self.expect == other.expect
                and self.comments == other.comments)


# -- rendering ------------------------------------------------------------------------------

def format_core_header(config: CoreConfig) -> str:
    """``# core nblocks=8 block_size=0x1000 ...``: sizes in hex, counts in decimal."""
    return f"# core {config}"


def serialize(trace: CoreTrace) -> str:
    """The canonical text: magic, full core header, expect, comments, one op per line."""
    lines = [MAGIC, format_core_header(trace.config)]
    if trace.expect is not None:
        lines.append(f"# expect: {trace.expect}")
    lines += [f"# {c}" if c else "#" for c in trace.comments]
    lines += [format_core_op(o) for o in trace.ops]
    return "\n".join(lines) + "\n"


# -- parsing ------------------------------------------------------------------------------

def is_core_trace(text: str) -> bool:
    """Whether ``text`` is a core trace: its first line that is neither blank nor the
    magic line is a core header."""
    for line in split_lines(text):
        line = line.strip()
        if line and line != MAGIC:
            return bool(_CORE_HEADER.match(line))
    return False


def parse_core_header(body: str) -> dict:
    """The ``key=value`` words after ``core``; raises ValueError naming the key."""
    values: dict = {}
    for token in body.split()[1:]:
        key, eq, text = token.partition("=")
        if not eq or not _KV.match(token):
            raise ValueError(f"core header: {token!r} is not key=value")
        if key not in CORE_FIELDS:
            raise ValueError(f"unknown core header key {key!r} ({', '.join(CORE_FIELDS)})")
        if key in values:
            raise ValueError(f"core header key {key!r} given twice")
        values[key] = _parse_header_value(key, text)
    return values


def _parse_header_value(key: str, text: str):
    if key in ("nblocks", "dma_entry_limit"):
        if not text.isdigit():
            raise ValueError(f"{key}: {text!r} is not a decimal count")
        value = int(text)
        if key == "nblocks" and not 1 <= value <= NBLOCKS_MAX:
            raise ValueError(f"nblocks: {value} is not in 1..{NBLOCKS_MAX}")
        if key == "dma_entry_limit" and value >= 1 << 64:  # type1's is an unsigned long
            raise ValueError(f"dma_entry_limit: {value} is not within 0..2^64-1")
        return value
    if key == "block_size":
        if not text.lower().startswith("0x"):
            raise ValueError(f"block_size: {text!r}: sizes are hex (0x...)")
        try:
            value = int(text, 16)
        except ValueError:
            raise ValueError(f"block_size: {text!r} is not a hex number") from None
        if value & (value - 1) or not 0x1000 <= value <= 0x200000:
            raise ValueError(f"block_size: {text} is not a power of two in 0x1000..0x200000")
        return value
    if key == "mutant":
        from rig.core.mutants import CORE_MUTANTS

        if text not in CORE_MUTANTS:
            raise ValueError(f"mutant: {text!r} is not a core mutant (one of "
                             f"{', '.join(CORE_MUTANTS)})")
        return text
    words = ROLLBACKS if key == "rollback" else IOMMUS
    if text not in words:
        raise ValueError(f"{key}: {text!r} is not one of {', '.join(words)}")
    return text


def parse_core_expect(text: str) -> CoreExpect:
    words = text.split()
    if words == ["ok"]:
        return CoreExpect("ok")
    if not words or words[0] != "mismatch":
        raise ValueError(f"expect: {text!r} is not 'ok' or 'mismatch [WHAT] [in OP]'")
    what = op = None
    rest = words[1:]
    if rest and rest[0] != "in":
        what = rest.pop(0)
        if what not in MISMATCH_KINDS:
            raise ValueError(f"expect: unknown kind of mismatch {what!r} "
                             f"({', '.join(MISMATCH_KINDS)})")
    if rest:
        if rest[0] != "in" or len(rest) != 2:
            raise ValueError(f"expect: {text!r} is not 'mismatch [WHAT] [in OP]'")
        op = rest[1]
        if op not in CORE_OPS:
            raise ValueError(f"expect: unknown core op {op!r}")
    return CoreExpect("mismatch", what, op)


def _parse_arg(arg, text: str, op_name: str):
    where = f"{op_name}: argument {arg.name}"
    if not text:
        raise ValueError(f"{where} is missing")
    if arg.kind == "hex":
        if not text.lower().startswith("0x"):
            raise ValueError(f"{where} {text!r}: addresses, sizes and bits are hex (0x...)")
        try:
            value = int(text, 16)
        except ValueError:
            raise ValueError(f"{where} {text!r} is not a hex number") from None
        if value >= 1 << 64:
            raise ValueError(f"{where} {text!r} does not fit in 64 bits")
        return value
    if arg.kind == "count":
        if not text.isdigit():
            raise ValueError(f"{where} {text!r} is not a decimal count")
        return int(text)
    if arg.kind == "errno":
        if text not in ERRNO_BY_NAME:
            raise ValueError(f"{where}: unknown errno {text!r}")
        return -ERRNO_BY_NAME[text]
    if arg.kind.startswith("enum:"):
        a, b = arg.kind[5:].split("|")
        if text not in (a, b):
            raise ValueError(f"{where} {text!r} is not {a} or {b}")
        return text == a
    words = CORE_WORDS[arg.kind]
    if text not in words:
        raise ValueError(f"{where} {text!r} is not a {arg.kind} ({', '.join(words)})")
    return text


def _parse_op(cur: Cursor) -> tuple:
    """A call and, for a nest, its ``(nested: CALLBACKS CALL)`` property."""
    name, spec, raw = cur.call(CORE_OPS, "core op")
    args = tuple(_parse_arg(a, t, name) for a, t in zip(spec.args, raw))
    if not spec.nested:
        if cur.peek() == "(":
            raise ValueError(f"{name} takes no properties (only nest has one: nested)")
        return build_core_op(name, args)
    if cur.peek() != "(":
        raise ValueError(f"{name}: the nested op is missing ({name}(R)  (nested: CALLBACKS CALL))")
    cur.pos += 1
    key = cur.name("a property name")
    if key != "nested":
        raise ValueError(f"unknown property {key!r} of {name} (nested)")
    cur.expect(":", "after property nested")
    text = cur.until(" \t")
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"nested: {text!r} is not a callback number >= 1")
    inner = _parse_op(cur)
    if inner[0] not in NESTABLE:
        raise ValueError(f"nested: a callback runs the manager's ops only "
                         f"(not {core_op_name(inner)})")
    cur.expect(")", "closing the properties")
    return build_core_op(name, args, (int(text), inner))


def parse_core_op_line(line: str) -> tuple:
    """One op line (a trailing ``# comment`` is allowed and ignored)."""
    cur = Cursor(line, _NAME)
    op = _parse_op(cur)
    rest = cur.until("")
    if rest and not rest.startswith("#"):
        raise ValueError(f"unexpected text after the op: {rest!r}")
    return op


def parse(text: str, path: str = "<trace>", strict: bool = True) -> CoreTrace:
    """Parse a core trace; raises TraceError(path, line, message) on malformed input
    (strict) or records a warning and skips the line (lenient)."""
    _, body, fail, warnings = trace_lines(text, path, strict)
    values: dict | None = None
    expect = None
    comments: list = []
    ops: list = []
    for lineno, line in body:
        if line.startswith("#"):
            body = line[1:].strip()
            if _CORE_HEADER.match(line):
                if values is not None:
                    fail(lineno, "the core header is given twice")
                    continue
                if ops or expect is not None or comments:
                    fail(lineno, "the core header is the first line after the magic line")
                    continue
                try:
                    values = parse_core_header(body)
                except ValueError as exc:
                    fail(lineno, str(exc))
                    values = {}
                continue
            if values is None:
                fail(lineno, "a core trace starts with its '# core ...' header line")
                values = {}
            if body.startswith("expect:"):
                if ops:
                    fail(lineno, "the expect line belongs in the header, before the ops")
                    continue
                try:
                    expect = parse_core_expect(body[len("expect:"):].strip())
                except ValueError as exc:
                    fail(lineno, str(exc))
                continue
            tokens = body.split()
            if tokens and all(_KV.match(t) for t in tokens):
                # A world header line: in a core trace it would be silently ignored.
                fail(lineno, f"{tokens[0].split('=')[0]!r} is not a core header key: the "
                     "core header is one '# core ...' line")
                continue
            if not ops:
                comments.append(body)
            continue
        if values is None:
            fail(lineno, "a core trace starts with its '# core ...' header line")
            values = {}
        try:
            ops.append(parse_core_op_line(line))
        except ValueError as exc:
            fail(lineno, str(exc))
    return CoreTrace(CoreConfig(**(values or {})), ops, expect, comments, warnings)


def load(path: str, strict: bool = True) -> CoreTrace:
    try:
        with open(path, encoding="utf-8", newline="") as f:  # (lines end at "\n" only)
            text = f.read()
    except UnicodeDecodeError:
        raise TraceError(path, 1, "not a text trace (binary data)") from None
    return parse(text, path, strict)


# -- running ------------------------------------------------------------------------------

@dataclass
class CoreStep:
    index: int
    op: tuple
    results: dict         # implementation -> what _call returned
    states: dict | None   # implementation -> state after the op (None: not taken)


@dataclass
class CoreRunResult:
    outcome: CoreOutcome
    steps: list
    impls: tuple


def run_core(config: CoreConfig, ops, impls) -> CoreRunResult:
    """Run ``ops`` on every implementation in ``impls``, step by step, up to the first
    disagreement.  A trace of a core mutant runs only on that mutant's core
    (CoreMutantError otherwise: ``rig`` re-executes on it)."""
    from rig.core import MUTANT
    from rig.core.mutants import CoreMutantError

    if config.mutant and config.mutant != MUTANT:
        raise CoreMutantError(
            f"this core trace is of core mutant {config.mutant!r} and this process's core is "
            f"{'mutant ' + repr(MUTANT) if MUTANT else 'the package'}'s: run it through "
            f"`rig`, which re-executes on that mutant's core")
    steps: list = []
    error = None
    try:
        run(ops, config, impls,
            observe=lambda i, op, results, states: steps.append(CoreStep(i, op, results, states)))
    except DifferentialMismatch as exc:
        error = exc
    return CoreRunResult(CoreOutcome.of(error), steps, tuple(impls))


# -- minimizing ---------------------------------------------------------------------------

class CoreMinimizer:
    """Shrink a core trace to the smallest one that still disagrees the same way (the
    same kind of mismatch in the same op kind: the finding's signature), with
    deterministic passes run to a fixed point: cut the ops after the failing one, drop
    ops (chunks, then one by one), unfold or simplify nests, shrink arguments toward 0
    and names toward the first listener or container, then simplify the header."""

    def __init__(self, trace: CoreTrace, impls):
        self.impls = tuple(impls)
        self.runs = 0
        first = self.run(trace.config, trace.ops)
        if first.outcome.kind == "ok":
            raise ValueError("the core trace does not fail: nothing to minimize")
        self.target = CoreExpect.of(first.outcome)
        self.trace = CoreTrace(trace.config, list(trace.ops), self.target, [])
        self.result = first

    def run(self, config: CoreConfig, ops) -> CoreRunResult:
        self.runs += 1
        return run_core(config, ops, self.impls)

    def try_(self, config: CoreConfig, ops) -> bool:
        if self.runs >= RUNS_MAX:
            return False
        result = self.run(config, ops)
        if self.target.matches(result.outcome):
            self.trace = CoreTrace(config, list(ops), self.target, [])
            self.result = result
            return True
        return False

    def _replace(self, i: int, replacement: list) -> bool:
        ops = self.trace.ops
        return self.try_(self.trace.config, ops[:i] + replacement + ops[i + 1:])

    # -- passes --------------------------------------------------------------------------
    def cut_tail(self) -> bool:
        index = self.result.outcome.op_index
        if index is None or index + 1 >= len(self.trace.ops):
            return False
        return self.try_(self.trace.config, self.trace.ops[:index + 1])

    def drop_ops(self) -> bool:
        changed = False
        chunk = max(1, len(self.trace.ops) // 2)
        while chunk >= 1:
            i = 0
            while i < len(self.trace.ops):
                ops = self.trace.ops
                if self.try_(self.trace.config, ops[:i] + ops[i + chunk:]):
                    changed = True  # keep the index: the next op moved here
                else:
                    i += chunk
            chunk //= 2
        return changed

    def unnest(self) -> bool:
        """A nest becomes its nested op, run directly, or fires at its first callback."""
        changed = False
        for i in range(len(self.trace.ops)):
            if i >= len(self.trace.ops) or self.trace.ops[i][0] != "nest":
                continue
            _, who, callbacks, inner = self.trace.ops[i]
            candidates = [[inner]]
            if callbacks > 1:
                candidates.append([("nest", who, 1, inner)])
            for replacement in candidates:
                if self._replace(i, replacement):
                    changed = True
                    break
        return changed

    def shrink_args(self) -> bool:
        changed = False
        for i in range(len(self.trace.ops)):
            for candidate in _smaller_ops(self.trace.ops[i], self.trace.config):
                if self._replace(i, [candidate]):
                    changed = True
                    break
        return changed

    def simplify_header(self) -> bool:
        """Defaults for every key but nblocks, then fewer blocks (halved while it still
        fails: the default is no simpler than a smaller region)."""
        changed = False
        default = CoreConfig()
        # (never ``mutant``: the trace shows the defect of that core, and a minimizer
        # running on it would find the header "simpler" without the name.)
        for name in CORE_FIELDS[1:-1]:
            cfg = self.trace.config
            if getattr(cfg, name) != getattr(default, name):
                changed |= self.try_(replace(cfg, **{name: getattr(default, name)}), self.trace.ops)
        while self.trace.config.nblocks > 1 and self.try_(
                replace(self.trace.config, nblocks=self.trace.config.nblocks // 2), self.trace.ops):
            changed = True
        return changed

    def minimize(self) -> CoreTrace:
        self.cut_tail()
        for _ in range(50):  # fixed point, bounded
            before = serialize(self.trace)
            self.cut_tail()
            self.drop_ops()
            self.unnest()
            self.shrink_args()
            self.simplify_header()
            if serialize(self.trace) == before or self.runs >= RUNS_MAX:
                break
        return self.trace


def _smaller_ops(op: tuple, config: CoreConfig):
    """Candidate ops one argument smaller than ``op``, most aggressive first: hex values
    toward 0 (0, aligned down, half, one unit less), counts toward 0, names toward the
    first of their kind; the nested op of a nest shrinks the same way."""
    spec, args, nested = core_op_parts(op)
    unit = 1 if spec.kind == "bitmap" else 0x1000 if spec.kind in ("map", "unmap", "translate") \
        else config.block_size
    for k, arg in enumerate(spec.args):
        value = args[k]
        if arg.kind == "hex":
            tries = [0, value // unit * unit, value // 2 // unit * unit, value - unit]
            if arg.name in ("size", "nr"):
                tries.insert(0, unit)
        elif arg.kind == "count":
            tries = [0, 1]
        elif arg.kind in CORE_WORDS:
            tries = [CORE_WORDS[arg.kind][0]]
        else:
            tries = []
        seen = set()
        for t in tries:
            better = (0 <= t < value) if arg.kind in ("hex", "count") else t != value
            if better and t not in seen:
                seen.add(t)
                yield build_core_op(spec.name, args[:k] + (t,) + args[k + 1:], nested)
    if nested is not None:
        callbacks, inner = nested
        for smaller in _smaller_ops(inner, config):
            yield build_core_op(spec.name, args, (callbacks, smaller))


def symptom(error: DifferentialMismatch) -> str:
    """The disagreement in one line, for a minimized trace's header comment."""
    detail = [line.strip() for line in str(error).splitlines()[1:]]
    if isinstance(error, OrderViolation):
        return f"notification order: {'; '.join(detail)}"
    return f"{error.what} differs: {'; '.join(detail)}"


def finalize(minimizer: CoreMinimizer, original_ops: int) -> CoreTrace:
    """The minimized trace with its symptom in a header comment."""
    trace = minimizer.trace
    comments = [f"symptom: {symptom(minimizer.result.outcome.error)}",
                f"minimized by rig minimize from {original_ops} to {len(trace.ops)} ops "
                f"({minimizer.runs} runs)"]
    return CoreTrace(trace.config, trace.ops, trace.expect, comments)


def canonical_hash(trace: CoreTrace) -> str:
    text = serialize(CoreTrace(trace.config, trace.ops, trace.expect))
    return hashlib.sha256(text.encode()).hexdigest()


def file_name(trace: CoreTrace, digest: str) -> str:
    """``core-order-state_change-listeners-1a2b3c4d.trace``: what disagrees, in which
    op, under which rollback policy."""
    expect = trace.expect
    if expect is None or expect.kind == "ok":
        what = "ok"
    else:
        what = "-".join(w for w in (expect.what or "mismatch", expect.op) if w)
    return f"core-{what}-{trace.config.rollback}-{digest[:8]}.trace"


def write(trace: CoreTrace, directory: str) -> tuple[str, bool]:
    """Write atomically under its canonical name; returns (path, created)."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, file_name(trace, canonical_hash(trace)))
    return write_new(path, serialize(trace))
