/* Residual block: y = body(x) + shortcut(x), the shortcut being the
 * identity when the spec has none (ResNet's option A needs equal shapes;
 * a 1x1-conv + BatchNorm shortcut is option B). The body and the shortcut
 * are layer lists of their own (state_dict names "<i>.body.<j>.*",
 * "<i>.shortcut.<j>.*"); neither may run its first layer in place, since
 * both read x. Forward: y = body(x) + shortcut(x) in one kernel. Backward:
 * the output gradient goes to both branches, the body's input gradient is
 * kept apart and added to the shortcut's (with the identity shortcut, dx =
 * dy + that in one kernel). A branch whose last layer is a BatchNorm (which
 * only reads its output gradient) takes dy itself as its output gradient;
 * other branches get a copy, since their last layer may change it in place
 * (a fused ReLU / dropout). */
#include <stdio.h>
#include <stdlib.h>

#include "kdcl/conv.h"
#include "nn/model_internal.h"

typedef struct res_priv {
    kdcl_layer_list lists[2]; /* body, shortcut (must be first: model.c reads priv as lists) */
    kdcl_tensor dxb;          /* the body's input gradient */
} res_priv;

static kdcl_status res_create(kdcl_layer *l, kdcl_model *m)
{
    res_priv *r = calloc(1, sizeof *r);
    if (!r) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    l->priv = r;
    const kdcl_layer_spec *sp = l->spec;
    char pb[64], ps[64];
    snprintf(pb, sizeof pb, "%.36s.body.", l->name);
    snprintf(ps, sizeof ps, "%.36s.shortcut.", l->name);
    uint32_t stream = l->stream * 1000u + 1u; /* distinct dropout streams inside the block */
    kdcl_status s;
    if ((s = kdcl_layer_alloc_act(m, &r->dxb, l->in_dim)) ||
        (s = kdcl_list_create(m, &r->lists[0], sp->body, sp->n_body, l->in, l->x, &r->dxb, pb,
                              l->top, 0, &stream)) ||
        (s = kdcl_list_create(m, &r->lists[1], sp->shortcut, sp->n_shortcut, l->in, l->x, l->dx,
                              ps, l->top, 0, &stream)) ||
        (s = kdcl_layer_alloc_out(m, l)))
        return s;
    /* branches ending in BatchNorm read dy where it is (l->dy is l->dy_own:
     * a residual block never runs in place) */
    for (int b = 0; b < 2; b++) {
        kdcl_layer_list *list = &r->lists[b];
        if (list->n && list->l[list->n - 1].spec->kind == KDCL_LAYER_BATCHNORM)
            list->l[list->n - 1].dy = &l->dy_own;
    }
    return KDCL_OK;
}

static kdcl_status res_forward(kdcl_layer *l, kdcl_model *m, int train, uint64_t seed,
                               uint64_t step)
{
    res_priv *r = l->priv;
    const size_t n = m->batch * l->out_dim;
    kdcl_status s;
    if ((s = kdcl_list_forward(m, &r->lists[0], train, seed, step)) ||
        (s = kdcl_list_forward(m, &r->lists[1], train, seed, step)))
        return s;
    return kdcl_op_add(m->ctx, l->y, kdcl_list_out(&r->lists[0], l->x),
                       kdcl_list_out(&r->lists[1], l->x), n);
}

/* The branch's output gradient = dy: nothing to do when it reads dy itself. */
static kdcl_status dy_to(kdcl_layer *l, kdcl_model *m, kdcl_tensor *dout, size_t n)
{
    return dout == l->dy ? KDCL_OK : kdcl_layer_copy(m, l->dy, dout, n);
}

static kdcl_status res_backward(kdcl_layer *l, kdcl_model *m, int need_dx)
{
    res_priv *r = l->priv;
    const size_t n = m->batch * l->out_dim, nin = m->batch * l->in_dim;
    kdcl_status s;
    /* body: its output gradient is dy */
    if ((s = dy_to(l, m, kdcl_list_dout(&r->lists[0], &r->dxb), n)) ||
        (s = kdcl_list_backward(m, &r->lists[0], need_dx)))
        return s;
    if (!r->lists[1].n) /* identity: dx = dy + the body's input gradient */
        return need_dx ? kdcl_op_add(m->ctx, l->dx, l->dy, &r->dxb, nin) : KDCL_OK;
    if ((s = dy_to(l, m, kdcl_list_dout(&r->lists[1], l->dx), n)) ||
        (s = kdcl_list_backward(m, &r->lists[1], need_dx)))
        return s;
    if (!need_dx) return KDCL_OK;
    return kdcl_op_axpy(m->ctx, l->dx, &r->dxb, nin, 1.0f);
}

static void res_destroy(kdcl_layer *l, kdcl_ctx *ctx)
{
    res_priv *r = l->priv;
    if (!r) return;
    kdcl_list_destroy(ctx, &r->lists[0]);
    kdcl_list_destroy(ctx, &r->lists[1]);
    kdcl_tensor_free(ctx, &r->dxb);
    free(r);
    l->priv = NULL;
}

const kdcl_layer_ops kdcl_residual_ops = {res_create, res_forward, res_backward, res_destroy};
