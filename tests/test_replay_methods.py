"""Replay methods and protocol: every vectorised replay against its online policy, stop rules
on hand-made answer sequences, and the calibration/held-out protocol."""

import numpy as np
import pytest
from scipy import integrate, stats

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
from optscale.policies import asc_stop_probability
from optscale.replay import (
    PolicyMethod,
    Pool,
    Rows,
    Tables,
    evaluate,
    markdown_summary,
    write_report,
)
from optscale.replay._prefix import prefix_tables


def random_rows(seed, size=60, width=20, prior=False, tokens=False, nan=False):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, width + 1, size)
    pad = np.arange(width)[None] >= lengths[:, None]
    scores = rng.beta(5, 1.5, (size, width))
    # a few scores slightly outside [0, 1], as real verifiers produce
    scores = np.where(rng.random((size, width)) < 0.02, scores - 1.02, scores)
    if nan:  # some samples the scorer failed on
        scores = np.where(rng.random((size, width)) < 0.1, np.nan, scores)
    scores = np.where(pad, np.nan, scores)
    answers = np.where(pad, -1, rng.choice([-1, 0, 1, 2, 3], p=[.05, .5, .25, .1, .1],
                                           size=(size, width)))
    p = None
    if prior:
        p = np.stack([rng.uniform(0.6, 1.0, size), rng.uniform(0.05, 0.3, size)], 1)
    tok = rng.integers(20, 400, (size, width)).astype(float) if tokens else None
    return Rows(scores, answers, lengths, p, tok)


def one_row(answers, scores=None):
    answers = np.asarray([answers])
    scores = np.full(answers.shape, 0.5) if scores is None else np.asarray([scores], float)
    return Rows(scores, answers, np.array([answers.shape[1]]))


WEIGHTED = Selection("weighted")
BUDGETS = (1, 4, 7, 20)
METHODS = [
    PolicyMethod("BoN", FixedN(), {"n_max": BUDGETS}),
    PolicyMethod("SC", FixedN(selection=Selection("vote")), {"n_max": (3, 20)}),
    PolicyMethod("WSC", FixedN(selection=WEIGHTED), {"selection": (
        WEIGHTED, Selection("weighted", "power", 0.5), Selection("weighted", "softmax", 0.1),
        Selection("weighted", "logodds"), Selection.fit_reference(np.linspace(0, 1, 11))),
        "n_max": (5, 20)}),
    PolicyMethod("ESC", ESC(), {"window": (1, 2, 3, 5), "n_max": (7, 16, 20)}),
    PolicyMethod("ESC-w", ESC(selection=WEIGHTED), {"window": (2,), "n_max": (9,)}),
    PolicyMethod("ASC", ASC(), {"threshold": (0.5, 0.8, 0.95), "n_max": (9, 20)}),
    PolicyMethod("DSC", DSC(), {"window": (1, 2, 3), "n_max": (6, 20)}),
    PolicyMethod("Leader", LeaderPosterior(), {
        "confidence": (0.6, 0.9), "alpha": (0.5, 2.0), "round_size": (1, 3),
        "selection": (Selection("vote"), WEIGHTED), "n_max": (8, 20)}),
    PolicyMethod("O-or-ESC", AnyOf((OptScale0(0.9, n_peek=3, stop_on_target=True),
                                    ESC(window=3)), selection=WEIGHTED),
                 {"members.1.window": (2, 3), "n_max": (6, 20)}),
    PolicyMethod("Leader-or-ASC", AnyOf((LeaderPosterior(0.9), ASC(0.8)), selection=WEIGHTED),
                 {"n_max": (12,)}),
]
OPTSCALE = [
    PolicyMethod("O0", OptScale0(0.95, 0.9, n_peek=4),
                 {"n_peek": (1, 4), "target": (0.9, 0.97), "n_max": (4, 20)}),
    PolicyMethod("O0-sot", OptScale0(0.9, 0.9, n_peek=3, stop_on_target=True),
                 {"n_max": (20,), "selection": (Selection("max"), WEIGHTED)}),
    PolicyMethod("O0-seq", OptScale0(0.9, 0.9, n_peek=2, rule="sequential", round_size=3),
                 {"stop_on_target": (False, True), "n_max": (20,)}),
    PolicyMethod("Ot", OptScaleT(0.9, 0.9, n_peek=0), {"n_max": (20,)}),
]


