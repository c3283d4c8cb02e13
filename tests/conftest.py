"""Test configuration: hypothesis profile (deterministic, no deadline: first calls jit-compile)."""

from hypothesis import settings

settings.register_profile("optscale", deadline=None, derandomize=True, max_examples=60)
settings.load_profile("optscale")
