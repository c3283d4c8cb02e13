"""Coverage and mean N* per score model on real pools (issue 8's study; the first two rows).

    python benchmarks/exceedance_coverage.py [--data ../shared/data] [--orders 200]
                                             [--target 0.95] [--confidence 0.95]

For every question of the OVM and search-and-learn pools (PRM step scores aggregated by ``min``)
and peek sizes 4, 8, 16: over random sample orders, peek the first scores, compute N* with each
model, and count an order as covered when the best of the next N* samples of the pool reaches
the target. Models: the truncated normal (OptScale^0 plug-in MLE) and the exceedance bound with
a flat Beta(1, 1) prior. The reference is the N* of the question's empirical score distribution
(all its samples). Pools are development data (``../shared/data``), read in place.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from optscale import OptScale0, exceedance_min_samples  # noqa: E402
from optscale.replay import load_pool  # noqa: E402

POOLS = {"OVM GSM8K": ("ovm-gsm8k/llama7b_test_2x500.jsonl", "last"),
         "search-and-learn MATH500": ("search-and-learn-math500/llama3.2-1b_best_of_n_3x256.jsonl",
                                      "min")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..",
                                                       "shared", "data"))
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--confidence", type=float, default=0.95)
    args = parser.parse_args()
    t, c = args.target, args.confidence
    rng = np.random.default_rng(0)
    print("| pool | question | empirical N* | peek | model | coverage | mean N* | N* / empirical |")
    print("|---|---|---:|---:|---|---:|---:|---:|")
    for label, (rel, aggregate) in POOLS.items():
        path = os.path.join(args.data, rel)
        if not os.path.exists(path):
            print(f"| {label} | (not available: {path}) | | | | | | |")
            continue
        pool = load_pool(path, aggregate=aggregate)
        for q in range(pool.size):
            s = pool.scores[q, :pool.lengths[q]]
            hit = (s >= t).mean()
            if hit == 0:
                print(f"| {label} | {pool.ids[q]} | none reach {t} | | | | | |")
                continue
            emp = max(1, int(np.ceil(np.log1p(-c) / np.log1p(-hit)))) if hit < 1 else 1
            for peek in (4, 8, 16):
                cap = len(s) - peek
                perms = np.argsort(rng.random((args.orders, len(s))), axis=1)
                seen, rest = s[perms[:, :peek]], s[perms[:, peek:]]
                policy = OptScale0(target=t, confidence=c, n_peek=peek, n_max=cap,
                                   low=min(0.0, float(s.min())), high=max(1.0, float(s.max())))
                models = {
                    "truncated normal (MLE)": policy.n_star(seen)[0],
                    "exceedance, flat prior": exceedance_min_samples(
                        (seen >= t).sum(axis=1), peek, c, n_max=cap).n,
                }
                for name, n_star in models.items():
                    n_star = np.clip(np.asarray(n_star), 1, cap)
                    best = np.where(np.arange(cap)[None, :] < n_star[:, None], rest,
                                    -np.inf).max(axis=1)
                    print(f"| {label} | {pool.ids[q]} | {emp} | {peek} | {name} | "
                          f"{(best >= t).mean():.3f} | {n_star.mean():.1f} | "
                          f"{n_star.mean() / emp:.1f}x |")


if __name__ == "__main__":
    main()
