"""rig.drive.portbuild: the stub layer builds each flavour of the state manager C, the
build cache, the one-line errors, and the ctypes adapter against the rig's core.

No QEMU code is in this repository: the 10.1 and 2026 flavours are tested on a QEMU
tree the environment names (``RIG_QEMU_SRC_10_1``, ``RIG_QEMU_SRC_2026``), and skipped
without one.  The hardened flavour is tested on rig/port's own port, and on scratch trees
made from it (a tree patched with the rig's port is what ``--qemu-src`` then reads).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from rig.check import differential
from rig.core.types import MemoryRegionSection as S
from rig.drive import portbuild
from rig.errors import EINVAL, EIO, ENOENT, ENOMEM, ENOSPC, UsageError

PORT_FILE = portbuild.PORT_DIR / "ram-block-attributes.c"
TREE_ENV = {"10.1": "RIG_QEMU_SRC_10_1", "2026": "RIG_QEMU_SRC_2026"}
BS = 0x1000

needs_port = pytest.mark.skipif(not PORT_FILE.is_file(),
                                reason="rig/port/ram-block-attributes.c (the hardened "
                                       "port) is not written yet")


def _has_compiler() -> bool:
    try:
        portbuild.find_compiler()
    except UsageError:
        return False
    return True


needs_cc = pytest.mark.skipif(not _has_compiler(), reason="no C compiler on this machine")


@pytest.fixture(scope="session")
def port_cache(tmp_path_factory):
    """One build cache for the session (a build takes about half a second)."""
    return tmp_path_factory.mktemp("port-cache")


@pytest.fixture(params=["10.1", "2026"])
def qemu_tree(request):
    """A QEMU tree of the flavour, from the environment, or a skip saying so."""
    env = TREE_ENV[request.param]
    path = os.environ.get(env)
    if not path:
        pytest.skip(f"{env} does not name a QEMU {request.param} source tree (the "
                    "repository ships no QEMU code)")
    return request.param, Path(path)


def _library(sources, cache):
    return portbuild.load(portbuild.build(sources, cache))


def _tree(root: Path, text: str, version: str = "10.1.50",
          name: str = "ram-block-attributes.c") -> Path:
    (root / "system").mkdir(parents=True, exist_ok=True)
    (root / "VERSION").write_text(version + "\n")
    (root / "system" / name).write_text(text)
    return root


# -- sources and flavours ---------------------------------------------------------------

@needs_port
def test_builtin_sources_are_the_hardened_port():
    src = portbuild.builtin_sources()
    assert src.flavour == "hardened" and src.files == (PORT_FILE,)
    assert portbuild.POLICY == {"10.1": "none", "2026": "sources", "hardened": "full"}


@needs_port
def test_a_tree_patched_with_the_port_is_hardened(tmp_path):
    tree = _tree(tmp_path / "q", PORT_FILE.read_text(), version="10.1.0")
    src = portbuild.find_sources(tree)
    assert (src.flavour, src.version, src.root) == ("hardened", "10.1.0", tree)


def test_flavour_is_read_from_the_text(tmp_path):
    # Not QEMU code: just the markers find_sources reads.
    tree = _tree(tmp_path / "a", "static void\nram_block_attributes_rdm_register_listener(\n")
    assert portbuild.find_sources(tree).flavour == "10.1"
    tree = _tree(tmp_path / "b", "static int  ram_block_attributes_rdm_register_listener (")
    assert portbuild.find_sources(tree).flavour == "hardened"
    tree = _tree(tmp_path / "c", "/* a RamDiscardSource */\n")
    _tree(tree, "/* manager */\n", name="ram-discard-manager.c")
    src = portbuild.find_sources(tree)
    assert src.flavour == "2026"
    assert [p.name for p in src.files] == ["ram-discard-manager.c", "ram-block-attributes.c"]


def test_qemu_tree_flavour(qemu_tree):
    flavour, tree = qemu_tree
    src = portbuild.find_sources(tree)
    assert src.flavour == flavour


# -- bad input: one line each -----------------------------------------------------------

def _one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_not_a_tree(tmp_path):
    with pytest.raises(UsageError) as exc:
        portbuild.find_sources(tmp_path)
    assert _one_line(exc) == f"--qemu-src {tmp_path}: not a QEMU source tree (no VERSION file)"


def test_tree_without_system_folder(tmp_path):
    (tmp_path / "VERSION").write_text("10.1.0\n")
    with pytest.raises(UsageError) as exc:
        portbuild.find_sources(tmp_path)
    assert "not a QEMU source tree" in _one_line(exc)


def test_tree_without_the_state_manager(tmp_path):
    (tmp_path / "system").mkdir()
    (tmp_path / "VERSION").write_text("9.2.0\n")
    with pytest.raises(UsageError) as exc:
        portbuild.find_sources(tmp_path)
    msg = _one_line(exc)
    assert "system/ram-block-attributes.c" in msg and "QEMU < 10.1" in msg and "9.2.0" in msg


def test_multi_source_tree_without_the_manager(tmp_path):
    tree = _tree(tmp_path, "/* a RamDiscardSource */\n")
    with pytest.raises(UsageError) as exc:
        portbuild.find_sources(tree)
    assert "system/ram-discard-manager.c" in _one_line(exc)


@needs_port
def test_no_compiler(monkeypatch, tmp_path):
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # (no cc, gcc nor clang there)
    with pytest.raises(UsageError) as exc:
        portbuild.build(portbuild.builtin_sources(), tmp_path / "cache")
    assert _one_line(exc) == "no C compiler found (set CC or apt-get install gcc)"


def _patched(tmp_path: Path, marker: str, insert: str) -> portbuild.Sources:
    """A tree whose port has ``insert`` placed before the line holding ``marker``."""
    text = PORT_FILE.read_text()
    at = text.index(marker)
    at = text.rindex("\n", 0, at) + 1
    tree = _tree(tmp_path / "tree", text[:at] + insert + text[at:])
    return portbuild.find_sources(tree)


@needs_port
@needs_cc
@pytest.mark.parametrize("insert, symbol", [
    ("    rig_no_such_function(attr);\n", "rig_no_such_function"),
    ("    RigNoSuchType *rig_x = NULL;\n", "RigNoSuchType"),
    ("    (void)rig_no_such_variable;\n", "rig_no_such_variable"),
    ("    extern int rig_defined_nowhere(void);\n    (void)rig_defined_nowhere();\n",
     "rig_defined_nowhere"),
])
def test_a_file_that_does_not_compile_names_the_symbol(tmp_path, insert, symbol):
    # Inside ram_block_attributes_destroy's body, after its g_assert.
    src = _patched(tmp_path, "g_free(attr->bitmap);", insert)
    with pytest.raises(UsageError) as exc:
        portbuild.build(src, tmp_path / "cache")
    msg = _one_line(exc)
    assert msg.startswith(f"{src.files[0]}: does not compile")
    assert f"missing symbol '{symbol}'" in msg
    assert not list((tmp_path / "cache").glob("hardened-*")), "a failed build was cached"


# -- builds and the cache ---------------------------------------------------------------

@needs_port
@needs_cc
def test_builtin_builds_and_loads(port_cache):
    lib = _library(portbuild.builtin_sources(), port_cache)
    assert lib.flavour == "hardened"


@needs_cc
def test_qemu_tree_builds_and_loads(qemu_tree, port_cache):
    flavour, tree = qemu_tree
    assert _library(portbuild.find_sources(tree), port_cache).flavour == flavour


def _wrapper(path: Path, log: Path, fail_flag: Path) -> Path:
    """A CC that logs every compile it runs, and fails them while ``fail_flag`` exists;
    ``--version`` is the real compiler's."""
    real = portbuild.find_compiler()[0]
    path.write_text(f"""#!/bin/sh
case "$1" in --version) exec {real} --version;; esac
echo compile >> {log}
[ -e {fail_flag} ] && {{ echo "cc: error: refusing to compile" >&2; exit 1; }}
exec {real} "$@"
""")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@needs_port
@needs_cc
def test_second_build_runs_no_compiler(tmp_path, monkeypatch):
    log, fail = tmp_path / "log", tmp_path / "fail"
    monkeypatch.setenv("CC", str(_wrapper(tmp_path / "cc", log, fail)))
    cache = tmp_path / "cache"
    tree = _tree(tmp_path / "tree", PORT_FILE.read_text())
    first = portbuild.build(portbuild.find_sources(tree), cache)
    assert log.read_text().count("compile") == 1
    fail.write_text("")  # from now on, any compile fails
    assert portbuild.build(portbuild.find_sources(tree), cache) == first
    assert log.read_text().count("compile") == 1
    assert [p.name for p in cache.iterdir()] == [first.parent.name]  # no temp folder left
    # A changed source is a new key: it compiles (and here, fails: the flag is set).
    (tree / "system" / "ram-block-attributes.c").write_text(PORT_FILE.read_text() + "\n")
    with pytest.raises(UsageError):
        portbuild.build(portbuild.find_sources(tree), cache)
    assert log.read_text().count("compile") == 2


