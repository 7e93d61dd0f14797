/* Internal: the context structure, visible to the library's own modules. */
#ifndef KDCL_RUNTIME_CTX_H
#define KDCL_RUNTIME_CTX_H
#include "kdcl/opencl.h"
#include "kdcl/runtime.h"
#include "kdcl/tensor.h"

/* Extension slots: state that a module above the runtime keeps per context
 * (src/core/gemm.c: CLBlast's parameters, packing, scratch; src/core/ops_cnn.c:
 * the BatchNorm partial sums), created by that module on its first use and
 * destroyed by kdcl_ctx_destroy, in reverse slot order, after the queue has
 * finished and before the queue, programs and context are released. */
enum { KDCL_EXT_GEMM, KDCL_EXT_OPS, KDCL_EXT_SLOTS };
typedef void (*kdcl_ext_destroy_fn)(kdcl_ctx *ctx, void *state);
typedef struct kdcl_ctx_ext {
    void *state;
    kdcl_ext_destroy_fn destroy;
} kdcl_ctx_ext;
/* The state in a slot (NULL: none yet). */
void *kdcl__ctx_ext(const kdcl_ctx *ctx, int slot);
/* Put state (with its destructor) in a slot; NULL empties it without calling
 * the old destructor. */
void kdcl__ctx_ext_set(kdcl_ctx *ctx, int slot, void *state, kdcl_ext_destroy_fn destroy);

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
    uint64_t mem_allocs, mem_live, mem_peak; /* device buffers (src/core/tensor.c) */
    kdcl_ctx_ext ext[KDCL_EXT_SLOTS];
    struct kdcl_profiler *prof;     /* kdcl_ctx_set_profiler (NULL: none) */
};

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
