"""rig port-check (rig.drive.portcheck): the streams, the C in worker processes, divergence
classes and their minimized reproducers, crashes and hangs of the C, and the command.

The C here is the rig's own hardened port (rig/port/ram-block-attributes.c) and scratch
copies of it with one planted defect each: no QEMU code is needed (or committed)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rig.check import differential
from rig.drive import portbuild, portcheck
from rig.trace import core as core_trace

PORT = Path(portbuild.__file__).resolve().parents[1] / "port" / "ram-block-attributes.c"


def rig(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "rig.cli.main", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=900)


@pytest.fixture(scope="module")
def builtin_library(tmp_path_factory):
    os.environ.setdefault("RIG_PORT_CACHE", str(tmp_path_factory.mktemp("port-cache")))
    return portbuild.build(portbuild.builtin_sources())


def planted_tree(tmp_path, old: str, new: str) -> Path:
    """A scratch tree holding the port with one line changed (``old`` must occur once)."""
    text = PORT.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"the planted line is not unique in the port: {old!r}"
    tree = tmp_path / "tree"
    (tree / "system").mkdir(parents=True)
    (tree / "VERSION").write_text("10.1.50\n")
    (tree / "system" / "ram-block-attributes.c").write_text(text.replace(old, new))
    return tree


# -- streams --------------------------------------------------------------------------------

def test_streams_are_the_same_in_any_process():
    code = ("from rig.drive import portcheck; import hashlib;"
            "print(hashlib.sha256(repr([portcheck.stream(3, i, 'full') for i in range(200)])"
            ".encode()).hexdigest())")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}, check=True).stdout
            for seed in ("1", "2")}
    assert len(outs) == 1


def test_streams_cover_what_the_issue_names_and_keep_the_callers_contract():
    kinds, nested, odd, offsets, counts = set(), set(), 0, set(), set()
    for i in range(600):
        cfg, ops = portcheck.stream(0, i, "none")
        assert cfg.rollback == "none"
        assert portcheck.in_contract(cfg, ops)
        assert portcheck.OPS_MIN <= len(ops) <= portcheck.OPS_MAX + 3
        names = {op[1] for op in ops if op[0] in ("register", "unregister", "arm", "nest")}
        counts.add(len(names))
        for op in ops:
            kinds.add(op[0])
            if op[0] == "nest":
                nested.add(op[3][0])
            if op[0] == "register":
                offsets.add(op[2] != 0)
            if op[0] == "state_change" and (op[1] % cfg.block_size or op[2] % cfg.block_size
                                            or op[2] == 0 or op[1] + op[2] > 1 << 64
                                            or op[1] + op[2] > cfg.nblocks * cfg.block_size):
                odd += 1
    assert kinds == {"register", "unregister", "state_change", "arm", "nest", "replay",
                     "is_populated"}
    assert {"register", "unregister", "state_change", "replay", "is_populated"} <= nested
    assert offsets == {True, False} and counts == {1, 2, 3}
    assert odd > 100


def test_the_contract_refuses_a_query_past_the_region():
    cfg = differential.CoreConfig(nblocks=4)
    assert portcheck.in_contract(cfg, [("is_populated", 0x3000, 0x1000)])
    assert not portcheck.in_contract(cfg, [("is_populated", 0x3000, 0x2000)])
    assert not portcheck.in_contract(cfg, [("nest", "R0", 1, ("replay", True, 0x4000,
                                                                0x1000, 0))])


# -- the hardened port against hardened ------------------------------------------------------

def test_the_port_agrees_with_full_and_the_result_is_the_same_with_two_workers(
        builtin_library):
    one = portcheck.run_streams(builtin_library, 5, "full", 300, jobs=1)
    two = portcheck.run_streams(builtin_library, 5, "full", 300, jobs=2)
    assert one == two
    assert [r.index for r in one] == list(range(300))
    assert all(r.kind == "ok" for r in one), [r for r in one if r.kind != "ok"][:1]
    assert sum(r.ops for r in one) > 300 * portcheck.OPS_MIN


def test_the_port_diverges_from_the_2026_policy_and_the_class_is_minimized(
        builtin_library, tmp_path):
    """full vs listeners: the port also clears the bitmap after a failed populate."""
    results = portcheck.run_streams(builtin_library, 0, "listeners", 400, jobs=2)
    classes = portcheck.classify(results)
    assert classes and all(d.kind == "mismatch" for d in classes)
    probe = portcheck.Probe(builtin_library)
    d = classes[0]
    portcheck.minimize_class(probe, d, 0, "listeners")
    assert len(d.minimized.ops) <= 4
    assert probe.run(d.minimized.config, d.minimized.ops).key == d.minimized_result.key
    path = portcheck.write_reproducer(d, ["port-check: test"], str(tmp_path), "builtin")
    trace = core_trace.load(path)
    assert trace.ops == d.minimized.ops and trace.config.rollback == "listeners"


# -- planted defects -------------------------------------------------------------------------

def _json(proc):
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout)


def test_a_planted_one_line_bug_is_reported_with_a_minimized_reproducer(tmp_path):
    # The full rollback forgets to clear the failing block's bit in the mixture case
    # (the core mutant rollback-forgets-failing-bit, as one line of C).
    tree = planted_tree(tmp_path, "                clear_bit(bit, attr->bitmap);\n"
                        "                while (bit-- > first_bit) {\n",
                        "                while (bit-- > first_bit) {\n")
    out = tmp_path / "out"
    proc = rig("port-check", "--qemu-src", str(tree), "--against", "hardened",
               "--streams", "1500", "--out", str(out), "--json")
    assert proc.returncode == 2, proc.stderr
    doc = _json(proc)
    assert not doc["agree"] and doc["decided_by"] == "design" and doc["policy"] == "full"
    d = doc["divergences"][0]
    assert d["kind"] == "mismatch" and 1 <= len(d["ops"]) <= 6
    assert Path(d["trace"]).exists() and Path(d["trace"]).parent == out
    replay = rig("port-check", "--qemu-src", str(tree), "--against", "hardened",
                 "--replay", d["trace"])
    assert replay.returncode == 2 and "mismatch" in replay.stdout
    clean = rig("port-check", "--builtin", "--replay", d["trace"])
    assert clean.returncode == 0 and "agree" in clean.stdout


def test_a_crash_of_the_c_is_a_divergence_with_its_reproducer_not_a_rig_crash(tmp_path):
    tree = planted_tree(tmp_path, "    g_assert(rdl->section);\n",
                        "    g_assert(rdl->section);\n    if (rdl->double_discard_supported) "
                        "{\n        *(volatile int *)0 = 0;\n    }\n")
    proc = rig("port-check", "--qemu-src", str(tree), "--against", "hardened",
               "--streams", "200", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr
    # One class, named by the function that crashed, however the streams got there.
    classes = re.findall(r"^\d+\. port (\w+): (.*): [\d,]+ streams?", proc.stdout, re.M)
    assert classes == [("crash", "SIGSEGV in ram_block_attributes_rdm_unregister_listener")], \
        proc.stdout
    assert "at ram_block_attributes_rdm_unregister_listener (ram-block-attributes.c:" \
        in proc.stdout
    assert "unregister_listener(R1)" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_a_hang_of_the_c_is_a_divergence(tmp_path, monkeypatch):
    tree = planted_tree(tmp_path, "    g_assert(rdl->section);\n",
                        "    g_assert(rdl->section);\n    while (rdl->double_discard_supported)"
                        " {\n    }\n")
    library = portbuild.build(portbuild.find_sources(str(tree)))
    monkeypatch.setattr(portcheck, "HANG_S", 1.0)
    results = portcheck.run_streams(library, 0, "full", 12, jobs=2)
    hangs = [r for r in results if r.kind == "hang"]
    assert hangs and all(r.kind in ("ok", "hang") for r in results)
    assert [r.index for r in results] == list(range(12))


# -- the command ------------------------------------------------------------------------------

def test_the_builtin_command_agrees_and_says_how_much_it_compared(tmp_path):
    proc = rig("port-check", "--builtin", "--streams", "200", "--world-streams", "60",
               "-j", "2", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = re.search(r"^200 streams \(seed 0\), ([\d,]+) ops compared: the C and the rig agree",
                  proc.stdout, re.M)
    assert m and int(m.group(1).replace(",", "")) > 200 * portcheck.OPS_MIN
    assert "rollback=full (design hardened)" in proc.stdout
    w = re.search(r"against the hardened design on a World: 60 conversion streams, ([\d,]+) "
                  r"ops compared: the C and the rig agree on every op", proc.stdout)
    assert w and int(w.group(1).replace(",", "")) > 60, proc.stdout
    assert not list(tmp_path.iterdir())


def test_the_json_document_counts_both_checks():
    doc = _json(rig("port-check", "--builtin", "--streams", "50", "--world-streams", "20",
                    "--json"))
    assert doc["agree"] and doc["streams"] == 50 and doc["ops"] > 50
    assert doc["design"] == "hardened" and doc["divergences"] == []
    assert doc["conversion"]["streams"] == 20 and doc["conversion"]["agree"]
    none = _json(rig("port-check", "--builtin", "--streams", "5", "--world-streams", "0",
                     "--json"))
    assert none["conversion"] is None


def test_one_cause_is_one_class_wherever_it_surfaces():
    """A replay's section differing is one class, seen in a replay op's result or in a
    nested replay's result inside a callback's log."""
    rig_sections, c_sections = [(0x2000, 0x1000, 0x1000)], [(0x2000, 0x1000, 0x0)]
    direct = portcheck.fingerprint("result", {"cy": ("ret", (0, rig_sections)),
                                              "C": ("ret", (0, c_sections))})
    op = ("replay", True, 0, 0x3000, 0)
    nested = portcheck.fingerprint("log.R2", {
        "cy": [("nested", op, ("ret", (0, rig_sections)))],
        "C": [("nested", op, ("ret", (0, c_sections)))]})
    assert direct == nested == "a replay callback's section: offset_within_address_space"
    # A listener told of other blocks, or not told at all: one walk, one class.
    told = ("populate", (0, 0x2000, 0), 0, False, True)
    fewer = ("populate", (0, 0x1000, 0), 0, True, True)
    assert portcheck.fingerprint("log.R0", {"cy": [told], "C": [fewer]}) == \
        portcheck.fingerprint("log.R1", {"cy": [told], "C": []}) == \
        "the populate notifications a listener gets"
    assert portcheck.fingerprint("log.R0", {"cy": [told], "C": [told[:3] + (True, True)]}) \
        == "what a listener sees from inside its populate callback (is_populated seen)"


@pytest.mark.parametrize("args, message", [
    ((), "give --qemu-src DIR"),
    (("--builtin", "--qemu-src", "."), "give --qemu-src DIR"),
    (("--builtin", "--streams", "0"), "--streams: must be >= 1"),
    (("--qemu-src", "/nonexistent/qemu"), "not a QEMU source tree"),
    (("--builtin", "--against", "no-such-design"), "no-such-design"),
])
def test_bad_input_is_one_line_and_exit_1(args, message):
    proc = rig("port-check", *args)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_against_another_design_diverges_and_skips_the_conversion_streams(tmp_path):
    """The port is hardened's: against rdm-rollback (listeners only) the bitmap differs
    after a failed populate, and the kvm_convert_memory streams, which only know the
    hardened design, are said not to run rather than counted as agreeing."""
    proc = rig("port-check", "--builtin", "--against", "rdm-rollback", "--streams", "300",
               "--out", str(tmp_path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "port mismatch: the bitmap" in proc.stdout
    assert "decided by the design: the C under test must behave as rdm-rollback does" \
        in proc.stdout
    assert "conversion streams" not in proc.stdout
    assert "the conversion streams are not run" in proc.stderr


def test_a_read_past_the_bitmap_is_a_divergence_of_its_own(tmp_path):
    """Undefined behaviour in QEMU (it reads whatever follows the bitmap) need not change
    a result; the stub layer's bounds check makes it a divergence at the op that did it."""
    tree = planted_tree(tmp_path, "    const bool is_discarded = find_next_bit(attr->bitmap, "
                        "attr->bitmap_size,\n", "    const bool is_discarded = find_next_bit("
                        "attr->bitmap, attr->bitmap_size + 128,\n")
    doc = _json(rig("port-check", "--qemu-src", str(tree), "--against", "hardened",
                    "--streams", "100", "--out", str(tmp_path / "out"), "--json"))
    kinds = {(d["kind"], d["difference"]) for d in doc["divergences"]}
    assert ("undefined", "a bitmap access out of bounds in state_change") in kinds, kinds


def test_a_listener_unregistered_inside_its_own_register_replay_still_gets_the_replay(
        builtin_library):
    """Stream 10600 of seed 0 (minimized): R1's register replay has two runs to walk, and
    R1's first populate callback unregisters R1.  Both the C (the walk goes on over the
    caller's section) and the core call R1 for the second run; the adapter had already
    given R1's slot up and the call found no listener (a rig error, exit 3)."""
    ops = [("register", "R1", 0x13000, 0x4000, 0x100013000), ("arm", "R1", -12),
           ("nest", "R1", 2, ("nest", "R1", 2, ("unregister", "R1"))),
           ("state_change", 0x8000, 0x18000, False), ("state_change", 0x14000, 0x1000, False),
           ("unregister", "R1"), ("state_change", 0x18000, 0x8000, False),
           ("register", "R1", 0x2000, 0x1b000, 0x100002000)]
    cfg = differential.CoreConfig(nblocks=32, rollback="full")
    result = portcheck._Loaded(builtin_library).compare(0, cfg, ops)
    assert result.kind == "ok", result.message
