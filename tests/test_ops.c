/* Elementwise ops (bias + ReLU + dropout, backward, bias gradient), SGD,
 * max-norm, SGD fused with max-norm, u8 conversion and jitter against CPU
 * references.
 *
 * Floating-point references are computed in double from the same float
 * inputs; tolerances follow from the number of float roundings each kernel
 * performs (u = 2^-24 is the unit roundoff). The kernels are compiled with
 * FP_CONTRACT OFF, so most results are also checked bit for bit against the
 * float computation they document. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdcl/opencl.h"
#include "kdcl/kdcl.h"
#include "kdcl/ops.h"
#include "testutil.h"

#define OK(call)                                                            \
    do {                                                                    \
        kdcl_status s_ = (call);                                            \
        ck_assert_msg(s_ == KDCL_OK, "%s: %s", #call, kdcl_last_error());   \
    } while (0)

static const double U = 5.9604644775390625e-08; /* 2^-24 */

static kdcl_tensor t2(kdcl_elem type, size_t r, size_t c)
{
    kdcl_tensor t;
    OK(kdcl_tensor_alloc2(tu_ctx, &t, type, r, c));
    return t;
}
static kdcl_tensor t1(kdcl_elem type, size_t n)
{
    kdcl_tensor t;
    OK(kdcl_tensor_alloc(tu_ctx, &t, type, 1, &n));
    return t;
}
static void up(kdcl_tensor *t, const void *h, size_t n)
{
    OK(kdcl_tensor_upload(tu_ctx, t, 0, n, h));
}
static void down(const kdcl_tensor *t, void *h, size_t n)
{
    OK(kdcl_tensor_download(tu_ctx, t, 0, n, h));
}

static double ulpf(float x)
{
    float a = fabsf(x);
    return (double)nextafterf(a, INFINITY) - (double)a;
}

static uint64_t xs_state = 88172645463325252ull;
static uint32_t xs32(void)
{
    xs_state ^= xs_state << 13;
    xs_state ^= xs_state >> 7;
    xs_state ^= xs_state << 17;
    return (uint32_t)(xs_state >> 32);
}

/* ---- Philox ---- */

START_TEST(test_philox_known_answers)
{
    /* Random123 kat_vectors, philox4x32 10 rounds. */
    static const uint32_t kat[][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d,
         0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09,
         0x94fdcceb, 0x5001e420, 0x24126ea1},
    };
    enum { NK = 3, NR = 1000 };
    for (int t = 0; t < NK; t++) {
        uint32_t out[4];
        kdcl_philox4x32(kat[t], kat[t] + 4, out);
        for (int j = 0; j < 4; j++)
            ck_assert_msg(out[j] == kat[t][6 + j], "KAT %d word %d: %08x want %08x", t, j,
                          out[j], kat[t][6 + j]);
    }
    /* The device copy (elementwise.cl) against the host one: the KATs plus random blocks. */
    uint32_t *in = malloc(6 * NR * sizeof *in), *got = malloc(4 * NR * sizeof *got);
    ck_assert(in && got);
    for (int r = 0; r < NR; r++)
        for (int j = 0; j < 6; j++) in[6 * r + j] = r < NK ? kat[r][j] : xs32();
    cl_kernel k;
    OK(kdcl_kernel_get(tu_ctx, "elementwise", "philox_raw", &k));
    cl_int e;
    cl_mem din = clCreateBuffer(kdcl_ctx_cl(tu_ctx), CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                6 * NR * sizeof *in, in, &e);
    ck_assert_int_eq(e, CL_SUCCESS);
    cl_mem dout = clCreateBuffer(kdcl_ctx_cl(tu_ctx), CL_MEM_WRITE_ONLY, 4 * NR * sizeof *got, NULL, &e);
    ck_assert_int_eq(e, CL_SUCCESS);
    cl_uint n = NR;
    ck_assert_int_eq(clSetKernelArg(k, 0, sizeof din, &din), CL_SUCCESS);
    ck_assert_int_eq(clSetKernelArg(k, 1, sizeof dout, &dout), CL_SUCCESS);
    ck_assert_int_eq(clSetKernelArg(k, 2, sizeof n, &n), CL_SUCCESS);
    size_t global = NR;
    ck_assert_int_eq(clEnqueueNDRangeKernel(kdcl_ctx_queue(tu_ctx), k, 1, NULL, &global, NULL, 0,
                                            NULL, NULL),
                     CL_SUCCESS);
    ck_assert_int_eq(clEnqueueReadBuffer(kdcl_ctx_queue(tu_ctx), dout, CL_TRUE, 0,
                                         4 * NR * sizeof *got, got, 0, NULL, NULL),
                     CL_SUCCESS);
    for (int r = 0; r < NR; r++) {
        uint32_t want[4];
        kdcl_philox4x32(in + 6 * r, in + 6 * r + 4, want);
        for (int j = 0; j < 4; j++)
            ck_assert_msg(got[4 * r + j] == want[j], "device philox record %d word %d: %08x want %08x",
                          r, j, got[4 * r + j], want[j]);
    }
    clReleaseMemObject(din);
    clReleaseMemObject(dout);
    free(in);
    free(got);
}
END_TEST

START_TEST(test_dropout_threshold)
{
    ck_assert_uint_eq(kdcl_dropout_threshold(0.0f), 0);
    ck_assert_uint_eq(kdcl_dropout_threshold(0.5f), 1u << 23);
    ck_assert_uint_eq(kdcl_dropout_threshold(0.25f), 1u << 22);
    ck_assert_uint_eq(kdcl_dropout_threshold(1e-30f), 1);
    ck_assert_uint_eq(kdcl_dropout_threshold(nextafterf(1.0f, 0.0f)), (1u << 24) - 1);
    /* p = 0 keeps everything */
    for (size_t i = 0; i < 100; i++) ck_assert_int_eq(kdcl_dropout_keep(1, 2, 3, i, 0.0f), 1);
}
END_TEST

/* ---- bias + ReLU + dropout forward ---- */

typedef struct {
    size_t b, n;
    int bias, relu;
    float p;
    int mask; /* pass a mask (always when p > 0) */
    uint64_t seed, step;
    uint32_t stream;
} fwd_case;

