/* Every kernel of every program in cl/ launched at least once, on tiny shapes,
 * through the library's own entry points (ops, conv, GEMM packing, batcher,
 * distillation, ensembles, the specialists' combination) plus the two test
 * kernels (philox_raw, axpb) by hand. Its purpose is to run under a kernel
 * checker: tools/oclgrind_check.sh runs this binary under oclgrind with its
 * out-of-bounds, data-race, uninitialised-value and API checks. Numerical
 * correctness is each module's own suite's business; here every call must
 * succeed and every input buffer is fully written before a kernel reads it.
 *
 * Reads of memory no one wrote, on any device: every buffer an op documents
 * as overwritten (its outputs, the workspace) and the context's scratch
 * buffers are filled with NaN before the op (integer outputs with an
 * impossible value), and the outputs must come back finite (in range): an
 * element the op leaves unwritten, or a value computed from stale or unset
 * memory, shows. (oclgrind's own uninitialised-value check cannot run on
 * these kernels: tools/oclgrind_check.sh says why.)
 *
 * Coverage is checked by the test itself: the kernel names of every embedded
 * program (`__kernel void name(` in cl/<program>.cl) against the names this
 * binary saw launched. clEnqueueNDRangeKernel is wrapped at link time
 * (-Wl,--wrap, tests/meson.build), which sees kdcl's own launches (libkdcl is
 * linked statically) but not CLBlast's. A table "program: launched/total" is
 * printed; a kernel never launched fails the test, so a new kernel needs a
 * line here. */
#include <CL/cl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gemm_internal.h"
#include "core/ops_util.h"
#include "kdcl/kdcl.h"
#include "runtime/ctx.h"
#include "runtime/embedded.h"
#include "testutil.h"

/* ---- launch log (link-time wrap of clEnqueueNDRangeKernel) ---- */

#define MAX_SEEN 256
static char seen[MAX_SEEN][64];
static size_t n_seen;

cl_int __real_clEnqueueNDRangeKernel(cl_command_queue q, cl_kernel k, cl_uint dim,
                                     const size_t *off, const size_t *gws, const size_t *lws,
                                     cl_uint nev, const cl_event *ev, cl_event *out);
cl_int __wrap_clEnqueueNDRangeKernel(cl_command_queue q, cl_kernel k, cl_uint dim,
                                     const size_t *off, const size_t *gws, const size_t *lws,
                                     cl_uint nev, const cl_event *ev, cl_event *out);

cl_int __wrap_clEnqueueNDRangeKernel(cl_command_queue q, cl_kernel k, cl_uint dim,
                                     const size_t *off, const size_t *gws, const size_t *lws,
                                     cl_uint nev, const cl_event *ev, cl_event *out)
{
    char name[64] = "";
    if (clGetKernelInfo(k, CL_KERNEL_FUNCTION_NAME, sizeof name, name, NULL) == CL_SUCCESS) {
        size_t i = 0;
        while (i < n_seen && strcmp(seen[i], name) != 0) i++;
        if (i == n_seen && n_seen < MAX_SEEN) snprintf(seen[n_seen++], sizeof seen[0], "%s", name);
    }
    return __real_clEnqueueNDRangeKernel(q, k, dim, off, gws, lws, nev, ev, out);
}

static int was_launched(const char *name)
{
    for (size_t i = 0; i < n_seen; i++)
        if (!strcmp(seen[i], name)) return 1;
    return 0;
}

/* ---- helpers ---- */

#define OK(call) tu_ok((call), #call)

/* A tensor of the given shape filled with uniform values in [lo, hi). */
static kdcl_tensor ft(size_t ndim, const size_t *shape, float lo, float hi, uint64_t seed)
{
    kdcl_tensor t;
    OK(kdcl_tensor_alloc(tu_ctx, &t, KDCL_F32, ndim, shape));
    float *h = malloc(t.numel * sizeof *h);
    ck_assert_ptr_nonnull(h);
    tu_fill_uniform(h, t.numel, lo, hi, seed);
    tu_put(&t, h);
    free(h);
    return t;
}
static kdcl_tensor fmat(size_t r, size_t c, uint64_t seed)
{
    size_t sh[2] = {r, c};
    return ft(2, sh, -1.0f, 1.0f, seed);
}
static kdcl_tensor fvec(size_t n, float lo, float hi, uint64_t seed)
{
    return ft(1, &n, lo, hi, seed);
}
/* I32 tensor with h[i] = (i * mul + add) % mod. */
static kdcl_tensor ivec(size_t n, size_t mul, size_t add, size_t mod)
{
    kdcl_tensor t = tu_vec(KDCL_I32, n);
    int32_t *h = malloc(n * sizeof *h);
    ck_assert_ptr_nonnull(h);
    for (size_t i = 0; i < n; i++) h[i] = (int32_t)((i * mul + add) % mod);
    tu_put(&t, h);
    free(h);
    return t;
}
static kdcl_tensor u8vec(size_t n, uint64_t seed)
{
    kdcl_tensor t = tu_vec(KDCL_U8, n);
    unsigned char *h = malloc(n);
    ck_assert_ptr_nonnull(h);
    for (size_t i = 0; i < n; i++) h[i] = (unsigned char)((i * 37 + seed * 11) & 0xff);
    tu_put(&t, h);
    free(h);
    return t;
}
static void zero_i32(kdcl_tensor *t)
{
    int32_t *h = calloc(t->numel, sizeof *h);
    ck_assert_ptr_nonnull(h);
    tu_put(t, h);
    free(h);
}
static void rel(kdcl_tensor *t) { kdcl_tensor_free(tu_ctx, t); }

