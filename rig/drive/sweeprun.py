"""The runner of ``rig sweep``: one pytest item per cell, spread by pytest-xdist.

``run_sweep`` starts ``python -m pytest`` as a child process with this module as its only
plugin (``-p rig.drive.sweeprun``) and pytest-xdist's own options (``-n``, ``--dist``,
``--tx``), so the cells of a sweep go wherever xdist can send work: local worker
processes, or other machines through execnet gateways (``--tx ssh=host//python=...``,
``--tx socket=host:port``).  The parent waits, reports progress as cell files appear,
and merges them into one result.

Why a plugin that makes its items, not a test file: the items are the cells, in
``rig.drive.sweep.cells()`` order, named by their ids, and nothing about them may be
random or depend on the files of the machine that collects them.  So ``pytest_collection``
(in a worker, or in a session without xdist; in xdist's controller DSession's hook must
win, so this one steps aside) builds one ``CellItem`` per cell from the cell list itself
and calls the collection hooks that xdist's worker reports from.  The cell list reaches
every worker as a pytest option (``--rig-cells``, zlib-compressed JSON in base64,
split into pieces below Linux's 128 KiB limit for one argument): an xdist worker parses
the controller's command line again (``xdist/remote.py``: ``_prepareconfig(args)``; the
"option dict" it is sent holds only basetemp), and a remote one shares no file system
with us.  Every argument is one ``--name=value`` word, because xdist rewrites any
argument that names an existing path relative to its rsync roots for remote gateways
(``make_reltoroot``), and refuses one outside them.

Results travel in reports.  An item runs ``rig.drive.sweep.run_cell`` and puts the cell
dict (JSON) in its ``user_properties``; the controller side of the plugin (registered
only in the process that owns the session: xdist's controller, or the single process of
``-n 0``) writes ``OUT/cells/<id>.json`` from ``pytest_runtest_logreport``, atomically.
So a cell run on another machine lands here, and a worker never writes a result file.
The item also records which worker ran it (``worker``: xdist's gateway id, ``main``
without xdist) and on which host (``host``); like ``seconds``, they are outside the
digest.

A crashed worker never drops a cell.  xdist reports the cell a dead worker was running
as a failed item ("worker 'gw0' crashed while running ..."), and the plugin writes it as
an error cell (``{"status": "error", "error": "<one line>", ...spec fields}``).  An
exception from ``run_cell`` is an error cell too, with the exception's last line.  Cells
that never ran at all (xdist gave up restarting workers, the child died, Ctrl-C) are
found by the parent after pytest exits, as cells with no file, and are written as error
cells ("never ran: ...").  None of them is ever clean.

The determinism re-check.  A fixed share of the cells, chosen by index
(``recheck_indices``: evenly spaced, the first cell always among them), gets a second
item, ``recheck:<id>``, an ordinary item placed after every cell item (so re-checks
spread over the workers like cells, often to another worker than the cell's own, which
no scheduler promises).  That item runs the cell again in a subprocess of whichever
worker takes it (``python -m rig.drive.sweeprun --recheck``): a fresh interpreter, so
nothing the worker's earlier cells left in module state reaches it, with another
PYTHONHASHSEED than the worker's (``recheck_hashseed``).  The parent compares its digest with the
cell's; a mismatch fails the sweep (exit 3) and names the cell, both digests and the
hash seeds.  The child runs, and its local workers inherit, PYTHONHASHSEED=0, so that a
sweep's digests are the same from run to run even for a design that depends on it.

Pass-through: ``jobs`` is ``-n`` (default ``auto``; ``0`` runs every item in the child
itself, without xdist, which is handy for a debugger), ``dist`` is ``--dist`` (default
``worksteal``), each ``tx`` is a ``--tx`` (``N*spec`` starts N workers on one gateway
host), and then no ``-n``: xdist's ``-n`` replaces the ``--tx`` gateways by local ones,
so both together are refused.  ``load`` is a list of design specs
(``path/to/file.py:Class``): the child gets them as RIG_DESIGNS, and every worker loads
them again from ``--rig-load``, since a remote one does not get our environment.

A remote host needs what a local worker has: the same checkout of the rig at the same
commit, installed in a Python that its gateway runs (an execnet socket server started
with the venv's python, ``python execnet/script/socketserver.py HOST:PORT``, or
``ssh=host//python=/path/to/venv/bin/python``), and a design file at the same absolute
path.  xdist copies pytest itself to the host (into ``pyexecnetcache/`` in the gateway's
working directory); nothing else.  An execnet socket server runs every gateway in
its own process, one after the other: a worker that crashes there takes the server down
(its remaining cells are errors, never lost), and a server keeps the modules it imported
across sweeps, so restart it after changing the rig or a design file.

The child is isolated from the project's own tests: its working directory (so its rootdir)
is ``OUT/run``, ``--config-file=/dev/null`` (no ``addopts``, no ``testpaths`` from a
pyproject.toml above it), ``--noconftest``, ``-p no:cacheprovider``, no plugin
auto-loading (``PYTEST_DISABLE_PLUGIN_AUTOLOAD``: a plugin that reorders or reseeds
tests has no say), and no PYTEST_ADDOPTS.  pytest's own output goes to ``OUT/pytest.log``.

Bad input is one line (UsageError, exit 1): a ``--tx`` that is not an execnet spec, and
a gateway that cannot be started (a host that refuses, or any worker that has not
collected within ``start_timeout`` seconds: an unreachable host would otherwise hang in
``connect`` for minutes, and a worker that cannot import the rig is restarted forever).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import zlib
from pathlib import Path

import pytest

from rig.drive.sweep import DISTS, RECHECK_SHARE
from rig.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, UsageError

#: Seconds the workers may take to start and collect before the sweep gives up on them.
START_TIMEOUT = 120.0
#: How often the parent looks at the cells folder for progress.
POLL_S = 0.2
#: Seconds a stopped child gets to exit on SIGTERM before it is killed.
STOP_GRACE_S = 10.0
#: One piece of the ``--rig-cells`` payload: well below Linux's MAX_ARG_STRLEN (128 KiB).
CHUNK = 64 * 1024
#: The user property that carries a cell dict, and a re-check's result, in a report.
CELL_PROP = "rig_cell"
RECHECK_PROP = "rig_recheck"
#: How a re-check item's name begins (a design name has no colon).
RECHECK_PREFIX = "recheck:"
#: The hash seed of the child and its local workers.
HASHSEED = 0
#: execnet gateway types a ``--tx`` may name.
GATEWAYS = ("popen", "socket", "ssh", "vagrant_ssh")


# -- the payload: the cells, through a pytest option ---------------------------------------------

def encode_payload(specs, recheck: list[int]) -> list[str]:
    """The cell list and the re-checked indices as ``--rig-cells`` pieces."""
    data = json.dumps({"cells": [s.to_dict() for s in specs], "recheck": recheck},
                      separators=(",", ":"), sort_keys=True)
    text = base64.urlsafe_b64encode(zlib.compress(data.encode(), 9)).decode()
    return [text[i:i + CHUNK] for i in range(0, len(text), CHUNK)] or [""]


def decode_payload(pieces) -> tuple[list, list[int]]:
    from rig.drive.sweep import CellSpec

    data = json.loads(zlib.decompress(base64.urlsafe_b64decode("".join(pieces))))
    return [CellSpec.from_dict(d) for d in data["cells"]], list(data["recheck"])


def recheck_indices(count: int, share: float) -> list[int]:
    """Which cells are run twice: ``ceil(count * share)`` of them (at least one when
    ``share`` > 0), evenly spaced by index, the first cell always.  Fixed by the cell
    list alone, so a sweep re-checks the same cells every time."""
    if count == 0 or share <= 0:
        return []
    many = min(count, max(1, math.ceil(count * share)))
    return sorted({i * count // many for i in range(many)})


def recheck_hashseed(index: int, own: str | None) -> int:
    """The PYTHONHASHSEED of cell ``index``'s re-run: another than the worker's own
    (``own``, its PYTHONHASHSEED, or None/"random" when the worker hashes randomly,
    in which case any fixed seed differs but for a 2^-32 chance)."""
    base = int(own) if own and own.isdigit() else HASHSEED
    seed = (base + 1 + index) % (1 << 32)
    return seed if seed != base else (seed + 1) % (1 << 32)


def file_name(cell_id: str) -> str:
    return cell_id.replace("/", "__") + ".json"


def error_cell(spec, error: str, worker: str | None = None) -> dict:
    """A cell that has no result: never clean, whatever the matrix makes of it."""
    cell = {"cell": spec.id, **spec.to_dict(), "status": "error", "error": one_line(error)}
    if worker:
        cell["worker"] = worker
    return cell


def one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else "(no message)"


def exception_line(exc: BaseException) -> str:
    """``Type: message (at file.py:line)``: a traceback's last line and where it was."""
    message = one_line(str(exc)) if str(exc).strip() else ""
    where = traceback.extract_tb(exc.__traceback__)
    at = f" (at {Path(where[-1].filename).name}:{where[-1].lineno})" if where else ""
    return f"{type(exc).__name__}{': ' + message if message else ''}{at}"


