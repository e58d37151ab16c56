"""Build the Cython core.  Always cythonized from .pyx; generated .c is never committed.

The wheel also carries what a campaign needs outside the code: the ``.pyx``/``.pxd``
sources (package data of rig.core.cy: the instrumented build, rig/drive/native.py,
compiles them again with clang) and the shipped corpora, copied by the build step below
from the checkout's top-level corpora/ into ``rig/_corpora/`` (rig.trace.corpus reads the
checkout's folder when there is one, else that copy).

RIG_SANITIZE (unset by default) selects an instrumented build of the package itself:
``fuzzer`` (clang, -fsanitize=fuzzer-no-link), ``address`` or ``undefined`` (adds that
sanitizer).  It needs clang.  ``rig fuzz`` does not use it: it builds its own
instrumented copy into a cache (rig/drive/native.py; docs/semantics.md 7 says why it
takes clang and an atheris preload).
"""

import os
import shutil
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
MODULES = sorted(path.stem for path in (HERE / "rig" / "core" / "cy").glob("*.pyx"))
#: The corpora folders the package ships (corpora/README.md): the sweeps' scenarios, the
#: designs table's cases, the regression corpus, the minimizer's unminimized findings,
#: the core traces and the mutants' kill traces (``rig bench bugs``, ``rig list
#: mutants``).  Not crashes/ nor the per-harness fuzzing corpora.
SHIPPED_CORPORA = ("scenarios", "designs", "regressions", "unminimized", "core", "mutants")

sanitize = os.environ.get("RIG_SANITIZE", "").strip()
compile_args = ["-O2"]
link_args = []
if sanitize:
    if sanitize not in ("fuzzer", "address", "undefined"):
        raise SystemExit(f"RIG_SANITIZE={sanitize!r}: expected fuzzer, address or undefined")
    os.environ.setdefault("CC", "clang")
    os.environ.setdefault("LDSHARED", "clang -shared")
    flags = "fuzzer-no-link" + ("" if sanitize == "fuzzer" else "," + sanitize)
    compile_args += [f"-fsanitize={flags}", "-g"]
    link_args += [f"-fsanitize={flags}"]


class build_py_with_corpora(build_py):
    """build_py, then the shipped corpora into <build>/rig/_corpora/ (an editable install
    reads the checkout's corpora/ and gets no copy)."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        source = HERE / "corpora"
        target = Path(self.build_lib) / "rig" / "_corpora"
        shutil.rmtree(target, ignore_errors=True)
        for name in SHIPPED_CORPORA:
            folder = source / name
            if not folder.is_dir():
                raise SystemExit(f"{folder}: missing; the package ships it (setup.py)")
            files = sorted(folder.glob("*.trace"))
            if not files:
                raise SystemExit(f"{folder}: no .trace files; the package ships them")
            (target / name).mkdir(parents=True)
            for path in files:
                shutil.copyfile(path, target / name / path.name)
        shutil.copyfile(source / "README.md", target / "README.md")


extensions = [
    Extension(
        f"rig.core.cy.{name}",
        [f"rig/core/cy/{name}.pyx"],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
    for name in MODULES
]

setup(
    cmdclass={"build_py": build_py_with_corpora},
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": "3", "embedsignature": True},
        # A changed RIG_SANITIZE must rebuild; the build dir is keyed by it in ci/.
        force=bool(sanitize),
    ),
)
