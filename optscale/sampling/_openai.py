"""A :class:`~optscale.sampling.Generator` for any OpenAI-compatible server (vLLM, SGLang, APIs).

Built on the async ``httpx`` client of ``optscale serve`` (:mod:`optscale.serve._upstream`):
the requests of a call run as tasks on a private event loop in a background thread, so the
generator is an ordinary blocking object for :func:`optscale.run`. ``httpx`` is imported when the
first generator is built: ``import optscale.sampling`` does not need it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.parse
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any

from optscale.sampling._types import Sample, check_int, check_number

__all__ = ["MAX_RESPONSE_BYTES", "OpenAIError", "OpenAIGenerator"]

_RESERVED = frozenset({"model", "prompt", "messages", "n", "stream"})
_MAX_RETRY_AFTER = 30.0  # seconds: the longest wait before a retry (backoff or Retry-After)
MAX_RESPONSE_BYTES = 16 * 2**20  # default cap on one response body
_ERROR_BODY_BYTES = 65536  # what is read of an error response (for its message)
_MAX_TIMEOUT = 1e6
_MISSING = object()


class OpenAIError(RuntimeError):
    """A request to an OpenAI-compatible server failed for good.

    Attributes:
        url: the endpoint.
        status: the HTTP status (``None`` for timeouts, connection errors, bad responses).
        message: the server's error message (or the local reason).
        retryable: whether the failure was of a kind that is retried (timeout, connection, 429,
            5xx); after the last attempt it is raised anyway.
        attempts: how many times the failing request was tried.
        partial: set when raised by :meth:`OpenAIGenerator.generate`: per prompt, the samples
            received before the failure (requests not yet started were not sent).
    """

    def __init__(self, url: str, status: int | None, message: str, *, retryable: bool = False,
                 attempts: int = 1, retry_after: float | None = None) -> None:
        where = url if status is None else f"{url} (HTTP {status})"
        tries = "" if attempts == 1 else f" (after {attempts} attempts)"
        super().__init__(f"{where}: {message}{tries}")
        self.url = url
        self.status = status
        self.message = message
        self.retryable = retryable
        self.attempts = attempts
        self.retry_after = retry_after
        self.partial: list[list[Sample]] | None = None


class _Cancelled(Exception):
    """A request was not sent, or its answer dropped, because its call was cancelled."""


class _Call:
    """One :meth:`OpenAIGenerator.generate` call: its cancel flag, request futures, results.

    ``results`` and ``error`` change only under ``lock`` and only before the cancel, so what the
    caller reads after :meth:`cancel` is final: an answer is either kept or known dropped.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cancelled = threading.Event()
        self.wake: Future[None] = Future()  # completed by cancel(): wakes the waiting caller
        self.futures: list[Future[Any]] = []  # one per request, running on the generator's loop
        self.results: dict[tuple[int, int], list[Sample]] = {}
        self.problems: list[str] = []  # unusable choices of answers that were kept
        self.error: OpenAIError | None = None

    def keep(self, key: tuple[int, int], samples: list[Sample], problems: list[str]) -> None:
        with self.lock:
            if self.cancelled.is_set():
                raise _Cancelled  # arrived after the cancel: dropped
            self.results[key] = samples
            self.problems += problems

    def fail(self, err: OpenAIError) -> None:
        with self.lock:
            if self.cancelled.is_set():
                return
            self.error = err
        self.cancel()  # from the failing request itself: nothing else starts after this

    def cancel(self) -> None:
        with self.lock:
            if self.cancelled.is_set():
                return
            self.cancelled.set()
            futures = list(self.futures)
        # cancelling a request's future cancels its task: one still waiting for a slot is never
        # sent, one in flight has its connection closed (its answer, if any, is ignored)
        for f in futures:
            f.cancel()
        if not self.wake.done():
            self.wake.set_result(None)


class _Loop:
    """A private event loop in a daemon thread, with the generator's :class:`Upstream`."""

    def __init__(self, make_upstream: Callable[[], Any]) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="openai-generator",
                                       daemon=True)
        self.thread.start()

        async def make() -> Any:
            return make_upstream()

        self.upstream = asyncio.run_coroutine_threadsafe(make(), self.loop).result()

    def submit(self, coro: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self, wait_s: float = 2.0) -> None:
        """Close the client and stop the thread (from any thread but the loop's own)."""
        if self.loop.is_closed():
            return
        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # connections closed
            await self.upstream.aclose()

        try:
            self.submit(shutdown()).result(wait_s)
        except Exception:  # closing is best effort: the loop goes anyway
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(wait_s)
        if not self.thread.is_alive():
            self.loop.close()


