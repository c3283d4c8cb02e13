"""The JAX backend: the functions of :mod:`optscale._truncnorm`, :mod:`optscale._order_stats`
and :mod:`optscale._solve`, jit-compiled once here so eager calls run as one XLA program.
Calls from inside a user's ``jax.jit`` inline them."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import PartitionSpec as P

from optscale import _fit, _order_stats, _solve, _truncnorm
from optscale._distribution import TruncatedNormal
from optscale._implicit import bump, implicit_optimum
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
        return _run_traced(ops, step, consts, state, max_iter, **static)
    size = state.done.shape[0] if state.done.ndim else 1
    shrink = size >= 4096
    while bool(_keep_going(state, max_iter)):
        if shrink:
            active = np.flatnonzero(~np.asarray(state.done))
            bucket = -(-size // 16)
            if len(active) <= bucket:
                idx = np.concatenate([active, np.full(bucket - len(active), active[0])])
                idx = jnp.asarray(idx)
                sub = _run(ops, step, *_take_jit((consts, state), idx), max_iter, **static)
                return _put_jit(idx, state, sub)
        state = step(ops, consts, state, **static)
    return state


# the eager loop's glue as one program each (not one per primitive: in a new process each
# program is a lookup in the persistent compilation cache)
@partial(jax.jit, static_argnums=1)
def _keep_going(state, max_iter):
    return _fit.keep_going(jnp, state, max_iter)


@jax.jit
def _take_jit(tree, idx):
    return _take(tree, idx)


@jax.jit
def _put_jit(idx, full, part):
    return jax.tree_util.tree_map(partial(_put, idx), full, part)


def _run_traced(ops, step, consts, state, max_iter, **static):
    """The same loop in the graph (inside a caller's jit): ``lax.while_loop`` until at most
    1/16 of a large batch is still iterating, then those rows are gathered (a static 1/16 of
    the size, padded with the first of them) and finished in a loop of their own, like the
    eager loop does. Without it every iteration costs the whole batch until the slowest
    question converges (7x slower at 10^6 questions)."""
    def body(s):
        return step(ops, consts, s, **static)

    size = state.done.shape[0] if state.done.ndim else 1
    if size < 4096:
        return lax.while_loop(lambda s: _fit.keep_going(jnp, s, max_iter), body, state)
    bucket = -(-size // 16)
    state = lax.while_loop(lambda s: _fit.keep_going(jnp, s, max_iter)
                           & (jnp.sum(~s.done) > bucket), body, state)
    active = ~state.done
    first = jnp.argmax(active)
    idx = jnp.nonzero(active, size=bucket, fill_value=first)[0]
    sub = _run_traced(ops, step, _take(consts, idx), _take(state, idx), max_iter, **static)
    return jax.tree_util.tree_map(partial(_put, idx), state, sub)


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


# Eager fits run on a few row counts ("buckets"), so that a new batch size reuses the programs
# of an earlier one instead of compiling ~50 new ones: powers of two (at least 8) up to _FINE
# rows, 16 steps per octave above that (a large batch padded to the next power of two would
# spend up to twice its step time: 100,000 rows ran 20-40 % slower on 131,072), and chunks of
# _CHUNK above that.
_CHUNK = 1 << 17
_MIN_ROWS = 8
_FINE = 1 << 14


_REUSE = 8  # a batch may run padded to an already-compiled bucket up to this many times its own
_USED_ROWS: dict[tuple, set[int]] = {}  # the buckets run so far, by the rest of the signature


def _bucket_rows(size: int) -> int:
    if size > _CHUNK:
        return _CHUNK
    power = max(_MIN_ROWS, 1 << (max(size, 1) - 1).bit_length())
    if power <= _FINE:
        return power
    unit = power >> 5
    return -(-size // unit) * unit


def _pieces(size: int, args: tuple, options: tuple) -> list[tuple[int, int, int]]:
    """How a fit of ``size`` rows runs: pieces ``(start, stop, rows)``, each padded to
    ``rows``. A piece runs on its bucket; when that bucket has not been compiled yet, on a
    larger compiled one (at most ``_REUSE`` times larger for a first piece; any, for the last
    piece of a chunked batch), or, for a batch over ``_FINE`` rows that no compiled bucket
    holds, as the largest compiled bucket it fills at least half of plus the rest. Padding
    costs the step time of the extra rows (they stop at once); compiling a new bucket costs
    seconds."""
    key = options + tuple((np.ndim(v), np.shape(v)[1:], str(np.result_type(getattr(v, "dtype",
                                                                                  v))))
                          for v in jax.tree_util.tree_leaves(args))
    used = _USED_ROWS.setdefault(key, set())
    pieces: list[tuple[int, int, int]] = []
    start = 0
    while start < size:
        rest = size - start
        rows = _bucket_rows(rest)
        if rows not in used:
            larger = [r for r in used if rows < r and (start or r <= _REUSE * rows)]
            part = [r for r in used if rest // 2 <= r < rest]
            if larger:
                rows = min(larger)
            elif not start and rest > _FINE and part:
                rows = max(part)
        stop = min(start + rows, size)
        pieces.append((start, stop, rows))
        used.add(rows)
        start = stop
    return pieces


def _single_device(*arrays) -> bool:
    """Concrete arrays on one device (NumPy arrays count): the eager loop with bucketing and
    straggler gathering. Sharded arrays run as one program that keeps their sharding."""
    for v in jax.tree_util.tree_leaves(arrays):
        if isinstance(v, jax.Array) and len(v.sharding.device_set) > 1:
            return False
    return True


def _pad_leaf(xp, part, rows):
    pad = [(0, rows - part.shape[0])] + [(0, 0)] * (part.ndim - 1)
    return xp.pad(part, pad) if part.dtype == bool else xp.pad(part, pad, mode="edge")


@partial(jax.jit, static_argnums=(2, 3))
def _rows_jax(tree, start, size, rows):
    return jax.tree_util.tree_map(
        lambda v: _pad_leaf(jnp, lax.dynamic_slice_in_dim(v, start, size), rows), tree)


def _rows(tree, start, stop, rows):
    """Rows [start, stop) of every [B, ...] leaf, padded to ``rows`` by repeating the last one
    (the mask, the only boolean, with False: padded rows have no score and stop at once).
    NumPy inputs are cut in NumPy; JAX ones by one program per (shape, rows)."""
    leaves = jax.tree_util.tree_leaves(tree)
    if not any(isinstance(v, jax.Array) for v in leaves):
        return jax.tree_util.tree_map(lambda v: _pad_leaf(np, np.asarray(v)[start:stop], rows),
                                      tree)
    return _rows_jax(tree, start, stop - start, rows)


@partial(jax.jit, static_argnums=1)
def _first_rows(tree, size):
    return jax.tree_util.tree_map(lambda v: v[:size], tree)


@jax.jit
def _concat(parts):
    return jax.tree_util.tree_map(lambda *v: jnp.concatenate(v), *parts)


def _batch_axes(scores):
    """The mesh axes the rows of ``scores`` are split over (a NamedSharding of its first axis
    only, evenly), or None."""
    sharding = getattr(scores, "sharding", None)
    if not isinstance(sharding, jax.sharding.NamedSharding):
        return None
    spec = tuple(sharding.spec) + (None,) * (scores.ndim - len(sharding.spec))
    if spec[0] is None or any(s is not None for s in spec[1:]):
        return None
    names = spec[0] if isinstance(spec[0], tuple) else (spec[0],)
    parts = int(np.prod([sharding.mesh.shape[a] for a in names]))
    return spec[0] if scores.shape[0] % parts == 0 else None


_SHARDED: dict = {}


def _sharded_fit(args, clip, max_iter, tol):
    """The fit of row-sharded scores as one program in ``shard_map``: every device fits its
    own rows (questions are independent) with its own loop and straggler gathering, so nothing
    is communicated, gathered or fetched, and the result is sharded like the scores. The
    other [B] inputs are laid out like the scores first."""
    axes = _batch_axes(args[0])
    if axes is None:
        return None
    mesh = args[0].sharding.mesh
    spec = lambda v: P(axes, *([None] * (np.ndim(v) - 1)))  # noqa: E731
    key = (mesh, axes, jax.tree_util.tree_structure(args),
           tuple(np.ndim(v) for v in jax.tree_util.tree_leaves(args)), clip, max_iter, tol)
    program = _SHARDED.get(key)
    if program is None:
        specs = jax.tree_util.tree_map(spec, args)
        body = lambda *a: _fit.fit(_OPS, *a, clip, max_iter, tol)  # noqa: E731
        program = _SHARDED[key] = jax.jit(jax.shard_map(body, mesh=mesh, in_specs=specs,
                                                        out_specs=P(axes)))
    args = jax.tree_util.tree_map(
        lambda v: v if isinstance(v, jax.Array) and v.sharding.is_equivalent_to(
            jax.sharding.NamedSharding(mesh, spec(v)), np.ndim(v)) else
        _place(v, jax.sharding.NamedSharding(mesh, spec(v))), args)
    return program(*args)


def _place(value, sharding):
    """``value`` (host-local or on one device, the same on every process) as a global array
    with ``sharding``: each process supplies its own rows."""
    host = np.asarray(value)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def _solve_fit(scores, mask, low, high, prior, bounds, *, clip, max_iter, tol):
    args = (scores, mask, low, high, prior, bounds)
    if not _traced(args) and not _single_device(args) and scores.shape[0]:
        out = _sharded_fit(args, clip, max_iter, tol)
        if out is not None:
            return out
    if _traced(args) or not _single_device(args) or scores.shape[0] == 0:
        return _fit.fit(_OPS, *args, clip, max_iter, tol, stats_fn=_stats)
    size = scores.shape[0]
    parts = []
    for start, stop, rows in _pieces(size, args, (clip, max_iter, tol)):
        piece = args if size == rows else _rows(args, start, stop, rows)
        out = _fit.fit(_OPS, *piece, clip, max_iter, tol, stats_fn=_stats)
        parts.append(_first_rows(out, stop - start) if stop - start != rows else out)
    return parts[0] if len(parts) == 1 else _concat(parts)


def fit_truncnorm(scores, mask, low, high, prior, bounds, *, clip, max_iter, tol):
    """The fit. Its derivative (forward and reverse, under jit and vmap) is the implicit one
    of the optimum (:mod:`optscale._implicit`): no Newton iteration is differentiated, and
    nothing of it is computed unless something differentiates."""
    args = (scores, mask, low, high, prior, bounds)
    if not _traced(args):
        return _solve_fit(*args, clip=clip, max_iter=max_iter, tol=tol)
    return _fit_differentiable(clip, max_iter, tol, *args)


@partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2))
def _fit_differentiable(clip, max_iter, tol, scores, mask, low, high, prior, bounds):
    return _solve_fit(scores, mask, low, high, prior, bounds, clip=clip, max_iter=max_iter,
                      tol=tol)


@_fit_differentiable.defjvp
def _fit_differentiable_jvp(clip, max_iter, tol, primals, tangents):
    scores, mask, low, high, prior, bounds = primals
    fit = _fit_differentiable(clip, max_iter, tol, *primals)

    def corrected(scores, low, high, prior, bounds):
        return _implicit_fit_jit(fit, scores, mask, low, high, prior, bounds, clip)

    t_scores, _, t_low, t_high, t_prior, t_bounds = tangents
    _, t_fit = jax.jvp(corrected, (scores, low, high, prior, bounds),
                       (t_scores, t_low, t_high, t_prior, t_bounds))
    return fit, t_fit


def _implicit_fit_jit(fit, scores, mask, low, high, prior, bounds, clip):
    # one program (compiled once per shape) rather than op by op under an eager grad
    return _implicit_fit_compiled(fit, scores, mask, low, high, prior, bounds, clip=clip)


def _implicit_fit(fit, scores, mask, low, high, prior, bounds, clip):
    """``fit`` with derivatives in the scores, the prior, the range and the box: the optimum's
    by implicit differentiation (active-set on the box), the objective's and the covariance's
    through their formulas at the optimum. INVALID questions get none."""
    sg = partial(jax.tree_util.tree_map, lax.stop_gradient)
    n, mean, ss, _ = _fit.sufficient_stats(jnp, scores, mask, low, high, clip)
    stats = (n, mean, ss)
    (mu_lo, mu_hi), (s_lo, s_hi) = bounds
    rho = jnp.log(fit.sigma)
    hess = _fit.objective_derivatives(_OPS, sg(stats), fit.mu, rho, sg(low), sg(high),
                                      sg(prior))[3:]
    h = jnp.stack([jnp.stack([hess[0], hess[1]], -1), jnp.stack([hess[1], hess[2]], -1)], -2)

    def grad_fn(theta):
        return _fit.objective_derivatives(_OPS, stats, theta[0], theta[1], low, high,
                                          prior)[1:3]

    keep = fit.status != _fit.FitStatus.INVALID
    mu, rho = implicit_optimum(
        (fit.mu, rho), grad_fn, h, (mu_lo, jnp.log(s_lo)), (mu_hi, jnp.log(s_hi)),
        (1e-6 * lax.stop_gradient(mu_hi - mu_lo), 1e-6), keep)
    sigma = fit.sigma * jnp.exp(rho - lax.stop_gradient(rho))  # exactly fit.sigma in value
    f, _, _, h_mm, h_mr, h_rr = _fit.objective_derivatives(_OPS, stats, mu, rho, low, high,
                                                           prior)
    c_mm, c_mr, c_rr = _fit._floored_inverse(jnp, h_mm, h_mr, h_rr, _fit._FLOOR)
    cov = jnp.stack([jnp.stack([c_mm, c_mr], -1), jnp.stack([c_mr, c_rr], -1)], -2)
    keep2 = keep[..., None, None]
    return fit._replace(
        mu=mu, sigma=sigma,
        objective=fit.objective + jnp.where(keep, bump(f), 0.0),
        cov=fit.cov + jnp.where(keep2, bump(cov), 0.0))


def _tn_moments(ops, mu, sigma, low, high):
    return _truncnorm._moments(TruncatedNormal(mu, sigma, low, high))


def truncnorm_from_moments(mean, std, low, high, bounds, *, max_iter):
    return _fit.match_moments(_OPS, _tn_moments, mean, std, low, high, bounds, max_iter)


_implicit_fit_compiled = jax.jit(_implicit_fit, static_argnames=("clip",))
