"""``optscale predict`` and ``optscale predictor train|evaluate``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

__all__ = ["add_commands"]

_TRAIN_FLAGS = ("pooling", "hidden", "dropout", "learning_rate", "weight_decay", "batch_size",
                "max_epochs", "patience", "seed")


def _load(args: argparse.Namespace):
    from optscale.predictor._predictor import DEFAULT_MODEL_DIR, PriorPredictor

    return PriorPredictor.load(args.model or DEFAULT_MODEL_DIR, cache_dir=args.cache)


def _cmd_predict(args: argparse.Namespace) -> int:
    from optscale import MomentStatus, truncnorm_from_moments

    questions = list(args.question)
    if args.input:
        with open(args.input) as fh:
            questions += [line.rstrip("\n") for line in fh if line.strip()]
    if not questions:
        raise SystemExit("optscale predict: give a question, or --input FILE with one per line")
    try:
        predictor = _load(args)
        mean, std = predictor.predict_moments(questions)
    except (OSError, ModuleNotFoundError, ValueError) as err:
        print(f"optscale predict: {err}", file=sys.stderr)
        return 2
    mu, sigma, status = truncnorm_from_moments(mean, std)
    for i, q in enumerate(questions):
        name = MomentStatus(int(status[i])).name
        if args.json:
            print(json.dumps({"question": q, "mean": float(mean[i]), "std": float(std[i]),
                              "mu0": float(mu[i]), "sigma0": float(sigma[i]),
                              "moment_status": name}))
        else:
            print(f"mean = {mean[i]:.4f}  std = {std[i]:.4f}  ->  mu0 = {mu[i]:.4f}  "
                  f"sigma0 = {sigma[i]:.4f}  ({name})  {q[:60]!r}")
    return 0


def _data(args: argparse.Namespace):
    from optscale.predictor._encoder import EncoderCache, HFEncoder
    from optscale.predictor._labels import load_score_stats

    stats = load_score_stats(args.data)
    encoder = EncoderCache(HFEncoder(args.encoder, max_length=args.max_length), args.cache)
    start = time.perf_counter()
    states = encoder.encode(stats.texts)
    print(f"# encoded {len(states)} questions in {time.perf_counter() - start:.1f} s "
          f"({encoder.encoder.calls} not cached)", file=sys.stderr)
    return stats, encoder, states


def _cmd_train(args: argparse.Namespace) -> int:
    import numpy as np

    from optscale.predictor._labels import evaluate_moments, split_by_question
    from optscale.predictor._predictor import PriorPredictor
    from optscale.predictor._train import TrainConfig, predict_head, train_head

    stats, encoder, states = _data(args)
    train, val, test = split_by_question(stats.unique_ids, seed=args.split_seed)
    given = {k: getattr(args, k) for k in _TRAIN_FLAGS if getattr(args, k) is not None}
    config = TrainConfig(**given)
    start = time.perf_counter()
    head, scale, config = train_head(states, stats.mean, stats.std, train, val, config,
                                     verbose=not args.quiet)
    seconds = time.perf_counter() - start
    loc, spread = predict_head(head, states, test)
    mean, std = scale.decode(loc.astype(np.float64), spread.astype(np.float64))
    metrics = evaluate_moments(mean, std, stats.mean[test], stats.std[test],
                               float(stats.mean[train].mean()), float(stats.std[train].mean()))
    best = min(config.history, key=lambda h: h[2])
    info = {
        "data": "OptScale reference train_score_stats.json (4,501 MATH problems)",
        "split": {"seed": args.split_seed, "fractions": [0.8, 0.1, 0.1], "by": "unique_id",
                  "sizes": [len(train), len(val), len(test)]},
        "train": {**config.to_dict(), "best_epoch": best[0], "epochs_run": len(config.history),
                  "seconds": round(seconds, 1)},
        "test_metrics": metrics,
    }
    predictor = PriorPredictor(head, scale, encoder.encoder, info=info)
    out = predictor.save(args.out)
    print(json.dumps(metrics, indent=2))
    print(f"# saved to {out}", file=sys.stderr)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from optscale.predictor._labels import evaluate_moments, load_score_stats, split_by_question

    predictor = _load(args)
    stats = load_score_stats(args.data)
    split = predictor.info.get("split", {})
    train, val, test = split_by_question(stats.unique_ids, seed=split.get("seed", args.split_seed))
    rows = {"train": train, "val": val, "test": test}[args.part]
    mean, std = predictor.predict_moments([stats.texts[i] for i in rows])
    metrics = evaluate_moments(mean, std, stats.mean[rows], stats.std[rows],
                               float(stats.mean[train].mean()), float(stats.std[train].mean()),
                               n_boot=args.n_boot)
    metrics["part"] = args.part
    print(json.dumps(metrics, indent=2))
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, help="a saved predictor folder (default: the bundled one)")
    p.add_argument("--cache", type=Path, help="encoder cache folder (default: none for predict)")


def add_commands(sub) -> None:
    """Register ``predict`` and ``predictor`` on the ``optscale`` sub-command parser."""
    p = sub.add_parser("predict", help="prior on a question's score distribution, from its text",
                       description="Predict the raw mean and std of a question's verifier scores "
                       "and the truncated-normal prior (mu0, sigma0) OptScale^t takes.")
    p.add_argument("question", nargs="*", help="question text(s)")
    p.add_argument("--input", "-i", help="file with one question per line")
    p.add_argument("--json", action="store_true", help="one JSON object per question")
    _common(p)
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("predictor", help="train or evaluate the prior predictor")
    psub = p.add_subparsers(dest="predictor_command", required=True)
    for name, func, helptext in (("train", _cmd_train, "train a head on score statistics"),
                                 ("evaluate", _cmd_evaluate, "metrics on a split")):
        q = psub.add_parser(name, help=helptext)
        q.add_argument("--data", required=True, type=Path,
                       help="folder with train_questions.json and train_score_stats.json")
        q.add_argument("--split-seed", dest="split_seed", type=int, default=0)
        q.set_defaults(func=func)
        if name == "train":
            q.add_argument("--out", required=True, type=Path, help="output model folder")
            q.add_argument("--encoder", help="local encoder folder (default: all-MiniLM-L6-v2)")
            q.add_argument("--max-length", dest="max_length", type=int, default=256)
            q.add_argument("--cache", type=Path, help="encoder cache folder (default: "
                           "$OPTSCALE_CACHE/encoder or ~/.cache/optscale/encoder)")
            # Defaults (None) come from TrainConfig: the settings of the bundled head.
            q.add_argument("--pooling", choices=("attention", "mean"))
            q.add_argument("--hidden", type=int, help="MLP width (default 32)")
            q.add_argument("--dropout", type=float, help="default 0.5")
            q.add_argument("--lr", dest="learning_rate", type=float, help="default 3e-4")
            q.add_argument("--weight-decay", dest="weight_decay", type=float,
                           help="AdamW weight decay (default 0.1)")
            q.add_argument("--batch-size", dest="batch_size", type=int, help="default 64")
            q.add_argument("--epochs", dest="max_epochs", type=int,
                           help="maximum epochs (default 200)")
            q.add_argument("--patience", type=int, help="early-stopping patience (default 15)")
            q.add_argument("--seed", type=int, help="init, dropout and batch order (default 0)")
            q.add_argument("--quiet", "-q", action="store_true")
        else:
            _common(q)
            q.add_argument("--part", choices=("train", "val", "test"), default="test")
            q.add_argument("--n-boot", dest="n_boot", type=int, default=2000)
