/* Device ops of convolutional networks: 2-D convolution as im2col / col2im
 * + GEMMs through CLBlast (src/core/gemm.c; im2col / col2im by kdcl's kernels
 * or CLBlast's, or CLBlast's convgemm: kdcl_conv_set_algo; on CPU devices
 * 3x3 layers on kdcl's direct kernels), pooling, batch
 * normalisation, the residual add, Adam and Nesterov SGD, and the input
 * conversion of CNNs (u8 HWC -> F32 NCHW with per-channel normalisation,
 * translation and horizontal flip).
 *
 * Layout: activations are NCHW, row-major: element (b, c, y, x) of a
 * [B, C, H, W] tensor is at ((b*C + c)*H + y)*W + x. Conv weights are
 * [OC, C, KH, KW] (PyTorch's nn.Conv2d). Like every op, these enqueue on the
 * context's in-order queue and return without waiting; bad arguments give
 * KDCL_ERR_INVALID_ARG naming the op and the shapes. */
#ifndef KDCL_CONV_H
#define KDCL_CONV_H

#include <stddef.h>
#include <stdint.h>

#include "kdcl/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Geometry of a convolution or pooling window over a [C, H, W] input:
 * output size OH = (H + 2 PH - KH) / SH + 1 (floor), OW likewise; OC is the
 * number of output channels (pooling: OC = C). */
typedef struct kdcl_conv_geom {
    size_t c, h, w;
    size_t oc;
    size_t kh, kw, sh, sw, ph, pw;
    size_t oh, ow;
} kdcl_conv_geom;

/* Fill g and check it: every size >= 1, padding < kernel size, output size
 * >= 1, every product below 2^31. The error message says which (e.g. "kernel
 * 5x5 does not fit a 2x2 input with padding 0"). */
KDCL_API kdcl_status kdcl_conv_geom_set(kdcl_conv_geom *g, size_t c, size_t h, size_t w, size_t oc,
                               size_t kh, size_t kw, size_t sh, size_t sw, size_t ph, size_t pw);

/* How kdcl_conv2d_forward / kdcl_conv2d_backward compute (every algorithm
 * gives the results documented below, up to summation order):
 *   KDCL_CONV_KDCL_IM2COL       kdcl's batched im2col / col2im kernels
 *                               (cl/conv.cl) + CLBlast GEMMs; on CPU devices
 *                               (KDCL_GEMM_SMALL=0/1 overrides) a layer with at
 *                               most 16 output channels runs its products on
 *                               kdcl's narrow-product kernels (cl/gemm_small.cl)
 *                               over the whole batch instead, and a 3x3
 *                               layer with padding 1 and stride 1 or 2 on
 *                               kdcl's direct convolution kernels
 *                               (cl/conv_direct.cl: no columns, no GEMM;
 *                               KDCL_CONV_DIRECT=0/1 overrides);
 *   KDCL_CONV_CLBLAST_IM2COL    CLBlastSim2col / CLBlastScol2im + CLBlast GEMMs;
 *   KDCL_CONV_CLBLAST_CONVGEMM  forward by CLBlastSconvgemm (the bias added by
 *                               kdcl), backward as KDCL_CONV_CLBLAST_IM2COL;
 *   KDCL_CONV_AUTO              KDCL_CONV_KDCL_IM2COL on CPU devices (measured
 *                               fastest under PoCL, see src/core/gemm.c),
 *                               KDCL_CONV_CLBLAST_IM2COL on other devices
 *                               (CLBlast's kernels are tuned for GPUs; not
 *                               measured on one).
 * Per context: kdcl_ctx_create reads KDCL_CONV=auto|kdcl|clblast|convgemm
 * (unset or empty: auto; any other value fails the creation);
 * kdcl_conv_set_algo replaces the setting. The workspace size does not
 * depend on it (CLBlast's per-image column layout, when the batch-wide GEMM
 * wants kdcl's, goes through a transposed copy in a scratch buffer the
 * context keeps). */
typedef enum kdcl_conv_algo {
    KDCL_CONV_AUTO = 0,
    KDCL_CONV_KDCL_IM2COL = 1,
    KDCL_CONV_CLBLAST_IM2COL = 2,
    KDCL_CONV_CLBLAST_CONVGEMM = 3,
} kdcl_conv_algo;
KDCL_API kdcl_status kdcl_conv_set_algo(kdcl_ctx *ctx, kdcl_conv_algo algo);
/* The setting (KDCL_CONV_AUTO included). */
KDCL_API kdcl_conv_algo kdcl_conv_get_algo(const kdcl_ctx *ctx);
/* The algorithm the conv calls use now: the setting with AUTO resolved for
 * the context's device. */
KDCL_API kdcl_conv_algo kdcl_conv_algo_in_force(const kdcl_ctx *ctx);
/* 1 when kdcl's direct convolution kernels are on for the context (3x3 with
 * padding 1 and stride 1 or 2, 5x5 with stride 1, under KDCL_CONV_KDCL_IM2COL):
 * by default on CPU devices, KDCL_CONV_DIRECT=0/1 overrides (read when the
 * context's GEMM state is set up, on first use); 0 otherwise or on error. */
