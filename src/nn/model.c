/* The model: a list of layers over one flat parameter buffer.
 *
 * Creation runs in three passes: shapes (kdcl_spec_infer), then each layer's
 * create (which declares its parameter and statistics tensors and its
 * workspace), then one allocation each for parameters, gradients and
 * statistics, carved into aligned views in state_dict order. Layers whose
 * output equals their input buffer (ReLU, Dropout, Flatten) run in place; a
 * Linear or Conv2d followed by ReLU (and Dropout) applies bias, ReLU and
 * dropout in one fused kernel, and the absorbed layers do nothing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdcl/data.h"
#include "kdcl/conv.h"
#include "kdcl/ops.h"
#include "kdcl/profile.h"
#include "core/ops_util.h"
#include "nn/model_internal.h"
#include "runtime/ctx.h"

static size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

static const kdcl_layer_ops *ops_of(kdcl_layer_kind k)
{
    switch (k) {
    case KDCL_LAYER_LINEAR: return &kdcl_linear_ops;
    case KDCL_LAYER_CONV2D: return &kdcl_conv2d_ops;
    case KDCL_LAYER_MAXPOOL2D: return &kdcl_maxpool_ops;
    case KDCL_LAYER_AVGPOOL2D: return &kdcl_avgpool_ops;
    case KDCL_LAYER_GLOBAL_AVGPOOL: return &kdcl_gap_ops;
    case KDCL_LAYER_RELU: return &kdcl_relu_ops;
    case KDCL_LAYER_DROPOUT: return &kdcl_dropout_ops;
    case KDCL_LAYER_FLATTEN: return &kdcl_flatten_ops;
    case KDCL_LAYER_BATCHNORM: return &kdcl_batchnorm_ops;
    case KDCL_LAYER_RESIDUAL: return &kdcl_residual_ops;
    default: return NULL;
    }
}

kdcl_status kdcl_act_rows(kdcl_tensor *t, size_t batch)
{
    if (!t->buf) return KDCL_OK;
    size_t sh[2] = {batch, t->shape[1]};
    return kdcl_tensor_reshape(t, 2, sh);
}

kdcl_status kdcl_model_alloc_rows(kdcl_model *m, kdcl_tensor *t, kdcl_elem type,
                                  size_t per_example)
{
    kdcl_status s = kdcl_tensor_alloc2(m->ctx, t, type, m->max_batch, per_example);
    if (!s) s = kdcl_act_rows(t, m->batch);
    if (!s) {
        uint64_t row = (uint64_t)per_example * kdcl_elem_size(type);
        m->row_bytes += row;
        if (row > m->max_row_bytes) m->max_row_bytes = row;
    }
    return s;
}

kdcl_status kdcl_layer_alloc_act(kdcl_model *m, kdcl_tensor *t, size_t per_example)
{
    return kdcl_model_alloc_rows(m, t, KDCL_F32, per_example);
}

kdcl_status kdcl_layer_alloc_out(kdcl_model *m, kdcl_layer *l)
{
    kdcl_status s = kdcl_layer_alloc_act(m, &l->y_own, l->out_dim);
    if (!s) s = kdcl_layer_alloc_act(m, &l->dy_own, l->out_dim);
    return s;
}

void kdcl_layer_param(kdcl_layer *l, const char *suffix, size_t ndim, const size_t *shape,
                      size_t rows, size_t cols, size_t fan_in, float init_value)
{
    kdcl_ltensor *p = &l->p[l->n_p++];
    memset(p, 0, sizeof *p);
    p->suffix = suffix;
    p->ndim = ndim;
    p->n = 1;
    for (size_t i = 0; i < ndim; i++) {
        p->shape[i] = shape[i];
        p->n *= shape[i];
    }
    p->rows = rows;
    p->cols = cols;
    p->fan_in_init = fan_in > 0;
    p->fan_in = fan_in;
    p->init_value = init_value;
}

void kdcl_layer_stat(kdcl_layer *l, const char *suffix, size_t n, float init_value)
{
    kdcl_ltensor *p = &l->st[l->n_st++];
    memset(p, 0, sizeof *p);
    p->suffix = suffix;
    p->ndim = 1;
    p->shape[0] = p->n = n;
    p->init_value = init_value;
}

kdcl_status kdcl_layer_copy(kdcl_model *m, const kdcl_tensor *src, kdcl_tensor *dst, size_t n)
{
    cl_int e = clEnqueueCopyBuffer(kdcl_ctx_queue(m->ctx), src->buf, dst->buf, 0, 0,
                                   n * sizeof(float), 0, NULL, NULL);
    if (e != CL_SUCCESS)
        return kdcl_set_error(KDCL_ERR_OPENCL, "clEnqueueCopyBuffer(%zu floats) failed: %s", n,
                              kdcl_cl_error_name(e));
    return kdcl_prof_op(m->ctx, "copy");
}

kdcl_tensor *kdcl_list_out(kdcl_layer_list *list, kdcl_tensor *x)
{
    return list->n ? list->l[list->n - 1].y : x;
}

kdcl_tensor *kdcl_list_dout(kdcl_layer_list *list, kdcl_tensor *dx)
{
    return list->n ? list->l[list->n - 1].dy : dx;
}

static int layer_has_params(const kdcl_layer *l)
{
    if (l->n_p) return 1;
    if (l->spec->kind == KDCL_LAYER_RESIDUAL) {
        const kdcl_layer_list *lists = l->priv;
        return kdcl_list_has_params(&lists[0]) || kdcl_list_has_params(&lists[1]);
    }
    return 0;
}

int kdcl_list_has_params(const kdcl_layer_list *list)
{
    for (size_t i = 0; i < list->n; i++)
        if (layer_has_params(&list->l[i])) return 1;
    return 0;
}

static const char *kind_name(kdcl_layer_kind k)
{
    static const char *names[] = {"Linear", "Conv2d",  "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
                                  "ReLU",   "Dropout", "Flatten",   "BatchNorm", "Residual"};
    return (unsigned)k < KDCL_LAYER_KINDS ? names[k] : "?";
}

kdcl_status kdcl_list_create(kdcl_model *m, kdcl_layer_list *list, const kdcl_layer_spec *specs,
                             size_t n, kdcl_shape3 in, kdcl_tensor *x, kdcl_tensor *dx,
                             const char *prefix, size_t top, int may_alias_input,
                             uint32_t *stream)
{
    list->n = 0;
    list->l = NULL;
    if (n == 0) return KDCL_OK; /* an identity shortcut */
    list->l = calloc(n, sizeof *list->l);
    if (n && !list->l) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    kdcl_shape3 *outs = malloc((n ? n : 1) * sizeof *outs);
    if (!outs) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    kdcl_status s = prefix[0] ? kdcl_spec_infer_branch(specs, n, in, outs)
                              : kdcl_spec_infer(specs, n, in, outs);
    if (s) {
        free(outs);
        return s;
    }
    kdcl_shape3 cur = in;
    kdcl_tensor *cx = x, *cdx = dx;
    for (size_t i = 0; i < n; i++) {
        kdcl_layer *l = &list->l[i];
        l->ops = ops_of(specs[i].kind);
        l->spec = &specs[i];
        l->in = cur;
        l->out = outs[i];
        l->in_dim = cur.c * cur.h * cur.w;
        l->out_dim = outs[i].c * outs[i].h * outs[i].w;
        l->top = prefix[0] ? top : i;
        snprintf(l->name, sizeof l->name, "%s%zu", prefix, i);
        l->x = cx;
        l->dx = cdx;
        l->y = &l->y_own;
        l->dy = &l->dy_own;
        l->stream = *stream;
        list->n = i + 1;
        if (!l->ops) {
            s = kdcl_set_error(KDCL_ERR_INVALID_ARG, "layer %s: unknown layer type %d", l->name,
                               (int)specs[i].kind);
            break;
        }
        /* in place only where the input is not needed by anyone else */
        l->inplace = (specs[i].kind == KDCL_LAYER_RELU || specs[i].kind == KDCL_LAYER_DROPOUT ||
                      specs[i].kind == KDCL_LAYER_FLATTEN) &&
                     (i > 0 || may_alias_input);
        if ((s = l->ops->create(l, m))) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", kdcl_last_error());
            s = kdcl_set_error(s, "layer %zu (%s%s%s): %s", l->top + 1, kind_name(specs[i].kind),
                               prefix[0] ? " in " : "", prefix, msg);
            break;
        }
        if (l->inplace) {
            l->y = l->x;
            l->dy = l->dx;
        }
        if (specs[i].kind == KDCL_LAYER_LINEAR || specs[i].kind == KDCL_LAYER_CONV2D) (*stream)++;
        cur = outs[i];
        cx = l->y;
        cdx = l->dy;
    }
    free(outs);
    if (s) return s;
    /* fusion: Linear / Conv2d followed by ReLU [Dropout] in the same list */
    for (size_t i = 0; i + 1 < n; i++) {
        kdcl_layer *l = &list->l[i];
        if (specs[i].kind != KDCL_LAYER_LINEAR && specs[i].kind != KDCL_LAYER_CONV2D) continue;
        if (specs[i + 1].kind != KDCL_LAYER_RELU) continue;
        l->fuse_relu = 1;
        list->l[i + 1].fused_away = 1;
        if (i + 2 < n && specs[i + 2].kind == KDCL_LAYER_DROPOUT) {
            l->fuse_drop = &list->l[i + 2];
            list->l[i + 2].fused_away = 1;
        }
    }
    return KDCL_OK;
}

