"""``optscale serve``: the proxy on the command line (uvicorn).

Every option is checked before the server starts (the policy files read, the scorer spec
parsed, a local scorer model loaded, the log's folder writable, the port bound): a bad one is
one line on stderr and exit status 2, as for every subcommand.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import socket

__all__ = ["add_commands"]

_NAME = re.compile(r"[A-Za-z0-9_.-]+")
API_KEY_ENV = "OPTSCALE_UPSTREAM_API_KEY"


def _policies(specs: list[str] | None) -> dict:
    """name -> policy from ``--policy [NAME=]PATH`` (the unnamed one, or else the first, is
    ``default``)."""
    import optscale
    from optscale.cli import CLIError, check_input_file

    out: dict = {}
    for spec in specs or ():
        name, sep, path = spec.partition("=")
        if not sep or not _NAME.fullmatch(name) or os.path.exists(spec):
            name, path = "", spec
        check_input_file(path, "--policy")
        key = name or "default"
        if key in out:
            raise CLIError(f"--policy: the name {key!r} is given twice"
                           + (" (one unnamed --policy is the default)" if not name else ""))
        try:
            out[key] = optscale.load_policy(path)
        except ValueError as err:
            raise CLIError(f"--policy: {err}") from None
    if out and "default" not in out:
        first = next(iter(out))
        out = {"default": out[first], **out}
    return out


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a busy port is a one-line error."""
    from optscale.cli import CLIError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise CLIError(f"--host {host}: {err.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        raise CLIError(f"--host/--port {host}:{port}: cannot listen: {err.strerror}") from None
    return sock


def _cmd_serve(args: argparse.Namespace) -> int:
    from optscale.cli import CLIError, check_output_file
    from optscale.serve._config import ServeConfig, parse_scorer

    try:
        kind, _ = parse_scorer(args.scorer)
    except ValueError as err:
        raise CLIError(f"--scorer: {err}") from None
    policies = _policies(args.policy)
    log = None if args.no_log else check_output_file(args.log, "--log")
    try:
        config = ServeConfig(
            args.upstream, args.model, policies or None, scorer=args.scorer,
            scorer_model=args.scorer_model, scorer_index=args.scorer_index,
            scorer_step=args.scorer_step, scorer_input=args.scorer_input, answer=args.answer,
            api_key=os.environ.get(API_KEY_ENV) or None, timeout=args.timeout,
            retries=args.retries, backoff=args.backoff, max_in_flight=args.max_in_flight,
            log_path=log, log_max_bytes=args.log_max_bytes, token_budget=args.token_budget,
            budget_burst=args.budget_burst, keepalive=args.keepalive,
            warmup=not args.no_warmup)
    except ValueError as err:
        text = str(err)
        option = "--upstream" if text.startswith("upstream") else \
            "--policy/--scorer" if "reads scores" in text else "options"
        raise CLIError(f"{option}: {text}") from None
    import uvicorn

    from optscale.serve._app import build_scorer, create_app

    if kind in ("hf-reward", "hf-prm"):  # loaded now: a bad folder is an error, not a crash
        try:
            config = dataclasses.replace(config, scorer=build_scorer(config))
        except (OSError, ValueError) as err:
            raise CLIError(f"--scorer: cannot load {args.scorer}: {err}") from None
    sock = _bind(args.host, args.port)
    # uvloop and httptools where installed (uvicorn[standard], in the serve extra): ~10 % less
    # CPU per answer than asyncio's loop and h11 (benchmarks/serve_load.py --loop/--http)
    server = uvicorn.Server(uvicorn.Config(create_app(config), log_level=args.log_level,
                                           timeout_graceful_shutdown=10, loop="auto",
                                           http="auto"))
    server.run(sockets=[sock])
    return 0


def add_commands(sub) -> None:
    """Register ``serve`` on the ``optscale`` sub-command parser."""
    from optscale.cli import float_arg, int_arg
    from optscale.serve._config import ANSWERS

    p = sub.add_parser(
        "serve", help="an OpenAI-compatible adaptive-sampling proxy in front of vLLM",
        description="Serve /v1/chat/completions and /v1/completions in front of an "
        "OpenAI-compatible engine (vLLM, SGLang, ...): a policy decides how many samples to "
        "draw per request (n = 1 upstream requests), a scorer scores them, and the chosen one "
        "is the answer; usage counts every sample. Per request: extra_body={'optscale': "
        "{'max_n', 'target', 'confidence', 'policy', 'gold'}}. Every paid-for sample is "
        "appended to --log (pool JSONL: optscale replay/tune read it). Upstream API key: "
        f"${API_KEY_ENV}.")
    p.add_argument("--upstream", required=True, help="the engine's base URL, "
                   "http://host:8000/v1")
    p.add_argument("--model", required=True, help="the model name (as the engine serves it)")
    p.add_argument("--policy", action="append", metavar="[NAME=]PATH",
                   help="a policy file (optscale tune -o); repeat with NAME=PATH for policies "
                   "requests choose with optscale.policy; the unnamed one (else the first) is "
                   "the default. None: the answer posterior (LeaderPosterior, confidence 0.9, "
                   "n_max 16; a weighted vote with a scorer, else a vote)")
    p.add_argument("--scorer", default="none",
                   help="none (default), logprob-mean, logprob-window[:W] (verifier-free, from "
                   "token logprobs), pooling:URL or classify:URL (vLLM reward / classification "
                   "endpoints), json:URL ({prompt, completions} -> {scores}), hf-reward:DIR or "
                   "hf-prm:DIR (a local Hugging Face model)")
    p.add_argument("--scorer-model", dest="scorer_model",
                   help="the model field sent to a vLLM scorer endpoint")
    p.add_argument("--scorer-index", dest="scorer_index", type=int_arg(), default=-1,
                   help="the element of a pooling/classify vector that is the score "
                   "(default -1: the last)")
    p.add_argument("--scorer-step", dest="scorer_step",
                   choices=("last", "min", "mean", "prod"), default="last",
                   help="how per-token/step pooling rows become one score (default last)")
    p.add_argument("--scorer-input", dest="scorer_input", choices=("messages", "text"),
                   default="messages", help="how a vLLM scorer gets (prompt, completion): "
                   "chat messages (default; its chat template applies) or joined text")
    p.add_argument("--answer", choices=ANSWERS, default="boxed",
                   help="a sample's final answer, for votes (default boxed: the last \\boxed{})")
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    p.add_argument("--port", type=int_arg(0, 65535), default=8080, help="default 8080")
    p.add_argument("--timeout", type=float_arg(0.0, 1e6, open_lo=True), default=600.0,
                   help="seconds per upstream attempt in all (default 600)")
    p.add_argument("--retries", type=int_arg(0, 100), default=2,
                   help="retries of a failed upstream request (default 2)")
    p.add_argument("--backoff", type=float_arg(0.0, 1e6), default=0.5,
                   help="seconds before the first retry, doubling, at most 30 (default 0.5)")
    p.add_argument("--max-in-flight", dest="max_in_flight", type=int_arg(1), default=256,
                   help="upstream requests in flight at once (default 256)")
    p.add_argument("--log", default="optscale-requests.jsonl",
                   help="the request log (default ./optscale-requests.jsonl)")
    p.add_argument("--no-log", dest="no_log", action="store_true", help="keep no request log")
    p.add_argument("--log-max-bytes", dest="log_max_bytes", type=int_arg(0, 2**62),
                   default=0, help="rotate the log beyond this size (0: never; files are "
                   "numbered, never deleted)")
    p.add_argument("--token-budget", dest="token_budget", type=float_arg(0.0, open_lo=True),
                   help="server-wide output tokens per second; when tight, a request's max_n "
                   "shrinks to floor(tokens left / mean tokens per sample), at least 1")
    p.add_argument("--budget-burst", dest="budget_burst", type=float_arg(0.0, 1e6, open_lo=True),
                   default=10.0, help="seconds of --token-budget the bucket holds (default 10)")
    p.add_argument("--keepalive", type=float_arg(0.0, 3600.0, open_lo=True), default=5.0,
                   help="seconds between SSE keep-alive comments while sampling (default 5)")
    p.add_argument("--no-warmup", dest="no_warmup", action="store_true",
                   help="do not run the policies once at startup (JAX compiles on first use)")
    p.add_argument("--log-level", dest="log_level", default="info",
                   choices=("critical", "error", "warning", "info", "debug"))
    p.set_defaults(func=_cmd_serve)
