# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Cython kernels of the optscale CPU backend (see optscale/_cython_backend.py).

The same log-space algorithm as the JAX core (optscale/_special.py, _truncnorm.py): special
functions at three points per query (alpha, z, beta), the tail anchor cancelled exactly, short
tail intervals by a Taylor series of the hazard and far tails by the Mills-ratio continued
fraction. Kernels loop over a flat batch with prange (OpenMP when the compiler has it, serial
otherwise), write into arrays the Python wrapper allocated, and take float or double memoryviews
of any stride (0 for a broadcast value). Special functions are evaluated in double; the solvers'
exactness fix-ups run in the input's precision, so that their answers satisfy the definitions in
that precision.

The solvers try the fast path first (the plain formula with its error bound, in C:
optscale/_fast_kernel.h, with its own normal tail, exp and log(1 - s)); with one low, high, k and
n range for the batch (the usual case) it runs several queries at a time, in stages. k of N
searches n by Newton on the lower binomial tail; the expected best guesses n with a coarse
quadrature rule and lets the full rule decide.
"""

from cython.parallel import prange
from libc.float cimport DBL_EPSILON, DBL_MIN, FLT_EPSILON, FLT_MIN
from libc.stdint cimport int64_t
from libc.math cimport (INFINITY, NAN, ceil, erf, exp, expm1, fabs, floor, frexp, hypot,
                        isfinite, isnan, log, log1p, sqrt)
from scipy.special.cython_special cimport betainc, log_ndtr, ndtri_exp

ctypedef fused floating:
    float
    double

cdef double LN2 = 0.6931471805599453
cdef double HALF_LOG_2PI = 0.9189385332046727
cdef double SQRT_HALF = 0.7071067811865476

# status codes, as optscale.Status
cdef int OK = 0
cdef int TRIVIAL = 1
cdef int INFEASIBLE = 2
cdef int INVALID = 3


cdef inline double _log1mexp(double x) noexcept nogil:
    if x > -LN2:
        return log(-expm1(x))
    return log1p(-exp(x))


cdef inline double _logaddexp(double a, double b) noexcept nogil:
    if a == -INFINITY:
        return b
    if b == -INFINITY:
        return a
    if a > b:
        return a + log1p(exp(b - a))
    return b + log1p(exp(a - b))


cdef inline void _tail_point(double x, double* t, double* g) noexcept nogil:
    """t = log Phi(-x), g = hazard(x) - x for x >= 0 (continued fraction from x = 8)."""
    cdef double u
    cdef int k
    t[0] = log_ndtr(-x)
    if x < 8.0:
        g[0] = exp(-0.5 * x * x - HALF_LOG_2PI - t[0]) - x
    else:
        u = x
        for k in range(14, 1, -1):
            u = x + k / u
        g[0] = 1.0 / u


cdef inline double _tail_ratio(double a, double ta, double ga, double b, double tb, double gb,
                               double w) noexcept nogil:
    """log Phi(-b) - log Phi(-a), 0 <= a <= b, w = b - a exact."""
    cdef double h, h1, h2, h3, h4
    cdef bint short
    if a < 8.0:
        short = w <= 0.005 * (1.0 + a)
    else:
        short = w * a <= 0.01
    if short:
        h = a + ga
        h1 = h * ga
        h2 = 2.0 * h * h1 - h - a * h1
        h3 = 2.0 * h1 * h1 + 2.0 * h * h2 - 2.0 * h1 - a * h2
        h4 = 6.0 * h1 * h2 + 2.0 * h * h3 - 3.0 * h2 - a * h3
        return -w * (h + w * (0.5 * h1 + w * (h2 / 6.0 + w * (h3 / 24.0 + w * h4 / 120.0))))
    if a < 8.0:
        return tb - ta
    return -w * (a + 0.5 * w) - log1p((w + gb - ga) / (a + ga))


cdef inline void _log_mass(double a, double ta, double ga, double b, double tb, double gb,
                           double w, double* anchor, double* rel, double* ratio) noexcept nogil:
    """log(Phi(b) - Phi(a)) = anchor + rel; (ta, ga) = tail point of |a|, (tb, gb) of |b|."""
    cdef double d, tails
    if a >= 0.0:
        d = _tail_ratio(a, ta, ga, b, tb, gb, w)
        anchor[0], rel[0], ratio[0] = ta, _log1mexp(d), d
    elif b <= 0.0:
        d = _tail_ratio(-b, tb, gb, -a, ta, ga, w)
        anchor[0], rel[0], ratio[0] = tb, _log1mexp(d), d
    else:
        tails = exp(ta) + exp(tb)
        anchor[0], ratio[0] = 0.0, NAN
        if tails < 0.5:
            rel[0] = log1p(-tails)
        else:
            rel[0] = log(0.5 * (erf(b * SQRT_HALF) - erf(a * SQRT_HALF)))


cdef inline bint _valid(floating mu, floating sigma, floating low, floating high) noexcept nogil:
    """The parameter rules of optscale._checks, in the input's precision (float32 overflows
    sooner): finite, low < high, sigma a normal float with the range representable in
    standard units."""
    cdef floating tiny
    if floating is float:
        tiny = FLT_MIN
    else:
        tiny = DBL_MIN
    return (isfinite(mu) and isfinite(sigma) and sigma >= tiny and isfinite(low)
            and isfinite(high) and high > low and isfinite(<floating>((low - mu) / sigma))
            and isfinite(<floating>((high - mu) / sigma))
            and <floating>((high - low) / sigma) >= tiny)


cdef inline void _logs(double mu, double sigma, double low, double high, double x,
                       double* lc_out, double* ls_out) noexcept nogil:
    """log P(X <= x), log P(X > x)."""
    cdef double alpha, beta, d_lo, d_hi, a, b, z, dl, dh, lc, ls
    cdef double ta, ga, tz, gz, tb, gb, an_lo, r_lo, q_lo, an_hi, r_hi, q_hi, rel_z
    cdef bint flip
    if not _valid(mu, sigma, low, high) or isnan(x):
        lc_out[0], ls_out[0] = NAN, NAN
        return
    if x <= low:
        lc_out[0], ls_out[0] = -INFINITY, 0.0
        return
    if x >= high:
        lc_out[0], ls_out[0] = 0.0, -INFINITY
        return
    alpha, beta = (low - mu) / sigma, (high - mu) / sigma
    d_lo, d_hi = (x - low) / sigma, (high - x) / sigma
    flip = beta <= 0.0 and alpha < 0.0
    if flip:
        a, b, z, dl, dh = -beta, -alpha, -(x - mu) / sigma, d_hi, d_lo
    else:
        a, b, z, dl, dh = alpha, beta, (x - mu) / sigma, d_lo, d_hi
    _tail_point(fabs(a), &ta, &ga)
    _tail_point(fabs(z), &tz, &gz)
    _tail_point(fabs(b), &tb, &gb)
    _log_mass(a, ta, ga, z, tz, gz, dl, &an_lo, &r_lo, &q_lo)
    _log_mass(z, tz, gz, b, tb, gb, dh, &an_hi, &r_hi, &q_hi)
    if a >= 0.0:
        rel_z = _log1mexp(q_lo + q_hi)
        lc = r_lo - rel_z
        ls = q_lo + r_hi - rel_z
    else:
        rel_z = _logaddexp(an_lo + r_lo, an_hi + r_hi)
        lc = an_lo + r_lo - rel_z
        ls = an_hi + r_hi - rel_z
    lc, ls = min(lc, 0.0), min(ls, 0.0)
    if flip:
        lc, ls = ls, lc
    lc_out[0] = lc if lc < -LN2 else _log1mexp(ls)
    ls_out[0] = ls if ls < -LN2 else _log1mexp(lc)


def log_cdf_sf(const floating[:] mu, const floating[:] sigma, const floating[:] low,
               const floating[:] high, const floating[:] x, floating[::1] out_lc,
               floating[::1] out_ls, int threads):
    cdef Py_ssize_t i, n = x.shape[0]
    cdef double lc, ls
    for i in prange(n, nogil=True, num_threads=threads, schedule="static"):
        lc = NAN  # assigned in the loop, so private to each thread (they are passed by pointer)
        ls = NAN
        if _valid(mu[i], sigma[i], low[i], high[i]):
            _logs(mu[i], sigma[i], low[i], high[i], x[i], &lc, &ls)
        out_lc[i] = <floating>lc
        out_ls[i] = <floating>ls


def best_of_n_prob(const floating[:] mu, const floating[:] sigma, const floating[:] low,
                   const floating[:] high, const floating[:] x, const floating[:] n,
                   floating[::1] out,
                   int threads):
    cdef Py_ssize_t i, size = x.shape[0]
    cdef double lc, ls
    for i in prange(size, nogil=True, num_threads=threads, schedule="static"):
        lc = NAN  # private (see log_cdf_sf)
        ls = NAN
        if _valid(mu[i], sigma[i], low[i], high[i]):
            _logs(mu[i], sigma[i], low[i], high[i], x[i], &lc, &ls)
        out[i] = <floating>(-expm1(n[i] * <double><floating>lc))


cdef inline double _log_binom_lower(double log_s, double log_f, double n, double k) noexcept nogil:
    """log P(Bin(n, s) <= k - 1) by the ratio recurrence (k terms, no lgamma of large n)."""
    cdef double term, acc, step
    cdef long j
    if n < k:
        return 0.0
    if log_f == -INFINITY:
        return -INFINITY
    if log_s == -INFINITY:
        return 0.0
    step = log_s - log_f
    term = n * log_f
    acc = term
    j = 1
    while j < k:
        term = term + log((n - j + 1.0) / j) + step
        acc = _logaddexp(acc, term)
        j += 1
    return min(acc, 0.0)


def log_binom_lower(const floating[:] log_s, const floating[:] log_f, const floating[:] n,
                    const floating[:] k, floating[::1] out, int threads):
    cdef Py_ssize_t i, size = n.shape[0]
    for i in prange(size, nogil=True, num_threads=threads, schedule="guided"):
        out[i] = <floating>_log_binom_lower(log_s[i], log_f[i], n[i], k[i])


def k_of_n_prob(const floating[:] mu, const floating[:] sigma, const floating[:] low,
                const floating[:] high, const floating[:] x, const floating[:] n,
                const floating[:] k, floating[::1] out,
                int threads):
    cdef Py_ssize_t i, size = x.shape[0]
    cdef double lc, ls, lower
    for i in prange(size, nogil=True, num_threads=threads, schedule="guided"):
        lc = NAN  # private (see log_cdf_sf)
        ls = NAN
        if _valid(mu[i], sigma[i], low[i], high[i]):
            _logs(mu[i], sigma[i], low[i], high[i], x[i], &lc, &ls)
        lc, ls = <double><floating>lc, <double><floating>ls
        if n[i] < k[i]:
            out[i] = 0
        else:
            lower = _log_binom_lower(ls, lc, n[i], k[i])
            if lower < -LN2:
                out[i] = <floating>(-expm1(lower))
            else:
                out[i] = <floating>betainc(<double>k[i], n[i] - k[i] + 1.0, exp(ls))


# ----------------------------------------------------------------------------- fast path
# The plain formula with an error bound, as optscale/_fastpath.py (whose docstring has the
# argument), in C (optscale/_fast_kernel.h): its own normal tail, exp and log(1 - s), within the
# bound's allowances (its constants, E0 = 8, E2 = 3 and 6, U_CAP = 1e4, are _fastpath's of
# now), on one query (ov1_*) or two or four at a time (the bulk of a batch with one low, high,
# k and n range). Elements whose answer the bound cannot prove take the careful _logs above.

cdef extern from "_fast_kernel.h":
    int optscale_set_lanes(int lanes) noexcept nogil
    int64_t ov1_fast_logs(double alpha, double beta, double z, int with_sf, double* lf,
                          double* dlf, double* ls, double* dls, double* log_size) noexcept nogil
    int64_t ov1_best(int64_t want, double alpha, double beta, double z, double l1mc,
                     double n_lo, double n_hi, double* n_out, int64_t* infeasible,
                     double* achieved) noexcept nogil
    double ov1_tail(double x, double e2, double* err) noexcept nogil
    double ov1_log1m(double s) noexcept nogil
    double ov1_exp(double x) noexcept nogil
    double ov1_one_minus_exp(double x) noexcept nogil
    void optscale_logs_block(
        Py_ssize_t start, Py_ssize_t end, const double* mu, Py_ssize_t s_mu,
        const double* sigma, Py_ssize_t s_sigma, const double* target, Py_ssize_t s_t,
        const double* conf, Py_ssize_t s_c, double low, double high, char* ok, double* lf,
        double* dlf, double* ls, double* dls, double* size, double* l1mc) noexcept nogil
    Py_ssize_t optscale_best_block(
        Py_ssize_t start, Py_ssize_t end, const double* mu, Py_ssize_t s_mu,
        const double* sigma, Py_ssize_t s_sigma, const double* target, Py_ssize_t s_t,
        const double* conf, Py_ssize_t s_c, double low, double high, double n_lo, double n_hi,
        int* out_n, int* out_status, double* out_achieved, Py_ssize_t* pending,
        double* pending_l1mc) noexcept nogil


_lanes = optscale_set_lanes(0)


def kernel_lanes(int lanes=0):
    """Queries the block kernels take at a time: the widest the processor runs (0), or fewer
    (1, 2), for the tests; returns the width in use."""
    global _lanes
    _lanes = optscale_set_lanes(lanes)
    return _lanes


def normal_tail(const double[:] x, double e2, double[::1] out, double[::1] err):
    """Phi(-x) (x >= 0) and its error bound by the kernels' tail, for the tests."""
    cdef Py_ssize_t i
    for i in range(out.shape[0]):
        out[i] = ov1_tail(x[i], e2, &err[i])


