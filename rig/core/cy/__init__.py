"""Cython core: bitmap, RamBlockAttributes, VFIO listener and the fake IOMMU.

Each module is a ``.pxd`` header (structs and cdef signatures) plus a ``.pyx``
implementation, written so that it reads like the QEMU/Linux C it mirrors.

RIG_NATIVE_DIR points at another build of these modules (rig/drive/native.py: the
instrumented ones, or a core-mutant variant): it is searched first, so a fuzz harness
imports the clang/-fsanitize=fuzzer-no-link modules while everything else keeps the
package's build.  A variant build of a core mutant (rig.core.mutants) leaves a
``.mutant`` file naming it beside its modules; this package refuses to import unless
that name is exactly RIG_CORE_MUTANT (both unset: the real core), so that the Cython
core never runs unmutated while the twin, which reads RIG_CORE_MUTANT, runs mutated, nor
the other way round.
"""

import os as _os

from rig.core import mutants as _mutants


def _variant(folder: str) -> str | None:
    """The core mutant the build in ``folder`` was made for (its .mutant file)."""
    try:
        with open(_os.path.join(folder, _mutants.MARKER), encoding="utf-8") as f:
            return f.read().strip() or None
    except FileNotFoundError:
        return None


def _check_build(native_dir: str) -> None:
    built = _variant(native_dir) if native_dir else None
    wanted = _mutants.ACTIVE
    if built == wanted:
        return
    if wanted is None:
        raise _mutants.CoreMutantError(
            f"RIG_NATIVE_DIR={native_dir} is a variant build of core mutant {built!r} but "
            f"{_mutants.ENV} is unset: set {_mutants.ENV}={built} too, or unset "
            "RIG_NATIVE_DIR for the real core")
    where = f"RIG_NATIVE_DIR={native_dir} holds {'a build of ' + repr(built) if built else 'no variant build'}" \
        if native_dir else "RIG_NATIVE_DIR is unset"
    raise _mutants.CoreMutantError(
        f"{_mutants.ENV}={wanted}: {where}; run the command through `rig` (it builds the "
        f"variant and re-executes), point RIG_NATIVE_DIR at "
        f"rig.drive.native.ensure_build('plain', {wanted!r}), or set RIG_PUREPYTHON=1")


_native = _os.environ.get("RIG_NATIVE_DIR", "")
_check_build(_native)
if _native:
    __path__.insert(0, _native)  # noqa: F821 (package __path__)
