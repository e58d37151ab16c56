#!/usr/bin/env python3
"""Seed corpora for OSS-Fuzz / ClusterFuzzLite: one ``<harness>_seed_corpus.zip`` per
shipped harness.

    python ci/make_fuzz_seeds.py OUTDIR     write OUTDIR/<harness>_seed_corpus.zip
    python ci/make_fuzz_seeds.py --list     print the shipped harnesses, one a line

The shipped harnesses are those of ``rig.drive.harnesses.HARNESSES`` that are not canaries
(``expect_crash``: they fail on purpose and must never reach ClusterFuzz).
.clusterfuzzlite/build.sh uses ``--list`` to pick the scripts it compiles, so the
fuzzers and their seed corpora come from one list.  A harness' fuzzer is
``fuzz/<harness>.py``; the registry keeps the name and the script equal.

A zip holds ``HARNESSES[name].seeds()`` plus every file of ``corpora/<harness>/`` when
that folder exists (dot files skipped), each entry named by the SHA-1 of its bytes as
libFuzzer names corpus files (so duplicates collapse), in sorted order, stored without
compression and with a fixed timestamp and mode: two runs give identical bytes.

The repository this script sits in comes first on sys.path, so its rig (and
corpora/regressions/, which the trace_text seeds read next to the package) is used even
when an installed copy exists; without the repository, the installed package is used.
RIG_PUREPYTHON defaults to 1 here: seeds do not depend on the core backend, and an
instrumented (sanitizer) build of the core cannot be imported without the sanitizer
runtime preloaded.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if (REPO / "rig" / "__init__.py").is_file():
    sys.path.insert(0, str(REPO))
os.environ.setdefault("RIG_PUREPYTHON", "1")

#: Every zip entry gets this timestamp (zip's epoch) and mode, whatever the clock says.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
ZIP_MODE = 0o100644 << 16


def shipped() -> list[str]:
    """The non-canary harnesses, sorted: the fuzzers OSS-Fuzz / ClusterFuzzLite gets."""
    from rig.drive.harnesses import HARNESSES

    names = []
    for name in sorted(HARNESSES):
        harness = HARNESSES[name]
        if harness.expect_crash:
            continue
        if harness.script != name:
            raise SystemExit(f"make_fuzz_seeds: harness {name!r} runs fuzz/{harness.script}.py;"
                             " the fuzzer name must be the harness name")
        names.append(name)
    return names


def inputs(name: str, corpora: Path) -> dict[str, bytes]:
    """The seed inputs of one harness, by content hash."""
    from rig.drive.harnesses import HARNESSES

    found = {}
    for data in HARNESSES[name].seeds():
        found[hashlib.sha1(data).hexdigest()] = bytes(data)
    folder = corpora / name
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.name.startswith(".") or not path.is_file():
                continue
            data = path.read_bytes()
            found[hashlib.sha1(data).hexdigest()] = data
    return found


def write_zip(path: Path, entries: dict[str, bytes]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for entry in sorted(entries):
            info = zipfile.ZipInfo(entry, date_time=ZIP_DATE)
            info.external_attr = ZIP_MODE
            info.create_system = 3  # unix, whatever the host
            zf.writestr(info, entries[entry])
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir", nargs="?", help="where to write <harness>_seed_corpus.zip")
    ap.add_argument("--list", action="store_true",
                    help="print the shipped (non-canary) harness names and exit")
    ap.add_argument("--corpora", default=str(REPO / "corpora"),
                    help="corpora root with one folder per harness (default: the repo's)")
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(shipped()))
        return 0
    if not args.outdir:
        ap.error("OUTDIR is required (or --list)")
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    corpora = Path(args.corpora)
    for name in shipped():
        entries = inputs(name, corpora)
        if not entries:
            raise SystemExit(f"make_fuzz_seeds: harness {name!r} has no seeds")
        target = out / f"{name}_seed_corpus.zip"
        write_zip(target, entries)
        size = sum(len(v) for v in entries.values())
        print(f"{target}: {len(entries)} inputs, {size} bytes", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
