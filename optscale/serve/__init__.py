"""``optscale serve``: an OpenAI-compatible adaptive-sampling proxy in front of vLLM, SGLang or
any OpenAI-compatible server.

A client request is one question: a policy decides how many samples to draw from the upstream
(as n = 1 requests), a scorer scores them, and the chosen sample is the answer, with ``usage``
counting every sample and an ``optscale`` field saying what was done. Every paid-for sample
goes to an append-only pool-JSONL request log before the answer is sent, so the service can be
re-tuned on its own traffic (``optscale tune LOG``).

    from optscale.serve import ServeConfig, create_app
    app = create_app(ServeConfig("http://localhost:8000/v1", "Qwen/Qwen2.5-Math-7B-Instruct",
                                 scorer="logprob-window", log_path="requests.jsonl"))

The names are imported on first use: ``optscale.serve._upstream`` (the async client behind
:class:`optscale.sampling.OpenAIGenerator`) needs ``httpx`` only, the app needs FastAPI.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Engine",
    "HTTPScorer",
    "LocalScorer",
    "LogprobConfidence",
    "RequestLog",
    "ServeConfig",
    "TokenBucket",
    "Upstream",
    "create_app",
    "default_policy",
    "lowest_window_confidence",
    "mean_confidence",
]

# name -> module: explicit, one line per name (imported lazily, see the module docstring)
_EXPORTS = {
    "Engine": "optscale.serve._engine",
    "HTTPScorer": "optscale.serve._scorers",
    "LocalScorer": "optscale.serve._scorers",
    "LogprobConfidence": "optscale.serve._scorers",
    "RequestLog": "optscale.serve._log",
    "ServeConfig": "optscale.serve._config",
    "TokenBucket": "optscale.serve._budget",
    "Upstream": "optscale.serve._upstream",
    "create_app": "optscale.serve._app",
    "default_policy": "optscale.serve._config",
    "lowest_window_confidence": "optscale.serve._scorers",
    "mean_confidence": "optscale.serve._scorers",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'optscale.serve' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
