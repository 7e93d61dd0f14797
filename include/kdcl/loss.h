/* Row-wise softmax family on the device (cl/softmax.cl): temperature softmax
 * and log-softmax, cross-entropy with integer labels, argmax, confusion counts
 * and a deterministic on-device sum.
 *
 * Conventions shared by every op here:
 *  - Logits z are F32 with rank >= 2: B = shape[0] rows, K = numel / B columns
 *    (row-major; a [B, C, H, W] tensor is treated as [B, C*H*W]).
 *  - Inputs must be finite (a NaN/Inf logit gives an unspecified result for
 *    its row, never an out-of-bounds access).
 *  - Work is enqueued on the context's in-order queue without waiting; read
 *    results back with kdcl_tensor_download (blocking) or kdcl_ctx_finish.
 *  - Shapes and element types are validated first: a mismatch returns
 *    KDCL_ERR_INVALID_ARG naming the op and the shapes; OpenCL failures return
 *    KDCL_ERR_OPENCL (or KDCL_ERR_OOM) naming the kernel.
 *  - Rows are reduced by one work-group each (K > KDCL_SOFTMAX_SMALL_K) or by
 *    one work-item each (K <= KDCL_SOFTMAX_SMALL_K); the reduction order is
 *    fixed for a given device, so results are reproducible run to run.
 */
#ifndef KDCL_LOSS_H
#define KDCL_LOSS_H

#include "kdcl/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Rows with at most this many columns are handled by one work-item each. */
#define KDCL_SOFTMAX_SMALL_K 32

/* out = softmax(z / T) row-wise (log_out == 0) or log_softmax(z / T)
 * (log_out != 0). z, out: F32 with the same B and K. T must be finite and > 0.
 * Stable for |z| up to ~1e4 and T in [0.05, 100]: the row max is subtracted
 * before exp, softmax outputs lie in [0, 1], log-softmax is computed as
 * (z/T - max) - log(sum exp(z/T - max)). out may be the same tensor as z
 * (in place); otherwise the two must not overlap. */
KDCL_API kdcl_status kdcl_op_softmax(kdcl_ctx *ctx, const kdcl_tensor *z, kdcl_tensor *out, float T,
                            int log_out);

/* Cross-entropy at T = 1 with integer labels (I32, numel B, each in [0, K)):
 *   loss[b]   = -log softmax(z_b)[y_b]                    (F32 numel B; may be NULL)
 *   dz[b, k]  = grad_scale * (softmax(z_b)_k - [k == y_b]) (F32, same B and K as z;
 *               may be NULL; may be the same tensor as z, overwriting the logits)
 *   errors[0] += number of rows whose argmax (first max on ties) != y_b
 *               (I32 numel >= 1, an accumulator; may be NULL)
 * A label outside [0, K) is never used as an index: that row's loss and
 * whole dz row are NaN (so a NaN check on the loss catches bad labels) and
 * the row counts as an error. */
KDCL_API kdcl_status kdcl_op_softmax_xent(kdcl_ctx *ctx, const kdcl_tensor *z, const kdcl_tensor *labels,
                                 kdcl_tensor *loss, kdcl_tensor *dz, float grad_scale,
                                 kdcl_tensor *errors);

/* idx[b] = argmax_k z[b, k] (first index on ties); idx: I32 numel B. */
KDCL_API kdcl_status kdcl_op_argmax(kdcl_ctx *ctx, const kdcl_tensor *z, kdcl_tensor *idx);

/* acc[acc_index] += sum(x[0..n)) for F32 x (n <= numel, n < 2^32) and F32 acc
 * (acc_index < numel). Done by one work-group in a fixed order, so the result
 * is deterministic for a given device and n; used to accumulate per-step
 * losses on the device so the host reads one scalar per logging interval.
 * n == 0 enqueues nothing. */
KDCL_API kdcl_status kdcl_op_reduce_add(kdcl_ctx *ctx, const kdcl_tensor *x, size_t n, kdcl_tensor *acc,
                               size_t acc_index);

/* Confusion counts: conf[y_b * K + argmax_k z[b, k]] += 1 for each row b
 * (conf: I32 numel K*K, an accumulator: zero it before the first batch).
 * Rows whose label lies outside [0, K) are skipped. */
KDCL_API kdcl_status kdcl_op_confusion(kdcl_ctx *ctx, const kdcl_tensor *z, const kdcl_tensor *labels,
                              kdcl_tensor *conf);

#ifdef __cplusplus
}
#endif
#endif
