/* The only file that calls CLBlast. Row-major GEMM with full argument
 * validation and CLBlast statuses mapped to kdcl errors; on CPUs the operands
 * are packed by kdcl (cl/gemm_pack.cl) so CLBlast runs its kernel alone. */
#include <clblast_c.h>
#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ops_util.h"
#include "kdcl/gemm.h"
#include "kdcl/tensor.h"
#include "runtime/ctx.h"

const char *kdcl_clblast_status_name(int st)
{
    switch (st) {
#define N(x) case x: return #x;
    N(CLBlastSuccess)
    N(CLBlastOpenCLCompilerNotAvailable)
    N(CLBlastTempBufferAllocFailure)
    N(CLBlastOpenCLOutOfResources)
    N(CLBlastOpenCLOutOfHostMemory)
    N(CLBlastOpenCLBuildProgramFailure)
    N(CLBlastInvalidValue)
    N(CLBlastInvalidCommandQueue)
    N(CLBlastInvalidMemObject)
    N(CLBlastInvalidBinary)
    N(CLBlastInvalidBuildOptions)
    N(CLBlastInvalidProgram)
    N(CLBlastInvalidProgramExecutable)
    N(CLBlastInvalidKernelName)
    N(CLBlastInvalidKernelDefinition)
    N(CLBlastInvalidKernel)
    N(CLBlastInvalidArgIndex)
    N(CLBlastInvalidArgValue)
    N(CLBlastInvalidArgSize)
    N(CLBlastInvalidKernelArgs)
    N(CLBlastInvalidLocalNumDimensions)
    N(CLBlastInvalidLocalThreadsTotal)
    N(CLBlastInvalidLocalThreadsDim)
    N(CLBlastInvalidGlobalOffset)
    N(CLBlastInvalidEventWaitList)
    N(CLBlastInvalidEvent)
    N(CLBlastInvalidOperation)
    N(CLBlastInvalidBufferSize)
    N(CLBlastInvalidGlobalWorkSize)
    N(CLBlastNotImplemented)
    N(CLBlastInvalidMatrixA)
    N(CLBlastInvalidMatrixB)
    N(CLBlastInvalidMatrixC)
    N(CLBlastInvalidVectorX)
    N(CLBlastInvalidVectorY)
    N(CLBlastInvalidDimension)
    N(CLBlastInvalidLeadDimA)
    N(CLBlastInvalidLeadDimB)
    N(CLBlastInvalidLeadDimC)
    N(CLBlastInvalidIncrementX)
    N(CLBlastInvalidIncrementY)
    N(CLBlastInsufficientMemoryA)
    N(CLBlastInsufficientMemoryB)
    N(CLBlastInsufficientMemoryC)
    N(CLBlastInsufficientMemoryX)
    N(CLBlastInsufficientMemoryY)
    N(CLBlastInsufficientMemoryTemp)
    N(CLBlastInvalidBatchCount)
    N(CLBlastInvalidOverrideKernel)
    N(CLBlastMissingOverrideParameter)
    N(CLBlastInvalidLocalMemUsage)
    N(CLBlastNoHalfPrecision)
    N(CLBlastNoDoublePrecision)
    N(CLBlastInvalidVectorScalar)
    N(CLBlastInsufficientMemoryScalar)
    N(CLBlastDatabaseError)
    N(CLBlastUnknownError)
    N(CLBlastUnexpectedError)
#undef N
    }
    return "CLBlastUnknownStatus";
}

/* Elements a row-major operand occupies: last element index + 1. */
static int extent(size_t rows, size_t cols, size_t ld, size_t off, size_t *out)
{
    size_t e;
    if (__builtin_mul_overflow(rows - 1, ld, &e) || __builtin_add_overflow(e, cols, &e) ||
        __builtin_add_overflow(e, off, &e))
        return -1;
    *out = e;
    return 0;
}

