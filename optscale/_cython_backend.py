"""The Cython CPU backend: compiled kernels (optscale/_fast.pyx) for the hot paths, the NumPy
reference for the rest.

Compiled: log CDF / SF (and cdf, sf), best-of-n and k-of-n probabilities, the expected best,
the lower binomial tail, and every solver (closed form, k-of-N and expected-best bisections,
cost-aware). From the reference: logpdf, quantiles, moments, sampling, fitting, moment matching.
Kernels run over the flat batch with OpenMP threads (``OPTSCALE_NUM_THREADS``, default all
cores; :func:`set_num_threads`), and the wrapper broadcasts the arguments and allocates the
outputs.
"""

from __future__ import annotations

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
    """Broadcast, make contiguous in the kernel dtypes, flatten: (shape, floats, ints)."""
    arrays = np.broadcast_arrays(*(np.asarray(v) for v in (*floats, *ints)))
    shape = arrays[0].shape if arrays else ()
    f = tuple(np.ascontiguousarray(a, dtype).ravel() for a in arrays[:len(floats)])
    i = tuple(np.ascontiguousarray(np.floor(a) if np.asarray(a).dtype.kind == "f" else a,
                                   np.int64).ravel() for a in arrays[len(floats):])
    return shape, f, i


def log_cdf_sf(dist: Any, x: Any) -> tuple[np.ndarray, np.ndarray]:
    dtype = _dtype(*dist.params(), x)
    shape, f, _ = _flat(dtype, (*dist.params(), x))
    lc, ls = np.empty_like(f[0]), np.empty_like(f[0])
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
    out = np.empty_like(f[0])
    _fast.best_of_n_prob(*f, out, _threads)
    return out.reshape(shape)


def k_of_n_prob(dist: Any, target: Any, n: Any, k: Any) -> np.ndarray:
    dtype = _dtype(*dist.params(), target)
    shape, f, _ = _flat(dtype, (*dist.params(), target, n, k))
    out = np.empty_like(f[0])
    _fast.k_of_n_prob(*f, out, _threads)
    return out.reshape(shape)


def log_binom_lower(log_s: Any, log_f: Any, n: Any, k: Any) -> np.ndarray:
    dtype = _dtype(log_f)
    shape, f, _ = _flat(dtype, (log_s, log_f, n, k))
    out = np.empty_like(f[0])
    _fast.log_binom_lower(*f, out, _threads)
    return out.reshape(shape)


def expected_best(dist: Any, n: Any) -> np.ndarray:
    dtype = _dtype(*dist.params(), n)
    shape, f, _ = _flat(dtype, (*dist.params(), n))
    out = np.empty_like(f[0])
    _fast.expected_best(*f, LOG_V, W_V, out, _threads)
    return out.reshape(shape)


def _solution(shape, n, status, achieved) -> Solution:
    return Solution(n.reshape(shape), status.reshape(shape), achieved.reshape(shape))


def min_samples(dist: Any, target: Any, confidence: Any = None, *, k: Any = 1,
                criterion: str = "probability", n_min: Any = 1,
                n_max: Any = N_MAX_DEFAULT) -> Solution:
    """Smallest n in [n_min, n_max] meeting the criterion; see :func:`optscale.min_samples`."""
    if criterion == "probability":
        dtype = _dtype(*dist.params(), target, confidence)
        shape, f, i = _flat(dtype, (*dist.params(), target, confidence), (k, n_min, n_max))
        out = np.empty(f[0].shape, np.int32), np.empty(f[0].shape, np.int32), np.empty_like(f[0])
        _fast.min_samples_probability(*f, *i, *out, _threads)
    elif criterion == "expected":
        dtype = _dtype(*dist.params(), target)
        shape, f, i = _flat(dtype, (*dist.params(), target), (n_min, n_max))
        out = np.empty(f[0].shape, np.int32), np.empty(f[0].shape, np.int32), np.empty_like(f[0])
        _fast.min_samples_expected(*f, *i, LOG_V, W_V, *out, _threads)
    else:
        raise ValueError(f"criterion must be 'probability' or 'expected'; got {criterion!r}")
    return _solution(shape, *out)


def cost_aware_samples(dist: Any, target: Any, cost: Any, *, n_min: Any = 1,
                       n_max: Any = N_MAX_DEFAULT) -> Solution:
    """argmax over n in [n_min, n_max] of P(best of n >= target) - cost * n."""
    dtype = _dtype(*dist.params(), target, cost)
    shape, f, i = _flat(dtype, (*dist.params(), target, cost), (n_min, n_max))
    out = np.empty(f[0].shape, np.int32), np.empty(f[0].shape, np.int32), np.empty_like(f[0])
    _fast.cost_aware_samples(*f, *i, *out, _threads)
    return _solution(shape, *out)
