"""The route of ``POST /v1/chat/completions``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from optscale.serve._knobs import RequestError
from optscale.serve._serving import internal_error
from optscale.serve.chat_completion.protocol import ChatCompletionRequest

__all__ = ["router"]

router = APIRouter()


@router.post("/v1/chat/completions")
async def create_chat_completion(body: ChatCompletionRequest, raw_request: Request) -> Response:
    """A chat completion whose choice is the sample the policy selects."""
    serving = raw_request.app.state.optscale.chat
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
