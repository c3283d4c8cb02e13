"""Benchmark workload and the alternatives optscale is compared with."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from scipy import stats

SIZE = 1_000_000
GRID_QUERIES = 1_000
GRID_N_MAX = 64  # the budget cap of the reference implementation's experiments


def queries(size: int = SIZE, seed: int = 0) -> dict[str, np.ndarray]:
    """Per-question score models like the MATH PRM statistics (mean 0.81-0.99, std 0.02-0.13),
    targets near the top of the range and a spread of confidences."""
    rng = np.random.default_rng(seed)
    return dict(mu=rng.uniform(0.6, 1.1, size), sigma=10 ** rng.uniform(-1.7, -0.5, size),
                target=rng.uniform(0.9, 0.99, size), confidence=rng.uniform(0.5, 0.99, size))


def scipy_closed_form(q: dict[str, np.ndarray], n_max: int = 65536) -> np.ndarray:
    """The same closed form with scipy.stats.truncnorm for log F (one vectorised call)."""
    mu, sigma = q["mu"], q["sigma"]
    log_f = stats.truncnorm.logcdf(q["target"], -mu / sigma, (1 - mu) / sigma, loc=mu,
                                   scale=sigma)
    with np.errstate(divide="ignore"):
        n = np.ceil(np.log1p(-q["confidence"]) / log_f)
    return np.clip(np.nan_to_num(n, nan=n_max, posinf=n_max), 1, n_max).astype(np.int64)


def everyday(size: int = SIZE, seed: int = 0) -> dict[str, np.ndarray]:
    """The issue's everyday queries: mu 0.3-1, sigma 0.02-0.3, target = confidence = 0.95."""
    rng = np.random.default_rng(seed)
    return dict(mu=rng.uniform(0.3, 1.0, size), sigma=rng.uniform(0.02, 0.3, size),
                target=np.full(size, 0.95), confidence=np.full(size, 0.95))


def tail_heavy(size: int = 200_000, seed: int = 1) -> dict[str, np.ndarray]:
    """Where the plain closed form goes wrong: mu outside the range as often as inside, small
    sigma, targets close to the upper bound, confidences up to 1 - 1e-6."""
    rng = np.random.default_rng(seed)
    return dict(mu=rng.uniform(-0.5, 1.5, size), sigma=10 ** rng.uniform(-3, -1, size),
                target=1 - 10 ** rng.uniform(-5, -1, size),
                confidence=1 - 10 ** rng.uniform(-6, -0.3, size))


def naive_numpy(q: dict[str, np.ndarray], n_max: int = 65536) -> np.ndarray:
    """What a user writes instead: the closed form from scipy.special.ndtr differences."""
    from scipy.special import ndtr

    mu, sigma = q["mu"], q["sigma"]
    a, b, z = -mu / sigma, (1 - mu) / sigma, (q["target"] - mu) / sigma
    pa = ndtr(a)
    with np.errstate(all="ignore"):
        n = np.ceil(np.log1p(-q["confidence"]) / np.log((ndtr(z) - pa) / (ndtr(b) - pa)))
    return np.clip(np.nan_to_num(n, nan=n_max, posinf=n_max, neginf=n_max), 1,
                   n_max).astype(np.int32)


def naive_jax(n_max: int = 65536):
    """The same five lines under jax.jit (float32 unless x64 is on)."""
    import jax
    import jax.numpy as jnp
    from jax.scipy.special import ndtr

    @jax.jit
    def solve(mu, sigma, target, confidence):
        a, b, z = -mu / sigma, (1 - mu) / sigma, (target - mu) / sigma
        pa = ndtr(a)
        n = jnp.ceil(jnp.log1p(-confidence) / jnp.log((ndtr(z) - pa) / (ndtr(b) - pa)))
        return jnp.clip(jnp.nan_to_num(n, nan=n_max, posinf=n_max, neginf=n_max), 1,
                        n_max).astype(jnp.int32)

    return solve


_GRID = np.linspace(0.0, 1.0, 1000)


