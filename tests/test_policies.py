"""The policy contract, selection rules, the answer-level rule's probability against Monte
Carlo, and policy files."""

from __future__ import annotations

import json

import numpy as np
import pytest

import optscale
from optscale import (
    ASC,
    DSC,
    ESC,
    AnyOf,
    CostAware,
    FixedN,
    GainModel,
    LeaderPosterior,
    OptScale0,
    OptScaleT,
    Selection,
)
from optscale.policies import PolicyFileError, hold_probability, read_policy_file

SELECTIONS = [Selection("max"), Selection("vote"), Selection("weighted"),
              Selection("weighted", "power", 0.3), Selection("weighted", "softmax", 0.05),
              Selection("weighted", "logodds"),
              Selection.fit_reference([0.1, 0.5, 0.5, 0.9, 0.95])]


@pytest.mark.parametrize("selection", SELECTIONS, ids=lambda s: s.describe())
def test_choose_is_the_last_column_of_the_table(selection):
    rng = np.random.default_rng(0)
    scores = rng.uniform(-0.05, 1.05, (40, 12))
    scores[rng.random(scores.shape) < 0.1] = np.nan
    answers = rng.choice([-1, 0, 1, 2, 3, 4], size=scores.shape)
    table = selection.table(scores, answers)
    for b in range(len(scores)):
        for m in (1, 5, 12):
            keys = [None if a < 0 else f"ans{a}" for a in answers[b, :m]]
            assert selection.choose(scores[b, :m], keys) == table[b, m - 1]


def test_weights():
    s = np.array([0.0, 0.25, 0.5, 1.0, np.nan, 1.5])
    np.testing.assert_allclose(Selection("weighted").weights(s), [0, 0.25, 0.5, 1, 0, 1])
    np.testing.assert_allclose(Selection("weighted", "power", 0.5).weights(s),
                               [0, 0.0625, 0.25, 1, 0, 1])
    np.testing.assert_allclose(Selection("weighted", "softmax", 0.5).weights(s)[:4],
                               np.exp((np.array([0, 0.25, 0.5, 1]) - 1) / 0.5))
    np.testing.assert_allclose(Selection("weighted", "logodds").weights(s)[1:3],
                               [np.log(1 / 3), 0.0], atol=1e-12)
    np.testing.assert_allclose(Selection("vote").weights(s), 1.0)
    rank = Selection("weighted", "rank", reference=(0.0, 0.5, 1.0))
    np.testing.assert_allclose(rank.weights(np.array([0.25, 0.5, 2.0])), [1 / 3, 0.5, 1.0])
    on_range = Selection("weighted", low=-1.0, high=1.0)
    np.testing.assert_allclose(on_range.weights(np.array([-1.0, 0.0, 1.0])), [0, 0.5, 1])
    with pytest.raises(ValueError, match="rule"):
        Selection("best")
    with pytest.raises(ValueError, match="temperature"):
        Selection("weighted", "power", 0.0)
    with pytest.raises(ValueError, match="reference"):
        Selection("weighted", "rank")


def test_no_answers_fall_back_to_the_first_sample():
    assert Selection("vote").choose([0.2, 0.9], [None, None]) == 0
    assert Selection("max").choose([np.nan, 0.3]) == 1
    assert Selection("max").choose([]) is None


POLICIES = [FixedN(5), FixedN(5, Selection("vote")), ESC(3, 12), ASC(0.9, 12), DSC(2, 12),
            LeaderPosterior(0.9, 12), AnyOf((ESC(2), ASC(0.9)), n_max=12),
            OptScale0(0.9, n_peek=3, n_max=12, selection=Selection("weighted"))]


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.kind)
def test_contract(policy, numpy_backend):
    rng = np.random.default_rng(1)
    state = policy.start()
    d = policy.update(state)
    assert not d.stop and d.n_more >= 1 and d.chosen is None
    while not d.stop:
        k = d.n_more
        assert 1 <= k <= policy.n_max - len(state.scores)
        scores = rng.uniform(0.3, 1.0, k)
        answers = [str(a) for a in rng.integers(0, 3, k)]
        d = policy.update(state, scores, answers, tokens=rng.integers(10, 50, k))
        assert d.chosen == policy.selection.choose(state.scores, state.answers)
    assert d.n_more == 0 and len(state.scores) <= policy.n_max and d.reason is not None
    with pytest.raises(ValueError, match="has stopped"):
        policy.update(state, [0.5], ["x"])
    with pytest.raises(ValueError, match="answers: expected 2"):
        policy.update(policy.start(), [0.5, 0.6], ["x"])


