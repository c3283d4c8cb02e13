"""The Cython CPU backend: compiled kernels (optscale/_fast.pyx) for the hot paths, the NumPy
reference for the rest.

Compiled: log CDF / SF (and cdf, sf), best-of-n and k-of-n probabilities, the expected best,
the lower binomial tail, and every solver (closed form, k-of-N and expected-best bisections,
cost-aware). From the reference: logpdf, quantiles, moments, sampling, fitting, moment matching.
Kernels run over the flat batch with OpenMP threads (``OPTSCALE_NUM_THREADS``, default all
cores; :func:`set_num_threads`); the wrapper passes arguments of one value as stride-0 views (no
broadcast copies) and allocates the outputs.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from optscale import _fast
from optscale._checks import N_MAX_DEFAULT
from optscale._quadrature import LOG_V, W_V
from optscale._reference import (  # noqa: F401  (re-exported: same API as every backend)
    best_of_n_quantile,
    fit_truncnorm,
    icdf,
    icdf_log,
    isf,
    logpdf,
    mean,
    sample,
    truncnorm_from_moments,
    variance,
)
from optscale._solution import Solution

__all__ = [
    "N_MAX_DEFAULT", "best_of_n_prob", "best_of_n_quantile", "cdf", "cost_aware_samples",
    "expected_best", "fit_truncnorm", "icdf", "icdf_log", "isf", "k_of_n_prob",
    "log_binom_lower", "log_cdf_sf", "logcdf", "logpdf", "logsf", "mean", "min_samples",
    "sample", "set_num_threads", "sf", "truncnorm_from_moments", "variance",
]

# The expected-best search guesses n with an 8-node version of the quadrature rule (same
# substitution as optscale._quadrature); only the full rule decides.
_U8, _W8 = np.polynomial.legendre.leggauss(8)
_U8, _W8 = 0.5 * (_U8 + 1.0), 0.5 * _W8
_DEN8 = _U8**3 + (1.0 - _U8) ** 3
GUIDE_V = np.ascontiguousarray(3.0 * np.log(_U8) - np.log(_DEN8))
GUIDE_W = _W8 * 3.0 * (_U8 * (1.0 - _U8)) ** 2 / _DEN8**2
GUIDE_W = np.ascontiguousarray(GUIDE_W / GUIDE_W.sum())

_threads = int(os.environ.get("OPTSCALE_NUM_THREADS", "0")) or (os.cpu_count() or 1)


def set_num_threads(n: int) -> None:
    """Threads the kernels use (1 = serial)."""
    global _threads
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer; got {n!r}")
    _threads = n


def _dtype(*xs: Any) -> np.dtype:
    # Python scalars stay weakly typed (NEP 50), as on the other backends: 0.95 does not
    # promote a float32 batch
    dtype = np.result_type(*(x if isinstance(x, (int, float)) else np.asarray(x) for x in xs))
    return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)


def _flat(dtype: np.dtype, floats: tuple, ints: tuple = ()) -> tuple:
    """Broadcast and flatten in the kernel dtypes: (shape, floats, ints). Arguments that are one
    value (a scalar bound, a common target) become stride-0 views, and arrays of the full shape
    in the kernel dtype are used in place: the kernels read any stride, so nothing is copied
    but arguments broadcast along some axes only."""
    arrays = [np.asarray(v) for v in (*floats, *ints)]
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    size = math.prod(shape)

    def flat(a: np.ndarray, kind: type) -> np.ndarray:
        if kind is np.int64 and a.dtype.kind == "f":
            a = np.floor(a)
        a = np.asarray(a, kind)
        if a.size == 1:
            return np.broadcast_to(a.reshape(1), (size,))
        return np.ascontiguousarray(np.broadcast_to(a, shape)).reshape(size)

    f = tuple(flat(a, dtype) for a in arrays[:len(floats)])
    i = tuple(flat(a, np.int64) for a in arrays[len(floats):])
    return shape, f, i


def log_cdf_sf(dist: Any, x: Any) -> tuple[np.ndarray, np.ndarray]:
    dtype = _dtype(*dist.params(), x)
    shape, f, _ = _flat(dtype, (*dist.params(), x))
    lc, ls = np.empty(f[0].shape, f[0].dtype), np.empty(f[0].shape, f[0].dtype)
    _fast.log_cdf_sf(*f, lc, ls, _threads)
    return lc.reshape(shape), ls.reshape(shape)


def logcdf(dist: Any, x: Any) -> np.ndarray:
    return log_cdf_sf(dist, x)[0]


def logsf(dist: Any, x: Any) -> np.ndarray:
    return log_cdf_sf(dist, x)[1]


def cdf(dist: Any, x: Any) -> np.ndarray:
    return np.exp(logcdf(dist, x))


def sf(dist: Any, x: Any) -> np.ndarray:
    return np.exp(logsf(dist, x))


def best_of_n_prob(dist: Any, target: Any, n: Any) -> np.ndarray:
    dtype = _dtype(*dist.params(), target)
    shape, f, _ = _flat(dtype, (*dist.params(), target, n))
    out = np.empty(f[0].shape, f[0].dtype)
    _fast.best_of_n_prob(*f, out, _threads)
    return out.reshape(shape)


def k_of_n_prob(dist: Any, target: Any, n: Any, k: Any) -> np.ndarray:
    dtype = _dtype(*dist.params(), target)
    shape, f, _ = _flat(dtype, (*dist.params(), target, n, k))
    out = np.empty(f[0].shape, f[0].dtype)
    _fast.k_of_n_prob(*f, out, _threads)
    return out.reshape(shape)


def log_binom_lower(log_s: Any, log_f: Any, n: Any, k: Any) -> np.ndarray:
    dtype = _dtype(log_f)
    shape, f, _ = _flat(dtype, (log_s, log_f, n, k))
    out = np.empty(f[0].shape, f[0].dtype)
    _fast.log_binom_lower(*f, out, _threads)
    return out.reshape(shape)


def expected_best(dist: Any, n: Any) -> np.ndarray:
    dtype = _dtype(*dist.params(), n)
    shape, f, _ = _flat(dtype, (*dist.params(), n))
    out = np.empty(f[0].shape, f[0].dtype)
    _fast.expected_best(*f, LOG_V, W_V, out, _threads)
    return out.reshape(shape)


def _outputs(like: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The solvers' n, status and achieved arrays for inputs like ``like``."""
    return np.empty(like.shape, np.int32), np.empty(like.shape, np.int32), np.empty(
        like.shape, like.dtype)


