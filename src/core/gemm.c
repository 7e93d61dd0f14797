/* The only file that calls CLBlast. Row-major GEMM with full argument
 * validation and CLBlast statuses mapped to kdcl errors; on CPUs the operands
 * are packed by kdcl (cl/gemm_pack.cl) so CLBlast runs its kernel alone. Also
 * 2-D convolution as im2col + GEMM (kdcl/conv.h): im2col / col2im by kdcl's
 * kernels (cl/conv.cl) or CLBlast's, or the forward by CLBlast's convgemm,
 * selected per context (kdcl_conv_set_algo, KDCL_CONV). */
#include <clblast_c.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/conv_direct.h"
#include "core/ops_util.h"
#include "kdcl/file.h"
#include "kdcl/gemm.h"
#include "kdcl/tensor.h"
#include "kdcl/profile.h"
#include "runtime/ctx.h"

/* CLBlast keeps compiled programs in a process-wide cache (per context and
 * device) that nothing releases before exit, where its static destructors
 * release programs whose OpenCL implementation may already be gone (oclgrind
 * crashes there). kdcl counts its live contexts and clears that cache when
 * the last one is destroyed. While other contexts live, a destroyed
 * context's entries stay cached (clearing them too would only cost the live
 * ones a recompile; CLBlast has no per-context clear). */
static pthread_mutex_t clblast_users_lock = PTHREAD_MUTEX_INITIALIZER;
static size_t clblast_users;

/* CLBlast's parameter overrides (CLBlastOverrideParameters, made when a
 * context's GEMM layer is set up on its first use) change a process-wide
 * database that CLBlast's routines read while they run. With contexts used
 * from several threads (kdcl specialists train --jobs: one context per
 * worker), one context's setup can meet another context's products, which
 * CLBlast does not guard against (a torn std::string in its database). So
 * overrides and the cache clear take this lock for writing, and every CLBlast
 * routine for reading: products still run concurrently, never beside a
 * change of parameters. */
static pthread_rwlock_t clblast_params = PTHREAD_RWLOCK_INITIALIZER;
#define CLBLAST_READ(st, call)                    \
    do {                                          \
        pthread_rwlock_rdlock(&clblast_params);   \
        (st) = (call);                            \
        pthread_rwlock_unlock(&clblast_params);   \
    } while (0)

static void clblast_users_acquire(void)
{
    pthread_mutex_lock(&clblast_users_lock);
    clblast_users++;
    pthread_mutex_unlock(&clblast_users_lock);
}

static void clblast_users_release(void)
{
    pthread_mutex_lock(&clblast_users_lock);
    if (clblast_users > 0 && --clblast_users == 0) {
        pthread_rwlock_wrlock(&clblast_params);
        CLBlastClearCache();
        pthread_rwlock_unlock(&clblast_params);
    }
    pthread_mutex_unlock(&clblast_users_lock);
}

/* ---- the GEMM layer's state of a context -----------------------------------
 * Created on the context's first GEMM, convolution or query (gemm_state_get),
 * kept in the context's extension slot KDCL_EXT_GEMM and destroyed with it:
 * the CLBlast parameters applied (cache, shipped, defaults) and the packing
 * they allow, the convolution algorithm, and scratch buffers grown on demand.
 * A context counts as a CLBlast user from then until it is destroyed. */
#define GEMM_SCRATCH_SLOTS 4
typedef struct gemm_state {
    char tuning[1600];          /* which GEMM parameters were applied (kdcl_ctx_gemm_tuning) */
    char note[768];             /* a tuning cache file that was ignored, and why */
    const char *source;         /* "CLBlast defaults", "kdcl tune (cache)", a shipped set */
    const char *source_kind;    /* "defaults", "cache", "shipped" (kdcl_gemm_params_source) */
    kdcl_gemm_pack_info pack;   /* kdcl's operand packing */
    int gemmk;                  /* GEMMK of the Xgemm parameters applied */
    int small;                  /* narrow products on kdcl's kernels (gemm_small_form) */
    int direct;                 /* direct 3x3 convolutions (conv_direct) */
    char autotune_what[160];    /* the set automatic tuning chose, when it ran now */
    int conv_algo;              /* kdcl_conv_algo as set (KDCL_CONV, kdcl_conv_set_algo) */
    kdcl_tensor scratch[GEMM_SCRATCH_SLOTS]; /* kdcl_gemm's packed A, B and C, then conv
                                                columns in CLBlast's layout */
} gemm_state;

static kdcl_status gemm_setup(kdcl_ctx *ctx, gemm_state *g);

static void gemm_state_destroy(kdcl_ctx *ctx, void *state)
{
    gemm_state *g = state;
    for (size_t i = 0; i < GEMM_SCRATCH_SLOTS; i++) kdcl_tensor_free(ctx, &g->scratch[i]);
    free(g);
    clblast_users_release(); /* the last context clears CLBlast's cache */
}

/* The context's GEMM state, set up on first use. A failed setup (shipped
 * parameters CLBlast refuses, a bad KDCL_CONV) leaves none: each later call
 * tries again and fails the same way. */
static kdcl_status gemm_state_get(kdcl_ctx *ctx, gemm_state **out)
{
    gemm_state *g = kdcl__ctx_ext(ctx, KDCL_EXT_GEMM);
    if (g) {
        *out = g;
        return KDCL_OK;
    }
    g = calloc(1, sizeof *g);
    if (!g) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory setting up GEMM");
    clblast_users_acquire(); /* released by gemm_state_destroy */
    kdcl__ctx_ext_set(ctx, KDCL_EXT_GEMM, g, gemm_state_destroy);
    pthread_rwlock_wrlock(&clblast_params); /* the overrides, apart from every product */
    kdcl_status s = gemm_setup(ctx, g);
    pthread_rwlock_unlock(&clblast_params);
    if (s) {
        kdcl__ctx_ext_set(ctx, KDCL_EXT_GEMM, NULL, NULL);
        gemm_state_destroy(ctx, g);
        return s;
    }
    *out = g;
    return KDCL_OK;
}

/* For the const queries: the state, set up if need be (setting up changes
 * no result of the context, only when CLBlast's parameters are applied). */
static gemm_state *gemm_state_peek(const kdcl_ctx *ctx)
{
    gemm_state *g = NULL;
    return gemm_state_get((kdcl_ctx *)ctx, &g) ? NULL : g;
}

kdcl_tensor *kdcl__gemm_scratch(kdcl_ctx *ctx, size_t i)
{
    gemm_state *g = kdcl__ctx_ext(ctx, KDCL_EXT_GEMM);
    return g && i < GEMM_SCRATCH_SLOTS ? &g->scratch[i] : NULL;
}

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
    CLBlastStatusCode st;
    CLBLAST_READ(st, CLBlastSgemm(CLBlastLayoutColMajor, CLBlastTransposeNo, CLBlastTransposeNo, n,
                                  m, 1, 0.0f, c, c_off, n, c, c_off, 1, beta, c, c_off, ldc, &q,
                                  event));
    if (st != CLBlastSuccess) return clblast_fail(st, "Sgemm", 0, 0, m, n, 0, 1);
    return kdcl_prof_op(ctx, "gemm");
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
    gemm_state *g = NULL;
    kdcl_status gs = gemm_state_get(ctx, &g);
    if (gs) return gs;
    kdcl_tensor *t = &g->scratch[i];
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
    return kdcl_prof_op(ctx, name);
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

/* 1 when the packed operands of an Mp x Np x Kp product fit the device's
 * largest buffer (each is a scratch buffer of its own); else the product
 * runs unpacked. */
static int pack_fits(const kdcl_ctx *ctx, size_t Mp, size_t Np, size_t Kp)
{
    const double cap = (double)ctx->dev.max_alloc / sizeof(float);
    if (!ctx->dev.max_alloc) return 1;
    return (double)Kp * (double)Mp <= cap && (double)Kp * (double)Np <= cap &&
           (double)Np * (double)Mp <= cap;
}

/* 1 when kdcl_gemm should pack this call (see kdcl_gemm_pack_info). */
static int pack_wanted(const kdcl_ctx *ctx, const gemm_state *g, size_t M, size_t N, size_t K,
                       size_t *Mp, size_t *Np, size_t *Kp)
{
    const kdcl_gemm_pack_info *p = &g->pack;
    if (!p->enabled) return 0; /* enabled implies known tile sizes */
    *Mp = round_up(M, p->mwg);
    *Np = round_up(N, p->nwg);
    *Kp = round_up(K, p->kwg);
    if (*Mp > UINT_MAX / 2 || *Np > UINT_MAX / 2 || *Kp > UINT_MAX / 2) return 0;
    if (!pack_fits(ctx, *Mp, *Np, *Kp)) return 0;
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
    CLBlastStatusCode st;
    CLBLAST_READ(st, CLBlastSgemm(CLBlastLayoutColMajor, CLBlastTransposeNo, CLBlastTransposeYes,
                                  Mp, Np, Kp, alpha, pa, pa_off, Mp, pb, pb_off, Np,
                                  need_c ? 0.0f : beta, pc, pc_off, Mp, &q,
                                  need_c ? NULL : event));
    if (st != CLBlastSuccess) return clblast_fail(st, "Sgemm", ta, tb, m, n, k, 1);
    if ((s = kdcl_prof_op(ctx, "gemm"))) return s;
    if (need_c) return unpack(ctx, pc, Mp, m, n, c, c_off, ldc, beta, event);
    return KDCL_OK;
}

/* ---- narrow products (cl/gemm_small.cl) --------------------------------------
 * A linear layer's three products with a 10-wide output layer (forward NT
 * with n = 10, weight gradient TN with m = 10, input gradient NN with
 * k = 10) ran on CLBlast's direct kernel at 5-9 GFLOP/s under PoCL, and
 * padding them to the indirect kernel's 64-wide tiles multiplies the work by
 * 6.4. kdcl's kernels keep the narrow dimension in registers (README, GEMM
 * on CPUs). On by default on CPU devices; KDCL_GEMM_SMALL=0/1 overrides. */
#define SMALL_MAX 16 /* as in cl/gemm_small.cl */

/* The kernel of gemm_small.cl for this product, NULL when none fits. */
static const char *gemm_small_form(kdcl_trans ta, kdcl_trans tb, size_t m, size_t n, size_t k)
{
    if (m > UINT_MAX || n > UINT_MAX || k > UINT_MAX) return NULL;
    if (!ta && tb && n <= SMALL_MAX) return "gemm_small_nt";
    if (ta && !tb && m <= SMALL_MAX) return "gemm_small_tn";
    if (!ta && !tb && k <= SMALL_MAX) return "gemm_small_nn";
    return NULL;
}

static kdcl_status gemm_small(kdcl_ctx *ctx, const char *name, size_t m, size_t n, size_t k,
                              float alpha, cl_mem a, size_t a_off, size_t lda, cl_mem b,
                              size_t b_off, size_t ldb, float beta, cl_mem c, size_t c_off,
                              size_t ldc, cl_event *event)
{
    cl_kernel kern;
    kdcl_status s = kdcl_kernel_get(ctx, "gemm_small", name, &kern);
    if (s) return s;
    cl_uint M = (cl_uint)m, N = (cl_uint)n, K = (cl_uint)k;
    cl_ulong ao = a_off, la = lda, bo = b_off, lb = ldb, co = c_off, lc = ldc;
    const karg args[] = {KA(M),  KA(N),  KA(K),    KA(alpha), KA(a), KA(ao), KA(la),
                         KA(b),  KA(bo), KA(lb),   KA(beta),  KA(c), KA(co), KA(lc)};
    if ((s = kdcl_ops_set_args(kern, name, args, sizeof args / sizeof args[0]))) return s;
    size_t g[2] = {m, 1};
    if (!strcmp(name, "gemm_small_tn")) g[0] = (n + 7) / 8;
    if (!strcmp(name, "gemm_small_nn")) {
        g[0] = (n + 7) / 8;
        g[1] = (m + 3) / 4;
    }
    cl_int e = clEnqueueNDRangeKernel(ctx->queue, kern, 2, NULL, g, NULL, 0, NULL, event);
    if (e != CL_SUCCESS) {
        char what[96];
        snprintf(what, sizeof what, "clEnqueueNDRangeKernel(%s)", name);
        return kdcl_cl_fail(e, what);
    }
    return kdcl_prof_op(ctx, "gemm");
}

void kdcl__gemm_set_small(kdcl_ctx *ctx, int on)
{
    gemm_state *g = NULL;
    if (!gemm_state_get(ctx, &g)) g->small = on;
}

static void decide_direct(kdcl_ctx *ctx, gemm_state *g);

void kdcl__conv_set_direct(kdcl_ctx *ctx, int on)
{
    gemm_state *g = NULL;
    if (gemm_state_get(ctx, &g)) return;
    if (on < 0)
        decide_direct(ctx, g);
    else
        g->direct = on;
}

kdcl_gemm_pack_info kdcl_gemm_packing(const kdcl_ctx *ctx)
{
    const gemm_state *g = gemm_state_peek(ctx);
    return g ? g->pack : (kdcl_gemm_pack_info){0};
}

kdcl_status kdcl_gemm_set_packing(kdcl_ctx *ctx, const kdcl_gemm_pack_info *p)
{
    if (p->enabled && (!p->mwg || !p->nwg || !p->kwg || p->mwg > 4096 || p->nwg > 4096 ||
                       p->kwg > 4096 || !(p->max_waste >= 1.0)))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "GEMM packing needs tile sizes in 1..4096 (got %zu, %zu, %zu) and "
                              "max_waste >= 1",
                              p->mwg, p->nwg, p->kwg);
    gemm_state *g;
    kdcl_status s = gemm_state_get(ctx, &g);
    if (s) return s;
    g->pack = *p;
    return KDCL_OK;
}

kdcl_status kdcl_gemm(kdcl_ctx *ctx, kdcl_trans ta, kdcl_trans tb, size_t m, size_t n, size_t k,
                      float alpha, cl_mem a, size_t a_off, size_t lda, cl_mem b, size_t b_off,
                      size_t ldb, float beta, cl_mem c, size_t c_off, size_t ldc, cl_event *event)
{
    if (event) *event = NULL;
    if (m == 0 || n == 0) return KDCL_OK;
    gemm_state *g;
    kdcl_status s = gemm_state_get(ctx, &g);
    if (s) return s;
    if (k == 0) {
        s = check_operand("C", c, m, n, ldc, c_off, 0, 1, m, n, k, "Sgemm");
        return s ? s : scale_only(ctx, m, n, beta, c, c_off, ldc, event);
    }
    s = validate(ta, tb, m, n, k, a, a_off, lda, 0, b, b_off, ldb, 0, c, c_off, ldc, 0, 1,
                 "Sgemm");
    if (s) return s;
    const char *small = g->small ? gemm_small_form(ta, tb, m, n, k) : NULL;
    if (small)
        return gemm_small(ctx, small, m, n, k, alpha, a, a_off, lda, b, b_off, ldb, beta, c,
                          c_off, ldc, event);
    size_t Mp, Np, Kp;
    if (pack_wanted(ctx, g, n, m, k, &Mp, &Np, &Kp))
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
    CLBlastStatusCode st;
    CLBLAST_READ(st, CLBlastSgemm(CLBlastLayoutColMajor,
                                  tb ? CLBlastTransposeYes : CLBlastTransposeNo,
                                  ta ? CLBlastTransposeYes : CLBlastTransposeNo, n, m, k, alpha, b,
                                  b_off, ldb, a, a_off, lda, beta, c, c_off, ldc, &q, event));
    if (st != CLBlastSuccess) return clblast_fail(st, "Sgemm", ta, tb, m, n, k, 1);
    return kdcl_prof_op(ctx, "gemm");
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
    gemm_state *g;
    kdcl_status s = gemm_state_get(ctx, &g);
    if (s) return s;
    s = validate(ta, tb, m, n, k, a, a_off, lda, a_stride, b, b_off, ldb, b_stride, c, c_off, ldc,
                 c_stride, batch, "SgemmStridedBatched");
    if (s) return s;
    cl_command_queue q = ctx->queue;
    CLBlastStatusCode st;
    CLBLAST_READ(st, CLBlastSgemmStridedBatched(
                         CLBlastLayoutColMajor, tb ? CLBlastTransposeYes : CLBlastTransposeNo,
                         ta ? CLBlastTransposeYes : CLBlastTransposeNo, n, m, k, alpha, b, b_off,
                         ldb, b_stride, a, a_off, lda, a_stride, beta, c, c_off, ldc, c_stride,
                         batch, &q, event));
    if (st != CLBlastSuccess)
        return clblast_fail(st, "SgemmStridedBatched", ta, tb, m, n, k, batch);
    return kdcl_prof_op(ctx, "gemm batched");
}

/* ---- CLBlast tuning parameters as data -------------------------------------
 * CLBlast's built-in database misses many devices (PoCL on most CPUs falls back
 * to generic defaults far from the hardware). kdcl applies, per context:
 *   1. $KDCL_CACHE_DIR/clblast/<key>.json written by `kdcl tune` for this
 *      exact device + driver, else
 *   2. the parameters shipped in kdcl_gemm_tuned[] for a matching device.
 * KDCL_NO_TUNING=1 keeps CLBlast's own choice. */

#include "core/gemm_internal.h" /* tuned_kernel, the tuning-file parser */

typedef struct {
    const char *platform_substr; /* matched case-sensitively */
    cl_device_type type;
    const char *device_substr;   /* "" matches any device of that platform and type */
    const char *source;          /* where the numbers come from */
    tuned_kernel kernels[3];
} tuned_device;

#include "core/gemm_tuned.h"

#define AUTOTUNE_SOURCE "kdcl automatic tuning" /* "source" of the files it writes */

