"""Replay speed: the vectorised harness against a per-question Python loop, in one run.

    python benchmarks/replay_table.py [--questions 10000] [--samples 64] [--orders 20]
                                      [--loop-questions 20]

Workload: the simulated pool (``simulate_pool``), 48 method settings (BoN, SC and PRM-weighted
SC at 4 budgets; ESC and ASC at 2 x 4; DSC at 4; OptScale^0 one-shot at 2 targets x 2
confidences x 4 budgets), R random orders. The harness time is ``evaluate`` end to end (orders,
prefix tables, every method, the k-fold selection) after a warm-up on a small pool (JIT
compilation excluded). The loop replays every setting on every (question, order) one at a time,
OptScale through its online ``update``; it is timed on ``--loop-questions`` questions and scaled
to the full pool. Rows: all settings, the baselines alone, OptScale alone (the protocol's
Best-of-N curve is computed from the prefix tables either way). The issue's target: <= 60 s
for 10,000 x 64 x 48 x 20 on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from benchmarks import _workload  # noqa: E402
from optscale.replay import evaluate, make_rows  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=_workload.REPLAY_QUESTIONS)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--orders", type=int, default=20)
    parser.add_argument("--loop-questions", type=int, default=20)
    args = parser.parse_args()

    methods = _workload.replay_methods()
    settings = sum(len(m.settings()) for m in methods)
    groups = {"all 48 settings": methods,
              "baselines (32 settings)": [m for m in methods if not m.name.startswith("Opt")],
              "OptScale^0 (16 settings)": [m for m in methods if m.name.startswith("Opt")]}
    pool = _workload.replay_pool(args.questions, args.samples)
    evaluate(_workload.replay_pool(200, args.samples), methods, orders=2, folds=2)  # warm-up
    small = pool.subset(range(args.loop_questions))
    rows, _, _ = make_rows(small, args.orders, 0)
    loop_time = {}
    for method in methods:
        start = time.perf_counter()
        _workload.online_replay(method, rows)
        loop_time[method.name] = ((time.perf_counter() - start) * args.questions
                                  / args.loop_questions)

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{args.questions:,} questions x {args.samples} samples x {settings} settings x "
          f"{args.orders} orders; loop times scaled from {args.loop_questions} questions")
    print("| methods | vectorised `evaluate` (s) | per-question loop (s) | ratio |")
    print("|---|---|---|---|")
    total = None
    for label, group in groups.items():
        start = time.perf_counter()
        evaluate(pool, group, orders=args.orders, folds=5)
        vectorised = time.perf_counter() - start
        total = vectorised if total is None else total
        loop = sum(loop_time[m.name] for m in group)
        print(f"| {label} | {vectorised:.1f} | {loop:,.0f} | {loop / vectorised:,.0f}x |")
    print(f"target <= 60 s for all 48 settings: {'met' if total <= 60 else 'NOT met'}")


if __name__ == "__main__":
    main()
