/* The fast path of the Cython kernels (_fast.pyx) in C: optscale/_fast_lanes.h instantiated
   for one lane (ov1_*, any C compiler) and, with GCC or Clang vector extensions, for two
   (ov2_*: one SSE2 register on any x86-64 build, a NEON one on arm64). The block kernel below
   runs the k = 1 bulk two queries at a time. */

#ifndef OPTSCALE_FAST_KERNEL_H
#define OPTSCALE_FAST_KERNEL_H

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "_fast_tables.h"

#if OPTSCALE_TAIL_TERMS != 9
#error "_fast_lanes.h evaluates degree-8 tail polynomials"
#endif

#if defined(__GNUC__)
#define OV_INLINE static inline __attribute__((always_inline))
#else
#define OV_INLINE static inline
#endif

static inline int64_t optscale_as_i(double x) { int64_t b; memcpy(&b, &x, sizeof b); return b; }
static inline double optscale_as_d(int64_t b) { double x; memcpy(&x, &b, sizeof x); return x; }

/* ---- one lane: masks are 0 / -1 int64s, as vector comparisons give */
#define OV_D double
#define OV_I int64_t
#define OV_LANES 1
#define OV(name) ov1_##name
#define OV_SPLAT(x) ((double)(x))
#define OV_SPLAT_I(x) ((int64_t)(x))
#define OV_AS_I(x) optscale_as_i(x)
#define OV_AS_D(x) optscale_as_d(x)
#define OV_SHL45(x) ((int64_t)((uint64_t)(x) << 45))
#define OV_LT(a, b) (-(int64_t)((a) < (b)))
#define OV_LE(a, b) (-(int64_t)((a) <= (b)))
#define OV_GT(a, b) (-(int64_t)((a) > (b)))
#define OV_GE(a, b) (-(int64_t)((a) >= (b)))
#define OV_EQ(a, b) (-(int64_t)((a) == (b)))
#define OV_AND(a, b) ((a) & (b))
#define OV_OR(a, b) ((a) | (b))
#define OV_NOT(a) (~(a))
#define OV_SELECT(m, a, b) ((m) ? (a) : (b))
#define OV_SELECT_I(m, a, b) ((m) ? (a) : (b))
#define OV_MAX(a, b) ((a) > (b) ? (a) : (b))
#define OV_MIN(a, b) ((a) < (b) ? (a) : (b))
#define OV_ABS(x) fabs(x)
#define OV_GATHER(table, idx) ((table)[idx])
#define OV_LANE(v, lane) (v)
#define OV_SET_LANE(v, lane, x) ((v) = (x))
#include "_fast_lanes.h"
#undef OV_D
#undef OV_I
#undef OV_LANES
#undef OV
#undef OV_SPLAT
#undef OV_SPLAT_I
#undef OV_AS_I
#undef OV_AS_D
#undef OV_SHL45

#undef OV_LT
#undef OV_LE
#undef OV_GT
#undef OV_GE
#undef OV_EQ
#undef OV_AND
#undef OV_OR
#undef OV_NOT
#undef OV_SELECT
#undef OV_SELECT_I
#undef OV_MAX
#undef OV_MIN
#undef OV_ABS
#undef OV_GATHER
#undef OV_LANE
#undef OV_SET_LANE

#if defined(__GNUC__) && !defined(OPTSCALE_NO_VECTOR_KERNEL)
/* two lanes: one SSE2 (or NEON) register, the baseline of every x86-64 (arm64) build */
#define OPTSCALE_LANES 2
typedef double optscale_v2d __attribute__((vector_size(16)));
typedef int64_t optscale_v2i __attribute__((vector_size(16)));
typedef uint64_t optscale_v2u __attribute__((vector_size(16)));
static inline optscale_v2d optscale_v2d_splat(double x) { return (optscale_v2d){x, x}; }
static inline optscale_v2i optscale_v2i_splat(int64_t x) { return (optscale_v2i){x, x}; }
static inline optscale_v2d optscale_v2_select(optscale_v2i m, optscale_v2d a, optscale_v2d b) {
    return (optscale_v2d)(((optscale_v2i)a & m) | ((optscale_v2i)b & ~m));
}
static inline optscale_v2d optscale_v2_abs(optscale_v2d x) {
    return (optscale_v2d)((optscale_v2i)x & optscale_v2i_splat(INT64_MAX));
}
static inline optscale_v2d optscale_v2_gather(const double* table, optscale_v2i idx) {
    return (optscale_v2d){table[idx[0]], table[idx[1]]};
}
#define OV_D optscale_v2d
#define OV_I optscale_v2i
#define OV_LANES 2
#define OV(name) ov2_##name
#define OV_SPLAT(x) optscale_v2d_splat((double)(x))
#define OV_SPLAT_I(x) optscale_v2i_splat((int64_t)(x))
#define OV_AS_I(x) ((optscale_v2i)(x))
#define OV_AS_D(x) ((optscale_v2d)(x))
#define OV_SHL45(x) ((optscale_v2i)((optscale_v2u)(x) << 45))
#define OV_LT(a, b) ((optscale_v2i)((a) < (b)))
#define OV_LE(a, b) ((optscale_v2i)((a) <= (b)))
#define OV_GT(a, b) ((optscale_v2i)((a) > (b)))
#define OV_GE(a, b) ((optscale_v2i)((a) >= (b)))
#define OV_EQ(a, b) ((optscale_v2i)((a) == (b)))
#define OV_AND(a, b) ((a) & (b))
#define OV_OR(a, b) ((a) | (b))
#define OV_NOT(a) (~(a))
#define OV_SELECT(m, a, b) optscale_v2_select((m), (a), (b))
#define OV_SELECT_I(m, a, b) (((a) & (m)) | ((b) & ~(m)))
#define OV_MAX(a, b) optscale_v2_select(OV_GT((a), (b)), (a), (b))
#define OV_MIN(a, b) optscale_v2_select(OV_LT((a), (b)), (a), (b))
#define OV_ABS(x) optscale_v2_abs(x)
#define OV_GATHER(table, idx) optscale_v2_gather((table), (idx))
#define OV_LANE(v, lane) ((v)[lane])
#define OV_SET_LANE(v, lane, x) ((v)[lane] = (x))
#include "_fast_lanes.h"
#define OPTSCALE_V(name) ov2_##name
#else
#define OPTSCALE_LANES 1
#define OPTSCALE_V(name) ov1_##name
#endif

