"""The solvers' fast path: log F(t) from three erfc values, with a bound on its error.

Most queries a user sends have mu inside the score range and a target that is not in a far
tail. For them the plain formula (normal CDF differences) is accurate enough to decide N*
exactly, and it costs a fraction of the careful log-space path. This module computes the plain
formula together with a per-element bound on its error; the solvers keep its answer only where
the bound proves that the careful path would give the same N*, and send the rest to the careful
path. Written once for any array namespace (NumPy, jax.numpy); the Cython kernels mirror it.

Error argument (u is one of the standardized points alpha = (low - mu)/sigma, z = (t - mu)/sigma,
beta = (high - mu)/sigma, and eps the working precision's unit roundoff):

- ``T(u) = erfc(|u| / sqrt 2) / 2 = Phi(-|u|)`` is computed with a small relative error
  ``e(u)``: erfc itself is within ``3 (1 + x^2) eps`` of the truth at its
  argument x = |u|/sqrt 2 (measured for XLA's float32/float64 and SciPy's: ``exp(-x^2)`` is
  formed from a rounded x^2) and scaling the argument moves it by ``(u^2 + 1) eps``:
  ``e(z) = (8 + 3 z^2) eps``. The points are formed exactly as the careful path forms them,
  so their rounding is common to both, except where the careful path measures a tail mass
  by the exact width (x - low) / sigma or (high - x) / sigma instead of from alpha or beta:
  the rounding of alpha and beta (two roundings, hazard(u) <= |u| + 0.8) adds
  ``2 (u^2 + 0.8 |u|) eps`` there, so ``e(u) = (8 + 6 u^2) eps`` at alpha and beta. Values
  that underflow are off by at most ``theta = 2 * tiny`` in absolute terms.
- Only central ranges (alpha < 0 < beta) are taken. With z > 0, the lower mass is
  ``1 - T(alpha) - T(z)`` (absolute error ``e T + e T + 2 theta + 2 eps``) and the upper mass
  ``T(z) - T(beta)`` (absolute error ``e T + e T + 2 theta + eps * mass``), mirrored for z <= 0.
  Their sum Z has no cancellation, so ``S = upper / Z`` has absolute error
  ``dS <= (d_upper + S dZ) / Z + 2 eps S``, and ``log F = log1p(-S)`` has absolute error
  ``dlogF <= 1.01 dS / F + L eps |log F|`` while ``dS <= F / 8`` (otherwise the element is not
  usable), L the relative error of log1p (2, or 128 for XLA's float64 log1p on [-0.5, -0.3]).
- The careful path evaluates the same special functions at the same standardized points (its
  tail masses from exact widths, which is at least as accurate), so its error is within the
  same bound, and the two differ by at most ``d = 2 dlogF + 16 eps_out |log F|``: the factor 2
  for the two errors, the last term for rounding log F to the output dtype and for the
  rounding of the comparisons below. The test suite checks ``|fast - careful| <= d / 4`` on
  5 x 10^4 random central queries per dtype, a safety factor of 4 on the measured constants.
- The careful answer n_c is the smallest n >= 0 with ``n log F_c <= log(1 - c)`` as evaluated.
  The fast answer n_f (the same rule on the fast log F) equals it whenever
  ``n_f (|log F| - d) >= |log(1 - c)|`` and ``(n_f - 1) (|log F| + d) < |log(1 - c)|``; in
  words, unless ``log(1 - c) / log F`` lies within ``d / |log F|`` relative of an integer.
  Beyond the budget, ``n_max (|log F| + d) < |log(1 - c)|`` proves both infeasible. Elements
  that fail these tests (and every one-sided range, subnormal mass or NaN) take the careful
  path. See :func:`best_exact`; the Cython kernels apply the same bound to k of N.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

__all__ = [
    "BestLogs", "FastLogs", "XLA32_ERRORS", "best_exact", "best_logs", "central_logs", "margin",
    "plainly_valid",
]

SQRT_HALF = 1.0 / math.sqrt(2.0)
# e(u) = (E0 + E2 u^2) eps at z, E2_BOUND at alpha and beta (see the module docstring)
E0, E2, E2_BOUND = 8.0, 3.0, 6.0
U_CAP = 1e4  # |u| beyond this: T(u) underflows in every dtype, keep u^2 finite


class FastLogs(NamedTuple):
    """log F, log S and their absolute error bounds, S itself, and which elements qualify."""

    log_f: Any
    d_log_f: Any
    log_s: Any  # None unless asked for
    d_log_s: Any
    s: Any
    d_s: Any
    usable: Any
    log_size: Any  # an upper bound on |log| of the two masses (the careful path's log sizes)


def plainly_valid(xp: Any, mu: Any, sigma: Any, low: Any, high: Any) -> Any:
    """A sufficient condition, cheap to test (no division), for the parameter rules of
    :mod:`optscale._checks`: everything finite, low < high, and |low - mu|, |high - mu| within
    2^60 sigma and high - low at least 2^-60 sigma, so every standardized quantity is finite
    and normal. Elements that fail it go to the careful path, which applies the rules exactly.
    """
    return (xp.isfinite(mu) & xp.isfinite(sigma) & xp.isfinite(low) & xp.isfinite(high)
            & (high > low) & (sigma >= 2.0**-60) & (xp.abs(low - mu) <= 2.0**60 * sigma)
            & (xp.abs(high - mu) <= 2.0**60 * sigma) & (high - low >= 2.0**-60 * sigma))


def _masses(xp, right, near, far, d_near, d_far, x, low, high, alpha, beta):
    """The plain formula's masses below and above x from the one on z's side of the centre
    (``near``) and the one straddling it (``far``), with their error bounds: (lower, upper,
    d_lower, d_upper, total, ok, 1 / total, S, F); ``ok`` where the plain formula applies
    (x strictly inside, both masses usable)."""
    lower, upper = xp.where(right, far, near), xp.where(right, near, far)
    d_lower, d_upper = xp.where(right, d_far, d_near), xp.where(right, d_near, d_far)
    total = lower + upper
    inside = (x > low) & (x < high)
    ok = (alpha < 0.0) & (beta > 0.0) & inside & (lower > 0.0) & (upper >= 0.0)
    inv_total = xp.where(ok, 1.0 / xp.where(ok, total, 1.0), 1.0)
    s = xp.where(ok, upper, 0.5) * inv_total
    f = xp.where(ok, lower, 0.5) * inv_total
    return lower, upper, d_lower, d_upper, total, ok, inv_total, s, f


def central_logs(xp: Any, erfc: Any, mu: Any, sigma: Any, low: Any, high: Any, x: Any,
                 *, with_sf: bool = False, log1p_error: float = 2.0) -> FastLogs:
    """The plain-formula logs at x and their error bounds, in the dtype of the inputs.

    ``usable`` is False where the bound does not apply (one-sided range, x outside (low, high),
    mass below the normal range, a NaN); there the values are placeholders. x >= high gives
    log F = 0 exactly and x <= low log F = -inf, as on the careful path. ``log1p_error``: the
    relative error of ``log1p`` on [-0.5, -0.3] in units of eps (XLA's float64 log1p is off by
    up to 121 eps there; elsewhere, and in SciPy, libm and XLA's float32, it is within 2).
    Divisions are few and each result is used once or through a reciprocal: XLA's CPU fusion
    keeps every other operation in one loop only then.
    """
    dtype = mu.dtype
    finfo = xp.finfo(dtype)
    eps, theta = float(finfo.eps), 2.0 * float(finfo.tiny)
    # The careful path's standardized points, bit for bit. (Each expensive result goes through
    # a select before its several uses: XLA's CPU fusion duplicates selects, not divisions.)
    positive = sigma > 0.0
    alpha = xp.where(positive, (low - mu) / sigma, 0.0)
    beta = xp.where(positive, (high - mu) / sigma, 0.0)
    z = xp.where(positive, (x - mu) / sigma, 0.0)

    def tail(u, e2):
        au = xp.minimum(xp.abs(u), U_CAP)
        t = xp.where(au < U_CAP, 0.5 * erfc(au * SQRT_HALF), 0.0)
        return t, t * ((E0 + e2 * au * au) * eps) + theta

    ta, ea = tail(alpha, E2_BOUND)
    tz, ez = tail(z, E2)
    tb, eb = tail(beta, E2_BOUND)
    right = z > 0.0
    # the mass on z's side of the centre is a difference of two tails; the other straddles 0
    near = tz - xp.where(right, tb, ta)
    far = (1.0 - xp.where(right, ta, tz)) - xp.where(right, tz, tb)
    d_near = ez + xp.where(right, eb, ea) + eps * xp.abs(near)
    d_far = ez + xp.where(right, ea, eb) + 2.0 * eps
    lower, upper, d_lower, d_upper, total, ok, inv_total, s, f = _masses(
        xp, right, near, far, d_near, d_far, x, low, high, alpha, beta)
    d_s = (d_upper + s * (d_lower + d_upper + eps * total)) * inv_total + 2.0 * eps * s
    log_f = xp.where(ok, xp.log1p(-s), -1.0)
    log1p_eps = xp.where(s >= 0.3, log1p_error, 2.0) * eps
    d_log_f = xp.where(ok, (1.01 * d_s) / f, 0.0) + log1p_eps * xp.abs(log_f)
    usable = ok & (d_s <= 0.125 * f)
    # (|exponent| + 1) ln 2 bounds |log m| for m in (0, 1], with no log to evaluate
    exps = xp.maximum(xp.abs(xp.frexp(xp.where(ok, lower, 1.0))[1]),
                      xp.abs(xp.frexp(xp.where(ok & (upper > 0.0), upper, 1.0))[1]))
    log_size = (exps.astype(dtype) + 1.0) * 0.6931471805599453
    # outside the range: the careful path's exact values
    above, below = x >= high, x <= low
    log_f = xp.where(above, 0.0, xp.where(below, -xp.inf, log_f))
    d_log_f = xp.where(above | below, 0.0, d_log_f)
    usable = usable | (above | below)
    if not with_sf:
        return FastLogs(log_f, d_log_f, None, None, s, d_s, usable, log_size)
    positive = ok & (s > 0.0)
    s_safe = xp.where(positive, s, 1.0)
    log_s = xp.where(positive, xp.log(s_safe), -xp.inf)
    d_log_s = xp.where(positive, (1.01 * d_s) / s_safe + eps * xp.abs(xp.log(s_safe)), xp.inf)
    log_s = xp.where(above, -xp.inf, xp.where(below, 0.0, log_s))
    d_log_s = xp.where(above | below, 0.0, d_log_s)
    return FastLogs(log_f, d_log_f, log_s, d_log_s, s, d_s, usable, log_size)


def margin(xp: Any, log_f: Any, d_log_f: Any, log_size: Any, eps_out: float,
           careful_log1p_error: float = 2.0) -> Any:
    """d: how far the careful log F may lie from this one (see the module docstring).

    Beyond the fast path's own error (counted twice: the careful path's is of the same kind),
    the careful path rounds logs of the masses (|log m| <= log_size) by 4 eps log_size in
    log S, and its log1p, whose results there are below 0.7 in size, adds L eps (128 for XLA's
    float64 log1p); an absolute error delta in log S moves log F by at most 2 delta relative.
    """
    return 2.0 * d_log_f + eps_out * xp.abs(log_f) * (16.0 + 4.0 * log_size
                                                       + 4.0 * careful_log1p_error)


def best_exact(xp: Any, n: Any, log_f: Any, d: Any, log1mc: Any, n_lo: Any, n_hi: Any,
               n_exact: float) -> Any:
    """Whether the careful path's k = 1 answer equals ``n`` (the smallest n >= 0 with
    n log F <= log(1 - c), as evaluated with this log F; +inf where log F == 0).

    Within [n_min, n_max] both must agree on n (clipped below at n_min); beyond n_max both
    must be beyond it. ``n_exact``: the largest n the dtype counts exactly, 2^(bits - 1) with
    ``bits`` the dtype's mantissa bits; d must also stay below 2^-(bits - 12) |log F|, so that
    the achieved value matches the careful one to ~1e-12 in float64.
    """
    a, big_b = -log_f, -log1mc
    # the achieved value 1 - F^n carries log F's relative error: keep it near the dtype's
    close = d <= a * 2.0 ** -(n_exact_bits(n_exact) - 12)
    beyond = n > n_hi
    sure_beyond = n_hi * (a + d) < big_b
    m = xp.maximum(xp.where(beyond, 1.0, n), n_lo)
    reaches = m * (a - d) >= big_b
    short = (m <= n_lo) | ((m - 1.0) * (a + d) < big_b)
    return close & xp.where(beyond, sure_beyond, reaches & short & (n <= n_exact))


def n_exact_bits(n_exact: float) -> int:
    """The dtype's mantissa bits, from the n_exact of :func:`best_exact` (2^(bits - 1))."""
    return int(math.log2(n_exact)) + 1


