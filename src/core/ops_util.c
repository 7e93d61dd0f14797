/* Validation and launch helpers shared by the op wrappers (see ops_util.h). */
#include "core/ops_util.h"
#include "kdcl/profile.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>

const char *kdcl_ops_type_name(kdcl_elem t)
{
    switch (t) {
    case KDCL_F32: return "F32";
    case KDCL_I32: return "I32";
    case KDCL_U8: return "U8";
    }
    return "?";
}

const char *kdcl_ops_shape_str(const kdcl_tensor *t, char *buf, size_t size)
{
    int w = snprintf(buf, size, "[");
    for (size_t i = 0; i < t->ndim && i < KDCL_MAX_DIMS && w > 0 && (size_t)w < size; i++)
        w += snprintf(buf + w, size - (size_t)w, "%s%zu", i ? ", " : "", t->shape[i]);
    if (w > 0 && (size_t)w < size)
        snprintf(buf + w, size - (size_t)w, "] %s", kdcl_ops_type_name(t->type));
    return buf;
}

kdcl_status kdcl_ops_bad(const char *op, const char *what, const kdcl_tensor *t)
{
    char sb[96];
    if (!t) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: %s", op, what);
    return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: %s (got %s)", op, what,
                          kdcl_ops_shape_str(t, sb, sizeof sb));
}

kdcl_status kdcl_ops_check_tensor(const char *op, const char *name, const kdcl_tensor *t,
                                  kdcl_elem type)
{
    char msg[96];
    if (!t || !t->buf) {
        snprintf(msg, sizeof msg, "%s is NULL or has no buffer", name);
        return kdcl_ops_bad(op, msg, NULL);
    }
    if (t->ndim < 1 || t->ndim > KDCL_MAX_DIMS || t->numel == 0) {
        snprintf(msg, sizeof msg, "%s has an invalid shape", name);
        return kdcl_ops_bad(op, msg, t);
    }
    if (t->type != type) {
        snprintf(msg, sizeof msg, "%s must be %s", name, kdcl_ops_type_name(type));
        return kdcl_ops_bad(op, msg, t);
    }
    return KDCL_OK;
}

kdcl_status kdcl_ops_check_holds(const char *op, const char *name, const kdcl_tensor *t,
                                 kdcl_elem type, size_t need, int exact, const char *what)
{
    kdcl_status s = kdcl_ops_check_tensor(op, name, t, type);
    if (s) return s;
    if (exact ? t->numel != need : t->numel < need) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s must hold %s%s = %zu %s elements", name,
                 exact ? "" : "at least ", what, need, kdcl_ops_type_name(type));
        return kdcl_ops_bad(op, msg, t);
    }
    return KDCL_OK;
}

kdcl_status kdcl_ops_check_logits(const char *op, const char *name, const kdcl_tensor *z,
                                  int limit_numel, size_t *B, size_t *K)
{
    kdcl_status s = kdcl_ops_check_tensor(op, name, z, KDCL_F32);
    if (s) return s;
    char msg[96];
    if (z->ndim < 2) {
        snprintf(msg, sizeof msg, "%s must have rank >= 2 ([B, K])", name);
        return kdcl_ops_bad(op, msg, z);
    }
    *B = z->shape[0];
    *K = z->numel / *B;
    if (*K > INT_MAX || *B > UINT_MAX || (limit_numel && z->numel > UINT_MAX)) {
        snprintf(msg, sizeof msg, "%s is too large (K < 2^31, %s < 2^32)", name,
                 limit_numel ? "B*K" : "B");
        return kdcl_ops_bad(op, msg, z);
    }
    return KDCL_OK;
}

kdcl_status kdcl_ops_check_rows(const char *op, const char *name, const kdcl_tensor *t,
                                kdcl_elem type, size_t B)
{
    kdcl_status s = kdcl_ops_check_tensor(op, name, t, type);
    if (s) return s;
    if (t->numel != B) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s must have %zu elements (one per row of z)", name, B);
        return kdcl_ops_bad(op, msg, t);
    }
    return KDCL_OK;
}

kdcl_status kdcl_ops_check_like(const char *op, const char *name, const kdcl_tensor *t,
                                size_t B, size_t K, const char *like)
{
    kdcl_status s = kdcl_ops_check_tensor(op, name, t, KDCL_F32);
    if (s) return s;
    if (t->shape[0] != B || t->numel != B * K) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s must be [%zu, %zu] like %s", name, B, K, like);
        return kdcl_ops_bad(op, msg, t);
    }
    return KDCL_OK;
}

