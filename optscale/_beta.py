"""The Beta score family on [low, high]: distribution, moments, and batched MLE / MAP fits.

The Beta is an exponential family in (a, b) with sufficient statistics sum log z and
sum log(1 - z) (z the score mapped to [0, 1]), so its negative log-likelihood
n log B(a, b) - (a - 1) S1 - (b - 1) S2 is convex in (a, b), and its conjugate prior is
"kappa pseudo-scores with the log-moments of Beta(a0, b0)": the MAP adds those to S1, S2 and n,
keeps the objective convex, and returns (a0, b0) exactly when no score is seen. Newton runs in
(a, b) with the exact Hessian (trigamma), a parallel line search over halvings, and a box
a, b in [1e-2, 1e4] that keeps degenerate inputs (one score, all equal) finite: those end on the
box with status BOUNDARY. Scores are clipped to [low + eps w, high - eps w] (w = high - low)
before the logs, so a score exactly at a bound does not make the likelihood infinite.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from optscale._family import ScoreDistribution, Xp, family
from optscale._fit import FitStatus, MomentStatus, row_sum
from optscale._typing import ArrayLike

__all__ = ["Beta", "beta_fit_arrays", "beta_from_moments"]

A_MIN, A_MAX = 1e-2, 1e4
_HALVINGS = 8


@family
class Beta(ScoreDistribution):
    """Beta(a, b) stretched to [low, high]; parameters broadcast to a batch shape.

    Example:
        >>> import optscale
        >>> d = optscale.Beta(a=[9.0, 2.0], b=1.0)
        >>> [round(float(p), 4) for p in d.cdf(0.95)]
        [0.6302, 0.9025]
    """

    a: ArrayLike
    b: ArrayLike
    low: ArrayLike = 0.0
    high: ArrayLike = 1.0
    rule = "a and b must be finite and > 0; low < high finite"
    _SAFE = (2.0, 2.0, 0.0, 1.0)  # stands in for invalid elements (see ScoreDistribution._safe)

    def _z(self, x: Any) -> tuple[Any, Any]:
        w = self.high - self.low
        return (x - self.low) / w, (self.high - x) / w

    def _log_cdf_sf(self, xp: Xp, x: Any) -> tuple[Any, Any]:
        n, sp = xp.np, xp.sp
        z, zc = self._z(x)
        f = sp.betainc(self.a, self.b, z)
        s = sp.betainc(self.b, self.a, zc)
        # each small one is accurate in relative terms; the other is its complement (each
        # branch on an argument in its domain, so that the unused one has a finite derivative)
        small_f, small_s = f < 0.5, s < 0.5
        lc = n.where(small_f, n.log(n.where(small_f, f, 0.5)), n.log1p(-n.where(small_f, 0.5, s)))
        ls = n.where(small_s, n.log(n.where(small_s, s, 0.5)), n.log1p(-n.where(small_s, 0.5, f)))
        return lc, ls

    def _logpdf(self, xp: Xp, x: Any) -> Any:
        n, sp = xp.np, xp.sp
        z, zc = self._z(x)
        return (sp.xlogy(self.a - 1.0, z) + sp.xlogy(self.b - 1.0, zc)
                - _betaln(sp, self.a, self.b) - n.log(self.high - self.low))

    def _invalid(self, xp: Xp) -> Any:
        n = xp.np
        ok = (n.isfinite(self.a) & (self.a > 0) & n.isfinite(self.b) & (self.b > 0)
              & n.isfinite(self.low) & n.isfinite(self.high) & (self.low < self.high))
        return ~ok


def beta_from_moments(mean: ArrayLike, std: ArrayLike, low: ArrayLike = 0.0,
                      high: ArrayLike = 1.0
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, status): the Beta on [low, high] with this mean and std (closed form).

    Any mean strictly inside the range and variance below m (1 - m) (in unit-range terms) is
    reachable: status OK. A larger variance (only two-point distributions reach m (1 - m)) gets
    status IMPOSSIBLE and the Beta with the mean kept and 99.9 % of the largest variance; a mean
    on or outside the range, or NaN, is INVALID (a = b = NaN).

    Example:
        >>> a, b, status = beta_from_moments(0.9, 0.08)
        >>> round(float(a), 3), round(float(b), 3), int(status)
        (11.756, 1.306, 0)
    """
    mean, std, low, high = np.broadcast_arrays(*(np.asarray(v, np.float64)
                                                 for v in (mean, std, low, high)))
    w = high - low
    with np.errstate(all="ignore"):
        m = (mean - low) / w
        v = (std / w) ** 2
        top = m * (1.0 - m)
        valid = np.isfinite(m) & np.isfinite(v) & (m > 0) & (m < 1) & (v >= 0) & (w > 0)
        possible = valid & (v < top) & (v > 0)
        v = np.where(possible, v, 0.999 * top)
        c = top / v - 1.0
        a, b = m * c, (1.0 - m) * c
    status = np.where(~valid, MomentStatus.INVALID,
                      np.where(possible, MomentStatus.OK, MomentStatus.IMPOSSIBLE))
    a, b = np.where(valid, a, np.nan), np.where(valid, b, np.nan)
    return a, b, status.astype(np.int32)


def _betaln(sp, a, b):
    # from gammaln: jax.scipy.special.betaln is off by ~1e-6 relative in float64 here
    return sp.gammaln(a) + sp.gammaln(b) - sp.gammaln(a + b)


def _objective(xp: Xp, a, b, n, s1, s2):
    return n * _betaln(xp.sp, a, b) - (a - 1.0) * s1 - (b - 1.0) * s2