# ---------------------------------------------------------------- the JAX solvers' tighter bound

# XLA's float32 functions, the relative error of the result in eps: measured maxima on 2e6
# random points (log 1.0, exp 0.7, log1p 1.5, expm1 2.9), doubled.
XLA32_ERRORS = dict(log=2.0, exp=1.5, log1p=3.0, expm1=6.0)
# Phi(-|u|) as (1 - erf(|u| / sqrt 2)) / 2: its absolute error in eps (measured: 1.3 with
# XLA's float32 erf, 0.4 with its float64 erf, against mpmath), tripled and more.
ERF_TAIL_ERROR = 4.0
LN2 = math.log(2.0)


class BestLogs(NamedTuple):
    """log F at x, a bound d on its distance from the careful path's log F, and which elements
    the bound covers."""

    log_f: Any
    d: Any
    usable: Any


def _pow2(xp: Any, k: Any, dtype: Any) -> Any:
    """2^k for integers k in the normal range, exactly, with no pow (jnp.ldexp is one)."""
    if xp.__name__ == "numpy":
        return xp.ldexp(xp.ones((), dtype), k)
    from jax import lax

    bits, mant = xp.finfo(dtype).bits, xp.finfo(dtype).nmant
    ints = xp.int32 if bits == 32 else xp.int64
    biased = (k + (2 ** (bits - mant - 2) - 1)).astype(ints)
    return lax.bitcast_convert_type(biased << mant, dtype)


