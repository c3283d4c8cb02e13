"""``optscale run``: drive a local Hugging Face model and verifier with a policy (OptScale^0
from flags, or a policy file from ``optscale tune``)."""

from __future__ import annotations

import argparse
import json

__all__ = ["add_commands"]


def _cmd_run(args: argparse.Namespace) -> int:
    import optscale
    from optscale.cli import CLIError, read_lines
    from optscale.sampling._hf import HFGenerator, HFPRMScorer, HFRewardScorer

    questions = list(args.question)
    if args.input:
        questions += read_lines(args.input)
    if not questions:
        raise CLIError("give a question, or --input FILE with one per line")
    if args.policy is not None:
        policy = optscale.load_policy(args.policy)
    else:
        try:
            policy = optscale.OptScale0(target=args.target, confidence=args.confidence,
                                        n_peek=args.n_peek, n_max=args.n_max)
        except ValueError as err:
            raise CLIError(f"invalid policy options: {err}") from None
    answer = None
    if args.answer == "boxed":
        from optscale.replay._grading import extract_boxed as answer
    try:
        generator = HFGenerator.from_pretrained(args.model, max_new_tokens=args.max_new_tokens)
        kind = HFPRMScorer if args.scorer_kind == "prm" else HFRewardScorer
        scorer = kind.from_pretrained(args.scorer)
    except (OSError, ValueError) as err:
        raise CLIError(f"cannot load a model: {err}") from None
    sampling = {"temperature": args.temperature}
    if args.seed is not None:
        sampling["seed"] = args.seed
    try:
        results = optscale.run_batch(questions, generator, scorer, policy, answer=answer,
                                     progress=not args.quiet and len(questions) > 1, **sampling)
    except BaseException as err:  # interrupted: print what was drawn, then report the stop
        _print(getattr(err, "partial_results", None) or [], args.json)
        raise
    return 1 if _print(results, args.json) else 0


def _print(results, as_json: bool) -> int:
    """Print every result; returns how many ended with an error."""
    failed = 0
    for r in results:
        failed += not r.ok
        if as_json:
            print(json.dumps({
                "question": r.question, "answer": r.answer, "n_used": r.n_used,
                "tokens": r.tokens, "n_star": r.n_star, "chosen": r.chosen,
                "scores": list(r.scores), "answers": list(r.answers),
                "samples": [s.text for s in r.samples],
                "error": None if r.ok else f"{type(r.error).__name__}: {r.error}"}))
        else:
            best = "n/a" if r.best_index is None else f"{r.scores[r.best_index]:.4f}"
            print(f"question: {r.question}\nsamples: {r.n_used} (N* = {r.n_star}), output "
                  f"tokens: {r.tokens}, best score: {best}")
            if not r.ok:
                print(f"error: {type(r.error).__name__}: {r.error} (kept what was drawn)")
            print(f"answer: {r.answer}\n")
    return failed


def add_commands(sub) -> None:
    """Register ``run`` on the ``optscale`` sub-command parser."""
    from optscale.cli import float_arg, input_dir, input_file, int_arg

    p = sub.add_parser("run", help="answer questions with a local model, sampling adaptively",
                       description="Draw samples from a local Hugging Face causal LM, score them "
                       "with a local reward model or PRM, and let a policy decide how many to "
                       "draw (OptScale^0 from --target/--confidence/--n-peek/--n-max, or "
                       "--policy FILE from optscale tune); prints the chosen answer and what it "
                       "cost.")
    p.add_argument("question", nargs="*", help="question text(s)")
    p.add_argument("--input", "-i", type=input_file, help="file with one question per line")
    p.add_argument("--model", required=True, type=input_dir, help="local causal LM folder")
    p.add_argument("--scorer", required=True, type=input_dir,
                   help="local reward model or PRM folder")
    p.add_argument("--scorer-kind", dest="scorer_kind", choices=("reward", "prm"),
                   default="reward", help="outcome reward model (default) or process RM")
    p.add_argument("--policy", type=input_file,
                   help="a policy file (optscale tune -o); replaces the OptScale^0 options")
    p.add_argument("--answer", choices=("none", "boxed"), default="none",
                   help="how a sample's final answer is read, for votes: none (default) or "
                   "boxed (the last \\boxed{...})")
    p.add_argument("--target", type=float_arg(), default=0.9,
                   help="score to reach (default 0.9)")
    p.add_argument("--confidence", type=float_arg(0.0, 1.0, open_lo=True, open_hi=True),
                   default=0.9, help="in (0, 1) (default 0.9)")
    p.add_argument("--n-peek", dest="n_peek", type=int_arg(1), default=4, help="default 4")
    p.add_argument("--n-max", dest="n_max", type=int_arg(1), default=32,
                   help="budget (default 32)")
    p.add_argument("--temperature", type=float_arg(0.0), default=0.8)
    p.add_argument("--max-new-tokens", dest="max_new_tokens", type=int_arg(1), default=512)
    p.add_argument("--seed", type=int_arg(0, 2**63 - 1))
    p.add_argument("--json", action="store_true", help="one JSON object per question")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_run)
