"""The traces the rig ships: scenarios, the designs table's cases, the regression corpus.

They are files under corpora/ (corpora/README.md), not Python: every one of them prints,
replays and minimizes as any other trace.  In a checkout the folder is the repository's
``corpora/``, next to the package; an installed rig carries a copy as package data
(``rig/_corpora``, written by setup.py's build step).

``scenarios()``: corpora/scenarios/*.trace, the fixed inputs of the fail_nth sweeps
(``rig sweep``) and of ``rig designs``; a scenario's name and description are its
``# scenario NAME: TEXT`` comment, its world the trace's header (the sweep and the
designs table then swap the design and the IOMMU backend).
``design_cases()``: corpora/designs/*.trace, the further cases of the designs table.
``regressions()``, ``core_traces()``, ``unminimized()``: the regression corpus, the core
traces and the long forms of the known findings.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from rig.trace.format import Trace, load
from rig.world.config import WorldConfig

_PACKAGE = Path(__file__).resolve().parents[1]


def root() -> Path:
    """The corpora folder: the checkout's (the package's parent holds setup.py and
    corpora/), else the installed copy.  RIG_CORPORA overrides both (a folder laid out
    the same way)."""
    override = os.environ.get("RIG_CORPORA")
    if override:
        return Path(override)
    checkout = _PACKAGE.parent / "corpora"
    if (_PACKAGE.parent / "setup.py").is_file() and (checkout / "scenarios").is_dir():
        return checkout
    return _PACKAGE / "_corpora"


@dataclass(frozen=True)
class Scenario:
    name: str
    doc: str
    config: WorldConfig
    ops: tuple
    path: str


def _scenario(path: Path) -> Scenario:
    trace: Trace = load(str(path), strict=True)
    for comment in trace.comments:
        word, _, rest = comment.partition(" ")
        name, colon, doc = rest.partition(": ")
        if word == "scenario" and colon and name == path.stem:
            return Scenario(name, doc, trace.config, tuple(trace.ops), str(path))
    raise ValueError(f"{path}:1: no '# scenario {path.stem}: ...' comment")


def _folder(name: str) -> dict[str, Scenario]:
    folder = root() / name
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: the rig's corpora are missing (a broken install?)")
    return {s.name: s for s in map(_scenario, sorted(folder.glob("*.trace")))}


@functools.cache
def scenarios() -> dict[str, Scenario]:
    """Name -> scenario, in file-name order."""
    return _folder("scenarios")


@functools.cache
def design_cases() -> dict[str, Scenario]:
    return _folder("designs")


def regressions() -> list[Path]:
    """The regression corpus' traces, sorted."""
    return sorted((root() / "regressions").glob("*.trace"))


def core_traces() -> list[Path]:
    """The core traces of corpora/core/, sorted (the core harnesses' shipped cases)."""
    return sorted((root() / "core").glob("*.trace"))


def unminimized() -> list[Trace]:
    """The known findings as long, unminimized traces (what ``rig minimize`` is tested on)."""
    return [load(str(p), strict=True) for p in sorted((root() / "unminimized").glob("*.trace"))]
