/* The KL combination of a generalist with its specialists (cl/specialists.cl
 * via kdcl_combine, include/kdcl/specialists.h section 3) against a
 * double-precision CPU reference of the same objective:
 *   F(w) = KL(p_g || q) + sum_{m in A} KL(p_m || q_m),  q = softmax(w),
 * with the same active set (the generalist's top-n classes, ties -> lower
 * index), the same gradient and the same step lr / (1 + |A|).
 *
 * Error model (u = 2^-24). The kernel's gradient
 *   g_j = (1 + |A|) q_j - T_j - sum_m [j notin S_m] p_m,d exp(w_j - mx_m) / E_m
 * is a sum of three parts each at most 1 + |A| in magnitude. Every
 * probability in it is exp(x - max) / sum with |x - max| <= R (R = the range
 * of w over the row and the trajectory, measured on the reference): the
 * exponent argument is off by u R, exp by 4u (OpenCL allows 3 ulp), the sum
 * of K terms by gamma_K ~ K u (plus, for the online log-sum-exp, rescalings
 * of the same size), the division by u. So |g^ - g| <= 2 (1 + |A|)(R + K + 16) u,
 * and one step w -= (lr / (1 + |A|)) g adds at most
 *   e = u W + 2 lr (R + K + 16) u                (W = max |w|)
 * to the error of w. The step map w -> w - (lr / (1 + |A|)) g(w) has Jacobian
 * I - (lr / (1 + |A|)) H with H / (1 + |A|) <= 1/2 (Loewner order: each KL
 * term's Hessian in w is at most that of log-sum-exp, whose eigenvalues are
 * <= 1/2), so for lr <= 4 it does not expand the error in directions of
 * nonnegative curvature; the dustbin terms add bounded negative curvature,
 * which over the few dozen steps of the trajectory test we treat as part of
 * the safety factor: the error after t steps is taken as t e (linear
 * accumulation), log q = w - lse(w) adds 2 t e + (R + K + 16) u, and the check
 * uses a factor SAFETY = 2 on the whole. It is a worst case: the observed
 * errors are 0.2% (trajectory test) to 7% (size sweep) of it. It still
 * discriminates: the test asserts that the same reference run with lr * 1.05
 * differs from the kernel by more than the bound on every row (by 4x to 100x),
 * and kernels with a 5% wrong step, specialists' probabilities 1% low, the
 * dustbin term dropped or taken relative to the global max, or ties broken
 * towards the higher index all fail the suite.
 *
 * Optimum: the reference also solves the objective with the EM fixed point
 *   q_j <- (T_j + sum_{m, j notin S_m} p_m,d q_j / Qd_m) / (1 + |A|)
 * (convex in q; iterated in double until a step changes q by < 1e-15). After
 * many steps the kernel's q must be within d_gd + OPT_FLOAT of q*, where d_gd
 * is how far the same number of gradient steps in double lands from q*
 * (the method's own error, asserted small for the rows used) and OPT_FLOAT
 * = 8 (R + K + 16) u is the float floor: at the float fixed point the
 * gradient is off by the |g^ - g| above, which moves q_j by at most that
 * amount over (1 + |A|) (the Hessian in a class's logit is ~ (1 + |A|) q_j,
 * and q_j's own sensitivity is q_j). The objective, in double at the kernel's
 * q renormalised (the rounding of log q leaves sum q off 1 by ~ K u |log q|,
 * a first-order change of F), may exceed the double run's by what a move of
 * OPT_FLOAT per class costs there: F's Hessian in q is ~ (1 + |A|) / q*_j, so
 * sum_j (1 + |A|) (|q_gd,j - q*_j| OPT_FLOAT + OPT_FLOAT^2) / q*_j.
 *
 * Rows with no active specialist return log softmax(z) in one pass: checked
 * against double with |z - m| u + (K + 8) u + 4 u |log s| + u |log p|
 * (test_softmax's model), times SAFETY. Active masks are integers and must
 * match exactly.
 *
 * The tests: bad arguments (every one KDCL_ERR_INVALID_ARG with a message
 * naming it); the optimum (K = 10, 100; 3000 steps); the trajectory (30 steps,
 * lr 1 and 3, K = 10, 100); the active set (top_n 1, 2 and K; overlapping
 * clusters; ties; uncovered top classes); a one-class specialist; K = 2 .. 1000
 * with M = 1, 3, 7 (including a cluster of every class); logits of +-1e3 with
 * complements whose exp underflows; a specialist overruling a confused
 * generalist; and the time of a batch with the default options (printed). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kdcl/kdcl.h"
#include "kdcl/specialists.h"
#include "testutil.h"

#define U TU_U
#define SAFETY 2.0

/* ---- random numbers ---- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double urand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}
static double nrand(void)
{
    double a = urand(), b = urand();
    return sqrt(-2.0 * log(a + 1e-300)) * cos(6.283185307179586 * b);
}
static size_t urand_below(size_t n) { return (size_t)(urand() * (double)n) % n; }

/* ---- problems: clusters, generalist logits, specialists' logits ---- */

typedef struct {
    size_t K, M, B;
    kdcl_clusters c;
    uint8_t *member; /* M x K */
    float *z;        /* B x K */
    float **spec;    /* M blocks of B x (|S_m| + 1) */
} prob;

static size_t nsm(const prob *p, size_t m) { return p->c.off[m + 1] - p->c.off[m]; }

