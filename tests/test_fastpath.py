"""The solvers' fast path: its error bound holds with room, and it changes no answer."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import optscale
from optscale import _backend, _fastpath, _reference
from tests._suite import precision, tn
from tests.test_solve import check_best_of_n_definition, random_queries


def central_queries(count, seed):
    """Central ranges of every kind: wide and narrow sigma, targets anywhere, near the top."""
    rng = np.random.default_rng(seed)
    mu = rng.uniform(-0.2, 1.2, count)
    sigma = 10 ** rng.uniform(-2.5, 0.7, count)
    target = np.where(rng.random(count) < 0.3, 1 - 10 ** rng.uniform(-7, -1, count),
                      rng.uniform(0, 1, count))
    return mu, sigma, target


def everyday(count, seed):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.3, 1.0, count), rng.uniform(0.02, 0.3, count)


def _check_bound(log_f, d, careful, usable):
    sel = usable & np.isfinite(careful) & (careful < 0)
    assert sel.mean() > 0.3
    ratio = np.abs(log_f - careful)[sel] / d[sel]
    # the bound has a safety factor of 4 over what is measured
    assert ratio.max() <= 0.25, ratio.max()


def test_numpy_bound_holds_with_room():
    mu, sigma, target = central_queries(50_000, 0)
    from scipy.special import erfc

    with np.errstate(all="ignore"):
        fast = _fastpath.central_logs(np, erfc, mu, sigma, np.float64(0), np.float64(1), target)
    d = _fastpath.margin(np, fast.log_f, fast.d_log_f, fast.log_size, float(np.finfo(float).eps))
    careful = _reference.logcdf(tn(mu, sigma), target)
    _check_bound(fast.log_f, d, careful, fast.usable)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_jax_bound_holds_with_room(dtype):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    from optscale import _jax_backend, _solve

    mu, sigma, target = central_queries(50_000, 1)
    with jax.enable_x64(dtype == "float64"):
        m, s, t = (jnp.asarray(v, dtype) for v in (mu, sigma, target))
        lo, hi = jnp.asarray(0.0, dtype), jnp.asarray(1.0, dtype)
        err = _solve._LOG1P_ERROR[np.dtype(dtype)]
        fast = jax.jit(lambda m, s, t: _fastpath.central_logs(
            jnp, jax.lax.erfc, m, s, lo, hi, t, log1p_error=err))(m, s, t)
        careful = np.asarray(_jax_backend.logcdf(optscale.TruncatedNormal(m, s), t), np.float64)
    log_f = np.asarray(fast.log_f, np.float64)
    d = _fastpath.margin(np, log_f, np.asarray(fast.d_log_f, np.float64),
                         np.asarray(fast.log_size, np.float64),
                         float(np.finfo(dtype).eps), err)
    _check_bound(log_f, d, careful, np.asarray(fast.usable))


def _workloads(dtype):
    dist, target, conf = random_queries(30_000, 11, dtype)
    mu, sigma = everyday(30_000, 12)
    yield dist, target, conf
    yield tn(mu, sigma, dtype=dtype), np.full(30_000, 0.95, dtype), np.full(30_000, 0.95, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_jax_fast_path_gives_the_careful_answers(dtype):
    jax = pytest.importorskip("jax")
    with jax.enable_x64(dtype == "float64"):
        careful = jax.jit(lambda d, t, c: optscale.min_samples(d, t, c, n_max=10**6))
        for dist, target, conf in _workloads(np.dtype(dtype)):
            d = optscale.TruncatedNormal(*(jax.numpy.asarray(p) for p in dist.params()))
            t, c = jax.numpy.asarray(target), jax.numpy.asarray(conf)
            fast = optscale.min_samples(d, t, c, n_max=10**6)
            want = careful(d, t, c)  # traced: the careful path for every element
            for a, b in zip(fast[:2], want[:2], strict=True):
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
            np.testing.assert_allclose(np.asarray(fast.achieved), np.asarray(want.achieved),
                                       rtol=1e-12 if dtype == "float64" else 1e-4)


@pytest.mark.extension
def test_cpu_fast_paths_agree_with_jax_careful_in_float64():
    jax = pytest.importorskip("jax")
    names = [n for n in ("cython", "numpy") if n in optscale.available_backends()]
    with jax.enable_x64(True):
        careful = jax.jit(lambda d, t, c, k: optscale.min_samples(d, t, c, k=k, n_max=10**6))
        for dist, target, conf in _workloads(np.dtype(np.float64)):
            k = np.random.default_rng(3).integers(1, 4, target.shape)
            for kk in (1, k):
                want = careful(dist, target, conf, kk)
                for name in names:
                    impl = _backend._load(name)
                    if name == "numpy" and np.ndim(kk):
                        continue  # k of N: the reference has no fast path (and is slow)
                    got = impl.min_samples(dist, target, conf, k=kk, n_max=10**6)
                    np.testing.assert_array_equal(np.asarray(got.n), np.asarray(want.n))
                    np.testing.assert_array_equal(np.asarray(got.status),
                                                  np.asarray(want.status))


@pytest.mark.parametrize("name", ["jax", "numpy"])
def test_near_ties_take_the_careful_path(name):
    # log(1 - c) / log F within rounding of an integer: the answer must still satisfy the
    # definition with the backend's own (careful) log F. (Not Cython: at exact ties its
    # compiled fix-up rounds differently from NumPy's evaluation of the definition, with or
    # without the fast path.)
    if name not in optscale.available_backends():
        pytest.skip(f"no {name} backend")
    impl = _backend._load(name)
    mu, sigma = everyday(20_000, 5)
    d = tn(mu, sigma)
    log_f = _reference.logcdf(d, 0.95)
    n = np.random.default_rng(5).integers(2, 5000, 20_000)
    conf = -np.expm1(n * log_f)
    ok = (conf > 0) & (conf < 1)
    d, conf, target = tn(mu[ok], sigma[ok]), conf[ok], np.full(ok.sum(), 0.95)
    with precision(name, np.float64):
        sol = impl.min_samples(d, target, conf, n_max=10**6)
        xp = np if name != "jax" else __import__("jax.numpy").numpy
        ok = check_best_of_n_definition(impl, xp, d, target, conf, sol, 1, 10**6)
    assert ok.mean() > 0.9


_SHARDED = """
import jax, jax.numpy as jnp, numpy as np, optscale
from jax.sharding import NamedSharding, PartitionSpec as P
assert jax.device_count() == 4
mesh = jax.make_mesh((4,), ("q",))
spec = NamedSharding(mesh, P("q"))
rng = np.random.default_rng(0)
mu = jax.device_put(jnp.asarray(rng.uniform(0.3, 1.0, 4096), jnp.float32), spec)
sigma = jax.device_put(jnp.asarray(rng.uniform(0.02, 0.3, 4096), jnp.float32), spec)
sol = optscale.min_samples(optscale.TruncatedNormal(mu, sigma), 0.95, 0.95)
assert len(sol.n.sharding.device_set) == 4, sol.n.sharding
one = optscale.min_samples(optscale.TruncatedNormal(np.asarray(mu), np.asarray(sigma)),
                           np.float32(0.95), np.float32(0.95))
