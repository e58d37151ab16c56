"""The package is self-contained.  The instrumented core builds from the package's own
sources into a cache, never into the package nor with a checkout's setup.py.  The wheel,
installed into a fresh venv and run from an empty directory (PYTHONPATH unset, so
nothing of the checkout is importable), fuzzes every harness with real exec counts,
builds the instrumented core from the installed ``.pyx`` into the user's cache, replays
a shipped regression trace, finds the shipped scenarios and fuzzes a design written
outside the package.

Offline, as CI runs it: the wheel is built from a copy of the tree with ``pip wheel
--no-deps --no-build-isolation`` (this venv's setuptools, Cython and wheel: the test
extra pulls in wheel), and the fresh venv (``python -m venv``: pip and setuptools come
from ensurepip's bundled wheels) installs it with ``pip install --no-index --find-links
WHEELHOUSE 'gmem_rig-*.whl[fuzz]'``, where WHEELHOUSE holds wheels repacked from this
venv's installed distributions (``repack``) for everything the ``fuzz`` extra needs,
found by walking their metadata's requirements.  So pip resolves the extra's
requirements against the wheel's own metadata, as it would from an index, and nothing
of this venv (where rig is installed editable) is on the fresh venv's path.
"""

import base64
import csv
import email.parser
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from rig.drive import native

ROOT = Path(__file__).resolve().parents[2]


#: What the copy of the tree leaves out: builds, venvs, caches, campaign output.
IGNORE = shutil.ignore_patterns(".git", ".venv*", "build", "build-*", "dist", "artifacts",
                                "*.egg-info", "__pycache__", "*.so", "*.c", "*.pyc",
                                ".hypothesis", ".pytest_cache", "crashes")

#: A copy of qemu-10.1's behaviour under another name, outside the package.
MY_DESIGN = '''\
from rig.world.designs.base import Qemu101Conversion


class MyQemu(Qemu101Conversion):
    """Contract: QEMU 10.1's conversion path, under another name."""

    name = "my-qemu"
    rollback = "none"
    budget_check = "warn"
'''


def _requirements(requires, extras=()) -> list[str]:
    """The names of the requirements (Requires-Dist lines) that apply with ``extras``."""
    from packaging.requirements import Requirement

    out = []
    for text in requires or ():
        req = Requirement(text)
        envs = [{"extra": e} for e in extras] or [{"extra": ""}]
        if req.marker is None or any(req.marker.evaluate(env) for env in envs):
            out.append(req.name)
    return out


def _record_line(name: str, data: bytes) -> list[str]:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return [name, f"sha256={digest}", str(len(data))]


def repack(dist: importlib.metadata.Distribution, out: Path) -> Path:
    """A wheel of an installed distribution: the files its RECORD lists under
    site-packages (scripts outside it are left to pip, which writes console scripts
    from entry_points.txt again), with a fresh RECORD.  The tag is the one its WHEEL
    file names."""
    info = Path(dist._path)  # noqa: SLF001 - the .dist-info folder
    site = info.parent
    wheel_meta = (info / "WHEEL").read_text()
    tags = [line.split(":", 1)[1].strip().split("-") for line in wheel_meta.splitlines()
            if line.startswith("Tag:")]
    tag = "-".join(".".join(dict.fromkeys(t[i] for t in tags)) for i in range(3))
    name = dist.metadata["Name"].replace("-", "_")
    path = out / f"{name}-{dist.version}-{tag}.whl"
    record = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as whl:
        for file in dist.files or ():
            rel = file.as_posix()
            if rel.startswith("..") or "__pycache__" in rel or rel.endswith(".pyc"):
                continue
            if rel.startswith(info.name + "/") and Path(rel).name in (
                    "RECORD", "INSTALLER", "REQUESTED", "direct_url.json"):
                continue
            source = site / rel
            if not source.is_file():
                continue
            data = source.read_bytes()
            whl.writestr(rel, data)
            record.append(_record_line(rel, data))
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(record + [[f"{info.name}/RECORD", "", ""]])
        whl.writestr(f"{info.name}/RECORD", buf.getvalue())
    return path


