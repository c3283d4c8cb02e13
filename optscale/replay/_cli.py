"""``optscale replay`` and ``optscale demo``: the replay harness on the command line."""

from __future__ import annotations

import argparse
import sys
import time

from optscale.replay._methods import DEFAULT_METHODS, Method, standard_methods
from optscale.replay._protocol import evaluate
from optscale.replay._report import markdown_summary, write_report

__all__ = ["add_commands"]

def _methods(arg: str, budgets: list[int]) -> list[Method]:
    known = standard_methods(budgets)
    keys = [k.strip().lower() for k in arg.split(",") if k.strip()]
    unknown = [k for k in keys if k not in known]
    if unknown or not keys:
        raise SystemExit(f"optscale: --methods takes a comma-separated list of "
                         f"{', '.join(known)}; got {arg!r}")
    if "bon" not in keys:
        keys.insert(0, "bon")  # every setting is chosen against Best-of-N: it always runs
    return [known[k] for k in dict.fromkeys(keys)]


def _run(pool, methods: list[Method], args, title: str, appendix: str = "") -> int:
    start = time.perf_counter()
    ev = evaluate(pool, methods, orders=args.orders, folds=args.folds, seed=args.seed,
                  tolerance=args.tolerance, verifier_tokens=args.verifier_tokens,
                  progress=not args.quiet)
    elapsed = time.perf_counter() - start
    print(markdown_summary(ev, title))
    written = write_report(ev, args.out, title)
    if appendix:
        with open(written[0], "a") as fh:  # report.md
            fh.write(appendix)
    print(f"Replayed {pool.size} questions x {args.orders} orders, {len(ev.settings)} settings "
          f"in {elapsed:.1f} s; wrote {', '.join(written)}", file=sys.stderr)
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from optscale.replay._readers import load_pool

    methods = _methods(args.methods, args.budgets)
    try:
        pool = load_pool(args.pool, format=args.format, aggregate=args.aggregate,
                         questions=args.gold)
    except (ValueError, OSError, ImportError) as err:
        print(f"optscale replay: {err}", file=sys.stderr)
        return 2
    if pool.correct is None:
        print(f"optscale replay: {args.pool} has no correctness labels and no gold answers "
              "to grade against", file=sys.stderr)
        return 2
    return _run(pool, methods, args, f"Replay of {args.pool}")


def _cmd_demo(args: argparse.Namespace) -> int:
    from optscale.replay._simulate import calibration_table, simulate_pool

    methods = _methods(args.methods, args.budgets)
    pool = simulate_pool(args.questions, args.samples, seed=args.seed)
    appendix = ("\n## Simulator calibration (target: published statistics; achieved: a "
                "40,000-question simulated pool)\n\n```\n" + calibration_table() + "\n```\n")
    return _run(pool, methods, args, "optscale demo: simulated MATH500-like pool", appendix)


def _common(p: argparse.ArgumentParser, out: str) -> None:
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help=f"comma-separated, from {', '.join(standard_methods())} (default: all "
                   "but optscale0-seq; bon always runs)")
    p.add_argument("--budgets", type=lambda s: [int(x) for x in s.split(",")],
                   default=[8, 16, 32, 64], help="maximum samples per question to compare at "
                   "(default 8,16,32,64)")
    p.add_argument("--orders", type=int, default=20, help="random sample orders (default 20)")
    p.add_argument("--folds", type=int, default=5, help="calibration folds (default 5)")
    p.add_argument("--tolerance", type=float, default=0.0,
                   help="accuracy a chosen setting may give up against BoN on the calibration "
                   "folds (default 0)")
    p.add_argument("--verifier-tokens", dest="verifier_tokens", type=float, default=0.0,
                   help="cost of scoring one sample in output-token equivalents, charged to "
                   "methods that use the verifier (default 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=out, help=f"output folder (default {out})")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def add_commands(sub) -> None:
    """Register ``replay`` and ``demo`` on the ``optscale`` sub-command parser."""
    p = sub.add_parser("replay", help="evaluate methods on a stored completion pool",
                       description="Replay Best-of-N, self-consistency baselines and OptScale "
                       "policies on a completion pool (optscale JSONL, NPZ, search-and-learn, "
                       "OVM or OptScale-reference format) and write a report.")
    p.add_argument("pool", help="pool file")
    p.add_argument("--format", default="auto",
                   help="auto (default), jsonl, npz, search-and-learn, ovm, optscale-ref")
    p.add_argument("--aggregate", default="last", choices=("min", "last", "prod", "mean"),
                   help="how per-step PRM scores become one score (default last)")
    p.add_argument("--gold", help="benchmark file with gold answers by position (JSON array or "
                   "lines of {problem|question, answer}), for pools that keep them apart, such "
                   "as the OptScale reference's")
    _common(p, "optscale-replay")
    p.set_defaults(func=_cmd_replay)

    p = sub.add_parser("demo", help="replay the built-in simulated pool (no data needed)",
                       description="Generate the calibrated simulated pool (labelled as such), "
                       "replay every method on it and print the table.")
    p.add_argument("--questions", type=int, default=500, help="default 500")
    p.add_argument("--samples", type=int, default=64, help="samples per question (default 64)")
    _common(p, "optscale-demo")
    p.set_defaults(func=_cmd_demo)
