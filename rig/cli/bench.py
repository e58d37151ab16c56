"""``rig bench``: benchmarks of the rig (a script that prints numbers, not a timed test).

``rig bench core`` measures the core in three sections, all in one process and one run:

1. op stream: the same seeded stream of ``--ops`` differential ops
   (:func:`rig.check.differential.random_ops`) applied separately to the Cython core, its
   pure-Python twin and the reference model, each on a fresh ``differential._System``;
   ops/s of each and the ratios cy/pure and cy/model.
2. bitmap: ``bitmap_set``/``find_next_zero_bit``/``bitmap_clear``/``find_next_bit`` over
   the whole of a ``--bits``-bit Cython bitmap, each against a ``memset`` of the same byte
   count on a bytearray in the same run; the pure twin's ``bitmap_set`` and
   ``find_next_zero_bit`` on 2^22 bits, extrapolated per bit to ``--bits``.
3. type1 at scale: ``--mappings`` single-page (4 KiB) mappings in a VFIO type1 container,
   (a) through the Python ``map_dma``/``unmap_dma`` API in a Python loop, (b) through the
   C path (RamBlockAttributes.state_change -> VFIORamDiscardListener -> dma_map/dma_unmap,
   no Python per granule); maps/s, unmaps/s and bytes per mapping from the process RSS.

``rig bench world`` measures the world harnesses' inner loop, the speed that bounds every
campaign: ``--inputs`` fixed pseudo-random inputs (from ``--seed``) decoded by the
``convert`` harness for each design, each run as the harness runs it (Session.step until
the run stops), best of ``--repeats``; inputs/s and ops/s with the reference-model shadow
world on (as fuzzed) and off; then, for hardened, the ``statemachine`` harness on the same
inputs (hypothesis' fuzz_one_input: exec/s and the ops its machines applied per second)
and the share of the time each part of the oracle takes (one extra, instrumented pass).

``rig bench campaign`` measures what a campaign gets of that loop (rig.drive.benchcampaign
runs it; this module parses and prints): the default ``rig fuzz`` campaign's harnesses
(world ones on hardened) as the campaign's libFuzzer workers, in its instrumented build,
for a fixed ``--runs`` per worker from each harness' own seeds, at ``--jobs 1`` and every
core; per harness and jobs setting the runs, start-up, seconds of fuzzing (INITED to
exit), exec/s, cores used (the workers' CPU time / wall time) and exec/s over jobs=1's.

``rig bench bugs`` measures how fast each engine kills each mutant (rig.drive.bugbench
runs the cells; this module parses, prints the table and draws the plot): one results
line per (mutant, engine, seed) cell in a JSON-lines file, appended as each cell ends
and skipped on a restart; the table gives per mutant and engine the seeds that killed
it and the medians of time, execs and trace ops, with a totals row per engine (the
mutants it kills, its time relative to the swarm baseline); the plot, per engine, the
fraction of mutants found against time (log x), as FuzzBench reports draw it.

Timing is wall-clock (``time.perf_counter``), with the garbage collector collected before
and disabled during each timed region.  Nothing here is deterministic in time; the op
streams and sizes are, from ``--seed`` and the flags, and are printed first.
See docs/benchmarks.md for what each number means and reference figures.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import random
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from rig.errors import EXIT_FINDING, EXIT_OK

PAGE = 0x1000
VADDR_BASE = 0x7F0000000000
IOVA_BASE = 0x100000000  # as rig.check.differential: guest RAM above 4 GiB
PURE_BITMAP_BITS = 1 << 22
OPSTREAM_REPEATS = 5  # best of, each on a fresh system
BITMAP_REPEATS = 5  # best of, warm (the first bitmap_set is also reported cold)


#: What exit 2 means for ``rig bench core``.
_FINDING = "the core did not do the work asked of it (the figures would be lies)"


class BenchFailure(Exception):
    """The core did not do the work the benchmark asked for: the figures would be lies."""


# -- command line -------------------------------------------------------------------------

def _positive(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, not {value}")
    return value


def _seed(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def add_parser(sub) -> None:
    """Add ``bench`` (with its suites as sub-subcommands) to rig's subparsers ``sub``."""
    from rig.cli.helptext import design_names, epilog, one_of

    p = sub.add_parser("bench", help="benchmarks (wall-clock figures, not tests)",
                       description="Benchmarks of the rig.  Suites: core, world, campaign, bugs.",
                       epilog=epilog([("rig bench core", "the core's figures"),
                                      ("rig bench world --json", "the world harnesses' "
                                       "figures, as one JSON object")],
                                     ok="measured", finding=_FINDING))
    suites = p.add_subparsers(dest="suite", metavar="SUITE", parser_class=type(p))

    def _no_suite(args) -> int:
        p.print_help(sys.stderr)
        return 1

    p.set_defaults(func=_no_suite)

    c = suites.add_parser(
        "core", help="Cython core vs pure twin vs model; bitmap vs memset; type1 at scale",
        description=("Cython core vs pure-Python twin vs model on one op stream; bitmap "
                     "scans vs memset; VFIO type1 with --mappings 4 KiB mappings.  "
                     "Wall-clock figures; see docs/benchmarks.md."),
        epilog=epilog([("rig bench core", "every section at its default size"),
                       ("rig bench core --ops 20000 --mappings 65536 --bits 16777216",
                        "a quick run at a smaller scale")], ok="measured", finding=_FINDING))
    c.add_argument("--ops", type=_positive, default=100_000,
                   help="ops in the op stream (default 100000)")
    c.add_argument("--seed", type=_seed, default=0, help="seed of the op stream (default 0)")
    c.add_argument("--mappings", type=_positive, default=1 << 22,
                   help="4 KiB type1 mappings (default 4194304 = 16 GiB)")
    c.add_argument("--bits", type=_positive, default=1 << 28,
                   help="bitmap size in bits (default 268435456 = 2^28)")
    c.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    c.set_defaults(func=cmd_core)

    w = suites.add_parser(
        "world", help="world harness throughput per design; the oracle's share",
        description=("The convert harness' inner loop on fixed inputs, per design, with the "
                     "model shadow on and off; the statemachine harness on the same "
                     "inputs; then each oracle check's share of the time.  "
                     "Wall-clock figures; see docs/benchmarks.md."),
        epilog=epilog([("rig bench world", "every design, 400 inputs, best of 3"),
                       ("rig bench world --design hardened --inputs 100 --json",
                        "one design, fewer inputs, as JSON")], ok="measured"))
    w.add_argument("--inputs", type=_positive, default=400,
                   help="inputs per design (default 400)")
    w.add_argument("--seed", type=_seed, default=0, help="seed of the inputs (default 0)")
    w.add_argument("--repeats", type=_positive, default=3, help="best of (default 3)")
    w.add_argument("--design", action="append", dest="designs", metavar="DESIGN",
                   help="a design to measure (repeatable; default every design): "
                   f"{one_of(design_names())}")
    w.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    w.set_defaults(func=cmd_world)
    _add_campaign(suites)
    _add_bugs(suites)


