"""Fault sweeps.

Two things live here:

- ``fail_nth_sweep``: run a trace once counting fault-site hits, then fail the 1st, 2nd,
  ... hit until a run reaches no n-th hit (Linux's iommufd_fail_nth), checking the oracle
  after every op of every run; and the fault coverage report (per site, reached and
  fired).
- the cells of ``rig sweep``: design x IOMMU backend x guest shape x fault plan x a slice
  of the profile's seed range (``CellSpec``, ``cells``).  A cell (``run_cell``) runs

  (a) the systematic sweep of every world trace of corpora/regressions/ and
      corpora/scenarios/ whose guest shape is the cell's, one run per hit of the plan's
      sites (per exhaustion point, for the dma_entry_limit plan), and
  (b) a seeded swarm of generated traces on the cell's shape and plan: the same traces
      for every design (their seeds leave the design out), so a row of the matrix is
      compared with another on the same inputs,

  and reports runs, per-invariant counts, VM stops, one minimized trace per broken
  invariant and a digest of every outcome in order.  rig.drive.sweeprun spreads the
  cells over pytest-xdist workers; rig.cli.matrix makes the verdict matrix of them.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache

from rig.check.session import RunResult, run
from rig.trace.decode import DecodeOptions, decode_ops
from rig.trace.format import Expect, Trace, serialize
from rig.trace.minimize import Minimizer, finalize
from rig.world.config import RamSpec, WorldConfig
from rig.world.designs import DESIGNS, ensure
from rig.world.events import GiveUp
from rig.world.faults import SITES, sub_seed

#: A sweep that needs more runs than this is a runaway (a design whose error path keeps
#: reaching new sites); it is reported, not looped on forever.
RUNS_MAX = 5000


@dataclass
class SweepResult:
    config: WorldConfig
    baseline: RunResult
    runs: list = field(default_factory=list)  # (nth, RunResult) for every faulted run
    truncated: bool = False

    @property
    def findings(self) -> Counter:
        """Outcome headline -> how many runs ended with it ("ok" included)."""
        return Counter(str(r.outcome) for _, r in self.runs)

    @property
    def invariants(self) -> set[str]:
        return {v.invariant for _, r in self.runs for v in r.outcome.violations}

    @property
    def vm_stops(self) -> int:
        return sum(1 for _, r in self.runs if r.world.vm_stopped is not None)

    def failures(self) -> list[tuple[int, RunResult]]:
        return [(n, r) for n, r in self.runs if r.outcome.kind == "violation"]

    def coverage(self) -> dict[str, tuple[int, int]]:
        """Per site: hits reached and faults fired over the baseline and every run."""
        totals = {name: [0, 0] for name in SITES}
        for result in [self.baseline] + [r for _, r in self.runs]:
            for site, (reached, fired) in result.coverage.items():
                totals[site][0] += reached
                totals[site][1] += fired
        return {site: (a, b) for site, (a, b) in totals.items()}


def fail_nth_sweep(config: WorldConfig, ops, backend: str = "cy", differential: bool = True,
                   runs_max: int = RUNS_MAX) -> SweepResult:
    """The baseline (explicit faults only), then one run failing the n-th hit of the
    config's ``fault_sites`` (every site when empty) for n = 1, 2, ... until a run never
    reaches its n-th hit."""
    baseline = run(config.with_(faults="explicit"), ops, backend, differential)
    result = SweepResult(config, baseline)
    nth = 1
    while True:
        if nth > runs_max:
            result.truncated = True
            break
        faulted = run(config.with_(faults="fail_nth", fail_nth=nth), ops, backend, differential)
        if not faulted.world.plan.nth_reached:
            # The n-th hit never came: every hit has been failed once.  (Not "no site
            # fired": a trace's own explicit faults fire in every run.)
            break
        result.runs.append((nth, faulted))
        nth += 1
    return result


def coverage_table(coverage: dict[str, tuple[int, int]]) -> str:
    width = max(len(s) for s in coverage)
    lines = [f"{'site':<{width}}  {'reached':>8}  {'fired':>6}"]
    for site in SITES:
        reached, fired = coverage.get(site, (0, 0))
        mark = "" if reached else "   (never reached)"
        lines.append(f"{site:<{width}}  {reached:>8}  {fired:>6}{mark}")
    return "\n".join(lines)


def verdict(sweep: SweepResult) -> str:
    """One sweep: "ok" or the invariants found, and VM stops, over the sweep's runs."""
    found = sorted(sweep.invariants)
    parts = [", ".join(found) if found else "ok"]
    if sweep.vm_stops:
        parts.append(f"{sweep.vm_stops} vm stops")
    if sweep.truncated:
        parts.append("TRUNCATED")
    return "; ".join(parts)


