"""``rig replay``: run a trace (or a raw crash file) and print, op by op, what happened.

The text output is the rig's user interface for a finding, so it is tested exactly: a
header (source, config, fault mode), then each op with its result, the faults injected
during it, its notable state changes and events, and the violations the oracle found,
then the outcome and how it compares with the trace's ``# expect:`` line.
"""

from __future__ import annotations

from dataclasses import dataclass

from rig.errors import errno_name
from rig.world.ops import interleave_point
from rig.check.session import RunResult, run
from rig.trace.format import Trace, TraceError, format_header, format_op, is_trace, parse
from rig.world.host import PAGE_SIZE


@dataclass
class Loaded:
    trace: Trace | None  # None: a raw input for a harness that does not decode to a trace
    source: str          # "trace" | "raw"
    harness: str | None = None
    data: bytes = b""


def replay_raw(loaded: Loaded, path: str) -> tuple[int, list[str]]:
    """A raw input for a core or canary harness: its decoded form, then what it does."""
    from rig.drive import harnesses

    harness = harnesses.harness_for(loaded.harness)
    lines = [f"replay: {path} (raw input, harness {loaded.harness})"]
    lines += [f"  {line}" for line in harness.explain(loaded.data)]
    try:
        harness.one_input(loaded.data)
    except AssertionError as exc:  # a Finding or a DifferentialMismatch
        lines.append("outcome: finding")
        lines += [f"  {line}" for line in str(exc).splitlines()]
        return 2, lines
    lines.append("outcome: ok")
    return 0, lines


def load_input(path: str, harness: str | None = None, strict: bool = True) -> Loaded:
    """A trace (a ``.trace`` file, or any file starting with the magic line) or a raw
    libFuzzer input decoded for ``harness``."""
    from rig.drive import harnesses

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise TraceError(path, 0, f"cannot read: {exc.strerror}") from None
    if is_trace(data) or path.endswith(".trace"):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise TraceError(path, 1, "not UTF-8 text") from None
        return Loaded(parse(text, path, strict), "trace")
    name = harness or harnesses.DEFAULT
    if name not in harnesses.HARNESSES:
        raise TraceError(path, 0, f"unknown harness {name!r} (one of "
                         f"{', '.join(harnesses.HARNESSES)}, optionally NAME:DESIGN)")
    if name.split(":")[0] not in harnesses.WORLD_HARNESSES:
        return Loaded(None, "raw", name, data)
    trace = harnesses.HARNESSES[name].to_trace(data)
    if trace is None:
        raise TraceError(path, 0, f"harness {name}: the input is not a trace")
    return Loaded(trace, "raw", name)


# -- what changed during an op ------------------------------------------------------------

def _runs(gfns) -> list[str]:
    out, gfns = [], sorted(gfns)
    i = 0
    while i < len(gfns):
        j = i
        while j + 1 < len(gfns) and gfns[j + 1] == gfns[j] + 1:
            j += 1
        out.append(f"0x{gfns[i] * PAGE_SIZE:x}+0x{(j - i + 1) * PAGE_SIZE:x}")
        i = j + 1
    return out


def changes(before: dict, after: dict, world) -> list[str]:
    """Notable state changes between two world snapshots, in hex."""
    out = []
    was, now = set(before["kvm private"]), set(after["kvm private"])
    if now - was:
        out.append("kvm private: " + ", ".join(_runs(now - was)))
    if was - now:
        out.append("kvm shared: " + ", ".join(_runs(was - now)))
    for block, a, b in zip(world.blocks, before["bitmaps"], after["bitmaps"]):
        added, removed = sorted(set(b) - set(a)), sorted(set(a) - set(b))
        if added or removed:
            parts = ([f"+{_bits(added)}"] if added else []) + ([f"-{_bits(removed)}"] if removed else [])
            out.append(f"bitmap {block.name}: {' '.join(parts)}")
    maps_a, maps_b = dict(before["mappings"]), dict(after["mappings"])
    for dev in sorted(set(maps_a) | set(maps_b)):
        a, b = len(maps_a.get(dev, ())), len(maps_b.get(dev, ()))
        if dev not in maps_a:
            out.append(f"vfio{dev} plugged: {b} mappings")
        elif dev not in maps_b:
            out.append(f"vfio{dev} unplugged (had {a} mappings)")
        elif maps_a[dev] != maps_b[dev]:
            out.append(f"mappings vfio{dev}: {a} -> {b}")
    pins_a, pins_b = sum(p for _, p in before["pins"]), sum(p for _, p in after["pins"])
    if pins_a != pins_b:
        out.append(f"pinned pages: {pins_a} -> {pins_b}")
    return out


def _bits(bits) -> str:
    return "[" + ",".join(str(b) for b in bits) + "]"


def format_result(result) -> str:
    if isinstance(result, bool) or result is None:
        return str(result)
    if isinstance(result, int):
        return f"-{errno_name(result)}" if result < 0 else str(result)
    if isinstance(result, tuple):
        return "[" + ", ".join(f"0x{s[0]:x}+0x{s[1]:x}@0x{s[2]:x}" for s in result) + "]"
    return repr(result)