/* NaN into every element of a F32 tensor (capacity included). */
static void poison(kdcl_tensor *t) { OK(kdcl_tensor_fill(tu_ctx, t, NAN)); }
static kdcl_tensor nan_t(size_t ndim, const size_t *shape)
{
    kdcl_tensor t;
    OK(kdcl_tensor_alloc(tu_ctx, &t, KDCL_F32, ndim, shape));
    poison(&t);
    return t;
}
/* The context's scratch buffers grown so far (GEMM packing and conv
 * layouts, BatchNorm partial sums): NaN, so that a kernel reading scratch it
 * did not write in the same call makes NaN results. */
static void poison_scratch(void)
{
    kdcl_tensor *t;
    for (size_t i = 0; (t = kdcl__gemm_scratch(tu_ctx, i)); i++)
        if (t->buf) poison(t);
    if ((t = kdcl__ops_scratch(tu_ctx)) && t->buf) poison(t);
}
/* I32 tensor of n elements, every one `v`. */
static kdcl_tensor ifill(size_t n, int32_t v)
{
    kdcl_tensor t = tu_vec(KDCL_I32, n);
    int32_t *h = malloc(n * sizeof *h);
    ck_assert_ptr_nonnull(h);
    for (size_t i = 0; i < n; i++) h[i] = v;
    tu_put(&t, h);
    free(h);
    return t;
}
/* Every element of an I32 tensor in [lo, hi). */
static void all_in(const kdcl_tensor *t, int32_t lo, int32_t hi, const char *what)
{
    int32_t *h = malloc(t->numel * sizeof *h);
    ck_assert_ptr_nonnull(h);
    tu_get(t, h);
    for (size_t i = 0; i < t->numel; i++)
        ck_assert_msg(h[i] >= lo && h[i] < hi, "%s[%zu] = %d, outside [%d, %d)", what, i, h[i],
                      lo, hi);
    free(h);
}

/* Every element of a F32 tensor finite. */
static void all_finite(const kdcl_tensor *t, const char *what)
{
    float *h = malloc(t->numel * sizeof *h);
    ck_assert_ptr_nonnull(h);
    tu_get(t, h);
    for (size_t i = 0; i < t->numel; i++)
        ck_assert_msg(isfinite(h[i]), "%s[%zu] = %g", what, i, (double)h[i]);
    free(h);
}

/* ---- elementwise.cl, optim.cl, augment.cl ---- */

