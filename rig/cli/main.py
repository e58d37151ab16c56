"""The ``rig`` command line.

Exit codes, the same for every subcommand (docs/semantics.md 4.1; rig.errors): 0 ok, 1
usage or input error, 2 a violation (a finding), 3 an internal error of the rig itself,
130 interrupted.  Run as the command, the rig takes SIGPIPE's default action, as other
command-line tools do: ``rig list | head`` ends quietly.

Every subcommand and option carries its help text here; ``rig COMMAND --help`` ends with
the exit codes and two examples (rig.cli.helptext).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import traceback
from pathlib import Path

import rig
from rig.cli.helptext import (BACKEND_HELP, BACKENDS, IOMMUS, Formatter, design_names,
                              epilog, harness_names, one_of)
from rig.errors import (EXIT_FINDING, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE,
                        UsageError)

DESCRIPTION = """\
gmem-rig: deterministic fuzzing and fault injection for the confidential-VM
memory-conversion path (KVM guest_memfd, QEMU RamBlockAttributes, VFIO).
Run rig COMMAND --help for a command's options, exit codes and examples."""


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # argparse exits 2 by default; 2 means "finding" here
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _cmd_selftest(args) -> int:
    """Short differential check: Cython core vs pure-Python twin vs reference model."""
    import random

    from rig.check import differential
    from rig.core import load_backend

    try:
        load_backend("cy")
        impls = ("cy", "pure", "model")
    except ImportError as exc:
        print(f"selftest: Cython core not importable ({exc}); checking twin vs model only",
              file=sys.stderr)
        impls = ("pure", "model")
    print(f"selftest: seed={args.seed} ops={args.ops} impls={','.join(impls)}")
    total = 0
    for cfg in differential.selftest_configs():
        rng = random.Random(f"{args.seed}/{cfg}")
        ops = differential.random_ops(rng, cfg, args.ops)
        try:
            total += differential.run(ops, cfg, impls)
        except differential.DifferentialMismatch as exc:
            print(f"selftest: MISMATCH with {cfg}\n{exc}")
            return EXIT_FINDING
        print(f"  ok  {cfg}")
    print(f"selftest: {total} ops, all implementations agree")
    return EXIT_OK


def _cmd_designs(args) -> int:
    from rig.cli import report

    print(report.markdown(args.backend) if args.markdown else report.text(args.backend))
    return EXIT_OK


def _cmd_port_doc(args) -> int:
    """docs/porting.md, generated (rig.cli.porting)."""
    from rig.cli import porting

    return porting.main(args)


#: --backend of the commands that run a design's core in this process or its children:
#: by default the core this process runs, so that a core mutant under RIG_PUREPYTHON=1
#: runs on the twin's mutant (naming cy would import the Cython core, whose mutant
#: needs its own build).
PROCESS_BACKEND_HELP = ("core backend: cy (the Cython core) or pure (its pure-Python twin); "
                        "default: the one this process runs (pure under RIG_PUREPYTHON=1)")


def _process_backend(args) -> str:
    import rig.core

    return args.backend or rig.core.BACKEND


def _cmd_sweep(args) -> int:
    """The sweep's cells through pytest-xdist, then the verdict matrix."""
    import json

    from rig.cli import matrix
    from rig.drive import sweep
    from rig.drive.campaign import provenance, write_document

    try:
        from rig.drive import sweeprun
    except ImportError as exc:  # (pytest is not a dependency of the rig itself)
        raise UsageError(f"rig sweep runs its cells through pytest-xdist, which is not "
                         f"installed ({exc}): pip install -e '.[sweep]'") from None
    from rig.world.designs import resolve as resolve_design

    started = time.time()
    # (a spec is loaded; a mutant resolves by name; an unknown name is one line)
    designs = [resolve_design(d) for d in args.design] if args.design else None
    load = list(args.load) + [d for d in args.design or () if ":" in d]
    try:
        specs = sweep.cells(args.profile, designs, args.iommu, args.shape, args.plan)
    except ValueError as exc:
        raise UsageError(f"--{exc}") from None
    if not specs:
        raise UsageError("rig sweep: the selection has no cells (the limit plan is type1's "
                         "alone: --iommu iommufd --plan limit selects nothing)")
    out = Path(args.out)
    bar = _SweepBar(len(specs), args.profile)
    result = sweeprun.run_sweep(specs, out, jobs=args.jobs, dist=args.dist, tx=args.tx,
                                recheck=args.recheck, backend=_process_backend(args),
                                progress=bar.show, load=load)
    bar.done()
    grid = matrix.aggregate(result["cells"])
    matrix.write_traces(grid, str(out))
    broken = matrix.broken_atomic(grid)
    code, why = result["exit"], result["why"]
    if code == 0 and broken:
        code = EXIT_FINDING
        why = "a design that promises atomicity broke it: " + "; ".join(
            f"{d} x {p} ({', '.join(invs)})" for d, p, invs in broken)
    ok = [c for c in result["cells"] if c.get("status") == "ok"]
    totals = {"cells": len(result["cells"]), "runs": sum(c["runs"] for c in ok),
              "errors": result["errors"], "vm_stops": sum(c["vm_stops"] for c in ok),
              "rechecked": len(result["recheck"]), "mismatches": len(result["mismatches"])}
    doc = {"format": "rig-sweep/1", "profile": args.profile,
           "command": " ".join(["rig", *args.argv]), **provenance(started),
           "jobs": result["jobs"], "dist": result["dist"], "tx": result["tx"],
           "workers": result["workers"], "wall_s": round(time.time() - started, 1),
           "cells": result["cells"], "recheck": result["recheck"], "matrix": grid,
           "totals": totals, "exit": code, "why": why}
    write_document(out / "sweep.json", doc)
    if args.json:
        print(json.dumps(doc, indent=1))
        return code
    print(f"rig sweep --profile {args.profile}: {totals['cells']:,} cells, "
          f"{totals['runs']:,} runs, {totals['vm_stops']:,} VM stops, "
          f"{doc['wall_s']:.0f} s ("
          + (f"{len(result['tx'])} --tx gateways" if result["tx"] else f"-n {result['jobs']}")
          + ")")
    print()
    print(matrix.markdown(grid) if args.markdown else matrix.text(grid))
    if args.coverage:
        coverage: dict = {}
        for c in ok:
            for site, (reached, fired) in c["coverage"].items():
                a, b = coverage.get(site, (0, 0))
                coverage[site] = (a + reached, b + fired)
        print()
        print(sweep.coverage_table(coverage))
    print()
    print(f"determinism re-check: {len(result['recheck'])} cells run again in a fresh "
          f"process, {len(result['mismatches'])} mismatches")
    print(f"wrote {out / 'sweep.json'} (rig report makes a page of it) and "
          f"{out / 'traces'}/")
    if why:
        print(f"rig sweep: {why}", file=sys.stderr)
    return code


