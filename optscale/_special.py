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
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy import special as jss

__all__ = [
    "LN2", "betainc", "log1mexp", "log_gauss_mass", "log_mass", "log_ndtr", "ndtri_exp",
    "norm_logpdf", "tail_point", "tail_ratio",
]

LN2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
# JAX's default 3-term asymptotic series is only ~4e-9 relative at x = -20 (float64 switch point).
_LOG_NDTR_SERIES = 10
_LOG_NDTR_M8 = -35.01343715991456  # log Phi(-8)


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
    # Each branch sees an argument in its own range, so the unused one stays finite with a
    # finite derivative (far out, log phi - log Phi(-x) is -inf - -inf).
    near = x < 8.0
    xs = jnp.where(near, x, 8.0)
    ts = jnp.where(near, t, _LOG_NDTR_M8)
    small = jnp.exp(norm_logpdf(xs) - ts) - xs
    xl = jnp.maximum(x, 8.0)
    u = xl
    for k in range(_cf_depth(x.dtype), 1, -1):
        u = xl + k / u
    return t, jnp.where(near, small, 1.0 / u)


def tail_ratio(a, ta, ga, b, tb, gb, w):
    """D = log Phi(-b) - log Phi(-a) for 0 <= a <= b with w = b - a exact, from tail_point values.

    Short intervals: Taylor series of -int_a^b hazard around a (derivatives from h' = h (h - x)),
    which keeps full relative accuracy however close b is to a. Longer ones: the difference of
    the logs below 8, and above it -w (a + w/2) - log(h(b) / h(a)) with h(b) - h(a) = w + g(b) -
    g(a): differencing logs of size a^2 / 2 would leave an error of eps * a^2.
    """
    # Where each is exact to ~3e-14 (random a up to 1e3 against mpmath): Taylor while
    # w <= 0.005 (1 + a) below 8 and w a <= 0.01 above.
    short = jnp.where(a < 8.0, w <= 0.005 * (1.0 + a), w * a <= 0.01)
    h = a + ga
    h1 = h * ga
    w_short = jnp.where(short, w, 0.0)  # a long w would overflow the unused series
    w_long = jnp.where(short, 1.0, w)
    h2 = 2.0 * h * h1 - h - a * h1
    h3 = 2.0 * h1 * h1 + 2.0 * h * h2 - 2.0 * h1 - a * h2
    h4 = 6.0 * h1 * h2 + 2.0 * h * h3 - 3.0 * h2 - a * h3
    ws = w_short
    taylor = -ws * (h + ws * (0.5 * h1 + ws * (h2 / 6.0 + ws * (h3 / 24.0 + ws * h4 / 120.0))))
    direct = tb - ta
    large = -w_long * (a + 0.5 * w_long) - jnp.log1p((w_long + gb - ga) / h)
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
    # (outside the tails d is a placeholder, 0, where log1mexp has an infinite derivative)
    # An empty interval (x on a bound) has d = 0 and mass -inf; as a constant, so that it
    # carries no derivative.
    tail_mass = jnp.where(d < 0.0, log1mexp(jnp.where(tail & (d < 0.0), d, -1.0)), -jnp.inf)
    return jnp.where(tail, t_lo, 0.0), jnp.where(tail, tail_mass, central), d


@jax.custom_jvp
def log_gauss_mass(a: jax.Array, b: jax.Array, w: jax.Array) -> jax.Array:
    """log(Phi(b) - Phi(a)) for a <= b, with w = b - a computed by the caller.

    Its derivative is the closed form (phi(b) db - phi(a) da) / mass, formed from the hazards
    in a tail (no anchor cancels); ``w`` is taken to be b - a and carries no derivative of its
    own.
    """
    return _log_gauss_mass_parts(a, b, w)[0]


def _log_gauss_mass_parts(a, b, w):
    pa, pb = tail_point(jnp.abs(a)), tail_point(jnp.abs(b))
    anchor, rel, d = log_mass(a, pa, b, pb, w)
    return anchor + rel, pa, pb, rel, d


@log_gauss_mass.defjvp
def _log_gauss_mass_jvp(primals, tangents):
    a, b, w = primals
    da, db, _ = tangents
    out, pa, pb, rel, d = _log_gauss_mass_parts(a, b, w)
    right = a >= 0.0
    left = (b <= 0.0) & ~right
    # Tails, in the frame where the interval is [lo, hi] on the right of 0 (the left one
    # reflected): phi(lo) / mass = hazard(lo) / (1 - e^D), phi(hi) / mass = hazard(hi) e^D /
    # (1 - e^D). Middle: phi(u) / mass directly.
    h_a = jnp.log(jnp.abs(a) + pa[1])
    h_b = jnp.log(jnp.abs(b) + pb[1])
    log_ca = jnp.where(right, h_a - rel, jnp.where(left, h_a + d - rel, norm_logpdf(a) - out))
    log_cb = jnp.where(right, h_b + d - rel, jnp.where(left, h_b - rel, norm_logpdf(b) - out))

    def e(v):  # an empty interval (rel = -inf) carries no derivative
        ok = jnp.isfinite(v)
        return jnp.where(ok, jnp.exp(jnp.where(ok, v, 0.0)), 0.0)

    tangent = e(log_cb) * db - e(log_ca) * da
    return out, jnp.broadcast_to(tangent, out.shape)


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


