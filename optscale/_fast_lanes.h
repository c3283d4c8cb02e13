/* The solvers' fast path (the plain formula with its error bound, optscale/_fastpath.py) on
   OV_LANES doubles at once. Included by _fast_kernel.h once per lane count, with OV(name)
   naming the instantiation, OV_D / OV_I its double and int64 types and OV_TARGET the
   instruction set of its entry point, OV(block); every lane performs the same IEEE operations
   in the same order as the one-lane instantiation, so all give the same bits. Lanes outside a
   function's domain get harmless values before any table lookup (see OV(central) and
   OV(tail)); their results are selected away. */

typedef OV_D OV(d);
typedef OV_I OV(i);
typedef OV_N32 OV(n32);

/* The reduction shared by the exps below: x = (k/128) ln 2 + r, |r| <= ln 2/256; returns
   e^r - 1 by Taylor's degree 5 (remainder < 1e-18 relative), with j = k mod 128 and the power
   of 2, 2^((k - j)/128), into *j and *scale (in the normal range for x >= -708). */
OV_INLINE OV(d) OV(exp_reduce)(OV(d) x, OV(i)* j, OV(d)* scale) {
    OV(d) kd, r;
    OV(i) k;
    kd = x * OV_SPLAT(optscale_exp_inv_ln2_n) + OV_SPLAT(6755399441055744.0);
    k = OV_AS_I(kd) - OV_AS_I(OV_SPLAT(6755399441055744.0));
    kd = kd - OV_SPLAT(6755399441055744.0);
    r = (x - kd * OV_SPLAT(optscale_exp_ln2_hi_n)) - kd * OV_SPLAT(optscale_exp_ln2_lo_n);
    *j = k & 127;
    *scale = OV_AS_D(OV_SHL45(k - *j) + OV_AS_I(OV_SPLAT(1.0)));
    return r + r * r * (OV_SPLAT(0.5) + r * (OV_SPLAT(1.0 / 6.0) + r * (OV_SPLAT(1.0 / 24.0)
                                                                       + r * OV_SPLAT(1.0 / 120.0))));
}

/* e^x for -708 <= x <= 0, and e^x - 1 for -ln 2 <= x <= 0 (where 2^(k/128) is 1/2 or 1 and
   hi - 1 is exact): 2^(k/128) = 2^((k - j)/128) (hi[j] + lo[j]) times e^r; as big + small.
   The products with the power of 2 are exact but for lo's (which may be subnormal, far below
   the result's ulp). */
OV_INLINE void OV(exp_parts)(OV(d) x, OV(d)* big, OV(d)* small) {
    OV(d) p, scale;
    OV(i) j;
    p = OV(exp_reduce)(x, &j, &scale);
    *big = OV_GATHER(optscale_exp2_hi, j) * scale;
    *small = OV_GATHER(optscale_exp2_lo, j) * scale + *big * p;
}

/* e^x for -708 <= x <= 0 from hi[j] alone (within an ulp: the tails need no more) */
OV_INLINE OV(d) OV(exp_hi)(OV(d) x) {
    OV(d) p, scale, big;
    OV(i) j;
    p = OV(exp_reduce)(x, &j, &scale);
    big = OV_GATHER(optscale_exp2_hi, j) * scale;
    return big + big * p;
}

/* e^x for x <= 0 (e^-708 below -708: under 3.4e-308) */
OV_INLINE OV(d) OV(exp)(OV(d) x) {
    OV(d) big, small;
    OV(exp_parts)(OV_MAX(x, OV_SPLAT(-708.0)), &big, &small);
    return big + small;
}

/* 1 - e^x for x <= 0: 1 - e^x below -ln 2 (no cancellation), -(e^x - 1) above */
OV_INLINE OV(d) OV(one_minus_exp)(OV(d) x) {
    OV(d) big, small;
    x = OV_MAX(x, OV_SPLAT(-708.0));
    OV(exp_parts)(x, &big, &small);
    return OV_SELECT(OV_GT(x, OV_SPLAT(-0.6931471805599453)), -((big - OV_SPLAT(1.0)) + small),
                     OV_SPLAT(1.0) - (big + small));
}

