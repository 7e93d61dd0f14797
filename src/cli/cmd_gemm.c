/* kdcl gemm: one GEMM on the selected device, checked against a double CPU
 * reference and timed (a quick health check for a new device). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cmd_gemm(int argc, char **argv)
{
    static const struct option opts[] = {{"m", required_argument, 0, 'm'},
                                         {"n", required_argument, 0, 'n'},
                                         {"k", required_argument, 0, 'k'},
                                         {"reps", required_argument, 0, 'r'},
                                         {"device", required_argument, 0, 'd'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    size_t m = 128, n = 1200, k = 784, reps = 20;
    const char *device = NULL;
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        size_t *dst = o == 'm' ? &m : o == 'n' ? &n : o == 'k' ? &k : o == 'r' ? &reps : NULL;
        if (dst) {
            if (kdcl_parse_size(optarg, dst) || *dst == 0 || (o == 'r' && *dst > 1000000))
                return cli_usage_error("gemm", "--%s needs a positive integer%s, got '%s'",
                                       o == 'm' ? "m" : o == 'n' ? "n" : o == 'k' ? "k" : "reps",
                                       o == 'r' ? " <= 1000000" : "", optarg);
        } else if (o == 'd') {
            device = optarg;
        } else if (o == 'h') {
            printf("usage: kdcl gemm [--m M] [--n N] [--k K] [--reps R] [--device D]\n\n"
                   "Runs C[MxN] = A[MxK] * B[KxN] (row-major, fp32) through CLBlast, checks it\n"
                   "against a double-precision CPU product and prints the time and GFLOP/s.\n");
            return 0;
        } else {
            return cli_usage_error("gemm", "unknown option or missing value: %s", argv[optind - 1]);
        }
    }
    if (m > 16384 || n > 16384 || k > 16384)
        return cli_usage_error("gemm", "dimensions above 16384 are not supported here");
    kdcl_ctx *ctx;
    int rc = cli_open_ctx("gemm", device, &ctx);
    if (rc) return rc;
    float *a = malloc(m * k * sizeof *a), *b = malloc(k * n * sizeof *b),
          *c = malloc(m * n * sizeof *c);
    kdcl_tensor ta = {0}, tb = {0}, tc = {0};
    kdcl_status s = KDCL_OK;
    if (!a || !b || !c) {
        s = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        goto done;
    }
    for (size_t i = 0; i < m * k; i++) a[i] = (float)((int)(i % 17) - 8) / 8.0f;
    for (size_t i = 0; i < k * n; i++) b[i] = (float)((int)(i % 13) - 6) / 6.0f;
    if ((s = kdcl_tensor_alloc2(ctx, &ta, KDCL_F32, m, k)) ||
        (s = kdcl_tensor_alloc2(ctx, &tb, KDCL_F32, k, n)) ||
        (s = kdcl_tensor_alloc2(ctx, &tc, KDCL_F32, m, n)) ||
        (s = kdcl_tensor_upload(ctx, &ta, 0, m * k, a)) ||
        (s = kdcl_tensor_upload(ctx, &tb, 0, k * n, b)))
        goto done;
    /* warm-up (CLBlast compiles its kernels on first use) */
    double t0 = now();
    if ((s = kdcl_gemm(ctx, KDCL_NO_TRANS, KDCL_NO_TRANS, m, n, k, 1.0f, ta.buf, 0, k, tb.buf, 0,
                       n, 0.0f, tc.buf, 0, n, NULL)) ||
        (s = kdcl_ctx_finish(ctx)))
        goto done;
    double first = now() - t0;
    t0 = now();
    for (size_t r = 0; r < reps; r++)
        if ((s = kdcl_gemm(ctx, KDCL_NO_TRANS, KDCL_NO_TRANS, m, n, k, 1.0f, ta.buf, 0, k, tb.buf,
                           0, n, 0.0f, tc.buf, 0, n, NULL)))
            goto done;
    if ((s = kdcl_ctx_finish(ctx))) goto done;
    double per = (now() - t0) / (double)reps;
    if ((s = kdcl_tensor_download(ctx, &tc, 0, m * n, c))) goto done;
    /* check a sample of entries (all when small) */
    double max_err = 0;
    size_t step = (m * n > 4096) ? (m * n) / 4096 : 1;
    for (size_t idx = 0; idx < m * n; idx += step) {
        size_t i = idx / n, j = idx % n;
        double ref = 0, mag = 0;
        for (size_t p = 0; p < k; p++) {
            ref += (double)a[i * k + p] * (double)b[p * n + j];
            mag += fabs((double)a[i * k + p] * (double)b[p * n + j]);
        }
        double err = fabs(ref - c[idx]) / (mag + 1e-30);
        if (err > max_err) max_err = err;
    }
    const kdcl_device_info *d = kdcl_ctx_device(ctx);
    printf("device      %s (%s, driver %s)\n", d->name, d->platform_name, d->driver_version);
    printf("shape       C[%zux%zu] = A[%zux%zu] * B[%zux%zu]\n", m, n, m, k, k, n);
    printf("tuning      %s\n", kdcl_ctx_gemm_tuning(ctx));
    printf("first call  %.3f s (includes CLBlast kernel compilation)\n", first);
    printf("time        %.3f ms per call (mean of %zu)\n", per * 1e3, reps);
    printf("GFLOP/s     %.1f\n", 2.0 * (double)m * (double)n * (double)k / per * 1e-9);
    printf("max rel err %.2e (relative to sum |a*b|, sampled)\n", max_err);
    if (max_err > 1e-5) {
        fprintf(stderr, "kdcl gemm: result disagrees with the CPU reference (%.2e)\n", max_err);
        rc = CLI_EXIT_FAIL;
    }
done:
    if (s) rc = cli_fail("gemm", s);
    kdcl_tensor_free(ctx, &ta);
    kdcl_tensor_free(ctx, &tb);
    kdcl_tensor_free(ctx, &tc);
    kdcl_ctx_destroy(ctx);
    free(a);
    free(b);
    free(c);
    return rc;
}
