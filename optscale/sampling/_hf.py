"""Hugging Face backends: a local causal LM as :class:`Generator`, reward models as :class:`Scorer`.

:class:`HFGenerator` samples completions with ``model.generate``; :class:`HFRewardScorer` scores
(prompt, completion) pairs with a sequence-classification outcome reward model;
:class:`HFPRMScorer` scores every step of a completion with a process reward model and
aggregates the step scores (``min``, ``last``, ``prod`` or ``mean``).

torch and transformers are optional (``pip install "optscale[hf]"``): they are imported when a
class is built, so ``import optscale.sampling`` works without them. Models and tokenizers are
loaded from local paths only (``local_files_only=True``): nothing is downloaded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from optscale.replay._readers import AGGREGATES, _aggregate
from optscale.sampling._types import Sample, check_int

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["QWEN_PRM_SYSTEM", "HFGenerator", "HFPRMScorer", "HFRewardScorer"]

_INSTALL_HINT = ('the Hugging Face backends need torch and transformers: pip install '
                 '"optscale[hf]" (a CPU-only torch wheel is enough and much smaller: pip install '
                 'torch --index-url https://download.pytorch.org/whl/cpu)')


def _import_hf() -> tuple[Any, Any]:
    """(torch, transformers), or an ImportError saying how to install them."""
    try:
        import torch
        import transformers
    except ImportError as err:
        raise ImportError(f"{_INSTALL_HINT} ({err})") from err
    return torch, transformers


def _resolve_device(model: Any, device: Any) -> Any:
    """The device inputs go to: ``device`` (the model is moved there) or the model's own."""
    torch, _ = _import_hf()
    if device is None:
        return getattr(model, "device", torch.device("cpu"))
    device = torch.device(device)
    model.to(device)
    return device


def _use_template(tokenizer: Any, chat_template: bool | None) -> bool:
    """Whether to apply the tokenizer's chat template (None: when it has one)."""
    has = bool(getattr(tokenizer, "chat_template", None))
    if chat_template and not has:
        raise ValueError("chat_template=True but the tokenizer has no chat template")
    return has if chat_template is None else bool(chat_template)


def _ensure_pad(tokenizer: Any, model: Any) -> int:
    """The pad token id; when the tokenizer has none, EOS becomes the pad token (batching)."""
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ValueError("the tokenizer has neither a pad token nor an EOS token to pad with")
        tokenizer.pad_token = tokenizer.eos_token
    config = getattr(model, "config", None)
    # sequence-classification heads find each row's last token through config.pad_token_id
    if config is not None and getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = tokenizer.pad_token_id
    return int(tokenizer.pad_token_id)


@contextlib.contextmanager
def _padding_side(tokenizer: Any, side: str) -> Iterator[None]:
    """Pad on ``side`` for the duration, restoring the tokenizer's own setting after."""
    old = tokenizer.padding_side
    tokenizer.padding_side = side
    try:
        yield
    finally:
        tokenizer.padding_side = old


def _messages(system: str | None, prompt: str, answer: str | None = None) -> list[dict]:
    msgs = [] if system is None else [{"role": "system", "content": system}]
    msgs.append({"role": "user", "content": prompt})
    if answer is not None:
        msgs.append({"role": "assistant", "content": answer})
    return msgs


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1; got {batch_size!r}")
    return batch_size


