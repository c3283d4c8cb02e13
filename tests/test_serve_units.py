"""``optscale serve``'s pieces on their own: the async upstream client (on an ``httpx``
MockTransport: retries, Retry-After, the in-flight cap, the size cap, cancellation; on real
sockets: headers and keep-alive reuse, expiry, connections the server dropped, unreadable
answers, size caps, error bodies cut, cancellation closing the connection, TLS verification), the
scorers (logprob confidence, vLLM pooling/classify, the JSON endpoint, a local model off the
event loop), the token bucket's rule, the knobs, the engine's own cap and failure statuses, the
request log (fsync, rotation, numbering, writes after a cancel) and unscored samples in the pool
reader."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

import optscale  # noqa: E402
from optscale.sampling._openai import OpenAIError  # noqa: E402
from optscale.serve import (  # noqa: E402
    HTTPScorer,
    LocalScorer,
    LogprobConfidence,
    RequestLog,
    TokenBucket,
    Upstream,
    _upstream,  # noqa: E402
    lowest_window_confidence,
    mean_confidence,
)
from optscale.serve._config import ServeConfig, parse_scorer  # noqa: E402
from optscale.serve._engine import Engine, Job  # noqa: E402
from optscale.serve._knobs import RequestError, resolve_knobs  # noqa: E402
from optscale.serve._scorers import _pooled_score  # noqa: E402


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def upstream(handler, **kw) -> Upstream:
    kw.setdefault("backoff", 0.0)
    return Upstream("http://up/v1", transport=httpx.MockTransport(handler), **kw)


def completion(text="t", tokens=3, chat=False):
    choice = {"index": 0, "finish_reason": "stop",
              **({"message": {"role": "assistant", "content": text}} if chat else {"text": text})}
    return {"choices": [choice], "usage": {"prompt_tokens": 2, "completion_tokens": tokens}}


# -- the upstream client ---------------------------------------------------------------------

def test_retries_honour_retry_after_and_stop_at_the_bound():
    calls = []

    def handler(request):
        calls.append(request)
        if len(calls) < 3:
            return httpx.Response(503, headers={"Retry-After": "0"}, json={"error": "busy"})
        return httpx.Response(200, json={"ok": 1})

    kinds = []

    class Seen:
        def attempt(self, kind, seconds):
            kinds.append(kind)

    async def main():
        up = upstream(handler, retries=2, observer=Seen())
        assert await up.post_json("completions", {"a": 1}) == {"ok": 1}
        with pytest.raises(OpenAIError, match="busy") as info:
            calls.clear()
            up.retries = 1
            await up.post_json("completions", {"a": 1})
        assert info.value.status == 503 and info.value.attempts == 2
        await up.aclose()

    run(main())
    assert kinds == ["http_5xx", "http_5xx", "ok", "http_5xx", "http_5xx"]
    assert json.loads(calls[0].content) == {"a": 1}
    assert str(calls[0].url) == "http://up/v1/completions"


def test_client_errors_and_oversized_or_malformed_bodies_are_not_retried():
    bodies = {"/v1/bad": (400, b'{"error": {"message": "no such thing"}}'),
              "/v1/big": (200, b'{"x": "' + b"y" * 5000 + b'"}'),
              "/v1/junk": (200, b"[" * 900)}
    calls = []

    def handler(request):
        calls.append(request.url.path)
        status, body = bodies[request.url.path]
        return httpx.Response(status, content=body)

    async def main():
        up = upstream(handler, retries=3, max_response_bytes=1000)
        for path, match in (("bad", "no such thing"), ("big", "max_response_bytes=1000"),
                            ("junk", "unusable response")):
            with pytest.raises(OpenAIError, match=match):
                await up.post_json(path, {})
        await up.aclose()

    run(main())
    assert calls == ["/v1/bad", "/v1/big", "/v1/junk"]


def test_requests_in_flight_are_capped_and_cancellation_frees_them():
    state = {"now": 0, "peak": 0}

    async def handler(request):
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        try:
            await asyncio.sleep(0.05 if request.url.path.endswith("fast") else 30)
        finally:
            state["now"] -= 1
        return httpx.Response(200, json={})

    async def main():
        up = upstream(handler, max_in_flight=3)
        await asyncio.gather(*(up.post_json("fast", {}) for _ in range(10)))
        assert state["peak"] == 3
        slow = [asyncio.ensure_future(up.post_json("slow", {})) for _ in range(5)]
        await asyncio.sleep(0.1)
        assert up.in_flight == 3  # two wait for a slot: never sent
        for t in slow:
            t.cancel()
        await asyncio.gather(*slow, return_exceptions=True)
        assert up.in_flight == 0 and state["now"] == 0
        await up.aclose()
        # 20 in flight spread over small pools, none fuller than its share
        wide = upstream(handler, max_in_flight=20)
        per = -(-20 // len(wide._pools))
        assert len(wide._pools) == -(-20 // _upstream.POOL_SIZE) and per <= _upstream.POOL_SIZE
        many = [asyncio.ensure_future(wide.post_json("slow", {})) for _ in range(25)]
        await asyncio.sleep(0.1)
        assert wide.in_flight == 20 and max(wide._busy) <= per
        for t in many:
            t.cancel()
        await asyncio.gather(*many, return_exceptions=True)
        assert sum(wide._busy) == 0
        await wide.aclose()

    run(main())


def test_the_deadline_covers_the_whole_attempt():
    async def handler(request):
        await asyncio.sleep(5)
        return httpx.Response(200, json={})

    async def main():
        up = upstream(handler, timeout=0.1, retries=1)
        with pytest.raises(OpenAIError, match="timed out after 0.1 s") as info:
            await up.post_json("x", {})
        assert info.value.retryable and info.value.attempts == 2
        await up.aclose()

    run(main())


# -- the upstream client on real sockets (httpcore's connections) ------------------------------

class RawServer:
    """An asyncio HTTP/1.1 server on 127.0.0.1 answering each request with ``reply(i, head,
    body)``: bytes to send (b"": none, the connection stays open), or None to close the
    connection without an answer; ``close_after`` closes it after every answer. Records the
    requests, the connections it accepted and those the client closed."""

    def __init__(self, reply, close_after: bool = False) -> None:
        self.reply, self.close_after = reply, close_after
        self.requests: list[tuple[bytes, bytes]] = []
        self.connections = 0
        self.closed_by_client = 0
        self.closed_by_server = asyncio.Event()

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    def upstream(self, **kw) -> Upstream:
        kw.setdefault("backoff", 0.0)
        return Upstream(f"http://127.0.0.1:{self.port}/v1", **kw)

    async def _handle(self, reader, writer) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
                self.requests.append((head, body))
                out = self.reply(len(self.requests) - 1, head, body)
                if out is None:
                    break
                writer.write(out)
                await writer.drain()
                if self.close_after:
                    break
        except asyncio.IncompleteReadError as end:
            if not end.partial:
                self.closed_by_client += 1
                return
        finally:
            writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        self.closed_by_server.set()


def ok(body: bytes, *extra: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\n" + b"".join(e + b"\r\n" for e in extra) + \
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body


class Kinds(list):
    """An upstream observer that keeps the kinds of the attempts."""

    def attempt(self, kind, seconds):
        self.append(kind)


def test_requests_carry_the_headers_and_reuse_one_connection():
    async def main():
        async with RawServer(lambda i, h, b: ok(b'{"a": %d}' % i, b"Retry-After: 3")) as server:
            up = server.upstream(api_key="k", headers={"X-Trace": "t"})
            got = [await up.post_json("chat/completions", {"q": i}) for i in range(3)]
            await up.aclose()
            return server, got

    server, got = run(main())
    assert got == [{"a": k} for k in range(3)]
    head, body = server.requests[0]
    assert head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    for line in (b"Host: 127.0.0.1:%d" % server.port, b"Content-Length: 8",
                 b"Authorization: Bearer k", b"X-Trace: t", b"Content-Type: application/json"):
        assert line in head.split(b"\r\n")
    assert json.loads(body) == {"q": 0}
    assert server.connections == 1  # kept alive


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 OK\r\n\r\n", b"HTTP/1.1 200 OK\r\nBad Header: 1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", None])
def test_an_answer_that_cannot_be_read_is_a_retryable_connection_error(answer):
    kinds = Kinds()

    async def main():
        async with RawServer(lambda i, h, b: answer, close_after=True) as server:
            up = server.upstream(retries=1, observer=kinds)
            with pytest.raises(OpenAIError, match="Connection error") as info:
                await asyncio.wait_for(up.post_json("x", {}), 5)
            await up.aclose()
            return info.value, len(server.requests)

    err, sent = run(main())
    assert err.retryable and err.attempts == 2 and sent == 2
    assert kinds == ["connection", "connection"]


def test_a_keepalive_connection_the_server_dropped_is_not_reused():
    kinds = Kinds()

    async def main():
        # the server closes each connection once it has answered on it (as a server whose
        # keep-alive timeout ran out while the connection sat idle)
        async with RawServer(lambda i, h, b: ok(b"{}"), close_after=True) as server:
            up = server.upstream(retries=0, observer=kinds)
            for _ in range(3):
                server.closed_by_server.clear()
                assert await up.post_json("x", {}) == {}
                await asyncio.wait_for(server.closed_by_server.wait(), 5)
                await asyncio.sleep(0.01)  # the FIN reaches the client's socket
            await up.aclose()
            return server

    server = run(main())
    assert len(server.requests) == 3 and server.connections == 3
    assert kinds == ["ok", "ok", "ok"]  # no request went out on a dropped connection


def test_idle_connections_expire_before_the_usual_server_timeout(monkeypatch):
    assert _upstream.KEEPALIVE_S < 5.0  # uvicorn's (vLLM's, SGLang's) keep-alive timeout
    monkeypatch.setattr(_upstream, "KEEPALIVE_S", 0.05)

    async def main():
        async with RawServer(lambda i, h, b: ok(b"{}")) as server:
            up = server.upstream()
            for _ in range(3):
                await up.post_json("x", {})
            await asyncio.sleep(0.1)
            await up.post_json("x", {})
            await up.aclose()
            return server.connections

    assert run(main()) == 2


def test_a_cancelled_request_closes_its_connection():
    async def main():
        async with RawServer(lambda i, h, b: b"") as server:  # never answers
            up = server.upstream()
            task = asyncio.ensure_future(up.post_json("x", {}))
            while not server.requests:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            for _ in range(200):
                if server.closed_by_client:
                    break
                await asyncio.sleep(0.01)
            assert server.closed_by_client == 1 and up.in_flight == 0
            await up.aclose()

    run(main())


@pytest.mark.parametrize("answer,match", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\n{",  # the rest is never sent
     "response of 999999999 bytes is larger than max_response_bytes=1000"),
    ((b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
      (b"100\r\n" + b"x" * 256 + b"\r\n") * 5 + b"0\r\n\r\n"),
     "response larger than max_response_bytes=1000"),
    (b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * 5000, "response larger than max_response_bytes=1000"),
])
def test_a_200_body_over_the_cap_is_refused_and_not_retried(answer, match):
    async def main():
        async with RawServer(lambda i, h, b: answer) as server:
            up = server.upstream(max_response_bytes=1000, retries=3)
            with pytest.raises(OpenAIError, match=match) as info:
                await asyncio.wait_for(up.post_json("x", {}), 5)
            await up.aclose()
            return info.value, len(server.requests)

    err, sent = run(main())
    assert not err.retryable and sent == 1


def test_an_error_body_is_cut_and_its_connection_not_reused():
    body = json.dumps({"error": {"message": "m" * 3000}}).encode()
    answer = b"HTTP/1.1 503 Busy\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    async def main():
        async with RawServer(lambda i, h, b: answer) as server:
            up = server.upstream(max_response_bytes=1000, retries=1)
            with pytest.raises(OpenAIError) as info:
                await asyncio.wait_for(up.post_json("x", {}), 5)
            await up.aclose()
            return info.value, server.connections

    err, connections = run(main())
    assert err.status == 503 and err.attempts == 2 and connections == 2


def test_https_verifies_the_certificate(tmp_path, monkeypatch):
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True,
                   timeout=60)
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)

    async def call():
        server = RawServer(lambda i, h, b: ok(b'{"tls": 1}'))
        server.server = await asyncio.start_server(server._handle, "127.0.0.1", 0, ssl=served)
        port = server.server.sockets[0].getsockname()[1]
        up = Upstream(f"https://127.0.0.1:{port}/v1", retries=2, backoff=0)
        try:
            return await asyncio.wait_for(up.post_json("x", {}), 10)
        finally:
            await up.aclose()
            server.server.close()

    with pytest.raises(OpenAIError, match="SSL") as info:  # an unknown issuer: no retry
        run(call())
    assert not info.value.retryable and info.value.attempts == 1
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # now the issuer is trusted
    assert run(call()) == {"tls": 1}


def test_bad_headers_are_refused_up_front():
    for headers in ({"X-A": "b\r\nInjected: 1"}, {"X:A": "b"}, {"X-A": "é"}, {"": "b"},
                    {"X A": "b"}):
        with pytest.raises(ValueError, match="headers"):
            Upstream("http://127.0.0.1:9/v1", headers=headers)


# -- scorers -----------------------------------------------------------------------------------

def test_logprob_confidences_are_documented_numbers_in_the_unit_interval():
    half = math.log(0.5)
    assert mean_confidence([0.0, half]) == pytest.approx(0.75)
    assert mean_confidence([0.0, float("-inf"), None]) == pytest.approx(0.5)
    assert math.isnan(mean_confidence([])) and math.isnan(lowest_window_confidence([None]))
    lp = [0.0] * 10 + [half] * 4 + [0.0] * 10
    assert lowest_window_confidence(lp, window=4) == pytest.approx(0.5)
    assert lowest_window_confidence(lp, window=8) == pytest.approx(0.75)
    assert lowest_window_confidence(lp, window=1000) == pytest.approx(mean_confidence(lp))
    rng = np.random.default_rng(0)
    for _ in range(50):
        values = list(-rng.exponential(1.0, rng.integers(1, 100)))
        low, mean = lowest_window_confidence(values, 16), mean_confidence(values)
        assert 0 <= low <= mean <= 1
    scorer = LogprobConfidence("lowest-window", 2)
    assert run(scorer.score("q", ["a", "b"], [[0.0, half, 0.0], None]))[0] == \
        pytest.approx(0.75)
    with pytest.raises(ValueError, match="method"):
        LogprobConfidence("median")
    with pytest.raises(ValueError, match="window"):
        LogprobConfidence("mean", 0)


def test_pooling_results_become_one_documented_scalar():
    assert _pooled_score(0.3, -1, "last") == 0.3
    assert _pooled_score([0.2, 0.8], -1, "last") == 0.8
    assert _pooled_score([0.2, 0.8], 0, "last") == 0.2
    steps = [[0.1, 0.9], [0.4, 0.6], [0.3, 0.7]]  # a PRM: one (bad, good) pair per step
    assert _pooled_score(steps, -1, "last") == 0.7
    assert _pooled_score(steps, 1, "min") == 0.6
    assert _pooled_score(steps, 1, "mean") == pytest.approx(0.7333333)
    with pytest.raises(TypeError):
        _pooled_score([], -1, "last")


def test_http_scorers_speak_vllm_pooling_classify_and_json():
    seen = []

    def handler(request):
        body = json.loads(request.content)
        seen.append((request.url.path, body))
        if request.url.path == "/pooling":
            n = len(body["input"]) if "input" in body else 1
            return httpx.Response(200, json={"data": [
                {"index": i, "object": "pooling", "data": [[0.5, 0.1 * (i + 1)]]}
                for i in range(n)]})
        if request.url.path == "/classify":
            return httpx.Response(200, json={"data": [
                {"index": i, "probs": [0.25, 0.75]} for i in range(len(body["input"]))]})
        return httpx.Response(200, json={"scores": [len(c) / 10 for c in body["completions"]]})

    async def main():
        client = Upstream("http://rm:1", transport=httpx.MockTransport(handler), backoff=0)
        msgs = HTTPScorer("pooling", "http://rm:1/pooling", client, model="prm")
        assert await msgs.score("q", ["a", "b"], [None, None]) == [0.1, 0.1]
        text = HTTPScorer("pooling", "http://rm:1/pooling", client, input="text")
        assert await text.score("q", ["a", "b"], [None, None]) == pytest.approx([0.1, 0.2])
        cls = HTTPScorer("classify", "http://rm:1/classify", client, input="text")
        assert await cls.score("q", ["a"], [None]) == [0.75]
        generic = HTTPScorer("json", "http://rm:1/score", client)
        assert await generic.score("q", ["abc", "abcdef"], [None, None]) == [0.3, 0.6]
        await client.aclose()

    run(main())
    assert seen[0] == ("/pooling", {"model": "prm", "messages": [
        {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    assert seen[2] == ("/pooling", {"input": ["q\n\na", "q\n\nb"]})
    assert seen[-1] == ("/score", {"prompt": "q", "completions": ["abc", "abcdef"]})


def test_a_malformed_scorer_answer_is_an_error():
    client = Upstream("http://rm:1", transport=httpx.MockTransport(
        lambda r: httpx.Response(200, json={"scores": [0.5]})), backoff=0, retries=3)
    scorer = HTTPScorer("json", "http://rm:1/score", client)
    with pytest.raises(OpenAIError, match="1 scores for 2"):
        run(scorer.score("q", ["a", "b"], [None, None]))
    bad = Upstream("http://rm:1", transport=httpx.MockTransport(
        lambda r: httpx.Response(200, json={"scores": ["x"]})), backoff=0)
    with pytest.raises(OpenAIError, match="unusable response"):
        run(HTTPScorer("json", "http://rm:1/score", bad).score("q", ["a"], [None]))


def test_a_local_scorer_runs_off_the_event_loop():
    threads = []

    class Slow:
        def score(self, prompt, texts):
            threads.append(threading.current_thread().name)
            return [0.5 + 0.1 * i for i in range(len(texts))]

    async def main():
        scorer = LocalScorer(Slow())
        ticks = 0

        async def tick():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        ticker = asyncio.ensure_future(tick())
        scores = await scorer.score("q", ["a", "b"], [None, None])
        ticker.cancel()
        return scores, ticks

    scores, ticks = run(main())
    assert scores == [0.5, 0.6] and threads and threads[0] != threading.main_thread().name
    assert ticks > 0


def test_the_local_hf_reward_scorer_through_the_async_wrapper():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from optscale.sampling._hf import HFRewardScorer
    from tests.test_sampling_hf import gpt2_config, make_tokenizer

    torch.manual_seed(1)
    orm = transformers.GPT2ForSequenceClassification(gpt2_config(num_labels=1)).eval()
    direct = HFRewardScorer(orm, make_tokenizer())
    texts = ["1+1=2", "it is 3", "no idea"]
    wrapped = run(LocalScorer(direct).score("what is 1+1?", texts, [None] * 3))
    np.testing.assert_allclose(wrapped, direct.score("what is 1+1?", texts), rtol=1e-6)


def test_scorer_specs():
    assert parse_scorer("logprob-window") == ("logprob-window", 64)
    assert parse_scorer("logprob-window:8") == ("logprob-window", 8)
    assert parse_scorer("pooling:http://h:1/pooling") == ("pooling", "http://h:1/pooling")
    assert parse_scorer("hf-prm:/models/prm") == ("hf-prm", "/models/prm")
    for bad in ("bogus", "logprob-window:0", "logprob-window:x", "pooling:ftp://h/x",
                "pooling:", "none:1", ""):
        with pytest.raises(ValueError):
            parse_scorer(bad)
    with pytest.raises(ValueError, match="reads scores"):
        ServeConfig("http://h:1/v1", "m", {"default": optscale.FixedN(n_max=2)})
    with pytest.raises(ValueError, match="default"):
        ServeConfig("http://h:1/v1", "m", {"x": optscale.ESC()})
    assert ServeConfig("http://h:1/v1", "m").policies["default"].selection.rule == "vote"


# -- the token bucket and the knobs ----------------------------------------------------------

def test_the_token_bucket_rule():
    now = [0.0]
    bucket = TokenBucket(100.0, burst=2.0, initial_tokens=50.0, clock=lambda: now[0])
    assert bucket.cap(16) == 4  # 200 tokens / 50 per sample
    for _ in range(4):
        bucket.spend(50)
    assert bucket.available == 0 and bucket.cap(16) == 1  # never less than one sample
    bucket.spend(100)  # in debt: samples in flight are not cut short
    assert bucket.available == -100 and bucket.cap(16) == 1
    assert bucket.tokens_per_sample == pytest.approx(52.5)  # the moving mean: 50 -> 100
    now[0] = 2.5  # 250 tokens more: 150 left, at 52.5 tokens per sample
    assert bucket.cap(16) == 2 and bucket.cap(1) == 1
    now[0] = 100.0
    assert bucket.available == 200.0 and bucket.cap(16) == 3  # never above the burst


def test_knobs_reach_hybrid_members_and_asc_threshold():
    hybrid = optscale.AnyOf((optscale.OptScale0(target=0.9, n_peek=2), optscale.ESC()),
                            n_max=16)
    knobs = resolve_knobs({"target": 0.5, "max_n": 4}, {"default": hybrid})
    assert knobs.policy.members[0].target == 0.5 and knobs.max_n == 4
    assert knobs.policy.n_max == 4 and knobs.policy.members[1].n_max == 4
    asc = resolve_knobs({"confidence": 0.8}, {"default": optscale.ASC()}).policy
    assert asc.threshold == 0.8
    with pytest.raises(RequestError) as info:
        resolve_knobs({"target": 0.5}, {"default": optscale.ESC()})
    assert info.value.param == "optscale.target"
    # a budget the policy cannot take (a peek of 4 in 2 samples): kept, capped by the engine
    kept = resolve_knobs({"max_n": 2}, {"default": optscale.OptScale0(target=0.9, n_peek=4)})
    assert kept.policy.n_peek == 4 and kept.max_n == 2


def _engine(handler, policy, scorer=None, **knobs):
    up = upstream(handler)
    job = Job("completion", {"model": "m", "prompt": "q", "n": 1}, "q",
              resolve_knobs(knobs, {"default": policy}))
    return Engine(up, scorer, None), job


def test_the_engine_enforces_max_n_and_reports_failures(numpy_backend):
    async def main():
        ok = lambda r: httpx.Response(200, json=completion("t", 3))  # noqa: E731
        engine, job = _engine(ok, optscale.OptScale0(target=0.99, n_peek=4),
                              LogprobConfidence(), max_n=2)
        out = await engine.run(job)
        assert len(out.samples) == 2 and out.stop_reason == "budget" and out.status == "ok"

        class Broken:
            needs_logprobs, free = False, False

            async def score(self, prompt, texts, logprobs):
                raise RuntimeError("reward model down")

            def describe(self):
                return "broken"

        engine, job = _engine(ok, optscale.FixedN(n_max=3), Broken())
        out = await engine.run(job)
        assert out.status == "scorer_error" and len(out.samples) == 3 and out.chosen == 0

        bad = lambda r: httpx.Response(200, json={"choices": []})  # noqa: E731
        engine, job = _engine(bad, optscale.ESC(window=2, n_max=4))
        out = await engine.run(job)
        assert out.status == "upstream_error" and not out.samples
        assert "unusable response" in str(out.error)

    run(main())


def test_a_second_cancel_while_the_upstream_requests_close_keeps_the_samples(tmp_path):
    # the server stopping: uvicorn cancels the request, then Engine.aclose cancels it again
    # while its cancelled upstream requests are still closing
    calls = {"n": 0}

    async def handler(request):
        calls["n"] += 1
        if calls["n"] == 1:
            return httpx.Response(200, json=completion())
        try:
            await asyncio.sleep(30)
        finally:
            await asyncio.sleep(0.2)  # closing the connection takes a while
        return httpx.Response(200, json=completion())

    async def main():
        log = RequestLog(str(tmp_path / "log.jsonl"))
        engine, job = _engine(handler, optscale.FixedN(n_max=4,
                                                       selection=optscale.Selection("vote")))
        engine.log = log
        task, live = engine.spawn(job)
        for _ in range(200):  # bounded: the four requests are sent, the first is answered
            await asyncio.sleep(0.01)
            if calls["n"] == 4:
                break
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.sleep(0.05)
        await engine.aclose(timeout=5)
        await log.aclose()
        return live

    live = run(main())
    assert live.status == "cancelled" and len(live.samples) == 1
    [record] = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()][1:]
    assert record["status"] == "cancelled" and len(record["samples"]) == 1


# -- the request log ---------------------------------------------------------------------------

def test_the_log_is_on_disk_when_the_future_completes_and_survives_a_cancel(tmp_path):
    path = tmp_path / "log.jsonl"

    async def main():
        log = RequestLog(str(path), meta={"model": "m"})
        await log.submit({"id": "a", "samples": [{"score": 0.5, "tokens": 1}]})
        lines = path.read_text().splitlines()
        assert json.loads(lines[0])["meta"]["model"] == "m" and json.loads(lines[1])["id"] == "a"

        async def cancelled_request():
            log.submit({"id": "b", "samples": [{"score": 0.1, "tokens": 2}]})
            await asyncio.sleep(10)

        task = asyncio.ensure_future(cancelled_request())
        await asyncio.sleep(0.01)
        task.cancel()
        await log.aclose()  # the queued line is written before the file closes

    run(main())
    assert [json.loads(x).get("id") for x in path.read_text().splitlines()] == [None, "a", "b"]

    async def reopen():  # appending to an existing log: no second meta line
        log = RequestLog(str(path))
        await log.submit({"id": "c", "samples": [{"score": 0.2, "tokens": 2}]})
        await log.aclose()

    run(reopen())
    lines = path.read_text().splitlines()
    assert len(lines) == 4 and sum("meta" in json.loads(x) for x in lines) == 1


def test_one_fsync_covers_the_lines_queued_meanwhile_and_no_future_completes_before_it(
        tmp_path, monkeypatch):
    import os

    path = tmp_path / "log.jsonl"
    real_fsync = os.fsync
    gate = threading.Event()
    synced = []  # the file's size when each fsync returned

    def fsync(fd):
        gate.wait(10)  # the first record's fsync is held: the others queue meanwhile
        real_fsync(fd)
        synced.append(os.fstat(fd).st_size)

    async def main():
        log = RequestLog(str(path))
        monkeypatch.setattr(os, "fsync", fsync)
        seen = {}  # record id -> the durable size when its future completed

        def submit(i):
            future = log.submit({"id": f"r{i}", "samples": [{"score": 0.5, "tokens": i}]})
            future.add_done_callback(lambda f, i=i: seen.setdefault(f"r{i}", max(synced)))
            return future

        first = submit(0)
        await asyncio.sleep(0.05)  # its write is done and its fsync is held
        rest = [submit(i) for i in range(1, 40)]
        await asyncio.sleep(0.05)
        assert not first.done() and not any(f.done() for f in rest)
        assert len(path.read_text().splitlines()) == 2  # written, not yet answered
        gate.set()
        await asyncio.gather(first, *rest)
        await log.aclose()
        return seen

    seen = run(main())
    assert len(synced) == 2  # two fsyncs for 40 records: the first, then all the others
    text = path.read_bytes()
    for rid, durable in seen.items():
        end = text.index(b'"id": "%s"' % rid.encode())
        end = text.index(b"\n", end) + 1
        assert end <= durable, rid  # its line was on disk when its future completed


def test_a_failed_fsync_fails_the_futures_and_the_log_goes_on(tmp_path, monkeypatch):
    import os

    path = tmp_path / "log.jsonl"
    real_fsync = os.fsync
    fail = {"on": True}

    def fsync(fd):
        if fail["on"]:
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    async def main():
        log = RequestLog(str(path))
        monkeypatch.setattr(os, "fsync", fsync)
        with pytest.raises(OSError, match="Input/output"):
            await log.submit({"id": "lost", "samples": []})
        fail["on"] = False
        await log.submit({"id": "kept", "samples": []})
        await log.aclose()

    run(main())
    assert [json.loads(x).get("id") for x in path.read_text().splitlines()][-1] == "kept"


def _pool_lines(path):
    """The log's lines, each parsed (a line glued onto a broken one fails here)."""
    from optscale.replay import load_pool

    text = path.read_bytes()
    assert text.endswith(b"\n")
    lines = [json.loads(x) for x in text.decode().splitlines()]
    if len(lines) > 1:
        load_pool(str(path))  # what optscale replay / tune read
    return lines


