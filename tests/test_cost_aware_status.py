"""cost_aware_samples' INFEASIBLE: the n it returns is the one the README and Status document."""

import numpy as np
import pytest

import optscale
from optscale import Status


@pytest.mark.parametrize("backend", optscale.available_backends())
def test_an_unreachable_target_is_infeasible_at_n_min(backend):
    # P(best of n >= target) = 0 for every n: sampling more cannot help, so the gain
    # P - cost * n is largest at n_min (min_samples' INFEASIBLE is n_max: it needs more)
    previous = optscale.backend()
    optscale.set_backend(backend)
    try:
        d = optscale.TruncatedNormal(np.full(3, 0.9, np.float32), np.full(3, 0.1, np.float32))
        sol = optscale.cost_aware_samples(d, np.float32([1.0, 1.5, 0.95]), 0.01, n_min=3,
                                          n_max=50)
        np.testing.assert_array_equal(np.asarray(sol.status),
                                      [Status.INFEASIBLE, Status.INFEASIBLE, Status.OK])
        np.testing.assert_array_equal(np.asarray(sol.n)[:2], [3, 3])
        np.testing.assert_array_equal(np.asarray(sol.achieved)[:2], [0.0, 0.0])
        # an optimum beyond the budget: INFEASIBLE at n_max
        far = optscale.cost_aware_samples(d, np.float32(0.9999), np.float32(1e-9), n_max=50)
        assert np.all(np.asarray(far.status) == Status.INFEASIBLE)
        assert np.all(np.asarray(far.n) == 50)
    finally:
        optscale.set_backend(previous)
