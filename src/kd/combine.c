/* The KL combination of a generalist with its specialists (Hinton, Vinyals &
 * Dean 2015, section 5): host side of cl/specialists.cl (kernel "combine",
 * one work-group per example; the math is described there).
 *
 * Device state: member (U8 [M, K]), the class lists, the block offsets, the
 * specialists' logits blocks and, after the last block, a [max_batch, K]
 * scratch for the constant part of the gradient (so spec_logits holds
 * blk_off[M - 1] + max_batch * (|S_{M-1}| + 1) + max_batch * K floats). Nothing
 * here waits on the queue except the uploads of kdcl_combiner_create.
 *
 * Specialists that were never put read as all-zero logits (uniform).
 *
 * Defaults: lr = 3, iters = 100, top_n = 1 (the paper's), because in a double
 * simulation of this update on synthetic rows (K = 10, 100, 1000; confident,
 * confused and wrong generalists; specialists that confirm a class or claim
 * the dustbin; clusters of confusable classes or random overlapping ones),
 * lr 3 was the largest step that never oscillated (F(w) / (1 + |A|) has
 * curvature <= 1/2, so lr < 4; at lr 4 confused 50/50 rows flipped their
 * argmax for dozens of steps, at lr 6 they ended in 2-cycles) and 100 steps
 * gave the optimum's argmax on every row with a median max_j |q_j - q*_j| of
 * 1e-4 to 8e-4 (90th percentile 1e-3 to 5e-3; 1e-3 to 2e-3 and 2e-2 to 5e-2 on
 * the random overlapping clusters), whereas 1e-4 on 90% of rows would take
 * thousands of steps: the logit of a class of probability q_j moves at a rate
 * ~ lr q_j / (1 + |A|). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdcl/specialists.h"
#include "core/ops_util.h"
#include "runtime/ctx.h"

#define PROGRAM "specialists"
#define KERNEL "combine"
#define MAX_ITERS 1000000u /* one launch runs them all: keep it bounded */

void kdcl_combine_opts_default(kdcl_combine_opts *o)
{
    o->top_n = 1;
    o->iters = 100;
    o->lr = 3.0f;
}

struct kdcl_combiner {
    kdcl_ctx *ctx;
    size_t K, M, max_batch;
    size_t *blk_off;         /* M: float offset of specialist m's logits block */
    kdcl_tensor member;      /* U8 [M, K]: class k in cluster m */
    kdcl_tensor cls, cls_off;/* I32: the cluster lists (as in kdcl_clusters) */
    kdcl_tensor blk;         /* I32 [M]: blk_off on the device */
    kdcl_tensor spec_logits; /* F32: block m is [max_batch, |S_m| + 1] row-major, then a
                              * [max_batch, K] scratch of the kernel */
    kdcl_tensor out;         /* F32 [max_batch, K]: log q of the last batch */
    kdcl_tensor active;      /* U8 [max_batch, M]: specialist m active for row b */
};

static void release(kdcl_combiner *cb)
{
    if (cb->ctx) {
        kdcl_tensor_free(cb->ctx, &cb->member);
        kdcl_tensor_free(cb->ctx, &cb->cls);
        kdcl_tensor_free(cb->ctx, &cb->cls_off);
        kdcl_tensor_free(cb->ctx, &cb->blk);
        kdcl_tensor_free(cb->ctx, &cb->spec_logits);
        kdcl_tensor_free(cb->ctx, &cb->out);
        kdcl_tensor_free(cb->ctx, &cb->active);
    }
    free(cb->blk_off);
    memset(cb, 0, sizeof *cb);
}

/* Local memory of the kernel for a work-group of lws items and M clusters. */
static size_t local_bytes(size_t lws, size_t M)
{
    return lws * 2 * sizeof(cl_float) + (M + 1) * sizeof(cl_int) + M * 3 * sizeof(cl_float);
}

static kdcl_status check_clusters(const char *op, const kdcl_clusters *c)
{
    if (!c) return kdcl_ops_bad(op, "clusters is NULL", NULL);
    /* Class indices travel through float reductions in the kernel: exact up to 2^24. */
    if (c->K < 2 || c->K > ((size_t)1 << 24))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: clusters over K = %zu classes (need 2..2^24)",
                              op, c->K);
    kdcl_status s = kdcl_clusters_check(op, c);
    if (s) return s;
    if (c->off[c->M] > INT32_MAX)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: %zu class entries (at most 2^31-1)", op,
                              c->off[c->M]);
    return KDCL_OK;
}

