"""Train a small Flax NNX head on a loss built from optscale's bound, and check that every step
stays finite.

The head reads a question's features and predicts the truncated normal of its verifier scores
(mu, sigma on [0, 1]). Its loss uses what a user of the bound would: the scores' negative
log-likelihood (``TruncatedNormal.logpdf``; some scores are exactly 1.0, the top of the
range), a cross-entropy between ``best_of_n_prob`` and whether the question's best score of n
reached the target, the squared error of ``expected_best`` against that best score, and the
relaxed N* (``optscale.relaxed_min_samples``) as a small cost term. Some questions are
masked out (no scores: their loss terms are dropped with ``jnp.where``) and some have
parameters pushed outside the valid range, so that one INVALID element sits in every batch.

    python examples/nnx_bound_training.py [--steps 500] [--x64]

Prints the loss every 50 steps and, at the end, the number of steps whose loss or any
gradient was not finite (issue 16: 0; before, the loss went NaN at step 83).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import optscale

FEATURES = 8
TARGET, N = 0.95, 8


class BoundHead(nnx.Module):
    """features -> (mu, sigma) of the question's score distribution."""

    def __init__(self, rngs: nnx.Rngs) -> None:
        self.hidden = nnx.Linear(FEATURES, 32, rngs=rngs)
        self.out = nnx.Linear(32, 2, rngs=rngs)

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = self.out(nnx.gelu(self.hidden(x)))
        # mu may leave [0, 1] (the truncated normal allows it); sigma from 1e-3 up
        return 0.5 + 1.5 * jnp.tanh(h[..., 0]), 1e-3 + jax.nn.softplus(h[..., 1] - 2.0)


def make_data(rng: np.random.Generator, questions: int) -> dict[str, np.ndarray]:
    """Questions whose true (mu, sigma) depend on their features; N scores each, drawn from
    the truncated normal and rounded to 3 decimals (so 1.0 occurs), a tenth masked out."""
    feats = rng.normal(size=(questions, FEATURES))
    mu = np.clip(0.8 + 0.15 * np.tanh(feats[:, 0]) + 0.1 * feats[:, 1], -0.3, 1.6)
    sigma = 10 ** (-1.2 + 0.4 * np.tanh(feats[:, 2]))
    scores = np.asarray(optscale.TruncatedNormal(mu, sigma).sample(
        rng.integers(1 << 31), (N,))).T
    scores = np.round(scores, 3)
    mask = rng.random(questions) > 0.1
    return dict(features=feats.astype(np.float32), scores=scores.astype(np.float32),
                mask=mask)


def loss_fn(model: BoundHead, batch: dict[str, jax.Array]) -> jax.Array:
    mu, sigma = model(batch["features"])
    # one element per batch with an invalid sigma: its terms are masked out below
    sigma = sigma.at[0].set(-1.0)
    dist = optscale.TruncatedNormal(mu[:, None], sigma[:, None])
    nll = -jnp.sum(dist.logpdf(batch["scores"]), axis=-1)
    d = optscale.TruncatedNormal(mu, sigma)
    best = jnp.max(batch["scores"], axis=-1)
    hit = (best >= TARGET).astype(mu.dtype)
    p = jnp.clip(optscale.best_of_n_prob(d, TARGET, N), 1e-6, 1 - 1e-6)
    bce = -(hit * jnp.log(p) + (1 - hit) * jnp.log1p(-p))
    sq = (optscale.expected_best(d, N) - best) ** 2
    n_star = optscale.relaxed_min_samples(d, TARGET, 0.9, n_max=1024.0)
    terms = nll / N + bce + 10.0 * sq + 1e-3 * n_star
    keep = batch["mask"] & jnp.isfinite(terms)
    return jnp.sum(jnp.where(keep, terms, 0.0)) / jnp.maximum(jnp.sum(keep), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--x64", action="store_true", help="train in float64")
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", args.x64)

    rng = np.random.default_rng(0)
    data = make_data(rng, 4096)
    model = BoundHead(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer, batch):
        loss, grads = nnx.value_and_grad(loss_fn)(model, batch)
        finite = jnp.isfinite(loss) & jnp.all(jnp.stack([
            jnp.all(jnp.isfinite(g)) for g in jax.tree_util.tree_leaves(grads)]))
        optimizer.update(model, grads)
        return loss, finite

    bad, t0 = 0, time.perf_counter()
    for step in range(args.steps):
        idx = rng.integers(0, len(data["mask"]), args.batch)
        batch = {k: jnp.asarray(v[idx]) for k, v in data.items()}
        loss, finite = train_step(model, optimizer, batch)
        if not bool(finite):
            bad += 1
            print(f"step {step}: non-finite loss or gradient (loss {float(loss)})")
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step:4d}  loss {float(loss):9.4f}")
    print(f"{args.steps} steps in {time.perf_counter() - t0:.1f} s; steps with a non-finite "
          f"loss or gradient: {bad}")
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
