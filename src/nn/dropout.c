/* Dropout (torch.nn.Dropout(p)), in place, training mode only: element i is
 * kept with probability 1 - p as drawn by Philox from (seed, step, stream, i)
 * (stream: the number of Linear / Conv2d layers before it, so an MLP's masks
 * are those kdcl always drew) and scaled by 1 / (1 - p). The keep mask (U8)
 * is kept for the backward. After Linear + ReLU it is fused into the Linear. */
#include <stdlib.h>
#include "kdcl/ops.h"
#include "nn/model_internal.h"

typedef struct dropout_priv {
    int train; /* the last forward dropped (the mask itself is y_own, U8) */
} dropout_priv;

static kdcl_status dropout_create(kdcl_layer *l, kdcl_model *m)
{
    /* the mask lives in y_own as U8 (y itself is the input buffer, in place) */
    if (!l->inplace)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "Dropout cannot be the first layer of a residual block");
    kdcl_status s = kdcl_model_alloc_rows(m, &l->y_own, KDCL_U8, l->out_dim);
    l->priv = calloc(1, sizeof(dropout_priv));
    if (!s && !l->priv) s = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    return s;
}

static kdcl_status dropout_forward(kdcl_layer *l, kdcl_model *m, int train, uint64_t seed,
                                   uint64_t step)
{
    dropout_priv *d = l->priv;
    d->train = train && l->spec->p > 0.0f;
    if (!d->train) return KDCL_OK;
    return kdcl_op_bias_act_dropout(m->ctx, l->y, NULL, 0, l->spec->p, seed, step, l->stream,
                                    &l->y_own);
}

static kdcl_status dropout_backward(kdcl_layer *l, kdcl_model *m, int need_dx)
{
    dropout_priv *d = l->priv;
    if (!need_dx || !d->train) return KDCL_OK;
    return kdcl_op_act_dropout_backward(m->ctx, l->dy, NULL, 0, l->spec->p, &l->y_own);
}

static void dropout_destroy(kdcl_layer *l, kdcl_ctx *ctx)
{
    (void)ctx;
    free(l->priv);
    l->priv = NULL;
}

const kdcl_layer_ops kdcl_dropout_ops = {dropout_create, dropout_forward, dropout_backward,
                                         dropout_destroy};
