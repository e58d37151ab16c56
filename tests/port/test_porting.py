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


# -- which port file carries what -------------------------------------------------------
#: The truth per the C files' header and ``Hardening:`` comments (pinned, so that moving a
#: hardening to another file, or out of the port, is a deliberate change seen here).
CARRIED_BY = {
    "rollback": porting.RBA_PORT,
    "register-replay-failure": porting.RBA_PORT,
    "atomic": porting.KVM_PORT,
    "retries": porting.KVM_PORT,
    "kvm-attribute-restore": porting.KVM_PORT,
    "stops_vm": None,           # kvm_cpu_exec(), the caller, is not ported
    "budget_check": None,       # hw/vfio/
    "serialize_hotplug": None,  # no lock in either file
}


def test_each_hardening_names_the_file_that_carries_it():
    assert {key: h.port for key, h in _all_hardenings()} == CARRIED_BY
    assert porting.port_problems() == []


def test_a_hardening_in_part_in_the_port_says_what_stays_a_qemu_change():
    partial = {key for key, h in _all_hardenings() if h.port and h.remains}
    assert partial == {"retries", "register-replay-failure"}
    for key, h in _all_hardenings():
        if h.port is None:
            assert h.remains and not h.carried_in, key


def _with(monkeypatch, key, **changes):
    table = porting.ATTRIBUTES if key in porting.ATTRIBUTES else porting.BEHAVIOURS
    h = table[key]
    monkeypatch.setitem(table, key, porting.Hardening(**{**h.__dict__, **changes}))


def test_a_hardening_put_in_the_wrong_file_is_refused(monkeypatch):
    """atomic is carried by the kvm file: claimed for the state manager, its functions
    have no Hardening: comment there, and the document is not written."""
    _with(monkeypatch, "atomic", port=porting.RBA_PORT)
    problems = porting.port_problems()
    assert "atomic: rig/port/ram-block-attributes.c has no Hardening: comment in " \
           "kvm_convert_memory" in problems
    assert all(p.startswith("atomic: ") for p in problems) and len(problems) == 4
    with pytest.raises(Exception, match="says what the C port carries wrongly: atomic: "):
        porting.generate()


def test_a_claim_for_the_port_without_a_function_or_for_neither_without_prose(monkeypatch):
    _with(monkeypatch, "rollback", carried_in=())
    _with(monkeypatch, "stops_vm", remains="")
    _with(monkeypatch, "budget_check", port="kvm-all.c")
    assert porting.port_problems() == [
        "rollback: carried by rig/port/ram-block-attributes.c, but carried_in names no "
        "function of it",
        "stops_vm: carried by neither port file, but remains does not say where its QEMU "
        "change goes",
        "budget_check: port 'kvm-all.c' is not one of ram-block-attributes.c, "
        "kvm/kvm-convert-memory.c"]


def test_a_port_whose_comments_are_gone_carries_nothing(tmp_path, monkeypatch):
    """The check reads the files: the kvm file with its Hardening: comments renamed fails
    every hardening it is said to carry, and no other."""
    port = tmp_path / "port"
    (port / "kvm").mkdir(parents=True)
    for name in porting.PORT_FILES:
        text = (porting.PORT_DIR / name).read_text()
        if name == porting.KVM_PORT:
            text = text.replace("Hardening:", "Note:")
        (port / name).write_text(text)
    monkeypatch.setattr(porting, "PORT_DIR", port)
    failing = {p.split(":")[0] for p in porting.port_problems()}
    assert failing == {"atomic", "retries", "kvm-attribute-restore"}


@pytest.fixture(scope="module")
def generated():
    """The document as the code writes it now (the committed one is checked against it
    above): the tests below check the code, not only the file."""
    return porting.generate()


def test_the_table_and_each_section_name_the_carrying_file(generated):
    lines = generated.splitlines()
    for key, h in _all_hardenings():
        row = next(x for x in lines if x.startswith(f"| {h.title} "))
        cell = row.rstrip(" |").rsplit(" | ", 1)[1]
        section = lines[lines.index(f"### {h.title}"):]
        carried = next(x for x in section if x.startswith("**Carried by.** "))
        if h.port is None:
            assert cell == "QEMU change", key
            assert carried.startswith("**Carried by.** neither port file: a QEMU change, "), key
        else:
            assert cell.startswith(f"`rig/port/{h.port}`"), key
            assert carried.startswith(f"**Carried by.** `rig/port/{h.port}`, in "), key
            for name in h.carried_in:
                assert f"`{name}" in carried, (key, name)
        assert (", in part" in cell) == bool(h.port and h.remains), key
        if h.remains:
            assert h.remains in carried, key


