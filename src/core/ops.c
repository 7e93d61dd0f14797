/* Host wrappers of the elementwise / optimizer / augmentation kernels
 * (cl/elementwise.cl, cl/optim.cl, cl/augment.cl) and the host copy of the
 * Philox generator they use. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kdcl/ops.h"
#include "core/ops_util.h"
#include "kdcl/profile.h"
#include "runtime/ctx.h"

/* ---- Philox4x32-10 (must match the kernels) ---- */

void kdcl_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3], k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

uint32_t kdcl_dropout_threshold(float drop_p)
{
    if (!(drop_p > 0.0f)) return 0;
    if (!(drop_p < 1.0f)) return 1u << 24;
    return (uint32_t)ceil((double)drop_p * 16777216.0); /* exact product, <= 2^24 - 1 */
}

int kdcl_dropout_keep(uint64_t seed, uint64_t step, uint32_t stream, size_t i, float drop_p)
{
    uint32_t t = kdcl_dropout_threshold(drop_p);
    if (!t) return 1;
    uint32_t ctr[4] = {(uint32_t)(i / 4), (uint32_t)step, (uint32_t)(step >> 32), stream};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)}, r[4];
    kdcl_philox4x32(ctr, key, r);
    return (r[i % 4] >> 8) >= t;
}

void kdcl_jitter_shift(uint64_t seed, uint64_t step, size_t b, int max_shift, int *dx, int *dy)
{
    if (max_shift <= 0) {
        *dx = *dy = 0;
        return;
    }
    uint32_t ctr[4] = {(uint32_t)b, (uint32_t)step, (uint32_t)(step >> 32), KDCL_JITTER_STREAM};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)}, r[4];
    kdcl_philox4x32(ctr, key, r);
    uint64_t span = (uint64_t)max_shift * 2 + 1;
    *dx = (int)(int64_t)(((uint64_t)r[0] * span) >> 32) - max_shift;
    *dy = (int)(int64_t)(((uint64_t)r[1] * span) >> 32) - max_shift;
}

/* ---- launch helpers ---- */

static kdcl_status get_kernel(kdcl_ctx *ctx, const char *prog, const char *name, cl_kernel *k)
{
    return kdcl_kernel_get(ctx, prog, name, k);
}

/* Largest work-group size this kernel may use on the device, capped at `cap`. */
static size_t kernel_wg(kdcl_ctx *ctx, cl_kernel k, size_t cap)
{
    size_t kwg = 0;
    if (clGetKernelWorkGroupInfo(k, ctx->dev.device, CL_KERNEL_WORK_GROUP_SIZE, sizeof kwg, &kwg,
                                 NULL) != CL_SUCCESS ||
        kwg == 0)
        kwg = ctx->dev.max_work_group ? ctx->dev.max_work_group : 1;
    if (ctx->dev.max_work_group && kwg > ctx->dev.max_work_group) kwg = ctx->dev.max_work_group;
    return kwg < cap ? kwg : cap;
}

/* 1-D launch of `items` work-items (rounded up to a multiple of the local size). */
static kdcl_status launch1d(kdcl_ctx *ctx, cl_kernel k, const char *name, size_t items)
{
    size_t local = kernel_wg(ctx, k, 256);
    size_t global = (items + local - 1) / local * local;
    cl_int e = clEnqueueNDRangeKernel(ctx->queue, k, 1, NULL, &global, &local, 0, NULL, NULL);
    if (e != CL_SUCCESS) {
        char what[96];
        snprintf(what, sizeof what, "clEnqueueNDRangeKernel(%s)", name);
        return kdcl_cl_fail(e, what);
    }
    return kdcl_prof_op(ctx, name);
}


/* "[2x3]" into buf. */
static const char *shape_str(const kdcl_tensor *t, char *buf, size_t size)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, size - o, "[");
    for (size_t i = 0; i < t->ndim && o < size; i++)
        o += (size_t)snprintf(buf + o, size - o, i ? "x%zu" : "%zu", t->shape[i]);
    if (o < size) snprintf(buf + o, size - o, "]");
    return buf;
}

