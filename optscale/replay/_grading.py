"""Final answers: extraction from completion text, grading against a gold answer and grouping
of equivalent answers for votes.

Equivalence is math-verify's (``pip install "optscale[replay]"``): every answer is wrapped in
``\\boxed{...}`` (as the OptScale reference does), parsed once (cached) and compared with
``verify(gold, answer)`` (time limit 5 s a comparison when grading, 1 s when grouping). Two
cheap shortcuts keep a pool of hundreds of distinct answers fast: answers equal after
:func:`normalize_answer` (which drops only what cannot change a value) are equivalent, and two
answers whose parsed values are numbers, constant or symbolic expressions, intervals or tuples of
them are different when they evaluate to clearly different numbers (free symbols at a fixed
point), where math-verify could not find them equal either; math-verify decides the remaining
pairs. One deliberate exception: an
answer left as an unevaluated sum, product, integral, limit or derivative is not a final value,
and math-verify can spend seconds per pair simplifying it, so it equals only answers with the
same normalized text. math-verify's signal-based timeouts need the main thread; in other
threads they are switched off.
"""

from __future__ import annotations

import functools
import re
import threading
import warnings
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["extract_boxed", "extract_final_answer", "grade", "group_answers", "normalize_answer"]

_INSTALL = 'grading needs math-verify: pip install "optscale[replay]"'
_GRADE_TIMEOUT = 5  # seconds per parse / comparison, math-verify's default
_GROUP_TIMEOUT = 1  # grouping compares many pairs; a timed-out pair counts as different
_fallback_warned = False


# -- extraction --------------------------------------------------------------------------------

