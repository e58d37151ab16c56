"""The verdict matrix of a sweep: rows designs, columns fault plans, each cell what broke
over every (IOMMU backend, guest shape, seed slice) cell of that design and plan.

A matrix cell's verdict is, in this order: ``error`` (a sweep cell of it did not finish:
its worker died, the rig raised; never shown as clean whatever the others say),
``broken`` (an invariant broke, and it is news), ``known`` (every break is no news: a
corpus trace of the design records it, or the design gave up after its documented
retries), ``clean``, or ``n/a`` (no sweep cell: the limit plan on iommufd alone).  Each
broken invariant links to the shortest minimized trace the cells found for it
(``traces/``, written by ``write_traces``).
"""

from __future__ import annotations

import os

from rig.check.oracle import INVARIANTS
from rig.drive.sweep import PLANS
from rig.world.designs import design_class


def _abbreviations() -> dict[str, str]:
    """invariant -> two or three letters for the text table (initials of its words,
    or its first and last letter), unique by construction."""
    out: dict[str, str] = {}
    for name in INVARIANTS:
        words = name.split("-")
        code = "".join(w[0] for w in words) if len(words) > 1 else name[0] + name[-1]
        code = code.upper()
        while code in out.values():
            code += str(len(out) % 10)
        out[name] = code
    return out


ABBREVIATIONS = _abbreviations()


def trace_path(design: str, plan: str, invariant: str) -> str:
    """Where write_traces puts a matrix cell's trace, relative to the sweep's folder."""
    return f"traces/{design}__{plan}__{invariant}.trace"


def aggregate(cells: list[dict]) -> dict:
    """The matrix of a sweep's cell dicts (ok and error ones), in the cells' order of
    designs and PLANS' order of plans."""
    designs = list(dict.fromkeys(c["design"] for c in cells))
    plans = [p for p in PLANS if any(c["plan"] == p for c in cells)]
    rows: dict = {}
    for design in designs:
        rows[design] = {}
        for plan in plans:
            mine = [c for c in cells if c["design"] == design and c["plan"] == plan]
            rows[design][plan] = _entry(design, plan, mine)
    atomic = {d: bool(getattr(design_class(d), "atomic", False)) for d in designs}
    return {"designs": designs, "plans": plans, "atomic": atomic, "rows": rows}


def _entry(design: str, plan: str, cells: list[dict]) -> dict:
    ok = [c for c in cells if c.get("status") == "ok"]
    errors = [c for c in cells if c.get("status") != "ok"]
    invariants: dict = {}
    for c in ok:
        for name, runs in c["invariants"].items():
            entry = invariants.setdefault(name, {"runs": 0, "trace": None, "ops": None,
                                                 "text": None, "cell": None})
            entry["runs"] += runs
            found = c["minimized"].get(name)
            if found is not None and (entry["ops"] is None or found["ops"] < entry["ops"]):
                entry.update(ops=found["ops"], text=found["trace"], cell=c["cell"],
                             trace=trace_path(design, plan, name))
    known: dict = {}
    for c in ok:
        for name, k in c.get("known", {}).items():
            entry = known.setdefault(name, {"runs": 0, "why": k["why"]})
            entry["runs"] += k["runs"]
    if not cells:
        verdict = "n/a"
    elif errors:
        verdict = "error"
    elif invariants:
        verdict = "broken"
    elif known:
        verdict = "known"
    else:
        verdict = "clean"
    return {
        "verdict": verdict, "cells": len(cells), "errors": len(errors),
        "runs": sum(c["runs"] for c in ok), "vm_stops": sum(c["vm_stops"] for c in ok),
        "invariants": dict(sorted(invariants.items(), key=lambda kv: INVARIANTS.index(kv[0])
                                  if kv[0] in INVARIANTS else len(INVARIANTS))),
        "known": known,
        "error_cells": [{"cell": c["cell"], "error": c.get("error", "")} for c in errors],
    }


def write_traces(matrix: dict, folder: str) -> list[str]:
    """Write every matrix cell's linked trace under ``folder`` (atomically); returns the
    paths written."""
    written = []
    for design, row in matrix["rows"].items():
        for plan, entry in row.items():
            for name, inv in entry["invariants"].items():
                if inv["trace"] is None:
                    continue
                path = os.path.join(folder, inv["trace"])
                os.makedirs(os.path.dirname(path), exist_ok=True)
                tmp = f"{path}.tmp{os.getpid()}"
                with open(tmp, "w", encoding="utf-8") as f:
                    f.write(inv["text"])
                os.replace(tmp, path)
                written.append(path)
    return written