def inline_exp(const double[:] x, double[::1] out, double[::1] one_minus):
    """e^x and 1 - e^x (x <= 0) by the kernels' exp, for the tests."""
    cdef Py_ssize_t i
    for i in range(out.shape[0]):
        out[i] = ov1_exp(x[i])
        one_minus[i] = ov1_one_minus_exp(x[i])


def inline_log1m(const double[:] s, double[::1] out):
    """log(1 - s) (0 <= s < 1) by the kernels' log1m, for the tests."""
    cdef Py_ssize_t i
    for i in range(out.shape[0]):
        out[i] = ov1_log1m(s[i])


def fast_log_cdf(const double[:] alpha, const double[:] beta, const double[:] z,
                 double[::1] lf, double[::1] d_lf, double[::1] log_size, char[::1] usable):
    """log F, its margin against the careful path (_margin, double) and where the bound
    applies, from the standardized points, for the tests."""
    cdef Py_ssize_t i
    cdef double dlf, ls, dls
    for i in range(lf.shape[0]):
        usable[i] = ov1_fast_logs(alpha[i], beta[i], z[i], 0, &lf[i], &dlf, &ls, &dls,
                                  &log_size[i]) != 0
        d_lf[i] = _margin(lf[i], dlf, log_size[i], DBL_EPSILON)


