"""pytest-benchmark: replaying 10,000 questions x 64 samples x 48 settings x 20 orders, and the
per-question Python loop on 10 questions (scale by 1,000 to compare)."""

from __future__ import annotations

from benchmarks import _workload
from optscale.replay import evaluate, make_rows


def test_vectorised_replay(benchmark):
    methods = _workload.replay_methods()
    assert sum(len(m.settings()) for m in methods) == 48
    pool = _workload.replay_pool()
    evaluate(_workload.replay_pool(200), methods, orders=2, folds=2)  # compile outside timing
    benchmark.pedantic(lambda: evaluate(pool, methods, orders=20, folds=5), rounds=1,
                       iterations=1)


def test_loop_replay_10_questions(benchmark):
    methods = _workload.replay_methods()
    rows, _, _ = make_rows(_workload.replay_pool(10), 20, 0)
    benchmark.pedantic(lambda: [_workload.online_replay(m, rows) for m in methods], rounds=1,
                       iterations=1)
