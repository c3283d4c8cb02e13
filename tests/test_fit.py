"""Estimation on every backend: optimum against scipy L-BFGS-B, degenerate inputs, errors,
ragged masks, Laplace covariance, and moment matching."""

from __future__ import annotations

import contextlib
import functools

import numpy as np
import pytest
from scipy import optimize, special, stats

import optscale
from optscale import FitStatus, MomentStatus
from tests._suite import BackendSuite, as_np, tn

PRIOR_STD = 0.1


def _problems(count=1000, seed=0):
    """Scores of `count` questions (ragged via a mask), with degenerate ones mixed in."""
    rng = np.random.default_rng(seed)
    n_max = 64
    mu = rng.uniform(-0.5, 1.5, count)
    sigma = 10 ** rng.uniform(-2, 0, count)
    counts = rng.choice([1, 2, 3, 5, 8, 16, 64], count)
    ref = stats.truncnorm(-mu / sigma, (1 - mu) / sigma, loc=mu, scale=sigma)
    scores = ref.rvs(size=(n_max, count), random_state=rng).T
    kind = rng.random(count)
    scores[kind < 0.04] = 1.0  # every score at the upper bound
    scores[(kind >= 0.04) & (kind < 0.08)] = 0.37  # all equal
    scores[(kind >= 0.08) & (kind < 0.10)] = 0.0  # every score at the lower bound
    mask = np.arange(n_max)[None, :] < counts[:, None]
    prior_mu = mu + rng.normal(0, 0.1, count)
    prior_sigma = np.abs(sigma + rng.normal(0, 0.05, count)) + 0.01
    return scores, mask, (prior_mu, prior_sigma)


def _log_mass(a, b):
    """log(Phi(b) - Phi(a)) as scipy.stats.truncnorm forms it (mirror the right tail to the
    left, log1p in the middle), with scipy.special; independent of optscale's code."""
    if a >= 0:
        a, b = -b, -a
    if b <= 0:
        la, lb = special.log_ndtr(a), special.log_ndtr(b)
        return lb + np.log1p(-np.exp(la - lb))
    return np.log1p(-special.ndtr(a) - special.ndtr(-b))


def _scipy_objective(params, x, prior):
    """Negative log-likelihood (+ negative log prior density) of the scores: the objective the
    L-BFGS-B reference minimises (and, for the check, the one ours must reach)."""
    mu, sigma = params
    if not sigma > 0:
        return np.inf
    z = (x - mu) / sigma
    nll = 0.5 * np.sum(z * z) + len(x) * (np.log(sigma) + 0.5 * np.log(2 * np.pi)
                                          + _log_mass(-mu / sigma, (1 - mu) / sigma))
    if prior is not None:
        nll -= stats.norm.logpdf(mu, prior[0], PRIOR_STD) + stats.norm.logpdf(sigma, prior[1],
                                                                             PRIOR_STD)
    return nll


@functools.cache
def _lbfgsb(map_fit: bool):
    """scipy's optimum per question: (mu, sigma, objective), from the moments and two more
    starts; mu is only bounded far out so that a divergent optimum shows as such."""
    scores, mask, prior = _problems()
    out = []
    for i in range(len(scores)):
        x = scores[i][mask[i]]
        p = (prior[0][i], prior[1][i]) if map_fit else None
        best = None
        for start in ((x.mean(), max(x.std(), 0.05)), (0.5, 0.3), (1.2, 0.2)):
            with np.errstate(all="ignore"):
                r = optimize.minimize(_scipy_objective, start, args=(x, p), method="L-BFGS-B",
                                      bounds=[(-50, 50), (1e-3, 10)])
            if np.isfinite(r.fun) and (best is None or r.fun < best.fun):
                best = r
        out.append((best.x[0], best.x[1], best.fun))
    return np.array(out)


