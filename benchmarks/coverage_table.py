"""Print the coverage table of the README: ``python benchmarks/coverage_table.py``."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from benchmarks import _coverage  # noqa: E402


def main() -> None:
    rows = _coverage.table()
    print(f"# target {_coverage.TARGET}, nominal confidence {_coverage.CONFIDENCE}; "
          "4,000 synthetic questions, coverage = P(best of N* fresh samples >= target)")
    print("| N* from | peek samples | coverage | +- 2 s.e. | mean N* |")
    print("|---|---:|---:|---:|---:|")
    for rule, n_peek, mean, se, n in rows:
        print(f"| {rule} | {'' if n_peek is None else n_peek} | {mean:.3f} | {2 * se:.3f} | "
              f"{n:.1f} |")


if __name__ == "__main__":
    main()