# ----------------------------------------------------------------------------- incomplete beta

def _log_beta(a, b):
    # from gammaln: jax.scipy.special.betaln is off by ~1e-6 relative in float64
    return jss.gammaln(a) + jss.gammaln(b) - jss.gammaln(a + b)


def _betacf(a, b, x):
    """Lentz's continued fraction of I_x(a, b) (x^a (1 - x)^b / (a B(a, b)) times it), for
    x < (a + 1) / (a + b + 2), where it converges in O(sqrt(max(a, b))) terms."""
    dtype = x.dtype
    tiny = jnp.finfo(dtype).tiny * 1e6
    eps = jnp.finfo(dtype).eps
    fix = lambda v: jnp.where(jnp.abs(v) < tiny, tiny, v)  # noqa: E731
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    d = 1.0 / fix(1.0 - qab * x / qap)

    def body(state):
        m, c, d, h, _ = state
        m2 = 2.0 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 / fix(1.0 + aa * d)
        c = fix(1.0 + aa / c)
        h = h * d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 / fix(1.0 + aa * d)
        c = fix(1.0 + aa / c)
        delta = d * c
        return m + 1.0, c, d, h * delta, jnp.max(jnp.abs(delta - 1.0), initial=0.0)

    def cond(state):
        return (state[4] > eps) & (state[0] < 5000.0)

    one = jnp.ones_like(x)
    start = (jnp.asarray(1.0, dtype), one, d, d, jnp.asarray(1.0, dtype))
    state = lax.while_loop(cond, body, start)
    return state[3]


def _log_betainc_cf(a, b, x):
    """log I_x(a, b) from the continued fraction (x below the switch point)."""
    return (a * jnp.log(x) + b * jnp.log1p(-x) - jnp.log(a) - _log_beta(a, b)
            + jnp.log(_betacf(a, b, x)))


def _betainc_param_grads(a, b, x):
    """(dI/da, dI/db) of the regularised incomplete beta for valid a, b > 0 and 0 < x < 1:
    forward-mode derivatives of the continued fraction, on the side of the switch point where
    it converges (I_x(a, b) = 1 - I_{1-x}(b, a) on the other)."""
    swap = x >= (a + 1.0) / (a + b + 2.0)
    p, q, y = jnp.where(swap, b, a), jnp.where(swap, a, b), jnp.where(swap, 1.0 - x, x)

    def grads(p, q, y):
        log_i = lambda p, q: _log_betainc_cf(p, q, y)  # noqa: E731
        v, dp = jax.jvp(log_i, (p, q), (jnp.ones_like(p), jnp.zeros_like(q)))
        _, dq = jax.jvp(log_i, (p, q), (jnp.zeros_like(p), jnp.ones_like(q)))
        i = jnp.exp(v)
        return i * dp, i * dq

    gp, gq = grads(p, q, y)
    # swapped: I = 1 - J(q=a ... ) with J = I_{1-x}(b, a): dI/da = -dJ/dq, dI/db = -dJ/dp
    return jnp.where(swap, -gq, gp), jnp.where(swap, -gp, gq)


@jax.custom_jvp
def betainc(a: jax.Array, b: jax.Array, x: jax.Array) -> jax.Array:
    """The regularised incomplete beta I_x(a, b) (``jax.scipy.special.betainc``), with a
    derivative in a and b too (JAX's has none), and finite derivatives at x = 0 and 1."""
    return jss.betainc(a, b, x)


@partial(betainc.defjvp, symbolic_zeros=True)
def _betainc_jvp(primals, tangents):
    from jax.custom_derivatives import SymbolicZero

    a, b, x = primals
    da, db, dx = tangents
    out = betainc(a, b, x)
    dtype = out.dtype
    a, b, x = (jnp.asarray(v, dtype) for v in (a, b, x))
    inside = (x > 0.0) & (x < 1.0) & (a > 0.0) & (b > 0.0) & jnp.isfinite(a) & jnp.isfinite(b)
    xs = jnp.where(inside, x, 0.5)
    as_, bs = jnp.where(inside, a, 1.0), jnp.where(inside, b, 1.0)
    zero = jnp.zeros_like(out)
    tangent = zero
    if not isinstance(dx, SymbolicZero):
        log_dens = (as_ - 1.0) * jnp.log(xs) + (bs - 1.0) * jnp.log1p(-xs) - _log_beta(as_, bs)
        tangent = tangent + jnp.where(inside, jnp.exp(log_dens), 0.0) * dx
    if not (isinstance(da, SymbolicZero) and isinstance(db, SymbolicZero)):
        ga, gb = _betainc_param_grads(as_, bs, xs)
        if not isinstance(da, SymbolicZero):
            tangent = tangent + jnp.where(inside, ga, 0.0) * da
        if not isinstance(db, SymbolicZero):
            tangent = tangent + jnp.where(inside, gb, 0.0) * db
    return out, jnp.broadcast_to(tangent, out.shape)
