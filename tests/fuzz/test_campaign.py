"""`rig fuzz` as CI and users run it: the smoke mode (canaries must fail), short campaigns
that must find, minimize and replay a bug, and everything the campaign reports held to
what happened: one finding per bug (two planted bugs, one in the core and one in a
design of one's own, in one campaign), every harness' runs, the wall clock of --time,
a worker that dies, Ctrl-C, --json on stdout alone, libFuzzer flags after --.

The campaigns run as the command does (``python -m rig.cli.main fuzz``), with their
corpora and artifacts in a temporary folder; the unit tests at the end call the
campaign's parts in-process.
"""

import json
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE = os.environ.get("RIG_PUREPYTHON", "") not in ("", "0")
#: Seconds a campaign may run past its --time on this shared, noisy machine (the defect
#: this guards against: `--time 20` took 39 s).
MARGIN_S = 8.0
CORE_BUG = "core mismatch result in translate"
DESIGN_BUG = "violation shared-unmapped in vfio_unregister"

slow = pytest.mark.slow


def rig(*args, timeout=900, env=None, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "rig.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))


def fuzz(tmp_path, *args, **kwargs):
    """A campaign with its corpora and artifacts under ``tmp_path``; (process, seconds)."""
    start = time.monotonic()
    proc = rig("fuzz", "--corpus-dir", str(tmp_path / "corpora"), "--artifacts",
               str(tmp_path / "art"), *args, **kwargs)
    return proc, time.monotonic() - start


def report_of(proc) -> dict:
    """--json's document: stdout is the document and nothing else."""
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        pytest.fail(f"stdout is not one JSON document:\n{proc.stdout[:2000]}\n"
                    f"stderr:\n{proc.stderr[-3000:]}")
    assert report["schema"] == 1
    return report


def _why(proc) -> str:
    return proc.stdout[-3000:] + "\n" + proc.stderr[-3000:]


#: A sitecustomize for the campaign's processes (PYTHONPATH): the pure-Python twin's
#: IOMMU answers a DMA write to an unmapped IOVA with -ENOENT instead of -EFAULT, so the
#: core harnesses (the Cython core vs the twin vs the model) find "core mismatch result
#: in translate" within a few hundred runs.  It patches the twin before the harness is
#: imported, in the campaign and in every worker alike, and nothing of the rig knows.
PLANTED_TWIN = '''
import errno

import rig.core.pure.iommu as _iommu

_translate = _iommu._IoPageTable.translate


def _planted(self, iova, write=False):
    ret = _translate(self, iova, write)
    return -errno.ENOENT if write and ret == -errno.EFAULT else ret


_iommu._IoPageTable.translate = _planted
'''

#: A design of one's own with one planted bug, loaded with --design FILE:CLASS: hardened,
#: except that a hot-unplug of a device with mappings closes its container and leaves
#: its listeners registered.  The oracle sees it on that op (shared-unmapped), so it has
#: one signature; it stays out of interleaved ops (which would name another op kind).
PLANTED_DESIGN = '''
import sys

from rig.world.designs.hardened import Hardened


def _interleaved():
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "_fire_interleave":
            return True
        frame = frame.f_back
    return False


class UnplugKeepsListeners(Hardened):
    name = "planted-unplug"

    def vfio_device_remove(self, world, dev):
        device = world.devices[("vfio", dev)]
        if world._interleave is None and not _interleaved() and device.container.mappings():
            world.release_container(device)  # planted: the listeners stay registered
            return 0
        return super().vfio_device_remove(world, dev)
'''


#: A sitecustomize that plants a bug of the rig itself: attr-agree's incremental twin
#: proves every world clean, so the full check it is compared with at a run's end
#: disagrees (rig.check.oracle.IncrementalMismatch) on the first input whose world
#: breaks attr-agree.  qemu-10.1 does within a few hundred runs.
PLANTED_ORACLE = '''
import rig.check.oracle as _oracle

_oracle.INCREMENTAL = tuple(
    inc if inc.name != "check_attributes" else
    type(inc)(inc.check, lambda world, view: [], None)
    for inc in _oracle.INCREMENTAL)
'''


def _sitecustomize(tmp_path, text: str) -> dict:
    folder = tmp_path / "site"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(textwrap.dedent(text))
    path = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": str(folder) + (os.pathsep + path if path else "")}


@pytest.fixture(scope="module")
def built():
    """The instrumented core, built before a test whose campaign is timed (a first build
    takes tens of seconds, which the campaign would rightly count against --time)."""
    if PURE:
        return
    from rig.drive import native

    try:
        native.ensure_build("fuzzer", log=lambda message: None)
    except native.NativeUnavailable:
        pass  # the campaign falls back to the plain build at once


# -- campaigns ------------------------------------------------------------------------------

@slow
def test_smoke_every_harness_and_the_canary_fails(tmp_path):
    proc, _ = fuzz(tmp_path, "--smoke", "--json")
    assert proc.returncode == 0, _why(proc)
    report = report_of(proc)  # (stdout whole: the banners go to stderr)
    assert "rig fuzz: seed=" in proc.stderr
    assert report["findings"] == [] and report["silent_canaries"] == []
    assert report["errors"] == [] and report["exit_code"] == 0
    names = {h["name"] for h in report["harnesses"]}
    assert {"core_differential", "iommu", "convert:hardened", "trace_text:hardened",
            "statemachine:hardened", "canary"} <= names
    canary = next(h for h in report["harnesses"] if h["name"] == "canary")
    assert len(canary["findings"]) == 1
    assert all(h["runs"] > 0 and h["seconds"] > 0 for h in report["harnesses"])
    if PURE:  # the twin has no native branch: the native canary is skipped, and says why
        assert [s["name"] for s in report["skipped"]] == ["native_canary"]
        assert "pure-Python twin" in report["skipped"][0]["reason"]
    else:
        assert "native_canary" in names or report["build"] == "plain"


@slow
def test_a_known_bad_design_gives_new_findings_and_meets_its_known_one(tmp_path):
    """uncoordinated's defining bug is in the regression corpus: it is known, so the
    workers skip it and the summary says they met it (trace_text runs the regression
    corpus first, so they always do); what else they find is new, and each new finding
    is a short trace that replays as it says."""
    from rig.trace.corpus import regressions

    (regression,) = [p for p in regressions() if "-uncoordinated-" in p.name]
    proc, _ = fuzz(tmp_path, "--design", "uncoordinated", "--harness", "trace_text",
                   "--time", "15", "--json")
    assert proc.returncode == 2, _why(proc)
    report = report_of(proc)
    (h,) = report["harnesses"]
    sources = {k["signature"]: k["source"] for k in h["known_seen"]}
    assert "violation stale-mapping in kvm_convert_memory" in sources, h["known_seen"]
    assert Path(sources["violation stale-mapping in kvm_convert_memory"]).name == regression.name
    signatures = [f["signature"] for f in report["findings"]]
    assert signatures and len(set(signatures)) == len(signatures)
    assert not set(signatures) & set(sources)
    finding = report["findings"][0]
    trace, raw = (Path(finding[k]) for k in ("trace", "raw"))
    trace, raw = (p if p.is_absolute() else ROOT / p for p in (trace, raw))
    assert trace.exists() and raw.exists()
    assert len([line for line in trace.read_text().splitlines() if not line.startswith("#")]) <= 8
    replay = rig("replay", str(trace))
    assert replay.returncode == 0 and "(matches)" in replay.stdout, _why(replay)


@slow
def test_time_bounds_the_whole_campaign_and_every_harness_runs(tmp_path, built):
    """`--time 20` is wall clock for everything (it took 39 s), and each harness' line
    says what it did: its runs and its wall time."""
    proc, seconds = fuzz(tmp_path, "--time", "20", "--json")
    assert proc.returncode == 0, _why(proc)
    report = report_of(proc)
    assert seconds <= 20 + MARGIN_S, (seconds, _why(proc))
    assert report["wall_seconds"] <= seconds
    assert report["harnesses"], _why(proc)
    for h in report["harnesses"]:
        assert h["runs"] > 0 and 0 < h["seconds"] <= report["wall_seconds"], h
        assert h["error"] is None and h["workers"] == report["jobs"] >= 1
        _check_series(h, report["wall_seconds"])
    ran = [h["name"] for h in report["harnesses"]]
    assert ran + [d["name"] for d in report["dropped"]] == [
        "core_differential", "iommu", "convert:hardened", "convert_explicit:hardened",
        "trace_text:hardened", "statemachine:hardened"]


def _check_series(h: dict, wall: float) -> None:
    """A harness' time series: samples in time order, counts that never go back, every
    few seconds of its slot, and a last one that holds the harness' totals."""
    series = h["series"]
    assert series, h["name"]
    for before, after in zip(series, series[1:]):
        assert before["t"] <= after["t"] and before["elapsed"] <= after["elapsed"], series
        assert before["runs"] <= after["runs"] and before["cov"] <= after["cov"], series
    assert 0 < series[-1]["t"] <= wall and series[-1]["elapsed"] == round(h["seconds"], 2)
    last = {k: series[-1][k] for k in ("runs", "cov", "corpus")}
    assert last == {k: h[k] for k in last} and series[-1]["findings"] == len(h["findings"])
    # a sample at least every SERIES_EVERY_S (2 s) of the slot, give or take a poll
    assert len(series) >= h["seconds"] // 2.5, (h["seconds"], series)
    assert sum(s["execs_per_s"] > 0 for s in series) >= 1, series


@slow
def test_a_budget_below_the_start_up_cost_drops_harnesses_and_says_so(tmp_path, built):
    proc, seconds = fuzz(tmp_path, "--time", "6", "--jobs", "1")
    assert proc.returncode == 0, _why(proc)
    assert seconds <= 6 + MARGIN_S, (seconds, _why(proc))
    warning = [line for line in proc.stderr.splitlines()
               if "WARNING" in line and "dropping" in line]
    assert warning and "--time 6" in warning[0], proc.stderr
    dropped = [line for line in proc.stdout.splitlines() if line.startswith("dropped ")]
    assert dropped and "statemachine:hardened" in dropped[-1], proc.stdout
    # The summary (stdout) states each harness' runs and wall time; no banner in it.
    assert "rig fuzz: seed=" not in proc.stdout
    rows = [line.split() for line in proc.stdout.splitlines()
            if line.split() and line.split()[0] in ("core_differential", "iommu")]
    assert rows, proc.stdout
    for row in rows:
        assert int(row[3]) > 0 and row[-2].endswith("s"), row
    assert "s of a 6 s budget" in proc.stdout.splitlines()[-1]


@slow
def test_one_core_bug_is_one_finding_and_its_harnesses_keep_running(tmp_path, built):
    """A planted bug of the twin: both core harnesses reach it at once.  It is one
    finding (its signature is the kind of disagreement and the op kind, never the op
    index or arguments), found by the first harness and known to the second, which
    skips it and runs; neither shows 0 runs."""
    env = _sitecustomize(tmp_path, PLANTED_TWIN)
    proc, _ = fuzz(tmp_path, "--harness", "core_differential", "--harness", "iommu",
                   "--time", "16", "--json", env=env)
    assert proc.returncode == 2, _why(proc)
    report = report_of(proc)
    assert [f["signature"] for f in report["findings"]] == [CORE_BUG], report["findings"]
    first, second = report["harnesses"]
    assert first["runs"] > 0 and second["runs"] > 0, report["harnesses"]
    assert [f["signature"] for f in first["findings"]] == [CORE_BUG] and not second["findings"]
    assert {"signature": CORE_BUG, "source": "found by core_differential in this campaign"} \
        in second["known_seen"]
    assert report["findings"][0]["seen_by"] == ["iommu"]
    trace = Path(report["findings"][0]["trace"])
    trace = trace if trace.is_absolute() else ROOT / trace
    assert trace.name.startswith("core-result-translate-")
    assert "# expect: mismatch result in translate" in trace.read_text()


@slow
def test_a_bug_of_the_rig_is_an_infrastructure_failure_not_a_finding(tmp_path, built):
    """The incremental oracle disagreeing with the full one is the rig's bug: the
    campaign exits 3 with one line naming it (once, however many inputs reach it) and
    the raw input it kept, and counts it as no finding about the design."""
    env = _sitecustomize(tmp_path, PLANTED_ORACLE)
    proc, _ = fuzz(tmp_path, "--design", "qemu-10.1", "--harness", "convert", "--time",
                   "20", "--json", env=env)
    assert proc.returncode == 3, _why(proc)
    report = report_of(proc)
    bugs = [e for e in report["errors"] if "the incremental oracle disagrees" in e]
    assert len(bugs) == 1 and "check_attributes: a bug of the rig" in bugs[0], report["errors"]
    raw = bugs[0].split("kept: ")[1].split(";")[0]
    assert (ROOT / raw).is_file() or Path(raw).is_file(), raw
    assert not any("rig bug" in f["signature"] for f in report["findings"]), report["findings"]


@slow
@pytest.mark.skipif(PURE, reason="the world harnesses run on the twin under "
                    "RIG_PUREPYTHON=1, so the twin's planted bug would break them too")
def test_two_planted_bugs_in_one_campaign_are_one_finding_each(tmp_path, built):
    """The issue's check: a bug in the core and a bug in a design written outside the
    package, in one default campaign: the summary shows each once, every harness ran."""
    env = _sitecustomize(tmp_path, PLANTED_TWIN)
    (tmp_path / "planted.py").write_text(textwrap.dedent(PLANTED_DESIGN))
    proc, seconds = fuzz(tmp_path, "--design", "./planted.py:UnplugKeepsListeners",
                         "--time", "30", "--json", env=env, cwd=tmp_path)
    assert proc.returncode == 2, _why(proc)
    report = report_of(proc)
    assert sorted(f["signature"] for f in report["findings"]) == sorted([CORE_BUG, DESIGN_BUG])
    assert [h["name"] for h in report["harnesses"]] == [
        "core_differential", "iommu", "convert:planted-unplug",
        "convert_explicit:planted-unplug", "trace_text:planted-unplug",
        "statemachine:planted-unplug"], report["dropped"]
    assert all(h["runs"] > 0 for h in report["harnesses"]), report["harnesses"]
    assert sum(len(h["findings"]) for h in report["harnesses"]) == 2
    assert seconds <= 30 + MARGIN_S
    design = next(f for f in report["findings"] if f["signature"] == DESIGN_BUG)
    assert design["replay"].startswith("rig replay --load ")
    replay = rig(*design["replay"].split()[1:], cwd=tmp_path)
    assert replay.returncode == 0, _why(replay)
    assert "expect: violation shared-unmapped (matches)" in replay.stdout


@slow
def test_a_restarted_harness_keeps_its_runs_and_skips_what_stopped_it(tmp_path):
    """The canary's finding ends its worker; the restart is told the signature, skips
    it and fuzzes on: the harness' runs are both workers' (a harness that found a bug
    showed `runs 0`), and the finding is one."""
    proc, _ = fuzz(tmp_path, "--harness", "canary", "--time", "12", "--jobs", "1", "--json")
    assert proc.returncode == 0, _why(proc)
    (h,) = report_of(proc)["harnesses"]
    # The same document is on disk, for rig report (with --json or without: below).
    assert json.loads((tmp_path / "art" / "campaign.json").read_text()) == report_of(proc)
    assert h["restarts"] >= 1 and len(h["worker_runs"]) == h["restarts"] + 1, h
    assert all(n > 0 for n in h["worker_runs"]) and h["runs"] == sum(h["worker_runs"])
    assert len(h["findings"]) == 1 and h["error"] is None
    # The last worker was stopped at the end of the slot, not by the canary again.
    assert h["exit_codes"][-1] in (0, 72), h["exit_codes"]


def test_every_campaign_writes_its_document_for_rig_report(tmp_path):
    """Without --json too, ARTIFACTS/campaign.json is --json's document, whole (written
    atomically: no temp file is left): the harness with its time series, where and from
    what commit it ran."""
    proc, _ = fuzz(tmp_path, "--smoke", "--harness", "iommu", "--runs", "300")
    assert proc.returncode == 0, _why(proc)
    assert not proc.stdout.lstrip().startswith("{")  # (the text summary)
    art = tmp_path / "art"
    doc = json.loads((art / "campaign.json").read_text())
    assert doc["schema"] == 1 and doc["exit_code"] == 0 and doc["mode"] == "smoke"
    (h,) = doc["harnesses"]
    assert h["name"] == "iommu" and h["runs"] >= 300 and h["series"], h
    assert h["series"][-1]["runs"] == h["runs"]
    assert doc["machine"]["cpus"] == os.cpu_count() and doc["machine"]["hostname"]
    git = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True)
    if git.returncode == 0:  # (a checkout: the commit it ran from; else null)
        assert doc["commit"].split("-")[0].startswith(git.stdout.strip()[:7]), doc["commit"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", doc["date"]), doc["date"]
    assert [p.name for p in art.iterdir() if ".tmp" in p.name] == []


@slow
@pytest.mark.parametrize("death", ["exit 0", "exit 1", "SIGKILL"])
def test_a_worker_that_dies_without_an_artifact_is_an_infrastructure_failure(tmp_path, death):
    """The workers die at start-up (a sitecustomize that acts only in them): nothing
    ran, and the campaign says so on one line and exits 3 instead of reporting 0
    findings."""
    action = {"exit 0": "os._exit(0)", "exit 1": "os._exit(1)",
              "SIGKILL": "os.kill(os.getpid(), signal.SIGKILL)"}[death]
    env = _sitecustomize(tmp_path, f"""
        import os, signal
        if os.environ.get("RIG_FUZZ_KNOWN"):  # a harness worker, not the campaign
            {action}
        """)
    proc, _ = fuzz(tmp_path, "--harness", "iommu", "--time", "8", "--json", env=env)
    assert proc.returncode == 3, _why(proc)
    report = report_of(proc)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("rig fuzz: iommu: ")]
    assert len(errors) == 1 and report["errors"] == errors, proc.stderr
    expected = {"exit 0": "0 inputs executed", "exit 1": "exited with code 1",
                "SIGKILL": "was killed by SIGKILL"}[death]
    assert expected in errors[0]
    assert report["harnesses"][0]["runs"] == 0


