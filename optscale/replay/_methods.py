"""Replayable methods: Best-of-N, votes, early-stopping self-consistency and OptScale policies.

Each method has a grid of settings; :meth:`Method.replay` takes B replay rows (one question in
one sample order each: scores, answer codes, pool lengths, optional prior) and returns, for every
setting, the number of samples drawn and the index of the sample whose answer is returned, both
[S, B]. Samples are drawn in row order, so "drawn n" means the first n. Every setting has a
``budget`` (its maximum number of samples) by which the protocol matches methods.

- ``BestOfN``: the highest-scoring of the first N.
- ``MajorityVote`` / ``WeightedVote``: the most frequent answer of the first N, by count or by
  summed verifier score (PRM-weighted vote).
- ``ESC`` (Li et al. 2024, early-stopping self-consistency): draw windows of ``w``; stop after a
  window whose answers are all equal; answer by majority of everything drawn.
- ``ASC`` (Aggarwal et al. 2023, Adaptive-Consistency, Beta stopping rule): after each sample,
  with v1 >= v2 the counts of the two leading answers, stop when
  P(p1 > p2 | v1, v2) = 1 - I_{1/2}(v1 + 1, v2 + 1) >= threshold (closed form by ``betainc``).
- ``DSC`` (after Wang et al. 2024, difficulty-adaptive self-consistency), without hindsight:
  the paper ranks the whole test set's difficulty with the LLM before sampling; here a question's
  difficulty comes from its own first window of ``w`` answers: all equal -> easy, stop; else
  with d distinct answers pre-allocate ``w * 2**(d - 1)`` samples, then expand by windows of
  ``w`` until a window agrees (ESC's rule). Majority answer.
- ``OptScaleMethod``: any :class:`optscale.OptScale` policy over a grid of its fields; returns
  the best-scoring drawn sample.

Every stop rule is also capped by the setting's budget and the question's pool size.
"""

from __future__ import annotations

import abc
import dataclasses
import itertools
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy.special import betainc

from optscale._policy import OptScale
from optscale.replay._prefix import Prefix

__all__ = ["ASC", "DSC", "ESC", "BestOfN", "MajorityVote", "Method", "OptScaleMethod", "Rows",
           "Setting", "WeightedVote", "asc_stop_probability", "default_methods",
           "standard_methods", "DEFAULT_METHODS"]


class Setting(NamedTuple):
    """One hyper-parameter setting of a method."""

    method: str
    label: str
    budget: int


class Rows(NamedTuple):
    """B replay rows: ``scores`` and ``answers`` [B, M] in drawing order, ``lengths`` [B],
    ``prior`` [B, 2] (mu0, sigma0) or None."""

    scores: np.ndarray
    answers: np.ndarray
    lengths: np.ndarray
    prior: np.ndarray | None = None


def _first(mask: np.ndarray) -> np.ndarray:
    """1-based position of the first True per row (every row has one)."""
    return np.argmax(mask, axis=1) + 1


def _take(table: np.ndarray, n: np.ndarray) -> np.ndarray:
    return table[np.arange(len(n)), n - 1]


@dataclasses.dataclass(frozen=True)
class Method(abc.ABC):
    """Base class: a named family of settings."""

    name: str = ""

    @abc.abstractmethod
    def settings(self) -> list[Setting]:
        """The settings, in the order :meth:`replay` returns them."""

    @abc.abstractmethod
    def replay(self, rows: Rows, prefix: Prefix) -> tuple[np.ndarray, np.ndarray]:
        """(n_used, pick), each [S, B] for the S settings."""

    def needs_prior(self) -> bool:
        return False

    uses_verifier = True  # scores every drawn sample (self-consistency methods do not)


def _check_budgets(name: str, budgets: Sequence[int]) -> tuple[int, ...]:
    budgets = tuple(int(b) for b in budgets)
    if not budgets or min(budgets) < 1:
        raise ValueError(f"{name}: budgets must be a non-empty list of integers >= 1; "
                         f"got {budgets}")
    return budgets


