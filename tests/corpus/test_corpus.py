"""Every trace in corpora/: strict parse, canonical round trip, expected outcome on both
backends.  New files are picked up with no code change; core traces (corpora/core/,
rig.trace.core) go through their own parser and replay the same way."""

from pathlib import Path

import pytest

from rig.cli import replay
from rig.trace import core as core_trace
from rig.trace import format as world_trace

from tests.conftest import BACKENDS
from tests.corpus.snapshot import traces

CORPORA = Path(__file__).resolve().parents[2] / "corpora"
#: Every corpus file (parse and round trip), and those that replay in this process (the
#: traces of core mutants replay on their own core, in tests/mutants/).
ALL = sorted(CORPORA.rglob("*.trace"))
TRACES = traces()


def test_corpus_is_not_empty():
    assert len(list((CORPORA / "regressions").glob("*.trace"))) >= 6


def test_only_core_mutant_traces_are_left_to_their_own_core():
    assert TRACES and set(ALL) - set(TRACES) == {
        p for p in ALL if "mutants" in p.parts and p.stem in _core_mutants()}


def _core_mutants() -> set:
    from rig.world.mutants import mutants

    return {name for name, cls in mutants().items() if cls.core_mutant}


@pytest.mark.parametrize("path", ALL, ids=lambda p: str(p.relative_to(CORPORA)))
def test_trace_round_trips(path):
    fmt = core_trace if core_trace.is_core_trace(path.read_text()) else world_trace
    trace = fmt.load(str(path), strict=True)
    assert trace.expect is not None, "corpus traces say what they expect"
    text = fmt.serialize(trace)
    assert fmt.parse(text) == trace
    assert text == path.read_text(), "corpus files are canonical (rig minimize writes them so)"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("path", TRACES, ids=lambda p: str(p.relative_to(CORPORA)))
def test_trace_replays_as_expected(path, backend):
    loaded = replay.load_input(str(path))
    if loaded.core is not None:
        result, lines = replay.replay_core(loaded, str(path), backend)
        assert replay.core_exit_code(loaded, result) == 0, "\n".join(lines)
        return
    result, lines, _ = replay.replay(loaded, str(path), backend)
    assert replay.exit_code(loaded, result) == 0, "\n".join(lines)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("path", TRACES, ids=lambda p: str(p.relative_to(CORPORA)))
def test_replay_text_matches_snapshot(path, backend):
    """The replay text of every corpus trace is the one recorded in tests/corpus/
    snapshots/ (regenerate with ``python -m tests.corpus.snapshot`` and review the diff:
    a refactor must leave it unchanged)."""
    from tests.corpus.snapshot import replay_text, snapshot_path

    expected = snapshot_path(path)
    assert expected.is_file(), f"no snapshot for {path.name}: run python -m tests.corpus.snapshot"
    assert replay_text(path, backend) == expected.read_text()


def test_every_snapshot_has_its_trace():
    from tests.corpus.snapshot import SNAPSHOTS, snapshot_path

    assert {snapshot_path(p) for p in TRACES} == set(SNAPSHOTS.glob("*.txt"))
