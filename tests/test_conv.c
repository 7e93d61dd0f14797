/* 2-D convolution (forward, weight / bias / input gradients), max and average
 * pooling and the geometry checks, against double-precision CPU references
 * written as direct loops.
 *
 * Error bounds follow from the number of float roundings on each path
 * (Higham's gamma_n = n u / (1 - n u), u = 2^-24): a dot product of n terms
 * in any order, with or without fma, is within gamma_n * sum |terms| of the
 * exact value; each further rounded operation adds one to n. "tiny" covers
 * results that underflow to subnormals (flushed to zero on some devices):
 * FLT_MIN per rounded operation. Max pooling moves values without
 * arithmetic and is compared exactly.
 *
 * The convolution takes one of four routes per product (gemm.c): one GEMM
 * per image, one packed GEMM over the batch, (kdcl's narrow-product kernels
 * on, at most 16 output channels, kdcl's im2col) the narrow route:
 * batch-wide products on kdcl's kernels, the weight gradient summed over
 * parts of the batch, or (kdcl's direct kernels on: 3x3 kernels with
 * padding 1 and stride 1 or 2, 5x5 kernels with stride 1; kdcl's im2col
 * algorithm) the direct route: no columns, the weight gradient summed over
 * parts of the batch, the input gradient one sum of OC*KH*KW products (its
 * bound below). Every shape runs with the device's defaults (on CPUs the
 * direct route where it applies, the narrow route for most others), per
 * image (narrow and direct kernels
 * off, default packing), narrow, direct, and with the narrow and direct
 * kernels off and packing set to 1x1x1 tiles (every product takes the
 * packed route; any tiles give a correct product) and to small uneven tiles
 * (the packed route with zero padding). A dot product of n terms summed in
 * any order, in parts or not, has at most n - 1 roundings on the way to the
 * result, so B*P + B covers the weight gradient's parts on both routes.
 *
 * Every convolution test also runs under each conv algorithm (kdcl/conv.h:
 * kdcl's im2col / col2im, CLBlast's, CLBlast's convgemm for the forward, and
 * auto, which is one of those), forced through kdcl_conv_set_algo, with the
 * same error bounds: the algorithms differ in who gathers the columns and in
 * the forward's summation order, not in the number of roundings. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdcl/opencl.h"
#include "kdcl/conv.h"
#include "kdcl/gemm.h"
#include "kdcl/kdcl.h"
#include "core/gemm_internal.h" /* kdcl__gemm_set_small */
#include "testutil.h"

#define OK(call)                                                          \
    do {                                                                  \
        kdcl_status s_ = (call);                                          \
        ck_assert_msg(s_ == KDCL_OK, "%s: %s", #call, kdcl_last_error()); \
    } while (0)

/* The call fails with KDCL_ERR_INVALID_ARG and a message holding each of the given strings. */
#define BAD(call, ...)                                                                \
    do {                                                                              \
        kdcl_status s_ = (call);                                                      \
        ck_assert_msg(s_ == KDCL_ERR_INVALID_ARG, "%s: got %d, want INVALID_ARG", #call, \
                      (int)s_);                                                       \
        const char *want_[] = {__VA_ARGS__};                                          \
        for (size_t i_ = 0; i_ < sizeof want_ / sizeof want_[0]; i_++)                \
            ck_assert_msg(strstr(kdcl_last_error(), want_[i_]),                       \
                          "%s: message '%s' lacks '%s'", #call, kdcl_last_error(),    \
                          want_[i_]);                                                 \
    } while (0)

static double gam(size_t n) { return tu_gamma_n(n); }
static const double TINY = FLT_MIN;

static kdcl_tensor vec(kdcl_elem type, size_t n)
{
    return tu_vec(type, n ? n : 1);
}

/* ---- packing settings: which route the convolution takes ---- */

enum {
    ROUTE_DEFAULT,
    ROUTE_IMAGE,
    ROUTE_NARROW,
    ROUTE_DIRECT,
    ROUTE_WIDE,
    ROUTE_WIDE_PADDED,
    N_ROUTES
};
static const char *route_name[N_ROUTES] = {
    "the device's defaults", "default packing, narrow and direct kernels off (per image)",
    "narrow kernels on (OC <= 16: narrow)", "direct kernels on (3x3, stride 1, padding 1)",
    "packing 1x1x1 (wide)", "packing 4x2x3 (wide, padded)"};

static kdcl_gemm_pack_info saved_pack;
static kdcl_conv_algo saved_algo;

/* Conv algorithms, in the order the tests run them. */
enum { N_ALGOS = 4 };
static const kdcl_conv_algo algos[N_ALGOS] = {KDCL_CONV_KDCL_IM2COL, KDCL_CONV_CLBLAST_IM2COL,
                                              KDCL_CONV_CLBLAST_CONVGEMM, KDCL_CONV_AUTO};

/* "<route>, conv <algo>" of the configuration in force (failure messages). */
static char cfg[128] = "default packing, conv as set";

static void set_route(int r)
{
    kdcl__gemm_set_small(tu_ctx, r == ROUTE_DEFAULT ? tu_gemm_small_default() : r == ROUTE_NARROW);
    kdcl__conv_set_direct(tu_ctx, r == ROUTE_DEFAULT ? -1 : r == ROUTE_DIRECT);
    kdcl_gemm_pack_info p = saved_pack;
    if (r == ROUTE_WIDE || r == ROUTE_WIDE_PADDED) {
        p.enabled = 1;
        p.mwg = r == ROUTE_WIDE ? 1 : 4;
        p.nwg = r == ROUTE_WIDE ? 1 : 2;
        p.kwg = r == ROUTE_WIDE ? 1 : 3;
        p.min_size = 1;
        p.max_waste = 1.35;
    }
    OK(kdcl_gemm_set_packing(tu_ctx, &p));
}

/* Route r with algorithm algos[a]. */
static void set_config(int r, int a)
{
    set_route(r);
    OK(kdcl_conv_set_algo(tu_ctx, algos[a]));
    snprintf(cfg, sizeof cfg, "%s, conv %s", route_name[r], kdcl_conv_algo_name(algos[a]));
    if (algos[a] == KDCL_CONV_AUTO) {
        size_t n = strlen(cfg);
        snprintf(cfg + n, sizeof cfg - n, " = %s",
                 kdcl_conv_algo_name(kdcl_conv_algo_in_force(tu_ctx)));
    }
}

/* Back to the suite's settings: default packing, the algorithm KDCL_CONV gave. */
static void reset_config(void)
{
    set_route(ROUTE_DEFAULT);
    OK(kdcl_conv_set_algo(tu_ctx, saved_algo));
    snprintf(cfg, sizeof cfg, "default packing, conv as set");
}

static void setup(void)
{
    tu_ctx_setup();
    saved_pack = kdcl_gemm_packing(tu_ctx);
    saved_algo = kdcl_conv_get_algo(tu_ctx);
}

/* ---- references ---- */

typedef struct {
    size_t B, C, H, W, OC, KH, KW, SH, SW, PH, PW;
} cshape;

static kdcl_conv_geom geom_of(const cshape *s)
{
    kdcl_conv_geom g;
    OK(kdcl_conv_geom_set(&g, s->C, s->H, s->W, s->OC, s->KH, s->KW, s->SH, s->SW, s->PH,
                          s->PW));
    return g;
}

/* x[b, c, iy, ix] or 0 outside (iy, ix from the output position and tap). */
static int in_at(const kdcl_conv_geom *g, size_t oy, size_t ox, size_t i, size_t j, size_t *iy,
                 size_t *ix)
{
    long y = (long)(oy * g->sh + i) - (long)g->ph, x = (long)(ox * g->sw + j) - (long)g->pw;
    if (y < 0 || x < 0 || y >= (long)g->h || x >= (long)g->w) return 0;
    *iy = (size_t)y;
    *ix = (size_t)x;
    return 1;
}

#define XI(g, b, c, y, x) ((((b) * (g)->c + (c)) * (g)->h + (y)) * (g)->w + (x))
#define YI(g, b, o, y, x) ((((b) * (g)->oc + (o)) * (g)->oh + (y)) * (g)->ow + (x))
#define WI(g, o, c, i, j) ((((o) * (g)->c + (c)) * (g)->kh + (i)) * (g)->kw + (j))

/* y and sum |terms| per output. */
static void ref_forward(const kdcl_conv_geom *g, size_t B, const float *x, const float *w,
                        const float *bias, double *y, double *mag)
{
    for (size_t b = 0; b < B; b++)
        for (size_t o = 0; o < g->oc; o++)
            for (size_t oy = 0; oy < g->oh; oy++)
                for (size_t ox = 0; ox < g->ow; ox++) {
                    double s = bias ? bias[o] : 0, m = bias ? fabs(bias[o]) : 0;
                    for (size_t c = 0; c < g->c; c++)
                        for (size_t i = 0; i < g->kh; i++)
                            for (size_t j = 0; j < g->kw; j++) {
                                size_t iy, ix;
                                if (!in_at(g, oy, ox, i, j, &iy, &ix)) continue;
                                double t = (double)w[WI(g, o, c, i, j)] * x[XI(g, b, c, iy, ix)];
                                s += t;
                                m += fabs(t);
                            }
                    y[YI(g, b, o, oy, ox)] = s;
                    mag[YI(g, b, o, oy, ox)] = m;
                }
}

static void ref_backward(const kdcl_conv_geom *g, size_t B, const float *x, const float *w,
                         const float *dy, double *dw, double *dwm, double *db, double *dbm,
                         double *dx, double *dxm)
{
    size_t nw = g->oc * g->c * g->kh * g->kw, nx = B * g->c * g->h * g->w;
    memset(dw, 0, nw * sizeof *dw);
    memset(dwm, 0, nw * sizeof *dwm);
    memset(dx, 0, nx * sizeof *dx);
    memset(dxm, 0, nx * sizeof *dxm);
    for (size_t o = 0; o < g->oc; o++) db[o] = dbm[o] = 0;
    for (size_t b = 0; b < B; b++)
        for (size_t o = 0; o < g->oc; o++)
            for (size_t oy = 0; oy < g->oh; oy++)
                for (size_t ox = 0; ox < g->ow; ox++) {
                    double d = dy[YI(g, b, o, oy, ox)];
                    db[o] += d;
                    dbm[o] += fabs(d);
                    for (size_t c = 0; c < g->c; c++)
                        for (size_t i = 0; i < g->kh; i++)
                            for (size_t j = 0; j < g->kw; j++) {
                                size_t iy, ix;
                                if (!in_at(g, oy, ox, i, j, &iy, &ix)) continue;
                                size_t wi = WI(g, o, c, i, j), xi = XI(g, b, c, iy, ix);
                                dw[wi] += d * x[xi];
                                dwm[wi] += fabs(d * x[xi]);
                                dx[xi] += d * w[wi];
                                dxm[xi] += fabs(d * w[wi]);
                            }
                }
}

/* |got - want| <= bound for n values; the message names what and where. */
static void near(const char *what, const cshape *s, const char *config, const float *got,
                 const double *want, const double *mag, double gamma_k, size_t terms, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        double bound = gamma_k * mag[i] + TINY * (double)terms;
        double err = fabs((double)got[i] - want[i]);
        ck_assert_msg(err <= bound,
                      "%s [%s] B=%zu C=%zu %zux%zu OC=%zu k%zux%zu s%zux%zu p%zux%zu: element "
                      "%zu = %.9g, want %.9g (err %.3g > bound %.3g)",
                      what, config, s->B, s->C, s->H, s->W, s->OC, s->KH, s->KW,
                      s->SH, s->SW, s->PH, s->PW, i, (double)got[i], want[i], err, bound);
    }
}

