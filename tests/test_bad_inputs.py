"""The bad and boundary input table (the core's contract), shared by every backend's test class.

Every public function either returns a per-element status (the solvers) or raises ValueError /
TypeError naming the argument; it never returns a NaN, a negative n or an out-of-range value next
to an OK status, and every backend gives the same answer and status on the same table.
"""

from __future__ import annotations

import itertools
import time

import mpmath as mp
import numpy as np
import pytest

import optscale
from optscale import Status
from tests._suite import BackendSuite, as_np, precision, tn

# ------------------------------------------------------------------ the table

_MU = (-1e300, -1e10, -5.0, 0.0, 0.5, 0.97, 1.0, 5.0, 1e10, 1e300)
_SIGMA = (1e-300, 1e-200, 1e-20, 1e-3, 0.1, 10.0, 1e20, 1e300)
_RANGE = ((0.0, 1.0), (-1e300, 1e300), (0.5, 0.5 + 1e-9), (-3.0, 7.0))
_TARGET_FRACTION = (-np.inf, 0.0, 0.5, 0.95, 1.0, 1.5, np.inf)  # position in [low, high]
_CONFIDENCE = (1e-10, 0.5, 0.9, 1 - 1e-10)


def extreme_grid(dtype) -> dict[str, np.ndarray]:
    """Valid but extreme queries: mu far outside the range, sigma from 1e-300 to 1e300, ranges
    of width 2e300 and 1e-9, targets outside the range, confidences near 0 and 1. Rows whose
    parameters do not survive the cast to `dtype` (1e300 in float32) are dropped: they are
    invalid there, which the invalid-input tests cover."""
    rows = []
    for mu, sigma, (low, high), frac, conf in itertools.product(
            _MU, _SIGMA, _RANGE, _TARGET_FRACTION, _CONFIDENCE):
        if np.isinf(frac):
            target = frac
        else:
            target = low + frac * (high - low) if high - low < 1e300 else frac
        rows.append((mu, sigma, low, high, target, conf))
    with np.errstate(over="ignore"):
        table = np.array(rows, np.float64).astype(dtype)
    # targets are allowed to be infinite; parameters must stay finite, sigma > 0, low < high,
    # and the bounds finite in standard units (a point mass no float can place is INVALID)
    mu, sigma, low, high = table[:, 0], table[:, 1], table[:, 2], table[:, 3]
    tiny = np.finfo(dtype).tiny
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        standard = (np.isfinite((low - mu) / sigma) & np.isfinite((high - mu) / sigma)
                    & ((high - low) / sigma >= tiny))
    keep = (np.all(np.isfinite(table[:, [0, 1, 2, 3, 5]]), axis=1) & (sigma >= tiny)
            & (low < high)
            & (table[:, 5] > 0) & (table[:, 5] < 1) & standard)
    table = table[keep]
    return dict(zip(("mu", "sigma", "low", "high", "target", "confidence"), table.T,
                    strict=True))


def check_solution(sol, q, *, criterion, k=1, n_min=1, n_max=optscale.N_MAX_DEFAULT):
    """The contract on every element of a Solution for valid input `q`."""
    n, status, achieved = (as_np(v) for v in sol)
    dtype = np.asarray(q["mu"]).dtype
    assert n.dtype == np.int32 and status.dtype == np.int32
    assert achieved.dtype == dtype, (achieved.dtype, dtype)
    assert n.shape == status.shape == achieved.shape == np.shape(q["mu"])
    assert np.all(np.isin(status, [s.value for s in Status]))
    assert not np.any(status == Status.INVALID), np.flatnonzero(status == Status.INVALID)[:5]
    assert np.all((n >= n_min) & (n <= n_max)), n[(n < n_min) | (n > n_max)][:5]
    bad = ~np.isfinite(achieved)
    assert not bad.any(), _rows(q, bad)
    tol = 8 * np.finfo(dtype).eps
    ok, infeasible = status == Status.OK, status == Status.INFEASIBLE
    if criterion == "probability":
        assert np.all((achieved >= 0) & (achieved <= 1))
        c = q["confidence"]
        short = ok & (achieved < c * (1 - tol))
        assert not short.any(), _rows(q, short, achieved)
        over = infeasible & (achieved >= c * (1 + tol))
        assert not over.any(), _rows(q, over, achieved)
        if k == 1:
            assert np.all(n[status == Status.TRIVIAL] == n_min)
    else:
        low, high, t = q["low"], q["high"], q["target"]
        span = tol * np.maximum(np.abs(low), np.abs(high))
        outside = (achieved < low - span) | (achieved > high + span)
        assert not outside.any(), _rows(q, outside, achieved)
        short = ok & (achieved < t - span)
        assert not short.any(), _rows(q, short, achieved)
        over = infeasible & (achieved >= t + span) & (t < high)
        assert not over.any(), _rows(q, over, achieved)


