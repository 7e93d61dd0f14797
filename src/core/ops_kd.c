/* Host wrappers of cl/kd_loss.cl: validation, coefficients, launch. Nothing
 * here waits on the queue. The small validation/launch helpers mirror those
 * of ops_softmax.c (kept file-local there). */
#include <limits.h>
#include <math.h>
#include <stdio.h>

#include "kdcl/kd.h"
#include "kdcl/loss.h"
#include "runtime/ctx.h"

#define PROGRAM "kd_loss"
#define WG_CAP 256 /* largest work-group we use for a row */

/* Flags of the kd_loss kernels (keep in sync with cl/kd_loss.cl). */
#define KD_LOSS 1
#define KD_DZ 2
#define KD_ERR 4
#define KD_SOFT 8
#define KD_HARD 16
#define KD_TLOGITS 32
#define KD_MSE 64

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
static kdcl_status check_logits(const char *op, const char *name, const kdcl_tensor *z,
                                size_t *B, size_t *K)
{
    kdcl_status s = check_tensor(op, name, z, KDCL_F32);
    if (s) return s;
    if (z->ndim < 2) {
        char msg[96];
        snprintf(msg, sizeof msg, "%s must have rank >= 2 ([B, K])", name);
        return bad(op, msg, z);
    }
    *B = z->shape[0];
    *K = z->numel / *B;
    if (*K > INT_MAX || *B > UINT_MAX || z->numel > UINT_MAX) {
        char msg[96];
        snprintf(msg, sizeof msg, "%s is too large (K < 2^31, B*K < 2^32)", name);
        return bad(op, msg, z);
    }
    return KDCL_OK;
}

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

/* Same B (shape[0]) and K as the logits (named `like`). */
static kdcl_status check_like(const char *op, const char *name, const kdcl_tensor *t, size_t B,
                              size_t K, const char *like)
{
    kdcl_status s = check_tensor(op, name, t, KDCL_F32);
    if (s) return s;
    if (t->shape[0] != B || t->numel != B * K) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s must be [%zu, %zu] like %s", name, B, K, like);
        return bad(op, msg, t);
    }
    return KDCL_OK;
}

static kdcl_status check_T(const char *op, float T)
{
    if (!(T > 0.0f) || !isfinite(T))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: temperature T = %g must be finite and > 0",
                              op, (double)T);
    return KDCL_OK;
}

static kdcl_status check_finite(const char *op, const char *name, float v)
{
    if (!isfinite(v))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: %s = %g is not finite", op, name,
                              (double)v);
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

/* One work-item per row (or element): global = n rounded up to the group size. */
static kdcl_status launch_items(kdcl_ctx *ctx, cl_kernel k, const char *name, size_t n)
{
    size_t cap = 1;
    kdcl_status s = wg_cap(ctx, k, name, &cap);
    if (s) return s;
    size_t local = pow2_at_most(cap < 64 ? cap : 64, n);
    size_t global = (n + local - 1) / local * local;
    return launch(ctx, k, name, global, local);
}

/* One work-group per row: lws = power of two <= min(cap, K). */
static kdcl_status row_group_size(kdcl_ctx *ctx, cl_kernel k, const char *name, size_t K,
                                  size_t *lws)
{
    size_t cap = 1;
    kdcl_status s = wg_cap(ctx, k, name, &cap);
    if (s) return s;
    *lws = pow2_at_most(cap, K);
    return KDCL_OK;
}