def _load(auto_class: str, path: str, trust_remote_code: bool, device: Any,
          model_kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """(model, tokenizer) from a local directory, never downloading."""
    _, transformers = _import_hf()
    loader = getattr(transformers, auto_class)
    tokenizer = transformers.AutoTokenizer.from_pretrained(
        path, local_files_only=True, trust_remote_code=trust_remote_code)
    model = loader.from_pretrained(path, local_files_only=True,
                                   trust_remote_code=trust_remote_code, **model_kwargs)
    if device is not None:
        model.to(device)
    return model, tokenizer


def _logits(out: Any) -> torch.Tensor:
    # remote-code models (Qwen2.5-Math-PRM) may return a plain tuple with the logits first
    logits = out.logits if hasattr(out, "logits") else out[0]
    return logits.float()


class HFGenerator:
    """Samples completions from a local causal language model (``model.generate``).

    Prompts are batched ``batch_size`` at a time with left padding; each prompt's ``n`` samples
    come from one ``generate(do_sample=True, num_return_sequences=n)`` call. A sample's
    ``tokens`` counts its generated ids up to and including the first EOS (padding after it is
    not counted; a sample without EOS counts all but trailing padding); its text is the decoded
    new tokens, special tokens skipped.

    Reproducibility: ``seed=`` in ``generate`` fixes that call (the same seed on every call
    repeats the same samples, so do not pass it through :func:`optscale.run`, which calls
    ``generate`` once per round); ``seed=`` here makes the whole sequence of calls reproducible
    (call ``k`` is seeded from ``(seed, k)``). Either way the global torch RNG is left as it
    was, and samples also depend on ``batch_size``.
    """

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int = 8,
                 max_new_tokens: int = 256, chat_template: bool | None = None,
                 system: str | None = None, device: Any = None, seed: int | None = None):
        """Wrap a loaded model and tokenizer.

        Args:
            model: a transformers causal LM (anything with ``generate``).
            tokenizer: its tokenizer; without a pad token, EOS is used for padding.
            batch_size: prompts per ``generate`` call (each with ``n`` samples).
            max_new_tokens: default cap on generated tokens per sample.
            chat_template: apply the tokenizer's chat template to each prompt (a single user
                turn, plus ``system``): None when the tokenizer has one, True to require it,
                False never.
            system: an optional system message (chat template only).
            device: where the model runs (it is moved there); None keeps the model's device.
            seed: seeds the stream of calls (see the class docstring); None: unseeded.
        """
        _import_hf()
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = _check_batch_size(batch_size)
        self.max_new_tokens = check_int("max_new_tokens", max_new_tokens, 1)
        if system is not None and not isinstance(system, str):
            raise TypeError(f"system must be a string or None; got {type(system).__name__}")
        if seed is not None:
            check_int("seed", seed, 0)
        self.use_template = _use_template(tokenizer, chat_template)
        self.system = system
        self.device = _resolve_device(model, device)
        self.pad_token_id = _ensure_pad(tokenizer, model)
        self.seed = seed
        self._calls = 0

    @classmethod
    def from_pretrained(cls, path: str, *, trust_remote_code: bool = False,
                        model_kwargs: dict[str, Any] | None = None, **kw: Any) -> HFGenerator:
        """Load ``AutoModelForCausalLM`` and ``AutoTokenizer`` from a local directory.

        Args:
            path: the model directory (nothing is downloaded).
            trust_remote_code: passed to transformers.
            model_kwargs: extra ``from_pretrained`` arguments of the model (``dtype``, ...).
            **kw: :class:`HFGenerator` arguments (``batch_size``, ``device``, ...).
        """
        model, tokenizer = _load("AutoModelForCausalLM", path, trust_remote_code,
                                 kw.get("device"), model_kwargs or {})
        return cls(model, tokenizer, **kw)

    def _eos_ids(self, sampling: dict[str, Any]) -> set[int]:
        eos = sampling.get("eos_token_id")
        if eos is None:
            config = getattr(self.model, "generation_config", None)
            eos = getattr(config, "eos_token_id", None)
        if eos is None:
            eos = self.tokenizer.eos_token_id
        if eos is None:
            return set()
        return {int(eos)} if isinstance(eos, int) else {int(e) for e in eos}

    def _prompt_texts(self, prompts: Sequence[str]) -> list[str]:
        if not self.use_template:
            return list(prompts)
        return [self.tokenizer.apply_chat_template(_messages(self.system, p), tokenize=False,
                                                   add_generation_prompt=True)
                for p in prompts]

    def generate(self, prompts: Sequence[str], n: int, **sampling: Any) -> list[list[Sample]]:
        """Draw ``n`` completions for each prompt.

        Args:
            prompts: the prompts (raw text; the chat template is applied here).
            n: samples per prompt.
            **sampling: ``temperature``, ``top_p``, ``top_k``, ``max_new_tokens``, ``seed``;
                anything else goes to ``model.generate`` as is.

        Returns:
            Per prompt, in order, ``n`` :class:`Sample` (text, output tokens).
        """
        torch, _ = _import_hf()
        n = check_int("n", n, 0)
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings, not one string")
        self._calls += 1
        if not prompts or n == 0:
            return [[] for _ in prompts]
        sampling = dict(sampling)
        seed = sampling.pop("seed", None)
        if seed is None and self.seed is not None:
            seed = int(np.random.SeedSequence([self.seed, self._calls]).generate_state(1)[0])
        kwargs = {k: v for k, v in sampling.items() if v is not None}
        kwargs.setdefault("max_new_tokens", self.max_new_tokens)
        eos = self._eos_ids(kwargs)
        texts = self._prompt_texts(prompts)
        out: list[list[Sample]] = []
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        # fork_rng: seeding must not disturb the caller's global torch RNG
        with torch.random.fork_rng(devices=cuda, enabled=seed is not None), \
                torch.inference_mode(), _padding_side(self.tokenizer, "left"):
            if seed is not None:
                torch.manual_seed(seed)
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(texts[start:start + self.batch_size], return_tensors="pt",
                                       padding=True, add_special_tokens=not self.use_template)
                batch = {k: v.to(self.device) for k, v in batch.items()}
                ids = self.model.generate(**batch, do_sample=True, num_return_sequences=n,
                                          pad_token_id=self.pad_token_id, **kwargs)
                new = ids[:, batch["input_ids"].shape[1]:].tolist()
                out.extend(self._samples(new[i:i + n], eos) for i in range(0, len(new), n))
        return out

    def _samples(self, rows: list[list[int]], eos: set[int]) -> list[Sample]:
        counts = []
        for row in rows:
            end = next((i for i, t in enumerate(row) if t in eos), None)
            if end is None:
                # no EOS: a row cut at the cap, or one a stop string ended, padded after it
                end = len(row) - 1
                while end >= 0 and row[end] == self.pad_token_id:
                    end -= 1
            counts.append(end + 1)
        # decode without the EOS (and the padding after it)
        kept = [row[:c - 1] if c and row[c - 1] in eos else row[:c]
                for row, c in zip(rows, counts, strict=True)]
        decoded = self.tokenizer.batch_decode(kept, skip_special_tokens=True)
        return [Sample(t, c) for t, c in zip(decoded, counts, strict=True)]


