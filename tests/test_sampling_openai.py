"""OpenAIGenerator over real HTTP against the test server: both endpoints, token counts, order,
splitting, retries (timeouts, 5xx, 429; not 4xx), cancellation and an end-to-end run."""

import socket
import threading
import time
import zlib

import numpy as np
import pytest

import optscale
from optscale.sampling import CallableScorer, Generator
from optscale.sampling._openai import OpenAIError, OpenAIGenerator
from tests._openai_server import EchoBackend, OpenAIServer

MODEL = "test-model"


def echo(prompt, ks):
    """What EchoBackend returns for ``prompt`` draws ``ks``."""
    return [(f"{prompt}#{k}", 3 + k % 5) for k in ks]


def test_completions_with_n_and_sampling_kwargs_in_the_body():
    backend = EchoBackend()
    with OpenAIServer(backend, token_counts="choice") as server, \
            OpenAIGenerator(server.url, MODEL, max_tokens=64, concurrency=3,
                            extra_body={"top_k": 5, "temperature": 1.0}) as gen:
        assert isinstance(gen, Generator)
        out = gen.generate(["a", "b", "c"], 3, temperature=0.7, top_p=0.9, stop=["\n"], seed=5)
        assert [[tuple(s) for s in row] for row in out] == [echo(p, range(3)) for p in "abc"]
        assert server.count == 3 and server.completions == 9
        for rec in server.records:
            assert rec.path == "/v1/completions"
            assert rec.body == {"model": MODEL, "max_tokens": 64, "top_k": 5, "temperature": 0.7,
                                "top_p": 0.9, "stop": ["\n"], "seed": 5, "n": 3,
                                "prompt": rec.prompt}
        assert all(call[2]["temperature"] == 0.7 for call in backend.calls)


def test_chat_endpoint_with_system_prompt_and_logprob_token_counts():
    with OpenAIServer(EchoBackend()) as server, \
            OpenAIGenerator(server.url, MODEL, chat=True, system_prompt="be brief") as gen:
        out = gen.generate(["x", "y"], 4, logprobs=True)
        assert [[tuple(s) for s in row] for row in out] == [echo(p, range(4)) for p in "xy"]
        for rec in server.records:
            assert rec.path == "/v1/chat/completions" and rec.body["n"] == 4
            assert rec.body["messages"] == [{"role": "system", "content": "be brief"},
                                            {"role": "user", "content": rec.prompt}]
            assert "prompt" not in rec.body


def test_token_counts_from_usage_need_one_choice_or_count_tokens():
    with OpenAIServer(EchoBackend(), token_counts="usage") as server:
        with OpenAIGenerator(server.url, MODEL, backoff=0) as gen:
            with pytest.raises(OpenAIError, match="count_tokens") as info:
                gen.generate(["q"], 2)
            assert server.count == 1 and info.value.status == 200  # not retried
        with OpenAIGenerator(server.url, MODEL, max_n_per_request=1) as gen:
            row = gen.generate(["r"], 3)[0]  # three requests of one choice: usage is per choice
            assert sorted(tuple(s) for s in row) == echo("r", range(3))
            assert server.count == 4
        with OpenAIGenerator(server.url, MODEL, count_tokens=len) as gen:
            assert [tuple(s) for s in gen.generate(["s"], 2)[0]] == [("s#0", 3), ("s#1", 3)]


def test_prompt_order_is_kept_when_answers_arrive_out_of_order():
    prompts = [f"p{i}" for i in range(6)]
    delays = {p: 0.03 * (6 - i) for i, p in enumerate(prompts)}  # the first prompt is slowest
    with OpenAIServer(EchoBackend(), token_counts="choice",
                      delay=lambda body: delays[body["prompt"]]) as server, \
            OpenAIGenerator(server.url, MODEL, concurrency=6) as gen:
        out = gen.generate(prompts, 2)
        assert [[s.text for s in row] for row in out] == [[f"{p}#0", f"{p}#1"] for p in prompts]
        finished = sorted(server.records, key=lambda r: r.ended)
        assert [r.prompt for r in finished] != prompts  # they really did finish out of order


