/* Softmax family (cl/softmax.cl via include/kdcl/loss.h) against a
 * double-precision CPU reference.
 *
 * Error model (u = 2^-24, the fp32 unit roundoff). The kernels compute, per
 * row, x^_k = fl(z_k * fl(1/T)), m^ = max_k x^_k, d^_k = fl(x^_k - m^),
 * e^_k = exp(d^_k), s^ = sum e^_k, and then e^_k / s^ or d^_k - log(s^).
 *  - Scaling: |x^_k - x_k| <= 2u|x_k| (two roundings) and likewise for m, so the
 *    exponent argument carries the ABSOLUTE error
 *        delta_k = 2u(|x_k| + |m|) + u|x_k - m|,
 *    which becomes a RELATIVE error of e_k. This is the dominant term for
 *    large logits at low temperature: |z/T| = 1e4/0.05 = 2e5 gives delta up to
 *    ~0.07 in the tail, but there p_k is astronomically small, and near the max
 *    (p_k large) |x_k - m| is small. At T = 1 (cross-entropy) x^ = z exactly and
 *    delta_k = u|z_k - m|.
 *  - exp/log: OpenCL allows 3 ulp (<= 6u relative); we use 8u. Division: 2.5
 *    ulp (<= 5u); we use 6u.
 *  - The sum: each term has relative error delta_j + 8u, and summing K
 *    nonnegative terms in any order adds at most gamma_K = Ku/(1-Ku) relative,
 *    so s^ has relative error E = sum_j p_j delta_j + 8u + gamma_K. (gamma_K is
 *    the order-independent worst case; the kernels' actual tree order is far
 *    better, but we do not assume a work-group size.)
 * Hence
 *    softmax:      |p^_k - p_k| <= p_k (delta_k + E + 14u)             (+ tiny
 *                  absolute slack for devices that flush denormals)
 *    log-softmax:  |l^_k - l_k| <= delta_k + E + 8u|log s| + u|l_k|
 *    sum of p^:    |sum p^ - 1| <= gamma_K + 30u (the numerators are the
 *                  summands up to exp's own error, the divisions add 6u each)
 *    CE loss:      |L^ - L| <= delta_y + E + 8u|log s| + u|L|
 *    CE gradient:  |dz^ - dz| <= |g| (p_k (delta_k + E + 14u) + 2u|p_k - [k=y]|)
 * and every bound is checked with a safety factor of 1.5 (the bounds drop
 * second-order terms). A wrong index, stride or reduction gives errors of
 * O(p_k) or O(1), far above these. argmax, error and confusion counts involve
 * only comparisons of the stored floats, so they must match exactly. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdcl/kdcl.h"
#include "kdcl/loss.h"
#include "testutil.h"

#define U (1.0 / 16777216.0) /* 2^-24 */
#define SAFETY 1.5
#define TINY 1e-37 /* denormal flush of e_k / s (s >= 1): at most 2^-126 */

static const size_t Ks[] = {1, 2, 3, 10, 31, 32, 33, 100, 1000, 10007};
static const size_t Bs[] = {1, 7, 128};
static const float Ts[] = {0.05f, 1.0f, 2.5f, 20.0f, 100.0f};
static const float Ss[] = {1.0f, 30.0f, 1e4f};
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static uint64_t rng_state = 88172645463325252ull;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}

/* ---- reference ---- */

/* The per-row softmax reference is tu_ref_row (testutil). */

static size_t first_argmax(const float *z, size_t K)
{
    size_t a = 0;
    for (size_t k = 1; k < K; k++)
        if (z[k] > z[a]) a = k;
    return a;
}

/* ---- softmax / log-softmax sweep ---- */