static kdcl_status check_operand(const char *name, cl_mem buf, size_t rows, size_t cols,
                                 size_t ld, size_t off, size_t stride, size_t batch, size_t m,
                                 size_t n, size_t k, const char *routine)
{
    if (!buf)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s(m=%zu n=%zu k=%zu): matrix %s is NULL",
                              routine, m, n, k, name);
    if (ld < cols)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "%s(m=%zu n=%zu k=%zu): leading dimension of %s is %zu, needs >= %zu",
                              routine, m, n, k, name, ld, cols);
    size_t need, last_off = off;
    if (batch > 1 && (__builtin_mul_overflow(batch - 1, stride, &last_off) ||
                      __builtin_add_overflow(last_off, off, &last_off)))
        return kdcl_set_error(KDCL_ERR_OVERFLOW, "%s: batch extent of %s overflows", routine, name);
    if (extent(rows, cols, ld, last_off, &need) || need > SIZE_MAX / sizeof(float))
        return kdcl_set_error(KDCL_ERR_OVERFLOW, "%s: extent of %s overflows", routine, name);
    size_t bytes = 0;
    cl_int e = clGetMemObjectInfo(buf, CL_MEM_SIZE, sizeof bytes, &bytes, NULL);
    if (e != CL_SUCCESS)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: matrix %s is not a valid buffer (%s)",
                              routine, name, kdcl_cl_error_name(e));
    if (need * sizeof(float) > bytes)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "%s(m=%zu n=%zu k=%zu): matrix %s needs %zu floats "
                              "(offset %zu, ld %zu) but its buffer holds %zu",
                              routine, m, n, k, name, need, off, ld, bytes / sizeof(float));
    return KDCL_OK;
}

static kdcl_status clblast_fail(CLBlastStatusCode st, const char *routine, kdcl_trans ta,
                                kdcl_trans tb, size_t m, size_t n, size_t k, size_t batch)
{
    kdcl_status s = KDCL_ERR_CLBLAST;
    if (st == CLBlastTempBufferAllocFailure || st == CLBlastOpenCLOutOfHostMemory ||
        st == CLBlastOpenCLOutOfResources)
        s = KDCL_ERR_OOM;
    if (st == CLBlastOpenCLBuildProgramFailure) s = KDCL_ERR_BUILD;
    return kdcl_set_error(s, "CLBlast %s(%s%s, m=%zu n=%zu k=%zu, batch=%zu) failed: %s (%d)",
                          routine, ta ? "T" : "N", tb ? "T" : "N", m, n, k, batch,
                          kdcl_clblast_status_name(st), (int)st);
}

static kdcl_status validate(kdcl_trans ta, kdcl_trans tb, size_t m, size_t n, size_t k, cl_mem a,
                            size_t a_off, size_t lda, size_t a_stride, cl_mem b, size_t b_off,
                            size_t ldb, size_t b_stride, cl_mem c, size_t c_off, size_t ldc,
                            size_t c_stride, size_t batch, const char *routine)
{
    kdcl_status s;
    /* Stored shapes (row-major): A is m x k or k x m when transposed. */
    size_t ar = ta ? k : m, ac = ta ? m : k;
    size_t br = tb ? n : k, bc = tb ? k : n;
    if ((s = check_operand("A", a, ar, ac, lda, a_off, a_stride, batch, m, n, k, routine)))
        return s;
    if ((s = check_operand("B", b, br, bc, ldb, b_off, b_stride, batch, m, n, k, routine)))
        return s;
    return check_operand("C", c, m, n, ldc, c_off, c_stride, batch, m, n, k, routine);
}

/* k == 0: C = beta * C, done as a GEMM with a zero inner product would be an
 * error in CLBlast; use k = 1 with alpha = 0 on C itself (A = B = C's first element). */