def beta_stats(xp: Xp, scores: Any, mask: Any, low: Any, high: Any, prior: Any, strength: Any,
               eps: float) -> tuple[Any, Any, Any]:
    """(count, S1, S2): the sufficient statistics of the (MAP) objective, the prior's
    pseudo-scores included."""
    n_, sp = xp.np, xp.sp
    w = (high - low)[:, None]
    z = n_.clip((scores - low[:, None]) / w, eps, 1.0 - eps)
    m = mask.astype(scores.dtype)
    count = row_sum(m)
    s1 = row_sum(m * n_.log(z))
    s2 = row_sum(m * n_.log1p(-z))
    if prior is not None:
        a0, b0 = prior
        dg = sp.digamma(a0 + b0)
        count = count + strength
        s1 = s1 + strength * (sp.digamma(a0) - dg)
        s2 = s2 + strength * (sp.digamma(b0) - dg)
    return count, s1, s2


def beta_gradient(xp: Xp, a: Any, b: Any, count: Any, s1: Any, s2: Any) -> tuple[Any, Any]:
    """The objective's gradient in (a, b)."""
    sp = xp.sp
    dab = sp.digamma(a + b)
    return count * (sp.digamma(a) - dab) - s1, count * (sp.digamma(b) - dab) - s2


def beta_hessian(xp: Xp, a: Any, b: Any, count: Any) -> tuple[Any, Any, Any]:
    """(h_aa, h_ab, h_bb) of the objective (trigamma)."""
    sp = xp.sp
    t = count * sp.polygamma(1, a + b)
    return count * sp.polygamma(1, a) - t, -t, count * sp.polygamma(1, b) - t


def beta_fit_arrays(xp: Xp, scores: Any, mask: Any, low: Any, high: Any, prior: Any,
                    strength: Any, eps: float, max_iter: int) -> tuple[Any, ...]:
    """Batched Beta MLE / MAP in the namespace ``xp``; scores [B, n] already in range.

    Returns (a, b, status, n_iter) with [B] arrays.
    """
    n_, sp = xp.np, xp.sp
    dtype = scores.dtype
    w = (high - low)[:, None]
    z = n_.clip((scores - low[:, None]) / w, eps, 1.0 - eps)
    m = mask.astype(dtype)
    count, s1, s2 = beta_stats(xp, scores, mask, low, high, prior, strength, eps)
    empty = count <= 0
    count_s = n_.where(empty, 1.0, count)
    # start from the method of moments of the (clipped) scores, inside the box
    observed = n_.maximum(row_sum(m), 1.0)
    mean_z = row_sum(m * z) / observed
    var_z = row_sum(m * (z - mean_z[:, None]) ** 2) / observed
    top = mean_z * (1.0 - mean_z)
    c = top / n_.clip(var_z, 1e-3 * top, 0.9 * top) - 1.0
    a = n_.clip(mean_z * c, A_MIN, A_MAX)
    b = n_.clip((1.0 - mean_z) * c, A_MIN, A_MAX)
    if prior is not None:
        a = n_.where(m.sum(-1) > 0, a, n_.clip(prior[0], A_MIN, A_MAX))
        b = n_.where(m.sum(-1) > 0, b, n_.clip(prior[1], A_MIN, A_MAX))
    a, b = a.astype(dtype), b.astype(dtype)
    tol = 1e-10 if np.finfo(dtype).bits > 32 else 1e-5
    halvings = n_.asarray(0.5 ** np.arange(_HALVINGS), dtype)

    def body(_, state):
        a, b, done, iters = state
        dab = sp.digamma(a + b)
        ga = count_s * (sp.digamma(a) - dab) - s1
        gb = count_s * (sp.digamma(b) - dab) - s2
        t = count_s * sp.polygamma(1, a + b)
        haa = count_s * sp.polygamma(1, a) - t
        hbb = count_s * sp.polygamma(1, b) - t
        det = n_.maximum(haa * hbb - t * t, 1e-300 if np.finfo(dtype).bits > 32 else 1e-30)
        da = -(hbb * ga + t * gb) / det
        db = -(t * ga + haa * gb) / det
        f0 = _objective(xp, a, b, count_s, s1, s2)
        ta = n_.clip(a[:, None] + halvings * da[:, None], A_MIN, A_MAX)
        tb = n_.clip(b[:, None] + halvings * db[:, None], A_MIN, A_MAX)
        ft = _objective(xp, ta, tb, count_s[:, None], s1[:, None], s2[:, None])
        best = n_.argmin(n_.where(n_.isfinite(ft), ft, n_.inf), axis=-1)
        pick = lambda v: n_.take_along_axis(v, best[:, None], axis=-1)[:, 0]  # noqa: E731
        na, nb, nf = pick(ta), pick(tb), pick(ft)
        better = n_.isfinite(nf) & (nf < f0)
        step = n_.maximum(n_.abs(na - a) / a, n_.abs(nb - b) / b)
        move = ~done & better
        a, b = n_.where(move, na, a), n_.where(move, nb, b)
        done = done | ~better | (step < tol)
        return a, b, done, iters + (~done).astype(iters.dtype)

    done0 = empty
    iters0 = n_.zeros_like(a, dtype=n_.int32)  # (_like: varies over a shard_map mesh)
    a, b, done, iters = xp.fori(max_iter, body, (a, b, done0, iters0))
    on_box = (a <= A_MIN * (1 + 1e-6)) | (a >= A_MAX * (1 - 1e-6)) | \
        (b <= A_MIN * (1 + 1e-6)) | (b >= A_MAX * (1 - 1e-6))
    status = n_.where(empty, FitStatus.INVALID, n_.where(
        ~done, FitStatus.MAXITER, n_.where(on_box, FitStatus.BOUNDARY, FitStatus.OK)))
    return a, b, status.astype(n_.int32), iters
