/* Linear layer (torch.nn.Linear): y = x W^T + b, W [out, in].
 *
 *   forward   y  = x W^T            GEMM(N, T): B x out x in, then bias (+ ReLU + dropout
 *                                   when fused) in one kernel
 *   backward  dy = dy * relu'(y) * mask   (fused layers, in place)
 *             dW = dy^T x           GEMM(T, N): out x in x B
 *             db = sum_b dy
 *             dx = dy W             GEMM(N, N): B x in x out
 * No transpose kernels are needed. */
#include "kdcl/gemm.h"
#include "kdcl/ops.h"
#include "nn/model_internal.h"

static kdcl_status linear_create(kdcl_layer *l, kdcl_model *m)
{
    const size_t in = l->in_dim, out = l->out_dim;
    size_t ws[2] = {out, in}, bs[1] = {out};
    kdcl_layer_param(l, "weight", 2, ws, out, in, in, 0.0f);
    if (l->spec->bias) kdcl_layer_param(l, "bias", 1, bs, 0, 0, 0, 0.0f);
    return kdcl_layer_alloc_out(m, l);
}

/* The elementwise tail of a Linear / Conv2d output: bias, ReLU and dropout of
 * the fused layers, one kernel. Shared with conv2d.c (bias per channel there). */
kdcl_status kdcl_linear_tail(kdcl_layer *l, kdcl_model *m, const kdcl_tensor *bias, int train,
                             uint64_t seed, uint64_t step)
{
    float p = (train && l->fuse_drop) ? l->fuse_drop->spec->p : 0.0f;
    if (!bias && !l->fuse_relu && p == 0.0f) return KDCL_OK;
    return kdcl_op_bias_act_dropout(m->ctx, l->y, bias, l->fuse_relu, p, seed, step,
                                    l->fuse_drop ? l->fuse_drop->stream : 0,
                                    p > 0 ? &l->fuse_drop->y_own : NULL);
}

kdcl_status kdcl_linear_tail_backward(kdcl_layer *l, kdcl_model *m, int train)
{
    float p = (train && l->fuse_drop) ? l->fuse_drop->spec->p : 0.0f;
    if (!l->fuse_relu && p == 0.0f) return KDCL_OK;
    return kdcl_op_act_dropout_backward(m->ctx, l->dy, l->y, l->fuse_relu, p,
                                        p > 0 ? &l->fuse_drop->y_own : NULL);
}

static kdcl_status linear_forward(kdcl_layer *l, kdcl_model *m, int train, uint64_t seed,
                                  uint64_t step)
{
    const size_t in = l->in_dim, out = l->out_dim, B = m->batch;
    kdcl_status s = kdcl_gemm(m->ctx, KDCL_NO_TRANS, KDCL_TRANS, B, out, in, 1.0f, l->x->buf, 0,
                              in, l->p[0].val.buf, 0, in, 0.0f, l->y->buf, 0, out, NULL);
    if (s) return s;
    l->fused_train = train;
    return kdcl_linear_tail(l, m, l->n_p > 1 ? &l->p[1].val : NULL, train, seed, step);
}

static kdcl_status linear_backward(kdcl_layer *l, kdcl_model *m, int need_dx)
{
    const size_t in = l->in_dim, out = l->out_dim, B = m->batch;
    kdcl_status s;
    if ((s = kdcl_linear_tail_backward(l, m, l->fused_train)) ||
        (s = kdcl_gemm(m->ctx, KDCL_TRANS, KDCL_NO_TRANS, out, in, B, 1.0f, l->dy->buf, 0, out,
                       l->x->buf, 0, in, 0.0f, l->p[0].grad.buf, 0, in, NULL)))
        return s;
    if (l->n_p > 1 && (s = kdcl_op_bias_grad(m->ctx, l->dy, &l->p[1].grad, 1.0f, 0.0f))) return s;
    if (!need_dx) return KDCL_OK;
    return kdcl_gemm(m->ctx, KDCL_NO_TRANS, KDCL_NO_TRANS, B, in, out, 1.0f, l->dy->buf, 0, out,
                     l->p[0].val.buf, 0, in, 0.0f, l->dx->buf, 0, in, NULL);
}

const kdcl_layer_ops kdcl_linear_ops = {linear_create, linear_forward, linear_backward, NULL};