START_TEST(test_elementwise_optim_augment)
{
    const size_t B = 2, N = 20; /* 40 elements: two float16 groups and a remainder of 8 */
    kdcl_tensor y = fmat(B, N, 1), bias = fvec(N, -0.5f, 0.5f, 2), mask = tu_vec(KDCL_U8, B * N);
    unsigned char mh[40];
    memset(mh, 7, sizeof mh); /* neither keep (1) nor drop (0) */
    tu_put(&mask, mh);
    kdcl_tensor dy = fmat(B, N, 3), db = nan_t(1, &N), x = fmat(B, N, 5);
    OK(kdcl_op_bias_act_dropout(tu_ctx, &y, &bias, 1, 0.5f, 7, 1, 3, &mask));
    OK(kdcl_tensor_download(tu_ctx, &mask, 0, B * N, mh));
    /* oclgrind 21.10 runs convert_uchar16(keep & 1) of the kernel's full-width
     * path as 255 for a kept element when it builds with optimisation (its
     * bug: 1 at -O0); every other device stores 1 */
    const int sim = strstr(kdcl_ctx_device(tu_ctx)->platform_name, "Oclgrind") != NULL;
    for (size_t i = 0; i < B * N; i++)
        ck_assert_msg(mh[i] <= 1 || (sim && mh[i] == 255), "mask[%zu] = %d", i, mh[i]);
    OK(kdcl_op_act_dropout_backward(tu_ctx, &dy, &y, 1, 0.5f, &mask));
    OK(kdcl_op_bias_grad(tu_ctx, &dy, &db, 1.0f / (float)B, 0.0f)); /* beta 0: db not read */
    OK(kdcl_op_axpy(tu_ctx, &y, &x, B * N, 0.5f));
    OK(kdcl_op_add(tu_ctx, &y, &y, &x, B * N));
    OK(kdcl_op_relu(tu_ctx, &y, B * N));
    all_finite(&y, "y");
    all_finite(&db, "db");

    /* optimisers over a [rows, cols] block at an offset */
    const size_t rows = 3, cols = 5, n = 2 + rows * cols;
    kdcl_tensor w = fvec(n, -1, 1, 6), g = fvec(n, -1, 1, 7), v = fvec(n, -0.1f, 0.1f, 8),
                m = fvec(n, -0.1f, 0.1f, 9), s = fvec(n, 0, 0.1f, 10);
    OK(kdcl_op_sgd(tu_ctx, &w, &g, &v, 2, rows * cols, 0.1f, 0.9f, 1e-4f));
    OK(kdcl_op_max_norm(tu_ctx, &w, 2, rows, cols, 0.5f));
    OK(kdcl_op_sgd_max_norm(tu_ctx, &w, &g, &v, 2, rows, cols, 0.1f, 0.9f, 1e-4f, 0.5f));
    OK(kdcl_op_adam(tu_ctx, &w, &g, &m, &s, 0, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 1e-4f, 1, 3));
    OK(kdcl_op_sgd_nesterov(tu_ctx, &w, &g, &v, 1, n - 1, 0.1f, 0.9f, 0.0f));
    all_finite(&w, "w");

    /* u8 inputs: plain conversion, jitter (HWC), the CNN input with flips */
    const size_t nb = 2, h = 4, wd = 5, c = 3, per = h * wd * c;
    const size_t nd = nb * per;
    kdcl_tensor src = u8vec(nd, 1), dst = nan_t(1, &nd);
    OK(kdcl_op_u8_to_float(tu_ctx, &src, &dst, nb * per, 1.0f / 255, -0.5f));
    all_finite(&dst, "u8_to_float dst");
    poison(&dst);
    OK(kdcl_op_jitter(tu_ctx, &src, &dst, nb, h, wd, c, 1, 5, 2, 1.0f / 255, -0.5f));
    all_finite(&dst, "jitter dst");
    poison(&dst);
    const float sc[3] = {1.0f / 255, 2.0f / 255, 3.0f / 255}, sh[3] = {-0.5f, 0.0f, 0.25f};
    OK(kdcl_op_input_u8(tu_ctx, &src, &dst, nb, h, wd, c, 1, 1, 5, 2, sc, sh));
    all_finite(&dst, "input_u8 dst");

    rel(&y), rel(&bias), rel(&mask), rel(&dy), rel(&db), rel(&x);
    rel(&w), rel(&g), rel(&v), rel(&m), rel(&s), rel(&src), rel(&dst);
}
END_TEST

/* ---- softmax.cl, kd_loss.cl: the one-item-per-row and work-group forms ---- */

