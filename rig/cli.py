"""The ``rig`` command line.

Exit codes, the same for every subcommand (DESIGN.md 4.1): 0 ok, 1 usage or input error,
2 a violation (a finding), 3 an internal error of the rig itself.
"""

from __future__ import annotations

import argparse
import sys
import traceback

import rig

EXIT_OK = 0
EXIT_USAGE = 1
EXIT_FINDING = 2
EXIT_INTERNAL = 3


class UsageError(Exception):
    """Bad flags or input: printed as one line, exit 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse exits 2 by default; 2 means "finding" here
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _cmd_selftest(args) -> int:
    """Short differential check: Cython core vs pure-Python twin vs reference model."""
    import random

    from rig import differential
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
    from rig import report

    print(report.markdown(args.backend) if args.markdown else report.text(args.backend))
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
    from rig import bench

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
