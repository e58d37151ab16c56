"""fail_nth sweeps: every seed scenario x every design x both IOMMU backends.

Each cell runs the scenario once counting fault-site hits, then fails the 1st, 2nd, ...
hit until a run reaches no fault, with the oracle after every op of every run.  Cells are
separate tests so that `pytest -n auto` spreads them.  `hardened` (and `inplace`, which
makes the same promise) must survive every cell; the other designs must show the
findings that define them.
"""

import pytest

from rig.drive import sweep
from rig.trace.corpus import scenarios

SCENARIOS = scenarios()
from rig.world.designs import DESIGNS

IOMMUS = ("type1", "iommufd")
CELLS = [(d, i, s) for d in DESIGNS for i in IOMMUS for s in SCENARIOS]

#: What every faulted sweep of a design must find, whatever the scenario: the minimum
#: that makes the design what it is (docs/semantics.md 3).
MUST_FIND = {
    # No design without atomicity survives a failure in the middle of a conversion.
    "uncoordinated": {"atomic-failure"},
    "keep-shared": {"atomic-failure"},
    # 10.1: no rollback; the bitmap and KVM say shared, a listener does not have it.
    "qemu-10.1": {"atomic-failure", "shared-unmapped"},
    "rdm-rollback": {"atomic-failure"},
}


def sweep_scenario(design, iommu, scenario, backend="cy"):
    sc = SCENARIOS[scenario]
    return sweep.fail_nth_sweep(sc.config.with_(design=design, iommu=iommu), sc.ops, backend)


@pytest.mark.parametrize("design,iommu,scenario", CELLS)
def test_sweep_cell(design, iommu, scenario):
    result = sweep_scenario(design, iommu, scenario)
    assert result.runs, "the scenario reaches no fault site"
    assert not result.truncated
    # Every faulted run fired exactly one fault: the sweep covers each hit once.
    for nth, run in result.runs:
        assert sum(fired for _, fired in run.coverage.values()) == 1, nth
    if DESIGNS[design].atomic:
        failures = [(n, str(r.outcome), r.outcome.detail) for n, r in result.failures()]
        assert not failures, f"{design} broke its promise: {failures[:3]}"
    else:
        assert MUST_FIND[design] <= result.invariants, sweep.verdict(result)
    # A design that stops the VM on a conversion error (QEMU's) does so in some faulted
    # run; one that does not never stops it.
    assert (result.vm_stops > 0) == DESIGNS[design].stops_vm, sweep.verdict(result)


@pytest.mark.parametrize("design", ["qemu-10.1", "hardened"])
def test_sweep_same_on_pure_backend(design):
    """The twin gives the same verdicts run for run (a smaller matrix: it is slower)."""
    for scenario in ("seed", "two-listeners"):
        a = sweep_scenario(design, "type1", scenario, "cy")
        b = sweep_scenario(design, "type1", scenario, "pure")
        assert [str(r.outcome) for _, r in a.runs] == [str(r.outcome) for _, r in b.runs]


def test_rdm_rollback_keeps_listeners_consistent_where_10_1_does_not():
    """Two listeners, a populate failure: in 10.1 one device keeps a mapping the other
    lost; the 2026 manager rolls both back (only the bitmap and KVM stay wrong)."""

    def split_brain(result):
        runs = []
        for nth, run in result.runs:
            for v in run.outcome.violations:
                if v.invariant == "shared-unmapped":
                    devs = {item.split(":")[0] for item in v.items}
                    if len(devs) == 1:
                        runs.append(nth)
        return runs

    qemu = sweep_scenario("qemu-10.1", "type1", "two-listeners")
    rdm = sweep_scenario("rdm-rollback", "type1", "two-listeners")
    assert split_brain(qemu)
    assert not any(
        "vfio.dma_map" in str(r.steps[r.outcome.op_index].faults) and n in split_brain(rdm)
        for n, r in rdm.runs)


