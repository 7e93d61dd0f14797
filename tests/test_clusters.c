/* Class clusters (specialists.h section 1): covariance of a model's predicted
 * probabilities, K-means of its columns, the clusters helpers and the JSON
 * clusters file.
 *
 * Tolerance of the covariance test. The reference is computed in double from
 * the model's own logits (kdcl_model_logits_all: the same forward, the same batch
 * partition), so only the softmax, the GEMM accumulation and the host's
 * double arithmetic contribute:
 *  - softmax: the device's p^_k = p_k (1 + t_k) with |t_k| <= rho_k =
 *    delta_k + E + 14u, the per-element bound that test_softmax checks
 *    (tu_ref_row with T = 1: delta_k = u |z_k - max|, E its row bound), plus
 *    an absolute TINY for underflowed exponentials;
 *  - GEMM: S_ij = sum over the N rows of p^_i p^_j in fp32, B terms per batch
 *    and one more rounding (alpha*acc + beta*C) per batch for the cross-batch
 *    accumulation with beta = 1. Every term is >= 0, so whatever the
 *    summation order |S^_ij - sum p^_i p^_j| <= gamma_{N + 2 steps + 2} sum p^_i p^_j
 *    (Higham's bound for a sum of n nonnegative products, n counting the
 *    product rounding and each addition along the longest path);
 *  - together: |S^_ij - S_ij| <= sum_n p_i p_j ((1 + rho_i)(1 + rho_j)(1 + g) - 1),
 *    accumulated per row in the test, and likewise the column sums with
 *    sum_n p_i ((1 + rho_i)(1 + g) - 1);
 *  - host, double: e_ij = S_ij / N and mean_i = c_i / N carry those bounds
 *    divided by N; cov = e - mean_i mean_j adds em_i m_j + m_i em_j + em_i em_j
 *    and a few double roundings (8 * 2^-53 * (e + m_i m_j)).
 * The test asserts |cov^ - cov| <= SAFETY * bound with SAFETY = 2 (and the
 * same for the mean). The confusion counts must equal exactly the counts of
 * the first argmax of the same logits.
 *
 * Suite runtime: about a second on PoCL (two 2-epoch trainings of a 36-16-6
 * MLP on 1000 examples, the rest is host code). */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define U TU_U
#define SAFETY 2.0
#define TINY 1e-37
#define KC 6 /* classes of the test model */

/* ---- helpers ------------------------------------------------------------- */

static int region_col(size_t p) { return (int)(p % 6); }

/* 36-16-6 MLP (max batch 64), He-initialised and, if train, trained two
 * epochs on `ds` so that its probabilities are non-trivial. */
static kdcl_model *make_model(const kdcl_dataset *ds, int train)
{
    kdcl_model *m = tu_model("36-16-6", 6, 1, 6, 6, 64, 0, 0, 7);
    if (train) {
        kdcl_train_opts o;
        kdcl_train_opts_default(&o);
        o.epochs = 2;
        o.batch = 50;
        o.lr = 0.1f;
        tu_ok(kdcl_train(m, ds, &o, NULL, NULL, NULL), "train");
    }
    return m;
}

/* A K x K covariance from a model trained on a 1000-example 6x6 problem. */
static void model_cov(double *cov, int32_t *conf)
{
    kdcl_dataset ds;
    tu_make_6x6(&ds, 1000, 11, KC, region_col, 160, 50);
    kdcl_model *m = make_model(&ds, 1);
    double mean[KC];
    tu_ok(kdcl_prob_covariance(m, &ds, cov, mean, conf), "prob_covariance");
    kdcl_model_destroy(m);
    kdcl_dataset_free(&ds);
}

/* Covariance of n synthetic probability vectors over K classes: each draws
 * one of the `nb` blocks (block[k] = block of class k) uniformly and puts
 * 1 - eps of its mass on that block's classes (shares 1 + jitter * u), the
 * rest spread over all classes at random. */
static void synth_cov(double *cov, size_t K, const int *block, int nb, size_t n, double jitter,
                      double eps, uint64_t seed)
{
    kdcl_rng r;
    kdcl_rng_seed(&r, seed);
    double *p = malloc(K * sizeof *p), *mean = calloc(K, sizeof *mean);
    ck_assert(p && mean);
    memset(cov, 0, K * K * sizeof *cov);
    for (size_t t = 0; t < n; t++) {
        int b = (int)kdcl_rng_below(&r, (uint64_t)nb);
        double in = 0, out = 0;
        for (size_t k = 0; k < K; k++) {
            p[k] = block[k] == b ? 1 + jitter * kdcl_rng_uniform(&r) : 0;
            in += p[k];
        }
        double *q = malloc(K * sizeof *q);
        ck_assert(q);
        for (size_t k = 0; k < K; k++) out += (q[k] = kdcl_rng_uniform(&r));
        for (size_t k = 0; k < K; k++) p[k] = (1 - eps) * p[k] / in + eps * q[k] / out;
        free(q);
        for (size_t i = 0; i < K; i++) {
            mean[i] += p[i];
            for (size_t j = 0; j < K; j++) cov[i * K + j] += p[i] * p[j];
        }
    }
    for (size_t i = 0; i < K; i++) mean[i] /= (double)n;
    for (size_t i = 0; i < K; i++)
        for (size_t j = 0; j < K; j++)
            cov[i * K + j] = cov[i * K + j] / (double)n - mean[i] * mean[j];
    free(p);
    free(mean);
}

static int clusters_equal(const kdcl_clusters *a, const kdcl_clusters *b)
{
    if (a->K != b->K || a->M != b->M) return 0;
    for (size_t m = 0; m <= a->M; m++)
        if (a->off[m] != b->off[m]) return 0;
    return memcmp(a->cls, b->cls, a->off[a->M] * sizeof *a->cls) == 0;
}

/* Structural checks: M clusters, each non-empty, ascending, in range; every
 * class in exactly r clusters. */
