"""rig port-check: the same seeded op streams through real C and through the rig's core.

The C is a QEMU tree's state manager (system/ram-block-attributes.c, with the 2026
system/ram-discard-manager.c where the tree has it) or the rig's own hardened port
(rig/port/), built against the rig's QEMU stub layer (rig.drive.portbuild).  The rig's
side is this process's core (Cython or the twin) with the rollback policy of the design
the C claims to implement: by default the one that models the tree's upstream version
(10.1: ``none``, 2026: ``sources``, the port: ``full``), or any design's with
``--against``.

Each stream is a short seeded program over the manager's API as QEMU's callers use it:
1-3 listeners, each with its own section (non-zero offsets included), registered,
unregistered and re-registered; conversions of aligned ranges, mixtures, and unaligned,
empty, wrapping or out-of-range ones; listeners that refuse their next populate; replays
whose callback fails; is_populated queries; and register, unregister, state_change,
replay and query run *nested* from inside a listener's callback, as a hot-plug on another
thread does.  After every op the two sides must agree on the op's result, the bitmap, the
listener list and every listener's ordered notification log (each entry also records what
the listener saw the manager say from inside its callback), and on the ordering oracle:
rig.check.differential compares them, so a divergence reads as a core mismatch does.

The C is real code and may crash or hang: every stream runs in a worker process, and a
worker that dies (a signal, g_assert's abort) or stops answering is a divergence of its
stream, never a rig crash.  Divergences are grouped in classes (what differs in which op,
or which signal in which op), and each class's first stream is minimized, each candidate
run in a fresh fork so that a crashing candidate costs nothing but its answer, and written
as a core trace before anything is printed.

May import: rig.check, rig.trace, rig.core, rig.errors, and rig.drive.portbuild.
"""

from __future__ import annotations

import os
import pickle
import random
import select
import signal
import tempfile
import time
import traceback
from dataclasses import dataclass, field, replace
from multiprocessing import connection

from rig.check import differential
from rig.check.differential import (ARM_ERRNOS, RECORDERS, VFIO_IOVA_BASE, CoreConfig,
                                    DifferentialMismatch, format_core_op)
from rig.core import BACKEND
from rig.trace import core as core_trace
from rig.trace.minimize import write_new

#: The implementation name the C takes in rig.check.differential (and in every message).
C_IMPL = "C"
#: Streams a check runs unless told (the CI figure of issue 16's "Done when").
STREAMS_DEFAULT = 10_000
#: Conversion streams ``--builtin`` runs unless told (rig.drive.portworld).
WORLD_STREAMS_DEFAULT = 5_000
OPS_MIN, OPS_MAX = 6, 36
NBLOCKS = (4, 8, 16, 32, 64)
BLOCK_SIZES = (0x1000, 0x1000, 0x2000)
#: A stream that runs longer than this (wall clock: a guard, never part of a result) has
#: hung in the C; a normal stream takes milliseconds.
HANG_S = 30.0
#: Streams handed to a worker at a time.
CHUNK = 64
#: Candidate runs one class's minimization may spend.
MINIMIZE_RUNS = 600
#: Nesting depth a generated nested op may reach (a nest inside a nest inside an op).
NEST_DEPTH = 2

#: The QEMU function each op reaches, for the divergence report.
C_FUNCTIONS = {
    "register": "ram_discard_manager_register_listener",
    "unregister": "ram_discard_manager_unregister_listener",
    "state_change": "ram_block_attributes_state_change",
    "replay": "ram_discard_manager_replay_populated / _replay_discarded",
    "is_populated": "ram_discard_manager_is_populated",
    "arm": "(a listener's next notify_populate fails)",
    "nest": "(a listener's callback runs an op)",
}


# -- streams ------------------------------------------------------------------------------

def stream(seed: int, index: int, policy: str) -> tuple[CoreConfig, list]:
    """Stream ``index`` of ``seed``: its configuration and its ops (the same in any
    process: the generator is seeded by text, never by hash())."""
    rng = random.Random(f"rig port-check {seed} {index}")
    cfg = CoreConfig(nblocks=rng.choice(NBLOCKS), block_size=rng.choice(BLOCK_SIZES),
                     rollback=policy)
    names = rng.sample(RECORDERS, rng.randint(1, 3))
    sections = {name: _section(rng, cfg) for name in names}
    ops = [("register", name, *sections[name]) for name in names if rng.random() < 0.7]
    length = rng.randint(OPS_MIN, OPS_MAX)
    while len(ops) < length:
        ops.append(_op(rng, cfg, names, sections, 0))
    return cfg, ops


