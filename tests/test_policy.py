"""Policies: online and batch forms agree, decisions follow their rules, coverage claims."""

from __future__ import annotations

import numpy as np
import pytest

import optscale
from benchmarks import _coverage
from optscale import OptScale0, OptScaleT, Stop


def _online(policy, seq, prior=None):
    """Drive the online protocol over a stored sequence; returns (n_used, last decision)."""
    state = policy.start(prior)
    decision = policy.update(state)
    while not decision.stop:
        used = len(state.scores)
        decision = policy.update(state, seq[used:used + decision.n_more])
    return len(state.scores), decision


def _pools(count=12, seed=0, size=80):
    rng = np.random.default_rng(seed)
    mu, sigma = rng.uniform(0.6, 1.0, count), rng.uniform(0.05, 0.2, count)
    x = np.asarray(optscale.TruncatedNormal(mu, sigma).sample(rng, (size,))).T
    return x, (mu + rng.normal(0, 0.05, count), sigma + 0.02)


POLICIES = [
    OptScale0(0.95, 0.9, n_peek=4, n_max=64),
    OptScale0(0.95, 0.9, n_peek=3, n_max=64, rule="sequential", round_size=2),
    OptScale0(0.95, 0.9, n_peek=4, n_max=64, rule="sequential", stop_on_target=True),
    OptScale0(0.95, 0.8, n_peek=6, n_max=64, predictive=True),
    OptScale0(0.9, 0.9, n_peek=4, n_max=64, k=2),
    OptScale0(0.9, n_peek=4, n_max=64, criterion="expected"),
    OptScale0(0.95, n_peek=4, n_max=64, criterion="cost", cost=0.005),
    OptScaleT(0.95, 0.9, n_peek=0, n_max=64),
    OptScaleT(0.95, 0.9, n_peek=2, n_max=64, rule="sequential", predictive=True),
]


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: f"{type(p).__name__}-{p.rule}"
                         f"-{p.criterion}-k{p.k}-pred{int(p.predictive)}"
                         f"-stop{int(p.stop_on_target)}")
def test_batch_replay_takes_the_online_decisions(policy):
    x, prior = _pools()
    run = policy.run(x, prior=prior if policy.uses_prior else None)
    for b in range(len(x)):
        p = (prior[0][b], prior[1][b]) if policy.uses_prior else None
        used, decision = _online(policy, x[b], p)
        assert run.n_used[b] == used, b
        assert run.best_index[b] == decision.best_index
        assert run.best_score[b] == x[b, decision.best_index]
    assert np.all(run.n_used <= policy.n_max) and np.all(run.n_used >= min(policy.n_peek, 1))


def test_online_requests():
    policy = OptScale0(0.95, 0.9, n_peek=4, n_max=20, rule="sequential", round_size=3)
    state = policy.start()
    first = policy.update(state)
    assert (first.stop, first.n_more, first.n_star) == (False, 4, None)
    d = policy.update(state, [0.5, 0.6, 0.55, 0.58])  # hard: N* beyond the budget
    assert d.n_star == 20 and d.n_more == 3 and d.status == optscale.Status.INFEASIBLE
    for _ in range(10):
        if d.stop:
            break
        d = policy.update(state, [0.6] * d.n_more)
    assert d.stop and len(state.scores) == 20  # the budget
    assert policy.update(state).stop  # stays stopped
    with pytest.raises(ValueError, match="has stopped"):
        policy.update(state, [0.99])  # no scores accumulate after a stop
    assert len(state.scores) == 20


