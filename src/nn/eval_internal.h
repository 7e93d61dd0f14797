/* Internal: the test-mode evaluation loop shared by kdcl_evaluate and
 * kdcl_ensemble_evaluate, and the test-mode forward of a u8 batch. */
#ifndef KDCL_NN_EVAL_INTERNAL_H
#define KDCL_NN_EVAL_INTERNAL_H

#include "kdcl/train.h"

/* Fill the logits [count, K] for the batch just loaded into b (its current
 * slot) and point *logits at them. */
typedef kdcl_status (*kdcl_eval_logits_fn)(void *user, const kdcl_batcher *b, size_t count,
                                           kdcl_tensor **logits);

/* Batches ds (at most max_batch rows), accumulates the mean cross-entropy of
 * the logits, the error count and, when want_confusion, the K x K confusion
 * matrix into r (freed on failure). */
kdcl_status kdcl_eval_loop(kdcl_ctx *ctx, const kdcl_dataset *ds, size_t max_batch, size_t K,
                           int want_confusion, kdcl_eval_logits_fn logits_fn, void *user,
                           kdcl_eval_result *r);

#endif
