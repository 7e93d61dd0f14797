/* ONNX export (kdcl_model_export_onnx, kdcl export --onnx): models of every
 * layer type written and read back with protobuf-c from ONNX's onnx.proto:
 * nodes in order, a graph whose every input is defined before use,
 * initializers equal to the checkpoint's tensors (names, shapes, values), the
 * input transform, attributes, options and metadata; bad input refused with
 * nothing written. The numbers themselves (onnxruntime against kdcl's
 * logits) are checked by tests/test_onnx_runtime.py. A build without
 * protobuf-c checks the refusal instead. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kdcl/kdcl.h"
#include "testutil.h"

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* No "<name>.tmp.<pid>" left in the test directory. */
static void assert_no_tmp_files(void)
{
    DIR *d = opendir(tu_tmpdir());
    ck_assert(d != NULL);
    struct dirent *e;
    while ((e = readdir(d)))
        ck_assert_msg(!strstr(e->d_name, ".tmp."), "temporary file left: %s", e->d_name);
    closedir(d);
}

static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    ck_assert(b && fread(b, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

#ifdef KDCL_HAVE_ONNX
#include "onnx.pb-c.h"

static Onnx__ModelProto *load_onnx(const char *path)
{
    size_t n;
    unsigned char *b = read_all(path, &n);
    Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, n, b);
    free(b);
    ck_assert_msg(mp != NULL, "%s does not parse as an ONNX ModelProto", path);
    return mp;
}

static const char *meta_of(const Onnx__ModelProto *mp, const char *key)
{
    for (size_t i = 0; i < mp->n_metadata_props; i++)
        if (!strcmp(mp->metadata_props[i]->key, key)) return mp->metadata_props[i]->value;
    return NULL;
}

static const Onnx__TensorProto *init_of(const Onnx__GraphProto *g, const char *name)
{
    for (size_t i = 0; i < g->n_initializer; i++)
        if (!strcmp(g->initializer[i]->name, name)) return g->initializer[i];
    return NULL;
}

static const Onnx__AttributeProto *attr_of(const Onnx__NodeProto *n, const char *name)
{
    for (size_t i = 0; i < n->n_attribute; i++)
        if (!strcmp(n->attribute[i]->name, name)) return n->attribute[i];
    return NULL;
}

static void assert_ints(const Onnx__NodeProto *n, const char *name, const int64_t *v, size_t k)
{
    const Onnx__AttributeProto *a = attr_of(n, name);
    ck_assert_msg(a && a->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS && a->n_ints == k,
                  "%s: attribute %s missing or not %zu ints", n->name, name, k);
    for (size_t i = 0; i < k; i++)
        ck_assert_msg(a->ints[i] == v[i], "%s: %s[%zu] = %lld, want %lld", n->name, name, i,
                      (long long)a->ints[i], (long long)v[i]);
}

static int64_t attr_int(const Onnx__NodeProto *n, const char *name)
{
    const Onnx__AttributeProto *a = attr_of(n, name);
    ck_assert_msg(a && a->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT && a->has_i,
                  "%s: int attribute %s missing", n->name, name);
    return a->i;
}

/* A tensor value's dims as text: "N,1,8,8" (dim_param as its name). */
static void value_dims(const Onnx__ValueInfoProto *v, int32_t *elem, char *buf, size_t size)
{
    ck_assert(v->type && v->type->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE);
    const Onnx__TypeProto__Tensor *t = v->type->tensor_type;
    *elem = t->elem_type;
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < t->shape->n_dim && o < size; i++) {
        const Onnx__TensorShapeProto__Dimension *d = t->shape->dim[i];
        if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM)
            o += (size_t)snprintf(buf + o, size - o, "%s%s", i ? "," : "", d->dim_param);
        else
            o += (size_t)snprintf(buf + o, size - o, "%s%lld", i ? "," : "", (long long)d->dim_value);
    }
}

/* Every node input is the graph input, an initializer or an earlier node's
 * output; outputs are unique; the graph output is produced. Returns the
 * op types joined with ','. */
