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
    # (the all-question arrays for every fold unless a method learns; stacked on first use)
    fold_correct: Sequence = ()
    fold_cost: Sequence = ()
    # per fold k, for the trained settings only: (their indices [S_t], correct [S_t, Q, R],
    # cost [S_t, Q, R]) with every calibration question replayed by a fit that saw neither
    # fold k nor that question's own fold (empty when no method learns)
    fold_calibration: tuple = ()

    def calibration(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """What fold ``k``'s choice may read: every setting's accuracy on each calibration
        question (mean over orders) [S, Q_cal] and its mean cost over them [S]; a trained
        setting's are cross-fitted (see the module)."""
        correct, cost = _calibration_arrays(self.fold_correct, self.fold_cost,
                                            self.fold_calibration, k,
                                            np.arange(len(self.settings)))
        cal = self.folds != k
        return correct[:, cal].mean(axis=2), cost[:, cal].mean(axis=(1, 2))

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


class _PerFold(Sequence):
    """Per fold k, the [S, Q, R] array of one replay outcome as replayed with fold k's fit:
    the all-question array but in the rows of the methods fitted per fold, made on first
    use; evaluating reads a few settings at a time (:meth:`take`), so that the K full arrays
    are made only for a caller that asks."""

    def __init__(self, whole: np.ndarray, learned: list[tuple[slice, list[tuple]]], j: int,
                 folds: int) -> None:
        self._whole, self._learned, self._j, self._folds = whole, learned, j, folds
        self._made: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self._folds

    def __getitem__(self, k):  # type: ignore[override]
        if isinstance(k, slice):
            return tuple(self[i] for i in range(self._folds)[k])
        k = range(self._folds)[k]
        if not self._learned:  # every fold replayed alike
            return self._whole
        if k not in self._made:
            made = self._whole.copy()
            for block, outs in self._learned:
                made[block] = outs[k][self._j]
            self._made[k] = made
        return self._made[k]

    def take(self, k: int, idx: Sequence[int]) -> np.ndarray:
        """``self[k][idx]``, without making ``self[k]``."""
        if k in self._made:
            return self._made[k][idx]
        idx = np.asarray(idx, np.int64)
        out = self._whole[idx]
        for block, outs in self._learned:
            inside = (idx >= block.start) & (idx < block.stop)
            if inside.any():
                out[inside] = outs[k][self._j][idx[inside] - block.start]
        return out


def _calibration_arrays(fold_correct: Sequence, fold_cost: Sequence, fold_calibration: tuple,
                        k: int, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The [len(idx), Q, R] correct and cost arrays (copies) of settings ``idx`` whose
    calibration questions fold ``k``'s choice reads: fold ``k``'s replay, but a trained
    setting's cross-fitted one (``fold_calibration``); fold ``k``'s full arrays are not made."""
    def take(per_fold):
        return per_fold.take(k, idx) if isinstance(per_fold, _PerFold) else per_fold[k][idx]

    correct, cost = take(fold_correct), take(fold_cost)
    if fold_calibration:
        trained, t_correct, t_cost = fold_calibration[k]  # (trained: increasing)
        at = np.minimum(np.searchsorted(trained, idx), len(trained) - 1)
        hit = trained[at] == idx
        correct[hit], cost[hit] = t_correct[at[hit]], t_cost[at[hit]]
    return correct, cost


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

    settings: list[Setting] = []
    policies: list = []
    skipped: dict[str, str] = {}
    notes: list[str] = []
    runs: list[tuple[Method, slice]] = []  # with its rows in the settings
    for method in methods:
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
        runs.append((method, slice(len(settings), len(settings) + len(method.settings()))))
        settings += method.settings()
        policies += list(getattr(method, "policies", [None] * len(method.settings())))
    if not settings:
        raise ValueError("no method could run on this pool: " + "; ".join(
            f"{k}: {v}" for k, v in skipped.items()))

    # all-question arrays [S, Q, R], methods stacked along S: each question from its own
    # fold's (held-out) replay (only a method fitted per fold differs between folds)
    shape = (len(settings), q, orders)
    correct_s, n_s, cost_s = np.empty(shape, bool), np.empty(shape, np.int64), np.empty(shape)
    start_of = b * m  # flat position of each row's first sample (gathers by flat index)

    def outcome(n_used, pick, verifier, out=None, at=None):
        """(correct, n, cost) arrays [S, Q, R] of replay results [S, B] (into ``out``); of
        the rows ``at`` ([B] bool, whole questions) only, when given."""
        starts = start_of if at is None else start_of[at]
        size = (len(n_used), len(starts) // orders, orders)
        c, n, cost = out or (np.empty(size, bool), np.empty(size, np.int64), np.empty(size))
        np.take(correct, pick + starts, out=c.reshape(len(n_used), -1))
        n[...] = n_used.reshape(size)
        if not has_tokens:
            cost[...] = n
        else:
            np.take(cum_tokens, n_used - 1 + starts, out=cost.reshape(len(n_used), -1))
            if verifier_tokens:
                cost += verifier_tokens * verifier[:, None, None] * n
        return c, n, cost

    # the cross-fitted calibration view of the trained settings (fold_calibration), filled
    # in place: per fold k, [S_t, Q, R] correct and cost
    trained = np.concatenate([np.arange(block.start, block.stop) for method, block in runs
                              if method.trainable] + [np.zeros(0, np.int64)])
    cal_correct = np.empty((folds, len(trained), q, orders), bool)
    cal_cost = np.empty((folds, len(trained), q, orders))
    learned: list[tuple[slice, list[tuple]]] = []  # per method fitted per fold: K outcomes
    t_start = 0
    todo = runs
    if progress:
        from tqdm.auto import tqdm
        todo = tqdm(todo, desc="replay", unit="method")
    for method, block in todo:
        verifier = method.verifier_mask().astype(float)
        whole = (correct_s[block], n_s[block], cost_s[block])
        if not method.trainable:
            outcome(*method.replay(rows, tables), verifier, whole)
            continue

        def fit_without(out_q, at_q=None, method=method, verifier=verifier):
            """``method`` fitted on the questions not in ``out_q`` ([Q] bool), its outcome
            on the questions ``at_q`` (all when None): the tables of every row are computed
            once (``tables``), and each fit and replay reads its rows' cut of them."""
            keep = np.repeat(~out_q, orders)
            cal = tables.subset(keep)
            fitted = method.fitted(cal.rows, correct[keep], cal)
            if at_q is None:
                return outcome(*fitted.replay(rows, tables), verifier)
            at = np.repeat(at_q, orders)
            sub = tables.subset(at)
            return outcome(*fitted.replay(sub.rows, sub), verifier, at=at)

        outs = [fit_without(fold_of == k) for k in range(folds)]
        for j, part in enumerate(whole):
            part[...] = outs[0][j]
            for k in range(1, folds):
                part[:, fold_of == k] = outs[k][j][:, fold_of == k]
        learned.append((block, outs))
        # cross-fitted calibration numbers: fold k's choice reads each inner group of its
        # calibration questions as replayed by the fit without fold k and that group (one fit
        # serves every (fold, group) with the same questions left out, replayed on those
        # groups only)
        t_block = slice(t_start, t_start + len(method.settings()))
        t_start = t_block.stop
        for k in range(folds):
            cal_correct[k, t_block], cal_cost[k, t_block] = outs[k][0], outs[k][2]
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
            at_q = np.logical_or.reduce([group for _, group in uses])
            c, _, spent = fit_without(out_q, at_q)
            for k, group in uses:
                cal_correct[k, t_block][:, group] = c[:, group[at_q]]
                cal_cost[k, t_block][:, group] = spent[:, group[at_q]]
        if not crossed:
            notes.append(f"{method.name}: too few questions to cross-fit all its "
                         "calibration numbers (some come from fits that saw them)")
    fold_correct = _PerFold(correct_s, learned, 0, folds)
    fold_cost = _PerFold(cost_s, learned, 2, folds)
    tokens_s = cost_s if has_tokens else np.full(n_s.shape, np.nan)
    fold_calibration = tuple((trained, cal_correct[k], cal_cost[k]) for k in range(folds)) \
        if len(trained) else ()

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
                c, spent = _calibration_arrays(fold_correct, fold_cost, fold_calibration, k,
                                               np.asarray(idx))
                acc = c[:, cal].mean(axis=(1, 2))
                cost = spent[:, cal].mean(axis=(1, 2))
                ok = acc >= reference_accuracy(at, cal) - tolerance - 1e-12
                pick = np.argmin(np.where(ok, cost, np.inf)) if ok.any() else \
                    np.lexsort((cost, -acc))[0]
                i = idx[pick]
                chosen.append(settings[i].label)
                held_correct[test] = correct_s[i, test]  # (fold k's replay, as held out)
                held_n[test] = n_s[i, test]
                held_cost[test] = cost_s[i, test]
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
                      tuple(notes), tuple(policies), fold_correct, fold_cost,
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