# the cheap parameter test (no division, see _plain): magnitudes within 2^100, sigma and the
# range within 2^60 of each other
cdef double BIG = 1.2676506002282294e30  # 2^100
cdef double WIDE = 1.152921504606847e18  # 2^60
cdef double NARROW = 8.673617379884035e-19  # 2^-60


cdef inline bint _plain(floating mu, floating sigma, floating low, floating high, double alpha,
                        double beta) noexcept nogil:
    """A sufficient condition for _valid without its divisions (alpha and beta are formed
    anyway): every magnitude within 2^100, sigma at least 2^-60, the range at least 2^-60 sigma
    and its ends within 2^60 sigma of mu. NaN fails every comparison. Elements that fail it take
    _valid itself."""
    return (fabs(mu) <= BIG and fabs(low) <= BIG and fabs(high) <= BIG and sigma >= NARROW
            and sigma <= BIG and high > low and high - low >= <floating>NARROW * sigma
            and fabs(alpha) <= WIDE and fabs(beta) <= WIDE)


cdef inline bint _fast_logs(double alpha, double beta, double z, double* lf, double* dlf,
                            double* ls, double* dls, double* log_size,
                            bint with_sf) noexcept nogil:
    """log F (and log S) of a central range at the standardized target z, with absolute error
    bounds; False where the bound does not apply (the caller then takes the careful path).
    Only for low < x < high."""
    return ov1_fast_logs(alpha, beta, z, with_sf, lf, dlf, ls, dls, log_size) != 0


cdef inline double _margin(double lf, double dlf, double log_size, double eps) noexcept nogil:
    """How far the careful log F may lie from the fast one (libm's log1p: L = 2)."""
    return 2.0 * dlf + eps * fabs(lf) * (16.0 + 16.0 * log_size + 8.0)


cdef inline bint _best_exact(double n, double lf, double d, double l1mc, double n_lo,
                             double n_hi, double n_exact, double close) noexcept nogil:
    """The careful k = 1 answer is n (inf where log F == 0); see _fastpath.best_exact.
    close = 2^-(bits - 12), so that d <= close |log F| keeps the achieved value close."""
    cdef double a = -lf, big_b = -l1mc, m
    if d > a * close:
        return False
    if n > n_hi:
        return n_hi * (a + d) < big_b
    m = max(n, n_lo)
    if m * (a - d) < big_b:
        return False
    return (m <= n_lo or (m - 1.0) * (a + d) < big_b) and n <= n_exact


cdef inline double _log_bound(double x) noexcept nogil:
    """An upper bound on log x for x >= 1 (e ln 2 for x < 2^e)."""
    cdef int e
    frexp(x, &e)
    return e * LN2


cdef inline double _k_slack(double m, double kf, double lf, double ls, double d_lf,
                            double d_ls, double eps) noexcept nogil:
    """How far the careful lower binomial tail at m may lie from the fast one (see
    _k_verified); log1p(m) of the terms' size is bounded by the exponent of m + 1."""
    cdef double als = fabs(ls) if isfinite(ls) else 0.0
    cdef double size = m * fabs(lf) + (kf - 1.0) * (als + fabs(lf) + _log_bound(m + 1.0)) + 1.0
    return m * d_lf + (kf - 1.0) * d_ls + 8.0 * (kf + 2.0) * eps * size


# ----------------------------------------------------------------------------- solvers

cdef inline double _ceil_exact(floating log_f, floating bound) noexcept nogil:
    """Smallest n >= 0 with n * log_f <= bound, exact in the precision of `floating`."""
    cdef floating n = <floating>ceil(bound / log_f)
    if n < 0:
        n = 0
    if n * log_f > bound:
        n = n + 1
    if n >= 1 and (n - 1) * log_f <= bound:
        n = n - 1
    return n


cdef inline floating _log1m(floating c) noexcept nogil:
    return <floating>log1p(-<double>c)