static void check_valid(const kdcl_clusters *c, size_t K, size_t M, size_t r, const char *what)
{
    ck_assert_msg(c->K == K && c->M == M, "%s: K=%zu M=%zu, want %zu %zu", what, c->K, c->M, K, M);
    ck_assert_msg(c->off && c->cls && c->off[0] == 0, "%s: bad offsets", what);
    for (size_t m = 0; m < M; m++) {
        ck_assert_msg(c->off[m + 1] > c->off[m], "%s: cluster %zu empty", what, m);
        for (size_t i = c->off[m]; i < c->off[m + 1]; i++) {
            ck_assert_msg(c->cls[i] >= 0 && (size_t)c->cls[i] < K, "%s: class %d", what,
                          (int)c->cls[i]);
            if (i > c->off[m])
                ck_assert_msg(c->cls[i] > c->cls[i - 1], "%s: cluster %zu not ascending", what, m);
        }
    }
    for (size_t k = 0; k < K; k++)
        ck_assert_msg(kdcl_clusters_count_of(c, k) == r, "%s: class %zu in %zu clusters, want %zu",
                      what, k, kdcl_clusters_count_of(c, k), r);
    ck_assert_uint_eq(c->off[M], K * r);
}

/* Each class's cluster has the nearest centroid (cluster means of the
 * columns): a Lloyd fixed point. Non-overlapping clusters only. */
static void check_lloyd_fixed_point(const double *cov, const kdcl_clusters *c, const char *what)
{
    const size_t K = c->K, M = c->M;
    double *C = calloc(M * K, sizeof *C);
    ck_assert(C);
    size_t *own = malloc(K * sizeof *own);
    for (size_t m = 0; m < M; m++) {
        const size_t n = c->off[m + 1] - c->off[m];
        for (size_t t = c->off[m]; t < c->off[m + 1]; t++) {
            own[c->cls[t]] = m;
            for (size_t i = 0; i < K; i++)
                C[m * K + i] += cov[i * K + (size_t)c->cls[t]] / (double)n;
        }
    }
    for (size_t j = 0; j < K; j++) {
        double d[KDCL_MAX_CLUSTERS];
        for (size_t m = 0; m < M; m++) {
            d[m] = 0;
            for (size_t i = 0; i < K; i++) {
                double e = cov[i * K + j] - C[m * K + i];
                d[m] += e * e;
            }
        }
        for (size_t m = 0; m < M; m++)
            ck_assert_msg(d[own[j]] <= d[m] * (1 + 1e-12) + 1e-300,
                          "%s: class %zu in cluster %zu (d2 %g) but cluster %zu is nearer (%g)",
                          what, j, own[j], d[own[j]], m, d[m]);
    }
    free(C);
    free(own);
}

static void expect_fail(kdcl_status s, kdcl_status want, const char *what)
{
    ck_assert_msg(s != KDCL_OK, "%s: accepted", what);
    if (want != KDCL_OK)
        ck_assert_msg(s == want, "%s: %s, want %s (%s)", what, kdcl_status_name(s),
                      kdcl_status_name(want), kdcl_last_error());
    ck_assert_msg(kdcl_last_error()[0] != '\0', "%s: no error message", what);
}

/* ---- 1. options ------------------------------------------------------------ */

START_TEST(test_opts_default)
{
    kdcl_kmeans_opts o;
    memset(&o, 0xab, sizeof o);
    kdcl_kmeans_opts_default(&o);
    ck_assert_uint_eq(o.M, 0);
    ck_assert_uint_eq(o.restarts, 10);
    ck_assert_uint_eq(o.max_iter, 100);
    ck_assert_uint_eq(o.overlap, 1);
    ck_assert_uint_eq(o.seed, 1);
}
END_TEST

/* ---- 2. covariance ------------------------------------------------------------ */

static void covariance_case(size_t N, int n_classes, int train)
{
    kdcl_dataset ds, tr;
    tu_make_6x6(&ds, N, 100 + N, n_classes, region_col, 160, 50);
    tu_make_6x6(&tr, 1000, 5, KC, region_col, 160, 50);
    kdcl_model *m = make_model(&tr, train);
    const size_t K = KC;
    double cov[KC * KC], mean[KC], cov2[KC * KC];
    int32_t conf[KC * KC], cref[KC * KC] = {0};
    tu_ok(kdcl_prob_covariance(m, &ds, cov, mean, conf), "prob_covariance");
    /* without mean and confusion: the same covariance, bit for bit */
    tu_ok(kdcl_prob_covariance(m, &ds, cov2, NULL, NULL), "prob_covariance");
    ck_assert_msg(memcmp(cov, cov2, sizeof cov) == 0, "N=%zu: covariance not reproducible", N);

    float *z = NULL;
    tu_ok(kdcl_model_logits_all(m, &ds, &z), "model_logits_all");
    const size_t B = N < 64 ? N : 64, steps = (N + B - 1) / B;
    const double g = tu_gamma_n(N + 2 * steps + 2);
    double S[KC * KC] = {0}, tS[KC * KC] = {0}, c[KC] = {0}, tc[KC] = {0};
    double lp[KC], delta[KC], p[KC], rho[KC];
    for (size_t n = 0; n < N; n++) {
        tu_rowref rr = tu_ref_row(z + n * K, K, 1.0, 0, lp, delta);
        size_t am = 0;
        for (size_t k = 0; k < K; k++) {
            p[k] = exp(lp[k]);
            rho[k] = delta[k] + rr.E + 14 * U;
            if (z[n * K + k] > z[n * K + am]) am = k;
        }
        if (ds.labels[n] >= 0 && (size_t)ds.labels[n] < K) cref[(size_t)ds.labels[n] * K + am]++;
        for (size_t i = 0; i < K; i++) {
            c[i] += p[i];
            tc[i] += p[i] * ((1 + rho[i]) * (1 + g) - 1) + TINY;
            for (size_t j = 0; j < K; j++) {
                S[i * K + j] += p[i] * p[j];
                tS[i * K + j] += p[i] * p[j] * ((1 + rho[i]) * (1 + rho[j]) * (1 + g) - 1) + TINY;
            }
        }
    }
    double worst = 0;
    for (size_t i = 0; i < K; i++) {
        const double mi = c[i] / N, emi = tc[i] / N;
        const double tm = SAFETY * emi + 1e-300;
        ck_assert_msg(fabs(mean[i] - mi) <= tm, "N=%zu: mean[%zu] = %.12g, want %.12g (tol %.3g)",
                      N, i, mean[i], mi, tm);
        worst = fmax(worst, fabs(mean[i] - mi) / tm);
        for (size_t j = 0; j < K; j++) {
            const double mj = c[j] / N, emj = tc[j] / N, e = S[i * K + j] / N;
            const double want = e - mi * mj;
            const double tol = SAFETY * (tS[i * K + j] / N + emi * mj + mi * emj + emi * emj +
                                         8 * 0x1p-53 * (e + mi * mj)) +
                               1e-300;
            const double got = cov[i * K + j];
            ck_assert_msg(fabs(got - want) <= tol,
                          "N=%zu: cov[%zu][%zu] = %.12g, want %.12g (err %.3g, tol %.3g)", N, i,
                          j, got, want, fabs(got - want), tol);
            ck_assert_msg(cov[i * K + j] == cov[j * K + i], "N=%zu: cov not symmetric", N);
            worst = fmax(worst, fabs(got - want) / tol);
        }
    }
    size_t total = 0;
    for (size_t k = 0; k < K * K; k++) {
        ck_assert_msg(conf[k] == cref[k], "N=%zu: confusion[%zu][%zu] = %d, want %d", N, k / K,
                      k % K, (int)conf[k], (int)cref[k]);
        total += (size_t)conf[k];
    }
    ck_assert_uint_eq(total, N);
    if (getenv("KDCL_TEST_VERBOSE"))
        fprintf(stderr, "covariance N=%zu: worst error / tolerance %.3g\n", N, worst);
    free(z);
    kdcl_model_destroy(m);
    kdcl_dataset_free(&ds);
    kdcl_dataset_free(&tr);
}