def test_leader_probability_against_monte_carlo():
    """In the stopping region the rule's probability is close to the Dirichlet-multinomial
    model's own (Monte Carlo, 4000 draws per configuration); it is an approximation (normal gaps,
    union bound), not a strict bound: measured over 200 random configurations, where Monte Carlo
    is >= 0.8 the rule is within +0.06 of it (mean within 0.01)."""
    rng = np.random.default_rng(0)
    high = []
    for _ in range(200):
        c = int(rng.integers(1, 5))
        count = rng.integers(1, 12, c).astype(float)
        m = rng.uniform(0.2, 1.0, c)
        weight = count * m
        lead = int(np.argmax(weight))
        r = int(rng.integers(1, 40))
        alpha = float(rng.choice([0.5, 1.0, 2.0]))
        new_w = float((weight.sum() + 1.0) / (count.sum() + 1))
        rule = float(hold_probability(weight[None], count[None], np.array([lead]),
                                      np.array([r]), alpha, np.array([new_w]))[0])
        p = rng.dirichlet(np.concatenate([alpha + count, [alpha]]), 4000)
        x = np.array([rng.multinomial(r, pi) for pi in p])
        totals = np.concatenate([weight, [0.0]])[None] + x * np.concatenate([m, [new_w]])[None]
        mc = np.mean(np.all(totals[:, [lead]] >= np.delete(totals, lead, axis=1), axis=1))
        assert 0.0 <= rule <= 1.0
        if mc >= 0.8:
            high.append(rule - mc)
    high = np.array(high)
    assert len(high) > 50
    assert high.max() < 0.06 and abs(high.mean()) < 0.01, (high.max(), high.mean())


def test_leader_rule_stops_on_agreement_and_waits_on_zero_evidence():
    rule = LeaderPosterior(confidence=0.9, n_max=32)
    state = rule.start()
    rule.update(state)
    for _ in range(31):
        d = rule.update(state, [0.9], ["42"])
        if d.stop:
            break
    assert d.stop and len(state.scores) < 32 and d.reason == "rule"
    # samples that all weigh 0 (every score at the floor) are no evidence: keep drawing
    state = rule.start()
    rule.update(state)
    d = rule.update(state, [0.0] * 8, ["x"] * 8)
    assert not d.stop and d.confidence < 0.9


def test_anyof_stops_with_its_first_member():
    hybrid = AnyOf((ESC(window=2), FixedN(7)), n_max=20)
    state = hybrid.start()
    d = hybrid.update(state)
    assert d.n_more == 2
    d = hybrid.update(state, [0.5, 0.5], ["a", "b"])
    assert not d.stop and d.n_more == 2
    d = hybrid.update(state, [0.5, 0.5], ["c", "c"])
    assert d.stop and d.reason == "esc:rule"
    assert all(m.n_max == 20 for m in hybrid.members)


def _cost_model():
    table = tuple(tuple(0.05 / (n + 1) for _ in range(10)) for n in range(16))
    return GainModel(16, 1, table, 100.0)


KINDS_EXAMPLES = [
    FixedN(8, Selection("weighted", "softmax", 0.2)), ESC(4, 32), ASC(0.95, 16), DSC(2, 32),
    LeaderPosterior(0.95, 24, alpha=2.0, selection=Selection.fit_reference([0.1, 0.4, 0.9])),
    CostAware(3e-4, 16, model=_cost_model()),
    AnyOf((OptScale0(0.9, stop_on_target=True), ESC(2)), n_max=16),
    OptScale0(0.95, 0.8, n_peek=2, family="beta"), OptScaleT(0.9, n_peek=0, n_max=8),
]