assert np.array_equal(np.asarray(sol.n), np.asarray(one.n))
print("ok")
"""


def test_sharded_inputs_stay_sharded():
    pytest.importorskip("jax")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", _SHARDED], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


_LAZY = """
import sys, optscale
assert "jax" not in sys.modules, "import optscale imported jax"
import jax, jax.numpy as jnp
d = optscale.TruncatedNormal(jnp.asarray([0.9, 0.8]), jnp.asarray([0.1, 0.1]))
assert float(jax.jit(lambda d: d.mu.sum())(d)) > 1.69
assert float(jax.jit(lambda b: b.a + b.b)(optscale.Beta(jnp.asarray(2.0), 3.0))) == 5.0
n = jax.jit(lambda d: optscale.min_samples(d, 0.95, 0.9).n)(d)
assert n.tolist() == [12, 50], n
print("ok")
"""


def test_concrete_inputs_inside_a_callers_jit_take_the_traced_path():
    """A caller's jit closing over concrete arrays: no host step can run there, so the
    program takes the traced path. (XLA may fold the constants at compile time with its own
    special functions, so a near-tie may round the other way.)"""
    jax = pytest.importorskip("jax")
    mu, sigma = everyday(5000, 18)
    d = tn(mu, sigma, dtype=np.float32)
    t = np.full(5000, 0.95, np.float32)
    for conf, kw in ((t, dict(k=1)), (t, dict(k=3)), (None, dict(criterion="expected"))):
        want = optscale.min_samples(d, t, conf, **kw)
        got = jax.jit(lambda conf=conf, kw=kw: optscale.min_samples(d, t, conf, **kw))()
        for a, b in zip(got[:2], want[:2], strict=True):
            assert np.mean(np.asarray(a) == np.asarray(b)) > 0.999


def test_import_optscale_leaves_jax_alone_and_pytrees_still_work():
    pytest.importorskip("jax")
    out = subprocess.run([sys.executable, "-c", _LAZY], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_float64_numpy_on_jax_without_x64_warns_once(monkeypatch):
    jax = pytest.importorskip("jax")
    monkeypatch.setattr(_backend, "_warned", False)
    previous = optscale.backend()
    optscale.set_backend("jax")
    try:
        d = tn([0.9, 0.8], [0.1, 0.2])
        with jax.enable_x64(False):
            with pytest.warns(_backend.Float32Warning, match="x64"):
                optscale.min_samples(d, 0.95, 0.9)
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                optscale.min_samples(d, 0.95, 0.9)  # once only
        monkeypatch.setattr(_backend, "_warned", False)
        with jax.enable_x64(True), warnings.catch_warnings():
            warnings.simplefilter("error")
            assert np.asarray(optscale.min_samples(d, 0.95, 0.9).achieved).dtype == np.float64
    finally:
        optscale.set_backend(previous)


# ---------------------------------------------------------------- the JAX solvers' bound


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_best_logs_bound_holds_with_room(dtype):
    """The JAX kernel's margin (:func:`_fastpath.best_logs`, the tighter float32 bound where
    erfc values are shared included) with the same safety factor of 4; where it claims d = 0
    (F within rounding of 1, x outside the range) its log F is the careful one exactly."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    from optscale import _jax_backend, _solve, _solve_fast

    mu_c, sigma_c, target_c = central_queries(100_000, 2)
    mu_e, sigma_e = everyday(100_000, 3)
    mu, sigma = np.concatenate([mu_c, mu_e]), np.concatenate([sigma_c, sigma_e])
    target = np.concatenate([target_c, np.full(100_000, 0.95)])
    with jax.enable_x64(dtype == "float64"):
        m, s, t = (jnp.asarray(v, dtype) for v in (mu, sigma, target))
        lo, hi = jnp.asarray(0.0, dtype), jnp.asarray(1.0, dtype)
        err = _solve._LOG1P_ERROR[np.dtype(dtype)]
        zero = _solve_fast.exp_zero(dtype)
        shared = _solve_fast._SHARED[np.dtype(dtype)]
        fast = jax.jit(lambda m, s, t: _fastpath.best_logs(
            jnp, jax.lax.erfc, jax.lax.erf if shared else None, m, s, lo, hi, t,
            log1p_error=err, careful_log1p_error=err, shared=shared, exp_zero=zero))(m, s, t)
        careful = np.asarray(_jax_backend.logcdf(optscale.TruncatedNormal(m, s), t), np.float64)
    log_f, d, usable = (np.asarray(v) for v in fast)
    log_f, d = log_f.astype(np.float64), d.astype(np.float64)
    exact = usable & (d == 0)
    assert exact.sum() > 1000
    np.testing.assert_array_equal(log_f[exact], careful[exact])
    _check_bound(log_f, d, careful, usable & (d > 0))