def _rows(q, mask, achieved=None):
    idx = np.flatnonzero(mask)[:5]
    out = [{k: float(v[i]) for k, v in q.items()} for i in idx]
    if achieved is not None:
        for row, i in zip(out, idx, strict=True):
            row["achieved"] = float(achieved[i])
    return out


def _dist(q):
    return optscale.TruncatedNormal(q["mu"], q["sigma"], q["low"], q["high"])


# ------------------------------------------------------------------ mpmath truth

def _log_ncdf(x):
    """log Phi(x) in mpmath; far out (mpmath's erfc overflows there) the asymptotic series,
    whose first omitted term is below 1e-40 relative."""
    if x > -1e6:
        return mp.log(mp.ncdf(x))
    return -x * x / 2 - mp.log(-x) - mp.log(2 * mp.pi) / 2 + mp.log1p(-1 / x**2 + 3 / x**4)


def _log_mass(lo, hi):
    """log(Phi(hi) - Phi(lo)), mirrored so that the difference is of left-tail values."""
    if lo >= 0:
        lo, hi = -hi, -lo
    if hi <= 0:
        big, small = _log_ncdf(hi), _log_ncdf(lo)
        return big + mp.log(-mp.expm1(small - big))
    return mp.log1p(-mp.exp(_log_ncdf(lo)) - mp.exp(_log_ncdf(-hi)))


def _true_log_f(mu, sigma, low, high, x):
    """log P(X <= x) with enough digits for any standardized distance (1e-310 to 1e310)."""
    scale = max(abs(mu), abs(low), abs(high), abs(x), 1.0) / min(sigma, 1.0)
    with mp.workdps(400 + 2 * int(mp.log10(scale))):  # 400: differences of 1e-301
        mu, sigma, low, high, x = (mp.mpf(float(v)) for v in (mu, sigma, low, high, x))
        a, b, z = (low - mu) / sigma, (high - mu) / sigma, (x - mu) / sigma
        lc, ls = _log_mass(a, z) - _log_mass(a, b), _log_mass(z, b) - _log_mass(a, b)
        return lc if lc < -mp.log(2) else mp.log(-mp.expm1(ls))


# ------------------------------------------------------------------ the shared class

