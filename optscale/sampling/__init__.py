"""Sampling layer: a policy drives a generator of completions and a verifier that scores them.

:func:`run` / :func:`run_batch` loop "ask the policy, draw, score, tell the policy" and return
the best answer with every sample drawn; :class:`Generator` and :class:`Scorer` are the
protocols a backend implements (:class:`CallableGenerator` / :class:`CallableScorer` wrap plain
functions).
"""

from optscale.sampling._hf import QWEN_PRM_SYSTEM, HFGenerator, HFPRMScorer, HFRewardScorer
from optscale.sampling._jax import JaxGenerator
from optscale.sampling._openai import OpenAIError, OpenAIGenerator
from optscale.sampling._run import RunResult, run, run_batch
from optscale.sampling._types import (
    CallableGenerator,
    CallableScorer,
    Generator,
    GeneratorOutputError,
    Sample,
    Scorer,
)

__all__ = [
    "CallableGenerator",
    "CallableScorer",
    "Generator",
    "GeneratorOutputError",
    "HFGenerator",
    "HFPRMScorer",
    "HFRewardScorer",
    "JaxGenerator",
    "OpenAIError",
    "OpenAIGenerator",
    "RunResult",
    "Sample",
    "QWEN_PRM_SYSTEM",
    "Scorer",
    "run",
    "run_batch",
]