static void check_graph(const Onnx__GraphProto *g, char *ops, size_t size)
{
    size_t o = 0;
    ops[0] = '\0';
    ck_assert_int_eq(g->n_input, 1);
    ck_assert_int_eq(g->n_output, 1);
    for (size_t i = 0; i < g->n_node; i++) {
        const Onnx__NodeProto *n = g->node[i];
        ck_assert_msg(n->domain == NULL || !*n->domain, "%s: domain %s", n->name, n->domain);
        for (size_t k = 0; k < n->n_input; k++) {
            const char *in = n->input[k];
            int ok = !strcmp(in, g->input[0]->name) || init_of(g, in) != NULL;
            for (size_t j = 0; j < i && !ok; j++) ok = !strcmp(g->node[j]->output[0], in);
            ck_assert_msg(ok, "node %s: input '%s' is not defined before it", n->name, in);
        }
        ck_assert_int_eq(n->n_output, 1);
        ck_assert_msg(!init_of(g, n->output[0]) && strcmp(n->output[0], g->input[0]->name),
                      "node %s overwrites %s", n->name, n->output[0]);
        for (size_t j = 0; j < i; j++)
            ck_assert_msg(strcmp(g->node[j]->output[0], n->output[0]),
                          "nodes %s and %s both write %s", g->node[j]->name, n->name, n->output[0]);
        o += (size_t)snprintf(ops + o, size - o, "%s%s", i ? "," : "", n->op_type);
    }
    ck_assert_msg(g->n_node > 0 && !strcmp(g->node[g->n_node - 1]->output[0], g->output[0]->name),
                  "the last node does not write the graph output %s", g->output[0]->name);
}

/* Every F32 tensor of the checkpoint is an initializer of the same name,
 * shape and values (num_batches_tracked is not needed at inference); the
 * only other initializers are the input transform's (and T's). */
