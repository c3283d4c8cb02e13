"""Truncated-normal math in JAX: log normaliser, logpdf/logcdf/logsf, quantiles, moments, sampling.

All functions take a :class:`~optscale.TruncatedNormal` (any pytree with mu, sigma, low, high)
and follow the dtype of their inputs. Invalid parameters (sigma <= 0, non-finite values,
low >= high) give NaN here; the solvers turn them into a status code.

Gradients are finite wherever values are: invalid elements are computed on stand-in
parameters and masked (so they contribute a zero gradient), every branch of a ``where`` sees
arguments in its own domain, the log CDF / SF / density have a closed-form JVP, and polished
quantiles are differentiated implicitly (dx = -dF / f at the root).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optscale._checks import any_invalid
from optscale._special import (
    LN2,
    log1mexp,
    log_gauss_mass,
    log_mass,
    log_ndtr,
    ndtri_exp,
    norm_logpdf,
    tail_point,
)

__all__ = [
    "cdf", "icdf", "icdf_log", "isf", "log_cdf_sf", "log_cdf_sf_packed", "logcdf", "logpdf",
    "logsf", "mean",
    "params", "sample", "sf", "valid_params", "variance",
]


def _float_dtype(*xs: Any) -> Any:
    dtype = jnp.result_type(*xs)
    return dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.result_type(float)


def params(dist: Any, *xs: Any) -> tuple[jax.Array, ...]:
    """(mu, sigma, low, high, *xs) as arrays of one floating dtype (not broadcast)."""
    values = (dist.mu, dist.sigma, dist.low, dist.high, *xs)
    dtype = _float_dtype(*values)
    return tuple(jnp.asarray(v, dtype) for v in values)


def valid_params(mu: jax.Array, sigma: jax.Array, low: jax.Array, high: jax.Array) -> jax.Array:
    """The rules of :func:`optscale._checks.query_checks`: finite, low < high, sigma a normal
    float with the range representable in standard units."""
    return ~any_invalid(jnp, mu=mu, sigma=sigma, low=low, high=high)


def _safe_params(mu, sigma, low, high):
    """(ok, mu, sigma, low, high) with invalid elements replaced by TN(0.5, 1; 0, 1).

    The double-where pattern: results are masked to NaN where ``ok`` is False, and the math in
    between only sees valid parameters, so a masked element contributes a zero gradient
    instead of 0 * NaN.
    """
    ok = valid_params(mu, sigma, low, high)
    return (ok, jnp.where(ok, mu, 0.5), jnp.where(ok, sigma, 1.0), jnp.where(ok, low, 0.0),
            jnp.where(ok, high, 1.0))


def _log_normalizer(mu, sigma, low, high):
    return log_gauss_mass((low - mu) / sigma, (high - mu) / sigma, (high - low) / sigma)


@jax.custom_jvp
def _log_cdf_sf_pdf(mu, sigma, low, high, x):
    """(log P(X <= x), log P(X > x), log density) for x strictly inside (low, high).

    Ranges on the left of mu are mirrored (x -> -x swaps cdf and sf) so that a one-sided range
    always lies in the right tail, where both masses share the anchor log Phi(-alpha) and their
    ratios are formed without it. Special functions are evaluated at alpha, z and beta only.
    The derivative is a closed form (see :func:`_log_cdf_sf_pdf_jvp`).
    """
    return _log_cdf_sf_pdf_parts(mu, sigma, low, high, x)[:3]


@_log_cdf_sf_pdf.defjvp
def _log_cdf_sf_pdf_jvp(primals, tangents):
    """With q_u = log phi(u) - log Z (the density at u in standard units, times sigma):
    d log Z = e^q_beta d beta - e^q_alpha d alpha, d log F = (e^q_z dz - e^q_alpha d alpha) / F
    - d log Z, d log S = (e^q_beta d beta - e^q_z dz) / S - d log Z and d log f = -z dz
    - d log Z - d sigma / sigma. The q come from the accurate pieces (hazards at the bounds in
    a one-sided tail), so no anchor of size alpha^2 / 2 cancels; differentiating the
    evaluation instead would be several times larger to compile and run."""
    mu, sigma, low, high, x = primals
    dmu, dsigma, dlow, dhigh, dx = tangents
    lc, ls, lpdf, q_low, q_high = _log_cdf_sf_pdf_parts(mu, sigma, low, high, x)
    inv = 1.0 / sigma
    z, alpha, beta = (x - mu) * inv, (low - mu) * inv, (high - mu) * inv
    dz = (dx - dmu - z * dsigma) * inv
    d_alpha = (dlow - dmu - alpha * dsigma) * inv
    d_beta = (dhigh - dmu - beta * dsigma) * inv
    q_z = lpdf + jnp.log(sigma)

    def e(v):  # exp of a log-coefficient; an infinite one (an empty tail) carries nothing
        return jnp.where(jnp.isfinite(v), jnp.exp(jnp.where(jnp.isfinite(v), v, 0.0)), 0.0)

    d_log_z = e(q_high) * d_beta - e(q_low) * d_alpha
    d_lc = e(q_z - lc) * dz - e(q_low - lc) * d_alpha - d_log_z
    d_ls = e(q_high - ls) * d_beta - e(q_z - ls) * dz - d_log_z
    d_lpdf = -z * dz - d_log_z - dsigma * inv
    shape = lc.shape
    return (lc, ls, lpdf), tuple(jnp.broadcast_to(t, shape) for t in (d_lc, d_ls, d_lpdf))


def _log_cdf_sf_pdf_parts(mu, sigma, low, high, x):
    """:func:`_log_cdf_sf_pdf` and (q_low, q_high), the log densities at the bounds in standard
    units (log phi(alpha) - log Z, log phi(beta) - log Z) that its derivative needs."""
    alpha, beta = (low - mu) / sigma, (high - mu) / sigma
    d_lo, d_hi = (x - low) / sigma, (high - x) / sigma
    flip = (beta <= 0.0) & (alpha < 0.0)
    a, b = jnp.where(flip, -beta, alpha), jnp.where(flip, -alpha, beta)
    z = jnp.where(flip, -(x - mu) / sigma, (x - mu) / sigma)
    dl, dh = jnp.where(flip, d_hi, d_lo), jnp.where(flip, d_lo, d_hi)
    pa, pz, pb = tail_point(jnp.abs(a)), tail_point(jnp.abs(z)), tail_point(jnp.abs(b))
    anchor_lo, rel_lo, ratio_lo = log_mass(a, pa, z, pz, dl)
    anchor_hi, rel_hi, ratio_hi = log_mass(z, pz, b, pb, dh)
    one_sided = a >= 0.0
    # One-sided: Z = Phi(-a) (1 - e^(D_lo + D_hi)) and the upper mass carries e^(D_lo) more.
    # Middle: Z is the sum of the two masses, with no cancellation.
    rel_z = jnp.where(one_sided, log1mexp(jnp.where(one_sided, ratio_lo + ratio_hi, -1.0)),
                      jnp.logaddexp(anchor_lo + rel_lo, anchor_hi + rel_hi))
    lc = jnp.where(one_sided, rel_lo, anchor_lo + rel_lo) - rel_z
    ls = jnp.where(one_sided, ratio_lo + rel_hi, anchor_hi + rel_hi) - rel_z
    # One-sided: phi(z) / Phi(-a) = hazard(a) exp(-(z - a)(z + a) / 2), with z - a = dl exact.
    log_hazard_a = jnp.log(jnp.where(one_sided, a, 0.0) + pa[1])
    lpdf = jnp.where(one_sided, log_hazard_a - 0.5 * dl * (2.0 * a + dl),
                     norm_logpdf(z)) - rel_z - jnp.log(sigma)
    lc, ls = jnp.minimum(lc, 0.0), jnp.minimum(ls, 0.0)
    lc, ls = jnp.where(flip, ls, lc), jnp.where(flip, lc, ls)
    # Whichever of the two is near 0 comes from the other, which is accurate.
    # (the unused branch gets a harmless argument: log1mexp(0) has an infinite derivative)
    use_lc, use_ls = lc < -LN2, ls < -LN2
    lc, ls = (jnp.where(use_lc, lc, log1mexp(jnp.where(use_lc, -1.0, ls))),
              jnp.where(use_ls, ls, log1mexp(jnp.where(use_ls, -1.0, lc))))
    # At the bounds of the working frame (a <= b): one-sided, phi(a) / Z = hazard(a) / (1 -
    # e^D) and phi(b) / Z = hazard(b) e^D / (1 - e^D), D = log Phi(-b) - log Phi(-a);
    # in the middle the plain log densities (log Z is not small there).
    log_hazard_b = jnp.log(jnp.where(one_sided, b, 0.0) + pb[1])
    q_a = jnp.where(one_sided, log_hazard_a, norm_logpdf(a)) - rel_z
    q_b = jnp.where(one_sided, log_hazard_b + ratio_lo + ratio_hi, norm_logpdf(b)) - rel_z
    return lc, ls, lpdf, jnp.where(flip, q_b, q_a), jnp.where(flip, q_a, q_b)


def _all_logs(dist: Any, x: Any):
    ok, mu, sigma, low, high = _safe_params(*params(dist))
    x = jnp.asarray(x, mu.dtype)
    below, above = x <= low, x >= high
    # A safe interior point where x is outside, so that gradients of the unused branch stay finite.
    xs = jnp.where(below | above | jnp.isnan(x), 0.5 * (low + high), x)
    lc, ls, lpdf = _log_cdf_sf_pdf(mu, sigma, low, high, xs)
    lc = jnp.where(below, -jnp.inf, jnp.where(above, 0.0, lc))
    ls = jnp.where(below, 0.0, jnp.where(above, -jnp.inf, ls))
    lpdf = jnp.where(below | above, -jnp.inf, lpdf)
    ok = ok & ~jnp.isnan(x)
    nan = jnp.nan
    return jnp.where(ok, lc, nan), jnp.where(ok, ls, nan), jnp.where(ok, lpdf, nan)


def log_cdf_sf(dist: Any, x: Any) -> tuple[jax.Array, jax.Array]:
    """(log P(X <= x), log P(X > x)), each accurate in relative terms."""
    lc, ls, _ = _all_logs(dist, x)
    return lc, ls


def log_cdf_sf_packed(dist: Any, x: Any) -> jax.Array:
    """log cdf + i log sf as one complex array.

    Why: XLA on CPU fuses a single-output computation into one loop, but splits the same graph
    with two outputs into ~50 fusions that store and re-read intermediates (5x slower for 10^6
    queries). Solvers therefore compute this packed value in one jitted call and read both
    parts in the next.
    """
    lc, ls, _ = _all_logs(dist, x)
    return jax.lax.complex(lc, ls)


def logcdf(dist: Any, x: Any) -> jax.Array:
    return _all_logs(dist, x)[0]


def logsf(dist: Any, x: Any) -> jax.Array:
    return _all_logs(dist, x)[1]


def cdf(dist: Any, x: Any) -> jax.Array:
    return jnp.exp(logcdf(dist, x))


def sf(dist: Any, x: Any) -> jax.Array:
    return jnp.exp(logsf(dist, x))


def logpdf(dist: Any, x: Any) -> jax.Array:
    """Log density (the bounds belong to the support)."""
    ok, mu, sigma, low, high = _safe_params(*params(dist))
    x = jnp.asarray(x, mu.dtype)
    inside = (x >= low) & (x <= high)
    xs = jnp.where(inside, x, 0.5 * (low + high))
    out = jnp.where(inside, _log_cdf_sf_pdf(mu, sigma, low, high, xs)[2], -jnp.inf)
    return jnp.where(ok & ~jnp.isnan(x), out, jnp.nan)


def _where_safe(cond, fn, x, safe, fill):
    """fn(x) where cond, else fill; fn only ever sees safe values where cond is False."""
    return jnp.where(cond, fn(jnp.where(cond, x, safe)), fill)


def _quantile(dist: Any, log_q: Any, newton_steps: int) -> jax.Array:
    """The x with log P(X <= x) = log_q (see :func:`_quantile_arrays`)."""
    mu, sigma, low, high, log_q = params(dist, log_q)
    ok, mu, sigma, low, high = _safe_params(mu, sigma, low, high)
    ok = ok & (log_q <= 0.0)
    # Polished quantiles are differentiated implicitly (exact at the root); the unpolished
    # first guess (newton_steps=0, the expected best's nodes) is differentiated as computed,
    # so that its derivative is that of the value returned.
    log_q = jnp.where(ok, log_q, -LN2)
    if newton_steps:
        x = _quantile_arrays(newton_steps, mu, sigma, low, high, log_q)
    else:
        x = _quantile_guess(0, mu, sigma, low, high, log_q)
    return jnp.where(ok, x, jnp.nan)


@partial(jax.custom_jvp, nondiff_argnums=(0,))
def _quantile_arrays(newton_steps, mu, sigma, low, high, log_q):
    return _quantile_guess(newton_steps, mu, sigma, low, high, log_q)


def _quantile_guess(newton_steps, mu, sigma, low, high, log_q):
    """The x with log P(X <= x) = log_q.

    First guess: scipy's ppf (invert log Phi), or, deep in a one-sided tail where that guess only
    has absolute accuracy, the exponential approximation of the tail. Then Newton steps on
    u = log(distance to the bound the mass piles against), solving whichever of log cdf / log sf
    is far from 0, with the accurate functions above: x - low (or high - x) ends with full
    relative accuracy.
    """
    alpha, beta = (low - mu) / sigma, (high - mu) / sigma
    width = (high - low) / sigma
    log_z = _log_normalizer(mu, sigma, low, high)
    # Every branch below gets an argument in its own domain where it is not used (the
    # double-where pattern): the unpolished guess is differentiated as computed (the expected
    # best's nodes), and 0 * inf from an unused branch would make its gradient NaN.
    log_1mq = _where_safe(log_q < 0.0, log1mexp, log_q, -1.0, -jnp.inf)
    solve_cdf = log_q <= -LN2
    deep_right, deep_left = alpha >= 8.0, beta <= -8.0
    deep = deep_right | deep_left
    # A guess from the far bound differences logs of size r^2 / 2 (r = the distance of the
    # near bound in standard units): it is off by eps r^2 in log probability, and undefined
    # once log Z underflows (r > 1e154). Past eps r^2 = 1e-3 measure from the bound the mass
    # piles against instead (Newton then converges from either guess).
    r = jnp.where(deep_right, alpha, jnp.where(deep_left, -beta, 8.0))
    lost = deep & ~(jnp.isfinite(log_z) & (jnp.finfo(r.dtype).eps * r * r <= 1e-3))

    # Measure x from the bound on its side of the median: that keeps x - low (or high - x) exact.
    from_low = jnp.where(lost, deep_right, solve_cdf)
    log_p = jnp.where(from_low, log_q, log_1mq)  # probability between that bound and x

    # Generic guess in standard units: Phi(z) = Phi(edge) + p Z, or, when Phi(edge) is close
    # to 1, Phi(-z) = Phi(-edge) - p Z; measured from high the frame is reflected.
    edge = jnp.where(from_low, alpha, -beta)
    log_edge_cdf, log_edge_sf = log_ndtr(edge), log_ndtr(-edge)
    use_add = edge < 0.0
    top = jnp.logaddexp(log_edge_cdf, log_p + log_z)
    # (ndtri_exp(0) = inf and ndtri_exp(-inf) = -inf come in as constants)
    add = jnp.where(top < 0.0, _where_safe(use_add & (top < 0.0) & (top > -jnp.inf),
                                           ndtri_exp, top, -1.0, -jnp.inf), jnp.inf)
    gap = log_p + log_z - log_edge_sf  # < 0 unless x is the far bound
    rest = log_edge_sf + _where_safe(~use_add & (gap < 0.0), log1mexp, gap, -1.0, -jnp.inf)
    sub = -_where_safe(~use_add & (rest > -jnp.inf), ndtri_exp, rest, -1.0, -jnp.inf)
    z0 = jnp.where(use_add, add, sub)
    finite_z0 = jnp.isfinite(z0)
    z0_s = jnp.where(finite_z0, z0, edge)
    spread = z0_s - edge
    delta = jnp.where(finite_z0, jnp.clip(spread, 0.0, width), jnp.where(z0 > 0.0, width, 0.0))
    tiny = delta <= 64.0 * jnp.finfo(delta.dtype).eps * (1.0 + jnp.abs(edge))
    linear = _where_safe(tiny, jnp.exp, log_p + log_z - norm_logpdf(edge), 0.0, 0.0)
    delta = jnp.where(tiny, jnp.minimum(linear, width), delta)
    # A bound far from the mass in absolute terms (a range of +-1e300 around mu): x - bound
    # cancels, so take x = mu + sigma z directly (the truncation there is negligible and z0
    # exact, so no polish is needed).
    bound = jnp.where(from_low, low, high)
    direct = finite_z0 & (edge < 0.0) & (jnp.abs(bound) + sigma * jnp.abs(z0_s - edge)
                                         > 1e3 * (jnp.abs(mu) + sigma * jnp.abs(z0_s)))
    x_direct = jnp.clip(mu + jnp.where(from_low, sigma, -sigma) * z0_s, low, high)
    # Deep one-sided tail, x on the side the mass piles against: the mass within d of the bound
    # is close to (1 - e^{-r d - d^2/2}) / (1 - e^{-c}), exponential with rate r = |alpha| or
    # |beta| (hypot, not sqrt(r^2 + ...): r may be 1e300). On the other side the generic guess
    # is better.
    same_side = jnp.where(deep_right, from_low, ~from_low)
    use_expo = deep & same_side
    c = r * width + 0.5 * width * width
    log_near = jnp.where(same_side, log_p, _where_safe(use_expo & (log_p < 0.0), log1mexp,
                                                         log_p, -1.0, -jnp.inf))
    arg = log_near + log1mexp(-jnp.where(use_expo, c, 1.0))
    ell = -_where_safe(use_expo & (arg < 0.0), log1mexp, arg, -1.0, -jnp.inf)
    ell_ok = use_expo & (ell > 0.0) & (ell < jnp.inf)
    ell_s = jnp.where(ell_ok, ell, 1.0)
    expo = jnp.minimum(2.0 * ell_s / (r + jnp.hypot(r, jnp.sqrt(2.0 * ell_s))), width)
    # (ell = 0: the bound itself; ell = inf: no guess, the fallback below)
    expo = jnp.where(ell_ok, expo, jnp.where(ell == 0.0, 0.0, jnp.nan))
    delta = jnp.where(use_expo, expo, delta)
    # deep: d may underflow to 0, and x is then the bound itself
    positive = (delta > 0.0) & (delta < jnp.inf)
    u = jnp.where(positive, jnp.log(jnp.where(positive, delta, 1.0)),
                  jnp.where(deep & (delta == 0.0), -jnp.inf, jnp.log(0.5 * width)))

    target = jnp.where(solve_cdf, log_q, log_1mq)
    sign = jnp.where(solve_cdf == from_low, 1.0, -1.0)
    for _ in range(newton_steps):
        d = jnp.exp(u)
        x = jnp.clip(jnp.where(from_low, low + sigma * d, high - sigma * d), low, high)
        inside = (x > low) & (x < high)
        xs = jnp.where(inside, x, 0.5 * (low + high))
        lc, ls, lpdf = _log_cdf_sf_pdf(mu, sigma, low, high, xs)
        g = jnp.where(solve_cdf, lc, ls) - target
        slope = sign * jnp.exp(lpdf - jnp.where(solve_cdf, lc, ls) + jnp.log(sigma) + u)
        u_new = jnp.minimum(u - g / slope, jnp.log(width))
        u = jnp.where(inside & jnp.isfinite(u_new), u_new, u)
    d = jnp.exp(u)
    x = jnp.clip(jnp.where(from_low, low + sigma * d, high - sigma * d), low, high)
    x = jnp.where(direct, x_direct, x)
    x = jnp.where(log_q == -jnp.inf, low, jnp.where(log_q == 0.0, high, x))
    ok = valid_params(mu, sigma, low, high) & (log_q <= 0.0)
    return jnp.where(ok, x, jnp.nan)


@_quantile_arrays.defjvp
def _quantile_jvp(newton_steps, primals, tangents):
    """Implicit differentiation of G(x, theta) = log_q at the quantile, G = log F (or log S
    where the quantile was solved on the survival side): dx = (d target - dG/dtheta) / dG/dx.

    Differentiating the Newton iterations instead would carry NaN from their unused branches,
    and costs more. x on a bound (q = 0 or 1, or a tail that underflows there) and invalid
    elements get a zero tangent; every coefficient is masked, not only the result, so that
    reverse mode multiplies no infinity by zero.
    """
    mu, sigma, low, high, log_q = primals
    x = _quantile_arrays(newton_steps, *primals)
    solve_cdf = log_q <= -LN2
    inside = (x > low) & (x < high)
    xs = jnp.where(inside, x, 0.5 * (low + high))

    def side(mu, sigma, low, high):
        lc, ls, lpdf = _log_cdf_sf_pdf(mu, sigma, low, high, xs)
        return jnp.where(solve_cdf, lc, ls), lpdf

    (g, lpdf), (dg, _) = jax.jvp(side, primals[:4], tangents[:4])
    # dG/dx = +-f / F (or f / S), dtarget/dlog_q = 1 (cdf side) or -q / (1 - q) (sf side)
    log_slope = lpdf - g
    lq = jnp.where(solve_cdf | ~(log_q < 0.0), -1.0, log_q)
    d_target = jnp.where(solve_cdf, 1.0, -jnp.exp(lq - log1mexp(lq)))
    ok = inside & jnp.isfinite(log_slope) & jnp.isfinite(g) & jnp.isfinite(d_target)
    inv_slope = jnp.where(ok, jnp.where(solve_cdf, 1.0, -1.0)
                          * jnp.exp(-jnp.where(ok, log_slope, 0.0)), 0.0)
    d_target = jnp.where(ok, d_target, 0.0)
    dg = jnp.where(ok, dg, 0.0)
    dx = inv_slope * (d_target * tangents[4] - dg)
    return x, jnp.broadcast_to(dx, x.shape)


_NEWTON_STEPS = 2


def icdf_log(dist: Any, log_q: Any) -> jax.Array:
    return _quantile(dist, log_q, _NEWTON_STEPS)


def icdf(dist: Any, q: Any) -> jax.Array:
    q = jnp.asarray(q)
    # (q = 0: log q = -inf as a constant, so that its derivative 1/q is not formed)
    inside = (q > 0) & (q <= 1)
    log_q = jnp.where(inside, jnp.log(jnp.where(inside, q, 1.0)),
                      jnp.where(q == 0, -jnp.inf, jnp.nan))
    return _quantile(dist, log_q, _NEWTON_STEPS)


def isf(dist: Any, q: Any) -> jax.Array:
    q = jnp.asarray(q)
    inside = (q >= 0) & (q < 1)
    log_q = jnp.where(inside, jnp.log1p(-jnp.where(inside, q, 0.0)),
                      jnp.where(q == 1, -jnp.inf, jnp.nan))
    return _quantile(dist, log_q, _NEWTON_STEPS)


# Moments. Where the range is narrow or lies in one tail, the closed forms cancel (phi(alpha) -
# phi(beta), a variance of ~w^2/12 or ~1/alpha^2 left over from 1 - ...). There, measure s from the
# bound nearer the mass: its density ~exp(-a s - s^2/2) on [0, L] (L cut where it falls below
# e^-40) is smooth, and 32 Gauss-Legendre nodes give its mean and (centred) variance to rounding.
_GL32_X, _GL32_W = np.polynomial.legendre.leggauss(32)
_GL32_X, _GL32_W = 0.5 * (_GL32_X + 1.0), 0.5 * _GL32_W


def _moments(dist: Any) -> tuple[jax.Array, jax.Array]:
    """(mean, variance)."""
    ok, mu, sigma, low, high = _safe_params(*params(dist))
    dtype = mu.dtype
    alpha, beta = (low - mu) / sigma, (high - mu) / sigma
    width = (high - low) / sigma
    left_tail = beta <= 0.0
    narrow = (width <= 1.0) & (width * jnp.maximum(jnp.abs(alpha), jnp.abs(beta)) <= 1.0)
    quad = narrow | left_tail | (alpha >= 0.0)

    a = jnp.where(quad, jnp.where(left_tail, -beta, alpha), 0.0)
    # sqrt(a^2 + 80) - a without cancellation or overflow (a may be 1e300)
    reach = jnp.where(a >= 0.0, 80.0 / (a + jnp.hypot(a, jnp.sqrt(80.0))), jnp.inf)
    span = jnp.where(quad, jnp.minimum(width, reach), 1.0)
    s = span[..., None] * _GL32_X.astype(dtype)
    log_k = -a[..., None] * s - 0.5 * s * s
    k = _GL32_W.astype(dtype) * jnp.exp(log_k - jnp.max(log_k, axis=-1, keepdims=True))
    es = jnp.sum(k * s, axis=-1) / jnp.sum(k, axis=-1)
    vs = jnp.sum(k * (s - es[..., None]) ** 2, axis=-1) / jnp.sum(k, axis=-1)
    mean_quad = jnp.where(left_tail, high - sigma * es, low + sigma * es)

    # Central and wide: the closed forms are well conditioned.
    log_z = _log_normalizer(mu, sigma, low, high)
    pa = jnp.exp(norm_logpdf(alpha) - log_z)
    pb = jnp.exp(norm_logpdf(beta) - log_z)
    m = pa - pb
    v = 1.0 + (alpha - m) * pa - (beta - m) * pb  # 1 + (a pa - b pb) - m^2, regrouped

    mean_ = jnp.clip(jnp.where(quad, mean_quad, mu + sigma * m), low, high)
    var_ = sigma * sigma * jnp.where(quad, vs, jnp.clip(v, 0.0, None))
    var_ = jnp.minimum(var_, 0.25 * (high - low) ** 2)
    return jnp.where(ok, mean_, jnp.nan), jnp.where(ok, var_, jnp.nan)


def mean(dist: Any) -> jax.Array:
    return _moments(dist)[0]


def variance(dist: Any) -> jax.Array:
    return _moments(dist)[1]


def sample(dist: Any, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
    """Inverse-CDF samples shaped sample_shape + batch_shape."""
    mu, sigma, low, high = params(dist)
    shape = tuple(sample_shape) + jnp.broadcast_shapes(mu.shape, sigma.shape, low.shape, high.shape)
    u = jax.random.uniform(key, shape, mu.dtype, minval=jnp.finfo(mu.dtype).tiny, maxval=1.0)
    return _quantile(dist, jnp.log(u), 1)