static void check_softmax(const float *z, const float *p, const float *l, size_t B, size_t K,
                          float T, float sc, double *lp, double *delta, double *worst)
{
    for (size_t b = 0; b < B; b++) {
        const float *zr = z + b * K;
        tu_rowref r = tu_ref_row(zr, K, T, 1, lp, delta);
        double sum = 0;
        for (size_t k = 0; k < K; k++) {
            double pv = p[b * K + k], lv = l[b * K + k], pr = exp(lp[k]);
            if (!isfinite(pv) || !isfinite(lv) || pv < 0 || pv > 1)
                ck_abort_msg("B=%zu K=%zu T=%g s=%g: row %zu col %zu: p=%g logp=%g", B, K,
                             (double)T, (double)sc, b, k, pv, lv);
            double tp = SAFETY * pr * (delta[k] + r.E + 14 * U) + TINY;
            double tl = SAFETY * (delta[k] + r.E + 8 * U * fabs(r.logS) + U * fabs(lp[k])) + 1e-30;
            double ep = fabs(pv - pr), el = fabs(lv - lp[k]);
            if (ep / tp > *worst) *worst = ep / tp;
            if (el / tl > *worst) *worst = el / tl;
            if (ep > tp || el > tl)
                ck_abort_msg("B=%zu K=%zu T=%g s=%g: row %zu col %zu: p=%.9g want %.9g (tol %.3g)"
                             ", logp=%.9g want %.9g (tol %.3g)",
                             B, K, (double)T, (double)sc, b, k, pv, pr, tp, lv, lp[k], tl);
            sum += pv;
        }
        double ts = SAFETY * (tu_gamma_n(K) + 30 * U);
        if (fabs(sum - 1) > ts)
            ck_abort_msg("B=%zu K=%zu T=%g s=%g: row %zu sums to 1 %+.3g (tol %.3g)", B, K,
                         (double)T, (double)sc, b, sum - 1, ts);
        if (K == 1 && (p[b] != 1.0f || l[b] != 0.0f))
            ck_abort_msg("K=1: p=%g logp=%g, want exactly 1 and 0", (double)p[b], (double)l[b]);
    }
}

static void softmax_sweep(size_t kmin, size_t kmax)
{
    double worst = 0;
    for (size_t ki = 0; ki < NELEM(Ks); ki++) {
        size_t K = Ks[ki];
        if (K < kmin || K > kmax) continue;
        for (size_t bi = 0; bi < NELEM(Bs); bi++) {
            size_t B = Bs[bi], n = B * K;
            float *z = malloc(n * 4), *p = malloc(n * 4), *l = malloc(n * 4);
            double *lp = malloc(K * sizeof *lp), *delta = malloc(K * sizeof *delta);
            ck_assert(z && p && l && lp && delta);
            kdcl_tensor dz = tu_mat(B, K), dout = tu_mat(B, K);
            for (size_t si = 0; si < NELEM(Ss); si++) {
                tu_fill_uniform(z, n, -Ss[si], Ss[si], K * 1000 + B * 10 + si);
                tu_put(&dz, z);
                for (size_t ti = 0; ti < NELEM(Ts); ti++) {
                    tu_ok(kdcl_op_softmax(tu_ctx, &dz, &dout, Ts[ti], 0), "softmax");
                    tu_get(&dout, p);
                    tu_ok(kdcl_op_softmax(tu_ctx, &dz, &dout, Ts[ti], 1), "log-softmax");
                    tu_get(&dout, l);
                    check_softmax(z, p, l, B, K, Ts[ti], Ss[si], lp, delta, &worst);
                }
            }
            kdcl_tensor_free(tu_ctx, &dz);
            kdcl_tensor_free(tu_ctx, &dout);
            free(z);
            free(p);
            free(l);
            free(lp);
            free(delta);
        }
    }
    printf("softmax %s path: worst error / tolerance = %.3g\n",
           kmin > KDCL_SOFTMAX_SMALL_K ? "work-group-per-row" : "row-per-work-item", worst);
}

START_TEST(test_softmax_small_k) { softmax_sweep(1, KDCL_SOFTMAX_SMALL_K); }
END_TEST

START_TEST(test_softmax_large_k) { softmax_sweep(KDCL_SOFTMAX_SMALL_K + 1, 1u << 30); }
END_TEST

/* Equal logits give exactly-representable uniform outputs' neighbourhood;
 * in-place operation (out == z) on both paths. */
START_TEST(test_softmax_in_place_and_uniform)
{
    static const size_t ks[] = {10, 1000};
    for (size_t i = 0; i < 2; i++) {
        size_t K = ks[i], B = 5, n = B * K;
        float *z = malloc(n * 4), *p = malloc(n * 4), *q = malloc(n * 4);
        tu_fill_uniform(z, n, -5, 5, 7 + K);
        for (size_t k = 0; k < K; k++) z[k] = 3.25f; /* row 0: all equal */
        kdcl_tensor a = tu_mat(B, K), b = tu_mat(B, K);
        tu_put(&a, z);
        tu_ok(kdcl_op_softmax(tu_ctx, &a, &b, 2.0f, 0), "softmax");
        tu_get(&b, p);
        tu_ok(kdcl_op_softmax(tu_ctx, &a, &a, 2.0f, 0), "softmax in place");
        tu_get(&a, q);
        ck_assert_msg(memcmp(p, q, n * 4) == 0, "in-place softmax differs (K=%zu)", K);
        for (size_t k = 0; k < K; k++)
            ck_assert_msg(fabs(p[k] - 1.0 / K) <= SAFETY * (tu_gamma_n(K) + 14 * U) / K,
                          "uniform row: p=%g want %g", (double)p[k], 1.0 / K);
        tu_put(&a, z);
        tu_ok(kdcl_op_softmax(tu_ctx, &a, &b, 0.5f, 1), "log-softmax");
        tu_get(&b, p);
        tu_ok(kdcl_op_softmax(tu_ctx, &a, &a, 0.5f, 1), "log-softmax in place");
        tu_get(&a, q);
        ck_assert_msg(memcmp(p, q, n * 4) == 0, "in-place log-softmax differs (K=%zu)", K);
        kdcl_tensor_free(tu_ctx, &a);
        kdcl_tensor_free(tu_ctx, &b);
        free(z);
        free(p);
        free(q);
    }
}
END_TEST