static kdcl_status create(kdcl_ctx *ctx, const kdcl_clusters *c, size_t max_batch,
                          kdcl_combiner *cb)
{
    const char *op = "kdcl_combiner_create";
    const size_t K = c->K, M = c->M, n_cls = c->off[M], n_off = M + 1;
    kdcl_status s;
    cb->ctx = ctx;
    cb->K = K;
    cb->M = M;
    cb->max_batch = max_batch;

    /* Block offsets (floats), then the scratch; all must fit the kernel's I32
     * offsets and the device's allocation limit (checked by the allocator). */
    if (!(cb->blk_off = malloc(M * sizeof *cb->blk_off)))
        return kdcl_set_error(KDCL_ERR_OOM, "%s: out of host memory", op);
    size_t total = 0;
    for (size_t m = 0; m < M; m++) {
        const size_t width = c->off[m + 1] - c->off[m] + 1;
        cb->blk_off[m] = total;
        if (width > (SIZE_MAX - total) / max_batch || total + max_batch * width > INT32_MAX)
            return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                  "%s: the specialists' logits of %zu rows do not fit 2^31 floats",
                                  op, max_batch);
        total += max_batch * width;
    }
    if (K > (SIZE_MAX / 4 - total) / max_batch)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: max_batch %zu x K %zu is too large", op,
                              max_batch, K);
    const size_t spec_n = total + max_batch * K;

    uint8_t *mem = calloc(M * K, 1);
    int32_t *offs = malloc((M + 1) * sizeof *offs), *blk = malloc(M * sizeof *blk);
    if (!mem || !offs || !blk) {
        free(mem);
        free(offs);
        free(blk);
        return kdcl_set_error(KDCL_ERR_OOM, "%s: out of host memory", op);
    }
    for (size_t m = 0; m < M; m++) {
        for (size_t i = c->off[m]; i < c->off[m + 1]; i++) mem[m * K + (size_t)c->cls[i]] = 1;
        offs[m] = (int32_t)c->off[m];
        blk[m] = (int32_t)cb->blk_off[m];
    }
    offs[M] = (int32_t)n_cls;
    if (!(s = kdcl_tensor_alloc2(ctx, &cb->member, KDCL_U8, M, K)) &&
        !(s = kdcl_tensor_alloc(ctx, &cb->cls, KDCL_I32, 1, &n_cls)) &&
        !(s = kdcl_tensor_alloc(ctx, &cb->cls_off, KDCL_I32, 1, &n_off)) &&
        !(s = kdcl_tensor_alloc(ctx, &cb->blk, KDCL_I32, 1, &M)) &&
        !(s = kdcl_tensor_alloc(ctx, &cb->spec_logits, KDCL_F32, 1, &spec_n)) &&
        !(s = kdcl_tensor_alloc2(ctx, &cb->out, KDCL_F32, max_batch, K)) &&
        !(s = kdcl_tensor_alloc2(ctx, &cb->active, KDCL_U8, max_batch, M)) &&
        !(s = kdcl_tensor_upload(ctx, &cb->member, 0, M * K, mem)) &&
        !(s = kdcl_tensor_upload(ctx, &cb->cls, 0, n_cls, c->cls)) &&
        !(s = kdcl_tensor_upload(ctx, &cb->cls_off, 0, M + 1, offs)) &&
        !(s = kdcl_tensor_upload(ctx, &cb->blk, 0, M, blk)))
        /* Specialists never put read as all-zero logits (uniform), not as
         * whatever the allocation held. */
        s = kdcl_tensor_fill(ctx, &cb->spec_logits, 0.0f);
    free(mem);
    free(offs);
    free(blk);
    if (s) return s;

    /* Build the kernel now so that a build error or a local-memory shortfall
     * shows at creation. */
    if (!kdcl_combine_compiler_ok(ctx->dev.platform_version))
        return kdcl_set_error(
            KDCL_ERR_BUILD,
            "%s: the OpenCL platform '%s' cannot compile the combination kernel: PoCL 5.0's "
            "work-group compiler aborts on its barrier loop (pocl issue 1435, a regression of "
            "5.0). Use another PoCL version (3.x, 6.x) or another OpenCL device",
            op, ctx->dev.platform_version);
    cl_kernel k;
    size_t lws = 1;
    if ((s = kdcl_kernel_get(ctx, PROGRAM, KERNEL, &k))) return s;
    if ((s = kdcl_ops_row_group_size(ctx, k, KERNEL, K, &lws))) return s;
    if (ctx->dev.local_mem && local_bytes(lws, M) > ctx->dev.local_mem)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "%s: M = %zu clusters need %zu bytes of local memory (device has %llu)",
                              op, M, local_bytes(lws, M), (unsigned long long)ctx->dev.local_mem);
    return KDCL_OK;
}

