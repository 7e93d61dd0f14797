/* Direct 3x3 convolutions (cl/conv_direct.cl) inside the library: the route
 * src/core/gemm.c takes on CPU devices for 3x3 kernels with padding 1 and
 * stride 1 or 2 and 5x5 kernels with stride 1 ("Direct convolutions"
 * there). The callers have checked the tensors'
 * sizes; every count is below 2^31 (kdcl_conv_geom_set). */
#ifndef KDCL_CORE_CONV_DIRECT_H
#define KDCL_CORE_CONV_DIRECT_H

#include <stddef.h>

#include "kdcl/conv.h"
#include "kdcl/opencl.h"

/* 1 when the geometry is one the kernels compute: 3x3 with padding 1 and
 * stride 1 or 2, or 5x5 with stride 1 and any padding (the same in both
 * directions). */
int kdcl__conv_direct_fits(const kdcl_conv_geom *g);

/* y = conv(x, w) (+ bias when bias is not NULL). */
kdcl_status kdcl__conv_direct_forward(kdcl_ctx *ctx, const kdcl_conv_geom *g, size_t batch,
                                      cl_mem x, cl_mem w, cl_mem bias, cl_mem y);

/* dx = the input gradient of y = conv(x, w) from dy (overwritten). */
kdcl_status kdcl__conv_direct_dx(kdcl_ctx *ctx, const kdcl_conv_geom *g, size_t batch,
                                 cl_mem w, cl_mem dy, cl_mem dx);

/* The number of parts of the batch the weight gradient is computed in. */
size_t kdcl__conv_direct_parts(const kdcl_ctx *ctx, const kdcl_conv_geom *g, size_t batch);

/* Part q's weight gradient [OC, C, KH, KW] at out + q*OC*C*KH*KW for q <
 * kdcl__conv_direct_parts(ctx, g, batch) (the caller sums them in order). */
kdcl_status kdcl__conv_direct_dw_parts(kdcl_ctx *ctx, const kdcl_conv_geom *g, size_t batch,
                                       cl_mem x, cl_mem dy, cl_mem out);

#endif
