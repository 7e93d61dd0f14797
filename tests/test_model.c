/* The model of layers: equivalence with kdcl's earlier MLP (same weights for
 * the same seed, checked against checkpoints the earlier code wrote), a
 * finite-difference gradient check through a small CNN (conv + BN + pool +
 * residual + linear, with and without dropout), checkpoint round trips of
 * every layer type, bad checkpoints, optimisers and schedules. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gemm_internal.h" /* kdcl__conv_set_direct */
#include "testutil.h"

static int third(size_t p) { return (int)(p % 6) / 2; }

static const char *src_path(const char *rel)
{
    static char buf[4][1024];
    static int k;
    const char *root = getenv("KDCL_SOURCE_ROOT");
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", root ? root : ".", rel);
    return buf[k];
}

/* The model kdcl's earlier MLP code built for "36-24-16-3" with dropout
 * 0.1 (input) / 0.3 (hidden). */
static kdcl_model *legacy_model(void)
{
    kdcl_model_spec spec;
    tu_ok(kdcl_model_spec_parse("36-24-16-3", 3, &spec), "parse");
    tu_ok(kdcl_model_spec_add_dropout(&spec, 0.1f, 0.3f), "dropout");
    kdcl_model *m;
    tu_ok(kdcl_model_create(tu_ctx, &spec, 1, 6, 6, 32, &m), "create");
    kdcl_model_spec_free(&spec);
    return m;
}

/* Compare the model's parameters with layers.<i>.weight/bias of a legacy file:
 * returns the largest absolute difference. */
static double diff_to_legacy(kdcl_model *m, const char *file)
{
    kdcl_st_file f;
    tu_ok(kdcl_st_read(src_path(file), &f), file);
    size_t n = kdcl_model_n_params(m), nr;
    float *h = malloc(n * sizeof *h);
    tu_ok(kdcl_model_get_params(m, h), "get_params");
    const kdcl_param_range *r = kdcl_model_param_ranges(m, &nr);
    ck_assert_uint_eq(nr, 6);
    double worst = 0;
    const float *p = h;
    for (size_t i = 0; i < nr; i++) {
        char name[64];
        snprintf(name, sizeof name, "layers.%zu.%s", i / 2, i % 2 ? "bias" : "weight");
        const kdcl_st_tensor *t = kdcl_st_find(&f, name);
        ck_assert_ptr_nonnull(t);
        ck_assert_uint_eq(t->nbytes, r[i].n * 4);
        const float *d = t->data;
        for (size_t k = 0; k < r[i].n; k++) worst = fmax(worst, fabs((double)d[k] - p[k]));
        p += r[i].n;
    }
    free(h);
    kdcl_st_free(&f);
    return worst;
}

START_TEST(test_mlp_init_equals_legacy)
{
    kdcl_model *m = legacy_model();
    tu_ok(kdcl_model_init(m, 7), "init");
    /* drawn on the host with the same generator in the same order: bit for bit */
    ck_assert_msg(diff_to_legacy(m, "tests/data/legacy_mlp_init.safetensors") == 0.0,
                  "initial weights differ from the earlier MLP's");
    ck_assert_uint_eq(kdcl_model_n_params(m), 24 * 37 + 16 * 25 + 3 * 17);
    kdcl_model_destroy(m);
}
END_TEST

/* Trained as tests/data/legacy_mlp_trained.safetensors was by the earlier
 * code (kdcl_mlp + kdcl_train): 200 examples of tu_make_6x6(seed 11), 3
 * epochs of batch 32, lr 0.05 decayed 0.9 per epoch, momentum 0.5 -> 0.9 over
 * 2 epochs, weight decay 1e-4, max-norm 1.5, jitter 1, seed 5. On the device
 * that wrote the file the weights agree bit for bit (same kernels, same
 * order). Another OpenCL implementation rounds the GEMMs' sums differently:
 * each of the 21 steps changes a weight by lr * (a gradient of size <= ~1
 * with relative rounding <= gamma_36 ~ 2e-6), so drift of order 21 * 0.05 *
 * 2e-6 * (1 + amplification) stays far below the 1e-4 allowed here, while a
 * different mask, shift, order or update rule moves weights by >= 1e-3. */
START_TEST(test_mlp_training_equals_legacy)
{
    kdcl_dataset tr;
    tu_make_6x6(&tr, 200, 11, 3, third, 120, 100);
    kdcl_model *m = legacy_model();
    tu_ok(kdcl_model_init(m, 7), "init");
    kdcl_train_opts o;
    kdcl_train_opts_default(&o);
    o.epochs = 3;
    o.batch = 32;
    o.lr = 0.05f;
    o.lr_decay = 0.9f;
    o.momentum0 = 0.5f;
    o.momentum1 = 0.9f;
    o.momentum_epochs = 2;
    o.weight_decay = 1e-4f;
    o.max_norm = 1.5f;
    o.jitter = 1;
    o.seed = 5;
    tu_ok(kdcl_train(m, &tr, &o, NULL, NULL, NULL), "train");
    double d = diff_to_legacy(m, "tests/data/legacy_mlp_trained.safetensors");
    fprintf(stderr, "MLP after 21 steps vs the earlier code's checkpoint: max |diff| %.3g\n", d);
    ck_assert_msg(d <= 1e-4, "trained weights differ from the earlier MLP's by %g", d);
    kdcl_model_destroy(m);
    kdcl_dataset_free(&tr);
}
END_TEST