static void run_forward(const fwd_case *fc)
{
    const size_t n = fc->b * fc->n;
    float *y = malloc(n * sizeof *y), *out = malloc(n * sizeof *out), *bias = malloc(fc->n * 4);
    unsigned char *mask = malloc(n);
    ck_assert(y && out && bias && mask);
    tu_fill_uniform(y, n, -1.0f, 1.0f, n + fc->n);
    tu_fill_uniform(bias, fc->n, -0.5f, 0.5f, fc->n * 7 + 1);
    kdcl_tensor ty = t2(KDCL_F32, fc->b, fc->n), tb = t1(KDCL_F32, fc->n),
                tm = t2(KDCL_U8, fc->b, fc->n);
    up(&ty, y, n);
    up(&tb, bias, fc->n);
    memset(mask, 7, n);
    up(&tm, mask, n);
    OK(kdcl_op_bias_act_dropout(tu_ctx, &ty, fc->bias ? &tb : NULL, fc->relu, fc->p, fc->seed,
                                fc->step, fc->stream, fc->mask ? &tm : NULL));
    down(&ty, out, n);
    down(&tm, mask, n);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        float v = fc->bias ? y[i] + bias[i % fc->n] : y[i];
        if (fc->relu && v < 0) v = 0;
        int keep = kdcl_dropout_keep(fc->seed, fc->step, fc->stream, i, fc->p);
        kept += (size_t)keep;
        if (fc->mask)
            ck_assert_msg(mask[i] == keep, "b=%zu n=%zu p=%g: mask[%zu] = %d, CPU says %d", fc->b,
                          fc->n, (double)fc->p, i, mask[i], keep);
        else
            ck_assert_int_eq(mask[i], 7); /* untouched */
        if (!keep) {
            ck_assert_msg(out[i] == 0.0f, "dropped element %zu = %g", i, (double)out[i]);
            continue;
        }
        if (fc->p == 0) { /* no scaling at all: bit-exact */
            ck_assert_msg(out[i] == v, "b=%zu n=%zu: out[%zu] = %.9g want %.9g", fc->b, fc->n,
                          i, (double)out[i], (double)v);
            continue;
        }
        /* kept: v / (1 - p) rounded once (0.5 ulp, plus 2^-48 relative for the
         * two-float scale) */
        double exact = (double)v / (1.0 - (double)fc->p);
        ck_assert_msg(fabs(out[i] - exact) <= 0.5 * ulpf(out[i]) + 1e-12 * fabs(exact),
                      "p=%g: out[%zu] = %.9g vs exact %.12g (> 0.5 ulp)", (double)fc->p, i,
                      (double)out[i], exact);
    }
    if (fc->p > 0 && n >= 10000) {
        /* keep count ~ Binomial(n, q), q = exact keep probability of the threshold */
        double q = (16777216.0 - kdcl_dropout_threshold(fc->p)) / 16777216.0;
        double mean = n * q, sd = sqrt(n * q * (1 - q));
        ck_assert_msg(fabs((double)kept - mean) <= 5 * sd,
                      "p=%g: kept %zu of %zu, expected %.1f +- %.1f", (double)fc->p, kept, n, mean,
                      5 * sd);
        ck_assert(fabs(q - (1 - fc->p)) < 1e-7);
    }
    kdcl_tensor_free(tu_ctx, &ty);
    kdcl_tensor_free(tu_ctx, &tb);
    kdcl_tensor_free(tu_ctx, &tm);
    free(y);
    free(out);
    free(bias);
    free(mask);
}

START_TEST(test_forward_vs_reference)
{
    static const fwd_case cases[] = {
        /* b, n, bias, relu, p, mask, seed, step, stream */
        {257, 1023, 1, 1, 0.5f, 1, 42, 7, 1},       /* 262911 elements: partial last block */
        {128, 1200, 1, 1, 0.2f, 1, 1234567890123ull, 1ull << 40, 3},
        {100, 784, 0, 0, 0.1f, 1, 0, 0, 0},         /* input dropout: no bias/relu */
        {64, 1000, 1, 1, 0.35f, 1, ~0ull, ~0ull, 0xffffffffu},
        {3, 5, 1, 1, 0.5f, 1, 9, 9, 9},             /* tiny: only the partial-group path */
        {16, 3, 1, 1, 0.5f, 1, 5, 6, 7},            /* 16 elements span 5+ rows: bias wraps */
        {1, 1, 1, 0, 0.5f, 1, 1, 1, 1},
        {1, 6, 1, 1, 0.0f, 0, 1, 1, 1},             /* no dropout, no mask */
        {37, 129, 1, 1, 0.0f, 1, 1, 1, 1},          /* p = 0 with a mask: all ones */
        {37, 129, 0, 0, 0.0f, 0, 1, 1, 1},          /* identity */
        {13, 11, 1, 0, 0.0f, 0, 1, 1, 1},           /* bias only */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) run_forward(&cases[c]);
}
END_TEST

static void forward_mask(kdcl_tensor *ty, kdcl_tensor *tm, const float *y, size_t n, float p,
                         uint64_t seed, uint64_t step, uint32_t stream, unsigned char *mask)
{
    up(ty, y, n);
    OK(kdcl_op_bias_act_dropout(tu_ctx, ty, NULL, 1, p, seed, step, stream, tm));
    down(tm, mask, n);
}

static size_t count_diff(const unsigned char *a, const unsigned char *b, size_t n)
{
    size_t d = 0;
    for (size_t i = 0; i < n; i++) d += a[i] != b[i];
    return d;
}

START_TEST(test_masks_vary_with_seed_step_stream)
{
    const size_t B = 64, N = 999, n = B * N;
    const float p = 0.5f;
    float *y = malloc(n * 4);
    unsigned char *m0 = malloc(n), *m1 = malloc(n);
    tu_fill_uniform(y, n, -1, 1, 5);
    kdcl_tensor ty = t2(KDCL_F32, B, N), tm = t2(KDCL_U8, B, N);
    forward_mask(&ty, &tm, y, n, p, 11, 22, 33, m0);
    /* identical parameters: identical mask */
    forward_mask(&ty, &tm, y, n, p, 11, 22, 33, m1);
    ck_assert_int_eq(count_diff(m0, m1, n), 0);
    /* each parameter changes about half of the decisions (expected n/2 for p = 0.5) */
    const uint64_t seeds[] = {12, 11, 11, 11, 11 + (1ull << 32)};
    const uint64_t steps[] = {22, 23, 22, 22 + (1ull << 32), 22};
    const uint32_t streams[] = {33, 33, 34, 33, 33};
    for (int v = 0; v < 5; v++) {
        forward_mask(&ty, &tm, y, n, p, seeds[v], steps[v], streams[v], m1);
        size_t d = count_diff(m0, m1, n);
        ck_assert_msg(d > n / 2 - 5 * sqrt(n / 4.0) && d < n / 2 + 5 * sqrt(n / 4.0),
                      "variant %d: %zu of %zu decisions differ", v, d, n);
    }
    /* The mask must not depend on the work-group size: relaunch the kernel
     * (arguments still set by the last call, i.e. seed 11, step 22, stream 33)
     * with other local sizes. One work-item handles 16 elements. */
    forward_mask(&ty, &tm, y, n, p, 11, 22, 33, m1);
    cl_kernel k;
    OK(kdcl_kernel_get(tu_ctx, "elementwise", "bias_act_dropout", &k));
    const size_t items = (n + 15) / 16, locals[] = {1, 3, 16, 64, 128};
    for (size_t l = 0; l < sizeof locals / sizeof locals[0]; l++) {
        unsigned char *zero = calloc(n, 1);
        up(&tm, zero, n);
        up(&ty, y, n);
        free(zero);
        size_t local = locals[l], global = (items + local - 1) / local * local;
        ck_assert_int_eq(clEnqueueNDRangeKernel(kdcl_ctx_queue(tu_ctx), k, 1, NULL, &global, &local,
                                                0, NULL, NULL),
                         CL_SUCCESS);
        down(&tm, m1, n);
        ck_assert_msg(count_diff(m0, m1, n) == 0, "mask changed with local size %zu", local);
    }
    kdcl_tensor_free(tu_ctx, &ty);
    kdcl_tensor_free(tu_ctx, &tm);
    free(y);
    free(m0);
    free(m1);
}
END_TEST

/* ---- backward ---- */

