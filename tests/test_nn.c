/* MLPs as models of Linear/ReLU/Dropout layers: architecture parsing, whole-model finite-difference gradient check
 * (every parameter tensor, with and without dropout), checkpoints, a real
 * training run on a small synthetic problem, and bad input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kdcl/opencl.h"
#include "kdcl/kdcl.h"
#include "kdcl/data.h"
#include "kdcl/loss.h"
#include "kdcl/model.h"
#include "kdcl/ops.h"
#include "kdcl/safetensors.h"
#include "kdcl/train.h"
#include "testutil.h"

/* The sizes of an "A-B-...-K" spec, for the double reference. */
typedef struct ref_arch {
    size_t n_layers;
    size_t sizes[17];
} ref_arch;

static ref_arch ref_arch_of(const char *spec)
{
    ref_arch a = {0, {0}};
    const char *p = spec;
    while (*p) {
        a.sizes[a.n_layers++] = strtoul(p, (char **)&p, 10);
        if (*p == '-') p++;
    }
    a.n_layers--;
    return a;
}

START_TEST(test_arch_parse)
{
    kdcl_model_spec sp;
    ck_assert_int_eq(kdcl_model_spec_parse("784-1200-1200-10", 10, &sp), KDCL_OK);
    ck_assert_uint_eq(sp.in_features, 784);
    /* Flatten, Linear, ReLU, Linear, ReLU, Linear */
    ck_assert_uint_eq(sp.n, 6);
    ck_assert_int_eq(sp.layers[0].kind, KDCL_LAYER_FLATTEN);
    ck_assert_int_eq(sp.layers[5].kind, KDCL_LAYER_LINEAR);
    ck_assert_uint_eq(sp.layers[5].out, 10);
    kdcl_model_spec_free(&sp);
    const char *bad[] = {"", "784", "784-", "-10", "784--10", "784-0-10", "784-abc-10",
                         "784-10x", "784 10", "784-99999999-10", "1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(kdcl_model_spec_parse(bad[i], 10, &sp) == KDCL_ERR_INVALID_ARG,
                      "accepted '%s'", bad[i]);
        ck_assert(strlen(kdcl_last_error()) > 0);
    }
}
END_TEST

START_TEST(test_mlp_params_and_describe)
{
    kdcl_model *m = tu_model("784-1200-1200-10", 10, 1, 28, 28, 4, 0, 0, 1);
    ck_assert_uint_eq(kdcl_model_n_params(m), 784 * 1200 + 1200 + 1200 * 1200 + 1200 + 12010);
    char buf[64];
    kdcl_model_describe(m, buf, sizeof buf);
    ck_assert_str_eq(buf, "784-1200-1200-10");
    ck_assert_double_eq(kdcl_model_macs(m), 784.0 * 1200 + 1200.0 * 1200 + 12000);
    kdcl_gemm_shape g[16];
    /* forward + dW for 3 layers, dX for the 2 above the first */
    ck_assert_uint_eq(kdcl_model_gemm_shapes(m, 128, g, 16), 8);
    ck_assert_uint_eq(g[0].m, 128);
    ck_assert_uint_eq(g[0].n, 1200);
    ck_assert_uint_eq(g[0].k, 784);
    kdcl_model_destroy(m);
}
END_TEST

/* Mean cross-entropy of the batch x under the model's current parameters. */
static double batch_loss(kdcl_model *m, const kdcl_tensor *x, const kdcl_tensor *y,
                         kdcl_tensor *loss, int train, int with_grad)
{
    const size_t B = kdcl_model_batch(m);
    ck_assert_int_eq(clEnqueueCopyBuffer(kdcl_ctx_queue(tu_ctx), x->buf, kdcl_model_input(m)->buf,
                                         0, 0, B * kdcl_model_in_dim(m) * 4, 0, NULL, NULL),
                     CL_SUCCESS);
    ck_assert_int_eq(kdcl_model_forward(m, train, 7, 3), KDCL_OK);
    ck_assert_msg(kdcl_op_softmax_xent(tu_ctx, kdcl_model_logits(m), y, loss,
                                       with_grad ? kdcl_model_dlogits(m) : NULL, 1.0f / (float)B,
                                       NULL) == KDCL_OK,
                  "%s", kdcl_last_error());
    float l[64];
    ck_assert_int_eq(kdcl_tensor_download(tu_ctx, loss, 0, B, l), KDCL_OK);
    double s = 0;
    for (size_t i = 0; i < B; i++) s += l[i];
    return s / (double)B;
}

