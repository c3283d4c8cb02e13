"""The built-in default pool: SIMULATED completions, calibrated to published OptScale statistics.

Nothing here is model output. :func:`simulate_pool` draws a synthetic :class:`Pool` whose summary
statistics were fitted (``benchmarks/calibrate_simulation.py``) to numbers the OptScale reference
implementation published for DeepSeek-R1-Distill-Qwen-7B samples scored by Qwen2.5-Math-PRM-7B:
the per-problem PRM score mean/std of 4,501 MATH training problems, and Best-of-N, majority-vote
and token tables on MATH500. Every pool it returns has ``meta["simulated"] = True``.

Generative model, per question q (z, e, eta, xi: independent standard normals per question)::

    difficulty       z_q
    scores           s_qi ~ TN(mu_q, sigma_q) on [0, 1], i.i.d.; s_qi = F_q^{-1}(u_qi), u ~ U(0, 1)
                     mu_q = score_mu - score_mu_slope * z_q
                     log sigma_q = score_log_sigma + score_log_sigma_slope * z_q
                                   + score_log_sigma_noise * e_q
    solve logit      a_q = logit_mean + logit_sd * (-logit_corr * z_q
                                                    + sqrt(1 - logit_corr^2) * eta_q)
    correctness      P(correct_qi) = expit(a_q + b_q * min(Phi^{-1}(u_qi), verifier_cap)),
                     b_q = verifier_slope * expit(a_q): the verifier ranks samples by the same
                     percentile u that made the score; it discriminates well where the question
                     is mostly solved and hardly at all where it is almost never solved, and
                     above the cap percentile a higher score says nothing more about
                     correctness (PRM scores saturate): together they flatten Best-of-N
    answers          correct samples share one code; a wrong sample draws distractor k
                     (k = 0..n_distractors-1) with probability proportional to
                     distractor_decay^k, so some wrong answers repeat and can win a vote; the
                     n_distractors + 1 codes are shuffled per question (no code is special)
    tokens           log T_qi = tokens_log_mean + tokens_question_sd * (tokens_difficulty_corr
                     * z_q + sqrt(1 - c^2) * xi_q) + tokens_wrong_log * [wrong] + tokens_sample_sd
                     * eps_qi, rounded, clipped to [1, tokens_max]
    prior            (mu0, sigma0) = (mu_q + prior_mu_noise * N(0, 1),
                                      sigma_q * exp(prior_log_sigma_noise * N(0, 1)))

Twelve constants were fitted: 5 for the scores, 6 for correctness and answers, and
``tokens_log_mean``; the other token and prior constants are assumptions (the published tables
only give mean tokens). The prior is an informative but imperfect predictor (correlation about
0.97 with the true mu and 0.9 with log sigma); the published predictor is far worse, so OptScale^t
on this pool is an optimistic case.

Calibration: ``benchmarks/calibrate_simulation.py`` on 2026-11-28 (``CALIBRATION_DATE``). Targets:
quantiles of the published per-problem score mean and std (MATH train), MATH500 BoN and majority
accuracy, and mean output tokens per sample (BoN token count at N=64 / 64). Achieved: on an
independent 40,000-question simulated pool; score moments are each question's mean and population
std over its 64 samples. MC sd: Monte Carlo SD over 2,000-question pools (the tests' tolerances).

    statistic             target  achieved  MC sd (Q=2000)
    score_mean_q05        0.8102    0.8070          0.0048
    score_mean_q25        0.9048    0.9049          0.0020
    score_mean_q50        0.9467    0.9447          0.0010
    score_mean_q75        0.9711    0.9682          0.0005
    score_mean_q95        0.9890    0.9861          0.0005
    score_std_q05         0.0181    0.0132          0.0004
    score_std_q25         0.0395    0.0299          0.0005
    score_std_q50         0.0637    0.0512          0.0009
    score_std_q75         0.0922    0.0858          0.0015
    score_std_q95         0.1320    0.1642          0.0036
    bon_acc_1             0.8960    0.8991          0.0062
    bon_acc_2             0.9340    0.9319          0.0060
    bon_acc_4             0.9460    0.9429          0.0056
    bon_acc_8             0.9480    0.9453          0.0049
    bon_acc_16            0.9380    0.9462          0.0057
    bon_acc_32            0.9440    0.9458          0.0048
    bon_acc_64            0.9400    0.9457          0.0049
    maj_acc_1             0.8960    0.8991          0.0062
    maj_acc_4             0.9220    0.9247          0.0060
    maj_acc_16            0.9340    0.9387          0.0049
    maj_acc_64            0.9340    0.9402          0.0050
    tokens_per_sample     2729.6    2721.0            38.5

Known gaps: a truncated normal cannot have a std much above 1 - mean near the top of [0, 1],
while most published PRM score distributions do (bimodal: wrong answers score low), so the
simulated stds run 7-27 % under the published ones up to the 75th percentile (and 24 % over at the
95th); the fit traded them against the means. The published curves come from one sample order of
500 questions (standard error about 0.011), so their wiggles (BoN 0.948 at N=8, 0.938 at N=16) are
not reproduced: the simulated BoN curve rises to about 0.946 by N=8 and stays flat. The truncated
normal is the exact score model here, so OptScale's fits are well specified on this pool, unlike
on real verifier scores.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import NamedTuple

import numpy as np
from scipy.special import expit, log_ndtr, ndtri, ndtri_exp

from optscale.replay._pool import Pool

__all__ = ["CALIBRATION", "CALIBRATION_DATE", "CALIBRATION_TARGETS", "CalibrationTarget",
           "SimulationParams", "calibration_table", "simulate_pool"]

SOURCE = "simulated (calibrated to OptScale-ref MATH500 / MATH-train PRM statistics)"


@dataclasses.dataclass(frozen=True)
class SimulationParams:
    """Constants of the generative model (see the module docstring for the equations)."""

    score_mu: float
    score_mu_slope: float
    score_log_sigma: float
    score_log_sigma_slope: float
    score_log_sigma_noise: float
    logit_mean: float
    logit_sd: float
    logit_corr: float
    verifier_slope: float
    verifier_cap: float
    distractor_decay: float
    tokens_log_mean: float
    n_distractors: int = 8
    tokens_question_sd: float = 0.45
    tokens_difficulty_corr: float = 0.5
    tokens_sample_sd: float = 0.35
    tokens_wrong_log: float = 0.5
    tokens_max: int = 32768
    prior_mu_noise: float = 0.08
    prior_log_sigma_noise: float = 0.2


@dataclasses.dataclass(frozen=True)
class CalibrationTarget:
    """One calibrated statistic: published ``target``, ``achieved`` value, MC SD at Q=2,000."""

    target: float
    achieved: float
    mc_sd: float


# ---- fitted constants: written by benchmarks/calibrate_simulation.py ---------------------------
CALIBRATION_DATE = "2026-11-28"
CALIBRATION = SimulationParams(
    score_mu=1.82537,
    score_mu_slope=0.357051,
    score_log_sigma=-1.51655,
    score_log_sigma_slope=-0.124615,
    score_log_sigma_noise=0.433739,
    logit_mean=8.32704,
    logit_sd=5.32204,
    logit_corr=0.75529,
    verifier_slope=2.99007,
    verifier_cap=0.374485,
    distractor_decay=0.150234,
    tokens_log_mean=7.66769,
)
CALIBRATION_TARGETS: dict[str, CalibrationTarget] = {
    "score_mean_q05": CalibrationTarget(0.810192, 0.807041, 0.00477),
    "score_mean_q25": CalibrationTarget(0.904831, 0.904918, 0.002),
    "score_mean_q50": CalibrationTarget(0.946666, 0.944704, 0.00104),
    "score_mean_q75": CalibrationTarget(0.971087, 0.96816, 0.000529),
    "score_mean_q95": CalibrationTarget(0.989044, 0.986079, 0.000504),
    "score_std_q05": CalibrationTarget(0.0180574, 0.0131938, 0.000408),
    "score_std_q25": CalibrationTarget(0.0395119, 0.0298989, 0.000481),
    "score_std_q50": CalibrationTarget(0.0636883, 0.0511516, 0.000873),
    "score_std_q75": CalibrationTarget(0.0922044, 0.0858285, 0.0015),
    "score_std_q95": CalibrationTarget(0.131951, 0.164185, 0.00364),
    "bon_acc_1": CalibrationTarget(0.896, 0.89905, 0.00618),
    "bon_acc_2": CalibrationTarget(0.934, 0.931925, 0.00599),
    "bon_acc_4": CalibrationTarget(0.946, 0.942875, 0.00558),
    "bon_acc_8": CalibrationTarget(0.948, 0.9453, 0.00491),
    "bon_acc_16": CalibrationTarget(0.938, 0.94615, 0.00566),
    "bon_acc_32": CalibrationTarget(0.944, 0.9458, 0.00477),
    "bon_acc_64": CalibrationTarget(0.94, 0.94575, 0.00494),
    "maj_acc_1": CalibrationTarget(0.896, 0.89905, 0.00618),
    "maj_acc_4": CalibrationTarget(0.922, 0.9247, 0.006),
    "maj_acc_16": CalibrationTarget(0.934, 0.938725, 0.00491),
    "maj_acc_64": CalibrationTarget(0.934, 0.940225, 0.00503),
    "tokens_per_sample": CalibrationTarget(2729.58, 2720.98, 38.5),
}
# ---- end of fitted constants -------------------------------------------------------------------

# Quantile levels (percent) of the per-question score moments, and the N of the accuracy curves.
MOMENT_LEVELS = (5, 25, 50, 75, 95)
BON_NS = (1, 2, 4, 8, 16, 32, 64)
MAJ_NS = (1, 4, 16, 64)


class _Draws(NamedTuple):
    """Every random input, drawn before any parameter is used (common random numbers)."""

    z: np.ndarray  # [Q, 1] difficulty
    e: np.ndarray  # [Q, 1] score-scale noise
    eta: np.ndarray  # [Q, 1] solve-logit noise
    xi: np.ndarray  # [Q, 1] token-scale noise
    u: np.ndarray  # [Q, M] score percentiles
    v: np.ndarray  # [Q, M] correctness uniforms
    w: np.ndarray  # [Q, M] distractor uniforms
    eps: np.ndarray  # [Q, M] token noise
    order: np.ndarray  # [Q, n_distractors + 1] code permutation keys
    prior: np.ndarray  # [Q, 2] predictor noise


def _draw(rng: np.random.Generator, n_questions: int, n_samples: int,
          n_distractors: int) -> _Draws:
    q, m = n_questions, n_samples
    col = (q, 1)
    return _Draws(rng.standard_normal(col), rng.standard_normal(col), rng.standard_normal(col),
                  rng.standard_normal(col), rng.random((q, m)), rng.random((q, m)),
                  rng.random((q, m)), rng.standard_normal((q, m)),
                  rng.random((q, n_distractors + 1)), rng.standard_normal((q, 2)))


def _tn_icdf(mu: np.ndarray, sigma: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Quantile u of TN(mu, sigma) on [0, 1], in log space so mu far above 1 stays exact."""
    # Reflect so the parent's centre is at or above 1/2: [0, 1] then lies in the parent's lower
    # tail or around its centre, where log Phi is accurate and Phi(a) need not underflow.
    flip = mu < 0.5
    m = np.where(flip, 1.0 - mu, mu)
    uu = np.where(flip, 1.0 - u, u)
    log_a, log_b = log_ndtr(-m / sigma), log_ndtr((1.0 - m) / sigma)
    # log(Phi(a) + u (Phi(b) - Phi(a))) = log Phi(b) + log(u + (1 - u) Phi(a) / Phi(b))
    log_p = log_b + np.log(uu + (1.0 - uu) * np.exp(log_a - log_b))
    x = np.clip(m + sigma * ndtri_exp(np.minimum(log_p, 0.0)), 0.0, 1.0)
    return np.where(flip, 1.0 - x, x)