# -- measurement helpers ------------------------------------------------------------------

@contextmanager
def _quiet_gc():
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _timed(fn, *args):
    """(seconds, result) of one call of fn(*args), gc disabled."""
    with _quiet_gc():
        t0 = time.perf_counter()
        result = fn(*args)
        dt = time.perf_counter() - t0
    return dt, result


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss() -> int | None:
    """Resident set size in bytes (/proc/self/statm), None where there is no /proc."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE_SIZE
    except OSError:
        return None


def _malloc_trim() -> bool:
    """Give freed heap back to the OS (glibc), so an RSS baseline is not partly free
    memory about to be reused.  False where there is no malloc_trim."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim(0)
    return True


def _machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/loadavg") as f:
            load = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        load = None
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "implementation": platform.python_implementation(), "loadavg_1min": load}


def _machine_line(machine: dict) -> str:
    return (f"machine: nproc={machine['nproc']} cpu={machine['cpu']!r} "
            f"{machine['implementation']} {machine['python']} "
            f"loadavg(1min)={machine['loadavg_1min']} at start")


def _text_printer(as_json: bool):
    """print for the text report; silent when the report is one JSON object."""
    def out(line: str) -> None:
        if not as_json:
            print(line, flush=True)
    return out


def _build() -> dict:
    """Which core is being measured: the git commit, whether rig/core differs from it,
    and any Cython module whose .pyx/.pxd is newer than its built extension (a stale
    build measures old code)."""
    import importlib
    import subprocess

    from rig.core import _MODULES

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    info: dict = {"commit": None, "core_dirty": None, "stale_extensions": []}
    try:
        info["commit"] = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True,
            text=True, timeout=10, check=True).stdout.strip() or None
        info["core_dirty"] = bool(subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--", "rig/core"],
            capture_output=True, text=True, timeout=10, check=True).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    for name in _MODULES:
        so = importlib.import_module(f"rig.core.cy.{name}").__file__
        built = os.path.getmtime(so)
        for ext in ("pyx", "pxd"):
            src = os.path.join(os.path.dirname(so), f"{name}.{ext}")
            if os.path.exists(src) and os.path.getmtime(src) > built:
                info["stale_extensions"].append(f"{name}.{ext}")
    return info


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


# -- 1. op stream -------------------------------------------------------------------------

def bench_opstream(nops: int, seed: int, out) -> dict:
    from rig.check import differential

    cfg = differential.CoreConfig()
    t0 = time.perf_counter()
    ops = differential.random_ops(random.Random(seed), cfg, nops)
    gen = time.perf_counter() - t0
    out(f"[1] op stream: {nops} ops, seed {seed}, CoreConfig({cfg}); "
        f"stream generated in {gen:.3f} s (not timed below)")
    call = differential._call
    res: dict = {"config": str(cfg), "ops": nops, "generate_s": gen, "impls": {}}
    results = {}
    for impl in ("cy", "pure", "model"):
        best = None
        for _ in range(OPSTREAM_REPEATS):
            system = differential._System(impl, cfg)
            dt, got = _timed(lambda s=system: [call(s, op) for op in ops])
            if best is None or dt < best:
                best = dt
            results[impl] = got
        res["impls"][impl] = {"seconds": best, "ops_per_s": _rate(nops, best)}
        out(f"    {impl:<5} {best:8.3f} s  {_rate(nops, best):>12,.0f} ops/s"
            f"  (best of {OPSTREAM_REPEATS}, fresh system each)")
    # The floor every implementation pays: differential._call's dispatch with an apply()
    # that does nothing.  The cy figure is bounded by it (and by the Python recorder
    # listeners of the system), so cy/pure understates the core's own speedup.
    class _Null:
        def apply(self, op):
            return None

    null = _Null()
    floor = min(_timed(lambda: [call(null, op) for op in ops])[0] for _ in range(OPSTREAM_REPEATS))
    res["harness_floor"] = {"seconds": floor, "ops_per_s": _rate(nops, floor)}
    out(f"    floor {floor:8.3f} s  {_rate(nops, floor):>12,.0f} ops/s"
        f"  (differential._call with a no-op apply: the harness alone)")
    cy = res["impls"]["cy"]["ops_per_s"]
    res["ratio_cy_pure"] = cy / res["impls"]["pure"]["ops_per_s"]
    res["ratio_cy_model"] = cy / res["impls"]["model"]["ops_per_s"]
    out(f"    cy/pure  {res['ratio_cy_pure']:.2f}x   cy/model {res['ratio_cy_model']:.2f}x")
    # Same work or the ratios mean nothing: the per-op results must agree (outside timing;
    # `rig selftest` is the real check, which also compares state after every op).
    reprs = {impl: [repr(r) for r in got] for impl, got in results.items()}
    for i in range(nops):
        if len({reprs[impl][i] for impl in reprs}) > 1:
            raise BenchFailure(
                f"op stream: op {i} {ops[i]!r} gives different results: "
                + ", ".join(f"{impl}={results[impl][i]!r}" for impl in results)
                + " (run `rig selftest`)")
    res["results_agree"] = True
    return res


# -- 2. bitmap ----------------------------------------------------------------------------

