/* The fast path of the Cython kernels (_fast.pyx) in C: optscale/_fast_lanes.h instantiated
   for one lane (ov1_*, any C compiler) and, with GCC or Clang vector extensions, for two
   (ov2_*: an SSE2 register, the baseline of x86-64, or a NEON one on arm64) and on x86-64 for
   four (ov4_*: AVX2, compiled for that target alone and taken where the processor has it).
   optscale_best_block runs the k = 1 bulk with the widest, optscale_logs_block the logs of the
   k-of-N bulk. */

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

#define OPTSCALE_CHUNK 64  /* queries per stage of the block kernels */
/* powers of two (decimal: hexadecimal float literals are not in every C compiler) */
#define OPTSCALE_2_100 1.2676506002282294e30
#define OPTSCALE_2_60 1.152921504606847e18
#define OPTSCALE_2_M60 8.673617379884035e-19
#define OPTSCALE_2_M41 4.547473508864641e-13

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
#define OV_TARGET
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
#define OV_ALL(m) ((m) != 0)
#define OV_N32 int
#define OV_TO_I32(x) ((int)(x))
#include "_fast_lanes.h"
#undef OV_ALL
#undef OV_N32
#undef OV_TO_I32
#undef OV_D
#undef OV_I
#undef OV_LANES
#undef OV
#undef OV_TARGET
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
/* ---- vectors of OV_LANES doubles (OV_VD, with OV_VI / OV_VU its int64 / uint64 twins):
   comparisons give 0 / -1 lanes; splats subtract a zero vector (x - 0 is x, -0 included) */
#define OV_D OV_VD
#define OV_I OV_VI
#define OV_SPLAT(x) ((double)(x) - (OV_VD){0})
#define OV_SPLAT_I(x) ((int64_t)(x) - (OV_VI){0})
#define OV_AS_I(x) ((OV_VI)(x))
#define OV_AS_D(x) ((OV_VD)(x))
#define OV_SHL45(x) ((OV_VI)((OV_VU)(x) << 45))
#define OV_LT(a, b) ((OV_VI)((a) < (b)))
#define OV_LE(a, b) ((OV_VI)((a) <= (b)))
#define OV_GT(a, b) ((OV_VI)((a) > (b)))
#define OV_GE(a, b) ((OV_VI)((a) >= (b)))
#define OV_EQ(a, b) ((OV_VI)((a) == (b)))
#define OV_AND(a, b) ((a) & (b))
#define OV_OR(a, b) ((a) | (b))
#define OV_NOT(a) (~(a))
#define OV_SELECT(m, a, b) ((OV_VD)((OV_AS_I(a) & (m)) | (OV_AS_I(b) & ~(m))))
#define OV_SELECT_I(m, a, b) (((a) & (m)) | ((b) & ~(m)))
#define OV_MAX(a, b) OV_SELECT(OV_GT((a), (b)), (a), (b))
#define OV_MIN(a, b) OV_SELECT(OV_LT((a), (b)), (a), (b))
#define OV_ABS(x) ((OV_VD)(OV_AS_I(x) & OV_SPLAT_I(INT64_MAX)))
#define OV_GATHER(table, idx) __extension__({ \
    OV_VI idx_ = (idx); OV_VD out_; int lane_; \
    for (lane_ = 0; lane_ < OV_LANES; lane_++) out_[lane_] = (table)[idx_[lane_]]; \
    out_; })
#define OV_LANE(v, lane) ((v)[lane])
#define OV_SET_LANE(v, lane, x) ((v)[lane] = (x))
#define OV_TO_I32(x) __builtin_convertvector((x), OV_VN32)

typedef double optscale_v2d __attribute__((vector_size(16)));
typedef int64_t optscale_v2i __attribute__((vector_size(16)));
typedef uint64_t optscale_v2u __attribute__((vector_size(16)));
typedef int optscale_v2n __attribute__((vector_size(8)));
#define OV_VD optscale_v2d
#define OV_VI optscale_v2i
#define OV_VU optscale_v2u
#define OV_VN32 optscale_v2n
#define OV_N32 optscale_v2n
#define OV_ALL(m) ((m)[0] & (m)[1])
#define OV_LANES 2
#define OV(name) ov2_##name
#define OV_TARGET
#include "_fast_lanes.h"
#undef OV_VD
#undef OV_VI
#undef OV_VU
#undef OV_VN32
#undef OV_N32
#undef OV_ALL
#undef OV_LANES
#undef OV
#undef OV_TARGET
#define OPTSCALE_HAVE_V2 1

