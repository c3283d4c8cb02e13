"""The request log: every sample the server paid for, in optscale's pool JSONL format.

One line per request (see :mod:`optscale.replay._readers` for the format)::

    {"id": "<request id>", "question": "<prompt, or the last user message>", "gold": "42",
     "samples": [{"score": 0.93, "tokens": 512, "answer": "42", "text": "...",
                  "finish_reason": "stop"}, ...],
     "endpoint": "chat", "messages": [...], "model": "...", "policy": "...", "status": "ok",
     "stop_reason": "rule", "chosen": 3, "time": 1718000000.0}

``score`` is null for a sample that was drawn but not scored (no scorer, a scorer failure);
``answer`` is left out when the server extracts no answers (the reader then reads the last
``\\boxed{}`` of ``text``); ``gold`` only when the request gave one. Every file starts with a
``{"meta": {...}}`` line. A request is logged when it ends, however it ends (answered, upstream
failure, client disconnect), if it drew at least one sample; the answer is sent only after its
line is written and fsynced. Lines are written in batches (one write and one fsync for all the
requests that ended meanwhile), in a worker thread, off the event loop.

Every line is whole: a write that fails part-way (a full disk) is cut back to the last complete
line before the error reaches the requests of its batch (their clients get a 500), and a file
that ends in part of a line (a crash mid-write) is cut back the same way when it is opened. The
cut bytes are a record that was never confirmed to anyone and that no reader could parse;
every complete line stays.

Rotation (``max_bytes`` > 0): when a batch would take the file past ``max_bytes``, the file is
renamed to ``STEM.N.SUFFIX`` (``requests.1.jsonl``, ``requests.2.jsonl``, ...: the lowest number
is the oldest; numbers are never reused) and a new file with its own meta line is started. No
file is ever deleted: every paid-for sample stays on disk. Each file is a pool on its own:
``optscale replay FILE`` and ``optscale tune FILE`` read it directly. One log file per process:
replicas each need their own path.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from optscale.serve._json import dumps

__all__ = ["RequestLog"]

logger = logging.getLogger("optscale.serve")


class RequestLog:
    """Append-only, fsynced, rotating pool-JSONL log (see the module docstring).

    Args:
        path: the file (created with its folder's permissions; appended to if it exists).
        max_bytes: rotate beyond this size (0: never).
        meta: the pool metadata written at the top of every file.
    """

    def __init__(self, path: str, max_bytes: int = 0, meta: dict[str, Any] | None = None) -> None:
        self.path = os.fspath(path)
        self.max_bytes = int(max_bytes)
        self.meta = {"source": "optscale serve", **(meta or {})}
        stem, suffix = os.path.splitext(self.path)
        self._stem, self._suffix = stem, suffix or ".jsonl"
        self._pending: list[tuple[bytes, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="optscale-log")
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._size = 0
        self._fresh = True  # the current file holds only its meta line
        self.records = 0  # lines written (for metrics and tests)
        self.rotations = 0
        self._open()  # at startup: a path that cannot be written fails before serving

    # -- the file (worker thread) -------------------------------------------------------------

    def _meta_line(self) -> bytes:
        meta = {**self.meta, "created": time.time()}
        return (json.dumps({"meta": meta}) + "\n").encode()

    def _open(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = _cut_partial_line(fd, self.path)
            self._fresh = size == 0
            if size == 0:
                _write_all(fd, self._meta_line())
                os.fsync(fd)
                size = os.fstat(fd).st_size
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._size = fd, size

    def _next_number(self) -> int:
        folder = os.path.dirname(os.path.abspath(self.path))
        base = re.escape(os.path.basename(self._stem))
        pattern = re.compile(rf"{base}\.(\d+){re.escape(self._suffix)}$")
        numbers = [int(m.group(1)) for name in os.listdir(folder)
                   if (m := pattern.match(name))]
        return max(numbers, default=0) + 1

    def _rotate(self) -> None:
        assert self._fd is not None
        os.close(self._fd)
        self._fd = None
        os.replace(self.path, f"{self._stem}.{self._next_number()}{self._suffix}")
        self.rotations += 1
        self._open()

    def _write(self, lines: list[bytes]) -> None:
        with self._lock:
            if self._fd is None:
                self._open()
            data = b"".join(lines)
            if self.max_bytes and self._size + len(data) > self.max_bytes and not self._fresh:
                self._rotate()
            assert self._fd is not None
            try:
                _write_all(self._fd, data)
                os.fsync(self._fd)
            except BaseException:
                self._mend()
                raise
            self._size += len(data)
            self._fresh = False
            self.records += len(lines)

    def _mend(self) -> None:
        """After a failed write: cut a part-written line, so that the next record starts on a
        line of its own; if even that fails, close the file (the next write reopens it, and
        opening cuts the same way)."""
        assert self._fd is not None
        try:
            self._size = _cut_partial_line(self._fd, self.path)
        except OSError:
            os.close(self._fd)
            self._fd = None

    # -- the async side -------------------------------------------------------------------------

    def submit(self, record: dict[str, Any]) -> asyncio.Future[None]:
        """Queue one request's record; the future completes once it is on disk. It is written
        even if nobody awaits the future (a request whose client went away)."""
        line = dumps(record) + b"\n"  # NaN / inf as null: the line is always written
        future = asyncio.get_running_loop().create_future()
        self._pending.append((line, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._drain())
        return future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                # shielded: a cancelled writer (server shutdown) still finishes its batch
                await asyncio.shield(loop.run_in_executor(
                    self._thread, self._write, [line for line, _ in batch]))
            except BaseException as err:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(err if isinstance(err, Exception)
                                             else RuntimeError("log writer stopped"))
                if not isinstance(err, Exception):
                    raise
                continue
            for _, future in batch:
                if not future.done():
                    future.set_result(None)

    async def aclose(self) -> None:
        """Write what is queued, then close the file."""
        while self._writer is not None and not self._writer.done():
            await asyncio.wait([self._writer])
        if self._pending:
            self._writer = asyncio.get_running_loop().create_task(self._drain())
            await asyncio.wait([self._writer])
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        self._thread.shutdown(wait=True)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:  # os.write may write less than asked
        view = view[os.write(fd, view):]


def _cut_partial_line(fd: int, path: str) -> int:
    """Truncate the file to its last complete line (a no-op when it ends in a newline);
    its size after."""
    size = end = os.fstat(fd).st_size
    while end > 0:
        start = max(end - 65536, 0)
        chunk = os.pread(fd, end - start, start)
        last = chunk.rfind(b"\n")
        if last >= 0:
            end = start + last + 1
            break
        end = start
    if end < size:
        os.ftruncate(fd, end)
        os.fsync(fd)
        logger.warning("%s: cut %d bytes of an incomplete last line (a write that failed "
                       "part-way); every complete line is kept", path, size - end)
    return end

