/* Class clusters from the covariance of a generalist's predictions (Hinton,
 * Vinyals & Dean 2015, section 5): the K x K covariance of the predicted
 * probability vectors over the training set (second moments as CLBlast GEMMs
 * accumulated on the device), K-means of its columns (k-means++ seeding,
 * online MacQueen passes, Lloyd iterations, restarts), and the JSON clusters
 * file.
 *
 * Choices left open by the header:
 *  - kdcl_kmeans_opts_default sets M = 0, which kdcl_cluster_classes rejects:
 *    the number of clusters has no sensible default and must be chosen.
 *  - One run: k-means++ seeding and KM_ONLINE_PASSES MacQueen passes (each in
 *    a fresh seeded random order; centre counts start at 1 and keep growing
 *    across passes) on even runs, Forgy seeding (distinct random points) on
 *    odd runs, then Lloyd until the assignment repeats or max_iter. (On the
 *    10 Fashion-MNIST classes, k-means++ runs alone stayed at inertia 6.62 for
 *    1000 restarts; Forgy runs find 6.55.)
 *    An empty cluster takes the point farthest from its centroid among the
 *    clusters with two or more points. All runs draw from one generator
 *    seeded with o->seed; the lowest inertia wins (first on ties).
 *  - Overlap r: a class is in its own cluster of the best run plus the r - 1
 *    nearest other centroids (distance, then index), so each class is in
 *    exactly r clusters and no cluster is empty.
 *  - Output: each list ascending, clusters ordered by their lists
 *    (lexicographically: the cluster with the smallest class first).
 *  - The covariance is symmetrised (the GEMM may round S_ij and S_ji
 *    differently); S and the column sums are fp32 sums over the whole set, a
 *    relative error of at most gamma_N (far less in practice).
 *  - The JSON loader reports malformed files as KDCL_ERR_FORMAT (a K that is
 *    not expect_K too), unreadable ones as KDCL_ERR_IO. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/batcher_internal.h"
#include "data/data_internal.h"
#include "kdcl/file.h"
#include "nn/eval_internal.h"
#include "kdcl/gemm.h"
#include "kdcl/loss.h"
#include "kdcl/ops.h"
#include "kdcl/specialists.h"

/* Online (MacQueen) passes over the points between seeding and Lloyd. */
#define KM_ONLINE_PASSES 2

/* ---- the clusters structure ------------------------------------------------- */

