"""The OptScale policy as a pure function on fixed-size arrays: ``policy_step`` runs inside
``jax.jit``, ``jax.vmap`` and ``lax.scan``, so an RL or rollout loop can decide N in the graph.

It takes the decisions of the object policies :class:`~optscale.OptScale0` /
:class:`~optscale.OptScaleT` with the truncated normal (``rule`` one-shot or sequential,
``round_size``, ``stop_on_target``, ``n_peek``, ``n_max``; criterion ``"probability"`` with any
``k``, ``"expected"`` or ``"cost"``): the same checkpoints, the same fit (MLE or MAP) and the
same solver, computed for a batch of questions at once. Not covered: other families,
``predictive=True``, and the goodness-of-fit fields of :class:`~optscale.Decision`.

A question's samples live in a buffer of ``n_max`` scores in drawing order; NaN marks a sample
drawn but not scored (it counts against the budget and is left out of the fit, like the
object policy's ``update``). One round of a loop::

    params = PolicyParams.from_policy(optscale.OptScale0(target=0.95, n_peek=4, n_max=32))
    state = policy_init(params, batch=64)
    decision, state = policy_step(params, state)             # the first request (the peek)
    # ... draw decision.n_more samples per question, score them: new [B, R], count [B] ...
    decision, state = policy_step(params, state, new, count)  # record them and decide
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

from optscale import _lazy_jax

__all__ = ["PolicyDecision", "PolicyParams", "PolicyStepState", "policy_init", "policy_observe",
           "policy_step"]

REASON_NONE, REASON_RULE, REASON_TARGET, REASON_BUDGET = 0, 1, 2, 3
_RULES = ("one-shot", "sequential")
_CRITERIA = ("probability", "expected", "cost")


@dataclasses.dataclass(frozen=True)
class PolicyParams:
    """The policy's settings: static ones (shapes, rules; a new value compiles anew) and
    numeric ones (traced: they may vary inside jit, and have a batch shape)."""

    target: Any
    confidence: Any = 0.9
    cost: Any = 0.0
    low: Any = 0.0
    high: Any = 1.0
    prior_std: tuple[Any, Any] = (0.1, 0.1)
    n_peek: int = 4
    n_max: int = 64
    rule: str = "one-shot"
    round_size: int = 1
    stop_on_target: bool = False
    criterion: str = "probability"
    k: int = 1
    uses_prior: bool = False

    def __post_init__(self) -> None:
        if self.rule not in _RULES:
            raise ValueError(f"rule must be one of {_RULES}; got {self.rule!r}")
        if self.criterion not in _CRITERIA:
            raise ValueError(f"criterion must be one of {_CRITERIA}; got {self.criterion!r}")
        for name, low in (("n_peek", 0), ("n_max", 1), ("round_size", 1), ("k", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")

    @classmethod
    def from_policy(cls, policy: Any) -> PolicyParams:
        """The settings of an :class:`~optscale.OptScale0` / :class:`~optscale.OptScaleT`
        with the truncated normal."""
        if getattr(policy, "family", "truncnorm") != "truncnorm" or getattr(
                policy, "predictive", False):
            raise ValueError("policy_step supports family='truncnorm' without predictive")
        return cls(target=policy.target, confidence=policy.confidence, cost=policy.cost,
                   low=policy.low, high=policy.high, prior_std=tuple(policy.prior_std),
                   n_peek=policy.n_peek, n_max=policy.n_max, rule=policy.rule,
                   round_size=policy.round_size, stop_on_target=policy.stop_on_target,
                   criterion=policy.criterion, k=policy.k,
                   uses_prior=bool(getattr(policy, "uses_prior", False)))


_STATIC = ("n_peek", "n_max", "rule", "round_size", "stop_on_target", "criterion", "k",
           "uses_prior")
# a pytree (the settings that shape the program are static), registered when JAX is imported
_lazy_jax.when_imported(lambda jax: jax.tree_util.register_dataclass(
    PolicyParams, data_fields=["target", "confidence", "cost", "low", "high", "prior_std"],
    meta_fields=list(_STATIC)))


class PolicyStepState(NamedTuple):
    """Per question ([B] unless noted): the sample buffer and the rule's memory.

    scores: [B, n_max] in drawing order, NaN where not scored or not drawn yet.
    n: samples drawn. n_star: the current N* (0: none yet). next_check: the number of scored
    samples at which the rule looks next. stopped, reason: done and why (``REASON_*``).
    prior: (mu0, sigma0) for MAP (OptScaleT), or None.
    """

    scores: Any
    n: Any
    n_star: Any
    next_check: Any
    stopped: Any
    reason: Any
    prior: Any = None


class PolicyDecision(NamedTuple):
    """The decision arrays ([B]): stop; n_more (0 exactly when stop); n_star (0: none yet);
    best_index (-1: no sample yet); status (the solver's Status where this step solved for
    N*, else -1); reason (``REASON_*``, 0 while running)."""

    stop: Any
    n_more: Any
    n_star: Any
    best_index: Any
    status: Any
    reason: Any


def policy_init(params: PolicyParams, batch: int | tuple[int, ...] = (), *, prior: Any = None,
                dtype: Any = None) -> PolicyStepState:
    """A fresh state for ``batch`` questions (OptScaleT: ``prior`` = (mu0, sigma0))."""
    import jax.numpy as jnp

    if params.uses_prior and prior is None:
        raise ValueError("a MAP policy (uses_prior) needs prior=(mu0, sigma0)")
    shape = (batch,) if isinstance(batch, int) else tuple(batch)
    dtype = jnp.result_type(float) if dtype is None else dtype
    zeros = jnp.zeros(shape, jnp.int32)
    if prior is not None:
        prior = tuple(jnp.broadcast_to(jnp.asarray(v, dtype), shape) for v in prior)
    return PolicyStepState(jnp.full((*shape, params.n_max), jnp.nan, dtype), zeros, zeros,
                           zeros, jnp.zeros(shape, bool), zeros, prior)


def policy_observe(state: PolicyStepState, scores: Any, count: Any) -> PolicyStepState:
    """Append the first ``count[b]`` of ``scores[b, :]`` ([B, R], NaN: unscored) to each
    question's buffer (samples beyond the buffer, n_max, are dropped)."""
    import jax.numpy as jnp

    scores = jnp.asarray(scores, state.scores.dtype)
    count = jnp.broadcast_to(jnp.asarray(count, jnp.int32), state.n.shape)
    width, room = scores.shape[-1], state.scores.shape[-1]
    col = jnp.arange(room, dtype=jnp.int32)
    j = col - state.n[..., None]  # which new sample lands in column col
    take = (j >= 0) & (j < count[..., None]) & (j < width)
    new = jnp.take_along_axis(scores, jnp.clip(j, 0, width - 1), axis=-1)
    return state._replace(scores=jnp.where(take, new, state.scores),
                          n=jnp.minimum(state.n + jnp.minimum(count, width), room))


