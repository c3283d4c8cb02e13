"""The `optscale solve` command: single queries, batches, the bundled example, bad input."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

import optscale
from optscale.cli import main


def test_bundled_example_runs(capsys):
    assert main(["solve", "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    assert "bundled example batch" in out and "INFEASIBLE" in out and "TRIVIAL" in out
    assert " medium " in out or "medium" in out


def test_single_query_matches_the_library(capsys):
    assert main(["solve", "--mu", "0.9", "--sigma", "0.1", "--target", "0.95",
                 "--confidence", "0.9", "--backend", "numpy"]) == 0
    assert capsys.readouterr().out.startswith("n = 12  status = OK")
    assert main(["solve", "--mu", "0.9", "--sigma", "0.1", "--target", "0.95",
                 "--criterion", "expected", "--n-max", "100", "--backend", "numpy"]) == 0
    assert "E[best]" in capsys.readouterr().out


def test_single_query_errors(capsys):
    assert main(["solve", "--mu", "0.9", "--sigma", "-1", "--target", "0.95",
                 "--confidence", "0.9", "--backend", "numpy"]) == 2
    assert "sigma must be finite and > 0" in capsys.readouterr().err
    assert main(["solve", "--mu", "0.9", "--sigma", "0.1", "--target", "0.95"]) == 2
    assert capsys.readouterr().err == "optscale solve: missing --confidence\n"


def _write_csv(path, rows, header="id,mu,sigma,target,confidence"):
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return str(path)


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_csv_batch_round_trip(tmp_path, backend, capsys):
    if backend == "jax":
        pytest.importorskip("jax")
    src = _write_csv(tmp_path / "q.csv", ["a,0.9,0.1,0.95,0.9", "b,0.7,0.15,0.9,0.5",
                                          "c,0.5,0.1,-1,0.9", "d,0.5,0,0.9,0.9"])
    dst = str(tmp_path / "out.csv")
    assert main(["solve", "-i", src, "-o", dst, "--n-max", "1000", "--backend", backend]) == 0
    err = capsys.readouterr().err
    assert "1 row(s) INVALID; first at" in err and "line 5: sigma must be finite" in err
    with open(dst) as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == ["a", "b", "c", "d"]
    assert [r["status"] for r in rows] == ["OK", "OK", "TRIVIAL", "INVALID"]
    d = optscale.TruncatedNormal(0.7, 0.15)
    assert int(rows[1]["n"]) == int(np.asarray(optscale.min_samples(d, 0.9, 0.5, n_max=1000).n))


@pytest.mark.parametrize("row,message", [
    ("a,0.9,abc,0.95,0.9", "q.csv:3: column 'sigma': cannot read 'abc' as a number"),
    ("a,0.9,0.1,0.95", "q.csv:3: expected 5 fields"),
])
def test_malformed_rows_are_named(tmp_path, capsys, row, message):
    src = _write_csv(tmp_path / "q.csv", ["ok,0.9,0.1,0.95,0.9", row])
    assert main(["solve", "-i", src, "--backend", "numpy"]) == 2
    assert message in capsys.readouterr().err


def test_integer_columns_must_be_integers(tmp_path, capsys):
    src = _write_csv(tmp_path / "q.csv", ["a,0.9,0.1,0.95,0.9,2.5"],
                     header="id,mu,sigma,target,confidence,k")
    assert main(["solve", "-i", src, "--backend", "numpy"]) == 2
    assert "q.csv:2: column 'k': cannot read '2.5' as an integer" in capsys.readouterr().err


def test_missing_column(tmp_path, capsys):
    src = _write_csv(tmp_path / "q.csv", ["0.9,0.1,0.95"], header="mu,sigma,target")
    assert main(["solve", "-i", src, "--backend", "numpy"]) == 2
    assert "missing column(s) confidence" in capsys.readouterr().err
    # the expected-best criterion needs no confidence
    assert main(["solve", "-i", src, "--criterion", "expected", "--backend", "numpy"]) == 0


def test_large_npz_batch_with_progress(tmp_path, capsys):
    rng = np.random.default_rng(0)
    size = 140_000  # three chunks
    src = tmp_path / "q.npz"
    np.savez(src, mu=rng.uniform(0, 1.5, size), sigma=rng.uniform(0.05, 0.5, size),
             target=rng.uniform(0.5, 0.99, size), confidence=rng.uniform(0.5, 0.99, size),
             k=rng.integers(1, 3, size))
    dst = tmp_path / "out.npz"
    assert main(["solve", "-i", str(src), "-o", str(dst), "--backend", "numpy",
                 "--dtype", "float32"]) == 0
    assert "solving" in capsys.readouterr().err
    with np.load(dst) as out, np.load(src) as inp:
        assert out["n"].shape == (size,) and np.all(out["status"] != 3)
        d = optscale.TruncatedNormal(inp["mu"][:50].astype(np.float32),
                                     inp["sigma"][:50].astype(np.float32))
        ref = optscale.min_samples(d, inp["target"][:50].astype(np.float32),
                                   inp["confidence"][:50].astype(np.float32), k=inp["k"][:50])
        np.testing.assert_array_equal(out["n"][:50], np.asarray(ref.n))


def test_npz_with_bad_arrays(tmp_path, capsys):
    src = tmp_path / "q.npz"
    np.savez(src, mu=np.ones(3), sigma=np.ones(2), target=np.ones(3), confidence=np.ones(3))
    assert main(["solve", "-i", str(src), "--backend", "numpy"]) == 2
    assert "arrays must be 1-D and of equal length" in capsys.readouterr().err


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "optscale.cli", "solve", "--mu", "0.9",
                          "--sigma", "0.1", "--target", "0.95", "--confidence", "0.9",
                          "--backend", "numpy"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("n = 12"), out.stderr


# ---------------------------------------------------------------- streaming (issue 15)

def _queries_csv(path, rows, extra=None):
    rng = np.random.default_rng(0)
    mu, sigma = rng.uniform(0.3, 1.0, rows), rng.uniform(0.02, 0.3, rows)
    lines = [f"q{i},{m:.6f},{s:.6f},0.95,0.9"
             for i, (m, s) in enumerate(zip(mu, sigma, strict=True))]
    for at, line in (extra or {}).items():
        lines[at] = line
    path.write_text("id,mu,sigma,target,confidence\n" + "\n".join(lines) + "\n")
    return str(path), mu, sigma


@pytest.fixture
def small_chunks(monkeypatch):
    from optscale import _cli_solve

    monkeypatch.setattr(_cli_solve, "CHUNK_ROWS", 64)
    monkeypatch.setattr(_cli_solve, "_BLOCK_BYTES", 2000)


def _solve_rows(src, dst, capsys, *extra):
    assert main(["solve", "-i", src, "-o", dst, "--backend", "numpy", "-q", *extra]) == 0
    with open(dst, newline="") as fh:
        return list(csv.DictReader(fh)), capsys.readouterr().err


def test_csv_streams_in_chunks_with_the_same_answers(tmp_path, capsys, small_chunks):
    src, mu, sigma = _queries_csv(tmp_path / "q.csv", 500, {400: "bad,0.5,-1,0.95,0.9"})
    rows, err = _solve_rows(src, str(tmp_path / "out.csv"), capsys)
    assert "1 row(s) INVALID; first at" in err and "line 402: sigma must be" in err
    assert [r["id"] for r in rows][:3] == ["q0", "q1", "q2"] and len(rows) == 500
    d = optscale.TruncatedNormal(np.round(mu, 6), np.round(sigma, 6))
    want = np.asarray(optscale.min_samples(d, 0.95, 0.9).n)
    got = np.array([int(r["n"]) for r in rows])
    np.testing.assert_array_equal(np.delete(got, 400), np.delete(want, 400))
    assert rows[400]["status"] == "INVALID"
    with open(tmp_path / "out.csv", "rb") as fh:
        assert fh.readline().endswith(b"achieved\r\n")  # csv.writer's line ends, as before


def test_a_late_odd_line_starts_over_line_by_line(tmp_path, capsys, small_chunks):
    plain, _, _ = _queries_csv(tmp_path / "plain.csv", 300)
    odd, _, _ = _queries_csv(tmp_path / "odd.csv", 300)
    with open(odd, "a") as fh:
        fh.write("# a comment after many plain blocks\n")
    rows_plain, _ = _solve_rows(plain, str(tmp_path / "a.csv"), capsys)
    rows_odd, _ = _solve_rows(odd, str(tmp_path / "b.csv"), capsys)
    assert rows_plain == rows_odd


def test_a_late_bad_field_is_named_with_its_line(tmp_path, capsys, small_chunks):
    src, _, _ = _queries_csv(tmp_path / "q.csv", 300, {250: "x,0.5,abc,0.95,0.9"})
    assert main(["solve", "-i", src, "-o", str(tmp_path / "o.csv"), "--backend", "numpy"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (f"optscale solve: {src}:252: column 'sigma': cannot read 'abc' as "
                           "a number")
    assert not (tmp_path / "o.csv").exists()


def test_a_field_beyond_the_csv_limit_is_refused_by_the_bulk_reader_too(tmp_path, capsys):
    # the bulk reader took a 200,000-digit confidence as inf (an INVALID row, exit 0)
    src = _write_csv(tmp_path / "q.csv", ["a,0.9,0.1,0.95,0.9", "b,0.9,0.1,0.95," + "9" * 200_000])
    assert main(["solve", "-i", src, "-o", str(tmp_path / "o.csv"), "--backend", "numpy"]) == 2
    assert f"{src}:3: a field is longer than" in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists()


def test_stdout_gets_nothing_when_a_field_is_bad(tmp_path, capsys, small_chunks):
    # many solved chunks precede the bad field; stdout cannot be taken back, so it must get
    # nothing (as --output gets no file), not the header and the rows before the error
    src, _, _ = _queries_csv(tmp_path / "q.csv", 300, {250: "x,0.5,abc,0.95,0.9"})
    assert main(["solve", "-i", src, "--backend", "numpy"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip().endswith(f"{src}:252: column 'sigma': cannot read 'abc' "
                                              "as a number")
    two = _write_csv(tmp_path / "two.csv", ["a,0.5,abc,0.95,0.9"])
    assert main(["solve", "-i", two, "--backend", "numpy"]) == 2
    assert capsys.readouterr().out == ""


def test_stdout_gets_what_output_gets(tmp_path, capsys, small_chunks):
    plain, _, _ = _queries_csv(tmp_path / "plain.csv", 300)
    odd, _, _ = _queries_csv(tmp_path / "odd.csv", 300, {280: '"q280",0.5,0.1,0.95,0.9'})
    for src in (plain, odd):  # the bulk reader; a late quote starts over line by line
        assert main(["solve", "-i", src, "-o", str(tmp_path / "o.csv"), "-q",
                     "--backend", "numpy"]) == 0
        capsys.readouterr()
        assert main(["solve", "-i", src, "--backend", "numpy"]) == 0
        out = capsys.readouterr().out
        assert out.count("\n") == 301 and out == (tmp_path / "o.csv").read_bytes().decode()


@pytest.mark.parametrize("field,column", [("1_0", "mu"), ("0.9_5", "target"),
                                          ("\uff10.5", "mu"), ("1_0", "k")])
def test_digit_separators_and_other_digits_are_not_numbers(tmp_path, capsys, small_chunks,
                                                          field, column):
    # float() and NumPy read '1_0' as 10 (and full-width digits): solve echoed '1_0' with n
    # for 10; on both readers (a plain block and the line reader) it is now a bad field
    kind = "an integer" if column == "k" else "a number"
    rows = {"mu": "0.5", "sigma": "0.1", "target": "0.95", "confidence": "0.9", "k": "1"}
    rows[column] = field
    for odd in ("", " "):  # a space sends the file to the line reader
        src = _write_csv(tmp_path / "q.csv", [f"q_{i},0.5,0.1,0.95,0.9,1" for i in range(200)]
                         + [odd + ",".join(["x", *rows.values()])],
                         header="id,mu,sigma,target,confidence,k")
        assert main(["solve", "-i", src, "-o", str(tmp_path / "o.csv"), "-q"]) == 2
        assert capsys.readouterr().err.strip() == (
            f"optscale solve: {src}:202: column '{column}': cannot read {field!r} as {kind}")
    assert main(["solve", f"--{column}", field, "--sigma", "0.1", "--confidence", "0.9"]) == 2
    assert f"expected {kind}, got {field!r}" in capsys.readouterr().err


def test_ids_with_underscores_and_other_letters_keep_the_bulk_reader(tmp_path, capsys,
                                                                   monkeypatch):
    from optscale import _cli_solve

    def no_restart(*args):
        raise AssertionError("read line by line")

    monkeypatch.setattr(_cli_solve, "_line_chunks", no_restart)
    src = _write_csv(tmp_path / "q.csv",
                     ["q_1,0.9,0.1,0.95,0.9", "\u00e9t\u00e9_2,0.7,0.15,0.9,0.5"])
    rows, _ = _solve_rows(src, str(tmp_path / "o.csv"), capsys)
    assert [r["id"] for r in rows] == ["q_1", "\u00e9t\u00e9_2"] and rows[0]["n"] == "12"


def test_k_of_ones_takes_the_closed_form(tmp_path, capsys, monkeypatch):
    seen = []
    solve = optscale.min_samples

    def spy(*args, **kwargs):
        seen.append(kwargs["k"])
        return solve(*args, **kwargs)

    monkeypatch.setattr(optscale, "min_samples", spy)
    src = _write_csv(tmp_path / "q.csv", ["a,0.9,0.1,0.95,0.9,1", "b,0.7,0.15,0.9,0.5,1"],
                     header="id,mu,sigma,target,confidence,k")
    _solve_rows(src, str(tmp_path / "o.csv"), capsys)
    _solve_rows(src, str(tmp_path / "o2.csv"), capsys, "--k", "1")
    assert seen and all(k == 1 and isinstance(k, int) for k in seen)


def test_parquet_in_and_out(tmp_path, capsys):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"id": ["a", "b", "c"], "mu": [0.9, 0.7, 0.5], "sigma": [0.1, 0.15, -1.0],
                      "target": [0.95, 0.9, 0.9], "confidence": [0.9, 0.5, 0.9]})
    src = str(tmp_path / "q.parquet")
    pq.write_table(table, src)
    dst = str(tmp_path / "out.parquet")
    assert main(["solve", "-i", src, "-o", dst, "--backend", "numpy", "-q"]) == 0
    assert "first at " + src + " row 2: sigma must be" in capsys.readouterr().err
    out = pq.read_table(dst)
    assert out.column("id").to_pylist() == ["a", "b", "c"]
    assert out.column("status").to_pylist() == ["OK", "OK", "INVALID"]
    assert out.column("n").to_pylist()[0] == 12
    rows, _ = _solve_rows(src, str(tmp_path / "out.csv"), capsys)
    assert [r["n"] for r in rows][:1] == ["12"] and rows[0]["mu"] == "0.9"
    csv_src = _write_csv(tmp_path / "q.csv", ["a,0.9,0.1,0.95,0.9"])
    assert main(["solve", "-i", csv_src, "-o", dst, "--backend", "numpy", "-q"]) == 0
    assert pq.read_table(dst).column("n").to_pylist() == [12]


def test_compile_cache_folder(tmp_path, monkeypatch):
    from optscale.cli import setup_compile_cache

    monkeypatch.setenv("OPTSCALE_NO_COMPILE_CACHE", "1")
    assert setup_compile_cache() is None
    monkeypatch.delenv("OPTSCALE_NO_COMPILE_CACHE")
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("OPTSCALE_COMPILE_CACHE", str(blocker / "jax"))  # cannot be created
    assert setup_compile_cache() is None
    code = ("import sys; from optscale.cli import setup_compile_cache; import os; "
            "print(setup_compile_cache()); print('jax' in sys.modules); "
            "print(os.environ['JAX_COMPILATION_CACHE_DIR'])")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "OPTSCALE_"))}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    folder = str(tmp_path / "cache" / "optscale" / "jax")
    assert out.stdout.split() == [folder, "False", folder], out.stderr
