"""The solvers on every backend: definitions hold exactly, statuses, errors, monotonicity."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import optscale
from optscale import Status
from tests._suite import BackendSuite, as_np, precision, tn


def random_queries(count, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    mu = rng.uniform(-1.0, 2.0, count)
    sigma = 10 ** rng.uniform(-3, 0.7, count)
    target = np.where(rng.random(count) < 0.2, 1 - 10 ** rng.uniform(-6, -1, count),
                      rng.uniform(0, 1, count))
    closest = -9 if np.dtype(dtype) == np.float64 else -6  # 1 - 1e-9 is 1.0 in float32
    confidence = np.where(rng.random(count) < 0.5, rng.uniform(0.01, 0.99, count),
                          1 - 10 ** rng.uniform(closest, -2, count))
    cast = lambda v: v.astype(dtype)  # noqa: E731
    return tn(mu, sigma, dtype=dtype), cast(target), cast(confidence)


def check_best_of_n_definition(impl, xp, dist, target, confidence, sol, n_min, n_max):
    """F^n <= 1 - c < F^(n-1) in log space, in the backend's own precision."""
    n, status = as_np(sol.n), as_np(sol.status)
    log_f = as_np(impl.logcdf(dist, target))
    dtype = log_f.dtype
    log1mc = as_np(xp.log1p(-xp.asarray(confidence, dtype)))
    ok = status == Status.OK
    nf = n.astype(dtype)
    assert np.all((nf * log_f <= log1mc)[ok])
    assert np.all(((nf - 1) * log_f > log1mc)[ok & (n > n_min)])
    infeasible = status == Status.INFEASIBLE
    assert np.all(n[infeasible] == n_max)
    assert np.all((np.asarray(n_max, dtype) * log_f > log1mc)[infeasible])
    assert np.all((target <= dist.low)[status == Status.TRIVIAL])
    assert not np.any(status == Status.INVALID)
    return ok


