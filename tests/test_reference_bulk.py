"""The NumPy reference's k = 1 bulk path gives the general path's answers, whatever the shapes."""

from __future__ import annotations

import numpy as np
import pytest

import optscale
from optscale import _reference
from tests.test_solve import random_queries


def _both(dist, target, conf, **kw):
    bulk = _reference.min_samples(dist, target, conf, **kw)
    general = _reference._min_samples(dist, target, conf, **kw)
    return bulk, general


def _assert_same(bulk, general):
    np.testing.assert_array_equal(np.asarray(bulk.n), np.asarray(general.n))
    np.testing.assert_array_equal(np.asarray(bulk.status), np.asarray(general.status))
    # the achieved values agree to the fast path's closeness (both are exact in n)
    np.testing.assert_allclose(np.asarray(bulk.achieved), np.asarray(general.achieved),
                               rtol=1e-12, atol=0)


def test_bulk_matches_the_general_path_on_random_queries():
    dist, target, conf = random_queries(100_000, 21)
    _assert_same(*_both(dist, target, conf, n_max=10**6))


def test_bulk_matches_on_everyday_queries_with_repeated_values():
    rng = np.random.default_rng(22)
    mu, sigma = rng.uniform(0.3, 1.0, 70_001), rng.uniform(0.02, 0.3, 70_001)
    d = optscale.TruncatedNormal(mu, sigma)
    for target, conf in ((0.95, 0.95), (np.full(70_001, 0.95), np.full(70_001, 0.9)),
                         (rng.uniform(0, 1, 70_001), 0.5)):
        _assert_same(*_both(d, target, conf))


@pytest.mark.parametrize("shapes", [((), (), ()), ((5, 1), (1, 4), ()), ((3,), (), (2, 3))])
def test_bulk_broadcasts_like_the_general_path(shapes):
    rng = np.random.default_rng(23)
    mu = rng.uniform(-0.2, 1.2, shapes[0])
    target = rng.uniform(0, 1, shapes[1])
    conf = rng.uniform(0.05, 0.99, shapes[2])
    bulk, general = _both(optscale.TruncatedNormal(mu, 0.1), target, conf, n_min=2, n_max=500)
    assert bulk.n.shape == np.broadcast_shapes(*shapes)
    _assert_same(bulk, general)


def test_bulk_leaves_bad_queries_to_the_general_path():
    d = optscale.TruncatedNormal(np.array([0.5, np.nan, 0.5, 0.5, 0.5, 0.5]),
                                 np.array([0.1, 0.1, 0.0, np.inf, 0.1, 0.1]))
    target = np.array([0.7, 0.7, 0.7, 0.7, 0.0, 1.0])
    bulk, general = _both(d, target, np.full(6, 0.9))
    _assert_same(bulk, general)
    assert list(bulk.status) == [0, 3, 3, 3, 1, 2]