def grid_method(mu: float, sigma: float, target: float, confidence: float,
                n_max: int = GRID_N_MAX) -> int:
    """The reference implementation's search, re-implemented from its description: for
    N = 1, 2, ... rebuild the best-of-N density N f F^(N-1) on a 1,000-point grid of [0, 1],
    integrate it by a cumulative sum, read off its (1 - confidence) quantile, and stop at the
    first N whose quantile reaches the target (n_max if none does)."""
    a, b = -mu / sigma, (1 - mu) / sigma
    mass = stats.norm.cdf(b) - stats.norm.cdf(a)
    p = 1.0 - confidence
    step = _GRID[1] - _GRID[0]
    for n in range(1, n_max + 1):
        pdf = stats.norm.pdf(_GRID, mu, sigma) / mass
        cdf = (stats.norm.cdf((_GRID - mu) / sigma) - stats.norm.cdf(a)) / mass
        density = n * pdf * np.power(cdf, n - 1)
        cum = np.cumsum(density) * step
        cum = cum / cum[-1]
        idx = min(int(np.searchsorted(cum, p)), len(_GRID) - 1)
        if _GRID[idx] >= target:
            return n
    return n_max


def first_and_best(fn: Callable[[], object], repeats: int = 5) -> tuple[float, float]:
    """(seconds of the first call, which includes any compilation; best of `repeats` after)."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    return first, best_time(fn, repeats, warm=False)


def best_time(fn: Callable[[], object], repeats: int = 5, warm: bool = True) -> float:
    """Seconds of the fastest of `repeats` calls, after one warm-up call (JIT compilation)."""
    if warm:
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


FIT_QUESTIONS = 100_000
FIT_SCORES = 16
LBFGSB_QUESTIONS = 200


def fit_problems(questions: int = FIT_QUESTIONS, scores: int = FIT_SCORES,
                 seed: int = 1) -> np.ndarray:
    """[questions, scores] verifier scores drawn from per-question truncated normals."""
    rng = np.random.default_rng(seed)
    mu = rng.uniform(0.6, 1.1, questions)
    sigma = 10 ** rng.uniform(-1.5, -0.5, questions)
    ref = stats.truncnorm(-mu / sigma, (1 - mu) / sigma, loc=mu, scale=sigma)
    return ref.rvs(size=(scores, questions), random_state=rng).T.copy()


def lbfgsb_fit(x: np.ndarray) -> tuple[float, float, float]:
    """The obvious alternative: scipy L-BFGS-B on the truncated-normal NLL of one question."""
    from scipy import optimize

    def nll(p):
        mu, sigma = p
        return -np.sum(stats.truncnorm.logpdf(x, -mu / sigma, (1 - mu) / sigma, loc=mu,
                                              scale=sigma))

    r = optimize.minimize(nll, (x.mean(), max(x.std(), 1e-2)), method="L-BFGS-B",
                          bounds=[(-1.0, 2.0), (1e-3, 10.0)])
    return r.x[0], r.x[1], r.fun


REPLAY_QUESTIONS = 10_000
REPLAY_BUDGETS = (8, 16, 32, 64)


def replay_pool(questions: int = REPLAY_QUESTIONS, samples: int = 64):
    """The replay benchmark's pool: the built-in simulated pool."""
    from optscale.replay._simulate import simulate_pool

    return simulate_pool(questions, samples, seed=0)


def replay_methods():
    """48 settings: BoN, SC, weighted SC (4 budgets each), ESC and ASC (2 x 4), DSC (4),
    OptScale^0 one-shot (2 targets x 2 confidences x 4 budgets)."""
    from optscale import ASC, DSC, ESC, FixedN, OptScale0, Selection
    from optscale.replay import PolicyMethod

    b = {"n_max": REPLAY_BUDGETS}
    return [PolicyMethod("BoN", FixedN(), b),
            PolicyMethod("SC", FixedN(selection=Selection("vote")), b),
            PolicyMethod("Weighted SC", FixedN(selection=Selection("weighted")), b),
            PolicyMethod("ESC", ESC(), {"window": (2, 4), **b}),
            PolicyMethod("ASC", ASC(), {"threshold": (0.9, 0.95), **b}),
            PolicyMethod("DSC", DSC(window=2), b),
            PolicyMethod("OptScale^0", OptScale0(target=0.9),
                         {"target": (0.9, 0.95), "confidence": (0.8, 0.9), **b})]


def online_replay(method, rows):
    """Every setting of ``method`` driven through its online ``start`` / ``update``, one row
    at a time: the per-question loop the vectorised replay is compared with."""
    return [p.replay(rows.scores, rows.answers, rows.lengths, rows.tokens, rows.prior)
            for p in method.policies]
