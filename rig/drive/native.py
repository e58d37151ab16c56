"""The native-coverage build of the Cython core, and the environment to run it.

libFuzzer only sees the Cython core's C edges when the extension modules are compiled by
clang with -fsanitize=fuzzer-no-link (docs/semantics.md 7); gcc's build is fuzzed blind.
The instrumented modules are built from the ``.pyx``/``.pxd`` sources the package ships
(``rig/core/cy/``, in a checkout or in an installed wheel alike), by a setup script of
this module's own, into a writable cache, never into the package:
``$RIG_NATIVE_CACHE`` if set, else ``$XDG_CACHE_HOME/gmem-rig`` (``~/.cache/gmem-rig``),
one folder ``native-<mode>-<stamp>`` per mode and build inputs (the sources, the flags,
the Python, Cython and clang versions), so that two checkouts or installs never replace
each other's modules under a running campaign.  Builds of older inputs stay in the cache
(delete them whenever no campaign runs).  The modules are found through RIG_NATIVE_DIR
(read by rig/core/cy/__init__.py) and need atheris' merged sanitizer+libFuzzer runtime
preloaded; ``env_for`` sets that up, so users never type LD_PRELOAD or ASAN_OPTIONS.

Modes: ``fuzzer`` (coverage only; the ubsan runtime is the fast preload), ``address``
(ASan; leak detection off: LeakSanitizer reports the interpreter's own allocations),
``undefined`` (UBSan), and ``plain``: the package's own flags (-O2, no sanitizer, the
default compiler, nothing to preload), for a process that needs a core-mutant variant
(below) without instrumentation: the parent of a campaign, ``rig replay``, the tests.

Core-mutant variants (rig.core.mutants): ``ensure_build(mode, mutant)`` compiles the same
sources with ``-DRIG_MUTANT_<NAME>=1`` into a folder of its own (the stamp covers the
mutant: it is in the flags), and leaves a ``.mutant`` file naming it beside the modules,
which rig/core/cy/__init__.py checks against RIG_CORE_MUTANT; ``env_for`` sets that
variable too, so the twin of the same process is the same mutant.  A fuzzer-mode variant
is instrumented exactly as the unmutated fuzzer build: only the one define differs.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

#: The core's sources as the package ships them (package data of rig.core.cy).
SOURCES = Path(__file__).resolve().parents[1] / "core" / "cy"
MODES = ("fuzzer", "address", "undefined", "plain")
#: The mode that needs no clang and no preload (the package's own flags).
PLAIN = "plain"
INSTALL_HINT = "apt-get install -y clang libclang-rt-14-dev"
#: Overrides where the instrumented builds are cached.
CACHE_ENV = "RIG_NATIVE_CACHE"

#: The setup script the instrumented build runs in a copy of the sources (``{flags}`` is
#: filled in per mode); the same Cython directives as the package's own setup.py.
BUILD_SCRIPT = """\
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

compile_args, link_args = {flags}
names = sorted(f[:-4] for f in os.listdir("rig/core/cy") if f.endswith(".pyx"))
setup(
    name="gmem-rig-native",
    ext_modules=cythonize(
        [Extension(f"rig.core.cy.{{name}}", [f"rig/core/cy/{{name}}.pyx"],
                   extra_compile_args=compile_args, extra_link_args=link_args)
         for name in names],
        compiler_directives={{"language_level": "3", "embedsignature": True}},
        force=True, quiet=True),
)
"""


class NativeUnavailable(RuntimeError):
    """clang, Cython or atheris' runtime is missing, or the build failed: fuzz the plain
    build, with a warning."""


def cache_root() -> Path:
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gmem-rig"


def keep_hypothesis_storage() -> None:
    """Put hypothesis' storage (the ``constants/`` cache of the source it reads, which
    its own test runner writes at a state machine's first draw) under the rig's cache
    folder, unless HYPOTHESIS_STORAGE_DIRECTORY says where, for this process and the
    ones it starts: else ``rig bench bugs``' statemachine engine leaves ``.hypothesis/``
    in the folder the user runs it from.  (A fuzz worker's fuzz_one_input replays bytes
    and writes nothing there.)  Never under pytest, where it would move the test
    database depending on which test ran first."""
    os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", str(cache_root() / "hypothesis"))


def flags(mode: str, mutant: str | None = None) -> tuple[list[str], list[str]]:
    """(compile, link) arguments of the build in ``mode``, for core mutant ``mutant``
    (None: the real core).  ``plain`` is setup.py's own (-O2)."""
    define = [f"-D{_mutant_entry(mutant).macro}=1"] if mutant else []
    if mode == PLAIN:
        return ["-O2", *define], []
    sanitize = "fuzzer-no-link" + ("" if mode == "fuzzer" else "," + mode)
    return ["-O2", f"-fsanitize={sanitize}", "-g", *define], [f"-fsanitize={sanitize}"]


