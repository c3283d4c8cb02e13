"""Run by tests/test_sharding.py in a subprocess (the device count is fixed at JAX's start):

    python tests/_sharding_worker.py devices              # one process, 4 CPU devices
    python tests/_sharding_worker.py host ID COUNT PORT   # one of COUNT jax.distributed
                                                          # processes, 2 CPU devices each

Prints one "ok <check>" line per check and exits non-zero on the first failure.
"""

from __future__ import annotations

import os
import sys

MODE = sys.argv[1]
os.environ["XLA_FLAGS"] = ("--xla_force_host_platform_device_count="
                           + ("4" if MODE == "devices" else "2"))
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

if MODE == "host":
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"127.0.0.1:{sys.argv[4]}", num_processes=int(sys.argv[3]),
                               process_id=int(sys.argv[2]))
jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import optscale  # noqa: E402

MESH = Mesh(np.array(jax.devices()), ("q",))
ROWS, MATRIX = NamedSharding(MESH, P("q")), NamedSharding(MESH, P("q", None))
LOCAL = jax.local_devices()[0]


def put(value, sharding):
    """A global array (every process holds the same host data and supplies its rows)."""
    value = np.asarray(value)
    return jax.make_array_from_callback(value.shape, sharding, lambda idx: value[idx])


def local_rows(x):
    """This process's rows of a row-sharded global array, and their indices."""
    shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
    idx = np.concatenate([np.arange(x.shape[0])[s.index[0]] for s in shards])
    return idx, np.concatenate([np.asarray(s.data) for s in shards])


def check(name, got, want_tree, *, exact=(), rtol=1e-12, atol=0.0, tol=None):
    """Every leaf of ``got`` is sharded over the rows like the input, and its local rows equal
    ``want`` (single-device results): exactly for the fields in ``exact``, else to rtol (or
    the field's (rtol, atol) in ``tol``)."""
    tol = tol or {}
    got, want = jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want_tree)
    fields = getattr(want_tree, "_fields", None) or (None,) * len(want)
    for field, g, w in zip(fields, got, want, strict=True):
        spec = P("q", *([None] * (g.ndim - 1)))
        if not g.sharding.is_equivalent_to(NamedSharding(MESH, spec), g.ndim):
            raise SystemExit(f"FAIL {name}.{field}: sharding {g.sharding}")
        idx, rows = local_rows(g)
        ref = np.asarray(w)[idx]
        if field in tol:
            ok = np.allclose(rows, ref, rtol=tol[field][0], atol=tol[field][1], equal_nan=True)
        elif field in exact or not np.issubdtype(ref.dtype, np.floating):
            ok = np.array_equal(rows, ref, equal_nan=True)
        else:
            ok = np.allclose(rows, ref, rtol=rtol, atol=atol, equal_nan=True)
        if not ok:
            raise SystemExit(f"FAIL {name}.{field}: max diff {np.nanmax(np.abs(rows - ref))}")
    print(f"ok {name}", flush=True)


def main() -> None:
    rng = np.random.default_rng(0)
    size = 1024 if MODE == "devices" else 512
    mu, sigma = rng.uniform(0.5, 1.0, size), 10 ** rng.uniform(-1.5, -0.5, size)
    target = rng.uniform(0.9, 0.99, size)
    scores = np.clip(rng.normal(mu[:, None], sigma[:, None], (size, 12)), 0.0, 1.0)
    scores[:40] = 1.0  # piled at the top: BOUNDARY fits

    # single-device references (on this process's first device)
    one = lambda v: jax.device_put(jnp.asarray(v), LOCAL)  # noqa: E731
    d1, t1 = optscale.TruncatedNormal(one(mu), one(sigma)), one(target)
    # sharded inputs; the distribution keeps its default (scalar) bounds
    ds, ts = jax.device_put(optscale.TruncatedNormal(put(mu, ROWS), put(sigma, ROWS)), ROWS), \
        put(target, ROWS)
    for name, fn in (
            ("min_samples k=1", lambda d, t: optscale.min_samples(d, t, 0.9)),
            ("min_samples k=2", lambda d, t: optscale.min_samples(d, t, 0.9, k=2))):
        check(name, fn(ds, ts), fn(d1, t1), exact=("n", "status"), rtol=1e-12)
    check("expected_best", optscale.expected_best(ds, 8), optscale.expected_best(d1, 8))
    check("logcdf", ds.logcdf(ts), d1.logcdf(t1))

    # the eager fit of sharded scores: one shard_map program, no host fetch; the single-
    # device reference is the eager loop, which rounds differently in flat valleys (as the
    # eager and jitted fits do on one device)
    fit_s = optscale.fit_truncnorm(put(scores, MATRIX))
    fit_1 = optscale.fit_truncnorm(one(scores))
    fit_tol = {"objective": (1e-12, 1e-12), "n_iter": (0, 2)}
    check("fit_truncnorm", fit_s, fit_1, exact=("status",), rtol=1e-5, atol=1e-9, tol=fit_tol)

    # inside the user's own shard_map, with the default check_vma
    body = jax.shard_map(lambda s: optscale.fit_truncnorm(s), mesh=MESH, in_specs=P("q", None),
                         out_specs=P("q"))
    check("fit_truncnorm in shard_map", jax.jit(body)(put(scores, MATRIX)), fit_1,
          exact=("status",), rtol=1e-5, atol=1e-9, tol=fit_tol)
    print("done", flush=True)


if __name__ == "__main__":
    main()
