"""Build QEMU's state manager C (or the rig's port of it) against the rig's stub layer,
and drive it from Python with the core's API (issue 16, the port bridge).

Three flavours of the C, told apart by the text of ``system/ram-block-attributes.c``:

``10.1``      QEMU 10.1: RamBlockAttributes implements the RamDiscardManager interface
              (register_listener is void and exits the process when the replay fails).
``2026``      the multi-source manager (patchew 2026): ram-block-attributes.c is a
              RamDiscardSource and ``system/ram-discard-manager.c`` is the manager.
``hardened``  the rig's port (rig/port/ram-block-attributes.c, or a tree patched with
              it): the 10.1 layout, register_listener returns the replay's errno.

``find_sources`` reads a QEMU tree, ``builtin_sources`` gives rig/port's port; ``build``
compiles the files under test with ``rig/port/qemu-stubs.c`` (our stub layer: headers in
``rig/port/include/``) and ``rig/port/harness.c`` into a shared library, cached by the
hash of every input; ``load`` opens it; :class:`CRamBlockAttributes` wraps one manager
with the API of ``rig.core``'s ``RamBlockAttributes``, so that rig/check/differential.py's
recorders run on it unchanged (its listeners subclass :class:`CRamDiscardListener`).

May import: the standard library, ctypes, rig.core.types and rig.errors.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from rig.core.types import MemoryRegionSection
from rig.errors import EINVAL, ENOENT, UsageError

#: rig/port: the stub layer, the harness and the hardened port (package data).
PORT_DIR = Path(__file__).resolve().parents[1] / "port"
INCLUDE_DIR = PORT_DIR / "include"
FLAVOURS = ("10.1", "2026", "hardened")
#: The rig rollback policy each flavour is compared with by default.
POLICY = {"10.1": "none", "2026": "sources", "hardened": "full"}
#: The macro that selects a flavour's layout in the stub headers.
FLAVOUR_MACRO = {"10.1": "RIG_QEMU_FLAVOUR_10_1", "2026": "RIG_QEMU_FLAVOUR_2026",
                 "hardened": "RIG_QEMU_FLAVOUR_HARDENED"}
#: The flags every flavour is built with (gcc >= 14 makes the last two errors by
#: default; they are errors here on every compiler, so an old gcc fails where a new one
#: would).  ``-Wl,-z,defs``: a symbol nobody defines fails at link time, by name, rather
#: than when the library is loaded.
CFLAGS = ("-std=gnu11", "-O1", "-g", "-fPIC", "-shared", "-Wall",
          "-Werror=implicit-function-declaration", "-Werror=incompatible-pointer-types",
          "-Wl,-z,defs")
#: gcc -O1 warns that the 2026 manager's replay_source_by_state may use ``run_start``
#: uninitialised; it is only read while ``in_run`` is set, which sets it.  Upstream code
#: is compiled unchanged, so the false positive is silenced, for gcc only.
GCC_ONLY_FLAGS = ("-Wno-maybe-uninitialized",)
CACHE_ENV = "RIG_PORT_CACHE"
LIBRARY_NAME = "libgmem-port.so"
_U64 = (1 << 64) - 1
_HARDENED_RE = re.compile(r"\bint\s+ram_block_attributes_rdm_register_listener\s*\(")


@dataclass(frozen=True)
class Sources:
    """The C under test: ``files`` (compiled in this order), the ``flavour`` their text
    says, the tree's ``VERSION`` text (``rig-port`` for the builtin port) and the tree
    (None for the builtin port)."""

    files: tuple
    flavour: str
    version: str
    root: Path | None = None


def find_sources(qemu_src) -> Sources:
    """The state manager files of the QEMU tree ``qemu_src`` and their flavour."""
    root = Path(qemu_src)
    version_file = root / "VERSION"
    if not version_file.is_file() or not (root / "system").is_dir():
        raise UsageError(f"--qemu-src {qemu_src}: not a QEMU source tree (no VERSION file)"
                         if not version_file.is_file() else
                         f"--qemu-src {qemu_src}: not a QEMU source tree (no system/ folder)")
    version = version_file.read_text(errors="replace").strip()
    rba = root / "system" / "ram-block-attributes.c"
    rdm = root / "system" / "ram-discard-manager.c"
    if not rba.is_file():
        raise UsageError(f"--qemu-src {qemu_src}: no system/ram-block-attributes.c (QEMU "
                         f"{version} predates it: QEMU < 10.1 has none)")
    text = rba.read_text(errors="replace")
    if "RamDiscardSource" in text:
        if not rdm.is_file():
            raise UsageError(f"--qemu-src {qemu_src}: system/ram-block-attributes.c is a "
                             "RamDiscardSource (the 2026 multi-source manager) but there "
                             "is no system/ram-discard-manager.c")
        return Sources((rdm, rba), "2026", version, root)
    flavour = "hardened" if _HARDENED_RE.search(text) else "10.1"
    return Sources((rba,), flavour, version, root)


def builtin_sources() -> Sources:
    """rig/port's hardened port of the state manager."""
    path = PORT_DIR / "ram-block-attributes.c"
    if not path.is_file():
        raise UsageError(f"{path}: the rig's hardened port is missing (a broken install?)")
    return Sources((path,), "hardened", "rig-port", None)


