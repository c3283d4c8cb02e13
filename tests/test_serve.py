"""``optscale serve`` end to end: the real server (uvicorn on 127.0.0.1, an ephemeral port) and
the official ``openai`` client, in front of the local OpenAI-compatible test server
(``tests/_openai_server.py``: echo/answer backends with injected delays and faults, and the
tiny random GPT-2). Checked: both endpoints streaming and not, that the upstream saw exactly
the samples the response reports (as n = 1 requests), that nothing is left running upstream
after an answer or a client disconnect, faults (5xx, timeouts, malformed bodies, refused
requests), the request log (every sample, replayed by ``optscale replay``), ``/metrics``
(parsed by prometheus_client), knob validation (400 with an OpenAI-style body) and the budget
rules."""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time

import httpx
import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

import optscale  # noqa: E402
from optscale.serve import ServeConfig, create_app  # noqa: E402
from tests._openai_server import AnswerBackend, EchoBackend, OpenAIServer  # noqa: E402

MODEL = "test-model"
ANSWERS = ["7", "3", "7", "5", "7", "3"]  # 7 leads, but not at once: votes have work to do


class ServerThread:
    """uvicorn serving ``app`` on 127.0.0.1 (port 0) in a background thread."""

    def __init__(self, app) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error",
                                lifespan="on", timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.app = app

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        assert not self.thread.is_alive(), "the server did not stop"


@contextlib.contextmanager
def proxy(upstream: OpenAIServer, *, client_timeout: float = 10.0, **config):
    """(the server thread, an ``openai.OpenAI`` client of it) for a proxy of ``upstream``."""
    config.setdefault("keepalive", 0.1)
    config.setdefault("backoff", 0.01)
    app = create_app(ServeConfig(upstream.url, MODEL, **config))
    with ServerThread(app) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0,
                               timeout=client_timeout)
        try:
            yield server, client
        finally:
            client.close()


def esc(**kw):
    return {"default": optscale.ESC(window=kw.pop("window", 3), n_max=kw.pop("n_max", 8), **kw)}


def ask(client, question="q", **kw):
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user",
                                                                  "content": question}], **kw)


def meta(response):
    return response.model_extra["optscale"]


def settled(upstream: OpenAIServer, timeout: float = 5.0) -> bool:
    """Nothing is left in flight upstream (within ``timeout``)."""
    return upstream.wait_for(lambda s: not s.in_flight(), timeout=timeout)


