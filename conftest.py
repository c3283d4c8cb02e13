"""Doctest collection (``--doctest-modules`` over optscale/) skips the modules whose optional
dependency is missing: the compiled extension, or JAX."""

import importlib.util

collect_ignore = []
if importlib.util.find_spec("optscale._fast") is None:
    collect_ignore.append("optscale/_cython_backend.py")
if importlib.util.find_spec("jax") is None:
    collect_ignore += [f"optscale/{m}.py" for m in (
        "_jax_backend", "_special", "_truncnorm", "_order_stats", "_solve")]