#: The C compiled into every library besides the files under test.
HARNESS_SOURCES = (PORT_DIR / "qemu-stubs.c", PORT_DIR / "harness.c",
                   PORT_DIR / "crash-report.c")


def support_files() -> list[Path]:
    """Every file of the stub layer and the harness (part of every build's key)."""
    headers = sorted(p for p in INCLUDE_DIR.rglob("*.h") if p.is_file())
    return [*headers, PORT_DIR / "harness.h", *HARNESS_SOURCES]


def find_compiler() -> list[str]:
    """The C compiler command: ``$CC`` (split as a shell would), else cc, gcc, clang."""
    cc = os.environ.get("CC", "").strip()
    candidates = [shlex.split(cc)] if cc else [["cc"], ["gcc"], ["clang"]]
    for cmd in candidates:
        path = shutil.which(cmd[0])
        if path:
            return [path, *cmd[1:]]
    if cc:
        raise UsageError(f"no C compiler found (CC={cc} is not on PATH; set CC or "
                         "apt-get install gcc)")
    raise UsageError("no C compiler found (set CC or apt-get install gcc)")


_VERSIONS: dict = {}


def _compiler_version(cmd: list[str]) -> str:
    """``cc --version``'s first line, once per compiler binary (path, size, mtime)."""
    st = os.stat(cmd[0])
    key = (tuple(cmd), st.st_size, st.st_mtime_ns)
    if key not in _VERSIONS:
        proc = subprocess.run([*cmd, "--version"], capture_output=True, text=True,
                              env=_compiler_env())
        out = (proc.stdout or proc.stderr).strip().splitlines()
        _VERSIONS[key] = out[0] if out else f"(no version: exit {proc.returncode})"
    return _VERSIONS[key]


def _compiler_env() -> dict:
    env = dict(os.environ)
    env["LC_ALL"] = "C"  # ASCII quotes in diagnostics, which _diagnose parses
    return env


def _flags(cmd: list[str], version: str, flavour: str) -> list[str]:
    flags = [*CFLAGS, f"-D{FLAVOUR_MACRO[flavour]}=1", f"-I{INCLUDE_DIR}", f"-I{PORT_DIR}"]
    if "clang" not in version.lower():
        flags += GCC_ONLY_FLAGS
    return flags


