"""Run by tests/test_large_n.py in a subprocess with a timeout (a solver that loops forever must
fail that test, not hang the suite): float32 queries whose answer exceeds 2**24, on every
backend, printed as one JSON line."""

from __future__ import annotations

import json

import numpy as np

import optscale

N_MAX = 2**31 - 1
MU, SIGMA = np.float32([0.5]), np.float32([0.1])
K_TARGET, K_CONF, E_TARGET = np.float32(0.99), np.float32(0.9), np.float32(0.9999)


def _row(sol):
    return [int(np.asarray(v).reshape(-1)[0]) if i < 2 else float(np.asarray(v).reshape(-1)[0])
            for i, v in enumerate(sol)]


def main() -> None:
    out = {}
    for name in optscale.available_backends():
        optscale.set_backend(name)
        d = optscale.TruncatedNormal(MU, SIGMA)
        out[name] = {
            "k3": _row(optscale.min_samples(d, K_TARGET, K_CONF, k=3, n_max=N_MAX)),
            "expected": _row(optscale.min_samples(d, E_TARGET, criterion="expected",
                                                  n_max=N_MAX)),
        }
        if name == "jax":
            import jax
            import jax.numpy as jnp

            @jax.jit
            def k3(mu):
                return optscale.min_samples(optscale.TruncatedNormal(mu, jnp.float32(0.1)),
                                            K_TARGET, K_CONF, k=3, n_max=N_MAX)

            # (the careful bisection's while_loop; the expected best's traced path shares it,
            # and compiling its quadrature would double the test's time)
            out["jit"] = {"k3": _row(k3(jnp.float32(0.5)))}
        if name == "numpy":  # the criterion as the reference evaluates it, at n and the float below
            from optscale import _reference as ref

            log_f, log_s = ref.log_cdf_sf(d, K_TARGET)
            n = np.float32(out[name]["k3"][0])
            below = np.nextafter(n, np.float32(0))
            tails = [float(ref.log_binom_lower(log_s, log_f, np.float32(m), np.float32(3))[0])
                     for m in (n, below)]
            n = np.float32(out[name]["expected"][0])
            below = np.nextafter(n, np.float32(0))
            e = [float(ref.expected_best(d, np.float32(m))[0]) for m in (n, below)]
            out["numpy_checks"] = {"k3_tails": tails, "log1mc": float(np.log1p(-K_CONF)),
                                   "expected": e}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
