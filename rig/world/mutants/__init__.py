"""Mutants: designs with exactly one deliberate defect, from this code's real bug history.

A mutant is what the bug benchmark (``rig bench bugs``) measures the rig against: a
ground-truth bug the oracle must catch, and a time to find it per engine.  Each one is a
class in a module of this package that mixes ``Mutant`` into the design it mutates
(``class RollbackWrongSection(Mutant, Hardened)``), sets its own ``name`` (the mutant's
name, which is also its design name: ``rig fuzz --design rollback-wrong-section``), its
``base`` (the unmutated design: a finding *kills* the mutant when its trace is clean
there) and, for a defect in the core, ``core_mutant``: the name of the compile-time flag
of the Cython core and of its pure-Python twin (rig.core.mutants) that builds the defect
in.  Its docstring cites the real bug or review concern it reproduces.

Every mutant has one known trace that kills it, ``corpora/mutants/NAME.trace`` (a world
trace with ``design=NAME``, or a core trace for a mutant only the core harnesses reach):
the tests replay it on the mutant (a violation) and on ``base`` (clean).

Mutants are not built-in designs: they have no id (the byte decoder never picks one),
are not in ``rig designs`` nor in the sweeps, and are loaded by name on first use
(``rig.world.designs.ensure``), which puts them in ``DESIGNS`` and, through
RIG_DESIGNS, in every child process.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from functools import lru_cache


class Mutant:
    """Mixin marking a design as a mutant; see the module docstring.

    ``base``         the name of the design it mutates (the kill check replays there)
    ``core_mutant``  the core flag it needs (rig.core.mutants.CORE_MUTANTS), or None
    """

    base: str = ""
    core_mutant: str | None = None
    #: No id: a mutant is not a built-in design, and the byte decoder never picks one
    #: (the mixin comes first in the bases, so this hides the mutated design's id).
    id = None


@lru_cache(maxsize=None)
def _discover() -> dict:
    found = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for cls in vars(module).values():
            if (isinstance(cls, type) and issubclass(cls, Mutant) and cls is not Mutant
                    and cls.__module__ == module.__name__ and "name" in vars(cls)):
                if cls.name in found:
                    raise ValueError(f"mutant name {cls.name!r} is taken twice: "
                                     f"{found[cls.name].__module__} and {cls.__module__}")
                if not cls.base:
                    raise ValueError(f"mutant {cls.name!r} ({cls.__module__}) sets no base")
                found[cls.name] = cls
    return dict(sorted(found.items()))


def mutants() -> dict:
    """name -> class, sorted by name."""
    return _discover()


def spec(cls) -> str:
    """The design spec ``load_design`` takes for a mutant class."""
    return f"{cls.__module__}:{cls.__qualname__}"


def level(cls) -> str:
    """``core`` for a defect in the core (a compile-time flag), else ``world``."""
    return "core" if cls.core_mutant else "world"


def summary(cls) -> str:
    doc = " ".join(inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0].split())
    head, dot, _ = doc.partition(". ")
    return head + "." if dot else doc