void kdcl_list_destroy(kdcl_ctx *ctx, kdcl_layer_list *list)
{
    for (size_t i = 0; i < list->n; i++) {
        kdcl_layer *l = &list->l[i];
        if (l->ops && l->ops->destroy) l->ops->destroy(l, ctx);
        for (size_t j = 0; j < l->n_p; j++) {
            kdcl_tensor_free(ctx, &l->p[j].val);
            kdcl_tensor_free(ctx, &l->p[j].grad);
        }
        for (size_t j = 0; j < l->n_st; j++) kdcl_tensor_free(ctx, &l->st[j].val);
        kdcl_tensor_free(ctx, &l->y_own);
        kdcl_tensor_free(ctx, &l->dy_own);
    }
    free(list->l);
    list->l = NULL;
    list->n = 0;
}

const char *kdcl_layer_type_name(const kdcl_layer *l)
{
    if (l->spec->kind == KDCL_LAYER_BATCHNORM) return l->in.flat ? "BatchNorm1d" : "BatchNorm2d";
    return kind_name(l->spec->kind);
}

/* With a profile open on the context, the top-level layers are scopes of
 * their own ("3 Linear fwd"): the sections at KDCL_PROF_LAYERS detail. */
static kdcl_status prof_layer(kdcl_model *m, kdcl_layer_list *list, const kdcl_layer *l,
                              const char *what)
{
    if (list != &m->top || !kdcl_ctx_profiler(m->ctx)) return KDCL_OK;
    char name[64];
    snprintf(name, sizeof name, "%s %s %s", l->name, kdcl_layer_type_name(l), what);
    return kdcl_prof_scope(m->ctx, KDCL_PROF_LAYERS, name);
}

