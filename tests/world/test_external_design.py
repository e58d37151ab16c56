"""A design written outside the package: loaded by its spec (``path/to/file.py:Class``,
``pkg.module:Class``) or through the ``gmem_rig.designs`` entry points, run like a
built-in one, carried to child processes (RIG_DESIGNS) and named on the command line
(``--load``, ``--design SPEC``); a bad spec is one line and exit 1."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rig.check.session import run
from rig.errors import UsageError
from rig.trace import decode
from rig.trace.corpus import regressions
from rig.trace.format import load, serialize
from rig.world import designs

ROOT = Path(__file__).resolve().parents[2]

#: A copy of qemu-10.1's behaviour under another name (docs/your-design.md starts so).
MY_DESIGN = '''\
from rig.world.designs.base import Qemu101Conversion
from rig.world.designs.qemu_10_1 import Qemu101


class MyQemu(Qemu101Conversion):
    """Contract: QEMU 10.1's conversion path, under another name."""

    name = "my-qemu"
    rollback = "none"
    budget_check = "warn"


class Nameless(Qemu101Conversion):
    """Sets no name of its own."""


class Clash(Qemu101Conversion):
    name = "hardened"


class Spaced(Qemu101Conversion):
    name = "my design"


class Plain:
    name = "plain"


class Inherited(Qemu101):
    """qemu-10.1 itself, subclassed: it inherits its id (2)."""

    name = "my-inherited"


