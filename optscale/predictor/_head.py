"""PriorHead: a small Flax NNX head from an encoder's token states to a score-moment prior."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["POOLINGS", "PriorHead"]

POOLINGS = ("attention", "mean")


class _MLP(nnx.Module):
    def __init__(self, dim: int, hidden: int, dropout: float, rngs: nnx.Rngs):
        self.inner = nnx.Linear(dim, hidden, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.outer = nnx.Linear(hidden, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.outer(self.dropout(nnx.gelu(self.inner(x))))[..., 0]


class PriorHead(nnx.Module):
    """Token states + attention mask -> (location, spread) of a question's score distribution.

    Masked attention pooling (a learned score per token, softmax over real tokens only) or masked
    mean pooling, a layer norm, then separate MLP heads for the two outputs; the spread is
    positive (softplus). Padding never reaches the output: padded states are zeroed and get no
    weight, so a question padded to any length gives the same result. Dropout is active only
    after ``head.train()``; a new head is in inference mode (``head.eval()``).

    Args:
        dim: encoder hidden size.
        hidden: MLP width.
        pooling: ``"attention"`` or ``"mean"``.
        dropout: dropout rate inside the MLPs (training only).
        rngs: parameter and dropout streams, e.g. ``nnx.Rngs(0)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> head = PriorHead(8, hidden=4, rngs=nnx.Rngs(0))
        >>> loc, spread = head(jnp.ones((2, 5, 8)), jnp.ones((2, 5), jnp.int32))
        >>> loc.shape, bool((spread > 0).all())
        ((2,), True)
    """

    def __init__(self, dim: int, *, hidden: int = 32, pooling: str = "attention",
                 dropout: float = 0.5, rngs: nnx.Rngs):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling: expected one of {POOLINGS}, got {pooling!r}")
        self.dim, self.hidden, self.pooling, self.dropout_rate = dim, hidden, pooling, dropout
        self.score = nnx.Linear(dim, 1, rngs=rngs) if pooling == "attention" else None
        self.norm = nnx.LayerNorm(dim, rngs=rngs)
        self.loc_head = _MLP(dim, hidden, dropout, rngs)
        self.spread_head = _MLP(dim, hidden, dropout, rngs)
        self.eval()

    def pool(self, states: jax.Array, mask: jax.Array) -> jax.Array:
        """``(B, L, D)`` states and ``(B, L)`` mask -> ``(B, D)`` pooled vectors."""
        valid = mask.astype(bool)
        # where, not multiply: padded states may hold anything (even NaN from an upstream model).
        states = jnp.where(valid[..., None], states, 0.0)
        if self.score is None:
            count = jnp.maximum(valid.sum(-1, keepdims=True), 1)
            return states.sum(-2) / count
        logits = jnp.where(valid, self.score(states)[..., 0], -jnp.inf)
        # An all-padding row would give NaN weights; it gets zeros (and a zero pooled vector).
        logits = jnp.where(valid.any(-1, keepdims=True), logits, 0.0)
        weights = jnp.where(valid, jax.nn.softmax(logits, axis=-1), 0.0)
        return jnp.einsum("bl,bld->bd", weights, states)

    def from_pooled(self, pooled: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The two outputs from ``(B, D)`` pooled vectors: ``(loc, spread)``, each ``(B,)``."""
        x = self.norm(pooled)
        return self.loc_head(x), jax.nn.softplus(self.spread_head(x)) + 1e-6

    def __call__(self, states: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.from_pooled(self.pool(states, mask))
