"""What the sampling layer talks to: a generator of completions and a scorer of completions.

Both are structural protocols: any object with the method qualifies. :class:`CallableGenerator`
and :class:`CallableScorer` wrap plain functions (a custom client, a test double).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

__all__ = ["CallableGenerator", "CallableScorer", "Generator", "Sample", "Scorer"]


class Sample(NamedTuple):
    """One completion: its text and the number of output tokens it cost."""

    text: str
    tokens: int


@runtime_checkable
class Generator(Protocol):
    """Draws ``n`` completions for each prompt."""

    def generate(self, prompts: Sequence[str], n: int, **sampling: Any) -> list[list[Sample]]:
        """Per prompt, a list of up to ``n`` samples (fewer only if the backend gave fewer)."""
        ...


@runtime_checkable
class Scorer(Protocol):
    """Scores completions of one prompt with a verifier (higher is better)."""

    def score(self, prompt: str, texts: Sequence[str]) -> Sequence[float]:
        """One finite score per text, in order."""
        ...


def _check_samples(out: Any, prompts: Sequence[str], n: int) -> list[list[Sample]]:
    """Validate a generator's answer, naming what is wrong."""
    if not isinstance(out, (list, tuple)) or len(out) != len(prompts):
        raise ValueError(f"generator returned {type(out).__name__} of length "
                         f"{len(out) if hasattr(out, '__len__') else '?'}; expected a list of "
                         f"{len(prompts)} (one per prompt)")
    result = []
    for i, samples in enumerate(out):
        if len(samples) > n:
            raise ValueError(f"generator returned {len(samples)} samples for prompt {i}; "
                             f"asked for {n}")
        row = []
        for j, s in enumerate(samples):
            text, tokens = (s, None) if isinstance(s, str) else tuple(s)
            if not isinstance(text, str) or not isinstance(tokens, int) or tokens < 0:
                raise ValueError(f"generator sample {j} of prompt {i}: expected (text: str, "
                                 f"tokens: int >= 0); got {s!r:.80}")
            row.append(Sample(text, tokens))
        result.append(row)
    return result


def _check_scores(out: Any, texts: Sequence[str]) -> list[float]:
    scores = [float(x) for x in out]
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
