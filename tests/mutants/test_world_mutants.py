"""The mutants of the bug benchmark (rig.world.mutants): the registry's promises, and for
every world-level mutant its kill trace.

Every test loops over ``rig.world.mutants.mutants()``, so a mutant added to any module
of the package is covered with no edit here.  The kill-trace tests take the mutants
whose trace ``corpora/mutants/NAME.trace`` is a world trace and that need no core flag
(``core_mutant``: those run on a variant build of the core, tests/mutants/
test_core_mutants.py): the trace must end in the violation it expects on the mutant, on
both core backends, and the same trace on the mutant's ``base`` must be clean (no
violation, no VM stop).  That pair is what "the trace kills the mutant" means to
``rig bench bugs``.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from rig.check.session import run
from rig.cli.main import main
from rig.trace import core as core_trace
from rig.trace.format import load
from rig.world.designs import BUILT_IN, Design
from rig.world.mutants import Mutant, level, mutants

from tests.conftest import BACKENDS

CORPORA = Path(__file__).resolve().parents[2] / "corpora"
MUTANTS = mutants()


def kill_trace(name: str) -> Path:
    return CORPORA / "mutants" / f"{name}.trace"


def _world_mutants() -> list[str]:
    """The mutants whose kill trace this file replays: a world trace, no core flag."""
    return [name for name, cls in MUTANTS.items()
            if cls.core_mutant is None and kill_trace(name).is_file()
            and not core_trace.is_core_trace(kill_trace(name).read_text())]


WORLD_MUTANTS = _world_mutants()


def test_there_are_world_mutants():
    assert WORLD_MUTANTS, "no world-level mutant with a world kill trace"


# -- the registry ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(MUTANTS))
def test_a_mutant_is_a_named_design_over_a_built_in_one(name):
    cls = MUTANTS[name]
    assert issubclass(cls, Mutant) and issubclass(cls, Design)
    assert cls.name == name and "name" in vars(cls)
    assert name not in BUILT_IN, "a mutant's name is not a built-in design's"
    assert cls.base in BUILT_IN, f"base {cls.base!r} is not a built-in design"
    assert issubclass(cls, BUILT_IN[cls.base]), "a mutant mixes Mutant into its base"
    doc = inspect.cleandoc(vars(cls).get("__doc__") or "")
    assert len(doc.split()) >= 20, "the docstring says what is wrong and where it comes from"
    assert level(cls) == ("core" if cls.core_mutant else "world")


@pytest.mark.parametrize("name", list(MUTANTS))
def test_every_mutant_has_its_kill_trace(name):
    path = kill_trace(name)
    assert path.is_file(), f"{path.relative_to(CORPORA.parent)} is missing"
    text = path.read_text()
    if core_trace.is_core_trace(text):
        trace = core_trace.load(str(path), strict=True)
        assert trace.expect is not None and trace.expect.kind == "mismatch"
        return
    trace = load(str(path), strict=True)
    assert trace.config.design == name, "the kill trace runs the mutant (design=NAME)"
    assert trace.expect is not None and trace.expect.kind == "violation"
    assert trace.expect.invariant, "the kill trace names the invariant that catches it"


def test_rig_list_mutants_shows_every_mutant(capsys):
    assert main(["list", "mutants"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:3] for line in out.splitlines()
            if line.startswith("  ") and line.split()[0] in MUTANTS}
    assert rows == {name: [cls.base, level(cls)] for name, cls in MUTANTS.items()}

    assert main(["list", "--json", "mutants"]) == 0
    listed = json.loads(capsys.readouterr().out)["mutants"]
    assert [(m["name"], m["base"], m["trace"]) for m in listed] == [
        (name, cls.base, f"corpora/mutants/{name}.trace") for name, cls in MUTANTS.items()]


# -- the kill traces --------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", WORLD_MUTANTS)
def test_the_kill_trace_kills_the_mutant(name, backend):
    trace = load(str(kill_trace(name)), strict=True)
    result = run(trace.config, trace.ops, backend)
    outcome = result.outcome
    assert outcome.kind == "violation" and trace.expect.matches(outcome), outcome.describe()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", WORLD_MUTANTS)
def test_the_kill_trace_is_clean_on_the_base(name, backend):
    trace = load(str(kill_trace(name)), strict=True)
    base = MUTANTS[name].base
    result = run(trace.config.with_(design=base), trace.ops, backend)
    outcome = result.outcome
    assert outcome.kind == "ok" and outcome.stop_errno is None, \
        f"on {base}: {outcome.describe()}"
    assert len(result.steps) == len(trace.ops), "every op ran"
