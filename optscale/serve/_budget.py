"""A server-wide output-token budget (``--token-budget TOKENS_PER_SECOND``): a token bucket.

The bucket holds at most ``rate * burst`` tokens and refills at ``rate`` tokens per second;
every sample drawn takes its output tokens from it once it arrives (the bucket may go below
zero: samples in flight are never cut short). The rule, applied when a request starts:

    max_n = max(1, min(max_n, floor(available / tokens_per_sample)))

where ``available`` is the bucket's content (0 when in debt) and ``tokens_per_sample`` the
running mean output tokens of the samples drawn so far (an exponential moving average, weight
0.05 per sample; ``initial_tokens`` before the first). So an idle server gives every request its
full budget, and a loaded one shrinks new requests' budgets in proportion to the tokens left;
no request is refused or delayed (it gets at least one sample). A request whose answer was
limited this way says ``"status": "budget"``. The budget is per process: with R replicas, give
each 1/R of the total.
"""

from __future__ import annotations

import math
import time

__all__ = ["TokenBucket"]


class TokenBucket:
    """The token bucket of the module docstring (one event loop: no locking).

    Args:
        rate: tokens per second (> 0).
        burst: seconds of ``rate`` the bucket holds when full (> 0); it starts full.
        initial_tokens: the tokens-per-sample estimate before any sample was seen.
        clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(self, rate: float, burst: float = 10.0, initial_tokens: float = 256.0,
                 clock=time.monotonic) -> None:
        if not (math.isfinite(rate) and rate > 0 and math.isfinite(burst) and burst > 0):
            raise ValueError(f"token budget: rate and burst must be > 0; got {rate}, {burst}")
        self.rate = float(rate)
        self.capacity = float(rate) * float(burst)
        self.tokens_per_sample = float(initial_tokens)
        self._level = self.capacity
        self._clock = clock
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._last) * self.rate)
        self._last = now

    @property
    def available(self) -> float:
        """Tokens in the bucket now (negative: in debt)."""
        self._refill()
        return self._level

    def cap(self, max_n: int) -> int:
        """A new request's ``max_n`` under the rule of the module docstring."""
        per = max(self.tokens_per_sample, 1.0)
        room = math.floor(max(self.available, 0.0) / per)
        return max(1, min(int(max_n), room))

    def spend(self, tokens: int) -> None:
        """Take one sample's output tokens (and update the tokens-per-sample estimate)."""
        self._refill()
        self._level -= tokens
        self.tokens_per_sample += 0.05 * (float(tokens) - self.tokens_per_sample)
