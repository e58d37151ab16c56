"""The CI and ClusterFuzzLite layout, checked without Docker: .clusterfuzzlite/
(project.yaml, Dockerfile, build.sh), the fuzz dictionaries, ci/make_fuzz_seeds.py and
the workflows in .github/workflows/.

build.sh is run for real in a sandbox, with OSS-Fuzz's commands (pip3,
compile_python_fuzzer) replaced by stubs that record their arguments, so the list of
fuzzers it compiles and what it leaves in $OUT are what the image would get."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from rig.drive.harnesses import HARNESSES

ROOT = Path(__file__).resolve().parents[2]
CFL = ROOT / ".clusterfuzzlite"
BUILD_SH = CFL / "build.sh"
SEEDS = ROOT / "ci" / "make_fuzz_seeds.py"
WORKFLOWS = ROOT / ".github" / "workflows"

SHIPPED = sorted(n for n, h in HARNESSES.items() if h.kind != "canary")
CANARIES = sorted(n for n, h in HARNESSES.items() if h.kind == "canary")


def _env(**extra) -> dict:
    env = dict(os.environ)
    env.pop("RIG_PUREPYTHON", None)
    env.update(extra)
    return env


# -- project.yaml and Dockerfile ----------------------------------------------------------

def test_project_yaml_says_language_python():
    text = (CFL / "project.yaml").read_text()
    assert re.search(r"^language:\s*python\s*$", text, re.MULTILINE), text
    doc = yaml.safe_load(text)
    assert doc["language"] == "python"
    assert set(doc.get("sanitizers", ["address"])) <= {"address", "undefined"}


def test_dockerfile_builds_from_base_builder_python_and_copies_the_repo():
    lines = [ln.split("#")[0].strip() for ln in (CFL / "Dockerfile").read_text().splitlines()]
    lines = [ln for ln in lines if ln]
    assert lines[0] == "FROM gcr.io/oss-fuzz-base/base-builder-python"
    assert "COPY . $SRC/gmem-rig" in lines
    assert "WORKDIR $SRC/gmem-rig" in lines
    assert "COPY .clusterfuzzlite/build.sh $SRC/" in lines
    assert 'ROOT="$SRC/gmem-rig"' in BUILD_SH.read_text()


# -- build.sh --------------------------------------------------------------------------

def test_build_sh_is_bash_n_clean():
    subprocess.run(["bash", "-n", str(BUILD_SH)], check=True)


def test_build_sh_compiles_the_list_of_make_fuzz_seeds():
    """build.sh loops over `make_fuzz_seeds.py --list` and calls compile_python_fuzzer on
    fuzz/<name>.py for each: the effective list is that selection, run here."""
    text = BUILD_SH.read_text()
    code = "\n".join(ln.split("#")[0] for ln in text.splitlines())
    assert re.search(r'fuzzers="\$\(RIG_PUREPYTHON=1 python3 ci/make_fuzz_seeds.py --list\)"',
                     code)
    loop = re.search(r"for name in \$fuzzers; do\n(.*?)\ndone", code, re.DOTALL)
    assert loop, "build.sh must loop over $fuzzers"
    assert re.search(r'compile_python_fuzzer "\$ROOT/fuzz/\$name\.py"', loop.group(1))
    assert code.count("compile_python_fuzzer") == 1, "one call, in the loop"
    for canary in CANARIES:
        assert canary not in code

    listed = subprocess.run([sys.executable, str(SEEDS), "--list"], check=True,
                            capture_output=True, text=True, env=_env()).stdout.split()
    assert listed == SHIPPED
    assert not set(listed) & set(CANARIES)
    for name in listed:
        assert (ROOT / "fuzz" / f"{name}.py").is_file()
        assert HARNESSES[name].script == name


def _stub(path: Path, body: str) -> None:
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def test_build_sh_runs_in_a_sandbox(tmp_path):
    """Run build.sh as `compile` would (bash -eux, from WORKDIR) on a copy of the tree,
    with pip3 and compile_python_fuzzer stubbed; the core import check runs for real."""
    if not list((ROOT / "rig" / "core" / "cy").glob("iommu*.so")):
        pytest.skip("the Cython core is not built in this tree")
    src, out, work, bin_ = (tmp_path / d for d in ("src", "out", "work", "bin"))
    for d in (src, out, work, bin_):
        d.mkdir()
    tree = src / "gmem-rig"
    ignore = shutil.ignore_patterns("__pycache__", "*.c", "*.pyc")
    for name in ("rig", "fuzz", "ci", "corpora", ".clusterfuzzlite"):
        shutil.copytree(ROOT / name, tree / name, ignore=ignore)
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, tree / name)
    (tree / "build" / "stale").mkdir(parents=True)
    shutil.copy2(BUILD_SH, src / "build.sh")

    log = tmp_path / "calls.log"
    _stub(bin_ / "pip3", f'echo "pip3 $*" >> {log}\n')
    _stub(bin_ / "compile_python_fuzzer", f'echo "compile_python_fuzzer $PWD $*" >> {log}\n')
    _stub(bin_ / "python3", f'exec {sys.executable} "$@"\n')
    env = _env(PATH=f"{bin_}:{os.environ['PATH']}", SRC=str(src), OUT=str(out),
               WORK=str(work), SANITIZER="address", PYTHONPATH=str(tree),
               RIG_PUREPYTHON="1", RIG_SANITIZE="fuzzer")
    proc = subprocess.run(["bash", "-eux", str(src / "build.sh")], cwd=tree, env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]

    calls = log.read_text().splitlines()
    assert calls[0] == "pip3 install .[test]"
    compiled = [c.split() for c in calls if c.startswith("compile_python_fuzzer ")]
    assert [c[2] for c in compiled] == [str(tree / "fuzz" / f"{n}.py") for n in SHIPPED]
    for c in compiled:
        assert c[1] == str(work), "compile_python_fuzzer must run outside the source tree"
        hidden = {c[i + 1] for i, a in enumerate(c) if a == "--hidden-import"}
        for backend in ("cy", "pure"):
            for mod in ("bitmap", "ram_block_attributes", "iommu", "vfio"):
                assert f"rig.core.{backend}.{mod}" in hidden
        # rig.world.designs finds its designs by listing its package.
        for design in (ROOT / "rig" / "world" / "designs").glob("*.py"):
            if design.stem != "__init__":
                assert f"rig.world.designs.{design.stem}" in hidden
        assert not any(h.endswith("__init__") for h in hidden)
    assert not (tree / "build").exists(), "a stale build/ must not be reused"

    files = sorted(p.name for p in out.iterdir())
    want = {f"{n}_seed_corpus.zip" for n in SHIPPED}
    want |= {f"{n}.dict" for n in SHIPPED if (ROOT / "fuzz" / f"{n}.dict").is_file()}
    assert set(files) == want
    for canary in CANARIES:
        assert not any(f.startswith((canary + "_", canary + ".")) for f in files)
    for n in SHIPPED:
        dict_file = ROOT / "fuzz" / f"{n}.dict"
        if dict_file.is_file():
            assert (out / f"{n}.dict").read_bytes() == dict_file.read_bytes()


# -- dictionaries ------------------------------------------------------------------------

_ENTRY = re.compile(r'^(?:[A-Za-z0-9_]+=)?"(.*)"$')
MAX_WORD = 64  # libFuzzer's Word::GetMaxSize(): longer entries are silently dropped


def parse_libfuzzer_dict(text: str) -> list[tuple[int, bytes]]:
    """libFuzzer's ParseDictionaryFile (FuzzerUtil.cpp), a little stricter: every line
    is empty, a '#' comment, or [name=]"value" where value is printable ASCII with the
    escapes \\\\, \\" and \\xHH only, not empty and at most 64 bytes."""
    entries = []
    for lineno, line in enumerate(text.split("\n"), 1):
        s = line.strip(" \t\r\f\v")
        if not s or s.startswith("#"):
            continue
        m = _ENTRY.match(s)
        assert m, f"line {lineno}: not [name=]\"value\": {line!r}"
        body, value, i = m.group(1), bytearray(), 0
        while i < len(body):
            c = body[i]
            assert " " <= c <= "~" or c == "\t", f"line {lineno}: byte {c!r} is not printable"
            if c == "\\":
                if body[i + 1:i + 2] in ("\\", '"'):
                    value.append(ord(body[i + 1]))
                    i += 2
                    continue
                hexpart = body[i + 1:i + 4]
                assert re.fullmatch(r"x[0-9A-Fa-f]{2}", hexpart), \
                    f"line {lineno}: invalid escape in {line!r}"
                value.append(int(hexpart[1:], 16))
                i += 4
                continue
            assert c != '"', f"line {lineno}: unescaped quote in {line!r}"
            value.append(ord(c))
            i += 1
        assert value, f"line {lineno}: empty entry"
        assert len(value) <= MAX_WORD, f"line {lineno}: {len(value)} bytes > {MAX_WORD}"
        entries.append((lineno, bytes(value)))
    return entries