def write_json(path: Path, data) -> None:
    """Temp file and os.replace: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# -- the pytest plugin -------------------------------------------------------------------------

def pytest_addoption(parser) -> None:
    group = parser.getgroup("rig sweep", "rig sweep's runner (rig.drive.sweeprun)")
    group.addoption("--rig-cells", action="append", default=None,
                    help="the cell list (encoded; repeated pieces are joined)")
    group.addoption("--rig-out", default=None, help="where the controller writes cells")
    group.addoption("--rig-backend", default="cy", help="the core backend (cy or pure)")
    group.addoption("--rig-load", action="append", default=[],
                    help="a design spec every worker loads")
    group.addoption("--rig-parent", type=int, default=None,
                    help="the pid of run_sweep's process: the session ends with it")


def _worker_id(config) -> str:
    return getattr(config, "workerinput", {}).get("workerid", "main")


def pytest_configure(config) -> None:
    pieces = config.getoption("rig_cells", None)
    if pieces is None:
        return
    from rig.world.designs import load_design

    for spec in config.getoption("rig_load"):
        load_design(spec)
    specs, recheck = decode_payload(pieces)
    config._rig_sweep = (specs, recheck)
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(Controller(config, specs, recheck), "rig-sweep-controller")


@pytest.hookimpl
def pytest_collection(session):
    """The items are the cells (then the re-checks), made here, in a worker or a session
    without xdist; in xdist's controller DSession collects nothing and must win."""
    config = session.config
    if not hasattr(config, "_rig_sweep") or config.pluginmanager.has_plugin("dsession"):
        return None
    specs, recheck = config._rig_sweep
    items = [CellItem.from_parent(session, name=s.id, nodeid=s.id) for s in specs]
    for item, spec in zip(items, specs):
        item.spec = spec
    for index in recheck:
        spec = specs[index]
        name = RECHECK_PREFIX + spec.id
        item = RecheckItem.from_parent(session, name=name, nodeid=name)
        item.spec, item.index = spec, index
        items.append(item)
    for item in items:
        session.ihook.pytest_itemcollected(item=item)
    # (the terminal's count of collected items, in pytest.log)
    session.ihook.pytest_collectreport(
        report=pytest.CollectReport(session.nodeid, "passed", None, list(items)))
    config.hook.pytest_collection_modifyitems(session=session, config=config, items=items)
    session.items = items
    session.testscollected = len(items)
    config.hook.pytest_collection_finish(session=session)
    return True