/* Remember the tile sizes and switch size kdcl applies (for packing). */
static void note_params(gemm_state *g, const tuned_kernel *k)
{
    kdcl_gemm_pack_info *p = &g->pack;
    int xgemm = !strcmp(k->kernel, "Xgemm"), routine = !strcmp(k->kernel, "GemmRoutine");
    for (size_t i = 0; i < k->n; i++) {
        if (xgemm && !strcmp(k->names[i], "MWG")) p->mwg = k->values[i];
        if (xgemm && !strcmp(k->names[i], "NWG")) p->nwg = k->values[i];
        if (xgemm && !strcmp(k->names[i], "KWG")) p->kwg = k->values[i];
        if (xgemm && !strcmp(k->names[i], "GEMMK")) g->gemmk = (int)k->values[i];
        if (routine && !strcmp(k->names[i], "XGEMM_MIN_INDIRECT_SIZE"))
            p->min_size = k->values[i];
    }
}

static kdcl_status override_kernel(kdcl_ctx *ctx, gemm_state *g, const tuned_kernel *k)
{
    CLBlastStatusCode st = CLBlastOverrideParameters(ctx->dev.device, k->kernel,
                                                     CLBlastPrecisionSingle, k->n, (const char **)k->names,
                                                     k->values);
    if (st != CLBlastSuccess)
        return kdcl_set_error(KDCL_ERR_CLBLAST, "CLBlastOverrideParameters(%s) on %s failed: %s",
                              k->kernel, ctx->dev.name, kdcl_clblast_status_name(st));
    note_params(g, k);
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

/* The kernels of a tuning file {"kernels": {"Xgemm": {"MWG": 64, ...}, ...}},
 * parsed and checked whole before any is applied. */
typedef struct tuning_file {
    cJSON *root;
    const char *source; /* its "source" ("kdcl tune", "kdcl automatic tuning"), "" if none */
    tuned_kernel k[8];
    size_t n;
} tuning_file;

/* 0: the text parsed into *t; 1: unusable, why in `why`. */
static int parse_tuning_text(const char *text, size_t n, tuning_file *t, char *why, size_t wsize)
{
    memset(t, 0, sizeof *t);
    t->root = cJSON_ParseWithLength(text, n);
    cJSON *kernels = t->root ? cJSON_GetObjectItemCaseSensitive(t->root, "kernels") : NULL;
    if (!cJSON_IsObject(kernels)) {
        snprintf(why, wsize, "%s", t->root ? "no \"kernels\" object" : "not JSON");
        goto bad;
    }
    cJSON *src = cJSON_GetObjectItemCaseSensitive(t->root, "source");
    t->source = cJSON_IsString(src) ? src->valuestring : "";
    cJSON *kern;
    cJSON_ArrayForEach(kern, kernels)
    {
        if (t->n >= sizeof t->k / sizeof t->k[0] || !cJSON_IsObject(kern) || !kern->child) {
            snprintf(why, wsize, "bad kernel entry '%.64s'", kern->string ? kern->string : "?");
            goto bad;
        }
        /* the kernels kdcl tunes (CLBlast reports others on stderr itself) */
        static const char *const known[] = {"Xgemm", "XgemmDirect", "GemmRoutine", "Copy",
                                            "Pad", "Transpose", "Padtranspose"};
        int ok = 0;
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            ok |= !strcmp(kern->string, known[i]);
        if (!ok) {
            snprintf(why, wsize, "unknown kernel '%.64s'", kern->string);
            goto bad;
        }
        tuned_kernel *tk = &t->k[t->n++];
        tk->kernel = kern->string;
        cJSON *p;
        cJSON_ArrayForEach(p, kern)
        {
            if (tk->n >= 16 || !cJSON_IsNumber(p) || !(p->valuedouble >= 0) ||
                p->valuedouble > 1e9 || p->valuedouble != floor(p->valuedouble)) {
                snprintf(why, wsize, "bad parameter '%.64s' of kernel %.64s",
                         p->string ? p->string : "?", kern->string);
                goto bad;
            }
            tk->names[tk->n] = p->string;
            tk->values[tk->n++] = (size_t)p->valuedouble;
        }
    }
    if (t->n == 0) {
        snprintf(why, wsize, "no kernels");
        goto bad;
    }
    return 0;
bad:
    cJSON_Delete(t->root);
    t->root = NULL;
    return 1;
}

/* 0: the file at path parsed into *t; -1: no file; 1: unusable, why in `why`. */
static int read_tuning_file(const char *path, tuning_file *t, char *why, size_t wsize)
{
    memset(t, 0, sizeof *t);
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    char *buf = malloc(KDCL_TUNING_MAX_FILE + 1);
    if (!buf) {
        fclose(f);
        snprintf(why, wsize, "out of host memory");
        return 1;
    }
    size_t n = fread(buf, 1, KDCL_TUNING_MAX_FILE + 1, f);
    int err = ferror(f);
    fclose(f);
    int r = 1;
    if (err || n > KDCL_TUNING_MAX_FILE)
        snprintf(why, wsize, "%s", err ? "unreadable" : "larger than 1 MiB");
    else
        r = parse_tuning_text(buf, n, t, why, wsize);
    free(buf);
    return r;
}

kdcl_status kdcl__tuning_parse(const char *path, const char *text, size_t n,
                               kdcl_status (*apply)(void *user, const tuned_kernel *k),
                               void *user, int *applied)
{
    *applied = 0;
    tuning_file t;
    char why[160];
    if (parse_tuning_text(text, n, &t, why, sizeof why))
        return kdcl_set_error(KDCL_ERR_FORMAT, "%s: not a usable kdcl tuning file (%s)", path,
                              why);
    kdcl_status s = KDCL_OK;
    for (size_t i = 0; i < t.n && !s; i++)
        if (!(s = apply(user, &t.k[i]))) (*applied)++;
    cJSON_Delete(t.root);
    return s;
}

int kdcl_gemm_tuning_text_usable(const char *text, size_t n)
{
    tuning_file t;
    char why[160];
    if (!text || parse_tuning_text(text, n, &t, why, sizeof why)) return 0;
    cJSON_Delete(t.root);
    return 1;
}

/* The directories above path, created where missing. */
static kdcl_status mkdir_parents(const char *path)
{
    char tmp[4600];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
        return kdcl_set_error(KDCL_ERR_IO, "tuning path too long");
    char *slash = strrchr(tmp, '/');
    if (!slash || slash == tmp) return KDCL_OK;
    *slash = '\0';
    for (char *p = tmp + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return kdcl_set_error(KDCL_ERR_IO, "cannot create directory %s: %s", tmp,
                                      strerror(errno));
            *p = c;
            if (!c) break;
        }
    }
    return KDCL_OK;
}

static kdcl_status tuning_write(const char *path, const kdcl_device_info *d, const char *source,
                                const tuned_kernel *k, size_t nk, const cJSON *tuner_info)
{
    cJSON *root = cJSON_CreateObject(), *kernels = cJSON_CreateObject();
    if (!root || !kernels) {
        cJSON_Delete(root);
        cJSON_Delete(kernels);
        return kdcl_set_error(KDCL_ERR_OOM, "out of host memory writing %s", path);
    }
    cJSON_AddStringToObject(root, "device", d->name);
    cJSON_AddStringToObject(root, "platform", d->platform_name);
    cJSON_AddStringToObject(root, "driver", d->driver_version);
    cJSON_AddStringToObject(root, "source", source ? source : "kdcl tune");
    char date[64] = "";
    time_t now = time(NULL);
    struct tm tmv;
    if (gmtime_r(&now, &tmv)) strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tmv);
    cJSON_AddStringToObject(root, "date", date);
    if (tuner_info) cJSON_AddItemToObject(root, "tuner", cJSON_Duplicate(tuner_info, 1));
    for (size_t i = 0; i < nk; i++) {
        cJSON *o = cJSON_CreateObject();
        for (size_t j = 0; o && j < k[i].n && j < KDCL_TUNING_MAX_PARAMS; j++)
            cJSON_AddNumberToObject(o, k[i].names[j], (double)k[i].values[j]);
        cJSON_AddItemToObject(kernels, k[i].kernel, o);
    }
    cJSON_AddItemToObject(root, "kernels", kernels);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory writing %s", path);
    size_t n = strlen(text);
    tuning_file t;
    char why[160];
    if (parse_tuning_text(text, n, &t, why, sizeof why)) {
        free(text);
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: refusing to write a tuning file kdcl "
                              "would not read (%s)", path, why);
    }
    cJSON_Delete(t.root);
    kdcl_status s = mkdir_parents(path);
    if (!s) {
        char *withnl = realloc(text, n + 2);
        if (!withnl) {
            free(text);
            return kdcl_set_error(KDCL_ERR_OOM, "out of host memory writing %s", path);
        }
        text = withnl;
        text[n++] = '\n';
        text[n] = '\0';
        s = kdcl_write_file_atomic(path, text, n);
    }
    free(text);
    return s;
}

kdcl_status kdcl_gemm_tuning_write(const char *path, const kdcl_device_info *d, const char *source,
                                   const tuned_kernel *k, size_t nk, const char *tuner_json)
{
    cJSON *info = NULL;
    if (tuner_json && (!(info = cJSON_Parse(tuner_json)) || !cJSON_IsObject(info))) {
        cJSON_Delete(info);
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: the tuner's information is not a JSON "
                                                    "object", path);
    }
    kdcl_status s = tuning_write(path, d, source, k, nk, info);
    cJSON_Delete(info);
    return s;
}

/* The tuning cache for this device, if any. A file kdcl cannot use (a crash
 * while `kdcl tune` wrote it, an edit gone wrong) is not an error: it is
 * ignored, the shipped parameters or CLBlast's apply instead, *note says so,
 * and the next `kdcl tune` replaces the file. */
static kdcl_status apply_tuning_file(kdcl_ctx *ctx, gemm_state *g, const char *path,
                                     int *applied, int *automatic, char *note, size_t nsize)
{
    *applied = 0;
    *automatic = 0;
    note[0] = '\0';
    tuning_file t;
    char why[160];
    int r = read_tuning_file(path, &t, why, sizeof why);
    if (r < 0) return KDCL_OK; /* none: not an error */
    if (r > 0) {
        snprintf(note, nsize, "tuning cache %.400s ignored (%s; kdcl tune rewrites it)", path, why);
        return KDCL_OK;
    }
    for (size_t i = 0; i < t.n; i++) {
        if (override_kernel(ctx, g, &t.k[i])) {
            /* CLBlast checks each set before taking it; the kernels before this
             * one stay applied */
            snprintf(note, nsize, "tuning cache %.400s: %.300s (kdcl tune rewrites it)", path,
                     kdcl_last_error());
            break;
        }
        (*applied)++;
    }
    *automatic = !strcmp(t.source, AUTOTUNE_SOURCE);
    cJSON_Delete(t.root);
    return KDCL_OK;
}

/* ---- automatic tuning ---------------------------------------------------------
 * A device with neither a tuning cache file nor shipped parameters gets, on
 * its first use (the first context's GEMM setup), a short timed search over
 * the Xgemm parameter sets of its device class below: each set is applied
 * (CLBlastOverrideParameters), CLBlast's Xgemm kernel alone runs the MLP's
 * products in the orientation kdcl's packing gives it (no copy kernels:
 * operands at multiples of the tiles), its result is checked against a
 * double-precision CPU reference (a set that computes a wrong product is
 * rejected), and the fastest correct set is applied and written to the
 * tuning cache of `kdcl tune` (source "kdcl automatic tuning"), so every
 * later context on this device and driver reads it. Bounded by
 * KDCL_AUTOTUNE_BUDGET seconds (default 60: no set is started once the
 * slowest so far would overrun it) and KDCL_AUTOTUNE_MAX sets; announced on
 * stderr. KDCL_AUTOTUNE=0 skips it (CLBlast's defaults), =force ignores the
 * shipped parameters too (a usable cache file is still taken), =wide adds
 * random valid sets of a grid after the table (until the budget). */
#define AT_NP 16
static const char *const at_names[AT_NP] = {"GEMMK", "KREG", "KWG",  "KWI",  "MDIMA", "MDIMC",
                                            "MWG",   "NDIMB", "NDIMC", "NWG", "SA",    "SB",
                                            "STRM",  "STRN", "VWM",  "VWN"};
enum { AT_GEMMK, AT_KREG, AT_KWG, AT_KWI, AT_MDIMA, AT_MDIMC, AT_MWG, AT_NDIMB, AT_NDIMC, AT_NWG,
       AT_SA, AT_SB, AT_STRM, AT_STRN, AT_VWM, AT_VWN };

/* device classes of a set */
#define AT_POCL 1u    /* CPU runtimes that run a work-group as a loop (PoCL): local-memory tiles */
#define AT_VECWI 2u   /* CPU runtimes that vectorise across work-items (Intel's): no local memory */
#define AT_NVIDIA 4u
#define AT_AMD 8u
#define AT_IGPU 16u   /* Intel GPUs */

typedef struct {
    unsigned cls;
    const char *what;
    size_t v[AT_NP];
} at_set;

/* GEMMK KREG KWG KWI MDIMA MDIMC MWG NDIMB NDIMC NWG SA SB STRM STRN VWM VWN */
static const at_set at_table[] = {
    /* CPU, local-memory tiles (PoCL: kdcl tune's candidates, gemm_tuned.h) */
    {AT_POCL, "CPU local tiles 64x64x64, float8", {0, 1, 64, 2, 8, 8, 64, 8, 8, 64, 1, 1, 0, 0, 8, 8}},
    {AT_POCL, "CPU local tiles 64x64x32, float8", {0, 1, 32, 2, 8, 8, 64, 8, 8, 64, 1, 1, 0, 0, 8, 8}},
    {AT_POCL, "CPU local tiles 64x64x64, float4", {0, 1, 64, 2, 8, 8, 64, 8, 8, 64, 1, 1, 0, 0, 4, 4}},
    /* CPU, no local memory (or B only): for runtimes that vectorise across
     * work-items (Intel's). The first two and the fourth were found by
     * KDCL_AUTOTUNE=wide on Intel's runtime (2-core AMD EPYC), the others
     * are CLBlast's database entries for Intel CPUs and variations */
    {AT_VECWI, "CPU no local 128x128x32, 16x32 items, float2 x float4",
     {0, 1, 32, 2, 16, 16, 128, 32, 32, 128, 0, 0, 0, 0, 2, 4}},
    {AT_VECWI, "CPU no local 128x128x64, 16x16 items, strided, float4 x float8",
     {0, 1, 64, 2, 16, 16, 128, 16, 16, 128, 0, 0, 1, 1, 4, 8}},
    {AT_VECWI, "CPU no local 64x64x32, 8x8 items, float8",
     {0, 1, 32, 2, 8, 8, 64, 8, 8, 64, 0, 0, 0, 0, 8, 8}},
    {AT_VECWI, "CPU no local 64x128x64, 16x16 items, strided N, float4 N",
     {0, 1, 64, 2, 16, 16, 64, 16, 16, 128, 0, 0, 0, 1, 1, 4}},
    {AT_VECWI, "CPU no local 32x64x32, 8x8 items, float4 (CLBlast: Intel CPU default)",
     {0, 1, 32, 2, 8, 8, 32, 8, 8, 64, 0, 0, 0, 0, 4, 4}},
    {AT_VECWI, "CPU no local 64x64x32, 16x4 items, strided M, float8 N",
     {0, 1, 32, 2, 16, 16, 64, 4, 4, 64, 0, 0, 1, 0, 1, 8}},
    {AT_VECWI, "CPU local 128x128x32, float2 x float8 (CLBlast: i7-3770)",
     {0, 1, 32, 2, 32, 8, 128, 8, 8, 128, 1, 1, 1, 1, 2, 8}},
    /* GPUs: CLBlast's database (1.5) for the nearest known devices */
    {AT_NVIDIA, "NVIDIA SM6.1 default (CLBlast)", {0, 1, 32, 2, 16, 16, 64, 8, 8, 64, 1, 1, 0, 0, 4, 4}},
    {AT_NVIDIA, "NVIDIA GTX 1080 Ti (CLBlast)", {0, 1, 16, 2, 32, 16, 64, 16, 8, 128, 1, 1, 0, 1, 2, 8}},
    {AT_NVIDIA, "NVIDIA SM5.2 default (CLBlast)", {0, 1, 16, 2, 8, 16, 64, 8, 8, 128, 1, 1, 1, 0, 4, 8}},
    {AT_NVIDIA, "NVIDIA H100 (clblast_tuner_xgemm at 1024^3)",
     {0, 1, 32, 2, 32, 32, 128, 8, 8, 64, 1, 1, 1, 0, 4, 8}},
    {AT_AMD, "AMD default (CLBlast)", {0, 1, 32, 2, 16, 16, 64, 8, 8, 64, 1, 1, 0, 0, 4, 4}},
    {AT_AMD, "AMD Radeon R9 380 (CLBlast)", {0, 1, 16, 2, 16, 32, 64, 16, 8, 128, 1, 1, 0, 0, 2, 8}},
    {AT_AMD, "AMD Radeon R9 290X (CLBlast)", {0, 1, 16, 2, 16, 32, 128, 32, 8, 64, 1, 1, 1, 1, 4, 2}},
    {AT_AMD, "AMD Radeon RX 480 (CLBlast)", {0, 1, 32, 2, 8, 8, 16, 16, 16, 64, 1, 1, 0, 0, 1, 2}},
    {AT_IGPU, "Intel HD 530 (CLBlast)", {0, 1, 32, 2, 8, 8, 128, 32, 16, 64, 0, 0, 1, 0, 4, 2}},
    {AT_IGPU, "Intel HD 620 (CLBlast)", {0, 1, 32, 2, 32, 8, 64, 16, 16, 128, 0, 0, 0, 1, 1, 2}},
    {AT_IGPU, "Intel Skylake GT2 (CLBlast)", {0, 1, 32, 2, 16, 16, 64, 8, 8, 64, 1, 1, 0, 0, 4, 4}},
    {AT_IGPU, "Intel Iris Pro (CLBlast)", {0, 1, 16, 2, 16, 8, 64, 32, 32, 128, 1, 1, 1, 0, 4, 4}},
};
#define AT_TABLE_N (sizeof at_table / sizeof at_table[0])