def test_float32_erfc_tails_are_the_careful_paths_own():
    """The premise of the shared bound: for 1 <= u < 10 the careful path's log Phi(-u) is
    the log of the very erfc value the kernel computes (float32; jax's log_ndtr)."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    from optscale import _special

    u = jnp.asarray(np.random.default_rng(4).uniform(1.0, 10.0, 1_000_000), jnp.float32)
    kernel = jax.jit(lambda u: jnp.log(0.5 * jax.lax.erfc(u * _fastpath.SQRT_HALF)))(u)
    careful = jax.jit(lambda u: _special.tail_point(u)[0])(u)
    np.testing.assert_array_equal(np.asarray(kernel), np.asarray(careful))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_exp_is_zero_below_the_probed_threshold(dtype):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    from optscale import _solve_fast

    with jax.enable_x64(dtype == "float64"):
        x0 = _solve_fast.exp_zero(dtype)
        assert x0 is not None and x0 < np.log(np.finfo(dtype).tiny) + 1.0
        x = np.concatenate([np.linspace(x0, 3 * x0, 100_001), [-1e30, -np.inf]]).astype(dtype)
        assert not np.any(np.asarray(jax.jit(jnp.exp)(jnp.asarray(x))))


@pytest.mark.parametrize("dtype,most", [("float32", 0.95), ("float64", 0.98)])
def test_jax_fast_path_decides_most_everyday_queries(dtype, most):
    """A guard on the speed: the kernel leaves few everyday queries to the careful path
    (float32: the large n that float32 cannot settle; before the tighter bound, 10%)."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    from optscale import _solve_fast

    mu, sigma = everyday(200_000, 7)
    with jax.enable_x64(dtype == "float64"):
        d = optscale.TruncatedNormal(jnp.asarray(mu, dtype), jnp.asarray(sigma, dtype))
        t = jnp.full(200_000, 0.95, dtype)
        code = _solve_fast._best_kernel(d, t, t, n_min=1, n_max=65536,
                                        zero=_solve_fast.exp_zero(dtype))
    assert np.mean(~np.isnan(np.asarray(code))) >= most


