"""The JAX backend: the functions of :mod:`optscale._truncnorm`, :mod:`optscale._order_stats`
and :mod:`optscale._solve`, jit-compiled once here so eager calls run as one XLA program.
Calls from inside a user's ``jax.jit`` inline them."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from optscale import _fit, _order_stats, _solve, _truncnorm
from optscale._distribution import TruncatedNormal
from optscale._special import log_gauss_mass

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

def _traced(tree) -> bool:
    return any(isinstance(v, jax.core.Tracer) for v in jax.tree_util.tree_leaves(tree))


def _run(ops, step, consts, state, max_iter, **static):
    """Concrete inputs: a Python loop whose steps call jitted pieces (see ``_fit.Ops``); once
    at most 1/16 of a large batch is still iterating, those questions are gathered into one
    batch of 1/16 the size (one more compilation of the pieces) and finished there, so the
    slowest few do not keep the whole batch busy. Traced inputs (inside a caller's jit):
    ``lax.while_loop``."""
    if _traced((consts, state)):
        return lax.while_loop(lambda s: _fit.keep_going(jnp, s, max_iter),
                              lambda s: step(ops, consts, s, **static), state)
    size = state.done.shape[0] if state.done.ndim else 1
    shrink = size >= 4096
    while bool(_fit.keep_going(jnp, state, max_iter)):
        if shrink:
            active = np.flatnonzero(~np.asarray(state.done))
            bucket = -(-size // 16)
            if len(active) <= bucket:
                idx = np.concatenate([active, np.full(bucket - len(active), active[0])])
                idx = jnp.asarray(idx)
                sub = _run(ops, step, _take(consts, idx), _take(state, idx), max_iter, **static)
                return jax.tree_util.tree_map(partial(_put, idx), state, sub)
        state = step(ops, consts, state, **static)
    return state


def _take(tree, idx):
    return jax.tree_util.tree_map(lambda v: v[idx] if getattr(v, "ndim", 0) else v, tree)


def _put(idx, full, part):
    return full.at[idx].set(part) if getattr(full, "ndim", 0) else part


_COMPILED: dict = {}


def _call(ops, fn, *args, **static):
    if _traced(args):
        return fn(ops, *args, **static)
    key = (fn, tuple(sorted(static.items(), key=lambda kv: kv[0])))
    compiled = _COMPILED.get(key)
    if compiled is None:
        compiled = _COMPILED[key] = jax.jit(partial(fn, ops, **static))
    return compiled(*args)


# run/call look _OPS up when called, so that the pieces they run receive the finished namespace
_OPS = _fit.Ops(jnp, log_gauss_mass, lambda *a, **k: _run(_OPS, *a, **k),
                lambda *a, **k: _call(_OPS, *a, **k))


@partial(jax.jit, static_argnames=("clip",))
def _stats(scores, mask, low, high, *, clip):
    return _fit.sufficient_stats(jnp, scores, mask, low, high, clip)


def fit_truncnorm(scores, mask, low, high, prior, bounds, *, clip, max_iter, tol):
    return _fit.fit(_OPS, scores, mask, low, high, prior, bounds, clip, max_iter, tol,
                    stats_fn=_stats)


def _tn_moments(ops, mu, sigma, low, high):
    return _truncnorm._moments(TruncatedNormal(mu, sigma, low, high))


def truncnorm_from_moments(mean, std, low, high, bounds, *, max_iter):
    return _fit.match_moments(_OPS, _tn_moments, mean, std, low, high, bounds, max_iter)
