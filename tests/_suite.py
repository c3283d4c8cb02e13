"""Shared test machinery: every backend runs the same test classes, in float32 and float64.

JAX computes in float64 only with x64 enabled; the float64 fixture enables it for the duration of
one test (a scoped context, never the global flag, which the library itself must not touch).
"""

from __future__ import annotations

import contextlib
import importlib
import os

import numpy as np
import pytest

import optscale

SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


@contextlib.contextmanager
def precision(backend: str, dtype: np.dtype):
    """Make `dtype` computable on `backend` (JAX needs x64 for float64)."""
    if backend == "jax" and np.dtype(dtype) == np.float64:
        import jax

        with jax.enable_x64(True):
            yield
    else:
        yield


class BackendSuite:
    """Base for shared test classes; subclasses set ``backend``."""

    backend: str = "numpy"

    @pytest.fixture(autouse=True)
    def _use_backend(self):
        if self.backend not in optscale.available_backends():
            pytest.skip(f"the {self.backend} backend is not available (not installed or built)")
        previous = optscale.backend()
        optscale.set_backend(self.backend)
        yield
        optscale.set_backend(previous)

    @pytest.fixture
    def impl(self):
        """The backend module itself (same function names as the public API)."""
        return importlib.import_module(optscale._backend._MODULES[self.backend])

    @pytest.fixture
    def xp(self):
        """The backend's own log/log1p: definitions are checked with them, since they may
        differ by an ulp (XLA's are not correctly rounded; the Cython kernels take logs in double
        and round to float32, NumPy's float32 log is its own)."""
        if self.backend == "jax":
            import jax.numpy as jnp

            return jnp
        if self.backend == "cython":
            return _DoubleThenRound
        return np

    @pytest.fixture(params=["float32", "float64"])
    def dtype(self, request):
        dtype = np.dtype(request.param)
        with precision(self.backend, dtype):
            yield dtype

    @pytest.fixture
    def f64(self):
        with precision(self.backend, np.float64):
            yield np.dtype(np.float64)


class _DoubleThenRound:
    """log and log1p evaluated in float64 and rounded to the input's dtype."""

    asarray = staticmethod(np.asarray)

    @staticmethod
    def log(x):
        x = np.asarray(x)
        return np.log(x.astype(np.float64)).astype(x.dtype)

    @staticmethod
    def log1p(x):
        x = np.asarray(x)
        return np.log1p(x.astype(np.float64)).astype(x.dtype)


def tn(mu, sigma, low=0.0, high=1.0, dtype=np.float64) -> optscale.TruncatedNormal:
    """A TruncatedNormal with every parameter as a `dtype` array."""
    cast = lambda v: np.asarray(v, dtype)  # noqa: E731
    return optscale.TruncatedNormal(cast(mu), cast(sigma), cast(low), cast(high))


def as_np(x) -> np.ndarray:
    return np.asarray(x)
