"""Batched maximum-likelihood / MAP fits of the truncated normal, and moment matching.

The algorithms are written once against a small ``Ops`` namespace (array module, log normaliser,
while-loop) so that the JAX backend (``jax.numpy``, ``lax.while_loop``, jit) and the NumPy
reference run the same steps; scipy's L-BFGS-B is the independent check in the tests.

Fit. The negative log-likelihood of n scores depends on them only through n, their mean and
their centred sum of squares, so one Newton iteration costs one log normaliser per question, not
per score. Newton runs in (mu, rho = log sigma) with the analytic gradient and Hessian (from
phi(alpha) / Z and phi(beta) / Z), an eigenvalue-floored Hessian where it is not positive
definite, an Armijo backtracking line search, and a box: mu in [low - w, high + w] and sigma in
[1e-3 w, 10 w] (w = high - low) by default. The box is what keeps the estimate finite where the
likelihood has no maximum (all scores piled at a bound, one score, all scores equal); such fits
end on the box and are flagged ``BOUNDARY``.
"""

from __future__ import annotations

import enum
import math
from typing import Any, NamedTuple

__all__ = ["Fit", "FitStatus", "MomentStatus", "Ops", "keep_going", "python_run"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class FitStatus(enum.IntEnum):
    """OK: interior optimum. BOUNDARY: the optimum lies on the box (the unconstrained estimate
    diverges or degenerates). MAXITER: not converged within ``max_iter``. INVALID: no scores, or
    a bad argument (a score outside [low, high] that was not clipped, sigma <= 0 in a prior)."""

    OK = 0
    BOUNDARY = 1
    MAXITER = 2
    INVALID = 3


class MomentStatus(enum.IntEnum):
    """OK: the truncated normal has exactly these moments. IMPOSSIBLE: none on the range has
    them (mean outside the range, std above what any truncated normal with that mean reaches);
    the parameters are then the closest reachable (least squares, on the box). INVALID: NaN."""

    OK = 0
    IMPOSSIBLE = 1
    INVALID = 3


class Fit(NamedTuple):
    """Result of :func:`optscale.fit_truncnorm` (a pytree).

    Attributes:
        mu, sigma: the estimate, shape [B].
        objective: the minimised negative log-likelihood (plus the negative log prior density
            for MAP), constants included.
        cov: Laplace covariance of (mu, log sigma), shape [B, 2, 2]: the inverse Hessian of the
            objective at the estimate (its eigenvalues floored where the Hessian is singular).
        status: :class:`FitStatus` per question.
        n_iter: Newton iterations used.
    """

    mu: Any
    sigma: Any
    objective: Any
    cov: Any
    status: Any
    n_iter: Any

    @property
    def converged(self) -> Any:
        return (self.status == FitStatus.OK) | (self.status == FitStatus.BOUNDARY)


class Ops(NamedTuple):
    """What the generic algorithms need from a backend.

    ``run(step, consts, state, max_iter, **static)`` repeats ``state = step(ops, consts, state,
    **static)`` while ``state.k < max_iter`` and not ``all(state.done)``; steps do their work
    through ``call`` on module-level functions, so that a backend can compile each piece once.
    JAX drives the loop from Python with jitted pieces when the inputs are concrete: on CPU,
    XLA compiles a top-level computation with few outputs several times faster than the same
    work inside a ``lax.while_loop`` body or as one program with many outputs.
    """

    xp: Any  # numpy or jax.numpy
    log_mass: Any  # (a, b, w) -> log(Phi(b) - Phi(a)), accurate in the tails
    run: Any
    call: Any  # call(fn, *args, **static) = fn(ops, *args, **static), compiled where it helps


def keep_going(xp, state, max_iter):
    return (state.k < max_iter) & ~xp.all(state.done)


def python_run(ops, step, consts, state, max_iter, **static):
    """The loop for NumPy."""
    while keep_going(ops.xp, state, max_iter):
        state = step(ops, consts, state, **static)
    return state


def plain_call(ops, fn, *args, **static):
    return fn(ops, *args, **static)


# ----------------------------------------------------------------------------- the objective

def objective(ops: Ops, stats, mu, rho, low, high, prior):
    """Negative log-likelihood (+ negative log prior) from sufficient statistics."""
    xp = ops.xp
    n, mean, ss = stats
    sigma = xp.exp(rho)
    log_z = ops.log_mass((low - mu) / sigma, (high - mu) / sigma, (high - low) / sigma)
    q = (n * (mean - mu) ** 2 + ss) / (sigma * sigma)
    f = 0.5 * q + n * (rho + _HALF_LOG_2PI + log_z)
    if prior is not None:
        m0, s0, sd_m, sd_s = prior
        f = f + 0.5 * ((mu - m0) / sd_m) ** 2 + 0.5 * ((sigma - s0) / sd_s) ** 2 \
            + xp.log(sd_m) + xp.log(sd_s) + 2.0 * _HALF_LOG_2PI
    return f


def nll_derivatives(xp, log_mass, count, resp, mean, ss, mu, rho, low, high):
    """(f, g_mu, g_rho, h_mumu, h_murho, h_rhorho) in (mu, rho = log sigma) of
    f = q / 2 + count * rho + resp * log Z, q = (count (mean - mu)^2 + ss) / sigma^2: the
    truncated-normal negative log-likelihood without its 2 pi constant when count = resp = n;
    the mixture's M-step counts pseudo-observations of the parent normal in ``count`` only."""
    sigma = xp.exp(rho)
    alpha, beta = (low - mu) / sigma, (high - mu) / sigma
    log_z = log_mass(alpha, beta, (high - low) / sigma)
    pa = xp.exp(-0.5 * alpha * alpha - _HALF_LOG_2PI - log_z)  # phi(alpha) / Z
    pb = xp.exp(-0.5 * beta * beta - _HALF_LOG_2PI - log_z)
    q = (count * (mean - mu) ** 2 + ss) / (sigma * sigma)
    f = 0.5 * q + count * rho + resp * log_z
    # d log Z / d(alpha, beta) = (-pa, pb) and its second derivatives:
    gaa, gbb, gab = alpha * pa - pa * pa, -beta * pb - pb * pb, pa * pb
    inv = 1.0 / sigma
    g_mu = -count * (mean - mu) * inv * inv + resp * (pa - pb) * inv
    g_rho = -q + count + resp * (alpha * pa - beta * pb)
    h_mm = count * inv * inv + resp * inv * inv * (gaa + 2.0 * gab + gbb)
    h_mr = 2.0 * count * (mean - mu) * inv * inv + resp * inv * (
        alpha * gaa + (alpha + beta) * gab + beta * gbb + pb - pa)
    h_rr = 2.0 * q + resp * (alpha * alpha * gaa + 2.0 * alpha * beta * gab + beta * beta * gbb
                             - alpha * pa + beta * pb)
    return f, g_mu, g_rho, h_mm, h_mr, h_rr


def objective_derivatives(ops: Ops, stats, mu, rho, low, high, prior):
    """(f, g_mu, g_rho, h_mumu, h_murho, h_rhorho) in (mu, rho = log sigma)."""
    xp = ops.xp
    n, mean, ss = stats
    sigma = xp.exp(rho)
    f, g_mu, g_rho, h_mm, h_mr, h_rr = nll_derivatives(xp, ops.log_mass, n, n, mean, ss, mu, rho,
                                                       low, high)
    f = f + n * _HALF_LOG_2PI
    if prior is not None:
        m0, s0, sd_m, sd_s = prior
        f = f + 0.5 * ((mu - m0) / sd_m) ** 2 + 0.5 * ((sigma - s0) / sd_s) ** 2 \
            + xp.log(sd_m) + xp.log(sd_s) + 2.0 * _HALF_LOG_2PI
        g_mu = g_mu + (mu - m0) / (sd_m * sd_m)
        g_rho = g_rho + (sigma - s0) * sigma / (sd_s * sd_s)
        h_mm = h_mm + 1.0 / (sd_m * sd_m)
        h_rr = h_rr + sigma * (2.0 * sigma - s0) / (sd_s * sd_s)
    return f, g_mu, g_rho, h_mm, h_mr, h_rr


def _floored_inverse(xp, a, b, c, floor):
    """Inverse of the symmetric [[a, b], [b, c]] with eigenvalues replaced by max(|l|, floor):
    a descent direction where the Hessian is indefinite, a finite covariance where singular."""
    half_tr, half_diff = 0.5 * (a + c), 0.5 * (a - c)
    rad = xp.sqrt(half_diff * half_diff + b * b)
    l1, l2 = half_tr + rad, half_tr - rad
    # eigenvector of l1: (cos t, sin t) with tan 2t = 2b / (a - c)
    t = 0.5 * xp.arctan2(2.0 * b, a - c)
    cs, sn = xp.cos(t), xp.sin(t)
    m1, m2 = 1.0 / xp.maximum(xp.abs(l1), floor), 1.0 / xp.maximum(xp.abs(l2), floor)
    return (m1 * cs * cs + m2 * sn * sn, (m1 - m2) * cs * sn, m1 * sn * sn + m2 * cs * cs)


# ----------------------------------------------------------------------------- the fit

class NewtonState(NamedTuple):
    mu: Any
    rho: Any
    current: Any  # objective_derivatives at (mu, rho)
    t: Any  # step scale per question
    dec_prev: Any  # last accepted Newton decrement
    done: Any
    iters: Any
    k: Any


class NewtonConsts(NamedTuple):
    stats: Any
    low: Any
    high: Any
    prior: Any
    mu_lo: Any
    mu_hi: Any
    rho_lo: Any
    rho_hi: Any


def _derivs(ops, c: NewtonConsts, mu, rho):
    return objective_derivatives(ops, c.stats, mu, rho, c.low, c.high, c.prior)


def newton_start(ops: Ops, c: NewtonConsts, mu0, rho0) -> NewtonState:
    current = ops.call(_derivs_at, c, mu0, rho0)  # (the steps' own program)
    state = ops.call(_newton_init, mu0, rho0, current)
    return state._replace(k=ops.xp.asarray(0))


def _newton_init(ops: Ops, mu0, rho0, current) -> NewtonState:
    """The start state (k: a placeholder)."""
    xp = ops.xp
    # (*_like: inside shard_map the loop state then varies over the mesh like the data does)
    return NewtonState(mu0, rho0, current, xp.ones_like(mu0), xp.full_like(mu0, xp.inf),
                       xp.zeros_like(mu0, dtype=bool), xp.zeros_like(mu0, dtype=xp.int32),
                       None)


_FLOOR = 1e-12


def newton_propose(ops: Ops, c: NewtonConsts, s: NewtonState, *, freeze_mu: bool,
                   tol: float):
    """The trial point of one projected damped Newton iteration for every question; with
    ``freeze_mu`` only rho moves.

    One trial step per iteration with a step scale t per question: a rejected step is retried
    from the same point with t / 4 (backtracking spread over iterations, so no inner loop waits
    for the slowest question); an accepted one resets t to 1, or doubles it while the Newton
    decrement shrinks slowly. Where no bound is active the step is the Newton step in the
    natural parameters eta = (mu / s^2, -1 / (2 s^2)): there the negative log-likelihood is
    convex and the valley towards a divergent MLE is a straight line, which the (mu, log s)
    step would follow only by creeping.
    """
    xp = ops.xp
    mu, rho, t = s.mu, s.rho, s.t
    f, g_mu, g_rho, h_mm, h_mr, h_rr = s.current

    # (mu, rho) step, with the coordinates on the box whose gradient pushes outwards held
    fix_mu = ((mu <= c.mu_lo) & (g_mu > 0)) | ((mu >= c.mu_hi) & (g_mu < 0))
    if freeze_mu:
        fix_mu = xp.ones(mu.shape, dtype=bool)
    fix_rho = ((rho <= c.rho_lo) & (g_rho > 0)) | ((rho >= c.rho_hi) & (g_rho < 0))
    i_mm, i_mr, i_rr = _floored_inverse(xp, h_mm, h_mr, h_rr, _FLOOR)
    d_mu = -(i_mm * g_mu + i_mr * g_rho)
    d_rho = -(i_mr * g_mu + i_rr * g_rho)
    one_mu = -g_mu / xp.maximum(xp.abs(h_mm), _FLOOR)  # one free coordinate: 1-D Newton
    one_rho = -g_rho / xp.maximum(xp.abs(h_rr), _FLOOR)
    d_mu = xp.where(fix_mu, 0.0, xp.where(fix_rho, one_mu, d_mu))
    d_rho = xp.where(fix_rho, 0.0, xp.where(fix_mu, one_rho, d_rho))
    decrement = -(g_mu * d_mu + g_rho * d_rho)
    m_try, r_try = mu + t * d_mu, rho + t * d_rho

    if not freeze_mu:
        # natural-parameter step: H_eta = J' H J + sum_k g_k d2 theta_k, with
        # J = d(mu, rho) / d eta = [[s^2, 2 mu s^2], [0, s^2]]
        s2 = xp.exp(2.0 * rho)
        s4 = s2 * s2
        ge1, ge2 = s2 * g_mu, 2.0 * mu * s2 * g_mu + s2 * g_rho
        a = s4 * h_mm
        b = s4 * (2.0 * mu * h_mm + h_mr) + 2.0 * s4 * g_mu
        cc = s4 * (4.0 * mu * mu * h_mm + 4.0 * mu * h_mr + h_rr) + 8.0 * s4 * mu * g_mu \
            + 2.0 * s4 * g_rho
        i11, i12, i22 = _floored_inverse(xp, a, b, cc, _FLOOR * s4)
        n1, n2 = -(i11 * ge1 + i12 * ge2), -(i12 * ge1 + i22 * ge2)
        e1, e2 = mu / s2 + t * n1, -0.5 / s2 + t * n2
        e2 = xp.minimum(e2, -0.5 * xp.exp(-2.0 * c.rho_hi))  # sigma stays within the box
        free = (d_mu != 0.0) & (d_rho != 0.0)
        decrement = xp.where(free, -(ge1 * n1 + ge2 * n2), decrement)
        m_try = xp.where(free, -0.5 * e1 / e2, m_try)
        r_try = xp.where(free, -0.5 * xp.log(-2.0 * e2), r_try)

    small = decrement <= tol * (1.0 + xp.abs(f))
    m_try, r_try = xp.clip(m_try, c.mu_lo, c.mu_hi), xp.clip(r_try, c.rho_lo, c.rho_hi)
    return m_try, r_try, decrement, small


def _derivs_at(ops: Ops, c: NewtonConsts, mu, rho):
    return _derivs(ops, c, mu, rho)


def newton_accept(ops: Ops, c: NewtonConsts, s: NewtonState, proposal, trial) -> NewtonState:
    xp = ops.xp
    mu, rho, t, dec_prev, done = s.mu, s.rho, s.t, s.dec_prev, s.done
    f, g_mu, g_rho = s.current[:3]
    m_try, r_try, decrement, small = proposal
    f_try = trial[0]
    gain = g_mu * (m_try - mu) + g_rho * (r_try - rho)
    ok = ~done & ~small & (f_try <= f + 1e-4 * xp.minimum(gain, 0.0)) & (f_try < f)
    slow = decrement > 0.25 * dec_prev
    t_new = xp.where(ok, xp.where(slow, xp.minimum(2.0 * t, 1024.0), 1.0), 0.25 * t)
    stalled = ~ok & (t < 1e-10)  # no decrease even for tiny steps: stationary to rounding
    kept = tuple(xp.where(ok, new, old) for new, old in zip(trial, s.current, strict=True))
    return NewtonState(xp.where(ok, m_try, mu), xp.where(ok, r_try, rho), kept, t_new,
                       xp.where(ok, decrement, dec_prev), done | small | stalled,
                       s.iters + (~done).astype(xp.int32), s.k + 1)


def newton_step(ops: Ops, c: NewtonConsts, s: NewtonState, *, freeze_mu: bool,
                tol: float) -> NewtonState:
    """One iteration: propose (direction and trial point), evaluate the objective's derivatives
    there (the expensive part, one log normaliser per question), accept or shrink."""
    proposal = ops.call(newton_propose, c, s, freeze_mu=freeze_mu, tol=tol)
    trial = ops.call(_derivs_at, c, proposal[0], proposal[1])
    return ops.call(newton_accept, c, s, proposal, trial)


def _map_tree(fn, tree):
    """fn on every array of a (nested) tuple; None stays None."""
    if tree is None:
        return None
    if isinstance(tree, tuple):
        return type(tree)(*(_map_tree(fn, v) for v in tree)) if hasattr(tree, "_fields") \
            else tuple(_map_tree(fn, v) for v in tree)
    return fn(tree)


def newton_fit(ops: Ops, stats, low, high, prior, start, bounds, max_iter: int, tol: float):
    """The fit in two phases; returns (mu, rho, f, (c_mm, c_mr, c_rr), status, n_iter).

    Where the likelihood has no interior maximum (scores piled at a bound) Newton would head for
    mu = infinity. Such a fit ends on the mu-face of the box the scores lean towards, where it
    is a 1-D problem in sigma. So phase 1 solves on that face, starting from the exponential
    tail the valley tends to (mass within d of the bound decays like exp(-d (mu - bound) /
    sigma^2)); where the gradient there pushes out of the box (the optimality condition on the
    face), phase 2 starts from the face point and stops at once, otherwise from the sample
    moments.
    """
    (mu_lo, mu_hi), (rho_lo, rho_hi) = bounds
    c = NewtonConsts(stats, low, high, prior, mu_lo, mu_hi, rho_lo, rho_hi)
    upper, face_mu, rho_face = ops.call(_face_start, c)
    face = ops.run(newton_step, c, newton_start(ops, c, face_mu, rho_face), min(max_iter, 4),
                   freeze_mu=True, tol=tol)
    # After a few 1-D steps, questions whose likelihood pulls mu back inside are not face
    # cases: they stop holding up this phase.
    face = ops.call(_face_release, face, upper)
    face = ops.run(newton_step, c, face, min(max_iter, 16), freeze_mu=True, tol=tol)
    on_face, mu0, rho0 = ops.call(_face_end, face, upper, start)
    if prior is None:
        out = ops.run(newton_step, c, newton_start(ops, c, mu0, rho0), max_iter,
                      freeze_mu=False, tol=tol)
    else:
        # MAP is often bimodal (a mode at the data with a tiny sigma, one near the prior):
        # run from both starts as one batch and keep the better optimum.
        c2, mu2, rho2 = ops.call(_both_starts, c, mu0, rho0)
        run2 = ops.run(newton_step, c2, newton_start(ops, c2, mu2, rho2), max_iter,
                       freeze_mu=False, tol=tol)
        out = ops.call(_better_of_both, run2)
    return ops.call(_newton_finish, c, out, face.iters, on_face)


def _face_start(ops: Ops, c: NewtonConsts):
    """Phase 1's start: the side of the box the scores lean towards, its mu-face and a sigma
    on the exponential tail towards it."""
    xp = ops.xp
    _, mean, _ = c.stats
    upper = mean >= 0.5 * (c.low + c.high)
    face_mu = xp.where(upper, c.mu_hi, c.mu_lo)
    gap = xp.maximum(xp.where(upper, c.high - mean, mean - c.low), 1e-3 * (c.high - c.low))
    beyond = xp.abs(face_mu - xp.where(upper, c.high, c.low))
    rho_face = xp.clip(0.5 * xp.log(beyond * gap), c.rho_lo, c.rho_hi)
    return upper, face_mu, rho_face


def _face_release(ops: Ops, face: NewtonState, upper) -> NewtonState:
    g = face.current[1]
    return face._replace(done=face.done | ops.xp.where(upper, g > 0, g < 0), k=face.k * 0)


def _face_end(ops: Ops, face: NewtonState, upper, start):
    """Where the face's gradient pushes out of the box, the fit stays on the face: phase 2
    starts there, elsewhere from ``start``."""
    xp = ops.xp
    g_mu_face = face.current[1]
    on_face = xp.where(upper, g_mu_face < 0, g_mu_face > 0)
    mu0, rho0 = start
    return on_face, xp.where(on_face, face.mu, mu0), xp.where(on_face, face.rho, rho0)


def _both_starts(ops: Ops, c: NewtonConsts, mu0, rho0):
    """The MAP batch: every question twice, from its start and from the prior's mode."""
    xp = ops.xp
    both = lambda *v: xp.concatenate(v)  # noqa: E731
    c2 = NewtonConsts(*(_map_tree(lambda v: both(v, v), x) for x in c))
    mu_p = xp.clip(c.prior[0], c.mu_lo, c.mu_hi)
    rho_p = xp.clip(xp.log(xp.maximum(c.prior[1], xp.exp(c.rho_lo))), c.rho_lo, c.rho_hi)
    return c2, both(mu0, mu_p), both(rho0, rho_p)


def _better_of_both(ops: Ops, run2: NewtonState) -> NewtonState:
    xp = ops.xp
    size = run2.mu.shape[0] // 2
    first = run2.current[0][:size] <= run2.current[0][size:]
    return _map_tree(lambda v: xp.where(first.reshape(first.shape + (1,) * (v.ndim - 1)),
                                        v[:size], v[size:]) if v.ndim else v, run2)


def _newton_finish(ops: Ops, c: NewtonConsts, out: NewtonState, face_iters, on_face):
    xp = ops.xp
    mu, rho, done = out.mu, out.rho, out.done
    f, g_mu, g_rho, h_mm, h_mr, h_rr = out.current
    cov = _floored_inverse(xp, h_mm, h_mr, h_rr, _FLOOR)
    # Within 1e-6 (relative) of a bound counts as on it: Newton stops once the remaining
    # decrease is below tolerance, which near a bound the gradient pushes into can leave a
    # sliver between the iterate and the bound.
    eps = 1e-6 * (c.mu_hi - c.mu_lo)
    on_box = (mu <= c.mu_lo + eps) | (mu >= c.mu_hi - eps) | (rho <= c.rho_lo + 1e-6) \
        | (rho >= c.rho_hi - 1e-6)
    status = xp.where(~done, FitStatus.MAXITER, xp.where(on_box, FitStatus.BOUNDARY,
                                                         FitStatus.OK))
    return mu, rho, f, cov, status, out.iters + xp.where(on_face, face_iters, 0)


def sufficient_stats(xp, scores, mask, low, high, clip: bool):
    """(n, mean, centred sum of squares, bad) per question; ``bad`` marks a non-finite or
    out-of-range observed score when not clipping."""
    low, high = low[..., None], high[..., None]
    observed = mask & (scores == scores)
    inside = (scores >= low) & (scores <= high)
    bad = xp.any(mask & ~(inside & (scores == scores)), axis=-1) if not clip else \
        xp.any(mask & (scores != scores), axis=-1)
    x = xp.where(observed, xp.clip(scores, low, high) if clip else scores, 0.0)
    x = xp.where(observed & (clip | inside), x, 0.0)
    w = (observed & (clip | inside)).astype(scores.dtype)
    n = row_sum(w)
    mean = row_sum(w * x) / xp.maximum(n, 1.0)
    ss = row_sum(w * (x - mean[..., None]) ** 2)
    return n, mean, ss, bad


def row_sum(values):
    """The sum over the last axis, one column after another. A fixed order of adds makes a
    row's sum independent of the rows beside it: XLA's reductions group a row's terms
    differently in programs of different row counts, which made a question's fit depend on
    its batch's size (and, through the eager fits' row buckets, on earlier calls)."""
    if values.shape[-1] == 0:
        return values.sum(-1)
    total = values[..., 0]
    for j in range(1, values.shape[-1]):
        total = total + values[..., j]
    return total


def fit(ops: Ops, scores, mask, low, high, prior, bounds, clip, max_iter, tol, stats_fn=None):
    """The whole fit on arrays: statistics, start, Newton, status. Returns a :class:`Fit`."""
    xp = ops.xp
    if stats_fn is None:
        n, mean, ss, bad = sufficient_stats(xp, scores, mask, low, high, clip)
    else:
        n, mean, ss, bad = stats_fn(scores, mask, low, high, clip=clip)
    mu0, rho0, rho_lo, rho_hi, invalid = ops.call(_fit_start, n, mean, ss, bad, low, high,
                                                  prior, bounds)
    (mu_lo, mu_hi), _ = bounds
    out = newton_fit(ops, (n, mean, ss), low, high, prior, (mu0, rho0),
                     ((mu_lo, mu_hi), (rho_lo, rho_hi)), max_iter, tol)
    return ops.call(_fit_finish, out, invalid, mu0, rho0, ((mu_lo, mu_hi), (rho_lo, rho_hi)))


def _fit_start(ops: Ops, n, mean, ss, bad, low, high, prior, bounds):
    """The start point (the sample moments, or the prior where there are too few scores),
    the box in (mu, log sigma) and which questions are invalid."""
    xp = ops.xp
    width = high - low
    (mu_lo, mu_hi), (s_lo, s_hi) = bounds
    rho_lo, rho_hi = xp.log(s_lo), xp.log(s_hi)
    sd = xp.sqrt(ss / xp.maximum(n, 1.0))
    mu0 = xp.where(n >= 1, mean, 0.5 * (low + high))
    s0 = xp.where(n >= 2, sd, 0.25 * width)
    if prior is not None:
        mu0 = xp.where(n >= 2, mu0, prior[0])
        s0 = xp.where(n >= 2, s0, prior[1])
    mu0 = xp.clip(mu0, mu_lo, mu_hi)
    rho0 = xp.clip(xp.log(xp.maximum(s0, s_lo)), rho_lo, rho_hi)
    bad_prior = False
    if prior is not None:
        # a prior (mu0, sigma0) with sigma0 > 0, both finite, and positive prior stds
        bad_prior = ~((prior[2] > 0) & (prior[3] > 0) & (prior[1] > 0)
                      & xp.isfinite(prior[0]) & xp.isfinite(prior[1])
                      & xp.isfinite(prior[2]) & xp.isfinite(prior[3]))
    invalid = bad | (n < 1) & (prior is None) | bad_prior | ~(width > 0)
    return mu0, rho0, rho_lo, rho_hi, invalid


def _fit_finish(ops: Ops, out, invalid, mu0, rho0, bounds) -> Fit:
    xp = ops.xp
    mu, rho, f, cov, status, iters = out
    (mu_lo, mu_hi), (rho_lo, rho_hi) = bounds
    status = xp.where(invalid, FitStatus.INVALID, status).astype(xp.int32)
    # Invalid questions get the start point and a box-sized covariance: finite, and flagged.
    mu = xp.where(invalid, mu0, mu)
    rho = xp.where(invalid, rho0, rho)
    f = xp.where(invalid, 0.0, f)
    big = (0.5 * (mu_hi - mu_lo)) ** 2, (0.5 * (rho_hi - rho_lo)) ** 2
    c_mm = xp.where(invalid, big[0], cov[0])
    c_mr = xp.where(invalid, 0.0, cov[1])
    c_rr = xp.where(invalid, big[1], cov[2])
    cov = xp.stack([xp.stack([c_mm, c_mr], -1), xp.stack([c_mr, c_rr], -1)], -2)
    return Fit(mu, xp.exp(rho), f, cov, status, iters)


# ----------------------------------------------------------------------------- moment matching

class MomentState(NamedTuple):
    mu: Any
    rho: Any
    r1: Any
    r2: Any
    lam: Any
    done: Any
    k: Any


class MomentConsts(NamedTuple):
    mean: Any
    std: Any
    low: Any
    high: Any
    mu_lo: Any
    mu_hi: Any
    rho_lo: Any
    rho_hi: Any


def _moment_residual(ops, moments, c: MomentConsts, mu, rho):
    """Errors relative to the target std; the mean's weighs 10x so that where the moments are
    impossible the closest point keeps the mean and gives up on the std."""
    xp = ops.xp
    scale = xp.maximum(c.std, 1e-12 * (c.high - c.low))
    m, v = moments(ops, mu, xp.exp(rho), c.low, c.high)
    return 10.0 * (m - c.mean) / scale, (xp.sqrt(xp.maximum(v, 0.0)) - c.std) / scale


def moment_step(ops: Ops, c: MomentConsts, s: MomentState, *, moments) -> MomentState:
    return ops.call(_moment_step, c, s, moments=moments)


def _moment_step(ops: Ops, c: MomentConsts, s: MomentState, *, moments) -> MomentState:
    """One Levenberg-Marquardt iteration on the (mean, std) residual, Jacobian by central
    differences (its error only slows convergence; the residual is evaluated exactly)."""
    xp = ops.xp
    mu, rho, r1, r2, lam = s.mu, s.rho, s.r1, s.r2, s.lam
    width = c.high - c.low
    step = float(xp.finfo(mu.dtype).eps) ** (1.0 / 3.0)  # central differences: eps^(1/3)
    h_mu, h_rho = step * width, step
    res = lambda m, r: _moment_residual(ops, moments, c, m, r)  # noqa: E731
    a1, a2 = res(mu + h_mu, rho)
    b1, b2 = res(mu - h_mu, rho)
    c1, c2 = res(mu, rho + h_rho)
    d1, d2 = res(mu, rho - h_rho)
    j11, j21 = (a1 - b1) / (2 * h_mu), (a2 - b2) / (2 * h_mu)
    j12, j22 = (c1 - d1) / (2 * h_rho), (c2 - d2) / (2 * h_rho)
    # (J'J + lam diag(J'J)) step = -J' r
    a = j11 * j11 + j21 * j21
    cc = j12 * j12 + j22 * j22
    b = j11 * j12 + j21 * j22
    g1, g2 = j11 * r1 + j21 * r2, j12 * r1 + j22 * r2
    a_, c_ = a * (1 + lam) + 1e-300, cc * (1 + lam) + 1e-300
    det = a_ * c_ - b * b
    mu_t = xp.clip(mu - (c_ * g1 - b * g2) / det, c.mu_lo, c.mu_hi)
    rho_t = xp.clip(rho - (a_ * g2 - b * g1) / det, c.rho_lo, c.rho_hi)
    t1, t2 = res(mu_t, rho_t)
    better = ~s.done & (t1 * t1 + t2 * t2 < r1 * r1 + r2 * r2) & (t1 == t1) & (t2 == t2)
    r1, r2 = xp.where(better, t1, r1), xp.where(better, t2, r2)
    lam = xp.where(better, lam * 0.3, lam * 10.0)
    done = s.done | (r1 * r1 + r2 * r2 <= 1e-24) | (lam >= 1e12)
    return MomentState(xp.where(better, mu_t, mu), xp.where(better, rho_t, rho), r1, r2, lam,
                       done, s.k + 1)


def match_moments(ops: Ops, moments, mean, std, low, high, bounds, max_iter: int):
    """(mu, sigma, status, residual): the truncated normal on [low, high] with this mean and
    standard deviation, by box-constrained Levenberg-Marquardt in (mu, log sigma).

    ``moments(ops, mu, sigma, low, high)`` (module-level) returns the truncated normal's
    (mean, variance). Where no truncated normal has the moments, the iteration ends on the box
    or at the least-squares point, which is returned as IMPOSSIBLE.
    """
    xp = ops.xp
    width = high - low
    (mu_lo, mu_hi), (s_lo, s_hi) = bounds
    rho_lo, rho_hi = xp.log(s_lo), xp.log(s_hi)
    invalid = ~((mean == mean) & (std == std) & (width > 0))
    # Necessary conditions: inside the range, and below the Bhatia-Davis bound.
    feasible = (mean > low) & (mean < high) & (std > 0) & (std * std < (mean - low) * (high - mean))
    c = MomentConsts(mean, std, low, high, mu_lo, mu_hi, rho_lo, rho_hi)
    mu0 = xp.clip(xp.where(invalid, 0.5 * (low + high), mean), mu_lo, mu_hi)
    rho0 = xp.clip(xp.log(xp.clip(xp.where(invalid, 0.25 * width, std), s_lo, s_hi)),
                   rho_lo, rho_hi)
    r1, r2 = _moment_residual(ops, moments, c, mu0, rho0)
    state = MomentState(mu0, rho0, r1, r2, xp.full_like(mu0, 1e-3),
                        invalid | (r1 * r1 + r2 * r2 <= 1e-24), xp.asarray(0))
    out = ops.run(moment_step, c, state, max_iter, moments=moments)
    res = xp.sqrt(out.r1 * out.r1 + out.r2 * out.r2)
    ok = feasible & (res <= max(1e-7, 1e3 * float(xp.finfo(mean.dtype).eps)))
    status = xp.where(invalid, MomentStatus.INVALID,
                      xp.where(ok, MomentStatus.OK, MomentStatus.IMPOSSIBLE)).astype(xp.int32)
    return out.mu, xp.exp(out.rho), status, res