void kdcl_clusters_free(kdcl_clusters *c)
{
    if (!c) return;
    free(c->off);
    free(c->cls);
    memset(c, 0, sizeof *c);
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Validate lists and build *out (zeroed first; zeroed again on failure).
 * Messages start with `who`; problems are reported as `bad`. Values are
 * int64 so that a loader can pass what it read before any narrowing. */
static kdcl_status build_clusters(const char *who, kdcl_status bad, size_t K, size_t M,
                                  const size_t *sizes, const int64_t *const *lists64,
                                  const int32_t *const *lists32, kdcl_clusters *out)
{
    memset(out, 0, sizeof *out);
    if (K == 0 || K > (size_t)INT32_MAX)
        return kdcl_set_error(bad, "%s: number of classes %zu outside 1..%d", who, K, INT32_MAX);
    if (M == 0 || M > KDCL_MAX_CLUSTERS)
        return kdcl_set_error(bad, "%s: number of clusters %zu outside 1..%d", who, M,
                              KDCL_MAX_CLUSTERS);
    if (!sizes || (!lists64 && !lists32))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: NULL cluster sizes or lists", who);
    size_t total = 0;
    for (size_t m = 0; m < M; m++) {
        if (sizes[m] == 0) return kdcl_set_error(bad, "%s: cluster %zu is empty", who, m);
        if (sizes[m] > K)
            return kdcl_set_error(bad, "%s: cluster %zu has %zu classes, more than the %zu classes",
                                  who, m, sizes[m], K);
        if ((lists64 && !lists64[m]) || (lists32 && !lists32[m]))
            return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: cluster %zu: NULL list", who, m);
        total += sizes[m]; /* <= M * K <= 1024 * INT32_MAX: no overflow */
    }
    out->off = malloc((M + 1) * sizeof *out->off);
    out->cls = malloc(total * sizeof *out->cls);
    if (!out->off || !out->cls) {
        kdcl_clusters_free(out);
        return kdcl_set_error(KDCL_ERR_OOM, "%s: out of host memory", who);
    }
    size_t at = 0;
    for (size_t m = 0; m < M; m++) {
        out->off[m] = at;
        for (size_t i = 0; i < sizes[m]; i++) {
            int64_t v = lists64 ? lists64[m][i] : (int64_t)lists32[m][i];
            if (v < 0 || (uint64_t)v >= K) {
                kdcl_clusters_free(out);
                return kdcl_set_error(bad, "%s: cluster %zu: class %lld outside 0..%zu", who, m,
                                      (long long)v, K - 1);
            }
            out->cls[at + i] = (int32_t)v;
        }
        qsort(out->cls + at, sizes[m], sizeof *out->cls, cmp_i32);
        for (size_t i = 1; i < sizes[m]; i++)
            if (out->cls[at + i] == out->cls[at + i - 1]) {
                int32_t d = out->cls[at + i];
                kdcl_clusters_free(out);
                return kdcl_set_error(bad, "%s: cluster %zu: class %d appears more than once",
                                      who, m, (int)d);
            }
        at += sizes[m];
    }
    out->off[M] = at;
    out->K = K;
    out->M = M;
    return KDCL_OK;
}

kdcl_status kdcl_clusters_from_lists(size_t K, size_t M, const size_t *sizes,
                                     const int32_t *const *lists, kdcl_clusters *out)
{
    if (!out) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_clusters_from_lists: NULL output");
    if (!lists) {
        memset(out, 0, sizeof *out);
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_clusters_from_lists: NULL lists");
    }
    return build_clusters("kdcl_clusters_from_lists", KDCL_ERR_INVALID_ARG, K, M, sizes, NULL,
                          lists, out);
}

size_t kdcl_clusters_count_of(const kdcl_clusters *c, size_t k)
{
    if (!c || !c->off || !c->cls || k >= c->K) return 0;
    size_t n = 0;
    const int32_t key = (int32_t)k;
    for (size_t m = 0; m < c->M; m++)
        if (bsearch(&key, c->cls + c->off[m], c->off[m + 1] - c->off[m], sizeof key, cmp_i32))
            n++;
    return n;
}

kdcl_status kdcl_clusters_check(const char *who, const kdcl_clusters *c)
{
    if (!c) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: clusters is NULL", who);
    if (c->K < 1 || c->K > (size_t)INT32_MAX)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "%s: clusters over K = %zu classes (need 1..2^31-1)", who, c->K);
    if (c->M < 1 || c->M > KDCL_MAX_CLUSTERS)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: M = %zu clusters (need 1..%d)", who, c->M,
                              KDCL_MAX_CLUSTERS);
    if (!c->off || !c->cls)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: clusters have no class lists", who);
    if (c->off[0] != 0)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: clusters off[0] = %zu (must be 0)", who,
                              c->off[0]);
    for (size_t m = 0; m < c->M; m++) {
        if (c->off[m + 1] <= c->off[m] || c->off[m + 1] - c->off[m] > c->K)
            return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                  "%s: cluster %zu has %zu classes (offsets %zu..%zu; need 1..K = %zu)",
                                  who, m, c->off[m + 1] > c->off[m] ? c->off[m + 1] - c->off[m] : 0,
                                  c->off[m], c->off[m + 1], c->K);
        for (size_t i = c->off[m]; i < c->off[m + 1]; i++) {
            const int32_t k = c->cls[i];
            if (k < 0 || (size_t)k >= c->K)
                return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                      "%s: cluster %zu lists class %d, outside [0, %zu)", who, m,
                                      (int)k, c->K);
            if (i > c->off[m] && k <= c->cls[i - 1])
                return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                      "%s: cluster %zu is not strictly ascending (%d after %d)",
                                      who, m, (int)k, (int)c->cls[i - 1]);
        }
    }
    return KDCL_OK;
}

/* ---- covariance of the predicted probabilities ------------------------------- */

