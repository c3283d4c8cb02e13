"""Public functions: argument checks, then the backend chosen for the inputs does the work."""

from __future__ import annotations

from typing import Any

import numpy as np

from optscale._backend import _is_jax_array, select
from optscale._checks import INT_MAX, N_MAX_DEFAULT, query_checks
from optscale._solution import Solution

__all__ = [
    "N_MAX_DEFAULT", "best_of_n_prob", "best_of_n_quantile", "cost_aware_samples",
    "expected_best", "k_of_n_prob", "min_samples",
]

_CRITERIA = ("probability", "expected")
_ERRORS = ("status", "raise")


def _is_traced(x: Any) -> bool:
    if not _is_jax_array(x):
        return False
    import jax

    return isinstance(x, jax.core.Tracer)


def _check_ints(**kw: Any) -> None:
    for name, value in kw.items():
        dtype = getattr(value, "dtype", None) or np.asarray(value).dtype
        if np.dtype(dtype).kind not in "iu" or isinstance(value, bool):
            raise TypeError(f"{name} must be an integer or an integer array; got dtype {dtype}")
        if not _is_traced(value) and np.any(np.asarray(value) > INT_MAX):
            raise ValueError(f"{name} must be <= {INT_MAX} (n is int32)")


def _check_options(errors: str, criterion: str = "probability") -> None:
    if criterion not in _CRITERIA:
        raise ValueError(f"criterion must be one of {_CRITERIA}; got {criterion!r}")
    if errors not in _ERRORS:
        raise ValueError(f"errors must be one of {_ERRORS}; got {errors!r}")


def _raise_first_invalid(fn: str, **args: Any) -> None:
    """ValueError naming the first invalid element (in C order) and the rule it breaks."""
    if any(_is_traced(v) for v in args.values()):
        raise TypeError(f"{fn}(errors='raise') needs concrete inputs; inside jax.jit use the "
                        "per-element status instead")
    arrays = {k: np.asarray(v) for k, v in args.items() if v is not None}
    checks = query_checks(np, **arrays)
    shape = np.broadcast_shapes(*(np.shape(v) for v in arrays.values()))
    bad = np.zeros(shape, bool)
    for _, mask, _ in checks:
        bad |= np.broadcast_to(mask, shape)
    if not bad.any():
        return
    idx = np.unravel_index(int(np.flatnonzero(bad)[0]), shape)
    for name, mask, rule in checks:
        if np.broadcast_to(mask, shape)[idx]:
            value = np.broadcast_to(arrays[name], shape)[idx]
            where = f" at index {tuple(int(i) for i in idx)}" if shape else ""
            raise ValueError(f"{fn}: {name} {rule}; got {name} = {value.item()!r}{where}")


def min_samples(dist: Any, target: Any, confidence: Any = None, *, k: Any = 1,
                criterion: str = "probability", n_min: Any = 1, n_max: Any = N_MAX_DEFAULT,
                errors: str = "status") -> Solution:
    """Smallest number of samples n in [n_min, n_max] whose best score reaches ``target``.

    Criteria:
      - ``"probability"`` (default): P(at least k of n scores >= target) >= confidence. For k = 1
        this is the closed form ``n = ceil(log(1 - c) / log F(target))``, adjusted so that
        ``F^n <= 1 - c < F^(n-1)`` holds exactly as evaluated in the input's precision; k > 1
        bisects on a bracket (closed form below, Chernoff bound above).
      - ``"expected"``: E[best of n] >= target (``confidence`` unused), by bisection.

    Args:
        dist: a :class:`~optscale.TruncatedNormal` (batch-shaped).
        target: score the best sample should reach; broadcasts against the batch.
        confidence: required probability for ``"probability"``, in (0, 1).
        k: how many samples must reach the target (integer >= 1).
        n_min, n_max: integer bounds on n (1 <= n_min <= n_max <= 2**31 - 1).
        errors: ``"status"`` (default) marks bad elements INVALID; ``"raise"`` raises ValueError
            naming the first bad argument, its index and value (needs concrete inputs).

    Returns:
        :class:`~optscale.Solution` ``(n, status, achieved)``; see :class:`~optscale.Status`.

    Example:
        >>> import optscale
        >>> d = optscale.TruncatedNormal(mu=0.9, sigma=0.1)
        >>> sol = optscale.min_samples(d, target=0.95, confidence=0.9)
        >>> int(sol.n), optscale.Status(int(sol.status)).name
        (12, 'OK')
    """
    _check_options(errors, criterion)
    if criterion == "probability" and confidence is None:
        raise ValueError("confidence is required for criterion='probability'")
    _check_ints(k=k, n_min=n_min, n_max=n_max)
    conf = confidence if criterion == "probability" else None
    if errors == "raise":
        _raise_first_invalid("min_samples", mu=dist.mu, sigma=dist.sigma, low=dist.low,
                             high=dist.high, target=target, confidence=conf, k=k, n_min=n_min,
                             n_max=n_max)
    impl = select(dist, target, conf, k, n_min, n_max)
    return impl.min_samples(dist, target, conf, k=k, criterion=criterion, n_min=n_min,
                            n_max=n_max)


def cost_aware_samples(dist: Any, target: Any, cost: Any, *, n_min: Any = 1,
                       n_max: Any = N_MAX_DEFAULT, errors: str = "status") -> Solution:
    """The n in [n_min, n_max] maximising P(best of n >= target) - cost * n.

    The gain is concave in n, so the optimum is the smallest n with F^n (1 - F) <= cost, in
    closed form. ``cost`` is the price of one sample in units of success probability. An
    unreachable target (F(target) == 1) is INFEASIBLE with n = n_min; an optimum beyond n_max is
    INFEASIBLE with n = n_max.

    Example:
        >>> import optscale
        >>> d = optscale.TruncatedNormal(mu=0.9, sigma=0.1)
        >>> int(optscale.cost_aware_samples(d, target=0.95, cost=0.01).n)
        15
    """
    _check_options(errors)
    _check_ints(n_min=n_min, n_max=n_max)
    if errors == "raise":
        _raise_first_invalid("cost_aware_samples", mu=dist.mu, sigma=dist.sigma, low=dist.low,
                             high=dist.high, target=target, cost=cost, n_min=n_min, n_max=n_max)
    impl = select(dist, target, cost, n_min, n_max)
    return impl.cost_aware_samples(dist, target, cost, n_min=n_min, n_max=n_max)


def best_of_n_prob(dist: Any, target: Any, n: Any) -> Any:
    """P(best of n samples >= target) = 1 - F(target)^n, from log F (no rounding of F to 1)."""
    return select(dist, target, n).best_of_n_prob(dist, target, n)


def k_of_n_prob(dist: Any, target: Any, n: Any, k: Any) -> Any:
    """P(at least k of n samples >= target) = I_S(k, n - k + 1) with S = P(X > target)."""
    return select(dist, target, n, k).k_of_n_prob(dist, target, n, k)


def best_of_n_quantile(dist: Any, q: Any, n: Any) -> Any:
    """q-quantile of the best of n samples, F^-1(q^(1/n)), with q^(1/n) kept in log space."""
    return select(dist, q, n).best_of_n_quantile(dist, q, n)


def expected_best(dist: Any, n: Any) -> Any:
    """E[best of n samples] = int_0^1 F^-1(v^(1/n)) dv, by fixed 32-node Gauss-Legendre on a
    variable that clusters nodes at both ends (about 1e-10 absolute on a unit range)."""
    return select(dist, n).expected_best(dist, n)