class SolveSuite(BackendSuite):
    def test_best_of_n_definition_on_1e5_cases(self, f64, impl, xp):
        dist, target, conf = random_queries(100_000, 0)
        n_max = 1_000_000
        sol = optscale.min_samples(dist, target, conf, n_max=n_max)
        ok = check_best_of_n_definition(impl, xp, dist, target, conf, sol, 1, n_max)
        assert ok.mean() > 0.5 and (as_np(sol.status) == Status.INFEASIBLE).sum() > 100
        np.testing.assert_allclose(as_np(sol.achieved)[ok], -np.expm1(
            as_np(sol.n)[ok] * as_np(impl.logcdf(dist, target))[ok]), rtol=1e-12)

    def test_best_of_n_definition_float32(self, impl, xp):
        dist, target, conf = random_queries(20_000, 1, np.float32)
        sol = optscale.min_samples(dist, target, conf, n_max=100_000)
        assert as_np(sol.achieved).dtype == np.float32
        check_best_of_n_definition(impl, xp, dist, target, conf, sol, 1, 100_000)

    def test_float32_agrees_with_float64_away_from_boundaries(self):
        dist64, target, conf = random_queries(100_000, 2)
        dist32 = tn(*(np.asarray(p, np.float32) for p in dist64.params()), dtype=np.float32)
        # the same float32 queries in both precisions
        dist64 = tn(*(np.asarray(p, np.float64) for p in dist32.params()))
        t32, c32 = target.astype(np.float32), conf.astype(np.float32)
        n32 = as_np(optscale.min_samples(dist32, t32, c32, n_max=10**7).n)
        with precision(self.backend, np.float64):
            sol = optscale.min_samples(dist64, t32.astype(np.float64), c32.astype(np.float64),
                                       n_max=10**7)
            n64, status = as_np(sol.n), as_np(sol.status)
            log_f = as_np(dist64.logcdf(t32.astype(np.float64)))
        ok = status == Status.OK
        with np.errstate(all="ignore"):
            ratio = np.log1p(-c32.astype(np.float64)) / log_f
            near = np.abs(ratio - np.round(ratio)) <= 1e-4 * np.abs(ratio)
        differ = (n32 != n64) & ok & (ratio > 1)
        assert not np.any(differ & ~near), np.flatnonzero(differ & ~near)[:5]

    def test_k_of_n_definition(self, dtype, impl, xp):
        dist, target, conf = random_queries(10_000, 3, dtype)
        k = np.random.default_rng(3).integers(1, 9, 10_000)
        n_max = 200_000
        sol = optscale.min_samples(dist, target, conf, k=k, n_max=n_max)
        n, status = as_np(sol.n), as_np(sol.status)
        log_f, log_s = (as_np(v) for v in impl.log_cdf_sf(dist, target))
        log1mc = as_np(xp.log1p(-xp.asarray(conf)))
        kf = k.astype(dtype)

        def lower(m):
            return as_np(impl.log_binom_lower(log_s, log_f, m.astype(dtype), kf))

        ok = status == Status.OK
        assert ok.mean() > 0.5
        assert np.all((lower(n) <= log1mc)[ok])
        assert np.all((lower(n - 1) > log1mc)[ok & (n > 1)])
        infeasible = status == Status.INFEASIBLE
        assert np.all(n[infeasible] == n_max)
        assert np.all((lower(np.full_like(n, n_max)) > log1mc)[infeasible])
        assert np.all(n[ok] >= k[ok])

    def test_k_of_n_matches_scipy_binomial(self, f64):
        from scipy import stats

        dist, target, conf = random_queries(300, 4)
        conf = np.clip(conf, 0.05, 0.999)
        k = np.random.default_rng(4).integers(2, 6, 300)
        sol = optscale.min_samples(dist, target, conf, k=k, n_max=100_000)
        n, ok = as_np(sol.n), as_np(sol.status) == Status.OK
        s = as_np(dist.sf(target))
        p_n = stats.binom.sf(k - 1, n, s)
        p_prev = stats.binom.sf(k - 1, n - 1, s)
        assert np.all((p_n >= conf * (1 - 1e-9))[ok])
        assert np.all((p_prev < conf * (1 + 1e-9))[ok])

    def test_expected_best_definition(self, dtype):
        dist, target, _ = random_queries(1000, 5, dtype)
        target = np.where(target < 0.05, target + 0.05, target).astype(dtype)
        n_max = 5000
        sol = optscale.min_samples(dist, target, criterion="expected", n_max=n_max)
        n, status = as_np(sol.n), as_np(sol.status)
        ok = status == Status.OK
        e_n = as_np(optscale.expected_best(dist, n.astype(dtype)))
        e_prev = as_np(optscale.expected_best(dist, np.maximum(n - 1, 1).astype(dtype)))
        assert ok.mean() > 0.3
        assert np.all((e_n >= target)[ok])
        assert np.all((e_prev < target)[ok & (n > 1)])
        infeasible = status == Status.INFEASIBLE
        e_max = as_np(optscale.expected_best(dist, np.asarray(n_max, dtype)))
        assert np.all((e_max < target)[infeasible])
        # XLA may fuse the same sum differently in two programs: equal to a few ulps
        np.testing.assert_allclose(as_np(sol.achieved)[ok], e_n[ok],
                                   rtol=8 * np.finfo(dtype).eps)

    def test_cost_aware_definition(self, dtype, impl, xp):
        dist, target, _ = random_queries(20_000, 6, dtype)
        cost = (10 ** np.random.default_rng(6).uniform(-6, -0.5, 20_000)).astype(dtype)
        sol = optscale.cost_aware_samples(dist, target, cost, n_max=10**6)
        n, status = as_np(sol.n), as_np(sol.status)
        log_f, log_s = (as_np(v) for v in impl.log_cdf_sf(dist, target))
        log_cost = as_np(xp.log(xp.asarray(cost)))
        nf = n.astype(dtype)
        ok = status == Status.OK
        # the gain of one more sample, F^n S, is <= cost at n and > cost at n - 1
        bound = log_cost - log_s
        assert np.all((nf * log_f <= bound)[ok])
        assert np.all(((nf - 1) * log_f > bound)[ok & (n > 1)])
        never = status == Status.INFEASIBLE
        assert np.all((n == 1)[never & (log_f == 0)])

    def test_cost_aware_brute_force(self, f64):
        d = tn(0.8, 0.1)
        for t, cost in [(0.9, 0.01), (0.95, 0.001), (0.99, 1e-5), (0.85, 0.2)]:
            n = np.arange(1, 200_000)
            gain = as_np(optscale.best_of_n_prob(d, t, n)) - cost * n
            sol = optscale.cost_aware_samples(d, t, cost, n_max=200_000)
            assert int(as_np(sol.n)) == int(n[np.argmax(gain)])

    def test_statuses(self, dtype):
        d = tn([0.5, 0.5, 0.5, 0.5, 0.5], [0.1, 0.1, 0.1, 0.1, -1.0], dtype=dtype)
        target = np.array([0.0, 1.0, 0.7, 0.99, 0.7], dtype)
        sol = optscale.min_samples(d, target, 0.9, k=2, n_min=3, n_max=1000)
        np.testing.assert_array_equal(as_np(sol.status), [Status.TRIVIAL, Status.INFEASIBLE,
                                                          Status.OK, Status.INFEASIBLE,
                                                          Status.INVALID])
        np.testing.assert_array_equal(as_np(sol.n)[[0, 1, 3, 4]], [3, 1000, 1000, 1000])
        assert as_np(sol.achieved)[0] == 1 and as_np(sol.achieved)[4] == 0
        assert not np.any(np.isnan(as_np(sol.achieved)))

    @pytest.mark.parametrize("field,value", [
        ("mu", np.nan), ("sigma", 0.0), ("sigma", np.inf), ("low", -np.inf), ("high", 0.0),
        ("target", np.nan), ("confidence", 1.0), ("confidence", 0.0), ("k", 0), ("n_min", 0),
        ("n_max", 0)])
    def test_every_invalid_argument_is_a_status_and_a_named_error(self, field, value):
        args = dict(mu=0.5, sigma=0.1, low=0.0, high=1.0, target=0.7, confidence=0.9, k=1,
                    n_min=1, n_max=1000)
        batch = {field: np.array([args[field], value, args[field]])}
        args.update(batch)
        d = optscale.TruncatedNormal(args["mu"], args["sigma"], args["low"], args["high"])
        call = lambda **kw: optscale.min_samples(  # noqa: E731
            d, args["target"], args["confidence"], k=args["k"], n_min=args["n_min"],
            n_max=args["n_max"], **kw)
        np.testing.assert_array_equal(as_np(call().status),
                                      [Status.OK, Status.INVALID, Status.OK])
        with pytest.raises(ValueError, match=rf"^min_samples: {field} .* at index \(1,\)$"):
            call(errors="raise")

    def test_cost_must_be_positive(self):
        d = tn(0.5, 0.1)
        sol = optscale.cost_aware_samples(d, 0.7, np.array([0.01, 0.0, -1.0]))
        np.testing.assert_array_equal(as_np(sol.status), [0, 3, 3])
        with pytest.raises(ValueError, match="cost must be finite and > 0; got cost = 0.0"):
            optscale.cost_aware_samples(d, 0.7, np.array([0.01, 0.0]), errors="raise")

    def test_option_errors(self):
        d = tn(0.5, 0.1)
        with pytest.raises(ValueError, match="confidence is required"):
            optscale.min_samples(d, 0.7)
        with pytest.raises(ValueError, match="criterion must be one of"):
            optscale.min_samples(d, 0.7, 0.9, criterion="best")
        with pytest.raises(ValueError, match="errors must be one of"):
            optscale.min_samples(d, 0.7, 0.9, errors="ignore")
        with pytest.raises(TypeError, match="n_max must be an integer"):
            optscale.min_samples(d, 0.7, 0.9, n_max=64.0)
        with pytest.raises(TypeError, match="k must be an integer"):
            optscale.min_samples(d, 0.7, 0.9, k=np.array([1.5]))
        with pytest.raises(ValueError, match="n_max must be <= 2147483647"):
            optscale.min_samples(d, 0.7, 0.9, n_max=2**31)

    def test_paper_numbers(self, f64):
        # N* = ceil(log(p) / log F(t)) with p = 1 - c, as in the paper's Eq. for OptScale.
        d = tn(0.9, 0.1)
        log_f = float(as_np(d.logcdf(0.95)))
        for c in (0.5, 0.9, 0.99):
            want = int(np.ceil(np.log(1 - c) / log_f))
            assert int(as_np(optscale.min_samples(d, 0.95, c).n)) == want


