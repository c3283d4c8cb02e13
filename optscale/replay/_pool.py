"""A completion pool: every stored sample of every question, as padded columnar arrays.

Q questions, up to M samples each; question q has ``lengths[q]`` samples in slots
``[0, lengths[q])`` and padding after (score NaN, correct False, tokens 0, answer -1).

Per sample: the verifier ``score`` (already aggregated from step scores), ``correct`` (None for
an ungraded pool), output ``tokens`` (None when the source has no counts) and ``answers``, an
integer code per sample that is equal exactly when two final answers are mathematically
equivalent (-1: no answer extracted); votes group by this code. Per question: ``ids``, an
optional ``prior`` (mu0, sigma0) for OptScale^t, and optional ``questions`` / ``gold`` text.

The columnar form is an NPZ file (:func:`save_npz` / :func:`load_npz`).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np

__all__ = ["Pool", "load_npz", "save_npz"]


@dataclasses.dataclass(frozen=True, eq=False)
class Pool:
    """Stored completions of Q questions (see the module docstring)."""

    scores: np.ndarray  # [Q, M] float64
    lengths: np.ndarray  # [Q] int64
    answers: np.ndarray  # [Q, M] int32, -1 = none
    correct: np.ndarray | None = None  # [Q, M] bool
    tokens: np.ndarray | None = None  # [Q, M] int64
    ids: tuple[str, ...] = ()
    prior: np.ndarray | None = None  # [Q, 2] (mu0, sigma0)
    questions: tuple[str, ...] | None = None
    gold: tuple[str, ...] | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        scores = np.asarray(self.scores, np.float64)
        if scores.ndim != 2:
            raise ValueError(f"Pool: scores must have shape [Q, M]; got {scores.shape}")
        q, m = scores.shape
        lengths = np.asarray(self.lengths, np.int64)
        if lengths.shape != (q,) or np.any(lengths < 0) or np.any(lengths > m):
            raise ValueError(f"Pool: lengths must have shape ({q},) with values in [0, {m}]")
        slot = np.arange(m)[None, :] < lengths[:, None]
        if not np.all(np.isfinite(scores[slot])):
            raise ValueError("Pool: every stored sample needs a finite score")
        object.__setattr__(self, "scores", np.where(slot, scores, np.nan))
        object.__setattr__(self, "lengths", lengths)
        answers = np.asarray(self.answers, np.int32)
        if answers.shape != (q, m):
            raise ValueError(f"Pool: answers must have shape {(q, m)}; got {answers.shape}")
        object.__setattr__(self, "answers", np.where(slot, answers, -1).astype(np.int32))
        if self.correct is not None:
            correct = np.asarray(self.correct, bool)
            if correct.shape != (q, m):
                raise ValueError(f"Pool: correct must have shape {(q, m)}; got {correct.shape}")
            object.__setattr__(self, "correct", correct & slot)
        if self.tokens is not None:
            tokens = np.asarray(self.tokens, np.int64)
            if tokens.shape != (q, m) or np.any(tokens[slot] < 0):
                raise ValueError(f"Pool: tokens must have shape {(q, m)} and be >= 0")
            object.__setattr__(self, "tokens", np.where(slot, tokens, 0))
        ids = tuple(str(i) for i in self.ids) if len(self.ids) else tuple(map(str, range(q)))
        if len(ids) != q:
            raise ValueError(f"Pool: ids must have {q} entries; got {len(ids)}")
        object.__setattr__(self, "ids", ids)
        if self.prior is not None:
            prior = np.asarray(self.prior, np.float64)
            if prior.shape != (q, 2) or not np.all(np.isfinite(prior)) or np.any(prior[:, 1] <= 0):
                raise ValueError(f"Pool: prior must have shape ({q}, 2) with finite mu0 and "
                                 "sigma0 > 0")
            object.__setattr__(self, "prior", prior)
        for name in ("questions", "gold"):
            value = getattr(self, name)
            if value is not None:
                if len(value) != q:
                    raise ValueError(f"Pool: {name} must have {q} entries; got {len(value)}")
                object.__setattr__(self, name, tuple("" if v is None else str(v) for v in value))
        object.__setattr__(self, "meta", dict(self.meta))

    @property
    def size(self) -> int:
        """Number of questions Q."""
        return int(self.scores.shape[0])

    @property
    def width(self) -> int:
        """Padded samples per question M."""
        return int(self.scores.shape[1])

    @property
    def simulated(self) -> bool:
        """Whether the pool was generated (every report built from it says so)."""
        return bool(self.meta.get("simulated", False))

    def subset(self, index: Any) -> Pool:
        """The questions at ``index`` (an integer array or a boolean mask)."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)

        def rows(x):
            return None if x is None else x[index]

        def items(x):
            return None if x is None else tuple(x[i] for i in index)

        return Pool(self.scores[index], self.lengths[index], self.answers[index],
                    rows(self.correct), rows(self.tokens), items(self.ids), rows(self.prior),
                    items(self.questions), items(self.gold), self.meta)


def save_npz(pool: Pool, path: str) -> None:
    """Write the columnar form (compressed NPZ)."""
    arrays: dict[str, Any] = {"scores": pool.scores, "lengths": pool.lengths,
                              "answers": pool.answers, "ids": np.asarray(pool.ids, dtype=str),
                              "meta": np.asarray(json.dumps(pool.meta))}
    for name in ("correct", "tokens", "prior"):
        if getattr(pool, name) is not None:
            arrays[name] = getattr(pool, name)
    for name in ("questions", "gold"):
        if getattr(pool, name) is not None:
            arrays[name] = np.asarray(getattr(pool, name), dtype=str)
    np.savez_compressed(path, **arrays)


def load_npz(path: str) -> Pool:
    """Read a pool written by :func:`save_npz`; a missing array is named in the error."""
    with np.load(path, allow_pickle=False) as data:
        for name in ("scores", "lengths", "answers"):
            if name not in data:
                raise ValueError(f"{path}: missing array {name!r} (a pool needs scores, "
                                 "lengths and answers)")

        def get(name):
            return data[name] if name in data else None

        def text(name):
            return None if name not in data else tuple(str(v) for v in data[name])

        meta = json.loads(str(data["meta"])) if "meta" in data else {}
        try:
            return Pool(data["scores"], data["lengths"], data["answers"], get("correct"),
                        get("tokens"), text("ids") or (), get("prior"), text("questions"),
                        text("gold"), meta)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