/* ---- argmax ---- */

/* Rows with a unique max (by a margin) at a random place; every 4th row has an
 * exact tie of the max at a later position too, every 9th is constant. */
static void make_argmax_rows(float *z, size_t B, size_t K, float sc, uint64_t seed)
{
    tu_fill_uniform(z, B * K, -sc, sc, seed);
    for (size_t b = 0; b < B; b++) {
        float *r = z + b * K;
        size_t j = rnd() % K;
        r[j] = sc * 1.01f + 1.0f;
        if (b % 4 == 1 && j + 1 < K) r[j + 1 + rnd() % (K - j - 1)] = r[j]; /* later tie */
        if (b % 4 == 3) r[rnd() % K] = r[j]; /* tie anywhere, maybe earlier */
        if (b % 9 == 5)
            for (size_t k = 0; k < K; k++) r[k] = -2.5f;
    }
}

START_TEST(test_argmax)
{
    for (size_t ki = 0; ki < NELEM(Ks); ki++)
        for (size_t bi = 0; bi < NELEM(Bs); bi++)
            for (size_t si = 0; si < NELEM(Ss); si++) {
                size_t K = Ks[ki], B = Bs[bi], n = B * K;
                float *z = malloc(n * 4);
                int *idx = malloc(B * 4);
                make_argmax_rows(z, B, K, Ss[si], K + 31 * B + si);
                kdcl_tensor dz = tu_mat(B, K), di = tu_vec(KDCL_I32, B);
                tu_put(&dz, z);
                tu_ok(kdcl_op_argmax(tu_ctx, &dz, &di), "argmax");
                tu_get(&di, idx);
                for (size_t b = 0; b < B; b++)
                    ck_assert_msg((size_t)idx[b] == first_argmax(z + b * K, K),
                                  "K=%zu B=%zu row %zu: argmax %d want %zu", K, B, b, idx[b],
                                  first_argmax(z + b * K, K));
                kdcl_tensor_free(tu_ctx, &dz);
                kdcl_tensor_free(tu_ctx, &di);
                free(z);
                free(idx);
            }
}
END_TEST

/* ---- cross-entropy ---- */

/* Checks loss and dz of rows against the reference; returns the worst ratio. */
static double check_xent(const float *z, const int *y, const float *loss, const float *dzh,
                         size_t B, size_t K, float g, const char *tag)
{
    double *lp = malloc(K * sizeof *lp), *delta = malloc(K * sizeof *delta), worst = 0;
    for (size_t b = 0; b < B; b++) {
        const float *zr = z + b * K;
        tu_rowref r = tu_ref_row(zr, K, 1.0, 0, lp, delta);
        if (loss) {
            double L = -lp[y[b]], Lh = loss[b];
            double t = SAFETY * (delta[y[b]] + r.E + 8 * U * fabs(r.logS) + U * L) + 1e-30;
            if (!(fabs(Lh - L) <= t))
                ck_abort_msg("%s K=%zu B=%zu row %zu: loss %.9g want %.9g (tol %.3g)", tag, K, B,
                             b, Lh, L, t);
            if (fabs(Lh - L) / t > worst) worst = fabs(Lh - L) / t;
        }
        if (dzh)
            for (size_t k = 0; k < K; k++) {
                double p = exp(lp[k]), hot = (int)k == y[b];
                double want = g * (p - hot), got = dzh[b * K + k];
                double t = SAFETY * fabs(g) * (p * (delta[k] + r.E + 14 * U) + 2 * U * fabs(p - hot)) +
                           fabs(g) * TINY;
                if (!(fabs(got - want) <= t))
                    ck_abort_msg("%s K=%zu B=%zu row %zu col %zu: dz %.9g want %.9g (tol %.3g)",
                                 tag, K, B, b, k, got, want, t);
                if (t > 0 && fabs(got - want) / t > worst) worst = fabs(got - want) / t;
            }
    }
    free(lp);
    free(delta);
    return worst;
}

