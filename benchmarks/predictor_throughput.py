"""End-to-end questions/second of the bundled prior predictor, and the head's share of it.

    python benchmarks/predictor_throughput.py [--questions 512] [--threads 2]

Texts are MATH500 problems from ../shared/data when present, else synthetic problem-like
texts. End to end = tokenize + all-MiniLM-L6-v2 forward (torch, CPU) + head + moment matching,
no encoder cache (a cold start per question). Best of 3 runs after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from optscale.predictor import load_default, predict_head  # noqa: E402

SHARED = Path(os.environ.get("OPTSCALE_SHARED_DATA",
                             Path(__file__).resolve().parents[2] / "shared" / "data"))


def _texts(n: int) -> list[str]:
    path = SHARED / "optscale-ref" / "questions" / "math500_test.json"
    if path.exists():
        rows = json.loads(path.read_text())
        texts = [r.get("problem") or r.get("question") for r in rows]
    else:
        rng = np.random.default_rng(0)
        words = "find the value of x if a triangle has sides and area integer sum".split()
        texts = [" ".join(rng.choice(words, rng.integers(20, 120))) for _ in range(n)]
    return (texts * (n // len(texts) + 1))[:n]


def _best(fn, repeats: int = 3) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    texts = _texts(args.questions)
    predictor = load_default()
    encoder = predictor.encoder
    e2e = _best(lambda: predictor.prior(texts))
    enc = _best(lambda: encoder.encode(texts))
    states = encoder.encode(texts)
    head = _best(lambda: predict_head(predictor.head, states))
    n = len(texts)
    print(f"# {platform.processor() or platform.machine()}, torch threads {args.threads}, "
          f"{n} questions, mean {np.mean([s.shape[0] for s in states]):.0f} tokens")
    print(f"end to end (encode + head + moment matching): {n / e2e:8.1f} questions/s")
    print(f"encoder alone:                                {n / enc:8.1f} questions/s")
    print(f"head alone (padding + pooling + MLPs):        {n / head:8.1f} questions/s")
    print(f"head share of end-to-end time: {head / e2e:.1%}")


if __name__ == "__main__":
    main()
