"""Replayable methods: a policy over a grid of its settings, replayed on many rows at once.

A :class:`PolicyMethod` holds a template :class:`optscale.policies.Policy` and a grid of field
values (dotted keys reach into a hybrid's members: ``"members.0.target"``); each combination is
one setting. :meth:`Method.replay` takes B replay rows (one question in one sample order each)
and returns, for every setting, the number of samples drawn and the index of the sample whose
answer is returned, both [S, B]. Samples are drawn in row order, so "drawn n" means the first n.

The vectorised replays below are accelerations of the online policies (``start`` / ``update``):
each is tested equal to :meth:`optscale.policies.Policy.replay`, which drives the online form
row by row, on random ragged pools. A policy kind without an acceleration replays through its
online form. The chosen sample is the setting's selection rule after n samples
(:meth:`optscale.Selection.table`).
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import itertools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from optscale._policy import OptScale, OptScale0, OptScaleT
from optscale._selection import Selection
from optscale.policies import (
    ASC,
    DSC,
    ESC,
    AnyOf,
    CostAware,
    FixedN,
    GainModel,
    LeaderPosterior,
    Policy,
    asc_stop_probability,
)
from optscale.policies._leader import prefix_probabilities
from optscale.replay._prefix import Prefix, prefix_tables

__all__ = ["DEFAULT_METHODS", "METHOD_KEYS", "Method", "PolicyMethod", "Rows", "Setting", "Tables",
           "default_methods", "standard_methods"]


class Setting(NamedTuple):
    """One hyper-parameter setting of a method."""

    method: str
    label: str
    budget: int


class Rows(NamedTuple):
    """B replay rows: ``scores`` and ``answers`` [B, M] in drawing order, ``lengths`` [B],
    ``prior`` [B, 2] (mu0, sigma0) or None, output ``tokens`` [B, M] or None."""

    scores: np.ndarray
    answers: np.ndarray
    lengths: np.ndarray
    prior: np.ndarray | None = None
    tokens: np.ndarray | None = None


class Tables:
    """What every replay of the same rows shares: the prefix tables and, per selection rule,
    the chosen sample after every prefix (computed once, on first use)."""

    def __init__(self, rows: Rows) -> None:
        self.rows = rows
        self.prefix: Prefix = prefix_tables(rows.answers)
        self._chosen: dict[Selection, np.ndarray] = {}
        self._hold: dict[tuple, np.ndarray] = {}

    def chosen(self, selection: Selection) -> np.ndarray:
        if selection not in self._chosen:
            self._chosen[selection] = selection.table(self.rows.scores, self.rows.answers)
        return self._chosen[selection]

    def hold(self, selection: Selection, alpha: float, n_max: int) -> np.ndarray:
        """The answer posterior's hold probability after every prefix (see
        :func:`optscale.policies.hold_probability`)."""
        key = (selection, alpha, n_max)
        if key not in self._hold:
            self._hold[key] = prefix_probabilities(self.rows.scores, self.rows.answers,
                                                   self.chosen(selection), selection, alpha,
                                                   n_max)
        return self._hold[key]


def _first(mask: np.ndarray) -> np.ndarray:
    """1-based position of the first True per row (every row has one)."""
    return np.argmax(mask, axis=1) + 1


def _take(table: np.ndarray, n: np.ndarray) -> np.ndarray:
    return table[np.arange(len(n)), n - 1]


class Method(abc.ABC):
    """Base class: a named family of settings."""

    name: str

    @abc.abstractmethod
    def settings(self) -> list[Setting]:
        """The settings, in the order :meth:`replay` returns them."""

    @abc.abstractmethod
    def replay(self, rows: Rows, tables: Tables) -> tuple[np.ndarray, np.ndarray]:
        """(n_used, pick), each [S, B] for the S settings."""

    @abc.abstractmethod
    def verifier_mask(self) -> np.ndarray:
        """[S] bool: which settings score every drawn sample (charged ``verifier_tokens``)."""

    def needs_prior(self) -> bool:
        return False

    def needs_scores(self) -> bool:
        """Whether any setting reads the scores (skipped on pools whose scores mean nothing)."""
        return bool(self.verifier_mask().any())

    trainable = False

    def fitted(self, rows: Rows, correct: np.ndarray, prefix: Callable | None = None
               ) -> Method:
        """The method with whatever it learns fitted on these (calibration) rows.
        ``prefix(selection, n_max, alpha)``, when given, returns the rows' pick and hold
        tables (:meth:`~optscale.GainModel.prefix_tables`), e.g. cut from a :class:`Tables`
        of a superset of the rows: fits on several subsets then share one computation."""
        return self


def _set(policy: Policy, key: str, value: Any) -> Policy:
    """``dataclasses.replace`` with dotted keys into a hybrid's members (``members.0.k``)."""
    head, _, rest = key.partition(".")
    if not rest:
        return dataclasses.replace(policy, **{head: value})
    index, _, field = rest.partition(".")
    members = list(getattr(policy, head))
    members[int(index)] = _set(members[int(index)], field, value)
    return dataclasses.replace(policy, **{head: tuple(members)})