def _score_params(p: SimulationParams, d: _Draws) -> tuple[np.ndarray, np.ndarray]:
    mu = p.score_mu - p.score_mu_slope * d.z
    log_sigma = (p.score_log_sigma + p.score_log_sigma_slope * d.z
                 + p.score_log_sigma_noise * d.e)
    return mu, np.exp(log_sigma)


def _p_correct(p: SimulationParams, d: _Draws) -> np.ndarray:
    """[Q, M] probability that each sample is correct."""
    r = p.logit_corr
    a = p.logit_mean + p.logit_sd * (-r * d.z + np.sqrt(1.0 - r * r) * d.eta)
    # u is never exactly 0 or 1 after this clip, so the percentile's normal score is finite.
    zeta = np.minimum(ndtri(np.clip(d.u, 1e-12, 1.0 - 1e-12)), p.verifier_cap)
    return expit(a + p.verifier_slope * expit(a) * zeta)


def _answer_index(p: SimulationParams, d: _Draws, correct: np.ndarray) -> np.ndarray:
    """[Q, M] unshuffled answer index: 0 = correct answer, 1 + k = distractor k."""
    weights = p.distractor_decay ** np.arange(p.n_distractors)
    cum = np.cumsum(weights) / weights.sum()
    k = np.minimum(np.searchsorted(cum, d.w), p.n_distractors - 1)
    return np.where(correct, 0, 1 + k)


