/* Matrix products through CLBlast (src/core/gemm.c is the only caller of CLBlast). */
#ifndef KDCL_GEMM_H
#define KDCL_GEMM_H

#include "kdcl/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kdcl_trans { KDCL_NO_TRANS = 0, KDCL_TRANS = 1 } kdcl_trans;

/* Row-major C[m x n] = alpha * op(A)[m x k] * op(B)[k x n] + beta * C.
 * A is stored m x k (lda >= k) or, transposed, k x m (lda >= m); B likewise.
 * Offsets and leading dimensions are in elements. Every shape, leading
 * dimension and buffer extent is checked before CLBlast runs; CLBlast's
 * failures come back as KDCL_ERR_CLBLAST naming the routine and shape.
 * a, b, c are cl_mem and event a cl_event * (kdcl/opencl.h), which may be
 * NULL. m or n == 0 is a no-op; k == 0 computes C = beta*C. */
KDCL_API kdcl_status kdcl_gemm(kdcl_ctx *ctx, kdcl_trans ta, kdcl_trans tb, size_t m, size_t n, size_t k,
                      float alpha, struct _cl_mem *a, size_t a_off, size_t lda, struct _cl_mem *b, size_t b_off,
                      size_t ldb, float beta, struct _cl_mem *c, size_t c_off, size_t ldc,
                      struct _cl_event **event);

/* Strided-batched form: for i < batch, C_i = alpha*op(A_i)*op(B_i) + beta*C_i
 * with X_i starting at x_off + i * x_stride. */
KDCL_API kdcl_status kdcl_gemm_batched(kdcl_ctx *ctx, kdcl_trans ta, kdcl_trans tb, size_t m, size_t n,
                              size_t k, float alpha, struct _cl_mem *a, size_t a_off, size_t lda,
                              size_t a_stride, struct _cl_mem *b, size_t b_off, size_t ldb, size_t b_stride,
                              float beta, struct _cl_mem *c, size_t c_off, size_t ldc, size_t c_stride,
                              size_t batch, struct _cl_event **event);

/* Operand packing. CLBlast's indirect GEMM kernel needs every dimension a
 * multiple of its tile sizes (MWG, NWG, KWG) and its operands in one
 * orientation; for other calls CLBlast pads and transposes them with copy
 * kernels that under PoCL take about as long as the product. With packing on,
 * kdcl_gemm() does that itself (cl/gemm_pack.cl: one pass per operand, zero
 * padding) and CLBlast runs its Xgemm kernel alone on the padded product, when
 * the padding adds at most max_waste of extra work and the padded product is
 * at least min_size^3 (CLBlast's switch to the indirect kernel). Results equal
 * the plain path's up to summation order. On by default for CPU devices whose
 * Xgemm parameters kdcl applied (tiles known, GEMMK = 0); KDCL_GEMM_PACK=0
 * turns it off, =1 on for any device whose tiles are known. */
typedef struct kdcl_gemm_pack_info {
    int enabled;
    size_t mwg, nwg, kwg; /* the Xgemm tile sizes in force */
    size_t min_size;      /* XGEMM_MIN_INDIRECT_SIZE in force (0: unknown) */
    double max_waste;     /* padded / true multiply-adds allowed, e.g. 1.35 */
} kdcl_gemm_pack_info;
KDCL_API kdcl_gemm_pack_info kdcl_gemm_packing(const kdcl_ctx *ctx);
/* Replace the packing settings (tests, benchmarks): any tile sizes give a
 * correct product; only the speed depends on matching CLBlast's. */
KDCL_API kdcl_status kdcl_gemm_set_packing(kdcl_ctx *ctx, const kdcl_gemm_pack_info *p);

/* The GEMM layer of a context is set up on its first product, convolution or
 * query below (not by kdcl_ctx_create): it applies the tuning parameters for
 * the context's device (the file written by `kdcl tune` or by the automatic
 * tuning for this device and driver if there is one, else the parameters kdcl
 * ships for matching devices, else the automatic tuning: a search of at most
 * KDCL_AUTOTUNE_BUDGET seconds (60) on this first use, announced on stderr and
 * cached; KDCL_AUTOTUNE=0 skips it; KDCL_NO_TUNING=1: CLBlast's defaults),
 * decides packing (KDCL_GEMM_PACK) and kdcl's kernels for narrow products
 * (KDCL_GEMM_SMALL) and reads KDCL_CONV. A bad KDCL_CONV or shipped parameters CLBlast refuses fail
 * that first call. kdcl_gemm_apply_tuning sets it up now; *source (may be
 * NULL) names what was applied. */
KDCL_API kdcl_status kdcl_gemm_apply_tuning(kdcl_ctx *ctx, const char **source);
/* Which CLBlast GEMM parameters the context applied ("CLBlast defaults",
 * "kdcl tune (cache)", "automatic tuning (cache)" or "(searched now)" with the
 * set chosen, a shipped set; packing; a cache file ignored and why).
 * Sets the GEMM layer up if need be; if that fails, says so and why. */
KDCL_API const char *kdcl_ctx_gemm_tuning(const kdcl_ctx *ctx);
/* Where the GEMM parameters in force came from, in one word: "cache" (kdcl
 * tune's file for this device and driver), "shipped" (kdcl's table for known
 * devices), "automatic" (the automatic tuning, now or from its cache file),
 * "defaults" (CLBlast's own), "unknown" (the GEMM layer could not be set up). */
KDCL_API const char *kdcl_gemm_params_source(const kdcl_ctx *ctx);
/* Where `kdcl tune` stores the parameters of a device + driver. */
KDCL_API kdcl_status kdcl_gemm_tuning_path(const kdcl_device_info *dev, char *buf, size_t size);

/* Name of a CLBlast status code ("CLBlastInvalidLeadDimA"). */
KDCL_API const char *kdcl_clblast_status_name(int status);

/* One CLBlast kernel's parameters: names and values as
 * CLBlastOverrideParameters takes them. */
#define KDCL_TUNING_MAX_PARAMS 16
typedef struct kdcl_tuned_kernel {
    const char *kernel;
    size_t n;
    const char *names[KDCL_TUNING_MAX_PARAMS];
    size_t values[KDCL_TUNING_MAX_PARAMS];
} kdcl_tuned_kernel;

/* Write the tuning file of device d at path, the format the context's reader
 * reads: {"device", "platform", "driver", "source", "date", "tuner": the
 * JSON object tuner_json (its text; NULL: none), "kernels": {"Xgemm": {...},
 * ...}}. tuner_json that is not a JSON object: KDCL_ERR_INVALID_ARG. The
 * directory is created; the file is written whole or not at all (temporary
 * file, fsync, rename: a context being created meanwhile reads the old file
 * or the new one). Kernels the reader would refuse are refused here
 * (KDCL_ERR_INVALID_ARG), so every file written is one the reader applies. */
KDCL_API kdcl_status kdcl_gemm_tuning_write(const char *path, const kdcl_device_info *d,
                                            const char *source, const kdcl_tuned_kernel *k, size_t nk,
                                            const char *tuner_json);

/* 1 when text (n bytes) is a tuning file the context's reader takes. */
KDCL_API int kdcl_gemm_tuning_text_usable(const char *text, size_t n);

#ifdef __cplusplus
}
#endif
#endif