/* 1000 = 15 * 64 + 40 examples (a partial last batch), trained model. */
START_TEST(test_covariance_reference) { covariance_case(1000, KC, 1); }
END_TEST

/* One batch smaller than the model's max batch, 5 data classes under 6
 * outputs; and a single example (covariance 0 within the bound). */
START_TEST(test_covariance_small)
{
    covariance_case(37, 5, 0);
    covariance_case(1, KC, 1);
}
END_TEST

START_TEST(test_covariance_bad_args)
{
    kdcl_dataset ds, ds7, empty = {0};
    tu_make_6x6(&ds, 50, 1, KC, region_col, 160, 50);
    tu_make_6x6(&ds7, 50, 1, 7, region_col, 160, 50);
    kdcl_model *m = make_model(&ds, 0);
    kdcl_model *m25 = tu_model("25-6", 6, 0, 0, 0, 16, 0, 0, 1);
    double cov[KC * KC], mean[KC];
    empty.dim = 36;
    empty.n_classes = KC;
    expect_fail(kdcl_prob_covariance(m25, &ds, cov, mean, NULL),
                KDCL_ERR_INVALID_ARG, "input dim mismatch");
    expect_fail(kdcl_prob_covariance(m, &ds7, cov, mean, NULL),
                KDCL_ERR_INVALID_ARG, "more data classes than outputs");
    expect_fail(kdcl_prob_covariance(m, &empty, cov, mean, NULL),
                KDCL_ERR_INVALID_ARG, "empty dataset");
    expect_fail(kdcl_prob_covariance(m, &ds, NULL, mean, NULL),
                KDCL_ERR_INVALID_ARG, "NULL cov");
    /* still usable afterwards */
    tu_ok(kdcl_prob_covariance(m, &ds, cov, mean, NULL), "after errors");
    kdcl_model_destroy(m);
    kdcl_model_destroy(m25);
    kdcl_dataset_free(&ds);
    kdcl_dataset_free(&ds7);
}
END_TEST

/* ---- 3. K-means ------------------------------------------------------------------ */

#define KB 12
static const int blocks12[KB] = {0, 1, 1, 0, 2, 2, 2, 0, 2, 1, 1, 2};

/* Correlation columns: the clusters do not change when each class's
 * probabilities are rescaled (cov -> D cov D with D > 0 diagonal), which
 * on the raw covariance columns pulls a high-variance class out on its own;
 * a class with zero variance gives no NaN. */
START_TEST(test_kmeans_correlation)
{
    double cov[KB * KB], scaled[KB * KB];
    synth_cov(cov, KB, blocks12, 3, 3000, 0.3, 0.03, 42);
    double dsc[KB];
    for (size_t i = 0; i < KB; i++) dsc[i] = i == 4 ? 6.0 : 0.5 + 0.1 * (double)i;
    for (size_t i = 0; i < KB; i++)
        for (size_t j = 0; j < KB; j++) scaled[i * KB + j] = dsc[i] * cov[i * KB + j] * dsc[j];
    static const int32_t b0[] = {0, 3, 7}, b1[] = {1, 2, 9, 10}, b2[] = {4, 5, 6, 8, 11};
    const int32_t *lists[] = {b0, b1, b2};
    const size_t sizes[] = {3, 4, 5};
    kdcl_clusters want = {0}, c = {0}, raw = {0};
    tu_ok(kdcl_clusters_from_lists(KB, 3, sizes, lists, &want), "from_lists");
    kdcl_kmeans_opts o;
    kdcl_kmeans_opts_default(&o);
    o.M = 3;
    o.correlation = 1;
    tu_ok(kdcl_cluster_classes(scaled, KB, &o, &c, NULL), "correlation");
    ck_assert_msg(clusters_equal(&c, &want), "correlation columns: blocks not recovered");
    kdcl_clusters_free(&c);
    o.correlation = 0; /* the raw columns: class 4's variance dominates */
    tu_ok(kdcl_cluster_classes(scaled, KB, &o, &raw, NULL), "covariance");
    ck_assert_msg(!clusters_equal(&raw, &want), "expected the scaled covariance to mislead");
    kdcl_clusters_free(&raw);
    /* zero variance for class 3: finite, valid clusters */
    for (size_t i = 0; i < KB; i++) scaled[3 * KB + i] = scaled[i * KB + 3] = 0.0;
    o.correlation = 1;
    double in = NAN;
    tu_ok(kdcl_cluster_classes(scaled, KB, &o, &c, &in), "zero variance");
    ck_assert(isfinite(in));
    check_valid(&c, KB, 3, 1, "zero variance");
    kdcl_clusters_free(&c);
    kdcl_clusters_free(&want);
}
END_TEST