def bench_bitmap(nbits: int, out) -> dict:
    from rig.core import load_backend

    cy = load_backend("cy")
    pure = load_backend("pure")
    nbytes = (nbits + 7) // 8
    out(f"[2] bitmap: {nbits} bits = {nbytes / 2**20:.1f} MiB; "
        f"best of {BITMAP_REPEATS}; ratio = time / time of a memset of the same bytes")

    buf = bytearray(nbytes)  # allocated (and touched, zero-filled) outside the timing
    cbuf = (ctypes.c_char * nbytes).from_buffer(buf)
    addr = ctypes.addressof(cbuf)

    bm = cy.Bitmap(nbits)  # calloc: pages untouched until the first set
    cold, _ = _timed(bm.bitmap_set, 0, nbits)
    bm.bitmap_clear(0, nbits)

    times = {k: [] for k in ("memset_ff", "memset_00", "bitmap_set", "find_next_zero_bit",
                             "bitmap_clear", "find_next_bit")}
    for _ in range(BITMAP_REPEATS):
        dt, _r = _timed(ctypes.memset, addr, 0xFF, nbytes)
        times["memset_ff"].append(dt)
        dt, _r = _timed(bm.bitmap_set, 0, nbits)
        times["bitmap_set"].append(dt)
        dt, found = _timed(bm.find_next_zero_bit, nbits, 0)
        times["find_next_zero_bit"].append(dt)
        if found != nbits:
            raise BenchFailure(f"bitmap: find_next_zero_bit on a full map gave {found}, "
                               f"not {nbits}")
        dt, _r = _timed(ctypes.memset, addr, 0, nbytes)
        times["memset_00"].append(dt)
        dt, _r = _timed(bm.bitmap_clear, 0, nbits)
        times["bitmap_clear"].append(dt)
        dt, found = _timed(bm.find_next_bit, nbits, 0)
        times["find_next_bit"].append(dt)
        if found != nbits:
            raise BenchFailure(f"bitmap: find_next_bit on an empty map gave {found}, "
                               f"not {nbits}")
    del cbuf
    best = {k: min(v) for k, v in times.items()}
    # Each op against the memset of the same value (set and the scan of the full map vs
    # 0xFF, clear and the scan of the empty map vs 0): memset(0) can be much faster.
    base = {"bitmap_set": "memset_ff", "find_next_zero_bit": "memset_ff",
            "bitmap_clear": "memset_00", "find_next_bit": "memset_00"}
    res: dict = {"nbits": nbits, "nbytes": nbytes, "repeats": BITMAP_REPEATS,
                 "memset_ff_s": best["memset_ff"], "memset_00_s": best["memset_00"],
                 "bitmap_set_cold_s": cold,
                 "bitmap_set_cold_ratio_to_memset": cold / best["memset_ff"], "cy": {}}
    for m, label in (("memset_ff", "memset 0xFF (ctypes, bytearray)"),
                     ("memset_00", "memset 0x00 (ctypes, bytearray)")):
        out(f"    {label:<32}{best[m] * 1e3:9.3f} ms  {nbytes / best[m] / 1e9:6.2f} GB/s")
    for k in ("bitmap_set", "find_next_zero_bit", "bitmap_clear", "find_next_bit"):
        ratio = best[k] / best[base[k]]
        res["cy"][k] = {"seconds": best[k], "ratio_to_memset": ratio, "memset": base[k],
                        "bytes_per_s": nbytes / best[k]}
        label = {"find_next_zero_bit": "find_next_zero_bit (full map)",
                 "find_next_bit": "find_next_bit (empty map)"}.get(k, k)
        out(f"    cy {label:<29}{best[k] * 1e3:9.3f} ms  {nbytes / best[k] / 1e9:6.2f} GB/s"
            f"  {ratio:5.2f}x {base[k]}")
    out(f"    cy bitmap_set, first (cold)   {cold * 1e3:9.3f} ms  "
        f"{nbytes / cold / 1e9:6.2f} GB/s  {cold / best['memset_ff']:5.2f}x memset_ff"
        f"  (page faults of the fresh calloc'd map)")

    # The pure twin at a size it can do, extrapolated per bit (labelled as such).
    pbits = min(PURE_BITMAP_BITS, nbits)
    pbm = pure.Bitmap(pbits)
    pset, _ = _timed(pbm.bitmap_set, 0, pbits)
    pfind, found = _timed(pbm.find_next_zero_bit, pbits, 0)
    if found != pbits:
        raise BenchFailure(f"bitmap: pure find_next_zero_bit gave {found}, not {pbits}")
    res["pure"] = {"measured_bits": pbits}
    for k, dt in (("bitmap_set", pset), ("find_next_zero_bit", pfind)):
        extrap = dt / pbits * nbits
        res["pure"][k] = {"measured_s": dt, "ns_per_bit": dt / pbits * 1e9,
                          "extrapolated_s": extrap,
                          "extrapolated_ratio_to_memset": extrap / best["memset_ff"],
                          "extrapolated_ratio_to_cy": extrap / best[k]}
        out(f"    pure {k} on {pbits} bits: {dt * 1e3:.1f} ms "
            f"({dt / pbits * 1e9:.2f} ns/bit); EXTRAPOLATED to {nbits} bits: "
            f"{extrap:.2f} s = {extrap / best['memset_ff']:,.0f}x memset_ff, "
            f"{extrap / best[k]:,.0f}x cy")
    return res


# -- 3. type1 at scale --------------------------------------------------------------------

def _check_count(container, expected: int, when: str) -> None:
    if container.count != expected:
        raise BenchFailure(f"type1: container count is {container.count} {when}, "
                           f"expected {expected}")


def _mem_fields(n: int, base, mapped, unmapped, trimmed) -> dict:
    d = {"rss_baseline": base, "rss_mapped": mapped, "rss_after_unmap": unmapped,
         "rss_after_trim": trimmed}
    if base is not None and mapped is not None:
        d["bytes_per_mapping"] = (mapped - base) / n
    return d