def _section(rng: random.Random, cfg: CoreConfig) -> tuple[int, int, int]:
    """A valid section of the region (what QEMU's callers register): (offset, size,
    offset_within_address_space)."""
    first = rng.randrange(cfg.nblocks)
    count = rng.randint(1, cfg.nblocks - first)
    offset = first * cfg.block_size
    oas = (VFIO_IOVA_BASE + offset if rng.random() < 0.7
           else rng.randrange(1 << 28) * cfg.block_size)
    return offset, count * cfg.block_size, oas


def _range(rng: random.Random, cfg: CoreConfig) -> tuple[int, int]:
    """A conversion range: mostly aligned and inside the region, sometimes one of the
    boundaries state_change must refuse (unaligned, empty, wrapping, past the end)."""
    bs = cfg.block_size
    first = rng.randrange(cfg.nblocks)
    offset, size = first * bs, rng.randint(1, cfg.nblocks - first) * bs
    pick = rng.randrange(24)
    if pick == 0:
        offset += bs // 2
    elif pick == 1:
        size += 0x800
    elif pick == 2:
        size = 0
    elif pick == 3:
        offset = (1 << 64) - bs
    elif pick == 4:
        size = (1 << 64) - offset if offset else (1 << 64) - bs
    elif pick == 5:
        offset = cfg.nblocks * bs
    elif pick == 6:
        size += bs
    return offset, size


def _op(rng: random.Random, cfg: CoreConfig, names: list, sections: dict, depth: int) -> tuple:
    kind = rng.randrange(100)
    name = rng.choice(names)
    if kind < 36:
        offset, size = _range(rng, cfg)
        return ("state_change", offset, size, rng.random() < 0.45)
    if kind < 48:
        section = sections[name] if rng.random() < 0.85 else _section(rng, cfg)
        return ("register", name, *section)
    if kind < 56:
        return ("unregister", name)
    if kind < 65:
        return ("arm", name, rng.choice(ARM_ERRNOS))
    if kind < 75 and depth < NEST_DEPTH:
        return ("nest", name, rng.randint(1, 3), _nested(rng, cfg, names, sections, depth + 1))
    if kind < 88:
        offset, size, _ = _section(rng, cfg)
        return ("replay", rng.random() < 0.6, offset, size, rng.randrange(4))
    offset, size, _ = _section(rng, cfg)
    if rng.random() < 0.05:
        size = 0  # (vacuously populated, except at block 0: the C's last_bit wraps)
    return ("is_populated", offset, size)


def in_contract(cfg: CoreConfig, ops) -> bool:
    """Whether every query section lies inside the region, as QEMU's callers keep it
    (past the end, the C reads beyond its bitmap: undefined, not a divergence).  Streams
    are made so; the minimizer's smaller candidates are held to it."""
    region = cfg.nblocks * cfg.block_size
    for op in ops:
        while op[0] == "nest":
            op = op[3]
        if op[0] == "replay" and op[2] + op[3] > region:
            return False
        if op[0] == "is_populated" and op[1] + op[2] > region:
            return False
    return True


def _nested(rng, cfg, names, sections, depth) -> tuple:
    while True:
        op = _op(rng, cfg, names, sections, depth)
        if op[0] in differential.NESTABLE:
            return op


# -- one stream, in the process that has the C loaded --------------------------------------

@dataclass(frozen=True)
class StreamResult:
    """What one stream gave: the ops compared (up to and including a diverging one), the
    divergence if any (``kind`` mismatch | crash | hang), and how often the C under test
    called exit() (QEMU 10.1 exits when a register replay fails; the stub records it)."""

    index: int
    ops: int
    kind: str = "ok"                 # ok | mismatch | undefined | crash | hang
    what: str | None = None          # mismatch: result | order | a state key; crash: signal
    op: str | None = None            # the diverging op's kind (rig.check.differential)
    op_index: int | None = None
    message: str = ""
    exits: int = 0
    #: Conversion streams (mode "world"): the steps each side gave up on, past the
    #: design's retry bound (world, C).
    give_ups: tuple = (0, 0)
    #: What differs, without the op it surfaced in or the listener it surfaced on
    #: (``fingerprint``); a crash's or a hang's is its signal and op.
    difference: str = ""

    @property
    def key(self) -> tuple:
        """The divergence class.  One cause surfaces in many ops (a replay's section
        differs in a replay, and in every callback that runs a nested replay), so the
        class is what differs, not where it showed: one bug, one class."""
        return (self.kind, self.difference)