kdcl_status kdcl_prob_covariance(kdcl_model *m, const kdcl_dataset *ds, double *cov,
                                 double *mean, int32_t *confusion)
{
    static const char *who = "kdcl_prob_covariance";
    if (!m || !ds || !cov)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: NULL model, dataset or output", who);
    const size_t K = kdcl_model_classes(m);
    if (ds->n == 0 || !ds->images || !ds->labels)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: the dataset is empty", who);
    kdcl_status s0 = kdcl_check_fit(m, ds, who);
    if (s0) return s0;
    if (K > 46340) /* K * K fits in 31 bits (the confusion kernel's limit too) */
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: %zu classes: at most 46340", who, K);

    kdcl_ctx *ctx = kdcl_model_ctx(m);
    kdcl_batcher b;
    kdcl_tensor P = {0}, S = {0}, csum = {0}, ones = {0}, conf = {0};
    float *hS = NULL, *hc = NULL;
    kdcl_status s = kdcl__batcher_init(ctx, ds, kdcl_model_max_batch(m), &b);
    if (s) return s;
    const size_t B = b.max_batch, KK = K * K, steps = (ds->n + B - 1) / B;
    size_t kk[1] = {KK}, k1[1] = {K}, b1[1] = {B};
    hS = malloc(KK * sizeof *hS);
    hc = malloc(K * sizeof *hc);
    if (!hS || !hc) {
        s = kdcl_set_error(KDCL_ERR_OOM, "%s: out of host memory", who);
        goto done;
    }
    if ((s = kdcl_tensor_alloc2(ctx, &P, KDCL_F32, B, K)) ||
        (s = kdcl_tensor_alloc(ctx, &S, KDCL_F32, 1, kk)) ||
        (s = kdcl_tensor_alloc(ctx, &csum, KDCL_F32, 1, k1)) ||
        (s = kdcl_tensor_alloc(ctx, &ones, KDCL_F32, 1, b1)) ||
        (s = kdcl_tensor_fill(ctx, &ones, 1.0f)))
        goto done;
    if (confusion) {
        if ((s = kdcl_tensor_alloc(ctx, &conf, KDCL_I32, 1, kk))) goto done;
        memset(confusion, 0, KK * sizeof *confusion);
        if ((s = kdcl_tensor_upload(ctx, &conf, 0, KK, confusion))) goto done;
    }
    for (size_t step = 0; step < steps; step++) {
        const size_t start = step * B, count = ds->n - start < B ? ds->n - start : B;
        const size_t ps[2] = {count, K};
        const float beta = step ? 1.0f : 0.0f;
        if ((s = kdcl_batcher_load(&b, start, count)) ||
            (s = kdcl_model_forward_u8(m, &b.batch_u8[b.cur], count)) ||
            (s = kdcl_tensor_reshape(&P, 2, ps)) ||
            (s = kdcl_op_softmax(ctx, kdcl_model_logits(m), &P, 1.0f, 0)) ||
            /* S += P^T P  (K x K, the sum over the batch of p p^T) */
            (s = kdcl_gemm(ctx, KDCL_TRANS, KDCL_NO_TRANS, K, K, count, 1.0f, P.buf, 0, K, P.buf,
                           0, K, beta, S.buf, 0, K, NULL)) ||
            /* csum += P^T 1 */
            (s = kdcl_gemm(ctx, KDCL_TRANS, KDCL_NO_TRANS, K, 1, count, 1.0f, P.buf, 0, K,
                           ones.buf, 0, 1, beta, csum.buf, 0, 1, NULL)) ||
            (confusion &&
             (s = kdcl_op_confusion(ctx, kdcl_model_logits(m), &b.batch_labels[b.cur], &conf))))
            goto done;
    }
    if ((s = kdcl_tensor_download(ctx, &S, 0, KK, hS)) ||
        (s = kdcl_tensor_download(ctx, &csum, 0, K, hc)) ||
        (confusion && (s = kdcl_tensor_download(ctx, &conf, 0, KK, confusion))))
        goto done;
    {
        const double N = (double)ds->n;
        double *mu = mean ? mean : malloc(K * sizeof *mu); /* the mean is needed either way */
        if (!mu) {
            s = kdcl_set_error(KDCL_ERR_OOM, "%s: out of host memory", who);
            goto done;
        }
        for (size_t k = 0; k < K; k++) mu[k] = (double)hc[k] / N;
        for (size_t i = 0; i < K; i++)
            for (size_t j = i; j < K; j++) {
                /* symmetrised: the GEMM may round S_ij and S_ji differently */
                double e = 0.5 * ((double)hS[i * K + j] + (double)hS[j * K + i]) / N;
                double c = e - mu[i] * mu[j];
                cov[i * K + j] = cov[j * K + i] = c;
            }
        int bad = 0;
        for (size_t i = 0; i < KK && !bad; i++) bad = !isfinite(cov[i]);
        if (mu != mean) free(mu);
        if (bad)
            s = kdcl_set_error(KDCL_ERR_NUMERIC,
                               "%s: the model's probabilities are not finite (NaN/Inf logits?)",
                               who);
    }
done:
    free(hS);
    free(hc);
    kdcl_tensor_free(ctx, &P);
    kdcl_tensor_free(ctx, &S);
    kdcl_tensor_free(ctx, &csum);
    kdcl_tensor_free(ctx, &ones);
    kdcl_tensor_free(ctx, &conf);
    kdcl__batcher_release(&b);
    return s;
}

/* ---- K-means of the covariance columns -------------------------------------- */

void kdcl_kmeans_opts_default(kdcl_kmeans_opts *o)
{
    memset(o, 0, sizeof *o);
    o->M = 0; /* no default: the caller must choose the number of clusters */
    o->restarts = 10;
    o->max_iter = 100;
    o->overlap = 1;
    o->seed = 1;
}

typedef struct km_work {
    size_t K, M;       /* K points of dimension K, M clusters */
    const double *X;   /* point j is row j of X (K x K) */
    double *C;         /* M x K centroids */
    size_t *cnt;       /* M */
    size_t *assign;    /* K */
    size_t *prev;      /* K */
    size_t *order;     /* K */
    double *d2;        /* K: k-means++ distances */
    int *chosen;       /* K */
} km_work;

static double dist2(const double *a, const double *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = a[i] - b[i];
        s += d * d;
    }
    return s;
}

/* Nearest centroid of point j (first on ties); *dist receives the distance. */
static size_t nearest(const km_work *w, size_t j, double *dist)
{
    size_t best = 0;
    double bd = INFINITY;
    for (size_t c = 0; c < w->M; c++) {
        double d = dist2(w->X + j * w->K, w->C + c * w->K, w->K);
        if (d < bd) {
            bd = d;
            best = c;
        }
    }
    if (dist) *dist = bd;
    return best;
}

/* k-means++: the first centre uniformly, each next one with probability
 * proportional to the squared distance to the nearest chosen centre (a
 * uniformly drawn unchosen point when every distance is 0). */