def _label(key: str, value: Any) -> str:
    if isinstance(value, Selection):
        return f"select={value.describe()}"
    if key == "n_max":
        return f"max_n={value}"
    return f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"


@dataclasses.dataclass(frozen=True)
class PolicyMethod(Method):
    """A policy over a grid of its fields, e.g. ``PolicyMethod("ESC", ESC(), {"window": (2, 4),
    "n_max": (16, 32)})``: one setting per combination (a combination a policy rejects, such
    as a window larger than the budget, is left out)."""

    name: str
    policy: Policy
    grid: dict[str, tuple] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.policy, Policy):
            raise TypeError(f"{self.name}: policy must be an optscale policy; got "
                            f"{type(self.policy).__name__}")
        for key, values in self.grid.items():
            if not len(values):
                raise ValueError(f"{self.name}: grid[{key!r}] is empty")
        keys = list(self.grid)
        built, labels = [], []
        for values in itertools.product(*(self.grid[k] for k in keys)):
            p = self.policy
            combo = dict(zip(keys, values, strict=True))
            if _peek_too_large(self.policy, combo):
                continue
            try:
                for k, v in zip(keys, values, strict=True):
                    p = _set(p, k, v)
            except (TypeError, ValueError, AttributeError, IndexError) as err:
                raise ValueError(f"{self.name}: grid setting "
                                 f"{dict(zip(keys, values, strict=True))}: {err}") from None
            if _skip(p):
                continue
            built.append(p)
            labels.append(", ".join([_label(k, v) for k, v in zip(keys, values, strict=True)
                                     if k != "n_max"] + [_label("n_max", p.n_max)]))
        if not built:
            raise ValueError(f"{self.name}: the grid has no valid setting (is every budget "
                             "below its peek or window?)")
        object.__setattr__(self, "_policies", built)
        object.__setattr__(self, "_labels", labels)

    @property
    def policies(self) -> list[Policy]:
        return list(self._policies)  # type: ignore[attr-defined]

    def settings(self) -> list[Setting]:
        return [Setting(self.name, label, p.n_max)
                for p, label in zip(self.policies, self._labels, strict=True)]  # type: ignore

    def needs_prior(self) -> bool:
        return self.policy.uses_prior

    def verifier_mask(self) -> np.ndarray:
        return np.array([p.uses_verifier for p in self.policies])

    @property
    def trainable(self) -> bool:  # type: ignore[override]
        """A cost-aware rule without a gain model learns one (on calibration folds)."""
        return isinstance(self.policy, CostAware) and self.policy.model is None

    def subset(self, keep: np.ndarray) -> PolicyMethod:
        """The method with only the settings where ``keep`` ([S] bool) is True."""
        out = dataclasses.replace(self)
        object.__setattr__(out, "_policies", [p for p, k in zip(self.policies, keep,
                                                                 strict=True) if k])
        object.__setattr__(out, "_labels", [lb for lb, k in zip(
            self._labels, keep, strict=True) if k])  # type: ignore[attr-defined]
        return out

    def fitted(self, rows: Rows, correct: np.ndarray, prefix: Callable | None = None
               ) -> PolicyMethod:
        if not self.trainable:
            return self
        models: dict[tuple, GainModel] = {}
        prefixes: dict[tuple, tuple] = {}  # shared by the round sizes
        fitted = []
        for p in self.policies:
            key = (p.selection, p.n_max, p.round_size, p.alpha)
            if key not in models:
                shared = key[:2] + key[3:]
                if shared not in prefixes:
                    prefixes[shared] = (
                        prefix(p.selection, p.n_max, p.alpha) if prefix is not None else
                        GainModel.prefix_tables(rows.scores, rows.answers, p.selection,
                                                p.n_max, p.alpha))
                models[key] = GainModel.fit(rows.scores, rows.answers, correct, rows.lengths,
                                            p.selection, p.n_max, p.round_size, rows.tokens,
                                            p.alpha, prefix=prefixes[shared])
            fitted.append(p.with_model(models[key]))
        out = dataclasses.replace(self)
        object.__setattr__(out, "_policies", fitted)
        object.__setattr__(out, "_labels", self._labels)  # type: ignore[attr-defined]
        return out

    def replay(self, rows: Rows, tables: Tables) -> tuple[np.ndarray, np.ndarray]:
        policies = self.policies
        n = stop_times(policies, rows, tables)
        picks = np.stack([_take(tables.chosen(p.selection), k) for p, k in zip(policies, n,
                                                                               strict=True)])
        return n, picks


