"""Pool readers and grading: the shared example files (skipped when absent), JSONL / NPZ round
trips, the OptScale-reference layout, answer extraction, grading and grouping, and a table of
malformed inputs with the error each must raise."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

from optscale.replay import Pool, _grading, save_npz
from optscale.replay._grading import (
    extract_boxed,
    extract_final_answer,
    grade,
    group_answers,
    normalize_answer,
)
from optscale.replay._readers import PoolFormatError, load_pool, write_jsonl
from tests._data import shared_file

OVM = {"ovm-gsm8k/llama7b_test_2x500.jsonl": (2, 500),
       "ovm-gsm8k/llama7b_train_2x100.jsonl": (2, 100)}
SAL = "search-and-learn-math500/llama3.2-1b_best_of_n_3x256.jsonl"


def _lines(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _write(tmp_path, text, name="pool.jsonl"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _jsonl(*records):
    return "".join(json.dumps(r) + "\n" for r in records)


def assert_same_pool(a: Pool, b: Pool, meta=True):
    np.testing.assert_array_equal(a.scores, b.scores)  # NaN padding compares equal
    for name in ("lengths", "answers", "correct", "tokens", "prior"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            np.testing.assert_array_equal(x, y, err_msg=name)
    for name in ("ids", "questions", "gold"):
        assert getattr(a, name) == getattr(b, name), name
    if meta:
        assert a.meta == b.meta


# -- shared example files ----------------------------------------------------------------------

@pytest.mark.parametrize("relative", sorted(OVM))
def test_ovm_example(relative):
    path = shared_file(relative)
    pool = load_pool(path)
    records = _lines(path)
    assert pool.scores.shape == OVM[relative]
    assert pool.meta == {"source": str(path), "format": "ovm", "aggregate": None}
    assert pool.ids == tuple(str(r["idx"]) for r in records)
    assert pool.questions == tuple(r["question"] for r in records)
    assert pool.gold is None
    for q, record in enumerate(records):
        outputs = record["outputs"]
        assert pool.lengths[q] == len(outputs)
        np.testing.assert_array_equal(pool.correct[q], [o["label"] for o in outputs])
        np.testing.assert_array_equal(pool.scores[q], [o["vscores"][-1] for o in outputs])
        np.testing.assert_array_equal(pool.tokens[q], [len(o["tokens"]) for o in outputs])
        # GSM8K answers: the labelled-correct samples all gave one (equivalent) answer
        assert len(set(pool.answers[q][pool.correct[q]].tolist())) == 1
    assert np.all(pool.answers >= 0)
    # scores are kept as the verifier gave them, slightly outside [0, 1] included
    if "train" in relative:
        assert pool.scores.max() > 1


@pytest.fixture(scope="module")
def sal():
    path = shared_file(SAL)
    return path, _lines(path), load_pool(path)


def test_search_and_learn_example(sal):
    path, records, pool = sal
    assert pool.scores.shape == (3, 256)
    assert pool.tokens is None
    assert pool.meta == {"source": str(path), "format": "search-and-learn", "aggregate": "last"}
    assert pool.ids == tuple(r["unique_id"] for r in records)
    assert pool.gold == tuple(r["answer"] for r in records)
    assert pool.questions == tuple(r["problem"] for r in records)
    rate = pool.correct.mean(axis=1)
    assert np.all((rate > 0) & (rate < 1))
    # hand-checked: the first completion ends "The final answer is:
    # $\boxed{\left(3, \frac{\pi}{2}\right)}$"
    assert extract_boxed(records[0]["completions"][0]) == r"\left(3, \frac{\pi}{2}\right)"
    assert pool.correct[0, 0]
    # the file's own best-of-N prediction: right, wrong (pi^6/90 for p - q), right
    preds = [extract_boxed(r["pred"]) for r in records]
    assert [bool(grade([p], r["answer"])[0]) for p, r in zip(preds, records, strict=True)] == [
        True, False, True]
    # the file's majority answer is our largest answer group where the vote is clear
    for q in (0, 2):
        answers = [extract_boxed(c) for c in records[q]["completions"]]
        codes = pool.answers[q]
        top = np.bincount(codes[codes >= 0]).argmax()
        majority = extract_boxed(records[q]["pred_maj@256"])
        assert any(codes[j] == top and grade([a], majority)[0] for j, a in enumerate(answers))



def test_example_round_trips(sal, tmp_path):
    pool = sal[2]
    write_jsonl(pool, tmp_path / "sal.jsonl")
    assert_same_pool(pool, load_pool(tmp_path / "sal.jsonl"))
    ovm = load_pool(shared_file("ovm-gsm8k/llama7b_train_2x100.jsonl"))
    save_npz(ovm, tmp_path / "ovm.npz")
    assert_same_pool(ovm, load_pool(tmp_path / "ovm.npz"))


@pytest.mark.parametrize("aggregate", ["min", "last", "prod", "mean"])
def test_search_and_learn_aggregates(sal, aggregate):
    path, records, _ = sal
    pool = load_pool(path, aggregate=aggregate)  # grading is cached: the reload is quick
    direct = {"min": min, "last": lambda s: s[-1], "prod": math.prod,
              "mean": lambda s: math.fsum(s) / len(s)}[aggregate]
    for q, record in enumerate(records):
        np.testing.assert_allclose(pool.scores[q], [direct(s) for s in record["scores"]],
                                   rtol=1e-12)
    assert pool.meta["aggregate"] == aggregate
    np.testing.assert_array_equal(pool.correct, sal[2].correct)
    if aggregate == "last":  # the file's agg_scores are the last step scores
        np.testing.assert_array_equal(pool.scores, [r["agg_scores"] for r in records])


# -- round trips -------------------------------------------------------------------------------

def _pool(full=True):
    rng = np.random.default_rng(3)
    lengths = np.array([3, 1, 4])
    scores = rng.uniform(-0.05, 1.05, (3, 4))
    answers = np.array([[5, 2, 5, 0], [-1, 0, 0, 0], [1, 1, 7, -1]])  # not by first appearance
    if not full:
        return Pool(scores, lengths, answers, meta={"simulated": True, "seed": 3})
    return Pool(scores, lengths, answers, correct=rng.random((3, 4)) < 0.5,
                tokens=rng.integers(0, 900, (3, 4)), ids=("a", "b", "q 3"),
                prior=[[0.7, 0.1], [0.2, 0.3], [1.1, 0.05]],
                questions=("What is 1+1?", "", "Ünïcode \u2028 line"),
                gold=("2", "", r"\frac{1}{2}"),
                meta={"simulated": True, "source": "sim", "format": "x", "aggregate": None,
                      "nested": {"a": [1, 2]}})


@pytest.mark.parametrize("full", [True, False])
def test_jsonl_round_trip(tmp_path, full):
    pool = _pool(full)
    path = tmp_path / "pool.jsonl"
    write_jsonl(pool, path)
    back = load_pool(path)
    assert_same_pool(pool, back, meta=False)
    # the meta line keeps the pool's metadata; only missing provenance keys are filled in
    assert back.meta == {"source": str(path), "format": "jsonl", "aggregate": None, **pool.meta}
    assert back.simulated


def test_jsonl_round_trip_with_answers(tmp_path):
    pool = _pool()
    answers = [["2", "3", "2.0"], [None], ["1/2", "0.5", r"\frac12", "7"]]
    write_jsonl(pool, tmp_path / "a.jsonl", answers=answers, texts=[["t"] * 3, ["u"], ["v"] * 4])
    back = load_pool(tmp_path / "a.jsonl")
    np.testing.assert_array_equal(back.answers, pool.answers)  # "group" wins over "answer"
    records = _lines(tmp_path / "a.jsonl")  # the meta line, then one line a question
    assert records[2]["samples"][0] == {"score": pool.scores[1, 0], "group": -1,
                                        "correct": bool(pool.correct[1, 0]),
                                        "tokens": int(pool.tokens[1, 0]),
                                        "answer": None, "text": "u"}
    with pytest.raises(ValueError, match="answers needs one entry per sample"):
        write_jsonl(pool, tmp_path / "b.jsonl", answers=answers[:2])


def test_npz_round_trip(tmp_path):
    pool = _pool()
    save_npz(pool, tmp_path / "pool.npz")
    back = load_pool(tmp_path / "pool.npz")
    assert_same_pool(pool, back)
    bare = Pool(pool.scores, pool.lengths, pool.answers)
    save_npz(bare, tmp_path / "bare.npz")
    back = load_pool(str(tmp_path / "bare.npz"), format="npz")
    assert_same_pool(bare, back, meta=False)
    assert back.meta == {"source": str(tmp_path / "bare.npz"), "format": "npz",
                         "aggregate": None}
    with pytest.raises(ValueError, match="questions= applies to text pool formats"):
        load_pool(tmp_path / "bare.npz", questions=tmp_path / "q.json")


def test_jsonl_reading(tmp_path):
    path = _write(tmp_path, _jsonl(
        {"question": "Half?", "gold": "0.5", "samples": [
            {"steps": [0.9, 0.4, 0.6], "text": r"so \boxed{\frac{1}{2}}."},
            {"score": 0.3, "steps": [0.1], "answer": "1/3"},
            {"score": 1, "answer": 0.5}]},
        {"id": 7, "gold": "Janet sells 9 eggs.\n#### 1,000", "samples": [
            {"steps": [0.2, 0.8], "answer": "1000"}, {"score": 0.5, "text": "no box"}]}))
    pool = load_pool(path, aggregate="min")
    assert pool.ids == ("0", "7")
    assert pool.gold == ("0.5", "1000")  # a GSM8K solution's "#### answer"
    assert pool.questions == ("Half?", "")
    np.testing.assert_allclose(pool.scores[0], [0.4, 0.3, 1.0])
    np.testing.assert_allclose(pool.scores[1, :2], [0.2, 0.5])
    np.testing.assert_array_equal(pool.correct, [[True, False, True], [True, False, False]])
    np.testing.assert_array_equal(pool.answers, [[0, 1, 0], [0, -1, -1]])
    assert pool.tokens is None and pool.prior is None
    assert pool.meta["aggregate"] == "min"
    # no gold anywhere: ungraded; scores only: aggregate not used
    path = _write(tmp_path, _jsonl({"samples": [{"score": 0.5, "answer": "1"}]}), "u.jsonl")
    pool = load_pool(path, format="jsonl")
    assert pool.correct is None and pool.gold is None and pool.meta["aggregate"] is None


def test_reference_format(tmp_path):
    # as generation_and_scoring/prm_scoring.py writes it: a JSON array, batches of one
    records = [{"id": i + 1, "output": "", "n": 3, "score": {
        "problem": [f"Problem {i}"],
        "completions": [[r"\boxed{4}", r"so \boxed{\dfrac{8}{2}}", ""]],
        "scores": [[0.9, 0.5 + i / 10, 0.1]], "last_scores": [[1.0, 1.0, 1.0]],
        "pred": [""], "completion_tokens": [[120, 80, 0]]}} for i in range(2)]
    path = _write(tmp_path, json.dumps(records, indent=4), "scored.json")
    questions = _write(tmp_path, json.dumps([{"problem": "P0", "answer": "4"},
                                             {"question": "P1", "answer": "A.\n#### 5"}]),
                       "questions.json")
    pool = load_pool(path, questions=questions)
    assert pool.meta == {"source": str(path), "format": "optscale-ref", "aggregate": None}
    assert pool.ids == ("1", "2")
    assert pool.questions == ("Problem 0", "Problem 1")
    assert pool.gold == ("4", "5")
    np.testing.assert_allclose(pool.scores, [[0.9, 0.5, 0.1], [0.9, 0.6, 0.1]])
    np.testing.assert_array_equal(pool.tokens, [[120, 80, 0]] * 2)
    np.testing.assert_array_equal(pool.correct, [[True, True, False], [False, False, False]])
    np.testing.assert_array_equal(pool.answers, [[0, 0, -1]] * 2)
    assert load_pool(path).correct is None  # no gold: ungraded
    # unbatched JSON lines with step scores and the gold in the record
    path = _write(tmp_path, _jsonl({"problem": "x", "answer": "4", "score": {
        "completions": [r"\boxed{4}", r"\boxed{5}"], "scores": [[0.2, 0.7], [0.9, 0.8]]}}),
        "flat.jsonl")
    pool = load_pool(path, aggregate="prod")
    np.testing.assert_allclose(pool.scores, [[0.14, 0.72]])
    assert pool.tokens is None and pool.meta["aggregate"] == "prod"
    np.testing.assert_array_equal(pool.correct, [[True, False]])
    short = _write(tmp_path, json.dumps([{"answer": "1"}]), "short.json")
    with pytest.raises(PoolFormatError, match=r"short\.json: 1 questions for the 2 records"):
        load_pool(tmp_path / "scored.json", questions=short)


# -- grading -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    (r"The answer is $\boxed{42}$.", "42"),
    (r"$\boxed{\frac{1}{2}}$ then $\boxed{ \frac{\sqrt{3}}{2} }$", r"\frac{\sqrt{3}}{2}"),
    (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),
    (r"\boxed{x^{2^{3}}} and \fbox{7}", "7"),
    (r"\boxed{\boxed{2}}", r"\boxed{2}"),
    (r"\boxed{5} and a truncated \boxed{\frac{1}{", "5"),
    (r"\boxed {3}", "3"),
    ("no box here, 42", None),
    ("", None),
    (None, None),
])
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("She makes 9 * 2 = <<9*2=18>>18 dollars.\nThe answer is 18", "18"),
    ("48/2 = 24 clips.\n#### 1,072", "1072"),
    ("The answer is: $9.96.", "9.96"),
    ("First 3, then 4, so -12 in all", "-12"),
    (r"Thus \boxed{\frac{3}{4}}, i.e. 0.75", r"\frac{3}{4}"),
    ("The answer is unclear", None),
    (None, None),
])
def test_extract_final_answer(text, expected):
    assert extract_final_answer(text) == expected


def test_grade():
    np.testing.assert_array_equal(grade([r"\frac{1}{2}", "0.5", "1/2", "2", None, "", " "],
                                        r"\frac{1}{2}"),
                                  [True, True, True, False, False, False, False])
    np.testing.assert_array_equal(grade(["2", "3", "2.0", r"\$2"], "2"), [1, 0, 1, 1])
    np.testing.assert_array_equal(grade([r"(3, \frac{\pi}{2})", r"\left(3,\pi\right)"],
                                        r"\left( 3, \frac{\pi}{2} \right)"), [1, 0])
    np.testing.assert_array_equal(grade([r"\sum_{k=1}^\infty \frac{1}{k^2}", "x=5"], "5"),
                                  [False, True])
    assert grade([], "1").shape == (0,)
    assert not grade(["1"], "").any()


def test_group_answers():
    codes = group_answers(["2", r"\frac{1}{2}", None, "0.5", "2.0", "3", "", r"\dfrac12", "3"])
    np.testing.assert_array_equal(codes, [0, 1, -1, 1, 0, 2, -1, 1, 2])
    assert codes.dtype == np.int32
    codes = group_answers([r"\left(3, \frac{\pi}{2}\right)", r"(3,\frac{\pi}{2})",
                           r"(3, \pi)", "(3, 1.5707963)", r"\pi r^2", r"r^2\pi", "p - q", "-q+p"])
    np.testing.assert_array_equal(codes, [0, 0, 1, 0, 2, 2, 3, 3])
    assert group_answers([]).shape == (0,)


# Answers whose pairs take every path of the cheap pre-checks (numbers, floats, symbols,
# tuples, open and closed intervals, percentages, equations, sets, text, unparsable)
TRICKY = ["2", "2.0", "1.9999999", r"\frac{1}{2}", "0.5", r"\frac{\sqrt{2}}{2}", r"\sin(\pi/4)",
          "10\\%", "10", "0.1", "x=2", "p", "P", r"\pi", "3.14159265", "e", r"e^{1}",
          r"(1, 2)", r"[1, 2]", r"\{1, 2\}", "1, 2", r"(2, 1)", r"\text{(C)}", "C", "x^2+1",
          "1+x^2", "x^2 - 1", "(x-1)(x+1)", r"\frac{a}{b", r"10^{30}", r"10^{30}+1"]


def test_shortcuts_agree_with_math_verify():
    from math_verify import verify

    for gold in TRICKY:
        for answer in TRICKY:
            if normalize_answer(gold) == normalize_answer(answer):
                continue
            plain = bool(verify(list(_grading._parse(gold)), list(_grading._parse(answer))))
            assert _grading._equivalent(gold, answer, 5) == plain, (gold, answer)


def test_without_math_verify(monkeypatch):
    monkeypatch.setitem(sys.modules, "math_verify", None)  # import math_verify fails
    monkeypatch.setattr(_grading, "_fallback_warned", False)
    with pytest.raises(ImportError, match=r'pip install "optscale\[replay\]"'):
        grade(["1"], "1")
    with pytest.warns(UserWarning, match="normalized text only"):
        codes = group_answers([r"\left( 1, 2 \right)", "(1,2)", "$(1, 2)$.", "0.5", r"\frac12",
                               None, r"\pi r", r"\pir"])
    np.testing.assert_array_equal(codes, [0, 0, 0, 1, 2, -1, 3, 4])


def test_normalize_answer():
    assert normalize_answer(r"\left( 3 , \dfrac{\pi}{2} \right) .") == r"(3,\frac{\pi}{2})"
    assert normalize_answer(r"\pi r^2") != normalize_answer(r"\pir^2")
    assert normalize_answer(r"x \rightarrow 1") == r"x\rightarrow1"
    assert normalize_answer(r"$1\!000$") == "1000"


# -- malformed input ---------------------------------------------------------------------------

S = {"score": 0.5}
MALFORMED = [
    ('{"samples": [{"score": 0.5}]}\n{"samples": [', r"pool\.jsonl:2: invalid JSON"),
    (_jsonl({"samples": [S]}) + '"abc"\n', r"pool\.jsonl:2: expected a JSON object, got 'abc'"),
    (_jsonl({"samples": [S]}, {"id": "q2"}), r"pool\.jsonl:2: samples: missing required field"),
    (_jsonl({"samples": [S]}) * 6 + _jsonl({"samples": [S, S, S, {"score": "abc"}]}),
     r"pool\.jsonl:7: samples\[3\]\.score: expected a number, got 'abc'"),
    ('{"samples": [{"score": NaN}]}',
     r":1: samples\[0\]\.score: expected a finite number, got nan"),
    ('{"samples": [{"score": 1e999}]}', r"samples\[0\]\.score: expected a finite number, got inf"),
    ('{"samples": [{"score": true}]}', r"samples\[0\]\.score: expected a number, got true"),
    (_jsonl({"samples": []}), r"pool\.jsonl:1: samples: empty list"),
    (_jsonl({"samples": {"score": 1}}), r"samples: expected a list of samples, got an object"),
    (_jsonl({"samples": [{"steps": []}]}), r"samples\[0\]\.steps: empty list"),
    (_jsonl({"samples": [{"steps": [0.5, "x"]}]}),
     r"samples\[0\]\.steps\[1\]: expected a number, got 'x'"),
    (_jsonl({"samples": [{"answer": "1"}]}), r"samples\[0\]: needs a score or steps"),
    (_jsonl({"samples": [{"score": 1, "tokens": 3}, {"score": 1, "tokens": -3}]}),
     r"samples\[1\]\.tokens: expected a non-negative integer, got -3"),
    (_jsonl({"samples": [{"score": 1, "tokens": 2.5}]}),
     r"samples\[0\]\.tokens: expected a non-negative integer, got 2\.5"),
    (_jsonl({"prior": [0.5, 0], "samples": [S]}), r":1: prior\[1\]: sigma0 must be > 0, got 0"),
    (_jsonl({"prior": [0.5], "samples": [S]}), r"prior: expected \[mu0, sigma0\], got a list"),
    (_jsonl({"prior": [0.5, 0.1], "samples": [S]}, {"samples": [S]}),
     r"pool\.jsonl:2: prior: missing, but given on earlier questions"),
    (_jsonl({"samples": [{"score": 1, "correct": True}, S]}),
     r":1: samples\[1\]\.correct: missing, but given on earlier samples \(correct must be on "
     r"every sample of the file or on none\)"),
    (_jsonl({"samples": [S]}, {"samples": [{"score": 1, "correct": False}]}),
     r"pool\.jsonl:2: samples\[0\]\.correct: given, but missing on earlier samples"),
    (_jsonl({"samples": [{"score": 1, "correct": "yes"}]}),
     r"samples\[0\]\.correct: expected true or false, got 'yes'"),
    (_jsonl({"samples": [{"score": 1, "group": 1.5}]}),
     r"samples\[0\]\.group: expected an integer in \[-1, 2147483647\], got 1\.5"),
    (_jsonl({"samples": [{"score": 1, "answer": ["1"]}]}),
     r"samples\[0\]\.answer: expected a string, got a list"),
    (_jsonl({"id": [1], "samples": [S]}), r":1: id: expected a string or a number, got a list"),
    (_jsonl({"meta": [1]}), r":1: meta: expected a JSON object, got a list"),
    ("", r"pool\.jsonl: no records \(empty file\)"),
    ("\n  \n", r"pool\.jsonl: no records \(empty file\)"),
    ("[]", r"pool\.jsonl: no records \(empty file\)"),
    (_jsonl({"foo": 1}), r"pool\.jsonl:1: cannot tell the pool format from the keys \(foo\)"),
    # a JSON array: the line of the record, extra data after it
    ('[\n {"samples": [{"score": 1}]},\n\n {"samples": [{"score": "x"}]}\n]',
     r"pool\.jsonl:4: samples\[0\]\.score: expected a number, got 'x'"),
    ('[{"samples": [{"score": 1}]}] x', r"pool\.jsonl:1: invalid JSON: expected ','"),
    # search-and-learn
    (_jsonl({"completions": ["a", "b"], "scores": [[0.5]], "answer": "1"}),
     r":1: scores: 1 entries for 2 completions"),
    (_jsonl({"completions": ["a", "b"], "scores": [[0.5], []], "answer": "1"}),
     r"scores\[1\]: empty list"),
    (_jsonl({"completions": ["a"], "scores": [[0.5]]}), r":1: answer: missing required field"),
    (_jsonl({"completions": [3], "scores": [[0.5]], "answer": "1"}),
     r"completions\[0\]: expected a string, got 3"),
    # OVM
    (_jsonl({"idx": 0, "outputs": [{"response": "1", "vscores": [0.1, "z"], "label": True}]}),
     r"outputs\[0\]\.vscores\[1\]: expected a number, got 'z'"),
    (_jsonl({"idx": 0, "outputs": [{"response": "1", "vscores": [0.1], "label": 1}]}),
     r"outputs\[0\]\.label: expected true or false, got 1"),
    (_jsonl({"idx": 0, "outputs": [{"response": "1", "label": True}]}),
     r"outputs\[0\]\.vscores: missing required field"),
    (_jsonl({"idx": 0, "outputs": []}), r"outputs: empty list"),
    # OptScale reference
    (_jsonl({"score": {"completions": [["a", "b"]], "scores": [[0.5, None]]}}),
     r"score\.scores\[0\]\[1\]: expected a number, got null"),
    (_jsonl({"score": {"completions": [["a"]], "scores": [0.5]}}),
     r"score\.scores\[0\]: expected a list of scores, got 0\.5"),
    (_jsonl({"score": {"completions": [["a"]], "scores": [[0.5], [0.4]]}}),
     r"score\.scores: expected a batch of one question \(\[\[\.\.\.\]\]\)"),
    (_jsonl({"score": {"completions": ["a"], "scores": [0.5], "completion_tokens": [-1]}}),
     r"score\.completion_tokens\[0\]: expected a non-negative integer, got -1"),
    (_jsonl({"score": {"completions": ["a"], "scores": [0.5], "completion_tokens": [1]}},
            {"score": {"completions": ["a"], "scores": [0.5]}}),
     r":2: score\.completion_tokens: missing, but given on earlier questions"),
    # integers beyond their storage, floats beyond float, deep nesting, bad bytes, repeated ids
    (_jsonl({"samples": [{"score": 1, "group": 0}]}, {"samples": [{"score": 1, "group": 2**31}]}),
     r":2: samples\[0\]\.group: expected an integer in \[-1, 2147483647\], got 2147483648"),
    (_jsonl({"samples": [{"score": 1, "tokens": 2**63}]}),
     r":1: samples\[0\]\.tokens: integer out of range \(at most 9223372036854775807\)"),
    (_jsonl({"score": {"completions": ["a"], "scores": [0.5], "completion_tokens": [10**40]}}),
     r":1: score\.completion_tokens\[0\]: integer out of range"),
    ('{"prior": [' + "9" * 400 + ', 1], "samples": [{"score": 1}]}',
     r":1: prior\[0\]: number too large"),
    ('{"samples": [{"score": ' + "9" * 5000 + '}]}', r":1: invalid JSON: Exceeds the limit"),
    (_jsonl({"samples": [S]}) + '{"samples": ' + "[" * 100_000 + "\n",
     r"pool\.jsonl:2: invalid JSON: nested too deeply"),
    ("[\n" + "[" * 100_000, r"pool\.jsonl:2: invalid JSON: nested too deeply"),
    (_jsonl({"id": "a", "samples": [S]}, {"id": "b", "samples": [S]}, {"id": "a", "samples": [S]}),
     r"pool\.jsonl:3: id: question id 'a' is already used at line 1"),
    (_jsonl({"idx": 4, "outputs": [{"vscores": [0.5]}]}) * 2,
     r":2: idx: question id '4' is already used at line 1"),
    (_jsonl({"samples": [{"score": 1, "text": "\ud800"}]}),
     r":1: samples\[0\]\.text: not valid Unicode text"),
]


@pytest.mark.parametrize(("text", "message"), MALFORMED,
                         ids=[f"malformed{i}" for i in range(len(MALFORMED))])
def test_malformed(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(PoolFormatError, match=message) as info:
        load_pool(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_bytes_that_are_not_utf8_name_their_line(tmp_path):
    path = tmp_path / "pool.jsonl"
    path.write_bytes(_jsonl({"samples": [S]}).encode() + b'{"id": "\xff"}\n')
    with pytest.raises(PoolFormatError, match=r"pool\.jsonl:2: not UTF-8 text \(byte 0xff"):
        load_pool(path)
    path.write_bytes(b"\xef\xbb\xbf" + _jsonl({"samples": [S]}).encode())  # a BOM is fine
    assert load_pool(path).size == 1


def test_files_that_are_not_regular_are_refused_before_opening(tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe.jsonl")  # opening it would block until a writer came
    for target in (tmp_path / "pipe.jsonl", tmp_path, os.devnull):
        with pytest.raises(PoolFormatError, match="not a regular file"):
            load_pool(target)
    with pytest.raises(PoolFormatError, match="not a regular file"):
        load_pool(tmp_path / "pipe.jsonl", format="npz")
    good = _write(tmp_path, _jsonl({"samples": [S]}))
    with pytest.raises(PoolFormatError, match="pipe.jsonl: is a named pipe"):
        load_pool(good, questions=tmp_path / "pipe.jsonl")


@pytest.mark.parametrize("arrays,message", [
    ({"lengths": [1], "answers": [[0]]}, "missing array 'scores'"),
    ({"scores": [[0.5]], "lengths": [1], "answers": [[2**40]]}, "array 'answers' at \\(0, 0\\)"),
    ({"scores": [[0.5]], "lengths": [1.5], "answers": [[0]]}, "array 'lengths'"),
    ({"scores": [[0.5]], "lengths": [1], "answers": [[0]], "tokens": [[-1]]}, "array 'tokens'"),
    ({"scores": [[0.5]], "lengths": [1], "answers": [[0]], "correct": [[2]]}, "array 'correct'"),
    ({"scores": [["a"]], "lengths": [1], "answers": [[0]]}, "array 'scores' has dtype"),
    ({"scores": [[0.5]], "lengths": [3], "answers": [[0]]}, "lengths must have shape"),
    ({"scores": [[0.5]], "lengths": [1], "answers": [[0]], "meta": "[1"}, "'meta': invalid JSON"),
    ({"scores": [[0.5]], "lengths": [1], "answers": [[0]], "meta": "[1]"}, "JSON object"),
    ({"scores": np.zeros((0, 1)), "lengths": np.zeros(0, int), "answers": np.zeros((0, 1), int)},
     "no questions"),
])
def test_malformed_npz(tmp_path, arrays, message):
    path = tmp_path / "pool.npz"
    np.savez(path, **{k: np.asarray(v) for k, v in arrays.items()})
    with pytest.raises(PoolFormatError, match=message):
        load_pool(path)


def test_npz_archives_that_cannot_be_read(tmp_path):
    good = tmp_path / "good.npz"
    save_npz(Pool(np.ones((2, 2)), [2, 2], np.zeros((2, 2)), ids=("a", "b")), str(good))
    data = good.read_bytes()
    for name, blob, message in (("truncated.npz", data[:-30], "not a readable NPZ"),
                                ("half.npz", data[: len(data) // 2], "not a readable NPZ"),
                                ("text.npz", b"hello", "not a readable NPZ")):
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(PoolFormatError, match=message):
            load_pool(tmp_path / name)
    np.savez(tmp_path / "object.npz", scores=np.array([[0.5, None]], dtype=object),
             lengths=[2], answers=[[0, 0]])
    with pytest.raises(PoolFormatError, match="'scores' holds Python objects"):
        load_pool(tmp_path / "object.npz")
    np.savez(tmp_path / "dup.npz", scores=np.ones((2, 1)), lengths=[1, 1],
             answers=np.zeros((2, 1), int), ids=np.array(["a", "a"]))
    with pytest.raises(PoolFormatError, match="question id 'a' appears twice \\(rows 0 and 1\\)"):
        load_pool(tmp_path / "dup.npz")
    # whole numbers stored as floats still load
    np.savez(tmp_path / "floats.npz", scores=np.ones((1, 2)), lengths=np.array([2.0]),
             answers=np.zeros((1, 2)), correct=np.array([[1.0, 0.0]]))
    pool = load_pool(tmp_path / "floats.npz")
    assert pool.lengths.tolist() == [2] and pool.correct.tolist() == [[True, False]]


def test_bad_arguments(tmp_path):
    path = _write(tmp_path, _jsonl({"samples": [S]}))
    with pytest.raises(ValueError, match="aggregate must be one of min, last, prod, mean; "
                                         "got 'max'"):
        load_pool(path, aggregate="max")
    with pytest.raises(ValueError, match="format must be one of auto, jsonl, npz"):
        load_pool(path, format="csv")
    with pytest.raises(FileNotFoundError):
        load_pool(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match="has no samples"):
        write_jsonl(Pool(np.zeros((1, 1)), [0], np.zeros((1, 1))), tmp_path / "e.jsonl")


def test_grading_off_the_main_thread():
    # math-verify's signal-based timeouts only work in the main thread: elsewhere they are off
    import threading

    results = {}

    def work():
        try:
            results["grade"] = grade([r"\frac{3}{6}", "0.25"], "0.5").tolist()
            results["group"] = group_answers(["7/2", "3.5", r"\frac{14}{4}", "4"]).tolist()
        except Exception as err:  # reported below, in the main thread
            results["error"] = err

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert results == {"grade": [True, False], "group": [0, 0, 0, 1]}
