"""The run loop: a policy drives a generator and a scorer until it says stop.

Per question: ask the policy (``start`` / ``update``) how many samples to draw, draw them, score
them (and extract their answers, for votes), tell the policy, repeat; answer with the sample the
policy's selection rule chose. :func:`run_batch` advances many questions together: each round,
questions that want the same number of samples share one generator call. Any
:class:`optscale.policies.Policy` drives it; a policy that never reads scores (a vote with a
vote-based stopping rule) needs no scorer.

Nothing already paid for is dropped:

- a generator answer with malformed samples (not ``(text, tokens)``, too many) keeps its
  well-formed ones, and so does a failed call whose exception carries ``.partial``; only the
  missing samples are asked for again (``retries`` times at most, with capped exponential
  backoff);
- when the generator or scorer fails for good, or the policy raises, the question stops and its
  result keeps every sample drawn, every score computed, and the error;
- an interrupt (KeyboardInterrupt, SystemExit) or any other exception escaping the loop carries
  the results so far: ``err.partial_results`` (one :class:`RunResult` per question; unfinished
  ones have ``error`` set to the exception), and from :func:`run` also ``err.partial_result``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from optscale.policies import Policy
from optscale.sampling._types import (
    Generator,
    Sample,
    Scorer,
    _check_samples,
    _check_scores,
    _split_samples,
    check_int,
    check_number,
)

__all__ = ["MAX_BACKOFF", "RunResult", "run", "run_batch"]

T = TypeVar("T")

MAX_BACKOFF = 30.0  # seconds: retry delays double up to this (or up to ``backoff`` if larger)


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What one question's run produced.

    ``samples`` are all completions drawn, in drawing order; ``scores[i]`` scores
    ``samples[i]`` (NaN: not scored, as for a policy that reads no scores). After a scorer
    failure (or an interrupt) the last ``len(samples) - len(scores)`` samples are unscored
    (kept: they were paid for). ``answer`` is the text of sample ``chosen``, the one the
    policy's selection rule picked (for the best-score rule, ``best_index``).
    """

    question: str
    answer: str | None
    best_index: int | None
    samples: tuple[Sample, ...]
    scores: tuple[float, ...]
    n_star: int | None
    error: BaseException | None = None
    chosen: int | None = None  # the sample answered with (the policy's selection rule)
    answers: tuple[Any, ...] = ()  # the extracted answer of each scored sample (votes)

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


def _delay(backoff: float, attempt: int) -> float:
    """Seconds before retry ``attempt + 1``: ``backoff * 2**attempt``, capped."""
    return min(backoff * 2.0 ** min(attempt, 64), max(backoff, MAX_BACKOFF))


def _partial(err: BaseException, prompts: int, n: int) -> list[list[Sample]]:
    """The well-formed samples a failed call still delivered (``err.partial``, per prompt)."""
    partial = getattr(err, "partial", None)
    if partial is None:
        return [[] for _ in range(prompts)]
    try:
        return _split_samples(partial, [""] * prompts, n)[0]
    except Exception:  # .partial that is not one list per prompt: nothing can be kept
        return [[] for _ in range(prompts)]


def _with_retries(fn: Callable[[], T], retries: int, backoff: float) -> T:
    for attempt in range(retries + 1):
        try:
            return fn()
        except Exception:
            if attempt == retries:
                raise
            time.sleep(_delay(backoff, attempt))
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

    answers: list[Any] = dataclasses.field(default_factory=list)

    def result(self, policy: Policy, stopped: BaseException | None = None) -> RunResult:
        """The result so far; ``stopped``: the exception that ended the run before this question
        was done (it becomes the error)."""
        scores = np.asarray(self.scores, np.float64)
        finite = np.isfinite(scores)
        best = int(np.argmax(np.where(finite, scores, -np.inf))) if finite.any() else None
        chosen = policy.selection.choose(self.scores, self.answers) if self.scores else None
        error = self.error if self.done or stopped is None else stopped
        return RunResult(self.text, None if chosen is None else self.samples[chosen].text, best,
                         tuple(self.samples), tuple(self.scores), self.decision.n_star, error,
                         chosen, tuple(self.answers))


def _draw(group: list[_Question], n: int, generator: Generator, sampling: dict[str, Any],
          retries: int, backoff: float) -> None:
    """Draw ``n`` samples for every question of ``group`` into ``q.samples`` (as they arrive,
    so an interrupt loses nothing received). A failed call keeps its well-formed samples and is
    retried for the missing ones only; a question still missing samples after ``retries``
    retries gets the error. A call that succeeds with fewer samples than asked is accepted."""
    start = {id(q): len(q.samples) for q in group}

    def missing(q: _Question) -> int:
        return n - (len(q.samples) - start[id(q)])

    pending = list(group)
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(_delay(backoff, attempt - 1))
        by_k: dict[int, list[_Question]] = {}
        for q in pending:
            by_k.setdefault(missing(q), []).append(q)
        failed: list[tuple[_Question, BaseException]] = []
        for k, qs in by_k.items():
            prompts = [q.text for q in qs]
            try:
                rows = _check_samples(generator.generate(prompts, k, **sampling), prompts, k)
            except Exception as err:
                rows = _partial(err, len(qs), k)
                failed += [(q, err) for q in qs]
            except BaseException as stop:  # interrupted: keep what the call still delivered
                for q, row in zip(qs, _partial(stop, len(qs), k), strict=True):
                    q.samples.extend(row)
                raise
            for q, row in zip(qs, rows, strict=True):
                q.samples.extend(row)
        pending = [q for q, _ in failed if missing(q) > 0]
        if not pending:
            break
    else:
        errors = {id(q): err for q, err in failed}
        for q in pending:
            q.error = errors[id(q)]
    for q in group:
        if q.error is None and missing(q) == n:
            q.error = RuntimeError(f"generator returned no samples (asked for {n})")


