"""The Hugging Face backends on tiny random models with a character-level tokenizer built here
(nothing downloaded): sample counts and order, token accounting against the raw ``generate``
output, seeding, chat templates, reward and process-reward scores, and an end-to-end run."""

import math
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import optscale  # noqa: E402
from optscale.sampling import Generator, Scorer  # noqa: E402
from optscale.sampling._hf import HFGenerator, HFPRMScorer, HFRewardScorer  # noqa: E402

CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789 +-=?.\n<>/")
SPECIALS = ["<pad>", "<unk>", "<eos>", "<extra_0>"]
PAD, UNK, EOS, STEP = range(4)
TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
            "{% if add_generation_prompt %}<assistant>{% endif %}")
PROMPTS = ["what is 1+1?", "hi", "a b c", "x", "a longer prompt here"]


def make_tokenizer(template=False):
    """A character-level fast tokenizer (BPE without merges) with pad/unk/eos/step tokens."""
    from tokenizers import Tokenizer, decoders, models

    vocab = {t: i for i, t in enumerate(SPECIALS + CHARS)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.decoder = decoders.Fuse()  # characters back together, no spaces between
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>",
        additional_special_tokens=["<extra_0>"])
    if template:
        tok.chat_template = TEMPLATE
    return tok


def gpt2_config(**kw):
    return transformers.GPT2Config(vocab_size=len(SPECIALS) + len(CHARS), n_positions=256,
                                   n_embd=16, n_layer=1, n_head=2, bos_token_id=EOS,
                                   eos_token_id=EOS, pad_token_id=PAD, **kw)


@pytest.fixture(scope="module")
def lm():
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(gpt2_config(tie_word_embeddings=False)).eval()
    with torch.no_grad():  # a louder EOS logit, so that some samples stop before the cap
        model.lm_head.weight[EOS] *= 4
    return model


@pytest.fixture(scope="module")
def orm():
    torch.manual_seed(1)
    return transformers.GPT2ForSequenceClassification(gpt2_config(num_labels=1)).eval()


@pytest.fixture(scope="module")
def prm():
    torch.manual_seed(2)
    return transformers.GPT2ForTokenClassification(gpt2_config(num_labels=2)).eval()


class Spy:
    """Records the inputs and raw outputs of ``model.generate``."""

    def __init__(self, model, monkeypatch):
        self.calls = []
        orig = model.generate

        def generate(**kw):
            ids = orig(**kw)
            self.calls.append((kw["input_ids"].clone(), ids.clone()))
            return ids

        monkeypatch.setattr(model, "generate", generate)


# -- import ----------------------------------------------------------------------------------

def test_missing_torch_says_how_to_install(monkeypatch):
    from optscale.sampling import _hf

    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    with pytest.raises(ImportError, match=r'pip install "optscale\[hf\]"'):
        HFGenerator(object(), object())
    with pytest.raises(ImportError, match="CPU"):
        _hf._import_hf()


# -- generator -------------------------------------------------------------------------------

def test_generator_counts_and_order_across_batches(lm):
    gen = HFGenerator(lm, make_tokenizer(), batch_size=2, max_new_tokens=10)
    assert isinstance(gen, Generator)
    out = gen.generate(PROMPTS, 3, top_k=1)  # top_k=1: deterministic per prompt
    assert [len(row) for row in out] == [3] * len(PROMPTS)
    alone = [gen.generate([p], 3, top_k=1)[0] for p in PROMPTS]
    assert out == alone  # batch boundaries (2 + 2 + 1) keep prompt order
    assert gen.generate(PROMPTS, 0) == [[]] * len(PROMPTS)
    assert gen.generate([], 3) == []
    wide = HFGenerator(lm, make_tokenizer(), batch_size=8, max_new_tokens=10)
    assert wide.generate(PROMPTS, 3, top_k=1) == out