# -- what differs ---------------------------------------------------------------------------

_SECTION_FIELDS = ("offset_within_region", "size", "offset_within_address_space")
_ENTRY_FIELDS = {"populate": ("section", "return code", "is_populated seen", "listed"),
                 "discard": ("section", "replay_populated seen", "listed"),
                 "nested": ("op", "result")}


def fingerprint(what: str, values: dict) -> str:
    """The first thing that differs between the rig's value (first) and the C's, named
    by its meaning: ``a replay callback's section: offset_within_address_space``, ``a
    populate notification only on the rig's side``, ``the bitmap``.  Listener names,
    op kinds and nesting are left out (see StreamResult.key)."""
    rig_value, c_value = list(values.values())[:2]
    if what == "result":
        return _result_difference(rig_value, c_value, "the op's")
    if what.startswith("log."):
        return _log_difference(rig_value, c_value)
    if what == "order":
        return f"notification order: {values.get('rule', '')}"
    return {"bitmap": "the bitmap", "listeners": "the listener list"}.get(what, what)


def _result_difference(a, b, whose: str) -> str:
    if a[0] != b[0]:
        return f"{whose} result: a return on one side, an exception on the other"
    a, b = a[1], b[1]
    if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b) == 2 \
            and isinstance(a[1], list):  # a replay: (return code, sections seen)
        if a[0] != b[0]:
            return "a replay's return code"
        return _sections_difference(a[1], b[1], "a replay callback's")
    return f"{whose} return code"


def _sections_difference(a: list, b: list, whose: str) -> str:
    for x, y in zip(a, b):
        if x != y:
            return f"{whose} section: " + ", ".join(
                name for name, u, v in zip(_SECTION_FIELDS, x, y) if u != v)
    return f"{whose} number of sections ({'more' if len(a) > len(b) else 'fewer'} on " \
           "the rig's side)"


def _log_difference(a: list, b: list) -> str:
    """Notifications group by kind: a listener told of other blocks, or not told at all,
    is one symptom of the same walk (which blocks a notification covers), however the
    entries happen to line up."""
    for x, y in zip(a, b):
        if x == y:
            continue
        if x[0] == y[0] == "nested":
            return "a nested op" if x[1] != y[1] else _result_difference(x[2], y[2],
                                                                         "a nested op's")
        if x[0] != y[0]:
            kinds = {x[0], y[0]} - {"nested"}
            return (f"the {kinds.pop()} notifications a listener gets" if len(kinds) == 1
                    else "the populate and discard notifications a listener gets")
        if x[1] != y[1]:
            return f"the {x[0]} notifications a listener gets"
        for name, u, v in zip(_ENTRY_FIELDS[x[0]][1:], x[2:], y[2:]):
            if u != v:
                if name == "return code":
                    return "a populate callback's return code"
                return f"what a listener sees from inside its {x[0]} callback ({name})"
    longer = a if len(a) > len(b) else b
    kind = longer[min(len(a), len(b))][0]
    if kind == "nested":
        return "a nested op that runs on one side only"
    return f"the {kind} notifications a listener gets"


class _OutOfBounds(Exception):
    def __init__(self, index: int, op: tuple, message: str):
        super().__init__(message)
        self.index, self.op, self.message = index, op, message