static void seed_pp(km_work *w, kdcl_rng *r)
{
    const size_t K = w->K;
    memset(w->chosen, 0, K * sizeof *w->chosen);
    size_t first = (size_t)kdcl_rng_below(r, K);
    w->chosen[first] = 1;
    memcpy(w->C, w->X + first * K, K * sizeof *w->C);
    for (size_t j = 0; j < K; j++) w->d2[j] = dist2(w->X + j * K, w->C, K);
    for (size_t c = 1; c < w->M; c++) {
        double total = 0;
        for (size_t j = 0; j < K; j++) total += w->chosen[j] ? 0 : w->d2[j];
        size_t pick = K;
        if (total > 0 && isfinite(total)) {
            double u = kdcl_rng_uniform(r) * total, cum = 0;
            size_t last_pos = K;
            for (size_t j = 0; j < K; j++) {
                if (w->chosen[j] || !(w->d2[j] > 0)) continue;
                last_pos = j;
                cum += w->d2[j];
                if (cum > u) {
                    pick = j;
                    break;
                }
            }
            if (pick == K) pick = last_pos; /* u rounded up to the total */
        }
        if (pick == K) {
            /* all remaining points coincide with a centre: uniform over the unchosen */
            size_t n_free = 0;
            for (size_t j = 0; j < K; j++) n_free += !w->chosen[j];
            size_t t = (size_t)kdcl_rng_below(r, n_free);
            for (size_t j = 0; j < K; j++)
                if (!w->chosen[j] && t-- == 0) {
                    pick = j;
                    break;
                }
        }
        w->chosen[pick] = 1;
        double *cc = w->C + c * K;
        memcpy(cc, w->X + pick * K, K * sizeof *cc);
        for (size_t j = 0; j < K; j++) {
            double d = dist2(w->X + j * K, cc, K);
            if (d < w->d2[j]) w->d2[j] = d;
        }
    }
}

/* Online K-means (MacQueen): each centre counts as one point; visiting the
 * points in a seeded random order, the nearest centre moves by 1/count
 * towards each point. */
static void online_passes(km_work *w, kdcl_rng *r)
{
    const size_t K = w->K;
    for (size_t c = 0; c < w->M; c++) w->cnt[c] = 1;
    for (size_t pass = 0; pass < KM_ONLINE_PASSES; pass++) {
        for (size_t j = 0; j < K; j++) w->order[j] = j;
        for (size_t j = K; j > 1; j--) {
            size_t t = (size_t)kdcl_rng_below(r, j), tmp = w->order[j - 1];
            w->order[j - 1] = w->order[t];
            w->order[t] = tmp;
        }
        for (size_t t = 0; t < K; t++) {
            const size_t j = w->order[t], c = nearest(w, j, NULL);
            const double eta = 1.0 / (double)++w->cnt[c];
            double *cc = w->C + c * K;
            const double *x = w->X + j * K;
            for (size_t i = 0; i < K; i++) cc[i] += eta * (x[i] - cc[i]);
        }
    }
}

/* Give every empty cluster the point farthest from its centroid among the
 * clusters with more than one point (first on ties); the centroid of the
 * re-seeded cluster becomes that point. Possible since M <= K. */
static void fix_empty(km_work *w)
{
    const size_t K = w->K, M = w->M;
    memset(w->cnt, 0, M * sizeof *w->cnt);
    for (size_t j = 0; j < K; j++) w->cnt[w->assign[j]]++;
    for (size_t c = 0; c < M; c++) {
        if (w->cnt[c]) continue;
        size_t far = K;
        double fd = -1;
        for (size_t j = 0; j < K; j++) {
            if (w->cnt[w->assign[j]] < 2) continue;
            double d = dist2(w->X + j * K, w->C + w->assign[j] * K, K);
            if (d > fd) {
                fd = d;
                far = j;
            }
        }
        /* far < K always: M <= K and cluster c is empty */
        w->cnt[w->assign[far]]--;
        w->assign[far] = c;
        w->cnt[c] = 1;
        memcpy(w->C + c * K, w->X + far * K, K * sizeof *w->C);
    }
}

static void update_centroids(km_work *w)
{
    const size_t K = w->K, M = w->M;
    memset(w->C, 0, M * K * sizeof *w->C);
    memset(w->cnt, 0, M * sizeof *w->cnt);
    for (size_t j = 0; j < K; j++) {
        double *cc = w->C + w->assign[j] * K;
        const double *x = w->X + j * K;
        for (size_t i = 0; i < K; i++) cc[i] += x[i];
        w->cnt[w->assign[j]]++;
    }
    for (size_t c = 0; c < M; c++)
        for (size_t i = 0; i < K; i++) w->C[c * K + i] /= (double)w->cnt[c];
}

/* One run: seeding, online passes, Lloyd to convergence or max_iter. Leaves
 * the assignment in w->assign (no empty cluster), the centroids as the means
 * of their points, and returns the within-cluster sum of squares. */
/* Forgy seeding: M distinct points drawn uniformly (partial Fisher-Yates). */
static void seed_forgy(km_work *w, kdcl_rng *r)
{
    const size_t K = w->K;
    for (size_t j = 0; j < K; j++) w->order[j] = j;
    for (size_t c = 0; c < w->M; c++) {
        size_t t = c + (size_t)kdcl_rng_below(r, K - c), x = w->order[c];
        w->order[c] = w->order[t];
        w->order[t] = x;
        memcpy(w->C + c * K, w->X + w->order[c] * K, K * sizeof *w->C);
    }
}