@slow
def test_ctrl_c_stops_the_workers_keeps_the_findings_and_exits_130(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "rig.cli.main", "fuzz", "--harness", "canary", "--time", "60",
         "--json", "--corpus-dir", str(tmp_path / "corpora"), "--artifacts",
         str(tmp_path / "art")], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    crashes = tmp_path / "corpora" / "crashes"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (crashes.is_dir() and any(crashes.glob("*.raw"))):
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert time.monotonic() - sent < 15
    report = json.loads(out)
    assert report["interrupted"] is True and report["exit_code"] == 130
    (canary,) = report["harnesses"]
    # (Once, in a fresh clone under load, this saw 2 findings where it expects 1 and the
    # cause stayed unknown: the message names each one, kind and signature.)
    assert canary["interrupted"] and canary["runs"] > 0 and len(canary["findings"]) == 1, [
        (f.get("kind"), f.get("signature"), f.get("summary")) for f in canary["findings"]]
    raw = Path(canary["findings"][0]["raw"])
    assert (raw if raw.is_absolute() else ROOT / raw).exists()
    assert "Traceback" not in err
    # No worker outlives the campaign.
    time.sleep(0.5)
    alive = []
    for pid in os.listdir("/proc"):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if pid.isdigit() and str(tmp_path).encode() in cmdline:
            alive.append(cmdline.replace(b"\0", b" ")[:200])
    assert not alive, alive


