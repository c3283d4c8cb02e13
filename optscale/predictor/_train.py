"""Training the prior head with optax AdamW and early stopping on validation loss."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from optscale.predictor._encoder import pad_states
from optscale.predictor._head import PriorHead
from optscale.predictor._labels import LabelScale

__all__ = ["TrainConfig", "predict_head", "train_head"]


@dataclass
class TrainConfig:
    """Head architecture and optimisation settings (all saved with the weights)."""

    # Defaults: the lowest validation loss of benchmarks/predictor_compare.py (the bundled head).
    pooling: str = "attention"
    hidden: int = 32
    dropout: float = 0.5
    learning_rate: float = 3e-4
    weight_decay: float = 0.1
    batch_size: int = 64
    max_epochs: int = 200
    patience: int = 15
    seed: int = 0
    history: list = field(default_factory=list)

    def head_config(self) -> dict:
        return {"pooling": self.pooling, "hidden": self.hidden, "dropout": self.dropout}

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "history"}


def _batches(states: Sequence[np.ndarray], rows: np.ndarray, batch_size: int):
    for start in range(0, len(rows), batch_size):
        idx = rows[start:start + batch_size]
        # Lengths rounded to 32 tokens: a handful of jit shapes instead of one per batch.
        x, m = pad_states([states[i] for i in idx], multiple=32)
        yield idx, x, m


def _loss(head: PriorHead, x, m, y_loc, y_spread):
    loc, spread = head(x, m)
    return jnp.mean((loc - y_loc) ** 2) + jnp.mean((spread - y_spread) ** 2)


@nnx.jit
def _train_step(head: PriorHead, optimizer: nnx.Optimizer, x, m, y_loc, y_spread):
    loss, grads = nnx.value_and_grad(_loss)(head, x, m, y_loc, y_spread)
    optimizer.update(head, grads)
    return loss


@nnx.jit
def _forward(head: PriorHead, x, m):
    return head(x, m)


def predict_head(head: PriorHead, states: Sequence[np.ndarray], rows: np.ndarray | None = None,
                 batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The head's ``(loc, spread)`` on the given rows of ragged token states, in inference mode."""
    rows = np.arange(len(states)) if rows is None else np.asarray(rows)
    head.eval()
    locs, spreads = [], []
    for _, x, m in _batches(states, rows, batch_size):
        loc, spread = _forward(head, x, m)
        locs.append(np.asarray(loc))
        spreads.append(np.asarray(spread))
    return np.concatenate(locs), np.concatenate(spreads)


def train_head(states: Sequence[np.ndarray], mean: np.ndarray, std: np.ndarray,
               train_rows: np.ndarray, val_rows: np.ndarray,
               config: TrainConfig | None = None, *, verbose: bool = False
               ) -> tuple[PriorHead, LabelScale, TrainConfig]:
    """Fit a :class:`PriorHead` to raw score moments with AdamW and early stopping.

    Deterministic for a given ``config.seed``: parameter init, dropout and batch order all
    derive from it.

    Args:
        states: per-question ``(tokens, dim)`` encoder states (e.g. from :class:`EncoderCache`).
        mean, std: per-question labels (raw moments of the scores).
        train_rows, val_rows: indices into the above.
        config: settings; ``config.history`` receives ``(epoch, train_loss, val_loss)``.
        verbose: print one line per epoch.
    Returns:
        ``(head, scale, config)``: the head at the best validation loss, in inference mode.
    """
    config = config or TrainConfig()
    config.history = []
    mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    scale = LabelScale.fit(mean[train_rows], std[train_rows])
    y_loc, y_spread = (v.astype(np.float32) for v in scale.encode(mean, std))
    dim = states[train_rows[0]].shape[-1]
    head = PriorHead(dim, **config.head_config(), rngs=nnx.Rngs(params=config.seed,
                                                                dropout=config.seed + 1))
    tx = optax.adamw(config.learning_rate, weight_decay=config.weight_decay)
    optimizer = nnx.Optimizer(head, tx, wrt=nnx.Param)
    rng = np.random.default_rng(config.seed)
    best, best_loss, since = None, math.inf, 0

    def val_loss() -> float:
        loc, spread = predict_head(head, states, val_rows)
        return float(np.mean((loc - y_loc[val_rows]) ** 2)
                     + np.mean((spread - y_spread[val_rows]) ** 2))

    for epoch in range(config.max_epochs):
        head.train()
        losses = []
        for idx, x, m in _batches(states, rng.permutation(train_rows), config.batch_size):
            losses.append(float(_train_step(head, optimizer, x, m, y_loc[idx], y_spread[idx])))
        current = val_loss()
        config.history.append((epoch, float(np.mean(losses)), current))
        if verbose:
            print(f"epoch {epoch:3d}  train {np.mean(losses):.4f}  val {current:.4f}", flush=True)
        if current < best_loss - 1e-6:
            best_loss, since = current, 0
            best = jax.tree.map(np.array, nnx.state(head, nnx.Param))
        else:
            since += 1
            if since >= config.patience:
                break
    nnx.update(head, best)
    head.eval()
    return head, scale, config