START_TEST(test_xent)
{
    double worst = 0;
    for (size_t ki = 0; ki < NELEM(Ks); ki++)
        for (size_t bi = 0; bi < NELEM(Bs); bi++)
            for (size_t si = 0; si < NELEM(Ss); si++) {
                size_t K = Ks[ki], B = Bs[bi], n = B * K;
                float *z = malloc(n * 4), *loss = malloc(B * 4), *dzh = malloc(n * 4);
                int *y = malloc(B * 4);
                make_argmax_rows(z, B, K, Ss[si], 5 * K + B + si);
                if (si == 0) tu_fill_uniform(z, n, -1, 1, K + B); /* plain random rows too */
                /* about half the rows labelled with their argmax (correct), some
                 * with a tied later max (an error: first max wins), others random */
                int want_err = 3; /* initial accumulator value */
                for (size_t b = 0; b < B; b++) {
                    size_t a = first_argmax(z + b * K, K);
                    y[b] = (rnd() & 1) ? (int)a : (int)(rnd() % K);
                    if (b % 4 == 1 && K > 1) /* label a later tied max when there is one */
                        for (size_t k = K; k-- > a + 1;)
                            if (z[b * K + k] == z[b * K + a]) {
                                y[b] = (int)k;
                                break;
                            }
                    want_err += (size_t)y[b] != a;
                }
                kdcl_tensor dz = tu_mat(B, K), dd = tu_mat(B, K), dy = tu_vec(KDCL_I32, B),
                            dl = tu_vec(KDCL_F32, B), de = tu_vec(KDCL_I32, 1);
                int e0 = 3, errs = 0;
                tu_put(&dz, z);
                tu_put(&dy, y);
                tu_put(&de, &e0);
                const float g = 1.0f / (float)B;
                tu_ok(kdcl_op_softmax_xent(tu_ctx, &dz, &dy, &dl, &dd, g, &de), "xent");
                tu_get(&dl, loss);
                tu_get(&dd, dzh);
                tu_get(&de, &errs);
                ck_assert_msg(errs == want_err, "K=%zu B=%zu: errors %d want %d", K, B, errs,
                              want_err);
                double w = check_xent(z, y, loss, dzh, B, K, g, "xent");
                if (w > worst) worst = w;
                /* only some outputs; error count accumulates; dz in place of z
                 * with another grad_scale */
                tu_ok(kdcl_op_softmax_xent(tu_ctx, &dz, &dy, NULL, NULL, 0.0f, &de), "xent errors");
                tu_get(&de, &errs);
                ck_assert_int_eq(errs, 2 * want_err - 3);
                tu_ok(kdcl_op_softmax_xent(tu_ctx, &dz, &dy, NULL, &dz, -2.5f, NULL), "xent in place");
                tu_get(&dz, dzh);
                w = check_xent(z, y, NULL, dzh, B, K, -2.5f, "xent dz=z");
                if (w > worst) worst = w;
                kdcl_tensor_free(tu_ctx, &dz);
                kdcl_tensor_free(tu_ctx, &dd);
                kdcl_tensor_free(tu_ctx, &dy);
                kdcl_tensor_free(tu_ctx, &dl);
                kdcl_tensor_free(tu_ctx, &de);
                free(z);
                free(loss);
                free(dzh);
                free(y);
            }
    printf("xent: worst error / tolerance = %.3g\n", worst);
}
END_TEST

/* Labels outside [0, K): that row's loss and dz are NaN, it counts as an
 * error, and the other rows are unaffected. */
