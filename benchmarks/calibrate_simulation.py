"""Fit the simulated default pool (``optscale/replay/_simulate.py``) to published statistics.

``python benchmarks/calibrate_simulation.py [--data ../shared/data/optscale-ref]``

Reads the OptScale reference's published numbers (never shipped with the project), fits the
model's constants by Nelder-Mead over Monte Carlo losses with common random numbers (fixed
seeds), validates on an independent pool, and prints the constants and the target-vs-achieved
table to paste into ``_simulate.py``. Three stages, because the statistics separate:

1. scores (5 constants) to the quantiles of per-problem PRM score mean and std (MATH train);
2. correctness and answers (6 constants) to MATH500 Best-of-N accuracy at N = 1..64 and
   majority-vote accuracy at N = 4, 16, 64 (N = 1 is the same number as BoN at N = 1), with
   the BoN accuracy taken as the expected correctness of the selected sample (smooth in the
   constants) and a weak prior on the solve-logit spread (the curves alone cannot tell a wide
   spread with a sharp verifier from a moderate one with a softer verifier);
3. the token scale to the mean output tokens per sample over all 64 samples.

Runs in about two and a half minutes on two cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import sys
import time

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, logit, ndtri
from scipy.stats import qmc

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from optscale.replay import _simulate as sim  # noqa: E402

DEFAULT_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                            "optscale-ref")
LEVELS = sim.MOMENT_LEVELS
WIDTH = 64
N_PUBLISHED = 500  # MATH500: sets the standard error of each published accuracy
SPREAD_PRIOR = (4.0, 0.5)  # logit_sd ~ logNormal(log 4, 0.5): the weak prior of stage 2


def load_targets(data: str) -> dict[str, float]:
    """The calibration targets, by the statistic names of ``_simulate._statistics``."""
    with open(os.path.join(data, "train_score_stats.json")) as f:
        stats = json.load(f)
    means = np.array([v["mean"] for v in stats.values()])
    stds = np.array([v["std"] for v in stats.values()])
    with open(os.path.join(data, "results", "MATH500_BoN_results.json")) as f:
        bon = {row["N"]: row for row in json.load(f)}
    with open(os.path.join(data, "results", "MATH500_maj_vote_results.json")) as f:
        maj = json.load(f)  # a list: row i is N = i + 1
    targets = {f"score_mean_q{lv:02d}": float(x)
               for lv, x in zip(LEVELS, np.percentile(means, LEVELS), strict=True)}
    targets |= {f"score_std_q{lv:02d}": float(x)
                for lv, x in zip(LEVELS, np.percentile(stds, LEVELS), strict=True)}
    targets |= {f"bon_acc_{n}": float(bon[n]["accuracy"]) for n in sim.BON_NS}
    targets |= {f"maj_acc_{n}": float(maj[n - 1]["accuracy"]) for n in sim.MAJ_NS}
    # BoN at N = 64 uses every sample, so its token count / 64 is the mean over all samples.
    targets["tokens_per_sample"] = float(bon[WIDTH]["token_count"]) / WIDTH
    return targets


def _draws(seed: int, n_questions: int, params: sim.SimulationParams) -> sim._Draws:
    """Random inputs whose per-question normals are scrambled Sobol points (quasi Monte Carlo).

    The question-level draws dominate the Monte Carlo error of every target; low-discrepancy
    points cut it several-fold, so the fit does not chase one sample's luck.
    """
    draws = sim._draw(np.random.default_rng(seed), n_questions, WIDTH, params.n_distractors)
    points = qmc.Sobol(4, seed=seed).random(n_questions)
    z, e, eta, xi = ndtri(np.clip(points, 1e-12, 1 - 1e-12)).T[:, :, None]
    return draws._replace(z=z, e=e, eta=eta, xi=xi)


def _nelder_mead(loss, x0, starts: int, rng: np.random.Generator, max_fev: int) -> np.ndarray:
    """Best of ``starts`` Nelder-Mead runs (the first from x0, the others jittered), polished."""
    best = None
    for i in range(starts):
        x = np.asarray(x0, float) + (0 if i == 0 else 0.3 * rng.standard_normal(len(x0)))
        r = minimize(loss, x, method="Nelder-Mead",
                     options={"maxfev": max_fev, "xatol": 1e-4, "fatol": 1e-6, "adaptive": True})
        if best is None or r.fun < best.fun:
            best = r
    # A restart from the best point escapes Nelder-Mead's premature simplex collapse.
    r = minimize(loss, best.x, method="Nelder-Mead",
                 options={"maxfev": max_fev, "xatol": 1e-5, "fatol": 1e-7, "adaptive": True})
    return r.x if r.fun <= best.fun else best.x


def fit_scores(targets: dict[str, float], params: sim.SimulationParams,
               n_questions: int = 4096) -> sim.SimulationParams:
    draws = _draws(101, n_questions, params)
    t_mean = np.array([targets[f"score_mean_q{lv:02d}"] for lv in LEVELS])
    t_std = np.array([targets[f"score_std_q{lv:02d}"] for lv in LEVELS])

    def unpack(x):
        return dataclasses.replace(params, score_mu=x[0], score_mu_slope=x[1],
                                   score_log_sigma=x[2], score_log_sigma_slope=x[3],
                                   score_log_sigma_noise=x[4])

    def loss(x):
        p = unpack(x)
        mu, sigma = sim._score_params(p, draws)
        q_mean, q_std = sim._moment_quantiles(sim._tn_icdf(mu, sigma, draws.u))
        # Relative errors: distance of the mean below 1, and the std, on log scales; the means
        # weigh double because a truncated normal cannot reach most published stds anyway.
        return float(2 * np.sum((np.log1p(-q_mean) - np.log1p(-t_mean)) ** 2)
                     + np.sum((np.log(q_std) - np.log(t_std)) ** 2))

    x0 = [params.score_mu, params.score_mu_slope, params.score_log_sigma,
          params.score_log_sigma_slope, params.score_log_sigma_noise]
    return unpack(_nelder_mead(loss, x0, 2, np.random.default_rng(1), 1500))


def fit_answers(targets: dict[str, float], params: sim.SimulationParams,
                n_questions: int = 8192) -> sim.SimulationParams:
    draws = _draws(102, n_questions, params)
    mu, sigma = sim._score_params(params, draws)
    scores = sim._tn_icdf(mu, sigma, draws.u)
    rows = np.arange(n_questions)
    picks = [np.argmax(scores[:, :n], axis=1) for n in sim.BON_NS]
    maj_ns = sim.MAJ_NS[1:]
    t_bon = np.array([targets[f"bon_acc_{n}"] for n in sim.BON_NS])
    t_maj = np.array([targets[f"maj_acc_{n}"] for n in maj_ns])
    se_bon = np.sqrt(t_bon * (1 - t_bon) / N_PUBLISHED)
    se_maj = np.sqrt(t_maj * (1 - t_maj) / N_PUBLISHED)
    zero = np.zeros(n_questions, np.int64)
    n_codes = params.n_distractors + 1

    def unpack(x):
        return dataclasses.replace(params, logit_mean=x[0], logit_sd=float(np.exp(x[1])),
                                   logit_corr=float(np.tanh(x[2])),
                                   verifier_slope=float(np.exp(x[3])),
                                   distractor_decay=float(expit(x[4])), verifier_cap=x[5])

    def loss(x):
        p = unpack(x)
        pc = sim._p_correct(p, draws)
        bon = np.array([pc[rows, k].mean() for k in picks])
        index = sim._answer_index(p, draws, draws.v < pc)
        maj = sim._majority_accuracy(index, zero, n_codes, maj_ns)
        prior = (np.log(p.logit_sd / SPREAD_PRIOR[0]) / SPREAD_PRIOR[1]) ** 2
        return float(np.sum(((bon - t_bon) / se_bon) ** 2)
                     + np.sum(((maj - t_maj) / se_maj) ** 2) + prior)

    x0 = [params.logit_mean, np.log(params.logit_sd), np.arctanh(params.logit_corr),
          np.log(params.verifier_slope), logit(params.distractor_decay), params.verifier_cap]
    return unpack(_nelder_mead(loss, x0, 2, np.random.default_rng(2), 1200))


def fit_tokens(targets: dict[str, float], params: sim.SimulationParams,
               n_questions: int = 32768) -> sim.SimulationParams:
    draws = _draws(103, n_questions, params)
    correct = draws.v < sim._p_correct(params, draws)
    for _ in range(6):  # the mean scales as exp(tokens_log_mean) up to the cap: a fixed point
        mean = sim._tokens(params, draws, correct).mean()
        params = dataclasses.replace(params, tokens_log_mean=params.tokens_log_mean
                                     + float(np.log(targets["tokens_per_sample"] / mean)))
    return params


def validate(params: sim.SimulationParams, n_questions: int = 40000, n_small: int = 2000,
             repeats: int = 24) -> tuple[dict[str, float], dict[str, float]]:
    """Statistics on an independent large pool, and their SD over pools of ``n_small``."""
    n_codes = params.n_distractors + 1

    def stats(seed, q):
        draws = sim._draw(np.random.default_rng(seed), q, WIDTH, params.n_distractors)
        return sim._statistics(sim._generate(params, draws), n_codes)

    big = stats(104, n_questions)
    small = [stats(1000 + i, n_small) for i in range(repeats)]
    sd = {k: float(np.std([s[k] for s in small], ddof=1)) for k in big}
    return big, sd


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help="the optscale-ref folder")
    args = parser.parse_args()
    t0 = time.perf_counter()
    targets = load_targets(args.data)
    params = sim.CALIBRATION
    params = fit_scores(targets, params)
    print(f"# scores fitted ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    params = fit_answers(targets, params)
    print(f"# answers fitted ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    params = fit_tokens(targets, params)
    achieved, sd = validate(params)
    print(f"# validated ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)

    fitted = ("score_mu", "score_mu_slope", "score_log_sigma", "score_log_sigma_slope",
              "score_log_sigma_noise", "logit_mean", "logit_sd", "logit_corr",
              "verifier_slope", "verifier_cap", "distractor_decay", "tokens_log_mean")
    today = datetime.date.today().isoformat()
    print(f'CALIBRATION_DATE = "{today}"')
    print("CALIBRATION = SimulationParams(")
    for name in fitted:
        print(f"    {name}={_fmt(getattr(params, name))},")
    print(")")
    print("CALIBRATION_TARGETS: dict[str, CalibrationTarget] = {")
    for name, target in targets.items():
        print(f'    "{name}": CalibrationTarget({_fmt(target)}, {_fmt(achieved[name])}, '
              f"{sd[name]:.3g}),")
    print("}")
    print()
    print(f"{'statistic':<18} {'target':>10} {'achieved':>10} {'MC sd Q=2000':>13}")
    for name, target in targets.items():
        print(f"{name:<18} {target:>10.4f} {achieved[name]:>10.4f} {sd[name]:>13.4f}")


if __name__ == "__main__":
    main()