@pytest.mark.parametrize("policy", KINDS_EXAMPLES, ids=lambda p: p.kind)
def test_policy_file_round_trip(policy, tmp_path):
    path = str(tmp_path / "p.json")
    optscale.save_policy(policy, path, objective={"kind": "price", "price": 1e-4},
                         provenance={"pool_sha256": "ab"}, metrics={"accuracy": 0.4})
    loaded = read_policy_file(path)
    assert loaded.policy == policy
    assert loaded.metrics == {"accuracy": 0.4} and loaded.provenance["pool_sha256"] == "ab"
    assert optscale.load_policy(path) == policy


@pytest.mark.parametrize("build", [
    lambda n: FixedN(n_max=n), lambda n: ESC(window=n, n_max=n), lambda n: ESC(n_max=n),
    lambda n: ASC(n_max=n), lambda n: DSC(window=n, n_max=n), lambda n: DSC(n_max=n),
    lambda n: LeaderPosterior(n_max=n), lambda n: LeaderPosterior(round_size=n),
    lambda n: CostAware(n_max=n), lambda n: CostAware(round_size=n),
    lambda n: AnyOf((FixedN(4),), n_max=n), lambda n: OptScale0(0.9, n_max=n),
    lambda n: OptScale0(0.9, round_size=n), lambda n: OptScale0(0.9, n_peek=n, n_max=n),
])
def test_sample_counts_beyond_int32_are_refused_when_built(build):
    # the solvers' n is int32: a larger budget failed only after the peek was paid for
    build(2**31 - 1)
    for n in (2**31, 2**40, 10**400):
        with pytest.raises(ValueError, match=r"must be <= 2147483647 \(a sample count"):
            build(n)


def test_policy_file_errors(tmp_path):
    path = tmp_path / "p.json"

    def fails(text, match):
        path.write_text(text)
        with pytest.raises(PolicyFileError, match=match):
            optscale.load_policy(str(path))

    good = json.loads(json.dumps({"format": "optscale-policy", "version": 1,
                                  "policy": ESC(4, 32).to_dict()}))
    fails("{", r"p.json:1: not JSON")
    fails(json.dumps({**good, "format": "x"}), "format")
    fails(json.dumps({**good, "version": 9}), "version")
    fails(json.dumps({**good, "policy": {"kind": "magic"}}), r"policy.kind: must be one of")
    fails(json.dumps({**good, "policy": {**good["policy"], "windows": 3}}),
          "unknown field.*windows")
    fails(json.dumps({**good, "policy": {**good["policy"], "window": 0}}),
          r"policy\.window: must be >= 1")
    fails(json.dumps({**good, "policy": {**good["policy"], "n_max": 2**40}}),
          r"/p\.json: policy\.n_max: must be <= 2147483647 .*got 1099511627776$")
    fails(json.dumps({**good, "policy": {**good["policy"], "selection": {"rule": "x"}}}),
          "policy.selection")
    fails(json.dumps({**good, "metrics": []}), "metrics: must be an object")
    model = CostAware(3e-4, 16, model=_cost_model()).to_dict()
    for key in ("n_max", "round_size", "table", "tokens_per_sample"):
        broken = {**model, "model": {k: v for k, v in model["model"].items() if k != key}}
        fails(json.dumps({**good, "policy": broken}), rf"p.json: policy.model.{key}: missing")
    for key, value, match in (("n_max", 8.9, "n_max must be an integer; got 8.9"),
                              ("round_size", "2", "round_size must be an integer"),
                              ("table", [[0.0] * 10], r"\.table: must be a list of n_max"),
                              ("tokens_per_sample", None, "tokens_per_sample must be a real")):
        broken = {**model, "model": {**model["model"], key: value}}
        fails(json.dumps({**good, "policy": broken}), rf"policy.model(: )?{match}")
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(PolicyFileError, match="UTF-8"):
        optscale.load_policy(str(path))
