"""Order statistics of n i.i.d. scores in JAX: best of n, at least k of n, expected best of n."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.special import betainc

from optscale import _truncnorm as tn
from optscale._quadrature import LOG_V, W_V
from optscale._special import LN2

__all__ = [
    "best_of_n_prob", "best_of_n_quantile", "expected_best", "k_of_n_prob", "log_binom_lower",
]


def best_of_n_prob(dist: Any, target: Any, n: Any) -> jax.Array:
    """P(max of n samples >= target) = 1 - F(target)^n."""
    log_f = tn.logcdf(dist, target)
    n = jnp.asarray(n, log_f.dtype)
    return -jnp.expm1(n * log_f)


def best_of_n_quantile(dist: Any, q: Any, n: Any) -> jax.Array:
    """The q-quantile of the best of n samples: F^-1(q^(1/n)), formed in log space."""
    q = jnp.asarray(q)
    dtype = tn.params(dist, q)[0].dtype
    log_q = jnp.where((q >= 0) & (q <= 1), jnp.log(q.astype(dtype)), jnp.nan)
    return tn.icdf_log(dist, log_q / jnp.asarray(n, dtype))


def log_binom_lower(log_s: jax.Array, log_f: jax.Array, n: jax.Array, k: jax.Array) -> jax.Array:
    """log P(Bin(n, s) <= k - 1) with s = exp(log_s), 1 - s = exp(log_f); n, k as floats.

    A sum of k positive terms built by the recurrence C(n, j+1) / C(n, j) = (n - j) / (j + 1), so
    it is accurate where it matters for the solver (the lower tail, near 1 - c) with no lgamma of
    large n. The loop runs max(k) - 1 times (k may be traced).
    """
    f_zero, s_zero = log_f == -jnp.inf, log_s == -jnp.inf
    lf = jnp.where(f_zero | s_zero, -1.0, log_f)
    ls = jnp.where(f_zero | s_zero, -1.0, log_s)
    step = ls - lf
    term0 = n * lf

    def body(j, carry):
        term, acc = carry
        jf = jnp.asarray(j, term.dtype)
        term = term + jnp.log(jnp.maximum(n - jf + 1.0, 0.0) / jf) + step
        acc = jnp.where(jf < k, jnp.logaddexp(acc, term), acc)
        return term, acc

    k_max = jnp.max(k, initial=1).astype(jnp.int32)  # initial: an empty batch
    _, acc = lax.fori_loop(1, k_max, body, (term0, term0))
    acc = jnp.where(n < k, 0.0, jnp.minimum(acc, 0.0))
    # F = 0: every sample reaches the target; S = 0: none does.
    acc = jnp.where(f_zero, jnp.where(n < k, 0.0, -jnp.inf), acc)
    return jnp.where(s_zero & ~f_zero, 0.0, acc)


def k_of_n_prob(dist: Any, target: Any, n: Any, k: Any) -> jax.Array:
    """P(at least k of n samples >= target) = I_S(k, n - k + 1), S = P(X >= target).

    Large probabilities come from the complement of the lower-tail sum; small ones from the
    regularized incomplete beta, which keeps their relative accuracy.
    """
    log_f, log_s = tn.log_cdf_sf(dist, target)
    dtype = log_f.dtype
    n, k = jnp.asarray(n, dtype), jnp.asarray(k, dtype)
    lower = log_binom_lower(log_s, log_f, n, k)
    n_safe = jnp.where(n >= k, n, k)
    upper = betainc(k, n_safe - k + 1.0, jnp.exp(log_s))
    p = jnp.where(lower < -LN2, -jnp.expm1(lower), upper)
    return jnp.where(n < k, 0.0, p)


def expected_best_given(dist: Any, n: jax.Array) -> jax.Array:
    """E[best of n] for n broadcast against the batch; quantiles without Newton polish (their
    absolute error is ~eps, far below the quadrature's)."""
    mu, sigma, low, high = tn.params(dist)
    dtype = mu.dtype
    expand = lambda v: jnp.asarray(v)[..., None]  # noqa: E731
    nodes = type(dist)(expand(mu), expand(sigma), expand(low), expand(high))
    log_u = LOG_V.astype(dtype) / expand(jnp.asarray(n, dtype))
    x = tn._quantile(nodes, log_u, 0)
    return jnp.sum(W_V.astype(dtype) * x, axis=-1)


def expected_best(dist: Any, n: Any) -> jax.Array:
    """E[max of n samples] by fixed Gauss-Legendre quadrature on the quantile scale."""
    dtype = tn.params(dist, n)[0].dtype
    return expected_best_given(dist, jnp.asarray(n, dtype))