/* Queries [start, end) of min_samples_probability in double with k = 1 and one low, high,
   n_lo, n_hi for all (the caller has checked those: finite, |low|, |high| <= 2^100, low < high,
   1 <= n_lo <= n_hi): every query the k = 1 fast path proves gets its n, status and achieved
   value; the others are listed in `pending` (their count returned) for the careful path.
   Strides are in elements (0 for a broadcast value). log(1 - c) is taken once per run of
   equal confidences (libm's log1p, as _fast.pyx's _log1m) and returned for each pending query
   in pending_l1mc. */
static inline ptrdiff_t optscale_best_block(
        ptrdiff_t start, ptrdiff_t end, const double* mu, ptrdiff_t s_mu, const double* sigma,
        ptrdiff_t s_sigma, const double* target, ptrdiff_t s_t, const double* conf,
        ptrdiff_t s_c, double low, double high, double n_lo, double n_hi, int* out_n,
        int* out_status, double* out_achieved, ptrdiff_t* pending, double* pending_l1mc) {
    const double big = 0x1p100, wide = 0x1p60, narrow = 0x1p-60;
    double c_last = NAN, l1mc_last = NAN;
    ptrdiff_t i, count = 0;
    for (i = start; i < end; i += OPTSCALE_LANES) {
        OPTSCALE_V(d) m, sg, t, c, l1mc, alpha, beta, z, n, achieved;
        OPTSCALE_V(i) want, done, infeasible;
        int lane, lanes = end - i < OPTSCALE_LANES ? (int)(end - i) : OPTSCALE_LANES;
        for (lane = 0; lane < OPTSCALE_LANES; lane++) {
            /* a short last group repeats its first query (its results are not written) */
            ptrdiff_t at = lane < lanes ? i + lane : i;
            double cl = conf[at * s_c];
#if OPTSCALE_LANES == 1
            m = mu[at * s_mu]; sg = sigma[at * s_sigma]; t = target[at * s_t]; c = cl;
#else
            m[lane] = mu[at * s_mu]; sg[lane] = sigma[at * s_sigma]; t[lane] = target[at * s_t];
            c[lane] = cl;
#endif
            if (!(cl == c_last)) {
                c_last = cl;
                l1mc_last = log1p(-cl);
            }
#if OPTSCALE_LANES == 1
            l1mc = l1mc_last;
#else
            l1mc[lane] = l1mc_last;
#endif
        }
        alpha = (low - m) / sg;
        beta = (high - m) / sg;
#if OPTSCALE_LANES == 1
        z = (t - m) / sg;
        want = -(int64_t)(c > 0.0 && c < 1.0 && t > low && t < high && fabs(m) <= big
                          && sg >= narrow && sg <= big && high - low >= narrow * sg
                          && fabs(alpha) <= wide && fabs(beta) <= wide);
        done = ov1_best(want, alpha, beta, z, l1mc, n_lo, n_hi, &n, &infeasible, &achieved);
#else
        z = (t - m) / sg;
        want = (optscale_v2i)(c > 0.0) & (optscale_v2i)(c < 1.0) & (optscale_v2i)(t > low)
               & (optscale_v2i)(t < high) & (optscale_v2i)(optscale_v2_abs(m) <= big)
               & (optscale_v2i)(sg >= narrow) & (optscale_v2i)(sg <= big)
               & (optscale_v2i)(high - low >= narrow * sg)
               & (optscale_v2i)(optscale_v2_abs(alpha) <= wide) & (optscale_v2i)(optscale_v2_abs(beta) <= wide);
        done = ov2_best(want, alpha, beta, z, l1mc, optscale_v2d_splat(n_lo),
                        optscale_v2d_splat(n_hi), &n, &infeasible, &achieved);
#endif
        for (lane = 0; lane < lanes; lane++) {
#if OPTSCALE_LANES == 1
            if (done) {
                out_n[i] = (int)n;
                out_status[i] = infeasible ? 2 : 0;
                out_achieved[i] = achieved;
            } else {
                pending_l1mc[count] = l1mc;
                pending[count++] = i;
            }
#else
            if (done[lane]) {
                out_n[i + lane] = (int)n[lane];
                out_status[i + lane] = infeasible[lane] ? 2 : 0;
                out_achieved[i + lane] = achieved[lane];
            } else {
                pending_l1mc[count] = l1mc[lane];
                pending[count++] = i + lane;
            }
#endif
        }
    }
    return count;
}

#endif
