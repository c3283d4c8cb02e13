"""Fixed N and the early-stopping self-consistency rules, as online policies.

- :class:`FixedN`: always N samples. With ``Selection("max")`` it is Best-of-N, with
  ``Selection("vote")`` self-consistency, with ``Selection("weighted")`` a score-weighted vote.
- :class:`ESC` (Li et al. 2024, early-stopping self-consistency): draw windows of ``window``
  samples; stop after a window whose answers are all equal (and present).
- :class:`ASC` (Aggarwal et al. 2023, Adaptive-Consistency, Beta stopping rule): one sample at a
  time; with v1 >= v2 the counts of the two leading answers, stop when
  P(p1 > p2 | v1, v2) = 1 - I_{1/2}(v1 + 1, v2 + 1) >= ``threshold``.
- :class:`DSC` (after Wang et al. 2024, difficulty-adaptive self-consistency) without
  hindsight: a question's difficulty comes from its own first window: all equal -> stop; else,
  with d distinct answers in it, go to ``window * 2**(d - 1)`` samples, then expand by windows
  until one agrees (ESC's rule).

Every rule is also capped by its budget ``n_max`` (and, in replay, by the stored samples).
Their default selection is the majority vote, as in their papers.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from scipy.special import betainc

from optscale._selection import Selection, answer_codes
from optscale.policies._base import Policy, PolicyState, Step, count

__all__ = ["ASC", "DSC", "ESC", "FixedN", "asc_stop_probability"]

_VOTE = Selection("vote")


def _check(policy: Any, **ints: int) -> None:
    owner = type(policy).__name__
    for name, low in ints.items():
        count(owner, name, getattr(policy, name), low)
    if not isinstance(policy.selection, Selection):
        raise TypeError(f"{owner}: selection must be an optscale.Selection; got "
                        f"{type(policy.selection).__name__}")


def window_agrees(codes: list[int], w: int) -> bool:
    """The last ``w`` answers exist and are all equal."""
    if len(codes) < w:
        return False
    last = codes[-w:]
    return last[0] >= 0 and all(a == last[0] for a in last)


@dataclasses.dataclass(frozen=True)
class FixedN(Policy):
    """Always ``n_max`` samples (Best-of-N, self-consistency or a weighted vote by its
    ``selection``).

    Example:
        >>> import optscale
        >>> bon = optscale.FixedN(8)  # Best-of-8
        >>> state = bon.start()
        >>> bon.update(state).n_more
        8
    """

    n_max: int = 8
    selection: Selection = Selection("max")
    kind = "fixed"

    def __post_init__(self) -> None:
        _check(self, n_max=1)

    def _step(self, state: PolicyState) -> Step:
        return Step(False, self.n_max - len(state.scores), n_star=self.n_max)


@dataclasses.dataclass(frozen=True)
class ESC(Policy):
    """Early-stopping self-consistency: windows of ``window``; stop when one agrees."""

    window: int = 5
    n_max: int = 40
    selection: Selection = _VOTE
    kind = "esc"

    def __post_init__(self) -> None:
        _check(self, window=1, n_max=1)

    def _step(self, state: PolicyState) -> Step:
        n, w = len(state.scores), self.window
        if n and n % w == 0 and window_agrees(answer_codes(state.answers), w):
            return Step(True)
        return Step(False, w - n % w)


def asc_stop_probability(top1: Any, top2: Any) -> np.ndarray:
    """Adaptive-Consistency's Beta criterion P(p1 > p2 | v1, v2) = 1 - I_{1/2}(v1+1, v2+1),
    by the symmetry 1 - I_x(a, b) = I_{1-x}(b, a)."""
    return betainc(np.asarray(top2) + 1.0, np.asarray(top1) + 1.0, 0.5)


def top_two(codes: list[int]) -> tuple[int, int]:
    """Counts of the two most frequent answers (no answer counts for nothing)."""
    counts = np.bincount([a for a in codes if a >= 0]) if any(a >= 0 for a in codes) else []
    ranked = sorted(counts, reverse=True) + [0, 0]
    return int(ranked[0]), int(ranked[1])


@dataclasses.dataclass(frozen=True)
class ASC(Policy):
    """Adaptive-Consistency: one sample at a time until the Beta criterion reaches
    ``threshold``."""

    threshold: float = 0.95
    n_max: int = 40
    selection: Selection = _VOTE
    kind = "asc"

    def __post_init__(self) -> None:
        _check(self, n_max=1)
        if not 0 < self.threshold < 1:
            raise ValueError(f"ASC: threshold must lie in (0, 1); got {self.threshold!r}")

    def _step(self, state: PolicyState) -> Step:
        if not state.scores:
            return Step(False, 1)
        top1, top2 = top_two(answer_codes(state.answers))
        p = float(asc_stop_probability(top1, top2))
        return Step(p >= self.threshold, 1, confidence=p)


@dataclasses.dataclass(frozen=True)
class DSC(Policy):
    """Difficulty-adaptive self-consistency without hindsight (see the module)."""

    window: int = 4
    n_max: int = 64
    selection: Selection = _VOTE
    kind = "dsc"

    def __post_init__(self) -> None:
        _check(self, window=1, n_max=1)

    def _step(self, state: PolicyState) -> Step:
        n, w = len(state.scores), self.window
        if n < w:
            return Step(False, w - n)
        codes = answer_codes(state.answers)
        if "start" not in state.memo:  # n == w: the difficulty window
            if window_agrees(codes[:w], w):
                return Step(True)
            distinct = len({a for a in codes[:w] if a >= 0})
            state.memo["start"] = w * 2 ** min(max(distinct, 1) - 1, 30)
        start = state.memo["start"]
        if n < start:
            return Step(False, start - n)
        if (n - start) % w == 0 and window_agrees(codes, w):
            return Step(True)
        return Step(False, w - (n - start) % w)
