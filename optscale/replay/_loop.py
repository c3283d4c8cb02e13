"""The per-question Python loop: every method written the obvious way, one sample at a time.

This is the reference the vectorised replay is tested against, and the baseline its benchmark
compares with. OptScale policies go through their online form (``start`` / ``update``), so the
test also checks that the batch replay takes the online decisions.
"""

from __future__ import annotations

import numpy as np

from optscale.replay._methods import (
    ASC,
    DSC,
    ESC,
    BestOfN,
    MajorityVote,
    Method,
    OptScaleMethod,
    Rows,
    WeightedVote,
    asc_stop_probability,
)

__all__ = ["replay_loop"]


def _leader(answers, weights) -> int:
    """Index of the first sample of the leading answer; the earlier leader keeps ties."""
    total: dict[int, float] = {}
    first: dict[int, int] = {}
    lead = None
    for i, (a, w) in enumerate(zip(answers, weights, strict=True)):
        if a < 0:
            continue
        first.setdefault(a, i)
        total[a] = total.get(a, 0.0) + w
        if lead is None or (a != lead and total[a] > total[lead]):
            lead = a
    return 0 if lead is None else first[lead]


def _vote(answers) -> int:
    return _leader(answers, [1.0] * len(answers))


def _window_agrees(answers, n, w) -> bool:
    window = answers[n - w:n]
    return n >= w and window[0] >= 0 and all(a == window[0] for a in window)


def _one(method: Method, setting: int, s, a, length, prior):
    """(n_used, pick) of one setting on one row (s, a: the row's first ``length`` samples)."""
    budget = method.settings()[setting].budget
    cap = min(budget, length)
    if isinstance(method, BestOfN):
        return cap, int(np.argmax(s[:cap]))
    if isinstance(method, (MajorityVote, WeightedVote)):
        weights = [max(x, 0.0) for x in s[:cap]] if isinstance(method, WeightedVote) else \
            [1.0] * cap
        return cap, _leader(a[:cap], weights)
    if isinstance(method, ESC):
        w, _ = method._grid()[setting]
        n = 0
        while True:
            n = min(n + w, cap)
            if (n % w == 0 and _window_agrees(a, n, w)) or n == cap:
                return n, _vote(a[:n])
    if isinstance(method, ASC):
        t, _ = method._grid()[setting]
        for n in range(1, cap + 1):
            counts = sorted(np.bincount([x for x in a[:n] if x >= 0], minlength=2))[::-1]
            if asc_stop_probability(counts[0], counts[1]) >= t or n == cap:
                return n, _vote(a[:n])
    if isinstance(method, DSC):
        w, _ = method._grid()[setting]
        n = min(w, cap)
        if _window_agrees(a, n, w):
            return n, _vote(a[:n])
        distinct = max(len({x for x in a[:n] if x >= 0}), 1)
        n = min(w * 2 ** (distinct - 1), cap)
        while not (_window_agrees(a, n, w) or n == cap):
            n = min(n + w, cap)
            if n == cap:
                break
        return n, _vote(a[:n])
    if isinstance(method, OptScaleMethod):
        policy = method._policies[setting]
        state = policy.start(None if prior is None else (float(prior[0]), float(prior[1])))
        decision = policy.update(state)
        drawn = 0
        while not decision.stop and drawn < length:
            more = min(decision.n_more, length - drawn)
            decision = policy.update(state, s[drawn:drawn + more])
            drawn += more
        return drawn, int(np.argmax(s[:drawn]))
    raise TypeError(f"no loop implementation for {type(method).__name__}")


def replay_loop(method: Method, rows: Rows) -> tuple[np.ndarray, np.ndarray]:
    """Same contract as ``method.replay(rows, prefix)``, one row and one setting at a time."""
    settings = len(method.settings())
    n_used = np.zeros((settings, len(rows.lengths)), np.int64)
    pick = np.zeros_like(n_used)
    for b, length in enumerate(rows.lengths):
        length = int(length)
        s = [float(x) for x in rows.scores[b, :length]]
        a = [int(x) for x in rows.answers[b, :length]]
        prior = None if rows.prior is None else rows.prior[b]
        for k in range(settings):
            n_used[k, b], pick[k, b] = _one(method, k, s, a, length, prior)
    return n_used, pick
