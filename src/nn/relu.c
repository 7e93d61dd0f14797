/* ReLU (torch.nn.ReLU), in place: y = max(x, 0); dx = dy * [y > 0]. After a
 * Linear or Conv2d it is fused into that layer's output kernel instead. */
#include "kdcl/ops.h"
#include "nn/model_internal.h"

static kdcl_status relu_create(kdcl_layer *l, kdcl_model *m)
{
    if (l->inplace) return KDCL_OK;
    return kdcl_layer_alloc_out(m, l);
}

static kdcl_status relu_forward(kdcl_layer *l, kdcl_model *m, int train, uint64_t seed,
                                uint64_t step)
{
    (void)train;
    kdcl_status s;
    if (!l->inplace && (s = kdcl_layer_copy(m, l->x, l->y, m->batch * l->out_dim))) return s;
    return kdcl_op_bias_act_dropout(m->ctx, l->y, NULL, 1, 0.0f, seed, step, 0, NULL);
}

static kdcl_status relu_backward(kdcl_layer *l, kdcl_model *m, int need_dx)
{
    if (!need_dx) return KDCL_OK;
    kdcl_status s;
    if (!l->inplace && (s = kdcl_layer_copy(m, l->dy, l->dx, m->batch * l->out_dim))) return s;
    return kdcl_op_act_dropout_backward(m->ctx, l->dx, l->y, 1, 0.0f, NULL);
}

const kdcl_layer_ops kdcl_relu_ops = {relu_create, relu_forward, relu_backward, NULL};