@slow
def test_libfuzzer_flags_and_the_dictionary_reach_the_workers(tmp_path):
    """From an empty folder: the workers run the in-package target, get the harness'
    dictionary as -dict= (libFuzzer loads it) and the flags after --, last."""
    from rig.trace import dictionaries

    empty = tmp_path / "empty"
    empty.mkdir()
    proc, _ = fuzz(tmp_path, "--harness", "convert", "--time", "6", "--jobs", "1", "--json",
                   "--", "-use_value_profile=1", "-max_len=512", cwd=empty)
    assert proc.returncode == 0, _why(proc)
    report = report_of(proc)
    (h,) = report["harnesses"]
    assert h["runs"] > 0 and report["libfuzzer_flags"] == ["-use_value_profile=1", "-max_len=512"]
    assert h["command"][1:4] == ["-m", "rig.drive.target", "convert"]
    args = h["libfuzzer_args"]
    assert h["command"][4:] == args
    assert args.index("-max_len=512") > args.index("-max_len=4096")
    assert "-use_value_profile=1" in args
    (dict_arg,) = [a for a in args if a.startswith("-dict=")]
    text = Path(dict_arg[len("-dict="):]).read_text()
    assert text == dictionaries.generate()["convert.dict"]
    assert h["dictionary_entries"] == len(dictionaries.parse_entries(text))


