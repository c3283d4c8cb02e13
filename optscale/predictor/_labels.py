"""Labels, the leak-free split and held-out metrics of the prior predictor (NumPy only)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "LabelScale",
    "ScoreStats",
    "evaluate_moments",
    "load_score_stats",
    "split_by_question",
]


@dataclass(frozen=True)
class ScoreStats:
    """Questions with the raw mean and std of their verifier scores (the predictor's labels)."""

    texts: list[str]
    unique_ids: list[str]
    mean: np.ndarray
    std: np.ndarray


def load_score_stats(data_dir: str | Path) -> ScoreStats:
    """Read ``train_questions.json`` and ``train_score_stats.json`` (the OptScale reference's
    predictor training data) from ``data_dir``.

    Args:
        data_dir: the ``optscale-ref`` folder (or a folder holding it).
    Returns:
        The questions, in file order, with their labels.
    """
    root = Path(data_dir)
    if not (root / "train_questions.json").exists() and (root / "optscale-ref").is_dir():
        root = root / "optscale-ref"
    with open(root / "train_questions.json") as fh:
        questions = json.load(fh)
    with open(root / "train_score_stats.json") as fh:
        stats = json.load(fh)
    idx = sorted(int(k) for k in stats)
    if idx != list(range(len(questions))):
        raise ValueError(f"{root}: score stats do not cover the {len(questions)} questions")
    return ScoreStats(
        texts=[q["problem"] for q in questions],
        unique_ids=[q.get("unique_id", str(i)) for i, q in enumerate(questions)],
        mean=np.array([stats[str(i)]["mean"] for i in idx], np.float64),
        std=np.array([stats[str(i)]["std"] for i in idx], np.float64))


def split_by_question(unique_ids: Sequence[str], fractions: Sequence[float] = (0.8, 0.1, 0.1),
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train / validation / test row indices, split by question id so duplicates stay together.

    Args:
        unique_ids: one id per row; rows sharing an id land in the same part.
        fractions: shares of the distinct ids (normalised to sum to one).
        seed: permutation seed (the split is a pure function of ids and seed).
    Returns:
        Three sorted index arrays.
    """
    # Sorted distinct ids, then a seeded permutation: independent of the rows' file order.
    ids = sorted(set(unique_ids))
    perm = np.random.default_rng(seed).permutation(len(ids))
    frac = np.asarray(fractions, np.float64) / np.sum(fractions)
    bounds = np.round(np.cumsum(frac) * len(ids)).astype(int)
    part_of = {}
    for rank, j in enumerate(perm):
        part_of[ids[j]] = int(np.searchsorted(bounds, rank, side="right"))
    parts = np.array([part_of[u] for u in unique_ids])
    return tuple(np.flatnonzero(parts == p) for p in range(3))


@dataclass(frozen=True)
class LabelScale:
    """Label normalisation: the head learns ``(mean - mean_loc) / mean_scale`` and
    ``std / std_scale`` (positive, like the head's spread), so both losses weigh alike."""

    mean_loc: float
    mean_scale: float
    std_scale: float

    @classmethod
    def fit(cls, mean: np.ndarray, std: np.ndarray) -> LabelScale:
        """The scale of these (training) labels."""
        return cls(float(np.mean(mean)), float(np.std(mean)) or 1.0, float(np.std(std)) or 1.0)

    def encode(self, mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw moments -> the head's targets ``(loc, spread)``."""
        return (mean - self.mean_loc) / self.mean_scale, std / self.std_scale

    def decode(self, loc: np.ndarray, spread: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The head's outputs -> raw ``(mean, std)``."""
        return loc * self.mean_scale + self.mean_loc, spread * self.std_scale


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def evaluate_moments(pred_mean: np.ndarray, pred_std: np.ndarray, mean: np.ndarray,
                     std: np.ndarray, const_mean: float, const_std: float, *,
                     n_boot: int = 2000, seed: int = 0) -> dict:
    """Held-out metrics for both outputs against a constant predictor.

    The improvement is ``MSE(constant) - MSE(head)``; its 95 % interval is a paired percentile
    bootstrap over questions.

    Args:
        pred_mean, pred_std: the head's predictions.
        mean, std: labels.
        const_mean, const_std: the constant predictor (the training labels' means).
        n_boot: bootstrap resamples.
        seed: bootstrap seed.
    Returns:
        ``{"mean": {...}, "std": {...}, "n": count}`` with ``mse_head``, ``mse_constant``,
        ``improvement``, ``improvement_ci95``, ``relative_improvement``, ``spearman``.
    """
    rng = np.random.default_rng(seed)
    n = len(mean)
    boot = rng.integers(0, n, size=(n_boot, n))
    out: dict = {"n": int(n), "n_boot": int(n_boot)}
    for name, pred, label, const in (("mean", pred_mean, mean, const_mean),
                                     ("std", pred_std, std, const_std)):
        err_head = (np.asarray(pred, np.float64) - label) ** 2
        err_const = (const - np.asarray(label, np.float64)) ** 2
        gain = err_const - err_head
        boot_gain = gain[boot].mean(-1)
        lo, hi = np.percentile(boot_gain, [2.5, 97.5])
        out[name] = {
            "mse_head": float(err_head.mean()),
            "mse_constant": float(err_const.mean()),
            "improvement": float(gain.mean()),
            "improvement_ci95": [float(lo), float(hi)],
            "relative_improvement": float(gain.mean() / err_const.mean()),
            "spearman": _spearman(pred, label),
        }
    return out
