"""pytest-benchmark: the prior head alone on 10^4 inputs, against the encoder it sits on.

Run with ``python -m pytest benchmarks/test_predictor_bench.py`` (not part of the default test
run). End-to-end questions/second with the default encoder: ``benchmarks/predictor_throughput.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("flax")

import jax  # noqa: E402
from flax import nnx  # noqa: E402

from optscale.predictor import PriorHead  # noqa: E402

SIZE, DIM, TOKENS = 10_000, 384, 64


@pytest.fixture(scope="module")
def head():
    return PriorHead(DIM, rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def pooled():
    return jax.numpy.asarray(np.random.default_rng(0).normal(size=(SIZE, DIM)), np.float32)


def test_head_from_pooled_jit(benchmark, head, pooled):
    fn = nnx.jit(lambda h, x: h.from_pooled(x))
    jax.block_until_ready(fn(head, pooled))  # compile outside the timing
    benchmark.pedantic(lambda: jax.block_until_ready(fn(head, pooled)), rounds=20, iterations=1)


def test_head_from_pooled_numpy(benchmark, head, pooled):
    """The same two MLPs in plain NumPy: the baseline of the ratio."""
    p = jax.tree.map(np.asarray, nnx.state(head, nnx.Param))
    x = np.asarray(pooled)

    def mlp(m, z):
        h = z @ m["inner"]["kernel"] + m["inner"]["bias"]
        h = 0.5 * h * (1 + np.tanh(0.7978845608 * (h + 0.044715 * h ** 3)))
        return (h @ m["outer"]["kernel"] + m["outer"]["bias"])[:, 0]

    def run():
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        z = (x - mu) / np.sqrt(var + 1e-6) * p["norm"]["scale"] + p["norm"]["bias"]
        return mlp(p["loc_head"], z), np.logaddexp(0, mlp(p["spread_head"], z))

    benchmark.pedantic(run, rounds=20, iterations=1)


def test_head_from_token_states_jit(benchmark, head):
    """Pooling included: 10^4 questions of 64 tokens each, in chunks of 1000."""
    rng = np.random.default_rng(1)
    x = jax.numpy.asarray(rng.normal(size=(1000, TOKENS, DIM)), np.float32)
    m = jax.numpy.asarray((np.arange(TOKENS)[None] < rng.integers(8, TOKENS, (1000, 1))),
                          np.int32)
    fn = nnx.jit(lambda h, s, k: h(s, k))
    jax.block_until_ready(fn(head, x, m))
    benchmark.pedantic(lambda: [jax.block_until_ready(fn(head, x, m))
                                for _ in range(SIZE // 1000)], rounds=3, iterations=1)