@pytest.mark.parametrize("kwargs,error,name", [
    ({"max_new_tokens": 0}, ValueError, "max_new_tokens"),
    ({"max_new_tokens": 2.5}, TypeError, "max_new_tokens"),
    ({"batch_size": True}, ValueError, "batch_size"), ({"seed": -1}, ValueError, "seed"),
    ({"system": 3}, TypeError, "system"),
])
def test_generator_arguments_are_checked_up_front(lm, kwargs, error, name):
    with pytest.raises(error, match=name):
        HFGenerator(lm, make_tokenizer(), **kwargs)
    gen = HFGenerator(lm, make_tokenizer(), max_new_tokens=4)
    for n, kind in ((-1, ValueError), (1.5, TypeError), ("2", TypeError)):
        with pytest.raises(kind, match="n must"):
            gen.generate(PROMPTS, n)
    with pytest.raises(TypeError, match="one string"):
        gen.generate("abc", 1)


def test_token_counts_match_raw_generate_output(lm, monkeypatch):
    tok = make_tokenizer()
    spy = Spy(lm, monkeypatch)
    gen = HFGenerator(lm, tok, batch_size=2, max_new_tokens=12)
    out = gen.generate(PROMPTS, 4, seed=7, temperature=1.0)
    rows = []
    for inputs, ids in spy.calls:
        rows.extend(ids[:, inputs.shape[1]:].tolist())
    samples = [s for row in out for s in row]
    assert len(rows) == len(samples) == 4 * len(PROMPTS)
    for row, s in zip(rows, samples, strict=True):
        if EOS in row:
            end = row.index(EOS) + 1
            kept = row[:end - 1]
            assert all(t == PAD for t in row[end:])  # generate pads after EOS: not counted
        else:
            end = len(row)
            while row[end - 1] == PAD:  # padding only follows a stop; not counted either
                end -= 1
            kept = row[:end]
        assert s.tokens == end
        assert s.text == tok.decode(kept, skip_special_tokens=True)
        if not set(kept) & {PAD, UNK, STEP}:  # plain characters re-tokenize to the same ids
            assert tok(s.text, add_special_tokens=False).input_ids == kept
    ended = [EOS in row for row in rows]
    assert any(ended) and not all(ended)  # both EOS-terminated and capped samples were checked


def test_seed_reproduces_and_leaves_global_rng_alone(lm):
    gen = HFGenerator(lm, make_tokenizer(), batch_size=2, max_new_tokens=8)
    state = torch.get_rng_state()
    a = gen.generate(PROMPTS[:3], 2, seed=11)
    assert torch.equal(state, torch.get_rng_state())
    assert gen.generate(PROMPTS[:3], 2, seed=11) == a
    assert gen.generate(PROMPTS[:3], 2, seed=12) != a
    # a constructor seed makes a sequence of calls reproducible, each call drawing anew
    first, second = (HFGenerator(lm, make_tokenizer(), max_new_tokens=8, seed=3)
                     for _ in range(2))
    calls = [first.generate(PROMPTS[:2], 2) for _ in range(2)]
    assert calls == [second.generate(PROMPTS[:2], 2) for _ in range(2)]
    assert calls[0] != calls[1]


def test_chat_template_applied_when_present(lm, monkeypatch):
    spy = Spy(lm, monkeypatch)
    tok = make_tokenizer(template=True)
    HFGenerator(lm, tok, max_new_tokens=2, system="be brief").generate(["hi"], 1)
    HFGenerator(lm, tok, max_new_tokens=2, chat_template=False).generate(["hi"], 1)
    HFGenerator(lm, make_tokenizer(), max_new_tokens=2).generate(["hi"], 1)
    shown = [tok.decode(inputs[0]) for inputs, _ in spy.calls]
    assert shown == ["<system>be brief<user>hi<assistant>", "hi", "hi"]
    with pytest.raises(ValueError, match="chat template"):
        HFGenerator(lm, make_tokenizer(), chat_template=True)


