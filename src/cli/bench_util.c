/* Pieces shared by kdcl bench and kdcl tune (see bench_util.h). */
#include "bench_util.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kdcl/profile.h"

void bench_self_exe(char *buf, size_t size, const char *argv0)
{
    ssize_t n = readlink("/proc/self/exe", buf, size - 1);
    if (n > 0) {
        buf[n] = '\0';
        return;
    }
    snprintf(buf, size, "%s", argv0 ? argv0 : "kdcl");
}

void bench_shell_quote(char *dst, size_t size, const char *s)
{
    size_t n = strlen(dst);
    if (n + 2 >= size) return;
    dst[n++] = '\'';
    for (; *s && n + 6 < size; s++) {
        if (*s == '\'') {
            memcpy(dst + n, "'\\''", 4);
            n += 4;
        } else {
            dst[n++] = *s;
        }
    }
    dst[n++] = '\'';
    dst[n] = '\0';
}

void bench_gemm_need(size_t need[3], size_t m, size_t n, size_t k)
{
    if (m * k > need[0]) need[0] = m * k;
    if (k * n > need[1]) need[1] = k * n;
    if (m * n > need[2]) need[2] = m * n;
}

kdcl_status bench_gemm_bufs_alloc(kdcl_ctx *ctx, const size_t need[3], bench_gemm_bufs *g)
{
    kdcl_status s;
    if ((s = kdcl_tensor_alloc(ctx, &g->a, KDCL_F32, 1, &need[0])) ||
        (s = kdcl_tensor_alloc(ctx, &g->b, KDCL_F32, 1, &need[1])) ||
        (s = kdcl_tensor_alloc(ctx, &g->c, KDCL_F32, 1, &need[2])) ||
        (s = kdcl_tensor_fill(ctx, &g->a, 0.01f)) || (s = kdcl_tensor_fill(ctx, &g->b, 0.02f)) ||
        (s = kdcl_tensor_fill(ctx, &g->c, 0.0f)) || (s = kdcl_ctx_finish(ctx)))
        return s;
    return KDCL_OK;
}

void bench_gemm_bufs_free(kdcl_ctx *ctx, bench_gemm_bufs *g)
{
    kdcl_tensor_free(ctx, &g->a);
    kdcl_tensor_free(ctx, &g->b);
    kdcl_tensor_free(ctx, &g->c);
}

kdcl_status bench_gemm_run(kdcl_ctx *ctx, const bench_gemm_bufs *g, kdcl_trans ta, kdcl_trans tb,
                           size_t m, size_t n, size_t k)
{
    size_t lda = ta ? m : k, ldb = tb ? k : n;
    return kdcl_gemm(ctx, ta, tb, m, n, k, 1.0f, g->a.buf, 0, lda, g->b.buf, 0, ldb, 0.0f,
                     g->c.buf, 0, n, NULL);
}

kdcl_status bench_gemm_time(kdcl_ctx *ctx, const bench_gemm_bufs *g, kdcl_trans ta,
                            kdcl_trans tb, size_t m, size_t n, size_t k, double *sec)
{
    kdcl_profiler *p = NULL;
    kdcl_status s = kdcl_profiler_create(ctx, &p);
    if (!s) s = kdcl_profiler_begin(p, 1, KDCL_PROF_PHASES);
    if (!s && !(s = bench_gemm_run(ctx, g, ta, tb, m, n, k)) &&
        !(s = kdcl_profiler_mark(p, "gemm")))
        s = kdcl_profiler_end(p, sec);
    kdcl_profiler_destroy(p);
    return s;
}
