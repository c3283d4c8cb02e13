"""NumPy/SciPy reference backend: the same functions as the JAX core, written plainly.

Special functions are evaluated in float64 with SciPy and cast to the input dtype; the solver's
arithmetic (ceil, the exactness fix-ups, the bisection tests) runs in the input dtype so that its
answers satisfy their definitions in that precision, like the JAX backend's. Used when JAX is not
installed, as the "NumPy closed form" in benchmarks, and as a second opinion in the tests.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import special as sc

from optscale import _fastpath, _fit
from optscale._checks import INT_MAX, N_MAX_DEFAULT, any_invalid
from optscale._float_ints import next_n, prev_n
from optscale._quadrature import LOG_V, W_V
from optscale._solution import Solution, Status

__all__ = [
    "N_MAX_DEFAULT", "best_of_n_prob", "best_of_n_quantile", "cdf", "cost_aware_samples",
    "expected_best", "fit_truncnorm", "icdf", "icdf_log", "isf", "k_of_n_prob",
    "log_binom_lower", "log_cdf_sf", "truncnorm_from_moments",
    "logcdf", "logpdf", "logsf", "mean", "min_samples", "sample", "sf", "variance",
]

LN2 = math.log(2.0)
_GL_X, _GL_W = np.polynomial.legendre.leggauss(8)


def _dtype(*xs: Any) -> np.dtype:
    dtype = np.result_type(*xs)
    return dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)


def _params64(dist: Any, *xs: Any) -> tuple[np.dtype, tuple[np.ndarray, ...]]:
    values = (dist.mu, dist.sigma, dist.low, dist.high, *xs)
    dtype = _dtype(*values)
    return dtype, tuple(np.asarray(np.asarray(v, dtype), np.float64) for v in values)


def _valid(mu, sigma, low, high, dtype=np.float64):
    """The parameter rules, checked in the input's precision (float32 overflows sooner)."""
    cast = lambda v: np.asarray(v, dtype)  # noqa: E731
    return ~any_invalid(np, mu=cast(mu), sigma=cast(sigma), low=cast(low), high=cast(high))


def _log1mexp(x):
    x = np.asarray(x, np.float64)
    with np.errstate(divide="ignore"):
        return np.where(x > -LN2, np.log(-np.expm1(np.minimum(x, 0.0))),
                        np.log1p(-np.exp(np.minimum(x, -LN2))))


def _log_hazard(x):
    """log(phi(x) / Phi(-x)) for x >= 0: -log(sqrt(pi/2) erfcx(x / sqrt 2)) below 8, and
    log(x + 1 / CF) above, from Laplace's continued fraction (erfcx underflows far out)."""
    x = np.asarray(x, np.float64)
    near = -np.log(math.sqrt(math.pi / 2.0) * sc.erfcx(np.minimum(x, 8.0) / math.sqrt(2.0)))
    far = np.maximum(x, 8.0)
    u = far
    for k in range(14, 1, -1):
        u = far + k / u
    return np.where(x < 8.0, near, np.log(far + 1.0 / u))


def _tail_log_ratio(a, b, w):
    """(log Phi(-a), log Phi(-b) - log Phi(-a)) for 0 <= a <= b, w = b - a: short intervals by
    integrating the hazard, long ones by differencing log Phi below 8 and, above, by
    -w (a + w/2) - log(h(b) / h(a)) (differencing logs of size a^2 / 2 loses eps a^2, and
    overflows for a > 1e154)."""
    log_a = sc.log_ndtr(-a)
    with np.errstate(all="ignore"):
        direct = np.where(a < 8.0, sc.log_ndtr(-b) - log_a,
                          -w * (a + 0.5 * w) - (_log_hazard(b) - _log_hazard(a)))
        nodes = a[..., None] + 0.5 * w[..., None] * (1.0 + _GL_X)
        quad = -0.5 * w * np.sum(_GL_W * np.exp(_log_hazard(nodes)), axis=-1)
    return log_a, np.where(w <= a + 1.0, quad, direct)


def _log_mass_parts(a, b, w):
    """log(Phi(b) - Phi(a)) as (anchor, rel, tail ratio); anchor 0 for central intervals."""
    a, b, w = np.broadcast_arrays(*(np.asarray(v, np.float64) for v in (a, b, w)))
    anchor, rel, ratio = np.zeros(a.shape), np.empty(a.shape), np.full(a.shape, np.nan)
    right = a >= 0
    left = (b <= 0) & ~right
    central = ~(left | right)
    for mask, lo_, hi_ in ((right, a, b), (left, -b, -a)):
        anchor[mask], ratio[mask] = _tail_log_ratio(lo_[mask], hi_[mask], w[mask])
        rel[mask] = _log1mexp(ratio[mask])
    ca, cb = a[central], b[central]
    tails = sc.ndtr(ca) + sc.ndtr(-cb)
    mass = 0.5 * (sc.erf(cb / math.sqrt(2.0)) - sc.erf(ca / math.sqrt(2.0)))
    rel[central] = np.where(tails < 0.5, np.log1p(-tails), np.log(mass))
    return anchor, rel, ratio


def _log_gauss_mass(a, b, w):
    anchor, rel, _ = _log_mass_parts(a, b, w)
    return anchor + rel