static void run_backward(size_t B, size_t N, int relu, float p)
{
    const size_t n = B * N;
    float *y = malloc(n * 4), *dy = malloc(n * 4), *yout = malloc(n * 4), *got = malloc(n * 4);
    unsigned char *mask = malloc(n);
    tu_fill_uniform(y, n, -1, 1, 77 + n);
    tu_fill_uniform(dy, n, -2, 2, 78 + n);
    kdcl_tensor ty = t2(KDCL_F32, B, N), tdy = t2(KDCL_F32, B, N), tm = t2(KDCL_U8, B, N);
    up(&ty, y, n);
    up(&tdy, dy, n);
    int use_mask = p > 0;
    OK(kdcl_op_bias_act_dropout(tu_ctx, &ty, NULL, relu, p, 5, 6, 7, use_mask ? &tm : NULL));
    OK(kdcl_op_act_dropout_backward(tu_ctx, &tdy, relu ? &ty : NULL, relu, p,
                                    use_mask ? &tm : NULL));
    down(&ty, yout, n);
    down(&tdy, got, n);
    if (use_mask) down(&tm, mask, n);
    for (size_t i = 0; i < n; i++) {
        double g = dy[i];
        if (use_mask) g = mask[i] ? g / (1.0 - (double)p) : 0.0;
        if (relu && !(yout[i] > 0)) g = 0.0;
        /* zeros and unscaled values exact, scaled ones rounded once */
        ck_assert_msg(fabs(got[i] - g) <= 0.5 * ulpf(got[i]) + 1e-12 * fabs(g),
                      "B=%zu N=%zu relu=%d p=%g: dy[%zu] = %.9g want %.12g", B, N, relu,
                      (double)p, i, (double)got[i], g);
        if (g == 0 || !use_mask) ck_assert(got[i] == (float)g);
        /* relu: y_out > 0 iff the pre-dropout activation was > 0 (for kept units) */
        if (relu && (!use_mask || mask[i])) ck_assert_int_eq(yout[i] > 0, y[i] > 0);
    }
    kdcl_tensor_free(tu_ctx, &ty);
    kdcl_tensor_free(tu_ctx, &tdy);
    kdcl_tensor_free(tu_ctx, &tm);
    free(y);
    free(dy);
    free(yout);
    free(got);
    free(mask);
}

START_TEST(test_backward_vs_reference)
{
    run_backward(128, 1200, 1, 0.5f);
    run_backward(33, 77, 1, 0.2f);
    run_backward(33, 77, 0, 0.2f);
    run_backward(31, 17, 1, 0.0f);
    run_backward(5, 3, 0, 0.0f); /* identity */
}
END_TEST

/* Finite differences of f(y) = sum_i w_i out_i(y) with the mask fixed (same
 * seed/step/stream), against the backward applied to dy = w. */
START_TEST(test_gradient_finite_differences)
{
    const size_t B = 16, N = 50, n = B * N;
    const float p = 0.3f, h = 1.0f / 64;
    float *y = malloc(n * 4), *b = malloc(N * 4), *w = malloc(n * 4), *yp = malloc(n * 4);
    float *op = malloc(n * 4), *om = malloc(n * 4), *o0 = malloc(n * 4), *grad = malloc(n * 4);
    tu_fill_uniform(y, n, -1, 1, 3);
    tu_fill_uniform(b, N, -0.3f, 0.3f, 4);
    tu_fill_uniform(w, n, -1, 1, 5);
    /* keep pre-activations away from the ReLU kink: |y + b| >= 2h */
    for (size_t i = 0; i < n; i++) {
        float v = y[i] + b[i % N];
        if (fabsf(v) < 2 * h) y[i] += v >= 0 ? 3 * h : -3 * h;
    }
    kdcl_tensor ty = t2(KDCL_F32, B, N), tb = t1(KDCL_F32, N), tm = t2(KDCL_U8, B, N),
                tg = t2(KDCL_F32, B, N);
    up(&tb, b, N);
    const uint64_t seed = 99, step = 3;
    const uint32_t stream = 2;
#define FWD(src, dst)                                                                   \
    do {                                                                                \
        up(&ty, src, n);                                                                \
        OK(kdcl_op_bias_act_dropout(tu_ctx, &ty, &tb, 1, p, seed, step, stream, &tm));      \
        down(&ty, dst, n);                                                              \
    } while (0)
    FWD(y, o0);
    up(&tg, w, n);
    OK(kdcl_op_act_dropout_backward(tu_ctx, &tg, &ty, 1, p, &tm));
    down(&tg, grad, n);
    /* the layer is elementwise: perturbing every element at once gives every
     * diagonal partial derivative in two launches */
    for (size_t i = 0; i < n; i++) yp[i] = y[i] + h;
    FWD(yp, op);
    for (size_t i = 0; i < n; i++) yp[i] = y[i] - h;
    FWD(yp, om);
    size_t nonzero = 0;
    for (size_t i = 0; i < n; i++) {
        double fd = (double)w[i] * ((double)op[i] - (double)om[i]) / (2.0 * h);
        nonzero += grad[i] != 0;
        ck_assert_msg(fabs(fd - grad[i]) <= 1e-4 * (fabs(fd) + 1e-3),
                      "element %zu: finite difference %.8g vs backward %.8g", i, fd,
                      (double)grad[i]);
    }
    ck_assert(nonzero > n / 5 && nonzero < n); /* some active, some dropped or inactive */
    /* true scalar finite differences of the full sum for a few elements */
    for (int t = 0; t < 24; t++) {
        size_t i = (size_t)(xs32() % n);
        double f[2];
        for (int sgn = 0; sgn < 2; sgn++) {
            memcpy(yp, y, n * 4);
            yp[i] += sgn ? -h : h;
            FWD(yp, op);
            double s = 0;
            for (size_t j = 0; j < n; j++) s += (double)w[j] * op[j];
            f[sgn] = s;
        }
        double fd = (f[0] - f[1]) / (2.0 * h);
        ck_assert_msg(fabs(fd - grad[i]) <= 1e-4 * (fabs(fd) + 1e-3) + 1e-9 * n,
                      "element %zu: d sum / dy = %.8g vs backward %.8g", i, fd, (double)grad[i]);
    }
#undef FWD
    kdcl_tensor_free(tu_ctx, &ty);
    kdcl_tensor_free(tu_ctx, &tb);
    kdcl_tensor_free(tu_ctx, &tm);
    kdcl_tensor_free(tu_ctx, &tg);
    free(y);
    free(b);
    free(w);
    free(yp);
    free(op);
    free(om);
    free(o0);
    free(grad);
}
END_TEST

/* ---- bias gradient ---- */

static void run_bias_grad(size_t B, size_t N, float scale, float beta)
{
    const size_t n = B * N;
    float *dy = malloc(n * 4), *db0 = malloc(N * 4), *db = malloc(N * 4);
    tu_fill_uniform(dy, n, -1, 1, B * 3 + N);
    tu_fill_uniform(db0, N, -1, 1, N);
    if (beta == 0)
        for (size_t j = 0; j < N; j++) db0[j] = NAN; /* beta = 0 must not read db */
    kdcl_tensor tdy = t2(KDCL_F32, B, N), tdb = t1(KDCL_F32, N);
    up(&tdy, dy, n);
    up(&tdb, db0, N);
    OK(kdcl_op_bias_grad(tu_ctx, &tdy, &tdb, scale, beta));
    down(&tdb, db, N);
    for (size_t j = 0; j < N; j++) {
        double s = 0, a = 0;
        for (size_t r = 0; r < B; r++) {
            s += dy[r * N + j];
            a += fabs(dy[r * N + j]);
        }
        double want = scale * s + (beta != 0 ? (double)beta * db0[j] : 0.0);
        double tol = (double)(B + 2) * U * fabs(scale) * a +
                     (beta != 0 ? 3 * U * fabs((double)beta * db0[j]) : 0.0) + 1e-30;
        ck_assert_msg(fabs(db[j] - want) <= tol,
                      "B=%zu N=%zu scale=%g beta=%g: db[%zu] = %.9g want %.9g (tol %.3g)", B, N,
                      (double)scale, (double)beta, j, (double)db[j], want, tol);
    }
    kdcl_tensor_free(tu_ctx, &tdy);
    kdcl_tensor_free(tu_ctx, &tdb);
    free(dy);
    free(db0);
    free(db);
}

