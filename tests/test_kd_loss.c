/* Distillation loss and ensemble soft targets (cl/kd_loss.cl via
 * include/kdcl/kd.h) against a double-precision CPU reference.
 *
 * Error model (u = 2^-24), the same as tests/test_softmax.c. Per row the
 * kernel forms x^_k = fl(z_k * fl(1/T)), m^ = max x^, d^_k = fl(x^_k - m^),
 * e^_k = exp(d^_k), s^ = sum e^_k. Scaling leaves the exponent argument with
 * the ABSOLUTE error delta_k = 2u(|x_k| + |m|) + u|x_k - m| (the first term is
 * 0 at T = 1, where x^ = z exactly), i.e. a RELATIVE error delta_k of e_k.
 * exp/log: 3 ulp allowed, we use 8u; division 6u; the sum of K nonnegative
 * terms adds at most gamma_K = Ku/(1-Ku) relative, so s^ is within
 * E = sum_j q_j delta_j + 8u + gamma_K of s relative. From these:
 *   q^_k = fmin(e^_k / s^, 1):    |q^ - q| <= q rho_k,  rho_k = delta_k + E + 14u
 *   log q^_k = d^_k - log s^:      |.| <= eps_k = delta_k + E + 8u|log s| + u|log q_k|
 * and the same for p when the targets are logits (probability targets are
 * exact inputs; log p_k then has error 8u|log p_k|). The kernel's soft loss is
 * cl * sum_k fl(p_k fl(log p_k - log q_k)), so with r_k = log p_k - log q_k:
 *   |KL^ - KL| <= sum_k p_k (eps^p_k + eps^q_k + |r_k| (rho^p_k + 2u)) + gamma_K sum_k p_k |r_k|
 * (gamma_K for summing K terms of either sign), plus 2u|L_soft| for rounding
 * cl = (1-alpha)T^2 to float and the product. Logit matching: fl(z-v)^2 has
 * 3u relative error, the sum gamma_K, the coefficient 2u. Cross-entropy as in
 * test_softmax: delta_y + E + 8u|log s| + u CE, then u for alpha * CE and u
 * for the final sum.
 * Gradient, before grad_scale g: soft KL cg (q rho^q + p rho^p + 3u|q-p|)
 * (subtraction, rounding of cg = (1-alpha)T, product), logit matching
 * 3u cg |z - v|, hard alpha (s rho^1 + 2u|s - [k=y]|); u for their sum and u
 * for the product with g. Denormal flushes get an absolute slack of 1e-37 per
 * flushed probability. Every bound is checked with a safety factor of 1.5 (the
 * bounds drop second-order terms).
 *
 * What the bounds mean in practice: at |z| = 1e4 and T = 1 the exponent
 * argument is off by up to u * 2e4 ~ 1e-3 in the far tail, but those q are
 * e^-(thousands); where p and q carry mass, |x - m| is small. A wrong
 * coefficient (T instead of T^2, a missing (1 - alpha)), index, stride or
 * reduction gives errors of O(loss) or O(p), orders of magnitude above. Error
 * counts are comparisons of stored floats and must match exactly. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdcl/kd.h"
#include "kdcl/kdcl.h"
#include "kdcl/loss.h"
#include "testutil.h"

#define U (1.0 / 16777216.0) /* 2^-24 */
#define SAFETY 1.5
#define TINY 1e-37 /* denormal flush of one probability: at most 2^-126 */

static const size_t Ks[] = {2, 3, 10, 31, 33, 100, 1000};
static const size_t Bs[] = {1, 7, 64};
static const float Ts[] = {1.0f, 2.0f, 4.0f, 20.0f, 100.0f, 0.05f}; /* 0.05: below 1 too */
static const float As[] = {0.0f, 0.1f, 1.0f};
static const float Ss[] = {1.0f, 30.0f, 1e4f};
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}

static size_t first_argmax(const float *z, size_t K)
{
    size_t a = 0;
    for (size_t k = 1; k < K; k++)
        if (z[k] > z[a]) a = k;
    return a;
}

/* ---- reference ---- */

/* The per-row softmax reference is tu_ref_row (testutil). */

typedef struct {
    kdcl_kd_mode mode;
    int tl; /* targets are logits */
    float T, alpha;
} kdcase;

typedef struct {
    double *lq, *dq, *lp, *dp, *l1, *d1; /* per-column scratch of ref_row */
    double *d, *td;                      /* reference gradient of a row and its bound */
} scratch;

static scratch scratch_new(size_t K)
{
    scratch w;
    double **all[] = {&w.lq, &w.dq, &w.lp, &w.dp, &w.l1, &w.d1, &w.d, &w.td};
    for (size_t i = 0; i < NELEM(all); i++) {
        *all[i] = malloc(K * sizeof(double));
        ck_assert(*all[i] != NULL);
    }
    return w;
}
static void scratch_free(scratch *w)
{
    double *all[] = {w->lq, w->dq, w->lp, w->dp, w->l1, w->d1, w->d, w->td};
    for (size_t i = 0; i < NELEM(all); i++) free(all[i]);
}

/* Reference loss *L of one row with its bound *tL, and the gradient w->d[k]
 * (before grad_scale) with bounds w->td[k] (both include SAFETY; the product
 * with grad_scale is left to the caller). y is ignored when alpha == 0. */
static void kd_ref(const kdcase *c, const float *z, const float *t, int y, size_t K, scratch *w,
                   double *L, double *tL)
{
    const double a = c->alpha, T = c->T;
    double Ls = 0, eLs = 0;
    for (size_t k = 0; k < K; k++) w->d[k] = w->td[k] = 0;
    if (a < 1 && c->mode == KDCL_KD_KL) {
        const double cl = (1 - a) * T * T, cg = (1 - a) * T;
        tu_rowref rq = tu_ref_row(z, K, T, T != 1, w->lq, w->dq), rp = {0, 0, 0};
        if (c->tl) rp = tu_ref_row(t, K, T, T != 1, w->lp, w->dp);
        double sum = 0, mag = 0, err = 0;
        for (size_t k = 0; k < K; k++) {
            const double q = exp(w->lq[k]), rhoq = w->dq[k] + rq.E + 14 * U;
            const double eq = w->dq[k] + rq.E + 8 * U * fabs(rq.logS) + U * fabs(w->lq[k]);
            double p, logp, ep, rhop;
            if (c->tl) {
                logp = w->lp[k];
                p = exp(logp);
                ep = w->dp[k] + rp.E + 8 * U * fabs(rp.logS) + U * fabs(logp);
                rhop = w->dp[k] + rp.E + 14 * U;
            } else {
                p = t[k];
                logp = p > 0 ? log(p) : 0;
                ep = 8 * U * fabs(logp);
                rhop = 0;
            }
            if (p > 0) {
                const double r = logp - w->lq[k];
                sum += p * r;
                mag += p * fabs(r);
                err += p * (ep + eq + fabs(r) * (rhop + 2 * U)) + TINY * fabs(r);
            }
            w->d[k] = cg * (q - p);
            w->td[k] = cg * (q * rhoq + p * rhop + 3 * U * fabs(q - p) + 2 * TINY);
        }
        Ls = cl * sum;
        eLs = cl * (err + tu_gamma_n(K) * mag) + 2 * U * fabs(Ls);
    } else if (a < 1) { /* logit matching */
        const double cl = 0.5 * (1 - a), cg = 1 - a;
        double sum = 0;
        for (size_t k = 0; k < K; k++) {
            const double dd = (double)z[k] - t[k];
            sum += dd * dd;
            w->d[k] = cg * dd;
            w->td[k] = 3 * U * cg * fabs(dd);
        }
        Ls = cl * sum;
        eLs = Ls * (3 * U + tu_gamma_n(K)) + 2 * U * Ls;
    }
    double Lh = 0, eLh = 0;
    if (a > 0) {
        tu_rowref r1 = tu_ref_row(z, K, 1.0, 0, w->l1, w->d1);
        const double ce = -w->l1[y];
        Lh = a * ce;
        eLh = a * (w->d1[y] + r1.E + 8 * U * fabs(r1.logS) + U * ce) + U * Lh;
        for (size_t k = 0; k < K; k++) {
            const double s = exp(w->l1[k]), hot = (int)k == y;
            w->d[k] += a * (s - hot);
            w->td[k] += a * (s * (w->d1[k] + r1.E + 14 * U) + 2 * U * fabs(s - hot) + TINY);
        }
    }
    *L = Ls + Lh;
    *tL = SAFETY * (eLs + eLh + U * fabs(*L)) + 1e-30;
    for (size_t k = 0; k < K; k++) w->td[k] = SAFETY * (w->td[k] + U * fabs(w->d[k]));
}

