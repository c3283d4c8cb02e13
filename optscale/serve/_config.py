"""The server's settings (:class:`ServeConfig`), the scorer specs and the answer extractors.

Scorer specs (``--scorer``): ``none``; ``logprob-mean``; ``logprob-window[:W]`` (lowest-window
confidence over ``W`` tokens, default 64); ``pooling:URL`` / ``classify:URL`` (vLLM's reward and
classification endpoints, e.g. ``pooling:http://rm:8001/pooling``); ``json:URL`` (a generic
``{"prompt", "completions"} -> {"scores"}`` endpoint); ``hf-reward:DIR`` / ``hf-prm:DIR`` (a
local Hugging Face outcome / process reward model, run in a worker thread).

Answer extractors (``--answer``, the final answer a vote groups by): ``boxed`` (the last
``\\boxed{...}``), ``last-line`` (the last non-empty line, stripped) or ``none``.
"""

from __future__ import annotations

import dataclasses
import math
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from optscale._selection import Selection
from optscale.policies import LeaderPosterior, Policy
from optscale.sampling._openai import MAX_RESPONSE_BYTES

__all__ = ["ANSWERS", "SCORER_KINDS", "ServeConfig", "answer_extractor", "default_policy",
           "parse_scorer", "scorer_needs_logprobs"]

ANSWERS = ("boxed", "last-line", "none")
SCORER_KINDS = ("none", "logprob-mean", "logprob-window", "pooling", "classify", "json",
                "hf-reward", "hf-prm")


def default_policy(scored: bool) -> Policy:
    """The policy of a server started without ``--policy``: the answer posterior
    (``LeaderPosterior(confidence=0.9, n_max=16)``), with a score-weighted vote when there is a
    scorer and a plain vote when there is none."""
    return LeaderPosterior(confidence=0.9, n_max=16,
                           selection=Selection("weighted" if scored else "vote"))


def _last_line(text: str) -> str | None:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else None


def answer_extractor(name: str) -> Callable[[str], str | None] | None:
    """The text -> final answer function of ``--answer NAME`` (None for ``none``)."""
    if name == "boxed":
        from optscale.replay._grading import extract_boxed

        return extract_boxed
    if name == "last-line":
        return _last_line
    if name == "none":
        return None
    raise ValueError(f"answer must be one of {', '.join(ANSWERS)}; got {name!r}")


def _http_url(text: str, what: str, example: str = "http://host:8001/pooling") -> str:
    parts = urllib.parse.urlsplit(text)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise ValueError(f"{what} must be an http(s) URL like {example}; got {text!r:.100}")
    return text


