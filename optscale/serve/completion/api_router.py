"""The route of ``POST /v1/completions``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from optscale.serve._serving import respond
from optscale.serve.completion.protocol import CompletionRequest

__all__ = ["router"]

router = APIRouter()


@router.post("/v1/completions")
async def create_completion(body: CompletionRequest, raw_request: Request) -> Response:
    """A completion whose choice is the sample the policy selects."""
    return await respond(raw_request.app.state.optscale.completion, body, raw_request)
