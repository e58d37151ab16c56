"""rig.drive.portworld: the C port of the hardened kvm_convert_memory() (rig/port/kvm/)
against the real ``hardened`` design on a real World.

The C is the rig's own (no QEMU code needed or committed); scratch copies of it with one
planted defect each show that the comparison catches what it claims to."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rig.drive import portbuild, portworld
from rig.errors import EIO, ENOMEM, EINTR, UsageError
from rig.world.faults import FaultSpec
from rig.world.ops import op

CONVERTER = portworld.KVM_DIR / "kvm-convert-memory.c"
GPA = 0x100000000
KVM, MEMFD = "kvm.set_memory_attributes", "memfd.punch_hole"
STREAMS = 300


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    os.environ.setdefault("RIG_PORT_CACHE", str(tmp_path_factory.mktemp("port-cache")))
    try:
        portbuild.find_compiler()
    except UsageError as exc:
        pytest.skip(f"the C port needs a C compiler: {exc}")
    return portworld.build()


def planted(tmp_path, old: str, new: str) -> Path:
    """The library built with a scratch copy of the converter, one line changed."""
    text = CONVERTER.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"the planted line is not unique in the port: {old!r}"
    scratch = tmp_path / "kvm-convert-memory.c"
    scratch.write_text(text.replace(old, new), encoding="utf-8")
    base = portworld.kvm_sources()
    files = tuple(scratch if Path(f).name == scratch.name else f for f in base.files)
    return portworld.build(portbuild.Sources(files, base.flavour, "planted", None))


# -- agreement ------------------------------------------------------------------------------

def test_port_agrees_with_hardened_and_exceeds_the_retry_bound(library):
    results = portworld.run_streams(library, 0, STREAMS)
    bad = [r for r in results if r.kind != "ok"]
    assert not bad, bad[0].message
    assert sum(r.ops for r in results) > STREAMS * portworld.OPS_MIN
    # Both sides gave up, equally often, and on both kinds of step: the streams drive
    # failures past the bound of 8 (and the comparison held there).
    world = sum(r.give_ups[0] for r in results)
    assert world > 0 and world == sum(r.give_ups[1] for r in results)
    kinds = {what for r in results for what, _ in r.gave_up_on}
    assert kinds == {"kvm attribute restore", "discard"}
    assert sum(r.retries[0] for r in results) == sum(r.retries[1] for r in results) > world


def test_streams_are_the_same_in_any_process():
    code = ("from rig.drive import portworld; import hashlib;"
            "print(hashlib.sha256(repr([portworld.stream(3, i) for i in range(200)])"
            ".encode()).hexdigest())")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}, check=True).stdout
            for seed in ("1", "2")}
    assert len(outs) == 1


def test_streams_cover_the_ranges_and_faults_the_issue_names():
    convert, two_blocks, hugetlb, counts, sites = 0, 0, 0, set(), set()
    kinds = set()
    for i in range(400):
        cfg, ops = portworld.stream(7, i)
        assert all(gpa > 0 for gpa, _ in cfg.ram)
        two_blocks += len(cfg.ram) == 2
        hugetlb += cfg.hugetlb
        for o in ops:
            kinds.add(portworld.op_kind(o))
            if portworld.op_kind(o) == "kvm_convert_memory":
                convert += 1
                for spec in o.prop("fault", ()):
                    counts.add(spec.count)
                    sites.add(spec.site)
    assert kinds == {"register", "unregister", "arm", "guest_touch", "kvm_convert_memory"}
    assert counts == set(range(1, portworld.FAULT_COUNT_MAX + 1))
    assert sites == set(portworld.SITE_IDS)
    assert two_blocks > 50 and hugetlb > 10 and convert > 2000


# -- planted defects --------------------------------------------------------------------------

PLANTED = {
    "restore skipped": (
        "            kvm_convert_memory_restore_attributes(start, saved, npages);\n", ""),
    "retry bound off by one": (
        "attempt <= KVM_CONVERT_MEMORY_RETRIES;", "attempt < KVM_CONVERT_MEMORY_RETRIES;"),
    "hugetlb memory discarded": (
        "    if (to_private &&\n        qemu_ram_pagesize(piece->rb) != qemu_real_host_page_size()) {",
        "    if (to_private && 0) {"),
    "discard not retried": (
        '    kvm_convert_memory_retry("discard", &step, piece->start, piece->size);',
        "    kvm_convert_memory_step(&step);"),
}


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_a_planted_bug_is_caught(library, tmp_path, name):
    old, new = PLANTED[name]
    results = portworld.run_streams(planted(tmp_path, old, new), 0, STREAMS)
    bad = [r for r in results if r.kind != "ok"]
    assert bad, f"{name}: no stream diverged"
    first = bad[0].message.splitlines()
    assert first[0].startswith(f"op {bad[0].op_index} ") and first[0].endswith(" differs")
    assert any(line.startswith("  world: ") for line in first)
    assert any(line.startswith("  C: ") for line in first)


# -- the fault schedule: the same hit on both sides -------------------------------------------

def _states(library, ops, ram=((GPA, 4 * 0x1000),)):
    return [st for _, _, st in portworld.states(portworld.PortConfig(ram), ops, library)]


def _both(states, key):
    """``key`` of the last op's state, asserting both sides agree on it."""
    world, c = states[-1]["world"][key], states[-1]["C"][key]
    assert world == c, (key, world, c)
    return world


