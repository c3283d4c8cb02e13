"""The score distribution: a truncated normal on [low, high], batch-shaped, a JAX pytree.

The class only holds parameters; every method is computed by the backend that
:mod:`optscale._backend` selects for the arguments, so the same object works with NumPy inputs,
JAX arrays and inside ``jax.jit``/``jax.vmap``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

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
                object.__setattr__(self, name, np.asarray(value))

    def params(self) -> tuple[Any, Any, Any, Any]:
        """(mu, sigma, low, high) as given."""
        return (self.mu, self.sigma, self.low, self.high)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return np.broadcast_shapes(*(np.shape(p) for p in self.params()))

    def logpdf(self, x: Any) -> Any:
        """Log density at x (-inf outside [low, high])."""
        return select(self, x).logpdf(self, x)

    def logcdf(self, x: Any) -> Any:
        """log P(X <= x), accurate in both tails."""
        return select(self, x).logcdf(self, x)

    def logsf(self, x: Any) -> Any:
        """log P(X > x), accurate in both tails."""
        return select(self, x).logsf(self, x)

    def cdf(self, x: Any) -> Any:
        """P(X <= x)."""
        return select(self, x).cdf(self, x)

    def sf(self, x: Any) -> Any:
        """P(X > x)."""
        return select(self, x).sf(self, x)

    def icdf(self, q: Any) -> Any:
        """Quantile: the x with P(X <= x) = q, q in [0, 1]."""
        return select(self, q).icdf(self, q)

    def isf(self, q: Any) -> Any:
        """Inverse survival function: the x with P(X > x) = q."""
        return select(self, q).isf(self, q)

    def icdf_log(self, log_q: Any) -> Any:
        """Quantile from log q (exact where q itself would round to 0 or 1)."""
        return select(self, log_q).icdf_log(self, log_q)

    @property
    def mean(self) -> Any:
        return select(self).mean(self)

    @property
    def variance(self) -> Any:
        return select(self).variance(self)

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
