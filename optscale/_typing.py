"""Type aliases of the public API, importable without JAX (the core install has none).

``ArrayLike`` is ``jax.typing.ArrayLike`` (arrays, NumPy arrays, Python scalars) and ``Array``
what comes back: a ``jax.Array`` for JAX inputs (and inside ``jax.jit``), a NumPy array from
the NumPy and Cython backends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import jax
    from jax.typing import ArrayLike

    Array = jax.Array | np.ndarray
else:
    ArrayLike = Any
    Array = Any

__all__ = ["Array", "ArrayLike"]