@pytest.mark.parametrize("count,gives_up", [(7, False), (8, True)])
def test_kvm_fault_hits_are_the_restore_calls(library, count, gives_up):
    """Pages 0-1 shared, 2-3 private; to shared over all 4 with the listener refusing.
    KVM call 1 is the conversion's; the restore then sets pages 0-1 back to shared,
    which they already are (0, not a counted call), and 2-3 to private: counted calls
    2, 3, ..., retried.  Failing calls 2..count+1 exhausts the 8 attempts exactly when
    count is 8."""
    ops = [("register", "L0", 0, 0, 0x4000),
           op("kvm_convert_memory", GPA, 0x2000, False), ("arm", "L0", -EIO),
           op("kvm_convert_memory", GPA, 0x4000, False,
              fault=(FaultSpec(KVM, -ENOMEM, 2, None, count),))]
    states = _states(library, ops)
    assert _both(states, "result") == -EIO
    hits = _both(states, "fault hits")
    expect = [(KVM, 1, 0, 0)] + [(KVM, n, -ENOMEM, 0) for n in range(2, count + 2)]
    assert hits == expect + ([] if gives_up else [(KVM, count + 2, 0, 0)])
    calls = _both(states, "kvm calls")
    assert calls[:2] == [(GPA, 0x4000, False, 0), (GPA, 0x2000, False, 0)]
    assert calls[2:] == [(GPA + 0x2000, 0x2000, True, -ENOMEM)] * min(count, 8) + (
        [] if gives_up else [(GPA + 0x2000, 0x2000, True, 0)])
    give_ups = _both(states, "give-ups")
    assert give_ups == ([("kvm attribute restore", GPA + 0x2000, 0x2000, -ENOMEM)]
                        if gives_up else [])
    first = GPA >> 12
    assert _both(states, "kvm private") == ([] if gives_up else [first + 2, first + 3])
    assert _both(states, "bitmaps") == [[0, 1]]
    assert len(_both(states, "retries")) == min(count, 8)