static const char *case_str(const kdcase *c, char *buf, size_t n)
{
    snprintf(buf, n, "%s %s T=%g alpha=%g", c->mode == KDCL_KD_KL ? "KL" : "LOGITS",
             c->tl ? "logit-targets" : "prob-targets", (double)c->T, (double)c->alpha);
    return buf;
}

/* Checks the kernel's loss (may be NULL) and dz (may be NULL; grad_scale g)
 * against kd_ref; returns the worst error / tolerance. */
static double check_kd(const kdcase *c, const float *z, const float *t, const int *y, size_t B,
                       size_t K, const float *loss, const float *dzh, float g, scratch *w,
                       const char *tag)
{
    double worst = 0;
    char cs[96];
    for (size_t b = 0; b < B; b++) {
        double L, tL;
        kd_ref(c, z + b * K, t + b * K, y ? y[b] : 0, K, w, &L, &tL);
        if (loss) {
            const double e = fabs(loss[b] - L);
            if (!(e <= tL))
                ck_abort_msg("%s %s K=%zu B=%zu row %zu: loss %.9g want %.9g (tol %.3g)", tag,
                             case_str(c, cs, sizeof cs), K, B, b, (double)loss[b], L, tL);
            if (e / tL > worst) worst = e / tL;
        }
        if (dzh)
            for (size_t k = 0; k < K; k++) {
                const double want = (double)g * w->d[k], got = dzh[b * K + k];
                const double tol = fabs(g) * w->td[k] + SAFETY * U * fabs(want) + 1e-38;
                const double e = fabs(got - want);
                if (!(e <= tol))
                    ck_abort_msg("%s %s K=%zu B=%zu row %zu col %zu: dz %.9g want %.9g (tol %.3g)",
                                 tag, case_str(c, cs, sizeof cs), K, B, b, k, got, want, tol);
                if (e / tol > worst) worst = e / tol;
            }
    }
    return worst;
}

/* ---- inputs ---- */

/* Teacher logits v correlated with the student's z (scale sc), and
 * probability targets derived from them: p = softmax(8 v / sc) in double with
 * every 4th entry zeroed and every 5th row one-hot, renormalised, rounded to
 * float (entries are 0 or >= ~e^-16 / K: no denormals). */
static void make_targets(const float *z, float *v, float *p, size_t B, size_t K, float sc,
                         uint64_t seed)
{
    tu_fill_uniform(v, B * K, -sc, sc, seed);
    for (size_t i = 0; i < B * K; i++) v[i] = 0.6f * z[i] + 0.4f * v[i];
    double *e = malloc(K * sizeof *e);
    for (size_t b = 0; b < B; b++) {
        const float *vr = v + b * K;
        double m = -INFINITY, s = 0;
        for (size_t k = 0; k < K; k++) m = fmax(m, 8.0 * vr[k] / sc);
        for (size_t k = 0; k < K; k++) {
            e[k] = exp(8.0 * vr[k] / sc - m);
            if (k % 4 == 3 || (b % 5 == 4 && k != b % K)) e[k] = 0;
            if (b % 5 == 4 && k == b % K) e[k] = 1;
            s += e[k];
        }
        if (s == 0) { /* every nonzero entry was zeroed (K small): one-hot at 0 */
            e[0] = s = 1;
        }
        for (size_t k = 0; k < K; k++) p[b * K + k] = (float)(e[k] / s);
    }
    free(e);
}

/* About half the labels are the row's argmax, the rest random. */
static int make_labels(const float *z, int *y, size_t B, size_t K)
{
    int err = 0;
    for (size_t b = 0; b < B; b++) {
        const size_t a = first_argmax(z + b * K, K);
        y[b] = (rnd() & 1) ? (int)a : (int)(rnd() % K);
        err += (size_t)y[b] != a;
    }
    return err;
}

/* ---- the sweep: every K, B, T, alpha, scale, target kind and mode ---- */

static void kd_sweep(size_t kmin, size_t kmax)
{
    double worst = 0;
    size_t calls = 0;
    for (size_t ki = 0; ki < NELEM(Ks); ki++) {
        const size_t K = Ks[ki];
        if (K < kmin || K > kmax) continue;
        scratch w = scratch_new(K);
        for (size_t bi = 0; bi < NELEM(Bs); bi++)
            for (size_t si = 0; si < NELEM(Ss); si++) {
                const size_t B = Bs[bi], n = B * K;
                float *z = malloc(n * 4), *v = malloc(n * 4), *p = malloc(n * 4),
                      *loss = malloc(B * 4), *dzh = malloc(n * 4);
                int *y = malloc(B * 4);
                ck_assert(z && v && p && loss && dzh && y);
                tu_fill_uniform(z, n, -Ss[si], Ss[si], K * 1000 + B * 10 + si);
                make_targets(z, v, p, B, K, Ss[si], K * 7 + B + si);
                const int nerr = make_labels(z, y, B, K);
                kdcl_tensor dz = tu_mat(B, K), dv = tu_mat(B, K), dp = tu_mat(B, K), dd = tu_mat(B, K),
                            dy = tu_vec(KDCL_I32, B), dl = tu_vec(KDCL_F32, B), de = tu_vec(KDCL_I32, 1);
                int e0 = 5, ecalls = 0, errs = 0;
                tu_put(&dz, z);
                tu_put(&dv, v);
                tu_put(&dp, p);
                tu_put(&dy, y);
                tu_put(&de, &e0);
                const float g = 1.0f / (float)B;
                for (int mode = 0; mode < 2; mode++)
                    for (size_t ti = 0; ti < NELEM(Ts); ti++)
                        for (size_t ai = 0; ai < NELEM(As); ai++)
                            for (int tl = 0; tl < 2; tl++) {
                                if (mode == KDCL_KD_LOGITS && (!tl || (ti != 0 && ti != 3)))
                                    continue; /* logit matching: logits only; T unused */
                                kdcase c = {(kdcl_kd_mode)mode, tl, Ts[ti], As[ai]};
                                /* alpha = 0 with probability targets: no labels at all */
                                const int nolab = As[ai] == 0.0f && !tl;
                                tu_ok(kdcl_op_kd_loss(tu_ctx, c.mode, &dz, tl ? &dv : &dp, tl,
                                                   nolab ? NULL : &dy, c.T, c.alpha, &dl, &dd, g,
                                                   nolab ? NULL : &de),
                                   "kd_loss");
                                ecalls += !nolab;
                                calls++;
                                tu_get(&dl, loss);
                                tu_get(&dd, dzh);
                                const double wr = check_kd(&c, z, tl ? v : p, nolab ? NULL : y, B,
                                                           K, loss, dzh, g, &w, "sweep");
                                if (wr > worst) worst = wr;
                            }
                tu_get(&de, &errs);
                ck_assert_msg(errs == e0 + ecalls * nerr, "K=%zu B=%zu: errors %d want %d", K, B,
                              errs, e0 + ecalls * nerr);
                kdcl_tensor *all[] = {&dz, &dv, &dp, &dd, &dy, &dl, &de};
                for (size_t i = 0; i < NELEM(all); i++) kdcl_tensor_free(tu_ctx, all[i]);
                free(z);
                free(v);
                free(p);
                free(loss);
                free(dzh);
                free(y);
            }
        scratch_free(&w);
    }
    printf("kd_loss %s path: %zu calls, worst error / tolerance = %.3g\n",
           kmin > KDCL_SOFTMAX_SMALL_K ? "work-group-per-row" : "row-per-work-item", calls, worst);
}