class TestSolveJax(SolveSuite):
    backend = "jax"


class TestSolveNumpy(SolveSuite):
    backend = "numpy"


class TestSolveCython(SolveSuite):
    backend = "cython"


@pytest.mark.extension
def test_backends_agree_in_float64():
    """Same N* and statuses from every available backend on 10^5 random queries (k = 1 closed
    form and k = 1..4 bisection), and on the bad-input table."""
    names = optscale.available_backends()
    if len(names) < 2:
        pytest.skip("one backend only")
    dist, target, conf = random_queries(100_000, 8)
    k = np.random.default_rng(8).integers(1, 5, 100_000)
    bad = tn([0.5, np.nan, 0.5, 0.5, 0.5, 0.5, 0.5], [0.1, 0.1, 0.0, -1, np.inf, 0.1, 0.1],
             [0, 0, 0, 0, 0, 1, 0], [1, 1, 1, 1, 1, 1, 1])
    bad_t = np.array([0.7, 0.7, 0.7, 0.7, 0.7, 0.7, np.nan])
    previous = optscale.backend()
    out = {}
    try:
        for name in names:
            optscale.set_backend(name)
            with precision(name, np.float64):
                one = optscale.min_samples(dist, target, conf, n_max=10**6)
                many = optscale.min_samples(dist, target, conf, k=k, n_max=10**6)
                worse = optscale.min_samples(bad, bad_t, np.array([0.9, 0.9, 0.9, 0.9, 0.9, 1.5,
                                                                   0.9]))
                out[name] = [as_np(v) for v in (one.n, one.status, many.n, many.status,
                                                  worse.status)]
    finally:
        optscale.set_backend(previous)
    first = names[0]
    for name in names[1:]:
        for a, b in zip(out[first], out[name], strict=True):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(out[first][4], [Status.OK] + [Status.INVALID] * 6)


