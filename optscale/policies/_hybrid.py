"""A hybrid: several stopping rules at once, stopping at the first that fires.

``AnyOf((OptScale0(...), ESC(...)), n_max=32, selection=Selection("weighted"))`` combines the
score bound with an agreement rule: every member sees every sample, the hybrid asks for the
smallest of the members' requests, and stops as soon as one member's rule stops (or at the
budget). Members look at the samples only at their own checkpoints, so a member's stopping
time is the same inside the hybrid as alone, and the hybrid's is the earliest of them.
Members share the hybrid's budget; their own selection rules are unused.
"""

from __future__ import annotations

import dataclasses

from optscale._selection import Selection
from optscale.policies._base import Policy, PolicyState, Step, count

__all__ = ["AnyOf"]


@dataclasses.dataclass(frozen=True)
class AnyOf(Policy):
    """Stop when any of ``members`` stops (see the module)."""

    members: tuple[Policy, ...] = ()
    n_max: int = 32
    selection: Selection = Selection("weighted")
    kind = "any"

    def __post_init__(self) -> None:
        count("AnyOf", "n_max", self.n_max, 1)
        members = tuple(self.members)
        if not members or not all(isinstance(m, Policy) for m in members):
            raise TypeError("AnyOf: members must be a non-empty sequence of policies")
        # one budget for all: each member's own n_max becomes the hybrid's
        object.__setattr__(self, "members", tuple(
            dataclasses.replace(m, n_max=self.n_max) for m in members))

    @property
    def uses_prior(self) -> bool:  # type: ignore[override]
        return any(m.uses_prior for m in self.members)

    @property
    def scores_stop(self) -> bool:  # type: ignore[override]
        return any(m.scores_stop for m in self.members)

    def start(self, prior=None, *, question=None) -> PolicyState:
        state = super().start(prior)
        state.memo["members"] = [m.start(prior if m.uses_prior else None, question=question)
                                 for m in self.members]
        return state

    def _step(self, state: PolicyState) -> Step:
        more, n_stars, confidence = [], [], []
        for member, sub in zip(self.members, state.memo["members"], strict=True):
            lo = len(sub.scores)
            d = member.update(sub, state.scores[lo:], state.answers[lo:], state.tokens[lo:])
            if d.stop:
                return Step(True, n_star=d.n_star, status=d.status, confidence=d.confidence,
                            reason=f"{member.kind}:{d.reason}")
            more.append(d.n_more)
            if d.n_star is not None:
                n_stars.append(d.n_star)
            if d.confidence is not None:
                confidence.append(d.confidence)
        return Step(False, min(more), n_star=min(n_stars) if n_stars else None,
                    confidence=max(confidence) if confidence else None)
