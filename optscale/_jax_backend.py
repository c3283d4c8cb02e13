"""The JAX backend: the functions of :mod:`optscale._truncnorm`, :mod:`optscale._order_stats`
and :mod:`optscale._solve`, jit-compiled once here so eager calls run as one XLA program.
Calls from inside a user's ``jax.jit`` inline them."""

from __future__ import annotations

import jax

from optscale import _order_stats, _solve, _truncnorm

__all__ = [
    "N_MAX_DEFAULT", "best_of_n_prob", "best_of_n_quantile", "cdf", "cost_aware_samples",
    "expected_best", "icdf", "icdf_log", "isf", "k_of_n_prob", "log_binom_lower", "log_cdf_sf",
    "logcdf", "logpdf", "logsf", "mean", "min_samples", "sample", "sf", "variance",
]

N_MAX_DEFAULT = _solve.N_MAX_DEFAULT

log_cdf_sf = jax.jit(_truncnorm.log_cdf_sf)
logcdf = jax.jit(_truncnorm.logcdf)
logsf = jax.jit(_truncnorm.logsf)
cdf = jax.jit(_truncnorm.cdf)
sf = jax.jit(_truncnorm.sf)
logpdf = jax.jit(_truncnorm.logpdf)
icdf = jax.jit(_truncnorm.icdf)
isf = jax.jit(_truncnorm.isf)
icdf_log = jax.jit(_truncnorm.icdf_log)
mean = jax.jit(_truncnorm.mean)
variance = jax.jit(_truncnorm.variance)
sample = jax.jit(_truncnorm.sample, static_argnums=2)
best_of_n_prob = jax.jit(_order_stats.best_of_n_prob)
best_of_n_quantile = jax.jit(_order_stats.best_of_n_quantile)
k_of_n_prob = jax.jit(_order_stats.k_of_n_prob)
log_binom_lower = jax.jit(_order_stats.log_binom_lower)
expected_best = jax.jit(_order_stats.expected_best)
min_samples = _solve.min_samples
cost_aware_samples = _solve.cost_aware_samples
