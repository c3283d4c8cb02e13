"""The score distribution: a truncated normal on [low, high], batch-shaped, a JAX pytree.

The class only holds parameters; every method is computed by the backend that
:mod:`optscale._backend` selects for the arguments, so the same object works with NumPy inputs,
JAX arrays and inside ``jax.jit``/``jax.vmap``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from optscale import _lazy_jax
from optscale._args import checked_dist, numeric
from optscale._backend import _is_jax_array, _load, select
from optscale._typing import Array, ArrayLike

__all__ = ["TruncatedNormal"]


@dataclasses.dataclass(frozen=True)
class TruncatedNormal:
    """Normal(mu, sigma) truncated to [low, high]; parameters broadcast to a batch shape.

    Args:
        mu: location of the parent normal (may lie outside [low, high]).
        sigma: scale of the parent normal, > 0.
        low, high: finite bounds of the score range, low < high. Default [0, 1].

    Example:
        >>> import optscale
        >>> d = optscale.TruncatedNormal(mu=[0.6, 0.9], sigma=0.1)
        >>> [round(float(p), 4) for p in d.cdf(0.95)]
        [0.9998, 0.8219]
    """

    mu: ArrayLike
    sigma: ArrayLike
    low: ArrayLike = 0.0
    high: ArrayLike = 1.0

    def __post_init__(self) -> None:
        # Lists would become pytree nodes under jit; arrays are what every backend expects.
        for name in ("mu", "sigma", "low", "high"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):
                object.__setattr__(self, name, numeric(name, value))

    def _call(self, name: str, **xs: Any) -> Any:
        """The backend's ``name`` on checked arguments (a TypeError names a non-numeric one)."""
        dist = checked_dist(self)
        args = [numeric(k, v) for k, v in xs.items()]
        return getattr(select(dist, *args), name)(dist, *args)

    def params(self) -> tuple[Any, Any, Any, Any]:
        """(mu, sigma, low, high) as given."""
        return (self.mu, self.sigma, self.low, self.high)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return np.broadcast_shapes(*(np.shape(p) for p in self.params()))

    def logpdf(self, x: ArrayLike) -> Array:
        """Log density at x (-inf outside [low, high])."""
        return self._call("logpdf", x=x)

    def logcdf(self, x: ArrayLike) -> Array:
        """log P(X <= x), accurate in both tails."""
        return self._call("logcdf", x=x)

    def logsf(self, x: ArrayLike) -> Array:
        """log P(X > x), accurate in both tails."""
        return self._call("logsf", x=x)

    def cdf(self, x: ArrayLike) -> Array:
        """P(X <= x)."""
        return self._call("cdf", x=x)

    def sf(self, x: ArrayLike) -> Array:
        """P(X > x)."""
        return self._call("sf", x=x)

    def icdf(self, q: ArrayLike) -> Array:
        """Quantile: the x with P(X <= x) = q, q in [0, 1]."""
        return self._call("icdf", q=q)

    def isf(self, q: ArrayLike) -> Array:
        """Inverse survival function: the x with P(X > x) = q."""
        return self._call("isf", q=q)

    def icdf_log(self, log_q: ArrayLike) -> Array:
        """Quantile from log q (exact where q itself would round to 0 or 1)."""
        return self._call("icdf_log", log_q=log_q)

    @property
    def mean(self) -> Array:
        return self._call("mean")

    @property
    def variance(self) -> Array:
        return self._call("variance")

    def sample(self, key: Any, sample_shape: tuple[int, ...] = ()) -> Array:
        """Draw samples shaped ``sample_shape + batch_shape``.

        ``key`` is a JAX PRNG key (JAX path) or a NumPy seed/``np.random.Generator`` (NumPy path).
        """
        impl = _load("jax") if _is_jax_array(key) else _load("numpy")
        return impl.sample(self, key, tuple(sample_shape))


def register_distribution(cls: type, fields: tuple[str, ...],
                          static_when_scalar: tuple[str, ...] = ("low", "high")) -> None:
    """Register a distribution dataclass as a JAX pytree, when JAX is imported
    (``import optscale`` does not import it).

    Fields in ``static_when_scalar`` that hold a Python number (the default bounds 0.0 and
    1.0) go into the static part of the tree rather than being rank-0 leaves: otherwise
    ``jax.vmap(f)(dist)`` (in_axes=0) and ``jax.device_put(dist, sharding)`` fail on them.
    A new value of such a number is a new static value to ``jax.jit`` (one compilation each);
    pass an array to trace it instead.
    """

    def is_static(name: str, value: Any) -> bool:
        return (name in static_when_scalar and isinstance(value, (int, float))
                and not isinstance(value, bool) and value == value)

    def register(jax: Any) -> None:
        def flatten_with_keys(d: Any) -> tuple[list, tuple]:
            values = [getattr(d, f) for f in fields]
            static = tuple(v if is_static(f, v) else None
                           for f, v in zip(fields, values, strict=True))
            mask = tuple(st is not None for st in static)
            children = [(jax.tree_util.GetAttrKey(f), None if m else v)
                        for f, v, m in zip(fields, values, mask, strict=True)]
            return children, (mask, static)

        def flatten(d: Any) -> tuple[list, tuple]:
            children, aux = flatten_with_keys(d)
            return [c for _, c in children], aux

        def unflatten(aux: tuple, children: Any) -> Any:
            mask, static = aux
            return cls(*(st if m else c for m, st, c in zip(mask, static, children,
                                                            strict=True)))

        jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)

    _lazy_jax.when_imported(register)


register_distribution(TruncatedNormal, ("mu", "sigma", "low", "high"))