def _tokens(p: SimulationParams, d: _Draws, correct: np.ndarray) -> np.ndarray:
    c = p.tokens_difficulty_corr
    log_t = (p.tokens_log_mean + p.tokens_question_sd * (c * d.z + np.sqrt(1.0 - c * c) * d.xi)
             + p.tokens_wrong_log * ~correct + p.tokens_sample_sd * d.eps)
    return np.clip(np.rint(np.exp(log_t)), 1, p.tokens_max).astype(np.int64)


class _Sim(NamedTuple):
    mu: np.ndarray  # [Q]
    sigma: np.ndarray  # [Q]
    scores: np.ndarray  # [Q, M]
    correct: np.ndarray  # [Q, M] bool
    index: np.ndarray  # [Q, M] unshuffled answer index (0 = correct)
    answers: np.ndarray  # [Q, M] int32 shuffled codes
    correct_code: np.ndarray  # [Q] the code of the correct answer
    tokens: np.ndarray  # [Q, M] int64
    prior: np.ndarray  # [Q, 2]


def _generate(p: SimulationParams, d: _Draws) -> _Sim:
    mu, sigma = _score_params(p, d)
    scores = _tn_icdf(mu, sigma, d.u)
    correct = d.v < _p_correct(p, d)
    index = _answer_index(p, d, correct)
    codes = np.argsort(d.order, axis=1).astype(np.int32)  # a random permutation per question
    answers = np.take_along_axis(codes, index, axis=1)
    prior = np.concatenate([mu + p.prior_mu_noise * d.prior[:, :1],
                            sigma * np.exp(p.prior_log_sigma_noise * d.prior[:, 1:])], axis=1)
    return _Sim(mu[:, 0], sigma[:, 0], scores, correct, index, answers, codes[:, 0],
                _tokens(p, d, correct), prior)


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"simulate_pool: {name} must be a positive integer; got {value!r}")
    return int(value)