START_TEST(test_xent_bad_label)
{
    static const size_t ks[] = {10, 100};
    for (size_t i = 0; i < 2; i++) {
        size_t K = ks[i], B = 4, n = B * K;
        float z[400], loss[4], dzh[400];
        int y[4] = {1, -1, (int)K, 2}, errs = 0;
        tu_fill_uniform(z, n, -3, 3, 99 + K);
        kdcl_tensor dz = tu_mat(B, K), dd = tu_mat(B, K), dy = tu_vec(KDCL_I32, B), dl = tu_vec(KDCL_F32, B),
                    de = tu_vec(KDCL_I32, 1);
        tu_put(&dz, z);
        tu_put(&dy, y);
        tu_put(&de, &errs);
        tu_ok(kdcl_op_softmax_xent(tu_ctx, &dz, &dy, &dl, &dd, 1.0f, &de), "xent");
        tu_get(&dl, loss);
        tu_get(&dd, dzh);
        tu_get(&de, &errs);
        int want = 2 + ((size_t)y[0] != first_argmax(z, K)) + ((size_t)y[3] != first_argmax(z + 3 * K, K));
        ck_assert_int_eq(errs, want);
        for (size_t b = 1; b < 3; b++) {
            ck_assert_msg(isnan(loss[b]), "K=%zu row %zu: loss %g, want NaN", K, b, (double)loss[b]);
            for (size_t k = 0; k < K; k++) ck_assert(isnan(dzh[b * K + k]));
        }
        float z2[200], l2[2], d2[200];
        int y2[2] = {y[0], y[3]};
        memcpy(z2, z, K * 4);
        memcpy(z2 + K, z + 3 * K, K * 4);
        l2[0] = loss[0];
        l2[1] = loss[3];
        memcpy(d2, dzh, K * 4);
        memcpy(d2 + K, dzh + 3 * K, K * 4);
        check_xent(z2, y2, l2, d2, 2, K, 1.0f, "valid rows");
        kdcl_tensor_free(tu_ctx, &dz);
        kdcl_tensor_free(tu_ctx, &dd);
        kdcl_tensor_free(tu_ctx, &dy);
        kdcl_tensor_free(tu_ctx, &dl);
        kdcl_tensor_free(tu_ctx, &de);
    }
}
END_TEST

/* The gradient equals the central difference of the kernel's own loss.
 * fd = (L(z + h e_i) - L(z - h e_i)) / (h+ + h-), with h+/h- the steps actually
 * representable in float. Its error: the two losses' rounding bounds (above)
 * divided by the step, plus the truncation h^2/6 |d^3 L/dz_i^3| where
 * d^3/dz_i^3 logsumexp = p(1-p)(1-2p) <= 1/(6 sqrt 3) < 0.1; plus the dz bound.
 * With logits in [-1, 1] and h = 1e-2 this is ~2e-4 absolute for K = 5 (about
 * 1e-3 of a typical gradient entry). */
START_TEST(test_xent_finite_difference)
{
    static const size_t ks[] = {5, 37};
    const size_t B = 3;
    const float h = 1e-2f;
    for (size_t t = 0; t < 2; t++) {
        size_t K = ks[t], n = B * K, rows = 2 * n;
        float *z = malloc(n * 4), *dzh = malloc(n * 4), *zp = malloc(rows * K * 4),
              *lp = malloc(rows * 4);
        int y[3], *yp = malloc(rows * 4);
        double *hs = malloc(n * sizeof *hs);
        tu_fill_uniform(z, n, -1, 1, 4242 + K);
        for (size_t b = 0; b < B; b++) y[b] = (int)(rnd() % K);
        for (size_t b = 0; b < B; b++)
            for (size_t i = 0; i < K; i++) {
                size_t e = b * K + i;
                float *rp = zp + 2 * e * K, *rm = rp + K;
                memcpy(rp, z + b * K, K * 4);
                memcpy(rm, z + b * K, K * 4);
                rp[i] = z[e] + h;
                rm[i] = z[e] - h;
                hs[e] = ((double)rp[i] - z[e]) + (z[e] - (double)rm[i]);
                yp[2 * e] = yp[2 * e + 1] = y[b];
            }
        kdcl_tensor dz = tu_mat(B, K), dd = tu_mat(B, K), dy = tu_vec(KDCL_I32, B), zpt = tu_mat(rows, K),
                    ypt = tu_vec(KDCL_I32, rows), lpt = tu_vec(KDCL_F32, rows);
        tu_put(&dz, z);
        tu_put(&dy, y);
        tu_put(&zpt, zp);
        tu_put(&ypt, yp);
        tu_ok(kdcl_op_softmax_xent(tu_ctx, &dz, &dy, NULL, &dd, 1.0f, NULL), "xent dz");
        tu_ok(kdcl_op_softmax_xent(tu_ctx, &zpt, &ypt, &lpt, NULL, 1.0f, NULL), "xent perturbed");
        tu_get(&dd, dzh);
        tu_get(&lpt, lp);
        double *lr = malloc(K * sizeof *lr), *delta = malloc(K * sizeof *delta), worst = 0;
        for (size_t e = 0; e < n; e++) {
            double tl = 0;
            for (int s = 0; s < 2; s++) {
                tu_rowref r = tu_ref_row(zp + (2 * e + s) * K, K, 1.0, 0, lr, delta);
                int yy = yp[2 * e + s];
                tl += SAFETY * (delta[yy] + r.E + 8 * U * fabs(r.logS) + U * fabs(lr[yy]));
            }
            double fd = ((double)lp[2 * e] - lp[2 * e + 1]) / hs[e];
            double tol = tl / hs[e] + (double)h * h / 6 * 0.1 + 200 * U;
            double err = fabs(fd - dzh[e]);
            if (err / tol > worst) worst = err / tol;
            ck_assert_msg(err <= tol, "K=%zu entry %zu: dz %.7g, central difference %.7g (tol %.3g)",
                          K, e, (double)dzh[e], fd, tol);
        }
        printf("finite difference K=%zu: worst error / tolerance = %.3g\n", K, worst);
        kdcl_tensor_free(tu_ctx, &dz);
        kdcl_tensor_free(tu_ctx, &dd);
        kdcl_tensor_free(tu_ctx, &dy);
        kdcl_tensor_free(tu_ctx, &zpt);
        kdcl_tensor_free(tu_ctx, &ypt);
        kdcl_tensor_free(tu_ctx, &lpt);
        free(z);
        free(dzh);
        free(zp);
        free(lp);
        free(yp);
        free(hs);
        free(lr);
        free(delta);
    }
}
END_TEST