def broken_atomic(matrix: dict) -> list[tuple[str, str, list[str]]]:
    """(design, plan, invariants) of every cell where a design that promises atomicity
    broke (rig sweep's exit 2)."""
    out = []
    for design in matrix["designs"]:
        if not matrix["atomic"].get(design):
            continue
        for plan in matrix["plans"]:
            entry = matrix["rows"][design][plan]
            if entry["invariants"]:
                out.append((design, plan, list(entry["invariants"])))
    return out


def _cell_text(entry: dict) -> str:
    verdict = entry["verdict"]
    if verdict in ("clean", "n/a", "error"):
        return verdict
    if verdict == "known":
        return "known"
    return " ".join(ABBREVIATIONS.get(n, n) for n in entry["invariants"])


def text(matrix: dict) -> str:
    """The terminal table: one line per design, one column per plan (invariants as
    letters, with a legend), then one line per broken cell with counts and traces."""
    plans, designs = matrix["plans"], matrix["designs"]
    label = {d: d + (" *" if matrix["atomic"].get(d) else "") for d in designs}
    cells = {(d, p): _cell_text(matrix["rows"][d][p]) for d in designs for p in plans}
    first = max([len("design")] + [len(v) for v in label.values()])
    widths = [max([len(p)] + [len(cells[d, p]) for d in designs]) for p in plans]
    lines = ["  ".join([f"{'design':<{first}}"] +
                       [f"{p:<{w}}" for p, w in zip(plans, widths)]).rstrip()]
    for d in designs:
        lines.append("  ".join([f"{label[d]:<{first}}"] +
                               [f"{cells[d, p]:<{w}}" for p, w in zip(plans, widths)]).rstrip())
    used = sorted({n for d in designs for p in plans for n in matrix["rows"][d][p]["invariants"]},
                  key=lambda n: INVARIANTS.index(n) if n in INVARIANTS else len(INVARIANTS))
    lines.append("")
    if any(matrix["atomic"].values()):
        lines.append("* promises atomicity (a break there is exit 2)")
    if used:
        lines.append("legend: " + ", ".join(f"{ABBREVIATIONS.get(n, n)} {n}" for n in used))
    details = []
    for d in designs:
        for p in plans:
            entry = matrix["rows"][d][p]
            if entry["verdict"] in ("clean", "n/a"):
                continue
            head = f"{d} x {p}:"
            if entry["vm_stops"]:
                head += f" {_runs(entry['vm_stops'], 'VM stop')}"
            details.append(head)
            if entry["errors"]:
                details.append(f"    error: {entry['errors']} cell(s) did not finish: " + "; ".join(
                    f"{e['cell']}: {e['error']}" for e in entry["error_cells"][:3]))
            for n, inv in entry["invariants"].items():
                where = f"  {inv['trace']} ({inv['ops']} ops)" if inv["trace"] else ""
                details.append(f"    {n} in {_runs(inv['runs'], 'run')}{where}")
            whys: dict = {}
            for n, k in entry["known"].items():
                whys.setdefault(k["why"], []).append(f"{n} {k['runs']:,}")
            for why, names in whys.items():
                details.append(f"    known ({why}): {', '.join(names)}")
    if details:
        lines += [""] + details
    return "\n".join(lines)


def _runs(n: int, what: str) -> str:
    return f"{n:,} {what}" + ("" if n == 1 else "s")


def markdown(matrix: dict) -> str:
    """The matrix as a markdown table (for a patch discussion): each invariant links to
    its minimized trace, relative to the sweep's folder."""
    plans, designs = matrix["plans"], matrix["designs"]
    lines = ["| design | " + " | ".join(plans) + " |",
             "|---|" + "---|" * len(plans)]
    for d in designs:
        row = [f"`{d}`" + (" (atomic)" if matrix["atomic"].get(d) else "")]
        for p in plans:
            entry = matrix["rows"][d][p]
            if entry["verdict"] in ("clean", "n/a"):
                row.append(entry["verdict"])
                continue
            parts = []
            if entry["errors"]:
                parts.append(f"**error** ({entry['errors']} cells)")
            for n, inv in entry["invariants"].items():
                name = f"[{n}]({inv['trace']})" if inv["trace"] else n
                parts.append(f"{name} {inv['runs']:,}")
            if entry["known"]:
                parts.append("known: " + ", ".join(entry["known"]))
            if entry["vm_stops"]:
                parts.append(f"{entry['vm_stops']:,} stops")
            row.append("<br>".join(parts))
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Counts are runs; a run can break several invariants. `known`: a break "
              "a corpus trace of that design records (corpora/regressions/), or one past "
              "the design's documented retries (a give_up event)."]
    return "\n".join(lines)