START_TEST(test_kmeans_blocks)
{
    double cov[KB * KB];
    synth_cov(cov, KB, blocks12, 3, 3000, 0.3, 0.03, 42);
    static const int32_t b0[] = {0, 3, 7}, b1[] = {1, 2, 9, 10}, b2[] = {4, 5, 6, 8, 11};
    const int32_t *lists[] = {b0, b1, b2};
    const size_t sizes[] = {3, 4, 5};
    kdcl_clusters want = {0};
    tu_ok(kdcl_clusters_from_lists(KB, 3, sizes, lists, &want), "from_lists");
    kdcl_kmeans_opts o;
    kdcl_kmeans_opts_default(&o);
    o.M = 3;
    for (uint64_t seed = 1; seed <= 6; seed++) {
        o.seed = seed;
        o.restarts = seed <= 3 ? 10 : 1; /* even single runs find such clear blocks */
        kdcl_clusters c = {0}, c2 = {0};
        double in1 = -1, in2 = -2;
        tu_ok(kdcl_cluster_classes(cov, KB, &o, &c, &in1), "cluster_classes");
        tu_ok(kdcl_cluster_classes(cov, KB, &o, &c2, &in2), "cluster_classes again");
        ck_assert_msg(clusters_equal(&c, &c2) && in1 == in2, "seed %llu: not deterministic",
                      (unsigned long long)seed);
        ck_assert_msg(clusters_equal(&c, &want), "seed %llu: blocks not recovered",
                      (unsigned long long)seed);
        check_valid(&c, KB, 3, 1, "blocks");
        check_lloyd_fixed_point(cov, &c, "blocks");
        ck_assert(isfinite(in1) && in1 >= 0);
        kdcl_clusters_free(&c);
        kdcl_clusters_free(&c2);
    }
    /* with overlap 2 each class also joins the nearest other block */
    o.seed = 1;
    o.overlap = 2;
    kdcl_clusters c = {0};
    tu_ok(kdcl_cluster_classes(cov, KB, &o, &c, NULL), "overlap 2");
    check_valid(&c, KB, 3, 2, "blocks overlap 2");
    kdcl_clusters_free(&c);
    kdcl_clusters_free(&want);
}
END_TEST

/* Determinism and validity on a less structured covariance (a trained model's
 * and a random one): same seed -> identical clusters; other seeds valid. */
START_TEST(test_kmeans_seeds)
{
    double cov[KC * KC];
    model_cov(cov, NULL);
    enum { KR = 20 };
    double rc[KR * KR];
    int blk[KR];
    for (int k = 0; k < KR; k++) blk[k] = k % 7;
    synth_cov(rc, KR, blk, 7, 500, 3.0, 0.5, 9);
    const double *covs[2] = {cov, rc};
    const size_t Ks[2] = {KC, KR};
    for (int t = 0; t < 2; t++) {
        kdcl_kmeans_opts o;
        kdcl_kmeans_opts_default(&o);
        o.M = 3;
        kdcl_clusters a = {0}, b = {0};
        double ia, ib;
        for (uint64_t seed = 1; seed <= 8; seed++) {
            o.seed = seed;
            tu_ok(kdcl_cluster_classes(covs[t], Ks[t], &o, &a, &ia), "run 1");
            tu_ok(kdcl_cluster_classes(covs[t], Ks[t], &o, &b, &ib), "run 2");
            ck_assert_msg(clusters_equal(&a, &b) && ia == ib, "K=%zu seed %llu: not deterministic",
                          Ks[t], (unsigned long long)seed);
            check_valid(&a, Ks[t], 3, 1, "seeds");
            check_lloyd_fixed_point(covs[t], &a, "seeds");
            kdcl_clusters_free(&a);
            kdcl_clusters_free(&b);
        }
        /* more restarts never give a worse inertia than the first of them */
        o.seed = 3;
        o.restarts = 1;
        tu_ok(kdcl_cluster_classes(covs[t], Ks[t], &o, &a, &ia), "1 restart");
        o.restarts = 20;
        tu_ok(kdcl_cluster_classes(covs[t], Ks[t], &o, &b, &ib), "20 restarts");
        ck_assert_msg(ib <= ia, "K=%zu: 20 restarts inertia %g > 1 restart %g", Ks[t], ib, ia);
        kdcl_clusters_free(&a);
        kdcl_clusters_free(&b);
    }
}
END_TEST

/* Every class is covered: r = 1 exactly once, overlap r exactly r times; all
 * M clusters non-empty, including M = K (singletons) and M = 1. */
