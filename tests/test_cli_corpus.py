"""The command line's error rule, on a corpus of bad inputs run through every subcommand.

Rule (optscale/cli.py, ``main``): a bad option, input or output exits with status 2 after
exactly one line on stderr naming the option, or the file (and line and field where there is
one); never a Python traceback. An unexpected error is one ``internal error`` line, status 1;
an interrupt, status 130. The cases run in-process (``main([...])``); a handful run as real
subprocesses to check that nothing else reaches the terminal.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

import optscale.cli as cli
from optscale.cli import main
from optscale.replay import Pool, save_npz

# -- the corpus files --------------------------------------------------------------------------

KINDS = ("missing", "folder", "fifo", "device", "nonutf8", "empty", "long", "deep")


def _pool_line(qid, scores, correct=True, **sample):
    return json.dumps({"id": qid, "samples": [
        {"score": s, "correct": bool(correct and i % 2 == 0), **sample}
        for i, s in enumerate(scores)]}) + "\n"


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    p: dict[str, str] = {"out": str(d / "out"), "dir": str(d)}

    def put(name, data, key=None):
        path = d / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        p[key or name] = str(path)
        return str(path)

    # good inputs
    put("good.csv", "id,mu,sigma,target,confidence\na,0.9,0.1,0.95,0.9\n")
    put("header.csv", "id,mu,sigma,target,confidence\n")
    put("pool.jsonl", "".join(_pool_line(q, [0.3, 0.6, 0.9, 0.5]) for q in "abc"))
    put("pool1.jsonl", _pool_line("a", [0.3, 0.6, 0.9]))
    put("nolabels.jsonl", "".join(json.dumps({"id": q, "samples": [{"score": 0.5}]}) + "\n"
                                  for q in "ab"))
    put("extreme.jsonl", _pool_line("a", [0.3, 0.6, 0.4, 0.5]) + _pool_line("b", [0.5, 1e300]))
    put("gold.jsonl", "".join(json.dumps({"answer": "1"}) + "\n" for _ in "abc"))
    put("questions.txt", "What is 1+1?\n")
    os.mkdir(d / "model")
    p["model"] = str(d / "model")
    # bad inputs, one per kind
    p["missing"] = str(d / "missing.txt")
    os.mkdir(d / "folder")
    p["folder"] = str(d / "folder")
    os.mkfifo(d / "fifo")
    p["fifo"] = str(d / "fifo")
    p["device"] = os.devnull
    put("nonutf8.txt", b"id,mu\n\xff\xfe broken\n", "nonutf8")
    put("empty.txt", b"", "empty")
    put("long.txt", b"x" * (2 << 20) + b"\n", "long")
    put("deep.txt", b"[" * 100_000 + b"\n", "deep")
    # predictor data folders: train_questions.json is the bad kind, the stats are fine
    stats = json.dumps({"0": {"mean": 0.5, "std": 0.1}})
    for kind in KINDS:
        folder = d / f"data-{kind}"
        os.mkdir(folder)
        (folder / "train_score_stats.json").write_text(stats)
        target = folder / "train_questions.json"
        if kind == "folder":
            os.mkdir(target)
        elif kind == "fifo":
            os.mkfifo(target)
        elif kind == "device":
            os.symlink(os.devnull, target)
        elif kind != "missing":
            target.write_bytes(open(p[kind], "rb").read())
        p[f"data-{kind}"] = str(folder)
        p[f"data-{kind}-file"] = str(target)
    # solve inputs
    put("nonfinite.csv", "mu,sigma,target,confidence\n0.9,0.1,0.9,0.9\nnan,0.1,0.9,0.9\n"
        "0.9,inf,0.9,0.9\n0.9,0.1,inf,0.9\n0.9,0.1,-inf,0.9\n1e999,0.1,0.9,0.9\n")
    put("text.csv", "mu,sigma,target,confidence\n0.9,abc,0.9,0.9\n")
    put("dup.csv", "mu,sigma,mu,target,confidence\n0.9,0.1,0.9,0.9,0.9\n")
    put("hugeint.csv", "mu,sigma,target,confidence,k\n0.9,0.1,0.9,0.9,99999999999\n")
    put("float_k.csv", "mu,sigma,target,confidence,k\n0.9,0.1,0.9,0.9,1.5\n")
    put("longfield.csv", "mu,sigma,target,confidence\n0.9,0.1,0.9," + "9" * 200_000 + "\n")
    put("fields.csv", "mu,sigma,target,confidence\n0.9,0.1,0.9\n")
    put("quote.csv", 'mu,sigma,target,confidence\n0.9,"0.1,0.9,0.9\n')
    put("nul.csv", "mu,sigma,target,confidence\n0.9,0.1\x00,0.9,0.9\n")
    put("comments.csv", "# only a comment\n\n")
    put("nocols.csv", "a,b\n1,2\n")
    np.savez(d / "good.npz", mu=[0.9], sigma=[0.1], target=[0.95], confidence=[0.9])
    p["good.npz"] = str(d / "good.npz")
    data = (d / "good.npz").read_bytes()
    put("truncated.npz", data[: len(data) // 2])
    np.savez(d / "object.npz", mu=np.array([0.9, None], dtype=object), sigma=[0.1, 0.1],
             target=[0.9, 0.9], confidence=[0.9, 0.9])
    p["object.npz"] = str(d / "object.npz")
    np.savez(d / "shapes.npz", mu=np.ones((2, 2)), sigma=np.ones(2), target=np.ones(2),
             confidence=np.ones(2))
    p["shapes.npz"] = str(d / "shapes.npz")
    np.savez(d / "echo.npz", mu=[0.9], sigma=[0.1], target=[0.9], confidence=[0.9],
             id=np.array(["a", "b"]))
    p["echo.npz"] = str(d / "echo.npz")
    np.savez(d / "bigk.npz", mu=[0.9], sigma=[0.1], target=[0.9], confidence=[0.9],
             k=np.array([2**40]))
    p["bigk.npz"] = str(d / "bigk.npz")
    np.save(d / "single.npy", np.ones(3))
    os.rename(d / "single.npy", d / "single.npz")
    p["single.npz"] = str(d / "single.npz")
    # malformed pools
    put("pool_group.jsonl", _pool_line("a", [0.5], group=2**40))
    put("pool_tokens.jsonl", _pool_line("a", [0.5], tokens=10**30))
    put("pool_dup.jsonl", _pool_line("a", [0.5]) + _pool_line("a", [0.6]))
    put("pool_surrogate.jsonl", '{"id": "\\ud800", "samples": [{"score": 0.5}]}\n')
    put("pool_bigfloat.jsonl", '{"samples": [{"score": 1e999}]}\n')
    save_npz(Pool(np.ones((2, 2)), [2, 2], np.zeros((2, 2))), str(d / "pool.npz"))
    p["pool.npz"] = str(d / "pool.npz")
    pool_npz = (d / "pool.npz").read_bytes()
    put("pool_truncated.npz", pool_npz[:-40])
    np.savez(d / "pool_object.npz", scores=np.array([[0.5, None]], dtype=object), lengths=[2],
             answers=np.zeros((1, 2)))
    p["pool_object.npz"] = str(d / "pool_object.npz")
    np.savez(d / "pool_dup.npz", scores=np.ones((2, 1)), lengths=[1, 1],
             answers=np.zeros((2, 1), np.int32), ids=np.array(["x", "x"]))
    p["pool_dup.npz"] = str(d / "pool_dup.npz")
    # outputs that must be refused
    os.symlink(d / "elsewhere", d / "link")
    p["link"] = str(d / "link")
    os.symlink(d / "elsewhere.csv", d / "link.csv")
    p["link.csv"] = str(d / "link.csv")
    p["nodir"] = str(d / "no" / "such" / "out.csv")
    p["under_file"] = os.path.join(p["good.csv"], "out.csv")
    return p


class Hung(BaseException):
    """Raised by the alarm: a BaseException, so that main() cannot mistake it for a user error."""


@pytest.fixture(autouse=True)
def no_hanging():
    """Fail, instead of hanging the suite, if a command blocks (opening a FIFO would)."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def alarm(signum, frame):
        raise Hung("the command blocked for 60 s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, 60)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_main(capsys, argv):
    """Exit status and stderr lines of one in-process run."""
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.err.splitlines(), captured.out


def assert_one_line_error(status, err, *expected):
    assert status == 2, (status, err)
    assert len(err) == 1 and err[0].strip(), err
    assert "Traceback" not in err[0]
    for text in expected:
        assert text in err[0], (text, err[0])


# -- every subcommand x every kind of bad input file -------------------------------------------

INPUT = {  # where each subcommand takes a file; {f}: the bad file
    "solve": ["solve", "-i", "{f}", "-q"],
    "replay": ["replay", "{f}", "--out", "{out}", "-q"],
    "replay --gold": ["replay", "{pool.jsonl}", "--gold", "{f}", "--out", "{out}", "-q"],
    "replay --policy": ["replay", "{pool.jsonl}", "--policy", "{f}", "--out", "{out}", "-q"],
    "tune": ["tune", "{f}", "-o", "{out}.json", "--token-budget", "100", "-q"],
    "diagnose": ["diagnose", "{f}"],
    "run": ["run", "--input", "{f}", "--model", "{model}", "--scorer", "{model}"],
    "predict": ["predict", "--input", "{f}"],
    "predictor train": ["predictor", "train", "--data", "{data}", "--out", "{out}"],
    "predictor evaluate": ["predictor", "evaluate", "--data", "{data}"],
    "serve --policy": ["serve", "--upstream", "http://127.0.0.1:9/v1", "--model", "m",
                       "--no-log", "--policy", "{f}"],
}
SAME = {"missing": "No such file or directory", "folder": "is a folder, not a regular file",
        "fifo": "named pipe (FIFO)", "device": "character device", "nonutf8": "not UTF-8"}
EXPECTED = {
    "solve": {"empty": "no header line", "long": "line longer than", "deep": "missing column"},
    "replay": {"empty": "no records", "long": "invalid JSON", "deep": "nested too deeply"},
    "diagnose": {"empty": "no records", "long": "invalid JSON", "deep": "nested too deeply"},
    "run": {"empty": "give a question", "long": "line longer than"},
    "predict": {"empty": "give a question", "long": "line longer than"},
    "predictor train": {"empty": "invalid JSON", "long": "invalid JSON", "deep": "invalid JSON"},
}
EXPECTED["replay --gold"] = EXPECTED["replay"]
EXPECTED["tune"] = EXPECTED["replay"]
EXPECTED["replay --policy"] = {"empty": "not JSON", "long": "not JSON",
                               "deep": "nested too deeply"}
EXPECTED["predictor evaluate"] = EXPECTED["predictor train"]
EXPECTED["serve --policy"] = EXPECTED["replay --policy"]
FILE_CASES = [(cmd, kind) for cmd in INPUT for kind in KINDS
              if kind in SAME or kind in EXPECTED[cmd]]


def _format(argv, paths, **extra):
    """``{name}`` in each argument replaced by that path (names have dots: not str.format)."""
    names = {**paths, **extra}
    return [re.sub(r"\{([^{}]+)\}", lambda m: names[m.group(1)], a) for a in argv]


@pytest.mark.parametrize("cmd,kind", FILE_CASES, ids=[f"{c}-{k}" for c, k in FILE_CASES])
def test_every_subcommand_refuses_every_bad_input_file(paths, capsys, cmd, kind):
    predictor = cmd.startswith("predictor")
    bad = paths[f"data-{kind}-file"] if predictor else paths[kind]
    argv = _format(INPUT[cmd], paths, f=paths[kind], data=paths[f"data-{kind}"])
    status, err, _ = run_main(capsys, argv)
    expected = SAME.get(kind) or EXPECTED[cmd][kind]
    where = [] if kind in ("empty",) and cmd in ("run", "predict") else [bad]
    assert_one_line_error(status, err, expected, *where)


# -- options, malformed files and outputs, per subcommand --------------------------------------

SERVE = ["serve", "--upstream", "http://127.0.0.1:9/v1", "--model", "m", "--no-log"]
CASES = [
    # solve: options
    ("solve", ["solve", "--k", "99999999999", "--mu", "1"], ["--k", "[-2147483648, 2147483647]"]),
    ("solve", ["solve", "--n-max", "x"], ["--n-max", "expected an integer"]),
    ("solve", ["solve", "--mu", "0.9", "--sigma", "0.1", "--target", "0.9"],
     ["missing --confidence"]),
    ("solve", ["solve", "--mu", "nan", "--sigma", "0.1", "--target", "0.9", "--confidence",
               "0.9", "--backend", "numpy"], ["invalid input: mu"]),
    ("solve", ["solve", "-i", "{good.csv}", "--mu", "0.5"], ["either --input"]),
    ("solve", ["solve", "--backend", "nope"], ["--backend", "invalid choice"]),
    # solve: malformed CSV (file:line: column)
    ("solve", ["solve", "-i", "{text.csv}"], ["{text.csv}:2: column 'sigma'", "as a number"]),
    ("solve", ["solve", "-i", "{dup.csv}"], ["{dup.csv}:1: column 'mu' appears twice"]),
    ("solve", ["solve", "-i", "{hugeint.csv}"], ["{hugeint.csv}:2: column 'k'", "out of range"]),
    ("solve", ["solve", "-i", "{float_k.csv}"], ["{float_k.csv}:2: column 'k'", "an integer"]),
    ("solve", ["solve", "-i", "{longfield.csv}"], ["{longfield.csv}:2: a field is longer"]),
    ("solve", ["solve", "-i", "{fields.csv}"], ["{fields.csv}:2: expected 4 fields"]),
    ("solve", ["solve", "-i", "{quote.csv}"], ["{quote.csv}:2: malformed CSV"]),
    ("solve", ["solve", "-i", "{nul.csv}"], ["{nul.csv}:2:"]),
    ("solve", ["solve", "-i", "{comments.csv}"], ["{comments.csv}: no header line"]),
    ("solve", ["solve", "-i", "{nocols.csv}"], ["{nocols.csv}: missing column(s) mu"]),
    # solve: malformed NPZ (file: array)
    ("solve", ["solve", "-i", "{truncated.npz}"], ["{truncated.npz}: not a readable NPZ"]),
    ("solve", ["solve", "-i", "{object.npz}"], ["{object.npz}: array 'mu' holds Python objects"]),
    ("solve", ["solve", "-i", "{shapes.npz}"], ["{shapes.npz}: arrays must be 1-D"]),
    ("solve", ["solve", "-i", "{echo.npz}"], ["{echo.npz}: array 'id'", "length 1"]),
    ("solve", ["solve", "-i", "{bigk.npz}"], ["{bigk.npz}: array 'k' row 0", "out of range"]),
    ("solve", ["solve", "-i", "{single.npz}"], ["{single.npz}: a single .npy array"]),
    # solve: outputs
    ("solve", ["solve", "-i", "{good.csv}", "-o", "{link.csv}"], ["--output", "symbolic link"]),
    ("solve", ["solve", "-i", "{good.csv}", "-o", "{folder}"], ["--output", "is a folder"]),
    ("solve", ["solve", "-i", "{good.csv}", "-o", "{fifo}"], ["--output", "named pipe"]),
    ("solve", ["solve", "-i", "{good.csv}", "-o", "{nodir}"], ["--output", "does not exist"]),
    ("solve", ["solve", "-i", "{good.csv}", "-o", "{under_file}"],
     ["--output", "Not a directory"]),
    # replay and diagnose: malformed pools (file:line: field)
    ("replay", ["replay", "{pool_group.jsonl}", "--out", "{out}"],
     ["{pool_group.jsonl}:1: samples[0].group", "2147483647"]),
    ("replay", ["replay", "{pool_tokens.jsonl}", "--out", "{out}"],
     ["{pool_tokens.jsonl}:1: samples[0].tokens", "out of range"]),
    ("replay", ["replay", "{pool_dup.jsonl}", "--out", "{out}"],
     ["{pool_dup.jsonl}:2: id: question id 'a' is already used at line 1"]),
    ("replay", ["replay", "{pool_surrogate.jsonl}", "--out", "{out}"],
     ["{pool_surrogate.jsonl}:1: id: not valid Unicode"]),
    ("replay", ["replay", "{pool_truncated.npz}", "--out", "{out}"],
     ["{pool_truncated.npz}: not a readable NPZ"]),
    ("replay", ["replay", "{pool_object.npz}", "--out", "{out}"],
     ["{pool_object.npz}: array 'scores' holds Python objects"]),
    ("replay", ["replay", "{pool_dup.npz}", "--out", "{out}"],
     ["{pool_dup.npz}: array 'ids': question id 'x' appears twice"]),
    ("diagnose", ["diagnose", "{pool_bigfloat.jsonl}"],
     ["{pool_bigfloat.jsonl}:1: samples[0].score", "finite"]),
    ("diagnose", ["diagnose", "{pool_dup.npz}"], ["{pool_dup.npz}: array 'ids'"]),
    ("diagnose", ["diagnose", "{pool.npz}", "--format", "jsonl"], ["{pool.npz}:", "UTF-8"]),
    ("diagnose", ["diagnose", "{pool.jsonl}", "--format", "npz"], ["{pool.jsonl}: not a readable"]),
    # replay: options and pools that cannot be evaluated
    ("replay", ["replay", "{pool.jsonl}", "--orders", "0"], ["--orders", "got '0'"]),
    ("replay", ["replay", "{pool.jsonl}", "--folds", "1"], ["--folds", "got '1'"]),
    ("replay", ["replay", "{pool.jsonl}", "--budgets", "0"], ["--budgets"]),
    ("replay", ["replay", "{pool.jsonl}", "--budgets", "8,x"], ["--budgets", "'x'"]),
    ("replay", ["replay", "{pool.jsonl}", "--budgets", ","], ["--budgets"]),
    ("replay", ["replay", "{pool.jsonl}", "--tolerance", "1"], ["--tolerance"]),
    ("replay", ["replay", "{pool.jsonl}", "--tolerance", "nan"], ["--tolerance"]),
    ("replay", ["replay", "{pool.jsonl}", "--seed", "-1"], ["--seed"]),
    ("replay", ["replay", "{pool.jsonl}", "--verifier-tokens", "-1"], ["--verifier-tokens"]),
    ("replay", ["replay", "{pool.jsonl}", "--format", "xml"], ["--format", "invalid choice"]),
    ("replay", ["replay", "{pool.jsonl}", "--methods", "nope", "--out", "{out}"],
     ["--methods takes"]),
    ("replay", ["replay", "{pool.jsonl}", "--verifier-tokens", "5", "--out", "{out}", "-q"],
     ["verifier_tokens", "token counts"]),
    ("replay", ["replay", "{pool1.jsonl}", "--out", "{out}", "-q"],
     ["1 question(s)", "needs at least 2"]),
    ("replay", ["replay", "{nolabels.jsonl}", "--out", "{out}"], ["no correctness labels"]),
    ("replay", ["replay", "{pool.jsonl}", "--orders", "2000000000", "--out", "{out}", "-q"],
     ["--orders 2000000000", "lower --orders"]),
    ("replay", ["replay", "{pool.jsonl}", "--out", "{link}"], ["--out", "symbolic link"]),
    ("replay", ["replay", "{pool.jsonl}", "--out", "{good.csv}"], ["--out", "not a folder"]),
    ("replay", ["replay", "{pool.jsonl}", "--out", "{under_file}"], ["--out", "Not a directory"]),
    ("replay", ["replay"], ["the following arguments are required: pool"]),
    ("replay", ["replay", "{pool.jsonl}", "--questions", "1:2", "--out", "{out}"],
     ["--questions 1:2", "at least 2"]),
    ("replay", ["replay", "{pool.jsonl}", "--questions", "every", "--out", "{out}"],
     ["--questions", "'every'"]),
    ("replay", ["replay", "{pool.jsonl}", "--reference", "oracle"], ["--reference"]),
    ("replay", ["replay", "{pool.jsonl}", "--asc-thresholds", "1.5"], ["--asc-thresholds"]),
    ("replay", ["replay", "{pool.jsonl}", "--esc-windows", "0"], ["--esc-windows"]),
    ("replay", ["replay", "{pool.jsonl}", "--policy", "{good.csv}", "--out", "{out}"],
     ["good.csv:1: not JSON"]),
    # tune
    ("tune", ["tune", "{pool.jsonl}", "-o", "{out}.json"], ["exactly one objective"]),
    ("tune", ["tune", "{pool.jsonl}", "-o", "{out}.json", "--price", "1", "--token-budget", "9"],
     ["exactly one objective"]),
    ("tune", ["tune", "{pool.jsonl}", "-o", "{out}.json", "--target-accuracy", "1.5"],
     ["--target-accuracy"]),
    ("tune", ["tune", "{pool.jsonl}", "-o", "{out}.json", "--price", "-1"], ["--price"]),
    ("tune", ["tune", "{pool.jsonl}", "-o", "{link}", "--price", "1"], ["symbolic link"]),
    ("tune", ["tune", "{pool.jsonl}", "--price", "1"], ["required: --output"]),
    ("tune", ["tune", "{pool1.jsonl}", "-o", "{out}.json", "--price", "1", "-q"],
     ["1 question(s)", "needs at least 2"]),
    ("tune", ["tune", "{nolabels.jsonl}", "-o", "{out}.json", "--price", "1"],
     ["no correctness labels"]),
    # diagnose: options
    ("diagnose", ["diagnose", "{pool.jsonl}", "--alpha", "0"], ["--alpha"]),
    ("diagnose", ["diagnose", "{pool.jsonl}", "--alpha", "1.5"], ["--alpha"]),
    ("diagnose", ["diagnose", "{pool.jsonl}", "--low", "1", "--high", "0"], ["--low 1", "--high"]),
    ("diagnose", ["diagnose", "{pool.jsonl}", "--low", "0.5"], ["outside --low/--high"]),
    ("diagnose", ["diagnose", "{pool.jsonl}", "--aggregate", "max"], ["--aggregate"]),
    # demo
    ("demo", ["demo", "--questions", "1"], ["--questions"]),
    ("demo", ["demo", "--questions", "99999999999"], ["--questions"]),
    ("demo", ["demo", "--samples", "0"], ["--samples"]),
    ("demo", ["demo", "--orders", "0"], ["--orders"]),
    ("demo", ["demo", "--folds", "1"], ["--folds"]),
    ("demo", ["demo", "--budgets", "-4"], ["--budgets"]),
    ("demo", ["demo", "--out", "{link}"], ["--out", "symbolic link"]),
    # run (fails before any model is loaded)
    ("run", ["run", "q", "--model", "{model}", "--scorer", "{model}", "--n-peek", "0"],
     ["--n-peek"]),
    ("run", ["run", "q", "--model", "{model}", "--scorer", "{model}", "--confidence", "2"],
     ["--confidence"]),
    ("run", ["run", "q", "--model", "{model}", "--scorer", "{model}", "--n-max", "0"],
     ["--n-max"]),
    ("run", ["run", "q", "--model", "{model}", "--scorer", "{model}", "--target", "nan"],
     ["--target"]),
    ("run", ["run", "q", "--model", "{model}", "--scorer", "{model}", "--target", "5"],
     ["invalid policy options", "target"]),
    ("run", ["run", "q", "--model", "{model}", "--scorer", "{model}", "--n-peek", "40"],
     ["invalid policy options", "n_max"]),
    ("run", ["run", "q", "--model", "{missing}", "--scorer", "{model}"],
     ["--model", "{missing}"]),
    ("run", ["run", "q", "--model", "{model}", "--scorer", "{good.csv}"],
     ["--scorer", "not a folder"]),
    ("run", ["run", "q", "--scorer", "{model}"], ["--model"]),
    ("run", ["run", "--model", "{model}", "--scorer", "{model}"], ["give a question"]),
    ("run", ["run", "q", "--model", "{model}", "--scorer", "{model}", "--seed", "-3"],
     ["--seed"]),
    # predict and predictor
    ("predict", ["predict", "q", "--model", "{missing}"], ["--model", "{missing}"]),
    ("predict", ["predict", "q", "--cache", "{good.csv}"], ["--cache", "not a folder"]),
    ("predict", ["predict"], ["give a question"]),
    ("predictor", ["predictor"], ["required"]),
    ("predictor", ["predictor", "train", "--data", "{missing}", "--out", "{out}"],
     ["--data", "{missing}"]),
    ("predictor", ["predictor", "train", "--data", "{good.csv}", "--out", "{out}"],
     ["--data", "not a folder"]),
    ("predictor", ["predictor", "train", "--data", "{data-empty}", "--out", "{link}"],
     ["--out", "symbolic link"]),
    ("predictor", ["predictor", "train", "--data", "{data-empty}", "--out", "{out}", "--epochs",
                   "0"], ["--epochs"]),
    ("predictor", ["predictor", "train", "--data", "{data-empty}", "--out", "{out}",
                   "--dropout", "1"], ["--dropout"]),
    ("predictor", ["predictor", "train", "--data", "{data-empty}", "--out", "{out}", "--lr",
                   "0"], ["--lr"]),
    ("predictor", ["predictor", "train", "--data", "{data-empty}", "--out", "{out}",
                   "--max-length", "0"], ["--max-length"]),
    ("predictor", ["predictor", "train", "--data", "{data-empty}", "--out", "{out}",
                   "--encoder", "{missing}"], ["--encoder", "{missing}"]),
    ("predictor", ["predictor", "evaluate", "--data", "{data-empty}", "--n-boot", "0"],
     ["--n-boot"]),
    ("predictor", ["predictor", "evaluate", "--data", "{data-empty}", "--part", "x"],
     ["--part"]),
    # serve (fails before the server starts)
    ("serve", ["serve", "--model", "m"], ["required: --upstream"]),
    ("serve", ["serve", "--upstream", "http://127.0.0.1:9/v1"], ["required: --model"]),
    ("serve", SERVE + ["--port", "70000"], ["--port", "[0, 65535]"]),
    ("serve", SERVE + ["--port", "x"], ["--port", "expected an integer"]),
    ("serve", ["serve", "--upstream", "localhost:8000", "--model", "m", "--no-log"],
     ["--upstream", "http(s) URL"]),
    ("serve", SERVE + ["--policy", "{missing}"], ["--policy", "{missing}"]),
    ("serve", SERVE + ["--policy", "{good.csv}"], ["--policy", "good.csv:1: not JSON"]),
    ("serve", SERVE + ["--scorer", "bogus"], ["--scorer", "unknown scorer 'bogus'"]),
    ("serve", SERVE + ["--scorer", "logprob-window:0"], ["--scorer", "window W >= 1"]),
    ("serve", SERVE + ["--scorer", "pooling:ftp://x/pooling"], ["--scorer", "http(s) URL"]),
    ("serve", SERVE + ["--scorer", "json:"], ["--scorer", "needs a URL"]),
    ("serve", SERVE + ["--scorer", "hf-reward:{model}"], ["--scorer", "cannot load"]),
    ("serve", SERVE + ["--scorer-step", "max"], ["--scorer-step", "invalid choice"]),
    ("serve", SERVE + ["--answer", "first"], ["--answer", "invalid choice"]),
    ("serve", SERVE + ["--timeout", "0"], ["--timeout"]),
    ("serve", SERVE + ["--retries", "-1"], ["--retries"]),
    ("serve", SERVE + ["--max-in-flight", "0"], ["--max-in-flight"]),
    ("serve", SERVE + ["--token-budget", "-5"], ["--token-budget"]),
    ("serve", SERVE + ["--keepalive", "nan"], ["--keepalive"]),
    ("serve", SERVE + ["--log-max-bytes", "-1"], ["--log-max-bytes"]),
    ("serve", ["serve", "--upstream", "http://127.0.0.1:9/v1", "--model", "m", "--log",
               "{link}"], ["--log", "symbolic link"]),
    ("serve", ["serve", "--upstream", "http://127.0.0.1:9/v1", "--model", "m", "--log",
               "{nodir}"], ["--log", "does not exist"]),
    ("serve", SERVE + ["--host", "no.such.host.invalid"], ["--host no.such.host.invalid"]),
    ("optscale", [], ["the following arguments are required"]),
    ("optscale", ["nope"], ["invalid choice: 'nope'"]),
]


@pytest.mark.parametrize("argv,expected", [c[1:] for c in CASES],
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_options_inputs_and_outputs(paths, capsys, argv, expected):
    status, err, _ = run_main(capsys, _format(argv, paths))
    assert_one_line_error(status, err, *(_format([e], paths)[0] for e in expected))
    assert not [n for n in os.listdir(paths["dir"]) if n.endswith(".part")]  # nothing half-done


def test_a_policy_file_whose_cost_model_lacks_a_field_is_one_line(capsys, tmp_path):
    path = tmp_path / "cost.json"
    path.write_text(json.dumps({"format": "optscale-policy", "version": 1, "policy": {
        "kind": "cost", "n_max": 8, "model": {"table": []}}}))
    status, err, _ = run_main(capsys, SERVE + ["--policy", str(path)])
    assert_one_line_error(status, err, f"{path}: policy.model.n_max: missing")


def test_the_corpus_covers_every_subcommand():
    parser = cli.build_parser()
    commands = set(parser._subparsers._group_actions[0].choices)  # what `optscale --help` lists
    covered = {c[0] for c in CASES} | {c.split()[0] for c in INPUT}
    assert commands <= covered, commands - covered


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc (Linux)")
def test_an_unwritable_output_is_one_line_naming_the_option(paths, capsys):
    # /proc takes no new files, even as root: the write itself fails, after the checks passed
    status, err, _ = run_main(capsys, ["solve", "-i", paths["good.csv"], "-o",
                                       "/proc/optscale.csv", "-q"])
    assert_one_line_error(status, err, "--output", "/proc/optscale.csv", "cannot write")
    status, err, _ = run_main(capsys, ["replay", paths["pool.jsonl"], "--out",
                                       "/proc/optscale-out", "--orders", "1", "-q"])
    assert_one_line_error(status, err, "--out", "/proc/optscale-out", "cannot write")


# -- the cases that are not errors --------------------------------------------------------------

def test_a_header_only_csv_gives_an_empty_result(paths, capsys, tmp_path):
    out = tmp_path / "empty.csv"
    status, err, stdout = run_main(capsys, ["solve", "-i", paths["header.csv"], "-o", str(out)])
    assert status == 0 and out.read_text().splitlines() == ["id,mu,sigma,target,confidence,n,"
                                                            "status,achieved"]
    status, err, stdout = run_main(capsys, ["solve", "-i", paths["header.csv"], "-q"])
    assert status == 0 and stdout.splitlines() == ["id,mu,sigma,target,confidence,n,status,"
                                                   "achieved"]


def test_non_finite_values_are_invalid_rows_not_format_errors(paths, capsys):
    # the solvers' rule for values out of range (sigma <= 0, nan, ...): an INVALID row, named
    status, err, out = run_main(capsys, ["solve", "-i", paths["nonfinite.csv"], "-q",
                                         "--backend", "numpy"])
    assert status == 0
    assert err == [f"optscale solve: 3 row(s) INVALID; first at {paths['nonfinite.csv']} line 3: "
                   "mu must be finite"]
    statuses = [line.split(",")[5] for line in out.splitlines()[1:]]
    assert statuses == ["OK", "INVALID", "INVALID", "INFEASIBLE", "TRIVIAL", "INVALID"]


def test_output_replaces_a_file_and_never_writes_through_a_symlink(paths, capsys, tmp_path):
    target = tmp_path / "target.csv"
    target.write_text("precious\n")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    status, err, _ = run_main(capsys, ["solve", "-i", paths["good.csv"], "-o", str(link)])
    assert status == 2 and target.read_text() == "precious\n"
    out = tmp_path / "out.csv"
    out.write_text("old\n")
    assert main(["solve", "-i", paths["good.csv"], "-o", str(out), "--backend", "numpy"]) == 0
    assert out.read_text().startswith("id,mu,sigma,target,confidence,n,status,achieved\na,")
    assert sorted(os.listdir(tmp_path)) == ["link.csv", "out.csv", "target.csv"]


def test_folds_larger_than_the_pool_are_lowered_with_a_note(paths, capsys, tmp_path,
                                                            numpy_backend):
    status, err, stdout = run_main(capsys, [
        "replay", paths["pool.jsonl"], "--orders", "1", "--budgets", "4", "--methods", "bon",
        "--out", str(tmp_path / "r"), "-q"])
    assert status == 0, err
    assert err[0] == "optscale replay: --folds 5 is more than the pool's 3 questions; using " \
                     "--folds 3"
    assert (tmp_path / "r" / "report.md").exists()
    assert not [n for n in os.listdir(tmp_path / "r") if n.startswith(".")]


def test_diagnose_with_one_extreme_score_prints_finite_numbers_and_a_note(paths, capsys,
                                                                         numpy_backend):
    status, err, stdout = run_main(capsys, ["diagnose", paths["extreme.jsonl"]])
    assert status == 0, err
    table = [line for line in stdout.splitlines() if line.startswith("| a ")
             or line.startswith("| b ")]
    assert len(table) == 2
    for line in table:
        cells = [c.strip() for c in line.strip("|").split("|")][3:]
        assert all(c == "n/a" or np.isfinite(float(c)) for c in cells), line
        assert not all(c == "n/a" for c in cells), line
    assert "widened from [0, 1] to hold the score 1e+300 of question 'b'" in stdout
    assert "--low/--high" in stdout
    # with the verifier's range given, the outlier is an error naming it
    status, err, _ = run_main(capsys, ["diagnose", paths["extreme.jsonl"], "--high", "1"])
    assert_one_line_error(status, err, "question 'b'", "1e+300")


# -- the fallbacks: internal errors, interrupts --------------------------------------------------

def test_an_unexpected_error_is_one_line_and_status_1(monkeypatch, capsys):
    def boom(args):
        raise RuntimeError("something\nbroke")

    monkeypatch.setattr(cli, "_cmd_solve", boom)
    monkeypatch.delenv("OPTSCALE_DEBUG", raising=False)
    status, err, _ = run_main(capsys, ["solve"])
    assert status == 1 and err == ["optscale solve: internal error: RuntimeError: something; "
                                   "broke (set OPTSCALE_DEBUG=1 for the traceback)"]
    monkeypatch.setenv("OPTSCALE_DEBUG", "1")
    with pytest.raises(RuntimeError, match="broke"):
        main(["solve"])


def test_an_interrupt_is_status_130(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_cmd_solve", interrupted)
    status, err, _ = run_main(capsys, ["solve"])
    assert status == 130 and err == ["optscale solve: interrupted"]


def test_an_interrupted_run_prints_what_it_drew(paths, monkeypatch, capsys):
    import optscale
    from optscale.sampling import RunResult, Sample, _hf

    monkeypatch.setattr(_hf.HFGenerator, "from_pretrained", classmethod(lambda cls, *a, **k: 0))
    monkeypatch.setattr(_hf.HFRewardScorer, "from_pretrained",
                        classmethod(lambda cls, *a, **k: 0))

    def interrupted(questions, *args, **kwargs):
        stop = KeyboardInterrupt()
        stop.partial_results = [RunResult("q", "a", 0, (Sample("a", 3), Sample("b", 4)),
                                          (0.5,), None, stop)]
        raise stop

    monkeypatch.setattr(optscale, "run_batch", interrupted)
    status, err, out = run_main(capsys, ["run", "q", "--model", paths["model"], "--scorer",
                                         paths["model"], "--json"])
    assert status == 130 and err == ["optscale run: interrupted"]
    row = json.loads(out)
    assert row["samples"] == ["a", "b"] and row["tokens"] == 7 and row["scores"] == [0.5]


def test_serve_refuses_a_policy_that_reads_scores_without_a_scorer(capsys, tmp_path):
    from optscale import FixedN, save_policy

    path = str(tmp_path / "policy.json")
    save_policy(FixedN(n_max=4), path)  # Best-of-N reads scores
    status, err, _ = run_main(capsys, [*SERVE, "--policy", path])
    assert_one_line_error(status, err, "--policy/--scorer", "reads scores", "--scorer")
    status, err, _ = run_main(capsys, [*SERVE, "--policy", path, "--policy", path])
    assert_one_line_error(status, err, "--policy", "given twice")


def test_serve_refuses_a_busy_port(capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        status, err, _ = run_main(capsys, [*SERVE, "--host", "127.0.0.1", "--port", str(port)])
    assert_one_line_error(status, err, f"127.0.0.1:{port}", "cannot listen")


def test_help_and_version_exit_0(capsys):
    assert main(["--version"]) == 0
    assert main(["solve", "--help"]) == 0
    assert "header and no rows" in " ".join(capsys.readouterr().out.split())


# -- real processes: no traceback reaches the terminal ------------------------------------------

def test_subprocesses_print_one_line_and_no_traceback(paths):
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    env.pop("OPTSCALE_DEBUG", None)
    argvs = [["solve", "-i", paths["fifo"]],  # hung reading the FIFO before
             ["replay", paths["nonutf8"], "--out", paths["out"]],
             ["diagnose", paths["deep"]],
             ["solve", "-i", paths["hugeint.csv"], "-o", paths["link.csv"]]]
    procs = [subprocess.Popen([sys.executable, "-m", "optscale.cli", *argv], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for argv in argvs]
    for argv, proc in zip(argvs, procs, strict=True):
        try:
            out, err = proc.communicate(timeout=50)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        assert proc.returncode == 2, (argv, err)
        assert len(err.splitlines()) == 1 and "Traceback" not in err, (argv, err)
        assert out == ""
