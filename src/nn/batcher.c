/* Batches for training and evaluation (see kdcl_batcher in kdcl/train.h). */
#include <stdlib.h>
#include <string.h>

#include "nn/batcher_internal.h"
#include "kdcl/profile.h"
#include "runtime/ctx.h"

void kdcl__batcher_release(kdcl_batcher *b)
{
    if (!b->ctx) return;
    for (int i = 0; i < 2; i++) {
        if (b->pending[i]) {
            clWaitForEvents(1, &b->pending[i]);
            clReleaseEvent(b->pending[i]);
        }
        kdcl_tensor_free(b->ctx, &b->batch_u8[i]);
        kdcl_tensor_free(b->ctx, &b->batch_labels[i]);
        free(b->stage[i]);
        free(b->stage_labels[i]);
    }
    kdcl_tensor_free(b->ctx, &b->images);
    kdcl_tensor_free(b->ctx, &b->labels);
    kdcl_tensor_free(b->ctx, &b->perm);
    free(b->order);
    memset(b, 0, sizeof *b);
}

kdcl_status kdcl__batcher_init(kdcl_ctx *ctx, const kdcl_dataset *ds, size_t max_batch,
                               kdcl_batcher *b)
{
    memset(b, 0, sizeof *b);
    if (ds->n == 0) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "the dataset is empty");
    if (max_batch == 0) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "batch size must be >= 1");
    if (ds->n > 0x7fffffff)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "datasets above 2^31 examples unsupported");
    if (max_batch > ds->n) max_batch = ds->n;
    b->ctx = ctx;
    b->ds = ds;
    b->max_batch = max_batch;
    kdcl_status s;
    b->order = malloc(ds->n * sizeof *b->order);
    if (!b->order) {
        kdcl__batcher_release(b);
        return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    }
    for (size_t i = 0; i < ds->n; i++) b->order[i] = i;
    b->n_order = b->order_cap = ds->n;
    const kdcl_device_info *d = kdcl_ctx_device(ctx);
    /* the whole set on the device when each of its buffers fits (images,
     * labels, permutation: max_alloc) and all take at most a quarter of the
     * device's memory; else batches are streamed from the host */
    size_t bytes = ds->n * ds->dim, ibytes = ds->n * sizeof(int32_t);
    b->resident = bytes <= d->max_alloc && ibytes <= d->max_alloc &&
                  bytes + 2 * ibytes <= d->global_mem / 4 &&
                  !(getenv("KDCL_NO_RESIDENT") && *getenv("KDCL_NO_RESIDENT") == '1');
    if (b->resident) {
        size_t sh[2] = {ds->n, ds->dim}, n1[1] = {ds->n};
        if ((s = kdcl_tensor_alloc(ctx, &b->images, KDCL_U8, 2, sh)) ||
            (s = kdcl_tensor_alloc(ctx, &b->labels, KDCL_I32, 1, n1)) ||
            (s = kdcl_tensor_alloc(ctx, &b->perm, KDCL_I32, 1, n1)) ||
            (s = kdcl_tensor_upload(ctx, &b->images, 0, bytes, ds->images)) ||
            (s = kdcl_tensor_upload(ctx, &b->labels, 0, ds->n, ds->labels))) {
            /* device memory too tight: fall back to streaming */
            kdcl_tensor_free(ctx, &b->images);
            kdcl_tensor_free(ctx, &b->labels);
            kdcl_tensor_free(ctx, &b->perm);
            b->resident = 0;
        }
    }
    for (int i = 0; i < 2; i++) {
        size_t sh[2] = {max_batch, ds->dim}, n1[1] = {max_batch};
        if ((s = kdcl_tensor_alloc(ctx, &b->batch_u8[i], KDCL_U8, 2, sh)) ||
            (s = kdcl_tensor_alloc(ctx, &b->batch_labels[i], KDCL_I32, 1, n1))) {
            kdcl__batcher_release(b);
            return s;
        }
        if (!b->resident) {
            b->stage[i] = malloc(max_batch * ds->dim);
            b->stage_labels[i] = malloc(max_batch * sizeof(int32_t));
            if (!b->stage[i] || !b->stage_labels[i]) {
                kdcl__batcher_release(b);
                return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
            }
        }
    }
    return kdcl_batcher_epoch(b, 0, 0, 0);
}

/* Upload order[0..n_order) as the device permutation (resident data). */
static kdcl_status upload_perm(kdcl_batcher *b)
{
    const size_t n = b->n_order;
    if (!b->resident) return KDCL_OK;
    int32_t *p = malloc(n * sizeof *p);
    if (!p) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    for (size_t i = 0; i < n; i++) p[i] = (int32_t)b->order[i];
    kdcl_status s = kdcl_tensor_upload(b->ctx, &b->perm, 0, n, p);
    free(p);
    return s;
}

kdcl_status kdcl_batcher_epoch(kdcl_batcher *b, int shuffle, uint64_t seed, uint64_t epoch)
{
    size_t n = b->ds->n;
    b->n_order = n;
    if (shuffle)
        kdcl_shuffle_indices(b->order, n, seed, epoch);
    else
        for (size_t i = 0; i < n; i++) b->order[i] = i;
    return upload_perm(b);
}

kdcl_status kdcl_batcher_set_order(kdcl_batcher *b, const size_t *order, size_t n)
{
    if (n == 0) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "an epoch needs at least one example");
    if (n > 0x7fffffff)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "epochs above 2^31 examples unsupported");
    for (size_t i = 0; i < n; i++)
        if (order[i] >= b->ds->n)
            return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                  "sampled example %zu is outside the %zu of the dataset",
                                  order[i], b->ds->n);
    if (n > b->order_cap) {
        size_t *o = realloc(b->order, n * sizeof *o);
        if (!o) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        b->order = o;
        if (b->resident) {
            kdcl_tensor_free(b->ctx, &b->perm);
            size_t n1[1] = {n};
            kdcl_status s = kdcl_tensor_alloc(b->ctx, &b->perm, KDCL_I32, 1, n1);
            if (s) return s;
        }
        b->order_cap = n;
    }
    memcpy(b->order, order, n * sizeof *order);
    b->n_order = n;
    return upload_perm(b);
}

