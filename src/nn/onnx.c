/* ONNX export (include/kdcl/onnx.h): the model's layers walked as model.c
 * built them, one ONNX node per layer (none for Dropout), the parameters
 * and BatchNorm statistics read back from the device into initializers
 * named as the checkpoint's tensors. The protobuf messages are those
 * protobuf-c generates from ONNX's onnx.proto (src/onnx/); everything they
 * point to is allocated through one builder that frees it all at the end.
 * The file is packed in memory and written atomically, so a failure leaves
 * nothing behind. */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "kdcl/file.h"
#include "kdcl/kdcl.h"
#include "kdcl/onnx.h"
#include "nn/model_internal.h"

#ifdef KDCL_HAVE_ONNX

#include "onnx.pb-c.h"

#define MAX_ATTRS 8

typedef struct ob {
    Onnx__NodeProto **nodes;
    size_t n_nodes, cap_nodes;
    Onnx__TensorProto **inits;
    size_t n_inits, cap_inits;
    void **mem; /* everything allocated for the messages */
    size_t n_mem, cap_mem;
    const float *hp, *hs; /* host copies of the parameters and statistics */
    kdcl_status err;
} ob;

static void ob_oom(ob *b)
{
    if (!b->err) b->err = kdcl_set_error(KDCL_ERR_OOM, "ONNX export: out of host memory");
}

static void *ob_alloc(ob *b, size_t n)
{
    if (b->err) return NULL;
    if (b->n_mem == b->cap_mem) {
        size_t cap = b->cap_mem ? 2 * b->cap_mem : 256;
        void **m = realloc(b->mem, cap * sizeof *m);
        if (!m) {
            ob_oom(b);
            return NULL;
        }
        b->mem = m;
        b->cap_mem = cap;
    }
    void *p = calloc(1, n ? n : 1);
    if (!p) {
        ob_oom(b);
        return NULL;
    }
    b->mem[b->n_mem++] = p;
    return p;
}

