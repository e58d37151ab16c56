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


def run_cell(design, iommu, scenario, backend="cy"):
    sc = SCENARIOS[scenario]
    return sweep.fail_nth_sweep(sc.config.with_(design=design, iommu=iommu), sc.ops, backend)


@pytest.mark.parametrize("design,iommu,scenario", CELLS)
def test_sweep_cell(design, iommu, scenario):
    result = run_cell(design, iommu, scenario)
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
        a = run_cell(design, "type1", scenario, "cy")
        b = run_cell(design, "type1", scenario, "pure")
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

    qemu = run_cell("qemu-10.1", "type1", "two-listeners")
    rdm = run_cell("rdm-rollback", "type1", "two-listeners")
    assert split_brain(qemu)
    assert not any(
        "vfio.dma_map" in str(r.steps[r.outcome.op_index].faults) and n in split_brain(rdm)
        for n, r in rdm.runs)


def test_sweep_cli_exit_codes(capsys):
    from rig.cli.main import main

    assert main(["sweep", "--design", "hardened", "--scenario", "seed", "--coverage"]) == 0
    out = capsys.readouterr().out
    assert "hardened type1 seed" in out and "kvm.set_memory_attributes" in out
    assert main(["sweep", "--design", "nope"]) == 1