static kdcl_status need_tensor(const char *op, const char *what, const kdcl_tensor *t,
                               kdcl_elem type)
{
    if (!t || !t->buf)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: %s is NULL or unallocated", op, what);
    if (t->type != type)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: %s must be %s, got %s", op, what,
                              kdcl_ops_type_name(type), kdcl_ops_type_name(t->type));
    if (t->ndim < 1 || t->ndim > KDCL_MAX_DIMS || t->numel == 0)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: %s has an invalid shape", op, what);
    return KDCL_OK;
}

/* [offset, offset + n) inside the tensor's capacity. */
static kdcl_status need_range(const char *op, const char *what, const kdcl_tensor *t,
                              size_t offset, size_t n)
{
    if (offset > t->capacity || n > t->capacity - offset)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "%s: elements [%zu, %zu + %zu) outside %s (%zu elements)", op,
                              offset, offset, n, what, t->capacity);
    return KDCL_OK;
}

/* 1 / (1 - p) as an unevaluated sum hi + lo of two floats (p in [0, 1)). */
static void keep_scale(float p, cl_float *hi, cl_float *lo)
{
    double s = 1.0 / (1.0 - (double)p);
    *hi = (float)s;
    *lo = (float)(s - (double)*hi);
}

#define TRY(x)                          \
    do {                                \
        kdcl_status s_ = (x);           \
        if (s_ != KDCL_OK) return s_;   \
    } while (0)

/* ---- elementwise.cl ---- */

kdcl_status kdcl_op_bias_act_dropout(kdcl_ctx *ctx, kdcl_tensor *y, const kdcl_tensor *bias,
                                     int relu, float drop_p, uint64_t seed, uint64_t step,
                                     uint32_t stream, kdcl_tensor *mask)
{
    static const char *op = "kdcl_op_bias_act_dropout";
    char s1[96], s2[96];
    TRY(need_tensor(op, "y", y, KDCL_F32));
    if (!(drop_p >= 0.0f && drop_p < 1.0f))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: drop_p = %g is outside [0, 1)", op,
                              (double)drop_p);
    const size_t n = y->numel, ncols = y->shape[y->ndim - 1];
    if (ncols > UINT32_MAX || n / 4 > UINT32_MAX)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: y %s is too large", op,
                              shape_str(y, s1, sizeof s1));
    if (bias) {
        TRY(need_tensor(op, "bias", bias, KDCL_F32));
        if (bias->numel != ncols)
            return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                  "%s: bias %s does not match the %zu columns of y %s", op,
                                  shape_str(bias, s2, sizeof s2), ncols,
                                  shape_str(y, s1, sizeof s1));
    }
    if (!mask && drop_p > 0.0f)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: drop_p = %g needs a mask tensor", op,
                              (double)drop_p);
    if (mask) {
        TRY(need_tensor(op, "mask", mask, KDCL_U8));
        if (mask->numel != n)
            return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: mask %s does not match y %s", op,
                                  shape_str(mask, s2, sizeof s2), shape_str(y, s1, sizeof s1));
    }
    cl_kernel k;
    TRY(get_kernel(ctx, "elementwise", "bias_act_dropout", &k));
    cl_mem none = NULL;
    cl_ulong n64 = n;
    cl_uint nc = (cl_uint)ncols, thresh = kdcl_dropout_threshold(drop_p);
    cl_int flags = (bias ? 1 : 0) | (relu ? 2 : 0) | (mask ? 4 : 0);
    cl_float s_hi, s_lo;
    keep_scale(drop_p, &s_hi, &s_lo);
    cl_uint st_lo = (cl_uint)step, st_hi = (cl_uint)(step >> 32), strm = stream;
    cl_uint sd_lo = (cl_uint)seed, sd_hi = (cl_uint)(seed >> 32);
    const karg a[] = {KA(y->buf), bias ? KA(bias->buf) : KA(none), mask ? KA(mask->buf) : KA(none),
                      KA(n64), KA(nc), KA(flags), KA(thresh), KA(s_hi), KA(s_lo), KA(st_lo), KA(st_hi),
                      KA(strm), KA(sd_lo), KA(sd_hi)};
    TRY(kdcl_ops_set_args(k, "bias_act_dropout", a, sizeof a / sizeof a[0]));
    return launch1d(ctx, k, "bias_act_dropout", (n + 15) / 16);
}

