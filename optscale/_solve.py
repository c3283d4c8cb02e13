"""The minimal-N solvers in JAX: closed form for best-of-N, bisection for k-of-N and expected best,
and the cost-aware optimum. jit-compiled, batch-first, vmap-safe; results carry a status code.

Concrete inputs on one device take a fast path for the probability criterion: the plain
formula for log F (:mod:`optscale._fastpath`) with an error bound decides which elements it
answers exactly; only the others (far tails, near-ties) run the careful log-space path, on a
gathered subset. Traced inputs (inside a caller's ``jit``, ``vmap`` or ``grad``) and arrays
sharded over several devices take the careful path for every element, as one program that
keeps the input's sharding.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from optscale import _fastpath as fp
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
    Concrete inputs on one device take the fast path (see the module docstring).
    """
    if criterion == "probability":
        dtype = tn._float_dtype(*dist_params(dist), target, confidence)
        target = jnp.asarray(target, dtype)
        closed_form = isinstance(k, int) and not isinstance(k, bool) and k == 1
        # k of N keeps the careful logs: its bisection dominates the time, and near-zero
        # achieved values must round exactly as the careful path rounds them.
        if closed_form and _fast_path_applies(dist, target, confidence, n_min, n_max):
            packed = _best_fast(dist, target, confidence, n_min=n_min, n_max=n_max)
            return _resolve(packed, dist, target, confidence, n_min, n_max)
        if closed_form:
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


def _query(dist, target, confidence, n_min, n_max, k=None):
    """Arrays of one query batch, the validity mask and the float bounds (harmless values
    where the element is invalid, so that no loop runs on it)."""
    mu, sigma, low, high, target, (confidence,), ints, dtype, shape = _prepare(
        dist, target, (confidence,), n_min, n_max, k)
    invalid = any_invalid(jnp, mu=mu, sigma=sigma, low=low, high=high, target=target,
                          confidence=confidence, **ints)
    # Bisection state lives in floats (exact for n < 2**24 in float32, 2**53 in float64).
    n_lo = jnp.where(invalid, 1, ints["n_min"]).astype(dtype)
    n_hi = jnp.where(invalid, 1, ints["n_max"]).astype(dtype)
    kf = jnp.where(invalid, 1, ints["k"]).astype(dtype) if k is not None else None
    return _Q(mu, sigma, low, high, target, ints, dtype, shape, invalid, target <= low, n_lo,
              n_hi, kf, jnp.log1p(-jnp.where(invalid, 0.5, confidence)))


_Q = namedtuple("_Q", "mu sigma low high target ints dtype shape invalid trivial n_lo n_hi kf "
                "log1mc")


def _k_of_n_parts(q, log_f, log_s):
    """The k-of-N bisection: (final n, infeasible, achieved at the final n)."""
    kf, log1mc, n_lo, n_hi, trivial = q.kf, q.log1mc, q.n_lo, q.n_hi, q.trivial
    never = ~(log_f < 0.0)  # F(target) == 1 in working precision (or invalid)
    lf = jnp.where(never | trivial, -1.0, log_f)
    ls = jnp.where(q.invalid, -1.0, log_s)
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
    infeasible = (never | ~ok_hi | (lo > n_hi)) & ~trivial
    done = q.invalid | trivial | infeasible
    n = _bisect(cond, jnp.where(done, hi, lo), hi, q.shape)
    final = _final_n(q, n, infeasible, jnp.maximum(kf, n_lo))
    # F(target) == 1: nobody reaches the target (lf is only a placeholder there)
    p = jnp.where(never, 0.0, -jnp.expm1(lower_tail(final)))
    achieved = jnp.where(trivial & (final >= kf), 1.0, p)
    return final, infeasible, achieved


def _final_n(q, n, infeasible, n_trivial):
    """The n that :func:`_finish` reports, as a float."""
    return jnp.clip(jnp.where(q.trivial, n_trivial, jnp.where(infeasible, q.n_hi, n)), q.n_lo,
                    q.n_hi)


@jax.jit
def _min_samples_probability(dist, target, confidence, packed, *, k, n_min, n_max):
    q = _query(dist, target, confidence, n_min, n_max, k)
    final, infeasible, achieved = _k_of_n_parts(q, jnp.real(packed), jnp.imag(packed))
    return _finish(q.shape, final, q.invalid, q.trivial, infeasible, q.n_lo, q.n_hi, final,
                   final, q.ints, lambda _: achieved)


