/* Specialists with a dustbin class (Hinton, Vinyals & Dean 2015, section 5):
 * class clusters from the covariance of a generalist's predictions, specialist
 * models over |S_m| + 1 outputs (special classes + dustbin) trained on
 * half-special batches, and the KL combination of generalist and specialists
 * at inference time (one batched device kernel). */
#ifndef KDCL_SPECIALISTS_H
#define KDCL_SPECIALISTS_H

#include "kdcl/distill.h"
#include "kdcl/train.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KDCL_MAX_CLUSTERS 1024

/* M clusters of the K classes: cluster m holds classes cls[off[m] .. off[m+1]),
 * ascending, each in [0, K). Clusters may overlap. */
typedef struct kdcl_clusters {
    size_t K, M;
    size_t *off;  /* M + 1 entries */
    int32_t *cls; /* off[M] entries */
} kdcl_clusters;

KDCL_API void kdcl_clusters_free(kdcl_clusters *c);
/* Build from explicit lists (validated: non-empty, in range, no repeats within
 * a cluster, sorted on output). */
KDCL_API kdcl_status kdcl_clusters_from_lists(size_t K, size_t M, const size_t *sizes,
                                     const int32_t *const *lists, kdcl_clusters *out);
/* Structural check: K in 1..2^31-1, M in 1..KDCL_MAX_CLUSTERS, off[0] = 0,
 * every cluster 1..K classes, each in [0, K), strictly ascending. Errors
 * (KDCL_ERR_INVALID_ARG) start with `who`. */
KDCL_API kdcl_status kdcl_clusters_check(const char *who, const kdcl_clusters *c);
/* Number of clusters containing class k. */
KDCL_API size_t kdcl_clusters_count_of(const kdcl_clusters *c, size_t k);

/* ---- 1. clusters ---------------------------------------------------------- */

/* Statistics of a model's test-mode T = 1 probabilities p over a dataset:
 * the covariance cov[i*K + j] = E[p_i p_j] - E[p_i] E[p_j] (K x K, double),
 * the mean mean[k] = E[p_k] and, when confusion is not NULL, the K x K
 * confusion counts (row = true label, column = argmax). The second moments
 * are GEMMs (P^T P, accumulated over batches on the device through CLBlast).
 * mean and confusion may be NULL; K <= 46340. */
KDCL_API kdcl_status kdcl_prob_covariance(kdcl_model *m, const kdcl_dataset *ds, double *cov,
                                 double *mean, int32_t *confusion);

typedef struct kdcl_kmeans_opts {
    size_t M;         /* clusters, 1..K */
    size_t restarts;  /* independent runs; the lowest inertia wins (>= 1) */
    size_t max_iter;  /* Lloyd iterations per run */
    size_t overlap;   /* r >= 1: each class joins its r nearest centroids */
    uint64_t seed;
    int correlation;  /* cluster the columns of the correlation matrix
                       * cov_ij / sqrt(cov_ii cov_jj) instead of the covariance */
} kdcl_kmeans_opts;
/* restarts 10, max_iter 100, overlap 1, seed 1, covariance columns, and M = 0,
 * which kdcl_cluster_classes rejects: the number of clusters must be chosen. */
KDCL_API void kdcl_kmeans_opts_default(kdcl_kmeans_opts *o);

/* K-means of the K columns of cov (points in R^K), or of the correlation
 * matrix with o->correlation (a class with zero variance correlates with
 * nothing: its row and column are 0 but for the diagonal 1): k-means++ seeding, online
 * (MacQueen) passes, then Lloyd iterations; deterministic for a given seed.
 * With overlap r > 1 each class is put in its own cluster and the r - 1
 * nearest other ones (so it is in exactly r, and none is empty). Every
 * cluster is non-empty and every class is in at least one cluster. *inertia
 * (may be NULL) receives the within-cluster sum of squares of the best run. */
KDCL_API kdcl_status kdcl_cluster_classes(const double *cov, size_t K, const kdcl_kmeans_opts *o,
                                 kdcl_clusters *out, double *inertia);

/* What a clusters file records besides the clusters. */
typedef struct kdcl_cluster_info {
    const char *generalist;          /* checkpoint path (may be NULL) */
    const char *const *class_names;  /* K names or NULL */
    const int32_t *confusion;        /* K x K training-set confusion or NULL */
    const double *cov;               /* K x K covariance or NULL */
    const kdcl_kmeans_opts *kmeans;  /* may be NULL */
    double inertia;
} kdcl_cluster_info;

/* JSON clusters file (atomic write): for each cluster its classes, names, and
 * the generalist's confusion within the cluster. */
KDCL_API kdcl_status kdcl_clusters_save_json(const char *path, const kdcl_clusters *c,
                                    const kdcl_cluster_info *info);
/* Load and validate; K must match expect_K unless expect_K == 0. Bad contents
 * (a K mismatch included): KDCL_ERR_FORMAT naming the file; unreadable:
 * KDCL_ERR_IO. */
KDCL_API kdcl_status kdcl_clusters_load_json(const char *path, size_t expect_K, kdcl_clusters *out);

/* ---- 2. specialists --------------------------------------------------------- */

/* Initialise a specialist (arch = the generalist's with |S| + 1 outputs) from
 * the generalist: hidden layers copied, output rows and biases of the special
 * classes copied in order, the dustbin row the mean of the other classes'
 * rows and its bias the mean of their biases + log(K - |S|) (the dustbin
 * logit is then mean_j z_j + log n, a lower bound of log sum_j exp z_j over
 * the n other classes, exact when they agree). */
KDCL_API kdcl_status kdcl_specialist_init(kdcl_model *generalist, const int32_t *cls, size_t n,
                                 kdcl_model *spec);