START_TEST(test_kd_small_k) { kd_sweep(1, KDCL_SOFTMAX_SMALL_K); }
END_TEST

START_TEST(test_kd_large_k) { kd_sweep(KDCL_SOFTMAX_SMALL_K + 1, 1u << 30); }
END_TEST

/* ---- finite differences of the kernel's own loss ----
 * fd = (L(z + h+ e_i) - L(z - h- e_i)) / (h+ + h-), h+/h- the steps actually
 * representable in float. |fd - dL/dz_i| <=
 *   (bound(L+) + bound(L-)) / (h+ + h-)          rounding of the two losses
 *   + |h+ - h-| / 2 * max|L''|                    unequal steps (first order)
 *   + max(h+, h-)^2 / 6 * max|L'''|               truncation
 * and the kernel's dz differs from dL/dz_i by its own bound. Per unit weight,
 * d^2/dz_i^2 of T^2 logsumexp(z/T) is q(1-q) <= 1/4 and d^3 is
 * q(1-q)(1-2q)/T <= 1/(6 sqrt 3 T) < 0.1/T; cross-entropy likewise at T = 1;
 * logit matching has L'' = 1 and L''' = 0. h = 1e-2 balances truncation
 * (~2e-6) against loss rounding over the step (~1e-7 * |L| / 2e-2): both far
 * below a typical gradient entry (~0.1), while a wrong coefficient or sign is
 * O(gradient). */
START_TEST(test_kd_finite_difference)
{
    static const size_t ks[] = {5, 37};
    const size_t B = 3;
    const float h = 1e-2f, T = 2.5f;
    double worst = 0;
    for (size_t ki = 0; ki < NELEM(ks); ki++) {
        const size_t K = ks[ki], n = B * K, rows = 2 * n;
        scratch w = scratch_new(K);
        float *z = malloc(n * 4), *v = malloc(n * 4), *p = malloc(n * 4), *dzh = malloc(n * 4),
              *zp = malloc(rows * K * 4), *vp = malloc(rows * K * 4), *pp = malloc(rows * K * 4),
              *lp = malloc(rows * 4);
        int y[3], *yp = malloc(rows * 4);
        double *hs = malloc(n * sizeof *hs), *hd = malloc(n * sizeof *hd),
               *hm = malloc(n * sizeof *hm);
        tu_fill_uniform(z, n, -2, 2, 4242 + K);
        make_targets(z, v, p, B, K, 2.0f, 99 + K);
        for (size_t b = 0; b < B; b++) y[b] = (int)(rnd() % K);
        for (size_t b = 0; b < B; b++)
            for (size_t i = 0; i < K; i++) {
                const size_t e = b * K + i;
                float *rp = zp + 2 * e * K, *rm = rp + K;
                memcpy(rp, z + b * K, K * 4);
                memcpy(rm, z + b * K, K * 4);
                rp[i] = z[e] + h;
                rm[i] = z[e] - h;
                const double hp = (double)rp[i] - z[e], hn = z[e] - (double)rm[i];
                hs[e] = hp + hn;
                hd[e] = fabs(hp - hn);
                hm[e] = fmax(hp, hn);
                for (int s = 0; s < 2; s++) {
                    memcpy(vp + (2 * e + s) * K, v + b * K, K * 4);
                    memcpy(pp + (2 * e + s) * K, p + b * K, K * 4);
                }
                yp[2 * e] = yp[2 * e + 1] = y[b];
            }
        kdcl_tensor dz = tu_mat(B, K), dv = tu_mat(B, K), dp = tu_mat(B, K), dd = tu_mat(B, K),
                    dy = tu_vec(KDCL_I32, B), zpt = tu_mat(rows, K), vpt = tu_mat(rows, K),
                    ppt = tu_mat(rows, K), ypt = tu_vec(KDCL_I32, rows), lpt = tu_vec(KDCL_F32, rows);
        tu_put(&dz, z);
        tu_put(&dv, v);
        tu_put(&dp, p);
        tu_put(&dy, y);
        tu_put(&zpt, zp);
        tu_put(&vpt, vp);
        tu_put(&ppt, pp);
        tu_put(&ypt, yp);
        for (int variant = 0; variant < 3; variant++)
            for (size_t ai = 0; ai < NELEM(As); ai++) {
                const int tl = variant != 1;
                kdcase c = {variant == 2 ? KDCL_KD_LOGITS : KDCL_KD_KL, tl, T, As[ai]};
                const kdcl_tensor *tg = tl ? &dv : &dp, *tgp = tl ? &vpt : &ppt;
                tu_ok(kdcl_op_kd_loss(tu_ctx, c.mode, &dz, tg, tl, &dy, T, c.alpha, NULL, &dd, 1.0f,
                                   NULL),
                   "kd dz");
                tu_ok(kdcl_op_kd_loss(tu_ctx, c.mode, &zpt, tgp, tl, &ypt, T, c.alpha, &lpt, NULL,
                                   1.0f, NULL),
                   "kd perturbed losses");
                tu_get(&dd, dzh);
                tu_get(&lpt, lp);
                const double a = c.alpha;
                const double c2 = c.mode == KDCL_KD_KL ? 0.25 : (1 - a) + 0.25 * a;
                const double c3 = c.mode == KDCL_KD_KL ? (1 - a) * 0.1 / T + 0.1 * a : 0.1 * a;
                const float *tt = tl ? vp : pp;
                for (size_t e = 0; e < n; e++) {
                    double tl2 = 0, L, tL;
                    for (int s = 0; s < 2; s++) {
                        const size_t r = 2 * e + s;
                        kd_ref(&c, zp + r * K, tt + r * K, yp[r], K, &w, &L, &tL);
                        tl2 += tL;
                    }
                    const size_t b = e / K, i = e % K;
                    kd_ref(&c, z + b * K, (tl ? v : p) + b * K, y[b], K, &w, &L, &tL);
                    const double fd = ((double)lp[2 * e] - lp[2 * e + 1]) / hs[e];
                    const double tol = tl2 / hs[e] + SAFETY * (hd[e] / 2 * c2 + hm[e] * hm[e] / 6 * c3) +
                                       w.td[i] + SAFETY * U * fabs(w.d[i]);
                    const double err = fabs(fd - dzh[e]);
                    if (err / tol > worst) worst = err / tol;
                    char cs[96];
                    ck_assert_msg(err <= tol,
                                  "%s K=%zu entry %zu: dz %.7g, central difference %.7g (tol %.3g)",
                                  case_str(&c, cs, sizeof cs), K, e, (double)dzh[e], fd, tol);
                }
            }
        kdcl_tensor *all[] = {&dz, &dv, &dp, &dd, &dy, &zpt, &vpt, &ppt, &ypt, &lpt};
        for (size_t i = 0; i < NELEM(all); i++) kdcl_tensor_free(tu_ctx, all[i]);
        void *mem[] = {z, v, p, dzh, zp, vp, pp, lp, yp, hs, hd, hm};
        for (size_t i = 0; i < NELEM(mem); i++) free(mem[i]);
        scratch_free(&w);
    }
    printf("finite difference: worst error / tolerance = %.3g\n", worst);
}
END_TEST