def _peek_too_large(template: Policy, combo: dict) -> bool:
    """A grid combination whose OptScale peek exceeds its budget (the policy would refuse it)."""
    n_max = combo.get("n_max", template.n_max)
    peek = combo.get("n_peek", getattr(template, "n_peek", None))
    if peek is not None and not isinstance(template, AnyOf) and peek > n_max:
        return True
    for i, m in enumerate(getattr(template, "members", ())):
        peek = combo.get(f"members.{i}.n_peek", getattr(m, "n_peek", None))
        if peek is not None and peek > n_max:
            return True
    return False


def _skip(policy: Policy) -> bool:
    """Combinations that are not worth a setting: a window or a peek wider than the budget
    (a peek larger than n_max is rejected by the policy itself, so such settings are dropped
    before they are built)."""
    window = getattr(policy, "window", None)
    return window is not None and window > policy.n_max


# ----------------------------------------------------------------------------- accelerations

def stop_times(policies: Sequence[Policy], rows: Rows, tables: Tables) -> np.ndarray:
    """[S, B] samples drawn by each policy on each row, vectorised by kind."""
    out = np.zeros((len(policies), len(rows.lengths)), np.int64)
    groups: dict[type, list[int]] = {}
    for i, p in enumerate(policies):
        groups.setdefault(type(p), []).append(i)
    for cls, idx in groups.items():
        fn = _REPLAY.get(cls)
        if fn is None:  # no acceleration: the online form, row by row
            for i in idx:
                out[i] = policies[i].replay(rows.scores, rows.answers, rows.lengths,
                                            rows.tokens, rows.prior)[0]
        else:
            out[idx] = fn([policies[i] for i in idx], rows, tables)
    return out


def _fixed(policies: list[FixedN], rows: Rows, tables: Tables) -> np.ndarray:
    return np.stack([np.minimum(p.n_max, rows.lengths) for p in policies])


def _esc(policies: list[ESC], rows: Rows, tables: Tables) -> np.ndarray:
    run = tables.prefix.run
    m = np.arange(1, run.shape[1] + 1)[None, :]
    out = []
    for p in policies:
        cap = np.minimum(p.n_max, rows.lengths)[:, None]
        out.append(_first(((m % p.window == 0) & (run >= p.window) & (m <= cap)) | (m == cap)))
    return np.stack(out)


