"""A minimal HTTP/1.1 client for the upstream's JSON POSTs: keep-alive connections per origin.

Why not ``httpx`` on this path: the proxy makes one upstream request per sample, and ``httpx``
(its request and response objects, httpcore's pool and locks on anyio, h11) cost ~300-400 us
of CPU per request on loopback, against ~30 us for this client; that was most of the proxy's
work per answer. ``httpx`` transports still plug in instead (tests, benchmarks): see
:class:`optscale.serve._upstream.Upstream`.

What it speaks: ``POST`` with a ``Content-Length`` body; answers with a ``Content-Length``
body, a ``chunked`` one, or one ended by the server closing the connection; 1xx interim answers
are skipped. ``http`` and ``https`` (the ``ssl`` module, certificates verified). No proxies, no
redirects, no compression (no ``Accept-Encoding`` is sent), no HTTP/2: an OpenAI-compatible
engine needs none of them. Anything else a server sends is a :class:`ProtocolError`.

Connections: idle ones are reused last-in first-out and closed after :data:`KEEPALIVE_S` idle
(before the usual 5 s server timeout); one the server closed while idle is not reused; a request
on a reused connection that fails before a byte of the answer arrives is sent once more on a new
connection (the server closed it meanwhile and never saw the request). A request that is
cancelled (the caller's task, a deadline) or fails closes its connection, which is how the
engine learns that nobody waits for the answer (vLLM aborts the request).
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.parse

__all__ = ["KEEPALIVE_S", "Answer", "Pool", "ProtocolError", "TooLarge", "origin_of"]

KEEPALIVE_S = 4.0  # seconds an idle connection is kept
_MAX_HEAD = 65536  # bytes of status line and headers (and of chunk-size lines and trailers)
_NO_BODY = (204, 304)


class ProtocolError(Exception):
    """The connection failed (refused, reset, closed early) or the server broke HTTP/1.1."""


class TooLarge(Exception):
    """The body is longer than the caller's limit: ``length`` bytes as announced (None: more
    than the limit arrived)."""

    def __init__(self, length: int | None = None) -> None:
        super().__init__(length)
        self.length = length


Answer = tuple[int, dict[str, str], bytes]  # status, headers (lower-case names), body


def origin_of(url: str) -> tuple[str, str, int, str]:
    """``(scheme, host, port, target)`` of an http(s) URL (the target: path and query)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r:.100}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port, target