/* One run: even runs k-means++ seeding then online passes, odd runs Forgy
 * seeding (k-means++ favours outlying points as seeds, and on a handful of
 * classes that can steer every run into the same local minimum); then Lloyd. */
static double km_run(km_work *w, size_t max_iter, kdcl_rng *r, size_t run)
{
    const size_t K = w->K;
    if (run % 2 == 0) {
        seed_pp(w, r);
        online_passes(w, r);
    } else {
        seed_forgy(w, r);
    }
    for (size_t j = 0; j < K; j++) w->assign[j] = nearest(w, j, NULL);
    fix_empty(w);
    for (size_t it = 0; it < max_iter; it++) {
        update_centroids(w);
        memcpy(w->prev, w->assign, K * sizeof *w->prev);
        for (size_t j = 0; j < K; j++) w->assign[j] = nearest(w, j, NULL);
        fix_empty(w);
        if (!memcmp(w->prev, w->assign, K * sizeof *w->prev)) break;
    }
    update_centroids(w);
    double in = 0;
    for (size_t j = 0; j < K; j++) in += dist2(w->X + j * K, w->C + w->assign[j] * K, K);
    return in;
}

typedef struct {
    const int32_t *cls;
    size_t n, idx;
} cl_view;

static int cmp_view(const void *a, const void *b)
{
    const cl_view *x = a, *y = b;
    size_t n = x->n < y->n ? x->n : y->n;
    for (size_t i = 0; i < n; i++)
        if (x->cls[i] != y->cls[i]) return x->cls[i] < y->cls[i] ? -1 : 1;
    if (x->n != y->n) return x->n < y->n ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

kdcl_status kdcl_cluster_classes(const double *cov, size_t K, const kdcl_kmeans_opts *o,
                                 kdcl_clusters *out, double *inertia)
{
    static const char *who = "kdcl_cluster_classes";
    if (!out) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: NULL output", who);
    memset(out, 0, sizeof *out);
    if (inertia) *inertia = NAN;
    if (!cov || !o)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: NULL covariance or options", who);
    if (K == 0 || K > 46340)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: %zu classes outside 1..46340", who, K);
    if (o->M == 0 || o->M > K || o->M > KDCL_MAX_CLUSTERS)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "%s: M = %zu clusters: must be set, in 1..K (K = %zu) and at most %d",
                              who, o->M, K, KDCL_MAX_CLUSTERS);
    if (o->restarts == 0)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: restarts must be >= 1", who);
    if (o->overlap == 0 || o->overlap > o->M)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: overlap %zu outside 1..M (M = %zu)", who,
                              o->overlap, o->M);
    for (size_t i = 0; i < K * K; i++)
        if (!isfinite(cov[i]))
            return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                  "%s: covariance entry (%zu, %zu) is not finite", who, i / K,
                                  i % K);

    const size_t M = o->M, r = o->overlap;
    km_work w = {.K = K, .M = M};
    double *X = malloc(K * K * sizeof *X);
    double *bestC = malloc(M * K * sizeof *bestC);
    size_t *best_assign = malloc(K * sizeof *best_assign);
    w.C = malloc(M * K * sizeof *w.C);
    w.cnt = malloc(M * sizeof *w.cnt);
    w.assign = malloc(K * sizeof *w.assign);
    w.prev = malloc(K * sizeof *w.prev);
    w.order = malloc(K * sizeof *w.order);
    w.d2 = malloc(K * sizeof *w.d2);
    w.chosen = malloc(K * sizeof *w.chosen);
    size_t *sizes = malloc(M * sizeof *sizes);
    int32_t *lists = malloc(M * K * sizeof *lists);
    const int32_t **lp = malloc(M * sizeof *lp);
    double *dc = malloc(M * sizeof *dc);
    size_t *rank = malloc(M * sizeof *rank);
    cl_view *views = malloc(M * sizeof *views);
    kdcl_status s = KDCL_OK;
    kdcl_clusters tmp = {0};
    if (!X || !bestC || !best_assign || !w.C || !w.cnt || !w.assign || !w.prev || !w.order ||
        !w.d2 || !w.chosen || !sizes || !lists || !lp || !dc || !rank || !views) {
        s = kdcl_set_error(KDCL_ERR_OOM, "%s: out of host memory", who);
        goto done;
    }
    /* point j = column j of cov (or of the correlation matrix) */
    for (size_t j = 0; j < K; j++)
        for (size_t i = 0; i < K; i++) {
            double v = cov[i * K + j];
            if (o->correlation) {
                const double d = cov[i * K + i] * cov[j * K + j];
                v = i == j ? 1.0 : d > 0 ? v / sqrt(d) : 0.0;
            }
            X[j * K + i] = v;
        }
    w.X = X;

    kdcl_rng rng;
    kdcl_rng_seed(&rng, o->seed);
    double best = INFINITY;
    for (size_t run = 0; run < o->restarts; run++) {
        double in = km_run(&w, o->max_iter, &rng, run);
        if (run == 0 || in < best) {
            best = in;
            memcpy(bestC, w.C, M * K * sizeof *bestC);
            memcpy(best_assign, w.assign, K * sizeof *best_assign);
        }
    }

    /* membership: each class in its own cluster and, with overlap r, in the
     * r - 1 nearest other centroids (ties: lower index) */
    memset(sizes, 0, M * sizeof *sizes);
    for (size_t j = 0; j < K; j++) {
        const size_t own = best_assign[j];
        lists[own * K + sizes[own]++] = (int32_t)j;
        if (r < 2) continue;
        size_t n = 0;
        for (size_t c = 0; c < M; c++) {
            if (c == own) continue;
            dc[c] = dist2(X + j * K, bestC + c * K, K);
            /* insertion into rank[0..n) by (distance, index) */
            size_t p = n++;
            while (p > 0 && dc[rank[p - 1]] > dc[c]) {
                rank[p] = rank[p - 1];
                p--;
            }
            rank[p] = c;
        }
        for (size_t t = 0; t + 1 < r; t++) {
            const size_t c = rank[t];
            lists[c * K + sizes[c]++] = (int32_t)j;
        }
    }
    for (size_t c = 0; c < M; c++) lp[c] = lists + c * K;
    if ((s = build_clusters(who, KDCL_ERR_INTERNAL, K, M, sizes, NULL, lp, &tmp))) goto done;

    /* deterministic order: clusters sorted by their (ascending) class lists */
    for (size_t c = 0; c < M; c++)
        views[c] = (cl_view){tmp.cls + tmp.off[c], tmp.off[c + 1] - tmp.off[c], c};
    qsort(views, M, sizeof *views, cmp_view);
    for (size_t c = 0; c < M; c++) {
        sizes[c] = views[c].n;
        lp[c] = views[c].cls;
    }
    if ((s = build_clusters(who, KDCL_ERR_INTERNAL, K, M, sizes, NULL, lp, out))) goto done;
    if (inertia) *inertia = best;
