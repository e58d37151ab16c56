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
``undefined`` (UBSan).
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
MODES = ("fuzzer", "address", "undefined")
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


def flags(mode: str) -> tuple[list[str], list[str]]:
    """(compile, link) arguments of the instrumented build in ``mode``."""
    sanitize = "fuzzer-no-link" + ("" if mode == "fuzzer" else "," + mode)
    return ["-O2", f"-fsanitize={sanitize}", "-g"], [f"-fsanitize={sanitize}"]


def sources() -> list[Path]:
    """The core's .pyx and .pxd files, sorted."""
    return sorted(SOURCES.glob("*.pyx")) + sorted(SOURCES.glob("*.pxd"))


def modules() -> list[str]:
    """The extension modules the build makes: one per .pyx."""
    return [path.stem for path in sorted(SOURCES.glob("*.pyx"))]


def _script(mode: str) -> str:
    return BUILD_SCRIPT.format(flags=repr(flags(mode)))


def _stamp(mode: str) -> str:
    try:
        import Cython
    except ImportError:
        raise NativeUnavailable("Cython is not installed (pip install 'gmem-rig[fuzz]')") from None
    h = hashlib.sha256(mode.encode())
    for path in sources():
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    clang = subprocess.run(["clang", "--version"], capture_output=True, text=True).stdout \
        if shutil.which("clang") else ""
    for part in (_script(mode), sys.version, Cython.__version__, clang):
        h.update(part.encode() + b"\0")
    return h.hexdigest()


def build_dir(mode: str) -> Path:
    """Where the instrumented build of ``mode`` for these sources lives (needs clang)."""
    return cache_root() / f"native-{mode}-{_stamp(mode)[:16]}"


def module_dir(mode: str) -> Path:
    return build_dir(mode) / "rig" / "core" / "cy"


def ensure_build(mode: str = "fuzzer", log=print) -> Path:
    """Build (or reuse) the instrumented core; returns the directory of its modules."""
    if mode not in MODES:
        raise ValueError(f"native build mode {mode!r}: one of {', '.join(MODES)}")
    if shutil.which("clang") is None:
        raise NativeUnavailable(f"clang not found: {INSTALL_HINT}")
    if not modules():
        raise NativeUnavailable(f"no .pyx sources in {SOURCES} (a broken install?)")
    out = build_dir(mode)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NativeUnavailable(f"cannot create the build cache {out} ({exc.strerror}): "
                                f"set {CACHE_ENV} to a writable folder") from None
    # Parallel test workers and campaigns may ask at once: one builds, the others wait.
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_locked(mode, out, log)


def _build_locked(mode: str, out: Path, log) -> Path:
    stamp_file = out / ".stamp"
    stamp = _stamp(mode)
    target = out / "rig" / "core" / "cy"
    built = {p.name.split(".")[0] for p in target.glob("*.so")} if target.is_dir() else set()
    if set(modules()) <= built and stamp_file.exists() and stamp_file.read_text() == stamp:
        return target
    log(f"building the instrumented core ({mode} mode, clang) in {out}")
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
    (src / "setup.py").write_text(_script(mode))
    env = dict(os.environ, CC="clang", LDSHARED="clang -shared")
    env.pop("PYTHONPATH", None)  # (the build needs Cython and setuptools, not the rig)
    proc = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--build-lib", str(out),
         "--build-temp", str(out / "tmp"), "--force"],
        cwd=src, env=env, capture_output=True, text=True)
    shutil.rmtree(out / "tmp", ignore_errors=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).splitlines()[-15:])
        raise NativeUnavailable(f"the instrumented build failed:\n{tail}\n(is "
                                f"libclang-rt-14-dev installed? {INSTALL_HINT})")
    missing = sorted(set(modules()) - {p.name.split(".")[0] for p in target.glob("*.so")})
    if missing:
        raise NativeUnavailable(f"the instrumented build made no module for "
                                f"{', '.join(missing)} in {target}")
    shutil.rmtree(src, ignore_errors=True)
    stamp_file.write_text(stamp)
    return target


def runtime(mode: str) -> str:
    import atheris

    name = "asan_with_fuzzer.so" if mode == "address" else "ubsan_with_fuzzer.so"
    path = os.path.join(atheris.path(), name)
    if not os.path.exists(path):
        raise NativeUnavailable(f"atheris runtime {path} not found")
    return path


def env_for(mode: str, modules: Path) -> dict:
    """Environment for a harness process importing the instrumented core."""
    env = {"RIG_NATIVE_DIR": str(modules), "LD_PRELOAD": runtime(mode)}
    if mode == "address":
        env["ASAN_OPTIONS"] = "detect_leaks=0"
    return env


def prepare(mode: str | None, log=print) -> tuple[dict, str]:
    """(extra environment, build label) for fuzzing: the instrumented build when it can be
    had, else the plain build with a clear warning saying how to get the other."""
    if not mode:
        return {}, "plain"
    try:
        return env_for(mode, ensure_build(mode, log)), f"native-{mode}"
    except NativeUnavailable as exc:
        log(f"WARNING: {exc}")
        log("WARNING: falling back to the plain (gcc) build: the Cython core is fuzzed "
            "blind (libFuzzer sees only Python edges)")
        return {}, "plain"
