/* Internal: the context structure, visible to the library's own modules. */
#ifndef KDCL_RUNTIME_CTX_H
#define KDCL_RUNTIME_CTX_H
#include "kdcl/gemm.h"
#include "kdcl/runtime.h"
#include "kdcl/tensor.h"

#define KDCL_SCRATCH_SLOTS 4

typedef struct kdcl_kernel_entry {
    char program[64];
    char kernel[64];
    cl_kernel k;
} kdcl_kernel_entry;

typedef struct kdcl_program_entry {
    char program[64];
    cl_program p;
} kdcl_program_entry;

struct kdcl_ctx {
    kdcl_device_info dev;
    cl_context cl;
    cl_command_queue queue;
    kdcl_program_entry *programs;
    size_t n_programs, cap_programs;
    kdcl_kernel_entry *kernels;
    size_t n_kernels, cap_kernels;
    kdcl_build_stats stats;
    char gemm_tuning[1024]; /* which GEMM parameters were applied */
    char gemm_tuning_note[768]; /* a tuning cache file that was ignored, and why */
    uint64_t mem_allocs, mem_live, mem_peak; /* device buffers (src/core/tensor.c) */
    kdcl_gemm_pack_info gemm_pack;           /* kdcl's operand packing (src/core/gemm.c) */
    int gemm_pack_gemmk;                     /* GEMMK of the Xgemm parameters applied */
    kdcl_tensor gemm_scratch[KDCL_SCRATCH_SLOTS]; /* grown on demand: kdcl_gemm's packed A,
                                                     B and C, then conv columns in CLBlast's
                                                     layout (src/core/gemm.c) */
    int conv_algo; /* kdcl_conv_algo as set (KDCL_CONV, kdcl_conv_set_algo) */
    kdcl_tensor op_scratch; /* per-unit partial sums of the BatchNorm ops, grown on demand */
    int counted;            /* counted in kdcl_gemm_ctx_acquire (src/core/gemm.c) */
};

/* Live kdcl contexts, counted for CLBlast's program cache (src/core/gemm.c):
 * kdcl_ctx_create acquires, kdcl_ctx_destroy releases; the last release
 * clears the cache (CLBlastClearCache). */
void kdcl_gemm_ctx_acquire(void);
void kdcl_gemm_ctx_release(void);

/* Read KDCL_CONV into ctx->conv_algo (kdcl_ctx_create). */
kdcl_status kdcl_conv_algo_from_env(kdcl_ctx *ctx);

/* Set an OpenCL error with call site: returns KDCL_ERR_OPENCL, or KDCL_ERR_OOM
 * for allocation failures. */
kdcl_status kdcl_cl_fail(int err, const char *what);
#define KDCL_CL_CHECK(call, what)                                 \
    do {                                                          \
        cl_int kdcl_e_ = (call);                                  \
        if (kdcl_e_ != CL_SUCCESS) return kdcl_cl_fail(kdcl_e_, what); \
    } while (0)

double kdcl_now_seconds(void);
#endif