cdef inline double _one_minus_exp(double x) noexcept nogil:
    """1 - e^x for x <= 0, within an ulp or two (the kernels' exp: a fraction of libm's
    expm1)."""
    return ov1_one_minus_exp(x)


cdef inline void _solve_probability(floating lf, floating ls, floating l1mc, double kf,
                                    double n_lo, double n_hi, int* n_out, int* status_out,
                                    floating* achieved_out) noexcept nogil:
    """The careful solver, given log F and log S: closed form for k = 1, otherwise bisection
    on [max(closed form, k, n_min), Chernoff bound] as in the JAX core."""
    cdef double lo, hi, mid, ell, need, n1
    cdef floating n_f
    cdef bint ok_hi
    if not (lf < 0):  # F(target) == 1: nobody reaches the target
        n_out[0], status_out[0], achieved_out[0] = <int>n_hi, INFEASIBLE, 0
        return
    n1 = min(_ceil_exact(lf, l1mc), n_hi + 1.0)
    if kf <= 1:
        if n1 > n_hi:
            n_out[0], status_out[0] = <int>n_hi, INFEASIBLE
        else:
            n_out[0], status_out[0] = <int>max(n1, n_lo), OK
        n_f = <floating>n_out[0]
        achieved_out[0] = <floating>_one_minus_exp(<double>(n_f * lf))
        return
    lo = max(max(n1, kf), n_lo)
    ell = -l1mc
    need = (kf - 1.0) + ell + sqrt(ell * ell + 2.0 * ell * (kf - 1.0))
    hi = min(max(ceil(need * exp(-ls)) + 1.0, lo), n_hi)
    ok_hi = <floating>_log_binom_lower(ls, lf, hi, kf) <= l1mc
    if not ok_hi and hi < n_hi:
        hi = n_hi
        ok_hi = <floating>_log_binom_lower(ls, lf, hi, kf) <= l1mc
    if not ok_hi or lo > n_hi:
        n_out[0], status_out[0] = <int>n_hi, INFEASIBLE
        # (0 - expm1: +0, not -0, where the tail is 0 (k > n, or S = 0))
        achieved_out[0] = <floating>(0.0 - expm1(
            <double><floating>_log_binom_lower(ls, lf, n_hi, kf)))
        return
    while lo < hi:
        mid = floor(0.5 * (lo + hi))
        if <floating>_log_binom_lower(ls, lf, mid, kf) <= l1mc:
            hi = mid
        else:
            lo = mid + 1.0
    n_out[0], status_out[0] = <int>hi, OK
    achieved_out[0] = <floating>(0.0 - expm1(<double><floating>_log_binom_lower(ls, lf, hi, kf)))


cdef inline double _lower_sum(double n, double lf, double r, double kf,
                             double* slope) noexcept nogil:
    """log P(Bin(n, S) <= k - 1) = n log F + log sum_{j<k} C(n, j) r^j with r = S / F (n >= k),
    and into slope its derivative in n; inf where the sum overflows. One log, against the k
    logs, exps and log1ps of _log_binom_lower's recurrence."""
    cdef double term = 1.0, acc = 1.0, d_acc = 0.0, harmonic = 0.0, j = 1.0
    while j < kf:
        harmonic = harmonic + 1.0 / (n - j + 1.0)  # d log C(n, j) / dn
        term = term * ((n - j + 1.0) / j) * r
        acc = acc + term
        d_acc = d_acc + term * harmonic
        j = j + 1.0
    slope[0] = lf + d_acc / acc
    return n * lf + log(acc)


cdef inline double _k_search(double lf, double ls, double l1mc, double kf, double lo,
                             double n_hi, double* at_n, double* at_prev) noexcept nogil:
    """The smallest n in [lo, n_hi] (lo = max(k, n_min)) whose lower tail (_lower_sum) is at
    most log(1 - c), or -1 (beyond n_hi, an overflow, no convergence); into at_n and at_prev
    the tail at n and n - 1 (n > lo). Only a search: the caller verifies the answer.

    The tail is at least n log F, so the answer is at least the k = 1 one, x. Past it, Newton
    on the tail (decreasing in n, concave for large n, so its steps land at or beyond the
    crossing) in a few steps, then unit steps to the smallest integer that meets it."""
    cdef double r = exp(ls - lf), x, v, slope, dx, n, v_prev = NAN
    cdef int it
    x = max(ceil(l1mc / lf), lo)
    for it in range(12):
        v = _lower_sum(min(x, n_hi), lf, r, kf, &slope)
        if not (isfinite(v) and slope < 0) or (x >= n_hi and v > l1mc):
            return -1.0  # (the second: not met within the budget, infeasible)
        dx = (v - l1mc) / -slope
        x = x + dx
        if fabs(dx) < 0.25:
            break
    n = min(max(ceil(x), lo), n_hi)
    v = _lower_sum(n, lf, r, kf, &slope)
    for it in range(16):
        if v <= l1mc:
            if n <= lo:
                at_n[0], at_prev[0] = v, NAN
                return n
            v_prev = _lower_sum(n - 1.0, lf, r, kf, &slope)
            if not (v_prev <= l1mc):
                at_n[0], at_prev[0] = v, v_prev
                return n
            n, v = n - 1.0, v_prev
        elif n < n_hi:
            n = n + 1.0
            v = _lower_sum(n, lf, r, kf, &slope)
        else:
            return -1.0
    return -1.0


cdef inline bint _k_verified(floating lf, floating ls, floating l1mc, double kf, double lo,
                             double n, double at_n, double at_prev, double d_lf, double d_ls,
                             double eps, double n_exact) noexcept nogil:
    """The careful k-of-N bisection ends on this OK answer n, given the fast lower tails at n
    and n - 1 (at_n, at_prev; _lower_sum).

    log P(Bin(n, S) <= k - 1) moves by at most n |d log F| + (k - 1) |d log S| when the logs
    do (its partial derivatives are E[n - j] <= n and E[j] <= k - 1), plus the rounding of the
    careful path's k-term recurrence and of _lower_sum (each under 4 (k + 2) eps times the size
    of the terms): with that margin at n and n - 1 the careful bisection, which finds the
    smallest n meeting the criterion, ends on n. (Infeasible answers go to the careful path,
    whose achieved value near 0 is rounding (P(2 of N) of a target 15 sigma out): only it
    reproduces its own.)
    """
    cdef double b = <double>l1mc
    if n > n_exact:
        return False
    if <double><floating>at_n > b - _k_slack(n, kf, lf, ls, d_lf, d_ls, eps):
        return False
    if n <= lo:
        return True
    return <double><floating>at_prev > b + _k_slack(n - 1.0, kf, lf, ls, d_lf, d_ls, eps)