START_TEST(test_legacy_checkpoint_loads_and_resaves)
{
    kdcl_model *m;
    kdcl_st_file meta;
    tu_ok(kdcl_model_load(tu_ctx, src_path("tests/data/legacy_mlp_trained.safetensors"), 16, &m,
                          &meta),
          "load legacy");
    ck_assert_uint_eq(kdcl_model_in_dim(m), 36);
    ck_assert_uint_eq(kdcl_model_classes(m), 3);
    ck_assert_double_eq(diff_to_legacy(m, "tests/data/legacy_mlp_trained.safetensors"), 0.0);
    char desc[128];
    kdcl_model_describe(m, desc, sizeof desc);
    ck_assert_str_eq(desc, "36-24-16-3");
    /* evaluated on 6x6 data: the flat model rebinds to the image shape */
    kdcl_dataset te;
    tu_make_6x6(&te, 100, 12, 3, third, 120, 100);
    kdcl_eval_result r0, r1;
    tu_ok(kdcl_evaluate(m, &te, 0, &r0), "evaluate");
    ck_assert_msg(r0.errors < 60, "the legacy model makes %zu errors of 100 (chance: 67)",
                  r0.errors);
    /* re-saved in the new format: kdcl.model with Flatten first, Sequential names */
    const char *path = tu_path("resaved.safetensors");
    tu_ok(kdcl_model_save(m, path, NULL, NULL, 0), "save");
    kdcl_st_file f;
    tu_ok(kdcl_st_read(path, &f), "read");
    ck_assert_ptr_nonnull(kdcl_st_meta(&f, "kdcl.model"));
    ck_assert_ptr_nonnull(strstr(kdcl_st_meta(&f, "kdcl.model"), "\"Flatten\""));
    ck_assert_ptr_nonnull(kdcl_st_find(&f, "1.weight"));
    ck_assert_ptr_nonnull(kdcl_st_find(&f, "5.bias"));
    ck_assert_str_eq(kdcl_st_meta(&f, "kdcl.input_layout"), "HWC");
    kdcl_st_free(&f);
    kdcl_model *m2;
    tu_ok(kdcl_model_load(tu_ctx, path, 16, &m2, NULL), "reload");
    tu_ok(kdcl_evaluate(m2, &te, 0, &r1), "evaluate reloaded");
    ck_assert_uint_eq(r0.errors, r1.errors);
    ck_assert_double_eq_tol(r0.loss, r1.loss, 1e-6);
    kdcl_eval_result_free(&r0);
    kdcl_eval_result_free(&r1);
    kdcl_st_free(&meta);
    kdcl_model_destroy(m);
    kdcl_model_destroy(m2);
    kdcl_dataset_free(&te);
}
END_TEST

/* ---- finite differences through a small CNN ---- */

/* L = sum_ij R_ij z_ij of the logits z of a training-mode forward with fixed
 * (seed, step): dropout masks and batch statistics are the same for every
 * evaluation, so L is a deterministic function of the parameters. */
static double linear_loss(kdcl_model *m, const float *R, size_t n)
{
    tu_ok(kdcl_model_forward(m, 1, 99, 3), "forward");
    float *z = malloc(n * sizeof *z);
    tu_get(kdcl_model_logits(m), z);
    double L = 0;
    for (size_t i = 0; i < n; i++) L += (double)R[i] * z[i];
    free(z);
    return L;
}

