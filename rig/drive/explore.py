"""``rig explore``: bounded exhaustive exploration of a small world, breadth first.

A fuzzer finds bugs; it never says there are none up to here.  For the small worlds
where conversion and rollback bugs live, this enumerates every op sequence up to a depth,
the way explicit-state model checkers (SPIN, TLC) do, and says "no violation in any
sequence of length <= k" or gives a shortest counterexample per broken invariant.

- **The alphabet** (``alphabet``): every op of the world with every argument from a finite
  set: each block-aligned range inside each RAM block, each direction; device hot-plug
  and hot-unplug of each RAM block's section; a generic listener's register and
  unregister; device DMA (write and read) and a guest write on each page.  With a fault
  budget, each op is also tried with each fault it can meet: the op runs once without
  faults, counting its hits per site, and each (site, hit, errno) gives one more op with
  that explicit fault (partial sites: after 0 and after 1 unit of progress).  With an
  interleaving budget, each op that may carry an interleaving gets one per point of the
  grammar and conversion of the alphabet.
- **Breadth first, replayed.** A state is reached by the sequence that first got there;
  expanding it runs that sequence plus each op from a fresh world (the Cython core's
  objects cannot be copied; a replay of a few ops costs ~0.1 ms each), with the oracle
  after every op, exactly as a campaign's Session does.  A run that breaks an invariant
  is a counterexample and is not expanded; one that stops the VM ends there too.
- **State hashing** (rig.check.statehash): sequences that reach the same state (the
  same digest, with the same fault and interleaving budget left) are expanded once;
  the report gives sequences run against distinct states.
- **Shortest counterexamples**: breadth first, so the first violation of an invariant is
  at the smallest depth that has one; among those of that depth, the first in the
  alphabet's order.  Deterministic: the same world, design and depth give the same
  states, counts and traces in any process, with any number of workers.
- **Scale**: the frontier of a depth is cut into chunks that a multiprocessing pool
  (fork) expands; the parent deduplicates in order.  Not pytest-xdist: a breadth-first
  search needs a barrier and one table of seen states per depth, which a pool and a
  parent give directly.  ``max_states`` stops the search cleanly at the end of the last
  depth it completed, ``time_s`` too (the depths it reports are whole), and a checkpoint
  after each depth lets ``resume`` go on from there.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field

from rig.check.session import Expect, Session
from rig.world.config import RamSpec, WorldConfig
from rig.world.faults import SITES, FaultSpec
from rig.world.ops import OPS, POINT_ATTR, Op, before_point, op

PAGE = 0x1000
#: The checkpoint's format; a checkpoint of another one is refused, never half-read.
CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class ExploreWorld:
    """A small world: its config and what the alphabet may use."""

    name: str
    config: WorldConfig
    doc: str
    faults: int = 1            # injected faults per sequence, at most
    interleaves: int = 0       # interleaved ops per sequence, at most
    devices: tuple = (0,)      # VFIO device numbers
    listeners: tuple = (0,)    # generic listener numbers


WORLDS: dict[str, ExploreWorld] = {w.name: w for w in (
    ExploreWorld("tiny", WorldConfig(ram=(RamSpec(0x0, 0x4000),)),
                 "4 blocks in one RAM block; a VFIO device and a generic listener (two "
                 "listeners); at most one fault"),
    ExploreWorld("two-blocks", WorldConfig(ram=(RamSpec(0x0, 0x2000), RamSpec(0x10000, 0x2000))),
                 "two RAM blocks of 2 blocks with a gap; one device, one generic listener; "
                 "at most one fault"),
    ExploreWorld("hotplug", WorldConfig(ram=(RamSpec(0x0, 0x2000),)),
                 "2 blocks; one device whose hot-plug replay a conversion may race (one "
                 "interleaving); at most one fault", interleaves=1, listeners=()),
)}


def world_from_trace(path: str) -> ExploreWorld:
    """A trace header as the world (its ops are not used): one device, one listener, at
    most one fault."""
    from rig.trace.format import load

    trace = load(path)
    return ExploreWorld(path, trace.config.with_(faults="explicit"), f"the header of {path}")


def _ranges(config: WorldConfig):
    bs = config.block_size
    for block in config.ram:
        n = block.size // bs
        for first in range(n):
            for last in range(first, n):
                yield block.gpa + first * bs, (last - first + 1) * bs


def _pages(config: WorldConfig):
    for block in config.ram:
        yield from range(block.gpa, block.gpa + block.size, PAGE)


def alphabet(world: ExploreWorld) -> list[Op]:
    """The ops a sequence draws from, without faults or interleavings, in a fixed order."""
    cfg = world.config
    ops = [op("kvm_convert_memory", gpa, size, to_private)
           for gpa, size in _ranges(cfg) for to_private in (False, True)]
    for dev in world.devices:
        ops += [op("vfio_register", dev, b.gpa, b.size) for b in cfg.ram]
        ops.append(op("vfio_unregister", dev))
    for dev in world.listeners:
        ops += [op("listener_register", dev, b.gpa, b.size) for b in cfg.ram]
        ops.append(op("listener_unregister", dev))
    for page in _pages(cfg):
        ops += [op("device_dma", dev, page, PAGE, write)
                for dev in world.devices for write in (True, False)]
        ops.append(op("guest_touch", page))
    known = set(OPS)
    return [o for o in ops if o.name in known]


def interleavings(world: ExploreWorld, base: list[Op]) -> list[Op]:
    """Each op that may carry an interleaving, with each point and each conversion."""
    points = (1, 2, before_point(1), POINT_ATTR)
    nested = [o for o in base if OPS[o.name].nested]
    out = []
    for o in base:
        if OPS[o.name].interleave:
            out += [o.with_props(interleave=(point, n)) for point in points for n in nested]
    return out


def fault_variants(o: Op, hits: dict[str, int]) -> list[Op]:
    """``o`` with each single explicit fault among the hits it made without faults."""
    out = []
    for name in SITES:
        site = SITES[name]
        for nth in range(1, hits.get(name, 0) + 1):
            for errno in site.errnos:
                for partial in ((0, 1) if site.partial else (None,)):
                    out.append(o.with_props(fault=(FaultSpec(name, -errno, nth, partial),)))
    return out


# -- running sequences ------------------------------------------------------------------------

@dataclass
class Probe:
    """What one sequence did: its end state's digest (None when the run ended there:
    a violation or a VM stop), the violation's headline and invariants, and the hits
    per site its last op made (for its fault variants)."""

    ops: tuple
    faults: int
    interleaves: int
    digest: str | None = None
    kind: str = "ok"
    invariant: str | None = None
    invariants: tuple = ()
    hits: dict = field(default_factory=dict)
    outcome: str = ""


def probe(config: WorldConfig, ops: tuple, faults: int, interleaves: int,
          backend: str = "cy") -> Probe:
    from rig.check.statehash import state_digest

    session = Session(config, backend)
    for o in ops:
        session.step(o)
        if session.stopped:
            break
    session.verify()
    out = Probe(ops, faults, interleaves, kind=session.outcome.kind,
                outcome=str(session.outcome))
    if session.outcome.kind == "violation":
        out.invariant = session.outcome.invariant
        out.invariants = tuple(sorted({v.invariant for v in session.outcome.violations}))
        return out
    if session.stopped:
        return out
    out.hits = dict(session.world.plan.op_hits)
    out.digest = state_digest(session.world)
    return out


def _expand(args) -> list[Probe]:
    """Every child of each state of a chunk: (config, alphabet, extras, budget, states)."""
    config, base, inter, backend, chunk = args
    out = []
    for ops, faults, interleaves in chunk:
        for o in base:
            plain = probe(config, ops + (o,), faults, interleaves, backend)
            out.append(plain)
            if faults > 0 and plain.hits:
                for variant in fault_variants(o, plain.hits):
                    out.append(probe(config, ops + (variant,), faults - 1, interleaves,
                                     backend))
        if interleaves > 0:
            for o in inter:
                out.append(probe(config, ops + (o,), faults, interleaves - 1, backend))
    return out


# -- the search -----------------------------------------------------------------------------

@dataclass
class Result:
    world: str
    design: str
    depth: int = 0                 # every sequence of this length or less was explored
    states: int = 1                # distinct states seen (the initial one included)
    sequences: int = 0             # sequences run
    seconds: float = 0.0
    frontier: int = 1
    stopped: str | None = None     # why the search ended before depth_max
    violations: dict = field(default_factory=dict)   # invariant -> counterexample
    vm_stops: int = 0

    @property
    def exhausted(self) -> bool:
        """Every state reachable within the budgets was expanded: no sequence of any
        length reaches a new one (the frontier ran dry), so the verdict holds for every
        length, not only up to ``depth``."""
        return self.frontier == 0 and self.stopped is None

    def to_json(self) -> dict:
        out = dict(vars(self))
        out["exhausted"] = self.exhausted
        out["seconds"] = round(self.seconds, 2)
        out["sequences_per_s"] = (round(self.sequences / self.seconds, 1) if self.seconds
                                  else None)
        out["states_per_s"] = round(self.states / self.seconds, 1) if self.seconds else None
        out["distinct_per_sequence"] = (round(self.states / self.sequences, 4)
                                        if self.sequences else None)
        return out


def _trace_text(config: WorldConfig, ops, invariant: str, world: str, backend: str) -> str:
    """The counterexample as a trace file, its expect line from a run of it."""
    from rig.check.session import run
    from rig.trace.format import Trace, serialize

    result = run(config, list(ops), backend)
    trace = Trace(config, list(ops), Expect.of(result.outcome),
                  [f"found by rig explore --world {world} at depth {len(ops)}: a shortest "
                   f"sequence breaking {invariant} (breadth first)"])
    return serialize(trace)


def explore(world: ExploreWorld, design: str, depth_max: int, *, jobs: int = 1,
            max_states: int | None = None, time_s: float | None = None,
            backend: str = "cy", checkpoint: str | None = None, resume: bool = False,
            progress=None, on_violation=None) -> Result:
    """Breadth first to ``depth_max`` (module docstring).  ``progress(result)`` is
    called as chunks finish; ``checkpoint`` is a file written after each depth (and
    read first when ``resume``).  ``on_violation(ops, result)`` is called for every
    violating sequence, in order; when it returns True the search stops there (the bug
    benchmark's engine stops at its first kill)."""
    config = world.config.with_(design=design).validate()
    base = alphabet(world)
    inter = interleavings(world, base) if world.interleaves else []
    result = Result(world.name, design)
    started = time.monotonic()
    root = probe(config, (), world.faults, world.interleaves, backend)
    seen = {(root.digest, world.faults, world.interleaves): None}
    frontier = [((), world.faults, world.interleaves)]
    if resume and checkpoint and os.path.exists(checkpoint):
        result, seen, frontier = _load_checkpoint(checkpoint, world, design)
        started -= result.seconds
    pool = None
    if jobs > 1:
        import multiprocessing

        pool = multiprocessing.get_context("fork").Pool(jobs)
    try:
        while result.depth < depth_max and frontier:
            if max_states is not None and len(seen) >= max_states:
                result.stopped = f"--max-states {max_states} reached"
                break
            if time_s is not None and time.monotonic() - started >= time_s:
                result.stopped = f"--time {time_s:g} s reached"
                break
            size = max(1, min(64, len(frontier) // (4 * max(jobs, 1)) or 1))
            chunks = [(config, base, inter, backend, frontier[i:i + size])
                      for i in range(0, len(frontier), size)]
            results = pool.imap(_expand, chunks) if pool else map(_expand, chunks)
            next_frontier, over = [], False
            for probes in results:
                for p in probes:
                    result.sequences += 1
                    if p.kind == "violation":
                        if on_violation is not None and on_violation(p.ops, result):
                            result.stopped = "stopped by on_violation"
                            over = True
                            break
                        for name in p.invariants:
                            if name not in result.violations:
                                result.violations[name] = {
                                    "length": len(p.ops), "headline": p.invariant,
                                    "ops": p.ops}
                        continue
                    if p.digest is None:
                        result.vm_stops += 1
                        continue
                    key = (p.digest, p.faults, p.interleaves)
                    if key in seen:
                        continue
                    seen[key] = None
                    next_frontier.append((p.ops, p.faults, p.interleaves))
                result.states = len(seen)
                result.frontier = len(next_frontier)
                result.seconds = time.monotonic() - started
                if progress is not None:
                    progress(result)
                if over or (time_s is not None and result.seconds >= time_s):
                    over = True
                    break
            if over:
                # A depth cut short is not explored: the result stays at the last whole one.
                result.stopped = result.stopped or (f"--time {time_s:g} s reached during "
                                                    f"depth {result.depth + 1}")
                break
            result.depth += 1
            frontier = next_frontier
            if checkpoint:
                _save_checkpoint(checkpoint, world, design, result, seen, frontier)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    result.seconds = time.monotonic() - started
    result.frontier = len(frontier)
    for name, v in result.violations.items():
        v["trace"] = _trace_text(config, v["ops"], name, world.name, backend)
        v["ops"] = len(v["ops"])
    return result


# -- checkpoints ------------------------------------------------------------------------------

def _save_checkpoint(path: str, world: ExploreWorld, design: str, result: Result, seen: dict,
                     frontier: list) -> None:
    from rig.trace.format import format_op

    doc = {"version": CHECKPOINT_VERSION, "world": world.name, "design": design,
           "config": _config_key(world.config.with_(design=design)),
           "result": {k: v for k, v in vars(result).items() if k != "violations"},
           "violations": {name: {**v, "ops": [format_op(o) for o in v["ops"]]}
                          for name, v in result.violations.items()},
           "seen": [list(k) if k is not None else None for k in seen],
           "frontier": [[[format_op(o) for o in ops], f, i] for ops, f, i in frontier]}
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f)
    os.replace(tmp, path)


def _config_key(config: WorldConfig) -> str:
    from rig.trace.format import format_header

    return hashlib.sha256(format_header(config).encode()).hexdigest()


def _load_checkpoint(path: str, world: ExploreWorld, design: str):
    from rig.trace.format import parse_op_line

    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a rig explore checkpoint ({exc})") from None
    if doc.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint version {doc.get('version')!r}, this rig "
                         f"writes {CHECKPOINT_VERSION}")
    if doc.get("design") != design or doc.get("config") != _config_key(
            world.config.with_(design=design)):
        raise ValueError(f"{path}: a checkpoint of {doc.get('world')}/{doc.get('design')}, "
                         f"not of {world.name}/{design}")

    def ops(lines):
        return tuple(parse_op_line(line, True, []) for line in lines)

    result = Result(**doc["result"])
    result.violations = {name: {**v, "ops": ops(v["ops"])}
                         for name, v in doc["violations"].items()}
    seen = {(tuple(k) if k is not None else None): None for k in doc["seen"]}
    frontier = [(ops(lines), f, i) for lines, f, i in doc["frontier"]]
    return result, seen, frontier
