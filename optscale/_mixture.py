"""A two-component truncated-normal mixture score family, and its batched EM fit (MLE / MAP).

Model. X ~ (1 - w) TN(mu1, sigma1; lo, hi) + w TN(mu2, sigma2; lo, hi): real verifier scores are
often bimodal (wrong answers near the bottom of the range, right ones near the top), which one
truncated normal fits badly. F is the mixture of the components' CDFs, so log F and log S are
log-sum-exps of the components' (each accurate in relative terms) and every solver criterion
works unchanged. By convention component 2 is the upper one after a fit (mu1 <= mu2).

Fit. Expectation-maximisation with a fixed iteration count (``xp.fori``; no data-dependent
Python control flow, so it jits and runs the same steps on NumPy and JAX):

- start: the optimal 1-D 2-means split of each question's sorted scores (exact, from prefix
  sums over every split point); cluster means, cluster std (at least the pooled within-cluster
  std) and cluster share. With one score, or all scores equal, both components start at the
  mean with the smallest sigma and w = 1/2.
- E-step: responsibilities r_i = P(component 2 | x_i) from the components' log densities.
- M-step: the weight in closed form; each component's weighted truncated-normal negative
  log-likelihood depends on the data only through (sum r, weighted mean, weighted centred sum of
  squares), like the plain fit's (:mod:`optscale._fit`), and is decreased by a few damped Newton
  steps in (mu, log sigma) (eigenvalue-floored Hessian, a parallel line search over halvings,
  a step accepted only where it lowers the objective). This is generalised EM: each iteration
  increases the expected complete-data log-likelihood, so the log-likelihood (the log posterior
  under a prior) never decreases.
- convergence: a question stops (its parameters freeze) once an iteration moves no parameter by
  more than a tolerance; ``n_iter`` counts the iterations it used.

Safeguards. With 4-16 samples a two-component mixture is barely identifiable, and its
likelihood is unbounded (a component collapsing onto one score has infinite density). So:
the weight is kept in [w_min, 1 - w_min] (default 0.05; the weight's M-step objective is
concave, so clipping its maximiser is the exact constrained M-step), sigma in
[sigma_min w, 10 w] (default sigma_min = 0.01, w = hi - lo), mu in [lo - w, hi + w] (the box of
the single truncated-normal fit), and the components are swapped (w -> 1 - w) at the end so that
mu1 <= mu2 (label switching does not change the distribution). A fit that ends with a parameter
on one of these bounds has status BOUNDARY; it is finite, never NaN. With few samples the
honest remedy is a prior.

Prior (MAP). ``prior = (w0, mu1_0, sigma1_0, mu2_0, sigma2_0)`` per question with strength
kappa, read as kappa pseudo-samples from the prior mixture: the weight gets the Beta-style
pseudo-counts kappa w0 (component 2) and kappa (1 - w0) (component 1), so its M-step is
w = (sum r + kappa w0) / (n + kappa); component k gets kappa_k = kappa w0_k pseudo-observations
with mean mu_k0 and variance sigma_k0^2 of its parent normal, i.e. the penalty
kappa_k (((mu - mu_k0)^2 + sigma_k0^2) / (2 sigma^2) + log sigma), which is the normal-inverse-
gamma-style conjugate prior of the untruncated normal and is minimised exactly at
(mu_k0, sigma_k0). (w0 is clipped into [w_min, 1 - w_min] first, so that both components have
pseudo-observations.) With no scores the fit returns the prior's parameters (the weight clipped
into [w_min, 1 - w_min], the others into their box).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from optscale._distribution import TruncatedNormal
from optscale._family import ScoreDistribution, Xp, family
from optscale._fit import FitStatus, _floored_inverse, nll_derivatives
from optscale._typing import ArrayLike

__all__ = ["TruncNormMixture", "mixture_fit_arrays", "mixture_loglik"]

W_MIN = 0.05
SIGMA_MIN = 0.01  # relative to high - low
SIGMA_MAX = 10.0
_HALVINGS = 10
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_NEWTON_STEPS = 1


@family
class TruncNormMixture(ScoreDistribution):
    """(1 - weight) TN(mu1, sigma1) + weight TN(mu2, sigma2), both truncated to [low, high];
    parameters broadcast to a batch shape.

    Example:
        >>> import optscale
        >>> from optscale._mixture import TruncNormMixture
        >>> d = TruncNormMixture(weight=[0.6, 0.2], mu1=0.1, sigma1=0.1, mu2=0.95, sigma2=0.05)
        >>> [round(float(p), 4) for p in d.cdf(0.9)]  # P(X <= 0.9)
        [0.5131, 0.8377]
    """

    weight: ArrayLike
    mu1: ArrayLike
    sigma1: ArrayLike
    mu2: ArrayLike
    sigma2: ArrayLike
    low: ArrayLike = 0.0
    high: ArrayLike = 1.0
    _SAFE = (0.5, 0.25, 0.1, 0.75, 0.1, 0.0, 1.0)  # stands in for invalid elements

    def _components(self) -> tuple[TruncatedNormal, TruncatedNormal]:
        return (TruncatedNormal(self.mu1, self.sigma1, self.low, self.high),
                TruncatedNormal(self.mu2, self.sigma2, self.low, self.high))

    def _log_weights(self, xp: Xp) -> tuple[Any, Any]:
        n = xp.np
        w = n.clip(self.weight, 0.0, 1.0)  # invalid weights are masked by _invalid
        return n.log1p(-w), n.log(w)

    def _log_cdf_sf(self, xp: Xp, x: Any) -> tuple[Any, Any]:
        n = xp.np
        c1, c2 = self._components()
        lw1, lw2 = self._log_weights(xp)
        lc1, ls1 = xp.tn_log_cdf_sf(c1, x)
        lc2, ls2 = xp.tn_log_cdf_sf(c2, x)
        # each component's log F and log S are accurate in relative terms, so are their
        # weighted log-sum-exps: no complement is formed
        return n.logaddexp(lw1 + lc1, lw2 + lc2), n.logaddexp(lw1 + ls1, lw2 + ls2)

    def _logpdf(self, xp: Xp, x: Any) -> Any:
        c1, c2 = self._components()
        lw1, lw2 = self._log_weights(xp)
        return xp.np.logaddexp(lw1 + xp.tn_logpdf(c1, x), lw2 + xp.tn_logpdf(c2, x))

    def _invalid(self, xp: Xp) -> Any:
        n = xp.np
        ok = (n.isfinite(self.weight) & (self.weight >= 0) & (self.weight <= 1)
              & n.isfinite(self.mu1) & n.isfinite(self.sigma1) & (self.sigma1 > 0)
              & n.isfinite(self.mu2) & n.isfinite(self.sigma2) & (self.sigma2 > 0)
              & n.isfinite(self.low) & n.isfinite(self.high) & (self.low < self.high))
        return ~ok


# ----------------------------------------------------------------------------- the fit

def _log_mass_fn(xp: Xp) -> Any:
    if xp.is_jax:
        from optscale._special import log_gauss_mass

        return log_gauss_mass
    from optscale._reference import _log_gauss_mass

    return _log_gauss_mass


def _e_step(xp: Xp, log_mass, w, mu, sigma, low, high, x, m):
    """(responsibilities [B, 2, n] (zero where masked), log-likelihood [B]) for parameters
    [B, 2] and scores [B, n]. The components' log densities use one log normaliser per
    component (not the per-point tail-accurate ``tn_logpdf``): cheaper to run and to compile,
    and accurate to rounding of the log normaliser, which is all EM needs."""
    n_ = xp.np
    lo, hi = low[:, None], high[:, None]
    log_z = log_mass((lo - mu) / sigma, (hi - mu) / sigma, (hi - lo) / sigma)
    lw = n_.log(n_.stack([1.0 - w, w], -1))
    z = (x[:, None, :] - mu[..., None]) / sigma[..., None]
    joint = (lw - n_.log(sigma) - _HALF_LOG_2PI - log_z)[..., None] - 0.5 * z * z
    ll_i = n_.logaddexp(joint[:, 0], joint[:, 1])
    r = n_.exp(joint - ll_i[:, None, :]) * m[:, None, :]
    return r, n_.sum(m * ll_i, axis=-1)


def _nll(xp: Xp, log_mass, stats, mu, rho, low, high):
    """A component's M-step objective (constants dropped): the weighted truncated-normal
    negative log-likelihood plus the prior's pseudo-observations of the parent normal."""
    count, mean, ss, resp = stats
    sigma = xp.np.exp(rho)
    log_z = log_mass((low - mu) / sigma, (high - mu) / sigma, (high - low) / sigma)
    return 0.5 * (count * (mean - mu) ** 2 + ss) / (sigma * sigma) + count * rho + resp * log_z


