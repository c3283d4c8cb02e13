"""The async client to an OpenAI-compatible engine (vLLM, SGLang, any server), on ``httpx``.

Pooled keep-alive connections (sharded over many pools of :data:`POOL_SIZE`: httpcore's pool
assigns requests to connections in time that grows with the pool's size, which collapses a
single pool of hundreds of busy connections to ~100 requests/s; an idle connection is closed
after :data:`KEEPALIVE_S`, before the server's own timeout, and one the server closed meanwhile
is not reused), an ``asyncio.Semaphore`` on requests in flight, a deadline per attempt (connect
to last byte), bounded retries with capped exponential backoff and ``Retry-After``, a response
size cap enforced while the body streams in, and cancellation: cancelling the awaiting task
closes the request's connection, which is the signal engines act on (vLLM aborts a request whose
connection closes). Both ``optscale serve`` and :class:`optscale.sampling.OpenAIGenerator` use
it.

Requests go straight to httpcore's connection pools, the layer under ``httpx``'s transports, not
through ``httpx.AsyncClient`` nor ``httpx``'s request and response objects: their per-request
work (URL merging, default headers, cookies, auth and redirects, the conversion of every request
and response between the two libraries), none of which a JSON POST to one engine needs, cost
~15-20 % of a request's CPU over loopback (uvloop: ~390 -> ~320 us with 256 in flight, ~335 ->
~280 us with 16). httpcore still does all of HTTP (h11), TLS, keep-alive and the connections. An
``httpx`` transport (an ``httpx.MockTransport`` in tests and benchmarks) can stand in for the
network; the same rules apply to it.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import ssl
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import httpcore
import httpx

from optscale.sampling._openai import (
    _ERROR_BODY_BYTES,
    MAX_RESPONSE_BYTES,
    OpenAIError,
    _retry_delay,
    _server_message,
)

__all__ = ["KEEPALIVE_S", "POOL_SIZE", "Observer", "Upstream"]

# connections per httpcore pool (see the module docstring): the fewer, the cheaper a request (CPU
# per request over loopback with 256 in flight: 1: ~450 us, 2: ~490 us, 4: ~660 us, 8: ~730 us)
POOL_SIZE = 1
# seconds an idle connection is kept: less than the 5 s after which uvicorn (vLLM's and SGLang's
# server) closes one, so that a request is not sent on a connection the server is closing
KEEPALIVE_S = 4.0

T = TypeVar("T")

# what a parse of a 200 body may raise on a body of the wrong shape: "unusable response"
_SHAPE_ERRORS = (ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header name (RFC 9110)
# what a failed exchange raises (httpcore on the network, httpx from a stand-in transport)
_TIMEOUTS = (httpcore.TimeoutException, httpx.TimeoutException)
_BROKEN = (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol,
           httpx.TransportError)


class Observer(Protocol):
    """Told about every attempt (for metrics): ``kind`` is ``ok``, ``timeout``,
    ``connection``, ``http_429``, ``http_4xx``, ``http_5xx``, ``too_large`` or ``malformed``."""

    def attempt(self, kind: str, seconds: float) -> None: ...


class Upstream:
    """Async POSTs of JSON to one base URL, with the reliability rules of the module docstring.

    Args:
        base_url: ``http(s)://host:port/v1`` (paths are appended to it).
        api_key: sent as ``Authorization: Bearer``.
        headers: extra request headers.
        timeout: seconds per attempt in all (connect, send, wait, read); > 0.
        retries: retries after a timeout, a connection error, malformed HTTP, 429 or 5xx.
        backoff: seconds before the first retry; doubles, at most 30 s (or ``backoff``).
        max_in_flight: requests sent at once at most (the others wait their turn).
        max_response_bytes: a longer body is refused (not retried) without reading the rest.
        transport: an ``httpx`` transport to use instead of the network (tests, benchmarks).
        observer: told about every attempt (metrics).
    """

    def __init__(self, base_url: str, *, api_key: str | None = None,
                 headers: dict[str, str] | None = None, timeout: float = 60.0,
                 retries: int = 2, backoff: float = 0.5, max_in_flight: int = 64,
                 max_response_bytes: int = MAX_RESPONSE_BYTES,
                 transport: httpx.AsyncBaseTransport | None = None,
                 observer: Observer | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.max_in_flight = int(max_in_flight)
        self.max_response_bytes = int(max_response_bytes)
        self.observer = observer
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "User-Agent": "optscale", **(headers or {})}
        if api_key is not None:
            headers["Authorization"] = f"Bearer {api_key}"
        # checked once here: h11 would refuse them on every request, as a connection error
        if not all(isinstance(k, str) and _TOKEN.fullmatch(k) for k in headers) or not all(
                isinstance(v, str) and v.isascii() and not any(c in v for c in "\r\n\0")
                for v in headers.values()):
            raise ValueError("headers: names must be HTTP tokens and values ASCII strings "
                             "without line breaks")
        self._headers = [(k.encode(), v.encode()) for k, v in headers.items()]
        # the deadline is ours (the whole attempt); httpcore's own timeouts are per operation
        # and only back it up
        self._extensions = {"timeout": httpx.Timeout(self.timeout).as_dict()}
        self._targets: dict[str, tuple[Any, ...]] = {}  # path -> its URL, parsed once
        shards = max(1, -(-self.max_in_flight // POOL_SIZE))
        per = -(-self.max_in_flight // shards)
        if transport is None:
            context = ssl.create_default_context()  # one for all pools: each costs ~1 MB
            # HTTP/1.1 (an engine speaks it; vLLM's uvicorn speaks nothing else), no proxies
            self._pools: list[Any] = [httpcore.AsyncConnectionPool(
                ssl_context=context, max_connections=per, max_keepalive_connections=per,
                keepalive_expiry=KEEPALIVE_S, http1=True, http2=False) for _ in range(shards)]
        else:
            self._pools = [_StandIn(transport)] * shards
        # requests in flight per pool: a request goes to the least busy one, so that under the
        # global cap no pool ever has more than ``per`` (pigeonhole): nothing queues in httpcore
        self._busy = [0] * shards
        self._slots: asyncio.Semaphore | None = None
        self.in_flight = 0

    def url(self, path: str) -> str:
        """The URL of ``path`` (relative to the base URL; an absolute URL is kept)."""
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def _target(self, path: str) -> tuple[Any, ...]:
        """``(url, httpcore.URL, headers)`` of ``path``, made once (httpx parses the URL)."""
        target = self._targets.get(path)
        if target is None:
            url = self.url(path)
            parsed = httpx.URL(url)
            target = self._targets[path] = (url, httpcore.URL(
                scheme=parsed.raw_scheme, host=parsed.raw_host, port=parsed.port,
                target=parsed.raw_path), [(b"Host", parsed.netloc), *self._headers])
        return target

    async def aclose(self) -> None:
        """Close the connection pools."""
        for pool in dict.fromkeys(self._pools):  # a transport passed in is shared: once
            await pool.aclose()

    # -- one POST, with retries ----------------------------------------------------------------

    async def post_json(self, path: str, body: dict[str, Any] | bytes,
                        parse: Callable[[Any], T] | None = None) -> T:
        """POST ``body`` (an object, or JSON bytes) to ``path``; the decoded answer, or
        ``parse`` of it.

        ``parse`` runs inside the attempt: a shape error it raises (``TypeError``,
        ``KeyError``, ...) is an "unusable response" :class:`OpenAIError` (not retried), an
        :class:`OpenAIError` it raises goes through as it is.

        Raises:
            OpenAIError: the request failed for good (after the retries where retryable).
            asyncio.CancelledError: the caller was cancelled; the connection is closed.
        """
        target = self._target(path)
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        for attempt in range(self.retries + 1):
            try:
                return await self._attempt(target, data, parse)
            except OpenAIError as err:
                if not err.retryable or attempt == self.retries:
                    if attempt == 0:
                        raise
                    raise OpenAIError(err.url, err.status, err.message, retryable=err.retryable,
                                      attempts=attempt + 1) from err
                await asyncio.sleep(_retry_delay(self.backoff, attempt, err.retry_after))
        raise AssertionError("unreachable")

    def _observe(self, kind: str, start: float) -> None:
        if self.observer is not None:
            self.observer.attempt(kind, time.perf_counter() - start)

    async def _attempt(self, target: tuple[Any, ...], data: bytes,
                       parse: Callable[[Any], T] | None) -> T:
        url = target[0]
        if self._slots is None:  # made in the running loop (Python 3.10 binds it on creation)
            self._slots = asyncio.Semaphore(self.max_in_flight)
        async with self._slots:
            start = time.perf_counter()
            self.in_flight += 1
            try:
                status, retry_after, body = await asyncio.wait_for(
                    self._exchange(target, data), self.timeout)
            except asyncio.TimeoutError:
                self._observe("timeout", start)
                raise OpenAIError(url, None, f"timed out after {self.timeout:g} s",
                                  retryable=True) from None
            except OpenAIError as err:
                self._observe(getattr(err, "kind", "connection"), start)
                raise
            finally:
                self.in_flight -= 1
        if status != 200:
            self._observe("http_429" if status == 429 else "http_5xx" if status >= 500
                          else "http_4xx", start)
            raise OpenAIError(url, status, _server_message(body),
                              retryable=status == 429 or status >= 500, retry_after=retry_after)
        try:
            answer = json.loads(body)
            result = answer if parse is None else parse(answer)
        except OpenAIError:
            self._observe("malformed", start)
            raise
        except _SHAPE_ERRORS as err:
            self._observe("malformed", start)
            raise OpenAIError(url, status, f"unusable response ({type(err).__name__}: "
                              f"{str(err)[:200]}): {body[:300]!r}") from None
        self._observe("ok", start)
        return result

    async def _exchange(self, target: tuple[Any, ...], data: bytes
                        ) -> tuple[int, float | None, bytes]:
        """(status, Retry-After seconds, body) of one attempt; transport failures as
        retryable :class:`OpenAIError`."""
        url = target[0]
        try:
            shard = self._busy.index(min(self._busy))
            self._busy[shard] += 1
            try:
                return await self._exchange_on(self._pools[shard], target, data)
            finally:
                self._busy[shard] -= 1
        except _TIMEOUTS:
            err = OpenAIError(url, None, f"timed out after {self.timeout:g} s", retryable=True)
            err.kind = "timeout"  # type: ignore[attr-defined]
            raise err from None
        except _BROKEN as err:
            cause = err.__cause__ or err.__context__
            while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
                cause = cause.__cause__ or cause.__context__
            if cause is not None:
                raise OpenAIError(url, None, f"SSL: {cause}") from None
            # "Connection" leads: the cause is the connection, whatever httpcore calls it
            raise OpenAIError(url, None, f"Connection error ({type(err).__name__}: "
                              f"{str(err)[:200] or 'no detail'})", retryable=True) from None

    async def _exchange_on(self, pool: Any, target: tuple[Any, ...], data: bytes
                           ) -> tuple[int, float | None, bytes]:
        url = target[0]
        resp = await pool.handle_async_request(httpcore.Request(
            b"POST", target[1], headers=[*target[2], (b"Content-Length", b"%d" % len(data))],
            content=data, extensions=self._extensions))
        try:  # closed however this ends: a cancelled or unfinished read closes the connection
            status = resp.status
            if status == 200:
                try:
                    body = await _read(resp, url, self.max_response_bytes, False)
                except OpenAIError as err:
                    err.kind = "too_large"  # type: ignore[attr-defined]
                    raise
            else:
                body = await _read(resp, url, min(_ERROR_BODY_BYTES, self.max_response_bytes),
                                   True)
            return status, _retry_after(_header(resp, b"retry-after")), body
        finally:
            await resp.aclose()


class _StandIn:
    """An ``httpx`` transport (tests, benchmarks) in the place of httpcore's pool."""

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self.transport = transport

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        content = b"".join([part async for part in request.stream])  # type: ignore[union-attr]
        resp = await self.transport.handle_async_request(httpx.Request(
            request.method, bytes(request.url).decode(), headers=request.headers,
            content=content, extensions=request.extensions))
        return httpcore.Response(resp.status_code, headers=resp.headers.raw,
                                 content=resp.stream,  # type: ignore[arg-type]
                                 extensions=resp.extensions)

    async def aclose(self) -> None:
        await self.transport.aclose()


def _header(resp: httpcore.Response, name: bytes) -> str | None:
    """The value of the response header ``name`` (lower case), or None."""
    for key, value in resp.headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def _read(resp: httpcore.Response, url: str, limit: int, truncate: bool) -> bytes:
    """The body, at most ``limit`` bytes: beyond it an :class:`OpenAIError` (or, where
    ``truncate``, the first ``limit`` bytes); the rest is never read."""
    length = (_header(resp, b"content-length") or "").strip()
    if not truncate and length.isdigit() and int(length) > limit:
        raise OpenAIError(url, resp.status, _too_large(int(length), limit))
    chunks, size = [], 0
    async for chunk in resp.stream:  # type: ignore[union-attr]
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    body = b"".join(chunks)
    if size > limit:
        if truncate:
            return body[:limit]
        raise OpenAIError(url, resp.status, _too_large(None, limit))
    return body


def _too_large(length: int | None, limit: int) -> str:
    if length is None:
        return f"response larger than max_response_bytes={limit}"
    return f"response of {length} bytes is larger than max_response_bytes={limit}"


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the delta form; a date or garbage: None)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
