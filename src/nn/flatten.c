/* Flatten (torch.nn.Flatten): [C, H, W] -> [C*H*W]. NCHW rows are already
 * flat, so it is the identity on the buffer (in place, or a copy when it
 * begins a residual branch). */
#include "nn/model_internal.h"

static kdcl_status flatten_create(kdcl_layer *l, kdcl_model *m)
{
    if (l->inplace) return KDCL_OK;
    return kdcl_layer_alloc_out(m, l);
}

static kdcl_status flatten_forward(kdcl_layer *l, kdcl_model *m, int train, uint64_t seed,
                                   uint64_t step)
{
    (void)train;
    (void)seed;
    (void)step;
    return l->inplace ? KDCL_OK : kdcl_layer_copy(m, l->x, l->y, m->batch * l->out_dim);
}

static kdcl_status flatten_backward(kdcl_layer *l, kdcl_model *m, int need_dx)
{
    if (!need_dx || l->inplace) return KDCL_OK;
    return kdcl_layer_copy(m, l->dy, l->dx, m->batch * l->out_dim);
}

const kdcl_layer_ops kdcl_flatten_ops = {flatten_create, flatten_forward, flatten_backward, NULL};
