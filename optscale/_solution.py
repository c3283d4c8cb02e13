"""Solver results: a small pytree with a per-element status code instead of NaN or exceptions."""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

__all__ = ["Solution", "Status"]


class Status(enum.IntEnum):
    """Per-element outcome of a solver call.

    OK: ``n`` satisfies the criterion (and ``n - 1`` does not, unless ``n == n_min``).
    TRIVIAL: the target is at or below the score floor ``low``, so any sample reaches it;
        ``n = max(n_min, k)``.
    INFEASIBLE: the criterion cannot be met within ``n_max`` samples (or at all); ``n`` is the
        best choice within the bounds: ``n_max`` for :func:`~optscale.min_samples`, and for
        :func:`~optscale.cost_aware_samples` ``n_max`` or, if the target is unreachable, ``n_min``.
    INVALID: a parameter is out of range (``errors="raise"`` says which); ``n = n_max``.
    """

    OK = 0
    TRIVIAL = 1
    INFEASIBLE = 2
    INVALID = 3


class Solution(NamedTuple):
    """Result of :func:`optscale.min_samples` and :func:`optscale.cost_aware_samples`.

    A NamedTuple, so it is a pytree in JAX (jit/vmap return it as is).

    Attributes:
        n: int32 number of samples, in ``[n_min, n_max]``.
        status: int32 :class:`Status` code per element.
        achieved: the criterion's value at ``n``: ``P(best of n >= target)`` (or at least k of n),
            ``E[best of n]`` for the expected-best criterion; 0 where the input is invalid.
    """

    n: Any
    status: Any
    achieved: Any
