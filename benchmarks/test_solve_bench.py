"""pytest-benchmark: 10^6 minimal-N queries per backend and dtype, and the alternatives.

Run with ``python -m pytest benchmarks`` (they are not part of the default test run). The
ratio table of the README comes from ``python benchmarks/ratio_table.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

import optscale
from benchmarks import _workload

Q = _workload.queries()


def _dist(dtype):
    return optscale.TruncatedNormal(*(np.asarray(Q[k], dtype) for k in ("mu", "sigma")))


@pytest.fixture
def jax_dtype(request):
    jax = pytest.importorskip("jax")
    dtype = np.dtype(request.param)
    with jax.enable_x64(dtype == np.float64):
        yield dtype


def _jax_call(dtype, k):
    import jax.numpy as jnp

    d = optscale.TruncatedNormal(*(jnp.asarray(Q[key], dtype) for key in ("mu", "sigma")))
    t, c = jnp.asarray(Q["target"], dtype), jnp.asarray(Q["confidence"], dtype)
    return lambda: optscale.min_samples(d, t, c, k=k).n.block_until_ready()


@pytest.mark.parametrize("jax_dtype", ["float32", "float64"], indirect=True)
@pytest.mark.parametrize("k", [1, 3])
def test_jax_min_samples(benchmark, jax_dtype, k):
    fn = _jax_call(jax_dtype, k)
    fn()  # compile outside the timing
    benchmark.pedantic(fn, rounds=5, iterations=1)


def test_numpy_closed_form(benchmark):
    from optscale import _reference

    d = _dist(np.float64)
    benchmark.pedantic(lambda: _reference.min_samples(d, Q["target"], Q["confidence"]),
                       rounds=3, iterations=1)


def test_scipy_truncnorm_closed_form(benchmark):
    benchmark.pedantic(lambda: _workload.scipy_closed_form(Q), rounds=3, iterations=1)


def test_paper_grid_method_per_query(benchmark):
    rows = list(zip(*(Q[k][:20] for k in ("mu", "sigma", "target", "confidence")), strict=True))
    benchmark.pedantic(lambda: [_workload.grid_method(*r) for r in rows], rounds=1,
                       iterations=1)


@pytest.mark.parametrize("threads", [1, 2])
def test_cython_closed_form(benchmark, threads):
    cython = pytest.importorskip("optscale._cython_backend")
    cython.set_num_threads(threads)
    d = _dist(np.float64)
    try:
        benchmark.pedantic(lambda: cython.min_samples(d, Q["target"], Q["confidence"]),
                           rounds=3, iterations=1)
    finally:
        cython.set_num_threads(2)


# ---------------------------------------------------------------- against what users write

E = _workload.everyday()


def test_naive_numpy_closed_form(benchmark):
    benchmark.pedantic(lambda: _workload.naive_numpy(E), rounds=3, iterations=1)


def test_naive_jax_closed_form_float32(benchmark):
    jnp = pytest.importorskip("jax.numpy")
    naive = _workload.naive_jax()
    args = [jnp.asarray(E[k], jnp.float32) for k in ("mu", "sigma", "target", "confidence")]
    naive(*args).block_until_ready()
    benchmark.pedantic(lambda: naive(*args).block_until_ready(), rounds=5, iterations=1)


@pytest.mark.parametrize("k", [1, 3])
def test_optscale_jax_everyday_float32(benchmark, k):
    jnp = pytest.importorskip("jax.numpy")
    d = optscale.TruncatedNormal(*(jnp.asarray(E[key], jnp.float32) for key in ("mu", "sigma")))
    t, c = jnp.asarray(E["target"], jnp.float32), jnp.asarray(E["confidence"], jnp.float32)

    def fn():
        return optscale.min_samples(d, t, c, k=k).n.block_until_ready()

    fn()
    benchmark.pedantic(fn, rounds=5, iterations=1)


@pytest.mark.parametrize("threads", [1, 2])
def test_cython_everyday(benchmark, threads):
    cython = pytest.importorskip("optscale._cython_backend")
    cython.set_num_threads(threads)
    d = optscale.TruncatedNormal(E["mu"], E["sigma"])
    try:
        benchmark.pedantic(lambda: cython.min_samples(d, E["target"], E["confidence"]),
                           rounds=3, iterations=1)
    finally:
        cython.set_num_threads(2)


def test_numpy_reference_everyday(benchmark):
    from optscale import _reference

    d = optscale.TruncatedNormal(E["mu"], E["sigma"])
    benchmark.pedantic(lambda: _reference.min_samples(d, E["target"], E["confidence"]),
                       rounds=3, iterations=1)