static void cnn_gradcheck(const char *arch)
{
    const size_t B = 5, C = 2, H = 7, W = 6;
    kdcl_model_spec spec;
    tu_ok(kdcl_model_spec_parse(arch, 3, &spec), arch);
    kdcl_model *m;
    tu_ok(kdcl_model_create(tu_ctx, &spec, C, H, W, B, &m), "create");
    kdcl_model_spec_free(&spec);
    tu_ok(kdcl_model_init(m, 4), "init");
    const size_t P = kdcl_model_n_params(m), K = kdcl_model_classes(m), n = B * K;
    float *p0 = malloc(P * 4), *p = malloc(P * 4), *g = malloc(P * 4), *x = malloc(B * C * H * W * 4);
    float *R = malloc(n * 4);
    tu_fill_uniform(x, B * C * H * W, -1, 1, 8);
    tu_fill_uniform(R, n, -1, 1, 9);
    tu_ok(kdcl_model_get_params(m, p0), "get");
    /* random biases / BatchNorm affine parameters away from their init values */
    size_t nr;
    const kdcl_param_range *r = kdcl_model_param_ranges(m, &nr);
    {
        float *q = p0;
        for (size_t i = 0; i < nr; i++) {
            if (!r[i].rows) {
                tu_fill_uniform(q, r[i].n, 0.5f, 1.5f, 30 + i);
                if (strstr(r[i].name, "bias")) tu_fill_uniform(q, r[i].n, -0.3f, 0.3f, 60 + i);
            }
            q += r[i].n;
        }
    }
    tu_ok(kdcl_model_set_params(m, p0), "set");
    tu_ok(kdcl_model_set_batch(m, B), "batch");
    tu_put(kdcl_model_input(m), x);
    double L0 = linear_loss(m, R, n);
    tu_put(kdcl_model_dlogits(m), R);
    tu_ok(kdcl_model_backward(m), "backward");
    /* gradients in packed order */
    {
        float *q = g;
        for (size_t i = 0; i < nr; i++) {
            tu_ok(kdcl_tensor_download(tu_ctx, kdcl_model_grads(m), r[i].offset, r[i].n, q), "g");
            q += r[i].n;
        }
    }
    double gscale = 0;
    for (size_t i = 0; i < P; i++) gscale = fmax(gscale, fabs(g[i]));
    ck_assert_msg(gscale > 1e-3, "gradient vanishes (%g)", gscale);
    size_t checked = 0, kinks = 0;
    /* float32 noise of L: each logit carries a relative rounding error of a few
     * hundred ulps after ~10 layers of sums of <= 36 terms; take
     * delta = 1e-5 * sum |R z| (about 170 ulps) */
    double delta = 0;
    {
        float *z = malloc(n * sizeof *z);
        tu_ok(kdcl_model_forward(m, 1, 99, 3), "forward");
        tu_get(kdcl_model_logits(m), z);
        for (size_t i = 0; i < n; i++) delta += fabs((double)R[i] * z[i]);
        delta *= 1e-5;
        free(z);
    }
    const double h = 1e-2;
    for (size_t i = 0; i < P; i++) {
        double lv[4]; /* L(w + h), L(w - h), L(w + h/2), L(w - h/2) */
        double hh[4];
        const double steps[4] = {h, -h, h / 2, -h / 2};
        for (int k = 0; k < 4; k++) {
            memcpy(p, p0, P * 4);
            p[i] = (float)(p0[i] + steps[k]);
            hh[k] = (double)p[i] - p0[i]; /* the step actually taken in float */
            tu_ok(kdcl_model_set_params(m, p), "set");
            lv[k] = linear_loss(m, R, n);
        }
        /* one-sided slopes that disagree by more than smooth curvature allows
         * mean a ReLU / max-pool kink within h: skip that parameter */
        double sp = (lv[0] - L0) / hh[0], sm = (L0 - lv[1]) / -hh[1];
        if (fabs(sp - sm) > 2e-2 * gscale + 1e-3) {
            kinks++;
            continue;
        }
        /* central differences at h and h/2: the truncation error of D2 is about
         * |D1 - D2| / 3 (it falls with h^2), its rounding error <= 2 delta / (h/2);
         * allow the whole |D1 - D2| for the truncation (3x its estimate) */
        double D1 = (lv[0] - lv[1]) / (hh[0] - hh[1]), D2 = (lv[2] - lv[3]) / (hh[2] - hh[3]);
        double tol = fabs(D1 - D2) + 2 * delta / (h / 2) * 2 + 1e-4 * gscale;
        ck_assert_msg(fabs(D2 - g[i]) <= tol,
                      "%s: param %zu: central differences %.6g (h) / %.6g (h/2) vs backward %.6g "
                      "(allowed %.3g)",
                      arch, i, D1, D2, (double)g[i], tol);
        checked++;
    }
    ck_assert_msg(checked >= P * 7 / 10, "%s: only %zu of %zu parameters checkable (%zu kinks)",
                  arch, checked, P, kinks);
    free(p0);
    free(p);
    free(g);
    free(x);
    free(R);
    kdcl_model_destroy(m);
}

static const char *cnn_arch =
    "conv(4,3,p=1),bn,relu,maxpool(2,s=2,p=1),res(conv(4,3,p=1),bn,relu,conv(4,3,p=1),bn),relu,"
    "res(conv(5,3,s=2,p=1,bias=0),bn,relu;conv(5,1,s=2)),avgpool(2,s=1),flatten,linear(6),relu,"
    "linear(K)";
static const char *cnn_arch_dropout =
    "conv(4,3,p=1),bn,relu,dropout(0.2),maxpool(2,s=2,p=1),res(conv(4,3,p=1),bn,relu,conv(4,3,p=1),bn),relu,"
    "gap,flatten,bn,linear(6),relu,dropout(0.3),linear(K)";

START_TEST(test_cnn_gradcheck) { cnn_gradcheck(cnn_arch); }
END_TEST
START_TEST(test_cnn_gradcheck_dropout) { cnn_gradcheck(cnn_arch_dropout); }
END_TEST

/* ---- checkpoints ---- */