START_TEST(test_bias_grad_vs_reference)
{
    static const size_t shapes[][2] = {{1, 1}, {3, 5}, {7, 33}, {128, 1200}, {1000, 10},
                                       {128, 10}, {37, 257}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        run_bias_grad(shapes[s][0], shapes[s][1], 1.0f, 0.0f);
        run_bias_grad(shapes[s][0], shapes[s][1], 1.0f / (float)shapes[s][0], 0.5f);
        run_bias_grad(shapes[s][0], shapes[s][1], -0.25f, 1.0f);
    }
}
END_TEST

/* ---- SGD ---- */

START_TEST(test_sgd_vs_reference)
{
    const size_t cap = 3001;
    float *w = malloc(cap * 4), *g = malloc(cap * 4), *v = malloc(cap * 4);
    float *w1 = malloc(cap * 4), *v1 = malloc(cap * 4);
    tu_fill_uniform(w, cap, -1, 1, 1);
    tu_fill_uniform(v, cap, -0.1f, 0.1f, 2);
    kdcl_tensor tw = t1(KDCL_F32, cap), tg = t1(KDCL_F32, cap), tv = t1(KDCL_F32, cap);
    up(&tw, w, cap);
    up(&tv, v, cap);
    static const struct {
        size_t off, n;
        float lr, mom, wd;
    } steps[] = {
        {37, 1500, 0.1f, 0.5f, 0.0f},   {37, 1500, 0.1f, 0.9f, 1e-4f}, {37, 1500, 0.05f, 0.99f, 5e-4f},
        {1600, 1401, 1.0f, 0.0f, 0.0f}, {0, 3001, 0.01f, 0.9f, 0.1f},  {3000, 1, 0.5f, 0.5f, 0.5f},
        {5, 0, 0.5f, 0.5f, 0.5f}, /* n = 0: no-op */
    };
    for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
        tu_fill_uniform(g, cap, -1, 1, 10 + s);
        up(&tg, g, cap);
        OK(kdcl_op_sgd(tu_ctx, &tw, &tg, &tv, steps[s].off, steps[s].n, steps[s].lr, steps[s].mom,
                       steps[s].wd));
        down(&tw, w1, cap);
        down(&tv, v1, cap);
        for (size_t i = 0; i < cap; i++) {
            if (i < steps[s].off || i >= steps[s].off + steps[s].n) {
                ck_assert_msg(w1[i] == w[i] && v1[i] == v[i], "step %zu touched element %zu", s, i);
                continue;
            }
            double vr = (double)steps[s].mom * v[i] -
                        (double)steps[s].lr * ((double)g[i] + (double)steps[s].wd * w[i]);
            double vtol = 4 * U * (fabs(steps[s].mom * v[i]) +
                                   fabs(steps[s].lr) * (fabs(g[i]) + fabs(steps[s].wd * w[i]))) +
                          1e-37;
            ck_assert_msg(fabs(v1[i] - vr) <= vtol, "step %zu: v[%zu] = %.9g want %.9g", s, i,
                          (double)v1[i], vr);
            double wr = (double)w[i] + v1[i];
            ck_assert_msg(fabs(w1[i] - wr) <= U * fabs(wr) + 1e-37,
                          "step %zu: w[%zu] = %.9g want %.9g", s, i, (double)w1[i], wr);
        }
        memcpy(w, w1, cap * 4);
        memcpy(v, v1, cap * 4);
    }
    kdcl_tensor_free(tu_ctx, &tw);
    kdcl_tensor_free(tu_ctx, &tg);
    kdcl_tensor_free(tu_ctx, &tv);
    free(w);
    free(g);
    free(v);
    free(w1);
    free(v1);
}
END_TEST

/* ---- max-norm ---- */

static void run_max_norm(size_t rows, size_t cols, size_t off, float c)
{
    const size_t cap = off + rows * cols + 13;
    float *w = malloc(cap * 4), *got = malloc(cap * 4);
    tu_fill_uniform(w, cap, -1, 1, rows * 1000 + cols);
    /* even rows: norm 2.5c (over the limit), odd rows: 0.6c (under) */
    for (size_t r = 0; r < rows; r++) {
        double nn = 0;
        for (size_t j = 0; j < cols; j++) nn += (double)w[off + r * cols + j] * w[off + r * cols + j];
        double f = (r % 2 ? 0.6 : 2.5) * c / sqrt(nn);
        for (size_t j = 0; j < cols; j++) w[off + r * cols + j] = (float)(w[off + r * cols + j] * f);
    }
    kdcl_tensor tw = t1(KDCL_F32, cap);
    up(&tw, w, cap);
    OK(kdcl_op_max_norm(tu_ctx, &tw, off, rows, cols, c));
    down(&tw, got, cap);
    for (size_t i = 0; i < off; i++) ck_assert(got[i] == w[i]);
    for (size_t i = off + rows * cols; i < cap; i++) ck_assert(got[i] == w[i]);
    for (size_t r = 0; r < rows; r++) {
        const float *a = w + off + r * cols, *b = got + off + r * cols;
        double n0 = 0, n1 = 0;
        for (size_t j = 0; j < cols; j++) {
            n0 += (double)a[j] * a[j];
            n1 += (double)b[j] * b[j];
        }
        n0 = sqrt(n0);
        n1 = sqrt(n1);
        if (r % 2) {
            for (size_t j = 0; j < cols; j++)
                ck_assert_msg(b[j] == a[j], "rows=%zu cols=%zu: row %zu (norm %g < c) changed",
                              rows, cols, r, n0);
        } else {
            ck_assert_msg(fabs(n1 - c) <= 1e-6 * c,
                          "rows=%zu cols=%zu: row %zu norm %.9g after max-norm, want %g", rows,
                          cols, r, n1, (double)c);
            double f = c / n0; /* direction kept: every element scaled by the same factor */
            for (size_t j = 0; j < cols; j++)
                ck_assert(fabs(b[j] - a[j] * f) <= 1e-6 * fabs(a[j] * f) + 1e-30);
        }
    }
    kdcl_tensor_free(tu_ctx, &tw);
    free(w);
    free(got);
}

START_TEST(test_max_norm)
{
    run_max_norm(50, 784, 100, 3.0f);
    run_max_norm(1200, 1200, 0, 3.5f);
    run_max_norm(10, 1, 7, 0.5f);
    run_max_norm(9, 3, 1, 2.0f);
    run_max_norm(4, 1000, 3, 15.0f);
}
END_TEST

/* ---- SGD fused with max-norm ---- */

/* Scale row r of the [rows, cols] matrices w, v, g so that the row's norm after the
 * update w + (mom * v - lr * (g + wd * w)) = (1 - lr * wd) * w + mom * v - lr * g,
 * which is linear in (w, v, g), is 2.5c for even rows (over the limit) and 0.6c for
 * odd rows (under): margins far beyond any rounding, so the two summation orders of
 * the norm cannot disagree about which rows get scaled. */
static void shape_rows(float *w, float *v, float *g, size_t rows, size_t cols, float lr,
                       float mom, float wd, float c)
{
    for (size_t r = 0; r < rows; r++) {
        float *wr = w + r * cols, *vr = v + r * cols, *gr = g + r * cols;
        double nn = 0;
        for (size_t j = 0; j < cols; j++) {
            double x = (1.0 - (double)lr * wd) * wr[j] + (double)mom * vr[j] - (double)lr * gr[j];
            nn += x * x;
        }
        double f = (r % 2 ? 0.6 : 2.5) * c / sqrt(nn);
        for (size_t j = 0; j < cols; j++) {
            wr[j] = (float)(wr[j] * f);
            vr[j] = (float)(vr[j] * f);
            gr[j] = (float)(gr[j] * f);
        }
    }
}

