"""Fitting any score family to batches of scores, choosing a family per question, and a
goodness-of-fit statistic.

:func:`fit_family` returns a :class:`FamilyFit` whatever the family: the fitted distribution
(batch [B]), its log-likelihood, parameter count and status, so that families compare on one
scale. Log-likelihoods are evaluated at the scores clipped to [low + eps w, high - eps w]
(w = high - low) for every family, because a Beta density with a < 1 is infinite at a bound.

Model choice (:func:`choose_family`) is by an information criterion on the observed scores
(BIC by default: -2 loglik + p log n; AIC: -2 loglik + 2 p): cheap, needs no held-out split
(which a 4-sample peek cannot afford), and penalises the mixture's five parameters where there is
too little data to support them. The goodness-of-fit statistic (:func:`goodness_of_fit`) is the
Kolmogorov-Smirnov distance between the fitted CDF and the observed scores, with its p-value for
a fully specified distribution; parameters fitted to the same scores make that p-value
conservative (too large: the Lilliefors effect), so a small one is a reliable sign of misfit.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import numpy as np

from optscale import _api
from optscale._beta import Beta, beta_fit_arrays
from optscale._distribution import TruncatedNormal
from optscale._family import namespace
from optscale._fit import FitStatus
from optscale._mixture import TruncNormMixture, mixture_fit_arrays

__all__ = ["FAMILIES", "FamilyChoice", "FamilyFit", "GoodnessOfFit", "choose_family",
           "fit_family", "goodness_of_fit"]

FAMILIES = ("truncnorm", "beta", "mixture")
_N_PARAMS = {"truncnorm": 2, "beta": 2, "mixture": 5}
_CRITERIA = ("bic", "aic")
_FITS = {"beta": beta_fit_arrays, "mixture": mixture_fit_arrays}
_DISTS = {"beta": Beta, "mixture": TruncNormMixture}


@functools.cache
def _jitted_fit(family: str, option: float, max_iter: int) -> Any:
    """One compiled fit per (family, option, iteration cap), reused for every call of a shape."""
    import jax

    from optscale._family import _jax_xp

    return jax.jit(lambda *args: _FITS[family](_jax_xp(), *args, option, max_iter))


class FamilyFit(NamedTuple):
    """A fitted score family for B questions.

    Attributes:
        family: "truncnorm", "beta" or "mixture".
        dist: the fitted distribution (:class:`~optscale.TruncatedNormal`,
            :class:`~optscale.Beta` or :class:`~optscale.TruncNormMixture`), batch [B].
        loglik: log-likelihood of each question's observed scores under ``dist``, [B].
        n_obs: observed scores per question, [B].
        status: :class:`~optscale.FitStatus` per question.
        n_iter: iterations used.
    """

    family: str
    dist: Any
    loglik: Any
    n_obs: Any
    status: Any
    n_iter: Any

    @property
    def n_params(self) -> int:
        return _N_PARAMS[self.family]

    def information(self, criterion: str = "bic") -> Any:
        """BIC (-2 loglik + p log n) or AIC (-2 loglik + 2 p) per question; lower is better."""
        if criterion not in _CRITERIA:
            raise ValueError(f"criterion must be one of {_CRITERIA}; got {criterion!r}")
        n = np.maximum(np.asarray(self.n_obs, np.float64), 1.0)
        penalty = np.log(n) if criterion == "bic" else 2.0
        return -2.0 * np.asarray(self.loglik, np.float64) + self.n_params * penalty


def _loglik(dist: Any, scores: Any, mask: Any, low: Any, high: Any, eps: float) -> Any:
    xp = namespace(scores).np
    w = (high - low)[:, None]
    x = xp.clip(scores, low[:, None] + eps * w, high[:, None] - eps * w)
    expand = type(dist)(*(xp.asarray(p)[..., None] for p in dist.params()))
    return xp.sum(xp.where(mask, expand.logpdf(x), 0.0), axis=-1)


def fit_family(family: str, scores: Any, mask: Any = None, *, prior: Any = None,
               prior_std: tuple[float, float] = (0.1, 0.1), prior_strength: float = 4.0,
               low: Any = 0.0, high: Any = 1.0, out_of_range: str = "raise", eps: float = 1e-4,
               max_iter: int | None = None) -> FamilyFit:
    """Fit one score family to each question's scores: MLE, or MAP with a prior.

    Args:
        family: "truncnorm" (Newton, :func:`optscale.fit_truncnorm`), "beta" (Newton on the
            convex Beta likelihood) or "mixture" (two truncated normals by EM).
        scores: [B, n] (or [n]) scores; mask: [B, n] booleans of observed scores.
        prior: None (MLE) or the family's parameters per question: (mu0, sigma0) for
            "truncnorm" (Gaussian priors of std ``prior_std``), (a0, b0) for "beta" and
            (weight0, mu1, sigma1, mu2, sigma2) for "mixture" (conjugate-style priors worth
            ``prior_strength`` pseudo-scores: with no scores the fit is the prior).
        low, high: the score range. out_of_range: "raise" or "clip" (as in fit_truncnorm).
        eps: scores are clipped to [low + eps w, high - eps w] for the Beta's logs and for
            every family's log-likelihood.
        max_iter: iteration cap (default 100 Newton steps for truncnorm, 50 for beta, 200 EM
            iterations for mixture).

    Returns:
        :class:`FamilyFit`.

    Example:
        >>> import numpy as np, optscale
        >>> fit = optscale.fit_family("beta", np.array([0.91, 0.95, 0.88, 0.99, 0.93]))
        >>> round(float(fit.dist.a), 1), round(float(fit.dist.b), 1)
        (26.7, 1.9)
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}; got {family!r}")
    if not (0 < eps < 0.5):
        raise ValueError(f"eps must lie in (0, 0.5); got {eps!r}")
    xp_mod, scores, mask, single = _api.check_scores("fit_family", scores, mask, low, high,
                                                     out_of_range)
    batch = scores.shape[:1]
    dtype = scores.dtype
    low_a = xp_mod.broadcast_to(xp_mod.asarray(low, dtype), batch)
    high_a = xp_mod.broadcast_to(xp_mod.asarray(high, dtype), batch)
    if family == "truncnorm":
        fit = _api.fit_truncnorm(scores, mask, prior=prior, prior_std=prior_std, low=low,
                                 high=high, out_of_range=out_of_range,
                                 **({} if max_iter is None else {"max_iter": max_iter}))
        dist = TruncatedNormal(fit.mu, fit.sigma, low_a, high_a)
        status, n_iter = fit.status, fit.n_iter
    else:
        nan = xp_mod.isnan(scores)
        bad_row = xp_mod.any(mask & nan, axis=-1)
        obs = mask & ~nan
        clipped = xp_mod.clip(xp_mod.where(obs, scores, low_a[:, None]), low_a[:, None],
                              high_a[:, None])
        xp = namespace(scores, mask)
        # JAX computes in its canonical dtype, NumPy in float64
        work = xp.np.asarray if xp.is_jax else (lambda v: np.asarray(v, np.float64))
        dtype = work(scores).dtype if xp.is_jax else dtype
        if prior is not None:
            prior = tuple(xp.np.broadcast_to(work(v), batch) for v in prior)
        iters = (50 if family == "beta" else 200) if max_iter is None else max_iter
        option = eps if family == "beta" else 0.05  # the Beta's clip, the mixture's min weight
        args = (work(clipped), work(obs), work(low_a), work(high_a), prior, prior_strength)
        if xp.is_jax:
            out = _jitted_fit(family, float(option), int(iters))(*args)
        else:
            with np.errstate(all="ignore"):
                out = _FITS[family](xp, *args, option, iters)
        *params, status, n_iter = out
        dist = _DISTS[family](*(xp.np.asarray(p, dtype) for p in params), low_a, high_a)
        status = xp.np.where(bad_row, FitStatus.INVALID, status)
    obs = mask & ~xp_mod.isnan(scores)
    inside = xp_mod.clip(xp_mod.where(obs, scores, low_a[:, None]), low_a[:, None],
                         high_a[:, None])
    loglik = _loglik(dist, inside, obs, low_a, high_a, eps)
    out = FamilyFit(family, dist, loglik, obs.sum(-1), status, n_iter)
    if single:
        out = FamilyFit(family, type(dist)(*(p[0] for p in dist.params())),
                        *(v[0] for v in out[2:]))
    return out


