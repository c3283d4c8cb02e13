"""Compare prior-head settings (pooling, regularisation) on the validation split.

Selection uses validation loss only; test metrics are printed for the record (the bundled head's
settings were chosen by the validation column). Needs ../shared/data and the encoder cache
(filled on first use, about 2 minutes on 2 cores)::

    python benchmarks/predictor_compare.py --data ../shared/data/optscale-ref
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from optscale.predictor import (
    EncoderCache,
    HFEncoder,
    TrainConfig,
    evaluate_moments,
    load_score_stats,
    predict_head,
    split_by_question,
    train_head,
)

_FAST = {"hidden": 64, "dropout": 0.1, "weight_decay": 0.01, "learning_rate": 1e-3}
_REG = {"hidden": 64, "dropout": 0.3, "weight_decay": 0.1, "learning_rate": 3e-4}
SETTINGS = {
    "attention, hidden 64, dropout 0.1, wd 0.01, lr 1e-3": {"pooling": "attention", **_FAST},
    "mean, hidden 64, dropout 0.1, wd 0.01, lr 1e-3": {"pooling": "mean", **_FAST},
    "attention, hidden 64, dropout 0.3, wd 0.1, lr 3e-4": {"pooling": "attention", **_REG},
    "mean, hidden 64, dropout 0.3, wd 0.1, lr 3e-4": {"pooling": "mean", **_REG},
    "attention, hidden 32, dropout 0.5, wd 0.1, lr 3e-4": {
        "pooling": "attention", "hidden": 32, "dropout": 0.5, "weight_decay": 0.1,
        "learning_rate": 3e-4},
    "mean, hidden 32, dropout 0.5, wd 0.1, lr 3e-4": {
        "pooling": "mean", "hidden": 32, "dropout": 0.5, "weight_decay": 0.1,
        "learning_rate": 3e-4},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--cache", default=None)
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    stats = load_score_stats(args.data)
    states = EncoderCache(HFEncoder(), args.cache).encode(stats.texts)
    train, val, test = split_by_question(stats.unique_ids, seed=0)
    const = float(stats.mean[train].mean()), float(stats.std[train].mean())
    for name in args.settings:
        start = time.perf_counter()
        config = TrainConfig(seed=args.seed, **SETTINGS[name])
        head, scale, config = train_head(states, stats.mean, stats.std, train, val, config)
        best = min(config.history, key=lambda h: h[2])
        row = {"setting": name, "best_epoch": best[0], "val_loss": round(best[2], 4),
               "seconds": round(time.perf_counter() - start, 1)}
        for part, rows in (("val", val), ("test", test)):
            loc, spread = predict_head(head, states, rows)
            mean, std = scale.decode(loc.astype(np.float64), spread.astype(np.float64))
            m = evaluate_moments(mean, std, stats.mean[rows], stats.std[rows], *const,
                                 n_boot=2000)
            for out in ("mean", "std"):
                row[f"{part}_{out}_rel_gain"] = round(m[out]["relative_improvement"], 3)
                row[f"{part}_{out}_spearman"] = round(m[out]["spearman"], 3)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