static kdcl_status scale_only(kdcl_ctx *ctx, size_t m, size_t n, float beta, cl_mem c,
                              size_t c_off, size_t ldc, cl_event *event)
{
    cl_command_queue q = ctx->queue;
    CLBlastStatusCode st = CLBlastSgemm(CLBlastLayoutColMajor, CLBlastTransposeNo,
                                        CLBlastTransposeNo, n, m, 1, 0.0f, c, c_off, n, c, c_off, 1,
                                        beta, c, c_off, ldc, &q, event);
    if (st != CLBlastSuccess) return clblast_fail(st, "Sgemm", 0, 0, m, n, 0, 1);
    return KDCL_OK;
}

/* ---- operand packing (see kdcl_gemm_pack_info in gemm.h) ----------------
 * In CLBlast's column-major view of a kdcl call (below) the product is
 * C'(M x N) = A'(M x K) B'(N x K)^T with M = n, N = m, K = k, A' = kdcl's B and
 * B' = kdcl's A. Its Xgemm kernel (GEMMK = 0) reads A' as stored (row-major
 * K x M) and B' transposed (row-major K x N) and writes C' column-major
 * (row-major N x M: kdcl's C), with no copies when M, N, K are multiples of
 * MWG, NWG, KWG, every leading dimension equals its padded dimension and no
 * offset is used. */
static size_t round_up(size_t x, size_t t) { return (x + t - 1) / t * t; }

static kdcl_status scratch(kdcl_ctx *ctx, int i, size_t numel, cl_mem *out)
{
    kdcl_tensor *t = &ctx->gemm_scratch[i];
    if (!t->buf || t->capacity < numel) {
        kdcl_tensor_free(ctx, t);
        kdcl_status s = kdcl_tensor_alloc(ctx, t, KDCL_F32, 1, &numel);
        if (s) return s;
    }
    *out = t->buf;
    return KDCL_OK;
}

static kdcl_status launch2(kdcl_ctx *ctx, cl_kernel k, const char *name, size_t gx, size_t gy,
                           cl_event *event)
{
    size_t g[2] = {gx, gy}, l[2] = {8, 8};
    cl_int e = clEnqueueNDRangeKernel(ctx->queue, k, 2, NULL, g,
                                      (gx % 8 == 0 && gy % 8 == 0) ? l : NULL, 0, NULL, event);
    if (e != CL_SUCCESS) {
        char what[96];
        snprintf(what, sizeof what, "clEnqueueNDRangeKernel(%s)", name);
        return kdcl_cl_fail(e, what);
    }
    return KDCL_OK;
}

/* dst (row-major P x Q, zero-padded) = op(src) of rows x cols. */
static kdcl_status pack(kdcl_ctx *ctx, cl_mem src, size_t off, size_t ld, size_t rows,
                        size_t cols, int trans, cl_mem dst, size_t P, size_t Q)
{
    cl_kernel k;
    kdcl_status s = kdcl_kernel_get(ctx, "gemm_pack", "gemm_pack", &k);
    if (s) return s;
    cl_ulong o = off, l = ld;
    cl_uint r = (cl_uint)rows, c = (cl_uint)cols, t = (cl_uint)trans, p = (cl_uint)P,
            q = (cl_uint)Q;
    const karg a[] = {KA(src), KA(o), KA(l), KA(r), KA(c), KA(t), KA(dst), KA(p), KA(q)};
    if ((s = kdcl_ops_set_args(k, "gemm_pack", a, sizeof a / sizeof a[0]))) return s;
    return launch2(ctx, k, "gemm_pack", (Q + 7) / 8, (P + 7) / 8, NULL);
}

