"""`rig list`: every registry, read from the registries (designs, harnesses, ops, fault
sites, invariants, mutants), as text and as JSON."""

import json

import pytest

from rig.check import oracle
from rig.cli.main import main
from rig.drive.harnesses import HARNESSES
from rig.errors import errno_name
from rig.world.designs import DESIGNS
from rig.world.faults import SITES
from rig.world.mutants import level, mutants
from rig.world.ops import OPS


def rig_list(capsys, *args) -> tuple[int, str, str]:
    code = main(["list", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_lists_every_entry_of_every_registry(capsys):
    code, out, _ = rig_list(capsys, "--json")
    assert code == 0
    data = json.loads(out)
    assert list(data) == ["designs", "harnesses", "ops", "fault_sites", "invariants",
                          "mutants"]
    assert [d["name"] for d in data["designs"]] == list(DESIGNS)
    assert [d["id"] for d in data["designs"]] == [getattr(c, "id", None)
                                                  for c in DESIGNS.values()]
    hardened = next(d for d in data["designs"] if d["name"] == "hardened")
    assert hardened["contract"]["atomic"] is True and hardened["summary"].startswith("Contract:")

    assert [(h["name"], h["kind"], h["in_default"]) for h in data["harnesses"]] == [
        (n, h.kind, h.in_default) for n, h in HARNESSES.items()]
    assert all(h["doc"] == HARNESSES[h["name"]].doc for h in data["harnesses"])

    assert [o["name"] for o in data["ops"]] == list(OPS)
    convert = next(o for o in data["ops"] if o["name"] == "kvm_convert_memory")
    assert [a["name"] for a in convert["args"]] == [a.name for a in OPS["kvm_convert_memory"].args]
    assert convert["doc"] == OPS["kvm_convert_memory"].doc

    assert [s["name"] for s in data["fault_sites"]] == list(SITES)
    for s in data["fault_sites"]:
        site = SITES[s["name"]]
        assert s["errnos"] == [errno_name(-abs(e)) for e in site.errnos]
        assert s["errnos"][0].startswith("E") and s["partial"] == site.partial

    assert [(i["name"], i["severity"], i["doc"]) for i in data["invariants"]] == [
        (n, oracle.severity(n), oracle.DOC[n]) for n in oracle.INVARIANTS]
    backing = next(i for i in data["invariants"] if i["name"] == "double-backing")
    assert backing["kinds"] == ["state", "after-stop"]

    assert [(m["name"], m["base"], m["level"], m["core_flag"]) for m in data["mutants"]] == [
        (n, c.base, level(c), c.core_mutant) for n, c in mutants().items()]
    assert all(m["trace"] == f"corpora/mutants/{m['name']}.trace" and m["summary"]
               for m in data["mutants"])


def test_text_has_a_line_per_entry(capsys):
    code, out, _ = rig_list(capsys)
    assert code == 0
    lines = out.splitlines()
    for names in (DESIGNS, HARNESSES, OPS, SITES, oracle.INVARIANTS, mutants()):
        for name in names:
            assert any(f"  {name}  " in line for line in lines), name
    severities = [line.split()[:2] for line in lines
                  if line.split() and line.split()[0].isdigit()
                  and line.split()[1] in oracle.INVARIANTS]
    assert severities == [[str(oracle.severity(n)), n] for n in oracle.INVARIANTS]
    assert "ENOSPC" in out and "stale-mapping" in out


def test_sections_and_a_bad_section(capsys):
    code, out, _ = rig_list(capsys, "invariants", "fault_sites", "--json")
    assert code == 0 and list(json.loads(out)) == ["invariants", "fault_sites"]
    code, out, err = rig_list(capsys, "nope")
    assert code == 1 and "'nope': not one of designs" in err and not out


@pytest.mark.parametrize("section", ["designs", "harnesses", "ops", "fault_sites",
                                     "invariants", "mutants"])
def test_each_section_alone(capsys, section):
    code, out, _ = rig_list(capsys, section)
    assert code == 0 and out.count("\n") > 2