def _with_failures(x, seed=1, rate=0.15):
    """The pool with some scores NaN (the scorer failed on those samples)."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random(x.shape) < rate, np.nan, x)


@pytest.mark.parametrize("policy", POLICIES[:3] + POLICIES[7:8], ids=lambda p: p.rule)
def test_unscored_samples_online_equals_batch(policy):
    x, prior = _pools(seed=3)
    x = _with_failures(x)
    run = policy.run(x, prior=prior if policy.uses_prior else None)
    for b in range(len(x)):
        p = (prior[0][b], prior[1][b]) if policy.uses_prior else None
        used, decision = _online(policy, x[b], p)
        assert run.n_used[b] == used, b
        assert run.best_index[b] == decision.best_index
        assert np.isfinite(run.best_score[b])
    assert np.all(run.n_used <= policy.n_max)


def test_unscored_samples_are_never_chosen_or_fitted():
    policy = OptScale0(0.9, 0.5, n_peek=4, n_max=1000)
    state = policy.start()
    policy.update(state)
    d = policy.update(state, [0.93, np.nan, 0.8, 0.85])
    assert d.best_index == 0 and not d.stop
    assert d.n_more == 1 and d.n_star is None  # three scored: one more for the peek
    d = policy.update(state, [0.82])
    clean = policy.start()
    policy.update(clean)
    ref = policy.update(clean, [0.93, 0.8, 0.85, 0.82])
    assert d.n_star == ref.n_star and d.status == ref.status == optscale.Status.OK
    assert d.ks == ref.ks and d.n_more == ref.n_more  # N* counts scored samples
    # stop_on_target does not depend on where a NaN sits: it is checked when the peek has
    # its four scores, whatever their order
    hit = OptScale0(0.9, 0.9, n_peek=4, stop_on_target=True)
    for seq in ([np.nan, 0.95, 0.5, 0.5], [0.95, np.nan, 0.5, 0.5], [0.5, 0.5, 0.95, np.nan]):
        state = hit.start()
        hit.update(state)
        d = hit.update(state, seq)
        assert not d.stop and d.n_more == 1
        d = hit.update(state, [0.5])
        assert d.stop and d.reason == "target" and d.best_index == seq.index(0.95)


def test_diagnose_leaves_unscored_samples_out(numpy_backend):
    policy = OptScale0(0.95)
    with_nan, with_nan_gof = policy.diagnose([[0.5, np.nan, 0.7, 0.6], [0.2, 0.3, 0.4, np.inf]])
    clean, clean_gof = policy.diagnose([[0.5, 0.7, 0.6], [0.2, 0.3, 0.4]])
    np.testing.assert_array_equal(with_nan.information, clean.information)
    for family in clean.families:
        np.testing.assert_array_equal(with_nan_gof[family].pvalue, clean_gof[family].pvalue)
    # with a mask: the NaN is left out besides the masked samples
    masked, _ = policy.diagnose([[0.5, np.nan, 0.7, 0.6, 0.9]], [[1, 1, 1, 1, 0]])
    np.testing.assert_array_equal(masked.information[:, :1], clean.information[:, :1])


def test_update_with_none_adds_nothing():
    policy = OptScale0(0.95, 0.9, n_peek=4)
    state = policy.start()
    assert policy.update(state, None).n_more == 4
    assert state.scores == []
    with pytest.raises(TypeError, match="scores must be numbers"):
        policy.update(state, ["high"])
    with pytest.raises(ValueError, match="1-D"):
        policy.update(state, [[0.5, 0.6]])


def test_all_unscored_draws_up_to_the_budget():
    policy = OptScale0(0.95, 0.9, n_peek=4, n_max=10)
    run = policy.run(np.full((1, 20), np.nan))
    assert run.n_used[0] == 10 and run.reason[0] == Stop.BUDGET


def test_stop_on_target_and_one_shot():
    policy = OptScale0(0.9, 0.9, n_peek=4, stop_on_target=True)
    state = policy.start()
    policy.update(state)
    assert policy.update(state, [0.5, 0.95, 0.6, 0.7]).stop
    one_shot = OptScale0(0.95, 0.9, n_peek=4)
    state = one_shot.start()
    one_shot.update(state)
    d = one_shot.update(state, [0.91, 0.97, 0.88, 0.93])
    assert d.n_more == d.n_star - 4  # everything else in one round
    assert one_shot.update(state, [0.9] * d.n_more).stop


def test_n_star_is_the_solver_on_the_fit():
    x = np.array([[0.81, 0.92, 0.88, 0.97, 0.74]])
    fit = optscale.fit_truncnorm(x)
    dist = optscale.TruncatedNormal(np.asarray(fit.mu), np.asarray(fit.sigma))
    for policy, sol in [
        (OptScale0(0.95, 0.9, n_peek=5, n_max=500),
         optscale.min_samples(dist, 0.95, 0.9, n_max=500)),
        (OptScale0(0.95, 0.9, n_peek=5, n_max=500, k=3),
         optscale.min_samples(dist, 0.95, 0.9, k=3, n_max=500)),
        (OptScale0(0.95, n_peek=5, n_max=500, criterion="cost", cost=0.01),
         optscale.cost_aware_samples(dist, 0.95, 0.01, n_max=500)),
    ]:
        n, status = policy.n_star(x)
        assert int(n[0]) == int(np.asarray(sol.n)[0])


def test_pool_runs_out():
    policy = OptScale0(0.99, 0.9, n_peek=4, n_max=64)
    x = np.full((2, 10), 0.5)
    run = policy.run(x, lengths=[10, 3])
    np.testing.assert_array_equal(run.n_used, [10, 3])
    np.testing.assert_array_equal(run.reason, [Stop.POOL, Stop.POOL])


@pytest.mark.parametrize("kwargs,message", [
    (dict(target=1.5), "target must lie in"), (dict(target=0.9, confidence=1.0), "confidence"),
    (dict(target=0.9, rule="greedy"), "rule must be one of"),
    (dict(target=0.9, criterion="cost"), "cost must be > 0"),
    (dict(target=0.9, n_peek=0), "n_peek must be >= 1"),
    (dict(target=0.9, n_peek=10, n_max=5), "n_max must be >= max"),
    (dict(target=0.9, low=np.nan), "low must be finite"),
    (dict(target=0.9, low=-1.0, high=-2.0), "low must be < high"),
    (dict(target=0.9, prior_std=(0.1, -0.1)), "prior_std must be > 0"),
    (dict(target=0.9, exceedance_prior=(1.0, 0.0)), "exceedance_prior must be > 0"),
    (dict(target=0.9, n_max=0), "n_max must be >= 1"),
    (dict(target=np.inf), "target must be finite"),
])
def test_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OptScale0(**kwargs)


@pytest.mark.parametrize("kwargs,message", [
    (dict(target=0.9, n_peek=2.5), "n_peek must be an integer"),
    (dict(target=0.9, n_max=64.0), "n_max must be an integer"),
    (dict(target=0.9, k=True), "k must be an integer"),
    (dict(target="0.9"), "target must be a real number"),
    (dict(target=0.9, prior_std=0.1), "prior_std must be a pair"),
])
def test_bad_setting_types(kwargs, message):
    with pytest.raises(TypeError, match=message):
        OptScale0(**kwargs)


def test_run_rejects_lengths_beyond_the_stored_scores():
    policy = OptScale0(0.9)
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, 5\]"):
        policy.run(np.full((2, 5), 0.5), lengths=[5, 6])
    with pytest.raises(ValueError, match="lengths must be 2 integers"):
        policy.run(np.full((2, 5), 0.5), lengths=[2.5, 3])


def test_prior_sigma_must_be_positive():
    fit = optscale.fit_truncnorm(np.array([[0.9, 0.8, 0.85]] * 3), prior=(
        np.array([0.9, 0.9, 0.9]), np.array([0.1, 0.0, -0.1])))
    np.testing.assert_array_equal(np.asarray(fit.status),
                                  [optscale.FitStatus.OK] + [optscale.FitStatus.INVALID] * 2)


def test_prior_is_required_for_optscale_t():
    with pytest.raises(ValueError, match="needs prior"):
        OptScaleT(0.9).start()
    with pytest.raises(ValueError, match="needs prior"):
        OptScaleT(0.9).run(np.full((2, 5), 0.5))


def test_coverage():
    """Plug-in with many peek samples covers the nominal confidence within 2 points; with 3-5
    peek samples it falls below, and the posterior-predictive bound does not."""
    mu, sigma = _coverage.questions(2000, seed=11)
    nominal = _coverage.CONFIDENCE
    oracle, _, _ = _coverage.oracle(mu, sigma)
    assert abs(oracle - nominal) < 0.01
    many, _, _ = _coverage.coverage(OptScale0(_coverage.TARGET, nominal, n_peek=256,
                                              n_max=10_000), mu, sigma, seed=1)
    assert abs(many - nominal) <= 0.02
    for n_peek in (3, 4, 5):
        plug, se, _ = _coverage.coverage(OptScale0(_coverage.TARGET, nominal, n_peek=n_peek,
                                                   n_max=10_000), mu, sigma, seed=n_peek)
        pred, _, _ = _coverage.coverage(OptScale0(_coverage.TARGET, nominal, n_peek=n_peek,
                                                  n_max=10_000, predictive=True), mu, sigma,
                                        seed=n_peek)
        assert plug < nominal - 2 * se
        assert pred >= nominal