def test_max_n_per_request_splits_n():
    with OpenAIServer(EchoBackend(), token_counts="choice") as server, \
            OpenAIGenerator(server.url, MODEL, max_n_per_request=2, concurrency=4) as gen:
        out = gen.generate(["a", "b"], 5, seed=10)
        for p, row in zip("ab", out, strict=True):
            assert sorted(s.text for s in row) == [f"{p}#{k}" for k in range(5)]
        assert server.count == 6
        for p in "ab":
            got = sorted((r.body["n"], r.body["seed"]) for r in server.records if r.prompt == p)
            assert sorted(n for n, _ in got) == [1, 2, 2]
            assert sorted(s for _, s in got) == [10, 11, 12]  # chunks differ by seed


def test_timeout_is_retried_a_bounded_number_of_times_then_raises():
    with OpenAIServer(EchoBackend(), delay=2.0) as server, \
            OpenAIGenerator(server.url, MODEL, timeout=0.1, retries=2, backoff=0.01) as gen:
        t0 = time.monotonic()
        with pytest.raises(OpenAIError, match="timed out") as info:
            gen.generate(["slow"], 1)
        assert time.monotonic() - t0 < 1.5
        err = info.value
        assert err.status is None and err.attempts == 3 and server.url in str(err)
        assert err.partial == [[]]
        assert server.count == 3
        # the client closed each timed-out connection: the server saw them abandoned
        assert server.wait_for(lambda s: len(s.abandoned()) == 3, timeout=2)


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_errors_are_retried(status):
    with OpenAIServer(EchoBackend(), token_counts="choice") as server:
        server.fail_next(1, status)
        with OpenAIGenerator(server.url, MODEL, retries=1, backoff=0.01) as gen:
            assert [s.text for s in gen.generate(["q"], 2)[0]] == ["q#0", "q#1"]
        assert server.count == 2
        server.fail_next(2, status, "overloaded")
        with OpenAIGenerator(server.url, MODEL, retries=1, backoff=0.01) as gen:
            with pytest.raises(OpenAIError, match="overloaded") as info:
                gen.generate(["q"], 2)
        assert info.value.status == status and info.value.attempts == 2 and server.count == 4


def test_client_errors_are_not_retried():
    with OpenAIServer(EchoBackend()) as server, \
            OpenAIGenerator(server.url, MODEL, retries=3, backoff=5.0) as gen:
        server.fail_next(1, 400, "temperature must be >= 0")
        t0 = time.monotonic()
        with pytest.raises(OpenAIError, match="temperature must be >= 0") as info:
            gen.generate(["q"], 1, temperature=-1)
        assert time.monotonic() - t0 < 2 and server.count == 1
        assert info.value.status == 400 and "HTTP 400" in str(info.value)


def test_connection_refused_is_retried_then_raises():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with OpenAIGenerator(f"http://127.0.0.1:{port}/v1", MODEL, retries=2, backoff=0.01) as gen:
        with pytest.raises(OpenAIError, match="Connection") as info:
            gen.generate(["q"], 1)
    assert info.value.attempts == 3 and info.value.retryable


def test_a_failure_cancels_the_rest_and_keeps_what_was_received():
    prompts = [f"p{i}" for i in range(6)]
    with OpenAIServer(EchoBackend(), token_counts="choice", fail_prompts={"p2": 400},
                      delay=lambda body: 0.0 if body["prompt"] in ("p0", "p1") else 3.0
                      ) as server, \
            OpenAIGenerator(server.url, MODEL, concurrency=2, backoff=0.01) as gen:
        t0 = time.monotonic()
        with pytest.raises(OpenAIError, match="refused") as info:
            gen.generate(prompts, 2)
        assert time.monotonic() - t0 < 2.5  # did not wait for p3's slow answer (3 s)
        partial = info.value.partial
        rows = [[s.text for s in row] for row in partial]
        # p2 starts when p0 or p1 has finished (concurrency 2); the other may still be in
        # flight when p2's 400 cancels the call: it is then abandoned, never half-kept
        assert rows[2:] == [[], [], [], []]
        assert all(row in ([], [f"p{i}#0", f"p{i}#1"]) for i, row in enumerate(rows[:2]))
        assert rows[0] or rows[1]
        time.sleep(0.2)
        assert {r.prompt for r in server.records} <= {"p0", "p1", "p2", "p3"}  # p4, p5 unsent
        assert server.wait_for(lambda s: not s.in_flight(), timeout=2)


