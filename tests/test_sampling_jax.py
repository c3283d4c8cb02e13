"""JaxGenerator with a tiny Flax NNX transformer (random weights) and with hand-made logits."""

import numpy as np
import pytest

jax = pytest.importorskip("jax")
nnx = pytest.importorskip("flax.nnx")
import jax.numpy as jnp  # noqa: E402

import optscale  # noqa: E402
from optscale.sampling import CallableScorer  # noqa: E402
from optscale.sampling._jax import JaxGenerator, sample_logits  # noqa: E402

VOCAB = ["<pad>", "<eos>"] + list("abcdefghijklmnopqrstuvwxyz ?+=0123456789")
INDEX = {c: i for i, c in enumerate(VOCAB)}


def encode(text):
    return [INDEX[c] for c in text]


def decode(ids):
    return "".join(VOCAB[i] for i in ids)


class TinyLM(nnx.Module):
    """One causal attention block; positions from the mask (left padding)."""

    def __init__(self, vocab, width=16, length=128, *, rngs):
        self.embed = nnx.Embed(vocab, width, rngs=rngs)
        self.pos = nnx.Embed(length, width, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(num_heads=2, in_features=width, decode=False,
                                           rngs=rngs)
        self.head = nnx.Linear(width, vocab, rngs=rngs)

    def __call__(self, tokens, mask):
        positions = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0)
        x = self.embed(tokens) + self.pos(positions)
        length = tokens.shape[1]
        causal = jnp.tril(jnp.ones((length, length), bool))
        allowed = causal[None, None] & mask[:, None, None, :]
        # a query whose keys are all masked (padding rows) attends to itself to stay finite
        allowed = allowed | jnp.eye(length, dtype=bool)[None, None]
        return self.head(x + self.attn(x, mask=allowed))


@pytest.fixture(scope="module")
def tiny():
    model = TinyLM(len(VOCAB), rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)

    def apply_fn(state, tokens, mask):
        return nnx.merge(graphdef, state)(tokens, mask)

    return apply_fn, state


def make(tiny, **kw):
    apply_fn, state = tiny
    return JaxGenerator(apply_fn, state, encode, decode, eos_id=1, **kw)


def test_shapes_counts_and_determinism(tiny):
    gen = make(tiny, max_new_tokens=12, batch_size=4)
    out = gen.generate(["what is 2+2?", "hi"], 3, temperature=1.0, seed=3)
    assert [len(o) for o in out] == [3, 3]
    for samples in out:
        for s in samples:
            assert 1 <= s.tokens <= 12
            assert "<pad>" not in s.text and "<eos>" not in s.text
            assert len(s.text) in (s.tokens, s.tokens - 1)  # the EOS is counted, not shown
    again = gen.generate(["what is 2+2?", "hi"], 3, temperature=1.0, seed=3)
    assert again == out
    other = gen.generate(["what is 2+2?", "hi"], 3, temperature=1.0, seed=4)
    assert other != out


def test_greedy_matches_a_python_loop(tiny):
    apply_fn, state = tiny
    gen = make(tiny, max_new_tokens=10)
    (sample,), = gen.generate(["abc"], 1, temperature=0.0)
    # reference: no padding, one step at a time in Python
    ids = encode("abc")
    new = []
    for _ in range(10):
        t = jnp.asarray([ids + new], jnp.int32)
        logits = apply_fn(state, t, jnp.ones(t.shape, bool))
        nxt = int(jnp.argmax(logits[0, -1]))
        new.append(nxt)
        if nxt == 1:
            break
    assert sample.tokens == len(new)
    assert sample.text == decode([t for t in new if t != 1])
    # left padding (a longer prompt in the same batch) does not change the answer
    padded = gen.generate(["abc", "a much longer prompt here"], 1, temperature=0.0)[0][0]
    assert padded == sample
    # top_p so small that only the most likely token survives is greedy too
    (tiny_p,), = gen.generate(["abc"], 1, temperature=1.0, top_p=1e-6, seed=9)
    assert tiny_p == sample


def test_eos_stops_a_sample():
    vocab = 5

    def apply_fn(params, tokens, mask):
        # token 3 until three new tokens exist, then EOS (= 1)
        count = mask.sum(axis=1)
        logits = jnp.where(count[:, None] >= params + 2, jax.nn.one_hot(1, vocab),
                           jax.nn.one_hot(3, vocab)) * 50.0
        return jnp.broadcast_to(logits[:, None, :], tokens.shape + (vocab,))

    gen = JaxGenerator(apply_fn, 2, lambda s: [2, 2], lambda ids: "x" * len(ids), eos_id=1,
                       max_new_tokens=20)
    out = gen.generate(["p"], 4, temperature=0.5, seed=1)[0]
    # new tokens 3, 3, then EOS: three counted, two shown
    assert [(s.text, s.tokens) for s in out] == [("xx", 3)] * 4


def test_top_p_keeps_the_nucleus():
    logits = jnp.log(jnp.asarray([[0.5, 0.3, 0.2]] * 4000))
    keys = jax.random.PRNGKey(0)
    toks = np.asarray(sample_logits(keys, logits, jnp.float32(1.0), jnp.float32(0.6)))
    counts = np.bincount(toks, minlength=3)
    assert counts[2] == 0  # 0.5 + 0.3 reaches 0.6: token 2 is outside the nucleus
    assert counts[0] / counts.sum() == pytest.approx(0.5 / 0.8, abs=0.03)
    full = np.asarray(sample_logits(keys, logits, jnp.float32(1.0), jnp.float32(1.0)))
    assert np.bincount(full, minlength=3)[2] / len(full) == pytest.approx(0.2, abs=0.03)


def test_bad_arguments(tiny):
    gen = make(tiny)
    with pytest.raises(ValueError, match="top_p"):
        gen.generate(["a"], 1, top_p=0.0)
    with pytest.raises(TypeError, match="unsupported"):
        gen.generate(["a"], 1, nucleus=0.5)
    with pytest.raises(ValueError, match="n must"):
        gen.generate(["a"], 0)
    with pytest.raises(TypeError, match="n must"):
        gen.generate(["a"], 1.5)
    with pytest.raises(ValueError, match="max_new_tokens"):
        gen.generate(["a"], 1, max_new_tokens=-2)
    for kwargs, error in (({"max_new_tokens": 0}, ValueError), ({"batch_size": 1.5}, TypeError),
                          ({"batch_size": 0}, ValueError), ({"pad_id": -1}, ValueError)):
        with pytest.raises(error, match=next(iter(kwargs))):
            make(tiny, **kwargs)


def test_end_to_end_run(tiny):
    gen = make(tiny, max_new_tokens=6, batch_size=8)
    scorer = CallableScorer(lambda prompt, texts: [min(1.0, len(t) / 6) for t in texts])
    res = optscale.run("what is 2+2?", gen, scorer,
                       optscale.OptScale0(target=0.9, n_peek=4, n_max=12), temperature=1.0)
    assert res.ok and 4 <= res.n_used <= 12
    assert len(res.scores) == res.n_used and res.tokens == sum(s.tokens for s in res.samples)