START_TEST(test_softmax_kd_loss)
{
    const size_t B = 3;
    const size_t Ks[2] = {5, KDCL_SOFTMAX_SMALL_K + 8};
    for (int f = 0; f < 2; f++) {
        const size_t K = Ks[f];
        const size_t shz[2] = {B, K};
        kdcl_tensor z = fmat(B, K, 10 + f), out = nan_t(2, shz), dz = nan_t(2, shz);
        kdcl_tensor t = fmat(B, K, 40 + f), acc = nan_t(2, shz);
        kdcl_tensor labels = ivec(B, 3, 1, K), loss = nan_t(1, &B), errors = ivec(1, 0, 0, 1);
        kdcl_tensor idx = ifill(B, -1), conf = tu_vec(KDCL_I32, K * K), sum = fvec(2, 0, 1, 61);
        zero_i32(&conf);
        OK(kdcl_op_softmax(tu_ctx, &z, &out, 2.0f, 0));
        all_finite(&out, "softmax");
        poison(&out);
        OK(kdcl_op_softmax(tu_ctx, &z, &out, 1.0f, 1));
        all_finite(&out, "log_softmax");
        OK(kdcl_op_softmax_xent(tu_ctx, &z, &labels, &loss, &dz, 1.0f / (float)B, &errors));
        all_finite(&loss, "xent loss");
        all_finite(&dz, "xent dz");
        OK(kdcl_op_argmax(tu_ctx, &z, &idx));
        all_in(&idx, 0, (int32_t)K, "argmax");
        OK(kdcl_op_confusion(tu_ctx, &z, &labels, &conf));
        OK(kdcl_op_reduce_add(tu_ctx, &loss, B, &sum, 1));
        all_finite(&sum, "sum");
        /* probability targets (a softmax), then logit targets */
        OK(kdcl_op_softmax(tu_ctx, &t, &out, 1.0f, 0));
        poison(&loss);
        poison(&dz);
        OK(kdcl_op_kd_loss(tu_ctx, KDCL_KD_KL, &z, &out, 0, &labels, 3.0f, 0.25f, &loss, &dz,
                           1.0f / (float)B, &errors));
        all_finite(&loss, "kd loss");
        all_finite(&dz, "kd dz");
        poison(&loss);
        poison(&dz);
        OK(kdcl_op_kd_loss(tu_ctx, KDCL_KD_LOGITS, &z, &t, 1, &labels, 1.0f, 0.5f, &loss, &dz,
                           1.0f / (float)B, &errors));
        all_finite(&loss, "logit-matching loss");
        all_finite(&dz, "logit-matching dz");
        all_in(&errors, 0, 4 * (int32_t)B + 1, "errors");
        /* beta = 0: acc is not read (NaN before) */
        OK(kdcl_op_ensemble_accumulate(tu_ctx, KDCL_ENS_PROB, &z, 2.0f, 0.5f, 0.0f, &acc));
        OK(kdcl_op_ensemble_accumulate(tu_ctx, KDCL_ENS_PROB, &t, 2.0f, 0.5f, 1.0f, &acc));
        all_finite(&acc, "ensemble (probabilities)");
        poison(&acc);
        OK(kdcl_op_ensemble_accumulate(tu_ctx, KDCL_ENS_LOGIT, &t, 2.0f, 0.5f, 0.0f, &acc));
        OK(kdcl_op_ensemble_accumulate(tu_ctx, KDCL_ENS_LOGIT, &z, 2.0f, 0.5f, 1.0f, &acc));
        all_finite(&acc, "ensemble (logits)");
        rel(&z), rel(&out), rel(&dz), rel(&t), rel(&acc), rel(&labels), rel(&loss);
        rel(&errors), rel(&idx), rel(&conf), rel(&sum);
    }
}
END_TEST

/* ---- norm.cl, pool.cl ---- */

START_TEST(test_batchnorm_pool)
{
    const size_t B = 2, C = 3, H = 5, W = 5, S = H * W;
    size_t shx[4] = {B, C, H, W};
    kdcl_tensor x = ft(4, shx, -1, 1, 70), y = nan_t(4, shx), dy = ft(4, shx, -1, 1, 72),
                dx = nan_t(4, shx);
    kdcl_tensor gamma = fvec(C, 0.5f, 1.5f, 74), beta = fvec(C, -0.5f, 0.5f, 75),
                mean = nan_t(1, &C), invstd = nan_t(1, &C), rm = fvec(C, 0, 1, 78),
                rv = fvec(C, 0.5f, 1, 79), dg = nan_t(1, &C), dbt = nan_t(1, &C);
    poison_scratch();
    OK(kdcl_op_batchnorm_forward_train(tu_ctx, B, C, S, &x, &gamma, &beta, &y, &mean, &invstd,
                                       &rm, &rv, 0.1f, 1e-5f));
    all_finite(&y, "bn y");
    all_finite(&mean, "bn mean");
    all_finite(&invstd, "bn invstd");
    all_finite(&rm, "bn running mean");
    all_finite(&rv, "bn running var");
    poison_scratch();
    OK(kdcl_op_batchnorm_backward(tu_ctx, B, C, S, &x, &dy, &gamma, &mean, &invstd, &dx, &dg,
                                  &dbt));
    all_finite(&dx, "bn dx");
    all_finite(&dg, "bn dgamma");
    all_finite(&dbt, "bn dbeta");
    poison(&y);
    OK(kdcl_op_batchnorm_forward_eval(tu_ctx, B, C, S, &x, &gamma, &beta, &rm, &rv, 1e-5f, &y));
    all_finite(&y, "bn eval y");

    /* pooling: overlapping padded windows (generic kernels), then tiling windows */
    static const size_t geo[2][3] = {{3, 2, 1}, {2, 2, 0}}; /* kernel, stride, padding */
    for (int t = 0; t < 2; t++) {
        kdcl_conv_geom g;
        OK(kdcl_conv_geom_set(&g, C, H, W, C, geo[t][0], geo[t][0], geo[t][1], geo[t][1],
                              geo[t][2], geo[t][2]));
        size_t shy[4] = {B, C, g.oh, g.ow};
        kdcl_tensor py = nan_t(4, shy), pdy = ft(4, shy, -1, 1, 83);
        kdcl_tensor am = ifill(B * C * g.oh * g.ow, -1);
        OK(kdcl_op_maxpool2d_forward(tu_ctx, &g, B, &x, &py, &am));
        all_finite(&py, "maxpool y");
        all_in(&am, 0, (int32_t)(H * W), "maxpool argmax");
        poison(&dx);
        OK(kdcl_op_maxpool2d_backward(tu_ctx, &g, B, &pdy, &am, &dx));
        all_finite(&dx, "maxpool dx");
        poison(&py);
        OK(kdcl_op_avgpool2d_forward(tu_ctx, &g, B, &x, &py));
        all_finite(&py, "avgpool y");
        poison(&dx);
        OK(kdcl_op_avgpool2d_backward(tu_ctx, &g, B, &pdy, &dx));
        all_finite(&dx, "avgpool dx");
        rel(&py), rel(&pdy), rel(&am);
    }
    rel(&x), rel(&y), rel(&dy), rel(&dx), rel(&gamma), rel(&beta), rel(&mean), rel(&invstd);
    rel(&rm), rel(&rv), rel(&dg), rel(&dbt);
}
END_TEST