/* ---- convolution against the reference ---- */

static const cshape conv_shapes[] = {
    /* B  C   H   W  OC KH KW SH SW PH PW */
    {1, 1, 5, 7, 1, 1, 1, 1, 1, 0, 0},   /* 1x1, everything single */
    {7, 3, 9, 6, 4, 3, 3, 1, 1, 1, 1},   /* 3x3 pad 1 */
    {7, 17, 8, 11, 9, 3, 3, 2, 2, 1, 1}, /* stride 2, C = 17 */
    {1, 3, 10, 7, 9, 5, 5, 2, 2, 2, 2},  /* 5x5 pad 2 stride 2, batch 1 */
    {7, 1, 12, 9, 4, 5, 5, 1, 1, 0, 0},  /* 5x5 no padding */
    {7, 17, 7, 5, 1, 3, 1, 2, 1, 1, 0},  /* 3x1, stride 2x1, padding 1x0, OC = 1 */
    {1, 17, 6, 13, 4, 1, 1, 2, 2, 0, 0}, /* 1x1 stride 2 */
    {7, 3, 5, 5, 9, 5, 5, 1, 1, 2, 2},   /* kernel as large as the input */
    {7, 1, 3, 4, 4, 3, 3, 2, 2, 2, 2},   /* padding 2 on a 3x3 kernel */
    {7, 3, 11, 4, 9, 1, 3, 1, 2, 0, 1},  /* 1x3, stride 1x2, padding 0x1 */
    /* 3x3, stride 1, padding 1 (the direct route): */
    {7, 17, 3, 19, 20, 3, 3, 1, 1, 1, 1}, /* rows of 19 (one partial segment), OC = 16 + 4 */
    {2, 16, 7, 16, 33, 3, 3, 1, 1, 1, 1}, /* rows of 16, odd H, OC = 2*16 + 1 */
    {1, 20, 5, 8, 16, 3, 3, 1, 1, 1, 1},  /* pairs of rows of 8, odd H, batch 1 */
    /* 3x3, stride 2, padding 1 (the direct route): */
    {3, 17, 9, 19, 18, 3, 3, 2, 2, 1, 1}, /* output rows of 10 (partial), dx rows of 19 */
    {2, 5, 16, 16, 20, 3, 3, 2, 2, 1, 1}, /* pairs of output rows of 8 */
    {1, 3, 7, 5, 16, 3, 3, 2, 2, 1, 1},   /* pairs of output rows of 3, odd OH */
    /* 5x5, stride 1 (the direct route; also the two 5x5 shapes above): */
    {3, 6, 14, 14, 16, 5, 5, 1, 1, 0, 0},  /* LeNet-5's second convolution */
    {2, 17, 9, 21, 5, 5, 5, 1, 1, 3, 3},   /* padding 3: output rows of 23 */
};

static void run_conv(const cshape *s, int route, int algo, int with_bias)
{
    kdcl_conv_geom g = geom_of(s);
    const size_t B = s->B, nx = B * g.c * g.h * g.w, ny = B * g.oc * g.oh * g.ow;
    const size_t K = g.c * g.kh * g.kw, nw = g.oc * K, P = g.oh * g.ow;
    float *x = malloc(nx * 4), *w = malloc(nw * 4), *bias = malloc(g.oc * 4), *dy = malloc(ny * 4);
    float *y = malloc(ny * 4), *dw = malloc(nw * 4), *db = malloc(g.oc * 4), *dx = malloc(nx * 4);
    double *ry = malloc(ny * 8), *rym = malloc(ny * 8), *rdw = malloc(nw * 8),
           *rdwm = malloc(nw * 8), *rdb = malloc(g.oc * 8), *rdbm = malloc(g.oc * 8),
           *rdx = malloc(nx * 8), *rdxm = malloc(nx * 8);
    ck_assert(x && w && bias && dy && y && dw && db && dx && ry && rym && rdw && rdwm && rdb &&
              rdbm && rdx && rdxm);
    uint64_t seed = s->C * 1000 + s->H * 100 + s->KH * 10 + s->B;
    tu_fill_uniform(x, nx, -1, 1, seed);
    tu_fill_uniform(w, nw, -1, 1, seed + 1);
    tu_fill_uniform(bias, g.oc, -1, 1, seed + 2);
    tu_fill_uniform(dy, ny, -1, 1, seed + 3);

    kdcl_tensor tx = vec(KDCL_F32, nx), tw = vec(KDCL_F32, nw), tb = vec(KDCL_F32, g.oc),
                ty = vec(KDCL_F32, ny), tdy = vec(KDCL_F32, ny), tdw = vec(KDCL_F32, nw),
                tdb = vec(KDCL_F32, g.oc), tdx = vec(KDCL_F32, nx),
                tws = vec(KDCL_F32, kdcl_conv2d_workspace(&g, B));
    tu_put(&tx, x);
    tu_put(&tw, w);
    tu_put(&tb, bias);
    tu_put(&tdy, dy);
    /* outputs start as garbage: every op overwrites */
    OK(kdcl_tensor_fill(tu_ctx, &ty, NAN));
    OK(kdcl_tensor_fill(tu_ctx, &tdw, NAN));
    OK(kdcl_tensor_fill(tu_ctx, &tdb, NAN));
    OK(kdcl_tensor_fill(tu_ctx, &tdx, NAN));
    OK(kdcl_tensor_fill(tu_ctx, &tws, NAN));

    set_config(route, algo);
    OK(kdcl_conv2d_forward(tu_ctx, &g, B, &tx, &tw, with_bias ? &tb : NULL, &ty, &tws));
    OK(kdcl_conv2d_backward(tu_ctx, &g, B, &tx, &tw, &tdy, &tdw, with_bias ? &tdb : NULL, &tdx,
                            &tws));
    tu_get(&ty, y);
    tu_get(&tdw, dw);
    tu_get(&tdb, db);
    tu_get(&tdx, dx);

    ref_forward(&g, B, x, w, with_bias ? bias : NULL, ry, rym);
    ref_backward(&g, B, x, w, dy, rdw, rdwm, rdb, rdbm, rdx, rdxm);
    /* y: K products summed (+ the bias: one more rounding) */
    near("forward y", s, cfg, y, ry, rym, gam(K + 1), K + 1, ny);
    /* dW: B*P products; per image P then B partials (P + B - 1 roundings) or
     * one sum of B*P: gamma_{B*P + B} covers both */
    near("weight gradient", s, cfg, dw, rdw, rdwm, gam(B * P + B), B * P + B, nw);
    /* dx: OC products per column entry, then up to KH*KW entries gathered;
     * on the direct route one sum of the OC*KH*KW products */
    const size_t dxn = kdcl__conv_direct(tu_ctx, &g, 2) ? g.oc * g.kh * g.kw : g.oc + g.kh * g.kw;
    near("input gradient", s, cfg, dx, rdx, rdxm, gam(dxn), dxn, nx);
    if (with_bias)
        near("bias gradient", s, cfg, db, rdb, rdbm, gam(B * P), B * P, g.oc);
    else
        for (size_t o = 0; o < g.oc; o++) ck_assert_msg(isnan(db[o]), "db written though NULL");

    /* again without dx: dW and db alone; dx untouched */
    OK(kdcl_tensor_fill(tu_ctx, &tdx, 7.0f));
    OK(kdcl_tensor_fill(tu_ctx, &tdw, NAN));
    OK(kdcl_conv2d_backward(tu_ctx, &g, B, &tx, &tw, &tdy, &tdw, NULL, NULL, &tws));
    tu_get(&tdw, dw);
    tu_get(&tdx, dx);
    near("weight gradient (no dx)", s, cfg, dw, rdw, rdwm, gam(B * P + B), B * P + B, nw);
    for (size_t i = 0; i < nx; i++) ck_assert_msg(dx[i] == 7.0f, "dx written though NULL");

    reset_config();
    kdcl_tensor *ts[] = {&tx, &tw, &tb, &ty, &tdy, &tdw, &tdb, &tdx, &tws};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) kdcl_tensor_free(tu_ctx, ts[i]);
    free(x), free(w), free(bias), free(dy), free(y), free(dw), free(db), free(dx);
    free(ry), free(rym), free(rdw), free(rdwm), free(rdb), free(rdbm), free(rdx), free(rdxm);
}

