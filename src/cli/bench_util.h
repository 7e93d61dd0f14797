/* Pieces shared by kdcl bench and kdcl tune: starting this executable in a
 * child process, and timing single GEMMs on device buffers. */
#ifndef KDCL_CLI_BENCH_UTIL_H
#define KDCL_CLI_BENCH_UTIL_H

#include <stddef.h>

#include "kdcl/kdcl.h"

/* Path of this executable (for child processes): /proc/self/exe, else argv0,
 * else "kdcl". */
void bench_self_exe(char *buf, size_t size, const char *argv0);

/* Append s to dst single-quoted for /bin/sh. */
void bench_shell_quote(char *dst, size_t size, const char *s);

/* A, B and C of the GEMMs timed (flat F32 buffers). */
typedef struct {
    kdcl_tensor a, b, c;
} bench_gemm_bufs;

/* Grow need[] = {A, B, C elements} (start at {1, 1, 1}) to hold an m x n x k GEMM. */
void bench_gemm_need(size_t need[3], size_t m, size_t n, size_t k);

/* Allocate the buffers with need[] elements, fill A with 0.01, B with 0.02
 * and C with 0, and finish the queue. On failure, bench_gemm_bufs_free frees
 * what was allocated (g must start zeroed). */
kdcl_status bench_gemm_bufs_alloc(kdcl_ctx *ctx, const size_t need[3], bench_gemm_bufs *g);
void bench_gemm_bufs_free(kdcl_ctx *ctx, bench_gemm_bufs *g);

/* C = A*B (alpha 1, beta 0, packed leading dimensions); nothing waits. */
kdcl_status bench_gemm_run(kdcl_ctx *ctx, const bench_gemm_bufs *g, kdcl_trans ta, kdcl_trans tb,
                           size_t m, size_t n, size_t k);

/* Device seconds of one bench_gemm_run (gated profiler markers around the call). */
kdcl_status bench_gemm_time(kdcl_ctx *ctx, const bench_gemm_bufs *g, kdcl_trans ta,
                            kdcl_trans tb, size_t m, size_t n, size_t k, double *sec);

#endif
