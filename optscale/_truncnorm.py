"""Truncated-normal math in JAX: log normaliser, logpdf/logcdf/logsf, quantiles, moments, sampling.

All functions take a :class:`~optscale.TruncatedNormal` (any pytree with mu, sigma, low, high)
and follow the dtype of their inputs. Invalid parameters (sigma <= 0, non-finite values,
low >= high) give NaN here; the solvers turn them into a status code.
"""

from __future__ import annotations

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


def _log_normalizer(mu, sigma, low, high):
    return log_gauss_mass((low - mu) / sigma, (high - mu) / sigma, (high - low) / sigma)


def _log_cdf_sf_pdf(mu, sigma, low, high, x):
    """(log P(X <= x), log P(X > x), log density) for x strictly inside (low, high).

    Ranges on the left of mu are mirrored (x -> -x swaps cdf and sf) so that a one-sided range
    always lies in the right tail, where both masses share the anchor log Phi(-alpha) and their
    ratios are formed without it. Special functions are evaluated at alpha, z and beta only.
    """
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
    rel_z = jnp.where(one_sided, log1mexp(ratio_lo + ratio_hi),
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
    return jnp.where(lc < -LN2, lc, log1mexp(ls)), jnp.where(ls < -LN2, ls, log1mexp(lc)), lpdf


def _all_logs(dist: Any, x: Any):
    mu, sigma, low, high, x = params(dist, x)
    below, above = x <= low, x >= high
    # A safe interior point where x is outside, so that gradients of the unused branch stay finite.
    xs = jnp.where(below | above, 0.5 * (low + high), x)
    lc, ls, lpdf = _log_cdf_sf_pdf(mu, sigma, low, high, xs)
    lc = jnp.where(below, -jnp.inf, jnp.where(above, 0.0, lc))
    ls = jnp.where(below, 0.0, jnp.where(above, -jnp.inf, ls))
    lpdf = jnp.where(below | above, -jnp.inf, lpdf)
    ok = valid_params(mu, sigma, low, high)
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
    mu, sigma, low, high, x = params(dist, x)
    inside = (x >= low) & (x <= high)
    xs = jnp.where(inside, x, 0.5 * (low + high))
    out = jnp.where(inside, _log_cdf_sf_pdf(mu, sigma, low, high, xs)[2], -jnp.inf)
    return jnp.where(valid_params(mu, sigma, low, high), out, jnp.nan)


def _quantile(dist: Any, log_q: Any, newton_steps: int) -> jax.Array:
    """The x with log P(X <= x) = log_q.

    First guess: scipy's ppf (invert log Phi), or, deep in a one-sided tail where that guess only
    has absolute accuracy, the exponential approximation of the tail. Then Newton steps on
    u = log(distance to the bound the mass piles against), solving whichever of log cdf / log sf
    is far from 0, with the accurate functions above: x - low (or high - x) ends with full
    relative accuracy.
    """
    mu, sigma, low, high, log_q = params(dist, log_q)
    alpha, beta = (low - mu) / sigma, (high - mu) / sigma
    width = (high - low) / sigma
    log_z = _log_normalizer(mu, sigma, low, high)
    log_1mq = log1mexp(log_q)
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
    add = ndtri_exp(jnp.logaddexp(log_edge_cdf, log_p + log_z))
    sub = -ndtri_exp(log_edge_sf + log1mexp(jnp.minimum(log_p + log_z - log_edge_sf, 0.0)))
    z0 = jnp.where(edge < 0.0, add, sub)
    delta = jnp.clip(z0 - edge, 0.0, width)
    linear = jnp.exp(log_p + log_z - norm_logpdf(edge))
    tiny = delta <= 64.0 * jnp.finfo(delta.dtype).eps * (1.0 + jnp.abs(edge))
    delta = jnp.where(tiny, jnp.minimum(linear, width), delta)
    # A bound far from the mass in absolute terms (a range of +-1e300 around mu): x - bound
    # cancels, so take x = mu + sigma z directly (the truncation there is negligible and z0
    # exact, so no polish is needed).
    bound = jnp.where(from_low, low, high)
    direct = (edge < 0.0) & (jnp.abs(bound) + sigma * jnp.abs(z0 - edge)
                             > 1e3 * (jnp.abs(mu) + sigma * jnp.abs(z0)))
    x_direct = jnp.clip(mu + jnp.where(from_low, sigma, -sigma) * z0, low, high)
    # Deep one-sided tail, x on the side the mass piles against: the mass within d of the bound
    # is close to (1 - e^{-r d - d^2/2}) / (1 - e^{-c}), exponential with rate r = |alpha| or
    # |beta| (hypot, not sqrt(r^2 + ...): r may be 1e300). On the other side the generic guess
    # is better.
    same_side = jnp.where(deep_right, from_low, ~from_low)
    c = r * width + 0.5 * width * width
    log_near = jnp.where(same_side, log_p, log1mexp(log_p))
    ell = -log1mexp(jnp.minimum(log_near + log1mexp(-c), 0.0))
    expo = jnp.minimum(2.0 * ell / (r + jnp.hypot(r, jnp.sqrt(2.0 * ell))), width)
    delta = jnp.where(deep & same_side, expo, delta)
    u = jnp.log(delta)
    # deep: d may underflow to 0, and x is then the bound itself
    u = jnp.where(jnp.isfinite(u) | (deep & (delta == 0.0)), u, jnp.log(0.5 * width))

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


_NEWTON_STEPS = 2


def icdf_log(dist: Any, log_q: Any) -> jax.Array:
    return _quantile(dist, log_q, _NEWTON_STEPS)


def icdf(dist: Any, q: Any) -> jax.Array:
    q = jnp.asarray(q)
    log_q = jnp.where((q >= 0) & (q <= 1), jnp.log(q), jnp.nan)
    return _quantile(dist, log_q, _NEWTON_STEPS)


def isf(dist: Any, q: Any) -> jax.Array:
    q = jnp.asarray(q)
    log_q = jnp.where((q >= 0) & (q <= 1), jnp.log1p(-q), jnp.nan)
    return _quantile(dist, log_q, _NEWTON_STEPS)


# Moments. Where the range is narrow or lies in one tail, the closed forms cancel (phi(alpha) -
# phi(beta), a variance of ~w^2/12 or ~1/alpha^2 left over from 1 - ...). There, measure s from the
# bound nearer the mass: its density ~exp(-a s - s^2/2) on [0, L] (L cut where it falls below
# e^-40) is smooth, and 32 Gauss-Legendre nodes give its mean and (centred) variance to rounding.
_GL32_X, _GL32_W = np.polynomial.legendre.leggauss(32)
_GL32_X, _GL32_W = 0.5 * (_GL32_X + 1.0), 0.5 * _GL32_W


def _moments(dist: Any) -> tuple[jax.Array, jax.Array]:
    """(mean, variance)."""
    mu, sigma, low, high = params(dist)
    dtype = mu.dtype
    alpha, beta = (low - mu) / sigma, (high - mu) / sigma
    width = (high - low) / sigma
    ok = valid_params(mu, sigma, low, high)
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