/* Double-precision CPU reference of the same MLP (same dropout masks through
 * kdcl_dropout_keep): returns the mean cross-entropy and, when g != NULL, the
 * gradient in kdcl_model_get_params order; min_margin receives the smallest
 * |pre-activation| of a kept hidden unit (distance to the ReLU kink). */
static double ref_loss(const ref_arch *a, const double *p, const float *x, const int32_t *y,
                       size_t B, int train, float pin, float ph, double *g, double *min_margin)
{
    const size_t L = a->n_layers;
    double *act[17], *z[16];
    const double *W[16], *bb[16];
    const double *q = p;
    for (size_t l = 0; l < L; l++) {
        W[l] = q;
        q += a->sizes[l] * a->sizes[l + 1];
        bb[l] = q;
        q += a->sizes[l + 1];
    }
    act[0] = malloc(B * a->sizes[0] * sizeof(double));
    for (size_t i = 0; i < B * a->sizes[0]; i++)
        act[0][i] = train ? (kdcl_dropout_keep(7, 3, 0, i, pin) ? x[i] / (1.0 - pin) : 0.0) : x[i];
    double margin = 1e300;
    for (size_t l = 0; l < L; l++) {
        size_t in = a->sizes[l], out = a->sizes[l + 1];
        z[l] = malloc(B * out * sizeof(double));
        act[l + 1] = malloc(B * out * sizeof(double));
        for (size_t r = 0; r < B; r++)
            for (size_t j = 0; j < out; j++) {
                double s = bb[l][j];
                for (size_t k = 0; k < in; k++) s += act[l][r * in + k] * W[l][j * in + k];
                z[l][r * out + j] = s;
                if (l + 1 < L) {
                    int keep = !train || kdcl_dropout_keep(7, 3, (uint32_t)(l + 1), r * out + j, ph);
                    if (keep && fabs(s) < margin) margin = fabs(s);
                    act[l + 1][r * out + j] = keep ? (s > 0 ? s : 0) / (train ? 1.0 - ph : 1.0) : 0;
                } else {
                    act[l + 1][r * out + j] = s;
                }
            }
    }
    const size_t K = a->sizes[L];
    double loss = 0;
    double *dz = malloc(B * K * sizeof(double));
    for (size_t r = 0; r < B; r++) {
        double mx = -1e300, se = 0;
        for (size_t k = 0; k < K; k++) mx = fmax(mx, act[L][r * K + k]);
        for (size_t k = 0; k < K; k++) se += exp(act[L][r * K + k] - mx);
        loss += -(act[L][r * K + (size_t)y[r]] - mx - log(se));
        for (size_t k = 0; k < K; k++)
            dz[r * K + k] = (exp(act[L][r * K + k] - mx) / se - (k == (size_t)y[r])) / (double)B;
    }
    if (g) {
        double *gW[16], *gb[16], *gq = g;
        for (size_t l = 0; l < L; l++) {
            gW[l] = gq;
            gq += a->sizes[l] * a->sizes[l + 1];
            gb[l] = gq;
            gq += a->sizes[l + 1];
        }
        for (size_t l = L; l-- > 0;) {
            size_t in = a->sizes[l], out = a->sizes[l + 1];
            for (size_t j = 0; j < out; j++) {
                gb[l][j] = 0;
                for (size_t k = 0; k < in; k++) gW[l][j * in + k] = 0;
            }
            for (size_t r = 0; r < B; r++)
                for (size_t j = 0; j < out; j++) {
                    gb[l][j] += dz[r * out + j];
                    for (size_t k = 0; k < in; k++)
                        gW[l][j * in + k] += dz[r * out + j] * act[l][r * in + k];
                }
            if (l == 0) break;
            double *dprev = malloc(B * in * sizeof(double));
            for (size_t r = 0; r < B; r++)
                for (size_t k = 0; k < in; k++) {
                    double s = 0;
                    for (size_t j = 0; j < out; j++) s += dz[r * out + j] * W[l][j * in + k];
                    int keep = !train || kdcl_dropout_keep(7, 3, (uint32_t)l, r * in + k, ph);
                    double zz = z[l - 1][r * in + k];
                    dprev[r * in + k] = keep && zz > 0 ? s / (train ? 1.0 - ph : 1.0) : 0.0;
                }
            free(dz);
            dz = dprev;
        }
    }
    free(dz);
    for (size_t l = 0; l <= L; l++) free(act[l]);
    for (size_t l = 0; l < L; l++) free(z[l]);
    if (min_margin) *min_margin = margin;
    return loss / (double)B;
}

