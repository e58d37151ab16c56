"""The designs under test: one conversion policy per file, found here, not listed.

Every module of this package is imported (in sorted order, so the result does not depend
on the file system); a class defined in one of them that subclasses ``Design`` and sets
its own ``name`` is a design, and must set its own ``id`` too.  ``DESIGNS`` holds them by
name, in id order: the order reports and ``rig designs`` list them in.  Ids are explicit
and append-only (the byte decoder picks a design by id, rig.trace.decode): a new design
takes the next free one, and no id is ever reused or changed.

A design written outside the package (the conversion path one plans to send to QEMU) is
loaded by its spec, ``path/to/file.py:Class`` or ``pkg.module:Class`` (``load_design``;
``rig fuzz --design SPEC``, ``--load SPEC`` on the commands that replay traces), and an
installed package adds designs by name through the entry-point group
``gmem_rig.designs`` (``name = "pkg.module:Class"``, the entry point named as the
design).  An external design needs no id: the world harnesses fix the design, so the
byte decoder never picks one (its table, ``BUILT_IN``, holds the package's designs
only); and it cannot take a built-in design's name.  Child processes (the campaign's
harnesses, the minimizer's fresh replays) get what was loaded through ``RIG_DESIGNS``
(specs separated by ``;``), which ``load_design`` keeps current and which is read, after
the entry points, when ``DESIGNS`` is built.  docs/your-design.md walks through it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import pkgutil
import re
import shlex
import sys

from rig.errors import UsageError
from rig.world.designs.base import Design

#: The entry-point group through which an installed package adds designs.
ENTRY_POINTS = "gmem_rig.designs"
#: The environment variable that carries the loaded specs to child processes.
ENV = "RIG_DESIGNS"
#: What a design name may be: it is written in trace headers (``design=NAME``) and in
#: harness names (``convert:NAME``).
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*\Z")


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


#: The package's own designs, name -> class, in id order: the byte decoder's table.
BUILT_IN: dict[str, type[Design]] = by_id(designs_in(__name__, __path__))

#: name -> class: the built-in designs in id order (the order reports list them in),
#: then the external ones in the order they were loaded.
DESIGNS: dict[str, type[Design]] = dict(BUILT_IN)

#: name -> where an external design comes from: the spec it was loaded from, as given
#: (what ``--load`` takes again), or ``entry point NAME = module:Class``.
SOURCES: dict[str, str] = {}

#: canonical spec -> design name: loading the same spec again is a no-op.
_LOADED: dict[str, str] = {}


class DesignError(UsageError):
    """A design spec that cannot be loaded: one line, exit 1."""


def make_design(name: str) -> Design:
    cls = design_class(name)
    if cls is None:
        raise ValueError(f"unknown design {name!r} (one of {', '.join(DESIGNS)})")
    return cls()


def design_class(name: str) -> type[Design] | None:
    """The class of design ``name``: a built-in or loaded design (``DESIGNS``), or a
    mutant of the bug benchmark by its name (rig.world.mutants), else None.

    Mutants are resolved by name in every process, so they are never added to
    ``DESIGNS`` nor to RIG_DESIGNS: the lists of "the designs" (``rig designs``, the
    sweeps, the report, the dictionaries) stay the designs, whatever a process has run."""
    cls = DESIGNS.get(name)
    if cls is not None:
        return cls
    from rig.world import mutants

    return mutants.mutants().get(name)


def ensure(name: str) -> bool:
    """True when ``name`` names a design (``design_class``): every name a trace header,
    ``--design`` or a harness name may hold."""
    return design_class(name) is not None


def is_spec(text: str) -> bool:
    """``path/to/file.py:Class`` or ``pkg.module:Class``, as opposed to a design name
    (a name has no colon)."""
    return ":" in text


def canonical(spec: str) -> str:
    """The spec as another process can load it from anywhere: a file path made
    absolute.  Raises DesignError for a spec that is not ``WHERE:CLASS``."""
    where, colon, cls = spec.rpartition(":")
    if not colon or not where or not cls:
        raise DesignError(f"design spec {spec!r}: expected path/to/file.py:Class or "
                          "pkg.module:Class")
    if _is_file(where):
        where = os.path.abspath(where)
    return f"{where}:{cls}"


def _is_file(where: str) -> bool:
    return where.endswith(".py") or os.sep in where or "/" in where


def _module(spec: str, where: str):
    if _is_file(where):
        if not os.path.isfile(where):
            raise DesignError(f"design spec {spec!r}: no such file {where}")
        name = "rig_design_" + hashlib.sha256(where.encode()).hexdigest()[:12]
        if name in sys.modules:
            return sys.modules[name]
        loader = importlib.util.spec_from_file_location(name, where)
        module = importlib.util.module_from_spec(loader)
        sys.modules[name] = module  # (dataclasses and pickling look classes up here)
        try:
            loader.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[name]
            raise DesignError(f"design spec {spec!r}: {where} failed to import: "
                              f"{type(exc).__name__}: {exc}") from None
        return module
    try:
        return importlib.import_module(where)
    except ImportError as exc:
        raise DesignError(f"design spec {spec!r}: module {where!r} is not importable "
                          f"({exc}); is it on PYTHONPATH?  A file is path/to/file.py:Class") from None
    except Exception as exc:
        raise DesignError(f"design spec {spec!r}: module {where!r} failed to import: "
                          f"{type(exc).__name__}: {exc}") from None


def _class(spec: str) -> type[Design]:
    where, _, qualname = canonical(spec).rpartition(":")
    obj = _module(spec, where)
    for part in qualname.split("."):
        if not hasattr(obj, part):
            raise DesignError(f"design spec {spec!r}: {where} has no class {qualname!r}")
        obj = getattr(obj, part)
    if not isinstance(obj, type):
        raise DesignError(f"design spec {spec!r}: {qualname!r} is not a class (it is "
                          f"of type {type(obj).__name__})")
    if not issubclass(obj, Design) or obj is Design:
        raise DesignError(f"design spec {spec!r}: {qualname} is not a subclass of "
                          "rig.world.designs.base.Design (start from Qemu101Conversion "
                          "or a design such as Hardened)")
    if "name" not in vars(obj):
        raise DesignError(f"design spec {spec!r}: {qualname} must set its own name "
                          f"(it inherits {obj.name!r})")
    if not isinstance(obj.name, str) or not NAME.match(obj.name):
        raise DesignError(f"design spec {spec!r}: name {obj.name!r} is not a design name "
                          "(letters, digits and . _ + -, no spaces or colons)")
    return obj


def load_option(name: str) -> str:
    """What a command line needs to have design ``name``: ``--load SPEC`` for a design
    loaded by spec, else nothing (a built-in design, or an entry point's, is always
    there).  Campaigns print it in the replay commands of their findings."""
    source = SOURCES.get(name, "")
    if not source or source.startswith("entry point "):
        return ""
    return f"--load {shlex.quote(source)}"


def _register(cls: type[Design], source: str, key: str) -> str:
    name = cls.name
    if name in BUILT_IN:
        raise DesignError(f"design spec {source!r}: name {name!r} is a built-in design's: "
                          "an external design takes a name of its own")
    if name in DESIGNS and DESIGNS[name] is not cls:
        raise DesignError(f"design spec {source!r}: name {name!r} is taken by "
                          f"{SOURCES[name]!r}")
    DESIGNS[name] = cls
    SOURCES[name] = source
    _LOADED[key] = name
    return name


def load_design(spec: str) -> str:
    """Load the design class of ``spec`` (``path/to/file.py:Class`` or
    ``pkg.module:Class``), register it and return its name.  Loading a spec again
    returns the same name.  The spec is added to RIG_DESIGNS, so that child processes
    started from here on have the design too.  DesignError (one line) for a spec that
    names no file, a module that does not import, no such class, a class that is not a
    Design, or a name that is a built-in design's or another external one's."""
    key = canonical(spec)
    if key not in _LOADED:
        _register(_class(spec), spec, key)
    specs = [s for s in os.environ.get(ENV, "").split(";") if s.strip()]
    if key not in specs:
        os.environ[ENV] = ";".join(specs + [key])
    return _LOADED[key]


def resolve(text: str) -> str:
    """A design name for ``--design`` and the like: a known name as it is, a spec loaded
    (``load_design``).  DesignError names the choices."""
    if ensure(text):
        return text
    if is_spec(text):
        return load_design(text)
    raise DesignError(f"unknown design {text!r}: one of {', '.join(DESIGNS)}, a mutant "
                      "(`rig list mutants`), or a design of your own as "
                      "path/to/file.py:Class or pkg.module:Class")


def _load_entry_points() -> None:
    for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINTS),
                     key=lambda ep: ep.name):
        source = ep.value
        try:
            cls = ep.load()
        except Exception as exc:
            raise DesignError(f"entry point {ep.name} = {source!r} ({ENTRY_POINTS}) "
                              f"failed to load: {type(exc).__name__}: {exc}") from None
        if not isinstance(cls, type) or not issubclass(cls, Design) or "name" not in vars(cls):
            raise DesignError(f"entry point {ep.name} = {source!r} ({ENTRY_POINTS}) is not "
                              "a Design subclass that sets its own name")
        if cls.name != ep.name:
            raise DesignError(f"entry point {ep.name} = {source!r} ({ENTRY_POINTS}) names "
                              f"design {cls.name!r}: the entry point takes the design's name")
        if DESIGNS.get(cls.name) is not cls:
            _register(cls, f"entry point {ep.name} = {source}", canonical(source))


def _load_environment() -> None:
    for spec in os.environ.get(ENV, "").split(";"):
        if spec.strip():
            load_design(spec.strip())


_load_entry_points()
_load_environment()