/* ---- conv.cl, gemm_pack.cl: kdcl's im2col algorithm on its three routes ---- */

static void conv_round_k(size_t C, size_t OC, size_t HW, size_t batch, size_t k, size_t stride,
                         size_t pad, uint64_t seed)
{
    kdcl_conv_geom g;
    OK(kdcl_conv_geom_set(&g, C, HW, HW, OC, k, k, stride, stride, pad, pad));
    size_t shx[4] = {batch, C, HW, HW}, shy[4] = {batch, OC, g.oh, g.ow},
           shw[4] = {OC, C, k, k};
    const size_t nws = kdcl_conv2d_workspace(&g, batch);
    kdcl_tensor x = ft(4, shx, -1, 1, seed), w = ft(4, shw, -0.5f, 0.5f, seed + 1),
                b = fvec(OC, -0.1f, 0.1f, seed + 2), y = nan_t(4, shy),
                dy = ft(4, shy, -1, 1, seed + 4), dw = nan_t(4, shw), db = nan_t(1, &OC),
                dx = nan_t(4, shx), ws = nan_t(1, &nws);
    poison_scratch();
    OK(kdcl_conv2d_forward(tu_ctx, &g, batch, &x, &w, &b, &y, &ws));
    all_finite(&y, "conv y");
    poison(&ws);
    poison_scratch();
    OK(kdcl_conv2d_backward(tu_ctx, &g, batch, &x, &w, &dy, &dw, &db, &dx, &ws));
    all_finite(&dw, "conv dw");
    all_finite(&db, "conv db");
    all_finite(&dx, "conv dx");
    rel(&x), rel(&w), rel(&b), rel(&y), rel(&dy), rel(&dw), rel(&db), rel(&dx), rel(&ws);
}

static void conv_round(size_t C, size_t OC, size_t HW, size_t batch, uint64_t seed)
{
    conv_round_k(C, OC, HW, batch, 3, 1, 1, seed);
}

