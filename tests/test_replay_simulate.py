"""The simulated default pool: determinism, structure, and that it reproduces its calibration."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import truncnorm

from optscale.replay import _simulate as sim
from optscale.replay._simulate import CALIBRATION, CALIBRATION_TARGETS, simulate_pool

N_CHECK = 20_000  # questions in the pool checked against the calibration table (0.2 s)
# The table's Monte Carlo SDs are for 2,000-question pools and its achieved values come from an
# independent 40,000-question pool, so (value - achieved) has SD mc_sd * sqrt(2000/Q + 2000/40000).
DIFF_SD = np.sqrt(2000 / N_CHECK + 2000 / 40_000)


def _pool_statistics(pool) -> dict[str, float]:
    """The calibrated statistics, computed from the public Pool alone."""
    correct_any = pool.correct.any(axis=1)
    first_correct = np.argmax(pool.correct, axis=1)
    # A question with no correct sample cannot be won by a vote: -2 matches no code.
    correct_code = np.where(correct_any, pool.answers[np.arange(pool.size), first_correct], -2)
    q_mean, q_std = sim._moment_quantiles(pool.scores)
    stats = {f"score_mean_q{lv:02d}": x for lv, x in zip(sim.MOMENT_LEVELS, q_mean, strict=True)}
    stats |= {f"score_std_q{lv:02d}": x for lv, x in zip(sim.MOMENT_LEVELS, q_std, strict=True)}
    bon = sim._bon_accuracy(pool.scores, pool.correct)
    maj = sim._majority_accuracy(pool.answers, correct_code, CALIBRATION.n_distractors + 1)
    stats |= {f"bon_acc_{n}": x for n, x in zip(sim.BON_NS, bon, strict=True)}
    stats |= {f"maj_acc_{n}": x for n, x in zip(sim.MAJ_NS, maj, strict=True)}
    stats["tokens_per_sample"] = pool.tokens.mean()
    return stats


@pytest.fixture(scope="module")
def check_pool():  # one fixed seed: the test is deterministic
    return simulate_pool(N_CHECK, 64, seed=20240611)


def test_deterministic_given_seed():
    a, b = simulate_pool(50, 16, seed=7), simulate_pool(50, 16, seed=7)
    for name in ("scores", "answers", "correct", "tokens", "prior"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.meta == b.meta and a.ids == b.ids


def test_different_seeds_differ():
    a, b = simulate_pool(50, 16, seed=1), simulate_pool(50, 16, seed=2)
    assert not np.array_equal(a.scores, b.scores)
    assert not np.array_equal(a.prior, b.prior)


def test_structure():
    pool = simulate_pool(37, 5, seed=3)
    assert pool.scores.shape == pool.answers.shape == pool.correct.shape == (37, 5)
    assert pool.tokens.shape == (37, 5) and pool.prior.shape == (37, 2)
    assert pool.scores.dtype == np.float64 and pool.answers.dtype == np.int32
    assert pool.correct.dtype == bool and pool.tokens.dtype == np.int64
    np.testing.assert_array_equal(pool.lengths, 5)
    assert np.all((pool.scores >= 0) & (pool.scores <= 1))
    assert np.all((pool.tokens >= 1) & (pool.tokens <= CALIBRATION.tokens_max))
    assert np.all(np.isfinite(pool.prior)) and np.all(pool.prior[:, 1] > 0)
    assert pool.ids[0] == "sim-00000" and pool.ids[-1] == "sim-00036"
    assert pool.simulated and pool.meta["seed"] == 3
    assert "simulated" in pool.meta["source"]


def test_answer_codes(check_pool):
    pool = check_pool
    n_codes = CALIBRATION.n_distractors + 1
    assert pool.answers.min() >= 0 and pool.answers.max() < n_codes
    for q in range(200):
        right, wrong = pool.answers[q, pool.correct[q]], pool.answers[q, ~pool.correct[q]]
        assert len(set(right)) <= 1  # equivalent correct answers share one code
        assert not set(right) & set(wrong)
    # The correct answer's code is shuffled per question: no code is special.
    codes = [pool.answers[q, pool.correct[q]][0] for q in range(pool.size) if pool.correct[q].any()]
    counts = np.bincount(codes, minlength=n_codes)
    assert counts.min() > 0.5 * len(codes) / n_codes
    # Some wrong answers repeat within a question, so they can win a vote.
    repeats = [np.bincount(pool.answers[q, ~pool.correct[q]]).max()
               for q in range(pool.size) if (~pool.correct[q]).sum() >= 10]
    assert np.median(repeats) >= 3


@pytest.mark.parametrize("name", list(CALIBRATION_TARGETS))
def test_reproduces_calibration(check_pool, name):
    # 4 Monte Carlo SDs of the difference (about 0.015 in accuracy, 60 tokens): a drifting model
    # or generator fails while sampling noise essentially never does.
    target = CALIBRATION_TARGETS[name]
    value = float(_pool_statistics(check_pool)[name])
    assert abs(value - target.achieved) <= 4 * DIFF_SD * target.mc_sd, (name, value, target)


def test_calibration_close_to_published():
    # The stored fit against the published numbers: accuracies within 2 standard errors of a
    # 500-question table, mean tokens within 2 %, score means' distance below 1 within 25 %;
    # stds are documented to run under the published ones (a truncated normal cannot reach them).
    for name, t in CALIBRATION_TARGETS.items():
        if name.startswith(("bon", "maj")):
            assert abs(t.achieved - t.target) <= 2 * np.sqrt(t.target * (1 - t.target) / 500)
        elif name == "tokens_per_sample":
            assert abs(t.achieved / t.target - 1) <= 0.02
        elif name.startswith("score_mean"):
            assert abs(np.log((1 - t.achieved) / (1 - t.target))) <= 0.25, name
        else:
            assert 0.6 <= t.achieved / t.target <= 1.3, name


def test_prior_tracks_the_questions(check_pool):
    # The prior is the true (mu, sigma) plus noise: its implied mean score follows the samples'.
    mu0, sigma0 = check_pool.prior.T
    implied = truncnorm.mean(-mu0 / sigma0, (1 - mu0) / sigma0, loc=mu0, scale=sigma0)
    observed = check_pool.scores.mean(axis=1)
    assert np.corrcoef(np.log1p(-implied), np.log1p(-observed))[0, 1] > 0.8


@pytest.mark.parametrize(("mu", "sigma"), [(0.7, 0.1), (1.8, 0.3), (3.0, 0.05), (-0.5, 0.2),
                                           (0.5, 2.0), (1.02, 0.001)])
def test_truncnorm_quantile(mu, sigma):
    u = np.array([1e-9, 0.01, 0.3, 0.5, 0.9, 0.999])
    a, b = (0 - mu) / sigma, (1 - mu) / sigma
    expected = truncnorm.ppf(u, a, b, loc=mu, scale=sigma)
    got = sim._tn_icdf(np.full_like(u, mu), np.full_like(u, sigma), u)
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"n_questions": 0}, "n_questions"), ({"n_questions": 2.5}, "n_questions"),
    ({"n_questions": True}, "n_questions"), ({"n_samples": -1}, "n_samples"),
    ({"n_samples": "8"}, "n_samples"), ({"seed": -3}, "seed")])
def test_validation(kwargs, name):
    with pytest.raises(ValueError, match=name):
        simulate_pool(**kwargs)
