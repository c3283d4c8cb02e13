"""Coverage of the OptScale bound on synthetic questions with a known truncated normal.

For each question the policy sees ``n_peek`` samples, computes N*, and the coverage is the
probability that the best of N* fresh samples reaches the target, 1 - F_true(t)^N*, averaged
over questions (exact given N*, so the only noise is which questions and peeks were drawn).
Questions are drawn so that the true N* lies around 20-100 (success probability per sample
0.02-0.10 at the target): there the step from N* - 1 to N* moves the success probability by
under a point, so a correct N* covers the nominal confidence to within about a point.
"""

from __future__ import annotations

import numpy as np

import optscale

TARGET = 0.9
CONFIDENCE = 0.9


def questions(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mu_all, sigma_all = [], []
    while sum(len(m) for m in mu_all) < count:
        mu, sigma = rng.uniform(0.4, 0.95, 4 * count), rng.uniform(0.05, 0.25, 4 * count)
        s = np.exp(np.asarray(optscale.TruncatedNormal(mu, sigma).logsf(TARGET)))
        keep = (s >= 0.02) & (s <= 0.10)
        mu_all.append(mu[keep])
        sigma_all.append(sigma[keep])
    return np.concatenate(mu_all)[:count], np.concatenate(sigma_all)[:count]


def coverage(policy: optscale.OptScale, mu: np.ndarray, sigma: np.ndarray, seed: int):
    """(mean coverage, its standard error, mean N*) of ``policy`` on these questions."""
    rng = np.random.default_rng(seed)
    truth = optscale.TruncatedNormal(mu, sigma)
    peek = np.asarray(truth.sample(rng, (policy.n_peek,)), np.float64).T
    n_star, _ = policy.n_star(peek)
    log_f = np.asarray(truth.logcdf(TARGET), np.float64)
    cov = -np.expm1(n_star * log_f)
    return cov.mean(), cov.std() / np.sqrt(len(cov)), n_star.mean()


def oracle(mu: np.ndarray, sigma: np.ndarray):
    """Coverage and mean N* with the true parameters."""
    truth = optscale.TruncatedNormal(mu, sigma)
    n = np.asarray(optscale.min_samples(truth, TARGET, CONFIDENCE, n_max=10_000).n)
    cov = -np.expm1(n * np.asarray(truth.logcdf(TARGET), np.float64))
    return cov.mean(), cov.std() / np.sqrt(len(cov)), n.mean()


def table(count: int = 4000, seed: int = 0, peeks=(3, 4, 5, 8, 16, 64, 256)) -> list[tuple]:
    """Rows (rule, n_peek, coverage, 2 standard errors, mean N*)."""
    mu, sigma = questions(count, seed)
    rows = [("oracle (true parameters)", None, *oracle(mu, sigma))]
    for n_peek in peeks:
        for predictive in (False, True):
            policy = optscale.OptScale0(TARGET, CONFIDENCE, n_peek=n_peek, n_max=10_000,
                                        predictive=predictive)
            mean, se, n = coverage(policy, mu, sigma, seed + n_peek)
            rows.append(("posterior-predictive" if predictive else "plug-in", n_peek, mean,
                         se, n))
    return rows