def _nll_derivatives(xp: Xp, log_mass, stats, mu, rho, low, high):
    """(f, g_mu, g_rho, h_mumu, h_murho, h_rhorho) of :func:`_nll`: the truncated normal's
    derivatives with the quadratic's count (data + pseudo) apart from the log normaliser's
    (data only)."""
    count, mean, ss, resp = stats
    return nll_derivatives(xp.np, log_mass, count, resp, mean, ss, mu, rho, low, high)


def _newton_m_step(xp: Xp, log_mass, stats, mu, rho, low, high, box, steps):
    """A few damped Newton steps on both components' objectives ([B, 2]); each is accepted only
    where it lowers the objective, so the M-step never increases it."""
    n_ = xp.np
    lo2, hi2 = low[:, None], high[:, None]
    lo3, hi3 = lo2[..., None], hi2[..., None]
    halvings = n_.asarray(0.5 ** np.arange(_HALVINGS), mu.dtype)
    stats3 = tuple(s[..., None] for s in stats)
    box3 = tuple(b[..., None] for b in box)
    def newton(_, state):
        mu, rho = state
        f0, g_mu, g_rho, h_mm, h_mr, h_rr = _nll_derivatives(xp, log_mass, stats, mu, rho,
                                                             lo2, hi2)
        floor = 1e-12 * (1.0 + stats[0])
        i_mm, i_mr, i_rr = _floored_inverse(n_, h_mm, h_mr, h_rr, floor)
        d_mu = -(i_mm * g_mu + i_mr * g_rho)
        d_rho = -(i_mr * g_mu + i_rr * g_rho)
        # a coordinate on its bound whose gradient pushes outwards is held (projected Newton;
        # the other one takes its 1-D Newton step)
        fix_mu = ((mu <= box[0]) & (g_mu > 0)) | ((mu >= box[1]) & (g_mu < 0))
        fix_rho = ((rho <= box[2]) & (g_rho > 0)) | ((rho >= box[3]) & (g_rho < 0))
        one_mu = -g_mu / n_.maximum(n_.abs(h_mm), floor)
        one_rho = -g_rho / n_.maximum(n_.abs(h_rr), floor)
        d_mu, d_rho = (n_.where(fix_mu, 0.0, n_.where(fix_rho, one_mu, d_mu)),
                       n_.where(fix_rho, 0.0, n_.where(fix_mu, one_rho, d_rho)))
        d_mu = n_.where(n_.isfinite(d_mu), d_mu, 0.0)
        d_rho = n_.where(n_.isfinite(d_rho), d_rho, 0.0)
        # where the Hessian is nearly singular the step is huge: cap it at one range width in
        # mu and a factor e in sigma, so the halvings below reach a useful length
        big = n_.maximum(n_.abs(d_mu) / (hi2 - lo2), n_.abs(d_rho))
        scale = n_.where(big > 1.0, 1.0 / n_.where(big > 1.0, big, 1.0), 1.0)
        d_mu, d_rho = d_mu * scale, d_rho * scale
        m_t = n_.clip(mu[..., None] + halvings * d_mu[..., None], box3[0], box3[1])
        r_t = n_.clip(rho[..., None] + halvings * d_rho[..., None], box3[2], box3[3])
        f_t = _nll(xp, log_mass, stats3, m_t, r_t, lo3, hi3)
        f_t = n_.where(n_.isfinite(f_t), f_t, n_.inf)
        best = n_.argmin(f_t, axis=-1)
        pick = lambda v: n_.take_along_axis(v, best[..., None], axis=-1)[..., 0]  # noqa: E731
        better = pick(f_t) < f0
        return n_.where(better, pick(m_t), mu), n_.where(better, pick(r_t), rho)

    # a loop, not unrolled: under jit its body (two log normalisers) compiles once
    return xp.fori(steps, newton, (mu, rho))


