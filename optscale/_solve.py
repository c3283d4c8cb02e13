"""The minimal-N solvers in JAX: closed form for best-of-N, k-of-N and expected best (a guess
confirmed by the criterion's own evaluations, bisection where it misses), and the cost-aware
optimum. jit-compiled, batch-first, vmap-safe; results carry a status code.

Concrete inputs on one device take the fast paths of :mod:`optscale._solve_fast` (for k = 1
the plain formula for log F with an error bound, the careful path only where the bound cannot
decide). Traced inputs (inside a caller's ``jit``, ``vmap`` or ``grad``) and arrays sharded over
several devices run the careful path here, as one program that keeps the input's sharding.
"""

from __future__ import annotations

import math
from collections import namedtuple
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import ndtri

from optscale import _fastpath as fp
from optscale import _order_stats as os_
from optscale import _solve_fast
from optscale import _truncnorm as tn
from optscale._checks import N_MAX_DEFAULT, any_invalid
from optscale._float_ints import next_n, prev_n
from optscale._quadrature import LOG_V, W_V
from optscale._solution import Solution, Status
from optscale._special import norm_logpdf

__all__ = ["N_MAX_DEFAULT", "cost_aware_samples", "min_samples"]


def _ceil_exact(log_f, log_bound):
    """Smallest integer n >= 0 with n * log_f <= log_bound, for log_f < 0.

    ceil of the ratio, then one step either way so the inequality holds exactly as evaluated in
    this precision (the ratio itself rounds). The right side is formed before the product so
    no fused multiply-add can round it differently from a plain evaluation.
    """
    n = jnp.maximum(jnp.ceil(log_bound / log_f), 0.0)
    n = jnp.where(n * log_f > log_bound, next_n(jnp, n), n)
    before = prev_n(jnp, n)  # (n - 1 as the dtype holds it: see optscale._float_ints)
    n = jnp.where((n >= 1.0) & (before * log_f <= log_bound), before, n)
    return n


def _bisect(cond, lo, hi, shape, guess=None):
    """Smallest n in [lo, hi] with cond(n), given cond(hi) and cond monotone; lo == hi is done.

    Each round halves every open bracket, so it ends after ceil(log2(max width)) rounds. With
    a ``guess`` of the answer, the first two rounds try guess - 1 and guess instead (a right
    guess closes the bracket), and only those rounds run: the caller goes on with the
    brackets returned, (lo, hi).

    The search runs over the integers the dtype holds: above 2**24 in float32, n + 1 and the
    midpoint round (n + 1 back to n), so the probe is kept below hi and the step past a failing
    probe goes to the next float (:func:`next_n`); every round still shrinks the bracket, and
    the answer is the smallest float32 n with cond(n), exact to float32's spacing there. Below
    2**24 these are the plain n + 1 and midpoint, so the answers are unchanged.
    """

    def step(state):
        lo, hi, round_ = state
        mid = jnp.floor(0.5 * (lo + hi))
        if guess is not None:
            mid = guess - 1.0 + round_
        mid = jnp.clip(mid, lo, jnp.maximum(prev_n(jnp, hi), lo))
        ok = cond(mid)
        open_ = lo < hi
        return (jnp.where(open_ & ~ok, next_n(jnp, mid), lo), jnp.where(open_ & ok, mid, hi),
                round_ + 1.0)

    def going(state):
        more = jnp.any(state[0] < state[1])
        return more if guess is None else more & (state[2] < 2.0)

    lo, hi = jnp.broadcast_to(lo, shape), jnp.broadcast_to(hi, shape)
    lo, hi, _ = lax.while_loop(going, step, (lo, hi, jnp.zeros((), lo.dtype)))
    return hi if guess is None else (lo, hi)


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
    achieved = achieved_fn(n)
    # (+0 where it is 0: -expm1(0) is -0, which prints as "-0")
    achieved = jnp.where(invalid | (achieved == 0.0), 0.0, achieved)
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
        if closed_form and _solve_fast.applies(dist, target, confidence, n_min, n_max):
            return _solve_fast.best(dist, target, confidence, n_min, n_max)
        if closed_form:
            # The common case needs only log F: no loops, no log S.
            return _min_samples_best(dist, target, confidence, _logcdf(dist, target),
                                     n_min=n_min, n_max=n_max)
        if _solve_fast.applies(dist, target, confidence, k, n_min, n_max):
            return _solve_fast.k_of_n(dist, target, confidence, k, n_min, n_max)
        packed = _log_cdf_sf_packed(dist, target)
        return _min_samples_probability(dist, target, confidence, packed, k=k, n_min=n_min,
                                        n_max=n_max, k_max=_static_k_max(k))
    if criterion == "expected":
        if _solve_fast.applies(dist, target, n_min, n_max):
            return _solve_fast.expected(dist, target, n_min, n_max)
        return _min_samples_expected(dist, target, n_min=n_min, n_max=n_max)
    raise ValueError(f"criterion must be 'probability' or 'expected'; got {criterion!r}")