class _Connection(asyncio.Protocol):
    """One connection: what arrived (``buffer``), whether it is closed, flow control."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.closed = False  # the server closed it, or it failed
        self.error: BaseException | None = None
        self.received = 0  # bytes arrived since the current request was sent
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._drained: asyncio.Future[None] | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.received += len(data)
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.error = exc
        self._wake()
        self.resume_writing()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # -- the caller's side -----------------------------------------------------------------------

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    async def send(self, data: bytes) -> None:
        if self.closed or self.transport is None or self.transport.is_closing():
            raise ProtocolError("the connection is closed")
        self.received = 0
        self.transport.write(data)
        if self._paused:  # a large body: wait until the socket takes it
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained
            if self.closed:
                raise self._lost()

    def _lost(self) -> ProtocolError:
        what = f": {self.error}" if self.error is not None else ""
        return ProtocolError(f"the server closed the connection{what}")

    async def _wait(self) -> None:
        """Until more bytes arrive or the connection closes."""
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def _more(self) -> None:
        """Wait for more bytes; ProtocolError once the connection is closed."""
        if self.closed:
            raise self._lost()
        await self._wait()

    async def read_line(self, end: bytes = b"\r\n", limit: int = _MAX_HEAD) -> bytes:
        """Bytes up to ``end`` (removed from the buffer with it; not returned)."""
        start = 0
        while True:
            i = self.buffer.find(end, start)
            if i >= 0:
                line = bytes(self.buffer[:i])
                del self.buffer[:i + len(end)]
                return line
            if len(self.buffer) > limit:
                raise ProtocolError(f"a header or chunk line longer than {limit} bytes")
            start = max(0, len(self.buffer) - len(end) + 1)
            await self._more()

    async def read_exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            await self._more()
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    async def read_to_close(self, limit: int) -> tuple[bytes, bool]:
        """Everything until the server closes, at most ``limit`` bytes: (bytes, whole)."""
        while not self.closed and len(self.buffer) <= limit:
            await self._wait()
        if self.error is not None and len(self.buffer) <= limit:
            raise self._lost()
        data = bytes(self.buffer[:limit])
        whole = len(self.buffer) <= limit
        self.buffer.clear()
        return data, whole


def _head(head: bytes) -> tuple[bytes, int, dict[str, str]]:
    """(HTTP version, status, headers) of a response head; ProtocolError if malformed."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or len(parts[1]) != 3 or \
            not parts[1].isdigit():
        raise ProtocolError(f"malformed status line {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip() or b" " in name:
            raise ProtocolError(f"malformed header line {line[:80]!r}")
        key = name.decode("latin-1").lower()
        text = value.strip().decode("latin-1")
        if key == "content-length" and headers.get(key, text) != text:
            raise ProtocolError("conflicting Content-Length headers")
        headers[key] = text
    return parts[0], int(parts[1]), headers


async def _chunked(conn: _Connection, limit: int) -> tuple[bytes, bool]:
    """A chunked body, at most ``limit`` bytes: (bytes, whole)."""
    chunks, size = [], 0
    while True:
        line = await conn.read_line(limit=1024)
        digits = line.split(b";", 1)[0].strip()
        try:
            n = int(digits, 16)
        except ValueError:
            raise ProtocolError(f"malformed chunk size {line[:40]!r}") from None
        if n < 0 or digits.startswith((b"-", b"+", b"0x", b"0X")):
            raise ProtocolError(f"malformed chunk size {line[:40]!r}")
        if n == 0:
            while await conn.read_line():  # trailers, up to the empty line
                pass
            return b"".join(chunks), True
        if size + n > limit:
            chunks.append(await conn.read_exactly(limit - size))
            return b"".join(chunks), False
        chunks.append(await conn.read_exactly(n))
        size += n
        if await conn.read_exactly(2) != b"\r\n":
            raise ProtocolError("a chunk does not end with CRLF")


async def _answer(conn: _Connection, limit: int, error_limit: int) -> tuple[Answer, bool]:
    """Read one answer: ((status, headers, body), reusable). A 200 answer's body longer than
    ``limit`` raises :class:`TooLarge`; any other answer's body is cut at ``error_limit`` bytes
    (the rest is never read, and the connection is not reused)."""
    while True:
        version, status, headers = _head(await conn.read_line(b"\r\n\r\n"))
        if status >= 200:
            break
        if status == 101:
            raise ProtocolError("the server switched protocols")
    truncate = status != 200
    if truncate:
        limit = error_limit
    reusable = version == b"HTTP/1.1" and "close" not in headers.get("connection", "").lower()
    encoding = headers.get("transfer-encoding")
    length = headers.get("content-length")
    if status in _NO_BODY:
        return (status, headers, b""), reusable
    if encoding is not None:
        if encoding.lower() != "chunked":
            raise ProtocolError(f"unsupported Transfer-Encoding {encoding!r:.40}")
        body, whole = await _chunked(conn, limit)
    elif length is not None:
        if not length.isdigit():
            raise ProtocolError(f"malformed Content-Length {length!r:.40}")
        n = int(length)
        if n > limit and not truncate:
            raise TooLarge(n)
        body, whole = await conn.read_exactly(min(n, limit)), n <= limit
    else:
        body, whole = await conn.read_to_close(limit)
        reusable = False
    if not whole:
        if not truncate:
            raise TooLarge()
        reusable = False
    return (status, headers, body), reusable


class Pool:
    """Keep-alive connections to one origin (see the module docstring).

    Args:
        scheme, host, port: the origin.
        ssl_context: for https (None: a default, verifying one).
    """

    def __init__(self, scheme: str, host: str, port: int,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.host, self.port = host, port
        self.ssl = (ssl_context or ssl.create_default_context()) if scheme == "https" else None
        default = 443 if scheme == "https" else 80
        name = f"[{host}]" if ":" in host else host
        self.host_header = name if port == default else f"{name}:{port}"
        self._idle: list[_Connection] = []
        self._closed = False

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(
                _Connection, self.host, self.port, ssl=self.ssl,
                server_hostname=self.host if self.ssl is not None else None)
        except ssl.SSLCertVerificationError:
            raise
        except (OSError, ssl.SSLError) as err:
            raise ProtocolError(f"{type(err).__name__}: {err}") from None
        return conn

    def _reuse(self) -> _Connection | None:
        now = asyncio.get_running_loop().time()
        while self._idle:
            conn = self._idle.pop()
            if conn.closed or conn.buffer or now - conn.idle_since > KEEPALIVE_S:
                conn.abort()  # closed by the server, sent something unasked, or too old
                continue
            return conn
        return None

    async def request(self, data: bytes, limit: int, error_limit: int) -> Answer:
        """Send ``data`` (a whole request: head and body) and read the answer: a 200 body
        longer than ``limit`` raises :class:`TooLarge`, any other body is cut at
        ``error_limit`` bytes. :class:`ProtocolError` when the connection or HTTP fails."""
        conn = self._reuse()
        if conn is not None:
            try:
                return await self._exchange(conn, data, limit, error_limit)
            except ProtocolError:
                if conn.received:
                    raise
                # nothing came back on a reused connection: the server had closed it
        return await self._exchange(await self._connect(), data, limit, error_limit)

    async def _exchange(self, conn: _Connection, data: bytes, limit: int,
                        error_limit: int) -> Answer:
        reusable = False
        try:
            await conn.send(data)
            answer, reusable = await _answer(conn, limit, error_limit)
            return answer
        finally:  # cancelled or failed: closed, so that the server sees it
            if reusable and not conn.closed and not conn.buffer and not self._closed:
                conn.idle_since = asyncio.get_running_loop().time()
                self._idle.append(conn)
            else:
                conn.abort()

    def close(self) -> None:
        """Close the idle connections; those in use close when their request ends."""
        self._closed = True
        for conn in self._idle:
            conn.abort()
        self._idle.clear()
