"""What both endpoints share: running a job with disconnect detection, errors, SSE framing.

Non-streaming: the engine runs as its own task while a watcher waits for the client's
``http.disconnect``; a client that goes away cancels the engine (and so its upstream requests).
Streaming: the answer exists only once the policy stops, so the stream sends ``: keep-alive``
comments while sampling, then the chosen text as content chunks, a final chunk with the
``finish_reason`` and the ``optscale`` field, a usage chunk when ``stream_options.
include_usage``, and ``data: [DONE]``; a failure with no sample is an ``{"error": ...}`` event
(which the ``openai`` client raises as ``APIError``). A disconnect during the stream cancels the
engine the same way.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from optscale.sampling._openai import OpenAIError
from optscale.serve._engine import Engine, Job, Outcome
from optscale.serve._json import JSONResponse, dumps
from optscale.serve._knobs import RequestError

__all__ = ["CHUNK_CHARS", "Serving", "error_body", "internal_error", "respond",
           "upstream_failure"]

logger = logging.getLogger("optscale.serve")

CHUNK_CHARS = 64  # characters per streamed content chunk (the text is known whole)


def error_body(message: str, type: str = "invalid_request_error", param: str | None = None,
               code: str | int | None = None) -> dict[str, Any]:
    """An OpenAI-style error object."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def upstream_failure(outcome: Outcome) -> tuple[int, dict[str, Any]]:
    """(HTTP status, error body) for a request that ended without any sample."""
    err = outcome.error
    if outcome.status == "upstream_error" and isinstance(err, OpenAIError):
        if err.status in (400, 413, 422):  # the upstream refused the request itself
            return 400, error_body(f"upstream refused the request: {err.message}",
                                   "invalid_request_error", None, "upstream_rejected")
        if err.status is None and "timed out" in err.message:
            return 504, error_body(f"upstream timed out: {err}", "upstream_error", None,
                                   "upstream_timeout")
        return 502, error_body(f"upstream failed: {err}", "upstream_error", None,
                               "upstream_error")
    message = "no sample was drawn" if err is None else str(err)
    return 502, error_body(f"{outcome.status}: {message}", "upstream_error", None,
                           outcome.status)


def internal_error(err: BaseException, path: str) -> JSONResponse:
    """A bug as a 500 with an OpenAI-style body: the traceback goes to the server log only.
    Answered here rather than by Starlette's error middleware, which re-raises (and uvicorn
    then drops the client's keep-alive connection)."""
    logger.error("internal error on %s", path, exc_info=err)
    return JSONResponse(error_body(f"internal error ({type(err).__name__}); see the server "
                                   "log", "internal_error", None, "internal_error"),
                        status_code=500)


async def respond(serving: Serving, body: Any, raw_request: Request) -> Response:
    """Answer one request of either endpoint: streamed or not; a 4xx goes to the app's
    handler, anything unexpected is an OpenAI-style 500 without a traceback."""
    try:
        job = serving.job(body)
        if body.stream:
            include = bool(body.stream_options and body.stream_options.include_usage)
            return serving.stream(job, include)
        return await serving.complete(job, raw_request)
    except RequestError:
        raise
    except Exception as err:
        return internal_error(err, raw_request.url.path)


async def _wait_disconnect(request: Request) -> None:
    """Return when the client disconnects (uvicorn's receive() blocks until then)."""
    while True:
        message = await request.receive()
        if message.get("type") == "http.disconnect":
            return