@needs_port
@needs_cc
def test_cache_dir_defaults_to_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(portbuild.CACHE_ENV, str(tmp_path / "env-cache"))
    path = portbuild.build(portbuild.builtin_sources())
    assert path.is_file() and path.parent.parent == tmp_path / "env-cache"


# -- the adapter against the rig's core -------------------------------------------------

#: A script of ops (rig/check/differential.py's vocabulary) on a 32-block region: two
#: listeners with non-zero offsets, a populate a listener refuses in the mixture case, a
#: register nested in a callback (its replay runs inside a walk), an unregister nested in
#: a mixture discard, replays (one stopped by its callback), is_populated, the caller's
#: contract (-EINVAL, -ENOENT), a register whose replay fails, and a listener that
#: unregisters itself from its callback (QLIST_FOREACH then ends the walk).
SCRIPT = [
    ("register", "R0", 0, 0x8000, 0x100000),
    ("register", "R1", 0x4000, 0x8000, 0),
    ("state_change", 0, 0x4000, False),
    ("arm", "R1", -ENOMEM),
    ("state_change", 0x2000, 0x6000, False),
    ("nest", "R0", 1, ("register", "R2", 0x1000, 0x1F000, 0x2000)),
    ("state_change", 0x8000, 0x2000, False),
    ("replay", True, 0x8000, 0x1000, 0),
    ("replay", False, 0x5000, 0x3000, 1),
    ("nest", "R2", 1, ("unregister", "R0")),
    ("state_change", 0, 0x20000, True),
    ("is_populated", 0, 0x1000),
    ("state_change", 0, 0x8000, False),
    ("is_populated", 0x1000, 0x4000),
    ("unregister", "R1"),
    ("unregister", "R0"),
    ("register", "R0", 0x800, 0x1000, 0),
    ("register", "R2", 0, 0x1000, 0),
    ("arm", "R0", -ENOSPC),
    ("register", "R0", 0, 0x10000, 0),
    ("unregister", "R0"),
    ("register", "R1", 0, 0x20000, 0),
    ("register", "R0", 0, 0x20000, 0),
    ("nest", "R0", 1, ("unregister", "R0")),
    ("state_change", 0x10000, 0x4000, False),
]