/* ---- reduce_add ---- */

/* Any summation order of n terms plus the accumulator: |err| <= gamma_{n+1}
 * (sum |x| + |acc|). */
START_TEST(test_reduce_add)
{
    static const size_t ns[] = {1, 2, 3, 255, 256, 257, 1000, 4099, 100000};
    for (size_t i = 0; i < NELEM(ns); i++)
        for (int pos = 0; pos < 2; pos++) {
            size_t n = ns[i], cap = n + 5;
            float *x = malloc(cap * 4), acc[4] = {1.5f, -2.0f, 10.0f, 7.0f}, out[4], out2[4];
            tu_fill_uniform(x, cap, pos ? 0.0f : -1.0f, 1.0f, n * 3 + (size_t)pos);
            kdcl_tensor dx = tu_vec(KDCL_F32, cap), da = tu_vec(KDCL_F32, 4);
            tu_put(&dx, x);
            tu_put(&da, acc);
            tu_ok(kdcl_op_reduce_add(tu_ctx, &dx, n, &da, 2), "reduce_add");
            tu_ok(kdcl_op_reduce_add(tu_ctx, &dx, n, &da, 2), "reduce_add again");
            tu_get(&da, out);
            double sum = 0, mag = 0;
            for (size_t j = 0; j < n; j++) {
                sum += x[j];
                mag += fabs(x[j]);
            }
            double want = 10.0 + 2 * sum;
            double tol = 2 * tu_gamma_n(n + 1) * (mag + 10.0 + fabs(sum)) + 1e-30;
            ck_assert_msg(fabs(out[2] - want) <= tol, "n=%zu: acc %.9g want %.9g (tol %.3g)", n,
                          (double)out[2], want, tol);
            ck_assert(out[0] == acc[0] && out[1] == acc[1] && out[3] == acc[3]);
            /* deterministic: the same inputs give the same bits */
            tu_put(&da, acc);
            tu_ok(kdcl_op_reduce_add(tu_ctx, &dx, n, &da, 2), "reduce_add");
            tu_ok(kdcl_op_reduce_add(tu_ctx, &dx, n, &da, 2), "reduce_add again");
            tu_get(&da, out2);
            ck_assert_msg(memcmp(out, out2, sizeof out) == 0, "n=%zu: not deterministic", n);
            kdcl_tensor_free(tu_ctx, &dx);
            kdcl_tensor_free(tu_ctx, &da);
            free(x);
        }
    /* n == 0 leaves acc alone; index 0 and 3 */
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, acc[4] = {0}, out[4];
    kdcl_tensor dx = tu_vec(KDCL_F32, 8), da = tu_vec(KDCL_F32, 4);
    tu_put(&dx, x);
    tu_put(&da, acc);
    tu_ok(kdcl_op_reduce_add(tu_ctx, &dx, 0, &da, 1), "reduce_add n=0");
    tu_ok(kdcl_op_reduce_add(tu_ctx, &dx, 8, &da, 0), "reduce_add");
    tu_ok(kdcl_op_reduce_add(tu_ctx, &dx, 3, &da, 3), "reduce_add");
    tu_get(&da, out);
    ck_assert(out[0] == 36.0f && out[1] == 0.0f && out[2] == 0.0f && out[3] == 6.0f);
    kdcl_tensor_free(tu_ctx, &dx);
    kdcl_tensor_free(tu_ctx, &da);
}
END_TEST