# -- the two files' Hardening: comments -------------------------------------------------
FAKE_PORT = '''/*
 * A header that says what is marked "Hardening:" below, not one itself.
 */

OBJECT_DEFINE_SIMPLE_TYPE(Foo,
                          foo,
                          { })

static int helper_declared(void);

/* Hardening: how often. */
#define FAKE_RETRIES 8

static int
helper_own_line(int a)
{
    /* Hardening: inside, own line. */
    return a;
}

/*
 * Does things.  Hardening: before a
 * split signature.
 */
static unsigned split_signature(int a,
                                int b)
{
    return a + b;
}

int kvm_like(long start, long size, bool to_private)
{
    if (start) {
        /* Hardening: nested. */
    }
    return 0;
}
'''


def test_c_function_definitions_are_found_in_general():
    """Any function, QEMU style (return type on its own line or not, a signature over
    lines), a macro for a file-level comment; not a quoted mention, a prototype or a
    macro invocation at column 0."""
    assert porting.port_hardenings(FAKE_PORT) == [
        ("FAKE_RETRIES", "how often"),
        ("helper_own_line", "inside, own line"),
        ("split_signature", "before a split signature"),
        ("kvm_like", "nested")]
    lines = FAKE_PORT.splitlines()
    defined = [porting.definition(lines, i) for i in range(len(lines))]
    assert [d for d in defined if d] == ["helper_own_line", "split_signature", "kvm_like"]


def test_the_kvm_port_hardenings_are_read_by_function():
    found = porting.port_hardenings(port=porting.KVM_PORT)
    names = [name for name, _ in found]
    assert set(names) >= {"KVM_CONVERT_MEMORY_RETRIES", "kvm_convert_memory",
                          "kvm_convert_memory_retry", "kvm_convert_memory_restore_attributes",
                          "kvm_convert_memory_find_pieces", "kvm_convert_memory_discard_holes"}
    source = (porting.PORT_DIR / porting.KVM_PORT).read_text()
    assert source.count("Hardening:") == len(found) + 1   # + the header's quoted mention
    lines = source.splitlines()
    functions = {porting.definition(lines, i) for i in range(len(lines))} - {None}
    for name, text in found:
        assert (f"#define {name} " in source) if porting.is_macro(name) \
            else name in functions, name
        assert text and "Hardening" not in text


def test_what_the_c_port_carries_lists_both_files(generated):
    text = generated.split("## What the C port carries\n")[1].split("\n## ")[0]
    rba, kvm = (text.split(f"`rig/port/{name}`: ")[1] for name in porting.PORT_FILES)
    assert "- `kvm_convert_memory_restore_attributes()`: " in kvm
    assert "- `KVM_CONVERT_MEMORY_RETRIES`: how often" in kvm
    assert "- `ram_block_attributes_state_change()`: " in rba.split("`rig/port/kvm/")[0]
    assert "kvm_convert_memory" not in rba.split("`rig/port/kvm/")[0]


def test_the_bridge_says_port_check_builtin_checks_both_files(generated):
    from rig.drive.portcheck import STREAMS_DEFAULT, WORLD_STREAMS_DEFAULT

    bridge = generated.split("## The bridge\n")[1].split("\n## ")[0]
    builtin = bridge.split("- `rig port-check --builtin` checks both files:")[1] \
        .split("\n- ")[0]
    assert f"`rig/port/{porting.RBA_PORT}`" in builtin
    assert f"`rig/port/{porting.KVM_PORT}`" in builtin
    assert 'rollback="full"' in builtin and f"{STREAMS_DEFAULT:,}" in builtin
    assert "`Hardened` design on a `World`" in builtin
    assert f"({WORLD_STREAMS_DEFAULT:,} by default" in builtin


# -- --qemu-src: kvm_convert_memory() -------------------------------------------------
FAKE_KVM_ALL = """/* A fake file in the layout of accel/kvm/kvm-all.c */

static int kvm_other(void)
{
    return 1;
}

static int kvm_convert_memory(hwaddr start, hwaddr size, bool to_private)
{
    int ret = -EINVAL;

    return fake_convert(start, size, to_private, ret);
}

int kvm_cpu_exec(CPUState *cpu)
{
    return kvm_convert_memory(0, 0, false);
}
"""


def _tree(tmp_path, kvm_all=None):
    tree = tmp_path / "qemu"
    (tree / "system").mkdir(parents=True)
    (tree / "system" / "ram-block-attributes.c").write_text(FAKE_101)
    if kvm_all is not None:
        (tree / "accel" / "kvm").mkdir(parents=True)
        (tree / "accel" / "kvm" / "kvm-all.c").write_text(kvm_all)
    return tree


