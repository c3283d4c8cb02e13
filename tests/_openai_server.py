"""A small OpenAI-compatible HTTP server for tests, serving any ``Generator`` backend.

``POST /v1/completions`` and ``/v1/chat/completions`` with ``n``: ``choices[i].text`` /
``choices[i].message.content``, ``usage.completion_tokens`` (and per-choice counts or logprobs
as configured). Fault injection: ``delay`` (seconds, or ``fn(body) -> seconds``),
:meth:`OpenAIServer.fail_next`, ``fail_prompts`` (prompt -> HTTP status), ``mutate`` (edit the
answer before it is sent), ``raw_body`` (send these bytes instead, with or without a
Content-Length) and ``trickle`` (send the response one byte at a time). ``logprobs`` sets the
token log-probabilities it reports, and ``routes`` adds JSON endpoints (a reward model for
``optscale serve``'s scorers). Every request is
recorded (:attr:`OpenAIServer.records`) with its status: ``in_flight``, ``done``, ``failed``
(an injected or backend error) or ``abandoned`` (the client closed the connection before the
answer).

    with OpenAIServer(EchoBackend()) as server:
        OpenAIGenerator(server.url, "test-model")...
"""

from __future__ import annotations

import dataclasses
import json
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from optscale.sampling import Sample

__all__ = ["AnswerBackend", "EchoBackend", "OpenAIServer", "Record", "TinyGPT2Backend"]

_NOT_SAMPLING = ("model", "prompt", "messages", "n", "stream")


@dataclasses.dataclass
class Record:
    """One request the server received."""

    id: int
    path: str
    body: dict[str, Any]
    status: str = "in_flight"  # in_flight | done | failed | abandoned
    http_status: int | None = None
    choices: int = 0  # completions sent back (done only)
    started: float = dataclasses.field(default_factory=time.monotonic)
    ended: float | None = None

    @property
    def prompt(self) -> str:
        if "messages" in self.body:
            return self.body["messages"][-1]["content"]
        return self.body.get("prompt", "")