kdcl_status kdcl_list_forward(kdcl_model *m, kdcl_layer_list *list, int train, uint64_t seed,
                              uint64_t step)
{
    for (size_t i = 0; i < list->n; i++) {
        kdcl_layer *l = &list->l[i];
        if (l->fused_away) continue;
        kdcl_status s = prof_layer(m, list, l, "fwd");
        if (!s) s = l->ops->forward(l, m, train, seed, step);
        if (s) return s;
    }
    return KDCL_OK;
}

static kdcl_status apply_pending(kdcl_model *m, size_t top)
{
    for (size_t k = 0; k < m->n_pending; k++) {
        if (m->pending[k].layer != top) continue;
        kdcl_layer *l = &m->top.l[top];
        kdcl_status s = kdcl_op_axpy(m->ctx, l->dy, m->pending[k].g, m->batch * l->out_dim,
                                     m->pending[k].alpha);
        if (s) return s;
    }
    return KDCL_OK;
}

kdcl_status kdcl_list_backward(kdcl_model *m, kdcl_layer_list *list, int need_dx)
{
    /* without need_dx, nothing before the first layer with parameters needs a gradient */
    size_t first = 0;
    if (!need_dx) {
        first = list->n;
        for (size_t i = 0; i < list->n; i++)
            if (layer_has_params(&list->l[i])) {
                first = i;
                break;
            }
    }
    for (size_t i = list->n; i-- > first;) {
        kdcl_layer *l = &list->l[i];
        kdcl_status s;
        if (!l->fused_away && (s = prof_layer(m, list, l, "bwd"))) return s;
        if (list == &m->top && (s = apply_pending(m, i))) return s;
        if (l->fused_away) continue;
        if ((s = l->ops->backward(l, m, need_dx || i > first))) return s;
    }
    return KDCL_OK;
}

/* ---- create / destroy ---- */

void kdcl_model_destroy(kdcl_model *m)
{
    if (!m) return;
    kdcl_ctx *ctx = m->ctx;
    kdcl_list_destroy(ctx, &m->top);
    kdcl_tensor_free(ctx, &m->input);
    kdcl_tensor_free(ctx, &m->params);
    kdcl_tensor_free(ctx, &m->grads);
    kdcl_tensor_free(ctx, &m->stats);
    kdcl_tensor_free(ctx, &m->ws);
    kdcl_model_spec_free(&m->spec);
    free(m->ranges);
    free(m);
}

/* Every layer in creation order (nested lists included), for the carving pass. */
typedef kdcl_status (*layer_visit)(kdcl_model *m, kdcl_layer *l, void *user);
static kdcl_status visit(kdcl_model *m, kdcl_layer_list *list, layer_visit f, void *user)
{
    for (size_t i = 0; i < list->n; i++) {
        kdcl_layer *l = &list->l[i];
        kdcl_status s = f(m, l, user);
        if (s) return s;
        if (l->spec->kind == KDCL_LAYER_RESIDUAL) {
            kdcl_layer_list *lists = l->priv;
            if ((s = visit(m, &lists[0], f, user)) || (s = visit(m, &lists[1], f, user)))
                return s;
        }
    }
    return KDCL_OK;
}

typedef struct bn_counters {
    int64_t *v;
    size_t n, cap;
    int set;
} bn_counters;

static kdcl_status bn_counter(kdcl_model *m, kdcl_layer *l, void *user)
{
    (void)m;
    bn_counters *c = user;
    if (l->spec->kind != KDCL_LAYER_BATCHNORM) return KDCL_OK;
    if (c->n < c->cap) {
        if (c->set) l->batches_tracked = c->v[c->n];
        else c->v[c->n] = l->batches_tracked;
    }
    c->n++;
    return KDCL_OK;
}

size_t kdcl_model_bn_counters(kdcl_model *m, int64_t *v, size_t cap, int set)
{
    bn_counters c = {v, 0, v ? cap : 0, set};
    visit(m, &m->top, bn_counter, &c);
    return c.n;
}

typedef struct carve_state {
    size_t align, poff, soff, ws, n_ranges, n_params;
    int pass; /* 0: sizes, 1: views */
} carve_state;

static kdcl_status carve(kdcl_model *m, kdcl_layer *l, void *user)
{
    carve_state *c = user;
    kdcl_status s;
    if (l->ws_need > c->ws) c->ws = l->ws_need;
    for (size_t j = 0; j < l->n_p; j++) {
        kdcl_ltensor *p = &l->p[j];
        if (c->pass == 0) {
            p->offset = c->poff;
            c->poff = round_up(c->poff + p->n, c->align);
            c->n_ranges++;
            c->n_params += p->n;
            continue;
        }
        if ((s = kdcl_tensor_view(m->ctx, &m->params, p->offset, p->ndim, p->shape, &p->val)) ||
            (s = kdcl_tensor_view(m->ctx, &m->grads, p->offset, p->ndim, p->shape, &p->grad)))
            return s;
        kdcl_param_range *r = &m->ranges[m->n_ranges++];
        r->offset = p->offset;
        r->n = p->n;
        r->rows = p->rows;
        r->cols = p->cols;
        r->layer = l->top;
        snprintf(r->name, sizeof r->name, "%s.%s", l->name, p->suffix);
    }
    for (size_t j = 0; j < l->n_st; j++) {
        kdcl_ltensor *p = &l->st[j];
        if (c->pass == 0) {
            p->offset = c->soff;
            c->soff = round_up(c->soff + p->n, c->align);
            continue;
        }
        if ((s = kdcl_tensor_view(m->ctx, &m->stats, p->offset, 1, p->shape, &p->val))) return s;
    }
    return KDCL_OK;
}

