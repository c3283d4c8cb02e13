"""Policy files: what ``optscale tune`` writes and ``load_policy``, ``run`` and ``serve`` read.

A policy file is JSON::

    {"format": "optscale-policy", "version": 1,
     "policy": {"kind": "leader", "confidence": 0.9, "n_max": 32, ...,
                "selection": {"rule": "weighted", "weight": "raw", ...}},
     "objective": {"kind": "budget", "tokens": 1200},
     "provenance": {"pool": "...", "pool_sha256": "...", "created": "...", ...},
     "metrics": {"accuracy": ..., "accuracy_std": ..., "tokens": ..., ...}}

Only ``format``, ``version`` and ``policy`` are needed to load it; the rest says where it came
from and what it achieved on held-out questions. Every error names the file and the field.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from typing import Any

from optscale._selection import Selection
from optscale.policies._base import Policy
from optscale.policies._cost import CostAware, GainModel
from optscale.policies._hybrid import AnyOf
from optscale.policies._leader import LeaderPosterior
from optscale.policies._rules import ASC, DSC, ESC, FixedN

__all__ = ["FORMAT", "PolicyFile", "PolicyFileError", "VERSION", "load_policy",
           "kinds", "policy_from_dict", "policy_text", "read_policy_file", "save_policy"]

FORMAT = "optscale-policy"
VERSION = 1


def kinds() -> dict[str, type]:
    """Policy classes by ``kind`` (imported here: OptScale's module imports this package)."""
    from optscale._policy import OptScale0, OptScaleT

    return {c.kind: c for c in (FixedN, ESC, ASC, DSC, LeaderPosterior, CostAware, AnyOf,
                                OptScale0, OptScaleT)}


class PolicyFileError(ValueError):
    """A malformed policy file or policy description; the message names the field."""


@dataclasses.dataclass(frozen=True)
class PolicyFile:
    """A loaded policy file: the live policy and what was recorded with it."""

    policy: Policy
    objective: dict
    provenance: dict
    metrics: dict


def policy_from_dict(data: Any, where: str = "policy") -> Policy:
    """The policy a :meth:`Policy.to_dict` result describes."""
    if not isinstance(data, dict):
        raise PolicyFileError(f"{where}: must be an object; got {type(data).__name__}")
    kind, known = data.get("kind"), kinds()
    if kind not in known:
        raise PolicyFileError(f"{where}.kind: must be one of {sorted(known)}; got {kind!r}")
    cls = known[kind]
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.compare}
    unknown = sorted(set(data) - set(fields) - {"kind"})
    if unknown:
        raise PolicyFileError(f"{where}: unknown field(s) {', '.join(unknown)} for kind "
                              f"{kind!r}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        if name == "kind":
            continue
        try:
            kwargs[name] = _field(name, value, f"{where}.{name}")
        except (TypeError, ValueError) as err:
            if isinstance(err, PolicyFileError):
                raise
            raise PolicyFileError(f"{where}.{name}: {err}") from None
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise PolicyFileError(_name_the_field(str(err), cls.__name__, kwargs, where)) from None


def _name_the_field(message: str, owner: str, given: dict, where: str) -> str:
    """``where.field: ...`` for a setting's check (``Owner: field must ...``) on a field the
    file gave; ``where: ...`` for the rest (a check across fields names them in its text)."""
    head, _, rest = message.partition(": ")
    name = rest.split(" ", 1)[0]
    if head == owner and name in given:
        return f"{where}.{name}: {rest[len(name) + 1:]}"
    return f"{where}: {message}"


def _field(name: str, value: Any, where: str) -> Any:
    if name == "selection":
        if not isinstance(value, dict):
            raise PolicyFileError(f"{where}: must be an object")
        return Selection(**{k: (tuple(v) if isinstance(v, list) else v)
                            for k, v in value.items()})
    if name == "members":
        if not isinstance(value, list):
            raise PolicyFileError(f"{where}: must be a list of policies")
        return tuple(policy_from_dict(v, f"{where}[{i}]") for i, v in enumerate(value))
    if name == "model":
        try:
            return None if value is None else GainModel.from_dict(value, where)
        except (TypeError, ValueError) as err:  # its message names the field already
            raise PolicyFileError(str(err)) from None
    return tuple(value) if isinstance(value, list) else value


def policy_text(policy: Policy, *, objective: dict | None = None,
                provenance: dict | None = None, metrics: dict | None = None) -> str:
    """The policy file's JSON text."""
    if not isinstance(policy, Policy):
        raise TypeError(f"policy must be an optscale policy; got {type(policy).__name__}")
    body = {"format": FORMAT, "version": VERSION, "policy": policy.to_dict(),
            "objective": objective or {}, "provenance": provenance or {},
            "metrics": metrics or {}}
    return json.dumps(body, indent=2, allow_nan=False, default=_plain) + "\n"


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):  # NumPy scalars
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to a policy file")


def save_policy(policy: Policy, path: str, *, objective: dict | None = None,
                provenance: dict | None = None, metrics: dict | None = None) -> str:
    """Write ``policy`` (and what it was tuned for and achieved) to ``path``, atomically
    (a temporary file in the same folder, renamed: an existing symlink is replaced, never
    written through)."""
    text = policy_text(policy, objective=objective, provenance=provenance, metrics=metrics)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".optscale-policy-", dir=folder)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_policy_file(path: str) -> PolicyFile:
    """Load a policy file with its metadata (errors name the file and field)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except UnicodeDecodeError as err:
        raise PolicyFileError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") \
            from None
    except json.JSONDecodeError as err:
        raise PolicyFileError(f"{path}:{err.lineno}: not JSON: {err.msg}") from None
    except RecursionError:
        raise PolicyFileError(f"{path}: JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise PolicyFileError(f"{path}: must hold a JSON object")
    if data.get("format") != FORMAT:
        raise PolicyFileError(f"{path}: format: expected {FORMAT!r}; got "
                              f"{data.get('format')!r}")
    if data.get("version") != VERSION:
        raise PolicyFileError(f"{path}: version: this optscale reads version {VERSION}; got "
                              f"{data.get('version')!r}")
    try:
        policy = policy_from_dict(data.get("policy"))
    except PolicyFileError as err:
        raise PolicyFileError(f"{path}: {err}") from None
    extras = {}
    for key in ("objective", "provenance", "metrics"):
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise PolicyFileError(f"{path}: {key}: must be an object")
        extras[key] = value
    return PolicyFile(policy, **extras)


def load_policy(path: str) -> Policy:
    """The live policy of a policy file (``optscale tune -o``).

    Example:
        >>> import optscale, os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "policy.json")
        >>> _ = optscale.save_policy(optscale.ESC(window=5, n_max=40), path)
        >>> optscale.load_policy(path) == optscale.ESC(window=5, n_max=40)
        True
    """
    return read_policy_file(path).policy
