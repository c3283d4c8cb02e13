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

from optscale._special import LN2, log1mexp, log_gauss_mass, log_ndtr, ndtri_exp, norm_logpdf

__all__ = [
    "cdf", "icdf", "icdf_log", "isf", "log_cdf_sf", "logcdf", "logpdf", "logsf", "mean",
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
    return (
        jnp.isfinite(mu) & jnp.isfinite(sigma) & (sigma > 0)
        & jnp.isfinite(low) & jnp.isfinite(high) & (low < high)
    )


def _log_normalizer(mu, sigma, low, high):
    return log_gauss_mass((low - mu) / sigma, (high - mu) / sigma, (high - low) / sigma)


def log_cdf_sf(dist: Any, x: Any) -> tuple[jax.Array, jax.Array]:
    """(log P(X <= x), log P(X > x)); whichever is near 0 is derived from the other."""
    mu, sigma, low, high, x = params(dist, x)
    below, above = x <= low, x >= high
    # A safe interior point where x is outside, so that gradients of the unused branch stay finite.
    xs = jnp.where(below | above, 0.5 * (low + high), x)
    alpha, beta, z = (low - mu) / sigma, (high - mu) / sigma, (xs - mu) / sigma
    log_z = _log_normalizer(mu, sigma, low, high)
    lc = log_gauss_mass(alpha, z, (xs - low) / sigma) - log_z
    ls = log_gauss_mass(z, beta, (high - xs) / sigma) - log_z
    lc, ls = jnp.minimum(lc, 0.0), jnp.minimum(ls, 0.0)
    logcdf_ = jnp.where(lc < -LN2, lc, log1mexp(ls))
    logsf_ = jnp.where(ls < -LN2, ls, log1mexp(lc))
    logcdf_ = jnp.where(below, -jnp.inf, jnp.where(above, 0.0, logcdf_))
    logsf_ = jnp.where(below, 0.0, jnp.where(above, -jnp.inf, logsf_))
    ok = valid_params(mu, sigma, low, high)
    return jnp.where(ok, logcdf_, jnp.nan), jnp.where(ok, logsf_, jnp.nan)


def logcdf(dist: Any, x: Any) -> jax.Array:
    return log_cdf_sf(dist, x)[0]


def logsf(dist: Any, x: Any) -> jax.Array:
    return log_cdf_sf(dist, x)[1]


def cdf(dist: Any, x: Any) -> jax.Array:
    return jnp.exp(logcdf(dist, x))


def sf(dist: Any, x: Any) -> jax.Array:
    return jnp.exp(logsf(dist, x))


def logpdf(dist: Any, x: Any) -> jax.Array:
    mu, sigma, low, high, x = params(dist, x)
    inside = (x >= low) & (x <= high)
    out = norm_logpdf((x - mu) / sigma) - jnp.log(sigma) - _log_normalizer(mu, sigma, low, high)
    out = jnp.where(inside, out, -jnp.inf)
    return jnp.where(valid_params(mu, sigma, low, high), out, jnp.nan)


def _quantile(dist: Any, log_q: Any, newton_steps: int) -> jax.Array:
    """The x with log P(X <= x) = log_q.

    A first guess inverts log Phi (scipy's truncnorm ppf); then Newton steps on log(distance to
    the nearer bound), where the log CDF is close to linear, restore full relative accuracy of
    x - low (or high - x) deep in a tail, where the first guess only has absolute accuracy.
    """
    mu, sigma, low, high, log_q = params(dist, log_q)
    alpha, beta = (low - mu) / sigma, (high - mu) / sigma
    width = (high - low) / sigma
    log_z = _log_normalizer(mu, sigma, low, high)
    log_1mq = log1mexp(log_q)
    lower = log_q <= -LN2  # measure from low; otherwise from high, with log P(X > x) = log(1-q)
    log_p = jnp.where(lower, log_q, log_1mq)

    # First guess in standard units. Lower side: Phi(z) = Phi(alpha) + q Z, or, when Phi(alpha)
    # is close to 1, Phi(-z) = Phi(-alpha) - q Z; the upper side mirrors it with 1 - q.
    edge = jnp.where(lower, alpha, -beta)  # the bound, reflected so the lower side is canonical
    log_edge_cdf = log_ndtr(edge)
    log_edge_sf = log_ndtr(-edge)
    add = ndtri_exp(jnp.logaddexp(log_edge_cdf, log_p + log_z))
    sub = -ndtri_exp(log_edge_sf + log1mexp(jnp.minimum(log_p + log_z - log_edge_sf, 0.0)))
    z0 = jnp.where(edge < 0.0, add, sub)
    z0 = jnp.where(lower, z0, -z0)
    delta = jnp.clip(jnp.where(lower, z0 - alpha, beta - z0), 0.0, width)
    # Near the bound the mass is ~ density(bound) * delta: use that where z0 has lost delta.
    linear = jnp.exp(log_p + log_z - norm_logpdf(edge))
    tiny = delta <= 64.0 * jnp.finfo(delta.dtype).eps * (1.0 + jnp.abs(edge))
    u = jnp.log(jnp.where(tiny, jnp.minimum(linear, width), delta))
    u = jnp.where(jnp.isfinite(u), u, jnp.log(0.5 * width))

    def side_mass(d):
        inner = jnp.where(lower, alpha + d, beta - d)
        a, b = jnp.where(lower, alpha, inner), jnp.where(lower, inner, beta)
        return log_gauss_mass(a, b, d) - log_z, norm_logpdf(inner)

    for _ in range(newton_steps):
        d = jnp.exp(u)
        g, log_dens = side_mass(d)
        slope = jnp.exp(log_dens + u - (g + log_z))  # d g / d u
        u = jnp.minimum(u - (g - log_p) / slope, jnp.log(width))
    d = jnp.exp(u)
    x = jnp.where(lower, low + sigma * d, high - sigma * d)
    x = jnp.clip(x, low, high)
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
    reach = jnp.where(a >= 0.0, jnp.sqrt(a * a + 80.0) - a, jnp.inf)
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