int kdcl_combine_compiler_ok(const char *platform_version)
{
    /* "OpenCL 3.0 PoCL 5.0+debian  Linux, ..." (Ubuntu 24.04's PoCL): its kernel
     * compiler aborts the process (an assertion in parallel-region formation)
     * the first time the kernel is enqueued, and with POCL_WORK_GROUP_METHOD=cbs
     * it computes NaN; 3.1 and NVIDIA's OpenCL run it correctly. */
    const char *p = platform_version ? strstr(platform_version, "PoCL 5.0") : NULL;
    return !(p && (p[8] == '\0' || p[8] == '+' || p[8] == ' ' || p[8] == '-'));
}

kdcl_status kdcl_combiner_create(kdcl_ctx *ctx, const kdcl_clusters *c, size_t max_batch,
                                 kdcl_combiner **out)
{
    const char *op = "kdcl_combiner_create";
    if (!out) return kdcl_ops_bad(op, "out is NULL", NULL);
    *out = NULL;
    if (!ctx) return kdcl_ops_bad(op, "ctx is NULL", NULL);
    kdcl_status s = check_clusters(op, c);
    if (s) return s;
    if (max_batch < 1 || max_batch > UINT32_MAX)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: max_batch = %zu (need 1..2^32-1)", op,
                              max_batch);
    kdcl_combiner *cb = calloc(1, sizeof *cb);
    if (!cb) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    if ((s = create(ctx, c, max_batch, cb))) {
        kdcl_combiner_destroy(cb);
        return s;
    }
    *out = cb;
    return KDCL_OK;
}

void kdcl_combiner_destroy(kdcl_combiner *cb)
{
    if (!cb) return;
    release(cb);
    free(cb);
}

const kdcl_tensor *kdcl_combiner_output(const kdcl_combiner *cb) { return cb ? &cb->out : NULL; }
const kdcl_tensor *kdcl_combiner_active(const kdcl_combiner *cb)
{
    return cb ? &cb->active : NULL;
}

static kdcl_status check_combiner(const char *op, const kdcl_combiner *cb)
{
    if (!cb || !cb->ctx || !cb->blk_off || !cb->member.buf || !cb->spec_logits.buf ||
        !cb->out.buf || !cb->active.buf)
        return kdcl_ops_bad(op, "combiner is NULL or not created", NULL);
    return KDCL_OK;
}

kdcl_status kdcl_combiner_put(kdcl_combiner *cb, size_t m, const kdcl_tensor *logits,
                              size_t rows)
{
    const char *op = "kdcl_combiner_put";
    char msg[160];
    size_t B = 0, W = 0;
    kdcl_status s = check_combiner(op, cb);
    if (s) return s;
    if (m >= cb->M)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: specialist m = %zu (the combiner has M = %zu)",
                              op, m, cb->M);
    const size_t width = (m + 1 < cb->M ? cb->blk_off[m + 1] : cb->spec_logits.numel -
                          cb->max_batch * cb->K) - cb->blk_off[m];
    const size_t ns1 = width / cb->max_batch; /* |S_m| + 1 */
    if ((s = kdcl_ops_check_logits(op, "logits", logits, 0, &B, &W))) return s;
    if (W != ns1) {
        snprintf(msg, sizeof msg, "specialist %zu's logits must have %zu columns (|S_m| + 1)", m,
                 ns1);
        return kdcl_ops_bad(op, msg, logits);
    }
    if (rows < 1 || rows > cb->max_batch || rows > B) {
        snprintf(msg, sizeof msg, "rows = %zu must be in 1..min(max_batch = %zu, logits rows)",
                 rows, cb->max_batch);
        return kdcl_ops_bad(op, msg, logits);
    }
    const cl_int e = clEnqueueCopyBuffer(cb->ctx->queue, logits->buf, cb->spec_logits.buf, 0,
                                         cb->blk_off[m] * sizeof(cl_float),
                                         rows * ns1 * sizeof(cl_float), 0, NULL, NULL);
    if (e != CL_SUCCESS) return kdcl_cl_fail(e, "clEnqueueCopyBuffer(kdcl_combiner_put)");
    return KDCL_OK;
}

