/* GEMM tuning files inside the library (src/core/gemm.c). */
#ifndef KDCL_CORE_GEMM_INTERNAL_H
#define KDCL_CORE_GEMM_INTERNAL_H

#include <stddef.h>

#include "kdcl/status.h"
#include "kdcl/gemm.h"
#include "kdcl/tensor.h"
#include "kdcl/conv.h"

typedef kdcl_tuned_kernel tuned_kernel;

/* Largest tuning file read (kdcl tune writes about 1 KiB). */
#define KDCL_TUNING_MAX_FILE (1u << 20)

/* Parse the text of a tuning file written by `kdcl tune`,
 * {"kernels": {"Xgemm": {"MWG": 64, ...}, ...}}, and hand each kernel to
 * `apply` (the names point into the parsed text: valid during the call).
 * Every kernel must be an object of 1..16 parameters, each an integer in
 * 0..2^31-1. `path` names the file in errors. *applied counts the kernels
 * applied. Runs on the host only (apply may be a no-op). */
kdcl_status kdcl__tuning_parse(const char *path, const char *text, size_t n,
                               kdcl_status (*apply)(void *user, const tuned_kernel *k),
                               void *user, int *applied);



/* Scratch buffer i of kdcl_gemm / convolution (src/core/gemm.c; NULL while
 * the context has no GEMM state or i is out of range); for tests that poison
 * scratch. */
kdcl_tensor *kdcl__gemm_scratch(kdcl_ctx *ctx, size_t i);

/* Narrow products on kdcl's kernels (cl/gemm_small.cl) on or off for ctx
 * (default: on for CPU devices, KDCL_GEMM_SMALL); for tests. */
void kdcl__gemm_set_small(kdcl_ctx *ctx, int on);

/* Direct 3x3 convolutions (src/core/conv_direct.c) on (1) or off (0) for
 * ctx, or back to the default (-1: on for CPU devices, KDCL_CONV_DIRECT);
 * for tests. */
void kdcl__conv_set_direct(kdcl_ctx *ctx, int on);

/* Which of a convolution's products take the direct route in ctx now
 * (what: 0 the forward, 1 the weight gradient in a backward without dx or
 * with a direct dx, 2 the input gradient, and with it the whole backward);
 * for tests, whose error bound for the input gradient depends on it. */
int kdcl__conv_direct(const kdcl_ctx *ctx, const kdcl_conv_geom *g, int what);

/* Automatic tuning (gemm.c), for tests: the number of searches this
 * process ran, and a candidate (its position in the search, -1: none) whose
 * product is overwritten before the check, as a wrong set's would be. */
unsigned kdcl__autotune_searches(void);
void kdcl__autotune_poison(int index);

#endif
