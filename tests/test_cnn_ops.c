/* CNN ops of include/kdcl/conv.h (batch normalisation, axpy, ReLU, Adam/AdamW,
 * Nesterov SGD, the u8 NCHW input) against double-precision CPU references.
 *
 * Error model: u = 2^-24 (TU_U). Every float rounding of a basic operation
 * (+ - * and fma) contributes at most u relative; OpenCL 1.2 allows 2 ulp for
 * rsqrt (<= 4u relative), 3 ulp for sqrt (<= 6u) and 2.5 ulp for division
 * (<= 5u), which the bounds use instead of u. A sum of n terms in any order
 * (the kernels' order depends on the work-group size, which the tests do not
 * assume) is off by at most gamma_n * sum |terms| (tu_gamma_n). Each bound is
 * derived below next to its reference, first order in u, and checked with a
 * safety factor SAFE = 1.5 for the dropped higher-order terms; a wrong index,
 * formula or reduction gives errors orders of magnitude above them.
 *
 * The u8 input conversion involves one fma per element and integer index
 * arithmetic, so it is checked bit for bit against fmaf. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdcl/conv.h"
#include "kdcl/kdcl.h"
#include "kdcl/ops.h"
#include "testutil.h"

#define OK(call)                                                          \
    do {                                                                  \
        kdcl_status s_ = (call);                                          \
        ck_assert_msg(s_ == KDCL_OK, "%s: %s", #call, kdcl_last_error()); \
    } while (0)

#define BAD(call, substr)                                                                      \
    do {                                                                                       \
        kdcl_clear_error();                                                                    \
        kdcl_status s_ = (call);                                                               \
        ck_assert_msg(s_ == KDCL_ERR_INVALID_ARG, "%s returned %d", #call, (int)s_);           \
        ck_assert_msg(strstr(kdcl_last_error(), substr), "%s: message '%s' lacks '%s'", #call, \
                      kdcl_last_error(), substr);                                              \
    } while (0)

static const double U = TU_U;
#define SAFE 1.5
#define TINY 1e-35 /* absolute slack for devices that flush denormals */

static kdcl_tensor tn(kdcl_elem type, size_t ndim, size_t d0, size_t d1, size_t d2, size_t d3)
{
    const size_t shape[4] = {d0, d1, d2, d3};
    kdcl_tensor t;
    OK(kdcl_tensor_alloc(tu_ctx, &t, type, ndim, shape));
    return t;
}
static kdcl_tensor t1(kdcl_elem type, size_t n) { return tn(type, 1, n, 0, 0, 0); }
static void up(kdcl_tensor *t, const void *h, size_t n)
{
    OK(kdcl_tensor_upload(tu_ctx, t, 0, n, h));
}
static void down(const kdcl_tensor *t, void *h, size_t n)
{
    OK(kdcl_tensor_download(tu_ctx, t, 0, n, h));
}
static float *fbuf(size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    ck_assert(p);
    return p;
}

/* ================= batch normalisation ================= */

/* Element (b, c, s) of [B, C, S]. */
#define IDX(b, c, s) (((b) * C + (c)) * S + (s))

/* Channel statistics in double and bounds on the kernel's float results.
 * Kernel: mean^ = fl(fl(sum x) * fl(1/n)), var^ = fl(fl(sum fl(fl(x - mean^)^2)) *
 * fl(1/n)), invstd^ = rsqrt(fl(var^ + eps)).
 *  - |mean^ - mean| <= e_mean = gamma_n sum|x| / n + 2u |mean|.
 *  - sum (x - mean^)^2 = n var + n (mean^ - mean)^2 exactly, each square is off
 *    by 3u relative, the sum of these nonnegative terms by gamma_n, the scaling
 *    by 2u: |var^ - var| <= e_var = e_mean^2 + (5u + gamma_n)(var + e_mean^2).
 *  - r = (e_var + u (var + eps + e_var)) / (var + eps) bounds the relative error
 *    of rsqrt's argument, so |invstd^ - invstd| <= invstd ((1 - r)^-1/2 - 1 +
 *    4u (1 - r)^-1/2) (rsqrt: 2 ulp).
 * Evaluation mode uses exact running statistics: e_mean = e_var = 0. */
typedef struct {
    double mean, var, invstd;
    double e_mean, e_var, e_invstd;
} bn_stat;

static void bn_invstd(bn_stat *st, double eps)
{
    const double ve = st->var + eps;
    const double r = (st->e_var + U * (ve + st->e_var)) / ve;
    ck_assert(r < 0.5);
    st->invstd = 1.0 / sqrt(ve);
    st->e_invstd = st->invstd * (1.0 / sqrt(1.0 - r) - 1.0 + 4 * U / sqrt(1.0 - r));
}

static bn_stat bn_ref_stat(const float *x, size_t B, size_t C, size_t S, size_t c, double eps)
{
    const size_t n = B * S;
    double sum = 0, abs_sum = 0;
    for (size_t b = 0; b < B; b++)
        for (size_t s = 0; s < S; s++) {
            sum += x[IDX(b, c, s)];
            abs_sum += fabs(x[IDX(b, c, s)]);
        }
    bn_stat st;
    st.mean = sum / (double)n;
    double q = 0;
    for (size_t b = 0; b < B; b++)
        for (size_t s = 0; s < S; s++) {
            const double d = x[IDX(b, c, s)] - st.mean;
            q += d * d;
        }
    st.var = q / (double)n;
    const double g = tu_gamma_n(n);
    st.e_mean = g * abs_sum / (double)n + 2 * U * fabs(st.mean);
    st.e_var = st.e_mean * st.e_mean + (5 * U + g) * (st.var + st.e_mean * st.e_mean);
    bn_invstd(&st, eps);
    return st;
}

/* y = gamma (x - mean) invstd + beta from the exact statistics, and the bound
 * on the kernel's y^ = fl(fl(fl(x - mean^) * fl(gamma * invstd^)) + beta):
 *   d^ off by e_d = e_mean + u (|d| + e_mean), a^ = fl(gamma invstd^) by
 *   e_a = |gamma| (e_invstd + u (invstd + e_invstd)), the product by
 *   e_p = |a| e_d + (|d| + e_d) e_a + u (|d| + e_d)(|a| + e_a), the sum by
 *   e_p + u (|y| + e_p). */
static double bn_ref_y(float x, float gamma, float beta, const bn_stat *st, double *err)
{
    const double d = (double)x - st->mean, a = (double)gamma * st->invstd;
    const double y = a * d + beta;
    const double e_d = st->e_mean + U * (fabs(d) + st->e_mean);
    const double e_a = fabs(gamma) * (st->e_invstd + U * (st->invstd + st->e_invstd));
    const double e_p = fabs(a) * e_d + (fabs(d) + e_d) * e_a + U * (fabs(d) + e_d) * (fabs(a) + e_a);
    *err = e_p + U * (fabs(y) + e_p);
    return y;
}

/* One running-statistic update r' = fl(fl(fl(1 - m) r) + fl(m * val^)) against
 * (1 - m) r + m val, where the stored r is off by e_r and val^ by e_val:
 *   |1 - m| e_r + 2u |1 - m| (|r| + e_r) + |m| e_val + u |m| (|val| + e_val)
 *   + u (|r'| + ...). */
static double run_ref(double r, double e_r, double val, double e_val, double m, double *err)
{
    const double k = 1.0 - m, out = k * r + m * val;
    const double e = fabs(k) * e_r + 2 * U * fabs(k) * (fabs(r) + e_r) + fabs(m) * e_val +
                     U * fabs(m) * (fabs(val) + e_val);
    *err = e + U * (fabs(out) + e);
    return out;
}

static void check_close(const char *what, const char *ctx, size_t i, double got, double want,
                        double bound)
{
    ck_assert_msg(fabs(got - want) <= SAFE * bound + TINY,
                  "%s: %s[%zu] = %.9g, reference %.12g: error %.3g > bound %.3g", ctx, what, i,
                  got, want, fabs(got - want), SAFE * bound + TINY);
}

/* x of channel c: offset + spread * uniform, with an offset large against the
 * spread for some channels (a one-pass E[x^2] - mean^2 variance would fail the
 * bounds there). */
static void bn_fill(float *x, size_t B, size_t C, size_t S, uint64_t seed)
{
    tu_fill_uniform(x, B * C * S, -1.0f, 1.0f, seed);
    for (size_t b = 0; b < B; b++)
        for (size_t c = 0; c < C; c++) {
            const float off = (c % 3 == 1) ? 60.0f + (float)c : (float)c * 0.25f - 1.0f;
            const float spread = (c % 3 == 2) ? 0.05f : 1.0f + 0.1f * (float)c;
            for (size_t s = 0; s < S; s++) x[IDX(b, c, s)] = off + spread * x[IDX(b, c, s)];
        }
}

static const size_t BN_B[] = {1, 3, 7}, BN_C[] = {1, 3, 17}, BN_S[] = {1, 5, 49};
#define N3 3

/* Training mode over two steps (different x, the running statistics carried
 * over): mean, invstd, y and the running statistics against the double
 * reference; the running statistics' bounds accumulate over the steps. */
