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

import numpy as np
from scipy.special import ndtr

from optscale._args import integer, real
from optscale._selection import Selection, answer_codes
from optscale.policies._base import Policy, PolicyState, Step

__all__ = ["LeaderPosterior", "hold_probability", "prefix_probabilities", "state_probability"]


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
    weight, count = np.asarray(weight, np.float64), np.asarray(count, np.float64)
    if weight.shape[1] == 0:  # no answer yet anywhere: no leader
        weight, count = np.zeros((weight.shape[0], 1)), np.zeros((weight.shape[0], 1))
    size = weight.shape[0]
    rows = np.arange(size)
    has_lead = lead >= 0
    li = np.where(has_lead, lead, 0)
    seen = count > 0
    a = np.where(seen, alpha + count, 0.0)
    a_new = alpha
    total = a.sum(axis=1) + a_new
    r = np.asarray(remaining, np.float64)
    f = r * (total + r) / (total + 1.0)
    m = np.where(seen, weight / np.maximum(count, 1.0), 0.0)
    p = a / total[:, None]
    p_l, m_l, w_l = p[rows, li], m[rows, li], weight[rows, li]

    def tail(mean, var):
        sd = np.sqrt(np.maximum(var, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(sd > 0, -mean / np.where(sd > 0, sd, 1.0), np.where(mean < 0, np.inf,
                                                                               -np.inf))
        return ndtr(z)

    mean = (w_l[:, None] - weight) + r[:, None] * (m_l[:, None] * p_l[:, None] - m * p)
    var = f[:, None] * (m_l[:, None] ** 2 * p_l[:, None] * (1 - p_l[:, None])
                        + m**2 * p * (1 - p) + 2 * m_l[:, None] * m * p_l[:, None] * p)
    challenger = seen.copy()
    challenger[rows, li] = False
    lose = np.where(challenger, tail(mean, var), 0.0).sum(axis=1)
    p_new = a_new / total
    new_mean = w_l + r * (m_l * p_l - new_weight * p_new)
    new_var = f * (m_l**2 * p_l * (1 - p_l) + new_weight**2 * p_new * (1 - p_new)
                   + 2 * m_l * new_weight * p_l * p_new)
    lose = lose + tail(new_mean, new_var)
    return np.where(has_lead, np.clip(1.0 - lose, 0.0, 1.0), 0.0)


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
        integer(owner, "n_max", self.n_max, 1)
        integer(owner, "round_size", self.round_size, 1)
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
        prob[:, j] = hold_probability(weight[:, :codes], count[:, :codes], answers[b, chosen[:, j]],
                                      np.full(size, n_max - (j + 1)), alpha,
                                      (cum_w[:, j] + top) / (j + 2))
    return prob