kdcl_status kdcl_op_act_dropout_backward(kdcl_ctx *ctx, kdcl_tensor *dy, const kdcl_tensor *y_out,
                                         int relu, float drop_p, const kdcl_tensor *mask)
{
    static const char *op = "kdcl_op_act_dropout_backward";
    char s1[96], s2[96];
    TRY(need_tensor(op, "dy", dy, KDCL_F32));
    if (!(drop_p >= 0.0f && drop_p < 1.0f))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: drop_p = %g is outside [0, 1)", op,
                              (double)drop_p);
    const size_t n = dy->numel;
    if (relu) {
        TRY(need_tensor(op, "y_out", y_out, KDCL_F32));
        if (y_out->numel != n)
            return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: y_out %s does not match dy %s", op,
                                  shape_str(y_out, s2, sizeof s2), shape_str(dy, s1, sizeof s1));
    }
    if (!mask && drop_p > 0.0f)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: drop_p = %g needs the forward's mask",
                              op, (double)drop_p);
    if (mask) {
        TRY(need_tensor(op, "mask", mask, KDCL_U8));
        if (mask->numel != n)
            return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: mask %s does not match dy %s", op,
                                  shape_str(mask, s2, sizeof s2), shape_str(dy, s1, sizeof s1));
    }
    if (!relu && !mask) return KDCL_OK; /* identity */
    cl_kernel k;
    TRY(get_kernel(ctx, "elementwise", "act_dropout_backward", &k));
    cl_mem none = NULL;
    cl_ulong n64 = n;
    cl_int flags = (relu ? 2 : 0) | (mask ? 4 : 0);
    cl_float s_hi, s_lo;
    keep_scale(drop_p, &s_hi, &s_lo);
    const karg a[] = {KA(dy->buf), relu ? KA(y_out->buf) : KA(none),
                      mask ? KA(mask->buf) : KA(none), KA(n64), KA(flags), KA(s_hi), KA(s_lo)};
    TRY(kdcl_ops_set_args(k, "act_dropout_backward", a, sizeof a / sizeof a[0]));
    return launch1d(ctx, k, "act_dropout_backward", (n + 15) / 16);
}

kdcl_status kdcl_op_bias_grad(kdcl_ctx *ctx, const kdcl_tensor *dy, kdcl_tensor *db, float scale,
                              float beta)
{
    static const char *op = "kdcl_op_bias_grad";
    char s1[96], s2[96];
    TRY(need_tensor(op, "dy", dy, KDCL_F32));
    TRY(need_tensor(op, "db", db, KDCL_F32));
    const size_t ncols = dy->shape[dy->ndim - 1], rows = dy->numel / ncols;
    if (db->numel != ncols)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: db %s does not match the %zu columns of dy %s",
                              op, shape_str(db, s2, sizeof s2), ncols, shape_str(dy, s1, sizeof s1));
    if (ncols > UINT32_MAX)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: dy %s has too many columns", op,
                              shape_str(dy, s1, sizeof s1));
    cl_kernel k;
    TRY(get_kernel(ctx, "elementwise", "bias_grad", &k));
    size_t wg = kernel_wg(ctx, k, 256);
    size_t tx = wg >= 32 ? 32 : kdcl_ops_pow2_at_most(SIZE_MAX, wg);
    size_t ty = wg / tx >= 8 ? 8 : wg / tx;
    if (rows < ty) ty = rows;
    cl_ulong r64 = rows;
    cl_uint nc = (cl_uint)ncols;
    const karg a[] = {KA(dy->buf), KA(db->buf), KA(r64), KA(nc), KA(scale), KA(beta),
                      KA_LOCAL(tx * ty * sizeof(float))};
    TRY(kdcl_ops_set_args(k, "bias_grad", a, sizeof a / sizeof a[0]));
    size_t local[2] = {tx, ty}, global[2] = {(ncols + tx - 1) / tx * tx, ty};
    cl_int e = clEnqueueNDRangeKernel(ctx->queue, k, 2, NULL, global, local, 0, NULL, NULL);
    if (e != CL_SUCCESS) return kdcl_cl_fail(e, "clEnqueueNDRangeKernel(bias_grad)");
    return KDCL_OK;
}