class BadInputSuite(BackendSuite):
    # Everyday wrong answers found by a red-team pass; the truth is computed independently.

    def test_k_of_n_unreachable_target_is_not_certain(self, dtype):
        # S(0.95) ~ exp(-4500): nobody reaches the target, so P(2 of n) is 0, not 1.
        for mu, sigma in ((0.0, 0.01), (0.5, 0.03)):
            sol = optscale.min_samples(tn(mu, sigma, dtype=dtype), dtype.type(0.95),
                                       dtype.type(0.9), k=2)
            assert int(as_np(sol.status)) == Status.INFEASIBLE
            assert int(as_np(sol.n)) == optscale.N_MAX_DEFAULT
            assert float(as_np(sol.achieved)) == 0.0

    def test_k_far_above_n_costs_no_time(self):
        # P(k of n) = 0 for k > n by definition: no sum over j < k (10**7 terms took 90 s on
        # the NumPy backend, 1 s on JAX), in the probability or the solver's achieved value.
        d = tn(0.8, 0.1)
        for k in (20, 10**7):  # (the first compiles, k above the unrolled sizes)
            start = time.perf_counter()
            p = optscale.k_of_n_prob(d, 0.9, 3, k)
            sol = optscale.min_samples(d, 0.9, 0.9, k=k, n_max=5)
            elapsed = time.perf_counter() - start
        assert float(as_np(p)) == 0.0 and float(as_np(sol.achieved)) == 0.0
        assert int(as_np(sol.status)) == Status.INFEASIBLE and int(as_np(sol.n)) == 5
        assert elapsed < 0.5

    def test_zero_probabilities_are_positive_zero(self, dtype):
        # -expm1(0) is -0, which the CLI printed as "P(success) = -0"
        near, far = tn(0.8, 0.1, dtype=dtype), tn(0.0, 0.01, dtype=dtype)  # far: F(0.95) = 1
        t, c = dtype.type(0.95), dtype.type(0.9)
        outs = [optscale.min_samples(near, t, c, k=100, n_max=5).achieved,
                optscale.min_samples(far, t, c).achieved,
                optscale.min_samples(far, t, c, k=2).achieved,
                optscale.cost_aware_samples(far, t, dtype.type(0.01)).achieved,
                optscale.best_of_n_prob(far, t, 4), optscale.k_of_n_prob(far, t, 4, 2),
                optscale.k_of_n_prob(near, t, 3, 4)]
        for out in outs:
            out = as_np(out)
            assert out == 0.0 and not np.signbit(out), outs

    def test_point_mass_is_infeasible_not_a_negative_n(self, f64):
        for k in (1, 2):
            sol = optscale.min_samples(tn(0.9, 1e-200), 0.95, 0.9, k=k)
            assert (int(as_np(sol.n)), int(as_np(sol.status))) == (65536, Status.INFEASIBLE)
            assert float(as_np(sol.achieved)) == 0.0
            sol = optscale.min_samples(tn(0.9, 1e-200), 0.85, 0.9, k=k)
            assert (int(as_np(sol.n)), int(as_np(sol.status))) == (k, Status.OK)

    def test_n_max_near_int32_limit_stays_positive(self, dtype):
        n_max = 2**31 - 1
        for k in (1, 3):
            sol = optscale.min_samples(tn(0.5, 0.01, dtype=dtype), dtype.type(0.99),
                                       dtype.type(0.9), k=k, n_max=n_max)
            assert int(as_np(sol.n)) == n_max and int(as_np(sol.status)) == Status.INFEASIBLE
            sol = optscale.min_samples(tn(0.5, 0.1, dtype=dtype), dtype.type(0.7),
                                       dtype.type(0.9), k=k, n_min=n_max - 5, n_max=n_max)
            assert int(as_np(sol.n)) == n_max - 5 and int(as_np(sol.status)) == Status.OK

    def test_expected_best_with_extreme_parameters(self, f64):
        # E[max of 2 normals] = mu + sigma / sqrt(pi): the range is too wide to matter.
        wide = tn(0.9, 0.1, -1e300, 1e300)
        sol = optscale.min_samples(wide, 0.95, criterion="expected")
        assert (int(as_np(sol.n)), int(as_np(sol.status))) == (2, Status.OK)
        np.testing.assert_allclose(float(as_np(sol.achieved)), 0.9 + 0.1 / np.sqrt(np.pi),
                                   rtol=1e-9)
        # mu = 1e300: every score sits within 1e-301 of the upper bound.
        piled = tn(1e300, 0.1)
        sol = optscale.min_samples(piled, 0.95, criterion="expected")
        assert (int(as_np(sol.n)), int(as_np(sol.status))) == (1, Status.OK)
        assert float(as_np(sol.achieved)) == pytest.approx(1.0, abs=1e-12)
        assert float(as_np(piled.mean)) == pytest.approx(1.0, abs=1e-12)
        assert float(as_np(tn(-1e300, 0.1).mean)) == pytest.approx(0.0, abs=1e-12)
        np.testing.assert_allclose(as_np(optscale.expected_best(piled, np.array([1.0, 8.0]))),
                                   1.0, atol=1e-12)
        np.testing.assert_allclose(as_np(piled.icdf(np.array([0.01, 0.5, 0.99]))), 1.0,
                                   atol=1e-12)
        np.testing.assert_allclose(as_np(wide.icdf(0.5)), 0.9, rtol=1e-12)

    def test_log_cdf_is_finite_for_extreme_valid_parameters(self, f64):
        cases = [(0.9, 1e-200, 0, 1, 0.95), (0.9, 1e-160, 0, 1, 0.85), (1e300, 0.1, 0, 1, 0.95),
                 (-1e200, 1.0, 0, 1, 1e-199), (0.9, 0.1, -1e300, 1e300, 0.95),
                 (1e10, 1e-3, 0, 1, 1 - 1e-14), (0.5, 1e300, 0, 1, 0.25)]
        for mu, sigma, low, high, x in cases:
            d = tn(mu, sigma, low, high)
            lc, ls = float(as_np(d.logcdf(x))), float(as_np(d.logsf(x)))
            assert not (np.isnan(lc) or np.isnan(ls)), (mu, sigma, low, high, x, lc, ls)
            truth = float(_true_log_f(mu, sigma, low, high, x))
            if truth < -1e-300:
                np.testing.assert_allclose(lc, truth, rtol=1e-9, err_msg=str((mu, sigma, x)))
            else:
                assert lc == pytest.approx(truth, abs=1e-300)

    # The rules that hold on every element of the table.

    @pytest.mark.parametrize("k", [1, 2, 5])
    def test_probability_contract_on_the_extreme_grid(self, dtype, k):
        q = extreme_grid(dtype)
        sol = optscale.min_samples(_dist(q), q["target"], q["confidence"], k=k)
        check_solution(sol, q, criterion="probability", k=k)

    def test_expected_contract_on_the_extreme_grid(self, dtype):
        q = extreme_grid(dtype)
        sol = optscale.min_samples(_dist(q), q["target"], criterion="expected", n_max=4096)
        check_solution(sol, q, criterion="expected", n_max=4096)

    def test_cost_contract_on_the_extreme_grid(self, dtype):
        q = extreme_grid(dtype)
        sol = optscale.cost_aware_samples(_dist(q), q["target"], q["confidence"])
        n, status, achieved = (as_np(v) for v in sol)
        assert np.all((n >= 1) & (n <= optscale.N_MAX_DEFAULT))
        assert np.all(np.isfinite(achieved) & (achieved >= 0) & (achieved <= 1))
        assert not np.any(status == Status.INVALID)

    def test_functions_stay_in_range_on_the_extreme_grid(self, dtype):
        q = extreme_grid(dtype)
        d, t = _dist(q), q["target"]
        lc, ls = as_np(d.logcdf(t)), as_np(d.logsf(t))
        assert not np.any(np.isnan(lc) | np.isnan(ls)), _rows(q, np.isnan(lc) | np.isnan(ls))
        assert np.all((lc <= 0) & (ls <= 0))
        for n in (1, 7):
            p = as_np(optscale.best_of_n_prob(d, t, n))
            assert np.all((p >= 0) & (p <= 1)), _rows(q, ~((p >= 0) & (p <= 1)))
            p = as_np(optscale.k_of_n_prob(d, t, n, 2))
            assert np.all((p >= 0) & (p <= 1)), _rows(q, ~((p >= 0) & (p <= 1)))
        low, high = q["low"], q["high"]
        span = 8 * np.finfo(dtype).eps * np.maximum(np.abs(low), np.abs(high))
        for name, value in (("expected_best", optscale.expected_best(d, 8)),
                            ("quantile", optscale.best_of_n_quantile(d, 0.5, 8)),
                            ("icdf", d.icdf(np.asarray(0.3, dtype))),
                            ("mean", d.mean)):
            value = as_np(value)
            inside = np.isfinite(value) & (value >= low - span) & (value <= high + span)
            assert inside.all(), (name, _rows(q, ~inside, value))

    # Arguments outside their domain.

    def test_standard_range_overflow_is_invalid(self, dtype):
        # (0.5 + 1e300) / 1e-300 overflows, sigma is subnormal, the width in standard units
        # is subnormal: the distribution is a point mass at low (a uniform) that the
        # log-space formulas cannot place, so the query is INVALID and says why.
        f64 = dtype == np.float64
        tiny, huge = (1e-300, 1e300) if f64 else (1e-30, 1e30)
        subnormal, wide, width = (1e-320, 1e300, 1e-9) if f64 else (1e-40, 1e33, 1e-6)
        d = tn([0.5, -huge, 0.5, 0.5], [0.1, tiny, subnormal, wide], [0, 0, 0, 0.5],
               [1, 1, 1, 0.5 + width], dtype=dtype)
        sol = optscale.min_samples(d, dtype.type(0.7), dtype.type(0.9))
        np.testing.assert_array_equal(as_np(sol.status), [Status.OK] + [Status.INVALID] * 3)
        assert np.all(np.isnan(as_np(d.logcdf(dtype.type(0.7)))[1:]))
        with pytest.raises(ValueError, match=r"sigma must be .*on the scale of the range.*\(1,\)"):
            optscale.min_samples(d, dtype.type(0.7), dtype.type(0.9), errors="raise")

    def test_probability_functions_reject_n_and_k_out_of_range(self, dtype):
        d = tn(0.9, 0.1, dtype=dtype)
        t = dtype.type(0.95)
        assert float(as_np(optscale.best_of_n_prob(d, t, 0))) == 0.0
        assert float(as_np(optscale.k_of_n_prob(d, t, 4, 0))) == 1.0
        assert float(as_np(optscale.k_of_n_prob(d, t, 0, 0))) == 1.0
        assert float(as_np(optscale.k_of_n_prob(d, t, 3, 4))) == 0.0
        for fn, args, name in ((optscale.best_of_n_prob, (t, -3), "n"),
                               (optscale.best_of_n_prob, (t, np.nan), "n"),
                               (optscale.k_of_n_prob, (t, -1, 1), "n"),
                               (optscale.k_of_n_prob, (t, 4, -1), "k"),
                               (optscale.k_of_n_prob, (t, 4.5, 2), "n"),
                               (optscale.k_of_n_prob, (t, 4, 1.5), "k"),
                               (optscale.expected_best, (0,), "n"),
                               (optscale.best_of_n_quantile, (0.5, 0), "n"),
                               (optscale.best_of_n_quantile, (1.5, 3), "q")):
            with pytest.raises(ValueError, match=rf"\b{name}\b"):
                fn(d, *args)

    def test_non_numeric_parameters_are_a_type_error(self):
        for bad in ("0.9", np.array(["0.9"]), None, object()):
            with pytest.raises(TypeError, match="mu"):
                optscale.min_samples(optscale.TruncatedNormal(bad, 0.1), 0.95, 0.9)
        with pytest.raises(TypeError, match="target"):
            optscale.min_samples(tn(0.9, 0.1), "0.95", 0.9)
        with pytest.raises(TypeError, match="confidence"):
            optscale.min_samples(tn(0.9, 0.1), 0.95, "0.9")
        with pytest.raises(TypeError, match="sigma"):
            optscale.best_of_n_prob(optscale.TruncatedNormal(0.9, "0.1"), 0.95, 4)

    def test_ragged_lists_are_a_clear_error(self):
        with pytest.raises(ValueError, match="mu"):
            optscale.min_samples(optscale.TruncatedNormal([[0.9, 0.8], [0.7]], 0.1), 0.95, 0.9)

    def test_float32_in_float32_out(self):
        d = tn([0.9, 0.8], [0.1, 0.2], dtype=np.float32)
        t, c = np.float32(0.95), np.float32(0.9)
        # Python floats are weakly typed (NEP 50): they do not promote float32 arrays
        for out in (optscale.min_samples(d, t, c).achieved,
                    optscale.min_samples(d, 0.95, 0.9).achieved,
                    optscale.min_samples(d, t, c, k=2).achieved,
                    optscale.min_samples(d, t, criterion="expected").achieved,
                    optscale.cost_aware_samples(d, t, np.float32(0.01)).achieved,
                    optscale.best_of_n_prob(d, t, 4), optscale.k_of_n_prob(d, t, 4, 2),
                    optscale.expected_best(d, 4), d.logcdf(t), d.logcdf(0.95)):
            assert as_np(out).dtype == np.float32

    def test_half_precision_computes_in_float32(self):
        # float16 (and bfloat16) are widened to float32 by every public function, as integers
        # are to float: the same answers as float32 input, float32 out, no warnings
        import warnings

        halves = [np.float16]
        if self.backend == "jax":
            import jax.numpy as jnp

            halves += [lambda v: jnp.asarray(v, jnp.float16),
                       lambda v: jnp.asarray(v, jnp.bfloat16)]

        def run(cast):
            d = optscale.TruncatedNormal(cast([0.8, 0.6]), cast([0.1, 0.2]))
            t, c = cast(0.9), cast(0.9)
            return [*optscale.min_samples(d, t, c), *optscale.min_samples(d, t, c, k=2),
                    *optscale.min_samples(d, t, criterion="expected"),
                    *optscale.cost_aware_samples(d, t, cast(0.01)),
                    optscale.best_of_n_prob(d, t, 4), optscale.k_of_n_prob(d, t, 4, 2),
                    optscale.expected_best(d, 4), d.logcdf(t), d.mean,
                    optscale.fit_truncnorm(cast([[0.2, 0.5, 0.7]])).mu,
                    optscale.truncnorm_from_moments(cast(0.7), cast(0.1))[0]]

        # the float32 values of the half-precision inputs
        expected = run(lambda v: np.asarray(np.float16(v), np.float32))
        for half in halves:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                got = run(half)
            other_values = half(0.9).dtype != np.float16  # (bfloat16 rounds otherwise)
            for g, e in zip(got, expected, strict=True):
                g = as_np(g)
                assert g.dtype == as_np(e).dtype
                if not other_values:
                    np.testing.assert_array_equal(g, as_np(e))

    def test_empty_batches(self, dtype):
        d = tn(np.zeros(0), np.zeros(0), dtype=dtype)
        t = np.zeros(0, dtype)
        for sol in (optscale.min_samples(d, t, dtype.type(0.9)),
                    optscale.min_samples(d, t, dtype.type(0.9), k=3),
                    optscale.min_samples(d, t, criterion="expected"),
                    optscale.cost_aware_samples(d, t, dtype.type(0.01))):
            assert all(as_np(v).shape == (0,) for v in sol)
        for out in (optscale.best_of_n_prob(d, t, 4), optscale.k_of_n_prob(d, t, 4, 2),
                    optscale.expected_best(d, 4), optscale.best_of_n_quantile(d, 0.5, 4),
                    d.logcdf(t), d.mean):
            assert as_np(out).shape == (0,)


