"""Coverage and mean N* per score family on real pools (issue 8's study).

    python benchmarks/exceedance_coverage.py [--data ../shared/data] [--orders 200]
                                             [--target 0.95] [--confidence 0.95]

For every question of the OVM and search-and-learn pools (PRM step scores aggregated by ``min``)
and peek sizes 4, 8, 16, over random sample orders: peek at the first scores, let a one-shot
OptScale policy of each family decide the total N* (the peek counts; the exceedance model stops
at the peek when a peek score already reached the target), and count the order as covered when
the best of its first N* samples reaches the target. The reference is the N* of the question's
empirical score distribution (all its samples): ceil(log(1 - c) / log(1 - hit rate)); the
"oracle" row uses it with the same stop at the peek, so its mean N* is what knowing the
distribution would cost under the same rule.

Families: truncated normal, Beta, two-component mixture and "auto" (BIC per question), all by
maximum likelihood on the peek; the exceedance model with a flat Beta(1, 1) prior; and two
calibrated variants whose prior comes from other questions (the OVM train file for the OVM
pool, the other questions for search-and-learn): the exceedance model with a Beta prior on
S(t) of mean the calibration questions' hit rate, worth 4 samples, and the mixture MAP with the
mixture fitted to the pooled calibration scores as its prior (worth 4 samples). Every model
stops at the peek when a peek score already reached the target (``stop_on_target``). Pools
are development data (``../shared/data``), read in place.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from optscale import OptScale0, OptScaleT, fit_family  # noqa: E402
from optscale.replay import load_pool  # noqa: E402

POOLS = {
    "OVM GSM8K": ("ovm-gsm8k/llama7b_test_2x500.jsonl", "last",
                  "ovm-gsm8k/llama7b_train_2x100.jsonl"),
    "search-and-learn MATH500": ("search-and-learn-math500/llama3.2-1b_best_of_n_3x256.jsonl",
                                 "min", None),
}


STRENGTH = 4.0  # pseudo-samples a calibrated prior is worth (the policies' prior_strength)


def _scores(pool) -> list[np.ndarray]:
    return [np.clip(pool.scores[q, :pool.lengths[q]], 0.0, 1.0) for q in range(pool.size)]


def calibration_priors(calibration: list[np.ndarray], target: float) -> dict:
    """The exceedance prior (a, b) and the mixture prior from calibration questions."""
    # S(t) prior: the calibration questions' mean hit rate, worth STRENGTH pseudo-samples. (An
    # empirical-Bayes Beta over their hit rates needs more than two or three questions: from
    # OVM's train pair, 0.88 and 0.04, it is U-shaped and says "k = 0 means S ~ 0".)
    rate = float(np.clip(np.mean([(s >= target).mean() for s in calibration]), 0.02, 0.98))
    mix = fit_family("mixture", np.concatenate(calibration))
    return {"exceedance": (STRENGTH * rate, STRENGTH * (1.0 - rate)),
            "mixture": tuple(float(np.asarray(p)) for p in mix.dist.params()[:5])}


def models(target: float, confidence: float, peek: int, cap: int, priors: dict | None):
    base = OptScale0(target=target, confidence=confidence, n_peek=peek, n_max=cap)
    out: dict = {"oracle (empirical N*)": (None, None)}
    out |= {name: (dataclasses.replace(base, family=fam), None) for name, fam in (
        ("truncated normal", "truncnorm"), ("Beta", "beta"), ("mixture", "mixture"),
        ("auto (BIC)", "auto"), ("exceedance, flat prior", "exceedance"))}
    if priors is not None:
        t_base = OptScaleT(target=target, confidence=confidence, n_peek=peek, n_max=cap)
        out["exceedance, calibrated prior"] = (
            dataclasses.replace(t_base, family="exceedance"), priors["exceedance"])
        out["mixture MAP, calibrated prior"] = (
            dataclasses.replace(t_base, family="mixture"), priors["mixture"])
    return out


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
    print("| pool | question | empirical N* | peek | model | coverage | mean N* | "
          "N* / empirical |")
    print("|---|---|---:|---:|---|---:|---:|---:|")
    for label, (rel, aggregate, calib_rel) in POOLS.items():
        path = os.path.join(args.data, rel)
        if not os.path.exists(path):
            print(f"| {label} | (not available: {path}) | | | | | | |")
            continue
        pool = load_pool(path, aggregate=aggregate)
        questions = _scores(pool)
        external = None
        if calib_rel is not None:
            external = _scores(load_pool(os.path.join(args.data, calib_rel),
                                         aggregate=aggregate))
        for q, s in enumerate(questions):
            hit = (s >= t).mean()
            if hit == 0:
                print(f"| {label} | {pool.ids[q]} | none reach {t} | | | | | |")
                continue
            emp = max(1, int(np.ceil(np.log1p(-c) / np.log1p(-hit)))) if hit < 1 else 1
            calibration = external if external is not None else \
                [x for j, x in enumerate(questions) if j != q]
            priors = calibration_priors(calibration, t)
            for peek in (4, 8, 16):
                cap = len(s)
                perms = np.argsort(rng.random((args.orders, len(s))), axis=1)
                ordered = s[perms]
                for name, (policy, prior) in models(t, c, peek, cap, priors).items():
                    if policy is None:  # the oracle: the empirical N*, same stop at the peek
                        n_star = np.full(args.orders, emp)
                    else:
                        prior_b = None if prior is None else tuple(
                            np.full(args.orders, v) for v in prior)
                        n_star, _ = policy.n_star(ordered[:, :peek], prior=prior_b)
                    # every model stops at the peek once a peek score reached the target
                    # (stop_on_target; the exceedance model does so by itself)
                    hit_in_peek = (ordered[:, :peek] >= t).any(axis=1)
                    n_star = np.where(hit_in_peek, peek, np.clip(np.maximum(n_star, peek), 1,
                                                                  cap))
                    best = np.where(np.arange(cap)[None, :] < n_star[:, None], ordered,
                                    -np.inf).max(axis=1)
                    print(f"| {label} | {pool.ids[q]} | {emp} | {peek} | {name} | "
                          f"{(best >= t).mean():.3f} | {n_star.mean():.1f} | "
                          f"{n_star.mean() / emp:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