# loops over j < k are unrolled up to this k (one XLA loop over the batch, not a loop of loops)
_UNROLL_K = 16


def _static_k_max(k: Any) -> int | None:
    """max(k) when it is known before tracing (a Python int, or a concrete array) and small."""
    if isinstance(k, jax.core.Tracer):
        return None
    try:
        top = int(np.max(np.asarray(k)))
    except (TypeError, ValueError):
        return None
    return top if 1 <= top <= _UNROLL_K else None


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


def _k_of_n_parts(q, log_f, log_s, k_max=None):
    """The k-of-N answer: (final n, infeasible, achieved at the final n).

    The smallest n with P(Bin(n, S) <= k - 1) <= 1 - c as evaluated (:func:`cond`), found
    without a bisection for almost every element: a Wilson-Hilferty guess refined by Newton
    steps on the continuous tail (:func:`_k_of_n_guess`) gives n = ceil(root), which two
    evaluations confirm (cond(n) holds and cond(n - 1) does not; or n
    is the budget and cond fails there: infeasible). The rest (near-ties of the rounding) are
    bisected as before, on a gathered subset when few.
    """
    b = _k_of_n_bounds(q, log_f, log_s)
    m = _k_of_n_guess(q, b, k_max)
    kf, log1mc, n_hi, lf, ls, lo = q.kf, q.log1mc, q.n_hi, b.lf, b.ls, b.lo
    tail_m, holds, rest = _k_of_n_check_parts(q, b, m, k_max)
    beyond = ~b.done & ~holds & (m >= n_hi)  # cond fails at the budget
    final = jnp.where(beyond, n_hi, m)
    # (the others: an empty bracket, cond known)
    hi_rest = jnp.where(rest, jnp.where(holds, prev_n(jnp, m),
                                        jnp.clip(b.chernoff, next_n(jnp, m), n_hi)), m)
    lo_rest = jnp.where(rest, jnp.where(holds, lo, next_n(jnp, m)), hi_rest)
    args = (ls, lf, kf, log1mc, lo_rest, hi_rest, ~rest | holds, n_hi)
    final, infeasible_rest, tail_final = _on_rest(
        rest, partial(_k_of_n_bisect, k_max=k_max), args,
        (final, jnp.zeros(q.shape, bool), tail_m), q.shape)
    infeasible = b.pre_infeasible | beyond | infeasible_rest
    # F(target) == 1: nobody reaches the target (lf is only a placeholder there)
    p = jnp.where(b.never, 0.0, -jnp.expm1(tail_final))
    achieved = jnp.where(q.trivial & (final >= kf), 1.0, p)
    return final, infeasible, achieved


_KBounds = namedtuple("_KBounds", "never lf ls lo chernoff pre_infeasible done")


def _k_of_n_bounds(q, log_f, log_s):
    """The logs made safe, the lower bound (the k = 1 answer), Chernoff's upper bound, and the
    elements settled without a search."""
    never = ~(log_f < 0.0)  # F(target) == 1 in working precision (or invalid)
    lf = jnp.where(never | q.trivial, -1.0, log_f)
    ls = jnp.where(q.invalid, -1.0, log_s)
    # best of n: closed form (capped: anything beyond n_max is infeasible anyway)
    n1 = jnp.minimum(_ceil_exact(lf, q.log1mc), q.n_hi + 1.0)
    lo = jnp.maximum(jnp.maximum(n1, q.kf), q.n_lo)
    # Chernoff: P(Bin(n, s) <= k-1) <= exp(-(ns - k + 1)^2 / (2 ns)) bounds n from above.
    ell = -q.log1mc
    need = (q.kf - 1.0) + ell + jnp.sqrt(ell * ell + 2.0 * ell * (q.kf - 1.0))
    chernoff = jnp.ceil(need * jnp.exp(-ls)) + 1.0
    pre_infeasible = (never | (lo > q.n_hi)) & ~q.trivial
    done = q.invalid | q.trivial | pre_infeasible
    return _KBounds(never, lf, ls, lo, chernoff, pre_infeasible, done)