START_TEST(test_checkpoint_round_trip_every_layer)
{
    const size_t B = 4, C = 3, H = 8, W = 9;
    kdcl_model_spec spec;
    tu_ok(kdcl_model_spec_parse("conv(4,3,p=1),bn,relu,maxpool(2),res(conv(4,3,p=1),bn;conv(4,1,bias=0)),"
                                "avgpool(2,s=1),dropout(0.1),gap,flatten,bn,linear(5),relu,linear(K)",
                                3, &spec),
          "parse");
    kdcl_model *m;
    tu_ok(kdcl_model_create(tu_ctx, &spec, C, H, W, B, &m), "create");
    kdcl_model_spec_free(&spec);
    tu_ok(kdcl_model_init(m, 2), "init");
    float mean[3] = {0.5f, 0.4f, 0.3f}, sd[3] = {0.25f, 0.2f, 0.3f};
    tu_ok(kdcl_model_set_input_norm(m, mean, sd), "norm");
    /* a few training-mode forwards move the BatchNorm running statistics */
    float *x = malloc(B * C * H * W * 4);
    tu_fill_uniform(x, B * C * H * W, -1, 2, 3);
    tu_put(kdcl_model_input(m), x);
    for (int i = 0; i < 3; i++) tu_ok(kdcl_model_forward(m, 1, 1, (uint64_t)i), "forward");
    tu_ok(kdcl_model_forward(m, 0, 0, 0), "eval forward");
    float z0[4 * 3], z1[4 * 3];
    tu_get(kdcl_model_logits(m), z0);
    const char *path = tu_path("every.safetensors");
    const char *k[] = {"note"}, *v[] = {"round trip"};
    tu_ok(kdcl_model_save(m, path, k, v, 1), "save");
    kdcl_st_file f;
    tu_ok(kdcl_st_read(path, &f), "read");
    /* PyTorch's state_dict names and shapes */
    const kdcl_st_tensor *t;
    ck_assert_ptr_nonnull(t = kdcl_st_find(&f, "0.weight"));
    ck_assert_uint_eq(t->ndim, 4);
    ck_assert_uint_eq(t->shape[1], 3);
    ck_assert_ptr_nonnull(kdcl_st_find(&f, "1.running_mean"));
    ck_assert_ptr_nonnull(t = kdcl_st_find(&f, "1.num_batches_tracked"));
    ck_assert_int_eq(t->dtype, KDCL_DT_I64);
    ck_assert_int_eq(*(const int64_t *)t->data, 3);
    ck_assert_ptr_nonnull(kdcl_st_find(&f, "4.body.0.weight"));
    ck_assert_ptr_nonnull(kdcl_st_find(&f, "4.body.1.running_var"));
    ck_assert_ptr_nonnull(kdcl_st_find(&f, "4.shortcut.0.weight"));
    ck_assert_ptr_null(kdcl_st_find(&f, "4.shortcut.0.bias"));
    ck_assert_ptr_nonnull(kdcl_st_find(&f, "9.weight"));
    ck_assert_ptr_nonnull(kdcl_st_find(&f, "12.bias"));
    ck_assert_str_eq(kdcl_st_meta(&f, "note"), "round trip");
    ck_assert_str_eq(kdcl_st_meta(&f, "kdcl.input_shape"), "[3, 8, 9]");
    const char *mj = kdcl_st_meta(&f, "kdcl.model");
    ck_assert_ptr_nonnull(mj);
    const char *types[] = {"Conv2d",       "BatchNorm2d", "ReLU",       "MaxPool2d", "Residual",
                           "AvgPool2d",    "Dropout",     "AdaptiveAvgPool2d", "Flatten",
                           "BatchNorm1d",  "Linear"};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        ck_assert_msg(strstr(mj, types[i]) != NULL, "kdcl.model lacks %s: %s", types[i], mj);
    kdcl_st_free(&f);
    kdcl_model *m2;
    tu_ok(kdcl_model_load(tu_ctx, path, B, &m2, NULL), "load");
    float mean2[3], sd2[3];
    kdcl_model_input_norm(m2, mean2, sd2);
    for (int c = 0; c < 3; c++) {
        ck_assert_float_eq(mean2[c], mean[c]);
        ck_assert_float_eq(sd2[c], sd[c]);
    }
    tu_ok(kdcl_model_set_batch(m2, B), "batch");
    tu_put(kdcl_model_input(m2), x);
    tu_ok(kdcl_model_forward(m2, 0, 0, 0), "eval forward");
    tu_get(kdcl_model_logits(m2), z1);
    for (size_t i = 0; i < B * 3; i++) ck_assert_float_eq(z0[i], z1[i]);
    kdcl_model_destroy(m2);
    kdcl_model_destroy(m);
    free(x);
}
END_TEST

/* Write a copy of `src` with one tensor replaced / metadata changed. */
static void rewrite(const char *src, const char *dst, const char *tname, const void *data,
                    const char *mkey, const char *mval, const char *drop)
{
    kdcl_st_file f;
    tu_ok(kdcl_st_read(src, &f), "read");
    kdcl_st_tensor *t = malloc((f.n_tensors + 1) * sizeof *t);
    size_t nt = 0;
    for (size_t i = 0; i < f.n_tensors; i++) {
        if (drop && !strcmp(f.tensors[i].name, drop)) continue;
        t[nt] = f.tensors[i];
        if (tname && !strcmp(t[nt].name, tname)) t[nt].data = (void *)data;
        nt++;
    }
    const char *keys[64], *vals[64];
    for (size_t i = 0; i < f.n_meta; i++) {
        keys[i] = f.meta_keys[i];
        vals[i] = mkey && !strcmp(keys[i], mkey) ? mval : f.meta_values[i];
    }
    tu_ok(kdcl_st_write(dst, t, nt, keys, vals, f.n_meta), "write");
    free(t);
    kdcl_st_free(&f);
}

static void expect_bad(const char *path, const char *needle)
{
    kdcl_model *m = (kdcl_model *)1;
    kdcl_status s = kdcl_model_load(tu_ctx, path, 4, &m, NULL);
    ck_assert_msg(s == KDCL_ERR_FORMAT, "%s loaded (status %d)", path, (int)s);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(kdcl_last_error(), needle) != NULL, "error '%s' lacks '%s'",
                  kdcl_last_error(), needle);
}

