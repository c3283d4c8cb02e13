"""``optscale replay``, ``optscale diagnose`` and ``optscale demo``: the replay harness on the
command line."""

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


def _cmd_diagnose(args: argparse.Namespace) -> int:
    import numpy as np

    from optscale._policy import OptScale0
    from optscale.replay._readers import load_pool

    try:
        pool = load_pool(args.pool, format=args.format, aggregate=args.aggregate)
    except (ValueError, OSError, ImportError) as err:
        print(f"optscale diagnose: {err}", file=sys.stderr)
        return 2
    low = min(0.0, float(np.nanmin(pool.scores)))
    high = max(1.0, float(np.nanmax(pool.scores)))
    mask = np.arange(pool.scores.shape[1])[None, :] < pool.lengths[:, None]
    choice, gof = OptScale0(target=high, low=low, high=high).diagnose(
        np.where(mask, pool.scores, low), mask)
    names = choice.families
    print(f"Score families on {args.pool} ({pool.size} questions; range [{low:g}, {high:g}]; "
          "BIC per question, lower is better; KS p-value of each fitted family, small = the "
          "family does not describe the scores)\n")
    print("| question | scores | chosen | " + " | ".join(f"BIC {f}" for f in names) + " | "
          + " | ".join(f"KS p {f}" for f in names) + " |")
    print("|---|---:|---|" + "---:|" * (2 * len(names)))
    for q in range(pool.size):
        bic = " | ".join(f"{choice.information[i, q]:.1f}" for i in range(len(names)))
        ks = " | ".join(f"{gof[f].pvalue[q]:.2g}" for f in names)
        print(f"| {pool.ids[q]} | {pool.lengths[q]} | {choice.chosen[q]} | {bic} | {ks} |")
    rejected = {f: float(np.mean(gof[f].pvalue < args.alpha)) for f in names}
    counts = {f: choice.chosen.count(f) for f in names}
    print("\nChosen by BIC: " + ", ".join(f"{f} {n}" for f, n in counts.items())
          + f". Rejected by KS at {args.alpha:g}: "
          + ", ".join(f"{f} {100 * r:.0f} %" for f, r in rejected.items()) + ".")
    return 0


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


def _pool_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("pool", help="pool file")
    p.add_argument("--format", default="auto",
                   help="auto (default), jsonl, npz, search-and-learn, ovm, optscale-ref")
    p.add_argument("--aggregate", default="last", choices=("min", "last", "prod", "mean"),
                   help="how per-step PRM scores become one score (default last)")


def add_commands(sub) -> None:
    """Register ``replay``, ``diagnose`` and ``demo`` on the ``optscale`` sub-command parser."""
    p = sub.add_parser("replay", help="evaluate methods on a stored completion pool",
                       description="Replay Best-of-N, self-consistency baselines and OptScale "
                       "policies on a completion pool (optscale JSONL, NPZ, search-and-learn, "
                       "OVM or OptScale-reference format) and write a report.")
    _pool_args(p)
    p.add_argument("--gold", help="benchmark file with gold answers by position (JSON array or "
                   "lines of {problem|question, answer}), for pools that keep them apart, such "
                   "as the OptScale reference's")
    _common(p, "optscale-replay")
    p.set_defaults(func=_cmd_replay)

    p = sub.add_parser("diagnose", help="which score family fits a pool's verifier scores",
                       description="Fit the truncated normal, Beta and two-component mixture to "
                       "every question's scores in a pool and print BIC and the KS goodness of "
                       "fit per family: whether the paper's truncated normal suits this "
                       "verifier, and which family= to give the policies.")
    _pool_args(p)
    p.add_argument("--alpha", type=float, default=0.05,
                   help="KS level for the rejection summary (default 0.05)")
    p.set_defaults(func=_cmd_diagnose)

    p = sub.add_parser("demo", help="replay the built-in simulated pool (no data needed)",
                       description="Generate the calibrated simulated pool (labelled as such), "
                       "replay every method on it and print the table.")
    p.add_argument("--questions", type=int, default=500, help="default 500")
    p.add_argument("--samples", type=int, default=64, help="samples per question (default 64)")
    _common(p, "optscale-demo")
    p.set_defaults(func=_cmd_demo)