/* Relative error bound of a row scaled by max-norm, against c / ||x|| * x in double
 * from the same float row x. The float sum of squares, in whatever order the kernel
 * adds them (the longest chain of additions has at most cols - 1 of them, plus the
 * rounding of each square), is within about cols * u of the exact sum, so the norm
 * within cols / 2 * u; sqrt (<= 3 ulp) and the division (<= 2.5 ulp), an ulp being
 * at most 2u relative, add 11u, and the final product u: (cols / 2 + 12) u, with 4u
 * to spare for second-order terms. */
static double max_norm_tol(size_t cols)
{
    return ((double)cols / 2 + 16) * U;
}

/* Checks row r of `got` against max-norm (limit c) applied to the float row x:
 * rows with norm <= c bit for bit unchanged, the others within max_norm_tol. */
static void check_max_norm_row(const float *x, const float *got, size_t cols, float c,
                               const char *what, size_t r)
{
    double nn = 0;
    for (size_t j = 0; j < cols; j++) nn += (double)x[j] * x[j];
    if (nn <= (double)c * c) {
        for (size_t j = 0; j < cols; j++)
            ck_assert_msg(got[j] == x[j], "%s: row %zu (norm %g <= c = %g) changed at %zu: %.9g "
                          "want %.9g", what, r, sqrt(nn), (double)c, j, (double)got[j],
                          (double)x[j]);
        return;
    }
    const double f = c / sqrt(nn), tol = max_norm_tol(cols);
    for (size_t j = 0; j < cols; j++) {
        double want = x[j] * f;
        ck_assert_msg(fabs(got[j] - want) <= tol * fabs(want) + 1e-37,
                      "%s: row %zu (norm %g > c = %g) element %zu = %.9g want %.9g", what, r,
                      sqrt(nn), (double)c, j, (double)got[j], want);
    }
}

static void run_sgd_max_norm(size_t rows, size_t cols, size_t off, float lr, float mom, float wd,
                             float c)
{
    const size_t cap = off + rows * cols + 13, n = rows * cols;
    char what[96];
    snprintf(what, sizeof what, "%zux%zu at %zu", rows, cols, off);
    float *w = malloc(cap * 4), *v = malloc(cap * 4), *g = malloc(cap * 4);
    float *w1 = malloc(cap * 4), *v1 = malloc(cap * 4), *ws = malloc(cap * 4),
          *vs = malloc(cap * 4), *wm = malloc(cap * 4);
    tu_fill_uniform(w, cap, -1, 1, rows * 1000 + cols);
    tu_fill_uniform(v, cap, -1, 1, rows * 1000 + cols + 1);
    tu_fill_uniform(g, cap, -1, 1, rows * 1000 + cols + 2);
    shape_rows(w + off, v + off, g + off, rows, cols, lr, mom, wd, c);
    kdcl_tensor tw = t1(KDCL_F32, cap), tv = t1(KDCL_F32, cap), tg = t1(KDCL_F32, cap);
    kdcl_tensor tw2 = t1(KDCL_F32, cap), tv2 = t1(KDCL_F32, cap);
    up(&tw, w, cap);
    up(&tv, v, cap);
    up(&tg, g, cap);
    up(&tw2, w, cap);
    up(&tv2, v, cap);
    OK(kdcl_op_sgd_max_norm(tu_ctx, &tw, &tg, &tv, off, rows, cols, lr, mom, wd, c));
    /* the unfused sequence on copies: sgd (ws, vs), then max_norm (wm) */
    OK(kdcl_op_sgd(tu_ctx, &tw2, &tg, &tv2, off, n, lr, mom, wd));
    down(&tw2, ws, cap);
    OK(kdcl_op_max_norm(tu_ctx, &tw2, off, rows, cols, c));
    down(&tw, w1, cap);
    down(&tv, v1, cap);
    down(&tv2, vs, cap);
    down(&tw2, wm, cap);
    for (size_t i = 0; i < cap; i++) {
        if (i >= off && i < off + n) continue;
        ck_assert_msg(w1[i] == w[i] && v1[i] == v[i], "%s: touched element %zu", what, i);
    }
    /* v is the plain SGD velocity, bit for bit (same expression, FP_CONTRACT OFF) */
    for (size_t i = off; i < off + n; i++)
        ck_assert_msg(v1[i] == vs[i], "%s: v[%zu] = %.9g, sgd gives %.9g", what, i,
                      (double)v1[i], (double)vs[i]);
    size_t over = 0;
    for (size_t r = 0; r < rows; r++) {
        const float *x = ws + off + r * cols;
        double nn = 0;
        for (size_t j = 0; j < cols; j++) nn += (double)x[j] * x[j];
        ck_assert_msg(sqrt(nn) > 2 * c || sqrt(nn) < 0.7 * c, "%s: row %zu norm %g", what, r,
                      sqrt(nn)); /* as shape_rows built it */
        over += nn > (double)c * c;
        check_max_norm_row(x, w1 + off + r * cols, cols, c, what, r);
        check_max_norm_row(x, wm + off + r * cols, cols, c, "unfused", r);
    }
    ck_assert_uint_eq(over, (rows + 1) / 2);
    kdcl_tensor *all[] = {&tw, &tv, &tg, &tw2, &tv2};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) kdcl_tensor_free(tu_ctx, all[i]);
    float *host[] = {w, v, g, w1, v1, ws, vs, wm};
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++) free(host[i]);
}

START_TEST(test_sgd_max_norm)
{
    run_sgd_max_norm(50, 784, 100, 0.1f, 0.9f, 5e-4f, 3.0f);
    run_sgd_max_norm(1200, 1200, 0, 0.01f, 0.9f, 0.0f, 3.5f);
    run_sgd_max_norm(10, 1, 7, 0.5f, 0.5f, 0.1f, 0.5f);
    run_sgd_max_norm(9, 3, 1, 1.0f, 0.0f, 0.0f, 2.0f);
    run_sgd_max_norm(4, 1000, 3, 0.05f, 0.99f, 1e-4f, 15.0f);
    run_sgd_max_norm(3, 257, 5, 0.1f, 0.9f, 0.0f, 1.0f); /* ragged: 257 = 256 + 1 = 7 * 33 + 26 */
}
END_TEST

/* kdcl_optim_step (SGD) with max-norm (fused per weight matrix) against the
 * unfused sequence it replaces: one kdcl_op_sgd over the whole flat buffer, then
 * kdcl_op_max_norm per layer. Odd layer sizes leave alignment padding between
 * the blocks, which both must leave at zero. */