START_TEST(test_bad_checkpoints)
{
    kdcl_model_spec spec;
    tu_ok(kdcl_model_spec_parse("conv(3,3),bn,relu,flatten,linear(K)", 4, &spec), "parse");
    kdcl_model *m;
    tu_ok(kdcl_model_create(tu_ctx, &spec, 1, 5, 5, 4, &m), "create");
    kdcl_model_spec_free(&spec);
    tu_ok(kdcl_model_init(m, 1), "init");
    const char *good = tu_path("good.safetensors");
    tu_ok(kdcl_model_save(m, good, NULL, NULL, 0), "save");
    float nan3[3] = {0, NAN, 0};
    rewrite(good, tu_path("nan_bn.safetensors"), "1.running_var", nan3, NULL, NULL, NULL);
    expect_bad(tu_path("nan_bn.safetensors"), "1.running_var");
    rewrite(good, tu_path("unknown.safetensors"), NULL, NULL, "kdcl.model",
            "[{\"type\": \"Conv3d\", \"args\": {}}]", NULL);
    expect_bad(tu_path("unknown.safetensors"), "Conv3d");
    /* the JSON names 5 output features where the tensors have 4 */
    rewrite(good, tu_path("shape.safetensors"), NULL, NULL, "kdcl.model",
            "[{\"type\": \"Conv2d\", \"args\": {\"in_channels\": 1, \"out_channels\": 3, "
            "\"kernel_size\": [3, 3], \"stride\": [1, 1], \"padding\": [0, 0], \"bias\": true}}, "
            "{\"type\": \"BatchNorm2d\", \"args\": {\"num_features\": 3}}, {\"type\": \"ReLU\"}, "
            "{\"type\": \"Flatten\"}, {\"type\": \"Linear\", \"args\": {\"in_features\": 27, "
            "\"out_features\": 5, \"bias\": true}}]",
            NULL);
    expect_bad(tu_path("shape.safetensors"), "4.weight");
    rewrite(good, tu_path("missing.safetensors"), NULL, NULL, NULL, NULL, "0.bias");
    expect_bad(tu_path("missing.safetensors"), "0.bias");
    rewrite(good, tu_path("badshape.safetensors"), NULL, NULL, "kdcl.input_shape", "[1, 5]",
            NULL);
    expect_bad(tu_path("badshape.safetensors"), "input_shape");
    rewrite(good, tu_path("badnorm.safetensors"), NULL, NULL, "kdcl.input_std", "[0]", NULL);
    expect_bad(tu_path("badnorm.safetensors"), "std");
    /* a small file declaring a big model is refused before anything is
     * allocated for it: 400M weights, or 5.8e8 activation values per example */
    rewrite(good, tu_path("bigw.safetensors"), NULL, NULL, "kdcl.model",
            "[{\"type\": \"Flatten\"}, {\"type\": \"Linear\", \"args\": {\"in_features\": "
            "25, \"out_features\": 1000000, \"bias\": true}}, {\"type\": \"Linear\", \"args\": "
            "{\"in_features\": 1000000, \"out_features\": 400, \"bias\": true}}]",
            NULL);
    expect_bad(tu_path("bigw.safetensors"), "parameters and statistics but the file holds only");
    rewrite(good, tu_path("gap.safetensors"), NULL, NULL, "kdcl.model",
            "[{\"type\": \"Conv2d\", \"args\": {\"in_channels\": 1, \"out_channels\": 3, "
            "\"kernel_size\": [3, 3], \"stride\": [1, 1], \"padding\": [0, 0], \"bias\": true}}, "
            "{\"type\": \"AdaptiveAvgPool2d\", \"args\": {\"output_size\": 1}}, "
            "{\"type\": \"Flatten\"}, {\"type\": \"Linear\", \"args\": {\"in_features\": 3, "
            "\"out_features\": 4, \"bias\": true}}]",
            NULL);
    rewrite(tu_path("gap.safetensors"), tu_path("bigin.safetensors"), NULL, NULL,
            "kdcl.input_shape", "[1, 12000, 12000]", NULL);
    expect_bad(tu_path("bigin.safetensors"), "activation values per example");
    kdcl_model_destroy(m);
}
END_TEST

START_TEST(test_spec_that_does_not_fit)
{
    kdcl_model_spec spec;
    kdcl_model *m = NULL;
    tu_ok(kdcl_model_spec_parse("conv(4,5),relu,flatten,linear(K)", 3, &spec), "parse");
    ck_assert_int_eq(kdcl_model_create(tu_ctx, &spec, 1, 3, 3, 4, &m), KDCL_ERR_INVALID_ARG);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(kdcl_last_error(), "layer 1 (Conv2d") != NULL, "%s", kdcl_last_error());
    kdcl_model_spec_free(&spec);
    tu_ok(kdcl_model_spec_parse("784-100-10", 10, &spec), "parse");
    ck_assert_int_eq(kdcl_model_create(tu_ctx, &spec, 1, 6, 6, 4, &m), KDCL_ERR_INVALID_ARG);
    ck_assert_msg(strstr(kdcl_last_error(), "784") != NULL, "%s", kdcl_last_error());
    kdcl_model_spec_free(&spec);
}
END_TEST

/* ---- optimisers ---- */

/* Adam and AdamW with max-norm through kdcl_optim against a host double
 * reference of PyTorch's update over three steps (gradients fixed). */
