/* Host wrappers of cl/softmax.cl: validation, work-group size choice, launch.
 * Nothing here waits on the queue. */
#include <limits.h>
#include <math.h>
#include <stdio.h>

#include "kdcl/loss.h"
#include "runtime/ctx.h"

#define PROGRAM "softmax"
#define WG_CAP 256 /* largest work-group we use for a row */

/* Flags of the xent kernels (keep in sync with cl/softmax.cl). */
#define XENT_LOSS 1
#define XENT_DZ 2
#define XENT_ERR 4

static const char *type_name(kdcl_elem t)
{
    switch (t) {
    case KDCL_F32: return "F32";
    case KDCL_I32: return "I32";
    case KDCL_U8: return "U8";
    }
    return "?";
}

/* "[128, 10] F32" into buf. */
static const char *shape_str(const kdcl_tensor *t, char *buf, size_t size)
{
    int w = snprintf(buf, size, "[");
    for (size_t i = 0; i < t->ndim && i < KDCL_MAX_DIMS && w > 0 && (size_t)w < size; i++)
        w += snprintf(buf + w, size - (size_t)w, "%s%zu", i ? ", " : "", t->shape[i]);
    if (w > 0 && (size_t)w < size) snprintf(buf + w, size - (size_t)w, "] %s", type_name(t->type));
    return buf;
}

static kdcl_status bad(const char *op, const char *what, const kdcl_tensor *t)
{
    char sb[96];
    if (!t) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: %s", op, what);
    return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: %s (got %s)", op, what,
                          shape_str(t, sb, sizeof sb));
}

/* Basic tensor sanity: present, has a buffer, the given type. */
static kdcl_status check_tensor(const char *op, const char *name, const kdcl_tensor *t,
                                kdcl_elem type)
{
    char msg[96];
    if (!t || !t->buf) {
        snprintf(msg, sizeof msg, "%s is NULL or has no buffer", name);
        return bad(op, msg, NULL);
    }
    if (t->ndim < 1 || t->ndim > KDCL_MAX_DIMS || t->numel == 0) {
        snprintf(msg, sizeof msg, "%s has an invalid shape", name);
        return bad(op, msg, t);
    }
    if (t->type != type) {
        snprintf(msg, sizeof msg, "%s must be %s", name, type_name(type));
        return bad(op, msg, t);
    }
    return KDCL_OK;
}

/* Logits: F32, rank >= 2, B = shape[0], K = numel / B < 2^31. */
static kdcl_status check_logits(const char *op, const kdcl_tensor *z, size_t *B, size_t *K)
{
    kdcl_status s = check_tensor(op, "z", z, KDCL_F32);
    if (s) return s;
    if (z->ndim < 2) return bad(op, "z must have rank >= 2 ([B, K])", z);
    *B = z->shape[0];
    *K = z->numel / *B;
    if (*K > INT_MAX || *B > UINT_MAX) return bad(op, "z is too large (K < 2^31, B < 2^32)", z);
    return KDCL_OK;
}

/* A per-row tensor of the given type with numel == B. */
static kdcl_status check_rows(const char *op, const char *name, const kdcl_tensor *t,
                              kdcl_elem type, size_t B)
{
    kdcl_status s = check_tensor(op, name, t, type);
    if (s) return s;
    if (t->numel != B) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s must have %zu elements (one per row of z)", name, B);
        return bad(op, msg, t);
    }
    return KDCL_OK;
}

/* Same B (shape[0]) and K as the logits. */
static kdcl_status check_like(const char *op, const char *name, const kdcl_tensor *t, size_t B,
                              size_t K)
{
    kdcl_status s = check_tensor(op, name, t, KDCL_F32);
    if (s) return s;
    if (t->shape[0] != B || t->numel != B * K) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s must be [%zu, %zu] like z", name, B, K);
        return bad(op, msg, t);
    }
    return KDCL_OK;
}

static kdcl_status get_kernel(kdcl_ctx *ctx, const char *name, cl_kernel *k)
{
    return kdcl_kernel_get(ctx, PROGRAM, name, k);
}