/* T(x) = Phi(-x) for x >= 0 (0 from OPTSCALE_TAIL_X_MAX on, below 1.1e-309) as
   e^(-x^2/2) G(x), G from the table of polynomials in x - centre (_fast_tables.py), and into
   *err its absolute error bound T (E0 + e2 min(x, U_CAP)^2) eps + 2 DBL_MIN. The relative error
   is about 2 + x^2/4 eps (x^2 is rounded), within the bound's allowance for erfc. */
OV_INLINE OV(d) OV(tail)(OV(d) x, double e2, OV(d)* err) {
    OV(i) inside = OV_LT(x, OV_SPLAT(OPTSCALE_TAIL_X_MAX));
    OV(d) xs = OV_SELECT(inside, x, OV_SPLAT(0.0));
    /* the piece and its centre from the bits: of x + 1 below 1 (its top mantissa bits are
       floor(8 x), up to a rounding of x + 1 onto the next piece's edge, where the next
       polynomial holds as well), of x from 1 on (exponent and top mantissa bits); the centre
       sets the next bit and clears the rest, so x - centre is exact */
    OV(i) b_small = OV_AS_I(xs + OV_SPLAT(1.0));
    OV(i) b = OV_AS_I(xs);
    OV(i) small = OV_LT(xs, OV_SPLAT(1.0));
    OV(i) k_small = (b_small >> (52 - 3)) & 7;
    OV(i) k_big = OPTSCALE_TAIL_UNIFORM + ((b >> 52) - 1023) * (1 << OPTSCALE_TAIL_SPLIT)
                  + ((b >> (52 - OPTSCALE_TAIL_SPLIT)) & ((1 << OPTSCALE_TAIL_SPLIT) - 1));
    OV(i) k = OV_SELECT_I(small, k_small, k_big);
    OV(i) c = k * OPTSCALE_TAIL_TERMS;
    OV(d) centre_small = OV_AS_D((b_small & OV_SPLAT_I(-((int64_t)1 << 49)))
                                 | OV_SPLAT_I((int64_t)1 << 48)) - OV_SPLAT(1.0);
    OV(d) centre_big = OV_AS_D((b & OV_SPLAT_I(-((int64_t)1 << (52 - OPTSCALE_TAIL_SPLIT))))
                               | OV_SPLAT_I((int64_t)1 << (51 - OPTSCALE_TAIL_SPLIT)));
    OV(d) t = xs - OV_SELECT(small, centre_small, centre_big);
    OV(d) g = ((((((((OV_GATHER(optscale_tail_coef + 8, c) * t
                      + OV_GATHER(optscale_tail_coef + 7, c)) * t
                     + OV_GATHER(optscale_tail_coef + 6, c)) * t
                    + OV_GATHER(optscale_tail_coef + 5, c)) * t
                   + OV_GATHER(optscale_tail_coef + 4, c)) * t
                  + OV_GATHER(optscale_tail_coef + 3, c)) * t
                 + OV_GATHER(optscale_tail_coef + 2, c)) * t
                + OV_GATHER(optscale_tail_coef + 1, c)) * t
               + OV_GATHER(optscale_tail_coef, c));
    OV(d) tv = OV_SELECT(inside, OV(exp_hi)(OV_SPLAT(-0.5) * (xs * xs)) * g, OV_SPLAT(0.0));
    OV(d) au = OV_MIN(x, OV_SPLAT(1e4));
    *err = tv * ((OV_SPLAT(8.0) + OV_SPLAT(e2) * au * au) * OV_SPLAT(DBL_EPSILON))
           + OV_SPLAT(2.0 * DBL_MIN);
    return tv;
}

/* |e| + 1 for x = m 2^e, m in [1/2, 1) (frexp's e) of x > 0, 1075 for subnormals (a bound):
   the biased exponent E as a double (OR-ed into 2^52's mantissa), e = E - 1022 */
OV_INLINE OV(d) OV(exponent_size)(OV(d) x) {
    OV(d) biased = OV_AS_D(((OV_AS_I(x) >> 52) & 0x7ff) | OV_AS_I(OV_SPLAT(4503599627370496.0)))
                   - OV_SPLAT(4503599627370496.0);
    OV(d) e = OV_SELECT(OV_EQ(biased, OV_SPLAT(0.0)), OV_SPLAT(-1074.0),
                        biased - OV_SPLAT(1022.0));
    return OV_ABS(e) + OV_SPLAT(1.0);
}

