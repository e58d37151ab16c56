"""The designs under test: one conversion policy per file, found here, not listed.

Every module of this package is imported (in sorted order, so the result does not depend
on the file system); a class defined in one of them that subclasses ``Design`` and sets
its own ``name`` is a design, and must set its own ``id`` too.  ``DESIGNS`` holds them by
name, in id order: the order reports and ``rig designs`` list them in.  Ids are explicit
and append-only (the byte decoder picks a design by id, rig.trace.decode): a new design
takes the next free one, and no id is ever reused or changed.
"""

from __future__ import annotations

import importlib
import pkgutil

from rig.world.designs.base import Design


def designs_in(package: str, path) -> list[type[Design]]:
    """The design classes of every module of ``package`` (its ``__path__``), by module
    name: classes defined there that subclass Design and set their own ``name``."""
    found: list[type[Design]] = []
    for info in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        module = importlib.import_module(f"{package}.{info.name}")
        for cls in vars(module).values():
            if (isinstance(cls, type) and issubclass(cls, Design) and cls is not Design
                    and cls.__module__ == module.__name__ and "name" in vars(cls)):
                found.append(cls)
    return found


def by_id(classes) -> dict[str, type[Design]]:
    """name -> class in id order; refuses a class without its own id, and a name or an
    id that two classes share."""
    def where(cls) -> str:
        return f"{cls.__module__}.{cls.__qualname__}"

    def valid(ident) -> bool:
        return isinstance(ident, int) and not isinstance(ident, bool) and ident >= 0

    ids = [vars(cls).get("id") for cls in classes]
    free = max((i for i in ids if valid(i)), default=-1) + 1
    names: dict[str, type[Design]] = {}
    taken: dict[int, type[Design]] = {}
    for cls, ident in zip(classes, ids):
        if not valid(ident):
            raise ValueError(f"design {cls.name!r} ({where(cls)}) must set its own id, an "
                             f"int >= 0: ids are append-only, the next free one is {free}")
        if cls.name in names:
            raise ValueError(f"design name {cls.name!r} is taken twice: "
                             f"{where(names[cls.name])} and {where(cls)}")
        if ident in taken:
            raise ValueError(f"design {cls.name!r} ({where(cls)}): id {ident} is already "
                             f"{taken[ident].name!r}'s (ids are append-only; the next free "
                             f"one is {free})")
        names[cls.name] = taken[ident] = cls
    return {cls.name: cls for _, cls in sorted(taken.items())}


#: name -> class, in id order (the order reports list them in).
DESIGNS: dict[str, type[Design]] = by_id(designs_in(__name__, __path__))


def make_design(name: str) -> Design:
    try:
        return DESIGNS[name]()
    except KeyError:
        raise ValueError(f"unknown design {name!r} (one of {', '.join(DESIGNS)})") from None