/* Largest work-group size usable for kernel k: min(WG_CAP, device, kernel). */
static kdcl_status wg_cap(kdcl_ctx *ctx, cl_kernel k, const char *name, size_t *cap)
{
    size_t kmax = 0;
    cl_int e = clGetKernelWorkGroupInfo(k, ctx->dev.device, CL_KERNEL_WORK_GROUP_SIZE,
                                        sizeof kmax, &kmax, NULL);
    if (e != CL_SUCCESS) {
        char what[96];
        snprintf(what, sizeof what, "clGetKernelWorkGroupInfo(%s)", name);
        return kdcl_cl_fail(e, what);
    }
    size_t c = WG_CAP;
    if (ctx->dev.max_work_group && ctx->dev.max_work_group < c) c = ctx->dev.max_work_group;
    if (kmax && kmax < c) c = kmax;
    *cap = c ? c : 1;
    return KDCL_OK;
}

/* Power of two <= min(cap, n) (at least 1): every work-item gets an element. */
static size_t pow2_at_most(size_t cap, size_t n)
{
    size_t l = 1;
    while (l * 2 <= cap && l * 2 <= n) l *= 2;
    return l;
}

static kdcl_status set_arg(cl_kernel k, cl_uint i, size_t size, const void *v, const char *name)
{
    cl_int e = clSetKernelArg(k, i, size, v);
    if (e != CL_SUCCESS) {
        char what[96];
        snprintf(what, sizeof what, "clSetKernelArg(%s, %u)", name, (unsigned)i);
        return kdcl_cl_fail(e, what);
    }
    return KDCL_OK;
}

#define ARG(k, i, v, name)                                                  \
    do {                                                                    \
        kdcl_status as_ = set_arg((k), (i), sizeof(v), &(v), (name));       \
        if (as_) return as_;                                                \
    } while (0)
#define LOCAL_ARG(k, i, bytes, name)                                        \
    do {                                                                    \
        kdcl_status as_ = set_arg((k), (i), (bytes), NULL, (name));         \
        if (as_) return as_;                                                \
    } while (0)

static kdcl_status launch(kdcl_ctx *ctx, cl_kernel k, const char *name, size_t global,
                          size_t local)
{
    cl_int e = clEnqueueNDRangeKernel(ctx->queue, k, 1, NULL, &global, local ? &local : NULL, 0,
                                      NULL, NULL);
    if (e != CL_SUCCESS) {
        char what[96];
        snprintf(what, sizeof what, "clEnqueueNDRangeKernel(%s)", name);
        return kdcl_cl_fail(e, what);
    }
    return KDCL_OK;
}

/* Row-per-work-item kernels: global = B rounded up to the group size. */
static kdcl_status launch_rows(kdcl_ctx *ctx, cl_kernel k, const char *name, size_t B)
{
    size_t cap = 1;
    kdcl_status s = wg_cap(ctx, k, name, &cap);
    if (s) return s;
    size_t local = pow2_at_most(cap < 64 ? cap : 64, B);
    size_t global = (B + local - 1) / local * local;
    return launch(ctx, k, name, global, local);
}

/* Row-per-work-group kernels: lws = power of two <= min(cap, K). */
static kdcl_status row_group_size(kdcl_ctx *ctx, cl_kernel k, const char *name, size_t K,
                                  size_t *lws)
{
    size_t cap = 1;
    kdcl_status s = wg_cap(ctx, k, name, &cap);
    if (s) return s;
    *lws = pow2_at_most(cap, K);
    return KDCL_OK;
}