def test_sweep_cli_prints_the_matrix_and_writes_the_sweep(tmp_path, capsys):
    import json

    from rig.cli.main import main

    out = tmp_path / "sweep"
    argv = ["sweep", "--profile", "quick", "--design", "hardened", "--design", "qemu-10.1",
            "--plan", "map", "--plan", "none", "--shape", "small", "-n", "0",
            "--out", str(out), "--coverage"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "hardened *" in text and "qemu-10.1 " in text and "vfio.dma_map" in text
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["format"] == "rig-sweep/1" and doc["exit"] == 0
    assert [c["cell"] for c in doc["cells"]] == [c.id for c in cells(
        "quick", ["hardened", "qemu-10.1"], None, ["small"], ["map", "none"])]
    assert doc["matrix"]["rows"]["hardened"]["map"]["verdict"] == "known"
    broken = doc["matrix"]["rows"]["qemu-10.1"]["map"]
    assert broken["verdict"] == "broken"
    for name, inv in broken["invariants"].items():
        assert (out / inv["trace"]).read_text() == inv["text"], name
    assert main(argv + ["--markdown"]) == 0
    md = capsys.readouterr().out
    assert "| `qemu-10.1` |" in md and "](traces/qemu-10.1__map__" in md


def test_sweep_exits_2_when_a_design_that_promises_atomicity_breaks(tmp_path, capsys):
    from rig.cli.main import main

    code = main(["sweep", "--profile", "quick", "--design", "attr-not-restored",
                 "--plan", "kvm-attr", "--shape", "small", "--iommu", "type1", "-n", "0",
                 "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 2
    assert "promises atomicity broke it: attr-not-restored x kvm-attr" in captured.err


@pytest.mark.parametrize("argv,message", [
    (["--design", "nope"], "unknown design 'nope'"),
    (["--iommu", "iommufd", "--plan", "limit"], "the selection has no cells"),
    (["--profile", "huge"], "invalid choice: 'huge'"),
])
def test_sweep_refuses_bad_flags_in_one_line(argv, message, tmp_path, capsys):
    from rig.cli.main import main

    try:
        code = main(["sweep", "--out", str(tmp_path), *argv])
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    assert code == 1
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


# -- rig sweep's cells (rig.drive.sweep: shapes, plans, profiles, run_cell) --------------

from rig.drive.sweep import (PLANS, PROFILES, SHAPES, CellSpec, cells, corpus_traces,  # noqa: E402
                             fail_nth_sweep, run_cell, shape_of, swarm_trace)


def test_cells_are_the_product_in_one_order_without_limit_on_iommufd():
    every = cells("ci")
    ids = [c.id for c in every]
    assert len(ids) == len(set(ids))
    assert len(every) == len(DESIGNS) * (2 * len(SHAPES) * len(PLANS) - len(SHAPES))
    assert not [c for c in every if c.plan == "limit" and c.iommu == "iommufd"]
    assert ids == [c.id for c in cells("ci")]
    assert every[0] == CellSpec("ci", list(DESIGNS)[0], "type1", "small", "none")
    assert CellSpec.from_dict(every[5].to_dict()) == every[5]
    parted = cells("nightly", designs=["hardened"], plans=["map"], shapes=["small"],
                   iommus=["type1"])
    assert [c.part for c in parted] == list(range(PROFILES["nightly"].parts))


@pytest.mark.parametrize("kind,kwargs", [
    ("design", {"designs": ["nope"]}), ("iommu", {"iommus": ["smmu"]}),
    ("shape", {"shapes": ["round"]}), ("plan", {"plans": ["chaos"]})])
def test_cells_refuse_an_unknown_name_naming_the_field(kind, kwargs):
    with pytest.raises(ValueError, match=f"^{kind}: unknown {kind} "):
        cells("quick", **kwargs)
    with pytest.raises(ValueError, match="^profile: unknown profile 'huge'"):
        cells("huge")


def test_every_shape_has_generated_worlds_and_the_corpus_is_classified():
    for name, shape in SHAPES.items():
        config, _ = swarm_trace(CellSpec("ci", "hardened", "type1", name, "none"), 0)
        config.validate()
        assert shape_of(config) == name
    by_shape = {shape_of(t.config) for _, t in corpus_traces()}
    assert {"small", "sparse", "hugetlb"} <= by_shape


def test_fail_nth_sweep_ends_although_the_trace_has_explicit_faults():
    """The sweep ends at the first n whose n-th hit never comes: before, a trace with its
    own explicit fault (which fires in every run) ran to the 5,000-run cap."""
    traces = dict(corpus_traces())
    trace = traces["regressions/shared-unmapped-qemu-10.1-a0658dea.trace"]
    result = fail_nth_sweep(trace.config, trace.ops)
    assert not result.truncated
    hits = sum(reached for reached, _ in result.baseline.coverage.values())
    assert len(result.runs) == hits


def test_fault_sites_limit_what_fail_nth_fails():
    sc = SCENARIOS["two-listeners"]
    only = sc.config.with_(fault_sites=("vfio.dma_map",))
    result = fail_nth_sweep(only, sc.ops)
    assert result.runs
    assert result.baseline.coverage["vfio.dma_map"][0] == len(result.runs)
    for _, r in result.runs:
        fired = {s for s, (_, f) in r.coverage.items() if f}
        assert fired == {"vfio.dma_map"}


@pytest.mark.parametrize("plan", [p for p in PLANS if PLANS[p].sites])
def test_a_plans_swarm_fires_its_sites_and_no_other(plan):
    """The gaps shape has no corpus trace: every run of the cell is generated."""
    iommu = "iommufd" if "iommufd.ioas_map" in PLANS[plan].sites and plan == "unmap" else "type1"
    result = run_cell(CellSpec("ci", "qemu-10.1", iommu, "gaps", plan))
    assert result["traces"] == 0 and result["swarm_runs"] == PROFILES["ci"].swarm
    fired = {s for s, (_, f) in result["coverage"].items() if f}
    assert fired and fired <= set(PLANS[plan].sites)


@pytest.mark.parametrize("plan", ["none", "limit"])
def test_no_fault_plans_fire_no_site(plan):
    result = run_cell(CellSpec("quick", "qemu-10.1", "type1", "gaps", plan))
    assert not [s for s, (_, f) in result["coverage"].items() if f]


def test_mix_fires_many_sites():
    result = run_cell(CellSpec("ci", "hardened", "iommufd", "gaps", "mix"))
    fired = {s for s, (_, f) in result["coverage"].items() if f}
    assert len(fired) >= 5, fired


def test_the_limit_plan_sweeps_every_dma_entry_limit_level():
    """On the limit-exhaustion scenario, levels 0..peak-1 each run: qemu-10.1 (no
    rollback) breaks there; hardened, whose budget check refuses the device the
    scenario's low limit cannot hold, maps nothing (so sweeps no level) and does not."""
    from rig.drive.sweep import _Cell

    trace = dict(corpus_traces())["scenarios/limit-exhaustion.trace"]
    for design, broken in (("qemu-10.1", True), ("hardened", False)):
        cell = _Cell(CellSpec("quick", design, "type1", "small", "limit"), "cy")
        cell.sweep("limit-exhaustion", trace, PLANS["limit"])
        assert (cell.runs > 2) == broken
        assert bool(cell.invariants) == broken, dict(cell.invariants)
        limits = {line.split("limit=")[1] for line in cell.labels if "limit=" in line}
        assert limits == {str(n) for n in range(cell.runs - 1)}


def test_run_cell_is_deterministic_and_its_swarm_leaves_the_design_out():
    spec = CellSpec("quick", "rdm-rollback", "iommufd", "small", "mix")
    a, b = run_cell(spec), run_cell(spec)
    a.pop("seconds"), b.pop("seconds")
    assert a == b
    assert a["runs"] == a["fail_nth_runs"] + a["swarm_runs"]
    other = CellSpec("quick", "hardened", "iommufd", "small", "mix")
    for i in range(4):
        (ca, oa), (cb, ob) = swarm_trace(spec, i), swarm_trace(other, i)
        assert oa == ob and ca.with_(design="hardened") == cb


def test_a_design_past_its_retries_is_known_not_a_new_break():
    """hardened's documented limit (corpora/regressions/shared-unmapped-hardened-*) is
    known on hardened (its trace) and on inplace (the give_up event), never broken."""
    for design in ("hardened", "inplace"):
        result = run_cell(CellSpec("quick", design, "type1", "small", "kvm-attr"))
        assert not result["invariants"], (design, result["invariants"])
        assert "shared-unmapped" in result["known"]


@pytest.mark.parametrize("mutant,plan,invariant", [
    ("attr-not-restored", "kvm-attr", "attr-agree"),
    ("limit-warn-only", "limit", "mapping-exhaustion"),
    ("discard-before-unmap", "kvm-attr", "stale-mapping"),
    ("failed-realize-keeps-listener", "limit", "orphan-listener"),
])
def test_a_known_bad_design_breaks_and_the_good_one_does_not(mutant, plan, invariant):
    bad = run_cell(CellSpec("quick", mutant, "type1", "small", plan))
    good = run_cell(CellSpec("quick", "hardened", "type1", "small", plan))
    assert invariant in bad["invariants"] and bad["minimized"]
    assert not good["invariants"]
    from rig.trace.format import parse

    text = next(iter(bad["minimized"].values()))["trace"]
    from rig.check.session import run

    again = run(parse(text, "<minimized>").config, parse(text, "<minimized>").ops)
    assert again.outcome.kind == "violation"


def test_nightly_reaches_a_million_generated_runs_and_parts_split_the_seeds():
    from rig.drive.sweep import swarm_range

    nightly = cells("nightly")
    assert sum(len(swarm_range(c)) for c in nightly) >= 10**6
    one = [c for c in nightly if c.id.startswith("hardened/type1/small/map/")]
    indices = [i for c in one for i in swarm_range(c)]
    assert indices == list(range(PROFILES["nightly"].swarm))
