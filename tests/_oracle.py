"""mpmath oracles: exact (to ~40 digits) values for the float inputs they are given."""

from __future__ import annotations

import functools

import mpmath as mp
import numpy as np

DPS = 60


def _mass(a, b):
    """Phi(b) - Phi(a) without cancellation (mirror to the left tail, complement in the middle)."""
    if b <= 0:
        return mp.ncdf(b) - mp.ncdf(a)
    if a >= 0:
        return mp.ncdf(-a) - mp.ncdf(-b)
    return 1 - mp.ncdf(a) - mp.ncdf(-b)


@functools.cache
def log_cdf_sf(mu: float, sigma: float, low: float, high: float, x: float) -> tuple[float, float]:
    with mp.workdps(DPS):
        mu, sigma, low, high, x = (mp.mpf(float(v)) for v in (mu, sigma, low, high, x))
        a, b, z = (low - mu) / sigma, (high - mu) / sigma, (x - mu) / sigma
        total = _mass(a, b)
        c, s = _mass(a, z) / total, _mass(z, b) / total
        lc = mp.log(c) if c < 0.5 else mp.log1p(-s)
        ls = mp.log(s) if s < 0.5 else mp.log1p(-c)
        return float(lc), float(ls)


def moments(mu: float, sigma: float, low: float, high: float) -> tuple[float, float]:
    with mp.workdps(DPS):
        mu, sigma, low, high = (mp.mpf(float(v)) for v in (mu, sigma, low, high))
        a, b = (low - mu) / sigma, (high - mu) / sigma
        total = _mass(a, b)
        pa, pb = mp.npdf(a) / total, mp.npdf(b) / total
        m = pa - pb
        v = 1 + (a * pa - b * pb) - m * m
        return float(mu + sigma * m), float(v * sigma * sigma)


def table(dtype=np.float64) -> np.ndarray:
    """(mu, sigma, low, high) rows spanning deep tails: |alpha|, |beta| <= 40, mu outside the
    range, sigma from 1e-4 to 1e2; rows whose range collapses in `dtype` are left out."""
    rows = []
    for alpha in (-40.0, -38.5, -20.0, -8.0, -1.5, -0.3, 0.0, 0.7, 5.0, 20.0, 38.0):
        for width in (1e-6, 1e-2, 0.5, 3.0, 20.0, 78.0):
            beta = alpha + width
            if abs(beta) > 40:
                continue
            for sigma in (1e-4, 1e-2, 1.0, 1e2):
                low = 0.25
                mu = low - alpha * sigma
                rows.append((mu, sigma, low, mu + beta * sigma))
    rows = np.array(rows).astype(dtype)
    return rows[rows[:, 2] < rows[:, 3]]


FRACTIONS = (1e-12, 1e-7, 0.01, 0.3, 0.5, 0.9, 1 - 1e-7, 1 - 1e-12)