# ---------------------------------------------------------------- k of N, expected best


def _bisection_k_of_n(dist, target, conf, k, n_max):
    """The k-of-N answers by plain bisection over the careful cond (the former solver)."""
    import jax.numpy as jnp

    from optscale import _jax_backend, _order_stats, _solve

    log_f, log_s = (jnp.asarray(v) for v in _jax_backend.log_cdf_sf(dist, target))
    dtype = log_f.dtype
    kf = jnp.asarray(k, dtype)
    log1mc = jnp.log1p(-jnp.asarray(conf, dtype))
    never = ~(log_f < 0)
    lf, ls = jnp.where(never, -1.0, log_f), log_s

    def cond(n):
        return _order_stats.log_binom_lower(ls, lf, n, kf) <= log1mc

    n_hi = jnp.asarray(float(n_max), dtype)
    lo = jnp.maximum(_solve._ceil_exact(lf, log1mc), kf)
    ok_hi = cond(jnp.full(lo.shape, n_hi))
    n = _solve._bisect(cond, jnp.where(ok_hi & (lo <= n_hi), lo, n_hi), n_hi, lo.shape)
    return np.where(np.asarray(ok_hi & ~never & (lo <= n_hi)), np.asarray(n), -1)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_k_of_n_guess_gives_the_bisection_answers(dtype):
    """The Newton guess confirmed by two evaluations (and the near-ties bisected on a
    gathered subset) lands on the very n the plain bisection finds, for a static k (an
    unrolled sum) and per-element k, concrete and traced."""
    jax = pytest.importorskip("jax")
    with jax.enable_x64(dtype == "float64"):
        dist, target, conf = random_queries(40_000, 13, np.dtype(dtype))
        mu, sigma = everyday(40_000, 14)
        dist = tn(np.concatenate([dist.mu, mu]), np.concatenate([dist.sigma, sigma]),
                  dtype=dtype)
        target = np.concatenate([target, np.full(40_000, 0.95, dtype)])
        conf = np.concatenate([conf, np.full(40_000, 0.95, dtype)])
        ks = np.random.default_rng(15).integers(1, 7, 80_000)
        traced = jax.jit(lambda d, t, c, k: optscale.min_samples(d, t, c, k=k, n_max=10**5))
        for k in (3, ks):
            want = _bisection_k_of_n(dist, target, conf, k, 10**5)
            for sol in (optscale.min_samples(dist, target, conf, k=k, n_max=10**5),
                        traced(dist, target, conf, k)):
                n, status = np.asarray(sol.n), np.asarray(sol.status)
                ok = status == 0
                assert ok.mean() > 0.5
                np.testing.assert_array_equal(n[ok], want[ok])
                assert np.all(want[status == 2] == -1)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_log_binom_lower_unrolled_is_the_loop_bit_for_bit(dtype):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    from optscale import _order_stats

    rng = np.random.default_rng(16)
    s = 10 ** rng.uniform(-8, -0.01, 200_000)
    with jax.enable_x64(dtype == "float64"):
        ls, lf = jnp.asarray(np.log(s), dtype), jnp.asarray(np.log1p(-s), dtype)
        n = jnp.asarray(rng.integers(1, 10**6, 200_000), dtype)
        k = jnp.asarray(rng.integers(1, 9, 200_000), dtype)
        loop = jax.jit(_order_stats.log_binom_lower)(ls, lf, n, k)
        unrolled = jax.jit(lambda *a: _order_stats.log_binom_lower(*a, k_max=8))(ls, lf, n, k)
    np.testing.assert_array_equal(np.asarray(loop), np.asarray(unrolled))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_expected_best_concrete_and_traced_agree(dtype):
    jax = pytest.importorskip("jax")
    with jax.enable_x64(dtype == "float64"):
        dist, target, _ = random_queries(3000, 17, np.dtype(dtype))
        target = np.where(target < 0.05, target + 0.05, target).astype(dtype)
        fast = optscale.min_samples(dist, target, criterion="expected", n_max=3000)
        traced = jax.jit(lambda d, t: optscale.min_samples(d, t, criterion="expected",
                                                           n_max=3000))(dist, target)
    for a, b in zip(fast[:2], traced[:2], strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_allclose(np.asarray(fast.achieved), np.asarray(traced.achieved),
                               rtol=8 * np.finfo(dtype).eps)