/* CLBlast's constraints on an Xgemm set (GEMMK = 0) and the device's limits. */
static int at_valid(const size_t *v, const kdcl_device_info *d)
{
    const size_t kwg = v[AT_KWG], mwg = v[AT_MWG], nwg = v[AT_NWG], mdimc = v[AT_MDIMC],
                 ndimc = v[AT_NDIMC], mdima = v[AT_MDIMA], ndimb = v[AT_NDIMB], vwm = v[AT_VWM],
                 vwn = v[AT_VWN];
    if (v[AT_GEMMK] != 0 || !kwg || !v[AT_KWI] || !mdimc || !ndimc || !mdima || !ndimb || !vwm ||
        !vwn)
        return 0;
    const size_t wg = mdimc * ndimc;
    if (kwg % v[AT_KWI] || mwg % (mdimc * vwm) || nwg % (ndimc * vwn) || mwg % (mdima * vwm) ||
        nwg % (ndimb * vwn) || wg % mdima || wg % ndimb || kwg % (wg / mdima) ||
        kwg % (wg / ndimb))
        return 0;
    if (d->max_work_group && wg > d->max_work_group) return 0;
    size_t local = (v[AT_SA] * kwg * mwg + v[AT_SB] * kwg * nwg) * sizeof(float);
    if (d->local_mem && local > d->local_mem) return 0;
    return 1;
}

/* The class of the device: which rows of at_table apply, the first first. */
static void at_classes(const kdcl_device_info *d, unsigned *first, unsigned *then)
{
    if (d->type & CL_DEVICE_TYPE_CPU) {
        int pocl = strstr(d->platform_name, "Portable Computing Language") != NULL;
        *first = pocl ? AT_POCL : AT_VECWI;
        *then = pocl ? AT_VECWI : AT_POCL;
        return;
    }
    char who[800];
    snprintf(who, sizeof who, "%s %s %s", d->vendor, d->platform_vendor, d->name);
    if (strstr(who, "NVIDIA"))
        *first = AT_NVIDIA;
    else if (strstr(who, "AMD") || strstr(who, "Advanced Micro"))
        *first = AT_AMD;
    else if (strstr(who, "Intel"))
        *first = AT_IGPU;
    else
        *first = 0;
    *then = (AT_NVIDIA | AT_AMD | AT_IGPU) & ~*first;
}

/* A deterministic value in [-1, 1) for element (r, c) of operand `which`. */
static float at_val(unsigned which, size_t r, size_t c)
{
    uint64_t x = (uint64_t)r * 0x9E3779B97F4A7C15ull ^ ((uint64_t)c + 0x632BE59BD9B4E019ull * which);
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    return (float)((double)(x >> 40) / (double)(1u << 23) - 1.0);
}

typedef struct {
    size_t M, N, K; /* CLBlast's column-major view, as gemm_packed calls it */
} at_shape;

typedef struct {
    kdcl_ctx *ctx;
    cl_mem a, b, c;
    float *ha, *hb, *hc;
    size_t cap_a, cap_b, cap_c; /* floats */
    const at_shape *shapes;
    size_t n_shapes;
} at_bench;

static int at_poison_index = -1; /* kdcl__autotune_poison */
static unsigned at_searches;      /* kdcl__autotune_searches */

void kdcl__autotune_poison(int index) { at_poison_index = index; }
unsigned kdcl__autotune_searches(void) { return at_searches; }

/* Time set v (applied) at every shape: *sec the sum over shapes of the
 * fastest of a few calls, *first the first call's wall time (the kernel's
 * build). 0: correct; 1: rejected (why); -1: failed to run (why). */
static int at_measure(at_bench *bn, const size_t *v, int poison, double budget_end, double *sec,
                      double *first, double *flops, char *why, size_t wsize)
{
    cl_command_queue q = bn->ctx->queue;
    *sec = 0;
    *first = 0;
    *flops = 0;
    for (size_t s = 0; s < bn->n_shapes; s++) {
        const at_shape *sh = &bn->shapes[s];
        const size_t Mp = round_up(sh->M, v[AT_MWG]), Np = round_up(sh->N, v[AT_NWG]),
                     Kp = round_up(sh->K, v[AT_KWG]);
        if (Kp * Mp > bn->cap_a || Kp * Np > bn->cap_b || Mp * Np > bn->cap_c) {
            snprintf(why, wsize, "tiles too large for the timing buffers");
            return -1;
        }
        for (size_t p = 0; p < Kp; p++) {
            for (size_t i = 0; i < Mp; i++)
                bn->ha[p * Mp + i] = (p < sh->K && i < sh->M) ? at_val(1, p, i) : 0.0f;
            for (size_t j = 0; j < Np; j++)
                bn->hb[p * Np + j] = (p < sh->K && j < sh->N) ? at_val(2, p, j) : 0.0f;
        }
        cl_int e = clEnqueueWriteBuffer(q, bn->a, CL_FALSE, 0, Kp * Mp * sizeof(float), bn->ha, 0,
                                        NULL, NULL);
        if (e == CL_SUCCESS)
            e = clEnqueueWriteBuffer(q, bn->b, CL_TRUE, 0, Kp * Np * sizeof(float), bn->hb, 0,
                                     NULL, NULL);
        if (e != CL_SUCCESS) {
            snprintf(why, wsize, "upload: %s", kdcl_cl_error_name(e));
            return -1;
        }
        double best = INFINITY;
        for (int r = 0; r < 8; r++) {
            double t0 = kdcl_now_seconds();
            CLBlastStatusCode st =
                CLBlastSgemm(CLBlastLayoutColMajor, CLBlastTransposeNo, CLBlastTransposeYes, Mp,
                             Np, Kp, 1.0f, bn->a, 0, Mp, bn->b, 0, Np, 0.0f, bn->c, 0, Mp, &q,
                             NULL);
            if (st != CLBlastSuccess) {
                snprintf(why, wsize, "CLBlast: %s", kdcl_clblast_status_name(st));
                return -1;
            }
            if ((e = clFinish(q)) != CL_SUCCESS) {
                snprintf(why, wsize, "clFinish: %s", kdcl_cl_error_name(e));
                return -1;
            }
            double t = kdcl_now_seconds() - t0;
            if (s == 0 && r == 0) *first = t;
            if (r > 0 && t < best) best = t;
            /* at least 2 timed calls, more while they are cheap */
            if (r >= 2 && (kdcl_now_seconds() > budget_end || best * (r + 1) > 0.3)) break;
        }
        *sec += best;
        *flops += 2.0 * (double)sh->M * (double)sh->N * (double)sh->K;
        if (poison) { /* a test's stand-in for a set that computes a wrong product */
            float zero = 0.0f;
            e = clEnqueueFillBuffer(q, bn->c, &zero, sizeof zero, 0, Mp * Np * sizeof(float), 0,
                                    NULL, NULL);
            if (e != CL_SUCCESS) {
                snprintf(why, wsize, "fill: %s", kdcl_cl_error_name(e));
                return -1;
            }
        }
        e = clEnqueueReadBuffer(q, bn->c, CL_TRUE, 0, Mp * Np * sizeof(float), bn->hc, 0, NULL,
                                NULL);
        if (e != CL_SUCCESS) {
            snprintf(why, wsize, "download: %s", kdcl_cl_error_name(e));
            return -1;
        }
        /* 64 sampled entries against the double-precision reference; bound
         * gamma_K sum |a_p b_p| (any summation order), 2 K u used */
        const double u = ldexp(1.0, -24);
        for (size_t t = 0; t < 64; t++) {
            size_t i = (t * 7919u + 13u * s) % sh->M, j = (t * 104729u + t / 8) % sh->N;
            if (t == 0) i = 0, j = 0;
            if (t == 1) i = sh->M - 1, j = sh->N - 1;
            double ref = 0, mag = 0;
            for (size_t p = 0; p < sh->K; p++) {
                double x = (double)at_val(1, p, i) * (double)at_val(2, p, j);
                ref += x;
                mag += fabs(x);
            }
            double got = bn->hc[j * Mp + i], err = fabs(got - ref);
            if (!(err <= 2.0 * (double)sh->K * u * mag + 1e-30)) {
                snprintf(why, wsize,
                         "wrong product at %zux%zux%zu: C[%zu,%zu] = %.7g, reference %.7g", sh->M,
                         sh->N, sh->K, i, j, got, ref);
                return 1;
            }
        }
    }
    return 0;
}

/* Random valid sets for KDCL_AUTOTUNE=wide (no local memory on CPUs). */
static int at_random_set(uint64_t *state, const kdcl_device_info *d, size_t *v)
{
    static const size_t kwg[] = {16, 32, 64}, dim[] = {4, 8, 16, 32}, wg[] = {32, 64, 128},
                        vw[] = {1, 2, 4, 8};
    for (int tries = 0; tries < 1000; tries++) {
        uint64_t x = *state = *state * 6364136223846793005ull + 1442695040888963407ull;
#define PICK(arr) (arr[(x >>= 3, (x & 0xffff) % (sizeof arr / sizeof arr[0]))])
        v[AT_GEMMK] = 0;
        v[AT_KREG] = 1;
        v[AT_KWG] = PICK(kwg);
        v[AT_KWI] = 2;
        v[AT_MDIMC] = PICK(dim);
        v[AT_NDIMC] = PICK(dim);
        v[AT_MDIMA] = v[AT_MDIMC];
        v[AT_NDIMB] = v[AT_NDIMC];
        v[AT_MWG] = PICK(wg);
        v[AT_NWG] = PICK(wg);
        int cpu = (d->type & CL_DEVICE_TYPE_CPU) != 0;
        v[AT_SA] = cpu ? 0 : (x >> 20) & 1;
        v[AT_SB] = cpu ? 0 : (x >> 21) & 1;
        v[AT_STRM] = (x >> 22) & 1;
        v[AT_STRN] = (x >> 23) & 1;
        v[AT_VWM] = PICK(vw);
        v[AT_VWN] = PICK(vw);
#undef PICK
        size_t mwi = v[AT_MWG] / v[AT_MDIMC], nwi = v[AT_NWG] / v[AT_NDIMC];
        if (mwi * nwi <= 128 && at_valid(v, d)) return 1;
    }
    return 0;
}

static tuned_kernel at_kernel(const size_t *v)
{
    tuned_kernel k = {"Xgemm", AT_NP, {0}, {0}};
    for (size_t i = 0; i < AT_NP; i++) {
        k.names[i] = at_names[i];
        k.values[i] = v[i];
    }
    return k;
}

static double env_double(const char *name, double dflt)
{
    const char *s = getenv(name);
    char *end;
    if (!s || !*s) return dflt;
    double x = strtod(s, &end);
    return (*end || !(x >= 0)) ? dflt : x;
}

/* The search (see above); called from apply_tuning with the parameter lock
 * held for writing. *found: 1 when a set was applied (and cached in path). */
static kdcl_status autotune(kdcl_ctx *ctx, gemm_state *g, const char *path, int wide,
                            int forced, int *found)
{
    *found = 0;
    const kdcl_device_info *d = &ctx->dev;
    const int cpu = (d->type & CL_DEVICE_TYPE_CPU) != 0;
    const double budget = env_double("KDCL_AUTOTUNE_BUDGET", 60.0);
    const double max_sets = env_double("KDCL_AUTOTUNE_MAX", 1e9);
    /* the MLP's products (784-1200-1200-10: forward, weight gradient, the
     * hidden layer's forward) at B = 128 on CPUs, B = 1024 on GPUs, in
     * CLBlast's view (M = kdcl's n, N = kdcl's m) */
    static const at_shape cpu_shapes[] = {{1200, 128, 784}, {784, 1200, 128}, {1200, 128, 1200}};
    static const at_shape gpu_shapes[] = {{1200, 1024, 784}, {784, 1200, 1024}, {1200, 1024, 1200}};
    at_bench bn = {ctx, NULL, NULL, NULL, NULL, NULL, NULL, 0, 0, 0, cpu ? cpu_shapes : gpu_shapes, 3};
    size_t mx = 0, nx = 0, kx = 0;
    for (size_t s = 0; s < bn.n_shapes; s++) {
        if (bn.shapes[s].M > mx) mx = bn.shapes[s].M;
        if (bn.shapes[s].N > nx) nx = bn.shapes[s].N;
        if (bn.shapes[s].K > kx) kx = bn.shapes[s].K;
    }
    mx += 128, nx += 128, kx += 128; /* room for tiles up to 128 */
    bn.cap_a = kx * mx;
    bn.cap_b = kx * nx;
    bn.cap_c = mx * nx;
    unsigned first, then;
    at_classes(d, &first, &then);
    size_t order[AT_TABLE_N], n = 0;
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < AT_TABLE_N; i++)
            if ((at_table[i].cls & (pass ? then : first)) && at_valid(at_table[i].v, d))
                order[n++] = i;
    fprintf(stderr,
            "kdcl: %s for %s (%s, driver %s): timing up to %zu CLBlast parameter "
            "sets, at most %.0f s (once per device and driver; KDCL_AUTOTUNE=0 skips)\n",
            forced ? "automatic GEMM tuning forced (KDCL_AUTOTUNE)" : "no GEMM parameters", d->name, d->platform_name, d->driver_version,
            wide ? (size_t)max_sets : (max_sets < (double)n ? (size_t)max_sets : n), budget);
    at_searches++;
    const double t_start = kdcl_now_seconds(), end = t_start + budget;
    kdcl_status s = KDCL_OK;
    cl_int e;
    bn.a = clCreateBuffer(ctx->cl, CL_MEM_READ_WRITE, bn.cap_a * sizeof(float), NULL, &e);
    if (e == CL_SUCCESS)
        bn.b = clCreateBuffer(ctx->cl, CL_MEM_READ_WRITE, bn.cap_b * sizeof(float), NULL, &e);
    if (e == CL_SUCCESS)
        bn.c = clCreateBuffer(ctx->cl, CL_MEM_READ_WRITE, bn.cap_c * sizeof(float), NULL, &e);
    bn.ha = malloc(bn.cap_a * sizeof(float));
    bn.hb = malloc(bn.cap_b * sizeof(float));
    bn.hc = malloc(bn.cap_c * sizeof(float));
    cJSON *info = cJSON_CreateObject(), *sets = cJSON_CreateArray();
    if (e != CL_SUCCESS || !bn.ha || !bn.hb || !bn.hc || !info || !sets) {
        fprintf(stderr, "kdcl: automatic tuning: no memory for its buffers; CLBlast's defaults\n");
        cJSON_Delete(sets);
        goto done;
    }
    size_t best_v[AT_NP];
    char best_what[160] = "";
    double best_rate = 0, worst_cost = 0;
    enum { AT_KEEP = 3 }; /* the fastest sets, timed once more at the end */
    struct {
        size_t v[AT_NP];
        char what[160];
        double rate;
        cJSON *o;
    } top[AT_KEEP];
    size_t n_top = 0;
    size_t tried = 0, rejected = 0, failed = 0;
    uint64_t rng = 0x6b64636cull;
    for (size_t c = 0; tried < (size_t)max_sets; c++) {
        size_t v[AT_NP];
        char what[160];
        if (c < n) {
            memcpy(v, at_table[order[c]].v, sizeof v);
            snprintf(what, sizeof what, "%s", at_table[order[c]].what);
        } else if (wide && at_random_set(&rng, d, v)) {
            snprintf(what, sizeof what, "random %zu", c - n + 1);
        } else
            break;
        double now = kdcl_now_seconds();
        if (tried > 0 && now + worst_cost > end) break;
        tuned_kernel k = at_kernel(v);
        CLBlastStatusCode st = CLBlastOverrideParameters(d->device, "Xgemm",
                                                         CLBlastPrecisionSingle, k.n,
                                                         (const char **)k.names, k.values);
        tried++;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "set", what);
        cJSON *vals = cJSON_CreateObject();
        for (size_t i = 0; i < AT_NP; i++) cJSON_AddNumberToObject(vals, at_names[i], (double)v[i]);
        cJSON_AddItemToObject(o, "Xgemm", vals);
        char why[200] = "";
        double sec = 0, build = 0, flops = 0;
        int r = -1;
        if (st != CLBlastSuccess)
            snprintf(why, sizeof why, "CLBlast refused it: %s", kdcl_clblast_status_name(st));
        else
            r = at_measure(&bn, v, (int)(c) == at_poison_index, end, &sec, &build, &flops, why,
                           sizeof why);
        double cost = kdcl_now_seconds() - now;
        if (cost > worst_cost) worst_cost = cost;
        if (r == 0) {
            double rate = flops / sec * 1e-9;
            cJSON_AddNumberToObject(o, "gflops", rate);
            cJSON_AddNumberToObject(o, "build_s", build);
            if (getenv("KDCL_AUTOTUNE_VERBOSE"))
                fprintf(stderr, "kdcl:   %-60s %7.1f GFLOP/s (first call %.2f s)\n", what, rate,
                        build);
            /* among the AT_KEEP fastest so far? (sorted, fastest first) */
            size_t at = n_top;
            while (at > 0 && top[at - 1].rate < rate) at--;
            if (at < AT_KEEP) {
                size_t last = n_top < AT_KEEP ? n_top : AT_KEEP - 1;
                for (size_t i = last; i > at; i--) top[i] = top[i - 1];
                memcpy(top[at].v, v, sizeof v);
                snprintf(top[at].what, sizeof top[at].what, "%s", what);
                top[at].rate = rate;
                top[at].o = o;
                if (n_top < AT_KEEP) n_top++;
            }
        } else {
            if (r > 0) rejected++;
            else failed++;
            cJSON_AddStringToObject(o, r > 0 ? "rejected" : "failed", why);
            if (getenv("KDCL_AUTOTUNE_VERBOSE"))
                fprintf(stderr, "kdcl:   %-60s %s: %s\n", what, r > 0 ? "rejected" : "failed",
                        why);
        }
        cJSON_AddItemToArray(sets, o);
    }
    /* the fastest sets once more (their kernels built again): the load of
     * a shared machine moves single timings; each set keeps its better
     * round. Skipped when the budget is spent. */
    for (size_t i = 0; n_top > 1 && i < n_top; i++) {
        if (kdcl_now_seconds() + worst_cost > end) break;
        tuned_kernel k = at_kernel(top[i].v);
        if (CLBlastOverrideParameters(d->device, "Xgemm", CLBlastPrecisionSingle, k.n,
                                      (const char **)k.names, k.values) != CLBlastSuccess)
            continue;
        char why[200] = "";
        double sec = 0, build = 0, flops = 0;
        if (at_measure(&bn, top[i].v, 0, end, &sec, &build, &flops, why, sizeof why) == 0) {
            double rate = flops / sec * 1e-9;
            cJSON_AddNumberToObject(top[i].o, "gflops_again", rate);
            if (getenv("KDCL_AUTOTUNE_VERBOSE"))
                fprintf(stderr, "kdcl:   again: %-53s %7.1f GFLOP/s\n", top[i].what, rate);
            if (rate > top[i].rate) top[i].rate = rate;
        }
    }
    for (size_t i = 0; i < n_top; i++)
        if (top[i].rate > best_rate) {
            best_rate = top[i].rate;
            memcpy(best_v, top[i].v, sizeof best_v);
            snprintf(best_what, sizeof best_what, "%s", top[i].what);
        }
    const double took = kdcl_now_seconds() - t_start;
    cJSON_AddItemToObject(info, "sets", sets);
    cJSON_AddNumberToObject(info, "seconds", took);
    cJSON_AddStringToObject(info, "shapes", cpu ? "784-1200-1200-10 at B = 128"
                                                : "784-1200-1200-10 at B = 1024");
    if (!best_what[0]) {
        /* nothing correct: CLBlast's own default set back (its database's
         * entry for all devices) */
        static const size_t fallback[AT_NP] = {0, 1, 32, 2, 8, 8, 32, 16, 16, 32, 1, 1, 0, 0, 4, 2};
        tuned_kernel k = at_kernel(fallback);
        CLBlastOverrideParameters(d->device, "Xgemm", CLBlastPrecisionSingle, k.n,
                                  (const char **)k.names, k.values);
        fprintf(stderr,
                "kdcl: automatic tuning: none of %zu sets ran correctly (%zu wrong, %zu failed) "
                "in %.1f s; CLBlast's default parameters\n",
                tried, rejected, failed, took);
        goto done;
    }
    cJSON_AddStringToObject(info, "chosen", best_what);
    cJSON_AddNumberToObject(info, "chosen_gflops", best_rate);
    tuned_kernel ks[2];
    size_t nk = 0;
    ks[nk++] = at_kernel(best_v);
    if (cpu) /* the direct kernel below 256^3 multiply-adds, as measured for PoCL */
        ks[nk++] = (tuned_kernel){"GemmRoutine", 1, {"XGEMM_MIN_INDIRECT_SIZE"}, {256}};
    for (size_t i = 0; i < nk && !s; i++) s = override_kernel(ctx, g, &ks[i]);
    if (s) goto done;
    *found = 1;
    snprintf(g->autotune_what, sizeof g->autotune_what, "%s", best_what);
    kdcl_status ws = tuning_write(path, d, AUTOTUNE_SOURCE, ks, nk, info);
    fprintf(stderr,
            "kdcl: GEMM parameters for %s: %s, %.1f GFLOP/s (%zu sets timed, %zu wrong, %zu "
            "failed, %.1f s); %s %s\n",
            d->name, best_what, best_rate, tried, rejected, failed, took,
            ws ? "not cached:" : "cached in", ws ? kdcl_last_error() : path);