def bench_type1(n: int, out) -> dict:
    from rig.core import load_backend
    from rig.core.types import MemoryRegionSection

    cy = load_backend("cy")
    size = n * PAGE
    out(f"[3] type1: {n} single-page (4 KiB) mappings = {size / 2**30:.2f} GiB; "
        f"dma_entry_limit={n}, memlock unlimited")
    res: dict = {"mappings": n, "malloc_trim": _malloc_trim()}

    # (a) The Python API, one call per mapping.
    c = cy.VfioType1Container(dma_entry_limit=n, memlock_limit=None)

    def map_loop():
        m = c.map_dma
        bad = 0
        for i in range(n):
            if m(i << 12, PAGE, VADDR_BASE + (i << 12)):
                bad += 1
        return bad

    def unmap_loop():
        u = c.unmap_dma
        bad = 0
        for i in range(n):
            if u(i << 12, PAGE) != PAGE:
                bad += 1
        return bad

    _malloc_trim()
    base = _rss()
    tmap, bad = _timed(map_loop)
    mapped = _rss()
    if bad:
        raise BenchFailure(f"type1 (a): {bad} of {n} map_dma calls failed")
    _check_count(c, n, "after mapping (a)")
    tunmap, bad = _timed(unmap_loop)
    if bad:
        raise BenchFailure(f"type1 (a): {bad} of {n} unmap_dma calls failed")
    _check_count(c, 0, "after unmapping (a)")
    unmapped = _rss()
    c = None  # drop the container (the closures above hold the cell)
    _malloc_trim()
    trimmed = _rss()
    a = {"map_s": tmap, "unmap_s": tunmap, "maps_per_s": _rate(n, tmap),
         "unmaps_per_s": _rate(n, tunmap), **_mem_fields(n, base, mapped, unmapped, trimmed)}
    res["python_api"] = a

    # (b) The C path: one state_change maps every granule, one unmaps them all.
    c = cy.VfioType1Container(dma_entry_limit=n, memlock_limit=None)
    rba = cy.RamBlockAttributes(size, PAGE)
    vl = cy.VFIORamDiscardListener(c, PAGE, vaddr_base=VADDR_BASE)
    ret = rba.register_listener(vl, MemoryRegionSection(0, size, IOVA_BASE))
    if ret:
        raise BenchFailure(f"type1 (b): register_listener returned {ret}")
    _check_count(c, 0, "after register_listener (b)")
    _malloc_trim()
    base = _rss()
    tmap, ret = _timed(rba.state_change, 0, size, False)
    mapped = _rss()
    if ret:
        raise BenchFailure(f"type1 (b): state_change(populate) returned {ret}")
    _check_count(c, n, "after state_change(0, size, False) (b)")
    tunmap, ret = _timed(rba.state_change, 0, size, True)
    if ret:
        raise BenchFailure(f"type1 (b): state_change(discard) returned {ret}")
    _check_count(c, 0, "after state_change(0, size, True) (b)")
    if vl.discard_errors:
        raise BenchFailure(f"type1 (b): discard errors {vl.discard_errors[:3]}")
    unmapped = _rss()
    rba.unregister_listener(vl)
    del rba, vl, c
    _malloc_trim()
    trimmed = _rss()
    b = {"map_s": tmap, "unmap_s": tunmap, "maps_per_s": _rate(n, tmap),
         "unmaps_per_s": _rate(n, tunmap), **_mem_fields(n, base, mapped, unmapped, trimmed)}
    res["c_path"] = b

    def mib(v):
        return "n/a" if v is None else f"{v / 2**20:.1f} MiB"

    for label, key, d in (("(a) Python map_dma/unmap_dma loop", "python_api", a),
                          ("(b) C path via state_change", "c_path", b)):
        out(f"    {label}")
        out(f"        map   {d['map_s']:8.3f} s  {d['maps_per_s']:>12,.0f} maps/s")
        out(f"        unmap {d['unmap_s']:8.3f} s  {d['unmaps_per_s']:>12,.0f} unmaps/s")
        bpm = d.get("bytes_per_mapping")
        out(f"        memory {'n/a' if bpm is None else f'{bpm:.2f}'} B/mapping (RSS delta); "
            f"RSS {mib(d['rss_baseline'])} -> mapped {mib(d['rss_mapped'])} -> "
            f"unmapped {mib(d['rss_after_unmap'])} -> freed+trim {mib(d['rss_after_trim'])}")
    res["ratio_c_over_python_map"] = b["maps_per_s"] / a["maps_per_s"]
    res["ratio_c_over_python_unmap"] = b["unmaps_per_s"] / a["unmaps_per_s"]
    out(f"    C path / Python API: map {res['ratio_c_over_python_map']:.2f}x, "
        f"unmap {res['ratio_c_over_python_unmap']:.2f}x")
    return res


# -- the command --------------------------------------------------------------------------

def cmd_core(args) -> int:
    out = _text_printer(args.json)

    from rig.core import load_backend
    load_backend("cy")  # fail here, not mid-run, when the extension is not built

    config = {"suite": "core", "seed": args.seed, "ops": args.ops, "bits": args.bits,
              "mappings": args.mappings}
    machine = _machine()
    out(f"rig bench core: seed={args.seed} ops={args.ops} bits={args.bits} "
        f"mappings={args.mappings}")
    out(_machine_line(machine))
    build = _build()
    dirty = {None: "", False: " (rig/core clean)", True: " + uncommitted rig/core changes"}
    out(f"core: commit {build['commit'] or '?'}{dirty[build['core_dirty']]}")
    if build["stale_extensions"]:
        print(f"rig bench core: WARNING: source newer than the built extension: "
              f"{', '.join(build['stale_extensions'])}; the figures are for the old build "
              f"(rebuild: python setup.py build_ext --inplace)", file=sys.stderr)
    report: dict = {"config": config, "machine": machine, "build": build}
    t0 = time.perf_counter()
    try:
        report["opstream"] = bench_opstream(args.ops, args.seed, out)
        report["bitmap"] = bench_bitmap(args.bits, out)
        report["type1"] = bench_type1(args.mappings, out)
    except BenchFailure as exc:
        print(f"rig bench core: FAIL: {exc}", file=sys.stderr)
        return EXIT_FINDING
    report["total_s"] = time.perf_counter() - t0
    out(f"total {report['total_s']:.1f} s")
    if args.json:
        print(json.dumps(report, sort_keys=True))
    return EXIT_OK


# -- world harness throughput -------------------------------------------------------------