kdcl_status kdcl_op_softmax(kdcl_ctx *ctx, const kdcl_tensor *z, kdcl_tensor *out, float T,
                            int log_out)
{
    const char *op = log_out ? "kdcl_op_softmax(log)" : "kdcl_op_softmax";
    size_t B = 0, K = 0;
    kdcl_status s = check_logits(op, z, &B, &K);
    if (s) return s;
    if ((s = check_like(op, "out", out, B, K))) return s;
    if (!(T > 0.0f) || !isfinite(T))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: temperature T = %g must be finite and > 0",
                              op, (double)T);
    const float invT = (float)(1.0 / (double)T);
    const cl_uint k32 = (cl_uint)K, b32 = (cl_uint)B;
    const cl_int lo = log_out ? 1 : 0;
    cl_kernel k;
    if (K <= KDCL_SOFTMAX_SMALL_K) {
        const char *name = "softmax_row1";
        if ((s = get_kernel(ctx, name, &k))) return s;
        ARG(k, 0, z->buf, name);
        ARG(k, 1, out->buf, name);
        ARG(k, 2, b32, name);
        ARG(k, 3, k32, name);
        ARG(k, 4, invT, name);
        ARG(k, 5, lo, name);
        return launch_rows(ctx, k, name, B);
    }
    const char *name = "softmax_wg";
    size_t lws = 1;
    if ((s = get_kernel(ctx, name, &k))) return s;
    if ((s = row_group_size(ctx, k, name, K, &lws))) return s;
    ARG(k, 0, z->buf, name);
    ARG(k, 1, out->buf, name);
    ARG(k, 2, k32, name);
    ARG(k, 3, invT, name);
    ARG(k, 4, lo, name);
    LOCAL_ARG(k, 5, lws * sizeof(cl_float), name);
    return launch(ctx, k, name, B * lws, lws);
}

kdcl_status kdcl_op_softmax_xent(kdcl_ctx *ctx, const kdcl_tensor *z, const kdcl_tensor *labels,
                                 kdcl_tensor *loss, kdcl_tensor *dz, float grad_scale,
                                 kdcl_tensor *errors)
{
    const char *op = "kdcl_op_softmax_xent";
    size_t B = 0, K = 0;
    kdcl_status s = check_logits(op, z, &B, &K);
    if (s) return s;
    if ((s = check_rows(op, "labels", labels, KDCL_I32, B))) return s;
    if (loss && (s = check_rows(op, "loss", loss, KDCL_F32, B))) return s;
    if (dz && (s = check_like(op, "dz", dz, B, K))) return s;
    if (errors && (s = check_tensor(op, "errors", errors, KDCL_I32))) return s;
    if (!isfinite(grad_scale))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: grad_scale = %g is not finite", op,
                              (double)grad_scale);
    const cl_int flags = (loss ? XENT_LOSS : 0) | (dz ? XENT_DZ : 0) | (errors ? XENT_ERR : 0);
    if (!flags) return KDCL_OK; /* nothing requested */
    /* Absent outputs are passed as NULL buffers (OpenCL 1.2, 5.7.2); the kernel
     * never touches them because their flag is clear. */
    const cl_mem nul = NULL;
    const cl_mem lb = loss ? loss->buf : nul, db = dz ? dz->buf : nul,
                 eb = errors ? errors->buf : nul;
    const cl_uint k32 = (cl_uint)K, b32 = (cl_uint)B;
    cl_kernel k;
    if (K <= KDCL_SOFTMAX_SMALL_K) {
        const char *name = "xent_row1";
        if ((s = get_kernel(ctx, name, &k))) return s;
        ARG(k, 0, z->buf, name);
        ARG(k, 1, labels->buf, name);
        ARG(k, 2, lb, name);
        ARG(k, 3, db, name);
        ARG(k, 4, eb, name);
        ARG(k, 5, b32, name);
        ARG(k, 6, k32, name);
        ARG(k, 7, grad_scale, name);
        ARG(k, 8, flags, name);
        return launch_rows(ctx, k, name, B);
    }
    const char *name = "xent_wg";
    size_t lws = 1;
    if ((s = get_kernel(ctx, name, &k))) return s;
    if ((s = row_group_size(ctx, k, name, K, &lws))) return s;
    ARG(k, 0, z->buf, name);
    ARG(k, 1, labels->buf, name);
    ARG(k, 2, lb, name);
    ARG(k, 3, db, name);
    ARG(k, 4, eb, name);
    ARG(k, 5, k32, name);
    ARG(k, 6, grad_scale, name);
    ARG(k, 7, flags, name);
    LOCAL_ARG(k, 8, lws * sizeof(cl_float), name);
    LOCAL_ARG(k, 9, lws * sizeof(cl_int), name);
    return launch(ctx, k, name, B * lws, lws);
}

