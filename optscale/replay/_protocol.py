"""The evaluation protocol: random sample orders, settings chosen on calibration folds, reported
on held-out folds, compared with a reference method at the same budget and Best-of-N at matched
accuracy.

1. Every question's samples are replayed in R random orders (a method sees a prefix of one
   order). Accuracies are means over questions; the spread is the standard deviation of that
   mean across the R orders.
2. Questions are split into K folds. For each method and budget (its maximum number of samples)
   and each fold, the setting is chosen on the other K-1 folds: the cheapest (mean tokens, or
   samples when the pool has no token counts) whose calibration accuracy is at least the
   reference's at the same budget minus ``tolerance``; if none is, the most accurate. It is then
   scored on the held-out fold only. Every question is held out once, so the reported numbers
   cover the whole pool and no number is reported by the fold that chose its setting. A method
   that learns (the cost-aware rule's gain model) is fitted on the calibration folds of each
   fold, so its held-out numbers never saw the held-out questions' labels either; and the
   calibration numbers its settings are chosen by are cross-fitted (each calibration question
   replayed with a fit that saw neither the held-out fold nor that question's own fold; with
   two folds, its own half of its fold), so a trained setting competes on numbers as honest as
   an untrained one's (fitted and scored on the same questions, it looks better than it is:
   about half a point on HumanEval, where it then won choices it should not have).
3. The reference (``reference``): ``"bon"`` Best-of-N, ``"sc"`` majority vote, or
   ``"best-fixed"``, the most accurate of Best-of-N, majority and weighted vote at that budget
   on the calibration folds. Against it: the accuracy difference and the cost reduction
   1 - cost / its cost at the same budget. Against Best-of-N at matched accuracy: the cost
   reduction against the cheapest fixed N whose BoN accuracy is at least the method's held-out
   accuracy minus ``match_tolerance`` (default half a point); undefined when no N is that
   accurate, and flagged when the BoN curve is not monotone in N (a weak verifier: "matched"
   then means a smaller N, not a cheaper way to the same accuracy). Cost is output tokens (plus
   ``verifier_tokens`` per scored sample for settings that use the verifier), or samples.
4. Budgets above the pool's samples per question are clipped to it, and said so
   (``Evaluation.clipped``).
5. The Pareto frontier is over every setting's all-question numbers (a description of the grid,
   not a selection; a trained method's numbers are its held-out ones).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from optscale._selection import Selection
from optscale.replay._methods import Method, Rows, Setting, Tables
from optscale.replay._pool import Pool

__all__ = ["REFERENCES", "Evaluation", "Selected", "evaluate", "make_rows"]


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
    clipped: bool = False  # the budget exceeds the pool's samples per question


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
    reference: str = "bon"
    bon_monotone: bool = True
    max_samples: int = 0  # samples per question in the pool (budgets above it are clipped)
    notes: tuple[str, ...] = ()  # warnings: clipped budgets, skipped settings
    policies: tuple = ()  # the policy of each setting (a trained one before its fit)
    # per fold k: [S, Q, R] correct / cost as replayed with what fold k's calibration fitted
    # (the same arrays for every fold unless a method learns)
    fold_correct: tuple = ()
    fold_cost: tuple = ()
    # per fold k, for the trained settings only: (their indices [S_t], correct [S_t, Q, R],
    # cost [S_t, Q, R]) with every calibration question replayed by a fit that saw neither
    # fold k nor that question's own fold (empty when no method learns)
    fold_calibration: tuple = ()

    def calibration(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """What fold ``k``'s choice may read: every setting's accuracy on each calibration
        question (mean over orders) [S, Q_cal] and its mean cost over them [S]; a trained
        setting's are cross-fitted (see the module)."""
        return _calibration(self.folds, self.fold_correct, self.fold_cost,
                            self.fold_calibration, k)

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


