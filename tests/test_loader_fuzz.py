"""Fuzzing the pool loaders (and the `optscale solve` query reader): whatever the bytes, a loader
returns a Pool or raises PoolFormatError naming the file (and, for text, its line); nothing else
escapes. Three sources of input per format: random bytes, byte-level mutations of a valid file
(truncation, deletion, insertion, overwriting) and structurally valid JSON whose values are
drawn from everything JSON can hold (huge integers, NaN, lone surrogates, deep nesting, wrong
types)."""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optscale.cli import InputError, read_queries
from optscale.replay import Pool, PoolFormatError, load_pool, save_npz

FUZZ = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                max_examples=int(os.environ.get("FUZZ_EXAMPLES", 60)))

_DIR = tempfile.mkdtemp(prefix="optscale-fuzz-")
atexit.register(shutil.rmtree, _DIR, True)


def _path(name: str, data: bytes) -> str:
    path = os.path.join(_DIR, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def check_loads_or_names_the_file(path: str, **kw) -> None:
    try:
        pool = load_pool(path, **kw)
    except PoolFormatError as err:
        message = str(err)
        assert re.match(rf"{re.escape(path)}(:\d+)?: \S", message), message
        assert "\n" not in message and len(message) < 2000, message
    else:
        assert isinstance(pool, Pool) and pool.size >= 1


# -- valid seeds, one per format ---------------------------------------------------------------

JSONL = b"".join(json.dumps(r).encode() + b"\n" for r in [
    {"meta": {"source": "fuzz"}},
    {"id": "q1", "question": "1+1?", "gold": "2", "prior": [0.8, 0.1],
     "samples": [{"score": 0.9, "correct": True, "tokens": 12, "group": 0, "text": "\\boxed{2}"},
                 {"steps": [0.5, 0.7], "correct": False, "tokens": 30, "group": 1}]},
    {"id": 7, "prior": [0.5, 0.2],
     "samples": [{"score": 0.1, "correct": False, "tokens": 3, "group": -1}]},
])
SAL = b"".join(json.dumps(r).encode() + b"\n" for r in [
    {"problem": "p", "answer": "2", "unique_id": "a",
     "completions": ["so \\boxed{2}", "maybe \\boxed{3}"], "scores": [[0.9, 0.8], [0.2]]},
    {"problem": "q", "answer": "5", "unique_id": "b",
     "completions": ["\\boxed{5}"], "scores": [[0.7]]},
])
OVM = b"".join(json.dumps(r).encode() + b"\n" for r in [
    {"idx": 0, "question": "q", "outputs": [
        {"response": "#### 4", "tokens": [1, 2, 3], "label": True, "vscores": [0.1, 0.9]},
        {"response": "#### 5", "tokens": [1], "label": False, "vscores": [0.3]}]},
])
REF = json.dumps([
    {"id": 1, "answer": "2", "score": {"problem": ["p"], "completions": [["\\boxed{2}", "x"]],
                                      "scores": [[0.9, [0.3, 0.4]]],
                                      "completion_tokens": [[10, 20]]}},
]).encode()


def _npz_seed() -> bytes:
    pool = Pool(np.array([[0.9, 0.2], [0.5, np.nan]]), np.array([2, 1]),
                np.array([[0, 1], [0, -1]]), np.array([[True, False], [False, False]]),
                np.array([[10, 20], [5, 0]]), ("a", "b"), np.array([[0.5, 0.1], [0.4, 0.2]]),
                ("q1", "q2"), ("1", "2"), {"simulated": False})
    path = os.path.join(_DIR, "seed.npz")
    save_npz(pool, path)
    with open(path, "rb") as f:
        return f.read()


NPZ = _npz_seed()
SEEDS = {"jsonl": (JSONL, ".jsonl"), "search-and-learn": (SAL, ".jsonl"), "ovm": (OVM, ".jsonl"),
         "optscale-ref": (REF, ".json"), "npz": (NPZ, ".npz")}


def test_the_seeds_are_valid():
    for fmt, (data, ext) in SEEDS.items():
        pool = load_pool(_path(f"seed-{fmt}{ext}", data), format=fmt)
        assert pool.size >= 1


# -- random bytes and byte-level mutations -----------------------------------------------------

@FUZZ
@given(data=st.binary(max_size=400), fmt=st.sampled_from(sorted(SEEDS) + ["auto"]))
def test_random_bytes(data, fmt):
    ext = ".npz" if fmt == "npz" else ".jsonl"
    check_loads_or_names_the_file(_path(f"random{ext}", data), format=fmt)


_EDITS = st.lists(st.tuples(st.sampled_from(["cut", "delete", "insert", "overwrite"]),
                            st.floats(0, 1), st.binary(min_size=1, max_size=6)),
                  min_size=1, max_size=4)
_TOKENS = [b"{", b"}", b"[", b"]", b",", b":", b'"', b"\\", b"-", b"1e999", b"NaN", b"null",
           b"\xff", b"\xc3", b"\x00", b"\n", b"99999999999999999999999", b"\\ud800", b"true"]


def _mutate(data: bytes, edits) -> bytes:
    for op, where, blob in edits:
        i = int(where * len(data))
        if op == "cut":
            data = data[:i]
        elif op == "delete":
            data = data[:i] + data[i + len(blob):]
        elif op == "insert":
            data = data[:i] + blob + data[i:]
        else:
            data = data[:i] + blob + data[i + len(blob):]
    return data


@FUZZ
@given(fmt=st.sampled_from(sorted(SEEDS)), edits=_EDITS, token=st.sampled_from(_TOKENS),
       at=st.floats(0, 1), fmt_auto=st.booleans())
def test_mutated_valid_files(fmt, edits, token, at, fmt_auto):
    data, ext = SEEDS[fmt]
    data = _mutate(data, edits)
    i = int(at * len(data))
    data = data[:i] + token + data[i:]  # one JSON-meaningful token too
    check_loads_or_names_the_file(_path(f"mutated{ext}", data),
                                  format="auto" if fmt_auto else fmt)


# -- structurally valid JSON with hostile values -----------------------------------------------

_ATOMS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.sampled_from([2**63, 2**31, -2, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e308, -0.0, 5e-324]),
    st.text(max_size=12), st.sampled_from(["\ud800", "\\boxed{2}", "#### 3", "", "2"]))