/* log(1 - s) for 0 <= s < 1, within 2 eps relative (as libm's log1p; the tests check it):
   below 2^-5 the series -s (1 + s/2 + ... + s^10/11) (remainder under s^11/12 < 2^-58),
   from there log(y) + e/y with y + e = 1 - s exactly (e is 0 from s = 1/2 on), log(y) from
   the table (see _fast_tables.py). Both are formed in every lane, one kept. */
OV_INLINE OV(d) OV(log1m)(OV(d) s) {
    OV(d) series, y, e, m, r, poly, k, big, small;
    OV(i) b, top, j, c;
    series = -s * (OV_SPLAT(1.0) + s * (OV_SPLAT(1.0 / 2.0) + s * (OV_SPLAT(1.0 / 3.0) + s * (
        OV_SPLAT(1.0 / 4.0) + s * (OV_SPLAT(1.0 / 5.0) + s * (OV_SPLAT(1.0 / 6.0) + s * (
            OV_SPLAT(1.0 / 7.0) + s * (OV_SPLAT(1.0 / 8.0) + s * (OV_SPLAT(1.0 / 9.0) + s * (
                OV_SPLAT(1.0 / 10.0) + s * OV_SPLAT(1.0 / 11.0)))))))))));
    y = OV_SPLAT(1.0) - OV_MAX(s, OV_SPLAT(0.03125));  /* in (0, 1 - 2^-5] */
    e = (OV_SPLAT(1.0) - y) - OV_MAX(s, OV_SPLAT(0.03125));
    /* y = 2^E m, m in [1, 2); from m = 3/2 on, m/2 and E + 1 (so that y near 1 has k = 0) */
    b = OV_AS_I(y);
    top = (b >> 51) & 1;
    /* k = E + top as a double: k + 2048 (>= 0) OR-ed into 2^52's mantissa, less 2^52 + 2048 */
    k = OV_AS_D(((b >> 52) - 1023 + 2048 + top) | OV_AS_I(OV_SPLAT(4503599627370496.0)))
        - OV_SPLAT(4503599627372544.0);
    j = (b >> (52 - OPTSCALE_LOG_BITS)) & ((1 << OPTSCALE_LOG_BITS) - 1);
    m = OV_AS_D((b & OV_SPLAT_I(((int64_t)1 << 52) - 1)) | OV_AS_I(OV_SPLAT(1.0)));
    c = (b & OV_SPLAT_I(-((int64_t)1 << (52 - OPTSCALE_LOG_BITS))))
        | OV_SPLAT_I((int64_t)1 << (51 - OPTSCALE_LOG_BITS));
    /* m - c is exact; r = (m - c) / c, |r| <= 2^-8 */
    r = (m - OV_AS_D((c & OV_SPLAT_I(((int64_t)1 << 52) - 1)) | OV_AS_I(OV_SPLAT(1.0))))
        * OV_GATHER(optscale_log_inv_c, j);
    poly = r + r * r * (OV_SPLAT(-1.0 / 2.0) + r * (OV_SPLAT(1.0 / 3.0) + r * (
        OV_SPLAT(-1.0 / 4.0) + r * (OV_SPLAT(1.0 / 5.0) + r * (OV_SPLAT(-1.0 / 6.0)
                                                              + r * OV_SPLAT(1.0 / 7.0))))));
    big = k * OV_SPLAT(optscale_log_ln2_hi) + OV_GATHER(optscale_log_c_hi, j);
    small = ((k * OV_SPLAT(optscale_log_ln2_lo) + OV_GATHER(optscale_log_c_lo, j)) + poly)
            + e / y;
    return OV_SELECT(OV_LT(s, OV_SPLAT(0.03125)), series, big + small);
}

/* Central ranges (alpha < 0 < beta): the lanes outside get harmless points, and are dropped
   from the result */
OV_INLINE OV(i) OV(central)(OV(d)* alpha, OV(d)* beta, OV(d)* z) {
    OV(i) central = OV_AND(OV_LT(*alpha, OV_SPLAT(0.0)), OV_GT(*beta, OV_SPLAT(0.0)));
    *alpha = OV_SELECT(central, *alpha, OV_SPLAT(-1.0));
    *beta = OV_SELECT(central, *beta, OV_SPLAT(1.0));
    *z = OV_SELECT(central, *z, OV_SPLAT(0.0));
    return central;
}