/* Whole-model gradient check, every parameter tensor:
 *  1. the CPU double reference's backward agrees with its own central
 *     differences (h = 1e-6; every kept hidden pre-activation is >= 1e-4 from
 *     the ReLU kink, asserted, so no difference straddles it);
 *  2. the device's backward agrees with the reference gradient (fp32 sums of
 *     <= 8 terms: relative 1e-4 of the gradient's scale is ~100x the rounding);
 *  3. central differences of the device's own float loss (h = 1e-2) agree with
 *     the device's backward wherever the reference shows no kink within h. */
static void gradcheck(int train)
{
    const ref_arch a = ref_arch_of("6-5-4-3");
    const float pin = 0.2f, ph = 0.3f;
    kdcl_model *m = tu_model("6-5-4-3", 3, 0, 0, 0, 8, pin, ph, 11);
    const size_t B = 8, P = kdcl_model_n_params(m);
    ck_assert_uint_eq(P, 6 * 5 + 5 + 5 * 4 + 4 + 4 * 3 + 3);
    float xs[8 * 6];
    int32_t ys[8];
    tu_fill_uniform(xs, B * 6, -1, 1, 5);
    for (size_t i = 0; i < B; i++) ys[i] = (int32_t)(i % 3);
    kdcl_tensor x, y, loss;
    size_t nb[1] = {B};
    ck_assert_int_eq(kdcl_tensor_alloc2(tu_ctx, &x, KDCL_F32, B, 6), KDCL_OK);
    ck_assert_int_eq(kdcl_tensor_alloc(tu_ctx, &y, KDCL_I32, 1, nb), KDCL_OK);
    ck_assert_int_eq(kdcl_tensor_alloc(tu_ctx, &loss, KDCL_F32, 1, nb), KDCL_OK);
    kdcl_tensor_upload(tu_ctx, &x, 0, B * 6, xs);
    kdcl_tensor_upload(tu_ctx, &y, 0, B, ys);
    float *g = malloc(P * 4), *p = malloc(P * 4), *p0 = malloc(P * 4);
    double *pd = malloc(P * sizeof(double)), *gref = malloc(P * sizeof(double));
    /* random weights and biases: with zero biases a unit whose inputs are all
     * dropped sits exactly on the ReLU kink */
    tu_fill_uniform(p0, P, -0.8f, 0.8f, 21);
    ck_assert_int_eq(kdcl_model_set_params(m, p0), KDCL_OK);
    for (size_t i = 0; i < P; i++) pd[i] = p0[i];
    double dev_loss = batch_loss(m, &x, &y, &loss, train, 1);
    ck_assert_int_eq(kdcl_model_backward(m), KDCL_OK);
    {
        float *q = g;
        size_t nr;
        const kdcl_param_range *r = kdcl_model_param_ranges(m, &nr);
        for (size_t i = 0; i < nr; i++) {
            kdcl_tensor_download(tu_ctx, kdcl_model_grads(m), r[i].offset, r[i].n, q);
            q += r[i].n;
        }
    }
    double margin;
    double ref = ref_loss(&a, pd, xs, ys, B, train, pin, ph, gref, &margin);
    ck_assert_msg(margin > 1e-4, "a hidden pre-activation is %g from the ReLU kink", margin);
    ck_assert_msg(fabs(ref - dev_loss) <= 1e-5 * (1 + ref), "loss: device %.9g, reference %.9g",
                  dev_loss, ref);
    double gscale = 0;
    for (size_t i = 0; i < P; i++) {
        double h = 1e-6, keep = pd[i];
        pd[i] = keep + h;
        double lp = ref_loss(&a, pd, xs, ys, B, train, pin, ph, NULL, NULL);
        pd[i] = keep - h;
        double lm = ref_loss(&a, pd, xs, ys, B, train, pin, ph, NULL, NULL);
        pd[i] = keep;
        double fd = (lp - lm) / (2 * h);
        ck_assert_msg(fabs(fd - gref[i]) <= 1e-6 * fabs(gref[i]) + 1e-8,
                      "reference param %zu: fd %.12g vs backward %.12g", i, fd, gref[i]);
        gscale = fmax(gscale, fabs(gref[i]));
    }
    for (size_t i = 0; i < P; i++)
        ck_assert_msg(fabs(g[i] - gref[i]) <= 1e-4 * gscale + 1e-4 * fabs(gref[i]),
                      "train=%d param %zu: device %.9g vs reference %.9g", train, i, (double)g[i],
                      gref[i]);
    size_t checked = 0;
    for (size_t i = 0; i < P; i++) {
        const double h = 1e-2;
        double keep = pd[i];
        pd[i] = keep + h;
        double rp = ref_loss(&a, pd, xs, ys, B, train, pin, ph, NULL, NULL);
        pd[i] = keep - h;
        double rm = ref_loss(&a, pd, xs, ys, B, train, pin, ph, NULL, NULL);
        pd[i] = keep;
        if (fabs((rp - rm) / (2 * h) - gref[i]) > 1e-3 * gscale) continue; /* kink within h */
        memcpy(p, p0, P * 4);
        p[i] = (float)(p0[i] + h);
        double hp = (double)p[i] - p0[i];
        kdcl_model_set_params(m, p);
        double lp = batch_loss(m, &x, &y, &loss, train, 0);
        p[i] = (float)(p0[i] - h);
        double hm = p0[i] - (double)p[i];
        kdcl_model_set_params(m, p);
        double lm = batch_loss(m, &x, &y, &loss, train, 0);
        double fd = (lp - lm) / (hp + hm);
        /* truncation <= 1e-3 * gscale (as on the reference), rounding ~ 1.2e-7 * |L| / h */
        ck_assert_msg(fabs(fd - g[i]) <= 2e-3 * gscale + 1e-4,
                      "train=%d param %zu: finite difference %.6g vs backward %.6g", train, i, fd,
                      (double)g[i]);
        checked++;
    }
    ck_assert_msg(checked >= P * 8 / 10, "only %zu of %zu parameters checkable", checked, P);
    kdcl_model_set_params(m, p0);
    free(g);
    free(p);
    free(p0);
    free(pd);
    free(gref);
    kdcl_tensor_free(tu_ctx, &x);
    kdcl_tensor_free(tu_ctx, &y);
    kdcl_tensor_free(tu_ctx, &loss);
    kdcl_model_destroy(m);
}