def _compare(lib, flavour, monkeypatch, ops=SCRIPT):
    """Run ``ops`` on the rig's pure core (the flavour's policy) and on the C (a mismatch
    raises); returns what each op returned on the C, the C's last state and manager."""
    made, states = [], []

    def factory(cfg):
        made.append(portbuild.CRamBlockAttributes(lib, cfg.nblocks * cfg.block_size,
                                                  cfg.block_size))
        return made[-1], portbuild.CRamDiscardListener

    monkeypatch.setitem(differential.MANAGERS, "c", factory)
    results = []
    cfg = differential.CoreConfig(rollback=portbuild.POLICY[flavour])
    def observe(index, op, res, st):
        results.append(res["c"])
        states.append(st["c"])

    assert differential.run(ops, cfg, impls=("pure", "c"), observe=observe) == len(ops)
    return results, states[-1], made[0]


def _check_script_ran(results, state):
    # What the script is for did happen: the refused populate, both nested ops, the
    # stopped replay, the contract answers, the failed register replay.
    assert results[4] == ("ret", -ENOMEM)
    nested = {name: [e[1:] for e in state[f"log.{name}"] if e[0] == "nested"]
              for name in ("R0", "R2")}
    assert nested == {"R0": [(SCRIPT[5][3], ("ret", 0)), (SCRIPT[23][3], ("ret", 0))],
                      "R2": [(SCRIPT[9][3], ("ret", 0))]}
    assert results[8][1][0] == -EIO
    assert results[16] == ("ret", -EINVAL) and results[17] == ("ret", -EINVAL)
    assert results[15] == ("ret", -ENOENT)
    assert results[19] == ("ret", -ENOSPC)
    # Op 24: R0, told first, unregisters itself, which ends the walk: R1 is not told.
    assert any(e[:2] == ("populate", (0x10000, 0x4000, 0x10000)) for e in state["log.R0"])
    assert not any(e[0] == "populate" and e[1][0] == 0x10000 for e in state["log.R1"])