/* From the three tails T(alpha), T(z), T(beta) and their error bounds: S = upper / (lower +
   upper) and F = lower / (lower + upper) with dS, the bound on S's absolute error
   (optscale/_fastpath.py), and log_size, a bound on |log| of both masses; the result is the
   lanes where the bound applies (dS <= F / 8). Lanes outside get S = F = 1/2. */
OV_INLINE OV(i) OV(masses)(OV(i) central, OV(d) z, OV(d) ta, OV(d) ea, OV(d) tz, OV(d) ez,
                           OV(d) tb, OV(d) eb, OV(d)* s_out, OV(d)* f_out, OV(d)* ds_out,
                           OV(d)* log_size) {
    const OV(d) eps = OV_SPLAT(DBL_EPSILON);
    OV(i) right = OV_GT(z, OV_SPLAT(0.0)), ok;
    OV(d) near, far, d_near, d_far, lower, upper, dl, du, total, inv, s, f, ds;
    /* the mass on z's side of the centre is a difference of two tails; the other holds it */
    near = tz - OV_SELECT(right, tb, ta);
    far = (OV_SPLAT(1.0) - OV_SELECT(right, ta, tz)) - OV_SELECT(right, tz, tb);
    d_near = (ez + OV_SELECT(right, eb, ea)) + eps * OV_ABS(near);
    d_far = (ez + OV_SELECT(right, ea, eb)) + OV_SPLAT(2.0 * DBL_EPSILON);
    lower = OV_SELECT(right, far, near);
    upper = OV_SELECT(right, near, far);
    dl = OV_SELECT(right, d_far, d_near);
    du = OV_SELECT(right, d_near, d_far);
    ok = OV_AND(central, OV_AND(OV_GT(lower, OV_SPLAT(0.0)), OV_GE(upper, OV_SPLAT(0.0))));
    total = OV_SELECT(ok, lower + upper, OV_SPLAT(1.0));
    /* one division for both ratios, as _fastpath (its 2 eps S term covers the rounding) */
    inv = OV_SPLAT(1.0) / total;
    s = OV_SELECT(ok, upper, OV_SPLAT(0.5)) * inv;
    f = OV_SELECT(ok, lower, OV_SPLAT(0.5)) * inv;
    ds = (du + s * ((dl + du) + eps * total)) * inv + OV_SPLAT(2.0 * DBL_EPSILON) * s;
    ok = OV_AND(ok, OV_LE(ds, OV_SPLAT(0.125) * f));
    *s_out = OV_SELECT(ok, s, OV_SPLAT(0.5));
    *f_out = OV_SELECT(ok, f, OV_SPLAT(0.5));
    *ds_out = ds;
    *log_size = OV_MAX(OV(exponent_size)(OV_SELECT(ok, lower, OV_SPLAT(1.0))),
                       OV(exponent_size)(OV_SELECT(OV_AND(ok, OV_GT(upper, OV_SPLAT(0.0))),
                                                   upper, OV_SPLAT(1.0))))
                * OV_SPLAT(0.6931471805599453);
    return ok;
}

/* The bound on log F's absolute error, from S's (log1m: 2 eps) */
OV_INLINE OV(d) OV(log_f_error)(OV(d) lf, OV(d) f, OV(d) ds) {
    return OV_SPLAT(1.01) * ds / f + OV_SPLAT(2.0 * DBL_EPSILON) * OV_ABS(lf);
}

/* The plain formula's log F (and log S where with_sf) at the standardized target z, with
   absolute error bounds (optscale/_fastpath.py); the result is the lanes where the bound
   applies (central ranges, dS <= F / 8). log_size bounds |log| of both masses. */