static void check_initializers(const Onnx__GraphProto *g, const char *ckpt, size_t extra)
{
    kdcl_st_file f;
    tu_ok(kdcl_st_read(ckpt, &f), "read the checkpoint");
    size_t n_f32 = 0;
    for (size_t i = 0; i < f.n_tensors; i++) {
        const kdcl_st_tensor *t = &f.tensors[i];
        if (t->dtype != KDCL_DT_F32) {
            ck_assert_msg(strstr(t->name, "num_batches_tracked") != NULL, "%s", t->name);
            ck_assert_msg(!init_of(g, t->name), "%s exported", t->name);
            continue;
        }
        n_f32++;
        const Onnx__TensorProto *x = init_of(g, t->name);
        ck_assert_msg(x != NULL, "initializer %s missing", t->name);
        ck_assert_int_eq(x->data_type, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
        ck_assert_msg(x->n_dims == t->ndim, "%s: %zu dims, want %zu", t->name, x->n_dims, t->ndim);
        size_t n = 1;
        for (size_t k = 0; k < t->ndim; k++) {
            ck_assert_msg(x->dims[k] == (int64_t)t->shape[k], "%s: dim %zu", t->name, k);
            n *= t->shape[k];
        }
        ck_assert_msg(x->n_float_data == n && !x->has_raw_data, "%s: %zu values", t->name,
                      x->n_float_data);
        ck_assert_msg(!memcmp(x->float_data, t->data, n * sizeof(float)),
                      "%s: values differ from the checkpoint's", t->name);
    }
    ck_assert_msg(g->n_initializer == n_f32 + extra, "%zu initializers, want %zu + %zu",
                  g->n_initializer, n_f32, extra);
    kdcl_st_free(&f);
}

typedef struct {
    const char *arch;
    size_t c, h, w;
    float drop_in, drop_hidden;
    const char *ops;    /* node op types, in order */
    const char *in;     /* input dims */
} arch_case;

static const arch_case cases[] = {
    /* Flatten, Dropout, Linear, ReLU, Dropout, Linear: input [N, C*H*W] */
    {"64-16-3", 1, 8, 8, 0.2f, 0.3f, "Mul,Add,Flatten,Gemm,Relu,Gemm", "N,64"},
    /* Conv2d (bias and none), MaxPool2d, BatchNorm2d, AvgPool2d with padding,
     * Linear without bias, BatchNorm1d, Dropout */
    {"conv(4,3,p=1),relu,maxpool(2),conv(6,3,bias=0),bn,relu,avgpool(2,s=1,p=1),flatten,"
     "linear(8,bias=0),bn,relu,dropout(0.3),linear(K)",
     1, 8, 8, 0, 0,
     "Mul,Add,Conv,Relu,MaxPool,Conv,BatchNormalization,Relu,AveragePool,Flatten,Gemm,"
     "BatchNormalization,Relu,Gemm",
     "N,1,8,8"},
    /* residual blocks: identity and projection shortcuts, global average pool, 3 channels */
    {"conv(4,3,p=1),bn,relu,res(conv(4,3,p=1,bias=0),bn,relu,conv(4,3,p=1,bias=0),bn),relu,"
     "res(conv(8,3,s=2,p=1,bias=0),bn;conv(8,1,s=2,bias=0),bn),relu,gap,flatten,linear(K)",
     3, 8, 8, 0, 0,
     "Mul,Add,Conv,BatchNormalization,Relu,Conv,BatchNormalization,Relu,Conv,"
     "BatchNormalization,Add,Relu,Conv,BatchNormalization,Conv,BatchNormalization,Add,Relu,"
     "GlobalAveragePool,Flatten,Gemm",
     "N,3,8,8"},
    /* an MLP on 3 channels: the per-channel transform spread over C*H*W */
    {"flatten,linear(5),relu,linear(K)", 3, 4, 4, 0, 0, "Mul,Add,Flatten,Gemm,Relu,Gemm", "N,48"},
};

/* A model of the case with a non-trivial input transform and BatchNorm
 * statistics moved by two training-mode forwards; saved to ckpt. */
static kdcl_model *make_model(const arch_case *c, uint64_t seed, const char *ckpt)
{
    kdcl_model *m = tu_model(c->arch, 3, c->c, c->h, c->w, 8, c->drop_in, c->drop_hidden, seed);
    const float mean[3] = {0.25f, 0.5f, 0.125f}, sd[3] = {0.5f, 0.25f, 2.0f};
    tu_ok(kdcl_model_set_input_norm(m, mean, sd), "input norm");
    tu_ok(kdcl_model_set_batch(m, 8), "batch");
    size_t n = 8 * kdcl_model_in_dim(m);
    float *x = malloc(n * sizeof *x);
    for (uint64_t step = 0; step < 2; step++) {
        tu_fill_uniform(x, n, -1.0f, 2.0f, seed + step);
        tu_put(kdcl_model_input(m), x);
        tu_ok(kdcl_model_forward(m, 1, seed, step), "training forward");
    }
    free(x);
    tu_ok(kdcl_model_save(m, ckpt, NULL, NULL, 0), "save");
    return m;
}

START_TEST(test_every_layer_type)
{
    const arch_case *c = &cases[_i];
    char ckpt[1024], out[1024];
    snprintf(ckpt, sizeof ckpt, "%s", tu_path("every.safetensors"));
    snprintf(out, sizeof out, "%s", tu_path("every.onnx"));
    kdcl_model *m = make_model(c, 10 + (uint64_t)_i, ckpt);
    tu_ok(kdcl_model_export_onnx(m, out, NULL), "export");
    Onnx__ModelProto *mp = load_onnx(out);
    ck_assert(mp->has_ir_version && mp->ir_version == KDCL_ONNX_IR_VERSION);
    ck_assert_int_eq(mp->n_opset_import, 1);
    ck_assert(!mp->opset_import[0]->domain || !*mp->opset_import[0]->domain);
    ck_assert_int_eq(mp->opset_import[0]->version, 17);
    ck_assert_str_eq(mp->producer_name, "kdcl");
    ck_assert_str_eq(mp->producer_version, KDCL_VERSION);
    const Onnx__GraphProto *g = mp->graph;
    char ops[1024], dims[128];
    check_graph(g, ops, sizeof ops);
    ck_assert_msg(!strcmp(ops, c->ops), "%s:\n  ops  %s\n  want %s", c->arch, ops, c->ops);
    int32_t elem;
    ck_assert_str_eq(g->input[0]->name, "pixels");
    value_dims(g->input[0], &elem, dims, sizeof dims);
    ck_assert_int_eq(elem, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
    ck_assert_str_eq(dims, c->in);
    ck_assert_str_eq(g->output[0]->name, "logits");
    value_dims(g->output[0], &elem, dims, sizeof dims);
    ck_assert_str_eq(dims, "N,3");
    check_initializers(g, ckpt, 2);

    /* the input transform: pixel * 1 / (255 std[c]) + (-mean[c] / std[c]) */
    const float mean[3] = {0.25f, 0.5f, 0.125f}, sd[3] = {0.5f, 0.25f, 2.0f};
    const Onnx__TensorProto *sc = init_of(g, "kdcl.input_scale"), *sh = init_of(g, "kdcl.input_shift");
    ck_assert(sc && sh && sc->n_float_data == sh->n_float_data);
    const int flat = !strncmp(c->in, "N,", 2) && !strchr(c->in + 2, ',');
    if (flat && c->c == 1) ck_assert_int_eq(sc->n_float_data, 1);
    else if (flat) ck_assert_int_eq(sc->n_float_data, c->c * c->h * c->w);
    else {
        ck_assert_int_eq(sc->n_dims, 4);
        ck_assert(sc->dims[0] == 1 && sc->dims[1] == (int64_t)c->c && sc->dims[2] == 1 && sc->dims[3] == 1);
    }
    for (size_t i = 0; i < sc->n_float_data; i++) {
        size_t ch = sc->n_float_data == c->c ? i : i / (c->h * c->w);
        ck_assert_float_eq(sc->float_data[i], (float)(1.0 / (255.0 * (double)sd[ch])));
        ck_assert_float_eq(sh->float_data[i], (float)(-(double)mean[ch] / (double)sd[ch]));
    }
    ck_assert_str_eq(g->node[0]->input[0], "pixels");
    ck_assert_str_eq(g->node[0]->input[1], "kdcl.input_scale");
    ck_assert_str_eq(g->node[1]->input[1], "kdcl.input_shift");

    /* metadata: the checkpoint's architecture JSON, the version, the transform */
    kdcl_st_file f;
    tu_ok(kdcl_st_read(ckpt, &f), "read the checkpoint");
    ck_assert_str_eq(meta_of(mp, "kdcl.model"), kdcl_st_meta(&f, "kdcl.model"));
    ck_assert_str_eq(meta_of(mp, "kdcl.input_shape"), kdcl_st_meta(&f, "kdcl.input_shape"));
    ck_assert_str_eq(meta_of(mp, "kdcl.version"), KDCL_VERSION);
    ck_assert_str_eq(meta_of(mp, "kdcl.input_layout"), "CHW");
    ck_assert_str_eq(meta_of(mp, "kdcl.output"), "logits");
    ck_assert(meta_of(mp, "kdcl.input_mean") && meta_of(mp, "kdcl.input_std"));
    ck_assert(meta_of(mp, "kdcl.softmax_T") == NULL);
    kdcl_st_free(&f);
    onnx__model_proto__free_unpacked(mp, NULL);
    kdcl_model_destroy(m);
    assert_no_tmp_files();
}
END_TEST

/* The attributes of every windowed layer and of BatchNorm. */
START_TEST(test_attributes)
{
    kdcl_model *m = tu_model("conv(4,3x5,s=2x1,p=1x2),bn(eps=0.001,m=0.2),relu,avgpool(3,s=1,p=1),"
                             "maxpool(2),maxpool(3,s=1,p=1),flatten,linear(K)",
                             3, 1, 9, 9, 4, 0, 0, 3);
    const char *out = tu_path("attrs.onnx");
    tu_ok(kdcl_model_export_onnx(m, out, NULL), "export");
    Onnx__ModelProto *mp = load_onnx(out);
    const Onnx__GraphProto *g = mp->graph;
    char ops[512];
    check_graph(g, ops, sizeof ops);
    ck_assert_str_eq(ops, "Mul,Add,Conv,BatchNormalization,Relu,AveragePool,MaxPool,MaxPool,Flatten,Gemm");
    const Onnx__NodeProto *conv = g->node[2], *bn = g->node[3], *avg = g->node[5],
                          *mx = g->node[6], *mx2 = g->node[7];
    assert_ints(conv, "kernel_shape", (int64_t[]){3, 5}, 2);
    assert_ints(conv, "strides", (int64_t[]){2, 1}, 2);
    assert_ints(conv, "pads", (int64_t[]){1, 2, 1, 2}, 4);
    assert_ints(conv, "dilations", (int64_t[]){1, 1}, 2);
    ck_assert_int_eq(attr_int(conv, "group"), 1);
    ck_assert_int_eq(conv->n_input, 3);
    const Onnx__AttributeProto *eps = attr_of(bn, "epsilon"), *mom = attr_of(bn, "momentum");
    ck_assert(eps && eps->has_f && mom && mom->has_f);
    ck_assert_float_eq(eps->f, 0.001f);
    ck_assert_float_eq(mom->f, 1.0f - 0.2f);
    ck_assert_str_eq(bn->input[3], "1.running_mean");
    ck_assert_str_eq(bn->input[4], "1.running_var");
    assert_ints(avg, "kernel_shape", (int64_t[]){3, 3}, 2);
    assert_ints(avg, "strides", (int64_t[]){1, 1}, 2);
    assert_ints(avg, "pads", (int64_t[]){1, 1, 1, 1}, 4);
    ck_assert_int_eq(attr_int(avg, "count_include_pad"), 1); /* kdcl divides by KH*KW */
    ck_assert_int_eq(attr_int(avg, "ceil_mode"), 0);
    assert_ints(mx, "strides", (int64_t[]){2, 2}, 2);        /* stride 0: the kernel */
    assert_ints(mx, "pads", (int64_t[]){0, 0, 0, 0}, 4);
    ck_assert(attr_of(mx, "count_include_pad") == NULL);
    assert_ints(mx2, "pads", (int64_t[]){1, 1, 1, 1}, 4);
    ck_assert_int_eq(attr_int(g->node[8], "axis"), 1);
    ck_assert_int_eq(attr_int(g->node[9], "transB"), 1);
    onnx__model_proto__free_unpacked(mp, NULL);
    kdcl_model_destroy(m);
}
END_TEST

/* uint8 input (a Cast first), softmax(logits / T) output, extra metadata. */
START_TEST(test_options)
{
    kdcl_model *m = tu_model("conv(2,3),relu,flatten,linear(K)", 4, 1, 6, 6, 4, 0, 0, 5);
    const char *out = tu_path("opts.onnx");
    const char *keys[] = {"kdcl.version", "teacher"}, *vals[] = {"0.0.0-fake", "lenet5"};
    kdcl_onnx_opts o = {.softmax_T = 4.0, .input = KDCL_ONNX_INPUT_U8, .meta_keys = keys,
                        .meta_values = vals, .n_meta = 2};
    tu_ok(kdcl_model_export_onnx(m, out, &o), "export");
    Onnx__ModelProto *mp = load_onnx(out);
    const Onnx__GraphProto *g = mp->graph;
    char ops[512], dims[64];
    check_graph(g, ops, sizeof ops);
    ck_assert_str_eq(ops, "Cast,Mul,Add,Conv,Relu,Flatten,Gemm,Mul,Softmax");
    int32_t elem;
    value_dims(g->input[0], &elem, dims, sizeof dims);
    ck_assert_int_eq(elem, ONNX__TENSOR_PROTO__DATA_TYPE__UINT8);
    ck_assert_str_eq(dims, "N,1,6,6");
    ck_assert_int_eq(attr_int(g->node[0], "to"), ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
    ck_assert_str_eq(g->output[0]->name, "probabilities");
    value_dims(g->output[0], &elem, dims, sizeof dims);
    ck_assert_int_eq(elem, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
    ck_assert_str_eq(dims, "N,4");
    ck_assert_str_eq(g->node[6]->output[0], "logits");
    ck_assert_str_eq(g->node[7]->input[0], "logits");
    const Onnx__TensorProto *it = init_of(g, g->node[7]->input[1]);
    ck_assert(it && it->n_dims == 0 && it->n_float_data == 1);
    ck_assert_float_eq(it->float_data[0], 0.25f);
    ck_assert_int_eq(attr_int(g->node[8], "axis"), 1);
    ck_assert_str_eq(meta_of(mp, "kdcl.version"), KDCL_VERSION); /* kdcl's keys win */
    ck_assert_str_eq(meta_of(mp, "teacher"), "lenet5");
    ck_assert_str_eq(meta_of(mp, "kdcl.softmax_T"), "4");
    ck_assert_str_eq(meta_of(mp, "kdcl.input_dtype"), "uint8");
    onnx__model_proto__free_unpacked(mp, NULL);

    /* logits output: the last Gemm writes "logits" */
    tu_ok(kdcl_model_export_onnx(m, out, NULL), "export");
    mp = load_onnx(out);
    check_graph(mp->graph, ops, sizeof ops);
    ck_assert_str_eq(ops, "Mul,Add,Conv,Relu,Flatten,Gemm");
    ck_assert_str_eq(mp->graph->node[5]->output[0], "logits");
    onnx__model_proto__free_unpacked(mp, NULL);
    kdcl_model_destroy(m);
}
END_TEST

/* kdcl's earlier MLP checkpoints (layers.<i>.weight, HWC inputs) export too. */
START_TEST(test_legacy_mlp)
{
    const char *root = getenv("KDCL_SOURCE_ROOT");
    ck_assert_msg(root != NULL, "KDCL_SOURCE_ROOT is not set");
    char ckpt[4096], out[1024];
    snprintf(ckpt, sizeof ckpt, "%s/tests/data/legacy_mlp_trained.safetensors", root);
    snprintf(out, sizeof out, "%s", tu_path("legacy.onnx"));
    kdcl_model *m = NULL;
    tu_ok(kdcl_model_load(tu_ctx, ckpt, 4, &m, NULL), "load the legacy checkpoint");
    tu_ok(kdcl_model_export_onnx(m, out, NULL), "export");
    Onnx__ModelProto *mp = load_onnx(out);
    const Onnx__GraphProto *g = mp->graph;
    char ops[512], dims[64];
    check_graph(g, ops, sizeof ops);
    ck_assert_str_eq(ops, "Mul,Add,Flatten,Gemm,Relu,Gemm,Relu,Gemm");
    int32_t elem;
    value_dims(g->input[0], &elem, dims, sizeof dims);
    ck_assert_str_eq(dims, "N,36");
    ck_assert_str_eq(meta_of(mp, "kdcl.input_layout"), "HWC");
    ck_assert_str_eq(meta_of(mp, "kdcl.arch"), "36-24-16-3");
    kdcl_st_file f;
    tu_ok(kdcl_st_read(ckpt, &f), "read");
    const char *pairs[][2] = {{"layers.0.weight", "1.weight"}, {"layers.1.bias", "3.bias"},
                              {"layers.2.weight", "5.weight"}};
    for (size_t i = 0; i < 3; i++) {
        const kdcl_st_tensor *t = kdcl_st_find(&f, pairs[i][0]);
        const Onnx__TensorProto *x = init_of(g, pairs[i][1]);
        ck_assert_msg(t && x, "%s / %s", pairs[i][0], pairs[i][1]);
        ck_assert(x->n_float_data * sizeof(float) == t->nbytes &&
                  !memcmp(x->float_data, t->data, t->nbytes));
    }
    const Onnx__TensorProto *sc = init_of(g, "kdcl.input_scale");
    ck_assert(sc && sc->n_float_data == 1);
    ck_assert_float_eq(sc->float_data[0], (float)(1.0 / 255.0));
    kdcl_st_free(&f);
    onnx__model_proto__free_unpacked(mp, NULL);
    kdcl_model_destroy(m);
}
END_TEST

/* The command: a checkpoint in, an ONNX file out, carrying its metadata. */
START_TEST(test_cli_export)
{
    char ckpt[1024], out[1024];
    snprintf(ckpt, sizeof ckpt, "%s", tu_path("cli.safetensors"));
    snprintf(out, sizeof out, "%s", tu_path("cli.onnx"));
    kdcl_model *m = make_model(&cases[1], 21, ckpt);
    kdcl_model_destroy(m);
    char args[4096];
    tu_run_result r;
    snprintf(args, sizeof args, "export --onnx '%s' --model '%s' --softmax-T 2", out, ckpt);
    tu_run(&r, args);
    ck_assert_msg(r.status == 0, "kdcl %s: %s", args, r.err);
    ck_assert_msg(strstr(r.out, "wrote") != NULL, "%s", r.out);
    Onnx__ModelProto *mp = load_onnx(out);
    ck_assert_str_eq(mp->graph->output[0]->name, "probabilities");
    check_initializers(mp->graph, ckpt, 3);
    ck_assert_str_eq(meta_of(mp, "kdcl.softmax_T"), "2");
    ck_assert(meta_of(mp, "format") == NULL); /* the safetensors format tag stays behind */
    onnx__model_proto__free_unpacked(mp, NULL);
    snprintf(args, sizeof args, "export --onnx '%s' --model '%s' --input uint8", out, ckpt);
    tu_run(&r, args);
    ck_assert_msg(r.status == 0, "kdcl %s: %s", args, r.err);
    mp = load_onnx(out);
    ck_assert_str_eq(mp->graph->node[0]->op_type, "Cast");
    onnx__model_proto__free_unpacked(mp, NULL);
    assert_no_tmp_files();
}
END_TEST
#endif /* KDCL_HAVE_ONNX */

/* Bad input: one clear error, nothing written, an existing file untouched. */
START_TEST(test_bad_input_library)
{
    kdcl_model *m = tu_model("conv(2,3),relu,flatten,linear(K)", 3, 1, 6, 6, 4, 0, 0, 5);
    char out[1024], nodir[1024];
    snprintf(out, sizeof out, "%s", tu_path("bad.onnx"));
    snprintf(nodir, sizeof nodir, "%s", tu_path("no-such-dir/x.onnx"));
    remove(out);
    const double bad_t[] = {-1.0, NAN, INFINITY, 1e-300};
    for (size_t i = 0; i < sizeof bad_t / sizeof bad_t[0]; i++) {
        kdcl_onnx_opts o = {.softmax_T = bad_t[i]};
        ck_assert_int_eq(kdcl_model_export_onnx(m, out, &o), KDCL_ERR_INVALID_ARG);
        ck_assert_msg(strstr(kdcl_last_error(), "temperature") || !kdcl_onnx_available(), "%s",
                      kdcl_last_error());
        ck_assert(!file_exists(out));
    }
    kdcl_onnx_opts o = {.input = (kdcl_onnx_input)7};
    ck_assert_int_eq(kdcl_model_export_onnx(m, out, &o), KDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kdcl_model_export_onnx(m, "", NULL), KDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kdcl_model_export_onnx(NULL, out, NULL), KDCL_ERR_INVALID_ARG);
    ck_assert(!file_exists(out));
    /* a directory that does not exist */
    kdcl_status s = kdcl_model_export_onnx(m, nodir, NULL);
    ck_assert(s != KDCL_OK);
    ck_assert(!file_exists(nodir));
    /* an existing file stays as it was when an export fails */
    ck_assert_int_eq(tu_write_file(out, "keep me", 7), 0);
    kdcl_onnx_opts neg = {.softmax_T = -2.0};
    ck_assert(kdcl_model_export_onnx(m, out, &neg) != KDCL_OK);
    size_t n;
    unsigned char *b = read_all(out, &n);
    ck_assert(n == 7 && !memcmp(b, "keep me", 7));
    free(b);
    if (!kdcl_onnx_available()) {
        ck_assert_int_eq(kdcl_model_export_onnx(m, out, NULL), KDCL_ERR_INVALID_ARG);
        ck_assert_msg(strstr(kdcl_last_error(), "without ONNX support"), "%s", kdcl_last_error());
        b = read_all(out, &n);
        ck_assert(n == 7 && !memcmp(b, "keep me", 7));
        free(b);
    }
    remove(out);
    kdcl_model_destroy(m);
    assert_no_tmp_files();
}
END_TEST

/* A checkpoint whose kdcl.model has a layer kdcl does not know. */
static void write_unknown_layer_ckpt(const char *good, const char *bad)
{
    kdcl_st_file f;
    tu_ok(kdcl_st_read(good, &f), "read");
    const char **keys = calloc(f.n_meta, sizeof *keys), **vals = calloc(f.n_meta, sizeof *vals);
    char *json = NULL;
    for (size_t i = 0; i < f.n_meta; i++) {
        keys[i] = f.meta_keys[i];
        vals[i] = f.meta_values[i];
        if (!strcmp(keys[i], "kdcl.model")) {
            json = strdup(vals[i]);
            char *p = strstr(json, "\"ReLU\"");
            ck_assert(p != NULL);
            memcpy(p, "\"Tanh\"", 6);
            vals[i] = json;
        }
    }
    ck_assert(json != NULL);
    tu_ok(kdcl_st_write(bad, f.tensors, f.n_tensors, keys, vals, f.n_meta), "write");
    free(json);
    free(keys);
    free(vals);
    kdcl_st_free(&f);
}

START_TEST(test_bad_input_cli)
{
    char ckpt[1024], out[1024], bad[1024], trunc[1024], missing[1024], nodir[1024];
    snprintf(ckpt, sizeof ckpt, "%s", tu_path("clibad.safetensors"));
    snprintf(out, sizeof out, "%s", tu_path("clibad.onnx"));
    snprintf(bad, sizeof bad, "%s", tu_path("unknown-layer.safetensors"));
    snprintf(trunc, sizeof trunc, "%s", tu_path("trunc.safetensors"));
    snprintf(missing, sizeof missing, "%s", tu_path("missing.safetensors"));
    snprintf(nodir, sizeof nodir, "%s", tu_path("nodir/x.onnx"));
    kdcl_model *m = tu_model("conv(2,3),relu,flatten,linear(K)", 3, 1, 6, 6, 4, 0, 0, 5);
    tu_ok(kdcl_model_save(m, ckpt, NULL, NULL, 0), "save");
    kdcl_model_destroy(m);
    write_unknown_layer_ckpt(ckpt, bad);
    size_t n;
    unsigned char *b = read_all(ckpt, &n);
    ck_assert_int_eq(tu_write_file(trunc, b, n / 2), 0);
    free(b);
    remove(out);
    char args[4096];
    const int onnx = kdcl_onnx_available();
    snprintf(args, sizeof args, "export --model '%s'", ckpt);
    tu_expect_fail(args, 2, "--onnx is required");
    snprintf(args, sizeof args, "export --onnx '%s'", out);
    tu_expect_fail(args, 2, "--model is required");
    snprintf(args, sizeof args, "export --onnx '%s' --model '%s' --softmax-T 0", out, ckpt);
    tu_expect_fail(args, 2, "--softmax-T");
    snprintf(args, sizeof args, "export --onnx '%s' --model '%s' --input int8", out, ckpt);
    tu_expect_fail(args, 2, "--input");
    snprintf(args, sizeof args, "export --onnx '%s' --model '%s' extra", out, ckpt);
    tu_expect_fail(args, 2, "unexpected argument");
    if (onnx) {
        snprintf(args, sizeof args, "export --onnx '%s' --model '%s'", out, missing);
        tu_expect_fail(args, 1, "missing.safetensors");
        snprintf(args, sizeof args, "export --onnx '%s' --model '%s'", out, bad);
        tu_expect_fail(args, 1, "Tanh");
        snprintf(args, sizeof args, "export --onnx '%s' --model '%s'", out, trunc);
        tu_expect_fail(args, 1, "trunc.safetensors");
        snprintf(args, sizeof args, "export --onnx '%s' --model '%s'", tu_tmpdir(), ckpt);
        tu_expect_fail(args, 2, "--onnx");
        snprintf(args, sizeof args, "export --onnx '%s' --model '%s'", nodir, ckpt);
        tu_expect_fail(args, 2, "--onnx");
        snprintf(args, sizeof args, "export --onnx '%s' --model '%s'", ckpt, ckpt);
        tu_expect_fail(args, 2, "is the checkpoint itself");
        kdcl_st_file f;
        tu_ok(kdcl_st_read(ckpt, &f), "the checkpoint is still there");
        kdcl_st_free(&f);
    } else {
        snprintf(args, sizeof args, "export --onnx '%s' --model '%s'", out, ckpt);
        tu_expect_fail(args, 1, "without ONNX support");
    }
    ck_assert(!file_exists(out));
    /* a failed export leaves an existing file as it was */
    ck_assert_int_eq(tu_write_file(out, "keep me", 7), 0);
    snprintf(args, sizeof args, "export --onnx '%s' --model '%s'", out, bad);
    tu_expect_fail(args, 1, onnx ? "Tanh" : "without ONNX support");
    b = read_all(out, &n);
    ck_assert(n == 7 && !memcmp(b, "keep me", 7));
    free(b);
    remove(out);
    assert_no_tmp_files();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("onnx");
    TCase *tc = tcase_create("onnx");
    tcase_add_unchecked_fixture(tc, tu_ctx_setup, tu_ctx_teardown);
    tcase_set_timeout(tc, 600);
#ifdef KDCL_HAVE_ONNX
    tcase_add_loop_test(tc, test_every_layer_type, 0, (int)(sizeof cases / sizeof cases[0]));
    tcase_add_test(tc, test_attributes);
    tcase_add_test(tc, test_options);
    tcase_add_test(tc, test_legacy_mlp);
    tcase_add_test(tc, test_cli_export);
#endif
    tcase_add_test(tc, test_bad_input_library);
    tcase_add_test(tc, test_bad_input_cli);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
