"""The JAX solvers' fast paths for concrete inputs on one device (outside any trace).

k = 1: a cheap kernel computes the plain formula for log F with a bound on its distance from
the careful path's log F (:func:`optscale._fastpath.best_logs`) and keeps it wherever the bound
proves the careful answer; it marks the others NaN. The host finds those (on CPU the array is
shared, not copied; XLA's ``nonzero`` costs ten times as much), the careful path answers them on
a gathered subset, and one program turns the codes into the Solution.

k of N and the expected best: the guesses of :mod:`optscale._solve` confirmed by two
evaluations, in separate programs, the near-ties on the host (see :func:`k_of_n`,
:func:`expected`).

Why this shape: XLA's CPU fusion emits a single-output loop vectorised, and splits a loop with
several outputs (or a complex one) into many loops or scalar code that cost several times as
much, so each expensive program has one real output and the Solution's three arrays come from
cheap loops that read it.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from optscale import _fastpath as fp
from optscale import _order_stats as os_
from optscale import _solve
from optscale import _truncnorm as tn
from optscale._checks import any_invalid
from optscale._float_ints import next_n, prev_n
from optscale._solution import Solution, Status

__all__ = ["applies", "best", "exp_zero", "expected"]

# Open elements beyond this fraction: one careful program over everything costs less.
_CAREFUL_FRACTION = 0.25


def applies(*args: Any) -> bool:
    """Concrete inputs (no tracer) that live on at most one device, outside any trace (a
    caller's jit may close over concrete arrays; its program cannot stop for the host)."""
    if not _top_level():
        return False
    for leaf in jax.tree_util.tree_leaves(args):
        if isinstance(leaf, jax.core.Tracer):
            return False
        sharding = getattr(leaf, "sharding", None)
        if sharding is not None and len(sharding.device_set) > 1:
            return False
    return True


def _top_level() -> bool:
    try:
        from jax._src.core import trace_state_clean
    except ImportError:  # (a JAX without it: take every call for a traced one)
        return False
    return trace_state_clean()


_EXP_ZERO: dict = {}


def exp_zero(dtype: Any, device: Any = None) -> float | None:
    """The largest x of a fine grid below log(tiny) such that exp gives exactly 0 there and at
    every grid point below (down to -inf), on ``device``; None if there is none.

    Whether exp flushes results below the normal range to zero (XLA's CPU does) or returns
    subnormals decides where the careful path's log F = log1p(-exp(log S)) becomes exactly 0;
    asking the device once is cheaper than assuming the worst.
    """
    dtype = np.dtype(dtype)
    device = device or jax.devices()[0]
    key = (dtype, device.platform)
    if key not in _EXP_ZERO:
        log_tiny = math.log(float(np.finfo(dtype).tiny))
        grid = np.concatenate([np.linspace(log_tiny + 2.0, log_tiny - 30.0, 2049),
                               [2 * log_tiny, 10 * log_tiny, -np.inf]]).astype(dtype)
        with jax.default_device(device):
            points = jnp.asarray(grid)
            if points.dtype != dtype:  # float64 asked for with x64 off
                return None
            out = np.asarray(jax.jit(jnp.exp)(points))
        nonzero = np.flatnonzero(out != 0.0)
        last = nonzero.max() if nonzero.size else -1
        _EXP_ZERO[key] = float(grid[last + 1]) if last + 1 < 2049 else None
    return _EXP_ZERO[key]


def _device(*args: Any) -> Any:
    for leaf in jax.tree_util.tree_leaves(args):
        devices = getattr(leaf, "devices", None)
        if devices is not None and not isinstance(leaf, np.ndarray):
            return next(iter(devices()))
    return None


# The largest n each dtype counts exactly, with room for the +-1 of the exactness fix-up.
_N_EXACT = {np.dtype(np.float32): 2.0**22, np.dtype(np.float64): 2.0**51}
# float32: the shared-erfc bound (its premise is tested), and erf for the far tail (XLA's
# float32 erf is cheap; its float64 erf costs four erfc)
_SHARED = {np.dtype(np.float32): True, np.dtype(np.float64): False}


# One code per element carries a k = 1 answer: NaN for INVALID (and, out of the kernel, for
# the elements it leaves open), +inf for TRIVIAL, |log F| >= 0 for INFEASIBLE (F = 1
# included), log F < 0 (or -inf) for OK. The Solution follows from the code, the confidence and
# the bounds by the careful path's own arithmetic (:func:`_finish_impl`).


def _codes(q, log_f, infeasible, invalid):
    code = jnp.where(q.trivial, jnp.inf, jnp.where(infeasible, jnp.abs(log_f), log_f))
    return jnp.broadcast_to(jnp.where(invalid, jnp.nan, code), q.shape)


@partial(jax.jit, static_argnames=("zero",))
def _best_kernel(dist, target, confidence, *, n_min, n_max, zero):
    """The codes of the elements where the plain formula's bound proves the careful answer,
    NaN where the careful path must decide."""
    q, plain = _solve._fast_query(dist, target, confidence, n_min, n_max)
    dtype = np.dtype(q.dtype)
    fast = fp.best_logs(jnp, lax.erfc, lax.erf if _SHARED[dtype] else None, q.mu, q.sigma,
                        q.low, q.high, q.target,
                        log1p_error=_solve._LOG1P_ERROR[dtype],
                        careful_log1p_error=_solve._LOG1P_ERROR[dtype], shared=_SHARED[dtype],
                        exp_zero=zero)
    n, _, infeasible, _ = _solve._best_parts(q, fast.log_f)
    exact = fp.best_exact(jnp, n, fast.log_f, fast.d, q.log1mc, q.n_lo, q.n_hi, _N_EXACT[dtype])
    decided = plain & (q.trivial | (fast.usable & exact))
    return _codes(q, fast.log_f, infeasible, ~decided)


@jax.jit
def _careful_codes(dist, target, confidence, log_f, *, n_min, n_max):
    """The codes of the careful path's answers (``log_f``: the public logcdf)."""
    q = _solve._query(dist, target, confidence, n_min, n_max)
    _, _, infeasible, _ = _solve._best_parts(q, log_f)
    return _codes(q, log_f, infeasible, q.invalid)


def _finish_impl(code, confidence, n_min, n_max):
    """The Solution of the codes: the careful path's arithmetic (:func:`_solve._best_parts`,
    :func:`_solve._finish`) on the log F they carry.

    Each output is one loop: status reads the codes only, achieved reads n, the loop that
    needs log(1 - c) and the division (XLA's CPU fusion would otherwise store and re-read them).
    """
    dtype = code.dtype
    ints = dict(n_min=jnp.asarray(n_min, jnp.int32), n_max=jnp.asarray(n_max, jnp.int32))
    n_lo, n_hi = ints["n_min"].astype(dtype), ints["n_max"].astype(dtype)
    invalid, trivial = jnp.isnan(code), code == jnp.inf
    infeasible = (code >= 0.0) & ~trivial
    log_f = -jnp.abs(code)
    never = ~(log_f < 0.0)
    lf = jnp.where(never | trivial | invalid, -1.0, log_f)
    n = _solve._ceil_exact(lf, jnp.log1p(-jnp.asarray(confidence, dtype)))
    final = jnp.clip(jnp.where(trivial, n_lo, jnp.where(infeasible, n_hi, n)), n_lo, n_hi)
    # as _solve._finish: the bounds taken as given (float32 rounds 2**31 - 1 up)
    n_int = jnp.where(final <= n_lo, ints["n_min"],
                      jnp.where(final >= n_hi, ints["n_max"], final.astype(jnp.int32)))
    n_int = jnp.broadcast_to(jnp.where(invalid, jnp.maximum(ints["n_max"], 1), n_int),
                             code.shape)
    # final as a float, from the int: exact (no decided n exceeds 2**22, the careful path's
    # are below 2**24 in float32), the upper bound as the careful path rounds it
    final = jnp.where(n_int == ints["n_max"], n_hi, n_int.astype(dtype))
    achieved = jnp.where(trivial, 1.0, -jnp.expm1(final * jnp.where(never, 0.0, log_f)))
    status = jnp.where(invalid, Status.INVALID, jnp.where(trivial, Status.TRIVIAL, jnp.where(
        infeasible, Status.INFEASIBLE, Status.OK))).astype(jnp.int32)
    # (+0 where it is 0: -expm1(0) is -0)
    return Solution(n_int, status, jnp.where(invalid | (achieved == 0.0), 0.0, achieved))


@jax.jit
def _finish(code, confidence, *, n_min, n_max):
    return _finish_impl(code, confidence, n_min, n_max)


@partial(jax.jit, donate_argnums=0)
def _finish_merged(code, idx, sub, confidence, *, n_min, n_max):
    code = code.reshape(-1).at[idx].set(sub, unique_indices=True).reshape(code.shape)
    return _finish_impl(code, confidence, n_min, n_max)


def _bucket(count: int, size: int) -> int:
    """2^k or 1.5 * 2^k, from 256, at most size: the subset sizes compiled."""
    bucket = max(256, 1 << (count - 1).bit_length())
    if count <= 3 * bucket // 4:
        bucket = 3 * bucket // 4
    return min(bucket, size)


def _pad(idx: np.ndarray, size: int) -> np.ndarray:
    """idx (sorted, unique) padded to a :func:`_bucket` size with other unique indices, so that
    few subset shapes are ever compiled. The padding elements get the careful path's answers
    too (their own)."""
    count = idx.size
    bucket = _bucket(count, size)
    if bucket == count:
        return idx.astype(np.int32)
    free = np.ones(bucket, bool)
    free[idx[idx < bucket]] = False
    extra = np.flatnonzero(free)[: bucket - count]
    return np.concatenate([idx, extra]).astype(np.int32)


@partial(jax.jit, static_argnames="shape")
def _gather_arrays(idx, values, *, shape):
    return tuple(jnp.broadcast_to(v, shape).reshape(-1)[idx] for v in values)


def _gather(values: tuple, shape: tuple[int, ...], idx: Any) -> list:
    """The elements idx (flat, of shape) of each value broadcast to shape; scalars stay as they
    are, so that they keep their weak type."""
    arrays = [i for i, v in enumerate(values) if np.ndim(v)]
    taken = _gather_arrays(idx, tuple(values[i] for i in arrays), shape=shape)
    out = list(values)
    for i, v in zip(arrays, taken, strict=True):
        out[i] = v
    return out




def best(dist: Any, target: Any, confidence: Any, n_min: Any, n_max: Any) -> Solution:
    """k = 1 for concrete single-device inputs (see the module docstring)."""
    zero = exp_zero(tn._float_dtype(*_solve.dist_params(dist), target, confidence),
                    _device(dist, target, confidence))
    code = _best_kernel(dist, target, confidence, n_min=n_min, n_max=n_max, zero=zero)
    idx = np.flatnonzero(np.isnan(np.asarray(code)))
    if idx.size == 0:
        return _finish(code, confidence, n_min=n_min, n_max=n_max)
    if idx.size > _CAREFUL_FRACTION * code.size:
        return _solve._min_samples_best(dist, target, confidence,
                                        _solve._logcdf(dist, target), n_min=n_min,
                                        n_max=n_max)
    idx = jnp.asarray(_pad(idx, code.size))
    flat = _gather((*_solve.dist_params(dist), target, confidence, n_min, n_max), code.shape, idx)
    sub_dist = _solve._Params(*flat[:4])
    # The careful logs come from the very program the plain careful path (and logcdf) runs,
    # so that the subset's answers are theirs to the last bit.
    sub = _careful_codes(sub_dist, flat[4], flat[5], _solve._logcdf(sub_dist, flat[4]),
                         n_min=flat[6], n_max=flat[7])
    return _finish_merged(code, idx, sub, confidence, n_min=n_min, n_max=n_max)


# ---------------------------------------------------------------- the expected best

# The program of optscale.expected_best (the same function, jitted alike): the evaluations
# that decide n come from it, so that E[best of n] and E[best of n - 1] as a caller
# evaluates them confirm the answer to the last bit. (Another program may order the
# quadrature's sum differently and differ in the last place.)
_public_expected = jax.jit(os_.expected_best)


@jax.jit
def _expected_guess(dist, target, *, n_min, n_max):
    """Per element: the candidate n (ceil of the Newton root, or the n the answer must be),
    and the masks and bounds of :func:`_solve._min_samples_expected`."""
    mu, sigma, low, high, target, _, ints, dtype, shape = _solve._prepare(dist, target, (),
                                                                          n_min, n_max)
    invalid = any_invalid(jnp, mu=mu, sigma=sigma, low=low, high=high, target=target, **ints)
    trivial = target <= low
    n_lo = jnp.where(invalid, 1, ints["n_min"]).astype(dtype)
    n_hi = jnp.where(invalid, 1, ints["n_max"]).astype(dtype)
    safe = lambda v, good: jnp.where(invalid, good, v)  # noqa: E731
    sdist = _solve._Params(safe(mu, 0.5), safe(sigma, 1.0), safe(low, 0.0), safe(high, 1.0))
    target_s = safe(target, 0.5)
    unreachable = (target >= high) & ~trivial
    m = jnp.clip(jnp.ceil(_solve._expected_root(sdist, target_s, n_lo, n_hi)), n_lo, n_hi)
    m = jnp.where(trivial | invalid, n_lo, jnp.where(unreachable, n_hi, m))
    out = (m, invalid, trivial, unreachable, n_lo, n_hi, target)
    return tuple(jnp.broadcast_to(v, shape) for v in out)


@jax.jit
def _expected_finish(final, invalid, trivial, infeasible, achieved, n_lo, n_hi, *, n_min,
                     n_max):
    ints = dict(n_min=jnp.asarray(n_min, jnp.int32), n_max=jnp.asarray(n_max, jnp.int32))
    return _solve._finish(final.shape, final, invalid, trivial, infeasible, n_lo, n_hi, n_lo,
                          n_hi, ints, lambda _: achieved)


def expected(dist: Any, target: Any, n_min: Any, n_max: Any) -> Solution:
    """The expected-best criterion for concrete single-device inputs: the answers of
    :func:`_solve._min_samples_expected`, with every deciding evaluation made by the public
    program (see :data:`_public_expected`); the few elements the guess misses are searched on
    the host (:func:`_search_expected`)."""
    out = _expected_guess(dist, target, n_min=n_min, n_max=n_max)
    shape = out[0].shape
    m, invalid, trivial, unreachable, n_lo, n_hi, target_b = (np.asarray(v).reshape(-1)
                                                              for v in out)
    dtype = m.dtype

    def evaluate(n):  # E[best of n] by the public program, on the batch's own shape
        return np.asarray(_public_expected(dist, jnp.asarray(n.astype(dtype).reshape(shape))))

    e_m, e_prev = evaluate(m).reshape(-1), evaluate(np.maximum(prev_n(np, m), 1)).reshape(-1)
    with np.errstate(invalid="ignore"):
        holds, holds_before = e_m >= target_b, e_prev >= target_b
    beyond = ~(invalid | trivial) & (unreachable | (~holds & (m >= n_hi)))
    ok = holds & ((m <= n_lo) | ~holds_before)
    rest = np.flatnonzero(~(invalid | trivial | beyond | ok))
    final, achieved, infeasible = m.copy(), e_m.copy(), beyond.copy()
    if rest.size:
        n, fails, e = _search_expected(evaluate, m, rest, holds[rest], target_b[rest],
                                       n_lo[rest], n_hi[rest])
        final[rest], infeasible[rest], achieved[rest] = n, fails, e
    flat = (final, invalid, trivial, infeasible, achieved, n_lo, n_hi)
    return _expected_finish(*(v.reshape(shape) for v in flat), n_min=n_min, n_max=n_max)


def _search_expected(evaluate, m, rest, below, target, n_lo, n_hi):
    """The answers of the elements ``rest`` whose guess m was off: below m where cond(m - 1)
    holds, else above m, up to n_max (where cond is tried). A galloping search away from m,
    then bisection; each round is one evaluation of the whole batch by the public program (the
    rest at their probes, the others at their m): the same program on the same shapes as a
    caller's check, so the same rounding (a subset's program may order the quadrature's sum
    differently). The guesses miss by one or two, so a round or two is the rule.
    ``evaluate``: E[best of n] for the batch (flat n and result). Returns (n, infeasible, E at
    n) for the rest."""
    dtype = m.dtype
    start = m[rest]
    # lo: the largest n known to fail (n_lo - 1 once nothing below n_lo is left), hi: the
    # smallest known to hold (inf: not yet found)
    lo = np.where(below, -np.inf, start)
    hi = np.where(below, prev_n(np, start), np.inf)
    lo = np.where(below & (hi <= n_lo), n_lo - 1, lo)
    step = np.ones_like(start)
    e_hi = np.full_like(start, np.nan)
    for round_ in range(200):  # (bounded: each round halves a bracket or doubles a step)
        down = np.isinf(lo)  # galloping down from a known hi
        up = np.isinf(hi) & (lo < n_hi)  # up from a known lo: m + 1, then n_max
        # (an integer between lo and hi that the dtype holds: above 2**24 float32 steps by 2+)
        inner_lo, inner_hi = next_n(np, lo), prev_n(np, hi)
        halve = np.isfinite(lo) & np.isfinite(hi) & (inner_lo <= inner_hi)
        moving = down | up | halve
        if not np.any(moving):
            break
        # (halving a bracket opened above m: gallop from its bottom first, the answer is near)
        gallop = halve & ~below & (step < 0.5 * (hi - lo))
        probe = np.where(down, np.maximum(hi - step, n_lo),
                         np.where(up, np.where(round_ == 0, next_n(np, lo), n_hi),
                                  np.where(gallop, lo + step, np.clip(
                                      np.floor(0.5 * (lo + hi)), inner_lo, inner_hi))))
        points = m.copy()
        points[rest] = np.where(moving, probe, start)
        e = evaluate(points).reshape(-1)[rest]
        holds = e >= target
        lo = np.where(moving & ~holds, probe, lo)
        hi = np.where(moving & holds, probe, hi)
        e_hi = np.where(moving & holds, e, e_hi)
        lo = np.where(np.isinf(lo) & (hi <= n_lo), n_lo - 1, lo)
        step = np.where(down | gallop, 2.0 * step, step)
    infeasible = np.isinf(hi)
    final = np.where(infeasible, n_hi, hi)
    missing = np.isnan(e_hi)
    if np.any(missing):  # E where no probe has been made: n_max, or m - 1
        points = m.copy()
        points[rest] = final
        e_all = evaluate(points).reshape(-1)[rest]
        e_hi = np.where(missing, e_all, e_hi)
    return final.astype(dtype), infeasible, e_hi


# ---------------------------------------------------------------- k of N

# Three programs, each XLA's CPU fusion runs several times faster apart than together: the
# guess (Newton steps), its check (two evaluations of the lower tail; one code per element,
# NaN where the check leaves the element open) and the Solution. The open elements (near-ties
# of the rounding) are solved on the host's gathered subset by the plain careful program.


@partial(jax.jit, static_argnames="k_max")
def _k_of_n_guess(dist, target, confidence, packed, *, k, n_min, n_max, k_max):
    q = _solve._query(dist, target, confidence, n_min, n_max, k)
    b = _solve._k_of_n_bounds(q, jnp.real(packed), jnp.imag(packed))
    return jnp.broadcast_to(_solve._k_of_n_guess(q, b, k_max), q.shape)


@partial(jax.jit, static_argnames="k_max")
def _k_of_n_check(dist, target, confidence, packed, m, *, k, n_min, n_max, k_max):
    """log P(Bin(m, S) <= k - 1) where the two evaluations settle m, NaN elsewhere."""
    q = _solve._query(dist, target, confidence, n_min, n_max, k)
    b = _solve._k_of_n_bounds(q, jnp.real(packed), jnp.imag(packed))
    tail, _, rest = _solve._k_of_n_check_parts(q, b, m, k_max)
    return jnp.broadcast_to(jnp.where(rest, jnp.nan, tail), q.shape)


@jax.jit
def _k_of_n_settle(dist, target, confidence, packed, m, tail, *, k, n_min, n_max):
    """The Solution of checked guesses (the careful path's arithmetic, as _k_of_n_parts)."""
    q = _solve._query(dist, target, confidence, n_min, n_max, k)
    b = _solve._k_of_n_bounds(q, jnp.real(packed), jnp.imag(packed))
    beyond = ~b.done & ~(tail <= q.log1mc) & (m >= q.n_hi)
    infeasible = b.pre_infeasible | beyond
    final = jnp.where(beyond, q.n_hi, m)
    p = jnp.where(b.never, 0.0, -jnp.expm1(tail))
    achieved = jnp.where(q.trivial & (final >= q.kf), 1.0, p)
    return _solve._finish(q.shape, final, q.invalid, q.trivial, infeasible, q.n_lo, q.n_hi,
                          final, final, q.ints, lambda _: achieved)


@partial(jax.jit, donate_argnums=0)
def _scatter(sol, idx, sub):
    return Solution(*(a.reshape(-1).at[idx].set(b).reshape(a.shape) for a, b in zip(sol, sub,
                                                                                     strict=True)))


def k_of_n(dist: Any, target: Any, confidence: Any, k: Any, n_min: Any, n_max: Any) -> Solution:
    """k of N for concrete single-device inputs (see above)."""
    k_max = _solve._static_k_max(k)
    packed = _solve._log_cdf_sf_packed(dist, target)
    kw = dict(k=k, n_min=n_min, n_max=n_max)
    m = _k_of_n_guess(dist, target, confidence, packed, k_max=k_max, **kw)
    tail = _k_of_n_check(dist, target, confidence, packed, m, k_max=k_max, **kw)
    idx = np.flatnonzero(np.isnan(np.asarray(tail)))
    sol = _k_of_n_settle(dist, target, confidence, packed, m, tail, **kw)
    if idx.size == 0:
        return sol
    shape = m.shape
    idx = np.concatenate([idx, np.full(_bucket(idx.size, m.size) - idx.size, idx[0])])
    idx = jnp.asarray(idx.astype(np.int32))
    flat = _gather((*_solve.dist_params(dist), target, confidence, k, n_min, n_max, packed),
                   shape, idx)
    sub = _k_of_n_bisected(_solve._Params(*flat[:4]), flat[4], flat[5], flat[9], k=flat[6],
                           n_min=flat[7], n_max=flat[8], k_max=k_max)
    return _scatter(sol, idx, sub)


@partial(jax.jit, static_argnames="k_max")
def _k_of_n_bisected(dist, target, confidence, packed, *, k, n_min, n_max, k_max):
    """The careful answers by plain bisection over [the k = 1 answer, Chernoff's bound] (a
    small program for the few elements the guess leaves open)."""
    q = _solve._query(dist, target, confidence, n_min, n_max, k)
    b = _solve._k_of_n_bounds(q, jnp.real(packed), jnp.imag(packed))
    hi = jnp.where(q.kf <= 1.0, b.lo, jnp.clip(b.chernoff, b.lo, q.n_hi))
    hi = jnp.where(b.done, b.lo, hi)
    n, fails, tail = _solve._k_of_n_bisect(b.ls, b.lf, q.kf, q.log1mc, jnp.minimum(b.lo, hi), hi,
                                           b.done, q.n_hi, k_max=k_max)
    infeasible = b.pre_infeasible | (fails & ~b.done)
    final = _solve._final_n(q, jnp.where(b.done, hi, n), infeasible, jnp.maximum(q.kf, q.n_lo))
    tail = jnp.where(b.done, os_.log_binom_lower(b.ls, b.lf, final, q.kf, k_max=k_max), tail)
    p = jnp.where(b.never, 0.0, -jnp.expm1(tail))
    achieved = jnp.where(q.trivial & (final >= q.kf), 1.0, p)
    return _solve._finish(q.shape, final, q.invalid, q.trivial, infeasible, q.n_lo, q.n_hi,
                          final, final, q.ints, lambda _: achieved)
