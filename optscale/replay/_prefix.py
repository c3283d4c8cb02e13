"""Prefix tables: what every baseline needs to know after each of the first m samples.

A replay row is one question in one sample order. For rows of answer codes and scores (both
[B, M], padding after ``lengths``) one pass over the M positions builds, for every prefix length
m = 1..M (column m-1):

- ``top1``, ``top2``: counts of the two most frequent answers: Adaptive-Consistency's stop rule;
- ``run``: length of the run of identical answers ending at m: a window of w samples agrees iff
  run >= w (ESC and DSC);
- ``distinct``: number of distinct answers so far (DSC's difficulty proxy).

Samples without an answer (code -1) count for nothing and break runs. (Which sample each
selection rule picks after each prefix is :meth:`optscale.Selection.table`.) The pass is a
Python loop over M positions of vectorised updates over B rows, so it costs O(B M) time.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Prefix", "prefix_tables"]


class Prefix(NamedTuple):
    """Per-prefix tables, each [B, M] (column m-1 describes the first m samples)."""

    top1: np.ndarray
    top2: np.ndarray
    run: np.ndarray
    distinct: np.ndarray


def prefix_tables(answers: np.ndarray) -> Prefix:
    """Build the tables for rows of answer codes ``answers`` [B, M]."""
    size, width = answers.shape
    codes = int(answers.max(initial=-1)) + 1
    rows = np.arange(size)
    counts = np.zeros((size, codes + 1), np.int32)  # last column: the "no answer" sink
    out = {name: np.zeros((size, width), np.int32) for name in Prefix._fields}
    lead = np.full(size, codes)  # the sink: no leader yet
    top1 = np.zeros(size, np.int32)
    top2 = np.zeros(size, np.int32)
    run = np.zeros(size, np.int32)
    distinct = np.zeros(size, np.int32)
    prev = np.full(size, -1)
    for m in range(width):
        a = answers[:, m]
        has = a >= 0
        c = np.where(has, a, codes)

        new = has & (counts[rows, c] == 0)
        distinct += new
        counts[rows, c] += has
        x = counts[rows, c]
        # only the incremented answer can overtake: compare it with the leader
        was_lead = c == lead
        overtake = has & ~was_lead & (x > top1)
        top2 = np.where(has & was_lead, top2,
                        np.where(overtake, top1, np.where(has, np.maximum(top2, x), top2)))
        top1 = np.where(has & (was_lead | overtake), x, top1)
        lead = np.where(overtake, c, lead)

        run = np.where(has & (a == prev), run + 1, has.astype(np.int32))
        prev = np.where(has, a, -2)  # -2 never equals a code: no answer breaks the run

        out["top1"][:, m] = top1
        out["top2"][:, m] = top2
        out["run"][:, m] = run
        out["distinct"][:, m] = distinct
    return Prefix(**out)