def check_online(method, rows):
    tables = Tables(rows)
    n, pick = method.replay(rows, tables)
    for s, policy in enumerate(method.policies):
        n2, pick2 = policy.replay(rows.scores, rows.answers, rows.lengths, rows.tokens,
                                  rows.prior)
        bad = np.flatnonzero((n[s] != n2) | (pick[s] != pick2))
        assert not bad.size, (method.settings()[s].label, bad[:5], n[s][bad[:5]],
                              n2[bad[:5]])
        assert np.all((n[s] >= 1) & (n[s] <= np.minimum(policy.n_max, rows.lengths)))


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
@pytest.mark.parametrize("seed", [0, 1])
def test_vectorised_replay_is_the_online_policy(method, seed):
    check_online(method, random_rows(seed, nan=seed == 1))


@pytest.mark.parametrize("method", OPTSCALE, ids=lambda m: m.name)
def test_optscale_replay_is_the_online_policy(method, numpy_backend):
    check_online(method, random_rows(3, prior=True))
    check_online(method, random_rows(4, size=25, prior=True, nan=True))


def test_cost_aware_replay_is_the_online_policy():
    rows = random_rows(5, tokens=True)
    correct = np.random.default_rng(5).random(rows.scores.shape) < 0.5
    for tokens in (rows.tokens, None):
        fit_rows = rows._replace(tokens=tokens)
        method = PolicyMethod("Cost", CostAware(), {
            "price": (1e-4, 1e-3, 1e-2), "round_size": (1, 2), "n_max": (8, 20)})
        check_online(method.fitted(fit_rows, correct), fit_rows)


def test_policy_needs_prior():
    with pytest.raises(ValueError, match="prior"):
        OPTSCALE[3].replay(random_rows(0), Tables(random_rows(0)))


def test_selection_ties_keep_the_earlier_leader():
    rows = one_row([2, 1, 1, 2, 3], [0.1, 0.9, 0.2, 0.8, 0.95])
    pre = prefix_tables(rows.answers)
    vote = Selection("vote").table(rows.scores, rows.answers)
    assert list(vote[0]) == [0, 0, 1, 1, 1]  # 1 leads at 2 votes; 2 ties it, does not take over
    assert list(Selection("max").table(rows.scores, rows.answers)[0]) == [0, 1, 1, 1, 4]
    assert list(pre.top1[0]) == [1, 1, 2, 2, 2]
    assert list(pre.top2[0]) == [0, 1, 1, 2, 2]
    assert list(pre.run[0]) == [1, 1, 2, 1, 1]
    assert list(pre.distinct[0]) == [1, 2, 2, 2, 3]
    # weighted: answer 2 has 0.1 + 0.8 = 0.9 vs answer 1's 0.9 + 0.2 = 1.1
    assert list(WEIGHTED.table(rows.scores, rows.answers)[0]) == [0, 1, 1, 1, 1]
    # log-odds weights can be negative: the leader loses weight and another takes over
    odds = Selection("weighted", "logodds")
    rows = one_row([0, 1, 0], [0.6, 0.55, 0.1])
    assert list(odds.table(rows.scores, rows.answers)[0]) == [0, 0, 1]
    assert odds.choose([0.6, 0.55, 0.1], ["a", "b", "a"]) == 1


def run(method, answers, scores=None):
    rows = one_row(answers, scores)
    n, pick = method.replay(rows, Tables(rows))
    return int(n[0, 0]), int(rows.answers[0, pick[0, 0]])


