"""Sharded arrays (issue 16): the solvers and the fit take row-sharded ``jax.Array``s and
return them sharded like the input, without gathering them or fetching them to the host, and
the fit runs inside ``shard_map`` with the default ``check_vma``; sharded results equal the
single-device ones. On 4 emulated CPU devices in a subprocess (the device count is fixed when
JAX starts), and in a 2-process ``jax.distributed`` run on 127.0.0.1 (~30 s on two cores)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jax")

WORKER = Path(__file__).with_name("_sharding_worker.py")
ROOT = WORKER.parent.parent


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def test_sharded_solvers_and_fits_on_four_devices():
    out = subprocess.run([sys.executable, str(WORKER), "devices"], capture_output=True,
                         text=True, timeout=600, env=_env())
    assert out.returncode == 0 and out.stdout.strip().endswith("done"), \
        out.stdout[-2000:] + out.stderr[-4000:]
    assert out.stdout.count("ok ") == 6


def run_multihost(processes: int = 2, timeout: float = 300) -> list[str]:
    """The worker in ``processes`` jax.distributed processes on 127.0.0.1; their outputs.
    (A process that fails or hangs takes the others down with it: nothing is left running.)"""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [subprocess.Popen([sys.executable, str(WORKER), "host", str(i), str(processes),
                               str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env=_env()) for i in range(processes)]
    outs = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=timeout)
            outs.append(out)
            assert p.returncode == 0, out[-4000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return outs


def test_sharded_fit_across_two_processes():
    for out in run_multihost():
        assert out.strip().endswith("done") and out.count("ok ") == 6, out[-2000:]