START_TEST(test_mlp_sgd_max_norm)
{
    static const size_t sizes[4] = {37, 19, 5, 3};
    kdcl_model *m = tu_model("37-19-5-3", 3, 0, 0, 0, 4, 0, 0, 1);
    const float lr = 0.1f, mom = 0.9f, wd = 1e-3f, c = 1.5f;
    kdcl_optim_opts oo;
    kdcl_optim_opts_default(&oo);
    oo.weight_decay = wd;
    oo.max_norm = c;
    kdcl_optim *opt;
    OK(kdcl_optim_create(m, &oo, &opt));
    size_t nr;
    const kdcl_param_range *rg = kdcl_model_param_ranges(m, &nr);
    ck_assert_uint_eq(nr, 6);
    size_t w_off[3], b_off[3];
    for (size_t l = 0; l < 3; l++) {
        w_off[l] = rg[2 * l].offset;
        b_off[l] = rg[2 * l + 1].offset;
        ck_assert_uint_eq(rg[2 * l].rows, sizes[l + 1]);
        ck_assert_uint_eq(rg[2 * l].cols, sizes[l]);
    }
    struct {
        size_t n_layers, sizes[4];
    } a = {3, {37, 19, 5, 3}};
    struct {
        kdcl_tensor *params, *grads, *vel;
        size_t *w_off, *b_off;
    } mm = {kdcl_model_params(m), kdcl_model_grads(m), kdcl_optim_state(opt, 0), w_off, b_off};
    const size_t cap = mm.params->numel;
    float *w = calloc(cap, 4), *v = calloc(cap, 4), *g = calloc(cap, 4);
    float *w1 = malloc(cap * 4), *v1 = malloc(cap * 4), *ws = malloc(cap * 4),
          *vs = malloc(cap * 4), *wm = malloc(cap * 4);
    for (size_t l = 0; l < a.n_layers; l++) {
        const size_t in = a.sizes[l], out = a.sizes[l + 1];
        tu_fill_uniform(w + mm.w_off[l], out * in, -1, 1, 10 * l + 1);
        tu_fill_uniform(v + mm.w_off[l], out * in, -1, 1, 10 * l + 2);
        tu_fill_uniform(g + mm.w_off[l], out * in, -1, 1, 10 * l + 3);
        shape_rows(w + mm.w_off[l], v + mm.w_off[l], g + mm.w_off[l], out, in, lr, mom, wd, c);
        tu_fill_uniform(w + mm.b_off[l], out, -5, 5, 10 * l + 4); /* biases: no max-norm */
        tu_fill_uniform(v + mm.b_off[l], out, -1, 1, 10 * l + 5);
        tu_fill_uniform(g + mm.b_off[l], out, -1, 1, 10 * l + 6);
    }
    kdcl_tensor tw = t1(KDCL_F32, cap), tv = t1(KDCL_F32, cap);
    up(mm.params, w, cap);
    up(mm.vel, v, cap);
    up(mm.grads, g, cap);
    up(&tw, w, cap);
    up(&tv, v, cap);
    OK(kdcl_optim_step(opt, lr, mom));
    OK(kdcl_op_sgd(tu_ctx, &tw, mm.grads, &tv, 0, cap, lr, mom, wd));
    down(&tw, ws, cap);
    for (size_t l = 0; l < a.n_layers; l++)
        OK(kdcl_op_max_norm(tu_ctx, &tw, mm.w_off[l], a.sizes[l + 1], a.sizes[l], c));
    down(mm.params, w1, cap);
    down(mm.vel, v1, cap);
    down(&tv, vs, cap);
    down(&tw, wm, cap);
    for (size_t i = 0; i < cap; i++)
        ck_assert_msg(v1[i] == vs[i], "v[%zu] = %.9g want %.9g", i, (double)v1[i], (double)vs[i]);
    for (size_t l = 0, i = 0; l < a.n_layers; l++) {
        const size_t in = a.sizes[l], out = a.sizes[l + 1];
        for (; i < mm.w_off[l]; i++) ck_assert_msg(w1[i] == 0 && wm[i] == 0, "padding %zu", i);
        for (size_t r = 0; r < out; r++) {
            check_max_norm_row(ws + mm.w_off[l] + r * in, w1 + mm.w_off[l] + r * in, in, c,
                               "kdcl_optim_step", r);
            check_max_norm_row(ws + mm.w_off[l] + r * in, wm + mm.w_off[l] + r * in, in, c,
                               "unfused", r);
        }
        for (i = mm.b_off[l]; i < mm.b_off[l] + out; i++)
            ck_assert_msg(w1[i] == ws[i], "layer %zu bias %zu = %.9g want %.9g", l, i,
                          (double)w1[i], (double)ws[i]);
        if (l + 1 == a.n_layers)
            for (; i < cap; i++) ck_assert_msg(w1[i] == 0 && wm[i] == 0, "padding %zu", i);
    }
    kdcl_tensor_free(tu_ctx, &tw);
    kdcl_tensor_free(tu_ctx, &tv);
    kdcl_optim_destroy(opt);
    kdcl_model_destroy(m);
    float *host[] = {w, v, g, w1, v1, ws, vs, wm};
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++) free(host[i]);
}
END_TEST

/* ---- u8 -> float and jitter ---- */

static float conv(unsigned char s, float scale, float shift)
{
    return (float)((double)s * scale + shift); /* exact product, one rounding */
}

START_TEST(test_u8_to_float)
{
    const size_t cap = 5000, n = 4321;
    unsigned char *src = malloc(cap);
    float *dst = malloc(cap * 4);
    for (size_t i = 0; i < cap; i++) src[i] = (unsigned char)(i < 256 ? i : xs32());
    kdcl_tensor ts = t1(KDCL_U8, cap), td = t1(KDCL_F32, cap);
    up(&ts, src, cap);
    const float params[][2] = {{1.0f / 255, 0.0f}, {1.0f / 255 / 0.3081f, -0.1307f / 0.3081f},
                               {1.0f, 0.0f}, {0.0078125f, -1.0f}};
    for (size_t p = 0; p < sizeof params / sizeof params[0]; p++) {
        OK(kdcl_tensor_fill(tu_ctx, &td, -7.0f));
        OK(kdcl_op_u8_to_float(tu_ctx, &ts, &td, n, params[p][0], params[p][1]));
        down(&td, dst, cap);
        for (size_t i = 0; i < cap; i++) {
            float want = i < n ? conv(src[i], params[p][0], params[p][1]) : -7.0f;
            ck_assert_msg(dst[i] == want, "params %zu: dst[%zu] = %.9g want %.9g (src %u)", p, i,
                          (double)dst[i], (double)want, src[i]);
        }
    }
    kdcl_tensor_free(tu_ctx, &ts);
    kdcl_tensor_free(tu_ctx, &td);
    free(src);
    free(dst);
}
END_TEST

static void check_jitter(size_t B, size_t H, size_t W, size_t C, int m, uint64_t seed,
                         uint64_t step, int want_cover)
{
    const size_t per = H * W * C, n = B * per;
    const float scale = 1.0f / 255, shift = -0.25f;
    unsigned char *src = malloc(n);
    float *dst = malloc(n * 4);
    for (size_t i = 0; i < n; i++) src[i] = (unsigned char)(xs32() | 1); /* no zero pixels */
    kdcl_tensor ts = t2(KDCL_U8, B, per), td = t2(KDCL_F32, B, per);
    up(&ts, src, n);
    OK(kdcl_op_jitter(tu_ctx, &ts, &td, B, H, W, C, m, seed, step, scale, shift));
    down(&td, dst, n);
    int seen_dx[64] = {0}, seen_dy[64] = {0};
    for (size_t b = 0; b < B; b++) {
        int dx, dy;
        kdcl_jitter_shift(seed, step, b, m, &dx, &dy);
        ck_assert(dx >= -m && dx <= m && dy >= -m && dy <= m);
        if (m < 32) {
            seen_dx[dx + m] = 1;
            seen_dy[dy + m] = 1;
        }
        for (size_t y = 0; y < H; y++)
            for (size_t x = 0; x < W; x++)
                for (size_t ch = 0; ch < C; ch++) {
                    long sy = (long)y - dy, sx = (long)x - dx;
                    unsigned char s = 0;
                    if (sy >= 0 && sy < (long)H && sx >= 0 && sx < (long)W)
                        s = src[b * per + ((size_t)sy * W + (size_t)sx) * C + ch];
                    float want = conv(s, scale, shift), got = dst[b * per + (y * W + x) * C + ch];
                    ck_assert_msg(got == want,
                                  "B=%zu %zux%zux%zu m=%d: example %zu (dx %d dy %d) at y=%zu "
                                  "x=%zu c=%zu: %.9g want %.9g",
                                  B, H, W, C, m, b, dx, dy, y, x, ch, (double)got, (double)want);
                }
    }
    if (want_cover)
        for (int s = 0; s <= 2 * m; s++)
            ck_assert_msg(seen_dx[s] && seen_dy[s], "m=%d: shift %d never drawn in %zu examples",
                          m, s - m, B);
    kdcl_tensor_free(tu_ctx, &ts);
    kdcl_tensor_free(tu_ctx, &td);
    free(src);
    free(dst);
}

