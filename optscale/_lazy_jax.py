"""JAX without importing it: ``import optscale`` leaves JAX alone until something needs it.

The distribution classes are JAX pytrees. Registering them needs JAX, so the registration
waits: it runs at once if JAX is already imported, and otherwise right after JAX's own
``import`` finishes (a ``sys.meta_path`` hook that wraps the loader of the ``jax`` package),
so that ``import optscale; import jax; jax.jit(f)(optscale.TruncatedNormal(...))`` works.
"""

from __future__ import annotations

import importlib.abc
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

__all__ = ["register_dataclass", "when_imported"]

_PENDING: list[Callable[[ModuleType], None]] = []
_LOCK = threading.Lock()


def _ready() -> ModuleType | None:
    jax = sys.modules.get("jax")
    return jax if jax is not None and hasattr(jax, "tree_util") else None


def when_imported(callback: Callable[[ModuleType], None]) -> None:
    """Call ``callback(jax)`` now if JAX is imported, else once it is."""
    jax = _ready()
    if jax is not None:
        callback(jax)
        return
    with _LOCK:
        _PENDING.append(callback)
        if not any(isinstance(f, _JaxFinder) for f in sys.meta_path):
            sys.meta_path.insert(0, _JaxFinder())
    jax = _ready()  # imported meanwhile (another thread)
    if jax is not None:
        _flush(jax)


def register_dataclass(cls: type, data_fields: Sequence[str]) -> None:
    """Register ``cls`` as a JAX pytree dataclass (every field an array leaf), now or later."""
    fields = list(data_fields)
    when_imported(lambda jax: jax.tree_util.register_dataclass(
        cls, data_fields=fields, meta_fields=[]))


def _flush(jax: ModuleType) -> None:
    with _LOCK:
        callbacks = list(_PENDING)
        _PENDING.clear()
        for finder in [f for f in sys.meta_path if isinstance(f, _JaxFinder)]:
            sys.meta_path.remove(finder)
    for callback in callbacks:
        callback(jax)


class _JaxFinder(importlib.abc.MetaPathFinder):
    """Finds ``jax`` with the other finders and runs the pending callbacks after its module
    has executed."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "jax":
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        exec_module = getattr(loader, "exec_module", None)
        if exec_module is None:
            return spec

        def exec_then_register(module: ModuleType) -> None:
            exec_module(module)
            _flush(module)

        loader.exec_module = exec_then_register  # this loader instance serves jax only
        return spec
