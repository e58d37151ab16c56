"""The verdict matrix (rig.cli.matrix) from cell dicts: which verdict wins, what links
where, and which breaks are exit 2."""

from rig.check.oracle import INVARIANTS
from rig.cli import matrix


def cell(design, plan, status="ok", invariants=None, known=None, minimized=None, runs=10,
         vm_stops=0, name=None):
    return {"cell": name or f"{design}/type1/small/{plan}/0", "design": design, "plan": plan,
            "status": status, "runs": runs, "vm_stops": vm_stops,
            "invariants": invariants or {}, "known": known or {}, "minimized": minimized or {},
            **({"error": "worker 'gw0' crashed while running it"} if status != "ok" else {})}


def trace(ops):
    return {"trace": f"# {ops} ops\n", "ops": ops, "signature": "violation stale-mapping"}


def test_error_wins_over_broken_and_broken_over_known_and_known_over_clean():
    cells = [
        cell("hardened", "map"), cell("hardened", "map", name="b"),
        cell("hardened", "pin", known={"shared-unmapped": {"runs": 2, "why": "x records it"}}),
        cell("hardened", "mix", invariants={"stale-mapping": 1},
             minimized={"stale-mapping": trace(3)}),
        cell("hardened", "mix", status="error", name="dead"),
        cell("qemu-10.1", "map", invariants={"stale-mapping": 4}),
    ]
    grid = matrix.aggregate(cells)
    rows = grid["rows"]
    assert grid["designs"] == ["hardened", "qemu-10.1"]
    assert grid["plans"] == ["map", "pin", "mix"]          # PLANS' order
    assert rows["hardened"]["map"]["verdict"] == "clean"
    assert rows["hardened"]["map"]["runs"] == 20 and rows["hardened"]["map"]["cells"] == 2
    assert rows["hardened"]["pin"]["verdict"] == "known"
    assert rows["hardened"]["mix"]["verdict"] == "error"   # never clean, nor just broken
    assert rows["hardened"]["mix"]["errors"] == 1
    assert rows["qemu-10.1"]["map"]["verdict"] == "broken"
    assert rows["qemu-10.1"]["pin"]["verdict"] == "n/a"
    assert grid["atomic"] == {"hardened": True, "qemu-10.1": False}
    assert matrix.broken_atomic(grid) == [("hardened", "mix", ["stale-mapping"])]
    text = matrix.text(grid)
    assert "error" in text.splitlines()[1] and "dead: worker 'gw0' crashed" in text


def test_the_shortest_minimized_trace_is_linked_and_written(tmp_path):
    cells = [cell("qemu-10.1", "map", invariants={"stale-mapping": 1},
                  minimized={"stale-mapping": trace(5)}, name="a"),
             cell("qemu-10.1", "map", invariants={"stale-mapping": 2},
                  minimized={"stale-mapping": trace(2)}, name="b")]
    grid = matrix.aggregate(cells)
    inv = grid["rows"]["qemu-10.1"]["map"]["invariants"]["stale-mapping"]
    assert inv["runs"] == 3 and inv["ops"] == 2 and inv["cell"] == "b"
    assert inv["trace"] == "traces/qemu-10.1__map__stale-mapping.trace"
    (written,) = matrix.write_traces(grid, str(tmp_path))
    assert (tmp_path / inv["trace"]).read_text() == "# 2 ops\n"
    md = matrix.markdown(grid)
    assert "[stale-mapping](traces/qemu-10.1__map__stale-mapping.trace) 3" in md


def test_known_breaks_never_make_an_atomic_design_exit_2():
    grid = matrix.aggregate([cell("hardened", "map",
                                  known={"atomic-failure": {"runs": 1, "why": "give_up"}})])
    assert matrix.broken_atomic(grid) == []
    assert "known (give_up): atomic-failure 1" in matrix.text(grid)


def test_abbreviations_are_unique_and_cover_every_invariant():
    assert set(matrix.ABBREVIATIONS) == set(INVARIANTS)
    assert len(set(matrix.ABBREVIATIONS.values())) == len(INVARIANTS)


def test_clean_and_n_a_cells_have_no_detail_line():
    grid = matrix.aggregate([cell("hardened", "map"), cell("qemu-10.1", "pin",
                                                           invariants={"pin-leak": 1})])
    assert grid["rows"]["hardened"]["pin"]["verdict"] == "n/a"
    text = matrix.text(grid)
    assert "hardened x map" not in text and "hardened x pin" not in text
    assert "qemu-10.1 x pin" in text
