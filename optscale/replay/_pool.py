"""A completion pool: every stored sample of every question, as padded columnar arrays.

Q questions, up to M samples each; question q has ``lengths[q]`` samples in slots
``[0, lengths[q])`` and padding after (score NaN, correct False, tokens 0, answer -1).

Per sample: the verifier ``score`` (already aggregated from step scores), ``correct`` (None for
an ungraded pool), output ``tokens`` (None when the source has no counts) and ``answers``, an
integer code per sample that is equal exactly when two final answers are mathematically
equivalent (-1: no answer extracted); votes group by this code. Per question: ``ids``, an
optional ``prior`` (mu0, sigma0) for OptScale^t, and optional ``questions`` / ``gold`` text.

The columnar form is an NPZ file (:func:`save_npz` / :func:`load_npz`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from typing import Any

import numpy as np

__all__ = ["Pool", "PoolFormatError", "load_npz", "save_npz"]


class PoolFormatError(ValueError):
    """A malformed pool file; the message names the file, the 1-based line and the field (for
    NPZ: the array)."""


def check_regular_file(path: str) -> None:
    """Refuse what is not a regular file before opening it (reading a FIFO blocks, a device
    never ends); a missing file is the OSError of ``os.stat``."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        kind = ("a folder" if stat.S_ISDIR(mode) else "a named pipe (FIFO)"
                if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or
                stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "special")
        raise PoolFormatError(f"{path}: is {kind}, not a regular file")


def brief(err: BaseException, limit: int = 160) -> str:
    """``Type: message`` of a third-party exception, on one line and cut to ``limit``."""
    text = " ".join(str(err).split())
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def duplicate_id(ids: Any) -> tuple[int, int] | None:
    """(first, second) positions of the first question id given twice, or None."""
    seen: dict[str, int] = {}
    for i, name in enumerate(ids):
        if name in seen:
            return seen[name], i
        seen[name] = i
    return None