START_TEST(test_conv_gemm_pack)
{
    OK(kdcl_conv_set_algo(tu_ctx, KDCL_CONV_KDCL_IM2COL));
    kdcl__gemm_set_small(tu_ctx, 0); /* every product through packing / CLBlast */
    kdcl__conv_set_direct(tu_ctx, 0);
    const kdcl_gemm_pack_info saved = kdcl_gemm_packing(tu_ctx);
    kdcl_gemm_pack_info off = saved;
    off.enabled = 0;
    OK(kdcl_gemm_set_packing(tu_ctx, &off));
    conv_round(2, 3, 4, 2, 90); /* per-image products, K = 18 < 64: summed over images */
    conv_round(8, 2, 3, 2, 91); /* K = 72: the transposed (TN) weight gradient */
    /* packing with 4x4x4 tiles: the batch-wide products on packed operands */
    kdcl_gemm_pack_info on = {1, 4, 4, 4, 1, 3.0};
    OK(kdcl_gemm_set_packing(tu_ctx, &on));
    conv_round(2, 4, 4, 2, 92);
    conv_round(2, 4, 4, 1, 93);
    /* a plain product, transposed operand and offsets (gemm_pack / gemm_unpack) */
    const size_t M = 5, N = 6, Kd = 7;
    const size_t shc[2] = {M, N};
    kdcl_tensor a = fmat(Kd, M + 1, 94), bb = fmat(Kd, N, 95), c = fmat(M, N, 96);
    poison_scratch();
    OK(kdcl_gemm(tu_ctx, KDCL_TRANS, KDCL_NO_TRANS, M, N, Kd, 1.0f, a.buf, 1, M + 1, bb.buf, 0,
                 N, 0.5f, c.buf, 0, N, NULL));
    all_finite(&c, "gemm c");
    /* beta = 0: C is not read (NaN before) */
    rel(&c);
    c = nan_t(2, shc);
    poison_scratch();
    OK(kdcl_gemm(tu_ctx, KDCL_TRANS, KDCL_NO_TRANS, M, N, Kd, 1.0f, a.buf, 1, M + 1, bb.buf, 0,
                 N, 0.0f, c.buf, 0, N, NULL));
    all_finite(&c, "gemm c (beta 0)");
    rel(&a), rel(&bb), rel(&c);
    OK(kdcl_gemm_set_packing(tu_ctx, &saved));
    OK(kdcl_conv_set_algo(tu_ctx, KDCL_CONV_AUTO));
    /* gemm_small.cl: the three narrow forms, vector and edge columns */
    kdcl__gemm_set_small(tu_ctx, 1);
    kdcl_tensor x = fmat(9, 11, 97), w = fmat(3, 11, 98), y = fmat(9, 3, 99);
    kdcl_tensor dw = fmat(3, 11, 100), dx = fmat(9, 11, 101);
    OK(kdcl_gemm(tu_ctx, KDCL_NO_TRANS, KDCL_TRANS, 9, 3, 11, 1.0f, x.buf, 0, 11, w.buf, 0, 11,
                 0.0f, y.buf, 0, 3, NULL));
    OK(kdcl_gemm(tu_ctx, KDCL_TRANS, KDCL_NO_TRANS, 3, 11, 9, 1.0f, y.buf, 0, 3, x.buf, 0, 11,
                 0.5f, dw.buf, 0, 11, NULL));
    OK(kdcl_gemm(tu_ctx, KDCL_NO_TRANS, KDCL_NO_TRANS, 9, 11, 3, 1.0f, y.buf, 0, 3, w.buf, 0, 11,
                 0.0f, dx.buf, 0, 11, NULL));
    all_finite(&y, "gemm_small_nt");
    all_finite(&dw, "gemm_small_tn");
    all_finite(&dx, "gemm_small_nn");
    rel(&x), rel(&w), rel(&y), rel(&dw), rel(&dx);
    /* the narrow convolution route (OC <= 16, kdcl's im2col): gemm_small_nt_parts */
    OK(kdcl_conv_set_algo(tu_ctx, KDCL_CONV_KDCL_IM2COL));
    conv_round(1, 2, 16, 3, 102);
    OK(kdcl_conv_set_algo(tu_ctx, KDCL_CONV_AUTO));
    kdcl__gemm_set_small(tu_ctx, tu_gemm_small_default());
    kdcl__conv_set_direct(tu_ctx, -1);
}
END_TEST

/* conv_direct.cl: rows with a partial segment (19 columns) and 17 output
 * channels (a partial block), rows of 16, pairs of rows of 5 with an odd
 * height and 17 input channels (the input gradient's partial block); the
 * weight gradient in parts (batch 3); stride 2: output rows of 10 (partial
 * segments of the input gradient's rows of 19), pairs of output rows of 3;
 * 5x5 with padding 2 and 0. */
START_TEST(test_conv_direct)
{
    OK(kdcl_conv_set_algo(tu_ctx, KDCL_CONV_KDCL_IM2COL));
    kdcl__conv_set_direct(tu_ctx, 1);
    conv_round(3, 17, 19, 2, 110);
    conv_round(2, 3, 16, 3, 111);
    conv_round(17, 2, 5, 3, 112);
    conv_round_k(17, 5, 19, 2, 3, 2, 1, 113);
    conv_round_k(2, 17, 5, 3, 3, 2, 1, 114);
    conv_round_k(3, 6, 12, 3, 5, 1, 2, 115); /* 5x5, padding 2 */
    conv_round_k(6, 3, 7, 2, 5, 1, 0, 116);  /* 5x5, no padding */
    kdcl__conv_set_direct(tu_ctx, -1);
    OK(kdcl_conv_set_algo(tu_ctx, KDCL_CONV_AUTO));
}
END_TEST

/* ---- batch.cl (batcher, cached soft targets, ensemble evaluation) ---- */

static int quadrant(size_t p) { return (int)((p / 6) / 3 * 2 + (p % 6) / 3); }

