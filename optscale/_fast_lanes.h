/* The solvers' fast path (the plain formula with its error bound, optscale/_fastpath.py) on
   OV_LANES doubles at once. Included by _fast_kernel.h once per lane count, with OV(name)
   naming the instantiation and OV_D / OV_I its double and int64 types; every lane performs the
   same IEEE operations in the same order as the one-lane instantiation, so all give the same
   bits. Lanes outside a function's domain must be replaced by harmless values before table
   lookups (see OV(sanitize)): results there are selected away. */

typedef OV_D OV(d);
typedef OV_I OV(i);

/* e^x for -708 <= x <= 0 (below: e^-708), and e^x - 1 for -ln 2 <= x <= 0 (where
   2^(k/128) is 1/2 or 1 and hi - 1 is exact). 2^(k/128) = 2^((k - j)/128) (hi[j] + lo[j]),
   e^r - 1 by Taylor's degree 5 for |r| <= ln 2/256 (remainder < 1e-18 relative). */
OV_INLINE OV(d) OV(exp_parts)(OV(d) x, OV(d)* big, OV(d)* small) {
    OV(d) kd, r, p, scale;
    OV(i) k, j;
    x = OV_MAX(x, OV_SPLAT(-708.0));
    kd = x * OV_SPLAT(optscale_exp_inv_ln2_n) + OV_SPLAT(6755399441055744.0);
    k = OV_AS_I(kd) - OV_AS_I(OV_SPLAT(6755399441055744.0));
    kd = kd - OV_SPLAT(6755399441055744.0);
    r = (x - kd * OV_SPLAT(optscale_exp_ln2_hi_n)) - kd * OV_SPLAT(optscale_exp_ln2_lo_n);
    j = k & 127;
    p = r + r * r * (OV_SPLAT(0.5) + r * (OV_SPLAT(1.0 / 6.0) + r * (OV_SPLAT(1.0 / 24.0)
                                                                    + r * OV_SPLAT(1.0 / 120.0))));
    /* 2^((k - j)/128): a power of 2 in the normal range for x >= -708, so the products are
       exact but for lo's (which may be subnormal, far below the result's ulp) */
    scale = OV_AS_D(OV_SHL45(k - j) + OV_AS_I(OV_SPLAT(1.0)));
    *big = OV_GATHER(optscale_exp2_hi, j) * scale;
    *small = OV_GATHER(optscale_exp2_lo, j) * scale + *big * p;
    return x;
}

OV_INLINE OV(d) OV(exp)(OV(d) x) {
    OV(d) big, small;
    OV(exp_parts)(x, &big, &small);
    return big + small;
}

