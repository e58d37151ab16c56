"""Replay texts of every corpus trace, kept as snapshots: the safety net of refactors.

    python -m tests.corpus.snapshot          rewrite tests/corpus/snapshots/ (review the diff)

A snapshot is what ``rig replay PATH`` prints for ``corpora/PATH`` on the Cython core with
the differential shadow on, the path relative to the repository.  tests/corpus/
test_corpus.py compares every trace's replay text with its snapshot, on both backends
(the ``backend:`` line aside), so a change of behaviour anywhere under the trace format,
the world, the designs or the oracle shows as a diff of a text file, op by op.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORPORA = ROOT / "corpora"
SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"


def needs_core_mutant(trace: Path) -> str | None:
    """The core mutant a trace runs on (corpora/mutants/: a world trace whose design is a
    core mutant, or a core trace naming one), or None.  Such a trace cannot replay in
    this process, whose core is the package's: tests/mutants/test_core_mutants.py
    replays it in a child on the mutant's core build."""
    from rig.trace import core as core_trace
    from rig.trace import format as world_trace
    from rig.world.mutants.core import core_mutant_of

    text = trace.read_text()
    if core_trace.is_core_trace(text):
        return core_trace.parse(text).config.mutant
    return core_mutant_of(world_trace.parse(text).config.design)


def traces() -> list[Path]:
    """The corpus traces this process can replay (snapshots are taken of these)."""
    return [p for p in sorted(CORPORA.rglob("*.trace")) if not needs_core_mutant(p)]


def snapshot_path(trace: Path) -> Path:
    return SNAPSHOTS / (str(trace.relative_to(CORPORA)).replace("/", "__") + ".txt")


def replay_text(trace: Path, backend: str = "cy") -> str:
    from rig.cli.replay import load_input, replay, replay_core

    rel = str(trace.relative_to(ROOT))
    loaded = load_input(str(trace))
    if loaded.core is not None:  # a core trace: the core's implementations side by side
        _, lines = replay_core(loaded, rel, backend)
    else:
        _, lines, _ = replay(loaded, rel, backend)
    return "\n".join(line for line in lines if not line.startswith("backend: ")) + "\n"


def main() -> int:
    SNAPSHOTS.mkdir(exist_ok=True)
    wanted = set()
    for trace in traces():
        path = snapshot_path(trace)
        wanted.add(path)
        path.write_text(replay_text(trace))
    for stale in set(SNAPSHOTS.glob("*.txt")) - wanted:
        stale.unlink()
    print(f"{len(wanted)} snapshot(s) in {SNAPSHOTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
