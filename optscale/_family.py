"""Score families beyond the truncated normal: a base class whose log CDF / log SF feed every
solver, and the array namespaces (NumPy+SciPy or JAX) a family's math is written against.

Every criterion of the solver needs only F (best of N: F^N; k of N: F and S; expected best: the
quantile, here F inverted by bisection), so a family defines ``_log_cdf_sf`` and ``_logpdf``
once, against ``xp`` (an :class:`Xp`), and gets the rest. Arrays that belong to JAX (including
tracers inside ``jax.jit``) are computed by JAX in their own dtype; anything else by NumPy/SciPy
in float64 and returned in the inputs' floating dtype.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
from typing import Any, ClassVar, NamedTuple

import numpy as np

from optscale._args import numeric
from optscale._backend import _is_jax_array, backend
from optscale._quadrature import LOG_V, W_V
from optscale._typing import Array, ArrayLike

__all__ = ["ScoreDistribution", "Xp", "family", "namespace"]


class Xp(NamedTuple):
    """What family math needs from a backend."""

    np: Any  # numpy or jax.numpy
    sp: Any  # scipy.special or jax.scipy.special
    is_jax: bool
    fori: Any  # fori(n, body(i, carry) -> carry, carry): a fixed-count loop
    tn_log_cdf_sf: Any  # (TruncatedNormal, x) -> (log F, log S)
    tn_logpdf: Any  # (TruncatedNormal, x) -> log density
    log_binom_lower: Any  # (log_s, log_f, n, k) -> log P(Bin(n, s) <= k - 1)
    ceil_exact: Any  # smallest integer n >= 0 with n * log_f <= log_bound
    bisect: Any  # (cond, lo, hi, shape) -> smallest n in [lo, hi] with cond(n)


@functools.cache
def _numpy_xp() -> Xp:
    import scipy.special as sp

    from optscale import _reference as ref

    def fori(n, body, carry):
        for i in range(n):
            carry = body(i, carry)
        return carry

    return Xp(np, sp, False, fori, ref.log_cdf_sf, ref.logpdf, ref.log_binom_lower,
              ref._ceil_exact, lambda cond, lo, hi, shape: ref._bisect(
                  cond, np.broadcast_to(lo, shape).copy(), np.broadcast_to(hi, shape).copy()))


@functools.cache
def _jax_xp() -> Xp:
    import jax.numpy as jnp
    import jax.scipy.special as jsp
    from jax import lax

    from optscale import _order_stats, _solve, _truncnorm
    from optscale._special import betainc

    def fori(n, body, carry):
        return lax.fori_loop(0, n, body, carry)

    return Xp(jnp, _Special(jsp, betainc=betainc), True, fori, _truncnorm.log_cdf_sf,
              _truncnorm.logpdf, _order_stats.log_binom_lower, _solve._ceil_exact,
              _solve._bisect)


class _Special:
    """``jax.scipy.special`` with some functions replaced (``betainc``: one with derivatives in
    a and b)."""

    def __init__(self, module: Any, **overrides: Any) -> None:
        self._module, self._overrides = module, overrides

    def __getattr__(self, name: str) -> Any:
        return self._overrides.get(name) or getattr(self._module, name)


def namespace(*values: Any) -> Xp:
    """JAX when any value (or a distribution's parameter) is a JAX array or the active backend
    is JAX; else NumPy/SciPy."""
    for v in values:
        leaves = v.params() if isinstance(v, ScoreDistribution) else (v,)
        if any(_is_jax_array(leaf) for leaf in leaves):
            return _jax_xp()
    return _jax_xp() if backend() == "jax" else _numpy_xp()


def family(cls: type) -> type:
    """Class decorator for a family: a frozen dataclass, registered as a JAX pytree when JAX is
    imported (every field a leaf, except Python-number bounds: see
    :func:`optscale._distribution.register_distribution`)."""
    from optscale._distribution import register_distribution

    cls = dataclasses.dataclass(frozen=True)(cls)
    register_distribution(cls, tuple(f.name for f in dataclasses.fields(cls)))
    return cls




class ScoreDistribution(abc.ABC):
    """Base of the non-Gaussian score families (subclasses are ``@family`` dataclasses whose
    last two fields are ``low`` and ``high``; parameters broadcast to a batch shape).

    A subclass defines ``_log_cdf_sf(xp, x)``, ``_logpdf(xp, x)`` and ``_invalid(xp)`` on a copy
    of itself whose fields are arrays of one dtype (:meth:`_cast`); inputs outside the support
    are handled here.
    """

    low: Any
    high: Any
    rule: ClassVar[str] = ""  # what valid parameters are, for error messages

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (list, tuple)):
                object.__setattr__(self, f.name, numeric(f.name, value))

    # ------------------------------------------------------------------ subclass hooks

    @abc.abstractmethod
    def _log_cdf_sf(self, xp: Xp, x: Any) -> tuple[Any, Any]:
        """(log F, log S) at x strictly inside (low, high), parameters already cast."""

    @abc.abstractmethod
    def _logpdf(self, xp: Xp, x: Any) -> Any:
        """Log density at x inside [low, high]."""

    @abc.abstractmethod
    def _invalid(self, xp: Xp) -> Any:
        """Mask of invalid parameters (broadcastable to the batch)."""

    # ------------------------------------------------------------------ plumbing

    def params(self) -> tuple[Any, ...]:
        """The fields, in order."""
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self))

    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self))

    def invalid(self) -> Array:
        """Mask of batch elements whose parameters are invalid (see ``rule``)."""
        return self._eval("invalid")

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return np.broadcast_shapes(*(np.shape(p) for p in self.params()))

    def _dtype(self, xp: Xp, *xs: Any) -> Any:
        values = [*self.params(), *xs]
        if xp.is_jax:
            dtype = xp.np.result_type(*values)
            return dtype if xp.np.issubdtype(dtype, xp.np.floating) else \
                xp.np.result_type(float)
        dtype = np.result_type(*(np.asarray(v) for v in values))
        return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)

    def _cast(self, xp: Xp, dtype: Any) -> ScoreDistribution:
        work = dtype if xp.is_jax else np.float64
        return type(self)(*(xp.np.asarray(p, work) for p in self.params()))

    def _eval(self, name: str, *xs: Any) -> Any:
        """Run ``_<name>_impl(xp, *xs)`` in the right namespace and dtype (jitted on JAX)."""
        xp = namespace(self, *xs)
        dtype = self._dtype(xp, *xs)
        if xp.is_jax:
            return _jitted(name)(self, np.dtype(dtype), *(xp.np.asarray(x, dtype) for x in xs))
        with np.errstate(all="ignore"):
            out = getattr(self._cast(xp, dtype), f"_{name}_impl")(
                xp, *(np.asarray(x, np.float64) for x in xs))
        cast = lambda o: np.asarray(o, dtype) if np.asarray(o).dtype.kind == "f" else o  # noqa: E731
        return tuple(cast(o) for o in out) if isinstance(out, tuple) else cast(out)

    # ------------------------------------------------------------------ implementations

    def _safe(self, xp: Xp) -> tuple[Any, ScoreDistribution]:
        """(invalid mask, a copy with the invalid elements' parameters replaced by the family's
        ``_SAFE`` ones): the math only sees valid parameters, so a masked element contributes a
        zero gradient (the double-where pattern). Families without ``_SAFE`` are unchanged."""
        bad = self._invalid(xp)
        safe = getattr(type(self), "_SAFE", None)
        if not xp.is_jax or safe is None:
            return bad, self
        n = xp.np
        return bad, type(self)(*(n.where(bad, v, p) for v, p in zip(safe, self.params(),
                                                                     strict=True)))

    def _log_cdf_sf_impl(self, xp: Xp, x: Any) -> tuple[Any, Any]:
        n = xp.np
        bad, dist = self._safe(xp)
        low, high = dist.low, dist.high
        below, above = x <= low, x >= high
        xs = n.where(below | above | n.isnan(x), 0.5 * (low + high), x)
        lc, ls = dist._log_cdf_sf(xp, xs)
        lc, ls = n.minimum(lc, 0.0), n.minimum(ls, 0.0)
        lc = n.where(below, -n.inf, n.where(above, 0.0, lc))
        ls = n.where(below, 0.0, n.where(above, -n.inf, ls))
        bad = bad | n.isnan(x)
        return n.where(bad, n.nan, lc), n.where(bad, n.nan, ls)

    def _invalid_impl(self, xp: Xp) -> Any:
        return xp.np.broadcast_to(self._invalid(xp), self.batch_shape)

    def _logpdf_impl(self, xp: Xp, x: Any) -> Any:
        n = xp.np
        bad, dist = self._safe(xp)
        inside = (x >= dist.low) & (x <= dist.high)
        xs = n.where(inside, x, 0.5 * (dist.low + dist.high))
        out = n.where(inside, dist._logpdf(xp, xs), -n.inf)
        return n.where(bad | n.isnan(x), n.nan, out)

    def _icdf_log_impl(self, xp: Xp, log_q: Any) -> Any:
        """Bisection on [low, high]: F is monotone, so 64 halvings reach the last bit of a
        float64 unit range (F itself is what limits the accuracy). On JAX the derivative is
        implicit, from F(x) = q at the root (bisection itself has none)."""
        if xp.is_jax:
            return _implicit_quantile(self, log_q)
        return self._bisect_quantile(xp, log_q)

    def _bisect_quantile(self, xp: Xp, log_q: Any) -> Any:
        n = xp.np
        shape = n.broadcast_shapes(n.shape(log_q), self.batch_shape)
        lo = n.broadcast_to(n.asarray(self.low, log_q.dtype), shape)
        hi = n.broadcast_to(n.asarray(self.high, log_q.dtype), shape)
        steps = 64 if np.finfo(log_q.dtype).bits > 32 else 32

        def body(_, bracket):
            a, b = bracket
            mid = 0.5 * (a + b)
            below = self._log_cdf_sf_impl(xp, mid)[0] < log_q
            return n.where(below, mid, a), n.where(below, b, mid)

        a, b = xp.fori(steps, body, (lo, hi))
        x = 0.5 * (a + b)
        x = n.where(log_q >= 0.0, hi, n.where(log_q == -n.inf, lo, x))
        return n.where(n.isnan(log_q) | (log_q > 0) | self._invalid(xp), n.nan, x)

    def _expected_best_impl(self, xp: Xp, n_: Any) -> Any:
        n = xp.np
        dtype = n_.dtype
        expand = lambda v: n.asarray(v)[..., None]  # noqa: E731
        nodes = type(self)(*(expand(p) for p in self.params()))
        x = nodes._icdf_log_impl(xp, n.asarray(LOG_V, dtype) / expand(n_))
        return n.sum(n.asarray(W_V, dtype) * x, axis=-1)

    # ------------------------------------------------------------------ public

    def log_cdf_sf(self, x: ArrayLike) -> tuple[Array, Array]:
        """(log P(X <= x), log P(X > x))."""
        return self._eval("log_cdf_sf", x)

    def logcdf(self, x: ArrayLike) -> Array:
        """log P(X <= x)."""
        return self.log_cdf_sf(x)[0]

    def logsf(self, x: ArrayLike) -> Array:
        """log P(X > x)."""
        return self.log_cdf_sf(x)[1]

    def cdf(self, x: ArrayLike) -> Array:
        """P(X <= x)."""
        return _exp(self.logcdf(x))

    def sf(self, x: ArrayLike) -> Array:
        """P(X > x)."""
        return _exp(self.logsf(x))

    def logpdf(self, x: ArrayLike) -> Array:
        """Log density (-inf outside [low, high])."""
        return self._eval("logpdf", x)

    def icdf_log(self, log_q: ArrayLike) -> Array:
        """The x with log P(X <= x) = log_q (bisection on F)."""
        return self._eval("icdf_log", log_q)

    def icdf(self, q: ArrayLike) -> Array:
        """Quantile: the x with P(X <= x) = q."""
        q = q if _is_jax_array(q) else np.asarray(q, np.result_type(q, np.float32))
        with np.errstate(divide="ignore", invalid="ignore"):
            log_q = _log(q)
        return self.icdf_log(log_q)

    @property
    def mean(self) -> Array:
        return self._eval("expected_best", 1.0)

    def sample(self, key: Any, sample_shape: tuple[int, ...] = ()) -> Array:
        """Draws shaped ``sample_shape + batch_shape`` by inverting F at uniforms. ``key`` is a
        JAX PRNG key (JAX path) or a NumPy seed / ``np.random.Generator``."""
        shape = tuple(sample_shape) + self.batch_shape
        if _is_jax_array(key):
            import jax

            u = jax.random.uniform(key, shape, minval=np.finfo(np.float32).tiny)
            return self.icdf_log(jax.numpy.log(u))
        rng = np.random.default_rng(key)
        u = np.maximum(rng.random(shape), np.finfo(np.float64).tiny)
        return self.icdf_log(np.log(u))


def _implicit_quantile(dist: ScoreDistribution, log_q: Any) -> Any:
    return _implicit_quantile_fn()(dist, log_q)


@functools.cache
def _implicit_quantile_fn() -> Any:
    import jax
    import jax.numpy as jnp

    xp = _jax_xp()
    ln2 = float(np.log(2.0))

    @jax.custom_jvp
    def quantile(dist, log_q):
        return dist._bisect_quantile(xp, log_q)

    @quantile.defjvp
    def quantile_jvp(primals, tangents):
        """dx = (d target - dG/dtheta) / dG/dx with G = log F (or log S above the median),
        evaluated at the root on masked arguments (0 on a bound or where invalid)."""
        dist, log_q = primals
        t_dist, t_log_q = tangents
        x = quantile(dist, log_q)
        bad, safe = dist._safe(xp)
        inside = (x > safe.low) & (x < safe.high) & ~bad
        xs = jnp.where(inside, x, 0.5 * (safe.low + safe.high))
        cdf_side = log_q <= -ln2

        def side(d):
            lc, ls = d._log_cdf_sf_impl(xp, xs)
            return jnp.where(cdf_side, lc, ls)

        g, dg = jax.jvp(side, (dist,), (t_dist,))
        log_slope = dist._logpdf_impl(xp, xs) - g
        lq = jnp.where(cdf_side | ~(log_q < 0.0), -1.0, log_q)
        log1mq = jnp.log(-jnp.expm1(lq))
        d_target = jnp.where(cdf_side, 1.0, -jnp.exp(lq - log1mq))
        ok = inside & jnp.isfinite(log_slope) & jnp.isfinite(g) & jnp.isfinite(d_target)
        inv = jnp.where(ok, jnp.where(cdf_side, 1.0, -1.0)
                        * jnp.exp(-jnp.where(ok, log_slope, 0.0)), 0.0)
        dx = inv * (jnp.where(ok, d_target, 0.0) * t_log_q - jnp.where(ok, dg, 0.0))
        return x, jnp.broadcast_to(dx, x.shape)

    return quantile


def _exp(v: Any) -> Any:
    if _is_jax_array(v):
        import jax.numpy as jnp

        return jnp.exp(v)
    return np.exp(v)


def _log(v: Any) -> Any:
    if _is_jax_array(v):
        import jax.numpy as jnp

        return jnp.log(v)
    return np.log(v)


@functools.cache
def _jitted(name: str) -> Any:
    import jax

    xp = _jax_xp()

    def run(dist, dtype, *xs):
        return getattr(dist._cast(xp, dtype), f"_{name}_impl")(xp, *xs)

    return jax.jit(run, static_argnums=1)