class _StatusLine:
    """A progress line on stderr: redrawn in place on a terminal, one line per update
    otherwise (a CI log; the subclass decides how often it updates there)."""

    def __init__(self):
        self.tty = sys.stderr.isatty()
        self.drawn = False

    def emit(self, line: str) -> None:
        self.drawn = True
        print(("\r" + line + "   ") if self.tty else line, end="" if self.tty else "\n",
              file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.tty and self.drawn:
            print(file=sys.stderr, flush=True)


class _SweepBar(_StatusLine):
    """rig sweep's bar while the cells run; in a log, a line per tenth."""

    def __init__(self, total: int, profile: str):
        super().__init__()
        self.total, self.profile = total, profile
        self.shown = -1
        self.started = time.monotonic()

    def show(self, done: int, total: int, errors: int) -> None:
        tenth = done * 10 // max(total, 1)
        if not self.tty and tenth == self.shown:
            return
        self.shown = tenth
        width = 30
        filled = done * width // max(total, 1)
        self.emit(f"rig sweep [{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
                  f"({errors} errors) {time.monotonic() - self.started:.0f} s")


def _cmd_explore(args) -> int:
    """Breadth-first exploration of a small world, per design."""
    import json

    from rig.drive import explore
    from rig.trace import minimize
    from rig.trace.format import parse
    from rig.world.designs import DESIGNS
    from rig.world.designs import resolve as resolve_design

    if args.world in explore.WORLDS:
        world = explore.WORLDS[args.world]
    elif os.path.exists(args.world):
        try:
            world = explore.world_from_trace(args.world)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    else:
        raise UsageError(f"--world {args.world!r}: not one of {', '.join(explore.WORLDS)} "
                         "nor a trace file")
    for name in ("depth", "jobs", "max_states"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "depth" else 1):
            raise UsageError(f"--{name.replace('_', '-')}: must be >= "
                             f"{0 if name == 'depth' else 1}, not {value}")
    designs = [resolve_design(d) for d in args.design] if args.design else list(DESIGNS)
    if args.checkpoint:
        os.makedirs(args.checkpoint, exist_ok=True)
    results = []
    for design in designs:
        bar = _ExploreBar(design) if not args.json else None
        checkpoint = (os.path.join(args.checkpoint, f"{world.name.replace('/', '_')}-"
                                   f"{design}.json") if args.checkpoint else None)
        try:
            result = explore.explore(world, design, args.depth, jobs=args.jobs,
                                     max_states=args.max_states, time_s=args.time,
                                     backend=_process_backend(args), checkpoint=checkpoint,
                                     resume=args.resume, progress=bar and bar.show)
        except ValueError as exc:  # (a checkpoint of another world or design)
            raise UsageError(str(exc)) from None
        if bar:
            bar.done()
        # Nothing found is lost: each counterexample is on disk before it is printed.
        if result.violations:
            os.makedirs(args.out, exist_ok=True)
        for name, v in result.violations.items():
            digest = minimize.canonical_hash(parse(v["trace"], "<explore>"))[:8]
            where = os.path.splitext(os.path.basename(world.name))[0]
            stem = f"explore-{where}-{design}-{name}-{digest}"
            v["path"], _ = minimize.write_new(os.path.join(args.out, stem + ".trace"),
                                              v["trace"])
            v["corpus"] = _corpus_shortest(design, name)
        results.append(result)
    found = any(r.violations for r in results)
    doc = {"world": world.name, "doc": world.doc, "alphabet": len(explore.alphabet(world)),
           "faults": world.faults, "interleaves": world.interleaves, "depth_max": args.depth,
           "designs": [r.to_json() for r in results], "exit": EXIT_FINDING if found else EXIT_OK}
    if args.json:
        print(json.dumps(doc, indent=1))
        return doc["exit"]
    print(f"rig explore --world {world.name}: {world.doc}; {doc['alphabet']} ops in the "
          f"alphabet, every fault at every hit (at most {world.faults} per sequence)"
          + (f", every interleaving (at most {world.interleaves})" if world.interleaves else ""))
    width = max(len(r.design) for r in results)
    print(f"{'design':<{width}}  {'depth':>5}  {'states':>9}  {'sequences':>10}  "
          f"{'seq/s':>7}  verdict")
    for r in results:
        j = r.to_json()
        if r.violations:
            verdict = ", ".join(f"{n} ({v['length']} op{'s' if v['length'] > 1 else ''})"
                                for n, v in r.violations.items())
        elif r.exhausted:
            verdict = (f"no violation in any sequence: every reachable state explored "
                       f"by depth {r.depth}")
        else:
            verdict = f"no violation up to depth {r.depth}"
        print(f"{r.design:<{width}}  {r.depth:>5}  {r.states:>9,}  {r.sequences:>10,}  "
              f"{j['sequences_per_s'] or 0:>7,.0f}  {verdict}"
              + (f"  [{r.stopped}]" if r.stopped else ""))
    for r in results:
        for name, v in r.violations.items():
            corpus = v["corpus"]
            than = (f"; the shortest in corpora/regressions/: {corpus[1]} ops ({corpus[0]})"
                    if corpus else "; none in corpora/regressions/")
            print(f"\n{r.design} {name}: {v['length']} op{'s' if v['length'] > 1 else ''}, "
                  f"{v['path']}{than}")
            print("".join(f"  {line}\n" for line in v["trace"].splitlines()
                          if not line.startswith("# ")), end="")
    return doc["exit"]


def _cmd_port_check(args) -> int:
    """Differential test of real C (a QEMU tree's state manager, or rig/port's hardened
    port) against the rig's core."""
    import json

    from rig.drive import portbuild, portcheck
    from rig.trace.format import TraceError
    from rig.world.designs import design_class
    from rig.world.designs import resolve as resolve_design

    if bool(args.qemu_src) == bool(args.builtin):
        raise UsageError("give --qemu-src DIR (a QEMU tree) or --builtin (rig/port's port), "
                         "not both and not neither")
    for name in ("streams", "jobs"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name}: must be >= 1, not {getattr(args, name)}")
    if args.world_streams < 0:
        raise UsageError(f"--world-streams: must be >= 0, not {args.world_streams}")
    sources = portbuild.builtin_sources() if args.builtin else \
        portbuild.find_sources(args.qemu_src)
    if args.against:
        design = resolve_design(args.against)
        policy = design_class(design).rollback
        decided_by = "design"
    else:
        design = {"10.1": "qemu-10.1", "hardened": "hardened"}.get(sources.flavour)
        policy = portbuild.POLICY[sources.flavour]
        decided_by = "design" if sources.flavour == "hardened" else "upstream"
    library = portbuild.build(sources)
    where = "rig/port (the hardened port)" if args.builtin else \
        f"{args.qemu_src} (QEMU {sources.version or '?'})"
    target = (f"{where}: {', '.join(sorted(p.name for p in sources.files))}, the {sources.flavour} layout, "
              f"against the rig's core ({portcheck.BACKEND}) with rollback={policy}"
              + (f" (design {design})" if design else ""))
    header = [f"port-check: {where}, the {sources.flavour} layout, rollback={policy}"
              + (f" (design {design})" if design else ""),
              "replay both sides: rig port-check "
              + ("--builtin" if args.builtin else "--qemu-src DIR")
              + (f" --against {args.against}" if args.against else "") + " --replay FILE"]
    if args.replay:
        try:
            result = portcheck.replay(library, args.replay)
        except (OSError, TraceError) as exc:
            raise UsageError(f"{args.replay}: {exc}") from None
        if result.kind == "ok":
            print(f"{args.replay}: the C and the rig agree on all {result.ops} ops")
            return EXIT_OK
        print(f"{args.replay}: {result.kind} {result.what or ''} at op {result.op_index}"
              f"\n{result.message}")
        return EXIT_FINDING
    bar = _PortBar(args.streams) if not args.json else None
    results = portcheck.run_streams(library, args.seed, policy, args.streams, args.jobs,
                                    progress=bar and bar.show)
    if bar:
        bar.done()
    divergences = portcheck.classify(results)
    probe = portcheck.Probe(library) if divergences else None
    label = "builtin" if args.builtin else sources.flavour
    for d in divergences:
        portcheck.minimize_class(probe, d, args.seed, policy)
        # Nothing found is lost: the reproducer is on disk before it is printed.
        d.path = portcheck.write_reproducer(d, header, args.out, label)
    world = None
    if args.builtin and args.world_streams and design != "hardened":
        # (the kvm_convert_memory port is hardened's: portworld compares it with that
        # design only)
        print(f"rig port-check: the conversion streams are not run: the kvm_convert_memory "
              f"port is hardened's, and --against is {design}", file=sys.stderr)
    elif args.builtin and args.world_streams:
        # The rest of hardened's proof (KVM attribute restore, the retry bounds): the C
        # port of kvm_convert_memory over the C state manager, against the Hardened
        # design on a World.
        from rig.drive import portworld

        world_library = str(portworld.build())
        bar = _PortBar(args.world_streams, "conversion streams") if not args.json else None
        wresults = portcheck.run_streams(world_library, args.seed, policy, args.world_streams,
                                         args.jobs, progress=bar and bar.show, mode="world")
        if bar:
            bar.done()
        wdiv = portcheck.classify(wresults)
        for d in wdiv:
            d.minimized_result = wresults[d.streams[0]]
            d.path = portcheck.world_reproducer(d, args.seed, args.out)
        world = portcheck.WorldReport(
            len(wresults), sum(r.ops for r in wresults),
            tuple(sum(r.give_ups[i] for r in wresults) for i in (0, 1)), wdiv)
    report = portcheck.Report(
        target, sources.flavour, policy, design, decided_by, args.seed, len(results),
        sum(r.ops for r in results), sum(r.exits for r in results),
        sum(1 for r in results if r.exits), divergences, world)
    found = bool(divergences or (world and world.divergences))
    if args.json:
        print(json.dumps(report.to_json(), indent=1))
        return EXIT_FINDING if found else EXIT_OK
    print(f"rig port-check: {target}")
    print(f"{report.streams:,} streams (seed {args.seed}), {report.ops:,} ops compared: "
          + ("the C and the rig agree on every op" if not divergences else
             f"{len(divergences)} divergence class{'es' if len(divergences) > 1 else ''}"))
    if report.exits:
        print(f"the C called exit() {report.exits:,} times in {report.exit_streams:,} streams "
              "(recorded by the stub, not fatal: QEMU would have exited there)")
    for n, d in enumerate(divergences, 1):
        r = d.minimized_result
        print(f"\n{n}. {d.signature}: {len(d.streams):,} stream"
              f"{'s' if len(d.streams) > 1 else ''} (first: {d.streams[0]})")
        if decided_by == "design":
            print(f"   decided by the design: the C under test must behave as "
                  f"{design or 'rollback=' + policy} does")
        elif d.kind == "mismatch":
            print("   decided by upstream: the C is QEMU's own code, so the rig's model of it "
                  f"(rollback={policy}) must follow it")
        else:
            print("   decided by upstream: QEMU's own code fails here where the rig's model "
                  "does not: a QEMU bug if its callers can get here, else a case outside "
                  "their contract")
        print(f"   surfaced in: {', '.join(d.surfaced) or '?'}"
              + (f"; the reproducer's last op is in {portcheck.C_FUNCTIONS[r.op]}"
                 if r.op in portcheck.C_FUNCTIONS else ""))
        print(f"   minimized from {d.original_ops} to {len(d.minimized.ops)} ops "
              f"({d.runs} runs): {d.path}")
        for op in d.minimized.ops:
            print(f"     {portcheck.format_core_op(op)}")
        for line in r.message.splitlines()[:10]:
            print(f"   {line}")
    if world is not None:
        print(f"\nkvm_convert_memory (rig/port/kvm/) over the C state manager, against the "
              f"hardened design on a World: {world.streams:,} conversion streams, "
              f"{world.ops:,} ops compared: "
              + ("the C and the rig agree on every op" if not world.divergences else
                 f"{len(world.divergences)} divergence class"
                 f"{'es' if len(world.divergences) > 1 else ''}")
              + f"; steps given up past the retry bound: {world.give_ups[0]:,} on the "
              f"World, {world.give_ups[1]:,} in the C")
        for n, d in enumerate(world.divergences, 1):
            print(f"\n{n}. {d.signature}: {len(d.streams):,} stream"
                  f"{'s' if len(d.streams) > 1 else ''} (first: {d.streams[0]}): {d.path}")
            for line in d.minimized_result.message.splitlines()[:10]:
                print(f"   {line}")
    return EXIT_FINDING if found else EXIT_OK


class _PortBar(_StatusLine):
    """rig port-check's bar; in a log, a line per tenth."""

    def __init__(self, total: int, what: str = "streams"):
        super().__init__()
        self.shown = -1
        self.what = what
        self.started = time.monotonic()

    def show(self, done: int, total: int) -> None:
        tenth = done * 10 // max(total, 1)
        if not self.tty and tenth == self.shown:
            return
        if self.tty and done % 50 and done != total:
            return
        self.shown = tenth
        filled = done * 30 // max(total, 1)
        self.emit(f"rig port-check [{'#' * filled}{'.' * (30 - filled)}] {done:,}/{total:,} "
                  f"{self.what} {time.monotonic() - self.started:.0f} s")


def _corpus_shortest(design: str, invariant: str):
    """(file, ops) of the shortest regression trace of ``design`` whose expect line names
    ``invariant`` (what rig minimize made of a fuzzer's finding), or None."""
    from rig.trace import core as core_trace
    from rig.trace.corpus import regressions
    from rig.trace.format import load

    best = None
    for path in regressions():
        if core_trace.is_core_trace(path.read_text(encoding="utf-8")):
            continue
        trace = load(str(path))
        if trace.config.design == design and trace.expect is not None and \
                trace.expect.invariant == invariant:
            if best is None or len(trace.ops) < best[1]:
                best = (f"regressions/{path.name}", len(trace.ops))
    return best


class _ExploreBar(_StatusLine):
    """rig explore's line: depth, states, sequences/s and the frontier; in a log, one
    every 10 s."""

    def __init__(self, design: str):
        super().__init__()
        self.design = design
        self.last = -1.0

    def show(self, result) -> None:
        now = time.monotonic()
        if not self.tty and now - self.last < 10:
            return
        self.last = now
        rate = result.sequences / result.seconds if result.seconds else 0
        self.emit(f"rig explore {self.design}: depth {result.depth + 1}, "
                  f"{result.states:,} states, {rate:,.0f} sequences/s, frontier "
                  f"{result.frontier:,}, {result.seconds:.0f} s")


def _cmd_report(args) -> int:
    """One self-contained HTML page from the latest sweep, campaign and bug benchmark."""
    from rig.cli import htmlreport

    return htmlreport.main(args)


def _cmd_replay(args) -> int:
    """Replay traces or raw crash files; exit 0 when each is ok or as expected."""
    import json

    from rig.cli import replay
    from rig.trace.format import TraceError

    worst = EXIT_OK
    reports = []
    for path in args.files:
        try:
            loaded = replay.load_input(path, args.harness, strict=not args.lenient)
        except TraceError as exc:
            print(f"rig replay: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if loaded.core is not None:  # a core trace, or a raw input of a core harness
            result, lines = replay.replay_core(loaded, path, args.backend, not args.no_differential)
            worst = max(worst, replay.core_exit_code(loaded, result))
            if args.json:
                reports.append(replay.core_to_json(loaded, path, result))
            elif not args.quiet:
                print("\n".join(lines) + ("\n" if len(args.files) > 1 else ""))
            else:
                print(f"{path}: {result.outcome.describe()}")
            continue
        if loaded.trace is None:
            code, lines = replay.replay_raw(loaded, path)
            worst = max(worst, code)
            if args.json:
                reports.append({"path": path, "source": "raw", "harness": loaded.harness,
                                "report": lines, "finding": code == 2})
            else:
                print("\n".join(lines) if not args.quiet else f"{path}: {lines[-1]}")
            continue
        result, lines, deltas = replay.replay(loaded, path, args.backend, not args.no_differential)
        code = replay.exit_code(loaded, result)
        worst = max(worst, code)
        if args.json:
            reports.append(replay.to_json(loaded, path, result, deltas))
        elif not args.quiet:
            print("\n".join(lines))
            if len(args.files) > 1:
                print()
        else:
            print(f"{path}: {result.outcome.describe()}")
    if args.json and reports:
        print(json.dumps(reports if len(reports) > 1 else reports[0], indent=1))
    return worst


def _cmd_minimize(args) -> int:
    """Minimize a failing trace or raw crash file; write it under --out if it reproduces
    3 out of 3 times in fresh processes."""
    from rig.cli import replay
    from rig.trace import core, minimize
    from rig.trace.format import TraceError, serialize

    try:
        loaded = replay.load_input(args.file, args.harness, strict=not args.lenient)
    except TraceError as exc:
        print(f"rig minimize: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if loaded.core is not None:
        # A core trace (or a raw input of a core harness): the core minimizer, then the
        # same 3/3 check and corpus write as for a world trace.  One found on a core
        # mutant names it (ensure_core_for put this process on that core).
        from dataclasses import replace

        from rig.check.differential import impls_for
        from rig.core import MUTANT

        def finalize(m, n):
            trace = core.finalize(m, n)
            trace.config = replace(trace.config, mutant=MUTANT)
            return trace

        return _minimize(args, loaded.core,
                         lambda: core.CoreMinimizer(loaded.core, impls_for(args.backend)),
                         finalize, core.serialize, core.write)
    if loaded.trace is None:
        raise UsageError(f"{args.file}: harness {loaded.harness} does not decode to a trace: "
                         "nothing to minimize (rig replay shows it)")
    return _minimize(args, loaded.trace,
                     lambda: minimize.Minimizer(loaded.trace, args.backend,
                                                log=lambda msg: print(f"  {msg}")),
                     minimize.finalize, serialize, minimize.write)


def _minimize(args, original, make, finalize, serialize, write) -> int:
    from rig.trace import minimize

    try:
        m = make()
    except ValueError as exc:
        raise UsageError(f"{args.file}: {exc}") from None
    print(f"minimize: {args.file}: {len(original.ops)} ops, target {m.target}")
    m.minimize()
    trace = finalize(m, len(original.ops))
    text = serialize(trace)
    print(text, end="")
    if args.no_write:
        return EXIT_OK
    if not minimize.reproduces_in_fresh_processes(text, 3, args.backend):
        print("rig minimize: the minimized trace did not reproduce 3/3 in fresh processes: "
              "nondeterminism in the rig", file=sys.stderr)
        return EXIT_INTERNAL
    path, created = write(trace, args.out)
    print(f"{'wrote' if created else 'already known'}: {path}")
    print(f"replay: rig replay {path}")
    return EXIT_OK


def _cmd_fuzz(args) -> int:
    from rig.drive import campaign

    return campaign.main(args)


def _cmd_list(args) -> int:
    """Every registry: designs, harnesses, ops, fault sites, invariants."""
    import json

    from rig.cli import listing

    for section in args.section:
        if section not in listing.SECTIONS:
            raise UsageError(f"{section!r}: not one of {', '.join(listing.SECTIONS)}")
    data = listing.registries(args.section or listing.SECTIONS)
    print(json.dumps(data, indent=1) if args.json else listing.text(data))
    return EXIT_OK


def _add_load(p) -> None:
    """``--load SPEC``: the commands that read traces (whose headers may name a design
    of one's own) and list designs."""
    p.add_argument("--load", action="append", metavar="SPEC", default=[],
                   help="load a design of your own first, path/to/file.py:Class or "
                   "pkg.module:Class (repeatable; docs/your-design.md)")


def _load_designs(args) -> None:
    """Load the designs ``--load`` names (a bad spec is a UsageError: one line, exit 1)."""
    specs = getattr(args, "load", None)
    if specs:
        from rig.world.designs import load_design

        for spec in specs:
            load_design(spec)


#: Set in the environment of the process ``ensure_core_for`` re-executes: the core it was
#: re-executed for, so that a second attempt is an error instead of a loop.
REEXEC_ENV = "RIG_CORE_REEXEC"


def ensure_core_for(*designs: str | None, reexec: bool = True) -> None:
    """Run this process on the core ``designs`` need: a mutant design's core mutant
    (rig.world.mutants.core), the real core for any other design.  The core is chosen
    once per process, at import (rig.core.mutants), so when it is not that one the
    command re-executes itself, once (os.execve of the same command line), with the
    plain variant build's environment (rig.drive.native, built on first use into the
    cache; with RIG_PUREPYTHON=1 only RIG_CORE_MUTANT).  In-process callers
    (``reexec=False``: ``main(argv)``) get a UsageError naming what to set.  Designs
    that need different cores cannot share a process: UsageError."""
    from rig.core import mutants as core_mutants
    from rig.world.mutants.core import core_mutant_of

    tried = os.environ.pop(REEXEC_ENV, None)
    wanted = {core_mutant_of(d) for d in designs if d}
    if not wanted:
        return
    if len(wanted) > 1:
        raise UsageError("these need different cores (core mutants "
                         f"{', '.join(sorted(m or 'none' for m in wanted))}): one process "
                         "runs one core, run them in separate commands")
    (mutant,) = wanted
    if mutant == core_mutants.ACTIVE:
        return
    have = core_mutants.ACTIVE or "the real core"
    if tried is not None:
        raise RuntimeError(f"re-executed for core {mutant or 'the real core'} but the core "
                           f"is {have}")
    if not reexec:
        raise UsageError(f"this needs core {mutant or 'the real core'} and the process runs "
                         f"{have}: run it as the `rig` command, which re-executes on that "
                         f"core, or set {core_mutants.ENV}={mutant or ''} (with "
                         "RIG_PUREPYTHON=1, or RIG_NATIVE_DIR from rig.drive.native.env_for)")
    env = dict(os.environ)
    native_dir = env.get("RIG_NATIVE_DIR", "")
    if env.get("RIG_PUREPYTHON", "") not in ("", "0") or not mutant:
        env[core_mutants.ENV] = mutant or ""
        if not mutant and os.path.exists(os.path.join(native_dir, core_mutants.MARKER)):
            env.pop("RIG_NATIVE_DIR")  # (a variant build: the real core is the package's)
    else:
        from rig.drive import native

        try:
            modules = native.ensure_build(native.PLAIN, mutant, log=lambda m: print(
                f"rig: {m}", file=sys.stderr))
        except native.NativeUnavailable as exc:
            raise UsageError(f"core mutant {mutant}: {exc}") from None
        env.update(native.env_for(native.PLAIN, modules, mutant))
    env[REEXEC_ENV] = mutant or ""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def _designs_of(args) -> list:
    """The designs a command line names: ``--design``, ``--harness NAME:DESIGN``, and the
    traces ``rig replay``/``rig minimize`` read (a world trace's header design; a core
    trace's ``mutant=`` header key).  What cannot be read is left to the command,
    which reports it."""
    out = []
    design = getattr(args, "design", None)
    out += design if isinstance(design, list) else [design]
    out += getattr(args, "designs", None) or []
    harness = getattr(args, "harness", None)
    for name in harness if isinstance(harness, list) else [harness]:
        if name and ":" in name:
            out.append(name.split(":", 1)[1])
    if args.command in ("replay", "minimize"):
        from rig.trace import core as core_trace
        from rig.trace.format import is_trace, parse
        for path in args.files if args.command == "replay" else [args.file]:
            try:
                with open(path, "rb") as f:
                    data = f.read()
                if not (is_trace(data) or path.endswith(".trace")):
                    if not harness:
                        out.append("hardened")  # (the default harness' design)
                    continue
                text = data.decode("utf-8")
                if core_trace.is_core_trace(text):
                    out.append(core_trace.parse(text, path, False).config.mutant)
                else:
                    out.append(parse(text, path, False).config.design)
            except Exception:  # noqa: BLE001 - the command itself says what is wrong
                continue
    return [d for d in out if d]


def _add_parser(sub, name: str, summary: str, description: str, **kwargs):
    """A subcommand: ``summary`` is its line in ``rig --help``, ``description`` heads
    ``rig NAME --help``, ``kwargs`` the epilog and the rest."""
    return sub.add_parser(name, help=summary, description=f"{summary}.\n\n{description}",
                          **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rig", description=DESCRIPTION, epilog=epilog([
        ("rig fuzz", "the default campaign: every default harness on the hardened design"),
        ("rig replay corpora/regressions/*.trace",
         "replay every known finding op by op; 0 when each is as its # expect: line says"),
    ], ok="ok", finding="a finding (a violation, an unexpected VM stop, a core mismatch)"))
    parser.add_argument("--version", action="version", version=f"gmem-rig {rig.__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser,
                                title="commands")
    designs, harnesses = design_names(), harness_names()
    p = _add_parser(
        sub, "selftest", "differential check of the core: Cython core vs pure-Python twin "
        "vs reference model",
        "Seeded random op streams run on every implementation of the core for a set of\n"
        "configurations, stopping at the first disagreement.  Without the Cython core\n"
        "built, the twin is checked against the model.",
        epilog=epilog([("rig selftest", "400 ops on each configuration, seed 0"),
                       ("rig selftest --seed 7 --ops 5000", "longer streams, other ops")],
                      ok="every implementation agrees on every op",
                      finding="the implementations disagree (the mismatch is printed)"))
    p.add_argument("--seed", type=int, default=0, help="seed of the op streams (default 0)")
    p.add_argument("--ops", type=int, default=400, help="ops per configuration (default 400)")
    p.set_defaults(func=_cmd_selftest)
    p = _add_parser(
        sub, "designs", "each design's contract and its verdicts (docs/designs.md)",
        "Every design replays the designs table's cases (corpora/scenarios/ and\n"
        "corpora/designs/: the seed sequence, a 2nd-listener populate failure, ...); the\n"
        "table gives each design's contract and what the oracle reports for each case.",
        epilog=epilog([("rig designs", "the table as text"),
                       ("rig designs --markdown > docs/designs.md",
                        "regenerate the document after adding a design")],
                      ok="the table was printed"))
    p.add_argument("--markdown", action="store_true",
                   help="print the table as docs/designs.md (Markdown) instead of text")
    p.add_argument("--backend", choices=BACKENDS, default="cy", help=BACKEND_HELP)
    _add_load(p)
    p.set_defaults(func=_cmd_designs)
    p = _add_parser(
        sub, "port-doc", "docs/porting.md: each hardening of hardened over qemu-10.1 as a "
        "QEMU change, generated",
        "For every difference between the hardened and qemu-10.1 designs (their class\n"
        "attributes and the code only hardened has): what changes in QEMU, why (the bug\n"
        "and the invariants it breaks), the QEMU function it touches, and the regression\n"
        "trace that shows it, replayed on both designs as the document is written.  Then\n"
        "what the C ports carry (rig/port/ram-block-attributes.c, the state manager;\n"
        "rig/port/kvm/kvm-convert-memory.c, kvm_convert_memory) and, with --qemu-src, the\n"
        "unified diffs of the tree's system/ram-block-attributes.c and of its\n"
        "kvm_convert_memory() (accel/kvm/kvm-all.c) against them.",
        epilog=epilog([("rig port-doc", "regenerate docs/porting.md"),
                       ("rig port-doc --qemu-src ~/src/qemu -o /tmp/porting.md",
                        "the document with the diff against a QEMU tree appended")],
                      ok="written, or with --check: the file is current"))
    p.add_argument("-o", "--output", metavar="FILE",
                   help="where to write it (default docs/porting.md; - for stdout); "
                   "required with --qemu-src, since the committed file has no QEMU code")
    p.add_argument("--qemu-src", metavar="DIR",
                   help="a QEMU tree: append the diffs of its system/ram-block-attributes.c "
                   "and kvm_convert_memory() against the ports")
    p.add_argument("--check", action="store_true",
                   help="write nothing: exit 1 with one line if the file is not what this "
                   "command would write")
    p.set_defaults(func=_cmd_port_doc)
    from rig.drive.explore import WORLDS

    p = _add_parser(
        sub, "explore", "bounded exhaustive exploration of a small world: every op "
        "sequence up to a depth, shortest counterexamples",
        "Breadth first over every op of the world with every argument from a finite\n"
        "alphabet (each block-aligned range each way, hot-plug and unplug, a generic\n"
        "listener, device DMA and a guest write on each page), every fault at every\n"
        "fault-site hit within the world's budget and, in the hotplug world, every\n"
        "interleaving of a conversion into a replay; the oracle after every op, as in a\n"
        "campaign.  Sequences that reach the same state (rig.check.statehash) are\n"
        "expanded once.  Per design: the depth fully explored, the distinct states, and\n"
        "no violation up to that depth or a shortest trace per broken invariant (written\n"
        "to --out before it is printed).\n\nworlds:\n"
        + "".join(f"  {w.name:<11}{w.doc}\n" for w in WORLDS.values()),
        epilog=epilog([("rig explore --world tiny --design hardened --depth 4",
                        "prove hardened clean on tiny to depth 4"),
                       ("rig explore --world tiny --depth 3 --json",
                        "every design, shortest counterexamples as JSON")],
                      ok="no violation in any explored sequence",
                      finding="a sequence broke an invariant (its trace is in --out)"))
    p.add_argument("--world", default="tiny", metavar="WORLD",
                   help=f"{one_of(WORLDS)}, or a trace file whose header is the world "
                   "(default tiny)")
    p.add_argument("--design", action="append", metavar="DESIGN",
                   help=f"a design to explore (repeatable; default every design): "
                   f"{one_of(designs)}; a mutant; or path/to/file.py:Class")
    p.add_argument("--depth", type=int, default=3,
                   help="the longest sequence explored (default 3)")
    p.add_argument("--time", type=float, metavar="SECONDS",
                   help="stop a design's search after this long, at the last whole depth")
    p.add_argument("--max-states", type=int, metavar="N",
                   help="stop a design's search once it has seen N distinct states, at the "
                   "last whole depth (the memory bound)")
    p.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1,
                   help="worker processes expanding the frontier (default every core)")
    p.add_argument("--checkpoint", metavar="DIR",
                   help="write each design's search after every depth to DIR (and, with "
                   "--resume, go on from there)")
    p.add_argument("--resume", action="store_true",
                   help="continue from --checkpoint's files where they exist")
    p.add_argument("--out", default="corpora/crashes", metavar="DIR",
                   help="where the shortest counterexamples are written (default "
                   "corpora/crashes)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--backend", choices=BACKENDS, help=PROCESS_BACKEND_HELP)
    _add_load(p)
    p.set_defaults(func=_cmd_explore)
    from rig.drive.sweep import DISTS, PLANS, PROFILES, RECHECK_SHARE, SHAPES

    p = _add_parser(
        sub, "sweep", "fault sweeps over designs x IOMMU backends x guest shapes x fault "
        "plans, through pytest-xdist, with a verdict matrix",
        "A cell is a design, an IOMMU backend, a guest shape and a fault plan (and a\n"
        "slice of the profile's seeds).  It runs the fail_nth sweep of every world trace\n"
        "of corpora/regressions/ and corpora/scenarios/ of its shape, one run per hit of\n"
        "the plan's fault sites (per dma_entry_limit level for the limit plan), then the\n"
        "profile's number of generated traces with the plan's faults seeded; the oracle\n"
        "runs after every op.  One pytest item per cell, spread by pytest-xdist (-n, --tx:\n"
        "several machines, README); a share of the cells runs again in a fresh process\n"
        "and must give the same digest.  The verdict matrix follows (rows designs,\n"
        "columns plans); OUT/sweep.json has every cell and OUT/traces/ one minimized\n"
        "trace per broken invariant.\n\n"
        "profiles:\n" + "".join(f"  {p.name:<9}{p.swarm:,} generated traces per cell "
                                  f"({p.doc})\n" for p in PROFILES.values()) +
        "shapes:\n" + "".join(f"  {s.name:<9}{s.doc}\n" for s in SHAPES.values()) +
        "plans:\n" + "".join(f"  {p.name:<9}{p.doc}\n" for p in PLANS.values()),
        epilog=epilog([("rig sweep --profile ci", "every cell, on every core of this machine"),
                       ("rig sweep --design hardened --plan map --markdown",
                        "one design and plan; the matrix as markdown for a patch discussion"),
                       ("rig sweep --tx socket=10.0.0.2:8888 --tx socket=10.0.0.3:8888",
                        "spread the cells over two hosts running execnet socket servers "
                        "(README)")],
                      ok="no design that promises atomicity broke it",
                      finding="a design that promises atomicity broke it"))
    p.add_argument("--profile", choices=list(PROFILES), default="ci",
                   help="how deep each cell goes (default ci)")
    p.add_argument("--design", action="append", metavar="DESIGN",
                   help=f"a design to sweep (repeatable; default every design): "
                   f"{one_of(designs)}; a mutant (rig list mutants); or one of your own, "
                   "path/to/file.py:Class or pkg.module:Class")
    p.add_argument("--iommu", action="append", choices=IOMMUS,
                   help="an IOMMU backend (repeatable; default both)")
    p.add_argument("--shape", action="append", choices=list(SHAPES),
                   help="a guest shape (repeatable; default every one)")
    p.add_argument("--plan", action="append", choices=list(PLANS),
                   help="a fault plan (repeatable; default every one)")
    p.add_argument("-n", "--jobs", metavar="N",
                   help="pytest-xdist workers on this machine: a number, auto or logical "
                   "(default auto; 0: no xdist, every cell in one process); not with --tx, "
                   "whose gateways are the workers")
    p.add_argument("--dist", choices=DISTS, default="worksteal",
                   help="pytest-xdist's distribution mode (default worksteal)")
    p.add_argument("--tx", action="append", default=[], metavar="SPEC",
                   help="an execnet gateway for pytest-xdist, passed through (repeatable): "
                   "socket=HOST:PORT, ssh=HOST//python=/path/to/.venv/bin/python, ...")
    p.add_argument("--recheck", type=float, default=RECHECK_SHARE, metavar="SHARE",
                   help=f"the share of cells run again in a fresh process to compare "
                   f"digests (default {RECHECK_SHARE}; 0: none)")
    p.add_argument("--out", default="artifacts/sweep", metavar="DIR",
                   help="where sweep.json, cells/ and traces/ go (default artifacts/sweep)")
    p.add_argument("--markdown", action="store_true",
                   help="print the matrix as a markdown table (links relative to --out)")
    p.add_argument("--json", action="store_true",
                   help="print sweep.json's document instead of the table")
    p.add_argument("--backend", choices=BACKENDS, help=PROCESS_BACKEND_HELP)
    p.add_argument("--coverage", action="store_true",
                   help="also print, per fault site, how often the sweep reached and fired it")
    _add_load(p)
    p.set_defaults(func=_cmd_sweep)
    from rig.drive.portcheck import STREAMS_DEFAULT, WORLD_STREAMS_DEFAULT

    p = _add_parser(
        sub, "port-check", "differential test of real C against the rig: a QEMU tree's "
        "state manager, or the rig's hardened port",
        "Builds system/ram-block-attributes.c (and the 2026 system/ram-discard-manager.c\n"
        "where the tree has it) unchanged against the rig's QEMU stub layer, or with\n"
        "--builtin the rig's hardened port (rig/port/), and drives the same seeded op\n"
        "streams through the C and through the rig's core with the matching rollback\n"
        "policy (10.1: none, 2026: sources, the port: full; --against DESIGN: that\n"
        "design's): 1-3 listeners on their own sections, aligned and unaligned\n"
        "conversions and mixtures, failing listeners and replays, and register,\n"
        "unregister and conversions nested inside callbacks.  After every op the return\n"
        "code, the bitmap, the listener list and each listener's ordered notification log\n"
        "must agree.  The C runs in worker processes: a crash or a hang is a divergence.\n"
        "Each divergence class is minimized and written to --out as a core trace.\n"
        "The build is cached by the files' hash ($RIG_PORT_CACHE, default\n"
        "~/.cache/gmem-rig/port).",
        epilog=epilog([("rig port-check --builtin", "the hardened port against hardened "
                        f"({STREAMS_DEFAULT:,} streams)"),
                       ("rig port-check --qemu-src ~/qemu --against hardened",
                        "prove a patched QEMU tree behaves as the design it was fuzzed as"),
                       ("rig port-check --qemu-src ~/qemu --replay corpora/crashes/port-*.trace",
                        "one reproducer through both sides")],
                      ok="the C and the rig agree on every op of every stream",
                      finding="a divergence (each class's reproducer is in --out)"))
    p.add_argument("--qemu-src", metavar="DIR", help="a QEMU source tree (10.1 or later)")
    p.add_argument("--builtin", action="store_true",
                   help="the rig's own hardened port in rig/port/ (what CI checks)")
    p.add_argument("--against", metavar="DESIGN",
                   help=f"compare with this design's rollback policy: {one_of(designs)}")
    p.add_argument("--streams", type=int, default=STREAMS_DEFAULT,
                   help=f"op streams to run (default {STREAMS_DEFAULT:,})")
    p.add_argument("--world-streams", type=int, default=WORLD_STREAMS_DEFAULT, metavar="N",
                   help="with --builtin: conversion streams through the C port of "
                   "kvm_convert_memory against the hardened design on a World (default "
                   f"{WORLD_STREAMS_DEFAULT:,}; 0: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the streams (default 0)")
    p.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1,
                   help="worker processes (default every core)")
    p.add_argument("--out", default="corpora/crashes", metavar="DIR",
                   help="where each divergence's reproducer is written (default "
                   "corpora/crashes)")
    p.add_argument("--replay", metavar="TRACE",
                   help="run one core trace through both sides instead of the streams")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=_cmd_port_check)
    from rig.cli import htmlreport
    from rig.cli.bench import BUGS_RESULTS

    p = _add_parser(
        sub, "report", "one self-contained HTML page: verdict matrix, campaign plots, "
        "findings, bug benchmark",
        "Reads what rig sweep, rig fuzz and rig bench bugs wrote and writes one HTML file\n"
        "that needs nothing else (no network, no script; the plots are inline SVG, the\n"
        "minimized traces are in the page): the machine, commit and date of each input,\n"
        "the sweep's verdict matrix with a link to each broken invariant's trace, each\n"
        "harness' coverage and exec/s over time, the findings with their traces and\n"
        "replay commands, and the bug benchmark's survival curve.  A missing input is\n"
        "said in its section.  The same inputs give the same bytes, but for the report's\n"
        f"date ({htmlreport.DATE_ENV} fixes it).",
        epilog=epilog([("rig report", f"read {htmlreport.DEFAULT_SWEEP}, "
                        f"{htmlreport.DEFAULT_CAMPAIGN} and {BUGS_RESULTS}; write "
                        f"{htmlreport.DEFAULT_OUT}"),
                       ("rig report --sweep out/sweep --campaign art/campaign.json -o r.html",
                        "a sweep's --out folder and a campaign's document, into r.html")],
                      ok="the report was written"))
    p.add_argument("--sweep", metavar="DIR_OR_FILE",
                   help=f"a rig sweep --out folder or its sweep.json (default "
                   f"{htmlreport.DEFAULT_SWEEP})")
    p.add_argument("--campaign", metavar="FILE",
                   help="a campaign's document: rig fuzz writes ARTIFACTS/campaign.json "
                   f"(default {htmlreport.DEFAULT_CAMPAIGN})")
    p.add_argument("--bugs", metavar="FILE",
                   help=f"rig bench bugs' results file (default {BUGS_RESULTS})")
    p.add_argument("-o", "--output", metavar="FILE",
                   help=f"the HTML file to write (default {htmlreport.DEFAULT_OUT})")
    p.set_defaults(func=_cmd_report)
    p = _add_parser(
        sub, "replay", "replay .trace files or raw crash files, op by op",
        "Each op with its result, the faults injected, its state changes and events and\n"
        "the violations the oracle found; then the outcome and how it compares with the\n"
        "trace's # expect: line.  A core trace runs on every implementation of the core\n"
        "side by side.  A file that is not a trace is a raw libFuzzer input, decoded for\n"
        "--harness.",
        epilog=epilog([("rig replay corpora/regressions/*.trace",
                        "every known finding; exit 0 when each is as its # expect: line says"),
                       ("rig replay --harness convert:qemu-10.1 crash-1234",
                        "a raw crash file of the convert harness, decoded on qemu-10.1")],
                      ok="every file is ok or as its # expect: line says",
                      finding="a violation, a VM stop or a core mismatch that a file does not "
                      "expect"))
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="a .trace file (world or core trace), or a raw crash file")
    p.add_argument("--harness", metavar="NAME[:DESIGN]",
                   help="decode raw files with this harness (default convert, on hardened; "
                   f"a world harness takes :DESIGN): {one_of(harnesses)}")
    p.add_argument("--backend", choices=BACKENDS, default="cy", help=BACKEND_HELP)
    p.add_argument("--lenient", action="store_true",
                   help="skip what cannot be parsed (triage) instead of failing")
    p.add_argument("--no-differential", action="store_true",
                   help="do not run the reference model beside the core")
    p.add_argument("--json", action="store_true",
                   help="print the reports as JSON (one object; a list for several files)")
    p.add_argument("--quiet", action="store_true", help="one line per file")
    _add_load(p)
    p.set_defaults(func=_cmd_replay)
    p = _add_parser(
        sub, "minimize", "shrink a failing trace or crash file and add it to the "
        "regression corpus",
        "The minimizer keeps the failure's signature while it drops ops, unfolds\n"
        "interleavings and shrinks arguments and the header; the result is written under\n"
        "--out only once it reproduces 3 times out of 3 in fresh processes.",
        epilog=epilog([("rig minimize crash.trace",
                        "minimize and write corpora/regressions/<signature>-<hash>.trace"),
                       ("rig minimize --harness core_differential --no-write crash-5678",
                        "decode a raw core crash, print its minimized core trace only")],
                      ok="minimized; written, or already known (or printed, --no-write)"))
    p.add_argument("file", metavar="FILE",
                   help="a failing .trace file, or a raw crash file (decoded with --harness)")
    p.add_argument("--out", default="corpora/regressions",
                   help="where to write it (default corpora/regressions)")
    p.add_argument("--harness", metavar="NAME[:DESIGN]",
                   help=f"decode a raw file with this harness: {one_of(harnesses)}")
    p.add_argument("--backend", choices=BACKENDS, default="cy", help=BACKEND_HELP)
    p.add_argument("--lenient", action="store_true",
                   help="skip what cannot be parsed (triage) instead of failing")
    p.add_argument("--no-write", action="store_true",
                   help="print the minimized trace only (no 3/3 check, no file)")
    _add_load(p)
    p.set_defaults(func=_cmd_minimize)
    from rig.drive.campaign import FUZZ_JSON_FIELDS, SMOKE_RUNS_HELP, default_jobs

    p = _add_parser(
        sub, "fuzz", "the main job: a coverage-guided campaign over the fuzz harnesses",
        "Each harness of the campaign runs as libFuzzer workers of the in-package target\n"
        "(python -m rig.drive.target NAME) against the instrumented core, one harness after\n"
        "another, with live progress on stderr.  The campaign triages every crash itself:\n"
        "the regression corpus' signatures and its own earlier findings are known, so one\n"
        "bug is one finding however many inputs, workers and harnesses reach it; each new\n"
        "finding is kept raw in CORPUS_DIR/crashes/, then minimized to a trace.  A harness\n"
        "that ran no input, a worker that died without an artifact, a canary that did not\n"
        "fail: exit 3, one line each.  The summary states each harness' runs and wall time.",
        epilog=epilog([
            ("rig fuzz --time 300", "every default harness against hardened, five minutes "
             "of wall clock in all"),
            ("rig fuzz --design ./mydesign.py:MyDesign --harness convert -- "
             "-use_value_profile=1 -max_len=512",
             "fuzz a design of your own with the convert harness, passing libFuzzer flags"),
        ], ok="nothing new was found", finding="a new finding (one whose signature is not "
            "in the regression corpus)") + "\n\n" + FUZZ_JSON_FIELDS)
    p.add_argument("--time", type=float, default=60.0, metavar="SECONDS",
                   help="wall-clock budget of the whole campaign: set-up (the instrumented "
                   "build, the regression corpus), each harness' start-up, fuzzing, triage "
                   "and minimizing (default 60).  Harnesses share it equally beyond what "
                   "each needs to start; when it is below that, the last harnesses are "
                   "dropped, with a warning")
    p.add_argument("--harness", action="append", metavar="NAME[:DESIGN]",
                   help="a harness to run (repeatable; default the default campaign's, "
                   f"`rig list harnesses`): {one_of(harnesses)}; a world harness takes "
                   ":DESIGN")
    p.add_argument("--design", metavar="DESIGN",
                   help=f"the design the world harnesses fuzz (default hardened): "
                   f"{one_of(designs)}; or one of your own, path/to/file.py:Class or "
                   "pkg.module:Class (docs/your-design.md)")
    p.add_argument("--jobs", type=int, metavar="N",
                   help="libFuzzer workers per harness (default: every core this process "
                   f"may use, {default_jobs()} here).  libFuzzer's -jobs/-workers model: N "
                   "processes on one corpus, each reloading the others' new inputs; the "
                   "campaign starts them itself, so each one's progress, crashes and exit "
                   "reach it, and restarts a worker a finding stopped")
    p.add_argument("--seed", type=int, default=1,
                   help="libFuzzer -seed of the first worker; the n-th worker started gets "
                   "SEED+n (default 1)")
    p.add_argument("--native", choices=("fuzzer", "address", "undefined", "none"),
                   default="fuzzer", help="instrumented core build: fuzzer (coverage, the "
                   "default), address (ASan), undefined (UBSan), or none (the plain gcc "
                   "build: the core fuzzed blind)")
    p.add_argument("--smoke", action="store_true",
                   help="every harness, one worker each, for a fixed number of runs with a "
                   "fixed seed (no --time); the canaries must fail")
    p.add_argument("--runs", type=int, metavar="N",
                   help=f"with --smoke: runs per harness (default {SMOKE_RUNS_HELP})")
    p.add_argument("--corpus-dir", default="corpora", metavar="DIR",
                   help="where each harness' corpus (DIR/NAME/) and the raw findings and "
                   "their traces (DIR/crashes/) go (default corpora)")
    p.add_argument("--artifacts", default="artifacts/fuzz", metavar="DIR",
                   help="the workers' libFuzzer artifacts and the campaign's own files "
                   "(known signatures, measured start-up, dictionaries, campaign.json: the "
                   "--json document, which rig report reads; default artifacts/fuzz)")
    p.add_argument("--no-minimize", action="store_true",
                   help="keep the raw findings only, do not minimize them to traces")
    p.add_argument("--until-kill", metavar="BASE",
                   help="stop at the first new finding whose minimized trace is clean on "
                   "design BASE (it kills the mutant --design names, as rig bench bugs asks); "
                   "each finding is minimized and checked as it is found, in a process "
                   "running the unmutated core, and the JSON says which one killed")
    p.add_argument("--json", action="store_true",
                   help="print the summary as one JSON document on stdout (schema below); "
                   "progress and logs stay on stderr")
    p.add_argument("libfuzzer", nargs="*", metavar="-- -FLAG=VALUE",
                   help="libFuzzer flags for every worker, after -- (-use_value_profile=1, "
                   "-max_len=512, -only_ascii=1, -timeout=5, -dict=FILE, ...); they come "
                   "after the campaign's own, so they win")
    _add_load(p)  # (for --harness NAME:DESIGN with a design of one's own)
    p.set_defaults(func=_cmd_fuzz)
    from rig.cli.listing import SECTIONS

    p = _add_parser(
        sub, "list", "every registry: designs, harnesses, ops, fault sites, invariants, "
        "mutants",
        "Read from the registries themselves: each design with its contract, each fuzz\n"
        "harness with its kind and whether the default campaign runs it, each op with its\n"
        "arguments, each fault site with its errnos, each invariant with its severity,\n"
        "each mutant of the bug benchmark with its base design.",
        epilog=epilog([("rig list harnesses", "the fuzz harnesses only"),
                       ("rig list --json designs ops", "two sections, as JSON")],
                      ok="listed"))
    # Not argparse choices: an empty list (every section) would fail them (Python 3.11).
    p.add_argument("section", nargs="*", metavar="SECTION",
                   help=f"only these sections (default all): {one_of(SECTIONS)}")
    p.add_argument("--json", action="store_true", help="the same as JSON")
    _add_load(p)
    p.set_defaults(func=_cmd_list)
    from rig.cli import bench

    bench.add_parser(sub)
    return parser


def main(argv=None) -> int:
    """The ``rig`` command; ``argv`` None: run as the command (sys.argv), which also
    gives SIGPIPE its default action, so that output cut short by a closed pipe ends
    the process quietly, as it does any other tool's (a caller passing ``argv`` keeps
    its own signal handling)."""
    if argv is None and hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    command = "rig"
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return EXIT_USAGE
        command = " ".join(["rig", args.command] + ([args.suite] if getattr(
            args, "suite", None) else []))  # (rig bench SUITE)
        _load_designs(args)
        ensure_core_for(*_designs_of(args), reexec=argv is None)
        return args.func(args)
    except UsageError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception:  # noqa: BLE001 - the rig's own failure, never a finding
        traceback.print_exc()
        print(f"{command}: internal error of the rig (exit 3)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