class CellItem(pytest.Item):
    """One cell: run_cell here, its dict in the report.  An exception is an error cell
    (the item passes: the result is data, the controller writes it)."""

    spec = None

    def runtest(self) -> None:
        from rig.drive.sweep import run_cell

        worker = _worker_id(self.config)
        try:
            cell = run_cell(self.spec, self.config.getoption("rig_backend"))
            json.dumps(cell)  # (what cannot travel is the rig's bug: an error cell)
        except Exception as exc:
            cell = error_cell(self.spec, f"run_cell raised {exception_line(exc)}")
        cell["worker"] = worker
        cell["host"] = socket.gethostname()
        self.user_properties.append((CELL_PROP, json.dumps(cell)))

    def reportinfo(self):
        return self.path, None, self.name

    def repr_failure(self, excinfo, style=None):
        return exception_line(excinfo.value)


class RecheckItem(CellItem):
    """Cell ``index`` again, in a fresh interpreter with another PYTHONHASHSEED: a
    subprocess of this worker (``python -m rig.drive.sweeprun --recheck``)."""

    index = 0

    def runtest(self) -> None:
        own = os.environ.get("PYTHONHASHSEED")
        seed = recheck_hashseed(self.index, own)
        result = {"cell": self.spec.id, "hashseed": seed, "worker_hashseed": own or "random",
                  "worker": _worker_id(self.config), "host": socket.gethostname()}
        env = dict(os.environ, PYTHONHASHSEED=str(seed))
        request = json.dumps({"spec": self.spec.to_dict(),
                              "backend": self.config.getoption("rig_backend")})
        proc = subprocess.run([sys.executable, "-m", __name__, "--recheck"], input=request,
                              capture_output=True, text=True, env=env)
        if proc.returncode == 0:
            try:
                result["again"] = json.loads(proc.stdout)["digest"]
            except (ValueError, KeyError, TypeError) as exc:
                result["error"] = f"the re-run printed no digest ({exception_line(exc)})"
        else:
            result["error"] = f"the re-run {_exit_text(proc.returncode)}: " + \
                _last_line(proc.stderr)
        self.user_properties.append((RECHECK_PROP, json.dumps(result)))


