"""``rig replay``: run a trace (or a raw crash file) and print, op by op, what happened.

The text output is the rig's user interface for a finding, so it is tested exactly: a
header (source, config, fault mode), then each op with its result, the faults injected
during it, its notable state changes and events, and the violations the oracle found,
then the outcome and how it compares with the trace's ``# expect:`` line.
"""

from __future__ import annotations

from dataclasses import dataclass

from rig.errors import errno_name
from rig.world.ops import format_result  # noqa: F401  (re-exported for callers)
from rig.check.session import RunResult, run
from rig.trace.format import Trace, TraceError, format_header, format_op, is_trace, parse
from rig.world.host import PAGE_SIZE
from rig.trace import core as core_trace
from rig.check.differential import (RECORDERS, VFIOS, format_bits, format_core_op,
                                    format_core_result, format_core_value, format_log_entry,
                                    format_mapping, impls_for)


@dataclass
class Loaded:
    trace: Trace | None  # None: a raw input for a harness that does not decode to a trace
    source: str          # "trace" | "raw"
    harness: str | None = None
    data: bytes = b""
    #: A core trace (a core trace file, or a raw input of a core harness): replayed by
    #: replay_core on the core's implementations side by side, not on a world.
    core: core_trace.CoreTrace | None = None


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
        if core_trace.is_core_trace(text):
            return Loaded(None, "trace", core=core_trace.parse(text, path, strict))
        return Loaded(parse(text, path, strict), "trace")
    name = harness or harnesses.DEFAULT
    if name not in harnesses.HARNESSES:
        raise TraceError(path, 0, f"unknown harness {name!r} (one of "
                         f"{', '.join(harnesses.HARNESSES)}, optionally NAME:DESIGN)")
    if isinstance(harnesses.HARNESSES[name], harnesses.CoreHarness):
        return Loaded(None, "raw", name, data, core=harnesses.HARNESSES[name].to_core_trace(data))
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
        lines += [f"       injected: {f}" for f in step.faults]
        lines += [f"       {e}" for e in step.events]
        lines += [f"       {d}" for d in delta]
        lines += [f"       VIOLATION {v}" for v in step.violations]
    if len(result.steps) < len(trace.ops):
        lines.append(f"(ops {len(result.steps)}..{len(trace.ops) - 1} not run: the run stopped)")
    lines.append(f"outcome: {result.outcome.describe()}")
    if trace.expect is not None:
        verdict = "matches" if trace.expect.matches(result.outcome) else "DIFFERS"
        lines.append(f"expect: {trace.expect} ({verdict})")
    return lines


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
            "faults": [str(f) for f in s.faults],
            "events": [str(e) for e in s.events],
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


# -- core traces: the implementations of the core side by side ---------------------------------

def replay_core(loaded: Loaded, path: str, backend: str = "cy", differential: bool = True):
    """Run a core trace on the core's implementations (the Cython core unless ``backend``
    is ``pure``, the twin, and the reference model unless ``differential`` is off) and
    return (CoreRunResult, report lines)."""
    trace = loaded.core
    result = core_trace.run_core(trace.config, trace.ops, impls_for(backend, differential))
    return result, render_core(loaded, path, result)


def render_core(loaded: Loaded, path: str, result) -> list[str]:
    """Each op with its result (one value when the implementations agree, each one's when
    they do not) and what it changed, on the first implementation; at the first
    disagreement, what differs."""
    trace = loaded.core
    source = "core trace" if loaded.source == "trace" else f"raw input, harness {loaded.harness}"
    lines = [f"replay: {path} ({source})",
             f"config: {core_trace.format_core_header(trace.config)[2:]}",
             f"backend: {result.impls[0]}, differential: {' vs '.join(result.impls)}"]
    lines += [f"warning: {w}" for w in trace.warnings]
    before = None
    error = result.outcome.error
    for step in result.steps:
        texts = {impl: format_core_result(r) for impl, r in step.results.items()}
        shown = (next(iter(texts.values())) if len(set(texts.values())) == 1
                 else " | ".join(f"{impl} {text}" for impl, text in texts.items()))
        lines.append(f"#{step.index:<3} {format_core_op(step.op)} = {shown}")
        if step.states is not None:
            after = step.states[result.impls[0]]
            lines += [f"       {c}" for c in core_changes(before, after, trace.config)]
            before = after
        if error is not None and step.index == error.index:
            first, *rest = str(error).splitlines()
            lines.append(f"       MISMATCH {first.split(': ', 1)[1]}")
            lines += [f"         {line.strip()}" for line in rest]
    if len(result.steps) < len(trace.ops):
        lines.append(f"(ops {len(result.steps)}..{len(trace.ops) - 1} not run: "
                     "the run stopped at the first disagreement)")
    lines.append(f"outcome: {result.outcome.describe()}")
    if trace.expect is not None:
        verdict = "matches" if trace.expect.matches(result.outcome) else "DIFFERS"
        lines.append(f"expect: {trace.expect} ({verdict})")
    return lines


