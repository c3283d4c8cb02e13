"""Test configuration: hypothesis profile (deterministic, no deadline: first calls jit-compile)."""

import pytest
from hypothesis import settings

import optscale

settings.register_profile("optscale", deadline=None, derandomize=True, max_examples=60)
settings.load_profile("optscale")


@pytest.fixture
def numpy_backend():
    """The NumPy backend for one test: where the wiring is under test, not a backend (each is
    tested on its own), it skips JAX compiles that would dominate the test's time."""
    previous = optscale.backend()
    optscale.set_backend("numpy")
    yield
    optscale.set_backend(previous)
