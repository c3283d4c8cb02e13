"""Where the development data lives (``../shared/data`` beside the checkout, or
``$OPTSCALE_SHARED_DATA``); tests that need it skip when it is absent."""

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get(
    "OPTSCALE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def shared_file(relative: str) -> Path:
    """The path of a shared data file, or skip the test when it is not on this machine."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"development data {relative} not available")
    return path