static kdcl_status model_create(kdcl_ctx *ctx, const kdcl_model_spec *spec, size_t c, size_t h,
                                size_t w, size_t max_batch, kdcl_model **out)
{
    *out = NULL;
    const uint64_t live0 = kdcl_ctx_mem_stats(ctx).live_bytes;
    if (max_batch == 0) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "batch size must be >= 1");
    if (c == 0 || h == 0 || w == 0)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "model input %zux%zux%zu has a zero size", c,
                              h, w);
    if (!spec || spec->n == 0)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "the architecture has no layers");
    kdcl_model *m = calloc(1, sizeof *m);
    if (!m) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    m->ctx = ctx;
    m->max_batch = m->batch = max_batch;
    m->in = (kdcl_shape3){c, h, w, 0};
    m->in_dim = c * h * w;
    for (int i = 0; i < 4; i++) {
        m->mean[i] = 0.0f;
        m->std[i] = 1.0f;
    }
    kdcl_status s;
    if ((s = kdcl_model_spec_copy(spec, &m->spec))) goto fail;
    if (m->spec.in_features && m->spec.in_features != m->in_dim) {
        s = kdcl_set_error(KDCL_ERR_INVALID_ARG,
                           "the architecture takes %zu inputs but the examples have %zu (%zux%zux%zu)",
                           m->spec.in_features, m->in_dim, c, h, w);
        goto fail;
    }
    if ((s = kdcl_model_alloc_rows(m, &m->input, KDCL_F32, m->in_dim))) goto fail;
    uint32_t stream = 0;
    if ((s = kdcl_list_create(m, &m->top, m->spec.layers, m->spec.n, m->in, &m->input,
                              &m->dinput, "", 0, 1, &stream)))
        goto fail;
    {
        kdcl_layer *last = &m->top.l[m->top.n - 1];
        if (!last->out.flat) {
            s = kdcl_set_error(KDCL_ERR_INVALID_ARG,
                               "the last layer (%s) must give a flat output (end with flatten/linear)",
                               last->name);
            goto fail;
        }
        m->classes = last->out_dim;
    }
    m->first_param_top = m->top.n;
    for (size_t i = 0; i < m->top.n; i++)
        if (layer_has_params(&m->top.l[i])) {
            m->first_param_top = i;
            break;
        }
    carve_state cs = {kdcl_align_elems(ctx, KDCL_F32), 0, 0, 0, 0, 0, 0};
    if ((s = visit(m, &m->top, carve, &cs))) goto fail;
    m->n_params = cs.n_params;
    m->ranges = calloc(cs.n_ranges ? cs.n_ranges : 1, sizeof *m->ranges);
    if (!m->ranges) {
        s = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        goto fail;
    }
    size_t pn[1] = {cs.poff ? cs.poff : 1}, sn[1] = {cs.soff ? cs.soff : 1},
           wn[1] = {cs.ws ? cs.ws : 1};
    if ((s = kdcl_tensor_alloc(ctx, &m->params, KDCL_F32, 1, pn)) ||
        (s = kdcl_tensor_alloc(ctx, &m->grads, KDCL_F32, 1, pn)) ||
        (s = kdcl_tensor_alloc(ctx, &m->stats, KDCL_F32, 1, sn)) ||
        (s = kdcl_tensor_fill(ctx, &m->params, 0.0f)) ||
        (s = kdcl_tensor_fill(ctx, &m->grads, 0.0f)) ||
        (s = kdcl_tensor_fill(ctx, &m->stats, 0.0f)))
        goto fail;
    if (cs.ws && (s = kdcl_tensor_alloc(ctx, &m->ws, KDCL_F32, 1, wn))) goto fail;
    cs.pass = 1;
    if ((s = visit(m, &m->top, carve, &cs))) goto fail;
    /* the workspace grows with the batch (columns of every image) */
    m->ws_row_bytes = (uint64_t)((cs.ws + max_batch - 1) / max_batch) * sizeof(float);
    m->mem_bytes = kdcl_ctx_mem_stats(ctx).live_bytes - live0;
    *out = m;
    return KDCL_OK;
fail:
    kdcl_model_destroy(m);
    return s;
}

kdcl_status kdcl_model_memory(const kdcl_model *m, size_t batch, kdcl_model_mem *out)
{
    memset(out, 0, sizeof *out);
    if (batch == 0) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_model_memory: batch 0");
    const uint64_t per = m->row_bytes + m->ws_row_bytes;
    const uint64_t own_rows = per * (uint64_t)m->max_batch;
    /* what the model holds apart from its rows, plus two more copies of the
     * parameters for the optimiser's state (Adam's m and v; SGD needs one) */
    const uint64_t pbytes = (uint64_t)m->params.capacity * sizeof(float);
    out->fixed = (m->mem_bytes > own_rows ? m->mem_bytes - own_rows : 0) + 2 * pbytes;
    out->per_example = per;
    const long double act = (long double)per * (long double)batch;
    const long double big = (long double)(m->max_row_bytes > m->ws_row_bytes ? m->max_row_bytes
                                                                             : m->ws_row_bytes) *
                            (long double)batch;
    const long double cap = (long double)UINT64_MAX / 2;
    out->activations = act > cap ? (uint64_t)cap : (uint64_t)act;
    out->total = out->fixed + out->activations;
    out->largest = big > cap ? (uint64_t)cap : (uint64_t)big;
    if (pbytes > out->largest) out->largest = pbytes;
    return KDCL_OK;
}

/* "1.5 GiB" */
static void fmt_bytes(char *buf, size_t size, uint64_t b)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double v = (double)b;
    int u = 0;
    while (v >= 1024 && u < 6) v /= 1024, u++;
    if (u == 0)
        snprintf(buf, size, "%llu B", (unsigned long long)b);
    else
        snprintf(buf, size, "%.1f %s", v, unit[u]);
}