@dataclasses.dataclass(frozen=True)
class _FixedN(Method):
    """A method that always draws min(N, pool) samples and picks from a prefix table."""

    budgets: tuple[int, ...] = (8, 16, 32, 64)
    table = "best"

    def __post_init__(self) -> None:
        object.__setattr__(self, "budgets", _check_budgets(self.name, self.budgets))

    def settings(self) -> list[Setting]:
        return [Setting(self.name, f"N={n}", n) for n in self.budgets]

    def replay(self, rows, prefix):
        n = np.stack([np.minimum(b, rows.lengths) for b in self.budgets])
        table = getattr(prefix, self.table)
        return n, np.stack([_take(table, k) for k in n])


@dataclasses.dataclass(frozen=True)
class BestOfN(_FixedN):
    """Best-of-N at fixed N (one setting per budget)."""

    name: str = "BoN"


@dataclasses.dataclass(frozen=True)
class MajorityVote(_FixedN):
    """Self-consistency: majority answer of N samples."""

    uses_verifier = False
    name: str = "SC"
    table = "vote"


@dataclasses.dataclass(frozen=True)
class WeightedVote(_FixedN):
    """PRM-weighted vote: the answer with the largest summed score among N samples."""

    name: str = "Weighted SC"
    table = "wvote"


@dataclasses.dataclass(frozen=True)
class _Windowed(Method):
    """A self-consistency method over a grid of windows and budgets (windows <= budget)."""

    uses_verifier = False
    windows: tuple[int, ...] = (2, 4)
    budgets: tuple[int, ...] = (8, 16, 32, 64)

    def __post_init__(self) -> None:
        object.__setattr__(self, "budgets", _check_budgets(self.name, self.budgets))
        if not self.windows or min(self.windows) < 1:
            raise ValueError(f"{self.name}: windows must be integers >= 1; got {self.windows}")

    def _grid(self):
        return [(w, b) for b in self.budgets for w in self.windows if w <= b]

    def settings(self):
        return [Setting(self.name, f"window={w}, max_n={b}", b) for w, b in self._grid()]


@dataclasses.dataclass(frozen=True)
class ESC(_Windowed):
    """Early-stopping self-consistency over a grid of windows and budgets."""

    name: str = "ESC"
    windows: tuple[int, ...] = (2, 4, 8)

    def replay(self, rows, prefix):
        m = np.arange(1, prefix.run.shape[1] + 1)[None, :]
        n_all, picks = [], []
        for w, b in self._grid():
            cap = np.minimum(b, rows.lengths)[:, None]
            n = _first(((m % w == 0) & (prefix.run >= w) & (m <= cap)) | (m == cap))
            n_all.append(n)
            picks.append(_take(prefix.vote, n))
        return np.stack(n_all), np.stack(picks)


def asc_stop_probability(top1: Any, top2: Any) -> np.ndarray:
    """Adaptive-Consistency's Beta criterion P(p1 > p2 | v1, v2) = 1 - I_{1/2}(v1+1, v2+1),
    by the symmetry 1 - I_x(a, b) = I_{1-x}(b, a)."""
    return betainc(np.asarray(top2) + 1.0, np.asarray(top1) + 1.0, 0.5)


@dataclasses.dataclass(frozen=True)
class ASC(Method):
    """Adaptive-Consistency (Beta stopping rule) over thresholds and budgets."""

    uses_verifier = False
    name: str = "ASC"
    thresholds: tuple[float, ...] = (0.9, 0.95, 0.99)
    budgets: tuple[int, ...] = (8, 16, 32, 64)

    def __post_init__(self) -> None:
        object.__setattr__(self, "budgets", _check_budgets(self.name, self.budgets))
        if not self.thresholds or not all(0 < t < 1 for t in self.thresholds):
            raise ValueError(f"{self.name}: thresholds must lie in (0, 1); "
                             f"got {self.thresholds}")

    def _grid(self):
        return [(t, b) for b in self.budgets for t in self.thresholds]

    def settings(self):
        return [Setting(self.name, f"threshold={t:g}, max_n={b}", b) for t, b in self._grid()]

    def replay(self, rows, prefix):
        width = prefix.top1.shape[1]
        # the criterion depends only on two counts <= M: tabulate it once
        counts = np.arange(width + 1)
        table = asc_stop_probability(counts[:, None], counts[None, :])
        prob = table[prefix.top1, prefix.top2]
        m = np.arange(1, width + 1)[None, :]
        n_all, picks = [], []
        for t, b in self._grid():
            cap = np.minimum(b, rows.lengths)[:, None]
            n = _first(((prob >= t) & (m <= cap)) | (m == cap))
            n_all.append(n)
            picks.append(_take(prefix.vote, n))
        return np.stack(n_all), np.stack(picks)