done:
    cJSON_Delete(info);
    if (bn.a) clReleaseMemObject(bn.a);
    if (bn.b) clReleaseMemObject(bn.b);
    if (bn.c) clReleaseMemObject(bn.c);
    free(bn.ha);
    free(bn.hb);
    free(bn.hc);
    return s;
}

static kdcl_status apply_tuning(kdcl_ctx *ctx, gemm_state *g)
{
    g->source = "CLBlast defaults";
    g->source_kind = "defaults";
    g->note[0] = '\0';
    const char *off = getenv("KDCL_NO_TUNING");
    if (off && *off && strcmp(off, "0") != 0) return KDCL_OK;
    const char *at = getenv("KDCL_AUTOTUNE");
    const int at_off = at && !strcmp(at, "0"), wide = at && !strcmp(at, "wide");
    const int force = wide || (at && !strcmp(at, "force"));
    char path[4400];
    int applied = 0, automatic = 0;
    kdcl_status s = kdcl_gemm_tuning_path(&ctx->dev, path, sizeof path);
    if (!s)
        s = apply_tuning_file(ctx, g, path, &applied, &automatic, g->note, sizeof g->note);
    if (s) return s;
    if (applied && !g->note[0]) {
        g->source = automatic ? "automatic tuning (cache)" : "kdcl tune (cache)";
        g->source_kind = automatic ? "automatic" : "cache";
        return KDCL_OK;
    }
    for (size_t i = 0; !force && i < sizeof kdcl_gemm_tuned / sizeof kdcl_gemm_tuned[0]; i++) {
        const tuned_device *t = &kdcl_gemm_tuned[i];
        if (!strstr(ctx->dev.platform_name, t->platform_substr) || !(ctx->dev.type & t->type) ||
            !strstr(ctx->dev.name, t->device_substr))
            continue;
        for (size_t k = 0; k < 3 && t->kernels[k].kernel; k++)
            if ((s = override_kernel(ctx, g, &t->kernels[k]))) return s;
        g->source = t->source;
        g->source_kind = "shipped";
        return KDCL_OK;
    }
    if (at_off) return KDCL_OK;
    /* a cache file that could not be used is redone (the search rewrites it) */
    int found = 0;
    if ((s = autotune(ctx, g, path, wide, force, &found))) return s;
    if (found) {
        g->source = "automatic tuning (searched now)";
        g->source_kind = "automatic";
        if (g->note[0]) {
            size_t l = strlen(g->note);
            snprintf(g->note + l, sizeof g->note - l, "; redone");
        }
    }
    return KDCL_OK;
}

/* The environment variable `name` when set and not empty (any value but "0"
 * is on), else on for CPU devices. */
static int cpu_unless_env(const kdcl_ctx *ctx, const char *name)
{
    const char *env = getenv(name);
    if (env && *env) return strcmp(env, "0") != 0;
    return (ctx->dev.type & CL_DEVICE_TYPE_CPU) != 0;
}

/* Packing on for CPUs whose Xgemm tiles kdcl set (GEMMK = 0 only: the other
 * kernel wants other orientations); KDCL_GEMM_PACK=0/1 overrides. */
static void decide_packing(kdcl_ctx *ctx, gemm_state *g)
{
    kdcl_gemm_pack_info *p = &g->pack;
    p->max_waste = 1.35;
    int known = p->mwg && p->nwg && p->kwg && g->gemmk == 0;
    p->enabled = known && cpu_unless_env(ctx, "KDCL_GEMM_PACK");
}

/* kdcl's narrow-product kernels on CPU devices; KDCL_GEMM_SMALL=0/1 overrides. */
static void decide_small(kdcl_ctx *ctx, gemm_state *g)
{
    g->small = cpu_unless_env(ctx, "KDCL_GEMM_SMALL");
}

/* Direct convolutions on CPU devices; KDCL_CONV_DIRECT=0/1 overrides. */
static void decide_direct(kdcl_ctx *ctx, gemm_state *g)
{
    g->direct = cpu_unless_env(ctx, "KDCL_CONV_DIRECT");
}

static kdcl_status conv_algo_from_env(gemm_state *g);

/* The state's setup (gemm_state_get): CLBlast's parameters, packing,
 * KDCL_CONV, the tuning string. */
static kdcl_status gemm_setup(kdcl_ctx *ctx, gemm_state *g)
{
    kdcl_status s = apply_tuning(ctx, g);
    if (s) return s;
    decide_packing(ctx, g);
    decide_small(ctx, g);
    decide_direct(ctx, g);
    if ((s = conv_algo_from_env(g))) return s;
    const kdcl_gemm_pack_info *pk = &g->pack;
    const char *note = g->note;
    char src[400];
    snprintf(src, sizeof src, "%s%s%s", g->source, g->autotune_what[0] ? ": " : "",
             g->autotune_what);
    if (pk->enabled)
        snprintf(g->tuning, sizeof g->tuning, "%s; operands packed by kdcl (%zux%zux%zu tiles)%s%s",
                 src, pk->mwg, pk->nwg, pk->kwg, *note ? "; " : "", note);
    else
        snprintf(g->tuning, sizeof g->tuning, "%s%s%s", src, *note ? "; " : "", note);
    return KDCL_OK;
}

kdcl_status kdcl_gemm_apply_tuning(kdcl_ctx *ctx, const char **source)
{
    gemm_state *g = NULL;
    kdcl_status s = gemm_state_get(ctx, &g);
    if (source) *source = s ? NULL : g->source;
    return s;
}

const char *kdcl_gemm_params_source(const kdcl_ctx *ctx)
{
    const gemm_state *g = gemm_state_peek(ctx);
    return g ? g->source_kind : "unknown";
}

const char *kdcl_ctx_gemm_tuning(const kdcl_ctx *ctx)
{
    static _Thread_local char failed[1024];
    const gemm_state *g = gemm_state_peek(ctx);
    if (g) return g->tuning;
    snprintf(failed, sizeof failed, "GEMM not set up: %s", kdcl_last_error());
    return failed;
}

