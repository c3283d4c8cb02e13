"""Replay methods and protocol: the vectorised replay against the per-question loop, stop rules
on hand-made answer sequences, and the calibration/held-out protocol."""

import numpy as np
import pytest
from scipy import integrate, stats

from optscale import OptScale0, OptScaleT
from optscale.replay import (
    ASC,
    DSC,
    ESC,
    BestOfN,
    MajorityVote,
    OptScaleMethod,
    Pool,
    Rows,
    WeightedVote,
    asc_stop_probability,
    evaluate,
    markdown_summary,
    write_report,
)
from optscale.replay._loop import replay_loop
from optscale.replay._prefix import prefix_tables


def random_rows(seed, size=120, width=20, prior=False):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, width + 1, size)
    pad = np.arange(width)[None] >= lengths[:, None]
    scores = np.where(pad, np.nan, rng.beta(5, 1.5, (size, width)))
    # a few scores slightly outside [0, 1], as real verifiers produce
    scores = np.where(rng.random((size, width)) < 0.02, scores - 1.02, scores)
    answers = np.where(pad, -1, rng.choice([-1, 0, 1, 2, 3], p=[.05, .5, .25, .1, .1],
                                           size=(size, width)))
    p = None
    if prior:
        p = np.stack([rng.uniform(0.6, 1.0, size), rng.uniform(0.05, 0.3, size)], 1)
    return Rows(scores, answers, lengths, p)


def one_row(answers, scores=None):
    answers = np.asarray([answers])
    scores = np.full(answers.shape, 0.5) if scores is None else np.asarray([scores], float)
    return Rows(scores, answers, np.array([answers.shape[1]]))


VOTE_METHODS = [
    BestOfN(budgets=(1, 4, 20)), MajorityVote(budgets=(3, 20)), WeightedVote(budgets=(5, 20)),
    ESC(windows=(1, 2, 3, 5), budgets=(7, 16, 20)),
    ASC(thresholds=(0.5, 0.8, 0.95), budgets=(9, 20)),
    DSC(windows=(1, 2, 3), budgets=(6, 20)),
]


@pytest.mark.parametrize("method", VOTE_METHODS, ids=lambda m: m.name)
@pytest.mark.parametrize("seed", [0, 1])
def test_vectorised_matches_loop(method, seed):
    rows = random_rows(seed)
    n1, p1 = method.replay(rows, prefix_tables(rows.scores, rows.answers))
    n2, p2 = replay_loop(method, rows)
    np.testing.assert_array_equal(n1, n2)
    np.testing.assert_array_equal(p1, p2)
    assert np.all((n1 >= 1) & (n1 <= rows.lengths[None]))


POLICIES = [
    OptScaleMethod("O0", OptScale0(target=0.9), {"target": (0.9, 0.97),
                                                  "confidence": (0.8, 0.95), "n_max": (8, 20)}),
    OptScaleMethod("Ot", OptScaleT(target=0.9, n_peek=2), {"n_max": (16,)}),
    OptScaleMethod("Ot0", OptScaleT(target=0.95, n_peek=0), {"n_max": (12,)}),
    OptScaleMethod("Osot", OptScale0(target=0.9, stop_on_target=True, n_peek=3),
                   {"target": (0.8, 0.95), "n_max": (6, 20)}),
    OptScaleMethod("Oseq", OptScale0(target=0.9, rule="sequential", round_size=2,
                                     stop_on_target=True), {"n_max": (16,)}),
]


@pytest.mark.parametrize("method", POLICIES, ids=lambda m: m.name)
def test_policy_replay_takes_the_online_decisions(method):
    rows = random_rows(3, size=40, prior=True)
    n1, p1 = method.replay(rows, prefix_tables(rows.scores, rows.answers))
    n2, p2 = replay_loop(method, rows)  # through policy.start / policy.update
    np.testing.assert_array_equal(n1, n2)
    np.testing.assert_array_equal(p1, p2)


def test_policy_needs_prior():
    rows = random_rows(0, size=5)
    with pytest.raises(ValueError, match="no prior"):
        POLICIES[1].replay(rows, prefix_tables(rows.scores, rows.answers))


def test_prefix_ties_keep_the_earlier_leader():
    rows = one_row([2, 1, 1, 2, 3], [0.1, 0.9, 0.2, 0.8, 0.95])
    pre = prefix_tables(rows.scores, rows.answers)
    assert list(pre.vote[0]) == [0, 0, 1, 1, 1]  # 1 leads at 2 votes; 2 ties it, does not take over
    assert list(pre.best[0]) == [0, 1, 1, 1, 4]
    assert list(pre.top1[0]) == [1, 1, 2, 2, 2]
    assert list(pre.top2[0]) == [0, 1, 1, 2, 2]
    assert list(pre.run[0]) == [1, 1, 2, 1, 1]
    assert list(pre.distinct[0]) == [1, 2, 2, 2, 3]
    # weighted: answer 2 has 0.1 + 0.8 = 0.9 vs answer 1's 0.9 + 0.2 = 1.1
    assert list(pre.wvote[0]) == [0, 1, 1, 1, 1]


def run(method, answers, scores=None):
    rows = one_row(answers, scores)
    n, pick = method.replay(rows, prefix_tables(rows.scores, rows.answers))
    return int(n[0, 0]), int(rows.answers[0, pick[0, 0]])