static void bn_train_case(size_t B, size_t C, size_t S, float momentum, float eps)
{
    const size_t n = B * C * S;
    char cs[96];
    float *x = fbuf(n), *y = fbuf(n), *gamma = fbuf(C), *beta = fbuf(C), *mean = fbuf(C),
          *invstd = fbuf(C), *rm = fbuf(C), *rv = fbuf(C);
    double *rm_ref = calloc(C, sizeof(double)), *rv_ref = calloc(C, sizeof(double));
    double *rm_err = calloc(C, sizeof(double)), *rv_err = calloc(C, sizeof(double));
    ck_assert(rm_ref && rv_ref && rm_err && rv_err);
    tu_fill_uniform(gamma, C, 0.5f, 2.0f, C + 1);
    tu_fill_uniform(beta, C, -1.0f, 1.0f, C + 2);
    tu_fill_uniform(rm, C, -0.5f, 0.5f, C + 3);
    tu_fill_uniform(rv, C, 0.5f, 1.5f, C + 4);
    for (size_t c = 0; c < C; c++) {
        rm_ref[c] = rm[c];
        rv_ref[c] = rv[c];
    }
    kdcl_tensor tx = tn(KDCL_F32, 3, B, C, S, 0), ty = tn(KDCL_F32, 4, B, C, S, 1);
    kdcl_tensor tg = t1(KDCL_F32, C), tb = t1(KDCL_F32, C), tm = t1(KDCL_F32, C),
                ti = t1(KDCL_F32, C), trm = t1(KDCL_F32, C), trv = t1(KDCL_F32, C);
    up(&tg, gamma, C);
    up(&tb, beta, C);
    up(&trm, rm, C);
    up(&trv, rv, C);
    for (int step = 0; step < 2; step++) {
        snprintf(cs, sizeof cs, "train B=%zu C=%zu S=%zu step %d", B, C, S, step);
        bn_fill(x, B, C, S, 1000 * B + 100 * C + S + (uint64_t)step);
        up(&tx, x, n);
        OK(kdcl_op_batchnorm_forward_train(tu_ctx, B, C, S, &tx, &tg, &tb, &ty, &tm, &ti, &trm,
                                           &trv, momentum, eps));
        down(&ty, y, n);
        down(&tm, mean, C);
        down(&ti, invstd, C);
        down(&trm, rm, C);
        down(&trv, rv, C);
        const double nn = (double)(B * S), unbias = B * S > 1 ? nn / (nn - 1) : 1.0;
        for (size_t c = 0; c < C; c++) {
            const bn_stat st = bn_ref_stat(x, B, C, S, c, eps);
            check_close("mean", cs, c, mean[c], st.mean, st.e_mean);
            check_close("invstd", cs, c, invstd[c], st.invstd, st.e_invstd);
            for (size_t b = 0; b < B; b++)
                for (size_t s = 0; s < S; s++) {
                    double e;
                    const double want = bn_ref_y(x[IDX(b, c, s)], gamma[c], beta[c], &st, &e);
                    check_close("y", cs, IDX(b, c, s), y[IDX(b, c, s)], want, e);
                }
            /* var * unbias: the factor rounded to float (u), the product (u) */
            const double vu = st.var * unbias;
            const double e_vu = unbias * (st.e_var + 2 * U * (st.var + st.e_var));
            double e1, e2;
            rm_ref[c] = run_ref(rm_ref[c], rm_err[c], st.mean, st.e_mean, momentum, &e1);
            rv_ref[c] = run_ref(rv_ref[c], rv_err[c], vu, e_vu, momentum, &e2);
            rm_err[c] = e1;
            rv_err[c] = e2;
            check_close("running_mean", cs, c, rm[c], rm_ref[c], rm_err[c]);
            check_close("running_var", cs, c, rv[c], rv_ref[c], rv_err[c]);
        }
    }
    kdcl_tensor *all[] = {&tx, &ty, &tg, &tb, &tm, &ti, &trm, &trv};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) kdcl_tensor_free(tu_ctx, all[i]);
    void *host[] = {x, y, gamma, beta, mean, invstd, rm, rv, rm_ref, rv_ref, rm_err, rv_err};
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++) free(host[i]);
}

START_TEST(test_bn_train)
{
    for (int i = 0; i < N3; i++)
        for (int j = 0; j < N3; j++)
            for (int k = 0; k < N3; k++)
                bn_train_case(BN_B[i], BN_C[j], BN_S[k], (i + j + k) % 2 ? 0.1f : 0.3f,
                              (i + k) % 2 ? 1e-5f : 1e-3f);
    bn_train_case(2, 2, 3, 1.0f, 0.0f); /* momentum 1: running = batch statistics; eps 0 */
    bn_train_case(4, 3, 2, 0.0f, 1e-5f); /* momentum 0: running statistics unchanged */
}
END_TEST

/* Momentum 0 must leave the running statistics bit for bit, and the NULL
 * running statistics (no update) give the same mean, invstd and y. */
START_TEST(test_bn_train_no_update)
{
    const size_t B = 3, C = 5, S = 7, n = B * C * S;
    float *x = fbuf(n), *y1 = fbuf(n), *y2 = fbuf(n), *r = fbuf(C), *r2 = fbuf(C);
    float m1[5], m2[5], i1[5], i2[5];
    bn_fill(x, B, C, S, 77);
    tu_fill_uniform(r, C, 0.1f, 1.0f, 5);
    kdcl_tensor tx = tn(KDCL_F32, 3, B, C, S, 0), ty = tn(KDCL_F32, 3, B, C, S, 0);
    kdcl_tensor tg = t1(KDCL_F32, C), tb = t1(KDCL_F32, C), tm = t1(KDCL_F32, C),
                ti = t1(KDCL_F32, C), trm = t1(KDCL_F32, C), trv = t1(KDCL_F32, C);
    up(&tx, x, n);
    up(&tg, r, C);
    up(&tb, r, C);
    up(&trm, r, C);
    up(&trv, r, C);
    OK(kdcl_op_batchnorm_forward_train(tu_ctx, B, C, S, &tx, &tg, &tb, &ty, &tm, &ti, &trm, &trv,
                                       0.0f, 1e-5f));
    down(&ty, y1, n);
    down(&tm, m1, C);
    down(&ti, i1, C);
    down(&trm, r2, C);
    ck_assert(memcmp(r, r2, C * sizeof *r) == 0);
    down(&trv, r2, C);
    ck_assert(memcmp(r, r2, C * sizeof *r) == 0);
    OK(kdcl_op_batchnorm_forward_train(tu_ctx, B, C, S, &tx, &tg, &tb, &ty, &tm, &ti, NULL, NULL,
                                       0.5f, 1e-5f));
    down(&ty, y2, n);
    down(&tm, m2, C);
    down(&ti, i2, C);
    ck_assert(memcmp(y1, y2, n * sizeof *y1) == 0);
    ck_assert(memcmp(m1, m2, sizeof m1) == 0 && memcmp(i1, i2, sizeof i1) == 0);
    /* in place: y = x */
    OK(kdcl_op_batchnorm_forward_train(tu_ctx, B, C, S, &tx, &tg, &tb, &tx, &tm, &ti, NULL, NULL,
                                       0.5f, 1e-5f));
    down(&tx, y2, n);
    ck_assert(memcmp(y1, y2, n * sizeof *y1) == 0);
    kdcl_tensor *all[] = {&tx, &ty, &tg, &tb, &tm, &ti, &trm, &trv};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) kdcl_tensor_free(tu_ctx, all[i]);
    free(x);
    free(y1);
    free(y2);
    free(r);
    free(r2);
}
END_TEST

/* Evaluation mode at [B, C, S] against the double reference from the
 * (exact) running statistics. */
static void bn_eval_case(size_t B, size_t C, size_t S, float eps)
{
    const size_t n = B * C * S;
    char cs[96];
    snprintf(cs, sizeof cs, "eval B=%zu C=%zu S=%zu", B, C, S);
    float *x = fbuf(n), *y = fbuf(n), *g = fbuf(C), *be = fbuf(C), *rm = fbuf(C),
          *rv = fbuf(C);
    bn_fill(x, B, C, S, 7 * n + 1);
    tu_fill_uniform(g, C, -2.0f, 2.0f, C + 11);
    tu_fill_uniform(be, C, -1.0f, 1.0f, C + 12);
    tu_fill_uniform(rm, C, -2.0f, 2.0f, C + 13);
    tu_fill_uniform(rv, C, 0.0f, 3.0f, C + 14);
    rv[0] = 0.0f; /* eps alone */
    kdcl_tensor tx = tn(KDCL_F32, 2, B, C * S, 0, 0), ty = t1(KDCL_F32, n + 3);
    kdcl_tensor tg = t1(KDCL_F32, C), tb = t1(KDCL_F32, C), trm = t1(KDCL_F32, C),
                trv = t1(KDCL_F32, C);
    up(&tx, x, n);
    up(&tg, g, C);
    up(&tb, be, C);
    up(&trm, rm, C);
    up(&trv, rv, C);
    OK(kdcl_op_batchnorm_forward_eval(tu_ctx, B, C, S, &tx, &tg, &tb, &trm, &trv, eps,
                                      &ty));
    down(&ty, y, n);
    for (size_t c = 0; c < C; c++) {
        bn_stat st = {rm[c], rv[c], 0, 0, 0, 0};
        bn_invstd(&st, eps);
        for (size_t b = 0; b < B; b++)
            for (size_t s = 0; s < S; s++) {
                double e;
                const double want = bn_ref_y(x[IDX(b, c, s)], g[c], be[c], &st, &e);
                check_close("y", cs, IDX(b, c, s), y[IDX(b, c, s)], want, e);
            }
    }
    kdcl_tensor *all[] = {&tx, &ty, &tg, &tb, &trm, &trv};
    for (size_t t = 0; t < sizeof all / sizeof all[0]; t++)
        kdcl_tensor_free(tu_ctx, all[t]);
    float *host[] = {x, y, g, be, rm, rv};
    for (size_t t = 0; t < sizeof host / sizeof host[0]; t++) free(host[t]);
}