def cache_root(cache_dir=None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "gmem-rig" / "port"


def build_key(sources: Sources, cmd: list[str], version: str) -> str:
    """sha256 over the files under test, the stub layer and harness, the compiler
    (command, version) and the flags."""
    h = hashlib.sha256()
    for kind, paths in (("src", sources.files), ("support", support_files())):
        for path in paths:
            path = Path(path)
            h.update(f"{kind}:{path.name}\0".encode() + path.read_bytes() + b"\0")
    for part in (sources.flavour, *cmd, version, *_flags(cmd, version, sources.flavour)):
        h.update(part.encode() + b"\0")
    return h.hexdigest()


def build(sources: Sources, cache_dir=None) -> Path:
    """The shared library of ``sources`` (built once per key; later calls with the same
    inputs return the cached library without running the compiler)."""
    cmd = find_compiler()
    version = _compiler_version(cmd)
    key = build_key(sources, cmd, version)
    root = cache_root(cache_dir)
    final = root / f"{sources.flavour}-{key[:20]}"
    library = final / LIBRARY_NAME
    if library.is_file():
        return library
    try:
        root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".build-{sources.flavour}-", dir=root))
    except OSError as exc:
        raise UsageError(f"cannot create the port build cache {root} ({exc.strerror}): "
                         f"set {CACHE_ENV} to a writable folder") from None
    try:
        # Copies, so that a quoted #include "trace.h" in a file under test finds the
        # stub layer's (the QEMU tree's own system/trace.h includes generated files).
        names = {}
        for path in [*sources.files, *HARNESS_SOURCES]:
            copy = work / Path(path).name
            shutil.copyfile(path, copy)
            names[copy.name] = Path(path)
        proc = subprocess.run(
            [*cmd, *_flags(cmd, version, sources.flavour), "-o", LIBRARY_NAME, *names],
            cwd=work, capture_output=True, text=True, env=_compiler_env())
        if proc.returncode != 0:
            raise UsageError(_diagnose(proc.stderr or proc.stdout, names, sources))
        (work / "KEY").write_text(key + "\n")
        try:
            os.rename(work, final)
        except OSError:
            if not library.is_file():  # (another process won the race: use its build)
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return library


_MISSING = (
    re.compile(r"implicit declaration of function '([A-Za-z_]\w*)'"),
    re.compile(r"call to undeclared function '([A-Za-z_]\w*)'"),
    re.compile(r"unknown type name '([A-Za-z_]\w*)'"),
    re.compile(r"'([A-Za-z_]\w*)' undeclared"),
    re.compile(r"use of undeclared identifier '([A-Za-z_]\w*)'"),
    re.compile(r"has no member named '([A-Za-z_]\w*)'"),
    re.compile(r"no member named '([A-Za-z_]\w*)'"),
    re.compile(r"undefined reference to [`']([A-Za-z_]\w*)'"),
    re.compile(r"undefined symbol: ([A-Za-z_]\w*)"),
)
_ERROR_LINE = re.compile(r"^(?P<file>[^:\s]+):(?P<line>\d+):(?:\d+:)?\s*(?:fatal )?error:")


def _diagnose(output: str, names: dict, sources: Sources) -> str:
    """One line: the file that does not compile, the first missing symbol, and the
    compiler's first error line."""
    lines = output.splitlines()
    first_error = next((ln for ln in lines if "error" in ln), lines[0] if lines else "")
    missing = None
    for ln in lines:
        for pattern in _MISSING:
            m = pattern.search(ln)
            if m:
                missing = m.group(1)
                break
        if missing:
            break
    m = _ERROR_LINE.match(first_error)
    culprit = names.get(Path(m.group("file")).name) if m else None
    if culprit is None:
        culprit = sources.files[-1] if len(sources.files) == 1 else None
    where = str(culprit) if culprit else ", ".join(str(p) for p in sources.files)
    what = f"missing symbol '{missing}'" if missing else "compile error"
    return (f"{where}: does not compile against the rig's QEMU stub layer "
            f"({sources.flavour} flavour): {what}: {first_error.strip()}")


# -- the library ------------------------------------------------------------------------

HOOK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_uint64,
                        ctypes.c_uint64, ctypes.c_uint64)
REPLAY = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64)
SLOTS = 8
#: rig-stubs.h's report kinds.
REPORT_KINDS = ("error", "exit", "warn", "info", "oob")


