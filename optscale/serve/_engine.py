"""One client request: the policy loop over n = 1 upstream requests, scoring, the log record.

A request starts its policy (``start`` / ``update``), and each round draws the ``n_more``
samples the policy asks for as that many concurrent n = 1 upstream requests (the engines that
cannot cancel part of an n > 1 group, SGLang, lose nothing that way, and vLLM aborts a request
whose connection closes). Once a round is in, its samples are scored (when the policy reads
scores, or always with a free scorer such as the logprob confidence), their answers extracted,
and the policy told; it stops or asks for more. A request is never given more samples than its
``max_n`` (the policy's ``n_max``, a client's ``optscale.max_n``, the token budget).

Cancellation (the client went away, the server stops): every upstream request still running is
cancelled and awaited (its connection closed) before the engine returns, so no upstream request
outlives its client request. Whatever happened, the samples drawn are logged: a stopping server
cancels the requests still running (:meth:`Engine.aclose`) and closes the log only once their
records are in.

Failures: an upstream request that fails for good (after the client's retries) ends the request
once its round is in, with ``status="upstream_error"``: the caller answers with the best sample
so far, or with an error when there is none. A scorer failure ends a request whose policy reads
scores (``scorer_error``); a policy error ends it with ``policy_error``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import math
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from optscale.policies import Policy
from optscale.sampling._openai import OpenAIError, _choice_tokens
from optscale.serve._knobs import Knobs, with_budget

__all__ = ["Drawn", "Engine", "Job", "Outcome"]

logger = logging.getLogger("optscale.serve")

_HEAVY = ("optscale0", "optscalet")  # policies whose update fits a distribution (JAX): threads


@dataclasses.dataclass
class Drawn:
    """One sample: what the upstream returned for one n = 1 request, and what was made of it."""

    text: str
    tokens: int
    finish_reason: str | None = None
    message: dict[str, Any] | None = None  # chat: the upstream's message object
    logprobs: Any = None  # the choice's logprobs, as the upstream sent them
    token_logprobs: list[float] | None = None  # log-probability of each sampled token
    prompt_tokens: int | None = None
    score: float = math.nan
    answer: Any = None


@dataclasses.dataclass
class Job:
    """One client request, prepared for the engine."""

    endpoint: str  # "chat" or "completion"
    body: dict[str, Any]  # the upstream body of one sample (model set; no n, no stream)
    question: str  # what the scorer and the log see: the prompt or the last user message
    knobs: Knobs
    request_id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)
    messages: list[Any] | None = None
    want_logprobs: bool = False  # the client asked for them (else they are not returned)
    created: float = dataclasses.field(default_factory=time.time)

    @property
    def path(self) -> str:
        return "chat/completions" if self.endpoint == "chat" else "completions"

    @functools.cached_property
    def data(self) -> bytes:
        """``body`` as JSON, encoded once for all the request's samples."""
        return json.dumps(self.body).encode()


