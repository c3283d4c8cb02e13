"""The truncated-normal fit at scale: eager (a Python loop over jitted steps) against one
``jax.jit`` program (``lax.while_loop``), and the compile time of a new batch size.

    python benchmarks/fit_jit_vs_eager.py [--size 1000000]

Prints wall times (first call = compile + run, then steady state) for float32 and the
compile seconds XLA reports for a first fit of a new batch size after a warm-up.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


class CompileClock:
    """Seconds XLA spends compiling while the block runs (jax.monitoring events)."""

    def __init__(self) -> None:
        import jax

        self.seconds = 0.0
        self.count = 0
        self._on = False

        def listen(event: str, duration: float, **_: object) -> None:
            if self._on and event == "/jax/core/compile/backend_compile_duration":
                self.seconds += duration
                self.count += 1

        jax.monitoring.register_event_duration_secs_listener(listen)

    def __enter__(self) -> CompileClock:
        self.seconds, self.count, self._on = 0.0, 0, True
        return self

    def __exit__(self, *exc: object) -> None:
        self._on = False


def problems(size: int, n: int = 16, seed: int = 0) -> np.ndarray:
    from benchmarks import _workload

    return _workload.fit_problems(size, n, seed) if size else np.zeros((0, n))


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    np.asarray(out.mu)
    return time.perf_counter() - t0, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    args = parser.parse_args()
    import jax

    import optscale

    clock = CompileClock()
    x = jax.numpy.asarray(problems(args.size).astype(np.float32))
    eager = optscale.fit_truncnorm
    jitted = jax.jit(optscale.fit_truncnorm)
    for name, fn in (("eager", eager), ("jit", jitted)):
        with clock:
            first, out = timed(fn, x)
        steady = min(timed(fn, x)[0] for _ in range(2))
        print(f"{name:6s} {args.size:>9,d} x 16 float32: first call {first:6.2f} s "
              f"(compile {clock.seconds:5.2f} s, {clock.count} programs), then {steady:6.2f} s; "
              f"max iterations {int(np.max(np.asarray(out.n_iter)))}")
    for warm, new in ((100_000, 70_000), (100_000, 120_000), (100_000, 30_000)):
        optscale.fit_truncnorm(problems(warm, seed=1).astype(np.float32))
        with clock:
            t, _ = timed(optscale.fit_truncnorm, problems(new, seed=2).astype(np.float32))
        print(f"new batch size {new:,d} after a warm-up on {warm:,d}: {t:.2f} s, compile "
              f"{clock.seconds:.3f} s ({clock.count} programs)")


if __name__ == "__main__":
    main()
