"""Core mutants (rig.core.mutants, rig/world/mutants/core.py): each one's kill trace kills
it on both backends and is clean on the real core, the Cython variant and the twin agree
on it, the package's build has every flag at 0, and a process never runs a core other
than the one RIG_CORE_MUTANT names.

The per-mutant checks run ``rig replay`` in a fresh process from a clean environment,
as a user's shell does: the command re-executes itself on the mutant's core
(rig.cli.main.ensure_core_for), building the plain variant into the native cache the
first time (about 20 s per mutant here; then cached: rig.drive.native's stamp)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rig.core import mutants
from rig.errors import UsageError
from tests.conftest import BACKENDS

ROOT = Path(__file__).resolve().parents[2]
KILL = ROOT / "corpora" / "mutants"
CORE = sorted(mutants.CORE_MUTANTS)
#: Variables that choose a process's core: a test's child starts with none of them.
CORE_ENV = (mutants.ENV, "RIG_NATIVE_DIR", "RIG_PUREPYTHON", "RIG_CORE_REEXEC", "LD_PRELOAD")


def _env(backend: str, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in CORE_ENV}
    if backend == "pure":
        env["RIG_PUREPYTHON"] = "1"
    env.update(extra)
    return env


def rig(*args, backend="cy", **extra) -> subprocess.CompletedProcess:
    """The ``rig`` command as a shell runs it (``python -m rig.cli.main``: the re-exec
    repeats exactly this command line); ``backend`` pure is a machine with no compiler
    (RIG_PUREPYTHON=1, and the replay's own --backend)."""
    args = list(args)
    if backend == "pure" and args and args[0] == "replay":
        args[1:1] = ["--backend", "pure"]
    return subprocess.run([sys.executable, "-m", "rig.cli.main", *args], cwd=ROOT,
                          env=_env(backend, **extra), capture_output=True, text=True,
                          timeout=600)


def kill_trace(name: str) -> Path:
    return KILL / f"{name}.trace"


def expected(path: Path) -> str:
    """What the trace's ``# expect:`` line says (``violation stale-mapping``)."""
    for line in path.read_text().splitlines():
        if line.startswith("# expect:"):
            return line[len("# expect:"):].strip()
    raise AssertionError(f"{path}: no # expect: line")


def base_trace(name: str, tmp_path: Path) -> Path:
    """The kill trace on the unmutated core: a world trace with ``design=<base>``, a
    core trace without its header's ``mutant=``; neither says what it expects, so that
    replaying it clean is exit 0 and ``ok``."""
    from rig.world.mutants import mutants as registry

    cls = registry()[name]
    lines = []
    for line in kill_trace(name).read_text().splitlines(keepends=True):
        if line.startswith("# expect:"):
            continue
        lines.append(line.replace(f"design={name} ", f"design={cls.base} ")
                     .replace(f" mutant={name}\n", "\n"))
    out = tmp_path / f"{name}-base.trace"
    out.write_text("".join(lines))
    assert out.read_text() != kill_trace(name).read_text()
    return out


def test_every_core_mutant_has_a_design_and_a_kill_trace():
    from rig.world.mutants import mutants as registry

    designs = {n: c for n, c in registry().items() if c.core_mutant}
    assert sorted(designs) == CORE
    for name, cls in designs.items():
        assert cls.core_mutant == name and cls.base, name
        assert kill_trace(name).is_file(), f"no kill trace for {name}"
        assert cls.__doc__ and cls.__doc__ != cls.__mro__[2].__doc__, f"{name}: its own docstring"


@pytest.mark.parametrize("name", CORE)
def test_each_flag_is_declared_where_the_table_says(name):
    """The macro is declared (default 0) and tested in each .pyx the table lists and in no
    other, and the .pyx and the twin module report the flag in MUTANT_FLAGS."""
    entry = mutants.CORE_MUTANTS[name]
    assert entry.macro == "RIG_MUTANT_" + name.upper().replace("-", "_")
    for pyx in sorted((ROOT / "rig" / "core" / "cy").glob("*.pyx")):
        text = pyx.read_text()
        if pyx.stem in entry.modules:
            assert f"#ifndef {entry.macro}\n" in text and f"#define {entry.macro} 0\n" in text
            assert f"if {entry.macro}" in text or f"if not {entry.macro}" in text \
                or f"and not {entry.macro}" in text
            assert f'"{name}": {entry.macro}' in text, f"{pyx.name}: MUTANT_FLAGS"
            twin = (ROOT / "rig" / "core" / "pure" / f"{pyx.stem}.py").read_text()
            assert f'"{name}":' in twin, f"pure/{pyx.stem}.py: MUTANT_FLAGS"
        else:
            assert entry.macro not in text, f"{pyx.name} uses {entry.macro}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_package_build_has_every_flag_at_0(backend):
    """The core this test process imports (the package's build, RIG_CORE_MUTANT unset)
    compiles or reads every flag as 0."""
    import importlib

    assert mutants.ACTIVE is None, "the suite runs on the real core"
    for name, entry in mutants.CORE_MUTANTS.items():
        for module in entry.modules:
            mod = importlib.import_module(f"rig.core.{backend}.{module}")
            assert mod.MUTANT_FLAGS[name] == 0, (backend, module, name)


def test_a_module_built_for_another_core_is_refused():
    from types import SimpleNamespace

    import rig.core

    flags = {"ram_block_attributes": mutants.flags_for(None), "vfio": mutants.flags_for(None),
             "iommu": mutants.flags_for(None)}
    mods = {m: SimpleNamespace(MUTANT_FLAGS=f, __file__=m) for m, f in flags.items()}
    rig.core._check_mutant_flags("cy", mods)  # (all 0: the real core)
    mods["vfio"].MUTANT_FLAGS = mutants.flags_for("vfio-populate-no-rollback")
    with pytest.raises(mutants.CoreMutantError, match="RIG_MUTANT_VFIO_POPULATE_NO_ROLLBACK=1"):
        rig.core._check_mutant_flags("cy", mods)
    del mods["vfio"].MUTANT_FLAGS  # a build from before core mutants: all 0
    rig.core._check_mutant_flags("cy", mods)


def test_variant_builds_differ_only_by_the_define():
    """The fuzzer-mode variant is instrumented exactly as the real core's fuzzer build;
    the plain mode is setup.py's -O2; every variant has a folder of its own."""
    from rig.drive import native

    for name in CORE:
        define = f"-D{mutants.CORE_MUTANTS[name].macro}=1"
        compile_args, link_args = native.flags("fuzzer")
        assert native.flags("fuzzer", name) == (compile_args + [define], link_args)
        assert native.flags("plain", name) == (["-O2", define], [])
    assert native.flags("plain") == (["-O2"], [])
    dirs = {native.build_dir("plain", m) for m in [None, *CORE]}
    assert len(dirs) == len(CORE) + 1
    with pytest.raises(ValueError, match="core mutant 'bogus'"):
        native.flags("plain", "bogus")


def test_in_process_callers_are_told_what_to_do():
    """In a process on the real core, a core-mutant design cannot run: the World refuses
    it, and ensure_core_for (which would re-execute the `rig` command) says what to set;
    designs needing two cores cannot share one process."""
    from rig.check import model
    from rig.cli.main import ensure_core_for
    from rig.world.config import WorldConfig
    from rig.world.world import World

    with pytest.raises(UsageError, match="needs the core built with mutant double-populate"):
        World(WorldConfig(design="double-populate"), "pure")
    World(WorldConfig(design="double-populate"), model.backend())  # (the shadow: any core)
    ensure_core_for("hardened", "qemu-10.1", None, reexec=False)  # the real core: nothing to do
    with pytest.raises(UsageError, match="RIG_CORE_MUTANT=no-wrap-check"):
        ensure_core_for("no-wrap-check", reexec=False)
    with pytest.raises(UsageError, match="different cores"):
        ensure_core_for("hardened", "no-wrap-check", reexec=False)


def test_a_core_trace_names_its_mutant(tmp_path):
    """A core finding made on a mutant's core carries ``mutant=NAME`` in its header (the
    campaign and rig minimize write it), that key is what rig replay re-executes on, and
    a trace of a mutant does not run on another core."""
    from argparse import Namespace
    from dataclasses import replace

    from rig.cli.main import _designs_of
    from rig.core.mutants import CoreMutantError
    from rig.trace import core as core_trace

    path = kill_trace("no-wrap-check")
    trace = core_trace.load(str(path))
    assert trace.config.mutant == "no-wrap-check"
    assert "dma_entry_limit=12 mutant=no-wrap-check\n" in core_trace.serialize(trace)
    plain = core_trace.serialize(replace(trace, config=replace(trace.config, mutant=None)))
    assert "mutant=" not in plain, "the package's core: the key is not written"
    with pytest.raises(ValueError, match="mutant: 'nope' is not a core mutant"):
        core_trace.parse(plain.replace("dma_entry_limit=12", "dma_entry_limit=12 mutant=nope"))
    with pytest.raises(CoreMutantError, match="core mutant 'no-wrap-check'"):
        core_trace.run_core(trace.config, trace.ops, ("pure", "model"))
    world = kill_trace("double-populate")
    args = Namespace(command="replay", files=[str(path), str(world), str(tmp_path / "gone")],
                     harness=None, design=None)
    assert _designs_of(args) == ["no-wrap-check", "double-populate"]


def test_an_unknown_mutant_fails_with_one_line():
    proc = rig("list", "mutants", backend=BACKENDS[0], **{mutants.ENV: "no-such-mutant"})
    assert proc.returncode == 1 and not proc.stdout
    assert proc.stderr.count("\n") == 1 and "'no-such-mutant' is not a core mutant" in proc.stderr


@pytest.mark.skipif("cy" not in BACKENDS, reason="the Cython core is not built here")
def test_the_cython_core_never_runs_another_mutant_than_named(tmp_path):
    """RIG_CORE_MUTANT with no variant build, a variant build with no RIG_CORE_MUTANT,
    and a variant of another mutant: the Cython core does not import (ImportError), and
    ``rig`` says so in one line, exit 1."""
    from rig.drive import native

    variant = native.ensure_build("plain", "no-wrap-check", log=lambda m: None)
    script = ("try:\n import rig.core\nexcept ImportError as e:\n print('ImportError')\n"
              "else:\n print(rig.core.MUTANT)")
    cases = [({mutants.ENV: "no-wrap-check"}, "RIG_NATIVE_DIR is unset"),
             ({"RIG_NATIVE_DIR": str(variant)}, "is unset: set RIG_CORE_MUTANT=no-wrap-check"),
             ({mutants.ENV: "double-populate", "RIG_NATIVE_DIR": str(variant)},
              "holds a build of 'no-wrap-check'")]
    for extra, says in cases:
        proc = rig("list", "mutants", **extra)
        assert proc.returncode == 1, (extra, proc.stderr)
        assert proc.stderr.count("\n") == 1 and says in proc.stderr, (extra, proc.stderr)
        imported = subprocess.run([sys.executable, "-c", script], env=_env("cy", **extra),
                                  capture_output=True, text=True, cwd=ROOT)
        assert imported.stdout == "ImportError\n", (extra, imported.stderr)
    ok = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                        env=_env("cy", **native.env_for("plain", variant, "no-wrap-check")))
    assert ok.stdout == "no-wrap-check\n", ok.stderr


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", CORE)
def test_kill_trace_kills_the_mutant_and_not_its_base(name, backend, tmp_path):
    """From a clean environment, ``rig replay`` of the kill trace re-executes on the
    mutant's core and shows what the trace expects; the same ops on the real core
    (design=<base>, or a core trace without its mutant) are clean."""
    path = kill_trace(name)
    proc = rig("replay", "--quiet", str(path), backend=backend)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith(f"{path}: {expected(path)} at op "), proc.stdout
    base = base_trace(name, tmp_path)
    proc = rig("replay", "--quiet", str(base), backend=backend)
    assert (proc.returncode, proc.stdout) == (0, f"{base}: ok\n"), proc.stdout + proc.stderr