class _Loaded:
    """The C under test, loaded in this process and installed as rig.check.differential's
    ``C`` manager; the managers it made, for the exit() count."""

    def __init__(self, library: str):
        from rig.drive import portbuild

        self.lib = portbuild.load(library)
        self.made: list = []

        def factory(cfg: CoreConfig):
            rba = portbuild.CRamBlockAttributes(self.lib, cfg.nblocks * cfg.block_size,
                                                cfg.block_size)
            self.made.append(rba)
            return rba, portbuild.CRamDiscardListener

        differential.MANAGERS[C_IMPL] = factory

    def compare(self, index: int, cfg: CoreConfig, ops: list, on_op=None) -> StreamResult:
        """Run ``ops`` on the rig's core and on the C; the first disagreement, if any.
        A bitmap access past the end of the C's bitmap (the stub layer checks every
        one: undefined behaviour in QEMU, where it may read anything) ends the stream
        as a divergence of its own, at the op that made it."""
        self.made.clear()
        read = [0]  # reports already looked at (one manager per stream)

        def observe(i, op, results, states):
            for rba in self.made:
                new = rba.reports(read[0])
                read[0] += len(new)
                oob = [r.message for r in new if r.kind == "oob"]
                if oob:
                    raise _OutOfBounds(i, op, oob[0])
            if on_op:
                on_op(i + 1)  # (op i+1 is about to run: a crash names the op it died in)

        if on_op:
            on_op(0)
        try:
            differential.run(ops, cfg, (BACKEND, C_IMPL), observe=observe)
            result = StreamResult(index, len(ops))
        except DifferentialMismatch as exc:
            result = StreamResult(index, exc.index + 1, "mismatch", exc.what,
                                  exc.op[0], exc.index, str(exc),
                                  difference=fingerprint(exc.what, exc.values))
        except _OutOfBounds as exc:
            result = StreamResult(index, exc.index + 1, "undefined", "out-of-bounds",
                                  exc.op[0], exc.index,
                                  f"op {exc.index} {format_core_op(exc.op)}: the C accessed "
                                  f"its bitmap out of bounds\n  C: {exc.message}",
                                  difference=f"a bitmap access out of bounds in {exc.op[0]}")
        exits = sum(1 for rba in self.made for kind, _ in rba.reports() if kind == "exit")
        for rba in self.made:
            rba.destroy()
        self.made.clear()
        return replace(result, exits=exits)


# -- workers ------------------------------------------------------------------------------

def _world_compare(lib, seed: int, index: int) -> StreamResult:
    """Conversion stream ``index``: the C port of hardened's kvm_convert_memory (with the
    C state manager under it) against the Hardened design on a real World
    (rig.drive.portworld)."""
    from rig.drive import portworld

    cfg, ops = portworld.stream(seed, index)
    try:
        got = portworld.compare(cfg, ops, lib)
    except portworld.PortWorldMismatch as exc:
        return StreamResult(index, exc.index + 1, "mismatch", exc.what,
                            portworld.op_kind(exc.op), exc.index, str(exc),
                            difference=f"kvm_convert_memory: {exc.what}")
    return StreamResult(index, got["ops"], give_ups=got["give_ups"])


def _worker(conn, library: str, seed: int, policy: str, stderr_path: str,
            mode: str = "core") -> None:
    """A worker: streams come in as index lists; each is announced before it runs, so
    that a death (the C crashed) names its stream."""
    _quiet_stderr(stderr_path)
    if mode == "world":
        from rig.drive import portworld

        lib = portworld.load(library)
        lib.install_crash_handler()
        run = lambda index: _world_compare(lib, seed, index)  # noqa: E731
    else:
        loaded = _Loaded(library)
        loaded.lib.install_crash_handler()
        run = lambda index: loaded.compare(index, *stream(seed, index, policy))  # noqa: E731
    while True:
        job = conn.recv()
        if job is None:
            return
        for index in job:
            conn.send(("start", index))
            try:
                conn.send(("done", run(index)))
            except Exception:  # noqa: BLE001 - a bug of the rig, reported as one (exit 3)
                conn.send(("error", index, traceback.format_exc()))
                return