START_TEST(test_bn_eval)
{
    for (int i = 0; i < N3; i++)
        for (int j = 0; j < N3; j++)
            for (int k = 0; k < N3; k++) bn_eval_case(BN_B[i], BN_C[j], BN_S[k], k % 2 ? 1e-5f : 1e-3f);
}
END_TEST

/* Backward reference in double from given statistics (mu, sigma):
 *   dbeta = sum dy, dgamma = sigma sum dy (x - mu), xhat = (x - mu) sigma,
 *   dx = gamma sigma (dy - dbeta / n - xhat dgamma / n).
 * With (mu, sigma) the kernel's float statistics, e_* bound the kernel's
 * rounding: sums gamma_n (plus 2u for the terms dy * fl(x - mu)), the scaling of
 * dgamma u; mb = fl(dbeta fl(1/n)) and mg likewise 2u more; then
 *   t3 = fl(fl(dy - mb^) - fl(xhat^ mg^)), xhat^ 2u relative,
 *   dx = fl(fl(gamma sigma) t3) 2u relative more. */
typedef struct {
    double dbeta, dgamma, e_dbeta, e_dgamma;
    double sum_abs_dy, sum_abs_dyd; /* sum |dy|, sum |dy (x - mu)| */
} bn_bwd_chan;

static bn_bwd_chan bn_ref_bwd_chan(const float *x, const float *dy, size_t B, size_t C, size_t S,
                                   size_t c, double mu, double sigma)
{
    bn_bwd_chan r = {0, 0, 0, 0, 0, 0};
    double sdd = 0;
    for (size_t b = 0; b < B; b++)
        for (size_t s = 0; s < S; s++) {
            const double g = dy[IDX(b, c, s)], d = x[IDX(b, c, s)] - mu;
            r.dbeta += g;
            sdd += g * d;
            r.sum_abs_dy += fabs(g);
            r.sum_abs_dyd += fabs(g * d);
        }
    const double gn = tu_gamma_n(B * S);
    r.dgamma = sigma * sdd;
    r.e_dbeta = gn * r.sum_abs_dy;
    r.e_dgamma = sigma * (2 * U + gn) * r.sum_abs_dyd + U * fabs(r.dgamma);
    return r;
}

static double bn_ref_dx(float x, float dy, float gamma, double mu, double sigma, size_t n,
                        const bn_bwd_chan *r, double *err)
{
    const double xhat = ((double)x - mu) * sigma, mb = r->dbeta / (double)n,
                 mg = r->dgamma / (double)n;
    const double t3 = (double)dy - mb - xhat * mg, k = (double)gamma * sigma, dx = k * t3;
    const double e_mb = r->e_dbeta / (double)n + 2 * U * fabs(mb);
    const double e_mg = r->e_dgamma / (double)n + 2 * U * fabs(mg);
    const double e_t3 = e_mb + U * (fabs(dy) + fabs(mb)) + fabs(xhat) * e_mg +
                        3 * U * fabs(xhat * mg) + U * (fabs(dy - mb) + fabs(xhat * mg));
    *err = fabs(k) * e_t3 + 2 * U * fabs(dx);
    return dx;
}

/* How far the backward's outputs can move when (mu, sigma) are the device's
 * statistics instead of the exact ones (off by at most e_mean, e_invstd):
 *   dgamma: |s' sum dy (x - mu') - s sum dy (x - mu)| <= e_s |sum dy (x - mu)|
 *           + (s + e_s) e_m |sum dy|
 *   xhat:   e_xh = e_s |x - mu| + (s + e_s) e_m
 *   dx:     |gamma| (e_s (|t| + e_t) + s e_t), e_t = e_xh (|mg| + e_mg) + |xhat| e_mg. */
static double bn_sens_dgamma(const bn_stat *st, double sdd_exact, double sdy_exact)
{
    return st->e_invstd * fabs(sdd_exact) + (st->invstd + st->e_invstd) * st->e_mean * fabs(sdy_exact);
}

static void bn_bwd_case(size_t B, size_t C, size_t S, uint64_t seed)
{
    const size_t n = B * C * S, nn = B * S;
    const float eps = 1e-5f;
    char cs[96];
    snprintf(cs, sizeof cs, "backward B=%zu C=%zu S=%zu", B, C, S);
    float *x = fbuf(n), *dy = fbuf(n), *dx = fbuf(n), *g = fbuf(C), *be = fbuf(C),
          *mean = fbuf(C), *invstd = fbuf(C), *dg = fbuf(C), *db = fbuf(C);
    bn_fill(x, B, C, S, seed);
    tu_fill_uniform(dy, n, -1.0f, 1.0f, seed + 1);
    tu_fill_uniform(g, C, 0.5f, 2.0f, seed + 2);
    tu_fill_uniform(be, C, -1.0f, 1.0f, seed + 3);
    kdcl_tensor tx = tn(KDCL_F32, 3, B, C, S, 0), ty = tn(KDCL_F32, 3, B, C, S, 0),
                tdy = tn(KDCL_F32, 3, B, C, S, 0), tdx = tn(KDCL_F32, 3, B, C, S, 0);
    kdcl_tensor tg = t1(KDCL_F32, C), tb = t1(KDCL_F32, C), tm = t1(KDCL_F32, C),
                ti = t1(KDCL_F32, C), tdg = t1(KDCL_F32, C), tdb = t1(KDCL_F32, C);
    up(&tx, x, n);
    up(&tdy, dy, n);
    up(&tg, g, C);
    up(&tb, be, C);
    OK(kdcl_op_batchnorm_forward_train(tu_ctx, B, C, S, &tx, &tg, &tb, &ty, &tm, &ti, NULL, NULL,
                                       0.1f, eps));
    OK(kdcl_op_batchnorm_backward(tu_ctx, B, C, S, &tx, &tdy, &tg, &tm, &ti, &tdx, &tdg, &tdb));
    down(&tm, mean, C);
    down(&ti, invstd, C);
    down(&tdx, dx, n);
    down(&tdg, dg, C);
    down(&tdb, db, C);
    for (size_t c = 0; c < C; c++) {
        /* (1) the op's own contract: the device statistics as given */
        const double mu = mean[c], sg = invstd[c];
        const bn_bwd_chan r = bn_ref_bwd_chan(x, dy, B, C, S, c, mu, sg);
        check_close("dbeta", cs, c, db[c], r.dbeta, r.e_dbeta);
        check_close("dgamma", cs, c, dg[c], r.dgamma, r.e_dgamma);
        /* (2) the analytic gradient of the exact forward: add how far the
         * device statistics may be from the exact ones (forward bounds) */
        const bn_stat st = bn_ref_stat(x, B, C, S, c, eps);
        const bn_bwd_chan ra = bn_ref_bwd_chan(x, dy, B, C, S, c, st.mean, st.invstd);
        const double sens_dg = bn_sens_dgamma(&st, ra.dgamma / st.invstd, ra.dbeta);
        check_close("dgamma (analytic)", cs, c, dg[c], ra.dgamma, r.e_dgamma + sens_dg);
        const double mg = ra.dgamma / (double)nn, e_mg = sens_dg / (double)nn;
        for (size_t b = 0; b < B; b++)
            for (size_t s = 0; s < S; s++) {
                const size_t i = IDX(b, c, s);
                double e1, e2;
                const double want1 = bn_ref_dx(x[i], dy[i], g[c], mu, sg, nn, &r, &e1);
                check_close("dx", cs, i, dx[i], want1, e1);
                const double want2 = bn_ref_dx(x[i], dy[i], g[c], st.mean, st.invstd, nn, &ra, &e2);
                const double xm = fabs((double)x[i] - st.mean), xhat = xm * st.invstd;
                const double e_xh = st.e_invstd * xm + (st.invstd + st.e_invstd) * st.e_mean;
                const double t = fabs(want2) / (fabs(g[c]) * st.invstd);
                const double e_t = e_xh * (fabs(mg) + e_mg) + xhat * e_mg;
                const double sens = fabs(g[c]) * (st.e_invstd * (t + e_t) + st.invstd * e_t);
                check_close("dx (analytic)", cs, i, dx[i], want2, e1 + sens);
            }
    }
    /* dx = NULL: the parameter gradients alone, bit for bit the same */
    float *dg2 = fbuf(C), *db2 = fbuf(C);
    OK(kdcl_tensor_fill(tu_ctx, &tdg, 7.0f));
    OK(kdcl_op_batchnorm_backward(tu_ctx, B, C, S, &tx, &tdy, &tg, &tm, &ti, NULL, &tdg, &tdb));
    down(&tdg, dg2, C);
    down(&tdb, db2, C);
    ck_assert(memcmp(dg, dg2, C * sizeof *dg) == 0 && memcmp(db, db2, C * sizeof *db) == 0);
    free(dg2);
    free(db2);
    kdcl_tensor *all[] = {&tx, &ty, &tdy, &tdx, &tg, &tb, &tm, &ti, &tdg, &tdb};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) kdcl_tensor_free(tu_ctx, all[i]);
    float *host[] = {x, dy, dx, g, be, mean, invstd, dg, db};
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++) free(host[i]);
}

START_TEST(test_bn_backward)
{
    for (int i = 0; i < N3; i++)
        for (int j = 0; j < N3; j++)
            for (int k = 0; k < N3; k++)
                bn_bwd_case(BN_B[i], BN_C[j], BN_S[k], (uint64_t)(100 * i + 10 * j + k));
}
END_TEST

