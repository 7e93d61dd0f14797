/* Internal: validation and launch helpers shared by the op wrappers
 * (ops.c, ops_softmax.c, ops_kd.c, ops_cnn.c). Errors name the op, the argument and its
 * shape; nothing here waits on the queue. */
#ifndef KDCL_CORE_OPS_UTIL_H
#define KDCL_CORE_OPS_UTIL_H
#include <stddef.h>

#include "kdcl/conv.h"
#include "kdcl/tensor.h"
#include "runtime/ctx.h"

#define KDCL_OPS_WG_CAP 256 /* largest work-group we use for a row */

/* "F32", "I32", "U8" ("?" otherwise). */
const char *kdcl_ops_type_name(kdcl_elem t);

/* "[128, 10] F32" into buf. */
const char *kdcl_ops_shape_str(const kdcl_tensor *t, char *buf, size_t size);

/* KDCL_ERR_INVALID_ARG "op: what (got <shape>)"; without t, "op: what". */
kdcl_status kdcl_ops_bad(const char *op, const char *what, const kdcl_tensor *t);

/* Convolution / pooling geometry as kdcl_conv_geom_set would fill it (g not
 * NULL, every field consistent); errors are prefixed with op (src/core/gemm.c). */
kdcl_status kdcl_conv_geom_check(const char *op, const kdcl_conv_geom *g);

/* The GEMMs kdcl_conv2d_forward / kdcl_conv2d_backward run for g at this
 * batch, as kdcl_gemm's row-major (m, n, k, transposes): [0] the forward,
 * [1] the weight gradient, [2] the input gradient. count = 1: one GEMM over
 * the batch; count = batch: the per-image product, run for all images as one
 * kdcl_gemm_batched call; count = 0: no kdcl_gemm (the forward under
 * KDCL_CONV_CLBLAST_CONVGEMM is CLBlast's convgemm). As the conv algorithm in
 * force runs them (src/core/gemm.c). */
typedef struct {
    size_t m, n, k;
    int ta, tb;
    size_t count;
} kdcl_conv_product;
void kdcl_conv2d_products(const kdcl_ctx *ctx, const kdcl_conv_geom *g, size_t batch,
                          kdcl_conv_product p[3]);

/* t present, of the given type, with numel >= need (exact: == need); the
 * error quotes `what` (e.g. "batch*C*H*W = 7*3*9*6") and t's shape. */
kdcl_status kdcl_ops_check_holds(const char *op, const char *name, const kdcl_tensor *t,
                                 kdcl_elem type, size_t need, int exact, const char *what);

/* Basic tensor sanity: present, has a buffer, the given type. */
kdcl_status kdcl_ops_check_tensor(const char *op, const char *name, const kdcl_tensor *t,
                                  kdcl_elem type);

/* Logits: F32, rank >= 2, B = shape[0], K = numel / B < 2^31, B < 2^32 and,
 * with limit_numel, B*K < 2^32 too. */
kdcl_status kdcl_ops_check_logits(const char *op, const char *name, const kdcl_tensor *z,
                                  int limit_numel, size_t *B, size_t *K);

/* A per-row tensor of the given type with numel == B. */
kdcl_status kdcl_ops_check_rows(const char *op, const char *name, const kdcl_tensor *t,
                                kdcl_elem type, size_t B);

/* F32 with the same B (shape[0]) and K as the logits (named `like`). */
kdcl_status kdcl_ops_check_like(const char *op, const char *name, const kdcl_tensor *t,
                                size_t B, size_t K, const char *like);

/* Temperature: finite and > 0. */
kdcl_status kdcl_ops_check_T(const char *op, float T);

/* A finite scalar argument. */
kdcl_status kdcl_ops_check_finite(const char *op, const char *name, float v);

/* Largest work-group size usable for kernel k: min(KDCL_OPS_WG_CAP, device, kernel). */
kdcl_status kdcl_ops_wg_cap(kdcl_ctx *ctx, cl_kernel k, const char *name, size_t *cap);

/* Power of two <= min(cap, n) (at least 1): every work-item gets an element. */
size_t kdcl_ops_pow2_at_most(size_t cap, size_t n);

/* clSetKernelArg; a failure names the kernel and the argument index. */
kdcl_status kdcl_ops_set_arg(cl_kernel k, cl_uint i, size_t size, const void *v,
                             const char *name);

#define ARG(k, i, v, name)                                                     \
    do {                                                                       \
        kdcl_status as_ = kdcl_ops_set_arg((k), (i), sizeof(v), &(v), (name)); \
        if (as_) return as_;                                                   \
    } while (0)
#define LOCAL_ARG(k, i, bytes, name)                                           \
    do {                                                                       \
        kdcl_status as_ = kdcl_ops_set_arg((k), (i), (bytes), NULL, (name));   \
        if (as_) return as_;                                                   \
    } while (0)

/* Set kernel arguments in order; a failure names the kernel and argument. */
typedef struct {
    size_t size;
    const void *ptr;
} karg;
#define KA(x) ((karg){sizeof(x), &(x)})
#define KA_LOCAL(bytes) ((karg){(bytes), NULL})
kdcl_status kdcl_ops_set_args(cl_kernel k, const char *name, const karg *a, size_t n);

/* 1-D launch with the given sizes (local 0: the driver chooses). */
kdcl_status kdcl_ops_launch(kdcl_ctx *ctx, cl_kernel k, const char *name, size_t global,
                            size_t local);

/* 3-D launch of exactly gx x gy x gz work-items (the driver chooses the group). */
kdcl_status kdcl_ops_launch3(kdcl_ctx *ctx, cl_kernel k, const char *name, size_t gx, size_t gy,
                             size_t gz);

/* One work-item per row (or element): global = n rounded up to the group size. */
kdcl_status kdcl_ops_launch_items(kdcl_ctx *ctx, cl_kernel k, const char *name, size_t n);

/* One work-group per row: lws = power of two <= min(cap, K). */
/* The BatchNorm ops' scratch of ctx (src/core/ops_cnn.c), NULL before their
 * first use; for tests that poison scratch. */
kdcl_tensor *kdcl__ops_scratch(kdcl_ctx *ctx);

kdcl_status kdcl_ops_row_group_size(kdcl_ctx *ctx, cl_kernel k, const char *name, size_t K,
                                    size_t *lws);
#endif
