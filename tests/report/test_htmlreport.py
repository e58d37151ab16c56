"""`rig report`: one HTML file that stands alone.  The page parses, fetches nothing, gives
the same bytes for the same inputs, shows the sweep's own matrix (every design row, every
plan column, each broken invariant linked to its trace, embedded), the campaign's
harnesses over time as inline SVG and its findings with their traces and replay
commands, the bug benchmark's curve; a missing input is a sentence, no input or a bad
one is exit 1 with one line.  Headless Chromium renders it and its DOM holds the matrix
and every plot.

One sweep is `rig sweep --profile quick` itself, on one design; another has real cells
(rig.drive.sweep.run_cell, rig.cli.matrix.aggregate) and one error cell, in a sweep.json
written here; the campaign document and the bug benchmark's lines are written here in
the shapes their writers use (a real campaign runs in the slow test at the end).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from rig.cli import htmlreport
from rig.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
PLANS = ["none", "map", "unmap", "punch", "limit", "kvm-attr", "pin", "mix"]
#: The design whose pin cell is replaced by an error cell (a worker that died).
ERROR_AT = ("hardened", "pin")
HARNESS_NAMES = ("convert:uncoordinated", "iommu")
EPOCH = "1767225600"  # 2026-01-01T00:00:00Z
INSTALL = "apt-get install chromium (ci/lib.sh installs it when run as root)"


# -- inputs -------------------------------------------------------------------------------

def _sweep_doc(out: Path) -> dict:
    """sweep.json as rig sweep writes it (the contract's fields), around real cells:
    qemu-10.1 and hardened on type1, inplace on iommufd (its limit plan: no cell, n/a),
    and one cell of hardened that died (an error cell)."""
    from rig.cli import matrix
    from rig.drive import sweep

    specs = (sweep.cells("quick", designs=["qemu-10.1", "hardened"], iommus=["type1"],
                         shapes=["small"])
             + sweep.cells("quick", designs=["inplace"], iommus=["iommufd"], shapes=["small"]))
    cells = []
    for spec in specs:
        if (spec.design, spec.plan) == ERROR_AT:
            cells.append({"cell": spec.id, **spec.to_dict(), "status": "error",
                          "error": "the worker died: signal 6 (SIGABRT)"})
        else:
            cells.append(sweep.run_cell(spec))
    m = matrix.aggregate(cells)
    matrix.write_traces(m, str(out))
    return {"format": "rig-sweep/1", "profile": "quick", "command": "rig sweep --profile quick",
            "commit": "0123abc", "date": "2026-01-02T03:04:05Z",
            "machine": {"hostname": "sweephost", "cpus": 2, "python": "3.11.7",
                        "platform": "Linux-test"},
            "jobs": 2, "tx": [], "wall_s": 12.5, "cells": cells,
            "recheck": [{"cell": cells[0]["cell"], "digest": cells[0]["digest"],
                         "again": cells[0]["digest"], "equal": True}],
            "matrix": m, "totals": {"cells": len(cells), "runs": 1, "errors": 1,
                                    "vm_stops": 0},
            "exit": 3, "why": "1 error cell"}


@pytest.fixture(scope="module")
def sweep_source(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    doc = _sweep_doc(out)
    (out / "sweep.json").write_text(json.dumps(doc, indent=1))
    return out


@pytest.fixture(scope="module")
def real_sweep(tmp_path_factory):
    """What `rig sweep --profile quick` writes for one design (its --out folder)."""
    out = tmp_path_factory.mktemp("real-sweep") / "out"
    proc = subprocess.run([sys.executable, "-m", "rig.cli.main", "sweep", "--profile", "quick",
                           "--design", "qemu-10.1", "--out", str(out), "-n", "2"], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode in (0, 2), proc.stderr[-3000:]
    return out


TRACE = """\
# gmem-rig trace v1
# design=uncoordinated iommu=type1 ram=0x0+0x8000 faults=explicit
# expect: violation stale-mapping
vfio_register(0, 0x0, 0x8000)
kvm_convert_memory(0x4000, 0x2000, shared)
"""


def _series(n: int, cov0: int, rate: int) -> list[dict]:
    return [{"t": 1.0 + 2 * i, "elapsed": 2.0 * i + 0.5, "runs": rate * 2 * (i + 1),
             "execs_per_s": rate + 10 * i, "cov": cov0 + 7 * i, "corpus": 10 + i,
             "findings": i // 3} for i in range(n)]


def _campaign_doc() -> dict:
    """A campaign document in rig fuzz's shape (rig.drive.campaign: HarnessRun.to_json,
    Finding.to_json), two harnesses and one finding."""
    finding = {"harness": "convert:uncoordinated", "kind": "crash",
               "raw": "corpora/crashes/convert_uncoordinated-crash-1.raw",
               "trace": "corpora/crashes/stale-mapping-uncoordinated-1.trace",
               "summary": "violation stale-mapping in kvm_convert_memory (1 input)",
               "signature": "violation stale-mapping in kvm_convert_memory", "known": None,
               "inputs": 1, "seen_by": [], "same_trace": [],
               "replay": "rig replay corpora/crashes/stale-mapping-uncoordinated-1.trace",
               "found_s": 3.25, "found_runs": 812, "kills": None, "kill_check": None}
    harnesses = []
    for name, kind, n, cov0, rate in (("convert:uncoordinated", "world", 6, 300, 400),
                                      ("iommu", "core", 5, 120, 9000)):
        series = _series(n, cov0, rate)
        last = series[-1]
        harnesses.append({
            "name": name, "kind": kind, "build": "native-fuzzer", "workers": 1,
            "runs": last["runs"], "cov": last["cov"], "corpus": last["corpus"],
            "new_inputs": 4, "execs_per_s": rate, "seconds": last["elapsed"],
            "startup_s": 1.2, "slot_s": 12.0, "restarts": 0, "restart_cap_left_s": None,
            "worker_runs": [last["runs"]], "exit_codes": [0],
            "findings": [finding] if kind == "world" else [], "known_seen": [],
            "first_finding_s": 3.0, "dictionary": None, "dictionary_entries": None,
            "command": [], "libfuzzer_args": [], "error": None, "interrupted": False,
            "series": series})
    return {"schema": 1, "seed": 1, "build": "native-fuzzer", "mode": "time",
            "time_budget_s": 30.0, "wall_seconds": 27.5, "jobs": 1, "libfuzzer_flags": [],
            "interrupted": False, "harnesses": harnesses, "dropped": [], "skipped": [],
            "not_run": [], "findings": [finding], "silent_canaries": [], "errors": [],
            "exit_code": 2, "until_kill": None, "commit": "4567def-dirty",
            "date": "2026-01-03T00:00:00Z",
            "machine": {"hostname": "fuzzhost", "cpus": 2, "python": "3.11.7",
                        "platform": "Linux-test"}}


BUG_LINES = [
    {"schema": 1, "mutant": "m-attr", "base": "hardened", "engine": "swarm", "seed": 1,
     "cap_s": 5.0, "found": True, "time_s": 0.4, "execs": 10, "trace_ops": 3, "error": None},
    {"schema": 1, "mutant": "m-attr", "base": "hardened", "engine": "fail-nth", "seed": 1,
     "cap_s": 5.0, "found": True, "time_s": 1.5, "execs": 80, "trace_ops": 2, "error": None},
    {"schema": 1, "mutant": "m-pin", "base": "hardened", "engine": "swarm", "seed": 1,
     "cap_s": 5.0, "found": False, "error": None},
    {"schema": 1, "mutant": "m-pin", "base": "hardened", "engine": "fail-nth", "seed": 1,
     "cap_s": 5.0, "found": True, "time_s": 2.5, "execs": 120, "trace_ops": 4, "error": None},
]


@pytest.fixture
def inputs(tmp_path, sweep_source, monkeypatch):
    """Every input, in the default places under a working folder of its own (the
    campaign's trace path is relative to it, as rig fuzz writes it)."""
    shutil.copytree(sweep_source, tmp_path / "artifacts" / "sweep")
    campaign = tmp_path / "artifacts" / "fuzz" / "campaign.json"
    campaign.parent.mkdir(parents=True)
    campaign.write_text(json.dumps(_campaign_doc(), indent=1))
    trace = tmp_path / "corpora" / "crashes" / "stale-mapping-uncoordinated-1.trace"
    trace.parent.mkdir(parents=True)
    trace.write_text(TRACE)
    bugs = tmp_path / "artifacts" / "bench-bugs" / "results.jsonl"
    bugs.parent.mkdir(parents=True)
    bugs.write_text("".join(json.dumps(line) + "\n" for line in BUG_LINES))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    return tmp_path


def report(capsys, *args) -> tuple[int, str, str]:
    code = main(["report", *args])
    out, err = capsys.readouterr()
    return code, out, err


def page(path="artifacts/report.html") -> str:
    return Path(path).read_text(encoding="utf-8")


class Dom(HTMLParser):
    """Every element's tag and attributes, in document order, and the text inside each
    element with an id."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict]] = []
        self.open: list[tuple[str, str | None]] = []
        self.text: dict[str, str] = {}
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.elements.append((tag, attrs))
        if tag not in ("br", "meta", "img", "input", "link", "hr"):
            self.open.append((tag, attrs.get("id")))
            if attrs.get("id"):
                self.text.setdefault(attrs["id"], "")

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        for i in range(len(self.open) - 1, -1, -1):
            if self.open[i][0] == tag:
                del self.open[i:]
                break

    def handle_data(self, data):
        for _, ident in self.open:
            if ident:
                self.text[ident] += data

    def find(self, tag, **attrs) -> list[dict]:
        return [a for t, a in self.elements if t == tag
                and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())]


def svgs(text: str) -> dict[str, str]:
    """figure id -> the inline SVG inside it."""
    return dict(re.findall(r'<figure id="([^"]+)">\s*(<svg.*?</svg>)', text, flags=re.S))


def cell_html(text: str, design: str, plan: str) -> str:
    (found,) = re.findall(rf'<td [^>]*data-design="{re.escape(design)}" '
                          rf'data-plan="{re.escape(plan)}"[^>]*>(.*?)</td>', text)
    return found


# -- the page as a file -----------------------------------------------------------------------

def test_the_page_parses_and_fetches_nothing(inputs, capsys):
    code, out, err = report(capsys)
    assert code == 0, err
    assert out.startswith("rig report: wrote artifacts/report.html (matrix 3 designs x 8 "
                          "plans; campaign 2 harnesses, 1 findings; bug benchmark 2 mutants)")
    text = page()
    dom = Dom(text)
    tags = {t for t, _ in dom.elements}
    assert not tags & {"script", "link", "img", "iframe", "object", "embed", "base"}, tags
    ids = {a["id"] for _, a in dom.elements if "id" in a}
    for tag, attrs in dom.elements:
        for key in ("src", "href", "xlink:href", "srcset", "data", "poster", "action"):
            value = attrs.get(key)
            if value is None:
                continue
            assert not re.match(r"(?i)(https?:)?//", value), (tag, key, value)
            # every link stays in the page, and lands on something
            assert tag != "a" or (value.startswith("#") and value[1:] in ids), (tag, value)
    # No URL at all but the SVG namespace names (which are never fetched).
    bare = re.sub(r'xmlns(:\w+)?="[^"]*"', "", text)
    assert "http://" not in bare and "https://" not in bare
    assert not re.search(r"url\((?!#)", bare)  # (clip paths: url(#id), in the page)
    # Each plot is an SVG that XML can read.
    plots = svgs(text)
    assert set(plots) == {"plot-coverage", "plot-execs", "plot-bugs"}
    for svg in plots.values():
        ET.fromstring(svg)


def test_the_same_inputs_give_the_same_bytes(inputs, capsys):
    """The SVGs carry no date and a fixed salt: with SOURCE_DATE_EPOCH the whole page is
    the same; without it, only the report's date can differ."""
    assert report(capsys)[0] == 0
    first = Path("artifacts/report.html").read_bytes()
    assert report(capsys)[0] == 0
    assert Path("artifacts/report.html").read_bytes() == first
    assert 'id="report-date">2026-01-01T00:00:00Z<' in page()
    os.environ.pop("SOURCE_DATE_EPOCH")  # (monkeypatch restores it)
    assert report(capsys)[0] == 0

    def undated(text):
        return re.sub(r'id="report-date">[^<]*<', "", text.replace(
            "(SOURCE_DATE_EPOCH)", "(the time it was made)"))
    assert undated(page()) == undated(first.decode())


# -- the sections -----------------------------------------------------------------------------

def _check_matrix(text: str, m: dict, folder: Path) -> set:
    """Every design row and plan column of the matrix, each cell's verdict as the matrix
    says, each broken invariant with its runs and a link to its trace (whose text is in
    the page), each known break with its runs; the verdicts seen."""
    dom = Dom(text)
    assert [a["data-design"] for a in dom.find("tr") if "data-design" in a] == m["designs"]
    assert [a["data-plan"] for a in dom.find("th") if "data-plan" in a] == m["plans"]
    verdicts, links = set(), 0
    for d in m["designs"]:
        for p in m["plans"]:
            entry = m["rows"][d][p]
            (cell,) = dom.find("td", data_design=d, data_plan=p)
            assert cell["data-verdict"] == entry["verdict"], (d, p)
            verdicts.add(entry["verdict"])
            for inv, found in entry["invariants"].items():
                if found["trace"] is None:
                    assert f"{inv} &times; {found['runs']:,} <span class=\"small\">(no " \
                           "minimized trace)</span>" in text
                    continue
                anchor = htmlreport._anchor("trace", found["trace"])
                assert f'<a href="#{anchor}">{inv} &times; {found["runs"]:,}</a>' in text
                trace = (folder / found["trace"]).read_text()
                assert dom.text[anchor].endswith(trace), (d, p, inv)
                links += 1
            for inv, known in entry.get("known", {}).items():
                assert f"{inv} &times; {known['runs']:,}" in cell_html(text, d, p), (d, p)
    assert links >= 5
    return verdicts


def test_the_matrix_is_the_sweeps_own(inputs, capsys):
    """The matrix as sweep.json gives it: the error cell never clean, n/a where there is
    no cell, and what the error cell's worker said."""
    assert report(capsys)[0] == 0
    text = page()
    m = json.loads(Path("artifacts/sweep/sweep.json").read_text())["matrix"]
    assert m["plans"] == PLANS
    verdicts = _check_matrix(text, m, inputs / "artifacts" / "sweep")
    assert m["rows"][ERROR_AT[0]][ERROR_AT[1]]["verdict"] == "error"
    assert m["rows"]["inplace"]["limit"]["verdict"] == "n/a"
    assert {"broken", "error", "n/a", "known"} <= verdicts
    assert "worker died: signal 6 (SIGABRT)" in text  # (the error cell says why)
    assert "Sweep exit <b class=\"bad\">3</b>: 1 error cell" in text
    assert "1 cell(s) re-run in a fresh process with another PYTHONHASHSEED, every digest equal" in text


def test_a_real_sweep(real_sweep, tmp_path, monkeypatch, capsys):
    """What `rig sweep` itself wrote, named by its folder."""
    monkeypatch.chdir(tmp_path)
    assert report(capsys, "--sweep", str(real_sweep))[0] == 0
    doc = json.loads((real_sweep / "sweep.json").read_text())
    text = page()
    _check_matrix(text, doc["matrix"], real_sweep)
    assert f"Sweep exit <b class=\"{'bad' if doc['exit'] else ''}\">{doc['exit']}</b>" in text
    assert f"<td>{doc['commit']}</td><td>{doc['date']}</td>" in text


def test_without_the_text_in_the_matrix_the_traces_come_from_the_sweeps_folder(
        inputs, capsys):
    doc = json.loads(Path("artifacts/sweep/sweep.json").read_text())
    stripped = 0
    for row in doc["matrix"]["rows"].values():
        for entry in row.values():
            for inv in entry["invariants"].values():
                stripped += inv.pop("text", None) is not None
    assert stripped
    Path("artifacts/sweep/sweep.json").write_text(json.dumps(doc))
    assert report(capsys, "--sweep", "artifacts/sweep")[0] == 0  # (the folder names it)
    dom = Dom(page())
    traces = sorted(Path("artifacts/sweep/traces").glob("*.trace"))
    assert traces
    for path in traces:
        anchor = htmlreport._anchor("trace", f"traces/{path.name}")
        assert dom.text[anchor].endswith(path.read_text()), path


def test_the_campaign_plots_and_its_findings(inputs, capsys):
    assert report(capsys)[0] == 0
    text = page()
    plots = svgs(text)
    for key in ("plot-coverage", "plot-execs"):
        root = ET.fromstring(plots[key])
        words = " ".join(e.text or "" for e in root.iter() if e.tag.endswith("text"))
        gids = {e.get("id") for e in root.iter()}
        for name in HARNESS_NAMES:
            assert name in words, (key, name)  # (the legend, kept as text)
            line = next(e for e in root.iter()
                        if e.get("id") == htmlreport._anchor("harness", name))
            assert any(c.tag.endswith("path") for c in line.iter()), (key, name)
        assert htmlreport._anchor("harness", "nope") not in gids
    dom = Dom(text)
    doc = _campaign_doc()
    for h in doc["harnesses"]:
        assert f"<td>{h['name']}</td>" in text
        assert f'<td class="num">{h["runs"]:,}</td>' in text
    f = doc["findings"][0]
    assert dom.text["finding-1"] == f"1. {f['signature']}"
    assert f"<pre class=\"trace\">{TRACE.replace('>', '&gt;')}</pre>" in text
    assert f"<code class=\"replay\">{f['replay']}</code>" in text
    assert "3.2 s, 812 runs" in text


def test_the_bug_benchmark_curve_is_rig_bench_bugs_own(inputs, capsys):
    """The SVG is the one `rig bench bugs --plot` draws (one line per engine, its ids),
    and the table is its table."""
    assert report(capsys)[0] == 0
    text = page()
    root = ET.fromstring(svgs(text)["plot-bugs"])
    ids = sorted(e.get("id") for e in root.iter() if (e.get("id") or "").startswith("engine-"))
    assert ids == ["engine-fail-nth", "engine-swarm"]
    assert "2 mutants, engines swarm, fail-nth, cap 5 s" in text
    assert re.search(r"m-pin +swarm +0/1", text) and re.search(r"m-pin +fail-nth +1/1", text)


def test_a_missing_input_is_one_sentence_in_its_section(inputs, capsys):
    shutil.rmtree("artifacts/sweep")
    os.remove("artifacts/bench-bugs/results.jsonl")
    code, out, _ = report(capsys)
    assert code == 0
    assert "no sweep at artifacts/sweep/sweep.json" in out
    text = page()
    assert "No sweep at artifacts/sweep/sweep.json: run rig sweep." in text
    assert "No bug benchmark results at artifacts/bench-bugs/results.jsonl: run rig bench " \
           "bugs." in text
    assert 'id="verdict-matrix"' not in text and 'id="plot-bugs"' not in text
    assert 'id="plot-coverage"' in text
    # and the campaign's, when it is the one missing
    os.remove("artifacts/fuzz/campaign.json")
    Path("results.jsonl").write_text(json.dumps(BUG_LINES[0]) + "\n")
    assert report(capsys, "--bugs", "results.jsonl")[0] == 0
    text = page()
    assert "No campaign at artifacts/fuzz/campaign.json: run rig fuzz" in text
    assert "<svg" in text and 'id="plot-coverage"' not in text


def test_no_input_at_all_is_exit_1_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = report(capsys)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("rig report: nothing to report: no sweep "
                                                    "at artifacts/sweep/sweep.json"), err
    assert not Path("artifacts/report.html").exists()


def _cell_without_verdict(doc):
    design = doc["matrix"]["designs"][0]
    del doc["matrix"]["rows"][design]["map"]["verdict"]
    return f'matrix.rows.{design}.map: no \'verdict\' field'


@pytest.mark.parametrize("where,damage,says", [
    ("artifacts/sweep/sweep.json", lambda _: "{not json", "not a rig sweep document"),
    ("artifacts/sweep/sweep.json", lambda d: dict(d, format="rig-sweep/9"),
     "format 'rig-sweep/9', this rig reads 'rig-sweep/1'"),
    ("artifacts/sweep/sweep.json", _cell_without_verdict, None),
    ("artifacts/fuzz/campaign.json", lambda d: dict(d, schema=7), "schema 7"),
    ("artifacts/fuzz/campaign.json",
     lambda d: [s.pop("cov") for s in d["harnesses"][1]["series"][:1]] and d,
     "harnesses[iommu].series[0]: no 'cov' field"),
    ("artifacts/fuzz/campaign.json", lambda d: [d.pop("findings")] and d,
     "campaign: no 'findings' field"),
    ("artifacts/bench-bugs/results.jsonl", lambda _: '{"schema": 1}\n',
     "results.jsonl:1: not a rig bench bugs results line"),
], ids=["sweep-not-json", "sweep-format", "sweep-cell", "campaign-schema", "campaign-series",
        "campaign-findings", "bugs-line"])
def test_a_malformed_input_is_exit_1_naming_the_file_and_what_is_wrong(
        inputs, capsys, where, damage, says):
    path = Path(where)
    if path.suffix == ".json":
        doc = json.loads(path.read_text())
        if damage is _cell_without_verdict:
            says = _cell_without_verdict(doc)
            result = doc
        else:
            result = damage(doc)
        path.write_text(result if isinstance(result, str) else json.dumps(result))
    else:
        path.write_text(damage(None))
    code, out, err = report(capsys)
    assert code == 1 and out == "", err
    assert err.count("\n") == 1 and err.startswith(f"rig report: {where}"), err
    assert says in err, err


# -- in a browser -----------------------------------------------------------------------------

def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(f"chromium is not installed: {INSTALL}")


def _render(html_file: Path, png: Path) -> Dom:
    """The DOM headless Chromium builds from the page (--dump-dom), and a screenshot."""
    browser = _chromium()
    flags = ["--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
             f"--user-data-dir={png.parent / 'chromium-profile'}"]
    url = html_file.resolve().as_uri()
    dump = subprocess.run([browser, *flags, "--dump-dom", url], capture_output=True,
                          text=True, timeout=180)
    assert dump.returncode == 0 and "<html" in dump.stdout, dump.stderr[-2000:]
    shot = subprocess.run([browser, *flags, "--window-size=1300,3800", f"--screenshot={png}",
                           url], capture_output=True, text=True, timeout=180)
    assert shot.returncode == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", \
        shot.stderr[-2000:]
    return Dom(dump.stdout), dump.stdout


def _check_dom(dom: Dom, dumped: str, matrix: dict, harnesses, plots) -> None:
    """The browser's DOM holds the matrix (every design row, every plan column, every
    cell) and every plot (an <svg> per figure, with the harness names in it)."""
    assert [a["data-design"] for a in dom.find("tr") if "data-design" in a] == matrix["designs"]
    assert [a["data-plan"] for a in dom.find("th") if "data-plan" in a] == matrix["plans"]
    for d in matrix["designs"]:
        for p in matrix["plans"]:
            (cell,) = dom.find("td", data_design=d, data_plan=p)
            assert cell["data-verdict"] == matrix["rows"][d][p]["verdict"]
    rendered = svgs(dumped)
    assert set(rendered) == set(plots), set(rendered)
    for key in ("plot-coverage", "plot-execs"):
        for name in harnesses:
            assert f">{name}<" in rendered[key], (key, name)
    if "plot-bugs" in plots:
        assert 'id="engine-' in rendered["plot-bugs"]


def test_the_page_in_headless_chromium(inputs, real_sweep, capsys, tmp_path):
    """The page of a real sweep (`rig sweep`'s own output), the campaign document and
    the bug benchmark's lines, as Chromium builds it."""
    assert report(capsys, "--sweep", str(real_sweep))[0] == 0
    png = tmp_path / "report.png"
    dom, dumped = _render(Path("artifacts/report.html"), png)
    m = json.loads((real_sweep / "sweep.json").read_text())["matrix"]
    _check_dom(dom, dumped, m, HARNESS_NAMES, {"plot-coverage", "plot-execs", "plot-bugs"})
    print(f"screenshot: {png}")


@pytest.mark.slow
def test_a_real_campaign_reported_and_rendered(real_sweep, tmp_path):
    """End to end, as a user runs it: a short real campaign (a known-bad design, so it
    finds), its campaign.json, then `rig report` (the command) and Chromium."""
    env = dict(os.environ, SOURCE_DATE_EPOCH=EPOCH)
    fuzz = subprocess.run(
        [sys.executable, "-m", "rig.cli.main", "fuzz", "--design", "uncoordinated",
         "--harness", "trace_text", "--harness", "iommu", "--time", "14", "--jobs", "1",
         "--corpus-dir", "corpora", "--artifacts", "art"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=600)
    assert fuzz.returncode == 2, fuzz.stderr[-3000:]
    doc = json.loads((tmp_path / "art" / "campaign.json").read_text())
    names = [h["name"] for h in doc["harnesses"]]
    assert names == ["trace_text:uncoordinated", "iommu"] and doc["findings"]
    proc = subprocess.run(
        [sys.executable, "-m", "rig.cli.main", "report", "--sweep", str(real_sweep),
         "--campaign", "art/campaign.json", "--bugs", "none.jsonl", "-o", "report.html"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "report.html").read_text()
    for f in doc["findings"]:
        assert (tmp_path / f["trace"]).read_text().replace(">", "&gt;") in text
        assert f["replay"] in text
    dom, dumped = _render(tmp_path / "report.html", tmp_path / "real.png")
    m = json.loads((real_sweep / "sweep.json").read_text())["matrix"]
    _check_dom(dom, dumped, m, names, {"plot-coverage", "plot-execs"})