def _k_of_n_check_parts(q, b, m, k_max):
    """cond at m and m - 1: (log lower tail at m, cond(m), which elements it leaves open)."""

    def lower_tail(n):
        return os_.log_binom_lower(b.ls, b.lf, n, q.kf, k_max=k_max)

    tail_m = lower_tail(m)
    holds, holds_before = tail_m <= q.log1mc, lower_tail(prev_n(jnp, m)) <= q.log1mc
    ok = ~b.done & holds & ((m <= b.lo) | ~holds_before)
    beyond = ~b.done & ~holds & (m >= q.n_hi)  # cond fails at the budget
    # the rest: cond(m - 1) holds (the answer is below m) or cond(m) fails (above m)
    return tail_m, holds, ~(b.done | ok | beyond)


def _k_of_n_guess(q, b, k_max):
    """The n to try first: ceil of the continuous root, or for the settled elements their
    final n."""
    hi = jnp.where(q.kf <= 1.0, b.lo, jnp.clip(b.chernoff, b.lo, q.n_hi))
    final_done = _final_n(q, hi, b.pre_infeasible, jnp.maximum(q.kf, q.n_lo))
    # (k = 1 where the element is settled: its root is not used, and its k, far above n_max
    # perhaps, would set the loop's length)
    root = _k_of_n_root(b.ls, b.lf, jnp.where(b.done, 1.0, q.kf), q.log1mc, b.lo,
                        jnp.maximum(b.chernoff, b.lo), k_max)
    m = jnp.where(q.kf <= 1.0, b.lo, jnp.clip(jnp.ceil(root), b.lo, q.n_hi))
    return jnp.where(b.done, final_done, m)


def _k_of_n_bisect(ls, lf, kf, log1mc, lo, hi, known, n_hi, *, k_max):
    """The smallest n in [lo, n_hi] with cond(n), by bisection: hi is where cond is known
    (``known``) or tried to hold, n_hi next; (n, infeasible, log lower tail at n)."""

    def cond(n):
        return os_.log_binom_lower(ls, lf, n, kf, k_max=k_max) <= log1mc

    ok_hi = known | cond(hi)
    retry = ~ok_hi & (hi < n_hi)
    hi = jnp.where(retry, n_hi, hi)
    ok_hi = jnp.where(retry, cond(hi), ok_hi)
    n = _bisect(cond, jnp.where(ok_hi, lo, hi), hi, jnp.shape(hi))
    final = jnp.where(ok_hi, n, n_hi)
    return final, ~ok_hi, os_.log_binom_lower(ls, lf, final, kf, k_max=k_max)