def _activate(logits: torch.Tensor, index: int, activation: str) -> torch.Tensor:
    """Class ``index`` of ``logits`` (last axis) as a score."""
    torch, _ = _import_hf()
    if activation == "softmax":
        return torch.softmax(logits, dim=-1)[..., index]
    if activation == "sigmoid":
        return torch.sigmoid(logits[..., index])
    return logits[..., index]


def _check_activation(activation: str, allowed: tuple[str, ...]) -> str:
    if activation not in allowed:
        raise ValueError(f"activation must be one of {', '.join(allowed)}; got {activation!r}")
    return activation


class HFRewardScorer:
    """Scores completions with a sequence-classification outcome reward model.

    Each (prompt, completion) pair is one input: the tokenizer's chat template over a user turn
    (the prompt) and an assistant turn (the completion) when it has one, otherwise the
    tokenizer's text-pair encoding. The score is ``activation(logits[label_index])``; pairs are
    batched ``batch_size`` at a time with right padding.
    """

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int = 8, label_index: int = -1,
                 activation: str = "sigmoid", chat_template: bool | None = None,
                 system: str | None = None, device: Any = None):
        """Wrap a loaded reward model.

        Args:
            model: a transformers ``*ForSequenceClassification`` model (logits ``(batch,
                num_labels)``).
            tokenizer: its tokenizer; without a pad token, EOS is used for padding.
            batch_size: pairs per forward pass.
            label_index: the logit read as the reward (0 or -1 for a one-label head; the
                "good" class of a multi-label one).
            activation: ``sigmoid`` (scores in [0, 1]), ``softmax`` (probability of
                ``label_index`` among the labels) or ``none`` (the raw logit).
            chat_template: apply the chat template: None when the tokenizer has one, True to
                require it, False never.
            system: an optional system message (chat template only).
            device: where the model runs (it is moved there); None keeps the model's device.
        """
        _import_hf()
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = _check_batch_size(batch_size)
        self.label_index = int(label_index)
        self.activation = _check_activation(activation, ("sigmoid", "softmax", "none"))
        self.use_template = _use_template(tokenizer, chat_template)
        self.system = system
        self.device = _resolve_device(model, device)
        _ensure_pad(tokenizer, model)

    @classmethod
    def from_pretrained(cls, path: str, *, trust_remote_code: bool = False,
                        model_kwargs: dict[str, Any] | None = None,
                        **kw: Any) -> HFRewardScorer:
        """Load ``AutoModelForSequenceClassification`` and its tokenizer from a local directory.

        Args:
            path: the model directory (nothing is downloaded).
            trust_remote_code: passed to transformers.
            model_kwargs: extra ``from_pretrained`` arguments of the model (``dtype``, ...).
            **kw: :class:`HFRewardScorer` arguments.
        """
        model, tokenizer = _load("AutoModelForSequenceClassification", path, trust_remote_code,
                                 kw.get("device"), model_kwargs or {})
        return cls(model, tokenizer, **kw)

    def _encode(self, prompt: str, texts: Sequence[str]) -> dict[str, Any]:
        if self.use_template:
            full = [self.tokenizer.apply_chat_template(_messages(self.system, prompt, t),
                                                       tokenize=False) for t in texts]
            return self.tokenizer(full, return_tensors="pt", padding=True,
                                  add_special_tokens=False)
        return self.tokenizer([prompt] * len(texts), list(texts), return_tensors="pt",
                              padding=True)

    def score(self, prompt: str, texts: Sequence[str]) -> list[float]:
        """One reward per completion of ``prompt``.

        Args:
            prompt: the question.
            texts: its completions.

        Returns:
            The scores, in order.
        """
        torch, _ = _import_hf()
        scores: list[float] = []
        with torch.inference_mode(), _padding_side(self.tokenizer, "right"):
            for start in range(0, len(texts), self.batch_size):
                batch = self._encode(prompt, texts[start:start + self.batch_size])
                batch = {k: v.to(self.device) for k, v in batch.items()}
                logits = _logits(self.model(**batch))
                scores.extend(_activate(logits, self.label_index, self.activation).tolist())
        return scores


