"""OptScale policies: turn the scores seen so far into "stop" or "draw n more".

A policy peeks at ``n_peek`` samples, fits the score distribution (MLE for
:class:`OptScale0`, MAP with a per-question prior for :class:`OptScaleT`), computes the number
of samples N* that meets its criterion, and asks for the rest. Rules:

- ``rule="one-shot"`` (the paper's): N* is decided once, after the peek, and all remaining
  samples are asked for in one round.
- ``rule="sequential"``: after the peek, samples come ``round_size`` at a time and the fit and
  N* are recomputed after every round.
- ``stop_on_target=True``: stop as soon as an observed score reaches the target (checked at
  the end of each round; it matters for the sequential rule).
- ``predictive=True``: N* from the posterior-predictive bound instead of the plug-in estimate:
  the criterion averaged over (mu, log sigma) ~ Normal(fit, Laplace covariance) with a 2-D
  Gauss-Hermite rule. With few peek samples the plug-in estimate over-promises; this accounts
  for its uncertainty.

Families (``family=``): the score model behind N*. ``"truncnorm"`` (the paper's), ``"beta"``
and ``"mixture"`` (two truncated normals: wrong and right answers) are fitted to the scores seen
(MAP with a per-question prior for :class:`OptScaleT`, in the family's own parameters);
``"auto"`` fits all three and takes each question's lowest BIC; ``"exceedance"`` assumes no shape:
with k of the n scores seen at or above the target and a Beta(a, b) prior on
S(t) = P(score >= t) (``exceedance_prior``, or per question for OptScaleT), N* is the smallest
total whose best reaches the target with the confidence under the posterior predictive (k >= 1
means it already has: N* = n). The predictive bound is for the truncated normal only; the
exceedance model supports the probability criterion with k = 1.

Criteria (as in :func:`optscale.min_samples`): ``"probability"`` (at least k of N reach the
target with the confidence), ``"expected"`` (expected best of N reaches the target) and
``"cost"`` (maximise P(best of N >= target) - cost * N).

Both the online form (:meth:`OptScale.start`, :meth:`OptScale.update`) and the batch form
(:meth:`OptScale.run`, which replays stored score sequences of many questions at once) use the
same decision function, so they take the same decisions.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from typing import Any, NamedTuple

import numpy as np

from optscale import _api
from optscale._args import real
from optscale._beta import Beta, beta_from_moments
from optscale._distribution import TruncatedNormal
from optscale._exceedance import exceedance_min_samples
from optscale._family_fit import (
    FAMILIES,
    FamilyChoice,
    FamilyFit,
    choose_family,
    fit_family,
    goodness_of_fit,
)
from optscale._selection import Selection
from optscale._solution import Status
from optscale.policies._base import Decision, Policy, PolicyState, Step, count

__all__ = ["Decision", "OptScale", "OptScale0", "OptScaleT", "PolicyRun", "PolicyState", "Stop",
           "solve_criterion"]

_RULES = ("one-shot", "sequential")
_CRITERIA = ("probability", "expected", "cost")
POLICY_FAMILIES = (*FAMILIES, "auto", "exceedance")


class ExceedanceCounts(NamedTuple):
    """The exceedance model's "fit": k of n scores at or above the target, and the Beta(a, b)
    prior on S(target), per question."""

    k: Any
    n: Any
    a: Any
    b: Any


class Stop(enum.IntEnum):
    """Why a question stopped (``PolicyRun.reason``)."""

    N_STAR = 0  # N* samples drawn
    TARGET = 1  # an observed score reached the target (stop_on_target)
    BUDGET = 2  # n_max samples drawn
    POOL = 3  # the stored sequence ran out (batch replay only)


class _ChosenDistribution:
    """CDF of each question's chosen family: what goodness_of_fit needs of ``family="auto"``
    (batch [B]; x broadcasts against it)."""

    def __init__(self, choice: FamilyChoice) -> None:
        self._choice = choice
        first = choice.fits[choice.families[0]].dist
        self.low, self.high = first.low, first.high

    def cdf(self, x: Any) -> Any:
        index = np.asarray(self._choice.index)
        out = np.zeros(np.broadcast_shapes(np.shape(x), index.shape))
        for i, f in enumerate(self._choice.families):
            out = np.where(index == i, np.asarray(self._choice.fits[f].dist.cdf(x), np.float64),
                           out)
        return out


def _slice_fit(fit: FamilyFit, size: int) -> FamilyFit:
    dist = type(fit.dist)(*(np.broadcast_to(np.asarray(p), np.shape(fit.loglik))[:size]
                            for p in fit.dist.params()))
    return FamilyFit(fit.family, dist, *(np.asarray(v)[:size] for v in fit[2:]))


class PolicyRun(NamedTuple):
    """Result of :meth:`OptScale.run` for B questions (NumPy arrays)."""

    n_used: Any  # samples drawn
    best_index: Any  # index of the best drawn score
    best_score: Any
    n_star: Any  # the last N* (0 where none was computed)
    reason: Any  # Stop code


def _bucket(n: int) -> int:
    return max(8, 1 << (max(n, 1) - 1).bit_length())


def solve_criterion(settings: Any, dist: Any) -> Any:
    """The :class:`~optscale.Solution` of the solver a policy's ``settings`` name
    (``criterion``, ``target``, ``confidence``, ``k``, ``cost``, ``n_max``) on ``dist``: shared
    by the object policies and :func:`optscale.policy_step`."""
    s = settings
    if s.criterion == "cost":
        return _api.cost_aware_samples(dist, s.target, s.cost, n_max=s.n_max)
    if s.criterion == "expected":
        return _api.min_samples(dist, s.target, criterion="expected", n_max=s.n_max)
    return _api.min_samples(dist, s.target, s.confidence, k=s.k, n_max=s.n_max)


@dataclasses.dataclass(frozen=True)
class OptScale(Policy):
    """An OptScale policy; use :class:`OptScale0` or :class:`OptScaleT`.

    Args:
        target: the score the best sample should reach (within (low, high]).
        confidence: required probability for the probability criterion (the paper's
            "percentile" is 1 - confidence).
        n_peek: samples drawn before the first estimate.
        n_max: the budget: never more samples than this.
        rule, round_size, stop_on_target, predictive, criterion, k, cost: see the module.
        low, high: the score range; scores outside it are clipped.
        prior_std: standard deviations of the Gaussian priors on (mu, sigma) (truncnorm MAP).
        gh_points: Gauss-Hermite points per dimension for the predictive bound.
        family: the score model, one of ``POLICY_FAMILIES`` (see the module).
        prior_strength: pseudo-scores a Beta or mixture prior is worth (MAP).
        exceedance_prior: the Beta(a, b) prior on S(target) of the exceedance model when no
            per-question prior is given.
        selection: the answer among the drawn samples (default: the best score, the
            paper's; a weighted vote often answers better, see :class:`optscale.Selection`).
    """

    target: float
    confidence: float = 0.9
    n_peek: int = 4
    n_max: int = 64
    rule: str = "one-shot"
    round_size: int = 1
    stop_on_target: bool = False
    predictive: bool = False
    criterion: str = "probability"
    k: int = 1
    cost: float = 0.0
    low: float = 0.0
    high: float = 1.0
    prior_std: tuple[float, float] = (0.1, 0.1)
    gh_points: int = 5
    family: str = "truncnorm"
    prior_strength: float = 4.0
    exceedance_prior: tuple[float, float] = (1.0, 1.0)
    selection: Selection = Selection("max")

    uses_prior = False
    scores_stop = True

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for name in ("target", "confidence", "cost", "low", "high", "prior_strength"):
            real(owner, name, getattr(self, name))
        for name, low in (("n_peek", 0), ("n_max", 1), ("round_size", 1), ("k", 1),
                          ("gh_points", 1)):
            count(owner, name, getattr(self, name), low)
        for name in ("prior_std", "exceedance_prior"):
            pair = getattr(self, name)
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
                raise TypeError(f"{owner}: {name} must be a pair of numbers; got {pair!r}")
            for v in pair:
                if real(owner, name, v) <= 0:
                    raise ValueError(f"{owner}: {name} must be > 0; got {pair!r}")
        if not self.low < self.high:
            raise ValueError(f"{owner}: low must be < high; got low={self.low}, "
                             f"high={self.high}")
        if not isinstance(self.selection, Selection):
            raise TypeError(f"{owner}: selection must be an optscale.Selection; got "
                            f"{type(self.selection).__name__}")
        checks = [
            (self.low < self.target <= self.high, f"target must lie in (low, high] = "
             f"({self.low}, {self.high}]; got {self.target}"),
            (0 < self.confidence < 1, f"confidence must lie in (0, 1); got {self.confidence}"),
            (self.rule in _RULES, f"rule must be one of {_RULES}; got {self.rule!r}"),
            (self.criterion in _CRITERIA,
             f"criterion must be one of {_CRITERIA}; got {self.criterion!r}"),
            (self.k >= 1, f"k must be >= 1; got {self.k}"),
            (self.round_size >= 1, f"round_size must be >= 1; got {self.round_size}"),
            (self.n_max >= max(self.n_peek, 1),
             f"n_max must be >= max(n_peek, 1); got n_max={self.n_max}, n_peek={self.n_peek}"),
            (self.criterion != "cost" or self.cost > 0,
             f"cost must be > 0 for criterion='cost'; got {self.cost}"),
            (self.gh_points >= 1, f"gh_points must be >= 1; got {self.gh_points}"),
            (self.family in POLICY_FAMILIES,
             f"family must be one of {POLICY_FAMILIES}; got {self.family!r}"),
            (not self.predictive or self.family == "truncnorm",
             f"predictive=True needs family='truncnorm'; got {self.family!r}"),
            (self.family != "exceedance" or (self.criterion == "probability" and self.k == 1),
             "family='exceedance' supports criterion='probability' with k=1 only"),
            (self.prior_strength > 0, f"prior_strength must be > 0; got {self.prior_strength}"),
            (all(v > 0 for v in self.exceedance_prior),
             f"exceedance_prior must be (a, b) > 0; got {self.exceedance_prior}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"{type(self).__name__}: {message}")
        if self.n_peek < (0 if self.uses_prior else 1):
            raise ValueError(f"{type(self).__name__}: n_peek must be >= "
                             f"{0 if self.uses_prior else 1}; got {self.n_peek}")

    # ------------------------------------------------------------------ decisions (batched)

    def n_star(self, scores: Any, mask: Any = None, prior: Any = None) -> tuple[Any, Any]:
        """(N*, solver status) for B questions from their scores so far ([B, n], ragged via
        ``mask``), clipped to [1, n_max]: :meth:`fit` then :meth:`decide`."""
        return self.decide(self.fit(scores, mask, prior))

    def fit(self, scores: Any, mask: Any = None, prior: Any = None) -> Any:
        """The policy's estimate (:class:`optscale.Fit`, NumPy arrays of B rows) from scores so
        far ([B, n], ragged via ``mask``): MLE, or MAP with ``prior`` = (mu0, sigma0)."""
        scores = np.asarray(scores, np.float64)
        if scores.ndim == 1:
            scores = scores[None, :]
        mask = np.ones(scores.shape, bool) if mask is None else np.asarray(mask, bool)
        if self.uses_prior and prior is None:
            raise ValueError(f"{type(self).__name__} needs a prior (mu0, sigma0) per question")
        # Pad to power-of-two shapes: an online question grows by a score per round and a
        # replay refits a shrinking set, and JAX compiles once per shape.
        size, count = scores.shape
        rows, cols = _bucket(size), _bucket(count)
        pick = np.concatenate([np.arange(size), np.zeros(rows - size, np.int64)])
        scores = np.pad(scores[pick], ((0, 0), (0, cols - count)), constant_values=0.5)
        mask = np.pad(mask[pick], ((0, 0), (0, cols - count)))
        if prior is not None:
            prior = tuple(np.broadcast_to(np.asarray(v, np.float64), (size,))[pick]
                          for v in prior)
        prior = prior if self.uses_prior else None
        if self.family == "exceedance":
            return self._counts(scores, mask, prior, size)
        if self.family == "auto":
            choice = choose_family(scores, mask, low=self.low, high=self.high,
                                   out_of_range="clip")
            return FamilyChoice(choice.families, choice.index[:size], choice.information[:, :size],
                                {f: _slice_fit(v, size) for f, v in choice.fits.items()})
        if self.family != "truncnorm":
            return _slice_fit(fit_family(self.family, scores, mask, prior=prior,
                                         prior_strength=self.prior_strength, low=self.low,
                                         high=self.high, out_of_range="clip"), size)
        fit = _api.fit_truncnorm(
            scores, mask, prior=prior, prior_std=self.prior_std,
            low=self.low, high=self.high, out_of_range="clip")
        return type(fit)(*(np.asarray(v)[:size] for v in fit))

    def _counts(self, scores, mask, prior, size) -> ExceedanceCounts:
        hits = np.sum(mask & (scores >= self.target), axis=1)[:size]
        n = np.sum(mask, axis=1)[:size]
        a, b = (np.broadcast_to(np.asarray(v, np.float64), (len(mask),))[:size]
                for v in (self.exceedance_prior if prior is None else prior))
        return ExceedanceCounts(hits, n, a, b)

    def fitted_distribution(self, fit: Any) -> Any:
        """The score distribution (batch [B]) behind a :meth:`fit` result; for ``"auto"`` an
        object whose ``cdf`` is each question's chosen family's; None for the exceedance
        model, which has none."""
        if isinstance(fit, ExceedanceCounts):
            return None
        if isinstance(fit, FamilyChoice):
            return _ChosenDistribution(fit)
        if isinstance(fit, FamilyFit):
            return fit.dist
        return TruncatedNormal(np.asarray(fit.mu), np.asarray(fit.sigma), self.low, self.high)

    def diagnose(self, scores: Any, mask: Any = None) -> Any:
        """How well each family describes each question's scores ([B, n], ragged via
        ``mask``): a :class:`optscale.FamilyChoice` (BIC per family and the choice) and the KS
        goodness of fit of every family, ``{family: GoodnessOfFit}``. Run it on a sample of
        questions with many scores to see whether the truncated normal suits a verifier. A
        non-finite score (NaN: drawn but not scored) is left out of the fits, as in
        :meth:`update`.

        Example:
            >>> import numpy as np, optscale
            >>> rng = np.random.default_rng(0)
            >>> bimodal = np.where(rng.random((1, 200)) < 0.3, 0.97, 0.03)
            >>> bimodal = bimodal + rng.normal(0, 0.01, (1, 200))
            >>> choice, gof = optscale.OptScale0(target=0.95).diagnose(bimodal)
            >>> choice.chosen, bool(gof["truncnorm"].pvalue[0] < 0.01)
            (['mixture'], True)
        """
        scores = np.atleast_2d(np.asarray(scores, np.float64))
        finite = np.isfinite(scores)
        if not finite.all():
            if mask is None:
                mask = finite
            elif np.shape(mask) == scores.shape:  # a mask of another shape: the fit says so
                mask = np.asarray(mask, bool) & finite
            scores = np.where(finite, scores, self.low)
        scores = np.clip(scores, self.low, self.high)
        choice = choose_family(scores, mask, low=self.low, high=self.high)
        gof = {f: goodness_of_fit(fit.dist, scores, mask) for f, fit in choice.fits.items()}
        return choice, gof

    def fit_key(self) -> tuple:
        """What :meth:`fit` depends on besides the scores and prior: settings with equal keys
        can share one fit (the replay harness does)."""
        key = (self.family, self.n_peek, self.low, self.high, self.uses_prior)
        if self.family == "truncnorm":
            return (*key, self.prior_std)
        if self.family == "exceedance":
            return (*key, self.target, self.exceedance_prior)
        return (*key, self.prior_strength)

    def decide(self, fit: Any, memo: dict | None = None) -> tuple[Any, Any]:
        """(N*, solver status) from a fit (a :class:`optscale.Fit` of this policy's family):
        the second half of :meth:`n_star`. Settings that share a fit (same peek, prior and
        score range) can reuse it, as the replay harness does; ``memo``, a dict the caller
        keeps with that fit, also shares what the settings compute alike (the predictive
        bound's nodes: per target, not per confidence or budget)."""
        if memo is not None and memo.setdefault("fit", fit) is not fit:
            raise ValueError("decide: memo was kept with another fit")
        if isinstance(fit, ExceedanceCounts):
            return self._decide_exceedance(fit)
        if isinstance(fit, FamilyChoice):
            decided = [self.decide(fit.fits[f]) for f in fit.families]
            index = np.asarray(fit.index)
            rows = np.arange(len(index))
            return (np.stack([d[0] for d in decided])[index, rows],
                    np.stack([d[1] for d in decided])[index, rows])
        if isinstance(fit, FamilyFit):
            params = fit.dist.params()
            size = len(np.atleast_1d(params[0]))
            pick = np.concatenate([np.arange(size), np.zeros(_bucket(size) - size, np.int64)])
            dist = type(fit.dist)(*(np.broadcast_to(np.asarray(p, np.float64), (size,))[pick]
                                    for p in params))
            return self._solve(dist, size)
        size = len(np.atleast_1d(fit.mu))
        pick = np.concatenate([np.arange(size), np.zeros(_bucket(size) - size, np.int64)])
        mu, sigma = (np.atleast_1d(np.asarray(v, np.float64))[pick] for v in (fit.mu, fit.sigma))
        if self.predictive:
            n, status = self._predictive(mu, sigma, np.asarray(fit.cov, np.float64)[pick],
                                         {} if memo is None else memo)
            return n[:size], status[:size]
        return self._solve(TruncatedNormal(mu, sigma, self.low, self.high), size)

    def _solve(self, dist: Any, size: int) -> tuple[Any, Any]:
        sol = solve_criterion(self, dist)
        return np.asarray(sol.n, np.int64)[:size], np.asarray(sol.status, np.int64)[:size]

    def _decide_exceedance(self, fit: ExceedanceCounts) -> tuple[Any, Any]:
        k, n = np.asarray(fit.k, np.int64), np.asarray(fit.n, np.int64)
        room = np.maximum(self.n_max - n, 1)
        sol = exceedance_min_samples(k, n, self.confidence, fit.a, fit.b, n_max=int(room.max()))
        more = np.asarray(sol.n, np.int64)
        status = np.asarray(sol.status, np.int64)
        status = np.where((status == Status.OK) & (more > room), Status.INFEASIBLE, status)
        n_star = np.where(k >= 1, n, np.minimum(n + more, self.n_max))
        status = np.where(k >= 1, Status.OK, status)  # the target is already reached
        return np.maximum(n_star, 1), status

    def _predictive(self, mu, sigma, cov, memo):
        """Posterior-predictive N*: the criterion averaged over Gauss-Hermite nodes of
        (mu, log sigma) ~ Normal((mu, log sigma), cov), by bisection over N (every criterion
        is monotone in N after averaging)."""
        key = ("predictive", self.gh_points, self.low, self.high)
        if key not in memo:
            memo[key] = self._predictive_nodes(mu, sigma, cov)
        wg, nodes = memo[key]
        at = (*key, self.target)
        if at not in memo:
            memo[at] = np.asarray(nodes.logcdf(self.target), np.float64)
        log_f = memo[at]
        lo = np.ones(len(mu))
        hi = np.full(len(mu), float(self.n_max))

        if self.criterion == "probability" and self.k == 1:
            # P(success) of each (row, n), kept per target: settings that differ only in
            # confidence or budget bisect over the same values
            rows, kept = np.arange(len(mu)), (*at, "success")
            table, known = memo.get(kept, (np.zeros((len(mu), 0)),) * 2)
            if table.shape[1] < self.n_max:
                table, known = (np.pad(v, ((0, 0), (0, self.n_max - v.shape[1])))
                                for v in (table, known.astype(bool)))
                memo[kept] = table, known

            def value(n):
                col = n.astype(np.int64) - 1
                todo = ~known[rows, col]
                if todo.any():
                    r = rows[todo]
                    table[r, col[todo]] = (wg * -np.expm1(n[todo][:, None] * log_f[r])).sum(-1)
                    known[r, col[todo]] = True
                return table[rows, col] >= self.confidence
        elif self.criterion == "probability":
            def value(n):
                p = np.asarray(_api.k_of_n_prob(nodes, self.target, n[:, None], self.k))
                return (wg * p).sum(-1) >= self.confidence
        elif self.criterion == "expected":
            def value(n):
                e = np.asarray(_api.expected_best(nodes, n[:, None]))
                return (wg * e).sum(-1) >= self.target
        else:  # cost: the averaged gain is concave; stop where one more sample is not worth it
            log_s = np.asarray(nodes.logsf(self.target), np.float64)

            def value(n):
                return (wg * np.exp(n[:, None] * log_f + log_s)).sum(-1) <= self.cost

        feasible = value(hi)
        lo, hi = lo.copy(), hi.copy()
        while np.any(lo < hi):
            mid = np.floor(0.5 * (lo + hi))
            ok = value(mid)
            open_ = lo < hi
            hi = np.where(open_ & ok, mid, hi)
            lo = np.where(open_ & ~ok, mid + 1, lo)
        status = np.where(feasible, Status.OK, Status.INFEASIBLE)
        status = np.where(self.target <= self.low, Status.TRIVIAL, status)
        return hi.astype(np.int64), status.astype(np.int64)

    def _predictive_nodes(self, mu, sigma, cov):
        """The quadrature weights and the score distributions at the nodes of
        :meth:`_predictive` (they do not depend on the criterion)."""
        z, w = np.polynomial.hermite_e.hermegauss(self.gh_points)
        w = w / w.sum()
        z1, z2 = (a.ravel() for a in np.meshgrid(z, z, indexing="ij"))
        wg = np.outer(w, w).ravel()
        # Cholesky of the 2x2 covariance (floored so that it exists)
        c11 = np.maximum(cov[:, 0, 0], 1e-300)
        l11 = np.sqrt(c11)
        l21 = cov[:, 1, 0] / l11
        l22 = np.sqrt(np.maximum(cov[:, 1, 1] - l21**2, 0.0))
        width = self.high - self.low
        mu_n = np.clip(mu[:, None] + l11[:, None] * z1, self.low - width, self.high + width)
        rho_n = np.log(sigma)[:, None] + l21[:, None] * z1 + l22[:, None] * z2
        sigma_n = np.exp(np.clip(rho_n, np.log(1e-3 * width), np.log(10.0 * width)))
        return wg, TruncatedNormal(mu_n, sigma_n, self.low, self.high)

    # ------------------------------------------------------------------ online

    def start(self, prior: tuple[float, float] | None = None, *,
              question: str | None = None) -> PolicyState:
        """A fresh state for one question: OptScaleT needs ``prior`` (in its family's
        parameters, e.g. (mu0, sigma0)) or the ``question`` text for its predictor."""
        if self.uses_prior and prior is None and question is not None:
            prior = tuple(float(v[0]) for v in self.prior_for([question]))
        if self.uses_prior and prior is None:
            raise ValueError(f"{type(self).__name__}.start needs prior=(mu0, sigma0) or "
                             "question=text")
        return PolicyState(scores=[], prior=prior)

    def prior_for(self, questions: Any) -> tuple[Any, ...]:
        """The prior of each question, in this policy's family, from its text: the predictor's
        predicted raw score moments (``predict_moments``), converted for the family
        (truncated normal by moment matching, Beta by the method of moments, the exceedance
        model's Beta on S(target) from that Beta's tail, worth ``prior_strength`` samples).

        Uses ``self.predictor`` (OptScaleT), or the bundled head of :mod:`optscale.predictor`
        when it is None (needs the ``predictor`` extra).
        """
        if not self.uses_prior:
            raise ValueError(f"{type(self).__name__} takes no prior")
        if self.family in ("mixture", "auto"):
            raise ValueError(f"family={self.family!r}: a mean and std do not determine a "
                             "mixture prior; give prior= explicitly")
        predictor = getattr(self, "predictor", None) or _default_predictor()
        mean, std = (np.asarray(v, np.float64) for v in predictor.predict_moments(
            [questions] if isinstance(questions, str) else list(questions)))
        return prior_from_moments(self, mean, std)

    def update(self, state: PolicyState, scores: Any = (), answers: Any = None,
               tokens: Any = None) -> Decision:
        """Record the new samples' ``scores`` (None or () for none; with ``answers`` and
        ``tokens`` when the selection rule needs them) and decide. Call it with no scores to get
        the first request.

        A non-finite score (NaN: the scorer failed) is a sample drawn but not scored: it counts
        against ``n_max``, is never the best, and is left out of the fit, so the policy asks
        for scored samples until it has ``n_peek`` (and N*) of them. The rule looks at the
        samples at its checkpoints only (the end of the peek; N*; for the sequential rule every
        ``round_size`` scored samples), stop-on-target included. Updating a state that has
        stopped raises ValueError: start a new state for a new question.

        Example:
            >>> import optscale
            >>> policy = optscale.OptScale0(target=0.95, confidence=0.9, n_peek=4, n_max=64)
            >>> state = policy.start()
            >>> policy.update(state).n_more
            4
            >>> d = policy.update(state, [0.91, 0.97, 0.88, 0.93])
            >>> d.stop, d.n_more, d.n_star
            (False, 6, 10)
        """
        return super().update(state, scores, answers, tokens)

    def _step(self, state: PolicyState) -> Step:
        values = np.asarray(state.scores, np.float64)
        scored = np.isfinite(values)
        n_scored = int(scored.sum())
        if n_scored < self.n_peek:
            return Step(False, self.n_peek - n_scored, n_star=state.n_star)
        status, gof = None, (None, None)
        if state.n_star is None or n_scored >= state.memo.get("next", 0):  # a checkpoint
            if self.stop_on_target and n_scored and values[scored].max() >= self.target:
                return Step(True, n_star=state.n_star, reason="target")
            if state.n_star is None or self.rule == "sequential":
                prior = (None if state.prior is None
                         else tuple(np.atleast_1d(v) for v in state.prior))
                seen = values[scored].reshape(1, -1)
                fit = self.fit(seen, prior=prior)
                n_star, status = self.decide(fit)
                state.n_star, status = int(n_star[0]), int(status[0])
                dist = self.fitted_distribution(fit)
                if dist is not None and n_scored > 0:
                    g = goodness_of_fit(dist, np.clip(seen, self.low, self.high))
                    gof = (float(g.ks[0]), float(g.pvalue[0]))
            state.memo["next"] = (n_scored + self.round_size if self.rule == "sequential"
                                  else state.n_star)
        if n_scored >= state.n_star:
            return Step(True, n_star=state.n_star, status=status, ks=gof[0], ks_pvalue=gof[1])
        more = min(state.n_star, state.memo["next"]) - n_scored
        return Step(False, more, n_star=state.n_star, status=status, ks=gof[0],
                    ks_pvalue=gof[1])

    # ------------------------------------------------------------------ batch replay

    def run(self, scores: Any, prior: Any = None, lengths: Any = None, *,
            questions: Any = None) -> PolicyRun:
        """Replay the policy on stored score sequences of B questions at once.

        ``scores[b, i]`` is the score of question b's i-th sample in drawing order; samples are
        consumed in that order, in the same rounds the online form asks for. ``lengths`` gives
        ragged pool sizes; OptScaleT takes ``prior`` or the ``questions`` texts (see
        :meth:`prior_for`). Returns a :class:`PolicyRun`.
        """
        scores = np.asarray(scores, np.float64)
        if scores.ndim != 2:
            raise ValueError(f"scores must have shape [B, n]; got {scores.shape}")
        if self.uses_prior and prior is None and questions is not None:
            prior = self.prior_for(questions)
        size, pool = scores.shape
        if lengths is None:
            lengths = np.full(size, pool)
        else:
            lengths = np.asarray(lengths)
            if lengths.shape != (size,) or lengths.dtype.kind not in "iu":
                raise ValueError(f"lengths must be {size} integers; got {lengths.dtype} "
                                 f"{lengths.shape}")
            if np.any((lengths < 0) | (lengths > pool)):
                raise ValueError(f"lengths must lie in [0, {pool}] (the scores stored per "
                                 f"question); got {lengths.min()}..{lengths.max()}")
        cap = np.minimum(lengths, self.n_max)
        if prior is not None:
            prior = tuple(np.broadcast_to(np.asarray(v, np.float64), (size,)) for v in prior)
        elif self.uses_prior:
            raise ValueError(f"{type(self).__name__}.run needs prior=(mu0, sigma0)")
        finite = np.isfinite(scores)
        n = np.zeros(size, np.int64)  # drawn so far
        n_star = np.zeros(size, np.int64)
        next_check = np.zeros(size, np.int64)
        active = np.ones(size, bool)
        reason = np.full(size, Stop.N_STAR)
        order = np.arange(pool)[None, :]
        decided = np.zeros(size, bool)
        while active.any():
            drawn = order < n[:, None]
            scored = drawn & finite
            n_scored = scored.sum(axis=1)
            out = active & (n >= cap)  # the budget, or the stored samples ran out
            reason = np.where(out, np.where(n >= self.n_max, Stop.BUDGET, Stop.POOL), reason)
            active &= ~out
            peek = active & (n_scored < self.n_peek)
            check = active & ~peek & (~decided | (n_scored >= next_check))
            seen = np.where(scored, scores, -np.inf)
            hit = check & self.stop_on_target & (seen.max(axis=1) >= self.target) & \
                (n_scored > 0)
            reason = np.where(hit, Stop.TARGET, reason)
            active &= ~hit
            check &= ~hit
            refit = check & (~decided | (self.rule == "sequential"))
            if refit.any():
                idx = np.flatnonzero(refit)
                sub_prior = None if prior is None else tuple(v[idx] for v in prior)
                ns, _ = self.n_star(np.where(scored[idx], scores[idx], 0.5), scored[idx],
                                    sub_prior)
                n_star[idx] = ns
                decided[idx] = True
            next_check = np.where(check, n_scored + self.round_size if self.rule == "sequential"
                                  else n_star, next_check)
            done = active & ~peek & (n_scored >= n_star)
            active &= ~done
            more = np.where(peek, self.n_peek - n_scored,
                            np.minimum(n_star, next_check) - n_scored)
            n = np.where(active, np.minimum(n + more, cap), n)
        taken = np.where((order < n[:, None]) & finite, scores, -np.inf)
        best_index = np.argmax(taken, axis=1)
        best = taken[np.arange(size), best_index]
        return PolicyRun(n, best_index, best, n_star, reason)


@dataclasses.dataclass(frozen=True)
class OptScale0(OptScale):
    """OptScale^0: maximum-likelihood fit of the peek samples (no prior)."""

    kind = "optscale0"


@dataclasses.dataclass(frozen=True)
class OptScaleT(OptScale):
    """OptScale^t: MAP fit with a per-question prior (mu0, sigma0) (in general, the family's
    parameters), given, or predicted from the question text by ``predictor`` (anything with
    ``predict_moments(texts) -> (mean, std)``; None: the bundled :mod:`optscale.predictor`
    head); with ``n_peek=0`` the first N* comes from the prior alone."""

    predictor: Any = dataclasses.field(default=None, compare=False, repr=False)

    uses_prior = True
    kind = "optscalet"


@functools.cache
def _default_predictor() -> Any:
    from optscale.predictor import load_default

    return load_default()


def prior_from_moments(policy: OptScale, mean: Any, std: Any) -> tuple[Any, ...]:
    """A prior in ``policy``'s family from raw score moments on the unit range (what the
    predictor predicts), mapped to [low, high]."""
    width = policy.high - policy.low
    m, s = policy.low + width * np.asarray(mean, np.float64), width * np.asarray(std, np.float64)
    if policy.family == "truncnorm":
        mu, sigma, _ = _api.truncnorm_from_moments(m, s, policy.low, policy.high)
        return np.asarray(mu, np.float64), np.asarray(sigma, np.float64)
    a, b, _ = beta_from_moments(m, s, policy.low, policy.high)
    if policy.family == "beta":
        return a, b
    if policy.family == "exceedance":
        tail = np.asarray(Beta(a, b, policy.low, policy.high).sf(policy.target), np.float64)
        tail = np.clip(tail, 1e-3, 1.0 - 1e-3)
        return policy.prior_strength * tail, policy.prior_strength * (1.0 - tail)
    raise ValueError(f"no prior from moments for family={policy.family!r}")
