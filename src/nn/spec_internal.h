/* Architecture specs inside the library: shape inference and the kdcl.model
 * JSON writer (src/nn/spec.c). */
#ifndef KDCL_NN_SPEC_INTERNAL_H
#define KDCL_NN_SPEC_INTERNAL_H

#include "kdcl/model.h"

/* Shape of an activation per example: [c, h, w], or flat (a vector of c
 * features, h = w = 1) after Flatten / Linear / BatchNorm1d. */
typedef struct kdcl_shape3 {
    size_t c, h, w;
    int flat;
} kdcl_shape3;

/* Output shape of each of the n layers for the input `in` (outs has n
 * entries); a layer that does not fit is refused naming it ("layer 4
 * (Conv2d 16@5x5): kernel 5x5 does not fit a 3x3 input with padding 0";
 * residual blocks name their inner layer as "layer 2 (Residual) body layer
 * 1 (...)"). Linear and BatchNorm1d need a flat input, Conv2d / pools /
 * BatchNorm2d a [c, h, w] one (an "A-B-...-K" spec starts with Flatten), a
 * residual block's body and shortcut must give the same shape, a model must
 * end in a flat output. Every size stays below 2^31 per example. */
kdcl_status kdcl_spec_infer(const kdcl_layer_spec *layers, size_t n, kdcl_shape3 in,
                            kdcl_shape3 *outs);

/* The kdcl.model JSON of a spec with input `in` (malloc'ed; NULL on
 * failure with the error set). Linear gets in_features/out_features/bias,
 * Conv2d in_channels/out_channels/kernel_size [kh, kw]/stride [sh, sw]/
 * padding [ph, pw]/bias, pools kernel_size/stride/padding, AdaptiveAvgPool2d
 * output_size 1, Dropout p, BatchNorm1d/2d num_features/eps/momentum. */
char *kdcl_spec_to_json(const kdcl_model_spec *s, kdcl_shape3 in);

#endif