def test_cancel_from_another_thread_returns_promptly_with_what_was_received():
    prompts = [f"p{i}" for i in range(6)]
    with OpenAIServer(EchoBackend(), token_counts="choice",
                      delay=lambda body: 0.0 if body["prompt"] == "p0" else 5.0) as server, \
            OpenAIGenerator(server.url, MODEL, concurrency=2) as gen:

        def cancel_when_two_are_in_flight():
            assert server.wait_for(lambda s: s.count == 3 and len(s.in_flight()) == 2)
            gen.cancel()

        canceller = threading.Thread(target=cancel_when_two_are_in_flight)
        canceller.start()
        t0 = time.monotonic()
        out = gen.generate(prompts, 3)
        elapsed = time.monotonic() - t0
        canceller.join()
        assert elapsed < 2.0
        assert [[s.text for s in row] for row in out] == \
            [["p0#0", "p0#1", "p0#2"], [], [], [], [], []]
        time.sleep(0.2)
        assert server.count == 3  # p3..p5 were never sent
        assert server.wait_for(lambda s: len(s.abandoned()) == 2, timeout=2)
        assert {r.prompt for r in server.abandoned()} == {"p1", "p2"}
        # the next call is not affected by the earlier cancel
        server.delay = 0.0
        assert [s.text for s in gen.generate(["p9"], 1)[0]] == ["p9#0"]


def test_close_and_argument_checks():
    with OpenAIServer(EchoBackend(), token_counts="choice") as server:
        gen = OpenAIGenerator(server.url, MODEL)
        gen.cancel()  # nothing running: a no-op
        assert gen.generate(["a"], 0) == [[]] and gen.generate([], 3) == []
        with pytest.raises(ValueError, match="prompt"):
            gen.generate(["a"], 1, prompt="b")
        with pytest.raises(TypeError):
            gen.generate("abc", 1)
        gen.close()
        with pytest.raises(OpenAIError, match="closed"):
            gen.generate(["a"], 1)
        assert server.count == 0
    with pytest.raises(ValueError, match="base_url"):
        OpenAIGenerator("localhost:8000", MODEL)
    with pytest.raises(ValueError, match="max_n_per_request"):
        OpenAIGenerator("http://localhost:8000/v1", MODEL, max_n_per_request=0)


def seeded_scores(prompt, texts):
    rng = [np.random.default_rng(zlib.crc32(t.encode())) for t in texts]
    return [float(np.clip(r.normal(0.6, 0.15), 0, 1)) for r in rng]


def test_end_to_end_run_draws_exactly_what_the_server_served():
    policy = optscale.OptScale0(target=0.9, n_peek=4, n_max=16)
    with OpenAIServer(EchoBackend(), token_counts="choice") as server, \
            OpenAIGenerator(server.url, MODEL, chat=True) as gen:
        result = optscale.run("hard: prove it", gen, CallableScorer(seeded_scores), policy,
                              temperature=0.8)
        assert result.ok and 4 <= result.n_used <= 16
        assert server.completions == result.n_used and server.count >= 1
        assert result.tokens == sum(3 + k % 5 for k in range(result.n_used))
        assert len({s.text for s in result.samples}) == result.n_used
        assert all(r.body["temperature"] == 0.8 for r in server.records)