/* Double-precision forward of channel c with exact statistics: sum w * y. */
static double bn_loss_ref(const float *x, const double *xd, const float *w, float gamma, float beta,
                          size_t B, size_t C, size_t S, size_t c, double eps)
{
    double sum = 0, q = 0, L = 0;
    for (size_t b = 0; b < B; b++)
        for (size_t s = 0; s < S; s++) sum += xd ? xd[IDX(b, c, s)] : x[IDX(b, c, s)];
    const double mu = sum / (double)(B * S);
    for (size_t b = 0; b < B; b++)
        for (size_t s = 0; s < S; s++) {
            const double d = (xd ? xd[IDX(b, c, s)] : x[IDX(b, c, s)]) - mu;
            q += d * d;
        }
    const double is = 1.0 / sqrt(q / (double)(B * S) + eps);
    for (size_t b = 0; b < B; b++)
        for (size_t s = 0; s < S; s++)
            L += w[IDX(b, c, s)] *
                 ((double)gamma * ((xd ? xd[IDX(b, c, s)] : x[IDX(b, c, s)]) - mu) * is + beta);
    return L;
}

/* Device-side central differences of L = sum w * y through the float32
 * forward against the backward's dx (dy = w). For element j:
 *   FD = (L^(x + h e_j) - L^(x - h e_j)) / 2h from the device's y, each L^ off by
 *        at most sum |w| e_y (the forward bounds at the perturbed inputs), i.e.
 *        FD off by (E+ + E-) / 2h from the exact central difference;
 *   truncation: |D(h) - L'| ~ (4/3) |D(h) - D(h/2)| from the double reference
 *        (Richardson), taken twice;
 *   dx: the analytic bounds of test_bn_backward, recomputed here.
 * x are multiples of 2^-8 in [-2, 2] and h = 2^-5, so x +- h is exact. */
START_TEST(test_bn_finite_differences)
{
    const size_t B = 3, C = 2, S = 5, n = B * C * S, nn = B * S;
    const float eps = 1e-5f, h = 1.0f / 32;
    float x[30], xp[30], w[30], y[30], dx[30], g[2] = {1.25f, -0.75f}, be[2] = {0.5f, -0.25f};
    float mean[2], invstd[2];
    tu_fill_uniform(x, n, -2.0f, 2.0f, 31);
    for (size_t i = 0; i < n; i++) x[i] = roundf(x[i] * 256.0f) / 256.0f;
    tu_fill_uniform(w, n, -1.0f, 1.0f, 32);
    kdcl_tensor tx = tn(KDCL_F32, 3, B, C, S, 0), ty = tn(KDCL_F32, 3, B, C, S, 0),
                tw = tn(KDCL_F32, 3, B, C, S, 0), tdx = tn(KDCL_F32, 3, B, C, S, 0);
    kdcl_tensor tg = t1(KDCL_F32, C), tb = t1(KDCL_F32, C), tm = t1(KDCL_F32, C),
                ti = t1(KDCL_F32, C), tdg = t1(KDCL_F32, C), tdb = t1(KDCL_F32, C);
    up(&tx, x, n);
    up(&tw, w, n);
    up(&tg, g, C);
    up(&tb, be, C);
    OK(kdcl_op_batchnorm_forward_train(tu_ctx, B, C, S, &tx, &tg, &tb, &ty, &tm, &ti, NULL, NULL,
                                       0.1f, eps));
    OK(kdcl_op_batchnorm_backward(tu_ctx, B, C, S, &tx, &tw, &tg, &tm, &ti, &tdx, &tdg, &tdb));
    down(&tdx, dx, n);
    down(&tm, mean, C);
    down(&ti, invstd, C);
    for (size_t c = 0; c < C; c++)
        for (size_t b = 0; b < B; b++)
            for (size_t s = 0; s < S; s++) {
                const size_t j = IDX(b, c, s);
                double Ld[2], E[2];
                for (int sg = 0; sg < 2; sg++) {
                    memcpy(xp, x, sizeof xp);
                    xp[j] = sg ? x[j] - h : x[j] + h;
                    ck_assert(fabs((double)xp[j] - x[j]) == h); /* exact */
                    up(&tx, xp, n);
                    OK(kdcl_op_batchnorm_forward_train(tu_ctx, B, C, S, &tx, &tg, &tb, &ty, &tm,
                                                       &ti, NULL, NULL, 0.1f, eps));
                    down(&ty, y, n);
                    const bn_stat st = bn_ref_stat(xp, B, C, S, c, eps);
                    Ld[sg] = 0;
                    E[sg] = 0;
                    for (size_t bb = 0; bb < B; bb++)
                        for (size_t ss = 0; ss < S; ss++) {
                            const size_t i = IDX(bb, c, ss);
                            double e;
                            (void)bn_ref_y(xp[i], g[c], be[c], &st, &e);
                            Ld[sg] += (double)w[i] * y[i];
                            E[sg] += fabs(w[i]) * SAFE * e;
                        }
                }
                const double fd = (Ld[0] - Ld[1]) / (2.0 * h);
                const double e_round = (E[0] + E[1]) / (2.0 * h);
                /* truncation estimate from the double reference */
                double xd[30], D[2];
                for (int k = 0; k < 2; k++) {
                    const double hk = k ? h / 2.0 : h;
                    for (size_t i = 0; i < n; i++) xd[i] = x[i];
                    xd[j] = x[j] + hk;
                    const double lp = bn_loss_ref(x, xd, w, g[c], be[c], B, C, S, c, eps);
                    xd[j] = x[j] - hk;
                    const double lm = bn_loss_ref(x, xd, w, g[c], be[c], B, C, S, c, eps);
                    D[k] = (lp - lm) / (2.0 * hk);
                }
                const double e_trunc = 2.0 * (4.0 / 3.0) * fabs(D[0] - D[1]) + 1e-12;
                /* dx bound (analytic), as in bn_bwd_case */
                const bn_stat st = bn_ref_stat(x, B, C, S, c, eps);
                const bn_bwd_chan r =
                    bn_ref_bwd_chan(x, w, B, C, S, c, (double)mean[c], (double)invstd[c]);
                const bn_bwd_chan ra = bn_ref_bwd_chan(x, w, B, C, S, c, st.mean, st.invstd);
                double e1, e2;
                (void)bn_ref_dx(x[j], w[j], g[c], mean[c], invstd[c], nn, &r, &e1);
                const double want = bn_ref_dx(x[j], w[j], g[c], st.mean, st.invstd, nn, &ra, &e2);
                const double sens_dg = bn_sens_dgamma(&st, ra.dgamma / st.invstd, ra.dbeta);
                const double mg = ra.dgamma / (double)nn, e_mg = sens_dg / (double)nn;
                const double xm = fabs((double)x[j] - st.mean), xhat = xm * st.invstd;
                const double e_xh = st.e_invstd * xm + (st.invstd + st.e_invstd) * st.e_mean;
                const double t = fabs(want) / (fabs(g[c]) * st.invstd);
                const double e_t = e_xh * (fabs(mg) + e_mg) + xhat * e_mg;
                const double e_dx =
                    SAFE * (e1 + fabs(g[c]) * (st.e_invstd * (t + e_t) + st.invstd * e_t));
                const double tol = e_round + e_trunc + e_dx;
                ck_assert_msg(fabs(fd - dx[j]) <= tol,
                              "element %zu: device finite difference %.8g vs backward dx %.8g "
                              "(|diff| %.3g > %.3g = rounding %.3g + truncation %.3g + dx %.3g)",
                              j, fd, (double)dx[j], fabs(fd - dx[j]), tol, e_round, e_trunc,
                              e_dx);
                ck_assert(tol < 0.02 * (fabs(dx[j]) + 0.1)); /* the check has teeth */
            }
    kdcl_tensor *all[] = {&tx, &ty, &tw, &tdx, &tg, &tb, &tm, &ti, &tdg, &tdb};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) kdcl_tensor_free(tu_ctx, all[i]);
}
END_TEST

/* Shapes that cover the kernels' unit layout (cl/norm.cl; units of at most
 * BN_UNIT = 4096 elements in src/core/ops_cnn.c), which the small shapes
 * above (one unit per channel, no full float16 vector before S = 49) do not:
 * several runs of images with a shorter last one (B*S > 4096, S < 4096),
 * runs along S with a short last run (S > 4096), a single plane of exactly
 * 4096, and planes of vectors plus a scalar tail. Training (two steps),
 * evaluation and backward against the same double references and bounds. */
START_TEST(test_bn_units)
{
    static const size_t shapes[][3] = {
        /* B    C  S */
        {5, 3, 1000}, /* 4 + 1 images per unit, 62 vectors + 8 */
        {130, 2, 33}, /* 124 + 6 images per unit, 2 vectors + 1 */
        {2, 2, 8229}, /* S in runs of 4096, 4096, 37 */
        {1, 1, 4096}, /* one run of exactly 4096 */
        {9, 4, 784},  /* 5 + 4 images of 28x28 */
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const size_t B = shapes[i][0], C = shapes[i][1], S = shapes[i][2];
        bn_train_case(B, C, S, i % 2 ? 0.1f : 0.3f, i % 2 ? 1e-5f : 1e-3f);
        bn_eval_case(B, C, S, i % 2 ? 1e-3f : 1e-5f);
        bn_bwd_case(B, C, S, 1000 + i);
    }
}
END_TEST

/* ================= axpy, ReLU ================= */

/* y = a + b: one rounding, so bit for bit the float sum; elements past n
 * untouched; y may be a or b; n = 0 is a no-op and n past a tensor an error. */
