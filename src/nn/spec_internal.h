/* Architecture specs inside the library: shape inference and the kdcl.model
 * JSON writer (src/nn/spec.c). */
#ifndef KDCL_NN_SPEC_INTERNAL_H
#define KDCL_NN_SPEC_INTERNAL_H

#include "kdcl/model.h"

/* Limits of a spec (the text parser, the JSON reader and kdcl_spec_infer
 * enforce them): layer sizes (Linear out_features, Conv2d out_channels, the
 * sizes of "A-B-...-K") 1..KDCL_SPEC_MAX_SIZE, at most KDCL_SPEC_MAX_SIZES
 * sizes in "A-B-...-K" (16 Linear layers, as kdcl_arch_parse), kernels and
 * strides 1..64, padding 0..63, at most KDCL_SPEC_MAX_LAYERS layers in all
 * (those inside residual blocks and the blocks themselves included) and
 * residual blocks nested at most KDCL_SPEC_MAX_DEPTH deep. */
#define KDCL_SPEC_MAX_SIZE 1000000
#define KDCL_SPEC_MAX_SIZES 17
#define KDCL_SPEC_MAX_KERNEL 64
#define KDCL_SPEC_MAX_STRIDE 64
#define KDCL_SPEC_MAX_PAD 63
#define KDCL_SPEC_MAX_LAYERS 256
#define KDCL_SPEC_MAX_DEPTH 8

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

/* kdcl_spec_infer of a whole spec, plus the check of an "A-B-...-K" spec's
 * input size: when s->in_features is set, the first top-level Linear must
 * get exactly that many features ("layer 2 (Linear 1200): the architecture's
 * input size 784 does not match the 3072 features it gets"). */
kdcl_status kdcl_spec_infer_model(const kdcl_model_spec *s, kdcl_shape3 in, kdcl_shape3 *outs);

/* The same for a residual block's body or shortcut (no need to end flat;
 * already validated as part of its model). */
kdcl_status kdcl_spec_infer_branch(const kdcl_layer_spec *layers, size_t n, kdcl_shape3 in,
                                   kdcl_shape3 *outs);

/* What a valid spec (kdcl_spec_infer) will hold for the input `in`: *values
 * the F32 values of its state dict (Linear and Conv2d weights and biases,
 * BatchNorm weight, bias, running mean and variance), *acts the activation
 * values of one example (the input and every layer's output, those inside
 * residual blocks included). Both saturate at SIZE_MAX. */
kdcl_status kdcl_spec_footprint(const kdcl_model_spec *s, kdcl_shape3 in, size_t *values,
                                size_t *acts);

/* The kdcl.model JSON of a spec with input `in` (malloc'ed; NULL on
 * failure with the error set). Linear gets in_features/out_features/bias,
 * Conv2d in_channels/out_channels/kernel_size [kh, kw]/stride [sh, sw]/
 * padding [ph, pw]/bias, pools kernel_size/stride/padding, AdaptiveAvgPool2d
 * output_size 1, Dropout p, BatchNorm1d/2d num_features/eps/momentum.
 * A pool's stride 0 is written as null (PyTorch's stride=None: the kernel
 * size), AvgPool2d gets count_include_pad true, ReLU and Flatten args {}. */
char *kdcl_spec_to_json(const kdcl_model_spec *s, kdcl_shape3 in);

/* kdcl_model_spec_from_json keeps no input sizes (the spec has no field for
 * them, and they are optional in the JSON; only a JSON of the "A-B-...-K"
 * form, Flatten then Linear/ReLU/Dropout, sets in_features from its first
 * Linear, as kdcl_model_spec_mlp does). This checks every in_features
 * (Linear), in_channels (Conv2d) and num_features (BatchNorm) that `json`
 * (the text s was read from) gives against what kdcl_spec_infer derives for
 * the input `in`, and that BatchNorm1d / BatchNorm2d match the rank of their
 * input; a mismatch is refused naming the layer ("kdcl.model: layer 8
 * (Linear 120): in_features 500 but its input has 400 features"). */
kdcl_status kdcl_spec_check_json_shapes(const char *json, const kdcl_model_spec *s, kdcl_shape3 in);

#endif
