#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdcl/tensor.h"
#include "kdcl/profile.h"
#include "runtime/ctx.h"

size_t kdcl_elem_size(kdcl_elem t)
{
    switch (t) {
    case KDCL_F32: return 4;
    case KDCL_I32: return 4;
    case KDCL_U8: return 1;
    }
    return 0;
}

static kdcl_status shape_numel(size_t ndim, const size_t *shape, size_t *numel)
{
    if (ndim < 1 || ndim > KDCL_MAX_DIMS)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "tensor rank %zu out of range 1..%d", ndim,
                              KDCL_MAX_DIMS);
    size_t n = 1;
    for (size_t i = 0; i < ndim; i++) {
        if (shape[i] == 0)
            return kdcl_set_error(KDCL_ERR_INVALID_ARG, "tensor dimension %zu is zero", i);
        if (__builtin_mul_overflow(n, shape[i], &n))
            return kdcl_set_error(KDCL_ERR_OVERFLOW, "tensor shape overflows size_t");
    }
    *numel = n;
    return KDCL_OK;
}

/* "[128, 784]" for messages. */
static const char *shape_str(char *buf, size_t ndim, const size_t *shape)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < ndim && i < KDCL_MAX_DIMS; i++)
        off += (size_t)snprintf(buf + off, 32, "%s%zu", i ? ", " : "[", shape[i]);
    snprintf(buf + off, 2, "]");
    return buf;
}

kdcl_status kdcl_tensor_alloc(kdcl_ctx *ctx, kdcl_tensor *t, kdcl_elem type, size_t ndim,
                              const size_t *shape)
{
    memset(t, 0, sizeof *t);
    size_t numel = 0, bytes = 0;
    kdcl_status s = shape_numel(ndim, shape, &numel);
    if (s) return s;
    char sh[32 * KDCL_MAX_DIMS + 2];
    size_t es = kdcl_elem_size(type);
    if (!es) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "unknown tensor element type %d", type);
    if (__builtin_mul_overflow(numel, es, &bytes))
        return kdcl_set_error(KDCL_ERR_OVERFLOW, "tensor byte size overflows size_t");
    if (ctx->dev.max_alloc && bytes > ctx->dev.max_alloc)
        return kdcl_set_error(KDCL_ERR_OOM,
                              "a tensor of %zu bytes (shape %s) exceeds the largest buffer %s "
                              "allows (%s %llu bytes; global memory %llu bytes, %llu in use)",
                              bytes, shape_str(sh, ndim, shape), ctx->dev.name,
                              ctx->dev.max_alloc_capped ? "KDCL_MAX_ALLOC"
                                                        : "CL_DEVICE_MAX_MEM_ALLOC_SIZE",
                              (unsigned long long)ctx->dev.max_alloc,
                              (unsigned long long)ctx->dev.global_mem,
                              (unsigned long long)ctx->mem_live);
    cl_int e;
    t->buf = clCreateBuffer(ctx->cl, CL_MEM_READ_WRITE, bytes, NULL, &e);
    if (e != CL_SUCCESS) {
        t->buf = NULL;
        return kdcl_set_error(e == CL_MEM_OBJECT_ALLOCATION_FAILURE || e == CL_OUT_OF_HOST_MEMORY ||
                                      e == CL_INVALID_BUFFER_SIZE || e == CL_OUT_OF_RESOURCES
                                  ? KDCL_ERR_OOM
                                  : KDCL_ERR_OPENCL,
                              "allocating %zu bytes (shape %s) on %s failed: %s (%llu bytes "
                              "already in use; global memory %llu bytes, largest buffer %llu)",
                              bytes, shape_str(sh, ndim, shape), ctx->dev.name, kdcl_cl_error_name(e),
                              (unsigned long long)ctx->mem_live,
                              (unsigned long long)ctx->dev.global_mem,
                              (unsigned long long)ctx->dev.max_alloc);
    }
    t->type = type;
    t->ndim = ndim;
    memcpy(t->shape, shape, ndim * sizeof *shape);
    t->numel = t->capacity = numel;
    ctx->mem_allocs++;
    ctx->mem_live += bytes;
    if (ctx->mem_live > ctx->mem_peak) ctx->mem_peak = ctx->mem_live;
    return KDCL_OK;
}

kdcl_status kdcl_tensor_alloc2(kdcl_ctx *ctx, kdcl_tensor *t, kdcl_elem type, size_t rows,
                               size_t cols)
{
    size_t shape[2] = {rows, cols};
    return kdcl_tensor_alloc(ctx, t, type, 2, shape);
}

void kdcl_tensor_free(kdcl_ctx *ctx, kdcl_tensor *t)
{
    if (!t) return;
    if (t->buf) {
        clReleaseMemObject(t->buf);
        if (ctx && !t->is_view) ctx->mem_live -= (uint64_t)t->capacity * kdcl_elem_size(t->type);
    }
    memset(t, 0, sizeof *t);
}

size_t kdcl_align_elems(const kdcl_ctx *ctx, kdcl_elem type)
{
    cl_uint bits = 0;
    if (clGetDeviceInfo(ctx->dev.device, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof bits, &bits, NULL) !=
            CL_SUCCESS ||
        bits < 8)
        bits = 4096; /* the largest seen in practice (NVIDIA) */
    size_t bytes = bits / 8, es = kdcl_elem_size(type);
    return bytes >= es ? bytes / es : 1;
}

