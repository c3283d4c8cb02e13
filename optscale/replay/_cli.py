"""``optscale replay``, ``optscale tune``, ``optscale diagnose`` and ``optscale demo``: the replay
harness on the command line.

Errors follow the rule of :mod:`optscale.cli` (one line, exit status 2); options are checked
when parsed (``--orders`` >= 1, ``--folds`` >= 2, budgets >= 1, ...), and ``--folds`` larger
than the pool's number of questions is lowered to it, with a note on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

from optscale.replay._methods import DEFAULT_METHODS, METHOD_KEYS, Method, standard_methods
from optscale.replay._protocol import REFERENCES, evaluate
from optscale.replay._readers import FORMATS
from optscale.replay._report import markdown_summary, write_report

__all__ = ["add_commands"]

# make_rows holds a few arrays of questions x orders x samples: beyond this it is an error, not
# an out-of-memory kill
MAX_REPLAY_CELLS = 2**28
# tune's default budget grid: finer than replay's, since it picks one setting among them
TUNE_BUDGETS = (4, 8, 12, 16, 20, 24, 28, 32, 48, 64)


def _methods(arg: str, budgets: list[int], args: argparse.Namespace | None = None,
             always: str = "bon") -> list[Method]:
    from optscale.cli import CLIError

    grids = {} if args is None else {k: v for k, v in (
        ("esc_windows", args.esc_windows), ("asc_thresholds", args.asc_thresholds),
        ("dsc_windows", args.dsc_windows)) if v is not None}
    keys = [k.strip().lower() for k in arg.split(",") if k.strip()]
    unknown = [k for k in keys if k not in METHOD_KEYS]
    if unknown or not keys:
        raise CLIError(f"--methods takes a comma-separated list of {', '.join(METHOD_KEYS)}; "
                       f"got {arg[:80]!r}")
    if always and always not in keys:
        keys.insert(0, always)  # the reference settings are chosen against: it always runs
    try:
        return list(standard_methods(budgets, keys=list(dict.fromkeys(keys)), **grids).values())
    except ValueError as err:
        raise CLIError(f"--methods/--budgets: {err}") from None


def _select(pool, spec: str | None):
    """The questions ``--questions`` names: ``even``, ``odd``, ``first-half``,
    ``second-half`` or a Python slice ``start:stop[:step]`` over question positions."""
    import numpy as np

    from optscale.cli import CLIError

    if spec is None:
        return pool
    q = np.arange(pool.size)
    named = {"even": q[0::2], "odd": q[1::2], "first-half": q[:pool.size // 2],
             "second-half": q[pool.size // 2:]}
    if spec in named:
        index = named[spec]
    else:
        try:
            parts = [int(p) if p.strip() else None for p in spec.split(":")]
            if not 2 <= len(parts) <= 3 or (len(parts) == 3 and parts[2] == 0):
                raise ValueError
        except ValueError:
            raise CLIError(f"--questions: expected even, odd, first-half, second-half or "
                           f"start:stop[:step]; got {spec!r}") from None
        index = q[slice(*parts)]
    if index.size < 2:
        raise CLIError(f"--questions {spec}: selects {index.size} of the pool's {pool.size} "
                       "questions; held-out evaluation needs at least 2")
    return pool.subset(index)


def _folds(pool, args: argparse.Namespace) -> tuple[int, str]:
    """--folds, lowered to the number of questions where it is larger, and the note saying so
    (printed once the replay has run: an error must stay the only line)."""
    from optscale.cli import CLIError

    if pool.size < 2:
        raise CLIError(f"the pool has {pool.size} question(s): held-out evaluation needs at "
                       "least 2 (settings are chosen on some questions and reported on others)")
    if args.folds > pool.size:
        return pool.size, (f"optscale {args.command}: --folds {args.folds} is more than the "
                           f"pool's {pool.size} questions; using --folds {pool.size}")
    return args.folds, ""


def _run(pool, methods: list[Method], args, title: str, appendix: str = "") -> int:
    from optscale.cli import CLIError, output_folder

    folds, note = _folds(pool, args)
    cells = pool.size * pool.width * args.orders
    if cells > MAX_REPLAY_CELLS:
        raise CLIError(f"--orders {args.orders}: {pool.size} questions x {pool.width} samples x "
                       f"{args.orders} orders is more than {MAX_REPLAY_CELLS} sample slots; "
                       "lower --orders")
    start = time.perf_counter()
    ev = evaluate(pool, methods, orders=args.orders, folds=folds, seed=args.seed,
                  tolerance=args.tolerance, verifier_tokens=args.verifier_tokens,
                  reference=getattr(args, "reference", None), progress=not args.quiet)
    elapsed = time.perf_counter() - start
    with output_folder(args.out, "--out") as staging, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # matplotlib's layout notes: not the user's concern
        written = write_report(ev, staging, title)
        if appendix:
            with open(written[0], "a", encoding="utf-8") as fh:  # report.md
                fh.write(appendix)
    if note:
        print(note, file=sys.stderr)
    print(markdown_summary(ev, title))
    final = [os.path.join(args.out, os.path.basename(p)) for p in written]
    print(f"Replayed {pool.size} questions x {args.orders} orders, {len(ev.settings)} settings "
          f"in {elapsed:.1f} s; wrote {', '.join(final)}", file=sys.stderr)
    return 0


def _load(args: argparse.Namespace):
    from optscale.cli import CLIError
    from optscale.replay._readers import load_pool

    pool = load_pool(args.pool, format=args.format, aggregate=args.aggregate,
                     questions=getattr(args, "gold", None))
    if pool.correct is None:
        raise CLIError(f"{args.pool} has no correctness labels and no gold answers to grade "
                       "against (--gold FILE gives them)")
    return _select(pool, args.questions)


def _cmd_replay(args: argparse.Namespace) -> int:
    if args.policy is not None:
        return _replay_policy(args)
    methods = _methods(args.methods, args.budgets, args)
    return _run(_load(args), methods, args, f"Replay of {args.pool}")


def _replay_policy(args: argparse.Namespace) -> int:
    """``replay --policy``: one fixed policy, evaluated as it is (no tuning) beside the
    fixed-N baselines at its budget: the transfer check before deploying it."""
    from optscale.policies import read_policy_file
    from optscale.replay._methods import PolicyMethod

    loaded = read_policy_file(args.policy)
    policy = loaded.policy
    pool = _load(args)
    budget = policy.n_max
    methods = list(standard_methods([budget], keys=("bon", "sc", "wsc")).values())
    methods.append(PolicyMethod(f"policy file {os.path.basename(args.policy)}", policy))
    status = _run(pool, methods, args, f"Fixed policy {args.policy} on {args.pool}")
    held = loaded.metrics.get("heldout", {})
    if held:
        cost = "tokens" if "tokens" in held else "samples"
        print(f"\nThe policy file reports, held out on the pool it was tuned on "
              f"({loaded.provenance.get('pool', '?')}): accuracy {100 * held['accuracy']:.1f} % "
              f"(std {100 * held.get('accuracy_std', float('nan')):.1f} across orders, "
              f"standard error {100 * held.get('accuracy_se_questions', float('nan')):.1f} "
              f"over questions), {held.get(cost, float('nan')):,.0f} {cost}.")
    return status


def _cmd_tune(args: argparse.Namespace) -> int:
    import shlex

    from optscale.cli import CLIError, open_output
    from optscale.policies._file import policy_text
    from optscale.replay._tune import Objective, provenance, tune

    given = [(k, v) for k, v in (("accuracy", args.target_accuracy),
                                 ("budget", args.token_budget), ("price", args.price))
             if v is not None]
    if len(given) != 1:
        raise CLIError("give exactly one objective: --target-accuracy A, --token-budget T or "
                       "--price P")
    objective = Objective(*given[0])
    pool = _load(args)
    folds, note = _folds(pool, args)
    methods = _methods(args.methods, args.budgets, args, always="")
    if objective.kind == "budget" and pool.tokens is None:
        print("optscale tune: the pool has no token counts: --token-budget is in samples",
              file=sys.stderr)
    start = time.perf_counter()
    result = tune(pool, methods, objective, orders=args.orders, folds=folds, seed=args.seed,
                  verifier_tokens=args.verifier_tokens, progress=not args.quiet)
    elapsed = time.perf_counter() - start
    prov = provenance(args.pool, pool, result, seed=args.seed,
                      command=shlex.join(["optscale", *sys.argv[1:]]))
    if args.questions:
        prov["questions_selected"] = args.questions
    text = policy_text(result.policy, objective=objective.to_dict(), provenance=prov,
                       metrics=result.metrics())
    with open_output(args.output, "--output") as fh:
        fh.write(text)
    if note:
        print(note, file=sys.stderr)
    held, ins = result.heldout, result.in_sample
    cost = result.evaluation.cost_name
    if not ins["objective_met"]:  # the documented fallback, said out loud
        if objective.kind == "budget":
            print(f"optscale tune: no setting meets --token-budget {objective.value:g} "
                  f"(cheapest: {ins[cost]:,.1f} {cost} per question); wrote the cheapest",
                  file=sys.stderr)
        else:
            print(f"optscale tune: no setting reaches --target-accuracy {objective.value:g} "
                  f"(best: {100 * ins['accuracy']:.1f} %); wrote the most accurate",
                  file=sys.stderr)
    print(f"Tuned on {pool.size} questions x {args.orders} orders ({folds} folds, "
          f"{len(result.evaluation.settings)} settings) in {elapsed:.1f} s for "
          f"{objective.kind} = {objective.value:g}.")
    print(f"Policy: {result.method}: {result.setting}")
    print(f"        {result.policy.describe()}")
    print(f"Held out (each fold chose on the others): accuracy {100 * held['accuracy']:.1f} % "
          f"(std {100 * held['accuracy_std']:.1f} across orders; standard error "
          f"{100 * held['accuracy_se_questions']:.1f} over questions), {held[cost]:,.1f} {cost}, "
          f"{held['samples']:.2f} samples per question.")
    print(f"In sample (the written policy, all questions): accuracy {100 * ins['accuracy']:.1f} "
          f"%, {ins[cost]:,.1f} {cost}.")
    print(f"Wrote {args.output}", file=sys.stderr)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from optscale.replay._simulate import calibration_table, simulate_pool

    methods = _methods(args.methods, args.budgets, args)
    pool = simulate_pool(args.questions, args.samples, seed=args.seed)
    appendix = ("\n## Simulator calibration (target: published statistics; achieved: a "
                "40,000-question simulated pool)\n\n```\n" + calibration_table() + "\n```\n")
    return _run(pool, methods, args, "optscale demo: simulated MATH500-like pool", appendix)


def _cell(value: float, spec: str) -> str:
    import math

    return format(value, spec) if math.isfinite(value) else "n/a"


def _cmd_diagnose(args: argparse.Namespace) -> int:
    import numpy as np

    from optscale._policy import OptScale0
    from optscale.cli import CLIError, precision
    from optscale.replay._readers import load_pool

    pool = load_pool(args.pool, format=args.format, aggregate=args.aggregate)
    if np.any(pool.lengths < 1):
        raise CLIError(f"question {pool.ids[int(np.argmin(pool.lengths))]!r} of {args.pool} "
                       "has no scores")
    # an unscored sample (null score, NaN here) is left out of the fit, as in replay and tune
    mask = (np.arange(pool.scores.shape[1])[None, :] < pool.lengths[:, None]) \
        & np.isfinite(pool.scores)
    scored = mask.sum(axis=1)
    if not scored.any():
        raise CLIError(f"no question of {args.pool} has a scored sample (every score is null)")
    lo_score, hi_score = float(pool.scores[mask].min()), float(pool.scores[mask].max())
    low = min(0.0, lo_score) if args.low is None else args.low
    high = max(1.0, hi_score) if args.high is None else args.high
    if not low < high:
        raise CLIError(f"--low {low:g} must be below --high {high:g}")
    outside = mask & ((pool.scores < low) | (pool.scores > high))
    if outside.any():
        q, j = (int(v[0]) for v in np.nonzero(outside))
        raise CLIError(f"question {pool.ids[q]!r} has the score {pool.scores[q, j]:g} outside "
                       f"--low/--high [{low:g}, {high:g}]")
    with precision(np.float64):
        choice, gof = OptScale0(target=high, low=low, high=high).diagnose(
            np.where(mask, pool.scores, low), mask)
    names = choice.families
    info = np.asarray(choice.information, np.float64)  # [families, questions]
    pvalue = np.stack([np.asarray(gof[f].pvalue, np.float64) for f in names])
    fitted = np.isfinite(info) & np.isfinite(pvalue)  # [families, questions]
    widened = (args.low is None and lo_score < 0) or (args.high is None and hi_score > 1)
    why = ""
    if widened:
        extreme = np.nanargmax(np.abs(np.where(mask, pool.scores - 0.5, np.nan)))
        q, j = np.unravel_index(extreme, pool.scores.shape)
        why = (f" (widened from [0, 1] to hold the score {pool.scores[q, j]:g} of question "
               f"{pool.ids[q]!r})")
    if not fitted.any():
        raise CLIError(f"no family could be fitted to any question of {args.pool} on the score "
                       f"range [{low:g}, {high:g}]{why}; give the verifier's range with "
                       "--low/--high, or remove the outlying score")
    print(f"Score families on {args.pool} ({pool.size} questions; range [{low:g}, {high:g}]"
          f"{why}; BIC per question, lower is better; KS p-value of each fitted family, small = "
          "the family does not describe the scores; n/a = the fit failed)\n")
    print("| question | scores | chosen | " + " | ".join(f"BIC {f}" for f in names) + " | "
          + " | ".join(f"KS p {f}" for f in names) + " |")
    print("|---|---:|---|" + "---:|" * (2 * len(names)))
    chosen = []
    notes = []
    for q in range(pool.size):
        ok = fitted[:, q]
        best = names[int(np.argmin(np.where(ok, info[:, q], np.inf)))] if ok.any() else "n/a"
        chosen.append(best)
        bic = " | ".join(_cell(info[i, q], ".1f") if ok[i] else "n/a" for i in range(len(names)))
        ks = " | ".join(_cell(pvalue[i, q], ".2g") if ok[i] else "n/a" for i in range(len(names)))
        print(f"| {pool.ids[q]} | {scored[q]} | {best} | {bic} | {ks} |")
        if scored[q] < pool.lengths[q]:
            notes.append(f"- question {pool.ids[q]}: {pool.lengths[q] - scored[q]} of its "
                         f"{pool.lengths[q]} samples are unscored (null) and left out")
        if not ok.all() and scored[q]:
            failed = ", ".join(f for f, good in zip(names, ok, strict=True) if not good)
            scores = pool.scores[q, mask[q]]
            notes.append(f"- question {pool.ids[q]}: no finite fit for {failed} (its scores lie "
                         f"in [{scores.min():g}, {scores.max():g}] of the range [{low:g}, "
                         f"{high:g}])")
    counts = {f: chosen.count(f) for f in names}
    rejected = {f: float(np.mean(pvalue[i, fitted[i]] < args.alpha)) if fitted[i].any()
                else float("nan") for i, f in enumerate(names)}
    print("\nChosen by BIC: " + ", ".join(f"{f} {n}" for f, n in counts.items())
          + f". Rejected by KS at {args.alpha:g}: "
          + ", ".join(f"{f} {_cell(100 * r, '.0f')}{' %' if np.isfinite(r) else ''}"
                      for f, r in rejected.items())
          + " (of the questions it was fitted to).")
    if widened:
        notes.append(f"- the score range{why} is the same for every question: if that score is "
                     "an outlier, the other questions' fits are not meaningful; give the "
                     "verifier's range with --low/--high")
    if notes:
        print("\n" + "\n".join(notes))
    return 0


def _common(p: argparse.ArgumentParser, out: str) -> None:
    from optscale.cli import float_arg, int_arg, int_list_arg, output_dir

    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help=f"comma-separated, from {', '.join(METHOD_KEYS)} (default: "
                   f"{','.join(DEFAULT_METHODS)}; bon always runs)")
    p.add_argument("--budgets", type=int_list_arg(1), default=[8, 16, 32, 64],
                   help="maximum samples per question to compare at (default 8,16,32,64)")
    p.add_argument("--orders", type=int_arg(1), default=20,
                   help="random sample orders, >= 1 (default 20)")
    p.add_argument("--folds", type=int_arg(2), default=5,
                   help="calibration folds, >= 2 (default 5; lowered to the number of questions "
                   "when the pool has fewer)")
    _grids(p)
    p.add_argument("--tolerance", type=float_arg(0.0, 1.0, open_hi=True), default=0.0,
                   help="accuracy a chosen setting may give up against the reference on the "
                   "calibration folds, in [0, 1) (default 0)")
    p.add_argument("--reference", choices=REFERENCES,
                   help="what settings are chosen against: bon (Best-of-N; the default), sc "
                   "(majority vote; the default when the pool's scores mean nothing) or "
                   "best-fixed (the best of BoN, SC and weighted SC at each budget)")
    p.add_argument("--verifier-tokens", dest="verifier_tokens", type=float_arg(0.0),
                   default=0.0, help="cost of scoring one sample in output-token equivalents, "
                   "charged to methods that use the verifier (default 0)")
    p.add_argument("--seed", type=int_arg(0, 2**63 - 1), default=0)
    p.add_argument("--out", type=output_dir, default=out,
                   help=f"output folder (default {out}; not a symlink)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def _float_list(lo: float, hi: float):
    """An argparse type: comma-separated numbers, each in (lo, hi)."""
    from optscale.cli import float_arg

    one = float_arg(lo, hi, open_lo=True, open_hi=True)

    def parse(text: str) -> list[float]:
        parts = [p for p in text.split(",") if p.strip()]
        if not parts:
            raise argparse.ArgumentTypeError("expected comma-separated numbers")
        return [one(p) for p in parts]

    return parse


def _grids(p: argparse.ArgumentParser) -> None:
    from optscale.cli import int_list_arg

    p.add_argument("--esc-windows", dest="esc_windows", type=int_list_arg(1),
                   help="ESC's window grid (default 2,4,8)")
    p.add_argument("--asc-thresholds", dest="asc_thresholds",
                   type=_float_list(0.0, 1.0),
                   help="ASC's threshold grid, each in (0, 1) (default 0.9,0.95,0.99)")
    p.add_argument("--dsc-windows", dest="dsc_windows", type=int_list_arg(1),
                   help="DSC's window grid (default 2,4)")


def _pool_args(p: argparse.ArgumentParser) -> None:
    from optscale.cli import input_file

    p.add_argument("pool", type=input_file, help="pool file")
    p.add_argument("--questions", help="use only these questions: even, odd, first-half, "
                   "second-half, or a slice start:stop[:step] of their positions (to tune on "
                   "some and check on the others)")
    p.add_argument("--format", default="auto", choices=FORMATS,
                   help="auto (default), jsonl, npz, search-and-learn, ovm, optscale-ref")
    p.add_argument("--aggregate", default="last", choices=("min", "last", "prod", "mean"),
                   help="how per-step PRM scores become one score (default last)")


def add_commands(sub) -> None:
    """Register ``replay``, ``tune``, ``diagnose`` and ``demo`` on the ``optscale`` sub-command
    parser."""
    from optscale.cli import float_arg, input_file, int_arg, int_list_arg, output_file

    p = sub.add_parser("replay", help="evaluate methods on a stored completion pool",
                       description="Replay Best-of-N, self-consistency baselines and OptScale "
                       "policies on a completion pool (optscale JSONL, NPZ, search-and-learn, "
                       "OVM or OptScale-reference format) and write a report.")
    _pool_args(p)
    p.add_argument("--gold", type=input_file,
                   help="benchmark file with gold answers by position (JSON array or lines of "
                   "{problem|question, answer}), for pools that keep them apart, such as the "
                   "OptScale reference's")
    p.add_argument("--policy", type=input_file,
                   help="evaluate this policy file (optscale tune -o) as it is, without "
                   "tuning, beside Best-of-N and the votes at its budget")
    _common(p, "optscale-replay")
    p.set_defaults(func=_cmd_replay)

    p = sub.add_parser("tune", help="choose the policy for an objective on a pool",
                       description="Replay every method's grid on a completion pool under the "
                       "honest protocol (random orders, settings chosen on calibration folds) "
                       "and write the policy that best meets one objective: the cheapest "
                       "reaching --target-accuracy, the most accurate within --token-budget "
                       "(mean tokens per question; samples for pools without token counts), "
                       "or the best accuracy - --price x tokens (where no setting meets the "
                       "accuracy or the budget: the most accurate, or the cheapest, said on "
                       "stderr and in the file's metrics). The file records the pool's "
                       "hash and the held-out accuracy, with its spread, that the tuning "
                       "procedure achieved.")
    _pool_args(p)
    p.add_argument("--gold", type=input_file, help="benchmark file with gold answers (as for "
                   "replay)")
    p.add_argument("--output", "-o", type=output_file, required=True,
                   help="the policy file to write (JSON; not through a symlink)")
    p.add_argument("--target-accuracy", dest="target_accuracy",
                   type=float_arg(0.0, 1.0), help="objective: the cheapest setting at least "
                   "this accurate (a fraction in [0, 1])")
    p.add_argument("--token-budget", dest="token_budget", type=float_arg(0.0),
                   help="objective: the most accurate setting within this mean cost")
    p.add_argument("--price", type=float_arg(0.0),
                   help="objective: maximise accuracy - price x mean cost")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help=f"comma-separated, from {', '.join(METHOD_KEYS)}")
    p.add_argument("--budgets", type=int_list_arg(1), default=list(TUNE_BUDGETS),
                   help="maximum samples per question in the grids (default "
                   f"{','.join(map(str, TUNE_BUDGETS))})")
    _grids(p)
    p.add_argument("--orders", type=int_arg(1), default=20,
                   help="random sample orders, >= 1 (default 20)")
    p.add_argument("--folds", type=int_arg(2), default=5, help="folds, >= 2 (default 5)")
    p.add_argument("--verifier-tokens", dest="verifier_tokens", type=float_arg(0.0),
                   default=0.0, help="cost of scoring one sample in output-token equivalents")
    p.add_argument("--seed", type=int_arg(0, 2**63 - 1), default=0)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_tune)

    p = sub.add_parser("diagnose", help="which score family fits a pool's verifier scores",
                       description="Fit the truncated normal, Beta and two-component mixture to "
                       "every question's scores in a pool and print BIC and the KS goodness of "
                       "fit per family: whether the paper's truncated normal suits this "
                       "verifier, and which family= to give the policies. A fit that fails is "
                       "shown as n/a with a note; when none succeeds the command fails.")
    _pool_args(p)
    p.add_argument("--alpha", type=float_arg(0.0, 1.0, open_lo=True, open_hi=True),
                   default=0.05, help="KS level for the rejection summary (default 0.05)")
    p.add_argument("--low", type=float_arg(), help="lower end of the score range (default: 0, "
                   "or the lowest score if below)")
    p.add_argument("--high", type=float_arg(), help="upper end of the score range (default: 1, "
                   "or the highest score if above)")
    p.set_defaults(func=_cmd_diagnose)

    p = sub.add_parser("demo", help="replay the built-in simulated pool (no data needed)",
                       description="Generate the calibrated simulated pool (labelled as such), "
                       "replay every method on it and print the table.")
    p.add_argument("--questions", type=int_arg(2, 10**6), default=500,
                   help="default 500 (at least 2: settings are chosen on held-out folds)")
    p.add_argument("--samples", type=int_arg(1, 10**5), default=64,
                   help="samples per question (default 64)")
    _common(p, "optscale-demo")
    p.set_defaults(func=_cmd_demo)
