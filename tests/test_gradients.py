"""Gradients inside JAX programs (issue 16): finite wherever the value is finite, zero for
INVALID elements, equal to finite differences; reverse mode through k-of-N, the solvers'
achieved probability, the Beta's shape parameters, the relaxed N* and the fits (implicit
differentiation, checked against differentiating an unrolled Newton solve).

The grid here is small (compile time dominates); ``benchmarks/gradient_health.py`` runs the
issue's 6,161-point grid and every case.
"""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

import optscale  # noqa: E402
from benchmarks import gradient_health as gh  # noqa: E402
from optscale import relaxed_min_samples  # noqa: E402

TN = optscale.TruncatedNormal

# the cases whose machinery covers the rest (best_of_n_prob and logsf share logcdf's, icdf is
# best_of_n_quantile with n = 1, k_of_n_prob is inside the achieved probability for k = 2)
_GRID_CASES = ("logcdf", "logpdf", "expected_best", "best_of_n_quantile",
               "min_samples(k=2).achieved")


@pytest.mark.parametrize("x64", [False, True], ids=["float32", "float64"])
def test_no_nan_gradient_where_the_value_is_finite(x64):
    cases = gh.cases()
    with jax.enable_x64(x64):
        dtype = np.float64 if x64 else np.float32
        for name in _GRID_CASES:
            f, extra = cases[name]
            edges = list(gh.EDGES.get(name, ()))
            out = gh.health(f, extra, (5, 6), dtype, edges=edges, fd=x64)
            assert out["finite"] > 0, name
            assert out["share"] == 0.0, (name, out)
            assert out["edges_finite"] >= len(edges) - 1, (name, out)  # log F(low) = -inf
            assert out["edges_bad"] == 0, (name, out)
            assert out["invalid_nonzero"] == 0, (name, out)
            if x64:  # the gradient is the derivative of the value computed
                assert out["fd_error"] < 1e-5, (name, out)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


@pytest.mark.usefixtures("x64")
def test_reverse_mode_through_k_of_n_and_the_relaxed_n_star():
    cases = gh.cases()
    for name in ("k_of_n_prob", "relaxed_min_samples"):
        f, extra = cases[name]
        out = gh.health(f, extra, (3, 4), np.float64, fd=True)
        assert out["share"] == 0.0 and out["invalid_nonzero"] == 0, (name, out)
        assert out["fd_error"] < 1e-6, (name, out)
    # the relaxation is what the integer N* rounds up, and shrinks as mu grows
    d = TN(0.9, 0.1)
    assert float(relaxed_min_samples(d, 0.95, 0.9)) <= int(optscale.min_samples(d, 0.95,
                                                                                  0.9).n)
    assert float(jax.grad(lambda m: relaxed_min_samples(TN(m, 0.1), 0.95, 0.9))(0.9)) < 0


@pytest.mark.usefixtures("x64")
def test_beta_shape_parameters_have_a_derivative():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 30
    for a, b, x in [(9.0, 1.0, 0.9), (2.0, 3.0, 0.3), (0.5, 0.7, 0.8), (50.0, 3.0, 0.97),
                    (300.0, 400.0, 0.42)]:
        g = jax.grad(lambda a, b, x=x: optscale.Beta(a, b).logcdf(x), argnums=(0, 1))(a, b)

        def log_i(a, b, x=x):
            return mpmath.log(mpmath.betainc(a, b, 0, x, regularized=True))

        truth = (mpmath.diff(lambda v, b=b: log_i(v, b), a),
                 mpmath.diff(lambda v, a=a: log_i(a, v), b))
        np.testing.assert_allclose(np.asarray(g, np.float64), np.asarray(truth, np.float64),
                                   rtol=1e-7)


def _unrolled_newton_fit(x, mask, prior=None, steps=3):
    """The truncated-normal optimum by plain Newton steps in (mu, log sigma) from the fit's
    own optimum, every step differentiated (what the implicit derivative replaces); for
    interior optima only. The start is a constant; the steps are one jitted program."""
    start = optscale.fit_truncnorm(jax.lax.stop_gradient(x), mask, prior=None if prior is None
                                   else jax.lax.stop_gradient(prior))
    return _newton_steps(x, mask, prior, start.mu, jnp.log(start.sigma), steps)


@jax.jit
def _newton_steps(x, mask, prior, mu, rho, steps=3):
    from optscale import _fit
    from optscale._jax_backend import _OPS

    zeros, ones = jnp.zeros(len(x)), jnp.ones(len(x))
    n, mean, ss, _ = _fit.sufficient_stats(jnp, x, mask, zeros, ones, False)
    pr = None if prior is None else (prior[0], prior[1], 0.1 + zeros, 0.1 + zeros)
    for _ in range(3):
        _, g1, g2, h11, h12, h22 = _fit.objective_derivatives(_OPS, (n, mean, ss), mu, rho,
                                                              zeros, ones, pr)
        det = h11 * h22 - h12 * h12
        mu, rho = mu - (h22 * g1 - h12 * g2) / det, rho - (h11 * g2 - h12 * g1) / det
    return mu, jnp.exp(rho)


