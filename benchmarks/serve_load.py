"""Load benchmark of ``optscale serve``: concurrent clients on loopback, a zero-latency upstream.

    python benchmarks/serve_load.py [--clients 200] [--requests 5] [--samples 4]

The proxy runs in its own process (uvicorn, one worker, as ``optscale serve`` runs it) with the
logprob-confidence scorer, the request log on (fsynced before every answer) and a policy that
draws ``--samples`` samples per request in one round (``ESC(window=samples)`` over agreeing
answers). Its upstream is an ``httpx.MockTransport`` inside the proxy process: a zero-latency
fake engine that answers from memory (each answer a unique text), so everything measured is the
proxy's own cost (the fake's time, microseconds, is counted against the proxy: an upper bound).
The clients (a minimal asyncio HTTP/1.1 client, one keep-alive connection each) run in this
process: on a small machine they compete with the server for the cores.

Reported: latency p50/p99 unloaded (one client, sequential) and under load (``--clients``
concurrent x ``--requests`` each), requests and samples per second, whether every sample the
fake engine produced is in a response's ``n_used`` and in the request log exactly once (no
lost, no duplicated samples), and the proxy's RSS before, between and after two load rounds
(flat memory). With a zero-latency upstream the latency *is* the overhead the proxy adds; under
load it includes queueing (Little's law: latency ~ clients / throughput). Bounded: every call
has a timeout, the whole run a deadline, and the server process is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

MODEL = "bench-model"
DEADLINE_S = 600  # the whole benchmark, at most


# -- the server process ------------------------------------------------------------------------

def _answer(k: int, chat: bool) -> dict:
    """The fake engine's k-th answer: a unique text, agreeing final answers, 12 tokens."""
    tokens = 12
    text = f"sample {k}: so \\boxed{{42}}"
    if chat:
        choice = {"index": 0, "message": {"role": "assistant", "content": text},
                  "logprobs": {"content": [{"token": "t", "logprob": -0.05}] * tokens},
                  "finish_reason": "stop"}
    else:
        choice = {"index": 0, "text": text, "finish_reason": "stop",
                  "logprobs": {"tokens": ["t"] * tokens, "token_logprobs": [-0.05] * tokens}}
    return {"id": f"x{k}", "object": "text_completion", "model": MODEL, "choices": [choice],
            "usage": {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": 20}}


def engine(port: int) -> None:
    """The fake engine as a real loopback HTTP/1.1 server (``--engine http``; a child
    process): a minimal asyncio server, so that the proxy's pooled ``httpx`` client and the
    sockets are measured too. ``GET /stats`` says how many samples it made."""
    made = {"n": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                body = json.loads(await reader.readexactly(length)) if length else {}
                if head.startswith(b"GET /stats"):
                    data = json.dumps({"made": made["n"]}).encode()
                else:
                    made["n"] += 1
                    data = json.dumps(_answer(made["n"], "messages" in body)).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def serve(port: int, log_path: str, samples: int, engine_port: int = 0,
          max_in_flight: int = 256) -> None:
    """Run the proxy (the child process): with an in-process zero-latency upstream, or with
    the loopback fake engine at ``engine_port``."""
    import httpx
    import psutil
    import uvicorn

    import optscale
    from optscale.serve import ServeConfig, create_app

    made = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        made["n"] += 1
        return httpx.Response(200, json=_answer(made["n"], b'"messages"' in request.content))

    upstream = f"http://127.0.0.1:{engine_port}/v1" if engine_port else "http://fake-engine/v1"
    config = ServeConfig(
        upstream, MODEL, {"default": optscale.ESC(window=samples, n_max=2 * samples)},
        scorer="logprob-mean", log_path=log_path,
        transport=None if engine_port else httpx.MockTransport(handler),
        max_in_flight=max_in_flight)
    app = create_app(config)
    proc = psutil.Process()

    @app.get("/bench/stats")
    async def stats() -> dict:
        if engine_port:
            async with httpx.AsyncClient() as client:
                made["n"] = (await client.get(f"http://127.0.0.1:{engine_port}/stats")
                             ).json()["made"]
        return {"made": made["n"], "rss": proc.memory_info().rss}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                backlog=4096)


# -- the clients -------------------------------------------------------------------------------

class _Connection:
    """One keep-alive HTTP/1.1 connection speaking just enough HTTP for the benchmark: a
    minimal client, because ``httpx``'s pool itself tops out near 150 requests/s at 200
    concurrent connections on this machine (measured on ``/health``), which would hide the
    server."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: dict) -> dict:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        data = json.dumps(body).encode()
        self.writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                          f"application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                          + data)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        payload = await self.reader.readexactly(length)
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {payload[:200]!r}")
        return json.loads(payload)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def _load(port: int, clients: int, requests: int
                ) -> tuple[list[float], list[dict], float]:
    async def worker(w: int) -> list[tuple[float, dict]]:
        conn = _Connection(port)
        out = []
        try:
            for j in range(requests):
                body = {"model": MODEL, "max_tokens": 16,
                        "messages": [{"role": "user", "content": f"question {w}-{j}"}]}
                t0 = time.perf_counter()
                answer = await asyncio.wait_for(conn.post("/v1/chat/completions", body), 120)
                out.append((time.perf_counter() - t0, answer))
        finally:
            conn.close()
        return out

    t0 = time.perf_counter()
    results = await asyncio.gather(*(worker(w) for w in range(clients)))
    wall = time.perf_counter() - t0
    flat = [r for rs in results for r in rs]
    return [r[0] for r in flat], [r[1] for r in flat], wall


async def _stats(base: str) -> dict:
    import httpx

    async with httpx.AsyncClient(timeout=30) as client:
        return (await client.get(f"{base}/bench/stats")).json()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_up(base: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the server process exited")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the server did not start")


def _ms(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1e3, q))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--requests", type=int, default=5, help="per client")
    parser.add_argument("--samples", type=int, default=4, help="samples per request")
    parser.add_argument("--unloaded", type=int, default=200, help="sequential requests")
    parser.add_argument("--engine", choices=("mock", "http"), default="mock",
                        help="the fake engine: in-process MockTransport (default) or a "
                        "loopback HTTP server in its own process")
    parser.add_argument("--max-in-flight", dest="max_in_flight", type=int, default=256,
                        help="the proxy's upstream requests in flight (its default: 256)")
    parser.add_argument("--serve", nargs=3, metavar=("PORT", "LOG", "ENGINE_PORT"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--fake-engine", dest="fake_engine", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1], args.samples, int(args.serve[2]),
              args.max_in_flight)
        return 0
    if args.fake_engine:
        engine(args.fake_engine)
        return 0

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    folder = tempfile.mkdtemp(prefix="optscale-serve-load-")
    log = os.path.join(folder, "requests.jsonl")
    engine_port = _free_port() if args.engine == "http" else 0
    children = []
    if engine_port:
        children.append(subprocess.Popen([sys.executable, __file__, "--fake-engine",
                                          str(engine_port)]))
    proc = subprocess.Popen([sys.executable, __file__, "--samples", str(args.samples),
                             "--max-in-flight", str(args.max_in_flight),
                             "--serve", str(port), log, str(engine_port)])
    children.append(proc)
    started = time.monotonic()
    try:
        _wait_up(base, proc)

        async def bench() -> dict:
            out: dict = {"n_used": 0}
            # warm-up (imports, first-call paths), then the unloaded latency
            for clients, requests in ((4, 10), (1, args.unloaded)):
                lat, bodies, _ = await _load(port, clients, requests)
                out["n_used"] += sum(b["optscale"]["n_used"] for b in bodies)
            out["unloaded"] = lat
            out["rss0"] = (await _stats(base))["rss"]
            rounds = []
            for _ in range(2):  # two load rounds: memory after each
                lat, bodies, wall = await _load(port, args.clients, args.requests)
                out["n_used"] += sum(b["optscale"]["n_used"] for b in bodies)
                rounds.append((lat, bodies, wall, (await _stats(base))["rss"]))
            out["rounds"] = rounds
            out["made"] = (await _stats(base))["made"]
            return out

        res = asyncio.run(asyncio.wait_for(bench(), DEADLINE_S))
    finally:
        for child in children:
            child.terminate()
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()

    # every sample the fake engine made is in exactly one response and once in the log
    records = []
    with open(log, encoding="utf-8") as f:
        for line in f:
            obj = json.loads(line)
            if "meta" not in obj:
                records.append(obj)
    texts = [s["text"] for r in records for s in r["samples"]]
    n_used = res["n_used"]  # over every request, warm-up and unloaded ones included
    expected_texts = {f"sample {k}: so \\boxed{{42}}" for k in range(1, res["made"] + 1)}

    print(f"# optscale serve load benchmark ({platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()})")
    where = ("in-process httpx.MockTransport" if not engine_port else
             "a loopback HTTP server in its own process")
    print(f"upstream: {where} (zero latency); policy ESC(window="
          f"{args.samples}): {args.samples} samples per request, one round; logprob scorer; "
          f"request log fsynced before each answer; max_in_flight {args.max_in_flight}")
    un = res["unloaded"]
    print(f"unloaded (1 client, {len(un)} sequential requests): overhead p50 {_ms(un, 50):.2f} "
          f"ms, p99 {_ms(un, 99):.2f} ms")
    for k, (lat, bodies, wall, rss) in enumerate(res["rounds"], 1):
        n = len(lat)
        samples = sum(b["optscale"]["n_used"] for b in bodies)
        print(f"load round {k} ({args.clients} clients x {args.requests} requests = {n}): "
              f"latency p50 {_ms(lat, 50):.1f} ms, p99 {_ms(lat, 99):.1f} ms, "
              f"{n / wall:.0f} requests/s, {samples / wall:.0f} samples/s, "
              f"RSS {rss / 2**20:.1f} MiB")
    print(f"RSS before load {res['rss0'] / 2**20:.1f} MiB -> after round 1 "
          f"{res['rounds'][0][3] / 2**20:.1f} MiB -> after round 2 "
          f"{res['rounds'][1][3] / 2**20:.1f} MiB")
    lost = len(expected_texts - set(texts))
    duplicated = len(texts) - len(set(texts))
    print(f"samples: engine made {res['made']}, responses report {n_used} (n_used), log "
          f"holds {len(texts)}; lost {lost}, duplicated {duplicated}, unexpected "
          f"{len(set(texts) - expected_texts)}")
    print(f"log: {len(records)} requests in {log}; total run {time.monotonic() - started:.0f} s")
    ok = lost == 0 and duplicated == 0 and len(texts) == res["made"] == n_used
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