class CLibrary:
    """A loaded port library: the ctypes functions, with their types, and its flavour."""

    def __init__(self, path):
        self.path = Path(path)
        try:
            lib = ctypes.CDLL(str(self.path))
        except OSError as exc:
            m = re.search(r"undefined symbol: (\w+)", str(exc))
            raise UsageError(f"{self.path}: cannot be loaded" +
                             (f": missing symbol '{m.group(1)}'" if m else f" ({exc})")) \
                from None
        u64, c_int, vp = ctypes.c_uint64, ctypes.c_int, ctypes.c_void_p
        sig = {
            "rig_h_flavour": (ctypes.c_char_p, []),
            "rig_h_create": (vp, [u64, u64]),
            "rig_h_destroy": (None, [vp]),
            "rig_h_set_hook": (None, [vp, HOOK]),
            "rig_h_register": (c_int, [vp, c_int, ctypes.c_bool, u64, u64, u64]),
            "rig_h_unregister": (c_int, [vp, c_int]),
            "rig_h_state_change": (c_int, [vp, u64, u64, ctypes.c_bool]),
            "rig_h_is_populated": (c_int, [vp, u64, u64, u64]),
            "rig_h_replay": (c_int, [vp, ctypes.c_bool, u64, u64, u64, REPLAY]),
            "rig_h_listeners": (c_int, [vp, ctypes.POINTER(c_int), c_int]),
            "rig_h_bitmap": (vp, [vp, ctypes.POINTER(u64)]),
            "rig_h_report_count": (ctypes.c_size_t, [vp]),
            "rig_h_report": (c_int, [vp, ctypes.c_size_t, ctypes.POINTER(c_int),
                                     ctypes.POINTER(c_int), ctypes.POINTER(ctypes.c_char_p)]),
            "rig_h_reports_clear": (None, [vp]),
            "rig_h_install_crash_handler": (None, []),
        }
        for name, (restype, argtypes) in sig.items():
            fn = getattr(lib, name)
            fn.restype = restype
            fn.argtypes = argtypes
            if name != "rig_h_flavour":
                setattr(self, name[len("rig_h_"):], fn)
        self.lib = lib
        #: "10.1", "2026" or "hardened": the layout the library was built for.
        self.flavour = lib.rig_h_flavour().decode()


_LOADED: dict = {}


def load(path) -> CLibrary:
    """The library at ``path``, loaded once per process (a library cannot be unloaded
    safely while ctypes callbacks into it may exist)."""
    key = str(Path(path).resolve())
    if key not in _LOADED:
        _LOADED[key] = CLibrary(key)
    return _LOADED[key]


# -- the adapter ------------------------------------------------------------------------


class Report(NamedTuple):
    """What the C under test reported: ``kind`` is error (error_report), exit (exit(),
    recorded and not fatal; the message is ``exit(STATUS)``), warn, info, or oob (a bitmap
    helper touched a word past the end of a bitmap: undefined behaviour in QEMU)."""

    kind: str
    message: str

    @property
    def status(self) -> int:
        """exit()'s status for an exit report, else 0."""
        if self.kind != "exit":
            return 0
        return int(self.message[len("exit("):-1])


class CRamDiscardListener:
    """Base class of listeners of a :class:`CRamBlockAttributes`, as rig.core's
    RamDiscardListener: override ``notify_populate(section) -> int`` (0 or a negative
    errno) and ``notify_discard(section)``.  ``double_discard_supported`` is read when
    the listener is registered.  ``section`` is the registered section (None when not
    registered)."""

    double_discard_supported = False

    def __init__(self) -> None:
        self.section: MemoryRegionSection | None = None
        self._c_owner = None
        self._c_slot = -1

    def notify_populate(self, section: MemoryRegionSection) -> int:
        raise NotImplementedError

    def notify_discard(self, section: MemoryRegionSection) -> None:
        raise NotImplementedError


def _u64(*values) -> None:
    """The C takes uint64_t: a value outside it raises OverflowError, as the Cython
    core's uint64_t arguments do."""
    for v in values:
        if not 0 <= v <= _U64:
            raise OverflowError(f"{v:#x} does not fit in a uint64_t")


class _CBitmap:
    """The manager's bitmap, read in place (no copy until ``set_bits``)."""

    def __init__(self, words, nbits: int):
        self._words = words
        self.nbits = nbits

    def set_bits(self) -> list:
        """Sorted list of set bits (a bit past ``nbits`` in the last word shows too)."""
        out = []
        for i, word in enumerate(self._words):
            base = i * 64
            while word:
                low = word & -word
                out.append(base + low.bit_length() - 1)
                word ^= low
        return out

    def test_bit(self, nr: int) -> bool:
        if not 0 <= nr < self.nbits:
            raise IndexError(f"bit {nr} is outside the bitmap of {self.nbits} bits")
        return bool((self._words[nr >> 6] >> (nr & 63)) & 1)


