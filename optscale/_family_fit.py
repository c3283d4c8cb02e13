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
from functools import partial
from typing import Any, NamedTuple

import numpy as np

from optscale import _api, _lazy_jax
from optscale._backend import _is_jax_array
from optscale._beta import Beta, beta_fit_arrays
from optscale._distribution import TruncatedNormal
from optscale._family import namespace
from optscale._fit import FitStatus
from optscale._mixture import TruncNormMixture, mixture_fit_arrays
from optscale._typing import Array, ArrayLike

__all__ = ["FAMILIES", "FamilyChoice", "FamilyFit", "GoodnessOfFit", "choose_family",
           "fit_family", "goodness_of_fit"]

FAMILIES = ("truncnorm", "beta", "mixture")
_N_PARAMS = {"truncnorm": 2, "beta": 2, "mixture": 5}
_CRITERIA = ("bic", "aic")
_FITS = {"beta": beta_fit_arrays, "mixture": mixture_fit_arrays}
_DISTS = {"beta": Beta, "mixture": TruncNormMixture}


@functools.cache
def _jitted_fit(family: str, option: float, max_iter: int) -> Any:
    """One compiled fit per (family, option, iteration cap), reused for every call of a shape.
    The mixture's also says where its components were swapped (for the implicit derivative)."""
    import jax

    from optscale._family import _jax_xp

    extra = {"return_swap": True} if family == "mixture" else {}
    return jax.jit(lambda *args: _FITS[family](_jax_xp(), *args, option, max_iter, **extra))


@functools.cache
def _differentiable_fit() -> Any:
    """The family fit with the implicit derivative of its optimum as its derivative (computed
    only when something differentiates)."""
    import jax

    # one program per shape (not op by op under an eager grad)
    implicit = jax.jit(lambda out, args, family, option: _implicit_family(family, out, args,
                                                                          option),
                       static_argnames=("family", "option"))

    @partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2))
    def fit(family, option, max_iter, *args):
        return _jitted_fit(family, option, max_iter)(*args)

    @fit.defjvp
    def fit_jvp(family, option, max_iter, primals, tangents):
        out = fit(family, option, max_iter, *primals)
        mask = primals[1]
        count = 5 if family == "mixture" else 2

        def params(scores, low, high, prior, strength):
            return implicit(out, (scores, mask, low, high, prior, strength), family=family,
                            option=option)

        diff = (0, 2, 3, 4, 5)
        _, t_params = jax.jvp(params, tuple(primals[i] for i in diff),
                              tuple(tangents[i] for i in diff))
        zeros = tuple(np.zeros(np.shape(v), jax.dtypes.float0) for v in out[count:])
        return out, (*t_params, *zeros)

    return fit


