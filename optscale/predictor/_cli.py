"""``optscale predict`` and ``optscale predictor train|evaluate``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

__all__ = ["add_commands"]

_TRAIN_FLAGS = ("pooling", "hidden", "dropout", "learning_rate", "weight_decay", "batch_size",
                "max_epochs", "patience", "seed")


def _load(args: argparse.Namespace):
    from optscale.cli import CLIError
    from optscale.predictor._predictor import DEFAULT_MODEL_DIR, PriorPredictor

    try:
        return PriorPredictor.load(args.model or DEFAULT_MODEL_DIR, cache_dir=args.cache)
    except (KeyError, TypeError, AttributeError, IndexError) as err:  # a malformed config.json
        raise CLIError(f"--model {args.model or DEFAULT_MODEL_DIR}: not a saved predictor "
                       f"({type(err).__name__}: {err})") from None


def _check_json(path: str) -> None:
    """A one-line error naming the file and line where ``path`` is not UTF-8 JSON."""
    from optscale.cli import CLIError
    from optscale.replay._pool import brief

    with open(path, "rb") as fh:
        data = fh.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise CLIError(f"{path}:{line}: not UTF-8 text") from None
    try:
        json.loads(text)
    except json.JSONDecodeError as err:
        raise CLIError(f"{path}:{err.lineno}: invalid JSON: {err.msg} (column {err.colno})"
                       ) from None
    except (ValueError, RecursionError) as err:
        raise CLIError(f"{path}: invalid JSON ({brief(err)})") from None


def _stats(args: argparse.Namespace):
    """The score statistics of --data; a malformed file is a one-line error naming --data."""
    from optscale.cli import CLIError, check_input_file
    from optscale.predictor._labels import load_score_stats

    root = Path(args.data)  # where load_score_stats looks: the folder or its optscale-ref/
    if not (root / "train_questions.json").exists() and (root / "optscale-ref").is_dir():
        root = root / "optscale-ref"
    for name in ("train_questions.json", "train_score_stats.json"):
        _check_json(check_input_file(str(root / name), "--data"))  # a FIFO would block
    try:
        return load_score_stats(args.data)
    except (KeyError, TypeError, AttributeError, IndexError, ValueError, RecursionError) as err:
        raise CLIError(f"--data {args.data}: malformed score statistics "
                       f"({type(err).__name__}: {err})") from None


def _cmd_predict(args: argparse.Namespace) -> int:
    from optscale import MomentStatus, truncnorm_from_moments
    from optscale.cli import CLIError, read_lines

    questions = list(args.question)
    if args.input:
        questions += read_lines(args.input)
    if not questions:
        raise CLIError("give a question, or --input FILE with one per line")
    predictor = _load(args)
    mean, std = predictor.predict_moments(questions)
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
    stats = _stats(args)  # checked before the encoder's (slow) imports

    from optscale.predictor._encoder import EncoderCache, HFEncoder

    encoder = EncoderCache(HFEncoder(args.encoder, max_length=args.max_length), args.cache)
    start = time.perf_counter()
    states = encoder.encode(stats.texts)
    print(f"# encoded {len(states)} questions in {time.perf_counter() - start:.1f} s "
          f"({encoder.encoder.calls} not cached)", file=sys.stderr)
    return stats, encoder, states


def _cmd_train(args: argparse.Namespace) -> int:
    import numpy as np

    from optscale.cli import output_folder
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
    with output_folder(str(args.out), "--out") as staging:
        predictor.save(staging)
    print(json.dumps(metrics, indent=2))
    print(f"# saved to {args.out}", file=sys.stderr)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from optscale.predictor._labels import evaluate_moments, split_by_question

    stats = _stats(args)
    predictor = _load(args)
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


def _folder(text: str) -> Path:
    """A folder that may not exist yet (a cache): refused when it is something else."""
    if os.path.lexists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text}: exists and is not a folder")
    return Path(text)


def _common(p: argparse.ArgumentParser) -> None:
    from optscale.cli import input_dir

    p.add_argument("--model", type=lambda s: Path(input_dir(s)),
                   help="a saved predictor folder (default: the bundled one)")
    p.add_argument("--cache", type=_folder, help="encoder cache folder (default: none for predict)")


def add_commands(sub) -> None:
    """Register ``predict`` and ``predictor`` on the ``optscale`` sub-command parser."""
    from optscale.cli import float_arg, input_dir, input_file, int_arg, output_dir

    p = sub.add_parser("predict", help="prior on a question's score distribution, from its text",
                       description="Predict the raw mean and std of a question's verifier scores "
                       "and the truncated-normal prior (mu0, sigma0) OptScale^t takes.")
    p.add_argument("question", nargs="*", help="question text(s)")
    p.add_argument("--input", "-i", type=input_file, help="file with one question per line")
    p.add_argument("--json", action="store_true", help="one JSON object per question")
    _common(p)
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("predictor", help="train or evaluate the prior predictor")
    psub = p.add_subparsers(dest="predictor_command", required=True)
    for name, func, helptext in (("train", _cmd_train, "train a head on score statistics"),
                                 ("evaluate", _cmd_evaluate, "metrics on a split")):
        q = psub.add_parser(name, help=helptext)
        q.add_argument("--data", required=True, type=lambda s: Path(input_dir(s)),
                       help="folder with train_questions.json and train_score_stats.json")
        q.add_argument("--split-seed", dest="split_seed", type=int_arg(0, 2**32 - 1), default=0)
        q.set_defaults(func=func)
        if name == "train":
            q.add_argument("--out", required=True, type=output_dir,
                           help="output model folder (not a symlink)")
            q.add_argument("--encoder", type=input_dir,
                           help="local encoder folder (default: all-MiniLM-L6-v2)")
            q.add_argument("--max-length", dest="max_length", type=int_arg(1, 1 << 16),
                           default=256)
            q.add_argument("--cache", type=_folder, help="encoder cache folder (default: "
                           "$OPTSCALE_CACHE/encoder or ~/.cache/optscale/encoder)")
            # Defaults (None) come from TrainConfig: the settings of the bundled head.
            q.add_argument("--pooling", choices=("attention", "mean"))
            q.add_argument("--hidden", type=int_arg(1, 1 << 16), help="MLP width (default 32)")
            q.add_argument("--dropout", type=float_arg(0.0, 1.0, open_hi=True),
                           help="default 0.5")
            q.add_argument("--lr", dest="learning_rate", type=float_arg(0.0, open_lo=True),
                           help="default 3e-4")
            q.add_argument("--weight-decay", dest="weight_decay", type=float_arg(0.0),
                           help="AdamW weight decay (default 0.1)")
            q.add_argument("--batch-size", dest="batch_size", type=int_arg(1, 1 << 20),
                           help="default 64")
            q.add_argument("--epochs", dest="max_epochs", type=int_arg(1, 10**6),
                           help="maximum epochs (default 200)")
            q.add_argument("--patience", type=int_arg(1, 10**6),
                           help="early-stopping patience (default 15)")
            q.add_argument("--seed", type=int_arg(0, 2**32 - 1),
                           help="init, dropout and batch order (default 0)")
            q.add_argument("--quiet", "-q", action="store_true")
        else:
            _common(q)
            q.add_argument("--part", choices=("train", "val", "test"), default="test")
            q.add_argument("--n-boot", dest="n_boot", type=int_arg(1, 10**6), default=2000)
