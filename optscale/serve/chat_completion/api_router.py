"""The route of ``POST /v1/chat/completions``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from optscale.serve._serving import respond
from optscale.serve.chat_completion.protocol import ChatCompletionRequest

__all__ = ["router"]

router = APIRouter()


@router.post("/v1/chat/completions")
async def create_chat_completion(body: ChatCompletionRequest, raw_request: Request) -> Response:
    """A chat completion whose choice is the sample the policy selects."""
    return await respond(raw_request.app.state.optscale.chat, body, raw_request)