class OpenAIGenerator:
    """Completions from an OpenAI-compatible ``/v1/completions`` or ``/v1/chat/completions``.

    ``generate(prompts, n, **sampling)`` sends one request with ``n`` choices per prompt (several
    requests of at most ``max_n_per_request`` choices if set), at most ``concurrency`` at once,
    and returns per prompt the samples in prompt order. ``sampling`` keywords (``temperature``,
    ``top_p``, ``stop``, ``seed``, ``logprobs``, ...) go into the JSON body, over ``extra_body``
    and the default ``max_tokens``. When one prompt's ``n`` is split, chunk ``j`` gets
    ``seed + j`` so the chunks differ; note that a fixed ``seed`` makes *repeated* calls repeat
    their samples.

    Tokens per sample come from the response: a per-choice count (``choices[i].usage.
    completion_tokens``, ``choices[i].completion_tokens`` or ``num_tokens``) if the server sends
    one; else ``usage.completion_tokens`` when the response has a single choice; else the length
    of the choice's ``logprobs`` (request them with ``logprobs=1`` / ``logprobs=True``); else
    ``count_tokens(text)`` if given; else :class:`OpenAIError` (with ``n > 1`` and no logprobs a
    plain OpenAI-style server only reports the total: use ``max_n_per_request=1``, logprobs or
    ``count_tokens``).

    Retries: each request is tried ``1 + retries`` times, waiting ``backoff * 2**k`` seconds
    (or the server's ``Retry-After``, at most 30 s) before retry ``k + 1``, on timeouts,
    connection errors, malformed HTTP, 429 and 5xx. Other 4xx and unusable 200 answers raise at
    once. Waits double up to 30 s (or ``backoff`` if larger). ``timeout`` is the deadline of one
    attempt in all, from connecting to the last byte of the answer: a server that trickles its
    answer is cut off at the deadline (its connection is closed), not only one that goes silent.
    An answer larger than ``max_response_bytes`` (default 16 MiB) is refused without reading the
    rest. The run loop (:func:`optscale.run`) also retries failed calls (for the missing samples
    only), so attempts multiply: pass ``retries=0`` to one of the two if that is not wanted.

    A choice whose ``text`` (chat: ``message.content``, where null counts as empty) is missing or
    not a string is a per-sample failure: the other choices are kept, every request of the call
    still completes, and then :class:`OpenAIError` is raised with ``.partial`` holding all
    usable samples (:func:`optscale.run` keeps them and asks for the missing ones).

    Failure and cancellation: when a request fails for good, the call is cancelled and
    :class:`OpenAIError` is raised at once, with ``.partial`` holding per prompt the samples
    already received. :meth:`cancel` (thread-safe, from any thread) cancels the calls in progress:
    their requests not yet started are never sent, in-flight requests are abandoned (their
    connections closed, any answer ignored), and ``generate`` returns promptly what it had received
    (per prompt possibly fewer than ``n`` samples, possibly none). An interrupt (KeyboardInterrupt)
    in ``generate`` cancels the same way and is re-raised with ``.partial`` set. A request
    already sent may still be computed (and billed) by the server: closing the connection is
    only a hint (vLLM aborts on disconnect; hosted APIs may not). Nothing received is dropped,
    but an answer that arrives after the cancel is not received. ``cancel`` between calls does
    nothing.

    Use as a context manager or call :meth:`close` (cancels running calls, stops the event-loop
    thread). Connections are pooled and reused (keep-alive) across calls. Not for streaming;
    ``https`` uses the default SSL context; proxies from the environment are not used;
    ``api_key`` is sent as ``Authorization: Bearer`` and never read from the environment.
    Needs ``httpx`` (``pip install httpx``, part of the ``serve`` extra).

    Example:
        >>> gen = OpenAIGenerator("http://localhost:8000/v1", "Qwen/Qwen2.5-7B-Instruct",
        ...                       chat=True, max_n_per_request=1)
        >>> samples = gen.generate(["2+2?"], 4, temperature=0.8)  # doctest: +SKIP
    """

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None,
                 chat: bool = False, system_prompt: str | None = None, max_tokens: int = 1024,
                 timeout: float = 30.0, retries: int = 2, backoff: float = 0.5,
                 concurrency: int = 8, max_n_per_request: int | None = None,
                 extra_body: dict[str, Any] | None = None,
                 count_tokens: Callable[[str], int] | None = None,
                 headers: dict[str, str] | None = None,
                 max_response_bytes: int = MAX_RESPONSE_BYTES) -> None:
        """Check every argument (TypeError / ValueError naming it) and prepare the client.

        Args (besides the class docstring): ``timeout`` seconds per attempt in all (> 0, at
        most 10^6); ``retries`` >= 0; ``backoff`` seconds >= 0; ``concurrency`` requests in flight
        (>= 1); ``max_tokens``, ``max_n_per_request`` (None: all ``n`` in one request) and
        ``max_response_bytes`` integers >= 1; ``headers`` strings without line breaks.
        """
        if not isinstance(base_url, str):
            raise TypeError(f"base_url must be a string; got {type(base_url).__name__}")
        parts = urllib.parse.urlsplit(base_url.rstrip("/"))
        try:
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            port_ok = False
        if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
            raise ValueError(f"base_url must be an http(s) URL like http://host:8000/v1; "
                             f"got {base_url!r}")
        if not isinstance(model, str) or not model:
            raise TypeError(f"model must be a non-empty string; got {model!r:.80}")
        for name, value in (("api_key", api_key), ("system_prompt", system_prompt)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a string or None; got {type(value).__name__}")
        if not isinstance(chat, bool):
            raise TypeError(f"chat must be True or False; got {chat!r:.80}")
        max_tokens = check_int("max_tokens", max_tokens, 1)
        # bounded: a socket timeout or a wait cannot hold more on every platform
        timeout = check_number("timeout", timeout, 0.0, strict=True, hi=_MAX_TIMEOUT)
        retries = check_int("retries", retries, 0)
        backoff = check_number("backoff", backoff, 0.0, hi=_MAX_TIMEOUT)
        concurrency = check_int("concurrency", concurrency, 1)
        max_response_bytes = check_int("max_response_bytes", max_response_bytes, 1)
        if max_n_per_request is not None:
            max_n_per_request = check_int("max_n_per_request", max_n_per_request, 1)
        if count_tokens is not None and not callable(count_tokens):
            raise TypeError("count_tokens must be a callable(text) -> int or None")
        if extra_body is not None and not isinstance(extra_body, dict):
            raise TypeError(f"extra_body must be a dict or None; got {type(extra_body).__name__}")
        bad = _RESERVED & set(extra_body or ())
        if bad:
            raise ValueError(f"extra_body may not set {sorted(bad)}")
        try:
            json.dumps(extra_body or {})
        except (TypeError, ValueError) as err:
            raise TypeError(f"extra_body must be JSON-serialisable: {err}") from None
        if headers is not None:
            if not isinstance(headers, dict):
                raise TypeError(f"headers must be a dict or None; got {type(headers).__name__}")
            for key, value in headers.items():
                if not isinstance(key, str) or not isinstance(value, str) or \
                        any(c in key + value for c in "\r\n\0"):
                    raise ValueError(f"headers: {key!r:.40}: names and values must be strings "
                                     "without line breaks")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.chat = chat
        self.system_prompt = system_prompt
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.concurrency = concurrency
        self.max_n_per_request = max_n_per_request
        self.extra_body = dict(extra_body or {})
        self.count_tokens = count_tokens
        self.max_response_bytes = max_response_bytes
        endpoint = "chat/completions" if chat else "completions"
        self.url = urllib.parse.urlunsplit(
            (parts.scheme, parts.netloc, f"{parts.path}/{endpoint}", parts.query, ""))
        self._headers = dict(headers or {})
        self._api_key = api_key
        self._lock = threading.Lock()
        self._calls: set[_Call] = set()
        self._loop: _Loop | None = None
        self._closed = False

    def __repr__(self) -> str:
        return (f"OpenAIGenerator({self.base_url!r}, {self.model!r}, chat={self.chat}, "
                f"concurrency={self.concurrency})")

    # -- lifecycle -------------------------------------------------------------------------

    def cancel(self) -> None:
        """Cancel the calls in progress (see the class docstring); thread-safe."""
        with self._lock:
            calls = list(self._calls)
        for call in calls:
            call.cancel()

    def close(self) -> None:
        """Cancel the calls in progress and stop the event-loop thread; ``generate`` then
        fails."""
        with self._lock:
            self._closed = True
            loop, self._loop = self._loop, None
        self.cancel()
        if loop is not None:
            loop.stop()

    def __enter__(self) -> OpenAIGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _started(self) -> _Loop:
        """The event loop and client, started on first use (under ``_lock``)."""
        if self._loop is None:
            from optscale.serve._upstream import Upstream  # needs httpx: imported on first use

            def make() -> Upstream:
                return Upstream(self.base_url, api_key=self._api_key, headers=self._headers,
                                timeout=self.timeout, retries=self.retries,
                                backoff=self.backoff, max_in_flight=self.concurrency,
                                max_response_bytes=self.max_response_bytes)

            self._loop = _Loop(make)
            # a generator dropped without close() still stops its thread
            weakref.finalize(self, self._loop.stop, 0.5)
        return self._loop

    # -- generate --------------------------------------------------------------------------

    def generate(self, prompts: Sequence[str], n: int, **sampling: Any) -> list[list[Sample]]:
        """Per prompt, ``n`` samples (fewer after :meth:`cancel` or if the server gave fewer).

        Raises:
            OpenAIError: a request failed for good; ``.partial`` has what was received.
        """
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings, not one string")
        prompts = list(prompts)
        wrong = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
        if wrong:
            raise TypeError(f"prompts[{wrong[0]}] must be a string; got "
                            f"{type(prompts[wrong[0]]).__name__}")
        n = check_int("n", n, 0)
        bad = _RESERVED & set(sampling)
        if bad:
            raise ValueError(f"sampling keywords may not set {sorted(bad)}")
        chunk = n if self.max_n_per_request is None else self.max_n_per_request
        jobs = []  # (prompt index, chunk index, choices)
        for i in range(len(prompts)):
            for j, start in enumerate(range(0, n, max(chunk, 1))):
                jobs.append((i, j, min(chunk, n - start)))
        if not jobs:
            return [[] for _ in prompts]
        call = _Call()
        with self._lock:
            if self._closed:
                raise OpenAIError(self.url, None, "generator is closed")
            loop = self._started()
            self._calls.add(call)

        def received() -> list[list[Sample]]:
            with call.lock:
                results = dict(call.results)
            out: list[list[Sample]] = [[] for _ in prompts]
            for i, j, _ in jobs:
                out[i].extend(results.get((i, j), ()))
            return out

        try:
            with call.lock:  # cancel() sees every future once submitted
                for i, j, k in jobs:
                    body = self._body(prompts[i], k, j, sampling)
                    call.futures.append(loop.submit(self._job(loop.upstream, call, (i, j),
                                                              body, k)))
            pending = set(call.futures)
            while pending and not call.cancelled.is_set():
                _, pending = wait(pending | {call.wake}, return_when=FIRST_COMPLETED)
                pending.discard(call.wake)
        except BaseException as stop:  # interrupted while waiting: hand back what arrived
            call.cancel()
            if not hasattr(stop, "partial"):
                try:
                    stop.partial = received()  # type: ignore[attr-defined]
                except (AttributeError, TypeError):
                    pass
            raise
        finally:
            call.cancel()  # anything still pending is not started / abandoned
            with self._lock:
                self._calls.discard(call)
        out = received()
        if call.error is not None:
            call.error.partial = out
            raise call.error
        if call.problems:
            more = f" (and {len(call.problems) - 1} more)" if len(call.problems) > 1 else ""
            err = OpenAIError(self.url, 200, f"unusable choice: {call.problems[0]}{more}")
            err.partial = out
            raise err
        return out

    def _body(self, prompt: str, k: int, chunk: int, sampling: dict[str, Any]) -> bytes:
        body: dict[str, Any] = {"model": self.model, "max_tokens": self.max_tokens,
                                **self.extra_body, **sampling, "n": k}
        if chunk and isinstance(body.get("seed"), int):
            body["seed"] += chunk
        if self.chat:
            messages = [] if self.system_prompt is None else [
                {"role": "system", "content": self.system_prompt}]
            body["messages"] = [*messages, {"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt if self.system_prompt is None else \
                f"{self.system_prompt}\n\n{prompt}"
        return json.dumps(body).encode()  # here, so that a bad sampling value raises at once

    # -- one request (on the loop), with the client's retries ------------------------------

    async def _job(self, upstream: Any, call: _Call, key: tuple[int, int], body: bytes,
                   k: int) -> None:
        if call.cancelled.is_set():
            return  # cancelled before it started: never sent
        try:
            samples, problems = await upstream.post_json(
                self.url, body, lambda answer: self._samples(answer, k))
            call.keep(key, samples, problems)
        except _Cancelled:
            pass
        except OpenAIError as err:
            call.fail(err)
        except Exception as err:  # a bug or an odd failure still ends the call with an error
            call.fail(OpenAIError(self.url, None, f"{type(err).__name__}: {err}"))

    def _samples(self, answer: dict[str, Any], k: int) -> tuple[list[Sample], list[str]]:
        """The usable choices as samples, and what was wrong with the others."""
        choices = answer["choices"]
        if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
            raise TypeError("choices must be a list of objects")
        choices = sorted(choices, key=lambda c: c.get("index", 0)
                         if isinstance(c.get("index", 0), int) else 0)
        if len(choices) > k:
            raise OpenAIError(self.url, 200, f"server returned {len(choices)} choices; asked "
                              f"for {k}")
        usage = answer.get("usage") or {}
        out, problems = [], []
        for pos, c in enumerate(choices):
            if self.chat:
                where, message = "message.content", c.get("message")
                text = message.get("content", _MISSING) if isinstance(message, dict) else \
                    _MISSING
                if text is None:
                    text = ""  # a chat answer with no content (a refusal, a tool call)
            else:
                where, text = "text", c.get("text", _MISSING)
            if text is _MISSING:
                problems.append(f"choice {pos}: no {where}")
                continue
            if not isinstance(text, str):
                problems.append(f"choice {pos}: {where} is {type(text).__name__}, not a string")
                continue
            tokens = _choice_tokens(c, self.chat)
            if tokens is None and len(choices) == 1 and isinstance(usage, dict):
                tokens = usage.get("completion_tokens")
            if tokens is None and self.count_tokens is not None:
                tokens = int(self.count_tokens(text))
            if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0:
                raise OpenAIError(
                    self.url, 200,
                    f"no token count per choice for n={len(choices)} (server gave "
                    f"usage={usage!r:.200}); use max_n_per_request=1, request logprobs "
                    f"(logprobs={'True' if self.chat else '1'}), or pass "
                    f"count_tokens=callable(text) -> int")
            out.append(Sample(text, tokens))
        return out, problems


def _retry_delay(backoff: float, attempt: int, retry_after: float | None) -> float:
    """Seconds before retry ``attempt + 1``: ``backoff * 2**attempt`` or the server's
    Retry-After if longer, never more than 30 s (or ``backoff`` if that is larger)."""
    cap = max(backoff, _MAX_RETRY_AFTER)
    delay = min(backoff * 2.0 ** min(attempt, 64), cap)
    if retry_after is not None:
        delay = min(max(retry_after, delay), cap)
    return delay


def _choice_tokens(choice: dict[str, Any], chat: bool) -> int | None:
    per = choice.get("usage")
    if isinstance(per, dict) and isinstance(per.get("completion_tokens"), int):
        return per["completion_tokens"]
    for key in ("completion_tokens", "num_tokens"):
        if isinstance(choice.get(key), int):
            return choice[key]
    lp = choice.get("logprobs")
    if isinstance(lp, dict):
        seq = lp.get("content") if chat else lp.get("tokens")
        if isinstance(seq, list):
            return len(seq)
    return None


def _server_message(data: bytes) -> str:
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        return data.decode("utf-8", "replace").strip()[:500] or "(empty body)"
    if isinstance(obj, dict):
        err = obj.get("error", obj)
        if isinstance(err, dict):
            for key in ("message", "detail", "msg"):
                if err.get(key):
                    return str(err[key])[:500]
        elif isinstance(err, str):
            return err[:500]
    return json.dumps(obj)[:500]
