"""JAX behaviour, tested rather than assumed: jit, vmap over every argument, no recompilation,
gradients against finite differences, dtype following, and the global x64 flag left alone."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

import optscale  # noqa: E402
from optscale import _jax_backend, _solve  # noqa: E402

TN = optscale.TruncatedNormal


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def test_public_functions_work_inside_a_users_jit():
    @jax.jit
    def plan(mu, sigma, t):
        d = TN(mu, sigma)
        sol = optscale.min_samples(d, t, 0.9, k=2, n_max=10_000)
        return sol.n, optscale.best_of_n_prob(d, t, sol.n), d.logcdf(t), d.icdf(0.5)

    mu, sigma, t = jnp.array([0.6, 0.8]), jnp.array([0.1, 0.2]), jnp.array([0.9, 0.95])
    n, p, lc, med = plan(mu, sigma, t)
    ref = optscale.min_samples(TN(np.asarray(mu), np.asarray(sigma)), np.asarray(t), 0.9, k=2,
                               n_max=10_000)
    np.testing.assert_array_equal(n, ref.n)
    assert np.all(np.asarray(p) >= 0.9)


_ARGS = dict(mu=0.7, sigma=0.15, low=0.0, high=1.0, target=0.9, confidence=0.95, k=2, n_min=1,
             n_max=5000)
_BATCH = dict(mu=[0.5, 0.7, 0.9], sigma=[0.05, 0.15, 0.3], low=[-0.5, 0.0, 0.1],
              high=[1.0, 1.2, 1.5], target=[0.8, 0.9, 0.95], confidence=[0.5, 0.9, 0.99],
              k=[1, 2, 4], n_min=[1, 3, 10], n_max=[100, 5000, 20])


def _solve_one(mu, sigma, low, high, target, confidence, k, n_min, n_max):
    return optscale.min_samples(TN(mu, sigma, low, high), target, confidence, k=k, n_min=n_min,
                              n_max=n_max)


@pytest.mark.parametrize("name", list(_ARGS))
def test_vmap_over_every_argument(name):
    args = {key: jnp.asarray(v) for key, v in _ARGS.items()}
    batch = jnp.asarray(_BATCH[name])
    in_axes = tuple(0 if key == name else None for key in _ARGS)
    mapped = jax.vmap(_solve_one, in_axes=in_axes)(*(batch if key == name else args[key]
                                                     for key in _ARGS))
    for i in range(3):
        one = _solve_one(*(batch[i] if key == name else args[key] for key in _ARGS))
        assert int(mapped.n[i]) == int(one.n) and int(mapped.status[i]) == int(one.status)


def test_vmap_of_distribution_methods():
    mu = jnp.array([0.3, 0.6, 0.9])
    f = jax.vmap(lambda m: (TN(m, 0.1).logcdf(0.5), optscale.expected_best(TN(m, 0.1), 8),
                            optscale.k_of_n_prob(TN(m, 0.1), 0.8, 10, 3)))
    lc, eb, kp = f(mu)
    d = TN(np.asarray(mu), 0.1)
    np.testing.assert_allclose(lc, d.logcdf(0.5), rtol=1e-12)
    np.testing.assert_allclose(eb, optscale.expected_best(d, 8), rtol=1e-12)
    np.testing.assert_allclose(kp, optscale.k_of_n_prob(d, 0.8, 10, 3), rtol=1e-12)


def test_no_recompilation_for_equal_shapes():
    rng = np.random.default_rng(0)

    def call(seed_shift):
        d = TN(jnp.asarray(rng.uniform(0, 1, 64)), jnp.asarray(rng.uniform(0.05, 0.5, 64)))
        t = jnp.asarray(rng.uniform(0.5, 1, 64))
        _solve.min_samples(d, t, 0.9 + seed_shift, k=3, n_max=1000 + int(seed_shift * 1000))
        _solve.min_samples(d, t, criterion="expected", n_max=500)
        _solve.cost_aware_samples(d, t, 0.01 + seed_shift)
        _jax_backend.logcdf(d, t)
        _jax_backend.icdf(d, t)

    jitted = (_solve._log_cdf_sf_packed, _solve._min_samples_probability,
              _solve._min_samples_expected, _solve._cost_aware, _jax_backend.logcdf,
              _jax_backend.icdf)
    call(0)
    sizes = [f._cache_size() for f in jitted]
    call(0.001)  # new values (and Python scalars), same shapes and dtypes
    call(0.002)
    assert sizes == [f._cache_size() for f in jitted]


def _fd(f, x, h):
    return (f(x + h) - f(x - h)) / (2 * h)


@pytest.mark.parametrize("mu,sigma,x", [(0.6, 0.1, 0.75), (1.3, 0.2, 0.8), (-0.4, 0.5, 0.3),
                                        (0.5, 0.02, 0.51), (2.0, 0.1, 0.95)])
def test_gradients_match_finite_differences(mu, sigma, x):
    funcs = {
        "logcdf": lambda m, s: TN(m, s).logcdf(x),
        "logsf": lambda m, s: TN(m, s).logsf(x),
        "best_of_n": lambda m, s: optscale.best_of_n_prob(TN(m, s), x, 16),
        "expected_best": lambda m, s: optscale.expected_best(TN(m, s), 16),
        "icdf": lambda m, s: TN(m, s).icdf(0.3),
        "mean": lambda m, s: TN(m, s).mean,
    }
    for name, f in funcs.items():
        g_mu, g_sigma = jax.grad(f, argnums=(0, 1))(mu, sigma)
        fd_mu = _fd(lambda m, f=f: float(f(m, sigma)), mu, 1e-6 * max(abs(mu), sigma))
        fd_sigma = _fd(lambda s, f=f: float(f(mu, s)), sigma, 1e-6 * sigma)
        assert float(g_mu) == pytest.approx(fd_mu, rel=1e-5, abs=1e-9), name
        assert float(g_sigma) == pytest.approx(fd_sigma, rel=1e-5, abs=1e-9), name
        assert np.isfinite(float(g_mu)) and np.isfinite(float(g_sigma))


def test_gradients_stay_finite_outside_the_support_and_in_tails():
    g = jax.grad(lambda m: TN(m, 0.05).logcdf(0.99) + TN(m, 0.05).logsf(0.2))
    for mu in (-3.0, 0.0, 0.5, 1.0, 4.0):
        assert np.isfinite(float(g(mu)))
    g_out = jax.grad(lambda m: TN(m, 0.1).logcdf(jnp.array([-1.0, 2.0])).sum())
    assert np.isfinite(float(g_out(0.5)))


def test_float32_inputs_stay_float32_with_x64_enabled():
    d = TN(np.float32(0.7), np.float32(0.1))
    t = np.float32(0.9)
    assert d.logcdf(t).dtype == jnp.float32
    assert d.icdf(np.float32(0.3)).dtype == jnp.float32
    assert optscale.expected_best(d, 4).dtype == jnp.float32
    assert optscale.min_samples(d, t, np.float32(0.9)).achieved.dtype == jnp.float32
    assert optscale.min_samples(d, t, criterion="expected").achieved.dtype == jnp.float32
    assert optscale.cost_aware_samples(d, t, np.float32(0.01)).achieved.dtype == jnp.float32


def test_library_never_flips_the_global_x64_flag():
    code = (
        "import jax, numpy as np, optscale\n"
        "d = optscale.TruncatedNormal(np.array([0.6, 0.9]), 0.1)\n"
        "sol = optscale.min_samples(d, np.array([0.95, 0.99]), 0.9, k=2)\n"
        "optscale.expected_best(d, 5); d.icdf(0.5); d.sample(jax.random.key(0), (3,))\n"
        "assert jax.config.jax_enable_x64 is False, 'x64 flipped'\n"
        "assert sol.achieved.dtype == np.float32, sol.achieved.dtype\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_eager_fit_with_shrinking_batch_equals_the_traced_loop():
    # 6,000 questions: the eager loop gathers the last stragglers into a smaller batch; under
    # jit the same steps run in lax.while_loop on the whole batch. Same answers.
    rng = np.random.default_rng(9)
    mu, sigma = rng.uniform(0.5, 1.2, 6000), 10 ** rng.uniform(-1.5, -0.5, 6000)
    d = TN(mu, sigma)
    x = np.array(d.sample(jax.random.key(1), (8,))).T
    x[:200] = 1.0  # a few divergent ones to keep the loop going
    eager = optscale.fit_truncnorm(x)
    traced = jax.jit(lambda s: optscale.fit_truncnorm(s))(jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(eager.status), np.asarray(traced.status))
    np.testing.assert_allclose(np.asarray(eager.objective), np.asarray(traced.objective),
                               rtol=1e-12, atol=1e-12)
    # (XLA rounds the fused and unfused programs differently; in flat valleys that moves the
    # point where Newton stops a little, not the objective)
    np.testing.assert_allclose(np.asarray(eager.mu), np.asarray(traced.mu), rtol=1e-5)