def test_esc_stop_rule():
    esc = PolicyMethod("ESC", ESC(window=3, n_max=12))
    assert run(esc, [1, 2, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2]) == (6, 1)  # second window agrees
    assert run(esc, [1, 1, 1, 2, 2, 2]) == (3, 1)
    # a window that agrees only across the window boundary does not stop
    assert run(esc, [1, 2, 2, 2, 1, 3, 3, 3, 3, 4, 4, 4]) == (9, 3)
    # no answer breaks agreement; the budget ends it otherwise
    assert run(PolicyMethod("E", ESC(window=2, n_max=5)), [-1, -1, 1, 2, 3, 3, 3]) == (5, 1)


def test_asc_stop_rule():
    asc = PolicyMethod("ASC", ASC(threshold=0.95, n_max=40))
    # all agree: P = 1 - 2^-(v+1) passes 0.95 at v = 4 (0.96875), not at 3 (0.9375)
    assert run(asc, [7] * 40) == (4, 7)
    # an early disagreement needs more agreeing votes: stop when P(v1, 1) >= 0.95
    probs = [asc_stop_probability(v, 1) for v in range(1, 20)]
    need = next(v for v, p in zip(range(1, 20), probs, strict=True) if p >= 0.95)
    assert run(asc, [5, 6] + [5] * 30) == (need + 1, 5)


@pytest.mark.parametrize("v1,v2", [(0, 0), (1, 0), (3, 1), (10, 4), (25, 24)])
def test_asc_probability_closed_form(v1, v2):
    # P(p1 > p2) with (p1, p2) the top-two proportions ~ Beta(v1 + 1, v2 + 1) on p1 / (p1 + p2)
    quad, _ = integrate.quad(stats.beta(v1 + 1, v2 + 1).pdf, 0.5, 1.0)
    assert asc_stop_probability(v1, v2) == pytest.approx(quad, abs=1e-10)


def test_dsc_rule():
    dsc = PolicyMethod("DSC", DSC(window=2, n_max=16))
    assert run(dsc, [4, 4, 1, 2] + [3] * 12) == (2, 4)  # easy: the first window agrees
    # two distinct answers in the first window: pre-allocate 2 * 2 = 4, whose last window agrees
    assert run(dsc, [1, 2, 3, 3] + [1] * 12) == (4, 3)
    # pre-allocated 4; its last window disagrees; expand by 2 until [5, 5] at 8
    assert run(dsc, [1, 2, 2, 1, 5, 6, 5, 5] + [1] * 8) == (8, 5)  # majority of all 8


def test_grid_labels_and_budgets():
    m = PolicyMethod("ESC", ESC(), {"window": (2, 8), "n_max": (4, 16)})
    labels = [s.label for s in m.settings()]
    # window 8 > budget 4 is left out
    assert labels == ["window=2, max_n=4", "window=2, max_n=16", "window=8, max_n=16"]
    assert [s.budget for s in m.settings()] == [4, 16, 16]
    with pytest.raises(ValueError, match="grid setting"):
        PolicyMethod("ESC", ESC(), {"window": (0,)})
    with pytest.raises(TypeError, match="policy"):
        PolicyMethod("x", object())


def labelled_pool(seed=0, size=60, width=16, tokens=True, simulated=False, meta=None):
    rng = np.random.default_rng(seed)
    p = rng.beta(2, 0.7, size)
    correct = rng.random((size, width)) < p[:, None]
    scores = np.clip(np.where(correct, rng.normal(0.9, 0.05, (size, width)),
                              rng.normal(0.7, 0.15, (size, width))), 0, 1)
    answers = np.where(correct, 0, rng.integers(1, 4, (size, width)))
    tok = rng.integers(100, 1000, (size, width)) if tokens else None
    prior = np.stack([np.full(size, 0.85), np.full(size, 0.1)], 1)
    return Pool(scores, np.full(size, width), answers, correct, tok, prior=prior,
                meta={"simulated": simulated, **(meta or {})})


BON = PolicyMethod("BoN", FixedN(), {"n_max": (4, 16)})


