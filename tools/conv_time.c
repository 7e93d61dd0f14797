/* Device time of kdcl_conv2d_forward / kdcl_conv2d_backward per layer shape:
 * the per-layer figures of src/core/gemm.c's convolution comments.
 *
 *   build/tools/conv_time [--reps N] [--batch B] C,H,W,OC,K,P,S ...
 *
 * For each shape (C x H x W input, OC output channels, K x K kernel,
 * padding P, stride S) prints the best of N calls (after one warm-up) of the
 * forward with a bias, the backward with dx and db, and the backward
 * without dx, in ms of wall time from enqueue to clFinish, on $KDCL_DEVICE
 * (else kdcl's default device). Compare routes with the environment, run
 * alternately: KDCL_CONV_DIRECT=0/1, KDCL_GEMM_SMALL=0/1, KDCL_CONV=...
 * Inputs are constant 0.01 (the time does not depend on the values). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kdcl/conv.h"
#include "kdcl/kdcl.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int fail(const char *what)
{
    fprintf(stderr, "conv_time: %s: %s\n", what, kdcl_last_error());
    return 1;
}

static int usage(void)
{
    fprintf(stderr, "usage: conv_time [--reps N] [--batch B] C,H,W,OC,K,P,S ...\n");
    return 2;
}

int main(int argc, char **argv)
{
    int reps = 5, first = 1;
    size_t batch = 128;
    while (first < argc && argv[first][0] == '-') {
        if (first + 1 >= argc) return usage();
        char *end;
        long v = strtol(argv[first + 1], &end, 10);
        if (*end || v < 1 || v > 100000) return usage();
        if (!strcmp(argv[first], "--reps"))
            reps = (int)v;
        else if (!strcmp(argv[first], "--batch"))
            batch = (size_t)v;
        else
            return usage();
        first += 2;
    }
    if (first >= argc) return usage();
    kdcl_ctx *ctx;
    if (kdcl_ctx_create(getenv("KDCL_DEVICE"), &ctx)) return fail("context");
    int rc = 0;
    for (int a = first; a < argc && !rc; a++) {
        size_t c, h, w, oc, k, p, s;
        char tail;
        if (sscanf(argv[a], "%zu,%zu,%zu,%zu,%zu,%zu,%zu%c", &c, &h, &w, &oc, &k, &p, &s, &tail) !=
            7) {
            fprintf(stderr, "conv_time: '%s' is not C,H,W,OC,K,P,S\n", argv[a]);
            rc = 2;
            break;
        }
        kdcl_conv_geom g;
        if (kdcl_conv_geom_set(&g, c, h, w, oc, k, k, s, s, p, p)) {
            rc = fail(argv[a]);
            break;
        }
        const size_t n[9] = {batch * c * h * w,  oc * c * k * k, oc,
                             batch * oc * g.oh * g.ow, batch * oc * g.oh * g.ow, oc * c * k * k,
                             oc, batch * c * h * w, kdcl_conv2d_workspace(&g, batch)};
        kdcl_tensor t[9];
        memset(t, 0, sizeof t);
        for (int i = 0; i < 9 && !rc; i++)
            if (kdcl_tensor_alloc(ctx, &t[i], KDCL_F32, 1, &n[i]) ||
                kdcl_tensor_fill(ctx, &t[i], 0.01f))
                rc = fail("allocating the tensors");
        /* x, w, b, y, dy, dw, db, dx, ws */
        double best[3] = {1e30, 1e30, 1e30};
        for (int r = 0; r <= reps && !rc; r++) {
            double t0 = now();
            if (kdcl_conv2d_forward(ctx, &g, batch, &t[0], &t[1], &t[2], &t[3], &t[8]) ||
                kdcl_ctx_finish(ctx)) {
                rc = fail("forward");
                break;
            }
            double t1 = now();
            if (kdcl_conv2d_backward(ctx, &g, batch, &t[0], &t[1], &t[4], &t[5], &t[6], &t[7],
                                     &t[8]) ||
                kdcl_ctx_finish(ctx)) {
                rc = fail("backward");
                break;
            }
            double t2 = now();
            if (kdcl_conv2d_backward(ctx, &g, batch, &t[0], &t[1], &t[4], &t[5], NULL, NULL,
                                     &t[8]) ||
                kdcl_ctx_finish(ctx)) {
                rc = fail("backward without dx");
                break;
            }
            double t3 = now(), d[3] = {t1 - t0, t2 - t1, t3 - t2};
            for (int i = 0; r > 0 && i < 3; i++)
                if (d[i] < best[i]) best[i] = d[i];
        }
        if (!rc)
            printf("%zux%zux%zu -> %zu@%zu p%zu s%zu, batch %zu: forward %.2f / backward %.2f / "
                   "without dx %.2f ms\n",
                   c, h, w, oc, k, p, s, batch, best[0] * 1e3, best[1] * 1e3, best[2] * 1e3);
        for (int i = 0; i < 9; i++) kdcl_tensor_free(ctx, &t[i]);
    }
    kdcl_ctx_destroy(ctx);
    return rc;
}
