"""``rig list``: every registry of the rig, read from the registries themselves: the
designs (rig.world.designs), the fuzz harnesses (rig.drive.harnesses), the ops
(rig.world.ops), the fault sites (rig.world.faults), the invariants
(rig.check.oracle) and the mutants of the bug benchmark (rig.world.mutants).  Nothing here is a second copy of a list: an entry added to a
registry shows here with no change to this file.

``registries()`` is the data (``rig list --json`` prints it), ``text()`` the same for a
terminal.
"""

from __future__ import annotations

import inspect

#: The sections, in the order ``rig list`` prints them.
SECTIONS = ("designs", "harnesses", "ops", "fault_sites", "invariants", "mutants")

#: The contract attributes of a design (rig.world.designs.base.Design), as listed.
DESIGN_CONTRACT = ("rollback", "atomic", "stops_vm", "inplace", "maps_private",
                   "budget_check", "serialize_hotplug", "retries")


def _first_sentence(doc: str | None) -> str:
    paragraph = " ".join(inspect.cleandoc(doc or "").split("\n\n")[0].split())
    head, dot, _ = paragraph.partition(". ")
    return head + "." if dot else paragraph


def designs() -> list[dict]:
    from rig.world.designs import BUILT_IN, DESIGNS, SOURCES

    # An external design has no id (the decoder never picks it): where it comes from.
    return [{"name": name, "id": cls.id if name in BUILT_IN else None,
             "source": SOURCES.get(name, "built-in"),
             "contract": {attr: getattr(cls, attr) for attr in DESIGN_CONTRACT
                          if hasattr(cls, attr)},
             "summary": _first_sentence(cls.__doc__)}
            for name, cls in DESIGNS.items()]


def harnesses() -> list[dict]:
    from rig.drive.harnesses import HARNESSES

    return [{"name": name, "kind": h.kind, "in_default": h.in_default,
             "summary": h.summary, "doc": h.doc}
            for name, h in HARNESSES.items()]


def ops() -> list[dict]:
    from rig.world.ops import OPS

    return [{"name": name, "id": getattr(spec, "id", None),
             "args": [{"name": a.name, "kind": a.kind} for a in getattr(spec, "args", ())],
             "doc": getattr(spec, "doc", "")}
            for name, spec in OPS.items()]


def fault_sites() -> list[dict]:
    from rig.errors import errno_name
    from rig.world.faults import SITES

    return [{"name": name, "id": getattr(site, "id", None),
             "errnos": [errno_name(-abs(e)) for e in getattr(site, "errnos", ())],
             "partial": bool(getattr(site, "partial", False)),
             "doc": getattr(site, "doc", "")}
            for name, site in SITES.items()]


def invariants() -> list[dict]:
    from rig.check import oracle

    return [{"name": name, "severity": inv.severity,
             "kinds": [kind for kind, _ in inv.checks], "doc": inv.doc}
            for name in oracle.INVARIANTS for inv in (oracle.REGISTRY[name],)]


def mutants() -> list[dict]:
    from rig.world import mutants as registry

    return [{"name": name, "base": cls.base, "level": registry.level(cls),
             "core_flag": cls.core_mutant, "trace": f"corpora/mutants/{name}.trace",
             "summary": registry.summary(cls)}
            for name, cls in registry.mutants().items()]


def registries(sections=SECTIONS) -> dict:
    return {section: globals()[section]() for section in sections}


def _yes(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _id(value) -> str:
    return "-" if value is None else str(value)


def _table(rows: list[list[str]]) -> list[str]:
    """Rows of cells, every column but the last padded to its widest cell."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1]
            for row in rows]


def text(data: dict) -> str:
    out: list[str] = []
    if "designs" in data:
        out.append("designs (rig/world/designs/; `rig designs` runs them)")
        rows = _table([["id", "name", "summary"]] + [
            [_id(d["id"]), d["name"], d["summary"]] for d in data["designs"]])
        indent = len(rows[0]) - len("summary")
        out.append(rows[0])
        for row, d in zip(rows[1:], data["designs"]):
            out.append(row)
            out.append(" " * indent + " ".join(f"{k}={_yes(v)}"
                                               for k, v in d["contract"].items())
                       + ("" if d["source"] == "built-in" else f" from={d['source']}"))
    if "harnesses" in data:
        out.append("harnesses (rig/drive/harnesses.py; fuzz/<name>.py, `rig fuzz`)")
        out += _table([["name", "kind", "default", "summary"]] + [
            [h["name"], h["kind"], _yes(h["in_default"]), h["summary"]]
            for h in data["harnesses"]])
    if "ops" in data:
        out.append("ops (rig/world/ops.py; one a trace line)")
        out += _table([["id", "name", "args", "doc"]] + [
            [_id(o["id"]), o["name"],
             "(" + ", ".join(f"{a['name']}:{a['kind']}" for a in o["args"]) + ")", o["doc"]]
            for o in data["ops"]])
    if "fault_sites" in data:
        out.append("fault sites (rig/world/faults.py; SITE=ERRNO@NTH in traces)")
        out += _table([["id", "name", "errnos", "partial", "doc"]] + [
            [_id(s["id"]), s["name"], ",".join(s["errnos"]), _yes(s["partial"]), s["doc"]]
            for s in data["fault_sites"]])
    if "invariants" in data:
        out.append("invariants (rig/check/oracle.py; most severe first, `# expect: "
                   "violation NAME`)")
        out += _table([["severity", "name", "checked", "doc"]] + [
            [str(i["severity"]), i["name"], ",".join(i["kinds"]), i["doc"]]
            for i in data["invariants"]])
    if "mutants" in data:
        out.append("mutants (rig/world/mutants/; `rig bench bugs`, `rig fuzz --design NAME`)")
        out += _table([["name", "base", "level", "summary"]] + [
            [m["name"], m["base"], m["level"], m["summary"]] for m in data["mutants"]])
    return "\n".join(out)