#: The system prompt Qwen2.5-Math-PRM was trained with.
QWEN_PRM_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


class HFPRMScorer:
    """Scores completions with a process reward model: one score per step, then aggregated.

    Assumed model style (Qwen2.5-Math-PRM; also Math-Shepherd through ``classes``): a completion
    is split into steps at ``step_separator`` (steps are stripped; empty ones dropped), every
    step is followed by ``step_token`` (a single token of the tokenizer), and the model returns
    per-token logits ``(batch, seq, classes)``; the step's score is read at its step-token
    position: ``softmax(logits)[good_index]`` by default (Qwen: two classes, 1 = good).
    ``classes`` first selects some logit columns (Math-Shepherd: the token ids of ``+`` and
    ``-`` of a causal LM head, ``good_index=0``). The input is the chat template over
    ``system``, the prompt as user turn and ``step_token``-joined steps as assistant turn, when
    the tokenizer has a template; otherwise ``prompt + "\\n" + steps``, or ``formatter``'s text.
    Occurrences of ``step_token`` inside the prompt or a completion are removed first, so each
    step has exactly one scoring position.

    For Qwen2.5-Math-PRM: ``HFPRMScorer.from_pretrained(path, auto_class="AutoModel",
    trust_remote_code=True, system=QWEN_PRM_SYSTEM)`` (the defaults match the rest).
    """

    def __init__(self, model: Any, tokenizer: Any, *, step_separator: str = "\n\n",
                 step_token: str = "<extra_0>", aggregate: str = "min", good_index: int = 1,
                 classes: Sequence[int] | None = None, activation: str = "softmax",
                 batch_size: int = 8, chat_template: bool | None = None,
                 system: str | None = None,
                 formatter: Callable[[str, str], str] | None = None, device: Any = None):
        """Wrap a loaded process reward model.

        Args:
            model: a model whose output logits are ``(batch, seq, classes)``.
            tokenizer: its tokenizer; ``step_token`` must be one of its tokens.
            step_separator: where a completion is split into steps.
            step_token: the token placed after every step, where its score is read.
            aggregate: how step scores become the score: ``min``, ``last``, ``prod`` or
                ``mean``.
            good_index: the class (after ``classes``) whose probability is the step score.
            classes: logit columns to keep before the activation (None: all).
            activation: ``softmax`` over the classes, ``sigmoid`` of the good logit, or
                ``none`` (raw logit; ``prod`` of raw logits is rarely meaningful).
            batch_size: completions per forward pass.
            chat_template: apply the chat template: None when the tokenizer has one, True to
                require it, False never.
            system: an optional system message (chat template only).
            formatter: ``formatter(prompt, steps_text) -> model input text`` (``steps_text``
                already holds the step tokens), replacing the default formatting; the
                tokenizer's special tokens (BOS) are added to it.
            device: where the model runs (it is moved there); None keeps the model's device.
        """
        _import_hf()
        if aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {', '.join(AGGREGATES)}; "
                             f"got {aggregate!r}")
        if not step_separator:
            raise ValueError("step_separator must be a non-empty string")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.step_separator = step_separator
        self.step_token = step_token
        self.step_token_id = self._single_token_id(tokenizer, step_token)
        self.aggregate = aggregate
        self.good_index = int(good_index)
        self.classes = None if classes is None else [int(c) for c in classes]
        self.activation = _check_activation(activation, ("softmax", "sigmoid", "none"))
        self.batch_size = _check_batch_size(batch_size)
        self.use_template = formatter is None and _use_template(tokenizer, chat_template)
        self.system = system
        self.formatter = formatter
        self.device = _resolve_device(model, device)
        _ensure_pad(tokenizer, model)

    @staticmethod
    def _single_token_id(tokenizer: Any, token: str) -> int:
        ids = tokenizer.encode(token, add_special_tokens=False)
        if len(ids) != 1 or ids[0] == tokenizer.unk_token_id:
            raise ValueError(f"step_token {token!r} must be a single known token of the "
                             f"tokenizer; it encodes to {ids}")
        return int(ids[0])

    @classmethod
    def from_pretrained(cls, path: str, *, auto_class: str = "AutoModelForTokenClassification",
                        trust_remote_code: bool = False,
                        model_kwargs: dict[str, Any] | None = None, **kw: Any) -> HFPRMScorer:
        """Load a process reward model and its tokenizer from a local directory.

        Args:
            path: the model directory (nothing is downloaded).
            auto_class: the transformers auto class that loads it (``AutoModel`` with
                ``trust_remote_code=True`` for Qwen2.5-Math-PRM, ``AutoModelForCausalLM`` for
                Math-Shepherd).
            trust_remote_code: passed to transformers.
            model_kwargs: extra ``from_pretrained`` arguments of the model (``dtype``, ...).
            **kw: :class:`HFPRMScorer` arguments.
        """
        model, tokenizer = _load(auto_class, path, trust_remote_code, kw.get("device"),
                                 model_kwargs or {})
        return cls(model, tokenizer, **kw)

    def split_steps(self, text: str) -> list[str]:
        """The steps of one completion (stripped, empty ones dropped; at least one)."""
        steps = [s.replace(self.step_token, "").strip() for s in text.split(self.step_separator)]
        return [s for s in steps if s] or [""]

    def _input_text(self, prompt: str, steps: list[str]) -> str:
        prompt = prompt.replace(self.step_token, "")
        body = "".join(s + self.step_token for s in steps)
        if self.formatter is not None:
            return self.formatter(prompt, body)
        if self.use_template:
            return self.tokenizer.apply_chat_template(_messages(self.system, prompt, body),
                                                      tokenize=False)
        return f"{prompt}\n{body}"

    def step_scores(self, prompt: str, texts: Sequence[str]) -> list[list[float]]:
        """Per completion, the score of each of its steps.

        Args:
            prompt: the question.
            texts: its completions.

        Returns:
            One list of step scores per completion, in order.

        Raises:
            ValueError: the step token does not occur once per step in the tokenized input.
        """
        torch, _ = _import_hf()
        special = not self.use_template  # a rendered template already holds its BOS
        out: list[list[float]] = []
        with torch.inference_mode(), _padding_side(self.tokenizer, "right"):
            for start in range(0, len(texts), self.batch_size):
                steps = [self.split_steps(t) for t in texts[start:start + self.batch_size]]
                full = [self._input_text(prompt, s) for s in steps]
                batch = self.tokenizer(full, return_tensors="pt", padding=True,
                                       add_special_tokens=special)
                batch = {k: v.to(self.device) for k, v in batch.items()}
                logits = _logits(self.model(**batch))
                if self.classes is not None:
                    logits = logits[..., self.classes]
                probs = _activate(logits, self.good_index, self.activation)
                at = (batch["input_ids"] == self.step_token_id) & batch["attention_mask"].bool()
                for row, (mask, s) in enumerate(zip(at, steps, strict=True)):
                    got = probs[row][mask].tolist()
                    if len(got) != len(s):
                        raise ValueError(
                            f"completion {start + row}: {len(s)} steps but the step token "
                            f"{self.step_token!r} occurs {len(got)} times in the tokenized "
                            "input (truncated, or merged with neighbouring text)")
                    out.append(got)
        return out

    def score(self, prompt: str, texts: Sequence[str]) -> list[float]:
        """One aggregated step score per completion of ``prompt``.

        Args:
            prompt: the question.
            texts: its completions.

        Returns:
            The ``aggregate`` of each completion's step scores, in order.
        """
        return [float(_aggregate(s, self.aggregate)) for s in self.step_scores(prompt, texts)]