KDCL_API int kdcl_conv_direct_on(kdcl_ctx *ctx);
/* "auto", "kdcl", "clblast", "convgemm" (KDCL_CONV's values); NULL for
 * anything else. */
KDCL_API const char *kdcl_conv_algo_name(kdcl_conv_algo algo);

/* F32 elements of scratch the conv calls below need for `batch` images
 * (im2col columns and any transposed copies). */
KDCL_API size_t kdcl_conv2d_workspace(const kdcl_conv_geom *g, size_t batch);

/* y[b, o] = bias[o] + sum_{c, i, j} w[o, c, i, j] * x[b, c, y*SH - PH + i, x*SW - PW + j]
 * (cross-correlation as in PyTorch; out-of-range x reads 0). x F32 holding
 * batch*C*H*W, w F32 OC*C*KH*KW, bias F32 OC or NULL, y F32 batch*OC*OH*OW,
 * ws F32 with at least kdcl_conv2d_workspace(g, batch) elements. */
KDCL_API kdcl_status kdcl_conv2d_forward(kdcl_ctx *ctx, const kdcl_conv_geom *g, size_t batch,
                                const kdcl_tensor *x, const kdcl_tensor *w,
                                const kdcl_tensor *bias, kdcl_tensor *y, kdcl_tensor *ws);

/* Gradients of the above from dy (F32 batch*OC*OH*OW): dw (overwritten),
 * db = sum over b, y, x of dy (overwritten; NULL: not computed), dx
 * (overwritten; NULL: not computed). */
KDCL_API kdcl_status kdcl_conv2d_backward(kdcl_ctx *ctx, const kdcl_conv_geom *g, size_t batch,
                                 const kdcl_tensor *x, const kdcl_tensor *w,
                                 const kdcl_tensor *dy, kdcl_tensor *dw, kdcl_tensor *db,
                                 kdcl_tensor *dx, kdcl_tensor *ws);

/* Max pooling (g->oc == g->c): y = max over the window, padding counts as
 * -inf; NaN in a window gives NaN. argmax (I32, batch*C*OH*OW) receives the
 * index within the input plane (y*W + x) of the first maximum in row-major
 * window order (PyTorch's choice on ties). */
KDCL_API kdcl_status kdcl_op_maxpool2d_forward(kdcl_ctx *ctx, const kdcl_conv_geom *g, size_t batch,
                                      const kdcl_tensor *x, kdcl_tensor *y, kdcl_tensor *argmax);
/* dx (overwritten) = dy routed to each window's argmax, summed where windows overlap. */
KDCL_API kdcl_status kdcl_op_maxpool2d_backward(kdcl_ctx *ctx, const kdcl_conv_geom *g, size_t batch,
                                       const kdcl_tensor *dy, const kdcl_tensor *argmax,
                                       kdcl_tensor *dx);

/* Average pooling, padding counted in the divisor (PyTorch's
 * count_include_pad=True): y = sum over the window / (KH*KW). A global
 * average pool is the window KH = H, KW = W, stride 1, padding 0. */
KDCL_API kdcl_status kdcl_op_avgpool2d_forward(kdcl_ctx *ctx, const kdcl_conv_geom *g, size_t batch,
                                      const kdcl_tensor *x, kdcl_tensor *y);
KDCL_API kdcl_status kdcl_op_avgpool2d_backward(kdcl_ctx *ctx, const kdcl_conv_geom *g, size_t batch,
                                       const kdcl_tensor *dy, kdcl_tensor *dx);

/* Batch normalisation over x viewed as [B, C, S] (BatchNorm2d: S = H*W;
 * BatchNorm1d on [B, C]: S = 1). Training mode: per channel, mean and biased
 * variance over the B*S values, y = gamma * (x - mean) * invstd + beta with
 * invstd = 1/sqrt(var + eps); mean and invstd are written (F32 C) for the
 * backward; running statistics follow PyTorch: r_mean = (1 - momentum) *
 * r_mean + momentum * mean, r_var likewise with the unbiased variance
 * var * n / (n - 1) (n = B*S; n = 1 leaves r_var's update to use var).
 * running_mean and running_var may both be NULL (no update); momentum in
 * [0, 1], eps finite and >= 0 (also for the evaluation mode). The per-channel
 * sums are fixed-order work-group reductions (no atomics): reproducible run to
 * run on a device. y may be x. */
KDCL_API kdcl_status kdcl_op_batchnorm_forward_train(kdcl_ctx *ctx, size_t B, size_t C, size_t S,
                                            const kdcl_tensor *x, const kdcl_tensor *gamma,
                                            const kdcl_tensor *beta, kdcl_tensor *y,
                                            kdcl_tensor *mean, kdcl_tensor *invstd,
                                            kdcl_tensor *running_mean,
                                            kdcl_tensor *running_var, float momentum, float eps);
