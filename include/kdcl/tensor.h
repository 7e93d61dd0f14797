/* Device tensors: an OpenCL buffer with a shape and element type, plus a pool
 * that owns a set of tensors allocated once (so a training step allocates
 * nothing). */
#ifndef KDCL_TENSOR_H
#define KDCL_TENSOR_H

#include "kdcl/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kdcl_elem { KDCL_F32 = 0, KDCL_U8 = 1, KDCL_I32 = 2 } kdcl_elem;

#define KDCL_MAX_DIMS 4

typedef struct kdcl_tensor {
    struct _cl_mem *buf; /* cl_mem (kdcl/opencl.h) */
    kdcl_elem type;
    size_t ndim;
    size_t shape[KDCL_MAX_DIMS];
    size_t numel;    /* product of shape */
    size_t capacity; /* elements allocated (>= numel) */
    int is_view;     /* sub-buffer of another tensor: owns no memory of its own */
} kdcl_tensor;

KDCL_API size_t kdcl_elem_size(kdcl_elem t);

/* Allocate a device buffer for `shape` (ndim 1..4, every dim >= 1). Sizes are
 * checked for overflow and against the device's max allocation. */
KDCL_API kdcl_status kdcl_tensor_alloc(kdcl_ctx *ctx, kdcl_tensor *t, kdcl_elem type, size_t ndim,
                              const size_t *shape);
/* 2-D shorthand. */
KDCL_API kdcl_status kdcl_tensor_alloc2(kdcl_ctx *ctx, kdcl_tensor *t, kdcl_elem type, size_t rows,
                               size_t cols);
KDCL_API void kdcl_tensor_free(kdcl_ctx *ctx, kdcl_tensor *t); /* safe on a zeroed tensor */

/* A view of `parent` starting at element `offset` with the given shape (an
 * OpenCL sub-buffer). The offset in bytes must be a multiple of the device's
 * base-address alignment: kdcl_align_elems() gives that unit. Free the view
 * with kdcl_tensor_free before its parent. */
KDCL_API kdcl_status kdcl_tensor_view(kdcl_ctx *ctx, const kdcl_tensor *parent, size_t offset,
                             size_t ndim, const size_t *shape, kdcl_tensor *view);
/* Sub-buffer offset alignment of the device, in elements of `type`. */
KDCL_API size_t kdcl_align_elems(const kdcl_ctx *ctx, kdcl_elem type);

/* Change the shape in place; the new size must fit the capacity. */
KDCL_API kdcl_status kdcl_tensor_reshape(kdcl_tensor *t, size_t ndim, const size_t *shape);

/* Blocking copies of n elements starting at element `offset`. */
KDCL_API kdcl_status kdcl_tensor_upload(kdcl_ctx *ctx, kdcl_tensor *t, size_t offset, size_t n,
                               const void *host);
KDCL_API kdcl_status kdcl_tensor_download(kdcl_ctx *ctx, const kdcl_tensor *t, size_t offset, size_t n,
                                 void *host);
/* Set every element of a F32 tensor to `value` (clEnqueueFillBuffer). */
KDCL_API kdcl_status kdcl_tensor_fill(kdcl_ctx *ctx, kdcl_tensor *t, float value);

/* Device memory accounting of a context: buffers created, bytes live, peak bytes. */
typedef struct kdcl_mem_stats {
    uint64_t allocations;
    uint64_t live_bytes;
    uint64_t peak_bytes;
} kdcl_mem_stats;
KDCL_API kdcl_mem_stats kdcl_ctx_mem_stats(const kdcl_ctx *ctx);

/* A pool owns tensors created through it and frees them together. */
typedef struct kdcl_pool {
    kdcl_ctx *ctx;
    kdcl_tensor **items;
    size_t n, cap;
} kdcl_pool;

KDCL_API void kdcl_pool_init(kdcl_pool *p, kdcl_ctx *ctx);
/* Allocate a tensor owned by the pool; *out stays valid until kdcl_pool_free. */
KDCL_API kdcl_status kdcl_pool_alloc(kdcl_pool *p, kdcl_tensor **out, kdcl_elem type, size_t ndim,
                            const size_t *shape);
KDCL_API kdcl_status kdcl_pool_alloc2(kdcl_pool *p, kdcl_tensor **out, kdcl_elem type, size_t rows,
                             size_t cols);
KDCL_API void kdcl_pool_free(kdcl_pool *p);

#ifdef __cplusplus
}
#endif
#endif
