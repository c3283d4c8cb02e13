"""The `optscale solve` command: single queries, batches, the bundled example, bad input."""

from __future__ import annotations

import csv
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