def test_dictionary_parser_accepts_and_rejects_like_libfuzzer():
    ok = '# c\n\nkw1="blah"\n"\\xF7\\xF8"\nkw3="\\\\ and \\" quote"\n  "x"  \n'
    assert [v for _, v in parse_libfuzzer_dict(ok)] == [b"blah", b"\xf7\xf8",
                                                        b'\\ and " quote', b"x"]
    for bad in ('kw="\\n"', 'kw=""', 'kw=blah', '"\\x4"', 'kw="é"', '"a"b"'):
        with pytest.raises(AssertionError):
            parse_libfuzzer_dict(bad)


DICTS = sorted((ROOT / "fuzz").glob("*.dict"))


def test_the_required_dictionaries_exist():
    names = {p.stem for p in DICTS}
    assert {"trace_text", "convert"} <= names
    assert names <= set(SHIPPED), "a dictionary for a harness that is not shipped"


@pytest.mark.parametrize("path", DICTS, ids=[p.name for p in DICTS])
def test_dictionary_parses_as_libfuzzer_syntax(path):
    text = path.read_text(encoding="ascii")
    entries = parse_libfuzzer_dict(text)
    assert len(entries) >= 5
    names = re.findall(r"^\s*([A-Za-z0-9_]+)=", text, re.MULTILINE)
    assert len(names) == len(set(names)), "duplicate entry names"