/* ---- optim.cl ---- */

/* The tensors, the range [offset, offset + n) and the hyper-parameters of the SGD ops. */
static kdcl_status sgd_args(const char *op, const kdcl_tensor *w, const kdcl_tensor *g,
                            const kdcl_tensor *v, size_t offset, size_t n, float lr,
                            float momentum, float weight_decay)
{
    TRY(need_tensor(op, "w", w, KDCL_F32));
    TRY(need_tensor(op, "g", g, KDCL_F32));
    TRY(need_tensor(op, "v", v, KDCL_F32));
    TRY(need_range(op, "w", w, offset, n));
    TRY(need_range(op, "g", g, offset, n));
    TRY(need_range(op, "v", v, offset, n));
    if (!isfinite(lr) || !isfinite(momentum) || !isfinite(weight_decay))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "%s: lr %g, momentum %g, weight_decay %g must be finite", op,
                              (double)lr, (double)momentum, (double)weight_decay);
    return KDCL_OK;
}

kdcl_status kdcl_op_sgd(kdcl_ctx *ctx, kdcl_tensor *w, const kdcl_tensor *g, kdcl_tensor *v,
                        size_t offset, size_t n, float lr, float momentum, float weight_decay)
{
    static const char *op = "kdcl_op_sgd";
    TRY(sgd_args(op, w, g, v, offset, n, lr, momentum, weight_decay));
    if (n == 0) return KDCL_OK;
    cl_kernel k;
    TRY(get_kernel(ctx, "optim", "sgd", &k));
    cl_ulong off64 = offset, n64 = n;
    const karg a[] = {KA(w->buf), KA(g->buf), KA(v->buf), KA(off64), KA(n64),
                      KA(lr), KA(momentum), KA(weight_decay)};
    TRY(kdcl_ops_set_args(k, "sgd", a, sizeof a / sizeof a[0]));
    return launch1d(ctx, k, "sgd", n);
}

/* The norm limit and the [rows, cols] block of the max-norm ops; *n = rows * cols. */
static kdcl_status max_norm_args(const char *op, float c, size_t rows, size_t cols, size_t *n)
{
    if (!(c > 0.0f) || !isfinite(c))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: the norm limit c = %g must be > 0", op,
                              (double)c);
    if (__builtin_mul_overflow(rows, cols, n))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: %zu x %zu overflows", op, rows, cols);
    if (cols > UINT32_MAX)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: %zu columns is too many", op, cols);
    return KDCL_OK;
}

kdcl_status kdcl_op_max_norm(kdcl_ctx *ctx, kdcl_tensor *w, size_t offset, size_t rows,
                             size_t cols, float c)
{
    static const char *op = "kdcl_op_max_norm";
    TRY(need_tensor(op, "w", w, KDCL_F32));
    size_t n = 0;
    TRY(max_norm_args(op, c, rows, cols, &n));
    TRY(need_range(op, "w", w, offset, n));
    if (n == 0) return KDCL_OK;
    cl_kernel k;
    TRY(get_kernel(ctx, "optim", "max_norm", &k));
    size_t local = kdcl_ops_pow2_at_most(SIZE_MAX, kernel_wg(ctx, k, 256));
    while (local > 32 && local / 2 >= cols) local /= 2; /* short rows: smaller groups */
    size_t global;
    if (__builtin_mul_overflow(rows, local, &global))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: %zu rows is too many", op, rows);
    cl_ulong off64 = offset;
    cl_uint nc = (cl_uint)cols;
    const karg a[] = {KA(w->buf), KA(off64), KA(nc), KA(c), KA_LOCAL(local * sizeof(float))};
    TRY(kdcl_ops_set_args(k, "max_norm", a, sizeof a / sizeof a[0]));
    cl_int e = clEnqueueNDRangeKernel(ctx->queue, k, 1, NULL, &global, &local, 0, NULL, NULL);
    if (e != CL_SUCCESS) return kdcl_cl_fail(e, "clEnqueueNDRangeKernel(max_norm)");
    return kdcl_prof_op(ctx, "max_norm");
}