@slow
def test_a_flag_libfuzzer_does_not_know_is_a_usage_error(tmp_path):
    proc, _ = fuzz(tmp_path, "--harness", "iommu", "--time", "8", "--", "-no_such_flag=1")
    assert proc.returncode == 1, _why(proc)
    assert "libFuzzer does not know -no_such_flag=1" in proc.stderr


def test_bad_flags_exit_1():
    assert rig("fuzz", "--time", "0").returncode == 1
    assert rig("fuzz", "--harness", "nope").returncode == 1
    assert rig("fuzz", "--design", "nope").returncode == 1
    jobs = rig("fuzz", "--harness", "iommu", "--", "-jobs=4")
    assert jobs.returncode == 1 and "use --jobs" in jobs.stderr
    corpus = rig("fuzz", "--harness", "iommu", "--", "some/dir")
    assert corpus.returncode == 1 and "-name=value" in corpus.stderr


# -- the campaign's parts, in-process -------------------------------------------------------

def _planted_twin(monkeypatch):
    import errno

    import rig.core.pure.iommu as iommu

    translate = iommu._IoPageTable.translate

    def planted(self, iova, write=False):
        ret = translate(self, iova, write)
        return -errno.ENOENT if write and ret == -errno.EFAULT else ret

    monkeypatch.setattr(iommu._IoPageTable, "translate", planted)


