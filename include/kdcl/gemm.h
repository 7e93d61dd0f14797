/* Matrix products through CLBlast (src/core/gemm.c is the only caller of CLBlast). */
#ifndef KDCL_GEMM_H
#define KDCL_GEMM_H

#include "kdcl/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kdcl_trans { KDCL_NO_TRANS = 0, KDCL_TRANS = 1 } kdcl_trans;

/* Row-major C[m x n] = alpha * op(A)[m x k] * op(B)[k x n] + beta * C.
 * A is stored m x k (lda >= k) or, transposed, k x m (lda >= m); B likewise.
 * Offsets and leading dimensions are in elements. Every shape, leading
 * dimension and buffer extent is checked before CLBlast runs; CLBlast's
 * failures come back as KDCL_ERR_CLBLAST naming the routine and shape.
 * `event` may be NULL. m or n == 0 is a no-op; k == 0 computes C = beta*C. */
kdcl_status kdcl_gemm(kdcl_ctx *ctx, kdcl_trans ta, kdcl_trans tb, size_t m, size_t n, size_t k,
                      float alpha, cl_mem a, size_t a_off, size_t lda, cl_mem b, size_t b_off,
                      size_t ldb, float beta, cl_mem c, size_t c_off, size_t ldc,
                      cl_event *event);

/* Strided-batched form: for i < batch, C_i = alpha*op(A_i)*op(B_i) + beta*C_i
 * with X_i starting at x_off + i * x_stride. */
kdcl_status kdcl_gemm_batched(kdcl_ctx *ctx, kdcl_trans ta, kdcl_trans tb, size_t m, size_t n,
                              size_t k, float alpha, cl_mem a, size_t a_off, size_t lda,
                              size_t a_stride, cl_mem b, size_t b_off, size_t ldb, size_t b_stride,
                              float beta, cl_mem c, size_t c_off, size_t ldc, size_t c_stride,
                              size_t batch, cl_event *event);

/* Apply GEMM tuning parameters for the context's device: the file written by
 * `kdcl tune` for this device and driver if there is one, else the parameters
 * kdcl ships for matching devices (KDCL_NO_TUNING=1: CLBlast's defaults).
 * *source (may be NULL) names what was applied. Called by kdcl_ctx_create. */
kdcl_status kdcl_gemm_apply_tuning(kdcl_ctx *ctx, const char **source);
/* Where `kdcl tune` stores the parameters of a device + driver. */
kdcl_status kdcl_gemm_tuning_path(const kdcl_device_info *dev, char *buf, size_t size);

/* Name of a CLBlast status code ("CLBlastInvalidLeadDimA"). */
const char *kdcl_clblast_status_name(int status);

#ifdef __cplusplus
}
#endif
#endif
