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
typedef struct kdcl_combiner kdcl_combiner;

/* 0 when the OpenCL platform (its CL_PLATFORM_VERSION) is known to break the
 * combination kernel: PoCL 5.0 aborts while compiling it. kdcl_combiner_create
 * refuses such a platform with KDCL_ERR_BUILD instead of letting it abort. */
KDCL_API int kdcl_combine_compiler_ok(const char *platform_version);

KDCL_API kdcl_status kdcl_combiner_create(kdcl_ctx *ctx, const kdcl_clusters *c,
                                          size_t max_batch, kdcl_combiner **out);
/* NULL is allowed. */
KDCL_API void kdcl_combiner_destroy(kdcl_combiner *cb);
/* The last kdcl_combine's results: F32 [max_batch, K], log q per row, and
 * U8 [max_batch, M], specialist m active for row b. */
KDCL_API const kdcl_tensor *kdcl_combiner_output(const kdcl_combiner *cb);
KDCL_API const kdcl_tensor *kdcl_combiner_active(const kdcl_combiner *cb);
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

/* ---- 5. specialist files -------------------------------------------------------
 *
 * A directory of specialists holds DIR/specialist_<cluster>.safetensors, one
 * per cluster of a clusters file, <cluster> being the cluster's index there.
 * Each is a kdcl checkpoint (kdcl_model_save) with |S| + 1 outputs whose
 * metadata records, in this order: specialist_classes (the special classes,
 * ascending, as "3,5,7"), specialist_cluster, dustbin_offset (the oversampling
 * correction already added to the dustbin bias), generalist (its checkpoint's
 * path), then, when the training options are known, optimizer, max_norm,
 * epochs, lr, jitter and seed, then train_seconds and device when known. */

/* "<dir>/specialist_<cluster>.safetensors" into buf (KDCL_ERR_INVALID_ARG
 * when it does not fit in size bytes). */
KDCL_API kdcl_status kdcl_specialist_path(const char *dir, size_t cluster, char *buf, size_t size);
/* 1 and *cluster when a file name (without its directory) is that of a
 * specialist ("specialist_<n>.safetensors"), else 0. */
KDCL_API int kdcl_specialist_file_id(const char *name, size_t *cluster);

/* What a specialist checkpoint records besides its weights. */
typedef struct kdcl_specialist_meta {
    size_t cluster;                /* its cluster's index in the clusters file */
    const int32_t *cls;            /* the n special classes, strictly ascending */
    size_t n;
    double dustbin_offset;         /* the correction kdcl_specialist_train added */
    const char *generalist;        /* the generalist's checkpoint path (NULL: "") */
    const kdcl_train_opts *train;  /* the options it was trained with (NULL: not recorded) */
    double train_seconds;          /* < 0: not recorded */
    const char *device;            /* the device it was trained on (NULL: not recorded) */
} kdcl_specialist_meta;

/* Save spec (n + 1 outputs) with its metadata, atomically. */
KDCL_API kdcl_status kdcl_specialist_save(kdcl_model *spec, const char *path,
                                          const kdcl_specialist_meta *meta);

/* A specialist loaded from its file. */
typedef struct kdcl_specialist {
    kdcl_model *model;     /* n + 1 outputs, the last the dustbin */
    int32_t *cls;          /* the n special classes, ascending (the caller's: kdcl_specialist_free) */
    size_t n;
    size_t cluster;        /* specialist_cluster, SIZE_MAX when the file does not record it */
    double dustbin_offset; /* NAN when the file does not record it */
} kdcl_specialist;

/* Load one specialist for a generalist of K classes, for batches of up to
 * max_batch rows. Refused with KDCL_ERR_FORMAT naming the file: no
 * specialist_classes metadata (a checkpoint that is not a specialist), a
 * malformed list (class ids 0..K-1, strictly ascending, fewer than K), a
 * malformed specialist_cluster, outputs other than n + 1; a file that cannot
 * be read or is not a checkpoint: kdcl_model_load's error. On failure *out is
 * zeroed. */
KDCL_API kdcl_status kdcl_specialist_load(kdcl_ctx *ctx, const char *path, size_t K,
                                          size_t max_batch, kdcl_specialist *out);
KDCL_API void kdcl_specialist_free(kdcl_specialist *s);

/* The specialists of a directory. */
typedef struct kdcl_specialist_set {
    size_t M;               /* specialists, by ascending cluster index */
    size_t *cluster;        /* M: each one's cluster index (from its file name) */
    char **paths;           /* M: its file */
    kdcl_model **models;    /* M (after kdcl_specialist_set_load_models; else NULL) */
    double *dustbin_offset; /* M: NAN where not recorded (likewise) */
    kdcl_clusters clusters; /* their classes over the generalist's K classes:
                             * cluster m of it is specialist m's (likewise) */
} kdcl_specialist_set;

