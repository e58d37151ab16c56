"""The native-coverage build: libFuzzer counts the Cython core's C edges with it, and
reaches a planted deep branch of the core that the plain build does not reach within the
same run budget (docs/semantics.md 7).  Needs clang (ci/test installs it as root)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rig.drive import native
from rig.drive.harnesses import HARNESSES

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("clang") is None,
                       reason=f"clang not installed ({native.INSTALL_HINT})"),
]


@pytest.fixture(scope="module")
def native_env():
    return native.env_for("fuzzer", native.ensure_build("fuzzer"))


def libfuzzer(harness: str, args: list, env: dict) -> subprocess.CompletedProcess:
    script = ROOT / "fuzz" / f"{harness}.py"
    full_env = dict(os.environ, **env)
    # RIG_PUREPYTHON too: the pure twin's branch is a Python bytes compare, which atheris
    # traces itself, so the plain run would find it and prove nothing.
    for key in ("RIG_NATIVE_DIR", "LD_PRELOAD", "RIG_PUREPYTHON"):
        if key not in env:
            full_env.pop(key, None)
    return subprocess.run([sys.executable, str(script), *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=600)


def initial_cov(stderr: str) -> int:
    m = re.search(r"INITED cov: (\d+)", stderr)
    assert m, stderr[-2000:]
    return int(m.group(1))


def test_instrumented_build_reports_more_coverage(native_env, tmp_path):
    """The same input set, executed once (-runs=0): the instrumented build adds the core's
    C edges to the Python ones."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, seed in enumerate(HARNESSES["core_differential"].seeds()):
        (corpus / f"s{i}").write_bytes(seed)
    plain = libfuzzer("core_differential", ["-runs=0", str(corpus)], {})
    instrumented = libfuzzer("core_differential", ["-runs=0", str(corpus)], native_env)
    assert plain.returncode == 0 and instrumented.returncode == 0
    assert "RIG_NATIVE_DIR" in native_env
    assert initial_cov(instrumented.stderr) > 2 * initial_cov(plain.stderr)


def test_planted_deep_branch_found_only_with_native_edges(native_env, tmp_path):
    """The instrumented build reaches the planted branch in about 430 runs on seeds 1-12
    (rig/core/cy/planted.pyx says why the branch is one 64-bit compare); the budget
    leaves a margin of several hundred times, since libFuzzer's schedule is not the same
    from machine to machine even with a fixed -seed."""
    budget = ["-runs=300000", "-seed=1", f"-artifact_prefix={tmp_path}/"]
    instrumented = libfuzzer("native_canary", budget, native_env)
    assert instrumented.returncode != 0, instrumented.stderr[-2000:]
    assert "reached the planted deep branch" in instrumented.stdout + instrumented.stderr
    plain = libfuzzer("native_canary", budget, {})
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert "Done 300000 runs" in plain.stderr


def test_prepare_falls_back_with_a_warning_without_clang(monkeypatch):
    logged = []
    monkeypatch.setattr(native.shutil, "which", lambda name: None)
    env, build = native.prepare("fuzzer", logged.append)
    assert (env, build) == ({}, "plain")
    assert any("clang not found: apt-get install -y clang" in line for line in logged)
    assert any("falling back to the plain" in line for line in logged)