class FamilyChoice(NamedTuple):
    """Result of :func:`choose_family`: ``index[b]`` indexes ``families`` (the chosen family of
    question b), ``information[f, b]`` the criterion values, ``fits`` the fits by family."""

    families: tuple[str, ...]
    index: Any
    information: Any
    fits: dict

    @property
    def chosen(self) -> list[str]:
        return [self.families[i] for i in np.atleast_1d(self.index)]


def choose_family(scores: Any, mask: Any = None, *, families: tuple[str, ...] = FAMILIES,
                  criterion: str = "bic", **fit_options: Any) -> FamilyChoice:
    """Fit each family and choose per question by an information criterion (lowest wins; ties
    go to the earlier family, so list the simpler ones first). ``fit_options`` go to
    :func:`fit_family` (without ``prior``: the criterion compares likelihoods)."""
    if criterion not in _CRITERIA:
        raise ValueError(f"criterion must be one of {_CRITERIA}; got {criterion!r}")
    if not families or any(f not in FAMILIES for f in families):
        raise ValueError(f"families must be a non-empty subset of {FAMILIES}; got {families!r}")
    fits = {f: fit_family(f, scores, mask, **fit_options) for f in families}
    info = np.stack([np.asarray(fits[f].information(criterion)) for f in families])
    ok = np.stack([np.asarray(fits[f].status) != FitStatus.INVALID for f in families])
    info = np.where(ok & np.isfinite(info), info, np.inf)
    return FamilyChoice(tuple(families), np.argmin(info, axis=0), info, fits)


