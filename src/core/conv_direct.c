/* Direct 3x3 convolutions: host side of cl/conv_direct.cl (the kernels'
 * comment has the work decomposition; src/core/gemm.c's "Direct 3x3" the
 * route and its measurements). */
#include "core/conv_direct.h"

#include "core/ops_util.h"
#include "runtime/ctx.h"

#define TRY(x)                        \
    do {                              \
        kdcl_status s_ = (x);         \
        if (s_ != KDCL_OK) return s_; \
    } while (0)

#define DC_BLOCK 16   /* output channels per work-item (DB in the kernels) */
#define DC_DW_OB 4     /* output channels per work-item of the weight gradient (DW_OB) */
#define DC_PAIRS_W 8  /* output widths up to this run two rows per vector */
#define DC_DW_PART_BYTES (512 * 1024) /* x and dy of a part of the weight gradient, at most */
#define DC_MAX_ITEMS ((size_t)1 << 31) /* work-items of one launch, at most */

int kdcl__conv_direct_fits(const kdcl_conv_geom *g)
{
    if (g->kh == 3 && g->kw == 3)
        return g->ph == 1 && g->pw == 1 && g->sh == g->sw && (g->sh == 1 || g->sh == 2);
    return g->kh == 5 && g->kw == 5 && g->sh == 1 && g->sw == 1 && g->ph == g->pw;
}

/* The kernels' geometry argument after OW: the stride (3x3; the padding is
 * 1) or the padding (5x5; the stride is 1). */
static cl_uint dc_stride_or_pad(const kdcl_conv_geom *g)
{
    return (cl_uint)(g->kh == 5 ? g->ph : g->sh);
}

/* One work-item per group: PoCL's own choice of the group size for these
 * kernels (each work-item holds 16 float16 accumulators and a few arrays)
 * overflowed its work-group stack at 128 x 32x16x16 (a crash in the
 * kernel), and the work-items are long enough for groups of one. */
static kdcl_status dc_launch(kdcl_ctx *ctx, cl_kernel k, const char *name, size_t n)
{
    return kdcl_ops_launch(ctx, k, name, n, 1);
}

/* y (OC channels, OH x OW) = conv of x (C channels, H x W), the weight of
 * (o, c, tap) at w[o*wo + c*wc + tap] (flipped taps: the input gradient);
 * 3x3 at stride sp (1 or 2), or 5x5 at stride 1 with padding sp. */
static kdcl_status dc_conv(kdcl_ctx *ctx, size_t ksize, int flip, size_t batch, size_t C,
                           size_t H, size_t W, size_t OH, size_t OW, size_t sp, size_t OC,
                           cl_ulong wo, cl_ulong wc, cl_mem x, cl_mem w, cl_mem bias, cl_mem y)
{
    const int pairs = ksize == 3 && OW <= DC_PAIRS_W;
    const char *name = ksize == 5 ? (flip ? "conv5x5_rows_bwd" : "conv5x5_rows_fwd")
                       : pairs    ? (flip ? "conv3x3_pairs_bwd" : "conv3x3_pairs_fwd")
                                  : (flip ? "conv3x3_rows_bwd" : "conv3x3_rows_fwd");
    cl_kernel k;
    TRY(kdcl_kernel_get(ctx, "conv_direct", name, &k));
    cl_uint nb = (cl_uint)batch, c = (cl_uint)C, h = (cl_uint)H, wd = (cl_uint)W,
            oh = (cl_uint)OH, ow = (cl_uint)OW, s = (cl_uint)sp, oc = (cl_uint)OC,
            has_bias = bias != NULL;
    cl_mem b = bias ? bias : w; /* not read without a bias */
    const karg a[] = {KA(nb), KA(c), KA(h), KA(wd), KA(oh), KA(ow),       KA(s), KA(oc),
                      KA(wo), KA(wc), KA(x), KA(w),  KA(b),  KA(has_bias), KA(y)};
    TRY(kdcl_ops_set_args(k, name, a, sizeof a / sizeof a[0]));
    const size_t nob = (OC + DC_BLOCK - 1) / DC_BLOCK;
    const size_t per = pairs ? (OH + 1) / 2 : OH * ((OW + 15) / 16);
    return dc_launch(ctx, k, name, batch * nob * per);
}

kdcl_status kdcl__conv_direct_forward(kdcl_ctx *ctx, const kdcl_conv_geom *g, size_t batch,
                                      cl_mem x, cl_mem w, cl_mem bias, cl_mem y)
{
    const size_t kk = g->kh * g->kw;
    return dc_conv(ctx, g->kh, 0, batch, g->c, g->h, g->w, g->oh, g->ow,
                   dc_stride_or_pad(g), g->oc, (cl_ulong)(g->c * kk), kk, x, w, bias, y);
}

