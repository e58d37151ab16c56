"""``rig minimize``: shrink a failing trace to the smallest one that still fails the same
way, with deterministic passes run to a fixed point:

1. pin faults: faults a seeded or fail_nth plan fired become explicit per-op properties,
   so later passes can drop ops without reshuffling them;
2. cut the ops after the failing one, then drop ops (chunks, then one by one, keeping
   the index on deletion);
3. drop fault properties and interleavings that are not needed (an interleaved op may
   also be unfolded into the next op);
4. shrink sizes to one block and move addresses and device numbers toward 0;
5. simplify the header (defaults for limits and knobs, fewer and smaller RAM blocks).

"The same way" means the same outcome kind and the same invariant (or errno, for a VM
stop).  The result is re-run 3 out of 3 times in fresh processes before it is written.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from dataclasses import replace

from rig.check.session import run
from rig.world.faults import FaultSpec
from rig.world.ops import Op
from rig.trace.format import Expect, Trace, serialize
from rig.world.config import RamSpec, WorldConfig

#: Runs one minimization may spend before it stops shrinking (it still writes its best).
RUNS_MAX = 20000


class Minimizer:
    def __init__(self, trace: Trace, backend: str = "cy", log=None):
        self.backend = backend
        self.runs = 0
        self.log = log or (lambda message: None)
        first = self.run(trace.config, trace.ops)
        if first is None or first.outcome.kind == "ok":
            raise ValueError("the trace does not fail: nothing to minimize")
        self.target = Expect.of(first.outcome)
        self.trace = Trace(trace.config, list(trace.ops), self.target, [])
        self.result = first

    def run(self, config: WorldConfig, ops):
        self.runs += 1
        try:
            return run(config, ops, self.backend)
        except ValueError:
            return None  # a candidate header the world refuses

    def try_(self, config: WorldConfig, ops) -> bool:
        if self.runs >= RUNS_MAX:
            return False
        result = self.run(config, ops)
        if result is not None and self.target.matches(result.outcome):
            self.trace = Trace(config, list(ops), self.trace.expect, [])
            self.result = result
            return True
        return False

    # -- passes --------------------------------------------------------------------------
    def pin_faults(self) -> bool:
        cfg = self.trace.config
        if cfg.faults == "explicit":
            return False
        ops = list(self.trace.ops)
        for step in self.result.steps:
            fired = [f for i, f in self.result.world.plan.fired if i == step.index]
            if fired:
                specs = tuple(step.op.prop("fault", ())) + tuple(
                    FaultSpec(f.site, f.errno, f.nth, f.partial) for f in fired)
                ops[step.index] = step.op.with_props(fault=specs)
        explicit = cfg.with_(faults="explicit", seed=0, fail_nth=0, fault_sites=(),
                             p_activate=WorldConfig.p_activate, p_fire=WorldConfig.p_fire)
        return self.try_(explicit, ops)

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

    def drop_props(self) -> bool:
        changed = False
        for i in range(len(self.trace.ops)):
            if i >= len(self.trace.ops):
                break
            o = self.trace.ops[i]
            nested = o.prop("interleave")
            candidates = []
            if nested is not None:
                plain = o.with_props(interleave=None)
                candidates += [[plain], [plain, nested[1]], [nested[1], plain]]
            specs = o.prop("fault", ())
            if specs:
                candidates.append([o.with_props(fault=None)])
                for k in range(len(specs)):
                    rest = specs[:k] + specs[k + 1:]
                    candidates.append([o.with_props(fault=rest or None)])
                    spec = specs[k]
                    if spec.nth > 1:
                        smaller = specs[:k] + (replace(spec, nth=1),) + specs[k + 1:]
                        candidates.append([o.with_props(fault=smaller)])
                    if spec.count > 1:
                        smaller = specs[:k] + (replace(spec, count=1),) + specs[k + 1:]
                        candidates.append([o.with_props(fault=smaller)])
            for replacement in candidates:
                ops = self.trace.ops
                if self.try_(self.trace.config, ops[:i] + replacement + ops[i + 1:]):
                    changed = True
                    break
        return changed

    def shrink_args(self) -> bool:
        from rig.world.ops import OPS

        changed = False
        bs = self.trace.config.block_size
        for i in range(len(self.trace.ops)):
            spec = OPS[self.trace.ops[i].name]
            for a, arg in enumerate(spec.args):
                value = self.trace.ops[i].args[a]
                if arg.kind == "dev":
                    tries = [0] if value else []
                elif arg.kind == "size":
                    tries = [v for v in (bs, value // 2 // bs * bs) if 0 < v < value]
                elif arg.kind == "addr":
                    tries = [v for v in (0, value // 2 // bs * bs, value - bs) if 0 <= v < value]
                else:
                    tries = []
                for candidate in tries:
                    o = self.trace.ops[i]
                    args = o.args[:a] + (candidate,) + o.args[a + 1:]
                    ops = self.trace.ops
                    if self.try_(self.trace.config, ops[:i] + [Op(o.name, args, o.props)] + ops[i + 1:]):
                        changed = True
                        break
        return changed

    def simplify_header(self) -> bool:
        changed = False
        default = WorldConfig()
        for name in ("dma_entry_limit", "max_memslots", "memlock_limit", "hugetlb",
                     "block_size", "budget_check", "iommu"):
            cfg = self.trace.config
            if getattr(cfg, name) != getattr(default, name):
                if self.try_(cfg.with_(**{name: getattr(default, name)}), self.trace.ops):
                    changed = True
        cfg = self.trace.config
        if cfg.dma_entry_limit != default.dma_entry_limit and cfg.dma_entry_limit > 1:
            changed |= self.try_(cfg.with_(dma_entry_limit=cfg.dma_entry_limit // 2), self.trace.ops)
        ram = list(self.trace.config.ram)
        for k in range(len(ram)):
            if len(ram) > 1:
                fewer = tuple(ram[:k] + ram[k + 1:])
                if self.try_(self.trace.config.with_(ram=fewer), self.trace.ops):
                    return True
            half = ram[k].size // 2
            if half >= max(self.trace.config.block_size, 0x1000) and half % self.trace.config.block_size == 0:
                smaller = tuple(ram[:k] + [RamSpec(ram[k].gpa, half)] + ram[k + 1:])
                if self.try_(self.trace.config.with_(ram=smaller), self.trace.ops):
                    return True
        return changed

    def minimize(self) -> Trace:
        if self.pin_faults():
            self.log("pinned the fired faults as explicit per-op properties")
        self.cut_tail()
        for _ in range(50):  # fixed point, bounded
            before = serialize(self.trace)
            self.cut_tail()
            self.drop_ops()
            self.drop_props()
            self.shrink_args()
            self.simplify_header()
            if serialize(self.trace) == before or self.runs >= RUNS_MAX:
                break
        return self.trace


def canonical_hash(trace: Trace) -> str:
    return hashlib.sha256(serialize(Trace(trace.config, trace.ops, trace.expect)).encode()).hexdigest()


def reproduces_in_fresh_processes(text: str, times: int = 3, backend: str = "cy") -> bool:
    """Write ``text`` to a temporary file and replay it ``times`` times, each in a new
    interpreter; all must match the trace's expect line (exit 0)."""
    with tempfile.NamedTemporaryFile("w", suffix=".trace", delete=False) as f:
        f.write(text)
        path = f.name
    try:
        for _ in range(times):
            proc = subprocess.run([sys.executable, "-m", "rig.cli.main", "replay", "--quiet",
                                   "--backend", backend, path],
                                  capture_output=True, text=True, env=dict(os.environ))
            if proc.returncode != 0:
                return False
        return True
    finally:
        os.unlink(path)