kdcl_status kdcl_model_check_memory(const kdcl_model *m, size_t batch)
{
    kdcl_model_mem mm;
    kdcl_status s = kdcl_model_memory(m, batch, &mm);
    if (s) return s;
    const kdcl_device_info *d = kdcl_ctx_device(m->ctx);
    if ((!d->global_mem || mm.total <= d->global_mem) &&
        (!d->max_alloc || mm.largest <= d->max_alloc))
        return KDCL_OK;
    char t[32], p[32], a[32], l[32], g[32], x[32];
    fmt_bytes(t, sizeof t, mm.total);
    fmt_bytes(p, sizeof p, mm.fixed);
    fmt_bytes(a, sizeof a, mm.activations);
    fmt_bytes(l, sizeof l, mm.largest);
    fmt_bytes(g, sizeof g, d->global_mem);
    fmt_bytes(x, sizeof x, d->max_alloc);
    return kdcl_set_error(KDCL_ERR_OOM,
                          "batch %zu needs %s of device memory (parameters, gradients and "
                          "optimiser state %s, activations %s, largest buffer %s); %s has %s "
                          "(largest buffer %s): use a smaller batch or model",
                          batch, t, p, a, l, d->name, g, x);
}

kdcl_status kdcl_model_create(kdcl_ctx *ctx, const kdcl_model_spec *spec, size_t c, size_t h,
                              size_t w, size_t max_batch, kdcl_model **out)
{
    *out = NULL;
    if (max_batch > 1) {
        /* the same model for one example tells what a batch needs, before
         * anything that size is allocated */
        kdcl_model *probe = NULL;
        kdcl_status s = model_create(ctx, spec, c, h, w, 1, &probe);
        if (!s) s = kdcl_model_check_memory(probe, max_batch);
        kdcl_model_destroy(probe);
        if (s) return s;
    }
    return model_create(ctx, spec, c, h, w, max_batch, out);
}

/* ---- init and parameters ---- */

typedef struct init_state {
    kdcl_rng r;
    float *h;       /* host image of the parameter buffer */
    float *st;      /* host image of the statistics buffer */
} init_state;

static kdcl_status init_layer(kdcl_model *m, kdcl_layer *l, void *user)
{
    (void)m;
    init_state *is = user;
    for (size_t j = 0; j < l->n_p; j++) {
        kdcl_ltensor *p = &l->p[j];
        float *d = is->h + p->offset;
        if (!p->fan_in_init) {
            for (size_t i = 0; i < p->n; i++) d[i] = p->init_value;
            continue;
        }
        double std = sqrt(2.0 / (double)p->fan_in);
        for (size_t i = 0; i < p->n; i++) {
            /* Box-Muller, one normal per pair of uniforms (as kdcl always drew them) */
            double u1 = kdcl_rng_uniform(&is->r), u2 = kdcl_rng_uniform(&is->r);
            if (u1 < 1e-300) u1 = 1e-300;
            d[i] = (float)(std * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
        }
    }
    for (size_t j = 0; j < l->n_st; j++)
        for (size_t i = 0; i < l->st[j].n; i++) is->st[l->st[j].offset + i] = l->st[j].init_value;
    l->batches_tracked = 0;
    return KDCL_OK;
}

kdcl_status kdcl_model_init(kdcl_model *m, uint64_t seed)
{
    init_state is;
    kdcl_rng_seed(&is.r, seed ^ 0x5eed1417u);
    is.h = calloc(m->params.numel, sizeof *is.h);
    is.st = calloc(m->stats.numel, sizeof *is.st);
    kdcl_status s;
    if (!is.h || !is.st) {
        s = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        goto done;
    }
    if ((s = visit(m, &m->top, init_layer, &is)) ||
        (s = kdcl_tensor_upload(m->ctx, &m->params, 0, m->params.numel, is.h)) ||
        (s = kdcl_tensor_upload(m->ctx, &m->stats, 0, m->stats.numel, is.st)))
        goto done;
done:
    free(is.h);
    free(is.st);
    return s;
}

const kdcl_param_range *kdcl_model_param_ranges(const kdcl_model *m, size_t *n)
{
    *n = m->n_ranges;
    return m->ranges;
}

kdcl_status kdcl_model_get_params(kdcl_model *m, float *h)
{
    for (size_t i = 0; i < m->n_ranges; i++) {
        kdcl_status s = kdcl_tensor_download(m->ctx, &m->params, m->ranges[i].offset,
                                             m->ranges[i].n, h);
        if (s) return s;
        h += m->ranges[i].n;
    }
    return KDCL_OK;
}

kdcl_status kdcl_model_set_params(kdcl_model *m, const float *h)
{
    for (size_t i = 0; i < m->n_ranges; i++) {
        kdcl_status s =
            kdcl_tensor_upload(m->ctx, &m->params, m->ranges[i].offset, m->ranges[i].n, h);
        if (s) return s;
        h += m->ranges[i].n;
    }
    return KDCL_OK;
}

/* ---- accessors ---- */

kdcl_ctx *kdcl_model_ctx(const kdcl_model *m) { return m->ctx; }
const kdcl_model_spec *kdcl_model_spec_of(const kdcl_model *m) { return &m->spec; }
void kdcl_model_input_shape(const kdcl_model *m, size_t *c, size_t *h, size_t *w)
{
    *c = m->in.c;
    *h = m->in.h;
    *w = m->in.w;
}
size_t kdcl_model_in_dim(const kdcl_model *m) { return m->in_dim; }
size_t kdcl_model_classes(const kdcl_model *m) { return m->classes; }
size_t kdcl_model_max_batch(const kdcl_model *m) { return m->max_batch; }
size_t kdcl_model_batch(const kdcl_model *m) { return m->batch; }
size_t kdcl_model_n_layers(const kdcl_model *m) { return m->top.n; }
kdcl_layer_kind kdcl_model_layer_kind(const kdcl_model *m, size_t i)
{
    return i < m->top.n ? m->top.l[i].spec->kind : KDCL_LAYER_KINDS;
}
size_t kdcl_model_layer_out_dim(const kdcl_model *m, size_t i)
{
    return i < m->top.n ? m->top.l[i].out_dim : 0;
}
size_t kdcl_model_n_params(const kdcl_model *m) { return m->n_params; }
kdcl_tensor *kdcl_model_input(kdcl_model *m) { return &m->input; }
kdcl_tensor *kdcl_model_logits(kdcl_model *m) { return m->top.l[m->top.n - 1].y; }
kdcl_tensor *kdcl_model_dlogits(kdcl_model *m) { return m->top.l[m->top.n - 1].dy; }
const kdcl_tensor *kdcl_model_output(kdcl_model *m, size_t i)
{
    return i < m->top.n ? m->top.l[i].y : NULL;
}
kdcl_tensor *kdcl_model_params(kdcl_model *m) { return &m->params; }
kdcl_tensor *kdcl_model_grads(kdcl_model *m) { return &m->grads; }

static kdcl_status rows_of_layer(kdcl_model *m, kdcl_layer *l, void *user)
{
    (void)m;
    const size_t batch = *(const size_t *)user;
    kdcl_status s = kdcl_act_rows(&l->y_own, batch);
    return s ? s : kdcl_act_rows(&l->dy_own, batch);
}

kdcl_status kdcl_model_set_batch(kdcl_model *m, size_t batch)
{
    if (batch == 0 || batch > m->max_batch)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "batch of %zu rows outside 1..%zu", batch,
                              m->max_batch);
    if (batch == m->batch) return KDCL_OK;
    kdcl_status s;
    if ((s = kdcl_act_rows(&m->input, batch)) || (s = visit(m, &m->top, rows_of_layer, &batch)))
        return s;
    m->batch = batch;
    return KDCL_OK;
}

