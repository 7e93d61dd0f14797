/* Knowledge-distillation losses and ensemble soft targets on the device
 * (cl/kd_loss.cl). Formulas: Hinton, Vinyals & Dean 2015, section 2.
 *
 * Conventions as in kdcl/loss.h: logits are F32 with rank >= 2, B = shape[0]
 * rows and K = numel / B columns; inputs must be finite; work is enqueued
 * without waiting; a bad shape, type or parameter returns KDCL_ERR_INVALID_ARG
 * naming the op and the shapes; rows are reduced by one work-group each
 * (K > KDCL_SOFTMAX_SMALL_K) or one work-item each, in a fixed order, so
 * results are reproducible run to run on a given device.
 */
#ifndef KDCL_KD_H
#define KDCL_KD_H

#include "kdcl/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { KDCL_KD_KL = 0, KDCL_KD_LOGITS = 1 } kdcl_kd_mode;

/* Fused distillation loss, one pass over each row of student logits z (F32 [B, K]).
 *
 * mode KDCL_KD_KL (the default; paper section 2):
 *   p = targets given as probabilities (targets_are_logits == 0; F32 [B, K],
 *       entries in [0, 1], rows summing to 1; p = 0 is allowed: 0 log 0 = 0,
 *       and entries below FLT_MIN (denormals) count as 0 in the loss),
 *       or p = softmax(v / T) of teacher logits v (targets_are_logits != 0)
 *   q = softmax(z / T)
 *   L      = (1 - alpha) T^2 sum_i p_i (log p_i - log q_i) + alpha CE(softmax(z), y)
 *   dL/dz_i = (1 - alpha) T (q_i - p_i) + alpha (softmax(z)_i - [i == y])
 *   The T^2 keeps the soft gradient's size roughly independent of T.
 * mode KDCL_KD_LOGITS (logit matching, Caruana et al.): targets are teacher
 *   logits v (targets_are_logits must be nonzero); T is validated but unused:
 *   L      = (1 - alpha) 1/2 sum_i (z_i - v_i)^2 + alpha CE(softmax(z), y)
 *   dL/dz_i = (1 - alpha) (z_i - v_i) + alpha (softmax(z)_i - [i == y])
 *
 * labels: I32 [B], required when alpha > 0 or errors != NULL (may be NULL
 *   otherwise; never read when alpha == 0 and errors == NULL).
 * T: finite, > 0. alpha: in [0, 1]. alpha == 1 computes exactly what
 *   kdcl_op_softmax_xent computes (the soft term is skipped); alpha == 0
 *   skips the cross-entropy.
 * loss: F32 [B] per-example loss, or NULL.
 * dz: F32 [B, K] gradient times grad_scale (e.g. 1/B), or NULL; may be the
 *   same tensor as z (overwriting the logits), must not otherwise overlap.
 * errors: I32 numel >= 1, errors[0] += rows whose argmax(z) (first max on
 *   ties) != label; an accumulator; or NULL.
 * A label outside [0, K) is never used as an index: with alpha > 0 that row's
 * loss and dz row are NaN; it always counts as an error.
 *
 * Numerics: max-subtracted exponentials and log-sum-exp throughout (log q and,
 * for logit targets, log p are (x - max) - log sum exp(x - max)), stable for
 * |logits| up to ~1e4 and T in [0.05, 100]. With logit targets identical to z
 * the KL term is exactly 0; in general it is >= 0 up to rounding (not clamped).
 * Probability targets whose rows do not sum to 1 give the formula's value,
 * which may be negative. */
KDCL_API kdcl_status kdcl_op_kd_loss(kdcl_ctx *ctx, kdcl_kd_mode mode, const kdcl_tensor *z,
                            const kdcl_tensor *targets, int targets_are_logits,
                            const kdcl_tensor *labels, float T, float alpha, kdcl_tensor *loss,
                            kdcl_tensor *dz, float grad_scale, kdcl_tensor *errors);

typedef enum { KDCL_ENS_PROB = 0, KDCL_ENS_LOGIT = 1 } kdcl_ens_mode;

/* Soft targets of an ensemble, accumulated member by member on the device.
 * v: member logits F32 [B, K]; acc: F32 [B, K] (must not overlap v).
 *   KDCL_ENS_PROB  (default, the paper's ensemble): acc = beta acc + w softmax(v / T)
 *                  row-wise. With weights summing to 1, acc is the arithmetic
 *                  mean of the members' distributions at T: ready-made soft
 *                  targets (targets_are_logits = 0).
 *   KDCL_ENS_LOGIT acc = beta acc + w v / T element-wise. The caller then turns
 *                  the averaged scaled logits into targets with
 *                  kdcl_op_softmax(acc, T = 1) (or passes them as logit
 *                  targets at T = 1). This is the normalised GEOMETRIC mean of
 *                  the members' distributions, a different model from
 *                  probability averaging (it is sharper where members
 *                  disagree); offered as an option, not the default.
 * beta = 0 (the first member) overwrites acc without reading it (acc may be
 * uninitialised); beta = 1 accumulates. T > 0 finite; w and beta finite. */
KDCL_API kdcl_status kdcl_op_ensemble_accumulate(kdcl_ctx *ctx, kdcl_ens_mode mode, const kdcl_tensor *v,
                                        float T, float w, float beta, kdcl_tensor *acc);

#ifdef __cplusplus
}
#endif
#endif
