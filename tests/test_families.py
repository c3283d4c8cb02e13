"""Score families beyond the truncated normal: the Beta against scipy, the solvers' definitions
for any family, fits (MLE/MAP, degenerate inputs), model choice, goodness of fit, the JAX
exceedance bound, and the policies with ``family=``. Every backend, float32 and float64."""

from __future__ import annotations

import mpmath as mp
import numpy as np
import pytest
import scipy.stats as st
from hypothesis import given
from hypothesis import strategies as hs

import optscale
from optscale._exceedance import log_gamma_ratio
from tests._suite import BackendSuite, precision

BETAS = [(9.0, 1.0), (2.0, 2.0), (0.5, 0.3), (30.0, 1.5), (1.0, 1.0), (0.2, 5.0)]


def beta(params, dtype, low=0.0, high=1.0):
    a, b = (np.asarray([p[i] for p in params], dtype) for i in (0, 1))
    return optscale.Beta(a, b, np.asarray(low, dtype), np.asarray(high, dtype))


class FamilySuite(BackendSuite):
    def test_beta_matches_scipy(self, dtype):
        d = beta(BETAS, dtype, low=-1.0, high=3.0)
        x = np.asarray([2.8, 0.5, -0.9, 2.9, 1.0, 0.0], dtype)
        a, b = np.asarray(d.a, np.float64), np.asarray(d.b, np.float64)
        ref = st.beta(a, b, loc=-1.0, scale=4.0)
        rtol = 1e-4 if dtype == np.float32 else 1e-10
        lc, ls = (np.asarray(v) for v in d.log_cdf_sf(x))
        assert lc.dtype == dtype
        np.testing.assert_allclose(lc, ref.logcdf(x), rtol=rtol, atol=rtol)
        np.testing.assert_allclose(ls, ref.logsf(x), rtol=rtol, atol=rtol)
        np.testing.assert_allclose(np.asarray(d.logpdf(x)), ref.logpdf(x), rtol=rtol,
                                   atol=rtol)
        q = np.asarray([0.3, 0.5, 0.9, 0.01, 0.99, 0.5], dtype)
        np.testing.assert_allclose(np.asarray(d.icdf(q)), ref.ppf(q), rtol=10 * rtol,
                                   atol=10 * rtol)
        np.testing.assert_allclose(np.asarray(d.mean), ref.mean(), rtol=100 * rtol)

    def test_outside_support_and_invalid(self, dtype):
        d = beta([(2.0, 3.0), (-1.0, 1.0)], dtype)
        lc, ls = (np.asarray(v) for v in d.log_cdf_sf(np.asarray([[-0.5], [1.5]], dtype)))
        assert lc[0, 0] == -np.inf and ls[0, 0] == 0.0
        assert lc[1, 0] == 0.0 and ls[1, 0] == -np.inf
        assert np.isnan(lc[:, 1]).all()
        assert np.asarray(d.invalid()).tolist() == [False, True]

    def test_min_samples_definition(self, dtype, xp):
        d = beta(BETAS, dtype)
        t, c = np.asarray(0.93, dtype), np.asarray(0.9, dtype)
        sol = optscale.min_samples(d, t, c)
        n = np.asarray(sol.n)
        # Beta(0.2, 5) reaches 0.93 with probability ~1e-6: beyond the default n_max
        assert np.asarray(sol.status).tolist() == [0] * (len(BETAS) - 1) + [2]
        n = n[:-1]
        with precision("numpy", np.float64):
            log_f = np.asarray(optscale.Beta(np.asarray(d.a, np.float64),
                                             np.asarray(d.b, np.float64)).logcdf(0.93))
        # the definition in the precision the backend solved in
        lf = (log_f.astype(dtype) if self.backend == "jax" else log_f)[:-1]
        bound = np.log1p(-np.asarray(c, lf.dtype))
        assert np.all(n * lf <= bound * (1 - 1e-5 * (dtype == np.float32)))
        assert np.all((n == 1) | ((n - 1) * lf > bound * (1 + 1e-5 * (dtype == np.float32))))

    def test_k_of_n_and_cost_and_expected(self, f64):
        d = beta(BETAS[:4], f64)
        t = 0.9
        sol = optscale.min_samples(d, t, 0.8, k=np.asarray(3))
        s = np.asarray(d.sf(t))
        n = np.asarray(sol.n)
        assert np.all(st.binom.sf(2, n, s) >= 0.8 - 1e-12)
        assert np.all(st.binom.sf(2, n - 1, s) < 0.8)
        np.testing.assert_allclose(np.asarray(optscale.k_of_n_prob(d, t, 10, 3)),
                                   st.binom.sf(2, 10, s), rtol=1e-9)
        cost = optscale.cost_aware_samples(d, t, 0.01)
        f = np.asarray(d.cdf(t))
        gain = lambda m: 1 - f**m - 0.01 * m  # noqa: E731
        m = np.asarray(cost.n)
        assert np.all(gain(m) >= gain(m + 1) - 1e-12) and np.all(gain(m) >= gain(m - 1) - 1e-12)
        e = optscale.min_samples(d, 0.92, criterion="expected")
        a, b = np.asarray(d.a), np.asarray(d.b)
        for i, m in enumerate(np.asarray(e.n)):
            if np.asarray(e.status)[i] != 0:
                continue
            cdf = lambda x, i=i: mp.betainc(a[i], b[i], 0, x, regularized=True)  # noqa: E731
            exact = [mp.quad(lambda x, k=k, cdf=cdf: 1 - cdf(x) ** k, [0, 1])
                     for k in (m - 1, m)]
            assert float(exact[1]) >= 0.92 - 1e-8 and (m == 1 or float(exact[0]) < 0.92 + 1e-8)

    def test_fit_recovers_and_degenerate_inputs_stay_finite(self, dtype):
        rng = np.random.default_rng(1)
        scores = rng.beta(5.0, 1.5, size=(3, 3000)).astype(dtype)
        fit = optscale.fit_family("beta", scores)
        np.testing.assert_allclose(np.asarray(fit.dist.a), 5.0, rtol=0.1)
        np.testing.assert_allclose(np.asarray(fit.dist.b), 1.5, rtol=0.1)
        assert np.asarray(fit.status).tolist() == [0, 0, 0]
        odd = np.asarray([[0.9, 0.9, 0.9, 0.9], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0],
                          [0.7, 0.0, 0.0, 0.0]], dtype)
        mask = np.asarray([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1], [1, 0, 0, 0]], bool)
        fit = optscale.fit_family("beta", odd, mask)
        a, b = np.asarray(fit.dist.a), np.asarray(fit.dist.b)
        assert np.isfinite(a).all() and np.isfinite(b).all() and (a > 0).all()
        assert np.isfinite(np.asarray(fit.loglik)).all()

    def test_map_without_scores_is_the_prior(self, dtype):
        fit = optscale.fit_family("beta", np.zeros((2, 3), dtype), np.zeros((2, 3), bool),
                                  prior=(np.asarray([2.0, 7.0], dtype), 3.0))
        np.testing.assert_allclose(np.asarray(fit.dist.a), [2.0, 7.0], rtol=1e-5)
        np.testing.assert_allclose(np.asarray(fit.dist.b), [3.0, 3.0], rtol=1e-5)

    def test_exceedance_policy_matches_the_bound(self, dtype):
        p = optscale.OptScale0(target=0.9, confidence=0.95, n_peek=8, n_max=10_000,
                               family="exceedance")
        scores = np.asarray([[0.1] * 8, [0.1] * 7 + [0.95]], dtype)
        n_star, status = p.n_star(scores)
        more = optscale.exceedance_min_samples(0, 8, 0.95, n_max=10_000).n
        assert n_star.tolist() == [8 + int(more), 8]
        assert status.tolist() == [0, 0]


