"""JSON out of the proxy (log lines, answers, stream events) that every parser reads.

Python's ``json`` reads ``NaN`` / ``Infinity`` literals and lone UTF-16 surrogates (``"\\ud800"``)
in a client's body or an engine's answer, and neither can go back out as it came: the literals
are not JSON, and a lone surrogate is not UTF-8 (nor text the pool reader accepts). :func:`dumps`
writes them as ``null`` and as U+FFFD (the replacement character) instead of failing, so a
request whose body (or whose engine's answer) holds one is still answered, and logged in a file
that ``optscale replay`` reads (its samples were paid for).
"""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi import responses

__all__ = ["JSONResponse", "dumps"]

_COMPACT = (",", ":")


def dumps(obj: Any, separators: tuple[str, str] | None = None) -> bytes:
    """``obj`` as UTF-8 JSON: non-finite floats as null, lone surrogates as U+FFFD
    (the fast path, plain ``json.dumps``, whenever it can encode ``obj``)."""
    try:
        return json.dumps(obj, ensure_ascii=False, allow_nan=False,
                          separators=separators).encode()
    except ValueError:  # a NaN / inf (ValueError) or a lone surrogate (UnicodeEncodeError)
        return json.dumps(_clean(obj), ensure_ascii=False, allow_nan=False,
                          separators=separators).encode()


class JSONResponse(responses.JSONResponse):
    """Starlette's JSONResponse, rendered with :func:`dumps` (where Starlette's raises)."""

    def render(self, content: Any) -> bytes:
        return dumps(content, _COMPACT)


def _clean(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, str):
        # pairs of surrogates become their character, lone ones U+FFFD
        return obj.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if isinstance(obj, dict):
        return {_clean(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj
