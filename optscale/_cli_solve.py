"""``optscale solve`` on large files: read, solve and write in chunks, in bounded memory.

CSV is read in blocks of lines. A block of plain lines (no quotes, spaces, comments, blank
lines, carriage returns or odd bytes) is split and converted by NumPy in bulk, and its output
rows are the input lines with ``n, status, achieved`` appended (exactly what ``csv.writer``
would write for them). The first block that is not plain, or that fails a conversion, makes
the whole file start over on the line-by-line reader of :mod:`optscale.cli` (``_lines``,
``split_csv_line``, ``parse_header``, ``parse_value``), which names the file, line and column
of any bad field; the output goes to a temporary file until the end, so a restart or an error
leaves nothing behind (stdout too: it gets the file's copy once every row is solved).
Parquet (the ``parquet`` extra, pyarrow) is read and written by record batches. NPZ files are
read whole (the format has no streaming reader).
"""

from __future__ import annotations

import contextlib
import csv
import io
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np

from optscale._solution import Status

__all__ = ["CHUNK_ROWS", "stream_solve"]

CHUNK_ROWS = 1 << 17  # rows per solver call and per block (~5 MB of text)
_BLOCK_BYTES = 1 << 22
_STATUS_NAMES = np.array([s.name for s in Status])


class _Restart(Exception):
    """The file is not plain CSV: read it again with the line-by-line reader."""


@dataclass
class Chunk:
    """Numeric columns of some rows, the file line (CSV) or row (Parquet) of each, and what
    the writer needs to echo the input."""

    arrays: dict[str, np.ndarray]
    lines: np.ndarray
    echo: Any  # list of input lines (plain CSV), list of field lists, or a pyarrow batch


@dataclass
class Totals:
    rows: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {s.name: 0 for s in Status})
    first_invalid: tuple[int, str] | None = None


# ---------------------------------------------------------------- CSV, plain blocks

