"""Public functions: argument checks, then the backend chosen for the inputs does the work."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np

from optscale import _family_solve
from optscale._args import checked_dist, numeric, widened
from optscale._backend import _is_jax_array, select
from optscale._checks import INT_MAX, N_MAX_DEFAULT, query_checks
from optscale._family import ScoreDistribution
from optscale._solution import Solution

if TYPE_CHECKING:
    from optscale._fit import Fit
    from optscale._typing import Array, ArrayLike

__all__ = [
    "N_MAX_DEFAULT", "best_of_n_prob", "best_of_n_quantile", "cost_aware_samples",
    "expected_best", "fit_truncnorm", "k_of_n_prob", "min_samples", "truncnorm_from_moments",
]

_CRITERIA = ("probability", "expected")
_ERRORS = ("status", "raise")


def _is_traced(x: Any) -> bool:
    if not _is_jax_array(x):
        return False
    import jax

    return isinstance(x, jax.core.Tracer)


def _check_ints(**kw: Any) -> None:
    for name, value in kw.items():
        dtype = getattr(value, "dtype", None) or np.asarray(value).dtype
        if np.dtype(dtype).kind not in "iu" or isinstance(value, bool):
            raise TypeError(f"{name} must be an integer or an integer array; got dtype {dtype}")
        if not _is_traced(value) and np.any(np.asarray(value) > INT_MAX):
            raise ValueError(f"{name} must be <= {INT_MAX} (n is int32)")


def _check_options(errors: str, criterion: str = "probability") -> None:
    if criterion not in _CRITERIA:
        raise ValueError(f"criterion must be one of {_CRITERIA}; got {criterion!r}")
    if errors not in _ERRORS:
        raise ValueError(f"errors must be one of {_ERRORS}; got {errors!r}")


def _raise_first_invalid(fn: str, **args: Any) -> None:
    """ValueError naming the first invalid element (in C order) and the rule it breaks."""
    if any(_is_traced(v) for v in args.values()):
        raise TypeError(f"{fn}(errors='raise') needs concrete inputs; inside jax.jit use the "
                        "per-element status instead")
    arrays = {k: np.asarray(v) for k, v in args.items() if v is not None}
    checks = query_checks(np, **arrays)
    shape = np.broadcast_shapes(*(np.shape(v) for v in arrays.values()))
    bad = np.zeros(shape, bool)
    for _, mask, _ in checks:
        bad |= np.broadcast_to(mask, shape)
    if not bad.any():
        return
    idx = np.unravel_index(int(np.flatnonzero(bad)[0]), shape)
    for name, mask, rule in checks:
        if np.broadcast_to(mask, shape)[idx]:
            value = np.broadcast_to(arrays[name], shape)[idx]
            where = f" at index {tuple(int(i) for i in idx)}" if shape else ""
            raise ValueError(f"{fn}: {name} {rule}; got {name} = {value.item()!r}{where}")


def _raise_family_invalid(fn: str, dist: ScoreDistribution) -> None:
    """ValueError naming the first element whose family parameters are invalid."""
    if any(_is_traced(v) for v in dist.params()):
        raise TypeError(f"{fn}(errors='raise') needs concrete inputs; inside jax.jit use the "
                        "per-element status instead")
    bad = np.broadcast_to(np.asarray(dist.invalid()), dist.batch_shape)
    if bad.any():
        idx = np.unravel_index(int(np.flatnonzero(bad)[0]), bad.shape)
        values = ", ".join(f"{name} = {np.broadcast_to(np.asarray(v), bad.shape)[idx].item()!r}"
                           for name, v in zip(dist.field_names(), dist.params(), strict=True))
        where = f" at index {tuple(int(i) for i in idx)}" if bad.shape else ""
        raise ValueError(f"{fn}: invalid {type(dist).__name__} parameters{where}: {values} "
                         f"({dist.rule})")


def min_samples(dist: Any, target: Any, confidence: Any = None, *, k: Any = 1,
                criterion: str = "probability", n_min: Any = 1, n_max: Any = N_MAX_DEFAULT,
                errors: str = "status") -> Solution:
    """Smallest number of samples n in [n_min, n_max] whose best score reaches ``target``.

    Criteria:
      - ``"probability"`` (default): P(at least k of n scores >= target) >= confidence. For k = 1
        this is the closed form ``n = ceil(log(1 - c) / log F(target))``, adjusted so that
        ``F^n <= 1 - c < F^(n-1)`` holds exactly as evaluated in the input's precision; k > 1
        bisects on a bracket (closed form below, Chernoff bound above).
      - ``"expected"``: E[best of n] >= target (``confidence`` unused), by bisection.

    Args:
        dist: a :class:`~optscale.TruncatedNormal` (batch-shaped).
        target: score the best sample should reach; broadcasts against the batch.
        confidence: required probability for ``"probability"``, in (0, 1).
        k: how many samples must reach the target (integer >= 1).
        n_min, n_max: integer bounds on n (1 <= n_min <= n_max <= 2**31 - 1).
        errors: ``"status"`` (default) marks bad elements INVALID; ``"raise"`` raises ValueError
            naming the first bad argument, its index and value (needs concrete inputs).

    Returns:
        :class:`~optscale.Solution` ``(n, status, achieved)``; see :class:`~optscale.Status`.

    Example:
        >>> import optscale
        >>> d = optscale.TruncatedNormal(mu=0.9, sigma=0.1)
        >>> sol = optscale.min_samples(d, target=0.95, confidence=0.9)
        >>> int(sol.n), optscale.Status(int(sol.status)).name
        (12, 'OK')
    """
    _check_options(errors, criterion)
    if criterion == "probability" and confidence is None:
        raise ValueError("confidence is required for criterion='probability'")
    _check_ints(k=k, n_min=n_min, n_max=n_max)
    dist, target = checked_dist(dist), numeric("target", target)
    conf = numeric("confidence", confidence) if criterion == "probability" else None
    if isinstance(dist, ScoreDistribution):
        if errors == "raise":
            _raise_family_invalid("min_samples", dist)
            _raise_first_invalid("min_samples", target=target, confidence=conf, k=k,
                                 n_min=n_min, n_max=n_max)
        return _family_solve.min_samples(dist, target, conf, k=k, criterion=criterion,
                                         n_min=n_min, n_max=n_max)
    if errors == "raise":
        _raise_first_invalid("min_samples", mu=dist.mu, sigma=dist.sigma, low=dist.low,
                             high=dist.high, target=target, confidence=conf, k=k, n_min=n_min,
                             n_max=n_max)
    impl = select(dist, target, conf, k, n_min, n_max)
    return impl.min_samples(dist, target, conf, k=k, criterion=criterion, n_min=n_min,
                            n_max=n_max)


def cost_aware_samples(dist: Any, target: Any, cost: Any, *, n_min: Any = 1,
                       n_max: Any = N_MAX_DEFAULT, errors: str = "status") -> Solution:
    """The n in [n_min, n_max] maximising P(best of n >= target) - cost * n.

    The gain is concave in n, so the optimum is the smallest n with F^n (1 - F) <= cost, in
    closed form. ``cost`` is the price of one sample in units of success probability. An
    unreachable target (F(target) == 1) is INFEASIBLE with n = n_min; an optimum beyond n_max is
    INFEASIBLE with n = n_max.

    Example:
        >>> import optscale
        >>> d = optscale.TruncatedNormal(mu=0.9, sigma=0.1)
        >>> int(optscale.cost_aware_samples(d, target=0.95, cost=0.01).n)
        15
    """
    _check_options(errors)
    _check_ints(n_min=n_min, n_max=n_max)
    dist, target, cost = checked_dist(dist), numeric("target", target), numeric("cost", cost)
    if isinstance(dist, ScoreDistribution):
        if errors == "raise":
            _raise_family_invalid("cost_aware_samples", dist)
            _raise_first_invalid("cost_aware_samples", target=target, cost=cost, n_min=n_min,
                                 n_max=n_max)
        return _family_solve.cost_aware_samples(dist, target, cost, n_min=n_min, n_max=n_max)
    if errors == "raise":
        _raise_first_invalid("cost_aware_samples", mu=dist.mu, sigma=dist.sigma, low=dist.low,
                             high=dist.high, target=target, cost=cost, n_min=n_min, n_max=n_max)
    impl = select(dist, target, cost, n_min, n_max)
    return impl.cost_aware_samples(dist, target, cost, n_min=n_min, n_max=n_max)


def _domain(fn: str, result: Any, rules: list[tuple[str, Any, Any, str]]) -> Any:
    """Apply argument-domain rules [(name, value, bad mask, rule)]: concrete inputs raise a
    ValueError naming the first broken rule; traced inputs (inside jax.jit) get NaN there."""
    # (a concrete value checked against traced parameters gives a traced mask)
    traced = [bad for _, value, bad, _ in rules if _is_traced(value) or _is_traced(bad)]
    for name, value, bad, rule in rules:
        if not (_is_traced(value) or _is_traced(bad)) and np.any(bad):
            raise ValueError(f"{fn}: {name} {rule}; got {name} = "
                             f"{np.asarray(value)[np.asarray(bad)].ravel()[0]!r}")
    if traced:
        import jax.numpy as jnp

        out_bad = jnp.zeros((), bool)
        for bad in traced:
            out_bad = out_bad | bad
        result = jnp.where(out_bad, jnp.nan, result)
    return result


def _xp(*values: Any) -> Any:
    if any(_is_jax_array(v) for v in values):
        import jax.numpy as jnp

        return jnp
    return np


def _count_rules(xp: Any, name: str, value: Any, *, integer: bool, low: float,
                 strict: bool = False) -> tuple[str, Any, Any, str]:
    v = xp.asarray(value)
    bad = ~(v > low) if strict else ~(v >= low)
    if integer:
        bad = bad | (v != xp.floor(v))
    what = "an integer" if integer else "a number"
    rule = f"must be {what} {'>' if strict else '>='} {low:g}"
    return name, value, bad, rule


def best_of_n_prob(dist: Any, target: Any, n: Any) -> Any:
    """P(best of n samples >= target) = 1 - F(target)^n, from log F (no rounding of F to 1).

    ``n`` may be any real >= 0 (the continuous relaxation 1 - F^n); n = 0 gives 0. A negative
    or NaN n raises ValueError (inside ``jax.jit``: NaN for that element).
    """
    dist, target, n = checked_dist(dist), numeric("target", target), numeric("n", n)
    xp = _xp(*dist.params(), target, n)
    if isinstance(dist, ScoreDistribution):
        out = _family_solve.best_of_n_prob(dist, target, n)
    else:
        out = select(dist, target, n).best_of_n_prob(dist, target, n)
    oxp = _xp(out)
    # (and +0 for a 0 from -expm1(0), F = 1: -0 prints as "-0")
    out = oxp.where((oxp.asarray(n) == 0) | (out == 0), oxp.zeros((), out.dtype), out)
    return _domain("best_of_n_prob", out, [_count_rules(xp, "n", n, integer=False, low=0)])


def k_of_n_prob(dist: Any, target: Any, n: Any, k: Any) -> Any:
    """P(at least k of n samples >= target) = I_S(k, n - k + 1) with S = P(X > target).

    ``n`` and ``k`` are integers >= 0 (as integer or float arrays): k = 0 gives 1, n < k gives
    0. Anything else raises ValueError (inside ``jax.jit``: NaN for that element).
    """
    dist, target = checked_dist(dist), numeric("target", target)
    n, k = numeric("n", n), numeric("k", k)
    xp = _xp(*dist.params(), target, n, k)
    if isinstance(dist, ScoreDistribution):
        out = _family_solve.k_of_n_prob(dist, target, n, k)
    else:
        out = select(dist, target, n, k).k_of_n_prob(dist, target, n, k)
    oxp = _xp(out)
    out = oxp.where(oxp.asarray(k) <= 0, oxp.ones((), out.dtype),
                    oxp.where(out == 0, oxp.zeros((), out.dtype), out))  # (+0, not -0)
    return _domain("k_of_n_prob", out, [_count_rules(xp, "n", n, integer=True, low=0),
                                        _count_rules(xp, "k", k, integer=True, low=0)])


def best_of_n_quantile(dist: Any, q: Any, n: Any) -> Any:
    """q-quantile of the best of n samples, F^-1(q^(1/n)), with q^(1/n) kept in log space.

    ``q`` in [0, 1] and ``n`` > 0 (real); otherwise ValueError (inside ``jax.jit``: NaN).
    """
    dist, q, n = checked_dist(dist), numeric("q", q), numeric("n", n)
    xp = _xp(*dist.params(), q, n)
    if isinstance(dist, ScoreDistribution):
        out = _family_solve.best_of_n_quantile(dist, q, n)
    else:
        out = select(dist, q, n).best_of_n_quantile(dist, q, n)
    qa = xp.asarray(q)
    return _domain("best_of_n_quantile", out, [
        ("q", q, ~((qa >= 0) & (qa <= 1)), "must lie in [0, 1]"),
        _count_rules(xp, "n", n, integer=False, low=0, strict=True)])


def expected_best(dist: Any, n: Any) -> Any:
    """E[best of n samples] = int_0^1 F^-1(v^(1/n)) dv, by fixed 32-node Gauss-Legendre on a
    variable that clusters nodes at both ends (about 1e-10 absolute on a unit range).

    ``n`` is any real >= 1; otherwise ValueError (inside ``jax.jit``: NaN).
    """
    dist, n = checked_dist(dist), numeric("n", n)
    xp = _xp(*dist.params(), n)
    if isinstance(dist, ScoreDistribution):
        out = _family_solve.expected_best(dist, n)
    else:
        out = select(dist, n).expected_best(dist, n)
    return _domain("expected_best", out, [_count_rules(xp, "n", n, integer=False, low=1)])


# ----------------------------------------------------------------------------- estimation

_OUT_OF_RANGE = ("raise", "clip")


def _default_bounds(low: Any, high: Any, mu_bounds: Any, sigma_bounds: Any) -> tuple:
    width = np.asarray(high) - np.asarray(low) if not _is_jax_array(high) else high - low
    mu_b = (low - width, high + width) if mu_bounds is None else tuple(mu_bounds)
    sigma_b = (1e-3 * width, 10.0 * width) if sigma_bounds is None else tuple(sigma_bounds)
    return mu_b, sigma_b


def check_scores(fn: str, scores: Any, mask: Any, low: Any, high: Any,
                 out_of_range: str) -> tuple[Any, Any, Any, bool]:
    """(xp, scores [B, n] floating, mask [B, n] bool, single): shapes and dtypes checked, and
    with ``out_of_range="raise"`` an observed score outside [low, high] (or NaN) rejected with
    its position."""
    if out_of_range not in _OUT_OF_RANGE:
        raise ValueError(f"out_of_range must be one of {_OUT_OF_RANGE}; got {out_of_range!r}")
    jax_in = _is_jax_array(scores) or _is_jax_array(mask)
    xp = np
    if jax_in:
        import jax.numpy as xp  # noqa: F811
    scores = widened(xp.asarray(scores))
    if scores.dtype.kind not in "fiu":
        raise TypeError(f"scores must be numeric; got dtype {scores.dtype}")
    if scores.dtype.kind != "f":
        scores = scores.astype(float)
    single = scores.ndim == 1
    if single:
        scores = scores[None, :]
    if scores.ndim != 2:
        raise ValueError(f"scores must have shape [B, n] or [n]; got {scores.shape}")
    # (ones_like: a mask for sharded scores is sharded like them)
    mask = xp.ones_like(scores, dtype=bool) if mask is None else xp.asarray(mask)
    if single and mask.ndim == 1:
        mask = mask[None, :]
    if mask.shape != scores.shape or mask.dtype != bool:
        raise ValueError(f"mask must be booleans of the scores' shape {scores.shape}; got "
                         f"{mask.dtype} {mask.shape}")
    if out_of_range == "raise" and not any(_is_traced(v) for v in (scores, mask, low, high)):
        if jax_in:
            # On the device: only the verdict (and the first bad entry) comes to the host, so
            # arrays sharded over devices or processes are never gathered.
            import jax

            # (concrete scores inside a transformation of another argument, e.g. grad in the
            # prior: evaluate now rather than trace)
            with jax.ensure_compile_time_eval():
                verdict = _range_check_jax()(scores, mask, xp.asarray(low, scores.dtype),
                                             xp.asarray(high, scores.dtype))
            bad, i, j, value, lo_v, hi_v = (np.asarray(v).item() for v in verdict)
        else:
            s, m = np.asarray(scores), np.asarray(mask)
            lo_b, hi_b = (np.broadcast_to(np.asarray(v)[..., None] if np.ndim(v) else v,
                                          s.shape) for v in (low, high))
            bad_at = m & ~((s >= lo_b) & (s <= hi_b))
            bad = bad_at.any()
            if bad:
                i, j = np.argwhere(bad_at)[0]
                value, lo_v, hi_v = s[i, j], lo_b[i, j], hi_b[i, j]
        if bad:
            where = f"scores[{j}]" if single else f"scores[{i}, {j}]"
            raise ValueError(f"{fn}: {where} = {float(value)!r} lies outside [low, "
                             f"high] = [{float(lo_v)}, {float(hi_v)}] (or is NaN); "
                             "pass out_of_range='clip' to clip such scores, or mask them out")
    return xp, scores, mask, single


@functools.cache
def _range_check_jax() -> Any:
    """(any bad, row, column, value, low, high) of the first observed score outside [low,
    high] (or NaN), as replicated scalars."""
    import jax
    import jax.numpy as jnp

    @jax.jit
    def check(scores, mask, low, high):
        lo_b = jnp.broadcast_to(low[..., None] if low.ndim else low, scores.shape)
        hi_b = jnp.broadcast_to(high[..., None] if high.ndim else high, scores.shape)
        bad = mask & ~((scores >= lo_b) & (scores <= hi_b))
        flat = jnp.argmax(bad.reshape(-1))
        i, j = flat // scores.shape[1], flat % scores.shape[1]
        return (jnp.any(bad), i, j, scores.reshape(-1)[flat], lo_b.reshape(-1)[flat],
                hi_b.reshape(-1)[flat])

    return check


def fit_truncnorm(scores: ArrayLike, mask: ArrayLike | None = None, *,
                  prior: tuple[ArrayLike, ArrayLike] | None = None,
                  prior_std: tuple[ArrayLike, ArrayLike] = (0.1, 0.1), low: ArrayLike = 0.0,
                  high: ArrayLike = 1.0, out_of_range: str = "raise",
                  mu_bounds: tuple[ArrayLike, ArrayLike] | None = None,
                  sigma_bounds: tuple[ArrayLike, ArrayLike] | None = None,
                  max_iter: int = 100) -> Fit:
    """Fit a truncated normal to each question's scores: MLE, or MAP with a Gaussian prior.

    Args:
        scores: [B, n] (or [n] for one question) verifier scores.
        mask: [B, n] booleans, True where a score was observed (ragged counts); default all.
        prior: None for MLE, or (mu0, sigma0) per question for MAP with independent Gaussian
            priors on mu and sigma of standard deviations ``prior_std`` (0.1 as in the paper).
        low, high: the score range.
        out_of_range: "raise" (default) rejects an observed score outside [low, high] (or NaN)
            with a ValueError naming its position; "clip" clips it into the range. Inside
            ``jax.jit`` "raise" cannot raise and marks the question INVALID instead.
        mu_bounds, sigma_bounds: the box that keeps estimates finite (default mu in
            [low - w, high + w], sigma in [1e-3 w, 10 w], w = high - low).
        max_iter: Newton iteration cap.

    Returns:
        :class:`~optscale.Fit` (mu, sigma, objective, cov of (mu, log sigma), status, n_iter).
        One score, all-equal scores and scores piled at a bound have no interior MLE: the fit
        ends on the box with status BOUNDARY (finite, never NaN); with a prior it is interior.

    Example:
        >>> import numpy as np, optscale
        >>> fit = optscale.fit_truncnorm(np.array([[0.91, 0.95, 0.88, 0.99, 0.93]]))
        >>> round(float(fit.mu[0]), 2), optscale.FitStatus(int(fit.status[0])).name
        (0.94, 'OK')
    """
    if not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer; got {max_iter!r}")
    xp, scores, mask, single = check_scores("fit_truncnorm", scores, mask, low, high,
                                            out_of_range)
    dtype = scores.dtype
    low_a, high_a = xp.asarray(low, dtype), xp.asarray(high, dtype)
    batch = scores.shape[:1]
    if prior is not None:
        prior = tuple(xp.broadcast_to(xp.asarray(v, dtype), batch)
                      for v in (*prior, *prior_std))
    mu_b, sigma_b = _default_bounds(low_a, high_a, mu_bounds, sigma_bounds)
    bounds = tuple(tuple(xp.broadcast_to(xp.asarray(v, dtype), batch) for v in pair)
                   for pair in (mu_b, sigma_b))
    impl = select(scores, mask, low, high, *(prior or ()))
    tol = 1e-13 if dtype == np.float64 else 1e-6
    fit = impl.fit_truncnorm(scores, mask, xp.broadcast_to(low_a, batch),
                             xp.broadcast_to(high_a, batch), prior, bounds,
                             clip=out_of_range == "clip", max_iter=max_iter, tol=tol)
    if single:
        fit = type(fit)(*(v[0] for v in fit))
    return fit


def truncnorm_from_moments(mean: ArrayLike, std: ArrayLike, low: ArrayLike = 0.0,
                           high: ArrayLike = 1.0, *,
                           mu_bounds: tuple[ArrayLike, ArrayLike] | None = None,
                           sigma_bounds: tuple[ArrayLike, ArrayLike] | None = None,
                           max_iter: int = 1000) -> tuple[Array, Array, Array]:
    """(mu, sigma, status): the truncated normal on [low, high] with this mean and std.

    The batched inverse of the truncated normal's moments (a root find). Raw score means and
    standard deviations, which is what predictors are trained on, are often impossible for a
    truncated normal (a std larger than any truncated normal with that mean has: bimodal
    verifiers; two thirds of the MATH PRM statistics shipped with the OptScale reference are);
    those get status IMPOSSIBLE and the closest reachable parameters, which keep the mean. A
    match is OK when mean and std are reproduced to 1e-7 relative (float64). Deep in a
    one-sided tail the shape is nearly exponential and the iteration needs hundreds of steps.

    Example:
        >>> import optscale
        >>> mu, sigma, status = optscale.truncnorm_from_moments(0.9, 0.08)
        >>> round(float(mu), 2), round(float(sigma), 3), optscale.MomentStatus(int(status)).name
        (1.06, 0.15, 'OK')
    """
    jax_in = any(_is_jax_array(v) for v in (mean, std, low, high))
    xp = np
    if jax_in:
        import jax.numpy as xp  # noqa: F811
    mean, std = widened(xp.asarray(mean)), widened(xp.asarray(std))
    dtype = np.result_type(mean.dtype, std.dtype, np.float32) if not jax_in else \
        xp.result_type(mean, std, float)
    shape = np.broadcast_shapes(mean.shape, std.shape, np.shape(low), np.shape(high))
    cast = lambda v: xp.broadcast_to(xp.asarray(v, dtype), shape)  # noqa: E731
    low_a, high_a = cast(low), cast(high)
    mu_b, sigma_b = _default_bounds(low_a, high_a, mu_bounds, sigma_bounds)
    bounds = tuple(tuple(cast(v) for v in pair) for pair in (mu_b, sigma_b))
    impl = select(mean, std, low, high)
    mu, sigma, status, _ = impl.truncnorm_from_moments(cast(mean), cast(std), low_a, high_a,
                                                       bounds, max_iter=max_iter)
    return mu, sigma, status