def _best_parts(q, log_f):
    """k = 1: n = ceil(log(1 - c) / log F), made exact; (n, final n, infeasible, achieved)."""
    never = ~(log_f < 0.0)
    lf = jnp.where(never | q.trivial, -1.0, log_f)
    n = _ceil_exact(lf, q.log1mc)
    infeasible = (never | (n > q.n_hi)) & ~q.trivial
    final = _final_n(q, n, infeasible, q.n_lo)
    p = -jnp.expm1(final * jnp.where(never, 0.0, lf))
    return jnp.where(never, jnp.inf, n), final, infeasible, jnp.where(q.trivial, 1.0, p)


@jax.jit
def _min_samples_best(dist, target, confidence, log_f, *, n_min, n_max):
    """k = 1: n = ceil(log(1 - c) / log F), made exact; no search."""
    q = _query(dist, target, confidence, n_min, n_max)
    _, final, infeasible, achieved = _best_parts(q, log_f)
    return _finish(q.shape, final, q.invalid, q.trivial, infeasible, q.n_lo, q.n_hi, final,
                   final, q.ints, lambda _: achieved)


# ---------------------------------------------------------------- the fast path

# The largest n each dtype counts exactly, with room for the +-1 of the exactness fix-up.
_N_EXACT = {np.dtype(np.float32): 2.0**22, np.dtype(np.float64): 2.0**51}
# XLA's log1p on [-0.5, -0.3], in eps (measured: 1.5 in float32, 121 in float64)
_LOG1P_ERROR = {np.dtype(np.float32): 2.0, np.dtype(np.float64): 128.0}


def _fast_path_applies(*args: Any) -> bool:
    """Concrete inputs (no tracer) that live on at most one device."""
    for leaf in jax.tree_util.tree_leaves(args):
        if isinstance(leaf, jax.core.Tracer):
            return False
        sharding = getattr(leaf, "sharding", None)
        if sharding is not None and len(sharding.device_set) > 1:
            return False
    return True


def _pack(q, final, infeasible, achieved, careful_needed):
    """One complex array per element (one output keeps XLA's CPU fusion in one loop): the
    real part is the final n, negated where infeasible, 0 where invalid, NaN where the careful
    path must decide; the imaginary part is the achieved value."""
    code = jnp.where(infeasible, -final, final)
    code = jnp.where(q.invalid, 0.0, jnp.where(careful_needed, jnp.nan, code))
    achieved = jnp.where(q.invalid | careful_needed, 0.0, achieved)
    return jnp.broadcast_to(lax.complex(code, achieved.astype(code.dtype)), q.shape)


def _fast_query(dist, target, confidence, n_min, n_max):
    """Like :func:`_query`, without the exact validity rules (their divisions would split
    XLA's loop): ``invalid`` is all False and ``plain`` marks the elements that are valid by
    :func:`optscale._fastpath.plainly_valid`; the others go to the careful path."""
    mu, sigma, low, high, target, (confidence,), ints, dtype, shape = _prepare(
        dist, target, (confidence,), n_min, n_max)
    plain = (fp.plainly_valid(jnp, mu, sigma, low, high) & ~jnp.isnan(target)
             & (confidence > 0.0) & (confidence < 1.0) & (ints["n_min"] >= 1)
             & (ints["n_max"] >= ints["n_min"]))
    q = _Q(mu, sigma, low, high, target, ints, dtype, shape, jnp.zeros((), bool), target <= low,
           jnp.where(plain, ints["n_min"], 1).astype(dtype),
           jnp.where(plain, ints["n_max"], 1).astype(dtype), None,
           # (a select around the log keeps XLA's CPU fusion in one loop, see _fastpath)
           jnp.where(plain, jnp.log1p(-jnp.where(plain, confidence, 0.5)), -1.0))
    return q, plain


@jax.jit
def _best_fast(dist, target, confidence, *, n_min, n_max):
    q, plain = _fast_query(dist, target, confidence, n_min, n_max)
    fast = fp.central_logs(jnp, lax.erfc, q.mu, q.sigma, q.low, q.high, q.target,
                           log1p_error=_LOG1P_ERROR[np.dtype(q.dtype)])
    n, final, infeasible, achieved = _best_parts(q, fast.log_f)
    eps = float(jnp.finfo(q.dtype).eps)
    d = fp.margin(jnp, fast.log_f, fast.d_log_f, fast.log_size, eps,
                  _LOG1P_ERROR[np.dtype(q.dtype)])
    exact = fp.best_exact(jnp, n, fast.log_f, d, q.log1mc, q.n_lo, q.n_hi,
                          _N_EXACT[np.dtype(q.dtype)])
    return _pack(q, final, infeasible, achieved, ~(plain & (q.trivial | (fast.usable & exact))))


