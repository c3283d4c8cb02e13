"""The Cython backend's own fast-path functions (optscale/_fast_kernel.h): accuracy against
mpmath, the generated tables, the error bound against the careful path, and the two-lane
kernel against the one-lane path."""

from __future__ import annotations

import mpmath as mp
import numpy as np
import pytest

import optscale
from optscale import _fast_tables, _reference
from tests._suite import tn
from tests.test_fastpath import central_queries

_fast = pytest.importorskip("optscale._fast")
pytestmark = pytest.mark.extension
EPS = float(np.finfo(np.float64).eps)


def test_the_tables_are_what_the_generator_writes():
    with open(_fast_tables.PATH) as fh:
        assert fh.read() == _fast_tables.header()


def test_tail_is_accurate_and_inside_its_bound():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(0, 37.6, 4000), rng.uniform(0, 2, 1000),
                        10 ** rng.uniform(-20, 0, 300),
                        [0.0, 0.125, 1.0, 2.0, 8.0, 32.0, 37.59, 37.6, 40.0, 1e5]])
    got, err = np.empty_like(x), np.empty_like(x)
    _fast.normal_tail(x, 3.0, got, err)
    with mp.workdps(30):
        want = np.array([float(mp.ncdf(-mp.mpf(v))) for v in x])
    rel = np.abs(got - want) / np.where(want > 0, want, 1.0)
    # the rounding of x^2 costs x^2/4 eps; the table and exp about 2 eps
    inside = x < _fast_tables.TAIL_X_MAX
    assert np.all(rel[inside] <= (2.0 + x[inside] ** 2 / 4) * EPS)
    assert np.all(got[~inside] == 0) and np.all(want[~inside] < 1.1e-309)
    # its bound (8 + 3 x^2) eps, which the careful path's error shares, holds with room
    assert np.all(np.abs(got - want) <= err / 4)


def test_exp_and_one_minus_exp_are_within_two_ulps():
    rng = np.random.default_rng(1)
    x = np.concatenate([-rng.uniform(0, 708, 4000), -rng.uniform(0, 1, 1000),
                        -(10 ** rng.uniform(-20, 0, 300)), [0.0, -0.6931471805599453, -708.0]])
    e, one_minus = np.empty_like(x), np.empty_like(x)
    _fast.inline_exp(x, e, one_minus)
    with mp.workdps(40):
        want = [mp.exp(mp.mpf(v)) for v in x]
        want_e = np.array([float(w) for w in want])
        want_1m = np.array([float(1 - w) for w in want])
    assert np.all(np.abs(e - want_e) <= 2 * np.spacing(want_e))
    assert np.all(np.abs(one_minus - want_1m) <= 2 * np.spacing(want_1m))


def test_fast_log_cdf_bound_holds_with_room():
    mu, sigma, target = central_queries(50_000, 0)
    alpha, beta, z = -mu / sigma, (1 - mu) / sigma, (target - mu) / sigma
    lf, d, size = (np.empty_like(mu) for _ in range(3))
    usable = np.empty(mu.shape, np.int8)
    _fast.fast_log_cdf(alpha, beta, z, lf, d, size, usable)
    careful = _reference.logcdf(tn(mu, sigma), target)
    sel = usable.astype(bool) & np.isfinite(careful) & (careful < 0)
    assert sel.mean() > 0.3
    assert np.max(np.abs(lf - careful)[sel] / d[sel]) <= 0.25


@pytest.mark.parametrize("lanes", [1, 2, 4])
def test_block_kernel_gives_the_one_query_answers(lanes):
    # a broadcast low and high take the block kernel (1, 2 or 4 queries at a time); the same
    # values as arrays take the one-query path of each element (and the careful path wherever
    # neither proves the answer): the same n, status and achieved bits
    from optscale import _cython_backend as cy

    if _fast.kernel_lanes(lanes) != lanes:
        _fast.kernel_lanes(0)
        pytest.skip(f"no {lanes}-lane kernel on this processor or build")
    try:
        rng = np.random.default_rng(2)
        for size in (5, 6, 7, 60_003):  # short last groups of every length
            rest = size - size // 2
            mu = np.concatenate([rng.uniform(0.3, 1.0, size // 2), rng.uniform(-0.5, 1.5, rest)])
            sigma = np.concatenate([rng.uniform(0.02, 0.3, size // 2),
                                    10 ** rng.uniform(-3, 0, rest)])
            target = np.where(rng.random(size) < 0.8, rng.uniform(0, 1, size), 0.95)
            conf = np.where(rng.random(size) < 0.5, 0.95, rng.uniform(0.01, 0.999, size))
            strided = np.repeat(sigma, 2)[::2]  # a view with stride 2
            for s in (sigma, strided):
                bulk = cy.min_samples(optscale.TruncatedNormal(mu, s), target, conf,
                                      n_max=10**6)
                one = cy.min_samples(optscale.TruncatedNormal(mu, s, np.zeros(size),
                                                              np.ones(size)),
                                     target, conf, n_max=10**6)
                for a, b in zip(bulk, one, strict=True):
                    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    finally:
        _fast.kernel_lanes(0)


def test_log1m_is_within_two_eps():
    rng = np.random.default_rng(3)
    s = np.concatenate([rng.uniform(0, 1, 5000), 10 ** rng.uniform(-20, 0, 2000),
                        1 - 10 ** rng.uniform(-16, -0.1, 1000),
                        [0.0, 2**-9, 2**-5, np.nextafter(2**-5, 0), 0.25, 0.5, 0.75, 1 - 2**-53]])
    got = np.empty_like(s)
    _fast.inline_log1m(s, got)
    with mp.workdps(40):
        want = np.array([float(mp.log1p(-mp.mpf(v))) for v in s])
    assert np.all(np.abs(got - want) <= 2 * EPS * np.abs(want))
