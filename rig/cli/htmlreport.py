"""``rig report``: one self-contained HTML page from what the other commands wrote: the
verdict matrix of the latest sweep (``rig sweep``'s sweep.json), the campaign's harnesses
over time and its findings (``rig fuzz``'s campaign.json), and the bug benchmark's
survival curve (``rig bench bugs``' results.jsonl).

The page stands alone, so that it can be mailed, attached to a CI run or pasted next to a
patch: no script, no stylesheet or image from anywhere, the plots inline SVG (matplotlib,
text kept as text) and every trace the page links to embedded in it.  It only presents:
the matrix is the sweep's own ``matrix`` (rig.cli.matrix.aggregate), never recomputed
here, and an input that is missing is said in its section, never shown as an empty table.

The same inputs give the same bytes (the SVGs carry no date and a fixed hash salt per
plot), but for the report's own date: ``SOURCE_DATE_EPOCH`` (the reproducible-builds
variable) fixes it, else it is the time the report is made.
"""

from __future__ import annotations

import html
import io
import json
import os
import re
import tempfile
import time
from pathlib import Path

from rig.errors import UsageError

DEFAULT_SWEEP = "artifacts/sweep/sweep.json"
DEFAULT_CAMPAIGN = "artifacts/fuzz/campaign.json"
DEFAULT_OUT = "artifacts/report.html"
#: The version of sweep.json this page reads (rig.drive.sweep writes it).
SWEEP_FORMAT = "rig-sweep/1"
#: A matrix cell's verdicts (rig.cli.matrix.aggregate).
VERDICTS = ("clean", "broken", "known", "error", "n/a")
#: The version of campaign.json (rig.drive.campaign.SCHEMA).
CAMPAIGN_SCHEMA = 1
#: The reproducible-builds variable: seconds since the epoch to date the report with.
DATE_ENV = "SOURCE_DATE_EPOCH"

CSS = """
body { font-family: sans-serif; margin: 1.5em auto; max-width: 80em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.25em; margin-top: 2em;
  border-bottom: 1px solid #ccc; } h3 { font-size: 1.05em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #bbb; padding: .25em .5em; vertical-align: top;
  text-align: left; font-size: .9em; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.matrix td { min-width: 7em; }
td.v-clean { background: #e6f4e6; } td.v-broken { background: #fde2c8; }
td.v-known { background: #f6f0c8; }
td.v-error { background: #f8c8c8; font-weight: bold; } td.v-na { background: #eee;
  color: #777; }
tr.atomic td.v-broken { background: #f4a6a6; }
.small { color: #555; font-size: .85em; }
.missing { color: #8a4b00; font-style: italic; }
.bad { color: #a00; font-weight: bold; }
pre { background: #f7f7f7; border: 1px solid #ddd; padding: .5em; overflow-x: auto;
  font-size: .85em; }
details { margin: .3em 0; } details:target { outline: 2px solid #d08000; }
summary { cursor: pointer; } code { font-size: .9em; }
figure { margin: 1em 0; } figure svg { max-width: 100%; height: auto; }
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _anchor(prefix: str, text: str) -> str:
    """An id attribute from any text: what is not a letter, digit, ``-`` or ``_`` becomes
    ``_`` (the same text gives the same id)."""
    return f"{prefix}-{re.sub(r'[^A-Za-z0-9_-]', '_', text)}"


# -- reading the inputs -------------------------------------------------------------------

def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a {what}: not UTF-8 text") from None
    except ValueError as exc:
        raise UsageError(f"{path}: not a {what}: not JSON ({exc})") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it: {exc.strerror}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: not a {what}: not a JSON object")
    return data


def _need(path: Path, obj, where: str, key: str, kind):
    """``obj[key]``, which must be a ``kind``; UsageError naming the file and the field."""
    if not isinstance(obj, dict) or key not in obj:
        raise UsageError(f"{path}: {where}: no {key!r} field")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise UsageError(f"{path}: {where}.{key}: a {type(value).__name__}, not a {names}")
    return value


def sweep_path(given: str) -> Path:
    """``--sweep`` names a sweep's folder (its --out) or its sweep.json."""
    path = Path(given)
    return path / "sweep.json" if path.is_dir() else path