def _log_size(xp: Any, v: Any) -> Any:
    """(|exponent| + 1) ln 2 >= |log v| for v in (0, 1], with no log to evaluate."""
    return (xp.abs(xp.frexp(v)[1]).astype(v.dtype) + 1.0) * LN2


def best_logs(xp: Any, erfc: Any, erf: Any, mu: Any, sigma: Any, low: Any, high: Any, x: Any, *,
              log1p_error: float, careful_log1p_error: float, shared: bool,
              exp_zero: float | None) -> BestLogs:
    """The plain log F of :func:`central_logs` with d, the whole margin of :func:`best_exact`
    (what :func:`margin` adds included), cheaper and tightened where it can be proven tighter:

    - The tail on the far side of z from the centre enters only the mass that straddles the
      centre, which has no cancellation: with ``erf`` given it comes from erf, (1 - erf(|u| /
      sqrt 2)) / 2, with an absolute error of :data:`ERF_TAIL_ERROR` eps (XLA's float32 erf
      costs less than its erfc; its float64 erf several times more, so float64 passes None).
    - Underflow: the absolute term theta is kept only for tails below tiny / eps 2^8 (2^-95 in
      float32), where the relative term itself would leave the normal range (and a device
      that flushes subnormals would zero it). A computed erfc above that had no subnormal
      intermediate (exp(-x^2) exceeds the tail), so the relative bound alone holds.
    - F within rounding of 1 (``exp_zero``: the largest x with exp(x) == 0 on the device, see
      :func:`optscale._solve_fast.exp_zero`): the careful path forms log F = log1p(-exp(log S))
      with log S <= log Phi(-z) - log(lower mass) + 1 <= -z^2/2 - log z - 0.92 + 1.39 + 1 (z
      >= 10, lower mass >= 1/4, the 1 for its rounding); once that is below exp_zero, its log F
      is exactly -0.0, and so is the one returned here, with d = 0.
    - ``shared`` (XLA float32, where the test suite checks it bit for bit): the careful path's
      log Phi(-u) is log(erfc(u / sqrt 2) / 2) with the very erfc value used here for 1 <= u <
      10 (jax's log_ndtr switches to a series below -10). Where z > 0 and both z and beta are
      in that range, and the careful path takes the direct ratio of its tail masses (z < 8, the
      width (high - x) / sigma above its series threshold 0.005 (1 + z)), both paths form the
      upper mass from the same two tails, so erfc's own error (3 (1 + x^2) eps, the bulk of
      d for large n) cancels. What is left is each path's arithmetic on those values, bounded
      step by step with XLA's measured accuracies (:data:`XLA32_ERRORS`, R below), and the
      error of the lower mass (no cancellation, bounded as in :func:`central_logs`).

    The shared bound. Careful path, relative error of its S against S0 = U0 / (L + U0), U0 =
    T(z) - T(beta) from the shared tails and L the exact lower mass (LU = :func:`_log_size` of
    U0, LB of T(beta), kappa = T(beta) / U0): its log T(z) is off by ``R_log LU eps``; D = log
    T(beta) - log T(z) by ``e_D = (R_log (LB + LU) + LB / 2) eps``, which log(1 - e^D)
    multiplies by kappa; log(1 - e^D) adds ``R_expm1 eps`` and ``R_log1p |log(1 - e^D)| eps <=
    R_log1p kappa eps``; log T(z) + log(1 - e^D) rounds by ``LU eps / 2``; logaddexp with the
    log lower mass (relative error ``eps_L``, from at most d_far + 6 eps absolute: the rounding
    of its two tails' exp/log, or its erf) passes the upper's error on with weight S and adds
    ``(0.5 R_exp + 0.7 R_log1p + 0.8) eps``; log S = log U - log Z rounds by ``(LU + 1.2) eps /
    2`` (Z >= 0.3) and exp(log S) by ``R_exp eps``. S here: ``2 eps + (d_far + U0 eps / 2) / Z``
    relative. Then d = 1.01 (dS_here + dS_careful) / F + (R_log1p + log1p_error + 2) eps |log F|
    (the two log1p(-S) and the comparisons of :func:`best_exact`).
    """
    dtype = mu.dtype
    finfo = xp.finfo(dtype)
    eps, tiny = float(finfo.eps), float(finfo.tiny)
    positive = sigma > 0.0
    alpha = xp.where(positive, (low - mu) / sigma, 0.0)
    beta = xp.where(positive, (high - mu) / sigma, 0.0)
    z = xp.where(positive, (x - mu) / sigma, 0.0)
    right = z > 0.0

    # below this, the relative error term t (E0 + ...) eps would itself leave the normal
    # range, and a device that flushes subnormals to zero would make it 0
    small = tiny / eps * 2.0**8

    def tail(u, e2):
        au = xp.minimum(xp.abs(u), U_CAP)
        t = xp.where(au < U_CAP, 0.5 * erfc(au * SQRT_HALF), 0.0)
        return t, t * ((E0 + e2 * au * au) * eps) + xp.where(t < small, 2.0 * tiny, 0.0)

    tz, ez = tail(z, E2)
    tn, en = tail(xp.where(right, beta, alpha), E2_BOUND)  # the bound on z's side
    u_far = xp.where(right, alpha, beta)  # the other
    if erf is None:
        tf, ef = tail(u_far, E2_BOUND)
    else:
        tf, ef = 0.5 * (1.0 - erf(xp.abs(u_far) * SQRT_HALF)), ERF_TAIL_ERROR * eps
    near = tz - tn
    far = (1.0 - tf) - tz
    d_near = ez + en + eps * xp.abs(near)
    d_far = ez + ef + 2.0 * eps
    lower, upper, d_lower, d_upper, total, ok, inv_total, s, f = _masses(
        xp, right, near, far, d_near, d_far, x, low, high, alpha, beta)
    # an upper bound on 1 / F with no division: 1 / (1 - s) <= 1 + 2 s for s <= 1/2, else
    # 2^(1 - e) with F = m 2^e, m in [1/2, 1)
    e_f = xp.frexp(xp.where(ok, f, 1.0))[1]
    inv_f = xp.where(s <= 0.5, 1.0 + 2.0 * s, _pow2(xp, 1 - e_f, dtype))
    d_s = (d_upper + s * (d_lower + d_upper + eps * total)) * inv_total + 2.0 * eps * s
    log_f = xp.where(ok, xp.log1p(-s), -1.0)
    usable = ok & (d_s <= 0.125 * f)
    l1 = xp.where(s >= 0.3, log1p_error, 2.0)
    size_upper = _log_size(xp, xp.where(ok & (upper > 0.0), upper, 1.0))
    log_size = xp.maximum(_log_size(xp, xp.where(ok, lower, 1.0)), size_upper)
    # :func:`margin`: 2 d_log_f + eps |log F| (16 + 4 log_size + 4 careful_log1p_error), with
    # d_log_f = 1.01 d_s / F + l1 eps |log F|
    d_s_total = 2.0 * d_s
    log_f_factor = 2.0 * l1 + 16.0 + 4.0 * log_size + 4.0 * careful_log1p_error
    if shared:
        r = XLA32_ERRORS
        r_l = max(r["log"], r["log1p"])
        lu, lb = size_upper, _log_size(xp, xp.where(ok & (tn > 0.0), tn, 1.0))
        width = (beta - z) - eps * (beta + z)  # <= (high - x) / sigma as the careful path has it
        regime = (ok & right & (z >= 1.01) & (z < 6.0) & (beta >= 1.01) & (beta < 10.0)
                  & (width > 0.00505 * (1.0 + z)) & (s <= 0.4) & (lower >= 0.25)
                  & (total >= 0.3))
        e_d = (r["log"] * (lb + lu) + 0.5 * lb + r_l) * eps
        e_up = ((r["log"] + 0.5) * lu + max(r["expm1"], r["exp"])) * eps
        eps_l = 1.01 * (d_far + 6.0 * eps) * inv_total * inv_f + 1.4 * r_l * eps
        own = (0.5 * r["exp"] + 0.7 * r["log1p"] + 0.8) * eps + 0.5 * eps * (lu + 1.2)
        r_careful = 1.01 * ((1.0 + s) * e_up + eps_l + own) + r["exp"] * eps
        r_here = 1.01 * (2.0 * eps + (d_far + 0.5 * eps * near) * inv_total)
        d_s_shared = s * (r_here + r_careful) + 1.01 * (1.0 + s) * tn * inv_total * e_d
        d_s_total = xp.where(regime, d_s_shared, d_s_total)
        log_f_factor = xp.where(regime, r["log1p"] + l1 + 2.0, log_f_factor)
    d = 1.01 * d_s_total * inv_f + log_f_factor * eps * xp.abs(log_f)
    if exp_zero is not None:
        zero = ok & right & (z >= 10.0) & (z * z >= -2.0 * exp_zero) & (lower >= 0.25)
        log_f, d, usable = xp.where(zero, 0.0, log_f), xp.where(zero, 0.0, d), usable | zero
    above, below = x >= high, x <= low
    log_f = xp.where(above, 0.0, xp.where(below, -xp.inf, log_f))
    d = xp.where(above | below, 0.0, d)
    return BestLogs(log_f, d, usable | above | below)