def test_tiny_gpt2_served_over_http():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from tests._openai_server import TinyGPT2Backend

    with OpenAIServer(TinyGPT2Backend(seed=0), token_counts="usage") as server, \
            OpenAIGenerator(server.url, MODEL, max_tokens=8) as gen:
        out = gen.generate(["What is 2+2?", "Name a color."], 3, temperature=1.0, logprobs=1)
        assert [len(row) for row in out] == [3, 3]
        for row in out:
            for s in row:
                assert isinstance(s.text, str) and 1 <= s.tokens <= 8
                assert len(s.text) <= s.tokens  # one character per token at most
        assert server.completions == 6
        result = optscale.run("2+2?", gen, CallableScorer(seeded_scores),
                              optscale.OptScale0(target=0.9, n_peek=2, n_max=4), logprobs=1)
        assert result.ok and server.completions == 6 + result.n_used


# -- reliability: deadline, size cap, malformed choices, argument checks, interrupts ------------

def test_a_trickling_server_is_cut_off_at_the_deadline():
    # one byte every 0.05 s: no single read waits long, so only a total deadline stops it
    with OpenAIServer(EchoBackend(), token_counts="choice", trickle=0.05) as server, \
            OpenAIGenerator(server.url, MODEL, timeout=0.6, retries=0) as gen:
        t0 = time.monotonic()
        with pytest.raises(OpenAIError, match="timed out after 0.6 s") as info:
            gen.generate(["slow"], 2)
        assert time.monotonic() - t0 < 1.5 and info.value.retryable
        assert info.value.partial == [[]] and server.count == 1


@pytest.mark.parametrize("send_length", [True, False])
def test_a_response_larger_than_the_cap_is_refused(send_length):
    body = b'{"choices": [{"text": "' + b"x" * 5000 + b'", "usage": {"completion_tokens": 1}}]}'
    with OpenAIServer(EchoBackend(), raw_body=body, send_length=send_length) as server:
        with OpenAIGenerator(server.url, MODEL, max_response_bytes=1000, retries=2) as gen:
            with pytest.raises(OpenAIError, match="max_response_bytes=1000") as info:
                gen.generate(["big"], 1)
            assert not info.value.retryable and server.count == 1  # not retried
        with OpenAIGenerator(server.url, MODEL) as gen:  # the default cap (16 MiB) lets it in
            assert gen.generate(["big"], 1)[0][0].tokens == 1


def test_unusable_bodies_are_not_retried():
    for body in (b"not json", b'{"choices": 3}', b'{"choices": [1, 2]}', b"[" * 100000):
        with OpenAIServer(EchoBackend(), raw_body=body) as server, \
                OpenAIGenerator(server.url, MODEL, retries=2, backoff=0) as gen:
            with pytest.raises(OpenAIError, match="unusable response"):
                gen.generate(["q"], 1)
            assert server.count == 1


def _spoil_second_choice(chat):
    spoiled = []

    def mutate(answer):
        if not spoiled and len(answer["choices"]) > 1:
            spoiled.append(answer["choices"][1])
            if chat:
                answer["choices"][1]["message"]["content"] = ["not", "text"]
            else:
                answer["choices"][1]["text"] = 42
        return answer
    return mutate


@pytest.mark.parametrize("chat", [False, True])
def test_a_non_string_text_fails_only_its_sample(chat):
    with OpenAIServer(EchoBackend(), token_counts="choice", mutate=_spoil_second_choice(chat)
                      ) as server, OpenAIGenerator(server.url, MODEL, chat=chat) as gen:
        with pytest.raises(OpenAIError, match="not a string") as info:
            gen.generate(["a", "b"], 3)
        partial = [[tuple(s) for s in row] for row in info.value.partial]
        spoiled = [p for p in "ab" if len(partial["ab".index(p)]) == 2]
        assert len(spoiled) == 1 and server.count == 2  # the other request completed
        for p, row in zip("ab", partial, strict=True):
            expected = echo(p, range(3))
            assert row == ([expected[0], expected[2]] if p in spoiled else expected)