def eventually(check, timeout: float = 3.0) -> bool:
    """Whether ``check()`` holds within ``timeout`` seconds (polled)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def read_log(path):
    with open(path, encoding="utf-8") as f:
        lines = [json.loads(line) for line in f]
    assert "meta" in lines[0]
    return lines[1:]


# -- the two endpoints ---------------------------------------------------------------------------

def test_chat_answers_with_the_chosen_sample_and_counts_every_sample(tmp_path):
    log = tmp_path / "log.jsonl"
    with OpenAIServer(AnswerBackend(ANSWERS)) as up, \
            proxy(up, policies=esc(), log_path=str(log)) as (_, client):
        r = ask(client, "what is 3 + 4?", temperature=0.7, extra_body={"top_k": 5})
        m = meta(r)
        assert m["status"] == "ok" and m["stop_reason"] in ("rule", "budget")
        n = m["n_used"]
        assert 3 <= n <= 8 and m["n_max"] == 8 and len(m["answers"]) == n
        # the chosen sample is a sample of the winning answer, and the response is it
        assert m["answers"][m["chosen"]] == "7"
        assert r.choices[0].message.content.endswith("\\boxed{7}")
        assert r.choices[0].message.role == "assistant" and r.choices[0].finish_reason
        assert r.usage.completion_tokens == sum(m["tokens"])
        assert r.usage.prompt_tokens == len("what is 3 + 4?")  # once, not once per sample
        # the upstream saw exactly those samples, one n = 1 request each, nothing left running
        assert up.count == n and up.completions == n and settled(up)
        for rec in up.records:
            assert rec.body["n"] == 1 and rec.body["model"] == MODEL
            assert rec.body["temperature"] == 0.7 and rec.body["top_k"] == 5
            assert "optscale" not in rec.body and "stream" not in rec.body
        assert m["policy"].startswith("esc(window=3") and m["scores"] == [None] * n
        [record] = read_log(log)
        texts = [x["text"] for x in record["samples"]]
        assert sorted(texts) == sorted(f"what is 3 + 4? #{k}: so \\boxed{{{ANSWERS[k % 6]}}}"
                                       for k in range(n))  # each sample the upstream made, once
        assert record["chosen"] == m["chosen"]
        assert texts[m["chosen"]] == r.choices[0].message.content


def test_completions_endpoint_and_per_sample_seeds():
    with OpenAIServer(AnswerBackend(ANSWERS)) as up, \
            proxy(up, policies={"default": optscale.FixedN(n_max=4,
                                                           selection=optscale.Selection("vote"))}
                  ) as (_, client):
        r = client.completions.create(model=MODEL, prompt="2+5?", seed=11, max_tokens=16)
        m = meta(r)
        assert m["n_used"] == 4 and r.choices[0].text.endswith("\\boxed{7}")
        assert r.object == "text_completion" and r.usage.completion_tokens == sum(m["tokens"])
        assert sorted(rec.body["seed"] for rec in up.records) == [11, 12, 13, 14]
        assert all(rec.path == "/v1/completions" and rec.body["prompt"] == "2+5?"
                   and rec.body["max_tokens"] == 16 for rec in up.records)
        assert up.completions == 4 and settled(up)
        assert client.models.list().data[0].id == MODEL


@pytest.mark.parametrize("endpoint", ["chat", "completion"])
def test_streaming_sends_keepalives_then_the_chosen_text(endpoint):
    with OpenAIServer(AnswerBackend(ANSWERS), delay=0.05) as up, \
            proxy(up, policies=esc(), keepalive=0.02) as (server, client):
        if endpoint == "chat":
            stream = ask(client, "q", stream=True, stream_options={"include_usage": True})
            chunks = list(stream)
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            stream = client.completions.create(model=MODEL, prompt="q", stream=True,
                                               stream_options={"include_usage": True})
            chunks = list(stream)
            text = "".join(c.choices[0].text for c in chunks if c.choices)
        final = [c for c in chunks if c.choices and c.choices[0].finish_reason]
        assert len(final) == 1
        m = final[0].model_extra["optscale"]
        assert text.endswith("\\boxed{7}") and m["answers"][m["chosen"]] == "7"
        assert chunks[-1].usage.completion_tokens == sum(m["tokens"]) and not chunks[-1].choices
        assert up.completions == m["n_used"] and settled(up)
        # on the wire: keep-alive comments while sampling, then data events, then [DONE]
        path = "chat/completions" if endpoint == "chat" else "completions"
        body = {"model": MODEL, "stream": True, **(
            {"messages": [{"role": "user", "content": "r"}]} if endpoint == "chat"
            else {"prompt": "r"})}
        raw = httpx.post(f"{server.url}/v1/{path}", json=body, timeout=10).text
        assert raw.startswith(": keep-alive\n\n") and raw.endswith("data: [DONE]\n\n")


# -- cancellation: no upstream request outlives its client request ------------------------------

def _slow_but_seed_zero(body):
    return 0.0 if body.get("seed") == 0 else 5.0


def test_a_client_disconnect_cancels_the_upstream_requests_and_logs_what_was_drawn(tmp_path):
    log = tmp_path / "log.jsonl"
    policy = {"default": optscale.FixedN(n_max=4, selection=optscale.Selection("vote"))}
    with OpenAIServer(AnswerBackend(ANSWERS), delay=_slow_but_seed_zero) as up, \
            proxy(up, policies=policy, log_path=str(log), client_timeout=0.5) as (server, client):
        t0 = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            ask(client, "q", seed=0)
        # the 3 slow requests are abandoned (their connections closed), promptly
        assert up.wait_for(lambda s: len(s.abandoned()) == 3, timeout=3)
        assert settled(up) and time.monotonic() - t0 < 4
        assert up.count == 4
        assert eventually(lambda: len(read_log(log)) == 1)  # the cancelled request's line
        [record] = read_log(log)
        assert record["status"] == "cancelled" and len(record["samples"]) == 1
        rt = server.app.state.optscale
        assert eventually(lambda: rt.metrics.in_progress._value.get() == 0)


def test_a_disconnect_during_a_stream_cancels_the_upstream_requests():
    policy = {"default": optscale.FixedN(n_max=3, selection=optscale.Selection("vote"))}
    # generous waits: on a loaded 2-core machine the three requests can take seconds to arrive
    with OpenAIServer(AnswerBackend(ANSWERS), delay=30.0) as up, \
            proxy(up, policies=policy, keepalive=0.05) as (server, _):
        body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "q"}]}
        with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body,
                          timeout=5) as resp:
            # (keep the iterator: a discarded one is collected at once, and closing it closes
            # the connection, that is, disconnects before the test means to)
            chunks = resp.iter_bytes()
            assert next(chunks).startswith(b": keep-alive")
            assert up.wait_for(lambda s: len(s.in_flight()) == 3, timeout=15), \
                [r.status for r in up.records]
        # the client closed the stream: the three requests are cancelled upstream
        assert up.wait_for(lambda s: len(s.abandoned()) == 3, timeout=15) and settled(up)


@pytest.mark.parametrize("stream", [False, True])
def test_a_server_that_stops_logs_the_samples_of_the_requests_it_cancels(stream, tmp_path):
    log = tmp_path / "log.jsonl"
    policy = {"default": optscale.FixedN(n_max=4, selection=optscale.Selection("vote"))}
    body = {"model": MODEL, "messages": [{"role": "user", "content": "q"}], "seed": 0,
            "stream": stream}
    with OpenAIServer(AnswerBackend(ANSWERS), delay=lambda b: 0.0 if b.get("seed") == 0
                      else 30.0) as up:
        with proxy(up, policies=policy, log_path=str(log)) as (server, _):
            sent = threading.Thread(target=lambda: _quietly(
                httpx.post, f"{server.url}/v1/chat/completions", json=body, timeout=15))
            sent.start()
            assert up.wait_for(lambda s: s.completions == 1 and len(s.in_flight()) == 3,
                               timeout=10)
            assert eventually(lambda: _answers_read(server) == 1, timeout=10)
        # the server stopped (uvicorn cancels the request after its 2 s grace): the paid
        # sample is on disk before the log closed
        sent.join(15)
        assert settled(up)
    [record] = read_log(log)
    assert record["status"] == "cancelled" and len(record["samples"]) == 1


def _answers_read(server):
    """Upstream answers the proxy has read to the end (an answer the engine sent is not yet
    a sample the proxy holds: a cancel in between loses it on both sides)."""
    value = server.app.state.optscale.metrics.registry.get_sample_value(
        "optscale_upstream_seconds_count")
    return value or 0


def _quietly(call, *args, **kw):
    with contextlib.suppress(httpx.HTTPError):
        call(*args, **kw)


# -- faults ----------------------------------------------------------------------------------------

def test_a_5xx_is_retried_and_the_answer_counts_only_samples():
    with OpenAIServer(AnswerBackend(ANSWERS)) as up, \
            proxy(up, policies={"default": optscale.FixedN(n_max=2)},
                  scorer="logprob-mean", retries=2) as (_, client):
        up.fail_next(1, 503)
        m = meta(ask(client))
        assert m["status"] == "ok" and m["n_used"] == 2
        assert up.count == 3 and up.completions == 2 and settled(up)  # one retried attempt


def test_an_upstream_failure_after_some_samples_returns_the_best_so_far(tmp_path):
    log = tmp_path / "log.jsonl"
    # samples 0 and 1 (the first round of ESC(window=2)) come back; every later one fails
    with OpenAIServer(AnswerBackend(["1", "2"]),
                      fail_when=lambda b: 503 if b.get("seed", 0) >= 2 else None) as up, \
            proxy(up, policies=esc(window=2), retries=1, log_path=str(log)) as (_, client):
        r = ask(client, seed=0)
        m = meta(r)
        assert m["status"] == "upstream_error" and m["n_used"] == 2
        assert "503" in m["error"] and r.choices[0].message.content
        assert r.usage.completion_tokens == sum(m["tokens"]) and settled(up)
        [record] = read_log(log)
        assert record["status"] == "upstream_error" and len(record["samples"]) == 2


@pytest.mark.parametrize("fault,status,code", [
    ("5xx", 502, "upstream_error"), ("timeout", 504, "upstream_timeout"),
    ("malformed", 502, "upstream_error"), ("bad_text", 502, "upstream_error"),
    ("refused", 400, "upstream_rejected")])
def test_a_failure_with_no_sample_is_an_openai_style_error(fault, status, code, tmp_path):
    log = tmp_path / "log.jsonl"
    kw = {"5xx": {"fail_when": lambda b: 500}, "timeout": {"delay": 3.0},
          "malformed": {"raw_body": b"{not json"},
          "bad_text": {"mutate": lambda a: {**a, "choices": [{**a["choices"][0], "text": 5}]}},
          "refused": {"fail_when": lambda b: 400}}[fault]
    with OpenAIServer(EchoBackend(), **kw) as up, \
            proxy(up, policies={"default": optscale.FixedN(n_max=2)},
                  scorer="logprob-mean", retries=1, timeout=0.3 if fault == "timeout" else 10,
                  log_path=str(log)) as (_, client):
        with pytest.raises(openai.APIStatusError) as info:
            client.completions.create(model=MODEL, prompt="q")
        err = info.value
        assert err.status_code == status and err.body["code"] == code
        assert set(err.body) == {"message", "type", "param", "code"}
        assert "Traceback" not in err.body["message"]
        retried = fault in ("5xx", "timeout")  # malformed and refused answers are not retried
        assert up.count == 2 * (2 if retried else 1)
        assert settled(up)
        assert read_log(log) == []  # nothing was paid for: nothing logged


def test_an_error_event_ends_a_stream_that_has_no_sample():
    with OpenAIServer(EchoBackend(), fail_when=lambda b: 500) as up, \
            proxy(up, policies={"default": optscale.FixedN(n_max=1)},
                  scorer="logprob-mean", retries=0) as (_, client):
        with pytest.raises(openai.APIError, match="upstream failed"):
            list(ask(client, stream=True))


def test_a_bug_is_a_500_with_an_openai_style_body_and_no_traceback(monkeypatch):
    with OpenAIServer(EchoBackend()) as up, proxy(up, policies=esc()) as (server, client):
        engine = server.app.state.optscale.engine

        async def broken(job):
            raise RuntimeError("a bug")

        monkeypatch.setattr(engine, "run", broken)
        with pytest.raises(openai.InternalServerError) as info:
            ask(client)
        assert info.value.status_code == 500
        assert info.value.body["type"] == "internal_error"
        assert "Traceback" not in json.dumps(info.value.body)
        with pytest.raises(openai.APIError, match="internal error"):
            list(ask(client, stream=True))
        assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200


def _strict_json(text):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_engine_logprobs_are_null_in_both_answers():
    policy = {"default": optscale.FixedN(n_max=2, selection=optscale.Selection("vote"))}
    weird = lambda text, n: [float("-inf"), math.nan] + [-1.0] * (n - 2)  # noqa: E731
    body = {"model": MODEL, "messages": [{"role": "user", "content": "q"}], "logprobs": True}
    with OpenAIServer(AnswerBackend(ANSWERS), logprobs=weird) as up, \
            proxy(up, policies=policy) as (server, _):
        url = f"{server.url}/v1/chat/completions"
        r = httpx.post(url, json=body, timeout=10)
        assert r.status_code == 200, r.text
        whole = _strict_json(r.text)["choices"][0]["logprobs"]["content"]
        r = httpx.post(url, json={**body, "stream": True}, timeout=10)
        events = [line[6:] for line in r.text.splitlines()
                  if line.startswith("data: ") and line != "data: [DONE]"]
        streamed = [c for e in events for ch in _strict_json(e)["choices"]
                    for c in ((ch.get("logprobs") or {}).get("content") or [])]
    for content in (whole, streamed):
        assert [c["logprob"] for c in content[:3]] == [None, None, -1.0]


# -- the request log -------------------------------------------------------------------------

def test_the_log_holds_every_sample_and_replays(tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    questions = {f"question {i}": ("7" if i % 2 else "3") for i in range(4)}
    with OpenAIServer(AnswerBackend(ANSWERS)) as up, \
            proxy(up, policies=esc(), scorer="logprob-mean", log_path=str(log)) as (_, client):
        responses = [ask(client, q, extra_body={"optscale": {"gold": g}})
                     for q, g in questions.items()]
    records = read_log(log)
    assert [r["question"] for r in records] == list(questions)
    assert sum(len(r["samples"]) for r in records) == up.completions
    for record, response in zip(records, responses, strict=True):
        m = meta(response)
        assert record["gold"] == questions[record["question"]]
        assert [s["tokens"] for s in record["samples"]] == m["tokens"]
        assert [s["answer"] for s in record["samples"]] == m["answers"]
        assert [s["score"] for s in record["samples"]] == m["scores"]
        assert record["id"] == m["request_id"]
    pool = optscale.replay.load_pool(str(log))
    assert pool.size == 4 and list(pool.lengths) == [len(r["samples"]) for r in records]
    assert pool.correct is not None  # graded by the gold answers through the samples' answers
    out = tmp_path / "replay"
    from optscale.cli import main

    status = main(["replay", str(log), "--out", str(out), "-q", "--methods",
                          "bon,sc", "--orders", "2", "--folds", "2", "--budgets", "4"])
    assert status == 0, capsys.readouterr().err
    assert (out / "report.md").exists()


@pytest.mark.parametrize("content", [
    '{"role": "user", "content": "q", "x": NaN}',  # Python's json (and FastAPI) read NaN
    '{"role": "user", "content": "q \\ud800"}',  # a lone surrogate: valid JSON, not UTF-8
])
def test_a_body_python_reads_but_cannot_write_back_is_answered_and_logged(content, tmp_path):
    from optscale.replay import load_pool

    log = tmp_path / "log.jsonl"
    policy = {"default": optscale.FixedN(n_max=3, selection=optscale.Selection("vote"))}
    body = f'{{"model": "{MODEL}", "messages": [{content}]}}'
    with OpenAIServer(AnswerBackend(ANSWERS)) as up, \
            proxy(up, policies=policy, log_path=str(log)) as (server, _):
        r = httpx.post(f"{server.url}/v1/chat/completions", content=body.encode(),
                       headers={"content-type": "application/json"}, timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["optscale"]["n_used"] == up.completions == 3
    [record] = read_log(log)  # strict JSON, UTF-8: NaN is null, the surrogate U+FFFD
    assert len(record["samples"]) == 3 and record["status"] == "ok"
    assert "NaN" not in log.read_text() and load_pool(str(log)).size == 1


def test_no_answer_is_sent_before_its_samples_are_fsynced(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    log = tmp_path / "log.jsonl"
    real_fsync = os.fsync
    lock = threading.Lock()
    synced = []  # (when the fsync returned, the file's size then)

    def fsync(fd):
        time.sleep(0.03)  # a slow disk: requests that end meanwhile share the next fsync
        real_fsync(fd)
        with lock:
            synced.append((time.monotonic(), os.fstat(fd).st_size))

    with OpenAIServer(AnswerBackend(ANSWERS)) as up, \
            proxy(up, policies=esc(), log_path=str(log)) as (_, client):
        monkeypatch.setattr(os, "fsync", fsync)

        def one(i):
            r = ask(client, f"q{i}")
            return time.monotonic(), meta(r)["request_id"]

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(one, range(32)))
        monkeypatch.undo()
    text = log.read_bytes()
    for received, rid in answers:
        end = text.index(b"\n", text.index(b'"id": "%s"' % rid.encode())) + 1
        assert any(t <= received and size >= end for t, size in synced), rid
    assert len(synced) < len(answers)  # group commit: fewer fsyncs than answers


def test_an_answer_whose_log_line_cannot_be_fsynced_is_an_error(tmp_path, monkeypatch):
    log = tmp_path / "log.jsonl"

    def fsync(fd):
        raise OSError(5, "Input/output error")  # as if the machine died before the fsync

    with OpenAIServer(AnswerBackend(ANSWERS)) as up, \
            proxy(up, policies=esc(), log_path=str(log)) as (_, client):
        monkeypatch.setattr(os, "fsync", fsync)
        with pytest.raises(openai.InternalServerError):
            ask(client)
        with pytest.raises(openai.APIError, match="internal error"):
            list(ask(client, stream=True))
        monkeypatch.undo()
        assert meta(ask(client))["status"] == "ok"  # the log goes on once the disk does


def test_the_log_rotates_into_numbered_files_that_each_load(tmp_path):
    log = tmp_path / "requests.jsonl"
    with OpenAIServer(AnswerBackend(ANSWERS)) as up, \
            proxy(up, policies=esc(), scorer="logprob-mean", log_path=str(log),
                  log_max_bytes=1500) as (_, client):
        for i in range(4):
            ask(client, f"q{i}")
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files[0] == "requests.1.jsonl" and "requests.jsonl" in files and len(files) >= 3
    total = 0
    for name in files:
        records = read_log(tmp_path / name)  # each file starts with a meta line
        total += len(records)
        assert optscale.replay.load_pool(str(tmp_path / name)).size == len(records)
    assert total == 4


# -- metrics and knobs -----------------------------------------------------------------------

def test_metrics_parse_and_count_what_the_upstream_served():
    from prometheus_client.parser import text_string_to_metric_families

    with OpenAIServer(AnswerBackend(ANSWERS)) as up, \
            proxy(up, policies=esc()) as (server, client):
        n = sum(meta(ask(client, f"q{i}"))["n_used"] for i in range(2))
        with pytest.raises(openai.BadRequestError):
            ask(client, extra_body={"optscale": {"max_n": 0}})
        text = httpx.get(f"{server.url}/metrics", timeout=5).text
        assert httpx.get(f"{server.url}/health", timeout=5).json() == {"status": "ok"}
    families = {f.name: f for f in text_string_to_metric_families(text)}
    value = {(f.name, s.name, tuple(sorted(s.labels.items()))): s.value
             for f in families.values() for s in f.samples}
    assert value[("optscale_samples", "optscale_samples_total", (("endpoint", "chat"),))] == n
    assert up.completions == n
    assert value[("optscale_requests", "optscale_requests_total",
                  (("endpoint", "chat"), ("status", "ok")))] == 2
    assert value[("optscale_requests", "optscale_requests_total",
                  (("endpoint", "chat"), ("status", "client_error")))] == 1
    saved = value[("optscale_tokens_saved", "optscale_tokens_saved_total",
                   (("endpoint", "chat"),))]
    assert saved >= 0
    for name in ("optscale_request_seconds", "optscale_upstream_seconds",
                 "optscale_upstream_errors", "optscale_tokens", "optscale_samples_per_request"):
        assert name in families


@pytest.mark.parametrize("stream", [False, True])
def test_metrics_count_the_samples_of_a_request_whose_client_went_away(stream):
    from prometheus_client.parser import text_string_to_metric_families

    policy = {"default": optscale.FixedN(n_max=4, selection=optscale.Selection("vote"))}
    body = {"model": MODEL, "messages": [{"role": "user", "content": "q"}], "seed": 0,
            "stream": stream}
    with OpenAIServer(AnswerBackend(ANSWERS), delay=lambda b: 0.0 if b.get("seed") == 0
                      else 30.0) as up, proxy(up, policies=policy) as (server, _):
        url = f"{server.url}/v1/chat/completions"
        if stream:
            with httpx.stream("POST", url, json=body, timeout=10) as resp:
                chunks = resp.iter_bytes()  # (kept: see the stream disconnect test)
                assert up.wait_for(lambda s: s.completions == 1 and len(s.in_flight()) == 3,
                                   timeout=10)
                assert eventually(lambda: _answers_read(server) == 1, timeout=10)
            del chunks
        else:  # no headers before the answer: the client gives up after 3 s
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(url, json=body, timeout=httpx.Timeout(10, read=3))
            assert _answers_read(server) == 1
        # the client went away with 1 sample paid for
        assert up.wait_for(lambda s: len(s.abandoned()) == 3, timeout=10) and settled(up)
        rt = server.app.state.optscale
        assert eventually(lambda: rt.metrics.in_progress._value.get() == 0)
        text = httpx.get(f"{server.url}/metrics", timeout=5).text
    value = {(s.name, tuple(sorted(s.labels.items()))): s.value
             for f in text_string_to_metric_families(text) for s in f.samples}
    assert value[("optscale_samples_total", (("endpoint", "chat"),))] == up.completions == 1
    assert value[("optscale_tokens_total", (("endpoint", "chat"), ("kind", "completion")))] \
        == 3  # AnswerBackend's first sample: 3 tokens
    assert value[("optscale_requests_total", (("endpoint", "chat"), ("status", "cancelled")))] \
        == 1


@pytest.mark.parametrize("body,param,status", [
    ({"optscale": {"max_n": 0}}, "optscale.max_n", 400),
    ({"optscale": {"max_n": "3"}}, "optscale.max_n", 400),
    ({"optscale": {"max_n": True}}, "optscale.max_n", 400),
    ({"optscale": {"target": 0.9}}, "optscale.target", 400),  # ESC has no target
    ({"optscale": {"confidence": 1.5}}, "optscale.confidence", 400),
    ({"optscale": {"policy": "nope"}}, "optscale.policy", 400),
    ({"optscale": {"gold": ["x"]}}, "optscale.gold", 400),
    ({"optscale": {"tokens": 3}}, "optscale.tokens", 400),
    ({"optscale": [1]}, "optscale", 400),
    ({"n": 2}, "n", 400),
    ({"model": "other"}, "model", 404),
    ({"messages": []}, "messages", 400),
    ({"messages": None}, "messages", 400),
])
def test_bad_requests_are_openai_style_errors(body, param, status):
    with OpenAIServer(EchoBackend()) as up, proxy(up, policies=esc()) as (server, _):
        full = {"model": MODEL, "messages": [{"role": "user", "content": "q"}], **body}
        resp = httpx.post(f"{server.url}/v1/chat/completions", json=full, timeout=5)
        assert resp.status_code == status, resp.text
        err = resp.json()["error"]
        assert err["param"] == param and err["message"] and err["type"]
        assert up.count == 0  # nothing was sent upstream
        assert httpx.post(f"{server.url}/v1/nothing", json={}, timeout=5).json()["error"]


@pytest.mark.parametrize("content,ctype,message", [
    (b'{"model": "m", oops}', "application/json",
     "request body is not valid JSON (at character 15: Expecting property name"),
    (b"model=m", "application/x-www-form-urlencoded", "request body must be a JSON object"),
    (b"[1, 2]", "application/json", "request body must be a JSON object"),
])
def test_a_body_that_is_not_a_json_object_is_a_400_naming_no_field(content, ctype, message):
    with OpenAIServer(EchoBackend()) as up, proxy(up, policies=esc()) as (server, _):
        r = httpx.post(f"{server.url}/v1/chat/completions", content=content,
                       headers={"content-type": ctype}, timeout=10)
        assert up.count == 0
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["message"].startswith(message) and error["param"] is None, error


def test_knobs_change_the_policy_and_max_n_is_a_maximum():
    policies = {"default": optscale.LeaderPosterior(confidence=0.9, n_max=16,
                                                    selection=optscale.Selection("vote")),
                "fixed": optscale.FixedN(n_max=6, selection=optscale.Selection("vote"))}
    with OpenAIServer(AnswerBackend(["1", "2", "3"])) as up, \
            proxy(up, policies=policies) as (_, client):
        used = []
        m = meta(ask(client, "a", extra_body={"optscale": {"max_n": 3}}))
        assert m["n_used"] <= 3 and m["n_max"] == 3 and "n_max=3" in m["policy"]
        used.append(m["n_used"])
        m = meta(ask(client, "b", extra_body={"optscale": {"policy": "fixed", "max_n": 40}}))
        assert m["n_used"] == 6 and m["policy_name"] == "fixed"  # a maximum: never more
        used.append(m["n_used"])
        m = meta(ask(client, "c", extra_body={"optscale": {"confidence": 0.6}}))
        assert "confidence=0.6" in m["policy"]
        used.append(m["n_used"])
        assert up.completions == sum(used)


def test_a_tight_token_budget_shrinks_max_n():
    # 20 tokens per second, a bucket of 1 s: about 4 samples of ~5 tokens, then 1 per request
    with OpenAIServer(AnswerBackend(ANSWERS)) as up, \
            proxy(up, policies={"default": optscale.FixedN(n_max=8)},
                  scorer="logprob-mean", token_budget=20.0, budget_burst=1.0) as (_, client):
        first = meta(ask(client, "a"))
        second = meta(ask(client, "b"))
    assert first["n_used"] < 8 and first["status"] == "budget"
    assert second["n_used"] == 1 and second["status"] == "budget"
    assert up.completions == first["n_used"] + second["n_used"]


# -- scorers in the loop --------------------------------------------------------------------------

def test_an_http_reward_model_scores_and_optscale_knobs_apply(numpy_backend):
    seen = []

    def reward(body):  # a generic JSON scorer: longer completions score higher
        seen.append(body)
        return {"scores": [min(1.0, len(t) / 40) for t in body["completions"]]}

    with OpenAIServer(AnswerBackend(ANSWERS), routes={"/score": reward}) as up:
        policy = {"default": optscale.OptScale0(target=0.5, n_peek=2, n_max=6)}
        with proxy(up, policies=policy, scorer=f"json:{up.url[:-3]}/score") as (_, client):
            r = ask(client, "a question", extra_body={"optscale": {"target": 0.99,
                                                                    "confidence": 0.8}})
    m = meta(r)
    assert "target=0.99" in m["policy"] and "confidence=0.8" in m["policy"]
    assert all(s is not None and 0 <= s <= 1 for s in m["scores"])
    assert sum(len(b["completions"]) for b in seen) == m["n_used"]
    assert all(b["prompt"] == "a question" for b in seen)
    assert m["chosen"] == max(range(m["n_used"]), key=lambda i: m["scores"][i])


def test_tiny_gpt2_end_to_end_with_logprob_confidence(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tests._openai_server import TinyGPT2Backend

    log = tmp_path / "log.jsonl"

    def logprobs(text, tokens):  # per-token values, so that samples differ in confidence
        return [-0.1 * ((len(text) + j) % 7) for j in range(tokens)]

    with OpenAIServer(TinyGPT2Backend(seed=0), logprobs=logprobs) as up, \
            proxy(up, policies={"default": optscale.FixedN(n_max=4)},
                  scorer="logprob-window:4", answer="none", log_path=str(log)) as (_, client):
        r = ask(client, "What is 2+2?", max_tokens=8, temperature=1.0)
        c = client.completions.create(model=MODEL, prompt="Name a color.", max_tokens=8)
    for resp in (r, c):
        m = meta(resp)
        assert m["n_used"] == 4 and all(0 <= s <= 1 for s in m["scores"])
        assert m["chosen"] == max(range(4), key=lambda i: m["scores"][i])
        assert 4 <= resp.usage.completion_tokens <= 32
    assert r.choices[0].logprobs is None  # asked for by the scorer, not by the client
    assert all(rec.body["logprobs"] in (True, 1) for rec in up.records)
    records = read_log(log)
    assert [len(x["samples"]) for x in records] == [4, 4] and up.completions == 8
    assert "answer" not in records[0]["samples"][0]  # no extractor: the reader reads the text
    assert os.path.getsize(log) > 0


def test_the_cli_serves_on_uvloop_and_httptools_when_they_are_installed(monkeypatch):
    pytest.importorskip("uvloop")
    pytest.importorskip("httptools")
    import asyncio

    from optscale.cli import main

    seen = {}

    async def serve(self, sockets=None):  # where uvicorn's run() would serve: note, stop
        self.config.load()
        seen["loop"] = type(asyncio.get_running_loop()).__module__
        seen["http"] = self.config.http_protocol_class.__name__
        for sock in sockets or ():
            sock.close()

    monkeypatch.setattr(uvicorn.Server, "serve", serve)
    assert main(["serve", "--upstream", "http://127.0.0.1:9/v1", "--model", MODEL, "--no-log",
                 "--port", "0"]) == 0
    assert seen == {"loop": "uvloop", "http": "HttpToolsProtocol"}
