"""The ``optscale`` command line.

``optscale solve`` answers one query from flags, a batch from a CSV or NPZ file, or, with no
input, the bundled example batch. ``optscale replay POOL`` evaluates methods on a stored
completion pool; ``optscale demo`` does it on the built-in simulated pool; ``optscale run``
answers questions with a local model and verifier, sampling adaptively.

Errors, one rule for every subcommand (enforced by :func:`main`): a bad option or input exits
with status 2 after one line on stderr naming the option, or the file, line and field; an
interrupt exits with 130; an unexpected failure prints one ``internal error`` line and exits
with 1 (``OPTSCALE_DEBUG=1`` shows its traceback). No Python traceback is printed otherwise.
Input files must be regular files (not FIFOs, folders or devices). Outputs go to a temporary
file or folder next to the target and are renamed into place: a symlink is never written
through, and a failed command leaves no half-written output.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import itertools
import math
import os
import re
import shutil
import stat
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from importlib import resources
from typing import IO, Any

import numpy as np

import optscale
from optscale._checks import query_checks
from optscale._solution import Status
from optscale.predictor._cli import add_commands as add_predictor_commands
from optscale.replay._cli import add_commands as add_replay_commands
from optscale.replay._pool import brief
from optscale.sampling._cli import add_commands as add_run_commands
from optscale.serve._cli import add_commands as add_serve_commands

__all__ = ["CLIError", "InputError", "main"]

FLOAT_COLUMNS = ("mu", "sigma", "low", "high", "target", "confidence")
INT_COLUMNS = ("k", "n_min", "n_max")
DEFAULTS = {"low": 0.0, "high": 1.0, "k": 1, "n_min": 1, "n_max": optscale.N_MAX_DEFAULT}
CHUNK = 1 << 16
INT_MIN, INT_MAX = -(2**31), 2**31 - 1  # integer columns and options: the solvers' int32
MAX_LINE_BYTES = 1 << 20  # a longer line of a text input is an error, not a memory hog
_MAX_MESSAGE = 600


# ---------------------------------------------------------------- the error rule

class CLIError(ValueError):
    """A user error: reported as one line on stderr, exit status 2."""


class InputError(CLIError):
    """A malformed input file; the message names the file, line and column."""


def one_line(message: str) -> str:
    """``message`` on one line (newlines folded), cut to a readable length."""
    text = re.sub(r"\s*[\r\n]+\s*", "; ", str(message).strip())
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE - 3] + "..."


def _describe(err: BaseException) -> str:
    """What a user error says, without the exception's type where the type is noise."""
    if isinstance(err, OSError) and err.filename is not None:
        where = str(err.filename) + (f" -> {err.filename2}" if err.filename2 else "")
        return f"{where}: {err.strerror or err}"
    if isinstance(err, MemoryError):
        return "not enough memory for this input with these options"
    if isinstance(err, UnicodeDecodeError):
        return f"input is not UTF-8 text ({err.reason} at byte {err.start})"
    return str(err) or type(err).__name__


# Expected failures: bad options and inputs (ValueError, including CLIError, PoolFormatError and
# UnicodeDecodeError), files (OSError), missing optional extras (ImportError), sizes (MemoryError).
_USER_ERRORS = (ValueError, OSError, ImportError, MemoryError)


def _exit_status(exit_: SystemExit) -> int:
    code = exit_.code
    if code is None or isinstance(code, int):
        return code or 0
    print(one_line(str(code)), file=sys.stderr)  # raise SystemExit("message")
    return 2


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``optscale solve: error: argument --k: ...``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


# ---------------------------------------------------------------- argument types