def _quiet_stderr(path: str) -> None:
    """The C's own messages (error_report, g_assert) go to a file the parent reads when
    the worker dies, not to the user's terminal."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 2)
    os.close(fd)


def _tail(path: str, lines: int = 6) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:]).strip()
    except OSError:
        return ""


def _signal_name(exitcode: int | None) -> str:
    if exitcode is None:
        return "hang"
    if exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit {exitcode}"


class _Slot:
    """One worker process and what it is doing."""

    def __init__(self, ctx, library, seed, policy, workdir, number, mode):
        self.stderr = os.path.join(workdir, f"worker-{number}.stderr")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, library, seed, policy,
                                                      self.stderr, mode), daemon=True)
        self.proc.start()
        child.close()
        self.job: list = []
        self.running: int | None = None
        self.since = time.monotonic()

    def give(self, job: list) -> None:
        self.job = list(job)
        self.since = time.monotonic()
        self.conn.send(job)

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(2)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


class RigError(RuntimeError):
    """A bug of the rig itself (a Python exception in a worker): exit 3."""


def run_streams(library: str, seed: int, policy: str, streams: int, jobs: int = 1,
                progress=None, mode: str = "core") -> list[StreamResult]:
    """Every stream's result, in stream order, the same with any ``jobs``.  ``mode``
    ``core``: the state manager's streams against the core with ``policy``; ``world``:
    the conversion streams of rig.drive.portworld (``library`` built by it)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    pending = list(range(streams))
    results: dict[int, StreamResult] = {}
    with tempfile.TemporaryDirectory(prefix="rig-port-check-") as workdir:
        made = 0
        slots: list[_Slot] = []

        def spawn() -> _Slot:
            nonlocal made
            made += 1
            return _Slot(ctx, library, seed, policy, workdir, made, mode)

        try:
            slots = [spawn() for _ in range(max(1, min(jobs, streams or 1)))]
            for slot in slots:
                if pending:
                    slot.give(pending[:CHUNK])
                    del pending[:CHUNK]
            while any(slot.job for slot in slots):
                busy = {slot.conn: slot for slot in slots if slot.job}
                ready = connection.wait(list(busy), timeout=1.0)
                now = time.monotonic()
                for conn in ready:
                    slot = busy[conn]
                    try:
                        msg = conn.recv()
                    except (EOFError, OSError):
                        msg = ("died",)
                    if msg[0] == "start":
                        slot.running, slot.since = msg[1], now
                    elif msg[0] == "done":
                        results[msg[1].index] = msg[1]
                        slot.job.remove(msg[1].index)
                        slot.running = None
                        if progress:
                            progress(len(results), streams)
                        if not slot.job and pending:
                            slot.give(pending[:CHUNK])
                            del pending[:CHUNK]
                    elif msg[0] == "error":
                        raise RigError(f"stream {msg[1]}: the rig failed:\n{msg[2]}")
                    else:  # died: the C under test crashed the worker
                        slots[slots.index(slot)] = _replace_dead(
                            slot, results, pending, spawn, progress, streams, None)
                for slot in list(slots):
                    if slot.job and slot.running is not None and now - slot.since > HANG_S:
                        slot.proc.kill()
                        slot.proc.join()
                        slots[slots.index(slot)] = _replace_dead(
                            slot, results, pending, spawn, progress, streams, "hang")
        finally:
            for slot in slots:
                slot.stop()
    died = [r for r in results.values() if r.kind == "crash"]
    if died and mode == "core":
        # A death names its stream, not its op: run each such stream again in a fresh
        # fork, which says the op (and a crash that does not come back says so).
        probe = Probe(library)
        for r in died:
            again = probe.run(*stream(seed, r.index, policy))
            results[r.index] = replace(again, index=r.index) if again.kind == "crash" else \
                replace(r, difference=f"{r.what} (not repeated in a fresh process)")
    return [results[i] for i in range(streams)]


def _replace_dead(slot: _Slot, results, pending, spawn, progress, streams, how) -> _Slot:
    """Record the dead worker's stream as a crash (or a hang), give the rest of its job
    to a fresh worker."""
    slot.proc.join(5)
    index = slot.running if slot.running is not None else (slot.job[0] if slot.job else None)
    if index is not None:
        what = how or _signal_name(slot.proc.exitcode)
        results[index] = StreamResult(index, 0, "hang" if how else "crash", what, None, None,
                                      _tail(slot.stderr),
                                      difference="no return" if how else what)
        if progress:
            progress(len(results), streams)
    rest = [i for i in slot.job if i != index and i not in results]
    fresh = spawn()
    if rest:
        fresh.give(rest)
    elif pending:
        fresh.give(pending[:CHUNK])
        del pending[:CHUNK]
    return fresh


# -- one candidate, in a fresh fork ---------------------------------------------------------

