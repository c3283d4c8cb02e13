"""The solvers and order statistics for any :class:`~optscale._family.ScoreDistribution`.

The same rules as the truncated normal's (:mod:`optscale._solve`, :mod:`optscale._reference`),
written once against an :class:`~optscale._family.Xp` namespace: best of N by the exact closed
form on log F, k of N by bisection on the binomial lower tail, expected best by bisection on the
quadrature of the bisection quantile, cost-aware by the discrete derivative. JAX inputs run
jitted in their dtype; NumPy inputs run in float64 and come back in the inputs' dtype.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from optscale._checks import any_invalid
from optscale._family import ScoreDistribution, Xp, namespace
from optscale._solution import Solution, Status

__all__ = ["best_of_n_prob", "best_of_n_quantile", "cost_aware_samples", "expected_best",
           "k_of_n_prob", "min_samples"]

_KINDS = ("best", "k", "expected", "cost")


def _solve(xp: Xp, dist: ScoreDistribution, target, extra, k, n_min, n_max, *, kind: str):
    """Solution arrays (n, status, achieved) for one of the criteria in ``_KINDS``; ``extra``
    is the confidence (best, k), the cost (cost) or unused (expected)."""
    n = xp.np
    dtype = target.dtype
    shape = n.broadcast_shapes(dist.batch_shape, n.shape(target), n.shape(extra), n.shape(k),
                               n.shape(n_min), n.shape(n_max))
    checks = dict(target=target, k=k, n_min=n_min, n_max=n_max)
    if kind in ("best", "k"):
        checks["confidence"] = extra
    elif kind == "cost":
        checks["cost"] = extra
    invalid = dist._invalid(xp) | any_invalid(n, **checks)
    trivial = target <= dist.low
    n_lo = n.where(invalid, 1, n_min).astype(dtype)
    n_hi = n.where(invalid, 1, n_max).astype(dtype)
    kf = n.where(invalid, 1, k).astype(dtype)
    log_f, log_s = dist._log_cdf_sf_impl(xp, n.where(n.isnan(target), 0.5, target))
    never = ~(log_f < 0.0)  # F(target) == 1 in working precision (or invalid)
    lf = n.where(never | trivial | invalid, -1.0, log_f)
    ls = n.where(invalid | n.isnan(log_s), -1.0, log_s)
    n_trivial, n_infeasible = n_lo, n_hi

    def best_achieved(m):
        return n.where(trivial, 1.0, -n.expm1(m * n.where(never, 0.0, lf)))

    if kind in ("best", "cost"):
        if kind == "best":
            bound = n.log1p(-n.where(invalid, 0.5, extra))
        else:  # g(n+1) - g(n) = F^n S - cost: the smallest n >= 0 with n log F <= log(cost/S)
            bound = n.log(n.where(invalid, 1.0, extra)) - ls
            n_infeasible = n.where(never, n_lo, n_hi)
        m = xp.ceil_exact(lf, bound)
        infeasible = never | (m > n_hi)
        achieved = best_achieved
    elif kind == "k":
        log1mc = n.log1p(-n.where(invalid, 0.5, extra))

        def lower_tail(m):
            return xp.log_binom_lower(ls, lf, m, kf)

        def cond(m):
            return lower_tail(m) <= log1mc

        lo = n.maximum(n.maximum(n.minimum(xp.ceil_exact(lf, log1mc), n_hi + 1.0), kf), n_lo)
        ell = -log1mc
        need = (kf - 1.0) + ell + n.sqrt(ell * ell + 2.0 * ell * (kf - 1.0))
        chernoff = n.ceil(need * n.exp(-ls)) + 1.0  # Chernoff bound on the answer
        hi = n.where(kf <= 1, lo, n.minimum(n.maximum(chernoff, lo), n_hi))
        ok_hi = cond(hi)
        retry = ~ok_hi & (hi < n_hi)
        hi = n.where(retry, n_hi, hi)
        ok_hi = n.where(retry, cond(hi), ok_hi)
        infeasible = never | ~ok_hi | (lo > n_hi)
        done = invalid | trivial | infeasible
        m = xp.bisect(cond, n.where(done, hi, lo), hi, shape)
        n_trivial = n.maximum(kf, n_lo)

        def achieved(m):
            # F(target) == 1: nobody reaches the target (lf is only a placeholder there)
            p = n.where(never, 0.0, -n.expm1(lower_tail(m)))
            return n.where(trivial & (m >= kf), 1.0, p)
    else:  # expected best of n >= target
        t = n.where(invalid | n.isnan(target), 0.5, target)

        def cond(m):
            return dist._expected_best_impl(xp, m) >= t

        hi = n.broadcast_to(n_hi, shape)
        infeasible = (target >= dist.high) | ~cond(hi)
        done = invalid | trivial | infeasible
        m = xp.bisect(cond, n.where(done, hi, n_lo), hi, shape)

        def achieved(m):
            return dist._expected_best_impl(xp, m)

    infeasible = infeasible & ~trivial
    status = n.where(invalid, Status.INVALID, n.where(
        trivial, Status.TRIVIAL, n.where(infeasible, Status.INFEASIBLE, Status.OK)))
    m = n.where(trivial, n_trivial, n.where(infeasible, n_infeasible, m))
    m = n.clip(m, n_lo, n_hi)
    m = n.broadcast_to(n.where(invalid, n.asarray(n_max, dtype), m), shape)
    got = achieved(m)
    got = n.where(invalid | (got == 0.0), 0.0, got)  # (+0: -expm1(0) is -0)
    return (m.astype(n.int32), n.broadcast_to(status, shape).astype(n.int32),
            n.broadcast_to(got, shape).astype(dtype))


@functools.cache
def _jitted_solve():
    import jax

    from optscale._family import _jax_xp

    def run(dist, target, extra, k, n_min, n_max, kind):
        xp = _jax_xp()
        return _solve(xp, dist._cast(xp, target.dtype), target, extra, k, n_min, n_max,
                      kind=kind)

    return jax.jit(run, static_argnames=("kind",))


def _run(dist, target, extra, k, n_min, n_max, kind) -> Solution:
    xp = namespace(dist, target, extra, k, n_min, n_max)
    dtype = dist._dtype(xp, target, *(() if extra is None else (extra,)))
    extra = 0.5 if extra is None else extra
    if xp.is_jax:
        jnp = xp.np
        cast = lambda v: jnp.asarray(v, dtype)  # noqa: E731
        out = _jitted_solve()(dist, cast(target), cast(extra), jnp.asarray(k, jnp.int32),
                              jnp.asarray(n_min, jnp.int32), jnp.asarray(n_max, jnp.int32),
                              kind)
        return Solution(*out)
    f64 = lambda v: np.asarray(v, np.float64)  # noqa: E731
    with np.errstate(all="ignore"):
        n, status, achieved = _solve(xp, dist._cast(xp, np.float64), f64(target), f64(extra),
                                     np.asarray(k, np.int64), np.asarray(n_min, np.int64),
                                     np.asarray(n_max, np.int64), kind=kind)
    return Solution(n, status, achieved.astype(dtype))


def min_samples(dist: ScoreDistribution, target: Any, confidence: Any, *, k: Any,
                criterion: str, n_min: Any, n_max: Any) -> Solution:
    """See :func:`optscale.min_samples` (arguments already checked there)."""
    if criterion == "expected":
        return _run(dist, target, None, 1, n_min, n_max, "expected")
    closed = isinstance(k, int) and not isinstance(k, bool) and k == 1
    return _run(dist, target, confidence, k, n_min, n_max, "best" if closed else "k")


def cost_aware_samples(dist: ScoreDistribution, target: Any, cost: Any, *, n_min: Any,
                       n_max: Any) -> Solution:
    """See :func:`optscale.cost_aware_samples`."""
    return _run(dist, target, cost, 1, n_min, n_max, "cost")


def best_of_n_prob(dist: ScoreDistribution, target: Any, n: Any) -> Any:
    """1 - F(target)^n from log F."""
    log_f = dist.logcdf(target)
    xp = namespace(log_f)
    x = xp.np
    # (an invalid element's NaN would reach n's derivative through the product)
    ok = ~x.isnan(log_f)
    return x.where(ok, -x.expm1(x.asarray(n, log_f.dtype) * x.where(ok, log_f, -1.0)), x.nan)


def k_of_n_prob(dist: ScoreDistribution, target: Any, n: Any, k: Any) -> Any:
    """P(at least k of n >= target) = I_S(k, n - k + 1): the complement of the lower tail
    where that is small, the incomplete beta where the probability itself is small."""
    log_f, log_s = dist.log_cdf_sf(target)
    xp = namespace(log_f)
    x = xp.np
    dtype = log_f.dtype
    n, k = x.asarray(n, dtype), x.asarray(k, dtype)
    lower = xp.log_binom_lower(log_s, log_f, n, k)
    upper = xp.sp.betainc(k, x.maximum(n - k + 1.0, 1.0), x.exp(log_s))
    p = x.where(lower < -np.log(2.0), -x.expm1(lower), upper)
    return x.where(n < k, 0.0, p).astype(dtype)


def best_of_n_quantile(dist: ScoreDistribution, q: Any, n: Any) -> Any:
    """F^-1(q^(1/n)) with q^(1/n) kept in log space."""
    xp = namespace(dist, q, n)
    x = xp.np
    q = x.asarray(q, dist._dtype(xp, q))
    with np.errstate(divide="ignore", invalid="ignore"):
        log_q = x.where((q >= 0) & (q <= 1), x.log(q), x.nan) / x.asarray(n, q.dtype)
    return dist.icdf_log(log_q)


def expected_best(dist: ScoreDistribution, n: Any) -> Any:
    """E[best of n] by the clustered 32-node Gauss-Legendre rule on the quantile."""
    return dist._eval("expected_best", n)
