"""The ASGI app: :func:`create_app` wires the routes, the shared clients, the log and metrics.

Routes: ``POST /v1/chat/completions``, ``POST /v1/completions`` (streaming or not),
``GET /v1/models`` (the served model), ``GET /health`` and ``GET /metrics`` (Prometheus).
Errors are OpenAI-style bodies ``{"error": {"message", "type", "param", "code"}}``: 400 for a bad
request (FastAPI's 422 validation errors included, ``param`` naming the field), 404 for an
unknown model or route, 502/504 when the upstream failed with no sample to answer with, and
500 with no traceback for a bug (the traceback goes to the server's log only).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from optscale.serve._budget import TokenBucket
from optscale.serve._config import ServeConfig, parse_scorer
from optscale.serve._engine import Engine
from optscale.serve._json import JSONResponse
from optscale.serve._knobs import RequestError
from optscale.serve._log import RequestLog
from optscale.serve._metrics import CONTENT_TYPE_LATEST, Metrics
from optscale.serve._scorers import HTTPScorer, LocalScorer, LogprobConfidence
from optscale.serve._serving import error_body, internal_error
from optscale.serve._upstream import Upstream
from optscale.serve.chat_completion.api_router import router as chat_router
from optscale.serve.chat_completion.serving import ChatServing
from optscale.serve.completion.api_router import router as completion_router
from optscale.serve.completion.serving import CompletionServing

__all__ = ["Runtime", "build_scorer", "create_app"]

logger = logging.getLogger("optscale.serve")


def build_scorer(config: ServeConfig, client: Any = None) -> Any:
    """The scorer object of ``config.scorer`` (a spec is built; an object is kept as it is).

    ``client`` is the :class:`Upstream` an HTTP scorer posts with. Loading a local model
    (``hf-reward:DIR``, ``hf-prm:DIR``) takes a while and raises ValueError / OSError when the
    folder holds no model.
    """
    spec = config.scorer
    if spec is None or not isinstance(spec, str):
        return spec
    kind, arg = parse_scorer(spec)
    if kind == "none":
        return None
    if kind == "logprob-mean":
        return LogprobConfidence("mean")
    if kind == "logprob-window":
        return LogprobConfidence("lowest-window", int(arg))  # type: ignore[arg-type]
    if kind in ("pooling", "classify", "json"):
        return HTTPScorer(kind, str(arg), client, model=config.scorer_model,
                          index=config.scorer_index, step=config.scorer_step,
                          input=config.scorer_input)
    from optscale.sampling._hf import HFPRMScorer, HFRewardScorer

    cls = HFRewardScorer if kind == "hf-reward" else HFPRMScorer
    return LocalScorer(cls.from_pretrained(str(arg)), f"{kind}:{arg}")


@dataclasses.dataclass
class Runtime:
    """What the app holds while it runs (``app.state.optscale``)."""

    config: ServeConfig
    metrics: Metrics
    upstream: Upstream | None = None
    scorer_client: Upstream | None = None
    scorer: Any = None
    log: RequestLog | None = None
    budget: TokenBucket | None = None
    engine: Engine | None = None
    chat: ChatServing | None = None
    completion: CompletionServing | None = None
    started: float = dataclasses.field(default_factory=time.time)


def _upstream(config: ServeConfig, base_url: str, transport: Any, observer: Any) -> Upstream:
    return Upstream(base_url, api_key=config.api_key, timeout=config.timeout,
                    retries=config.retries, backoff=config.backoff,
                    max_in_flight=config.max_in_flight,
                    max_response_bytes=config.max_response_bytes, transport=transport,
                    observer=observer)


async def _start(rt: Runtime) -> None:
    config = rt.config
    rt.upstream = _upstream(config, config.upstream, config.transport, rt.metrics)
    if isinstance(config.scorer, str):
        kind, url = parse_scorer(config.scorer)
        if kind in ("pooling", "classify", "json"):  # its own pool: scoring never waits on
            rt.scorer_client = _upstream(config, str(url), config.scorer_transport, None)
    # a local model loads in a thread: the event loop stays free
    rt.scorer = await asyncio.to_thread(build_scorer, config, rt.scorer_client)
    if config.log_path is not None:
        rt.log = RequestLog(config.log_path, config.log_max_bytes,
                            {"model": config.model, "upstream": config.upstream,
                             "scorer": None if rt.scorer is None else rt.scorer.describe(),
                             "policies": {k: p.describe() for k, p in config.policies.items()},
                             "scores_meaningless": rt.scorer is None})
    if config.token_budget is not None:
        rt.budget = TokenBucket(config.token_budget, config.budget_burst)
    rt.engine = Engine(rt.upstream, rt.scorer, config.extract, rt.log, rt.metrics, rt.budget,
                       config.model)
    args = (rt.engine, config.model, config.policies, rt.metrics, config.keepalive)
    rt.chat, rt.completion = ChatServing(*args), CompletionServing(*args)
    if config.warmup:
        await asyncio.to_thread(_warm, config)


def _warm(config: ServeConfig) -> None:
    """Run every policy on made-up scores once, so that JAX compiles before the first request."""
    for policy in (config.policies or {}).values():
        try:
            state = policy.start() if not policy.uses_prior else policy.start((0.5, 0.2))
            d = policy.update(state)
            for _ in range(3):
                if d.stop:
                    break
                d = policy.update(state, [0.5] * d.n_more, ["a"] * d.n_more, [1] * d.n_more)
        except Exception:  # warming is an optimisation: a failure shows on the first request
            logger.warning("warm-up of %s failed", policy.describe(), exc_info=True)


async def _stop(rt: Runtime) -> None:
    if rt.engine is not None:  # the requests still running log their samples first
        await rt.engine.aclose()
    if rt.log is not None:
        await rt.log.aclose()
    for client in (rt.upstream, rt.scorer_client):
        if client is not None:
            await client.aclose()


def _validation_error(exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":  # its loc is ("body", character position)
        position = first.get("loc", ("body", None))[-1]
        reason = (first.get("ctx") or {}).get("error")
        return JSONResponse(error_body(
            f"request body is not valid JSON (at character {position}"
            f"{': ' + reason if reason else ''})", "invalid_request_error"), status_code=400)
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    message = first.get("msg", "invalid request")
    if not loc and first.get("type") == "model_attributes_type":  # a form, a JSON list...
        message = "request body must be a JSON object (Content-Type: application/json)"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return JSONResponse(error_body(f"{param + ': ' if param else ''}{message}{more}",
                                   "invalid_request_error", param), status_code=400)


def create_app(config: ServeConfig) -> FastAPI:
    """The ``optscale serve`` ASGI app for ``config`` (serve it with uvicorn).

    Example:
        >>> from optscale.serve import ServeConfig, create_app
        >>> app = create_app(ServeConfig("http://localhost:8000/v1", "my-model"))
        >>> # uvicorn.run(app, host="127.0.0.1", port=8080)
    """
    if not isinstance(config, ServeConfig):
        raise TypeError(f"config must be a ServeConfig; got {type(config).__name__}")
    rt = Runtime(config, Metrics())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await _start(rt)
        try:
            yield
        finally:
            await _stop(rt)

    app = FastAPI(title="optscale serve", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.optscale = rt
    app.include_router(chat_router)
    app.include_router(completion_router)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": config.model, "object": "model",
                                            "created": int(rt.started), "owned_by": "optscale"}]}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(rt.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        rt.metrics.requests.labels(_endpoint(request), "client_error").inc()
        return JSONResponse(error_body(exc.message, exc.type, exc.param, exc.code),
                            status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        rt.metrics.requests.labels(_endpoint(request), "client_error").inc()
        return _validation_error(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(exc.detail), kind, None, exc.status_code),
                            status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return internal_error(exc, request.url.path)

    return app


def _endpoint(request: Request) -> str:
    path = request.url.path
    return "chat" if path.endswith("/chat/completions") else \
        "completion" if path.endswith("/completions") else "other"