def _core_crashes(harness, count: int) -> list[bytes]:
    """``count`` inputs on which the core implementations disagree, each in another op
    (its index or its arguments)."""
    rng = random.Random(0)
    found: dict[str, bytes] = {}
    for _ in range(5000):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(8, 160)))
        try:
            harness.one_input(data)
        except AssertionError as exc:
            found.setdefault(str(exc).splitlines()[0], data)
            if len(found) == count:
                return list(found.values())
    pytest.fail("the planted twin bug was not reached")


def test_a_core_finding_is_named_by_its_kind_and_op_only(monkeypatch):
    """One planted core bug reached by different inputs (other op indices, other
    arguments) has one signature: it was reported as 3 to 4 findings."""
    from rig.drive import campaign
    from rig.drive.harnesses import harness_for

    _planted_twin(monkeypatch)
    h = harness_for("iommu")
    crashes = _core_crashes(h, 5)
    assert {campaign.signature(h, d) for d in crashes} == {CORE_BUG}


def test_a_core_harness_skips_a_known_signature_and_notes_it_once(monkeypatch, tmp_path):
    import rig.drive.base
    from rig.drive.harnesses import harness_for

    _planted_twin(monkeypatch)
    h = harness_for("core_differential")
    crashes = _core_crashes(h, 2)
    seen = tmp_path / "seen"
    monkeypatch.setenv("RIG_FUZZ_SEEN", str(seen))
    monkeypatch.setattr(rig.drive.base, "KNOWN", frozenset({CORE_BUG}))
    monkeypatch.setattr(rig.drive.base, "_SEEN", set(), raising=False)
    for data in crashes:
        h.one_input(data)  # known: skipped, not raised
    assert seen.read_text() == f"{CORE_BUG}\n"
    monkeypatch.setattr(rig.drive.base, "KNOWN", frozenset({"something else"}))
    with pytest.raises(AssertionError):
        h.one_input(crashes[0])


