"""The replay's shared, vectorised intermediate results against their slow forms, value for
value: hold probabilities of every prefix and budget (against the dense per-prefix formula),
gain-model fits (against a loop over n), tables taken from a superset of rows, decisions that
share a memo, fits and decisions shared across methods, and per-fold arrays stacked on use."""

import numpy as np
import pytest
from scipy.special import ndtr

from optscale import (
    ESC,
    AnyOf,
    CostAware,
    GainModel,
    LeaderPosterior,
    OptScale0,
    Selection,
)
from optscale.policies import hold_probability
from optscale.policies._leader import prefix_holds, prefix_probabilities
from optscale.replay import PolicyMethod, Rows, Tables, evaluate
from optscale.replay._prefix import prefix_tables
from tests._data import labelled_pool

SELECTIONS = (Selection("vote"), Selection("weighted"), Selection("weighted", "power", 0.5),
              Selection("weighted", "logodds"))  # log-odds weights can be negative


def ragged(seed, size=70, width=24, codes=5):
    """Rows with ragged lengths, unanswered and unscored samples, and ``codes`` answers."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, width + 1, size)
    pad = np.arange(width)[None] >= lengths[:, None]
    scores = np.where(rng.random((size, width)) < 0.1, np.nan, rng.beta(4, 1.5, (size, width)))
    answers = rng.integers(-1, codes, (size, width)) if codes else np.full((size, width), -1)
    tokens = rng.integers(10, 500, (size, width)).astype(float)
    return Rows(np.where(pad, np.nan, scores), np.where(pad, -1, answers), lengths, None,
                np.where(pad, 0.0, tokens))


def dense_hold(weight, count, lead, remaining, alpha, new_weight):
    """The module docstring's formula over the full [B, C] table (the slow form)."""
    weight, count = np.asarray(weight, np.float64), np.asarray(count, np.float64)
    if weight.shape[1] == 0:
        weight, count = np.zeros((weight.shape[0], 1)), np.zeros((weight.shape[0], 1))
    rows = np.arange(weight.shape[0])
    has_lead = lead >= 0
    li = np.where(has_lead, lead, 0)
    seen = count > 0
    a = np.where(seen, alpha + count, 0.0)
    total = a.sum(axis=1) + alpha
    r = np.asarray(remaining, np.float64)
    f = r * (total + r) / (total + 1.0)
    m = np.where(seen, weight / np.maximum(count, 1.0), 0.0)
    p = a / total[:, None]
    p_l, m_l, w_l = p[rows, li], m[rows, li], weight[rows, li]

    def tail(mean, var):
        sd = np.sqrt(np.maximum(var, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(sd > 0, -mean / np.where(sd > 0, sd, 1.0),
                         np.where(mean < 0, np.inf, -np.inf))
        return ndtr(z)

    mean = (w_l[:, None] - weight) + r[:, None] * (m_l[:, None] * p_l[:, None] - m * p)
    var = f[:, None] * (m_l[:, None] ** 2 * p_l[:, None] * (1 - p_l[:, None])
                        + m**2 * p * (1 - p) + 2 * m_l[:, None] * m * p_l[:, None] * p)
    challenger = seen.copy()
    challenger[rows, li] = False
    lose = np.where(challenger, tail(mean, var), 0.0).sum(axis=1)
    p_new = alpha / total
    new_mean = w_l + r * (m_l * p_l - new_weight * p_new)
    new_var = f * (m_l**2 * p_l * (1 - p_l) + new_weight**2 * p_new * (1 - p_new)
                   + 2 * m_l * new_weight * p_l * p_new)
    lose = lose + tail(new_mean, new_var)
    return np.where(has_lead, np.clip(1.0 - lose, 0.0, 1.0), 0.0)


def loop_holds(scores, answers, chosen, selection, alpha, n_max):
    """Prefix by prefix, the dense formula over all rows (the slow form of prefix_holds)."""
    size, width = scores.shape
    b = np.arange(size)
    codes = int(answers.max(initial=-1)) + 1
    w = selection.weights(scores)
    cum_w = np.cumsum(w, axis=1)
    top = float(selection.weights(np.array([selection.high]))[0])
    count = np.zeros((size, codes + 1))
    weight = np.zeros((size, codes + 1))
    prob = np.zeros((size, width))
    for j in range(min(width, n_max)):
        a = answers[:, j]
        c = np.where(a >= 0, a, codes)
        count[b, c] += a >= 0
        weight[b, c] += np.where(a >= 0, w[:, j], 0.0)
        prob[:, j] = dense_hold(weight[:, :codes], count[:, :codes], answers[b, chosen[:, j]],
                                np.full(size, n_max - (j + 1)), alpha,
                                (cum_w[:, j] + top) / (j + 2))
    return prob


@pytest.mark.parametrize("codes", [1, 4, 9, 20])
def test_hold_probability_is_the_dense_formula(codes):
    rng = np.random.default_rng(codes)
    size = 400
    count = np.where(rng.random((size, codes)) < 0.5, rng.integers(0, 9, (size, codes)), 0)
    weight = count * rng.uniform(-0.5, 1.0, (size, codes))  # some negative (log-odds)
    lead = np.where(rng.random(size) < 0.1, -1, rng.integers(0, codes, size))
    remaining = rng.integers(0, 40, size)
    new_weight = rng.uniform(0, 1, size)
    for alpha in (0.3, 1.0, 4.0):
        got = hold_probability(weight, count, lead, remaining, alpha, new_weight)
        assert np.array_equal(got, dense_hold(weight, count, lead, remaining, alpha,
                                              new_weight))
    # non-contiguous inputs (a column slice, as an online caller may pass)
    wide_w, wide_c = np.pad(weight, ((0, 0), (0, 2))), np.pad(count, ((0, 0), (0, 2)))
    assert np.array_equal(
        hold_probability(wide_w[:, :codes], wide_c[:, :codes], lead, remaining, 2.0, new_weight),
        dense_hold(weight, count, lead, remaining, 2.0, new_weight))


@pytest.mark.parametrize("codes", [0, 1, 4, 9, 13])
@pytest.mark.parametrize("selection", SELECTIONS, ids=lambda s: s.describe())
def test_prefix_holds_are_the_prefix_by_prefix_formula(codes, selection):
    rows = ragged(codes, codes=codes)
    chosen = selection.table(rows.scores, rows.answers)
    settings = [(alpha, n) for alpha in (0.5, 2.0) for n in (1, 5, 24, 40)]
    got = prefix_holds(rows.scores, rows.answers, chosen, selection, settings)
    for (alpha, n_max), table in zip(settings, got, strict=True):
        want = loop_holds(rows.scores, rows.answers, chosen, selection, alpha, n_max)
        assert np.array_equal(table, want), (alpha, n_max)
    assert np.array_equal(prefix_probabilities(rows.scores, rows.answers, chosen, selection,
                                               2.0, 5), got[1 + 4])


def test_prefix_holds_in_blocks_of_rows(monkeypatch):
    """Rows are processed in blocks (bounded memory): the values do not depend on them."""
    import optscale.policies._leader as leader

    rows = ragged(7, size=90, codes=9)
    selection = Selection("weighted")
    chosen = selection.table(rows.scores, rows.answers)
    whole = prefix_holds(rows.scores, rows.answers, chosen, selection, [(2.0, 16), (1.0, 30)])
    monkeypatch.setattr(leader, "_BLOCK", 24 * 9 * 7)  # blocks of 7 rows
    blocks = prefix_holds(rows.scores, rows.answers, chosen, selection, [(2.0, 16), (1.0, 30)])
    assert all(np.array_equal(a, b) for a, b in zip(whole, blocks, strict=True))


def loop_gain_table(table_of, hold_of, correct, lengths, n_max, round_size, width,
                    shrink=10.0):
    """GainModel's table, n by n (the slow form)."""
    rows = np.arange(len(lengths))
    table = np.zeros((n_max, 10))
    for n in range(1, min(n_max, width)):
        after = min(n + round_size, n_max, width)
        ok = lengths >= after
        if not ok.any():
            continue
        now = correct[rows, table_of[:, n - 1]]
        then = correct[rows, table_of[:, after - 1]]
        delta = (then.astype(np.float64) - now)[ok]
        b = np.clip((hold_of[ok, n - 1] * 10).astype(np.int64), 0, 9)
        table[n] = ((np.bincount(b, delta, minlength=10) + shrink * delta.mean())
                    / (np.bincount(b, minlength=10) + shrink))
    return tuple(tuple(float(v) for v in r) for r in table)


@pytest.mark.parametrize("fractional", [False, True])
def test_gain_model_fit_is_the_loop_over_n(fractional):
    rng = np.random.default_rng(int(fractional))
    for trial in range(12):
        size, width = int(rng.integers(1, 90)), int(rng.integers(1, 30))
        rows = ragged(trial, size=size, width=width, codes=4)
        correct = rng.random((size, width))
        correct = correct if fractional else correct < 0.6
        selection = SELECTIONS[trial % len(SELECTIONS)]
        for n_max in (1, 3, 8, 40):
            prefix = GainModel.prefix_tables(rows.scores, rows.answers, selection, n_max, 2.0)
            for round_size in (1, 2, 8, 50):
                model = GainModel.fit(rows.scores, rows.answers, correct, rows.lengths,
                                      selection, n_max, round_size, rows.tokens, 2.0,
                                      prefix=prefix)
                assert model.table == loop_gain_table(*prefix, correct, rows.lengths, n_max,
                                                      round_size, width)


def test_subset_tables_are_the_subset_rows_tables():
    rows = ragged(11, size=80, codes=12)
    keep = np.random.default_rng(1).random(80) < 0.7
    keep[np.argmax((rows.answers == 11).any(axis=1))] = True  # the same answer columns
    sub = Tables(rows).subset(keep)
    direct = Tables(sub.rows)
    assert all(np.array_equal(a, b) for a, b in zip(sub.prefix, direct.prefix, strict=True))
    for selection in SELECTIONS:
        assert np.array_equal(sub.chosen(selection), direct.chosen(selection))
        for setting in ((2.0, 8), (4.0, 24)):
            assert np.array_equal(sub.hold(selection, *setting),
                                  direct.hold(selection, *setting))
    # a cost-aware fit from the caller's tables is the fit from the rows alone
    correct = np.random.default_rng(2).random(sub.rows.scores.shape) < 0.5
    method = PolicyMethod("Cost", CostAware(), {"price": (1e-4,), "round_size": (2, 8),
                                                "n_max": (8, 24)})
    a = method.fitted(sub.rows, correct, sub).policies
    b = method.fitted(sub.rows, correct).policies
    assert [p.model for p in a] == [p.model for p in b]


def test_decide_memo_gives_each_settings_own_decision(numpy_backend):
    """The memo keeps the predictive nodes, log F and P(success) of each (row, n) per target;
    settings that differ in target, confidence and budget (growing and shrinking) decide as
    they would alone."""
    rng = np.random.default_rng(3)
    scores = rng.beta(6, 1.5, (40, 4))
    base = OptScale0(0.9, predictive=True, n_peek=4, n_max=32)
    fit = base.fit(scores)
    memo: dict = {}
    for target in (0.85, 0.95):
        for confidence in (0.8, 0.95):
            for n_max in (8, 32):
                p = OptScale0(target, confidence, n_peek=4, n_max=n_max, predictive=True)
                shared, alone = p.decide(fit, memo), p.decide(fit)
                assert all(np.array_equal(a, b) for a, b in zip(shared, alone, strict=True))
    assert len([k for k in memo if k != "fit"]) == 5  # the nodes; log F, P(success) per target
    with pytest.raises(ValueError, match="another fit"):
        base.decide(base.fit(scores[:, :2]), memo)


def test_methods_sharing_tables_replay_their_online_policies(numpy_backend):
    """Fits and decisions shared across methods (one Tables) give each method's own."""
    rows = ragged(5, size=40, width=20)
    rows = rows._replace(scores=np.where(np.isnan(rows.scores) & (
        np.arange(20)[None] < rows.lengths[:, None]), 0.5, rows.scores))  # one-shot path
    methods = [
        PolicyMethod("O0", OptScale0(0.9, n_peek=2), {"target": (0.9, 0.95), "n_max": (8, 20)}),
        PolicyMethod("O0-sot", OptScale0(0.9, n_peek=2, stop_on_target=True,
                                         selection=Selection("weighted")),
                     {"target": (0.9, 0.95), "n_max": (8, 20)}),
        PolicyMethod("O0-pred", OptScale0(0.9, n_peek=2, predictive=True),
                     {"confidence": (0.8, 0.9), "n_max": (8, 20)}),
        PolicyMethod("hybrid", AnyOf((OptScale0(0.9, n_peek=2, stop_on_target=True),
                                      ESC(window=2))), {"n_max": (8, 20)}),
        PolicyMethod("Leader", LeaderPosterior(), {"round_size": (1, 3, 25),
                                                   "n_max": (8, 20)}),
    ]
    tables = Tables(rows)
    for method in methods:
        n, pick = method.replay(rows, tables)
        for s, policy in enumerate(method.policies):
            n2, pick2 = policy.replay(rows.scores, rows.answers, rows.lengths)
            assert np.array_equal(n[s], n2) and np.array_equal(pick[s], pick2), (
                method.name, method.settings()[s].label)
    assert sum(1 for k in tables._memo if k[0] == "fit") == 1  # one peek, one fit


def test_cost_aware_round_larger_than_the_budget_stops_at_the_budget():
    rows = ragged(6)
    correct = np.random.default_rng(6).random(rows.scores.shape) < 0.5
    method = PolicyMethod("Cost", CostAware(), {"price": (1e-4, 1e-2), "round_size": (4, 32),
                                                "n_max": (3, 20)}).fitted(rows, correct)
    n, _ = method.replay(rows, Tables(rows))
    for s, policy in enumerate(method.policies):
        n2, _ = policy.replay(rows.scores, rows.answers, rows.lengths, rows.tokens)
        assert np.array_equal(n[s], n2)
        if policy.round_size > policy.n_max:
            assert np.array_equal(n[s], np.minimum(policy.n_max, rows.lengths))


def test_per_fold_arrays_stacked_on_use():
    pool = labelled_pool(40, 12, 0, max_tokens=1000)
    esc = PolicyMethod("ESC", ESC(), {"window": (2, 4), "n_max": (8, 12)})
    cost = PolicyMethod("Cost", CostAware(), {"price": (1e-5, 1e-3), "n_max": (8, 12)})
    ev = evaluate(pool, [esc, cost], orders=3, folds=3, seed=4)
    assert len(ev.fold_correct) == len(ev.fold_cost) == 3
    index = ([0, 1], [2, 3, 5], [1, 4, 6, 7], [7, 2])
    for k in range(3):
        test = ev.folds == k
        for arrays, whole in ((ev.fold_correct, ev.correct), (ev.fold_cost, ev.tokens)):
            taken = [arrays.take(k, idx) for idx in index]  # before fold k's array is made
            stacked = arrays[k]
            assert stacked.shape == whole.shape and stacked is arrays[k - 3]
            assert np.array_equal(stacked[:, test], whole[:, test])  # held out: fold k's
            for idx, rows in zip(index, taken, strict=True):
                assert np.array_equal(rows, stacked[idx])
                assert np.array_equal(arrays.take(k, idx), rows)
    # the ESC rows are every fold's; the cost-aware ones differ where the fits differ
    assert all(np.array_equal(ev.fold_correct[k][:4], ev.correct[:4]) for k in range(3))
    assert [a.shape for a in ev.fold_cost[1:]] == [ev.tokens.shape] * 2
    assert any(not np.array_equal(ev.fold_cost[0][4:], ev.fold_cost[k][4:]) for k in (1, 2))
    plain = evaluate(pool, [esc], orders=3, folds=3, seed=4)
    assert all(plain.fold_correct[k] is plain.correct for k in range(3))
    assert np.array_equal(plain.fold_correct.take(2, [1, 3]), plain.correct[[1, 3]])


def test_prefix_tables_of_a_subset_are_its_rows():
    rows = ragged(9, codes=6)
    keep = np.arange(len(rows.lengths)) % 3 != 0
    sub = Tables(rows).subset(keep)
    assert all(np.array_equal(a, b)
               for a, b in zip(sub.prefix, prefix_tables(rows.answers[keep]), strict=True))