def simulate_pool(n_questions: int = 500, n_samples: int = 64, seed: int = 0) -> Pool:
    """A SIMULATED pool of ``n_questions`` x ``n_samples`` graded, scored samples.

    Deterministic given ``seed``; see the module docstring for the model and its calibration.
    The pool carries correctness, answer codes, output tokens and a noisy predictor prior.

    Example:
        >>> pool = simulate_pool(3, 8, seed=1)
        >>> pool.scores.shape, pool.simulated, pool.ids[0]
        ((3, 8), True, 'sim-00000')
    """
    n_questions = _check_count("n_questions", n_questions)
    n_samples = _check_count("n_samples", n_samples)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"simulate_pool: seed must be a non-negative integer; got {seed!r}")
    params = CALIBRATION
    draws = _draw(np.random.default_rng(int(seed)), n_questions, n_samples, params.n_distractors)
    sim = _generate(params, draws)
    meta = {"simulated": True, "source": SOURCE, "seed": int(seed),
            "generator": "optscale.replay._simulate.simulate_pool",
            "calibration_date": CALIBRATION_DATE, "params": dataclasses.asdict(params)}
    return Pool(scores=sim.scores, lengths=np.full(n_questions, n_samples, np.int64),
                answers=sim.answers, correct=sim.correct, tokens=sim.tokens,
                ids=tuple(f"sim-{i:05d}" for i in range(n_questions)), prior=sim.prior,
                meta=meta)