def test_esc_stop_rule():
    esc = ESC(windows=(3,), budgets=(12,))
    assert run(esc, [1, 2, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2]) == (6, 1)  # second window agrees
    assert run(esc, [1, 1, 1, 2, 2, 2]) == (3, 1)
    # a window that agrees only across the window boundary does not stop
    assert run(esc, [1, 2, 2, 2, 1, 3, 3, 3, 3, 4, 4, 4]) == (9, 3)
    # no answer breaks agreement; the budget ends it otherwise
    assert run(ESC(windows=(2,), budgets=(5,)), [-1, -1, 1, 2, 3, 3, 3]) == (5, 1)


def test_asc_stop_rule():
    asc = ASC(thresholds=(0.95,), budgets=(40,))
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
    dsc = DSC(windows=(2,), budgets=(16,))
    assert run(dsc, [4, 4, 1, 2] + [3] * 12) == (2, 4)  # easy: the first window agrees
    # two distinct answers in the first window: pre-allocate 2 * 2 = 4, whose last window agrees
    assert run(dsc, [1, 2, 3, 3] + [1] * 12) == (4, 3)
    # pre-allocated 4; its last window disagrees; expand by 2 until [5, 5] at 8
    assert run(dsc, [1, 2, 2, 1, 5, 6, 5, 5] + [1] * 8) == (8, 5)  # majority of all 8


def labelled_pool(seed=0, size=60, width=16, tokens=True, simulated=False):
    rng = np.random.default_rng(seed)
    p = rng.beta(2, 0.7, size)
    correct = rng.random((size, width)) < p[:, None]
    scores = np.clip(np.where(correct, rng.normal(0.9, 0.05, (size, width)),
                              rng.normal(0.7, 0.15, (size, width))), 0, 1)
    answers = np.where(correct, 0, rng.integers(1, 4, (size, width)))
    tok = rng.integers(100, 1000, (size, width)) if tokens else None
    prior = np.stack([np.full(size, 0.85), np.full(size, 0.1)], 1)
    return Pool(scores, np.full(size, width), answers, correct, tok, prior=prior,
                meta={"simulated": simulated})


def test_protocol_selects_on_calibration_folds_only():
    pool = labelled_pool()
    methods = [BestOfN(budgets=(4, 16)), ESC(windows=(2, 4), budgets=(16,)),
               ASC(thresholds=(0.8, 0.95), budgets=(16,))]
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


def test_reduction_against_bon_at_matched_accuracy():
    pool = labelled_pool(1)
    ev = evaluate(pool, [BestOfN(budgets=(16,)), ASC(thresholds=(0.9,), budgets=(16,))],
                  orders=4, folds=3)
    asc = next(s for s in ev.selected if s.method == "ASC")
    reach = ev.bon_accuracy >= asc.accuracy - 0.005 - 1e-12
    if reach.any():
        assert asc.matched_n == np.flatnonzero(reach)[np.argmin(ev.bon_cost[reach])] + 1
        assert asc.reduction == pytest.approx(1 - asc.tokens / ev.bon_cost[reach].min())
    else:
        assert asc.matched_n == 0 and np.isnan(asc.reduction)
    assert asc.gain == pytest.approx(asc.accuracy - ev.bon_accuracy[15])
    assert asc.saving == pytest.approx(1 - asc.tokens / ev.bon_cost[15])


def test_pool_without_tokens_counts_samples(tmp_path):
    pool = labelled_pool(2, tokens=False, simulated=True)
    ev = evaluate(pool, [BestOfN(budgets=(8,)), ESC(budgets=(8,))], orders=2, folds=2)
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
        evaluate(pool, [BestOfN()], folds=1)
    with pytest.raises(ValueError, match="orders"):
        evaluate(pool, [BestOfN()], orders=0)
    unlabelled = Pool(pool.scores, pool.lengths, pool.answers)
    with pytest.raises(ValueError, match="correctness"):
        evaluate(unlabelled, [BestOfN()])
    with pytest.raises(ValueError, match="budgets"):
        ESC(budgets=())
    with pytest.raises(ValueError, match="thresholds"):
        ASC(thresholds=(1.5,))
    with pytest.raises(ValueError, match="not an OptScale field"):
        OptScaleMethod("x", OptScale0(target=0.9), {"nope": (1,)})


def test_optscale_t_skipped_without_prior():
    pool = labelled_pool()
    pool = Pool(pool.scores, pool.lengths, pool.answers, pool.correct, pool.tokens)
    ev = evaluate(pool, [BestOfN(budgets=(8,)), POLICIES[1]], orders=1, folds=2)
    assert "Ot" in ev.skipped and all(s.method == "BoN" for s in ev.settings)


def test_verifier_cost_is_charged_to_verifier_methods_only():
    pool = labelled_pool(4)
    methods = [BestOfN(budgets=(8,)), MajorityVote(budgets=(8,)), ESC(budgets=(8,))]
    plain = evaluate(pool, methods, orders=2, folds=2)
    charged = evaluate(pool, methods, orders=2, folds=2, verifier_tokens=100.0)
    np.testing.assert_allclose(charged.tokens[0], plain.tokens[0] + 100.0 * plain.n_used[0])
    np.testing.assert_array_equal(charged.tokens[1:], plain.tokens[1:])
    np.testing.assert_allclose(charged.bon_cost, plain.bon_cost + 100.0 * np.arange(1, 17))
    assert "100 per sample scored" in markdown_summary(charged)
    with pytest.raises(ValueError, match="verifier_tokens"):
        evaluate(labelled_pool(tokens=False), methods, verifier_tokens=1.0)