def _orphan_guard(parent: int) -> None:
    """The child runs in a session of its own (so a terminal's Ctrl-C reaches run_sweep,
    which stops it in order); if run_sweep's process dies without stopping it (SIGKILL,
    a test runner's timeout), the session and its local workers end too."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os.killpg(os.getpgrp(), signal.SIGKILL)


def _exit_text(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"died of {signal.Signals(-returncode).name}"
        except ValueError:
            return f"died of signal {-returncode}"
    return f"exited {returncode}"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


class Controller:
    """The side of the plugin in the process that owns the session: writes each cell
    (and each re-check) as its report arrives, and the state of the run (which gateway
    is starting, workers that went down, xdist's summary, pytest's exit status) to
    ``OUT/run/state.json`` for the parent."""

    def __init__(self, config, specs, recheck):
        self.config = config
        self.out = Path(config.getoption("rig_out"))
        self.by_id = {s.id: s for s in specs}
        self.rechecked = {RECHECK_PREFIX + specs[i].id: specs[i] for i in recheck}
        self.written: set[str] = set()
        self.state = {"phase": "configured", "tx": [], "gateways": 0, "nodes_down": [],
                      "internal_error": None, "summary": None, "exitstatus": None}
        self.save()
        parent = config.getoption("rig_parent")
        if parent is not None and os.getpgrp() == os.getpid():
            threading.Thread(target=_orphan_guard, args=(parent,), daemon=True).start()

    def save(self) -> None:
        write_json(self.out / "run" / "state.json", self.state)

    def pytest_runtest_logreport(self, report) -> None:
        props = dict(report.user_properties)
        nodeid = report.nodeid
        if nodeid in self.written:
            return
        if CELL_PROP in props:
            cell = json.loads(props[CELL_PROP])
            self._write("cells", cell["cell"], cell, nodeid)
        elif RECHECK_PROP in props:
            result = json.loads(props[RECHECK_PROP])
            self._write(os.path.join("run", "recheck"), result["cell"], result, nodeid)
        elif report.failed:
            # A crashed worker (xdist's report, when "???"), or a failure of the item
            # outside its own run (set-up, tear-down): the cell has no result.
            line = self._failure_line(report)
            worker = getattr(getattr(report, "node", None), "gateway", None)
            worker = getattr(worker, "id", None)
            if nodeid in self.by_id:
                self._write("cells", nodeid, error_cell(self.by_id[nodeid], line, worker),
                            nodeid)
            elif nodeid in self.rechecked:
                spec = self.rechecked[nodeid]
                self._write(os.path.join("run", "recheck"), spec.id,
                            {"cell": spec.id, "error": line, "worker": worker}, nodeid)

    def _write(self, folder: str, cell_id: str, data: dict, nodeid: str) -> None:
        write_json(self.out / folder / file_name(cell_id), data)
        self.written.add(nodeid)

    @staticmethod
    def _failure_line(report) -> str:
        longrepr = report.longrepr
        crash = getattr(longrepr, "reprcrash", None)
        if crash is not None and getattr(crash, "message", ""):
            return one_line(crash.message)
        return one_line(str(longrepr)) if longrepr else f"failed in {report.when}"

    # -- the run's state, for the parent's messages --------------------------------------------
    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_setupnodes(self, config, specs) -> None:
        self.state.update(phase="starting", tx=[str(s) for s in specs])
        self.save()

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_newgateway(self, gateway) -> None:
        self.state["gateways"] += 1
        self.save()

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node, ids) -> None:
        if self.state["phase"] != "running":
            self.state["phase"] = "running"
            self.save()

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error) -> None:
        if error:
            self.state["nodes_down"].append(f"{node.gateway.id}: {_last_line(str(error))}")
            self.save()

    def pytest_collection_finish(self, session) -> None:
        # Without xdist the session's own collection (ours) is the start.
        self.state["phase"] = "running"
        self.save()

    def pytest_internalerror(self, excrepr, excinfo) -> None:
        self.state["internal_error"] = exception_line(excinfo.value)
        self.save()

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session, exitstatus) -> None:
        dsession = self.config.pluginmanager.getplugin("dsession")
        self.state.update(phase="finished", exitstatus=int(exitstatus),
                          summary=getattr(dsession, "_summary_report", None))
        self.save()


# -- the parent: run the child, report progress, merge --------------------------------------------

def _tx_check(spec: str) -> None:
    """A --tx that execnet cannot start is one line here, not a traceback in the log."""
    import execnet

    text = spec
    match = re.match(r"(\d+)\*(.*)\Z", spec)
    if match:
        text = match.group(2)
    try:
        xspec = execnet.XSpec(text)
    except Exception as exc:
        raise UsageError(f"--tx {spec!r}: not an execnet spec ({exception_line(exc)})") from None
    kinds = [k for k in GATEWAYS if getattr(xspec, k, None)]
    if not kinds:
        raise UsageError(f"--tx {spec!r}: names no gateway (popen, socket=HOST:PORT, "
                         "ssh=[USER@]HOST or vagrant_ssh=HOST)")
    if xspec.socket:
        host, colon, port = xspec.socket.rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise UsageError(f"--tx {spec!r}: socket= takes HOST:PORT, got {xspec.socket!r}")


def _tx_workers(tx) -> int:
    total = 0
    for spec in tx:
        match = re.match(r"(\d+)\*", spec)
        total += int(match.group(1)) if match else 1
    return total


def pytest_args(specs, out: Path, recheck: list[int], jobs, dist: str, tx, backend: str,
                load) -> list[str]:
    """The child's command line after ``python -m pytest`` (each word ``--name=value``:
    see the module's docstring)."""
    args = ["-p", "xdist", "-p", __name__, "-p", "no:cacheprovider", "--noconftest",
            "--config-file=/dev/null", "-v", "-rfE", f"--rig-out={out}",
            f"--rig-backend={backend}", f"--rig-parent={os.getpid()}"]
    args += [f"--rig-cells={piece}" for piece in encode_payload(specs, recheck)]
    args += [f"--rig-load={spec}" for spec in load]
    if jobs is not None:
        args.append(f"--numprocesses={jobs}")
    args += [f"--tx={spec}" for spec in tx]
    if tx:
        # xdist restarts a crashed --tx worker without bound; -n gets 4 per worker.
        args.append(f"--max-worker-restart={4 * _tx_workers(tx)}")
    args.append(f"--dist={dist}")
    return args


