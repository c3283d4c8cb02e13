"""The truncated normal on every backend: mpmath oracle (deep tails), scipy, identities."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import optscale
from tests import _oracle
from tests._suite import BackendSuite, as_np, tn


def _oracle_points(dtype):
    rows = _oracle.table(dtype)
    mu, sigma, low, high = (rows[:, i : i + 1] for i in range(4))
    x = (low + np.asarray(_oracle.FRACTIONS, dtype) * (high - low)).astype(dtype)
    mu, sigma, low, high, x = np.broadcast_arrays(mu, sigma, low, high, x)
    inside = (x > low) & (x < high)
    pts = [a[inside] for a in (mu, sigma, low, high, x)]
    truth = np.array([_oracle.log_cdf_sf(*p) for p in zip(*pts, strict=True)])
    return pts, truth


_POINTS = {}


def oracle_points(dtype):
    key = np.dtype(dtype).name
    if key not in _POINTS:
        _POINTS[key] = _oracle_points(dtype)
    return _POINTS[key]


def rel_err(got, want, dtype):
    """Relative error; values below the dtype's normal range are compared absolutely."""
    floor = float(np.finfo(dtype).tiny) * 16
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    tiny = np.abs(want) < floor
    err = np.abs(got - want) / np.where(tiny, 1.0, np.abs(want))
    return np.where(tiny & (np.abs(got - want) <= floor), 0.0, err)