def _solution(shape, n, status, achieved) -> Solution:
    return Solution(n.reshape(shape), status.reshape(shape), achieved.reshape(shape))


def min_samples(dist: Any, target: Any, confidence: Any = None, *, k: Any = 1,
                criterion: str = "probability", n_min: Any = 1,
                n_max: Any = N_MAX_DEFAULT) -> Solution:
    """Smallest n in [n_min, n_max] meeting the criterion; see :func:`optscale.min_samples`."""
    if criterion == "probability":
        dtype = _dtype(*dist.params(), target, confidence)
        shape, f, i = _flat(dtype, (*dist.params(), target, confidence), (k, n_min, n_max))
        out = _outputs(f[0])
        _fast.min_samples_probability(*f, *i, *out, _threads)
    elif criterion == "expected":
        dtype = _dtype(*dist.params(), target)
        shape, f, i = _flat(dtype, (*dist.params(), target), (n_min, n_max))
        out = _outputs(f[0])
        _fast.min_samples_expected(*f, *i, LOG_V, W_V, GUIDE_V, GUIDE_W, *out, _threads)
    else:
        raise ValueError(f"criterion must be 'probability' or 'expected'; got {criterion!r}")
    return _solution(shape, *out)


def cost_aware_samples(dist: Any, target: Any, cost: Any, *, n_min: Any = 1,
                       n_max: Any = N_MAX_DEFAULT) -> Solution:
    """argmax over n in [n_min, n_max] of P(best of n >= target) - cost * n."""
    dtype = _dtype(*dist.params(), target, cost)
    shape, f, i = _flat(dtype, (*dist.params(), target, cost), (n_min, n_max))
    out = _outputs(f[0])
    _fast.cost_aware_samples(*f, *i, *out, _threads)
    return _solution(shape, *out)
