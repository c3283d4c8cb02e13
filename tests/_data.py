"""Where the development data lives (``../shared/data`` beside the checkout, or
``$OPTSCALE_SHARED_DATA``); tests that need it skip when it is absent. Also a small labelled
synthetic pool for the replay tests."""

import os
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(os.environ.get(
    "OPTSCALE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def shared_file(relative: str) -> Path:
    """The path of a shared data file, or skip the test when it is not on this machine."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"development data {relative} not available")
    return path


def labelled_pool(size: int = 30, width: int = 12, seed: int = 0, max_tokens: int = 900):
    """A pool of ``size`` questions x ``width`` samples: correct samples score ~0.9 and answer
    0, wrong ones score ~0.7 and answer 1-3; tokens in [100, max_tokens)."""
    from optscale.replay import Pool

    rng = np.random.default_rng(seed)
    correct = rng.random((size, width)) < rng.beta(2, 0.7, size)[:, None]
    scores = np.clip(np.where(correct, rng.normal(0.9, 0.05, (size, width)),
                              rng.normal(0.7, 0.15, (size, width))), 0, 1)
    answers = np.where(correct, 0, rng.integers(1, 4, (size, width)))
    return Pool(scores, np.full(size, width), answers, correct,
                rng.integers(100, max_tokens, (size, width)))
