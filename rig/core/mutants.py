"""Core mutants: compile-time flags that build one deliberate defect into the core.

The bug benchmark (``rig bench bugs``, rig/world/mutants/) measures the rig against
ground-truth bugs.  The ones that live in the code that ports to QEMU (the manager, the
VFIO listener, the fake IOMMU) are built into the core itself, never as a second copy of
it: each is a C macro of the Cython core, ``RIG_MUTANT_<NAME>`` (NAME upper-cased, ``-``
-> ``_``), 0 unless the build defines it, declared once in each ``.pyx`` it affects and
tested there with a plain ``if RIG_MUTANT_X:``, which the C compiler folds away, so the
package's own build carries no trace of it.  A variant build defines one of them
(``-DRIG_MUTANT_X=1``: rig.drive.native.ensure_build(mode, mutant)) into a cache folder
of its own, marked by a ``.mutant`` file, and is imported through RIG_NATIVE_DIR.

The pure-Python twin takes the same defect from the environment: ``RIG_CORE_MUTANT=NAME``
at import time, one mutant per process, read here and nowhere else (``ACTIVE``).  The
Cython side refuses to run unmutated while RIG_CORE_MUTANT names a mutant, and a variant
build while it names none (rig/core/cy/__init__.py), so that one variable tells what
every core of the process is.  ``rig`` sets both itself: a command whose design is a
mutant with a ``core_mutant`` re-executes on that core (rig.cli.main.ensure_core_for).

May import: rig.errors and the standard library only (it is part of the core).
"""

from __future__ import annotations

import os
from typing import NamedTuple

from rig.errors import UsageError

#: The environment variable naming the process's core mutant (unset or empty: none).
ENV = "RIG_CORE_MUTANT"
#: The file a variant build leaves beside its modules, holding the mutant's name.
MARKER = ".mutant"


class CoreMutant(NamedTuple):
    macro: str      # the C macro, RIG_MUTANT_<NAME>
    modules: tuple  # the core modules whose code it changes (rig/core/{cy,pure}/<m>)
    doc: str        # the defect in one line


def macro(name: str) -> str:
    """``rollback-wrong-section`` -> ``RIG_MUTANT_ROLLBACK_WRONG_SECTION``."""
    return "RIG_MUTANT_" + name.upper().replace("-", "_")


def _mutant(name: str, modules: tuple, doc: str) -> tuple[str, CoreMutant]:
    return name, CoreMutant(macro(name), modules, doc)


#: name -> CoreMutant, sorted by name.  The design that exposes each one to the oracle,
#: and the real bug it reproduces, is in rig/world/mutants/core.py.
CORE_MUTANTS: dict[str, CoreMutant] = dict(sorted([
    _mutant("rollback-wrong-section", ("ram_block_attributes",),
            "notify_populate's listener rollback clips the failing listener's section "
            "instead of each earlier listener's own"),
    _mutant("size-unaligned-accepted", ("ram_block_attributes",),
            "is_valid_range does not check that the size is block-aligned, so nbits "
            "is truncated"),
    _mutant("no-wrap-check", ("ram_block_attributes",),
            "is_valid_range does not reject offset + size wrapping 2^64 (nor size 0)"),
    _mutant("double-populate", ("ram_block_attributes",),
            "state_change's populate mixture notifies every block of the range, the "
            "already populated ones too"),
    _mutant("rollback-forgets-failing-bit", ("ram_block_attributes",),
            "the full rollback of a populate mixture restores every bit but the "
            "failing block's"),
    _mutant("vfio-populate-no-rollback", ("vfio",),
            "the VFIO listener keeps the granules it mapped before a map failure"),
    _mutant("iommufd-partial-unmap-ignored", ("iommu",),
            "an iommufd unmap that meets an area not fully inside the range after "
            "removing others returns success, leaving that area mapped"),
]))


class CoreMutantError(ImportError, UsageError):
    """The core this process was asked for cannot be had: an unknown RIG_CORE_MUTANT,
    or a Cython build that is not the variant RIG_CORE_MUTANT names.  An ImportError
    (the core does not import), and a UsageError (the command line prints one line and
    exits 1)."""


def _active() -> str | None:
    name = os.environ.get(ENV, "").strip()
    if not name:
        return None
    if name not in CORE_MUTANTS:
        raise CoreMutantError(f"{ENV}={name!r} is not a core mutant (one of "
                              f"{', '.join(CORE_MUTANTS)}); unset it for the real core")
    return name


#: The core mutant of this process (RIG_CORE_MUTANT, validated at import), or None.
ACTIVE: str | None = _active()


def flags_for(name: str | None) -> dict[str, int]:
    """What every flag must be in a core built for mutant ``name`` (None: all 0)."""
    return {m: int(m == name) for m in CORE_MUTANTS}
