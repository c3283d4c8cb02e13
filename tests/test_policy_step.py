"""The functional policy core (issue 16): ``policy_step`` under ``jax.jit`` + ``lax.scan``
takes the decisions of the object policies, replayed (``OptScale0(...).run``) and online
(``start`` / ``update``), on random pools with unscored (NaN) samples."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402

import optscale  # noqa: E402
from optscale._policy_step import (  # noqa: E402
    REASON_BUDGET,
    REASON_RULE,
    REASON_TARGET,
    PolicyParams,
    policy_init,
    policy_step,
)


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _pool(seed, size=40, width=24):
    rng = np.random.default_rng(seed)
    mu, sigma = rng.uniform(0.5, 1.0, size), 10 ** rng.uniform(-1.5, -0.7, size)
    pool = np.array(optscale.TruncatedNormal(mu, sigma).sample(jax.random.key(seed),
                                                                (width,))).T.copy()
    pool[rng.random(pool.shape) < 0.05] = np.nan  # the scorer failed: drawn, not scored
    return pool, (np.clip(mu + 0.05, 0.0, 1.0), 1.2 * sigma)


def _scan(policy, pool, prior=None, per_question=False):
    """Feed every question the samples each decision asks for, in drawing order, until all
    have stopped: one jitted program (the loop is a lax.scan of fixed length); with
    ``per_question`` the state has no batch axis and the questions are a ``jax.vmap``."""
    params = PolicyParams.from_policy(policy)
    width = pool.shape[1]

    def replay(pool, prior):
        def body(carry, _):
            state, decision = carry
            cols = state.n[..., None] + jnp.arange(params.n_max)
            new = jnp.take_along_axis(pool, jnp.clip(cols, 0, width - 1), axis=-1)
            decision, state = policy_step(params, state, new, decision.n_more)
            return (state, decision), decision.n_more

        state = policy_init(params, pool.shape[:-1], prior=prior)
        decision, state = policy_step(params, state)
        first = decision.n_more
        (state, decision), requests = lax.scan(body, (state, decision), None,
                                               length=params.n_max + 1)
        return state, decision, jnp.concatenate([first[None], requests])

    if per_question:
        return jax.jit(jax.vmap(replay, out_axes=(0, 0, 1)))(jnp.asarray(pool), prior)
    return jax.jit(replay)(jnp.asarray(pool), prior)


_POLICIES = [
    optscale.OptScale0(target=0.95, confidence=0.9, n_peek=4, n_max=20),
    optscale.OptScaleT(target=0.9, confidence=0.8, n_peek=2, n_max=20, rule="sequential",
                       round_size=2, stop_on_target=True),
]


@pytest.mark.parametrize("policy, per_question", [(_POLICIES[0], True), (_POLICIES[1], False)],
                         ids=["one-shot-mle-vmap", "sequential-map-batch"])
def test_policy_step_takes_the_object_policys_decisions(policy, per_question):
    pool, prior = _pool(0)
    prior = prior if policy.uses_prior else None
    state, decision, requests = _scan(policy, pool, None if prior is None else
                                      tuple(jnp.asarray(p) for p in prior), per_question)
    # the object policy on NumPy (float64, the same fit and solver; it refits at many padded
    # shapes, each a JAX compile otherwise)
    previous = optscale.backend()
    optscale.set_backend("numpy")
    try:
        _compare(policy, pool, prior, state, decision, requests)
    finally:
        optscale.set_backend(previous)


def _compare(policy, pool, prior, state, decision, requests):
    assert bool(jnp.all(decision.stop))
    ref = policy.run(pool, prior=prior)
    np.testing.assert_array_equal(state.n, ref.n_used)
    np.testing.assert_array_equal(state.n_star, ref.n_star)
    np.testing.assert_array_equal(decision.best_index, ref.best_index)
    reason = np.asarray(state.reason)
    codes = {optscale.Stop.N_STAR: REASON_RULE, optscale.Stop.TARGET: REASON_TARGET,
             optscale.Stop.BUDGET: REASON_BUDGET}
    np.testing.assert_array_equal(reason, [codes[optscale.Stop(r)] for r in ref.reason])

    # online: the same requests, round by round, as start / update
    requests = np.asarray(requests)
    for b in range(0, len(pool), 8):
        online = policy.start(None if prior is None else (prior[0][b], prior[1][b]))
        d, drawn, asked = policy.update(online), 0, []
        while not d.stop:
            asked.append(d.n_more)
            d = policy.update(online, pool[b, drawn:drawn + d.n_more])
            drawn += asked[-1]
        assert asked == [int(v) for v in requests[:, b] if v > 0], b
        assert d.n_star == int(state.n_star[b]) and drawn == int(state.n[b])