START_TEST(test_batch_distill)
{
    kdcl_dataset ds;
    tu_make_6x6(&ds, 12, 3, 4, quadrant, 140, 90);
    kdcl_model *t = tu_model("36-8-4", 4, 1, 6, 6, 4, 0, 0, 1);
    const char *path = tu_path("teacher.safetensors");
    OK(kdcl_model_save(t, path, NULL, NULL, 0));
    kdcl_model_destroy(t);
    kdcl_ensemble *e = NULL;
    OK(kdcl_ensemble_load(tu_ctx, &path, 1, 4, KDCL_ENS_PROB, &e));
    kdcl_eval_result r;
    OK(kdcl_ensemble_evaluate(e, &ds, &r)); /* log_inplace on the averaged probabilities */
    ck_assert_uint_eq(r.n, 12);
    kdcl_eval_result_free(&r);
    kdcl_model *s = tu_model("36-6-4", 4, 1, 6, 6, 4, 0, 0, 2);
    kdcl_train_opts o;
    kdcl_train_opts_default(&o);
    o.epochs = 1;
    o.batch = 4;
    kdcl_distill_opts d = {2.0f, 0.5f, KDCL_KD_KL, KDCL_TARGETS_CACHED};
    kdcl_targets used;
    OK(kdcl_distill(s, e, &ds, &o, &d, NULL, &used));
    ck_assert_int_eq(used, KDCL_TARGETS_CACHED);
    kdcl_model_destroy(s);
    kdcl_ensemble_free(e);
    kdcl_dataset_free(&ds);
}
END_TEST

/* ---- specialists.cl ---- */

START_TEST(test_combine)
{
    const size_t K = 6, M = 2, B = 3;
    const int32_t c0[] = {0, 1, 2}, c1[] = {3, 4};
    const int32_t *lists[] = {c0, c1};
    const size_t sizes[] = {3, 2};
    kdcl_clusters cl;
    OK(kdcl_clusters_from_lists(K, M, sizes, lists, &cl));
    kdcl_combiner *cb = NULL;
    OK(kdcl_combiner_create(tu_ctx, &cl, B, &cb));
    for (size_t m = 0; m < M; m++) {
        kdcl_tensor l = fmat(B, sizes[m] + 1, 100 + m);
        OK(kdcl_combiner_put(cb, m, &l, B));
        rel(&l);
    }
    kdcl_tensor z = fmat(B, K, 110);
    kdcl_combine_opts o;
    kdcl_combine_opts_default(&o);
    o.iters = 3;
    poison((kdcl_tensor *)kdcl_combiner_output(cb));
    OK(kdcl_combine(cb, &z, B, &o));
    float out[3 * 6];
    OK(kdcl_tensor_download(tu_ctx, kdcl_combiner_output(cb), 0, B * K, out));
    for (size_t i = 0; i < B * K; i++) ck_assert(isfinite(out[i]));
    rel(&z);
    kdcl_combiner_destroy(cb);
    kdcl_clusters_free(&cl);
}
END_TEST

/* ---- the test kernels: philox_raw (elementwise.cl), axpb (test_util.cl) ---- */

static void launch_raw(const char *program, const char *kernel, const void *const *args,
                       const size_t *sizes, size_t nargs, size_t global)
{
    cl_kernel k;
    OK(kdcl_kernel_get(tu_ctx, program, kernel, &k));
    for (size_t i = 0; i < nargs; i++)
        ck_assert_int_eq(clSetKernelArg(k, (cl_uint)i, sizes[i], args[i]), CL_SUCCESS);
    ck_assert_int_eq(clEnqueueNDRangeKernel(kdcl_ctx_queue(tu_ctx), k, 1, NULL, &global, NULL, 0,
                                            NULL, NULL),
                     CL_SUCCESS);
}

START_TEST(test_raw_kernels)
{
    enum { NR = 4 };
    kdcl_tensor in = ivec(6 * NR, 7, 3, 1000), out = ivec(4 * NR, 0, 0, 1), y = fvec(9, 0, 1, 120);
    cl_uint n = NR;
    const void *pa[] = {&in.buf, &out.buf, &n};
    const size_t ps[] = {sizeof(cl_mem), sizeof(cl_mem), sizeof n};
    launch_raw("elementwise", "philox_raw", pa, ps, 3, NR);
    float a = 2.0f, b = 1.0f;
    cl_uint ny = 9;
    const void *xa[] = {&y.buf, &a, &b, &ny};
    const size_t xs[] = {sizeof(cl_mem), sizeof a, sizeof b, sizeof ny};
    launch_raw("test_util", "axpb", xa, xs, 4, 9);
    all_finite(&y, "axpb y");
    OK(kdcl_ctx_finish(tu_ctx));
    rel(&in), rel(&out), rel(&y);
}
END_TEST

/* ---- CLBlast's program cache across contexts (cleared with the last one) ---- */

