/* GEMM tuning files inside the library (src/core/gemm.c). */
#ifndef KDCL_CORE_GEMM_INTERNAL_H
#define KDCL_CORE_GEMM_INTERNAL_H

#include <stddef.h>

#include "kdcl/status.h"
#include "kdcl/tensor.h"

/* One CLBlast kernel's parameters: names and values as
 * CLBlastOverrideParameters takes them. */
#define KDCL_TUNING_MAX_PARAMS 16
typedef struct {
    const char *kernel;
    size_t n;
    const char *names[KDCL_TUNING_MAX_PARAMS];
    size_t values[KDCL_TUNING_MAX_PARAMS];
} tuned_kernel;

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

/* Write the tuning file of device d at path, the format kdcl__tuning_parse
 * reads: {"device", "platform", "driver", "source", "date", "tuner": a copy
 * of tuner_info (when not NULL), "kernels": {"Xgemm": {...}, ...}}. The
 * directory is created; the file is written whole or not at all (temporary
 * file, fsync, rename: a context being created meanwhile reads the old file
 * or the new one). Kernels the reader would refuse are refused here
 * (KDCL_ERR_INVALID_ARG), so every file written is one the reader applies. */
struct cJSON;
kdcl_status kdcl__tuning_write(const char *path, const kdcl_device_info *d, const char *source,
                               const tuned_kernel *k, size_t nk, const struct cJSON *tuner_info);

/* 1 when text (n bytes) is a tuning file kdcl__tuning_parse takes. */
int kdcl__tuning_text_usable(const char *text, size_t n);

/* Scratch buffer i of kdcl_gemm / convolution (src/core/gemm.c; NULL while
 * the context has no GEMM state or i is out of range); for tests that poison
 * scratch. */
kdcl_tensor *kdcl__gemm_scratch(kdcl_ctx *ctx, size_t i);

/* Narrow products on kdcl's kernels (cl/gemm_small.cl) on or off for ctx
 * (default: on for CPU devices, KDCL_GEMM_SMALL); for tests. */
void kdcl__gemm_set_small(kdcl_ctx *ctx, int on);

/* Automatic tuning (gemm.c), for tests: the number of searches this
 * process ran, and a candidate (its position in the search, -1: none) whose
 * product is overwritten before the check, as a wrong set's would be. */
unsigned kdcl__autotune_searches(void);
void kdcl__autotune_poison(int index);

#endif
