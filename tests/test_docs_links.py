"""Every document the repository cites is in the repository.

Docstrings, comments, tests, traces and docs point readers at the repository's own
documents ("docs/semantics.md 2.2", "corpora/README.md").  A reader of a checkout must be
able to follow each one, so this fails when a file cites the team's design or style notes
(which live outside the repository), a path ending in ``.md`` that does not exist, or a
section number that is not a heading of the cited docs/ file.  Cythonized ``.c`` files
are skipped: they regenerate from the ``.pyx``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: What is scanned: the repository's own folders and top-level files.
SCANNED = ("rig", "tests", "ci", "fuzz", "corpora", "docs", ".github", ".clusterfuzzlite",
           "README.md", "setup.py", "pyproject.toml")
#: Build output, environments and caches: not the repository's text.
SKIPPED_DIRS = {"__pycache__", "build", ".venv", ".hypothesis", ".pytest_cache", "_corpora"}
SKIPPED_SUFFIXES = {".so", ".pyc", ".pyo", ".html", ".zip", ".o"}

#: Documents that are not in the repository.  Spelt so that this file does not match.
FOREIGN = re.compile(r"\b(?:DESIGN|STYLE)\.md\b")
#: A repository-relative path to a Markdown file (not part of a URL or absolute path).
MD_PATH = re.compile(r"(?<![\w/.:-])((?:[\w.-]+/)+[\w.-]+\.md)\b")
#: docs/<name>.md, optionally followed on the same line by section numbers: "2.2",
#: "2.3-2.7", "2.2, 2.4 and 2.6".
DOCS_REF = re.compile(r"\bdocs/([\w.-]+\.md)\b")
SECTIONS = re.compile(r"[ \t]+(\d+(?:\.\d+)*(?:(?:[ \t]*[-\u2013,][ \t]*|[ \t]+and[ \t]+)"
                      r"\d+(?:\.\d+)*)*)")
NUMBER = re.compile(r"\d+(?:\.\d+)*")
HEADING = re.compile(r"#{1,6}[ \t]+(\d+(?:\.\d+)*)\.?(?:[ \t]|$)")


def _skipped(path: Path, root: Path) -> bool:
    """``path`` is relative to ``root``."""
    if any(part in SKIPPED_DIRS or part.startswith((".venv", "build-")) or
           part.endswith(".egg-info") for part in path.parts):
        return True
    if path.suffix in SKIPPED_SUFFIXES:
        return True
    # A .c beside a .pyx of the same name is cythonized output.
    return path.suffix == ".c" and (root / path).with_suffix(".pyx").exists()


def scanned_files(root: Path = ROOT) -> list[Path]:
    """Every text file under ``SCANNED`` in ``root``, sorted."""
    files = []
    for name in SCANNED:
        top = root / name
        candidates = [top] if top.is_file() else sorted(top.rglob("*")) if top.is_dir() else []
        for path in candidates:
            if path.is_file() and not _skipped(path.relative_to(root), root):
                files.append(path)
    return sorted(files)


def headings(doc: Path) -> set[str]:
    """The section numbers of a Markdown file's headings ("## 2. ...", "### 2.2 ..."),
    outside fenced code blocks."""
    numbers, fenced = set(), False
    for line in doc.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        match = HEADING.match(line)
        if match and not fenced:
            numbers.add(match.group(1))
    return numbers


def problems(text: str, where: str, root: Path = ROOT) -> list[str]:
    """What is wrong with the references in ``text`` (from the file ``where``), one
    ``where:line: what`` string per bad reference."""
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for match in FOREIGN.finditer(line):
            out.append(f"{where}:{lineno}: cites {match.group(0)}, which is not in the "
                       f"repository (cite docs/semantics.md or state the point)")
        for match in MD_PATH.finditer(line):
            if not (root / match.group(1)).is_file():
                out.append(f"{where}:{lineno}: cites {match.group(1)}, which does not exist")
        for match in DOCS_REF.finditer(line):
            doc = root / "docs" / match.group(1)
            if not doc.is_file():
                continue  # reported above as a missing path
            sections = SECTIONS.match(line, match.end())
            if not sections:
                continue
            known = headings(doc)
            for number in NUMBER.findall(sections.group(1)):
                if number not in known:
                    out.append(f"{where}:{lineno}: cites docs/{match.group(1)} {number}, "
                               f"which is not a section heading there")
    return out


def scan(root: Path = ROOT) -> list[str]:
    out = []
    for path in scanned_files(root):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # raw fuzz seeds and other bytes
        out += problems(text, str(path.relative_to(root)), root)
    return out


def test_every_reference_resolves():
    found = scan()
    assert not found, "references that a reader of the repository cannot follow:\n" + \
        "\n".join(found)


def test_the_scan_reads_every_kind_of_file():
    """The scan is not vacuous: it reads sources, the core's .pyx, traces, docs, CI and
    the top-level files, and leaves cythonized .c out."""
    files = {str(p.relative_to(ROOT)) for p in scanned_files()}
    for expected in ("README.md", "setup.py", "docs/semantics.md", "corpora/README.md",
                     "corpora/scenarios/seed.trace", "rig/core/cy/ram_block_attributes.pyx",
                     "rig/check/oracle.py", "tests/test_docs_links.py", "ci/test"):
        assert expected in files
    assert not any(f.endswith(".c") and (ROOT / f).with_suffix(".pyx").exists()
                   for f in files)


def test_semantics_keeps_the_cited_section_numbers():
    assert {"1", "2", "2.1", "2.2", "2.3", "2.4", "2.5", "2.6", "2.7", "3", "4", "4.1",
            "5", "6", "7"} <= headings(ROOT / "docs" / "semantics.md")


@pytest.mark.parametrize("text, fragment", [
    ("(" + "DESIGN" + ".md 2.2)", "which is not in the repository"),
    ("see " + "STYLE" + ".md, \"coverage marks\"", "which is not in the repository"),
    # Spelt in pieces, like the two above, so that this file itself scans clean.
    ("see fuzz/" + "README.md", "fuzz/" + "README.md, which does not exist"),
    ("see docs/" + "nonexistent.md", "docs/" + "nonexistent.md, which does not"),
    ("(docs/semantics.md " + "9.9)", "semantics.md " + "9.9, which is not a section"),
    ("(docs/semantics.md " + "2.3-2.9)", "semantics.md " + "2.9, which is not a section"),
    ("docs/semantics.md " + "2.2, 2.4 and 8.1 line by line", "semantics.md " + "8.1,"),
])
def test_a_bad_reference_is_reported(text, fragment):
    found = problems(text, "x.py")
    assert len(found) == 1 and fragment in found[0], found


@pytest.mark.parametrize("text", [
    "(docs/semantics.md 2.2)",
    "docs/semantics.md 2.3-2.7, 3, 4.1",
    "docs/semantics.md 2.2, 2.4, 2.5 and 2.6 line by line",
    "docs/semantics.md 7); gcc's build",
    "corpora/README.md has the grammar",
    "docs/designs.md is generated",
    "https://github.com/qemu/qemu/blob/master/docs/devel/style.md",
])
def test_a_good_reference_passes(text):
    assert problems(text, "x.py") == []


def test_a_planted_file_is_found(tmp_path):
    """A bad reference in any scanned file of a checkout is reported, and cythonized .c,
    .venv and build output are not read."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "semantics.md").write_text("# S\n\n## 2. Rules\n\n### 2.2 M\n")
    (tmp_path / "rig" / "core").mkdir(parents=True)
    (tmp_path / "rig" / "core" / "m.pyx").write_text("# (docs/semantics.md 2.2)\n")
    (tmp_path / "rig" / "core" / "m.c").write_text("/* " + "DESIGN" + ".md 2.2 */\n")
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "x.py").write_text("# " + "DESIGN" + ".md\n")
    (tmp_path / "corpora").mkdir()
    (tmp_path / "corpora" / "a.trace").write_text("# gmem-rig trace v1\n"
                                                 "# scenario a: x (docs/semantics.md 2.5)\n")
    (tmp_path / "README.md").write_text("The reference is " + "DESIGN" + ".md.\n")
    assert scan(tmp_path) == [
        "README.md:1: cites " + "DESIGN" + ".md, which is not in the repository (cite "
        "docs/semantics.md or state the point)",
        "corpora/a.trace:2: cites docs/semantics.md 2.5, which is not a section heading "
        "there",
    ]