/* dst[off + r*ld + c] = src[r*src_ld + c] + beta * dst[...], rows x cols. */
static kdcl_status unpack(kdcl_ctx *ctx, cl_mem src, size_t src_ld, size_t rows, size_t cols,
                          cl_mem dst, size_t off, size_t ld, float beta, cl_event *event)
{
    cl_kernel k;
    kdcl_status s = kdcl_kernel_get(ctx, "gemm_pack", "gemm_unpack", &k);
    if (s) return s;
    cl_ulong o = off, l = ld;
    cl_uint sl = (cl_uint)src_ld, r = (cl_uint)rows, c = (cl_uint)cols;
    const karg a[] = {KA(src), KA(sl), KA(r), KA(c), KA(dst), KA(o), KA(l), KA(beta)};
    if ((s = kdcl_ops_set_args(k, "gemm_unpack", a, sizeof a / sizeof a[0]))) return s;
    return launch2(ctx, k, "gemm_unpack", (cols + 7) / 8, rows, event);
}

/* 1 when kdcl_gemm should pack this call (see kdcl_gemm_pack_info). */
static int pack_wanted(const kdcl_ctx *ctx, size_t M, size_t N, size_t K, size_t *Mp, size_t *Np,
                       size_t *Kp)
{
    const kdcl_gemm_pack_info *p = &ctx->gemm_pack;
    if (!p->enabled) return 0; /* enabled implies known tile sizes */
    *Mp = round_up(M, p->mwg);
    *Np = round_up(N, p->nwg);
    *Kp = round_up(K, p->kwg);
    if (*Mp > UINT_MAX / 2 || *Np > UINT_MAX / 2 || *Kp > UINT_MAX / 2) return 0;
    double vol = (double)M * (double)N * (double)K;
    double vol_p = (double)*Mp * (double)*Np * (double)*Kp;
    if (vol_p > p->max_waste * vol) return 0;
    double t = (double)p->min_size;
    return vol_p >= t * t * t;
}

static kdcl_status gemm_packed(kdcl_ctx *ctx, kdcl_trans ta, kdcl_trans tb, size_t m, size_t n,
                               size_t k, size_t Mp, size_t Np, size_t Kp, float alpha, cl_mem a,
                               size_t a_off, size_t lda, cl_mem b, size_t b_off, size_t ldb,
                               float beta, cl_mem c, size_t c_off, size_t ldc, cl_event *event)
{
    const size_t M = n, N = m, K = k;
    /* A' = kdcl's B as row-major K x M: stored so when B is not transposed */
    int need_a = tb || K != Kp || M != Mp || ldb != M || b_off;
    /* B' = kdcl's A as row-major K x N: stored so when A is transposed */
    int need_b = !ta || K != Kp || N != Np || lda != N || a_off;
    int need_c = N != Np || M != Mp || ldc != M || c_off;
    cl_mem pa = b, pb = a, pc = c;
    size_t pa_off = b_off, pb_off = a_off, pc_off = c_off;
    kdcl_status s;
    if (need_a) {
        if ((s = scratch(ctx, 0, Kp * Mp, &pa)) ||
            (s = pack(ctx, b, b_off, ldb, K, M, tb, pa, Kp, Mp)))
            return s;
        pa_off = 0;
    }
    if (need_b) {
        if ((s = scratch(ctx, 1, Kp * Np, &pb)) ||
            (s = pack(ctx, a, a_off, lda, K, N, !ta, pb, Kp, Np)))
            return s;
        pb_off = 0;
    }
    if (need_c) {
        if ((s = scratch(ctx, 2, Np * Mp, &pc))) return s;
        pc_off = 0;
    }
    cl_command_queue q = ctx->queue;
    CLBlastStatusCode st = CLBlastSgemm(
        CLBlastLayoutColMajor, CLBlastTransposeNo, CLBlastTransposeYes, Mp, Np, Kp, alpha, pa,
        pa_off, Mp, pb, pb_off, Np, need_c ? 0.0f : beta, pc, pc_off, Mp, &q,
        need_c ? NULL : event);
    if (st != CLBlastSuccess) return clblast_fail(st, "Sgemm", ta, tb, m, n, k, 1);
    if (need_c) return unpack(ctx, pc, Mp, m, n, c, c_off, ldc, beta, event);
    return KDCL_OK;
}