def _asc(policies: list[ASC], rows: Rows, tables: Tables) -> np.ndarray:
    pre = tables.prefix
    width = pre.top1.shape[1]
    counts = np.arange(width + 1)  # the criterion depends on two counts <= M: tabulate it
    prob = asc_stop_probability(counts[:, None], counts[None, :])[pre.top1, pre.top2]
    m = np.arange(1, width + 1)[None, :]
    out = []
    for p in policies:
        cap = np.minimum(p.n_max, rows.lengths)[:, None]
        out.append(_first(((prob >= p.threshold) & (m <= cap)) | (m == cap)))
    return np.stack(out)


def _dsc(policies: list[DSC], rows: Rows, tables: Tables) -> np.ndarray:
    pre = tables.prefix
    m = np.arange(1, pre.run.shape[1] + 1)[None, :]
    out = []
    for p in policies:
        w = p.window
        cap = np.minimum(p.n_max, rows.lengths)
        first = np.minimum(w, cap)
        easy = _take(pre.run, first) >= w  # the first window agrees
        distinct = np.maximum(_take(pre.distinct, first), 1)
        start = np.minimum(w * 2 ** np.minimum(distinct - 1, 30), cap)[:, None]
        # checkpoints start, start + w, ...: stop when the last window agrees, or at the cap
        check = (m >= start) & ((m - start) % w == 0) & (pre.run >= w)
        n = _first((check & (m <= cap[:, None])) | (m == cap[:, None]))
        out.append(np.where(easy, first, n))
    return np.stack(out)


def _optscale(policies: list[OptScale], rows: Rows, tables: Tables) -> np.ndarray:
    prior = None if rows.prior is None else (rows.prior[:, 0], rows.prior[:, 1])
    if policies[0].uses_prior and prior is None:
        raise ValueError("OptScale^t: the pool has no prior (mu0, sigma0) per question")
    width = rows.scores.shape[1]
    drawn = np.arange(width)[None, :] < rows.lengths[:, None]
    # the one-shot shortcut reads the first n_peek scores: only where none is missing
    complete = not np.any(np.isnan(rows.scores) & drawn)
    fits: dict[tuple, Any] = {}
    out = []
    for p in policies:
        if p.rule == "one-shot" and complete:
            # N* is decided once from the peek: n_used = min(max(n_peek, N*), pool, n_max),
            # or the peek alone when stop_on_target and a peek score reached the target
            peek = min(p.n_peek, width)
            scores = np.where(drawn, rows.scores, 0.5)[:, :peek]
            mask = np.arange(peek)[None, :] < rows.lengths[:, None]
            key = p.fit_key()
            if key not in fits:
                fits[key] = p.fit(scores, mask, prior)
            n_star, _ = p.decide(fits[key])
            cap = np.minimum(rows.lengths, p.n_max)
            n = np.minimum(np.maximum(p.n_peek, n_star), cap)
            if p.stop_on_target:
                hit = np.any(mask & (scores >= p.target), axis=1)
                n = np.where(hit, np.minimum(p.n_peek, cap), n)
        else:
            n = p.run(rows.scores, prior, rows.lengths).n_used
        out.append(n)
    return np.stack(out)


def _leader(policies: list[LeaderPosterior], rows: Rows, tables: Tables) -> np.ndarray:
    width = rows.scores.shape[1]
    m = np.arange(1, width + 1)[None, :]
    out = np.zeros((len(policies), len(rows.lengths)), np.int64)
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(policies):
        groups.setdefault((p.selection, p.alpha, p.n_max), []).append(i)
    for (selection, alpha, n_max), idx in groups.items():
        prob = tables.hold(selection, alpha, n_max)
        for i in idx:
            p = policies[i]
            cap = np.minimum(p.n_max, rows.lengths)[:, None]
            check = (m % p.round_size == 0) & (prob >= p.confidence)
            out[i] = _first((check & (m <= cap)) | (m == cap))
    return out