def test_protocol_selects_on_calibration_folds_only():
    pool = labelled_pool()
    methods = [BON, PolicyMethod("ESC", ESC(), {"window": (2, 4), "n_max": (16,)}),
               PolicyMethod("ASC", ASC(), {"threshold": (0.8, 0.95), "n_max": (16,)})]
    ev = evaluate(pool, methods, orders=3, folds=4, seed=5)
    folds = ev.folds
    assert sorted(np.bincount(folds)) == [15, 15, 15, 15]
    bon16 = next(s for s in ev.selected if s.method == "BoN" and s.budget == 16)
    assert bon16.accuracy == pytest.approx(ev.bon_accuracy[15])
    for sel in (s for s in ev.selected if s.method in ("ESC", "ASC")):
        idx = [i for i, s in enumerate(ev.settings) if s.method == sel.method]
        expect_correct = np.zeros(ev.correct.shape[1:], bool)
        for k, label in enumerate(sel.chosen):
            cal = folds != k
            acc = ev.correct[idx][:, cal].mean(axis=(1, 2))
            cost = ev.tokens[idx][:, cal].mean(axis=(1, 2))
            bon = ev.correct[1][cal].mean()  # BoN N=16 is setting 1
            ok = acc >= bon
            best = idx[int(np.argmin(np.where(ok, cost, np.inf)))] if ok.any() else \
                idx[int(np.lexsort((cost, -acc))[0])]
            assert ev.settings[best].label == label
            expect_correct[folds == k] = ev.correct[best][folds == k]
        assert sel.accuracy == pytest.approx(expect_correct.mean())


def test_trained_method_never_sees_held_out_labels():
    pool = labelled_pool(7)
    cost = PolicyMethod("Cost", CostAware(), {"price": (1e-4, 1e-3), "n_max": (16,)})
    ev = evaluate(pool, [BON, cost], orders=2, folds=3, seed=1)
    # flip the held-out fold's labels: its numbers change, the chosen settings and the other
    # folds' gain models do not
    flipped = Pool(pool.scores, pool.lengths, pool.answers,
                   np.where((ev.folds == 0)[:, None], ~pool.correct, pool.correct), pool.tokens,
                   meta=pool.meta)
    ev2 = evaluate(flipped, [BON, cost], orders=2, folds=3, seed=1)
    s1 = next(s for s in ev.selected if s.method == "Cost")
    s2 = next(s for s in ev2.selected if s.method == "Cost")
    assert s1.chosen[0] == s2.chosen[0]  # fold 0 was chosen on folds 1, 2
    test = ev.folds == 0
    np.testing.assert_array_equal(ev.n_used[2:, test], ev2.n_used[2:, test])