static void adam_case(kdcl_optim_kind kind)
{
    kdcl_model_spec spec;
    tu_ok(kdcl_model_spec_parse("conv(3,3),relu,flatten,linear(K)", 4, &spec), "parse");
    kdcl_model *m;
    tu_ok(kdcl_model_create(tu_ctx, &spec, 2, 5, 4, 2, &m), "create");
    kdcl_model_spec_free(&spec);
    tu_ok(kdcl_model_init(m, 3), "init");
    kdcl_tensor *pw = kdcl_model_params(m), *pg = kdcl_model_grads(m);
    const size_t N = pw->numel;
    float *w = malloc(N * 4), *g = malloc(N * 4), *out = malloc(N * 4);
    tu_get(pw, w);
    tu_fill_uniform(g, N, -1, 1, 5);
    size_t nr;
    const kdcl_param_range *r = kdcl_model_param_ranges(m, &nr);
    /* gaps between tensors stay zero */
    char *used = calloc(N, 1);
    for (size_t i = 0; i < nr; i++) memset(used + r[i].offset, 1, r[i].n);
    for (size_t i = 0; i < N; i++)
        if (!used[i]) g[i] = 0;
    tu_put(pg, g);
    kdcl_optim_opts oo;
    kdcl_optim_opts_default(&oo);
    oo.kind = kind;
    oo.weight_decay = 0.01f;
    oo.max_norm = 0.9f;
    kdcl_optim *opt;
    tu_ok(kdcl_optim_create(m, &oo, &opt), "optim");
    double *wd = malloc(N * sizeof *wd), *m1 = calloc(N, sizeof *m1), *v1 = calloc(N, sizeof *v1);
    for (size_t i = 0; i < N; i++) wd[i] = w[i];
    const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8, dec = 0.01;
    for (int t = 1; t <= 3; t++) {
        tu_ok(kdcl_optim_step(opt, (float)lr, 0.0f), "step");
        for (size_t i = 0; i < N; i++) {
            double gi = g[i];
            if (kind == KDCL_OPT_ADAMW) wd[i] -= lr * dec * wd[i];
            else gi += dec * wd[i];
            m1[i] = b1 * m1[i] + (1 - b1) * gi;
            v1[i] = b2 * v1[i] + (1 - b2) * gi * gi;
            double mh = m1[i] / (1 - pow(b1, t)), vh = v1[i] / (1 - pow(b2, t));
            wd[i] -= lr * mh / (sqrt(vh) + eps);
        }
        for (size_t k = 0; k < nr; k++) {
            if (!r[k].rows) continue;
            for (size_t row = 0; row < r[k].rows; row++) {
                double *q = wd + r[k].offset + row * r[k].cols, ss = 0;
                for (size_t j = 0; j < r[k].cols; j++) ss += q[j] * q[j];
                if (sqrt(ss) > 0.9)
                    for (size_t j = 0; j < r[k].cols; j++) q[j] *= 0.9 / sqrt(ss);
            }
        }
    }
    tu_get(pw, out);
    /* each step: fp32 rounding of a few operations on values <= ~1 (relative
     * ~1e-6 each, incl. sqrt and the bias-correction factors) */
    for (size_t i = 0; i < N; i++)
        ck_assert_msg(fabs(out[i] - wd[i]) <= 1e-5 * (1 + fabs(wd[i])),
                      "kind %d element %zu: device %.9g vs reference %.9g", (int)kind, i,
                      (double)out[i], wd[i]);
    kdcl_optim_destroy(opt);
    kdcl_model_destroy(m);
    free(w);
    free(g);
    free(out);
    free(used);
    free(wd);
    free(m1);
    free(v1);
}

START_TEST(test_adam_matches_host) { adam_case(KDCL_OPT_ADAM); }
END_TEST
START_TEST(test_adamw_matches_host) { adam_case(KDCL_OPT_ADAMW); }
END_TEST

START_TEST(test_schedules)
{
    kdcl_schedule s = {0};
    s.lr = 0.1f;
    s.decay = 0.5f;
    s.epochs = 10;
    ck_assert_double_eq_tol(kdcl_schedule_lr(&s, 2, 0, 10), 0.025, 1e-9);
    tu_ok(kdcl_schedule_parse("step:3:0.2", &s), "step");
    ck_assert_double_eq_tol(kdcl_schedule_lr(&s, 2, 5, 10), 0.1, 1e-7);
    ck_assert_double_eq_tol(kdcl_schedule_lr(&s, 3, 0, 10), 0.02, 1e-7);
    ck_assert_double_eq_tol(kdcl_schedule_lr(&s, 6, 0, 10), 0.004, 1e-7);
    tu_ok(kdcl_schedule_parse("cosine:0.001", &s), "cosine");
    ck_assert_double_eq_tol(kdcl_schedule_lr(&s, 0, 0, 10), 0.1, 1e-7);
    ck_assert_double_eq_tol(kdcl_schedule_lr(&s, 5, 0, 10), 0.0505, 1e-6);
    s.warmup_epochs = 2;
    /* warm-up: linear over the first 2 * 10 steps */
    ck_assert_double_eq_tol(kdcl_schedule_lr(&s, 0, 4, 10), 0.1 * 5 / 20, 1e-7);
    ck_assert_double_eq_tol(kdcl_schedule_lr(&s, 2, 0, 10), 0.1, 1e-7);
    ck_assert_int_eq(kdcl_schedule_parse("step:0", &s), KDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kdcl_schedule_parse("cosine:-1", &s), KDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kdcl_schedule_parse("linear", &s), KDCL_ERR_INVALID_ARG);
    s.momentum0 = 0.5f;
    s.momentum1 = 0.9f;
    s.momentum_epochs = 4;
    ck_assert_double_eq_tol(kdcl_schedule_momentum(&s, 2), 0.7, 1e-7);
    ck_assert_double_eq_tol(kdcl_schedule_momentum(&s, 9), 0.9, 1e-7);
}
END_TEST

/* add_grad at an intermediate layer: the parameter gradient is linear in the
 * gradients that reach the network, so backward(R, G at layer i) equals
 * backward(R) + backward(0, G at layer i). */
