"""Reading completion pools: one entry point, :func:`load_pool`, for five formats.

**optscale JSONL** (``format="jsonl"``; written by :func:`write_jsonl`). One question per line::

    {"id": "q1", "question": "...", "gold": "42", "prior": [0.8, 0.1],
     "samples": [{"score": 0.93, "correct": true, "tokens": 512, "answer": "42",
                  "text": "...", "steps": [0.9, 0.95]}, ...]}

- ``samples`` (required): a non-empty list; every sample needs ``score`` (a finite number, or
  null for a sample that was drawn but not scored: NaN in the pool, which the policies and
  replay treat as unscored) or ``steps`` (a non-empty list of step scores, aggregated into the
  score by ``aggregate``; a numeric ``score`` wins when both are given).
- ``id`` (default: the question's 0-based position), ``question``, ``gold`` (the final answer;
  a GSM8K solution ending in ``#### 42`` counts as ``42``) and ``prior`` (``[mu0, sigma0]``,
  sigma0 > 0, on every question or none) are optional.
- Per sample, optional: ``correct`` (true/false), ``tokens`` (output tokens, an integer >= 0),
  ``answer`` (the final answer; null for none), ``text`` (the completion; its last ``\\boxed{}``
  is the answer when ``answer`` is absent) and ``group`` (an integer answer code: samples of a
  question with equal ``group`` gave equivalent answers, -1 none; it overrides ``answer``).
  ``correct``, ``tokens`` and ``group`` are each on every sample of the file or on none.
- Without ``correct``, samples are graded against ``gold`` when every question has one.
- An optional first line ``{"meta": {...}}`` carries the pool's metadata (write_jsonl writes it,
  so a simulated pool stays labelled as such).

**search-and-learn** (``best_of_n_completions.jsonl``): per line ``problem``, ``answer`` (gold,
required), ``unique_id`` (the id), ``completions`` (texts) and ``scores`` (per completion, a
list of step PRM scores, aggregated by ``aggregate``). The answer is each completion's last
``\\boxed{}``; correctness is graded against ``answer``; no token counts.

**OVM** (``*_samples.jsonl``): per line ``idx``, ``question`` and ``outputs``, a list of
``{response, tokens, label, vscores}``: score = the last element of ``vscores`` (the outcome
value; values slightly outside [0, 1] are kept), correct = ``label``, tokens = ``len(tokens)``,
answer = the GSM8K-style final answer of ``response`` (``#### 42``, "The answer is 42" or the
last number).

**optscale-ref** (the OptScale reference's scored pools, ``generation_and_scoring/
prm_scoring.py`` of github.com/Albertwyk/OptScale, arXiv 2506.22376): a JSON array (or JSON
lines) of ``{"id": 1, "score": {"problem": [p], "completions": [[...]], "scores": [[...]],
"completion_tokens": [[...]], ...}}``. As the reference writes them, the ``score`` lists hold one
batch of one question (``[[...]]``); unwrapped lists are accepted too. ``scores`` entries are
numbers (the reference's: the mean of the step rewards of Qwen2.5-Math-PRM, taken as they are)
or lists of step scores (aggregated). The reference keeps the gold answers in a separate
benchmark file (``data/test_prompts/*.json``, matched by position): pass it as ``questions=``;
a record's own ``answer`` is used otherwise. Answers are each completion's last ``\\boxed{}``.

**npz**: the columnar form of :func:`optscale.replay.save_npz`.

The format is told by the extension (``.npz``) or by the keys of the first record; any text
format may also be a JSON array of records. ``aggregate`` (``min``, ``last``, ``prod`` or
``mean``) applies only to lists of step scores. The pool's ``meta`` is ``{"source": path,
"format": ..., "aggregate": ...}`` (aggregate None where no step scores were aggregated); a file
that carries its own metadata (NPZ, or JSONL written by write_jsonl) keeps it, these three keys
filled in only where missing. Malformed input raises :class:`PoolFormatError` (a ValueError)
naming the file, the 1-based line and the field: invalid JSON or UTF-8, nesting deeper than
the JSON parser allows, numbers out of range (``tokens`` beyond int64, ``group`` beyond int32, a
number too large for a float), a question id given twice (both lines named), a file that is not
a regular file (a FIFO, a folder, a device: refused before it is opened).
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import math
import os
import re
from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np

from optscale.replay._grading import extract_boxed, extract_final_answer, grade, group_answers
from optscale.replay._pool import (
    Pool,
    PoolFormatError,
    check_regular_file,
    duplicate_id,
    load_npz,
)

__all__ = ["AGGREGATES", "FORMATS", "PoolFormatError", "load_pool", "write_jsonl"]

AGGREGATES = ("min", "last", "prod", "mean")
FORMATS = ("auto", "jsonl", "npz", "search-and-learn", "ovm", "optscale-ref")
INT64_MAX = 2**63 - 1  # tokens are stored as int64
INT32_MAX = 2**31 - 1  # answer codes (group) as int32


# -- records -----------------------------------------------------------------------------------

class _Where:
    """A record's place in its file, for error messages."""

    def __init__(self, path: str, line: int):
        self.path, self.line = path, line

    def fail(self, field: str | None, problem: str) -> NoReturn:
        field_part = f"{field}: " if field else ""
        raise PoolFormatError(f"{self.path}:{self.line}: {field_part}{problem}")


