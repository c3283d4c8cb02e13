"""Backend selection: one API, computed by JAX, the Cython kernels or the NumPy/SciPy reference.

Arrays that already belong to JAX (including tracers inside ``jit``) always take the JAX path, so
the public functions work in a JAX program whatever backend is active; everything else takes the
active backend. The default is the first importable one in ``jax > cython > numpy``, set by the
``OPTSCALE_BACKEND`` environment variable or :func:`set_backend`.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["available_backends", "backend", "set_backend"]

_MODULES = {"jax": "optscale._jax_backend", "cython": "optscale._cython_backend",
            "numpy": "optscale._reference"}
_ORDER = ("jax", "cython", "numpy")
_active: str | None = None


def _load(name: str) -> ModuleType:
    return importlib.import_module(_MODULES[name])


def available_backends() -> tuple[str, ...]:
    """Names of the backends that import on this machine, in default order."""
    names = []
    for name in _ORDER:
        try:
            _load(name)
        except ImportError:
            continue
        names.append(name)
    return tuple(names)


def set_backend(name: str) -> None:
    """Make ``name`` ('jax', 'cython' or 'numpy') the active backend for non-JAX inputs."""
    global _active
    if name not in _MODULES:
        raise ValueError(f"backend must be one of {sorted(_MODULES)}; got {name!r}")
    try:
        _load(name)
    except ImportError as err:
        raise ValueError(f"backend {name!r} is not available here: {err}") from err
    _active = name


def backend() -> str:
    """Name of the active backend."""
    global _active
    if _active is None:
        requested = os.environ.get("OPTSCALE_BACKEND", "").strip().lower()
        if requested:
            set_backend(requested)
        else:
            _active = available_backends()[0]
    return _active


def _is_jax_array(x: Any) -> bool:
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(x, jax.Array)


def _is_float64(x: Any) -> bool:
    # NumPy float64 arrays and scalars; Python floats are weakly typed and follow the others
    return isinstance(x, (np.ndarray, np.generic)) and x.dtype == np.float64


def _jax_computes_float64() -> bool:
    import jax

    return jax.dtypes.canonicalize_dtype(np.float64) == np.float64


class Float32Warning(UserWarning):
    """NumPy float64 input computed in float32 by the JAX backend (JAX's x64 mode is off)."""


_warned = False


def _warn_float32() -> None:
    global _warned
    if _warned:
        return
    _warned = True
    warnings.warn(
        "optscale: NumPy float64 input is computed in float32 by the JAX backend, because "
        "JAX's x64 mode is off (N* can differ from the float64 answer, ~1% of queries on a "
        "random workload). For float64 enable x64 yourself (jax.enable_x64(True)) or pick a "
        "float64 CPU backend: optscale.set_backend('cython') (or 'numpy'), OPTSCALE_BACKEND. "
        "Pass float32 arrays to silence this. (Warned once.)", Float32Warning, stacklevel=4)


def select(*args: Any) -> ModuleType:
    """The backend module for these arguments (distributions are looked into).

    JAX arrays take JAX. Otherwise the active backend. A distribution computation with NumPy
    float64 input on the JAX backend while JAX's x64 mode is off runs in float32 (the
    library never flips the x64 flag) and warns once (:class:`Float32Warning`).
    """
    values: list[Any] = []
    has_dist = False
    for arg in args:
        if hasattr(arg, "params"):
            has_dist = True
            values.extend(arg.params())
        else:
            values.append(arg)
    if any(_is_jax_array(v) for v in values):
        return _load("jax")
    name = backend()
    if (name == "jax" and not _warned and has_dist and any(_is_float64(v) for v in values)
            and not _jax_computes_float64()):
        _warn_float32()
    return _load(name)
