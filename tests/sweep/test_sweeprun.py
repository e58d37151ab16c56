"""rig sweep's runner (rig.drive.sweeprun): one pytest item per cell through pytest-xdist,
results carried back in reports, crashed workers and lost cells as errors, the
determinism re-check, and two execnet socket servers on the loopback address standing
in for two machines.  Tiny sweeps (the quick profile, one design, the small shape) keep
each test to seconds."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rig.drive import sweeprun
from rig.drive.sweep import cells, run_cell
from rig.errors import UsageError

BACKEND = "pure" if os.environ.get("RIG_PUREPYTHON", "") not in ("", "0") else "cy"
SOCKETSERVER = Path(__import__("execnet").__file__).parent / "script" / "socketserver.py"

#: Two designs of a user's own: one that kills its process on iommufd's conversions (a
#: native crash in an instrumented build looks so to xdist), one whose conversions
#: depend on the process' hash seed.
DESIGNS = '''\
import os

from rig.errors import EINVAL
from rig.world.designs.hardened import Hardened


class AbortOnIommufd(Hardened):
    name = "abort-on-iommufd"

    def kvm_convert_memory(self, world, start, size, to_private):
        if world.config.iommu == "iommufd":
            os.abort()
        return super().kvm_convert_memory(world, start, size, to_private)


class RaiseOnIommufd(Hardened):
    name = "raise-on-iommufd"

    def kvm_convert_memory(self, world, start, size, to_private):
        if world.config.iommu == "iommufd":
            raise RuntimeError("boom in my design")
        return super().kvm_convert_memory(world, start, size, to_private)


class AbortAlways(Hardened):
    name = "abort-always"

    def kvm_convert_memory(self, world, start, size, to_private):
        os.abort()


class Slow(Hardened):
    name = "slow"

    def kvm_convert_memory(self, world, start, size, to_private):
        import time
        time.sleep(0.01)
        return super().kvm_convert_memory(world, start, size, to_private)


class HashSeeded(Hardened):
    name = "hash-seeded"

    def kvm_convert_memory(self, world, start, size, to_private):
        if hash(f"{start}:{size}:{to_private}") & 1:
            return -EINVAL
        return super().kvm_convert_memory(world, start, size, to_private)
'''


def tiny(design="hardened", plans=("map", "none")):
    return cells("quick", designs=[design], shapes=["small"], plans=list(plans))


@pytest.fixture
def user_designs(tmp_path, registry):
    path = tmp_path / "userdesigns.py"
    path.write_text(DESIGNS)

    def load(cls):
        spec = f"{path}:{cls}"
        return registry.load_design(spec), spec
    return load


def by_id(result):
    return {c["cell"]: c for c in result["cells"]}


@pytest.fixture(scope="module")
def in_process():
    """The cells' digests as run_cell gives them in this process."""
    return {s.id: run_cell(s, BACKEND)["digest"] for s in tiny()}


# -- items, files, merging ------------------------------------------------------------------

def test_items_are_the_cells_in_order_then_the_rechecks(tmp_path):
    specs = tiny()
    out = tmp_path / "out"
    (out / "run").mkdir(parents=True)
    args = sweeprun.pytest_args(specs, out, [0, 2], 0, "worksteal", (), BACKEND, ())
    proc = subprocess.run([sys.executable, "-m", "pytest", *args, "--collect-only", "-q"],
                          cwd=out / "run", env=sweeprun._child_env(()), capture_output=True,
                          text=True, timeout=120)
    ids = re.findall(r"^\s*<(CellItem|RecheckItem) (\S+)>$", proc.stdout, re.M)
    expected = [("CellItem", s.id) for s in specs] + \
        [("RecheckItem", f"recheck:{specs[i].id}") for i in (0, 2)]
    assert ids == expected, proc.stdout + proc.stderr
    assert f"collected {len(expected)} items" in proc.stdout
    assert "<Module" not in proc.stdout and "<Dir" not in proc.stdout