START_TEST(test_gradcheck_plain) { gradcheck(0); }
END_TEST
START_TEST(test_gradcheck_dropout) { gradcheck(1); }
END_TEST

/* Synthetic 3-class problem on 6x6 images: class = which third of the image is bright. */
static int third(size_t p) { return (int)(p % 6) / 2; }
static void make_blobs(kdcl_dataset *d, size_t n, uint64_t seed)
{
    tu_make_6x6(d, n, seed, 3, third, 120, 100);
}

START_TEST(test_training_learns_and_checkpoints)
{
    kdcl_dataset tr, te;
    make_blobs(&tr, 600, 1);
    make_blobs(&te, 300, 2);
    kdcl_model *m = tu_model("36-32-32-3", 3, 1, 6, 6, 64, 0, 0.2f, 3);
    kdcl_eval_result r0, r1;
    ck_assert_int_eq(kdcl_evaluate(m, &te, 0, &r0), KDCL_OK);
    kdcl_train_opts o;
    kdcl_train_opts_default(&o);
    o.epochs = 4;
    o.batch = 32;
    o.lr = 0.05f;
    o.max_norm = 3.0f;
    o.jitter = 1;
    o.metrics_path = tu_path("metrics.jsonl");
    kdcl_epoch_stats st;
    ck_assert_msg(kdcl_train(m, &tr, &o, NULL, NULL, &st) == KDCL_OK, "%s", kdcl_last_error());
    ck_assert_uint_eq(st.epoch, 4);
    ck_assert_int_eq(kdcl_evaluate(m, &te, 1, &r1), KDCL_OK);
    ck_assert_msg(r1.errors * 10 < te.n, "test errors %zu of %zu after training (before: %zu)",
                  r1.errors, te.n, r0.errors);
    ck_assert_msg(r1.loss < r0.loss, "loss did not fall: %g -> %g", r0.loss, r1.loss);
    /* confusion matrix adds up and its off-diagonal is the error count */
    long tot = 0, off = 0;
    for (size_t i = 0; i < 3; i++)
        for (size_t j = 0; j < 3; j++) {
            tot += r1.confusion[i * 3 + j];
            if (i != j) off += r1.confusion[i * 3 + j];
        }
    ck_assert_int_eq(tot, (long)te.n);
    ck_assert_int_eq(off, (long)r1.errors);
    /* metrics: one JSON line per epoch */
    FILE *f = fopen(o.metrics_path, "r");
    ck_assert_ptr_nonnull(f);
    char line[1024];
    int lines = 0;
    while (fgets(line, sizeof line, f)) {
        ck_assert_ptr_nonnull(strstr(line, "\"epoch\""));
        lines++;
    }
    fclose(f);
    ck_assert_int_eq(lines, 4);
    /* checkpoint round trip: same errors after reload; PyTorch names */
    const char *path = tu_path("m.safetensors");
    const char *k[] = {"dataset"}, *v[] = {"blobs"};
    ck_assert_int_eq(kdcl_model_save(m, path, k, v, 1), KDCL_OK);
    kdcl_model *m2;
    kdcl_st_file meta;
    ck_assert_msg(kdcl_model_load(tu_ctx, path, 100, &m2, &meta) == KDCL_OK, "%s",
                  kdcl_last_error());
    ck_assert_str_eq(kdcl_st_meta(&meta, "arch"), "36-32-32-3");
    ck_assert_str_eq(kdcl_st_meta(&meta, "dataset"), "blobs");
    /* Flatten, Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear: nn.Sequential indices */
    ck_assert_ptr_nonnull(kdcl_st_find(&meta, "7.weight"));
    ck_assert_uint_eq(kdcl_st_find(&meta, "1.weight")->shape[0], 32);
    ck_assert_uint_eq(kdcl_st_find(&meta, "1.weight")->shape[1], 36);
    kdcl_eval_result r2;
    ck_assert_int_eq(kdcl_evaluate(m2, &te, 0, &r2), KDCL_OK);
    ck_assert_uint_eq(r2.errors, r1.errors);
    ck_assert_double_eq_tol(r2.loss, r1.loss, 1e-5);
    /* an old-format checkpoint whose "arch" disagrees with its tensors does not load */
    kdcl_st_file bad;
    ck_assert_int_eq(kdcl_st_read(path, &bad), KDCL_OK);
    static const char *old_names[] = {"layers.0.weight", "layers.0.bias", "layers.1.weight",
                                      "layers.1.bias", "layers.2.weight", "layers.2.bias"};
    kdcl_st_tensor old[6];
    static const char *new_names[] = {"1.weight", "1.bias", "4.weight", "4.bias", "7.weight",
                                      "7.bias"};
    for (size_t i = 0; i < 6; i++) {
        old[i] = *kdcl_st_find(&bad, new_names[i]);
        old[i].name = (char *)old_names[i];
    }
    const char *bk[] = {"arch"}, *bv[] = {"36-16-32-3"};
    ck_assert_int_eq(kdcl_st_write(tu_path("mismatch.safetensors"), old, 6, bk, bv, 1), KDCL_OK);
    kdcl_model *m3 = NULL;
    ck_assert_int_eq(kdcl_model_load(tu_ctx, tu_path("mismatch.safetensors"), 10, &m3, NULL),
                     KDCL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "layers.0.weight"));
    ck_assert_ptr_null(m3);
    /* the same tensors without "arch": the shapes give the architecture */
    ck_assert_int_eq(kdcl_st_write(tu_path("noarch.safetensors"), old, 6, NULL, NULL, 0), KDCL_OK);
    ck_assert_int_eq(kdcl_model_load(tu_ctx, tu_path("noarch.safetensors"), 10, &m3, NULL),
                     KDCL_OK);
    ck_assert_uint_eq(kdcl_model_n_params(m3), kdcl_model_n_params(m));
    kdcl_model_destroy(m3);
    kdcl_st_free(&bad);
    kdcl_st_free(&meta);
    kdcl_eval_result_free(&r0);
    kdcl_eval_result_free(&r1);
    kdcl_eval_result_free(&r2);
    kdcl_model_destroy(m);
    kdcl_model_destroy(m2);
    kdcl_dataset_free(&tr);
    kdcl_dataset_free(&te);
}
END_TEST

