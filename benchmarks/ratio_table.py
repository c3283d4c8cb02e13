"""Print the speed ratio table of the README in one run.

    python benchmarks/ratio_table.py [--size 1000000] [--grid-queries 1000] [--skip-fit]

Every method answers the same minimal-N queries (best of N reaches the target with the given
confidence), in one run: the naive closed forms a user would write (NumPy/SciPy ndtr
differences and the same five lines under jax.jit), optscale's JAX, Cython and NumPy solvers
(k = 1, k = 3 and the expected best), scipy.stats.truncnorm and the paper's grid method. The
first call (compilation included) and the best of several later calls are timed; ratios are
against the naive NumPy form. The "wrong N*" column runs each k = 1 form on a tail-heavy
workload and counts answers that differ from the exact N* (float64, all backends agree).
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
    parser.add_argument("--skip-fit", action="store_true")
    args = parser.parse_args()
    if not args.skip_solver:
        solver_table(args)
    if not args.skip_fit:
        fit_table(args)


def _jax_rows(q, accuracy_q, truth, rows):
    """optscale's JAX solvers and the naive jax.jit closed form, float32 and float64."""
    import jax
    import jax.numpy as jnp

    naive = _workload.naive_jax()
    for dtype in (np.float32, np.float64):
        name = np.dtype(dtype).name
        with jax.enable_x64(dtype == np.float64):
            cast = {k: jnp.asarray(v, dtype) for k, v in q.items()}
            first, sec = _workload.first_and_best(lambda c=cast: naive(
                c["mu"], c["sigma"], c["target"], c["confidence"]).block_until_ready())
            acc = {k: jnp.asarray(v, dtype) for k, v in accuracy_q.items()}
            wrong = np.mean(np.asarray(naive(acc["mu"], acc["sigma"], acc["target"],
                                             acc["confidence"])) != truth)
            rows.append(("naive jax.jit closed form (k=1)", name, first, sec, wrong))
            da = optscale.TruncatedNormal(acc["mu"], acc["sigma"])
            for label, kw in _CRITERIA:
                size = _EXPECTED_QUERIES if "criterion" in kw else len(q["mu"])
                part = {k: v[:size] for k, v in cast.items()}
                d = optscale.TruncatedNormal(part["mu"], part["sigma"])
                conf = None if "criterion" in kw else part["confidence"]

                def call(d=d, t=part["target"], conf=conf, kw=kw):
                    return optscale.min_samples(d, t, conf, **kw).n.block_until_ready()

                first, sec = _workload.first_and_best(call, repeats=5 if kw.get("k") == 1 else 2)
                wrong = None
                if kw.get("k") == 1:
                    wrong = np.mean(np.asarray(optscale.min_samples(
                        da, acc["target"], acc["confidence"]).n) != truth)
                scale = len(q["mu"]) / size
                rows.append((f"optscale JAX, {label}{_scaled(size, scale)}", name, first * scale,
                             sec * scale, wrong))
    device = jax.devices()[0]
    return f"{device.platform} ({device.device_kind})", device


_CRITERIA = (("closed form (k=1)", dict(k=1)), ("k-of-N (k=3)", dict(k=3)),
             ("expected best", dict(criterion="expected", n_max=4096)))
_EXPECTED_QUERIES = 10_000  # the expected-best bisection is timed on a subsample, scaled


def _scaled(size: int, scale: float) -> str:
    return "" if scale == 1 else f" ({size:,} queries, scaled)"


