"""The one atheris fuzz target: harness NAME of the registry (rig.drive.harnesses) run
under libFuzzer.

    python fuzz/<name>.py [libFuzzer flags] [corpus dirs]
    python -m rig.drive.target NAME [libFuzzer flags] [corpus dirs]

fuzz/<name>.py are generated wrappers that call ``main`` (``python ci/make_fuzz_seeds.py
--write-targets fuzz/`` writes them from the registry): ``rig fuzz`` runs them, and
ClusterFuzzLite bundles them with PyInstaller, which follows their top-level ``import
rig.drive.target`` and the imports below into the package.

This module imports nothing of the rig at its top: atheris instruments only the modules
first imported inside ``instrument_imports()``, and a rig module imported before it would
give libFuzzer no Python coverage.  hypothesis is imported before, so that its own code
is not instrumented.

What is traced is the code under test, what shapes the input and what says how near a
run came to a violation: the world (rig.world: host, KVM, the World, every design), the
decoders (rig.trace), the harnesses (rig.drive) and the oracle (rig.check.oracle: a
valid conversion failing with -ENOSPC, a mapping over a private page are edges there
before they are violations).  The run loop, the differential checker and the reference
model the shadow world runs on are not (``UNTRACED``): their edges say which steps ran,
and the model's repeat the native core's.  Tracing every rig module doubled the Python
cost of an input (the ``convert`` harness spent 2.7 s on 520 corpus inputs traced, 1.6 s
with all of rig.check untraced); leaving the oracle untraced too lost near-miss edges:
the bug benchmark's limit-warn-only mutant was then killed in 7 campaigns of 9, against
8 of 9 with the oracle traced and 9 of 9 with everything traced (docs/benchmarks.md,
Throughput).
"""

from __future__ import annotations

import os
import sys

#: How ``python -m`` names this module (argv[0] of the -m form re-executes it).
MODULE = "rig.drive.target"


def fuzz_argv(script: str, argv: list[str]) -> list[str]:
    """The argv atheris.Setup gets from ``argv`` (libFuzzer flags and corpus dirs after
    argv[0]).  argv[0] must re-execute this target: libFuzzer's -merge, -fork and
    -minimize_crash run it as a command.  ``script`` is the fuzz/<name>.py that calls
    ``main`` (``python -m rig.drive.target NAME`` builds its own, see ``_module_main``).
    A PyInstaller bundle (OSS-Fuzz's compile_python_fuzzer) re-executes itself, so it
    keeps its own argv."""
    if getattr(sys, "frozen", False):
        return list(argv)
    return [f"{sys.executable} {os.path.abspath(script)}"] + list(argv[1:])


#: The modules atheris leaves untraced (the module docstring says why).  Module names,
#: as ``instrument_imports`` takes them (it matches exact names, not packages).
UNTRACED = ("rig.check", "rig.check.differential", "rig.check.model", "rig.check.session")


def untraced_modules() -> list[str]:
    """UNTRACED, each checked to exist on disk without importing it (importing one here
    would leave the modules it imports untraced too): a module renamed away would
    silently be traced again."""
    import importlib.util
    from pathlib import Path

    root = Path(importlib.util.find_spec("rig").origin).parent  # imports rig/__init__ only
    for name in UNTRACED:
        path = root.joinpath(*name.split(".")[1:])
        if not (path / "__init__.py").is_file() and not path.with_suffix(".py").is_file():
            raise SystemExit(f"rig.drive.target: UNTRACED names {name}, which does not exist")
    return sorted(UNTRACED)


def setup(name: str):
    """Import the rig under instrumentation and return (harness, custom mutator or None)
    for NAME: a world harness targets RIG_FUZZ_DESIGN, else hardened."""
    import atheris
    import hypothesis  # noqa: F401  (imported before instrumentation: not instrumented)
    import hypothesis.stateful  # noqa: F401  (idem: rig.drive.stateful uses it on first use)

    with atheris.instrument_imports(include=["rig"], exclude=untraced_modules()):
        from rig.drive import harnesses
    instrument_external_designs(atheris)

    if name not in harnesses.HARNESSES or ":" in name:
        raise SystemExit(f"rig.drive.target: unknown harness {name!r} (one of "
                         f"{', '.join(harnesses.HARNESSES)})")
    design = None
    if harnesses.HARNESSES[name].kind == "world":
        design = os.environ.get("RIG_FUZZ_DESIGN") or None
    harness = harnesses.harness_for(name, design)
    return harness, getattr(harness, "mutate", None)


def instrument_external_designs(atheris) -> list[str]:
    """Instrument the code of the designs loaded from outside the package (RIG_DESIGNS,
    the entry points): a design file is imported by its path, past the import hook of
    ``instrument_imports``, and is the code under test, so libFuzzer must see its
    edges.  Returns the qualified names of the functions instrumented."""
    import types

    from rig.world.designs import DESIGNS, SOURCES

    modules = {klass.__module__ for name in SOURCES for klass in DESIGNS[name].__mro__
               if klass.__module__ != "rig" and not klass.__module__.startswith("rig.")
               and klass.__module__ != "builtins"}
    done: dict[int, str] = {}
    for module in sorted(m for m in modules if m in sys.modules):
        for obj in list(vars(sys.modules[module]).values()):
            members = vars(obj).values() if isinstance(obj, type) else (obj,)
            for member in members:
                func = getattr(member, "__func__", member)  # staticmethod, classmethod
                if (isinstance(func, types.FunctionType) and func.__module__ == module
                        and id(func) not in done):
                    atheris.instrument_func(func)
                    done[id(func)] = f"{module}.{func.__qualname__}"
    return sorted(done.values())


def run(name: str, argv: list[str]) -> None:
    """Fuzz harness NAME with ``argv`` as atheris.Setup takes it (argv[0] re-executes)."""
    import atheris

    harness, mutator = setup(name)

    def TestOneInput(data: bytes) -> None:
        harness.one_input(data)

    if mutator is not None:
        atheris.Setup(argv, TestOneInput, custom_mutator=mutator)
    else:
        atheris.Setup(argv, TestOneInput)
    atheris.Fuzz()


def main(name: str, argv: list[str], script: str) -> None:
    """The entry point of the generated fuzz/<name>.py: ``main(NAME, sys.argv, __file__)``."""
    run(name, fuzz_argv(script, argv))


def _module_main(argv: list[str]) -> None:
    """``python -m rig.drive.target NAME [libFuzzer args]``."""
    if len(argv) < 2 or argv[1].startswith("-"):
        raise SystemExit(f"usage: python -m {MODULE} NAME [libFuzzer flags] [corpus dirs]")
    name = argv[1]
    run(name, [f"{sys.executable} -m {MODULE} {name}"] + argv[2:])


if __name__ == "__main__":
    _module_main(sys.argv)
