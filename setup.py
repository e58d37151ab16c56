"""Build the Cython core.  Always cythonized from .pyx; generated .c is never committed.

RIG_SANITIZE (unset by default) selects an instrumented build for native fuzzing
coverage: ``fuzzer`` (clang, -fsanitize=fuzzer-no-link), ``address`` or ``undefined``
(adds that sanitizer).  It needs clang.  ``rig fuzz`` builds it by itself (README.md,
Fuzzing); docs/semantics.md 7 says why it takes clang and an atheris preload.
"""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

MODULES = ("bitmap", "ram_block_attributes", "iommu", "vfio", "planted")

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
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": "3", "embedsignature": True},
        # A changed RIG_SANITIZE must rebuild; the build dir is keyed by it in ci/.
        force=bool(sanitize),
    ),
)