def _mutant_entry(mutant: str):
    from rig.core.mutants import CORE_MUTANTS

    try:
        return CORE_MUTANTS[mutant]
    except KeyError:
        raise ValueError(f"core mutant {mutant!r}: one of {', '.join(CORE_MUTANTS)}") from None


def _compiler(mode: str) -> list[str]:
    """The C compiler's command: clang for the instrumented modes, else the one Python
    was built with (what setup.py uses)."""
    if mode != PLAIN:
        return ["clang"]
    import shlex
    import sysconfig

    return shlex.split(sysconfig.get_config_var("CC") or "cc")[:1]


def sources() -> list[Path]:
    """The core's .pyx and .pxd files, sorted."""
    return sorted(SOURCES.glob("*.pyx")) + sorted(SOURCES.glob("*.pxd"))


def modules() -> list[str]:
    """The extension modules the build makes: one per .pyx."""
    return [path.stem for path in sorted(SOURCES.glob("*.pyx"))]


def _script(mode: str, mutant: str | None = None) -> str:
    return BUILD_SCRIPT.format(flags=repr(flags(mode, mutant)))


def _stamp(mode: str, mutant: str | None = None) -> str:
    try:
        import Cython
    except ImportError:
        raise NativeUnavailable("Cython is not installed (pip install 'gmem-rig[fuzz]')") from None
    h = hashlib.sha256(mode.encode())
    for path in sources():
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    compiler = _compiler(mode)
    version = subprocess.run([*compiler, "--version"], capture_output=True, text=True).stdout \
        if shutil.which(compiler[0]) else ""
    for part in (_script(mode, mutant), sys.version, Cython.__version__, version):
        h.update(part.encode() + b"\0")
    return h.hexdigest()


def build_dir(mode: str, mutant: str | None = None) -> Path:
    """Where the build of ``mode`` (and core mutant ``mutant``) for these sources lives."""
    variant = f"{mode}-{mutant}" if mutant else mode
    return cache_root() / f"native-{variant}-{_stamp(mode, mutant)[:16]}"


def module_dir(mode: str, mutant: str | None = None) -> Path:
    return build_dir(mode, mutant) / "rig" / "core" / "cy"


def ensure_build(mode: str = "fuzzer", mutant: str | None = None, log=print) -> Path:
    """Build (or reuse) the core in ``mode``, with core mutant ``mutant`` compiled in
    (None: the real core); returns the directory of its modules."""
    if mode not in MODES:
        raise ValueError(f"native build mode {mode!r}: one of {', '.join(MODES)}")
    if mutant is not None:
        _mutant_entry(mutant)
    compiler = _compiler(mode)[0]
    if shutil.which(compiler) is None:
        raise NativeUnavailable(f"{compiler} not found: {INSTALL_HINT}" if mode != PLAIN
                                else f"no C compiler ({compiler}) to build the core with")
    if not modules():
        raise NativeUnavailable(f"no .pyx sources in {SOURCES} (a broken install?)")
    out = build_dir(mode, mutant)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NativeUnavailable(f"cannot create the build cache {out} ({exc.strerror}): "
                                f"set {CACHE_ENV} to a writable folder") from None
    # Parallel test workers and campaigns may ask at once: one builds, the others wait.
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_locked(mode, mutant, out, log)