# ---- statistics the calibration targets (used by the calibration script and the tests) --------

def _moment_quantiles(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quantiles (MOMENT_LEVELS) of per-question score mean and population std."""
    return (np.percentile(scores.mean(axis=1), MOMENT_LEVELS),
            np.percentile(scores.std(axis=1), MOMENT_LEVELS))


def _bon_accuracy(scores: np.ndarray, correct: np.ndarray, ns=BON_NS) -> np.ndarray:
    """Accuracy of the highest-scoring sample among the first N, for each N in ``ns``."""
    rows = np.arange(scores.shape[0])
    return np.array([correct[rows, np.argmax(scores[:, :n], axis=1)].mean() for n in ns])


def _majority_accuracy(answers: np.ndarray, correct_code: np.ndarray, n_codes: int,
                       ns=MAJ_NS) -> np.ndarray:
    """Majority-vote accuracy over the first N samples; ties go to the answer seen first."""
    m = answers.shape[1]
    hits = answers[:, :, None] == np.arange(n_codes)
    counts = np.cumsum(hits, axis=1, dtype=np.int32)
    first = np.where(hits.any(axis=1), hits.argmax(axis=1), m)
    out = []
    for n in ns:
        c = counts[:, n - 1, :]
        # Most votes wins; among equal counts the smaller first-appearance index wins.
        key = c * (m + 1) - np.where(c > 0, first, m)
        out.append(np.mean(np.argmax(key, axis=1) == correct_code))
    return np.array(out)


def _statistics(sim: _Sim, n_codes: int) -> dict[str, float]:
    """Every calibrated statistic of a simulated pool, by CALIBRATION_TARGETS name."""
    qm, qs = _moment_quantiles(sim.scores)
    stats = {f"score_mean_q{lv:02d}": float(x) for lv, x in zip(MOMENT_LEVELS, qm, strict=True)}
    stats |= {f"score_std_q{lv:02d}": float(x) for lv, x in zip(MOMENT_LEVELS, qs, strict=True)}
    width = sim.scores.shape[1]
    bon_ns = tuple(n for n in BON_NS if n <= width)
    maj_ns = tuple(n for n in MAJ_NS if n <= width)
    bon = _bon_accuracy(sim.scores, sim.correct, bon_ns)
    maj = _majority_accuracy(sim.answers, sim.correct_code, n_codes, maj_ns)
    stats |= {f"bon_acc_{n}": float(x) for n, x in zip(bon_ns, bon, strict=True)}
    stats |= {f"maj_acc_{n}": float(x) for n, x in zip(maj_ns, maj, strict=True)}
    stats["tokens_per_sample"] = float(sim.tokens.mean())
    return stats


def calibration_table() -> str:
    """The calibration table (statistic, published target, achieved, MC SD at Q=2,000) as text."""
    lines = [f"{'statistic':<18} {'target':>10} {'achieved':>10} {'MC sd':>8}"]
    for name, t in CALIBRATION_TARGETS.items():
        lines.append(f"{name:<18} {t.target:>10.4g} {t.achieved:>10.4g} {t.mc_sd:>8.2g}")
    return "\n".join(lines)
