"""Gradient health: the share of points where a public function's value is finite but its
gradient is not, over a grid of parameters, in float32 and float64 (issue 16).

    python benchmarks/gradient_health.py            # the full 61 x 101 grid (6,161 points)
    python benchmarks/gradient_health.py --small    # a 9 x 11 grid

Each case differentiates with respect to every continuous argument (the distribution's
parameters, and the target, probability, n, bounds where the function takes them), with
``jax.grad`` under ``jax.vmap`` and ``jax.jit``. The test (``tests/test_gradients.py``) runs
the small grid and the edge cases; this script the full grid.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

GRID_FULL = (61, 101)  # mu in [-0.5, 2] x sigma in [1e-3, 1], log-spaced: 6,161 points
GRID_SMALL = (9, 11)


def cases() -> dict[str, tuple[Callable, tuple[float, ...]]]:
    """name -> (f(mu, sigma, *extra) -> scalar, extra defaults): differentiated in every
    argument. Truncated-normal cases take the grid's (mu, sigma); family cases map them to
    their own parameters."""
    import optscale

    tn = optscale.TruncatedNormal

    def relaxed_min_samples(*args):
        from optscale import relaxed_min_samples

        return relaxed_min_samples(*args)

    def beta(m, s):
        # a Beta with roughly the grid point's mean and spread; an invalid (m, s) gives an
        # invalid Beta (a = -1), by a map whose own derivative stays finite there
        import jax.numpy as jnp

        bad = ~(s > 0) | jnp.isnan(m)
        mean = jnp.clip(jnp.where(bad, 0.5, m), 0.02, 0.98)
        k = 1.0 / jnp.square(jnp.where(bad, 1.0, s)) + 1.0
        return optscale.Beta(jnp.where(bad, -1.0, mean * k), (1.0 - mean) * k)

    def mixture(m, s):
        return optscale.TruncNormMixture(0.6, 0.1, 0.1, m, s)

    return {
        "logcdf": (lambda m, s, x, lo, hi: tn(m, s, lo, hi).logcdf(x), (0.95, 0.0, 1.0)),
        "logsf": (lambda m, s, x: tn(m, s).logsf(x), (0.95,)),
        "logpdf": (lambda m, s, x: tn(m, s).logpdf(x), (0.95,)),
        "best_of_n_prob": (lambda m, s, t, n: optscale.best_of_n_prob(tn(m, s), t, n),
                           (0.95, 16.0)),
        "k_of_n_prob": (lambda m, s, t: optscale.k_of_n_prob(tn(m, s), t, 16, 3), (0.9,)),
        "expected_best": (lambda m, s, n, lo, hi: optscale.expected_best(tn(m, s, lo, hi), n),
                          (16.0, 0.0, 1.0)),
        "best_of_n_quantile": (lambda m, s, q, n: optscale.best_of_n_quantile(tn(m, s), q, n),
                               (0.5, 16.0)),
        "icdf": (lambda m, s, q, lo, hi: tn(m, s, lo, hi).icdf(q), (0.3, 0.0, 1.0)),
        "isf": (lambda m, s, q: tn(m, s).isf(q), (0.3,)),
        "mean": (lambda m, s: tn(m, s).mean, ()),
        "variance": (lambda m, s: tn(m, s).variance, ()),
        "min_samples.achieved": (
            lambda m, s, t, c: optscale.min_samples(tn(m, s), t, c, n_max=4096).achieved,
            (0.95, 0.9)),
        "min_samples(k=2).achieved": (
            lambda m, s, t, c: optscale.min_samples(tn(m, s), t, c, k=2, n_max=4096).achieved,
            (0.95, 0.9)),
        "relaxed_min_samples": (lambda m, s, t, c: relaxed_min_samples(tn(m, s), t, c),
                                (0.95, 0.9)),
        "beta.logcdf": (lambda m, s, x: beta(m, s).logcdf(x), (0.9,)),
        "beta.expected_best": (lambda m, s: optscale.expected_best(beta(m, s), 8), ()),
        "mixture.best_of_n_prob": (
            lambda m, s, t: optscale.best_of_n_prob(mixture(m, s), t, 8), (0.95,)),
    }


def grid(shape: tuple[int, int], dtype) -> tuple[np.ndarray, np.ndarray]:
    mu, sigma = np.meshgrid(np.linspace(-0.5, 2.0, shape[0]), np.logspace(-3.0, 0.0, shape[1]),
                            indexing="ij")
    return mu.ravel().astype(dtype), sigma.ravel().astype(dtype)


# The everyday failures, as full argument tuples (mu, sigma, *extra) per case.
EDGES: dict[str, list[tuple[float, ...]]] = {
    "expected_best": [(0.97, 0.05, 8.0, 0.0, 1.0)],  # the README's example
    "best_of_n_quantile": [(0.9, 0.05, q, 1.0) for q in (0.0, 1e-6, 0.1, 0.3, 0.5)]
    + [(0.9, 0.05, 1.0, 1.0)],  # n = 1: TruncatedNormal(0.9, 0.05).icdf(q)
    "icdf": [(0.9, 0.05, q, 0.0, 1.0) for q in (0.0, 1e-6, 0.1, 0.3, 0.5, 1.0)],
    "logpdf": [(0.9, 0.05, 1.0), (0.9, 0.05, 0.0), (0.3, 0.01, 1.0)],  # a score equal to high
    "logcdf": [(0.9, 0.05, 1.0, 0.0, 1.0), (0.9, 0.05, 0.0, 0.0, 1.0)],
}


def invalid_points(extra: tuple[float, ...]) -> list[tuple[float, ...]]:
    """INVALID elements: the value is NaN (or a status says so) and the gradient must be 0."""
    return [(0.5, -1.0, *extra), (float("nan"), 0.1, *extra), (0.5, 0.0, *extra)]


def fd_bases(extra: tuple[float, ...]) -> list[tuple[float, ...]]:
    return [(m, s, *extra) for m in (0.6, 0.9, 1.3) for s in (0.05, 0.2)]


def evaluate(f: Callable, points: np.ndarray, jit: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(values [P], gradients [P, arity]) of f at the rows of ``points`` [P, arity], in one
    program (``jax.vmap`` of ``jax.grad`` in every argument)."""
    import jax
    import jax.numpy as jnp

    columns = tuple(jnp.asarray(points[:, i]) for i in range(points.shape[1]))
    argnums = tuple(range(points.shape[1]))

    def run(*args):
        grads = jax.vmap(jax.grad(f, argnums=argnums))(*args)
        return jax.vmap(f)(*args), jnp.stack(grads, -1)

    value, grad = (jax.jit(run) if jit else run)(*columns)
    return np.asarray(value), np.asarray(grad)