class Probe:
    """Runs one op list in a forked child of a process that has the C loaded, so that a
    crash or a hang of the C is an answer, not the end of the check."""

    def __init__(self, library: str):
        self.library = library
        self.loaded = _Loaded(library)

    def run(self, cfg: CoreConfig, ops: list) -> StreamResult:
        read, write = os.pipe()
        err = tempfile.NamedTemporaryFile(prefix="rig-port-probe-", delete=False)
        err.close()
        pid = os.fork()
        if pid == 0:  # the child: run, answer, leave without Python's cleanup
            code = 0
            try:
                os.close(read)
                _quiet_stderr(err.name)
                self.loaded.lib.install_crash_handler()
                last = [0]

                def on_op(i):
                    last[0] = i
                    os.write(write, b"%d\n" % i)

                call = differential._call

                def traced(system, op):  # (a nested op: +kind before, - after)
                    os.write(write, b"+%s\n" % op[0].encode())
                    try:
                        return call(system, op)
                    finally:
                        os.write(write, b"-\n")

                differential._call = traced
                result = self.loaded.compare(-1, cfg, ops, on_op)
                os.write(write, b"R" + pickle.dumps(result))
            except BaseException:  # noqa: BLE001
                code = 3
            finally:
                os._exit(code)
        os.close(write)
        data = b""
        deadline = time.monotonic() + HANG_S
        hung = False
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([read], [], [], max(left, 0))
            if not ready:
                hung = True
                os.kill(pid, signal.SIGKILL)
                break
            chunk = os.read(read, 1 << 16)
            if not chunk:
                break
            data += chunk
        os.close(read)
        _, status = os.waitpid(pid, 0)
        frames, stderr = _crash_lines(err.name)
        os.unlink(err.name)
        if b"R" in data:
            return pickle.loads(data[data.index(b"R") + 1:])
        op_index, where = _where(data, ops)
        op = ops[op_index][0] if op_index < len(ops) else None
        if hung:
            return StreamResult(-1, op_index + 1, "hang", "hang", op, op_index, stderr,
                                difference=f"no return from {where}")
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        if code == 3:
            raise RigError("a probe of the C failed in the rig itself")
        sites = crash_sites(frames, self.library)
        message = "\n".join([f"the C died of {_signal_name(code)} in op {op_index} "
                             f"{format_core_op(ops[op_index])}" if op_index < len(ops)
                             else f"the C died of {_signal_name(code)}"]
                            + [f"  at {fn} ({where_in})" for fn, where_in in sites[:6]]
                            + [f"  C: {line}" for line in stderr])
        # The class is the innermost function of the code under test, however the
        # streams got there (an unregister nested in a replay or in a state_change).
        site = sites[0][0] if sites else where
        return StreamResult(-1, op_index + 1, "crash", _signal_name(code), op, op_index,
                            message, difference=f"{_signal_name(code)} in {site}")