/* Evaluation mode: y = gamma * (x - r_mean) / sqrt(r_var + eps) + beta. */
KDCL_API kdcl_status kdcl_op_batchnorm_forward_eval(kdcl_ctx *ctx, size_t B, size_t C, size_t S,
                                           const kdcl_tensor *x, const kdcl_tensor *gamma,
                                           const kdcl_tensor *beta,
                                           const kdcl_tensor *running_mean,
                                           const kdcl_tensor *running_var, float eps,
                                           kdcl_tensor *y);
/* Backward of the training mode from dy: dgamma, dbeta (F32 C, overwritten)
 * and dx (overwritten; NULL: not computed), using the mean and invstd the
 * forward wrote. */
KDCL_API kdcl_status kdcl_op_batchnorm_backward(kdcl_ctx *ctx, size_t B, size_t C, size_t S,
                                       const kdcl_tensor *x, const kdcl_tensor *dy,
                                       const kdcl_tensor *gamma, const kdcl_tensor *mean,
                                       const kdcl_tensor *invstd, kdcl_tensor *dx,
                                       kdcl_tensor *dgamma, kdcl_tensor *dbeta);

/* y[i] = y[i] + alpha * x[i] for i < n (both F32): the residual add and
 * "add this gradient". */
KDCL_API kdcl_status kdcl_op_axpy(kdcl_ctx *ctx, kdcl_tensor *y, const kdcl_tensor *x, size_t n,
                         float alpha);
/* y[i] = a[i] + b[i] for i < n (all F32; y may be a or b): the residual sum
 * in one pass. */
KDCL_API kdcl_status kdcl_op_add(kdcl_ctx *ctx, kdcl_tensor *y, const kdcl_tensor *a,
                        const kdcl_tensor *b, size_t n);
/* y[i] = max(y[i], 0) in place (n elements; NaN stays NaN). */
KDCL_API kdcl_status kdcl_op_relu(kdcl_ctx *ctx, kdcl_tensor *y, size_t n);

/* Adam over elements [offset, offset + n) of w, g, m, v (all F32), step t >= 1
 * (PyTorch's torch.optim.Adam / AdamW):
 *   decoupled (AdamW): w = w - lr * wd * w;   else g' = g + wd * w
 *   m = b1 m + (1 - b1) g';  v = b2 v + (1 - b2) g'^2
 *   w = w - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
 * computed as w - s * (m / (sqrt(v) * r + eps)) with s = lr / (1 - b1^t) and
 * r = 1 / sqrt(1 - b2^t) evaluated on the host in double and rounded to float
 * once (so is 1 - lr * wd). Requires lr, eps, weight_decay finite and >= 0,
 * beta1, beta2 in [0, 1) (PyTorch's checks) and s finite. */
KDCL_API kdcl_status kdcl_op_adam(kdcl_ctx *ctx, kdcl_tensor *w, const kdcl_tensor *g, kdcl_tensor *m,
                         kdcl_tensor *v, size_t offset, size_t n, float lr, float beta1,
                         float beta2, float eps, float weight_decay, int decoupled, uint64_t t);

/* SGD with Nesterov momentum in kdcl's velocity form (kdcl_op_sgd's
 * convention): d = g + wd * w;  v = momentum * v - lr * d;
 * w = w + momentum * v - lr * d. */
KDCL_API kdcl_status kdcl_op_sgd_nesterov(kdcl_ctx *ctx, kdcl_tensor *w, const kdcl_tensor *g,
                                 kdcl_tensor *v, size_t offset, size_t n, float lr,
                                 float momentum, float weight_decay);

/* Input of a CNN: src U8 holding `batch` images of H*W*C bytes in HWC order,
 * dst F32 [batch, C, H, W] (NCHW), C = 1..4, per-channel
 *   dst[b, c, y, x] = fma(src[b, sy, sx, c], scale[c], shift[c])   (shift[c] if outside)
 * where (dx, dy) = kdcl_jitter_shift(seed, step, b, max_shift) and
 * sy = y - dy, sx = (flip_b ? W - 1 - x : x) - dx, flip_b =
 * kdcl_augment_flip(seed, step, b) when flip != 0 (else 0). With C = 1 and no
 * flip this equals kdcl_op_jitter bit for bit. A random crop with zero
 * padding P (CIFAR style) is max_shift = P: the padded pixels are raw 0, i.e.
 * shift[c] after normalisation. */
KDCL_API kdcl_status kdcl_op_input_u8(kdcl_ctx *ctx, const kdcl_tensor *src, kdcl_tensor *dst,
                             size_t batch, size_t h, size_t w, size_t c, int max_shift, int flip,
                             uint64_t seed, uint64_t step, const float *scale, const float *shift);
/* The flip decision of example b: bit 31 of word 2 of the Philox output that
 * kdcl_jitter_shift uses for b (1 = mirror horizontally). */
KDCL_API int kdcl_augment_flip(uint64_t seed, uint64_t step, size_t b);

#ifdef __cplusplus
}
#endif
#endif