kdcl_status kdcl_op_sgd_max_norm(kdcl_ctx *ctx, kdcl_tensor *w, const kdcl_tensor *g,
                                 kdcl_tensor *v, size_t offset, size_t rows, size_t cols,
                                 float lr, float momentum, float weight_decay, float c)
{
    static const char *op = "kdcl_op_sgd_max_norm";
    size_t n = 0;
    TRY(max_norm_args(op, c, rows, cols, &n));
    TRY(sgd_args(op, w, g, v, offset, n, lr, momentum, weight_decay));
    if (n == 0) return KDCL_OK;
    cl_kernel k;
    TRY(get_kernel(ctx, "optim", "sgd_max_norm", &k));
    size_t local = kdcl_ops_pow2_at_most(SIZE_MAX, kernel_wg(ctx, k, 256)), span = 1;
    const int cpu = (ctx->dev.type & CL_DEVICE_TYPE_CPU) != 0;
    const int pocl = strstr(ctx->dev.platform_name, "Portable Computing Language") != NULL;
    if (cpu && !pocl && rows >= 8 * (size_t)(ctx->dev.compute_units ? ctx->dev.compute_units : 1)) {
        /* CPU runtimes other than PoCL (Intel's vectorises across work-items,
         * which turns the contiguous runs below into gathers): one work-item
         * per row where the rows alone keep every core busy. The 1200 x 1200
         * update of 784-1200-1200-10 on Intel's runtime: 0.5-1.0 ms against
         * 3.9-6.9 (best of 18 calls, 4 runs each, 2-core EPYC); on PoCL about
         * even (0.6-1.2 against 1.0-1.6 ms), so PoCL keeps the runs */
        local = 1;
        span = cols;
    } else if (ctx->dev.type & CL_DEVICE_TYPE_CPU) {
        /* one contiguous run of >= 32 columns per work-item: measured twice as fast
         * as strided columns on PoCL (784-1200-1200-10: 2.4 ms against 4.8 ms) */
        while (local > 1 && local * 32 > cols) local /= 2;
        span = (cols + local - 1) / local;
    } else {
        while (local > 32 && local / 2 >= cols) local /= 2; /* short rows: smaller groups */
    }
    size_t global;
    if (__builtin_mul_overflow(rows, local, &global))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: %zu rows is too many", op, rows);
    cl_ulong off64 = offset;
    cl_uint nc = (cl_uint)cols, sp = (cl_uint)span;
    const karg a[] = {KA(w->buf), KA(g->buf), KA(v->buf), KA(off64), KA(nc), KA(sp), KA(lr),
                      KA(momentum), KA(weight_decay), KA(c), KA_LOCAL(local * sizeof(float))};
    TRY(kdcl_ops_set_args(k, "sgd_max_norm", a, sizeof a / sizeof a[0]));
    cl_int e = clEnqueueNDRangeKernel(ctx->queue, k, 1, NULL, &global, &local, 0, NULL, NULL);
    if (e != CL_SUCCESS) return kdcl_cl_fail(e, "clEnqueueNDRangeKernel(sgd_max_norm)");
    return kdcl_prof_op(ctx, "sgd_max_norm");
}

/* ---- augment.cl ---- */