/* ---- KL of identical distributions ----
 * Logit targets equal to z: p and q come out of the same code on the same
 * data, so the kernel's KL and soft gradient are exactly 0 (asserted against
 * the rounding bounds, whose true value here is 0, and reported when exact).
 * Probability targets fl(softmax(z/T)): the true KL of the rounded p is tiny
 * (|.| <~ K u), and never negative beyond the rounding bound. */
START_TEST(test_kd_identical)
{
    static const size_t ks[] = {3, 10, 100, 1000};
    static const float ts[] = {1.0f, 4.0f, 20.0f, 100.0f};
    const size_t B = 7;
    size_t exact = 0, total = 0;
    for (size_t ki = 0; ki < NELEM(ks); ki++) {
        const size_t K = ks[ki], n = B * K;
        scratch w = scratch_new(K);
        float *z = malloc(n * 4), *p = malloc(n * 4), *loss = malloc(B * 4), *dzh = malloc(n * 4);
        tu_fill_uniform(z, n, -30, 30, 555 + K);
        kdcl_tensor dz = tu_mat(B, K), dp = tu_mat(B, K), dd = tu_mat(B, K), dl = tu_vec(KDCL_F32, B);
        tu_put(&dz, z);
        for (size_t ti = 0; ti < NELEM(ts); ti++) {
            const float T = ts[ti];
            kdcase c = {KDCL_KD_KL, 1, T, 0.0f};
            tu_ok(kdcl_op_kd_loss(tu_ctx, KDCL_KD_KL, &dz, &dz, 1, NULL, T, 0.0f, &dl, &dd, 1.0f,
                               NULL),
               "kd p == q");
            tu_get(&dl, loss);
            tu_get(&dd, dzh);
            check_kd(&c, z, z, NULL, B, K, loss, dzh, 1.0f, &w, "identical logits");
            for (size_t b = 0; b < B; b++) {
                int ex = loss[b] == 0.0f;
                for (size_t k = 0; k < K; k++) ex &= dzh[b * K + k] == 0.0f;
                exact += (size_t)ex;
                total++;
            }
            /* probability targets fl(softmax(z / T)) */
            for (size_t b = 0; b < B; b++) {
                double m = -INFINITY, s = 0;
                for (size_t k = 0; k < K; k++) m = fmax(m, (double)z[b * K + k] / T);
                for (size_t k = 0; k < K; k++) s += exp((double)z[b * K + k] / T - m);
                for (size_t k = 0; k < K; k++) {
                    double q = exp((double)z[b * K + k] / T - m) / s;
                    p[b * K + k] = q < 1e-30 ? 0.0f : (float)q; /* no denormal targets */
                }
            }
            tu_put(&dp, p);
            c.tl = 0;
            tu_ok(kdcl_op_kd_loss(tu_ctx, KDCL_KD_KL, &dz, &dp, 0, NULL, T, 0.0f, &dl, &dd, 1.0f,
                               NULL),
               "kd p = fl(q)");
            tu_get(&dl, loss);
            tu_get(&dd, dzh);
            check_kd(&c, z, p, NULL, B, K, loss, dzh, 1.0f, &w, "identical probabilities");
        }
        kdcl_tensor_free(tu_ctx, &dz);
        kdcl_tensor_free(tu_ctx, &dp);
        kdcl_tensor_free(tu_ctx, &dd);
        kdcl_tensor_free(tu_ctx, &dl);
        free(z);
        free(p);
        free(loss);
        free(dzh);
        scratch_free(&w);
    }
    printf("identical logits: %zu of %zu rows with loss and gradient exactly 0\n", exact, total);
}
END_TEST

/* ---- the T^2 factor: with alpha = 0, dL/dz = T (q - p) ----
 * Checked against q and p from the independent kdcl_op_softmax at the same T:
 * |dz - T(q^ - p^)| <= bound(dz) + T (q rho^q + p rho^p) (the softmax bound of
 * test_softmax). A kernel scaling by T^2 or 1 instead is off by a factor T.
 * And the high-temperature limit that makes the soft gradient's size
 * independent of T (paper section 2): T(q - p) -> ((z - mean z) - (v - mean v)) / K;
 * at T = 100 the kernel must be within the exact deviation from that limit
 * (computed in double) plus its bound, and that deviation must be small (< 5%
 * of the limit's largest entry for logits of size 3: it is O(|z| / T)). */
