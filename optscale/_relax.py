"""A continuous relaxation of the minimal N, for losses that want to shrink N.

:func:`optscale.min_samples` returns an integer N*, so ``jax.grad`` of it is 0 everywhere
(and of ``Solution.achieved`` it is the derivative at a fixed N). For k = 1 the criterion
``F(t)^N <= 1 - c`` has the real solution

    N(theta) = log(1 - c) / log F(t; theta),

which N* rounds up (N* = ceil(N) before the exact-rounding fix and the [n_min, n_max] clip).
It is smooth in the distribution's parameters, the target and the confidence, so a training
loss can use it directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from optscale._checks import N_MAX_DEFAULT

if TYPE_CHECKING:
    import jax
    from jax.typing import ArrayLike

__all__ = ["relaxed_min_samples"]


def relaxed_min_samples(dist: Any, target: ArrayLike, confidence: ArrayLike, *,
                        n_min: ArrayLike = 1.0,
                        n_max: ArrayLike | None = N_MAX_DEFAULT) -> jax.Array:
    """The real N with F(target)^N = 1 - confidence, clipped to [n_min, n_max].

    ``log(1 - confidence) / log F(target)``, the value the minimal N rounds up: a
    differentiable stand-in for :func:`optscale.min_samples` (k = 1, probability criterion)
    in a loss. A target at or below the range's floor gives n_min; an unreachable one
    (F(target) = 1 in working precision) n_max (inf without n_max); the gradient is zero
    there and outside the clip. Invalid parameters or a confidence outside (0, 1) give NaN with a
    zero gradient.

    Args:
        dist: a :class:`~optscale.TruncatedNormal` or any score family (batch-shaped).
        target, confidence: as in :func:`optscale.min_samples`; broadcast.
        n_min, n_max: the clip (default [1, 65536] as in :func:`optscale.min_samples`; n_max
            None: no upper clip).

    Returns:
        The relaxed N, a floating array of the broadcast shape (JAX).

    Example:
        >>> import jax, optscale
        >>> from optscale._relax import relaxed_min_samples
        >>> n = relaxed_min_samples(optscale.TruncatedNormal(0.9, 0.1), 0.95, 0.9)
        >>> round(float(n), 2), int(optscale.min_samples(
        ...     optscale.TruncatedNormal(0.9, 0.1), 0.95, 0.9).n)
        (11.74, 12)
        >>> g = jax.grad(lambda mu: relaxed_min_samples(optscale.TruncatedNormal(mu, 0.1),
        ...                                             0.95, 0.9))(0.9)
        >>> bool(g < 0)  # a higher mean needs fewer samples
        True
    """
    import jax.numpy as jnp

    log_f = dist.logcdf(target)
    log_f = jnp.asarray(log_f)
    dtype = log_f.dtype
    c = jnp.asarray(confidence, dtype)
    good_c = (c > 0.0) & (c < 1.0)
    log1mc = jnp.log1p(-jnp.where(good_c, c, 0.5))
    reachable = log_f < 0.0  # F(t) < 1: some n reaches the confidence
    trivial = log_f == -jnp.inf  # t at or below the floor: any sample does
    top = jnp.inf if n_max is None else jnp.asarray(n_max, dtype)
    lo = jnp.asarray(n_min, dtype)
    raw = log1mc / jnp.where(reachable & ~trivial, log_f, -1.0)
    # The quotient is formed again where it is used, on a safe denominator: outside the clip
    # its derivative (N / log F, ~N^2) overflows, and 0 * inf would be NaN.
    inner = reachable & ~trivial & (raw > lo) & (raw < top)
    n = log1mc / jnp.where(inner, log_f, -1.0)
    n = jnp.where(inner, n, jnp.where(trivial | (reachable & (raw <= lo)), lo, top))
    return jnp.where(good_c & ~jnp.isnan(log_f), n, jnp.nan)
