/* kdcl: knowledge distillation on any OpenCL device. Umbrella header: the
 * whole public interface but kdcl/opencl.h (OpenCL's own objects), which
 * needs the OpenCL headers; nothing here does. */
#ifndef KDCL_H
#define KDCL_H

#include "kdcl/status.h"
#include "kdcl/runtime.h"
#include "kdcl/tensor.h"
#include "kdcl/gemm.h"
#include "kdcl/ops.h"
#include "kdcl/loss.h"
#include "kdcl/data.h"
#include "kdcl/safetensors.h"
#include "kdcl/model.h"
#include "kdcl/conv.h"
#include "kdcl/optim.h"
#include "kdcl/train.h"
#include "kdcl/kd.h"
#include "kdcl/distill.h"
#include "kdcl/specialists.h"
#include "kdcl/onnx.h"
#include "kdcl/profile.h"
#include "kdcl/file.h"
#include "kdcl/dist.h"
#include "kdcl/parse.h"

#endif