class TruncNormSuite(BackendSuite):
    def test_log_cdf_sf_match_mpmath_in_deep_tails(self, dtype):
        (mu, sigma, low, high, x), truth = oracle_points(dtype)
        d = tn(mu, sigma, low, high, dtype)
        lc, ls = as_np(d.logcdf(x)), as_np(d.logsf(x))
        assert lc.dtype == dtype and ls.dtype == dtype
        # float32: the inputs are exact float32 values, so the error is the algorithm's; it grows
        # with the size of the logs involved (~alpha^2/2 * eps): 2e-4 at |alpha| ~ 40.
        tol = 1e-12 if dtype == np.float64 else 5e-4
        for name, got, want in (("logcdf", lc, truth[:, 0]), ("logsf", ls, truth[:, 1])):
            err = rel_err(got, want, dtype)
            worst = int(np.argmax(err))
            assert err[worst] <= tol, (name, err[worst], mu[worst], sigma[worst], low[worst],
                                       high[worst], x[worst], got[worst], want[worst])
        assert len(x) > (1500 if dtype == np.float64 else 900)

    def test_float32_on_everyday_parameters(self):
        rng = np.random.default_rng(5)
        mu, sigma = rng.uniform(-0.5, 1.5, 300), 10 ** rng.uniform(-2, 0.5, 300)
        x = rng.uniform(0.001, 0.999, 300)
        rows = np.stack([mu, sigma, np.zeros(300), np.ones(300), x]).astype(np.float32)
        truth = np.array([_oracle.log_cdf_sf(*r) for r in rows.T])
        d = tn(*rows[:4], dtype=np.float32)
        assert rel_err(as_np(d.logcdf(rows[4])), truth[:, 0], np.float32).max() < 1e-4
        assert rel_err(as_np(d.logsf(rows[4])), truth[:, 1], np.float32).max() < 1e-4

    def test_scipy_issue_15110(self, f64):
        d = tn(0.0, 1.0, 13.0, 15.0)
        assert as_np(d.cdf(14.0)) == pytest.approx(0.9999987259565643, rel=1e-13)
        assert as_np(d.sf(14.0)) == pytest.approx(1.2740434356815309e-06, rel=1e-11)

    def test_quantile_round_trips(self, dtype):
        rows = _oracle.table(dtype)
        d = tn(*(rows[:, i : i + 1] for i in range(4)), dtype=dtype)
        q = np.array([1e-30, 1e-9, 1e-3, 0.1, 0.5, 0.77, 0.999, 1 - 1e-6], dtype)
        x = as_np(d.icdf(q))
        low, high = np.broadcast_arrays(rows[:, 2:3], rows[:, 3:4], x)[:2]
        assert np.all((x >= low) & (x <= high))
        lc = as_np(d.logcdf(x)).astype(np.float64)
        # Conditioning: x is a float, so logcdf(x) is only known to eps * |x| * pdf / cdf.
        eps = np.finfo(dtype).eps
        slack = np.exp(as_np(d.logpdf(x)).astype(np.float64) - lc) * np.abs(x) * eps
        interior = (x > low) & (x < high)
        target = np.log(q.astype(np.float64))
        tol = 1e-11 if dtype == np.float64 else 5e-4
        with np.errstate(invalid="ignore"):
            err = np.abs(lc - target) - 4 * slack
        assert np.all((err <= tol * np.abs(target)) | ~interior)
        # and the survival side
        xs = as_np(d.isf(q))
        ls = as_np(d.logsf(xs)).astype(np.float64)
        slack = np.exp(as_np(d.logpdf(xs)).astype(np.float64) - ls) * np.abs(xs) * eps
        interior = (xs > low) & (xs < high)
        with np.errstate(invalid="ignore"):
            err = np.abs(ls - target) - 4 * slack
        assert np.all((err <= tol * np.abs(target)) | ~interior)

    def test_icdf_of_cdf_is_identity(self, dtype):
        d = tn([0.3, 0.9, 1.4, -0.5], [0.2, 0.05, 0.3, 0.4], dtype=dtype)
        x = np.array([[0.01], [0.2], [0.5], [0.93], [0.999]], dtype)
        # in log space: cdf(0.01) underflows float32 for mu = 0.9, sigma = 0.05
        back = as_np(d.icdf_log(as_np(d.logcdf(x))))
        np.testing.assert_allclose(back, np.broadcast_to(x, back.shape),
                                   rtol=1e-9 if dtype == np.float64 else 3e-3)

    def test_matches_scipy_on_moderate_parameters(self, f64):
        rng = np.random.default_rng(0)
        mu, sigma = rng.uniform(-0.5, 1.5, 200), 10 ** rng.uniform(-2, 0.5, 200)
        x = rng.uniform(0, 1, 200)
        d = tn(mu, sigma)
        ref = stats.truncnorm(-mu / sigma, (1 - mu) / sigma, loc=mu, scale=sigma)
        np.testing.assert_allclose(as_np(d.logpdf(x)), ref.logpdf(x), rtol=1e-10)
        np.testing.assert_allclose(as_np(d.cdf(x)), ref.cdf(x), rtol=1e-10, atol=1e-300)
        np.testing.assert_allclose(as_np(d.sf(x)), ref.sf(x), rtol=1e-10, atol=1e-300)
        q = rng.uniform(0, 1, 200)
        np.testing.assert_allclose(as_np(d.icdf(q)), ref.ppf(q), rtol=1e-9)
        np.testing.assert_allclose(as_np(d.mean), ref.mean(), rtol=1e-9)
        # scipy's own variance loses ~1e-7 when mu lies outside the range (see the mpmath test).
        np.testing.assert_allclose(as_np(d.variance), ref.var(), rtol=1e-6)

    def test_moments_match_mpmath(self, f64):
        rng = np.random.default_rng(3)
        everyday = np.stack([rng.uniform(-0.5, 1.5, 40), 10 ** rng.uniform(-2, 0.5, 40),
                             np.zeros(40), np.ones(40)], axis=1)
        rows = np.concatenate([_oracle.table(), everyday])
        d = tn(*rows.T)
        truth = np.array([_oracle.moments(*r) for r in rows])
        np.testing.assert_allclose(as_np(d.mean), truth[:, 0], rtol=1e-9)
        np.testing.assert_allclose(as_np(d.variance), truth[:, 1], rtol=1e-9)

    def test_outside_the_support(self, dtype):
        d = tn(0.5, 0.2, dtype=dtype)
        x = np.array([-1.0, 0.0, 1.0, 2.0], dtype)
        np.testing.assert_array_equal(as_np(d.logcdf(x)), [-np.inf, -np.inf, 0.0, 0.0])
        np.testing.assert_array_equal(as_np(d.logsf(x)), [0.0, 0.0, -np.inf, -np.inf])
        assert np.all(as_np(d.logpdf(np.array([-1.0, 2.0], dtype))) == -np.inf)
        np.testing.assert_array_equal(as_np(d.icdf(np.array([0.0, 1.0], dtype))), [0.0, 1.0])

    @pytest.mark.parametrize("bad", [dict(sigma=0.0), dict(sigma=-1.0), dict(mu=np.nan),
                                     dict(low=1.0), dict(high=np.inf), dict(sigma=np.inf)])
    def test_invalid_parameters_give_nan(self, bad):
        params = dict(mu=0.5, sigma=0.2, low=0.0, high=1.0) | bad
        d = tn(**params)
        for value in (d.logcdf(0.5), d.logsf(0.5), d.logpdf(0.5), d.icdf(0.5), d.mean,
                      d.variance):
            assert np.isnan(as_np(value))

    def test_nan_input_gives_nan(self):
        d = tn(0.5, 0.2)
        assert np.isnan(as_np(d.logcdf(np.nan))) and np.isnan(as_np(d.icdf(np.nan)))

    def test_broadcasting_and_dtype(self, dtype):
        d = tn(np.linspace(0.2, 0.8, 3)[:, None], np.array([0.1, 0.2]), dtype=dtype)
        assert d.batch_shape == (3, 2)
        out = as_np(d.logcdf(np.array([[[0.5]]], dtype)))
        assert out.shape == (1, 3, 2) and out.dtype == dtype
        assert as_np(d.mean).shape == (3, 2)

    def test_samples_follow_the_cdf(self):
        d = tn([0.7, 1.6], [0.15, 0.2])
        key = 0
        if self.backend == "jax":
            import jax

            key = jax.random.key(0)
        x = as_np(d.sample(key, (4000,)))
        assert x.shape == (4000, 2) and np.all((x >= 0) & (x <= 1))
        for j, (mu, s) in enumerate([(0.7, 0.15), (1.6, 0.2)]):
            ref = stats.truncnorm(-mu / s, (1 - mu) / s, loc=mu, scale=s)
            assert stats.kstest(x[:, j], ref.cdf).pvalue > 1e-3