/* Clusters from a membership bitmap (every cluster non-empty). */
static void prob_from_member(prob *p, size_t K, size_t M, size_t B, uint8_t *member)
{
    memset(p, 0, sizeof *p);
    p->K = K;
    p->M = M;
    p->B = B;
    p->member = member;
    p->c.K = K;
    p->c.M = M;
    p->c.off = malloc((M + 1) * sizeof *p->c.off);
    size_t n = 0;
    for (size_t i = 0; i < M * K; i++) n += member[i];
    p->c.cls = malloc((n ? n : 1) * sizeof *p->c.cls);
    p->c.off[0] = 0;
    for (size_t m = 0; m < M; m++) {
        size_t o = p->c.off[m];
        for (size_t k = 0; k < K; k++)
            if (member[m * K + k]) p->c.cls[o++] = (int32_t)k;
        ck_assert_msg(o > p->c.off[m], "test bug: empty cluster %zu", m);
        p->c.off[m + 1] = o;
    }
    p->z = calloc(B * K, sizeof *p->z);
    p->spec = calloc(M, sizeof *p->spec);
    for (size_t m = 0; m < M; m++) p->spec[m] = calloc(B * (nsm(p, m) + 1), sizeof(float));
}

/* Explicit lists: lists[m] has sizes[m] ascending classes. */
static void prob_lists(prob *p, size_t K, size_t M, size_t B, const size_t *sizes,
                       const int *flat)
{
    uint8_t *mem = calloc(M * K, 1);
    for (size_t m = 0, o = 0; m < M; m++)
        for (size_t i = 0; i < sizes[m]; i++) mem[m * K + (size_t)flat[o++]] = 1;
    prob_from_member(p, K, M, B, mem);
}

/* Random clusters: class k in cluster k mod M (k < K - uncovered), plus
 * `extra` random classes per cluster (overlap). */
static void prob_random(prob *p, size_t K, size_t M, size_t B, size_t extra, size_t uncovered)
{
    uint8_t *mem = calloc(M * K, 1);
    for (size_t k = 0; k + uncovered < K; k++) mem[(k % M) * K + k] = 1;
    for (size_t m = 0; m < M; m++) {
        mem[m * K + (m % (K - uncovered))] = 1;
        for (size_t e = 0; e < extra; e++) mem[m * K + urand_below(K - uncovered)] = 1;
    }
    prob_from_member(p, K, M, B, mem);
}

static void prob_free(prob *p)
{
    for (size_t m = 0; m < p->M; m++) free(p->spec[m]);
    free(p->spec);
    free(p->z);
    free(p->member);
    free(p->c.off);
    free(p->c.cls);
    memset(p, 0, sizeof *p);
}

/* Realistic rows: a generalist with spread sigma, one confident class or two
 * confused ones; specialists that favour one of their classes or the dustbin. */
static void prob_fill(prob *p, double sigma, double boost)
{
    for (size_t b = 0; b < p->B; b++) {
        float *z = p->z + b * p->K;
        for (size_t k = 0; k < p->K; k++) z[k] = (float)(sigma * nrand());
        const size_t c1 = urand_below(p->K), c2 = urand_below(p->K);
        z[c1] += (float)boost;
        if (urand() < 0.5) z[c2] += (float)(boost * (0.8 + 0.4 * urand()));
        for (size_t m = 0; m < p->M; m++) {
            const size_t n = nsm(p, m);
            float *l = p->spec[m] + b * (n + 1);
            for (size_t i = 0; i <= n; i++) l[i] = (float)(1.5 * nrand());
            l[urand() < 0.3 ? n : urand_below(n + 1)] += (float)(2.0 + 3.0 * urand());
        }
    }
}

/* ---- double-precision reference ---- */

static int after(float v, size_t i, float pv, long pi)
{
    return v < pv || (v == pv && (long)i > pi);
}

/* Active mask of row b for top_n; returns |A| and the list. */
static size_t ref_active(const prob *p, size_t b, size_t top_n, uint8_t *mask, int *act)
{
    const float *z = p->z + b * p->K;
    memset(mask, 0, p->M);
    float pv = INFINITY;
    long pi = -1;
    for (size_t t = 0; t < top_n; t++) {
        long best = -1;
        for (size_t k = 0; k < p->K; k++)
            if (after(z[k], k, pv, pi) && (best < 0 || z[k] > z[best])) best = (long)k;
        if (best < 0) break;
        for (size_t m = 0; m < p->M; m++)
            if (p->member[m * p->K + (size_t)best]) mask[m] = 1;
        pv = z[best];
        pi = best;
    }
    size_t na = 0;
    for (size_t m = 0; m < p->M; m++)
        if (mask[m]) act[na++] = (int)m;
    return na;
}

typedef struct {
    const prob *p;
    size_t b, K, na;
    int act[KDCL_MAX_CLUSTERS];
    double *pg, *T, *pd, **pm; /* pm[a]: |S|+1 probabilities of active a */
} ref;

static void softmax_d(const float *x, size_t n, double *out)
{
    double m = -INFINITY, s = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, (double)x[i]);
    for (size_t i = 0; i < n; i++) s += exp((double)x[i] - m);
    for (size_t i = 0; i < n; i++) out[i] = exp((double)x[i] - m) / s;
}

static void ref_init(ref *r, const prob *p, size_t b, size_t top_n, uint8_t *mask)
{
    memset(r, 0, sizeof *r);
    r->p = p;
    r->b = b;
    r->K = p->K;
    r->na = ref_active(p, b, top_n, mask, r->act);
    r->pg = malloc(p->K * sizeof(double));
    r->T = malloc(p->K * sizeof(double));
    r->pd = malloc((r->na + 1) * sizeof(double));
    r->pm = calloc(r->na + 1, sizeof(double *));
    softmax_d(p->z + b * p->K, p->K, r->pg);
    memcpy(r->T, r->pg, p->K * sizeof(double));
    for (size_t a = 0; a < r->na; a++) {
        const size_t m = (size_t)r->act[a], n = nsm(p, m);
        r->pm[a] = malloc((n + 1) * sizeof(double));
        softmax_d(p->spec[m] + b * (n + 1), n + 1, r->pm[a]);
        for (size_t i = 0; i < n; i++) r->T[p->c.cls[p->c.off[m] + i]] += r->pm[a][i];
        r->pd[a] = r->pm[a][n];
    }
}

