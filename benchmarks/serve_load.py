"""Load benchmark of ``optscale serve``: concurrent clients on loopback, a zero-latency upstream.

    python benchmarks/serve_load.py [--clients 200] [--requests 5] [--samples 4]
                                    [--engine http|mock] [--rates 0.25,0.5,0.75] [--log-dir DIR]
                                    [--loop auto|asyncio|uvloop] [--http auto|h11|httptools]
                                    [--profile FILE]

Three processes: the proxy (uvicorn, one worker, as ``optscale serve`` runs it: uvloop and
httptools when they are installed, unless ``--loop`` / ``--http`` say otherwise), a fake engine
(a minimal asyncio HTTP/1.1 server answering from memory: zero latency, each answer a unique
text) and this one, the clients (minimal asyncio HTTP/1.1 clients, one keep-alive connection
each, on uvloop when it is installed). The proxy runs the logprob-confidence scorer, the request
log (fsynced before every answer) and a policy that draws ``--samples`` samples per request in
one round (``ESC(window=samples)`` over agreeing answers). Its upstream is the fake engine over
loopback (``--engine http``, the default: what a deployment does) or an ``httpx.MockTransport``
inside the proxy process (``--engine mock``: no sockets to the engine; the fake's own cost,
microseconds, is counted against the proxy).

Phases, in one run:

1. unloaded: one client, sequential requests: the proxy's latency with no other request in,
   and the same client straight to the fake engine (the client's and loopback's own part).
2. closed loop (saturation): ``--clients`` clients each send ``--requests`` requests back to
   back. This measures throughput; the latency is queueing (Little's law: clients /
   throughput), not the proxy's per-request cost. Two rounds; the proxy's CPU time per request.
3. open loop: ``--clients`` open connections, ``--clients x --requests`` requests at the
   arrivals of a Poisson process (exponential gaps) dealt to the connections in turn, at an
   offered rate of each of ``--rates`` times the saturation throughput of phase 2. With a
   zero-latency upstream, the latency is the proxy's added overhead (its own work, the request
   log's fsync, and waiting behind requests that arrived at the same time) plus the client's
   own cost.
4. the same open loop against the fake engine directly (one sample per request, no proxy): the
   client's and the loopback's own cost at each rate, to subtract.

The request log's fsync is part of every answer's latency: its latency on the log's folder
(``--log-dir``; a new temporary folder by default) is measured before and after the run. On a
tmpfs such as /dev/shm an fsync costs nothing (and makes nothing durable): that separates the
proxy's own overhead from the disk's.

Checked: every sample the fake engine produced (phases 1-3) is in exactly one response's
``n_used`` and exactly once in the request log (no lost, no duplicated samples); the proxy's RSS
after each phase (flat memory). Bounded: every call has a timeout, the whole run a deadline,
127.0.0.1 only, and the child processes are stopped at the end. Exit status 0 when the sample
accounting holds and RSS grew by less than ``RSS_SLACK_MIB`` after the first load round.
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
DEADLINE_S = 900  # the whole benchmark, at most
REQUEST_TIMEOUT_S = 120
RSS_SLACK_MIB = 16.0  # RSS growth after the first load round that still counts as flat
GOAL_MS = 5.0  # the goal for the p50 latency the proxy adds
TOKENS = 12  # completion tokens per fake sample


# -- the fake engine ---------------------------------------------------------------------------

def _answer_parts(chat: bool) -> tuple[bytes, bytes]:
    """The fake engine's answer as (before, after) the sample number: a unique text per
    sample, agreeing final answers, ``TOKENS`` tokens with log-probabilities."""
    text = "sample @@K@@: so \\boxed{42}"
    if chat:
        choice = {"index": 0, "message": {"role": "assistant", "content": text},
                  "logprobs": {"content": [{"token": "t", "logprob": -0.05}] * TOKENS},
                  "finish_reason": "stop"}
    else:
        choice = {"index": 0, "text": text, "finish_reason": "stop",
                  "logprobs": {"tokens": ["t"] * TOKENS, "token_logprobs": [-0.05] * TOKENS}}
    body = {"id": "x", "object": "chat.completion" if chat else "text_completion",
            "model": MODEL, "choices": [choice],
            "usage": {"prompt_tokens": 8, "completion_tokens": TOKENS,
                      "total_tokens": 8 + TOKENS}}
    before, after = json.dumps(body).encode().split(b"@@K@@")
    return before, after


_PARTS = {True: _answer_parts(True), False: _answer_parts(False)}


def _answer(k: int, chat: bool) -> bytes:
    before, after = _PARTS[chat]
    return before + str(k).encode() + after


def _text(k: int) -> str:
    return f"sample {k}: so \\boxed{{42}}"


def engine(port: int) -> None:
    """The fake engine as a loopback HTTP/1.1 server (a child process). ``POST /direct/...``
    answers without counting (the clients' baseline, phase 4); ``GET /stats`` says how many
    samples it made."""
    made = {"n": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                body = await reader.readexactly(length) if length else b""
                if head.startswith(b"GET /stats"):
                    data = json.dumps({"made": made["n"]}).encode()
                elif head.startswith(b"POST /direct/"):
                    data = _answer(0, b'"messages"' in body)
                else:
                    made["n"] += 1
                    data = _answer(made["n"], b'"messages"' in body)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
        async with server:
            await server.serve_forever()

    _run(main())


# -- the proxy ---------------------------------------------------------------------------------

def serve(port: int, log_path: str, samples: int, engine_port: int = 0,
          max_in_flight: int = 256, loop: str = "auto", http: str = "auto") -> None:
    """Run the proxy (a child process): upstream the loopback fake engine at ``engine_port``,
    or (0) an in-process zero-latency MockTransport; uvicorn's ``loop`` and ``http`` settings
    (``auto``: uvloop and httptools when installed, as ``optscale serve``). ``GET
    /bench/stats``: samples made, RSS and CPU seconds of this process, its event loop and HTTP
    parser; ``POST /bench/profile/start`` and ``/bench/profile/stop?path=P`` run cProfile (CPU
    time) in it and write the stats to ``P``."""
    import cProfile

    import httpx
    import psutil
    import uvicorn

    import optscale
    from optscale.serve import ServeConfig, create_app

    made = {"n": 0}
    json_type = [(b"content-type", b"application/json")]

    def handler(request: httpx.Request) -> httpx.Response:
        made["n"] += 1
        return httpx.Response(200, headers=json_type,
                              content=_answer(made["n"], b'"messages"' in request.content))

    upstream = f"http://127.0.0.1:{engine_port}/v1" if engine_port else "http://fake-engine/v1"
    config = ServeConfig(
        upstream, MODEL, {"default": optscale.ESC(window=samples, n_max=2 * samples)},
        scorer="logprob-mean", log_path=log_path,
        transport=None if engine_port else httpx.MockTransport(handler),
        max_in_flight=max_in_flight)
    app = create_app(config)
    proc = psutil.Process()
    # idle keep-alive connections stay open (uvicorn's default closes them after 5 s): the
    # open-loop clients hold theirs between requests, at gaps of seconds at low rates
    server = uvicorn.Server(uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, backlog=4096,
        timeout_keep_alive=REQUEST_TIMEOUT_S, loop=loop, http=http))
    profiler: list[cProfile.Profile] = []

    @app.get("/bench/stats")
    async def stats() -> dict:
        if engine_port:
            async with httpx.AsyncClient() as client:
                made["n"] = (await client.get(f"http://127.0.0.1:{engine_port}/stats")
                             ).json()["made"]
        cpu = proc.cpu_times()
        running = type(asyncio.get_running_loop())
        return {"made": made["n"], "rss": proc.memory_info().rss, "cpu": cpu.user + cpu.system,
                "loop": f"{running.__module__}.{running.__name__}",
                "http": server.config.http_protocol_class.__name__}

    @app.post("/bench/profile/start")
    async def profile_start() -> dict:
        profiler.append(cProfile.Profile(time.process_time))
        profiler[-1].enable()
        return {}

    @app.post("/bench/profile/stop")
    async def profile_stop(path: str) -> dict:
        profiler[-1].disable()
        profiler.pop().dump_stats(path)
        return {}

    server.run()


# -- the clients -------------------------------------------------------------------------------

class _Connection:
    """One keep-alive HTTP/1.1 connection speaking just enough HTTP for the benchmark: a
    minimal client, because ``httpx``'s own per-request cost would hide the server's."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def post(self, path: str, body: dict) -> dict:
        await self.connect()
        assert self.reader is not None and self.writer is not None
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


def _body(w: int, j: int) -> dict:
    return {"model": MODEL, "max_tokens": 16,
            "messages": [{"role": "user", "content": f"question {w}-{j}"}]}


class Run:
    """One load phase's results: latencies (s), response bodies, wall time (s), lateness."""

    def __init__(self, latencies: list[float], bodies: list[dict], wall: float,
                 late: int = 0) -> None:
        self.latencies, self.bodies, self.wall, self.late = latencies, bodies, wall, late

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.wall

    @property
    def n_used(self) -> int:
        return sum(b.get("optscale", {}).get("n_used", 0) for b in self.bodies)


async def _connections(port: int, clients: int) -> list[_Connection]:
    conns = [_Connection(port) for _ in range(clients)]
    await asyncio.wait_for(asyncio.gather(*(c.connect() for c in conns)), 60)
    return conns


async def closed_loop(port: int, clients: int, requests: int,
                      path: str = "/v1/chat/completions") -> Run:
    """``clients`` connections, each sending ``requests`` requests back to back."""
    conns = await _connections(port, clients)

    async def worker(w: int) -> list[tuple[float, dict]]:
        out = []
        for j in range(requests):
            t0 = time.perf_counter()
            answer = await asyncio.wait_for(conns[w].post(path, _body(w, j)),
                                            REQUEST_TIMEOUT_S)
            out.append((time.perf_counter() - t0, answer))
        return out

    t0 = time.perf_counter()
    try:
        results = await asyncio.gather(*(worker(w) for w in range(clients)))
    finally:
        for c in conns:
            c.close()
    wall = time.perf_counter() - t0
    flat = [r for rs in results for r in rs]
    return Run([r[0] for r in flat], [r[1] for r in flat], wall)


async def open_loop(port: int, clients: int, requests: int, rate: float, seed: int,
                    path: str = "/v1/chat/completions") -> Run:
    """``clients`` open connections sending ``clients x requests`` requests in all, at the
    arrivals of one Poisson process of ``rate`` per second dealt to the connections in turn
    (each sends one request about every ``clients / rate`` seconds). A request is sent at its
    arrival, or when its connection's previous answer is in if that is later (counted in
    ``late``); its latency is measured from its arrival, so a late send is not hidden."""
    arrivals = np.cumsum(np.random.default_rng(seed).exponential(1 / rate, clients * requests))
    conns = await _connections(port, clients)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    late = 0

    async def worker(w: int) -> list[tuple[float, dict]]:
        nonlocal late
        out = []
        for j in range(requests):
            due = start + arrivals[j * clients + w]
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            else:
                late += 1
            answer = await asyncio.wait_for(conns[w].post(path, _body(w, j)),
                                            REQUEST_TIMEOUT_S)
            out.append((loop.time() - due, answer))
        return out

    try:
        results = await asyncio.gather(*(worker(w) for w in range(clients)))
    finally:
        for c in conns:
            c.close()
    wall = loop.time() - start
    flat = [r for rs in results for r in rs]
    return Run([r[0] for r in flat], [r[1] for r in flat], wall, late)


# -- the run -----------------------------------------------------------------------------------

def _run(coro):
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


async def _stats(base: str) -> dict:
    import httpx

    async with httpx.AsyncClient(timeout=30) as client:
        return (await client.get(f"{base}/bench/stats")).json()


async def _post(url: str) -> None:
    import httpx

    async with httpx.AsyncClient(timeout=60) as client:
        (await client.post(url)).raise_for_status()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_up(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    host, port = url.rsplit(":", 1)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("a benchmark process exited")
        try:
            with socket.create_connection(("127.0.0.1", int(port)), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not start")


def fsync_latency(folder: str, n: int = 100) -> list[float]:
    """Seconds of ``n`` append-and-fsync rounds of a 2 KB line in ``folder`` (the request
    log's floor: an answer waits for at least one), 2 ms apart."""
    path = os.path.join(folder, "fsync-probe.jsonl")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    out = []
    try:
        for _ in range(n):
            os.write(fd, b"x" * 2047 + b"\n")
            t0 = time.perf_counter()
            os.fsync(fd)
            out.append(time.perf_counter() - t0)
            time.sleep(0.002)
    finally:
        os.close(fd)
        os.unlink(path)
    return out


def _ms(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1e3, q))


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--requests", type=int, default=5, help="per client")
    parser.add_argument("--samples", type=int, default=4, help="samples per request")
    parser.add_argument("--unloaded", type=int, default=200, help="sequential requests")
    parser.add_argument("--rates", default="0.25,0.5,0.75",
                        help="open-loop offered rates, as fractions of the saturation "
                        "throughput (comma-separated)")
    parser.add_argument("--offered", help="open-loop offered rates in requests/s "
                        "(comma-separated), instead of --rates: the same rates for runs of "
                        "different proxies")
    parser.add_argument("--engine", choices=("http", "mock"), default="http",
                        help="the proxy's upstream: the fake engine over loopback HTTP "
                        "(default) or an in-process httpx.MockTransport")
    parser.add_argument("--max-in-flight", dest="max_in_flight", type=int, default=256,
                        help="the proxy's upstream requests in flight (its default: 256)")
    parser.add_argument("--log-dir", dest="log_dir", help="the request log's folder (default: "
                        "a new temporary folder); its fsync latency is measured and reported")
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto",
                        help="the proxy's event loop (uvicorn's setting; auto: uvloop when "
                        "installed, as optscale serve)")
    parser.add_argument("--http", choices=("auto", "h11", "httptools"), default="auto",
                        help="the proxy's HTTP parser (uvicorn's setting; auto: httptools when "
                        "installed, as optscale serve)")
    parser.add_argument("--profile", help="after the closed loop, one more closed-loop round "
                        "under cProfile (CPU time) in the proxy process, its stats written to "
                        "this file (that round counts in no figure but the sample accounting)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--serve", nargs=3, metavar=("PORT", "LOG", "ENGINE_PORT"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--fake-engine", dest="fake_engine", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1], args.samples, int(args.serve[2]),
              args.max_in_flight, args.loop, args.http)
        return 0
    if args.fake_engine:
        engine(args.fake_engine)
        return 0
    fractions = [float(f) for f in args.rates.split(",") if f.strip()]
    offered = [float(r) for r in (args.offered or "").split(",") if r.strip()]

    port, engine_port = _free_port(), _free_port()
    base = f"http://127.0.0.1:{port}"
    folder = tempfile.mkdtemp(prefix="optscale-serve-load-", dir=args.log_dir)
    log = os.path.join(folder, "requests.jsonl")
    load0 = os.getloadavg()
    fsync0 = fsync_latency(folder)
    children = [subprocess.Popen([sys.executable, __file__, "--fake-engine", str(engine_port)])]
    proc = subprocess.Popen([sys.executable, __file__, "--samples", str(args.samples),
                             "--max-in-flight", str(args.max_in_flight), "--loop", args.loop,
                             "--http", args.http, "--serve", str(port),
                             log, str(engine_port if args.engine == "http" else 0)])
    children.append(proc)
    started = time.monotonic()
    try:
        _wait_up(f"http://127.0.0.1:{engine_port}", children[0])
        _wait_up(base, proc)

        async def bench() -> dict:
            out: dict = {"n_used": 0, "rss": []}
            # warm-up (imports, first-call paths, the connection pools), then unloaded
            for clients, requests in ((4, 10), (args.clients, 1), (1, args.unloaded)):
                run = await closed_loop(port, clients, requests)
                out["n_used"] += run.n_used
            out["unloaded"] = run
            out["unloaded_direct"] = await closed_loop(engine_port, 1, args.unloaded,
                                                       "/direct/v1/chat/completions")
            stats = await _stats(base)
            out["rss"].append(("after warm-up", stats["rss"]))
            closed = []
            for k in range(2):
                run = await closed_loop(port, args.clients, args.requests)
                after = await _stats(base)
                out["n_used"] += run.n_used
                closed.append((run, (after["cpu"] - stats["cpu"]) / len(run.latencies)))
                out["rss"].append((f"after closed round {k + 1}", after["rss"]))
                stats = after
            out["closed"] = closed
            out["proxy"] = f"{stats['loop']}, {stats['http']}"
            if args.profile:
                await _post(f"{base}/bench/profile/start")
                run = await closed_loop(port, args.clients, args.requests)
                await _post(f"{base}/bench/profile/stop?path={os.path.abspath(args.profile)}")
                out["n_used"] += run.n_used
                stats = await _stats(base)
            saturation = max(run.rps for run, _ in closed)
            out["saturation"] = saturation
            opened = []
            for i, (f, rate) in enumerate(
                    [(r / saturation, r) for r in offered] if offered else
                    [(f, f * saturation) for f in fractions]):
                run = await open_loop(port, args.clients, args.requests, rate, args.seed + i)
                after = await _stats(base)
                out["n_used"] += run.n_used
                direct = await open_loop(engine_port, args.clients, args.requests, rate,
                                         args.seed + i, "/direct/v1/chat/completions")
                opened.append((f, rate, run, direct,
                               (after["cpu"] - stats["cpu"]) / len(run.latencies)))
                out["rss"].append((f"after open loop {rate:.0f}/s", after["rss"]))
                stats = await _stats(base)
            out["open"] = opened
            out["made"] = stats["made"]
            return out

        res = _run(asyncio.wait_for(bench(), DEADLINE_S))
    finally:
        for child in children:
            child.terminate()
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()
    load1 = os.getloadavg()
    fsync1 = fsync_latency(folder)

    # every sample the fake engine made is in exactly one response and once in the log
    records = []
    with open(log, encoding="utf-8") as f:
        for line in f:
            obj = json.loads(line)
            if "meta" not in obj:
                records.append(obj)
    texts = [s["text"] for r in records for s in r["samples"]]
    n_used = res["n_used"]  # over every request to the proxy, warm-up included
    expected = {_text(k) for k in range(1, res["made"] + 1)}

    print(f"# optscale serve load benchmark ({platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; load average {load0[0]:.2f} before, "
          f"{load1[0]:.2f} after)")
    where = ("an in-process httpx.MockTransport" if args.engine == "mock" else
             "the fake engine over loopback HTTP (its own process)")
    print(f"upstream: {where}, zero latency; policy ESC(window={args.samples}): "
          f"{args.samples} samples per request, one round; logprob scorer; request log "
          f"fsynced before each answer; max_in_flight {args.max_in_flight}; clients in this "
          f"process, the proxy ({res['proxy']}) and the fake engine in their own")
    print(f"request log in {folder}: fsync of a 2 KB append p50 {_ms(fsync0, 50):.2f} ms, p99 "
          f"{_ms(fsync0, 99):.2f} ms before the run, p50 {_ms(fsync1, 50):.2f} ms, p99 "
          f"{_ms(fsync1, 99):.2f} ms after (an answer waits for at least one fsync)")
    un, ud = res["unloaded"], res["unloaded_direct"]
    print(f"1. unloaded (1 client, {len(un.latencies)} sequential requests): latency p50 "
          f"{_ms(un.latencies, 50):.2f} ms, p99 {_ms(un.latencies, 99):.2f} ms; straight to the "
          f"fake engine p50 {_ms(ud.latencies, 50):.2f} ms, p99 {_ms(ud.latencies, 99):.2f} ms")
    for k, (run, cpu) in enumerate(res["closed"], 1):
        n = len(run.latencies)
        print(f"2. closed loop, round {k} ({args.clients} clients x {args.requests} back to "
              f"back = {n}): {run.rps:.0f} requests/s, {run.n_used / run.wall:.0f} samples/s; "
              f"proxy CPU {cpu * 1e3:.2f} ms per request; latency p50 "
              f"{_ms(run.latencies, 50):.1f} ms, p99 {_ms(run.latencies, 99):.1f} ms = "
              f"queueing (Little's law: {args.clients} / {run.rps:.0f} per s = "
              f"{args.clients / run.rps * 1e3:.0f} ms)")
    print(f"3./4. open loop, {args.clients} open connections, {args.clients * args.requests} "
          f"requests at Poisson arrivals; saturation = {res['saturation']:.0f} requests/s "
          "(phase 2)")
    print("   offered      achieved  proxy p50  p99      direct p50  p99      p50 diff  "
          "late  proxy CPU/req")
    for f, rate, run, direct, cpu in res["open"]:
        p50, d50 = _ms(run.latencies, 50), _ms(direct.latencies, 50)
        print(f"   {f:4.0%} {rate:5.0f}/s  {run.rps:5.0f}/s  {p50:6.2f} ms "
              f"{_ms(run.latencies, 99):6.2f} ms  {d50:6.2f} ms  "
              f"{_ms(direct.latencies, 99):6.2f} ms  {p50 - d50:6.2f} ms "
              f"{run.late + direct.late:4d}  {cpu * 1e3:.2f} ms")
    print("   (proxy: latency through the proxy; direct: the same clients against the fake "
          "engine, no proxy; p50 diff: proxy p50 - direct p50, the proxy's added overhead; "
          "late: sends after their scheduled time)")
    met = [f"{f:.0%} ({run.rps:.0f}/s)" for f, _, run, _, _ in res["open"]
           if _ms(run.latencies, 50) <= GOAL_MS]
    missed = [f"{f:.0%} ({run.rps:.0f}/s)" for f, _, run, _, _ in res["open"]
              if _ms(run.latencies, 50) > GOAL_MS]
    print(f"goal p50 <= {GOAL_MS:g} ms through the proxy with {args.clients} open connections: "
          f"met at {', '.join(met) or 'no rate'}; not met at {', '.join(missed) or 'no rate'}")
    rss = res["rss"]
    print("RSS: " + ", ".join(f"{name} {_mib(v)}" for name, v in rss))
    growth = (rss[-1][1] - rss[1][1]) / 2**20
    lost = len(expected - set(texts))
    duplicated = len(texts) - len(set(texts))
    print(f"samples: engine made {res['made']}, responses report {n_used} (n_used), log "
          f"holds {len(texts)}; lost {lost}, duplicated {duplicated}, unexpected "
          f"{len(set(texts) - expected)}; RSS growth after closed round 1: {growth:+.1f} MiB")
    print(f"log: {len(records)} requests in {log}; total run {time.monotonic() - started:.0f} s")
    ok = lost == 0 and duplicated == 0 and len(texts) == res["made"] == n_used and \
        growth < RSS_SLACK_MIB
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