done:
    kdcl_clusters_free(&tmp);
    free(X);
    free(bestC);
    free(best_assign);
    free(w.C);
    free(w.cnt);
    free(w.assign);
    free(w.prev);
    free(w.order);
    free(w.d2);
    free(w.chosen);
    free(sizes);
    free(lists);
    free(lp);
    free(dc);
    free(rank);
    free(views);
    return s;
}

/* ---- JSON file ------------------------------------------------------------------ */

/* A double that reads back exactly: cJSON prints 15 significant digits when
 * they come within an epsilon of the value, so write %.17g ourselves
 * (non-finite values as null). NULL when out of memory. */
static cJSON *json_double(double v)
{
    if (!isfinite(v)) return cJSON_CreateNull();
    char buf[40];
    snprintf(buf, sizeof buf, "%.17g", v);
    for (char *p = buf; *p; p++) /* a locale's decimal comma */
        if (*p == ',') *p = '.';
    return cJSON_CreateRaw(buf);
}

kdcl_status kdcl_clusters_save_json(const char *path, const kdcl_clusters *c,
                                    const kdcl_cluster_info *info)
{
    if (!path || !*path)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_clusters_save_json: no path");
    kdcl_status s = kdcl_clusters_check(path, c);
    if (s) return s;
    const kdcl_cluster_info none = {0};
    if (!info) info = &none;
    const size_t K = c->K;
    if (info->class_names)
        for (size_t k = 0; k < K; k++)
            if (!info->class_names[k])
                return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: class name %zu is NULL", path, k);

    cJSON *root = cJSON_CreateObject();
    int ok = root != NULL;
    ok = ok && cJSON_AddStringToObject(root, "format", "kdcl-clusters");
    ok = ok && cJSON_AddNumberToObject(root, "version", 1);
    ok = ok && cJSON_AddNumberToObject(root, "classes", (double)K);
    if (ok) {
        if (info->generalist)
            ok = cJSON_AddStringToObject(root, "generalist", info->generalist) != NULL;
        else
            ok = cJSON_AddNullToObject(root, "generalist") != NULL;
    }
    if (ok && info->kmeans) {
        const kdcl_kmeans_opts *o = info->kmeans;
        cJSON *km = cJSON_AddObjectToObject(root, "kmeans");
        ok = km && cJSON_AddNumberToObject(km, "M", (double)o->M) &&
             cJSON_AddNumberToObject(km, "restarts", (double)o->restarts) &&
             cJSON_AddNumberToObject(km, "max_iter", (double)o->max_iter) &&
             cJSON_AddNumberToObject(km, "overlap", (double)o->overlap) &&
             cJSON_AddStringToObject(km, "points",
                                     o->correlation ? "correlation columns" : "covariance columns");
        if (ok && o->seed <= (UINT64_C(1) << 53)) {
            ok = cJSON_AddNumberToObject(km, "seed", (double)o->seed) != NULL;
        } else if (ok) { /* above 2^53 a JSON number would lose bits: a string */
            char buf[32];
            snprintf(buf, sizeof buf, "%llu", (unsigned long long)o->seed);
            ok = cJSON_AddStringToObject(km, "seed", buf) != NULL;
        }
        ok = ok && cJSON_AddItemToObject(km, "inertia", json_double(info->inertia));
    }
    cJSON *arr = ok ? cJSON_AddArrayToObject(root, "clusters") : NULL;
    ok = ok && arr;
    for (size_t m = 0; ok && m < c->M; m++) {
        const int32_t *cl = c->cls + c->off[m];
        const size_t n = c->off[m + 1] - c->off[m];
        cJSON *o = cJSON_CreateObject();
        ok = o && cJSON_AddItemToArray(arr, o);
        if (!ok) {
            cJSON_Delete(o);
            break;
        }
        ok = cJSON_AddNumberToObject(o, "id", (double)m) != NULL;
        cJSON *ca = ok ? cJSON_CreateIntArray((const int *)cl, (int)n) : NULL;
        ok = ok && ca && cJSON_AddItemToObject(o, "classes", ca);
        if (ok && info->class_names) {
            cJSON *na = cJSON_AddArrayToObject(o, "names");
            ok = na != NULL;
            for (size_t i = 0; ok && i < n; i++)
                ok = cJSON_AddItemToArray(na, cJSON_CreateString(info->class_names[cl[i]]));
        }
        if (ok && info->confusion) {
            const int32_t *cf = info->confusion;
            cJSON *ma = cJSON_AddArrayToObject(o, "confusion");
            ok = ma != NULL;
            double examples = 0, within = 0;
            for (size_t a = 0; ok && a < n; a++) {
                cJSON *row = cJSON_CreateArray();
                ok = row && cJSON_AddItemToArray(ma, row);
                if (!ok) {
                    cJSON_Delete(row);
                    break;
                }
                for (size_t bb = 0; ok && bb < n; bb++) {
                    const double v = cf[(size_t)cl[a] * K + (size_t)cl[bb]];
                    ok = cJSON_AddItemToArray(row, cJSON_CreateNumber(v));
                    if (a != bb) within += v;
                }
                for (size_t k = 0; k < K; k++) examples += cf[(size_t)cl[a] * K + k];
            }
            ok = ok && cJSON_AddNumberToObject(o, "train_examples", examples) &&
                 cJSON_AddNumberToObject(o, "within_errors", within);
        }
    }
    if (ok && info->cov) {
        cJSON *cv = cJSON_AddArrayToObject(root, "covariance");
        ok = cv != NULL;
        for (size_t i = 0; ok && i < K; i++) {
            cJSON *row = cJSON_CreateArray();
            ok = row && cJSON_AddItemToArray(cv, row);
            if (!ok) cJSON_Delete(row);
            for (size_t j = 0; ok && j < K; j++)
                ok = cJSON_AddItemToArray(row, json_double(info->cov[i * K + j]));
        }
    }
    char *text = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) return kdcl_set_error(KDCL_ERR_OOM, "%s: out of memory building the JSON", path);
    size_t tl = strlen(text);
    char *withnl = malloc(tl + 2);
    if (!withnl) {
        cJSON_free(text);
        return kdcl_set_error(KDCL_ERR_OOM, "%s: out of memory", path);
    }
    memcpy(withnl, text, tl);
    withnl[tl] = '\n';
    withnl[tl + 1] = '\0';
    cJSON_free(text);
    s = kdcl_write_file_atomic(path, withnl, strlen(withnl));
    free(withnl);
    return s;
}