static void ref_free(ref *r)
{
    for (size_t a = 0; a < r->na; a++) free(r->pm[a]);
    free(r->pm);
    free(r->pd);
    free(r->T);
    free(r->pg);
}

static int ref_covers(const ref *r, size_t a) { return nsm(r->p, (size_t)r->act[a]) == r->K; }

static double lse_d(const double *w, size_t K)
{
    double m = -INFINITY, s = 0;
    for (size_t k = 0; k < K; k++) m = fmax(m, w[k]);
    for (size_t k = 0; k < K; k++) s += exp(w[k] - m);
    return m + log(s);
}

static void ref_grad(const ref *r, const double *w, double *g)
{
    const size_t K = r->K;
    const double l = lse_d(w, K);
    for (size_t k = 0; k < K; k++) g[k] = (1.0 + (double)r->na) * exp(w[k] - l) - r->T[k];
    for (size_t a = 0; a < r->na; a++) {
        const uint8_t *mem = r->p->member + (size_t)r->act[a] * K;
        if (ref_covers(r, a)) {
            for (size_t k = 0; k < K; k++) g[k] -= r->pd[a] * exp(w[k] - l);
            continue;
        }
        double mx = -INFINITY, E = 0;
        for (size_t k = 0; k < K; k++)
            if (!mem[k]) mx = fmax(mx, w[k]);
        for (size_t k = 0; k < K; k++)
            if (!mem[k]) E += exp(w[k] - mx);
        for (size_t k = 0; k < K; k++)
            if (!mem[k]) g[k] -= r->pd[a] * exp(w[k] - mx) / E;
    }
}

/* Gradient descent in double from w = z; logq receives log softmax(w).
 * *W, *R: max |w| and max (max w - min w) along the trajectory. */
static void ref_gd(const ref *r, size_t iters, double lr, double *logq, double *W, double *R)
{
    const size_t K = r->K;
    const float *z = r->p->z + r->b * K;
    double *w = malloc(K * sizeof *w), *g = malloc(K * sizeof *g);
    for (size_t k = 0; k < K; k++) w[k] = z[k];
    const double step = lr / (1.0 + (double)r->na);
    double Wm = 0, Rm = 0;
    for (size_t t = 0; t <= iters; t++) {
        double lo = INFINITY, hi = -INFINITY;
        for (size_t k = 0; k < K; k++) {
            lo = fmin(lo, w[k]);
            hi = fmax(hi, w[k]);
            Wm = fmax(Wm, fabs(w[k]));
        }
        Rm = fmax(Rm, hi - lo);
        if (t == iters || r->na == 0) break;
        ref_grad(r, w, g);
        for (size_t k = 0; k < K; k++) w[k] -= step * g[k];
    }
    const double l = lse_d(w, K);
    for (size_t k = 0; k < K; k++) logq[k] = w[k] - l;
    if (W) *W = Wm;
    if (R) *R = Rm;
    free(w);
    free(g);
}

/* The optimum q* by the EM fixed point (q, not w, in double). */
static void ref_em(const ref *r, double *q)
{
    const size_t K = r->K;
    double *t = malloc(K * sizeof *t);
    memcpy(q, r->pg, K * sizeof *q);
    for (int it = 0; it < 200000; it++) {
        memcpy(t, r->T, K * sizeof *t);
        for (size_t a = 0; a < r->na; a++) {
            const uint8_t *mem = r->p->member + (size_t)r->act[a] * K;
            double Qd = 0;
            if (ref_covers(r, a)) {
                for (size_t k = 0; k < K; k++) t[k] += r->pd[a] * q[k];
                continue;
            }
            for (size_t k = 0; k < K; k++)
                if (!mem[k]) Qd += q[k];
            for (size_t k = 0; k < K; k++)
                if (!mem[k]) t[k] += r->pd[a] * q[k] / Qd;
        }
        double ch = 0;
        for (size_t k = 0; k < K; k++) {
            const double v = t[k] / (1.0 + (double)r->na);
            ch = fmax(ch, fabs(v - q[k]));
            q[k] = v;
        }
        if (ch < 1e-15) break;
    }
    free(t);
}

static double kl_term(double p, double q) { return p > 0 ? p * log(p / q) : 0.0; }

/* F(q); a specialist covering all classes contributes its special classes only. */
static double ref_F(const ref *r, const double *q)
{
    const size_t K = r->K;
    double F = 0;
    for (size_t k = 0; k < K; k++) F += kl_term(r->pg[k], q[k]);
    for (size_t a = 0; a < r->na; a++) {
        const size_t m = (size_t)r->act[a], n = nsm(r->p, m);
        const uint8_t *mem = r->p->member + m * K;
        const int32_t *cl = r->p->c.cls + r->p->c.off[m];
        for (size_t i = 0; i < n; i++) F += kl_term(r->pm[a][i], q[cl[i]]);
        if (ref_covers(r, a)) continue;
        double Qd = 0;
        for (size_t k = 0; k < K; k++)
            if (!mem[k]) Qd += q[k];
        F += kl_term(r->pd[a], Qd);
    }
    return F;
}

/* ---- the kernel ---- */

/* Runs kdcl_combine on the problem's first `rows` rows; logq: rows x K,
 * act: rows x M. Returns the seconds spent in kdcl_combine + finish. */