def test_the_regression_corpus_is_known_for_its_designs():
    from rig.check.session import run
    from rig.drive import base, campaign
    from rig.trace import corpus
    from rig.trace.format import load

    known = campaign.Known()
    count = campaign.load_regressions(known, log=pytest.fail)
    expected = {}
    for path in corpus.regressions():
        trace = load(str(path))
        if trace.expect.kind == "violation":
            result = run(trace.config, trace.ops)
            expected.setdefault(f"design {trace.config.design}", set()).add(
                base.violation_signature(result.outcome, result.steps))
    assert count == sum(len(v) for v in expected.values()) > 0
    assert {scope: set(sigs) for scope, sigs in known.by_scope.items()} == expected
    # The core's shipped traces all replay ok: none of them names a known finding.
    assert "core" not in known.by_scope
    assert all(src.endswith(".trace") for sigs in known.by_scope.values() for src in sigs.values())


def test_plan_keeps_what_fits_and_slots_share_the_rest():
    from rig.drive.campaign import plan, slot

    cost = {"a": 3.0, "b": 4.0, "c": 5.0}.get
    assert plan(["a", "b", "c"], 20.0, cost) == (["a", "b", "c"], [])
    assert plan(["a", "b", "c"], 10.0, cost) == (["a", "b"], ["c"])
    assert plan(["a", "b", "c"], 2.0, cost) == ([], ["a", "b", "c"])
    # Each gets its own cost and an equal share of the spare 8 s.
    assert slot("a", 20.0, ["a", "b", "c"], cost) == pytest.approx(3.0 + 8.0 / 3)
    assert slot("c", 5.0, ["c"], cost) == 5.0