cdef inline bint _fast_best(double alpha, double beta, double z, floating l1mc, double n_lo,
                            double n_hi, double eps, double n_exact, double close, int* n_out,
                            int* status_out, floating* achieved_out) noexcept nogil:
    """The k = 1 fast path of one element (low < t < high): True when it has written the
    careful path's answer. In double the C kernel's (the same arithmetic as below)."""
    cdef double lfd, dlf, lsd, dls, log_size, n, ach
    cdef int64_t infeasible
    cdef floating lf, n_f
    if floating is double:
        if not ov1_best(-1, alpha, beta, z, l1mc, n_lo, n_hi, &n, &infeasible, &ach):
            return False
        n_out[0], status_out[0], achieved_out[0] = <int>n, INFEASIBLE if infeasible else OK, ach
        return True
    else:
        if not _fast_logs(alpha, beta, z, &lfd, &dlf, &lsd, &dls, &log_size, False):
            return False
        lf = <floating>lfd
        if not (lf < 0):
            return False  # F == 1 in this precision: the careful path decides
        n = _ceil_exact(lf, l1mc)
        if not _best_exact(n, <double>lf, _margin(<double>lf, dlf, log_size, eps),
                           <double>l1mc, n_lo, n_hi, n_exact, close):
            return False
        if n > n_hi:
            n_out[0], status_out[0] = <int>n_hi, INFEASIBLE
        else:
            n_out[0], status_out[0] = <int>max(n, n_lo), OK
        n_f = <floating>n_out[0]
        achieved_out[0] = <floating>_one_minus_exp(<double>(n_f * lf))
        return True


cdef inline bint _k_decide(double lfd, double dlf, double lsd, double dls, double log_size,
                           floating l1mc, double kf, double n_lo, double n_hi, double eps,
                           double n_exact, int* n_out, int* status_out,
                           floating* achieved_out) noexcept nogil:
    """The k > 1 fast path from the fast logs and their bounds: True when it has written the
    careful path's answer."""
    cdef double n, at_n, at_prev, lo = max(kf, n_lo)
    cdef floating lf = <floating>lfd, ls = <floating>lsd
    if not (lf < 0 and isfinite(ls)):
        return False
    n = _k_search(<double>lf, <double>ls, <double>l1mc, kf, lo, n_hi, &at_n, &at_prev)
    if n < 0 or not _k_verified(lf, ls, l1mc, kf, lo, n, at_n, at_prev,
                                _margin(<double>lf, dlf, log_size, eps),
                                _margin(<double>ls, dls, log_size, eps), eps, n_exact):
        return False
    n_out[0], status_out[0] = <int>n, OK
    achieved_out[0] = <floating>(0.0 - expm1(<double><floating>at_n))
    return True


cdef inline bint _fast_k(double alpha, double beta, double z, floating l1mc, double kf,
                         double n_lo, double n_hi, double eps, double n_exact, int* n_out,
                         int* status_out, floating* achieved_out) noexcept nogil:
    """The k > 1 fast path of one element (low < t < high): True when it has written the
    careful path's answer."""
    cdef double lfd, dlf, lsd, dls, log_size
    if not _fast_logs(alpha, beta, z, &lfd, &dlf, &lsd, &dls, &log_size, True):
        return False
    return _k_decide(lfd, dlf, lsd, dls, log_size, l1mc, kf, n_lo, n_hi, eps, n_exact, n_out,
                     status_out, achieved_out)


cdef inline void _probability(floating mu, floating sigma, floating low, floating high,
                              floating t, floating c, floating l1mc, long long k,
                              long long n_min, long long n_max, double eps, double n_exact,
                              double close, bint try_fast, int* n_out, int* status_out,
                              floating* achieved_out) noexcept nogil:
    """One element of min_samples_probability, l1mc = log(1 - c); try_fast: False where the
    fast path has already failed on it."""
    cdef double kf, n_lo, n_hi, alpha, beta, z, lcd, lsd
    if not (not isnan(t) and c > 0 and c < 1 and k >= 1 and n_min >= 1 and n_max >= n_min):
        n_out[0], status_out[0], achieved_out[0] = <int>n_max, INVALID, 0
        return
    alpha = (<double>low - mu) / sigma
    beta = (<double>high - mu) / sigma
    if not (_plain(mu, sigma, low, high, alpha, beta) or _valid(mu, sigma, low, high)):
        n_out[0], status_out[0], achieved_out[0] = <int>n_max, INVALID, 0
        return
    kf, n_lo, n_hi = <double>k, <double>n_min, <double>n_max
    if t <= low:
        n_out[0] = <int>max(kf, n_lo) if max(kf, n_lo) <= n_hi else <int>n_hi
        status_out[0] = TRIVIAL
        achieved_out[0] = 1 if n_out[0] >= kf else 0
        return
    if t >= high:
        lcd, lsd = 0.0, -INFINITY  # exactly the careful path's values
    elif try_fast:
        z = (<double>t - mu) / sigma
        if kf <= 1:
            if _fast_best(alpha, beta, z, l1mc, n_lo, n_hi, eps, n_exact, close, n_out,
                          status_out, achieved_out):
                return
        elif _fast_k(alpha, beta, z, l1mc, kf, n_lo, n_hi, eps, n_exact, n_out, status_out,
                     achieved_out):
            return
        _logs(mu, sigma, low, high, t, &lcd, &lsd)
    else:
        _logs(mu, sigma, low, high, t, &lcd, &lsd)
    _solve_probability(<floating>lcd, <floating>lsd, l1mc, kf, n_lo, n_hi, n_out, status_out,
                       achieved_out)


cdef enum:
    BLOCK = 512  # elements per scheduling unit: log(1 - c) is reused along a block