kdcl_status kdcl__conv_direct_dx(kdcl_ctx *ctx, const kdcl_conv_geom *g, size_t batch,
                                 cl_mem w, cl_mem dy, cl_mem dx)
{
    if (g->kh == 5) /* dy (OC channels, OH x OW) into C channels, the kernel flipped,
                       padding 4 - P */
        return dc_conv(ctx, 5, 1, batch, g->oc, g->oh, g->ow, g->h, g->w, 4 - g->ph, g->c, 25,
                       (cl_ulong)(g->c * 25), dy, w, NULL, dx);
    if (g->sh == 1) /* the convolution of dy (OC channels) into C channels with the kernel
                       flipped: output channel c, input channel o at w[o*C*9 + c*9] */
        return dc_conv(ctx, 3, 1, batch, g->oc, g->h, g->w, g->h, g->w, 1, g->c, 9,
                       (cl_ulong)(g->c * 9), dy, w, NULL, dx);
    static const char *name = "conv3x3s2_rows_dx";
    cl_kernel k;
    TRY(kdcl_kernel_get(ctx, "conv_direct", name, &k));
    cl_uint B = (cl_uint)batch, C = (cl_uint)g->c, H = (cl_uint)g->h, W = (cl_uint)g->w,
            OH = (cl_uint)g->oh, OW = (cl_uint)g->ow, OC = (cl_uint)g->oc;
    const karg a[] = {KA(B),  KA(C),  KA(H), KA(W), KA(OH),
                      KA(OW), KA(OC), KA(dy), KA(w), KA(dx)};
    TRY(kdcl_ops_set_args(k, name, a, sizeof a / sizeof a[0]));
    const size_t ncb = (g->c + DC_BLOCK - 1) / DC_BLOCK;
    return dc_launch(ctx, k, name, batch * ncb * g->h * ((g->w + 15) / 16));
}

size_t kdcl__conv_direct_parts(const kdcl_ctx *ctx, const kdcl_conv_geom *g, size_t batch)
{
    /* as many images per part as keep the part's x and dy within
     * DC_DW_PART_BYTES (its work-items run one after another and each reads
     * them all), but enough parts for 8 work-items per compute unit */
    const size_t cu = ctx->dev.compute_units ? ctx->dev.compute_units : 1;
    const size_t per_part = g->c * g->kh * ((g->oc + DC_DW_OB - 1) / DC_DW_OB);
    const size_t image = (g->c * g->h * g->w + g->oc * g->oh * g->ow) * sizeof(float);
    size_t nb = DC_DW_PART_BYTES / image;
    if (nb < 1) nb = 1;
    if (nb > batch) nb = batch;
    while (nb > 1 && per_part * ((batch + nb - 1) / nb) < 8 * cu) nb /= 2;
    /* the kernels index work-items with 32-bit ids */
    while (nb < batch && per_part * ((batch + nb - 1) / nb) > DC_MAX_ITEMS) nb++;
    return (batch + nb - 1) / nb;
}

kdcl_status kdcl__conv_direct_dw_parts(kdcl_ctx *ctx, const kdcl_conv_geom *g, size_t batch,
                                       cl_mem x, cl_mem dy, cl_mem out)
{
    const size_t parts = kdcl__conv_direct_parts(ctx, g, batch);
    const size_t nb = (batch + parts - 1) / parts;
    const char *name = g->kh == 5             ? "conv5x5_rows_dw"
                       : g->ow <= DC_PAIRS_W ? "conv3x3_pairs_dw"
                                             : "conv3x3_rows_dw";
    cl_kernel k;
    TRY(kdcl_kernel_get(ctx, "conv_direct", name, &k));
    cl_uint B = (cl_uint)batch, C = (cl_uint)g->c, H = (cl_uint)g->h, W = (cl_uint)g->w,
            OH = (cl_uint)g->oh, OW = (cl_uint)g->ow,
            S = dc_stride_or_pad(g), OC = (cl_uint)g->oc,
            NB = (cl_uint)nb;
    const karg a[] = {KA(B),  KA(C), KA(H), KA(W),  KA(OH), KA(OW),
                      KA(S),  KA(OC), KA(NB), KA(x), KA(dy), KA(out)};
    TRY(kdcl_ops_set_args(k, name, a, sizeof a / sizeof a[0]));
    return dc_launch(ctx, k, name, parts * g->c * g->kh * ((g->oc + DC_DW_OB - 1) / DC_DW_OB));
}