# -- the dimensions of a cell ---------------------------------------------------------------

IOMMUS = ("type1", "iommufd")


@dataclass(frozen=True)
class Shape:
    """A guest's RAM layout.  ``ram``/``hugetlb`` are the generated traces' world; a
    corpus trace belongs to the shape ``shape_of`` gives its own config."""

    name: str
    ram: tuple
    hugetlb: bool = False
    doc: str = ""


FOUR_GIB = 1 << 32

SHAPES: dict[str, Shape] = {s.name: s for s in (
    Shape("small", (RamSpec(0x0, 0x10000),),
          doc="one 64 KiB RAM block (16 pages)"),
    Shape("gaps", (RamSpec(0x0, 0x8000), RamSpec(0x20000, 0x8000), RamSpec(0x100000, 0x10000)),
          doc="three RAM blocks with holes between them, below 4 GiB"),
    Shape("sparse", (RamSpec(0x0, 0xa0000), RamSpec(FOUR_GIB, 0x400000)),
          doc="640 KiB low RAM and a 4 MiB block above 4 GiB (1,184 pages): the x86 "
              "layout, larger"),
    Shape("hugetlb", (RamSpec(0x0, 0x400000),), hugetlb=True,
          doc="shared memory on 2 MiB hugetlb pages: one 4 MiB block"),
)}


def shape_of(config: WorldConfig) -> str:
    """The shape a corpus trace's world has: hugetlb, then a block at or above 4 GiB
    (sparse), then several blocks (gaps), else small."""
    if config.hugetlb:
        return "hugetlb"
    if any(r.gpa + r.size > FOUR_GIB for r in config.ram):
        return "sparse"
    if len(config.ram) > 1:
        return "gaps"
    return "small"


@dataclass(frozen=True)
class Plan:
    """What may fail: ``sites`` for the fail_nth sweep and the seeded swarm (empty with
    ``faults``: every site); ``limit``: no site fails, the type1 dma_entry_limit runs
    out instead."""

    name: str
    sites: tuple = ()
    faults: bool = True
    limit: bool = False
    doc: str = ""

    def applies(self, iommu: str) -> bool:
        """iommufd has no dma_entry_limit: the limit plan is type1's alone."""
        return not self.limit or iommu == "type1"


PLANS: dict[str, Plan] = {p.name: p for p in (
    Plan("none", faults=False, doc="no injected fault (a corpus trace keeps its own)"),
    Plan("map", ("vfio.dma_map", "iommufd.ioas_map"), doc="DMA map errors"),
    Plan("unmap", ("vfio.dma_unmap", "iommufd.ioas_unmap"),
         doc="DMA unmap errors (iommufd's after removing some areas)"),
    Plan("punch", ("memfd.punch_hole", "gmem.punch_hole"),
         doc="hole punches that fail partway, on either side"),
    Plan("limit", faults=False, limit=True,
         doc="type1 dma_entry_limit exhaustion at every level the trace reaches"),
    Plan("kvm-attr", ("kvm.set_memory_attributes",), doc="KVM_SET_MEMORY_ATTRIBUTES errors"),
    Plan("pin", ("pin.pin_pages",), doc="page pinning errors"),
    Plan("mix", doc="every site (the fail_nth sweep); the swarm a seeded BUGGIFY mix"),
)}


@dataclass(frozen=True)
class Profile:
    """How deep the cells go: ``swarm`` generated traces per (design, iommu, shape,
    plan), spread over ``parts`` cells (seed slices) that each sweep every
    ``parts``-th corpus trace too."""

    name: str
    swarm: int
    parts: int = 1
    doc: str = ""


PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("quick", swarm=8, doc="a smoke test: seconds per design"),
    Profile("ci", swarm=500, doc="every cell, under 10 minutes on 2 cores"),
    Profile("nightly", swarm=3000, parts=3, doc="at least 10^6 runs in all"),
)}