START_TEST(test_jitter_vs_reference)
{
    check_jitter(400, 5, 7, 3, 2, 17, 3, 1);
    check_jitter(64, 28, 28, 1, 2, 1, 1ull << 33, 1);
    check_jitter(300, 8, 8, 3, 4, 5, 0, 1);
    check_jitter(20, 4, 3, 2, 10, 5, 9, 0); /* shifts larger than the image */
    check_jitter(16, 32, 32, 3, 0, 5, 9, 0); /* plain conversion */
    check_jitter(3, 1, 1, 1, 1, 5, 9, 0);
}
END_TEST

START_TEST(test_jitter_shift_properties)
{
    /* max_shift 0 equals plain conversion on the device */
    const size_t B = 10, per = 6 * 5 * 3, n = B * per;
    unsigned char *src = malloc(n);
    float *a = malloc(n * 4), *b = malloc(n * 4);
    for (size_t i = 0; i < n; i++) src[i] = (unsigned char)xs32();
    kdcl_tensor ts = t2(KDCL_U8, B, per), td = t2(KDCL_F32, B, per);
    up(&ts, src, n);
    OK(kdcl_op_jitter(tu_ctx, &ts, &td, B, 6, 5, 3, 0, 123, 456, 0.5f, 1.0f));
    down(&td, a, n);
    OK(kdcl_op_u8_to_float(tu_ctx, &ts, &td, n, 0.5f, 1.0f));
    down(&td, b, n);
    ck_assert(memcmp(a, b, n * 4) == 0);
    /* shifts: uniform over [-m, m] (chi-square-ish count check), depend on seed/step/b */
    const int m = 3;
    int counts[7] = {0}, same_seed = 0, same_step = 0;
    const int draws = 7000;
    for (int i = 0; i < draws; i++) {
        int dx, dy, ex, ey;
        kdcl_jitter_shift(42, 7, (size_t)i, m, &dx, &dy);
        counts[dx + m]++;
        counts[dy + m]++;
        kdcl_jitter_shift(43, 7, (size_t)i, m, &ex, &ey);
        same_seed += dx == ex && dy == ey;
        kdcl_jitter_shift(42, 8, (size_t)i, m, &ex, &ey);
        same_step += dx == ex && dy == ey;
    }
    for (int s = 0; s < 7; s++) /* 2*draws/7 = 2000 each, sd ~ 41 */
        ck_assert_msg(abs(counts[s] - 2000) < 250, "shift %d drawn %d times", s - m, counts[s]);
    ck_assert(same_seed < draws / 20 + 200 && same_step < draws / 20 + 200); /* ~1/49 by chance */
    kdcl_tensor_free(tu_ctx, &ts);
    kdcl_tensor_free(tu_ctx, &td);
    free(src);
    free(a);
    free(b);
}
END_TEST

/* ---- argument validation ---- */

