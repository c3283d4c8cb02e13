"""Per-request knobs: ``extra_body={"optscale": {...}}``, checked and applied to a policy.

Knobs: ``policy`` (the name of one the server was started with; default ``"default"``),
``max_n`` (an integer >= 1: a maximum, it caps the policy's budget ``n_max``), ``target`` (the
OptScale policies' score target), ``confidence`` (the OptScale policies' and the answer
posterior's ``confidence``, ASC's ``threshold``; in (0, 1)) and ``gold`` (a gold answer,
recorded in the request log only, so that the log can be graded and re-tuned on). A knob that
the policy does not have, a wrong type or a value out of range is a 400 whose ``param`` names
the knob (``optscale.max_n``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from optscale.policies import Policy

__all__ = ["KNOBS", "MAX_N_LIMIT", "Knobs", "RequestError", "resolve_knobs", "with_budget"]

KNOBS = ("policy", "max_n", "target", "confidence", "gold")
MAX_N_LIMIT = 100_000  # a request asking for more samples than this is surely a mistake


class RequestError(ValueError):
    """A client error, answered with an OpenAI-style error body.

    Attributes: ``message``, ``param`` (the field at fault, dotted), ``status`` (HTTP),
    ``type`` and ``code`` (OpenAI's error ``type`` and ``code``).
    """

    def __init__(self, message: str, param: str | None = None, status: int = 400,
                 type: str = "invalid_request_error", code: str | None = None) -> None:
        super().__init__(message)
        self.message, self.param, self.status, self.type, self.code = (
            message, param, status, type, code)


@dataclasses.dataclass(frozen=True)
class Knobs:
    """A request's resolved knobs: the policy to run (knobs applied) and what goes in the log."""

    policy_name: str
    policy: Policy
    max_n: int  # the hard cap on samples (the policy's n_max, or less)
    gold: str | None = None


def _fields(policy: Policy) -> set[str]:
    return {f.name for f in dataclasses.fields(policy)}  # type: ignore[arg-type]


def _set(policy: Policy, names: tuple[str, ...], value: Any) -> Policy | None:
    """``policy`` with the first of ``names`` it has set to ``value`` (in a hybrid: in every
    member that has one); None when neither it nor a member has any."""
    own = [n for n in names if n in _fields(policy)]
    if own:
        return dataclasses.replace(policy, **{own[0]: value})
    members = getattr(policy, "members", None)
    if not members:
        return None
    changed = [_set(m, names, value) for m in members]
    if all(c is None for c in changed):
        return None
    return dataclasses.replace(policy, members=tuple(
        m if c is None else c for m, c in zip(members, changed, strict=True)))


def _number(raw: dict, key: str) -> float:
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value):
        raise RequestError(f"optscale.{key} must be a finite number; got {value!r:.60}",
                           f"optscale.{key}")
    return float(value)


def resolve_knobs(raw: Any, policies: Mapping[str, Policy]) -> Knobs:
    """Check a request's ``optscale`` object and apply it; :class:`RequestError` if bad."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RequestError(f"optscale must be an object with keys among {', '.join(KNOBS)}; "
                           f"got {type(raw).__name__}", "optscale")
    unknown = sorted(set(raw) - set(KNOBS))
    if unknown:
        raise RequestError(f"optscale.{unknown[0]}: unknown knob; the knobs are "
                           f"{', '.join(KNOBS)}", f"optscale.{unknown[0]}")
    name = raw.get("policy", "default")
    if not isinstance(name, str) or name not in policies:
        raise RequestError(f"optscale.policy: unknown policy {name!r:.60}; this server has "
                           f"{', '.join(sorted(policies))}", "optscale.policy")
    policy = policies[name]
    for key, names in (("target", ("target",)), ("confidence", ("confidence", "threshold"))):
        if key not in raw:
            continue
        value = _number(raw, key)
        if key == "confidence" and not 0 < value < 1:
            raise RequestError(f"optscale.confidence must lie in (0, 1); got {value:g}",
                               "optscale.confidence")
        try:
            changed = _set(policy, names, value)
        except (TypeError, ValueError) as err:
            raise RequestError(f"optscale.{key}: {err}", f"optscale.{key}") from None
        if changed is None:
            raise RequestError(f"optscale.{key}: policy {name!r} ({policy.kind}) has no {key}",
                               f"optscale.{key}")
        policy = changed
    max_n = policy.n_max
    if "max_n" in raw:
        value = raw["max_n"]
        if isinstance(value, bool) or not isinstance(value, int) or \
                not 1 <= value <= MAX_N_LIMIT:
            raise RequestError(f"optscale.max_n must be an integer in [1, {MAX_N_LIMIT}]; got "
                               f"{value!r:.60}", "optscale.max_n")
        max_n = min(max_n, value)
        policy = with_budget(policy, max_n)
    gold = raw.get("gold")
    if gold is not None:
        if isinstance(gold, bool) or not isinstance(gold, (str, int, float)):
            raise RequestError(f"optscale.gold must be a string (the gold answer); got "
                               f"{type(gold).__name__}", "optscale.gold")
        gold = str(gold)
    return Knobs(name, policy, max_n, gold)


def with_budget(policy: Policy, n_max: int) -> Policy:
    """``policy`` with its budget lowered to ``n_max`` where it is larger. A policy that cannot
    take that budget (an OptScale peek larger than it) is kept: the engine then stops it at
    ``n_max`` samples itself, choosing with the policy's selection rule."""
    if n_max >= policy.n_max:
        return policy
    try:
        return dataclasses.replace(policy, n_max=n_max)
    except (TypeError, ValueError):
        return policy