_VALUES = st.recursive(_ATOMS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8)

_KEYS = {
    "jsonl": (["id", "question", "gold", "prior", "samples", "meta"],
              ["score", "steps", "correct", "tokens", "group", "answer", "text"], "samples"),
    "search-and-learn": (["problem", "answer", "unique_id", "completions", "scores"], [], None),
    "ovm": (["idx", "question", "answer", "outputs"],
            ["response", "tokens", "label", "vscores"], "outputs"),
    "optscale-ref": (["id", "answer", "problem", "score"], [], None),
}


@st.composite
def records(draw, fmt):
    top, inner, list_key = _KEYS[fmt]
    record = {k: draw(_VALUES) for k in draw(st.lists(st.sampled_from(top), unique=True))}
    if list_key and draw(st.booleans()):
        record[list_key] = [{k: draw(_VALUES) for k in draw(st.lists(st.sampled_from(inner),
                                                                     unique=True))}
                            for _ in range(draw(st.integers(0, 3)))]
    if fmt == "optscale-ref" and draw(st.booleans()):
        keys = ["problem", "completions", "scores", "completion_tokens"]
        record["score"] = {k: draw(_VALUES) for k in draw(st.lists(st.sampled_from(keys),
                                                                   unique=True))}
    return record


@FUZZ
@given(data=st.data(), fmt=st.sampled_from(sorted(_KEYS)), as_array=st.booleans(),
       depth=st.sampled_from([0, 0, 0, 5000]))
def test_hostile_json_values(data, fmt, as_array, depth):
    recs = data.draw(st.lists(records(fmt), min_size=1, max_size=3))
    if depth:  # nesting beyond what the JSON parser allows, in one field
        recs[0]["id"] = json.loads("[" * 900 + "]" * 900)
    lines = [json.dumps(r, allow_nan=True) for r in recs]
    if depth:
        lines[0] = lines[0].replace("[" * 900, "[" * depth).replace("]" * 900, "]" * depth)
    text = ("[" + ",\n".join(lines) + "]") if as_array else "\n".join(lines)
    check_loads_or_names_the_file(_path("hostile.json", text.encode("utf-8", "surrogatepass")),
                                  format=data.draw(st.sampled_from([fmt, "auto"])))


@FUZZ
@given(arrays=st.dictionaries(
    st.sampled_from(["scores", "lengths", "answers", "correct", "tokens", "prior", "ids",
                     "questions", "gold", "meta"]),
    st.one_of(st.integers(-3, 3).map(np.int64), st.sampled_from([
        np.array([[0.5, 1.0]]), np.array([[np.nan, np.inf]]), np.array([2]), np.array([1]),
        np.array([[0, 1]], np.int32), np.array([[2**40, 0]]), np.array([[-5, 0]]),
        np.array([[True, False]]), np.array(["a"]), np.array(["a", "a"]), np.array("{}"),
        np.array("[" * 5000), np.array('{"x": 1}'), np.array([[1 + 2j, 0]]),
        np.array([1.5]), np.zeros((0, 0)), np.array([["\ud800", "b"]]),
        np.array([2**63], np.uint64)])),
    min_size=1, max_size=10))
def test_hostile_npz_arrays(arrays):
    path = os.path.join(_DIR, "hostile.npz")
    np.savez(path, **arrays)
    check_loads_or_names_the_file(path)


# -- the `optscale solve` reader ---------------------------------------------------------------

_CSV_FIELDS = st.one_of(st.sampled_from(["0.9", "0.1", "nan", "inf", "-inf", "1e999", "2.5",
                                         "99999999999999999999", "", '"', '"a,b"', "1_0",
                                         "\x00", "#c", " 3 "]),
                        st.text(max_size=6))


@FUZZ
@given(header=st.lists(st.sampled_from(["mu", "sigma", "target", "confidence", "k", "n_max",
                                        "low", "id", "mu"]), min_size=1, max_size=7),
       rows=st.lists(st.lists(_CSV_FIELDS, max_size=7), max_size=4), junk=st.binary(max_size=4),
       crlf=st.booleans())
def test_solve_reader(header, rows, junk, crlf):
    end = "\r\n" if crlf else "\n"
    text = end.join([",".join(header)] + [",".join(r) for r in rows]) + end
    path = _path("queries.csv", text.encode("utf-8", "surrogatepass") + junk)
    try:
        arrays, columns, lines = read_queries(path, "probability")
    except InputError as err:
        assert str(err).startswith(path) and "\n" not in str(err), str(err)
    else:
        for name, values in arrays.items():
            assert values.shape == lines.shape, name
            if values.dtype.kind == "i":
                assert np.all(np.abs(values) <= 2**31), name


@pytest.mark.parametrize("data", [b"\xff" * 10, b"PK\x03\x04" + b"\x00" * 40])
def test_solve_reader_npz(data):
    path = _path("queries.npz", data)
    with pytest.raises(InputError, match="not a readable NPZ"):
        read_queries(path, "probability")