kdcl_gemm_pack_info kdcl_gemm_packing(const kdcl_ctx *ctx) { return ctx->gemm_pack; }

kdcl_status kdcl_gemm_set_packing(kdcl_ctx *ctx, const kdcl_gemm_pack_info *p)
{
    if (p->enabled && (!p->mwg || !p->nwg || !p->kwg || p->mwg > 4096 || p->nwg > 4096 ||
                       p->kwg > 4096 || !(p->max_waste >= 1.0)))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "GEMM packing needs tile sizes in 1..4096 (got %zu, %zu, %zu) and "
                              "max_waste >= 1",
                              p->mwg, p->nwg, p->kwg);
    ctx->gemm_pack = *p;
    return KDCL_OK;
}

kdcl_status kdcl_gemm(kdcl_ctx *ctx, kdcl_trans ta, kdcl_trans tb, size_t m, size_t n, size_t k,
                      float alpha, cl_mem a, size_t a_off, size_t lda, cl_mem b, size_t b_off,
                      size_t ldb, float beta, cl_mem c, size_t c_off, size_t ldc, cl_event *event)
{
    if (event) *event = NULL;
    if (m == 0 || n == 0) return KDCL_OK;
    if (k == 0) {
        kdcl_status s = check_operand("C", c, m, n, ldc, c_off, 0, 1, m, n, k, "Sgemm");
        return s ? s : scale_only(ctx, m, n, beta, c, c_off, ldc, event);
    }
    kdcl_status s = validate(ta, tb, m, n, k, a, a_off, lda, 0, b, b_off, ldb, 0, c, c_off, ldc,
                             0, 1, "Sgemm");
    if (s) return s;
    size_t Mp, Np, Kp;
    if (pack_wanted(ctx, n, m, k, &Mp, &Np, &Kp))
        return gemm_packed(ctx, ta, tb, m, n, k, Mp, Np, Kp, alpha, a, a_off, lda, b, b_off, ldb,
                           beta, c, c_off, ldc, event);
    cl_command_queue q = ctx->queue;
    /* Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: the
     * same buffers and flags with the operands swapped. CLBlast's indirect
     * kernel writes a column-major C and wants its first operand as stored
     * column-major and its second transposed; called row-major it copies C
     * through a transposed temporary on every call, and transposes one operand
     * more than this form does (forward NT: 3 copy kernels -> 2, weight
     * gradients TN: 1 -> 0 beyond padding, input gradients NN: 2 -> 1). */
    CLBlastStatusCode st =
        CLBlastSgemm(CLBlastLayoutColMajor, tb ? CLBlastTransposeYes : CLBlastTransposeNo,
                     ta ? CLBlastTransposeYes : CLBlastTransposeNo, n, m, k, alpha, b, b_off, ldb,
                     a, a_off, lda, beta, c, c_off, ldc, &q, event);
    if (st != CLBlastSuccess) return clblast_fail(st, "Sgemm", ta, tb, m, n, k, 1);
    return KDCL_OK;
}

kdcl_status kdcl_gemm_batched(kdcl_ctx *ctx, kdcl_trans ta, kdcl_trans tb, size_t m, size_t n,
                              size_t k, float alpha, cl_mem a, size_t a_off, size_t lda,
                              size_t a_stride, cl_mem b, size_t b_off, size_t ldb, size_t b_stride,
                              float beta, cl_mem c, size_t c_off, size_t ldc, size_t c_stride,
                              size_t batch, cl_event *event)
{
    if (event) *event = NULL;
    if (m == 0 || n == 0 || batch == 0) return KDCL_OK;
    if (k == 0)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "SgemmStridedBatched(m=%zu n=%zu k=0): k must be positive", m, n);
    kdcl_status s = validate(ta, tb, m, n, k, a, a_off, lda, a_stride, b, b_off, ldb, b_stride, c,
                             c_off, ldc, c_stride, batch, "SgemmStridedBatched");
    if (s) return s;
    cl_command_queue q = ctx->queue;
    CLBlastStatusCode st = CLBlastSgemmStridedBatched(
        CLBlastLayoutColMajor, tb ? CLBlastTransposeYes : CLBlastTransposeNo,
        ta ? CLBlastTransposeYes : CLBlastTransposeNo, n, m, k, alpha, b, b_off, ldb, b_stride, a,
        a_off, lda, a_stride, beta, c, c_off, ldc, c_stride, batch, &q, event);
    if (st != CLBlastSuccess)
        return clblast_fail(st, "SgemmStridedBatched", ta, tb, m, n, k, batch);
    return KDCL_OK;
}

