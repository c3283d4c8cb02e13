"""Best-of-n, k-of-n and expected-best on every backend: references and Monte Carlo."""

from __future__ import annotations

import mpmath as mp
import numpy as np
import pytest
from scipy import integrate, stats

import optscale
from tests import _oracle
from tests._suite import BackendSuite, as_np, tn

_CASES = [(0.8, 0.1), (0.5, 0.2), (0.95, 0.05), (0.5, 1e-3), (1.5, 0.2), (-2.0, 0.5), (0.3, 5.0)]


def _expected_best_truth(mu, sigma, n):
    """lo + int (1 - F^n) dx by adaptive quadrature, split at quantiles of the best of n."""
    ref = stats.truncnorm(-mu / sigma, (1 - mu) / sigma, loc=mu, scale=sigma)
    cuts = ref.ppf(np.array([1e-9, 0.01, 0.5, 0.99, 1 - 1e-9]) ** (1.0 / n))
    pts = sorted({0.0, 1.0, *[float(c) for c in cuts if 0 < c < 1]})
    total = 0.0
    for a, b in zip(pts[:-1], pts[1:], strict=True):
        total += integrate.quad(lambda x: -np.expm1(n * ref.logcdf(x)), a, b,
                                epsabs=1e-14, epsrel=1e-13, limit=200)[0]
    return total


class OrderStatsSuite(BackendSuite):
    def test_best_of_n_prob_keeps_tiny_probabilities(self, f64):
        # F(t) = 1 - 1e-13: 1 - F^n must not round to 0.
        d = tn(0.2, 0.05)
        t = 0.2 + 0.05 * 7.35
        lc, _ = _oracle.log_cdf_sf(0.2, 0.05, 0.0, 1.0, t)
        for n in (1, 7, 1000):
            want = float(-mp.expm1(n * mp.mpf(lc)))
            assert as_np(optscale.best_of_n_prob(d, t, n)) == pytest.approx(want, rel=1e-11)

    def test_best_of_n_prob_matches_the_power(self, dtype):
        d = tn([0.6, 0.9, 1.2], [0.1, 0.2, 0.3], dtype=dtype)
        t = np.array([0.7, 0.95, 0.99], dtype)
        n = np.array([[1], [4], [32]])
        got = as_np(optscale.best_of_n_prob(d, t, n))
        want = 1 - as_np(d.cdf(t)).astype(np.float64) ** n
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=1e-12 if dtype == np.float64 else 2e-5)

    def test_k_of_n_prob_matches_binomial_tail(self, f64):
        rng = np.random.default_rng(1)
        mu, sigma = rng.uniform(-0.5, 1.5, 60), 10 ** rng.uniform(-1.5, 0.3, 60)
        t, n = rng.uniform(0.3, 0.99, 60), rng.integers(1, 200, 60)
        k = rng.integers(1, 12, 60)
        d = tn(mu, sigma)
        s = as_np(d.sf(t))
        got = as_np(optscale.k_of_n_prob(d, t, n, k))
        want = stats.binom.sf(k - 1, n, s)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-300)
        assert np.all(as_np(optscale.k_of_n_prob(d, t, k - 1, k)) == 0)  # n < k
        np.testing.assert_allclose(as_np(optscale.k_of_n_prob(d, t, n, 1)),
                                   as_np(optscale.best_of_n_prob(d, t, n)), rtol=1e-12)

    def test_expected_best_matches_adaptive_quadrature(self, f64):
        for mu, sigma in _CASES:
            d = tn(mu, sigma)
            for n in (1, 2, 5, 20, 100, 1000):
                want = _expected_best_truth(mu, sigma, n)
                got = float(as_np(optscale.expected_best(d, n)))
                assert got == pytest.approx(want, abs=2e-9), (mu, sigma, n)

    def test_expected_best_of_one_is_the_mean(self, dtype):
        d = tn([0.2, 0.7, 1.3], [0.3, 0.1, 0.4], dtype=dtype)
        np.testing.assert_allclose(as_np(optscale.expected_best(d, 1)), as_np(d.mean),
                                   atol=1e-9 if dtype == np.float64 else 1e-5)

    def test_expected_best_is_increasing_in_n(self, dtype):
        d = tn(0.7, 0.15, dtype=dtype)
        e = as_np(optscale.expected_best(d, np.arange(1, 200)))
        assert np.all(np.diff(e) >= 0) and e[-1] < 1

    def test_best_of_n_quantile_inverts_the_best_of_n_cdf(self, f64):
        d = tn([0.6, 0.9], [0.1, 0.05])
        q = np.array([[1e-6], [0.1], [0.5], [0.99]])
        n = 1000
        x = as_np(optscale.best_of_n_quantile(d, q, n))
        np.testing.assert_allclose(n * as_np(d.logcdf(x)), np.broadcast_to(np.log(q), x.shape),
                                   rtol=1e-9)

    def test_monte_carlo(self):
        d = tn(0.75, 0.12)
        key = 7
        if self.backend == "jax":
            import jax

            key = jax.random.key(7)
        x = as_np(d.sample(key, (20000, 5))).astype(np.float64)
        best = x.max(axis=1)
        se = best.std() / np.sqrt(len(best))
        assert abs(best.mean() - float(as_np(optscale.expected_best(d, 5)))) < 4 * se
        p = float(as_np(optscale.best_of_n_prob(d, 0.9, 5)))
        assert abs((best >= 0.9).mean() - p) < 4 * np.sqrt(p * (1 - p) / len(best))
        k3 = float(as_np(optscale.k_of_n_prob(d, 0.8, 5, 3)))
        frac = ((x >= 0.8).sum(axis=1) >= 3).mean()
        assert abs(frac - k3) < 4 * np.sqrt(k3 * (1 - k3) / len(best))


class TestOrderStatsJax(OrderStatsSuite):
    backend = "jax"


class TestOrderStatsNumpy(OrderStatsSuite):
    backend = "numpy"


class TestOrderStatsCython(OrderStatsSuite):
    backend = "cython"