/* Labels of a specialist: class cls[i] -> i, any other class -> n (dustbin).
 * Writes ds->n labels into out. */
KDCL_API void kdcl_specialist_relabel(const kdcl_dataset *ds, const int32_t *cls, size_t n,
                             int32_t *out);

/* Oversampling correction added to the dustbin logit after training on
 * half-special batches: log((N - n_special) / n_special), the log of the
 * factor by which the special classes' odds were raised (0.5 : 0.5 in training
 * against n_special : N - n_special in the data). */
KDCL_API double kdcl_specialist_dustbin_offset(size_t n_special, size_t n_total);

/* The example order of one specialist epoch, given labels relabelled by
 * kdcl_specialist_relabel (rel[e] < n: special): 2 * (special examples)
 * entries, order[2i] the special examples in a fresh shuffle, order[2i+1]
 * others drawn without replacement from a shuffle (reshuffled when used up).
 * Deterministic in (seed, epoch). order must hold 2 * N entries; *len gets
 * the count. */
KDCL_API kdcl_status kdcl_specialist_epoch_order(const int32_t *rel, size_t N, size_t n, uint64_t seed,
                                        uint64_t epoch, size_t *order, size_t *len);

/* Train one specialist on ds (original labels): each epoch has 2 * n_special
 * examples in batches that are half special (all special examples, shuffled)
 * and half others drawn at random (without replacement while they last),
 * relabelled as dustbin. Afterwards the dustbin bias is raised by the
 * oversampling correction; *offset (may be NULL) receives it. */
KDCL_API kdcl_status kdcl_specialist_train(kdcl_model *spec, const kdcl_dataset *ds, const int32_t *cls,
                                  size_t n, const kdcl_train_opts *o, kdcl_epoch_stats *last,
                                  double *offset);

/* ---- 3. combination --------------------------------------------------------- */

typedef struct kdcl_combine_opts {
    size_t top_n;  /* generalist's top-n classes select the active specialists (>= 1) */
    size_t iters;  /* gradient-descent steps on w */
    float lr;      /* step size (scaled by 1 / (1 + number of active specialists)) */
} kdcl_combine_opts;
KDCL_API void kdcl_combine_opts_default(kdcl_combine_opts *o);

/* Device state of the combination for a set of clusters. */
typedef struct kdcl_combiner {
    kdcl_ctx *ctx;
    size_t K, M, max_batch;
    size_t *blk_off;         /* M: float offset of specialist m's logits block */
    kdcl_tensor member;      /* U8 [M, K]: class k in cluster m */
    kdcl_tensor cls, cls_off;/* I32: the cluster lists (as in kdcl_clusters) */
    kdcl_tensor blk;         /* I32 [M]: blk_off on the device */
    kdcl_tensor spec_logits; /* F32: block m is [max_batch, |S_m| + 1] row-major, then a
                              * [max_batch, K] scratch of the kernel */
    kdcl_tensor out;         /* F32 [max_batch, K]: log q of the last batch */
    kdcl_tensor active;      /* U8 [max_batch, M]: specialist m active for row b */
} kdcl_combiner;

/* 0 when the OpenCL platform (its CL_PLATFORM_VERSION) is known to break the
 * combination kernel: PoCL 5.0 aborts while compiling it. kdcl_combiner_create
 * refuses such a platform with KDCL_ERR_BUILD instead of letting it abort. */
KDCL_API int kdcl_combine_compiler_ok(const char *platform_version);

KDCL_API kdcl_status kdcl_combiner_create(kdcl_ctx *ctx, const kdcl_clusters *c, size_t max_batch,
                                 kdcl_combiner *cb);
KDCL_API void kdcl_combiner_destroy(kdcl_combiner *cb);
/* Copy specialist m's logits ([rows, |S_m| + 1], rows <= max_batch) into its block. */
KDCL_API kdcl_status kdcl_combiner_put(kdcl_combiner *cb, size_t m, const kdcl_tensor *logits,
                              size_t rows);
/* For rows b < rows: the active specialists (those whose cluster meets the
 * generalist's top-n classes), then q = softmax(w) minimising
 * KL(p_g || q) + sum_{m active} KL(p_m || q_m) by gradient descent on w from
 * the generalist's logits; out = log q, active = the active set. Rows with no
 * active specialist get log p_g. One kernel launch. A cluster holding all K
 * classes has no dustbin to match: its term is -sum_c p_m,c log q_c. A
 * specialist never put reads as zero logits (uniform). Limits: K <= 2^24,
 * iters <= 10^6, about 16 M bytes of local memory. */
KDCL_API kdcl_status kdcl_combine(kdcl_combiner *cb, const kdcl_tensor *gen_logits, size_t rows,
                         const kdcl_combine_opts *o);

/* ---- 4. prediction ----------------------------------------------------------- */

/* The generalist g and the specialists specs[m] of the clusters c (outputs
 * |S_m| + 1, the last the dustbin) over a dataset in test mode, each model
 * with its own input normalisation: per example the generalist's argmax
 * (gen_pred), the combination's argmax (comb_pred) and the active set
 * (active[i * M + m], may be NULL). Batches of up to max_batch rows (capped
 * by the models' own maximum). */
KDCL_API kdcl_status kdcl_specialists_predict(kdcl_model *g, kdcl_model *const *specs,
                                     const kdcl_clusters *c,
                                     const kdcl_dataset *ds, const kdcl_combine_opts *o,
                                     size_t max_batch, int32_t *gen_pred, int32_t *comb_pred,
                                     uint8_t *active);

#ifdef __cplusplus
}
#endif
#endif
