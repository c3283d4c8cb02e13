# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Cython kernels of the optscale CPU backend (see optscale/_cython_backend.py).

The same log-space algorithm as the JAX core (optscale/_special.py, _truncnorm.py): special
functions at three points per query (alpha, z, beta), the tail anchor cancelled exactly, short
tail intervals by a Taylor series of the hazard and far tails by the Mills-ratio continued
fraction. Kernels loop over a flat batch with prange (OpenMP when the compiler has it, serial
otherwise), write into arrays the Python wrapper allocated, and take float or double memoryviews.
Special functions are evaluated in double; the solvers' exactness fix-ups run in the input's
precision, so that their answers satisfy the definitions in that precision.
"""

from cython.parallel import prange
from libc.float cimport DBL_EPSILON, DBL_MIN, FLT_EPSILON, FLT_MIN
from libc.math cimport (INFINITY, NAN, ceil, erf, exp, expm1, fabs, floor, frexp, hypot,
                        isfinite, isnan, log, log1p, sqrt)
from scipy.special.cython_special cimport betainc, log_ndtr, ndtri_exp
from scipy.special.cython_special cimport erfc as sc_erfc

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


def log_cdf_sf(floating[::1] mu, floating[::1] sigma, floating[::1] low, floating[::1] high,
               floating[::1] x, floating[::1] out_lc, floating[::1] out_ls, int threads):
    cdef Py_ssize_t i, n = x.shape[0]
    cdef double lc, ls
    for i in prange(n, nogil=True, num_threads=threads, schedule="static"):
        lc = NAN  # assigned in the loop, so private to each thread (they are passed by pointer)
        ls = NAN
        if _valid(mu[i], sigma[i], low[i], high[i]):
            _logs(mu[i], sigma[i], low[i], high[i], x[i], &lc, &ls)
        out_lc[i] = <floating>lc
        out_ls[i] = <floating>ls


def best_of_n_prob(floating[::1] mu, floating[::1] sigma, floating[::1] low,
                   floating[::1] high, floating[::1] x, floating[::1] n, floating[::1] out,
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


def log_binom_lower(floating[::1] log_s, floating[::1] log_f, floating[::1] n,
                    floating[::1] k, floating[::1] out, int threads):
    cdef Py_ssize_t i, size = n.shape[0]
    for i in prange(size, nogil=True, num_threads=threads, schedule="guided"):
        out[i] = <floating>_log_binom_lower(log_s[i], log_f[i], n[i], k[i])


def k_of_n_prob(floating[::1] mu, floating[::1] sigma, floating[::1] low, floating[::1] high,
                floating[::1] x, floating[::1] n, floating[::1] k, floating[::1] out,
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
# argument); evaluated in double with libm's erfc and log1p (both within 2 eps), branch per
# element: elements it cannot prove exact take the careful _logs above.

cdef double E0 = 8.0
cdef double E2 = 3.0
cdef double E2_BOUND = 6.0
cdef double U_CAP = 1e4


cdef inline double _tail_err(double u, double e2, double* err) noexcept nogil:
    """T(u) = Phi(-|u|) and (into err) its absolute error bound."""
    cdef double au = min(fabs(u), U_CAP)
    cdef double t = 0.5 * sc_erfc(au * SQRT_HALF)
    err[0] = t * ((E0 + e2 * au * au) * DBL_EPSILON) + 2.0 * DBL_MIN
    return t


cdef inline bint _fast_logs(double mu, double sigma, double low, double high, double x,
                            double* lf, double* dlf, double* ls, double* dls, double* s_out,
                            double* ds_out, double* log_size, bint with_sf) noexcept nogil:
    """log F (and log S) of a central range with absolute error bounds; False where the bound
    does not apply (the caller then takes the careful path). x outside (low, high) is left to
    the caller."""
    cdef double alpha, beta, z, ta, tz, tb, ea, ez, eb, lower, upper, dl, du, total, s, f, ds
    cdef int e_lo, e_up
    alpha, beta, z = (low - mu) / sigma, (high - mu) / sigma, (x - mu) / sigma
    if not (alpha < 0.0 and beta > 0.0):
        return False
    ta = _tail_err(alpha, E2_BOUND, &ea)
    tz = _tail_err(z, E2, &ez)
    tb = _tail_err(beta, E2_BOUND, &eb)
    if z > 0.0:
        lower, upper = (1.0 - ta) - tz, tz - tb
        dl, du = ez + ea + 2.0 * DBL_EPSILON, ez + eb + DBL_EPSILON * fabs(upper)
    else:
        lower, upper = tz - ta, (1.0 - tz) - tb
        dl, du = ez + ea + DBL_EPSILON * fabs(lower), ez + eb + 2.0 * DBL_EPSILON
    if not (lower > 0.0 and upper >= 0.0):
        return False
    total = lower + upper
    s, f = upper / total, lower / total
    ds = (du + s * (dl + du + DBL_EPSILON * total)) / total + 2.0 * DBL_EPSILON * s
    if not (ds <= 0.125 * f):
        return False
    lf[0] = log1p(-s)
    dlf[0] = 1.01 * ds / f + 2.0 * DBL_EPSILON * fabs(lf[0])
    s_out[0], ds_out[0] = s, ds
    frexp(lower, &e_lo)
    frexp(upper if upper > 0.0 else 1.0, &e_up)
    log_size[0] = (max(abs(e_lo), abs(e_up)) + 1.0) * LN2
    if not with_sf:
        ls[0], dls[0] = NAN, INFINITY
    elif s > 0.0:
        ls[0] = log(s)
        dls[0] = 1.01 * ds / s + 2.0 * DBL_EPSILON * fabs(ls[0])
    else:
        ls[0], dls[0] = -INFINITY, INFINITY
    return True


cdef inline double _margin(double lf, double dlf, double log_size, double eps) noexcept nogil:
    """How far the careful log F may lie from the fast one (libm's log1p: L = 2)."""
    return 2.0 * dlf + eps * fabs(lf) * (16.0 + 16.0 * log_size + 8.0)


cdef inline bint _best_exact(double n, double lf, double d, double l1mc, double n_lo,
                             double n_hi, double n_exact) noexcept nogil:
    """The careful k = 1 answer is n (inf where log F == 0); see _fastpath.best_exact."""
    cdef double a = -lf, big_b = -l1mc, m
    if d > a * 2048.0 / n_exact:  # 2^-(bits - 12) |log F|: achieved stays close
        return False
    if n > n_hi:
        return n_hi * (a + d) < big_b
    m = max(n, n_lo)
    if m * (a - d) < big_b:
        return False
    return (m <= n_lo or (m - 1.0) * (a + d) < big_b) and n <= n_exact


cdef inline double _k_slack(double m, double kf, double lf, double ls, double d_lf,
                            double d_ls, double eps) noexcept nogil:
    cdef double als = fabs(ls) if isfinite(ls) else 0.0
    cdef double size = m * fabs(lf) + (kf - 1.0) * (als + fabs(lf) + log1p(m)) + 1.0
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


cdef inline void _solve_probability(floating lf, floating ls, floating l1mc, double kf,
                                    double n_lo, double n_hi, int* n_out, int* status_out,
                                    floating* achieved_out, double* n_raw) noexcept nogil:
    """At least k of n reach the target, given log F and log S: closed form for k = 1,
    otherwise bisection on [max(closed form, k, n_min), Chernoff bound] as in the JAX core.
    n_raw: the closed form before clipping (inf where F == 1) for k = 1, else the answer."""
    cdef double lo, hi, mid, ell, need, n1
    cdef floating n_f
    cdef bint ok_hi
    if not (lf < 0):  # F(target) == 1: nobody reaches the target
        n_out[0], status_out[0], achieved_out[0], n_raw[0] = <int>n_hi, INFEASIBLE, 0, INFINITY
        return
    n1 = _ceil_exact(lf, l1mc)
    n_raw[0] = n1
    n1 = min(n1, n_hi + 1.0)
    if kf <= 1:
        if n1 > n_hi:
            n_out[0], status_out[0] = <int>n_hi, INFEASIBLE
        else:
            n_out[0], status_out[0] = <int>max(n1, n_lo), OK
        n_f = <floating>n_out[0]
        achieved_out[0] = <floating>(-expm1(<double>(n_f * lf)))
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
        n_out[0], status_out[0], n_raw[0] = <int>n_hi, INFEASIBLE, n_hi
        achieved_out[0] = <floating>(-expm1(<double><floating>_log_binom_lower(ls, lf, n_hi,
                                                                               kf)))
        return
    while lo < hi:
        mid = floor(0.5 * (lo + hi))
        if <floating>_log_binom_lower(ls, lf, mid, kf) <= l1mc:
            hi = mid
        else:
            lo = mid + 1.0
    n_out[0], status_out[0], n_raw[0] = <int>hi, OK, hi
    achieved_out[0] = <floating>(-expm1(<double><floating>_log_binom_lower(ls, lf, hi, kf)))


cdef inline bint _k_exact(floating lf, floating ls, floating l1mc, double kf, double n_lo,
                          double n_hi, double conf, int status, double n, double d_lf,
                          double d_ls, double s, double ds, double eps,
                          double n_exact) noexcept nogil:
    """The careful k-of-N bisection ends on the same OK answer.

    log P(Bin(n, S) <= k - 1) moves by at most n |d log F| + (k - 1) |d log S| when the logs
    do (its partial derivatives are E[n - j] <= n and E[j] <= k - 1), plus the rounding of the
    k-term recurrence (8 (k + 2) eps times the size of its terms): with that margin at n and
    n - 1 the careful bisection, which finds the smallest n meeting the criterion, ends on n.
    Infeasible answers go to the careful path, whose achieved value near 0 is rounding
    (P(2 of N) of a target 15 sigma out): only it reproduces its own.
    """
    cdef double b = <double>l1mc, m
    if status != OK:
        return False
    if n > n_exact or <double><floating>_log_binom_lower(ls, lf, n, kf) > b - _k_slack(
            n, kf, lf, ls, d_lf, d_ls, eps):
        return False
    if n <= max(kf, n_lo):
        return True
    m = n - 1.0
    return <double><floating>_log_binom_lower(ls, lf, m, kf) > b + _k_slack(m, kf, lf, ls, d_lf,
                                                                            d_ls, eps)


def min_samples_probability(floating[::1] mu, floating[::1] sigma, floating[::1] low,
                            floating[::1] high, floating[::1] target, floating[::1] conf,
                            long long[::1] k, long long[::1] n_min, long long[::1] n_max,
                            int[::1] out_n, int[::1] out_status, floating[::1] out_achieved,
                            int threads):
    """At least k of n reach the target with the confidence. Each element first tries the
    plain formula (fast path); where its error bound cannot prove the answer exact, the
    careful log-space logs decide."""
    cdef Py_ssize_t i, size = mu.shape[0]
    cdef double lcd, lsd, kf, n_lo, n_hi, dlf, dls, s, ds, log_size, n_raw, d_lf, d_ls, eps
    cdef double n_exact
    cdef floating lf, ls, l1mc
    cdef bint done
    if floating is float:
        eps, n_exact = FLT_EPSILON, 4194304.0
    else:
        eps, n_exact = DBL_EPSILON, 2251799813685248.0
    for i in prange(size, nogil=True, num_threads=threads, schedule="guided"):
        if not (_valid(mu[i], sigma[i], low[i], high[i]) and not isnan(target[i])
                and conf[i] > 0 and conf[i] < 1 and k[i] >= 1 and n_min[i] >= 1
                and n_max[i] >= n_min[i]):
            out_n[i], out_status[i], out_achieved[i] = n_max[i], INVALID, 0
            continue
        kf, n_lo, n_hi = <double>k[i], <double>n_min[i], <double>n_max[i]
        if target[i] <= low[i]:
            out_n[i] = <int>max(kf, n_lo) if max(kf, n_lo) <= n_hi else <int>n_hi
            out_status[i] = TRIVIAL
            out_achieved[i] = 1 if out_n[i] >= kf else 0
            continue
        l1mc = _log1m(conf[i])
        done = False
        lcd = 0.0  # private (see log_cdf_sf)
        lsd = 0.0
        dlf = 0.0
        dls = 0.0
        s = 0.0
        ds = 0.0
        log_size = 0.0
        n_raw = 0.0
        if target[i] >= high[i]:
            lcd, lsd = 0.0, -INFINITY  # exactly the careful path's values
            done = True
        elif target[i] > low[i] and _fast_logs(mu[i], sigma[i], low[i], high[i], target[i],
                                               &lcd, &dlf, &lsd, &dls, &s, &ds, &log_size,
                                               kf > 1):
            lf, ls = <floating>lcd, <floating>lsd
            _solve_probability(lf, ls, l1mc, kf, n_lo, n_hi, &out_n[i], &out_status[i],
                               &out_achieved[i], &n_raw)
            d_lf = _margin(<double>lf, dlf, log_size, eps)
            if kf <= 1:
                done = _best_exact(n_raw, <double>lf, d_lf, <double>l1mc, n_lo, n_hi, n_exact)
            else:
                d_ls = _margin(<double>ls if isfinite(ls) else 0.0, dls, log_size, eps)
                done = _k_exact(lf, ls, l1mc, kf, n_lo, n_hi, <double>conf[i], out_status[i],
                                n_raw, d_lf, d_ls, s, ds, eps, n_exact)
            if done:
                continue
        if not done:
            _logs(mu[i], sigma[i], low[i], high[i], target[i], &lcd, &lsd)
        lf, ls = <floating>lcd, <floating>lsd
        _solve_probability(lf, ls, l1mc, kf, n_lo, n_hi, &out_n[i], &out_status[i],
                           &out_achieved[i], &n_raw)


def cost_aware_samples(floating[::1] mu, floating[::1] sigma, floating[::1] low,
                       floating[::1] high, floating[::1] target, floating[::1] cost,
                       long long[::1] n_min, long long[::1] n_max, int[::1] out_n,
                       int[::1] out_status, floating[::1] out_achieved, int threads):
    """The smallest n >= 0 with F^n (1 - F) <= cost, clipped to [n_min, n_max]."""
    cdef Py_ssize_t i, size = mu.shape[0]
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
        out_achieved[i] = <floating>(-expm1(<double>(n_f * lf)))


# ----------------------------------------------------------------------------- expected best

cdef inline double _quantile0(double mu, double sigma, double low, double high,
                              double log_q) noexcept nogil:
    """First-guess quantile from log q (the JAX core's, without Newton polish: its absolute
    error is far below the quadrature's)."""
    cdef double alpha, beta, width, log_z, log_1mq, log_p, edge, z0, delta, linear
    cdef double le_cdf, le_sf, tiny, r, c, ell, ta, ga, tb, gb, an, rel, q, bound
    cdef bint from_low, deep_right, deep_left, same_side
    if log_q == -INFINITY:
        return low
    if log_q >= 0.0:
        return high
    alpha, beta = (low - mu) / sigma, (high - mu) / sigma
    width = (high - low) / sigma
    _tail_point(fabs(alpha), &ta, &ga)
    _tail_point(fabs(beta), &tb, &gb)
    _log_mass(alpha, ta, ga, beta, tb, gb, width, &an, &rel, &q)
    log_z = an + rel
    log_1mq = _log1mexp(log_q)
    deep_right, deep_left = alpha >= 8.0, beta <= -8.0
    r = alpha if deep_right else -beta
    if (deep_right or deep_left) and not (isfinite(log_z) and 2.220446049250313e-16 * r * r
                                          <= 1e-3):
        # a guess from the far bound would be off by eps r^2 in log probability (or undefined
        # once log Z underflows): measure from the bound the mass piles against
        from_low = deep_right
    else:
        from_low = log_q <= -LN2
    log_p = log_q if from_low else log_1mq
    edge = alpha if from_low else -beta
    le_cdf, le_sf = log_ndtr(edge), log_ndtr(-edge)
    if edge < 0.0:
        z0 = ndtri_exp(_logaddexp(le_cdf, log_p + log_z))
        bound = low if from_low else high
        if fabs(bound) + sigma * fabs(z0 - edge) > 1e3 * (fabs(mu) + sigma * fabs(z0)):
            # a bound far from the mass in absolute terms: x - bound would cancel
            if from_low:
                return min(max(mu + sigma * z0, low), high)
            return min(max(mu - sigma * z0, low), high)
    else:
        z0 = -ndtri_exp(le_sf + _log1mexp(min(log_p + log_z - le_sf, 0.0)))
    delta = min(max(z0 - edge, 0.0), width)
    linear = exp(log_p + log_z + 0.5 * edge * edge + HALF_LOG_2PI)
    tiny = 64.0 * 2.220446049250313e-16 * (1.0 + fabs(edge))
    if delta <= tiny:
        delta = min(linear, width)
    if deep_right or deep_left:
        # exponential tail against the bound the mass piles on (rate r; hypot: r may be 1e300)
        same_side = from_low if deep_right else not from_low
        if same_side:
            c = r * width + 0.5 * width * width
            ell = -_log1mexp(min(log_p + _log1mexp(-c), 0.0))
            delta = min(2.0 * ell / (r + hypot(r, sqrt(2.0 * ell))), width)
    if from_low:
        return min(max(low + sigma * delta, low), high)
    return min(max(high - sigma * delta, low), high)


cdef inline double _expected_best(double mu, double sigma, double low, double high, double n,
                                  const double[::1] log_v, const double[::1] w_v) noexcept nogil:
    cdef double total = 0.0
    cdef Py_ssize_t j
    for j in range(log_v.shape[0]):
        total = total + w_v[j] * _quantile0(mu, sigma, low, high, log_v[j] / n)
    return total


def expected_best(floating[::1] mu, floating[::1] sigma, floating[::1] low,
                  floating[::1] high, floating[::1] n, const double[::1] log_v,
                  const double[::1] w_v, floating[::1] out, int threads):
    cdef Py_ssize_t i, size = mu.shape[0]
    for i in prange(size, nogil=True, num_threads=threads, schedule="static"):
        if _valid(mu[i], sigma[i], low[i], high[i]):
            out[i] = <floating>_expected_best(mu[i], sigma[i], low[i], high[i], n[i], log_v, w_v)
        else:
            out[i] = NAN


def min_samples_expected(floating[::1] mu, floating[::1] sigma, floating[::1] low,
                         floating[::1] high, floating[::1] target, long long[::1] n_min,
                         long long[::1] n_max, const double[::1] log_v, const double[::1] w_v,
                         int[::1] out_n, int[::1] out_status, floating[::1] out_achieved,
                         int threads):
    """Smallest n with E[best of n] >= target, by bisection on [n_min, n_max]."""
    cdef Py_ssize_t i, size = mu.shape[0]
    cdef double lo, hi, mid
    for i in prange(size, nogil=True, num_threads=threads, schedule="dynamic"):
        if not (_valid(mu[i], sigma[i], low[i], high[i]) and not isnan(target[i])
                and n_min[i] >= 1 and n_max[i] >= n_min[i]):
            out_n[i], out_status[i], out_achieved[i] = n_max[i], INVALID, 0
            continue
        lo, hi = <double>n_min[i], <double>n_max[i]
        if target[i] <= low[i]:
            out_n[i], out_status[i] = n_min[i], TRIVIAL
        elif target[i] >= high[i] or <floating>_expected_best(
                mu[i], sigma[i], low[i], high[i], hi, log_v, w_v) < target[i]:
            out_n[i], out_status[i] = n_max[i], INFEASIBLE
        else:
            while lo < hi:
                mid = floor(0.5 * (lo + hi))
                if <floating>_expected_best(mu[i], sigma[i], low[i], high[i], mid, log_v,
                                            w_v) >= target[i]:
                    hi = mid
                else:
                    lo = mid + 1.0
            out_n[i], out_status[i] = <int>hi, OK
        out_achieved[i] = <floating>_expected_best(mu[i], sigma[i], low[i], high[i],
                                                   <double>out_n[i], log_v, w_v)