def test_run_keeps_the_usable_choices_and_asks_only_for_the_missing_one():
    policy = optscale.OptScale0(target=0.9, n_peek=4, n_max=4)
    with OpenAIServer(EchoBackend(), token_counts="choice", mutate=_spoil_second_choice(False)
                      ) as server, OpenAIGenerator(server.url, MODEL) as gen:
        r = optscale.run("q", gen, CallableScorer(seeded_scores), policy, backoff=0)
        assert r.ok and r.n_used == 4 and len({s.text for s in r.samples}) == 4
        assert [rec.body["n"] for rec in server.records] == [4, 1]
        assert server.completions == 5  # 4 paid for in the first answer: 3 kept, 1 unusable


def test_an_interrupt_while_waiting_hands_back_what_arrived(monkeypatch):
    from optscale.sampling import _openai

    real_wait = _openai.wait

    def interrupted_wait(fs, **kw):
        done, pending = real_wait(fs, **kw)
        if any(f.done() and not f.cancelled() and f.exception() is None for f in done
               if f is not None):
            raise KeyboardInterrupt
        return done, pending

    monkeypatch.setattr(_openai, "wait", interrupted_wait)
    with OpenAIServer(EchoBackend(), token_counts="choice",
                      delay=lambda body: 0.0 if body["prompt"] == "p0" else 5.0) as server, \
            OpenAIGenerator(server.url, MODEL, concurrency=3) as gen:
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt) as info:
            gen.generate(["p0", "p1", "p2"], 2)
        assert time.monotonic() - t0 < 2.0
        assert [[s.text for s in row] for row in info.value.partial] == [["p0#0", "p0#1"], [], []]
        assert server.wait_for(lambda s: not s.in_flight(), timeout=2)


@pytest.mark.parametrize("kwargs,error,name", [
    ({"timeout": 0}, ValueError, "timeout"), ({"timeout": float("inf")}, ValueError, "timeout"),
    ({"timeout": 1e12}, ValueError, "timeout"),
    ({"timeout": "5"}, TypeError, "timeout"), ({"retries": -1}, ValueError, "retries"),
    ({"retries": 2.0}, TypeError, "retries"), ({"backoff": float("nan")}, ValueError, "backoff"),
    ({"concurrency": 0}, ValueError, "concurrency"), ({"concurrency": True}, TypeError,
                                                      "concurrency"),
    ({"max_tokens": 0}, ValueError, "max_tokens"),
    ({"max_n_per_request": 1.5}, TypeError, "max_n_per_request"),
    ({"max_response_bytes": 0}, ValueError, "max_response_bytes"),
    ({"headers": {"X-A": "b\r\nInjected: 1"}}, ValueError, "headers"),
    ({"extra_body": {"x": object()}}, TypeError, "extra_body"),
    ({"count_tokens": 3}, TypeError, "count_tokens"), ({"chat": "yes"}, TypeError, "chat"),
    ({"model": ""}, TypeError, "model"), ({"api_key": 5}, TypeError, "api_key"),
])
def test_constructor_arguments_are_checked_up_front(kwargs, error, name):
    args = {"model": MODEL, **kwargs}
    with pytest.raises(error, match=name):
        OpenAIGenerator("http://127.0.0.1:9/v1", **args)


def test_generate_arguments_are_checked():
    with OpenAIServer(EchoBackend(), token_counts="choice") as server, \
            OpenAIGenerator(server.url, MODEL) as gen:
        for n, error in ((-1, ValueError), (1.5, TypeError), (True, TypeError)):
            with pytest.raises(error, match="n must"):
                gen.generate(["a"], n)
        with pytest.raises(TypeError, match=r"prompts\[1\]"):
            gen.generate(["a", None], 1)
        assert server.count == 0
    with pytest.raises(ValueError, match="base_url"):
        OpenAIGenerator("http://127.0.0.1:99999/v1", MODEL)


def test_retry_waits_are_capped():
    from optscale.sampling._openai import _retry_delay

    assert [_retry_delay(1.0, k, None) for k in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert _retry_delay(0.5, 0, 1e9) == 30 and _retry_delay(0.5, 0, 3.0) == 3.0
    assert _retry_delay(60.0, 5, None) == 60.0 and _retry_delay(0.5, 10**6, None) == 30