class EchoBackend:
    """Deterministic ``"<prompt>#<k>"`` with ``k`` counting per prompt; ``tokens`` = 3 + k % 5.

    Records every ``generate`` call as ``(prompts, n, sampling)``.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], int, dict[str, Any]]] = []
        self.counter: dict[str, int] = {}
        self._lock = threading.Lock()

    def generate(self, prompts: Sequence[str], n: int, **sampling: Any) -> list[list[Sample]]:
        with self._lock:
            self.calls.append((list(prompts), n, sampling))
            out = []
            for p in prompts:
                k0 = self.counter.get(p, 0)
                self.counter[p] = k0 + n
                out.append([Sample(f"{p}#{k}", 3 + k % 5) for k in range(k0, k0 + n)])
            return out


class AnswerBackend:
    """Sample ``k`` of a prompt is ``"<prompt> #k: ... \\boxed{answers[k % len]}"`` (tokens 3 +
    k % 5): votes over these answers are as interesting as ``answers`` makes them."""

    def __init__(self, answers: Sequence[str]) -> None:
        self.answers = list(answers)
        self.counter: dict[str, int] = {}
        self._lock = threading.Lock()

    def generate(self, prompts: Sequence[str], n: int, **sampling: Any) -> list[list[Sample]]:
        with self._lock:
            out = []
            for p in prompts:
                k0 = self.counter.get(p, 0)
                self.counter[p] = k0 + n
                out.append([Sample(f"{p} #{k}: so \\boxed{{{self.answers[k % len(self.answers)]}}}",
                                   3 + k % 5) for k in range(k0, k0 + n)])
            return out


class TinyGPT2Backend:
    """A random-weights 1-layer GPT-2 on a character vocabulary (no downloads).

    Samples with ``model.generate(do_sample=True, num_return_sequences=n, max_new_tokens=8)``
    (fewer new tokens if ``max_tokens`` asks); tokens = new tokens up to and including EOS.
    """

    def __init__(self, seed: int = 0, max_new_tokens: int = 8) -> None:
        import torch
        from tokenizers import Tokenizer, decoders, models
        from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

        chars = [chr(c) for c in range(32, 127)]
        vocab = {"<unk>": 0, "<eos>": 1, **{c: i + 2 for i, c in enumerate(chars)}}
        tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
        tok.decoder = decoders.Fuse()
        self.tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>",
                                                 eos_token="<eos>", pad_token="<eos>")
        torch.manual_seed(seed)
        config = GPT2Config(vocab_size=len(vocab), n_positions=64, n_embd=16, n_layer=1,
                            n_head=2, bos_token_id=1, eos_token_id=1, pad_token_id=1)
        self.model = GPT2LMHeadModel(config).eval()
        self.max_new_tokens = max_new_tokens
        self._torch = torch
        self._lock = threading.Lock()

    def generate(self, prompts: Sequence[str], n: int, **sampling: Any) -> list[list[Sample]]:
        torch = self._torch
        new = max(1, min(self.max_new_tokens, int(sampling.get("max_tokens") or 8)))
        out = []
        with self._lock, torch.no_grad():
            if sampling.get("seed") is not None:
                torch.manual_seed(int(sampling["seed"]))
            for p in prompts:
                ids = self.tokenizer(p or " ", return_tensors="pt")["input_ids"][:, -48:]
                gen = self.model.generate(
                    ids, attention_mask=torch.ones_like(ids), do_sample=True,
                    num_return_sequences=n, max_new_tokens=new,
                    temperature=float(sampling.get("temperature") or 1.0),
                    top_p=float(sampling.get("top_p") or 1.0), pad_token_id=1)
                row = []
                for seq in gen[:, ids.shape[1]:].tolist():
                    used = seq.index(1) + 1 if 1 in seq else len(seq)
                    text = self.tokenizer.decode(seq[:used], skip_special_tokens=True)
                    row.append(Sample(text, used))
                out.append(row)
        return out


class OpenAIServer:
    """An OpenAI-compatible server on 127.0.0.1 (a free port) in a background thread.

    Args:
        backend: anything with ``generate(prompts, n, **sampling)``; it gets one prompt per
            request (chat: the last message's content) and the body's other keys as sampling.
        delay: seconds to wait before answering (or ``fn(body) -> seconds``); the wait ends
            early, marking the request ``abandoned``, if the client disconnects.
        token_counts: ``"usage"`` (only ``usage.completion_tokens``, like vLLM), ``"choice"``
            (also ``choices[i].usage.completion_tokens``) or ``"none"``. Logprobs (one entry
            per token) are added when the request asks for them.
        fail_prompts: prompt -> HTTP status to always answer with (an error body).
        fail_when: ``fn(body) -> HTTP status or None``: answer that request with the status.
        mutate: ``fn(answer) -> answer``, applied to every successful answer before sending
            (non-string texts, odd choices...).
        raw_body: bytes sent as the 200 answer instead of the JSON (or ``fn(record) ->
            bytes``); ``send_length=False`` leaves out Content-Length (the body then ends when
            the connection closes).
        trickle: seconds between single bytes of the response (status line, headers, body);
            the sending stops when the client disconnects or the server stops.
        logprobs: ``fn(text, tokens) -> list of floats`` (one per token), the log-probabilities
            reported when a request asks for them (default -1.0 each).
        routes: path -> ``fn(body) -> answer object`` for other POST endpoints (recorded like
            the others; they are also subject to ``fail_next``).
    """

    def __init__(self, backend: Any, *, delay: float | Callable[[dict[str, Any]], float] = 0.0,
                 token_counts: str = "usage", fail_prompts: dict[str, int] | None = None,
                 fail_when: Callable[[dict[str, Any]], int | None] | None = None,
                 mutate: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 raw_body: bytes | Callable[[Record], bytes] | None = None,
                 send_length: bool = True, trickle: float = 0.0,
                 logprobs: Callable[[str, int], list[float]] | None = None,
                 routes: dict[str, Callable[[dict[str, Any]], Any]] | None = None) -> None:
        if token_counts not in ("usage", "choice", "none"):
            raise ValueError(f"token_counts must be usage, choice or none; got {token_counts}")
        self.backend = backend
        self.delay = delay
        self.token_counts = token_counts
        self.fail_prompts = dict(fail_prompts or {})
        self.fail_when = fail_when
        self.mutate = mutate
        self.raw_body = raw_body
        self.send_length = send_length
        self.trickle = trickle
        self.logprobs = logprobs
        self.routes = dict(routes or {})
        self.records: list[Record] = []
        self._fail: list[tuple[int, str]] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- controls --------------------------------------------------------------------------

    def fail_next(self, k: int = 1, status: int = 500, message: str = "injected failure") -> None:
        """Answer the next ``k`` requests with HTTP ``status``."""
        with self._lock:
            self._fail.extend([(status, message)] * k)

    @property
    def count(self) -> int:
        """Requests received so far."""
        with self._lock:
            return len(self.records)

    def with_status(self, status: str) -> list[Record]:
        with self._lock:
            return [r for r in self.records if r.status == status]

    def in_flight(self) -> list[Record]:
        return self.with_status("in_flight")

    def abandoned(self) -> list[Record]:
        return self.with_status("abandoned")

    @property
    def completions(self) -> int:
        """Completions sent back in successful answers."""
        with self._lock:
            return sum(r.choices for r in self.records if r.status == "done")

    def wait_for(self, predicate: Callable[[OpenAIServer], bool], timeout: float = 5.0) -> bool:
        """Wait until ``predicate(self)`` holds (re-checked on every request change)."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate(self):
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with self._changed:
                self._changed.wait(min(left, 0.05))

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("server not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> OpenAIServer:
        handler = type("Handler", (_Handler,), {"owner": self})
        self._httpd = _Server(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- handling (called from the handler threads) ----------------------------------------

    def _record(self, path: str, body: dict[str, Any]) -> Record:
        with self._changed:
            rec = Record(len(self.records), path, body)
            self.records.append(rec)
            self._changed.notify_all()
            return rec

    def _finish(self, rec: Record, status: str, http_status: int | None = None,
                choices: int = 0) -> None:
        with self._changed:
            rec.status, rec.http_status, rec.choices = status, http_status, choices
            rec.ended = time.monotonic()
            self._changed.notify_all()

    def _injected(self, rec: Record) -> tuple[int, str] | None:
        with self._lock:
            if self._fail:
                return self._fail.pop(0)
        if rec.prompt in self.fail_prompts:
            return self.fail_prompts[rec.prompt], f"prompt {rec.prompt!r} is refused"
        status = None if self.fail_when is None else self.fail_when(rec.body)
        if status is not None:
            return status, f"request {rec.id} is refused"
        return None

    def _answer(self, rec: Record) -> dict[str, Any]:
        body, chat = rec.body, rec.path.endswith("/chat/completions")
        n = int(body.get("n", 1))
        sampling = {k: v for k, v in body.items() if k not in _NOT_SAMPLING}
        samples = self.backend.generate([rec.prompt], n, **sampling)[0]
        want_lp = bool(body.get("logprobs")) or body.get("logprobs") == 0
        choices = []
        for i, s in enumerate(samples):
            c: dict[str, Any] = {"index": i, "finish_reason": "length"}
            if chat:
                c["message"] = {"role": "assistant", "content": s.text}
            else:
                c["text"] = s.text
            if want_lp:
                toks = [f"t{j}" for j in range(s.tokens)]
                values = ([-1.0] * s.tokens if self.logprobs is None
                          else list(self.logprobs(s.text, s.tokens)))
                pairs = zip(toks, values, strict=True)
                c["logprobs"] = (
                    {"content": [{"token": t, "logprob": v} for t, v in pairs]}
                    if chat else {"tokens": toks, "token_logprobs": values})
            if self.token_counts == "choice":
                c["usage"] = {"completion_tokens": s.tokens}
            choices.append(c)
        answer: dict[str, Any] = {
            "id": f"cmpl-{rec.id}", "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()), "model": body.get("model"), "choices": choices}
        if self.token_counts != "none":
            answer["usage"] = {"prompt_tokens": len(rec.prompt),
                               "completion_tokens": sum(s.tokens for s in samples),
                               "total_tokens": len(rec.prompt) + sum(s.tokens for s in samples)}
        return answer


class _Server(ThreadingHTTPServer):
    # a listen backlog for bursts: the default 5 overflows when a proxy opens dozens of
    # connections at once, and an overflowed connection can be reset by the kernel (the
    # client then reads an error, not an answer)
    request_queue_size = 128


class _Handler(BaseHTTPRequestHandler):
    owner: OpenAIServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, obj: dict[str, Any] | bytes, length: bool = True) -> bool:
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        trickle = self.owner.trickle
        try:
            if trickle > 0:
                head = (f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode()
                for i in range(len(head) + len(data)):  # bounded: one byte per step
                    if self.owner._stop.is_set():
                        return False
                    byte = head[i:i + 1] if i < len(head) else data[i - len(head):][:1]
                    self.wfile.write(byte)
                    self.wfile.flush()
                    time.sleep(trickle)
                return True
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            if length:
                self.send_header("Content-Length", str(len(data)))
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
            return True
        except OSError:
            return False

    def _client_gone(self, seconds: float) -> bool:
        """Wait ``seconds`` (or until the server stops); True if the client disconnected."""
        deadline = time.monotonic() + seconds
        while not self.owner._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            readable, _, _ = select.select([self.connection], [], [], min(left, 0.02))
            if readable:
                try:
                    if self.connection.recv(1, socket.MSG_PEEK) == b"":
                        return True
                except OSError:
                    return True
                time.sleep(min(left, 0.02))  # unexpected extra bytes: keep waiting
        return True

    def do_POST(self) -> None:  # noqa: N802 (http.server API)
        owner = self.owner
        path = self.path.split("?")[0]
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        except ValueError:
            self._send(400, {"error": {"message": "body is not JSON"}})
            return
        rec = owner._record(path, body)
        if path in owner.routes:
            fault = owner._injected(rec)
            if fault is not None:
                owner._finish(rec, "failed", fault[0])
                self._send(fault[0], {"error": {"message": fault[1], "code": fault[0]}})
                return
            try:
                answer = owner.routes[path](body)
            except Exception as err:
                owner._finish(rec, "failed", 500)
                self._send(500, {"error": {"message": f"route: {type(err).__name__}: {err}"}})
                return
            owner._finish(rec, "done", 200)
            self._send(200, answer)
            return
        if path not in ("/v1/completions", "/v1/chat/completions"):
            owner._finish(rec, "failed", 404)
            self._send(404, {"error": {"message": f"no route {path}"}})
            return
        fault = owner._injected(rec)
        if fault is not None:
            owner._finish(rec, "failed", fault[0])
            self._send(fault[0], {"error": {"message": fault[1], "code": fault[0]}})
            return
        delay = owner.delay(body) if callable(owner.delay) else owner.delay
        if delay > 0 and self._client_gone(delay):
            owner._finish(rec, "abandoned")
            return
        try:
            answer = owner._answer(rec)
        except Exception as err:  # a backend error is a 500
            owner._finish(rec, "failed", 500)
            self._send(500, {"error": {"message": f"backend: {type(err).__name__}: {err}"}})
            return
        if owner.mutate is not None:
            answer = owner.mutate(answer)
        body: dict[str, Any] | bytes = answer
        if owner.raw_body is not None:
            body = owner.raw_body(rec) if callable(owner.raw_body) else owner.raw_body
        choices = len(answer["choices"]) if isinstance(answer, dict) and \
            isinstance(answer.get("choices"), list) else 0
        owner._finish(rec, "done", 200, choices)  # before the client can read it
        if not self._send(200, body, length=owner.send_length):
            owner._finish(rec, "abandoned", 200)