/* 1 - e^x for x <= 0: 1 - e^x below -ln 2 (no cancellation), -(e^x - 1) above */
OV_INLINE OV(d) OV(one_minus_exp)(OV(d) x) {
    OV(d) big, small;
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
    /* the piece from the bits: of x + 1 below 1 (its top mantissa bits are floor(8 x), up to
       a rounding of x + 1 onto the next piece's edge, where the next polynomial holds as well),
       of x from 1 on (exponent and top mantissa bits) */
    OV(i) b_small = OV_AS_I(xs + OV_SPLAT(1.0));
    OV(i) b = OV_AS_I(xs);
    OV(i) k_small = (b_small >> (52 - 3)) & 7;
    OV(i) k_big = OPTSCALE_TAIL_UNIFORM + ((b >> 52) - 1023) * (1 << OPTSCALE_TAIL_SPLIT)
                  + ((b >> (52 - OPTSCALE_TAIL_SPLIT)) & ((1 << OPTSCALE_TAIL_SPLIT) - 1));
    OV(i) k = OV_SELECT_I(OV_LT(xs, OV_SPLAT(1.0)), k_small, k_big);
    OV(i) c = k * OPTSCALE_TAIL_TERMS;
    OV(d) t = xs - OV_GATHER(optscale_tail_centre, k);
    OV(d) g = ((((((((OV_GATHER(optscale_tail_coef + 8, c) * t
                      + OV_GATHER(optscale_tail_coef + 7, c)) * t
                     + OV_GATHER(optscale_tail_coef + 6, c)) * t
                    + OV_GATHER(optscale_tail_coef + 5, c)) * t
                   + OV_GATHER(optscale_tail_coef + 4, c)) * t
                  + OV_GATHER(optscale_tail_coef + 3, c)) * t
                 + OV_GATHER(optscale_tail_coef + 2, c)) * t
                + OV_GATHER(optscale_tail_coef + 1, c)) * t
               + OV_GATHER(optscale_tail_coef, c));
    OV(d) tv = OV_SELECT(inside, OV(exp)(OV_SPLAT(-0.5) * (xs * xs)) * g, OV_SPLAT(0.0));
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

/* log(1 - s) for 0 <= s < 1 within 2 eps relative: the series -s (1 + s/2 + ... + s^5/6)
   below 2^-9 (remainder under s^6/7 < 2^-57), libm's log1p from there. */
OV_INLINE OV(d) OV(log1m)(OV(d) s) {
    OV(d) series = -s * (OV_SPLAT(1.0) + s * (OV_SPLAT(0.5) + s * (OV_SPLAT(1.0 / 3.0) + s * (
        OV_SPLAT(0.25) + s * (OV_SPLAT(0.2) + s * OV_SPLAT(1.0 / 6.0))))));
    int lane;
    for (lane = 0; lane < OV_LANES; lane++) {
        if (OV_LANE(s, lane) >= 0.001953125) {
            OV_SET_LANE(series, lane, log1p(-OV_LANE(s, lane)));
        }
    }
    return series;
}

/* The plain formula's log F (and log S where with_sf) at the standardized target z of central
   ranges (alpha < 0 < beta), with absolute error bounds (optscale/_fastpath.py); the result
   is the lanes where the bound applies. log_size bounds |log| of both masses. */
OV_INLINE OV(i) OV(fast_logs)(OV(d) alpha, OV(d) beta, OV(d) z, int with_sf, OV(d)* lf,
                                  OV(d)* dlf, OV(d)* ls, OV(d)* dls, OV(d)* log_size) {
    const OV(d) eps = OV_SPLAT(DBL_EPSILON);
    OV(i) central = OV_AND(OV_LT(alpha, OV_SPLAT(0.0)), OV_GT(beta, OV_SPLAT(0.0)));
    OV(i) right = OV_GT(z, OV_SPLAT(0.0)), ok;
    OV(d) ta, tz, tb, ea, ez, eb, near, far, d_near, d_far, lower, upper, dl, du, total, inv;
    OV(d) s, f, ds;
    alpha = OV_SELECT(central, alpha, OV_SPLAT(-1.0));
    beta = OV_SELECT(central, beta, OV_SPLAT(1.0));
    z = OV_SELECT(central, z, OV_SPLAT(0.0));
    ta = OV(tail)(OV_ABS(alpha), 6.0, &ea);
    tz = OV(tail)(OV_ABS(z), 3.0, &ez);
    tb = OV(tail)(OV_ABS(beta), 6.0, &eb);
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
    s = OV_SELECT(ok, s, OV_SPLAT(0.5));
    *lf = OV(log1m)(s);
    *dlf = OV_SPLAT(1.01) * ds / f + OV_SPLAT(2.0 * DBL_EPSILON) * OV_ABS(*lf);
    *log_size = OV_MAX(OV(exponent_size)(OV_SELECT(ok, lower, OV_SPLAT(1.0))),
                       OV(exponent_size)(OV_SELECT(OV_AND(ok, OV_GT(upper, OV_SPLAT(0.0))),
                                                   upper, OV_SPLAT(1.0))))
                * OV_SPLAT(0.6931471805599453);
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

/* The k = 1 fast path of double queries: for lanes in `want` (low < t < high, plain
   parameters, valid confidence, 1 <= n_lo <= n_hi), n, the infeasible flag and the achieved
   probability, where the bound proves them the careful path's; the result is those lanes.
   The same arithmetic as _fast.pyx's _fast_best in double. */
OV_INLINE OV(i) OV(best)(OV(i) want, OV(d) alpha, OV(d) beta, OV(d) z, OV(d) l1mc,
                             OV(d) n_lo, OV(d) n_hi, OV(d)* n_out, OV(i)* infeasible,
                             OV(d)* achieved) {
    const double eps = DBL_EPSILON;
    OV(d) lf, dlf, ls, dls, log_size, a, big_b, d, n, m, q, nf;
    OV(i) ok, beyond, exact;
    ok = OV_AND(want, OV(fast_logs)(alpha, beta, z, 0, &lf, &dlf, &ls, &dls, &log_size));
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
    d = OV_SPLAT(2.0) * dlf + (OV_SPLAT(eps) * OV_ABS(lf)) * ((OV_SPLAT(16.0) + OV_SPLAT(16.0)
                                                                 * log_size) + OV_SPLAT(8.0));
    a = -lf;
    big_b = -l1mc;
    beyond = OV_GT(n, n_hi);
    m = OV_MAX(n, n_lo);
    exact = OV_SELECT_I(
        beyond, OV_LT(n_hi * (a + d), big_b),
        OV_AND(OV_NOT(OV_LT(m * (a - d), big_b)),
               OV_AND(OV_OR(OV_LE(m, n_lo), OV_LT((m - OV_SPLAT(1.0)) * (a + d), big_b)),
                      OV_LE(n, OV_SPLAT(2251799813685248.0)))));
    exact = OV_AND(ok, OV_AND(exact, OV_NOT(OV_GT(d, a * OV_SPLAT(0x1p-41)))));
    nf = OV_SELECT(beyond, n_hi, m);
    *n_out = nf;
    *infeasible = beyond;
    *achieved = OV(one_minus_exp)(nf * lf);
    return exact;
}