def solver_table(args: argparse.Namespace) -> None:
    q = _workload.everyday(args.size)
    tail = _workload.tail_heavy()
    d_tail = optscale.TruncatedNormal(tail["mu"], tail["sigma"])
    # truth: the exact N* (float64; every backend agrees, as the test suite checks)
    truth = np.asarray(_reference.min_samples(d_tail, tail["target"], tail["confidence"]).n)
    rows = []  # (label, dtype, first call s, best s, wrong fraction on the tail workload)

    first, naive_sec = _workload.first_and_best(lambda: _workload.naive_numpy(q), repeats=3)
    wrong = np.mean(_workload.naive_numpy(tail) != truth)
    rows.append(("naive NumPy/scipy.special.ndtr closed form (k=1)", "float64", first,
                 naive_sec, wrong))
    try:
        import jax  # noqa: F401
    except ImportError:
        where, device = "no JAX", None
    else:
        where, device = _jax_rows(q, tail, truth, rows)

    d64 = optscale.TruncatedNormal(q["mu"], q["sigma"])
    cython = None
    try:
        from optscale import _cython_backend as cython
    except ImportError:
        pass
    if cython is not None:
        for threads in (1, 2):
            cython.set_num_threads(threads)
            for label, kw in _CRITERIA:
                size = _EXPECTED_QUERIES if "criterion" in kw else len(q["mu"])
                part = {k: v[:size] for k, v in q.items()}
                d = optscale.TruncatedNormal(part["mu"], part["sigma"])
                conf = None if "criterion" in kw else part["confidence"]
                first, sec = _workload.first_and_best(
                    lambda d=d, t=part["target"], conf=conf, kw=kw: cython.min_samples(
                        d, t, conf, **kw), repeats=3 if kw.get("k") == 1 else 1)
                wrong = None
                if kw.get("k") == 1 and threads == 2:
                    wrong = np.mean(np.asarray(cython.min_samples(
                        d_tail, tail["target"], tail["confidence"]).n) != truth)
                scale = len(q["mu"]) / size
                rows.append((f"optscale Cython, {label}, {threads} thread"
                             f"{'s' * (threads > 1)}{_scaled(size, scale)}", "float64",
                             first * scale, sec * scale, wrong))
        cython.set_num_threads(os.cpu_count() or 1)
    for label, kw in _CRITERIA[:2]:
        first, sec = _workload.first_and_best(
            lambda kw=kw: _reference.min_samples(d64, q["target"], q["confidence"], **kw),
            repeats=2 if kw.get("k") == 1 else 1)
        rows.append((f"optscale NumPy reference, {label}", "float64", first, sec,
                     0.0 if kw.get("k") == 1 else None))
    sec = _workload.best_time(lambda: _workload.scipy_closed_form(q), repeats=1)
    wrong = np.mean(_workload.scipy_closed_form(tail) != truth)
    rows.append(("scipy.stats.truncnorm closed form (k=1)", "float64", sec, sec, wrong))
    grid_q = _workload.queries(args.grid_queries)
    sub = list(zip(*(grid_q[k] for k in ("mu", "sigma", "target", "confidence")), strict=True))
    sec = _workload.best_time(lambda: [_workload.grid_method(*r) for r in sub], repeats=1)
    grid_per = sec / len(sub)
    rows.append((f"paper's grid method (1,000-point grid, N=1..{_workload.GRID_N_MAX}), "
                 f"{len(sub):,} queries, scaled", "float64", None, grid_per * args.size, None))

    print(f"# {args.size:,} everyday queries (mu 0.3-1, sigma 0.02-0.3, t = c = 0.95); "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; JAX on "
          f"{where}; optscale {optscale.__version__}. Wrong N*: fraction of "
          f"{len(truth):,} tail-heavy queries (mu -0.5-1.5, sigma 1e-3-0.1, t near 1)")
    print("| method | dtype | first call | time (best) | per query | vs naive NumPy | "
          "wrong N* (tail-heavy) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for label, dtype, first, sec, wrong in rows:
        first_text = "" if first is None else f"{first * 1e3:,.1f} ms"
        wrong_text = "" if wrong is None else f"{wrong:.2%}"
        print(f"| {label} | {dtype} | {first_text} | {sec * 1e3:,.1f} ms | "
              f"{sec / args.size * 1e9:,.1f} ns | {naive_sec / sec:,.3g}x | {wrong_text} |")
    by = {(label, dtype): sec for label, dtype, _, sec, _ in rows}
    checks = []
    if device is not None:
        ours = by[("optscale JAX, closed form (k=1)", "float32")]
        theirs = by[("naive jax.jit closed form (k=1)", "float32")]
        checks.append(("optscale JAX f32 / naive jax.jit f32 (time)", ours / theirs, "<= 1.5x",
                       ours / theirs <= 1.5))
    if cython is not None:
        c2 = by[("optscale Cython, closed form (k=1), 2 threads", "float64")]
        c1 = by[("optscale Cython, closed form (k=1), 1 thread", "float64")]
        checks.append(("optscale Cython f64 2 threads, speed vs naive NumPy", naive_sec / c2,
                       ">= 2.5x", naive_sec / c2 >= 2.5))
        checks.append(("Cython 1 thread / 2 threads (time)", c1 / c2, "reported", True))
    ref = by[("optscale NumPy reference, closed form (k=1)", "float64")]
    checks.append(("optscale NumPy reference / naive NumPy (time)", ref / naive_sec, "<= 2x",
                   ref / naive_sec <= 2))
    print("\n| target | measured | goal | met |\n|---|---:|---|---|")
    for name, value, goal, ok in checks:
        print(f"| {name} | {value:,.3g}x | {goal} | {'yes' if ok else 'NO'} |")
    if device is not None and device.platform == "gpu":
        f32 = by[("optscale JAX, closed form (k=1)", "float32")]
        print(f"\nfloat32 decisions per second on {device.device_kind}: {args.size / f32:,.3g}")


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
