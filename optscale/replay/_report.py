"""Reports of an :class:`Evaluation`: a Markdown summary, CSV tables and PNG plots."""

from __future__ import annotations

import csv
import math
import os

import numpy as np

from optscale.replay._protocol import Evaluation

__all__ = ["markdown_summary", "write_report"]


def _pct(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{100 * x:.1f}"


def _num(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:,.0f}" if abs(x) >= 100 else f"{x:.2f}"


def markdown_summary(ev: Evaluation, title: str = "Replay") -> str:
    """The held-out table (one row per method and budget) with the protocol in a few lines."""
    cost = ev.cost_name
    lines = [f"# {title}", ""]
    if ev.simulated:
        lines += ["**SIMULATED POOL**: scores, answers and correctness come from optscale's "
                  "calibrated generator, not from a model. Numbers describe the simulator.", ""]
    folds = int(ev.folds.max()) + 1
    ref = {"bon": "Best-of-N", "sc": "majority vote", "best-fixed": "the best of Best-of-N, "
           "majority and weighted vote"}[ev.reference]
    lines += [f"{len(ev.folds)} questions x {ev.orders} random sample orders. Each method's "
              f"setting is chosen per budget on {folds - 1} of {folds} folds of questions (the "
              f"cheapest whose accuracy is at least {ref}'s at that budget"
              + (f" minus {100 * ev.tolerance:g} points" if ev.tolerance else "")
              + ") and reported on the held-out fold. Accuracy: mean (std across orders), %. "
              f"vs reference@budget: accuracy difference (points) and {cost} saved against "
              f"{ref} at the same budget. Matched: the cheapest fixed-N Best-of-N at most "
              f"{100 * ev.match_tolerance:g} points less accurate, and the {cost} saved "
              "against it (negative: BoN is cheaper)."
              + (f" Tokens include {ev.verifier_tokens:g} per sample scored by the verifier "
                 "(not charged to the self-consistency methods)." if ev.verifier_tokens else ""),
              ""]
    if not ev.bon_monotone:
        lines += ["**Best-of-N is not monotone in N on this pool** (a weak verifier: more "
                  "samples make its pick worse), so 'matched BoN N' (marked *) is a smaller N, "
                  "not a cheaper way to the same accuracy; read the matched columns with care.",
                  ""]
    for note in ev.notes:
        lines += [f"Note: {note}.", ""]
    head = ["method", "budget", "accuracy", "samples"]
    head += ["tokens"] if ev.has_tokens else []
    head += ["vs reference@budget", "matched BoN N", f"{cost} saved at matched accuracy",
             "chosen setting (folds)"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    flag = "" if ev.bon_monotone else "*"
    for s in sorted(ev.selected, key=lambda s: (s.budget, s.method != "BoN")):
        counts = {c: s.chosen.count(c) for c in dict.fromkeys(s.chosen)}
        top = max(counts, key=counts.get)
        text = top if len(counts) == 1 else \
            f"{top} ({counts[top]}/{len(s.chosen)}; {len(counts) - 1} other)"
        budget = f"{s.budget} (clipped to {ev.max_samples})" if s.clipped else str(s.budget)
        row = [s.method, budget, f"{_pct(s.accuracy)} ({_pct(s.accuracy_std)})",
               f"{s.samples:.2f}"]
        row += [_num(s.tokens)] if ev.has_tokens else []
        row += [f"{100 * s.gain:+.1f} pt, {_pct(s.saving)} %",
                f"{s.matched_n}{flag}" if s.matched_n else "none",
                "n/a" if math.isnan(s.reduction) else f"{_pct(s.reduction)} %{flag}", text]
        lines.append("| " + " | ".join(row) + " |")
    if ev.skipped:
        lines += [""] + [f"Not run: {name} ({why})." for name, why in ev.skipped.items()]
    return "\n".join(lines) + "\n"


def _write_csv(path: str, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_report(ev: Evaluation, out_dir: str, title: str = "Replay") -> list[str]:
    """Write ``report.md``, ``selected.csv``, ``settings.csv``, ``bon_curve.csv`` and, when
    matplotlib is installed, ``accuracy_vs_cost.png`` and ``samples_used.png`` into
    ``out_dir``. Returns the paths written."""
    os.makedirs(out_dir, exist_ok=True)
    written = []

    def path(name):
        written.append(os.path.join(out_dir, name))
        return written[-1]

    settings = ev.setting_table()
    with open(path("report.md"), "w") as fh:
        fh.write(markdown_summary(ev, title))
        fh.write("\n## Pareto frontier over all settings (all questions, no selection)\n\n")
        fh.write(f"| method | setting | accuracy % | {ev.cost_name} |\n|---|---|---|---|\n")
        for r in sorted((r for r in settings if r["pareto"]),
                        key=lambda r: r["tokens"] if ev.has_tokens else r["samples"]):
            fh.write(f"| {r['method']} | {r['setting']} | {_pct(r['accuracy'])} | "
                     f"{_num(r['tokens'] if ev.has_tokens else r['samples'])} |\n")
    _write_csv(path("selected.csv"), [
        dict(method=s.method, budget=s.budget, accuracy=s.accuracy,
             accuracy_std=s.accuracy_std, samples=s.samples, tokens=s.tokens,
             gain_vs_reference_at_budget=s.gain, saving_vs_reference_at_budget=s.saving,
             reference=ev.reference, clipped=s.clipped, bon_monotone=ev.bon_monotone,
             matched_bon_n=s.matched_n, saving_at_matched_accuracy=s.reduction,
             chosen=" | ".join(s.chosen), simulated=ev.simulated)
        for s in ev.selected])
    _write_csv(path("settings.csv"), [dict(r, simulated=ev.simulated) for r in settings])
    _write_csv(path("bon_curve.csv"), [
        dict(n=i + 1, accuracy=a, cost=c, cost_unit=ev.cost_name)
        for i, (a, c) in enumerate(zip(ev.bon_accuracy, ev.bon_cost, strict=True))])
    try:
        import matplotlib
    except ImportError:  # plots are optional: the tables carry the numbers
        return written
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    suffix = " (SIMULATED)" if ev.simulated else ""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(ev.bon_cost, 100 * ev.bon_accuracy, "-", color="0.6", lw=1, label="BoN, N = 1..M")
    methods = list(dict.fromkeys(s.method for s in ev.selected))
    colors = plt.cm.tab10(np.linspace(0, 1, 10))
    key = "tokens" if ev.has_tokens else "samples"
    for i, name in enumerate(methods):
        pts = [r for r in settings if r["method"] == name]
        ax.scatter([r[key] for r in pts], [100 * r["accuracy"] for r in pts], s=8, alpha=0.3,
                   color=colors[i % 10])
        sel = sorted((s for s in ev.selected if s.method == name), key=lambda s: s.budget)
        ax.plot([s.tokens if ev.has_tokens else s.samples for s in sel],
                [100 * s.accuracy for s in sel], "o-", color=colors[i % 10], label=name)
    ax.set_xscale("log")
    ax.set_xlabel(f"mean {ev.cost_name} per question")
    ax.set_ylabel("accuracy (%)")
    _finish(plt, fig, ax, f"Accuracy vs {ev.cost_name}: held-out (lines), all settings "
            f"(dots){suffix}", path("accuracy_vs_cost.png"))

    budget = max(s.budget for s in ev.selected)
    # fixed-N methods would be one bar at the budget: only adaptive ones are drawn
    sel = [s for s in ev.selected if s.budget == budget and np.ptp(s.n_used) > 0]
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.arange(1, budget + 2) - 0.5
    for s in sel:  # each method keeps its colour from the accuracy plot
        ax.hist(s.n_used.ravel(), bins=bins, histtype="step",
                color=colors[methods.index(s.method) % 10], label=s.method, density=True)
    ax.set_xlabel("samples used")
    ax.set_ylabel("fraction of (question, order)")
    _finish(plt, fig, ax, f"Samples used by adaptive methods at budget {budget} "
            f"(held-out){suffix}", path("samples_used.png"))
    return written


def _finish(plt, fig, ax, title: str, target: str) -> None:
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(target, dpi=120)
    plt.close(fig)