static double run_kernel(const prob *p, size_t rows, size_t max_batch, const kdcl_combine_opts *o,
                         float *logq, uint8_t *act)
{
    kdcl_combiner *cb = NULL;
    tu_ok(kdcl_combiner_create(tu_ctx, &p->c, max_batch, &cb), "kdcl_combiner_create");
    kdcl_tensor z = tu_mat(rows, p->K);
    kdcl_tensor_upload(tu_ctx, &z, 0, rows * p->K, p->z);
    for (size_t m = 0; m < p->M; m++) {
        kdcl_tensor t = tu_mat(rows, nsm(p, m) + 1);
        tu_put(&t, p->spec[m]);
        tu_ok(kdcl_combiner_put(cb, m, &t, rows), "kdcl_combiner_put");
        kdcl_tensor_free(tu_ctx, &t); /* released after the queued copy */
    }
    tu_ok(kdcl_ctx_finish(tu_ctx), "finish");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    tu_ok(kdcl_combine(cb, &z, rows, o), "kdcl_combine");
    tu_ok(kdcl_ctx_finish(tu_ctx), "finish");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    tu_ok(kdcl_tensor_download(tu_ctx, kdcl_combiner_output(cb), 0, rows * p->K, logq), "download out");
    tu_ok(kdcl_tensor_download(tu_ctx, kdcl_combiner_active(cb), 0, rows * p->M, act), "download active");
    kdcl_tensor_free(tu_ctx, &z);
    kdcl_combiner_destroy(cb);
    return (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
}

/* ---- checks shared by several tests ---- */

/* Kernel vs double gradient descent (same iters / lr) on every row; the mask
 * must match exactly. Returns the largest observed error / bound. */
static double check_trajectory(const prob *p, const kdcl_combine_opts *o, int check_lr_sensitivity)
{
    const size_t K = p->K, B = p->B;
    float *lq = malloc(B * K * sizeof *lq);
    uint8_t *act = malloc(B * p->M), *mask = malloc(p->M);
    double *ref_lq = malloc(K * sizeof *ref_lq), *alt = malloc(K * sizeof *alt);
    run_kernel(p, B, B, o, lq, act);
    double worst = 0;
    for (size_t b = 0; b < B; b++) {
        ref r;
        ref_init(&r, p, b, o->top_n, mask);
        ck_assert_msg(memcmp(mask, act + b * p->M, p->M) == 0,
                      "K=%zu M=%zu row %zu: active mask differs from the reference", K, p->M, b);
        double W = 0, R = 0;
        ref_gd(&r, o->iters, (double)o->lr, ref_lq, &W, &R);
        const size_t t = r.na ? o->iters : 0;
        const double e = U * W + 2.0 * (double)o->lr * (R + (double)K + 16.0) * U;
        const double fin = (R + (double)K + 16.0) * U + 4.0 * U * fabs(log((double)K));
        const double bound = SAFETY * (2.0 * (double)t * e + fin);
        double err = 0, diff_alt = 0;
        for (size_t k = 0; k < K; k++) {
            const double v = lq[b * K + k];
            ck_assert_msg(isfinite(v), "K=%zu row %zu class %zu: log q = %g", K, b, k, v);
            err = fmax(err, fabs(v - ref_lq[k]));
        }
        ck_assert_msg(err <= bound,
                      "K=%zu M=%zu row %zu |A|=%zu iters %zu lr %g: max |log q - ref| = %.3e > %.3e",
                      K, p->M, b, r.na, o->iters, (double)o->lr, err, bound);
        worst = fmax(worst, err / bound);
        if (check_lr_sensitivity && r.na) {
            ref_gd(&r, o->iters, 1.05 * (double)o->lr, alt, NULL, NULL);
            for (size_t k = 0; k < K; k++) diff_alt = fmax(diff_alt, fabs(lq[b * K + k] - alt[k]));
            ck_assert_msg(diff_alt > bound,
                          "row %zu: the bound %.3e would not catch a 5%% wrong step (%.3e)", b,
                          bound, diff_alt);
        }
        ref_free(&r);
    }
    free(lq);
    free(act);
    free(mask);
    free(ref_lq);
    free(alt);
    return worst;
}

/* ---- 1. the optimum ---- */

START_TEST(test_optimum)
{
    static const size_t Ks[] = {10, 100}, Ms[] = {3, 10};
    rng_state = 0x1234567ull;
    for (size_t ci = 0; ci < 2; ci++) {
        const size_t K = Ks[ci], B = 12;
        prob p;
        prob_random(&p, K, Ms[ci], B, K / 20 + 1, 0);
        prob_fill(&p, 1.0, 4.0);
        kdcl_combine_opts o;
        kdcl_combine_opts_default(&o);
        o.top_n = 2;
        o.iters = 3000;
        float *lq = malloc(B * K * sizeof *lq);
        uint8_t *act = malloc(B * p.M), *mask = malloc(p.M);
        double *qs = malloc(K * sizeof *qs), *lgd = malloc(K * sizeof *lgd),
               *qk = malloc(K * sizeof *qk), *qg = malloc(K * sizeof *qg);
        run_kernel(&p, B, B, &o, lq, act);
        double worst_d = 0, worst_dgd = 0, worst_gap = 0, worst_extra = 0;
        for (size_t b = 0; b < B; b++) {
            ref r;
            ref_init(&r, &p, b, o.top_n, mask);
            ck_assert_msg(r.na > 0, "test bug: row %zu has no active specialist", b);
            ref_em(&r, qs);
            double R = 0;
            ref_gd(&r, o.iters, (double)o.lr, lgd, NULL, &R);
            double d_gd = 0, d_k = 0, sk = 0;
            for (size_t k = 0; k < K; k++) sk += exp((double)lq[b * K + k]);
            for (size_t k = 0; k < K; k++) {
                qg[k] = exp(lgd[k]);
                /* Renormalised: the rounding of log q leaves sum q off 1 by
                 * ~ K u |log q|, which would shift F to first order. */
                qk[k] = exp((double)lq[b * K + k]) / sk;
                d_gd = fmax(d_gd, fabs(qg[k] - qs[k]));
                d_k = fmax(d_k, fabs(qk[k] - qs[k]));
            }
            /* The rows are chosen so that the method itself converges. */
            ck_assert_msg(d_gd < 2e-4, "K=%zu row %zu: double GD is %.2e from q*", K, b, d_gd);
            const double tol = d_gd + 8.0 * (R + (double)K + 16.0) * U; /* OPT_FLOAT */
            ck_assert_msg(d_k <= tol, "K=%zu row %zu: max |q - q*| = %.3e > %.3e (d_gd %.2e)", K, b,
                          d_k, tol, d_gd);
            /* Objective: the kernel's q is q_gd + delta with |delta_j| <= fl
             * (the float floor); near q*, F's Hessian in q is ~ (1 + |A|) / q*_j
             * per class, so F(q_k) - F(q_gd) <= sum_j (1 + |A|)
             * (|q_gd,j - q*_j| fl + fl^2) / q*_j. */
            const double fl = 8.0 * (R + (double)K + 16.0) * U;
            double slack = 0;
            for (size_t k = 0; k < K; k++)
                slack += (1.0 + (double)r.na) * (fabs(qg[k] - qs[k]) * fl + fl * fl) / qs[k];
            const double Fs = ref_F(&r, qs), Fg = ref_F(&r, qg), Fk = ref_F(&r, qk);
            ck_assert_msg(Fg >= Fs - 1e-12, "K=%zu row %zu: EM is not the optimum (%.15g < %.15g)",
                          K, b, Fg, Fs);
            ck_assert_msg(Fk - Fs <= (Fg - Fs) + slack,
                          "K=%zu row %zu: F(kernel q) - F* = %.3e (double GD: %.3e, slack %.2e)", K,
                          b, Fk - Fs, Fg - Fs, slack);
            worst_d = fmax(worst_d, d_k);
            worst_dgd = fmax(worst_dgd, d_gd);
            worst_gap = fmax(worst_gap, Fk - Fs);
            worst_extra = fmax(worst_extra, (Fk - Fg) / slack);
            ref_free(&r);
        }
        printf("optimum K=%zu: max |q - q*| %.2e (double GD %.2e), max F - F* %.2e, "
               "(F(q) - F(q_gd)) / slack <= %.1e\n",
               K, worst_d, worst_dgd, worst_gap, worst_extra);
        free(lq);
        free(act);
        free(mask);
        free(qs);
        free(lgd);
        free(qk);
        free(qg);
        prob_free(&p);
    }
}
END_TEST

/* ---- 2. the trajectory ---- */

START_TEST(test_trajectory)
{
    static const float lrs[] = {1.0f, 3.0f};
    rng_state = 0xABCDEFull;
    double worst = 0;
    for (size_t li = 0; li < 2; li++)
        for (size_t ci = 0; ci < 2; ci++) {
            const size_t K = ci ? 100 : 10, M = ci ? 10 : 3;
            prob p;
            prob_random(&p, K, M, 16, K / 10 + 1, 0);
            prob_fill(&p, 1.5, 5.0);
            kdcl_combine_opts o;
            kdcl_combine_opts_default(&o);
            o.top_n = 2;
            o.iters = 30;
            o.lr = lrs[li];
            worst = fmax(worst, check_trajectory(&p, &o, 1));
            prob_free(&p);
        }
    printf("trajectory: worst error / bound %.3f\n", worst);
}
END_TEST

/* ---- 3. the active set ---- */

START_TEST(test_active_set)
{
    /* K = 8; clusters {0,1,2}, {2,3}, {3,4,5}, {1,5}; classes 6, 7 uncovered. */
    static const size_t sizes[] = {3, 2, 3, 2};
    static const int flat[] = {0, 1, 2, 2, 3, 3, 4, 5, 1, 5};
    static const float rows[][8] = {
        {5, 1, 0, 0, 0, 0, 0, 0},       /* top 0 -> {A0}; top2 +1 -> {A0, A3} */
        {0, 0, 4, 3.5f, 0, 0, 0, 0},    /* top 2 -> {A0, A1}; +3 -> {A0, A1, A2} */
        {0, 0, 0, 2, 2, 0, 0, 0},       /* tie 3 / 4: 3 first -> {A1, A2}; +4 -> same */
        {0, 0, 0, 0, 0, 0, 7, 6},       /* top 6, 7 uncovered: none, for both */
        {0, 0, 0, 0, 0, 1, 7, -3},      /* top 6 none; top2 +5 -> {A2, A3} */
        {3, 0, 0, 0, 0, 0, 3, 0},       /* tie 0 / 6: 0 first -> {A0}; +6 -> {A0} */
        {-2, -2, -2, -2, -2, -2, -2, -2} /* all tied: 0 -> {A0}; +1 -> {A0, A3} */
    };
    static const uint8_t expect[2][7][4] = {
        {{1, 0, 0, 0}, {1, 1, 0, 0}, {0, 1, 1, 0}, {0, 0, 0, 0}, {0, 0, 0, 0}, {1, 0, 0, 0},
         {1, 0, 0, 0}},
        {{1, 0, 0, 1}, {1, 1, 1, 0}, {0, 1, 1, 0}, {0, 0, 0, 0}, {0, 0, 1, 1}, {1, 0, 0, 0},
         {1, 0, 0, 1}}};
    const size_t K = 8, M = 4, B = 7;
    rng_state = 0x5151ull;
    prob p;
    prob_lists(&p, K, M, B, sizes, flat);
    prob_fill(&p, 1.0, 3.0);
    memcpy(p.z, rows, sizeof rows);
    float lq[7 * 8];
    uint8_t act[7 * 4], mask[4];
    double lp[8], delta[8];
    for (size_t tn = 1; tn <= 2; tn++) {
        kdcl_combine_opts o;
        kdcl_combine_opts_default(&o);
        o.top_n = tn;
        o.iters = 20;
        run_kernel(&p, B, 16, &o, lq, act);
        for (size_t b = 0; b < B; b++) {
            ck_assert_msg(memcmp(act + b * M, expect[tn - 1][b], M) == 0,
                          "top_n %zu row %zu: active %d%d%d%d", tn, b, act[b * M], act[b * M + 1],
                          act[b * M + 2], act[b * M + 3]);
            ref r;
            ref_init(&r, &p, b, tn, mask);
            ck_assert_msg(memcmp(mask, expect[tn - 1][b], M) == 0, "test bug: reference mask");
            ref_free(&r);
            if (r.na) continue;
            /* No active specialist: exactly log softmax(z). */
            const tu_rowref rr = tu_ref_row(p.z + b * K, K, 1.0, 0, lp, delta);
            for (size_t k = 0; k < K; k++) {
                const double bound = SAFETY * (delta[k] + (double)(K + 8) * U +
                                               4.0 * U * fabs(rr.logS) + U * fabs(lp[k]));
                ck_assert_msg(fabs(lq[b * K + k] - lp[k]) <= bound,
                              "top_n %zu row %zu class %zu: %.9g vs log softmax %.9g", tn, b, k,
                              (double)lq[b * K + k], lp[k]);
            }
        }
        /* And the rows with specialists against the reference trajectory. */
        check_trajectory(&p, &o, 0);
    }
    /* top_n = K: every cluster meeting any class is active. */
    kdcl_combine_opts o;
    kdcl_combine_opts_default(&o);
    o.top_n = K;
    o.iters = 5;
    run_kernel(&p, B, B, &o, lq, act);
    for (size_t i = 0; i < B * M; i++) ck_assert_int_eq(act[i], 1);
    prob_free(&p);
}
END_TEST

/* ---- 4. edge cases ---- */

START_TEST(test_one_class_specialist)
{
    /* K = 6; a specialist for class 2 alone (|S| + 1 = 2 logits) and one for {0, 1, 2}. */
    static const size_t sizes[] = {1, 3};
    static const int flat[] = {2, 0, 1, 2};
    rng_state = 0x77ull;
    prob p;
    prob_lists(&p, 6, 2, 8, sizes, flat);
    prob_fill(&p, 1.0, 2.0);
    for (size_t b = 0; b < p.B; b++) p.z[b * 6 + 2] += 6.0f; /* class 2 on top */
    kdcl_combine_opts o;
    kdcl_combine_opts_default(&o);
    o.iters = 40;
    check_trajectory(&p, &o, 1);
    prob_free(&p);
}
END_TEST

START_TEST(test_sizes)
{
    static const size_t Ks[] = {2, 3, 10, 33, 100, 257, 1000};
    static const size_t Ms[] = {1, 3, 7};
    rng_state = 0xFEEDull;
    double worst = 0;
    for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++)
        for (size_t mi = 0; mi < 3; mi++) {
            const size_t K = Ks[ki], M = Ms[mi] < K ? Ms[mi] : K;
            prob p;
            if (K == 2 && mi == 0) {
                /* One cluster holding every class: no dustbin classes. */
                static const size_t sz[] = {2};
                static const int fl[] = {0, 1};
                prob_lists(&p, 2, 1, 5, sz, fl);
            } else {
                prob_random(&p, K, M, 5, K / 50, K > 3 ? 1 : 0);
            }
            prob_fill(&p, 2.0, 4.0);
            kdcl_combine_opts o;
            kdcl_combine_opts_default(&o);
            o.top_n = 1 + ki % 2;
            o.iters = 15;
            worst = fmax(worst, check_trajectory(&p, &o, 0));
            prob_free(&p);
        }
    printf("sizes: worst error / bound %.3f\n", worst);
}
END_TEST