class FitSuite(BackendSuite):
    @pytest.mark.parametrize("map_fit", [False, True], ids=["mle", "map"])
    def test_objective_at_least_as_good_as_lbfgsb(self, f64, map_fit):
        scores, mask, prior = _problems()
        ref = _lbfgsb(map_fit)
        fit = optscale.fit_truncnorm(scores, mask, prior=prior if map_fit else None,
                                     prior_std=(PRIOR_STD, PRIOR_STD))
        mu, sigma, f, status = (as_np(v) for v in (fit.mu, fit.sigma, fit.objective,
                                                    fit.status))
        assert np.all(np.isfinite(mu) & np.isfinite(sigma) & np.isfinite(f))
        assert not np.any(status == FitStatus.MAXITER) and not np.any(status == FitStatus.INVALID)
        interior = ((ref[:, 0] >= -1) & (ref[:, 0] <= 2) & (ref[:, 1] > 1.001e-3)
                    & (ref[:, 1] < 9.99))
        assert interior.sum() > 450
        worse = f - ref[:, 2] > 1e-9 * np.abs(ref[:, 2])
        assert not np.any(worse & interior), np.flatnonzero(worse & interior)[:5]
        # our objective is the same function scipy minimised
        again = np.array([_scipy_objective((m, s), scores[i][mask[i]],
                                           (prior[0][i], prior[1][i]) if map_fit else None)
                          for i, (m, s) in enumerate(zip(mu, sigma, strict=True))])
        np.testing.assert_allclose(f, again, rtol=1e-10)
        # Where scipy ended beyond [low - 1, high + 1] either it stalled in the valley towards
        # infinity and ours is better, or the likelihood keeps rising outwards (the unbounded
        # MLE diverges) and ours is the best point on the box, finite and flagged.
        outside = (ref[:, 0] < -1) | (ref[:, 0] > 2)
        better = f <= ref[:, 2] + 1e-9 * np.abs(ref[:, 2])
        assert np.all((better | (status == FitStatus.BOUNDARY))[outside])
        if not map_fit:
            assert (outside & (status == FitStatus.BOUNDARY)).sum() > 20

    def test_degenerate_inputs_are_defined(self, dtype):
        x = np.array([[0.7, 0, 0], [0.6, 0.8, 0], [0.5, 0.5, 0.5], [1.0, 1.0, 1.0],
                      [0.0, 0.0, 0.0]], dtype)
        mask = np.array([[1, 0, 0], [1, 1, 0], [1, 1, 1], [1, 1, 1], [1, 1, 1]], bool)
        fit = optscale.fit_truncnorm(x, mask)
        mu, sigma, status = as_np(fit.mu), as_np(fit.sigma), as_np(fit.status)
        assert np.all(np.isfinite(mu) & np.isfinite(sigma)) and np.all(np.isfinite(as_np(fit.cov)))
        assert mu.dtype == dtype
        # one score and all-equal scores: sigma on its lower bound at the score
        np.testing.assert_allclose(mu[[0, 2]], [0.7, 0.5], atol=1e-4)
        np.testing.assert_allclose(sigma[[0, 2]], 1e-3, rtol=1e-3)
        assert status[1] == FitStatus.OK and 0.6 < mu[1] < 0.8
        # piled at a bound: mu beyond it (on the box edge in float64; in float32 the
        # derivatives lose their digits that far out, alpha ~ -2000, and the fit may stop short)
        assert mu[3] > 1.0 and mu[4] < 0.0
        if dtype == np.float64:
            assert mu[3] == pytest.approx(2.0) and mu[4] == pytest.approx(-1.0)
        np.testing.assert_array_equal(status[[0, 2, 3, 4]], FitStatus.BOUNDARY)
        # The paper's prior is Gaussian on sigma itself, with positive density at sigma = 0, so
        # it cannot stop a single score (or identical scores) from driving sigma to 0: those
        # stay on the box; two distinct scores are interior.
        fit = optscale.fit_truncnorm(x, mask, prior=(0.6, 0.1))
        assert np.all(np.isfinite(as_np(fit.mu)) & np.isfinite(as_np(fit.sigma)))
        assert int(as_np(fit.status)[1]) == FitStatus.OK

    def test_no_scores(self):
        fit = optscale.fit_truncnorm(np.zeros((2, 3)), np.zeros((2, 3), bool))
        np.testing.assert_array_equal(as_np(fit.status), FitStatus.INVALID)
        assert np.all(np.isfinite(as_np(fit.mu)))
        fit = optscale.fit_truncnorm(np.zeros((1, 3)), np.zeros((1, 3), bool), prior=(0.8, 0.1))
        assert int(as_np(fit.status)[0]) == FitStatus.OK
        assert float(as_np(fit.mu)[0]) == pytest.approx(0.8, abs=1e-5)

    def test_out_of_range_scores(self):
        x = np.array([[0.2, 0.4, 0.6], [0.5, 1.047, -0.021]])
        with pytest.raises(ValueError, match=r"scores\[1, 1\] = 1.047 lies outside"):
            optscale.fit_truncnorm(x)
        clipped = optscale.fit_truncnorm(x, out_of_range="clip")
        direct = optscale.fit_truncnorm(np.array([[0.2, 0.4, 0.6], [0.5, 1.0, 0.0]]))
        np.testing.assert_allclose(as_np(clipped.mu), as_np(direct.mu), rtol=1e-6)
        with pytest.raises(ValueError, match="NaN"):
            optscale.fit_truncnorm(np.array([0.5, np.nan]))
        # a masked-out NaN is fine
        optscale.fit_truncnorm(np.array([0.5, 0.6, np.nan]), np.array([True, True, False]))
        with pytest.raises(ValueError, match="out_of_range must be one of"):
            optscale.fit_truncnorm(x, out_of_range="ignore")

    def test_mask_is_the_same_as_separate_fits(self, f64):
        rng = np.random.default_rng(2)
        x = rng.uniform(0.3, 0.95, (3, 10))
        counts = [4, 10, 7]
        mask = np.arange(10)[None, :] < np.array(counts)[:, None]
        batch = optscale.fit_truncnorm(np.where(mask, x, 123.0), mask)  # junk where masked
        for i, c in enumerate(counts):
            one = optscale.fit_truncnorm(x[i, :c])
            assert float(as_np(one.mu)) == pytest.approx(float(as_np(batch.mu)[i]), rel=1e-9)
            assert float(as_np(one.sigma)) == pytest.approx(float(as_np(batch.sigma)[i]),
                                                            rel=1e-9)

    def test_laplace_covariance_is_the_inverse_hessian(self, f64):
        x = np.array([0.81, 0.92, 0.88, 0.97, 0.74, 0.9, 0.85])
        fit = optscale.fit_truncnorm(x)
        mu, rho = float(as_np(fit.mu)), float(np.log(as_np(fit.sigma)))

        def f(m, r):
            return _scipy_objective((m, np.exp(r)), x, None)

        h = 1e-4
        hmm = (f(mu + h, rho) - 2 * f(mu, rho) + f(mu - h, rho)) / h**2
        hrr = (f(mu, rho + h) - 2 * f(mu, rho) + f(mu, rho - h)) / h**2
        hmr = (f(mu + h, rho + h) - f(mu + h, rho - h) - f(mu - h, rho + h)
               + f(mu - h, rho - h)) / (4 * h * h)
        np.testing.assert_allclose(as_np(fit.cov), np.linalg.inv([[hmm, hmr], [hmr, hrr]]),
                                   rtol=1e-4)

    def test_float32_agrees_with_float64(self):
        scores, mask, _ = _problems()
        scores, mask = scores[:200], mask[:200]
        fit32 = optscale.fit_truncnorm(scores.astype(np.float32), mask)
        ok = as_np(fit32.status) == FitStatus.OK
        assert as_np(fit32.mu).dtype == np.float32 and ok.mean() > 0.5
        f64 = _lbfgsb(False)[:200]
        interior = (f64[:, 0] >= -1) & (f64[:, 0] <= 2) & (f64[:, 1] > 1.001e-3)
        f = as_np(fit32.objective).astype(np.float64)
        assert np.all((f - f64[:, 2] <= 1e-4 * np.abs(f64[:, 2]) + 1e-3)[interior & ok])


