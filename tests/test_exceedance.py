"""The distribution-free exceedance bound against Monte Carlo, an mpmath oracle, its own
definition and the Bayesian calibration it promises."""

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optscale import Status, exceedance_min_samples, exceedance_prob


@pytest.mark.parametrize("k,n,m,a,b", [(0, 4, 10, 1, 1), (3, 8, 2, 1, 1), (1, 16, 30, 0.5, 0.5),
                                       (5, 5, 1, 2, 8)])
def test_matches_monte_carlo_of_the_posterior_predictive(k, n, m, a, b):
    rng = np.random.default_rng(0)
    s = rng.beta(a + k, b + n - k, 400_000)
    hit = rng.binomial(m, s) > 0  # at least one of m fresh samples reaches t
    sd = np.sqrt(0.25 / len(s))
    assert exceedance_prob(k, n, m, a, b) == pytest.approx(hit.mean(), abs=4 * sd)


@pytest.mark.parametrize("alpha,beta,m", [(1, 5, 1e6), (0.5, 300.5, 12345), (7, 2, 3),
                                          (1.5, 1e4, 1e9)])
def test_against_mpmath(alpha, beta, m):
    mpmath.mp.dps = 40
    exact = 1 - mpmath.beta(alpha, beta + m) / mpmath.beta(alpha, beta)
    got = exceedance_prob(0, 0, m, alpha, beta)  # nothing observed: the prior is the posterior
    assert got == pytest.approx(float(exact), rel=1e-9)


def test_bayesian_calibration():
    # S ~ prior; k of n peeks reach t; N* fresh samples must reach t with probability >= c
    rng = np.random.default_rng(1)
    a, b, n, c = 2.0, 6.0, 8, 0.9
    s = rng.beta(a, b, 100_000)
    k = rng.binomial(n, s)
    sol = exceedance_min_samples(k, n, c, a, b, n_max=10**6)
    assert np.all(sol.status == Status.OK)
    success = rng.binomial(sol.n, s) > 0
    sd = np.sqrt(c * (1 - c) / len(s))
    assert success.mean() >= c - 4 * sd
    # conditionally on each k as well (the promise is per observation)
    for kk in range(n + 1):
        sel = k == kk
        if sel.sum() > 2000:
            assert success[sel].mean() >= c - 4 * np.sqrt(c * (1 - c) / sel.sum())


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 40), st.integers(0, 40), st.floats(0.01, 0.999),
       st.floats(0.1, 20), st.floats(0.1, 20))
def test_definition_and_monotonicity(k, extra, c, a, b):
    n = k + extra
    sol = exceedance_min_samples(k, n, c, a, b, n_max=10**7)
    assert sol.status == Status.OK
    n_star = int(sol.n)
    assert exceedance_prob(k, n, n_star, a, b) >= c
    if n_star > 1:
        assert exceedance_prob(k, n, n_star - 1, a, b) < c
    # one more hit never asks for more samples; a higher confidence never for fewer
    if extra > 0:
        assert int(exceedance_min_samples(k + 1, n, c, a, b, n_max=10**7).n) <= n_star
    assert int(exceedance_min_samples(k, n, min(c + 0.0005, 0.9995), a, b, n_max=10**7).n) \
        >= n_star


def test_statuses_and_errors():
    sol = exceedance_min_samples([0, 2, 3, 1, 1], [4, 1, 3, 2, 2], [0.99, 0.9, 0.9, 1.0, 0.5],
                                 [1, 1, 1, 1, -1], n_max=10)
    assert list(sol.status) == [Status.INFEASIBLE, Status.INVALID, Status.OK, Status.INVALID,
                                Status.INVALID]
    # 3 of 3 hits, flat prior: P(1 more) = 1 - 1/5 = 0.8 < 0.9, P(2 more) = 1 - 1/15 >= 0.9
    assert list(sol.n[:3]) == [10, 10, 2]
    assert np.isnan(exceedance_prob(2, 1, 3)) and np.isnan(exceedance_prob(0, 1, -1))
    with pytest.raises(ValueError, match="n_max"):
        exceedance_min_samples(0, 1, 0.9, n_max=0)