class CRamBlockAttributes:
    """One state manager of the C under test, with rig.core's RamBlockAttributes API.

    The caller's contract QEMU's callers keep is checked here, before the C is called,
    and answered as the core answers it: registering a listener that is registered
    (-EINVAL), a section that is not a valid range of the region (-EINVAL), unregistering
    a listener that is not registered (-ENOENT).  An exception raised by a listener or a
    replay callback is recorded (the callback then returns 0 to the C) and re-raised when
    the C call returns.
    """

    def __init__(self, lib: CLibrary, region_size: int, block_size: int = 0x1000):
        _u64(region_size, block_size)
        if block_size <= 0 or block_size & (block_size - 1):
            raise ValueError(f"block_size 0x{block_size:x} is not a power of two")
        if region_size <= 0 or region_size % block_size:
            raise ValueError(f"region size 0x{region_size:x} is not a non-zero multiple of "
                             f"block_size 0x{block_size:x}")
        self.lib = lib
        self.flavour = lib.flavour
        self.rollback = POLICY[lib.flavour]
        self.region_size = region_size
        self.block_size = block_size
        self._h = lib.create(region_size, block_size)
        if not self._h:
            raise RuntimeError(f"ram_block_attributes_create() failed ({lib.path})")
        self._slots: list = [None] * SLOTS
        # The listener each slot last held: a walk that began before a callback
        # unregistered it goes on calling that listener's C struct (QEMU's register
        # replay walks the caller's section, whatever the callback did), and the call
        # must reach that listener, as the core's replay reaches the object.  A slot
        # freed inside a C call is not given out again until the outermost call returns.
        self._last: list = [None] * SLOTS
        self._quarantine: set = set()
        self._depth = 0
        self._exc: BaseException | None = None
        self._replays: list = []
        self._lbuf = (ctypes.c_int * SLOTS)()
        self._kind, self._status = ctypes.c_int(), ctypes.c_int()
        self._msg = ctypes.c_char_p()
        # Kept as attributes: a collected CFUNCTYPE the C still calls is a segfault.
        self._hook_c = HOOK(self._hook)
        self._replay_c = REPLAY(self._replay)
        lib.set_hook(self._h, self._hook_c)
        nbits = ctypes.c_uint64()
        ptr = lib.bitmap(self._h, ctypes.byref(nbits))
        self.bitmap_size = nbits.value
        words = (ctypes.c_uint64 * ((nbits.value + 63) // 64)).from_address(ptr)
        self.bitmap = _CBitmap(words, nbits.value)

    # -- callbacks from the C -------------------------------------------------------------
    def _hook(self, slot, event, offset, size, oas):
        try:
            rdl = self._slots[slot] or self._last[slot]
            section = MemoryRegionSection(offset, size, oas)
            if event == 0:
                return int(rdl.notify_populate(section))
            rdl.notify_discard(section)
        except BaseException as exc:  # noqa: BLE001 (re-raised by _after)
            if self._exc is None:
                self._exc = exc
        return 0

    def _replay(self, offset, size, oas):
        try:
            return int(self._replays[-1](MemoryRegionSection(offset, size, oas)))
        except BaseException as exc:  # noqa: BLE001 (re-raised by _after)
            if self._exc is None:
                self._exc = exc
            return 0

    def _c(self, fn, *args):
        """A call into the C: depth-counted for the slot quarantine."""
        self._depth += 1
        try:
            return fn(*args)
        finally:
            self._depth -= 1
            if not self._depth:
                self._quarantine.clear()

    def _after(self) -> None:
        if self._exc is not None:
            exc, self._exc = self._exc, None
            raise exc

    def _handle(self):
        if self._h is None:
            raise ValueError("the manager was destroyed")
        return self._h

    # -- the core's API -------------------------------------------------------------------
    def destroy(self) -> None:
        """ram_block_attributes_destroy(): drop the manager; listeners are not told."""
        if self._h is not None:
            for rdl in self._slots:
                if rdl is not None:
                    rdl.section, rdl._c_owner, rdl._c_slot = None, None, -1
            self._slots = [None] * SLOTS
            self.bitmap = _CBitmap((), 0)
            self.lib.destroy(self._h)
            self._h = None

    def __del__(self):
        try:
            self.destroy()
        except Exception:  # noqa: BLE001 (interpreter shutdown)
            pass

    def get_block_size(self) -> int:
        return self.block_size

    def get_min_granularity(self) -> int:
        return self.block_size

    def is_valid_range(self, offset: int, size: int) -> bool:
        """ram_block_attributes_is_valid_range(): block-aligned, no wrap, inside."""
        bs = self.block_size
        if offset % bs or size % bs:
            return False
        end = (offset + size) & _U64
        return offset < end <= self.region_size

    def register_listener(self, rdl, section) -> int:
        if not isinstance(rdl, CRamDiscardListener):
            raise TypeError("listener must subclass CRamDiscardListener")
        section = MemoryRegionSection(*section)
        _u64(*section)
        h = self._handle()
        if rdl._c_owner is not None:
            return -EINVAL
        if not self.is_valid_range(section.offset_within_region, section.size):
            return -EINVAL
        slot = next((i for i, held in enumerate(self._slots)
                     if held is None and i not in self._quarantine), None)
        if slot is None:
            raise RuntimeError(f"more than {SLOTS} listeners registered at once")
        self._slots[slot] = self._last[slot] = rdl
        rdl._c_owner, rdl._c_slot, rdl.section = self, slot, section
        ret = self._c(self.lib.register, h, slot, bool(rdl.double_discard_supported),
                      *section)
        self._after()
        return ret

    def unregister_listener(self, rdl) -> int:
        h = self._handle()
        if not isinstance(rdl, CRamDiscardListener) or rdl._c_owner is not self:
            return -ENOENT
        slot = rdl._c_slot
        ret = self._c(self.lib.unregister, h, slot)
        if self._slots[slot] is rdl:
            self._slots[slot] = None
            rdl._c_owner, rdl._c_slot, rdl.section = None, -1, None
            if self._depth:
                self._quarantine.add(slot)
        self._after()
        return ret

    def state_change(self, offset: int, size: int, to_discard: bool) -> int:
        _u64(offset, size)
        ret = self._c(self.lib.state_change, self._handle(), offset, size, bool(to_discard))
        self._after()
        return ret

    def is_populated(self, section) -> bool:
        section = MemoryRegionSection(*section)
        _u64(*section)
        ret = self._c(self.lib.is_populated, self._handle(), *section)
        self._after()
        return bool(ret)

    def replay_populated(self, section, replay_fn) -> int:
        return self._replay_run(True, section, replay_fn)

    def replay_discarded(self, section, replay_fn) -> int:
        return self._replay_run(False, section, replay_fn)

    def _replay_run(self, populated: bool, section, replay_fn) -> int:
        section = MemoryRegionSection(*section)
        _u64(*section)
        h = self._handle()
        self._replays.append(replay_fn)
        try:
            ret = self._c(self.lib.replay, h, populated, *section, self._replay_c)
        finally:
            self._replays.pop()
        self._after()
        return ret

    def listeners(self) -> list:
        """The listener list in notification order (the objects registered)."""
        if self._h is None:
            return []
        n = self.lib.listeners(self._h, self._lbuf, SLOTS)
        if n > SLOTS:
            raise RuntimeError(f"the C's listener list has more than {SLOTS} entries "
                               "(a cycle: the list is corrupt)")
        out = []
        for slot in self._lbuf[:n]:
            rdl = self._slots[slot] if 0 <= slot < SLOTS else None
            if rdl is None:
                raise RuntimeError(f"the C's listener list holds slot {slot}, which is "
                                   "not registered (the list is corrupt)")
            out.append(rdl)
        return out

    def reports(self, start: int = 0) -> list:
        """What the C reported (error_report, exit, out-of-bounds bitmap accesses), in
        order, from report ``start`` on."""
        if self._h is None:
            return []
        out = []
        for i in range(start, self.lib.report_count(self._h)):
            self.lib.report(self._h, i, ctypes.byref(self._kind), ctypes.byref(self._status),
                            ctypes.byref(self._msg))
            kind = self._kind.value
            out.append(Report(REPORT_KINDS[kind] if 0 <= kind < len(REPORT_KINDS)
                              else f"kind{kind}",
                              (self._msg.value or b"").decode(errors="replace")))
        return out

    def report_count(self) -> int:
        return self.lib.report_count(self._h) if self._h is not None else 0

    def clear_reports(self) -> None:
        if self._h is not None:
            self.lib.reports_clear(self._h)
