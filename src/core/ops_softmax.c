/* Host wrappers of cl/softmax.cl: validation, work-group size choice, launch.
 * Nothing here waits on the queue. */
#include <limits.h>
#include <stdio.h>

#include "kdcl/loss.h"
#include "core/ops_util.h"
#include "runtime/ctx.h"

#define PROGRAM "softmax"

/* Flags of the xent kernels (keep in sync with cl/softmax.cl). */
#define XENT_LOSS 1
#define XENT_DZ 2
#define XENT_ERR 4

static kdcl_status get_kernel(kdcl_ctx *ctx, const char *name, cl_kernel *k)
{
    return kdcl_kernel_get(ctx, PROGRAM, name, k);
}

kdcl_status kdcl_op_softmax(kdcl_ctx *ctx, const kdcl_tensor *z, kdcl_tensor *out, float T,
                            int log_out)
{
    const char *op = log_out ? "kdcl_op_softmax(log)" : "kdcl_op_softmax";
    size_t B = 0, K = 0;
    kdcl_status s = kdcl_ops_check_logits(op, "z", z, 0, &B, &K);
    if (s) return s;
    if ((s = kdcl_ops_check_like(op, "out", out, B, K, "z"))) return s;
    if ((s = kdcl_ops_check_T(op, T))) return s;
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
        return kdcl_ops_launch_items(ctx, k, name, B);
    }
    const char *name = "softmax_wg";
    size_t lws = 1;
    if ((s = get_kernel(ctx, name, &k))) return s;
    if ((s = kdcl_ops_row_group_size(ctx, k, name, K, &lws))) return s;
    ARG(k, 0, z->buf, name);
    ARG(k, 1, out->buf, name);
    ARG(k, 2, k32, name);
    ARG(k, 3, invT, name);
    ARG(k, 4, lo, name);
    LOCAL_ARG(k, 5, lws * sizeof(cl_float), name);
    return kdcl_ops_launch(ctx, k, name, B * lws, lws);
}

kdcl_status kdcl_op_softmax_xent(kdcl_ctx *ctx, const kdcl_tensor *z, const kdcl_tensor *labels,
                                 kdcl_tensor *loss, kdcl_tensor *dz, float grad_scale,
                                 kdcl_tensor *errors)
{
    const char *op = "kdcl_op_softmax_xent";
    size_t B = 0, K = 0;
    kdcl_status s = kdcl_ops_check_logits(op, "z", z, 0, &B, &K);
    if (s) return s;
    if ((s = kdcl_ops_check_rows(op, "labels", labels, KDCL_I32, B))) return s;
    if (loss && (s = kdcl_ops_check_rows(op, "loss", loss, KDCL_F32, B))) return s;
    if (dz && (s = kdcl_ops_check_like(op, "dz", dz, B, K, "z"))) return s;
    if (errors && (s = kdcl_ops_check_tensor(op, "errors", errors, KDCL_I32))) return s;
    if ((s = kdcl_ops_check_finite(op, "grad_scale", grad_scale))) return s;
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
        return kdcl_ops_launch_items(ctx, k, name, B);
    }
    const char *name = "xent_wg";
    size_t lws = 1;
    if ((s = get_kernel(ctx, name, &k))) return s;
    if ((s = kdcl_ops_row_group_size(ctx, k, name, K, &lws))) return s;
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
    return kdcl_ops_launch(ctx, k, name, B * lws, lws);
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
        return kdcl_ops_launch_items(ctx, k, name, B);
    }
    const char *name = confusion ? "confusion_wg" : "argmax_wg";
    size_t lws = 1;
    if ((s = get_kernel(ctx, name, &k))) return s;
    if ((s = kdcl_ops_row_group_size(ctx, k, name, K, &lws))) return s;
    ARG(k, a++, z->buf, name);
    if (confusion) ARG(k, a++, labels->buf, name);
    ARG(k, a++, out->buf, name);
    ARG(k, a++, k32, name);
    LOCAL_ARG(k, a++, lws * sizeof(cl_float), name);
    LOCAL_ARG(k, a++, lws * sizeof(cl_int), name);
    return kdcl_ops_launch(ctx, k, name, B * lws, lws);
}

kdcl_status kdcl_op_argmax(kdcl_ctx *ctx, const kdcl_tensor *z, kdcl_tensor *idx)
{
    const char *op = "kdcl_op_argmax";
    size_t B = 0, K = 0;
    kdcl_status s = kdcl_ops_check_logits(op, "z", z, 0, &B, &K);
    if (s) return s;
    if ((s = kdcl_ops_check_rows(op, "idx", idx, KDCL_I32, B))) return s;
    return argmax_like(ctx, z, NULL, idx, B, K, 0);
}

kdcl_status kdcl_op_confusion(kdcl_ctx *ctx, const kdcl_tensor *z, const kdcl_tensor *labels,
                              kdcl_tensor *conf)
{
    const char *op = "kdcl_op_confusion";
    size_t B = 0, K = 0;
    kdcl_status s = kdcl_ops_check_logits(op, "z", z, 0, &B, &K);
    if (s) return s;
    if ((s = kdcl_ops_check_rows(op, "labels", labels, KDCL_I32, B))) return s;
    if ((s = kdcl_ops_check_tensor(op, "conf", conf, KDCL_I32))) return s;
    if (K > 46340 || conf->numel != K * K) {
        char msg[128];
        snprintf(msg, sizeof msg, "conf must have K*K = %zu*%zu elements", K, K);
        return kdcl_ops_bad(op, msg, conf);
    }
    return argmax_like(ctx, z, labels, conf, B, K, 1);
}

kdcl_status kdcl_op_reduce_add(kdcl_ctx *ctx, const kdcl_tensor *x, size_t n, kdcl_tensor *acc,
                               size_t acc_index)
{
    const char *op = "kdcl_op_reduce_add";
    kdcl_status s = kdcl_ops_check_tensor(op, "x", x, KDCL_F32);
    if (s) return s;
    if ((s = kdcl_ops_check_tensor(op, "acc", acc, KDCL_F32))) return s;
    if (n > x->numel || n > UINT_MAX) {
        char msg[128];
        snprintf(msg, sizeof msg, "n = %zu exceeds the elements of x", n);
        return kdcl_ops_bad(op, msg, x);
    }
    if (acc_index >= acc->numel || acc_index > UINT_MAX) {
        char msg[128];
        snprintf(msg, sizeof msg, "acc_index = %zu is out of range", acc_index);
        return kdcl_ops_bad(op, msg, acc);
    }
    if (n == 0) return KDCL_OK;
    const char *name = "reduce_add";
    cl_kernel k;
    size_t lws = 1;
    if ((s = get_kernel(ctx, name, &k))) return s;
    if ((s = kdcl_ops_row_group_size(ctx, k, name, n, &lws))) return s;
    const cl_uint n32 = (cl_uint)n, i32 = (cl_uint)acc_index;
    ARG(k, 0, x->buf, name);
    ARG(k, 1, n32, name);
    ARG(k, 2, acc->buf, name);
    ARG(k, 3, i32, name);
    LOCAL_ARG(k, 4, lws * sizeof(cl_float), name);
    return kdcl_ops_launch(ctx, k, name, lws, lws);
}
