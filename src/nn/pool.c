/* Pooling layers: MaxPool2d (argmax kept for the backward), AvgPool2d
 * (padding counted in the divisor, PyTorch's default) and the global average
 * pool AdaptiveAvgPool2d(1) (the average pool whose window is the whole
 * plane). Kernels: cl/pool.cl via kdcl_op_{max,avg}pool2d_*. */
#include <stdlib.h>
#include "kdcl/conv.h"
#include "nn/model_internal.h"

typedef struct pool_priv {
    kdcl_conv_geom g;
    kdcl_tensor argmax; /* I32, max pooling */
} pool_priv;

static kdcl_status pool_create(kdcl_layer *l, kdcl_model *m)
{
    const kdcl_layer_spec *sp = l->spec;
    pool_priv *p = calloc(1, sizeof *p);
    if (!p) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    l->priv = p;
    kdcl_status s;
    if (sp->kind == KDCL_LAYER_GLOBAL_AVGPOOL)
        s = kdcl_conv_geom_set(&p->g, l->in.c, l->in.h, l->in.w, l->in.c, l->in.h, l->in.w, 1, 1,
                               0, 0);
    else
        s = kdcl_conv_geom_set(&p->g, l->in.c, l->in.h, l->in.w, l->in.c, sp->kh, sp->kw,
                               sp->sh ? sp->sh : sp->kh, sp->sw ? sp->sw : sp->kw, sp->ph, sp->pw);
    if (s) return s;
    if (sp->kind == KDCL_LAYER_MAXPOOL2D &&
        ((s = kdcl_model_alloc_rows(m, &p->argmax, KDCL_I32, l->out_dim))))
        return s;
    return kdcl_layer_alloc_out(m, l);
}

static kdcl_status pool_forward(kdcl_layer *l, kdcl_model *m, int train, uint64_t seed,
                                uint64_t step)
{
    (void)train;
    (void)seed;
    (void)step;
    pool_priv *p = l->priv;
    if (l->spec->kind == KDCL_LAYER_MAXPOOL2D)
        return kdcl_op_maxpool2d_forward(m->ctx, &p->g, m->batch, l->x, l->y, &p->argmax);
    return kdcl_op_avgpool2d_forward(m->ctx, &p->g, m->batch, l->x, l->y);
}

static kdcl_status pool_backward(kdcl_layer *l, kdcl_model *m, int need_dx)
{
    pool_priv *p = l->priv;
    if (!need_dx) return KDCL_OK;
    if (l->spec->kind == KDCL_LAYER_MAXPOOL2D)
        return kdcl_op_maxpool2d_backward(m->ctx, &p->g, m->batch, l->dy, &p->argmax, l->dx);
    return kdcl_op_avgpool2d_backward(m->ctx, &p->g, m->batch, l->dy, l->dx);
}

static void pool_destroy(kdcl_layer *l, kdcl_ctx *ctx)
{
    pool_priv *p = l->priv;
    if (!p) return;
    kdcl_tensor_free(ctx, &p->argmax);
    free(p);
    l->priv = NULL;
}

const kdcl_layer_ops kdcl_maxpool_ops = {pool_create, pool_forward, pool_backward, pool_destroy};
const kdcl_layer_ops kdcl_avgpool_ops = {pool_create, pool_forward, pool_backward, pool_destroy};
const kdcl_layer_ops kdcl_gap_ops = {pool_create, pool_forward, pool_backward, pool_destroy};