kdcl_status kdcl_batcher_load(kdcl_batcher *b, size_t start, size_t count)
{
    const kdcl_dataset *ds = b->ds;
    if (count == 0 || count > b->max_batch || start > b->n_order || count > b->n_order - start)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "batch [%zu, %zu) outside 1..%zu rows of %zu",
                              start, start + count, b->max_batch, b->n_order);
    int i = b->cur ^ 1;
    b->cur = i;
    size_t sh[2] = {count, ds->dim}, n1[1] = {count};
    kdcl_status s;
    if ((s = kdcl_tensor_reshape(&b->batch_u8[i], 2, sh)) ||
        (s = kdcl_tensor_reshape(&b->batch_labels[i], 1, n1)))
        return s;
    cl_command_queue q = kdcl_ctx_queue(b->ctx);
    if (b->resident) {
        cl_kernel k;
        if ((s = kdcl_kernel_get(b->ctx, "batch", "gather_rows_u8", &k))) return s;
        cl_uint st = (cl_uint)start, dim = (cl_uint)ds->dim, rows = (cl_uint)count;
        clSetKernelArg(k, 0, sizeof(cl_mem), &b->images.buf);
        clSetKernelArg(k, 1, sizeof(cl_mem), &b->perm.buf);
        clSetKernelArg(k, 2, sizeof st, &st);
        clSetKernelArg(k, 3, sizeof dim, &dim);
        clSetKernelArg(k, 4, sizeof rows, &rows);
        clSetKernelArg(k, 5, sizeof(cl_mem), &b->batch_u8[i].buf);
        size_t g = count * ((ds->dim + 15) / 16);
        KDCL_CL_CHECK(clEnqueueNDRangeKernel(q, k, 1, NULL, &g, NULL, 0, NULL, NULL),
                      "clEnqueueNDRangeKernel(gather_rows_u8)");
        {
            kdcl_status ps_ = kdcl_prof_op(b->ctx, "gather_rows_u8");
            if (ps_) return ps_;
        }
        if ((s = kdcl_kernel_get(b->ctx, "batch", "gather_i32", &k))) return s;
        clSetKernelArg(k, 0, sizeof(cl_mem), &b->labels.buf);
        clSetKernelArg(k, 1, sizeof(cl_mem), &b->perm.buf);
        clSetKernelArg(k, 2, sizeof st, &st);
        clSetKernelArg(k, 3, sizeof rows, &rows);
        clSetKernelArg(k, 4, sizeof(cl_mem), &b->batch_labels[i].buf);
        g = count;
        KDCL_CL_CHECK(clEnqueueNDRangeKernel(q, k, 1, NULL, &g, NULL, 0, NULL, NULL),
                      "clEnqueueNDRangeKernel(gather_i32)");
        {
            kdcl_status ps_ = kdcl_prof_op(b->ctx, "gather_i32");
            if (ps_) return ps_;
        }
        return KDCL_OK;
    }
    /* streaming: wait until this staging buffer's previous upload is done,
     * gather on the host (overlapping the device's work on the other one),
     * then upload without blocking */
    if (b->pending[i]) {
        KDCL_CL_CHECK(clWaitForEvents(1, &b->pending[i]), "clWaitForEvents (batch upload)");
        clReleaseEvent(b->pending[i]);
        b->pending[i] = NULL;
    }
    for (size_t r = 0; r < count; r++) {
        size_t e = b->order[start + r];
        memcpy(b->stage[i] + r * ds->dim, ds->images + e * ds->dim, ds->dim);
        b->stage_labels[i][r] = ds->labels[e];
    }
    KDCL_CL_CHECK(clEnqueueWriteBuffer(q, b->batch_labels[i].buf, CL_FALSE, 0,
                                       count * sizeof(int32_t), b->stage_labels[i], 0, NULL, NULL),
                  "clEnqueueWriteBuffer (batch labels)");
    KDCL_CL_CHECK(clEnqueueWriteBuffer(q, b->batch_u8[i].buf, CL_FALSE, 0, count * ds->dim,
                                       b->stage[i], 0, NULL, &b->pending[i]),
                  "clEnqueueWriteBuffer (batch images)");
    return kdcl_prof_op(b->ctx, "upload batch");
}

kdcl_status kdcl_batcher_create(kdcl_ctx *ctx, const kdcl_dataset *ds, size_t max_batch,
                                kdcl_batcher **out)
{
    if (!out) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_batcher_create: out is NULL");
    *out = NULL;
    if (!ctx || !ds)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_batcher_create: no context or data");
    kdcl_batcher *b = calloc(1, sizeof *b);
    if (!b) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    kdcl_status s = kdcl__batcher_init(ctx, ds, max_batch, b);
    if (s) {
        free(b);
        return s;
    }
    *out = b;
    return KDCL_OK;
}

void kdcl_batcher_destroy(kdcl_batcher *b)
{
    if (!b) return;
    kdcl__batcher_release(b);
    free(b);
}

const kdcl_tensor *kdcl_batcher_images(const kdcl_batcher *b) { return &b->batch_u8[b->cur]; }
const kdcl_tensor *kdcl_batcher_labels(const kdcl_batcher *b) { return &b->batch_labels[b->cur]; }
int kdcl_batcher_resident(const kdcl_batcher *b) { return b && b->resident; }
