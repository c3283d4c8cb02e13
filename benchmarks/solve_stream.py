"""`optscale solve` on a large batch file: wall time and peak memory of the CLI.

    python benchmarks/solve_stream.py [--rows 10000000] [--dir DIR] [--parquet] [--backend B]

Writes a CSV (and with ``--parquet`` a Parquet file, pyarrow needed) of ``--rows`` everyday
queries (mu 0.3-1, sigma 0.02-0.3, t = c = 0.95, an id column; no k column, so the closed form
applies), then runs ``optscale solve --input FILE --output OUT`` in a child process and reports
its wall time and peak RSS (the child's own, from ``getrusage``), and checks the output's row
count. Issue 15's goal: 10^7 CSV rows in <= 20 s at <= 600 MB, Parquet faster still. The
files are removed at the end unless ``--dir`` names where to keep them.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

CHUNK = 1 << 20  # rows per block written


def write_csv(path: str, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with open(path, "w") as out:
        out.write("id,mu,sigma,target,confidence\n")
        for start in range(0, rows, CHUNK):
            m = min(CHUNK, rows - start)
            block = np.column_stack([np.arange(start, start + m), rng.uniform(0.3, 1.0, m),
                                     rng.uniform(0.02, 0.3, m), np.full(m, 0.95),
                                     np.full(m, 0.95)])
            np.savetxt(out, block, fmt=["%d", "%.6f", "%.6f", "%.2f", "%.2f"], delimiter=",")


def write_parquet(csv_path: str, path: str) -> None:
    from pyarrow import csv, parquet

    parquet.write_table(csv.read_csv(csv_path), path)


def run(source: str, output: str, backend: str | None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one ``optscale solve`` child process."""
    cmd = [sys.executable, "-m", "optscale.cli", "solve", "--input", source, "--output",
           output, "--quiet"] + (["--backend", backend] if backend else [])
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(__file__), ".."))
    start = time.perf_counter()
    child = subprocess.Popen(cmd, env=env)
    _, status, usage = os.wait4(child.pid, 0)  # this child's own resource usage
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"optscale solve exited with {child.returncode}")
    return seconds, usage.ru_maxrss / 1024.0  # (KiB on Linux)


def _apart(fn, *args) -> None:
    """``fn(*args)`` in a child process: this one stays small, and so does the peak RSS that
    the solving children start from (Linux carries a process's peak across exec)."""
    child = multiprocessing.get_context("fork").Process(target=fn, args=args)
    child.start()
    child.join()
    if child.exitcode:
        raise SystemExit(f"{fn.__name__} failed ({child.exitcode})")


def count_rows(path: str) -> int:
    if path.endswith(".parquet"):
        from pyarrow import parquet

        return parquet.ParquetFile(path).metadata.num_rows
    with open(path, "rb") as f:
        return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 24), b"")) - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--dir", default=None)
    parser.add_argument("--parquet", action="store_true")
    parser.add_argument("--backend", default=None, choices=("jax", "cython", "numpy"))
    args = parser.parse_args()
    folder = args.dir or tempfile.mkdtemp(prefix="optscale-solve-")
    os.makedirs(folder, exist_ok=True)
    try:
        csv_path = os.path.join(folder, f"queries-{args.rows}.csv")
        sources = [csv_path]
        if not os.path.exists(csv_path):
            _apart(write_csv, csv_path, args.rows)
        if args.parquet:
            sources.append(csv_path[:-4] + ".parquet")
            if not os.path.exists(sources[-1]):
                _apart(write_parquet, csv_path, sources[-1])
        print(f"# optscale solve, {args.rows:,} rows; {os.cpu_count()} CPUs; backend "
              f"{args.backend or 'default'}")
        for source in sources:
            ext = os.path.splitext(source)[1]
            output = os.path.join(folder, "out" + ext)
            seconds, peak = run(source, output, args.backend)
            rows = count_rows(output)
            print(f"{ext[1:]}: {seconds:.1f} s, peak RSS {peak:,.0f} MB, {rows:,} rows out"
                  + ("" if rows == args.rows else f"  (expected {args.rows:,})"))
    finally:
        if args.dir is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