START_TEST(test_extreme_logits)
{
    /* Logits of +-1e3 and gaps of hundreds: exp(w - max) underflows for whole
     * complements, so q_j / Qd_m must come from exp(w_j - mx_m) / E_m. */
    const size_t K = 12, M = 3, B = 6;
    rng_state = 0xE1E1ull;
    prob p;
    prob_random(&p, K, M, B, 1, 0);
    prob_fill(&p, 1.0, 1.0);
    for (size_t b = 0; b < B; b++) {
        float *z = p.z + b * K;
        for (size_t k = 0; k < K; k++) {
            switch (b % 3) {
            case 0: z[k] = (k % 2) ? 1000.0f : -1000.0f; break;
            case 1: z[k] = (float)k * 200.0f - 1000.0f; break;
            default: z[k] = (k == 4) ? 300.0f : -300.0f + (float)k; break;
            }
        }
        for (size_t m = 0; m < M; m++) {
            const size_t n = nsm(&p, m);
            float *l = p.spec[m] + b * (n + 1);
            for (size_t i = 0; i <= n; i++) l[i] = (i % 2) ? 500.0f : -500.0f;
        }
    }
    kdcl_combine_opts o;
    kdcl_combine_opts_default(&o);
    o.top_n = 2;
    float *lq = malloc(B * K * sizeof *lq);
    uint8_t *act = malloc(B * M);
    run_kernel(&p, B, B, &o, lq, act);
    for (size_t b = 0; b < B; b++) {
        double s = 0;
        for (size_t k = 0; k < K; k++) {
            ck_assert_msg(isfinite(lq[b * K + k]) && lq[b * K + k] <= 0.0f,
                          "row %zu class %zu: log q = %g", b, k, (double)lq[b * K + k]);
            s += exp((double)lq[b * K + k]);
        }
        ck_assert_msg(fabs(s - 1.0) < 1e-5, "row %zu: sum q = %.9g", b, s);
    }
    free(lq);
    free(act);
    o.iters = 10;
    check_trajectory(&p, &o, 0);
    prob_free(&p);
}
END_TEST