/* ---- 2-D convolution (kdcl/conv.h) -------------------------------------------
 * Forward: y_b = W col_b with col = im2col(x) ([K, P] per image, K = C*KH*KW,
 * P = OH*OW); weight gradient: dW = sum_b dy_b col_b^T; input gradient: dcol_b
 * = W^T dy_b, dx = col2im(dcol). im2col / col2im are kdcl's kernels
 * (cl/conv.cl), each one launch for the whole batch with one work-item per
 * row of an image; the products run through
 * kdcl_gemm_batched (one GEMM per image, "narrow") or, when kdcl's operand
 * packing works for the batch-wide product, as one packed GEMM over the batch
 * with the columns laid out [K, B*P] ("wide"), dy transposed to [OC, B*P] and
 * the output transposed back with the bias fused.
 *
 * Per image the products run in the forms CLBlast's direct kernel (which
 * runs every per-image product at these sizes) is fastest at, measured
 * below: the forward as y_b = (W^T)^T col_b (TN, W^T [K, OC] transposed
 * once per call), the weight gradient for K >= 64 as dW_b = (dy_b^T)^T
 * col_b^T (TN, with the columns written transposed, [P, K] per image, and
 * each image's dy transposed to [P, OC]), below that NT as before, the input
 * gradient TN (W and dy as stored). With CLBlast's im2col
 * (KDCL_CONV_CLBLAST_IM2COL, and the backward of _CONVGEMM: "Algorithms"
 * below) the same routes and forms, but the weight gradient NT at every K:
 * CLBlast writes no transposed columns.
 *
 * First measurements (before the row-wise im2col / col2im and the direct
 * kernel's parameters; see "Since" below for the current ones). Chosen by
 * timing on PoCL 3.1 ("pthread-skylake-avx512-AMD EPYC", 2 cores,
 * /proc/cpuinfo "AMD EPYC"), CLBlast 1.5.3, batch 128, best of 2-3 calls
 * after a warm-up, ms:
 *                                      forward               GEMM only
 *   shape (C x H x W -> OC @ KxK)   convgemm  im2col+bGEMM  batched  wide  padded/true
 *   1x28x28 -> 6@5 p2 (LeNet)         31.1      11.8          6.3    11.7    27
 *   6x14x14 -> 16@5 (LeNet)           13.7       5.4          3.2     3.5     5.1
 *   3x32x32 -> 32@3 p1 (cnn-small)    43.0      16.7         19.5    15.6     4.7
 *   32x16x16 -> 64@3 p1 (cnn-small)  121.3      60.0         55.4    15.3     1.1
 *   16x32x32 -> 16@3 p1 (ResNet-20)  100.8      45.5         27.8    40.1     5.3
 *   16x32x32 -> 32@3 s2 p1            34.4      18.7         14.7     9.1     2.7
 *   32x16x16 -> 32@3 p1               61.1      35.1         25.3    15.8     2.2
 *   32x16x16 -> 64@3 s2 p1            31.3      17.6         13.0     2.7     1.1
 *   64x8x8 -> 64@3 p1                 60.9      33.7         25.8     4.8     1.1
 * (convgemm: CLBlastSconvgemm, the single-kernel method 1.5.3 builds;
 * im2col+bGEMM: CLBlastSim2col per image + kdcl_gemm_batched; GEMM only: the
 * forward product per image (batched) or as one packed GEMM over the batch
 * (wide), packed even where kdcl_gemm would not pack it: its 1.35 waste limit
 * is set against CLBlast's own padding, here the alternative is the batched
 * direct kernel.) convgemm lost to im2col + batched GEMM everywhere, by 1.7x
 * (32x16x16 -> 32) to 2.6x (1x28x28, 3x32x32). The wide GEMM beats the
 * batched one by 3.1-5.8x at OC = 64 and 1.3-1.9x at OC = 32 (forward, weight
 * and input gradient alike), and loses where padding to the 64^3 tiles more
 * than triples the product (OC = 16 at K = 144: 40.1 vs 27.8 ms; the weight
 * gradient at 3x32x32: 24.6 vs 13.2): hence CONV_MAX_WASTE. The batched weight
 * gradient (one [OC, K] product per image, then their sum) beat B
 * accumulating kdcl_gemm calls at all shapes but one (46.0 vs 50.2 ms at
 * 16x32x32, 6.6 vs 8.6 at LeNet's second conv; 45.3 vs 44.0 at 64x8x8, which
 * takes the wide route). Against CLBlast's im2col (one call per image, 128
 * launches) kdcl's kernel took 14.5 vs 16.8 ms (16x32x32), 3.2 vs 7.3
 * (64x8x8), 1.2 vs 2.7 (1x28x28); its gather col2im 21.0 vs 44.7 ms for
 * CLBlastScol2im x 128 plus the zero fill that needs (it adds into the
 * image), 4.9 vs 21.5 at 64x8x8. Using CLBlast's per-image im2col layout for
 * the one-GEMM route would cost a transpose of the columns on top.
 *
 * As implemented (same machine, batch 128, ms: forward (with bias) /
 * backward with dx and db / backward without dx):
 *   1x28x28 -> 6@5 p2     5.5 / 10.0 /  6.0    16x32x32 -> 16@3 p1     43.0 / 87.9 / 44.1
 *   6x14x14 -> 16@5       3.6 /  8.7 /  4.1    16x32x32 -> 32@3 s2 p1  12.7 / 37.4 / 17.0
 *   3x32x32 -> 32@3 p1   18.9 / 32.8 / 18.4    32x16x16 -> 32@3 p1     23.5 / 45.2 / 25.4
 *   32x16x16 -> 64@3 p1  22.0 / 45.1 / 26.6    32x16x16 -> 64@3 s2 p1   4.3 / 12.9 /  5.5
 *   64x8x8 -> 64@3 p1     8.4 / 18.6 /  9.6
 * (with packing off, i.e. per-image GEMMs throughout: 32x16x16 -> 64 58.5 /
 * 128.6, 64x8x8 27.4 / 65.5, 32x16x16 -> 32 33.3 / 73.2).
 *
 * Since (same machine, now shared with another training job on both cores,
 * so rates are lower than above and only same-run ratios count; batch 128,
 * median of 5-7):
 *  - im2col / col2im one work-item per row instead of per element (the
 *    per-element kernels divided by OW / SH / SW per element, which PoCL
 *    cannot vectorise): the data movement of an op (GEMMs skipped), per-image
 *    route, forward / backward with dx: 16x32x32 -> 16 27.9 / 54.8 -> 5.4 /
 *    12.2 ms, 1x28x28 -> 6 1.6 / 3.7 -> 0.45 / 0.9, 64x8x8 -> 64 5.7 / 21.1
 *    -> 2.6 / 15.0 (the rest there: summing 128 per-image weight gradients).
 *  - XgemmDirect parameters for PoCL (gemm_tuned.h): the per-image products
 *    2-4x faster than with CLBlast's defaults. Then, per op (forward /
 *    backward with dx / without), per-image vs wide: 1x28x28 -> 6 4.5 / 9.1 /
 *    4.4 vs 23.2 / 48.0 / 23.2; 6x14x14 -> 16 7.2 / 8.5 / 3.9 vs 9.1 / 24.2 /
 *    12.6; 1x28x28 -> 32 5.7 / 12.8 / 6.1 vs 27.9 / 47.4 / 24.8; 3x32x32 ->
 *    16 7.8 / 16.8 / 8.2 vs 35.9 / 69.1 / 35.0; 16x32x32 -> 16 27.4 / 69.0 /
 *    33.5 vs 88.8 / 186.3 / 95.8; 16x32x32 -> 32 s2 12.5 / 30.1 / 16.9 vs
 *    24.4 / 49.4 / 25.8; 32x16x16 -> 32 25.8 / 62.8 / 35.5 vs 38.4 / 80.0 /
 *    40.9; but 32x14x14 -> 64 35.2 / 81.2 / 49.6 vs 29.1 / 58.0 / 31.0;
 *    32x16x16 -> 64 s2 10.6 / 29.9 / 20.3 vs 9.3 / 19.3 / 9.6; 64x8x8 -> 64
 *    20.3 / 57.7 / 40.3 vs 16.8 / 34.1 / 17.0 (1x1 16 -> 32 s2 3.8 / 9.3 /
 *    3.3 vs 10.7 / 17.7 / 10.9; 1x1 32 -> 64 s2 about even). Hence the wide
 *    route only where the output channels fill a 64-wide tile (conv_wide).
 *  - The direct kernel by orientation (kdcl_gemm_batched, 128 images, row-
 *    major m x n x k, ms): forward 16 x 1024 x 144 NN 21.8, TN 18.0, NT 28.4;
 *    32 x 256 x 288 NN 18.9, TN 13.4; 6 x 784 x 25 NN 3.5, TN 2.5 (TN ahead
 *    at all 7 per-image forward shapes of the presets, 1.0-1.5x; as ops
 *    1.1-1.5x). Weight gradient 16 x 144 x 1024: NT 35.6 (the form used
 *    before), NN 18.2, TN 12.9; 32 x 288 x 256: NT 26.1, NN 19.5, TN 13.7.
 *    As ops (backward without dx, TN vs NT, 3 runs each): 16x32x32 -> 16
 *    27.1 vs 31.9, 32x16x16 -> 32 24.8 vs 33.8, 1x28x28 -> 6 3.7 vs 4.1, but
 *    1x28x28 -> 32 (K = 9) 9.3 vs 5.8 and 3x32x32 -> 16 (K = 27) 11.4 vs 7.8,
 *    where transposing dy and the strided column writes cost more than the
 *    product gains: hence TN from K = 64 (CONV_DW_TN_MIN_K). The input
 *    gradient's TN form (144 x 1024 x 16: 29.5) was the best of those tried
 *    (NN on [B*P, K] 32.9, one TN over the batch 28.0).
 * As implemented now, against the kernels and routes before these changes
 * (same run, forward / backward with dx / without dx, ms):
 *   1x28x28 -> 6@5 p2    5.2 / 13.3 /  5.8 ->  3.0 /  8.6 /  4.2
 *   6x14x14 -> 16@5      4.3 / 11.3 /  4.7 ->  2.6 /  8.6 /  3.9
 *   1x28x28 -> 32@3 p1   6.3 / 14.9 /  6.7 ->  4.2 / 12.3 /  6.1
 *   32x14x14 -> 64@3 p1 49.7 / 84.4 / 51.1 -> 29.3 / 58.2 / 31.1
 *   3x32x32 -> 16@3 p1  11.2 / 24.3 / 11.6 ->  5.9 / 16.2 /  7.9
 *   16x32x32 -> 16@3 p1 48.6 / 109.7 / 57.3 -> 22.6 / 63.1 / 27.8
 *   16x32x32 -> 32@3 s2 27.3 / 67.7 / 29.0 ->  9.9 / 26.2 / 12.8
 *   32x16x16 -> 32@3 p1 43.0 / 89.9 / 45.5 -> 18.3 / 50.6 / 25.0
 *   32x16x16 -> 64@3 s2  9.8 / 27.2 / 10.4 ->  9.7 / 19.9 / 10.0
 *   64x8x8 -> 64@3 p1   18.0 / 37.6 / 18.2 -> 17.0 / 34.4 / 17.9
 *   16x32x32 -> 32@1 s2  4.4 / 18.9 /  4.5 ->  3.4 /  5.3 /  3.7
 *   32x16x16 -> 64@1 s2  3.3 / 11.2 /  4.0 ->  2.0 /  3.3 /  2.0
 * (both sides with the XgemmDirect parameters; the transposed-convolution
 * form of the input gradient, one GEMM of depth OC*KH*KW without col2im,
 * would be faster still but sums OC*KH*KW products per element in one chain
 * where col2im sums KH*KW dot products of OC terms, a different error
 * bound than test_conv derives, so it is not used.)
 *
 * Narrow channels (conv_narrow: kdcl's narrow-product kernels on, i.e. CPU
 * devices, OC <= 16, kdcl's im2col). Per image, LeNet-5's products (6 x 784
 * x 25, 16 x 100 x 150) and ResNet-20's first stage (16 x 1024 x 144) are
 * too thin for CLBlast's direct kernel to run well; over the batch they are
 * long and thin, which gemm_small.cl's kernels are for: the forward as one
 * gemm_small_tn over the wide columns (m = OC, n = B*P, k = K; W^T in the
 * scratch slot), the weight gradient as gemm_small_nt_parts (C^T = col
 * dy'^T, one work-item per column row and part of the positions, parts sized
 * to keep their slice of dy' in a core's cache, then summed in order:
 * conv_narrow_dw), the input gradient as one gemm_small_nn (dcol = W^T dy',
 * k = OC) and the wide col2im. An earlier form of the weight gradient, TN
 * on the transposed columns (one work-item per 8 columns of K), read the
 * columns from memory once per column group and lost at ResNet's stage 1
 * (29.6 vs 23.9 ms without dx); the transposed columns' scattered writes
 * also cost 2-4x the wide im2col. Per-image route (narrow kernels off) ->
 * narrow, same machine, batch 128, best of 6 after a warm-up, two rounds
 * alternated, the host's other tenants active (ms: forward / backward with
 * dx / without dx):
 *   1x28x28 -> 6@5 p2     5.95 / 12.75 / 5.44 -> 4.31 / 7.40 / 4.43
 *                         5.16 / 11.55 / 4.95 -> 2.16 / 3.93 / 2.09
 *   6x14x14 -> 16@5       3.35 / 10.81 / 5.60 -> 3.19 / 6.60 / 3.40
 *                         3.14 / 10.87 / 6.61 -> 2.81 / 5.75 / 2.89
 *   3x32x32 -> 16@3 p1    9.93 / 19.93 / 9.75 -> 7.67 / 12.21 / 7.27
 *                         7.16 / 12.42 / 6.73 -> 7.47 / 13.44 / 8.49
 *   16x32x32 -> 16@3 p1  21.68 / 54.59 / 24.60 -> 23.93 / 47.89 / 21.15
 *                        19.41 / 50.59 / 24.12 -> 23.17 / 43.06 / 21.54
 * (a shape outside the route, 16x32x32 -> 32@3 s2, moved by up to 15%
 * between the same two configurations: the noise of these figures). The
 * forward at ResNet's 16 x 1024 x 144 is 10-20% slower than per image, its
 * backward 10-15% faster; LeNet-5's convolutions 1.5-2.8x faster. LeNet-5
 * training (kdcl bench, lenet5 at B = 128) 3012 / 3221 -> 4328 / 5367
 * samples/s, old and new binaries alternated. Up to 32 channels (two
 * 16-channel passes of each kernel over the columns) the route lost at
 * ResNet-20's second stage: 32x16x16 -> 32@3 p1 forward 15.5 / 13.6 ms per
 * image against 24.9 / 20.0 narrow, backward even (47.3 / 45.2 vs 45.3 /
 * 43.0); 16x32x32 -> 32@3 s2 8.4 / 9.2 vs 10.4 / 13.8. Hence 16.
 *
 * Direct convolutions (conv_direct: kdcl's direct kernels on, i.e. CPU
 * devices, kdcl's im2col algorithm; src/core/conv_direct.c and
 * cl/conv_direct.cl). A 3x3 layer with padding 1 and stride 1 or 2, or a 5x5
 * layer with stride 1, runs without columns and without GEMMs: each
 * work-item holds 16 output positions of one image for 16 output channels
 * in float16 registers and builds each input row's shifted copies with
 * shuffles; the weight gradient is one work-item per kernel row, 4 output
 * channels and input channel per part of the batch (parts of up to 512 KiB
 * of x and dy), the parts summed in order; the input gradient is the
 * flipped convolution of dy at stride 1 and a gather at stride 2. This
 * takes precedence over the narrow route. Measured per op (same machine,
 * batch 128, best of 5 after a warm-up, wall time to clFinish, direct off /
 * on alternated twice: `KDCL_CONV_DIRECT=0|1 build/tools/conv_time
 * C,H,W,OC,K,P,S ...`, tools/conv_time.c; ms: forward / backward with dx /
 * without dx; the two rounds):
 *                          GEMM routes (off)         direct (on)
 *   3x32x32 -> 16@3 p1     6.9 / 10.5 /  7.3      0.85 /  4.8 /  2.6
 *                          8.3 / 12.4 /  8.4      1.16 /  6.3 /  3.8
 *   16x32x32 -> 16@3 p1   27.6 / 37.6 / 21.8      3.2 /  8.4 /  5.7
 *                         24.5 / 42.0 / 22.2      4.6 / 11.1 /  7.3
 *   16x32x32 -> 32@3 s2    8.8 / 23.7 / 11.1      1.9 /  9.9 /  4.9
 *                         10.2 / 25.2 / 12.5      2.4 / 11.8 /  5.8
 *   32x16x16 -> 32@3 p1   13.7 / 41.3 / 21.0      3.7 /  6.5 /  6.2
 *                         14.9 / 50.9 / 21.8      2.4 /  9.0 /  5.7
 *   32x16x16 -> 64@3 s2    9.4 / 22.8 / 11.4      2.2 / 10.6 /  5.6
 *                          6.9 / 19.4 / 10.7      1.8 /  8.5 /  4.0
 *   64x8x8 -> 64@3 p1     12.1 / 24.7 / 13.4      2.6 / 11.6 /  9.1
 *                         11.3 / 26.5 / 13.9      3.7 /  9.8 /  6.9
 *   32x14x14 -> 64@3 p1   20.9 / 48.2 / 27.7      4.7 / 15.3 / 10.6
 *                         21.5 / 51.5 / 29.5      4.8 / 17.3 / 10.6
 *   64x14x14 -> 64@3 p1   40.4 / 84.3 / 42.9      9.5 / 34.8 / 24.6
 *                         33.6 / 70.0 / 36.9      9.0 / 26.4 / 19.7
 *   1x28x28 -> 6@5 p2      2.9 /  5.1 /  3.1      0.62 /  -  /  0.70
 *                          1.6 /  2.7 /  1.5      0.66 /  -  /  1.6
 *   6x14x14 -> 16@5        3.0 /  6.1 /  3.2      0.62 /  2.6 /  1.6
 *                          1.3 /  3.4 /  1.7      0.63 /  2.4 /  1.4
 * (ResNet-20's layers, cnn-medium's and LeNet-5's; the forward runs at
 * 130-330 GFLOP/s, the GEMM routes at 20-50. "-": with one input channel the
 * input gradient is not direct (15 of 16 lanes of its channel block would
 * be idle) and a backward with dx takes the GEMM routes whole; the first
 * layer, which has no dx, still gets the direct weight gradient.) Forms
 * measured and rejected: every helper of the hot loops as a function
 * instead of a macro (PoCL 3.1 left the larger ones as calls, which spilled
 * the 16 accumulators: the forward 1.5-3x slower); the stride chosen inside
 * the loops instead of one loop per stride (the weight gradient 20-40%
 * slower at stride 1); a weight-gradient work-item of 2 output channels x
 * all 9 taps (each input row built three times: 1.4-1.6x slower), and that
 * one over 2 output rows at a time (1.2-1.3x slower than it); partial row
 * segments loaded element by element (rows of 14: 3-4x slower than the
 * masked vector load). Left to the GEMM routes: other kernel sizes,
 * strides and paddings, one-channel outputs, GPUs (whose kernels want
 * work-groups and local memory; CLBlast's are tuned for them).
 *
 * Algorithms (kdcl_conv_set_algo, KDCL_CONV). Everything above is
 * KDCL_CONV_KDCL_IM2COL. KDCL_CONV_CLBLAST_IM2COL takes the same routes
 * (conv_wide) and the same product forms with CLBlast's im2col / col2im,
 * except one: CLBlast's column layout is kdcl's per-image one, [K, P] per
 * image, used as is on the per-image route and transposed to / from
 * [K, B*P] (kdcl's conv_permute, through a context scratch buffer of B*K*P
 * floats) on the wide one, so its per-image weight gradient stays NT
 * (dy_b col_b^T) at every K: the TN form needs the columns transposed,
 * [P, K] per image, which only kdcl's im2col writes. col2im adds into dx,
 * which is zeroed first. Both run as one call for the batch, the batch
 * folded into the channels (see "CLBlast's im2col, col2im and convgemm"
 * below), which measured as fast as 128 per-image calls or faster, by up to
 * 1.5x (one run each, loaded machine as below: im2col 2.5 vs 3.2 ms at
 * 1x28x28, 39.0 vs 44.0 at 16x32x32, 20.1 vs 19.9 at 32x16x16 -> 32, 8.6 vs
 * 11.5 at 64x8x8; col2im 9.4 vs 10.1, 123.0 vs 128.0, 59.8 vs 64.1, 34.5 vs
 * 39.5, 17.4 vs 25.7 at 32x16x16 -> 64 s2). KDCL_CONV_CLBLAST_CONVGEMM runs
 * the forward as CLBlastSconvgemm + kdcl's bias add and the backward as
 * KDCL_CONV_CLBLAST_IM2COL (CLBlast has no convgemm backward).
 * These measurements PREDATE the changes under "Since" above (they were
 * taken with the per-element im2col / col2im, CLBlast's default XgemmDirect
 * parameters, the wide route wherever packing allowed it and the per-image
 * forms of the first table, the GEMMs alike for all three algorithms) and
 * have not been repeated since. Same machine, batch 128, default packing,
 * one run each after a warm-up,
 * wall ms (enqueue to clFinish) of forward (with bias) / backward with dx and
 * db / backward without dx, measured while a training job shared the 2 cores
 * (load average 3.4-3.7): absolute figures are 2-5x the table above and a
 * second pass moved single figures by up to 2.4x either way, but the order of
 * the three held in both passes:
 *                            kdcl im2col           CLBlast im2col        CLBlast convgemm
 *   1x28x28 -> 6@5 p2       11.7 /  21.6 / 11.8   13.8 /  32.0 / 13.7    66.1 /  32.1 / 14.8
 *   6x14x14 -> 16@5         10.0 /  27.5 / 12.1    9.2 /  30.2 / 13.1    31.3 /  32.7 / 13.1
 *   3x32x32 -> 32@3 p1      45.2 /  71.9 / 33.7   43.1 /  82.8 / 33.5    97.9 /  84.6 / 32.1
 *   32x16x16 -> 64@3 p1     56.1 /  94.3 / 47.0   55.3 / 135.6 / 71.5   246.3 / 135.4 / 55.3
 *   16x32x32 -> 16@3 p1     89.1 / 181.6 / 88.9   93.8 / 237.2 / 91.7   211.0 / 265.6 / 90.0
 *   16x32x32 -> 32@3 s2 p1  26.8 /  69.2 / 28.6   31.4 /  87.4 / 31.8    71.9 /  92.7 / 32.2
 *   32x16x16 -> 32@3 p1     44.0 / 102.9 / 46.5   53.4 / 139.0 / 63.0   126.9 / 142.1 / 56.7
 *   32x16x16 -> 64@3 s2 p1  10.3 /  30.1 / 11.4   13.3 /  38.4 / 13.8    80.0 /  47.1 / 27.4
 *   64x8x8 -> 64@3 p1       42.7 /  63.0 / 34.7   43.5 / 115.5 / 44.0   201.5 / 108.3 / 43.7
 * CLBlast's im2col forward is within -8% / +29% of kdcl's (0.92-1.29x; the
 * second pass 0.99-1.37x); its backward with dx is 1.10-1.83x kdcl's
 * (CLBlastScol2im plus the zero fill against kdcl's gather col2im, and on the
 * wide route the transposes); convgemm's forward is 2.2-7.8x kdcl's. So
 * AUTO = KDCL_CONV_KDCL_IM2COL on CPU devices (the changes since sped up
 * kdcl's im2col / col2im and its TN weight gradient, which CLBlast's paths
 * do not use, so the gap is expected to have grown, unmeasured). On GPUs
 * (not measurable here) AUTO = KDCL_CONV_CLBLAST_IM2COL: CLBlast's kernels and its database are
 * tuned for GPUs, and kdcl's im2col / col2im are not; that choice is
 * unmeasured and is worth timing (KDCL_CONV=kdcl vs clblast) on a GPU. */

#define CONV_LIMIT ((size_t)1 << 31) /* every element count and index fits an int */
#define CONV_MAX_WASTE 3.0           /* padded / true multiply-adds of a wide product */
#define CONV_DW_TN_MIN_K 64          /* per-image weight gradient in the TN form from this K */
#define CONV_NARROW_MIN_ROWS 256     /* rows of the narrow weight gradient per part, at least */
#define CONV_NARROW_PART_BYTES (256 * 1024) /* ... and their bytes, at most (conv_narrow_dw) */
#define CONV_DIRECT_MIN_CH 2         /* channels a direct forward (input gradient) computes, at least */