START_TEST(test_add_grad_is_linear)
{
    kdcl_model_spec spec;
    tu_ok(kdcl_model_spec_parse("conv(3,3,p=1),relu,maxpool(2),flatten,linear(7),relu,linear(K)", 3,
                                &spec),
          "parse");
    kdcl_model *m;
    const size_t B = 3;
    tu_ok(kdcl_model_create(tu_ctx, &spec, 1, 6, 6, B, &m), "create");
    kdcl_model_spec_free(&spec);
    tu_ok(kdcl_model_init(m, 8), "init");
    float x[3 * 36], R[9], G[3 * 7], zero[9] = {0};
    tu_fill_uniform(x, sizeof x / 4, 0, 1, 1);
    tu_fill_uniform(R, 9, -1, 1, 2);
    tu_fill_uniform(G, 21, -1, 1, 3);
    kdcl_tensor gt = tu_vec(KDCL_F32, 21);
    tu_put(&gt, G);
    tu_put(kdcl_model_input(m), x);
    const size_t N = kdcl_model_grads(m)->numel;
    float *g1 = malloc(N * 4), *g2 = malloc(N * 4), *g3 = malloc(N * 4);
    size_t layer = 5; /* the hidden Linear's output (post-ReLU: fused) */
    ck_assert_int_eq(kdcl_model_layer_kind(m, 4), KDCL_LAYER_LINEAR);
    ck_assert_uint_eq(kdcl_model_layer_out_dim(m, layer), 7);
    tu_ok(kdcl_model_forward(m, 1, 0, 0), "fwd");
    tu_put(kdcl_model_dlogits(m), R);
    tu_ok(kdcl_model_add_grad(m, layer, &gt, 0.5f), "add");
    tu_ok(kdcl_model_backward(m), "bwd");
    tu_get(kdcl_model_grads(m), g1);
    tu_ok(kdcl_model_forward(m, 1, 0, 0), "fwd");
    tu_put(kdcl_model_dlogits(m), R);
    tu_ok(kdcl_model_backward(m), "bwd");
    tu_get(kdcl_model_grads(m), g2);
    tu_ok(kdcl_model_forward(m, 1, 0, 0), "fwd");
    tu_put(kdcl_model_dlogits(m), zero);
    tu_ok(kdcl_model_add_grad(m, layer, &gt, 0.5f), "add");
    tu_ok(kdcl_model_backward(m), "bwd");
    tu_get(kdcl_model_grads(m), g3);
    double scale = 0, worst = 0, extra = 0;
    for (size_t i = 0; i < N; i++) {
        scale = fmax(scale, fabs(g1[i]));
        worst = fmax(worst, fabs((double)g1[i] - ((double)g2[i] + g3[i])));
        extra = fmax(extra, fabs(g3[i]));
    }
    ck_assert_msg(extra > 1e-3 * scale, "the added gradient changed nothing");
    /* fp32 sums of <= 36 * 3 terms each way: ~1e-5 of the scale */
    ck_assert_msg(worst <= 1e-5 * scale + 1e-7, "not linear: %g (scale %g)", worst, scale);
    ck_assert_int_eq(kdcl_model_add_grad(m, 99, &gt, 1.0f), KDCL_ERR_INVALID_ARG);
    kdcl_tensor_free(tu_ctx, &gt);
    free(g1);
    free(g2);
    free(g3);
    kdcl_model_destroy(m);
}
END_TEST

/* A specialist of a CNN generalist: the same network with another output
 * layer; every other parameter and the BatchNorm statistics copied, then
 * kdcl_specialist_init fills the output rows from the generalist's. */
START_TEST(test_replace_output_of_a_cnn)
{
    kdcl_model *g = tu_model("conv(4,3,p=1),bn,relu,maxpool(2),flatten,linear(6),relu,linear(K)", 5,
                             1, 6, 6, 8, 0, 0, 3);
    float x[8 * 36];
    tu_fill_uniform(x, sizeof x / 4, 0, 1, 4);
    tu_put(kdcl_model_input(g), x);
    tu_ok(kdcl_model_forward(g, 1, 0, 0), "forward (moves the BatchNorm statistics)");
    kdcl_model *sp;
    tu_ok(kdcl_model_replace_output(g, 3, 8, 9, &sp), "replace_output");
    ck_assert_uint_eq(kdcl_model_classes(sp), 3);
    size_t ng, ns;
    const kdcl_param_range *rg = kdcl_model_param_ranges(g, &ng), *rs = kdcl_model_param_ranges(sp, &ns);
    ck_assert_uint_eq(ng, ns);
    const int32_t cls[2] = {4, 0};
    tu_ok(kdcl_specialist_init(g, cls, 2, sp), "specialist_init");
    float *a = malloc(kdcl_model_n_params(g) * 4), *b = malloc(kdcl_model_n_params(sp) * 4);
    tu_ok(kdcl_model_get_params(g, a), "get");
    tu_ok(kdcl_model_get_params(sp, b), "get");
    size_t oa = 0, ob = 0;
    for (size_t i = 0; i < ng; i++) {
        ck_assert_str_eq(rg[i].name, rs[i].name);
        if (i + 2 < ng) {
            ck_assert_uint_eq(rg[i].n, rs[i].n);
            ck_assert_int_eq(memcmp(a + oa, b + ob, rg[i].n * 4), 0);
        } else if (i + 2 == ng) { /* output weight: rows of classes 4 and 0, then the dustbin */
            ck_assert_int_eq(memcmp(b + ob, a + oa + 4 * 6, 6 * 4), 0);
            ck_assert_int_eq(memcmp(b + ob + 6, a + oa, 6 * 4), 0);
        }
        oa += rg[i].n;
        ob += rs[i].n;
    }
    /* test-mode outputs of the shared layers agree: running statistics copied */
    tu_ok(kdcl_model_forward(g, 0, 0, 0), "eval g");
    tu_put(kdcl_model_input(sp), x);
    tu_ok(kdcl_model_forward(sp, 0, 0, 0), "eval sp");
    float hg[8 * 6], hs[8 * 6];
    tu_get(kdcl_model_output(g, 6), hg);
    tu_get(kdcl_model_output(sp, 6), hs);
    ck_assert_int_eq(memcmp(hg, hs, sizeof hg), 0);
    free(a);
    free(b);
    kdcl_model_destroy(sp);
    kdcl_model_destroy(g);
}
END_TEST