def test_jobs_default_to_every_core_of_the_affinity_mask(monkeypatch):
    from rig.drive import campaign

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    assert campaign.default_jobs() == 3


def test_an_installed_package_generates_its_dictionaries(monkeypatch, tmp_path):
    """No fuzz/ folder next to the package (a wheel): the dictionary is generated from
    rig.trace.dictionaries into the artifacts folder."""
    from types import SimpleNamespace

    from rig.drive import campaign
    from rig.trace import dictionaries

    monkeypatch.setattr(campaign, "ROOT", tmp_path / "site-packages")
    c = campaign.Campaign(SimpleNamespace(seed=1), {}, "plain", tmp_path / "corpora",
                          tmp_path / "art", [], 1)
    path = c.dictionary("convert_explicit:hardened")
    assert path == tmp_path / "art" / "dictionaries" / "convert_explicit.dict"
    assert path.read_text() == dictionaries.generate()["convert_explicit.dict"]
    assert c.dictionary("iommu") is None


def test_findings_that_minimize_to_one_trace_are_one_finding():
    """Two signatures (the same bug seen from two ops) whose inputs minimized to the same
    trace: the campaign reports one finding naming the other, in the table too."""
    from rig.drive.campaign import Finding, HarnessRun, merge_same_traces, summary_table

    a = Finding("convert_explicit:qemu-10.1", "crash", "crashes/a.raw", "crashes/x.trace",
                signature="violation attr-agree in vfio_unregister", inputs=2)
    b = Finding("convert_explicit:qemu-10.1", "crash", "crashes/b.raw", "crashes/x.trace",
                signature="violation attr-agree in listener_register")
    c = Finding("convert:qemu-10.1", "crash", "crashes/c.raw", "crashes/x.trace",
                signature="violation attr-agree in kvm_convert_memory",
                known="corpora/regressions/x.trace")
    d = Finding("convert:qemu-10.1", "crash", "crashes/d.raw", "crashes/y.trace",
                signature="violation stale-mapping in kvm_convert_memory")
    runs = [HarnessRun("convert_explicit:qemu-10.1", "world", "plain"),
            HarnessRun("convert:qemu-10.1", "world", "plain")]
    runs[0].findings, runs[1].findings = [a, b], [c, d]
    merge_same_traces(runs)
    assert runs[0].findings == [a] and runs[1].findings == [d]
    assert a.same_trace == [
        "violation attr-agree in listener_register (1 input, raw: crashes/b.raw)",
        "violation attr-agree in kvm_convert_memory [convert:qemu-10.1] (1 input, raw: "
        "crashes/c.raw)"]
    assert a.known == "corpora/regressions/x.trace"  # one of its inputs is a known bug
    assert a.inputs == 2 and not d.same_trace
    table = summary_table(runs)
    assert [line.split()[-3] for line in table[1:]] == ["1", "1"]  # the findings column


def test_a_worker_starts_up_until_inited_not_until_its_first_status_line():
    """libFuzzer reads a large corpus with "pulse" lines before INITED: start-up (which
    the campaign reports as startup_s and plans the next campaign with) ends at INITED."""
    from collections import deque

    from rig.drive.campaign import Worker

    w = object.__new__(Worker)  # (no process: only the line parser is under test)
    w.inited, w.runs, w.cov, w.corpus, w.final = None, 0, 0, 0, None
    w.tail, w.written, w.unrecognized, w.dictionary_entries = deque(maxlen=4), [], [], None
    w._line("#512\tpulse  cov: 900 ft: 1200 corp: 300/20Kb exec/s: 256 rss: 60Mb")
    assert w.inited is None and w.runs == 512 and w.cov == 900
    w._line("#1024\tINITED cov: 1800 ft: 2400 corp: 600/40Kb exec/s: 341 rss: 64Mb")
    assert w.inited is not None and w.runs == 1024
    at = w.inited
    w._line("#2048\tNEW    cov: 1810 ft: 2410 corp: 601/40Kb lim: 64 exec/s: 400 rss: 64Mb")
    assert w.inited == at and w.cov == 1810