def _cost(policies: list[CostAware], rows: Rows, tables: Tables) -> np.ndarray:
    size, width = rows.scores.shape
    m = np.arange(1, width + 1)
    per_sample = None
    if rows.tokens is not None:
        per_sample = np.cumsum(np.asarray(rows.tokens, np.float64), axis=1) / m[None, :]
    out = []
    for p in policies:
        if p.model is None:
            raise ValueError("CostAware: no gain model (the protocol fits one per fold)")
        hold = tables.hold(p.selection, p.alpha, p.n_max)
        t = p.model.tokens_per_sample if per_sample is None else per_sample
        gain = p.model.gain(m[None, :], hold)
        stop = (m[None, :] % p.round_size == 0) & (gain < p.price * p.round_size * t)
        cap = np.minimum(p.n_max, rows.lengths)[:, None]
        out.append(_first((stop & (m[None, :] <= cap)) | (m[None, :] == cap)))
    return np.stack(out)


def _any(policies: list[AnyOf], rows: Rows, tables: Tables) -> np.ndarray:
    # members look only at their own checkpoints: the hybrid stops at the earliest member
    out = []
    for p in policies:
        times = stop_times(p.members, rows, tables)
        out.append(np.minimum(times.min(axis=0), np.minimum(p.n_max, rows.lengths)))
    return np.stack(out)


_REPLAY: dict[type, Callable[..., np.ndarray]] = {
    FixedN: _fixed, ESC: _esc, ASC: _asc, DSC: _dsc, OptScale0: _optscale, OptScaleT: _optscale,
    LeaderPosterior: _leader, CostAware: _cost, AnyOf: _any,
}


# ----------------------------------------------------------------------------- the registry

DEFAULT_METHODS = ("bon", "sc", "wsc", "esc", "asc", "dsc", "optscale0", "optscalet",
                   "optscale0-sot", "optscale0-pred", "optscale0-wv", "leader", "hybrid", "cost")
# every key of standard_methods (listed without building the grids: the command line's help)
METHOD_KEYS = (*DEFAULT_METHODS, "optscale0-seq", "optscale0-beta", "optscale0-mixture",
               "optscale0-auto", "optscale0-exceedance")

_WEIGHTED = Selection("weighted")
# the weighted votes of the standard grid: raw scores, and squared scores (w = u^2, trusting
# high scores more)
WEIGHTS = (_WEIGHTED, Selection("weighted", "power", 0.5))