#if defined(__x86_64__) && (defined(__clang__) || __GNUC__ >= 6)
/* 32-byte vectors: their functions are always inlined into ov4_block, compiled for AVX2 */
#pragma GCC diagnostic ignored "-Wpsabi"
typedef double optscale_v4d __attribute__((vector_size(32)));
typedef int64_t optscale_v4i __attribute__((vector_size(32)));
typedef uint64_t optscale_v4u __attribute__((vector_size(32)));
typedef int optscale_v4n __attribute__((vector_size(16)));
#define OV_VD optscale_v4d
#define OV_VI optscale_v4i
#define OV_VU optscale_v4u
#define OV_VN32 optscale_v4n
#define OV_N32 optscale_v4n
#define OV_ALL(m) ((m)[0] & (m)[1] & (m)[2] & (m)[3])
#define OV_LANES 4
#define OV(name) ov4_##name
#define OV_TARGET __attribute__((target("avx2")))
#include "_fast_lanes.h"
#undef OV_VD
#undef OV_VI
#undef OV_VU
#undef OV_VN32
#undef OV_N32
#undef OV_ALL
#undef OV_LANES
#undef OV
#undef OV_TARGET
#define OPTSCALE_HAVE_V4 1
#endif
#endif

/* lanes of the block kernel: the widest the processor runs (optscale_set_lanes(0)), or 1, 2,
   4 (where built) for the tests, which compare them */
static int optscale_lanes = 1;

static int optscale_set_lanes(int lanes) {
    int widest = 1;
#ifdef OPTSCALE_HAVE_V2
    widest = 2;
#endif
#ifdef OPTSCALE_HAVE_V4
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) widest = 4;
#endif
    if (lanes == 0 || lanes > widest) lanes = widest;
    if (lanes == 3) lanes = 2;
    optscale_lanes = lanes;
    return lanes;
}

static ptrdiff_t optscale_best_block(
        ptrdiff_t start, ptrdiff_t end, const double* mu, ptrdiff_t s_mu, const double* sigma,
        ptrdiff_t s_sigma, const double* target, ptrdiff_t s_t, const double* conf,
        ptrdiff_t s_c, double low, double high, double n_lo, double n_hi, int* out_n,
        int* out_status, double* out_achieved, ptrdiff_t* pending, double* pending_l1mc) {
#ifdef OPTSCALE_HAVE_V4
    if (optscale_lanes == 4)
        return ov4_block(start, end, mu, s_mu, sigma, s_sigma, target, s_t, conf, s_c, low,
                         high, n_lo, n_hi, out_n, out_status, out_achieved, pending,
                         pending_l1mc);
#endif
#ifdef OPTSCALE_HAVE_V2
    if (optscale_lanes == 2)
        return ov2_block(start, end, mu, s_mu, sigma, s_sigma, target, s_t, conf, s_c, low,
                         high, n_lo, n_hi, out_n, out_status, out_achieved, pending,
                         pending_l1mc);
#endif
    return ov1_block(start, end, mu, s_mu, sigma, s_sigma, target, s_t, conf, s_c, low, high,
                     n_lo, n_hi, out_n, out_status, out_achieved, pending, pending_l1mc);
}

static void optscale_logs_block(
        ptrdiff_t start, ptrdiff_t end, const double* mu, ptrdiff_t s_mu, const double* sigma,
        ptrdiff_t s_sigma, const double* target, ptrdiff_t s_t, const double* conf,
        ptrdiff_t s_c, double low, double high, char* ok, double* lf, double* dlf, double* ls,
        double* dls, double* size, double* l1mc) {
#ifdef OPTSCALE_HAVE_V4
    if (optscale_lanes == 4) {
        ov4_logs_block(start, end, mu, s_mu, sigma, s_sigma, target, s_t, conf, s_c, low, high,
                       ok, lf, dlf, ls, dls, size, l1mc);
        return;
    }
#endif
#ifdef OPTSCALE_HAVE_V2
    if (optscale_lanes == 2) {
        ov2_logs_block(start, end, mu, s_mu, sigma, s_sigma, target, s_t, conf, s_c, low, high,
                       ok, lf, dlf, ls, dls, size, l1mc);
        return;
    }
#endif
    ov1_logs_block(start, end, mu, s_mu, sigma, s_sigma, target, s_t, conf, s_c, low, high, ok,
                   lf, dlf, ls, dls, size, l1mc);
}

#endif
