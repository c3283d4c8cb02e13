"""Log-space special functions in JAX: the pieces the truncated normal needs, without cancellation.

``log_gauss_mass(a, b, w) = log(Phi(b) - Phi(a))`` follows scipy's ``_log_gauss_mass`` (reflect
both-negative intervals to the right tail, ``log1p`` in the middle) and adds two things scipy
lacks: for short intervals in a tail the log-ratio ``log Phi(-b) - log Phi(-a)`` is integrated from
the hazard function with Gauss-Legendre nodes instead of subtracting two large logs, so a point
close to a bound keeps full relative accuracy; and the tail's large anchor ``log Phi(-a)`` is
returned apart (:func:`log_mass_parts`) so that ratios of masses cancel it exactly.
``ndtri_exp`` inverts ``log Phi`` like scipy's.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy import special as jss

__all__ = [
    "LN2", "log1mexp", "log_gauss_mass", "log_hazard", "log_mass_parts", "log_ndtr", "ndtri_exp",
    "norm_logpdf", "tail_log_ratio",
]

LN2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
# JAX's default 3-term asymptotic series is only ~4e-9 relative at x = -20 (float64 switch point).
_LOG_NDTR_SERIES = 10
# Tail intervals [a, a + w] with w <= a + 1 integrate the hazard (which at most doubles across them)
# with 8 Gauss-Legendre nodes, to ~2e-15 (checked against mpmath); longer ones difference log Phi,
# whose error eps * a^2 / 2 is then small against the ratio's size ~ a w.
_GL_X, _GL_W = np.polynomial.legendre.leggauss(8)


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


_MILLS_DEPTH = 14  # Laplace's continued fraction is exact to rounding from x = 8 with 14 terms


def log_hazard(x: jax.Array) -> jax.Array:
    """log(phi(x) / Phi(-x)).

    Below 8 as a log difference (accurate: both logs are small); from 8 by the continued fraction
    of the Mills ratio, since the difference of two logs of size x^2/2 would lose digits.
    Not via ``jax.scipy.special.erfcx``: in jax 0.10 it returns 0 on a band of arguments (float64
    near 26.54, float32 near 9.19).
    """
    small = x < 8.0
    xs = jnp.where(small, x, 0.0)
    xl = jnp.where(small, 8.0, x)
    t = xl
    for k in range(_MILLS_DEPTH, 0, -1):
        t = xl + k / t
    return jnp.where(small, norm_logpdf(xs) - log_ndtr(-xs), jnp.log(t))


def tail_log_ratio(a: jax.Array, b: jax.Array, w: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(log Phi(-a), log Phi(-b) - log Phi(-a)) for 0 <= a <= b, with w = b - a exact.

    Short intervals integrate the hazard, d/dx log Phi(-x) = -hazard(x): differencing two logs
    of size a^2 / 2 would leave ~eps * a^2 absolute error, all of it for a point near a.
    """
    dtype = a.dtype
    log_a = log_ndtr(-a)
    direct = log_ndtr(-b) - log_a
    nodes = a[..., None] + (0.5 * w)[..., None] * (1.0 + _GL_X.astype(dtype))
    quad = -0.5 * w * jnp.sum(_GL_W.astype(dtype) * jnp.exp(log_hazard(nodes)), axis=-1)
    return log_a, jnp.where(w <= a + 1.0, quad, direct)


def log_mass_parts(a: jax.Array, b: jax.Array, w: jax.Array) -> tuple[jax.Array, ...]:
    """log(Phi(b) - Phi(a)) = anchor + rel, for a <= b with w = b - a computed by the caller.

    In a tail the anchor is log Phi(-a) (or log Phi(b) left of 0) and rel = log(1 - exp(ratio))
    with the ratio from :func:`tail_log_ratio`, also returned; in the middle the anchor is 0.
    Keeping the anchor apart lets callers cancel it exactly: for mu far outside [low, high] it
    is huge (log Phi(-530) ~ -1.4e5) and rounding it costs all the digits of a probability.
    Passing the width matters too: for x near a bound, (x - low) / sigma is exact while
    (x - mu) / sigma - (low - mu) / sigma is not.
    """
    right = a >= 0.0
    left = (b <= 0.0) & ~right
    tail = left | right
    # Reflect the left tail: Phi(b) - Phi(a) = Phi(-(-b)) - Phi(-(-a)).
    ta = jnp.where(right, a, jnp.where(left, -b, 0.0))
    tb = jnp.where(right, b, jnp.where(left, -a, 1.0))
    anchor, ratio = tail_log_ratio(ta, tb, jnp.where(tail, w, 1.0))
    # Central interval a < 0 < b: mass = 1 - (both tails); when that is small, the erf difference
    # of opposite-sign arguments has no cancellation.
    ca = jnp.where(tail, -1.0, a)
    cb = jnp.where(tail, 1.0, b)
    tails = jss.ndtr(ca) + jss.ndtr(-cb)
    s = 1.0 / math.sqrt(2.0)
    central = jnp.where(
        tails < 0.5, jnp.log1p(-tails), jnp.log(0.5 * (jss.erf(cb * s) - jss.erf(ca * s)))
    )
    return jnp.where(tail, anchor, 0.0), jnp.where(tail, log1mexp(ratio), central), ratio


def log_gauss_mass(a: jax.Array, b: jax.Array, w: jax.Array) -> jax.Array:
    """log(Phi(b) - Phi(a)) for a <= b, with w = b - a computed by the caller."""
    anchor, rel, _ = log_mass_parts(a, b, w)
    return anchor + rel


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
