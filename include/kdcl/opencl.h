/* kdcl's OpenCL objects, for programs that run OpenCL work of their own on
 * kdcl's context and queue, or on its tensors' buffers (kdcl_tensor.buf is
 * a cl_mem). The rest of the public headers need no OpenCL headers. */
#ifndef KDCL_OPENCL_H
#define KDCL_OPENCL_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

#include "kdcl/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The context's OpenCL context and its in-order queue (with profiling). */
KDCL_API cl_context kdcl_ctx_cl(const kdcl_ctx *ctx);

KDCL_API cl_command_queue kdcl_ctx_queue(const kdcl_ctx *ctx);

/* Build (or load from the cache) a program from source text. `name` is used
 * in messages. A build failure returns KDCL_ERR_BUILD with the device name
 * and the full build log in the message. The caller owns *out. */
KDCL_API kdcl_status kdcl_program_build(kdcl_ctx *ctx, const char *name, const char *source,
                               size_t len, const char *options, cl_program *out);

/* The program built from cl/<program>.cl (embedded; or $KDCL_KERNEL_DIR/<program>.cl
 * when that variable is set), built once per context and kept. */
KDCL_API kdcl_status kdcl_program_get(kdcl_ctx *ctx, const char *program, cl_program *out);

/* A kernel of cl/<program>.cl, created once per context and kept (owned by ctx). */
KDCL_API kdcl_status kdcl_kernel_get(kdcl_ctx *ctx, const char *program, const char *kernel,
                            cl_kernel *out);

#ifdef __cplusplus
}
#endif
#endif