_WS = re.compile(r"\s*")


def _read_text(path: str) -> str:
    """The file as text: a regular file, UTF-8 (a BOM is skipped); bad bytes name their line."""
    check_regular_file(path)
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - data.rfind(b"\n", 0, err.start)
        raise PoolFormatError(f"{path}:{line}: not UTF-8 text (byte {data[err.start]:#04x} at "
                              f"byte {column} of the line)") from None


def _json_problem(err: Exception) -> str:
    if isinstance(err, json.JSONDecodeError):
        return f"invalid JSON: {err.msg} (column {err.colno})"
    if isinstance(err, RecursionError):
        return "invalid JSON: nested too deeply"
    return f"invalid JSON: {str(err)[:200]}"  # e.g. an integer of more than 4300 digits


def _records(path: str) -> list[tuple[int, Any]]:
    """(1-based line, decoded record) of every record of a JSON-lines file or a JSON array."""
    text = _read_text(path)
    start = _WS.match(text).end()
    records: list[tuple[int, Any]] = []
    if text.startswith("[", start):
        records = _array_records(path, text, start)
    else:
        # split on "\n" only: str.splitlines would also break at U+2028 inside a JSON string
        for number, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                records.append((number, json.loads(line)))
            except (ValueError, RecursionError) as err:
                raise PoolFormatError(f"{path}:{number}: {_json_problem(err)}") from None
    if not records:
        raise PoolFormatError(f"{path}: no records (empty file)")
    return records


def _array_records(path: str, text: str, start: int) -> list[tuple[int, Any]]:
    decoder = json.JSONDecoder()
    records = []
    pos = _WS.match(text, start + 1).end()
    line, counted = 1, 0
    if text.startswith("]", pos):
        return records
    while True:
        try:
            record, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            raise PoolFormatError(f"{path}:{err.lineno}: {_json_problem(err)}") from None
        except (ValueError, RecursionError) as err:
            lineno = line + text.count("\n", counted, pos)
            raise PoolFormatError(f"{path}:{lineno}: {_json_problem(err)}") from None
        line += text.count("\n", counted, pos)
        counted = pos
        records.append((line, record))
        pos = _WS.match(text, end).end()
        if text.startswith(",", pos):
            pos = _WS.match(text, pos + 1).end()
        elif text.startswith("]", pos) and _WS.match(text, pos + 1).end() == len(text):
            return records
        else:
            line += text.count("\n", counted, pos)
            counted = pos
            raise PoolFormatError(f"{path}:{line}: invalid JSON: expected ',' or the closing "
                                  "']' of the array of records")


# -- field checks ------------------------------------------------------------------------------