def wheelhouse(wheel: Path, out: Path, extras: list[str]) -> list[str]:
    """Wheels of every installed distribution that ``wheel``'s ``extras`` need (its own
    metadata says which), transitively."""
    with zipfile.ZipFile(wheel) as whl:
        meta = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        message = email.parser.Parser().parsestr(whl.read(meta).decode())
    todo = _requirements(message.get_all("Requires-Dist"), extras)
    done: set = set()
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in done:
            continue
        done.add(name)
        dist = importlib.metadata.distribution(name)
        repack(dist, out)
        todo += _requirements(dist.requires)
    return sorted(done)


def _clean_env(venv: Path, **extra) -> dict:
    """The environment of a user of the fresh venv: its bin first, nothing of the rig's
    own environment variables or of this venv."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RIG_", "PYTHON", "PIP_", "VIRTUAL_ENV", "LD_PRELOAD"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.update(extra)
    return env


# -- the instrumented build: from the package's own sources, into a cache -------------------

def test_the_native_build_goes_to_a_cache_never_into_the_package(monkeypatch, tmp_path):
    monkeypatch.setenv(native.CACHE_ENV, str(tmp_path / "override"))
    assert native.build_dir("fuzzer").parent == tmp_path / "override"
    monkeypatch.delenv(native.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    where = native.build_dir("address")
    assert where.parent == tmp_path / "xdg" / "gmem-rig"
    assert where.name.startswith("native-address-")
    assert not where.is_relative_to(native.SOURCES.parents[2])


def test_the_build_is_keyed_by_its_inputs(monkeypatch, tmp_path):
    """Another mode, or a changed .pyx, is another folder: a build is never replaced
    under a campaign that runs it."""
    for source in native.sources():
        shutil.copyfile(source, tmp_path / source.name)
    monkeypatch.setattr(native, "SOURCES", tmp_path)
    first = native.build_dir("fuzzer")
    assert native.build_dir("fuzzer") == first != native.build_dir("undefined")
    pyx = next(tmp_path.glob("*.pyx"))
    pyx.write_text(pyx.read_text() + "\n# changed\n")
    assert native.build_dir("fuzzer") != first
    assert native.modules() == sorted(p.stem for p in tmp_path.glob("*.pyx"))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("clang") is None, reason=f"clang not installed "
                    f"({native.INSTALL_HINT})")
def test_the_native_build_works_from_a_package_without_its_checkout(tmp_path):
    """The package alone (as a wheel installs it: no setup.py, no build/ beside it),
    builds the instrumented core into the cache, and the harness environment imports
    it from there."""
    site = tmp_path / "site"
    shutil.copytree(ROOT / "rig", site / "rig", ignore=IGNORE)
    # A wheel holds the package's own (plain) build of the core: rig.core imports.
    for so in (ROOT / "rig" / "core" / "cy").glob("*.so"):
        shutil.copyfile(so, site / "rig" / "core" / "cy" / so.name)
    shipped = sorted(site.rglob("*.so"))
    assert shipped
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RIG_", "PYTHON"))}
    env.update(PYTHONPATH=str(site), RIG_NATIVE_CACHE=str(tmp_path / "cache"))
    build = subprocess.run(
        [sys.executable, "-c", "from rig.drive import native; import json; "
         "d = native.ensure_build('fuzzer'); print(json.dumps(native.env_for('fuzzer', d)))"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout + build.stderr
    harness_env = json.loads(build.stdout.splitlines()[-1])
    assert harness_env["RIG_NATIVE_DIR"].startswith(str(tmp_path / "cache"))
    assert sorted(site.rglob("*.so")) == shipped and not list(site.rglob("*.c")), \
        "nothing is written into the package"
    imported = subprocess.run(
        [sys.executable, "-c", "import rig.core.cy.ram_block_attributes as m; print(m.__file__)"],
        cwd=tmp_path, env=dict(env, **harness_env), capture_output=True, text=True, timeout=120)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip().startswith(harness_env["RIG_NATIVE_DIR"])


# -- the wheel, in a fresh venv ---------------------------------------------------------------

@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    if importlib.util.find_spec("wheel") is None:
        pytest.skip("the wheel package is not installed (pip install -e .[test])")
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris is not installed (pip install -e .[fuzz])")
    base = tmp_path_factory.mktemp("wheel")
    tree, dist, house, venv = (base / d for d in ("tree", "dist", "house", "venv"))
    shutil.copytree(ROOT, tree, ignore=IGNORE)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-q", "-w", str(dist), str(tree)],
        capture_output=True, text=True, timeout=900,
        env={k: v for k, v in os.environ.items() if not k.startswith("RIG_")})
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (wheel,) = dist.glob("gmem_rig-*.whl")
    house.mkdir()
    deps = wheelhouse(wheel, house, ["fuzz"])
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    env = _clean_env(venv)
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index",
         "--find-links", str(house), f"{wheel}[fuzz]"],
        capture_output=True, text=True, env=env, cwd=base, timeout=900)
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
    return {"base": base, "venv": venv, "wheel": wheel, "deps": deps}


def user(installed, *args, cwd, timeout=600, **env):
    """A command of the fresh venv, run as a user would from ``cwd``."""
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=_clean_env(installed["venv"], **env))


def empty_dir(installed, name: str) -> Path:
    path = installed["base"] / name
    path.mkdir()
    return path


@pytest.mark.slow
def test_the_wheel_carries_the_corpora_and_the_core_sources(installed):
    names = zipfile.ZipFile(installed["wheel"]).namelist()
    for folder in ("scenarios", "designs", "regressions", "unminimized", "core", "mutants"):
        shipped = sorted(n.rsplit("/", 1)[1] for n in names
                         if n.startswith(f"rig/_corpora/{folder}/"))
        assert shipped == sorted(p.name for p in (ROOT / "corpora" / folder).glob("*.trace"))
    for source in (ROOT / "rig" / "core" / "cy").glob("*.p[yx][xd]"):
        assert f"rig/core/cy/{source.name}" in names
    assert not [n for n in names if n.endswith(".c")], "cythonize's .c is not shipped"
    assert {"atheris", "cython", "hypothesis"} <= set(installed["deps"])


@pytest.mark.slow
def test_installed_rig_is_not_the_checkout(installed):
    cwd = empty_dir(installed, "which")
    proc = user(installed, "python", "-c", "import rig, rig.trace.corpus as c; "
                "print(rig.__file__); print(c.root())", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    module, corpora = proc.stdout.splitlines()
    site = str(installed["venv"])
    assert module.startswith(site) and corpora.startswith(site), proc.stdout
    assert corpora.endswith("rig/_corpora")


@pytest.mark.slow
def test_replay_and_designs_use_the_shipped_corpora(installed):
    cwd = empty_dir(installed, "replay")
    site = user(installed, "python", "-c", "import rig.trace.corpus as c; print(c.root())",
                cwd=cwd).stdout.strip()
    trace = Path(site) / "regressions" / "stale-mapping-qemu-10.1-c4341ccb.trace"
    replay = user(installed, "rig", "replay", str(trace), cwd=cwd)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "outcome: violation stale-mapping" in replay.stdout
    assert "(matches)" in replay.stdout
    designs = user(installed, "rig", "designs", cwd=cwd)
    assert designs.returncode == 0, designs.stderr
    # Its two cases: corpora/scenarios/seed.trace and corpora/designs/*.trace.
    assert "seed sequence / populate failure in 2nd of 2 listeners" in designs.stdout
    assert "qemu-10.1" in designs.stdout
    # rig sweep runs through pytest-xdist, which the bare wheel does not pull in: one
    # line that says how to get it, before anything is written.
    sweep = user(installed, "rig", "sweep", "--design", "qemu-10.1", "--iommu", "type1",
                 cwd=cwd)
    assert sweep.returncode == 1, sweep.stdout + sweep.stderr
    assert sweep.stderr.strip().splitlines() == [
        line for line in sweep.stderr.strip().splitlines() if "pip install" in line], sweep.stderr
    assert "[sweep]" in sweep.stderr
    assert list(cwd.iterdir()) == [], "replay, designs and a refused sweep write nothing"


def _campaign(installed, cwd: Path, *args) -> tuple[subprocess.CompletedProcess, dict]:
    cache = installed["base"] / "cache"
    proc = user(installed, "rig", "fuzz", "--json", *args, cwd=cwd, timeout=900,
                XDG_CACHE_HOME=str(cache))
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"rig fuzz --json did not print JSON (exit {proc.returncode}):\n"
                    f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc, report


def _default_harnesses(installed, cwd) -> list[str]:
    listed = user(installed, "rig", "list", "harnesses", "--json", cwd=cwd)
    assert listed.returncode == 0, listed.stderr
    return sorted(h["name"] for h in json.loads(listed.stdout)["harnesses"] if h["in_default"])


@pytest.mark.slow
def test_rig_fuzz_runs_every_harness_from_an_empty_directory(installed):
    """The first campaign builds the instrumented core (a cold cache: its set-up eats
    into --time, so it may drop harnesses, and must say so); every harness it ran ran
    inputs.  The next one, from another empty directory, runs every default harness."""
    default = _default_harnesses(installed, empty_dir(installed, "list"))
    cold = empty_dir(installed, "campaign-cold")
    proc, report = _campaign(installed, cold, "--time", "20")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert report["schema"] >= 1
    ran = {h["name"].split(":")[0]: h["runs"] for h in report["harnesses"]}
    dropped = {d["name"].split(":")[0]: d["reason"] for d in report["dropped"]}
    assert ran and all(runs > 0 for runs in ran.values()), (ran, proc.stderr[-3000:])
    assert sorted(set(ran) | set(dropped)) == default, proc.stderr[-3000:]
    assert all(dropped.values()), dropped
    if shutil.which("clang"):
        # The instrumented core, built from the installed .pyx into the user's cache.
        assert report["build"] == "native-fuzzer", proc.stderr[-3000:]
        built = list((installed["base"] / "cache" / "gmem-rig").glob(
            "native-fuzzer-*/rig/core/cy/ram_block_attributes.*.so"))
        assert built, proc.stderr[-3000:]
    assert not list(installed["venv"].rglob("native-*")), "nothing is built in site-packages"

    warm = empty_dir(installed, "campaign-warm")
    proc, report = _campaign(installed, warm, "--time", "30")
    assert proc.returncode == 0, proc.stderr[-3000:]
    ran = {h["name"].split(":")[0]: h["runs"] for h in report["harnesses"]}
    assert sorted(ran) == default and not report["dropped"], proc.stderr[-3000:]
    assert all(runs > 0 for runs in ran.values()), (ran, proc.stderr[-3000:])
    assert report["wall_seconds"] <= 30 + 15, report["wall_seconds"]


@pytest.mark.slow
def test_rig_fuzz_finds_the_bugs_of_a_design_written_outside(installed):
    cwd = empty_dir(installed, "mydesign")
    (cwd / "mydesign.py").write_text(MY_DESIGN)
    proc, report = _campaign(installed, cwd, "--design", "./mydesign.py:MyQemu",
                             "--harness", "convert_explicit", "--time", "20")
    assert proc.returncode == 2, proc.stderr[-3000:]
    (run,) = report["harnesses"]
    assert run["name"] == "convert_explicit:my-qemu" and run["runs"] > 0
    found = [f for f in report["findings"] if f["harness"] == "convert_explicit:my-qemu"]
    assert found, report
    assert any(sig in f["signature"] for f in found
               for sig in ("shared-unmapped", "stale-mapping", "attr-agree")), report
    trace = next(f["trace"] for f in found if f["trace"])
    replay = user(installed, "rig", "replay", "--load", "./mydesign.py:MyQemu", trace, cwd=cwd)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "config: design=my-qemu" in replay.stdout