static char *ob_strf(ob *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static char *ob_strf(ob *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        ob_oom(b);
        return NULL;
    }
    char *s = ob_alloc(b, (size_t)n + 1);
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static char *ob_str(ob *b, const char *s) { return s ? ob_strf(b, "%s", s) : NULL; }

static void ob_push_node(ob *b, Onnx__NodeProto *n)
{
    if (b->err) return;
    if (b->n_nodes == b->cap_nodes) {
        size_t cap = b->cap_nodes ? 2 * b->cap_nodes : 64;
        Onnx__NodeProto **a = realloc(b->nodes, cap * sizeof *a);
        if (!a) {
            ob_oom(b);
            return;
        }
        b->nodes = a;
        b->cap_nodes = cap;
    }
    b->nodes[b->n_nodes++] = n;
}

static void ob_push_init(ob *b, Onnx__TensorProto *t)
{
    if (b->err) return;
    if (b->n_inits == b->cap_inits) {
        size_t cap = b->cap_inits ? 2 * b->cap_inits : 64;
        Onnx__TensorProto **a = realloc(b->inits, cap * sizeof *a);
        if (!a) {
            ob_oom(b);
            return;
        }
        b->inits = a;
        b->cap_inits = cap;
    }
    b->inits[b->n_inits++] = t;
}

/* A node op_type(inputs) -> out, named `name`. */
static Onnx__NodeProto *ob_node(ob *b, const char *op, const char *name, const char *const *in,
                                size_t n_in, const char *out)
{
    Onnx__NodeProto *n = ob_alloc(b, sizeof *n);
    char **ins = ob_alloc(b, (n_in ? n_in : 1) * sizeof *ins);
    char **outs = ob_alloc(b, sizeof *outs);
    Onnx__AttributeProto **attrs = ob_alloc(b, MAX_ATTRS * sizeof *attrs);
    if (b->err) return NULL;
    onnx__node_proto__init(n);
    for (size_t i = 0; i < n_in; i++) ins[i] = ob_str(b, in[i]);
    outs[0] = ob_str(b, out);
    n->op_type = ob_str(b, op);
    n->name = ob_str(b, name);
    n->n_input = n_in;
    n->input = ins;
    n->n_output = 1;
    n->output = outs;
    n->attribute = attrs;
    ob_push_node(b, n);
    return b->err ? NULL : n;
}

static Onnx__AttributeProto *ob_attr(ob *b, Onnx__NodeProto *n, const char *name,
                                     Onnx__AttributeProto__AttributeType type)
{
    if (b->err || !n) return NULL;
    if (n->n_attribute >= MAX_ATTRS) {
        b->err = kdcl_set_error(KDCL_ERR_INTERNAL, "ONNX export: too many attributes on %s",
                                n->name);
        return NULL;
    }
    Onnx__AttributeProto *a = ob_alloc(b, sizeof *a);
    if (!a) return NULL;
    onnx__attribute_proto__init(a);
    a->name = ob_str(b, name);
    a->has_type = 1;
    a->type = type;
    n->attribute[n->n_attribute++] = a;
    return a;
}

static void ob_attr_int(ob *b, Onnx__NodeProto *n, const char *name, int64_t v)
{
    Onnx__AttributeProto *a = ob_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    if (!a) return;
    a->has_i = 1;
    a->i = v;
}

static void ob_attr_float(ob *b, Onnx__NodeProto *n, const char *name, float v)
{
    Onnx__AttributeProto *a = ob_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    if (!a) return;
    a->has_f = 1;
    a->f = v;
}

static void ob_attr_ints(ob *b, Onnx__NodeProto *n, const char *name, const int64_t *v, size_t k)
{
    Onnx__AttributeProto *a = ob_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    int64_t *c = ob_alloc(b, k * sizeof *c);
    if (!a || !c) return;
    memcpy(c, v, k * sizeof *c);
    a->n_ints = k;
    a->ints = c;
}

/* An F32 initializer (data borrowed: it must outlive the packing). */
static const char *ob_init(ob *b, const char *name, const size_t *dims, size_t ndim,
                           const float *data, size_t n)
{
    Onnx__TensorProto *t = ob_alloc(b, sizeof *t);
    int64_t *d = ob_alloc(b, (ndim ? ndim : 1) * sizeof *d);
    if (b->err) return NULL;
    onnx__tensor_proto__init(t);
    for (size_t i = 0; i < ndim; i++) d[i] = (int64_t)dims[i];
    t->n_dims = ndim;
    t->dims = d;
    t->has_data_type = 1;
    t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    t->n_float_data = n;
    t->float_data = (float *)(uintptr_t)data;
    t->name = ob_str(b, name);
    ob_push_init(b, t);
    return b->err ? NULL : t->name;
}

/* A tensor value's type: elem_type with dims (a negative dim: the dynamic "N"). */
static Onnx__ValueInfoProto *ob_value_info(ob *b, const char *name, int32_t elem_type,
                                           const int64_t *dims, size_t ndim)
{
    Onnx__ValueInfoProto *v = ob_alloc(b, sizeof *v);
    Onnx__TypeProto *tp = ob_alloc(b, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = ob_alloc(b, sizeof *tt);
    Onnx__TensorShapeProto *sh = ob_alloc(b, sizeof *sh);
    Onnx__TensorShapeProto__Dimension **dv = ob_alloc(b, ndim * sizeof *dv);
    if (b->err) return NULL;
    onnx__value_info_proto__init(v);
    onnx__type_proto__init(tp);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sh);
    for (size_t i = 0; i < ndim; i++) {
        Onnx__TensorShapeProto__Dimension *d = ob_alloc(b, sizeof *d);
        if (!d) return NULL;
        onnx__tensor_shape_proto__dimension__init(d);
        if (dims[i] < 0) {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d->dim_param = ob_str(b, "N");
        } else {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = dims[i];
        }
        dv[i] = d;
    }
    sh->n_dim = ndim;
    sh->dim = dv;
    tt->has_elem_type = 1;
    tt->elem_type = elem_type;
    tt->shape = sh;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    v->name = ob_str(b, name);
    v->type = tp;
    return b->err ? NULL : v;
}

/* ---- layers ---- */

static const kdcl_ltensor *ltensor(const kdcl_layer *l, const char *suffix)
{
    for (size_t i = 0; i < l->n_p; i++)
        if (!strcmp(l->p[i].suffix, suffix)) return &l->p[i];
    for (size_t i = 0; i < l->n_st; i++)
        if (!strcmp(l->st[i].suffix, suffix)) return &l->st[i];
    return NULL;
}

/* The initializer of a layer's tensor (a parameter or a statistic). */
static const char *layer_init(ob *b, const kdcl_layer *l, const char *suffix)
{
    const kdcl_ltensor *t = ltensor(l, suffix);
    if (b->err) return NULL;
    if (!t) {
        b->err = kdcl_set_error(KDCL_ERR_INTERNAL, "ONNX export: layer %s (%s) has no %s", l->name,
                                kdcl_layer_type_name(l), suffix);
        return NULL;
    }
    int stat = t >= l->st && t < l->st + KDCL_LAYER_MAX_STATS;
    char *name = ob_strf(b, "%s.%s", l->name, suffix);
    if (!name) return NULL;
    return ob_init(b, name, t->shape, t->ndim, (stat ? b->hs : b->hp) + t->offset, t->n);
}

static const char *emit_list(ob *b, const kdcl_layer_list *list, const char *x);

/* The nodes of one layer on input x; returns the name of its output. */
static const char *emit_layer(ob *b, const kdcl_layer *l, const char *x)
{
    if (b->err) return NULL;
    const kdcl_layer_spec *sp = l->spec;
    const char *type = kdcl_layer_type_name(l);
    char *out = ob_strf(b, "%s.out", l->name);
    if (!out) return NULL;
    Onnx__NodeProto *n = NULL;
    switch (sp->kind) {
    case KDCL_LAYER_LINEAR: {
        const char *in[3] = {x, layer_init(b, l, "weight"), sp->bias ? layer_init(b, l, "bias") : NULL};
        n = ob_node(b, "Gemm", ob_strf(b, "%s.Gemm", l->name), in, sp->bias ? 3 : 2, out);
        ob_attr_int(b, n, "transB", 1);
        break;
    }
    case KDCL_LAYER_CONV2D: {
        const char *in[3] = {x, layer_init(b, l, "weight"), sp->bias ? layer_init(b, l, "bias") : NULL};
        n = ob_node(b, "Conv", ob_strf(b, "%s.Conv", l->name), in, sp->bias ? 3 : 2, out);
        const int64_t k[2] = {(int64_t)sp->kh, (int64_t)sp->kw},
                      s[2] = {(int64_t)sp->sh, (int64_t)sp->sw},
                      p[4] = {(int64_t)sp->ph, (int64_t)sp->pw, (int64_t)sp->ph, (int64_t)sp->pw},
                      d[2] = {1, 1};
        ob_attr_ints(b, n, "kernel_shape", k, 2);
        ob_attr_ints(b, n, "strides", s, 2);
        ob_attr_ints(b, n, "pads", p, 4);
        ob_attr_ints(b, n, "dilations", d, 2);
        ob_attr_int(b, n, "group", 1);
        break;
    }
    case KDCL_LAYER_MAXPOOL2D:
    case KDCL_LAYER_AVGPOOL2D: {
        const int max = sp->kind == KDCL_LAYER_MAXPOOL2D;
        const char *op = max ? "MaxPool" : "AveragePool";
        n = ob_node(b, op, ob_strf(b, "%s.%s", l->name, op), &x, 1, out);
        const int64_t k[2] = {(int64_t)sp->kh, (int64_t)sp->kw},
                      s[2] = {(int64_t)(sp->sh ? sp->sh : sp->kh), (int64_t)(sp->sw ? sp->sw : sp->kw)},
                      p[4] = {(int64_t)sp->ph, (int64_t)sp->pw, (int64_t)sp->ph, (int64_t)sp->pw};
        ob_attr_ints(b, n, "kernel_shape", k, 2);
        ob_attr_ints(b, n, "strides", s, 2);
        ob_attr_ints(b, n, "pads", p, 4);
        ob_attr_int(b, n, "ceil_mode", 0);
        /* kdcl's average pool divides by KH*KW, padding included */
        if (!max) ob_attr_int(b, n, "count_include_pad", 1);
        break;
    }
    case KDCL_LAYER_GLOBAL_AVGPOOL:
        n = ob_node(b, "GlobalAveragePool", ob_strf(b, "%s.GlobalAveragePool", l->name), &x, 1, out);
        break;
    case KDCL_LAYER_RELU: n = ob_node(b, "Relu", ob_strf(b, "%s.Relu", l->name), &x, 1, out); break;
    case KDCL_LAYER_DROPOUT: return x; /* the identity at inference */
    case KDCL_LAYER_FLATTEN:
        n = ob_node(b, "Flatten", ob_strf(b, "%s.Flatten", l->name), &x, 1, out);
        ob_attr_int(b, n, "axis", 1);
        break;
    case KDCL_LAYER_BATCHNORM: {
        const char *in[5] = {x, layer_init(b, l, "weight"), layer_init(b, l, "bias"),
                             layer_init(b, l, "running_mean"), layer_init(b, l, "running_var")};
        n = ob_node(b, "BatchNormalization", ob_strf(b, "%s.BatchNormalization", l->name), in, 5,
                    out);
        ob_attr_float(b, n, "epsilon", sp->eps);
        ob_attr_float(b, n, "momentum", 1.0f - sp->momentum); /* ONNX: r = m r + (1 - m) x */
        break;
    }
    case KDCL_LAYER_RESIDUAL: {
        const kdcl_layer_list *lists = l->priv;
        const char *yb = emit_list(b, &lists[0], x);
        const char *ys = lists[1].n ? emit_list(b, &lists[1], x) : x;
        const char *in[2] = {yb, ys};
        n = ob_node(b, "Add", ob_strf(b, "%s.Add", l->name), in, 2, out);
        break;
    }
    default:
        b->err = kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                "ONNX export: layer %s (%s) has no ONNX mapping", l->name, type);
        return NULL;
    }
    return b->err ? NULL : out;
}

