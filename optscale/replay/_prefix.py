"""Prefix tables: what every baseline needs to know after each of the first m samples.

A replay row is one question in one sample order. For rows of answer codes and scores (both
[B, M], padding after ``lengths``) one pass over the M positions builds, for every prefix length
m = 1..M (column m-1):

- ``best``: index of the highest score so far (first on ties): Best-of-N's pick;
- ``vote`` / ``wvote``: index of the first sample of the leading answer by count / by summed
  score clipped at 0 (the earlier leader keeps the lead on ties): majority and PRM-weighted
  vote;
- ``top1``, ``top2``: counts of the two most frequent answers: Adaptive-Consistency's stop rule;
- ``run``: length of the run of identical answers ending at m: a window of w samples agrees iff
  run >= w (ESC and DSC);
- ``distinct``: number of distinct answers so far (DSC's difficulty proxy).

Samples without an answer (code -1) count for nothing in votes and break runs. The pass is a
Python loop over M positions of vectorised updates over B rows, so it costs O(B M) time.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Prefix", "prefix_tables"]


class Prefix(NamedTuple):
    """Per-prefix tables, each [B, M] (column m-1 describes the first m samples)."""

    best: np.ndarray
    vote: np.ndarray
    wvote: np.ndarray
    top1: np.ndarray
    top2: np.ndarray
    run: np.ndarray
    distinct: np.ndarray


def prefix_tables(scores: np.ndarray, answers: np.ndarray) -> Prefix:
    """Build the tables for rows of ``scores`` [B, M] and answer codes ``answers`` [B, M]."""
    size, width = scores.shape
    codes = int(answers.max(initial=-1)) + 1
    rows = np.arange(size)
    counts = np.zeros((size, codes + 1), np.int32)  # last column: the "no answer" sink
    weights = np.zeros((size, codes + 1))
    first = np.zeros((size, codes + 1), np.int32)
    out = {name: np.zeros((size, width), np.int32) for name in Prefix._fields}
    best = np.zeros(size, np.int32)
    best_score = np.full(size, -np.inf)
    lead = np.full(size, codes)  # the sink: no leader yet
    wlead = np.full(size, codes)
    top1 = np.zeros(size, np.int32)
    top2 = np.zeros(size, np.int32)
    run = np.zeros(size, np.int32)
    distinct = np.zeros(size, np.int32)
    prev = np.full(size, -1)
    scores = np.where(np.isnan(scores), -np.inf, scores)
    for m in range(width):
        s, a = scores[:, m], answers[:, m]
        has = a >= 0
        c = np.where(has, a, codes)
        better = s > best_score
        best = np.where(better, m, best)
        best_score = np.where(better, s, best_score)

        new = has & (counts[rows, c] == 0)
        first[rows[new], c[new]] = m
        distinct += new
        counts[rows, c] += has
        # PRM weights are clipped at 0 (scores can sit slightly below the range): with
        # non-negative weights only the incremented answer can take the lead
        weights[rows, c] += np.where(has, np.maximum(s, 0.0), 0.0)
        x = counts[rows, c]
        # only the incremented answer can overtake: compare it with the leader
        was_lead = c == lead
        overtake = has & ~was_lead & (x > top1)
        top2 = np.where(has & was_lead, top2,
                        np.where(overtake, top1, np.where(has, np.maximum(top2, x), top2)))
        top1 = np.where(has & (was_lead | overtake), x, top1)
        lead = np.where(overtake, c, lead)
        wlead = np.where(has & (weights[rows, c] > weights[rows, wlead]) | (wlead == codes) & has,
                         c, wlead)

        run = np.where(has & (a == prev), run + 1, has.astype(np.int32))
        prev = np.where(has, a, -2)  # -2 never equals a code: no answer breaks the run

        out["best"][:, m] = best
        # no answer yet: point at sample 0 (votes then fall back to the first sample)
        out["vote"][:, m] = np.where(lead == codes, 0, first[rows, lead])
        out["wvote"][:, m] = np.where(wlead == codes, 0, first[rows, wlead])
        out["top1"][:, m] = top1
        out["top2"][:, m] = top2
        out["run"][:, m] = run
        out["distinct"][:, m] = distinct
    return Prefix(**out)