/* ---- CLBlast tuning parameters as data -------------------------------------
 * CLBlast's built-in database misses many devices (PoCL on most CPUs falls back
 * to generic defaults far from the hardware). kdcl applies, per context:
 *   1. $KDCL_CACHE_DIR/clblast/<key>.json written by `kdcl tune` for this
 *      exact device + driver, else
 *   2. the parameters shipped in kdcl_gemm_tuned[] for a matching device.
 * KDCL_NO_TUNING=1 keeps CLBlast's own choice. */

typedef struct {
    const char *kernel;
    size_t n;
    const char *names[16];
    size_t values[16];
} tuned_kernel;

typedef struct {
    const char *platform_substr; /* matched case-sensitively */
    cl_device_type type;
    const char *device_substr;   /* "" matches any device of that platform and type */
    const char *source;          /* where the numbers come from */
    tuned_kernel kernels[2];
} tuned_device;

#include "core/gemm_tuned.h"

/* Remember the tile sizes and switch size kdcl applies (for packing). */
static void note_params(kdcl_ctx *ctx, const tuned_kernel *k)
{
    kdcl_gemm_pack_info *p = &ctx->gemm_pack;
    int xgemm = !strcmp(k->kernel, "Xgemm"), routine = !strcmp(k->kernel, "GemmRoutine");
    for (size_t i = 0; i < k->n; i++) {
        if (xgemm && !strcmp(k->names[i], "MWG")) p->mwg = k->values[i];
        if (xgemm && !strcmp(k->names[i], "NWG")) p->nwg = k->values[i];
        if (xgemm && !strcmp(k->names[i], "KWG")) p->kwg = k->values[i];
        if (xgemm && !strcmp(k->names[i], "GEMMK")) ctx->gemm_pack_gemmk = (int)k->values[i];
        if (routine && !strcmp(k->names[i], "XGEMM_MIN_INDIRECT_SIZE"))
            p->min_size = k->values[i];
    }
}

static kdcl_status override_kernel(kdcl_ctx *ctx, const tuned_kernel *k)
{
    CLBlastStatusCode st = CLBlastOverrideParameters(ctx->dev.device, k->kernel,
                                                     CLBlastPrecisionSingle, k->n, (const char **)k->names,
                                                     k->values);
    if (st != CLBlastSuccess)
        return kdcl_set_error(KDCL_ERR_CLBLAST, "CLBlastOverrideParameters(%s) on %s failed: %s",
                              k->kernel, ctx->dev.name, kdcl_clblast_status_name(st));
    note_params(ctx, k);
    return KDCL_OK;
}

kdcl_status kdcl_gemm_tuning_path(const kdcl_device_info *dev, char *buf, size_t size)
{
    char dir[4096];
    kdcl_status s = kdcl_cache_dir(dir, sizeof dir, 0);
    if (s) return s;
    uint64_t h = KDCL_HASH64_INIT;
    h = kdcl_hash64(h, dev->name, strlen(dev->name) + 1);
    h = kdcl_hash64(h, dev->platform_name, strlen(dev->platform_name) + 1);
    h = kdcl_hash64(h, dev->driver_version, strlen(dev->driver_version) + 1);
    int w = snprintf(buf, size, "%s/clblast/%016llx.json", dir, (unsigned long long)h);
    if (w < 0 || (size_t)w >= size) return kdcl_set_error(KDCL_ERR_IO, "tuning path too long");
    return KDCL_OK;
}