def parse_scorer(spec: str) -> tuple[str, str | int | None]:
    """``(kind, argument)`` of a scorer spec (see the module docstring); ValueError if bad."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("scorer spec must be a non-empty string such as none, logprob-mean or "
                         "pooling:http://host:8001/pooling")
    kind, sep, arg = spec.strip().partition(":")
    if kind not in SCORER_KINDS:
        raise ValueError(f"unknown scorer {kind!r}: expected one of {', '.join(SCORER_KINDS)} "
                         "(e.g. logprob-window:64, pooling:http://host:8001/pooling, "
                         "hf-reward:/path/to/model)")
    if kind in ("none", "logprob-mean"):
        if sep:
            raise ValueError(f"scorer {kind} takes no argument; got {spec!r:.100}")
        return kind, None
    if kind == "logprob-window":
        if not sep:
            return kind, 64
        try:
            window = int(arg)
        except ValueError:
            window = 0
        if window < 1:
            raise ValueError(f"scorer logprob-window:W needs an integer window W >= 1; got "
                             f"{arg!r:.40}")
        return kind, window
    if not arg:
        what = "a URL" if kind in ("pooling", "classify", "json") else "a model folder"
        raise ValueError(f"scorer {kind} needs {what}: {kind}:...")
    if kind in ("pooling", "classify", "json"):
        return kind, _http_url(arg, f"scorer {kind}: the endpoint")
    return kind, arg


def scorer_needs_logprobs(spec: Any) -> bool:
    """Whether a scorer (a spec string or a scorer object) reads token log-probabilities."""
    if isinstance(spec, str):
        return parse_scorer(spec)[0].startswith("logprob")
    return bool(getattr(spec, "needs_logprobs", False))


@dataclasses.dataclass(frozen=True)
class ServeConfig:
    """Everything ``create_app`` needs; the CLI flags of ``optscale serve`` map onto it.

    Attributes:
        upstream: the engine's base URL, ``http://host:8000/v1``.
        model: the model name clients ask for and the upstream is sent (``/v1/models``).
        policies: name -> policy; ``"default"`` serves requests that name none (None: see
            :func:`default_policy`).
        scorer: a scorer spec (see the module docstring), a scorer object with ``async
            score(prompt, texts, logprobs)`` (see :mod:`optscale.serve._scorers`), or None.
        scorer_model, scorer_index, scorer_step, scorer_input: options of the HTTP scorers.
        answer: the answer extractor (``boxed``, ``last-line``, ``none``) or a callable.
        api_key: sent to the upstream (and to an HTTP scorer) as a Bearer token.
        timeout: seconds per upstream attempt in all (a deadline, not an idle timeout).
        retries, backoff: retries of an upstream (or scorer) request, first wait in seconds.
        max_in_flight: upstream requests in flight at once, over all client requests.
        max_response_bytes: the largest upstream answer read.
        log_path: the request log (pool JSONL); None: no log.
        log_max_bytes: rotate the log when it would grow beyond this (0: never).
        token_budget: server-wide output tokens per second (None: unlimited); see
            :mod:`optscale.serve._budget` for how it lowers a request's ``max_n``.
        budget_burst: seconds of ``token_budget`` the bucket holds when full.
        keepalive: seconds between SSE keep-alive comments while a stream is sampling.
        warmup: run each policy once at startup (JAX compiles before the first request).
        transport, scorer_transport: ``httpx`` transports replacing the network (tests).
    """

    upstream: str
    model: str
    policies: Mapping[str, Policy] | None = None
    scorer: Any = None
    scorer_model: str | None = None
    scorer_index: int = -1
    scorer_step: str = "last"
    scorer_input: str = "messages"
    answer: Any = "boxed"
    api_key: str | None = None
    timeout: float = 600.0
    retries: int = 2
    backoff: float = 0.5
    max_in_flight: int = 256
    max_response_bytes: int = MAX_RESPONSE_BYTES
    log_path: str | None = None
    log_max_bytes: int = 0
    token_budget: float | None = None
    budget_burst: float = 10.0
    keepalive: float = 5.0
    warmup: bool = False
    transport: Any = None
    scorer_transport: Any = None

    def __post_init__(self) -> None:
        _http_url(self.upstream, "upstream", "http://host:8000/v1")
        if not isinstance(self.model, str) or not self.model:
            raise ValueError("model must be a non-empty string")
        scorer = self.scorer
        if isinstance(scorer, str):
            if parse_scorer(scorer)[0] == "none":
                scorer = None
            object.__setattr__(self, "scorer", scorer)
        policies = dict(self.policies or {})
        if not policies:
            policies["default"] = default_policy(scorer is not None)
        if "default" not in policies:
            raise ValueError(f"policies: one must be named 'default' (the policy of requests "
                             f"that name none); got {sorted(policies)}")
        for name, policy in policies.items():
            if not isinstance(policy, Policy):
                raise TypeError(f"policies[{name!r}] must be an optscale policy; got "
                                f"{type(policy).__name__}")
            if scorer is None and policy.uses_verifier:
                raise ValueError(f"policy {name!r} ({policy.describe()}) reads scores: give a "
                                 "scorer (e.g. --scorer logprob-mean for a verifier-free one)")
        object.__setattr__(self, "policies", policies)
        if not (isinstance(self.answer, str) and self.answer in ANSWERS) and \
                not callable(self.answer):
            raise ValueError(f"answer must be one of {', '.join(ANSWERS)} or a callable; got "
                             f"{self.answer!r:.60}")
        for name, lo in (("timeout", 0.0), ("keepalive", 0.0), ("budget_burst", 0.0)):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= lo:
                raise ValueError(f"{name} must be a finite number > {lo:g}; got {value!r}")
        for name, lo in (("retries", 0), ("max_in_flight", 1), ("max_response_bytes", 1),
                         ("log_max_bytes", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise ValueError(f"{name} must be an integer >= {lo}; got {value!r}")
        if self.token_budget is not None and not (
                isinstance(self.token_budget, (int, float)) and math.isfinite(self.token_budget)
                and self.token_budget > 0):
            raise ValueError(f"token_budget must be a number of tokens per second > 0; got "
                             f"{self.token_budget!r}")

    @property
    def extract(self) -> Callable[[str], Any] | None:
        """The answer extractor as a function (None: no answers)."""
        return self.answer if callable(self.answer) else answer_extractor(self.answer)