START_TEST(test_step_allocates_nothing_and_is_deterministic)
{
    kdcl_dataset tr;
    make_blobs(&tr, 256, 4);
    float p1[36 * 16 + 16 + 16 * 3 + 3], p2[sizeof p1 / sizeof p1[0]];
    for (int run = 0; run < 2; run++) {
        kdcl_model *m = tu_model("36-16-3", 3, 1, 6, 6, 32, 0.1f, 0.5f, 9);
        kdcl_train_opts o;
        kdcl_train_opts_default(&o);
        o.epochs = 1;
        o.batch = 32;
        o.jitter = 2;
        uint64_t before = kdcl_ctx_mem_stats(tu_ctx).allocations;
        ck_assert_int_eq(kdcl_train(m, &tr, &o, NULL, NULL, NULL), KDCL_OK);
        /* 1 epoch = 8 steps; set-up allocates a fixed handful, steps none */
        uint64_t one = kdcl_ctx_mem_stats(tu_ctx).allocations - before;
        o.epochs = 3;
        before = kdcl_ctx_mem_stats(tu_ctx).allocations;
        ck_assert_int_eq(kdcl_train(m, &tr, &o, NULL, NULL, NULL), KDCL_OK);
        ck_assert_uint_eq(kdcl_ctx_mem_stats(tu_ctx).allocations - before, one);
        kdcl_model_get_params(m, run ? p2 : p1);
        kdcl_model_destroy(m);
    }
    ck_assert_mem_eq(p1, p2, sizeof p1); /* same seed, same device: same weights */
    kdcl_dataset_free(&tr);
}
END_TEST

