"""A cost-aware stopping rule with one price knob and a gain model fitted on calibration data.

At each checkpoint (every ``round_size`` samples) the policy estimates how much the next round
would raise P(the selected answer is correct), g(n, h), from two features of the question so
far: n, the samples drawn, and h, the answer posterior's probability that the selected answer
still leads at the budget (:func:`~optscale.policies.hold_probability`, with concentration
``alpha``): agreement and scores in one number. It stops when the gain is not worth the
round's tokens:

    stop  iff  g(n, h) < price * round_size * t,

where t is the mean output tokens per sample (the question's own samples so far when the caller
reports tokens, else the calibration pool's mean). ``price`` is in accuracy per token: 1e-4
means "a point of accuracy is worth 100 tokens per question".

The gain model (:class:`GainModel`) is a table: for every n in [1, n_max) and ten bins of h,
the mean of correct(after n + round_size) - correct(after n) over calibration replay rows in
that cell, shrunk towards the mean over all h at that n with the weight of ``shrink`` rows
(sparse cells then fall back to the n-level mean). It is fitted by :meth:`GainModel.fit` from
stored samples with correctness labels, which is what ``optscale tune`` has. Single samples
rarely change the answer, so a myopic gain is mostly noise: rounds of 8-16 work better.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from optscale._args import real
from optscale._selection import Selection
from optscale.policies._base import Policy, PolicyState, Step, count
from optscale.policies._leader import prefix_probabilities, state_probability

__all__ = ["CostAware", "GainModel"]

_BINS = 10


@dataclasses.dataclass(frozen=True)
class GainModel:
    """g(n, s): expected change in P(correct) from ``round_size`` more samples (see the
    module); ``table[n, bin]`` for n < n_max, and the calibration mean tokens per sample."""

    n_max: int
    round_size: int
    table: tuple[tuple[float, ...], ...]
    tokens_per_sample: float

    def gain(self, n: Any, hold: Any) -> np.ndarray:
        table = np.asarray(self.table)
        n = np.clip(np.asarray(n, np.int64), 0, len(table) - 1)
        b = np.clip((np.asarray(hold) * _BINS).astype(np.int64), 0, _BINS - 1)
        return table[n, b]

    @classmethod
    def fit(cls, scores: np.ndarray, answers: np.ndarray, correct: np.ndarray,
            lengths: np.ndarray, selection: Selection, n_max: int, round_size: int = 1,
            tokens: np.ndarray | None = None, alpha: float = 2.0,
            shrink: float = 10.0, prefix: tuple[np.ndarray, np.ndarray] | None = None
            ) -> GainModel:
        """Fit on calibration replay rows ([B, M] in drawing order, ``correct`` per sample).
        ``prefix``: :meth:`prefix_tables` of the same rows, when several models share them."""
        table_of, hold_of = prefix or cls.prefix_tables(scores, answers, selection, n_max,
                                                        alpha)
        size, width = scores.shape
        table = np.zeros((n_max, _BINS))
        last = min(n_max, width)
        n = np.arange(1, last)
        after = np.minimum(n + round_size, last)
        # every n at once, in [B, n] tables: the kept values of a (n, bin) cell are summed in
        # row order, as a loop over n would
        right = np.take_along_axis(correct, table_of[:, :last].astype(np.int64), axis=1)
        delta = right[:, after - 1].astype(np.float64) - right[:, :last - 1]  # n - 1 = 0, 1..
        ok = lengths[:, None] >= after[None, :]
        cell = (np.clip((hold_of[:, :last - 1] * _BINS).astype(np.int64), 0, _BINS - 1)
                + np.arange(len(n)) * _BINS)[ok]
        sums = np.bincount(cell, delta[ok], minlength=len(n) * _BINS).reshape(-1, _BINS)
        counts = np.bincount(cell, minlength=len(n) * _BINS).reshape(-1, _BINS)
        kept = ok.sum(axis=0)
        if np.asarray(correct).dtype.kind in "biu":  # integer sums: exact in any order
            with np.errstate(invalid="ignore", divide="ignore"):
                level = sums.sum(axis=1) / kept
        else:  # np.mean's own (pairwise) sum per n
            level = np.array([delta[ok[:, i], i].mean() if kept[i] else np.nan
                              for i in range(len(n))])
        fitted = kept > 0
        table[1:last][fitted] = ((sums + shrink * level[:, None])
                                 / (counts + shrink))[fitted]
        if tokens is None:
            per_sample = 1.0
        else:
            drawn = np.arange(width)[None, :] < lengths[:, None]
            per_sample = float(np.asarray(tokens, np.float64)[drawn].mean())
        return cls(n_max, round_size, tuple(tuple(float(v) for v in r) for r in table),
                   per_sample)

    @staticmethod
    def prefix_tables(scores: np.ndarray, answers: np.ndarray, selection: Selection,
                      n_max: int, alpha: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
        """The selection's pick and the leader's hold probability after every prefix: what a
        fit needs from the rows (it does not depend on the round size or the price)."""
        table_of = selection.table(scores, answers)
        return table_of, prefix_probabilities(scores, answers, table_of, selection, alpha,
                                              n_max)

    def to_dict(self) -> dict:
        return {"n_max": self.n_max, "round_size": self.round_size,
                "table": [list(r) for r in self.table], "tokens_per_sample":
                self.tokens_per_sample}

    @classmethod
    def from_dict(cls, data: Any, where: str = "model") -> GainModel:
        """The model a :meth:`to_dict` result describes; a ValueError (or TypeError) naming
        the field (``where.n_max: missing``) for anything else."""
        if not isinstance(data, dict):
            raise TypeError(f"{where}: must be an object; got {type(data).__name__}")
        keys = ("n_max", "round_size", "table", "tokens_per_sample")
        unknown = sorted(set(data) - set(keys))
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}")
        for key in keys:
            if key not in data:
                raise ValueError(f"{where}.{key}: missing")
        n_max = count(where, "n_max", data["n_max"], 1)
        round_size = count(where, "round_size", data["round_size"], 1)
        table = data["table"]
        if not isinstance(table, list) or len(table) != n_max:
            raise ValueError(f"{where}.table: must be a list of n_max = {n_max} rows")
        rows = []
        for i, row in enumerate(table):
            if not isinstance(row, list) or len(row) != _BINS:
                raise ValueError(f"{where}.table[{i}]: must be a list of {_BINS} numbers")
            rows.append(tuple(real(where, f"table[{i}][{j}]", v) for j, v in enumerate(row)))
        per_sample = real(where, "tokens_per_sample", data["tokens_per_sample"])
        if per_sample < 0:
            raise ValueError(f"{where}: tokens_per_sample must be >= 0; got {per_sample}")
        return cls(n_max, round_size, tuple(rows), per_sample)


@dataclasses.dataclass(frozen=True)
class CostAware(Policy):
    """Stop when the next round's expected gain in accuracy is worth less than its tokens at
    ``price`` (accuracy per token); needs a fitted ``model`` (:meth:`GainModel.fit`, or
    ``optscale tune``)."""

    price: float = 1e-4
    n_max: int = 32
    round_size: int = 8
    alpha: float = 2.0
    selection: Selection = Selection("weighted")
    model: GainModel | None = None
    kind = "cost"
    trainable = True

    def __post_init__(self) -> None:
        owner = type(self).__name__
        count(owner, "n_max", self.n_max, 1)
        count(owner, "round_size", self.round_size, 1)
        if not real(owner, "price", self.price) >= 0:
            raise ValueError(f"{owner}: price must be >= 0; got {self.price}")
        if not real(owner, "alpha", self.alpha) > 0:
            raise ValueError(f"{owner}: alpha must be > 0; got {self.alpha}")
        if not isinstance(self.selection, Selection) or self.selection.rule == "max":
            raise ValueError(f"{owner}: selection must be a vote or a weighted vote")
        if self.model is not None and not isinstance(self.model, GainModel):
            raise TypeError(f"{owner}: model must be a GainModel; got {type(self.model)}")

    @property
    def scores_stop(self) -> bool:  # type: ignore[override]
        return False

    def with_model(self, model: GainModel) -> CostAware:
        return dataclasses.replace(self, model=model)

    def _step(self, state: PolicyState) -> Step:
        if self.model is None:
            raise ValueError("CostAware: no gain model; fit one with GainModel.fit (or use "
                             "optscale tune) and pass model=")
        n = len(state.scores)
        if n == 0 or n % self.round_size:
            return Step(False, self.round_size - n % self.round_size)
        hold = state_probability(state, self.selection, self.alpha, self.n_max)
        gain = float(self.model.gain(n, hold))
        tokens = np.asarray(state.tokens, np.float64)
        # (the running sum, as the replay computes it, so that both round alike)
        per_sample = (float(np.cumsum(tokens)[-1] / n) if np.isfinite(tokens).all()
                      else self.model.tokens_per_sample)
        return Step(bool(gain < self.price * self.round_size * per_sample), self.round_size,
                    confidence=gain)