def health(f: Callable, extra: tuple[float, ...], shape: tuple[int, int], dtype,
           edges: list[tuple[float, ...]] = (), fd: bool = False) -> dict[str, float]:
    """One program per case: the grid, the edge cases, invalid elements and (``fd``)
    central-difference stencils around a few everyday points. Returns the share of grid points
    with a finite value and a non-finite gradient, the same count on the edges, the invalid
    elements whose gradient is not exactly 0, and the largest relative finite-difference
    error (``fd``)."""
    mu, sigma = grid(shape, np.float64)
    rows = [np.column_stack([mu, sigma] + [np.full(mu.shape, v) for v in extra])]
    rows.append(np.asarray(list(edges), np.float64).reshape(-1, 2 + len(extra)))
    rows.append(np.asarray(invalid_points(extra), np.float64))
    bases = np.asarray(fd_bases(extra), np.float64) if fd else np.zeros((0, 2 + len(extra)))
    steps = 1e-6 * np.maximum(np.abs(bases), 0.1)
    for i in range(bases.shape[1] if fd else 0):
        for sign in (1.0, -1.0):
            shifted = bases.copy()
            shifted[:, i] += sign * steps[:, i]
            rows.append(shifted)
    rows.insert(3, bases)
    sizes = [len(r) for r in rows]
    value, grad = evaluate(f, np.concatenate(rows).astype(dtype))
    parts = np.split(np.arange(len(value)), np.cumsum(sizes)[:-1])
    finite = lambda idx: np.isfinite(value[idx])  # noqa: E731
    bad_grad = lambda idx: ~np.all(np.isfinite(grad[idx]), axis=-1)  # noqa: E731
    g, e, inv, base = parts[:4]
    out = dict(share=float(np.mean(finite(g) & bad_grad(g))), finite=int(finite(g).sum()),
               edges_bad=int(np.sum(finite(e) & bad_grad(e))),
               edges_finite=int(finite(e).sum()),
               invalid_nonzero=int(np.sum(np.any(grad[inv] != 0.0, axis=-1))))
    if fd:
        err = 0.0
        for i in range(bases.shape[1]):
            plus, minus = value[parts[4 + 2 * i]], value[parts[5 + 2 * i]]
            num = (plus - minus) / (2.0 * steps[:, i])
            ana = grad[base, i]
            err = max(err, float(np.max(np.abs(ana - num) / (np.abs(num) + 1e-3))))
        out["fd_error"] = err
    return out


