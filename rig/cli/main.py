"""The ``rig`` command line.

Exit codes, the same for every subcommand (docs/semantics.md 4.1): 0 ok, 1 usage or input
error, 2 a violation (a finding), 3 an internal error of the rig itself.
"""

from __future__ import annotations

import argparse
import sys
import traceback

import rig
from rig.errors import EXIT_FINDING, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, UsageError


class _Parser(argparse.ArgumentParser):
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


def _cmd_sweep(args) -> int:
    """fail_nth sweeps over designs x IOMMU backends x scenarios, with a verdict table."""
    import json

    from rig.drive import sweep
    from rig.trace.corpus import scenarios as corpus_scenarios
    from rig.world.designs import DESIGNS

    SCENARIOS = corpus_scenarios()
    for name, known, what in ((args.design, DESIGNS, "design"),
                              (args.scenario, SCENARIOS, "scenario")):
        for value in name or ():
            if value not in known:
                raise UsageError(f"--{what} {value!r}: not one of {', '.join(known)}")
    designs = args.design or list(DESIGNS)
    scenarios = args.scenario or list(SCENARIOS)
    iommus = args.iommu or ["type1", "iommufd"]
    rows, coverage, broken = [], {}, []
    for design, iommu, scenario, result in sweep.matrix(designs, iommus, scenarios, args.backend):
        rows.append({"design": design, "iommu": iommu, "scenario": scenario,
                     "runs": len(result.runs), "verdict": sweep.verdict(result),
                     "findings": dict(result.findings)})
        for site, (reached, fired) in result.coverage().items():
            a, b = coverage.get(site, (0, 0))
            coverage[site] = (a + reached, b + fired)
        if DESIGNS[design].atomic and result.failures():
            broken.append(f"{design}/{iommu}/{scenario}")
    if args.json:
        print(json.dumps({"cells": rows, "coverage": coverage, "broken": broken}, indent=1))
    else:
        print(f"fail_nth sweep: backend={args.backend} designs={','.join(designs)} "
              f"iommu={','.join(iommus)} scenarios={','.join(scenarios)}")
        width = max(len(f"{r['design']} {r['iommu']} {r['scenario']}") for r in rows)
        for r in rows:
            cell = f"{r['design']} {r['iommu']} {r['scenario']}"
            print(f"{cell:<{width}}  runs={r['runs']:<4} {r['verdict']}")
        print(f"{len(rows)} cells, {sum(r['runs'] for r in rows)} faulted runs")
        if args.coverage:
            print()
            print(sweep.coverage_table(coverage))
        if broken:
            print(f"BROKEN PROMISE (atomic design with violations): {', '.join(broken)}")
    return EXIT_FINDING if broken else EXIT_OK


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
    from rig.trace import minimize
    from rig.cli import replay
    from rig.trace.format import TraceError, serialize

    try:
        loaded = replay.load_input(args.file, args.harness, strict=not args.lenient)
    except TraceError as exc:
        print(f"rig minimize: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if loaded.core is not None:
        return _minimize_core(args, loaded)
    if loaded.trace is None:
        raise UsageError(f"{args.file}: harness {loaded.harness} does not decode to a trace: "
                         "nothing to minimize (rig replay shows it)")
    try:
        m = minimize.Minimizer(loaded.trace, args.backend, log=lambda msg: print(f"  {msg}"))
    except ValueError as exc:
        raise UsageError(f"{args.file}: {exc}") from None
    print(f"minimize: {args.file}: {len(loaded.trace.ops)} ops, target {m.target}")
    m.minimize()
    trace = minimize.finalize(m, len(loaded.trace.ops))
    text = serialize(trace)
    print(text, end="")
    if args.no_write:
        return EXIT_OK
    if not minimize.reproduces_in_fresh_processes(text, 3, args.backend):
        print("rig minimize: the minimized trace did not reproduce 3/3 in fresh processes: "
              "nondeterminism in the rig", file=sys.stderr)
        return EXIT_INTERNAL
    path, created = minimize.write(trace, args.out)
    print(f"{'wrote' if created else 'already known'}: {path}")
    print(f"replay: rig replay {path}")
    return EXIT_OK


def _minimize_core(args, loaded) -> int:
    """``rig minimize`` of a core trace (or a raw input of a core harness): the core
    minimizer, then the same 3/3 check and corpus write as for a world trace."""
    from rig.check.differential import impls_for
    from rig.trace import core, minimize

    try:
        m = core.CoreMinimizer(loaded.core, impls_for(args.backend))
    except ValueError as exc:
        raise UsageError(f"{args.file}: {exc}") from None
    print(f"minimize: {args.file}: {len(loaded.core.ops)} ops, target {m.target}")
    m.minimize()
    trace = core.finalize(m, len(loaded.core.ops))
    text = core.serialize(trace)
    print(text, end="")
    if args.no_write:
        return EXIT_OK
    if not minimize.reproduces_in_fresh_processes(text, 3, args.backend):
        print("rig minimize: the minimized trace did not reproduce 3/3 in fresh processes: "
              "nondeterminism in the rig", file=sys.stderr)
        return EXIT_INTERNAL
    path, created = core.write(trace, args.out)
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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rig", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"gmem-rig {rig.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    p = sub.add_parser("selftest", help="differential check of the core backends vs the model")
    p.add_argument("--seed", type=int, default=0, help="seed of the op streams (default 0)")
    p.add_argument("--ops", type=int, default=400, help="ops per configuration (default 400)")
    p.set_defaults(func=_cmd_selftest)
    p = sub.add_parser("designs", help="each design's contract and its verdict on the "
                       "seed sequence and a 2nd-listener populate failure")
    p.add_argument("--markdown", action="store_true", help="print docs/designs.md")
    p.add_argument("--backend", choices=("cy", "pure"), default="cy")
    p.set_defaults(func=_cmd_designs)
    p = sub.add_parser("sweep", help="fail_nth fault sweeps over designs x backends x "
                       "scenarios; exit 2 if a design that promises atomicity breaks")
    p.add_argument("--design", action="append", help="design (repeatable; default all)")
    p.add_argument("--iommu", action="append", choices=("type1", "iommufd"))
    p.add_argument("--scenario", action="append", help="scenario (repeatable; default all)")
    p.add_argument("--backend", choices=("cy", "pure"), default="cy")
    p.add_argument("--coverage", action="store_true", help="print per-site reached/fired")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_sweep)
    p = sub.add_parser("replay", help="replay .trace files or raw crash files, op by op")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--harness", help="decode raw files with this harness (default convert, "
                   "whose design is hardened; NAME:DESIGN picks another)")
    p.add_argument("--backend", choices=("cy", "pure"), default="cy")
    p.add_argument("--lenient", action="store_true",
                   help="skip what cannot be parsed (triage) instead of failing")
    p.add_argument("--no-differential", action="store_true",
                   help="do not run the reference model beside the core")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true", help="one line per file")
    p.set_defaults(func=_cmd_replay)
    p = sub.add_parser("minimize", help="shrink a failing trace or crash file and add it "
                       "to the regression corpus")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--out", default="corpora/regressions",
                   help="where to write it (default corpora/regressions)")
    p.add_argument("--harness", help="decode a raw file with this harness (NAME[:DESIGN])")
    p.add_argument("--backend", choices=("cy", "pure"), default="cy")
    p.add_argument("--lenient", action="store_true")
    p.add_argument("--no-write", action="store_true",
                   help="print the minimized trace only (no 3/3 check, no file)")
    p.set_defaults(func=_cmd_minimize)
    p = sub.add_parser("fuzz", help="the main job: a coverage-guided campaign over the fuzz "
                       "harnesses (exit 2 on a finding)")
    p.add_argument("--time", type=float, default=60.0,
                   help="total time budget in seconds, split over the harnesses (default 60)")
    p.add_argument("--harness", action="append",
                   help="harness (repeatable; NAME:DESIGN fixes a world harness' design)")
    p.add_argument("--design", help="design for the world harnesses (default hardened)")
    p.add_argument("--jobs", type=int, default=1,
                   help="libFuzzer -fork=N processes per harness (default 1)")
    p.add_argument("--seed", type=int, default=1, help="libFuzzer -seed (default 1)")
    p.add_argument("--native", choices=("fuzzer", "address", "undefined", "none"),
                   default="fuzzer", help="instrumented core build (default fuzzer; none: "
                   "plain gcc build, the core fuzzed blind)")
    p.add_argument("--smoke", action="store_true",
                   help="every harness for a fixed small number of runs with a fixed seed; "
                   "the canaries must fail")
    p.add_argument("--runs", type=int, help="with --smoke: runs per harness")
    p.add_argument("--corpus-dir", default="corpora", help="corpora root (default corpora)")
    p.add_argument("--artifacts", default="artifacts/fuzz",
                   help="libFuzzer artifact folder (default artifacts/fuzz)")
    p.add_argument("--no-minimize", action="store_true", help="keep raw findings only")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_fuzz)
    p = sub.add_parser("list", help="every registry: designs, harnesses, ops, fault sites "
                       "(with their errnos), invariants (with their severity)")
    p.add_argument("section", nargs="*", metavar="SECTION",
                   help="only these (designs, harnesses, ops, fault_sites, invariants)")
    p.add_argument("--json", action="store_true", help="the same as JSON")
    p.set_defaults(func=_cmd_list)
    from rig.cli import bench

    bench.add_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"rig {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERNAL
    except Exception:  # noqa: BLE001 - the rig's own failure, never a finding
        traceback.print_exc()
        print(f"rig {args.command}: internal error of the rig (exit 3)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
