"""The integers a float dtype holds, stepped over in any array namespace (NumPy or jax.numpy).

Above 2**24 in float32 (2**53 in float64) n + 1 rounds back to n, so a search that steps by
one stops moving; these steps go to the next integer the dtype holds instead, and are the plain
n + 1 and n - 1 below that.
"""

from __future__ import annotations

from typing import Any

__all__ = ["next_n", "prev_n"]


def next_n(xp: Any, n: Any) -> Any:
    """The smallest integer above n that n's dtype holds."""
    n = xp.asarray(n)
    # (Python ints: a float would widen a float32 scalar in NumPy 1.x)
    return xp.maximum(n + 1, xp.nextafter(n, xp.asarray(xp.inf, n.dtype)))


def prev_n(xp: Any, n: Any) -> Any:
    """The largest integer below n that n's dtype holds."""
    n = xp.asarray(n)
    return xp.minimum(n - 1, xp.nextafter(n, xp.asarray(-xp.inf, n.dtype)))