START_TEST(test_conv_vs_reference)
{
    const int a = _i % N_ALGOS, r = (_i / N_ALGOS) % N_ROUTES, shape = _i / (N_ALGOS * N_ROUTES);
    run_conv(&conv_shapes[shape], r, a, shape % 3 != 2);
}
END_TEST

/* A LeNet-size batch and ResNet-size layers at kdcl's own settings, where
 * the device decides the route (on CPUs the direct route for all four: 1 ->
 * 6 at 5x5, the 3x3 layers at stride 1 and 2; the weight gradient of 2 -> 16
 * at batch 13 in 4 parts of 4, 4, 4 and 1 images), and 2 -> 16 at batch 13
 * on the narrow route, in 6 uneven parts of the 20800 positions. */
START_TEST(test_conv_realistic)
{
    static const cshape big[] = {{16, 1, 28, 28, 6, 5, 5, 1, 1, 2, 2},
                                 {13, 2, 40, 40, 16, 3, 3, 1, 1, 1, 1},
                                 {13, 2, 40, 40, 16, 3, 3, 1, 1, 1, 1},
                                 {8, 32, 16, 16, 64, 3, 3, 1, 1, 1, 1},
                                 {8, 32, 16, 16, 64, 3, 3, 2, 2, 1, 1}};
    run_conv(&big[_i / N_ALGOS], _i / N_ALGOS == 2 ? ROUTE_NARROW : ROUTE_DEFAULT, _i % N_ALGOS, 1);
}
END_TEST

/* With w[o] the indicator of weight o (OC = K = C*KH*KW), y[b, o] is row o of
 * the column matrix: the im2col layout (row q = (c*KH + i)*KW + j, padding 0)
 * checked value for value on every route and algorithm (CLBlast's columns
 * included: its im2col folds the batch into the channels). */
START_TEST(test_column_layout)
{
    const cshape s = {3, 2, 5, 6, 18, 3, 3, 2, 1, 1, 1};
    kdcl_conv_geom g = geom_of(&s);
    const size_t K = g.c * g.kh * g.kw, nx = s.B * g.c * g.h * g.w, ny = s.B * K * g.oh * g.ow;
    float *x = malloc(nx * 4), *w = calloc(K * K, 4), *y = malloc(ny * 4);
    ck_assert(x && w && y);
    for (size_t i = 0; i < nx; i++) x[i] = (float)(i + 1); /* distinct, exact */
    for (size_t q = 0; q < K; q++) w[q * K + q] = 1.0f;
    kdcl_tensor tx = vec(KDCL_F32, nx), tw = vec(KDCL_F32, K * K), ty = vec(KDCL_F32, ny),
                tws = vec(KDCL_F32, kdcl_conv2d_workspace(&g, s.B));
    tu_put(&tx, x);
    tu_put(&tw, w);
    for (int ra = 0; ra < N_ROUTES * N_ALGOS; ra++) {
        set_config(ra / N_ALGOS, ra % N_ALGOS);
        OK(kdcl_tensor_fill(tu_ctx, &ty, NAN));
        OK(kdcl_conv2d_forward(tu_ctx, &g, s.B, &tx, &tw, NULL, &ty, &tws));
        tu_get(&ty, y);
        for (size_t b = 0; b < s.B; b++)
            for (size_t c = 0; c < g.c; c++)
                for (size_t i = 0; i < g.kh; i++)
                    for (size_t j = 0; j < g.kw; j++)
                        for (size_t oy = 0; oy < g.oh; oy++)
                            for (size_t ox = 0; ox < g.ow; ox++) {
                                size_t q = (c * g.kh + i) * g.kw + j, iy, ix;
                                float want = in_at(&g, oy, ox, i, j, &iy, &ix)
                                                 ? x[XI(&g, b, c, iy, ix)]
                                                 : 0.0f;
                                float got = y[YI(&g, b, q, oy, ox)];
                                ck_assert_msg(got == want,
                                              "[%s] b=%zu row q=%zu (c=%zu i=%zu j=%zu) at "
                                              "(%zu, %zu): %g, want %g",
                                              cfg, b, q, c, i, j, oy, ox, (double)got,
                                              (double)want);
                            }
    }
    reset_config();
    kdcl_tensor_free(tu_ctx, &tx), kdcl_tensor_free(tu_ctx, &tw), kdcl_tensor_free(tu_ctx, &ty);
    kdcl_tensor_free(tu_ctx, &tws);
    free(x), free(w), free(y);
}
END_TEST

/* Same inputs, same bits: no atomics, fixed summation orders (forward and
 * backward, every route and algorithm). */
