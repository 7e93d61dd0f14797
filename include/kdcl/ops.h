/* Elementwise device ops of the training step: fused bias + ReLU + dropout
 * (forward and backward), bias gradient, SGD with momentum and weight decay,
 * max-norm, and input conversion / jitter augmentation.
 *
 * All ops enqueue on the context's in-order queue and return without waiting.
 * Bad arguments give KDCL_ERR_INVALID_ARG with a message naming the op.
 *
 * Randomness is counter-based (Philox4x32-10, Salmon et al. 2011): every
 * random decision is a pure function of (seed, step, stream, index), so it
 * does not depend on the device, the work-group size or the launch order, and
 * the host functions below reproduce it bit for bit. */
#ifndef KDCL_OPS_H
#define KDCL_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "kdcl/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Philox counter word 3 used by kdcl_op_jitter (dropout uses the caller's stream). */
#define KDCL_JITTER_STREAM 0x6a697474u

/* Fused forward of one hidden layer's elementwise part, in place on y (F32
 * [B,N], N = last dimension; the GEMM output X W^T):
 *   y = y + bias            (bias F32 with N elements; NULL = no bias)
 *   if relu: y = max(y, 0)  (NaN stays NaN)
 *   if drop_p > 0: element i is dropped iff u_i < drop_p, with
 *     u_i = (r >> 8) * 2^-24,  r = philox4x32({i/4, step_lo, step_hi, stream},
 *                                            {seed_lo, seed_hi})[i % 4];
 *     kept values become x / (1 - drop_p) rounded once (error <= 0.5 ulp + 2^-48
 *     relative: fma with a two-float scale), dropped ones 0; mask (U8, same
 *     element count as y) gets keep=1/drop=0.
 * mask is required when drop_p > 0; with drop_p == 0 a given mask is set to 1.
 * drop_p must be in [0, 1); y may have at most 2^34 elements. */
KDCL_API kdcl_status kdcl_op_bias_act_dropout(kdcl_ctx *ctx, kdcl_tensor *y, const kdcl_tensor *bias,
                                     int relu, float drop_p, uint64_t seed, uint64_t step,
                                     uint32_t stream, kdcl_tensor *mask);

/* Backward of the above, in place on dy (F32, same element count as y_out):
 *   dy = dy * (mask ? mask / (1 - drop_p) : 1) * (relu ? [y_out > 0] : 1)
 * (scaling rounded as in the forward), y_out the forward OUTPUT (after dropout).
 * Dropped / inactive units get exactly 0 (not 0 * dy). mask is required when
 * drop_p > 0; y_out may be NULL when relu == 0. */
KDCL_API kdcl_status kdcl_op_act_dropout_backward(kdcl_ctx *ctx, kdcl_tensor *dy, const kdcl_tensor *y_out,
                                         int relu, float drop_p, const kdcl_tensor *mask);

/* Bias gradient: db[n] = beta * db[n] + scale * sum_b dy[b,n] (dy F32 [B,N],
 * db F32 with N elements). beta == 0 does not read db. The summation order is
 * fixed for a device, so results are reproducible run to run. */
KDCL_API kdcl_status kdcl_op_bias_grad(kdcl_ctx *ctx, const kdcl_tensor *dy, kdcl_tensor *db, float scale,
                              float beta);

/* SGD with momentum and L2 weight decay over elements [offset, offset + n) of
 * w, g, v (all F32):
 *   v = momentum * v - lr * (g + weight_decay * w);  w = w + v. */
KDCL_API kdcl_status kdcl_op_sgd(kdcl_ctx *ctx, kdcl_tensor *w, const kdcl_tensor *g, kdcl_tensor *v,
                        size_t offset, size_t n, float lr, float momentum, float weight_decay);

/* Max-norm: for each row r of the row-major [rows, cols] matrix starting at
 * element `offset` of w (F32): if ||w_r||_2 > c, w_r *= c / ||w_r||_2.
 * c must be > 0 (and finite). */
KDCL_API kdcl_status kdcl_op_max_norm(kdcl_ctx *ctx, kdcl_tensor *w, size_t offset, size_t rows,
                             size_t cols, float c);

/* kdcl_op_sgd followed by kdcl_op_max_norm in one pass over the row-major [rows, cols]
 * matrix starting at element `offset` of w, g, v (all F32): every element gets the
 * SGD update (v and w bit-identical to kdcl_op_sgd), then each row r with
 * ||w_r||_2 > c is scaled by c / ||w_r||_2 (w equal to kdcl_op_max_norm's result up
 * to the summation order of the norm). lr, momentum, weight_decay must be finite,
 * c > 0 and finite. */
KDCL_API kdcl_status kdcl_op_sgd_max_norm(kdcl_ctx *ctx, kdcl_tensor *w, const kdcl_tensor *g,
                                 kdcl_tensor *v, size_t offset, size_t rows, size_t cols,
                                 float lr, float momentum, float weight_decay, float c);

/* dst[i] = src[i] * scale + shift for i < n (src U8, dst F32), computed with a
 * single rounding (fma), i.e. exactly (float)((double)src[i] * scale + shift). */
KDCL_API kdcl_status kdcl_op_u8_to_float(kdcl_ctx *ctx, const kdcl_tensor *src, kdcl_tensor *dst,
                                size_t n, float scale, float shift);

/* Random translation + conversion. src U8, dst F32, both holding `batch`
 * examples of h*w*c bytes in HWC order. Example b is shifted by (dx, dy) =
 * kdcl_jitter_shift(seed, step, b, max_shift):
 *   dst[b,y,x,ch] = fma(src[b, y-dy, x-dx, ch], scale, shift) if inside, else shift.
 * max_shift = 0 is a plain conversion. batch*h*w*c must be below 2^32. */
KDCL_API kdcl_status kdcl_op_jitter(kdcl_ctx *ctx, const kdcl_tensor *src, kdcl_tensor *dst, size_t batch,
                           size_t h, size_t w, size_t c, int max_shift, uint64_t seed,
                           uint64_t step, float scale, float shift);

/* The shift of example b (b < 2^32): r = philox4x32({b, step_lo, step_hi,
 * KDCL_JITTER_STREAM}, {seed_lo, seed_hi}); dx = mulhi(r[0], 2m+1) - m,
 * dy = mulhi(r[1], 2m+1) - m, each uniform on [-m, m] (m = max_shift >= 0). */
KDCL_API void kdcl_jitter_shift(uint64_t seed, uint64_t step, size_t b, int max_shift, int *dx, int *dy);

/* Philox4x32-10 on the CPU (the function the kernels use): out = philox(ctr, key). */
KDCL_API void kdcl_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* CPU reference of the dropout keep decision for element i (1 = keep). */
KDCL_API int kdcl_dropout_keep(uint64_t seed, uint64_t step, uint32_t stream, size_t i, float drop_p);

/* The integer threshold t used on the device: keep iff (r >> 8) >= t, where
 * t = ceil(drop_p * 2^24). The keep probability is exactly (2^24 - t) / 2^24. */
KDCL_API uint32_t kdcl_dropout_threshold(float drop_p);

#ifdef __cplusplus
}
#endif
#endif
