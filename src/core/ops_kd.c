/* Host wrappers of cl/kd_loss.cl: validation, coefficients, launch. Nothing
 * here waits on the queue. The validation/launch helpers are shared with the
 * other op wrappers (core/ops_util.h). */
#include "kdcl/kd.h"
#include "kdcl/loss.h"
#include "core/ops_util.h"
#include "runtime/ctx.h"

#define PROGRAM "kd_loss"

/* Flags of the kd_loss kernels (keep in sync with cl/kd_loss.cl). */
#define KD_LOSS 1
#define KD_DZ 2
#define KD_ERR 4
#define KD_SOFT 8
#define KD_HARD 16
#define KD_TLOGITS 32
#define KD_MSE 64

static kdcl_status get_kernel(kdcl_ctx *ctx, const char *name, cl_kernel *k)
{
    return kdcl_kernel_get(ctx, PROGRAM, name, k);
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
    if ((s = kdcl_ops_check_logits(op, "z", z, 1, &B, &K))) return s;
    if ((s = kdcl_ops_check_like(op, "targets", targets, B, K, "z"))) return s;
    if (mode == KDCL_KD_LOGITS && !targets_are_logits)
        return kdcl_ops_bad(op, "logit matching (KDCL_KD_LOGITS) needs teacher logits as targets "
                       "(targets_are_logits = 1), not probabilities", targets);
    if ((s = kdcl_ops_check_T(op, T))) return s;
    if (!(alpha >= 0.0f && alpha <= 1.0f))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: alpha = %g must lie in [0, 1]", op,
                              (double)alpha);
    if ((s = kdcl_ops_check_finite(op, "grad_scale", grad_scale))) return s;
    if (labels) {
        if ((s = kdcl_ops_check_rows(op, "labels", labels, KDCL_I32, B))) return s;
    } else if (alpha > 0.0f) {
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "%s: alpha = %g > 0 weights the hard-label loss but labels is NULL",
                              op, (double)alpha);
    } else if (errors) {
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: errors needs labels (labels is NULL)",
                              op);
    }
    if (loss && (s = kdcl_ops_check_rows(op, "loss", loss, KDCL_F32, B))) return s;
    if (dz && (s = kdcl_ops_check_like(op, "dz", dz, B, K, "z"))) return s;
    if (errors && (s = kdcl_ops_check_tensor(op, "errors", errors, KDCL_I32))) return s;

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
    /* Row per work-item (row1) or per work-group (wg): the same arguments but
     * for B (row1) and the local scratch (wg). */
    const int row1 = K <= KDCL_SOFTMAX_SMALL_K;
    const char *name = row1 ? "kd_loss_row1" : "kd_loss_wg";
    size_t lws = 1;
    if ((s = get_kernel(ctx, name, &k))) return s;
    if (!row1 && (s = kdcl_ops_row_group_size(ctx, k, name, K, &lws))) return s;
    ARG(k, a++, z->buf, name);
    ARG(k, a++, targets->buf, name);
    ARG(k, a++, yb, name);
    ARG(k, a++, lb, name);
    ARG(k, a++, db, name);
    ARG(k, a++, eb, name);
    if (row1) ARG(k, a++, b32, name);
    ARG(k, a++, k32, name);
    ARG(k, a++, invT, name);
    ARG(k, a++, cl, name);
    ARG(k, a++, cg, name);
    ARG(k, a++, alpha, name);
    ARG(k, a++, grad_scale, name);
    ARG(k, a++, flags, name);
    if (row1) return kdcl_ops_launch_items(ctx, k, name, B);
    LOCAL_ARG(k, a++, 3 * lws * sizeof(cl_float), name);
    LOCAL_ARG(k, a++, lws * sizeof(cl_int), name);
    return kdcl_ops_launch(ctx, k, name, B * lws, lws);
}

kdcl_status kdcl_op_ensemble_accumulate(kdcl_ctx *ctx, kdcl_ens_mode mode, const kdcl_tensor *v,
                                        float T, float w, float beta, kdcl_tensor *acc)
{
    const char *op = "kdcl_op_ensemble_accumulate";
    size_t B = 0, K = 0;
    kdcl_status s;
    if (mode != KDCL_ENS_PROB && mode != KDCL_ENS_LOGIT)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: unknown mode %d", op, (int)mode);
    if ((s = kdcl_ops_check_logits(op, "v", v, 1, &B, &K))) return s;
    if ((s = kdcl_ops_check_like(op, "acc", acc, B, K, "v"))) return s;
    if ((s = kdcl_ops_check_T(op, T))) return s;
    if ((s = kdcl_ops_check_finite(op, "w", w))) return s;
    if ((s = kdcl_ops_check_finite(op, "beta", beta))) return s;
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
        return kdcl_ops_launch_items(ctx, k, name, B * K);
    }
    const float invT = (float)(1.0 / (double)T);
    const int row1 = K <= KDCL_SOFTMAX_SMALL_K;
    const char *name = row1 ? "ens_prob_row1" : "ens_prob_wg";
    size_t lws = 1;
    cl_uint a = 0;
    if ((s = get_kernel(ctx, name, &k))) return s;
    if (!row1 && (s = kdcl_ops_row_group_size(ctx, k, name, K, &lws))) return s;
    ARG(k, a++, v->buf, name);
    ARG(k, a++, acc->buf, name);
    if (row1) ARG(k, a++, b32, name);
    ARG(k, a++, k32, name);
    ARG(k, a++, invT, name);
    ARG(k, a++, w, name);
    ARG(k, a++, beta, name);
    if (row1) return kdcl_ops_launch_items(ctx, k, name, B);
    LOCAL_ARG(k, a++, lws * sizeof(cl_float), name);
    return kdcl_ops_launch(ctx, k, name, B * lws, lws);
}
