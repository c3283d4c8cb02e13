"""What wins where: tuned policies against every baseline on the real pools, held out.

    python benchmarks/correct_answers.py [--data ../shared/data] [--orders 20] [--folds 5]
                                         [--seeds 8] [--kept-apart POOL.jsonl]

For each pool (real ones first; the simulated pool last) it runs the standard method grids
under the honest protocol (settings chosen on calibration folds, reported on held-out ones,
R random orders) and prints:

1. the baselines' held-out numbers at budgets 8/16/32/64 (Best-of-N, votes, ESC/ASC/DSC,
   OptScale^0), and the tuned policy's held-out numbers for a range of token budgets (its
   frontier: ``tune --token-budget T``, each fold choosing on the others);
2. the frontier check: for every baseline point, the tuned procedure given that point's mean
   tokens as its budget (held out), and by how much the baseline is more accurate (the
   issue's bound: 0.5 points);
3. transfer: a policy tuned on one half of the questions (``--token-budget``), replayed as it
   is on the other half, against its own reported held-out accuracy and spread;
4. last-letters: ESC (window 5, at most 40 samples) against ESC's published procedure;
5. with ``--seeds S``: HumanEval dev's point at <= 1,200 tokens and the frontier check for S
   seeds (each seed draws other sample orders *and* another split into folds), their mean and
   spread, beside the best all-question accuracy of any single setting at <= 1,200 tokens (the
   ceiling a selection could reach if it were never fooled by noise);
6. with ``--kept-apart POOL``: the same tables on HumanEval problems nobody tuned on, and the
   policy tuned on all of the dev pool (<= 1,200 tokens) replayed as it is on them.

Nothing here is in the test run: it needs ``../shared/data`` and takes a few minutes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from optscale import ESC, FixedN, Selection  # noqa: E402
from optscale.replay import (  # noqa: E402
    DEFAULT_METHODS,
    PolicyMethod,
    evaluate,
    load_pool,
    simulate_pool,
    standard_methods,
)
from optscale.replay._tune import Objective, choose  # noqa: E402

TUNE_BUDGETS = (4, 8, 12, 16, 20, 24, 28, 32, 48, 64)
BASELINES = ("BoN", "SC", "Weighted SC", "ESC", "ASC", "DSC", "OptScale^0")


def methods(pool):
    ms = standard_methods(TUNE_BUDGETS)
    keys = [k for k in DEFAULT_METHODS if k != "optscalet" or pool.prior is not None]
    return [ms[k] for k in keys]


def baseline_points(ev, budgets=(8, 16, 32, 64)):
    out = []
    for s in ev.selected:
        if s.method in BASELINES and s.budget in budgets:
            out.append((s.method, s.budget, s.accuracy, s.accuracy_std, s.cost))
    return out


def frontier(ev, pool, costs, seed):
    points = []
    for c in costs:
        r = choose(ev, Objective("budget", c), pool, seed=seed)
        cost = r.heldout[ev.cost_name]
        points.append((c, r.heldout["accuracy"], r.heldout["accuracy_std"], cost, r))
    return points


def section(name, pool, args, costs, ev=None):
    start = time.perf_counter()
    ev = ev or evaluate(pool, methods(pool), orders=args.orders, folds=args.folds,
                        seed=args.seed)
    cost = ev.cost_name
    print(f"\n## {name}: {pool.size} questions x up to {int(pool.lengths.max())} samples, "
          f"{len(ev.settings)} settings, {time.perf_counter() - start:.0f} s\n")
    front = frontier(ev, pool, costs, args.seed)
    print(f"| tuned for {cost} <= | held-out accuracy % (std) | {cost} | chosen on all |")
    print("|---:|---:|---:|---|")
    for c, acc, std, spent, r in front:
        print(f"| {c:,.0f} | {100 * acc:.1f} ({100 * std:.1f}) | {spent:,.0f} | "
              f"{r.method}: {r.setting} |")
    print(f"\n| baseline | budget | held-out accuracy % (std) | {cost} | tuned for <= its "
          f"{cost}: accuracy % ({cost}) | baseline better by |")
    print("|---|---:|---:|---:|---:|---:|")
    check = frontier_check(ev, pool, args.seed)
    for method, budget, acc, std, spent, best, used in check:
        print(f"| {method} | {budget} | {100 * acc:.1f} ({100 * std:.1f}) | {spent:,.0f} | "
              f"{100 * best:.1f} ({used:,.0f}) | {100 * (acc - best):+.1f} pt |")
    print(f"\nLargest baseline advantage at no more {cost}: {100 * worst_margin(check):+.1f} "
          "points (the issue's bound: +0.5).")
    return ev


def frontier_check(ev, pool, seed):
    """Per baseline point: the tuned procedure given the baseline's own cost as its budget,
    held out."""
    out = []
    for method, budget, acc, std, spent in baseline_points(ev):
        r = choose(ev, Objective("budget", spent), pool, seed=seed)
        out.append((method, budget, acc, std, spent, r.heldout["accuracy"],
                    r.heldout[ev.cost_name]))
    return out


def worst_margin(check):
    return max(acc - best for _, _, acc, _, _, best, _ in check)


def ceiling(ev, budget):
    """The best all-question accuracy of one setting within ``budget`` (trained settings:
    their held-out numbers): what a selection that noise never fooled would reach."""
    cost = (ev.tokens if ev.has_tokens else ev.n_used).mean(axis=(1, 2))
    return float(ev.correct.mean(axis=(1, 2))[cost <= budget].max())


def across_seeds(pool, args, budget=1200):
    """The point at ``budget`` and the frontier check for ``args.seeds`` seeds (other orders
    and another fold split each)."""
    rows = []
    for seed in range(args.seeds):
        ev = evaluate(pool, methods(pool), orders=args.orders, folds=args.folds, seed=seed)
        r = choose(ev, Objective("budget", budget), pool, seed=seed)
        rows.append((seed, r.heldout["accuracy"], r.heldout["accuracy_std"],
                     r.heldout[ev.cost_name], ceiling(ev, budget),
                     worst_margin(frontier_check(ev, pool, seed))))
    print(f"\n| seed | held-out accuracy % at <= {budget:,} {ev.cost_name} (std over orders) | "
          f"{ev.cost_name} | best single setting in sample % | largest baseline advantage |")
    print("|---:|---:|---:|---:|---:|")
    for seed, acc, std, spent, top, worst in rows:
        print(f"| {seed} | {100 * acc:.2f} ({100 * std:.1f}) | {spent:,.0f} | {100 * top:.2f} | "
              f"{100 * worst:+.2f} pt |")
    acc, top, worst = (np.array([r[i] for r in rows]) for i in (1, 4, 5))
    print(f"| mean (sd over seeds) | {100 * acc.mean():.2f} ({100 * acc.std():.2f}) | | "
          f"{100 * top.mean():.2f} ({100 * top.std():.2f}) | {100 * worst.mean():+.2f} "
          f"({100 * worst.std():.2f}) |")


def carried_over(dev, kept, args, budget=1200):
    """The policy tuned on all of ``dev`` for ``budget``, replayed as it is on ``kept``."""
    ev = evaluate(dev, methods(dev), orders=args.orders, folds=args.folds, seed=args.seed)
    r = choose(ev, Objective("budget", budget), dev, seed=args.seed)
    got = evaluate(kept, [PolicyMethod("tuned", r.policy), PolicyMethod("wsc", FixedN(
        r.policy.n_max, Selection("weighted")))], orders=args.orders, folds=args.folds,
        seed=args.seed + 1)
    tuned, wsc = got.selected
    se = got.correct[0].mean(axis=1).std() / np.sqrt(kept.size)
    print(f"\n**Tuned on all of the dev pool, replayed on the kept-apart problems**: "
          f"{r.policy.describe()} (dev held out: {100 * r.heldout['accuracy']:.1f} % at "
          f"{r.heldout[ev.cost_name]:,.0f} {ev.cost_name}): {100 * tuned.accuracy:.1f} % "
          f"(std {100 * tuned.accuracy_std:.1f} across orders, s.e. {100 * se:.1f} over "
          f"questions) at {tuned.cost:,.0f} {ev.cost_name}; a fixed weighted vote of its "
          f"{r.policy.n_max} samples there: {100 * wsc.accuracy:.1f} % at {wsc.cost:,.0f}.")


def transfer(name, pool, args, budget):
    half_a = pool.subset(np.arange(pool.size)[0::2])
    half_b = pool.subset(np.arange(pool.size)[1::2])
    ev = evaluate(half_a, methods(half_a), orders=args.orders, folds=args.folds,
                  seed=args.seed)
    r = choose(ev, Objective("budget", budget), half_a, seed=args.seed)
    fixed = evaluate(half_b, [PolicyMethod("tuned", r.policy)], orders=args.orders,
                     folds=min(args.folds, half_b.size), seed=args.seed + 1)
    got = fixed.selected[0]
    held = r.heldout
    se_b = fixed.correct[0].mean(axis=1).std() / np.sqrt(half_b.size)
    spread = 2 * np.hypot(held["accuracy_se_questions"], se_b)
    inside = abs(got.accuracy - held["accuracy"]) <= spread
    base = {}
    for half, tag in ((half_a, "even"), (half_b, "odd")):
        wsc = evaluate(half, [PolicyMethod("wsc", FixedN(r.policy.n_max, Selection(
            "weighted")))], orders=args.orders, folds=2, seed=args.seed)
        base[tag] = wsc.selected[0].accuracy
    print(f"\n**Transfer ({name})**: tuned on the even questions for {ev.cost_name} <= "
          f"{budget:,.0f}: {r.policy.describe()}; held out there "
          f"{100 * held['accuracy']:.1f} % (std {100 * held['accuracy_std']:.1f} across "
          f"orders, s.e. {100 * held['accuracy_se_questions']:.1f} over questions) at "
          f"{held[ev.cost_name]:,.0f} {ev.cost_name}. Replayed as it is on the odd questions: "
          f"{100 * got.accuracy:.1f} % (std {100 * got.accuracy_std:.1f}, s.e. "
          f"{100 * se_b:.1f}) at {got.cost:,.0f} {ev.cost_name}: the difference is "
          f"{'within' if inside else 'OUTSIDE'} two standard errors of the two halves "
          f"({100 * spread:.1f} points). Against a fixed weighted vote of the same budget "
          f"({r.policy.n_max} samples): {100 * (held['accuracy'] - base['even']):+.1f} points "
          f"on the even half (held out), {100 * (got.accuracy - base['odd']):+.1f} on the odd.")


def last_letters(path, args):
    pool = load_pool(path)
    ev = evaluate(pool, [PolicyMethod("SC", FixedN(40, Selection("vote"))),
                         PolicyMethod("ESC", ESC(5, 40))], orders=50, folds=args.folds,
                  seed=args.seed)
    esc = next(s for s in ev.selected if s.method == "ESC")
    sc = next(s for s in ev.selected if s.method == "SC")
    print(f"\n**Last letters (ESC's GPT-3.5 pool)**: ESC window 5, at most 40 samples, 50 "
          f"orders: {100 * esc.accuracy:.2f} % at {esc.samples:.2f} samples (ESC's own "
          f"procedure: 83.15 % at 8.82); majority of 40: {100 * sc.accuracy:.2f} % (83.2).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..",
                                                       "shared", "data"))
    parser.add_argument("--orders", type=int, default=20)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=0,
                        help="also HumanEval dev's point at <= 1,200 tokens for this many seeds")
    parser.add_argument("--kept-apart", help="a pool of HumanEval problems nobody tuned on")
    args = parser.parse_args()
    data = args.data
    he = os.path.join(data, "humaneval-codegen16b", "humaneval_codegen16b_dev_82x100.jsonl")
    ll = os.path.join(data, "last-letters-gpt35", "last_letters_gpt35_500x40.jsonl")
    if os.path.exists(he):
        pool = load_pool(he)
        section("HumanEval dev (CodeGen-16B, CodeT-style verifier)", pool, args,
                (200, 300, 400, 600, 900, 1200, 1800, 2500, 3500))
        transfer("HumanEval dev", pool, args, 1200)
        if args.seeds:
            across_seeds(pool, args)
        if args.kept_apart:
            kept = load_pool(args.kept_apart)
            section("HumanEval kept apart (nobody tuned on these)", kept, args,
                    (200, 300, 400, 600, 900, 1200, 1800, 2500, 3500))
            carried_over(pool, kept, args)
    if os.path.exists(ll):
        last_letters(ll, args)
        section("Last letters (GPT-3.5, no verifier)", load_pool(ll), args,
                (50, 100, 150, 200, 300, 500))
    sim = simulate_pool(500, 64, seed=0)
    section("Simulated MATH500-like pool (SIMULATED)", sim, args,
            (3000, 6000, 9000, 12000, 20000, 40000))
    transfer("simulated", sim, args, 9000)


if __name__ == "__main__":
    main()
