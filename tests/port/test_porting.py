"""docs/porting.md (``rig port-doc``, rig.cli.porting): current, complete, and true.

The document is generated; these tests make sure it stays so: the committed file is what
the command writes, every difference between the designs has a description (so a new
attribute or method of ``hardened`` cannot go undocumented), every cited trace replays as
cited on both designs, and ``--qemu-src`` diffs a tree's file against the C port.  The
QEMU tree here is a small fake written by the test (never QEMU's text).
"""

from pathlib import Path

import pytest

from rig.check import oracle
from rig.cli import porting
from rig.cli.main import main
from rig.world.designs import design_class
from rig.world.mutants import mutants

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "porting.md"


def _all_hardenings():
    return list(porting.ATTRIBUTES.items()) + list(porting.BEHAVIOURS.items())


def _citations():
    return [(key, c) for key, h in _all_hardenings() for c in h.cites]


# -- current --------------------------------------------------------------------------
def test_the_committed_document_is_current(capsys):
    assert main(["port-doc", "--check", "-o", str(DOC)]) == 0
    assert capsys.readouterr().out.strip() == f"{DOC} is current"


def test_check_fails_with_one_line_after_an_edit(tmp_path, capsys):
    copy = tmp_path / "porting.md"
    lines = DOC.read_text().splitlines(keepends=True)
    lines[10] = "an edit by hand\n"
    copy.write_text("".join(lines))
    assert main(["port-doc", "--check", "-o", str(copy)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"rig port-doc: {copy} is not current (first difference at line 11): "
                   f"run `rig port-doc -o {copy}`"]


def test_check_of_a_missing_file_fails(tmp_path, capsys):
    assert main(["port-doc", "--check", "-o", str(tmp_path / "none.md")]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_writing_gives_the_same_bytes(tmp_path):
    out = tmp_path / "porting.md"
    assert main(["port-doc", "-o", str(out)]) == 0
    assert out.read_bytes() == DOC.read_bytes()


def test_the_document_holds_no_path_outside_the_repository():
    text = DOC.read_text()
    assert str(ROOT) not in text and "/tmp" not in text and "/home" not in text


# -- complete -------------------------------------------------------------------------
def test_every_difference_between_the_designs_is_described():
    assert porting.undescribed() == []
    assert porting.stale_descriptions() == []


def test_the_differences_are_the_expected_attributes():
    """The hardening list is the attribute difference itself: rollback, atomic, ...
    (pinned, so that a change to how differences are computed is seen)."""
    diff = {k for k, _, _ in porting.attribute_differences()}
    assert diff == {"rollback", "atomic", "stops_vm", "budget_check", "serialize_hotplug",
                    "retries", "discard_shared"}
    assert set(porting.ATTRIBUTES) == diff - set(porting.NOT_HARDENINGS)


def test_an_attribute_that_starts_to_differ_needs_a_description(monkeypatch):
    hardened = design_class(porting.TARGET)
    monkeypatch.setattr(hardened, "maps_private", True, raising=False)
    assert porting.undescribed() == ["attribute maps_private"]
    with pytest.raises(Exception, match="does not describe attribute maps_private"):
        porting.generate()


def test_a_new_attribute_of_one_design_needs_a_description(monkeypatch):
    monkeypatch.setattr(design_class(porting.BASE), "new_knob", 3, raising=False)
    assert porting.undescribed() == ["attribute new_knob"]


def test_a_new_method_of_hardened_needs_a_description(monkeypatch):
    monkeypatch.setattr(design_class(porting.TARGET), "undo_more", lambda self: 0,
                        raising=False)
    assert porting.undescribed() == ["method undo_more"]


def test_an_attribute_that_stops_differing_is_a_stale_description(monkeypatch):
    monkeypatch.setattr(design_class(porting.TARGET), "retries", 1)
    assert porting.stale_descriptions() == ["attribute retries"]


def test_every_hardening_appears_in_the_document():
    text = DOC.read_text()
    for _, h in _all_hardenings():
        assert f"### {h.title}\n" in text


def test_cited_invariants_and_mutants_exist():
    for key, h in _all_hardenings():
        assert set(h.invariants) <= set(oracle.REGISTRY), key
        assert h.cites or h.no_trace, f"{key}: cite a trace or say plainly there is none"
        for name in h.core_mutants:
            assert mutants()[name].core_mutant, name
    for key, c in _citations():
        if c.mutant:  # replayed in this process: a world mutant, not a core build
            assert not getattr(mutants()[c.mutant], "core_mutant", None), key


def test_every_port_hardening_comment_is_in_a_function_of_the_port():
    found = porting.port_hardenings()
    assert len(found) >= 8
    source = porting.PORT.read_text()
    for function, text in found:
        assert f"{function}(" in source and text


def test_port_hardening_comments_are_read_from_the_file():
    fake = ("static int\nram_block_attributes_foo(void)\n{\n"
            "    /* Hardening: one.  More. */\n    return 0;\n}\n"
            "/*\n * Hardening: two\n * lines.\n */\n"
            "static void ram_block_attributes_bar(int x)\n{\n}\n")
    assert porting.port_hardenings(fake) == [("ram_block_attributes_foo", "one.  More"),
                                             ("ram_block_attributes_bar", "two lines")]


# -- true -----------------------------------------------------------------------------
@pytest.mark.parametrize("key,citation", _citations(),
                         ids=[f"{k}:{Path(c.path).stem}" for k, c in _citations()])
def test_each_cited_trace_replays_as_cited(key, citation):
    """The trace shows the bug on qemu-10.1 and not on hardened (or, for a documented
    limit, on both), and the mutant that drops just the hardening shows it again."""
    r = porting.replay(citation)
    assert (r.base != "ok") == citation.bug_on_base, (key, r.base)
    assert (r.target != "ok") == citation.bug_on_target, (key, r.target)
    if citation.mutant:
        assert r.mutant != "ok", (key, r.mutant)
    assert r.verified


def test_the_document_states_each_replayed_outcome():
    text = DOC.read_text()
    for _, c in _citations():
        r = porting.replay(c)
        line = next(x for x in text.splitlines() if x.startswith(f"- `corpora/{c.path}`"))
        assert f"on `{porting.BASE}`: {r.base};" in line
        assert f"on `{porting.TARGET}`: {r.target}" in line
        assert "Verified:" in line and "NOT VERIFIED" not in line


def test_an_unverified_citation_is_said_so(monkeypatch):
    """A citation that no longer shows what it is cited for is printed as NOT VERIFIED
    (and warned about), never as verified."""
    h = porting.ATTRIBUTES["rollback"]
    wrong = porting.Citation("regressions/ok-hardened-7d9d8015.trace")
    monkeypatch.setitem(porting.ATTRIBUTES, "rollback",
                        porting.Hardening(**{**h.__dict__, "cites": (wrong,)}))
    text = porting.generate()
    line = next(x for x in text.splitlines() if "ok-hardened-7d9d8015" in x)
    assert "NOT VERIFIED" in line


def test_a_missing_cited_trace_is_one_line(monkeypatch, capsys):
    h = porting.ATTRIBUTES["rollback"]
    monkeypatch.setitem(porting.ATTRIBUTES, "rollback", porting.Hardening(
        **{**h.__dict__, "cites": (porting.Citation("regressions/gone.trace"),)}))
    assert main(["port-doc", "-o", "-"]) == 1
    assert capsys.readouterr().err.strip() == (
        "rig port-doc: cited trace corpora/regressions/gone.trace does not exist")


# -- --qemu-src -----------------------------------------------------------------------
FAKE_101 = """/*
 * A fake file in the layout of system/ram-block-attributes.c
 */

static int
ram_block_attributes_fake(void)
{
    return 0;
}
"""


def test_qemu_src_appends_the_diff_against_the_port(tmp_path):
    tree = tmp_path / "qemu"
    (tree / "system").mkdir(parents=True)
    (tree / "system" / "ram-block-attributes.c").write_text(FAKE_101)
    out = tmp_path / "porting.md"
    assert main(["port-doc", "--qemu-src", str(tree), "-o", str(out)]) == 0
    text = out.read_text()
    head, _, diff = text.partition("```diff\n")
    assert head.startswith(DOC.read_text().split("## The diff against QEMU 10.1")[0])
    diff = diff.split("```\n")[0].splitlines()
    assert diff[:2] == ["--- a/system/ram-block-attributes.c",
                        "+++ b/system/ram-block-attributes.c"]
    assert "-ram_block_attributes_fake(void)" in diff
    assert "+ram_block_attributes_rdm_register_listener(RamDiscardManager *rdm," in diff
    assert str(tmp_path) not in text


@pytest.mark.parametrize("make,message", [
    (lambda p: p / "missing", "not a directory"),
    (lambda p: p, "no system/ram-block-attributes.c"),
])
def test_a_bad_qemu_src_is_one_line(tmp_path, capsys, make, message):
    assert main(["port-doc", "--qemu-src", str(make(tmp_path)), "-o",
                 str(tmp_path / "o.md")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "o.md").exists()


def test_qemu_src_needs_an_output_outside_the_committed_file(tmp_path, capsys):
    (tmp_path / "system").mkdir()
    (tmp_path / "system" / "ram-block-attributes.c").write_text(FAKE_101)
    assert main(["port-doc", "--qemu-src", str(tmp_path)]) == 1
    assert "give -o FILE" in capsys.readouterr().err