/* List dir's specialist_<n>.safetensors (other files are ignored), by
 * ascending n, into *out (models not loaded). Errors: KDCL_ERR_IO when dir
 * cannot be opened; KDCL_ERR_INVALID_ARG when it holds no specialist, more
 * than KDCL_MAX_CLUSTERS, or two files of one cluster ("specialist_1" and
 * "specialist_01"). On failure *out is zeroed. */
KDCL_API kdcl_status kdcl_specialist_set_list(const char *dir, kdcl_specialist_set *out);
/* Load the listed specialists for the generalist g (on its context) for
 * batches of up to max_batch rows, each checked as kdcl_specialist_load does
 * and against g (the same inputs; a specialist_cluster that is not its file
 * name's refused), and build set->clusters. expect (may be NULL) is the
 * clustering they were trained for: then every file must be the specialist of
 * one of its clusters, with that cluster's classes, and every cluster of it
 * with at least expect_min_size and fewer than K classes must have its file.
 * Every refusal is one KDCL_ERR_FORMAT (KDCL_ERR_IO for an unreadable file)
 * naming the file; on failure what was loaded is released (the list stays). */
KDCL_API kdcl_status kdcl_specialist_set_load_models(kdcl_specialist_set *set, kdcl_model *g,
                                                     size_t max_batch,
                                                     const kdcl_clusters *expect,
                                                     size_t expect_min_size);
/* kdcl_specialist_set_list then kdcl_specialist_set_load_models. */
KDCL_API kdcl_status kdcl_specialist_set_load(const char *dir, kdcl_model *g, size_t max_batch,
                                              const kdcl_clusters *expect,
                                              size_t expect_min_size, kdcl_specialist_set *out);
KDCL_API void kdcl_specialist_set_free(kdcl_specialist_set *set);

/* The generalist g fits a dataset for specialist work: its input shape takes
 * the data's and it has at least the data's classes (else
 * KDCL_ERR_INVALID_ARG, "the generalist takes ... inputs and has ...
 * classes; the data has ..."). Rebinds an MLP to the data's image shape. */
KDCL_API kdcl_status kdcl_specialists_check_generalist(kdcl_model *g, const kdcl_dataset *ds);
/* The clusters c cover at least the classes of ds (else KDCL_ERR_INVALID_ARG,
 * "<who> covers K classes but the data has N"). */
KDCL_API kdcl_status kdcl_clusters_check_data(const char *who, const kdcl_clusters *c,
                                              const kdcl_dataset *ds);

/* ---- 6. evaluation of a set ----------------------------------------------------- */

/* Examples, and how many of them the generalist alone and the combination
 * classify correctly. */
typedef struct kdcl_spec_tally {
    size_t n, gen_ok, comb_ok;
} kdcl_spec_tally;

typedef struct kdcl_specialist_eval {
    size_t n, M;
    int32_t *gen_pred, *comb_pred; /* n: the argmax of each */
    uint8_t *active;               /* n * M: specialist m active for example i */
    kdcl_spec_tally all;
    kdcl_spec_tally covered;       /* correct class in a specialist's classes */
    kdcl_spec_tally with_active;   /* at least one active specialist */
    size_t max_cover;              /* the most active specialists covering a correct class */
    kdcl_spec_tally *by_covering;  /* max_cover + 1: by the number of active specialists
                                    * covering the correct class (the paper's Table 4) */
    kdcl_spec_tally *per;          /* M: the examples of specialist m's classes */
    size_t active_sum;             /* active specialists summed over the examples */
    double seconds;                /* wall time of the predictions */
} kdcl_specialist_eval;

/* The generalist g alone and combined with set's specialists over ds
 * (kdcl_specialists_predict with batches of up to max_batch rows), with the
 * tallies above. g must fit ds (kdcl_specialists_check_generalist). */
KDCL_API kdcl_status kdcl_specialist_set_evaluate(kdcl_model *g, const kdcl_specialist_set *set,
                                                  const kdcl_dataset *ds,
                                                  const kdcl_combine_opts *o, size_t max_batch,
                                                  kdcl_specialist_eval *out);
KDCL_API void kdcl_specialist_eval_free(kdcl_specialist_eval *r);

/* ---- 7. training every specialist of a clustering ----------------------------------
 *
 * One specialist per cluster of between min_size and K - 1 classes, each
 * initialised from the generalist (kdcl_model_replace_output with the
 * training seed, then kdcl_specialist_init), trained by kdcl_specialist_train
 * and saved by kdcl_specialist_save to DIR/specialist_<cluster>.safetensors
 * (atomically). Every rank of an mpirun job (kdcl/dist.h) makes the same
 * calls; the specialists are handed out by kdcl_dist_schedule, the largest
 * (most special training examples) first, to `jobs` workers per rank, each
 * with its own OpenCL context, on which it loads the generalist at its first
 * specialist. Resumable: a specialist's training state is
 * DIR/specialist_<cluster>.state.safetensors (removed when its file is saved
 * unless keep_state). */