def standard_methods(budgets: Sequence[int] = (8, 16, 32, 64), *,
                     n_peek: Sequence[int] = (2, 4),
                     targets: Sequence[float] = (0.85, 0.9, 0.95, 0.97, 0.99),
                     confidences: Sequence[float] = (0.8, 0.9, 0.95, 0.99),
                     esc_windows: Sequence[int] = (2, 4, 8),
                     asc_thresholds: Sequence[float] = (0.9, 0.95, 0.99),
                     dsc_windows: Sequence[int] = (2, 4),
                     weights: Sequence[Selection] = WEIGHTS,
                     keys: Sequence[str] | None = None) -> dict[str, Method]:
    """Every method the harness ships (or those of ``keys``), by command-line key, with its
    standard grid. A method none of whose settings fits the budgets (every peek larger than
    every budget) raises ValueError.

    Baselines: ``bon`` (Best-of-N), ``sc`` (majority vote), ``wsc`` (score-weighted vote, over
    the ``weights`` selections), ``esc``, ``asc``, ``dsc`` (vote selection, as published).
    OptScale over peek sizes and the paper's range of targets and confidences (its
    "percentile" 0.01..0.2 is 1 - confidence), best-score selection: ``optscale0`` /
    ``optscalet`` (one-shot MLE / MAP; MAP needs pools with priors), ``optscale0-sot``
    (stop-on-target), ``optscale0-pred`` (posterior-predictive N*), ``optscale0-seq``
    (sequential, rounds of 4), families ``optscale0-{beta,mixture,auto,exceedance}``; and the
    score bound with a weighted-vote answer, ``optscale0-wv``. Rules on correct answers:
    ``leader`` (:class:`~optscale.LeaderPosterior`, vote and weighted-vote selection),
    ``hybrid`` (:class:`~optscale.AnyOf` of OptScale^0 stop-on-target and ESC, weighted vote)
    and ``cost`` (:class:`~optscale.CostAware`, its gain model fitted on calibration folds).
    """
    budgets = tuple(int(b) for b in budgets)
    if not budgets or min(budgets) < 1:
        raise ValueError(f"budgets must be a non-empty list of integers >= 1; got {budgets}")
    peeks = tuple(int(n) for n in n_peek)
    first = float(targets[0])
    grid = {"n_peek": peeks, "target": tuple(targets), "confidence": tuple(confidences),
            "n_max": budgets}

    def opt(name: str, cls: type = OptScale0, extra_grid: dict | None = None,
            **kw: Any) -> PolicyMethod:
        return PolicyMethod(name, cls(target=first, n_peek=peeks[0], **kw),
                            {**grid, **(extra_grid or {})})

    builders: dict[str, Callable[[], Method]] = {
        "bon": lambda: PolicyMethod("BoN", FixedN(), {"n_max": budgets}),
        "sc": lambda: PolicyMethod("SC", FixedN(selection=Selection("vote")), {"n_max": budgets}),
        "wsc": lambda: PolicyMethod("Weighted SC", FixedN(selection=weights[0]),
                            {"selection": tuple(weights), "n_max": budgets}),
        "esc": lambda: PolicyMethod("ESC", ESC(), {"window": tuple(esc_windows), "n_max": budgets}),
        "asc": lambda: PolicyMethod("ASC", ASC(), {"threshold": tuple(asc_thresholds),
                                           "n_max": budgets}),
        "dsc": lambda: PolicyMethod("DSC", DSC(), {"window": tuple(dsc_windows), "n_max": budgets}),
        "optscale0": lambda: opt("OptScale^0"),
        "optscalet": lambda: opt("OptScale^t", OptScaleT),
        "optscale0-sot": lambda: opt("OptScale^0 stop-on-target", stop_on_target=True),
        "optscale0-pred": lambda: opt("OptScale^0 predictive", predictive=True),
        "optscale0-seq": lambda: PolicyMethod(
            "OptScale^0 sequential",
            OptScale0(target=first, n_peek=peeks[0], rule="sequential", round_size=4,
                      stop_on_target=True),
            {"n_peek": peeks, "target": tuple(targets), "confidence": (0.9,),
             "n_max": budgets}),
        "optscale0-wv": lambda: opt("OptScale^0 + weighted vote", stop_on_target=True,
                            selection=weights[0]),
        "leader": lambda: PolicyMethod("Leader posterior", LeaderPosterior(), {
            "confidence": (0.85, 0.9, 0.95, 0.99), "alpha": (2.0, 4.0),
            "selection": (Selection("vote"), *weights), "n_max": budgets}),
        "hybrid": lambda: PolicyMethod(
            "OptScale^0 or ESC", AnyOf((OptScale0(target=first, n_peek=4, stop_on_target=True),
                                       ESC(window=4)), selection=weights[0]),
            {"members.0.target": tuple(targets[1::2]) or (first,),
             "members.0.confidence": (0.9,), "members.1.window": (2, 4),
             "n_max": budgets}),
        "cost": lambda: PolicyMethod("Cost-aware", CostAware(), {
            "price": (1e-6, 1e-5, 3e-5, 1e-4, 3e-4), "round_size": (8, 16),
            "selection": tuple(weights), "n_max": budgets}),
    }
    for family in ("beta", "mixture", "auto", "exceedance"):
        builders[f"optscale0-{family}"] = functools.partial(
            opt, f"OptScale^0 {family}", stop_on_target=True, family=family)
    unknown = [k for k in (keys or ()) if k not in builders]
    if unknown:
        raise ValueError(f"unknown method key(s) {unknown}; known: {', '.join(builders)}")
    return {k: builders[k]() for k in (keys or builders)}


def default_methods(budgets: Sequence[int] = (8, 16, 32, 64), **grid: Any) -> list[Method]:
    """The methods of ``DEFAULT_METHODS`` from :func:`standard_methods`."""
    return list(standard_methods(budgets, keys=DEFAULT_METHODS, **grid).values())