class TestTruncNormJax(TruncNormSuite):
    backend = "jax"


class TestTruncNormNumpy(TruncNormSuite):
    backend = "numpy"


class TestTruncNormCython(TruncNormSuite):
    backend = "cython"


def test_public_class_is_a_pytree():
    jax = pytest.importorskip("jax")
    d = optscale.TruncatedNormal(0.5, 0.2)
    leaves, treedef = jax.tree_util.tree_flatten(d)
    # Python-number bounds (the defaults) are static: vmap(in_axes=0) and device_put see
    # only arrays; array bounds are leaves
    assert len(leaves) == 2 and jax.tree_util.tree_unflatten(treedef, leaves) == d
    assert len(jax.tree_util.tree_leaves(optscale.TruncatedNormal(0.5, 0.2, np.zeros(2),
                                                                  np.ones(2)))) == 4
    import jax.numpy as jnp

    batch = optscale.TruncatedNormal(jnp.array([0.5, 0.9]), jnp.array([0.1, 0.2]))
    for dist in (batch, optscale.Beta(jnp.array([2.0, 9.0]), jnp.array([3.0, 1.0])),
                 optscale.TruncNormMixture(*(jnp.full(2, v) for v in (0.3, 0.1, 0.1, 0.9,
                                                                      0.05)))):
        mapped = jax.vmap(lambda d: d.logcdf(0.95))(dist)
        np.testing.assert_allclose(mapped, dist.logcdf(0.95), rtol=1e-6)
        placed = jax.device_put(dist, jax.devices()[0])
        assert placed.low == 0.0 and placed.high == 1.0
