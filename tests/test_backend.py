"""Backend selection: names, environment variable, and JAX arrays always taking the JAX path."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import optscale


def test_set_backend_validates_the_name():
    with pytest.raises(ValueError, match="backend must be one of"):
        optscale.set_backend("torch")


@pytest.mark.extension
def test_available_backends_are_in_default_order():
    names = optscale.available_backends()
    assert "numpy" in names and list(names) == sorted(names, key=("jax", "cython", "numpy").index)


def test_environment_variable_picks_the_backend():
    env = dict(os.environ, OPTSCALE_BACKEND="numpy")
    code = "import optscale; print(optscale.backend())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "numpy", out.stderr
    env["OPTSCALE_BACKEND"] = "fortran"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0 and "backend must be one of" in out.stderr


def test_numpy_backend_returns_numpy_arrays():
    previous = optscale.backend()
    optscale.set_backend("numpy")
    try:
        sol = optscale.min_samples(optscale.TruncatedNormal(0.8, 0.1), 0.95, 0.9)
        assert isinstance(sol.n, np.ndarray) and optscale.backend() == "numpy"
    finally:
        optscale.set_backend(previous)


def test_jax_arrays_take_the_jax_path_whatever_the_backend():
    jax = pytest.importorskip("jax")
    previous = optscale.backend()
    optscale.set_backend("numpy")
    try:
        d = optscale.TruncatedNormal(jax.numpy.array([0.8, 0.9]), 0.1)
        assert isinstance(d.logcdf(0.9), jax.Array)
        n = jax.jit(lambda m: optscale.min_samples(optscale.TruncatedNormal(m, 0.1), 0.95,
                                                   0.9).n)(jax.numpy.array(0.9))
        assert int(n) == 12
    finally:
        optscale.set_backend(previous)