START_TEST(test_add)
{
    const size_t cap = 5003, n = 4999;
    float *a = fbuf(cap), *b = fbuf(cap), *y = fbuf(cap), *out = fbuf(cap);
    tu_fill_uniform(a, cap, -2.0f, 2.0f, 11);
    tu_fill_uniform(b, cap, -2.0f, 2.0f, 12);
    tu_fill_uniform(y, cap, -2.0f, 2.0f, 13);
    a[3] = NAN, b[4] = INFINITY, a[5] = -0.0f, b[5] = -0.0f, a[6] = 1e30f, b[6] = -1e30f;
    kdcl_tensor ta = t1(KDCL_F32, cap), tb = t1(KDCL_F32, cap), ty = t1(KDCL_F32, cap);
    up(&ta, a, cap);
    up(&tb, b, cap);
    up(&ty, y, cap);
    OK(kdcl_op_add(tu_ctx, &ty, &ta, &tb, n));
    down(&ty, out, cap);
    for (size_t i = 0; i < cap; i++) {
        const float want = i < n ? a[i] + b[i] : y[i];
        ck_assert_msg(memcmp(&out[i], &want, 4) == 0 || (isnan(out[i]) && isnan(want)),
                      "add element %zu: %.9g, want %.9g", i, (double)out[i], (double)want);
    }
    /* in place: y = a (then y = b) */
    OK(kdcl_op_add(tu_ctx, &ta, &ta, &tb, cap));
    down(&ta, out, cap);
    for (size_t i = 0; i < cap; i++) {
        const float want = a[i] + b[i];
        ck_assert(memcmp(&out[i], &want, 4) == 0 || (isnan(out[i]) && isnan(want)));
    }
    up(&ta, a, cap);
    OK(kdcl_op_add(tu_ctx, &tb, &ta, &tb, cap));
    down(&tb, out, cap);
    for (size_t i = 0; i < cap; i++) {
        const float want = a[i] + b[i];
        ck_assert(memcmp(&out[i], &want, 4) == 0 || (isnan(out[i]) && isnan(want)));
    }
    OK(kdcl_op_add(tu_ctx, &ty, &ta, &tb, 0));
    kdcl_tensor small = t1(KDCL_F32, cap - 1);
    BAD(kdcl_op_add(tu_ctx, &ty, &small, &tb, cap), "a must hold at least");
    BAD(kdcl_op_add(tu_ctx, &small, &ta, &tb, cap), "y must hold at least");
    kdcl_tensor *all[] = {&ta, &tb, &ty, &small};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) kdcl_tensor_free(tu_ctx, all[i]);
    free(a), free(b), free(y), free(out);
}
END_TEST

START_TEST(test_axpy_relu)
{
    const size_t cap = 5003, n = 4999;
    float *y = fbuf(cap), *x = fbuf(cap), *out = fbuf(cap);
    tu_fill_uniform(y, cap, -2.0f, 2.0f, 1);
    tu_fill_uniform(x, cap, -2.0f, 2.0f, 2);
    y[5] = NAN;
    y[6] = -0.0f;
    y[7] = -INFINITY;
    kdcl_tensor ty = t1(KDCL_F32, cap), tx = tn(KDCL_F32, 2, 1, cap, 0, 0);
    up(&tx, x, cap);
    const float alphas[] = {1.0f, -0.3f, 2.5e-3f};
    for (size_t k = 0; k < 3; k++) {
        const float a = alphas[k];
        up(&ty, y, cap);
        OK(kdcl_op_axpy(tu_ctx, &ty, &tx, n, a));
        down(&ty, out, cap);
        for (size_t i = 0; i < cap; i++) {
            if (i >= n || i == 5 || i == 7) {
                ck_assert_msg(i >= n ? memcmp(&out[i], &y[i], 4) == 0
                                     : (i == 5 ? isnan(out[i]) : out[i] == -INFINITY),
                              "axpy element %zu = %g", i, (double)out[i]);
                continue;
            }
            /* fl(y + fl(a x)): off by u |a x| + u |result| from the exact value */
            const double want = (double)y[i] + (double)a * x[i];
            const double bound = U * fabs((double)a * x[i]) + U * fabs(want);
            ck_assert_msg(fabs(out[i] - want) <= SAFE * bound + TINY,
                          "axpy alpha %g element %zu: %.9g want %.12g", (double)a, i,
                          (double)out[i], want);
            volatile float p = a * x[i]; /* the documented float computation, bit for bit */
            const float f = y[i] + p;
            ck_assert_msg(out[i] == f, "axpy element %zu: %.9g, float expression %.9g", i,
                          (double)out[i], (double)f);
        }
    }
    /* x = y: y = y + 1 * y = 2 y exactly */
    up(&ty, x, cap);
    OK(kdcl_op_axpy(tu_ctx, &ty, &ty, cap, 1.0f));
    down(&ty, out, cap);
    for (size_t i = 0; i < cap; i++) ck_assert(out[i] == 2.0f * x[i]);
    /* ReLU on the first n elements */
    up(&ty, y, cap);
    OK(kdcl_op_relu(tu_ctx, &ty, n));
    down(&ty, out, cap);
    for (size_t i = 0; i < cap; i++) {
        if (i >= n) {
            ck_assert(memcmp(&out[i], &y[i], 4) == 0);
        } else if (isnan(y[i])) {
            ck_assert_msg(isnan(out[i]), "relu(NaN) = %g", (double)out[i]);
        } else {
            const float want = y[i] < 0 ? 0.0f : y[i];
            ck_assert_msg(out[i] == want, "relu element %zu: %g want %g", i, (double)out[i],
                          (double)want);
        }
    }
    ck_assert_int_eq(kdcl_op_relu(tu_ctx, &ty, 0), KDCL_OK);
    ck_assert_int_eq(kdcl_op_axpy(tu_ctx, &ty, &tx, 0, 1.0f), KDCL_OK);
    kdcl_tensor_free(tu_ctx, &ty);
    kdcl_tensor_free(tu_ctx, &tx);
    free(y);
    free(x);
    free(out);
}
END_TEST

/* ================= Adam / AdamW ================= */

typedef struct {
    float lr, b1, b2, eps, wd;
    int decoupled;
} adam_hp;

/* One step of one element in double from the stored float state, with bounds
 * (first order) on the kernel's float results:
 *   w1 = decoupled ? fl(w fl(1 - lr wd)) : w             e_w1 = 2u |w1|
 *   g' = decoupled ? g : fl(g + fl(wd w))                e_g = u |wd w| + u |g'|
 *   m' = fl(fl(b1 m) + fl(fl(1 - b1) g'))                e_m = u |b1 m| + (1 - b1)(e_g + 2u |g'|) + u |m'|
 *   v' = fl(fl(b2 v) + fl(fl(1 - b2) fl(g' g')))         e_v = u b2 v + (1 - b2)(2 |g'| e_g + e_g^2 + 3u g'^2) + u v'
 *   sq = sqrt(v'^)  (3 ulp)                              e_sq = min(e_v / sqrt v', sqrt e_v) + 6u (sqrt v' + ...)
 *   den = fl(fl(sq fl(1/sqrt bc2)) + eps)                e_den = isb (e_sq + 2u (sq + e_sq)) + u den
 *   q = m'^ / den^  (2.5 ulp)                            e_q = (e_m + |q| e_den) / (den - e_den) + 5u |q|
 *   w' = fl(w1 - fl(fl(lr / bc1) q))                     e_w = e_w1 + ss (e_q + 2u |q|) + u |w'| */
static void adam_ref(const adam_hp *hp, uint64_t t, float w, float g, float m, float v, double *wr,
                     double *mr, double *vr, double *ew, double *em, double *ev)
{
    const double lr = hp->lr, b1 = hp->b1, b2 = hp->b2, eps = hp->eps, wd = hp->wd;
    const double bc1 = 1.0 - pow(b1, (double)t), bc2 = 1.0 - pow(b2, (double)t);
    const double w1 = hp->decoupled ? w * (1.0 - lr * wd) : w;
    const double e_w1 = hp->decoupled ? 2 * U * fabs(w1) : 0.0;
    const double gp = hp->decoupled ? (double)g : g + wd * w;
    const double e_g = hp->decoupled ? 0.0 : U * fabs(wd * w) + U * fabs(gp);
    *mr = b1 * m + (1 - b1) * gp;
    *em = U * fabs(b1 * m) + (1 - b1) * (e_g + 2 * U * fabs(gp)) + U * fabs(*mr);
    *vr = b2 * v + (1 - b2) * gp * gp;
    *ev = U * b2 * v + (1 - b2) * (2 * fabs(gp) * e_g + e_g * e_g + 3 * U * gp * gp) + U * *vr;
    const double sq = sqrt(*vr);
    double e_sq = sqrt(*ev);
    if (sq > 0 && *ev / sq < e_sq) e_sq = *ev / sq;
    e_sq += 6 * U * (sq + e_sq);
    const double isb = 1.0 / sqrt(bc2), den = sq * isb + eps;
    const double e_den = isb * (e_sq + 2 * U * (sq + e_sq)) + U * den;
    ck_assert(e_den < 0.5 * den);
    const double q = *mr / den;
    const double e_q = (*em + fabs(q) * e_den) / (den - e_den) + 5 * U * fabs(q);
    const double ss = lr / bc1;
    *wr = w1 - ss * q;
    const double e_u = ss * (e_q + 2 * U * (fabs(q) + e_q));
    *ew = e_w1 + e_u + U * (fabs(*wr) + e_w1 + e_u);
}