def check_mixture_fit() -> float:
    """The mixture fit's implicit gradient against differentiating 3 Newton steps on its
    negative log posterior from the EM optimum (float64, MLE and MAP): the largest relative
    difference."""
    import jax
    import jax.numpy as jnp

    import optscale
    from optscale._mixture import mixture_objective

    worst = 0.0
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        y = np.where(rng.random((3, 16)) < 0.4, rng.normal(0.2, 0.05, (3, 16)),
                     rng.normal(0.85, 0.05, (3, 16)))
        x = jnp.asarray(np.clip(y, 0.01, 0.99))
        mask = jnp.asarray(rng.random((3, 16)) > 0.1)
        w = jnp.asarray(rng.normal(size=(5, 3)))
        for prior in (None, (0.5, 0.2, 0.1, 0.85, 0.05)):
            fit = optscale.fit_family("mixture", x, mask, prior=prior)
            d = fit.dist
            # (mu1 <= mu2 here and the prior's components are in that order too)
            start = jnp.stack([d.weight, d.mu1, jnp.log(d.sigma1), d.mu2, jnp.log(d.sigma2)], -1)
            pr = None if prior is None else tuple(jnp.full(3, v) for v in prior)
            kappa = jnp.full(3, 0.0 if prior is None else 4.0)

            def objective(t, row, m, pr_row, k):
                return mixture_objective(t, row, m, 0.0, 1.0, pr_row, k, 0.05)

            def unrolled(s, th=start, pr=pr, kappa=kappa):
                for _ in range(3):
                    g = jax.vmap(jax.grad(objective))(th, s, mask, pr, kappa)
                    h = jax.vmap(jax.hessian(objective))(th, s, mask, pr, kappa)
                    th = th - jnp.linalg.solve(h, g[..., None])[..., 0]
                out = jnp.stack([th[:, 0], th[:, 1], jnp.exp(th[:, 2]), th[:, 3],
                                 jnp.exp(th[:, 4])])
                return jnp.sum(w * out)

            def implicit(s, prior=prior):
                dd = optscale.fit_family("mixture", s, mask, prior=prior).dist
                return jnp.sum(w * jnp.stack([dd.weight, dd.mu1, dd.sigma1, dd.mu2, dd.sigma2]))

            a, b = np.asarray(jax.grad(implicit)(x)), np.asarray(jax.grad(unrolled)(x))
            worst = max(worst, float(np.max(np.abs(a - b) / (np.abs(b) + 1e-3))))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="the test suite's grid")
    parser.add_argument("--only", nargs="*", help="case names")
    parser.add_argument("--fits", action="store_true",
                        help="only the mixture fit's implicit gradient against unrolled Newton")
    args = parser.parse_args()
    import jax

    if args.fits:
        print(f"mixture fit: implicit vs unrolled Newton gradient, max relative difference "
              f"{check_mixture_fit():.2e}")
        return

    shape = GRID_SMALL if args.small else GRID_FULL
    print(f"grid {shape[0]} x {shape[1]} = {shape[0] * shape[1]} points: share of points with a "
          "finite value and a NaN/inf gradient (edge cases and INVALID elements with a bad or "
          "non-zero gradient after the slash)")
    print(f"| {'function':28s} | float32 | float64 |")
    print(f"|{'-' * 30}|--------:|--------:|")
    for name, (f, extra) in cases().items():
        if args.only and name not in args.only:
            continue
        row = []
        t0 = time.perf_counter()
        for x64 in (False, True):
            with jax.enable_x64(x64):
                try:
                    out = health(f, extra, shape, np.float64 if x64 else np.float32,
                                 edges=EDGES.get(name, ()))
                    row.append(f"{100 * out['share']:5.1f} % / "
                               f"{out['edges_bad'] + out['invalid_nonzero']}")
                except Exception as err:  # e.g. no reverse mode before issue 16
                    row.append(f"error: {type(err).__name__}")
        print(f"| {name:28s} | {row[0]} | {row[1]} |  ({time.perf_counter() - t0:.1f} s)")

if __name__ == "__main__":
    main()