/* a * b < 2^31 (a, b below 2^31 themselves), into *out. */
static int conv_mul(size_t a, size_t b, size_t *out)
{
    return !__builtin_mul_overflow(a, b, out) && *out < CONV_LIMIT;
}

static void pad_str(char *buf, size_t size, size_t ph, size_t pw)
{
    if (ph == pw)
        snprintf(buf, size, "%zu", ph);
    else
        snprintf(buf, size, "%zux%zu", ph, pw);
}

static kdcl_status geom_fill(const char *op, kdcl_conv_geom *g, size_t c, size_t h, size_t w,
                             size_t oc, size_t kh, size_t kw, size_t sh, size_t sw, size_t ph,
                             size_t pw)
{
    char pad[48];
    pad_str(pad, sizeof pad, ph, pw);
    if (!c || !h || !w || !oc || !kh || !kw || !sh || !sw)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "%s: every size must be >= 1 (input %zux%zux%zu, %zu outputs, "
                              "kernel %zux%zu, stride %zux%zu)",
                              op, c, h, w, oc, kh, kw, sh, sw);
    const size_t all[] = {c, h, w, oc, kh, kw, sh, sw, ph, pw};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i] >= CONV_LIMIT)
            return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                  "%s: a size is 2^31 or more (input %zux%zux%zu, %zu outputs, "
                                  "kernel %zux%zu, stride %zux%zu, padding %s)",
                                  op, c, h, w, oc, kh, kw, sh, sw, pad);
    if (ph >= kh || pw >= kw)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "%s: padding %s must be smaller than the kernel %zux%zu", op, pad,
                              kh, kw);
    if (h + 2 * ph < kh || w + 2 * pw < kw)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "%s: kernel %zux%zu does not fit a %zux%zu input with padding %s",
                              op, kh, kw, h, w, pad);
    const size_t oh = (h + 2 * ph - kh) / sh + 1, ow = (w + 2 * pw - kw) / sw + 1;
    size_t chw, hw, ohw, ocp, k, kk, ock, colsz;
    if (!conv_mul(h, w, &hw) || !conv_mul(c, hw, &chw) || !conv_mul(oh, ow, &ohw) ||
        !conv_mul(oc, ohw, &ocp) || !conv_mul(kh, kw, &kk) || !conv_mul(c, kk, &k) ||
        !conv_mul(oc, k, &ock) || !conv_mul(k, ohw, &colsz))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "%s: input %zux%zux%zu, %zu outputs of %zux%zu, kernel %zux%zu: "
                              "C*H*W, OC*OH*OW, OC*C*KH*KW and C*KH*KW*OH*OW must be below 2^31",
                              op, c, h, w, oc, oh, ow, kh, kw);
    *g = (kdcl_conv_geom){.c = c, .h = h, .w = w, .oc = oc, .kh = kh, .kw = kw, .sh = sh,
                          .sw = sw, .ph = ph, .pw = pw, .oh = oh, .ow = ow};
    return KDCL_OK;
}

kdcl_status kdcl_conv_geom_set(kdcl_conv_geom *g, size_t c, size_t h, size_t w, size_t oc,
                               size_t kh, size_t kw, size_t sh, size_t sw, size_t ph, size_t pw)
{
    static const char *op = "kdcl_conv_geom_set";
    if (!g) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: g is NULL", op);
    kdcl_status s = geom_fill(op, g, c, h, w, oc, kh, kw, sh, sw, ph, pw);
    if (s) memset(g, 0, sizeof *g);
    return s;
}

kdcl_status kdcl_conv_geom_check(const char *op, const kdcl_conv_geom *g)
{
    if (!g) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: geometry is NULL", op);
    kdcl_conv_geom t = {0};
    kdcl_status s =
        geom_fill(op, &t, g->c, g->h, g->w, g->oc, g->kh, g->kw, g->sh, g->sw, g->ph, g->pw);
    if (s) return s;
    if (t.oh != g->oh || t.ow != g->ow)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "%s: geometry says output %zux%zu but input %zux%zu, kernel "
                              "%zux%zu, stride %zux%zu, padding %zux%zu give %zux%zu "
                              "(fill it with kdcl_conv_geom_set)",
                              op, g->oh, g->ow, g->h, g->w, g->kh, g->kw, g->sh, g->sw, g->ph,
                              g->pw, t.oh, t.ow);
    return KDCL_OK;
}

/* Element counts of one conv call; layout of the workspace: [0, T) the
 * transposed / per-image-partial region (B*OC*max(P, K)), [T, T + B*K*P) the
 * columns. */
typedef struct {
    size_t K, P, BP, nx, ny, nw, T, ncol, nws;
} conv_sizes;

static kdcl_status conv_size(const char *op, const kdcl_conv_geom *g, size_t batch,
                             conv_sizes *z)
{
    kdcl_status s = kdcl_conv_geom_check(op, g);
    if (s) return s;
    if (batch == 0) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: batch must be >= 1", op);
    z->K = g->c * g->kh * g->kw; /* below 2^31: checked with the geometry */
    z->P = g->oh * g->ow;
    z->nw = g->oc * z->K;
    size_t big = z->P > z->K ? z->P : z->K, boc;
    if (!conv_mul(batch, z->P, &z->BP) || !conv_mul(batch, g->c * g->h * g->w, &z->nx) ||
        !conv_mul(batch, g->oc * z->P, &z->ny) || !conv_mul(batch, z->K * z->P, &z->ncol) ||
        !conv_mul(batch, g->oc, &boc) || !conv_mul(boc, big, &z->T) ||
        z->T + z->ncol >= CONV_LIMIT)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "%s: batch %zu of %zux%zux%zu -> %zux%zux%zu (kernel %zux%zu) "
                              "needs tensors or a workspace of 2^31 elements or more",
                              op, batch, g->c, g->h, g->w, g->oc, g->oh, g->ow, g->kh, g->kw);
    z->nws = z->T + z->ncol;
    return KDCL_OK;
}

size_t kdcl_conv2d_workspace(const kdcl_conv_geom *g, size_t batch)
{
    if (!g || batch == 0) return 0;
    size_t K, P, a, b, big, n;
    if (__builtin_mul_overflow(g->c, g->kh, &K) || __builtin_mul_overflow(K, g->kw, &K) ||
        __builtin_mul_overflow(g->oh, g->ow, &P) || __builtin_mul_overflow(batch, K, &a) ||
        __builtin_mul_overflow(a, P, &a))
        return SIZE_MAX;
    big = P > K ? P : K;
    if (__builtin_mul_overflow(batch, g->oc, &b) || __builtin_mul_overflow(b, big, &b) ||
        __builtin_add_overflow(a, b, &n))
        return SIZE_MAX;
    return n;
}

/* 1 when the batch-wide product C[m x n] = op(A) op(B) (k deep) runs faster
 * as one packed GEMM than as per-image ones (see the table above): kdcl's
 * packing is on (tile sizes known), the output channels fill at least one
 * tile along the dimension they occupy (oc_in_k: k, else m; below that the
 * per-image products on CLBlast's direct kernel won at every preset shape)
 * and padding to the tiles at most triples the work; Mp, Np, Kp as
 * gemm_packed takes them. */
static int conv_wide(const kdcl_ctx *ctx, size_t m, size_t n, size_t k, int oc_in_k, size_t *Mp,
                     size_t *Np, size_t *Kp)
{
    const gemm_state *g = gemm_state_peek(ctx);
    if (!g) return 0;
    const kdcl_gemm_pack_info *p = &g->pack;
    if (!p->enabled) return 0;
    *Mp = round_up(n, p->mwg);
    *Np = round_up(m, p->nwg);
    *Kp = round_up(k, p->kwg);
    if (*Mp > UINT_MAX / 2 || *Np > UINT_MAX / 2 || *Kp > UINT_MAX / 2) return 0;
    if (!pack_fits(ctx, *Mp, *Np, *Kp)) return 0; /* per image instead */
    if (oc_in_k ? k < p->kwg : m < p->nwg) return 0;
    double vol = (double)m * (double)n * (double)k;
    double vol_p = (double)*Mp * (double)*Np * (double)*Kp;
    double t = (double)p->min_size;
    return vol_p <= CONV_MAX_WASTE * vol && vol_p >= t * t * t;
}

/* C = op(A) op(B) as one packed GEMM (conv_wide said so). */
static kdcl_status gemm_wide(kdcl_ctx *ctx, kdcl_trans ta, kdcl_trans tb, size_t m, size_t n,
                             size_t k, size_t Mp, size_t Np, size_t Kp, cl_mem a, size_t a_off,
                             size_t lda, cl_mem b, size_t b_off, size_t ldb, cl_mem c,
                             size_t c_off, size_t ldc)
{
    kdcl_status s = validate(ta, tb, m, n, k, a, a_off, lda, 0, b, b_off, ldb, 0, c, c_off, ldc,
                             0, 1, "Sgemm");
    if (s) return s;
    return gemm_packed(ctx, ta, tb, m, n, k, Mp, Np, Kp, 1.0f, a, a_off, lda, b, b_off, ldb, 0.0f,
                       c, c_off, ldc, NULL);
}

/* 1 when the per-image weight gradient takes the TN form (transposed
 * columns and dy, see the table above): K >= CONV_DW_TN_MIN_K, with kdcl's
 * im2col (CLBlast's writes the columns untransposed only). */
static int conv_dw_tn(kdcl_conv_algo algo, size_t K)
{
    return algo == KDCL_CONV_KDCL_IM2COL && K >= CONV_DW_TN_MIN_K;
}

/* 1 for the narrow route ("Narrow channels" above): kdcl's narrow-product
 * kernels on (CPU devices), at most SMALL_MAX output channels, kdcl's im2col,
 * every count within the kernels' uint. */
static int conv_narrow(const kdcl_ctx *ctx, const kdcl_conv_geom *g, kdcl_conv_algo algo,
                       const conv_sizes *z)
{
    const gemm_state *gs = gemm_state_peek(ctx);
    return gs && gs->small && algo == KDCL_CONV_KDCL_IM2COL && g->oc <= SMALL_MAX &&
           z->BP <= UINT_MAX && z->K <= UINT_MAX;
}

/* The algorithm of the backward: convgemm has none, CLBlast's im2col /
 * col2im stand in. */
static kdcl_conv_algo conv_backward_algo(const kdcl_ctx *ctx)
{
    return kdcl_conv_algo_in_force(ctx) == KDCL_CONV_KDCL_IM2COL ? KDCL_CONV_KDCL_IM2COL
                                                                 : KDCL_CONV_CLBLAST_IM2COL;
}

/* The direct route ("Direct 3x3" above) for product `what` (0 the forward,
 * 1 the weight gradient, 2 the input gradient): direct kernels on (CPU
 * devices), kdcl's algorithm, a 3x3 kernel with stride 1 and padding 1, and
 * for the forward (input gradient) at least CONV_DIRECT_MIN_CH output (input)
 * channels. */
static int conv_direct(const kdcl_ctx *ctx, const kdcl_conv_geom *g, kdcl_conv_algo algo,
                       int what)
{
    const gemm_state *gs = gemm_state_peek(ctx);
    if (!gs || !gs->direct || algo != KDCL_CONV_KDCL_IM2COL || !kdcl__conv_direct_fits(g))
        return 0;
    return what == 0 ? g->oc >= CONV_DIRECT_MIN_CH : what == 2 ? g->c >= CONV_DIRECT_MIN_CH : 1;
}

int kdcl_conv_direct_on(kdcl_ctx *ctx)
{
    gemm_state *gs = NULL;
    if (!ctx || gemm_state_get(ctx, &gs)) return 0;
    return gs->direct && kdcl_conv_algo_in_force(ctx) == KDCL_CONV_KDCL_IM2COL;
}

int kdcl__conv_direct(const kdcl_ctx *ctx, const kdcl_conv_geom *g, int what)
{
    return conv_direct(ctx, g, what == 0 ? kdcl_conv_algo_in_force(ctx) : conv_backward_algo(ctx),
                       what);
}

static void conv_products_gemm(const kdcl_ctx *ctx, const kdcl_conv_geom *g, size_t batch,
                               kdcl_conv_product p[3])
{
    const size_t K = g->c * g->kh * g->kw, P = g->oh * g->ow, BP = batch * P, OC = g->oc;
    const kdcl_conv_algo bwd = conv_backward_algo(ctx);
    size_t Mp, Np, Kp;
    conv_sizes z = {.K = K, .BP = BP};
    if (conv_narrow(ctx, g, kdcl_conv_algo_in_force(ctx), &z)) {
        p[0] = (kdcl_conv_product){OC, BP, K, 1, 0, 1};
        p[1] = (kdcl_conv_product){K, OC, BP, 0, 1, 1}; /* in parts, then summed */
        p[2] = (kdcl_conv_product){K, BP, OC, 0, 0, 1};
        return;
    }
    if (kdcl_conv_algo_in_force(ctx) == KDCL_CONV_CLBLAST_CONVGEMM)
        p[0] = (kdcl_conv_product){OC, P, K, 0, 0, 0}; /* CLBlastSconvgemm, no kdcl_gemm */
    else if (conv_wide(ctx, OC, BP, K, 0, &Mp, &Np, &Kp))
        p[0] = (kdcl_conv_product){OC, BP, K, 0, 0, 1};
    else
        p[0] = (kdcl_conv_product){OC, P, K, 1, 0, batch};
    if (conv_wide(ctx, OC, K, BP, 0, &Mp, &Np, &Kp))
        p[1] = (kdcl_conv_product){OC, K, BP, 0, 1, 1};
    else if (conv_dw_tn(bwd, K))
        p[1] = (kdcl_conv_product){OC, K, P, 1, 0, batch};
    else
        p[1] = (kdcl_conv_product){OC, K, P, 0, 1, batch};
    if (conv_wide(ctx, K, BP, OC, 1, &Mp, &Np, &Kp))
        p[2] = (kdcl_conv_product){K, BP, OC, 1, 0, 1};
    else
        p[2] = (kdcl_conv_product){K, P, OC, 1, 0, batch};
}

void kdcl_conv2d_products(const kdcl_ctx *ctx, const kdcl_conv_geom *g, size_t batch,
                          kdcl_conv_product p[3])
{
    conv_products_gemm(ctx, g, batch, p);
    /* no kdcl_gemm where direct; a weight gradient that is direct only
     * without dx (too few input channels for a direct dx) is listed as in
     * the backward without dx (a first layer's), beside the dx products of
     * the other routes */
    if (kdcl__conv_direct(ctx, g, 0)) p[0].count = 0;
    if (kdcl__conv_direct(ctx, g, 1)) p[1].count = 0;
    if (kdcl__conv_direct(ctx, g, 2)) p[2].count = 0;
}

/* C_b = op(A_b) op(B_b) for b < batch (alpha 1, beta 0): one kdcl_gemm for a
 * single image, else one kdcl_gemm_batched call. */
static kdcl_status gemm_images(kdcl_ctx *ctx, kdcl_trans ta, kdcl_trans tb, size_t m, size_t n,
                               size_t k, cl_mem a, size_t a_off, size_t lda, size_t a_stride,
                               cl_mem b, size_t b_off, size_t ldb, size_t b_stride, cl_mem c,
                               size_t c_off, size_t ldc, size_t c_stride, size_t batch)
{
    if (batch == 1)
        return kdcl_gemm(ctx, ta, tb, m, n, k, 1.0f, a, a_off, lda, b, b_off, ldb, 0.0f, c,
                         c_off, ldc, NULL);
    return kdcl_gemm_batched(ctx, ta, tb, m, n, k, 1.0f, a, a_off, lda, a_stride, b, b_off, ldb,
                             b_stride, 0.0f, c, c_off, ldc, c_stride, batch, NULL);
}

/* Column layouts (cl/conv.cl): per image [B][K, P], wide [K, B*P], per image
 * transposed [B][P, K]. */
enum { COL_IMAGE, COL_WIDE, COL_IMAGE_T };

static void col_strides(const conv_sizes *z, int layout, cl_ulong *sq, cl_ulong *sb, cl_uint *sp)
{
    *sq = layout == COL_WIDE ? z->BP : layout == COL_IMAGE ? z->P : 1;
    *sb = layout == COL_WIDE ? z->P : z->K * z->P;
    *sp = layout == COL_IMAGE_T ? (cl_uint)z->K : 1;
}

static kdcl_status conv_cols(kdcl_ctx *ctx, const char *kname, const kdcl_conv_geom *g,
                             size_t batch, const conv_sizes *z, int layout, cl_mem im, cl_mem col,
                             size_t col_off)
{
    cl_uint C = (cl_uint)g->c, H = (cl_uint)g->h, W = (cl_uint)g->w, KH = (cl_uint)g->kh,
            KW = (cl_uint)g->kw, SH = (cl_uint)g->sh, SW = (cl_uint)g->sw, PH = (cl_uint)g->ph,
            PW = (cl_uint)g->pw, OH = (cl_uint)g->oh, OW = (cl_uint)g->ow;
    cl_ulong off = col_off, sq, sb;
    cl_uint sp;
    col_strides(z, layout, &sq, &sb, &sp);
    int to_col = !strcmp(kname, "conv_im2col");
    /* positions contiguous: one work-item per tap (cl/conv.cl) */
    if (to_col && sp == 1) kname = "conv_im2col_taps";
    cl_kernel k;
    kdcl_status s = kdcl_kernel_get(ctx, "conv", kname, &k);
    if (s) return s;
    if (to_col && sp == 1) {
        const karg t[] = {KA(im), KA(col), KA(C),  KA(H),  KA(W),   KA(KH), KA(KW), KA(SH),
                          KA(SW), KA(PH),  KA(PW), KA(OH), KA(OW), KA(off), KA(sq), KA(sb)};
        if ((s = kdcl_ops_set_args(k, kname, t, sizeof t / sizeof t[0]))) return s;
        return kdcl_ops_launch3(ctx, k, kname, g->kh * g->kw, g->c, batch);
    }
    const karg a[] = {to_col ? KA(im) : KA(col), to_col ? KA(col) : KA(im), KA(C), KA(H), KA(W),
                      KA(KH), KA(KW), KA(SH), KA(SW), KA(PH), KA(PW), KA(OH), KA(OW), KA(off),
                      KA(sq), KA(sb), KA(sp)};
    if ((s = kdcl_ops_set_args(k, kname, a, sizeof a / sizeof a[0]))) return s;
    if (to_col) return kdcl_ops_launch3(ctx, k, kname, g->oh, g->c, batch);
    return kdcl_ops_launch3(ctx, k, kname, g->h, g->c, batch);
}