/* argmax and confusion share their launch shape; labels/conf only for the latter. */
static kdcl_status argmax_like(kdcl_ctx *ctx, const kdcl_tensor *z, const kdcl_tensor *labels,
                               kdcl_tensor *out, size_t B, size_t K, int confusion)
{
    const cl_uint k32 = (cl_uint)K, b32 = (cl_uint)B;
    cl_kernel k;
    kdcl_status s;
    cl_uint a = 0;
    if (K <= KDCL_SOFTMAX_SMALL_K) {
        const char *name = confusion ? "confusion_row1" : "argmax_row1";
        if ((s = get_kernel(ctx, name, &k))) return s;
        ARG(k, a++, z->buf, name);
        if (confusion) ARG(k, a++, labels->buf, name);
        ARG(k, a++, out->buf, name);
        ARG(k, a++, b32, name);
        ARG(k, a++, k32, name);
        return launch_rows(ctx, k, name, B);
    }
    const char *name = confusion ? "confusion_wg" : "argmax_wg";
    size_t lws = 1;
    if ((s = get_kernel(ctx, name, &k))) return s;
    if ((s = row_group_size(ctx, k, name, K, &lws))) return s;
    ARG(k, a++, z->buf, name);
    if (confusion) ARG(k, a++, labels->buf, name);
    ARG(k, a++, out->buf, name);
    ARG(k, a++, k32, name);
    LOCAL_ARG(k, a++, lws * sizeof(cl_float), name);
    LOCAL_ARG(k, a++, lws * sizeof(cl_int), name);
    return launch(ctx, k, name, B * lws, lws);
}

kdcl_status kdcl_op_argmax(kdcl_ctx *ctx, const kdcl_tensor *z, kdcl_tensor *idx)
{
    const char *op = "kdcl_op_argmax";
    size_t B = 0, K = 0;
    kdcl_status s = check_logits(op, z, &B, &K);
    if (s) return s;
    if ((s = check_rows(op, "idx", idx, KDCL_I32, B))) return s;
    return argmax_like(ctx, z, NULL, idx, B, K, 0);
}

kdcl_status kdcl_op_confusion(kdcl_ctx *ctx, const kdcl_tensor *z, const kdcl_tensor *labels,
                              kdcl_tensor *conf)
{
    const char *op = "kdcl_op_confusion";
    size_t B = 0, K = 0;
    kdcl_status s = check_logits(op, z, &B, &K);
    if (s) return s;
    if ((s = check_rows(op, "labels", labels, KDCL_I32, B))) return s;
    if ((s = check_tensor(op, "conf", conf, KDCL_I32))) return s;
    if (K > 46340 || conf->numel != K * K) {
        char msg[128];
        snprintf(msg, sizeof msg, "conf must have K*K = %zu*%zu elements", K, K);
        return bad(op, msg, conf);
    }
    return argmax_like(ctx, z, labels, conf, B, K, 1);
}

kdcl_status kdcl_op_reduce_add(kdcl_ctx *ctx, const kdcl_tensor *x, size_t n, kdcl_tensor *acc,
                               size_t acc_index)
{
    const char *op = "kdcl_op_reduce_add";
    kdcl_status s = check_tensor(op, "x", x, KDCL_F32);
    if (s) return s;
    if ((s = check_tensor(op, "acc", acc, KDCL_F32))) return s;
    if (n > x->numel || n > UINT_MAX) {
        char msg[128];
        snprintf(msg, sizeof msg, "n = %zu exceeds the elements of x", n);
        return bad(op, msg, x);
    }
    if (acc_index >= acc->numel || acc_index > UINT_MAX) {
        char msg[128];
        snprintf(msg, sizeof msg, "acc_index = %zu is out of range", acc_index);
        return bad(op, msg, acc);
    }
    if (n == 0) return KDCL_OK;
    const char *name = "reduce_add";
    cl_kernel k;
    size_t lws = 1;
    if ((s = get_kernel(ctx, name, &k))) return s;
    if ((s = row_group_size(ctx, k, name, n, &lws))) return s;
    const cl_uint n32 = (cl_uint)n, i32 = (cl_uint)acc_index;
    ARG(k, 0, x->buf, name);
    ARG(k, 1, n32, name);
    ARG(k, 2, acc->buf, name);
    ARG(k, 3, i32, name);
    LOCAL_ARG(k, 4, lws * sizeof(cl_float), name);
    return launch(ctx, k, name, lws, lws);
}