def test_trace_text_dictionary_speaks_the_trace_format():
    values = {v for _, v in parse_libfuzzer_dict((ROOT / "fuzz" / "trace_text.dict").read_text())}
    from rig.world.faults import SITES
    from rig.world.ops import OPS
    from rig.trace.format import MAGIC

    assert MAGIC.encode() in values
    for name in OPS:
        assert f"{name}(".encode() in values
    for site in SITES:
        assert any(v.startswith(f"{site}=".encode()) for v in values)


# -- ci/make_fuzz_seeds.py ---------------------------------------------------------------

def _make_seeds(cwd: Path, outdir: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SEEDS), outdir], cwd=cwd, env=_env(),
                          capture_output=True, text=True, check=True)


def test_make_fuzz_seeds_writes_one_deterministic_zip_per_shipped_harness(tmp_path):
    first = _make_seeds(tmp_path, "a")
    second = _make_seeds(tmp_path, "b")
    a, b = tmp_path / "a", tmp_path / "b"
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(f"{n}_seed_corpus.zip" for n in SHIPPED)
    assert sorted(p.name for p in b.iterdir()) == names
    assert len(first.stdout.splitlines()) == len(SHIPPED)
    assert len(second.stdout.splitlines()) == len(SHIPPED)
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
        with zipfile.ZipFile(a / name) as zf:
            assert zf.testzip() is None
            infos = zf.infolist()
            assert infos, f"{name} is empty"
            assert all(i.file_size > 0 for i in infos)
            assert [i.filename for i in infos] == sorted(i.filename for i in infos)