def _plain_blocks(path: str, names: list[str], first_line: int, offset: int,
                  known: set[str]) -> Iterator[Chunk]:
    from optscale.cli import INT_COLUMNS, INT_MAX, INT_MIN, MAX_LINE_BYTES, numeral

    ncols = len(names)
    lineno = first_line
    with open(path, "rb") as fh:
        fh.seek(offset)
        rest = b""
        while True:
            data = fh.read(_BLOCK_BYTES)
            block = rest + data
            if not data:
                if not block:
                    return
                if not block.endswith(b"\n"):
                    block += b"\n"
                rest = b""
            else:
                cut = block.rfind(b"\n")
                if cut < 0:
                    if len(block) > MAX_LINE_BYTES:
                        raise _Restart
                    rest = block
                    continue
                block, rest = block[:cut + 1], block[cut + 1:]
            try:
                text = block.decode("utf-8")
            except UnicodeDecodeError:
                raise _Restart from None
            if ('"' in text or "\r" in text or " " in text or "\t" in text or "#" in text
                    or "\n\n" in text or text.startswith("\n") or "\x00" in text
                    or "\x0b" in text or "\x0c" in text):
                raise _Restart
            # NumPy, like float(), reads '1_0' as 10 and non-ASCII digits: where the block
            # has either, a number column that does goes to the line reader (which refuses it)
            odd = not numeral(text)
            lines = text[:-1].split("\n")
            # a line that may hold a field beyond csv's limit: the line reader refuses it (a
            # 200,000-digit number read here was inf, an INVALID row, not the error)
            if max(map(len, lines)) > min(MAX_LINE_BYTES // 4, csv.field_size_limit()):
                raise _Restart
            for start in range(0, len(lines), CHUNK_ROWS):
                part = lines[start:start + CHUNK_ROWS]
                fields = ",".join(part).split(",")
                if len(fields) != ncols * len(part):
                    raise _Restart
                arrays = {}
                try:
                    for j, name in enumerate(names):
                        if name not in known:
                            continue
                        column = fields[j::ncols]
                        if odd and not numeral(",".join(column)):
                            raise _Restart
                        if name in INT_COLUMNS:
                            values = np.array(column, dtype=np.int64)
                            if values.size and (values.min() < INT_MIN or values.max() > INT_MAX):
                                raise _Restart
                        else:
                            values = np.array(column, dtype=np.float64)
                        arrays[name] = values
                except (ValueError, OverflowError):
                    raise _Restart from None
                rows = np.arange(lineno, lineno + len(part), dtype=np.int64)
                lineno += len(part)
                yield Chunk(arrays, rows, part)


def _plain_header(path: str) -> tuple[list[str], int] | None:
    """(column names, byte offset of the second line) when the first line is a plain header."""
    from optscale.cli import MAX_LINE_BYTES, parse_header

    with open(path, "rb") as fh:
        raw = fh.readline(MAX_LINE_BYTES + 1)
    if not raw.endswith(b"\n") or len(raw) > MAX_LINE_BYTES:
        return None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    text = text[:-1]
    if not text or any(c in text for c in '"\r #\t') or text.isspace():
        return None
    return parse_header(path, 1, text), len(raw)


# ---------------------------------------------------------------- CSV, line by line

def _line_chunks(path: str, known: set[str]) -> tuple[list[str], Iterator[Chunk]]:
    from optscale.cli import InputError, _lines, parse_header, parse_value, split_csv_line

    lines = _lines(path, skip_comments=True)
    first = next(lines, None)
    if first is None:
        raise InputError(f"{path}: no header line")
    names = parse_header(path, *first)

    def chunks() -> Iterator[Chunk]:
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        cols: dict[str, list] = {c: [] for c in names if c in known}
        echo: list[list[str]] = []
        numbers: list[int] = []
        for lineno, line in lines:
            row = split_csv_line(path, lineno, line)
            if len(row) != len(names):
                raise InputError(f"{path}:{lineno}: expected {len(names)} fields ({shown}), "
                                 f"found {len(row)}")
            for name, value in zip(names, row, strict=True):
                if name in cols:
                    cols[name].append(parse_value(path, lineno, name, value))
            echo.append(row)
            numbers.append(lineno)
            if len(numbers) == CHUNK_ROWS:
                yield _line_chunk(cols, echo, numbers)
                cols, echo, numbers = {c: [] for c in cols}, [], []
        if numbers:
            yield _line_chunk(cols, echo, numbers)

    return names, chunks()


def _line_chunk(cols: dict[str, list], echo: list[list[str]], numbers: list[int]) -> Chunk:
    from optscale.cli import INT_COLUMNS

    arrays = {c: np.asarray(v, np.int64 if c in INT_COLUMNS else np.float64)
              for c, v in cols.items()}
    return Chunk(arrays, np.asarray(numbers, np.int64), echo)


# ---------------------------------------------------------------- Parquet

def _pyarrow() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError("Parquet files need pyarrow: pip install 'optscale[parquet]'") from None
    return pa, pq


def _parquet_chunks(path: str, known: set[str]) -> tuple[list[str], Iterator[Chunk]]:
    from optscale.cli import INT_COLUMNS, INT_MAX, INT_MIN, InputError, check_input_file

    pa, pq = _pyarrow()
    check_input_file(path)
    try:
        # no pre-buffering of whole row groups: memory stays near one batch
        reader = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
    except Exception as err:  # not Parquet, truncated footer, ...
        raise InputError(f"{path}: not a readable Parquet file ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''})") from None
    schema = reader.schema_arrow
    names = list(schema.names)
    for name in names:
        if name not in known:
            continue
        kind = schema.field(name).type
        integer = pa.types.is_integer(kind)
        if name in INT_COLUMNS and not integer:
            raise InputError(f"{path}: column '{name}' must hold integers; got type {kind}")
        if not (integer or pa.types.is_floating(kind)):
            raise InputError(f"{path}: column '{name}' must be numeric; got type {kind}")

    def chunks() -> Iterator[Chunk]:
        row = 0
        try:
            batches = reader.iter_batches(batch_size=CHUNK_ROWS)
            for batch in batches:
                arrays = {}
                for name in names:
                    if name not in known:
                        continue
                    column = batch.column(name)
                    if name in INT_COLUMNS:
                        if column.null_count:
                            bad = row + int(np.flatnonzero(column.is_null().to_numpy(
                                zero_copy_only=False))[0])
                            raise InputError(f"{path}: column '{name}' row {bad}: missing value")
                        values = column.to_numpy(zero_copy_only=False).astype(np.int64)
                        out = np.flatnonzero((values < INT_MIN) | (values > INT_MAX))
                        if out.size:
                            raise InputError(f"{path}: column '{name}' row {row + out[0]}: "
                                             f"{values[out[0]]} is out of range [{INT_MIN}, "
                                             f"{INT_MAX}]")
                    else:
                        # a missing value is NaN: the row is INVALID, as nan in a CSV
                        values = column.cast(pa.float64()).fill_null(np.nan).to_numpy(
                            zero_copy_only=False)
                    arrays[name] = values
                yield Chunk(arrays, np.arange(row, row + batch.num_rows), batch)
                row += batch.num_rows
        except InputError:
            raise
        except Exception as err:  # a corrupt page
            raise InputError(f"{path}: cannot read row group data ({type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''})") from None

    return names, chunks()


# ---------------------------------------------------------------- writers

class _CsvWriter:
    def __init__(self, fh: IO[str], names: list[str]) -> None:
        self.fh, self.names = fh, names
        self.fh.write(",".join([*names, "n", "status", "achieved"]) + "\r\n"
                      if all(_plain_field(n) for n in names) else self._row_text(
                          [*names, "n", "status", "achieved"]))

    @staticmethod
    def _row_text(row: list[str]) -> str:
        buf = io.StringIO()
        csv.writer(buf).writerow(row)
        return buf.getvalue()

    def write(self, chunk: Chunk, n: np.ndarray, status: np.ndarray,
              achieved: np.ndarray) -> None:
        names = _STATUS_NAMES[status].tolist()
        size = len(names)
        if isinstance(chunk.echo, list) and (not chunk.echo or isinstance(chunk.echo[0], str)):
            # one %-format over the whole chunk runs its loop in C ('%.6g' is format's '.6g')
            flat: list[Any] = [None] * (4 * size)
            flat[0::4], flat[1::4], flat[2::4] = chunk.echo, n.tolist(), names
            flat[3::4] = achieved.astype(np.float64).tolist()
            self.fh.write(("%s,%d,%s,%.6g\r\n" * size) % tuple(flat))
            return
        writer = csv.writer(self.fh)
        rows = chunk.echo if isinstance(chunk.echo, list) else _batch_text(chunk.echo)
        ach = [f"{a:.6g}" for a in achieved.tolist()]
        writer.writerows([*row, k, s, a] for row, k, s, a in zip(rows, n.tolist(), names, ach,
                                                                  strict=True))

    def close(self) -> None:
        pass


def _plain_field(text: str) -> bool:
    return not any(c in text for c in ',"\r\n') and text == text.strip()


def _batch_text(batch: Any) -> list[list[str]]:
    """The fields of a record batch as text, row by row (for CSV output of a Parquet input)."""
    columns = []
    for column in batch.columns:
        values = column.to_pylist()
        columns.append(["" if v is None else (repr(v) if isinstance(v, float) else str(v))
                        for v in values])
    return [list(r) for r in zip(*columns, strict=True)] if columns else []


class _ParquetWriter:
    def __init__(self, fh: IO[bytes], names: list[str]) -> None:
        self.fh, self.names, self.writer = fh, names, None

    def write(self, chunk: Chunk, n: np.ndarray, status: np.ndarray,
              achieved: np.ndarray) -> None:
        pa, pq = _pyarrow()
        if isinstance(chunk.echo, list):
            rows = chunk.echo
            if rows and isinstance(rows[0], str):
                rows = [line.split(",") for line in rows]
            columns = [pa.array([r[j] for r in rows], pa.string())
                       for j in range(len(self.names))]
            table = pa.table(dict(zip(self.names, columns, strict=True)))
        else:
            table = pa.Table.from_batches([chunk.echo])
        table = (table.append_column("n", pa.array(n, pa.int32()))
                 .append_column("status", pa.array(_STATUS_NAMES[status].tolist(), pa.string()))
                 .append_column("achieved", pa.array(achieved)))
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.fh, table.schema)
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# ---------------------------------------------------------------- the command