START_TEST(test_conv_deterministic)
{
    const cshape s = {7, 17, 8, 11, 9, 3, 3, 2, 2, 1, 1};
    kdcl_conv_geom g = geom_of(&s);
    const size_t nx = s.B * g.c * g.h * g.w, ny = s.B * g.oc * g.oh * g.ow,
                 nw = g.oc * g.c * g.kh * g.kw;
    float *h = malloc(nx * 4), *a[2][4];
    ck_assert(h);
    kdcl_tensor tx = vec(KDCL_F32, nx), tw = vec(KDCL_F32, nw), tdy = vec(KDCL_F32, ny),
                tdw = vec(KDCL_F32, nw), tdb = vec(KDCL_F32, g.oc), tdx = vec(KDCL_F32, nx),
                ty = vec(KDCL_F32, ny), tb = vec(KDCL_F32, g.oc),
                tws = vec(KDCL_F32, kdcl_conv2d_workspace(&g, s.B));
    tu_fill_uniform(h, g.oc, -1, 1, 4);
    tu_put(&tb, h);
    tu_fill_uniform(h, nx, -1, 1, 5);
    tu_put(&tx, h);
    tu_fill_uniform(h, nw, -1, 1, 6);
    tu_put(&tw, h);
    tu_fill_uniform(h, ny, -1, 1, 7);
    tu_put(&tdy, h);
    for (int ra = 0; ra < N_ROUTES * N_ALGOS; ra++) {
        set_config(ra / N_ALGOS, ra % N_ALGOS);
        for (int k = 0; k < 2; k++) {
            OK(kdcl_tensor_fill(tu_ctx, &tws, (float)k)); /* different scratch contents */
            OK(kdcl_tensor_fill(tu_ctx, &tdx, (float)k)); /* and outputs */
            OK(kdcl_tensor_fill(tu_ctx, &ty, (float)k));
            OK(kdcl_conv2d_forward(tu_ctx, &g, s.B, &tx, &tw, &tb, &ty, &tws));
            OK(kdcl_conv2d_backward(tu_ctx, &g, s.B, &tx, &tw, &tdy, &tdw, &tdb, &tdx, &tws));
            a[k][0] = malloc(nw * 4), a[k][1] = malloc(g.oc * 4), a[k][2] = malloc(nx * 4);
            a[k][3] = malloc(ny * 4);
            tu_get(&tdw, a[k][0]);
            tu_get(&tdb, a[k][1]);
            tu_get(&tdx, a[k][2]);
            tu_get(&ty, a[k][3]);
        }
        ck_assert_msg(!memcmp(a[0][0], a[1][0], nw * 4), "[%s] dw differs", cfg);
        ck_assert_msg(!memcmp(a[0][1], a[1][1], g.oc * 4), "[%s] db differs", cfg);
        ck_assert_msg(!memcmp(a[0][2], a[1][2], nx * 4), "[%s] dx differs", cfg);
        ck_assert_msg(!memcmp(a[0][3], a[1][3], ny * 4), "[%s] y differs", cfg);
        for (int k = 0; k < 2; k++)
            for (int t = 0; t < 4; t++) free(a[k][t]);
    }
    reset_config();
    kdcl_tensor *ts[] = {&tx, &tw, &tdy, &tdw, &tdb, &tdx, &ty, &tb, &tws};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) kdcl_tensor_free(tu_ctx, ts[i]);
    free(h);
}
END_TEST

/* ---- geometry ---- */

START_TEST(test_geometry)
{
    kdcl_conv_geom g;
    OK(kdcl_conv_geom_set(&g, 3, 32, 30, 16, 5, 3, 2, 1, 2, 1));
    ck_assert_uint_eq(g.oh, (32 + 4 - 5) / 2 + 1);
    ck_assert_uint_eq(g.ow, (30 + 2 - 3) / 1 + 1);
    ck_assert_uint_eq(g.c, 3);
    ck_assert_uint_eq(g.oc, 16);
    ck_assert_uint_eq(g.kw, 3);
    /* floor: 7 - 2 = 5, / 2 -> 2, + 1 = 3 */
    OK(kdcl_conv_geom_set(&g, 1, 7, 7, 1, 2, 2, 2, 2, 0, 0));
    ck_assert_uint_eq(g.oh, 3);
    /* kernel exactly the padded input: one output */
    OK(kdcl_conv_geom_set(&g, 1, 3, 1, 1, 5, 3, 1, 1, 1, 1));
    ck_assert_uint_eq(g.oh, 1);
    ck_assert_uint_eq(g.ow, 1);

    BAD(kdcl_conv_geom_set(&g, 1, 2, 2, 1, 5, 5, 1, 1, 0, 0), "kdcl_conv_geom_set",
        "kernel 5x5 does not fit a 2x2 input with padding 0");
    ck_assert_uint_eq(g.oh, 0); /* cleared on failure */
    BAD(kdcl_conv_geom_set(&g, 1, 4, 8, 1, 7, 3, 1, 1, 1, 1), "kernel 7x3 does not fit a 4x8",
        "padding 1");
    BAD(kdcl_conv_geom_set(&g, 1, 8, 8, 1, 3, 3, 1, 1, 3, 0), "padding 3x0",
        "smaller than the kernel 3x3");
    BAD(kdcl_conv_geom_set(&g, 1, 8, 8, 1, 3, 3, 1, 1, 1, 5), "padding 1x5");
    BAD(kdcl_conv_geom_set(&g, 0, 8, 8, 1, 3, 3, 1, 1, 1, 1), "every size must be >= 1",
        "input 0x8x8");
    BAD(kdcl_conv_geom_set(&g, 1, 8, 0, 1, 3, 3, 1, 1, 1, 1), "input 1x8x0");
    BAD(kdcl_conv_geom_set(&g, 1, 8, 8, 0, 3, 3, 1, 1, 1, 1), "0 outputs");
    BAD(kdcl_conv_geom_set(&g, 1, 8, 8, 1, 0, 3, 1, 1, 0, 0), "kernel 0x3");
    BAD(kdcl_conv_geom_set(&g, 1, 8, 8, 1, 3, 3, 0, 1, 1, 1), "stride 0x1");
    BAD(kdcl_conv_geom_set(&g, (size_t)1 << 31, 1, 1, 1, 1, 1, 1, 1, 0, 0), "2^31");
    /* products: C*H*W = 2^31 */
    BAD(kdcl_conv_geom_set(&g, (size_t)1 << 20, 1 << 11, 1, 1, 1, 1, 1, 1, 0, 0), "below 2^31");
    /* C*H*W = 2^30 but C*KH*KW*OH*OW = 9 * 2^30 */
    BAD(kdcl_conv_geom_set(&g, 1 << 10, 1 << 10, 1 << 10, 1, 3, 3, 1, 1, 1, 1), "below 2^31");
    BAD(kdcl_conv_geom_set(NULL, 1, 8, 8, 1, 3, 3, 1, 1, 1, 1), "g is NULL");

    OK(kdcl_conv_geom_set(&g, 1, 8, 8, 1, 3, 3, 1, 1, 1, 1));
    ck_assert_uint_eq(kdcl_conv2d_workspace(&g, 2), 2 * 9 * 64 + 2 * 1 * 64);
    ck_assert_uint_eq(kdcl_conv2d_workspace(&g, 0), 0);
    ck_assert_uint_eq(kdcl_conv2d_workspace(NULL, 2), 0);
    ck_assert_uint_eq(kdcl_conv2d_workspace(&g, SIZE_MAX), SIZE_MAX);
}
END_TEST

START_TEST(test_conv_bad_arguments)
{
    kdcl_conv_geom g;
    OK(kdcl_conv_geom_set(&g, 3, 6, 5, 4, 3, 3, 1, 1, 1, 1));
    const size_t B = 2, nx = B * 3 * 30, ny = B * 4 * 30, nw = 4 * 27;
    set_config(ROUTE_DEFAULT, _i); /* the checks come before any algorithm runs */
    kdcl_tensor x = vec(KDCL_F32, nx), w = vec(KDCL_F32, nw), b = vec(KDCL_F32, 4),
                y = vec(KDCL_F32, ny), ws = vec(KDCL_F32, kdcl_conv2d_workspace(&g, B)),
                small = vec(KDCL_F32, 7), wi = vec(KDCL_I32, nx), dw = vec(KDCL_F32, nw),
                dx = vec(KDCL_F32, nx);
    const char *F = "kdcl_conv2d_forward", *R = "kdcl_conv2d_backward";
    OK(kdcl_conv2d_forward(tu_ctx, &g, B, &x, &w, &b, &y, &ws));
    BAD(kdcl_conv2d_forward(tu_ctx, NULL, B, &x, &w, &b, &y, &ws), F, "geometry is NULL");
    BAD(kdcl_conv2d_forward(tu_ctx, &g, 0, &x, &w, &b, &y, &ws), F, "batch must be >= 1");
    BAD(kdcl_conv2d_forward(tu_ctx, &g, 3, &x, &w, &b, &y, &ws), F,
        "x must hold at least batch*C*H*W = 3*3*6*5 = 270 F32 elements", "[180] F32");
    BAD(kdcl_conv2d_forward(tu_ctx, &g, B, &wi, &w, &b, &y, &ws), F, "x must be F32");
    BAD(kdcl_conv2d_forward(tu_ctx, &g, B, &x, &small, &b, &y, &ws), F,
        "w must hold OC*C*KH*KW = 4*3*3*3 = 108", "[7] F32");
    BAD(kdcl_conv2d_forward(tu_ctx, &g, B, &x, &w, &small, &y, &ws), F, "bias must hold OC = 4");
    BAD(kdcl_conv2d_forward(tu_ctx, &g, B, &x, &w, &b, &small, &ws), F,
        "y must hold at least batch*OC*OH*OW = 2*4*6*5 = 240");
    BAD(kdcl_conv2d_forward(tu_ctx, &g, B, &x, &w, &b, &y, &small), F,
        "ws must hold at least kdcl_conv2d_workspace(g, 2)");
    BAD(kdcl_conv2d_forward(tu_ctx, &g, B, &x, &w, &b, &ws, &ws), F, "y and ws share a buffer");
    BAD(kdcl_conv2d_forward(tu_ctx, &g, B, &x, &w, &b, &y, NULL), F, "ws is NULL");
    BAD(kdcl_conv2d_forward(NULL, &g, B, &x, &w, &b, &y, &ws), F, "ctx is NULL");
    kdcl_conv_geom bad = g;
    bad.oh = 5; /* not what the sizes give */
    BAD(kdcl_conv2d_forward(tu_ctx, &bad, B, &x, &w, &b, &y, &ws), F, "output 5x5", "give 6x5");
    bad = g;
    bad.ph = 3;
    BAD(kdcl_conv2d_forward(tu_ctx, &bad, B, &x, &w, &b, &y, &ws), F, "padding 3x1");
    BAD(kdcl_conv2d_forward(tu_ctx, &g, (size_t)1 << 30, &x, &w, &b, &y, &ws), F, "2^31");

    OK(kdcl_conv2d_backward(tu_ctx, &g, B, &x, &w, &y, &dw, &b, &dx, &ws));
    BAD(kdcl_conv2d_backward(tu_ctx, &g, B, &x, &w, &small, &dw, &b, &dx, &ws), R,
        "dy must hold at least batch*OC*OH*OW");
    BAD(kdcl_conv2d_backward(tu_ctx, &g, B, &x, &w, &y, &small, &b, &dx, &ws), R,
        "dw must hold OC*C*KH*KW");
    BAD(kdcl_conv2d_backward(tu_ctx, &g, B, &x, &w, &y, &dw, &small, &dx, &ws), R,
        "db must hold OC = 4");
    BAD(kdcl_conv2d_backward(tu_ctx, &g, B, &x, &w, &y, &dw, &b, &small, &ws), R,
        "dx must hold at least batch*C*H*W");
    BAD(kdcl_conv2d_backward(tu_ctx, &g, B, &x, &w, &y, &dw, &b, &x, &ws), R,
        "dx and x share a buffer");
    BAD(kdcl_conv2d_backward(tu_ctx, &g, B, &x, &w, &y, &w, &b, &dx, &ws), R,
        "dw and w share a buffer");
    BAD(kdcl_conv2d_backward(tu_ctx, &g, B, &x, &w, &ws, &dw, &b, &dx, &ws), R,
        "ws and dy share a buffer");
    BAD(kdcl_conv2d_backward(tu_ctx, &g, B, &x, &w, &y, &dw, &b, &dx, &small), R,
        "ws must hold at least");
    reset_config();
    kdcl_tensor *ts[] = {&x, &w, &b, &y, &ws, &small, &wi, &dw, &dx};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) kdcl_tensor_free(tu_ctx, ts[i]);
}
END_TEST