START_TEST(test_kmeans_cover)
{
    double cov[KC * KC];
    model_cov(cov, NULL);
    enum { KR = 20 };
    double rc[KR * KR];
    int blk[KR];
    for (int k = 0; k < KR; k++) blk[k] = (k * 7) % 5;
    synth_cov(rc, KR, blk, 5, 400, 1.0, 0.2, 17);
    const double *covs[2] = {cov, rc};
    const size_t Ks[2] = {KC, KR};
    for (int t = 0; t < 2; t++) {
        const size_t K = Ks[t];
        for (size_t M = 1; M <= K; M++) {
            if (K == KR && !(M <= 3 || M == 7 || M == K - 1 || M == K)) continue;
            for (size_t r = 1; r <= M; r++) {
                if (K == KR && !(r <= 2 || r == M)) continue;
                kdcl_kmeans_opts o;
                kdcl_kmeans_opts_default(&o);
                o.M = M;
                o.overlap = r;
                o.restarts = 3;
                o.seed = 100 + M + r;
                kdcl_clusters c = {0};
                double in = -1;
                char what[64];
                snprintf(what, sizeof what, "K=%zu M=%zu r=%zu", K, M, r);
                tu_ok(kdcl_cluster_classes(covs[t], K, &o, &c, &in), what);
                check_valid(&c, K, M, r, what);
                ck_assert_msg(isfinite(in) && in >= 0, "%s: inertia %g", what, in);
                if (r == 1) check_lloyd_fixed_point(covs[t], &c, what);
                if (M == K && r == 1) {
                    for (size_t m = 0; m < M; m++) /* singletons, sorted */
                        ck_assert(c.off[m] == m && c.cls[m] == (int32_t)m);
                    ck_assert_msg(in == 0, "%s: inertia %g, want 0", what, in);
                }
                if (M == 1) {
                    /* one cluster of every class; inertia = total sum of squares */
                    double ss = 0;
                    for (size_t i = 0; i < K; i++) {
                        double mu = 0;
                        for (size_t j = 0; j < K; j++) mu += covs[t][i * K + j] / (double)K;
                        for (size_t j = 0; j < K; j++) {
                            double e = covs[t][i * K + j] - mu;
                            ss += e * e;
                        }
                    }
                    ck_assert_msg(fabs(in - ss) <= 1e-12 * ss + 1e-300,
                                  "%s: inertia %.17g, want %.17g", what, in, ss);
                }
                if (r == M)
                    for (size_t m = 0; m < M; m++)
                        ck_assert_uint_eq(c.off[m + 1] - c.off[m], K);
                kdcl_clusters_free(&c);
            }
        }
    }
}
END_TEST