def _show(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")


def numeral(text: str) -> bool:
    """Whether ``text`` may be read by ``int``/``float``: Python (and NumPy) also take digit
    separators (``1_0`` is 10) and non-ASCII digits, which a CSV file or an option does not
    mean as numbers."""
    return text.isascii() and "_" not in text


def number_arg(text: str) -> float:
    """An argparse type: any number (nan and inf included: the solvers judge those)."""
    try:
        if not numeral(text):
            raise ValueError
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {_show(text)}") from None


number_arg.__name__ = "number"


def int_arg(lo: int | None = None, hi: int = INT_MAX) -> Callable[[str], int]:
    """An argparse type: an integer in [lo, hi] (hi defaults to the int32 maximum)."""
    lo_ = INT_MIN if lo is None else lo

    def parse(text: str) -> int:
        try:
            if not numeral(text):
                raise ValueError
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {_show(text)}") from None
        if not lo_ <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be an integer in [{lo_}, {hi}]; got "
                                             f"{_show(text)}")
        return value

    parse.__name__ = "integer"
    return parse


def float_arg(lo: float = -math.inf, hi: float = math.inf, *, open_lo: bool = False,
              open_hi: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in the interval (closed unless ``open_*``)."""
    left, right = "(" if open_lo else "[", ")" if open_hi else "]"

    def parse(text: str) -> float:
        value = number_arg(text)
        ok = (math.isfinite(value) and (value > lo if open_lo else value >= lo)
              and (value < hi if open_hi else value <= hi))
        if not ok:
            raise argparse.ArgumentTypeError(f"must be a finite number in {left}{lo:g}, "
                                             f"{hi:g}{right}; got {_show(text)}")
        return value

    parse.__name__ = "number"
    return parse


def int_list_arg(lo: int = 1, hi: int = INT_MAX) -> Callable[[str], list[int]]:
    """An argparse type: comma-separated integers in [lo, hi] (at least one)."""
    one = int_arg(lo, hi)

    def parse(text: str) -> list[int]:
        parts = [p.strip() for p in text.split(",")]
        if not any(parts):
            raise argparse.ArgumentTypeError("expected comma-separated integers, got nothing")
        try:
            return [one(p) for p in parts if p]
        except argparse.ArgumentTypeError as err:
            where = f" (in {_show(text)})" if len(parts) > 1 else ""
            raise argparse.ArgumentTypeError(f"{err}{where}") from None

    parse.__name__ = "integer list"
    return parse


# ---------------------------------------------------------------- paths

def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "not a regular file"


def _where(path: str, option: str | None) -> str:
    return f"{option}: {path}" if option else path


def check_input_file(path: str, option: str | None = None) -> str:
    """``path`` if it is an existing regular file (checked before opening: a FIFO would block)."""
    try:
        st = os.stat(path)
    except OSError as err:
        raise CLIError(f"{_where(path, option)}: {err.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise CLIError(f"{_where(path, option)}: is {_kind(st.st_mode)}, not a regular file")
    return path


def check_input_dir(path: str, option: str | None = None) -> str:
    """``path`` if it is an existing folder."""
    try:
        st = os.stat(path)
    except OSError as err:
        raise CLIError(f"{_where(path, option)}: {err.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise CLIError(f"{_where(path, option)}: is {_kind(st.st_mode)}, not a folder")
    return path


def _nearest_existing(path: str) -> str:
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    return parent


def check_output_file(path: str, option: str | None = None) -> str:
    """``path`` if a file can be written there: absent or a regular file, not a symlink, in an
    existing writable folder."""
    where = _where(path, option)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as err:
        raise CLIError(f"{where}: cannot write: {err.strerror}") from None
    if st is not None and stat.S_ISLNK(st.st_mode):
        raise CLIError(f"{where}: is a symbolic link; refusing to write through it")
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise CLIError(f"{where}: is {_kind(st.st_mode)}; give a file name to write")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        missing = not os.path.lexists(folder) and os.path.isdir(_nearest_existing(path))
        why = "does not exist" if missing else "is not a folder"
        raise CLIError(f"{where}: cannot write: the folder {folder} {why}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CLIError(f"{where}: cannot write: permission denied")
    return path


def check_output_dir(path: str, option: str | None = None) -> str:
    """``path`` if a folder can be written there: absent (then created) or a folder, not a
    symlink, under a writable existing folder."""
    where = _where(path, option)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as err:
        raise CLIError(f"{where}: cannot write: {err.strerror}") from None
    if st is not None and stat.S_ISLNK(st.st_mode):
        raise CLIError(f"{where}: is a symbolic link; refusing to write through it")
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise CLIError(f"{where}: is {_kind(st.st_mode)}, not a folder")
    base = path if st is not None else _nearest_existing(path)
    if not os.path.isdir(base):
        raise CLIError(f"{where}: cannot create the folder: {base} is not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise CLIError(f"{where}: cannot write: permission denied")
    return path


def _as_type(check: Callable[[str], str], name: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError("expected a path, got an empty string")
        try:
            return check(text)
        except CLIError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = name
    return parse


# argparse types: the option's name comes from argparse ("argument --input/-i: ...")
input_file = _as_type(check_input_file, "input file")
input_dir = _as_type(check_input_dir, "input folder")
output_file = _as_type(check_output_file, "output file")
output_dir = _as_type(check_output_dir, "output folder")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def open_output(path: str, option: str, binary: bool = False) -> Iterator[IO[Any]]:
    """Write ``path`` through a temporary file in its folder, renamed over it at the end: a
    symlink at ``path`` is replaced, never written through; on failure nothing is left."""
    check_output_file(path, option)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.",
                                   suffix=".part")
    except OSError as err:
        raise CLIError(f"{option}: {path}: cannot write: {err.strerror}") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        if binary:
            fh: IO[Any] = os.fdopen(fd, "wb")
        else:
            fh = os.fdopen(fd, "w", newline="", encoding="utf-8")
        with fh:
            yield fh
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise CLIError(f"{option}: {path}: cannot write: {err.strerror or err}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def output_folder(path: str, option: str) -> Iterator[str]:
    """A fresh temporary folder inside ``path`` (created if needed) to write into; at the end
    its files are renamed into ``path`` (a symlink there is replaced, never written through)."""
    check_output_dir(path, option)
    try:
        os.makedirs(path, exist_ok=True)
        if os.path.islink(path):
            raise CLIError(f"{option}: {path}: is a symbolic link; refusing to write through it")
        tmp = tempfile.mkdtemp(dir=path, prefix=".optscale-")
    except OSError as err:
        raise CLIError(f"{option}: {path}: cannot write: {err.strerror or err}") from None
    try:
        yield tmp
        for name in sorted(os.listdir(tmp)):
            os.replace(os.path.join(tmp, name), os.path.join(path, name))
    except OSError as err:
        raise CLIError(f"{option}: {path}: cannot write: {err.strerror or err}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _lines(path: str, skip_comments: bool) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of every non-blank line of a UTF-8 text file (lines starting
    with '#' skipped where asked); non-UTF-8 bytes and over-long lines are errors."""
    check_input_file(path)
    with open(path, "rb") as fh:
        for lineno in itertools.count(1):
            raw = fh.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            if len(raw) > MAX_LINE_BYTES:
                raise InputError(f"{path}:{lineno}: line longer than {MAX_LINE_BYTES} bytes")
            try:
                text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise InputError(f"{path}:{lineno}: not UTF-8 text (byte {raw[err.start]:#04x} "
                                 f"at byte {err.start + 1} of the line)") from None
            text = text.rstrip("\r\n")
            if text.strip() and not (skip_comments and text.lstrip().startswith("#")):
                yield lineno, text


def read_lines(path: str) -> list[str]:
    """Every non-blank line of a UTF-8 text file (one question per line)."""
    return [text for _, text in _lines(path, skip_comments=False)]


# ---------------------------------------------------------------- reading queries

def split_csv_line(path: str, lineno: int, text: str) -> list[str]:
    """The stripped fields of one CSV line (a record may not span lines)."""
    try:
        rows = list(csv.reader([text], strict=True))
    except csv.Error as err:
        if "field larger" in str(err):
            raise InputError(f"{path}:{lineno}: a field is longer than "
                             f"{csv.field_size_limit()} characters") from None
        if "\r" in text:
            raise InputError(f"{path}:{lineno}: malformed CSV: a carriage return inside a line "
                             "(lines must end with \\n or \\r\\n)") from None
        raise InputError(f"{path}:{lineno}: malformed CSV: {err}") from None
    return [f.strip() for f in rows[0]] if rows else []


def parse_header(path: str, lineno: int, text: str) -> list[str]:
    """Column names of the header line; a name given twice is an error."""
    names = split_csv_line(path, lineno, text)
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InputError(f"{path}:{lineno}: column {name!r} appears twice in the header")
        seen.add(name)
    return names


def parse_value(path: str, lineno: int, name: str, field: str) -> int | float:
    """One numeric field: integer columns hold integers that fit int32; the other columns any
    float (``nan`` and ``inf`` included: the solvers mark such a row INVALID, or decide it for
    an infinite target, as they do for any value out of range)."""
    where = f"{path}:{lineno}: column '{name}'"
    if name in INT_COLUMNS:
        try:
            if not numeral(field):
                raise ValueError
            value: int | float = int(field)
        except ValueError:
            raise InputError(f"{where}: cannot read {_show(field)} as an integer") from None
        if not INT_MIN <= value <= INT_MAX:
            raise InputError(f"{where}: {_show(field)} is out of range [{INT_MIN}, {INT_MAX}]")
        return value
    try:
        if not numeral(field):
            raise ValueError
        return float(field)
    except ValueError:
        raise InputError(f"{where}: cannot read {_show(field)} as a number") from None


def _read_csv(path: str) -> tuple[dict[str, np.ndarray], dict[str, list], np.ndarray]:
    """Numeric columns, every column's text (in file order, to echo ids unchanged) and the
    file line of each row. Lines starting with '#' are comments."""
    lines = _lines(path, skip_comments=True)
    first = next(lines, None)
    if first is None:
        raise InputError(f"{path}: no header line")
    names = parse_header(path, *first)
    known = set(FLOAT_COLUMNS) | set(INT_COLUMNS)
    cols: dict[str, list] = {c: [] for c in names if c in known}
    text: dict[str, list] = {c: [] for c in names}
    line_numbers = []
    for lineno, line in lines:
        row = split_csv_line(path, lineno, line)
        if len(row) != len(names):
            shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            raise InputError(f"{path}:{lineno}: expected {len(names)} fields ({shown}), "
                             f"found {len(row)}")
        for name, field in zip(names, row, strict=True):
            text[name].append(field)
            if name in cols:
                cols[name].append(parse_value(path, lineno, name, field))
        line_numbers.append(lineno)
    arrays = {c: np.asarray(v, np.int64 if c in INT_COLUMNS else np.float64)
              for c, v in cols.items()}
    return arrays, text, np.asarray(line_numbers, np.int64)


def _npz_arrays(path: str) -> dict[str, np.ndarray]:
    """Every array of an NPZ file; anything unreadable (truncated, not a zip, object arrays)
    is an :class:`InputError` naming the file and the array."""
    check_input_file(path)
    arrays = {}
    try:
        loaded = np.load(path, allow_pickle=False)
        if not hasattr(loaded, "files"):
            raise InputError(f"{path}: a single .npy array, not an NPZ archive of columns")
        with loaded as data:
            for name in data.files:
                try:
                    arrays[name] = data[name]
                except ValueError as err:
                    if "allow_pickle" in str(err) or "object" in str(err).lower():
                        raise InputError(f"{path}: array {name!r} holds Python objects; only "
                                         "numeric and text arrays are read") from None
                    raise InputError(f"{path}: array {name!r}: cannot read it "
                                     f"({brief(err)})") from None
                except Exception as err:  # truncated or corrupt member: zlib, zipfile, EOF
                    raise InputError(f"{path}: array {name!r}: cannot read it "
                                     f"({brief(err)})") from None
    except InputError:
        raise
    except Exception as err:  # not a zip, truncated directory, bad header: all "not NPZ"
        raise InputError(f"{path}: not a readable NPZ file ({brief(err)})") from None
    return arrays


def _read_npz(path: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    everything = _npz_arrays(path)
    known = set(FLOAT_COLUMNS) | set(INT_COLUMNS)
    lengths = {k: v.shape for k, v in everything.items() if k in known}
    shapes = set(lengths.values())
    if len(shapes) > 1 or any(len(s) != 1 for s in shapes):
        raise InputError(f"{path}: arrays must be 1-D and of equal length; got {lengths}")
    n = next(iter(shapes))[0] if shapes else 0
    for k, v in everything.items():
        if k not in known and (v.shape != (n,) or v.dtype.kind not in "biufUS"):
            raise InputError(f"{path}: array {k!r} (shape {v.shape}, dtype {v.dtype}) is echoed "
                             f"to the output, so it must be 1-D of length {n} like the query "
                             "columns, with numbers or text")
    arrays = {}
    for k in lengths:
        a = everything[k]
        kind = a.dtype.kind
        if k in INT_COLUMNS:
            if kind not in "iu":
                raise InputError(f"{path}: array '{k}' must hold integers; got dtype {a.dtype}")
            bad = np.flatnonzero((a < INT_MIN) | (a > INT_MAX))
            if bad.size:
                raise InputError(f"{path}: array '{k}' row {bad[0]}: {a[bad[0]]} is out of "
                                 f"range [{INT_MIN}, {INT_MAX}]")
            arrays[k] = a.astype(np.int64)
        else:
            if kind not in "iuf":
                raise InputError(f"{path}: array '{k}' must be numeric; got dtype {a.dtype}")
            arrays[k] = a.astype(np.float64)
    return arrays, everything, np.arange(n)


def read_queries(path: str, criterion: str) -> tuple[dict[str, np.ndarray], dict, np.ndarray]:
    """(numeric columns, all columns as read, line (CSV) or row (NPZ) of each query)."""
    reader = _read_npz if path.lower().endswith(".npz") else _read_csv
    arrays, text, rows = reader(path)
    names = list(text)
    required = ["mu", "sigma", "target"] + (["confidence"] if criterion == "probability" else [])
    missing = [c for c in required if c not in arrays]
    if missing:
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; "
                         f"found {shown or 'none'}")
    return arrays, text, rows


# ---------------------------------------------------------------- solving

@contextlib.contextmanager
def precision(dtype: np.dtype) -> Iterator[None]:
    """float64 inside JAX for the duration, where asked (the command line is an application,
    so it may enable x64; only within its calls). Numeric warnings are silenced: the command
    reports statuses itself."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        if np.dtype(dtype) == np.float64 and optscale.backend() == "jax":
            import jax

            with jax.enable_x64(True):
                yield
        else:
            yield


def _solve_part(part: dict[str, Any], size: int, criterion: str,
                dtype: np.dtype) -> optscale.Solution:
    """One solver call; columns may be scalars (absent from the input). The k = 1 closed form
    is taken when every k is 1."""
    dist = optscale.TruncatedNormal(*(np.asarray(part[c], dtype)
                                      for c in ("mu", "sigma", "low", "high")))
    conf = np.asarray(part["confidence"], dtype) if criterion == "probability" else None
    k = np.asarray(part["k"], np.int64)
    k_arg: Any = 1 if k.size and np.all(k == 1) else k
    ints = {name: np.asarray(part[name], np.int64) for name in ("n_min", "n_max")}
    ints = {name: int(v) if v.ndim == 0 else v for name, v in ints.items()}
    target = np.broadcast_to(np.asarray(part["target"], dtype), (size,))
    return optscale.min_samples(dist, target, conf, k=k_arg, criterion=criterion, **ints)


def _columns(arrays: dict[str, np.ndarray], overrides: dict[str, float | int | None]) -> dict:
    """Every solver column: from the input, an option, or its default (as a scalar)."""
    full: dict[str, Any] = {}
    for name in FLOAT_COLUMNS + INT_COLUMNS:
        if name in arrays:
            full[name] = arrays[name]
        elif overrides.get(name) is not None:
            full[name] = overrides[name]
        elif name in DEFAULTS:
            full[name] = DEFAULTS[name]
    return full


def solve_batch(arrays: dict[str, np.ndarray], criterion: str, dtype: np.dtype,
                overrides: dict[str, float | int | None], progress: bool) -> optscale.Solution:
    """Solve every row, in chunks (with a progress bar on large inputs)."""
    from tqdm import tqdm

    size = len(next(iter(arrays.values())))
    if size == 0:  # nothing to solve (a header-only file): no call into the backends
        return optscale.Solution(np.zeros(0, np.int32), np.zeros(0, np.int32),
                                 np.zeros(0, dtype))
    full = _columns(arrays, overrides)
    outs = []
    starts = range(0, size, CHUNK)
    with precision(dtype):
        for start in tqdm(starts, desc="solving", unit="chunk", disable=not progress or
                          len(starts) < 2):
            part = {k: v[start:start + CHUNK] if np.ndim(v) else v for k, v in full.items()}
            sol = _solve_part(part, min(CHUNK, size - start), criterion, dtype)
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
    with np.errstate(all="ignore"):
        for name, bad, rule in reversed(query_checks(np, **args)):
            reasons[np.broadcast_to(bad, (size,))] = f"{name} {rule}"
    return list(reasons)


# ---------------------------------------------------------------- writing

def _write_rows(fh: IO[str], arrays_text: dict[str, Sequence], sol: optscale.Solution) -> None:
    names = list(arrays_text)
    status_names = [Status(int(s)).name for s in sol.status]
    writer = csv.writer(fh)
    writer.writerow([*names, "n", "status", "achieved"])
    columns = [arrays_text[name] for name in names]
    for i in range(len(status_names)):
        writer.writerow([*(col[i] for col in columns), int(sol.n[i]), status_names[i],
                         f"{float(sol.achieved[i]):.6g}"])


def _write(path: str | None, arrays_text: dict[str, Sequence], sol: optscale.Solution) -> None:
    if path is None:
        _write_rows(sys.stdout, arrays_text, sol)
    elif path.lower().endswith(".npz"):
        with open_output(path, "--output", binary=True) as fh:
            np.savez(fh, **{k: np.asarray(v) for k, v in arrays_text.items()}, n=sol.n,
                     status=sol.status, achieved=sol.achieved)
    else:
        with open_output(path, "--output") as fh:
            _write_rows(fh, arrays_text, sol)


def _print_table(text: dict[str, list[str]], sol: optscale.Solution) -> None:
    names = list(text)
    header = [*names, "n", "status", "achieved"]
    rows = [[*(text[c][i] for c in names), str(int(sol.n[i])), Status(int(sol.status[i])).name,
             f"{float(sol.achieved[i]):.4f}"] for i in range(len(sol.n))]
    widths = [max([len(h), *(len(r[j]) for r in rows)]) for j, h in enumerate(header)]
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
        raise CLIError("give either --input or --mu/--sigma/--target")
    overrides = {"low": args.low, "high": args.high, "k": args.k, "n_min": args.n_min,
                 "n_max": args.n_max, "confidence": args.confidence}
    if single:
        missing = [f"--{n}" for n in ("mu", "sigma", "target") if getattr(args, n) is None]
        if args.criterion == "probability" and args.confidence is None:
            missing.append("--confidence")
        if missing:
            raise CLIError(f"missing {', '.join(missing)}")
        arrays = {"mu": np.array([args.mu]), "sigma": np.array([args.sigma]),
                  "target": np.array([args.target])}
        sol = solve_batch(arrays, args.criterion, dtype, overrides, progress=False)
        status = Status(int(sol.status[0]))
        if status == Status.INVALID:
            full = {**{k: np.array([v]) for k, v in overrides.items() if v is not None}, **arrays}
            raise CLIError(f"invalid input: {first_invalid_reason(full, args.criterion)[0]}")
        what = "E[best]" if args.criterion == "expected" else "P(success)"
        print(f"n = {int(sol.n[0])}  status = {status.name}  {what} = "
              f"{float(sol.achieved[0]):.6g}")
        return 0

    path = args.input
    if path is None:
        path = str(resources.files("optscale") / "data" / "example_queries.csv")
        print(f"# optscale solve: no --input given; solving the bundled example batch ({path})")
    if args.input is not None and not any(p is not None and p.lower().endswith(".npz")
                                          for p in (path, args.output)):
        return _stream(args, path, dtype, overrides)
    arrays, text, lines = read_queries(path, args.criterion)
    for name, value in overrides.items():
        if value is not None and name not in arrays:
            arrays[name] = np.full(len(lines), value)
    sol = solve_batch(arrays, args.criterion, dtype, overrides, progress=not args.quiet)
    invalid = np.flatnonzero(sol.status == Status.INVALID)
    if invalid.size:
        reasons = first_invalid_reason(arrays, args.criterion)
        where = "line" if not path.lower().endswith(".npz") else "row"
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


def _stream(args: argparse.Namespace, path: str, dtype: np.dtype,
            overrides: dict[str, float | int | None]) -> int:
    """CSV or Parquet in, CSV or Parquet out, chunk by chunk (see optscale._cli_solve)."""
    from optscale import _cli_solve

    def solve(arrays: dict[str, np.ndarray]) -> optscale.Solution:
        for name, value in overrides.items():
            if value is not None and name not in arrays:
                arrays[name] = np.full(len(next(iter(arrays.values()))), value)
        size = len(next(iter(arrays.values())))
        if size == 0:
            return optscale.Solution(np.zeros(0, np.int32), np.zeros(0, np.int32),
                                     np.zeros(0, dtype))
        with precision(dtype):
            return _solve_part(_columns(arrays, overrides), size, args.criterion, dtype)

    totals = _cli_solve.stream_solve(path, args.output, solve, args.criterion,
                                     progress=not args.quiet and args.output is not None)
    invalid = totals.counts[Status.INVALID.name]
    if invalid:
        line, reason = totals.first_invalid
        where = "row" if path.lower().endswith(".parquet") else "line"
        print(f"optscale solve: {invalid} row(s) INVALID; first at {path} {where} {line}: "
              f"{reason}", file=sys.stderr)
    if args.output:
        print(f"optscale solve: {totals.rows} rows -> {args.output} "
              + ", ".join(f"{k} {v}" for k, v in totals.counts.items() if v), file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="optscale", description=__doc__.splitlines()[0],
                    epilog="Bad options or inputs exit with status 2 and one line on stderr.")
    parser.add_argument("--version", action="version", version=optscale.__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("solve", help="minimal number of samples for a target score",
                       description="Smallest N whose best-of-N score reaches --target with "
                       "--confidence (or whose expected best reaches it). One query from flags, a "
                       "batch from --input (CSV with a header, or NPZ), or the bundled example. "
                       "A field that is not a number (or, in k, n_min, n_max, not an integer "
                       "that fits int32) exits with status 2 naming its line and column; a row "
                       "with values out of range (nan, sigma <= 0, ...) is marked INVALID and the "
                       "first such row is named on stderr. A file with a header and no rows "
                       "gives an output with no rows (exit status 0).")
    p.add_argument("--mu", type=number_arg)
    p.add_argument("--sigma", type=number_arg)
    p.add_argument("--target", type=number_arg)
    p.add_argument("--confidence", type=number_arg, help="required probability, in (0, 1)")
    p.add_argument("--k", type=int_arg(), help="samples that must reach the target (default 1)")
    p.add_argument("--low", type=number_arg, help="score range (default 0)")
    p.add_argument("--high", type=number_arg, help="score range (default 1)")
    p.add_argument("--n-min", dest="n_min", type=int_arg())
    p.add_argument("--n-max", dest="n_max", type=int_arg(),
                   help=f"budget cap (default {optscale.N_MAX_DEFAULT})")
    p.add_argument("--criterion", choices=("probability", "expected"), default="probability")
    p.add_argument("--input", "-i", type=input_file,
                   help="CSV or NPZ with columns mu, sigma, target[, confidence, low, high, k, "
                   "n_min, n_max]; other columns are echoed")
    p.add_argument("--output", "-o", type=output_file,
                   help="CSV or NPZ (by extension); default: stdout")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    p.add_argument("--backend", choices=("jax", "cython", "numpy"),
                   help="default: OPTSCALE_BACKEND or the first available")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_solve)
    add_replay_commands(sub)
    add_run_commands(sub)
    add_predictor_commands(sub)
    add_serve_commands(sub)
    return parser


def _prog(args: argparse.Namespace | None) -> str:
    words = ["optscale"]
    if args is not None:
        words += [w for w in (getattr(args, "command", None),
                              getattr(args, "predictor_command", None)) if w]
    return " ".join(words)


def setup_compile_cache() -> str | None:
    """Turn on JAX's persistent compilation cache in a per-user folder, so that a second run
    of a command reuses the first one's compiled programs; returns the folder, or None.

    ``$OPTSCALE_COMPILE_CACHE`` (default ``$XDG_CACHE_HOME/optscale/jax``, else
    ``~/.cache/optscale/jax``); ``OPTSCALE_NO_COMPILE_CACHE=1`` turns it off, and so does a
    folder that cannot be written (silently: the cache only saves time). Settings already
    given to JAX (``JAX_COMPILATION_CACHE_DIR``, ...) are kept. JAX is not imported here.
    """
    if os.environ.get("OPTSCALE_NO_COMPILE_CACHE", "").strip() not in ("", "0"):
        return None
    folder = os.environ.get("OPTSCALE_COMPILE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "optscale", "jax")
    try:
        os.makedirs(folder, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            return None
    except (OSError, ValueError):
        return None
    # every program (the solvers' take well under JAX's default threshold of 1 s to compile)
    settings = {"JAX_COMPILATION_CACHE_DIR": folder,
                "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
    jax = sys.modules.get("jax")
    for name, value in settings.items():
        if jax is None:
            os.environ.setdefault(name, value)
        elif name not in os.environ:
            with contextlib.suppress(Exception):
                jax.config.update(name.lower(), value if name.endswith("DIR") else float(value)
                                  if "SECS" in name else int(value))
    return os.environ.get("JAX_COMPILATION_CACHE_DIR", folder)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see the module docstring)."""
    debug = bool(os.environ.get("OPTSCALE_DEBUG"))
    args = None
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exit_:  # argparse: --help, --version or its one-line error
            return _exit_status(exit_)
        setup_compile_cache()
        return args.func(args)
    except BrokenPipeError:
        # The reader stopped early (`optscale solve | head`): not an error.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"{_prog(args)}: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exit_:
        return _exit_status(exit_)
    except _USER_ERRORS as err:
        if debug:
            raise
        print(f"{_prog(args)}: {one_line(_describe(err))}", file=sys.stderr)
        return 2
    except Exception as err:
        if debug:
            raise
        print(f"{_prog(args)}: internal error: {type(err).__name__}: {one_line(str(err))} "
              "(set OPTSCALE_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