/* The algorithm setting: setter, getter, AUTO's resolution by device type,
 * names, and KDCL_CONV read when the context's GEMM layer is set up (bad
 * values fail its first use). */
START_TEST(test_conv_algo_setting)
{
    ck_assert_str_eq(kdcl_conv_algo_name(KDCL_CONV_AUTO), "auto");
    ck_assert_str_eq(kdcl_conv_algo_name(KDCL_CONV_KDCL_IM2COL), "kdcl");
    ck_assert_str_eq(kdcl_conv_algo_name(KDCL_CONV_CLBLAST_IM2COL), "clblast");
    ck_assert_str_eq(kdcl_conv_algo_name(KDCL_CONV_CLBLAST_CONVGEMM), "convgemm");
    ck_assert_ptr_null(kdcl_conv_algo_name((kdcl_conv_algo)4));
    for (int a = 0; a < N_ALGOS; a++) {
        OK(kdcl_conv_set_algo(tu_ctx, algos[a]));
        ck_assert_int_eq(kdcl_conv_get_algo(tu_ctx), algos[a]);
        if (algos[a] != KDCL_CONV_AUTO)
            ck_assert_int_eq(kdcl_conv_algo_in_force(tu_ctx), algos[a]);
    }
    OK(kdcl_conv_set_algo(tu_ctx, KDCL_CONV_AUTO));
    int cpu = (kdcl_ctx_device(tu_ctx)->type & CL_DEVICE_TYPE_CPU) != 0;
    ck_assert_int_eq(kdcl_conv_algo_in_force(tu_ctx),
                     cpu ? KDCL_CONV_KDCL_IM2COL : KDCL_CONV_CLBLAST_IM2COL);
    OK(kdcl_conv_set_algo(tu_ctx, KDCL_CONV_CLBLAST_IM2COL));
    BAD(kdcl_conv_set_algo(tu_ctx, (kdcl_conv_algo)7), "kdcl_conv_set_algo",
        "unknown algorithm 7");
    ck_assert_int_eq(kdcl_conv_get_algo(tu_ctx), KDCL_CONV_CLBLAST_IM2COL); /* unchanged */
    BAD(kdcl_conv_set_algo(NULL, KDCL_CONV_AUTO), "ctx is NULL");
    reset_config();

    const char *old = getenv("KDCL_CONV");
    char saved[64] = "";
    if (old) snprintf(saved, sizeof saved, "%s", old);
    const char *vals[] = {"", "auto", "kdcl", "clblast", "convgemm"};
    const kdcl_conv_algo want[] = {KDCL_CONV_AUTO, KDCL_CONV_AUTO, KDCL_CONV_KDCL_IM2COL,
                                   KDCL_CONV_CLBLAST_IM2COL, KDCL_CONV_CLBLAST_CONVGEMM};
    const char *spec = getenv("KDCL_DEVICE");
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        setenv("KDCL_CONV", vals[i], 1);
        kdcl_ctx *c = NULL;
        OK(kdcl_ctx_create(spec, &c));
        ck_assert_msg(kdcl_conv_get_algo(c) == want[i], "KDCL_CONV=%s gave %s", vals[i],
                      kdcl_conv_algo_name(kdcl_conv_get_algo(c)));
        kdcl_ctx_destroy(c);
    }
    setenv("KDCL_CONV", "CLBlast", 1); /* case matters */
    kdcl_ctx *c = NULL;
    kdcl_status st = kdcl_ctx_create(spec, &c);
    /* the GEMM layer reads KDCL_CONV when it is set up, on first use: that
     * use fails, and so does every later one */
    kdcl_status st1 = c ? kdcl_gemm_apply_tuning(c, NULL) : KDCL_OK;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", kdcl_last_error());
    kdcl_status st2 = c ? kdcl_conv_set_algo(c, KDCL_CONV_AUTO) : KDCL_OK;
    const char *tuning = c ? kdcl_ctx_gemm_tuning(c) : "";
    int tuning_says = strstr(tuning, "KDCL_CONV=CLBlast") != NULL;
    kdcl_ctx_destroy(c);
    if (old)
        setenv("KDCL_CONV", saved, 1);
    else
        unsetenv("KDCL_CONV");
    ck_assert_int_eq(st, KDCL_OK);
    ck_assert_int_eq(st1, KDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(st2, KDCL_ERR_INVALID_ARG);
    ck_assert_msg(tuning_says, "tuning string does not give the reason");
    ck_assert_msg(strstr(msg, "KDCL_CONV=CLBlast: expected auto, kdcl, clblast or convgemm"),
                  "message: %s", msg);
}
END_TEST

/* kdcl_conv_direct_on: on by default on CPU devices under kdcl's algorithm,
 * off under CLBlast's, following kdcl__conv_set_direct and KDCL_CONV_DIRECT
 * (read by a new context's GEMM state). */
START_TEST(test_conv_direct_setting)
{
    const char *env = getenv("KDCL_CONV_DIRECT");
    const int dflt = tu_cpu_unless_env("KDCL_CONV_DIRECT");
    OK(kdcl_conv_set_algo(tu_ctx, KDCL_CONV_KDCL_IM2COL));
    kdcl__conv_set_direct(tu_ctx, -1);
    ck_assert_int_eq(kdcl_conv_direct_on(tu_ctx), dflt);
    kdcl__conv_set_direct(tu_ctx, 1);
    ck_assert_int_eq(kdcl_conv_direct_on(tu_ctx), 1);
    OK(kdcl_conv_set_algo(tu_ctx, KDCL_CONV_CLBLAST_IM2COL));
    ck_assert_int_eq(kdcl_conv_direct_on(tu_ctx), 0);
    kdcl__conv_set_direct(tu_ctx, -1);
    reset_config();
    ck_assert_int_eq(kdcl_conv_direct_on(NULL), 0);

    char saved[64] = "";
    if (env) snprintf(saved, sizeof saved, "%s", env);
    const char *vals[] = {"0", "1"};
    for (int i = 0; i < 2; i++) {
        setenv("KDCL_CONV_DIRECT", vals[i], 1);
        kdcl_ctx *c = NULL;
        OK(kdcl_ctx_create(getenv("KDCL_DEVICE"), &c));
        OK(kdcl_conv_set_algo(c, KDCL_CONV_KDCL_IM2COL));
        const int on = kdcl_conv_direct_on(c);
        kdcl_ctx_destroy(c);
        ck_assert_int_eq(on, i);
    }
    if (env)
        setenv("KDCL_CONV_DIRECT", saved, 1);
    else
        unsetenv("KDCL_CONV_DIRECT");
}
END_TEST