@pytest.mark.parametrize("jobs", [2, 0])
def test_merged_result_equals_run_cell_in_process(tmp_path, jobs, in_process):
    specs = tiny()
    seen = []
    result = sweeprun.run_sweep(specs, tmp_path / "out", jobs=jobs, backend=BACKEND,
                                progress=lambda *a: seen.append(a))
    assert result["exit"] == 0, result["why"]
    assert [c["cell"] for c in result["cells"]] == [s.id for s in specs]
    for spec in specs:
        path = tmp_path / "out" / "cells" / sweeprun.file_name(spec.id)
        on_disk = json.loads(path.read_text())
        assert on_disk["status"] == "ok"
        assert on_disk["digest"] == in_process[spec.id] == by_id(result)[spec.id]["digest"]
    workers = {c["worker"] for c in result["cells"]}
    assert workers <= ({"gw0", "gw1"} if jobs else {"main"}) and workers
    assert [r["cell"] for r in result["recheck"]] == [specs[0].id]
    assert result["recheck"][0]["equal"] is True
    assert result["recheck"][0]["hashseed"] != sweeprun.HASHSEED
    assert seen[-1] == (len(specs) + 1, len(specs) + 1, 0)
    assert (tmp_path / "out" / "pytest.log").read_text().count("PASSED") == len(specs) + 1


def test_an_earlier_sweeps_cell_files_are_not_taken_for_this_ones(tmp_path):
    specs = tiny()
    stale = tmp_path / "out" / "cells" / sweeprun.file_name("hardened/type1/gaps/map/0")
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    sweeprun.run_sweep(specs[:1], tmp_path / "out", jobs=0, backend=BACKEND)
    assert not stale.exists()


def test_recheck_indices_are_fixed_evenly_spaced_and_at_least_one():
    assert sweeprun.recheck_indices(10, 0.03) == [0]
    assert sweeprun.recheck_indices(100, 0.03) == [0, 33, 66]
    assert sweeprun.recheck_indices(4, 1.0) == [0, 1, 2, 3]
    assert sweeprun.recheck_indices(4, 0) == []
    assert sweeprun.recheck_hashseed(0, "0") != 0
    assert sweeprun.recheck_hashseed(5, "7") != 7


def test_a_large_cell_list_travels_in_pieces_below_the_argument_limit(tmp_path, monkeypatch):
    specs = cells("nightly") * 40
    pieces = sweeprun.encode_payload(specs, [0, 7])
    assert len(pieces) > 1 and all(len(p) <= sweeprun.CHUNK for p in pieces)
    assert sweeprun.decode_payload(pieces) == (specs, [0, 7])
    # The pieces are joined again on the other side of a real command line.
    monkeypatch.setattr(sweeprun, "CHUNK", 40)
    result = sweeprun.run_sweep(tiny(), tmp_path / "out", jobs=0, backend=BACKEND)
    assert sum(a.startswith("--rig-cells=") for a in result["pytest"]["args"]) > 3
    assert result["exit"] == 0, result["why"]


