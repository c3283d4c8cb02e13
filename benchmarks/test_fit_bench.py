"""pytest-benchmark: fitting 10^5 questions x 16 scores, and scipy L-BFGS-B per question."""

from __future__ import annotations

import numpy as np
import pytest

import optscale
from benchmarks import _workload

X = _workload.fit_problems()


def test_jax_fit_float64(benchmark):
    jax = pytest.importorskip("jax")
    with jax.enable_x64(True):
        x = jax.numpy.asarray(X)
        fn = lambda: optscale.fit_truncnorm(x).mu.block_until_ready()  # noqa: E731
        fn()
        benchmark.pedantic(fn, rounds=3, iterations=1)


def test_numpy_fit_float64_1e4(benchmark):
    from optscale import _backend

    previous = optscale.backend()
    optscale.set_backend("numpy")
    try:
        benchmark.pedantic(lambda: optscale.fit_truncnorm(X[:10_000]), rounds=1, iterations=1)
    finally:
        _backend.set_backend(previous)


def test_scipy_lbfgsb_loop_per_20_questions(benchmark):
    benchmark.pedantic(lambda: [_workload.lbfgsb_fit(x) for x in X[:20]], rounds=1,
                       iterations=1)


def test_fit_agrees_with_lbfgsb():
    """The benchmark compares like with like: same optimum where L-BFGS-B's is interior."""
    x = X[:50]
    fit = optscale.fit_truncnorm(x.astype(np.float64))
    ref = np.array([_workload.lbfgsb_fit(row) for row in x])
    inside = (ref[:, 1] > 1.01e-3) & (ref[:, 0] > -0.99) & (ref[:, 0] < 1.99)
    f = np.asarray(fit.objective, np.float64)
    assert np.all((f <= ref[:, 2] + 1e-6 * np.abs(ref[:, 2]))[inside])