def _two_means(xp: Xp, x, mask, count, low, high, s_floor):
    """Start: (w, mu [B, 2], sigma [B, 2]) from the optimal 2-means split of the sorted scores."""
    n_ = xp.np
    dtype = x.dtype
    size = x.shape[-1]
    width = high - low
    m = mask.astype(dtype)
    c = n_.maximum(count, 1.0)
    center = n_.sum(m * x, axis=-1) / c
    xs = n_.sort(n_.where(mask, x, (high + width)[:, None]), axis=-1)
    valid = n_.arange(size)[None, :] < count[:, None]
    y = n_.where(valid, xs - center[:, None], 0.0)
    t1, t2 = n_.sum(y, axis=-1), n_.sum(y * y, axis=-1)
    total_var = n_.maximum(t2 / c - (t1 / c) ** 2, 0.0)
    spread = n_.max(n_.where(valid, xs, low[:, None]), axis=-1) - xs[:, 0]
    split = (count >= 2) & (spread > 0)
    if size >= 2:
        s1 = n_.cumsum(y, axis=-1)[:, :-1]
        s2 = n_.cumsum(y * y, axis=-1)[:, :-1]
        k = n_.arange(1, size, dtype=dtype)[None, :]
        kr = count[:, None] - k
        left = n_.maximum(s2 - s1 * s1 / k, 0.0)
        krs = n_.maximum(kr, 1.0)
        right = n_.maximum((t2[:, None] - s2) - (t1[:, None] - s1) ** 2 / krs, 0.0)
        cost = n_.where(kr >= 1, left + right, n_.inf)
        best = n_.argmin(cost, axis=-1)
        pick = lambda v: n_.take_along_axis(v, best[:, None], axis=-1)[:, 0]  # noqa: E731
        kb, sb = pick(n_.broadcast_to(k, cost.shape)), pick(s1)
        krb = n_.maximum(count - kb, 1.0)
        mean1, mean2 = sb / kb + center, (t1 - sb) / krb + center
        var1, var2 = pick(left) / kb, pick(right) / krb
        within = n_.where(split, pick(cost), 0.0) / c
        w = (count - kb) / c
    else:
        mean1 = mean2 = center
        var1 = var2 = within = n_.zeros_like(center)
        w = n_.full_like(center, 0.5)
    # one score or all equal: both components at the mean, smallest sigma, w = 1/2
    mean1, mean2 = n_.where(split, mean1, center), n_.where(split, mean2, center)
    var1 = n_.where(split, n_.maximum(var1, within), total_var)
    var2 = n_.where(split, n_.maximum(var2, within), total_var)
    w = n_.where(split, w, 0.5)
    # no score: a neutral start (used only with a prior, which replaces it, or when INVALID)
    empty = count < 1
    mean1 = n_.where(empty, low + 0.25 * width, mean1)
    mean2 = n_.where(empty, low + 0.75 * width, mean2)
    var1 = n_.where(empty, (0.25 * width) ** 2, var1)
    var2 = n_.where(empty, (0.25 * width) ** 2, var2)
    sigma = n_.sqrt(n_.maximum(n_.stack([var1, var2], -1), (s_floor ** 2)[:, None]))
    return w, n_.stack([mean1, mean2], -1), sigma