OV_INLINE OV(i) OV(fast_logs)(OV(d) alpha, OV(d) beta, OV(d) z, int with_sf, OV(d)* lf,
                              OV(d)* dlf, OV(d)* ls, OV(d)* dls, OV(d)* log_size) {
    OV(i) ok = OV(central)(&alpha, &beta, &z);
    OV(d) ta, tz, tb, ea, ez, eb, s, f, ds;
    ta = OV(tail)(OV_ABS(alpha), 6.0, &ea);
    tz = OV(tail)(OV_ABS(z), 3.0, &ez);
    tb = OV(tail)(OV_ABS(beta), 6.0, &eb);
    ok = OV(masses)(ok, z, ta, ea, tz, ez, tb, eb, &s, &f, &ds, log_size);
    *lf = OV(log1m)(s);
    *dlf = OV(log_f_error)(*lf, f, ds);
    if (with_sf) {
        int lane;
        for (lane = 0; lane < OV_LANES; lane++) {
            double sl = OV_LANE(s, lane), l = -INFINITY, d = INFINITY;
            if (sl > 0.0) {
                l = log(sl);
                d = 1.01 * OV_LANE(ds, lane) / sl + 2.0 * DBL_EPSILON * fabs(l);
            }
            OV_SET_LANE(*ls, lane, l);
            OV_SET_LANE(*dls, lane, d);
        }
    }
    return ok;
}

/* ceil(q) for q >= 0 (q < 2^52 rounded to an integer by adding 2^52, one step up if below) */
OV_INLINE OV(d) OV(ceil)(OV(d) q) {
    OV(d) r = (q + OV_SPLAT(4503599627370496.0)) - OV_SPLAT(4503599627370496.0);
    r = r + OV_SELECT(OV_LT(r, q), OV_SPLAT(1.0), OV_SPLAT(0.0));
    return OV_SELECT(OV_LT(q, OV_SPLAT(4503599627370496.0)), r, q);
}

/* The k = 1 decision of double queries from log F, its error bound and log_size: for lanes
   in ok, n, the infeasible flag and the achieved probability, where the bound proves them the
   careful path's; the result is those lanes. The same arithmetic as _fast.pyx's _ceil_exact,
   _margin and _best_exact in double. */
OV_INLINE OV(i) OV(decide)(OV(i) ok, OV(d) lf, OV(d) dlf, OV(d) log_size, OV(d) l1mc,
                           OV(d) n_lo, OV(d) n_hi, OV(d)* n_out, OV(i)* infeasible,
                           OV(d)* achieved) {
    OV(d) a, big_b, d, n, m, q, nf;
    OV(i) beyond, exact;
    ok = OV_AND(ok, OV_LT(lf, OV_SPLAT(0.0)));
    lf = OV_SELECT(ok, lf, OV_SPLAT(-1.0));
    l1mc = OV_SELECT(ok, l1mc, OV_SPLAT(-1.0));
    /* smallest n >= 0 with n lf <= log(1 - c), exactly (_ceil_exact) */
    q = l1mc / lf;
    n = OV(ceil)(OV_SELECT(OV_GE(q, OV_SPLAT(0.0)), q, OV_SPLAT(0.0)));
    n = n + OV_SELECT(OV_GT(n * lf, l1mc), OV_SPLAT(1.0), OV_SPLAT(0.0));
    n = n - OV_SELECT(OV_AND(OV_GE(n, OV_SPLAT(1.0)), OV_LE((n - OV_SPLAT(1.0)) * lf, l1mc)),
                      OV_SPLAT(1.0), OV_SPLAT(0.0));
    /* the margin (_margin) and the test of _best_exact */
    d = OV_SPLAT(2.0) * dlf + (OV_SPLAT(DBL_EPSILON) * OV_ABS(lf))
        * ((OV_SPLAT(16.0) + OV_SPLAT(16.0) * log_size) + OV_SPLAT(8.0));
    a = -lf;
    big_b = -l1mc;
    beyond = OV_GT(n, n_hi);
    m = OV_MAX(n, n_lo);
    exact = OV_SELECT_I(
        beyond, OV_LT(n_hi * (a + d), big_b),
        OV_AND(OV_NOT(OV_LT(m * (a - d), big_b)),
               OV_AND(OV_OR(OV_LE(m, n_lo), OV_LT((m - OV_SPLAT(1.0)) * (a + d), big_b)),
                      OV_LE(n, OV_SPLAT(2251799813685248.0)))));
    exact = OV_AND(ok, OV_AND(exact, OV_NOT(OV_GT(d, a * OV_SPLAT(OPTSCALE_2_M41)))));
    nf = OV_SELECT(beyond, n_hi, m);
    *n_out = nf;
    *infeasible = beyond;
    *achieved = OV(one_minus_exp)(nf * lf);
    return exact;
}

