"""``tune``: choose one policy for an objective on a user's own pool, honestly.

Every method's settings are replayed under :func:`~optscale.replay.evaluate`'s protocol (R
random orders, K folds of questions). An objective picks one setting from *all* of them:

- ``Objective("accuracy", 0.40)``: the cheapest setting whose accuracy is at least 40 %;
  if none is, the most accurate;
- ``Objective("budget", 1200)``: the most accurate setting whose mean cost (tokens, or samples
  without token counts) is at most 1,200; if none is, the cheapest. Among the settings within
  budget whose accuracy is statistically indistinguishable from the best one's (the paired
  difference over questions within one standard error), it takes the one that spends the most:
  with thousands of settings on a few dozen questions the single most accurate one is mostly
  the luckiest (on HumanEval dev the plain maximum loses 1.1 points held out at a 3,500-token
  budget), and spending the budget the user offered is the robust way to break such a tie;
- ``Objective("price", 1e-4)``: the setting maximising accuracy - price x cost.

Where no setting meets an accuracy or budget objective, the fallback is recorded:
``in_sample["objective_met"]`` (for the written policy, chosen on all questions) and
``heldout["objective_met_per_fold"]`` are False, and ``optscale tune`` says so on stderr.

Reported numbers are cross-validated: for each fold the objective chooses on the other folds
and the choice is scored on the held-out fold (a cost-aware rule's gain model is fitted on the
calibration folds too, and the calibration numbers it competes on are cross-fitted:
:meth:`~optscale.replay.Evaluation.calibration`), so they estimate what the *tuning
procedure* delivers on questions it did not see, with two spreads: across sample orders
(``accuracy_std``: what re-running the same questions may change) and the standard error
over questions (``accuracy_se_questions``: what a new set of questions from the same source
may change; usually far larger). The policy returned is the objective's choice on all
questions (a gain model fitted on all of them): it is what ``-o`` writes.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
from collections.abc import Sequence

import numpy as np

from optscale.policies import CostAware, GainModel, Policy
from optscale.replay._methods import Method
from optscale.replay._pool import Pool
from optscale.replay._protocol import Evaluation, evaluate, make_rows

__all__ = ["OBJECTIVES", "Objective", "TuneResult", "choose", "pool_digest", "provenance", "tune"]

OBJECTIVES = ("accuracy", "budget", "price")


@dataclasses.dataclass(frozen=True)
class Objective:
    """What to tune for (see the module): ``kind`` in OBJECTIVES and its ``value``."""

    kind: str
    value: float

    def __post_init__(self) -> None:
        if self.kind not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}; got {self.kind!r}")
        v = float(self.value)
        if not np.isfinite(v) or v < 0 or (self.kind == "accuracy" and v > 1):
            raise ValueError(f"objective {self.kind}: value must be finite and >= 0 (an "
                             f"accuracy in [0, 1]); got {self.value!r}")

    def choose(self, accuracy: np.ndarray, cost: np.ndarray) -> int:
        """Index of the chosen setting. ``accuracy``: [S] mean accuracies, or [S, Q] per
        question (needed for the budget objective's tie rule); ``cost``: [S] (ties: cheaper,
        then earlier)."""
        per_question = np.ascontiguousarray(accuracy, np.float64)
        if per_question.ndim == 1:
            per_question = per_question[:, None]
        # rounded: settings equally accurate on these questions compare equal whatever the
        # order of the floating-point sums (ties then go by cost and position, as documented)
        accuracy = np.round(per_question.mean(axis=1), 12)
        cost = np.asarray(cost, np.float64)
        order = np.lexsort((np.arange(len(cost)), cost))  # by cost, then position
        if self.kind == "accuracy":
            ok = accuracy[order] >= self.value - 1e-12
            return int(order[np.argmax(ok)]) if ok.any() else int(
                np.lexsort((cost, -accuracy))[0])
        if self.kind == "budget":
            ok = cost[order] <= self.value + 1e-9
            if not ok.any():
                return int(order[0])
            inside = order[ok]
            best = inside[np.argmax(accuracy[inside])]
            diff = per_question[best][None, :] - per_question[inside]
            se = diff.std(axis=1) / np.sqrt(diff.shape[1])
            tied = inside[np.round(diff.mean(axis=1), 12) <= se + 1e-12]
            return int(tied[np.argmax(cost[tied])])  # (argmax: the first of equal costs)
        gain = accuracy - self.value * cost
        return int(order[np.argmax(gain[order])])

    def met(self, accuracy: np.ndarray, cost: np.ndarray) -> bool:
        """Whether some setting meets the objective (:meth:`choose` falls back to the most
        accurate or the cheapest where none does; a price is always met). Same arguments."""
        if self.kind == "accuracy":
            mean = np.asarray(accuracy, np.float64)
            mean = mean.mean(axis=1) if mean.ndim == 2 else mean
            return bool(np.any(np.round(mean, 12) >= self.value - 1e-12))
        if self.kind == "budget":
            return bool(np.any(np.asarray(cost, np.float64) <= self.value + 1e-9))
        return True

    def to_dict(self) -> dict:
        unit = {"accuracy": "accuracy", "budget": "mean cost per question",
                "price": "accuracy per unit of cost"}[self.kind]
        return {"kind": self.kind, "value": float(self.value), "unit": unit}


@dataclasses.dataclass(frozen=True)
class TuneResult:
    """The tuned policy, what it achieved held out, and the evaluation behind it."""

    policy: Policy
    method: str
    setting: str
    objective: Objective
    heldout: dict  # cross-validated: accuracy, accuracy_std, cost, samples, chosen per fold
    in_sample: dict  # the final choice's numbers on all questions (held-out replay arrays)
    evaluation: Evaluation

    def metrics(self) -> dict:
        return {"heldout": self.heldout, "in_sample": self.in_sample}


def pool_digest(path: str) -> str:
    """sha256 of a pool file (provenance of a policy file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tune(pool: Pool, methods: Sequence[Method], objective: Objective, *, orders: int = 20,
         folds: int = 5, seed: int = 0, verifier_tokens: float = 0.0,
         progress: bool = False) -> TuneResult:
    """Choose the policy that best meets ``objective`` on ``pool`` (see the module)."""
    ev = evaluate(pool, methods, orders=orders, folds=folds, seed=seed,
                  verifier_tokens=verifier_tokens, progress=progress)
    return choose(ev, objective, pool, seed=seed)


def choose(ev: Evaluation, objective: Objective, pool: Pool, *, seed: int = 0) -> TuneResult:
    """:func:`tune`'s choice from an evaluation already made (several objectives can share
    one); ``pool`` and ``seed`` are the evaluation's (a gain model is refitted on them)."""
    q, orders, folds = pool.size, ev.orders, int(ev.folds.max()) + 1
    held_correct = np.zeros((q, orders), bool)
    held_cost = np.zeros((q, orders))
    held_n = np.zeros((q, orders))
    spent = ev.tokens if ev.has_tokens else ev.n_used
    chosen, met = [], []
    for k in range(folds):
        test = ev.folds == k
        acc, cost = ev.calibration(k)  # [S, Q_cal], [S] (trained settings cross-fitted)
        i = objective.choose(acc, cost)
        chosen.append(f"{ev.settings[i].method}: {ev.settings[i].label}")
        met.append(objective.met(acc, cost))
        # the all-question arrays' held-out rows: replayed with fold k's fit
        held_correct[test] = ev.correct[i, test]
        held_cost[test] = spent[i, test]
        held_n[test] = ev.n_used[i, test]
    per_order = held_correct.mean(axis=0)
    per_question = held_correct.mean(axis=1)
    heldout = {"accuracy": float(per_order.mean()), "accuracy_std": float(per_order.std()),
               # what a new set of questions may differ by: the standard error over questions
               "accuracy_se_questions": float(per_question.std() / np.sqrt(q)),
               ev.cost_name: float(held_cost.mean()),
               "samples": float(held_n.mean()),
               "folds": folds, "orders": orders, "questions": q, "chosen_per_fold": chosen,
               "objective_met_per_fold": met}
    acc_all = ev.correct.mean(axis=(1, 2))
    cost_all = (ev.tokens if ev.has_tokens else ev.n_used.astype(float)).mean(axis=(1, 2))
    i = objective.choose(ev.correct.mean(axis=2), cost_all)
    policy = ev.policies[i]
    if isinstance(policy, CostAware) and policy.model is None:
        rows, correct, _ = make_rows(pool, orders, seed)
        policy = policy.with_model(GainModel.fit(
            rows.scores, rows.answers, correct, rows.lengths, policy.selection, policy.n_max,
            policy.round_size, rows.tokens, policy.alpha))
    per_order_all = ev.correct[i].mean(axis=0)
    in_sample = {"accuracy": float(acc_all[i]), "accuracy_std": float(per_order_all.std()),
                 "accuracy_se_questions": float(ev.correct[i].mean(axis=1).std() / np.sqrt(q)),
                 ev.cost_name: float(cost_all[i]), "samples": float(ev.n_used[i].mean()),
                 "objective_met": objective.met(ev.correct.mean(axis=2), cost_all)}
    return TuneResult(policy, ev.settings[i].method, ev.settings[i].label, objective, heldout,
                      in_sample, ev)


def provenance(path: str, pool: Pool, result: TuneResult, *, seed: int, command: str) -> dict:
    """What a policy file records about where its policy came from."""
    from optscale import __version__

    return {"pool": path, "pool_sha256": pool_digest(path), "questions": pool.size,
            "samples_per_question": int(pool.lengths.max()),
            "simulated": pool.simulated, "method": result.method, "setting": result.setting,
            "describe": result.policy.describe(), "orders": result.heldout["orders"],
            "folds": result.heldout["folds"], "seed": seed, "optscale_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"), "command": command}
