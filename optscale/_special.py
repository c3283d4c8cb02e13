"""Log-space special functions in JAX: the pieces the truncated normal needs, without cancellation.

``log_gauss_mass(a, b, w) = log(Phi(b) - Phi(a))`` follows scipy's ``_log_gauss_mass`` (reflect
both-negative intervals to the right tail, ``log1p`` in the middle) and adds one thing scipy lacks:
for short intervals in a tail the log-ratio ``log Phi(-b) - log Phi(-a)`` is integrated from the
hazard function with Gauss-Legendre nodes instead of subtracting two large logs, so a point close
to a bound keeps full relative accuracy. ``ndtri_exp`` inverts ``log Phi`` like scipy's.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy import special as jss

__all__ = ["LN2", "log1mexp", "log_gauss_mass", "log_ndtr", "ndtri_exp", "norm_logpdf"]

LN2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
# JAX's default 3-term asymptotic series is only ~4e-9 relative at x = -20 (float64 switch point).
_LOG_NDTR_SERIES = 10
# 6 nodes integrate the hazard over any tail interval with |log-ratio| <= 1 to ~5e-15 (checked
# against mpmath); longer intervals are differenced directly, where that is accurate.
_GL_X, _GL_W = np.polynomial.legendre.leggauss(6)


def log_ndtr(x: jax.Array) -> jax.Array:
    """log Phi(x), accurate in the far left tail."""
    return jss.log_ndtr(x, series_order=_LOG_NDTR_SERIES)


def norm_logpdf(x: jax.Array) -> jax.Array:
    return -0.5 * x * x - _HALF_LOG_2PI


def log1mexp(x: jax.Array) -> jax.Array:
    """log(1 - exp(x)) for x <= 0 (Maechler 2012); each branch sees a safe argument so that
    gradients stay finite."""
    near = x > -LN2
    x_near = jnp.where(near, x, -1.0)
    x_far = jnp.where(near, -1.0, x)
    return jnp.where(near, jnp.log(-jnp.expm1(x_near)), jnp.log1p(-jnp.exp(x_far)))


def _hazard(x: jax.Array) -> jax.Array:
    """phi(x) / Phi(-x) for x >= 0.

    Not via ``jax.scipy.special.erfcx``: in jax 0.10 it returns 0 on a band of arguments (float64
    near 26.54, float32 near 9.19). The log difference below is accurate to ~eps * x**2 / 2.
    """
    return jnp.exp(norm_logpdf(x) - log_ndtr(-x))


def _log_tail_mass(a: jax.Array, b: jax.Array, w: jax.Array) -> jax.Array:
    """log(Phi(-a) - Phi(-b)) for 0 <= a <= b, with w = b - a given without cancellation."""
    dtype = a.dtype
    log_a = log_ndtr(-a)
    direct = log_ndtr(-b) - log_a
    nodes = a[..., None] + (0.5 * w)[..., None] * (1.0 + _GL_X.astype(dtype))
    quad = -0.5 * w * jnp.sum(_GL_W.astype(dtype) * _hazard(nodes), axis=-1)
    return log_a + log1mexp(jnp.where(direct > -1.0, quad, direct))


def log_gauss_mass(a: jax.Array, b: jax.Array, w: jax.Array) -> jax.Array:
    """log(Phi(b) - Phi(a)) for a <= b, with w = b - a computed by the caller.

    Passing the width separately matters: for x near a bound, (x - low) / sigma is exact while
    (x - mu) / sigma - (low - mu) / sigma is not.
    """
    left = b <= 0.0
    right = a >= 0.0
    tail = left | right
    # Reflect the left tail: Phi(b) - Phi(a) = Phi(-(-b)) - Phi(-(-a)).
    ta = jnp.where(right, a, jnp.where(left, -b, 0.0))
    tb = jnp.where(right, b, jnp.where(left, -a, 1.0))
    tail_val = _log_tail_mass(ta, tb, jnp.where(tail, w, 1.0))
    # Central interval a < 0 < b: mass = 1 - (both tails); when that is small, the erf difference
    # of opposite-sign arguments has no cancellation.
    ca = jnp.where(tail, -1.0, a)
    cb = jnp.where(tail, 1.0, b)
    tails = jss.ndtr(ca) + jss.ndtr(-cb)
    s = 1.0 / math.sqrt(2.0)
    central_val = jnp.where(
        tails < 0.5, jnp.log1p(-tails), jnp.log(0.5 * (jss.erf(cb * s) - jss.erf(ca * s)))
    )
    return jnp.where(tail, tail_val, central_val)


# Cephes ndtri coefficients for p < exp(-2) (as in scipy.special.ndtri_exp), evaluated on
# z = sqrt(-2 log p) so that p itself never has to be formed.
_P1 = np.array([4.05544892305962419923e0, 3.15251094599893866154e1, 5.71628192246421288162e1,
                4.40805073893200834700e1, 1.46849561928858024014e1, 2.18663306850790267539e0,
                -1.40256079171354495875e-1, -3.50424626827848203418e-2,
                -8.57456785154685413611e-4])
_Q1 = np.array([1.0, 1.57799883256466749731e1, 4.53907635128879210584e1,
                4.13172038254672030440e1, 1.50425385692907503408e1, 2.50464946208309415979e0,
                -1.42182922854787788574e-1, -3.80806407691578277194e-2,
                -9.33259480895457427372e-4])
_P2 = np.array([3.23774891776946035970e0, 6.91522889068984211695e0, 3.93881025292474443415e0,
                1.33303460815807542389e0, 2.01485389549179081538e-1, 1.23716634817820021358e-2,
                3.01581553508235416007e-4, 2.65806974686737550832e-6,
                6.23974539184983293730e-9])
_Q2 = np.array([1.0, 6.02427039364742014255e0, 3.67983563856160859403e0,
                1.37702099489081330271e0, 2.16236993594496635890e-1, 1.34204006088543189037e-2,
                3.28014464682127739104e-4, 2.89247864745380683936e-6,
                6.79019408009981274425e-9])
_LOG_1M_EM2 = math.log1p(-math.exp(-2.0))


def _ndtri_exp_small(y: jax.Array) -> jax.Array:
    dtype = y.dtype
    z = jnp.sqrt(-2.0 * y)
    inv = 1.0 / z
    p1 = jnp.polyval(_P1.astype(dtype), inv) / jnp.polyval(_Q1.astype(dtype), inv)
    p2 = jnp.polyval(_P2.astype(dtype), inv) / jnp.polyval(_Q2.astype(dtype), inv)
    corr = inv * jnp.where(z < 8.0, p1, p2)
    return corr - (z - jnp.log(z) / z)


@jax.custom_jvp
def ndtri_exp(y: jax.Array) -> jax.Array:
    """The x with log Phi(x) = y, for y <= 0 (scipy.special.ndtri_exp)."""
    small = y < -2.0
    near_one = y > _LOG_1M_EM2
    x_small = _ndtri_exp_small(jnp.where(small, y, -3.0))
    x_near = -jss.ndtri(-jnp.expm1(jnp.where(near_one, y, -0.1)))
    x_mid = jss.ndtri(jnp.exp(jnp.where(small | near_one, -1.0, y)))
    return jnp.where(small, x_small, jnp.where(near_one, x_near, x_mid))


@ndtri_exp.defjvp
def _ndtri_exp_jvp(primals, tangents):
    (y,), (dy,) = primals, tangents
    x = ndtri_exp(y)
    return x, dy * jnp.exp(y - norm_logpdf(x))
