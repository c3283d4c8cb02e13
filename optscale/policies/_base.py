"""The policy contract every method follows: ``start`` / ``update`` -> :class:`Decision`.

A policy is a stopping rule and a :class:`~optscale.Selection`. The caller draws the samples
the last decision asked for, then reports their scores (NaN or None: not scored), answers
(hashable keys; None: no answer extracted) and output tokens; the policy says stop or how many
more, and which sample is the answer so far (``Decision.chosen``).

Every rule is a *checkpoint* rule: it looks at the samples at the points it asked for and
nowhere else, so feeding it more often (a hybrid of two rules asks for the smaller of their
requests) changes nothing: the stopping time of a hybrid is the earliest of its members'.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar, NamedTuple

import numpy as np

from optscale._args import integer
from optscale._checks import INT_MAX
from optscale._selection import Selection

__all__ = ["Decision", "Policy", "PolicyState", "Step", "count", "new_samples"]


def count(owner: str, name: str, value: Any, low: int) -> int:
    """`value` as an int if it is an integer in [low, 2**31 - 1] (a sample count: the solvers'
    n is int32, so a larger budget is refused when the policy is built, not after the first
    samples are paid for); TypeError/ValueError naming ``owner: name`` otherwise."""
    n = integer(owner, name, value, low)
    if n > INT_MAX:
        shown = repr(n) if n < 10**20 else f"about 2**{n.bit_length() - 1}"  # no huge repr
        raise ValueError(f"{owner}: {name} must be <= {INT_MAX} (a sample count; the solvers' "
                         f"n is int32); got {shown}")
    return n


class Decision(NamedTuple):
    """What to do next.

    ``stop``: the question is done; ``n_more``: samples to draw next (0 exactly when stop);
    ``n_star``: the rule's planned total when it has one (OptScale's N*, a fixed N);
    ``best_index``: the highest-scoring sample; ``status``: the solver's Status behind n_star
    (OptScale); ``ks``/``ks_pvalue``: goodness of fit of OptScale's fitted family; ``chosen``:
    the sample the selection rule answers with; ``confidence``: the rule's own probability
    (ASC's, the answer posterior's) when it has one; ``reason``: why it stopped ("rule",
    "target", "budget") or None.
    """

    stop: bool
    n_more: int
    n_star: int | None
    best_index: int | None
    status: int | None
    ks: float | None = None
    ks_pvalue: float | None = None
    chosen: int | None = None
    confidence: float | None = None
    reason: str | None = None


@dataclasses.dataclass
class PolicyState:
    """The online state of one question (mutated by :meth:`Policy.update`)."""

    scores: list[float]
    prior: Any = None
    n_star: int | None = None
    stopped: bool = False
    answers: list[Any] = dataclasses.field(default_factory=list)
    tokens: list[float] = dataclasses.field(default_factory=list)
    memo: dict[str, Any] = dataclasses.field(default_factory=dict)


class Step(NamedTuple):
    """A rule's verdict on the samples so far: stop, or the next checkpoint ``more`` samples
    away (>= 1)."""

    stop: bool
    more: int = 0
    n_star: int | None = None
    status: int | None = None
    confidence: float | None = None
    reason: str = "rule"
    ks: float | None = None
    ks_pvalue: float | None = None


def new_samples(scores: Any, answers: Any, tokens: Any) -> tuple[np.ndarray, list, list]:
    """One update's scores (float array; None: none; None entries: unscored), answers (one per
    score, or None) and tokens (one per score, or None), checked."""
    if scores is None:
        values = np.zeros(0)
    else:
        if np.ndim(scores) > 1:
            raise ValueError(f"scores must be a number or a 1-D sequence; got shape "
                             f"{np.shape(scores)}")
        try:
            values = np.asarray([np.nan if s is None else s for s in np.atleast_1d(
                np.asarray(scores, dtype=object))], np.float64)
        except (TypeError, ValueError) as err:
            raise TypeError(f"scores must be numbers (None: not scored); got {scores!r}") \
                from err
    count = values.size
    if answers is None:
        answers = [None] * count
    else:
        answers = [answers] if isinstance(answers, (str, bytes)) else list(answers)
        if len(answers) != count:
            raise ValueError(f"answers: expected {count} (one per score); got {len(answers)}")
    if tokens is None:
        tokens = [np.nan] * count
    else:
        try:
            tokens = [float(t) for t in np.atleast_1d(np.asarray(tokens, np.float64))]
        except (TypeError, ValueError) as err:
            raise TypeError(f"tokens must be numbers; got {tokens!r}") from err
        if len(tokens) != count:
            raise ValueError(f"tokens: expected {count} (one per score); got {len(tokens)}")
    return values, answers, tokens


class Policy(abc.ABC):
    """Base of every policy: subclasses are frozen dataclasses with an ``n_max`` (the budget)
    and a ``selection`` field, and implement :meth:`_step`."""

    kind: ClassVar[str] = ""
    uses_prior: ClassVar[bool] = False
    scores_stop: ClassVar[bool] = False  # the stopping rule reads the scores
    n_max: int
    selection: Selection

    # ------------------------------------------------------------------ subclass hook

    @abc.abstractmethod
    def _step(self, state: PolicyState) -> Step:
        """The rule on ``state`` (at least one sample short of the budget, not stopped)."""

    def _first(self, state: PolicyState) -> int:
        """Samples to ask for before any is seen (the first checkpoint)."""
        return self._step(state).more

    # ------------------------------------------------------------------ the contract

    @property
    def uses_verifier(self) -> bool:
        """Whether every drawn sample must be scored (the rule or the selection reads scores)."""
        return self.scores_stop or self.selection.rule != "vote"

    def start(self, prior: Any = None, *, question: str | None = None) -> PolicyState:
        """A fresh state for one question."""
        del question
        return PolicyState(scores=[], prior=prior)

    def update(self, state: PolicyState, scores: Any = (), answers: Any = None,
               tokens: Any = None) -> Decision:
        """Record the new samples' ``scores`` (NaN/None: unscored), ``answers`` and ``tokens``,
        and decide. Call it with no samples to get the first request. Updating a state that
        has stopped raises ValueError: start a new state for the next question."""
        values, new_answers, new_tokens = new_samples(scores, answers, tokens)
        if state.stopped and values.size:
            raise ValueError(f"{type(self).__name__}.update: this question has stopped; "
                             "start a new state (policy.start()) for the next one")
        state.scores.extend(float(v) for v in values)
        state.answers.extend(new_answers)
        state.tokens.extend(new_tokens)
        n = len(state.scores)
        step = None
        if state.stopped:
            stop, more, reason = True, 0, state.memo.get("reason")
        elif n >= self.n_max:
            stop, more, reason = True, 0, "budget"
        else:
            step = self._step(state)
            stop, more, reason = step.stop, step.more, step.reason if step.stop else None
            if not stop and more < 1:
                raise AssertionError(f"{type(self).__name__}: a rule must ask for >= 1 sample")
            more = min(more, self.n_max - n)
        if stop:
            state.stopped = True
            state.memo["reason"] = reason
        finite = np.isfinite(np.asarray(state.scores, np.float64))
        best = (int(np.argmax(np.where(finite, state.scores, -np.inf)))
                if finite.any() else (0 if n else None))
        return Decision(stop, 0 if stop else more,
                        step.n_star if step is not None else state.n_star, best,
                        step.status if step is not None else None,
                        step.ks if step is not None else None,
                        step.ks_pvalue if step is not None else None,
                        self.selection.choose(state.scores, state.answers) if n else None,
                        step.confidence if step is not None else None, reason)

    # ------------------------------------------------------------------ replay, files

    def replay(self, scores: Any, answers: Any = None, lengths: Any = None,
               tokens: Any = None, prior: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """(n_used, chosen) for B stored rows ([B, M] in drawing order), by driving the online
        form row by row: the reference the vectorised replay methods are tested against."""
        scores = np.asarray(scores, np.float64)
        size, width = scores.shape
        answers = np.full((size, width), -1) if answers is None else np.asarray(answers)
        lengths = np.full(size, width) if lengths is None else np.asarray(lengths)
        n_used = np.zeros(size, np.int64)
        chosen = np.zeros(size, np.int64)
        for b in range(size):
            state = self.start(None if prior is None else tuple(np.asarray(prior)[b]))
            decision = self.update(state)
            while not decision.stop and len(state.scores) < lengths[b]:
                lo = len(state.scores)
                hi = min(lo + decision.n_more, int(lengths[b]))
                decision = self.update(
                    state, scores[b, lo:hi], [int(a) for a in answers[b, lo:hi]],
                    None if tokens is None else np.asarray(tokens)[b, lo:hi])
            n_used[b] = len(state.scores)
            chosen[b] = decision.chosen if decision.chosen is not None else 0
        return n_used, chosen

    def to_dict(self) -> dict:
        """The policy as plain data (``optscale.policies.policy_from_dict`` inverts it)."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if not f.compare:
                continue
            value = getattr(self, f.name)
            if hasattr(value, "to_dict"):  # a Selection, a Policy, a GainModel
                value = value.to_dict()
            elif isinstance(value, tuple) and value and isinstance(value[0], Policy):
                value = [v.to_dict() for v in value]
            elif isinstance(value, np.ndarray):
                value = value.tolist()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    def describe(self) -> str:
        """A one-line description: the kind, its settings and the selection rule."""
        parts = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name == "selection" or not f.compare or not f.repr:
                continue
            parts.append(f"{f.name}={value:g}" if isinstance(value, float)
                         else f"{f.name}={value}")
        return f"{self.kind}({', '.join(parts)}; select={self.selection.describe()})"