def load_sweep(path: Path) -> dict | None:
    """sweep.json, checked for every field the page reads; None when there is none."""
    if not path.exists():
        return None
    doc = _read_json(path, "rig sweep document (sweep.json)")
    if doc.get("format") != SWEEP_FORMAT:
        raise UsageError(f"{path}: format {doc.get('format')!r}, this rig reads "
                         f"{SWEEP_FORMAT!r}")
    m = _need(path, doc, "sweep", "matrix", dict)
    designs = _need(path, m, "matrix", "designs", list)
    plans = _need(path, m, "matrix", "plans", list)
    rows = _need(path, m, "matrix", "rows", dict)
    atomic = m.get("atomic", {})
    for d in designs:
        row = _need(path, rows, "matrix.rows", d, dict)
        for p in plans:
            cell = _need(path, row, f"matrix.rows.{d}", p, dict)
            where = f"matrix.rows.{d}.{p}"
            verdict = _need(path, cell, where, "verdict", str)
            if verdict not in VERDICTS:
                raise UsageError(f"{path}: {where}.verdict: {verdict!r} is not one of "
                                 f"{', '.join(VERDICTS)}")
            for key in ("runs", "cells", "errors", "vm_stops"):
                _need(path, cell, where, key, int)
            for inv, entry in _need(path, cell, where, "invariants", dict).items():
                _need(path, entry, f"{where}.invariants.{inv}", "runs", int)
                if not isinstance(entry.get("trace"), (str, type(None))):
                    raise UsageError(f"{path}: {where}.invariants.{inv}.trace: not a path")
            for inv, entry in cell.get("known", {}).items():
                _need(path, entry, f"{where}.known.{inv}", "runs", int)
    if not isinstance(atomic, dict):
        raise UsageError(f"{path}: matrix.atomic: not an object")
    for key in ("cells", "recheck"):
        _need(path, doc, "sweep", key, list)
    return doc


def load_campaign(path: Path) -> dict | None:
    """campaign.json (``rig fuzz --json``'s document), checked for every field the page
    reads; None when there is none."""
    if not path.exists():
        return None
    doc = _read_json(path, "rig fuzz document (campaign.json)")
    if doc.get("schema") != CAMPAIGN_SCHEMA:
        raise UsageError(f"{path}: schema {doc.get('schema')!r}, this rig reads "
                         f"{CAMPAIGN_SCHEMA}")
    for i, h in enumerate(_need(path, doc, "campaign", "harnesses", list)):
        name = _need(path, h, f"harnesses[{i}]", "name", str)
        for j, s in enumerate(_need(path, h, f"harnesses[{name}]", "series", list)):
            for key in ("elapsed", "cov", "execs_per_s"):
                _need(path, s, f"harnesses[{name}].series[{j}]", key, (int, float))
    for i, f in enumerate(_need(path, doc, "campaign", "findings", list)):
        for key in ("harness", "kind", "signature", "replay"):
            _need(path, f, f"findings[{i}]", key, str)
    return doc


def load_bugs(path: Path) -> dict | None:
    """The bug benchmark's finished cells (rig.drive.bugbench.load_results, which names
    file:line for a bad line); None when there is no results file."""
    from rig.drive import bugbench

    if not path.exists():
        return None
    done = bugbench.load_results(path)
    for record in done.values():
        if record["engine"] not in bugbench.ENGINES:
            raise UsageError(f"{path}: engine {record['engine']!r} is not one of "
                             f"{', '.join(bugbench.ENGINES)}")
    return done


def report_date() -> tuple[str, str]:
    """(the report's date, where it comes from)."""
    value = os.environ.get(DATE_ENV)
    if value is None:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "the time it was made"
    try:
        seconds = int(value)
    except ValueError:
        raise UsageError(f"{DATE_ENV}={value!r}: not a whole number of seconds") from None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds)), DATE_ENV