kdcl_status kdcl_model_set_input_norm(kdcl_model *m, const float *mean, const float *std)
{
    /* the normalised pixels (u8 / 255 - mean) / std stay within 1e9: a tiny std
     * (or a huge mean) would overflow the input transform's coefficients and
     * give NaN losses instead of an error */
    for (size_t c = 0; c < m->in.c && c < 4; c++)
        if (!isfinite(mean[c]) || !isfinite(std[c]) || !(std[c] > 0) ||
            !((1.0 + fabs((double)mean[c])) / (double)std[c] <= KDCL_INPUT_NORM_MAX))
            return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                  "input normalisation of channel %zu: mean %g, std %g (need "
                                  "finite values, std > 0 and (1 + |mean|) / std <= %g)",
                                  c, (double)mean[c], (double)std[c], KDCL_INPUT_NORM_MAX);
    for (size_t c = 0; c < m->in.c && c < 4; c++) {
        m->mean[c] = mean[c];
        m->std[c] = std[c];
    }
    return KDCL_OK;
}

void kdcl_model_input_norm(const kdcl_model *m, float *mean, float *std)
{
    for (size_t c = 0; c < m->in.c && c < 4; c++) {
        mean[c] = m->mean[c];
        std[c] = m->std[c];
    }
}

/* x = u8 * scale + shift with scale = 1 / (255 std), shift = -mean / std; with
 * mean 0 and std 1 exactly the 1/255 conversion kdcl always used. */
static void norm_coeffs(const kdcl_model *m, float *scale, float *shift)
{
    for (size_t c = 0; c < 4; c++) {
        scale[c] = (float)(1.0 / (255.0 * (double)m->std[c]));
        shift[c] = (float)(-(double)m->mean[c] / (double)m->std[c]);
    }
}

kdcl_status kdcl_model_load_u8(kdcl_model *m, const kdcl_tensor *u8, size_t count, int max_shift,
                               int flip, uint64_t seed, uint64_t step)
{
    kdcl_status s = kdcl_model_set_batch(m, count);
    if (s) return s;
    float scale[4], shift[4];
    norm_coeffs(m, scale, shift);
    /* one channel without flips, or an older MLP's HWC inputs: the conversion
     * kdcl always used (bit for bit); otherwise NCHW with per-channel transforms */
    if (flip && m->input_hwc && m->in.c > 1)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "horizontal flips need a model with NCHW input (this checkpoint "
                              "takes HWC-flattened images)");
    if ((m->in.c == 1 || m->input_hwc) && !flip)
        return kdcl_op_jitter(m->ctx, u8, &m->input, count, m->in.h, m->in.w, m->in.c, max_shift,
                              seed, step, scale[0], shift[0]);
    return kdcl_op_input_u8(m->ctx, u8, &m->input, count, m->in.h, m->in.w, m->in.c, max_shift,
                            flip, seed, step, scale, shift);
}

kdcl_status kdcl_model_forward(kdcl_model *m, int train, uint64_t seed, uint64_t step)
{
    return kdcl_list_forward(m, &m->top, train, seed, step);
}

kdcl_status kdcl_model_forward_u8(kdcl_model *m, const kdcl_tensor *u8, size_t count)
{
    kdcl_status s = kdcl_model_load_u8(m, u8, count, 0, 0, 0, 0);
    if (!s) s = kdcl_model_forward(m, 0, 0, 0);
    return s;
}