class TestFamiliesJax(FamilySuite):
    backend = "jax"


class TestFamiliesNumpy(FamilySuite):
    backend = "numpy"


class TestFamiliesCython(FamilySuite):
    backend = "cython"


@given(hs.floats(0.05, 50.0), hs.floats(0.05, 50.0),
       hs.lists(hs.floats(0.0, 1.0), min_size=2, max_size=8))
def test_beta_cdf_monotone(a, b, xs):
    xs = np.sort(np.asarray(xs))
    f = np.asarray(optscale.Beta(np.float64(a), np.float64(b)).cdf(xs))
    assert np.all(np.diff(f) >= -1e-12) and np.all((f >= 0) & (f <= 1))


@given(hs.lists(hs.floats(0.0, 1.0), min_size=1, max_size=6))
def test_beta_fit_finite_on_any_small_input(xs):
    fit = optscale.fit_family("beta", np.asarray([xs]))
    assert np.isfinite(np.asarray(fit.dist.a)).all() and np.isfinite(np.asarray(fit.dist.b)).all()
    assert int(np.asarray(fit.status)[0]) in (0, 1, 2)


def test_beta_fit_numpy_and_jax_agree():
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(2)
    scores = rng.beta(0.7, 0.4, size=(4, 12))
    mask = rng.random((4, 12)) < 0.8
    optscale.set_backend("numpy")
    try:
        ref = optscale.fit_family("beta", scores, mask, prior=(2.0, 1.0))
    finally:
        optscale.set_backend("jax")
    with jax.enable_x64(True):
        out = optscale.fit_family("beta", jnp.asarray(scores), jnp.asarray(mask),
                                  prior=(2.0, 1.0))
        np.testing.assert_allclose(np.asarray(out.dist.a), ref.dist.a, rtol=1e-6)
        np.testing.assert_allclose(np.asarray(out.dist.b), ref.dist.b, rtol=1e-6)
        np.testing.assert_allclose(np.asarray(out.loglik), ref.loglik, rtol=1e-6)