START_TEST(test_adam)
{
    const size_t cap = 1201, off = 3, n = 1190;
    float *w = fbuf(cap), *g = fbuf(cap), *m = fbuf(cap), *v = fbuf(cap);
    float *w1 = fbuf(cap), *m1 = fbuf(cap), *v1 = fbuf(cap);
    static const adam_hp hps[] = {
        {0.05f, 0.9f, 0.999f, 1e-8f, 0.01f, 0},  /* Adam, L2 */
        {0.05f, 0.9f, 0.999f, 1e-8f, 0.1f, 1},   /* AdamW */
        {1e-3f, 0.0f, 0.99f, 1e-3f, 0.0f, 0},    /* beta1 = 0 (RMSprop-like), no decay */
        {0.2f, 0.5f, 0.9f, 1e-6f, 0.05f, 1},
    };
    kdcl_tensor tw = t1(KDCL_F32, cap), tg = t1(KDCL_F32, cap), tm = t1(KDCL_F32, cap),
                tv = t1(KDCL_F32, cap);
    for (size_t h = 0; h < sizeof hps / sizeof hps[0]; h++) {
        const adam_hp *hp = &hps[h];
        tu_fill_uniform(w, cap, -1.0f, 1.0f, 10 + h);
        memset(m, 0, cap * 4); /* PyTorch's zero state */
        memset(v, 0, cap * 4);
        up(&tw, w, cap);
        up(&tm, m, cap);
        up(&tv, v, cap);
        for (uint64_t t = 1; t <= 3; t++) {
            tu_fill_uniform(g, cap, -1.0f, 1.0f, 100 * h + t);
            for (size_t i = off; i < off + n; i += 97) g[i] = 0.0f;
            for (size_t i = off + 1; i < off + n; i += 89) g[i] *= 1e-4f;
            up(&tg, g, cap);
            OK(kdcl_op_adam(tu_ctx, &tw, &tg, &tm, &tv, off, n, hp->lr, hp->b1, hp->b2, hp->eps,
                            hp->wd, hp->decoupled, t));
            down(&tw, w1, cap);
            down(&tm, m1, cap);
            down(&tv, v1, cap);
            for (size_t i = 0; i < cap; i++) {
                if (i < off || i >= off + n) {
                    ck_assert_msg(w1[i] == w[i] && m1[i] == m[i] && v1[i] == v[i],
                                  "config %zu step %llu touched element %zu", h,
                                  (unsigned long long)t, i);
                    continue;
                }
                double wr, mr, vr, ew, em, ev;
                adam_ref(hp, t, w[i], g[i], m[i], v[i], &wr, &mr, &vr, &ew, &em, &ev);
                char cs[64];
                snprintf(cs, sizeof cs, "adam config %zu step %llu", h, (unsigned long long)t);
                check_close("m", cs, i, m1[i], mr, em);
                check_close("v", cs, i, v1[i], vr, ev);
                check_close("w", cs, i, w1[i], wr, ew);
            }
            memcpy(w, w1, cap * 4);
            memcpy(m, m1, cap * 4);
            memcpy(v, v1, cap * 4);
        }
    }
    /* the first step of Adam without decay moves each weight by about lr * sign(g) */
    tu_fill_uniform(w, cap, -1.0f, 1.0f, 5);
    tu_fill_uniform(g, cap, -1.0f, 1.0f, 6);
    memset(m, 0, cap * 4);
    up(&tw, w, cap);
    up(&tg, g, cap);
    up(&tm, m, cap);
    up(&tv, m, cap);
    OK(kdcl_op_adam(tu_ctx, &tw, &tg, &tm, &tv, 0, cap, 0.01f, 0.9f, 0.999f, 1e-8f, 0.0f, 0, 1));
    down(&tw, w1, cap);
    for (size_t i = 0; i < cap; i++)
        ck_assert_msg(fabs((w[i] - w1[i]) - 0.01 * (g[i] > 0 ? 1 : -1)) < 1e-6 + 0.01 * 1e-8 / fabs(g[i]),
                      "first Adam step of element %zu: %.9g -> %.9g (g %.3g)", i, (double)w[i],
                      (double)w1[i], (double)g[i]);
    kdcl_tensor *all[] = {&tw, &tg, &tm, &tv};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) kdcl_tensor_free(tu_ctx, all[i]);
    float *host[] = {w, g, m, v, w1, m1, v1};
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++) free(host[i]);
}
END_TEST

/* ================= Nesterov SGD ================= */

/* ld = fl(lr fl(g + fl(wd w))), v' = fl(fl(mom v) - ld), w' = fl(fl(w + fl(mom v'^)) - ld):
 *   e_ld = |lr| (u |wd w| + u |d|) + u |lr d|
 *   e_v  = u |mom v| + e_ld + u |v'|
 *   e_w  = |mom| e_v + u |mom v'| + u |w + mom v'| + e_ld + u |w'| */
START_TEST(test_sgd_nesterov)
{
    const size_t cap = 2003;
    float *w = fbuf(cap), *g = fbuf(cap), *v = fbuf(cap), *w1 = fbuf(cap), *v1 = fbuf(cap);
    tu_fill_uniform(w, cap, -1, 1, 1);
    memset(v, 0, cap * 4);
    kdcl_tensor tw = t1(KDCL_F32, cap), tg = t1(KDCL_F32, cap), tv = t1(KDCL_F32, cap);
    up(&tw, w, cap);
    up(&tv, v, cap);
    static const struct {
        size_t off, n;
        float lr, mom, wd;
    } steps[] = {
        {17, 1900, 0.1f, 0.9f, 5e-4f}, {17, 1900, 0.1f, 0.9f, 5e-4f}, {17, 1900, 0.05f, 0.9f, 5e-4f},
        {0, 2003, 0.5f, 0.0f, 0.0f},   {2002, 1, 1.0f, 0.99f, 0.1f},  {5, 0, 0.5f, 0.5f, 0.5f},
    };
    for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
        tu_fill_uniform(g, cap, -1, 1, 20 + s);
        up(&tg, g, cap);
        OK(kdcl_op_sgd_nesterov(tu_ctx, &tw, &tg, &tv, steps[s].off, steps[s].n, steps[s].lr,
                                steps[s].mom, steps[s].wd));
        down(&tw, w1, cap);
        down(&tv, v1, cap);
        const double lr = steps[s].lr, mom = steps[s].mom, wd = steps[s].wd;
        for (size_t i = 0; i < cap; i++) {
            if (i < steps[s].off || i >= steps[s].off + steps[s].n) {
                ck_assert_msg(w1[i] == w[i] && v1[i] == v[i], "step %zu touched element %zu", s, i);
                continue;
            }
            const double d = g[i] + wd * w[i], ld = lr * d;
            const double vr = mom * v[i] - ld, wr = w[i] + mom * vr - ld;
            const double e_ld = fabs(lr) * U * (fabs(wd * w[i]) + fabs(d)) + U * fabs(ld);
            const double e_v = U * fabs(mom * v[i]) + e_ld + U * fabs(vr);
            const double e_w = fabs(mom) * e_v + U * fabs(mom * vr) + U * fabs(w[i] + mom * vr) +
                               e_ld + U * fabs(wr);
            char cs[48];
            snprintf(cs, sizeof cs, "nesterov step %zu", s);
            check_close("v", cs, i, v1[i], vr, e_v);
            check_close("w", cs, i, w1[i], wr, e_w);
        }
        memcpy(w, w1, cap * 4);
        memcpy(v, v1, cap * 4);
    }
    kdcl_tensor_free(tu_ctx, &tw);
    kdcl_tensor_free(tu_ctx, &tg);
    kdcl_tensor_free(tu_ctx, &tv);
    free(w);
    free(g);
    free(v);
    free(w1);
    free(v1);
}
END_TEST

/* ================= CNN input ================= */

static uint64_t xs_state = 88172645463325252ull;
static uint32_t xs32(void)
{
    xs_state ^= xs_state << 13;
    xs_state ^= xs_state >> 7;
    xs_state ^= xs_state << 17;
    return (uint32_t)(xs_state >> 32);
}

/* The op on `batch` examples of a dst with one example more (which must stay
 * untouched), against the definition with fmaf (one rounding, like the kernel):
 * bit for bit. Returns how many examples were mirrored. */
static size_t check_input(size_t batch, size_t H, size_t W, size_t C, int m, int flip,
                          uint64_t seed, uint64_t step)
{
    const size_t per = H * W * C, n = batch * per;
    const float scale[4] = {1.0f / (255 * 0.2470f), 1.0f / (255 * 0.2435f), 1.0f / (255 * 0.2616f),
                            0.0078125f};
    const float shift[4] = {-0.4914f / 0.2470f, -0.4822f / 0.2435f, -0.4465f / 0.2616f, -1.0f};
    unsigned char *src = malloc(n);
    float *dst = fbuf(n + per);
    ck_assert(src);
    for (size_t i = 0; i < n; i++) src[i] = (unsigned char)(xs32() | 1); /* no raw 0 inside */
    kdcl_tensor ts = tn(KDCL_U8, 4, batch, H, W, C), td = tn(KDCL_F32, 4, batch + 1, C, H, W);
    up(&ts, src, n);
    OK(kdcl_tensor_fill(tu_ctx, &td, 9.0f));
    OK(kdcl_op_input_u8(tu_ctx, &ts, &td, batch, H, W, C, m, flip, seed, step, scale, shift));
    down(&td, dst, n + per);
    size_t flipped = 0;
    for (size_t b = 0; b < batch; b++) {
        int dx, dy;
        kdcl_jitter_shift(seed, step, b, m, &dx, &dy);
        const int fb = flip ? kdcl_augment_flip(seed, step, b) : 0;
        flipped += (size_t)fb;
        for (size_t c = 0; c < C; c++)
            for (size_t y = 0; y < H; y++)
                for (size_t x = 0; x < W; x++) {
                    const long sy = (long)y - dy, sx = (long)(fb ? W - 1 - x : x) - dx;
                    unsigned char s = 0;
                    if (sy >= 0 && sy < (long)H && sx >= 0 && sx < (long)W)
                        s = src[((b * H + (size_t)sy) * W + (size_t)sx) * C + c];
                    const float want = fmaf((float)s, scale[c], shift[c]);
                    const float got = dst[((b * C + c) * H + y) * W + x];
                    ck_assert_msg(memcmp(&got, &want, 4) == 0,
                                  "input %zux%zux%zux%zu m=%d flip=%d: example %zu (dx %d dy %d "
                                  "flip %d) c=%zu y=%zu x=%zu: %.9g want %.9g",
                                  batch, H, W, C, m, flip, b, dx, dy, fb, c, y, x, (double)got,
                                  (double)want);
                }
    }
    for (size_t i = n; i < n + per; i++) ck_assert(dst[i] == 9.0f);
    kdcl_tensor_free(tu_ctx, &ts);
    kdcl_tensor_free(tu_ctx, &td);
    free(src);
    free(dst);
    return flipped;
}