typedef struct kdcl_specialists_train_opts {
    kdcl_train_opts train; /* every specialist's training; tag, metrics_path and the
                            * state fields are set per specialist, train.val is the
                            * validation set (may be NULL); train.progress is honoured
                            * only with one worker in one process */
    size_t min_size;       /* clusters of fewer classes are left out (default 2) */
    size_t jobs;           /* workers per rank, 1..64 (default 1; at most the specialists) */
    int resume;            /* continue unfinished specialists, skip finished ones */
    int keep_state;        /* keep the training states of finished specialists */
    size_t state_every;    /* also write the state every N steps (0: per epoch) */
    const char *clusters_name; /* names the clusters in messages (NULL: "the clusters") */
} kdcl_specialists_train_opts;
KDCL_API void kdcl_specialists_train_opts_default(kdcl_specialists_train_opts *o);

/* One specialist of a run: its plan and, after kdcl_specialists_trainer_run,
 * its result (on rank 0: every specialist's; on other ranks, those it ran). */
typedef struct kdcl_specialist_result {
    size_t cluster;          /* its cluster's index */
    const int32_t *cls;      /* its classes (in the trainer's copy of the clusters) */
    size_t n;
    size_t special_examples; /* training examples of its classes */
    char path[4096];         /* its file */
    int skipped;             /* resume: finished by an earlier run, not trained */
    int resumed;             /* resume: continued from its training state */
    int ran;                 /* trained (or tried) in this run */
    kdcl_status status;      /* KDCL_OK, or why it failed (error: the message) */
    char error[1024];
    double seconds;          /* its training time */
    double dustbin_offset;
    double train_error;      /* the last epoch's training error */
    int rank;                /* the rank and worker that ran it */
    size_t worker;
} kdcl_specialist_result;

typedef struct kdcl_specialists_trainer kdcl_specialists_trainer;

/* Plan a run (no device work): the clusters c over the generalist's classes
 * (copied), the training split `train` (kept by pointer: it must outlive the
 * trainer), the generalist's checkpoint and the output directory. Checks, each
 * KDCL_ERR_INVALID_ARG: the clusters cover the data's classes, some cluster
 * has min_size..K-1 classes, out_dir holds no specialist of a cluster outside
 * the run (it would join this run's at evaluation), and every training state
 * found there is readable and, without resume, absent. KDCL_ERR_IO when the
 * generalist cannot be read. */
KDCL_API kdcl_status kdcl_specialists_trainer_create(const char *generalist,
                                                     const kdcl_clusters *c,
                                                     const kdcl_dataset *train,
                                                     const char *out_dir,
                                                     const kdcl_specialists_train_opts *o,
                                                     kdcl_specialists_trainer **out);
/* Creates out_dir if missing, the workers' contexts (in this thread: platform
 * discovery is not thread-safe) and checks the generalist against the
 * clusters and the data (KDCL_ERR_INVALID_ARG). devices (may be NULL) has
 * kdcl_specialists_trainer_workers(t) entries: worker i's device, as
 * kdcl_ctx_create takes it (a NULL entry: the default device). */
KDCL_API kdcl_status kdcl_specialists_trainer_open(kdcl_specialists_trainer *t,
                                                   const char *const *devices);
/* Train (kdcl_dist_schedule; after kdcl_specialists_trainer_open). Returns
 * KDCL_OK when the scheduling worked, even if specialists failed: see their
 * results. */
KDCL_API kdcl_status kdcl_specialists_trainer_run(kdcl_specialists_trainer *t);
/* The specialists of the run, by ascending cluster index. */
KDCL_API size_t kdcl_specialists_trainer_count(const kdcl_specialists_trainer *t);
KDCL_API const kdcl_specialist_result *kdcl_specialists_trainer_result(
    const kdcl_specialists_trainer *t, size_t i);
/* Workers per rank (jobs, at most the specialists), and worker i's device
 * name (after kdcl_specialists_trainer_open). */
KDCL_API size_t kdcl_specialists_trainer_workers(const kdcl_specialists_trainer *t);
KDCL_API const char *kdcl_specialists_trainer_device(const kdcl_specialists_trainer *t,
                                                     size_t i);
/* A hash of the training examples and the generalist file: ranks that must
 * agree on a run compare it. */
KDCL_API uint64_t kdcl_specialists_trainer_fingerprint(const kdcl_specialists_trainer *t);
/* Specialists that failed (status set or, on rank 0, never ran). */
KDCL_API size_t kdcl_specialists_trainer_failed(const kdcl_specialists_trainer *t);
KDCL_API void kdcl_specialists_trainer_destroy(kdcl_specialists_trainer *t);

/* create, open (every worker on the default device) and run in one call. *out (may be NULL) receives the trainer
 * whenever it was created, for the results (destroy it). Returns the first
 * error, a failed specialist's included ("specialist <cluster>: <message>"). */
KDCL_API kdcl_status kdcl_specialists_train_all(const char *generalist, const kdcl_clusters *c,
                                                const kdcl_dataset *train, const char *out_dir,
                                                const kdcl_specialists_train_opts *o,
                                                kdcl_specialists_trainer **out);

#ifdef __cplusplus
}
#endif
#endif