/* [nb, no, np] <-> [no, nb, np] (cl/conv.cl's conv_permute; from the
 * latter: + bias[o] when given). */
static kdcl_status permute3(kdcl_ctx *ctx, size_t nb, size_t no, size_t np, int to_wide,
                            cl_mem src, size_t src_off, cl_mem dst, size_t dst_off, cl_mem bias)
{
    cl_kernel k;
    kdcl_status s = kdcl_kernel_get(ctx, "conv", "conv_permute", &k);
    if (s) return s;
    cl_ulong so = src_off, dof = dst_off;
    cl_uint OC = (cl_uint)no, B = (cl_uint)nb, P = (cl_uint)np;
    cl_int tw = to_wide, hb = bias != NULL;
    const karg a[] = {KA(src), KA(so), KA(dst), KA(dof), KA(bias), KA(OC), KA(B), KA(P),
                      KA(tw), KA(hb)};
    if ((s = kdcl_ops_set_args(k, "conv_permute", a, sizeof a / sizeof a[0]))) return s;
    return kdcl_ops_launch3(ctx, k, "conv_permute", np, no, nb);
}

/* NCHW [B, OC, P] <-> wide [OC, B*P] (to NCHW: + bias when given). */
static kdcl_status conv_permute(kdcl_ctx *ctx, const kdcl_conv_geom *g, size_t batch,
                                const conv_sizes *z, int to_wide, cl_mem src, size_t src_off,
                                cl_mem dst, size_t dst_off, cl_mem bias)
{
    return permute3(ctx, batch, g->oc, z->P, to_wide, src, src_off, dst, dst_off, bias);
}

/* dst[b, p, o] = src[b, o, p]: every image's [OC, P] transposed (cl/conv.cl). */
static kdcl_status conv_transpose_images(kdcl_ctx *ctx, const kdcl_conv_geom *g, size_t batch,
                                         const conv_sizes *z, cl_mem src, size_t src_off,
                                         cl_mem dst, size_t dst_off)
{
    cl_kernel k;
    kdcl_status s = kdcl_kernel_get(ctx, "conv", "conv_transpose_images", &k);
    if (s) return s;
    cl_ulong so = src_off, dof = dst_off;
    cl_uint OC = (cl_uint)g->oc, P = (cl_uint)z->P;
    const karg a[] = {KA(src), KA(so), KA(dst), KA(dof), KA(OC), KA(P)};
    if ((s = kdcl_ops_set_args(k, "conv_transpose_images", a, sizeof a / sizeof a[0]))) return s;
    return kdcl_ops_launch3(ctx, k, "conv_transpose_images", z->P, g->oc, batch);
}

/* ---- CLBlast's im2col, col2im and convgemm ----
 * CLBlastSim2col writes one image's columns as [C*KH*KW, OH*OW], row
 * (c*KH + i)*KW + j, column oy*OW + ox (CrossCorrelation mode: no kernel
 * flip): kdcl's per-image layout. Its kernels treat every channel alike and
 * take the image as [C, H, W] with C, H, W its arguments, so a batch is one
 * call with C' = B*C: the NCHW batch is [B*C, H, W] as stored, and its
 * columns [B*C*KH*KW, P] are the per-image layout [B][K][P] (one launch
 * instead of one per image; CLBlast indexes with int, and every count here
 * is below 2^31). CLBlastScol2im likewise; it ADDS into the image.
 * CLBlastSconvgemm takes the image NCHW, the kernel [OC, C*KH*KW] (kdcl's
 * weights) and writes [B, OC, OH*OW] (NCHW), without a bias. */
#define CONV_SCRATCH 3 /* the gemm_state scratch slot of CLBlast-layout columns */

static kdcl_status conv_clblast_fail(CLBlastStatusCode st, const char *routine,
                                     const kdcl_conv_geom *g, size_t batch)
{
    kdcl_status s = KDCL_ERR_CLBLAST;
    if (st == CLBlastTempBufferAllocFailure || st == CLBlastOpenCLOutOfHostMemory ||
        st == CLBlastOpenCLOutOfResources)
        s = KDCL_ERR_OOM;
    if (st == CLBlastOpenCLBuildProgramFailure) s = KDCL_ERR_BUILD;
    return kdcl_set_error(s,
                          "CLBlast %s(batch %zu of %zux%zux%zu -> %zu, kernel %zux%zu, stride "
                          "%zux%zu, padding %zux%zu) failed: %s (%d)",
                          routine, batch, g->c, g->h, g->w, g->oc, g->kh, g->kw, g->sh, g->sw,
                          g->ph, g->pw, kdcl_clblast_status_name(st), (int)st);
}

/* col[col_off ...] = the batch's columns, per-image layout. */
static kdcl_status clblast_im2col(kdcl_ctx *ctx, const kdcl_conv_geom *g, size_t batch,
                                  cl_mem x, cl_mem col, size_t col_off)
{
    cl_command_queue q = ctx->queue;
    CLBlastStatusCode st;
    CLBLAST_READ(st, CLBlastSim2col(CLBlastKernelModeCrossCorrelation, batch * g->c, g->h, g->w,
                                    g->kh, g->kw, g->ph, g->pw, g->sh, g->sw, 1, 1, x, 0, col,
                                    col_off, &q, NULL));
    return st == CLBlastSuccess ? kdcl_prof_op(ctx, "im2col")
                                : conv_clblast_fail(st, "Sim2col", g, batch);
}

/* dx = col2im(col[col_off ...]), per-image layout: dx zeroed (its first
 * B*C*H*W elements), then CLBlast adds the columns into it. */
static kdcl_status clblast_col2im(kdcl_ctx *ctx, const kdcl_conv_geom *g, size_t batch,
                                  const conv_sizes *z, cl_mem col, size_t col_off, cl_mem dx)
{
    const cl_float zero = 0.0f;
    KDCL_CL_CHECK(clEnqueueFillBuffer(ctx->queue, dx, &zero, sizeof zero, 0,
                                      z->nx * sizeof(cl_float), 0, NULL, NULL),
                  "clEnqueueFillBuffer(dx = 0 for CLBlastScol2im)");
    cl_command_queue q = ctx->queue;
    CLBlastStatusCode st;
    CLBLAST_READ(st, CLBlastScol2im(CLBlastKernelModeCrossCorrelation, batch * g->c, g->h, g->w,
                                    g->kh, g->kw, g->ph, g->pw, g->sh, g->sw, 1, 1, col, col_off,
                                    dx, 0, &q, NULL));
    return st == CLBlastSuccess ? kdcl_prof_op(ctx, "col2im")
                                : conv_clblast_fail(st, "Scol2im", g, batch);
}

static kdcl_status clblast_convgemm(kdcl_ctx *ctx, const kdcl_conv_geom *g, size_t batch,
                                    cl_mem x, cl_mem w, cl_mem y)
{
    cl_command_queue q = ctx->queue;
    CLBlastStatusCode st;
    CLBLAST_READ(st, CLBlastSconvgemm(CLBlastKernelModeCrossCorrelation, g->c, g->h, g->w, g->kh,
                                      g->kw, g->ph, g->pw, g->sh, g->sw, 1, 1, g->oc, batch, x, 0,
                                      w, 0, y, 0, &q, NULL));
    return st == CLBlastSuccess ? kdcl_prof_op(ctx, "convgemm")
                                : conv_clblast_fail(st, "Sconvgemm", g, batch);
}

/* ws[T, T + B*K*P) = the columns of x in the given layout, by kdcl's im2col
 * (any layout) or CLBlast's (COL_IMAGE or COL_WIDE: CLBlast's per-image
 * columns reach the wide layout through the scratch slot and a transpose;
 * for B = 1 the two layouts are one). */
static kdcl_status conv_to_cols(kdcl_ctx *ctx, kdcl_conv_algo algo, const kdcl_conv_geom *g,
                                size_t batch, const conv_sizes *z, int layout, cl_mem x,
                                cl_mem ws)
{
    if (algo == KDCL_CONV_KDCL_IM2COL)
        return conv_cols(ctx, "conv_im2col", g, batch, z, layout, x, ws, z->T);
    if (layout == COL_IMAGE_T)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "conv: CLBlast's im2col has no transposed column layout");
    if (layout == COL_IMAGE || batch == 1) return clblast_im2col(ctx, g, batch, x, ws, z->T);
    cl_mem tmp;
    kdcl_status s = scratch(ctx, CONV_SCRATCH, z->ncol, &tmp);
    if (!s) s = clblast_im2col(ctx, g, batch, x, tmp, 0);
    return s ? s : permute3(ctx, batch, z->K, z->P, 1, tmp, 0, ws, z->T, NULL);
}

/* dx (overwritten) = col2im of the columns at ws[T, ...) in the given layout
 * (COL_IMAGE or COL_WIDE), by kdcl's kernel or CLBlast's (wide columns
 * transposed to the per-image layout in the scratch slot first). */
static kdcl_status conv_from_cols(kdcl_ctx *ctx, kdcl_conv_algo algo, const kdcl_conv_geom *g,
                                  size_t batch, const conv_sizes *z, int layout, cl_mem ws,
                                  cl_mem dx)
{
    if (algo == KDCL_CONV_KDCL_IM2COL)
        return conv_cols(ctx, "conv_col2im", g, batch, z, layout, dx, ws, z->T);
    if (layout == COL_IMAGE || batch == 1) return clblast_col2im(ctx, g, batch, z, ws, z->T, dx);
    cl_mem tmp;
    kdcl_status s = scratch(ctx, CONV_SCRATCH, z->ncol, &tmp);
    if (!s) s = permute3(ctx, batch, z->K, z->P, 0, ws, z->T, tmp, 0, NULL);
    return s ? s : clblast_col2im(ctx, g, batch, z, tmp, 0, dx);
}

/* ---- algorithm selection (kdcl/conv.h) ---- */

const char *kdcl_conv_algo_name(kdcl_conv_algo algo)
{
    switch (algo) {
    case KDCL_CONV_AUTO: return "auto";
    case KDCL_CONV_KDCL_IM2COL: return "kdcl";
    case KDCL_CONV_CLBLAST_IM2COL: return "clblast";
    case KDCL_CONV_CLBLAST_CONVGEMM: return "convgemm";
    }
    return NULL;
}

kdcl_status kdcl_conv_set_algo(kdcl_ctx *ctx, kdcl_conv_algo algo)
{
    if (!ctx) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_conv_set_algo: ctx is NULL");
    if (!kdcl_conv_algo_name(algo))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "kdcl_conv_set_algo: unknown algorithm %d (KDCL_CONV_AUTO, "
                              "_KDCL_IM2COL, _CLBLAST_IM2COL or _CLBLAST_CONVGEMM)",
                              (int)algo);
    gemm_state *g = NULL;
    kdcl_status s = gemm_state_get(ctx, &g);
    if (s) return s;
    g->conv_algo = (int)algo;
    return KDCL_OK;
}

kdcl_conv_algo kdcl_conv_get_algo(const kdcl_ctx *ctx)
{
    const gemm_state *g = gemm_state_peek(ctx);
    return g ? (kdcl_conv_algo)g->conv_algo : KDCL_CONV_AUTO;
}

kdcl_conv_algo kdcl_conv_algo_in_force(const kdcl_ctx *ctx)
{
    kdcl_conv_algo a = kdcl_conv_get_algo(ctx);
    if (a != KDCL_CONV_AUTO) return a;
    return (ctx->dev.type & CL_DEVICE_TYPE_CPU) ? KDCL_CONV_KDCL_IM2COL
                                                : KDCL_CONV_CLBLAST_IM2COL;
}

static kdcl_status conv_algo_from_env(gemm_state *g)
{
    g->conv_algo = KDCL_CONV_AUTO;
    const char *env = getenv("KDCL_CONV");
    if (!env || !*env) return KDCL_OK;
    for (int a = KDCL_CONV_AUTO; a <= KDCL_CONV_CLBLAST_CONVGEMM; a++)
        if (!strcmp(env, kdcl_conv_algo_name((kdcl_conv_algo)a))) {
            g->conv_algo = a;
            return KDCL_OK;
        }
    return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                          "KDCL_CONV=%s: expected auto, kdcl, clblast or convgemm", env);
}

static kdcl_status conv_bias_add(kdcl_ctx *ctx, const kdcl_conv_geom *g, size_t batch,
                                 const conv_sizes *z, cl_mem y, cl_mem bias)
{
    cl_kernel k;
    kdcl_status s = kdcl_kernel_get(ctx, "conv", "conv_bias_add", &k);
    if (s) return s;
    cl_uint OC = (cl_uint)g->oc, P = (cl_uint)z->P;
    const karg a[] = {KA(y), KA(bias), KA(OC), KA(P)};
    if ((s = kdcl_ops_set_args(k, "conv_bias_add", a, sizeof a / sizeof a[0]))) return s;
    return kdcl_ops_launch3(ctx, k, "conv_bias_add", z->P, g->oc, batch);
}

static kdcl_status conv_bias_grad(kdcl_ctx *ctx, const kdcl_conv_geom *g, size_t batch,
                                  const conv_sizes *z, cl_mem dy, cl_mem db)
{
    cl_kernel k;
    kdcl_status s = kdcl_kernel_get(ctx, "conv", "conv_bias_grad", &k);
    size_t lws;
    if (s || (s = kdcl_ops_row_group_size(ctx, k, "conv_bias_grad", z->BP, &lws))) return s;
    cl_uint B = (cl_uint)batch, OC = (cl_uint)g->oc, P = (cl_uint)z->P;
    const karg a[] = {KA(dy), KA(db), KA(B), KA(OC), KA(P), KA_LOCAL(lws * sizeof(cl_float))};
    if ((s = kdcl_ops_set_args(k, "conv_bias_grad", a, sizeof a / sizeof a[0]))) return s;
    return kdcl_ops_launch(ctx, k, "conv_bias_grad", lws * g->oc, lws);
}

/* dw = (accumulate ? dw : 0) + the batch's per-image products, b ascending. */
static kdcl_status conv_sum_batches(kdcl_ctx *ctx, size_t batch, const conv_sizes *z,
                                    cl_mem part, size_t part_off, cl_mem dw, int accumulate)
{
    cl_kernel k;
    kdcl_status s = kdcl_kernel_get(ctx, "conv", "conv_sum_batches", &k);
    if (s) return s;
    cl_ulong po = part_off;
    cl_uint n = (cl_uint)z->nw, B = (cl_uint)batch;
    cl_int acc = accumulate;
    const karg a[] = {KA(part), KA(po), KA(dw), KA(n), KA(B), KA(acc)};
    if ((s = kdcl_ops_set_args(k, "conv_sum_batches", a, sizeof a / sizeof a[0]))) return s;
    return kdcl_ops_launch_items(ctx, k, "conv_sum_batches", z->nw);
}

/* Distinct buffers for an output and the tensors it must not overwrite. */
static kdcl_status conv_no_alias(const char *op, const char *name, const kdcl_tensor *t,
                                 const kdcl_tensor *const *others, const char *const *names,
                                 size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (others[i] && others[i]->buf == t->buf)
            return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: %s and %s share a buffer", op, name,
                                  names[i]);
    }
    return KDCL_OK;
}

#define CONV_TRY(x)                    \
    do {                               \
        kdcl_status s_ = (x);          \
        if (s_ != KDCL_OK) return s_;  \
    } while (0)

/* *wt = W^T [K, OC] in the scratch slot (the narrow route's forward and
 * input gradient). */
static kdcl_status conv_weights_t(kdcl_ctx *ctx, const conv_sizes *z, size_t oc, cl_mem w,
                                  cl_mem *wt)
{
    CONV_TRY(scratch(ctx, CONV_SCRATCH, z->nw, wt));
    return permute3(ctx, oc, z->K, 1, 1, w, 0, *wt, 0, NULL);
}

/* The narrow weight gradient dW [OC, K] = dy' col^T with dy' [OC, B*P] (dyw)
 * and the wide columns [K, B*P] at ws[T): gemm_small_nt_parts (one work-item
 * per column row and part; each part's products stored transposed, [OC, K])
 * over nc parts of the B*P positions into the scratch slot (dw itself when
 * nc = 1), then their sum in order. A part's slice of dy' stays in a core's
 * cache (CONV_NARROW_PART_BYTES) while the K work-items of the part, which
 * run one after another, each stream their row of the columns past it. At
 * least 8 work-items per compute unit, at most one part per image (so the
 * roundings stay within B*P + B: test_conv's bound). */
