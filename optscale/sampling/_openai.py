"""A :class:`~optscale.sampling.Generator` for any OpenAI-compatible server (vLLM, SGLang, APIs).

Standard library only: one ``http.client`` connection per request, requests run concurrently on
a thread pool ("async" here means up to ``concurrency`` HTTP requests in flight at once, not
``asyncio``).
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from optscale.sampling._types import Sample

__all__ = ["OpenAIError", "OpenAIGenerator"]

_RESERVED = frozenset({"model", "prompt", "messages", "n", "stream"})
_MAX_RETRY_AFTER = 30.0


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
        self.error: OpenAIError | None = None

    def keep(self, key: tuple[int, int], samples: list[Sample]) -> None:
        with self.lock:
            if self.cancelled.is_set():
                raise _Cancelled  # arrived after the cancel: dropped
            self.results[key] = samples

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
    once. ``timeout`` bounds each socket operation (connect, each read), as in ``urllib``. The
    run loop (:func:`optscale.run`) also retries whole calls, so attempts multiply: pass
    ``retries=0`` to one of the two if that is not wanted.

    Failure and cancellation: when a request fails for good, the call is cancelled and
    :class:`OpenAIError` is raised at once, with ``.partial`` holding per prompt the samples
    already received. :meth:`cancel` (thread-safe, from any thread) cancels the calls in progress:
    their requests not yet started are never sent, in-flight requests are abandoned (their
    sockets shut down, any answer ignored), and ``generate`` returns promptly what it had received
    (per prompt possibly fewer than ``n`` samples, possibly none). A request already sent may
    still be computed (and billed) by the server: closing the connection is only a hint (vLLM
    aborts on disconnect; hosted APIs may not). Nothing received is dropped, but an answer that
    arrives after the cancel is not received. ``cancel`` between calls does nothing.

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
                 headers: dict[str, str] | None = None) -> None:
        parts = urllib.parse.urlsplit(base_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http(s) URL like http://host:8000/v1; "
                             f"got {base_url!r}")
        if timeout <= 0 or retries < 0 or backoff < 0 or concurrency < 1 or max_tokens < 1:
            raise ValueError(f"need timeout > 0, retries >= 0, backoff >= 0, concurrency >= 1, "
                             f"max_tokens >= 1; got {timeout}, {retries}, {backoff}, "
                             f"{concurrency}, {max_tokens}")
        if max_n_per_request is not None and max_n_per_request < 1:
            raise ValueError(f"max_n_per_request must be >= 1; got {max_n_per_request}")
        bad = _RESERVED & set(extra_body or ())
        if bad:
            raise ValueError(f"extra_body may not set {sorted(bad)}")
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
        if n < 0:
            raise ValueError(f"n must be >= 0; got {n}")
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
        try:
            with call.lock:  # cancel() sees every future once submitted
                for i, j, k in jobs:
                    body = self._body(prompts[i], k, j, sampling)
                    call.futures.append(pool.submit(self._job, call, (i, j), body, k))
            pending = set(call.futures)
            while pending and not call.cancelled.is_set():
                _, pending = wait(pending | {call.wake}, return_when=FIRST_COMPLETED)
                pending.discard(call.wake)
        finally:
            call.cancel()  # anything still pending is not started / abandoned
            with self._lock:
                self._calls.discard(call)
        out: list[list[Sample]] = [[] for _ in prompts]
        for i, j, _ in jobs:
            out[i].extend(call.results.get((i, j), ()))
        if call.error is not None:
            call.error.partial = out
            raise call.error
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
            call.keep(key, self._request(call, body, k))
        except _Cancelled:
            pass
        except BaseException as exc:
            call.fail(exc if isinstance(exc, OpenAIError) else OpenAIError(
                self.url, None, f"{type(exc).__name__}: {exc}"))
            raise

    def _request(self, call: _Call, body: bytes, k: int) -> list[Sample]:
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
                delay = self.backoff * 2**attempt
                if err.retry_after is not None:
                    delay = min(max(err.retry_after, delay), _MAX_RETRY_AFTER)
                if call.cancelled.wait(delay):
                    raise _Cancelled from err
        raise AssertionError("unreachable")

    def _connection(self) -> http.client.HTTPConnection:
        if self._scheme == "https":
            return http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout,
                                               context=ssl.create_default_context())
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)

    def _attempt(self, call: _Call, body: bytes, k: int) -> list[Sample]:
        conn = self._connection()
        with call.lock:
            if call.cancelled.is_set():
                raise _Cancelled
            call.conns.add(conn)
        try:
            try:
                conn.connect()
                if call.cancelled.is_set():  # cancel() may have missed a socket still connecting
                    raise _Cancelled
                conn.request("POST", self._path, body=body, headers=self._headers)
                resp = conn.getresponse()
                status, data = resp.status, resp.read()
                retry_after = resp.getheader("Retry-After")
            except TimeoutError as err:
                raise OpenAIError(self.url, None, f"timed out after {self.timeout} s",
                                  retryable=True) from err
            except ssl.SSLCertVerificationError as err:
                raise OpenAIError(self.url, None, f"SSL: {err}") from err
            except (OSError, http.client.HTTPException) as err:
                raise OpenAIError(self.url, None, f"{type(err).__name__}: {err}",
                                  retryable=True) from err
        finally:
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
            raise OpenAIError(self.url, status, _server_message(data),
                              retryable=status == 429 or status >= 500, retry_after=wait_s)
        try:
            answer = json.loads(data)
            return self._samples(answer, k)
        except OpenAIError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise OpenAIError(self.url, status, f"unusable response ({type(err).__name__}: "
                              f"{err}): {data[:300]!r}") from err

    def _samples(self, answer: dict[str, Any], k: int) -> list[Sample]:
        choices = sorted(answer["choices"], key=lambda c: c.get("index", 0))
        if len(choices) > k:
            raise OpenAIError(self.url, 200, f"server returned {len(choices)} choices; asked "
                              f"for {k}")
        usage = answer.get("usage") or {}
        out = []
        for c in choices:
            text = (c["message"].get("content") if self.chat else c["text"]) or ""
            tokens = _choice_tokens(c, self.chat)
            if tokens is None and len(choices) == 1:
                tokens = usage.get("completion_tokens")
            if tokens is None and self.count_tokens is not None:
                tokens = int(self.count_tokens(text))
            if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0:
                raise OpenAIError(
                    self.url, 200,
                    f"no token count per choice for n={len(choices)} (server gave "
                    f"usage={usage!r}); use max_n_per_request=1, request logprobs "
                    f"(logprobs={'True' if self.chat else '1'}), or pass "
                    f"count_tokens=callable(text) -> int")
            out.append(Sample(text, tokens))
        return out


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