def format_event(event) -> str:
    kind = event[0]
    rest = event[2:]
    if kind == "interleave":
        at, nested, result = rest
        return f"interleaved {format_point(at)}: {format_op(nested)} = {format_result(result)}"
    if kind == "iommu_fault":
        return f"IOMMU fault at iova 0x{rest[0]:x} ({format_result(rest[1])})"
    if kind == "retry":
        return f"retry {rest[0]} #{rest[1]} after {format_result(rest[2])}"
    if kind == "give_up":
        what, start, size, ret = rest
        return f"gave up on {what} of 0x{start:x}+0x{size:x} ({format_result(ret)})"
    if kind in ("budget", "exit", "register_error"):
        return f"{kind}: " + " ".join(str(x) for x in rest)
    if kind == "vm_stop":
        return f"VM stopped ({format_result(rest[0])})"
    return " ".join(str(x) for x in event)


def format_point(at) -> str:
    """An interleaving point in words (rig.world.ops.interleave_point)."""
    kind, n = interleave_point(at)
    if kind == "attr":
        return "after KVM_SET_MEMORY_ATTRIBUTES"
    return f"{kind} notification {n}"


def format_fault(fault) -> str:
    site, errno, partial = fault
    text = f"{site}={errno_name(errno)}"
    return text + (f" after {partial} units" if partial is not None else "")


# -- the report ------------------------------------------------------------------------------

def replay(loaded: Loaded, path: str, backend: str = "cy", differential: bool = True):
    """Run and return (RunResult, report lines, per-op change lists)."""
    trace = loaded.trace
    snaps: list = []
    result = run(trace.config, trace.ops, backend, differential,
                 observe=lambda world: snaps.append(world.snapshot()))
    deltas = [changes(a, b, result.world) for a, b in zip(snaps, snaps[1:])]
    return result, render(loaded, path, result, deltas, backend, differential), deltas


def render(loaded: Loaded, path: str, result: RunResult, deltas, backend, differential) -> list[str]:
    trace = loaded.trace
    source = "trace" if loaded.source == "trace" else f"raw input, harness {loaded.harness}"
    lines = [f"replay: {path} ({source})",
             f"config: {format_header(trace.config)[2:]}",
             f"backend: {backend}, differential: {'on' if differential else 'off'}"]
    lines += [f"warning: {w}" for w in trace.warnings]
    for step, delta in zip(result.steps, deltas):
        lines.append(f"#{step.index:<3} {format_op(step.op)} = {format_result(step.result)}")
        lines += [f"       injected: {format_fault(f)}" for f in step.faults]
        lines += [f"       {format_event(e)}" for e in step.events]
        lines += [f"       {d}" for d in delta]
        lines += [f"       VIOLATION {v}" for v in step.violations]
    if len(result.steps) < len(trace.ops):
        lines.append(f"(ops {len(result.steps)}..{len(trace.ops) - 1} not run: the run stopped)")
    lines.append(f"outcome: {describe(result)}")
    if trace.expect is not None:
        verdict = "matches" if trace.expect.matches(result.outcome) else "DIFFERS"
        lines.append(f"expect: {trace.expect} ({verdict})")
    return lines


def describe(result: RunResult) -> str:
    o = result.outcome
    if o.kind == "ok":
        return "ok"
    if o.kind == "vm_stopped":
        return f"vm_stopped {errno_name(o.errno)} at op {o.op_index}"
    text = f"violation {o.invariant} at op {o.op_index}"
    if o.stop_errno is not None:
        text += f"; VM stopped ({format_result(o.stop_errno)}) at op {o.stop_index}"
    return text


def to_json(loaded: Loaded, path: str, result: RunResult, deltas) -> dict:
    o = result.outcome
    trace = loaded.trace
    return {
        "path": path,
        "source": loaded.source,
        "harness": loaded.harness,
        "config": format_header(trace.config)[2:],
        "steps": [{
            "index": s.index,
            "op": format_op(s.op),
            "result": format_result(s.result),
            "faults": [format_fault(f) for f in s.faults],
            "events": [format_event(e) for e in s.events],
            "changes": d,
            "violations": [{"invariant": v.invariant, "detail": v.detail} for v in s.violations],
        } for s, d in zip(result.steps, deltas)],
        "outcome": {"kind": o.kind, "op_index": o.op_index,
                    "errno": errno_name(o.stop_errno) if o.stop_errno else None,
                    "invariant": o.invariant, "detail": o.detail,
                    "vm_stopped": ({"errno": errno_name(o.stop_errno), "op_index": o.stop_index}
                                   if o.stop_errno is not None else None)},
        "expect": str(trace.expect) if trace.expect else None,
        "matches": trace.expect.matches(o) if trace.expect else None,
    }


def exit_code(loaded: Loaded, result: RunResult) -> int:
    """0: ok or as expected; 2: a violation or VM stop the trace does not expect."""
    expect = loaded.trace.expect
    if expect is not None:
        return 0 if expect.matches(result.outcome) else 2
    return 0 if result.outcome.kind == "ok" else 2
