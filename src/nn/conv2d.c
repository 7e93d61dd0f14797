/* Conv2d (torch.nn.Conv2d): NCHW input, weight [OC, C, KH, KW], stride,
 * zero padding, optional bias. The products go through CLBlast
 * (kdcl_conv2d_forward / kdcl_conv2d_backward in src/core/gemm.c:
 * kdcl's im2col + GEMM forward, im2col + GEMM for the weight gradient,
 * GEMM + kdcl's col2im for the input gradient) with the model's shared
 * workspace.
 * A following ReLU (and Dropout) is fused into one elementwise kernel as
 * for Linear; the bias is added by the conv call itself. */
#include <stdlib.h>
#include "kdcl/conv.h"
#include "nn/model_internal.h"

typedef struct conv_priv {
    kdcl_conv_geom g;
} conv_priv;

static kdcl_status conv_create(kdcl_layer *l, kdcl_model *m)
{
    const kdcl_layer_spec *sp = l->spec;
    conv_priv *c = calloc(1, sizeof *c);
    if (!c) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    l->priv = c;
    kdcl_status s = kdcl_conv_geom_set(&c->g, l->in.c, l->in.h, l->in.w, sp->out, sp->kh, sp->kw,
                                       sp->sh ? sp->sh : 1, sp->sw ? sp->sw : 1, sp->ph, sp->pw);
    if (s) return s;
    const size_t fan_in = l->in.c * sp->kh * sp->kw;
    size_t ws[4] = {sp->out, l->in.c, sp->kh, sp->kw}, bs[1] = {sp->out};
    kdcl_layer_param(l, "weight", 4, ws, sp->out, fan_in, fan_in, 0.0f);
    if (sp->bias) kdcl_layer_param(l, "bias", 1, bs, 0, 0, 0, 0.0f);
    l->ws_need = kdcl_conv2d_workspace(&c->g, m->max_batch);
    return kdcl_layer_alloc_out(m, l);
}

static kdcl_status conv_forward(kdcl_layer *l, kdcl_model *m, int train, uint64_t seed,
                                uint64_t step)
{
    conv_priv *c = l->priv;
    kdcl_status s = kdcl_conv2d_forward(m->ctx, &c->g, m->batch, l->x, &l->p[0].val,
                                        l->n_p > 1 ? &l->p[1].val : NULL, l->y, &m->ws);
    if (s) return s;
    l->fused_train = train;
    return kdcl_linear_tail(l, m, NULL, train, seed, step);
}

static kdcl_status conv_backward(kdcl_layer *l, kdcl_model *m, int need_dx)
{
    conv_priv *c = l->priv;
    kdcl_status s = kdcl_linear_tail_backward(l, m, l->fused_train);
    if (s) return s;
    return kdcl_conv2d_backward(m->ctx, &c->g, m->batch, l->x, &l->p[0].val, l->dy,
                                &l->p[0].grad, l->n_p > 1 ? &l->p[1].grad : NULL,
                                need_dx ? l->dx : NULL, &m->ws);
}

static void conv_destroy(kdcl_layer *l, kdcl_ctx *ctx)
{
    (void)ctx;
    free(l->priv);
    l->priv = NULL;
}

const kdcl_layer_ops kdcl_conv2d_ops = {conv_create, conv_forward, conv_backward, conv_destroy};

/* The conv geometry of a Conv2d layer (for the GEMM shapes of a step). */
const kdcl_conv_geom *kdcl_conv2d_geom(const kdcl_layer *l)
{
    return l->spec->kind == KDCL_LAYER_CONV2D && l->priv ? &((const conv_priv *)l->priv)->g : NULL;
}