def _world_inputs(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [bytes(rng.randrange(256) for _ in range(rng.randrange(40, 200))) for _ in range(n)]


def _run_traces(traces, differential: bool) -> int:
    """Each trace as WorldHarness.one_input runs it; returns the ops executed."""
    from rig.check.session import Session

    ops = 0
    for trace in traces:
        ops += len(Session(trace.config, differential=differential).run(trace.ops).steps)
    return ops


def bench_world(designs: list, n: int, seed: int, repeats: int, out) -> dict:
    from rig.drive.harnesses import harness_for

    inputs = _world_inputs(n, seed)
    out(f"{'design':<14} {'inputs/s':>9} {'ops/s':>8} {'ops/input':>9}   "
        f"{'no shadow: inputs/s':>19} {'ops/s':>8}")
    rows = {}
    for design in designs:
        traces = [harness_for("convert", design).to_trace(d) for d in inputs]
        row = {}
        for differential in (True, False):
            best, ops = min(_timed(_run_traces, traces, differential) for _ in range(repeats))
            row["shadow" if differential else "no_shadow"] = {
                "seconds": best, "ops": ops, "inputs_per_s": _rate(n, best),
                "ops_per_s": _rate(ops, best)}
        on, off = row["shadow"], row["no_shadow"]
        out(f"{design:<14} {on['inputs_per_s']:>9.0f} {on['ops_per_s']:>8.0f} "
            f"{on['ops'] / n:>9.1f}   {off['inputs_per_s']:>19.0f} {off['ops_per_s']:>8.0f}")
        rows[design] = row
    return rows


def bench_statemachine(design: str, n: int, seed: int, repeats: int, out) -> dict:
    """The ``statemachine`` harness' loop on the same ``n`` inputs as the convert rows
    (hypothesis reads each as its choice sequence): one fuzz_one_input per input, best
    of ``repeats``; exec/s, and steps/s from the ops its machines applied.  A finding
    (an input the design fails) is counted, not raised: the figures stay comparable."""
    from rig.drive import stateful
    from rig.drive.base import Finding
    from rig.drive.harnesses import harness_for

    harness = harness_for("statemachine", design)
    inputs = _world_inputs(n, seed)

    def loop():
        machines: list = []
        findings = 0
        stateful._recorders.append(machines)
        try:
            for data in inputs:
                try:
                    harness.one_input(data)
                except Finding:
                    findings += 1
        finally:
            stateful._recorders.remove(machines)
        return sum(len(m.ops) for m in machines), findings

    harness.one_input(inputs[0])  # hypothesis builds its test on the first call
    best, (ops, findings) = min(_timed(loop) for _ in range(repeats))
    row = {"design": design, "seconds": best, "inputs": n, "ops": ops,
           "execs_per_s": _rate(n, best), "ops_per_s": _rate(ops, best),
           "findings": findings}
    out(f"statemachine:{design}: {row['execs_per_s']:.0f} exec/s, "
        f"{row['ops_per_s']:.0f} ops/s ({ops / n:.1f} ops/input"
        + (f"; {findings} input(s) found a violation" if findings else "") + ")")
    return row


def bench_oracle_shares(design: str, n: int, seed: int, out) -> dict:
    """One pass with every oracle check wrapped in a timer: each check's share of the
    whole loop (the wrappers' own cost is included in the shares, so they are upper
    bounds; the loop total is from the same pass)."""
    from dataclasses import replace

    from rig.check import oracle
    from rig.drive.harnesses import harness_for

    spent: dict = {}

    def timed(name, fn):
        def wrapper(*args):
            t0 = time.perf_counter()
            try:
                return fn(*args)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - t0
        return wrapper

    traces = [harness_for("convert", design).to_trace(d) for d in _world_inputs(n, seed)]
    # What the session runs: each check's incremental twin (its key included), the op's
    # view, the differential check and the periodic full check (verify).
    saved = (oracle.INCREMENTAL, oracle.OpView, oracle.check_differential, oracle.verify)
    oracle.INCREMENTAL = tuple(
        replace(inc, run=timed(inc.name, inc.run),
                key=inc.key and timed(inc.name, inc.key)) for inc in saved[0])
    oracle.OpView = timed("view", saved[1])
    oracle.check_differential = timed("check_differential", saved[2])
    oracle.verify = timed("verify", saved[3])
    try:
        total, _ = _timed(_run_traces, traces, True)
    finally:
        oracle.INCREMENTAL, oracle.OpView, oracle.check_differential, oracle.verify = saved
    shares = {name: spent[name] / total for name in sorted(spent, key=spent.get, reverse=True)}
    out(f"oracle on {design} (shadow on): {sum(shares.values()):.0%} of the loop: " +
        ", ".join(f"{name.removeprefix('check_')} {share:.0%}" for name, share in shares.items()))
    return {"design": design, "total_s": total, "shares": shares}


def cmd_world(args) -> int:
    from rig.world.designs import DESIGNS, ensure

    out = _text_printer(args.json)

    designs = args.designs or list(DESIGNS)
    unknown = [d for d in designs if not ensure(d)]
    if unknown:
        print(f"rig bench world: --design {unknown[0]!r}: not one of {', '.join(DESIGNS)}",
              file=sys.stderr)
        return 1
    machine = _machine()
    out(f"rig bench world: seed={args.seed} inputs={args.inputs} repeats={args.repeats} "
        f"(convert harness, cy backend)")
    out(_machine_line(machine))
    report = {"config": {"suite": "world", "seed": args.seed, "inputs": args.inputs,
                         "repeats": args.repeats, "designs": designs},
              "machine": machine, "build": _build()}
    report["designs"] = bench_world(designs, args.inputs, args.seed, args.repeats, out)
    shares_design = "hardened" if "hardened" in designs else designs[0]
    report["statemachine"] = bench_statemachine(shares_design, args.inputs, args.seed,
                                                args.repeats, out)
    report["oracle"] = bench_oracle_shares(shares_design, args.inputs, args.seed, out)
    if args.json:
        print(json.dumps(report, sort_keys=True))
    return EXIT_OK


# -- campaign throughput: the default harnesses under libFuzzer ----------------------------

#: What exit 2 means for ``rig bench campaign``.
_CAMPAIGN_FAIL = ("a worker exited non-zero, crashed, found something or ran fewer runs "
                  "than asked (the figures would be lies)")


def _add_campaign(suites) -> None:
    from rig.cli.helptext import epilog
    from rig.drive import benchcampaign
    from rig.drive.harnesses import DEFAULT_CAMPAIGN

    k = suites.add_parser(
        "campaign", help="the default campaign's harnesses under libFuzzer: exec/s, cores "
        "used, jobs=N over jobs=1",
        description=(
            "The default rig fuzz campaign's harnesses (world harnesses on hardened), each\n"
            "run as the campaign's libFuzzer workers in its instrumented build, for a fixed\n"
            "--runs per worker (not a time), from a fresh folder holding only the harness'\n"
            "own seeds; with N workers, worker i runs -seed=SEED+i, all on one corpus\n"
            "folder, as a campaign's workers do.\n\n"
            "Per harness and jobs setting: runs (every worker's, the seed corpus' runs\n"
            "included), start-up (spawn to libFuzzer's INITED line), seconds of fuzzing\n"
            "(the first INITED to the last exit), exec/s (the runs after INITED / those\n"
            "seconds), cores used (the workers' CPU time, from os.wait4, / the seconds from\n"
            "their spawn to the last exit) and exec/s over jobs=1's.  Wall-clock figures;\n"
            "docs/benchmarks.md, rig bench campaign."),
        epilog=epilog([("rig bench campaign", "every default harness at --jobs 1 and at "
                        "every core, --runs "
                        f"{benchcampaign.DEFAULT_RUNS} per worker"),
                       ("rig bench campaign --harness convert --jobs 1,2 --runs 1000 --json",
                        "one harness, as one JSON object")],
                      ok="measured", finding=_CAMPAIGN_FAIL))
    k.add_argument("--runs", type=int, default=benchcampaign.DEFAULT_RUNS, metavar="N",
                   help="libFuzzer -runs of each worker, the seed corpus' runs included "
                   f"(default {benchcampaign.DEFAULT_RUNS}: about 2-3 minutes for the "
                   "default suite on 2 cores)")
    k.add_argument("--seed", type=_seed, default=benchcampaign.DEFAULT_SEED,
                   help="libFuzzer -seed of worker 0; worker i gets SEED+i (default "
                   f"{benchcampaign.DEFAULT_SEED})")
    k.add_argument("--harness", action="append", dest="harnesses", metavar="NAME",
                   help="a harness to measure (repeatable; default the default campaign's: "
                   f"{', '.join(DEFAULT_CAMPAIGN)}); a world harness runs on hardened unless "
                   "NAME:DESIGN says otherwise")
    k.add_argument("--jobs", action="append", metavar="N[,N...]",
                   help="workers per harness (repeatable, or a comma-separated list; default "
                   f"1 and every core: {','.join(map(str, benchcampaign.default_jobs()))} "
                   "here)")
    k.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    k.set_defaults(func=cmd_campaign)


def _jobs_list(values) -> list[int]:
    from rig.drive import benchcampaign
    from rig.errors import UsageError

    if not values:
        return benchcampaign.default_jobs()
    out = set()
    for value in values:
        for part in value.split(","):
            try:
                n = int(part, 10)
            except ValueError:
                raise UsageError(f"--jobs {value!r}: not a number of workers "
                                 "(N or N,N,...)") from None
            if n < 1:
                raise UsageError(f"--jobs {value!r}: must be >= 1")
            out.add(n)
    return sorted(out)


def cmd_campaign(args) -> int:
    import importlib.util

    from rig.drive import benchcampaign
    from rig.errors import UsageError

    if args.runs < 1:
        raise UsageError(f"--runs must be >= 1, not {args.runs}")
    jobs = _jobs_list(args.jobs)
    try:
        names = benchcampaign.resolve(args.harnesses)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if importlib.util.find_spec("atheris") is None:
        raise UsageError("the suite runs libFuzzer workers, and atheris is not installed "
                         "(pip install -e '.[fuzz]')")
    out = _text_printer(args.json)
    machine = _machine()
    build = _build()
    out(f"rig bench campaign: seed={args.seed} runs={args.runs} (per worker) "
        f"jobs={','.join(map(str, jobs))} harnesses={','.join(names)}")
    out(_machine_line(machine))
    dirty = {None: "", False: " (rig/core clean)", True: " + uncommitted rig/core changes"}
    out(f"core: commit {build['commit'] or '?'}{dirty[build['core_dirty']]}")
    head = (f"{'harness':<26} {'jobs':>4} {'runs':>7} {'start-up':>8} {'fuzz s':>7} "
            f"{'exec/s':>7} {'cores':>5} {'vs jobs=1':>9}")
    t0 = time.perf_counter()
    bench = benchcampaign.Bench(args.runs, args.seed)
    out(f"workers: python -m rig.drive.target NAME, {bench.build} build, -runs={args.runs} "
        f"-seed={args.seed}+i, from the harness' seeds")
    out(head)
    done: list = []
    ratio_of: dict = {}  # (harness, jobs) -> exec/s over jobs=1's

    def on_row(row) -> None:
        done.append(row)
        ratio = benchcampaign.ratios([r for r in done if r.harness == row.harness]).get(row.jobs)
        ratio_of[(row.harness, row.jobs)] = ratio
        out(f"{row.harness:<26} {row.jobs:>4} {row.runs:>7} {row.startup_s:>7.1f}s "
            f"{row.fuzz_s:>6.1f}s {row.execs_per_s:>7.0f} {row.cores_used:>5.2f} "
            + (f"{ratio:>8.2f}x" if ratio is not None else f"{'-':>9}"))

    try:
        rows = bench.run(names, jobs, on_row=on_row)
    except benchcampaign.BenchFailure as exc:
        print(f"rig bench campaign: FAIL: {exc}", file=sys.stderr)
        return EXIT_FINDING
    total_s = time.perf_counter() - t0
    totals = benchcampaign.totals(rows, jobs)
    for n, t in totals.items():
        ratio = t["ratio_to_jobs_1"]
        out(f"total jobs={n}: {t['harnesses']} harnesses, {t['runs']} runs, "
            f"{t['fuzz_s']:.1f} s of fuzzing, mean {t['mean_execs_per_s']:.0f} exec/s, "
            f"{t['cores_used']:.2f} cores used"
            + (f", {ratio:.2f}x jobs=1" if ratio is not None else ""))
    out(f"total {total_s:.1f} s")
    if args.json:
        print(json.dumps({
            "config": {"suite": "campaign", "seed": args.seed, "runs": args.runs,
                       "jobs": jobs, "harnesses": names, "mode": benchcampaign.MODE},
            "machine": machine, "build": build, "fuzz_build": bench.build,
            "rows": [dict(r.to_json(), ratio_to_jobs_1=None if ratio_of[(r.harness, r.jobs)]
                          is None else round(ratio_of[(r.harness, r.jobs)], 3)) for r in rows],
            "totals": list(totals.values()), "total_s": round(total_s, 2)},
            sort_keys=True))
    return EXIT_OK


# -- bug benchmark: time to kill each mutant, per engine ----------------------------------

#: What exit 2 means for ``rig bench bugs``.
_MISSED = "a mutant that no engine killed in any seed (the rig missed a planted bug)"
#: Where ``rig bench bugs`` keeps its results unless --results says otherwise.
BUGS_RESULTS = "artifacts/bench-bugs/results.jsonl"


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, not {text}")
    return value


def _mutant_names() -> list[str]:
    from rig.world.mutants import mutants

    return list(mutants()) or ["(none registered)"]


def _add_bugs(suites) -> None:
    from rig.cli.helptext import epilog, listed, one_of
    from rig.drive.bugbench import ENGINES, default_jobs

    import textwrap

    engines = "\n".join(
        "\n".join(textwrap.wrap(e.doc, 80, initial_indent=f"  {name:<15} ",
                                subsequent_indent=" " * 18, break_on_hyphens=False))
        for name, e in ENGINES.items())
    b = suites.add_parser(
        "bugs", help="time to kill each mutant, per engine and seed: table and plot",
        description=(
            "Every mutant (rig list mutants: a design or core variant with one planted\n"
            "defect) x engine x seed is a cell, run in a process of its own with the\n"
            "mutant's core until the engine reports a finding that kills the mutant (its\n"
            "minimized trace is clean on the unmutated design: the header's design swapped\n"
            "for the mutant's base, or the unmutated core for a core trace, replayed in a\n"
            "process without the mutant's core) or the cap runs out.  Every core variant\n"
            "is built before the first cell: no cell's time includes a build.\n\n"
            f"engines:\n{engines}\n\n"
            "Figures per cell: time (wall seconds from the engine's start to the killing\n"
            "finding), execs (inputs run up to it: campaign runs, swarm inputs, hypothesis\n"
            "test cases, fail-nth trace runs), ops (the killing trace, minimized).  The table\n"
            "gives per mutant and engine the seeds that killed it (k/n) and the medians over\n"
            "those seeds, a totals row per engine (mutants killed by at least one seed, and\n"
            "the median over the mutants both kill of its median time / swarm's), and '-'\n"
            "where there is nothing to show.  docs/benchmarks.md, Bug benchmark."),
        epilog=epilog([
            ("rig bench bugs --seeds 1 --cap 30 --engine swarm --engine fail-nth",
             "every registered mutant, two engines, one seed of 30 s each"),
            ("rig bench bugs --mutant ./mymutant.py:MyMutant --markdown --plot out/bugs",
             "a mutant of your own, every engine, 5 seeds of 60 s; a Markdown table and "
             "out/bugs.png, out/bugs.svg")],
            ok="measured: every mutant was killed by at least one engine", finding=_MISSED))
    listed(b.add_argument(
        "--mutant", action="append", dest="mutants", metavar="NAME|SPEC",
        help="a mutant to measure (repeatable; default every registered one): a registered "
        "mutant's name, or a mutant of your own as path/to/file.py:Class (a subclass of a "
        "design with rig.world.mutants.Mutant mixed in and its base set)"), _mutant_names)
    b.add_argument("--engine", action="append", dest="engines", choices=list(ENGINES),
                   metavar="ENGINE", help="an engine (repeatable; default every one): "
                   f"{one_of(ENGINES)}")
    b.add_argument("--seeds", type=_positive, default=5,
                   help="seeds per mutant and engine, 1..N (default 5); a deterministic "
                   "engine (fail-nth) runs seed 1 only")
    b.add_argument("--cap", type=_seconds, default=60.0, metavar="SECONDS",
                   help="the most one cell may hunt, in wall seconds (default 60); a "
                   "campaign cell gets it as rig fuzz --time")
    b.add_argument("--jobs", type=_positive, metavar="N",
                   help="cells run at once (default: every core this process may use, "
                   f"{default_jobs()} here); a campaign cell runs rig fuzz --jobs 1, so "
                   "cells x workers stay within the cores")
    b.add_argument("--results", default=BUGS_RESULTS, metavar="FILE.jsonl",
                   help="the results file: one JSON line per finished cell, appended as it "
                   "ends; the cells it holds are not run again (resume after Ctrl-C by "
                   "running the same command); the killing traces and each cell's log go "
                   "beside it, in NAME-traces/ and NAME-logs/ for FILE NAME.jsonl (default "
                   f"{BUGS_RESULTS})")
    b.add_argument("--markdown", action="store_true",
                   help="print the table as Markdown (docs/benchmarks.md) instead of text")
    b.add_argument("--json", action="store_true",
                   help="print one JSON document (config, machine, cells, rows, totals) "
                   "instead of the table; progress stays on stderr")
    b.add_argument("--plot", metavar="PREFIX",
                   help="also draw PREFIX.png and PREFIX.svg: per engine, the fraction of "
                   "mutants found (a mutant counts at the median of its seeds' times, a "
                   "seed that did not kill it counting as never) against time, log x axis")
    b.set_defaults(func=cmd_bugs)


def _fmt_num(value) -> str:
    """A count, or a median of counts (a half when the number of seeds is even)."""
    if value is None:
        return "-"
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def _fmt_time(value) -> str:
    """Seconds with three significant digits (a swarm kill takes milliseconds)."""
    if value is None:
        return "-"
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def _found_text(row) -> str:
    text = f"{row.found}/{row.cells}" if row.cells else "-"
    if row.deterministic and row.cells:
        text += " (det.)"
    if row.errors:
        text += f" ({row.errors} error{'s' if row.errors > 1 else ''})"
    return text


def _ratio_text(total: dict, has_swarm: bool) -> str:
    if not has_swarm or total["swarm_ratio"] is None:
        return "-"
    return f"{total['swarm_ratio']:.2f}x ({total['swarm_ratio_mutants']} mutants)"


def bugs_table(summary: dict, engines: list, markdown: bool) -> list[str]:
    """The table: one row per mutant and engine, then the totals per engine."""
    head = ["mutant", "engine", "found", "median time (s)", "median execs", "median ops"]
    rows = [[r.mutant, r.engine, _found_text(r), _fmt_time(r.median_time_s),
             _fmt_num(r.median_execs), _fmt_num(r.median_ops)] for r in summary["rows"]]
    has_swarm = "swarm" in engines
    totals_head = ["engine", "mutants killed", "median time vs swarm"]
    totals = [[name, f"{t['mutants_found']}/{t['mutants']}", _ratio_text(t, has_swarm)]
              for name, t in summary["totals"].items()]
    note = ("found: the seeds whose engine killed the mutant, of the seeds run (det.: a "
            "deterministic engine, one seed); medians over those seeds.  Totals: mutants "
            "killed by at least one seed; vs swarm: the median, over the mutants both this "
            "engine and swarm kill, of this engine's median time / swarm's.")
    if markdown:
        def md(cells):
            return "| " + " | ".join(cells) + " |"

        out = [md(head), md(["---"] * 2 + ["---:"] * 4)] + [md(r) for r in rows]
        out += ["", md(totals_head), md(["---", "---:", "---:"])] + [md(t) for t in totals]
        return out + ["", note]
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows)]
    out = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head] + rows]
    twidths = [max(len(str(c)) for c in col) for col in zip(totals_head, *totals)]
    out += [""] + ["  ".join(c.ljust(w) for c, w in zip(r, twidths)).rstrip()
                   for r in [totals_head] + totals]
    return out + ["", note]