# -- outcome reward model --------------------------------------------------------------------

TEXTS = ["step one\n\nstep two\n\nso 2", "2", "a\n\nb", "the answer is 4", "x\n\ny\n\nz\n\nw",
         "no", "1+1=2\n\nanswer 2", "?", "q r s"]


@pytest.mark.parametrize("template", [False, True])
def test_reward_scores_in_unit_interval_and_batch_invariant(orm, template):
    tok = make_tokenizer(template)
    one = HFRewardScorer(orm, tok, batch_size=1)
    assert isinstance(one, Scorer)
    scores = one.score("what is 1+1?", TEXTS)
    assert len(scores) == len(TEXTS)
    assert all(math.isfinite(s) and 0 <= s <= 1 for s in scores)
    assert len(set(scores)) > 1
    np.testing.assert_allclose(HFRewardScorer(orm, tok, batch_size=8).score("what is 1+1?", TEXTS),
                               scores, rtol=1e-5, atol=1e-6)
    raw = HFRewardScorer(orm, tok, activation="none").score("what is 1+1?", TEXTS)
    np.testing.assert_allclose(1 / (1 + np.exp(-np.array(raw))), scores, rtol=1e-5, atol=1e-6)


def test_reward_scorer_rejects_bad_arguments(orm):
    with pytest.raises(ValueError, match="activation"):
        HFRewardScorer(orm, make_tokenizer(), activation="tanh")
    with pytest.raises(ValueError, match="batch_size"):
        HFRewardScorer(orm, make_tokenizer(), batch_size=0)


# -- process reward model --------------------------------------------------------------------

@pytest.mark.parametrize("template", [False, True])
def test_prm_step_scores_and_aggregates(prm, template):
    tok = make_tokenizer(template)
    steps = HFPRMScorer(prm, tok, batch_size=1).step_scores("what is 1+1?", TEXTS)
    assert [len(s) for s in steps] == [t.count("\n\n") + 1 for t in TEXTS]
    flat = [x for s in steps for x in s]
    assert all(math.isfinite(x) and 0 <= x <= 1 for x in flat)
    assert len(set(flat)) > 1
    by_hand = {"min": [min(s) for s in steps], "last": [s[-1] for s in steps],
               "prod": [math.prod(s) for s in steps],
               "mean": [sum(s) / len(s) for s in steps]}
    for how, expected in by_hand.items():
        scorer = HFPRMScorer(prm, tok, aggregate=how, batch_size=4)
        np.testing.assert_allclose(scorer.score("what is 1+1?", TEXTS), expected, rtol=1e-5,
                                   atol=1e-6)
    wide = HFPRMScorer(prm, tok, batch_size=8).step_scores("what is 1+1?", TEXTS)
    for a, b in zip(wide, steps, strict=True):  # batch_size does not change any step score
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_prm_input_format_and_step_handling(prm):
    tok = make_tokenizer(template=True)
    scorer = HFPRMScorer(prm, tok, system="sys")
    assert scorer._input_text("q", scorer.split_steps("a\n\n b \n\n\n\n")) == \
        "<system>sys<user>q<assistant>a<extra_0>b<extra_0>"
    # a step token inside a completion is removed, so each step keeps one scoring position
    assert len(scorer.step_scores("q<extra_0>", ["a<extra_0>b\n\nc"])[0]) == 2
    assert len(scorer.step_scores("q", [""])[0]) == 1
    plain = HFPRMScorer(prm, make_tokenizer(), step_separator="\n")
    assert plain._input_text("q", plain.split_steps("a\nb")) == "q\na<extra_0>b<extra_0>"


def test_prm_rejects_bad_arguments(prm):
    with pytest.raises(ValueError, match="aggregate"):
        HFPRMScorer(prm, make_tokenizer(), aggregate="max")
    with pytest.raises(ValueError, match="step_token"):
        HFPRMScorer(prm, make_tokenizer(), step_token="ab")
    with pytest.raises(ValueError, match="activation"):
        HFPRMScorer(prm, make_tokenizer(), activation="relu")