kdcl_status kdcl_tensor_view(kdcl_ctx *ctx, const kdcl_tensor *parent, size_t offset,
                             size_t ndim, const size_t *shape, kdcl_tensor *view)
{
    memset(view, 0, sizeof *view);
    size_t numel = 0;
    kdcl_status s = shape_numel(ndim, shape, &numel);
    if (s) return s;
    if (!parent->buf) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "view of an unallocated tensor");
    if (offset > parent->capacity || numel > parent->capacity - offset)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "view [%zu, %zu) outside its parent's %zu elements", offset,
                              offset + numel, parent->capacity);
    size_t align = kdcl_align_elems(ctx, parent->type);
    if (offset % align)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "view offset %zu is not a multiple of the device alignment (%zu "
                              "elements)",
                              offset, align);
    size_t es = kdcl_elem_size(parent->type);
    cl_buffer_region r = {offset * es, numel * es};
    cl_int e;
    view->buf = clCreateSubBuffer(parent->buf, CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION, &r,
                                  &e);
    if (e != CL_SUCCESS) {
        view->buf = NULL;
        return kdcl_cl_fail(e, "clCreateSubBuffer (tensor view)");
    }
    view->type = parent->type;
    view->ndim = ndim;
    memcpy(view->shape, shape, ndim * sizeof *shape);
    view->numel = view->capacity = numel;
    view->is_view = 1;
    return KDCL_OK;
}

kdcl_status kdcl_tensor_reshape(kdcl_tensor *t, size_t ndim, const size_t *shape)
{
    size_t numel = 0;
    kdcl_status s = shape_numel(ndim, shape, &numel);
    if (s) return s;
    if (numel > t->capacity)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "reshape to %zu elements exceeds the tensor's capacity of %zu", numel,
                              t->capacity);
    t->ndim = ndim;
    memcpy(t->shape, shape, ndim * sizeof *shape);
    t->numel = numel;
    return KDCL_OK;
}

static kdcl_status check_range(const kdcl_tensor *t, size_t offset, size_t n, const char *what)
{
    if (!t->buf) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: tensor not allocated", what);
    if (offset > t->capacity || n > t->capacity - offset)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "%s: elements [%zu, %zu) outside the tensor's %zu", what, offset,
                              offset + n, t->capacity);
    return KDCL_OK;
}

kdcl_status kdcl_tensor_upload(kdcl_ctx *ctx, kdcl_tensor *t, size_t offset, size_t n,
                               const void *host)
{
    kdcl_status s = check_range(t, offset, n, "upload");
    if (s || n == 0) return s;
    size_t es = kdcl_elem_size(t->type);
    KDCL_CL_CHECK(clEnqueueWriteBuffer(ctx->queue, t->buf, CL_TRUE, offset * es, n * es, host, 0,
                                       NULL, NULL),
                  "clEnqueueWriteBuffer (tensor upload)");
    return KDCL_OK;
}

kdcl_status kdcl_tensor_download(kdcl_ctx *ctx, const kdcl_tensor *t, size_t offset, size_t n,
                                 void *host)
{
    kdcl_status s = check_range(t, offset, n, "download");
    if (s || n == 0) return s;
    size_t es = kdcl_elem_size(t->type);
    KDCL_CL_CHECK(clEnqueueReadBuffer(ctx->queue, t->buf, CL_TRUE, offset * es, n * es, host, 0,
                                      NULL, NULL),
                  "clEnqueueReadBuffer (tensor download)");
    return KDCL_OK;
}

kdcl_status kdcl_tensor_fill(kdcl_ctx *ctx, kdcl_tensor *t, float value)
{
    if (t->type != KDCL_F32)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_tensor_fill needs a F32 tensor");
    kdcl_status s = check_range(t, 0, t->capacity, "fill");
    if (s) return s;
    KDCL_CL_CHECK(clEnqueueFillBuffer(ctx->queue, t->buf, &value, sizeof value, 0,
                                      t->capacity * sizeof(float), 0, NULL, NULL),
                  "clEnqueueFillBuffer");
    return kdcl_prof_op(ctx, "fill");
}

kdcl_mem_stats kdcl_ctx_mem_stats(const kdcl_ctx *ctx)
{
    kdcl_mem_stats m = {ctx->mem_allocs, ctx->mem_live, ctx->mem_peak};
    return m;
}

void kdcl_pool_init(kdcl_pool *p, kdcl_ctx *ctx)
{
    memset(p, 0, sizeof *p);
    p->ctx = ctx;
}

kdcl_status kdcl_pool_alloc(kdcl_pool *p, kdcl_tensor **out, kdcl_elem type, size_t ndim,
                            const size_t *shape)
{
    *out = NULL;
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 32;
        kdcl_tensor **g = realloc(p->items, cap * sizeof *g);
        if (!g) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        p->items = g;
        p->cap = cap;
    }
    kdcl_tensor *t = calloc(1, sizeof *t);
    if (!t) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    kdcl_status s = kdcl_tensor_alloc(p->ctx, t, type, ndim, shape);
    if (s) {
        free(t);
        return s;
    }
    p->items[p->n++] = t;
    *out = t;
    return KDCL_OK;
}

kdcl_status kdcl_pool_alloc2(kdcl_pool *p, kdcl_tensor **out, kdcl_elem type, size_t rows,
                             size_t cols)
{
    size_t shape[2] = {rows, cols};
    return kdcl_pool_alloc(p, out, type, 2, shape);
}

void kdcl_pool_free(kdcl_pool *p)
{
    for (size_t i = 0; i < p->n; i++) {
        kdcl_tensor_free(p->ctx, p->items[i]);
        free(p->items[i]);
    }
    free(p->items);
    kdcl_ctx *ctx = p->ctx;
    memset(p, 0, sizeof *p);
    p->ctx = ctx;
}