def test_families_work_inside_jit():
    import jax
    import jax.numpy as jnp

    @jax.jit
    def n_star(a, b):
        return optscale.min_samples(optscale.Beta(a, b), 0.9, 0.9).n

    out = n_star(jnp.asarray([9.0, 2.0]), jnp.asarray([1.0, 1.0]))
    ref = optscale.min_samples(optscale.Beta(np.asarray([9.0, 2.0]), 1.0), 0.9, 0.9).n
    assert np.asarray(out).tolist() == np.asarray(ref).tolist()


def test_fits_choice_and_goodness_of_fit_trace_and_come_back_from_jit():
    # FamilyFit carries its family name as static aux data, so it is a jit output
    import jax
    import jax.numpy as jnp

    x = np.clip(np.random.default_rng(4).normal(0.7, 0.1, (5, 12)), 0.0, 1.0)
    # (Beta only: the truncated normal's and the mixture's fits take seconds to compile)
    traced = jax.jit(lambda s: optscale.fit_family("beta", s))(jnp.asarray(x))
    eager = optscale.fit_family("beta", jnp.asarray(x))
    assert traced.family == "beta"
    np.testing.assert_allclose(np.asarray(traced.loglik), np.asarray(eager.loglik), rtol=1e-5)
    choice = jax.jit(lambda s: optscale.choose_family(s, families=("beta",)))(jnp.asarray(x))
    assert choice.families == ("beta",)
    np.testing.assert_allclose(np.asarray(choice.information),
                               np.asarray(eager.information("bic"))[None], rtol=1e-5)
    d = optscale.TruncatedNormal(jnp.full(5, 0.7), jnp.full(5, 0.1))
    gof = jax.jit(optscale.goodness_of_fit)(d, jnp.asarray(x))
    ref = optscale.goodness_of_fit(d, jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(gof.ks), np.asarray(ref.ks), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(gof.pvalue), np.asarray(ref.pvalue), rtol=1e-4)


def test_errors_raise_names_the_family_parameter():
    with pytest.raises(ValueError, match=r"invalid Beta parameters at index \(1,\).*a = -1"):
        optscale.min_samples(optscale.Beta(np.asarray([1.0, -1.0]), 1.0), 0.9, 0.9,
                             errors="raise")
    with pytest.raises(ValueError, match="confidence"):
        optscale.min_samples(optscale.Beta(1.0, 1.0), 0.9, 1.5, errors="raise")


def test_beta_from_moments_round_trip():
    a, b, status = optscale.beta_from_moments([0.9, 0.5, 0.99], [0.08, 0.2, 0.005])
    d = st.beta(a, b)
    np.testing.assert_allclose(d.mean(), [0.9, 0.5, 0.99], rtol=1e-12)
    np.testing.assert_allclose(d.std(), [0.08, 0.2, 0.005], rtol=1e-12)
    assert status.tolist() == [0, 0, 0]
    _, _, status = optscale.beta_from_moments([0.9, 1.2], [0.5, 0.1])
    assert status.tolist() == [int(optscale.MomentStatus.IMPOSSIBLE),
                               int(optscale.MomentStatus.INVALID)]


def test_choose_family_and_goodness_of_fit():
    rng = np.random.default_rng(3)
    smooth = np.clip(rng.normal(0.8, 0.05, 400), 0, 1)
    u_shape = rng.beta(0.3, 0.3, 400)
    choice = optscale.choose_family(np.stack([smooth, u_shape]), families=("truncnorm", "beta"))
    assert choice.chosen == ["truncnorm", "beta"]
    tn = choice.fits["truncnorm"]
    gof = optscale.goodness_of_fit(tn.dist, np.stack([smooth, u_shape]))
    ref = [st.kstest(x, lambda v, i=i: np.asarray(optscale.TruncatedNormal(
        np.asarray(tn.dist.mu)[i], np.asarray(tn.dist.sigma)[i]).cdf(v))) for i, x in
        enumerate((smooth, u_shape))]
    np.testing.assert_allclose(gof.ks, [r.statistic for r in ref], rtol=1e-5)
    assert gof.pvalue[0] > 0.05 and gof.pvalue[1] < 1e-6


@pytest.mark.parametrize("y, d", [(0.5, 2.0), (9.99, 3.0), (10.0, 3.0), (1e3, 2.5), (1e6, 7.0),
                                  (1e9, 1.0), (50.0, 400.0)])