def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str) and len(value) > 40:
        return repr(value[:40] + "...")
    if isinstance(value, int) and value.bit_length() > 128:
        return f"an integer of {len(str(abs(value)))} digits"
    return repr(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(at: _Where, field: str, value: Any) -> float:
    if not _is_number(value):
        at.fail(field, f"expected a number, got {_show(value)}")
    try:
        value = float(value)
    except OverflowError:
        at.fail(field, "number too large (beyond the float range)")
    if not math.isfinite(value):
        at.fail(field, f"expected a finite number, got {value}")
    return value


def _flag(at: _Where, field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        at.fail(field, f"expected true or false, got {_show(value)}")
    return value


def _count(at: _Where, field: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        at.fail(field, f"expected a non-negative integer, got {_show(value)}")
    if value < 0:
        at.fail(field, f"expected a non-negative integer, got {value}")
    if value > INT64_MAX:
        at.fail(field, f"integer out of range (at most {INT64_MAX}), got {_show(value)}")
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")


def _unicode(at: _Where, field: str, value: str) -> str:
    """``value`` if it is valid Unicode: JSON's ``\\ud800`` escapes can make a lone surrogate,
    which no UTF-8 output (a report, the terminal) can hold."""
    if _SURROGATE.search(value):
        at.fail(field, "not valid Unicode text (a lone surrogate, such as the escape \\ud800)")
    return value


def _text(at: _Where, field: str, value: Any, numbers: bool = False) -> str | None:
    """A string (None stays None; numbers become text where ``numbers``)."""
    if value is None:
        return value
    if isinstance(value, str):
        return _unicode(at, field, value)
    if numbers and _is_number(value):
        return str(value)
    at.fail(field, f"expected a string, got {_show(value)}")


def _list(at: _Where, field: str, value: Any, what: str) -> list:
    if not isinstance(value, list):
        at.fail(field, f"expected a list of {what}, got {_show(value)}")
    if not value:
        at.fail(field, f"empty list: expected at least one of {what}")
    return value


def _object(at: _Where, field: str | None, value: Any) -> dict:
    if not isinstance(value, dict):
        at.fail(field, f"expected a JSON object, got {_show(value)}")
    return value


def _required(at: _Where, record: dict, key: str, prefix: str = "") -> Any:
    if key not in record:
        at.fail(prefix + key, "missing required field")
    return record[key]


def _aggregate(steps: list[float], how: str) -> float:
    if how == "last":
        return steps[-1]
    if how == "min":
        return min(steps)
    if how == "mean":
        return math.fsum(steps) / len(steps)
    return math.prod(steps)


class _Score:
    """Scores from numbers or step lists; remembers whether any step list was aggregated."""

    def __init__(self, aggregate: str):
        self.aggregate = aggregate
        self.used = False
        self.unscored: tuple[_Where, str] | None = None  # the first "score": null

    def steps(self, at: _Where, field: str, value: Any) -> float:
        steps = _list(at, field, value, "step scores")
        values = [_number(at, f"{field}[{k}]", v) for k, v in enumerate(steps)]
        self.used = True
        try:
            score = _aggregate(values, self.aggregate)
        except OverflowError:  # math.fsum of huge values
            score = math.inf
        if not math.isfinite(score):
            at.fail(field, f"the {self.aggregate} of the step scores is not finite")
        return score

    def either(self, at: _Where, field: str, value: Any) -> float:
        """A number, or a list of step scores."""
        if isinstance(value, list):
            return self.steps(at, field, value)
        return _number(at, field, value)


class _AllOrNone:
    """Checks that an optional field is on every sample (question) of the file or on none."""

    def __init__(self, name: str, unit: str = "sample"):
        self.name, self.unit = name, unit
        self.present: bool | None = None

    def check(self, at: _Where, field: str, present: bool) -> bool:
        if self.present is None:
            self.present = present
        elif present != self.present:
            state = "missing, but given" if self.present else "given, but missing"
            at.fail(field, f"{state} on earlier {self.unit}s ({self.name} must be on every "
                           f"{self.unit} of the file or on none)")
        return present


def _gold_answer(gold: str | None) -> str | None:
    """The final answer of a gold field; a GSM8K solution ``... #### 42`` gives ``42``."""
    if gold is not None and "####" in gold:
        return gold.rsplit("####", 1)[1].strip().replace(",", "")
    return gold


@dataclasses.dataclass
class _Question:
    id: str
    scores: list[float]
    line: int = 0  # of its record, for errors
    id_field: str = "id"
    answers: list[str | None] | None = None  # final-answer text, grouped on assembly
    groups: list[int] | None = None  # answer codes given by the file
    correct: list[bool] | None = None
    tokens: list[int] | None = None
    question: str | None = None
    gold: str | None = None
    prior: tuple[float, float] | None = None


def _assemble(questions: list[_Question], meta: dict[str, Any]) -> Pool:
    """Pad the per-question columns, group answers and grade where needed."""
    q = len(questions)
    m = max(len(x.scores) for x in questions)
    scores = np.full((q, m), np.nan)
    answers = np.full((q, m), -1, np.int32)
    lengths = np.array([len(x.scores) for x in questions], np.int64)
    have_correct = all(x.correct is not None for x in questions)
    graded = not have_correct and all(x.gold and x.answers is not None for x in questions)
    correct = np.zeros((q, m), bool) if have_correct or graded else None
    tokens = np.zeros((q, m), np.int64) if questions[0].tokens is not None else None
    for i, x in enumerate(questions):
        n = len(x.scores)
        scores[i, :n] = x.scores
        if x.groups is not None:
            answers[i, :n] = x.groups
        elif x.answers is not None:
            answers[i, :n] = group_answers(x.answers)
        if correct is not None:
            correct[i, :n] = x.correct if have_correct else grade(x.answers, x.gold)
        if tokens is not None:
            tokens[i, :n] = x.tokens
    prior = np.array([x.prior for x in questions]) if questions[0].prior is not None else None
    texts = None
    if any(x.question is not None for x in questions):
        texts = tuple(x.question or "" for x in questions)
    golds = None
    if any(x.gold is not None for x in questions):
        golds = tuple(x.gold or "" for x in questions)
    return Pool(scores, lengths, answers, correct, tokens, tuple(x.id for x in questions), prior,
                texts, golds, meta)


def _ident(at: _Where, value: Any, default: int) -> str:
    if value is None:
        return str(default)
    if isinstance(value, str):
        return _unicode(at, "id", value)
    if _is_number(value):
        return str(value)
    at.fail("id", f"expected a string or a number, got {_show(value)}")


# -- formats -----------------------------------------------------------------------------------

def _read_jsonl(path: str, records: list[tuple[int, Any]], score: _Score
                ) -> tuple[list[_Question], dict[str, Any]]:
    meta: dict[str, Any] = {}
    line, first = records[0]
    if isinstance(first, dict) and "meta" in first and "samples" not in first:
        meta = dict(_object(_Where(path, line), "meta", first["meta"]))
        records = records[1:]
        if not records:
            raise PoolFormatError(f"{path}: no questions after the meta line")
    has = {name: _AllOrNone(name) for name in ("correct", "tokens", "group")}
    has_prior = _AllOrNone("prior", "question")
    any_answer = False  # answer codes alone (no answer or text anywhere) cannot be graded
    questions = []
    for index, (line, record) in enumerate(records):
        at = _Where(path, line)
        record = _object(at, None, record)
        samples = _list(at, "samples", _required(at, record, "samples"), "samples")
        x = _Question(_ident(at, record.get("id"), index), [], line,
                      question=_text(at, "question", record.get("question")),
                      gold=_gold_answer(_text(at, "gold", record.get("gold"), numbers=True)))
        if has_prior.check(at, "prior", record.get("prior") is not None):
            prior = record["prior"]
            if not isinstance(prior, list) or len(prior) != 2:
                at.fail("prior", f"expected [mu0, sigma0], got {_show(prior)}")
            mu0, sigma0 = (_number(at, f"prior[{k}]", v) for k, v in enumerate(prior))
            if sigma0 <= 0:
                at.fail("prior[1]", f"sigma0 must be > 0, got {sigma0}")
            x.prior = (mu0, sigma0)
        answers, groups, correct, tokens = [], [], [], []
        for j, sample in enumerate(samples):
            field = f"samples[{j}]"
            sample = _object(at, field, sample)
            if "score" not in sample and "steps" not in sample:
                at.fail(field, "needs a score or steps")
            if "steps" in sample:  # checked even where a score is given
                value = score.steps(at, f"{field}.steps", sample["steps"])
            if "score" in sample and sample["score"] is None:
                if "steps" not in sample:
                    value = math.nan  # drawn but not scored (a request log of optscale serve)
                    score.unscored = score.unscored or (at, f"{field}.score")
            elif "score" in sample:
                value = _number(at, f"{field}.score", sample["score"])
            x.scores.append(value)
            if has["correct"].check(at, f"{field}.correct", "correct" in sample):
                correct.append(_flag(at, f"{field}.correct", sample["correct"]))
            if has["tokens"].check(at, f"{field}.tokens", "tokens" in sample):
                tokens.append(_count(at, f"{field}.tokens", sample["tokens"]))
            if has["group"].check(at, f"{field}.group", "group" in sample):
                code = sample["group"]
                if code is None:
                    code = -1
                if not isinstance(code, int) or isinstance(code, bool) or \
                        not -1 <= code <= INT32_MAX:
                    at.fail(f"{field}.group", f"expected an integer in [-1, {INT32_MAX}], got "
                                              f"{_show(code)}")
                groups.append(code)
            text = _text(at, f"{field}.text", sample.get("text"))
            any_answer = any_answer or "answer" in sample or "text" in sample
            if "answer" in sample:
                answers.append(_text(at, f"{field}.answer", sample["answer"], numbers=True))
            else:
                answers.append(extract_boxed(text))
        x.answers = answers
        x.groups = groups if has["group"].present else None
        x.correct = correct if has["correct"].present else None
        x.tokens = tokens if has["tokens"].present else None
        questions.append(x)
    if not any_answer:
        for x in questions:
            x.answers = None
    return questions, meta


def _read_search_and_learn(path: str, records: list[tuple[int, Any]], score: _Score
                           ) -> list[_Question]:
    questions = []
    for index, (line, record) in enumerate(records):
        at = _Where(path, line)
        record = _object(at, None, record)
        completions = _list(at, "completions", _required(at, record, "completions"),
                            "completions")
        steps = _list(at, "scores", _required(at, record, "scores"), "per-completion scores")
        if len(steps) != len(completions):
            at.fail("scores", f"{len(steps)} entries for {len(completions)} completions")
        gold = _text(at, "answer", _required(at, record, "answer"), numbers=True)
        texts = [_text(at, f"completions[{j}]", c) for j, c in enumerate(completions)]
        questions.append(_Question(
            _ident(at, record.get("unique_id"), index),
            [score.either(at, f"scores[{j}]", s) for j, s in enumerate(steps)], line, "unique_id",
            answers=[extract_boxed(t) for t in texts],
            question=_text(at, "problem", record.get("problem")), gold=_gold_answer(gold)))
    return questions


def _read_ovm(path: str, records: list[tuple[int, Any]]) -> list[_Question]:
    has_label, has_tokens = _AllOrNone("label"), _AllOrNone("tokens")
    questions = []
    for index, (line, record) in enumerate(records):
        at = _Where(path, line)
        record = _object(at, None, record)
        outputs = _list(at, "outputs", _required(at, record, "outputs"), "outputs")
        x = _Question(_ident(at, record.get("idx"), index), [], line, "idx", answers=[],
                      question=_text(at, "question", record.get("question")),
                      gold=_gold_answer(_text(at, "answer", record.get("answer"),
                                              numbers=True)))
        labels, tokens = [], []
        for j, output in enumerate(outputs):
            field = f"outputs[{j}]"
            output = _object(at, field, output)
            vscores = _list(at, f"{field}.vscores", _required(at, output, "vscores", field + "."),
                            "verifier values")
            # the outcome score: the verifier's value after the last token
            x.scores.append(_number(at, f"{field}.vscores[{len(vscores) - 1}]", vscores[-1]))
            x.answers.append(extract_final_answer(
                _text(at, f"{field}.response", output.get("response"))))
            if has_label.check(at, f"{field}.label", "label" in output):
                labels.append(_flag(at, f"{field}.label", output["label"]))
            if has_tokens.check(at, f"{field}.tokens", "tokens" in output):
                ids = output["tokens"]
                # token ids as OVM stores them; a plain count is accepted too
                tokens.append(len(ids) if isinstance(ids, list) else
                              _count(at, f"{field}.tokens", ids))
        x.correct = labels if has_label.present else None
        x.tokens = tokens if has_tokens.present else None
        questions.append(x)
    return questions


def _unwrap(at: _Where, block: dict, key: str, batched: bool, required: bool = True) -> Any:
    """``score[key]`` with the reference's batch-of-one list removed."""
    if key not in block:
        if required:
            at.fail(f"score.{key}", "missing required field")
        return None
    value = block[key]
    if batched:
        if not isinstance(value, list) or len(value) != 1:
            at.fail(f"score.{key}", "expected a batch of one question ([[...]]) like "
                                    f"score.completions, got {_show(value)}")
        value = value[0]
    return value


def _read_reference(path: str, records: list[tuple[int, Any]], score: _Score
                    ) -> list[_Question]:
    has_tokens = _AllOrNone("score.completion_tokens", "question")
    questions = []
    for index, (line, record) in enumerate(records):
        at = _Where(path, line)
        record = _object(at, None, record)
        block = _object(at, "score", _required(at, record, "score"))
        raw = _required(at, block, "completions", "score.")
        batched = isinstance(raw, list) and len(raw) > 0 and isinstance(raw[0], list)
        inner = "[0]" if batched else ""
        completions = _list(at, f"score.completions{inner}",
                            _unwrap(at, block, "completions", batched), "completions")
        scores = _list(at, f"score.scores{inner}", _unwrap(at, block, "scores", batched),
                       "scores")
        if len(scores) != len(completions):
            at.fail(f"score.scores{inner}", f"{len(scores)} entries for {len(completions)} "
                                            "completions")
        texts = [_text(at, f"score.completions{inner}[{j}]", c)
                 for j, c in enumerate(completions)]
        problem = record.get("problem", record.get("question"))
        if problem is None and "problem" in block:
            problem = _unwrap(at, block, "problem", batched)
        x = _Question(_ident(at, record.get("id", record.get("unique_id")), index),
                      [score.either(at, f"score.scores{inner}[{j}]", s)
                       for j, s in enumerate(scores)], line,
                      answers=[extract_boxed(t) for t in texts],
                      question=_text(at, "problem", problem),
                      gold=_gold_answer(_text(at, "answer", record.get("answer"), numbers=True)))
        counts = _unwrap(at, block, "completion_tokens", batched, required=False)
        if has_tokens.check(at, "score.completion_tokens", counts is not None):
            field = f"score.completion_tokens{inner}"
            counts = _list(at, field, counts, "token counts")
            if len(counts) != len(completions):
                at.fail(field, f"{len(counts)} entries for {len(completions)} completions")
            x.tokens = [_count(at, f"{field}[{j}]", c) for j, c in enumerate(counts)]
        questions.append(x)
    return questions


def _add_questions(path: str, questions: list[_Question], source: str) -> None:
    """Gold answers (and question texts) from a benchmark file, matched by position."""
    entries = _records(source)
    if len(entries) != len(questions):
        raise PoolFormatError(f"{source}: {len(entries)} questions for the {len(questions)} "
                              f"records of {path} (they are matched by position)")
    for (line, entry), x in zip(entries, questions, strict=True):
        at = _Where(source, line)
        entry = _object(at, None, entry)
        if x.gold is None:
            x.gold = _gold_answer(_text(at, "answer", _required(at, entry, "answer"),
                                        numbers=True))
        if x.question is None:
            x.question = _text(at, "problem", entry.get("problem", entry.get("question")))


def _detect(path: str, records: list[tuple[int, Any]]) -> str:
    line, first = records[0]
    at = _Where(path, line)
    first = _object(at, None, first)
    if "samples" in first or "meta" in first:
        return "jsonl"
    if "outputs" in first:
        return "ovm"
    if isinstance(first.get("score"), dict):
        return "optscale-ref"
    if "completions" in first:
        return "search-and-learn"
    keys = ", ".join(sorted(first)[:8])
    at.fail(None, f"cannot tell the pool format from the keys ({keys}): expected 'samples' "
                  "(optscale JSONL), 'completions' and 'scores' (search-and-learn), 'outputs' "
                  "(OVM) or 'score' (OptScale reference); pass format=")


def _fill_meta(meta: dict[str, Any], source: str, fmt: str, aggregate: str | None
               ) -> dict[str, Any]:
    meta = dict(meta)
    meta.setdefault("source", source)
    meta.setdefault("format", fmt)
    meta.setdefault("aggregate", aggregate)
    return meta


def load_pool(path: str | os.PathLike, format: str = "auto", aggregate: str = "last", *,
              questions: str | os.PathLike | None = None) -> Pool:
    """Read a completion pool (formats: see the module docstring).

    Args:
        path: the pool file.
        format: ``auto`` (by extension and the first record's keys), ``jsonl``, ``npz``,
            ``search-and-learn``, ``ovm`` or ``optscale-ref``.
        aggregate: how a list of step scores becomes a score: ``min``, ``last``, ``prod`` or
            ``mean``.
        questions: a benchmark file (JSON array or lines of ``{"problem"|"question", "answer"}``)
            giving gold answers, by position, to records that have none (the OptScale reference
            keeps them apart from its scored pools). Text formats only.

    Raises:
        PoolFormatError: malformed input (a ValueError naming file, line and field), including
            a file that is not a regular file.
        OSError: a file that cannot be opened (missing, permissions).
        ValueError: an unknown ``format`` or ``aggregate``.
        ImportError: grading is needed and math-verify is not installed.
    """
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {', '.join(AGGREGATES)}; got {aggregate!r}")
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {format!r}")
    source = os.fspath(path)
    if format == "npz" or (format == "auto" and source.lower().endswith(".npz")):
        if questions is not None:
            raise ValueError("questions= applies to text pool formats, not NPZ")
        pool = load_npz(source)
        return dataclasses.replace(pool, meta=_fill_meta(pool.meta, source, "npz", None))
    records = _records(source)
    fmt = _detect(source, records) if format == "auto" else format
    score = _Score(aggregate)
    meta: dict[str, Any] = {}
    if fmt == "jsonl":
        items, meta = _read_jsonl(source, records, score)
    elif fmt == "search-and-learn":
        items = _read_search_and_learn(source, records, score)
    elif fmt == "ovm":
        items = _read_ovm(source, records)
    else:
        items = _read_reference(source, records, score)
    twice = duplicate_id([x.id for x in items])
    if twice is not None:
        first, second = items[twice[0]], items[twice[1]]
        raise PoolFormatError(f"{source}:{second.line}: {second.id_field}: question id "
                              f"{second.id!r} is already used at line {first.line}")
    if questions is not None:
        _add_questions(source, items, os.fspath(questions))
    try:
        return _assemble(items, _fill_meta(meta, source, fmt, aggregate if score.used else None))
    except ValueError:
        if score.unscored is None:
            raise
        # a Pool that requires finite scores cannot hold unscored samples: still a format error
        at, field = score.unscored
        at.fail(field, "null (drawn but not scored) is not accepted by this Pool (it needs "
                       "finite scores)")


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def write_jsonl(pool: Pool, path: str | os.PathLike, *,
                answers: Sequence[Sequence[str | None]] | None = None,
                texts: Sequence[Sequence[str | None]] | None = None) -> None:
    """Write ``pool`` as optscale JSONL (a ``{"meta": ...}`` line, then one line a question).

    Every sample gets its score, answer code (``group``) and, where the pool has them,
    ``correct`` and ``tokens``; ``answers`` / ``texts`` (per question, per sample) add final
    answers / completion texts. :func:`load_pool` reads it back to an equal pool.
    """
    for name, extra in (("answers", answers), ("texts", texts)):
        if extra is not None and (len(extra) != pool.size or any(
                len(extra[q]) != pool.lengths[q] for q in range(pool.size))):
            raise ValueError(f"write_jsonl: {name} needs one entry per sample of each question")
    empty = [pool.ids[q] for q in range(pool.size) if pool.lengths[q] == 0]
    if empty:
        raise ValueError(f"write_jsonl: question {empty[0]!r} has no samples; the JSONL format "
                         "needs at least one per question")
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps({"meta": pool.meta}, default=_jsonable) + "\n")
        for q in range(pool.size):
            record: dict[str, Any] = {"id": pool.ids[q]}
            if pool.questions is not None:
                record["question"] = pool.questions[q]
            if pool.gold is not None:
                record["gold"] = pool.gold[q]
            if pool.prior is not None:
                record["prior"] = [float(v) for v in pool.prior[q]]
            samples = []
            for j in range(int(pool.lengths[q])):
                value = float(pool.scores[q, j])
                sample: dict[str, Any] = {"score": None if math.isnan(value) else value,
                                          "group": int(pool.answers[q, j])}
                if pool.correct is not None:
                    sample["correct"] = bool(pool.correct[q, j])
                if pool.tokens is not None:
                    sample["tokens"] = int(pool.tokens[q, j])
                if answers is not None:
                    sample["answer"] = answers[q][j]
                if texts is not None:
                    sample["text"] = texts[q][j]
                samples.append(sample)
            record["samples"] = samples
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
