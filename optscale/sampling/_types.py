"""What the sampling layer talks to: a generator of completions and a scorer of completions.

Both are structural protocols: any object with the method qualifies. :class:`CallableGenerator`
and :class:`CallableScorer` wrap plain functions (a custom client, a test double).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

__all__ = ["CallableGenerator", "CallableScorer", "Generator", "GeneratorOutputError", "Sample",
           "Scorer"]


class Sample(NamedTuple):
    """One completion: its text and the number of output tokens it cost."""

    text: str
    tokens: int


@runtime_checkable
class Generator(Protocol):
    """Draws ``n`` completions for each prompt."""

    def generate(self, prompts: Sequence[str], n: int, **sampling: Any) -> list[list[Sample]]:
        """Per prompt, a list of up to ``n`` samples (fewer only if the backend gave fewer).

        A failure may carry what was received: an exception with ``.partial`` (per prompt, the
        samples received before it) has those samples kept by :func:`optscale.run`, which then
        asks only for the missing ones.
        """
        ...


@runtime_checkable
class Scorer(Protocol):
    """Scores completions of one prompt with a verifier (higher is better)."""

    def score(self, prompt: str, texts: Sequence[str]) -> Sequence[float]:
        """One finite score per text, in order."""
        ...


def check_int(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    """``value`` as an int in [lo, hi]: TypeError if it is not an integer, ValueError if out of
    range, both naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {value!r:.80}")
    if value < lo or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be {bound}; got {value}")
    return int(value)


def check_number(name: str, value: Any, lo: float, *, strict: bool = False,
                 hi: float = math.inf) -> float:
    """``value`` as a finite float >= lo (> lo where ``strict``) and <= hi, naming ``name`` if
    not."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number; got {value!r:.80}")
    value = float(value)
    if not math.isfinite(value) or value < lo or (strict and value == lo) or value > hi:
        upper = "" if hi == math.inf else f" and <= {hi:g}"
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} {lo:g}"
                         f"{upper}; got {value}")
    return value


class GeneratorOutputError(ValueError):
    """A generator's answer held malformed samples (or more than asked for).

    Attributes:
        partial: per prompt, the well-formed samples of the answer (at most ``n`` each): they
            were paid for, and :func:`optscale.run` keeps them and asks only for the rest.
        problems: what was wrong, one line per malformed sample.
    """

    def __init__(self, message: str, partial: list[list[Sample]], problems: list[str]) -> None:
        super().__init__(message)
        self.partial = partial
        self.problems = problems


def _as_sample(s: Any) -> Sample | None:
    """``s`` as a Sample if it is a well-formed ``(text: str, tokens: int >= 0)``, else None."""
    if isinstance(s, (str, bytes)):
        return None
    try:
        text, tokens = s
    except (TypeError, ValueError):
        return None
    if not isinstance(text, str) or isinstance(tokens, bool) or \
            not isinstance(tokens, (int, np.integer)) or tokens < 0:
        return None
    return Sample(text, int(tokens))


def _split_samples(out: Any, prompts: Sequence[str], n: int
                   ) -> tuple[list[list[Sample]], list[str]]:
    """Per prompt, the well-formed samples of a generator's answer (the first ``n``), and one
    line per problem. An answer that is not one list per prompt raises ValueError: its samples
    cannot be told apart."""
    if not isinstance(out, (list, tuple)) or len(out) != len(prompts):
        raise ValueError(f"generator returned {type(out).__name__} of length "
                         f"{len(out) if hasattr(out, '__len__') else '?'}; expected a list of "
                         f"{len(prompts)} (one per prompt)")
    rows: list[list[Sample]] = []
    problems: list[str] = []
    for i, samples in enumerate(out):
        row: list[Sample] = []
        if not isinstance(samples, (list, tuple)):
            problems.append(f"prompt {i}: expected a list of samples, got "
                            f"{type(samples).__name__}")
        else:
            for j, s in enumerate(samples):
                sample = _as_sample(s)
                if sample is None:
                    problems.append(f"sample {j} of prompt {i}: expected (text: str, tokens: "
                                    f"int >= 0); got {s!r:.80}")
                elif len(row) == n:
                    problems.append(f"prompt {i}: more than the {n} samples asked for (the "
                                    "extra are dropped)")
                else:
                    row.append(sample)
        rows.append(row)
    return rows, problems


def _check_samples(out: Any, prompts: Sequence[str], n: int) -> list[list[Sample]]:
    """Validate a generator's answer: the samples per prompt, or :class:`GeneratorOutputError`
    carrying the well-formed ones (``.partial``) and naming what is wrong."""
    rows, problems = _split_samples(out, prompts, n)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise GeneratorOutputError(f"generator {problems[0]}{more}", rows, problems)
    return rows


def _check_scores(out: Any, texts: Sequence[str]) -> list[float]:
    try:
        scores = [float(x) for x in out]
    except (TypeError, ValueError, OverflowError) as err:
        raise ValueError(f"scorer returned something other than numbers: {err}") from None
    if len(scores) != len(texts):
        raise ValueError(f"scorer returned {len(scores)} scores for {len(texts)} texts")
    bad = [i for i, x in enumerate(scores) if not math.isfinite(x)]
    if bad:
        raise ValueError(f"scorer returned a non-finite score for text {bad[0]}: "
                         f"{scores[bad[0]]}")
    return scores


@dataclasses.dataclass(frozen=True)
class CallableGenerator:
    """A generator from ``fn(prompts, n, **sampling) -> per prompt [(text, tokens), ...]``."""

    fn: Callable[..., Sequence[Sequence[tuple[str, int]]]]

    def generate(self, prompts: Sequence[str], n: int, **sampling: Any) -> list[list[Sample]]:
        return _check_samples(self.fn(list(prompts), n, **sampling), prompts, n)


@dataclasses.dataclass(frozen=True)
class CallableScorer:
    """A scorer from ``fn(prompt, texts) -> scores``."""

    fn: Callable[[str, Sequence[str]], Sequence[float]]

    def score(self, prompt: str, texts: Sequence[str]) -> list[float]:
        return _check_scores(self.fn(prompt, list(texts)), texts)
