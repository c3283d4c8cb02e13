"""Completions: the job of a request, the response and the streamed chunks."""

from __future__ import annotations

from typing import Any

from optscale.serve._engine import Job, Outcome
from optscale.serve._knobs import RequestError, resolve_knobs
from optscale.serve._serving import Serving, pieces, usage
from optscale.serve.completion.protocol import CompletionRequest

__all__ = ["CompletionServing"]

_NOT_PASSED = ("optscale", "n", "stream", "stream_options", "best_of")


class CompletionServing(Serving):
    """``/v1/completions``."""

    endpoint = "completion"

    def job(self, request: CompletionRequest) -> Job:
        """The engine's job for a request; :class:`RequestError` (a 4xx) if it is bad."""
        self.check(request.model, request.n)
        if request.best_of is not None and request.best_of != 1:
            raise RequestError("best_of: the proxy draws its samples itself (the policy "
                               "decides how many); leave best_of out", "best_of")
        prompt = request.prompt
        if isinstance(prompt, list):
            if len(prompt) != 1:
                raise RequestError("prompt: one prompt per request (a request is one "
                                   f"question); got a list of {len(prompt)}", "prompt")
            prompt = prompt[0]
        knobs = resolve_knobs(request.optscale, self.policies)
        body = request.model_dump(exclude_unset=True)
        for key in _NOT_PASSED:
            body.pop(key, None)
        body["model"], body["prompt"], body["n"] = self.model, prompt, 1
        if self.engine.needs_logprobs and not request.logprobs:
            body["logprobs"] = 1  # the confidence scorer reads them; the client gets none
        return Job("completion", body, prompt, knobs,
                   want_logprobs=request.logprobs is not None)

    def _chunk_head(self, outcome: Outcome, created: int) -> dict[str, Any]:
        return {"id": f"cmpl-{outcome.job.request_id}", "object": "text_completion",
                "created": created, "model": self.model}

    def response(self, outcome: Outcome, created: int) -> dict[str, Any]:
        s = outcome.sample
        assert s is not None
        return {"id": f"cmpl-{outcome.job.request_id}", "object": "text_completion",
                "created": created, "model": self.model,
                "choices": [{"index": 0, "text": s.text,
                             "logprobs": s.logprobs if outcome.job.want_logprobs else None,
                             "finish_reason": s.finish_reason}],
                "usage": usage(outcome), "optscale": outcome.summary()}

    def chunks(self, outcome: Outcome, created: int) -> list[dict[str, Any]]:
        s = outcome.sample
        assert s is not None
        head = self._chunk_head(outcome, created)
        texts = pieces(s.text)
        out = []
        for i, piece in enumerate(texts):
            last = i == len(texts) - 1
            logprobs = s.logprobs if last and outcome.job.want_logprobs else None
            out.append({**head, "choices": [{"index": 0, "text": piece, "logprobs": logprobs,
                                             "finish_reason": None}]})
        out.append({**head, "choices": [{"index": 0, "text": "", "logprobs": None,
                                         "finish_reason": s.finish_reason}],
                    "optscale": outcome.summary()})
        return out