def _implicit_family(family: str, out: tuple, args: tuple, option: float) -> tuple:
    """The fitted parameters of ``out`` (solved without derivatives) with the implicit
    derivative of the optimum in the scores, range and prior (:mod:`optscale._implicit`):
    the Beta's from its analytic gradient and trigamma Hessian, the mixture's from automatic
    derivatives of its negative log posterior (5 x 5 per question)."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    from optscale._beta import A_MAX, A_MIN, beta_gradient, beta_hessian, beta_stats
    from optscale._family import _jax_xp
    from optscale._implicit import implicit_optimum
    from optscale._mixture import SIGMA_MAX, SIGMA_MIN, mixture_objective

    xp = _jax_xp()
    sg = partial(jax.tree_util.tree_map, lax.stop_gradient)
    scores, mask, low, high, prior, strength = args
    status = out[-2] if family == "beta" else out[-3]
    keep = status != FitStatus.INVALID
    if family == "beta":
        a, b = out[0], out[1]
        count, s1, s2 = beta_stats(xp, scores, mask, low, high, prior, strength, option)
        h_aa, h_ab, h_bb = beta_hessian(xp, a, b, sg(count))
        h = jnp.stack([jnp.stack([h_aa, h_ab], -1), jnp.stack([h_ab, h_bb], -1)], -2)
        a, b = implicit_optimum(
            (a, b), lambda t: beta_gradient(xp, t[0], t[1], count, s1, s2), h,
            (A_MIN, A_MIN), (A_MAX, A_MAX), (A_MIN * 1e-6,) * 2, keep,
            tol_hi=(A_MAX * 1e-6,) * 2)
        return a, b
    w, mu1, s1, mu2, s2, _, _, swap = out
    batch = w.shape[0]
    # the fit's own component order (before putting mu1 <= mu2), where the prior applies
    pick = lambda p, q: jnp.where(swap, q, p)  # noqa: E731
    theta = (pick(w, 1.0 - w), pick(mu1, mu2), jnp.log(pick(s1, s2)), pick(mu2, mu1),
             jnp.log(pick(s2, s1)))
    width = jnp.where(high - low > 0, high - low, 1.0)
    kappa = jnp.broadcast_to(jnp.asarray(0.0 if prior is None else strength, w.dtype), (batch,))
    prior_b = None if prior is None else tuple(jnp.broadcast_to(v, (batch,)) for v in prior)

    def objective(t, x, m, lo, hi, pr, k):
        return mixture_objective(t, x, m, lo, hi, pr, k, option)

    def per_question(fn, t, data):
        return jax.vmap(fn)(jnp.stack(t, -1), *data)

    data = (scores, mask, low, high, prior_b, kappa)
    h = per_question(jax.hessian(objective), sg(theta), sg(data))

    def grad_fn(t):
        g = per_question(jax.grad(objective), t, data)
        return tuple(g[:, i] for i in range(5))

    lower = (option, low - width, jnp.log(SIGMA_MIN * width), low - width,
             jnp.log(SIGMA_MIN * width))
    upper = (1.0 - option, high + width, jnp.log(SIGMA_MAX * width), high + width,
             jnp.log(SIGMA_MAX * width))
    eps = 1e-6
    tol = (eps, eps * lax.stop_gradient(width), eps, eps * lax.stop_gradient(width), eps)
    t = implicit_optimum(theta, grad_fn, h, lower, upper, tol, keep)
    w_i, m0, r0, m1, r1 = t
    sig0 = jnp.exp(r0 - lax.stop_gradient(r0)) * jnp.exp(lax.stop_gradient(r0))
    sig1 = jnp.exp(r1 - lax.stop_gradient(r1)) * jnp.exp(lax.stop_gradient(r1))
    # back to mu1 <= mu2; the values are those of the solve
    w_o = jnp.where(swap, 1.0 - w_i, w_i)
    out_vals = (w, mu1, s1, mu2, s2)
    new = (w_o, pick(m0, m1), pick(sig0, sig1), pick(m1, m0), pick(sig1, sig0))
    return tuple(v + (n - lax.stop_gradient(n)) for v, n in zip(out_vals, new, strict=True))


def _traced(tree: Any) -> bool:
    import jax

    return any(isinstance(v, jax.core.Tracer) for v in jax.tree_util.tree_leaves(tree))


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
    loglik: Array
    n_obs: Array
    status: Array
    n_iter: Array

    @property
    def n_params(self) -> int:
        return _N_PARAMS[self.family]

    def information(self, criterion: str = "bic") -> Any:
        """BIC (-2 loglik + p log n) or AIC (-2 loglik + 2 p) per question; lower is better.
        NumPy float64 for NumPy fits; JAX (in the fit's dtype, traceable) for JAX ones."""
        if criterion not in _CRITERIA:
            raise ValueError(f"criterion must be one of {_CRITERIA}; got {criterion!r}")
        if _is_jax_array(self.loglik):
            import jax.numpy as xp

            loglik = xp.asarray(self.loglik)
            n = xp.maximum(xp.asarray(self.n_obs, loglik.dtype), 1.0)
        else:
            xp = np
            loglik = np.asarray(self.loglik, np.float64)
            n = np.maximum(np.asarray(self.n_obs, np.float64), 1.0)
        penalty = xp.log(n) if criterion == "bic" else 2.0
        return -2.0 * loglik + self.n_params * penalty


def _register_fits(jax: Any) -> None:
    """FamilyFit and FamilyChoice are pytrees whose names (the family, the families) are
    static, so that jit can return them."""
    jax.tree_util.register_pytree_node(
        FamilyFit, lambda f: (tuple(f[1:]), f.family),
        lambda family, children: FamilyFit(family, *children))
    jax.tree_util.register_pytree_node(
        FamilyChoice, lambda c: ((c.index, c.information, c.fits), c.families),
        lambda families, children: FamilyChoice(families, *children))


def _loglik(dist: Any, scores: Any, mask: Any, low: Any, high: Any, eps: float) -> Any:
    xp = namespace(scores).np
    w = (high - low)[:, None]
    x = xp.clip(scores, low[:, None] + eps * w, high[:, None] - eps * w)
    expand = type(dist)(*(xp.asarray(p)[..., None] for p in dist.params()))
    return xp.sum(xp.where(mask, expand.logpdf(x), 0.0), axis=-1)


def fit_family(family: str, scores: ArrayLike, mask: ArrayLike | None = None, *,
               prior: Any = None,
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

            if _traced(args):
                out = _differentiable_fit()(family, float(option), int(iters), *args)
            else:
                out = _jitted_fit(family, float(option), int(iters))(*args)
            params, (status, n_iter) = out[:5] if family == "mixture" else out[:2], \
                out[5:7] if family == "mixture" else out[2:4]
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
    index: Array
    information: Array
    fits: dict

    @property
    def chosen(self) -> list[str]:
        return [self.families[i] for i in np.atleast_1d(self.index)]


def choose_family(scores: ArrayLike, mask: ArrayLike | None = None, *,
                  families: tuple[str, ...] = FAMILIES,
                  criterion: str = "bic", **fit_options: Any) -> FamilyChoice:
    """Fit each family and choose per question by an information criterion (lowest wins; ties
    go to the earlier family, so list the simpler ones first). ``fit_options`` go to
    :func:`fit_family` (without ``prior``: the criterion compares likelihoods)."""
    if criterion not in _CRITERIA:
        raise ValueError(f"criterion must be one of {_CRITERIA}; got {criterion!r}")
    if not families or any(f not in FAMILIES for f in families):
        raise ValueError(f"families must be a non-empty subset of {FAMILIES}; got {families!r}")
    fits = {f: fit_family(f, scores, mask, **fit_options) for f in families}
    first = fits[families[0]].loglik
    if _is_jax_array(first):  # JAX fits: stays in JAX (traceable, jit can return it)
        import jax.numpy as xp
    else:
        xp = np
    info = xp.stack([xp.asarray(fits[f].information(criterion)) for f in families])
    ok = xp.stack([xp.asarray(fits[f].status) != FitStatus.INVALID for f in families])
    info = xp.where(ok & xp.isfinite(info), info, xp.inf)
    return FamilyChoice(tuple(families), xp.argmin(info, axis=0), info, fits)


class GoodnessOfFit(NamedTuple):
    """Kolmogorov-Smirnov distance of the observed scores from the fitted CDF, its p-value for
    a fully specified distribution (conservative for fitted parameters), and the count."""

    ks: Array
    pvalue: Array
    n_obs: Array


def goodness_of_fit(dist: Any, scores: ArrayLike, mask: ArrayLike | None = None
                    ) -> GoodnessOfFit:
    """KS goodness of fit of a batch [B] distribution to each question's observed scores.

    Example:
        >>> import numpy as np, optscale
        >>> d = optscale.TruncatedNormal(np.array([0.5]), np.array([0.1]))
        >>> gof = optscale.goodness_of_fit(d, np.array([[0.45, 0.5, 0.62, 0.38]]))
        >>> round(float(gof.ks[0]), 3)
        0.25
    """
    # (dist: anything with cdf, low and high; its parameters, when it says, choose JAX)
    leaves = dist.params() if hasattr(dist, "params") else (dist.low, dist.high)
    if any(_is_jax_array(v) for v in (scores, mask, *leaves)):
        return _goodness_of_fit_jax(dist, scores, mask)
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


def _kstwo_sf(ks: Any, n: Any) -> Any:
    """scipy's exact one-sample KS survival function, as a host callback (traceable; the
    p-value has no derivative)."""
    import jax
    import jax.numpy as jnp
    from scipy.stats import kstwo

    def host(d, m):
        with np.errstate(all="ignore"):
            return np.asarray(kstwo.sf(np.asarray(d, np.float64), np.maximum(np.asarray(m), 1)),
                              np.asarray(d).dtype)

    ks = jax.lax.stop_gradient(ks)
    out = jax.ShapeDtypeStruct(jnp.shape(ks), ks.dtype)
    return jax.pure_callback(host, out, ks, n, vmap_method="broadcast_all")


def _goodness_of_fit_jax(dist: Any, scores: Any, mask: Any) -> GoodnessOfFit:
    """:func:`goodness_of_fit` in JAX: traceable (jit, vmap), the KS distance differentiable
    in the parameters and the scores, the p-value from scipy through a host callback."""
    import jax.numpy as jnp

    scores = jnp.atleast_2d(jnp.asarray(scores))
    if not jnp.issubdtype(scores.dtype, jnp.floating):
        scores = scores.astype(float)
    mask = jnp.ones(scores.shape, bool) if mask is None else jnp.atleast_2d(jnp.asarray(mask))
    mask = mask & ~jnp.isnan(scores)
    n = mask.sum(-1)
    low, high = (jnp.broadcast_to(jnp.asarray(v, scores.dtype), n.shape)[:, None]
                 for v in (dist.low, dist.high))
    # unobserved scores sort last (as +inf); their CDF is evaluated at a harmless 0.5
    x = jnp.sort(jnp.where(mask, jnp.clip(scores, low, high), jnp.inf), axis=-1)
    seen = jnp.isfinite(x)
    f = jnp.asarray(dist.cdf(jnp.where(seen, x, 0.5).T)).T
    i = jnp.arange(1, x.shape[-1] + 1, dtype=scores.dtype)[None, :]
    nn = jnp.maximum(n, 1).astype(scores.dtype)[:, None]
    gap = jnp.maximum(i / nn - f, f - (i - 1) / nn)
    ks = jnp.max(jnp.where(i <= n[:, None], gap, 0.0), axis=-1, initial=0.0)
    ks = jnp.where(n > 0, ks, jnp.nan)
    pvalue = jnp.where(n > 0, _kstwo_sf(jnp.where(n > 0, ks, 0.5), n), jnp.nan)
    return GoodnessOfFit(ks, pvalue, n)


_lazy_jax.when_imported(_register_fits)
