"""An answer-level stopping rule: stop when the current answer will very likely still win at
the budget, judged from agreement between answers *and* their scores.

The selection rule (a vote, or a score-weighted vote) ranks answer clusters by their totals
W_c (the summed weights of their samples; counts for a plain vote). After n samples with
counts n_c, let the answers of the next samples follow a categorical distribution whose
probabilities have the posterior Dirichlet(alpha + n_1, ..., alpha + n_C, alpha), the last
component standing for "an answer not seen yet". With R = n_max - n samples left, the future
counts X are Dirichlet-multinomial, so with a_c = alpha + n_c, A = sum a, p_c = a_c / A and
f = R (A + R) / (A + 1):

    E[X_c] = R p_c,   Var[X_c] = f p_c (1 - p_c),   Cov[X_c, X_d] = -f p_c p_d.

A sample of cluster c adds its cluster's mean weight m_c = W_c / n_c; a sample of a new answer
adds m_new = (sum of all weights so far + w_top) / (n + 1), the mean with one pseudo-sample at
the top score's weight w_top: an unseen answer is presumed as good as a verifier can say until
the scores say otherwise (a leader whose samples all weigh 0 has no evidence: without the
pseudo-sample its lead would look certain). The leader L keeps the lead against c when the final gap
D_c = (W_L + m_L X_L) - (W_c + m_c X_c) is >= 0, with

    E[D_c] = W_L - W_c + R (m_L p_L - m_c p_c),
    Var[D_c] = f (m_L^2 p_L (1 - p_L) + m_c^2 p_c (1 - p_c) + 2 m_L m_c p_L p_c).

The rule's probability is the union bound over challengers (every other seen answer and the
new-answer pseudo-cluster, which lumps all unseen answers together) with a normal
approximation of each gap:

    P(L still leads at the budget) >= 1 - sum_c Phi(-E[D_c] / sd[D_c]),

and the policy stops when it is >= ``confidence``. The bound is conservative where the union
bound is loose (many challengers) and the normal approximation is rough for small R; it is
compared with Monte Carlo under the same model in the tests. ``alpha`` (the prior
concentration) is a setting: small alpha trusts early agreement more.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy.special import ndtr

from optscale._args import real
from optscale._selection import Selection, answer_codes
from optscale.policies._base import Policy, PolicyState, Step, count

__all__ = ["LeaderPosterior", "hold_probability", "prefix_holds", "prefix_probabilities",
           "state_probability"]


def hold_probability(weight: np.ndarray, count: np.ndarray, lead: np.ndarray,
                     remaining: np.ndarray, alpha: float, new_weight: np.ndarray) -> np.ndarray:
    """The rule's P(leader still leads after ``remaining`` more samples) for B questions.

    Args:
        weight, count: [B, C] per-answer totals and sample counts (count 0: not seen).
        lead: [B] the leader's column (-1: no leader yet, probability 0).
        remaining: [B] samples left in the budget.
        alpha: the Dirichlet concentration of every answer (seen or new).
        new_weight: [B] the weight a sample of a new answer would add.
    """
    return _Gaps.of(weight, count, lead, alpha, new_weight).hold(remaining)


def _tail(mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """Phi(-mean / sd): the normal approximation of P(gap < 0)."""
    sd = np.sqrt(np.maximum(var, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 0, -mean / np.where(sd > 0, sd, 1.0), np.where(mean < 0, np.inf,
                                                                           -np.inf))
    return ndtr(z)


class _Gaps(NamedTuple):
    """What :func:`hold_probability` computes before it knows the samples left: the leader's
    gap to each challenger, E[D_c] = gap + R drift and Var[D_c] = f spread, for the seen
    challengers (their ``row`` and their ``cell`` in the flattened [B, C] table) and for the
    new-answer pseudo-cluster (per row). The budget then costs one pass over the challengers,
    so that the budgets of a grid share the rest."""

    has_lead: np.ndarray  # [B]
    total: np.ndarray  # [B] the Dirichlet posterior's total concentration A
    width: int  # C
    row: np.ndarray  # [K] sorted
    cell: np.ndarray  # [K] row * C + column
    gap: np.ndarray  # [K] W_L - W_c
    drift: np.ndarray  # [K] m_L p_L - m_c p_c
    spread: np.ndarray  # [K] Var[D_c] / f
    new_gap: np.ndarray  # [B] W_L
    new_drift: np.ndarray  # [B]
    new_spread: np.ndarray  # [B]

    @classmethod
    def of(cls, weight: np.ndarray, count: np.ndarray, lead: np.ndarray, alpha: float,
           new_weight: np.ndarray) -> _Gaps:
        # Every value is the same expression, evaluated in the same order, as over the full
        # [B, C] table, so that the probability does not depend on which rows are computed
        # together (nor on this form).
        weight = np.ascontiguousarray(weight, np.float64)
        count = np.ascontiguousarray(count, np.float64)
        if weight.shape[1] == 0:  # no answer yet anywhere: no leader
            weight, count = np.zeros((weight.shape[0], 1)), np.zeros((weight.shape[0], 1))
        size, width = weight.shape
        lead = np.asarray(lead)
        has_lead = lead >= 0
        at_lead = np.arange(size) * width + np.where(has_lead, lead, 0)  # flat positions
        seen = count > 0
        a = count + alpha
        a *= seen
        total = a.sum(axis=1) + alpha
        c_l, w_l = count.ravel()[at_lead], weight.ravel()[at_lead]
        p_l = np.where(c_l > 0, alpha + c_l, 0.0) / total
        m_l = np.where(c_l > 0, w_l / np.maximum(c_l, 1.0), 0.0)
        challenger = seen.ravel()
        challenger[at_lead] = False
        cell = np.flatnonzero(challenger)
        row = cell // width
        c, w = count.ravel()[cell], weight.ravel()[cell]
        p = (alpha + c) / total[row]
        m = w / np.maximum(c, 1.0)
        pl, ml = p_l[row], m_l[row]
        p_new = alpha / total
        new_weight = np.asarray(new_weight, np.float64)
        return cls(has_lead, total, width, row, cell, w_l[row] - w, ml * pl - m * p,
                   ml**2 * pl * (1 - pl) + m**2 * p * (1 - p) + 2 * ml * m * pl * p,
                   w_l, m_l * p_l - new_weight * p_new,
                   m_l**2 * p_l * (1 - p_l) + new_weight**2 * p_new * (1 - p_new)
                   + 2 * m_l * new_weight * p_l * p_new)

    def head(self, size: int) -> _Gaps:
        """The first ``size`` rows."""
        k = int(np.searchsorted(self.row, size))
        return _Gaps(*(v[:size] for v in self[:2]), self.width,
                     *(v[:k] for v in self[3:8]), *(v[:size] for v in self[8:]))

    def hold(self, remaining: np.ndarray) -> np.ndarray:
        """[B] P(the leader still leads) with ``remaining`` [B] samples left."""
        r = np.asarray(remaining, np.float64)
        f = r * (self.total + r) / (self.total + 1.0)
        lose = np.zeros(len(r) * self.width)
        lose[self.cell] = _tail(self.gap + r[self.row] * self.drift, f[self.row] * self.spread)
        lose = lose.reshape(len(r), self.width).sum(axis=1) + _tail(
            self.new_gap + r * self.new_drift, f * self.new_spread)
        return np.where(self.has_lead, np.clip(1.0 - lose, 0.0, 1.0), 0.0)


@dataclasses.dataclass(frozen=True)
class LeaderPosterior(Policy):
    """Stop when P(the current answer still leads at ``n_max``) >= ``confidence`` (see the
    module for the model). Checks every ``round_size`` samples.

    Example:
        >>> import optscale
        >>> rule = optscale.LeaderPosterior(confidence=0.9, n_max=16)
        >>> state = rule.start()
        >>> d = rule.update(state)
        >>> d = rule.update(state, [0.9], ["42"])
        >>> d.stop, round(d.confidence, 2)
        (False, 0.76)
        >>> d = rule.update(state, [0.8], ["42"])
        >>> d.stop, round(d.confidence, 2)
        (True, 0.92)
    """

    confidence: float = 0.9
    n_max: int = 32
    alpha: float = 1.0
    round_size: int = 1
    selection: Selection = Selection("weighted")
    kind = "leader"

    def __post_init__(self) -> None:
        owner = type(self).__name__
        count(owner, "n_max", self.n_max, 1)
        count(owner, "round_size", self.round_size, 1)
        real(owner, "confidence", self.confidence)
        if not 0 < self.confidence < 1:
            raise ValueError(f"{owner}: confidence must lie in (0, 1); got {self.confidence}")
        if not real(owner, "alpha", self.alpha) > 0:
            raise ValueError(f"{owner}: alpha must be > 0; got {self.alpha}")
        if not isinstance(self.selection, Selection) or self.selection.rule == "max":
            raise ValueError(f"{owner}: selection must be a vote or a weighted vote "
                             "(optscale.Selection('vote' | 'weighted'))")

    @property
    def scores_stop(self) -> bool:  # type: ignore[override]
        return self.selection.rule == "weighted"

    def _step(self, state: PolicyState) -> Step:
        n = len(state.scores)
        if n == 0 or n % self.round_size:
            return Step(False, self.round_size - n % self.round_size)
        p = self.probability(state)
        return Step(p >= self.confidence, self.round_size, confidence=p)

    def probability(self, state: PolicyState) -> float:
        """The rule's probability for one question's state."""
        return state_probability(state, self.selection, self.alpha, self.n_max)


def state_probability(state: PolicyState, selection: Selection, alpha: float,
                      n_max: int) -> float:
    """:func:`hold_probability` for one question's samples so far (online)."""
    codes = np.asarray(answer_codes(state.answers), np.int64)
    w = selection.weights(state.scores)
    size = int(codes.max(initial=-1)) + 1
    has = codes >= 0
    count = np.bincount(codes[has], minlength=size).astype(np.float64)[None, :]
    weight = np.bincount(codes[has], w[has], minlength=size)[None, :]
    chosen = selection.choose(state.scores, state.answers)
    lead = np.array([codes[chosen] if size else -1])
    top = float(selection.weights(np.array([selection.high]))[0])
    # the running sum, as the prefix version computes it, so that both round alike
    new_weight = (np.cumsum(w)[-1] + top) / (len(w) + 1)
    return float(hold_probability(weight, count, lead, np.array([n_max - len(state.scores)]),
                                  alpha, np.array([new_weight]))[0])