@needs_port
@needs_cc
def test_adapter_agrees_with_the_core_on_the_script(port_cache, monkeypatch):
    lib = _library(portbuild.builtin_sources(), port_cache)
    results, state, rba = _compare(lib, "hardened", monkeypatch)
    _check_script_ran(results, state)
    assert state["listeners"] == ["R1", "R2"]
    kinds = [r.kind for r in rba.reports()]
    assert "exit" not in kinds and "error" in kinds  # the hardened port never exits


@needs_cc
def test_qemu_tree_agrees_with_the_core_on_the_script(qemu_tree, port_cache, monkeypatch):
    flavour, tree = qemu_tree
    lib = _library(portbuild.find_sources(tree), port_cache)
    results, state, rba = _compare(lib, flavour, monkeypatch)
    _check_script_ran(results, state)
    reports = rba.reports()
    assert any(r.kind == "error" for r in reports)
    if flavour == "10.1":  # its register replay failure exits (recorded, not fatal)
        assert ("exit", 1) in [(r.kind, r.status) for r in reports]


class _Log(portbuild.CRamDiscardListener):
    def __init__(self, rba=None, double=False, fail=0):
        super().__init__()
        self.double_discard_supported = double
        self.rba, self.fail, self.calls, self.then = rba, fail, [], None

    def notify_populate(self, section):
        self.calls.append(("populate", tuple(section)))
        if self.then:
            then, self.then = self.then, None
            then()
        return self.fail

    def notify_discard(self, section):
        self.calls.append(("discard", tuple(section)))
        if self.then:
            then, self.then = self.then, None
            then()


@pytest.fixture
def c_rba(port_cache):
    if not PORT_FILE.is_file():
        pytest.skip("rig/port/ram-block-attributes.c (the hardened port) is not written yet")
    if not _has_compiler():
        pytest.skip("no C compiler on this machine")
    rba = portbuild.CRamBlockAttributes(_library(portbuild.builtin_sources(), port_cache),
                                        16 * BS, BS)
    yield rba
    rba.destroy()