# ------------------------------------------------------------------ properties (hypothesis)

_mu = st.floats(-1.0, 2.0)
_sigma = st.floats(0.01, 3.0)
_target = st.floats(0.0, 0.999)
_conf = st.floats(0.01, 0.999)


def _n(mu, sigma, target, conf, k=1):
    with precision("jax", np.float64):
        sol = optscale.min_samples(tn(mu, sigma), np.float64(target), np.float64(conf), k=k,
                                   n_max=10**7)
        return int(as_np(sol.n)), int(as_np(sol.status))


@given(_mu, _sigma, _target, _target, _conf, st.integers(1, 4))
def test_n_is_nondecreasing_in_target(mu, sigma, t1, t2, conf, k):
    t1, t2 = sorted((t1, t2))
    assert _n(mu, sigma, t1, conf, k)[0] <= _n(mu, sigma, t2, conf, k)[0]


@given(_mu, _sigma, _target, _conf, _conf, st.integers(1, 4))
def test_n_is_nondecreasing_in_confidence(mu, sigma, t, c1, c2, k):
    c1, c2 = sorted((c1, c2))
    assert _n(mu, sigma, t, c1, k)[0] <= _n(mu, sigma, t, c2, k)[0]


@given(_mu, _mu, _sigma, _target, _conf, st.integers(1, 4))
def test_n_is_nonincreasing_in_mu(mu1, mu2, sigma, t, conf, k):
    mu1, mu2 = sorted((mu1, mu2))
    assert _n(mu1, sigma, t, conf, k)[0] >= _n(mu2, sigma, t, conf, k)[0]
