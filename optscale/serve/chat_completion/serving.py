"""Chat completions: the job of a request, the response and the streamed chunks."""

from __future__ import annotations

from typing import Any

from optscale.serve._engine import Job, Outcome
from optscale.serve._knobs import RequestError, resolve_knobs
from optscale.serve._serving import Serving, pieces, usage
from optscale.serve.chat_completion.protocol import ChatCompletionRequest

__all__ = ["ChatServing", "question_text"]

_NOT_PASSED = ("optscale", "n", "stream", "stream_options")


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: the text ones, joined
        return "\n".join(p["text"] for p in content
                         if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def question_text(messages: list[dict[str, Any]]) -> str:
    """The question of a conversation: its last user message's text (else its last
    message's)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return _text(message.get("content"))
    return _text(messages[-1].get("content"))


class ChatServing(Serving):
    """``/v1/chat/completions``."""

    endpoint = "chat"

    def job(self, request: ChatCompletionRequest) -> Job:
        """The engine's job for a request; :class:`RequestError` (a 4xx) if it is bad."""
        self.check(request.model, request.n)
        for i, message in enumerate(request.messages):
            if not isinstance(message.get("role"), str):
                raise RequestError(f"messages[{i}].role: expected a string", f"messages.{i}.role")
        knobs = resolve_knobs(request.optscale, self.policies)
        body = request.model_dump(exclude_unset=True)
        for key in _NOT_PASSED:
            body.pop(key, None)
        body["model"], body["n"] = self.model, 1  # one sample per request: cancellable
        if self.engine.needs_logprobs and not request.logprobs:
            body["logprobs"] = True  # the confidence scorer reads them; the client gets none
        return Job("chat", body, question_text(request.messages), knobs,
                   messages=request.messages, want_logprobs=bool(request.logprobs))

    def _chunk_head(self, outcome: Outcome, created: int) -> dict[str, Any]:
        return {"id": f"chatcmpl-{outcome.job.request_id}", "object": "chat.completion.chunk",
                "created": created, "model": self.model}

    def response(self, outcome: Outcome, created: int) -> dict[str, Any]:
        s = outcome.sample
        assert s is not None
        message = dict(s.message or {"content": s.text})
        message["role"] = "assistant"
        return {"id": f"chatcmpl-{outcome.job.request_id}", "object": "chat.completion",
                "created": created, "model": self.model,
                "choices": [{"index": 0, "message": message,
                             "logprobs": s.logprobs if outcome.job.want_logprobs else None,
                             "finish_reason": s.finish_reason}],
                "usage": usage(outcome), "optscale": outcome.summary()}

    def chunks(self, outcome: Outcome, created: int) -> list[dict[str, Any]]:
        s = outcome.sample
        assert s is not None
        head = self._chunk_head(outcome, created)
        out = [{**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                     "logprobs": None, "finish_reason": None}]}]
        texts = pieces(s.text)
        for i, piece in enumerate(texts):
            last = i == len(texts) - 1
            logprobs = s.logprobs if last and outcome.job.want_logprobs else None
            out.append({**head, "choices": [{"index": 0, "delta": {"content": piece},
                                             "logprobs": logprobs, "finish_reason": None}]})
        out.append({**head, "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                         "finish_reason": s.finish_reason}],
                    "optscale": outcome.summary()})
        return out