/* The k = 1 fast path of double queries (lanes in `want`: low < t < high, plain parameters, a
   valid confidence, 1 <= n_lo <= n_hi): fast_logs, then decide. */
OV_INLINE OV(i) OV(best)(OV(i) want, OV(d) alpha, OV(d) beta, OV(d) z, OV(d) l1mc,
                         OV(d) n_lo, OV(d) n_hi, OV(d)* n_out, OV(i)* infeasible,
                         OV(d)* achieved) {
    OV(d) lf, dlf, ls, dls, log_size;
    OV(i) ok = OV_AND(want, OV(fast_logs)(alpha, beta, z, 0, &lf, &dlf, &ls, &dls, &log_size));
    return OV(decide)(ok, lf, dlf, log_size, l1mc, n_lo, n_hi, n_out, infeasible, achieved);
}

/* p[at], p[at + stride], ... for the first `valid` lanes, p[first] in the others (a short
   last group); one load where contiguous */
OV_INLINE OV(d) OV(load)(const double* p, ptrdiff_t stride, ptrdiff_t at, int valid,
                         ptrdiff_t first) {
    OV(d) v = OV_SPLAT(p[first * stride]);
    int lane;
    if (valid >= OV_LANES && stride == 1) {
        memcpy(&v, p + at, sizeof v);
    } else if (stride != 0) {
        for (lane = 0; lane < OV_LANES && lane < valid; lane++) {
            OV_SET_LANE(v, lane, p[(at + lane) * stride]);
        }
    }
    return v;
}

/* n and status (integral doubles) as ints, and achieved, at three contiguous places */
OV_INLINE void OV(store)(int* n_out, int* status_out, double* achieved_out, OV(d) n,
                         OV(d) status, OV(d) achieved) {
    OV(n32) n32 = OV_TO_I32(n), s32 = OV_TO_I32(status);
    memcpy(n_out, &n32, sizeof n32);
    memcpy(status_out, &s32, sizeof s32);
    memcpy(achieved_out, &achieved, sizeof achieved);
}

/* One chunk of queries (at most OPTSCALE_CHUNK, from `chunk` on) in stages, each a loop of
   independent iterations: one query's chain of dependent operations is long, and the processor
   overlaps iterations only when a loop body is short. The arithmetic is OV(best)'s (but for the
   decision), step by step: ok[g] holds the lanes where the bound applies (low < t < high,
   _fast.pyx's _plain parameters, a valid confidence), lf / dlf log F and its error bound, s
   and ds S and its, size the masses' log size, l1mc log(1 - c); log(1 - c) is taken once per
   run of equal confidences (libm's log1p, as _fast.pyx's _log1m) over the chunks of a call. */
typedef struct {
    OV(d) alpha[OPTSCALE_CHUNK / OV_LANES], beta[OPTSCALE_CHUNK / OV_LANES];
    OV(d) z[OPTSCALE_CHUNK / OV_LANES], l1mc[OPTSCALE_CHUNK / OV_LANES];
    OV(d) ta[OPTSCALE_CHUNK / OV_LANES], tz[OPTSCALE_CHUNK / OV_LANES];
    OV(d) tb[OPTSCALE_CHUNK / OV_LANES], ea[OPTSCALE_CHUNK / OV_LANES];
    OV(d) ez[OPTSCALE_CHUNK / OV_LANES], eb[OPTSCALE_CHUNK / OV_LANES];
    OV(d) s[OPTSCALE_CHUNK / OV_LANES], f[OPTSCALE_CHUNK / OV_LANES];
    OV(d) ds[OPTSCALE_CHUNK / OV_LANES], size[OPTSCALE_CHUNK / OV_LANES];
    OV(d) lf[OPTSCALE_CHUNK / OV_LANES], dlf[OPTSCALE_CHUNK / OV_LANES];
    OV(i) ok[OPTSCALE_CHUNK / OV_LANES];
    double c_last, l1mc_last;
} OV(chunk_t);

