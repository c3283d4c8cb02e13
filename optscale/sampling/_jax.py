"""Sampling from a user's Flax/JAX causal LM with a jit-compiled loop that stays on device.

The model is a pure function ``apply_fn(params, tokens, mask) -> logits``: ``tokens`` [B, L]
int32, ``mask`` [B, L] bool marking real tokens (prompts are left-padded, so a model should take
positions from ``cumsum(mask) - 1`` and not attend to masked keys), ``logits`` [B, L, V]. With
Flax NNX: ``graphdef, state = nnx.split(model)`` and
``apply_fn = lambda state, t, m: nnx.merge(graphdef, state)(t, m)``.

Every new token recomputes the whole sequence (no KV cache): simple and exact for any model
that follows the contract above, and one ``lax.fori_loop`` inside one ``jax.jit`` call per
batch, so nothing leaves the device until the batch is done. The cost is O(L^2) per token,
fine for the small models this is meant for; serve large models through an inference server.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from optscale.sampling._types import Sample, check_int

__all__ = ["JaxGenerator", "sample_logits"]


def sample_logits(key: Any, logits: Any, temperature: Any, top_p: Any) -> Any:
    """One token per row of ``logits`` [B, V]: nucleus sampling at ``temperature`` (greedy
    where temperature <= 0). The smallest set of tokens whose probability reaches ``top_p`` is
    kept (the most likely token always is)."""
    import jax
    import jax.numpy as jnp

    greedy = jnp.argmax(logits, axis=-1)
    scaled = logits / jnp.maximum(temperature, 1e-6)
    order = jnp.argsort(-scaled, axis=-1)
    sorted_logits = jnp.take_along_axis(scaled, order, axis=-1)
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    before = jnp.cumsum(probs, axis=-1) - probs  # mass of the tokens ranked above
    sorted_logits = jnp.where(before < top_p, sorted_logits, -jnp.inf)
    pick = jax.random.categorical(key, sorted_logits, axis=-1)
    sampled = jnp.take_along_axis(order, pick[:, None], axis=-1)[:, 0]
    return jnp.where(temperature > 0, sampled, greedy)


def _loop(apply_fn, params, tokens, mask, key, temperature, top_p, *, prompt_len, steps,
          eos_id, pad_id):
    import jax
    import jax.numpy as jnp

    def body(i, carry):
        tokens, mask, done, key = carry
        pos = prompt_len + i
        logits = apply_fn(params, tokens, mask)
        last = jax.lax.dynamic_index_in_dim(logits, pos - 1, axis=1, keepdims=False)
        key, sub = jax.random.split(key)
        tok = sample_logits(sub, last.astype(jnp.float32), temperature, top_p)
        tok = jnp.where(done, pad_id, tok).astype(tokens.dtype)
        tokens = jax.lax.dynamic_update_index_in_dim(tokens, tok, pos, axis=1)
        mask = jax.lax.dynamic_update_index_in_dim(mask, ~done, pos, axis=1)
        return tokens, mask, done | (tok == eos_id), key

    done = jnp.zeros(tokens.shape[0], bool)
    tokens, mask, _, _ = jax.lax.fori_loop(0, steps, body, (tokens, mask, done, key))
    return tokens[:, prompt_len:], mask[:, prompt_len:]


class JaxGenerator:
    """A :class:`~optscale.sampling.Generator` over a JAX causal LM (see the module docstring).

    Args:
        apply_fn: ``apply_fn(params, tokens, mask) -> logits``.
        params: the model's parameters (any pytree).
        encode: text -> token ids (the prompt, as the model expects it).
        decode: token ids -> text (called on the new tokens, EOS excluded).
        eos_id: the end-of-sequence token; generation of a sample stops after it.
        pad_id: the id used for padding (never read by a model that honours the mask).
        max_new_tokens: default cap on new tokens per sample.
        batch_size: rows (prompt x sample) per compiled call.
    """

    def __init__(self, apply_fn: Callable[..., Any], params: Any,
                 encode: Callable[[str], Sequence[int]], decode: Callable[[Sequence[int]], str],
                 *, eos_id: int, pad_id: int = 0, max_new_tokens: int = 64,
                 batch_size: int = 32) -> None:
        import jax

        check_int("max_new_tokens", max_new_tokens, 1)
        check_int("batch_size", batch_size, 1)
        check_int("eos_id", eos_id, 0)
        check_int("pad_id", pad_id, 0)
        self.params = params
        self.encode, self.decode = encode, decode
        self.eos_id, self.pad_id = int(eos_id), int(pad_id)
        self.max_new_tokens, self.batch_size = int(max_new_tokens), int(batch_size)
        self._loop = jax.jit(functools.partial(_loop, apply_fn),
                             static_argnames=("prompt_len", "steps", "eos_id", "pad_id"))

    def generate(self, prompts: Sequence[str], n: int, *, temperature: float = 1.0,
                 top_p: float = 1.0, max_new_tokens: int | None = None, seed: int = 0,
                 **unused: Any) -> list[list[Sample]]:
        """``n`` samples per prompt. Args: temperature (0: greedy), top_p in (0, 1],
        max_new_tokens, seed (the same seed gives the same samples)."""
        import jax
        import jax.numpy as jnp

        if unused:
            raise TypeError(f"JaxGenerator.generate: unsupported sampling arguments "
                            f"{sorted(unused)}")
        n = check_int("n", n, 1)
        if max_new_tokens is not None:
            check_int("max_new_tokens", max_new_tokens, 1)
        if not 0 < top_p <= 1 or temperature < 0:
            raise ValueError(f"need temperature >= 0 and top_p in (0, 1]; got {temperature}, "
                             f"{top_p}")
        steps = int(max_new_tokens or self.max_new_tokens)
        encoded = [list(self.encode(p)) for p in prompts]
        if any(not e for e in encoded):
            raise ValueError("every prompt must encode to at least one token")
        # pad prompt lengths to a multiple of 16: fewer shapes, fewer compilations
        prompt_len = -(-max(len(e) for e in encoded) // 16) * 16
        rows = [i for i in range(len(prompts)) for _ in range(n)]
        out: list[list[Sample]] = [[] for _ in prompts]
        key = jax.random.PRNGKey(seed)
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start:start + self.batch_size]
            size = self.batch_size if len(rows) > self.batch_size else len(chunk)
            tokens = np.full((size, prompt_len + steps), self.pad_id, np.int32)
            mask = np.zeros((size, prompt_len + steps), bool)
            for r, i in enumerate(chunk):
                tokens[r, prompt_len - len(encoded[i]):prompt_len] = encoded[i]
                mask[r, prompt_len - len(encoded[i]):prompt_len] = True
            key, sub = jax.random.split(key)
            new, used = self._loop(self.params, jnp.asarray(tokens), jnp.asarray(mask), sub,
                                   jnp.float32(temperature), jnp.float32(top_p),
                                   prompt_len=prompt_len, steps=steps, eos_id=self.eos_id,
                                   pad_id=self.pad_id)
            new, used = np.asarray(new), np.asarray(used)
            for r, i in enumerate(chunk):
                ids = new[r][used[r]]
                text_ids = ids[:-1] if len(ids) and ids[-1] == self.eos_id else ids
                out[i].append(Sample(self.decode([int(t) for t in text_ids]), int(used[r].sum())))
        return out