def plot_bugs(summary: dict, engines: list, classes, cap: float, prefix: str) -> list[str]:
    """PREFIX.png and PREFIX.svg: per engine, the fraction of the mutants found against
    time, a step line each (id ``engine-NAME`` in the SVG), log x axis.  A mutant counts
    at the median of its seeds' times (a seed that did not kill it counting as never:
    rig.drive.bugbench.median_time_to_find).  Deterministic: no date in either file, and
    a fixed hash salt for the SVG's ids."""
    from rig.errors import UsageError

    try:
        import matplotlib
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install matplotlib (it is in the "
                         "test extra: pip install -e '.[test]')") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rig.drive.bugbench import median_time_to_find

    rows = {(r.mutant, r.engine): r for r in summary["rows"]}
    curves = {}
    for name in engines:
        times = [median_time_to_find(rows[(cls.name, name)]) for cls in classes]
        curves[name] = sorted(t for t in times if t is not None)
    finite = [t for ts in curves.values() for t in ts if t > 0]
    x0 = min(min(finite) / 2, 0.01) if finite else 0.01
    x1 = max([cap] + [t for ts in curves.values() for t in ts]) * 1.1
    n = len(classes)
    with matplotlib.rc_context({"svg.hashsalt": "gmem-rig bench bugs", "svg.fonttype": "none"}):
        fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=100)
        for name in engines:
            ts = curves[name]
            xs = [x0] + [max(t, x0) for t in ts] + [x1]
            ys = [0.0] + [(i + 1) / n for i in range(len(ts))] + [len(ts) / n]
            ax.step(xs, ys, where="post", label=f"{name} ({len(ts)}/{n})",
                    gid=f"engine-{name}", linewidth=1.8)
        ax.set_xscale("log")
        ax.set_xlim(x0, x1)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("wall seconds (log scale)")
        ax.set_ylabel("fraction of mutants found")
        ax.set_title(f"rig bench bugs: {n} mutant{'s' if n != 1 else ''}, cap {cap:g} s; "
                     "a mutant counts at the median of its seeds", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="upper left", fontsize=9)
        fig.tight_layout()
        out = [f"{prefix}.png", f"{prefix}.svg"]
        Path(prefix).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out[0], metadata={"Software": None})
        fig.savefig(out[1], metadata={"Date": None, "Creator": None})
        plt.close(fig)
    return out