/* Parse {"kernels": {"Xgemm": {"MWG": 64, ...}, ...}} and apply each kernel. */
static kdcl_status apply_tuning_file(kdcl_ctx *ctx, const char *path, int *applied)
{
    *applied = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return KDCL_OK; /* none: not an error */
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    cJSON *root = cJSON_Parse(buf);
    cJSON *kernels = root ? cJSON_GetObjectItemCaseSensitive(root, "kernels") : NULL;
    if (!cJSON_IsObject(kernels)) {
        cJSON_Delete(root);
        return kdcl_set_error(KDCL_ERR_FORMAT,
                              "%s: not a kdcl tuning file (no \"kernels\" object); delete it or "
                              "run kdcl tune again",
                              path);
    }
    kdcl_status s = KDCL_OK;
    cJSON *kern;
    cJSON_ArrayForEach(kern, kernels)
    {
        tuned_kernel tk = {kern->string, 0, {0}, {0}};
        cJSON *p;
        cJSON_ArrayForEach(p, kern)
        {
            if (tk.n >= 16 || !cJSON_IsNumber(p) || p->valuedouble < 0) {
                s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: bad parameter '%s' of kernel %s", path,
                                   p->string ? p->string : "?", kern->string);
                break;
            }
            tk.names[tk.n] = p->string;
            tk.values[tk.n++] = (size_t)p->valuedouble;
        }
        if (s || (s = override_kernel(ctx, &tk))) break;
        (*applied)++;
    }
    cJSON_Delete(root);
    return s;
}

static kdcl_status apply_tuning(kdcl_ctx *ctx, const char **source)
{
    if (source) *source = "CLBlast defaults";
    const char *off = getenv("KDCL_NO_TUNING");
    if (off && *off && strcmp(off, "0") != 0) return KDCL_OK;
    char path[4400];
    int applied = 0;
    kdcl_status s = kdcl_gemm_tuning_path(&ctx->dev, path, sizeof path);
    if (!s) s = apply_tuning_file(ctx, path, &applied);
    if (s) return s;
    if (applied) {
        if (source) *source = "kdcl tune (cache)";
        return KDCL_OK;
    }
    for (size_t i = 0; i < sizeof kdcl_gemm_tuned / sizeof kdcl_gemm_tuned[0]; i++) {
        const tuned_device *t = &kdcl_gemm_tuned[i];
        if (!strstr(ctx->dev.platform_name, t->platform_substr) || !(ctx->dev.type & t->type) ||
            !strstr(ctx->dev.name, t->device_substr))
            continue;
        for (size_t k = 0; k < 2 && t->kernels[k].kernel; k++)
            if ((s = override_kernel(ctx, &t->kernels[k]))) return s;
        if (source) *source = t->source;
        return KDCL_OK;
    }
    return KDCL_OK;
}

/* Packing on for CPUs whose Xgemm tiles kdcl set (GEMMK = 0 only: the other
 * kernel wants other orientations); KDCL_GEMM_PACK=0/1 overrides. */
static void decide_packing(kdcl_ctx *ctx)
{
    kdcl_gemm_pack_info *p = &ctx->gemm_pack;
    p->max_waste = 1.35;
    int known = p->mwg && p->nwg && p->kwg && ctx->gemm_pack_gemmk == 0;
    const char *env = getenv("KDCL_GEMM_PACK");
    if (env && *env)
        p->enabled = known && strcmp(env, "0") != 0;
    else
        p->enabled = known && (ctx->dev.type & CL_DEVICE_TYPE_CPU);
}

kdcl_status kdcl_gemm_apply_tuning(kdcl_ctx *ctx, const char **source)
{
    kdcl_status r = apply_tuning(ctx, source);
    if (!r) decide_packing(ctx);
    return r;
}
