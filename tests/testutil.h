/* Shared helpers for the Check suites. */
#ifndef KDCL_TESTUTIL_H
#define KDCL_TESTUTIL_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

#include "kdcl/kdcl.h"

/* A per-suite temp directory (created on first use, under $KDCL_TEST_TMP or /tmp). */
const char *tu_tmpdir(void);
/* Path join into a static rotating buffer: tu_path("x.bin") -> "<tmpdir>/x.bin". */
const char *tu_path(const char *name);
/* Write bytes to a file; returns 0 on success. */
int tu_write_file(const char *path, const void *data, size_t n);
/* Deterministic uniform floats in [lo, hi) (xorshift, seeded). */
void tu_fill_uniform(float *x, size_t n, float lo, float hi, uint64_t seed);
/* The suite's device context: tu_ctx_setup creates it on the default device
 * (failing the test with the library's error), tu_ctx_teardown destroys it.
 * For tcase_add_unchecked_fixture(tc, tu_ctx_setup, tu_ctx_teardown). */
extern kdcl_ctx *tu_ctx;
void tu_ctx_setup(void);
void tu_ctx_teardown(void);
/* A setting that is on for CPU devices unless the environment variable
 * `name` says otherwise ("0": off, any other non-empty value: on), for
 * tu_ctx: kdcl's defaults for KDCL_GEMM_SMALL, KDCL_CONV_DIRECT, ... */
int tu_cpu_unless_env(const char *name);
/* Whether kdcl's narrow-product kernels are on for tu_ctx by default (what
 * suites that switch them go back to). */
int tu_gemm_small_default(void);
/* Tensors on tu_ctx, failing the test with the library's error: an F32
 * [B, K] matrix, a 1-D tensor of n elements, whole-tensor upload/download. */
kdcl_tensor tu_mat(size_t B, size_t K);
kdcl_tensor tu_vec(kdcl_elem type, size_t n);
void tu_put(kdcl_tensor *t, const void *h);
void tu_get(const kdcl_tensor *t, void *h);
/* Fail the test unless s is KDCL_OK ("what: <error>"). */
void tu_ok(kdcl_status s, const char *what);
/* A seeded synthetic problem on 6x6 grey images (d is overwritten; free with
 * kdcl_dataset_free): each label is uniform in [0, n_classes), and pixel p is
 * noise in [0, noise) plus `boost` where region(p) equals the label. */
void tu_make_6x6(kdcl_dataset *d, size_t n, uint64_t seed, int n_classes,
                 int (*region)(size_t p), unsigned noise, unsigned boost);
/* A model from an architecture spec (e.g. "36-16-6", "conv(4,3),relu,flatten,linear(K)")
 * on inputs [c, h, w] (c == 0: [1, 1, in] of an "A-B-...-K" spec), with
 * Dropout(drop_in) / Dropout(drop_hidden) added to an MLP spec when > 0, for
 * batches of up to max_batch rows; parameters drawn from `seed`. */
kdcl_model *tu_model(const char *arch, size_t n_classes, size_t c, size_t h, size_t w,
                     size_t max_batch, float drop_in, float drop_hidden, uint64_t seed);
/* ---- the kdcl executable ($KDCL_EXE), for the command-line suites ---- */

/* The executable (fails the test when $KDCL_EXE is not set to one). */
const char *tu_exe(void);
/* One run of `kdcl <args>` through the shell (args is shell text, quoted as
 * needed): exit status (128 + signal number when a signal ended it),
 * stdout, stderr and the number of stderr lines. */
typedef struct {
    int status, signaled;
    char out[65536];
    char err[8192];
    int err_lines;
} tu_run_result;
void tu_run(tu_run_result *r, const char *args);
/* Run and require exit status `status`, exactly one stderr line and `needle`
 * in it. */
void tu_expect_fail(const char *args, int status, const char *needle);
/* A tiny IDX split in dir: <prefix>-images-idx3-ubyte.gz (8x8 images) and
 * <prefix>-labels-idx1-ubyte, 3 classes (which pair of columns is bright),
 * n examples drawn from seed. */
void tu_write_idx_split(const char *dir, const char *prefix, size_t n, uint64_t seed);

/* Run a suite with Check and return the number of failures (for main()). */
int tu_run_suite(Suite *s);

/* Unit roundoff of fp32 and Higham's gamma_n = n u / (1 - n u). */
#define TU_U (1.0 / 16777216.0)
double tu_gamma_n(size_t n);

/* Softmax reference of one row in double: x_k = z_k / T, lp[k] = log softmax,
 * delta[k] the absolute error of the kernel's x_k - m (scaled = 0 when the
 * kernel multiplies by exactly 1, i.e. T = 1). */
typedef struct {
    double m, logS, E; /* row max of x, log sum exp(x - m), relative error bound of s^ */
} tu_rowref;
tu_rowref tu_ref_row(const float *z, size_t K, double T, int scaled, double *lp, double *delta);

#endif