static kdcl_status conv_narrow_dw(kdcl_ctx *ctx, size_t batch, const conv_sizes *z, size_t oc,
                                  cl_mem dyw, cl_mem ws, cl_mem dw)
{
    const size_t K = z->K, BP = z->BP;
    const size_t cu = ctx->dev.compute_units ? ctx->dev.compute_units : 1;
    size_t rows = CONV_NARROW_PART_BYTES / (oc * sizeof(cl_float));
    if (rows < CONV_NARROW_MIN_ROWS) rows = CONV_NARROW_MIN_ROWS;
    size_t nc = (BP + rows - 1) / rows, least = (8 * cu + K - 1) / K;
    if (nc < least) nc = least;
    if (nc > batch) nc = batch;
    if (nc > BP / CONV_NARROW_MIN_ROWS) nc = BP / CONV_NARROW_MIN_ROWS;
    if (nc < 1) nc = 1;
    const size_t kc = (BP + nc - 1) / nc;
    nc = (BP + kc - 1) / kc;
    cl_mem part = dw;
    if (nc > 1) CONV_TRY(scratch(ctx, CONV_SCRATCH, nc * z->nw, &part));
    cl_kernel k;
    CONV_TRY(kdcl_kernel_get(ctx, "gemm_small", "gemm_small_nt_parts", &k));
    cl_uint M = (cl_uint)K, N = (cl_uint)oc, KK = (cl_uint)BP, KC = (cl_uint)kc;
    cl_ulong ao = z->T, la = BP, bo = 0, lb = BP, co = 0, lc = K, cp = z->nw;
    const karg a[] = {KA(M), KA(N), KA(KK), KA(KC), KA(ws), KA(ao), KA(la), KA(dyw), KA(bo),
                      KA(lb), KA(part), KA(co), KA(lc), KA(cp)};
    CONV_TRY(kdcl_ops_set_args(k, "gemm_small_nt_parts", a, sizeof a / sizeof a[0]));
    size_t g[2] = {K, nc}, l[2] = {1, 1};
    cl_int e = clEnqueueNDRangeKernel(ctx->queue, k, 2, NULL, g, l, 0, NULL, NULL);
    if (e != CL_SUCCESS) return kdcl_cl_fail(e, "clEnqueueNDRangeKernel(gemm_small_nt_parts)");
    CONV_TRY(kdcl_prof_op(ctx, "gemm"));
    return nc > 1 ? conv_sum_batches(ctx, nc, z, part, 0, dw, 0) : KDCL_OK;
}

kdcl_status kdcl_conv2d_forward(kdcl_ctx *ctx, const kdcl_conv_geom *g, size_t batch,
                                const kdcl_tensor *x, const kdcl_tensor *w,
                                const kdcl_tensor *bias, kdcl_tensor *y, kdcl_tensor *ws)
{
    static const char *op = "kdcl_conv2d_forward";
    if (!ctx) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: ctx is NULL", op);
    gemm_state *gs;
    CONV_TRY(gemm_state_get(ctx, &gs)); /* CLBlast's parameters before its first kernel */
    conv_sizes z;
    CONV_TRY(conv_size(op, g, batch, &z));
    char what[160];
    snprintf(what, sizeof what, "batch*C*H*W = %zu*%zu*%zu*%zu", batch, g->c, g->h, g->w);
    CONV_TRY(kdcl_ops_check_holds(op, "x", x, KDCL_F32, z.nx, 0, what));
    snprintf(what, sizeof what, "OC*C*KH*KW = %zu*%zu*%zu*%zu", g->oc, g->c, g->kh, g->kw);
    CONV_TRY(kdcl_ops_check_holds(op, "w", w, KDCL_F32, z.nw, 1, what));
    if (bias) {
        snprintf(what, sizeof what, "OC = %zu", g->oc);
        CONV_TRY(kdcl_ops_check_holds(op, "bias", bias, KDCL_F32, g->oc, 1, what));
    }
    snprintf(what, sizeof what, "batch*OC*OH*OW = %zu*%zu*%zu*%zu", batch, g->oc, g->oh, g->ow);
    CONV_TRY(kdcl_ops_check_holds(op, "y", y, KDCL_F32, z.ny, 0, what));
    snprintf(what, sizeof what, "kdcl_conv2d_workspace(g, %zu)", batch);
    CONV_TRY(kdcl_ops_check_holds(op, "ws", ws, KDCL_F32, z.nws, 0, what));
    const kdcl_tensor *in[] = {x, w, bias, ws};
    const char *in_n[] = {"x", "w", "bias", "ws"};
    CONV_TRY(conv_no_alias(op, "y", y, in, in_n, 4));
    CONV_TRY(conv_no_alias(op, "ws", ws, in, in_n, 3));

    const size_t OC = g->oc, K = z.K, P = z.P, BP = z.BP, T = z.T;
    const kdcl_conv_algo algo = kdcl_conv_algo_in_force(ctx);
    cl_mem bb = bias ? bias->buf : NULL;
    if (algo == KDCL_CONV_CLBLAST_CONVGEMM) {
        CONV_TRY(clblast_convgemm(ctx, g, batch, x->buf, w->buf, y->buf));
        return bias ? conv_bias_add(ctx, g, batch, &z, y->buf, bb) : KDCL_OK;
    }
    if (conv_direct(ctx, g, algo, 0))
        return kdcl__conv_direct_forward(ctx, g, batch, x->buf, w->buf, bb, y->buf);
    if (conv_narrow(ctx, g, algo, &z)) {
        /* narrow: Y' [OC, B*P] = (W^T)^T col [K, B*P] on gemm_small_tn, W^T
         * [K, OC] in the scratch slot; y = Y' transposed + bias */
        cl_mem wt, yw = batch == 1 ? y->buf : ws->buf;
        CONV_TRY(conv_to_cols(ctx, algo, g, batch, &z, COL_WIDE, x->buf, ws->buf));
        CONV_TRY(conv_weights_t(ctx, &z, OC, w->buf, &wt));
        CONV_TRY(gemm_small(ctx, "gemm_small_tn", OC, BP, K, 1.0f, wt, 0, OC, ws->buf, T, BP,
                            0.0f, yw, 0, BP, NULL));
        if (batch == 1) return bias ? conv_bias_add(ctx, g, batch, &z, y->buf, bb) : KDCL_OK;
        return conv_permute(ctx, g, batch, &z, 0, ws->buf, 0, y->buf, 0, bb);
    }
    size_t Mp, Np, Kp;
    if (conv_wide(ctx, OC, BP, K, 0, &Mp, &Np, &Kp)) {
        /* wide: Y' [OC, B*P] = W [OC, K] col [K, B*P]; y = Y' transposed + bias */
        CONV_TRY(conv_to_cols(ctx, algo, g, batch, &z, COL_WIDE, x->buf, ws->buf));
        if (batch == 1) { /* Y' is y */
            CONV_TRY(gemm_wide(ctx, KDCL_NO_TRANS, KDCL_NO_TRANS, OC, BP, K, Mp, Np, Kp, w->buf,
                               0, K, ws->buf, T, BP, y->buf, 0, BP));
            return bias ? conv_bias_add(ctx, g, batch, &z, y->buf, bb) : KDCL_OK;
        }
        CONV_TRY(gemm_wide(ctx, KDCL_NO_TRANS, KDCL_NO_TRANS, OC, BP, K, Mp, Np, Kp, w->buf, 0, K,
                           ws->buf, T, BP, ws->buf, 0, BP));
        return conv_permute(ctx, g, batch, &z, 0, ws->buf, 0, y->buf, 0, bb);
    }
    /* narrow: y_b [OC, P] = (W^T)^T col_b for every image b, W^T [K, OC] in
     * ws[0, OC*K) (CLBlast's direct kernel runs the TN form fastest) */
    CONV_TRY(conv_to_cols(ctx, algo, g, batch, &z, COL_IMAGE, x->buf, ws->buf));
    CONV_TRY(permute3(ctx, OC, K, 1, 1, w->buf, 0, ws->buf, 0, NULL));
    CONV_TRY(gemm_images(ctx, KDCL_TRANS, KDCL_NO_TRANS, OC, P, K, ws->buf, 0, OC, 0, ws->buf, T,
                         P, K * P, y->buf, 0, P, OC * P, batch));
    return bias ? conv_bias_add(ctx, g, batch, &z, y->buf, bb) : KDCL_OK;
}

kdcl_status kdcl_conv2d_backward(kdcl_ctx *ctx, const kdcl_conv_geom *g, size_t batch,
                                 const kdcl_tensor *x, const kdcl_tensor *w,
                                 const kdcl_tensor *dy, kdcl_tensor *dw, kdcl_tensor *db,
                                 kdcl_tensor *dx, kdcl_tensor *ws)
{
    static const char *op = "kdcl_conv2d_backward";
    if (!ctx) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: ctx is NULL", op);
    gemm_state *gs;
    CONV_TRY(gemm_state_get(ctx, &gs)); /* CLBlast's parameters before its first kernel */
    conv_sizes z;
    CONV_TRY(conv_size(op, g, batch, &z));
    char what[160];
    snprintf(what, sizeof what, "batch*C*H*W = %zu*%zu*%zu*%zu", batch, g->c, g->h, g->w);
    CONV_TRY(kdcl_ops_check_holds(op, "x", x, KDCL_F32, z.nx, 0, what));
    if (dx) CONV_TRY(kdcl_ops_check_holds(op, "dx", dx, KDCL_F32, z.nx, 0, what));
    snprintf(what, sizeof what, "OC*C*KH*KW = %zu*%zu*%zu*%zu", g->oc, g->c, g->kh, g->kw);
    CONV_TRY(kdcl_ops_check_holds(op, "w", w, KDCL_F32, z.nw, 1, what));
    CONV_TRY(kdcl_ops_check_holds(op, "dw", dw, KDCL_F32, z.nw, 1, what));
    if (db) {
        snprintf(what, sizeof what, "OC = %zu", g->oc);
        CONV_TRY(kdcl_ops_check_holds(op, "db", db, KDCL_F32, g->oc, 1, what));
    }
    snprintf(what, sizeof what, "batch*OC*OH*OW = %zu*%zu*%zu*%zu", batch, g->oc, g->oh, g->ow);
    CONV_TRY(kdcl_ops_check_holds(op, "dy", dy, KDCL_F32, z.ny, 0, what));
    snprintf(what, sizeof what, "kdcl_conv2d_workspace(g, %zu)", batch);
    CONV_TRY(kdcl_ops_check_holds(op, "ws", ws, KDCL_F32, z.nws, 0, what));
    const kdcl_tensor *in[] = {x, w, dy, ws, dw, db};
    const char *in_n[] = {"x", "w", "dy", "ws", "dw", "db"};
    CONV_TRY(conv_no_alias(op, "ws", ws, in, in_n, 3));
    CONV_TRY(conv_no_alias(op, "dw", dw, in, in_n, 4));
    if (db) CONV_TRY(conv_no_alias(op, "db", db, in, in_n, 5));
    if (dx) CONV_TRY(conv_no_alias(op, "dx", dx, in, in_n, 6));

    const size_t OC = g->oc, K = z.K, P = z.P, BP = z.BP, T = z.T;
    const kdcl_conv_algo algo = conv_backward_algo(ctx); /* convgemm has no backward */
    if (db) CONV_TRY(conv_bias_grad(ctx, g, batch, &z, dy->buf, db->buf));
    if (conv_direct(ctx, g, algo, 1) && (!dx || conv_direct(ctx, g, algo, 2))) {
        /* direct: the weight gradient per part of the batch into ws[0,
         * parts*OC*K) (dw itself for one part), then their sum in order; the
         * input gradient direct (with too few input channels for that, the
         * whole backward takes the routes below) */
        const size_t parts = kdcl__conv_direct_parts(ctx, g, batch);
        CONV_TRY(kdcl__conv_direct_dw_parts(ctx, g, batch, x->buf, dy->buf,
                                            parts > 1 ? ws->buf : dw->buf));
        if (parts > 1) CONV_TRY(conv_sum_batches(ctx, parts, &z, ws->buf, 0, dw->buf, 0));
        return dx ? kdcl__conv_direct_dx(ctx, g, batch, w->buf, dy->buf, dx->buf) : KDCL_OK;
    }
    if (conv_narrow(ctx, g, algo, &z)) {
        /* narrow: the wide columns at ws[T), dy' [OC, B*P] at ws[0) (dy itself
         * when B = 1); dW = dy' col^T in parts (conv_narrow_dw); dcol [K, B*P]
         * = (W^T) dy' (gemm_small_nn, k = OC; W^T [K, OC] in the scratch slot)
         * over the columns, dx = col2im(dcol) */
        cl_mem dyw = batch == 1 ? dy->buf : ws->buf, wt;
        CONV_TRY(conv_to_cols(ctx, algo, g, batch, &z, COL_WIDE, x->buf, ws->buf));
        if (batch > 1) CONV_TRY(conv_permute(ctx, g, batch, &z, 1, dy->buf, 0, ws->buf, 0, NULL));
        CONV_TRY(conv_narrow_dw(ctx, batch, &z, OC, dyw, ws->buf, dw->buf));
        if (!dx) return KDCL_OK;
        CONV_TRY(conv_weights_t(ctx, &z, OC, w->buf, &wt));
        CONV_TRY(gemm_small(ctx, "gemm_small_nn", K, BP, OC, 1.0f, wt, 0, OC, dyw, 0, BP, 0.0f,
                            ws->buf, T, BP, NULL));
        return conv_from_cols(ctx, algo, g, batch, &z, COL_WIDE, ws->buf, dx->buf);
    }
    /* dy as [OC, B*P] for the wide products: ws[0, T) (dy itself when B = 1) */
    int have_dyT = 0;
    cl_mem dyT = batch == 1 ? dy->buf : ws->buf;
    size_t Mp, Np, Kp;
    /* weight gradient: dW [OC, K] = sum_b dy_b [OC, P] col_b^T */
    if (conv_wide(ctx, OC, K, BP, 0, &Mp, &Np, &Kp)) {
        CONV_TRY(conv_to_cols(ctx, algo, g, batch, &z, COL_WIDE, x->buf, ws->buf));
        if (batch > 1) CONV_TRY(conv_permute(ctx, g, batch, &z, 1, dy->buf, 0, ws->buf, 0, NULL));
        have_dyT = 1;
        CONV_TRY(gemm_wide(ctx, KDCL_NO_TRANS, KDCL_TRANS, OC, K, BP, Mp, Np, Kp, dyT, 0, BP,
                           ws->buf, T, BP, dw->buf, 0, K));
    } else if (!conv_dw_tn(algo, K)) {
        /* per image: dW_b = dy_b col_b^T into ws[0, B*OC*K), then their sum
         * over b in order (B = 1: straight into dw) */
        CONV_TRY(conv_to_cols(ctx, algo, g, batch, &z, COL_IMAGE, x->buf, ws->buf));
        CONV_TRY(gemm_images(ctx, KDCL_NO_TRANS, KDCL_TRANS, OC, K, P, dy->buf, 0, P, OC * P,
                             ws->buf, T, P, K * P, batch == 1 ? dw->buf : ws->buf, 0, K, OC * K,
                             batch));
        if (batch > 1) CONV_TRY(conv_sum_batches(ctx, batch, &z, ws->buf, 0, dw->buf, 0));
    } else {
        /* per image in the TN form (kdcl's im2col only: CLBlast's columns are
         * [K, P] per image, conv_dw_tn): dW_b = (dy_b^T)^T col_b^T with col_b^T
         * [P, K] at ws[T) and dy_b^T [P, OC]. B = 1: dy^T at ws[0), the
         * product straight into dw. Else in chunks of bc images (bc >= B/2,
         * as T = B*OC*max(P, K)): the chunk's products at ws[0, bc*OC*K),
         * its dy^T behind them, then their sum over b in order, added to the
         * previous chunks' */
        CONV_TRY(conv_cols(ctx, "conv_im2col", g, batch, &z, COL_IMAGE_T, x->buf, ws->buf, T));
        const size_t bc = batch == 1 ? 1 : T / (OC * (K + P));
        for (size_t b0 = 0; b0 < batch; b0 += bc) {
            const size_t nb = batch - b0 < bc ? batch - b0 : bc;
            const size_t dyt = batch == 1 ? 0 : nb * OC * K;
            CONV_TRY(conv_transpose_images(ctx, g, nb, &z, dy->buf, b0 * OC * P, ws->buf, dyt));
            CONV_TRY(gemm_images(ctx, KDCL_TRANS, KDCL_NO_TRANS, OC, K, P, ws->buf, dyt, OC,
                                 P * OC, ws->buf, T + b0 * P * K, K, P * K,
                                 batch == 1 ? dw->buf : ws->buf, 0, K, OC * K, nb));
            if (batch > 1) CONV_TRY(conv_sum_batches(ctx, nb, &z, ws->buf, 0, dw->buf, b0 > 0));
        }
    }
    if (!dx) return KDCL_OK;

    /* input gradient: dcol_b [K, P] = W^T dy_b, dx = col2im(dcol) (dcol over the columns) */
    if (conv_wide(ctx, K, BP, OC, 1, &Mp, &Np, &Kp)) {
        if (batch > 1 && !have_dyT)
            CONV_TRY(conv_permute(ctx, g, batch, &z, 1, dy->buf, 0, ws->buf, 0, NULL));
        CONV_TRY(gemm_wide(ctx, KDCL_TRANS, KDCL_NO_TRANS, K, BP, OC, Mp, Np, Kp, w->buf, 0, K,
                           dyT, 0, BP, ws->buf, T, BP));
        return conv_from_cols(ctx, algo, g, batch, &z, COL_WIDE, ws->buf, dx->buf);
    }
    CONV_TRY(gemm_images(ctx, KDCL_TRANS, KDCL_NO_TRANS, K, P, OC, w->buf, 0, K, 0, dy->buf, 0, P,
                         OC * P, ws->buf, T, P, K * P, batch));
    return conv_from_cols(ctx, algo, g, batch, &z, COL_IMAGE, ws->buf, dx->buf);
}