def _absorb(q: _Question, scorer: Scorer | None, policy: Policy, answer: Any, retries: int,
            backoff: float) -> None:
    """Score the question's unscored samples, extract their answers and tell the policy; a
    scorer (or answer) failure ends the question with the samples kept unscored, a policy error
    ends it with the scores kept."""
    new = q.samples[len(q.scores):]
    texts = [s.text for s in new]
    if not texts:
        return
    try:
        scores = [np.nan] * len(texts) if scorer is None else _with_retries(
            lambda: _check_scores(scorer.score(q.text, texts), texts), retries, backoff)
        answers = None if answer is None else [answer(t) for t in texts]
    except Exception as err:
        q.error = q.error or err  # a generator error that came first stays the reason
        return
    q.scores.extend(scores)
    q.answers.extend(answers or [None] * len(texts))
    try:
        q.decision = policy.update(q.state, scores, answers, [s.tokens for s in new])
    except Exception as err:  # the policy failed on these scores: the question stops here
        q.error = q.error or err


def _attach(err: BaseException, name: str, value: Any) -> None:
    try:
        setattr(err, name, value)
    except (AttributeError, TypeError):  # an exception type that takes no attributes
        pass


def run_batch(questions: Sequence[str], generator: Generator, scorer: Scorer | None,
              policy: Policy, *, priors: Sequence[tuple[float, float]] | None = None,
              answer: Callable[[str], Any] | None = None, retries: int = 2,
              backoff: float = 0.5, progress: bool = False, **sampling: Any) -> list[RunResult]:
    """Run ``policy`` on every question; returns one :class:`RunResult` per question, in order.

    Args:
        questions: the prompts.
        generator: anything with ``generate(prompts, n, **sampling)`` (see :class:`Generator`).
        scorer: anything with ``score(prompt, texts)`` (see :class:`Scorer`); None for a
            policy that reads no scores (``policy.uses_verifier`` False: votes).
        policy: any :class:`optscale.policies.Policy` (its ``n_max`` bounds every question).
        priors: (mu0, sigma0) per question, for policies that use a prior (OptScale^t); None:
            the policy's predictor predicts them from the questions (``OptScaleT.prior_for``).
        answer: the final answer of a sample text (any hashable; None: none), for votes, e.g.
            ``optscale.replay.extract_boxed``; None: no answers (votes fall back to the first
            sample).
        retries: retries of a failed generator or scorer call (bounded; 0 = none). A generator
            retry asks only for the samples still missing.
        backoff: seconds before the first retry, doubling after each, at most
            ``max(backoff, MAX_BACKOFF)`` (30 s).
        progress: show a progress bar over finished questions.
        **sampling: passed to ``generator.generate`` (temperature, top_p, ...).

    Raises:
        BaseException: whatever stops the loop itself (KeyboardInterrupt, SystemExit, a failing
            progress bar...) is re-raised with ``.partial_results``: one :class:`RunResult` per
            question with everything drawn and scored so far (unfinished questions carry the
            exception as ``error``). Generator, scorer and policy failures do not escape: they
            end their question (``RunResult.error``).
    """
    if not isinstance(policy, Policy):
        raise TypeError(f"policy must be an optscale policy; got {type(policy).__name__}")
    if scorer is None and policy.uses_verifier:
        raise ValueError(f"scorer: {policy.describe()} reads scores; give a scorer")
    if answer is not None and not callable(answer):
        raise TypeError(f"answer must be a callable text -> answer; got {type(answer).__name__}")
    retries = check_int("retries", retries, 0)
    backoff = check_number("backoff", backoff, 0.0, hi=1e6)  # time.sleep takes no more
    if isinstance(questions, str):
        raise TypeError("questions must be a sequence of strings, not one string")
    questions = list(questions)
    bad = [i for i, q in enumerate(questions) if not isinstance(q, str)]
    if bad:
        raise TypeError(f"questions[{bad[0]}] must be a string; got "
                        f"{type(questions[bad[0]]).__name__}")
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
    try:
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
                _draw(group, n, generator, sampling, retries, backoff)
                for q in group:
                    _absorb(q, scorer, policy, answer, retries, backoff)
            if bar is not None:
                bar.update(sum(q.done for q in open_))
    except BaseException as stop:
        _attach(stop, "partial_results", [q.result(policy, stop) for q in todo])
        raise
    finally:
        if bar is not None:
            bar.close()
    return [q.result(policy) for q in todo]


def run(question: str, generator: Generator, scorer: Scorer | None, policy: Policy, *,
        prior: tuple[float, float] | None = None, answer: Callable[[str], Any] | None = None,
        retries: int = 2, backoff: float = 0.5, **sampling: Any) -> RunResult:
    """Run ``policy`` on one question (see :func:`run_batch`).

    An exception escaping the loop (KeyboardInterrupt, ...) carries ``.partial_result``, the
    :class:`RunResult` so far (and ``.partial_results``, the same in a list).

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
    if not isinstance(question, str):
        raise TypeError(f"question must be a string; got {type(question).__name__}")
    priors = None if prior is None else [prior]
    try:
        return run_batch([question], generator, scorer, policy, priors=priors, answer=answer,
                         retries=retries, backoff=backoff, **sampling)[0]
    except BaseException as stop:
        results = getattr(stop, "partial_results", None)
        if results:
            _attach(stop, "partial_result", results[0])
        raise