START_TEST(test_kd_temperature)
{
    static const size_t ks[] = {10, 100};
    const size_t B = 7;
    for (size_t ki = 0; ki < NELEM(ks); ki++) {
        const size_t K = ks[ki], n = B * K;
        scratch w = scratch_new(K);
        float *z = malloc(n * 4), *v = malloc(n * 4), *dzh = malloc(n * 4), *q = malloc(n * 4),
              *p = malloc(n * 4);
        double *ref_d = malloc(K * sizeof *ref_d);
        tu_fill_uniform(z, n, -3, 3, 31 + K);
        tu_fill_uniform(v, n, -3, 3, 37 + K);
        kdcl_tensor dz = tu_mat(B, K), dv = tu_mat(B, K), dd = tu_mat(B, K), dq = tu_mat(B, K), dp = tu_mat(B, K);
        tu_put(&dz, z);
        tu_put(&dv, v);
        double maxdev[NELEM(Ts)] = {0};
        for (size_t ti = 0; ti < NELEM(Ts); ti++) {
            const float T = Ts[ti];
            kdcase c = {KDCL_KD_KL, 1, T, 0.0f};
            tu_ok(kdcl_op_kd_loss(tu_ctx, KDCL_KD_KL, &dz, &dv, 1, NULL, T, 0.0f, NULL, &dd, 1.0f,
                               NULL),
               "kd");
            tu_ok(kdcl_op_softmax(tu_ctx, &dz, &dq, T, 0), "softmax z");
            tu_ok(kdcl_op_softmax(tu_ctx, &dv, &dp, T, 0), "softmax v");
            tu_get(&dd, dzh);
            tu_get(&dq, q);
            tu_get(&dp, p);
            for (size_t b = 0; b < B; b++) {
                double L, tL;
                kd_ref(&c, z + b * K, v + b * K, 0, K, &w, &L, &tL);
                memcpy(ref_d, w.d, K * sizeof *ref_d);
                tu_rowref rq = tu_ref_row(z + b * K, K, T, T != 1, w.lq, w.dq);
                tu_rowref rp = tu_ref_row(v + b * K, K, T, T != 1, w.lp, w.dp);
                double zm = 0, vm = 0, limmax = 0;
                for (size_t k = 0; k < K; k++) {
                    zm += z[b * K + k] / (double)K;
                    vm += v[b * K + k] / (double)K;
                }
                for (size_t k = 0; k < K; k++) {
                    const size_t e = b * K + k;
                    const double want = (double)T * ((double)q[e] - p[e]);
                    const double tol =
                        w.td[k] + SAFETY * U * fabs(ref_d[k]) +
                        SAFETY * T *
                            (exp(w.lq[k]) * (w.dq[k] + rq.E + 14 * U) +
                             exp(w.lp[k]) * (w.dp[k] + rp.E + 14 * U) + 2 * TINY);
                    ck_assert_msg(fabs(dzh[e] - want) <= tol,
                                  "K=%zu T=%g row %zu col %zu: dz %.9g, T (q - p) = %.9g (tol %.3g)",
                                  K, (double)T, b, k, (double)dzh[e], want, tol);
                    const double lim = ((z[e] - zm) - (v[e] - vm)) / (double)K;
                    limmax = fmax(limmax, fabs(lim));
                    const double dev = fabs(ref_d[k] - lim);
                    maxdev[ti] = fmax(maxdev[ti], dev);
                    if (T == 100.0f)
                        ck_assert_msg(fabs(dzh[e] - lim) <= dev + w.td[k] + SAFETY * U * fabs(ref_d[k]),
                                      "K=%zu T=100 row %zu col %zu: dz %.9g, limit %.9g, exact %.9g",
                                      K, b, k, (double)dzh[e], lim, ref_d[k]);
                }
                if (T == 100.0f)
                    ck_assert_msg(maxdev[ti] < 0.05 * limmax,
                                  "K=%zu: T=100 gradient deviates %.3g from its limit (max %.3g)",
                                  K, maxdev[ti], limmax);
            }
        }
        printf("K=%zu: max |T(q-p) - limit| at T =", K);
        for (size_t ti = 0; ti < NELEM(Ts); ti++) printf(" %g: %.3g", (double)Ts[ti], maxdev[ti]);
        printf("\n");
        kdcl_tensor *all[] = {&dz, &dv, &dd, &dq, &dp};
        for (size_t i = 0; i < NELEM(all); i++) kdcl_tensor_free(tu_ctx, all[i]);
        free(z);
        free(v);
        free(dzh);
        free(q);
        free(p);
        free(ref_d);
        scratch_free(&w);
    }
}
END_TEST

/* ---- alpha = 1 is the cross-entropy op ----
 * Both kernels evaluate the same float expressions on the same inputs (the
 * soft term is skipped); only the order of the row sum s may differ (the
 * work-group size is chosen per kernel). So each s^ is within gamma_K of the
 * same exact sum of the same rounded terms:
 *   |loss_kd - loss_xent| <= 2 gamma_K + 16u|log s| + 2u|L|
 *   |dz_kd - dz_xent|     <= |g| (p (2 gamma_K + 2u) + 4u |p - [k = y]|)
 * (SAFETY applied); typically they are bit-identical, which is reported. */
START_TEST(test_kd_alpha1_is_xent)
{
    static const size_t ks[] = {3, 10, 33, 1000};
    const size_t B = 64;
    size_t same = 0, total = 0;
    for (size_t ki = 0; ki < NELEM(ks); ki++)
        for (size_t si = 0; si < 2; si++)
            for (int variant = 0; variant < 3; variant++) {
                const size_t K = ks[ki], n = B * K;
                float *z = malloc(n * 4), *v = malloc(n * 4), *p = malloc(n * 4),
                      *l1 = malloc(B * 4), *l2 = malloc(B * 4), *d1 = malloc(n * 4),
                      *d2 = malloc(n * 4);
                int *y = malloc(B * 4), e1 = 0, e2 = 0;
                double *lp = malloc(K * sizeof *lp), *delta = malloc(K * sizeof *delta);
                tu_fill_uniform(z, n, -Ss[si], Ss[si], 3 * K + si);
                make_targets(z, v, p, B, K, Ss[si], 5 * K + si);
                make_labels(z, y, B, K);
                kdcl_tensor dz = tu_mat(B, K), dt = tu_mat(B, K), dd = tu_mat(B, K), dy = tu_vec(KDCL_I32, B),
                            dl = tu_vec(KDCL_F32, B), de = tu_vec(KDCL_I32, 1);
                const int tl = variant != 1;
                const kdcl_kd_mode mode = variant == 2 ? KDCL_KD_LOGITS : KDCL_KD_KL;
                const float g = 0.125f;
                tu_put(&dz, z);
                tu_put(&dt, tl ? v : p);
                tu_put(&dy, y);
                tu_put(&de, &e1);
                tu_ok(kdcl_op_kd_loss(tu_ctx, mode, &dz, &dt, tl, &dy, 3.0f, 1.0f, &dl, &dd, g, &de),
                   "kd alpha=1");
                tu_get(&dl, l1);
                tu_get(&dd, d1);
                tu_get(&de, &e1);
                tu_put(&de, &e2);
                tu_ok(kdcl_op_softmax_xent(tu_ctx, &dz, &dy, &dl, &dd, g, &de), "xent");
                tu_get(&dl, l2);
                tu_get(&dd, d2);
                tu_get(&de, &e2);
                ck_assert_int_eq(e1, e2);
                for (size_t b = 0; b < B; b++) {
                    tu_rowref r = tu_ref_row(z + b * K, K, 1.0, 0, lp, delta);
                    const double tl1 = SAFETY * (2 * tu_gamma_n(K) + 16 * U * fabs(r.logS) +
                                                 2 * U * fabs(l2[b])) + 1e-30;
                    ck_assert_msg(fabs(l1[b] - l2[b]) <= tl1,
                                  "K=%zu variant %d row %zu: kd loss %.9g, xent %.9g", K, variant,
                                  b, (double)l1[b], (double)l2[b]);
                    int eq = l1[b] == l2[b];
                    for (size_t k = 0; k < K; k++) {
                        const size_t e = b * K + k;
                        const double pk = exp(lp[k]), hot = (int)k == y[b];
                        const double td = SAFETY * fabs(g) *
                                              (pk * (2 * tu_gamma_n(K) + 2 * U) + 4 * U * fabs(pk - hot)) +
                                          fabs(g) * 2 * TINY;
                        ck_assert_msg(fabs(d1[e] - d2[e]) <= td,
                                      "K=%zu variant %d row %zu col %zu: kd dz %.9g, xent %.9g", K,
                                      variant, b, k, (double)d1[e], (double)d2[e]);
                        eq &= d1[e] == d2[e];
                    }
                    same += (size_t)eq;
                    total++;
                }
                kdcl_tensor *all[] = {&dz, &dt, &dd, &dy, &dl, &de};
                for (size_t i = 0; i < NELEM(all); i++) kdcl_tensor_free(tu_ctx, all[i]);
                void *mem[] = {z, v, p, l1, l2, d1, d2, y, lp, delta};
                for (size_t i = 0; i < NELEM(mem); i++) free(mem[i]);
            }
    printf("alpha = 1 vs kdcl_op_softmax_xent: %zu of %zu rows bit-identical\n", same, total);
}
END_TEST