def _std(mu, sigma, low, high):
    alpha, beta = (low - mu) / sigma, (high - mu) / sigma
    return alpha, beta, _log_gauss_mass(alpha, beta, (high - low) / sigma)


def _logs64(mu, sigma, low, high, x):
    """float64 (log cdf, log sf, log pdf) at x strictly inside (low, high); one-sided ranges are
    mirrored into the right tail, where the masses' common anchor cancels (see the JAX
    version)."""
    with np.errstate(all="ignore"):
        alpha, beta = (low - mu) / sigma, (high - mu) / sigma
        width, d_lo, d_hi = (high - low) / sigma, (x - low) / sigma, (high - x) / sigma
        flip = (beta <= 0) & (alpha < 0)
        a, b = np.where(flip, -beta, alpha), np.where(flip, -alpha, beta)
        z = np.where(flip, -(x - mu) / sigma, (x - mu) / sigma)
        dl, dh = np.where(flip, d_hi, d_lo), np.where(flip, d_lo, d_hi)
        anchor_lo, rel_lo, ratio_lo = _log_mass_parts(a, z, dl)
        anchor_hi, rel_hi, _ = _log_mass_parts(z, b, dh)
        _, rel_z, _ = _log_mass_parts(a, b, width)
        one_sided = a >= 0
        lc = np.where(one_sided, rel_lo, anchor_lo + rel_lo) - rel_z
        ls = np.where(one_sided, ratio_lo + rel_hi, anchor_hi + rel_hi) - rel_z
        hazard = _log_hazard(np.where(one_sided, a, 0.0))
        lpdf = np.where(one_sided, hazard - 0.5 * dl * (2 * a + dl),
                        -0.5 * z * z - 0.5 * math.log(2 * math.pi)) - rel_z - np.log(sigma)
        lc, ls = np.minimum(lc, 0.0), np.minimum(ls, 0.0)
        lc, ls = np.where(flip, ls, lc), np.where(flip, lc, ls)
        return (np.where(lc < -LN2, lc, _log1mexp(ls)), np.where(ls < -LN2, ls, _log1mexp(lc)),
                lpdf)


def _all_logs(dist: Any, x: Any):
    dtype, (mu, sigma, low, high, x) = _params64(dist, x)
    below, above = x <= low, x >= high
    xs = np.where(below | above, 0.5 * (low + high), x)
    lc, ls, lpdf = _logs64(mu, sigma, low, high, xs)
    lc = np.where(below, -np.inf, np.where(above, 0.0, lc))
    ls = np.where(below, 0.0, np.where(above, -np.inf, ls))
    ok = _valid(mu, sigma, low, high, dtype)
    return dtype, np.where(ok, lc, np.nan), np.where(ok, ls, np.nan), (below, above, lpdf, ok)


def log_cdf_sf(dist: Any, x: Any) -> tuple[np.ndarray, np.ndarray]:
    dtype, lc, ls, _ = _all_logs(dist, x)
    return lc.astype(dtype), ls.astype(dtype)


def logcdf(dist: Any, x: Any) -> np.ndarray:
    return log_cdf_sf(dist, x)[0]


def logsf(dist: Any, x: Any) -> np.ndarray:
    return log_cdf_sf(dist, x)[1]


def cdf(dist: Any, x: Any) -> np.ndarray:
    return np.exp(logcdf(dist, x))


def sf(dist: Any, x: Any) -> np.ndarray:
    return np.exp(logsf(dist, x))


def logpdf(dist: Any, x: Any) -> np.ndarray:
    dtype, (mu, sigma, low, high, x) = _params64(dist, x)
    inside = (x >= low) & (x <= high)
    lpdf = _logs64(mu, sigma, low, high, np.where(inside, x, 0.5 * (low + high)))[2]
    out = np.where(inside, lpdf, -np.inf)
    return np.where(_valid(mu, sigma, low, high, dtype), out, np.nan).astype(dtype)