# -- plots ----------------------------------------------------------------------------------

def _matplotlib():
    try:
        import matplotlib
    except ImportError:
        raise UsageError("rig report draws its plots with matplotlib: pip install matplotlib "
                         "(it is in the test extra: pip install -e '.[test]')") from None
    matplotlib.use("Agg")
    return matplotlib


def inline_svg(svg: str) -> str:
    """An SVG file's text as an element of the page: what comes before ``<svg`` (the XML
    declaration, the doctype) has no place inside HTML, and the RDF ``<metadata>`` block
    matplotlib writes names vocabularies by URL, which a page that fetches nothing
    should not even mention."""
    start = svg.find("<svg")
    if start < 0:
        raise ValueError("not an SVG document")
    return re.sub(r"\s*<metadata>.*?</metadata>", "", svg[start:], flags=re.S).strip()


def _series_svg(harnesses: list, key: str, ylabel: str, title: str, log: bool,
                salt: str) -> str:
    """One figure: a line per harness (``id="harness-NAME"`` in the SVG), ``key`` of its
    series against seconds from the harness' start."""
    matplotlib = _matplotlib()
    from matplotlib.figure import Figure

    with matplotlib.rc_context():
        matplotlib.rcdefaults()  # (a user's matplotlibrc would change the bytes)
        matplotlib.rcParams.update({"svg.hashsalt": salt, "svg.fonttype": "none"})
        fig = Figure(figsize=(8.5, 4.2), dpi=100)
        ax = fig.add_subplot()
        for h in harnesses:
            points = [(s["elapsed"], s[key]) for s in h["series"]
                      if not log or s[key] > 0]  # (log scale: a zero cannot be drawn)
            if not points:
                continue
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker=".", linewidth=1.5, label=h["name"],
                    gid=_anchor("harness", h["name"]))
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("seconds from the harness' start")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", bbox_inches="tight",
                    metadata={"Date": None, "Creator": None})
    return inline_svg(buf.getvalue())


def bugs_summary(done: dict) -> dict:
    """The bug benchmark's rows, as ``rig bench bugs`` makes them (rig.drive.bugbench
    .summarize), for the cells of the latest cap: the results file holds each cell's
    last line, and a curve mixes no caps.  Keys: summary, engines, classes, cap, other
    (cells of other caps, not in the curve)."""
    from types import SimpleNamespace

    from rig.drive import bugbench

    cap = list(done.values())[-1]["cap_s"]  # (the last line written: the latest run)
    records = [r for r in done.values() if float(r["cap_s"]) == float(cap)]
    mutants = list(dict.fromkeys(r["mutant"] for r in records))
    engines = [e for e in bugbench.ENGINES if any(r["engine"] == e for r in records)]
    classes = [SimpleNamespace(name=m) for m in mutants]  # (all summarize reads: .name)
    cells = [bugbench.CellSpec(r["mutant"], r.get("base") or "", r["engine"], int(r["seed"]),
                               float(r["cap_s"]), r.get("trace") or "") for r in records]
    summary = bugbench.summarize(cells, done, set(), classes, engines)
    return {"summary": summary, "engines": engines, "classes": classes, "cap": float(cap),
            "other": len(done) - len(records)}


def bugs_svg(bugs: dict) -> str:
    """The survival curve ``rig bench bugs --plot`` draws (rig.cli.bench.plot_bugs), its
    SVG inlined."""
    from rig.cli.bench import plot_bugs

    _matplotlib()
    with tempfile.TemporaryDirectory(prefix="rig-report-") as tmp:
        plot_bugs(bugs["summary"], bugs["engines"], bugs["classes"], bugs["cap"],
                  str(Path(tmp) / "bugs"))
        return inline_svg((Path(tmp) / "bugs.svg").read_text(encoding="utf-8"))


# -- the page -------------------------------------------------------------------------------

