"""The distribution-free exceedance bound: how many more samples, with no model of the score's
shape.

Only S(t) = P(score >= t) matters for "the best of N reaches t". With k of n observed scores at
or above t and a Beta(a, b) prior on S(t), the posterior is Beta(a + k, b + n - k) and

    P(best of N more >= t) = 1 - E[(1 - S)^N] = 1 - B(a + k, b + n - k + N) / B(a + k, b + n - k)

(B the beta function). It grows with N to 1, but only polynomially (like 1 - C N^-(a + k)) when
k is small, so a flat prior with few hits asks for many samples; an informative prior (from a
fitted parametric family or a predictor) is what makes it economical.

NumPy/SciPy in float64 (``betaln`` differences lose absolute accuracy like eps * log-gamma of
the arguments, harmless in float64 up to N ~ 1e12, not in float32). JAX inputs take a jitted path
in their own dtype, where the log ratio is formed without the large log-gammas (see
:func:`log_gamma_ratio`), so float32 keeps ~1e-6 relative accuracy at any N.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import betaln

from optscale._backend import _is_jax_array
from optscale._checks import N_MAX_DEFAULT
from optscale._solution import Solution, Status

__all__ = ["exceedance_min_samples", "exceedance_prob", "log_gamma_ratio"]

_STIRLING_MIN = 10.0


def log_gamma_ratio(xp: Any, y: Any, d: Any) -> Any:
    """log Gamma(y) - log Gamma(y + d) for y > 0, d >= 0, in the namespace ``xp`` (numpy or
    jax.numpy, with ``lgamma`` from its special module).

    For y >= 10 from Stirling's series, where the large terms cancel analytically:
    -(y - 1/2) log1p(d / y) - d log(y + d) + d + r(y) - r(y + d), r the series remainder
    (three terms: 1e-10 relative at y = 10); below, the plain difference (both terms small).
    """
    if xp is np:
        from scipy.special import gammaln as lgamma
    else:
        from jax.scipy.special import gammaln as lgamma
    big = y >= _STIRLING_MIN
    ys = xp.where(big, y, _STIRLING_MIN)

    def r(v):
        inv = 1.0 / v
        inv2 = inv * inv
        return inv * (1.0 / 12.0 - inv2 * (1.0 / 360.0 - inv2 / 1260.0))

    stirling = (-(ys - 0.5) * xp.log1p(d / ys) - d * xp.log(ys + d) + d + r(ys) - r(ys + d))
    yd = xp.where(big, 1.0, y)
    direct = lgamma(yd) - lgamma(yd + d)
    return xp.where(big, stirling, direct)


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
    if any(_is_jax_array(v) for v in (k, n, confidence, a, b)):
        return _jax_min_samples()(k, n, confidence, a, b, int(n_max))
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
    # (0 - expm1: +0, not -0, where nothing is ever met)
    achieved = np.where(valid, 0.0 - np.expm1(_log_miss(alpha, beta, n_star)), np.nan)
    return Solution(n_star.astype(np.int64), status.astype(np.int32), achieved)


def _jax_min_samples():
    import functools

    import jax
    import jax.numpy as jnp

    @functools.partial(jax.jit, static_argnums=5)
    def solve(k, n, confidence, a, b, n_max):
        dtype = jnp.result_type(confidence, a, b, float)
        k, n, c, a, b = jnp.broadcast_arrays(*(jnp.asarray(v, dtype)
                                               for v in (k, n, confidence, a, b)))
        valid = (jnp.isfinite(k) & jnp.isfinite(n) & jnp.isfinite(a) & jnp.isfinite(b)
                 & (k >= 0) & (k <= n) & (a > 0) & (b > 0) & (c > 0) & (c < 1))
        alpha = jnp.where(valid, a + k, 1.0)
        beta = jnp.where(valid, b + n - k, 1.0)
        goal = jnp.log1p(-jnp.where(valid, c, 0.5))

        def log_miss(m):
            # log B(alpha, beta + m) - log B(alpha, beta)
            return (log_gamma_ratio(jnp, beta + m, alpha) - log_gamma_ratio(jnp, beta, alpha))

        feasible = log_miss(jnp.asarray(n_max, dtype)) <= goal

        def body(_, bracket):
            lo, hi = bracket
            mid = jnp.floor(0.5 * (lo + hi))
            ok = log_miss(mid) <= goal
            return jnp.where(ok, lo, mid + 1.0), jnp.where(ok, mid, hi)

        lo = jnp.ones(alpha.shape, dtype)
        hi = jnp.full(alpha.shape, float(n_max), dtype)
        lo, hi = jax.lax.fori_loop(0, int(n_max).bit_length() + 1, body, (lo, hi))
        n_star = jnp.where(valid & feasible, hi, float(n_max))
        status = jnp.where(~valid, Status.INVALID,
                           jnp.where(feasible, Status.OK, Status.INFEASIBLE))
        achieved = jnp.where(valid, 0.0 - jnp.expm1(log_miss(n_star)), jnp.nan)
        return Solution(n_star.astype(jnp.int32), status.astype(jnp.int32), achieved)

    return solve