def _quantile64(mu, sigma, low, high, log_q, newton_steps=2, dtype=np.float64):
    """float64 quantile from log q: first guess (scipy's ppf, or the exponential approximation
    deep in a one-sided tail), then Newton on the log distance to the bound the mass piles
    against (see the JAX version)."""
    with np.errstate(all="ignore"):
        alpha, beta, log_z = _std(mu, sigma, low, high)
        width = (high - low) / sigma
        log_1mq = _log1mexp(log_q)
        solve_cdf = log_q <= -LN2
        deep_right, deep_left = alpha >= 8, beta <= -8
        deep = deep_right | deep_left
        # the far-bound guess is off by eps r^2 in log probability (see the JAX version)
        r = np.where(deep_right, alpha, np.where(deep_left, -beta, 8.0))
        lost = deep & ~(np.isfinite(log_z) & (np.finfo(np.float64).eps * r * r <= 1e-3))
        from_low = np.where(lost, deep_right, solve_cdf)
        log_p = np.where(from_low, log_q, log_1mq)
        edge = np.where(from_low, alpha, -beta)
        add = sc.ndtri_exp(np.logaddexp(sc.log_ndtr(edge), log_p + log_z))
        l_sf = sc.log_ndtr(-edge)
        sub = -sc.ndtri_exp(l_sf + _log1mexp(np.minimum(log_p + log_z - l_sf, 0.0)))
        z0 = np.where(edge < 0, add, sub)
        delta = np.clip(z0 - edge, 0.0, width)
        linear = np.exp(log_p + log_z + 0.5 * edge * edge + 0.5 * math.log(2 * math.pi))
        tiny = delta <= 64 * np.finfo(np.float64).eps * (1 + np.abs(edge))
        delta = np.where(tiny, np.minimum(linear, width), delta)
        bound = np.where(from_low, low, high)
        direct = (edge < 0) & (np.abs(bound) + sigma * np.abs(z0 - edge)
                               > 1e3 * (np.abs(mu) + sigma * np.abs(z0)))
        x_direct = np.clip(mu + np.where(from_low, sigma, -sigma) * z0, low, high)
        same_side = np.where(deep_right, from_low, ~from_low)
        c = r * width + 0.5 * width * width
        log_near = np.where(same_side, log_p, _log1mexp(log_p))
        ell = -_log1mexp(np.minimum(log_near + _log1mexp(-c), 0.0))
        expo = np.minimum(2 * ell / (r + np.hypot(r, np.sqrt(2 * ell))), width)
        delta = np.where(deep & same_side, expo, delta)
        u = np.log(delta)
        u = np.where(np.isfinite(u) | (deep & (delta == 0)), u, np.log(0.5 * width))
        target = np.where(solve_cdf, log_q, log_1mq)
        sign = np.where(solve_cdf == from_low, 1.0, -1.0)
        for _ in range(newton_steps):
            d = np.exp(u)
            x = np.clip(np.where(from_low, low + sigma * d, high - sigma * d), low, high)
            inside = (x > low) & (x < high)
            lc, ls, lpdf = _logs64(mu, sigma, low, high, np.where(inside, x, 0.5 * (low + high)))
            g = np.where(solve_cdf, lc, ls) - target
            slope = sign * np.exp(lpdf - np.where(solve_cdf, lc, ls) + np.log(sigma) + u)
            u_new = np.minimum(u - g / slope, np.log(width))
            u = np.where(inside & np.isfinite(u_new), u_new, u)
        d = np.exp(u)
        x = np.clip(np.where(from_low, low + sigma * d, high - sigma * d), low, high)
        x = np.where(direct, x_direct, x)
    x = np.where(log_q == -np.inf, low, np.where(log_q == 0.0, high, x))
    return np.where(_valid(mu, sigma, low, high, dtype) & (log_q <= 0), x, np.nan)


def icdf_log(dist: Any, log_q: Any) -> np.ndarray:
    dtype, (mu, sigma, low, high, log_q) = _params64(dist, log_q)
    return _quantile64(mu, sigma, low, high, log_q, dtype=dtype).astype(dtype)


