"""The native-coverage build of the Cython core, and the environment to run it.

libFuzzer only sees the Cython core's C edges when the extension modules are compiled by
clang with -fsanitize=fuzzer-no-link (docs/semantics.md 7); gcc's build is fuzzed blind.
The instrumented modules go to their own directory, ``build/native-<mode>/``, never over the
plain in-place build that pytest imports, and are found through RIG_NATIVE_DIR (read by
rig/core/cy/__init__.py).  They need atheris' merged sanitizer+libFuzzer runtime preloaded;
``env_for`` sets that up, so users never type LD_PRELOAD or ASAN_OPTIONS.

Modes: ``fuzzer`` (coverage only; the ubsan runtime is the fast preload), ``address``
(ASan; leak detection off: LeakSanitizer reports the interpreter's own allocations),
``undefined`` (UBSan).
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODES = ("fuzzer", "address", "undefined")
INSTALL_HINT = "apt-get install -y clang libclang-rt-14-dev"


class NativeUnavailable(RuntimeError):
    """clang (or atheris' runtime) is missing: fuzz the plain build, with a warning."""


def build_dir(mode: str) -> Path:
    return ROOT / "build" / f"native-{mode}"


def module_dir(mode: str) -> Path:
    return build_dir(mode) / "rig" / "core" / "cy"


def _stamp(mode: str) -> str:
    h = hashlib.sha256(mode.encode())
    for path in sorted(glob.glob(str(ROOT / "rig" / "core" / "cy" / "*.p[yx][xd]"))) + [
            str(ROOT / "setup.py")]:
        with open(path, "rb") as f:
            h.update(f.read())
    clang = subprocess.run(["clang", "--version"], capture_output=True, text=True).stdout
    h.update(clang.encode())
    return h.hexdigest()


def ensure_build(mode: str = "fuzzer", log=print) -> Path:
    """Build (or reuse) the instrumented core; returns the directory of its modules."""
    if mode not in MODES:
        raise ValueError(f"RIG_SANITIZE mode {mode!r}: one of {', '.join(MODES)}")
    if shutil.which("clang") is None:
        raise NativeUnavailable(f"clang not found: {INSTALL_HINT}")
    out = build_dir(mode)
    out.mkdir(parents=True, exist_ok=True)
    # Parallel test workers may ask at once: one builds, the others wait for it.
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_locked(mode, out, log)


def _build_locked(mode: str, out: Path, log) -> Path:
    stamp_file = out / ".stamp"
    stamp = _stamp(mode)
    built = glob.glob(str(module_dir(mode) / "*.so"))
    if len(built) >= 5 and stamp_file.exists() and stamp_file.read_text() == stamp:
        return module_dir(mode)
    log(f"building the instrumented core (RIG_SANITIZE={mode}, clang) in {out}")
    env = dict(os.environ, RIG_SANITIZE=mode, CC="clang", LDSHARED="clang -shared")
    proc = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--build-lib", str(out),
         "--build-temp", str(out / "tmp"), "--force"],
        cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.splitlines()[-15:])
        raise NativeUnavailable(f"the instrumented build failed:\n{tail}\n(is "
                                f"libclang-rt-14-dev installed? {INSTALL_HINT})")
    stamp_file.write_text(stamp)
    return module_dir(mode)


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