def test_the_callers_contract_is_checked_before_the_c(c_rba):
    a, b = _Log(), _Log()
    assert c_rba.register_listener(a, S(0, 4 * BS, 0x10000)) == 0
    assert c_rba.register_listener(a, S(0, BS)) == -EINVAL       # registered already
    assert c_rba.register_listener(b, S(BS // 2, BS)) == -EINVAL  # unaligned
    assert c_rba.register_listener(b, S(0, 0)) == -EINVAL         # empty
    assert c_rba.register_listener(b, S(15 * BS, 2 * BS)) == -EINVAL  # past the end
    assert c_rba.unregister_listener(b) == -ENOENT
    assert c_rba.listeners() == [a] and a.section == S(0, 4 * BS, 0x10000)
    with pytest.raises(OverflowError):
        c_rba.state_change(1 << 64, BS, False)
    with pytest.raises(TypeError):
        c_rba.register_listener(object(), S(0, BS))
    assert c_rba.unregister_listener(a) == 0 and a.section is None
    assert a.calls == [("discard", (0, 4 * BS, 0x10000))]  # (full policy: one discard)


def test_eight_slots_then_a_clear_error(c_rba):
    listeners = [_Log() for _ in range(portbuild.SLOTS)]
    for lis in listeners:
        assert c_rba.register_listener(lis, S(0, BS)) == 0
    assert c_rba.listeners() == listeners[::-1]  # inserted at the head
    with pytest.raises(RuntimeError, match="more than 8 listeners"):
        c_rba.register_listener(_Log(), S(0, BS))
    assert c_rba.unregister_listener(listeners[3]) == 0
    assert c_rba.register_listener(_Log(), S(0, BS)) == 0  # the freed slot is reused


def test_sections_reach_listeners_with_their_address_space_offset(c_rba):
    a = _Log()
    c_rba.register_listener(a, S(2 * BS, 4 * BS, 0x7000))
    assert c_rba.state_change(0, 4 * BS, False) == 0
    assert a.calls == [("populate", (2 * BS, 2 * BS, 0x7000))]
    assert c_rba.bitmap.set_bits() == [0, 1, 2, 3]
    assert c_rba.is_populated(S(0, 4 * BS)) and not c_rba.is_populated(S(0, 5 * BS))
    runs = []
    assert c_rba.replay_discarded(S(BS, 8 * BS, 0x100),
                                  lambda s: runs.append(tuple(s)) or 0) == 0
    assert runs == [(4 * BS, 5 * BS, 0x100 + 3 * BS)]


def test_an_exception_in_a_hook_is_raised_after_the_c_returns(c_rba):
    class Boom(Exception):
        pass

    a = _Log()
    c_rba.register_listener(a, S(0, 8 * BS))

    def boom():
        raise Boom("from the hook")

    a.then = boom
    with pytest.raises(Boom):
        c_rba.state_change(0, BS, False)
    # The C went on (the callback returned 0) and the manager is still usable.
    assert c_rba.bitmap.set_bits() == [0]
    assert c_rba.state_change(BS, BS, False) == 0
    with pytest.raises(Boom):
        c_rba.replay_populated(S(0, 8 * BS), lambda s: boom())
    assert c_rba.replay_populated(S(0, 8 * BS), lambda s: 0) == 0


def test_nested_calls_from_a_hook(c_rba):
    a, b = _Log(), _Log(fail=-ENOMEM)
    c_rba.register_listener(a, S(0, 8 * BS))
    c_rba.state_change(0, 2 * BS, False)
    seen = []
    # From inside a's populate: register b (its replay fails), query, unregister b.
    a.then = lambda: seen.extend([c_rba.register_listener(b, S(0, 8 * BS)),
                                  [x is b for x in c_rba.listeners()],
                                  c_rba.is_populated(S(2 * BS, BS)),
                                  c_rba.unregister_listener(b)])
    assert c_rba.state_change(2 * BS, BS, False) == 0
    assert seen == [-ENOMEM, [True, False], True, 0]
    # b's replay saw the two populated blocks and the one a is being told about.
    assert b.calls[0] == ("populate", (0, 3 * BS, 0))
    assert c_rba.listeners() == [a] and c_rba.bitmap.set_bits() == [0, 1, 2]


def test_reports_are_read_back_in_order(c_rba):
    assert c_rba.state_change(BS // 2, BS, False) == -EINVAL
    assert c_rba.state_change(0, 0, True) == -EINVAL
    reports = c_rba.reports()
    assert [r.kind for r in reports] == ["error", "error"]
    assert "invalid range: offset 0x800" in reports[0].message
    assert c_rba.reports(start=1) == reports[1:]
    c_rba.clear_reports()
    assert c_rba.reports() == []


def test_two_managers_with_different_block_sizes(c_rba):
    other = portbuild.CRamBlockAttributes(c_rba.lib, 8 * 0x2000, 0x2000)
    try:
        assert other.state_change(0x2000, 0x2000, False) == 0
        assert other.state_change(0x1000, 0x1000, False) == -EINVAL  # not 8 KiB aligned
        assert c_rba.state_change(0x1000, 0x1000, False) == 0
        assert other.bitmap.set_bits() == [1] and c_rba.bitmap.set_bits() == [1]
        assert len(other.reports()) == 1 and c_rba.reports() == []
    finally:
        other.destroy()


def test_destroy_leaves_listeners_unregistered(c_rba):
    a = _Log()
    c_rba.register_listener(a, S(0, BS))
    c_rba.destroy()
    assert a.section is None and a.calls == []
    assert c_rba.listeners() == []
    with pytest.raises(ValueError, match="destroyed"):
        c_rba.state_change(0, BS, False)


def test_the_package_ships_the_port_sources():
    files = portbuild.support_files()
    assert all(p.is_file() for p in files)
    names = {p.relative_to(portbuild.PORT_DIR).as_posix() for p in files}
    assert {"qemu-stubs.c", "harness.c", "include/qemu/osdep.h", "include/system/memory.h",
            "include/system/ramblock.h", "include/qom/object.h", "include/trace.h"} <= names


@needs_cc
def test_bitmap_reads_past_the_end_are_reported(qemu_tree, port_cache):
    # QEMU's is_populated scans [first_bit, last_bit] of a section past the region:
    # undefined behaviour in QEMU; the stub layer reads it as discarded (the core's
    # answer, False) and reports the access.
    flavour, tree = qemu_tree
    rba = portbuild.CRamBlockAttributes(_library(portbuild.find_sources(tree), port_cache),
                                        32 * BS, BS)
    try:
        rba.state_change(0, 32 * BS, False)
        assert rba.is_populated(S(0, 32 * BS)) and rba.reports() == []
        assert not rba.is_populated(S(64 * BS, BS))
        assert [r.kind for r in rba.reports()] == ["oob"]
        assert "past the end of a bitmap of 32 bits" in rba.reports()[0].message
    finally:
        rba.destroy()