/* ---- pooling ---- */

typedef struct {
    size_t B, C, H, W, KH, KW, SH, SW, PH, PW;
} pshape;

static const pshape pool_shapes[] = {
    /* B  C   H   W KH KW SH SW PH PW */
    {7, 3, 8, 6, 2, 2, 2, 2, 0, 0},     /* LeNet's 2x2 / 2 */
    {7, 17, 9, 7, 3, 3, 2, 2, 1, 1},    /* overlapping 3x3 / 2, padding 1, floor */
    {1, 1, 5, 9, 3, 1, 1, 1, 1, 0},     /* 3x1 stride 1, batch 1 */
    {7, 3, 7, 5, 7, 5, 1, 1, 0, 0},     /* global pooling */
    {1, 3, 6, 6, 1, 1, 2, 2, 0, 0},     /* kernel 1, stride 2 */
    {7, 1, 10, 11, 5, 5, 3, 2, 2, 2},   /* 5x5, stride 3x2, padding 2 */
    {7, 3, 4, 5, 3, 3, 1, 2, 2, 1},     /* padding 2 on a 3x3 window */
    /* tiled windows (no padding, no overlap: cl/pool.cl's *_tiled kernels),
     * with rows and columns that no window covers */
    {3, 2, 9, 7, 2, 2, 2, 2, 0, 0},     /* 2x2 / 2, last row and column uncovered */
    {2, 3, 11, 10, 3, 3, 3, 3, 0, 0},   /* 3x3 / 3, two rows and one column uncovered */
    {2, 2, 7, 9, 5, 2, 3, 2, 0, 0},     /* one window row (stride 3 unused), 2 / 2 */
    {2, 2, 6, 7, 1, 3, 1, 3, 0, 0},     /* 1x3 / 1x3 */
    {3, 5, 28, 28, 2, 2, 2, 2, 0, 0},   /* cnn-small's first pooling */
};

static kdcl_conv_geom pgeom(const pshape *s)
{
    kdcl_conv_geom g;
    OK(kdcl_conv_geom_set(&g, s->C, s->H, s->W, s->C, s->KH, s->KW, s->SH, s->SW, s->PH, s->PW));
    return g;
}

/* Reference max pooling: first maximum in row-major window order over the
 * input elements (padding never wins), a NaN above everything. */
static void ref_maxpool(const kdcl_conv_geom *g, size_t B, const float *x, float *y, int *am)
{
    for (size_t bc = 0; bc < B * g->c; bc++)
        for (size_t oy = 0; oy < g->oh; oy++)
            for (size_t ox = 0; ox < g->ow; ox++) {
                int found = 0, best = -1;
                float m = 0;
                for (size_t i = 0; i < g->kh; i++)
                    for (size_t j = 0; j < g->kw; j++) {
                        size_t iy, ix;
                        if (!in_at(g, oy, ox, i, j, &iy, &ix)) continue;
                        float v = x[(bc * g->h + iy) * g->w + ix];
                        if (!found || v > m || (isnan(v) && !isnan(m))) {
                            found = 1;
                            m = v;
                            best = (int)(iy * g->w + ix);
                        }
                    }
                ck_assert(found);
                y[(bc * g->oh + oy) * g->ow + ox] = m;
                am[(bc * g->oh + oy) * g->ow + ox] = best;
            }
}

/* quantized: values from {-2, ..., 2} so windows hold ties */
static void pool_input(float *x, size_t n, uint64_t seed, int quantized)
{
    tu_fill_uniform(x, n, -1, 1, seed);
    if (quantized)
        for (size_t i = 0; i < n; i++) x[i] = roundf(x[i] * 2.4f);
}

static void run_maxpool(const pshape *s, int quantized)
{
    kdcl_conv_geom g = pgeom(s);
    const size_t nx = s->B * g.c * g.h * g.w, ny = s->B * g.c * g.oh * g.ow;
    float *x = malloc(nx * 4), *y = malloc(ny * 4), *ry = malloc(ny * 4), *dy = malloc(ny * 4),
          *dx = malloc(nx * 4);
    int *am = malloc(ny * 4), *ram = malloc(ny * 4);
    double *rdx = calloc(nx, 8), *rdxm = calloc(nx, 8);
    ck_assert(x && y && ry && dy && dx && am && ram && rdx && rdxm);
    pool_input(x, nx, s->H * 31 + s->KH, quantized);
    tu_fill_uniform(dy, ny, -1, 1, s->W * 17 + 3);
    kdcl_tensor tx = vec(KDCL_F32, nx), ty = vec(KDCL_F32, ny), tam = vec(KDCL_I32, ny),
                tdy = vec(KDCL_F32, ny), tdx = vec(KDCL_F32, nx);
    tu_put(&tx, x);
    tu_put(&tdy, dy);
    OK(kdcl_tensor_fill(tu_ctx, &ty, NAN));
    OK(kdcl_tensor_fill(tu_ctx, &tdx, NAN));
    OK(kdcl_op_maxpool2d_forward(tu_ctx, &g, s->B, &tx, &ty, &tam));
    OK(kdcl_op_maxpool2d_backward(tu_ctx, &g, s->B, &tdy, &tam, &tdx));
    tu_get(&ty, y);
    tu_get(&tam, am);
    tu_get(&tdx, dx);
    ref_maxpool(&g, s->B, x, ry, ram);
    for (size_t i = 0; i < ny; i++) {
        ck_assert_msg(am[i] == ram[i] && (y[i] == ry[i] || (isnan(y[i]) && isnan(ry[i]))),
                      "maxpool %zux%zu k%zux%zu s%zux%zu p%zux%zu%s: output %zu = %g at %d, want "
                      "%g at %d",
                      s->H, s->W, s->KH, s->KW, s->SH, s->SW, s->PH, s->PW,
                      quantized ? " (ties)" : "", i, (double)y[i], am[i], (double)ry[i], ram[i]);
    }
    /* dx: dy routed to the argmax of each window; at most
     * ceil(KH/SH)*ceil(KW/SW) windows meet at an element */
    size_t plane = g.oh * g.ow, nwin = ((g.kh + g.sh - 1) / g.sh) * ((g.kw + g.sw - 1) / g.sw);
    for (size_t i = 0; i < ny; i++) {
        size_t xi = (i / plane) * g.h * g.w + (size_t)ram[i];
        rdx[xi] += dy[i];
        rdxm[xi] += fabs(dy[i]);
    }
    for (size_t i = 0; i < nx; i++) {
        double bound = gam(nwin) * rdxm[i];
        ck_assert_msg(fabs(dx[i] - rdx[i]) <= bound,
                      "maxpool backward %zux%zu k%zux%zu s%zux%zu p%zux%zu: dx[%zu] = %.9g, want "
                      "%.9g",
                      s->H, s->W, s->KH, s->KW, s->SH, s->SW, s->PH, s->PW, i, (double)dx[i],
                      rdx[i]);
    }
    kdcl_tensor *ts[] = {&tx, &ty, &tam, &tdy, &tdx};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) kdcl_tensor_free(tu_ctx, ts[i]);
    free(x), free(y), free(ry), free(dy), free(dx), free(am), free(ram), free(rdx), free(rdxm);
}

START_TEST(test_maxpool_vs_reference)
{
    run_maxpool(&pool_shapes[_i / 2], _i % 2);
}
END_TEST

