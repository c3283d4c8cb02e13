"""Order statistics of n i.i.d. scores in JAX: best of n, at least k of n, expected best of n."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.special import betainc

from optscale import _truncnorm as tn
from optscale._quadrature import LOG_V, W_V
from optscale._special import LN2

if TYPE_CHECKING:
    from jax.typing import ArrayLike

__all__ = [
    "best_of_n_prob", "best_of_n_quantile", "expected_best", "k_of_n_prob", "log_binom_lower",
]


def best_of_n_prob(dist: Any, target: Any, n: Any) -> jax.Array:
    """P(max of n samples >= target) = 1 - F(target)^n."""
    log_f = tn.logcdf(dist, target)
    n = jnp.asarray(n, log_f.dtype)
    # (an invalid element's NaN would reach n's derivative through the product)
    ok = ~jnp.isnan(log_f)
    return jnp.where(ok, -jnp.expm1(n * jnp.where(ok, log_f, -1.0)), jnp.nan)


def best_of_n_quantile(dist: Any, q: Any, n: Any) -> jax.Array:
    """The q-quantile of the best of n samples: F^-1(q^(1/n)), formed in log space."""
    q = jnp.asarray(q)
    dtype = tn.params(dist, q)[0].dtype
    q = q.astype(dtype)
    n = jnp.asarray(n, dtype)
    # q = 0 (log q = -inf) and a bad n are constants: log and 1/n see safe values there
    use = (q > 0) & (q <= 1) & (n > 0)
    log_q = jnp.log(jnp.where(use, q, 1.0)) / jnp.where(use, n, 1.0)
    log_q = jnp.where(use, log_q, jnp.where((q == 0) & (n > 0), -jnp.inf, jnp.nan))
    return tn.icdf_log(dist, log_q)


def log_binom_lower(log_s: ArrayLike, log_f: ArrayLike, n: ArrayLike, k: ArrayLike, *,
                    k_max: int | None = None) -> jax.Array:
    """log P(Bin(n, s) <= k - 1) with s = exp(log_s), 1 - s = exp(log_f); n, k as floats.

    A sum of k positive terms built by the recurrence C(n, j+1) / C(n, j) = (n - j) / (j + 1), so
    it is accurate where it matters for the solver (the lower tail, near 1 - c) with no lgamma of
    large n. The loop runs max(k) - 1 times (k may be traced). ``k_max``: a Python int at
    least max(k), known when tracing: the loop is unrolled, so that XLA runs the sum as one
    loop over the batch instead of a loop of loops (the same arithmetic, bit for bit).

    Differentiable in log_s and log_f, forward and reverse (n and k are counts: no
    derivative): the loop sits inside a custom JVP whose tangent comes from the same sum,
    d/d log_s = E[j], d/d log_f = E[n - j] under the terms' weights, so no loop is
    differentiated.
    """
    log_s, log_f = jnp.asarray(log_s), jnp.asarray(log_f)
    dtype = jnp.result_type(log_s, log_f)
    log_s, log_f = log_s.astype(dtype), log_f.astype(dtype)
    n, k = jnp.asarray(n, dtype), jnp.asarray(k, dtype)
    f_zero, s_zero = log_f == -jnp.inf, log_s == -jnp.inf
    lf = jnp.where(f_zero | s_zero, -1.0, log_f)
    ls = jnp.where(f_zero | s_zero, -1.0, log_s)
    acc = _lower_sum(ls, lf, lax.stop_gradient(n), lax.stop_gradient(k), k_max)
    acc = jnp.where(n < k, 0.0, jnp.minimum(acc, 0.0))
    # F = 0: every sample reaches the target; S = 0: none does.
    acc = jnp.where(f_zero, jnp.where(n < k, 0.0, -jnp.inf), acc)
    return jnp.where(s_zero & ~f_zero, 0.0, acc)


def _lower_terms(ls, lf, n, k, with_mean: bool, k_max: int | None = None):
    """log sum_{j < k} C(n, j) s^j f^(n - j) and, with ``with_mean``, the terms' mean j."""
    step = ls - lf
    term0 = n * lf

    def body(j, carry):
        term, acc, mean_j = carry
        jf = jnp.asarray(j, term.dtype)
        term = term + jnp.log(jnp.maximum(n - jf + 1.0, 0.0) / jf) + step
        use = jf < k
        new = jnp.logaddexp(acc, term)
        if with_mean:
            # running mean of j under weights exp(term - acc); a -inf term weighs nothing
            w_new = jnp.where(term > -jnp.inf, jnp.exp(term - new), 0.0)
            mean_j = jnp.where(use, mean_j * (1.0 - w_new) + jf * w_new, mean_j)
        return term, jnp.where(use, new, acc), mean_j

    term0 = jnp.broadcast_to(term0, jnp.broadcast_shapes(term0.shape, k.shape))
    carry = (term0, term0, jnp.zeros_like(term0))
    if k_max is not None:
        # (j as a value known only when run, as the loop has it: XLA would otherwise fold
        # the constant into neighbouring operations and round differently)
        zero = 0.0 * jnp.max(k, initial=1)
        for j in range(1, k_max):
            carry = body(j + zero, carry)
        return carry[1], carry[2]
    # (initial: an empty batch; elements with n < k are 0 without the sum, so a k far above
    # n costs no rounds)
    k_top = jnp.max(jnp.where(n >= k, k, 1.0), initial=1).astype(jnp.int32)
    _, acc, mean_j = lax.fori_loop(1, k_top, body, carry)
    return acc, mean_j


@partial(jax.custom_jvp, nondiff_argnums=(4,))
def _lower_sum(ls, lf, n, k, k_max):
    return _lower_terms(ls, lf, n, k, False, k_max)[0]


@_lower_sum.defjvp
def _lower_sum_jvp(k_max, primals, tangents):
    ls, lf, n, k = primals
    dls, dlf = tangents[:2]
    acc, mean_j = _lower_terms(ls, lf, n, k, True, k_max)
    return acc, mean_j * dls + (n - mean_j) * dlf


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
    # (betainc's derivative in x is x^(k-1) (1-x)^(n-k) / B: NaN at x = 0 for k = 1, so x is
    # masked where the branch is unused or x is 0)
    use_upper = ~(lower < -LN2) & (log_s > -jnp.inf) & (log_f > -jnp.inf)
    x = jnp.exp(jnp.where(use_upper, log_s, -LN2))
    upper = jnp.where(use_upper, betainc(k, n_safe - k + 1.0, x),
                      jnp.where(log_s > -jnp.inf, 1.0, 0.0))
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