def _calibration(fold_of, fold_correct, fold_cost, fold_calibration, k):
    cal = fold_of != k
    acc = fold_correct[k][:, cal].mean(axis=2)
    cost = fold_cost[k][:, cal].mean(axis=(1, 2))
    if fold_calibration:
        idx, correct, spent = fold_calibration[k]
        acc[idx] = correct[:, cal].mean(axis=2)
        cost[idx] = spent[:, cal].mean(axis=(1, 2))
    return acc, cost


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
    tokens = None if pool.tokens is None else pool.tokens[src, perm].astype(np.float64)
    rows = Rows(pool.scores[src, perm], pool.answers[src, perm],
                np.repeat(pool.lengths, orders), prior, tokens)
    return rows, pool.correct[src, perm], np.zeros((q * orders, m)) if tokens is None \
        else tokens


REFERENCES = ("bon", "sc", "best-fixed")


def evaluate(pool: Pool, methods: Sequence[Method], *, orders: int = 20, folds: int = 5,
             seed: int = 0, tolerance: float = 0.0, match_tolerance: float = 0.005,
             verifier_tokens: float = 0.0, reference: str | None = None,
             progress: bool = False) -> Evaluation:
    """Replay ``methods`` on ``pool`` under the protocol of the module docstring.

    Args:
        pool: a graded pool (``pool.correct`` set) whose questions each have >= 1 sample. A
            pool whose meta says ``scores_meaningless`` runs only the settings that do not read
            scores (votes), and its default reference is the majority vote.
        methods: the methods with their setting grids.
        orders: R random sample orders per question.
        folds: K calibration/held-out folds over questions (2 <= K <= Q).
        seed: seeds the orders and the fold split.
        tolerance: accuracy a chosen setting may give up against the reference at its budget
            on the calibration folds.
        match_tolerance: accuracy below the method's at which Best-of-N counts as matched.
        verifier_tokens: cost of scoring one sample, in output-token equivalents, added to
            the tokens of settings that use the verifier. Needs token counts.
        reference: what settings are chosen against (``REFERENCES``); default "bon", or "sc"
            for a pool with meaningless scores.
        progress: show a progress bar over methods.
    """
    _check_arguments(pool, orders, folds, tolerance, match_tolerance, verifier_tokens)
    meaningless = bool(pool.meta.get("scores_meaningless"))
    reference = reference or ("sc" if meaningless else "bon")
    if reference not in REFERENCES:
        raise ValueError(f"reference must be one of {REFERENCES}; got {reference!r}")
    q, m = pool.scores.shape
    rows, correct, tokens = make_rows(pool, orders, seed)
    cum_tokens = np.cumsum(tokens, axis=1)
    tables = Tables(rows)
    b = np.arange(q * orders)
    rng = np.random.default_rng(seed + 1)
    fold_of = rng.permutation(q) % folds
    # the inner groups a trained method is cross-fitted over: the other folds, or with two
    # folds each fold's two halves
    half = np.zeros(q, np.int64)
    for k in range(folds):
        half[fold_of == k] = np.arange(np.count_nonzero(fold_of == k)) % 2
    inner = fold_of if folds >= 3 else 2 * fold_of + half
    has_tokens = pool.tokens is not None
    max_samples = int(pool.lengths.max())

    def outcome(n_used, pick, verifier):
        """(correct, n, cost) arrays [S, Q, R] of replay results [S, B]."""
        spent = cum_tokens[b, n_used - 1] + verifier_tokens * verifier[:, None] * n_used
        cost = spent if has_tokens else n_used.astype(float)
        return (correct[b, pick].reshape(-1, q, orders), n_used.reshape(-1, q, orders),
                cost.reshape(-1, q, orders))

    settings: list[Setting] = []
    policies: list = []
    per_fold: list[list[tuple]] = []  # per method: K (correct, n, cost) triples
    trained: list[tuple] = []  # per trained method: (setting indices, K [correct, cost])
    skipped: dict[str, str] = {}
    notes: list[str] = []
    todo = list(methods)
    if progress:
        from tqdm.auto import tqdm
        todo = tqdm(todo, desc="replay", unit="method")
    for method in todo:
        if method.needs_prior() and pool.prior is None:
            skipped[method.name] = "the pool has no per-question prior"
            continue
        if meaningless and method.needs_scores():
            keep = ~method.verifier_mask()
            if not keep.any():
                skipped[method.name] = "its settings read scores, which mean nothing here"
                continue
            method = method.subset(keep)  # noqa: PLW2901
            notes.append(f"{method.name}: only the settings that read no scores (the pool's "
                         "scores mean nothing)")
        verifier = method.verifier_mask().astype(float)
        if method.trainable:
            def fit_without(out_q, m=method, v=verifier):
                """Fitted on the questions not in ``out_q`` ([Q] bool), replayed on every
                row; the pick and hold tables of all rows are computed once (``tables``) and
                cut for each fit."""
                keep = np.repeat(~out_q, orders)
                fitted = m.fitted(Rows(*(None if x is None else x[keep] for x in rows)),
                                  correct[keep], prefix=lambda sel, n_max, alpha: (
                                      tables.chosen(sel)[keep],
                                      tables.hold(sel, alpha, n_max)[keep]))
                return outcome(*fitted.replay(rows, tables), v)

            outs = [fit_without(fold_of == k) for k in range(folds)]
            # cross-fitted calibration numbers: fold k's choice reads each inner group of its
            # calibration questions as replayed by the fit without fold k and that group
            cal_view = [[a[0].copy(), a[2].copy()] for a in outs]
            serves: dict[bytes, list] = {}
            for k in range(folds):
                for g in np.unique(inner[fold_of != k]):
                    out_q = (fold_of == k) | (inner == g)
                    serves.setdefault(out_q.tobytes(), [out_q]).append((k, inner == g))
            crossed = True
            for out_q, *uses in serves.values():
                if out_q.all():  # nothing left to fit on: those numbers stay in-fit
                    crossed = False
                    continue
                c, _, spent = fit_without(out_q)
                for k, group in uses:
                    cal_view[k][0][:, group] = c[:, group]
                    cal_view[k][1][:, group] = spent[:, group]
            if not crossed:
                notes.append(f"{method.name}: too few questions to cross-fit all its "
                             "calibration numbers (some come from fits that saw them)")
            index = np.arange(len(settings), len(settings) + len(method.settings()))
            trained.append((index, cal_view))
        else:
            outs = [outcome(*method.replay(rows, tables), verifier)] * folds
        settings += method.settings()
        policies += list(getattr(method, "policies", [None] * len(method.settings())))
        per_fold.append(outs)
    if not settings:
        raise ValueError("no method could run on this pool: " + "; ".join(
            f"{k}: {v}" for k, v in skipped.items()))
    # per fold, [S, Q, R] by stacking methods along S (one array for every fold unless a
    # method was fitted per fold)
    shared = all(outs[k] is outs[0] for outs in per_fold for k in range(folds))
    stacked = [tuple(np.concatenate([outs[k][j] for outs in per_fold]) for j in range(3))
               for k in range(1 if shared else folds)]
    stacked = stacked * folds if shared else stacked
    fold_correct, fold_n, fold_cost = ([v[j] for v in stacked] for j in range(3))
    # all-question arrays: each question from its own fold's (held-out) replay
    correct_s, n_s, cost_s = (v[0].copy() for v in (fold_correct, fold_n, fold_cost))
    for k in range(1, folds):
        test = fold_of == k
        for whole, part in ((correct_s, fold_correct), (n_s, fold_n), (cost_s, fold_cost)):
            if part[k] is not part[0]:
                whole[:, test] = part[k][:, test]
    tokens_s = cost_s if has_tokens else np.full(n_s.shape, np.nan)
    fold_calibration = tuple(
        (np.concatenate([ix for ix, _ in trained]),
         np.concatenate([view[k][0] for _, view in trained]),
         np.concatenate([view[k][1] for _, view in trained])) for k in range(folds)
    ) if trained else ()
    # a trained setting's row in fold_calibration's arrays
    trained_row = {int(i): r for r, i in enumerate(fold_calibration[0][0])} if trained else {}

    # fixed-N baselines at every N = 1..M (no hyper-parameters: all questions)
    n_all = np.minimum(np.arange(1, m + 1)[:, None], rows.lengths[None, :])  # [M, B]
    fixed = {}
    for name, sel in (("bon", Selection("max")), ("sc", Selection("vote")),
                      ("wsc", Selection("weighted"))):
        chosen = tables.chosen(sel)
        fixed[name] = correct[b[None, :], chosen[b[None, :], n_all - 1]].reshape(m, q, orders)
    bon_cost = (cum_tokens[b[None, :], n_all - 1] + verifier_tokens * n_all if has_tokens
                else n_all.astype(float))
    bon_accuracy = fixed["bon"].mean(axis=(1, 2))
    bon_cost_mean = bon_cost.mean(axis=1)
    bon_monotone = bool(np.all(np.diff(bon_accuracy) >= -1e-12))
    ref_q = {name: v.mean(axis=2) for name, v in fixed.items()}  # [M, Q]
    ref_cost = bon_cost.reshape(m, q, orders).mean(axis=2)  # [M, Q]

    def reference_accuracy(at: int, mask: np.ndarray) -> float:
        if reference == "best-fixed":
            return max(float(ref_q[k][at, mask].mean()) for k in ref_q
                       if not (meaningless and k != "sc"))
        return float(ref_q[reference][at, mask].mean())

    clipped = sorted({s.budget for s in settings if s.budget > max_samples})
    if clipped:
        notes.append(f"budget(s) {', '.join(map(str, clipped))} exceed the pool's "
                     f"{max_samples} samples per question: clipped to {max_samples} (rows "
                     "marked 'clipped')")
    selected = []
    for name in dict.fromkeys(s.method for s in settings):
        for budget in sorted({s.budget for s in settings if s.method == name}):
            idx = [i for i, s in enumerate(settings) if s.method == name and s.budget == budget]
            at = min(budget, m) - 1
            held_correct = np.zeros((q, orders), bool)
            held_n = np.zeros((q, orders), np.int64)
            held_cost = np.zeros((q, orders))
            chosen = []
            for k in range(folds):
                cal, test = fold_of != k, fold_of == k
                if idx[0] in trained_row:  # (a method's settings are all trained or none)
                    _, c, spent = fold_calibration[k]
                    at_rows = [trained_row[i] for i in idx]
                    acc = c[at_rows][:, cal].mean(axis=(1, 2))
                    cost = spent[at_rows][:, cal].mean(axis=(1, 2))
                else:
                    acc = fold_correct[k][idx][:, cal].mean(axis=(1, 2))
                    cost = fold_cost[k][idx][:, cal].mean(axis=(1, 2))
                ok = acc >= reference_accuracy(at, cal) - tolerance - 1e-12
                pick = np.argmin(np.where(ok, cost, np.inf)) if ok.any() else \
                    np.lexsort((cost, -acc))[0]
                i = idx[pick]
                chosen.append(settings[i].label)
                held_correct[test] = fold_correct[k][i, test]
                held_n[test] = fold_n[k][i, test]
                held_cost[test] = fold_cost[k][i, test]
            per_order = held_correct.mean(axis=0)
            accuracy = float(per_order.mean())
            cost = float(held_cost.mean())
            ref_acc = reference_accuracy(at, np.ones(q, bool))
            ref_c = float(ref_cost[at].mean())
            reach = np.flatnonzero(bon_accuracy >= accuracy - match_tolerance - 1e-12)
            matched = int(reach[np.argmin(bon_cost_mean[reach])]) + 1 if reach.size else 0
            reduction = 1.0 - cost / bon_cost_mean[matched - 1] if matched else np.nan
            selected.append(Selected(
                name, budget, tuple(chosen), accuracy, float(per_order.std()),
                float(held_n.mean()), cost if has_tokens else np.nan, cost,
                accuracy - ref_acc, 1.0 - cost / ref_c, matched, float(reduction), held_n,
                budget > max_samples))
    return Evaluation(settings, correct_s, n_s, tokens_s, bon_accuracy, bon_cost_mean, fold_of,
                      selected, skipped, pool.simulated, has_tokens, orders, tolerance,
                      match_tolerance, verifier_tokens, reference, bon_monotone, max_samples,
                      tuple(notes), tuple(policies), tuple(fold_correct), tuple(fold_cost),
                      fold_calibration)


def _check_arguments(pool, orders, folds, tolerance, match_tolerance, verifier_tokens):
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