class TestBadInputsJax(BadInputSuite):
    backend = "jax"


class TestBadInputsNumpy(BadInputSuite):
    backend = "numpy"


class TestBadInputsCython(BadInputSuite):
    backend = "cython"


@pytest.mark.extension
def test_backends_agree_on_the_extreme_grid():
    """The same n and status from every backend, in float64, on the whole table, except at a
    tie: where the criterion at the smaller of two answers is within rounding (probability,
    1e-9 relative) or quadrature error (expected best: 1e-9 of the range plus the rounding of
    a 32-term sum) of its threshold. The table has exact ties by construction (a uniform
    limit with E[best of 19] = 0.95)."""
    names = optscale.available_backends()
    if len(names) < 2:
        pytest.skip("one backend only")
    q = extreme_grid(np.float64)
    criteria = [dict(k=1), dict(k=3), dict(criterion="expected", n_max=4096), dict(cost=True)]
    previous, out = optscale.backend(), {}
    try:
        for name in names:
            optscale.set_backend(name)
            with precision(name, np.float64):
                d, sols = _dist(q), []
                for kw in criteria:
                    if "cost" in kw:
                        sol = optscale.cost_aware_samples(d, q["target"], q["confidence"])
                    elif "criterion" in kw:
                        sol = optscale.min_samples(d, q["target"], **kw)
                    else:
                        sol = optscale.min_samples(d, q["target"], q["confidence"], **kw)
                    sols.append((as_np(sol.n), as_np(sol.status)))
                out[name] = sols
        optscale.set_backend("numpy")
        d = _dist(q)
        for which, kw in enumerate(criteria):
            for name in names[1:]:
                (n1, s1), (n2, s2) = out[names[0]][which], out[name][which]
                differ = (n1 != n2) | (s1 != s2)
                if not differ.any():
                    continue
                assert "cost" not in kw, (names[0], name, _rows(q, differ))
                m = np.minimum(n1, n2).astype(np.float64)
                if "criterion" in kw:
                    value = as_np(optscale.expected_best(d, m))
                    scale = np.maximum(np.abs(q["low"]), np.abs(q["high"]))
                    tie = (np.abs(value - q["target"])
                           <= 1e-9 * (q["high"] - q["low"]) + 32 * np.finfo(float).eps * scale)
                else:
                    value = as_np(optscale.k_of_n_prob(d, q["target"], m, kw["k"]))
                    tie = np.abs(value - q["confidence"]) <= 1e-9 * q["confidence"]
                assert not (differ & ~tie).any(), (names[0], name, kw, _rows(q, differ & ~tie))
    finally:
        optscale.set_backend(previous)