@dataclasses.dataclass(frozen=True, eq=False)
class Pool:
    """Stored completions of Q questions (see the module docstring)."""

    scores: np.ndarray  # [Q, M] float64
    lengths: np.ndarray  # [Q] int64
    answers: np.ndarray  # [Q, M] int32, -1 = none
    correct: np.ndarray | None = None  # [Q, M] bool
    tokens: np.ndarray | None = None  # [Q, M] int64
    ids: tuple[str, ...] = ()
    prior: np.ndarray | None = None  # [Q, 2] (mu0, sigma0)
    questions: tuple[str, ...] | None = None
    gold: tuple[str, ...] | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        scores = np.asarray(self.scores, np.float64)
        if scores.ndim != 2:
            raise ValueError(f"Pool: scores must have shape [Q, M]; got {scores.shape}")
        q, m = scores.shape
        lengths = np.asarray(self.lengths, np.int64)
        if lengths.shape != (q,) or np.any(lengths < 0) or np.any(lengths > m):
            raise ValueError(f"Pool: lengths must have shape ({q},) with values in [0, {m}]")
        slot = np.arange(m)[None, :] < lengths[:, None]
        if np.any(np.isinf(scores[slot])):
            raise ValueError("Pool: a stored sample's score must be finite or NaN (not scored)")
        object.__setattr__(self, "scores", np.where(slot, scores, np.nan))
        object.__setattr__(self, "lengths", lengths)
        raw = np.asarray(self.answers)
        if raw.shape != (q, m):
            raise ValueError(f"Pool: answers must have shape {(q, m)}; got {raw.shape}")
        stored = raw[slot]
        if stored.size and (stored.dtype.kind not in "iuf" or not np.all(np.isfinite(stored))
                            or np.any(stored != np.round(stored)) or stored.min() < -1
                            or stored.max() > 2**31 - 1):
            # checked before the int32 cast, which would wrap or truncate silently
            raise ValueError("Pool: answers must be integer codes in [-1, 2147483647]")
        answers = (np.where(slot, raw, -1).astype(np.int32) if raw.dtype.kind in "iuf"
                   else np.full((q, m), -1, np.int32))  # padding (NaN, anything) never cast
        object.__setattr__(self, "answers", np.where(slot, answers, -1).astype(np.int32))
        if self.correct is not None:
            correct = np.asarray(self.correct, bool)
            if correct.shape != (q, m):
                raise ValueError(f"Pool: correct must have shape {(q, m)}; got {correct.shape}")
            object.__setattr__(self, "correct", correct & slot)
        if self.tokens is not None:
            tokens = np.asarray(self.tokens, np.int64)
            if tokens.shape != (q, m) or np.any(tokens[slot] < 0):
                raise ValueError(f"Pool: tokens must have shape {(q, m)} and be >= 0")
            object.__setattr__(self, "tokens", np.where(slot, tokens, 0))
        ids = tuple(str(i) for i in self.ids) if len(self.ids) else tuple(map(str, range(q)))
        if len(ids) != q:
            raise ValueError(f"Pool: ids must have {q} entries; got {len(ids)}")
        object.__setattr__(self, "ids", ids)
        if self.prior is not None:
            prior = np.asarray(self.prior, np.float64)
            if prior.shape != (q, 2) or not np.all(np.isfinite(prior)) or np.any(prior[:, 1] <= 0):
                raise ValueError(f"Pool: prior must have shape ({q}, 2) with finite mu0 and "
                                 "sigma0 > 0")
            object.__setattr__(self, "prior", prior)
        for name in ("questions", "gold"):
            value = getattr(self, name)
            if value is not None:
                if len(value) != q:
                    raise ValueError(f"Pool: {name} must have {q} entries; got {len(value)}")
                object.__setattr__(self, name, tuple("" if v is None else str(v) for v in value))
        object.__setattr__(self, "meta", dict(self.meta))

    @property
    def size(self) -> int:
        """Number of questions Q."""
        return int(self.scores.shape[0])

    @property
    def width(self) -> int:
        """Padded samples per question M."""
        return int(self.scores.shape[1])

    @property
    def simulated(self) -> bool:
        """Whether the pool was generated (every report built from it says so)."""
        return bool(self.meta.get("simulated", False))

    def subset(self, index: Any) -> Pool:
        """The questions at ``index`` (an integer array or a boolean mask)."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)

        def rows(x):
            return None if x is None else x[index]

        def items(x):
            return None if x is None else tuple(x[i] for i in index)

        return Pool(self.scores[index], self.lengths[index], self.answers[index],
                    rows(self.correct), rows(self.tokens), items(self.ids), rows(self.prior),
                    items(self.questions), items(self.gold), self.meta)


def save_npz(pool: Pool, path: str) -> None:
    """Write the columnar form (compressed NPZ)."""
    arrays: dict[str, Any] = {"scores": pool.scores, "lengths": pool.lengths,
                              "answers": pool.answers, "ids": np.asarray(pool.ids, dtype=str),
                              "meta": np.asarray(json.dumps(pool.meta))}
    for name in ("correct", "tokens", "prior"):
        if getattr(pool, name) is not None:
            arrays[name] = getattr(pool, name)
    for name in ("questions", "gold"):
        if getattr(pool, name) is not None:
            arrays[name] = np.asarray(getattr(pool, name), dtype=str)
    np.savez_compressed(path, **arrays)


# (kinds allowed, inclusive value range) per NPZ array, as save_npz writes them
_NPZ_ARRAYS: dict[str, tuple[str, tuple[int, int] | None]] = {
    "scores": ("iuf", None), "lengths": ("iu", (0, 2**63 - 1)),
    "answers": ("iu", (-1, 2**31 - 1)), "correct": ("b", None),
    "tokens": ("iu", (0, 2**63 - 1)), "prior": ("iuf", None)}
_NPZ_TEXT = ("ids", "questions", "gold")


def _npz_members(path: str) -> dict[str, np.ndarray]:
    """Every array of an NPZ file. Anything unreadable (not a zip, truncated, compressed
    wrongly, object arrays, a bad header) is a PoolFormatError naming the file (and array)."""
    arrays = {}
    try:
        loaded = np.load(path, allow_pickle=False)
        if not hasattr(loaded, "files"):
            raise PoolFormatError(f"{path}: a single .npy array, not an NPZ pool")
        with loaded as data:
            for name in data.files:
                try:
                    arrays[name] = data[name]
                except Exception as err:  # zlib, zipfile, EOF, allow_pickle: a bad member
                    what = ("holds Python objects (not read: allow_pickle=False)"
                            if "allow_pickle" in str(err) else
                            f"cannot be read ({brief(err)})")
                    raise PoolFormatError(f"{path}: array {name!r} {what}") from None
    except PoolFormatError:
        raise
    except Exception as err:  # np.load: not a zip, a truncated central directory, ...
        raise PoolFormatError(f"{path}: not a readable NPZ file ({brief(err)})") from None
    return arrays


def _npz_number_array(path: str, name: str, a: np.ndarray) -> np.ndarray:
    kinds, bounds = _NPZ_ARRAYS[name]
    what = {"iuf": "numbers", "iu": "integers", "b": "booleans"}[kinds]
    if a.dtype.kind == "f" and kinds in ("iu", "b"):  # whole numbers stored as floats are fine
        whole = np.isfinite(a) & (a == np.round(a))
        if kinds == "b":
            whole &= (a == 0) | (a == 1)
        if not whole.all():
            raise PoolFormatError(f"{path}: array {name!r} has dtype {a.dtype} with values that "
                                  f"are not {what}")
        if kinds == "b":
            return a.astype(bool)
        if bounds is not None and a.size and (a.min() < bounds[0] or a.max() > bounds[1]):
            raise PoolFormatError(f"{path}: array {name!r}: values out of range "
                                  f"[{bounds[0]}, {bounds[1]}]")
        return a.astype(np.int64)
    if a.dtype.kind in "iu" and kinds == "b":
        if a.size and not np.isin(a, (0, 1)).all():
            raise PoolFormatError(f"{path}: array {name!r} must hold booleans (or 0 and 1)")
        return a.astype(bool)
    if a.dtype.kind not in kinds:
        raise PoolFormatError(f"{path}: array {name!r} has dtype {a.dtype}; expected {what}")
    if bounds is not None and a.size:
        lo, hi = bounds
        bad = np.flatnonzero(((a < lo) | (a > hi)).ravel())
        if bad.size:
            where = np.unravel_index(bad[0], a.shape)
            raise PoolFormatError(f"{path}: array {name!r} at {tuple(int(i) for i in where)}: "
                                  f"{a.ravel()[bad[0]]} is out of range [{lo}, {hi}]")
    return a


def _npz_text(path: str, name: str, a: np.ndarray) -> tuple[str, ...]:
    if a.ndim != 1 or a.dtype.kind not in "USiuf":
        raise PoolFormatError(f"{path}: array {name!r} must be 1-D text; got shape {a.shape}, "
                              f"dtype {a.dtype}")
    values = tuple(str(v) for v in a)
    for i, v in enumerate(values):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise PoolFormatError(f"{path}: array {name!r} row {i}: not valid Unicode text (a "
                                  "lone surrogate)") from None
    return values


def _npz_meta(path: str, a: np.ndarray) -> dict[str, Any]:
    if a.shape != () or a.dtype.kind not in "US":
        raise PoolFormatError(f"{path}: array 'meta' must be one JSON string; got shape "
                              f"{a.shape}, dtype {a.dtype}")
    try:
        meta = json.loads(str(a))
    except (ValueError, RecursionError) as err:
        raise PoolFormatError(f"{path}: array 'meta': invalid JSON ({brief(err)})") from None
    if not isinstance(meta, dict):
        raise PoolFormatError(f"{path}: array 'meta' must hold a JSON object")
    return meta


def load_npz(path: str | os.PathLike) -> Pool:
    """Read a pool written by :func:`save_npz`.

    Raises:
        PoolFormatError: the file is not a readable NPZ pool: a missing, mistyped, out-of-range
            or mis-shaped array (named), a question id given twice, object arrays (never
            unpickled), a truncated or corrupt archive, or not a regular file.
        OSError: the file cannot be opened (missing, permissions).
    """
    path = os.fspath(path)
    check_regular_file(path)
    data = _npz_members(path)
    for name in ("scores", "lengths", "answers"):
        if name not in data:
            raise PoolFormatError(f"{path}: missing array {name!r} (a pool needs scores, "
                                  "lengths and answers)")
    numbers = {name: _npz_number_array(path, name, data[name]) if name in data else None
               for name in _NPZ_ARRAYS}
    text = {name: _npz_text(path, name, data[name]) if name in data else None
            for name in _NPZ_TEXT}
    meta = _npz_meta(path, data["meta"]) if "meta" in data else {}
    if text["ids"] is not None and (twice := duplicate_id(text["ids"])) is not None:
        first, second = twice
        raise PoolFormatError(f"{path}: array 'ids': question id {text['ids'][second]!r} "
                              f"appears twice (rows {first} and {second})")
    try:
        pool = Pool(numbers["scores"], numbers["lengths"], numbers["answers"],
                    numbers["correct"], numbers["tokens"], text["ids"] or (), numbers["prior"],
                    text["questions"], text["gold"], meta)
    except (ValueError, TypeError, OverflowError) as err:
        raise PoolFormatError(f"{path}: {' '.join(str(err).split())[:300]}") from None
    if pool.size == 0:
        raise PoolFormatError(f"{path}: no questions (array 'scores' has shape "
                              f"{np.shape(numbers['scores'])})")
    return pool