def _crash_lines(path: str) -> tuple[list[str], list[str]]:
    """A probe's stderr: the crash handler's frame lines, and the last lines of what
    the C said (g_assert's message, error_report's) without them."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return [], []
    frames = [line for line in lines if line.startswith("rig-frame ")]
    return frames, [line for line in lines if not line.startswith("rig-frame ")][-4:]


#: The harness's own C: a frame in it is not where the code under test failed.
_HARNESS_FILES = ("qemu-stubs.c", "harness.c", "crash-report.c")


def crash_sites(frames: list[str], library: str) -> list[tuple[str, str]]:
    """(function, file:line) of each frame in the code under test, innermost first,
    named by addr2line from the library's debug information (it is built with -g);
    empty when addr2line is missing or names nothing."""
    import shutil
    import subprocess

    real = os.path.realpath(library)
    offsets = []
    for line in frames:
        parts = line.split()
        if len(parts) == 3 and os.path.realpath(parts[1]) == real:
            offsets.append(parts[2])
    tool = shutil.which("addr2line")
    if not offsets or tool is None:
        return []
    proc = subprocess.run([tool, "-f", "-e", real, *offsets], capture_output=True,
                          text=True)
    out = proc.stdout.splitlines()
    sites = []
    for fn, where in zip(out[0::2], out[1::2]):
        name = os.path.basename(where.split(":")[0])
        if fn == "??" or name in _HARNESS_FILES or where.startswith("??") \
                or "/include/" in where:
            continue
        sites.append((fn, f"{name}:{where.rsplit(':', 1)[-1].split()[0]}"))
    return sites


def _where(data: bytes, ops: list) -> tuple[int, str]:
    """The op a probe died in, from its progress lines: the top-level op's index, and
    the innermost op that was running with the one it was nested in (``an unregister
    nested in an unregister``): where a crash is, whichever top-level op got there."""
    index, stack = 0, []
    for line in data.split(b"\n"):
        if line.isdigit():
            index = int(line)
            stack = [ops[index][0]] if index < len(ops) else []
        elif line.startswith(b"+"):
            stack.append(line[1:].decode())
        elif line == b"-" and len(stack) > 1:
            stack.pop()
    if len(stack) > 1:
        return index, f"{_an(stack[-1])} nested in {_an(stack[-2])}"
    return index, stack[0] if stack else "?"


def _an(kind: str) -> str:
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


class PortMinimizer(core_trace.CoreMinimizer):
    """rig.trace.core's minimizer, with every candidate run through a Probe and the
    rollback policy held (it is the C's, not a knob)."""

    def __init__(self, probe: Probe, cfg: CoreConfig, ops: list, target: StreamResult,
                 budget: int = MINIMIZE_RUNS):
        self.probe = probe
        self.budget = budget
        self.runs = 0
        self.target_key = target.key
        self.trace = core_trace.CoreTrace(cfg, list(ops), None, [])
        self.result = _AsRun(target)

    def run(self, config, ops):
        self.runs += 1
        return _AsRun(self.probe.run(config, ops))

    def try_(self, config, ops) -> bool:
        if self.runs >= self.budget or not ops or not in_contract(config, ops):
            return False
        result = self.run(config, ops)
        if result.stream.key == self.target_key:
            self.trace = core_trace.CoreTrace(config, list(ops), None, [])
            self.result = result
            return True
        return False

    def simplify_header(self) -> bool:
        changed = False
        cfg = self.trace.config
        if cfg.block_size != 0x1000:
            changed |= self.try_(replace(cfg, block_size=0x1000), self.trace.ops)
        while self.trace.config.nblocks > 1 and self.try_(
                replace(self.trace.config, nblocks=self.trace.config.nblocks // 2),
                self.trace.ops):
            changed = True
        return changed

    def minimize(self):
        for _ in range(50):
            before = core_trace.serialize(self.trace)
            self.cut_tail()
            self.drop_ops()
            self.unnest()
            self.shrink_args()
            self.simplify_header()
            if core_trace.serialize(self.trace) == before or self.runs >= self.budget:
                break
        return self.trace


@dataclass
class _AsRun:
    """A StreamResult in the shape CoreMinimizer's passes read (``.outcome.op_index``)."""

    stream: StreamResult

    @property
    def outcome(self):
        return self.stream


# -- the check ------------------------------------------------------------------------------

@dataclass
class Divergence:
    """One class: every stream that diverged the same way, its first stream minimized."""

    kind: str
    difference: str
    streams: list = field(default_factory=list)
    #: The op kinds it surfaced in (the first diverging op of each of its streams).
    surfaced: list = field(default_factory=list)
    minimized: core_trace.CoreTrace | None = None
    minimized_result: StreamResult | None = None
    original_ops: int = 0
    runs: int = 0
    path: str | None = None

    @property
    def signature(self) -> str:
        """``port mismatch: a replay callback's section: offset_within_address_space``."""
        return f"port {self.kind}: {self.difference}"


@dataclass
class WorldReport:
    """The conversion streams of ``--builtin``: the C port of kvm_convert_memory."""

    streams: int
    ops: int
    give_ups: tuple          # (world, C)
    divergences: list


@dataclass
class Report:
    target: str            # what was checked, in one line
    flavour: str
    policy: str
    design: str | None
    decided_by: str        # upstream | design
    seed: int
    streams: int
    ops: int
    exits: int
    exit_streams: int
    divergences: list
    world: WorldReport | None = None

    def to_json(self) -> dict:
        world = self.world
        return {
            "conversion": None if world is None else {
                "streams": world.streams, "ops": world.ops, "agree": not world.divergences,
                "give_ups": {"world": world.give_ups[0], "C": world.give_ups[1]},
                "divergences": [{"signature": d.signature, "streams": len(d.streams),
                                 "first_stream": d.streams[0], "reproducer": d.path,
                                 "detail": d.minimized_result.message}
                                for d in world.divergences]},
            "target": self.target, "flavour": self.flavour, "policy": self.policy,
            "design": self.design, "decided_by": self.decided_by, "seed": self.seed,
            "streams": self.streams, "ops": self.ops,
            "c_exit_calls": self.exits, "c_exit_streams": self.exit_streams,
            "agree": not self.divergences and not (world and world.divergences),
            "divergences": [{
                "signature": d.signature, "kind": d.kind, "difference": d.difference,
                "surfaced_in": d.surfaced, "what": d.minimized_result.what,
                "op": d.minimized_result.op,
                "streams": len(d.streams), "first_stream": d.streams[0],
                "trace": d.path, "ops": [format_core_op(o) for o in d.minimized.ops],
                "original_ops": d.original_ops, "minimize_runs": d.runs,
                "detail": d.minimized_result.message,
                "c_function": C_FUNCTIONS.get(d.minimized_result.op or "", None),
            } for d in self.divergences],
        }


def classify(results: list[StreamResult]) -> list[Divergence]:
    """Divergence classes in the order their first stream comes."""
    classes: dict[tuple, Divergence] = {}
    for r in results:
        if r.kind == "ok":
            continue
        d = classes.get(r.key)
        if d is None:
            d = classes[r.key] = Divergence(r.kind, r.difference)
        d.streams.append(r.index)
        if r.op and r.op not in d.surfaced:
            d.surfaced.append(r.op)
    return list(classes.values())


def minimize_class(probe: Probe, d: Divergence, seed: int, policy: str) -> None:
    cfg, ops = stream(seed, d.streams[0], policy)
    first = probe.run(cfg, ops)
    if first.kind == "ok":
        # (a crash the fresh fork does not repeat: kept whole, and said so)
        d.minimized, d.minimized_result = core_trace.CoreTrace(cfg, ops, None, []), first
        d.original_ops = len(ops)
        return
    ops = ops[:first.op_index + 1] if first.op_index is not None else ops
    m = PortMinimizer(probe, cfg, ops, first)
    m.minimize()
    d.minimized, d.minimized_result, d.runs = m.trace, m.result.stream, m.runs
    d.original_ops = len(ops)


def reproducer_text(d: Divergence, header: list[str]) -> str:
    """The minimized stream as a core trace: it replays on the rig's core (``rig
    replay``: the rig's side), and on both sides with ``rig port-check ... --replay``."""
    r = d.minimized_result
    comments = list(header) + [f"divergence: {d.signature} ({len(d.streams)} stream"
                               f"{'s' if len(d.streams) > 1 else ''}, the first {d.streams[0]}"
                               f"; minimized from {d.original_ops} to "
                               f"{len(d.minimized.ops)} ops in {d.runs} runs)"]
    comments += [f"  {line.strip()}" for line in r.message.splitlines()[:8] if line.strip()]
    trace = core_trace.CoreTrace(d.minimized.config, d.minimized.ops, None, comments)
    return core_trace.serialize(trace)


def write_reproducer(d: Divergence, header: list[str], out: str, label: str) -> str:
    text = reproducer_text(d, header)
    digest = core_trace.canonical_hash(core_trace.CoreTrace(d.minimized.config,
                                                            d.minimized.ops))[:8]
    r = d.minimized_result
    what = "-".join(w for w in (r.kind, r.what, r.op) if w)
    os.makedirs(out, exist_ok=True)
    path, _ = write_new(os.path.join(out, f"port-{label}-{what}-{digest}.trace"), text)
    return path


def world_reproducer(d: Divergence, seed: int, out: str) -> str:
    """A conversion stream's divergence: its ops up to the diverging one, with the seed
    and index that regenerate it (``rig.drive.portworld.stream``).  Conversion streams
    are not minimized (their ops carry fault schedules the core minimizer does not
    know); the stream is written whole up to the divergence."""
    from rig.drive import portworld

    index = d.streams[0]
    cfg, ops = portworld.stream(seed, index)
    first = d.minimized_result
    ops = ops[:first.op_index + 1] if first.op_index is not None else ops
    lines = [f"# gmem-rig port-check conversion stream {index} of seed {seed} "
             f"(rig.drive.portworld.stream({seed}, {index}))",
             f"# {cfg}", f"# divergence: {d.signature} ({len(d.streams)} streams)"]
    lines += [f"#   {line.strip()}" for line in first.message.splitlines()[:8]]
    lines += [portworld.format_op_any(op) for op in ops]
    os.makedirs(out, exist_ok=True)
    path, _ = write_new(os.path.join(out, f"port-world-{seed}-{index}.txt"),
                        "\n".join(lines) + "\n")
    return path


def replay(library: str, path: str) -> StreamResult:
    """One core trace through both sides, in a fresh fork."""
    trace = core_trace.load(path)
    return Probe(library).run(trace.config, trace.ops)