static void expect_invalid(kdcl_status s, const char *what, const char *name)
{
    ck_assert_msg(s == KDCL_ERR_INVALID_ARG, "%s: got %s, expected KDCL_ERR_INVALID_ARG", what,
                  kdcl_status_name(s));
    ck_assert_msg(strstr(kdcl_last_error(), name) != NULL, "%s: message '%s' does not name %s",
                  what, kdcl_last_error(), name);
}

START_TEST(test_bad_arguments)
{
    static const size_t sizes[] = {2, 3};
    static const int flat[] = {0, 1, 1, 2, 3};
    prob p;
    prob_lists(&p, 5, 2, 4, sizes, flat);
    kdcl_combiner *cb = NULL;
    kdcl_combiner_destroy(NULL);

    /* create */
    expect_invalid(kdcl_combiner_create(tu_ctx, NULL, 4, &cb), "NULL clusters",
                   "kdcl_combiner_create");
    expect_invalid(kdcl_combiner_create(tu_ctx, &p.c, 0, &cb), "max_batch 0", "max_batch");
    kdcl_clusters bad = p.c;
    bad.M = 0;
    expect_invalid(kdcl_combiner_create(tu_ctx, &bad, 4, &cb), "M = 0", "M = 0");
    bad.M = KDCL_MAX_CLUSTERS + 1;
    expect_invalid(kdcl_combiner_create(tu_ctx, &bad, 4, &cb), "M too large", "M = 1025");
    int32_t cls_bad[5] = {0, 1, 1, 2, 5};
    bad = p.c;
    bad.cls = cls_bad;
    expect_invalid(kdcl_combiner_create(tu_ctx, &bad, 4, &cb), "class out of range", "outside");
    cls_bad[4] = -1;
    expect_invalid(kdcl_combiner_create(tu_ctx, &bad, 4, &cb), "negative class", "outside");
    int32_t cls_uns[5] = {1, 0, 1, 2, 3};
    bad.cls = cls_uns;
    expect_invalid(kdcl_combiner_create(tu_ctx, &bad, 4, &cb), "unsorted", "ascending");
    size_t off_bad[3] = {0, 2, 2};
    bad = p.c;
    bad.off = off_bad;
    expect_invalid(kdcl_combiner_create(tu_ctx, &bad, 4, &cb), "empty cluster", "cluster 1");
    ck_assert_ptr_null(cb); /* a failed create leaves no combiner */
    kdcl_combiner_destroy(cb);

    tu_ok(kdcl_combiner_create(tu_ctx, &p.c, 4, &cb), "create");
    kdcl_tensor z = tu_mat(4, 5), z6 = tu_mat(4, 6), l3 = tu_mat(4, 3), l4 = tu_mat(4, 4);
    kdcl_tensor big = tu_mat(8, 5), u8 = tu_vec(KDCL_U8, 20);
    float zeros[40] = {0};
    kdcl_tensor_upload(tu_ctx, &z, 0, 20, zeros);
    kdcl_combine_opts o;
    kdcl_combine_opts_default(&o);
    ck_assert_uint_eq(o.top_n, 1);
    ck_assert(o.iters >= 1 && o.lr > 0.0f);

    /* put */
    expect_invalid(kdcl_combiner_put(cb, 2, &l3, 4), "bad m", "m = 2");
    expect_invalid(kdcl_combiner_put(cb, 0, &l4, 4), "wrong width", "columns");
    expect_invalid(kdcl_combiner_put(cb, 0, &l3, 5), "rows > max_batch", "rows");
    expect_invalid(kdcl_combiner_put(cb, 0, &l3, 0), "rows 0", "rows");
    expect_invalid(kdcl_combiner_put(cb, 0, NULL, 1), "NULL logits", "logits");
    expect_invalid(kdcl_combiner_put(NULL, 0, &l3, 1), "NULL combiner", "combiner");
    tu_ok(kdcl_combiner_put(cb, 0, &l3, 4), "put 0");
    tu_ok(kdcl_combiner_put(cb, 1, &l4, 2), "put 1 (fewer rows)");

    /* combine */
    kdcl_combine_opts b = o;
    b.top_n = 0;
    expect_invalid(kdcl_combine(cb, &z, 4, &b), "top_n 0", "top_n");
    b.top_n = 6;
    expect_invalid(kdcl_combine(cb, &z, 4, &b), "top_n > K", "top_n");
    b = o;
    b.iters = 0;
    expect_invalid(kdcl_combine(cb, &z, 4, &b), "iters 0", "iters");
    b = o;
    b.lr = NAN;
    expect_invalid(kdcl_combine(cb, &z, 4, &b), "NaN lr", "lr");
    b.lr = 0.0f;
    expect_invalid(kdcl_combine(cb, &z, 4, &b), "lr 0", "lr");
    b.lr = -1.0f;
    expect_invalid(kdcl_combine(cb, &z, 4, &b), "negative lr", "lr");
    b.lr = INFINITY;
    expect_invalid(kdcl_combine(cb, &z, 4, &b), "infinite lr", "lr");
    expect_invalid(kdcl_combine(cb, &z, 4, NULL), "NULL opts", "opts");
    expect_invalid(kdcl_combine(cb, &big, 5, &o), "rows > max_batch", "max_batch");
    expect_invalid(kdcl_combine(cb, &z, 0, &o), "rows 0", "rows");
    expect_invalid(kdcl_combine(cb, &l3, 3, &o), "gen_logits too few rows/K", "gen_logits");
    expect_invalid(kdcl_combine(cb, &z6, 4, &o), "wrong K", "K = 5");
    expect_invalid(kdcl_combine(cb, &u8, 4, &o), "U8 logits", "gen_logits");
    expect_invalid(kdcl_combine(cb, NULL, 4, &o), "NULL logits", "gen_logits");
    expect_invalid(kdcl_combine(NULL, &z, 4, &o), "NULL combiner", "combiner");
    tu_ok(kdcl_combine(cb, &z, 4, &o), "valid combine");
    tu_ok(kdcl_combine(cb, &big, 3, &o), "more gen_logits rows than used");
    tu_ok(kdcl_ctx_finish(tu_ctx), "finish");

    kdcl_tensor_free(tu_ctx, &z);
    kdcl_tensor_free(tu_ctx, &z6);
    kdcl_tensor_free(tu_ctx, &l3);
    kdcl_tensor_free(tu_ctx, &l4);
    kdcl_tensor_free(tu_ctx, &big);
    kdcl_tensor_free(tu_ctx, &u8);
    kdcl_combiner_destroy(cb);
    prob_free(&p);
}
END_TEST

