"""Fault sweeps: run a trace once counting fault-site hits, then fail the 1st, 2nd, ...
hit until a run reaches no fault (Linux's iommufd_fail_nth), checking the oracle after
every op of every run.  Also the fault coverage report: per site, reached and fired.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from rig.check.session import RunResult, run
from rig.world.faults import SITES
from rig.world.config import WorldConfig

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
    baseline = run(config.with_(faults="explicit"), ops, backend, differential)
    result = SweepResult(config, baseline)
    nth = 1
    while True:
        if nth > runs_max:
            result.truncated = True
            break
        faulted = run(config.with_(faults="fail_nth", fail_nth=nth), ops, backend, differential)
        if not any(site_fired for _, site_fired in faulted.coverage.values()):
            break  # the n-th hit was never reached: every hit has been failed once
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


def matrix(designs, iommus, scenarios, backend: str = "cy", differential: bool = True):
    """Every (design, iommu, scenario) cell's sweep, in a fixed order."""
    from rig.trace.corpus import scenarios as corpus_scenarios

    SCENARIOS = corpus_scenarios()

    for design in designs:
        for iommu in iommus:
            for name in scenarios:
                sc = SCENARIOS[name]
                cfg = sc.config.with_(design=design, iommu=iommu)
                yield design, iommu, name, fail_nth_sweep(cfg, sc.ops, backend, differential)


def verdict(sweep: SweepResult) -> str:
    """One cell: "ok" or the invariants found, and VM stops, over the sweep's runs."""
    found = sorted(sweep.invariants)
    parts = [", ".join(found) if found else "ok"]
    if sweep.vm_stops:
        parts.append(f"{sweep.vm_stops} vm stops")
    if sweep.truncated:
        parts.append("TRUNCATED")
    return "; ".join(parts)