OV_INLINE int OV(chunk_logs)(OV(chunk_t)* st, ptrdiff_t chunk, ptrdiff_t todo, const double* mu,
                             ptrdiff_t s_mu, const double* sigma, ptrdiff_t s_sigma,
                             const double* target, ptrdiff_t s_t, const double* conf,
                             ptrdiff_t s_c, double low, double high) {
    int groups = (int)((todo + OV_LANES - 1) / OV_LANES), g, lane;
    for (g = 0; g < groups; g++) {  /* the points, and which queries qualify */
        ptrdiff_t at = chunk + g * OV_LANES;
        int valid = (int)(todo - g * OV_LANES);
        OV(d) m = OV(load)(mu, s_mu, at, valid, chunk);
        OV(d) sg = OV(load)(sigma, s_sigma, at, valid, chunk);
        OV(d) t = OV(load)(target, s_t, at, valid, chunk);
        OV(d) c = OV(load)(conf, s_c, at, valid, chunk);
        OV(d) l1mc = OV_SPLAT(st->l1mc_last);
        OV(i) want;
        if (!OV_ALL(OV_EQ(c, OV_SPLAT(st->c_last)))) {
            for (lane = 0; lane < OV_LANES; lane++) {
                double cl = OV_LANE(c, lane);
                if (!(cl == st->c_last)) {
                    st->c_last = cl;
                    st->l1mc_last = log1p(-cl);
                }
                OV_SET_LANE(l1mc, lane, st->l1mc_last);
            }
        }
        st->alpha[g] = (OV_SPLAT(low) - m) / sg;
        st->beta[g] = (OV_SPLAT(high) - m) / sg;
        st->z[g] = (t - m) / sg;
        st->l1mc[g] = l1mc;
        /* _fast.pyx's _plain, and a valid confidence and target inside the range */
        want = OV_AND(OV_AND(OV_GT(c, OV_SPLAT(0.0)), OV_LT(c, OV_SPLAT(1.0))),
                      OV_AND(OV_GT(t, OV_SPLAT(low)), OV_LT(t, OV_SPLAT(high))));
        want = OV_AND(want, OV_AND(OV_LE(OV_ABS(m), OV_SPLAT(OPTSCALE_2_100)),
                                   OV_AND(OV_GE(sg, OV_SPLAT(OPTSCALE_2_M60)),
                                          OV_LE(sg, OV_SPLAT(OPTSCALE_2_100)))));
        want = OV_AND(want, OV_AND(OV_GE(OV_SPLAT(high - low), OV_SPLAT(OPTSCALE_2_M60) * sg),
                                   OV_AND(OV_LE(OV_ABS(st->alpha[g]), OV_SPLAT(OPTSCALE_2_60)),
                                          OV_LE(OV_ABS(st->beta[g]), OV_SPLAT(OPTSCALE_2_60)))));
        st->ok[g] = OV_AND(want, OV(central)(&st->alpha[g], &st->beta[g], &st->z[g]));
    }
    for (g = 0; g < groups; g++) {  /* the tails */
        st->ta[g] = OV(tail)(OV_ABS(st->alpha[g]), 6.0, &st->ea[g]);
        st->tz[g] = OV(tail)(OV_ABS(st->z[g]), 3.0, &st->ez[g]);
        st->tb[g] = OV(tail)(OV_ABS(st->beta[g]), 6.0, &st->eb[g]);
    }
    for (g = 0; g < groups; g++) {  /* the masses */
        st->ok[g] = OV(masses)(st->ok[g], st->z[g], st->ta[g], st->ea[g], st->tz[g], st->ez[g],
                               st->tb[g], st->eb[g], &st->s[g], &st->f[g], &st->ds[g],
                               &st->size[g]);
    }
    for (g = 0; g < groups; g++) {  /* log F and its error bound */
        st->lf[g] = OV(log1m)(st->s[g]);
        st->dlf[g] = OV(log_f_error)(st->lf[g], st->f[g], st->ds[g]);
    }
    return groups;
}

/* Queries [start, end) of min_samples_probability in double with k = 1 and one low, high,
   n_lo, n_hi for all (the caller has checked those: finite, |low|, |high| <= 2^100, low < high,
   1 <= n_lo <= n_hi): every query the k = 1 fast path proves gets its n, status and achieved
   value; the others are listed in `pending` (their count returned) for the careful path, with
   log(1 - c) in pending_l1mc. Strides are in elements (0 for a broadcast value). */