def mixture_loglik(xp: Xp, scores, mask, low, high, weight, mu1, sigma1, mu2, sigma2):
    """Log-likelihood [B] of the masked scores [B, n] under the mixture ([B] parameters)."""
    n_ = xp.np
    x = n_.where(mask, scores, (0.5 * (low + high))[:, None])
    return _e_step(xp, _log_mass_fn(xp), weight, n_.stack([mu1, mu2], -1),
                   n_.stack([sigma1, sigma2], -1), low, high, x, mask.astype(scores.dtype))[1]


def mixture_fit_arrays(xp: Xp, scores: Any, mask: Any, low: Any, high: Any, prior: Any = None,
                       prior_strength: Any = 0.0, w_min: float = W_MIN, max_iter: int = 200,
                       *, sigma_min: float = SIGMA_MIN, newton_steps: int = _NEWTON_STEPS,
                       return_swap: bool = False) -> tuple[Any, ...]:
    """Batched EM fit of the two-component mixture in the namespace ``xp``.

    Args:
        scores: [B, n] scores already clipped into [low, high] (masked entries are ignored and
            may hold anything finite or not).
        mask: [B, n] booleans, True where a score was observed (ragged counts).
        low, high: [B] score ranges.
        prior: None (MLE), or (w0, mu1_0, sigma1_0, mu2_0, sigma2_0), each [B] or scalar.
        prior_strength: kappa, the prior's pseudo-sample count ([B] or scalar).
        w_min: the weight is kept in [w_min, 1 - w_min].
        max_iter: EM iterations (a fixed count: the loop is ``xp.fori``).
        sigma_min: sigma floor relative to high - low.
        newton_steps: Newton steps per M-step.
        return_swap: also return, last, where the components were swapped to put mu1 <= mu2
            (the prior's component 1 is then the fit's component 2).

    Returns:
        (weight, mu1, sigma1, mu2, sigma2, status, n_iter), [B] arrays; mu1 <= mu2; status a
        :class:`~optscale.FitStatus` code (INVALID where there is no score and no prior, or the
        prior is invalid; the parameters are then a finite neutral start).
    """
    n_ = xp.np
    dtype = scores.dtype
    batch = scores.shape[0]
    low = n_.broadcast_to(n_.asarray(low, dtype), (batch,))
    high = n_.broadcast_to(n_.asarray(high, dtype), (batch,))
    mask = n_.asarray(mask, bool)
    width = high - low
    width_s = n_.where(width > 0, width, 1.0)
    m = mask.astype(dtype)
    count = n_.sum(m, axis=-1)
    x = n_.where(mask, n_.clip(scores, low[:, None], high[:, None]),
                 (0.5 * (low + high))[:, None])
    s_lo, s_hi = sigma_min * width_s, SIGMA_MAX * width_s
    mu_lo, mu_hi = low - width_s, high + width_s
    rho_lo, rho_hi = n_.log(s_lo), n_.log(s_hi)
    box2 = tuple(v[:, None] for v in (mu_lo, mu_hi, rho_lo, rho_hi))
    w_lo, w_hi = w_min, 1.0 - w_min
    log_mass = _log_mass_fn(xp)

    w, mu, sigma = _two_means(xp, x, mask, count, low, high, s_lo)
    bad = ~(width > 0) | ~n_.isfinite(width)
    if prior is not None:
        pw, pm1, ps1, pm2, ps2 = (n_.broadcast_to(n_.asarray(v, dtype), (batch,)) for v in prior)
        kappa = n_.broadcast_to(n_.asarray(prior_strength, dtype), (batch,))
        bad = bad | ~(n_.isfinite(pw) & (pw >= 0) & (pw <= 1) & n_.isfinite(pm1)
                      & n_.isfinite(pm2) & n_.isfinite(ps1) & n_.isfinite(ps2) & (ps1 > 0)
                      & (ps2 > 0) & n_.isfinite(kappa) & (kappa >= 0))
        bad = bad | ((count < 1) & ~(kappa > 0))
        pw_c = n_.clip(pw, w_lo, w_hi)
        k0 = n_.where(bad, 0.0, kappa)
        k0 = n_.stack([k0 * (1.0 - pw_c), k0 * pw_c], -1)
        p_mu = n_.stack([pm1, pm2], -1)
        p_var = n_.stack([ps1, ps2], -1) ** 2
        p_mu, p_var = n_.where(bad[:, None], 0.0, p_mu), n_.where(bad[:, None], 1.0, p_var)
        kappa_w, pw_c = n_.where(bad, 0.0, kappa), n_.where(bad, 0.5, pw_c)
        # no score: start at (and stay on) the prior
        empty = (count < 1) & ~bad
        w = n_.where(empty, pw_c, w)
        mu = n_.where(empty[:, None], p_mu, mu)
        sigma = n_.where(empty[:, None], n_.sqrt(p_var), sigma)
    else:
        bad = bad | (count < 1)
        k0 = n_.zeros((batch, 2), dtype)
        p_mu, p_var = n_.zeros((batch, 2), dtype), n_.ones((batch, 2), dtype)
        kappa_w, pw_c = n_.zeros((batch,), dtype), n_.full((batch,), 0.5, dtype)
    w = n_.clip(w, w_lo, w_hi).astype(dtype)
    mu = n_.clip(mu, box2[0], box2[1]).astype(dtype)
    rho = n_.clip(n_.log(sigma), box2[2], box2[3]).astype(dtype)
    tol = 1e-10 if np.finfo(dtype).bits > 32 else 1e-5
    tiny = np.finfo(dtype).tiny

    def body(_, state):
        w, mu, rho, done, iters = state
        r, _ = _e_step(xp, log_mass, w, mu, n_.exp(rho), low, high, x, m)
        resp = n_.sum(r, axis=-1)  # [B, 2]
        mean = n_.sum(r * x[:, None, :], axis=-1) / n_.maximum(resp, tiny)
        ss = n_.sum(r * (x[:, None, :] - mean[..., None]) ** 2, axis=-1)
        total = resp + k0
        total_s = n_.maximum(total, tiny)
        c_mean = n_.where(total > 0, (resp * mean + k0 * p_mu) / total_s, mean)
        c_ss = ss + k0 * p_var + resp * k0 / total_s * (mean - p_mu) ** 2
        w_new = (resp[:, 1] + kappa_w * pw_c) / n_.maximum(count + kappa_w, tiny)
        w_new = n_.clip(n_.where(count + kappa_w > 0, w_new, w), w_lo, w_hi)
        mu_new, rho_new = _newton_m_step(xp, log_mass, (total, c_mean, c_ss, resp), mu, rho,
                                         low, high, box2, newton_steps)
        finite = n_.isfinite(w_new) & n_.all(n_.isfinite(mu_new) & n_.isfinite(rho_new), -1)
        keep = done | ~finite
        w_new = n_.where(keep, w, w_new)
        mu_new = n_.where(keep[:, None], mu, mu_new)
        rho_new = n_.where(keep[:, None], rho, rho_new)
        move = n_.maximum(n_.abs(w_new - w), n_.max(
            n_.maximum(n_.abs(mu_new - mu) / width_s[:, None], n_.abs(rho_new - rho)), -1))
        iters = iters + (~done).astype(iters.dtype)
        return w_new, mu_new, rho_new, done | (move <= tol), iters

    done0 = bad | ((count < 1) & (prior is not None))
    iters0 = n_.zeros_like(count, dtype=n_.int32)  # (_like: varies over a shard_map mesh)
    if xp.is_jax:
        from jax import lax

        # still a fixed-count loop (jit, and vmap where cond becomes select), but once every
        # question has converged the remaining iterations cost nothing
        def step(i, state):
            return lax.cond(n_.all(state[3]), lambda s: s, lambda s: body(i, s), state)
    else:
        def step(i, state):
            return state if np.all(state[3]) else body(i, state)
    w, mu, rho, done, iters = xp.fori(max_iter, step, (w, mu, rho, done0, iters0))
    sigma = n_.exp(rho)

    eps = 1e-6
    on_box = (w <= w_lo + eps) | (w >= w_hi - eps) | n_.any(
        (mu <= box2[0] + eps * width_s[:, None]) | (mu >= box2[1] - eps * width_s[:, None])
        | (rho <= box2[2] + eps) | (rho >= box2[3] - eps), -1)
    status = n_.where(bad, FitStatus.INVALID, n_.where(
        ~done, FitStatus.MAXITER, n_.where(on_box, FitStatus.BOUNDARY, FitStatus.OK)))
    swap = mu[:, 0] > mu[:, 1]
    w = n_.where(swap, 1.0 - w, w)
    mu1, mu2 = n_.where(swap, mu[:, 1], mu[:, 0]), n_.where(swap, mu[:, 0], mu[:, 1])
    s1, s2 = n_.where(swap, sigma[:, 1], sigma[:, 0]), n_.where(swap, sigma[:, 0], sigma[:, 1])
    if return_swap:
        return w, mu1, s1, mu2, s2, status.astype(n_.int32), iters, swap
    return w, mu1, s1, mu2, s2, status.astype(n_.int32), iters