START_TEST(test_input_u8)
{
    size_t f = check_input(64, 5, 7, 3, 2, 1, 17, 3);
    ck_assert_msg(f > 10 && f < 54, "%zu of 64 mirrored", f);
    f = check_input(40, 6, 6, 1, 1, 1, 5, 1ull << 33);
    ck_assert_msg(f > 5 && f < 35, "%zu of 40 mirrored", f);
    ck_assert_int_eq(check_input(9, 8, 8, 3, 4, 0, 5, 0), 0);  /* shift, no flip */
    check_input(12, 4, 3, 4, 0, 1, 9, 9);                       /* flip only, C = 4 */
    check_input(7, 3, 5, 2, 10, 1, 9, 9);                       /* shifts beyond the image */
    check_input(5, 32, 32, 3, 4, 1, 123, 456);                  /* CIFAR-sized */
    check_input(3, 1, 1, 1, 0, 0, 0, 0);
}
END_TEST

/* C = 1 without flip equals kdcl_op_jitter bit for bit (same shifts, same fma). */
START_TEST(test_input_u8_equals_jitter)
{
    const size_t B = 50, H = 9, W = 11, n = B * H * W;
    unsigned char *src = malloc(n);
    float *a = fbuf(n), *b = fbuf(n);
    ck_assert(src);
    for (size_t i = 0; i < n; i++) src[i] = (unsigned char)xs32();
    kdcl_tensor ts = tn(KDCL_U8, 2, B, H * W, 0, 0), td = tn(KDCL_F32, 4, B, 1, H, W);
    up(&ts, src, n);
    const float scale[1] = {1.0f / 255 / 0.3081f}, shift[1] = {-0.1307f / 0.3081f};
    const float params[][2] = {{scale[0], shift[0]}, {1.0f, -0.0f}, {0.5f, 3.0f}};
    for (int m = 0; m <= 3; m++)
        for (size_t p = 0; p < 3; p++) {
            OK(kdcl_op_input_u8(tu_ctx, &ts, &td, B, H, W, 1, m, 0, 42, (uint64_t)m + 7,
                                &params[p][0], &params[p][1]));
            down(&td, a, n);
            OK(kdcl_op_jitter(tu_ctx, &ts, &td, B, H, W, 1, m, 42, (uint64_t)m + 7, params[p][0],
                              params[p][1]));
            down(&td, b, n);
            ck_assert_msg(memcmp(a, b, n * 4) == 0, "max_shift %d params %zu: differs from jitter",
                          m, p);
        }
    kdcl_tensor_free(tu_ctx, &ts);
    kdcl_tensor_free(tu_ctx, &td);
    free(src);
    free(a);
    free(b);
}
END_TEST

/* The flip is bit 31 of word 2 of the jitter block, about half the examples. */
START_TEST(test_augment_flip)
{
    size_t ones = 0;
    const size_t N = 20000;
    for (size_t b = 0; b < N; b++) {
        const uint64_t seed = 0x123456789abcull, step = 77;
        const uint32_t ctr[4] = {(uint32_t)b, (uint32_t)step, (uint32_t)(step >> 32),
                                 KDCL_JITTER_STREAM};
        const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
        uint32_t r[4];
        kdcl_philox4x32(ctr, key, r);
        const int f = kdcl_augment_flip(seed, step, b);
        ck_assert_int_eq(f, (int)(r[2] >> 31));
        ones += (size_t)f;
    }
    /* Binomial(20000, 1/2): sd ~ 71 */
    ck_assert_msg(ones > N / 2 - 400 && ones < N / 2 + 400, "%zu of %zu flipped", ones, N);
}
END_TEST

/* ================= argument validation ================= */