class GoodnessOfFit(NamedTuple):
    """Kolmogorov-Smirnov distance of the observed scores from the fitted CDF, its p-value for
    a fully specified distribution (conservative for fitted parameters), and the count."""

    ks: Any
    pvalue: Any
    n_obs: Any


def goodness_of_fit(dist: Any, scores: Any, mask: Any = None) -> GoodnessOfFit:
    """KS goodness of fit of a batch [B] distribution to each question's observed scores.

    Example:
        >>> import numpy as np, optscale
        >>> d = optscale.TruncatedNormal(np.array([0.5]), np.array([0.1]))
        >>> gof = optscale.goodness_of_fit(d, np.array([[0.45, 0.5, 0.62, 0.38]]))
        >>> round(float(gof.ks[0]), 3)
        0.25
    """
    from scipy.stats import kstwo

    scores = np.atleast_2d(np.asarray(scores, np.float64))
    mask = np.ones(scores.shape, bool) if mask is None else np.atleast_2d(np.asarray(mask, bool))
    mask = mask & ~np.isnan(scores)
    n = mask.sum(-1)
    low, high = (np.broadcast_to(np.asarray(v, np.float64), n.shape)[:, None]
                 for v in (dist.low, dist.high))
    x = np.where(mask, np.clip(scores, low, high), np.inf)
    x = np.sort(x, axis=-1)
    with np.errstate(invalid="ignore"):  # [n, B] against the batch [B]
        f = np.asarray(dist.cdf(np.where(np.isfinite(x), x, 0.5).T), np.float64).T
    i = np.arange(1, x.shape[-1] + 1)[None, :]
    nn = np.maximum(n, 1)[:, None]
    gap = np.maximum(i / nn - f, f - (i - 1) / nn)
    ks = np.max(np.where(i <= n[:, None], gap, 0.0), axis=-1, initial=0.0)
    ks = np.where(n > 0, ks, np.nan)
    pvalue = np.where(n > 0, kstwo.sf(ks, np.maximum(n, 1)), np.nan)
    return GoodnessOfFit(ks, pvalue, n)