def _child_env(load) -> dict:
    import rig

    env = dict(os.environ)
    for name in list(env):
        # (and, when run from a test under xdist, that session's worker variables)
        if name in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_CURRENT_TEST") or \
                name.startswith("PYTEST_XDIST_"):
            del env[name]
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    env["PYTHONHASHSEED"] = str(HASHSEED)
    specs = [s for s in env.get("RIG_DESIGNS", "").split(";") if s.strip()]
    env["RIG_DESIGNS"] = ";".join(specs + [s for s in load if s not in specs])
    # The rig as this process imports it, whatever the child's working directory.
    root = str(Path(rig.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in
                                                  env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the child's process group (its local workers too), then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, STOP_GRACE_S)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            continue
    # Workers may outlive their controller a moment; the group goes with it.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class _Progress:
    """Counts the result files as they appear; reads each cell file once for its status."""

    def __init__(self, out: Path, total: int, callback):
        self.cells = out / "cells"
        self.recheck = out / "run" / "recheck"
        self.total = total
        self.callback = callback
        self.seen: dict[str, bool] = {}
        self.rechecks = 0
        self.last = None

    def poll(self) -> None:
        if self.callback is None:
            return
        for path in self.cells.glob("[!.]*.json"):
            if path.name not in self.seen:
                cell = _read_json(path)
                self.seen[path.name] = not isinstance(cell, dict) or cell.get("status") != "ok"
        self.rechecks = sum(1 for _ in self.recheck.glob("[!.]*.json"))
        now = (len(self.seen) + self.rechecks, self.total, sum(self.seen.values()))
        if now != self.last:
            self.last = now
            self.callback(*now)


def run_sweep(specs, out_dir, jobs=None, dist: str = "worksteal", tx=(),
              recheck: float = RECHECK_SHARE, backend: str = "cy", progress=None, load=(),
              start_timeout: float = START_TIMEOUT) -> dict:
    """Run ``specs`` (CellSpecs, in cells() order) through pytest-xdist in a child
    pytest; return the merged result:

    ``cells``    every cell dict in ``specs`` order (ok, or error: never missing),
    ``recheck``  [{"cell", "digest", "again", "equal", "hashseed", "worker_hashseed",
                 ["error"]}] (``error``: why there was nothing to compare),
    ``errors``   how many cells are errors, ``mismatches`` the re-checked cell ids whose
                 digests differ,
    ``exit``     0, 3 (an error cell, a mismatch, a re-check that could not run) or
                 130 (interrupted); ``why`` says which, in one line ("" when 0),
    ``jobs``, ``dist``, ``tx``, ``workers`` (the worker ids that ran cells),
    ``pytest``   {"exit": the child's exit status, "log": OUT/pytest.log, "args": ...}.

    ``jobs``: ``-n`` (an int, "auto" or "logical"; None: "auto" unless ``tx`` is given,
    and not with ``tx``: xdist's ``-n`` would replace the gateways).
    ``recheck``: the share of cells re-run (``recheck_indices``; 0 turns it off).
    ``progress(done, total, errors)`` is called as results appear (total counts the
    cells and the re-checks).  ``load``: design specs the workers need (RIG_DESIGNS).
    The result files of an earlier sweep in ``out_dir`` (cells/, run/) are removed first.
    Ctrl-C stops the child and returns what finished, with exit 130.
    UsageError: an empty cell list, a bad ``jobs``/``dist``/``tx``/``backend``/``load``,
    or workers that cannot be started (see the module's docstring)."""
    from rig.world.designs import canonical, load_design

    specs = list(specs)
    tx = [str(t) for t in tx]
    if importlib.util.find_spec("xdist") is None:
        raise UsageError("rig sweep runs its cells through pytest-xdist, which is not "
                         "installed here (pip install pytest-xdist, or .[test])")
    if not specs:
        raise UsageError("sweep: the selection has no cells")
    twice = next((s.id for i, s in enumerate(specs) if s in specs[:i]), None) \
        if len(set(specs)) != len(specs) else None
    if twice:
        raise UsageError(f"sweep: cell {twice} is listed twice (one item, one file each)")
    if jobs is None and not tx:
        jobs = "auto"
    if jobs is not None and tx:
        raise UsageError("-n/--jobs and --tx: give one or the other (xdist's -n replaces "
                         "the --tx gateways by as many local ones)")
    if jobs is not None and str(jobs) not in ("auto", "logical") and \
            not (str(jobs).isdigit()):
        raise UsageError(f"-n/--jobs: expected a number >= 0, auto or logical, got {jobs!r}")
    if dist not in DISTS:
        raise UsageError(f"--dist: unknown mode {dist!r} (one of {', '.join(DISTS)})")
    if backend not in ("cy", "pure"):
        raise UsageError(f"--backend: unknown core backend {backend!r} (cy or pure)")
    if not 0 <= recheck <= 1:
        raise UsageError(f"--recheck: a share between 0 and 1, got {recheck!r}")
    for spec in tx:
        _tx_check(spec)
    load = [canonical(s) for s in load]
    for spec in load:
        load_design(spec)

    out = Path(out_dir).resolve()
    (out / "cells").mkdir(parents=True, exist_ok=True)
    (out / "run" / "recheck").mkdir(parents=True, exist_ok=True)
    for folder in (out / "cells", out / "run" / "recheck"):
        for old in folder.glob("*.json"):
            old.unlink()
        for old in folder.glob(".*.tmp"):
            old.unlink()
    for old in (out / "run" / "state.json",):
        if old.exists():
            old.unlink()

    checked = recheck_indices(len(specs), recheck)
    args = pytest_args(specs, out, checked, jobs, dist, tx, backend, load)
    log_path = out / "pytest.log"
    meter = _Progress(out, len(specs) + len(checked), progress)
    meter.poll()
    interrupted = timed_out = False
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen([sys.executable, "-m", "pytest", *args], cwd=out / "run",
                                env=_child_env(load), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            started = time.monotonic()
            while proc.poll() is None:
                meter.poll()
                state = _read_json(out / "run" / "state.json") or {}
                if state.get("phase") not in ("running", "finished"):
                    if time.monotonic() - started > start_timeout:
                        timed_out = True
                        _stop(proc)
                        break
                    if tx and state.get("nodes_down"):
                        # A --tx worker that dies before collecting dies again when xdist
                        # restarts it (no rig there, another Python): stop now.
                        _stop(proc)
                        break
                time.sleep(POLL_S)
        except KeyboardInterrupt:
            interrupted = True
            _stop(proc)
        finally:
            if proc.poll() is None:
                _stop(proc)
    meter.poll()
    state = _read_json(out / "run" / "state.json") or {}
    if not interrupted and tx and (timed_out or state.get("phase") == "starting"):
        # The workers never came up: a gateway that cannot be reached is the user's.
        raise UsageError(_start_failure(state, tx, proc.returncode, timed_out,
                                        start_timeout, log_path))
    reason = _never_ran(state, proc.returncode, interrupted, timed_out, start_timeout,
                        log_path)
    return _merge(specs, checked, out, reason, interrupted, jobs, dist, tx,
                  {"exit": proc.returncode, "log": str(log_path), "args": args})


def _start_failure(state: dict, tx, returncode, timed_out: bool, timeout: float,
                   log: Path) -> str:
    specs = state.get("tx") or []
    made = state.get("gateways", 0)
    which = specs[made] if made < len(specs) else None
    # xdist adds execmodel=main_thread_only// to every spec; name the user's own.
    name = next((t for t in tx if which and which.endswith(t.split("*")[-1])), None)
    name = name or ", ".join(tx)
    down = state.get("nodes_down") or []
    if timed_out:
        return (f"--tx {name}: the workers did not start within {timeout:g} s (an "
                f"unreachable host?; see {log})")
    detail = (down[-1] if down else state.get("internal_error") or _log_error(log)
              or _exit_text(returncode))
    return f"--tx {name}: cannot start a worker: {detail} (see {log})"


def _log_error(log: Path) -> str:
    """The last error line of pytest's log ("E   ...", "ERROR: ...")."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        text = re.sub(r"^INTERNALERROR>\s*", "", line).strip()
        if text.startswith("E ") or text.startswith("ERROR:"):
            return text.lstrip("E ").strip()
    return ""


def _never_ran(state: dict, returncode, interrupted: bool, timed_out: bool,
               timeout: float, log: Path) -> str:
    """Why a cell with no file has none, in one line."""
    if interrupted:
        return "never ran: the sweep was interrupted (Ctrl-C)"
    if timed_out:
        return f"never ran: the workers did not start within {timeout:g} s (see {log})"
    if state.get("summary"):
        return f"never ran: pytest-xdist stopped: {state['summary']}"
    if state.get("internal_error"):
        return f"never ran: pytest stopped on an internal error: {state['internal_error']}"
    if returncode is not None and returncode < 0:
        return f"never ran: the pytest child {_exit_text(returncode)} (see {log})"
    detail = _log_error(log)
    return f"never ran: pytest exited {returncode}{': ' + detail if detail else ''} " \
           f"(see {log})"


def _merge(specs, checked, out: Path, reason: str, interrupted: bool, jobs, dist, tx,
           child: dict) -> dict:
    cells = []
    for spec in specs:
        path = out / "cells" / file_name(spec.id)
        cell = _read_json(path) if path.exists() else None
        if cell is None:
            cell = error_cell(spec, reason if not path.exists()
                              else f"unreadable result file {path}")
            write_json(path, cell)
        elif not isinstance(cell, dict) or cell.get("cell") != spec.id:
            cell = error_cell(spec, f"result file {path} holds another cell")
            write_json(path, cell)
        cells.append(cell)
    rechecks, mismatches, unchecked = [], [], []
    for index in checked:
        cell = cells[index]
        again = _read_json(out / "run" / "recheck" / file_name(cell["cell"])) or {}
        entry = {"cell": cell["cell"], "digest": cell.get("digest"),
                 "again": again.get("again"), "equal": False,
                 "hashseed": again.get("hashseed"),
                 "worker_hashseed": again.get("worker_hashseed")}
        if cell.get("status") != "ok":
            entry["error"] = "the cell is an error: nothing to compare"
        elif not again:
            entry["error"] = reason.replace("never ran", "the re-check never ran")
            unchecked.append(entry)
        elif again.get("error") or not again.get("again"):
            entry["error"] = again.get("error") or "the re-run gave no digest"
            unchecked.append(entry)
        else:
            entry["equal"] = entry["digest"] == entry["again"]
            if not entry["equal"]:
                mismatches.append(entry)
        rechecks.append(entry)
    errors = [c for c in cells if c.get("status") != "ok"]
    why = []
    if interrupted:
        why.append("interrupted")
    for m in mismatches:
        why.append(f"determinism: {m['cell']} gave digest {m['digest']} in a worker "
                   f"and {m['again']} in a fresh process (PYTHONHASHSEED={m['hashseed']}; "
                   f"the re-checking worker's: {m['worker_hashseed']})")
    if errors:
        why.append(f"{len(errors)} of {len(cells)} cells are errors (first: "
                   f"{errors[0]['cell']}: {errors[0]['error']})")
    for u in unchecked:
        why.append(f"determinism re-check of {u['cell']} failed: {u['error']}")
    code = EXIT_INTERRUPTED if interrupted else EXIT_INTERNAL if why else EXIT_OK
    return {"cells": cells, "recheck": rechecks, "errors": len(errors),
            "mismatches": [m["cell"] for m in mismatches], "exit": code,
            "why": "; ".join(why), "jobs": jobs, "dist": dist, "tx": list(tx),
            "workers": sorted({c["worker"] for c in cells if c.get("worker")}),
            "pytest": child}


# -- the re-check's fresh process -----------------------------------------------------------------

def _recheck_main() -> int:
    """Read {"spec", "backend"} on stdin, run the cell, print its dict."""
    from rig.drive.sweep import CellSpec, run_cell

    request = json.loads(sys.stdin.read())
    try:
        cell = run_cell(CellSpec.from_dict(request["spec"]), request["backend"])
    except Exception as exc:
        print(f"run_cell raised {exception_line(exc)}", file=sys.stderr)
        return EXIT_INTERNAL
    print(json.dumps(cell))
    return EXIT_OK


if __name__ == "__main__":
    if sys.argv[1:] != ["--recheck"]:
        sys.exit("usage: python -m rig.drive.sweeprun --recheck < request.json "
                 "(rig sweep runs it; see the module's docstring)")
    sys.exit(_recheck_main())
