"""Scorers for ``optscale serve``: async, one call per round of samples of one request.

- :class:`LogprobConfidence`: verifier-free, from the upstream's token log-probabilities (the
  engine asks the upstream for them). Per token ``p = exp(logprob of the sampled token)``;
  ``"mean"`` is the mean of ``p`` over the completion, ``"lowest-window"`` the minimum over
  sliding windows of ``window`` tokens (the whole completion when shorter) of the window's
  mean ``p``. Both lie in [0, 1]; a completion without tokens is not scored (NaN).
  DeepConf (Fu et al., 2025, "Deep Think with Confidence") uses a different token statistic:
  the negative mean log-probability of the top-k candidate tokens, ``C_i = -(1/k) sum_j log
  P_i(j)`` (unbounded above, large when the distribution is peaked), averaged over sliding
  groups of tokens, with the lowest group as the trace's confidence. ``"lowest-window"`` keeps
  its aggregation (the least confident stretch decides) and replaces ``C_i`` by the sampled
  token's probability, which needs no top-k lists and is bounded: both grow as the model
  becomes surer, but they are not monotone functions of each other token by token.
- :class:`HTTPScorer`: a reward model behind HTTP: vLLM's ``/pooling`` (reward models: the
  returned ``data`` is a number, a vector or one vector per token/step; the score is
  ``vector[index]`` of the last row, or of every row aggregated by ``step``), vLLM's
  ``/classify`` (``probs[index]``), or a generic JSON endpoint ``POST {"prompt": ...,
  "completions": [...]} -> {"scores": [...]}``.
- :class:`LocalScorer`: a synchronous :class:`optscale.sampling.Scorer` (the local Hugging
  Face ORM/PRM scorers) run in a worker thread, one call at a time, off the event loop.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from optscale.replay._readers import AGGREGATES, _aggregate
from optscale.sampling._openai import OpenAIError

__all__ = ["HTTP_KINDS", "HTTPScorer", "LocalScorer", "LogprobConfidence", "Scorer",
           "lowest_window_confidence", "mean_confidence"]

HTTP_KINDS = ("pooling", "classify", "json")


class Scorer(Protocol):
    """What the engine needs of a scorer.

    ``needs_logprobs``: the upstream must return token log-probabilities. ``free``: scoring
    costs nothing (no model): the engine then scores every sample, also for policies that do
    not read scores, so that the request log can be re-tuned on.
    """

    needs_logprobs: bool
    free: bool

    async def score(self, prompt: str, texts: Sequence[str],
                    logprobs: Sequence[Sequence[float] | None]) -> list[float]: ...

    def describe(self) -> str: ...


# -- verifier-free confidence ----------------------------------------------------------------

def _probabilities(logprobs: Sequence[float | None]) -> np.ndarray:
    """exp(logprob) per token; a missing value (None, NaN) is skipped, -inf is probability 0."""
    values = np.array([np.nan if v is None else float(v) for v in logprobs], np.float64)
    values = values[~np.isnan(values)]
    return np.exp(np.minimum(values, 0.0))  # a logprob above 0 is rounding: probability 1


def mean_confidence(logprobs: Sequence[float | None]) -> float:
    """Mean token probability of a completion, in [0, 1] (NaN without tokens)."""
    p = _probabilities(logprobs)
    return float(p.mean()) if p.size else math.nan


def lowest_window_confidence(logprobs: Sequence[float | None], window: int = 64) -> float:
    """The lowest mean token probability over sliding windows of ``window`` tokens (the whole
    completion when shorter), in [0, 1] (NaN without tokens).

    >>> round(lowest_window_confidence([0.0, 0.0, -50.0, 0.0], window=2), 3)
    0.5
    """
    p = _probabilities(logprobs)
    if not p.size:
        return math.nan
    w = min(int(window), p.size)
    sums = np.convolve(p, np.ones(w), mode="valid")
    return float(np.clip(sums.min() / w, 0.0, 1.0))


class LogprobConfidence:
    """Verifier-free scores from token log-probabilities (see the module docstring)."""

    needs_logprobs = True
    free = True

    def __init__(self, method: str = "mean", window: int = 64) -> None:
        if method not in ("mean", "lowest-window"):
            raise ValueError(f"logprob confidence: method must be mean or lowest-window; got "
                             f"{method!r}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"logprob confidence: window must be an integer >= 1; got "
                             f"{window!r}")
        self.method = method
        self.window = window

    def describe(self) -> str:
        return "logprob-mean" if self.method == "mean" else f"logprob-window:{self.window}"

    async def score(self, prompt: str, texts: Sequence[str],
                    logprobs: Sequence[Sequence[float] | None]) -> list[float]:
        out = []
        for lp in logprobs:
            if lp is None:
                out.append(math.nan)  # the upstream sent none: not scored
            elif self.method == "mean":
                out.append(mean_confidence(lp))
            else:
                out.append(lowest_window_confidence(lp, self.window))
        return out


# -- a reward model behind HTTP --------------------------------------------------------------

def _pooled_score(data: Any, index: int, step: str) -> float:
    """The documented scalar of one ``/pooling`` result: a number as it is; a vector (a flat
    list): ``vector[index]``; one vector per token/step (a list of lists): ``row[index]`` of
    every row, aggregated by ``step`` (``last``: the last row's)."""
    if isinstance(data, (int, float)) and not isinstance(data, bool):
        return float(data)
    if not isinstance(data, list) or not data:
        raise TypeError(f"pooling data must be a number or a non-empty list; got {data!r:.80}")
    if not isinstance(data[0], list):
        return float(_pick(data, index))
    return _aggregate([float(_pick(row, index)) for row in data], step)


def _pick(row: Any, index: int) -> Any:
    if isinstance(row, (int, float)) and not isinstance(row, bool):
        return row
    if not isinstance(row, list) or not row:
        raise TypeError(f"expected a non-empty vector; got {row!r:.80}")
    return row[index]


class HTTPScorer:
    """A reward model behind HTTP (see the module docstring); uses the app's upstream client
    rules (deadline, retries, size cap) on its own connection pool.

    Args:
        kind: ``pooling``, ``classify`` or ``json``.
        url: the endpoint (for vLLM: ``http://host:port/pooling`` or ``.../classify``).
        model: the ``model`` field sent to vLLM (None: left out; vLLM uses its only model).
        index: the element of the returned vector that is the score (default -1, the last:
            the "good" class of a two-class head).
        step: ``last`` (default), ``min``, ``mean`` or ``prod`` over a per-token/step result.
        input: ``messages`` (default: one request per completion, a user turn with the prompt
            and an assistant turn with the completion, so that vLLM applies the reward model's
            chat template) or ``text`` (one request per round, ``input`` = prompt + "\\n\\n" +
            completion per completion). The JSON kind always sends one request per round.
        client: an :class:`optscale.serve._upstream.Upstream` for ``url``'s server.
    """

    needs_logprobs = False
    free = False

    def __init__(self, kind: str, url: str, client: Any, *, model: str | None = None,
                 index: int = -1, step: str = "last", input: str = "messages") -> None:
        if kind not in HTTP_KINDS:
            raise ValueError(f"scorer kind must be one of {', '.join(HTTP_KINDS)}; got {kind!r}")
        if step not in AGGREGATES:
            raise ValueError(f"scorer step must be one of {', '.join(AGGREGATES)}; got {step!r}")
        if input not in ("messages", "text"):
            raise ValueError(f"scorer input must be messages or text; got {input!r}")
        self.kind, self.url, self.client = kind, url, client
        self.model, self.index, self.step, self.input = model, int(index), step, input

    def describe(self) -> str:
        return f"{self.kind}:{self.url}"

    def _with_model(self, body: dict[str, Any]) -> dict[str, Any]:
        return body if self.model is None else {"model": self.model, **body}

    async def score(self, prompt: str, texts: Sequence[str],
                    logprobs: Sequence[Sequence[float] | None]) -> list[float]:
        if not texts:
            return []
        if self.kind == "json":
            scores = await self.client.post_json(
                self.url, {"prompt": prompt, "completions": list(texts)}, self._json_scores)
            if len(scores) != len(texts):
                raise OpenAIError(self.url, 200, f"{len(scores)} scores for {len(texts)} "
                                  "completions")
            return scores
        if self.input == "text":
            body = self._with_model({"input": [f"{prompt}\n\n{t}" for t in texts]})
            return await self.client.post_json(self.url, body,
                                               lambda a: self._vllm_scores(a, len(texts)))
        jobs = [self.client.post_json(
            self.url, self._with_model({"messages": [{"role": "user", "content": prompt},
                                                     {"role": "assistant", "content": t}]}),
            lambda a: self._vllm_scores(a, 1)[0]) for t in texts]
        tasks = [asyncio.ensure_future(j) for j in jobs]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for t in tasks:  # one failed (or we were cancelled): the others are not needed
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    @staticmethod
    def _json_scores(answer: Any) -> list[float]:
        scores = answer["scores"]
        if not isinstance(scores, list):
            raise TypeError("scores must be a list of numbers")
        return [_finite(s) for s in scores]

    def _vllm_scores(self, answer: Any, count: int) -> list[float]:
        data = answer["data"]
        if not isinstance(data, list) or len(data) != count:
            raise TypeError(f"expected data with {count} result(s)")
        data = sorted(data, key=lambda d: d.get("index", 0) if isinstance(d, dict) else 0)
        if self.kind == "classify":
            return [_finite(_pick(d["probs"], self.index)) for d in data]
        return [_finite(_pooled_score(d["data"], self.index, self.step)) for d in data]


def _finite(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"a score must be a number; got {value!r:.60}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"a score must be finite; got {value}")
    return value


# -- a local (synchronous) scorer off the event loop -----------------------------------------

class LocalScorer:
    """A synchronous ``score(prompt, texts)`` scorer (``HFRewardScorer``, ``HFPRMScorer``, any
    :class:`optscale.sampling.Scorer`) run in a worker thread, one call at a time (the models
    are not safe to call concurrently, and one call already uses the machine's cores)."""

    needs_logprobs = False
    free = False

    def __init__(self, scorer: Any, name: str | None = None) -> None:
        if not callable(getattr(scorer, "score", None)):
            raise TypeError("scorer must have a score(prompt, texts) method")
        self.scorer = scorer
        self.name = name or type(scorer).__name__
        self._lock = threading.Lock()

    def describe(self) -> str:
        return self.name

    def _score(self, prompt: str, texts: list[str]) -> list[float]:
        with self._lock:
            scores = list(self.scorer.score(prompt, texts))
        if len(scores) != len(texts):
            raise ValueError(f"{self.name}: {len(scores)} scores for {len(texts)} texts")
        return [_finite(s) for s in scores]

    async def score(self, prompt: str, texts: Sequence[str],
                    logprobs: Sequence[Sequence[float] | None]) -> list[float]:
        if not texts:
            return []
        return await asyncio.to_thread(self._score, prompt, list(texts))