def _build_locked(mode: str, mutant: str | None, out: Path, log) -> Path:
    from rig.core.mutants import MARKER

    stamp_file = out / ".stamp"
    stamp = _stamp(mode, mutant)
    target = out / "rig" / "core" / "cy"
    built = {p.name.split(".")[0] for p in target.glob("*.so")} if target.is_dir() else set()
    if set(modules()) <= built and stamp_file.exists() and stamp_file.read_text() == stamp:
        return target
    what = "the instrumented core" if mode != PLAIN else "the core"
    log(f"building {what} ({mode} mode, {_compiler(mode)[0]}"
        f"{', core mutant ' + mutant if mutant else ''}) in {out}")
    # The sources are copied out of the package (which may be read-only site-packages:
    # cythonize writes its .c beside the .pyx); empty __init__.py files are enough for
    # Cython to name the modules rig.core.cy.<name>.
    src = out / "src"
    shutil.rmtree(src, ignore_errors=True)
    (src / "rig" / "core" / "cy").mkdir(parents=True)
    for package in ("rig", "rig/core", "rig/core/cy"):
        (src / package / "__init__.py").write_text("")
    for path in sources():
        shutil.copyfile(path, src / "rig" / "core" / "cy" / path.name)
    (src / "setup.py").write_text(_script(mode, mutant))
    env = dict(os.environ)
    if mode != PLAIN:
        env.update(CC="clang", LDSHARED="clang -shared")
    env.pop("PYTHONPATH", None)  # (the build needs Cython and setuptools, not the rig)
    proc = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--build-lib", str(out),
         "--build-temp", str(out / "tmp"), "--force"],
        cwd=src, env=env, capture_output=True, text=True)
    shutil.rmtree(out / "tmp", ignore_errors=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).splitlines()[-15:])
        hint = f"(is libclang-rt-14-dev installed? {INSTALL_HINT})" if mode != PLAIN else ""
        raise NativeUnavailable(f"the {mode} build of the core failed:\n{tail}\n{hint}")
    missing = sorted(set(modules()) - {p.name.split(".")[0] for p in target.glob("*.so")})
    if missing:
        raise NativeUnavailable(f"the instrumented build made no module for "
                                f"{', '.join(missing)} in {target}")
    shutil.rmtree(src, ignore_errors=True)
    marker = target / MARKER
    if mutant:
        marker.write_text(mutant + "\n")
    elif marker.exists():
        marker.unlink()
    stamp_file.write_text(stamp)
    return target


def runtime(mode: str) -> str:
    import atheris

    name = "asan_with_fuzzer.so" if mode == "address" else "ubsan_with_fuzzer.so"
    path = os.path.join(atheris.path(), name)
    if not os.path.exists(path):
        raise NativeUnavailable(f"atheris runtime {path} not found")
    return path


def env_for(mode: str, modules: Path, mutant: str | None = None) -> dict:
    """Environment for a process importing the build in ``modules`` (of ``mode``, for
    core mutant ``mutant``): RIG_CORE_MUTANT is set or emptied to match, so that the
    twin is the same core and a parent's mutant never leaks into a real-core child."""
    from rig.core.mutants import ENV

    env = {"RIG_NATIVE_DIR": str(modules), ENV: mutant or ""}
    if mode != PLAIN:
        env["LD_PRELOAD"] = runtime(mode)
    if mode == "address":
        env["ASAN_OPTIONS"] = "detect_leaks=0"
    return env


def prepare(mode: str | None, log=print, mutant: str | None = None) -> tuple[dict, str]:
    """(extra environment, build label) for fuzzing: the instrumented build when it can be
    had, else the plain build with a clear warning saying how to get the other.  With a
    core mutant, either is that mutant's variant (the label stays the mode's); if not
    even the plain variant can be built, NativeUnavailable: a mutant is never fuzzed on
    the real core."""
    if mode:
        try:
            return env_for(mode, ensure_build(mode, mutant, log), mutant), f"native-{mode}"
        except NativeUnavailable as exc:
            log(f"WARNING: {exc}")
            log("WARNING: falling back to the plain (gcc) build: the Cython core is fuzzed "
                "blind (libFuzzer sees only Python edges)")
    if not mutant:
        return {}, "plain"
    return env_for(PLAIN, ensure_build(PLAIN, mutant, log), mutant), "plain"
