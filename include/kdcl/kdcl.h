/* kdcl: knowledge distillation on any OpenCL device. Umbrella header. */
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

#endif