/* ---- 5. the method ---- */

START_TEST(test_specialist_decides)
{
    /* K = 10; clusters {0,1,2}, {3,4,5}, {6,7,8,9}. The generalist confuses
     * 1 and 2 (2 slightly ahead); the first specialist is confident in 1
     * (row 0) or 2 (row 1) and says little dustbin; in row 2 it says dustbin
     * with confidence, which moves mass out of its cluster (to 9, the
     * generalist's third choice); in row 3 the generalist is sure of 7 and the
     * third specialist agrees. Default options. */
    static const size_t sizes[] = {3, 3, 4};
    static const int flat[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    static const size_t want[] = {1, 2, 9, 7};
    const size_t K = 10, M = 3, B = 4;
    prob p;
    prob_lists(&p, K, M, B, sizes, flat);
    for (size_t b = 0; b < B; b++) {
        float *z = p.z + b * K;
        for (size_t k = 0; k < K; k++) z[k] = 0.0f;
        if (b < 3) {
            z[1] = 3.0f;
            z[2] = 3.2f;
            z[9] = 2.5f;
        } else {
            z[7] = 6.0f;
        }
        for (size_t m = 0; m < M; m++) {
            float *l = p.spec[m] + b * (nsm(&p, m) + 1);
            for (size_t i = 0; i <= nsm(&p, m); i++) l[i] = 0.0f;
        }
    }
    float *l0 = p.spec[0], *l2 = p.spec[2];
    l0[0 * 4 + 1] = 5.0f; /* row 0: class 1 */
    l0[1 * 4 + 2] = 5.0f; /* row 1: class 2 */
    l0[2 * 4 + 3] = 6.0f; /* row 2: dustbin */
    l2[3 * 5 + 1] = 5.0f; /* row 3: class 7 */
    kdcl_combine_opts o;
    kdcl_combine_opts_default(&o);
    float lq[4 * 10];
    uint8_t act[4 * 3];
    run_kernel(&p, B, B, &o, lq, act);
    for (size_t b = 0; b < B; b++) {
        size_t am = 0;
        for (size_t k = 1; k < K; k++)
            if (lq[b * K + k] > lq[b * K + am]) am = k;
        ck_assert_msg(am == want[b], "row %zu: combined argmax %zu, expected %zu (q = %.3f)", b,
                      am, want[b], exp((double)lq[b * K + am]));
    }
    /* Row 0: the specialist moved the decision from 2 to 1 by a clear margin. */
    ck_assert(exp((double)lq[1]) > exp((double)lq[2]) + 0.2);
    ck_assert_uint_eq(act[0], 1);
    ck_assert_uint_eq(act[3 * 3 + 2], 1);
    prob_free(&p);
}
END_TEST

/* Default options on a batch of the size an evaluation uses: timing only
 * (printed), plus finiteness. */
START_TEST(test_batch_timing)
{
    const size_t K = 100, M = 10, B = 512;
    rng_state = 0x3141ull;
    prob p;
    prob_random(&p, K, M, B, 2, 0);
    prob_fill(&p, 1.5, 5.0);
    kdcl_combine_opts o;
    kdcl_combine_opts_default(&o);
    float *lq = malloc(B * K * sizeof *lq);
    uint8_t *act = malloc(B * M);
    const double sec = run_kernel(&p, B, B, &o, lq, act);
    for (size_t i = 0; i < B * K; i++) ck_assert(isfinite(lq[i]));
    printf("batch B=%zu K=%zu M=%zu iters %zu: %.3f s (%.1f us/row)\n", B, K, M, o.iters, sec,
           1e6 * sec / (double)B);
    free(lq);
    free(act);
    prob_free(&p);
}
END_TEST

/* The platform check that keeps PoCL 5.0 from aborting the process: the
 * CL_PLATFORM_VERSION strings of the platforms it was run on, and near misses. */
START_TEST(test_platform_check)
{
    ck_assert_int_eq(kdcl_combine_compiler_ok("OpenCL 3.0 PoCL 5.0+debian  Linux, None+Asserts, "
                                              "RELOC, SPIR, LLVM 16.0.6, SLEEF, DISTRO"),
                     0);
    ck_assert_int_eq(kdcl_combine_compiler_ok("OpenCL 3.0 PoCL 5.0"), 0);
    ck_assert_int_eq(kdcl_combine_compiler_ok("OpenCL 3.0 PoCL 3.1+debian  Linux, None+Asserts, "
                                              "RELOC, SPIR, LLVM 15.0.6, SLEEF, DISTRO"),
                     1);
    ck_assert_int_eq(kdcl_combine_compiler_ok("OpenCL 3.0 PoCL 5.01"), 1);
    ck_assert_int_eq(kdcl_combine_compiler_ok("OpenCL 3.0 PoCL 6.0"), 1);
    ck_assert_int_eq(kdcl_combine_compiler_ok("OpenCL 3.0 CUDA 13.0.98"), 1);
    ck_assert_int_eq(kdcl_combine_compiler_ok(""), 1);
    ck_assert_int_eq(kdcl_combine_compiler_ok(NULL), 1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("combine");
    TCase *tc = tcase_create("combine");
    tcase_add_unchecked_fixture(tc, tu_ctx_setup, tu_ctx_teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_bad_arguments);
    tcase_add_test(tc, test_optimum);
    tcase_add_test(tc, test_trajectory);
    tcase_add_test(tc, test_active_set);
    tcase_add_test(tc, test_one_class_specialist);
    tcase_add_test(tc, test_sizes);
    tcase_add_test(tc, test_extreme_logits);
    tcase_add_test(tc, test_specialist_decides);
    tcase_add_test(tc, test_batch_timing);
    tcase_add_test(tc, test_platform_check);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
