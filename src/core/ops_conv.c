/* Host wrappers of the pooling kernels (cl/pool.cl). The convolution itself
 * is in gemm.c (it runs GEMMs through CLBlast). */
#include <stdio.h>

#include "core/ops_util.h"
#include "kdcl/conv.h"

#define TRY(x)                        \
    do {                              \
        kdcl_status s_ = (x);         \
        if (s_ != KDCL_OK) return s_; \
    } while (0)

/* The geometry of a pooling call (OC == C) and its element counts. */
static kdcl_status pool_sizes(kdcl_ctx *ctx, const char *op, const kdcl_conv_geom *g,
                              size_t batch, size_t *nx, size_t *ny)
{
    if (!ctx) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: ctx is NULL", op);
    TRY(kdcl_conv_geom_check(op, g));
    if (g->oc != g->c)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "%s: pooling keeps the channels, so the geometry needs OC == C "
                              "(got C = %zu, OC = %zu)",
                              op, g->c, g->oc);
    if (batch == 0) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: batch must be >= 1", op);
    const size_t lim = (size_t)1 << 31;
    if (__builtin_mul_overflow(batch, g->c * g->h * g->w, nx) || *nx >= lim ||
        __builtin_mul_overflow(batch, g->c * g->oh * g->ow, ny) || *ny >= lim)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "%s: batch %zu of %zux%zux%zu inputs has 2^31 elements or more", op,
                              batch, g->c, g->h, g->w);
    return KDCL_OK;
}

static kdcl_status check_x(const char *op, const char *name, const kdcl_tensor *t,
                           const kdcl_conv_geom *g, size_t batch, size_t n)
{
    char what[128];
    snprintf(what, sizeof what, "batch*C*H*W = %zu*%zu*%zu*%zu", batch, g->c, g->h, g->w);
    return kdcl_ops_check_holds(op, name, t, KDCL_F32, n, 0, what);
}

static kdcl_status check_y(const char *op, const char *name, const kdcl_tensor *t,
                           kdcl_elem type, const kdcl_conv_geom *g, size_t batch, size_t n)
{
    char what[128];
    snprintf(what, sizeof what, "batch*C*OH*OW = %zu*%zu*%zu*%zu", batch, g->c, g->oh, g->ow);
    return kdcl_ops_check_holds(op, name, t, type, n, 0, what);
}

static kdcl_status distinct(const char *op, const char *a, const kdcl_tensor *ta, const char *b,
                            const kdcl_tensor *tb)
{
    if (ta->buf == tb->buf)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: %s and %s share a buffer", op, a, b);
    return KDCL_OK;
}

/* No padding and windows that tile the plane without overlap (cl/pool.cl):
 * stride == kernel along each axis, or a single window along it. */
static int pool_tiled(const kdcl_conv_geom *g)
{
    return g->ph == 0 && g->pw == 0 && (g->sh == g->kh || g->oh == 1) &&
           (g->sw == g->kw || g->ow == 1);
}

/* The *_tiled kernels: buffers, then H, W, KH, KW, OH, OW; over (OW, OH, batch*C). */
static kdcl_status pool_launch_tiled(kdcl_ctx *ctx, const char *kname, const kdcl_conv_geom *g,
                                     size_t batch, const cl_mem *bufs, size_t nbufs)
{
    cl_kernel k;
    char name[64];
    snprintf(name, sizeof name, "%s_tiled", kname);
    TRY(kdcl_kernel_get(ctx, "pool", name, &k));
    cl_uint v[6] = {(cl_uint)g->h,  (cl_uint)g->w,  (cl_uint)g->kh,
                    (cl_uint)g->kw, (cl_uint)g->oh, (cl_uint)g->ow};
    karg a[9];
    size_t n = 0;
    for (size_t i = 0; i < nbufs; i++) a[n++] = KA(bufs[i]);
    for (size_t i = 0; i < 6; i++) a[n++] = KA(v[i]);
    TRY(kdcl_ops_set_args(k, name, a, n));
    return kdcl_ops_launch3(ctx, k, name, g->ow, g->oh, batch * g->c);
}

/* Set the buffers and the geometry (H, W, KH, KW, SH, SW, PH, PW, OH, OW)
 * and launch over (gx, gy, batch*C); a tiled geometry takes the *_tiled
 * kernel instead. */