def prefix_probabilities(scores: np.ndarray, answers: np.ndarray, chosen: np.ndarray,
                         selection: Selection, alpha: float, n_max: int) -> np.ndarray:
    """[B, M] :func:`hold_probability` after every prefix of rows ``scores`` / integer
    ``answers`` [B, M] (``chosen``: the selection's table of them), for a budget ``n_max``
    (columns from n_max on are 0)."""
    return prefix_holds(scores, answers, chosen, selection, [(alpha, n_max)])[0]


# cells of a block's [prefixes, rows, answers] tables: bounds the memory of prefix_holds
_BLOCK = 1 << 20


def prefix_holds(scores: np.ndarray, answers: np.ndarray, chosen: np.ndarray,
                 selection: Selection, settings: Sequence[tuple[float, int]]
                 ) -> list[np.ndarray]:
    """:func:`prefix_probabilities` for each (alpha, n_max) of ``settings``, computed
    together: the answer counts and weights after every prefix do not depend on the setting,
    nor the gaps they give on the budget. Equal, value for value, to the prefix-by-prefix
    evaluation of :func:`hold_probability` over all rows (the answer columns are the rows'
    codes)."""
    size, width = scores.shape
    codes = int(answers.max(initial=-1)) + 1
    w = selection.weights(scores)
    top = float(selection.weights(np.array([selection.high]))[0])
    # the running sum, as the online form computes it
    new_weight = (np.cumsum(w, axis=1) + top) / np.arange(2, width + 2)
    lead = np.take_along_axis(answers, np.asarray(chosen, np.int64), axis=1)
    depth = min(width, max((n for _, n in settings), default=0))
    out = [np.zeros((size, width)) for _ in settings]
    if codes == 0:  # no answer anywhere: no leader
        return out
    by_alpha: dict[float, list[int]] = {}
    for i, (alpha, _) in enumerate(settings):
        by_alpha.setdefault(alpha, []).append(i)
    step = max(1, _BLOCK // max(depth * codes, 1))
    for lo in range(0, size, step):
        block = slice(lo, min(lo + step, size))
        rows = block.stop - block.start
        # prefix-major: row j * rows + i is row i after j + 1 samples, so that a budget's
        # prefixes are the leading rows
        a = answers[block, :depth].T
        is_code = a[:, :, None] == np.arange(codes)
        count = np.cumsum(is_code, axis=0, dtype=np.float64).reshape(-1, codes)
        add = np.where(is_code, w[block, :depth].T[:, :, None], 0.0)
        add[0] += 0.0  # sums start from +0.0, as an accumulator does
        weight = np.cumsum(add, axis=0).reshape(-1, codes)
        leader = lead[block, :depth].T.reshape(-1)
        new = new_weight[block, :depth].T.reshape(-1)
        for alpha, index in by_alpha.items():
            gaps = _Gaps.of(weight, count, leader, alpha, new)
            for i in index:
                d = min(width, settings[i][1])
                left = np.repeat(settings[i][1] - np.arange(1, d + 1), rows)
                out[i][block, :d] = gaps.head(d * rows).hold(left).reshape(d, rows).T
    return out