START_TEST(test_bad_training_input)
{
    kdcl_dataset tr;
    make_blobs(&tr, 100, 5);
    kdcl_model *m = tu_model("36-8-3", 3, 1, 6, 6, 200, 0, 0, 1);
    kdcl_train_opts o;
    kdcl_train_opts_default(&o);
    o.epochs = 1;
    o.batch = 0;
    ck_assert_int_eq(kdcl_train(m, &tr, &o, NULL, NULL, NULL), KDCL_ERR_INVALID_ARG);
    o.batch = 101;
    ck_assert_int_eq(kdcl_train(m, &tr, &o, NULL, NULL, NULL), KDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "larger than"));
    /* a diverging learning rate: stopped with the epoch and step named */
    o.batch = 10;
    o.lr = 1e30f;
    o.momentum0 = o.momentum1 = 0.9f;
    kdcl_status s = kdcl_train(m, &tr, &o, NULL, NULL, NULL);
    ck_assert_int_eq(s, KDCL_ERR_NUMERIC);
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "epoch 1, step"));
    /* saving NaN parameters is refused and leaves no file */
    const char *path = tu_path("nan.safetensors");
    ck_assert_int_eq(kdcl_model_save(m, path, NULL, NULL, 0), KDCL_ERR_NUMERIC);
    struct stat st;
    ck_assert_int_ne(stat(path, &st), 0);
    kdcl_model_destroy(m);
    /* input size mismatch */
    m = tu_model("35-8-3", 3, 0, 0, 0, 20, 0, 0, 1);
    o.lr = 0.1f;
    ck_assert_int_eq(kdcl_train(m, &tr, &o, NULL, NULL, NULL), KDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "35 values"));
    kdcl_model_destroy(m);
    /* a checkpoint that is not one */
    ck_assert_int_eq(tu_write_file(tu_path("garbage.safetensors"), "not a checkpoint", 16), 0);
    ck_assert_int_eq(kdcl_model_load(tu_ctx, tu_path("garbage.safetensors"), 10, &m, NULL),
                     KDCL_ERR_FORMAT);
    kdcl_dataset_free(&tr);
}
END_TEST

