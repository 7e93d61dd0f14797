/* Distillation: teacher ensembles, soft targets (per batch on the device, or
 * cached once for the transfer set), the distillation training loop, and the
 * bias adjustment of chosen classes (paper section 3). */
#ifndef KDCL_DISTILL_H
#define KDCL_DISTILL_H

#include "kdcl/kd.h"
#include "kdcl/train.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KDCL_MAX_MEMBERS 64

/* A set of checkpoints with the same inputs and number of classes (any
 * architectures). Their prediction is the mean of the members' softmax
 * outputs (KDCL_ENS_PROB, the paper's ensemble) or the softmax of their mean
 * logits (KDCL_ENS_LOGIT: a geometric mean, a different model). */
typedef struct kdcl_ensemble kdcl_ensemble;

KDCL_API kdcl_status kdcl_ensemble_load(kdcl_ctx *ctx, const char *const *paths, size_t n,
                                        size_t max_batch, kdcl_ens_mode mode,
                                        kdcl_ensemble **out);
/* kdcl_ensemble_load at the largest batch in [min_batch, max_batch] whose
 * buffers fit the device (max_batch, halved while a member's largest buffer
 * exceeds the device's largest allocation or memory runs out); e->max_batch
 * says which (kdcl_ensemble_max_batch). */
KDCL_API kdcl_status kdcl_ensemble_load_fit(kdcl_ctx *ctx, const char *const *paths, size_t n,
                                            size_t max_batch, size_t min_batch,
                                            kdcl_ens_mode mode, kdcl_ensemble **out);
/* Frees the members and the handle; NULL is allowed. */
KDCL_API void kdcl_ensemble_free(kdcl_ensemble *e);
/* Members, their input size (C*H*W) and classes, the largest batch. */
KDCL_API size_t kdcl_ensemble_size(const kdcl_ensemble *e);
KDCL_API size_t kdcl_ensemble_dim(const kdcl_ensemble *e);
KDCL_API size_t kdcl_ensemble_classes(const kdcl_ensemble *e);
KDCL_API size_t kdcl_ensemble_max_batch(const kdcl_ensemble *e);
/* Member i (owned by the ensemble; NULL out of range). */
KDCL_API kdcl_model *kdcl_ensemble_member(const kdcl_ensemble *e, size_t i);
/* F32 [max_batch, classes]: the last kdcl_ensemble_forward's combined output. */
KDCL_API const kdcl_tensor *kdcl_ensemble_output(const kdcl_ensemble *e);

/* Combined teacher output for a batch of u8 inputs (count rows of h x w x c
 * images), each member seeing the same augmentation (jitter and flips drawn
 * from the same seed and step) with its own normalisation. as_logits = 0: probabilities at temperature T (averaged
 * softmax(v/T), or softmax of the averaged v/T in logit mode) into kdcl_ensemble_output(e).
 * as_logits = 1: the members' averaged raw logits (for logit matching and for
 * logit-mode ensembles whose temperature the loss applies). */
KDCL_API kdcl_status kdcl_ensemble_forward(kdcl_ensemble *e, const kdcl_tensor *batch_u8, size_t count,
                                  size_t h, size_t w, size_t c, int jitter, int flip,
                                  uint64_t seed, uint64_t step, float T, int as_logits);

/* Test-mode errors and cross-entropy of the ensemble at T = 1. */
KDCL_API kdcl_status kdcl_ensemble_evaluate(kdcl_ensemble *e, const kdcl_dataset *ds, kdcl_eval_result *r);

typedef enum { KDCL_TARGETS_AUTO = 0, KDCL_TARGETS_CACHED = 1, KDCL_TARGETS_BATCH = 2 } kdcl_targets;

typedef struct kdcl_distill_opts {
    float T;
    float alpha;         /* weight of the hard-label cross-entropy */
    kdcl_kd_mode mode;   /* KL on soft targets, or logit matching */
    kdcl_targets targets;/* AUTO: cached without jitter, per batch with jitter */
} kdcl_distill_opts;

/* Train `student` on the transfer set with the ensemble's soft targets.
 * *used (may be NULL) tells which target path ran (CACHED or BATCH): cached
 * targets (asked for, or AUTO) fall back to per-batch ones when the transfer
 * set is streamed from the host or the [n, classes] cache would exceed the
 * device's largest buffer or memory. */
KDCL_API kdcl_status kdcl_distill(kdcl_model *student, kdcl_ensemble *teachers, const kdcl_dataset *transfer,
                         const kdcl_train_opts *o, const kdcl_distill_opts *d,
                         kdcl_epoch_stats *last, kdcl_targets *used);

/* kdcl_distill with teachers the caller holds (models of the student's
 * context, with the same inputs and classes; at most KDCL_MAX_MEMBERS),
 * combined as `mode` says (a kdcl_ens_mode: 0 probabilities, 1 logits); the
 * teachers are used, not kept or freed. d may be NULL: T 20, alpha 0.1, KL,
 * targets AUTO (the kdcl distill defaults). */
KDCL_API kdcl_status kdcl_distill_models(kdcl_model *student, kdcl_model *const *teachers,
                                         size_t n_teachers, int mode,
                                         const kdcl_dataset *transfer, const kdcl_train_opts *o,
                                         const kdcl_distill_opts *d, kdcl_epoch_stats *last);

/* Test-mode logits (F32 [n, classes], host, malloc'ed) of a model over a dataset. */
KDCL_API kdcl_status kdcl_model_logits_all(kdcl_model *m, const kdcl_dataset *ds, float **out);

/* Bias adjustment: the offset added to the output bias of `classes` that
 * minimises the errors on (logits, labels), searched over [lo, hi] in steps.
 * Ties go to the offset nearest 0. */
KDCL_API size_t kdcl_count_errors_with_offset(const float *logits, const int32_t *labels, size_t n,
                                     size_t k, const size_t *classes, size_t n_classes,
                                     float offset);
KDCL_API float kdcl_search_bias_offset(const float *logits, const int32_t *labels, size_t n, size_t k,
                              const size_t *classes, size_t n_classes, float lo, float hi,
                              float step, size_t *best_errors);
/* Adding an offset to the output-layer bias of chosen classes: kdcl_model_adjust_bias. */

#ifdef __cplusplus
}
#endif
#endif
