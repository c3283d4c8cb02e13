"""The score distribution: a truncated normal on [low, high], batch-shaped, a JAX pytree.

The class only holds parameters; every method is computed by the backend that
:mod:`optscale._backend` selects for the arguments, so the same object works with NumPy inputs,
JAX arrays and inside ``jax.jit``/``jax.vmap``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from optscale._args import checked_dist, numeric
from optscale._backend import _is_jax_array, _load, select

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

    mu: Any
    sigma: Any
    low: Any = 0.0
    high: Any = 1.0

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

    def logpdf(self, x: Any) -> Any:
        """Log density at x (-inf outside [low, high])."""
        return self._call("logpdf", x=x)

    def logcdf(self, x: Any) -> Any:
        """log P(X <= x), accurate in both tails."""
        return self._call("logcdf", x=x)

    def logsf(self, x: Any) -> Any:
        """log P(X > x), accurate in both tails."""
        return self._call("logsf", x=x)

    def cdf(self, x: Any) -> Any:
        """P(X <= x)."""
        return self._call("cdf", x=x)

    def sf(self, x: Any) -> Any:
        """P(X > x)."""
        return self._call("sf", x=x)

    def icdf(self, q: Any) -> Any:
        """Quantile: the x with P(X <= x) = q, q in [0, 1]."""
        return self._call("icdf", q=q)

    def isf(self, q: Any) -> Any:
        """Inverse survival function: the x with P(X > x) = q."""
        return self._call("isf", q=q)

    def icdf_log(self, log_q: Any) -> Any:
        """Quantile from log q (exact where q itself would round to 0 or 1)."""
        return self._call("icdf_log", log_q=log_q)

    @property
    def mean(self) -> Any:
        return self._call("mean")

    @property
    def variance(self) -> Any:
        return self._call("variance")

    def sample(self, key: Any, sample_shape: tuple[int, ...] = ()) -> Any:
        """Draw samples shaped ``sample_shape + batch_shape``.

        ``key`` is a JAX PRNG key (JAX path) or a NumPy seed/``np.random.Generator`` (NumPy path).
        """
        impl = _load("jax") if _is_jax_array(key) else _load("numpy")
        return impl.sample(self, key, tuple(sample_shape))


try:
    import jax as _jax
except ImportError:  # pragma: no cover - exercised by the NumPy-only install
    pass
else:
    _jax.tree_util.register_dataclass(
        TruncatedNormal, data_fields=["mu", "sigma", "low", "high"], meta_fields=[]
    )