def _machine_text(machine) -> str:
    if not isinstance(machine, dict):
        return "not recorded"
    parts = [str(machine[k]) for k in ("hostname",) if machine.get(k)]
    if machine.get("cpus"):
        parts.append(f"{machine['cpus']} cpus")
    if machine.get("python"):
        parts.append(f"Python {machine['python']}")
    if machine.get("platform"):
        parts.append(str(machine["platform"]))
    return ", ".join(parts) or "not recorded"


def _table(head: list, rows: list, cls: str = "", num=()) -> list[str]:
    out = [f"<table{f' class={chr(34)}{cls}{chr(34)}' if cls else ''}>",
           "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(
            f"<td class=\"num\">{_e(c)}</td>" if i in num else f"<td>{_e(c)}</td>"
            for i, c in enumerate(row)) + "</tr>")
    out.append("</table>")
    return out


def _num(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value != int(value):
        return f"{value:,.1f}"
    return f"{int(value):,}"


class Page:
    """The page being written; ``traces`` are the trace texts the page embeds, each once
    (path -> (anchor, label, text))."""

    def __init__(self):
        self.out: list[str] = []
        self.traces: dict[str, tuple[str, str, str]] = {}

    def add(self, *lines: str) -> None:
        self.out.extend(lines)

    def trace(self, path: str, label: str, text: str) -> str:
        """The anchor of the embedded trace ``path`` (embedded once, however many cells
        link to it)."""
        if path not in self.traces:
            anchor = _anchor("trace", path)
            taken = {a for a, _, _ in self.traces.values()}
            n = 2
            while anchor in taken:
                anchor, n = f"{_anchor('trace', path)}-{n}", n + 1
            self.traces[path] = (anchor, label, text)
        return self.traces[path][0]


def _read_trace(candidates: list[Path]) -> str | None:
    for path in candidates:
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
    return None


def provenance_section(page: Page, inputs: list, report: dict) -> None:
    page.add("<h2 id=\"provenance\">Inputs and where they were made</h2>")
    rows = []
    for what, path, doc, note in inputs:
        if doc is None:
            rows.append((what, str(path), "-", "-", note))
        elif what == "bug benchmark":
            rows.append((what, str(path), "not recorded", "not recorded",
                         "results.jsonl records no commit, date or machine"))
        else:
            rows.append((what, str(path), doc.get("commit") or "not recorded",
                         doc.get("date") or "not recorded", _machine_text(doc.get("machine"))))
    table = _table(["input", "file", "commit", "date", "machine"], rows, cls="provenance")
    # The report's date, in an element of its own: the one part of the page that is not
    # a function of its inputs (unless SOURCE_DATE_EPOCH is set).
    table.insert(-1, f"<tr><td>this report</td><td>{_e(report['out'])}</td>"
                 f"<td>{_e(report['commit'] or 'not recorded')}</td>"
                 f"<td><span id=\"report-date\">{_e(report['date'])}</span> "
                 f"<span class=\"small\">({_e(report['date_from'])})</span></td>"
                 f"<td>{_e(_machine_text(report['machine']))}</td></tr>")
    page.add(*table)


def _matrix_cell(page: Page, design: str, plan: str, cell: dict, base: Path) -> str:
    """One cell of the matrix: its verdict, the invariants that broke (each with its runs,
    linked to its minimized trace, embedded in the page), the known breaks (linked to
    their corpus trace), its VM stops and its runs."""
    from rig.trace import corpus

    verdict = cell["verdict"]
    cls = {"n/a": "v-na"}.get(verdict, f"v-{verdict}")
    parts = []
    if verdict == "error":
        parts.append(f"<b>error</b> <span class=\"small\">({_num(cell['errors'])} of "
                     f"{_num(cell['cells'])} cells did not finish)</span>")
    elif verdict in ("clean", "n/a"):
        parts.append(verdict)
    items = []
    for inv, entry in cell["invariants"].items():
        label = f"{_e(inv)} &times; {_num(entry['runs'])}"
        trace, ops = entry.get("trace"), entry.get("ops")
        # (the matrix carries the trace's text; the file under the sweep's folder else)
        text = entry.get("text") if isinstance(entry.get("text"), str) else (
            _read_trace([base / trace, Path(trace)]) if trace else None)
        if text is not None:
            anchor = page.trace(trace or f"{design}/{plan}/{inv}", f"{design} / {plan}: {inv}"
                                + (f" ({ops} ops)" if ops is not None else ""), text)
            items.append(f"<a href=\"#{anchor}\">{label}</a>")
        elif trace:
            items.append(f"{label} <span class=\"missing\">(trace {_e(trace)} not "
                         "found)</span>")
        else:
            items.append(f"{label} <span class=\"small\">(no minimized trace)</span>")
    known, whys = [], []
    for inv, entry in cell.get("known", {}).items():
        label = f"{_e(inv)} &times; {_num(entry['runs'])}"
        trace = entry.get("trace")
        text = _read_trace([corpus.root() / trace, base / trace]) if trace else None
        if text is not None:
            anchor = page.trace(trace, f"known: {inv} (the corpus trace of {design} that "
                                "records it)", text)
            label = f"<a href=\"#{anchor}\">{label}</a>"
        elif trace:
            label += f" <span class=\"missing\">(corpus trace {_e(trace)} not found)</span>"
        known.append(label)
        if entry.get("why") and entry["why"] not in whys:
            whys.append(entry["why"])
    if known:
        # (why each is known, in a tooltip: inline, it was most of the cell's text)
        items.append(f"<span class=\"small\" title=\"{_e('; '.join(whys))}\">known: "
                     + ", ".join(known) + "</span>")
    if items:
        parts.append("<br>".join(items))
    if cell["vm_stops"]:
        parts.append(f"<span class=\"small\">VM stops: {_num(cell['vm_stops'])}</span>")
    if verdict != "n/a":
        parts.append(f"<span class=\"small\">{_num(cell['runs'])} runs</span>")
    return (f"<td class=\"{cls}\" data-design=\"{_e(design)}\" data-plan=\"{_e(plan)}\" "
            f"data-verdict=\"{_e(verdict)}\">" + "<br>".join(parts) + "</td>")


def sweep_section(page: Page, sweep: dict | None, path: Path) -> dict:
    page.add("<h2 id=\"matrix\">Verdict matrix</h2>")
    if sweep is None:
        page.add(f"<p class=\"missing\">No sweep at {_e(path)}: run rig sweep.</p>")
        return {}
    m = sweep["matrix"]
    atomic = m.get("atomic", {})
    page.add(f"<p>Profile <b>{_e(sweep.get('profile', '?'))}</b>: "
             + (f"<code>{_e(sweep['command'])}</code>; " if sweep.get("command") else "")
             + f"{len(m['designs'])} designs &times; {len(m['plans'])} fault plans. "
             "Rows: designs (atomic: the design promises that a failed conversion leaves "
             "no trace); columns: fault plans; a cell gives the invariants that broke with "
             "the runs that broke each (each links to its minimized trace, below), the "
             "known breaks (a corpus trace of that design records them), or clean, error "
             "(a sweep cell of it did not run to its end: never clean) or n/a (no sweep "
             "cell).</p>")
    page.add("<table class=\"matrix\" id=\"verdict-matrix\">",
             "<tr><th>design</th>" + "".join(f"<th data-plan=\"{_e(p)}\">{_e(p)}</th>"
                                             for p in m["plans"]) + "</tr>")
    base = path.parent
    for d in m["designs"]:
        mark = " <span class=\"small\">(atomic)</span>" if atomic.get(d) else ""
        page.add(f"<tr id=\"{_anchor('design', d)}\" data-design=\"{_e(d)}\""
                 + (" class=\"atomic\"" if atomic.get(d) else "") + f"><th>{_e(d)}{mark}</th>"
                 + "".join(_matrix_cell(page, d, p, m["rows"][d][p], base)
                           for p in m["plans"]) + "</tr>")
    page.add("</table>")
    code = sweep.get("exit")
    why = sweep.get("why") or ""
    page.add(f"<p>Sweep exit <b class=\"{'bad' if code else ''}\">{_e(code)}</b>"
             + (f": {_e(why)}" if why else "") + "</p>")
    totals = sweep.get("totals") or {}
    facts = [f"{_num(totals[k])} {k.replace('_', ' ')}" for k in ("cells", "runs", "errors",
                                                                   "vm_stops") if k in totals]
    if sweep.get("wall_s") is not None:
        facts.append(f"{sweep['wall_s']:.1f} s wall")
    if sweep.get("jobs") is not None:
        facts.append(f"jobs {sweep['jobs']}")
    if sweep.get("tx"):
        facts.append("gateways " + ", ".join(str(t) for t in sweep["tx"]))
    if facts:
        page.add(f"<p class=\"small\">{_e('; '.join(facts))}</p>")
    recheck = sweep["recheck"]
    unequal = [r for r in recheck if not r.get("equal")]
    if not recheck:
        page.add("<p class=\"missing\">Determinism re-check: no cell was re-checked.</p>")
    elif not unequal:
        page.add(f"<p>Determinism re-check: {len(recheck)} cell(s) re-run in a fresh process "
                 "with another PYTHONHASHSEED, every digest equal.</p>")
    else:
        page.add(f"<p class=\"bad\">Determinism re-check: {len(unequal)} of {len(recheck)} "
                 "re-run cell(s) gave another digest:</p>",
                 *_table(["cell", "digest", "again"],
                         [(r.get("cell"), r.get("digest"), r.get("again")) for r in unequal]))
    errors = [c for c in sweep["cells"] if isinstance(c, dict) and c.get("status") != "ok"]
    if errors:
        page.add(f"<h3 id=\"error-cells\">Cells that did not run to their end "
                 f"({len(errors)})</h3>",
                 *_table(["cell", "status", "why"],
                         [(c.get("cell"), c.get("status"), c.get("error") or "")
                          for c in errors]))
    return {"designs": len(m["designs"]), "plans": len(m["plans"])}


def campaign_section(page: Page, campaign: dict | None, path: Path) -> dict:
    page.add("<h2 id=\"campaign\">Fuzz campaign</h2>")
    if campaign is None:
        page.add(f"<p class=\"missing\">No campaign at {_e(path)}: run rig fuzz (every "
                 "campaign writes ARTIFACTS/campaign.json).</p>")
        page.add("<h2 id=\"findings\">Findings</h2>",
                 f"<p class=\"missing\">No campaign at {_e(path)}: no findings to show.</p>")
        return {}
    hs = campaign["harnesses"]
    budget = campaign.get("time_budget_s")
    page.add(f"<p>Mode {_e(campaign.get('mode', '?'))}"
             + (f", a {budget:g} s budget" if isinstance(budget, (int, float)) else "")
             + f", {_e(campaign.get('wall_seconds', '?'))} s wall, build "
             f"{_e(campaign.get('build', '?'))}, {_e(campaign.get('jobs', '?'))} worker(s) per "
             f"harness, seed {_e(campaign.get('seed', '?'))}; exit "
             f"<b>{_e(campaign.get('exit_code', '?'))}</b>.</p>")
    notes = []
    if campaign.get("interrupted"):
        notes.append("interrupted (Ctrl-C)" + (f"; not run: {', '.join(campaign['not_run'])}"
                                               if campaign.get("not_run") else ""))
    for key, what in (("dropped", "dropped"), ("skipped", "skipped")):
        for d in campaign.get(key) or []:
            notes.append(f"{what} {d.get('name')}: {d.get('reason')}")
    for n in campaign.get("silent_canaries") or []:
        notes.append(f"canary {n} did not fail: nothing this campaign says counts")
    for line in campaign.get("errors") or []:
        notes.append(line)
    if notes:
        page.add("<ul>" + "".join(f"<li class=\"bad\">{_e(n)}</li>" for n in notes) + "</ul>")
    if not hs:
        page.add("<p class=\"missing\">The campaign ran no harness: nothing to plot.</p>")
    else:
        rows = [(h["name"], h.get("kind", ""), h.get("build", ""), _num(h.get("workers")),
                 _num(h.get("runs")), _num(h.get("execs_per_s")), _num(h.get("cov")),
                 _num(h.get("corpus")), _num(h.get("new_inputs")),
                 _num(len(h.get("findings") or [])), _num(h.get("seconds")),
                 h.get("error") or "") for h in hs]
        page.add(*_table(["harness", "kind", "build", "workers", "runs", "exec/s", "cov",
                          "corpus", "new inputs", "findings", "seconds", "error"], rows,
                         cls="harnesses", num=range(3, 11)))
        no_series = [h["name"] for h in hs if not h["series"]]
        if no_series:
            page.add(f"<p class=\"missing\">No time series for {_e(', '.join(no_series))}.</p>")
        plotted = [h for h in hs if h["series"]]
        if plotted:
            page.add("<figure id=\"plot-coverage\">",
                     _series_svg(plotted, "cov", "coverage (libFuzzer cov)",
                                 "coverage over time, per harness", False,
                                 "gmem-rig report coverage"),
                     "<figcaption class=\"small\">libFuzzer's cov: edges and value-profile "
                     "features reached, from its status lines.</figcaption></figure>")
            page.add("<figure id=\"plot-execs\">",
                     _series_svg(plotted, "execs_per_s", "exec/s (log scale)",
                                 "exec/s over time, per harness", True,
                                 "gmem-rig report execs"),
                     "<figcaption class=\"small\">Inputs per second since the sample before, "
                     "every worker of the harness together (zeros are not drawn on the log "
                     "scale).</figcaption></figure>")
    findings_section(page, campaign["findings"])
    return {"harnesses": len(hs), "findings": len(campaign["findings"])}


def findings_section(page: Page, findings: list) -> None:
    page.add("<h2 id=\"findings\">Findings</h2>")
    if not findings:
        page.add("<p>The campaign made no new finding (known ones and the canaries' are "
                 "not findings).</p>")
        return
    for i, f in enumerate(findings, 1):
        page.add(f"<h3 id=\"finding-{i}\">{i}. {_e(f['signature'])}</h3>")
        facts = [("harness", f["harness"]), ("kind", f["kind"]),
                 ("summary", f.get("summary") or ""), ("raw input", f.get("raw") or ""),
                 ("found after", f"{f['found_s']:.1f} s, {_num(f.get('found_runs'))} runs"
                  if isinstance(f.get("found_s"), (int, float)) else "-")]
        if f.get("same_trace"):
            facts.append(("same minimized trace as", "; ".join(f["same_trace"])))
        page.add(*_table(["", ""], facts, cls="finding"))
        trace = f.get("trace")
        text = _read_trace([Path(trace)]) if trace else None
        if text is not None:
            page.add(f"<p>Minimized trace <code>{_e(trace)}</code>:</p>",
                     f"<pre class=\"trace\">{_e(text)}</pre>")
        elif trace:
            page.add(f"<p class=\"missing\">Minimized trace {_e(trace)} not found (its path is "
                     "relative to where the campaign ran: run rig report there).</p>")
        else:
            page.add("<p class=\"missing\">No minimized trace (the raw input is what "
                     "replays).</p>")
        page.add(f"<p>Replay: <code class=\"replay\">{_e(f['replay'])}</code></p>")


def bugs_section(page: Page, done: dict | None, path: Path) -> dict:
    page.add("<h2 id=\"bugs\">Bug benchmark</h2>")
    if done is None:
        page.add(f"<p class=\"missing\">No bug benchmark results at {_e(path)}: run rig bench "
                 "bugs.</p>")
        return {}
    if not done:
        page.add(f"<p class=\"missing\">{_e(path)} holds no finished cell: run rig bench "
                 "bugs.</p>")
        return {}
    from rig.cli.bench import bugs_table

    bugs = bugs_summary(done)
    n = len(bugs["classes"])
    page.add(f"<p>{n} mutant{'s' if n != 1 else ''}, engines {_e(', '.join(bugs['engines']))}, "
             f"cap {bugs['cap']:g} s (the latest run's)"
             + (f"; {bugs['other']} cell(s) of other caps are not shown" if bugs["other"]
                else "") + ".</p>")
    page.add("<figure id=\"plot-bugs\">", bugs_svg(bugs), "</figure>")
    page.add("<pre class=\"bugs-table\">"
             + _e("\n".join(bugs_table(bugs["summary"], bugs["engines"], False))) + "</pre>")
    return {"mutants": n}


def traces_section(page: Page) -> None:
    if not page.traces:
        return
    page.add("<h2 id=\"traces\">The traces the matrix links to</h2>")
    for path, (anchor, label, text) in page.traces.items():
        page.add(f"<details id=\"{anchor}\"><summary>{_e(label)}: <code>{_e(path)}</code>"
                 f"</summary><pre class=\"trace\">{_e(text)}</pre></details>")


def render(sweep, campaign, bugs, paths: dict, report: dict) -> tuple[str, dict]:
    """The page, and what it shows per section (for the command's summary line)."""
    page = Page()
    page.add("<!DOCTYPE html>", "<html lang=\"en\">", "<head>", "<meta charset=\"utf-8\">",
             "<title>gmem-rig report</title>", f"<style>{CSS}</style>", "</head>", "<body>",
             "<h1>gmem-rig report</h1>",
             "<p class=\"small\">Sections: <a href=\"#provenance\">inputs</a>, "
             "<a href=\"#matrix\">verdict matrix</a>, <a href=\"#campaign\">fuzz campaign"
             "</a>, <a href=\"#findings\">findings</a>, <a href=\"#bugs\">bug benchmark</a>."
             "</p>")
    provenance_section(page, [
        ("sweep", paths["sweep"], sweep, "no sweep: run rig sweep"),
        ("campaign", paths["campaign"], campaign, "no campaign: run rig fuzz"),
        ("bug benchmark", paths["bugs"], bugs, "no results: run rig bench bugs")], report)
    shown = {"sweep": sweep_section(page, sweep, paths["sweep"]),
             "campaign": campaign_section(page, campaign, paths["campaign"]),
             "bugs": bugs_section(page, bugs, paths["bugs"])}
    traces_section(page)
    page.add("</body>", "</html>", "")
    return "\n".join(page.out), shown


def write(path: Path, text: str) -> None:
    """The whole page or the old one: a temp file, then os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def main(args) -> int:
    from rig.cli.bench import BUGS_RESULTS
    from rig.drive.campaign import provenance
    from rig.errors import EXIT_OK

    paths = {"sweep": sweep_path(args.sweep or DEFAULT_SWEEP),
             "campaign": Path(args.campaign or DEFAULT_CAMPAIGN),
             "bugs": Path(args.bugs or BUGS_RESULTS)}
    sweep = load_sweep(paths["sweep"])
    campaign = load_campaign(paths["campaign"])
    bugs = load_bugs(paths["bugs"])
    if sweep is None and campaign is None and bugs is None:
        raise UsageError(f"nothing to report: no sweep at {paths['sweep']}, no campaign at "
                         f"{paths['campaign']}, no bug benchmark results at {paths['bugs']} "
                         "(run rig sweep, rig fuzz or rig bench bugs first)")
    date, date_from = report_date()
    out = Path(args.output or DEFAULT_OUT)
    mine = provenance(0)
    report = {"out": str(out), "commit": mine["commit"], "machine": mine["machine"],
              "date": date, "date_from": date_from}
    text, shown = render(sweep, campaign, bugs, paths, report)
    write(out, text)
    said = [f"matrix {shown['sweep']['designs']} designs x {shown['sweep']['plans']} plans"
            if shown["sweep"] else f"no sweep at {paths['sweep']}",
            f"campaign {shown['campaign']['harnesses']} harnesses, "
            f"{shown['campaign']['findings']} findings" if shown["campaign"]
            else f"no campaign at {paths['campaign']}",
            f"bug benchmark {shown['bugs']['mutants']} mutants" if shown["bugs"]
            else f"no bug benchmark results at {paths['bugs']}"]
    print(f"rig report: wrote {out} ({'; '.join(said)})")
    return EXIT_OK