@dataclasses.dataclass(frozen=True)
class DSC(_Windowed):
    """Difficulty-adaptive self-consistency without hindsight (see the module)."""

    name: str = "DSC"

    def replay(self, rows, prefix):
        m = np.arange(1, prefix.run.shape[1] + 1)[None, :]
        n_all, picks = [], []
        for w, b in self._grid():
            cap = np.minimum(b, rows.lengths)
            first = np.minimum(w, cap)
            easy = _take(prefix.run, first) >= w  # the first window agrees
            distinct = np.maximum(_take(prefix.distinct, first), 1)
            start = np.minimum(w * 2 ** np.minimum(distinct - 1, 30), cap)[:, None]
            # checkpoints start, start + w, ...: stop when the last window agrees, or at the cap
            check = (m >= start) & ((m - start) % w == 0) & (prefix.run >= w)
            n = _first((check & (m <= cap[:, None])) | (m == cap[:, None]))
            n = np.where(easy, first, n)
            n_all.append(n)
            picks.append(_take(prefix.vote, n))
        return np.stack(n_all), np.stack(picks)


@dataclasses.dataclass(frozen=True)
class OptScaleMethod(Method):
    """An OptScale policy over a grid of its fields, e.g.
    ``OptScaleMethod("OptScale^0", OptScale0(target=0.9), {"target": (0.9, 0.95),
    "n_max": (8, 16)})``. One-shot policies share one fit per (peek, prior) across the grid."""

    name: str = "OptScale"
    policy: OptScale | None = None
    grid: dict[str, tuple] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.policy, OptScale):
            raise TypeError(f"{self.name}: policy must be an OptScale instance; "
                            f"got {type(self.policy).__name__}")
        fields = {f.name for f in dataclasses.fields(OptScale)}
        for key, values in self.grid.items():
            if key not in fields:
                raise ValueError(f"{self.name}: grid key {key!r} is not an OptScale field")
            if not len(values):
                raise ValueError(f"{self.name}: grid[{key!r}] is empty")
        # build every policy now: a bad combination fails here, not mid-replay
        object.__setattr__(self, "_policies", self._build())

    def _build(self) -> list[OptScale]:
        keys = list(self.grid)
        return [dataclasses.replace(self.policy, **dict(zip(keys, values, strict=True)))
                for values in itertools.product(*(self.grid[k] for k in keys))]

    def needs_prior(self) -> bool:
        return self.policy.uses_prior

    def settings(self):
        out = []
        for p in self._policies:
            parts = [f"{k}={getattr(p, k):g}" if isinstance(getattr(p, k), float)
                     else f"{k}={getattr(p, k)}" for k in self.grid if k != "n_max"]
            out.append(Setting(self.name, ", ".join(parts + [f"max_n={p.n_max}"]), p.n_max))
        return out

    def replay(self, rows, prefix):
        scores = np.where(np.isnan(rows.scores), 0.5, rows.scores)
        prior = None if rows.prior is None else (rows.prior[:, 0], rows.prior[:, 1])
        if self.needs_prior() and prior is None:
            raise ValueError(f"{self.name}: the pool has no prior (mu0, sigma0) per question")
        fits: dict[tuple, Any] = {}
        n_all, picks = [], []
        for p in self._policies:
            if p.rule == "one-shot":
                # N* is decided once from the peek: n_used = min(max(n_peek, N*), pool, n_max),
                # or the peek alone when stop_on_target and a peek score reached the target
                peek = min(p.n_peek, scores.shape[1])
                mask = np.arange(peek)[None, :] < rows.lengths[:, None]
                key = p.fit_key()
                if key not in fits:
                    fits[key] = p.fit(scores[:, :peek], mask, prior)
                n_star, _ = p.decide(fits[key])
                cap = np.minimum(rows.lengths, p.n_max)
                n = np.minimum(np.maximum(p.n_peek, n_star), cap)
                if p.stop_on_target:
                    hit = np.any(mask & (scores[:, :peek] >= p.target), axis=1)
                    n = np.where(hit, np.minimum(p.n_peek, cap), n)
            else:
                n = p.run(scores, prior, rows.lengths).n_used
            n_all.append(n)
            picks.append(_take(prefix.best, n))
        return np.stack(n_all), np.stack(picks)