cdef void _probability_block(Py_ssize_t start, Py_ssize_t end, const floating* mu,
                             Py_ssize_t s_mu, const floating* sigma, Py_ssize_t s_sigma,
                             const floating* low, Py_ssize_t s_low, const floating* high,
                             Py_ssize_t s_high, const floating* target, Py_ssize_t s_t,
                             const floating* conf, Py_ssize_t s_c, const long long* k,
                             Py_ssize_t s_k, const long long* n_min, Py_ssize_t s_lo,
                             const long long* n_max, Py_ssize_t s_hi, bint uniform, double eps,
                             double n_exact, double close, int* out_n, int* out_status,
                             floating* out_achieved) noexcept nogil:
    """Elements [start, end) (strides in elements; 0 for a broadcast value). uniform: double,
    and one plainly valid low, high, k, n_min <= n_max for all; then the C kernels prove the
    bulk (k = 1 entirely, k > 1 its logs, several queries at a time), and only the rest goes
    to _probability, which takes every element otherwise."""
    cdef Py_ssize_t i, j, count
    # per element of the block: queries pending (k = 1), log(1 - c), the fast logs (k > 1)
    cdef Py_ssize_t pending[BLOCK]
    cdef double pending_l1mc[BLOCK]
    cdef double lf[BLOCK]
    cdef double dlf[BLOCK]
    cdef double ls[BLOCK]
    cdef double dls[BLOCK]
    cdef double size[BLOCK]
    cdef char ok[BLOCK]
    cdef floating c, c_last = NAN, l1mc = NAN
    if floating is double:
        if uniform and k[0] == 1:
            count = optscale_best_block(start, end, mu, s_mu, sigma, s_sigma, target, s_t, conf,
                                        s_c, low[0], high[0], <double>n_min[0],
                                        <double>n_max[0], out_n, out_status, out_achieved,
                                        pending, pending_l1mc)
            for j in range(count):
                i = pending[j]
                _probability(mu[i * s_mu], sigma[i * s_sigma], low[0], high[0],
                             target[i * s_t], conf[i * s_c], pending_l1mc[j], 1, n_min[0],
                             n_max[0], eps, n_exact, close, False, &out_n[i], &out_status[i],
                             &out_achieved[i])
            return
        if uniform:
            optscale_logs_block(start, end, mu, s_mu, sigma, s_sigma, target, s_t, conf, s_c,
                                low[0], high[0], ok, lf, dlf, ls, dls, size, pending_l1mc)
            for i in range(start, end):
                j = i - start
                if not (ok[j] and _k_decide(lf[j], dlf[j], ls[j], dls[j], size[j],
                                            pending_l1mc[j], <double>k[0], <double>n_min[0],
                                            <double>n_max[0], eps, n_exact, &out_n[i],
                                            &out_status[i], &out_achieved[i])):
                    _probability(mu[i * s_mu], sigma[i * s_sigma], low[0], high[0],
                                 target[i * s_t], conf[i * s_c], pending_l1mc[j], k[0],
                                 n_min[0], n_max[0], eps, n_exact, close, False, &out_n[i],
                                 &out_status[i], &out_achieved[i])
            return
    for i in range(start, end):
        c = conf[i * s_c]
        if not (c == c_last):
            c_last, l1mc = c, _log1m(c)
        _probability(mu[i * s_mu], sigma[i * s_sigma], low[i * s_low], high[i * s_high],
                     target[i * s_t], c, l1mc, k[i * s_k], n_min[i * s_lo], n_max[i * s_hi],
                     eps, n_exact, close, True, &out_n[i], &out_status[i], &out_achieved[i])


def min_samples_probability(const floating[:] mu, const floating[:] sigma,
                            const floating[:] low, const floating[:] high,
                            const floating[:] target, const floating[:] conf,
                            const long long[:] k, const long long[:] n_min,
                            const long long[:] n_max, int[::1] out_n, int[::1] out_status,
                            floating[::1] out_achieved, int threads):
    """At least k of n reach the target with the confidence. Each element first tries the
    plain formula (fast path); where its error bound cannot prove the answer exact, the
    careful log-space logs decide. Inputs may be broadcast (stride 0); log(1 - c) is taken
    once per run of equal confidences."""
    cdef Py_ssize_t b, size = out_n.shape[0], blocks = (size + BLOCK - 1) // BLOCK
    cdef Py_ssize_t f = sizeof(floating), q = sizeof(long long)
    cdef double eps, n_exact, close
    cdef bint uniform
    if size == 0:
        return
    if floating is float:
        eps, n_exact, close = FLT_EPSILON, 4194304.0, 2.0 ** -12
    else:
        eps, n_exact, close = DBL_EPSILON, 2251799813685248.0, 2.0 ** -41
    uniform = (floating is double and low.strides[0] == 0 and high.strides[0] == 0
               and k.strides[0] == 0 and n_min.strides[0] == 0 and n_max.strides[0] == 0
               and k[0] >= 1 and n_min[0] >= 1 and n_max[0] >= n_min[0]
               and fabs(low[0]) <= BIG and fabs(high[0]) <= BIG and low[0] < high[0])
    for b in prange(blocks, nogil=True, num_threads=threads, schedule="guided"):
        _probability_block(b * BLOCK, min(size, (b + 1) * BLOCK), &mu[0], mu.strides[0] // f,
                           &sigma[0], sigma.strides[0] // f, &low[0], low.strides[0] // f,
                           &high[0], high.strides[0] // f, &target[0], target.strides[0] // f,
                           &conf[0], conf.strides[0] // f, &k[0], k.strides[0] // q,
                           &n_min[0], n_min.strides[0] // q, &n_max[0], n_max.strides[0] // q,
                           uniform, eps, n_exact, close, &out_n[0], &out_status[0],
                           &out_achieved[0])


def cost_aware_samples(const floating[:] mu, const floating[:] sigma, const floating[:] low,
                       const floating[:] high, const floating[:] target,
                       const floating[:] cost, const long long[:] n_min,
                       const long long[:] n_max, int[::1] out_n, int[::1] out_status,
                       floating[::1] out_achieved, int threads):
    """The smallest n >= 0 with F^n (1 - F) <= cost, clipped to [n_min, n_max]."""
    cdef Py_ssize_t i, size = out_n.shape[0]
    cdef double lcd, lsd, n_lo, n_hi, n
    cdef floating lf, ls, bound, n_f
    for i in prange(size, nogil=True, num_threads=threads, schedule="static"):
        if not (_valid(mu[i], sigma[i], low[i], high[i]) and not isnan(target[i])
                and isfinite(cost[i]) and cost[i] > 0 and n_min[i] >= 1
                and n_max[i] >= n_min[i]):
            out_n[i], out_status[i], out_achieved[i] = n_max[i], INVALID, 0
            continue
        n_lo, n_hi = <double>n_min[i], <double>n_max[i]
        if target[i] <= low[i]:
            out_n[i], out_status[i], out_achieved[i] = n_min[i], TRIVIAL, 1
            continue
        lcd = 0.0  # private (see log_cdf_sf)
        lsd = 0.0
        _logs(mu[i], sigma[i], low[i], high[i], target[i], &lcd, &lsd)
        lf, ls = <floating>lcd, <floating>lsd
        if not (lf < 0):
            out_n[i], out_status[i], out_achieved[i] = n_min[i], INFEASIBLE, 0
            continue
        bound = <floating>log(<double>cost[i]) - ls
        n = _ceil_exact(lf, bound)
        if n > n_hi:
            out_n[i], out_status[i] = <int>n_hi, INFEASIBLE
        else:
            out_n[i], out_status[i] = <int>min(max(n, n_lo), n_hi), OK
        n_f = <floating>out_n[i]
        out_achieved[i] = <floating>(0.0 - expm1(<double>(n_f * lf)))