/* ---- error counting, bad labels, only some outputs, dz in place of z ---- */

/* Rows with a unique max at a random place; every 4th row has an exact tie
 * of the max later on (the first max wins), every 9th is constant. */
static void make_argmax_rows(float *z, size_t B, size_t K, float sc, uint64_t seed)
{
    tu_fill_uniform(z, B * K, -sc, sc, seed);
    for (size_t b = 0; b < B; b++) {
        float *r = z + b * K;
        const size_t j = rnd() % K;
        r[j] = sc * 1.01f + 1.0f;
        if (b % 4 == 1 && j + 1 < K) r[j + 1 + rnd() % (K - j - 1)] = r[j];
        if (b % 9 == 5)
            for (size_t k = 0; k < K; k++) r[k] = -2.5f;
    }
}

START_TEST(test_kd_errors_and_outputs)
{
    static const size_t ks[] = {10, 100};
    const size_t B = 64;
    for (size_t ki = 0; ki < NELEM(ks); ki++) {
        const size_t K = ks[ki], n = B * K;
        scratch w = scratch_new(K);
        float *z = malloc(n * 4), *v = malloc(n * 4), *p = malloc(n * 4), *loss = malloc(B * 4),
              *dzh = malloc(n * 4), *d2 = malloc(n * 4);
        int *y = malloc(B * 4), *yv = malloc(B * 4);
        make_argmax_rows(z, B, K, 5.0f, 17 + K);
        make_targets(z, v, p, B, K, 5.0f, 19 + K);
        int want = 0;
        for (size_t b = 0; b < B; b++) {
            const size_t a = first_argmax(z + b * K, K);
            y[b] = (rnd() & 1) ? (int)a : (int)(rnd() % K);
            if (b % 4 == 1) /* label a later tied max when there is one: an error */
                for (size_t k = K; k-- > a + 1;)
                    if (z[b * K + k] == z[b * K + a]) {
                        y[b] = (int)k;
                        break;
                    }
            want += (size_t)y[b] != a;
        }
        kdcl_tensor dz = tu_mat(B, K), dv = tu_mat(B, K), dp = tu_mat(B, K), dd = tu_mat(B, K),
                    dy = tu_vec(KDCL_I32, B), dl = tu_vec(KDCL_F32, B), de = tu_vec(KDCL_I32, 1);
        int e = 2;
        tu_put(&dz, z);
        tu_put(&dv, v);
        tu_put(&dp, p);
        tu_put(&dy, y);
        tu_put(&de, &e);
        /* only the error count, for each mode and alpha */
        for (int mode = 0; mode < 2; mode++)
            for (size_t ai = 0; ai < NELEM(As); ai++)
                tu_ok(kdcl_op_kd_loss(tu_ctx, (kdcl_kd_mode)mode, &dz, &dv, 1, &dy, 2.0f, As[ai], NULL,
                                   NULL, 0.5f, &de),
                   "kd errors only");
        tu_get(&de, &e);
        ck_assert_msg(e == 2 + 6 * want, "K=%zu: errors %d want %d", K, e, 2 + 6 * want);
        /* loss only, dz only: the same values as when both are written */
        kdcase c = {KDCL_KD_KL, 0, 2.0f, 0.1f};
        tu_ok(kdcl_op_kd_loss(tu_ctx, c.mode, &dz, &dp, 0, &dy, c.T, c.alpha, &dl, NULL, 0.5f, NULL),
           "kd loss only");
        tu_ok(kdcl_op_kd_loss(tu_ctx, c.mode, &dz, &dp, 0, &dy, c.T, c.alpha, NULL, &dd, 0.5f, NULL),
           "kd dz only");
        tu_get(&dl, loss);
        tu_get(&dd, dzh);
        check_kd(&c, z, p, y, B, K, loss, dzh, 0.5f, &w, "partial outputs");
        tu_ok(kdcl_op_kd_loss(tu_ctx, KDCL_KD_KL, &dz, &dp, 0, &dy, 2.0f, 0.1f, NULL, NULL, 0.5f,
                           NULL),
           "kd no outputs");
        /* dz in place of z: bit-identical to the out-of-place result */
        for (int mode = 0; mode < 2; mode++) {
            tu_ok(kdcl_op_kd_loss(tu_ctx, (kdcl_kd_mode)mode, &dz, &dv, 1, &dy, 3.0f, 0.1f, NULL, &dd,
                               -1.5f, NULL),
               "kd out of place");
            tu_ok(kdcl_op_kd_loss(tu_ctx, (kdcl_kd_mode)mode, &dz, &dv, 1, &dy, 3.0f, 0.1f, NULL, &dz,
                               -1.5f, NULL),
               "kd in place");
            tu_get(&dd, dzh);
            tu_get(&dz, d2);
            ck_assert_msg(memcmp(dzh, d2, n * 4) == 0, "K=%zu mode %d: in-place dz differs", K,
                          mode);
            tu_put(&dz, z);
        }
        /* labels outside [0, K): NaN loss and dz rows when alpha > 0, always an error */
        memcpy(yv, y, B * 4);
        yv[3] = -1;
        yv[10] = (int)K;
        int bad_want = 0;
        for (size_t b = 0; b < B; b++)
            bad_want += yv[b] < 0 || (size_t)yv[b] >= K || (size_t)yv[b] != first_argmax(z + b * K, K);
        tu_put(&dy, yv);
        e = 0;
        tu_put(&de, &e);
        c.alpha = 0.1f;
        tu_ok(kdcl_op_kd_loss(tu_ctx, KDCL_KD_KL, &dz, &dp, 0, &dy, 2.0f, 0.1f, &dl, &dd, 1.0f, &de),
           "kd bad labels");
        tu_get(&dl, loss);
        tu_get(&dd, dzh);
        tu_get(&de, &e);
        ck_assert_msg(e == bad_want, "K=%zu: errors %d want %d", K, e, bad_want);
        for (size_t b = 0; b < B; b++) {
            const int badrow = b == 3 || b == 10;
            ck_assert_msg(isnan(loss[b]) == badrow, "K=%zu row %zu: loss %g", K, b, (double)loss[b]);
            for (size_t k = 0; k < K; k++) ck_assert(isnan(dzh[b * K + k]) == badrow);
        }
        /* alpha = 0: labels only feed the count; losses stay finite and right */
        c.alpha = 0.0f;
        tu_ok(kdcl_op_kd_loss(tu_ctx, KDCL_KD_KL, &dz, &dp, 0, &dy, 2.0f, 0.0f, &dl, &dd, 1.0f, &de),
           "kd bad labels alpha=0");
        tu_get(&dl, loss);
        tu_get(&dd, dzh);
        tu_get(&de, &e);
        ck_assert_int_eq(e, 2 * bad_want);
        check_kd(&c, z, p, NULL, B, K, loss, dzh, 1.0f, &w, "bad labels, alpha = 0");
        kdcl_tensor *all[] = {&dz, &dv, &dp, &dd, &dy, &dl, &de};
        for (size_t i = 0; i < NELEM(all); i++) kdcl_tensor_free(tu_ctx, all[i]);
        void *mem[] = {z, v, p, loss, dzh, d2, y, yv};
        for (size_t i = 0; i < NELEM(mem); i++) free(mem[i]);
        scratch_free(&w);
    }
}
END_TEST

