"""A :class:`~optscale.sampling.Generator` for any OpenAI-compatible server (vLLM, SGLang, APIs).

Standard library only: one ``http.client`` connection per request, requests run concurrently on
a thread pool ("async" here means up to ``concurrency`` HTTP requests in flight at once, not
``asyncio``).
"""

from __future__ import annotations

import http.client
import json
import math
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from optscale.sampling._types import Sample, check_int, check_number

__all__ = ["MAX_RESPONSE_BYTES", "OpenAIError", "OpenAIGenerator"]

_RESERVED = frozenset({"model", "prompt", "messages", "n", "stream"})
_MAX_RETRY_AFTER = 30.0  # seconds: the longest wait before a retry (backoff or Retry-After)
MAX_RESPONSE_BYTES = 16 * 2**20  # default cap on one response body
_ERROR_BODY_BYTES = 65536  # what is read of an error response (for its message)
_CHUNK = 65536
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
    """One :meth:`OpenAIGenerator.generate` call: its cancel flag, open connections, results.

    ``results`` and ``error`` change only under ``lock`` and only before the cancel, so what the
    caller reads after :meth:`cancel` is final: an answer is either kept or known dropped.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cancelled = threading.Event()
        self.wake: Future[None] = Future()  # completed by cancel(): wakes the waiting caller
        self.conns: set[http.client.HTTPConnection] = set()
        self.futures: list[Future[Any]] = []
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
        self.cancel()  # from the failing worker itself: nothing else starts after this

    def cancel(self) -> None:
        with self.lock:
            if self.cancelled.is_set():
                return
            self.cancelled.set()
            conns = list(self.conns)
            futures = list(self.futures)
        for f in futures:
            f.cancel()  # not started yet: never runs
        for conn in conns:  # in flight: abandon (wakes a thread blocked reading the socket)
            sock = conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        if not self.wake.done():
            self.wake.set_result(None)


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
    answer is cut off at the deadline (its socket is shut down), not only one that goes silent.
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
    sockets shut down, any answer ignored), and ``generate`` returns promptly what it had received
    (per prompt possibly fewer than ``n`` samples, possibly none). An interrupt (KeyboardInterrupt)
    in ``generate`` cancels the same way and is re-raised with ``.partial`` set. A request
    already sent may still be computed (and billed) by the server: closing the connection is
    only a hint (vLLM aborts on disconnect; hosted APIs may not). Nothing received is dropped,
    but an answer that arrives after the cancel is not received. ``cancel`` between calls does
    nothing.

    Use as a context manager or call :meth:`close` (cancels running calls, stops the threads).
    Not for streaming; ``https`` uses the default SSL context; proxies from the environment are
    not used; ``api_key`` is sent as ``Authorization: Bearer`` and never read from the
    environment.

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
        self.url = f"{self.base_url}/{'chat/completions' if chat else 'completions'}"
        self._scheme, self._host, self._port = parts.scheme, parts.hostname, parts.port
        self._path = f"{parts.path}/{'chat/completions' if chat else 'completions'}"
        if parts.query:
            self._path += f"?{parts.query}"
        self._headers = {"Content-Type": "application/json", "Accept": "application/json",
                         **(headers or {})}
        if api_key is not None:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._lock = threading.Lock()
        self._calls: set[_Call] = set()
        self._pool: ThreadPoolExecutor | None = None
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
        """Cancel the calls in progress and release the threads; ``generate`` then fails."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        self.cancel()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> OpenAIGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="openai")
            pool = self._pool
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
                    call.futures.append(pool.submit(self._job, call, (i, j), body, k))
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
        return json.dumps(body).encode()

    # -- one request, with retries ---------------------------------------------------------

    def _job(self, call: _Call, key: tuple[int, int], body: bytes, k: int) -> None:
        try:
            call.keep(key, *self._request(call, body, k))
        except _Cancelled:
            pass
        except BaseException as exc:
            call.fail(exc if isinstance(exc, OpenAIError) else OpenAIError(
                self.url, None, f"{type(exc).__name__}: {exc}"))
            raise

    def _request(self, call: _Call, body: bytes, k: int) -> tuple[list[Sample], list[str]]:
        for attempt in range(self.retries + 1):
            if call.cancelled.is_set():
                raise _Cancelled
            try:
                return self._attempt(call, body, k)
            except OpenAIError as err:
                if call.cancelled.is_set():
                    raise _Cancelled from err
                if not err.retryable or attempt == self.retries:
                    if attempt == 0:
                        raise
                    raise OpenAIError(err.url, err.status, err.message, retryable=err.retryable,
                                      attempts=attempt + 1) from err
                if call.cancelled.wait(_retry_delay(self.backoff, attempt, err.retry_after)):
                    raise _Cancelled from err
        raise AssertionError("unreachable")

    def _connection(self) -> http.client.HTTPConnection:
        if self._scheme == "https":
            return http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout,
                                               context=ssl.create_default_context())
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)

    def _read(self, resp: http.client.HTTPResponse, limit: int, truncate: bool) -> bytes:
        """The body, at most ``limit`` bytes: beyond it an OpenAIError (or, where
        ``truncate``, the first ``limit`` bytes)."""
        length = resp.getheader("Content-Length")
        if not truncate and length and length.strip().isdigit() and int(length) > limit:
            raise OpenAIError(self.url, resp.status, f"response of {int(length)} bytes is larger "
                              f"than max_response_bytes={limit}")
        chunks, size = [], 0
        while size <= limit:
            chunk = resp.read(min(_CHUNK, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
        if size > limit:
            if truncate:
                return data[:limit]
            raise OpenAIError(self.url, resp.status, f"response larger than "
                              f"max_response_bytes={limit}")
        return data

    def _attempt(self, call: _Call, body: bytes, k: int) -> tuple[list[Sample], list[str]]:
        conn = self._connection()
        with call.lock:
            if call.cancelled.is_set():
                raise _Cancelled
            call.conns.add(conn)
        expired = threading.Event()

        def expire() -> None:  # the deadline: wake a read blocked on a trickling server
            expired.set()
            sock = conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        timer = threading.Timer(self.timeout, expire)
        timer.daemon = True
        timer.start()
        timed_out = OpenAIError(self.url, None, f"timed out after {self.timeout} s",
                                retryable=True)
        try:
            try:
                conn.connect()
                if call.cancelled.is_set():  # cancel() may have missed a socket still connecting
                    raise _Cancelled
                if expired.is_set():
                    raise timed_out
                conn.request("POST", self._path, body=body, headers=self._headers)
                resp = conn.getresponse()
                status = resp.status
                retry_after = resp.getheader("Retry-After")
                if status == 200:
                    data = self._read(resp, self.max_response_bytes, truncate=False)
                else:
                    data = self._read(resp, min(_ERROR_BODY_BYTES, self.max_response_bytes),
                                      truncate=True)
            except TimeoutError as err:
                raise timed_out from err
            except ssl.SSLCertVerificationError as err:
                raise OpenAIError(self.url, None, f"SSL: {err}") from err
            except (OSError, http.client.HTTPException) as err:
                if expired.is_set():
                    raise timed_out from err
                raise OpenAIError(self.url, None, f"{type(err).__name__}: {err}",
                                  retryable=True) from err
            if expired.is_set():  # the answer may have been cut short by the deadline
                raise timed_out
        finally:
            timer.cancel()
            conn.close()
            with call.lock:
                call.conns.discard(conn)
        if call.cancelled.is_set():
            raise _Cancelled  # abandoned: the answer is ignored
        if status != 200:
            try:
                wait_s = float(retry_after) if retry_after else None
            except ValueError:
                wait_s = None
            if wait_s is not None and not (math.isfinite(wait_s) and wait_s >= 0):
                wait_s = None
            raise OpenAIError(self.url, status, _server_message(data),
                              retryable=status == 429 or status >= 500, retry_after=wait_s)
        try:
            answer = json.loads(data)
            return self._samples(answer, k)
        except OpenAIError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as err:
            raise OpenAIError(self.url, status, f"unusable response ({type(err).__name__}: "
                              f"{str(err)[:200]}): {data[:300]!r}") from err

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
    except ValueError:
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