static kdcl_status pool_launch(kdcl_ctx *ctx, const char *kname, const kdcl_conv_geom *g,
                               size_t batch, const cl_mem *bufs, size_t nbufs, int per_input)
{
    if (pool_tiled(g))
        return pool_launch_tiled(ctx, kname, g, batch, bufs, nbufs);
    cl_kernel k;
    TRY(kdcl_kernel_get(ctx, "pool", kname, &k));
    cl_uint v[10] = {(cl_uint)g->h,  (cl_uint)g->w,  (cl_uint)g->kh, (cl_uint)g->kw,
                     (cl_uint)g->sh, (cl_uint)g->sw, (cl_uint)g->ph, (cl_uint)g->pw,
                     (cl_uint)g->oh, (cl_uint)g->ow};
    karg a[13];
    size_t n = 0;
    for (size_t i = 0; i < nbufs; i++) a[n++] = KA(bufs[i]);
    for (size_t i = 0; i < 10; i++) a[n++] = KA(v[i]);
    TRY(kdcl_ops_set_args(k, kname, a, n));
    if (per_input) return kdcl_ops_launch3(ctx, k, kname, g->w, g->h, batch * g->c);
    return kdcl_ops_launch3(ctx, k, kname, g->ow, g->oh, batch * g->c);
}

kdcl_status kdcl_op_maxpool2d_forward(kdcl_ctx *ctx, const kdcl_conv_geom *g, size_t batch,
                                      const kdcl_tensor *x, kdcl_tensor *y, kdcl_tensor *argmax)
{
    static const char *op = "kdcl_op_maxpool2d_forward";
    size_t nx = 0, ny = 0;
    TRY(pool_sizes(ctx, op, g, batch, &nx, &ny));
    TRY(check_x(op, "x", x, g, batch, nx));
    TRY(check_y(op, "y", y, KDCL_F32, g, batch, ny));
    TRY(check_y(op, "argmax", argmax, KDCL_I32, g, batch, ny));
    TRY(distinct(op, "y", y, "x", x));
    TRY(distinct(op, "argmax", argmax, "x", x));
    TRY(distinct(op, "argmax", argmax, "y", y));
    const cl_mem b[] = {x->buf, y->buf, argmax->buf};
    return pool_launch(ctx, "maxpool_fwd", g, batch, b, 3, 0);
}

kdcl_status kdcl_op_maxpool2d_backward(kdcl_ctx *ctx, const kdcl_conv_geom *g, size_t batch,
                                       const kdcl_tensor *dy, const kdcl_tensor *argmax,
                                       kdcl_tensor *dx)
{
    static const char *op = "kdcl_op_maxpool2d_backward";
    size_t nx = 0, ny = 0;
    TRY(pool_sizes(ctx, op, g, batch, &nx, &ny));
    TRY(check_y(op, "dy", dy, KDCL_F32, g, batch, ny));
    TRY(check_y(op, "argmax", argmax, KDCL_I32, g, batch, ny));
    TRY(check_x(op, "dx", dx, g, batch, nx));
    TRY(distinct(op, "dx", dx, "dy", dy));
    TRY(distinct(op, "dx", dx, "argmax", argmax));
    const cl_mem b[] = {dy->buf, argmax->buf, dx->buf};
    return pool_launch(ctx, "maxpool_bwd", g, batch, b, 3, 1);
}

kdcl_status kdcl_op_avgpool2d_forward(kdcl_ctx *ctx, const kdcl_conv_geom *g, size_t batch,
                                      const kdcl_tensor *x, kdcl_tensor *y)
{
    static const char *op = "kdcl_op_avgpool2d_forward";
    size_t nx = 0, ny = 0;
    TRY(pool_sizes(ctx, op, g, batch, &nx, &ny));
    TRY(check_x(op, "x", x, g, batch, nx));
    TRY(check_y(op, "y", y, KDCL_F32, g, batch, ny));
    TRY(distinct(op, "y", y, "x", x));
    const cl_mem b[] = {x->buf, y->buf};
    return pool_launch(ctx, "avgpool_fwd", g, batch, b, 2, 0);
}

kdcl_status kdcl_op_avgpool2d_backward(kdcl_ctx *ctx, const kdcl_conv_geom *g, size_t batch,
                                       const kdcl_tensor *dy, kdcl_tensor *dx)
{
    static const char *op = "kdcl_op_avgpool2d_backward";
    size_t nx = 0, ny = 0;
    TRY(pool_sizes(ctx, op, g, batch, &nx, &ny));
    TRY(check_y(op, "dy", dy, KDCL_F32, g, batch, ny));
    TRY(check_x(op, "dx", dx, g, batch, nx));
    TRY(distinct(op, "dx", dx, "dy", dy));
    const cl_mem b[] = {dy->buf, dx->buf};
    return pool_launch(ctx, "avgpool_bwd", g, batch, b, 2, 1);
}
