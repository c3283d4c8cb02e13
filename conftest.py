"""Doctest collection (``--doctest-modules`` over optscale/) skips the modules whose optional
dependency is missing: the compiled extension, JAX, or the server's FastAPI.

The ``extension`` marker: the tests whose outcome depends on whether the compiled extension is
built, that is the Cython backend's test classes (``backend = "cython"``), its doctests, and the
tests comparing every available backend (marked where they are written). CI's second stage
(extension built) runs only these: everything else runs on JAX and NumPy, the same way whether
or not the extension exists, and the first stage covers it.
"""

import importlib.util

import pytest

collect_ignore = []
if importlib.util.find_spec("optscale._fast") is None:
    collect_ignore.append("optscale/_cython_backend.py")
if importlib.util.find_spec("jax") is None:
    collect_ignore += [f"optscale/{m}.py" for m in (
        "_jax_backend", "_special", "_truncnorm", "_order_stats", "_solve")]
if importlib.util.find_spec("fastapi") is None:
    collect_ignore.append("optscale/serve")


def pytest_collection_modifyitems(items):
    for item in items:
        if getattr(getattr(item, "cls", None), "backend", None) == "cython" or \
                item.path.name == "_cython_backend.py":
            item.add_marker(pytest.mark.extension)
