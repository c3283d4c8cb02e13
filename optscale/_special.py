"""Log-space special functions in JAX: the pieces the truncated normal needs, without cancellation.

``log_gauss_mass(a, b, w) = log(Phi(b) - Phi(a))`` follows scipy's ``_log_gauss_mass`` (reflect
both-negative intervals to the right tail, ``log1p`` in the middle) and adds two things scipy
lacks: in a tail the log-ratio ``log Phi(-b) - log Phi(-a)`` comes from the hazard function
(a Taylor series for short intervals, the continued fraction far out) instead of subtracting two
large logs, so a point close to a bound keeps full relative accuracy; and the tail's large anchor
``log Phi(-a)`` is returned apart (:func:`log_mass`) so that ratios of masses cancel it exactly.
Special functions are evaluated once per point (:func:`tail_point`), so a CDF costs three.
``ndtri_exp`` inverts ``log Phi`` like scipy's.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy import special as jss

__all__ = [
    "LN2", "log1mexp", "log_gauss_mass", "log_mass", "log_ndtr", "ndtri_exp", "norm_logpdf",
    "tail_point", "tail_ratio",
]

LN2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
# JAX's default 3-term asymptotic series is only ~4e-9 relative at x = -20 (float64 switch point).
_LOG_NDTR_SERIES = 10


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


def _cf_depth(dtype) -> int:
    # Laplace's continued fraction for the Mills ratio is exact to rounding from x = 8 with
    # 14 levels in float64 (7 in float32), checked against mpmath.
    return 14 if jnp.finfo(dtype).bits > 32 else 7


def tail_point(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(log Phi(-x), g(x) = hazard(x) - x) for x >= 0, hazard = phi / Phi(-x).

    g is what is left of the hazard after its leading x; it stays accurate (no cancellation) for
    large x, where it comes from the continued fraction g = 1/(x + 2/(x + 3/(x + ...))). Below 8
    it is exp(log phi - log Phi(-x)) - x, which loses at most a few ulps.
    Not ``jax.scipy.special.erfcx``: in jax 0.10 it is exp(x^2) erfc(x), which is 0 on a band of
    arguments (float64 near 26.54, float32 near 9.19).
    """
    t = log_ndtr(-x)
    small = jnp.exp(norm_logpdf(x) - t) - x
    xl = jnp.maximum(x, 8.0)
    u = xl
    for k in range(_cf_depth(x.dtype), 1, -1):
        u = xl + k / u
    return t, jnp.where(x < 8.0, small, 1.0 / u)


def tail_ratio(a, ta, ga, b, tb, gb, w):
    """D = log Phi(-b) - log Phi(-a) for 0 <= a <= b with w = b - a exact, from tail_point values.

    Short intervals: Taylor series of -int_a^b hazard around a (derivatives from h' = h (h - x)),
    which keeps full relative accuracy however close b is to a. Longer ones: the difference of
    the logs below 8, and above it -w (a + w/2) - log(h(b) / h(a)) with h(b) - h(a) = w + g(b) -
    g(a): differencing logs of size a^2 / 2 would leave an error of eps * a^2.
    """
    h = a + ga
    h1 = h * ga
    h2 = 2.0 * h * h1 - h - a * h1
    h3 = 2.0 * h1 * h1 + 2.0 * h * h2 - 2.0 * h1 - a * h2
    h4 = 6.0 * h1 * h2 + 2.0 * h * h3 - 3.0 * h2 - a * h3
    taylor = -w * (h + w * (0.5 * h1 + w * (h2 / 6.0 + w * (h3 / 24.0 + w * h4 / 120.0))))
    direct = tb - ta
    large = -w * (a + 0.5 * w) - jnp.log1p((w + gb - ga) / h)
    # Where each is exact to ~3e-14 (random a up to 1e3 against mpmath): Taylor while
    # w <= 0.005 (1 + a) below 8 and w a <= 0.01 above.
    short = jnp.where(a < 8.0, w <= 0.005 * (1.0 + a), w * a <= 0.01)
    return jnp.where(short, taylor, jnp.where(a < 8.0, direct, large))


_P0 = (math.log(0.5), math.sqrt(2.0 / math.pi))  # tail_point(0), a harmless stand-in


def log_mass(a, pa, b, pb, w):
    """log(Phi(b) - Phi(a)) = anchor + rel for a <= b, with pa, pb = tail_point(|a|), (|b|).

    In a tail the anchor is log Phi(-|near end|) and rel = log(1 - exp(D)), D being returned too;
    keeping the anchor apart lets callers cancel it exactly: for mu far outside [low, high] it
    is huge (log Phi(-530) ~ -1.4e5) and rounding it costs all the digits of a probability. In the
    middle (a < 0 < b) the anchor is 0. The width w = b - a comes from the caller: for x near a
    bound (x - low) / sigma is exact while (x - mu) / sigma - (low - mu) / sigma is not.
    """
    right = a >= 0.0
    left = (b <= 0.0) & ~right
    tail = left | right
    # Reflect the left tail: Phi(b) - Phi(a) = Phi(-(-b)) - Phi(-(-a)); the near end is |b|.
    pick = lambda r, lf, c: jnp.where(right, r, jnp.where(left, lf, c))  # noqa: E731
    lo, hi = pick(a, -b, 0.0), pick(b, -a, 1.0)
    t_lo, g_lo = pick(pa[0], pb[0], _P0[0]), pick(pa[1], pb[1], _P0[1])
    t_hi, g_hi = pick(pb[0], pa[0], _P0[0]), pick(pb[1], pa[1], _P0[1])
    d = tail_ratio(lo, t_lo, g_lo, hi, t_hi, g_hi, jnp.where(tail, w, 1.0))
    # Middle: mass = 1 - (both tails); when that is small, the erf difference of opposite-sign
    # arguments has no cancellation.
    tails = jnp.exp(pa[0]) + jnp.exp(pb[0])
    ca, cb = jnp.where(tail, -1.0, a), jnp.where(tail, 1.0, b)
    s = 1.0 / math.sqrt(2.0)
    central = jnp.where(tails < 0.5, jnp.log1p(-jnp.minimum(tails, 0.5)),
                        jnp.log(0.5 * (jss.erf(cb * s) - jss.erf(ca * s))))
    return jnp.where(tail, t_lo, 0.0), jnp.where(tail, log1mexp(d), central), d


def log_gauss_mass(a: jax.Array, b: jax.Array, w: jax.Array) -> jax.Array:
    """log(Phi(b) - Phi(a)) for a <= b, with w = b - a computed by the caller."""
    anchor, rel, _ = log_mass(a, tail_point(jnp.abs(a)), b, tail_point(jnp.abs(b)), w)
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