_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
_MARKER = re.compile(r"####|the\s+(?:final\s+)?answer\s+is", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def _closing_brace(text: str, start: int) -> int:
    """Index of the brace closing the group opened just before ``start``; -1 if unbalanced."""
    depth = 1
    i, n = start, len(text)
    while i < n:
        c = text[i]
        if c == "\\":  # \{ and \} are literal braces, not grouping
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def extract_boxed(text: str | None) -> str | None:
    """Content of the last complete ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, stripped.

    Braces are matched (``\\{`` / ``\\}`` do not count); a box nested in another belongs to the
    outer one; an unclosed box (truncated generation) is skipped. None when there is no box.

    >>> extract_boxed(r"so $\\boxed{1}$, no: $\\boxed{\\frac{1}{2}}$.")
    '\\\\frac{1}{2}'
    """
    if not text:
        return None
    last = None
    pos = 0
    while (m := _BOX.search(text, pos)) is not None:
        end = _closing_brace(text, m.end())
        if end < 0:
            pos = m.end()
            continue
        last = text[m.end():end]
        pos = end + 1
    return None if last is None else last.strip()


def extract_final_answer(text: str | None) -> str | None:
    """The final answer of a GSM8K-style solution: the last ``\\boxed{}``, else the first number
    after the last ``####`` or "The answer is", else the last number in the text (commas
    removed); None when there is no number.

    >>> extract_final_answer("9 * $2 = $18 per day.\\nThe answer is 18")
    '18'
    """
    if not text:
        return None
    boxed = extract_boxed(text)
    if boxed:
        return boxed
    marks = list(_MARKER.finditer(text))
    if marks:
        m = _NUMBER.search(text, marks[-1].end())
        if m is not None:
            return m.group().replace(",", "")
    numbers = _NUMBER.findall(text)
    return numbers[-1].replace(",", "") if numbers else None


_LEFT_RIGHT = re.compile(r"\\(?:left|right)(?![A-Za-z])")
_WORD_SPACE = re.compile(r"(\\[A-Za-z]+)\s+(?=[A-Za-z])")
_SPACE = re.compile(r"\s+")


def normalize_answer(answer: str) -> str:
    """``answer`` without what cannot change its meaning: whitespace (one space is kept after a
    control word followed by a letter, as in ``\\pi r``), ``\\left`` / ``\\right``, ``\\!``,
    ``$``, a trailing period; ``\\dfrac`` / ``\\tfrac`` become ``\\frac``."""
    s = _LEFT_RIGHT.sub("", answer).replace("\\!", "").replace("$", "")
    s = re.sub(r"\\[dt]frac(?![A-Za-z])", r"\\frac", s)
    s = _SPACE.sub("", _WORD_SPACE.sub("\\1\0", s)).replace("\0", " ")
    return s.rstrip(".")


def _usable(answer: str | None) -> bool:
    return answer is not None and bool(answer.strip())


# -- math-verify -------------------------------------------------------------------------------

def _math_verify() -> Any:
    """The math_verify module, or None when it is not installed."""
    try:
        import math_verify
    except ImportError:
        return None
    return math_verify


def _timeout(seconds: int) -> int | None:
    # math-verify's timeouts use signal.alarm, which only the main thread may set
    return seconds if threading.current_thread() is threading.main_thread() else None


@functools.lru_cache(maxsize=1 << 16)
def _parse(answer: str) -> tuple:
    mv = _math_verify()
    text = answer if "\\boxed" in answer else f"\\boxed{{{answer}}}"
    return tuple(mv.parse(text, parsing_timeout=_timeout(_GRADE_TIMEOUT)))


def _point(name: str) -> float:
    """A fixed, unremarkable value for the free symbol ``name``."""
    return 0.5 + (zlib.crc32(name.encode()) % 10007) / 10007 + 0.01 * 2 ** 0.5


def _value(expr: Any) -> Any:
    """What math-verify compares of ``expr`` when it compares it by value (see
    _surely_different): ("num", complex), ("tuple", parts) or ("interval", (left_open,
    right_open), (start, end)); None for anything else."""
    import sympy
    from sympy.core.function import AppliedUndef

    if isinstance(expr, sympy.Tuple):
        return ("tuple", tuple(_value(e) for e in expr.args))
    if isinstance(expr, sympy.Interval):
        return ("interval", (bool(expr.left_open), bool(expr.right_open)),
                (_value(expr.start), _value(expr.end)))
    # Symbols (text answers, e vs E), percentages (UnevaluatedExpr), relations, sets and
    # matrices get special rules in math-verify: leave them to it
    if (not isinstance(expr, sympy.Expr) or isinstance(expr, (sympy.Symbol, sympy.MatrixExpr))
            or expr.has(sympy.UnevaluatedExpr)):
        return None
    value = expr.subs({s: _point(str(s)) for s in expr.free_symbols})
    # an undefined function (p(x), \zeta(3) as parsed) is some fixed function of its arguments
    value = value.replace(lambda e: isinstance(e, AppliedUndef),
                          lambda e: sympy.Float(_point(str(e))))
    value = value.evalf(30)
    if value.free_symbols or not value.is_number:
        return None
    z = complex(value)
    return ("num", z) if np.isfinite(z) else None


_OPAQUE = ("opaque",)


@functools.lru_cache(maxsize=1 << 16)
def _fingerprint(answer: str) -> Any:
    """_value of the parsed answer; _OPAQUE when it holds an unevaluated calculus operator."""
    import sympy

    parsed = _parse(answer)
    if not parsed or not isinstance(parsed[0], sympy.Basic):
        return None
    if parsed[0].has(sympy.Sum, sympy.Product, sympy.Integral, sympy.Limit, sympy.Derivative):
        return _OPAQUE
    if len(parsed) != 2:
        return None
    from math_verify.errors import TimeoutException
    from math_verify.utils import timeout

    try:
        return timeout(_timeout(_GROUP_TIMEOUT))(_value)(parsed[0])
    except (Exception, TimeoutException):  # not evaluable (in time): math-verify decides
        return None


def _surely_different(a: Any, b: Any) -> bool:
    """Whether math-verify must find the values ``a`` and ``b`` (from _value) unequal.

    Numbers: math-verify's equality is structural, float rounding at 6 decimals, or a difference
    that simplifies to zero, so values further apart than the tolerance are never equal. Tuples:
    element by element in order, equal lengths required. Intervals: equal openness and ends; an
    open interval against a tuple: as the tuple of its ends.
    """
    if a is None or b is None:
        return False
    if {a[0], b[0]} == {"interval", "tuple"}:
        # an open interval (a, b) compares as the tuple of its ends; any other one never equals
        # a tuple
        a, b = (_as_tuple(a), b) if a[0] == "interval" else (a, _as_tuple(b))
        if a is None or b is None:
            return True
    if a[0] != b[0]:
        return False
    if a[0] == "num":
        x, y = a[1], b[1]
        return abs(x - y) > 2e-6 + 1e-9 * max(abs(x), abs(y))
    if a[0] == "interval":  # equal ends and equal openness
        return a[1] != b[1] or any(map(_surely_different, a[2], b[2]))
    if len(a[1]) != len(b[1]):
        return True
    return any(_surely_different(x, y) for x, y in zip(a[1], b[1], strict=True))


def _as_tuple(interval: Any) -> Any:
    return ("tuple", interval[2]) if interval[1] == (True, True) else None


def _equivalent(gold: str, answer: str, timeout: int) -> bool:
    if normalize_answer(gold) == normalize_answer(answer):
        return True
    a, b = _fingerprint(gold), _fingerprint(answer)
    # an unevaluated sum, integral, ... is not a final value, and math-verify would spend seconds
    # per pair simplifying it: such an answer only equals the same text
    if a is _OPAQUE or b is _OPAQUE or _surely_different(a, b):
        return False
    mv = _math_verify()
    return bool(mv.verify(list(_parse(gold)), list(_parse(answer)),
                          timeout_seconds=_timeout(timeout)))


# -- public ------------------------------------------------------------------------------------

def grade(answers: Sequence[str | None], gold: str) -> np.ndarray:
    """Whether each answer is equivalent to ``gold`` (math-verify); None or empty is wrong.

    Raises ImportError when math-verify is not installed.
    """
    if _math_verify() is None:
        raise ImportError(_INSTALL)
    out = np.zeros(len(answers), bool)
    if not _usable(gold):
        return out
    verdicts: dict[str, bool] = {}
    for i, answer in enumerate(answers):
        if not _usable(answer):
            continue
        if answer not in verdicts:
            verdicts[answer] = _equivalent(gold, answer, _GRADE_TIMEOUT)
        out[i] = verdicts[answer]
    return out


def group_answers(answers: Sequence[str | None]) -> np.ndarray:
    """Integer codes 0, 1, 2, ... (by first appearance), equal exactly for equivalent answers;
    -1 for None or empty.

    Each new distinct answer joins the first existing group whose representative (its first
    answer) math-verify finds equivalent to it (``verify(representative, answer)``), else opens a
    group. Without math-verify, answers are grouped by :func:`normalize_answer` (with a warning).
    """
    global _fallback_warned
    mv = _math_verify()
    if mv is None and not _fallback_warned:
        warnings.warn('math-verify is not installed: answers are grouped by normalized text only '
                      '(pip install "optscale[replay]")', stacklevel=2)
        _fallback_warned = True
    codes = np.full(len(answers), -1, np.int32)
    by_key: dict[str, int] = {}
    representatives: list[str] = []
    for i, answer in enumerate(answers):
        if not _usable(answer):
            continue
        key = normalize_answer(answer)
        code = by_key.get(key)
        if code is None:
            if mv is not None:
                code = next((c for c, rep in enumerate(representatives)
                             if _equivalent(rep, answer, _GROUP_TIMEOUT)), None)
            if code is None:
                code = len(representatives)
                representatives.append(answer)
            by_key[key] = code
        codes[i] = code
    return codes
