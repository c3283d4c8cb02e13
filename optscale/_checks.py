"""The rules for valid solver input, written once for any array namespace (NumPy or jax.numpy).

Backends turn the rules into an INVALID status per element; ``errors="raise"`` turns the first
violation into a ValueError naming the argument, the element's index and its value.
"""

from __future__ import annotations

from typing import Any

__all__ = ["INT_MAX", "N_MAX_DEFAULT", "any_invalid", "query_checks"]

INT_MAX = 2**31 - 1  # n is int32 in every backend
N_MAX_DEFAULT = 65536  # default budget cap of every solver


def query_checks(xp: Any, **args: Any) -> list[tuple[str, Any, str]]:
    """(argument name, mask of bad elements, rule) for each argument given (None = not given)."""
    rules = {
        "mu": (lambda v: ~xp.isfinite(v), "must be finite"),
        "sigma": (lambda v: ~(xp.isfinite(v) & _on_scale(xp, args, v)),
                  "must be finite and > 0 on the scale of the range: at least the smallest "
                  "normal float, with (low - mu) / sigma and (high - mu) / sigma finite and "
                  "(high - low) / sigma at least the smallest normal float"),
        "low": (lambda v: ~xp.isfinite(v), "must be finite"),
        "high": (lambda v: ~(xp.isfinite(v) & (v > args["low"])), "must be finite and > low"),
        "target": (lambda v: xp.isnan(v), "must not be NaN"),
        "confidence": (lambda v: ~((v > 0) & (v < 1)), "must lie in the open interval (0, 1)"),
        "cost": (lambda v: ~(xp.isfinite(v) & (v > 0)), "must be finite and > 0"),
        "k": (lambda v: v < 1, "must be >= 1"),
        "n_min": (lambda v: v < 1, "must be >= 1"),
        "n_max": (lambda v: v < args["n_min"], "must be >= n_min"),
    }
    return [(name, rule(args[name]), text) for name, (rule, text) in rules.items()
            if args.get(name) is not None]


def _on_scale(xp: Any, args: dict, sigma: Any) -> Any:
    """sigma is a normal float and the range is representable in its standard units.

    Past that the distribution is a point mass the log-space formulas cannot place, and
    subnormal values are flushed to zero by XLA on some operations and not others.
    """
    tiny = xp.finfo(xp.result_type(xp.asarray(sigma), xp.float32)).tiny
    ok = sigma >= tiny
    if any(args.get(k) is None for k in ("mu", "low", "high")):
        return ok
    mu, low, high = args["mu"], args["low"], args["high"]
    safe = xp.where(ok, sigma, 1.0)
    given = xp.isfinite(mu) & xp.isfinite(low) & xp.isfinite(high) & (high > low)
    with _quiet(xp):  # (a bad mu, low or high is blamed on its own)
        return ok & (~given | (xp.isfinite((low - mu) / safe) & xp.isfinite((high - mu) / safe)
                               & ((high - low) / safe >= tiny)))


def _quiet(xp: Any) -> Any:
    import contextlib

    import numpy as np

    return np.errstate(over="ignore", invalid="ignore") if xp is np else contextlib.nullcontext()


def any_invalid(xp: Any, **args: Any) -> Any:
    """Elementwise OR of every rule's mask (broadcast)."""
    out = False
    for _, bad, _ in query_checks(xp, **args):
        out = out | bad
    return out
