"""Print the speed ratio table of the README in one run.

    python benchmarks/ratio_table.py [--size 1000000] [--grid-queries 1000]

Every method answers the same minimal-N queries (best of N reaches the target with the given
confidence); times are the best of 5 runs after a warm-up (JIT compilation excluded). The paper's
grid method is timed on a subsample and reported per query.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import optscale  # noqa: E402
from benchmarks import _workload  # noqa: E402
from optscale import _reference  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=_workload.SIZE)
    parser.add_argument("--grid-queries", type=int, default=_workload.GRID_QUERIES)
    parser.add_argument("--fit-questions", type=int, default=_workload.FIT_QUESTIONS)
    parser.add_argument("--skip-solver", action="store_true")
    args = parser.parse_args()
    if not args.skip_solver:
        solver_table(args)
    fit_table(args)


def solver_table(args: argparse.Namespace) -> None:
    q = _workload.queries(args.size)
    rows = []  # (label, dtype, seconds for the batch, queries)

    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        jax = None
    if jax is not None:
        for dtype in (np.float32, np.float64):
            with jax.enable_x64(dtype == np.float64):
                d = optscale.TruncatedNormal(*(jnp.asarray(q[k], dtype) for k in ("mu", "sigma")))
                t, c = jnp.asarray(q["target"], dtype), jnp.asarray(q["confidence"], dtype)
                for k in (1, 3):
                    sec = _workload.best_time(
                        lambda d=d, t=t, c=c, k=k: optscale.min_samples(d, t, c, k=k).n
                        .block_until_ready())
                    label = "JAX jit, closed form (k=1)" if k == 1 else "JAX jit, k-of-N (k=3)"
                    rows.append((label, np.dtype(dtype).name, sec, args.size))
        device = jax.devices()[0]
        where = f"{device.platform} ({device.device_kind})"
    else:
        where = "no JAX"

    d64 = optscale.TruncatedNormal(q["mu"], q["sigma"])
    cython = None
    try:
        from optscale import _cython_backend as cython
    except ImportError:
        pass
    if cython is not None:
        for threads in (1, 2):
            cython.set_num_threads(threads)
            for k in (1, 3):
                sec = _workload.best_time(
                    lambda k=k: cython.min_samples(d64, q["target"], q["confidence"], k=k),
                    repeats=3)
                label = "closed form (k=1)" if k == 1 else "k-of-N (k=3)"
                rows.append((f"Cython, {label}, {threads} thread{'s' * (threads > 1)}",
                             "float64", sec, args.size))
        cython.set_num_threads(os.cpu_count() or 1)
    numpy_sec = _workload.best_time(
        lambda: _reference.min_samples(d64, q["target"], q["confidence"]), repeats=3)
    rows.append(("NumPy/SciPy reference, closed form", "float64", numpy_sec, args.size))
    sec = _workload.best_time(lambda: _workload.scipy_closed_form(q), repeats=3)
    rows.append(("scipy.stats.truncnorm, closed form", "float64", sec, args.size))
    sub = list(zip(*(q[k][: args.grid_queries] for k in ("mu", "sigma", "target",
                                                          "confidence")), strict=True))
    sec = _workload.best_time(lambda: [_workload.grid_method(*r) for r in sub], repeats=1)
    rows.append((f"paper's grid method (1,000-point grid, N=1..{_workload.GRID_N_MAX})",
                 "float64", sec, len(sub)))

    per_numpy = numpy_sec / args.size
    print(f"# {args.size:,} queries; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; JAX on {where}; optscale {optscale.__version__}")
    print("| method | dtype | time per query | queries / s | speed vs NumPy closed form |")
    print("|---|---|---:|---:|---:|")
    for label, dtype, sec, n in rows:
        per = sec / n
        print(f"| {label} | {dtype} | {per * 1e9:,.1f} ns | {1 / per:,.3g} | "
              f"{per_numpy / per:,.3g}x |")
    by = {(label, dtype): sec / n for label, dtype, sec, n in rows}
    grid = rows[-1][2] / rows[-1][3]
    if jax is not None:
        print()
        f32 = by[("JAX jit, closed form (k=1)", "float32")]
        f64 = by[("JAX jit, closed form (k=1)", "float64")]
        k32 = by[("JAX jit, k-of-N (k=3)", "float32")]
        k64 = by[("JAX jit, k-of-N (k=3)", "float64")]
        checks = [
            ("JAX float32 vs NumPy closed form", per_numpy / f32, ">= 15x", per_numpy / f32 >= 15),
            ("JAX float64 vs NumPy closed form", per_numpy / f64, ">= 1x", per_numpy / f64 >= 1),
            ("k-of-N / closed form, float32", k32 / f32, "<= 10x", k32 / f32 <= 10),
            ("k-of-N / closed form, float64", k64 / f64, "<= 10x", k64 / f64 <= 10),
            ("grid method / JAX float32, per query", grid / f32, ">= 1e5x", grid / f32 >= 1e5),
        ]
        print("| target | measured | goal | met |")
        print("|---|---:|---|---|")
        for name, value, goal, ok in checks:
            print(f"| {name} | {value:,.3g}x | {goal} | {'yes' if ok else 'NO'} |")
        if cython is not None:
            c1 = by[("Cython, closed form (k=1), 1 thread", "float64")]
            c2 = by[("Cython, closed form (k=1), 2 threads", "float64")]
            checks2 = [
                ("Cython float64 (2 threads) vs NumPy closed form", per_numpy / c2, ">= 2.5x",
                 per_numpy / c2 >= 2.5),
                ("Cython 1 thread / 2 threads", c1 / c2, "reported", True),
            ]
            for name, value, goal, ok in checks2:
                print(f"| {name} | {value:,.3g}x | {goal} | {'yes' if ok else 'NO'} |")
        if device.platform == "gpu":
            print(f"\nfloat32 decisions per second on {device.device_kind}: {1 / f32:,.3g}")


def fit_table(args: argparse.Namespace) -> None:
    """Fitting a truncated normal to every question's 16 scores (MLE)."""
    x = _workload.fit_problems(args.fit_questions)
    rows = []
    try:
        import jax
    except ImportError:
        jax = None
    if jax is not None:
        for dtype in (np.float64, np.float32):
            with jax.enable_x64(dtype == np.float64):
                xj = jax.numpy.asarray(x, dtype)
                sec = _workload.best_time(
                    lambda xj=xj: optscale.fit_truncnorm(xj).mu.block_until_ready(), repeats=3)
                rows.append(("JAX, batched Newton", np.dtype(dtype).name, sec, len(x)))
    previous = optscale.backend()
    optscale.set_backend("numpy")
    sub = x[: max(len(x) // 10, 1)]
    sec = _workload.best_time(lambda: optscale.fit_truncnorm(sub), repeats=1)
    optscale.set_backend(previous)
    rows.append(("NumPy reference, batched Newton", "float64", sec, len(sub)))
    sub = x[:_workload.LBFGSB_QUESTIONS]
    sec = _workload.best_time(lambda: [_workload.lbfgsb_fit(r) for r in sub], repeats=1)
    rows.append(("scipy L-BFGS-B, one question at a time", "float64", sec, len(sub)))
    per_lbfgsb = rows[-1][2] / rows[-1][3]
    print(f"\n# fitting {len(x):,} questions x {x.shape[1]} scores (MLE); the NumPy and "
          "L-BFGS-B rows time a subsample and are reported per question")
    print("| method | dtype | total for the batch | time per question | speed vs L-BFGS-B |")
    print("|---|---|---:|---:|---:|")
    for label, dtype, sec, n in rows:
        per = sec / n
        print(f"| {label} | {dtype} | {per * len(x):,.2f} s | {per * 1e6:,.2f} us | "
              f"{per_lbfgsb / per:,.3g}x |")
    if jax is not None:
        total = rows[0][2]
        print(f"\n| target | measured | goal | met |\n|---|---:|---|---|\n"
              f"| JAX float64, {len(x):,} x {x.shape[1]} | {total:.2f} s | <= 1 s | "
              f"{'yes' if total <= 1 else 'NO'} |\n"
              f"| JAX float64 vs L-BFGS-B loop, per question | "
              f"{per_lbfgsb / (total / len(x)):,.3g}x | >= 1000x | "
              f"{'yes' if per_lbfgsb / (total / len(x)) >= 1000 else 'NO'} |")


if __name__ == "__main__":
    main()
