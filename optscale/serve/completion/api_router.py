"""The route of ``POST /v1/completions``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from optscale.serve._knobs import RequestError
from optscale.serve._serving import internal_error
from optscale.serve.completion.protocol import CompletionRequest

__all__ = ["router"]

router = APIRouter()


@router.post("/v1/completions")
async def create_completion(body: CompletionRequest, raw_request: Request) -> Response:
    """A completion whose choice is the sample the policy selects."""
    serving = raw_request.app.state.optscale.completion
    try:
        job = serving.job(body)
        if body.stream:
            include = bool(body.stream_options and body.stream_options.include_usage)
            return serving.stream(job, include)
        return await serving.complete(job, raw_request)
    except RequestError:
        raise  # a 4xx, answered by the app's handler
    except Exception as err:
        return internal_error(err, raw_request.url.path)