def test_make_fuzz_seeds_uses_the_regressions_and_the_corpora_folders(tmp_path):
    """trace_text seeds are the regression traces (read next to the repo's rig, even
    with an installed copy), and files in corpora/<harness>/ are added."""
    corpora = tmp_path / "corpora"
    shutil.copytree(ROOT / "corpora" / "regressions", corpora / "regressions")
    (corpora / "convert").mkdir()
    (corpora / "convert" / "extra").write_bytes(b"\x01\x00\x01\x01extra-seed")
    (corpora / "convert" / ".gitkeep").write_bytes(b"")
    subprocess.run([sys.executable, str(SEEDS), "out", "--corpora", str(corpora)],
                   cwd=tmp_path, env=_env(), check=True, capture_output=True)
    with zipfile.ZipFile(tmp_path / "out" / "convert_seed_corpus.zip") as zf:
        contents = {zf.read(i) for i in zf.infolist()}
    assert b"\x01\x00\x01\x01extra-seed" in contents
    assert len(contents) == len(HARNESSES["convert"].seeds()) + 1
    with zipfile.ZipFile(tmp_path / "out" / "trace_text_seed_corpus.zip") as zf:
        contents = {zf.read(i) for i in zf.infolist()}
    for trace in (ROOT / "corpora" / "regressions").glob("*.trace"):
        assert trace.read_bytes() in contents


# -- workflows ---------------------------------------------------------------------------

def _steps(job: dict) -> list:
    return job.get("steps", [])


def _runs(job: dict) -> str:
    return "\n".join(s.get("run", "") for s in _steps(job))


def test_workflows_mention_the_ci_scripts_and_the_budget():
    fuzz = (WORKFLOWS / "fuzz.yml").read_text()
    for needle in ("ci/test", "ci/fuzz", "RIG_FUZZ_TIME=120 ci/fuzz",
                   "RIG_FUZZ_TIME=3600 ci/fuzz", "actions/upload-artifact"):
        assert needle in fuzz, needle
    cflite = (WORKFLOWS / "cflite.yml").read_text()
    for needle in ("google/clusterfuzzlite/actions/build_fuzzers@v1",
                   "google/clusterfuzzlite/actions/run_fuzzers@v1",
                   "language: python", "mode: code-change", "mode: batch"):
        assert needle in cflite, needle


def _load(name: str) -> dict:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(doc, dict) and doc.get("jobs")
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    return doc


def test_fuzz_workflow_structure():
    doc = _load("fuzz.yml")
    assert {"pull_request", "schedule", "workflow_dispatch"} <= set(doc["on"])
    assert doc["on"]["schedule"][0]["cron"]
    jobs = doc["jobs"]
    pr = [j for j in jobs.values() if "pull_request" in j.get("if", "")]
    nightly = [j for j in jobs.values() if "schedule" in j.get("if", "")]
    assert len(pr) == 1 and len(nightly) == 1
    pr_runs, nightly_runs = _runs(pr[0]), _runs(nightly[0])
    assert pr_runs.index("ci/test") < pr_runs.index("RIG_FUZZ_TIME=120 ci/fuzz")
    assert "RIG_FUZZ_TIME=3600 ci/fuzz" in nightly_runs
    for job in (pr[0], nightly[0]):
        assert "3.11" in str(job.get("container", "")) or any(
            "setup-python" in s.get("uses", "") for s in _steps(job))
        uploads = [s for s in _steps(job) if "actions/upload-artifact" in s.get("uses", "")]
        assert any("artifacts/" in s["with"]["path"] and s.get("if") in ("always()", "failure()")
                   for s in uploads)
    uses = [s.get("uses", "") for s in _steps(nightly[0])]
    assert any(u.startswith("actions/cache/save") for u in uses)
    assert any(u.startswith("actions/cache/restore") for u in uses)


def test_cflite_workflow_structure():
    doc = _load("cflite.yml")
    assert {"pull_request", "schedule"} <= set(doc["on"])
    modes, steps = set(), []
    for job in doc["jobs"].values():
        for step in _steps(job):
            if "google/clusterfuzzlite/actions/" in step.get("uses", ""):
                steps.append(step)
                assert step["with"]["language"] == "python"
                if "run_fuzzers" in step["uses"]:
                    modes.add(step["with"]["mode"])
                    assert int(step["with"]["fuzz-seconds"]) > 0
    assert {"code-change", "batch"} <= modes
    sanitizers = {str(s["with"].get("sanitizer")) for s in steps}
    assert any("address" in s or "matrix.sanitizer" in s for s in sanitizers)
    matrices = [j.get("strategy", {}).get("matrix", {}).get("sanitizer", [])
                for j in doc["jobs"].values()]
    assert all(m == ["address"] for m in matrices if m)