def test_trained_settings_compete_on_cross_fitted_calibration_numbers():
    from optscale.replay._protocol import make_rows

    pool = labelled_pool(7)
    cost = PolicyMethod("Cost", CostAware(round_size=4), {"price": (1e-5, 1e-4), "n_max": (16,)})
    ev = evaluate(pool, [BON, cost], orders=2, folds=3, seed=1)
    q, orders = pool.size, 2
    rows, correct, _ = make_rows(pool, orders, 1)
    for k, j in ((0, 1), (0, 2), (2, 1)):
        # fold k's calibration numbers on fold j's questions: the fit without folds k and j
        keep = np.repeat(~np.isin(ev.folds, [k, j]), orders)
        fitted = cost.fitted(Rows(*(None if v is None else v[keep] for v in rows)),
                             correct[keep])
        _, pick = fitted.replay(rows, Tables(rows))
        expect = correct[np.arange(q * orders)[None, :], pick].reshape(-1, q, orders)
        idx, cal_correct, _ = ev.fold_calibration[k]
        assert list(idx) == [2, 3]  # the Cost settings, after BoN's two
        np.testing.assert_array_equal(cal_correct[:, ev.folds == j], expect[:, ev.folds == j])
    # flipping fold 1's labels leaves fold 0's view of fold 1 unchanged (no fit behind it saw
    # fold 1), unlike the replay by fold 0's own fit (which did), and tune reads that view
    flipped = Pool(pool.scores, pool.lengths, pool.answers,
                   np.where((ev.folds == 1)[:, None], ~pool.correct, pool.correct), pool.tokens,
                   meta=pool.meta)
    ev2 = evaluate(flipped, [BON, cost], orders=2, folds=3, seed=1)
    on1 = ev.folds == 1
    np.testing.assert_array_equal(ev.fold_calibration[0][2][:, on1],
                                  ev2.fold_calibration[0][2][:, on1])
    assert not np.array_equal(ev.fold_cost[0][2:, on1], ev2.fold_cost[0][2:, on1])
    acc, spent = ev.calibration(0)
    cal = ev.folds != 0
    np.testing.assert_allclose(acc[2:], ev.fold_calibration[0][1][:, cal].mean(axis=2))
    np.testing.assert_allclose(acc[:2], ev.fold_correct[0][:2][:, cal].mean(axis=2))
    np.testing.assert_allclose(spent[2:], ev.fold_calibration[0][2][:, cal].mean(axis=(1, 2)))
    # an untrained pool has no cross-fitted view
    assert evaluate(pool, [BON], orders=2, folds=3).fold_calibration == ()


def test_two_folds_cross_fit_over_halves_and_tiny_pools_say_so():
    import warnings

    pool = labelled_pool(5, size=20)
    cost = PolicyMethod("Cost", CostAware(round_size=4), {"price": (1e-5, 1e-4), "n_max": (16,)})
    ev = evaluate(pool, [BON, cost], orders=2, folds=2, seed=4)
    # fold 0's view of one half of fold 1 comes from the fit on fold 1's other half only:
    # flipping that half's labels changes nothing in it
    half = np.flatnonzero(ev.folds == 1)[0::2]
    flip = np.zeros(pool.size, bool)
    flip[half] = True
    flipped = Pool(pool.scores, pool.lengths, pool.answers,
                   np.where(flip[:, None], ~pool.correct, pool.correct), pool.tokens,
                   meta=pool.meta)
    ev2 = evaluate(flipped, [BON, cost], orders=2, folds=2, seed=4)
    np.testing.assert_array_equal(ev.fold_calibration[0][2][:, flip],
                                  ev2.fold_calibration[0][2][:, flip])
    assert not np.array_equal(ev.fold_cost[0][2:, flip], ev2.fold_cost[0][2:, flip])
    assert not any("cross-fit" in n for n in ev.notes)
    # one question per fold: nothing to fit on without it, and the report says so
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        tiny = evaluate(labelled_pool(5, size=2), [BON, cost], orders=2, folds=2)
    assert any("too few questions to cross-fit" in n for n in tiny.notes)


def test_budget_choice_does_not_depend_on_summation_order():
    from optscale.replay._tune import Objective

    rng = np.random.default_rng(0)
    objective = Objective("budget", 8.0)
    for _ in range(200):
        # discrete per-question accuracies; setting 1 is setting 0 over permuted questions
        # (equal means whose floating-point sums may differ in the last bit)
        base = rng.integers(0, 21, 30)
        per_question = np.stack([np.clip(base + rng.integers(-2, 3, 30) * (rng.random(30) < 0.2),
                                         0, 20) for _ in range(6)]) / 20
        per_question[1] = per_question[0][rng.permutation(30)]
        cost = rng.uniform(0, 8, 6)
        assert objective.choose(per_question, cost) == objective.choose(
            np.asfortranarray(per_question), cost) == objective.choose(
            per_question[::-1][::-1].copy(order="F"), cost)


