"""The core: bitmap, RamBlockAttributes, VFIO listener and the fake IOMMU.

Two backends with one API (msgpack's pattern): the compiled Cython modules in
``rig.core.cy`` (default), or the pure-Python twin in ``rig.core.pure`` when the
environment has ``RIG_PUREPYTHON=1`` at import time.  ``BACKEND`` names the one in use;
``load_backend(name)`` gives either explicitly (tests and the differential check use both
in one process).  ``MUTANT`` is the core mutant both are built with (rig.core.mutants:
RIG_CORE_MUTANT), None for the real core.

May import: rig.errors only.  The core is what gets ported to QEMU's C: it knows nothing
of the world, the oracle or the drivers (rig/world/ and above call into it).
"""

from __future__ import annotations

import importlib
import os
from types import SimpleNamespace

from rig.core import mutants
from rig.core.types import IommuMapping, MemoryRegionSection

#: The core mutant of this process (RIG_CORE_MUTANT; rig.core.mutants), or None.
MUTANT: str | None = mutants.ACTIVE

#: What every backend exports; the parity test checks names and signatures.
API = (
    "Bitmap",
    "RamBlockAttributes",
    "RamDiscardListener",
    "ROLLBACK_POLICIES",
    "VFIORamDiscardListener",
    "VfioType1Container",
    "IommufdIoas",
    "DEFAULT_DMA_ENTRY_LIMIT",
    "coverage_marks",
    "reset_coverage_marks",
)

_MODULES = ("bitmap", "ram_block_attributes", "iommu", "vfio")


def load_backend(name: str) -> SimpleNamespace:
    """The ``"cy"`` or ``"pure"`` backend as a namespace holding every name in ``API``."""
    if name not in ("cy", "pure"):
        raise ValueError(f"unknown core backend {name!r} (cy or pure)")
    mods = [importlib.import_module(f"rig.core.{name}.{m}") for m in _MODULES]
    _check_mutant_flags(name, dict(zip(_MODULES, mods)))
    ns = SimpleNamespace(name=name)
    bitmap, rba, iommu, vfio = mods
    ns.Bitmap = bitmap.Bitmap
    ns.RamBlockAttributes = rba.RamBlockAttributes
    ns.RamDiscardListener = rba.RamDiscardListener
    ns.ROLLBACK_POLICIES = rba.ROLLBACK_POLICIES
    ns.VFIORamDiscardListener = vfio.VFIORamDiscardListener
    ns.VfioType1Container = iommu.VfioType1Container
    ns.IommufdIoas = iommu.IommufdIoas
    ns.DEFAULT_DMA_ENTRY_LIMIT = iommu.DEFAULT_DMA_ENTRY_LIMIT

    def coverage_marks() -> dict:
        marks: dict = {}
        for m in (rba, vfio):
            marks.update(m.coverage_marks())
        return marks

    def reset_coverage_marks() -> None:
        rba.reset_coverage_marks()
        vfio.reset_coverage_marks()

    ns.coverage_marks = coverage_marks
    ns.reset_coverage_marks = reset_coverage_marks
    return ns


def _check_mutant_flags(name: str, mods: dict) -> None:
    """Every flag compiled into (or read by) the backend's modules is what MUTANT says:
    a module built for another mutant, or for none, never runs under this process's
    name for its core (the .mutant marker says which build a folder holds; this says
    what the code in it does).  A module with no MUTANT_FLAGS predates core mutants:
    all its flags are 0."""
    want = mutants.flags_for(MUTANT)
    for mutant, entry in mutants.CORE_MUTANTS.items():
        for module in entry.modules:
            got = getattr(mods[module], "MUTANT_FLAGS", {}).get(mutant, 0)
            if got != want[mutant]:
                wanted = (f"{mutants.ENV}={MUTANT}" if MUTANT
                          else f"the real core ({mutants.ENV} unset)")
                raise mutants.CoreMutantError(
                    f"rig.core.{name}.{module} ({mods[module].__file__}) is built with "
                    f"{entry.macro}={got}, but this process wants {wanted}: rebuild it, "
                    "or let `rig` pick the core (it re-executes on the build a design "
                    "needs)")


def _selected() -> str:
    """The backend RIG_PUREPYTHON selects: the one place the variable is read."""
    return "pure" if os.environ.get("RIG_PUREPYTHON", "") not in ("", "0") else "cy"


try:
    _backend = load_backend(_selected())
except mutants.CoreMutantError:
    raise  # (built, but not the build RIG_CORE_MUTANT names: the message says so)
except ImportError as exc:  # the extension was not built
    raise ImportError(
        f"rig's Cython core is not built ({exc}); run `pip install -e .` (or ci/test), "
        "or set RIG_PUREPYTHON=1 for the pure-Python twin"
    ) from exc

BACKEND: str = _backend.name
Bitmap = _backend.Bitmap
RamBlockAttributes = _backend.RamBlockAttributes
RamDiscardListener = _backend.RamDiscardListener
ROLLBACK_POLICIES = _backend.ROLLBACK_POLICIES
VFIORamDiscardListener = _backend.VFIORamDiscardListener
VfioType1Container = _backend.VfioType1Container
IommufdIoas = _backend.IommufdIoas
DEFAULT_DMA_ENTRY_LIMIT = _backend.DEFAULT_DMA_ENTRY_LIMIT
coverage_marks = _backend.coverage_marks
reset_coverage_marks = _backend.reset_coverage_marks

__all__ = ["BACKEND", "MUTANT", "load_backend", "MemoryRegionSection", "IommuMapping", *API]