kdcl_status kdcl_op_u8_to_float(kdcl_ctx *ctx, const kdcl_tensor *src, kdcl_tensor *dst,
                                size_t n, float scale, float shift)
{
    static const char *op = "kdcl_op_u8_to_float";
    TRY(need_tensor(op, "src", src, KDCL_U8));
    TRY(need_tensor(op, "dst", dst, KDCL_F32));
    TRY(need_range(op, "src", src, 0, n));
    TRY(need_range(op, "dst", dst, 0, n));
    if (n == 0) return KDCL_OK;
    cl_kernel k;
    TRY(get_kernel(ctx, "augment", "u8_to_float", &k));
    cl_ulong n64 = n;
    const karg a[] = {KA(src->buf), KA(dst->buf), KA(n64), KA(scale), KA(shift)};
    TRY(kdcl_ops_set_args(k, "u8_to_float", a, sizeof a / sizeof a[0]));
    return launch1d(ctx, k, "u8_to_float", n);
}

/* The tensor holds at least `batch` examples of `per` elements: with rank >= 2
 * the trailing dimensions must multiply to `per` and batch <= shape[0]. */
static kdcl_status need_examples(const char *op, const char *what, const kdcl_tensor *t,
                                 size_t batch, size_t per)
{
    char s1[96];
    if (t->ndim >= 2) {
        size_t inner = t->numel / t->shape[0];
        if (inner != per || batch > t->shape[0])
            return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                  "%s: %s %s does not hold %zu examples of %zu elements", op, what,
                                  shape_str(t, s1, sizeof s1), batch, per);
    } else if (batch * per > t->numel) {
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "%s: %s %s does not hold %zu examples of %zu elements", op, what,
                              shape_str(t, s1, sizeof s1), batch, per);
    }
    return KDCL_OK;
}

kdcl_status kdcl_op_jitter(kdcl_ctx *ctx, const kdcl_tensor *src, kdcl_tensor *dst, size_t batch,
                           size_t h, size_t w, size_t c, int max_shift, uint64_t seed,
                           uint64_t step, float scale, float shift)
{
    static const char *op = "kdcl_op_jitter";
    TRY(need_tensor(op, "src", src, KDCL_U8));
    TRY(need_tensor(op, "dst", dst, KDCL_F32));
    if (max_shift < 0)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: max_shift = %d is negative", op,
                              max_shift);
    if (h == 0 || w == 0 || c == 0)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: image size %zux%zux%zu has a zero", op,
                              h, w, c);
    size_t per, total;
    if (__builtin_mul_overflow(h, w, &per) || __builtin_mul_overflow(per, c, &per) ||
        __builtin_mul_overflow(per, batch, &total) || total > UINT32_MAX)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "%s: %zu examples of %zux%zux%zu exceed 2^32 elements", op, batch,
                              h, w, c);
    TRY(need_examples(op, "src", src, batch, per));
    TRY(need_examples(op, "dst", dst, batch, per));
    if (total == 0) return KDCL_OK;
    /* no translation: the plain conversion gives the same values (dst[e] =
     * fma(src[e], scale, shift)) without the per-element index arithmetic */
    if (max_shift == 0) return kdcl_op_u8_to_float(ctx, src, dst, total, scale, shift);
    cl_kernel k;
    TRY(get_kernel(ctx, "augment", "jitter", &k));
    cl_uint tot = (cl_uint)total, hh = (cl_uint)h, rowlen = (cl_uint)(w * c), cc = (cl_uint)c;
    cl_int ms = max_shift;
    cl_uint st_lo = (cl_uint)step, st_hi = (cl_uint)(step >> 32);
    cl_uint sd_lo = (cl_uint)seed, sd_hi = (cl_uint)(seed >> 32);
    const karg a[] = {KA(src->buf), KA(dst->buf), KA(tot),   KA(hh),    KA(rowlen),
                      KA(cc),       KA(ms),       KA(st_lo), KA(st_hi), KA(sd_lo),
                      KA(sd_hi),    KA(scale),    KA(shift)};
    TRY(kdcl_ops_set_args(k, "jitter", a, sizeof a / sizeof a[0]));
    return launch1d(ctx, k, "jitter", total);
}