START_TEST(test_avgpool_vs_reference)
{
    const pshape *s = &pool_shapes[_i];
    kdcl_conv_geom g = pgeom(s);
    const size_t nx = s->B * g.c * g.h * g.w, ny = s->B * g.c * g.oh * g.ow, n = g.kh * g.kw;
    float *x = malloc(nx * 4), *y = malloc(ny * 4), *dy = malloc(ny * 4), *dx = malloc(nx * 4);
    double *ry = malloc(ny * 8), *rym = malloc(ny * 8), *rdx = calloc(nx, 8),
           *rdxm = calloc(nx, 8);
    ck_assert(x && y && dy && dx && ry && rym && rdx && rdxm);
    tu_fill_uniform(x, nx, -1, 1, s->H * 7 + s->KW);
    tu_fill_uniform(dy, ny, -1, 1, s->W * 5 + 1);
    for (size_t bc = 0; bc < s->B * g.c; bc++)
        for (size_t oy = 0; oy < g.oh; oy++)
            for (size_t ox = 0; ox < g.ow; ox++) {
                size_t o = (bc * g.oh + oy) * g.ow + ox;
                double sum = 0, m = 0;
                for (size_t i = 0; i < g.kh; i++)
                    for (size_t j = 0; j < g.kw; j++) {
                        size_t iy, ix;
                        if (!in_at(&g, oy, ox, i, j, &iy, &ix)) continue;
                        size_t xi = (bc * g.h + iy) * g.w + ix;
                        sum += x[xi];
                        m += fabs(x[xi]);
                        rdx[xi] += dy[o] / (double)n;
                        rdxm[xi] += fabs(dy[o]) / (double)n;
                    }
                ry[o] = sum / (double)n; /* padding counted in the divisor */
                rym[o] = m / (double)n;
            }
    kdcl_tensor tx = vec(KDCL_F32, nx), ty = vec(KDCL_F32, ny), tdy = vec(KDCL_F32, ny),
                tdx = vec(KDCL_F32, nx);
    tu_put(&tx, x);
    tu_put(&tdy, dy);
    OK(kdcl_tensor_fill(tu_ctx, &ty, NAN));
    OK(kdcl_tensor_fill(tu_ctx, &tdx, NAN));
    OK(kdcl_op_avgpool2d_forward(tu_ctx, &g, s->B, &tx, &ty));
    OK(kdcl_op_avgpool2d_backward(tu_ctx, &g, s->B, &tdy, &tdx));
    tu_get(&ty, y);
    tu_get(&tdx, dx);
    const cshape cs = {s->B, s->C, s->H, s->W, s->C, s->KH, s->KW, s->SH, s->SW, s->PH, s->PW};
    /* a sum of up to KH*KW terms, then one division */
    near("avgpool forward", &cs, "pooling", y, ry, rym, gam(n + 1), n + 1, ny);
    size_t nwin = ((g.kh + g.sh - 1) / g.sh) * ((g.kw + g.sw - 1) / g.sw);
    near("avgpool backward", &cs, "pooling", dx, rdx, rdxm, gam(nwin + 1), nwin + 1, nx);
    kdcl_tensor *ts[] = {&tx, &ty, &tdy, &tdx};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) kdcl_tensor_free(tu_ctx, ts[i]);
    free(x), free(y), free(dy), free(dx), free(ry), free(rym), free(rdx), free(rdxm);
}
END_TEST

/* Constant windows: the first element of each (clipped) window wins, and
 * the gradient goes there alone; all -inf inputs give -inf, not the padding. */
START_TEST(test_maxpool_ties_and_inf)
{
    const pshape s = {2, 2, 5, 6, 3, 3, 2, 2, 1, 1};
    kdcl_conv_geom g = pgeom(&s);
    const size_t nx = s.B * g.c * g.h * g.w, ny = s.B * g.c * g.oh * g.ow;
    float *x = malloc(nx * 4), *y = malloc(ny * 4), *dx = malloc(nx * 4), *ones = malloc(ny * 4);
    int *am = malloc(ny * 4);
    ck_assert(x && y && dx && ones && am);
    kdcl_tensor tx = vec(KDCL_F32, nx), ty = vec(KDCL_F32, ny), tam = vec(KDCL_I32, ny),
                tdy = vec(KDCL_F32, ny), tdx = vec(KDCL_F32, nx);
    for (size_t i = 0; i < ny; i++) ones[i] = 1.0f;
    tu_put(&tdy, ones);
    const float vals[] = {0.5f, -INFINITY, 0.0f};
    for (size_t v = 0; v < 3; v++) {
        for (size_t i = 0; i < nx; i++) x[i] = vals[v];
        tu_put(&tx, x);
        OK(kdcl_op_maxpool2d_forward(tu_ctx, &g, s.B, &tx, &ty, &tam));
        OK(kdcl_op_maxpool2d_backward(tu_ctx, &g, s.B, &tdy, &tam, &tdx));
        tu_get(&ty, y);
        tu_get(&tam, am);
        tu_get(&tdx, dx);
        double expect_dx[64 * 4] = {0};
        for (size_t bc = 0; bc < s.B * g.c; bc++)
            for (size_t oy = 0; oy < g.oh; oy++)
                for (size_t ox = 0; ox < g.ow; ox++) {
                    size_t o = (bc * g.oh + oy) * g.ow + ox;
                    /* first input element of the window: row max(oy*2 - 1, 0), same column */
                    size_t fy = oy > 0 ? oy * 2 - 1 : 0, fx = ox > 0 ? ox * 2 - 1 : 0;
                    ck_assert_msg(y[o] == vals[v], "value %g: y[%zu] = %g", (double)vals[v], o,
                                  (double)y[o]);
                    ck_assert_msg(am[o] == (int)(fy * g.w + fx),
                                  "value %g: window (%zu, %zu) argmax %d, want %zu",
                                  (double)vals[v], oy, ox, am[o], fy * g.w + fx);
                    expect_dx[bc * g.h * g.w + fy * g.w + fx] += 1.0;
                }
        for (size_t i = 0; i < nx; i++)
            ck_assert_msg(dx[i] == expect_dx[i], "value %g: dx[%zu] = %g, want %g",
                          (double)vals[v], i, (double)dx[i], expect_dx[i]);
    }
    kdcl_tensor *ts[] = {&tx, &ty, &tam, &tdy, &tdx};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) kdcl_tensor_free(tu_ctx, ts[i]);
    free(x), free(y), free(dx), free(ones), free(am);
}
END_TEST

/* NaN propagates: max and average of a window holding one are NaN; max's
 * argmax is the first NaN, and the gradient goes there. */
START_TEST(test_pool_nan)
{
    const pshape s = {1, 1, 4, 6, 2, 2, 1, 2, 0, 0}; /* windows 2x2, rows overlap */
    kdcl_conv_geom g = pgeom(&s);
    const size_t nx = 24, ny = g.oh * g.ow; /* 3 x 3 */
    float x[24], y[9], ya[9], dx[24], dy[9];
    int am[9];
    for (size_t i = 0; i < nx; i++) x[i] = (float)i;
    x[1 * 6 + 1] = NAN; /* in windows (0, 0) and (1, 0) */
    x[2 * 6 + 0] = NAN; /* in windows (1, 0) and (2, 0): (1, 0) holds two */
    for (size_t i = 0; i < ny; i++) dy[i] = (float)(1u << i);
    kdcl_tensor tx = vec(KDCL_F32, nx), ty = vec(KDCL_F32, ny), tam = vec(KDCL_I32, ny),
                tdy = vec(KDCL_F32, ny), tdx = vec(KDCL_F32, nx);
    tu_put(&tx, x);
    tu_put(&tdy, dy);
    OK(kdcl_op_maxpool2d_forward(tu_ctx, &g, 1, &tx, &ty, &tam));
    OK(kdcl_op_maxpool2d_backward(tu_ctx, &g, 1, &tdy, &tam, &tdx));
    tu_get(&ty, y);
    tu_get(&tam, am);
    tu_get(&tdx, dx);
    /* window (oy, ox) covers rows oy, oy+1 and columns 2ox, 2ox+1 */
    const int want_am[9] = {7, 9, 11, 7, 15, 17, 12, 21, 23};
    const int is_nan[9] = {1, 0, 0, 1, 0, 0, 1, 0, 0};
    for (size_t i = 0; i < ny; i++) {
        ck_assert_msg(am[i] == want_am[i], "window %zu: argmax %d, want %d", i, am[i],
                      want_am[i]);
        ck_assert_msg(is_nan[i] ? isnan(y[i]) : y[i] == x[want_am[i]], "window %zu: y = %g", i,
                      (double)y[i]);
    }
    float want_dx[24] = {0};
    for (size_t i = 0; i < ny; i++) want_dx[want_am[i]] += dy[i];
    for (size_t i = 0; i < nx; i++)
        ck_assert_msg(dx[i] == want_dx[i], "dx[%zu] = %g, want %g", i, (double)dx[i],
                      (double)want_dx[i]);
    OK(kdcl_op_avgpool2d_forward(tu_ctx, &g, 1, &tx, &ty));
    tu_get(&ty, ya);
    for (size_t i = 0; i < ny; i++)
        ck_assert_msg(is_nan[i] ? isnan(ya[i]) : !isnan(ya[i]), "avg window %zu: %g", i,
                      (double)ya[i]);
    kdcl_tensor *ts[] = {&tx, &ty, &tam, &tdy, &tdx};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) kdcl_tensor_free(tu_ctx, ts[i]);
}
END_TEST

/* The tiled 2x2 / 2 kernels (cl/pool.cl) on NaN, infinities and ties: the
 * first NaN of a window wins, whichever of the four it is and whether a
 * finite maximum or another NaN comes before or after it; an all -inf window
 * gives -inf at its first element, +inf beats finite values and ties keep
 * the first; the gradient goes to the argmax alone and the uncovered last
 * column gets 0. Average pooling of a NaN window is NaN. */