def file_name(trace: Trace, digest: str) -> str:
    expect = trace.expect
    what = expect.invariant if expect.kind == "violation" else (
        f"vm_stopped-{str(expect).split()[-1]}" if expect.kind == "vm_stopped" else "ok")
    return f"{what}-{trace.config.design}-{digest[:8]}.trace"


def finalize(minimizer: Minimizer, original_ops: int) -> Trace:
    """The minimized trace with its symptom in a header comment."""
    trace = minimizer.trace
    outcome = minimizer.result.outcome
    comments = [f"symptom: {outcome.detail}" if outcome.detail else f"symptom: {outcome}",
                f"minimized by rig minimize from {original_ops} to {len(trace.ops)} ops "
                f"({minimizer.runs} runs)"]
    return Trace(trace.config, trace.ops, trace.expect, comments)


def write(trace: Trace, directory: str) -> tuple[str, bool]:
    """Write atomically under its canonical name; returns (path, created)."""
    digest = canonical_hash(trace)
    os.makedirs(directory, exist_ok=True)
    return write_new(os.path.join(directory, file_name(trace, digest)), serialize(trace))


def write_new(path: str, text: str) -> tuple[str, bool]:
    """Write ``text`` to ``path`` atomically unless the file exists (a trace's name holds
    its hash, so an existing file is the same trace); returns (path, created).  Core
    traces (rig.trace.core) are written with it too."""
    if os.path.exists(path):
        return path, False
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path, True