static OV_TARGET ptrdiff_t OV(block)(
        ptrdiff_t start, ptrdiff_t end, const double* mu, ptrdiff_t s_mu, const double* sigma,
        ptrdiff_t s_sigma, const double* target, ptrdiff_t s_t, const double* conf,
        ptrdiff_t s_c, double low, double high, double n_lo, double n_hi, int* out_n,
        int* out_status, double* out_achieved, ptrdiff_t* pending, double* pending_l1mc) {
    OV(chunk_t) st;
    ptrdiff_t chunk, count = 0;
    st.c_last = NAN;
    st.l1mc_last = NAN;
    for (chunk = start; chunk < end; chunk += OPTSCALE_CHUNK) {
        ptrdiff_t todo = end - chunk < OPTSCALE_CHUNK ? end - chunk : OPTSCALE_CHUNK;
        int groups = OV(chunk_logs)(&st, chunk, todo, mu, s_mu, sigma, s_sigma, target, s_t,
                                    conf, s_c, low, high), g, lane;
        for (g = 0; g < groups; g++) {  /* the decision */
            OV(d) n, achieved;
            OV(i) done, infeasible;
            int lanes = todo - g * OV_LANES < OV_LANES ? (int)(todo - g * OV_LANES) : OV_LANES;
            ptrdiff_t at = chunk + g * OV_LANES;
            done = OV(decide)(st.ok[g], st.lf[g], st.dlf[g], st.size[g], st.l1mc[g],
                              OV_SPLAT(n_lo), OV_SPLAT(n_hi), &n, &infeasible, &achieved);
            if (lanes == OV_LANES && OV_ALL(done)) {
                OV(store)(out_n + at, out_status + at, out_achieved + at, n,
                          OV_SELECT(infeasible, OV_SPLAT(2.0), OV_SPLAT(0.0)), achieved);
                continue;
            }
            for (lane = 0; lane < lanes; lane++) {
                if (OV_LANE(done, lane)) {
                    out_n[at + lane] = (int)OV_LANE(n, lane);
                    out_status[at + lane] = OV_LANE(infeasible, lane) ? 2 : 0;
                    out_achieved[at + lane] = OV_LANE(achieved, lane);
                } else {
                    pending_l1mc[count] = OV_LANE(st.l1mc[g], lane);
                    pending[count++] = at + lane;
                }
            }
        }
    }
    return count;
}

/* For k of N: queries [start, end) as OV(block) takes them, into per-query arrays (from 0):
   ok (1 where the bound applies), log F, log S and their error bounds, the masses' log size,
   and log(1 - c). */
static OV_TARGET void OV(logs_block)(
        ptrdiff_t start, ptrdiff_t end, const double* mu, ptrdiff_t s_mu, const double* sigma,
        ptrdiff_t s_sigma, const double* target, ptrdiff_t s_t, const double* conf,
        ptrdiff_t s_c, double low, double high, char* ok, double* lf, double* dlf, double* ls,
        double* dls, double* size, double* l1mc) {
    OV(chunk_t) st;
    ptrdiff_t chunk;
    st.c_last = NAN;
    st.l1mc_last = NAN;
    for (chunk = start; chunk < end; chunk += OPTSCALE_CHUNK) {
        ptrdiff_t todo = end - chunk < OPTSCALE_CHUNK ? end - chunk : OPTSCALE_CHUNK;
        int groups = OV(chunk_logs)(&st, chunk, todo, mu, s_mu, sigma, s_sigma, target, s_t,
                                    conf, s_c, low, high), g, lane;
        for (g = 0; g < groups; g++) {
            for (lane = 0; lane < OV_LANES && g * OV_LANES + lane < todo; lane++) {
                ptrdiff_t i = chunk - start + g * OV_LANES + lane;
                double sl = OV_LANE(st.s[g], lane), l = -INFINITY, d = INFINITY;
                if (sl > 0.0) {  /* as OV(fast_logs) with with_sf */
                    l = log(sl);
                    d = 1.01 * OV_LANE(st.ds[g], lane) / sl + 2.0 * DBL_EPSILON * fabs(l);
                }
                ok[i] = OV_LANE(st.ok[g], lane) != 0;
                lf[i] = OV_LANE(st.lf[g], lane);
                dlf[i] = OV_LANE(st.dlf[g], lane);
                ls[i] = l;
                dls[i] = d;
                size[i] = OV_LANE(st.size[g], lane);
                l1mc[i] = OV_LANE(st.l1mc[g], lane);
            }
        }
    }
}