#: rig sweep's defaults, here rather than in rig.drive.sweeprun (which imports pytest) so
#: that building the command line imports no test framework: the share of cells the
#: determinism re-check runs again, and pytest-xdist's distribution modes (``--dist``).
RECHECK_SHARE = 0.03
DISTS = ("load", "loadscope", "loadfile", "loadgroup", "worksteal", "each")

#: Generated traces: up to this many ops, from up to SWARM_BYTES bytes of the swarm's
#: rng (decoded as a campaign input is, after the header: rig.trace.decode.decode_ops).
SWARM_OPS = 24
SWARM_BYTES = 160
#: The single-site plans' seeded swarm: every site of the plan active, each hit failing
#: with this probability; the mix plan uses the decoder's BUGGIFY odds.
P_FIRE = 0.12
MIX_P_ACTIVATE, MIX_P_FIRE = 0.3, 0.15
#: A minimization spends at most this many runs (deterministic, unlike a time limit).
MINIMIZE_RUNS = 400


def _check(kind: str, names, known) -> tuple:
    if names is None:
        return tuple(known)
    names = tuple(dict.fromkeys(names))
    for name in names:
        if kind == "design" and ensure(name):
            continue
        if name not in known:
            raise ValueError(f"{kind}: unknown {kind} {name!r} (one of {', '.join(known)})")
    return names


@dataclass(frozen=True)
class CellSpec:
    profile: str
    design: str
    iommu: str
    shape: str
    plan: str
    part: int = 0
    parts: int = 1

    @property
    def id(self) -> str:
        return f"{self.design}/{self.iommu}/{self.shape}/{self.plan}/{self.part}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CellSpec":
        return cls(**{f.name: data[f.name] for f in fields(cls)})


def cells(profile: str, designs=None, iommus=None, shapes=None, plans=None) -> list[CellSpec]:
    """Every cell of a sweep, in one fixed order: designs, IOMMU backends, shapes, plans,
    parts.  A plan that does not apply to a backend (limit on iommufd) has no cell."""
    if profile not in PROFILES:
        raise ValueError(f"profile: unknown profile {profile!r} (one of {', '.join(PROFILES)})")
    parts = PROFILES[profile].parts
    out = []
    for design in _check("design", designs, DESIGNS):
        for iommu in _check("iommu", iommus, IOMMUS):
            for shape in _check("shape", shapes, SHAPES):
                for plan in _check("plan", plans, PLANS):
                    if PLANS[plan].applies(iommu):
                        out += [CellSpec(profile, design, iommu, shape, plan, part, parts)
                                for part in range(parts)]
    return out


# -- running a cell ---------------------------------------------------------------------------

@lru_cache(maxsize=None)
def corpus_traces() -> tuple:
    """(name, Trace) of every world trace of corpora/regressions/ and corpora/scenarios/,
    by name (core traces are the core's: rig selftest replays them)."""
    from rig.trace import core as core_trace
    from rig.trace import corpus
    from rig.trace.format import load

    paths = corpus.regressions() + sorted((corpus.root() / "scenarios").glob("*.trace"))
    out = []
    for path in paths:
        if not core_trace.is_core_trace(path.read_text(encoding="utf-8")):
            out.append((f"{path.parent.name}/{path.name}", load(str(path))))
    return tuple(out)