class Serving(abc.ABC):
    """Base of the chat and completion servings: subclasses build the :class:`Job` and format
    the answer (``response``, ``chunks``)."""

    endpoint = ""

    def __init__(self, engine: Engine, model: str, policies: Any, metrics: Any,
                 keepalive: float) -> None:
        self.engine, self.model, self.policies = engine, model, policies
        self.metrics, self.keepalive = metrics, keepalive

    # -- subclass hooks ------------------------------------------------------------------------

    @abc.abstractmethod
    def response(self, outcome: Outcome, created: int) -> dict[str, Any]:
        """The whole answer (non-streaming) of a finished outcome."""

    @abc.abstractmethod
    def chunks(self, outcome: Outcome, created: int) -> list[dict[str, Any]]:
        """The stream chunks of a finished outcome."""

    def check(self, model: str, n: int | None) -> None:
        """The request's ``model`` and ``n``, which the proxy cannot pass on as they are."""
        if n is not None and n != 1:
            raise RequestError("n: optscale serve answers with one choice, the sample its "
                               "policy selects (n = 1); the number of samples drawn is the "
                               "policy's (optscale.max_n caps it)", "n")
        if model != self.model:
            raise RequestError(f"The model `{model}` does not exist; this server serves "
                               f"`{self.model}`", "model", 404, "invalid_request_error",
                               "model_not_found")

    # -- the two ways of answering ---------------------------------------------------------

    def _done(self, outcome: Outcome, stream: bool, started: float,
              status: str | None = None) -> None:
        m = self.metrics
        if m is None:
            return
        e = self.endpoint
        m.latency.labels(e, str(stream).lower()).observe(time.perf_counter() - started)
        m.requests.labels(e, status or outcome.status).inc()
        n = len(outcome.samples)
        m.samples.labels(e).inc(n)
        m.samples_per_request.labels(e).observe(n)
        m.tokens.labels(e, "completion").inc(outcome.completion_tokens)
        if n:
            m.tokens.labels(e, "prompt").inc(outcome.prompt_tokens)
            saved = max(outcome.job.knobs.max_n - n, 0) * outcome.completion_tokens / n
            m.tokens_saved.labels(e).inc(saved)

    async def complete(self, job: Job, request: Request) -> Response:
        """Answer without streaming; a client disconnect cancels the engine."""
        started = time.perf_counter()
        task, live = self.engine.spawn(job)
        if self.metrics is not None:
            self.metrics.in_progress.inc()
        watcher = asyncio.ensure_future(_wait_disconnect(request))
        try:
            try:
                await asyncio.wait([task, watcher], return_when=asyncio.FIRST_COMPLETED)
            finally:
                watcher.cancel()
                if not task.done():  # the client went away (or the server stops): cancel
                    task.cancel()
                    with anyio.CancelScope(shield=True):
                        await asyncio.wait([task])
            if task.cancelled():
                return Response(status_code=499)  # nobody is there to read it
            outcome = task.result()
            if outcome.logged is not None:
                await outcome.logged  # on disk before the answer goes out
            created = int(job.created)
            if not outcome.samples:
                status, body = upstream_failure(outcome)
                return JSONResponse(body, status_code=status)
            return JSONResponse(self.response(outcome, created))
        finally:
            if self.metrics is not None:
                self.metrics.in_progress.dec()
            failed = task.done() and not task.cancelled() and task.exception() is not None
            # the samples of a cancelled or failed run too
            self._done(live, False, started, "internal_error" if failed else None)

    def stream(self, job: Job, include_usage: bool) -> StreamingResponse:
        """Answer as server-sent events (see the module docstring)."""
        return StreamingResponse(self._events(job, include_usage),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    async def _events(self, job: Job, include_usage: bool) -> AsyncIterator[bytes]:
        started = time.perf_counter()
        task, live = self.engine.spawn(job)
        if self.metrics is not None:
            self.metrics.in_progress.inc()
        status = None
        try:
            while True:
                done, _ = await asyncio.wait([task], timeout=self.keepalive)
                if done:
                    break
                yield b": keep-alive\n\n"
            try:
                outcome = task.result()
                if outcome.logged is not None:
                    await outcome.logged
            except Exception as err:  # a bug: an error event, never a traceback
                status = "internal_error"
                yield _event(error_body(f"internal error ({type(err).__name__})",
                                        "internal_error", None, "internal_error"))
                yield b"data: [DONE]\n\n"
                return
            created = int(job.created)
            if not outcome.samples:
                code, body = upstream_failure(outcome)
                body["error"]["code"] = body["error"]["code"] or code
                yield _event(body)
            else:
                for chunk in self.chunks(outcome, created):
                    yield _event(chunk)
                if include_usage:
                    yield _event(self._usage_chunk(outcome, created))
            yield b"data: [DONE]\n\n"
        except BaseException:
            status = status or "cancelled"  # the client went away mid-stream
            raise
        finally:
            if not task.done():
                task.cancel()
                with anyio.CancelScope(shield=True):  # the stream's own cancellation is on
                    await asyncio.wait([task])
            if self.metrics is not None:
                self.metrics.in_progress.dec()
            self._done(live, True, started, status)  # the samples of a cancelled run too

    def _usage_chunk(self, outcome: Outcome, created: int) -> dict[str, Any]:
        chunk = self._chunk_head(outcome, created)
        chunk["choices"] = []
        chunk["usage"] = usage(outcome)
        return chunk

    @abc.abstractmethod
    def _chunk_head(self, outcome: Outcome, created: int) -> dict[str, Any]:
        """The fields every stream chunk carries."""


def usage(outcome: Outcome) -> dict[str, int]:
    """``usage``: the prompt once, the completion tokens of every sample drawn."""
    prompt, completion = outcome.prompt_tokens, outcome.completion_tokens
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def _event(obj: dict[str, Any]) -> bytes:
    return b"data: " + dumps(obj) + b"\n\n"  # NaN / inf as null, as in the JSON answers


def pieces(text: str) -> list[str]:
    """The text cut into streamed content pieces (at least one, possibly empty)."""
    return [text[i:i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS)] or [""]
