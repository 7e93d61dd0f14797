/* BatchNorm1d ([F] input: C = F, S = 1) and BatchNorm2d ([C, H, W]: S = H*W)
 * as in PyTorch: training mode normalises with the batch statistics and
 * updates the running ones (momentum convention r = (1 - m) r + m x, the
 * unbiased variance), evaluation mode uses the running statistics.
 * weight (gamma) and bias (beta) are trainable; running_mean / running_var
 * live in the model's statistics buffer; num_batches_tracked is counted on
 * the host. Kernels: cl/norm.cl via kdcl_op_batchnorm_*. */
#include <stdlib.h>
#include "kdcl/conv.h"
#include "nn/model_internal.h"

typedef struct bn_priv {
    kdcl_tensor mean, invstd; /* F32 C: the last training forward's statistics */
    int train;
} bn_priv;

static size_t bn_spatial(const kdcl_layer *l) { return l->in.flat ? 1 : l->in.h * l->in.w; }

static kdcl_status bn_create(kdcl_layer *l, kdcl_model *m)
{
    const size_t C = l->in.c;
    bn_priv *b = calloc(1, sizeof *b);
    if (!b) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    l->priv = b;
    size_t cs[1] = {C};
    kdcl_layer_param(l, "weight", 1, cs, 0, 0, 0, 1.0f);
    kdcl_layer_param(l, "bias", 1, cs, 0, 0, 0, 0.0f);
    kdcl_layer_stat(l, "running_mean", C, 0.0f);
    kdcl_layer_stat(l, "running_var", C, 1.0f);
    kdcl_status s;
    if ((s = kdcl_tensor_alloc(m->ctx, &b->mean, KDCL_F32, 1, cs)) ||
        (s = kdcl_tensor_alloc(m->ctx, &b->invstd, KDCL_F32, 1, cs)) ||
        (s = kdcl_layer_alloc_out(m, l)))
        return s;
    return KDCL_OK;
}

static kdcl_status bn_forward(kdcl_layer *l, kdcl_model *m, int train, uint64_t seed,
                              uint64_t step)
{
    (void)seed;
    (void)step;
    bn_priv *b = l->priv;
    const size_t C = l->in.c, S = bn_spatial(l);
    b->train = train;
    if (!train)
        return kdcl_op_batchnorm_forward_eval(m->ctx, m->batch, C, S, l->x, &l->p[0].val,
                                              &l->p[1].val, &l->st[0].val, &l->st[1].val,
                                              l->spec->eps, l->y);
    l->batches_tracked++;
    return kdcl_op_batchnorm_forward_train(m->ctx, m->batch, C, S, l->x, &l->p[0].val,
                                           &l->p[1].val, l->y, &b->mean, &b->invstd,
                                           &l->st[0].val, &l->st[1].val, l->spec->momentum,
                                           l->spec->eps);
}

static kdcl_status bn_backward(kdcl_layer *l, kdcl_model *m, int need_dx)
{
    bn_priv *b = l->priv;
    if (!b->train)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "BatchNorm %s: backward after an evaluation-mode forward", l->name);
    return kdcl_op_batchnorm_backward(m->ctx, m->batch, l->in.c, bn_spatial(l), l->x, l->dy,
                                      &l->p[0].val, &b->mean, &b->invstd, need_dx ? l->dx : NULL,
                                      &l->p[0].grad, &l->p[1].grad);
}

static void bn_destroy(kdcl_layer *l, kdcl_ctx *ctx)
{
    bn_priv *b = l->priv;
    if (!b) return;
    kdcl_tensor_free(ctx, &b->mean);
    kdcl_tensor_free(ctx, &b->invstd);
    free(b);
    l->priv = NULL;
}

const kdcl_layer_ops kdcl_batchnorm_ops = {bn_create, bn_forward, bn_backward, bn_destroy};