class _Cell:
    """What a cell has seen so far: every run's outcome, in order."""

    def __init__(self, spec: CellSpec, backend: str):
        self.spec = spec
        self.backend = backend
        self.runs = 0
        self.by = Counter()   # "fail_nth" | "swarm" -> runs
        self.outcomes = Counter()
        self.invariants = Counter()
        #: Breaks that are no news, counted apart (never a new break): a run that ended
        #: as a corpus trace recorded on this design says it ends (its expect line), or
        #: one where the design gave up after its documented retries (a give_up event:
        #: past its contract, docs/designs.md).
        self.known = Counter()
        self.known_why: dict[str, str] = {}   # invariant -> why, the first time
        self.vm_stops = 0
        self.truncated = 0
        self.coverage = {name: [0, 0] for name in SITES}
        self.first: dict[str, tuple] = {}   # invariant -> (config, ops) of its first run
        self.digest = hashlib.sha256()
        self.labels: list[str] = []   # every run's label, in order (what the digest hashes)

    def record(self, part: str, label: str, config: WorldConfig, ops, result: RunResult,
               known=None):
        """One run.  ``known``: (name, Expect) of the corpus trace it ran, when that
        trace was recorded on this design."""
        self.runs += 1
        self.by[part] += 1
        outcome = result.outcome
        self.outcomes[str(outcome)] += 1
        why = None
        if outcome.kind == "violation":
            if known is not None and known[1].matches(outcome):
                why = f"{known[0]} records it"
            elif any(isinstance(e, GiveUp) for e in result.world.events):
                why = "past the design's retries (a give_up event)"
        if why is not None:
            for name in sorted({v.invariant for v in outcome.violations}):
                self.known[name] += 1
                self.known_why.setdefault(name, why)
            outcome = None
        for name in sorted({v.invariant for v in outcome.violations} if outcome else ()):
            self.invariants[name] += 1
        if result.world.vm_stopped is not None:
            self.vm_stops += 1
        for site, (reached, fired) in result.coverage.items():
            self.coverage[site][0] += reached
            self.coverage[site][1] += fired
        for name in sorted({v.invariant for v in outcome.violations} if outcome else ()):
            if name not in self.first:
                self.first[name] = (config, list(ops))
        self.labels.append(label)
        mark = " (known)" if outcome is None else ""
        self.digest.update(f"{label} {result.outcome.describe(also=True)}{mark}\n".encode())

    def sweep(self, name: str, trace, plan: Plan) -> None:
        """(a) for one corpus trace: the baseline, then one run per hit of the plan's
        sites (or per dma_entry_limit level the baseline reaches)."""
        spec = self.spec
        config = trace.config.with_(design=spec.design, iommu=spec.iommu)
        ops = trace.ops
        known = None
        if trace.config.design == spec.design and trace.expect is not None:
            known = (name, trace.expect)
        if plan.limit:
            self._limit_sweep(name, config, ops, known)
            return
        if not plan.faults:
            result = run(config.with_(faults="explicit"), ops, self.backend)
            self.record("fail_nth", f"{name} baseline", config, ops, result, known)
            return
        swept = fail_nth_sweep(config.with_(fault_sites=plan.sites), ops, self.backend)
        self.record("fail_nth", f"{name} baseline", config.with_(faults="explicit"),
                    ops, swept.baseline, known)
        for nth, result in swept.runs:
            faulted = swept.config.with_(faults="fail_nth", fail_nth=nth)
            self.record("fail_nth", f"{name} nth={nth}", faulted, ops, result, known)
        self.truncated += swept.truncated

    def _limit_sweep(self, name: str, config: WorldConfig, ops, known) -> None:
        """dma_entry_limit = 0, 1, ... up to the most DMA entries one container of the
        baseline held after any op: each level runs out at another point of the trace."""
        peak = [0]

        def observe(world):
            for _, container in world.containers():
                peak[0] = max(peak[0], container.count)

        base = config.with_(faults="explicit")
        result = run(base, ops, self.backend, observe=observe)
        self.record("fail_nth", f"{name} baseline", base, ops, result, known)
        for limit in range(min(peak[0], RUNS_MAX)):
            limited = base.with_(dma_entry_limit=limit)
            self.record("fail_nth", f"{name} limit={limit}", limited, ops,
                        run(limited, ops, self.backend), known)
        self.truncated += peak[0] > RUNS_MAX

    def swarm(self, index: int) -> None:
        """(b) generated trace ``index`` of the cell."""
        config, ops = swarm_trace(self.spec, index)
        self.record("swarm", f"swarm#{index}", config, ops, run(config, ops, self.backend))

    def minimized(self) -> dict:
        out = {}
        for name in sorted(self.first):
            config, ops = self.first[name]
            m = _InvariantMinimizer(Trace(config, ops), self.backend, name)
            m.minimize()
            trace = finalize(m, len(ops))
            if trace.expect.invariant != name:
                trace.comments.append(f"breaks {name} too, beside the headline")
            out[name] = {"trace": serialize(trace), "ops": len(trace.ops),
                         "signature": str(trace.expect), "from_ops": len(ops)}
        return out