class TestFitJax(FitSuite):
    backend = "jax"


class TestFitNumpy(FitSuite):
    backend = "numpy"


class MomentSuite(BackendSuite):
    def test_round_trip(self, f64):
        rng = np.random.default_rng(4)
        mu, sigma = rng.uniform(-0.3, 1.3, 300), 10 ** rng.uniform(-2, -0.3, 300)
        d = tn(mu, sigma)
        mean, std = as_np(d.mean), np.sqrt(as_np(d.variance))
        m, s, status = (as_np(v) for v in optscale.truncnorm_from_moments(mean, std))
        assert np.all(status == MomentStatus.OK)
        back = tn(m, s)
        np.testing.assert_allclose(as_np(back.mean), mean, rtol=1e-8)
        np.testing.assert_allclose(np.sqrt(as_np(back.variance)), std, rtol=1e-7)
        # Deep in a one-sided tail the shape is nearly exponential and (mu, sigma) are barely
        # identified by two moments; elsewhere the parameters come back too.
        inside = (mu > 0) & (mu < 1)
        np.testing.assert_allclose(m[inside], mu[inside], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(s[inside], sigma[inside], rtol=1e-6)

    def test_impossible_and_invalid(self):
        mean = np.array([0.9, 0.95, 1.2, 0.5, np.nan, 0.5])
        std = np.array([0.08, 0.064, 0.1, 0.6, 0.1, 0.0])
        m, s, status = (as_np(v) for v in optscale.truncnorm_from_moments(mean, std))
        np.testing.assert_array_equal(status, [MomentStatus.OK, MomentStatus.IMPOSSIBLE,
                                               MomentStatus.IMPOSSIBLE, MomentStatus.IMPOSSIBLE,
                                               MomentStatus.INVALID, MomentStatus.IMPOSSIBLE])
        assert np.all(np.isfinite(m) & np.isfinite(s))
        # the closest reachable point still has the mean where the std is what is impossible
        d = tn(m[1], s[1])
        assert float(as_np(d.mean)) == pytest.approx(0.95, abs=1e-3)


class TestMomentsJax(MomentSuite):
    backend = "jax"


class TestMomentsNumpy(MomentSuite):
    backend = "numpy"


def test_fit_inside_jit_marks_out_of_range_invalid():
    jax = pytest.importorskip("jax")
    with jax.enable_x64(True):
        f = jax.jit(lambda x: optscale.fit_truncnorm(x).status)
        status = f(jax.numpy.array([[0.2, 0.5, 0.7], [0.3, 1.5, 0.6]]))
        np.testing.assert_array_equal(np.asarray(status), [FitStatus.OK, FitStatus.INVALID])


@contextlib.contextmanager
def _compile_seconds():
    """The seconds of XLA compilation inside the block, as a list it fills."""
    jax = pytest.importorskip("jax")
    seconds, on = [], [True]

    def listen(event, duration, **_):
        if event == "/jax/core/compile/backend_compile_duration" and on[0]:
            seconds.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield seconds
    finally:
        on[0] = False  # (listeners cannot be removed)


def test_a_new_batch_size_reuses_the_compiled_fit():
    # Issue 15: eager fits run on row buckets (powers of two, at least 8, for small batches),
    # so a new batch size in a bucket already used, or in a smaller one within 8x of it,
    # compiles (almost) nothing: the padding and the cut back to size.
    pytest.importorskip("jax")
    rng = np.random.default_rng(5)
    x = np.clip(rng.normal(0.8, 0.1, (300, 12)), 0.0, 1.0).astype(np.float32)
    warm = optscale.fit_truncnorm(x[:200], out_of_range="clip")  # bucket 256
    with _compile_seconds() as seconds:
        fit = optscale.fit_truncnorm(x[:150], out_of_range="clip")  # a new size, same bucket
        # a smaller bucket not compiled yet runs padded to the compiled one (within 8x)
        small = optscale.fit_truncnorm(x[:40], out_of_range="clip")
    assert sum(seconds) <= 0.2, (sum(seconds), len(seconds))
    assert fit.mu.shape == (150,) and small.mu.shape == (40,)
    np.testing.assert_array_equal(np.asarray(fit.mu), np.asarray(warm.mu)[:150])
    np.testing.assert_array_equal(np.asarray(small.sigma), np.asarray(warm.sigma)[:40])


def test_large_batches_take_fine_buckets_and_compiled_pieces(monkeypatch):
    # Large batches are bucketed at 1/16 of an octave (a power of two would pad 100,000 rows to
    # 131,072); one larger than every compiled bucket runs as the largest it fills half of
    # plus the rest, padded to it, instead of compiling (here "large" is lowered to 64 rows).
    pytest.importorskip("jax")
    from optscale import _jax_backend

    monkeypatch.setattr(_jax_backend, "_FINE", 64)
    monkeypatch.setattr(_jax_backend, "_USED_ROWS", {})
    assert [_jax_backend._bucket_rows(n) for n in (8, 60, 64, 65, 100, 129)] == \
        [8, 64, 64, 68, 100, 136]
    rng = np.random.default_rng(6)
    x = np.clip(rng.normal(0.7, 0.1, (130, 7)), 0.0, 1.0).astype(np.float32)
    warm = optscale.fit_truncnorm(x[:100], out_of_range="clip")  # bucket 100: compiled
    whole = optscale.fit_truncnorm(np.concatenate([x[100:], x[:70]]), out_of_range="clip")
    args = (np.zeros((130, 7), np.float32),)
    assert _jax_backend._pieces(130, args, ()) == [(0, 130, 136)]  # (another signature)
    with _compile_seconds() as seconds:
        fit = optscale.fit_truncnorm(x, out_of_range="clip")  # 100 rows + 30 padded to 100
    assert sum(seconds) <= 0.2, (sum(seconds), len(seconds))
    np.testing.assert_array_equal(np.asarray(fit.mu)[:100], np.asarray(warm.mu))
    np.testing.assert_array_equal(np.asarray(fit.sigma)[100:], np.asarray(whole.sigma)[:30])


@pytest.mark.parametrize("x64", [False, True])
def test_a_question_fits_the_same_in_any_batch(x64):
    # A question's fit must not depend on the rows beside it: XLA's CPU reductions group a
    # row's terms differently in programs of different row counts (64 rows against 1,024
    # here: mu, sigma and the status of a few questions differed), so the statistics sum the
    # score columns in a fixed order. (MAP: its two starts cover the MLE's path.)
    jax = pytest.importorskip("jax")
    dtype = np.float64 if x64 else np.float32
    rng = np.random.default_rng(7)
    mu = rng.uniform(-0.3, 1.3, (1024, 1))
    x = rng.normal(mu, np.exp(rng.uniform(-4, 0.5, (1024, 1))), (1024, 8)).astype(dtype)
    mask = rng.random((1024, 8)) < 0.9
    prior = (np.full(1024, 0.6, dtype), np.full(1024, 0.2, dtype))
    with jax.enable_x64(x64):
        whole = optscale.fit_truncnorm(x, mask, out_of_range="clip", prior=prior)
        few = optscale.fit_truncnorm(x[:60], mask[:60], out_of_range="clip",
                                     prior=(prior[0][:60], prior[1][:60]))
    for a, b in zip(whole, few, strict=True):
        np.testing.assert_array_equal(np.asarray(a)[:60], np.asarray(b))