@dataclasses.dataclass
class Outcome:
    """What the engine did for one :class:`Job`."""

    job: Job
    policy: Policy
    n_max: int
    samples: list[Drawn] = dataclasses.field(default_factory=list)
    chosen: int | None = None
    status: str = "ok"  # ok | budget | upstream_error | scorer_error | policy_error | cancelled
    stop_reason: str | None = None
    confidence: float | None = None
    n_star: int | None = None
    error: BaseException | None = None
    logged: asyncio.Future[None] | None = None

    @property
    def completion_tokens(self) -> int:
        return sum(s.tokens for s in self.samples)

    @property
    def prompt_tokens(self) -> int:
        for s in self.samples:
            if s.prompt_tokens is not None:
                return s.prompt_tokens
        return 0

    @property
    def sample(self) -> Drawn | None:
        """The chosen sample (None when there is none)."""
        return None if self.chosen is None else self.samples[self.chosen]

    def summary(self) -> dict[str, Any]:
        """The ``optscale`` field of the response."""
        return {
            "n_used": len(self.samples), "n_max": self.n_max, "status": self.status,
            "stop_reason": self.stop_reason, "confidence": self.confidence,
            "n_star": self.n_star, "chosen": self.chosen,
            "scores": [None if math.isnan(s.score) else s.score for s in self.samples],
            "answers": [_jsonable(s.answer) for s in self.samples],
            "tokens": [s.tokens for s in self.samples],
            "policy": self.policy.describe(), "policy_name": self.job.knobs.policy_name,
            "request_id": self.job.request_id,
            "error": None if self.error is None else _message(self.error)}

    def record(self, model: str, answers: bool) -> dict[str, Any]:
        """The request log's line (pool JSONL; see :mod:`optscale.serve._log`)."""
        samples = []
        for s in self.samples:
            sample: dict[str, Any] = {"score": None if math.isnan(s.score) else s.score,
                                      "tokens": s.tokens}
            if answers:
                sample["answer"] = _jsonable(s.answer)
            sample["text"] = s.text
            sample["finish_reason"] = s.finish_reason
            samples.append(sample)
        job = self.job
        out: dict[str, Any] = {"id": job.request_id, "question": job.question}
        if job.knobs.gold is not None:
            out["gold"] = job.knobs.gold
        out.update(samples=samples, endpoint=job.endpoint, model=model,
                   policy=self.policy.describe(), policy_name=job.knobs.policy_name,
                   status=self.status, stop_reason=self.stop_reason, chosen=self.chosen,
                   prompt_tokens=self.prompt_tokens, time=job.created)
        if job.messages is not None:
            out["messages"] = job.messages
        if self.error is not None:
            out["error"] = _message(self.error)
        return out


def _jsonable(value: Any) -> Any:
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


def _message(err: BaseException) -> str:
    return str(err) or type(err).__name__


# -- parsing one n = 1 answer ------------------------------------------------------------------

def parse_sample(answer: Any, chat: bool) -> Drawn:
    """The sample of an n = 1 completion answer; a malformed one raises (an unusable
    response: not retried)."""
    choices = answer["choices"]
    if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0], dict):
        raise TypeError("choices must be a list of exactly one object (n = 1)")
    choice = choices[0]
    message = None
    if chat:
        message = choice["message"]
        if not isinstance(message, dict):
            raise TypeError("choices[0].message must be an object")
        text = message.get("content")
        if text is None:
            text = ""  # a refusal or a tool call: no content
    else:
        text = choice["text"]
    if not isinstance(text, str):
        raise TypeError(f"choices[0].{'message.content' if chat else 'text'} must be a string")
    usage = answer.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    tokens = _choice_tokens(choice, chat)
    if tokens is None:
        tokens = usage.get("completion_tokens")
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
        raise TypeError("no completion token count (usage.completion_tokens)")
    prompt_tokens = usage.get("prompt_tokens")
    if isinstance(prompt_tokens, bool) or not isinstance(prompt_tokens, int):
        prompt_tokens = None
    finish = choice.get("finish_reason")
    return Drawn(text, tokens, finish if isinstance(finish, str) else None, message,
                 choice.get("logprobs"), _token_logprobs(choice.get("logprobs"), chat),
                 prompt_tokens)


def _token_logprobs(logprobs: Any, chat: bool) -> list[float] | None:
    if not isinstance(logprobs, dict):
        return None
    if chat:
        content = logprobs.get("content")
        if not isinstance(content, list):
            return None
        values = [c.get("logprob") if isinstance(c, dict) else None for c in content]
    else:
        values = logprobs.get("token_logprobs")
        if not isinstance(values, list):
            return None
    return [float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan
            for v in values]


# -- the engine --------------------------------------------------------------------------------