/* ---- confusion ---- */

START_TEST(test_confusion)
{
    static const size_t ks[] = {1, 3, 10, 33, 100};
    for (size_t i = 0; i < NELEM(ks); i++) {
        size_t K = ks[i], B = 128, n = B * K;
        float *z = malloc(n * 4);
        int *y = malloc(B * 4), *conf = calloc(K * K, 4), *want = calloc(K * K, 4);
        make_argmax_rows(z, B, K, 30.0f, 77 + K);
        for (size_t b = 0; b < B; b++) y[b] = (int)(rnd() % K);
        y[5] = -1;       /* skipped */
        y[6] = (int)K;   /* skipped */
        for (size_t b = 0; b < B; b++)
            if (y[b] >= 0 && (size_t)y[b] < K) want[(size_t)y[b] * K + first_argmax(z + b * K, K)] += 2;
        kdcl_tensor dz = tu_mat(B, K), dy = tu_vec(KDCL_I32, B), dc = tu_vec(KDCL_I32, K * K);
        tu_put(&dz, z);
        tu_put(&dy, y);
        tu_put(&dc, conf);
        tu_ok(kdcl_op_confusion(tu_ctx, &dz, &dy, &dc), "confusion");
        tu_ok(kdcl_op_confusion(tu_ctx, &dz, &dy, &dc), "confusion again");
        tu_get(&dc, conf);
        for (size_t j = 0; j < K * K; j++)
            ck_assert_msg(conf[j] == want[j], "K=%zu: conf[%zu][%zu] = %d want %d", K, j / K,
                          j % K, conf[j], want[j]);
        kdcl_tensor_free(tu_ctx, &dz);
        kdcl_tensor_free(tu_ctx, &dy);
        kdcl_tensor_free(tu_ctx, &dc);
        free(z);
        free(y);
        free(conf);
        free(want);
    }
}
END_TEST

/* ---- argument validation ---- */

static void expect_invalid(kdcl_status s, const char *op, const char *what)
{
    ck_assert_msg(s == KDCL_ERR_INVALID_ARG, "%s: got %s, want KDCL_ERR_INVALID_ARG", what,
                  kdcl_status_name(s));
    ck_assert_msg(strstr(kdcl_last_error(), op) != NULL, "%s: message '%s' does not name %s",
                  what, kdcl_last_error(), op);
}

