"""The evaluation protocol: random sample orders, settings chosen on calibration folds, reported
on held-out folds, compared with Best-of-N at matched accuracy.

1. Every question's samples are replayed in R random orders (a method sees a prefix of one
   order). Accuracies are means over questions; the spread is the standard deviation of that
   mean across the R orders.
2. Questions are split into K folds. For each method and budget (its maximum number of samples)
   and each fold, the setting is chosen on the other K-1 folds: the cheapest (mean tokens, or
   samples when the pool has no token counts) whose calibration accuracy is at least Best-of-N's
   at the same budget minus ``tolerance``; if none is, the most accurate. It is then scored on
   the held-out fold only. Every question is held out once, so the reported numbers cover the
   whole pool and no number is reported by the fold that chose its setting.
3. Against Best-of-N (all questions, all orders; it has no hyper-parameters): at the same
   budget, the accuracy difference and the cost reduction 1 - cost / cost of BoN(budget); at
   matched accuracy, the cost reduction against the cheapest fixed N whose BoN accuracy is at
   least the method's held-out accuracy minus ``match_tolerance`` (default half a point: BoN
   curves flatten, and without a tolerance a difference far inside the sampling noise decides
   which N is "matched"); undefined when no N is that accurate. Cost is output tokens (plus
   ``verifier_tokens`` per scored sample for methods that use the verifier), or samples when
   the pool has no token counts.
4. The Pareto frontier is over every setting's all-question numbers (a description of the grid,
   not a selection).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from optscale.replay._methods import Method, Rows, Setting
from optscale.replay._pool import Pool
from optscale.replay._prefix import prefix_tables

__all__ = ["Evaluation", "Selected", "evaluate", "make_rows"]


@dataclasses.dataclass(frozen=True)
class Selected:
    """A method at one budget after selection: held-out numbers over all questions."""

    method: str
    budget: int
    chosen: tuple[str, ...]  # the setting chosen for each fold
    accuracy: float
    accuracy_std: float  # across sample orders
    samples: float
    tokens: float  # NaN when the pool has no token counts
    cost: float  # tokens, or samples without token counts
    gain: float  # accuracy minus BoN's at the same budget
    saving: float  # 1 - cost / BoN's cost at the same budget
    matched_n: int  # the cheapest BoN N at matched accuracy (0: none)
    reduction: float  # 1 - cost / BoN(matched_n)'s cost (NaN: none)
    n_used: np.ndarray  # [Q, R], for histograms


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Everything :func:`evaluate` measured (arrays over settings S, questions Q, orders R)."""

    settings: list[Setting]
    correct: np.ndarray  # [S, Q, R] bool
    n_used: np.ndarray  # [S, Q, R]
    tokens: np.ndarray  # [S, Q, R] float, NaN without token counts
    bon_accuracy: np.ndarray  # [M] Best-of-N accuracy at N = 1..M (all questions)
    bon_cost: np.ndarray  # [M] its mean tokens (or samples)
    folds: np.ndarray  # [Q]
    selected: list[Selected]
    skipped: dict[str, str]  # method -> why it was not run
    simulated: bool
    has_tokens: bool
    orders: int
    tolerance: float
    match_tolerance: float
    verifier_tokens: float

    @property
    def cost_name(self) -> str:
        return "tokens" if self.has_tokens else "samples"

    def setting_table(self) -> list[dict]:
        """One row per setting: all-question means, spread and Pareto membership."""
        acc = self.correct.mean(axis=1)  # [S, R]
        cost = (self.tokens if self.has_tokens else self.n_used).mean(axis=(1, 2))
        mean_acc = acc.mean(axis=1)
        frontier = _pareto(mean_acc, cost)
        return [dict(method=s.method, setting=s.label, budget=s.budget,
                     accuracy=float(mean_acc[i]), accuracy_std=float(acc[i].std()),
                     samples=float(self.n_used[i].mean()),
                     tokens=float(np.nanmean(self.tokens[i])) if self.has_tokens else np.nan,
                     pareto=bool(frontier[i]))
                for i, s in enumerate(self.settings)]