@jax.jit
def _best_careful(dist, target, confidence, log_f, *, n_min, n_max):
    q = _query(dist, target, confidence, n_min, n_max)
    _, final, infeasible, achieved = _best_parts(q, log_f)
    return _pack(q, final, infeasible, achieved, False)


_Params = namedtuple("_Params", "mu sigma low high")


def _bucket(count: int) -> int:
    """Subset sizes are powers of two (from 256), so few shapes are ever compiled."""
    return max(256, 1 << (count - 1).bit_length())


def _resolve(packed, dist, target, confidence, n_min, n_max) -> Solution:
    """Send the elements the fast path left open through the careful path (on a gathered
    subset, or everything through the plain careful program when most are open) and unpack.

    The open elements are found on the host: on CPU the array is shared, not copied, and a
    host scan costs a fraction of XLA's ``nonzero``.
    """
    shape = packed.shape
    idx = np.flatnonzero(np.isnan(np.asarray(packed).real))
    if idx.size == 0:
        return _unpack(packed, dist, target, n_min=n_min, n_max=n_max)
    if idx.size > max(packed.size // 4, 4096):
        # mostly tails: one careful program over everything costs less than gathering
        return _min_samples_best(dist, target, confidence, _logcdf(dist, target), n_min=n_min,
                                 n_max=n_max)
    size = _bucket(idx.size)
    idx = np.concatenate([idx, np.full(size - idx.size, idx[0])]).astype(np.int32)
    flat = [_take(v, shape, idx) for v in (*dist_params(dist), target, confidence, n_min,
                                           n_max)]
    sub_dist = _Params(*flat[:4])
    # The careful logs come from the very program the plain path (and logcdf) runs, so that
    # the subset's answers are theirs to the last bit.
    sub = _best_careful(sub_dist, *flat[4:6], _logcdf(sub_dist, flat[4]), n_min=flat[6],
                        n_max=flat[7])
    return _scatter_unpack(packed, jnp.asarray(idx), sub, dist, target, n_min=n_min,
                           n_max=n_max)


def _take(value: Any, shape: tuple[int, ...], idx: np.ndarray) -> Any:
    """The elements idx of value broadcast to shape (scalars stay scalars, so they keep their
    weak type)."""
    if np.ndim(value) == 0:
        return value
    return np.broadcast_to(np.asarray(value), shape).reshape(-1)[idx]


def _scatter_unpack_impl(packed, idx, sub, dist, target, *, n_min, n_max):
    packed = packed.reshape(-1).at[idx].set(sub).reshape(packed.shape)
    return _unpack_impl(packed, dist, target, n_min=n_min, n_max=n_max)


def _unpack_impl(packed, dist, target, *, n_min, n_max):
    """The Solution of a packed result (see :func:`_pack`)."""
    _, _, low, _, target = tn.params(dist, target)
    code, achieved = jnp.real(packed), jnp.imag(packed)
    ints = dict(n_min=jnp.asarray(n_min, jnp.int32), n_max=jnp.asarray(n_max, jnp.int32))
    invalid = code == 0.0
    trivial = ~invalid & (target <= low)
    status = jnp.where(invalid, Status.INVALID, jnp.where(trivial, Status.TRIVIAL, jnp.where(
        code < 0.0, Status.INFEASIBLE, Status.OK))).astype(jnp.int32)
    n = jnp.abs(code)
    n = jnp.where(n <= ints["n_min"].astype(code.dtype), ints["n_min"],
                  jnp.where(n >= ints["n_max"].astype(code.dtype), ints["n_max"],
                            n.astype(jnp.int32)))
    n = jnp.where(invalid, jnp.maximum(ints["n_max"], 1), n)
    shape = packed.shape
    return Solution(jnp.broadcast_to(n, shape), jnp.broadcast_to(status, shape), achieved)


_unpack = jax.jit(_unpack_impl)
# the packed result is not needed afterwards: XLA may update it in place
_scatter_unpack = jax.jit(_scatter_unpack_impl, donate_argnums=0)


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