static const char *emit_list(ob *b, const kdcl_layer_list *list, const char *x)
{
    for (size_t i = 0; i < list->n && x; i++) x = emit_layer(b, &list->l[i], x);
    return b->err ? NULL : x;
}

static char *json_floats(const float *v, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)v[i]));
    char *s = a ? cJSON_PrintUnformatted(a) : NULL;
    cJSON_Delete(a);
    return s;
}

typedef struct meta_list {
    Onnx__StringStringEntryProto **e;
    size_t n, cap;
} meta_list;

static void meta_add(ob *b, meta_list *ml, const char *key, const char *value)
{
    if (b->err || !key || !value) return;
    for (size_t i = 0; i < ml->n; i++)
        if (!strcmp(ml->e[i]->key, key)) return; /* the exporter's own keys come first */
    if (ml->n == ml->cap) {
        b->err = kdcl_set_error(KDCL_ERR_INTERNAL, "ONNX export: more metadata than planned");
        return;
    }
    Onnx__StringStringEntryProto *e = ob_alloc(b, sizeof *e);
    if (!e) return;
    onnx__string_string_entry_proto__init(e);
    e->key = ob_str(b, key);
    e->value = ob_str(b, value);
    if (!b->err) ml->e[ml->n++] = e;
}

/* The nodes and initializers: the input transform, the layers, the output. */
static void build_graph(ob *b, const kdcl_model *m, const kdcl_onnx_opts *o)
{
    /* the input: raw pixels, cast when uint8, then kdcl's input transform */
    const size_t C = m->in.c, H = m->in.h, W = m->in.w, D = m->in_dim;
    const int flat_in = m->top.n && m->top.l[0].spec->kind == KDCL_LAYER_FLATTEN;
    const int u8 = o->input == KDCL_ONNX_INPUT_U8;
    const char *x = "pixels";
    if (u8) {
        Onnx__NodeProto *n = ob_node(b, "Cast", "input.Cast", &x, 1, "pixels_f32");
        ob_attr_int(b, n, "to", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
        x = "pixels_f32";
    }
    float scale[4], shift[4];
    int uniform = 1;
    for (size_t c = 0; c < C; c++) {
        scale[c] = (float)(1.0 / (255.0 * (double)m->std[c]));
        shift[c] = (float)(-(double)m->mean[c] / (double)m->std[c]);
        uniform &= scale[c] == scale[0] && shift[c] == shift[0];
    }
    size_t nd, dims[4], cnt;
    float *sv, *hv;
    if (flat_in && uniform) { /* one transform for every value */
        nd = 1, dims[0] = 1, cnt = 1;
    } else if (flat_in) { /* [C*H*W] in the model's order (CHW, or HWC for older MLPs) */
        nd = 1, dims[0] = D, cnt = D;
    } else {
        nd = 4, dims[0] = 1, dims[1] = C, dims[2] = 1, dims[3] = 1, cnt = C;
    }
    sv = ob_alloc(b, cnt * sizeof *sv);
    hv = ob_alloc(b, cnt * sizeof *hv);
    if (b->err) return;
    for (size_t i = 0; i < cnt; i++) {
        size_t c = cnt == D && flat_in ? (m->input_hwc ? i % C : i / (H * W)) : cnt == 1 ? 0 : i;
        sv[i] = scale[c];
        hv[i] = shift[c];
    }
    {
        const char *mi[2] = {x, ob_init(b, "kdcl.input_scale", dims, nd, sv, cnt)};
        ob_node(b, "Mul", "input.Mul", mi, 2, "input.scaled");
        const char *ai[2] = {"input.scaled", ob_init(b, "kdcl.input_shift", dims, nd, hv, cnt)};
        ob_node(b, "Add", "input.Add", ai, 2, "input.normalized");
    }
    const char *y = emit_list(b, &m->top, "input.normalized");
    if (b->err || !y) return;

    /* the output: the logits, or Softmax(logits / T) */
    const int soft = o->softmax_T > 0;
    int renamed = 0;
    for (size_t i = b->n_nodes; i-- > 0 && !renamed;)
        if (!strcmp(b->nodes[i]->output[0], y)) {
            b->nodes[i]->output[0] = ob_str(b, "logits");
            renamed = 1;
        }
    if (!renamed) ob_node(b, "Identity", "output.Identity", &y, 1, "logits");
    if (soft) {
        float *it = ob_alloc(b, sizeof *it);
        if (!it) return;
        *it = (float)(1.0 / o->softmax_T); /* as kdcl's softmax: z * (1 / T) */
        const char *mi[2] = {"logits", ob_init(b, "kdcl.softmax_inv_T", NULL, 0, it, 1)};
        ob_node(b, "Mul", "output.Mul", mi, 2, "logits_over_T");
        const char *si = "logits_over_T";
        Onnx__NodeProto *n = ob_node(b, "Softmax", "output.Softmax", &si, 1, "probabilities");
        ob_attr_int(b, n, "axis", 1);
    }
}

static kdcl_status export_onnx(kdcl_model *m, const char *path, const kdcl_onnx_opts *o)
{
    ob b = {0};
    float *hp = malloc((m->params.numel ? m->params.numel : 1) * sizeof *hp);
    float *hs = malloc((m->stats.numel ? m->stats.numel : 1) * sizeof *hs);
    char *model_json = NULL, *mean_json = NULL, *std_json = NULL;
    uint8_t *buf = NULL;
    kdcl_status s = KDCL_OK;
    if (!hp || !hs) {
        s = kdcl_set_error(KDCL_ERR_OOM, "ONNX export: out of host memory");
        goto done;
    }
    if ((m->params.numel && (s = kdcl_tensor_download(m->ctx, &m->params, 0, m->params.numel, hp))) ||
        (m->stats.numel && (s = kdcl_tensor_download(m->ctx, &m->stats, 0, m->stats.numel, hs))))
        goto done;
    b.hp = hp;
    b.hs = hs;

    build_graph(&b, m, o);

    /* the graph and the model */
    const size_t C = m->in.c, H = m->in.h, W = m->in.w, D = m->in_dim;
    const int flat_in = m->top.n && m->top.l[0].spec->kind == KDCL_LAYER_FLATTEN;
    const int u8 = o->input == KDCL_ONNX_INPUT_U8, soft = o->softmax_T > 0;
    const int64_t in_dims_img[4] = {-1, (int64_t)C, (int64_t)H, (int64_t)W};
    const int64_t in_dims_flat[2] = {-1, (int64_t)D};
    const int64_t out_dims[2] = {-1, (int64_t)m->classes};
    Onnx__ValueInfoProto *vin =
        ob_value_info(&b, "pixels",
                      u8 ? ONNX__TENSOR_PROTO__DATA_TYPE__UINT8 : ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT,
                      flat_in ? in_dims_flat : in_dims_img, flat_in ? 2 : 4);
    Onnx__ValueInfoProto *vout =
        ob_value_info(&b, soft ? "probabilities" : "logits", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT,
                      out_dims, 2);
    model_json = kdcl_spec_to_json(&m->spec, m->in);
    mean_json = json_floats(m->mean, C);
    std_json = json_floats(m->std, C);
    if (!model_json || !mean_json || !std_json) {
        if (!b.err)
            b.err = model_json ? kdcl_set_error(KDCL_ERR_OOM, "ONNX export: out of host memory")
                               : KDCL_ERR_INVALID_ARG;
    }
    char arch[512], shape[96], tbuf[64];
    kdcl_model_describe(m, arch, sizeof arch);
    snprintf(shape, sizeof shape, "[%zu, %zu, %zu]", C, H, W);
    snprintf(tbuf, sizeof tbuf, "%.9g", soft ? o->softmax_T : 0.0);
    meta_list ml = {.e = NULL, .n = 0, .cap = 16 + o->n_meta}; /* kdcl's keys, the caller's */
    ml.e = ob_alloc(&b, ml.cap * sizeof *ml.e);
    meta_add(&b, &ml, "kdcl.version", KDCL_VERSION);
    meta_add(&b, &ml, "kdcl.model", model_json);
    meta_add(&b, &ml, "kdcl.arch", arch);
    meta_add(&b, &ml, "kdcl.input_shape", shape);
    meta_add(&b, &ml, "kdcl.input_mean", mean_json);
    meta_add(&b, &ml, "kdcl.input_std", std_json);
    meta_add(&b, &ml, "kdcl.input_layout", m->input_hwc ? "HWC" : "CHW");
    meta_add(&b, &ml, "kdcl.input_transform",
             "x = (pixel / 255 - mean[c]) / std[c], computed as pixel * input_scale[c] + "
             "input_shift[c] with input_scale = 1 / (255 std), input_shift = -mean / std");
    meta_add(&b, &ml, "kdcl.input_dtype", u8 ? "uint8" : "float32");
    meta_add(&b, &ml, "kdcl.output", soft ? "softmax(logits / T)" : "logits");
    if (soft) meta_add(&b, &ml, "kdcl.softmax_T", tbuf);
    for (size_t i = 0; i < o->n_meta; i++)
        if (o->meta_keys && o->meta_values) meta_add(&b, &ml, o->meta_keys[i], o->meta_values[i]);
    if (b.err) {
        s = b.err;
        goto done;
    }

    Onnx__GraphProto graph = ONNX__GRAPH_PROTO__INIT;
    graph.name = "kdcl";
    graph.doc_string = arch;
    graph.n_node = b.n_nodes;
    graph.node = b.nodes;
    graph.n_initializer = b.n_inits;
    graph.initializer = b.inits;
    graph.n_input = 1;
    graph.input = &vin;
    graph.n_output = 1;
    graph.output = &vout;
    Onnx__OperatorSetIdProto opset = ONNX__OPERATOR_SET_ID_PROTO__INIT, *opsets = &opset;
    opset.domain = "";
    opset.has_version = 1;
    opset.version = KDCL_ONNX_OPSET;
    Onnx__ModelProto mp = ONNX__MODEL_PROTO__INIT;
    mp.has_ir_version = 1;
    mp.ir_version = KDCL_ONNX_IR_VERSION;
    mp.n_opset_import = 1;
    mp.opset_import = &opsets;
    mp.producer_name = "kdcl";
    mp.producer_version = KDCL_VERSION;
    mp.doc_string = arch;
    mp.graph = &graph;
    mp.n_metadata_props = ml.n;
    mp.metadata_props = ml.e;

    const size_t size = onnx__model_proto__get_packed_size(&mp);
    if (size > (size_t)INT32_MAX) {
        s = kdcl_set_error(KDCL_ERR_INVALID_ARG,
                           "ONNX export: the model takes %zu bytes, over protobuf's 2 GiB limit "
                           "(external data files are not supported)",
                           size);
        goto done;
    }
    if (!(buf = malloc(size ? size : 1))) {
        s = kdcl_set_error(KDCL_ERR_OOM, "ONNX export: out of host memory for %zu bytes", size);
        goto done;
    }
    if (onnx__model_proto__pack(&mp, buf) != size) {
        s = kdcl_set_error(KDCL_ERR_INTERNAL, "ONNX export: protobuf packing size mismatch");
        goto done;
    }
    s = kdcl_write_file_atomic(path, buf, size);
done:
    for (size_t i = 0; i < b.n_mem; i++) free(b.mem[i]);
    free(b.mem);
    free(b.nodes);
    free(b.inits);
    free(buf);
    free(hp);
    free(hs);
    cJSON_free(model_json);
    cJSON_free(mean_json);
    cJSON_free(std_json);
    return s;
}

int kdcl_onnx_available(void) { return 1; }

#else /* !KDCL_HAVE_ONNX */

int kdcl_onnx_available(void) { return 0; }

#endif

kdcl_status kdcl_model_export_onnx(kdcl_model *m, const char *path, const kdcl_onnx_opts *opts)
{
    kdcl_onnx_opts def = {0};
    const kdcl_onnx_opts *o = opts ? opts : &def;
    if (!m || !path || !*path)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "ONNX export: %s",
                              !m ? "no model" : "no output path");
    if (!isfinite(o->softmax_T) || o->softmax_T < 0 ||
        (o->softmax_T > 0 && !(isfinite((float)(1.0 / o->softmax_T)) && (float)(1.0 / o->softmax_T) > 0)))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "ONNX export: softmax temperature %g out of range (need 1e-38 < T < "
                              "1e38; 0: output the logits)",
                              o->softmax_T);
    if (o->input != KDCL_ONNX_INPUT_F32 && o->input != KDCL_ONNX_INPUT_U8)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "ONNX export: unknown input type %d",
                              (int)o->input);
    if (o->n_meta && (!o->meta_keys || !o->meta_values))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "ONNX export: metadata without keys or values");
#ifdef KDCL_HAVE_ONNX
    return export_onnx(m, path, o);
#else
    return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                          "%s: kdcl was built without ONNX support (install protobuf-c: Debian "
                          "libprotobuf-c-dev and protobuf-c-compiler, then reconfigure)",
                          path);
#endif
}