def test_prm_on_a_causal_lm_head_with_selected_classes(lm):
    """Math-Shepherd style: the "+"/"-" logits of a causal LM at the step positions."""
    tok = make_tokenizer()
    plus, minus = tok.convert_tokens_to_ids(["+", "-"])
    scorer = HFPRMScorer(lm, tok, classes=[plus, minus], good_index=0, aggregate="last")
    steps = scorer.step_scores("q", TEXTS[:3])
    assert [len(s) for s in steps] == [3, 1, 2]
    assert all(0 <= x <= 1 for s in steps for x in s)


# -- loading ---------------------------------------------------------------------------------

def test_from_pretrained_loads_local_directories(lm, orm, prm, tmp_path):
    for name, model in (("lm", lm), ("orm", orm), ("prm", prm)):
        model.save_pretrained(tmp_path / name)
        make_tokenizer(template=True).save_pretrained(tmp_path / name)
    gen = HFGenerator.from_pretrained(str(tmp_path / "lm"), max_new_tokens=3, device="cpu")
    assert gen.use_template and [len(r) for r in gen.generate(["hi"], 2, seed=0)] == [2]
    orm_scores = HFRewardScorer.from_pretrained(str(tmp_path / "orm")).score("q", TEXTS)
    np.testing.assert_allclose(orm_scores, HFRewardScorer(orm, make_tokenizer(True)).score(
        "q", TEXTS), rtol=1e-5, atol=1e-6)
    loaded = HFPRMScorer.from_pretrained(str(tmp_path / "prm"), aggregate="mean")
    np.testing.assert_allclose(loaded.score("q", TEXTS), HFPRMScorer(
        prm, make_tokenizer(True), aggregate="mean").score("q", TEXTS), rtol=1e-5, atol=1e-6)
    with pytest.raises(OSError):  # a missing local directory is not looked up online
        HFGenerator.from_pretrained(str(tmp_path / "missing"))


# -- end to end ------------------------------------------------------------------------------

def test_run_end_to_end(lm, orm):
    gen = HFGenerator(lm, make_tokenizer(), batch_size=4, max_new_tokens=8, seed=0)
    policy = optscale.OptScale0(target=0.5, n_peek=2, n_max=8)
    res = optscale.run("question", gen, HFRewardScorer(orm, make_tokenizer()), policy,
                       temperature=1.0)
    assert res.ok, res.error
    assert 2 <= res.n_used <= 8
    assert len(res.scores) == res.n_used
    assert all(0 < s.tokens <= 8 for s in res.samples)
    assert res.tokens == sum(s.tokens for s in res.samples)
    assert res.answer == res.samples[int(np.argmax(res.scores))].text


def test_cli_run_with_local_models(lm, orm, tmp_path, capsys):
    import json

    from optscale.cli import main

    tok = make_tokenizer()
    lm.save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    orm.save_pretrained(tmp_path / "orm")
    tok.save_pretrained(tmp_path / "orm")
    args = ["run", "what is 1+1?", "hi", "--model", str(tmp_path / "lm"), "--scorer",
            str(tmp_path / "orm"), "--target", "0.6", "--n-peek", "2", "--n-max", "6",
            "--max-new-tokens", "5", "--seed", "1", "--json", "--quiet"]
    assert main(args) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["question"] for r in rows] == ["what is 1+1?", "hi"]
    for r in rows:
        assert 2 <= r["n_used"] <= 6 and len(r["samples"]) == len(r["scores"]) == r["n_used"]
        assert r["error"] is None and r["answer"] in r["samples"]
    assert main(["run", "q", "--model", str(tmp_path / "nope"), "--scorer",
                 str(tmp_path / "orm")]) == 2