static void small_gemm(kdcl_ctx *ctx)
{
    float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {1, 0, 0, 1, 1, 1}, c[4] = {0};
    kdcl_tensor ta, tb, tc;
    OK(kdcl_tensor_alloc2(ctx, &ta, KDCL_F32, 2, 3));
    OK(kdcl_tensor_alloc2(ctx, &tb, KDCL_F32, 3, 2));
    OK(kdcl_tensor_alloc2(ctx, &tc, KDCL_F32, 2, 2));
    OK(kdcl_tensor_upload(ctx, &ta, 0, 6, a));
    OK(kdcl_tensor_upload(ctx, &tb, 0, 6, b));
    OK(kdcl_tensor_upload(ctx, &tc, 0, 4, c));
    OK(kdcl_gemm(ctx, KDCL_NO_TRANS, KDCL_NO_TRANS, 2, 2, 3, 1.0f, ta.buf, 0, 3, tb.buf, 0, 2,
                 0.0f, tc.buf, 0, 2, NULL));
    OK(kdcl_tensor_download(ctx, &tc, 0, 4, c));
    /* [1 2 3; 4 5 6] [1 0; 0 1; 1 1] = [4 5; 10 11], exact in float */
    ck_assert(c[0] == 4 && c[1] == 5 && c[2] == 10 && c[3] == 11);
    kdcl_tensor_free(ctx, &ta);
    kdcl_tensor_free(ctx, &tb);
    kdcl_tensor_free(ctx, &tc);
}

START_TEST(test_contexts_and_clblast_cache)
{
    kdcl_ctx *a, *b;
    OK(kdcl_ctx_create(NULL, &a));
    OK(kdcl_ctx_create(NULL, &b));
    small_gemm(a);
    small_gemm(b);
    kdcl_ctx_destroy(a); /* b still lives: CLBlast's cache stays */
    small_gemm(b);
    kdcl_ctx_destroy(b); /* the last context: the cache is cleared */
    OK(kdcl_ctx_create(NULL, &a));
    small_gemm(a); /* CLBlast compiles again for the new context */
    kdcl_ctx_destroy(a);
}
END_TEST

/* ---- coverage: every kernel of every embedded program was launched ---- */

START_TEST(test_every_kernel_launched)
{
    size_t total = 0, launched = 0, programs = 0;
    char missing[4096] = "";
    printf("kernels launched per program (this binary):\n");
    for (const kdcl_embedded_source *e = kdcl_embedded_sources; e->name; e++) {
        if (strchr(e->name, '.')) continue; /* a shared header, not a program */
        programs++;
        size_t pt = 0, pl = 0;
        const char *tag = "__kernel void ";
        for (const char *p = strstr(e->text, tag); p; p = strstr(p + 1, tag)) {
            const char *s = p + strlen(tag), *q = s;
            while ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') ||
                   (*q >= '0' && *q <= '9') || *q == '_')
                q++;
            char name[64];
            ck_assert_msg(q > s && (size_t)(q - s) < sizeof name, "%s.cl: odd kernel line",
                          e->name);
            memcpy(name, s, (size_t)(q - s));
            name[q - s] = '\0';
            pt++;
            if (was_launched(name)) {
                pl++;
            } else {
                size_t l = strlen(missing);
                snprintf(missing + l, sizeof missing - l, " %s.cl:%s", e->name, name);
            }
        }
        printf("  %-14s %zu/%zu\n", e->name, pl, pt);
        total += pt;
        launched += pl;
    }
    printf("  all: %zu/%zu kernels of %zu programs\n", launched, total, programs);
    fflush(stdout);
    ck_assert_msg(programs >= 12 && total >= 58, "only %zu programs, %zu kernels found", programs,
                  total);
    ck_assert_msg(launched == total, "never launched:%s", missing);
}
END_TEST

int main(void)
{
    /* the coverage check reads what the earlier tests launched: one process */
    setenv("CK_FORK", "no", 1);
    Suite *s = suite_create("kernels_checked");
    TCase *tcx = tcase_create("contexts");
    tcase_set_timeout(tcx, 3600);
    tcase_add_test(tcx, test_contexts_and_clblast_cache);
    suite_add_tcase(s, tcx);
    TCase *tc = tcase_create("all");
    tcase_add_unchecked_fixture(tc, tu_ctx_setup, tu_ctx_teardown);
    tcase_set_timeout(tc, 3600);
    tcase_add_test(tc, test_elementwise_optim_augment);
    tcase_add_test(tc, test_softmax_kd_loss);
    tcase_add_test(tc, test_batchnorm_pool);
    tcase_add_test(tc, test_conv_gemm_pack);
    tcase_add_test(tc, test_conv_direct);
    tcase_add_test(tc, test_batch_distill);
    tcase_add_test(tc, test_combine);
    tcase_add_test(tc, test_raw_kernels);
    tcase_add_test(tc, test_every_kernel_launched);
    suite_add_tcase(s, tc);
    return tu_run_suite(s) ? 1 : 0;
}