def test_reduction_against_bon_at_matched_accuracy():
    pool = labelled_pool(1)
    asc_m = PolicyMethod("ASC", ASC(threshold=0.9, n_max=16))
    ev = evaluate(pool, [PolicyMethod("BoN", FixedN(16)), asc_m], orders=4, folds=3)
    asc = next(s for s in ev.selected if s.method == "ASC")
    reach = ev.bon_accuracy >= asc.accuracy - 0.005 - 1e-12
    if reach.any():
        assert asc.matched_n == np.flatnonzero(reach)[np.argmin(ev.bon_cost[reach])] + 1
        assert asc.reduction == pytest.approx(1 - asc.tokens / ev.bon_cost[reach].min())
    else:
        assert asc.matched_n == 0 and np.isnan(asc.reduction)
    assert asc.gain == pytest.approx(asc.accuracy - ev.bon_accuracy[15])
    assert asc.saving == pytest.approx(1 - asc.tokens / ev.bon_cost[15])


def test_references():
    pool = labelled_pool(3)
    methods = [BON, PolicyMethod("SC", FixedN(16, Selection("vote"))),
               PolicyMethod("ESC", ESC(), {"window": (2, 4), "n_max": (16,)})]
    by = {}
    for ref in ("bon", "sc", "best-fixed"):
        ev = evaluate(pool, methods, orders=2, folds=2, reference=ref)
        by[ref] = next(s for s in ev.selected if s.method == "ESC")
        assert ev.reference == ref
    assert by["sc"].gain != by["bon"].gain or by["sc"].chosen != by["bon"].chosen
    with pytest.raises(ValueError, match="reference"):
        evaluate(pool, methods, reference="oracle")


def test_budget_beyond_the_pool_is_clipped_and_said(tmp_path):
    pool = labelled_pool(2, width=10)
    ev = evaluate(pool, [PolicyMethod("BoN", FixedN(), {"n_max": (8, 64)})], orders=2,
                  folds=2)
    clipped = [s.clipped for s in ev.selected]
    assert clipped == [False, True]
    assert any("64" in n and "clipped" in n for n in ev.notes)
    text = markdown_summary(ev)
    assert "64 (clipped to 10)" in text and "clipped" in text


def test_meaningless_scores_run_votes_only():
    pool = labelled_pool(5, meta={"scores_meaningless": True})
    methods = [BON, PolicyMethod("SC", FixedN(16, Selection("vote"))),
               PolicyMethod("Leader", LeaderPosterior(), {
                   "selection": (Selection("vote"), WEIGHTED), "n_max": (16,)})]
    ev = evaluate(pool, methods, orders=2, folds=2)
    assert "BoN" in ev.skipped and ev.reference == "sc"
    assert [s.label for s in ev.settings if s.method == "Leader"] == [
        "select=vote, max_n=16"]


def test_non_monotone_bon_is_flagged():
    pool = labelled_pool(6)
    # a verifier that prefers wrong answers: Best-of-N falls with N
    bad = Pool(np.where(pool.correct, 0.1, 0.9), pool.lengths, pool.answers, pool.correct,
               pool.tokens)
    ev = evaluate(bad, [BON, PolicyMethod("SC", FixedN(16, Selection("vote")))], orders=2,
                  folds=2)
    assert not ev.bon_monotone
    assert "not monotone" in markdown_summary(ev)


def test_pool_without_tokens_counts_samples(tmp_path):
    pool = labelled_pool(2, tokens=False, simulated=True)
    ev = evaluate(pool, [PolicyMethod("BoN", FixedN(8)), PolicyMethod("ESC", ESC(n_max=8))],
                  orders=2, folds=2)
    assert ev.cost_name == "samples" and np.isnan(ev.selected[0].tokens)
    np.testing.assert_allclose(ev.bon_cost, np.arange(1, 17))
    text = markdown_summary(ev)
    assert "SIMULATED" in text and "samples saved at matched accuracy" in text
    written = write_report(ev, str(tmp_path / "out"))
    names = {p.split("/")[-1] for p in written}
    assert {"report.md", "selected.csv", "settings.csv", "bon_curve.csv"} <= names