START_TEST(test_bad_arguments)
{
    const size_t B = 2, C = 3, S = 4;
    kdcl_tensor x = tn(KDCL_F32, 3, B, C, S, 0), xs = tn(KDCL_F32, 3, B, C, S - 1, 0);
    kdcl_tensor xi = tn(KDCL_I32, 3, B, C, S, 0), c3 = t1(KDCL_F32, C), c4 = t1(KDCL_F32, C + 1);
    kdcl_tensor u8 = tn(KDCL_U8, 4, 2, 3, 3, 3), img = tn(KDCL_F32, 4, 2, 3, 3, 3);
    kdcl_tensor big = t1(KDCL_F32, 100), none = {0};
    const char *op = "kdcl_op_batchnorm_forward_train";
    /* batchnorm training */
#define TRAIN(B_, C_, S_, X, G, Y, RM, MOM, EPS) \
    kdcl_op_batchnorm_forward_train(tu_ctx, B_, C_, S_, X, G, &c3, Y, &c3, &c3, RM, &c3, MOM, EPS)
    ck_assert_int_eq(TRAIN(B, C, S, &x, &c3, &x, &c3, 0.1f, 1e-5f), KDCL_OK);
    BAD(TRAIN(B, C, S, &x, &c3, &x, &c3, NAN, 1e-5f), "momentum");
    BAD(TRAIN(B, C, S, &x, &c3, &x, &c3, 1.5f, 1e-5f), "momentum");
    BAD(TRAIN(B, C, S, &x, &c3, &x, &c3, -0.1f, 1e-5f), op);
    BAD(TRAIN(B, C, S, &x, &c3, &x, &c3, 0.1f, NAN), "eps");
    BAD(TRAIN(B, C, S, &x, &c3, &x, &c3, 0.1f, -1e-5f), "eps");
    BAD(TRAIN(B, C, S, &x, &c3, &x, &c3, 0.1f, INFINITY), "eps");
    BAD(TRAIN(B, C, S, &xs, &c3, &x, &c3, 0.1f, 1e-5f), "[2, 3, 3] F32");
    BAD(TRAIN(B, C, S, &x, &c3, &xs, &c3, 0.1f, 1e-5f), "y does not hold 2 examples of 12");
    BAD(TRAIN(B + 1, C, S, &x, &c3, &x, &c3, 0.1f, 1e-5f), "x does not hold 3 examples");
    BAD(TRAIN(B, C, S, &xi, &c3, &x, &c3, 0.1f, 1e-5f), "x must be F32");
    BAD(TRAIN(B, C, S, &x, &c4, &x, &c3, 0.1f, 1e-5f), "gamma must have C = 3");
    BAD(TRAIN(B, C, S, &x, &c3, &x, &c4, 0.1f, 1e-5f), "running_mean must have C = 3");
    BAD(TRAIN(B, C, S, &x, &c3, &x, NULL, 0.1f, 1e-5f), "both");
    BAD(TRAIN(B, C, S, &x, &c3, &x, &none, 0.1f, 1e-5f), "NULL");
    BAD(TRAIN(0, C, S, &x, &c3, &x, &c3, 0.1f, 1e-5f), "zero");
    BAD(TRAIN(B, C, 0, &x, &c3, &x, &c3, 0.1f, 1e-5f), "[2, 3, 0]");
    BAD(TRAIN(SIZE_MAX / 2, C, S, &x, &c3, &x, &c3, 0.1f, 1e-5f), "2^32");
    BAD(TRAIN((size_t)1 << 20, (size_t)1 << 12, 1, &x, &c3, &x, &c3, 0.1f, 1e-5f), "2^32");
    BAD(TRAIN(B, C, S, NULL, &c3, &x, &c3, 0.1f, 1e-5f), "x is NULL");
#undef TRAIN
    BAD(kdcl_op_batchnorm_forward_train(tu_ctx, B, C, S, &x, &c3, &c3, &x, &c4, &c3, NULL, NULL,
                                        0.1f, 1e-5f),
        "mean must have C = 3");
    BAD(kdcl_op_batchnorm_forward_train(tu_ctx, B, C, S, &x, &c3, &c3, &x, &c3, NULL, NULL, NULL,
                                        0.1f, 1e-5f),
        "invstd");
    /* batchnorm eval */
    op = "kdcl_op_batchnorm_forward_eval";
    ck_assert_int_eq(kdcl_op_batchnorm_forward_eval(tu_ctx, B, C, S, &x, &c3, &c3, &c3, &c3, 1e-5f, &x),
                     KDCL_OK);
    BAD(kdcl_op_batchnorm_forward_eval(tu_ctx, B, C, S, &x, &c3, &c3, &c3, &c3, NAN, &x), op);
    BAD(kdcl_op_batchnorm_forward_eval(tu_ctx, B, C, S, &x, &c3, &c3, &c3, &c4, 1e-5f, &x),
        "running_var must have C = 3");
    BAD(kdcl_op_batchnorm_forward_eval(tu_ctx, B, C, S, &x, &c3, &c3, NULL, &c3, 1e-5f, &x),
        "running_mean");
    BAD(kdcl_op_batchnorm_forward_eval(tu_ctx, B, C, S + 1, &x, &c3, &c3, &c3, &c3, 1e-5f, &x),
        "x does not hold 2 examples of 15");
    BAD(kdcl_op_batchnorm_forward_eval(tu_ctx, B, C, S, &x, &c3, &c3, &c3, &c3, 1e-5f, &xi),
        "y must be F32");
    /* batchnorm backward */
    op = "kdcl_op_batchnorm_backward";
    ck_assert_int_eq(kdcl_op_batchnorm_backward(tu_ctx, B, C, S, &x, &x, &c3, &c3, &c3, &x, &c3, &c3),
                     KDCL_OK);
    BAD(kdcl_op_batchnorm_backward(tu_ctx, B, C, S, &x, &xs, &c3, &c3, &c3, &x, &c3, &c3), "dy");
    BAD(kdcl_op_batchnorm_backward(tu_ctx, B, C, S, &x, &x, &c3, &c3, &c3, &xs, &c3, &c3), "dx");
    BAD(kdcl_op_batchnorm_backward(tu_ctx, B, C, S, &x, &x, &c3, &c3, &c3, &x, &c4, &c3), "dgamma");
    BAD(kdcl_op_batchnorm_backward(tu_ctx, B, C, S, &x, &x, &c3, &c3, &c3, &x, &c3, NULL), "dbeta");
    BAD(kdcl_op_batchnorm_backward(tu_ctx, B, C, S, &x, &x, &c3, &c4, &c3, &x, &c3, &c3), "mean");
    BAD(kdcl_op_batchnorm_backward(tu_ctx, B, C, S, &x, &x, &c3, &c3, &x, &x, &c3, &c3), "invstd");
    BAD(kdcl_op_batchnorm_backward(tu_ctx, 0, C, S, &x, &x, &c3, &c3, &c3, &x, &c3, &c3), op);
    /* axpy, relu */
    BAD(kdcl_op_axpy(tu_ctx, &c3, &x, 4, 1.0f), "y must hold at least 4 elements");
    BAD(kdcl_op_axpy(tu_ctx, &x, &c3, 4, 1.0f), "x must hold");
    BAD(kdcl_op_axpy(tu_ctx, &x, &x, 4, NAN), "alpha");
    BAD(kdcl_op_axpy(tu_ctx, &x, &xi, 4, 1.0f), "I32");
    BAD(kdcl_op_relu(tu_ctx, &c3, 4), "kdcl_op_relu");
    BAD(kdcl_op_relu(tu_ctx, &u8, 4), "F32");
    BAD(kdcl_op_relu(tu_ctx, NULL, 4), "NULL");
    /* Adam */
    op = "kdcl_op_adam";
#define ADAM(off, n, lr, b1, b2, eps, wd, t) \
    kdcl_op_adam(tu_ctx, &big, &big, &big, &big, off, n, lr, b1, b2, eps, wd, 1, t)
    ck_assert_int_eq(ADAM(0, 100, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 1), KDCL_OK);
    ck_assert_int_eq(ADAM(100, 0, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 1), KDCL_OK);
    BAD(ADAM(0, 100, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 0), "t = 0");
    BAD(ADAM(0, 100, NAN, 0.9f, 0.999f, 1e-8f, 0.0f, 1), "lr");
    BAD(ADAM(0, 100, -1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 1), "lr");
    BAD(ADAM(0, 100, 1e-3f, NAN, 0.999f, 1e-8f, 0.0f, 1), "beta1");
    BAD(ADAM(0, 100, 1e-3f, 1.0f, 0.999f, 1e-8f, 0.0f, 1), "beta1");
    BAD(ADAM(0, 100, 1e-3f, 0.9f, NAN, 1e-8f, 0.0f, 1), "beta2");
    BAD(ADAM(0, 100, 1e-3f, 0.9f, -0.5f, 1e-8f, 0.0f, 1), "beta2");
    BAD(ADAM(0, 100, 1e-3f, 0.9f, 0.999f, NAN, 0.0f, 1), "eps");
    BAD(ADAM(0, 100, 1e-3f, 0.9f, 0.999f, -1.0f, 0.0f, 1), "eps");
    BAD(ADAM(0, 100, 1e-3f, 0.9f, 0.999f, 1e-8f, NAN, 1), "weight_decay");
    BAD(ADAM(0, 100, 1e-3f, 0.9f, 0.999f, 1e-8f, INFINITY, 1), "weight_decay");
    BAD(ADAM(0, 100, 3e38f, 0.999999f, 0.999f, 1e-8f, 0.0f, 1), "step size");
    BAD(ADAM(1, 100, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 1), "outside w");
    BAD(ADAM(SIZE_MAX, 2, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 1), "outside");
#undef ADAM
    BAD(kdcl_op_adam(tu_ctx, &big, &big, &c3, &big, 0, 10, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 0, 1),
        "outside m");
    BAD(kdcl_op_adam(tu_ctx, &big, &big, &big, &u8, 0, 10, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 0, 1),
        "v must be F32");
    /* Nesterov */
    op = "kdcl_op_sgd_nesterov";
    BAD(kdcl_op_sgd_nesterov(tu_ctx, &big, &big, &big, 0, 10, NAN, 0.9f, 0.0f), "lr");
    BAD(kdcl_op_sgd_nesterov(tu_ctx, &big, &big, &big, 0, 10, 0.1f, NAN, 0.0f), "momentum");
    BAD(kdcl_op_sgd_nesterov(tu_ctx, &big, &big, &big, 0, 10, 0.1f, 0.9f, INFINITY), "weight_decay");
    BAD(kdcl_op_sgd_nesterov(tu_ctx, &big, &c3, &big, 0, 10, 0.1f, 0.9f, 0.0f), "outside g");
    BAD(kdcl_op_sgd_nesterov(tu_ctx, &big, &big, &big, 95, 10, 0.1f, 0.9f, 0.0f), op);
    ck_assert_int_eq(kdcl_op_sgd_nesterov(tu_ctx, &big, &big, &big, 100, 0, 0.1f, 0.9f, 0.0f),
                     KDCL_OK);
    /* CNN input */
    op = "kdcl_op_input_u8";
    const float sc[5] = {1, 1, 1, 1, 1}, sh[5] = {0, 0, 0, 0, 0}, bad_sc[3] = {1, NAN, 1};
    ck_assert_int_eq(kdcl_op_input_u8(tu_ctx, &u8, &img, 2, 3, 3, 3, 1, 1, 1, 1, sc, sh), KDCL_OK);
    BAD(kdcl_op_input_u8(tu_ctx, &u8, &img, 2, 3, 3, 5, 1, 1, 1, 1, sc, sh), "C = 5");
    BAD(kdcl_op_input_u8(tu_ctx, &u8, &img, 2, 3, 3, 0, 1, 1, 1, 1, sc, sh), "C = 0");
    BAD(kdcl_op_input_u8(tu_ctx, &u8, &img, 2, 3, 3, 3, -1, 1, 1, 1, sc, sh), "max_shift");
    BAD(kdcl_op_input_u8(tu_ctx, &u8, &img, 2, 0, 3, 3, 1, 1, 1, 1, sc, sh), "zero");
    BAD(kdcl_op_input_u8(tu_ctx, &u8, &img, 3, 3, 3, 3, 1, 1, 1, 1, sc, sh), "src does not hold 3");
    BAD(kdcl_op_input_u8(tu_ctx, &u8, &img, 2, 3, 2, 3, 1, 1, 1, 1, sc, sh), "examples of 18");
    BAD(kdcl_op_input_u8(tu_ctx, &img, &img, 2, 3, 3, 3, 1, 1, 1, 1, sc, sh), "src must be U8");
    BAD(kdcl_op_input_u8(tu_ctx, &u8, &u8, 2, 3, 3, 3, 1, 1, 1, 1, sc, sh), "dst must be F32");
    BAD(kdcl_op_input_u8(tu_ctx, &u8, &img, 2, 3, 3, 3, 1, 1, 1, 1, bad_sc, sh), "scale[1]");
    BAD(kdcl_op_input_u8(tu_ctx, &u8, &img, 2, 3, 3, 3, 1, 1, 1, 1, NULL, sh), "NULL");
    BAD(kdcl_op_input_u8(tu_ctx, &u8, &img, 2, 3, 3, 3, 1, 1, 1, 1, sc, NULL), op);
    BAD(kdcl_op_input_u8(tu_ctx, &u8, &img, SIZE_MAX / 8, 3, 3, 3, 1, 1, 1, 1, sc, sh), "2^32");
    OK(kdcl_ctx_finish(tu_ctx));
    kdcl_tensor *all[] = {&x, &xs, &xi, &c3, &c4, &u8, &img, &big};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) kdcl_tensor_free(tu_ctx, all[i]);
}
END_TEST

static Suite *cnn_ops_suite(void)
{
    Suite *s = suite_create("cnn_ops");
    TCase *tc = tcase_create("cnn_ops");
    tcase_add_unchecked_fixture(tc, tu_ctx_setup, tu_ctx_teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_bad_arguments);
    tcase_add_test(tc, test_bn_train);
    tcase_add_test(tc, test_bn_train_no_update);
    tcase_add_test(tc, test_bn_eval);
    tcase_add_test(tc, test_bn_backward);
    tcase_add_test(tc, test_bn_finite_differences);
    tcase_add_test(tc, test_bn_units);
    tcase_add_test(tc, test_axpy_relu);
    tcase_add_test(tc, test_add);
    tcase_add_test(tc, test_adam);
    tcase_add_test(tc, test_sgd_nesterov);
    tcase_add_test(tc, test_input_u8);
    tcase_add_test(tc, test_input_u8_equals_jitter);
    tcase_add_test(tc, test_augment_flip);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(cnn_ops_suite()); }