START_TEST(test_pool_nan_tiled)
{
    const pshape s = {1, 1, 4, 7, 2, 2, 2, 2, 0, 0}; /* 2 x 3 windows, column 6 uncovered */
    kdcl_conv_geom g = pgeom(&s);
    const size_t nx = 28, ny = 6;
    float x[28], y[6], ya[6], dx[28], dy[6];
    int am[6];
    for (size_t i = 0; i < nx; i++) x[i] = (float)(i % 5);
    /* window (0, 0): rows 0-1, columns 0-1: elements 0, 1, 7, 8, all NaN */
    x[0] = x[1] = x[7] = x[8] = NAN;
    /* window (0, 1): elements 2, 3, 9, 10: a maximum (9), then NaN last */
    x[2] = 1.0f, x[3] = 9.0f, x[9] = 2.0f, x[10] = NAN;
    /* window (0, 2): elements 4, 5, 11, 12: all -inf */
    x[4] = x[5] = x[11] = x[12] = -INFINITY;
    /* window (1, 0): elements 14, 15, 21, 22: +inf after a tie */
    x[14] = 3.0f, x[15] = 3.0f, x[21] = INFINITY, x[22] = INFINITY;
    /* window (1, 1): elements 16, 17, 23, 24: NaN third, after a tie */
    x[16] = 4.0f, x[17] = 4.0f, x[23] = NAN, x[24] = -1.0f;
    /* window (1, 2): elements 18, 19, 25, 26: NaN second and fourth */
    x[18] = 0.0f, x[19] = NAN, x[25] = 2.0f, x[26] = NAN;
    for (size_t i = 0; i < ny; i++) dy[i] = (float)(1u << i);
    kdcl_tensor tx = vec(KDCL_F32, nx), ty = vec(KDCL_F32, ny), tam = vec(KDCL_I32, ny),
                tdy = vec(KDCL_F32, ny), tdx = vec(KDCL_F32, nx);
    tu_put(&tx, x);
    tu_put(&tdy, dy);
    OK(kdcl_tensor_fill(tu_ctx, &tdx, NAN));
    OK(kdcl_op_maxpool2d_forward(tu_ctx, &g, 1, &tx, &ty, &tam));
    OK(kdcl_op_maxpool2d_backward(tu_ctx, &g, 1, &tdy, &tam, &tdx));
    tu_get(&ty, y);
    tu_get(&tam, am);
    tu_get(&tdx, dx);
    const int want_am[6] = {0, 10, 4, 21, 23, 19};
    const int is_nan[6] = {1, 1, 0, 0, 1, 1};
    for (size_t i = 0; i < ny; i++) {
        ck_assert_msg(am[i] == want_am[i], "window %zu: argmax %d, want %d", i, am[i],
                      want_am[i]);
        ck_assert_msg(is_nan[i] ? isnan(y[i]) : y[i] == x[want_am[i]], "window %zu: y = %g", i,
                      (double)y[i]);
    }
    float want_dx[28] = {0};
    for (size_t i = 0; i < ny; i++) want_dx[want_am[i]] += dy[i];
    for (size_t i = 0; i < nx; i++)
        ck_assert_msg(dx[i] == want_dx[i], "dx[%zu] = %g, want %g", i, (double)dx[i],
                      (double)want_dx[i]);
    OK(kdcl_op_avgpool2d_forward(tu_ctx, &g, 1, &tx, &ty));
    tu_get(&ty, ya);
    for (size_t i = 0; i < ny; i++)
        ck_assert_msg(is_nan[i] ? isnan(ya[i]) : !isnan(ya[i]), "avg window %zu: %g", i,
                      (double)ya[i]);
    kdcl_tensor *ts[] = {&tx, &ty, &tam, &tdy, &tdx};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) kdcl_tensor_free(tu_ctx, ts[i]);
}
END_TEST

START_TEST(test_pool_bad_arguments)
{
    kdcl_conv_geom g, gc;
    OK(kdcl_conv_geom_set(&g, 3, 8, 6, 3, 2, 2, 2, 2, 0, 0));
    OK(kdcl_conv_geom_set(&gc, 3, 8, 6, 4, 2, 2, 2, 2, 0, 0));
    const size_t B = 2, nx = B * 3 * 48, ny = B * 3 * 12;
    kdcl_tensor x = vec(KDCL_F32, nx), y = vec(KDCL_F32, ny), am = vec(KDCL_I32, ny),
                amf = vec(KDCL_F32, ny), small = vec(KDCL_F32, 5);
    const char *F = "kdcl_op_maxpool2d_forward", *R = "kdcl_op_maxpool2d_backward",
               *A = "kdcl_op_avgpool2d_forward", *AB = "kdcl_op_avgpool2d_backward";
    OK(kdcl_op_maxpool2d_forward(tu_ctx, &g, B, &x, &y, &am));
    BAD(kdcl_op_maxpool2d_forward(tu_ctx, &gc, B, &x, &y, &am), F, "OC == C",
        "C = 3, OC = 4");
    BAD(kdcl_op_maxpool2d_forward(tu_ctx, NULL, B, &x, &y, &am), F, "geometry is NULL");
    BAD(kdcl_op_maxpool2d_forward(tu_ctx, &g, 0, &x, &y, &am), F, "batch must be >= 1");
    BAD(kdcl_op_maxpool2d_forward(tu_ctx, &g, B, &x, &y, &amf), F, "argmax must be I32");
    BAD(kdcl_op_maxpool2d_forward(tu_ctx, &g, B, &small, &y, &am), F,
        "x must hold at least batch*C*H*W = 2*3*8*6 = 288", "[5] F32");
    BAD(kdcl_op_maxpool2d_forward(tu_ctx, &g, B, &x, &small, &am), F,
        "y must hold at least batch*C*OH*OW = 2*3*4*3 = 72");
    BAD(kdcl_op_maxpool2d_forward(tu_ctx, &g, B, &x, &x, &am), F, "y and x share a buffer");
    BAD(kdcl_op_maxpool2d_backward(tu_ctx, &g, B, &y, &am, &small), R, "dx must hold");
    BAD(kdcl_op_maxpool2d_backward(tu_ctx, &g, B, &y, &amf, &x), R, "argmax must be I32");
    BAD(kdcl_op_maxpool2d_backward(tu_ctx, &g, B, &y, &am, NULL), R, "dx is NULL");
    BAD(kdcl_op_avgpool2d_forward(tu_ctx, &g, B, &x, &small), A, "y must hold");
    BAD(kdcl_op_avgpool2d_forward(NULL, &g, B, &x, &y), A, "ctx is NULL");
    BAD(kdcl_op_avgpool2d_backward(tu_ctx, &g, B, &small, &x), AB, "dy must hold");
    BAD(kdcl_op_avgpool2d_backward(tu_ctx, &g, B, &y, &y), AB, "dx must hold");
    kdcl_conv_geom bad = g;
    bad.kh = 9; /* no longer fits */
    BAD(kdcl_op_avgpool2d_forward(tu_ctx, &bad, B, &x, &y), A, "kernel 9x2 does not fit");
    kdcl_tensor *ts[] = {&x, &y, &am, &amf, &small};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) kdcl_tensor_free(tu_ctx, ts[i]);
}
END_TEST

static Suite *conv_suite(void)
{
    Suite *s = suite_create("conv");
    TCase *tc = tcase_create("conv");
    tcase_add_unchecked_fixture(tc, setup, tu_ctx_teardown);
    tcase_set_timeout(tc, 300);
    const int n_conv = (int)(sizeof conv_shapes / sizeof conv_shapes[0]);
    const int n_pool = (int)(sizeof pool_shapes / sizeof pool_shapes[0]);
    tcase_add_test(tc, test_geometry);
    tcase_add_loop_test(tc, test_conv_vs_reference, 0, n_conv * N_ROUTES * N_ALGOS);
    tcase_add_loop_test(tc, test_conv_realistic, 0, 5 * N_ALGOS);
    tcase_add_test(tc, test_conv_direct_setting);
    tcase_add_test(tc, test_column_layout);
    tcase_add_test(tc, test_conv_deterministic);
    tcase_add_loop_test(tc, test_conv_bad_arguments, 0, N_ALGOS);
    tcase_add_test(tc, test_conv_algo_setting);
    tcase_add_loop_test(tc, test_maxpool_vs_reference, 0, n_pool * 2);
    tcase_add_loop_test(tc, test_avgpool_vs_reference, 0, n_pool);
    tcase_add_test(tc, test_maxpool_ties_and_inf);
    tcase_add_test(tc, test_pool_nan);
    tcase_add_test(tc, test_pool_nan_tiled);
    tcase_add_test(tc, test_pool_bad_arguments);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(conv_suite()); }