def test_log_gamma_ratio_against_mpmath(y, d):
    import jax.numpy as jnp

    with mp.workdps(40):
        ref = float(mp.loggamma(y) - mp.loggamma(y + d))
    assert abs(float(log_gamma_ratio(np, np.float64(y), np.float64(d))) - ref) <= 1e-12 * max(
        1.0, abs(ref)) + 1e-9
    got32 = float(log_gamma_ratio(jnp, jnp.float32(y), jnp.float32(d)))
    assert abs(got32 - ref) <= 3e-6 * max(1.0, abs(ref))


def test_jax_exceedance_matches_numpy():
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(4)
    n = rng.integers(0, 40, 200)
    k = rng.integers(0, 1000, 200) % (n + 1)
    a, b = rng.uniform(0.2, 20, 200), rng.uniform(0.2, 60, 200)
    ref = optscale.exceedance_min_samples(k, n, 0.93, a, b, n_max=10**7)
    with jax.enable_x64(True):
        out = optscale.exceedance_min_samples(jnp.asarray(k), jnp.asarray(n), 0.93,
                                              jnp.asarray(a), jnp.asarray(b), n_max=10**7)
        assert np.asarray(out.n).tolist() == ref.n.tolist()
    out32 = optscale.exceedance_min_samples(jnp.asarray(k), jnp.asarray(n), 0.93,
                                            jnp.asarray(a, jnp.float32),
                                            jnp.asarray(b, jnp.float32), n_max=10**7)
    # float32 may move an answer by one where the probability sits within rounding of c
    assert np.max(np.abs(np.asarray(out32.n) - ref.n) / ref.n) <= 1e-3
    assert np.asarray(out32.status).tolist() == ref.status.tolist()


@pytest.mark.parametrize("family", ["beta", "auto", "exceedance"])
def test_policy_online_equals_batch_replay(family, numpy_backend):
    # NumPy: the sequential rule refits at many padded shapes, each a JAX compile of every
    # family's fit; the JAX fits are checked against NumPy above
    rng = np.random.default_rng(5)
    scores = np.where(rng.random((6, 40)) < 0.3, rng.uniform(0.9, 1.0, (6, 40)),
                      rng.uniform(0.0, 0.2, (6, 40)))
    p = optscale.OptScale0(target=0.95, confidence=0.9, n_peek=6, n_max=40, family=family,
                           rule="sequential", round_size=4)
    run = p.run(scores)
    for i in range(6):
        state = p.start()
        d = p.update(state)
        n = 0
        while not d.stop:
            d = p.update(state, scores[i, n:n + d.n_more])
            n = len(state.scores)
        assert n == run.n_used[i]


def test_policy_rejects_unsupported_combinations():
    with pytest.raises(ValueError, match="predictive=True needs family='truncnorm'"):
        optscale.OptScale0(target=0.9, family="beta", predictive=True)
    with pytest.raises(ValueError, match="exceedance"):
        optscale.OptScale0(target=0.9, family="exceedance", criterion="expected")
    with pytest.raises(ValueError, match="family must be one of"):
        optscale.OptScale0(target=0.9, family="gamma")


def test_policy_reports_goodness_of_fit(numpy_backend):
    rng = np.random.default_rng(6)
    bimodal = np.where(rng.random(64) < 0.4, 0.97, 0.03) + rng.normal(0, 0.01, 64)
    smooth = np.clip(rng.normal(0.8, 0.05, 64), 0, 1)
    p = optscale.OptScale0(target=0.99, confidence=0.9, n_peek=64, n_max=128)
    bad, good = (p.update(p.start(), s) for s in (bimodal, smooth))
    assert bad.ks_pvalue < 1e-4 < 0.05 < good.ks_pvalue
    assert 0 < good.ks < bad.ks
    choice, gof = p.diagnose(np.stack([bimodal, smooth]))
    assert choice.chosen[0] == "mixture" and choice.chosen[1] == "truncnorm"
    assert gof["truncnorm"].pvalue[0] < 1e-4 and gof["mixture"].pvalue[0] > 1e-3
    exceed = optscale.OptScale0(target=0.99, n_peek=4, family="exceedance")
    assert exceed.update(exceed.start(), smooth[:4]).ks is None


def test_goodness_of_fit_of_nothing_is_nan():
    gof = optscale.goodness_of_fit(optscale.Beta(np.asarray([2.0]), 2.0), np.zeros((1, 0)))
    assert np.isnan(gof.ks).all() and np.isnan(gof.pvalue).all() and gof.n_obs.tolist() == [0]
    p = optscale.OptScaleT(target=0.9, n_peek=0)
    d = p.update(p.start(prior=(0.8, 0.1)))
    assert d.ks is None and d.n_star is not None
