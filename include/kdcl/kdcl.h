/* kdcl: knowledge distillation on any OpenCL device. Umbrella header. */
#ifndef KDCL_H
#define KDCL_H

#define KDCL_VERSION "0.1.0"

#include "kdcl/status.h"
#include "kdcl/runtime.h"
#include "kdcl/tensor.h"
#include "kdcl/gemm.h"

#endif