def _without_cy(text: str) -> str:
    """A core trace's replay text as the twin alone prints it: the Cython column of
    each result and each ``cy:`` value dropped, after checking that each equals the
    twin's (the variant and the twin agree); the ``backend:`` line dropped."""
    out = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("backend: "):
            continue
        m = re.match(r"^(.* = )cy (.*?) \| pure (.*?)( \| .*)?$", line)
        if m:
            assert m.group(2) == m.group(3), line
            line = f"{m.group(1)}pure {m.group(3)}{m.group(4) or ''}"
        m = re.match(r"^(\s+)cy: (.*)$", line)
        if m:
            assert lines[i + 1] == f"{m.group(1)}pure: {m.group(2)}", (line, lines[i + 1])
            continue
        out.append(line)
    return "\n".join(out)


@pytest.mark.slow
@pytest.mark.skipif(BACKENDS != ["cy", "pure"], reason="needs the Cython core and the twin")
@pytest.mark.parametrize("name", CORE)
def test_cython_variant_and_twin_replay_the_same(name):
    path = kill_trace(name)
    cy, pure = (rig("replay", str(path), backend=b) for b in ("cy", "pure"))
    assert cy.returncode == pure.returncode == 0, cy.stderr + pure.stderr
    assert "backend: cy" in cy.stdout and "backend: pure" in pure.stdout
    assert _without_cy(cy.stdout) == _without_cy(pure.stdout)


@pytest.mark.slow
def test_rig_minimize_keeps_the_mutant_of_a_core_trace():
    path = kill_trace("no-wrap-check")
    proc = rig("minimize", "--no-write", str(path), backend=BACKENDS[0])
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout[proc.stdout.index("# gmem-rig trace v1"):]
    assert "mutant=no-wrap-check\n# expect: mismatch result in state_change\n" in text
