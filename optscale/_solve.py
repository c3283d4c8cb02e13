"""The minimal-N solvers in JAX: closed form for best-of-N, bisection for k-of-N and expected best,
and the cost-aware optimum. jit-compiled, batch-first, vmap-safe; results carry a status code.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from optscale import _order_stats as os_
from optscale import _truncnorm as tn
from optscale._checks import N_MAX_DEFAULT, any_invalid
from optscale._solution import Solution, Status

__all__ = ["N_MAX_DEFAULT", "cost_aware_samples", "min_samples"]



def _ceil_exact(log_f, log_bound):
    """Smallest integer n >= 0 with n * log_f <= log_bound, for log_f < 0.

    ceil of the ratio, then one step either way so the inequality holds exactly as evaluated in
    this precision (the ratio itself rounds). The right side is formed before the product so
    no fused multiply-add can round it differently from a plain evaluation.
    """
    n = jnp.maximum(jnp.ceil(log_bound / log_f), 0.0)
    n = jnp.where(n * log_f > log_bound, n + 1.0, n)
    n = jnp.where((n >= 1.0) & ((n - 1.0) * log_f <= log_bound), n - 1.0, n)
    return n


def _bisect(cond, lo, hi, shape):
    """Smallest n in [lo, hi] with cond(n), given cond(hi) and cond monotone; lo == hi is done.

    Each round halves every open bracket, so it ends after ceil(log2(max width)) rounds.
    """

    def step(state):
        lo, hi = state
        mid = jnp.floor(0.5 * (lo + hi))
        ok = cond(mid)
        open_ = lo < hi
        return jnp.where(open_ & ~ok, mid + 1.0, lo), jnp.where(open_ & ok, mid, hi)

    lo, hi = jnp.broadcast_to(lo, shape), jnp.broadcast_to(hi, shape)
    lo, hi = lax.while_loop(lambda s: jnp.any(s[0] < s[1]), step, (lo, hi))
    return hi


def _finish(shape, n, invalid, trivial, infeasible, n_min, n_max, n_trivial, n_infeasible,
            ints, achieved_fn):
    status = jnp.where(
        invalid, Status.INVALID,
        jnp.where(trivial, Status.TRIVIAL, jnp.where(infeasible, Status.INFEASIBLE, Status.OK)),
    ).astype(jnp.int32)
    n = jnp.where(trivial, n_trivial, jnp.where(infeasible, n_infeasible, n))
    n = jnp.clip(n, n_min, n_max)
    # To int32 with the bounds taken as given: float32 rounds 2**31 - 1 up to 2**31, which
    # would wrap to a negative n.
    n = jnp.where(n <= n_min, ints["n_min"],
                  jnp.where(n >= n_max, ints["n_max"], n.astype(jnp.int32)))
    n = jnp.broadcast_to(jnp.where(invalid, jnp.maximum(ints["n_max"], 1), n), shape)
    achieved = jnp.where(invalid, 0.0, achieved_fn(n))
    return Solution(n, jnp.broadcast_to(status, shape), jnp.broadcast_to(achieved, shape))


_log_cdf_sf_packed = jax.jit(tn.log_cdf_sf_packed)
_logcdf = jax.jit(tn.logcdf)


def min_samples(dist: Any, target: Any, confidence: Any = None, *, k: Any = 1,
                criterion: str = "probability", n_min: Any = 1,
                n_max: Any = N_MAX_DEFAULT) -> Solution:
    """Smallest n in [n_min, n_max] meeting the criterion; see :func:`optscale.min_samples`.

    Two jitted stages (log F and log S packed in one array, then the solver), so that XLA keeps
    the expensive special functions in one loop; inside a caller's jit they inline as one.
    """
    if criterion == "probability":
        dtype = tn._float_dtype(*dist_params(dist), target, confidence)
        target = jnp.asarray(target, dtype)
        if isinstance(k, int) and not isinstance(k, bool) and k == 1:
            # The common case needs only log F: no loops, no log S.
            return _min_samples_best(dist, target, confidence, _logcdf(dist, target),
                                     n_min=n_min, n_max=n_max)
        packed = _log_cdf_sf_packed(dist, target)
        return _min_samples_probability(dist, target, confidence, packed, k=k, n_min=n_min,
                                        n_max=n_max)
    if criterion == "expected":
        return _min_samples_expected(dist, target, n_min=n_min, n_max=n_max)
    raise ValueError(f"criterion must be 'probability' or 'expected'; got {criterion!r}")


def dist_params(dist: Any) -> tuple[Any, ...]:
    return (dist.mu, dist.sigma, dist.low, dist.high)


def _prepare(dist, target, extra, n_min, n_max, k=None):
    mu, sigma, low, high, target, *extra = tn.params(dist, target, *extra)
    dtype = mu.dtype
    ints = dict(n_min=jnp.asarray(n_min, jnp.int32), n_max=jnp.asarray(n_max, jnp.int32))
    if k is not None:
        ints["k"] = jnp.asarray(k, jnp.int32)
    shape = jnp.broadcast_shapes(*(jnp.shape(v) for v in (mu, sigma, low, high, target, *extra,
                                                           *ints.values())))
    return mu, sigma, low, high, target, extra, ints, dtype, shape


@jax.jit
def _min_samples_probability(dist, target, confidence, packed, *, k, n_min, n_max):
    mu, sigma, low, high, target, (confidence,), ints, dtype, shape = _prepare(
        dist, target, (confidence,), n_min, n_max, k)
    invalid = any_invalid(jnp, mu=mu, sigma=sigma, low=low, high=high, target=target,
                          confidence=confidence, **ints)
    trivial = target <= low
    # Bisection state lives in floats (exact for n < 2**24 in float32, 2**53 in float64).
    # Invalid elements get harmless values so that no loop runs on them.
    n_lo = jnp.where(invalid, 1, ints["n_min"]).astype(dtype)
    n_hi = jnp.where(invalid, 1, ints["n_max"]).astype(dtype)
    kf = jnp.where(invalid, 1, ints["k"]).astype(dtype)
    log1mc = jnp.log1p(-jnp.where(invalid, 0.5, confidence))
    log_f, log_s = jnp.real(packed), jnp.imag(packed)
    never = ~(log_f < 0.0)  # F(target) == 1 in working precision (or invalid)
    lf = jnp.where(never | trivial, -1.0, log_f)
    ls = jnp.where(invalid, -1.0, log_s)
    # best of n: closed form (capped: anything beyond n_max is infeasible anyway)
    n1 = jnp.minimum(_ceil_exact(lf, log1mc), n_hi + 1.0)

    def lower_tail(n):
        return os_.log_binom_lower(ls, lf, n, kf)

    def cond(n):
        return lower_tail(n) <= log1mc

    lo = jnp.maximum(jnp.maximum(n1, kf), n_lo)
    # Chernoff: P(Bin(n, s) <= k-1) <= exp(-(ns - k + 1)^2 / (2 ns)) bounds n from above.
    ell = -log1mc
    need = (kf - 1.0) + ell + jnp.sqrt(ell * ell + 2.0 * ell * (kf - 1.0))
    chernoff = jnp.ceil(need * jnp.exp(-ls)) + 1.0
    hi = jnp.where(kf <= 1.0, lo, jnp.clip(chernoff, lo, n_hi))
    ok_hi = cond(hi)
    retry = ~ok_hi & (hi < n_hi)
    hi = jnp.where(retry, n_hi, hi)
    ok_hi = jnp.where(retry, cond(hi), ok_hi)
    infeasible = never | ~ok_hi | (lo > n_hi)
    done = invalid | trivial | infeasible
    n = _bisect(cond, jnp.where(done, hi, lo), hi, shape)

    def achieved(n_int):
        # F(target) == 1: nobody reaches the target (lf is only a placeholder there)
        p = jnp.where(never, 0.0, -jnp.expm1(lower_tail(jnp.asarray(n_int, dtype))))
        return jnp.where(trivial & (n_int >= kf), 1.0, p)

    return _finish(shape, n, invalid, trivial, infeasible & ~trivial, n_lo, n_hi,
                   jnp.maximum(kf, n_lo), n_hi, ints, achieved)


@jax.jit
def _min_samples_best(dist, target, confidence, log_f, *, n_min, n_max):
    """k = 1: n = ceil(log(1 - c) / log F), made exact; no search."""
    mu, sigma, low, high, target, (confidence,), ints, dtype, shape = _prepare(
        dist, target, (confidence,), n_min, n_max)
    invalid = any_invalid(jnp, mu=mu, sigma=sigma, low=low, high=high, target=target,
                          confidence=confidence, **ints)
    trivial = target <= low
    n_lo, n_hi = ints["n_min"].astype(dtype), ints["n_max"].astype(dtype)
    log1mc = jnp.log1p(-jnp.where(invalid, 0.5, confidence))
    never = ~(log_f < 0.0)
    lf = jnp.where(never | trivial, -1.0, log_f)
    n = _ceil_exact(lf, log1mc)
    infeasible = never | (n > n_hi)

    def achieved(n_int):
        p = -jnp.expm1(jnp.asarray(n_int, dtype) * jnp.where(never, 0.0, lf))
        return jnp.where(trivial, 1.0, p)

    return _finish(shape, n, invalid, trivial, infeasible & ~trivial, n_lo, n_hi, n_lo, n_hi,
                   ints, achieved)


@jax.jit
def _min_samples_expected(dist, target, *, n_min, n_max):
    mu, sigma, low, high, target, _, ints, dtype, shape = _prepare(dist, target, (), n_min,
                                                                   n_max)
    invalid = any_invalid(jnp, mu=mu, sigma=sigma, low=low, high=high, target=target, **ints)
    trivial = target <= low
    n_lo = jnp.where(invalid, 1, ints["n_min"]).astype(dtype)
    n_hi = jnp.where(invalid, 1, ints["n_max"]).astype(dtype)
    # Parameters of invalid elements are replaced by harmless ones so no loop runs on them.
    safe = lambda v, good: jnp.where(invalid, good, v)  # noqa: E731
    sdist = type(dist)(safe(mu, 0.5), safe(sigma, 1.0), safe(low, 0.0), safe(high, 1.0))
    target_s = safe(target, 0.5)

    def expected(n):
        return os_.expected_best_given(sdist, n)

    def cond(n):
        return expected(n) >= target_s

    ok_hi = cond(n_hi)
    infeasible = (target >= high) | ~ok_hi
    done = invalid | trivial | infeasible
    n = _bisect(cond, jnp.where(done, n_hi, n_lo), n_hi, shape)

    def achieved(n_int):
        return expected(jnp.asarray(n_int, dtype))

    return _finish(shape, n, invalid, trivial, infeasible & ~trivial, n_lo, n_hi, n_lo, n_hi,
                   ints, achieved)


def cost_aware_samples(dist: Any, target: Any, cost: Any, *, n_min: Any = 1,
                       n_max: Any = N_MAX_DEFAULT) -> Solution:
    """argmax over n in [n_min, n_max] of P(best of n >= target) - cost * n."""
    dtype = tn._float_dtype(*dist_params(dist), target, cost)
    target = jnp.asarray(target, dtype)
    return _cost_aware(dist, target, cost, _log_cdf_sf_packed(dist, target), n_min=n_min,
                       n_max=n_max)


@jax.jit
def _cost_aware(dist, target, cost, packed, *, n_min, n_max):
    mu, sigma, low, high, target, (cost,), ints, dtype, shape = _prepare(
        dist, target, (cost,), n_min, n_max)
    invalid = any_invalid(jnp, mu=mu, sigma=sigma, low=low, high=high, target=target, cost=cost,
                          **ints)
    trivial = target <= low
    n_lo, n_hi = ints["n_min"].astype(dtype), ints["n_max"].astype(dtype)
    log_f, log_s = jnp.real(packed), jnp.imag(packed)
    never = ~(log_f < 0.0)
    lf = jnp.where(never | trivial, -1.0, log_f)
    log_cost = jnp.log(jnp.where(invalid, 1.0, cost))
    # g(n+1) - g(n) = F^n S - cost: the gain is concave, so the optimum is the smallest n >= 0
    # with n log F <= log cost - log S.
    n = _ceil_exact(lf, log_cost - log_s)
    infeasible = never | (n > n_hi)

    def achieved(n_int):
        p = -jnp.expm1(jnp.asarray(n_int, dtype) * jnp.where(never, 0.0, lf))
        return jnp.where(trivial, 1.0, p)

    # An unreachable target is best served by the fewest samples, not the most.
    n_infeasible = jnp.where(never, n_lo, n_hi)
    return _finish(shape, n, invalid, trivial, infeasible & ~trivial, n_lo, n_hi, n_lo,
                   n_infeasible, ints, achieved)