class Engine:
    """Runs :class:`Job` s (see the module docstring). Stateless across requests apart from the
    shared upstream client, the token bucket and the metrics.

    Args:
        upstream: an :class:`~optscale.serve._upstream.Upstream`.
        scorer: an async scorer (:mod:`optscale.serve._scorers`) or None.
        extract: the answer extractor (text -> answer) or None.
        log: a :class:`~optscale.serve._log.RequestLog` or None.
        metrics: a :class:`~optscale.serve._metrics.Metrics` or None.
        budget: a :class:`~optscale.serve._budget.TokenBucket` or None.
        model: the model name (recorded in the log).
    """

    def __init__(self, upstream: Any, scorer: Any = None,
                 extract: Callable[[str], Any] | None = None, log: Any = None,
                 metrics: Any = None, budget: Any = None, model: str = "") -> None:
        self.upstream, self.scorer, self.extract = upstream, scorer, extract
        self.log, self.metrics, self.budget, self.model = log, metrics, budget, model
        self.needs_logprobs = bool(getattr(scorer, "needs_logprobs", False))
        self._tasks: set[asyncio.Task[Outcome]] = set()

    def spawn(self, job: Job) -> tuple[asyncio.Task[Outcome], Outcome]:
        """:meth:`run` as a task of its own, which :meth:`aclose` waits for, and the
        :class:`Outcome` it fills in (which the task's result is, and which a cancelled task
        leaves behind with what was drawn)."""
        out = self.outcome(job)

        async def run() -> Outcome:  # whatever fails, fails in the task (a 500 / error event)
            return await self.run(job, out)

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task, out

    def outcome(self, job: Job) -> Outcome:
        """A new, empty :class:`Outcome` of ``job``: its policy and cap, the token budget
        applied."""
        policy, cap = job.knobs.policy, job.knobs.max_n
        if self.budget is not None:
            allowed = self.budget.cap(cap)
            if allowed < cap:
                policy, cap = with_budget(policy, allowed), allowed
        return Outcome(job, policy, cap)

    async def aclose(self, timeout: float = 30.0) -> None:
        """Cancel the requests still running and wait (at most ``timeout`` seconds) until they
        have ended and submitted their log records: call it before closing the log."""
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=timeout)
            if late:
                logger.error("%d requests did not end within %.0f s of the server stopping; "
                             "their samples may be missing from the log", len(late), timeout)

    # -- one request -------------------------------------------------------------------------

    async def run(self, job: Job, out: Outcome | None = None) -> Outcome:
        """Run one request to its end, filling in ``out`` (default: :meth:`outcome`);
        cancelling the awaiting task cancels its upstream requests (awaited) and logs what was
        drawn."""
        if out is None:
            out = self.outcome(job)
        policy, cap = out.policy, out.n_max
        limited = cap < job.knobs.max_n  # the token budget lowered it
        decision = None
        try:
            if policy.uses_prior:  # OptScale^t predicts its prior from the question (a model)
                state = await asyncio.to_thread(policy.start, question=job.question)
            else:
                state = policy.start()
            decision = policy.update(state)
            while not decision.stop:
                k = min(decision.n_more, cap - len(out.samples))
                if k <= 0:
                    out.stop_reason = "budget"  # the cap the policy could not take itself
                    break
                new, error = await self._round(job, out, k)
                if new:
                    await self._absorb(job, out, policy, new)
                    if out.status == "ok":
                        try:
                            decision = await self._update(
                                policy, state, [s.score for s in new],
                                [s.answer for s in new], [s.tokens for s in new])
                        except Exception as err:  # the policy failed: stop, keep the samples
                            out.status, out.error = "policy_error", err
                if error is not None:
                    out.status, out.error = "upstream_error", error
                if out.status != "ok":
                    break
            if decision is not None and decision.stop and out.stop_reason is None:
                out.stop_reason = decision.reason
            if decision is not None:
                out.confidence, out.n_star = decision.confidence, decision.n_star
            if out.status == "ok" and limited and len(out.samples) >= cap:
                out.status = "budget"
        except asyncio.CancelledError:
            out.status = "cancelled"
            raise
        except Exception as err:  # a bug: the samples are still logged, the caller sees it
            out.status, out.error = "internal_error", err
            raise
        finally:
            if out.status not in ("ok", "budget"):
                out.stop_reason = out.stop_reason or out.status
            self._choose(out)
            if self.log is not None and out.samples:
                out.logged = self.log.submit(out.record(self.model, self.extract is not None))
                if out.status in ("cancelled", "internal_error"):
                    # nobody awaits it: a failed write is reported by the writer, not lost
                    out.logged.add_done_callback(_retrieve)
        return out

    def _choose(self, out: Outcome) -> None:
        if not out.samples:
            return
        scores = [s.score for s in out.samples]
        answers = [s.answer for s in out.samples]
        try:
            out.chosen = out.policy.selection.choose(scores, answers)
        except Exception:  # unhashable answers from a custom extractor: the best score
            finite = np.isfinite(np.asarray(scores, np.float64))
            out.chosen = int(np.argmax(np.where(finite, scores, -np.inf))) if finite.any() \
                else 0
        if out.chosen is None:
            out.chosen = 0

    async def _update(self, policy: Policy, state: Any, scores: list[float], answers: list[Any],
                      tokens: list[int]) -> Any:
        if _heavy(policy):  # a fit (JAX): off the event loop
            return await asyncio.to_thread(policy.update, state, scores, answers, tokens)
        return policy.update(state, scores, answers, tokens)

    async def _round(self, job: Job, out: Outcome, k: int
                     ) -> tuple[list[Drawn], BaseException | None]:
        """Draw ``k`` samples concurrently; the ones that arrived, in order, and the first
        failure. Cancelled: the requests still running are cancelled and awaited, and the
        samples already in are kept on ``out`` (for the log)."""
        start = len(out.samples)
        tasks = [asyncio.ensure_future(self._draw(job, start + i)) for i in range(k)]
        try:
            await asyncio.wait(tasks)
        except asyncio.CancelledError:
            for t in tasks:
                t.cancel()
            while not all(t.done() for t in tasks):  # connections closed before we return
                try:
                    await asyncio.wait(tasks)
                except asyncio.CancelledError:  # cancelled again (the server stopping too):
                    pass  # the samples already in must still reach the log
            out.samples.extend(_results(tasks)[0])
            raise
        new, error = _results(tasks)
        out.samples.extend(new)
        return new, error

    async def _draw(self, job: Job, index: int) -> Drawn:
        body: dict[str, Any] | bytes = job.data
        seed = job.body.get("seed")
        if isinstance(seed, int) and not isinstance(seed, bool) and index:
            body = {**job.body, "seed": seed + index}  # else every sample would be the same
        chat = job.endpoint == "chat"
        metrics = self.metrics
        if metrics is not None:
            metrics.upstream_in_flight.inc()
        try:
            sample = await self.upstream.post_json(job.path, body,
                                                   lambda a: parse_sample(a, chat))
        finally:
            if metrics is not None:
                metrics.upstream_in_flight.dec()
        if self.budget is not None:
            self.budget.spend(sample.tokens)
        return sample

    async def _absorb(self, job: Job, out: Outcome, policy: Policy, new: list[Drawn]) -> None:
        """Score the new samples (where needed) and extract their answers."""
        if self.extract is not None:
            for s in new:
                try:
                    s.answer = self.extract(s.text)
                except Exception:  # an extractor that fails on one text: no answer for it
                    s.answer = None
        scorer = self.scorer
        if scorer is None or not (policy.uses_verifier or getattr(scorer, "free", False)):
            return
        started = time.perf_counter()
        try:
            scores = await scorer.score(job.question, [s.text for s in new],
                                        [s.token_logprobs for s in new])
            if len(scores) != len(new):
                raise ValueError(f"the scorer gave {len(scores)} scores for {len(new)} texts")
        except Exception as err:
            if self.metrics is not None:
                self.metrics.scorer_errors.inc()
            if policy.uses_verifier:  # the policy cannot go on without them
                out.status, out.error = "scorer_error", err
            return
        finally:
            if self.metrics is not None:
                self.metrics.scorer_latency.observe(time.perf_counter() - started)
        for s, score in zip(new, scores, strict=True):
            s.score = float(score) if score is not None else math.nan


def _heavy(policy: Policy) -> bool:
    return policy.kind in _HEAVY or any(_heavy(m) for m in getattr(policy, "members", ()))


def _results(tasks: list[asyncio.Future[Drawn]]) -> tuple[list[Drawn], BaseException | None]:
    new, error = [], None
    for t in tasks:
        if t.cancelled():
            continue
        exc = t.exception()
        if exc is None:
            new.append(t.result())
        elif error is None:
            error = exc if isinstance(exc, OpenAIError) else OpenAIError(
                "upstream", None, f"{type(exc).__name__}: {exc}")
    return new, error


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