def _solve_n_star(params: PolicyParams, scores: Any, mask: Any, prior: Any) -> tuple[Any, Any]:
    """(N*, status) of every question from its scored samples, as the object policy's
    :meth:`~optscale.OptScale.n_star` does (fit, then the solver, N* in [1, n_max])."""
    import jax.numpy as jnp

    from optscale import _api
    from optscale._distribution import TruncatedNormal
    from optscale._policy import solve_criterion

    fit = _api.fit_truncnorm(jnp.where(mask, scores, 0.5), mask,
                             prior=prior if params.uses_prior else None,
                             prior_std=params.prior_std, low=params.low, high=params.high,
                             out_of_range="clip")
    dist = TruncatedNormal(fit.mu, fit.sigma, jnp.asarray(params.low, fit.mu.dtype),
                           jnp.asarray(params.high, fit.mu.dtype))
    sol = solve_criterion(params, dist)
    return sol.n.astype(jnp.int32), sol.status.astype(jnp.int32)


def policy_step(params: PolicyParams, state: PolicyStepState, scores: Any = None,
                count: Any = None) -> tuple[PolicyDecision, PolicyStepState]:
    """Record new samples (``scores`` [B, R] and ``count`` [B], as :func:`policy_observe`;
    none: just decide) and take every question's next decision.

    Questions that have stopped stay stopped (later samples are ignored, n_more 0). The fit
    and the solver run only when some question is at a checkpoint (``lax.cond``; under
    ``vmap`` both branches run).
    """
    import jax.numpy as jnp
    from jax import lax

    if scores is not None:
        if count is None:
            raise ValueError("policy_step: count is required with scores")
        state = policy_observe(state, jnp.where(state.stopped[..., None], jnp.nan, scores),
                               jnp.where(state.stopped, 0, count))
    values, n = state.scores, state.n
    col = jnp.arange(values.shape[-1], dtype=jnp.int32)
    scored = jnp.isfinite(values) & (col < n[..., None])
    n_scored = jnp.sum(scored, axis=-1, dtype=jnp.int32)
    budget = ~state.stopped & (n >= params.n_max)
    live = ~state.stopped & ~budget

    peek = n_scored < params.n_peek
    decided = state.n_star > 0
    check = live & ~peek & (~decided | (n_scored >= state.next_check))
    best_score = jnp.max(jnp.where(scored, values, -jnp.inf), axis=-1)
    target = jnp.asarray(params.target, values.dtype)
    hit = check & (n_scored > 0) & (best_score >= target) if params.stop_on_target else \
        jnp.zeros_like(check)
    check = check & ~hit
    refit = check & (~decided | (params.rule == "sequential"))

    def solve(_):
        return _solve_n_star(params, values, scored, state.prior)

    def skip(_):
        return jnp.zeros_like(state.n_star), jnp.full_like(state.n_star, -1)

    # (a batch of questions: solve only when one of them is at a checkpoint)
    found, status = lax.cond(jnp.any(refit), solve, skip, None) if refit.ndim else \
        lax.cond(refit, solve, skip, None)
    n_star = jnp.where(refit, found, state.n_star)
    status = jnp.where(refit, status, -1)
    next_check = jnp.where(check, n_scored + params.round_size
                           if params.rule == "sequential" else n_star, state.next_check)
    done = live & ~peek & ~hit & (n_scored >= n_star)
    more = jnp.where(peek, params.n_peek - n_scored,
                     jnp.minimum(n_star, next_check) - n_scored)
    stop = state.stopped | budget | hit | done
    n_more = jnp.where(stop, 0, jnp.minimum(more, params.n_max - n)).astype(jnp.int32)
    reason = jnp.where(state.stopped, state.reason, jnp.where(
        budget, REASON_BUDGET, jnp.where(hit, REASON_TARGET, jnp.where(
            done, REASON_RULE, REASON_NONE)))).astype(jnp.int32)
    best_index = jnp.where(jnp.any(scored, axis=-1), jnp.argmax(
        jnp.where(scored, values, -jnp.inf), axis=-1), jnp.where(n > 0, 0, -1))
    new_state = state._replace(n_star=n_star, next_check=next_check, stopped=stop,
                               reason=reason)
    return PolicyDecision(stop, n_more, n_star, best_index.astype(jnp.int32), status,
                          reason), new_state