# ----------------------------------------------------------------------------- expected best

cdef struct _Quantiles:
    # what the first-guess quantile of one distribution needs besides log q (computed once per
    # distribution, not once per quadrature node)
    double mu, sigma, low, high, alpha, beta, width, log_z, r
    double log_edge_low   # log Phi(alpha) if alpha < 0 else log Phi(-alpha): edge = alpha
    double log_edge_high  # log Phi(-beta) if beta > 0 else log Phi(beta): edge = -beta
    bint deep_right, deep_left, lost


cdef inline void _quantiles(double mu, double sigma, double low, double high,
                            _Quantiles* p) noexcept nogil:
    cdef double ta, ga, tb, gb, an, rel, q
    p.mu, p.sigma, p.low, p.high = mu, sigma, low, high
    p.alpha, p.beta = (low - mu) / sigma, (high - mu) / sigma
    p.width = (high - low) / sigma
    _tail_point(fabs(p.alpha), &ta, &ga)
    _tail_point(fabs(p.beta), &tb, &gb)
    _log_mass(p.alpha, ta, ga, p.beta, tb, gb, p.width, &an, &rel, &q)
    p.log_z = an + rel
    p.deep_right, p.deep_left = p.alpha >= 8.0, p.beta <= -8.0
    p.r = p.alpha if p.deep_right else -p.beta
    # a guess from the far bound would be off by eps r^2 in log probability (or undefined once
    # log Z underflows): measure from the bound the mass piles against
    p.lost = (p.deep_right or p.deep_left) and not (isfinite(p.log_z) and 2.220446049250313e-16
                                                    * p.r * p.r <= 1e-3)
    p.log_edge_low = log_ndtr(p.alpha) if p.alpha < 0.0 else log_ndtr(-p.alpha)
    p.log_edge_high = log_ndtr(-p.beta) if -p.beta < 0.0 else log_ndtr(p.beta)


cdef inline double _quantile0(const _Quantiles* p, double log_q) noexcept nogil:
    """First-guess quantile from log q (the JAX core's, without Newton polish: its absolute
    error is far below the quadrature's)."""
    cdef double log_p, edge, le, z0, delta, linear, tiny, c, ell, bound
    cdef bint from_low, same_side
    if log_q == -INFINITY:
        return p.low
    if log_q >= 0.0:
        return p.high
    from_low = p.deep_right if p.lost else log_q <= -LN2
    if from_low:
        log_p, edge, le = log_q, p.alpha, p.log_edge_low
    else:
        log_p, edge, le = _log1mexp(log_q), -p.beta, p.log_edge_high
    if edge < 0.0:
        z0 = ndtri_exp(_logaddexp(le, log_p + p.log_z))
        bound = p.low if from_low else p.high
        if fabs(bound) + p.sigma * fabs(z0 - edge) > 1e3 * (fabs(p.mu) + p.sigma * fabs(z0)):
            # a bound far from the mass in absolute terms: x - bound would cancel
            if from_low:
                return min(max(p.mu + p.sigma * z0, p.low), p.high)
            return min(max(p.mu - p.sigma * z0, p.low), p.high)
    else:
        z0 = -ndtri_exp(le + _log1mexp(min(log_p + p.log_z - le, 0.0)))
    delta = min(max(z0 - edge, 0.0), p.width)
    tiny = 64.0 * 2.220446049250313e-16 * (1.0 + fabs(edge))
    if delta <= tiny:
        linear = exp(log_p + p.log_z + 0.5 * edge * edge + HALF_LOG_2PI)
        delta = min(linear, p.width)
    if p.deep_right or p.deep_left:
        # exponential tail against the bound the mass piles on (rate r; hypot: r may be 1e300)
        same_side = from_low if p.deep_right else not from_low
        if same_side:
            c = p.r * p.width + 0.5 * p.width * p.width
            ell = -_log1mexp(min(log_p + _log1mexp(-c), 0.0))
            delta = min(2.0 * ell / (p.r + hypot(p.r, sqrt(2.0 * ell))), p.width)
    if from_low:
        return min(max(p.low + p.sigma * delta, p.low), p.high)
    return min(max(p.high - p.sigma * delta, p.low), p.high)


cdef inline double _expected_best(const _Quantiles* p, double n, const double[::1] log_v,
                                  const double[::1] w_v) noexcept nogil:
    cdef double total = 0.0
    cdef Py_ssize_t j
    for j in range(log_v.shape[0]):
        total = total + w_v[j] * _quantile0(p, log_v[j] / n)
    return total


cdef inline double _expected_one(double mu, double sigma, double low, double high, double n,
                                 const double[::1] log_v, const double[::1] w_v) noexcept nogil:
    cdef _Quantiles p  # a local of its own per call: each thread has its own
    _quantiles(mu, sigma, low, high, &p)
    return _expected_best(&p, n, log_v, w_v)


def expected_best(const floating[:] mu, const floating[:] sigma, const floating[:] low,
                  const floating[:] high, const floating[:] n, const double[::1] log_v,
                  const double[::1] w_v, floating[::1] out, int threads):
    cdef Py_ssize_t i, size = out.shape[0]
    for i in prange(size, nogil=True, num_threads=threads, schedule="static"):
        if _valid(mu[i], sigma[i], low[i], high[i]):
            out[i] = <floating>_expected_one(mu[i], sigma[i], low[i], high[i], n[i], log_v, w_v)
        else:
            out[i] = NAN


