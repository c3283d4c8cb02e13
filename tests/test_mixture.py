"""The two-component truncated-normal mixture: the distribution against scipy and a numeric
integral, and the batched EM fit (recovery, NumPy/JAX agreement, degenerate inputs, monotone
log-likelihood, MAP, jit, real OVM verifier scores)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.integrate
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

import optscale
from optscale._family import _jax_xp, _numpy_xp
from optscale._fit import FitStatus
from optscale._mixture import (
    TruncNormMixture,
    mixture_fit_arrays,
    mixture_loglik,
)
from tests._data import shared_file

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

W_MIN = 0.05

# (weight, mu1, sigma1, mu2, sigma2, low, high)
CASES = [
    (0.3, 0.2, 0.1, 0.8, 0.05, 0.0, 1.0),
    (0.5, 0.0, 0.3, 1.0, 0.3, 0.0, 1.0),
    (0.05, -0.5, 0.2, 0.97, 0.02, 0.0, 1.0),  # lower component piled at 0, spike near 1
    (0.9, 0.5, 0.01, 0.5, 2.0, 0.0, 1.0),  # narrow spike on a nearly flat component
    (0.0, 0.4, 0.1, 0.9, 0.1, 0.0, 1.0),  # weight 0: just component 1
    (1.0, 0.4, 0.1, 0.9, 0.1, 0.0, 1.0),  # weight 1: just component 2
    (0.4, -1.0, 0.5, 1.5, 0.7, -1.0, 2.0),
]


def _scipy_cdf(case, x):
    w, m1, s1, m2, s2, lo, hi = case
    c1 = scipy.stats.truncnorm.cdf(x, (lo - m1) / s1, (hi - m1) / s1, loc=m1, scale=s1)
    c2 = scipy.stats.truncnorm.cdf(x, (lo - m2) / s2, (hi - m2) / s2, loc=m2, scale=s2)
    return (1 - w) * c1 + w * c2


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


NAMESPACES = ["numpy", "jax64", "jax32"]
GRID = np.linspace(-0.05, 1.05, 111)


@pytest.fixture(params=NAMESPACES)
def ns(request):
    """(name, to_array, rtol): NumPy via the numpy backend, or JAX arrays of a dtype."""
    name = request.param
    if name == "numpy":
        previous = optscale.backend()
        optscale.set_backend("numpy")
        yield name, (lambda v: np.asarray(v, np.float64)), 1e-10
        optscale.set_backend(previous)
    elif name == "jax64":
        with jax.enable_x64(True):
            yield name, (lambda v: jnp.asarray(v, jnp.float64)), 1e-9
    else:
        yield name, (lambda v: jnp.asarray(v, jnp.float32)), 2e-4


def _dist(case, to):
    return TruncNormMixture(*(to(v) for v in case))


# ----------------------------------------------------------------------------- distribution

@pytest.mark.parametrize("case", CASES)
def test_cdf_matches_scipy_truncnorm_mixture(ns, case):
    name, to, rtol = ns
    lo, hi = case[5], case[6]
    # the grid of the hypothesis test below (one JAX compilation for both), beyond both ends
    x = lo + (hi - lo) * GRID
    inside = (x > lo) & (x < hi)
    d = _dist(case, to)
    got = np.asarray(d.cdf(to(x)), np.float64)
    ref = _scipy_cdf(case, x[inside])
    atol = 1e-6 if name == "jax32" else 1e-13
    np.testing.assert_allclose(got[inside], ref, rtol=rtol, atol=atol)
    sf = np.asarray(d.sf(to(x)), np.float64)
    np.testing.assert_allclose(sf[inside], 1 - ref, rtol=rtol, atol=atol)
    # outside the support
    assert np.all(got[x <= lo] == 0.0) and np.all(got[x >= hi] == 1.0)


@pytest.mark.parametrize("case", CASES)
def test_cdf_is_the_integral_of_the_density(numpy_backend, case):
    d = _dist(case, np.asarray)
    lo, hi = case[5], case[6]
    breaks = [v for v in (case[1], case[3]) if lo < v < hi]
    for x in np.linspace(lo, hi, 7)[1:]:
        pts = [b for b in breaks if b < x] or None
        integral, _ = scipy.integrate.quad(lambda t: math.exp(float(d.logpdf(t))), lo, x,
                                           points=pts, limit=200, epsabs=1e-13, epsrel=1e-11)
        assert float(d.cdf(x)) == pytest.approx(integral, rel=1e-8, abs=1e-11)


params = st.tuples(
    st.floats(0.0, 1.0), st.floats(-0.5, 1.5), st.floats(0.01, 2.0),
    st.floats(-0.5, 1.5), st.floats(0.01, 2.0))


@settings(max_examples=25)
@given(params)
def test_cdf_monotone_in_range_and_complementary(p):
    for name, to in (("numpy", np.asarray), ("jax32", lambda v: jnp.asarray(v, jnp.float32))):
        d = TruncNormMixture(*(to(v) for v in p))
        x = to(GRID)
        if name == "numpy":
            previous = optscale.backend()
            optscale.set_backend("numpy")
        try:
            lc, ls = (np.asarray(v, np.float64) for v in d.log_cdf_sf(x))
        finally:
            if name == "numpy":
                optscale.set_backend(previous)
        c = np.exp(lc)
        assert np.all((c >= 0) & (c <= 1))
        assert np.all(np.diff(c) >= -(1e-12 if name == "numpy" else 1e-6))
        tol = 1e-12 if name == "numpy" else 1e-6
        np.testing.assert_allclose(np.exp(lc) + np.exp(ls), 1.0, atol=tol)


def test_small_probabilities_keep_relative_accuracy(numpy_backend):
    # deep in the lower tail of both components: log F far below log(eps)
    case = (0.5, 0.6, 0.02, 0.9, 0.02, 0.0, 1.0)
    d = _dist(case, np.asarray)
    x = np.array([0.3, 0.4, 0.5])
    ref = np.log(_scipy_cdf(case, x))
    np.testing.assert_allclose(d.logcdf(x), ref, rtol=1e-9)
    assert d.logcdf(x)[0] < -100  # F ~ 1e-51: a complement would have lost it
    # and the upper tail
    x = np.array([0.99, 0.999])
    w, m, s = 0.5, 0.9, 0.02
    ref_sf = w * scipy.stats.truncnorm.sf(x, (0 - m) / s, (1 - m) / s, loc=m, scale=s)
    np.testing.assert_allclose(d.sf(x), ref_sf, rtol=1e-9)


# float32 is covered by the cdf table; its bisection would cost one more 7 s compilation
@pytest.mark.parametrize("ns", ["numpy", "jax64"], indirect=True)
@pytest.mark.parametrize("case", CASES[:4])
def test_icdf_inverts_cdf(ns, case):
    name, to, _ = ns
    q = np.array([1e-6, 0.01, 0.1, 0.37, 0.5, 0.9, 0.999])
    d = _dist(case, to)
    x = d.icdf(to(q))
    back = np.asarray(d.cdf(x), np.float64)
    np.testing.assert_allclose(back, q, rtol=1e-8 if name != "jax32" else 1e-3,
                               atol=0 if name != "jax32" else 1e-5)


def test_invalid_parameters_give_nan(numpy_backend):
    for bad in ((1.2, 0.2, 0.1, 0.8, 0.1), (0.3, 0.2, 0.0, 0.8, 0.1), (0.3, np.nan, 0.1, 0.8, 0.1),
                (0.3, 0.2, 0.1, 0.8, 0.1, 1.0, 0.0)):
        assert np.isnan(TruncNormMixture(*bad).cdf(0.5))


# ----------------------------------------------------------------------------- the fit

TRUE = (0.3, 0.2, 0.1, 0.8, 0.05)


def _mixture_sample(p, size, seed):
    w, m1, s1, m2, s2 = p
    rng = np.random.default_rng(seed)
    up = rng.random(size) < w
    a = scipy.stats.truncnorm.rvs((0 - m1) / s1, (1 - m1) / s1, loc=m1, scale=s1, size=size,
                                  random_state=rng)
    b = scipy.stats.truncnorm.rvs((0 - m2) / s2, (1 - m2) / s2, loc=m2, scale=s2, size=size,
                                  random_state=rng)
    return np.where(up, b, a)


def _fit_np(scores, mask=None, **kw):
    scores = np.atleast_2d(np.asarray(scores, np.float64))
    mask = np.ones(scores.shape, bool) if mask is None else np.atleast_2d(mask)
    b = scores.shape[0]
    with np.errstate(all="ignore"):
        return mixture_fit_arrays(_numpy_xp(), scores, mask, np.zeros(b), np.ones(b), **kw)


_jit_fit = jax.jit(lambda s, m, lo, hi: mixture_fit_arrays(_jax_xp(), s, m, lo, hi))
_jit_fit_map = jax.jit(lambda s, m, lo, hi, p, k: mixture_fit_arrays(_jax_xp(), s, m, lo, hi,
                                                                     p, k))


def _fit_jax(scores, mask, dtype):
    b = scores.shape[0]
    return _jit_fit(jnp.asarray(scores, dtype), jnp.asarray(mask), jnp.zeros(b, dtype),
                    jnp.ones(b, dtype))


@pytest.fixture(scope="module")
def big_sample():
    return _mixture_sample(TRUE, 5000, seed=7)[None]


def test_fit_recovers_known_parameters(big_sample):
    w, m1, s1, m2, s2, status, _ = _fit_np(big_sample)
    n = big_sample.shape[1]
    se = (math.sqrt(TRUE[0] * (1 - TRUE[0]) / n), TRUE[2] / math.sqrt(n * (1 - TRUE[0])),
          TRUE[2] / math.sqrt(2 * n * (1 - TRUE[0])), TRUE[4] / math.sqrt(n * TRUE[0]),
          TRUE[4] / math.sqrt(2 * n * TRUE[0]))
    got = (w[0], m1[0], s1[0], m2[0], s2[0])
    for g, t, e in zip(got, TRUE, se, strict=True):
        assert abs(g - t) < 4 * e, (got, TRUE)
    assert status[0] == FitStatus.OK


def test_numpy_and_jax_fits_agree(big_sample):
    mask = np.ones(big_sample.shape, bool)
    ref = _fit_np(big_sample)
    with jax.enable_x64(True):
        got64 = _fit_jax(big_sample, mask, jnp.float64)
        for r, g in zip(ref[:5], got64[:5], strict=True):
            np.testing.assert_allclose(np.asarray(g), r, rtol=1e-6, atol=1e-7)
        assert int(got64[5][0]) == int(ref[5][0])
    got32 = _fit_jax(big_sample, mask, jnp.float32)
    assert got32[0].dtype == jnp.float32
    for r, g in zip(ref[:5], got32[:5], strict=True):
        assert np.all(np.isfinite(np.asarray(g)))
        np.testing.assert_allclose(np.asarray(g, np.float64), r, rtol=2e-3, atol=2e-3)


def _degenerate_batch():
    n = 16
    rows, masks = [], []

    def add(values):
        v = np.full(n, np.nan)  # masked-out entries hold NaN: they must not leak
        v[: len(values)] = values
        rows.append(v)
        masks.append(np.arange(n) < len(values))

    add([0.42])  # one score
    add([0.5] * 7)  # all equal
    add([0.0] * 5)  # all at the lower bound
    add([1.0] * 9)  # all at the upper bound
    add([0.2, 0.9] * 4)  # two distinct values
    add([0.3, 0.7])  # n = 2
    add([])  # no scores
    add(list(np.linspace(0.1, 0.9, 11)))  # ragged, spread out
    add([0.02, 0.01, 0.0, 0.95, 0.97, 0.99, 1.0, 0.96, 0.93, 0.0, 0.03, 0.98, 0.9, 0.99])
    return np.array(rows), np.array(masks)


def _check_degenerate(out):
    w, m1, s1, m2, s2, status, iters = (np.asarray(v) for v in out)
    for v in (w, m1, s1, m2, s2):
        assert np.all(np.isfinite(v))
    assert np.all((w >= W_MIN - 1e-6) & (w <= 1 - W_MIN + 1e-6))
    assert np.all(m1 <= m2) and np.all(s1 > 0) and np.all(s2 > 0)
    assert np.all((m1 >= -1 - 1e-6) & (m2 <= 2 + 1e-6))
    assert status[6] == FitStatus.INVALID
    others = np.delete(status, 6)
    assert np.all(others != FitStatus.INVALID)
    # evenly spread scores (row 7) leave the two components barely identifiable: EM creeps
    # along a flat ridge (about 2000 iterations) and may honestly report MAXITER
    assert np.all(np.delete(status, [6, 7]) != FitStatus.MAXITER)
    # no interior MLE for these: they end on a floor or box
    assert np.all(status[:6] == FitStatus.BOUNDARY)
    # the real bimodal row separates its modes
    assert m1[8] < 0.1 and m2[8] > 0.9
    # one score / all equal: both components at the score
    np.testing.assert_allclose([m1[0], m2[0]], 0.42, atol=1e-4)
    np.testing.assert_allclose([m1[1], m2[1]], 0.5, atol=1e-4)
    np.testing.assert_allclose([m1[4], m2[4]], [0.2, 0.9], atol=1e-3)
    assert abs(w[4] - 0.5) < 1e-3


def test_degenerate_inputs_numpy():
    scores, mask = _degenerate_batch()
    _check_degenerate(_fit_np(scores, mask))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_degenerate_inputs_jax_jit_ragged(dtype):
    scores, mask = _degenerate_batch()
    with jax.enable_x64(dtype == "float64"):
        out = _fit_jax(scores, mask, getattr(jnp, dtype))
        assert out[0].dtype == getattr(jnp, dtype)
        _check_degenerate(out)
        ref = _fit_np(scores, mask)
        keep = np.delete(np.arange(len(scores)), [6, 7])  # empty; not converged
        if dtype == "float64":
            for r, g in zip(ref[:5], out[:5], strict=True):
                np.testing.assert_allclose(np.asarray(g)[keep], r[keep], atol=1e-6)
            return
    # float32: a component piled at a bound has mu on a flat, ill-conditioned ridge (the
    # gradient there is a difference of two near-equal terms), so compare the fitted
    # distributions, not mu
    grid = np.linspace(0.0, 1.0, 101)[:, None]
    previous = optscale.backend()
    optscale.set_backend("numpy")
    try:
        cdf32 = TruncNormMixture(*(np.asarray(v, np.float64)[keep] for v in out[:5])).cdf(grid)
        cdf64 = TruncNormMixture(*(v[keep] for v in ref[:5])).cdf(grid)
    finally:
        optscale.set_backend(previous)
    np.testing.assert_allclose(cdf32, cdf64, atol=5e-3)


def _log_prior(out, prior, kappa):
    """The documented prior: kappa pseudo-samples (Beta-style counts on the weight; kappa_k
    pseudo-observations of component k's parent normal)."""
    w, m1, s1, m2, s2 = out[:5]
    pw, pm1, ps1, pm2, ps2 = prior
    pw = min(max(pw, W_MIN), 1 - W_MIN)
    k1, k2 = kappa * (1 - pw), kappa * pw
    comp = lambda k, m, s, m0, s0: -k * (((m - m0) ** 2 + s0 ** 2) / (2 * s * s)  # noqa: E731
                                         + np.log(s))
    # label switching: the fit returns mu1 <= mu2; the prior is stated for the prior's labels
    return (kappa * (pw * np.log(w) + (1 - pw) * np.log1p(-w))
            + comp(k1, m1, s1, pm1, ps1) + comp(k2, m2, s2, pm2, ps2))


@pytest.mark.parametrize("use_prior", [False, True])
def test_log_likelihood_never_decreases(use_prior):
    rng = np.random.default_rng(3)
    b, n = 60, 12
    up = rng.random((b, n)) < 0.4
    s = np.clip(np.where(up, rng.normal(0.85, 0.1, (b, n)), rng.normal(0.15, 0.1, (b, n))), 0, 1)
    mask = rng.random((b, n)) < 0.8
    mask[:, 0] = True
    lo, hi = np.zeros(b), np.ones(b)
    prior = (0.4, 0.15, 0.1, 0.85, 0.1) if use_prior else None
    kappa = 3.0
    prev = None
    for k in (0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128):
        kw = dict(prior=prior, prior_strength=kappa) if use_prior else {}
        out = _fit_np(s, mask, max_iter=k, **kw)
        obj = mixture_loglik(_numpy_xp(), s, mask, lo, hi, *out[:5])
        if use_prior:
            obj = obj + _log_prior(out, prior, kappa)
        assert np.all(np.isfinite(obj))
        if prev is not None:
            assert np.all(obj >= prev - 1e-9 * (1 + np.abs(prev))), k
        prev = obj


def test_map_without_scores_returns_the_prior():
    prior = (0.3, 0.1, 0.05, 0.9, 0.04)
    scores, mask = np.zeros((2, 4)), np.zeros((2, 4), bool)
    out = _fit_np(scores, mask, prior=prior, prior_strength=4.0)
    for got, want in zip(out[:5], prior, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    assert np.all(out[5] == FitStatus.OK)
    with jax.enable_x64(True):
        p = tuple(jnp.full(2, v) for v in prior)
        got = _jit_fit_map(jnp.asarray(scores), jnp.asarray(mask), jnp.zeros(2), jnp.ones(2), p,
                           jnp.asarray(4.0))
        for g, want in zip(got[:5], prior, strict=True):
            np.testing.assert_allclose(np.asarray(g), want, rtol=1e-12)
    # no prior, no scores: INVALID, finite
    out = _fit_np(scores, mask)
    assert np.all(out[5] == FitStatus.INVALID)
    assert all(np.all(np.isfinite(v)) for v in out[:5])


def test_map_interpolates_between_data_and_prior(big_sample):
    x = big_sample[:, :8]
    prior = (0.5, 0.1, 0.05, 0.9, 0.05)
    mle = _fit_np(x)
    weak = _fit_np(x, prior=prior, prior_strength=1e-6)
    strong = _fit_np(x, prior=prior, prior_strength=1e6)
    for a, b in zip(mle[:5], weak[:5], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-3)
    for got, want in zip(strong[:5], prior, strict=True):
        np.testing.assert_allclose(got, want, atol=2e-3)


def test_fit_family_mixture_clips_and_reshapes(numpy_backend):
    x = np.r_[np.full(6, -0.02), np.linspace(0.9, 1.04, 10)]
    fit = optscale.fit_family("mixture", x, out_of_range="clip")
    d, status = fit.dist, fit.status
    assert d.batch_shape == () and int(status) in (FitStatus.OK, FitStatus.BOUNDARY)
    assert float(d.mu2) > 0.9 and float(d.mu1) < 0.1


# ----------------------------------------------------------------------------- real data

def _ovm_scores():
    path = shared_file("ovm-gsm8k/llama7b_test_2x500.jsonl")
    with open(path) as f:
        rows = [json.loads(line) for line in f]
    return np.array([[o["vscores"][-1] for o in r["outputs"]] for r in rows], np.float64)


def test_ovm_scores_are_bimodal_and_the_mixture_fits_far_better(numpy_backend):
    raw = _ovm_scores()
    s = np.clip(raw, 0.0, 1.0)
    b = s.shape[0]
    mask = np.ones(s.shape, bool)
    out = _fit_np(s)
    w, m1, s1, m2, s2, status, _ = out
    assert np.all(status != FitStatus.INVALID) and np.all(status != FitStatus.MAXITER)
    # component means (the mu of a component may sit outside [0, 1]: a tail piled at a bound)
    mean1 = optscale.TruncatedNormal(m1, s1).icdf(0.5)
    mean2 = optscale.TruncatedNormal(m2, s2).icdf(0.5)
    assert np.all(mean1 < 0.15) and np.all(mean2 > 0.85)
    assert m2[0] == pytest.approx(0.95, abs=0.03)  # question 0: right answers near 0.95-0.97
    ll_mix = mixture_loglik(_numpy_xp(), s, mask, np.zeros(b), np.ones(b), *out[:5])
    tn = optscale.fit_truncnorm(raw, out_of_range="clip")
    ll_tn = np.asarray(optscale.TruncatedNormal(tn.mu[:, None], tn.sigma[:, None]).logpdf(s)
                       ).sum(-1)
    assert np.all(ll_mix > ll_tn + 200)


def test_min_samples_meets_its_definition_for_the_mixture(numpy_backend):
    d = TruncNormMixture(np.array([0.5, 0.3]), 0.05, 0.05, 0.95, 0.03)
    t, c = 0.9, 0.95
    sol = optscale.min_samples(d, t, c)
    assert np.asarray(sol.status).tolist() == [0, 0]
    n = np.asarray(sol.n, np.float64)
    log_f = np.asarray(d.logcdf(t))
    assert np.all(n * log_f <= math.log(1 - c) + 1e-12)
    assert np.all((n - 1) * log_f > math.log(1 - c))
