"""Implicit differentiation of a box-constrained optimum, for the fits (JAX only).

A fit returns the minimiser theta*(data) of an objective f(theta; data) over a box. Its
derivative does not need the iterations that found it: at an interior optimum the gradient
vanishes, g(theta*(data); data) = 0, so d theta* = -H^-1 (dg/d data) d data (H the Hessian in
theta), one small linear solve per question, as optimistix's ``implicit_jvp`` does. On the box
(status BOUNDARY) the active coordinates equal their bound, d theta_a = d bound, and the free
ones solve the reduced system, d theta_f = -H_ff^-1 (dg_f/d data + H_fa d theta_a): the exact
derivative of the constrained optimum while the active set does not change.

It is written as a correction that is zero in value, theta* + (delta - stop_gradient(delta))
with delta = -H^-1 g(theta*; data) and H held constant: forward values are exactly those of
the solve, and forward and reverse mode, jit and vmap all see the implicit derivative.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp
from jax import lax

__all__ = ["bump", "implicit_optimum"]


def bump(v: Any) -> Any:
    """v - stop_gradient(v): zero in value, v's derivative (0 where v is not finite)."""
    v = jnp.asarray(v)
    fin = jnp.isfinite(lax.stop_gradient(v))
    return jnp.where(fin, v - lax.stop_gradient(jnp.where(fin, v, 0.0)), 0.0)


def implicit_optimum(theta: Sequence[Any], grad_fn: Callable[[tuple], Sequence[Any]],
                     hessian: Any, lower: Sequence[Any], upper: Sequence[Any],
                     tol: Sequence[Any], keep: Any,
                     tol_hi: Sequence[Any] | None = None) -> tuple[Any, ...]:
    """The optimum ``theta`` (a tuple of p arrays [B], solved without derivatives) with the
    implicit derivative attached.

    Args:
        theta: the solver's optimum, p arrays of shape [B] (no derivative of their own).
        grad_fn: theta (p arrays) -> the objective's gradient in theta (p arrays), carrying
            the derivative with respect to the data.
        hessian: [B, p, p], the Hessian at the optimum (held constant).
        lower, upper: the box (arrays broadcastable to [B]; they may carry derivatives).
        tol: per coordinate, how close to a bound counts as on it (``tol_hi``: for the upper
            bound, when it differs).
        keep: [B] booleans; False gives the element no derivative (INVALID, masked out).
    """
    sg = lax.stop_gradient
    theta = tuple(sg(jnp.asarray(t)) for t in theta)
    p = len(theta)
    tol_hi = tol if tol_hi is None else tol_hi
    at_lo = [t <= sg(lo) + e for t, lo, e in zip(theta, lower, tol, strict=True)]
    at_hi = [(t >= sg(hi) - e) & ~a for t, hi, e, a in zip(theta, upper, tol_hi, at_lo,
                                                              strict=True)]
    # active coordinates follow their bound
    moved = tuple(t + jnp.where(a, bump(lo), jnp.where(b, bump(hi), 0.0))
                  for t, lo, hi, a, b in zip(theta, lower, upper, at_lo, at_hi, strict=True))
    free = jnp.stack([~(a | b) for a, b in zip(at_lo, at_hi, strict=True)], -1)  # [B, p]
    g = jnp.stack([jnp.asarray(v) for v in grad_fn(moved)], -1)
    g = jnp.where(free, g, 0.0)
    h = sg(jnp.asarray(hessian))
    eye = jnp.eye(p, dtype=h.dtype)
    both = free[..., :, None] & free[..., None, :]
    h = jnp.where(both, h, eye)
    # a singular or non-finite reduced Hessian: no derivative rather than inf
    finite = jnp.all(jnp.isfinite(h), axis=(-2, -1))
    det = jnp.linalg.det(jnp.where(finite[..., None, None], h, eye))
    usable = finite & (jnp.abs(det) > 0) & keep
    h = jnp.where(usable[..., None, None], h, eye)
    delta = -jnp.linalg.solve(h, jnp.where(usable[..., None], g, 0.0)[..., None])[..., 0]
    return tuple(jnp.where(keep, m + bump(delta[..., i]), sg(m)) for i, m in enumerate(moved))