def _missing(path: str, names: list[str], criterion: str) -> None:
    from optscale.cli import InputError

    required = ["mu", "sigma", "target"] + (["confidence"] if criterion == "probability" else [])
    missing = [c for c in required if c not in names]
    if missing:
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; "
                         f"found {shown or 'none'}")


def _open_source(path: str, criterion: str, plain: bool) -> tuple[list[str], Iterator[Chunk]]:
    from optscale.cli import FLOAT_COLUMNS, INT_COLUMNS

    known = set(FLOAT_COLUMNS) | set(INT_COLUMNS)
    if path.lower().endswith(".parquet"):
        names, chunks = _parquet_chunks(path, known)
    else:
        header = _plain_header(path) if plain else None
        if header is None:
            names, chunks = _line_chunks(path, known)
        else:
            names, offset = header
            chunks = _plain_blocks(path, names, 2, offset, known)
    try:
        _missing(path, names, criterion)
    except Exception:
        # as when the file was read whole: an unreadable line is reported first
        for _ in chunks:
            pass
        raise
    return names, chunks


def stream_solve(path: str, output: str | None, solve: Callable[[dict], Any], criterion: str,
                 progress: bool) -> Totals:
    """Solve every row of ``path`` (CSV or Parquet) chunk by chunk, writing ``output`` (CSV or
    Parquet by extension; stdout when None) as it goes."""
    from tqdm import tqdm

    from optscale.cli import first_invalid_reason, open_output

    to_parquet = output is not None and output.lower().endswith(".parquet")
    if to_parquet:
        _pyarrow()
    plain = True
    while True:
        totals = Totals()
        try:
            names, chunks = _open_source(path, criterion, plain)
            if output is None:
                target: Any = _spooled_stdout()
            else:
                target = open_output(output, "--output", binary=to_parquet)
            # (delay: no bar for inputs solved in a moment)
            with target as fh, tqdm(desc="solving", unit=" rows", unit_scale=True, delay=1.0,
                                    disable=not progress, file=sys.stderr) as bar:
                writer = (_ParquetWriter if to_parquet else _CsvWriter)(fh, names)
                for chunk in chunks:
                    sol = solve(chunk.arrays)
                    n, status, achieved = (np.asarray(v) for v in sol)
                    writer.write(chunk, n, status, achieved)
                    _count(totals, chunk, status, criterion, first_invalid_reason)
                    bar.update(len(chunk.lines))
                writer.close()
            return totals
        except _Restart:
            plain = False


@contextlib.contextmanager
def _spooled_stdout() -> Iterator[IO[str]]:
    """A temporary file copied to stdout only when the block ends without an error: a bad
    field deep in the input leaves stdout empty, as ``--output`` leaves no file (the copy goes
    in 1 MiB pieces: memory stays bounded)."""
    with tempfile.TemporaryFile("w+", newline="", encoding="utf-8") as spool:
        yield spool
        spool.seek(0)
        shutil.copyfileobj(spool, sys.stdout, 1 << 20)


def _count(totals: Totals, chunk: Chunk, status: np.ndarray, criterion: str,
           reasons_of: Callable[..., list[str]]) -> None:
    totals.rows += len(status)
    for s in Status:
        totals.counts[s.name] += int(np.count_nonzero(status == s))
    if totals.first_invalid is None:
        bad = np.flatnonzero(status == Status.INVALID)
        if bad.size:
            i = int(bad[0])
            one = {k: v[i:i + 1] for k, v in chunk.arrays.items()}
            totals.first_invalid = (int(chunk.lines[i]), reasons_of(one, criterion)[0])

