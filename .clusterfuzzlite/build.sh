#!/bin/bash -eu
# Builds the fuzzers for ClusterFuzzLite / OSS-Fuzz, inside base-builder-python.
#
# `compile` runs this as `bash -eux $SRC/build.sh` from the Dockerfile's WORKDIR after
# exporting CC=clang, CFLAGS/CXXFLAGS (the sanitizer's flags plus -fsanitize=fuzzer-no-link,
# or the coverage flags in a coverage build) and SANITIZER, and after copying atheris'
# merged sanitizer+libFuzzer runtime to $OUT/sanitizer_with_fuzzer.so (address and
# undefined builds).  Canaries are never shipped: they crash on purpose.
set -euo pipefail

ROOT="$SRC/gmem-rig"
cd "$ROOT"
unset RIG_SANITIZE RIG_PUREPYTHON

# 1. The package and its Cython core.  setuptools compiles and links every extension with
#    $CC and $CFLAGS, so the core gets the sanitizer and libFuzzer's edge and comparison
#    instrumentation; RIG_SANITIZE stays unset (setup.py then adds only -O2).  build/ goes
#    first: setuptools keeps a stale .so from an earlier, uninstrumented build when only
#    the flags changed.  [test] brings the pinned hypothesis the harnesses import; not
#    [fuzz]: the image's own atheris, built against its libFuzzer, must stay.
rm -rf build
pip3 install ".[test]"

# 2. The installed core must be the compiled one, and import.  From $WORK, so that the
#    source tree (no built extension in a clean checkout) is not on sys.path; an
#    instrumented module imports only with the sanitizer runtime preloaded, as the fuzzer
#    wrappers that compile_python_fuzzer writes do.
preload=""
if [ -f "$OUT/sanitizer_with_fuzzer.so" ]; then
    preload="$OUT/sanitizer_with_fuzzer.so"
fi
(cd "$WORK" && LD_PRELOAD="$preload" ASAN_OPTIONS=detect_leaks=0 python3 -c \
    'import rig.core, rig.core.cy.iommu; assert rig.core.BACKEND == "cy", rig.core.BACKEND')

# 3. One fuzzer per shipped harness: the non-canary harnesses of rig.drive.harnesses.HARNESSES,
#    listed by the script that also writes their seed corpora.  compile_python_fuzzer
#    bundles fuzz/<name>.py (a generated wrapper whose top-level `import rig.drive.target`
#    leads PyInstaller into the rig) into $OUT/<name>.pkg and writes the $OUT/<name>
#    wrapper.  It runs from $WORK so that PyInstaller finds `rig` in site-packages
#    (compiled) rather than in the source tree.  rig.core imports its backends by name
#    and rig.world.designs imports every module of its package (importlib), which
#    PyInstaller cannot see: they are named here.
hidden=()
for src in rig/core/cy/*.pyx rig/core/pure/*.py rig/world/designs/*.py; do
    mod="${src%.*}"
    mod="${mod//\//.}"
    case "$mod" in *.__init__) continue ;; esac
    hidden+=(--hidden-import "$mod")
done

fuzzers="$(RIG_PUREPYTHON=1 python3 ci/make_fuzz_seeds.py --list)"
if [ -z "$fuzzers" ]; then
    echo "build.sh: no harness to ship" >&2
    exit 1
fi
for name in $fuzzers; do
    (cd "$WORK" && compile_python_fuzzer "$ROOT/fuzz/$name.py" "${hidden[@]}")
    if [ -f "fuzz/$name.dict" ]; then
        cp "fuzz/$name.dict" "$OUT/$name.dict"
    fi
done

# 4. Seed corpora beside the fuzzers: $OUT/<name>_seed_corpus.zip.
RIG_PUREPYTHON=1 python3 ci/make_fuzz_seeds.py "$OUT"