# -- two execnet socket servers on the loopback address ----------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_socketserver(cwd: Path):
    """An execnet socket server with this venv's python, on a free loopback port; returns
    (process, port) once it accepts, or fails the test saying why."""
    for _ in range(5):
        port = free_port()
        log = open(cwd / "server.log", "w")
        proc = subprocess.Popen([sys.executable, "-u", str(SOCKETSERVER), f"127.0.0.1:{port}"],
                                cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            if "Entering Accept loop" in (cwd / "server.log").read_text():
                return proc, port
            time.sleep(0.1)
        text = (cwd / "server.log").read_text()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            pytest.fail(f"the execnet socket server on port {port} did not come up in 30 s:"
                        f" {text[-500:]}")
        if "Address already in use" not in text:
            pytest.fail(f"the execnet socket server on port {port} exited "
                        f"{proc.returncode}: {text[-500:]}")
    pytest.fail("no free loopback port for an execnet socket server after 5 tries")


@pytest.fixture
def socket_servers(tmp_path):
    servers = []
    try:
        for name in ("host1", "host2"):
            (tmp_path / name).mkdir()
            servers.append((*start_socketserver(tmp_path / name), tmp_path / name))
        yield servers
    finally:
        for proc, _, _ in servers:
            proc.kill()
            proc.wait()


def test_two_socket_gateways_give_the_single_host_cells_and_digests(tmp_path, socket_servers,
                                                                    in_process):
    specs = tiny()
    single = sweeprun.run_sweep(specs, tmp_path / "single", jobs=2, backend=BACKEND)
    tx = [f"socket=127.0.0.1:{port}" for _, port, _ in socket_servers]
    two = sweeprun.run_sweep(specs, tmp_path / "two", tx=tx, backend=BACKEND,
                             start_timeout=60)
    assert two["exit"] == 0, two["why"]
    assert len(two["cells"]) == len(single["cells"]) == len(specs)
    assert [c["digest"] for c in two["cells"]] == [c["digest"] for c in single["cells"]] \
        == [in_process[s.id] for s in specs]
    assert two["recheck"][0]["equal"] is True
    assert two["tx"] == tx and "--numprocesses" not in " ".join(two["pytest"]["args"])
    for _, _, cwd in socket_servers:
        # Each server ran a gateway (xdist copied pytest into its pyexecnetcache).
        assert "got new connection" in (cwd / "server.log").read_text()
        assert (cwd / "pyexecnetcache").is_dir()


# -- crashes, exceptions, cells that never ran ----------------------------------------------------

def test_a_design_that_aborts_makes_its_cells_errors_and_the_others_stay_ok(tmp_path,
                                                                          user_designs):
    abort, abort_spec = user_designs("AbortOnIommufd")
    boom, boom_spec = user_designs("RaiseOnIommufd")
    specs = tiny(abort, ["none"]) + tiny(boom, ["none"])
    result = sweeprun.run_sweep(specs, tmp_path / "out", jobs=2, backend=BACKEND,
                                load=[abort_spec, boom_spec])
    cell = by_id(result)
    assert cell[f"{abort}/type1/small/none/0"]["status"] == "ok"
    assert cell[f"{boom}/type1/small/none/0"]["status"] == "ok"
    crashed = cell[f"{abort}/iommufd/small/none/0"]
    assert crashed["status"] == "error" and "crashed while running" in crashed["error"]
    raised = cell[f"{boom}/iommufd/small/none/0"]
    assert raised["status"] == "error"
    assert raised["error"].startswith("run_cell raised RuntimeError: boom in my design")
    assert result["errors"] == 2 and result["exit"] == 3
    assert "2 of 4 cells are errors" in result["why"]
    on_disk = json.loads((tmp_path / "out" / "cells" /
                          sweeprun.file_name(crashed["cell"])).read_text())
    assert on_disk["status"] == "error" and on_disk["design"] == abort


def test_cells_xdist_never_ran_are_errors_saying_so(tmp_path, user_designs):
    name, spec = user_designs("AbortAlways")
    specs = tiny(name, ["none", "map", "unmap", "punch"])   # 8 cells, 1 worker
    result = sweeprun.run_sweep(specs, tmp_path / "out", jobs=1, backend=BACKEND, load=[spec],
                                recheck=0)
    errors = [c["error"] for c in result["cells"]]
    assert len(errors) == 8 and all(c["status"] == "error" for c in result["cells"])
    crashed = [e for e in errors if "crashed while running" in e]
    never = [e for e in errors if e.startswith("never ran: pytest-xdist stopped: maximum "
                                               "crashed workers reached: 4")]
    assert len(crashed) == 5 and len(never) == 3, errors
    assert result["exit"] == 3


def test_a_design_that_depends_on_the_hash_seed_fails_the_recheck(tmp_path, user_designs):
    name, spec = user_designs("HashSeeded")
    specs = tiny(name)
    result = sweeprun.run_sweep(specs, tmp_path / "out", jobs=0, backend=BACKEND, load=[spec],
                                recheck=1.0)
    assert all(c["status"] == "ok" for c in result["cells"])
    assert result["mismatches"], result["recheck"]
    assert result["exit"] == 3
    first = next(r for r in result["recheck"] if not r["equal"])
    assert f"determinism: {first['cell']} gave digest {first['digest']}" in result["why"]
    assert first["again"] in result["why"] and first["digest"] != first["again"]


INTERRUPTED = """
import json, sys
from rig.drive import sweeprun
from rig.drive.sweep import cells
from rig.world.designs import load_design
name = load_design(sys.argv[2])
specs = cells("quick", designs=[name], shapes=["small"], plans=["none", "map", "unmap"])
result = sweeprun.run_sweep(specs, sys.argv[1], jobs=1, backend=sys.argv[3],
                            load=[sys.argv[2]], recheck=0)
print(json.dumps(result))
"""


def processes_naming(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text in (proc / "cmdline").read_text():
                found.append(int(proc.name))
        except OSError:
            pass
    return found


def test_ctrl_c_stops_the_child_keeps_what_finished_and_exits_130(tmp_path, user_designs):
    _, spec = user_designs("Slow")
    out = tmp_path / "out"
    script = subprocess.Popen([sys.executable, "-c", INTERRUPTED, str(out), spec, BACKEND],
                              stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list((out / "cells").glob("[!.]*.json")):
            assert time.monotonic() < deadline and script.poll() is None, "no cell finished"
            time.sleep(0.1)
        script.send_signal(signal.SIGINT)
        stdout, _ = script.communicate(timeout=60)
    finally:
        if script.poll() is None:
            script.kill()
            script.wait()
    result = json.loads(stdout)
    statuses = [c["status"] for c in result["cells"]]
    assert result["exit"] == 130 and result["why"].startswith("interrupted")
    assert "ok" in statuses and len(statuses) == 6
    never = [c for c in result["cells"] if c["status"] == "error"]
    assert never and all(c["error"] == "never ran: the sweep was interrupted (Ctrl-C)"
                         for c in never)
    assert processes_naming(f"--rig-out={out.resolve()}") == []


# -- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("tx, message", [
    ("foo=bar", "--tx 'foo=bar': names no gateway"),
    ("socket=127.0.0.1", "--tx 'socket=127.0.0.1': socket= takes HOST:PORT"),
], ids=["no-gateway", "socket-without-port"])
def test_a_tx_that_is_no_gateway_is_one_line(tmp_path, tx, message):
    with pytest.raises(UsageError, match="^" + message.replace("(", r"\(")) as err:
        sweeprun.run_sweep(tiny(), tmp_path / "out", tx=[tx], backend=BACKEND)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out" / "pytest.log").exists()


def test_a_host_that_refuses_is_one_line_and_quick(tmp_path):
    port = free_port()   # nothing listens there
    started = time.monotonic()
    with pytest.raises(UsageError) as err:
        sweeprun.run_sweep(tiny(), tmp_path / "out", tx=[f"socket=127.0.0.1:{port}"],
                           backend=BACKEND, start_timeout=60)
    assert time.monotonic() - started < 50
    text = str(err.value)
    assert text.startswith(f"--tx socket=127.0.0.1:{port}: cannot start a worker: "
                           "ConnectionRefusedError"), text
    assert "\n" not in text


def test_a_host_that_never_answers_is_bounded_by_the_start_timeout(tmp_path):
    with socket.socket() as mute:   # accepts connections, never says a word
        mute.bind(("127.0.0.1", 0))
        mute.listen(5)
        port = mute.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(UsageError, match=rf"^--tx socket=127.0.0.1:{port}: the workers "
                                             r"did not start within 5 s"):
            sweeprun.run_sweep(tiny(), tmp_path / "out", tx=[f"socket=127.0.0.1:{port}"],
                               backend=BACKEND, start_timeout=5)
        assert time.monotonic() - started < 40


def test_bad_options_are_one_line(tmp_path):
    for kwargs, message in [({"jobs": "many"}, "-n/--jobs"), ({"dist": "random"}, "--dist"),
                            ({"recheck": 2}, "--recheck"), ({"backend": "c"}, "--backend"),
                            ({"jobs": 2, "tx": ["popen"]}, "-n/--jobs and --tx")]:
        with pytest.raises(UsageError, match="^" + message):
            sweeprun.run_sweep(tiny(), tmp_path / "out", **kwargs)
    with pytest.raises(UsageError, match="no cells"):
        sweeprun.run_sweep([], tmp_path / "out")
    with pytest.raises(UsageError, match="^sweep: cell hardened/type1/small/map/0 is listed"):
        sweeprun.run_sweep(tiny() * 2, tmp_path / "out")