def _on_rest(rest, solve, args, results, shape):
    """``results`` with the elements in ``rest`` replaced by ``solve(*args)`` there.

    A solver whose loop runs until every element is done costs the whole batch per round:
    when few are left (at most 1/16 of a large batch), they are gathered into a batch of
    their own (a static size, padded with the first of them); otherwise, or for small
    batches, everything runs (the caller gives the others an empty bracket).
    """
    size = math.prod(shape)
    flat = [jnp.broadcast_to(a, shape).reshape(-1) for a in args]
    rest_flat = jnp.broadcast_to(rest, shape).reshape(-1)

    def everything(_):
        out = solve(*flat)
        return tuple(jnp.where(rest_flat, o, r.reshape(-1)) for o, r in
                     zip(out, (jnp.broadcast_to(r, shape) for r in results), strict=True))

    def gathered(_):
        bucket = max(size // 16, 1)
        first = jnp.argmax(rest_flat)
        idx = jnp.nonzero(rest_flat, size=bucket, fill_value=first)[0]
        out = solve(*(a[idx] for a in flat))
        return tuple(jnp.broadcast_to(r, shape).reshape(-1).at[idx].set(o)
                     for o, r in zip(out, results, strict=True))

    if size < 4096:
        out = everything(None)
    else:
        out = lax.cond(jnp.sum(rest_flat) <= max(size // 16, 1), gathered, everything, None)
    return tuple(o.reshape(shape) for o in out)


def _k_of_n_root(ls, lf, kf, log1mc, lo, hi, k_max):
    """The continuous n where log P(Bin(n, S) <= k - 1) = log(1 - c), for k >= 2: from the
    Wilson-Hilferty approximation of the Poisson quantile, two safeguarded Newton steps on
    n lf + log sum_{j<k} C(n, j) (S/F)^j (a guess: the caller confirms the integer)."""
    c = -jnp.expm1(log1mc)
    z = ndtri(jnp.clip(c, 1e-30, 1.0 - 1e-7))
    k = jnp.maximum(kf, 1.0)
    lam = k * jnp.maximum(1.0 - 1.0 / (9.0 * k) + z / (3.0 * jnp.sqrt(k)), 0.0) ** 3
    x = jnp.clip(lam / -lf, lo, hi)
    a, b = lo, hi
    for _ in range(2):
        value, slope = _tail_and_slope(ls, lf, x, kf, k_max)
        value = value - log1mc
        a, b = jnp.where(value > 0.0, x, a), jnp.where(value <= 0.0, x, b)
        step = x - value / slope
        x = jnp.where(jnp.isfinite(step) & (slope < 0.0), jnp.clip(step, a, b), 0.5 * (a + b))
    return x


def _tail_and_slope(ls, lf, x, kf, k_max):
    """n lf + log sum_{j<k} C(n, j) (S/F)^j at n = x (continuous) and its derivative in x.

    A guess only, so the sum is formed in linear space (one log, no logaddexp per term); where
    it overflows, the caller's safeguard falls back to halving its bracket.
    """
    odds = jnp.exp(jnp.minimum(ls - lf, 80.0))
    tiny = jnp.finfo(x.dtype).tiny

    def body(j, carry):
        term, total, harmonic, slope = carry
        jf = jnp.asarray(j, x.dtype)
        gap = jnp.maximum(x - jf + 1.0, tiny)
        term = term * (gap / jf) * odds
        harmonic = harmonic + 1.0 / gap
        use = jf < kf
        return (term, total + jnp.where(use, term, 0.0), harmonic,
                slope + jnp.where(use, term * harmonic, 0.0))

    one = jnp.ones(jnp.broadcast_shapes(x.shape, jnp.shape(kf), jnp.shape(ls)), x.dtype)
    carry = (one, one, 0.0 * one, 0.0 * one)
    if k_max is not None:
        for j in range(1, k_max):
            carry = body(j, carry)
    else:
        carry = lax.fori_loop(1, jnp.max(kf, initial=1).astype(jnp.int32), body, carry)
    return x * lf + jnp.log(carry[1]), lf + carry[3] / carry[1]


def _final_n(q, n, infeasible, n_trivial):
    """The n that :func:`_finish` reports, as a float."""
    return jnp.clip(jnp.where(q.trivial, n_trivial, jnp.where(infeasible, q.n_hi, n)), q.n_lo,
                    q.n_hi)


@partial(jax.jit, static_argnames="k_max")
def _min_samples_probability(dist, target, confidence, packed, *, k, n_min, n_max,
                             k_max=None):
    q = _query(dist, target, confidence, n_min, n_max, k)
    final, infeasible, achieved = _k_of_n_parts(q, jnp.real(packed), jnp.imag(packed), k_max)
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


# ---------------------------------------------------------------- the fast path's pieces

# XLA's log1p on [-0.5, -0.3], in eps (measured: 1.5 in float32, 121 in float64)
_LOG1P_ERROR = {np.dtype(np.float32): 2.0, np.dtype(np.float64): 128.0}


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


_Params = namedtuple("_Params", "mu sigma low high")  # a distribution's parameters, a pytree


@jax.jit
def _min_samples_expected(dist, target, *, n_min, n_max):
    """Smallest n with E[best of n] >= target, E from the fixed quadrature (as
    :func:`optscale.expected_best`). Each evaluation costs 32 quantiles per element, so it is
    found with few: a Newton estimate of the continuous root (two steps in log n from Blom's
    approximation of the expected maximum, with the derivative from the density at the
    nodes) is tried first, and its ceiling and the integer below settle almost every element;
    the rest (near-ties) are bisected, on a gathered subset when few."""
    mu, sigma, low, high, target, _, ints, dtype, shape = _prepare(dist, target, (), n_min,
                                                                   n_max)
    invalid = any_invalid(jnp, mu=mu, sigma=sigma, low=low, high=high, target=target, **ints)
    trivial = target <= low
    n_lo = jnp.where(invalid, 1, ints["n_min"]).astype(dtype)
    n_hi = jnp.where(invalid, 1, ints["n_max"]).astype(dtype)
    # Parameters of invalid elements are replaced by harmless ones so no loop runs on them.
    safe = lambda v, good: jnp.where(invalid, good, v)  # noqa: E731
    sdist = _Params(safe(mu, 0.5), safe(sigma, 1.0), safe(low, 0.0), safe(high, 1.0))
    target_s = safe(target, 0.5)

    def expected(n):
        return os_.expected_best_given(sdist, n)

    def cond(n):
        return expected(n) >= target_s

    ok_hi = cond(n_hi)
    infeasible = ((target >= high) | ~ok_hi) & ~trivial
    done = invalid | trivial | infeasible
    guess = jnp.clip(jnp.ceil(_expected_root(sdist, target_s, n_lo, n_hi)), n_lo, n_hi)
    # (every decisive evaluation inside a loop, as the plain bisection makes them: XLA orders
    # the quadrature's sum by the fusion around it, and the public expected_best's program
    # rounds as this loop does)
    lo, hi = _bisect(cond, jnp.where(done, n_hi, n_lo), n_hi, shape, guess)
    rest = lo < hi
    n, = _on_rest(rest, lambda *a: (_expected_bisect(*a),), (*sdist, target_s, lo, hi), (hi,),
                  shape)
    return _finish(shape, n, invalid, trivial, infeasible, n_lo, n_hi, n_lo, n_hi, ints,
                   lambda n_int: expected(jnp.asarray(n_int, dtype)))


def _expected_bisect(mu, sigma, low, high, target, lo, hi):
    """The smallest n in [lo, hi] with E[best of n] >= target (which holds at hi)."""
    dist = _Params(mu, sigma, low, high)
    return _bisect(lambda n: os_.expected_best_given(dist, n) >= target, lo, hi, jnp.shape(hi))


def _expected_root(dist, target, n_lo, n_hi):
    """A guess of the continuous n with E[best of n] = target: Blom's approximation E[best of
    n] ~ F^-1((n - 3/8) / (n + 1/4)), i.e. n ~ (5/8) / S(target) - 1/4, then two safeguarded
    Newton steps in u = log n. At the quadrature's nodes x_i = F^-1(v_i^(1/n)),
    dx_i / du = -log(p_i) p_i / f(x_i) with p_i = v_i^(1/n)."""
    log_s = tn.logsf(dist, target)
    n0 = 0.625 * jnp.exp(-jnp.maximum(log_s, -80.0)) - 0.25
    a, b = jnp.log(n_lo), jnp.log(n_hi)
    u = jnp.clip(jnp.log(jnp.maximum(n0, 1.0)), a, b)

    def newton(_, state):
        u, a, b = state
        value, slope = _expected_and_slope(dist, jnp.exp(u))
        value = value - target
        a, b = jnp.where(value < 0.0, u, a), jnp.where(value >= 0.0, u, b)
        step = u - value / slope
        # (a step out of the bracket stops at its end: the root lies beyond it, mostly)
        u = jnp.where(jnp.isfinite(step) & (slope > 0.0), jnp.clip(step, a, b), 0.5 * (a + b))
        return u, a, b

    # (a loop, not unrolled: the quadrature's quantiles are a large program to compile)
    shape = jnp.broadcast_shapes(jnp.shape(u), jnp.shape(a), jnp.shape(b))
    state = tuple(jnp.broadcast_to(v, shape) for v in (u, a, b))
    return jnp.exp(lax.fori_loop(0, 2, newton, state)[0])


def _expected_and_slope(dist, n):
    """E[best of n] by the quadrature of :func:`optscale._order_stats.expected_best_given` and
    its derivative in log n."""
    mu, sigma, low, high = tn.params(dist)
    dtype = mu.dtype
    expand = lambda v: jnp.asarray(v)[..., None]  # noqa: E731
    nodes = _Params(expand(mu), expand(sigma), expand(low), expand(high))
    log_p = LOG_V.astype(dtype) / expand(n)
    x = tn._quantile(nodes, log_p, 0)
    weights = W_V.astype(dtype)
    log_z = tn._log_normalizer(mu, sigma, low, high)
    log_pdf = norm_logpdf((x - expand(mu)) / expand(sigma)) - expand(jnp.log(sigma) + log_z)
    dx = jnp.where(jnp.isfinite(log_pdf), -log_p * jnp.exp(log_p - log_pdf), 0.0)
    return jnp.sum(weights * x, axis=-1), jnp.sum(weights * dx, axis=-1)


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