START_TEST(test_bad_arguments)
{
    kdcl_tensor z = tu_mat(4, 10), out = tu_mat(4, 10), out2 = tu_mat(4, 11), z1 = tu_vec(KDCL_F32, 40),
                zi = tu_vec(KDCL_I32, 40), y = tu_vec(KDCL_I32, 4), y5 = tu_vec(KDCL_I32, 5),
                yf = tu_vec(KDCL_F32, 4), l = tu_vec(KDCL_F32, 4), l3 = tu_vec(KDCL_F32, 3),
                e = tu_vec(KDCL_I32, 1), c = tu_vec(KDCL_I32, 100), c2 = tu_vec(KDCL_I32, 99);
    kdcl_tensor zi2;
    tu_ok(kdcl_tensor_alloc2(tu_ctx, &zi2, KDCL_I32, 4, 10), "alloc");
    kdcl_tensor nobuf = z;
    nobuf.buf = NULL;
    const char *sm = "kdcl_op_softmax", *xe = "kdcl_op_softmax_xent";
    expect_invalid(kdcl_op_softmax(tu_ctx, &out2, &out, 1, 0), sm, "softmax out shape");
    expect_invalid(kdcl_op_softmax(tu_ctx, &z1, &z1, 1, 0), sm, "softmax rank 1");
    expect_invalid(kdcl_op_softmax(tu_ctx, &zi2, &out, 1, 0), sm, "softmax I32 z");
    expect_invalid(kdcl_op_softmax(tu_ctx, &z, &zi2, 1, 1), sm, "softmax I32 out");
    expect_invalid(kdcl_op_softmax(tu_ctx, &z, &out, 0.0f, 0), sm, "T = 0");
    expect_invalid(kdcl_op_softmax(tu_ctx, &z, &out, -1.0f, 0), sm, "T < 0");
    expect_invalid(kdcl_op_softmax(tu_ctx, &z, &out, NAN, 0), sm, "T NaN");
    expect_invalid(kdcl_op_softmax(tu_ctx, &z, &out, INFINITY, 0), sm, "T inf");
    expect_invalid(kdcl_op_softmax(tu_ctx, NULL, &out, 1, 0), sm, "z NULL");
    expect_invalid(kdcl_op_softmax(tu_ctx, &nobuf, &out, 1, 0), sm, "z without buffer");
    expect_invalid(kdcl_op_softmax(tu_ctx, &z, NULL, 1, 0), sm, "out NULL");
    expect_invalid(kdcl_op_softmax_xent(tu_ctx, &z, &y5, &l, NULL, 1, NULL), xe, "labels count");
    expect_invalid(kdcl_op_softmax_xent(tu_ctx, &z, &yf, &l, NULL, 1, NULL), xe, "labels F32");
    expect_invalid(kdcl_op_softmax_xent(tu_ctx, &z, NULL, &l, NULL, 1, NULL), xe, "labels NULL");
    expect_invalid(kdcl_op_softmax_xent(tu_ctx, &z, &y, &l3, NULL, 1, NULL), xe, "loss count");
    expect_invalid(kdcl_op_softmax_xent(tu_ctx, &z, &y, &y, NULL, 1, NULL), xe, "loss I32");
    expect_invalid(kdcl_op_softmax_xent(tu_ctx, &z, &y, &l, &out2, 1, NULL), xe, "dz shape");
    expect_invalid(kdcl_op_softmax_xent(tu_ctx, &z, &y, &l, &zi2, 1, NULL), xe, "dz I32");
    expect_invalid(kdcl_op_softmax_xent(tu_ctx, &z, &y, &l, NULL, 1, &l), xe, "errors F32");
    expect_invalid(kdcl_op_softmax_xent(tu_ctx, &z, &y, &l, NULL, NAN, NULL), xe, "grad_scale");
    expect_invalid(kdcl_op_softmax_xent(tu_ctx, &zi, &y, &l, NULL, 1, NULL), xe, "z I32 rank 1");
    expect_invalid(kdcl_op_argmax(tu_ctx, &z, &y5), "kdcl_op_argmax", "idx count");
    expect_invalid(kdcl_op_argmax(tu_ctx, &z, &l), "kdcl_op_argmax", "idx F32");
    expect_invalid(kdcl_op_confusion(tu_ctx, &z, &y, &c2), "kdcl_op_confusion", "conf size");
    expect_invalid(kdcl_op_confusion(tu_ctx, &z, &y5, &c), "kdcl_op_confusion", "labels count");
    expect_invalid(kdcl_op_reduce_add(tu_ctx, &l, 5, &e, 0), "kdcl_op_reduce_add", "acc I32");
    expect_invalid(kdcl_op_reduce_add(tu_ctx, &l, 5, &l, 0), "kdcl_op_reduce_add", "n > numel");
    expect_invalid(kdcl_op_reduce_add(tu_ctx, &l, 4, &l3, 3), "kdcl_op_reduce_add", "acc_index");
    expect_invalid(kdcl_op_reduce_add(tu_ctx, &y, 4, &l, 0), "kdcl_op_reduce_add", "x I32");
    /* messages carry the shapes */
    kdcl_op_softmax(tu_ctx, &z, &out2, 1, 0);
    ck_assert_msg(strstr(kdcl_last_error(), "[4, 11]") && strstr(kdcl_last_error(), "[4, 10]"),
                  "message lacks shapes: %s", kdcl_last_error());
    /* valid calls with everything optional left out */
    tu_ok(kdcl_op_softmax_xent(tu_ctx, &z, &y, NULL, NULL, 1, NULL), "xent with no outputs");
    kdcl_tensor *all[] = {&z, &out, &out2, &z1, &zi, &zi2, &y, &y5, &yf, &l, &l3, &e, &c, &c2};
    for (size_t i = 0; i < NELEM(all); i++) kdcl_tensor_free(tu_ctx, all[i]);
}
END_TEST

static Suite *softmax_suite(void)
{
    Suite *s = suite_create("softmax");
    TCase *tc = tcase_create("softmax");
    tcase_add_unchecked_fixture(tc, tu_ctx_setup, tu_ctx_teardown);
    tcase_set_timeout(tc, 1200);
    tcase_add_test(tc, test_bad_arguments);
    tcase_add_test(tc, test_softmax_small_k);
    tcase_add_test(tc, test_softmax_large_k);
    tcase_add_test(tc, test_softmax_in_place_and_uniform);
    tcase_add_test(tc, test_argmax);
    tcase_add_test(tc, test_xent);
    tcase_add_test(tc, test_xent_bad_label);
    tcase_add_test(tc, test_xent_finite_difference);
    tcase_add_test(tc, test_reduce_add);
    tcase_add_test(tc, test_confusion);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(softmax_suite()); }