cdef inline double _guide_search(const _Quantiles* p, floating t, double n_lo, double n_hi,
                                 const double[::1] guide_v,
                                 const double[::1] guide_w) noexcept nogil:
    """The smallest n in [n_lo, n_hi] whose expected best by the coarse rule reaches t (n_hi
    if none): regula falsi on log n with the Illinois rule (the expected best is smooth and
    slowly growing in log n), bisecting log n where a step gains little."""
    cdef double lo = n_lo, hi = n_hi, f_lo, f_hi, f_m, m, u, width
    cdef int side = 0
    f_lo = <floating>_expected_best(p, lo, guide_v, guide_w) - t
    if f_lo >= 0:
        return lo
    f_hi = <floating>_expected_best(p, hi, guide_v, guide_w) - t
    if f_hi < 0:
        return hi
    while hi - lo > 1.0:  # f_lo < 0 <= f_hi
        width = hi - lo
        u = log(lo) + (log(hi) - log(lo)) * (f_lo / (f_lo - f_hi))
        m = floor(exp(u) + 0.5) if side != 2 else floor(sqrt(lo * hi))
        m = min(max(m, lo + 1.0), hi - 1.0)
        f_m = <floating>_expected_best(p, m, guide_v, guide_w) - t
        if f_m >= 0:
            hi, f_hi = m, f_m
            if side == -1:
                f_lo = 0.5 * f_lo  # the same end kept twice: pull the next point its way
            side = -1
        else:
            lo, f_lo = m, f_m
            if side == 1:
                f_hi = 0.5 * f_hi
            side = 1
        if hi - lo > 0.5 * width:
            side = 2  # little gained: bisect log n next
    return hi


cdef inline double _expected_search(const _Quantiles* p, floating t, double n_lo, double n_hi,
                                    const double[::1] log_v, const double[::1] w_v,
                                    const double[::1] guide_v, const double[::1] guide_w,
                                    floating* e_out) noexcept nogil:
    """Smallest n in [n_lo, n_hi] with E[best of n] >= t (e_out: its E), or -1 (e_out: E at
    n_hi) where none is: the answer of bisection on [n_lo, n_hi] for an E nondecreasing in n.

    A search with a coarse quadrature rule (guide_v, guide_w) guesses n; the full rule then
    brackets the answer by galloping from the guess (steps 1, 1, 2, 4, ...: the guess is
    mostly the crossing, or next to it) and bisects the bracket. Only full-rule values
    decide."""
    cdef double lo, hi = _guide_search(p, t, n_lo, n_hi, guide_v, guide_w), mid, step, ok_n
    cdef double bad_n
    cdef floating e, e_ok
    e = <floating>_expected_best(p, hi, log_v, w_v)
    step = 1.0
    if e >= t:  # gallop down to a failing n (or n_lo)
        ok_n, e_ok = hi, e
        while True:
            if ok_n <= n_lo:
                e_out[0] = e_ok
                return ok_n
            bad_n = max(ok_n - step, n_lo)
            e = <floating>_expected_best(p, bad_n, log_v, w_v)
            if e < t:
                break
            ok_n, e_ok = bad_n, e
            step = 2.0 * step if step > 1.0 or ok_n < hi - 1.0 else 1.0
    else:  # gallop up to a passing n (or n_hi fails: infeasible)
        bad_n = hi
        while True:
            if bad_n >= n_hi:
                e_out[0] = e
                return -1.0
            ok_n = min(bad_n + step, n_hi)
            e_ok = <floating>_expected_best(p, ok_n, log_v, w_v)
            if e_ok >= t:
                break
            bad_n, e = ok_n, e_ok
            step = 2.0 * step if step > 1.0 or bad_n > hi + 1.0 else 1.0
    lo = bad_n + 1.0  # E(bad_n) < t <= E(ok_n)
    while lo < ok_n:
        mid = floor(0.5 * (lo + ok_n))
        e = <floating>_expected_best(p, mid, log_v, w_v)
        if e >= t:
            ok_n, e_ok = mid, e
        else:
            lo = mid + 1.0
    e_out[0] = e_ok
    return ok_n


cdef inline void _expected_solve(floating mu, floating sigma, floating low, floating high,
                                 floating t, double n_lo, double n_hi, const double[::1] log_v,
                                 const double[::1] w_v, const double[::1] guide_v,
                                 const double[::1] guide_w, int* n_out, int* status_out,
                                 floating* achieved_out) noexcept nogil:
    """One valid element of min_samples_expected."""
    cdef _Quantiles p
    cdef floating e = 0
    cdef double n
    _quantiles(mu, sigma, low, high, &p)
    if t <= low:
        n_out[0], status_out[0] = <int>n_lo, TRIVIAL
        achieved_out[0] = <floating>_expected_best(&p, n_lo, log_v, w_v)
    elif t >= high:
        n_out[0], status_out[0] = <int>n_hi, INFEASIBLE
        achieved_out[0] = <floating>_expected_best(&p, n_hi, log_v, w_v)
    else:
        n = _expected_search(&p, t, n_lo, n_hi, log_v, w_v, guide_v, guide_w, &e)
        if n < 0:
            n_out[0], status_out[0] = <int>n_hi, INFEASIBLE
        else:
            n_out[0], status_out[0] = <int>n, OK
        achieved_out[0] = e


def min_samples_expected(const floating[:] mu, const floating[:] sigma, const floating[:] low,
                         const floating[:] high, const floating[:] target,
                         const long long[:] n_min, const long long[:] n_max,
                         const double[::1] log_v, const double[::1] w_v,
                         const double[::1] guide_v, const double[::1] guide_w, int[::1] out_n,
                         int[::1] out_status, floating[::1] out_achieved, int threads):
    """Smallest n with E[best of n] >= target: the answer of bisection on [n_min, n_max], found
    from a coarse-rule guess (see _expected_search)."""
    cdef Py_ssize_t i, size = out_n.shape[0]
    for i in prange(size, nogil=True, num_threads=threads, schedule="dynamic"):
        if not (_valid(mu[i], sigma[i], low[i], high[i]) and not isnan(target[i])
                and n_min[i] >= 1 and n_max[i] >= n_min[i]):
            out_n[i], out_status[i], out_achieved[i] = n_max[i], INVALID, 0
        else:
            _expected_solve(mu[i], sigma[i], low[i], high[i], target[i], <double>n_min[i],
                            <double>n_max[i], log_v, w_v, guide_v, guide_w, &out_n[i],
                            &out_status[i], &out_achieved[i])
