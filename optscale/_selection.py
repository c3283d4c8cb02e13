"""Selection rules: which of the samples drawn so far is the answer.

A rule is one of

- ``"max"``: the highest-scoring sample (first on ties; unscored samples never win);
- ``"vote"``: majority vote over answers (self-consistency);
- ``"weighted"``: score-weighted vote: the answer whose samples' summed *weights* is largest.

Votes return the first sample of the winning answer. Samples without an answer (code -1) count
for nothing; with no answer at all the first sample is returned. Ties keep the current leader,
which is defined sequentially: after each sample the leader stays unless another answer's total
is now strictly larger; then the largest total wins, and among equal totals the answer seen
first. (With non-negative weights this is "only the answer that just grew can take the lead".)

The weight of a sample with score s in [low, high], u = (s - low) / (high - low) clipped to
[0, 1] (an unscored sample weighs 0):

- ``"raw"``: w = u;
- ``"power"``: w = u ** (1 / temperature): a small temperature trusts only the top scores;
- ``"softmax"``: w = exp((u - 1) / temperature), the summed softmax numerators (shifted by 1 so
  that nothing overflows; the shift is a common factor and changes no decision);
- ``"logodds"``: w = log(u / (1 - u)), u clipped to [1e-6, 1 - 1e-6]: summed evidence of a
  verifier read as a calibrated probability (weights can be negative: an answer whose samples
  score below 0.5 loses votes);
- ``"rank"``: w = F_ref(u), the score's mid-rank among ``reference`` scores (a quantile table of
  scores from a reference pool, e.g. the calibration pool ``optscale tune`` saw): robust to a
  verifier whose scale drifts or is discrete.

Both an online form (:meth:`Selection.choose`, for one question) and a vectorised table over
prefixes (:meth:`Selection.table`, for replay) implement the same sequence of decisions.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = ["RULES", "Selection", "WEIGHTS", "answer_codes"]

RULES = ("max", "vote", "weighted")
WEIGHTS = ("raw", "power", "softmax", "logodds", "rank")
_EPS = 1e-6


@dataclasses.dataclass(frozen=True)
class Selection:
    """A selection rule (see the module).

    Args:
        rule: "max", "vote" or "weighted".
        weight: the weighted vote's transform ("raw", "power", "softmax", "logodds", "rank").
        temperature: for "power" and "softmax" (> 0).
        low, high: the score range.
        reference: for "rank", increasing reference score quantiles (on [low, high]).

    Example:
        >>> import optscale
        >>> pick = optscale.Selection("weighted")
        >>> pick.choose([0.9, 0.2, 0.3, 0.35], ["a", "b", "b", "b"])  # 0.9 vs 0.85
        0
        >>> optscale.Selection("vote").choose([0.9, 0.2, 0.3, 0.35], ["a", "b", "b", "b"])
        1
    """

    rule: str = "max"
    weight: str = "raw"
    temperature: float = 1.0
    low: float = 0.0
    high: float = 1.0
    reference: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"Selection: rule must be one of {RULES}; got {self.rule!r}")
        if self.weight not in WEIGHTS:
            raise ValueError(f"Selection: weight must be one of {WEIGHTS}; got {self.weight!r}")
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"Selection: temperature must be finite and > 0; got "
                             f"{self.temperature!r}")
        if not (np.isfinite(self.low) and np.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"Selection: need finite low < high; got {self.low}, {self.high}")
        ref = tuple(float(v) for v in self.reference)
        if self.weight == "rank" and self.rule == "weighted":
            if len(ref) < 2 or not np.all(np.diff(ref) >= 0) or not np.all(np.isfinite(ref)):
                raise ValueError("Selection: weight='rank' needs reference, at least two "
                                 "non-decreasing finite reference scores")
        object.__setattr__(self, "reference", ref)

    @classmethod
    def fit_reference(cls, scores: Any, points: int = 101, **kw: Any) -> Selection:
        """A "rank" weighted vote whose reference is the quantiles of ``scores`` (NaN
        ignored)."""
        s = np.asarray(scores, np.float64)
        s = s[np.isfinite(s)]
        if s.size < 2:
            raise ValueError("Selection.fit_reference: need at least two finite scores")
        q = np.quantile(s, np.linspace(0.0, 1.0, points))
        return cls("weighted", "rank", reference=tuple(float(v) for v in q), **kw)

    # ------------------------------------------------------------------ weights

    def weights(self, scores: Any) -> np.ndarray:
        """The vote weight of each score (elementwise; unscored samples weigh 0)."""
        s = np.asarray(scores, np.float64)
        if self.rule == "vote":
            return np.ones(s.shape)
        u = np.clip((s - self.low) / (self.high - self.low), 0.0, 1.0)
        if self.weight == "raw":
            w = u
        elif self.weight == "power":
            w = u ** (1.0 / self.temperature)
        elif self.weight == "softmax":
            w = np.exp((u - 1.0) / self.temperature)
        elif self.weight == "logodds":
            c = np.clip(u, _EPS, 1.0 - _EPS)
            w = np.log(c) - np.log1p(-c)
        else:  # rank: mid-rank of s among the reference scores, in [0, 1]
            ref = np.asarray(self.reference)
            below = np.searchsorted(ref, s, side="left")
            upto = np.searchsorted(ref, s, side="right")
            w = 0.5 * (below + upto) / len(ref)
        return np.where(np.isfinite(s), w, 0.0)

    # ------------------------------------------------------------------ online

    def choose(self, scores: Any, answers: Any = None) -> int | None:
        """Index of the chosen sample among ``scores`` (with ``answers``: hashable answer keys,
        None for no answer); None when there are no samples."""
        s = np.asarray(scores, np.float64).reshape(-1)
        if s.size == 0:
            return None
        if self.rule == "max":
            return int(np.argmax(np.where(np.isfinite(s), s, -np.inf)))
        if answers is None:
            codes = [-1] * s.size
        else:
            codes = answer_codes(answers)
            if len(codes) != s.size:
                raise ValueError(f"answers: expected {s.size} (one per score); got "
                                 f"{len(codes)}")
        w = self.weights(s)
        total: dict[int, float] = {}
        first: dict[int, int] = {}
        lead = None
        for i, (a, x) in enumerate(zip(codes, w, strict=True)):
            if a < 0:
                continue
            first.setdefault(a, i)
            total[a] = total.get(a, 0.0) + float(x)
            best = max(total.values())
            if lead is None or total[lead] < best:
                lead = min((c for c, t in total.items() if t == best), key=first.__getitem__)
        return 0 if lead is None else first[lead]

    # ------------------------------------------------------------------ vectorised

    def table(self, scores: np.ndarray, answers: np.ndarray) -> np.ndarray:
        """[B, M] index of the chosen sample after each prefix of rows ``scores`` and integer
        ``answers`` (-1: none), both [B, M]: the online rule on every prefix at once."""
        scores = np.asarray(scores, np.float64)
        answers = np.asarray(answers)
        size, width = scores.shape
        out = np.zeros((size, width), np.int32)
        rows = np.arange(size)
        if self.rule == "max":
            s = np.where(np.isfinite(scores), scores, -np.inf)
            best = np.zeros(size, np.int64)
            best_s = np.full(size, -np.inf)
            for m in range(width):
                better = s[:, m] > best_s
                best = np.where(better, m, best)
                best_s = np.where(better, s[:, m], best_s)
                out[:, m] = best
            return out
        w = self.weights(scores)
        codes = int(answers.max(initial=-1)) + 1
        total = np.full((size, codes + 1), -np.inf)  # -inf: not seen; last column: "none"
        first = np.full((size, codes + 1), width, np.int64)
        lead = np.full(size, codes)
        for m in range(width):
            a = answers[:, m]
            has = a >= 0
            c = np.where(has, a, codes)
            seen = total[rows, c] > -np.inf
            first[rows, c] = np.where(has & ~seen, m, first[rows, c])
            total[rows, c] = np.where(has, np.where(seen, total[rows, c], 0.0) + w[:, m],
                                      total[rows, c])
            total[:, codes] = -np.inf
            best = total[:, :codes].max(axis=1, initial=-np.inf)
            lost = (lead == codes) | (total[rows, lead] < best)
            tied = np.where(total[:, :codes] == best[:, None], first[:, :codes], width + 1)
            new = np.argmin(tied, axis=1) if codes else np.zeros(size, np.int64)
            lead = np.where(lost & (best > -np.inf), new, lead)
            out[:, m] = np.where(lead == codes, 0, first[rows, lead])
        return out

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"reference": list(self.reference)}

    def describe(self) -> str:
        if self.rule != "weighted":
            return self.rule
        extra = f", T={self.temperature:g}" if self.weight in ("power", "softmax") else ""
        return f"weighted({self.weight}{extra})"


def answer_codes(answers: Any) -> list[int]:
    """Integer codes by first appearance (-1: no answer: None or a negative integer) for
    hashable answer keys."""
    table: dict[Any, int] = {}
    out = []
    for a in answers:
        if a is None or (isinstance(a, (int, np.integer)) and not isinstance(a, bool) and a < 0):
            out.append(-1)
            continue
        key = a.item() if isinstance(a, np.generic) else a
        out.append(table.setdefault(key, len(table)))
    return out