def _log_prob(q, complement=False):
    q = np.asarray(q, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        lq = np.log1p(-q) if complement else np.log(q)
    return np.where((q >= 0) & (q <= 1), lq, np.nan)


def icdf(dist: Any, q: Any) -> np.ndarray:
    dtype, (mu, sigma, low, high, q) = _params64(dist, q)
    return _quantile64(mu, sigma, low, high, _log_prob(q), dtype=dtype).astype(dtype)


def isf(dist: Any, q: Any) -> np.ndarray:
    dtype, (mu, sigma, low, high, q) = _params64(dist, q)
    return _quantile64(mu, sigma, low, high, _log_prob(q, complement=True),
                       dtype=dtype).astype(dtype)


_GL32_X, _GL32_W = np.polynomial.legendre.leggauss(32)
_GL32_X, _GL32_W = 0.5 * (_GL32_X + 1.0), 0.5 * _GL32_W


def _moments(dist: Any):
    """(dtype, mean, variance): quadrature on narrow or one-tail ranges, closed forms otherwise
    (see the JAX version for why)."""
    dtype, (mu, sigma, low, high) = _params64(dist)
    with np.errstate(all="ignore"):
        alpha, beta, log_z = _std(mu, sigma, low, high)
        width = (high - low) / sigma
        left_tail = beta <= 0
        narrow = (width <= 1) & (width * np.maximum(np.abs(alpha), np.abs(beta)) <= 1)
        quad = narrow | left_tail | (alpha >= 0)
        a = np.where(quad, np.where(left_tail, -beta, alpha), 0.0)
        reach = np.where(a >= 0, 80.0 / (a + np.hypot(a, math.sqrt(80.0))), np.inf)
        s = np.where(quad, np.minimum(width, reach), 1.0)[..., None] * _GL32_X
        log_k = -a[..., None] * s - 0.5 * s * s
        k = _GL32_W * np.exp(log_k - log_k.max(axis=-1, keepdims=True))
        es = (k * s).sum(-1) / k.sum(-1)
        vs = (k * (s - es[..., None]) ** 2).sum(-1) / k.sum(-1)
        c = 0.5 * math.log(2 * math.pi)
        pa = np.exp(-0.5 * alpha * alpha - c - log_z)
        pb = np.exp(-0.5 * beta * beta - c - log_z)
        m = pa - pb
        v = 1.0 + (alpha - m) * pa - (beta - m) * pb
        mean_ = np.where(quad, np.where(left_tail, high - sigma * es, low + sigma * es),
                         mu + sigma * m)
        var_ = sigma * sigma * np.where(quad, vs, np.clip(v, 0.0, None))
    ok = _valid(mu, sigma, low, high, dtype)
    mean_ = np.where(ok, np.clip(mean_, low, high), np.nan)
    var_ = np.where(ok, np.minimum(var_, 0.25 * (high - low) ** 2), np.nan)
    return dtype, mean_, var_


def mean(dist: Any) -> np.ndarray:
    dtype, mean_, _ = _moments(dist)
    return mean_.astype(dtype)


def variance(dist: Any) -> np.ndarray:
    dtype, _, var_ = _moments(dist)
    return var_.astype(dtype)


def sample(dist: Any, key: Any, sample_shape: tuple[int, ...] = ()) -> np.ndarray:
    """Inverse-CDF samples; ``key`` is a seed or ``np.random.Generator``."""
    rng = key if isinstance(key, np.random.Generator) else np.random.default_rng(key)
    dtype, (mu, sigma, low, high) = _params64(dist)
    shape = tuple(sample_shape) + np.broadcast_shapes(mu.shape, sigma.shape, low.shape, high.shape)
    u = rng.random(shape)
    u = np.where(u > 0, u, np.finfo(np.float64).tiny)
    return _quantile64(mu, sigma, low, high, np.log(u), newton_steps=1,
                       dtype=dtype).astype(dtype)


# ---------------------------------------------------------------- order statistics

def best_of_n_prob(dist: Any, target: Any, n: Any) -> np.ndarray:
    log_f = logcdf(dist, target)
    return -np.expm1(np.asarray(n, log_f.dtype) * log_f)


def best_of_n_quantile(dist: Any, q: Any, n: Any) -> np.ndarray:
    dtype, (mu, sigma, low, high, q) = _params64(dist, q)
    log_q = _log_prob(q) / np.asarray(n, np.float64)
    return _quantile64(mu, sigma, low, high, log_q, dtype=dtype).astype(dtype)


def log_binom_lower(log_s, log_f, n, k):
    """log P(Bin(n, s) <= k-1): k terms by the ratio recurrence, in the dtype of log_f.

    Elements with n < k are 0 (the whole distribution) without the recurrence: it runs to the
    largest k among the others only (a k far above n costs nothing, as in the other backends).
    """
    log_s, log_f, n, k = np.broadcast_arrays(log_s, log_f, n, k)
    dtype = log_f.dtype
    f_zero, s_zero = log_f == -np.inf, log_s == -np.inf
    lf = np.where(f_zero | s_zero, -1.0, log_f).astype(dtype)
    step = (np.where(f_zero | s_zero, -1.0, log_s).astype(dtype) - lf)
    with np.errstate(all="ignore"):
        term = (n * lf).astype(dtype)
        acc = term.copy()
        for j in range(1, int(np.max(k, where=n >= k, initial=1))):
            term = (term + np.log(np.maximum(n - j + 1, 0) / np.asarray(j, dtype)) + step)
            acc = np.where(j < k, np.logaddexp(acc, term), acc).astype(dtype)
    acc = np.where(n < k, 0.0, np.minimum(acc, 0.0))
    acc = np.where(f_zero, np.where(n < k, 0.0, -np.inf), acc)
    return np.where(s_zero & ~f_zero, 0.0, acc).astype(dtype)


def k_of_n_prob(dist: Any, target: Any, n: Any, k: Any) -> np.ndarray:
    log_f, log_s = log_cdf_sf(dist, target)
    dtype = log_f.dtype
    n, k = np.asarray(n, dtype), np.asarray(k, dtype)
    lower = log_binom_lower(log_s, log_f, n, k)
    with np.errstate(all="ignore"):
        upper = sc.betainc(k, np.maximum(n - k + 1, 1), np.exp(log_s.astype(np.float64)))
    p = np.where(lower < -LN2, -np.expm1(lower), upper)
    return np.where(n < k, 0.0, p).astype(dtype)


def _expected_best64(mu, sigma, low, high, n, dtype=np.float64):
    e = lambda v: np.asarray(v, np.float64)[..., None]  # noqa: E731
    x = _quantile64(e(mu), e(sigma), e(low), e(high), LOG_V / e(n), newton_steps=0,
                    dtype=dtype)
    return np.sum(W_V * x, axis=-1)


def expected_best(dist: Any, n: Any) -> np.ndarray:
    """E[max of n] by Gauss-Legendre on v = u^3/(u^3+(1-u)^3) of int_0^1 F^-1(v^(1/n)) dv."""
    dtype, (mu, sigma, low, high, n) = _params64(dist, n)
    return _expected_best64(mu, sigma, low, high, n, dtype).astype(dtype)


# ---------------------------------------------------------------- solvers

def _ceil_exact(log_f, log_bound):
    """Smallest integer n >= 0 with n * log_f <= log_bound, exact in the dtype of log_f."""
    with np.errstate(all="ignore"):
        n = np.maximum(np.ceil(log_bound / log_f), 0.0).astype(log_f.dtype)
        n = np.where(n * log_f > log_bound, next_n(np, n), n)
        before = prev_n(np, n)  # (n - 1 as the dtype holds it: see optscale._float_ints)
        n = np.where((n >= 1) & (before * log_f <= log_bound), before, n)
    return n.astype(log_f.dtype)


def _fast_logcdf(dist, t, log1mc, n_lo, n_hi, shape, dtype):
    """log F(t) in ``dtype``: the plain formula (:mod:`optscale._fastpath`) wherever its error
    bound proves that the closed form's n is the careful log F's, the careful path elsewhere.
    The result gives the careful answers, at a fraction of the careful path's cost."""
    with np.errstate(all="ignore"):
        mu, sigma, low, high, x = (np.asarray(v, np.float64) for v in (*dist.params(), t))
        fast = _fastpath.central_logs(np, sc.erfc, mu, sigma, low, high, x)
        log_f = np.broadcast_to(fast.log_f.astype(dtype), shape).copy()
        eps = float(np.finfo(dtype).eps)
        lf = log_f.astype(np.float64)
        d = _fastpath.margin(np, lf, fast.d_log_f, fast.log_size, eps)
        n = _ceil_exact(np.where(log_f < 0, log_f, -1.0).astype(dtype), log1mc)
        n = np.where(log_f < 0, n, np.inf)
        exact = fast.usable & _fastpath.best_exact(np, n, lf, d, np.asarray(log1mc, np.float64),
                                                   n_lo, n_hi, 2.0 ** (np.finfo(dtype).nmant - 1))
    idx = np.flatnonzero(~np.broadcast_to(exact, shape))
    if idx.size:
        sub = [np.broadcast_to(np.asarray(v, dtype), shape).reshape(-1)[idx]
               for v in (*dist.params(), t)]
        log_f.reshape(-1)[idx] = logcdf(_Params(*sub[:4]), sub[4])
    return log_f


def _bisect(cond, lo, hi):
    """Smallest n in [lo, hi] with cond(n) (cond(hi) holds), all brackets at once.

    Over the integers the dtype holds, as the JAX version (optscale/_solve.py): the probe stays
    below hi and a failing probe's successor is the next float, so every round shrinks every
    open bracket (about log2 of its width rounds; above 2**24 in float32 the answer is exact to
    float32's spacing). Below 2**24 the steps are the plain midpoint and n + 1."""
    lo, hi = lo.copy(), hi.copy()
    while np.any(lo < hi):
        open_ = lo < hi
        mid = np.floor(0.5 * (lo + hi))
        mid = np.clip(mid, lo, np.maximum(prev_n(np, hi), lo))
        ok = cond(mid)
        lo = np.where(open_ & ~ok, next_n(np, mid), lo)
        hi = np.where(open_ & ok, mid, hi)
    return hi


def _ints(**kw):
    out = {}
    for name, v in kw.items():
        a = np.asarray(v)
        out[name] = a.astype(np.int64) if a.dtype.kind in "iub" else np.floor(a).astype(np.int64)
    return out


def _result(shape, dtype, n, status_parts, n_min, n_max, n_trivial, n_infeasible, ints,
            achieved_fn):
    invalid, trivial, infeasible = status_parts
    status = np.where(invalid, Status.INVALID, np.where(
        trivial, Status.TRIVIAL, np.where(infeasible, Status.INFEASIBLE, Status.OK)))
    n = np.where(trivial, n_trivial, np.where(infeasible, n_infeasible, n))
    with np.errstate(invalid="ignore"):
        n = np.clip(n, n_min, n_max)
        # to integers with the bounds taken as given (float32 rounds 2**31 - 1 up to 2**31)
        n = np.where(n <= n_min, ints["n_min"], np.where(n >= n_max, ints["n_max"],
                                                         np.nan_to_num(n).astype(np.int64)))
    n = np.where(invalid, np.maximum(ints["n_max"], 1), n)
    n = np.broadcast_to(n, shape).astype(np.int32)
    achieved = achieved_fn(n.astype(dtype))
    # (+0 where it is 0: -expm1(0) is -0, which prints as "-0")
    achieved = np.where(invalid | (achieved == 0.0), 0.0, achieved)
    return Solution(n, np.broadcast_to(status, shape).astype(np.int32),
                    np.broadcast_to(achieved, shape).astype(dtype))


_SQRT_HALF = math.sqrt(0.5)
_EPS = float(np.finfo(np.float64).eps)
_THETA = 2.0 * float(np.finfo(np.float64).tiny)


_BULK_CHUNK = 1 << 15  # queries per pass: the temporaries stay in cache


def _best_bulk(mu, sigma, low, high, target, confidence, n_lo, n_hi):
    """_best_chunk on the flat (or single) arguments, in chunks: with the target above the
    centre, then at or below it on the queries left. (n, status, achieved, done), flat."""
    args = [v if np.ndim(v) == 0 else np.reshape(v, -1)
            for v in (mu, sigma, low, high, target, confidence)]
    size = max(np.size(v) for v in args)
    n, achieved = np.empty(size), np.empty(size)
    status, done = np.zeros(size, np.int32), np.zeros(size, bool)
    for above in (True, False):
        todo = None if above else np.flatnonzero(~done)
        count = size if above else todo.size
        for start in range(0, count, _BULK_CHUNK):
            part = slice(start, start + _BULK_CHUNK) if above else todo[start:start
                                                                         + _BULK_CHUNK]
            got = _best_chunk(*(v if np.ndim(v) == 0 else v[part] for v in args), n_lo, n_hi,
                              above)
            if above:
                n[part], status[part], achieved[part], done[part] = got
            else:  # only what this pass proves: the rest keeps its placeholders
                proven = np.broadcast_to(got[3], part.shape)
                n[part[proven]], status[part[proven]], achieved[part[proven]] = (
                    np.broadcast_to(v, part.shape)[proven] for v in got[:3])
                done[part[proven]] = True
    return n, status, achieved, done


def _best_chunk(mu, sigma, low, high, target, confidence, n_lo, n_hi, above):
    """The k = 1 answer of float64 queries by the plain formula, where its error bound proves it
    the careful one (optscale/_fastpath.py): (n, status, achieved, done), flat, ``done`` where
    proven. The same arithmetic as ``_fastpath.central_logs``, ``margin`` and ``best_exact`` for
    the bulk of queries (central ranges, plainly valid, the target above the centre (``above``)
    or at or below it), where the tail on the far side of the centre needs no error of its own
    (T (8 + 6 u^2) eps <= 4 eps), in fewer passes over the data; the rest is left to the
    general path."""
    with np.errstate(all="ignore"):
        alpha = (low - mu) / sigma
        beta = (high - mu) / sigma
        z = (target - mu) / sigma
        # plainly valid (the rules of _checks), central, the target on the centre's side asked
        ok = (alpha < 0) & (alpha >= -2.0**60) & (beta > 0) & (beta <= 2.0**60)
        ok &= (z > 0) if above else (z <= 0)
        ok &= (beta - alpha >= 2.0**-60) & (sigma >= 2.0**-60) & (sigma <= 2.0**100)
        ok &= (target > low) & (target < high) & (confidence > 0) & (confidence < 1)

        def tail(u, e2):
            """T(|u|) and its error bound T (E0 + e2 u^2) eps + theta, for u >= 0."""
            tv = sc.erfc(u * _SQRT_HALF)
            tv *= 0.5
            err = np.minimum(u, _fastpath.U_CAP)
            err *= err
            err *= e2
            err += _fastpath.E0
            err *= _EPS
            err *= tv
            err += _THETA
            return tv, err

        far_error = 4.0 * _EPS + _THETA  # the far tail's bound, T (8 + 6 u^2) eps <= 4 eps
        if above:
            ta = sc.erfc(alpha * -_SQRT_HALF)
            ta *= 0.5
            tz, ez = tail(z, _fastpath.E2)
            tb, eb = tail(beta, _fastpath.E2_BOUND)
            lower = 1.0 - ta
            lower -= tz
            upper = tz - tb
            dl = ez + far_error
            dl += 2.0 * _EPS
            du = ez + eb
            du += _EPS * np.abs(upper)
        else:
            ta, ea = tail(-alpha, _fastpath.E2_BOUND)
            tz, ez = tail(-z, _fastpath.E2)
            tb = sc.erfc(beta * _SQRT_HALF)
            tb *= 0.5
            lower = tz - ta
            upper = 1.0 - tz
            upper -= tb
            dl = ez + ea
            dl += _EPS * np.abs(lower)
            du = ez + far_error
            du += 2.0 * _EPS
        total = lower + upper
        inv = 1.0 / total
        s = upper * inv
        f = lower * inv
        ds = dl + du
        ds += _EPS * total
        ds *= s
        ds += du
        ds *= inv
        ds += (2.0 * _EPS) * s
        ok &= (lower > 0) & (upper > 0) & (ds <= 0.125 * f)
        log_f = np.log1p(-s)
        d_log_f = ds * 1.01
        d_log_f /= f
        # |log m| <= (|e| + 1) ln 2 for m = x 2^e, and the smaller mass has the larger |e|
        # (both are at most 1)
        size = np.abs(np.frexp(np.minimum(lower, upper))[1])
        abs_lf = np.abs(log_f)
        d_log_f += (2.0 * _EPS) * abs_lf
        # the margin (_fastpath.margin, L = 2): 2 d + eps |log F| (16 + 4 log_size + 8)
        d = (size + 1.0) * (4.0 * 0.6931471805599453)
        d += 24.0
        d *= _EPS * abs_lf
        d += 2.0 * d_log_f
        # _fastpath.best_exact (log F < 0 as upper > 0). Its margins prove the careful answer
        # whatever n is tested, so the quotient's rounding needs no fix-up (_ceil_exact's): an
        # n off by one fails them, and the query takes the general path.
        log1mc = np.log1p(-confidence)
        n = np.ceil(log1mc / log_f)
        big_b = -log1mc
        ok &= d <= abs_lf * 2.0**-41
        beyond = n > n_hi
        m = np.maximum(n, n_lo)
        fine = (m * (abs_lf - d) >= big_b) & ((m <= n_lo) | ((m - 1) * (abs_lf + d) < big_b))
        ok &= np.where(beyond, n_hi * (abs_lf + d) < big_b, fine)
        n = np.where(beyond, n_hi, m)
        achieved = -np.expm1(n * log_f)
    status = np.where(beyond, Status.INFEASIBLE, Status.OK).astype(np.int32)
    return n, status, achieved, ok


def min_samples(dist: Any, target: Any, confidence: Any = None, *, k: Any = 1,
                criterion: str = "probability", n_min: Any = 1,
                n_max: Any = N_MAX_DEFAULT) -> Solution:
    """Smallest n in [n_min, n_max] meeting the criterion; see :func:`optscale.min_samples`."""
    if criterion not in ("probability", "expected"):
        raise ValueError(f"criterion must be 'probability' or 'expected'; got {criterion!r}")
    closed_form = isinstance(k, int) and not isinstance(k, bool) and k == 1
    bounds = np.asarray(n_min), np.asarray(n_max)
    if (criterion == "probability" and closed_form and all(b.ndim == 0 and b.dtype.kind in "iu"
                                                            for b in bounds)
            and 1 <= n_min <= n_max <= INT_MAX):
        params = (*dist.params(), target, confidence)
        if _dtype(*params) == np.float64 and math.prod(np.broadcast_shapes(
                *(np.shape(v) for v in params))):
            return _min_samples_bulk(params, n_min, n_max)
    return _min_samples(dist, target, confidence, k=k, criterion=criterion, n_min=n_min,
                        n_max=n_max)


def _min_samples_bulk(params, n_min, n_max) -> Solution:
    """k = 1 in float64: the bulk by _best_bulk, the rest by the general path."""
    arrays = [np.asarray(v, np.float64) for v in params]
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    size = math.prod(shape)
    # one value or every element, flat (arguments broadcast along some axes only are copied);
    # an array of one repeated value (a common target or confidence) as that value
    flat = [a if a.ndim == 0 else np.broadcast_to(a, shape).reshape(-1) for a in arrays]
    flat = [a[0] if a.ndim and a.size and a[0] == a[-1] and a[0] == a.min() == a.max() else a
            for a in flat]
    n, status, achieved, done = (v if v.size == size else np.repeat(v, size) for v in _best_bulk(
        *flat, float(n_min), float(n_max)))  # (every argument one value: one query's answer)
    with np.errstate(invalid="ignore"):  # (n of the rest is a placeholder)
        n = n.astype(np.int32)
    rest = np.flatnonzero(~done)
    if rest.size:
        sub = [a if a.ndim == 0 else a[rest] for a in flat]
        sol = _min_samples(_Params(*sub[:4]), sub[4], sub[5], n_min=n_min, n_max=n_max)
        n[rest], status[rest], achieved[rest] = (np.broadcast_to(v, rest.shape) for v in sol)
    return Solution(n.reshape(shape), status.reshape(shape), achieved.reshape(shape))


def _min_samples(dist: Any, target: Any, confidence: Any = None, *, k: Any = 1,
                 criterion: str = "probability", n_min: Any = 1,
                 n_max: Any = N_MAX_DEFAULT) -> Solution:
    """min_samples on the general path (every criterion, dtype and argument shape)."""
    extra = (confidence,) if criterion == "probability" else ()
    dtype = _dtype(dist.mu, dist.sigma, dist.low, dist.high, target, *extra)
    mu, sigma, low, high, target = (np.asarray(v, dtype) for v in (*dist.params(), target))
    ints = _ints(k=k, n_min=n_min, n_max=n_max)
    conf = np.asarray(confidence, dtype) if criterion == "probability" else None
    shape = np.broadcast_shapes(*(np.shape(v) for v in (
        mu, sigma, low, high, target, *ints.values(), *(() if conf is None else (conf,)))))
    invalid = any_invalid(np, mu=mu, sigma=sigma, low=low, high=high, target=target,
                          confidence=conf, **ints)
    trivial = target <= low
    safe = lambda v, good: np.where(invalid, good, v).astype(dtype)  # noqa: E731
    sdist = type(dist)(safe(mu, 0.5), safe(sigma, 1.0), safe(low, 0.0), safe(high, 1.0))
    t = safe(target, 0.5)
    # invalid elements get harmless bounds so that no loop runs on them
    n_lo = np.where(invalid, 1, ints["n_min"]).astype(dtype)
    n_hi = np.where(invalid, 1, ints["n_max"]).astype(dtype)
    kf = np.where(invalid, 1, ints["k"]).astype(dtype)

    closed_form = isinstance(k, int) and not isinstance(k, bool) and k == 1
    if criterion == "probability" and closed_form:
        log1mc = np.log1p(-safe(conf, 0.5))
        log_f = _fast_logcdf(sdist, t, log1mc, n_lo, n_hi, shape, dtype)
        never = ~(log_f < 0)  # F(target) == 1 in working precision
        lf = np.where(never | trivial, -1.0, log_f).astype(dtype)
        n = _ceil_exact(lf, log1mc)
        infeasible = never | (n > n_hi)

        def achieved(n):
            return np.where(trivial, 1.0, -np.expm1(n * np.where(never, 0.0, lf)))

        n_trivial = n_lo
    elif criterion == "probability":
        log1mc = np.log1p(-safe(conf, 0.5))
        log_f, log_s = log_cdf_sf(sdist, t)
        never = ~(log_f < 0)
        lf = np.where(never | trivial, -1.0, log_f).astype(dtype)
        n1 = np.minimum(_ceil_exact(lf, log1mc), n_hi + 1)  # beyond n_max: infeasible anyway

        def lower_tail(n):
            return log_binom_lower(log_s, lf, np.asarray(n, dtype), kf)

        def cond(n):
            return lower_tail(n) <= log1mc

        lo = np.maximum(np.maximum(n1, kf), n_lo)
        ell = -log1mc
        need = (kf - 1) + ell + np.sqrt(ell * ell + 2 * ell * (kf - 1))
        with np.errstate(over="ignore"):
            chernoff = np.ceil(need * np.exp(-log_s)) + 1
        hi = np.where(kf <= 1, lo, np.minimum(np.maximum(chernoff, lo), n_hi)).astype(dtype)
        ok_hi = cond(hi)
        retry = ~ok_hi & (hi < n_hi)
        hi = np.where(retry, n_hi, hi).astype(dtype)
        ok_hi = np.where(retry, cond(hi), ok_hi)
        infeasible = never | ~ok_hi | (lo > n_hi)
        done = invalid | trivial | infeasible
        n = _bisect(cond, np.where(done, hi, lo), hi)

        def achieved(n):
            # F(target) == 1: nobody reaches the target (lf is only a placeholder there)
            p = np.where(never, 0.0, -np.expm1(lower_tail(n)))
            return np.where(trivial & (n >= kf), 1.0, p)

        n_trivial = np.maximum(kf, n_lo)
    else:
        def expected(n):
            m, s, lo_, hi_ = sdist.params()
            return _expected_best64(m, s, lo_, hi_, n).astype(dtype)

        def cond(n):
            return expected(n) >= t

        ok_hi = cond(np.broadcast_to(n_hi, shape))
        infeasible = (target >= high) | ~ok_hi
        done = invalid | trivial | infeasible
        n = _bisect(cond, np.broadcast_to(np.where(done, n_hi, n_lo), shape).astype(dtype),
                    np.broadcast_to(n_hi, shape).astype(dtype))
        achieved, n_trivial = expected, n_lo
    return _result(shape, dtype, n, (invalid, trivial, infeasible & ~trivial), n_lo, n_hi,
                   n_trivial, n_hi, ints, achieved)


def cost_aware_samples(dist: Any, target: Any, cost: Any, *, n_min: Any = 1,
                       n_max: Any = N_MAX_DEFAULT) -> Solution:
    """argmax over n in [n_min, n_max] of P(best of n >= target) - cost * n."""
    dtype = _dtype(dist.mu, dist.sigma, dist.low, dist.high, target, cost)
    mu, sigma, low, high, target, cost = (np.asarray(v, dtype)
                                          for v in (*dist.params(), target, cost))
    ints = _ints(n_min=n_min, n_max=n_max)
    shape = np.broadcast_shapes(*(np.shape(v) for v in (
        mu, sigma, low, high, target, cost, *ints.values())))
    invalid = any_invalid(np, mu=mu, sigma=sigma, low=low, high=high, target=target, cost=cost,
                          **ints)
    trivial = target <= low
    n_lo, n_hi = ints["n_min"].astype(dtype), ints["n_max"].astype(dtype)
    log_f, log_s = log_cdf_sf(type(dist)(mu, sigma, low, high), target)
    never = ~(log_f < 0)
    lf = np.where(never | trivial, -1.0, log_f).astype(dtype)
    with np.errstate(all="ignore"):
        log_cost = np.log(np.where(invalid, 1.0, cost)).astype(dtype)
        n = _ceil_exact(lf, (log_cost - log_s).astype(dtype))
    infeasible = never | (n > n_hi)

    def achieved(n):
        return np.where(trivial, 1.0, -np.expm1(n * np.where(never, 0.0, lf)))

    return _result(shape, dtype, n, (invalid, trivial, infeasible & ~trivial), n_lo, n_hi, n_lo,
                   np.where(never, n_lo, n_hi), ints, achieved)


# ---------------------------------------------------------------- estimation

_OPS = _fit.Ops(np, _log_gauss_mass, lambda *a, **k: _fit.python_run(_OPS, *a, **k),
                lambda *a, **k: _fit.plain_call(_OPS, *a, **k))


def fit_truncnorm(scores, mask, low, high, prior, bounds, *, clip, max_iter, tol):
    """The generic Newton fit (:mod:`optscale._fit`) on NumPy, in float64."""
    dtype = np.asarray(scores).dtype
    f64 = lambda v: None if v is None else np.asarray(v, np.float64)  # noqa: E731
    prior = None if prior is None else tuple(f64(v) for v in prior)
    bounds = tuple(tuple(f64(v) for v in pair) for pair in bounds)
    with np.errstate(all="ignore"):
        out = _fit.fit(_OPS, f64(scores), np.asarray(mask, bool), f64(low), f64(high), prior,
                       bounds, clip, max_iter, tol)
    return _fit.Fit(*(np.asarray(v, dtype) for v in out[:4]), out.status, out.n_iter)


def truncnorm_from_moments(mean, std, low, high, bounds, *, max_iter):
    dtype = np.result_type(mean, std, np.float32)
    f64 = lambda v: np.asarray(v, np.float64)  # noqa: E731

    with np.errstate(all="ignore"):
        mu, sigma, status, res = _fit.match_moments(
            _OPS, _tn_moments, f64(mean), f64(std), f64(low), f64(high),
            tuple(tuple(f64(v) for v in pair) for pair in bounds), max_iter)
    return mu.astype(dtype), sigma.astype(dtype), status, res.astype(dtype)


def _tn_moments(ops, mu, sigma, low, high):
    _, m, v = _moments(_Params(mu, sigma, low, high))
    return m, v


class _Params:
    """Parameters with the attributes the distribution functions read."""

    def __init__(self, mu, sigma, low, high):
        self.mu, self.sigma, self.low, self.high = mu, sigma, low, high

    def params(self):
        return self.mu, self.sigma, self.low, self.high
