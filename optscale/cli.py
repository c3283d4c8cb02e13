"""The ``optscale`` command line.

``optscale solve`` answers one query from flags, a batch from a CSV or NPZ file, or, with no
input, the bundled example batch. ``optscale replay POOL`` evaluates methods on a stored
completion pool; ``optscale demo`` does it on the built-in simulated pool; ``optscale run``
answers questions with a local model and verifier, sampling adaptively.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import sys
from collections.abc import Iterator, Sequence
from importlib import resources

import numpy as np

import optscale
from optscale._checks import query_checks
from optscale._solution import Status
from optscale.predictor._cli import add_commands as add_predictor_commands
from optscale.replay._cli import add_commands as add_replay_commands
from optscale.sampling._cli import add_commands as add_run_commands

__all__ = ["main"]

FLOAT_COLUMNS = ("mu", "sigma", "low", "high", "target", "confidence")
INT_COLUMNS = ("k", "n_min", "n_max")
DEFAULTS = {"low": 0.0, "high": 1.0, "k": 1, "n_min": 1, "n_max": optscale.N_MAX_DEFAULT}
CHUNK = 1 << 16


class InputError(ValueError):
    """A malformed input file; the message names the file, line and column."""


# ---------------------------------------------------------------- reading

def _read_csv(path: str) -> tuple[dict[str, np.ndarray], dict[str, list], np.ndarray]:
    """Numeric columns, every column's text (in file order, to echo ids unchanged) and the
    file line of each row. Lines starting with '#' are comments."""
    with open(path, newline="") as fh:
        lines = [(i + 1, line) for i, line in enumerate(fh)
                 if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise InputError(f"{path}: no header line")
    header_line, header = lines[0]
    names = [c.strip() for c in next(csv.reader([header]))]
    known = set(FLOAT_COLUMNS) | set(INT_COLUMNS)
    cols: dict[str, list] = {c: [] for c in names if c in known}
    text: dict[str, list] = {c: [] for c in names}
    line_numbers = []
    for lineno, row in zip((n for n, _ in lines[1:]), csv.reader(line for _, line in lines[1:]),
                           strict=True):
        if len(row) != len(names):
            raise InputError(f"{path}:{lineno}: expected {len(names)} fields "
                             f"({', '.join(names)}), found {len(row)}")
        for name, field in zip(names, row, strict=True):
            field = field.strip()
            text[name].append(field)
            if name not in cols:
                continue
            try:
                value = int(field) if name in INT_COLUMNS else float(field)
            except ValueError:
                kind = "an integer" if name in INT_COLUMNS else "a number"
                raise InputError(f"{path}:{lineno}: column '{name}': cannot read {field!r} as "
                                 f"{kind}") from None
            cols[name].append(value)
        line_numbers.append(lineno)
    del header_line
    arrays = {c: np.asarray(v, np.int64 if c in INT_COLUMNS else np.float64)
              for c, v in cols.items()}
    return arrays, text, np.asarray(line_numbers)


def _read_npz(path: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    with np.load(path) as data:
        everything = {k: data[k] for k in data.files}
    arrays = everything
    known = set(FLOAT_COLUMNS) | set(INT_COLUMNS)
    lengths = {k: v.shape for k, v in arrays.items() if k in known}
    shapes = set(lengths.values())
    if len(shapes) > 1 or any(len(s) != 1 for s in shapes):
        raise InputError(f"{path}: arrays must be 1-D and of equal length; got {lengths}")
    for k in lengths:
        kind = arrays[k].dtype.kind
        if k in INT_COLUMNS and kind not in "iu":
            raise InputError(f"{path}: array '{k}' must hold integers; got dtype {arrays[k].dtype}")
        if k in FLOAT_COLUMNS and kind not in "iuf":
            raise InputError(f"{path}: array '{k}' must be numeric; got dtype {arrays[k].dtype}")
    n = next(iter(shapes))[0] if shapes else 0
    return {k: arrays[k] for k in lengths}, everything, np.arange(n)


def read_queries(path: str, criterion: str) -> tuple[dict[str, np.ndarray], dict, np.ndarray]:
    """(numeric columns, all columns as read, line (CSV) or row (NPZ) of each query)."""
    reader = _read_npz if path.endswith(".npz") else _read_csv
    arrays, text, rows = reader(path)
    names = list(text)
    required = ["mu", "sigma", "target"] + (["confidence"] if criterion == "probability" else [])
    missing = [c for c in required if c not in arrays]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; "
                         f"found {', '.join(names)}")
    return arrays, text, rows


# ---------------------------------------------------------------- solving

@contextlib.contextmanager
def _precision(dtype: np.dtype) -> Iterator[None]:
    # The command line is an application, so it may ask JAX for float64; only within its calls.
    if np.dtype(dtype) == np.float64 and optscale.backend() == "jax":
        import jax

        with jax.enable_x64(True):
            yield
    else:
        yield


def solve_batch(arrays: dict[str, np.ndarray], criterion: str, dtype: np.dtype,
                overrides: dict[str, float | int | None], progress: bool) -> optscale.Solution:
    """Solve every row, in chunks (with a progress bar on large inputs)."""
    from tqdm import tqdm

    size = len(next(iter(arrays.values())))
    full = {}
    for name in FLOAT_COLUMNS + INT_COLUMNS:
        if name in arrays:
            full[name] = arrays[name]
        elif overrides.get(name) is not None:
            full[name] = np.full(size, overrides[name])
        elif name in DEFAULTS:
            full[name] = np.full(size, DEFAULTS[name])
    outs = []
    starts = range(0, max(size, 1), CHUNK)
    with _precision(dtype):
        for start in tqdm(starts, desc="solving", unit="chunk", disable=not progress or
                          len(starts) < 2):
            part = {k: v[start:start + CHUNK] for k, v in full.items()}
            dist = optscale.TruncatedNormal(*(np.asarray(part[c], dtype)
                                              for c in ("mu", "sigma", "low", "high")))
            conf = (np.asarray(part["confidence"], dtype) if criterion == "probability"
                    else None)
            sol = optscale.min_samples(
                dist, np.asarray(part["target"], dtype), conf, k=part["k"].astype(np.int64),
                criterion=criterion, n_min=part["n_min"].astype(np.int64),
                n_max=part["n_max"].astype(np.int64))
            outs.append(tuple(np.asarray(v) for v in sol))
    return optscale.Solution(*(np.concatenate(parts) for parts in zip(*outs, strict=True)))


def first_invalid_reason(arrays: dict[str, np.ndarray], criterion: str) -> list[str]:
    """Why each invalid row is invalid (first rule it breaks), for the report."""
    size = len(next(iter(arrays.values())))
    args = {k: arrays.get(k, np.full(size, DEFAULTS.get(k, np.nan)))
            for k in ("mu", "sigma", "low", "high", "target", "k", "n_min", "n_max")}
    if criterion == "probability":
        args["confidence"] = arrays["confidence"]
    reasons = np.full(size, "", dtype=object)
    for name, bad, rule in reversed(query_checks(np, **args)):
        reasons[np.broadcast_to(bad, (size,))] = f"{name} {rule}"
    return list(reasons)


# ---------------------------------------------------------------- writing

def _write(path: str | None, arrays_text: dict[str, Sequence], sol: optscale.Solution) -> None:
    names = list(arrays_text)
    status_names = [Status(int(s)).name for s in sol.status]
    if path is not None and path.endswith(".npz"):
        np.savez(path, **{k: np.asarray(v) for k, v in arrays_text.items()}, n=sol.n,
                 status=sol.status, achieved=sol.achieved)
        return
    fh = open(path, "w", newline="") if path else sys.stdout  # noqa: SIM115
    try:
        writer = csv.writer(fh)
        writer.writerow([*names, "n", "status", "achieved"])
        columns = [arrays_text[name] for name in names]
        for i in range(len(status_names)):
            writer.writerow([*(col[i] for col in columns), int(sol.n[i]), status_names[i],
                             f"{float(sol.achieved[i]):.6g}"])
    finally:
        if path:
            fh.close()


def _print_table(text: dict[str, list[str]], sol: optscale.Solution) -> None:
    names = list(text)
    header = [*names, "n", "status", "achieved"]
    rows = [[*(text[c][i] for c in names), str(int(sol.n[i])), Status(int(sol.status[i])).name,
             f"{float(sol.achieved[i]):.4f}"] for i in range(len(sol.n))]
    widths = [max(len(h), *(len(r[j]) for r in rows)) for j, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    for r in rows:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)))


# ---------------------------------------------------------------- commands

def _cmd_solve(args: argparse.Namespace) -> int:
    if args.backend:
        optscale.set_backend(args.backend)
    dtype = np.dtype(args.dtype)
    single = args.mu is not None or args.sigma is not None or args.target is not None
    if single and args.input:
        raise SystemExit("optscale solve: give either --input or --mu/--sigma/--target")
    overrides = {"low": args.low, "high": args.high, "k": args.k, "n_min": args.n_min,
                 "n_max": args.n_max, "confidence": args.confidence}
    if single:
        missing = [f"--{n}" for n in ("mu", "sigma", "target") if getattr(args, n) is None]
        if args.criterion == "probability" and args.confidence is None:
            missing.append("--confidence")
        if missing:
            raise SystemExit(f"optscale solve: missing {', '.join(missing)}")
        arrays = {"mu": np.array([args.mu]), "sigma": np.array([args.sigma]),
                  "target": np.array([args.target])}
        sol = solve_batch(arrays, args.criterion, dtype, overrides, progress=False)
        status = Status(int(sol.status[0]))
        if status == Status.INVALID:
            full = {**{k: np.array([v]) for k, v in overrides.items() if v is not None}, **arrays}
            print(f"optscale solve: invalid input: {first_invalid_reason(full, args.criterion)[0]}",
                  file=sys.stderr)
            return 2
        what = "E[best]" if args.criterion == "expected" else "P(success)"
        print(f"n = {int(sol.n[0])}  status = {status.name}  {what} = "
              f"{float(sol.achieved[0]):.6g}")
        return 0

    path = args.input
    if path is None:
        path = str(resources.files("optscale") / "data" / "example_queries.csv")
        print(f"# optscale solve: no --input given; solving the bundled example batch ({path})")
    try:
        arrays, text, lines = read_queries(path, args.criterion)
    except (InputError, OSError) as err:
        print(f"optscale solve: {err}", file=sys.stderr)
        return 2
    for name, value in overrides.items():
        if value is not None and name not in arrays:
            arrays[name] = np.full(len(lines), value)
    sol = solve_batch(arrays, args.criterion, dtype, overrides, progress=not args.quiet)
    invalid = np.flatnonzero(sol.status == Status.INVALID)
    if invalid.size:
        reasons = first_invalid_reason(arrays, args.criterion)
        where = "line" if not path.endswith(".npz") else "row"
        print(f"optscale solve: {invalid.size} row(s) INVALID; first at {path} {where} "
              f"{int(lines[invalid[0]])}: {reasons[invalid[0]]}", file=sys.stderr)
    if args.output is None and args.input is None:
        _print_table(text, sol)
    else:
        _write(args.output, text, sol)
        if args.output:
            counts = {s.name: int((sol.status == s).sum()) for s in Status}
            print(f"optscale solve: {len(sol.n)} rows -> {args.output} "
                  + ", ".join(f"{k} {v}" for k, v in counts.items() if v), file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="optscale", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=optscale.__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("solve", help="minimal number of samples for a target score",
                       description="Smallest N whose best-of-N score reaches --target with "
                       "--confidence (or whose expected best reaches it). One query from flags, a "
                       "batch from --input (CSV with a header, or NPZ), or the bundled example.")
    p.add_argument("--mu", type=float)
    p.add_argument("--sigma", type=float)
    p.add_argument("--target", type=float)
    p.add_argument("--confidence", type=float, help="required probability, in (0, 1)")
    p.add_argument("--k", type=int, help="samples that must reach the target (default 1)")
    p.add_argument("--low", type=float, help="score range (default 0)")
    p.add_argument("--high", type=float, help="score range (default 1)")
    p.add_argument("--n-min", dest="n_min", type=int)
    p.add_argument("--n-max", dest="n_max", type=int,
                   help=f"budget cap (default {optscale.N_MAX_DEFAULT})")
    p.add_argument("--criterion", choices=("probability", "expected"), default="probability")
    p.add_argument("--input", "-i", help="CSV or NPZ with columns mu, sigma, target[, "
                   "confidence, low, high, k, n_min, n_max]; other columns are echoed")
    p.add_argument("--output", "-o", help="CSV or NPZ (by extension); default: stdout")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    p.add_argument("--backend", choices=("jax", "cython", "numpy"),
                   help="default: OPTSCALE_BACKEND or the first available")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_solve)
    add_replay_commands(sub)
    add_run_commands(sub)
    add_predictor_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:
        # The reader stopped early (`optscale solve | head`): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