kdcl_status kdcl_combine(kdcl_combiner *cb, const kdcl_tensor *gen_logits, size_t rows,
                         const kdcl_combine_opts *o)
{
    const char *op = "kdcl_combine";
    char msg[160];
    size_t B = 0, K = 0;
    kdcl_status s = check_combiner(op, cb);
    if (s) return s;
    if (!o) return kdcl_ops_bad(op, "opts is NULL", NULL);
    if ((s = kdcl_ops_check_logits(op, "gen_logits", gen_logits, 0, &B, &K))) return s;
    if (K != cb->K) {
        snprintf(msg, sizeof msg, "gen_logits must have K = %zu columns", cb->K);
        return kdcl_ops_bad(op, msg, gen_logits);
    }
    if (rows < 1 || rows > cb->max_batch || rows > B) {
        snprintf(msg, sizeof msg, "rows = %zu must be in 1..min(max_batch = %zu, gen_logits rows)",
                 rows, cb->max_batch);
        return kdcl_ops_bad(op, msg, gen_logits);
    }
    if (o->top_n < 1 || o->top_n > K)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: top_n = %zu must be in 1..K = %zu", op,
                              o->top_n, K);
    if (o->iters < 1 || o->iters > MAX_ITERS)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: iters = %zu must be in 1..%u", op,
                              o->iters, MAX_ITERS);
    if (!(o->lr > 0.0f) || !isfinite(o->lr))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: lr = %g must be finite and > 0", op,
                              (double)o->lr);

    kdcl_ctx *ctx = cb->ctx;
    cl_kernel k;
    size_t lws = 1;
    if ((s = kdcl_kernel_get(ctx, PROGRAM, KERNEL, &k))) return s;
    if ((s = kdcl_ops_row_group_size(ctx, k, KERNEL, K, &lws))) return s;
    const cl_ulong tgt_off = (cl_ulong)(cb->spec_logits.numel - cb->max_batch * cb->K);
    const cl_uint k32 = (cl_uint)K, m32 = (cl_uint)cb->M, top32 = (cl_uint)o->top_n,
                  it32 = (cl_uint)o->iters;
    const float lr = o->lr;
    const size_t M = cb->M;
    cl_uint a = 0;
    ARG(k, a++, gen_logits->buf, KERNEL);
    ARG(k, a++, cb->spec_logits.buf, KERNEL);
    ARG(k, a++, tgt_off, KERNEL);
    ARG(k, a++, cb->member.buf, KERNEL);
    ARG(k, a++, cb->cls.buf, KERNEL);
    ARG(k, a++, cb->cls_off.buf, KERNEL);
    ARG(k, a++, cb->blk.buf, KERNEL);
    ARG(k, a++, cb->out.buf, KERNEL);
    ARG(k, a++, cb->active.buf, KERNEL);
    ARG(k, a++, k32, KERNEL);
    ARG(k, a++, m32, KERNEL);
    ARG(k, a++, top32, KERNEL);
    ARG(k, a++, it32, KERNEL);
    ARG(k, a++, lr, KERNEL);
    LOCAL_ARG(k, a++, lws * sizeof(cl_float), KERNEL);
    LOCAL_ARG(k, a++, lws * sizeof(cl_float), KERNEL);
    LOCAL_ARG(k, a++, (M + 1) * sizeof(cl_int), KERNEL);
    LOCAL_ARG(k, a++, M * sizeof(cl_float), KERNEL);
    LOCAL_ARG(k, a++, M * sizeof(cl_float), KERNEL);
    LOCAL_ARG(k, a++, M * sizeof(cl_float), KERNEL);
    return kdcl_ops_launch(ctx, k, KERNEL, rows * lws, lws);
}