DEFAULT_METHODS = ("bon", "sc", "wsc", "esc", "asc", "dsc", "optscale0", "optscalet",
                   "optscale0-sot", "optscale0-pred")


def standard_methods(budgets: Sequence[int] = (8, 16, 32, 64), *,
                     n_peek: Sequence[int] = (2, 4),
                     targets: Sequence[float] = (0.85, 0.9, 0.95, 0.97, 0.99),
                     confidences: Sequence[float] = (0.8, 0.9, 0.95, 0.99)) -> dict[str, Method]:
    """Every method the harness ships, by command-line key, with its standard grid:

    ``bon``, ``sc``, ``wsc`` (PRM-weighted), ``esc``, ``asc``, ``dsc``; OptScale over peek
    sizes ``n_peek`` and the paper's range of targets and confidences (its "percentile"
    0.01..0.2 is 1 - confidence):
    ``optscale0`` / ``optscalet`` (one-shot MLE / MAP, the paper's rule; MAP runs only on pools
    with priors), ``optscale0-sot`` (one-shot, stops early when a drawn score reaches the
    target), ``optscale0-pred`` (posterior-predictive N*), ``optscale0-seq`` (sequential: refit
    after every round of 4; slower, as it refits the open questions every round); other score
    families, one-shot MLE with stop-on-target: ``optscale0-beta``, ``optscale0-mixture``,
    ``optscale0-auto`` (BIC per question) and ``optscale0-exceedance`` (flat prior).
    """
    from optscale._policy import OptScale0, OptScaleT

    budgets = _check_budgets("standard_methods", budgets)
    peeks = tuple(int(n) for n in n_peek)
    grid = {"n_peek": peeks, "target": tuple(targets), "confidence": tuple(confidences),
            "n_max": budgets}
    first = targets[0]
    return {
        "bon": BestOfN(budgets=budgets),
        "sc": MajorityVote(budgets=budgets),
        "wsc": WeightedVote(budgets=budgets),
        "esc": ESC(budgets=budgets),
        "asc": ASC(budgets=budgets),
        "dsc": DSC(budgets=budgets),
        "optscale0": OptScaleMethod("OptScale^0", OptScale0(target=first, n_peek=peeks[0]), grid),
        "optscalet": OptScaleMethod("OptScale^t", OptScaleT(target=first, n_peek=peeks[0]), grid),
        "optscale0-sot": OptScaleMethod(
            "OptScale^0 stop-on-target",
            OptScale0(target=first, n_peek=peeks[0], stop_on_target=True), grid),
        "optscale0-pred": OptScaleMethod(
            "OptScale^0 predictive", OptScale0(target=first, n_peek=peeks[0], predictive=True),
            grid),
        "optscale0-seq": OptScaleMethod(
            "OptScale^0 sequential",
            OptScale0(target=first, n_peek=peeks[0], rule="sequential", round_size=4,
                      stop_on_target=True),
            {"n_peek": peeks, "target": tuple(targets), "confidence": (0.9,),
             "n_max": budgets}),
        **{f"optscale0-{family}": OptScaleMethod(
            f"OptScale^0 {family}",
            OptScale0(target=first, n_peek=peeks[0], stop_on_target=True, family=family), grid)
           for family in ("beta", "mixture", "auto", "exceedance")},
    }


def default_methods(budgets: Sequence[int] = (8, 16, 32, 64), **grid: Any) -> list[Method]:
    """The methods of ``DEFAULT_METHODS`` from :func:`standard_methods` (every one but the
    slower sequential OptScale)."""
    methods = standard_methods(budgets, **grid)
    return [methods[k] for k in DEFAULT_METHODS]