NOT_A_CLASS = 3
'''

QEMU_REGRESSIONS = [p for p in regressions() if "-qemu-10.1-" in p.name]


@pytest.fixture
def design_file(tmp_path):
    path = tmp_path / "mydesign.py"
    path.write_text(MY_DESIGN)
    return path


def rig(*args, cwd, env=None, timeout=300):
    full = dict(os.environ, **(env or {}))
    full.pop(designs.ENV, None)
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "rig.cli.main", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=timeout)


def my_trace(tmp_path, source: Path) -> Path:
    """A qemu-10.1 regression trace with its header naming my-qemu instead."""
    trace = load(str(source), strict=True)
    trace.config = trace.config.with_(design="my-qemu")
    path = tmp_path / source.name.replace("qemu-10.1", "my-qemu")
    path.write_text(serialize(trace))
    return path


# -- loading ------------------------------------------------------------------------------

def test_a_file_spec_loads_registers_and_behaves_as_its_base(registry, design_file):
    name = registry.load_design(f"{design_file}:MyQemu")
    assert name == "my-qemu" and "my-qemu" in registry.DESIGNS
    assert registry.make_design("my-qemu").rollback == "none"
    assert QEMU_REGRESSIONS
    for path in QEMU_REGRESSIONS:
        trace = load(str(path), strict=True)
        ours = run(trace.config.with_(design="my-qemu").validate(), trace.ops).outcome
        theirs = run(trace.config, trace.ops).outcome
        assert ours.describe() == theirs.describe(), path.name
        assert trace.expect.matches(ours), path.name


def test_loading_again_by_another_path_is_the_same_design(registry, design_file, monkeypatch):
    monkeypatch.chdir(design_file.parent)
    assert registry.load_design("./mydesign.py:MyQemu") == "my-qemu"
    cls = registry.DESIGNS["my-qemu"]
    assert registry.load_design(f"{design_file}:MyQemu") == "my-qemu"
    assert registry.resolve("mydesign.py:MyQemu") == "my-qemu"
    assert registry.DESIGNS["my-qemu"] is cls
    # What child processes get: the spec made absolute, once.
    assert os.environ[designs.ENV] == f"{design_file}:MyQemu"
    # What a printed command line needs: the spec as it was given.
    assert registry.load_option("my-qemu") == "--load ./mydesign.py:MyQemu"
    assert registry.load_option("qemu-10.1") == ""


def test_a_module_spec_loads_from_the_path(registry, tmp_path, monkeypatch):
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "conversion.py").write_text(MY_DESIGN)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert registry.resolve("mypkg.conversion:MyQemu") == "my-qemu"
    assert registry.SOURCES["my-qemu"] == "mypkg.conversion:MyQemu"


def test_external_designs_take_no_decoder_id(registry, design_file):
    """The byte decoder picks built-in designs only: a loaded design (even one that
    inherits an id, as a copy of qemu_10_1.py would) changes no byte's meaning."""
    ids = decode.DESIGN_IDS
    registry.load_design(f"{design_file}:Inherited")
    assert registry.DESIGNS["my-inherited"].id == 2
    assert decode.DESIGN_IDS == ids == tuple(c.id for c in registry.BUILT_IN.values())
    assert "my-inherited" not in decode.DESIGN_BY_ID.values()
    config, _ = decode.decode(bytes(range(64)), decode.DecodeOptions(design="my-inherited"))
    assert config.design == "my-inherited"


BAD_SPECS = [
    ("missing.py:MyQemu", "no such file"),
    ("no_such_package.conversion:MyQemu", "module 'no_such_package.conversion' is not importable"),
    ("{file}:Nope", "has no class 'Nope'"),
    ("{file}:NOT_A_CLASS", "'NOT_A_CLASS' is not a class"),
    ("{file}:Plain", "Plain is not a subclass of rig.world.designs.base.Design"),
    ("{file}:Nameless", "Nameless must set its own name"),
    ("{file}:Clash", "name 'hardened' is a built-in design's"),
    ("{file}:Spaced", "name 'my design' is not a design name"),
    ("{file}:", "expected path/to/file.py:Class or pkg.module:Class"),
    ("nonsense", "unknown design 'nonsense': one of uncoordinated,"),
]


@pytest.mark.parametrize("spec,message", BAD_SPECS)
def test_a_bad_spec_is_one_line(registry, design_file, spec, message):
    before = dict(registry.DESIGNS)
    with pytest.raises(UsageError) as info:
        registry.resolve(spec.format(file=design_file))
    text = str(info.value)
    assert message in text and "\n" not in text, text
    assert registry.DESIGNS == before


def test_two_external_designs_cannot_share_a_name(registry, design_file, tmp_path):
    other = tmp_path / "other.py"
    other.write_text(MY_DESIGN)
    registry.load_design(f"{design_file}:MyQemu")
    with pytest.raises(UsageError, match="name 'my-qemu' is taken by"):
        registry.load_design(f"{other}:MyQemu")


def test_a_failing_import_is_one_line(registry, tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("import no_such_module_anywhere\n")
    with pytest.raises(UsageError, match="failed to import: ModuleNotFoundError") as info:
        registry.load_design(f"{broken}:X")
    assert "\n" not in str(info.value)


# -- child processes and entry points -------------------------------------------------------

def _designs_of_a_fresh_process(cwd, env) -> subprocess.CompletedProcess:
    code = ("from rig.world.designs import DESIGNS, SOURCES; "
            "print(' '.join(DESIGNS)); print(SOURCES)")
    full = {k: v for k, v in os.environ.items() if k != designs.ENV}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=dict(full, **env),
                          capture_output=True, text=True, timeout=120)


def test_rig_designs_carries_specs_to_child_processes(design_file, tmp_path):
    proc = _designs_of_a_fresh_process(tmp_path, {designs.ENV: f"{design_file}:MyQemu"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].split()[-1] == "my-qemu"


def _distribution(site: Path, entry_points: str) -> None:
    """An installed distribution (as pip leaves one): a module and its dist-info with
    the entry points."""
    (site / "extra_designs.py").write_text(MY_DESIGN)
    info = site / "extra_designs-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: extra-designs\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[gmem_rig.designs]\n{entry_points}\n")


def test_an_entry_point_adds_a_design_by_name(tmp_path):
    _distribution(tmp_path, "my-qemu = extra_designs:MyQemu")
    proc = _designs_of_a_fresh_process(tmp_path, {"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].split()[-1] == "my-qemu"
    assert "entry point my-qemu = extra_designs:MyQemu" in proc.stdout
    # A trace naming it replays with no --load.
    trace = my_trace(tmp_path, QEMU_REGRESSIONS[0])
    replayed = rig("replay", "--quiet", str(trace), cwd=tmp_path,
                   env={"PYTHONPATH": str(tmp_path)})
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr


@pytest.mark.parametrize("entry,message", [
    ("hardened = extra_designs:Clash", "is a built-in design's"),
    ("other-name = extra_designs:MyQemu", "the entry point takes the design's name"),
    ("plain = extra_designs:Plain", "is not a Design subclass"),
])
def test_a_bad_entry_point_is_one_line_exit_1(tmp_path, entry, message):
    _distribution(tmp_path, entry)
    proc = rig("designs", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


# -- the command line ---------------------------------------------------------------------

def test_replay_needs_the_design_and_load_gives_it(design_file, tmp_path):
    trace = my_trace(tmp_path, QEMU_REGRESSIONS[-1])
    unknown = rig("replay", str(trace), cwd=tmp_path)
    assert unknown.returncode == 1, unknown.stdout + unknown.stderr
    assert "unknown design 'my-qemu'" in unknown.stderr and "--load" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1, unknown.stderr
    loaded = rig("replay", "--load", "./mydesign.py:MyQemu", str(trace), cwd=tmp_path)
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    assert "config: design=my-qemu" in loaded.stdout
    assert "(matches)" in loaded.stdout
    by_env = rig("replay", "--quiet", str(trace), cwd=tmp_path,
                 env={designs.ENV: f"{design_file}:MyQemu"})
    assert by_env.returncode == 0, by_env.stdout + by_env.stderr


@pytest.mark.parametrize("command", [
    ["replay", "--load", "./missing.py:MyQemu", "x.trace"],
    ["designs", "--load", "./mydesign.py:Plain"],
    ["sweep", "--design", "./mydesign.py:Nope", "--profile", "quick"],
    ["minimize", "--load", "no_such_package.mod:MyQemu", "x.trace"],
    ["fuzz", "--design", "./mydesign.py:Clash", "--time", "1"],
])
def test_a_bad_spec_on_the_command_line_is_exit_1(design_file, tmp_path, command):
    proc = rig(*command, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_minimize_verifies_in_fresh_processes_with_the_design(design_file, tmp_path):
    """rig minimize's 3/3 check replays in fresh interpreters: they get the design too."""
    unminimized = next(p for p in (ROOT / "corpora" / "unminimized").glob("*qemu-10.1.trace"))
    trace = my_trace(tmp_path, unminimized)
    out = tmp_path / "regressions"
    proc = rig("minimize", "--load", "./mydesign.py:MyQemu", "--out", str(out), str(trace),
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    written = list(out.glob("*-my-qemu-*.trace"))
    assert len(written) == 1, proc.stdout
    assert "design=my-qemu" in written[0].read_text()


def test_sweep_and_designs_take_a_spec(design_file, tmp_path):
    """The sweep's workers load the user's design too; MyQemu is qemu-10.1 by another
    name, so its cell ends every run as qemu-10.1's does (the digests differ only where
    qemu-10.1's own regression traces make a break known)."""
    sweep = rig("sweep", "--design", "./mydesign.py:MyQemu", "--design", "qemu-10.1",
                "--profile", "quick", "--plan", "map", "--shape", "small", "--iommu", "type1",
                "-n", "2", "--json", "--out", str(tmp_path / "sw"), cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stdout + sweep.stderr
    doc = json.loads(sweep.stdout)
    outcomes = {c["design"]: (c["runs"], c["outcomes"]) for c in doc["cells"]
                if c["status"] == "ok"}
    assert set(outcomes) == {"my-qemu", "qemu-10.1"}, doc["cells"]
    assert outcomes["my-qemu"] == outcomes["qemu-10.1"]
    rows = doc["matrix"]["rows"]
    assert rows["my-qemu"]["map"]["verdict"] == rows["qemu-10.1"]["map"]["verdict"] == "broken"
    table = rig("designs", "--load", "./mydesign.py:MyQemu", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "my-qemu" in table.stdout
    listed = rig("list", "designs", "--load", "./mydesign.py:MyQemu", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "my-qemu" in listed.stdout and "./mydesign.py:MyQemu" in listed.stdout


def test_the_fuzz_target_instruments_an_external_design(tmp_path):
    """A design file is imported by its path, past atheris' import hook: the fuzz target
    instruments its code itself, so libFuzzer sees the edges of the code under test."""
    pytest.importorskip("atheris")
    path = tmp_path / "hooked.py"
    path.write_text(MY_DESIGN.replace('    budget_check = "warn"\n', '''    budget_check = "warn"

    def kvm_convert_memory(self, world, start, size, to_private):
        if size > 0x100000:
            return -22
        return super().kvm_convert_memory(world, start, size, to_private)
''', 1))
    code = (
        "import atheris\n"
        "from rig.drive.target import instrument_external_designs\n"
        "from rig.world.designs import DESIGNS\n"
        "func = DESIGNS['my-qemu'].kvm_convert_memory\n"
        "before = func.__code__.co_code\n"
        "print(instrument_external_designs(atheris))\n"
        "print(func.__code__.co_code != before)\n")
    env = dict(os.environ, **{designs.ENV: f"{path}:MyQemu"})
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    names, changed = proc.stdout.splitlines()
    assert "MyQemu.kvm_convert_memory" in names and changed == "True", proc.stdout