kdcl_status kdcl_op_kd_loss(kdcl_ctx *ctx, kdcl_kd_mode mode, const kdcl_tensor *z,
                            const kdcl_tensor *targets, int targets_are_logits,
                            const kdcl_tensor *labels, float T, float alpha, kdcl_tensor *loss,
                            kdcl_tensor *dz, float grad_scale, kdcl_tensor *errors)
{
    const char *op = "kdcl_op_kd_loss";
    size_t B = 0, K = 0;
    kdcl_status s;
    if (mode != KDCL_KD_KL && mode != KDCL_KD_LOGITS)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: unknown mode %d", op, (int)mode);
    if ((s = check_logits(op, "z", z, &B, &K))) return s;
    if ((s = check_like(op, "targets", targets, B, K, "z"))) return s;
    if (mode == KDCL_KD_LOGITS && !targets_are_logits)
        return bad(op, "logit matching (KDCL_KD_LOGITS) needs teacher logits as targets "
                       "(targets_are_logits = 1), not probabilities", targets);
    if ((s = check_T(op, T))) return s;
    if (!(alpha >= 0.0f && alpha <= 1.0f))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: alpha = %g must lie in [0, 1]", op,
                              (double)alpha);
    if ((s = check_finite(op, "grad_scale", grad_scale))) return s;
    if (labels) {
        if ((s = check_rows(op, "labels", labels, KDCL_I32, B))) return s;
    } else if (alpha > 0.0f) {
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "%s: alpha = %g > 0 weights the hard-label loss but labels is NULL",
                              op, (double)alpha);
    } else if (errors) {
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: errors needs labels (labels is NULL)",
                              op);
    }
    if (loss && (s = check_rows(op, "loss", loss, KDCL_F32, B))) return s;
    if (dz && (s = check_like(op, "dz", dz, B, K, "z"))) return s;
    if (errors && (s = check_tensor(op, "errors", errors, KDCL_I32))) return s;

    const int out = (loss ? KD_LOSS : 0) | (dz ? KD_DZ : 0) | (errors ? KD_ERR : 0);
    if (!out) return KDCL_OK; /* nothing requested */
    const cl_int flags = out | (alpha < 1.0f ? KD_SOFT : 0) | (alpha > 0.0f ? KD_HARD : 0) |
                         (targets_are_logits ? KD_TLOGITS : 0) |
                         (mode == KDCL_KD_LOGITS ? KD_MSE : 0);
    /* Soft-term coefficients, rounded once from double. */
    const double a1 = 1.0 - (double)alpha, Td = (double)T;
    const float cl = (float)(mode == KDCL_KD_LOGITS ? 0.5 * a1 : a1 * Td * Td);
    const float cg = (float)(mode == KDCL_KD_LOGITS ? a1 : a1 * Td);
    const float invT = (float)(1.0 / Td);
    /* Absent buffers are passed as NULL (OpenCL 1.2, 5.7.2); the kernel never
     * touches them because their flag is clear. */
    const cl_mem nul = NULL;
    const cl_mem yb = labels ? labels->buf : nul, lb = loss ? loss->buf : nul,
                 db = dz ? dz->buf : nul, eb = errors ? errors->buf : nul;
    const cl_uint k32 = (cl_uint)K, b32 = (cl_uint)B;
    cl_kernel k;
    cl_uint a = 0;
    if (K <= KDCL_SOFTMAX_SMALL_K) {
        const char *name = "kd_loss_row1";
        if ((s = get_kernel(ctx, name, &k))) return s;
        ARG(k, a++, z->buf, name);
        ARG(k, a++, targets->buf, name);
        ARG(k, a++, yb, name);
        ARG(k, a++, lb, name);
        ARG(k, a++, db, name);
        ARG(k, a++, eb, name);
        ARG(k, a++, b32, name);
        ARG(k, a++, k32, name);
        ARG(k, a++, invT, name);
        ARG(k, a++, cl, name);
        ARG(k, a++, cg, name);
        ARG(k, a++, alpha, name);
        ARG(k, a++, grad_scale, name);
        ARG(k, a++, flags, name);
        return launch_items(ctx, k, name, B);
    }
    const char *name = "kd_loss_wg";
    size_t lws = 1;
    if ((s = get_kernel(ctx, name, &k))) return s;
    if ((s = row_group_size(ctx, k, name, K, &lws))) return s;
    ARG(k, a++, z->buf, name);
    ARG(k, a++, targets->buf, name);
    ARG(k, a++, yb, name);
    ARG(k, a++, lb, name);
    ARG(k, a++, db, name);
    ARG(k, a++, eb, name);
    ARG(k, a++, k32, name);
    ARG(k, a++, invT, name);
    ARG(k, a++, cl, name);
    ARG(k, a++, cg, name);
    ARG(k, a++, alpha, name);
    ARG(k, a++, grad_scale, name);
    ARG(k, a++, flags, name);
    LOCAL_ARG(k, a++, 3 * lws * sizeof(cl_float), name);
    LOCAL_ARG(k, a++, lws * sizeof(cl_int), name);
    return launch(ctx, k, name, B * lws, lws);
}

kdcl_status kdcl_op_ensemble_accumulate(kdcl_ctx *ctx, kdcl_ens_mode mode, const kdcl_tensor *v,
                                        float T, float w, float beta, kdcl_tensor *acc)
{
    const char *op = "kdcl_op_ensemble_accumulate";
    size_t B = 0, K = 0;
    kdcl_status s;
    if (mode != KDCL_ENS_PROB && mode != KDCL_ENS_LOGIT)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: unknown mode %d", op, (int)mode);
    if ((s = check_logits(op, "v", v, &B, &K))) return s;
    if ((s = check_like(op, "acc", acc, B, K, "v"))) return s;
    if ((s = check_T(op, T))) return s;
    if ((s = check_finite(op, "w", w))) return s;
    if ((s = check_finite(op, "beta", beta))) return s;
    const cl_uint k32 = (cl_uint)K, b32 = (cl_uint)B;
    cl_kernel k;
    if (mode == KDCL_ENS_LOGIT) {
        const char *name = "ens_logit";
        const cl_uint n32 = (cl_uint)(B * K);
        const float c = (float)((double)w / (double)T);
        if ((s = get_kernel(ctx, name, &k))) return s;
        ARG(k, 0, v->buf, name);
        ARG(k, 1, acc->buf, name);
        ARG(k, 2, n32, name);
        ARG(k, 3, c, name);
        ARG(k, 4, beta, name);
        return launch_items(ctx, k, name, B * K);
    }
    const float invT = (float)(1.0 / (double)T);
    if (K <= KDCL_SOFTMAX_SMALL_K) {
        const char *name = "ens_prob_row1";
        if ((s = get_kernel(ctx, name, &k))) return s;
        ARG(k, 0, v->buf, name);
        ARG(k, 1, acc->buf, name);
        ARG(k, 2, b32, name);
        ARG(k, 3, k32, name);
        ARG(k, 4, invT, name);
        ARG(k, 5, w, name);
        ARG(k, 6, beta, name);
        return launch_items(ctx, k, name, B);
    }
    const char *name = "ens_prob_wg";
    size_t lws = 1;
    if ((s = get_kernel(ctx, name, &k))) return s;
    if ((s = row_group_size(ctx, k, name, K, &lws))) return s;
    ARG(k, 0, v->buf, name);
    ARG(k, 1, acc->buf, name);
    ARG(k, 2, k32, name);
    ARG(k, 3, invT, name);
    ARG(k, 4, w, name);
    ARG(k, 5, beta, name);
    LOCAL_ARG(k, 6, lws * sizeof(cl_float), name);
    return launch(ctx, k, name, B * lws, lws);
}