def test_evaluate_rejects_bad_input():
    pool = labelled_pool()
    with pytest.raises(ValueError, match="folds"):
        evaluate(pool, [BON], folds=1)
    with pytest.raises(ValueError, match="orders"):
        evaluate(pool, [BON], orders=0)
    unlabelled = Pool(pool.scores, pool.lengths, pool.answers)
    with pytest.raises(ValueError, match="correctness"):
        evaluate(unlabelled, [BON])
    with pytest.raises(ValueError, match="threshold"):
        ASC(threshold=1.5)


def test_optscale_t_skipped_without_prior():
    pool = labelled_pool()
    pool = Pool(pool.scores, pool.lengths, pool.answers, pool.correct, pool.tokens)
    ev = evaluate(pool, [PolicyMethod("BoN", FixedN(8)), OPTSCALE[3]], orders=1, folds=2)
    assert "Ot" in ev.skipped and all(s.method == "BoN" for s in ev.settings)


def test_verifier_cost_is_charged_to_verifier_methods_only():
    pool = labelled_pool(4)
    methods = [PolicyMethod("BoN", FixedN(8)), PolicyMethod("SC", FixedN(8, Selection("vote"))),
               PolicyMethod("ESC", ESC(n_max=8))]
    plain = evaluate(pool, methods, orders=2, folds=2)
    charged = evaluate(pool, methods, orders=2, folds=2, verifier_tokens=100.0)
    np.testing.assert_allclose(charged.tokens[0], plain.tokens[0] + 100.0 * plain.n_used[0])
    np.testing.assert_array_equal(charged.tokens[1:], plain.tokens[1:])
    np.testing.assert_allclose(charged.bon_cost, plain.bon_cost + 100.0 * np.arange(1, 17))
    assert "100 per sample scored" in markdown_summary(charged)
    with pytest.raises(ValueError, match="verifier_tokens"):
        evaluate(labelled_pool(tokens=False), methods, verifier_tokens=1.0)


def test_gain_model_round_trip():
    rows = random_rows(8, tokens=True)
    correct = np.random.default_rng(8).random(rows.scores.shape) < 0.4
    model = GainModel.fit(rows.scores, rows.answers, correct, rows.lengths, WEIGHTED, 12, 2,
                          rows.tokens)
    assert GainModel.from_dict(model.to_dict()) == model
    assert np.asarray(model.table).shape == (12, 10)
    with pytest.raises(ValueError, match="gain model"):
        CostAware().update(CostAware().start(), [0.5], ["a"])


def test_tune_chooses_each_fold_on_the_others_only():
    from optscale.replay._tune import Objective, tune

    pool = labelled_pool(9)
    methods = [BON, PolicyMethod("ESC", ESC(), {"window": (2, 4), "n_max": (8, 16)}),
               PolicyMethod("Cost", CostAware(), {"price": (1e-4, 1e-3), "n_max": (16,)})]
    objective = Objective("budget", 4000.0)
    res = tune(pool, methods, objective, orders=2, folds=3, seed=2)
    ev = res.evaluation
    for k, label in enumerate(res.heldout["chosen_per_fold"]):
        i = objective.choose(*ev.calibration(k))
        assert label == f"{ev.settings[i].method}: {ev.settings[i].label}"
    held = np.concatenate([ev.fold_correct[k][
        ev.settings.index(next(s for s in ev.settings if f"{s.method}: {s.label}" == lab)),
        ev.folds == k] for k, lab in enumerate(res.heldout["chosen_per_fold"])])
    assert res.heldout["accuracy"] == pytest.approx(held.mean())
    assert res.policy.n_max <= 16 and (not isinstance(res.policy, CostAware)
                                       or res.policy.model is not None)


def test_method_keys_list_every_standard_method():
    from optscale.replay._methods import DEFAULT_METHODS, METHOD_KEYS, standard_methods

    assert set(METHOD_KEYS) == set(standard_methods()) and set(DEFAULT_METHODS) <= set(METHOD_KEYS)