def test_function_lines_spans_the_definition_to_its_closing_brace():
    lines = porting.function_lines(FAKE_KVM_ALL, "kvm_convert_memory")
    assert lines[0] == "static int kvm_convert_memory(hwaddr start, hwaddr size, bool to_private)"
    assert lines[-1] == "}" and len(lines) == 6
    own_line = "static int\nkvm_convert_memory(void)\n{\n    return 0;\n}\n"
    assert porting.function_lines(own_line, "kvm_convert_memory") == own_line.splitlines()
    # A call or a prototype is not the definition.
    assert porting.function_lines("int kvm_convert_memory(void);\n", "kvm_convert_memory") \
        is None
    ours = porting.function_lines((porting.PORT_DIR / porting.KVM_PORT).read_text(),
                                  "kvm_convert_memory")
    assert ours[0].startswith("int kvm_convert_memory(") and ours[-1] == "}"
    assert "out_saved:" in ours and not any(x.startswith("static ") for x in ours)


def test_qemu_src_appends_the_diff_of_kvm_convert_memory(tmp_path):
    out = tmp_path / "porting.md"
    assert main(["port-doc", "--qemu-src", str(_tree(tmp_path, FAKE_KVM_ALL)),
                 "-o", str(out)]) == 0
    text = out.read_text()
    blocks = text.split("```diff\n")
    assert len(blocks) == 3
    assert "`kvm_convert_memory()` of the tree's `accel/kvm/kvm-all.c` against" in blocks[1]
    diff = blocks[2].split("```\n")[0].splitlines()
    assert diff[:2] == ["--- a/accel/kvm/kvm-all.c: kvm_convert_memory()",
                        "+++ b/rig/port/kvm/kvm-convert-memory.c: kvm_convert_memory()"]
    assert "-    return fake_convert(start, size, to_private, ret);" in diff
    assert "+int kvm_convert_memory(hwaddr start, hwaddr size, bool to_private)" in diff
    # Only the function: neither the tree's other functions nor the port's helpers.
    assert not any("kvm_other" in x or "kvm_cpu_exec(CPUState" in x for x in diff)
    assert not any(x.startswith("+static") for x in diff)
    assert str(tmp_path) not in text


@pytest.mark.parametrize("kvm_all,line", [
    (None, "`kvm_convert_memory()`: no diff, the QEMU tree given to `--qemu-src` has no "
           "`accel/kvm/kvm-all.c`."),
    ("int kvm_cpu_exec(void)\n{\n    return kvm_convert_memory(0, 0, 0);\n}\n",
     "`kvm_convert_memory()`: no diff, the QEMU tree given to `--qemu-src` has no "
     "definition of `kvm_convert_memory()` in `accel/kvm/kvm-all.c`."),
])
def test_a_tree_without_kvm_convert_memory_is_one_line(tmp_path, kvm_all, line):
    out = tmp_path / "porting.md"
    assert main(["port-doc", "--qemu-src", str(_tree(tmp_path, kvm_all)),
                 "-o", str(out)]) == 0
    text = out.read_text()
    assert text.count("```diff\n") == 1
    assert text.rstrip("\n").endswith("```\n\n" + line)


def test_a_tree_with_the_ports_own_function_says_there_is_no_difference(tmp_path):
    ours = "\n".join(porting.function_lines(
        (porting.PORT_DIR / porting.KVM_PORT).read_text(), "kvm_convert_memory"))
    out = tmp_path / "porting.md"
    assert main(["port-doc", "--qemu-src", str(_tree(tmp_path, ours + "\n")),
                 "-o", str(out)]) == 0
    assert out.read_text().rstrip("\n").endswith(
        "is the same text as the one of `rig/port/kvm/kvm-convert-memory.c`: no diff.")


def test_the_bridge_reads_port_checks_defaults(monkeypatch):
    """The stream counts are port-check's own defaults, read when the document is written
    (set here to values no default has, so a number typed into the text is caught)."""
    from rig.drive import portcheck

    monkeypatch.setattr(portcheck, "STREAMS_DEFAULT", 4321)
    monkeypatch.setattr(portcheck, "WORLD_STREAMS_DEFAULT", 1234)
    bridge = porting.generate().split("## The bridge\n")[1].split("\n## ")[0]
    assert "over 4,321 seeded random op streams" in bridge
    assert "(1,234 by default, `--world-streams`" in bridge