kdcl_status kdcl_model_add_grad(kdcl_model *m, size_t i, const kdcl_tensor *g, float alpha)
{
    if (i >= m->top.n)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "add_grad: layer %zu of %zu", i, m->top.n);
    if (!g || g->type != KDCL_F32 || g->numel < m->batch * m->top.l[i].out_dim)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "add_grad: layer %zu needs an F32 gradient of %zu x %zu", i,
                              m->batch, m->top.l[i].out_dim);
    if (!isfinite(alpha))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "add_grad: alpha = %g", (double)alpha);
    if (m->n_pending == KDCL_MAX_PENDING_GRADS)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "add_grad: more than %d pending gradients",
                              KDCL_MAX_PENDING_GRADS);
    m->pending[m->n_pending++] = (kdcl_pending_grad){i, g, alpha};
    return KDCL_OK;
}

kdcl_status kdcl_model_backward(kdcl_model *m)
{
    kdcl_status s = kdcl_list_backward(m, &m->top, 0);
    m->n_pending = 0;
    return s;
}

/* ---- output layer ---- */

kdcl_status kdcl_model_output_layer(const kdcl_model *m, kdcl_param_range *weight,
                                    kdcl_param_range *bias)
{
    const kdcl_layer *l = NULL;
    for (size_t i = m->top.n; i-- > 0;)
        if (m->top.l[i].spec->kind == KDCL_LAYER_LINEAR) {
            l = &m->top.l[i];
            break;
        }
    if (!l || l->out_dim != m->classes)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "the model does not end in a Linear output layer of %zu classes",
                              m->classes);
    for (size_t i = 0; i < m->n_ranges; i++) {
        const kdcl_param_range *r = &m->ranges[i];
        char w[80], b[80];
        snprintf(w, sizeof w, "%s.weight", l->name);
        snprintf(b, sizeof b, "%s.bias", l->name);
        if (weight && !strcmp(r->name, w)) *weight = *r;
        if (bias && !strcmp(r->name, b)) *bias = *r;
    }
    if (bias && l->n_p < 2)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "the output layer %s has no bias", l->name);
    return KDCL_OK;
}

kdcl_status kdcl_model_adjust_bias(kdcl_model *m, const size_t *classes, size_t n_classes,
                                   float offset)
{
    kdcl_param_range br;
    kdcl_status s = kdcl_model_output_layer(m, NULL, &br);
    if (s) return s;
    const size_t K = br.n;
    float *b = malloc(K * sizeof *b);
    if (!b) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    s = kdcl_tensor_download(m->ctx, &m->params, br.offset, K, b);
    for (size_t i = 0; !s && i < n_classes; i++) {
        if (classes[i] >= K) {
            s = kdcl_set_error(KDCL_ERR_INVALID_ARG, "class %zu is not below %zu", classes[i], K);
            break;
        }
        b[classes[i]] += offset;
    }
    if (!s) s = kdcl_tensor_upload(m->ctx, &m->params, br.offset, K, b);
    free(b);
    return s;
}

/* ---- description ---- */

static kdcl_status macs_of(kdcl_model *m, kdcl_layer *l, void *user)
{
    (void)m;
    double *macs = user;
    for (size_t j = 0; j < l->n_p; j++)
        if (l->p[j].rows) /* weight matrices: rows x cols per output position */
            *macs += (double)l->p[j].n *
                     (l->spec->kind == KDCL_LAYER_CONV2D ? (double)(l->out.h * l->out.w) : 1.0);
    return KDCL_OK;
}

double kdcl_model_macs(const kdcl_model *m)
{
    double macs = 0;
    visit((kdcl_model *)m, (kdcl_layer_list *)&m->top, macs_of, &macs);
    return macs;
}

/* ---- describing a model ---- */

static int is_mlp(const kdcl_model *m)
{
    for (size_t i = 0; i < m->top.n; i++) {
        kdcl_layer_kind k = m->top.l[i].spec->kind;
        if (k != KDCL_LAYER_LINEAR && k != KDCL_LAYER_RELU && k != KDCL_LAYER_DROPOUT &&
            k != KDCL_LAYER_FLATTEN)
            return 0;
        if (k == KDCL_LAYER_FLATTEN && i != 0) return 0;
    }
    return 1;
}

void kdcl_model_describe(const kdcl_model *m, char *buf, size_t size)
{
    size_t off = 0;
    buf[0] = '\0';
    if (is_mlp(m)) {
        off += (size_t)snprintf(buf, size, "%zu", m->in_dim);
        for (size_t i = 0; i < m->top.n && off < size; i++)
            if (m->top.l[i].spec->kind == KDCL_LAYER_LINEAR)
                off += (size_t)snprintf(buf + off, size - off, "-%zu", m->top.l[i].out_dim);
        return;
    }
    /* a compact one-line summary: layer types with output shapes */
    for (size_t i = 0; i < m->top.n && off < size; i++) {
        const kdcl_layer *l = &m->top.l[i];
        static const char *short_names[] = {"linear", "conv", "maxpool", "avgpool", "gap",
                                            "relu",   "dropout", "flatten", "bn", "res"};
        int w = l->out.flat ? snprintf(buf + off, size - off, "%s%s(%zu)", i ? "," : "",
                                       short_names[l->spec->kind], l->out.c)
                            : snprintf(buf + off, size - off, "%s%s(%zux%zux%zu)", i ? "," : "",
                                       short_names[l->spec->kind], l->out.c, l->out.h, l->out.w);
        if (w < 0) break;
        off += (size_t)w;
    }
}