def cmd_bugs(args) -> int:
    from rig.drive import bugbench, native
    from rig.errors import EXIT_INTERNAL

    native.keep_hypothesis_storage()  # (the cells inherit it)

    classes = bugbench.resolve_mutants(args.mutants)
    engines = [name for name in bugbench.ENGINES if name in (args.engines or bugbench.ENGINES)]
    results = Path(args.results)
    done = bugbench.load_results(results)
    cells = bugbench.plan(classes, engines, args.seeds, args.cap, results)
    todo = [c for c in cells if c.key not in done]
    before = len(cells) - len(todo)
    jobs = args.jobs or bugbench.default_jobs()
    log = bugbench._log
    log(f"rig bench bugs: {len(classes)} mutant(s) x {len(engines)} engine(s), seeds "
        f"1..{args.seeds} (fail-nth: 1), cap {args.cap:g} s: {len(cells)} cells, "
        f"{before} finished before (in {results}), {len(todo)} to run"
        + (f", {min(jobs, len(todo))} at a time (a campaign cell runs rig fuzz --jobs 1)"
           if todo else ""))
    skipped: dict = {}
    written: list = []
    if todo:
        envs, skipped = bugbench.prepare_builds(
            [cls for cls in classes if any(c.mutant == cls.name for c in todo)], engines, log)
        todo = [c for c in todo if c.mutant not in skipped]
        written = bugbench.run_cells(todo, envs, jobs, results, log)
    done = bugbench.load_results(results)
    errors = {bugbench.result_key(r) for r in written if r.get("error")}
    summary = bugbench.summarize(cells, done, errors, classes, engines)
    plots = plot_bugs(summary, engines, classes, args.cap, args.plot) if args.plot else []
    missed = sorted(cls.name for cls in classes
                    if any(r.cells for r in summary["rows"] if r.mutant == cls.name)
                    and not any(r.found for r in summary["rows"] if r.mutant == cls.name))
    code = EXIT_INTERNAL if errors else (EXIT_FINDING if missed else EXIT_OK)
    if args.json:
        print(json.dumps({
            "schema": bugbench.SCHEMA,
            "config": {"mutants": [{"name": c.name, "base": c.base,
                                    "core_mutant": c.core_mutant} for c in classes],
                       "engines": engines, "seeds": args.seeds, "cap_s": args.cap,
                       "jobs": jobs, "results": str(results)},
            "machine": _machine(), "commit": _commit(),
            "cells_run": len(written), "cells_before": before,
            "skipped": skipped,
            "cells": [done.get(c.key) or {"mutant": c.mutant, "engine": c.engine,
                                          "seed": c.seed, "cap_s": c.cap, "finished": False}
                      for c in cells],
            "rows": [{k: v for k, v in vars(r).items()} for r in summary["rows"]],
            "totals": list(summary["totals"].values()),
            "missed": missed, "plot": plots, "exit_code": code}, indent=1, sort_keys=True))
        return code
    if not args.markdown:
        print(f"rig bench bugs: {len(classes)} mutant(s), engines {', '.join(engines)}, "
              f"seeds {args.seeds}, cap {args.cap:g} s; results {results}")
    print("\n".join(bugs_table(summary, engines, args.markdown)))
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    if missed:
        print(f"no engine killed: {', '.join(missed)}")
    for path in plots:
        print(f"plot: {path}")
    return code


def _commit() -> str | None:
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        return subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