def mixture_objective(theta: Any, x: Any, m: Any, low: Any, high: Any, prior: Any,
                      prior_strength: Any, w_min: float) -> Any:
    """The negative log posterior (up to a constant) of one question (JAX, for implicit
    differentiation): theta = (w, mu1, log sigma1, mu2, log sigma2) in the fit's own order,
    scores x [n] (already in range) with mask m [n]. It is what EM climbs: the MAP prior is the
    weight's pseudo-counts and each component's pseudo-observations of its parent normal."""
    import jax.numpy as jnp

    from optscale._special import log_gauss_mass

    w, mu1, rho1, mu2, rho2 = (theta[i] for i in range(5))
    width = high - low

    def comp_logpdf(mu, rho):
        sigma = jnp.exp(rho)
        log_z = log_gauss_mass((low - mu) / sigma, (high - mu) / sigma, width / sigma)
        z = (x - mu) / sigma
        return -0.5 * z * z - rho - _HALF_LOG_2PI - log_z

    joint = jnp.logaddexp(jnp.log1p(-w) + comp_logpdf(mu1, rho1), jnp.log(w)
                          + comp_logpdf(mu2, rho2))
    f = -jnp.sum(jnp.where(m, joint, 0.0))
    if prior is not None:
        pw, pm1, ps1, pm2, ps2 = prior
        kappa = jnp.where(prior_strength > 0, prior_strength, 0.0)
        pw_c = jnp.clip(pw, w_min, 1.0 - w_min)
        f = f - kappa * (pw_c * jnp.log(w) + (1.0 - pw_c) * jnp.log1p(-w))
        for k0, mu, rho, pm, ps in ((kappa * (1.0 - pw_c), mu1, rho1, pm1, ps1),
                                    (kappa * pw_c, mu2, rho2, pm2, ps2)):
            f = f + k0 * (((mu - pm) ** 2 + ps * ps) * 0.5 * jnp.exp(-2.0 * rho) + rho)
    return f