kdcl_status kdcl_ops_check_T(const char *op, float T)
{
    if (!(T > 0.0f) || !isfinite(T))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: temperature T = %g must be finite and > 0",
                              op, (double)T);
    return KDCL_OK;
}

kdcl_status kdcl_ops_check_finite(const char *op, const char *name, float v)
{
    if (!isfinite(v))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: %s = %g is not finite", op, name,
                              (double)v);
    return KDCL_OK;
}

kdcl_status kdcl_ops_wg_cap(kdcl_ctx *ctx, cl_kernel k, const char *name, size_t *cap)
{
    size_t kmax = 0;
    cl_int e = clGetKernelWorkGroupInfo(k, ctx->dev.device, CL_KERNEL_WORK_GROUP_SIZE,
                                        sizeof kmax, &kmax, NULL);
    if (e != CL_SUCCESS) {
        char what[96];
        snprintf(what, sizeof what, "clGetKernelWorkGroupInfo(%s)", name);
        return kdcl_cl_fail(e, what);
    }
    size_t c = KDCL_OPS_WG_CAP;
    if (ctx->dev.max_work_group && ctx->dev.max_work_group < c) c = ctx->dev.max_work_group;
    if (kmax && kmax < c) c = kmax;
    *cap = c ? c : 1;
    return KDCL_OK;
}

size_t kdcl_ops_pow2_at_most(size_t cap, size_t n)
{
    size_t l = 1;
    while (l * 2 <= cap && l * 2 <= n) l *= 2;
    return l;
}

kdcl_status kdcl_ops_set_arg(cl_kernel k, cl_uint i, size_t size, const void *v,
                             const char *name)
{
    cl_int e = clSetKernelArg(k, i, size, v);
    if (e != CL_SUCCESS) {
        char what[96];
        snprintf(what, sizeof what, "clSetKernelArg(%s, %u)", name, (unsigned)i);
        return kdcl_cl_fail(e, what);
    }
    return KDCL_OK;
}

kdcl_status kdcl_ops_set_args(cl_kernel k, const char *name, const karg *a, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        cl_int e = clSetKernelArg(k, (cl_uint)i, a[i].size, a[i].ptr);
        if (e != CL_SUCCESS)
            return kdcl_set_error(KDCL_ERR_OPENCL, "clSetKernelArg(%s, arg %zu) failed: %s", name,
                                  i, kdcl_cl_error_name(e));
    }
    return KDCL_OK;
}

kdcl_status kdcl_ops_launch(kdcl_ctx *ctx, cl_kernel k, const char *name, size_t global,
                            size_t local)
{
    cl_int e = clEnqueueNDRangeKernel(ctx->queue, k, 1, NULL, &global, local ? &local : NULL, 0,
                                      NULL, NULL);
    if (e != CL_SUCCESS) {
        char what[96];
        snprintf(what, sizeof what, "clEnqueueNDRangeKernel(%s)", name);
        return kdcl_cl_fail(e, what);
    }
    return kdcl_prof_op(ctx, name);
}

kdcl_status kdcl_ops_launch3(kdcl_ctx *ctx, cl_kernel k, const char *name, size_t gx, size_t gy,
                             size_t gz)
{
    const size_t g[3] = {gx, gy, gz};
    cl_int e = clEnqueueNDRangeKernel(ctx->queue, k, 3, NULL, g, NULL, 0, NULL, NULL);
    if (e != CL_SUCCESS) {
        char what[96];
        snprintf(what, sizeof what, "clEnqueueNDRangeKernel(%s)", name);
        return kdcl_cl_fail(e, what);
    }
    return kdcl_prof_op(ctx, name);
}

kdcl_status kdcl_ops_launch_items(kdcl_ctx *ctx, cl_kernel k, const char *name, size_t n)
{
    size_t cap = 1;
    kdcl_status s = kdcl_ops_wg_cap(ctx, k, name, &cap);
    if (s) return s;
    size_t local = kdcl_ops_pow2_at_most(cap < 64 ? cap : 64, n);
    size_t global = (n + local - 1) / local * local;
    return kdcl_ops_launch(ctx, k, name, global, local);
}

kdcl_status kdcl_ops_row_group_size(kdcl_ctx *ctx, cl_kernel k, const char *name, size_t K,
                                    size_t *lws)
{
    size_t cap = 1;
    kdcl_status s = kdcl_ops_wg_cap(ctx, k, name, &cap);
    if (s) return s;
    *lws = kdcl_ops_pow2_at_most(cap, K);
    return KDCL_OK;
}
