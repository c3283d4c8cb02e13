"""The run loop: a policy drives a generator and a scorer until it says stop.

Per question: ask the policy (``start`` / ``update``) how many samples to draw, draw them, score
them, tell the policy, repeat; answer with the best-scoring sample. :func:`run_batch` advances
many questions together: each round, questions that want the same number of samples share one
generator call.

Nothing already paid for is dropped: when the generator or scorer fails (after ``retries``
retries with exponential backoff), the question stops and its result keeps every sample drawn so
far, every score computed so far, and the error.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from optscale._policy import OptScale
from optscale.sampling._types import Generator, Sample, Scorer, _check_samples, _check_scores

__all__ = ["RunResult", "run", "run_batch"]

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What one question's run produced.

    ``samples`` are all completions drawn, in drawing order; ``scores[i]`` scores
    ``samples[i]``. After a scorer failure the last ``len(samples) - len(scores)`` samples are
    unscored (kept: they were paid for). ``answer`` is the text of the best-scoring sample.
    """

    question: str
    answer: str | None
    best_index: int | None
    samples: tuple[Sample, ...]
    scores: tuple[float, ...]
    n_star: int | None
    error: BaseException | None = None

    @property
    def n_used(self) -> int:
        """Samples drawn (scored or not)."""
        return len(self.samples)

    @property
    def tokens(self) -> int:
        """Output tokens of every sample drawn."""
        return sum(s.tokens for s in self.samples)

    @property
    def ok(self) -> bool:
        """True when the policy stopped the run (no error)."""
        return self.error is None


def _partial(err: BaseException) -> list | None:
    """Samples a failed generator call still delivered (``err.partial``, per prompt), if any."""
    partial = getattr(err, "partial", None)
    return partial if partial and any(partial) else None


def _with_retries(fn: Callable[[], T], retries: int, backoff: float) -> T:
    for attempt in range(retries + 1):
        try:
            return fn()
        except Exception as err:
            # a call that delivered part of its samples is not repeated: they are paid for
            if attempt == retries or _partial(err) is not None:
                raise
            time.sleep(backoff * 2**attempt)
    raise AssertionError("unreachable")


@dataclasses.dataclass
class _Question:
    text: str
    state: Any
    decision: Any
    samples: list[Sample] = dataclasses.field(default_factory=list)
    scores: list[float] = dataclasses.field(default_factory=list)
    error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self.error is not None or self.decision.stop

    def result(self) -> RunResult:
        best = int(np.argmax(self.scores)) if self.scores else None
        return RunResult(self.text, None if best is None else self.samples[best].text, best,
                         tuple(self.samples), tuple(self.scores), self.decision.n_star,
                         self.error)


def _absorb(q: _Question, samples: list[Sample], scorer: Scorer, policy: OptScale,
            retries: int, backoff: float) -> None:
    """Keep ``samples``, score them and tell the policy; a scorer failure ends the question
    with the samples kept unscored."""
    q.samples.extend(samples)
    texts = [s.text for s in samples]
    try:
        scores = _with_retries(lambda: _check_scores(scorer.score(q.text, texts), texts),
                               retries, backoff)
    except Exception as err:
        q.error = err
        return
    q.scores.extend(scores)
    q.decision = policy.update(q.state, scores)


def run_batch(questions: Sequence[str], generator: Generator, scorer: Scorer, policy: OptScale,
              *, priors: Sequence[tuple[float, float]] | None = None, retries: int = 2,
              backoff: float = 0.5, progress: bool = False, **sampling: Any) -> list[RunResult]:
    """Run ``policy`` on every question; returns one :class:`RunResult` per question, in order.

    Args:
        questions: the prompts.
        generator: anything with ``generate(prompts, n, **sampling)`` (see :class:`Generator`).
        scorer: anything with ``score(prompt, texts)`` (see :class:`Scorer`).
        policy: an :class:`optscale.OptScale` policy (its ``n_max`` bounds every question).
        priors: (mu0, sigma0) per question, for policies that use a prior (OptScale^t); None:
            the policy's predictor predicts them from the questions (``OptScaleT.prior_for``).
        retries: retries of a failed generator or scorer call (bounded; 0 = none).
        backoff: seconds before the first retry, doubling after each.
        progress: show a progress bar over finished questions.
        **sampling: passed to ``generator.generate`` (temperature, top_p, ...).
    """
    if not isinstance(policy, OptScale):
        raise TypeError(f"policy must be an OptScale policy; got {type(policy).__name__}")
    if retries < 0 or backoff < 0:
        raise ValueError(f"retries and backoff must be >= 0; got {retries}, {backoff}")
    if priors is not None and len(priors) != len(questions):
        raise ValueError(f"priors must have one (mu0, sigma0) per question: {len(priors)} for "
                         f"{len(questions)} questions")
    if priors is None and policy.uses_prior:
        # OptScale^t with no priors given: its predictor reads the questions, in one batch
        priors = list(zip(*policy.prior_for(questions), strict=True))
    todo = []
    for i, text in enumerate(questions):
        state = policy.start(None if priors is None else tuple(priors[i]))
        todo.append(_Question(text, state, policy.update(state)))
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(todo), desc="questions", unit="q")
        bar.update(sum(q.done for q in todo))
    while True:
        open_ = [q for q in todo if not q.done]
        if not open_:
            break
        by_n: dict[int, list[_Question]] = {}
        for q in open_:
            by_n.setdefault(q.decision.n_more, []).append(q)
        for n, group in by_n.items():
            prompts = [q.text for q in group]
            error = None
            try:
                drawn = _with_retries(
                    lambda p=prompts, n=n: _check_samples(generator.generate(p, n, **sampling),
                                                          p, n), retries, backoff)
            except Exception as err:  # every question of the call stops with what it has
                error = err
                try:
                    drawn = _check_samples(_partial(err) or [[] for _ in group], prompts, n)
                except ValueError:
                    drawn = [[] for _ in group]
            for q, samples in zip(group, drawn, strict=True):
                if samples:
                    _absorb(q, samples, scorer, policy, retries, backoff)
                elif error is None:
                    q.error = RuntimeError(f"generator returned no samples (asked for {n})")
                if error is not None:
                    q.error = q.error or error
        if bar is not None:
            bar.update(sum(q.done for q in open_))
    if bar is not None:
        bar.close()
    return [q.result() for q in todo]


def run(question: str, generator: Generator, scorer: Scorer, policy: OptScale, *,
        prior: tuple[float, float] | None = None, retries: int = 2, backoff: float = 0.5,
        **sampling: Any) -> RunResult:
    """Run ``policy`` on one question (see :func:`run_batch`).

    Example:
        >>> import optscale
        >>> from optscale.sampling import CallableGenerator, CallableScorer
        >>> gen = CallableGenerator(
        ...     lambda prompts, n: [[(f"{p} #{i}", 10) for i in range(n)] for p in prompts])
        >>> scorer = CallableScorer(lambda prompt, texts: [0.97] * len(texts))
        >>> res = optscale.run("2+2?", gen, scorer, optscale.OptScale0(target=0.95, n_peek=4))
        >>> res.n_used, res.tokens, res.ok
        (4, 40, True)
    """
    priors = None if prior is None else [prior]
    return run_batch([question], generator, scorer, policy, priors=priors, retries=retries,
                     backoff=backoff, **sampling)[0]