def core_changes(before: dict | None, after: dict, config) -> list[str]:
    """What an op changed in one implementation's state (``differential.STATE_KEYS``):
    the calls each recorder got and what it saw, the blocks populated or discarded, the
    listener list, the standalone bitmap and each container's mappings.  ``before`` None
    is the state every run starts from: everything empty."""
    def old(key):
        return before[key] if before is not None else []

    out = []
    for name in RECORDERS:
        key = f"log.{name}"
        out += [f"{name}: {format_log_entry(e)}" for e in after[key][len(old(key)):]]
    for name in VFIOS:
        key = f"discard_errors.{name}"
        out += [f"{name}: discard error {format_core_value(e)}" for e in after[key][len(old(key)):]]
    was, now = set(old("bitmap")), set(after["bitmap"])
    for word, blocks in (("populated", now - was), ("discarded", was - now)):
        if blocks:
            out.append(f"{word}: " + ", ".join(_block_runs(blocks, config.block_size)))
    if list(old("listeners")) != after["listeners"]:
        out.append(f"listeners: [{', '.join(after['listeners'])}]")
    was, now = set(old("bitmap300")), set(after["bitmap300"])
    if was != now:
        out.append("bitmap300: " + " ".join(
            ([f"+{format_bits(now - was)}"] if now - was else [])
            + ([f"-{format_bits(was - now)}"] if was - now else [])))
    for name in ("C", "D", "E"):
        a, b = old(f"{name}.mappings"), after[f"{name}.mappings"]
        was, now = set(a), set(b)  # (thousands of mappings: no list scans)
        added = [format_mapping(m, frames=False) for m in b if m not in was]
        removed = [format_mapping(m, frames=False) for m in a if m not in now]
        if added or removed:
            out.append(f"{name} mappings: {len(a)} -> {len(b)}"
                       + "".join(f"; +{m}" for m in added) + "".join(f"; -{m}" for m in removed))
    return out


def _block_runs(blocks, block_size: int) -> list[str]:
    out, blocks = [], sorted(blocks)
    i = 0
    while i < len(blocks):
        j = i
        while j + 1 < len(blocks) and blocks[j + 1] == blocks[j] + 1:
            j += 1
        out.append(f"0x{blocks[i] * block_size:x}+0x{(j - i + 1) * block_size:x}")
        i = j + 1
    return out


def core_to_json(loaded: Loaded, path: str, result) -> dict:
    trace = loaded.core
    o = result.outcome
    before, steps = None, []
    for s in result.steps:
        after = s.states[result.impls[0]] if s.states is not None else None
        changes = core_changes(before, after, trace.config) if after is not None else []
        steps.append({"index": s.index, "op": format_core_op(s.op),
                      "results": {impl: format_core_result(r) for impl, r in s.results.items()},
                      "changes": changes})
        before = after or before
    return {
        "path": path,
        "source": loaded.source,
        "harness": loaded.harness,
        "config": core_trace.format_core_header(trace.config)[2:],
        "impls": list(result.impls),
        "steps": steps,
        "outcome": {"kind": o.kind, "op_index": o.op_index, "what": o.what, "op": o.op,
                    "signature": o.error.signature if o.error is not None else None,
                    "detail": str(o.error) if o.error is not None else ""},
        "expect": str(trace.expect) if trace.expect else None,
        "matches": trace.expect.matches(o) if trace.expect else None,
    }


def core_exit_code(loaded: Loaded, result) -> int:
    """0: ok or as expected; 2: a disagreement the trace does not expect."""
    expect = loaded.core.expect
    if expect is not None:
        return 0 if expect.matches(result.outcome) else 2
    return 0 if result.outcome.kind == "ok" else 2