/* ---- ensemble accumulation over 3 members, weights 1/3 ----
 * Probability averaging: acc = fl(fl(w p^1) + fl(w p^2)) ... with p^m within
 * p rho_m (as above), the products u, the two additions of nonnegative terms
 * 2u of the total: |acc - sum w p_m| <= sum_m w p_m (rho_m + u) + 2u sum_m w p_m.
 * Logit averaging: c = fl(w / T) and fl(c v) give 2u per term, two additions
 * of terms of either sign 2u sum |terms|. The first member overwrites an acc
 * filled with NaN (so it must not read it). */
START_TEST(test_ensemble)
{
    static const size_t ks[] = {2, 10, 33, 1000};
    static const size_t bs[] = {1, 64};
    static const float ts[] = {1.0f, 4.0f, 20.0f};
    static const float ss[] = {30.0f, 1e4f};
    const float wgt = 1.0f / 3.0f;
    double worst = 0;
    for (size_t ki = 0; ki < NELEM(ks); ki++)
        for (size_t bi = 0; bi < NELEM(bs); bi++)
            for (size_t si = 0; si < NELEM(ss); si++) {
                const size_t K = ks[ki], B = bs[bi], n = B * K;
                float *v = malloc(3 * n * 4), *acc = malloc(n * 4);
                double *ref = malloc(n * sizeof *ref), *tol = malloc(n * sizeof *tol),
                       *lp = malloc(K * sizeof *lp), *delta = malloc(K * sizeof *delta);
                tu_fill_uniform(v, 3 * n, -ss[si], ss[si], 900 + K + B + si);
                kdcl_tensor dv[3] = {tu_mat(B, K), tu_mat(B, K), tu_mat(B, K)}, da = tu_mat(B, K);
                for (int m = 0; m < 3; m++) tu_put(&dv[m], v + m * n);
                for (size_t ti = 0; ti < NELEM(ts); ti++)
                    for (int mode = 0; mode < 2; mode++) {
                        const float T = ts[ti];
                        tu_ok(kdcl_tensor_fill(tu_ctx, &da, NAN), "fill");
                        for (int m = 0; m < 3; m++)
                            tu_ok(kdcl_op_ensemble_accumulate(tu_ctx, (kdcl_ens_mode)mode, &dv[m], T,
                                                           wgt, m ? 1.0f : 0.0f, &da),
                               "ensemble");
                        tu_get(&da, acc);
                        for (size_t i = 0; i < n; i++) ref[i] = tol[i] = 0;
                        for (int m = 0; m < 3; m++)
                            for (size_t b = 0; b < B; b++) {
                                const float *vr = v + m * n + b * K;
                                if (mode == KDCL_ENS_PROB) {
                                    tu_rowref r = tu_ref_row(vr, K, T, T != 1, lp, delta);
                                    for (size_t k = 0; k < K; k++) {
                                        const double t = wgt * exp(lp[k]);
                                        ref[b * K + k] += t;
                                        tol[b * K + k] += t * (delta[k] + r.E + 14 * U + 3 * U) +
                                                          wgt * TINY;
                                    }
                                } else
                                    for (size_t k = 0; k < K; k++) {
                                        const double t = (double)wgt * vr[k] / T;
                                        ref[b * K + k] += t;
                                        tol[b * K + k] += 4 * U * fabs(t);
                                    }
                            }
                        for (size_t i = 0; i < n; i++) {
                            const double t = SAFETY * tol[i] + 1e-30, e = fabs(acc[i] - ref[i]);
                            ck_assert_msg(e <= t,
                                          "%s K=%zu B=%zu T=%g scale %g elem %zu: acc %.9g want "
                                          "%.9g (tol %.3g)",
                                          mode ? "logit" : "prob", K, B, (double)T,
                                          (double)ss[si], i, (double)acc[i], ref[i], t);
                            if (e / t > worst) worst = e / t;
                        }
                    }
                for (int m = 0; m < 3; m++) kdcl_tensor_free(tu_ctx, &dv[m]);
                kdcl_tensor_free(tu_ctx, &da);
                free(v);
                free(acc);
                free(ref);
                free(tol);
                free(lp);
                free(delta);
            }
    printf("ensemble: worst error / tolerance = %.3g\n", worst);
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
    kdcl_tensor z = tu_mat(4, 10), t = tu_mat(4, 10), t11 = tu_mat(4, 11), t5 = tu_mat(5, 10),
                z1 = tu_vec(KDCL_F32, 40), y = tu_vec(KDCL_I32, 4), y5 = tu_vec(KDCL_I32, 5),
                yf = tu_vec(KDCL_F32, 4), l = tu_vec(KDCL_F32, 4), l3 = tu_vec(KDCL_F32, 3),
                e = tu_vec(KDCL_I32, 1), acc = tu_mat(4, 10), acci;
    tu_ok(kdcl_tensor_alloc2(tu_ctx, &acci, KDCL_I32, 4, 10), "alloc");
    const char *kd = "kdcl_op_kd_loss", *en = "kdcl_op_ensemble_accumulate";
    const kdcl_kd_mode KL = KDCL_KD_KL, LG = KDCL_KD_LOGITS;
    expect_invalid(kdcl_op_kd_loss(tu_ctx, KL, &z, &t, 1, &y, 0.0f, 0.5f, &l, &t, 1, &e), kd,
                   "T = 0");
    expect_invalid(kdcl_op_kd_loss(tu_ctx, KL, &z, &t, 1, &y, -2.0f, 0.5f, &l, NULL, 1, NULL), kd,
                   "T < 0");
    expect_invalid(kdcl_op_kd_loss(tu_ctx, KL, &z, &t, 1, &y, NAN, 0.5f, &l, NULL, 1, NULL), kd,
                   "T NaN");
    expect_invalid(kdcl_op_kd_loss(tu_ctx, KL, &z, &t, 1, &y, INFINITY, 0.5f, &l, NULL, 1, NULL),
                   kd, "T inf");
    expect_invalid(kdcl_op_kd_loss(tu_ctx, KL, &z, &t, 1, &y, 2, -0.1f, &l, NULL, 1, NULL), kd,
                   "alpha < 0");
    expect_invalid(kdcl_op_kd_loss(tu_ctx, KL, &z, &t, 1, &y, 2, 1.1f, &l, NULL, 1, NULL), kd,
                   "alpha > 1");
    expect_invalid(kdcl_op_kd_loss(tu_ctx, KL, &z, &t, 1, &y, 2, NAN, &l, NULL, 1, NULL), kd,
                   "alpha NaN");
    expect_invalid(kdcl_op_kd_loss(tu_ctx, KL, &z, &t11, 1, &y, 2, 0.5f, &l, NULL, 1, NULL), kd,
                   "targets K");
    expect_invalid(kdcl_op_kd_loss(tu_ctx, KL, &z, &t5, 1, &y, 2, 0.5f, &l, NULL, 1, NULL), kd,
                   "targets B");
    expect_invalid(kdcl_op_kd_loss(tu_ctx, KL, &z, NULL, 1, &y, 2, 0.5f, &l, NULL, 1, NULL), kd,
                   "targets NULL");
    expect_invalid(kdcl_op_kd_loss(tu_ctx, KL, NULL, &t, 1, &y, 2, 0.5f, &l, NULL, 1, NULL), kd,
                   "z NULL");
    expect_invalid(kdcl_op_kd_loss(tu_ctx, KL, &z1, &z1, 1, &y, 2, 0.5f, &l, NULL, 1, NULL), kd,
                   "z rank 1");
    expect_invalid(kdcl_op_kd_loss(tu_ctx, KL, &z, &t, 1, &y5, 2, 0.5f, &l, NULL, 1, NULL), kd,
                   "labels count");
    expect_invalid(kdcl_op_kd_loss(tu_ctx, KL, &z, &t, 1, &yf, 2, 0.5f, &l, NULL, 1, NULL), kd,
                   "labels F32");
    expect_invalid(kdcl_op_kd_loss(tu_ctx, KL, &z, &t, 1, &y, 2, 0.5f, &l3, NULL, 1, NULL), kd,
                   "loss count");
    expect_invalid(kdcl_op_kd_loss(tu_ctx, KL, &z, &t, 1, &y, 2, 0.5f, &y, NULL, 1, NULL), kd,
                   "loss I32");
    expect_invalid(kdcl_op_kd_loss(tu_ctx, KL, &z, &t, 1, &y, 2, 0.5f, &l, &t11, 1, NULL), kd,
                   "dz shape");
    expect_invalid(kdcl_op_kd_loss(tu_ctx, KL, &z, &t, 1, &y, 2, 0.5f, &l, NULL, 1, &l), kd,
                   "errors F32");
    expect_invalid(kdcl_op_kd_loss(tu_ctx, KL, &z, &t, 1, &y, 2, 0.5f, &l, NULL, NAN, NULL), kd,
                   "grad_scale NaN");
    expect_invalid(kdcl_op_kd_loss(tu_ctx, LG, &z, &t, 0, &y, 2, 0.5f, &l, NULL, 1, NULL), kd,
                   "LOGITS mode with probability targets");
    expect_invalid(kdcl_op_kd_loss(tu_ctx, KL, &z, &t, 1, NULL, 2, 0.5f, &l, NULL, 1, NULL), kd,
                   "alpha > 0 without labels");
    expect_invalid(kdcl_op_kd_loss(tu_ctx, KL, &z, &t, 1, NULL, 2, 1.0f, &l, NULL, 1, NULL), kd,
                   "alpha = 1 without labels");
    expect_invalid(kdcl_op_kd_loss(tu_ctx, KL, &z, &t, 1, NULL, 2, 0.0f, &l, NULL, 1, &e), kd,
                   "errors without labels");
    expect_invalid(kdcl_op_kd_loss(tu_ctx, (kdcl_kd_mode)7, &z, &t, 1, &y, 2, 0.5f, &l, NULL, 1,
                                   NULL),
                   kd, "unknown mode");
    expect_invalid(kdcl_op_ensemble_accumulate(tu_ctx, KDCL_ENS_PROB, &z, 0.0f, 1, 0, &acc), en,
                   "ensemble T = 0");
    expect_invalid(kdcl_op_ensemble_accumulate(tu_ctx, KDCL_ENS_LOGIT, &z, -1.0f, 1, 0, &acc), en,
                   "ensemble T < 0");
    expect_invalid(kdcl_op_ensemble_accumulate(tu_ctx, KDCL_ENS_PROB, &z, 1, 1, 0, &t11), en,
                   "ensemble acc shape");
    expect_invalid(kdcl_op_ensemble_accumulate(tu_ctx, KDCL_ENS_PROB, &z, 1, 1, 0, &acci), en,
                   "ensemble acc I32");
    expect_invalid(kdcl_op_ensemble_accumulate(tu_ctx, KDCL_ENS_PROB, &z, 1, NAN, 0, &acc), en,
                   "ensemble w NaN");
    expect_invalid(kdcl_op_ensemble_accumulate(tu_ctx, KDCL_ENS_PROB, &z, 1, 1, INFINITY, &acc), en,
                   "ensemble beta inf");
    expect_invalid(kdcl_op_ensemble_accumulate(tu_ctx, (kdcl_ens_mode)3, &z, 1, 1, 0, &acc), en,
                   "ensemble mode");
    expect_invalid(kdcl_op_ensemble_accumulate(tu_ctx, KDCL_ENS_PROB, &z1, 1, 1, 0, &z1), en,
                   "ensemble rank 1");
    /* messages carry the shapes */
    kdcl_op_kd_loss(tu_ctx, KL, &z, &t11, 1, &y, 2, 0.5f, &l, NULL, 1, NULL);
    ck_assert_msg(strstr(kdcl_last_error(), "[4, 11]") && strstr(kdcl_last_error(), "[4, 10]"),
                  "message lacks shapes: %s", kdcl_last_error());
    /* valid calls: nothing requested; alpha = 0 without labels */
    tu_ok(kdcl_op_kd_loss(tu_ctx, KL, &z, &t, 1, &y, 2, 0.5f, NULL, NULL, 1, NULL), "no outputs");
    tu_ok(kdcl_op_kd_loss(tu_ctx, KL, &z, &t, 0, NULL, 2, 0.0f, &l, NULL, 1, NULL),
       "alpha 0, no labels");
    tu_ok(kdcl_ctx_finish(tu_ctx), "finish");
    kdcl_tensor *all[] = {&z, &t, &t11, &t5, &z1, &y, &y5, &yf, &l, &l3, &e, &acc, &acci};
    for (size_t i = 0; i < NELEM(all); i++) kdcl_tensor_free(tu_ctx, all[i]);
}
END_TEST

static Suite *kd_loss_suite(void)
{
    Suite *s = suite_create("kd_loss");
    TCase *tc = tcase_create("kd_loss");
    tcase_add_unchecked_fixture(tc, tu_ctx_setup, tu_ctx_teardown);
    tcase_set_timeout(tc, 1200);
    tcase_add_test(tc, test_bad_arguments);
    tcase_add_test(tc, test_kd_small_k);
    tcase_add_test(tc, test_kd_large_k);
    tcase_add_test(tc, test_kd_finite_difference);
    tcase_add_test(tc, test_kd_identical);
    tcase_add_test(tc, test_kd_temperature);
    tcase_add_test(tc, test_kd_alpha1_is_xent);
    tcase_add_test(tc, test_kd_errors_and_outputs);
    tcase_add_test(tc, test_ensemble);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(kd_loss_suite()); }