/* A JSON number that is an integer in [lo, hi]. */
static int json_int(const cJSON *v, double lo, double hi, int64_t *out)
{
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d) || d < lo || d > hi) return 0;
    *out = (int64_t)d;
    return 1;
}

kdcl_status kdcl_clusters_load_json(const char *path, size_t expect_K, kdcl_clusters *out)
{
    if (!out) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_clusters_load_json: NULL output");
    memset(out, 0, sizeof *out);
    if (!path) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_clusters_load_json: NULL path");
    uint8_t *data = NULL;
    size_t size = 0;
    kdcl_status s = kdcl__read_file(path, 0, &data, &size, NULL);
    if (s) return s;
    cJSON *root = NULL;
    size_t *sizes = NULL;
    int64_t **lists = NULL;
    size_t M = 0;
    if (size == 0) {
        s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: empty file (expected a kdcl-clusters JSON file)",
                           path);
        goto done;
    }
    if (memchr(data, '\0', size)) {
        s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: not a JSON text file (contains NUL bytes)", path);
        goto done;
    }
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts((const char *)data, size, &end, 0);
    if (!root) {
        size_t at = end ? (size_t)(end - (const char *)data) : 0;
        if (at >= size)
            s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: truncated JSON (the text ends at byte %zu "
                                                "inside an unfinished value)",
                               path, size);
        else
            s = kdcl_set_error(KDCL_ERR_FORMAT,
                               "%s: not valid JSON (syntax error at byte %zu of %zu)",
                               path, at, size);
        goto done;
    }
    for (const char *p = end; p && p < (const char *)data + size; p++)
        if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') {
            s = kdcl_set_error(KDCL_ERR_FORMAT,
                               "%s: trailing data after the JSON value at byte %zu",
                               path, (size_t)(p - (const char *)data));
            goto done;
        }
    if (!cJSON_IsObject(root)) {
        s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: the JSON value is not an object", path);
        goto done;
    }
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "kdcl-clusters") != 0) {
        s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: \"format\" is not \"kdcl-clusters\"", path);
        goto done;
    }
    int64_t version = 0, K = 0;
    if (!json_int(cJSON_GetObjectItemCaseSensitive(root, "version"), 0, 1e9, &version) ||
        version != 1) {
        s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: \"version\" missing or not 1 (unsupported)", path);
        goto done;
    }
    if (!json_int(cJSON_GetObjectItemCaseSensitive(root, "classes"), 1, (double)INT32_MAX, &K)) {
        s = kdcl_set_error(KDCL_ERR_FORMAT,
                           "%s: \"classes\" missing or not an integer in 1..%d", path, INT32_MAX);
        goto done;
    }
    if (expect_K && (uint64_t)K != expect_K) {
        s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: the clusters are over %lld classes, expected %zu",
                           path, (long long)K, expect_K);
        goto done;
    }
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "clusters");
    if (!cJSON_IsArray(arr)) {
        s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: \"clusters\" missing or not an array", path);
        goto done;
    }
    int na = cJSON_GetArraySize(arr);
    if (na <= 0 || na > KDCL_MAX_CLUSTERS) {
        s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: %d clusters: expected 1..%d", path, na,
                           KDCL_MAX_CLUSTERS);
        goto done;
    }
    M = (size_t)na;
    sizes = calloc(M, sizeof *sizes);
    lists = calloc(M, sizeof *lists);
    if (!sizes || !lists) {
        s = kdcl_set_error(KDCL_ERR_OOM, "%s: out of host memory", path);
        goto done;
    }
    size_t m = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, arr)
    {
        if (!cJSON_IsObject(item)) {
            s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: cluster %zu is not an object", path, m);
            goto done;
        }
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(item, "id");
        int64_t idv = 0;
        if (id && (!json_int(id, 0, 1e9, &idv) || (size_t)idv != m)) {
            s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: cluster %zu: \"id\" is not %zu", path, m, m);
            goto done;
        }
        const cJSON *ca = cJSON_GetObjectItemCaseSensitive(item, "classes");
        if (!cJSON_IsArray(ca)) {
            s = kdcl_set_error(KDCL_ERR_FORMAT,
                               "%s: cluster %zu: \"classes\" missing or not an array",
                               path, m);
            goto done;
        }
        int n = cJSON_GetArraySize(ca);
        if (n <= 0) {
            s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: cluster %zu is empty", path, m);
            goto done;
        }
        if ((int64_t)n > K) {
            s = kdcl_set_error(KDCL_ERR_FORMAT,
                               "%s: cluster %zu has %d classes, more than the %lld classes", path,
                               m, n, (long long)K);
            goto done;
        }
        sizes[m] = (size_t)n;
        lists[m] = malloc((size_t)n * sizeof **lists);
        if (!lists[m]) {
            s = kdcl_set_error(KDCL_ERR_OOM, "%s: out of host memory", path);
            goto done;
        }
        size_t i = 0;
        const cJSON *v;
        cJSON_ArrayForEach(v, ca)
        {
            if (!json_int(v, -1e18, 1e18, &lists[m][i])) {
                s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: cluster %zu: entry %zu of \"classes\" is "
                                                    "not an integer",
                                   path, m, i);
                goto done;
            }
            i++;
        }
        const cJSON *names = cJSON_GetObjectItemCaseSensitive(item, "names");
        if (names) {
            int ok = cJSON_IsArray(names) && cJSON_GetArraySize(names) == n;
            const cJSON *nm;
            cJSON_ArrayForEach(nm, names) ok = ok && cJSON_IsString(nm);
            if (!ok) {
                s = kdcl_set_error(KDCL_ERR_FORMAT,
                                   "%s: cluster %zu: \"names\" is not an array of %d strings",
                                   path, m, n);
                goto done;
            }
        }
        const cJSON *cf = cJSON_GetObjectItemCaseSensitive(item, "confusion");
        if (cf) {
            int ok = cJSON_IsArray(cf) && cJSON_GetArraySize(cf) == n;
            const cJSON *row;
            cJSON_ArrayForEach(row, cf)
            {
                ok = ok && cJSON_IsArray(row) && cJSON_GetArraySize(row) == n;
                const cJSON *x;
                if (ok) cJSON_ArrayForEach(x, row) ok = ok && cJSON_IsNumber(x);
            }
            if (!ok) {
                s = kdcl_set_error(KDCL_ERR_FORMAT,
                                   "%s: cluster %zu: \"confusion\" is not a %d x %d array of "
                                   "numbers",
                                   path, m, n, n);
                goto done;
            }
        }
        m++;
    }
    s = build_clusters(path, KDCL_ERR_FORMAT, (size_t)K, M, sizes, (const int64_t *const *)lists,
                       NULL, out);
done:
    if (lists)
        for (size_t i = 0; i < M; i++) free(lists[i]);
    free(lists);
    free(sizes);
    cJSON_Delete(root);
    free(data);
    if (s) memset(out, 0, sizeof *out);
    return s;
}