@pytest.mark.usefixtures("x64")
def test_fit_implicit_gradient_equals_the_unrolled_newton_solve():
    rng = np.random.default_rng(3)
    x = np.clip(rng.normal(0.8, 0.08, (6, 8)), 0.01, 0.99)
    mask = rng.random((6, 8)) > 0.2
    x[4] = 0.8  # all scores equal: no interior optimum, the fit ends on the box (BOUNDARY)
    mask[5] = False  # no scores: INVALID
    x, mask = jnp.asarray(x), jnp.asarray(mask)
    inner = np.arange(4)
    prior = (jnp.asarray(rng.uniform(0.7, 0.9, 6)), jnp.asarray(rng.uniform(0.05, 0.15, 6)))
    w_mu, w_sigma = (jnp.asarray(rng.normal(size=6)) for _ in range(2))

    # one reverse pass each (a random weighting of the outputs) keeps the compile small;
    # questions are independent, so row b of the gradient is that of question b's outputs
    def implicit(x, m0):
        f = optscale.fit_truncnorm(x, mask, prior=None if m0 is None else (m0, prior[1]))
        return jnp.sum(w_mu * f.mu + w_sigma * f.sigma + f.objective)

    def unrolled(x, m0):
        pr = None if m0 is None else (m0, prior[1])
        mu, sigma = _unrolled_newton_fit(x, mask, pr)
        objective = optscale.fit_truncnorm(x, mask, prior=pr).objective
        return jnp.sum((w_mu * mu + w_sigma * sigma + objective)[inner])

    status = np.asarray(optscale.fit_truncnorm(x, mask).status)
    np.testing.assert_array_equal(status, [0, 0, 0, 0, optscale.FitStatus.BOUNDARY,
                                           optscale.FitStatus.INVALID])
    for m0 in (None, prior[0]):
        argnums = 0 if m0 is None else (0, 1)
        # MLE eagerly, MAP inside jit (the derivative in the prior's mean too)
        grad = jax.grad(implicit, argnums=argnums)
        g_imp = grad(x, m0) if m0 is None else jax.jit(grad)(x, m0)
        g_unr = jax.grad(unrolled, argnums=argnums)(x, m0)
        # (the solve stops at its tolerance; the unrolled steps go on to rounding: in a flat
        # valley that moves the Hessian, and the derivative, by ~1e-6)
        # (rows 4 and 5 have no interior optimum for the unrolled steps to converge to)
        for a, b in zip(jax.tree_util.tree_leaves(g_imp), jax.tree_util.tree_leaves(g_unr),
                        strict=True):
            np.testing.assert_allclose(np.asarray(a)[inner], np.asarray(b)[inner], rtol=1e-5,
                                       atol=1e-9)
        # every row finite; masked-out scores and the INVALID question get 0; on the box
        # only sigma moves (mu stays on its bound): the derivative of the constrained optimum
        g = np.asarray(jax.tree_util.tree_leaves(g_imp)[0])
        m = np.asarray(mask)
        assert np.all(np.isfinite(g)) and np.all(g[~m] == 0.0) and np.all(g[m] != 0.0)


@pytest.mark.usefixtures("x64")
def test_beta_fit_implicit_gradient_equals_unrolled_newton():
    from optscale._beta import _objective, beta_stats
    from optscale._family import _jax_xp

    xp = _jax_xp()
    rng = np.random.default_rng(0)
    x = jnp.asarray(np.clip(rng.beta(8, 2, (3, 12)), 0.0, 1.0))
    zeros, ones = jnp.zeros(3), jnp.ones(3)
    w = jnp.asarray(rng.normal(size=(2, 3)))

    @jax.jit  # the steps, from the fit's own optimum (a constant)
    def steps(s, th):
        def obj(t, row):
            c, s1, s2 = beta_stats(xp, row[None], jnp.ones((1, 12), bool), zeros[:1],
                                   ones[:1], None, 0.0, 1e-4)
            return _objective(xp, t[0], t[1], c[0], s1[0], s2[0])

        for _ in range(3):
            g, h = jax.vmap(jax.grad(obj))(th, s), jax.vmap(jax.hessian(obj))(th, s)
            th = th - jnp.linalg.solve(h, g[..., None])[..., 0]
        return jnp.sum(w.T * th)

    fit = optscale.fit_family("beta", x)
    start = jnp.stack([fit.dist.a, fit.dist.b], -1)

    def unrolled(s):
        return steps(s, start)

    def implicit(s):
        d = optscale.fit_family("beta", s).dist
        return jnp.sum(w[0] * d.a + w[1] * d.b)

    np.testing.assert_allclose(jax.grad(implicit)(x), jax.grad(unrolled)(x), rtol=1e-5,
                               atol=1e-8)
    # (the mixture's, by EM, is checked in benchmarks/gradient_health.py --fits: its
    # second-order program takes ~15 s to compile)