def test_a_write_that_fails_part_way_is_cut_back_to_the_last_whole_line(tmp_path, monkeypatch):
    import errno
    import os

    path = tmp_path / "log.jsonl"
    real_write = os.write
    full = {"on": False}

    def write(fd, data):  # a disk that fills up in the middle of a line
        if full["on"]:
            full["on"] = False
            real_write(fd, bytes(data[:len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    sample = {"score": 0.5, "tokens": 1, "answer": "1", "text": "x"}

    async def main():
        log = RequestLog(str(path), max_bytes=10_000)
        await log.submit({"id": "a", "gold": "1", "samples": [sample]})
        monkeypatch.setattr(os, "write", write)
        full["on"] = True
        with pytest.raises(OSError, match="No space"):
            await log.submit({"id": "half", "gold": "1", "samples": [sample]})
        assert log._size == path.stat().st_size  # rotation reads it
        await log.submit({"id": "b", "gold": "1", "samples": [sample]})
        assert log._size == path.stat().st_size
        await log.aclose()

    run(main())
    assert [x.get("id") for x in _pool_lines(path)] == [None, "a", "b"]


def test_a_log_left_in_the_middle_of_a_line_is_cut_back_when_reopened(tmp_path):
    path = tmp_path / "log.jsonl"
    sample = {"score": 0.5, "tokens": 1, "answer": "1", "text": "x"}

    async def append(rid):
        log = RequestLog(str(path))
        await log.submit({"id": rid, "gold": "1", "samples": [sample]})
        await log.aclose()

    run(append("a"))
    with open(path, "ab") as f:  # a crash in the middle of the next line
        f.write(b'{"id": "x", "question": "ha')
    run(append("b"))
    assert [x.get("id") for x in _pool_lines(path)] == [None, "a", "b"]

    path.write_bytes(b'{"meta": {"sou')  # a crash while the meta line was written
    run(append("c"))
    lines = _pool_lines(path)
    assert "meta" in lines[0] and [x.get("id") for x in lines[1:]] == ["c"]


def test_rotation_numbers_files_after_the_existing_ones(tmp_path):
    path = tmp_path / "req.jsonl"
    (tmp_path / "req.7.jsonl").write_text("")  # from an earlier run: never overwritten

    async def main():
        log = RequestLog(str(path), max_bytes=200)
        for i in range(3):
            await log.submit({"id": str(i), "samples": [{"score": 0.5, "tokens": 1,
                                                         "text": "x" * 80}]})
        await log.aclose()
        return log.rotations

    assert run(main()) == 2
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["req.7.jsonl", "req.8.jsonl", "req.9.jsonl", "req.jsonl"]
    for name in names[1:]:
        lines = (tmp_path / name).read_text().splitlines()
        assert "meta" in json.loads(lines[0]) and len(lines) == 2


def test_a_null_score_is_an_unscored_sample(tmp_path):
    from optscale.replay import load_pool, write_jsonl

    path = tmp_path / "pool.jsonl"
    path.write_text(
        json.dumps({"id": "a", "gold": "1", "samples": [
            {"score": None, "tokens": 3, "answer": "1"},
            {"score": 0.5, "tokens": 2, "answer": "2"}]}) + "\n" +
        json.dumps({"id": "b", "gold": "2", "samples": [
            {"score": 0.25, "tokens": 1, "answer": "2"}]}) + "\n")
    pool = load_pool(str(path))
    assert np.isnan(pool.scores[0, 0]) and pool.scores[0, 1] == 0.5
    assert list(pool.lengths) == [2, 1] and pool.correct[0, 0]
    again = tmp_path / "again.jsonl"
    write_jsonl(pool, str(again))  # NaN goes back out as null, and reads back equal
    assert json.loads(again.read_text().splitlines()[1])["samples"][0]["score"] is None
    np.testing.assert_array_equal(load_pool(str(again)).scores, pool.scores)


def test_a_null_score_never_escapes_as_anything_but_a_format_error(tmp_path):
    from optscale.replay import PoolFormatError, load_pool

    path = tmp_path / "pool.jsonl"
    path.write_text(json.dumps({"id": "a", "samples": [{"score": None}]}) + "\n")
    try:
        pool = load_pool(str(path))
    except PoolFormatError as err:
        assert "samples[0].score" in str(err)
    else:
        assert np.isnan(pool.scores[0, 0])