def _pareto(accuracy: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """True where no other point is at least as accurate and cheaper (or as cheap and more
    accurate)."""
    a, c = accuracy[:, None], cost[:, None]
    dominated = ((accuracy[None, :] >= a) & (cost[None, :] < c)) | \
                ((accuracy[None, :] > a) & (cost[None, :] <= c))
    return ~dominated.any(axis=1)


def make_rows(pool: Pool, orders: int, seed: int) -> tuple[Rows, np.ndarray, np.ndarray]:
    """Rows for R random orders of every question (question-major: row q * R + r), with the
    matching correctness [B, M] and output tokens [B, M] (zeros without counts)."""
    rng = np.random.default_rng(seed)
    q, m = pool.scores.shape
    keys = rng.random((q, orders, m))
    keys[np.broadcast_to(np.arange(m) >= pool.lengths[:, None, None], keys.shape)] = np.inf
    perm = np.argsort(keys, axis=2).reshape(q * orders, m)
    src = np.repeat(np.arange(q), orders)[:, None]
    prior = None if pool.prior is None else np.repeat(pool.prior, orders, axis=0)
    rows = Rows(pool.scores[src, perm], pool.answers[src, perm],
                np.repeat(pool.lengths, orders), prior)
    tokens = np.zeros((q * orders, m)) if pool.tokens is None else pool.tokens[src, perm]
    return rows, pool.correct[src, perm], tokens


def evaluate(pool: Pool, methods: Sequence[Method], *, orders: int = 20, folds: int = 5,
             seed: int = 0, tolerance: float = 0.0, match_tolerance: float = 0.005,
             verifier_tokens: float = 0.0, progress: bool = False) -> Evaluation:
    """Replay ``methods`` on ``pool`` under the protocol of the module docstring.

    Args:
        pool: a graded pool (``pool.correct`` set) whose questions each have >= 1 sample.
        methods: the methods with their setting grids.
        orders: R random sample orders per question.
        folds: K calibration/held-out folds over questions (2 <= K <= Q).
        seed: seeds the orders and the fold split.
        tolerance: accuracy a chosen setting may give up against Best-of-N at its budget on
            the calibration folds.
        match_tolerance: accuracy below the method's at which Best-of-N counts as matched.
        verifier_tokens: cost of scoring one sample, in output-token equivalents, added to
            the tokens of methods that use the verifier (Best-of-N, weighted vote, OptScale;
            not the self-consistency methods). Needs token counts.
        progress: show a progress bar over methods.
    """
    if pool.correct is None:
        raise ValueError("pool has no correctness labels: load it with gold answers so that "
                         "it can be graded")
    if pool.size == 0 or np.any(pool.lengths < 1):
        raise ValueError("pool: every question needs at least one sample")
    for name, value in (("orders", orders), ("folds", folds)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name} must be an integer; got {value!r}")
    if orders < 1:
        raise ValueError(f"orders must be >= 1; got {orders}")
    if pool.size < 2:
        raise ValueError(f"folds: held-out evaluation needs at least 2 questions; the pool has "
                         f"{pool.size}")
    if not 2 <= folds <= pool.size:
        raise ValueError(f"folds must lie in [2, number of questions = {pool.size}]; got {folds} "
                         f"(with {pool.size} questions, use folds={min(max(folds, 2), pool.size)})")
    for name, value in (("tolerance", tolerance), ("match_tolerance", match_tolerance)):
        if not 0 <= value < 1:
            raise ValueError(f"{name} must lie in [0, 1); got {value}")
    if not verifier_tokens >= 0 or (verifier_tokens and pool.tokens is None):
        raise ValueError(f"verifier_tokens must be >= 0 and needs a pool with token counts; "
                         f"got {verifier_tokens}")
    q, m = pool.scores.shape
    rows, correct, tokens = make_rows(pool, orders, seed)
    cum_tokens = np.cumsum(tokens, axis=1)
    prefix = prefix_tables(rows.scores, rows.answers)
    b = np.arange(q * orders)

    settings: list[Setting] = []
    out_correct, out_n, out_tokens = [], [], []
    skipped: dict[str, str] = {}
    todo = list(methods)
    if progress:
        from tqdm.auto import tqdm
        todo = tqdm(todo, desc="replay", unit="method")
    for method in todo:
        if method.needs_prior() and pool.prior is None:
            skipped[method.name] = "the pool has no per-question prior"
            continue
        n_used, pick = method.replay(rows, prefix)
        settings += method.settings()
        out_correct.append(correct[b, pick].reshape(-1, q, orders))
        out_n.append(n_used.reshape(-1, q, orders))
        spent = cum_tokens[b, n_used - 1] + verifier_tokens * method.uses_verifier * n_used
        out_tokens.append(spent.reshape(-1, q, orders))
    correct_s = np.concatenate(out_correct)
    n_s = np.concatenate(out_n)
    has_tokens = pool.tokens is not None
    tokens_s = np.concatenate(out_tokens) if has_tokens else np.full(n_s.shape, np.nan)
    cost_s = tokens_s if has_tokens else n_s.astype(float)

    # Best-of-N at every N = 1..M (no hyper-parameters: all questions)
    n_all = np.minimum(np.arange(1, m + 1)[:, None], rows.lengths[None, :])  # [M, B]
    bon_correct = correct[b[None, :], prefix.best[b[None, :], n_all - 1]]
    bon_cost = cum_tokens[b[None, :], n_all - 1] + verifier_tokens * n_all if has_tokens \
        else n_all.astype(float)
    bon_accuracy = bon_correct.mean(axis=1)
    bon_cost_mean = bon_cost.mean(axis=1)
    bon_q = bon_correct.reshape(m, q, orders).mean(axis=2)  # [M, Q] for calibration

    rng = np.random.default_rng(seed + 1)
    fold_of = rng.permutation(q) % folds
    selected = []
    for name in dict.fromkeys(s.method for s in settings):
        for budget in sorted({s.budget for s in settings if s.method == name}):
            idx = [i for i, s in enumerate(settings) if s.method == name and s.budget == budget]
            held_correct = np.zeros((q, orders), bool)
            held_n = np.zeros((q, orders), np.int64)
            held_cost = np.zeros((q, orders))
            held_tokens = np.full((q, orders), np.nan)
            chosen = []
            for k in range(folds):
                cal, test = fold_of != k, fold_of == k
                acc = correct_s[idx][:, cal].mean(axis=(1, 2))
                cost = cost_s[idx][:, cal].mean(axis=(1, 2))
                ref = bon_q[min(budget, m) - 1, cal].mean()
                ok = acc >= ref - tolerance - 1e-12
                pick = np.argmin(np.where(ok, cost, np.inf)) if ok.any() else \
                    np.lexsort((cost, -acc))[0]
                i = idx[pick]
                chosen.append(settings[i].label)
                held_correct[test] = correct_s[i, test]
                held_n[test] = n_s[i, test]
                held_cost[test] = cost_s[i, test]
                held_tokens[test] = tokens_s[i, test]
            per_order = held_correct.mean(axis=0)
            accuracy = float(per_order.mean())
            cost = float(held_cost.mean())
            at = min(budget, m) - 1
            reach = np.flatnonzero(bon_accuracy >= accuracy - match_tolerance - 1e-12)
            matched = int(reach[np.argmin(bon_cost_mean[reach])]) + 1 if reach.size else 0
            reduction = 1.0 - cost / bon_cost_mean[matched - 1] if matched else np.nan
            selected.append(Selected(
                name, budget, tuple(chosen), accuracy, float(per_order.std()),
                float(held_n.mean()), float(np.nanmean(held_tokens)) if has_tokens else np.nan,
                cost, accuracy - float(bon_accuracy[at]), 1.0 - cost / bon_cost_mean[at],
                matched, float(reduction), held_n))
    return Evaluation(settings, correct_s, n_s, tokens_s, bon_accuracy, bon_cost_mean, fold_of,
                      selected, skipped, pool.simulated, has_tokens, orders, tolerance,
                      match_tolerance, verifier_tokens)
