"""The distribution-free exceedance bound: how many more samples, with no model of the score's
shape.

Only S(t) = P(score >= t) matters for "the best of N reaches t". With k of n observed scores at
or above t and a Beta(a, b) prior on S(t), the posterior is Beta(a + k, b + n - k) and

    P(best of N more >= t) = 1 - E[(1 - S)^N] = 1 - B(a + k, b + n - k + N) / B(a + k, b + n - k)

(B the beta function). It grows with N to 1, but only polynomially (like 1 - C N^-(a + k)) when
k is small, so a flat prior with few hits asks for many samples; an informative prior (from a
fitted parametric family or a predictor) is what makes it economical.

NumPy/SciPy in float64 (``betaln`` differences lose absolute accuracy like eps * log-gamma of
the arguments, harmless in float64 up to N ~ 1e12, not in float32).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import betaln

from optscale._checks import N_MAX_DEFAULT
from optscale._solution import Solution, Status

__all__ = ["exceedance_min_samples", "exceedance_prob"]


def _log_miss(alpha: np.ndarray, beta: np.ndarray, m: Any) -> np.ndarray:
    """log P(none of m more samples reaches t) = log B(alpha, beta + m) - log B(alpha, beta)."""
    return betaln(alpha, beta + m) - betaln(alpha, beta)


def _valid(k, n, a, b) -> np.ndarray:
    finite = np.isfinite(k) & np.isfinite(n) & np.isfinite(a) & np.isfinite(b)
    with np.errstate(invalid="ignore"):
        return finite & (k >= 0) & (k <= n) & (a > 0) & (b > 0)


def exceedance_prob(k: Any, n: Any, n_more: Any, a: Any = 1.0, b: Any = 1.0) -> np.ndarray:
    """P(the best of ``n_more`` new samples reaches t | ``k`` of ``n`` seen did), with a
    Beta(``a``, ``b``) prior on S(t). Broadcasts; NaN where an argument is out of range
    (0 <= k <= n, n_more >= 0, a, b > 0).

    Example:
        >>> float(exceedance_prob(0, 0, 1))  # flat prior, nothing seen: P(S(t)) averages 1/2
        0.5
    """
    k, n, m, a, b = np.broadcast_arrays(*(np.asarray(x, np.float64) for x in (k, n, n_more, a,
                                                                           b)))
    ok = _valid(k, n, a, b) & np.isfinite(m) & (m >= 0)
    with np.errstate(invalid="ignore"):
        p = -np.expm1(_log_miss(a + k, b + n - k, np.where(ok, m, 0.0)))
    return np.where(ok, p, np.nan)


def exceedance_min_samples(k: Any, n: Any, confidence: Any, a: Any = 1.0, b: Any = 1.0, *,
                           n_max: int = N_MAX_DEFAULT) -> Solution:
    """Smallest N in [1, n_max] with ``exceedance_prob(k, n, N, a, b) >= confidence``.

    Returns a :class:`optscale.Solution` (n, status, achieved): INFEASIBLE with n = n_max when
    even n_max samples fall short, INVALID for out-of-range arguments (0 <= k <= n, a, b > 0,
    0 < confidence < 1). Integer bisection on the monotone log miss probability, so it holds
    the definition exactly in float64: achieved >= confidence at n and < at n - 1.

    Example:
        >>> exceedance_min_samples(3, 8, 0.95).n.item()  # 3 of 8 peeks reached the target
        9
    """
    if not isinstance(n_max, (int, np.integer)) or n_max < 1:
        raise ValueError(f"n_max must be an integer >= 1; got {n_max!r}")
    k, n, c, a, b = np.broadcast_arrays(*(np.asarray(x, np.float64) for x in (k, n, confidence,
                                                                           a, b)))
    with np.errstate(invalid="ignore"):
        valid = _valid(k, n, a, b) & (c > 0) & (c < 1)
    alpha = np.where(valid, a + k, 1.0)
    beta = np.where(valid, b + n - k, 1.0)
    goal = np.log1p(-np.where(valid, c, 0.5))  # log of the allowed miss probability
    feasible = _log_miss(alpha, beta, float(n_max)) <= goal
    lo = np.ones(alpha.shape)
    hi = np.full(alpha.shape, float(n_max))
    for _ in range(int(n_max).bit_length() + 1):  # the answer stays in [lo, hi]
        mid = np.floor(0.5 * (lo + hi))
        ok = _log_miss(alpha, beta, mid) <= goal
        hi = np.where(ok, mid, hi)
        lo = np.where(ok, lo, mid + 1)
    n_star = np.where(valid & feasible, hi, float(n_max))
    status = np.where(~valid, Status.INVALID, np.where(feasible, Status.OK, Status.INFEASIBLE))
    achieved = np.where(valid, -np.expm1(_log_miss(alpha, beta, n_star)), np.nan)
    return Solution(n_star.astype(np.int64), status.astype(np.int32), achieved)