class _InvariantMinimizer(Minimizer):
    """rig minimize's passes, keeping a candidate while ``invariant`` is among the
    violations of its failing op (headline or not: a broken invariant gets a trace of
    its own even where a more severe one heads the run), within MINIMIZE_RUNS runs.
    The trace's expect line is its headline, as replay checks it."""

    def __init__(self, trace, backend: str, invariant: str):
        self.invariant = invariant
        super().__init__(trace, backend)

    def try_(self, config, ops) -> bool:
        if self.runs >= MINIMIZE_RUNS:
            return False
        result = self.run(config, ops)
        if result is None or not any(v.invariant == self.invariant
                                     for v in result.outcome.violations):
            return False
        self.trace = Trace(config, list(ops), Expect.of(result.outcome), [])
        self.result = result
        return True


def swarm_trace(spec: CellSpec, index: int) -> tuple[WorldConfig, list]:
    """Generated trace ``index`` of a cell's (iommu, shape, plan): the world of the
    shape and plan, the ops decoded (as a campaign input's, after its header) from
    bytes of a seeded rng.  The seed leaves the design out: every row of the matrix
    runs the same traces."""
    plan, shape = PLANS[spec.plan], SHAPES[spec.shape]
    rng = random.Random(sub_seed(index, f"sweep/{spec.iommu}/{spec.shape}/{spec.plan}"))
    config = WorldConfig(design=spec.design, iommu=spec.iommu, ram=shape.ram,
                         hugetlb=shape.hugetlb)
    data = rng.randbytes(rng.randint(1, SWARM_BYTES))
    if plan.limit:
        config = config.with_(dma_entry_limit=rng.randint(0, 16))
    elif plan.faults:
        p_activate, p_fire = (1.0, P_FIRE) if plan.sites else (MIX_P_ACTIVATE, MIX_P_FIRE)
        config = config.with_(faults="seeded", seed=rng.getrandbits(32),
                              p_activate=p_activate, p_fire=p_fire, fault_sites=plan.sites)
    return config, decode_ops(data, config, DecodeOptions(faults="seeded", ops_max=SWARM_OPS))


def swarm_range(spec: CellSpec) -> range:
    """The generated traces' indices of the cell: its slice of the profile's range."""
    total, parts = PROFILES[spec.profile].swarm, spec.parts
    per = -(-total // parts)
    return range(spec.part * per, min(total, (spec.part + 1) * per))


def run_cell(spec: CellSpec, backend: str = "cy") -> dict:
    """Run one cell here; the dict is what rig sweep writes (rig.drive.sweeprun) and the
    matrix reads (rig.cli.matrix).  Everything but ``seconds`` is the same in any process
    for the same spec and commit; ``digest`` hashes every run's outcome in order."""
    started = time.perf_counter()
    if not ensure(spec.design):
        raise ValueError(f"design: unknown design {spec.design!r}")
    plan = PLANS[spec.plan]
    if not plan.applies(spec.iommu):
        raise ValueError(f"plan: {spec.plan} does not apply to {spec.iommu}")
    cell = _Cell(spec, backend)
    swept = [(n, t) for n, t in corpus_traces() if shape_of(t.config) == spec.shape]
    swept = swept[spec.part::spec.parts]
    for name, trace in swept:
        cell.sweep(name, trace, plan)
    for index in swarm_range(spec):
        cell.swarm(index)
    minimized = cell.minimized()
    return {
        "cell": spec.id, **spec.to_dict(), "status": "ok", "backend": backend,
        "runs": cell.runs, "fail_nth_runs": cell.by["fail_nth"],
        "swarm_runs": cell.by["swarm"], "traces": len(swept), "truncated": cell.truncated,
        "invariants": dict(sorted(cell.invariants.items())),
        "known": {name: {"runs": n, "why": cell.known_why[name]}
                  for name, n in sorted(cell.known.items())},
        "vm_stops": cell.vm_stops,
        "outcomes": dict(sorted(cell.outcomes.items())), "minimized": minimized,
        "coverage": {site: list(v) for site, v in cell.coverage.items()},
        "digest": cell.digest.hexdigest(),
        "seconds": round(time.perf_counter() - started, 3),
    }
