"""rig explore (rig.drive.explore): the alphabet, breadth first with state hashing,
shortest counterexamples, the budgets, checkpoints, and the command."""

import json

import pytest

from rig.check.session import run
from rig.drive import explore
from rig.trace.format import parse
from rig.world.faults import SITES

TINY = explore.WORLDS["tiny"]


def test_the_alphabet_of_tiny():
    ops = explore.alphabet(TINY)
    assert ops == explore.alphabet(TINY)          # one fixed order
    assert len(ops) == len(set(ops))
    names = [o.name for o in ops]
    # 10 block-aligned ranges in 4 blocks, each way; plug/unplug; a listener; per page two
    # DMAs and a guest write.
    assert names.count("kvm_convert_memory") == 20
    assert names.count("vfio_register") == names.count("listener_register") == 1
    assert names.count("device_dma") == 8 and names.count("guest_touch") == 4


def test_each_hit_gets_each_errno_and_partial_sites_two_progresses():
    o = explore.alphabet(TINY)[0]
    variants = explore.fault_variants(o, {"vfio.dma_map": 2, "iommufd.ioas_unmap": 1})
    maps = [v for v in variants if v.prop("fault")[0].site == "vfio.dma_map"]
    assert len(maps) == 2 * len(SITES["vfio.dma_map"].errnos)
    unmaps = [v.prop("fault")[0] for v in variants if v.prop("fault")[0].site == "iommufd.ioas_unmap"]
    assert sorted(f.partial for f in unmaps) == [0, 1]


def test_hardened_is_clean_and_the_search_is_the_same_with_two_workers():
    one = explore.explore(TINY, "hardened", 2, jobs=1)
    two = explore.explore(TINY, "hardened", 2, jobs=2)
    assert not one.violations and one.depth == 2 and one.stopped is None
    assert (one.states, one.sequences, one.vm_stops) == (two.states, two.sequences, two.vm_stops)
    # Sequences reaching the same state are expanded once.
    assert 1 < one.states < one.sequences


def test_counterexamples_are_shortest_and_replay():
    deep = explore.explore(TINY, "qemu-10.1", 2)
    assert deep.violations["atomic-failure"]["length"] == 1
    assert deep.violations["shared-unmapped"]["length"] == 2
    shallow = explore.explore(TINY, "qemu-10.1", 1)
    assert "shared-unmapped" not in shallow.violations  # none shorter exists
    for name, v in deep.violations.items():
        trace = parse(v["trace"], "<explore>")
        assert len(trace.ops) == v["length"] == v["ops"]
        again = run(trace.config, trace.ops)
        assert name in {x.invariant for x in again.outcome.violations}, name
        assert trace.expect.matches(again.outcome)


def test_max_states_stops_at_a_whole_depth():
    capped = explore.explore(TINY, "hardened", 5, max_states=50)
    assert capped.depth < 5 and "--max-states 50" in capped.stopped
    full = explore.explore(TINY, "hardened", capped.depth)
    assert full.states == capped.states and full.sequences == capped.sequences


def test_a_checkpoint_resumes_to_the_same_result(tmp_path):
    path = str(tmp_path / "cp.json")
    explore.explore(TINY, "qemu-10.1", 1, checkpoint=path)
    resumed = explore.explore(TINY, "qemu-10.1", 2, checkpoint=path, resume=True)
    direct = explore.explore(TINY, "qemu-10.1", 2)
    assert (resumed.depth, resumed.states, resumed.sequences) == \
        (direct.depth, direct.states, direct.sequences)
    assert {n: v["trace"] for n, v in resumed.violations.items()} == \
        {n: v["trace"] for n, v in direct.violations.items()}
    with pytest.raises(ValueError, match="not of tiny/hardened"):
        explore.explore(TINY, "hardened", 2, checkpoint=path, resume=True)


@pytest.mark.parametrize("mutant", ["attr-not-restored", "state-change-error-ignored",
                                    "discard-before-unmap"])
def test_a_world_mutant_is_caught_where_its_base_is_clean(mutant):
    """The search stops at the first violating sequence (on_violation), which is clean on
    the mutant's base, hardened: a kill, as rig bench bugs' explore engine judges it."""
    hits = []
    found = explore.explore(TINY, mutant, 3,
                            on_violation=lambda ops, result: hits.append(ops) or True)
    assert hits and found.stopped == "stopped by on_violation", mutant
    on_base = run(TINY.config.with_(design="hardened"), list(hits[0]))
    assert on_base.outcome.kind != "violation", on_base.outcome


def test_the_interleaving_world_reaches_the_register_race():
    hotplug = explore.WORLDS["hotplug"]
    race = explore.explore(hotplug, "register-race", 2, max_states=5000)
    assert race.violations, "a conversion inside the hot-plug replay breaks register-race"


def test_the_command(tmp_path, capsys):
    from rig.cli.main import main

    out = tmp_path / "found"
    assert main(["explore", "--design", "hardened", "--depth", "1", "-j", "1",
                 "--out", str(out)]) == 0
    assert "no violation up to depth 1" in capsys.readouterr().out
    assert main(["explore", "--design", "qemu-10.1", "--depth", "1", "-j", "1", "--json",
                 "--out", str(out)]) == 2
    doc = json.loads(capsys.readouterr().out)
    (row,) = doc["designs"]
    path = row["violations"]["atomic-failure"]["path"]
    assert (out / path.split("/")[-1]).read_text() == row["violations"]["atomic-failure"]["trace"]
    assert main(["explore", "--world", "nowhere", "--out", str(out)]) == 1
    assert "--world 'nowhere'" in capsys.readouterr().err


def test_a_world_whose_frontier_runs_dry_is_exhausted():
    """One page, no fault: every reachable state is expanded before the depth cap, and
    the verdict says so (it holds for every length); a capped search does not."""
    from rig.world.config import RamSpec, WorldConfig

    one = explore.ExploreWorld("one-page", WorldConfig(ram=(RamSpec(0x0, 0x1000),)),
                               "one page", faults=0, listeners=())
    full = explore.explore(one, "hardened", 20)
    assert full.exhausted and full.depth < 20 and not full.violations
    assert full.to_json()["exhausted"] is True
    capped = explore.explore(one, "hardened", full.depth - 1)
    assert not capped.exhausted and capped.frontier > 0


def test_a_trace_header_is_a_world_and_a_core_mutant_is_caught_there(tmp_path):
    """vfio-populate-no-rollback needs a map that fails half-way, which tiny (unlimited
    RLIMIT_MEMLOCK) never makes: its corpus trace's header (one page of memlock) is the
    world.  The core mutant runs in a `rig` process on its own core build."""
    import subprocess
    import sys

    from rig.trace.corpus import root

    header = root() / "mutants" / "vfio-populate-no-rollback.trace"
    proc = subprocess.run([sys.executable, "-m", "rig.cli.main", "explore", "--world",
                           str(header), "--design", "vfio-populate-no-rollback", "--depth",
                           "2", "-j", "1", "--json", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr
    (row,) = json.loads(proc.stdout)["designs"]
    assert "stale-mapping" in row["violations"], row["violations"]
    assert row["violations"]["stale-mapping"]["length"] == 2
    assert all(p.name.startswith("explore-vfio-populate-no-rollback-") for p in tmp_path.iterdir())