START_TEST(test_kmeans_bad_args)
{
    double cov[KC * KC];
    model_cov(cov, NULL);
    kdcl_kmeans_opts o;
    kdcl_clusters c = {0};
    struct {
        size_t M, restarts, overlap;
        const char *what;
    } bad[] = {{0, 10, 1, "M = 0"},           {KC + 1, 10, 1, "M > K"},
               {3, 10, 4, "overlap > M"},     {3, 10, 0, "overlap 0"},
               {3, 0, 1, "restarts 0"},       {1, 10, 2, "M = 1, overlap 2"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kdcl_kmeans_opts_default(&o);
        o.M = bad[i].M;
        o.restarts = bad[i].restarts;
        o.overlap = bad[i].overlap;
        double in = 0;
        expect_fail(kdcl_cluster_classes(cov, KC, &o, &c, &in), KDCL_ERR_INVALID_ARG, bad[i].what);
        ck_assert_msg(c.off == NULL && c.cls == NULL && c.M == 0, "%s: output not zeroed",
                      bad[i].what);
    }
    kdcl_kmeans_opts_default(&o);
    o.M = 2;
    double saved = cov[2 * KC + 3];
    cov[2 * KC + 3] = NAN;
    expect_fail(kdcl_cluster_classes(cov, KC, &o, &c, NULL), KDCL_ERR_INVALID_ARG, "NaN in cov");
    cov[2 * KC + 3] = INFINITY;
    expect_fail(kdcl_cluster_classes(cov, KC, &o, &c, NULL), KDCL_ERR_INVALID_ARG, "Inf in cov");
    cov[2 * KC + 3] = saved;
    expect_fail(kdcl_cluster_classes(NULL, KC, &o, &c, NULL), KDCL_ERR_INVALID_ARG, "NULL cov");
    expect_fail(kdcl_cluster_classes(cov, 0, &o, &c, NULL), KDCL_ERR_INVALID_ARG, "K = 0");
    expect_fail(kdcl_cluster_classes(cov, KC, NULL, &c, NULL), KDCL_ERR_INVALID_ARG, "NULL opts");
    /* more clusters than KDCL_MAX_CLUSTERS */
    const size_t K = KDCL_MAX_CLUSTERS + 1;
    double *big = calloc(K * K, sizeof *big);
    ck_assert(big);
    o.M = K;
    expect_fail(kdcl_cluster_classes(big, K, &o, &c, NULL), KDCL_ERR_INVALID_ARG,
                "M > KDCL_MAX_CLUSTERS");
    free(big);
    /* degenerate but valid: an all-zero covariance still gives M non-empty clusters */
    double zero[KC * KC] = {0};
    o.M = 4;
    o.overlap = 2;
    tu_ok(kdcl_cluster_classes(zero, KC, &o, &c, NULL), "zero covariance");
    check_valid(&c, KC, 4, 2, "zero covariance");
    kdcl_clusters_free(&c);
}
END_TEST

/* ---- 4. clusters helpers ----------------------------------------------------------- */

START_TEST(test_from_lists)
{
    kdcl_clusters z = {0};
    kdcl_clusters_free(&z); /* zeroed: fine, and stays zeroed */
    kdcl_clusters_free(NULL);
    ck_assert(z.off == NULL && z.cls == NULL && z.K == 0 && z.M == 0);
    ck_assert_uint_eq(kdcl_clusters_count_of(&z, 0), 0);
    ck_assert_uint_eq(kdcl_clusters_count_of(NULL, 0), 0);

    static const int32_t a[] = {4, 1, 2}, b[] = {0}, c[] = {5, 3, 1};
    const int32_t *lists[] = {a, b, c};
    const size_t sizes[] = {3, 1, 3};
    kdcl_clusters cl = {0};
    tu_ok(kdcl_clusters_from_lists(6, 3, sizes, lists, &cl), "from_lists");
    static const int32_t want[] = {1, 2, 4, 0, 1, 3, 5};
    static const size_t woff[] = {0, 3, 4, 7};
    ck_assert(cl.K == 6 && cl.M == 3);
    for (size_t i = 0; i < 4; i++) ck_assert_uint_eq(cl.off[i], woff[i]);
    for (size_t i = 0; i < 7; i++) ck_assert_int_eq(cl.cls[i], want[i]);
    static const size_t counts[] = {1, 2, 1, 1, 1, 1};
    for (size_t k = 0; k < 6; k++) ck_assert_uint_eq(kdcl_clusters_count_of(&cl, k), counts[k]);
    ck_assert_uint_eq(kdcl_clusters_count_of(&cl, 6), 0);
    kdcl_clusters_free(&cl);
    ck_assert(cl.off == NULL && cl.cls == NULL && cl.K == 0 && cl.M == 0);
    kdcl_clusters_free(&cl);

    static const int32_t dup[] = {1, 3, 1}, oor[] = {0, 6}, neg[] = {-1};
    struct {
        size_t K, M;
        const int32_t *l0;
        size_t s0;
        const char *what;
    } bad[] = {{6, 2, dup, 3, "duplicate"}, {6, 2, oor, 2, "out of range"},
               {6, 2, neg, 1, "negative"},  {6, 2, a, 0, "empty cluster"},
               {6, 0, a, 3, "M = 0"},       {0, 2, a, 3, "K = 0"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const int32_t *ls[] = {b, bad[i].l0};
        const size_t ss[] = {1, bad[i].s0};
        memset(&cl, 0x5a, sizeof cl);
        expect_fail(kdcl_clusters_from_lists(bad[i].K, bad[i].M, ss, ls, &cl),
                    KDCL_ERR_INVALID_ARG, bad[i].what);
        ck_assert_msg(cl.off == NULL && cl.cls == NULL, "%s: output not zeroed", bad[i].what);
    }
    expect_fail(kdcl_clusters_from_lists(6, 1, sizes, NULL, &cl), KDCL_ERR_INVALID_ARG,
                "NULL lists");
    expect_fail(kdcl_clusters_from_lists(6, 1, NULL, lists, &cl), KDCL_ERR_INVALID_ARG,
                "NULL sizes");
}
END_TEST

/* ---- 5. JSON ------------------------------------------------------------------------- */

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    ck_assert(buf && fread(buf, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    buf[len] = '\0';
    *n = (size_t)len;
    return buf;
}

static int no_temp_files(void)
{
    DIR *d = opendir(tu_tmpdir());
    ck_assert(d);
    struct dirent *e;
    int ok = 1;
    while ((e = readdir(d)))
        if (strstr(e->d_name, "clusters") && strstr(e->d_name, ".tmp")) ok = 0;
    closedir(d);
    return ok;
}

START_TEST(test_json_round_trip)
{
    double cov[KC * KC];
    int32_t conf[KC * KC];
    model_cov(cov, conf);
    static const char *names[KC] = {"zero", "one", "two", "three \"3\"", "four", "f\u00fcnf"};
    for (size_t r = 1; r <= 2; r++) {
        kdcl_kmeans_opts o;
        kdcl_kmeans_opts_default(&o);
        o.M = 3;
        o.overlap = r;
        o.seed = 12345;
        kdcl_clusters c = {0}, l = {0}, l0 = {0};
        double in = 0;
        tu_ok(kdcl_cluster_classes(cov, KC, &o, &c, &in), "cluster_classes");
        kdcl_cluster_info info = {"gen.safetensors", names, conf, cov, &o, in};
        const char *path = tu_path("clusters.json");
        tu_ok(kdcl_clusters_save_json(path, &c, &info), "save");
        ck_assert_msg(no_temp_files(), "temporary file left behind");
        tu_ok(kdcl_clusters_load_json(path, KC, &l), "load");
        tu_ok(kdcl_clusters_load_json(path, 0, &l0), "load (any K)");
        ck_assert_msg(clusters_equal(&c, &l) && clusters_equal(&c, &l0), "r=%zu: round trip",
                      r);

        /* the recorded fields */
        size_t n;
        char *text = slurp(path, &n);
        cJSON *root = cJSON_Parse(text);
        ck_assert(root);
        ck_assert_str_eq(cJSON_GetObjectItem(root, "format")->valuestring, "kdcl-clusters");
        ck_assert_int_eq(cJSON_GetObjectItem(root, "version")->valueint, 1);
        ck_assert_int_eq(cJSON_GetObjectItem(root, "classes")->valueint, KC);
        ck_assert_str_eq(cJSON_GetObjectItem(root, "generalist")->valuestring, "gen.safetensors");
        cJSON *km = cJSON_GetObjectItem(root, "kmeans");
        ck_assert_int_eq(cJSON_GetObjectItem(km, "M")->valueint, 3);
        ck_assert_int_eq(cJSON_GetObjectItem(km, "overlap")->valueint, (int)r);
        ck_assert_int_eq(cJSON_GetObjectItem(km, "restarts")->valueint, 10);
        ck_assert_int_eq(cJSON_GetObjectItem(km, "max_iter")->valueint, 100);
        ck_assert_int_eq(cJSON_GetObjectItem(km, "seed")->valueint, 12345);
        ck_assert(cJSON_GetObjectItem(km, "inertia")->valuedouble == in);
        cJSON *cv = cJSON_GetObjectItem(root, "covariance");
        ck_assert_int_eq(cJSON_GetArraySize(cv), KC);
        for (int i = 0; i < KC; i++)
            for (int j = 0; j < KC; j++)
                ck_assert(cJSON_GetArrayItem(cJSON_GetArrayItem(cv, i), j)->valuedouble ==
                          cov[i * KC + j]);
        cJSON *arr = cJSON_GetObjectItem(root, "clusters");
        ck_assert_int_eq(cJSON_GetArraySize(arr), 3);
        for (int m = 0; m < 3; m++) {
            cJSON *cl = cJSON_GetArrayItem(arr, m);
            const int32_t *cls = c.cls + c.off[m];
            const int sn = (int)(c.off[m + 1] - c.off[m]);
            ck_assert_int_eq(cJSON_GetObjectItem(cl, "id")->valueint, m);
            cJSON *ca = cJSON_GetObjectItem(cl, "classes"), *na = cJSON_GetObjectItem(cl, "names");
            cJSON *cf = cJSON_GetObjectItem(cl, "confusion");
            ck_assert_int_eq(cJSON_GetArraySize(ca), sn);
            ck_assert_int_eq(cJSON_GetArraySize(cf), sn);
            double ex = 0, within = 0;
            for (int a = 0; a < sn; a++) {
                ck_assert_int_eq(cJSON_GetArrayItem(ca, a)->valueint, cls[a]);
                ck_assert_str_eq(cJSON_GetArrayItem(na, a)->valuestring, names[cls[a]]);
                for (int b = 0; b < sn; b++) {
                    int v = conf[cls[a] * KC + cls[b]];
                    ck_assert_int_eq(cJSON_GetArrayItem(cJSON_GetArrayItem(cf, a), b)->valueint, v);
                    if (a != b) within += v;
                }
                for (int k = 0; k < KC; k++) ex += conf[cls[a] * KC + k];
            }
            ck_assert(cJSON_GetObjectItem(cl, "train_examples")->valuedouble == ex);
            ck_assert(cJSON_GetObjectItem(cl, "within_errors")->valuedouble == within);
        }
        cJSON_Delete(root);
        free(text);

        /* without any info: clusters only, still loadable */
        tu_ok(kdcl_clusters_save_json(path, &c, NULL), "save bare");
        kdcl_clusters_free(&l);
        tu_ok(kdcl_clusters_load_json(path, KC, &l), "load bare");
        ck_assert(clusters_equal(&c, &l));
        text = slurp(path, &n);
        ck_assert(!strstr(text, "names") && !strstr(text, "confusion") &&
                  !strstr(text, "covariance"));
        free(text);
        kdcl_clusters_free(&c);
        kdcl_clusters_free(&l);
        kdcl_clusters_free(&l0);
    }
    /* unwritable destination and invalid clusters */
    kdcl_clusters c = {0};
    static const int32_t a0[] = {0, 1, 2, 3, 4, 5};
    const int32_t *ls[] = {a0};
    const size_t ss[] = {6};
    tu_ok(kdcl_clusters_from_lists(KC, 1, ss, ls, &c), "from_lists");
    expect_fail(kdcl_clusters_save_json(tu_path("no-such-dir/clusters.json"), &c, NULL),
                KDCL_ERR_IO, "missing directory");
    kdcl_clusters zero = {0};
    expect_fail(kdcl_clusters_save_json(tu_path("clusters-z.json"), &zero, NULL),
                KDCL_ERR_INVALID_ARG, "empty clusters");
    kdcl_clusters_free(&c);
}
END_TEST

static void expect_load_fail(const char *name, const char *text, size_t expect_K, kdcl_status want)
{
    const char *path = tu_path(name);
    ck_assert(tu_write_file(path, text, strlen(text)) == 0);
    kdcl_clusters c;
    memset(&c, 0x5a, sizeof c);
    kdcl_status s = kdcl_clusters_load_json(path, expect_K, &c);
    ck_assert_msg(s != KDCL_OK, "%s: accepted", name);
    if (want) ck_assert_msg(s == want, "%s: %s, want %s (%s)", name, kdcl_status_name(s),
                            kdcl_status_name(want), kdcl_last_error());
    ck_assert_msg(strstr(kdcl_last_error(), path) != NULL, "%s: message does not name the file: %s",
                  name, kdcl_last_error());
    ck_assert_msg(c.off == NULL && c.cls == NULL && c.M == 0, "%s: output not zeroed", name);
}

#define HDR "{\"format\": \"kdcl-clusters\", \"version\": 1, \"classes\": 4, "

START_TEST(test_json_rejects)
{
    const kdcl_status F = KDCL_ERR_FORMAT;
    const char *good =
        HDR "\"clusters\": [{\"id\": 0, \"classes\": [0, 2]}, {\"classes\": [3, 1]}]}";
    const char *path = tu_path("clusters-good.json");
    ck_assert(tu_write_file(path, good, strlen(good)) == 0);
    kdcl_clusters c = {0};
    tu_ok(kdcl_clusters_load_json(path, 4, &c), "hand-written file");
    check_valid(&c, 4, 2, 1, "hand-written");
    kdcl_clusters_free(&c);

    expect_load_fail("clusters-trunc.json", HDR "\"clusters\": [{\"id\": 0, \"classes\": [0, 2",
                     0, F);
    expect_load_fail("clusters-garbage.json", "this is not json", 0, F);
    expect_load_fail("clusters-empty.json", "", 0, F);
    expect_load_fail("clusters-array.json", "[1, 2, 3]", 0, F);
    expect_load_fail("clusters-trailing.json", HDR "\"clusters\": [{\"classes\": [0]}]} x", 0, F);
    expect_load_fail("clusters-format.json",
                     "{\"format\": \"kdcl-other\", \"version\": 1, \"classes\": 4, "
                     "\"clusters\": [{\"classes\": [0]}]}",
                     0, F);
    expect_load_fail("clusters-noformat.json",
                     "{\"version\": 1, \"classes\": 4, \"clusters\": [{\"classes\": [0]}]}", 0, F);
    expect_load_fail("clusters-version.json",
                     "{\"format\": \"kdcl-clusters\", \"version\": 2, \"classes\": 4, "
                     "\"clusters\": [{\"classes\": [0]}]}",
                     0, F);
    expect_load_fail("clusters-range.json", HDR "\"clusters\": [{\"classes\": [0, 4]}]}", 0, F);
    expect_load_fail("clusters-neg.json", HDR "\"clusters\": [{\"classes\": [-1]}]}", 0, F);
    expect_load_fail("clusters-dup.json", HDR "\"clusters\": [{\"classes\": [1, 2, 1]}]}", 0, F);
    expect_load_fail("clusters-emptyc.json",
                     HDR "\"clusters\": [{\"classes\": [0]}, {\"classes\": []}]}", 0, F);
    expect_load_fail("clusters-none.json", HDR "\"clusters\": []}", 0, F);
    expect_load_fail("clusters-noclusters.json", HDR "\"x\": 1}", 0, F);
    expect_load_fail("clusters-frac.json", HDR "\"clusters\": [{\"classes\": [0, 1.5]}]}", 0, F);
    expect_load_fail("clusters-str.json", HDR "\"clusters\": [{\"classes\": [0, \"1\"]}]}", 0, F);
    expect_load_fail("clusters-notobj.json", HDR "\"clusters\": [[0, 1]]}", 0, F);
    expect_load_fail("clusters-id.json", HDR "\"clusters\": [{\"id\": 5, \"classes\": [0]}]}",
                     0, F);
    expect_load_fail("clusters-K0.json",
                     "{\"format\": \"kdcl-clusters\", \"version\": 1, \"classes\": 0, "
                     "\"clusters\": [{\"classes\": [0]}]}",
                     0, F);
    expect_load_fail("clusters-names.json",
                     HDR "\"clusters\": [{\"classes\": [0, 1], \"names\": [\"a\"]}]}", 0, F);
    expect_load_fail("clusters-K.json", good, 5, F); /* K mismatch */
    {
        static const char nul[] = "{\"format\": \"kdcl-clusters\"\0, \"version\": 1}";
        const char *np = tu_path("clusters-nul.json");
        ck_assert(tu_write_file(np, nul, sizeof nul - 1) == 0);
        expect_fail(kdcl_clusters_load_json(np, 0, &c), F, "NUL byte");
        ck_assert(strstr(kdcl_last_error(), np) != NULL);
    }

    kdcl_clusters_free(&c);
    kdcl_status s = kdcl_clusters_load_json(tu_path("clusters-missing.json"), 0, &c);
    ck_assert_int_eq(s, KDCL_ERR_IO);
    ck_assert(strstr(kdcl_last_error(), "clusters-missing.json") != NULL);
}
END_TEST

/* Every truncation of a real file fails cleanly; random byte changes never
 * crash and, when accepted, give valid clusters. */
START_TEST(test_json_fuzz)
{
    double cov[KC * KC];
    int32_t conf[KC * KC];
    model_cov(cov, conf);
    kdcl_kmeans_opts o;
    kdcl_kmeans_opts_default(&o);
    o.M = 3;
    o.overlap = 2;
    kdcl_clusters c = {0};
    tu_ok(kdcl_cluster_classes(cov, KC, &o, &c, NULL), "cluster_classes");
    static const char *names[KC] = {"a", "b", "c", "d", "e", "f"};
    kdcl_cluster_info info = {NULL, names, conf, cov, &o, 1.0};
    const char *src = tu_path("clusters-src.json");
    tu_ok(kdcl_clusters_save_json(src, &c, &info), "save");
    size_t n;
    char *text = slurp(src, &n);
    ck_assert(n > 2 && text[n - 1] == '\n' && text[n - 2] == '}');
    const char *path = tu_path("clusters-fuzz.json");
    kdcl_clusters l = {0};
    for (size_t len = 0; len + 1 < n; len++) {
        ck_assert(tu_write_file(path, text, len) == 0);
        kdcl_status s = kdcl_clusters_load_json(path, KC, &l);
        ck_assert_msg(s == KDCL_ERR_FORMAT, "truncated to %zu of %zu bytes: %s", len, n,
                      s ? kdcl_status_name(s) : "accepted");
        ck_assert(strstr(kdcl_last_error(), path) != NULL);
    }
    kdcl_rng r;
    kdcl_rng_seed(&r, 77);
    char *mut = malloc(n);
    ck_assert(mut);
    size_t accepted = 0;
    for (int t = 0; t < 600; t++) {
        memcpy(mut, text, n);
        int k = 1 + (int)kdcl_rng_below(&r, 3);
        for (int i = 0; i < k; i++) {
            static const char alphabet[] = "0123456789-.,:[]{}\" e\\x\001\377";
            mut[kdcl_rng_below(&r, n)] = alphabet[kdcl_rng_below(&r, sizeof alphabet - 1)];
        }
        ck_assert(tu_write_file(path, mut, n) == 0);
        kdcl_status s = kdcl_clusters_load_json(path, 0, &l);
        if (s == KDCL_OK) {
            accepted++;
            ck_assert(l.M >= 1 && l.M <= KDCL_MAX_CLUSTERS && l.K >= 1);
            for (size_t m = 0; m < l.M; m++) {
                ck_assert(l.off[m + 1] > l.off[m]);
                for (size_t i = l.off[m]; i < l.off[m + 1]; i++) {
                    ck_assert(l.cls[i] >= 0 && (size_t)l.cls[i] < l.K);
                    if (i > l.off[m]) ck_assert(l.cls[i] > l.cls[i - 1]);
                }
            }
            kdcl_clusters_free(&l);
        } else {
            ck_assert(l.off == NULL && l.cls == NULL);
            ck_assert(kdcl_last_error()[0] != '\0');
        }
    }
    if (getenv("KDCL_TEST_VERBOSE"))
        fprintf(stderr, "fuzz: %zu of 600 mutants accepted\n", accepted);
    free(mut);
    free(text);
    kdcl_clusters_free(&c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("clusters");
    TCase *tc = tcase_create("clusters");
    tcase_add_unchecked_fixture(tc, tu_ctx_setup, tu_ctx_teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_opts_default);
    tcase_add_test(tc, test_covariance_reference);
    tcase_add_test(tc, test_covariance_small);
    tcase_add_test(tc, test_covariance_bad_args);
    tcase_add_test(tc, test_kmeans_blocks);
    tcase_add_test(tc, test_kmeans_correlation);
    tcase_add_test(tc, test_kmeans_seeds);
    tcase_add_test(tc, test_kmeans_cover);
    tcase_add_test(tc, test_kmeans_bad_args);
    tcase_add_test(tc, test_from_lists);
    tcase_add_test(tc, test_json_round_trip);
    tcase_add_test(tc, test_json_rejects);
    tcase_add_test(tc, test_json_fuzz);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
