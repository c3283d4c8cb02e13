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
from types import ModuleType
from typing import Any

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


def select(*args: Any) -> ModuleType:
    """The backend module for these arguments (distributions are looked into)."""
    for arg in args:
        values = arg.params() if hasattr(arg, "params") else (arg,)
        if any(_is_jax_array(v) for v in values):
            return _load("jax")
    return _load(backend())
