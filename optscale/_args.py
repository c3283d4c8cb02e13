"""Type rules for public inputs, shared by every function and backend.

Numbers and numeric arrays pass (Python scalars unchanged, so that they stay weakly typed and do
not promote float32 arrays); sequences become arrays; JAX arrays and tracers pass untouched.
Anything else is a TypeError naming the argument, and a ragged sequence a ValueError, before any
backend sees it: otherwise one backend would parse the string "0.9" and another reject it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from optscale._backend import _is_jax_array

__all__ = ["checked_dist", "integer", "numeric", "real", "widened"]

_NUMBER = (int, float, np.integer, np.floating)


def widened(value: Any) -> Any:
    """`value` in float32 if it is a float narrower than that (float16, bfloat16, float8), as is
    otherwise (NumPy and JAX arrays, tracers and scalars alike).

    The solvers' arithmetic needs float32 at least (n up to 2**31, log probabilities of 1e-30,
    the dtype tables of every backend): narrower floats are promoted as integers are, on every
    backend and for every public function, and the results come back in float32.
    """
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        return value
    dtype = np.dtype(dtype)
    if dtype.itemsize < 4 and (dtype.kind == "f" or dtype.name.startswith(("float", "bfloat"))):
        return np.float32(value) if isinstance(value, np.generic) else value.astype(np.float32)
    return value


def numeric(name: str, value: Any) -> Any:
    """`value` if it is a number or a numeric (integer or float) array, floats narrower than
    float32 widened to it (:func:`widened`); raises otherwise."""
    if _is_jax_array(value):
        return widened(value)
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a number or a numeric array; got a bool")
    if isinstance(value, _NUMBER):
        return widened(value)
    if isinstance(value, (list, tuple)) or (hasattr(value, "__array__")
                                           and not isinstance(value, np.ndarray)):
        try:
            value = np.asarray(value)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{name} must be a rectangular numeric array; got {err}") from None
    value = widened(value)
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a number or a numeric array; got "
                        f"{type(value).__name__}")
    if value.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a number or a numeric array; got dtype {value.dtype}")
    return value


def checked_dist(dist: Any) -> Any:
    """`dist` with every parameter checked by :func:`numeric` (array-likes converted)."""
    if not dataclasses.is_dataclass(dist):
        raise TypeError(f"dist must be a TruncatedNormal or a ScoreDistribution; got "
                        f"{type(dist).__name__}")
    changes = {}
    for field in dataclasses.fields(dist):
        value = getattr(dist, field.name)
        checked = numeric(field.name, value)
        if checked is not value:
            changes[field.name] = checked
    return dataclasses.replace(dist, **changes) if changes else dist


def integer(owner: str, name: str, value: Any, low: int) -> int:
    """`value` as an int if it is an integer (not a bool) >= low; ValueError/TypeError naming
    ``owner: name`` otherwise (2.5 samples cannot be asked of a generator)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{owner}: {name} must be an integer; got {value!r}")
    if value < low:
        raise ValueError(f"{owner}: {name} must be >= {low}; got {value!r}")
    return int(value)


def real(owner: str, name: str, value: Any) -> float:
    """`value` as a float if it is a finite real number (not a bool); raises otherwise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, _NUMBER):
        raise TypeError(f"{owner}: {name} must be a real number; got {value!r}")
    if not np.isfinite(value):
        raise ValueError(f"{owner}: {name} must be finite; got {value!r}")
    return float(value)