#define BAD(call, substr)                                                                 \
    do {                                                                                  \
        kdcl_clear_error();                                                               \
        kdcl_status s_ = (call);                                                          \
        ck_assert_msg(s_ == KDCL_ERR_INVALID_ARG, "%s returned %d", #call, (int)s_);      \
        ck_assert_msg(strstr(kdcl_last_error(), substr), "%s: message '%s' lacks '%s'", #call, \
                      kdcl_last_error(), substr);                                        \
    } while (0)

START_TEST(test_bad_arguments)
{
    kdcl_tensor y = t2(KDCL_F32, 4, 6), b = t1(KDCL_F32, 6), b5 = t1(KDCL_F32, 5);
    kdcl_tensor m = t2(KDCL_U8, 4, 6), m5 = t2(KDCL_U8, 4, 5), yi = t2(KDCL_I32, 4, 6);
    kdcl_tensor u8 = t2(KDCL_U8, 2, 12), f = t2(KDCL_F32, 2, 12), big = t1(KDCL_F32, 100);
    kdcl_tensor none = {0};
    const char *op = "kdcl_op_bias_act_dropout";
    BAD(kdcl_op_bias_act_dropout(tu_ctx, &y, &b, 1, 1.0f, 1, 1, 1, &m), op);
    BAD(kdcl_op_bias_act_dropout(tu_ctx, &y, &b, 1, 1.5f, 1, 1, 1, &m), "drop_p");
    BAD(kdcl_op_bias_act_dropout(tu_ctx, &y, &b, 1, -0.1f, 1, 1, 1, &m), "drop_p");
    BAD(kdcl_op_bias_act_dropout(tu_ctx, &y, &b, 1, NAN, 1, 1, 1, &m), "drop_p");
    BAD(kdcl_op_bias_act_dropout(tu_ctx, &y, &b, 1, 0.5f, 1, 1, 1, NULL), "mask");
    BAD(kdcl_op_bias_act_dropout(tu_ctx, &y, &b5, 1, 0.5f, 1, 1, 1, &m), "[5]");
    BAD(kdcl_op_bias_act_dropout(tu_ctx, &y, &b, 1, 0.5f, 1, 1, 1, &m5), "[4x5]");
    BAD(kdcl_op_bias_act_dropout(tu_ctx, &yi, &b, 1, 0.5f, 1, 1, 1, &m), "I32");
    BAD(kdcl_op_bias_act_dropout(tu_ctx, &y, &b, 1, 0.5f, 1, 1, 1, &y), "mask must be U8");
    BAD(kdcl_op_bias_act_dropout(tu_ctx, &none, &b, 1, 0.5f, 1, 1, 1, &m), "NULL");
    BAD(kdcl_op_bias_act_dropout(tu_ctx, NULL, &b, 1, 0.5f, 1, 1, 1, &m), "NULL");
    BAD(kdcl_op_act_dropout_backward(tu_ctx, &y, &y, 1, 1.0f, &m), "drop_p");
    BAD(kdcl_op_act_dropout_backward(tu_ctx, &y, &y, 1, 0.5f, NULL), "mask");
    BAD(kdcl_op_act_dropout_backward(tu_ctx, &y, &y, 1, 0.5f, &m5), "mask");
    BAD(kdcl_op_act_dropout_backward(tu_ctx, &y, &b, 1, 0.5f, &m), "y_out");
    BAD(kdcl_op_act_dropout_backward(tu_ctx, &y, NULL, 1, 0.0f, NULL), "y_out");
    BAD(kdcl_op_bias_grad(tu_ctx, &y, &b5, 1, 0), "kdcl_op_bias_grad");
    BAD(kdcl_op_bias_grad(tu_ctx, &m, &b, 1, 0), "F32");
    BAD(kdcl_op_sgd(tu_ctx, &big, &big, &big, 90, 11, 0.1f, 0.9f, 0), "kdcl_op_sgd");
    BAD(kdcl_op_sgd(tu_ctx, &big, &big, &y, 0, 25, 0.1f, 0.9f, 0), "v");
    BAD(kdcl_op_sgd(tu_ctx, &big, &big, &big, SIZE_MAX, 2, 0.1f, 0.9f, 0), "outside");
    BAD(kdcl_op_sgd(tu_ctx, &big, &u8, &big, 0, 2, 0.1f, 0.9f, 0), "U8");
    BAD(kdcl_op_sgd(tu_ctx, &big, &big, &big, 0, 2, NAN, 0.9f, 0), "finite");
    BAD(kdcl_op_max_norm(tu_ctx, &big, 0, 10, 10, 0.0f), "c = 0");
    BAD(kdcl_op_max_norm(tu_ctx, &big, 0, 10, 10, -1.0f), "> 0");
    BAD(kdcl_op_max_norm(tu_ctx, &big, 0, 10, 10, NAN), "> 0");
    BAD(kdcl_op_max_norm(tu_ctx, &big, 1, 10, 10, 1.0f), "outside");
    BAD(kdcl_op_max_norm(tu_ctx, &big, 0, SIZE_MAX / 2, 3, 1.0f), "overflows");
    BAD(kdcl_op_max_norm(tu_ctx, &m, 0, 2, 2, 1.0f), "F32");
    op = "kdcl_op_sgd_max_norm";
    BAD(kdcl_op_sgd_max_norm(tu_ctx, &big, &big, &big, 0, 10, 10, 0.1f, 0.9f, 0, 0.0f), "c = 0");
    BAD(kdcl_op_sgd_max_norm(tu_ctx, &big, &big, &big, 0, 10, 10, 0.1f, 0.9f, 0, -1.0f), op);
    BAD(kdcl_op_sgd_max_norm(tu_ctx, &big, &big, &big, 0, 10, 10, 0.1f, 0.9f, 0, NAN), "> 0");
    BAD(kdcl_op_sgd_max_norm(tu_ctx, &big, &big, &big, 0, 10, 10, 0.1f, 0.9f, 0, INFINITY),
        "> 0");
    BAD(kdcl_op_sgd_max_norm(tu_ctx, &big, &big, &big, 0, 10, 10, NAN, 0.9f, 0, 1.0f), "finite");
    BAD(kdcl_op_sgd_max_norm(tu_ctx, &big, &big, &big, 0, 10, 10, 0.1f, INFINITY, 0, 1.0f),
        "finite");
    BAD(kdcl_op_sgd_max_norm(tu_ctx, &big, &big, &big, 0, 10, 10, 0.1f, 0.9f, NAN, 1.0f),
        "finite");
    BAD(kdcl_op_sgd_max_norm(tu_ctx, &big, &big, &big, 1, 10, 10, 0.1f, 0.9f, 0, 1.0f), "outside");
    BAD(kdcl_op_sgd_max_norm(tu_ctx, &big, &big, &big, SIZE_MAX, 1, 2, 0.1f, 0.9f, 0, 1.0f),
        "outside");
    BAD(kdcl_op_sgd_max_norm(tu_ctx, &big, &big, &y, 0, 5, 5, 0.1f, 0.9f, 0, 1.0f), "v");
    BAD(kdcl_op_sgd_max_norm(tu_ctx, &big, &b, &big, 0, 5, 5, 0.1f, 0.9f, 0, 1.0f), "g");
    BAD(kdcl_op_sgd_max_norm(tu_ctx, &big, &big, &big, 0, SIZE_MAX / 2, 3, 0.1f, 0.9f, 0, 1.0f),
        "overflows");
    BAD(kdcl_op_sgd_max_norm(tu_ctx, &big, &u8, &big, 0, 2, 2, 0.1f, 0.9f, 0, 1.0f), "U8");
    BAD(kdcl_op_sgd_max_norm(tu_ctx, &m, &big, &big, 0, 2, 2, 0.1f, 0.9f, 0, 1.0f), "F32");
    BAD(kdcl_op_sgd_max_norm(tu_ctx, &big, &big, NULL, 0, 2, 2, 0.1f, 0.9f, 0, 1.0f), "NULL");
    BAD(kdcl_op_u8_to_float(tu_ctx, &u8, &f, 25, 1, 0), "outside");
    BAD(kdcl_op_u8_to_float(tu_ctx, &f, &f, 2, 1, 0), "U8");
    BAD(kdcl_op_jitter(tu_ctx, &u8, &f, 2, 2, 2, 3, -1, 1, 1, 1, 0), "max_shift");
    BAD(kdcl_op_jitter(tu_ctx, &u8, &f, 3, 2, 2, 3, 1, 1, 1, 1, 0), "examples");
    BAD(kdcl_op_jitter(tu_ctx, &u8, &f, 2, 3, 2, 3, 1, 1, 1, 1, 0), "examples");
    BAD(kdcl_op_jitter(tu_ctx, &u8, &f, 2, 0, 2, 3, 1, 1, 1, 1, 0), "zero");
    BAD(kdcl_op_jitter(tu_ctx, &f, &f, 2, 2, 2, 3, 1, 1, 1, 1, 0), "U8");
    BAD(kdcl_op_jitter(tu_ctx, &u8, &u8, 2, 2, 2, 3, 1, 1, 1, 1, 0), "F32");
    /* valid edge cases */
    ck_assert_int_eq(kdcl_op_sgd(tu_ctx, &big, &big, &big, 100, 0, 0.1f, 0.9f, 0), KDCL_OK);
    ck_assert_int_eq(kdcl_op_max_norm(tu_ctx, &big, 100, 0, 5, 1.0f), KDCL_OK);
    ck_assert_int_eq(kdcl_op_sgd_max_norm(tu_ctx, &big, &big, &big, 100, 0, 5, 0.1f, 0.9f, 0, 1.0f),
                     KDCL_OK);
    ck_assert_int_eq(kdcl_op_sgd_max_norm(tu_ctx, &big, &big, &big, 100, 5, 0, 0.1f, 0.9f, 0, 1.0f),
                     KDCL_OK);
    ck_assert_int_eq(kdcl_op_jitter(tu_ctx, &u8, &f, 1, 2, 2, 3, 1, 1, 1, 1, 0), KDCL_OK);
    OK(kdcl_ctx_finish(tu_ctx));
    kdcl_tensor *all[] = {&y, &b, &b5, &m, &m5, &yi, &u8, &f, &big};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) kdcl_tensor_free(tu_ctx, all[i]);
}
END_TEST

static Suite *ops_suite(void)
{
    Suite *s = suite_create("ops");
    TCase *tc = tcase_create("ops");
    tcase_add_unchecked_fixture(tc, tu_ctx_setup, tu_ctx_teardown);
    tcase_set_timeout(tc, 1200);
    tcase_add_test(tc, test_philox_known_answers);
    tcase_add_test(tc, test_dropout_threshold);
    tcase_add_test(tc, test_bad_arguments);
    tcase_add_test(tc, test_forward_vs_reference);
    tcase_add_test(tc, test_masks_vary_with_seed_step_stream);
    tcase_add_test(tc, test_backward_vs_reference);
    tcase_add_test(tc, test_gradient_finite_differences);
    tcase_add_test(tc, test_bias_grad_vs_reference);
    tcase_add_test(tc, test_sgd_vs_reference);
    tcase_add_test(tc, test_max_norm);
    tcase_add_test(tc, test_sgd_max_norm);
    tcase_add_test(tc, test_mlp_sgd_max_norm);
    tcase_add_test(tc, test_u8_to_float);
    tcase_add_test(tc, test_jitter_vs_reference);
    tcase_add_test(tc, test_jitter_shift_properties);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(ops_suite()); }