/* The batcher's device-side gather (resident data): rows of 37, 48 and 784
 * bytes (a tail shorter than a 16-byte chunk, whole chunks, MNIST's size) in
 * an explicit order with repeats, loaded from an offset, equal the host rows. */
START_TEST(test_batcher_gathers_rows)
{
    static const size_t dims[] = {37, 48, 784};
    for (size_t di = 0; di < 3; di++) {
        kdcl_dataset d;
        memset(&d, 0, sizeof d);
        d.n = 50;
        d.h = 1;
        d.w = dims[di];
        d.c = 1;
        d.dim = dims[di];
        d.n_classes = 7;
        d.images = malloc(d.n * d.dim);
        d.labels = malloc(d.n * sizeof *d.labels);
        ck_assert(d.images && d.labels);
        for (size_t i = 0; i < d.n * d.dim; i++) d.images[i] = (uint8_t)(i * 2654435761u >> 13);
        for (size_t i = 0; i < d.n; i++) d.labels[i] = (int32_t)((i * 5 + 3) % 7);
        size_t order[64];
        for (size_t i = 0; i < 64; i++) order[i] = (i * 37 + 11) % d.n; /* repeats after 50 */
        kdcl_batcher *b = NULL;
        ck_assert_int_eq(kdcl_batcher_create(tu_ctx, &d, 24, &b), KDCL_OK);
        ck_assert_msg(kdcl_batcher_resident(b), "a 50-row dataset must be device-resident");
        ck_assert_int_eq(kdcl_batcher_set_order(b, order, 64), KDCL_OK);
        const size_t start = 37, count = 23;
        ck_assert_int_eq(kdcl_batcher_load(b, start, count), KDCL_OK);
        uint8_t *got = malloc(count * d.dim);
        int32_t lab[24];
        ck_assert(got);
        ck_assert_int_eq(clEnqueueReadBuffer(kdcl_ctx_queue(tu_ctx), kdcl_batcher_images(b)->buf, CL_TRUE,
                                             0, count * d.dim, got, 0, NULL, NULL),
                         CL_SUCCESS);
        ck_assert_int_eq(clEnqueueReadBuffer(kdcl_ctx_queue(tu_ctx), kdcl_batcher_labels(b)->buf,
                                             CL_TRUE, 0, count * sizeof *lab, lab, 0, NULL, NULL),
                         CL_SUCCESS);
        for (size_t r = 0; r < count; r++) {
            size_t e = order[start + r];
            ck_assert_msg(memcmp(got + r * d.dim, d.images + e * d.dim, d.dim) == 0,
                          "dim %zu: batch row %zu is not example %zu", d.dim, r, e);
            ck_assert_int_eq(lab[r], d.labels[e]);
        }
        free(got);
        kdcl_batcher_destroy(b);
        kdcl_dataset_free(&d);
    }
}
END_TEST

static Suite *nn_suite(void)
{
    Suite *s = suite_create("nn");
    TCase *p = tcase_create("pure");
    tcase_add_test(p, test_arch_parse);
    suite_add_tcase(s, p);
    TCase *tc = tcase_create("device");
    tcase_add_unchecked_fixture(tc, tu_ctx_setup, tu_ctx_teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_mlp_params_and_describe);
    tcase_add_test(tc, test_gradcheck_plain);
    tcase_add_test(tc, test_gradcheck_dropout);
    tcase_add_test(tc, test_training_learns_and_checkpoints);
    tcase_add_test(tc, test_step_allocates_nothing_and_is_deterministic);
    tcase_add_test(tc, test_bad_training_input);
    tcase_add_test(tc, test_batcher_gathers_rows);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(nn_suite()); }
