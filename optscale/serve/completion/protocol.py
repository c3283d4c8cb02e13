"""The request of ``/v1/completions``: the OpenAI fields optscale reads; every other field is
kept as it is and passed to the upstream (``extra="allow"``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from optscale.serve.chat_completion.protocol import StreamOptions

__all__ = ["CompletionRequest"]


class CompletionRequest(BaseModel):
    """A completion request (one prompt: one question); ``optscale`` carries the knobs."""

    model_config = ConfigDict(extra="allow")
    model: str
    prompt: str | list[str]
    n: int | None = None
    best_of: int | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    logprobs: int | None = None
    echo: bool | None = None
    seed: int | None = None
    optscale: Any = None