kdcl_status kdcl_model_fit_input(kdcl_model *m, size_t c, size_t h, size_t w)
{
    if (c == m->in.c && h == m->in.h && w == m->in.w) return KDCL_OK;
    const int flat_first = m->top.n && m->top.l[0].spec->kind == KDCL_LAYER_FLATTEN;
    if (!flat_first || c * h * w != m->in_dim || c > 4)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "the model takes %zux%zux%zu inputs (%zu values) but the examples "
                              "are %zux%zux%zu",
                              m->in.c, m->in.h, m->in.w, m->in_dim, c, h, w);
    /* an MLP: any image of in_dim values, one channel's normalisation for all */
    for (size_t k = 1; k < 4; k++) {
        m->mean[k] = m->mean[0];
        m->std[k] = m->std[0];
    }
    m->in = (kdcl_shape3){c, h, w, 0};
    m->top.l[0].in = m->in;
    return KDCL_OK;
}

/* ---- the GEMMs of a step ---- */

typedef struct shape_state {
    kdcl_gemm_shape *out;
    size_t cap, n, B;
} shape_state;

static void add_shape(shape_state *st, size_t m_, size_t n, size_t k, int ta, int tb,
                      size_t count, const char *fmt, const char *name)
{
    if (st->n < st->cap) {
        kdcl_gemm_shape *g = &st->out[st->n];
        *g = (kdcl_gemm_shape){m_, n, k, ta, tb, count, {0}};
        snprintf(g->what, sizeof g->what, fmt, name);
    }
    st->n++;
}

const kdcl_conv_geom *kdcl_conv2d_geom(const kdcl_layer *l);

static kdcl_status shapes_of(kdcl_model *m, kdcl_layer *l, void *user)
{
    shape_state *st = user;
    const size_t B = st->B;
    const int first = l->top <= m->first_param_top && l == &m->top.l[l->top];
    if (l->spec->kind == KDCL_LAYER_LINEAR) {
        const size_t in = l->in_dim, out = l->out_dim;
        add_shape(st, B, out, in, 0, 1, 1, "%.48s Linear forward", l->name);
        add_shape(st, out, in, B, 1, 0, 1, "%.48s Linear dW", l->name);
        if (!first) add_shape(st, B, in, out, 0, 0, 1, "%.48s Linear dX", l->name);
    } else if (l->spec->kind == KDCL_LAYER_CONV2D) {
        /* as kdcl_conv2d_forward / _backward run them at this batch: one GEMM
           over the batch or one per image (src/core/gemm.c) */
        kdcl_conv_product p[3];
        kdcl_conv2d_products(m->ctx, kdcl_conv2d_geom(l), B, p);
        static const char *what[3] = {"%.48s Conv2d forward", "%.48s Conv2d dW",
                                      "%.48s Conv2d dX"};
        for (int i = 0; i < (first ? 2 : 3); i++)
            if (p[i].count) /* 0: no kdcl_gemm (CLBlast's convgemm forward) */
                add_shape(st, p[i].m, p[i].n, p[i].k, p[i].ta, p[i].tb, p[i].count,
                          what[i], l->name);
    }
    return KDCL_OK;
}

size_t kdcl_model_gemm_shapes(const kdcl_model *m, size_t B, kdcl_gemm_shape *out, size_t cap)
{
    shape_state st = {out, cap, 0, B};
    visit((kdcl_model *)m, (kdcl_layer_list *)&m->top, shapes_of, &st);
    return st.n;
}

/* ---- specialists: the same network with another output layer ---- */

kdcl_status kdcl_model_replace_output(kdcl_model *src, size_t n_out, size_t max_batch,
                                      uint64_t seed, kdcl_model **out)
{
    *out = NULL;
    kdcl_param_range wr, br;
    kdcl_status s = kdcl_model_output_layer(src, &wr, &br);
    if (s) return s;
    if (n_out == 0) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "an output layer of 0 classes");
    /* the last Linear of the spec gets n_out outputs */
    kdcl_model_spec spec;
    if ((s = kdcl_model_spec_copy(&src->spec, &spec))) return s;
    for (size_t i = spec.n; i-- > 0;)
        if (spec.layers[i].kind == KDCL_LAYER_LINEAR) {
            spec.layers[i].out = n_out;
            break;
        }
    kdcl_model *m = NULL;
    float *hs = NULL, *hd = NULL;
    s = kdcl_model_create(src->ctx, &spec, src->in.c, src->in.h, src->in.w, max_batch, &m);
    kdcl_model_spec_free(&spec);
    if (s) return s;
    m->input_hwc = src->input_hwc;
    memcpy(m->mean, src->mean, sizeof m->mean);
    memcpy(m->std, src->std, sizeof m->std);
    if ((s = kdcl_model_init(m, seed))) goto done;
    hs = malloc(src->params.numel * sizeof *hs);
    hd = malloc(m->params.numel * sizeof *hd);
    if (!hs || !hd) {
        s = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        goto done;
    }
    if ((s = kdcl_tensor_download(src->ctx, &src->params, 0, src->params.numel, hs)) ||
        (s = kdcl_tensor_download(m->ctx, &m->params, 0, m->params.numel, hd)))
        goto done;
    /* same ranges in the same order except the output layer's sizes */
    for (size_t i = 0; i < m->n_ranges; i++) {
        const kdcl_param_range *a = &src->ranges[i], *b = &m->ranges[i];
        if (!strcmp(a->name, wr.name) || !strcmp(a->name, br.name)) continue;
        memcpy(hd + b->offset, hs + a->offset, a->n * sizeof *hd);
    }
    if ((s = kdcl_tensor_upload(m->ctx, &m->params, 0, m->params.numel, hd)) ||
        (s = kdcl_layer_copy(m, &src->stats, &m->stats, src->stats.numel)))
        goto done;
done:
    free(hs);
    free(hd);
    if (s)
        kdcl_model_destroy(m);
    else
        *out = m;
    return s;
}