/* Per-channel statistics of u8 images (HWC) against a double reference. */
START_TEST(test_channel_stats)
{
    kdcl_dataset d;
    memset(&d, 0, sizeof d);
    d.n = 7;
    d.h = 3;
    d.w = 5;
    d.c = 3;
    d.dim = 45;
    d.n_classes = 2;
    d.images = malloc(d.n * d.dim);
    d.labels = calloc(d.n, sizeof *d.labels);
    for (size_t i = 0; i < d.n * d.dim; i++)
        d.images[i] = (uint8_t)(i % 3 == 2 ? 77 : (i * 2654435761u) >> 24);
    float mean[3], sd[3];
    tu_ok(kdcl_dataset_channel_stats(&d, mean, sd), "stats");
    for (size_t c = 0; c < 3; c++) {
        double s = 0, q = 0, n = (double)(d.n * d.h * d.w);
        for (size_t i = c; i < d.n * d.dim; i += 3) s += d.images[i] / 255.0;
        for (size_t i = c; i < d.n * d.dim; i += 3) q += pow(d.images[i] / 255.0 - s / n, 2);
        ck_assert_double_eq_tol(mean[c], s / n, 1e-6);
        if (c == 2)
            ck_assert_float_eq(sd[c], 1.0f); /* a constant channel */
        else
            ck_assert_double_eq_tol(sd[c], sqrt(q / n), 1e-6);
    }
    d.c = 5;
    ck_assert_int_eq(kdcl_dataset_channel_stats(&d, mean, sd), KDCL_ERR_INVALID_ARG);
    d.c = 3;
    kdcl_dataset_free(&d);
}
END_TEST

/* The GEMMs a step lists for bench/tune: every Linear and Conv2d forward and
 * weight gradient, the input gradient of all but the first such layer, with
 * m*n*k*count equal to the layer's multiply-adds at batch B (whatever the
 * orientation or batching the conv path chose); with the direct
 * convolutions on (_i = 1), LeNet-5's two 5x5 layers run no GEMM and list
 * none. */
START_TEST(test_gemm_shapes_cover_the_step)
{
    const size_t B = 16;
    /* under KDCL_CONV=convgemm the forward is no kdcl_gemm call (and is not listed) */
    const kdcl_conv_algo was = kdcl_conv_get_algo(tu_ctx);
    tu_ok(kdcl_conv_set_algo(tu_ctx, KDCL_CONV_KDCL_IM2COL), "conv algo");
    kdcl__conv_set_direct(tu_ctx, _i);
    kdcl_model *m = tu_model("lenet5", 10, 1, 28, 28, B, 0, 0, 1);
    kdcl_gemm_shape g[64];
    size_t n = kdcl_model_gemm_shapes(m, B, g, 64);
    /* per layer: forward, dW (and dX): conv 0 (no dX), conv 3, linears 7, 9, 11 */
    ck_assert_uint_eq(n, (_i ? 0 : 2 + 3) + 3 + 3 + 3);
    const double macs[5] = {6.0 * 25 * 28 * 28, 16.0 * 150 * 10 * 10, 400.0 * 120, 120.0 * 84,
                            84.0 * 10};
    const char *names[5] = {"0 Conv2d", "3 Conv2d", "7 Linear", "9 Linear", "11 Linear"};
    for (size_t l = 0; l < 5; l++) {
        int seen = 0;
        for (size_t i = 0; i < n; i++) {
            if (strncmp(g[i].what, names[l], strlen(names[l]))) continue;
            seen++;
            double work = (double)g[i].m * (double)g[i].n * (double)g[i].k * (double)g[i].count;
            ck_assert_msg(work == macs[l] * (double)B, "%s: %zu x %zu x %zu x %zu = %g, want %g",
                          g[i].what, g[i].m, g[i].n, g[i].k, g[i].count, work, macs[l] * B);
        }
        ck_assert_int_eq(seen, l < 2 && _i ? 0 : l == 0 ? 2 : 3);
    }
    kdcl_model_destroy(m);
    kdcl__conv_set_direct(tu_ctx, -1);
    tu_ok(kdcl_conv_set_algo(tu_ctx, was), "conv algo");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("model");
    tcase_add_unchecked_fixture(tc, tu_ctx_setup, tu_ctx_teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_mlp_init_equals_legacy);
    tcase_add_test(tc, test_mlp_training_equals_legacy);
    tcase_add_test(tc, test_legacy_checkpoint_loads_and_resaves);
    tcase_add_test(tc, test_cnn_gradcheck);
    tcase_add_test(tc, test_cnn_gradcheck_dropout);
    tcase_add_test(tc, test_checkpoint_round_trip_every_layer);
    tcase_add_test(tc, test_bad_checkpoints);
    tcase_add_test(tc, test_spec_that_does_not_fit);
    tcase_add_test(tc, test_adam_matches_host);
    tcase_add_test(tc, test_adamw_matches_host);
    tcase_add_test(tc, test_schedules);
    tcase_add_test(tc, test_add_grad_is_linear);
    tcase_add_test(tc, test_replace_output_of_a_cnn);
    tcase_add_test(tc, test_channel_stats);
    tcase_add_loop_test(tc, test_gemm_shapes_cover_the_step, 0, 2);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