def test_partial_punch_faults_are_the_same_calls(library):
    """To private: the memfd punch of the whole block is hit 1 and its retries are hits
    2, 3, ...; the first two fail after 1 page, the third succeeds; the pages a failed
    punch did free are gone on both sides."""
    ops = [("register", "L0", 0, 0, 0x4000),
           op("kvm_convert_memory", GPA, 0x4000, False),
           op("guest_touch", GPA), op("guest_touch", GPA + 0x3000),
           op("kvm_convert_memory", GPA, 0x4000, True,
              fault=(FaultSpec(MEMFD, -EINTR, 1, 1, 2),))]
    states = _states(library, ops)
    assert states[3]["world"]["files"] == [("memfd0", [0, 3]), ("gmem0", [])]
    assert _both(states, "result") == 0
    assert _both(states, "fault hits") == [(KVM, 1, 0, 0), (MEMFD, 1, -EINTR, 1),
                                           (MEMFD, 2, -EINTR, 1), (MEMFD, 3, 0, 0)]
    assert _both(states, "discards") == [("memfd0", 0, 0x4000, -EINTR)] * 2 + [
        ("memfd0", 0, 0x4000, 0)]
    assert _both(states, "files") == [("memfd0", []), ("gmem0", [])]
    # One page punched, then the error: page 3 survives the first attempt.
    ops[-1] = op("kvm_convert_memory", GPA, 0x4000, True,
                 fault=(FaultSpec(MEMFD, -EINTR, 1, 1, 8),))
    states = _states(library, ops)
    assert _both(states, "give-ups") == [("discard", GPA, 0x4000, -EINTR)]
    assert _both(states, "files") == [("memfd0", [3]), ("gmem0", [])]


def test_a_conversion_across_two_blocks_and_into_a_gap(library):
    ram = ((GPA, 0x2000), (GPA + 0x2000, 0x2000), (GPA + 0x6000, 0x2000))
    ops = [("register", "L0", 1, 0, 0x2000),
           op("kvm_convert_memory", GPA + 0x1000, 0x2000, False),
           op("kvm_convert_memory", GPA + 0x3000, 0x2000, False),
           op("kvm_convert_memory", GPA + 0x8000, 0x1000, False),
           op("kvm_convert_memory", GPA + 0x8000, 0x1000, True)]
    states = _states(library, ops, ram)
    assert [st["world"]["result"] for st in states] == [0, 0, -22, 0, -22]
    assert [st["C"]["result"] for st in states] == [0, 0, -22, 0, -22]
    assert states[1]["C"]["bitmaps"] == [[1], [0], []]
    assert states[1]["C"]["log.L0"] == [("populate", (0, 0x1000, GPA + 0x2000), 0, True)]
    assert states[1]["C"]["discards"] == [("gmem0", 0x1000, 0x1000, 0),
                                          ("gmem1", 0, 0x1000, 0)]
    for st in states:
        assert st["C"]["region refs"] == 0


def test_a_mismatch_names_the_op_the_key_and_both_values(library, tmp_path):
    old, new = PLANTED["restore skipped"]
    lib = planted(tmp_path, old, new)
    ops = [("register", "L0", 0, 0, 0x4000), ("arm", "L0", -ENOMEM),
           op("kvm_convert_memory", GPA, 0x4000, False)]
    with pytest.raises(portworld.PortWorldMismatch) as info:
        portworld.compare(portworld.PortConfig(((GPA, 0x4000),)), ops, lib)
    text = str(info.value).splitlines()
    assert text[0] == "op 2 kvm_convert_memory(0x100000000, 0x4000, shared): kvm calls differs"
    assert text[1] == "  entry 1 (of world 2, C 1)"
    assert text[2] == "  world: (0x100000000, 0x4000, True, 0)"
    assert text[3] == "  C: (none)"
    assert info.value.signature == "port-world mismatch kvm calls in kvm_convert_memory"


def test_a_library_without_the_kvm_harness_is_refused_in_one_line(library):
    plain = portbuild.build(portbuild.builtin_sources())
    with pytest.raises(UsageError) as info:
        portworld.load(plain)
    assert str(info.value) == (f"{plain}: no rig_k_reset: not a library built by "
                               "rig.drive.portworld.build")
