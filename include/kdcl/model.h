/* Models: an ordered list of layers (Linear, Conv2d, pooling, ReLU, Dropout,
 * Flatten, BatchNorm, residual blocks) over an input of shape [C, H, W].
 *
 * A model is opaque. Parameters and their gradients live in one flat device
 * buffer each, with every tensor starting at an offset aligned for
 * sub-buffers, so an optimiser updates them all with one launch (kdcl_optim,
 * optim.h). Activations are preallocated for a maximum batch; a step
 * allocates nothing. Code outside src/nn/ reaches a model through the
 * accessors below; each layer type lives in one file of src/nn/ with its
 * forward and backward side by side.
 *
 * Architectures come from a spec (kdcl_model_spec): parsed from text
 * ("784-1200-10", a compact sequential spec, a preset name or @file.json, see
 * kdcl_model_spec_parse) or built in code. Checkpoints are safetensors whose
 * tensor names and shapes are those of the state_dict() of the
 * torch.nn.Sequential described by the "kdcl.model" metadata (JSON). */
#ifndef KDCL_MODEL_H
#define KDCL_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "kdcl/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- architecture specs ---- */

typedef enum kdcl_layer_kind {
    KDCL_LAYER_LINEAR = 0,   /* torch.nn.Linear(in, out, bias) */
    KDCL_LAYER_CONV2D,       /* torch.nn.Conv2d(c, out, k, stride, padding, bias) */
    KDCL_LAYER_MAXPOOL2D,    /* torch.nn.MaxPool2d(k, stride, padding) */
    KDCL_LAYER_AVGPOOL2D,    /* torch.nn.AvgPool2d(k, stride, padding) */
    KDCL_LAYER_GLOBAL_AVGPOOL, /* torch.nn.AdaptiveAvgPool2d(1): [C, H, W] -> [C, 1, 1] */
    KDCL_LAYER_RELU,         /* torch.nn.ReLU() */
    KDCL_LAYER_DROPOUT,      /* torch.nn.Dropout(p) */
    KDCL_LAYER_FLATTEN,      /* torch.nn.Flatten(): [C, H, W] -> [C*H*W] */
    KDCL_LAYER_BATCHNORM,    /* BatchNorm1d (input [F]) or BatchNorm2d (input [C, H, W]) */
    KDCL_LAYER_RESIDUAL,     /* body(x) + shortcut(x) (identity when there is no shortcut) */
    KDCL_LAYER_KINDS
} kdcl_layer_kind;

typedef struct kdcl_layer_spec {
    kdcl_layer_kind kind;
    size_t out;          /* Linear: out_features; Conv2d: out_channels */
    size_t kh, kw;       /* Conv2d / pools: kernel size */
    size_t sh, sw;       /* stride (pools: 0 means the kernel size, PyTorch's default) */
    size_t ph, pw;       /* zero padding */
    int bias;            /* Linear / Conv2d: 1 with a bias (the default), 0 without */
    float p;             /* Dropout: drop probability in [0, 1) */
    float eps, momentum; /* BatchNorm (defaults 1e-5, 0.1) */
    /* Residual: the body and the shortcut (n_shortcut == 0: identity), owned */
    struct kdcl_layer_spec *body, *shortcut;
    size_t n_body, n_shortcut;
} kdcl_layer_spec;

typedef struct kdcl_model_spec {
    kdcl_layer_spec *layers; /* owned (kdcl_model_spec_free) */
    size_t n;
    /* The input size an "A-B-...-K" spec names (0: take it from the data). */
    size_t in_features;
} kdcl_model_spec;

/* A layer spec with PyTorch's defaults for `kind` (bias on, stride 0 =
 * kernel for pools, BatchNorm eps 1e-5 and momentum 0.1). */
KDCL_API kdcl_layer_spec kdcl_layer_spec_default(kdcl_layer_kind kind);

/* Parse an architecture:
 *   "784-1200-1200-10"  Linear layers with ReLU between them (the input size
 *                       first; it must match the data's C*H*W);
 *   a compact sequential spec, layers separated by ',':
 *       conv(OUT,K[,s=S][,p=P][,bias=0])   Conv2d, K or KHxKW
 *       maxpool(K[,s=S][,p=P])  avgpool(K[,s=S][,p=P])  gap
 *       linear(OUT[,bias=0])  relu  dropout(P)  flatten  bn[(eps=E,m=M)]
 *       res(BODY[;SHORTCUT])  a residual block: BODY and SHORTCUT are
 *                             layer lists; without SHORTCUT the identity
 *     e.g. "conv(32,5,p=2),relu,maxpool(2),flatten,linear(10)";
 *     OUT may be written K (or classes): the number of classes;
 *   a preset: "lenet5", "cnn-small", "cnn-medium", "resnet20" (n_classes outputs);
 *   "@file.json": a JSON list of layers in the kdcl.model format.
 * n_classes (>= 1) gives K and the presets' output size. Errors name the bad
 * token and its 1-based character position. */
KDCL_API kdcl_status kdcl_model_spec_parse(const char *text, size_t n_classes, kdcl_model_spec *out);
KDCL_API void kdcl_model_spec_free(kdcl_model_spec *s);
/* Deep copy. */
KDCL_API kdcl_status kdcl_model_spec_copy(const kdcl_model_spec *s, kdcl_model_spec *out);
/* The kdcl.model JSON of a spec (malloc'ed string) and back. The JSON is a
 * list of {"type": <PyTorch class>, "args": {<constructor keyword args>}}
 * (residual blocks: {"type": "Residual", "body": [...], "shortcut": [...] or
 * null}); in_features of Linear, in_channels of Conv2d and num_features of
 * BatchNorm are written, so input shapes are needed: see kdcl_model_to_json. */
KDCL_API kdcl_status kdcl_model_spec_from_json(const char *json, kdcl_model_spec *out);
/* A spec as the multi-layer perceptron "A-B-...-K" of the past: Flatten,
 * then Linear layers with ReLU between, Dropout(drop_in) before the first
 * and Dropout(drop_hidden) after each hidden ReLU when those are > 0. */
KDCL_API kdcl_status kdcl_model_spec_mlp(const size_t *sizes, size_t n_sizes, float drop_in,
                                float drop_hidden, kdcl_model_spec *out);
/* Set the rate of every Dropout layer of a spec whose "A-B-...-K" form had
 * none: inserts Dropout(drop_in) first and Dropout(drop_hidden) after every
 * ReLU that follows a Linear (used by --dropout). */
KDCL_API kdcl_status kdcl_model_spec_add_dropout(kdcl_model_spec *s, float drop_in, float drop_hidden);

/* ---- the model ---- */

typedef struct kdcl_model kdcl_model;

/* Build a model for inputs of shape [c, h, w] and batches of up to max_batch
 * rows; parameters zero (kdcl_model_init draws them). A spec that does not
 * fit the input (output size <= 0, Linear/Flatten size mismatch, BatchNorm on
 * a wrong rank) is refused naming the layer; a batch whose estimated device
 * memory (kdcl_model_check_memory) exceeds the device is refused with
 * KDCL_ERR_OOM before its buffers are allocated. */
KDCL_API kdcl_status kdcl_model_create(kdcl_ctx *ctx, const kdcl_model_spec *spec, size_t c, size_t h,
                              size_t w, size_t max_batch, kdcl_model **out);

/* Device memory of a model at a batch size: what it holds besides the batch
 * (parameters, gradients, BatchNorm statistics, plus two copies of the
 * parameters for the optimiser's state: Adam's worst case) and per example
 * (activations and their gradients, dropout masks, pooling indices, the
 * convolution workspace). The data set, the batcher and the GEMM scratch
 * buffers are not included. */
typedef struct kdcl_model_mem {
    uint64_t fixed;        /* parameters, gradients, statistics, optimiser state */
    uint64_t per_example;  /* bytes per example of the batch */
    uint64_t activations;  /* per_example * batch */
    uint64_t total;        /* fixed + activations */
    uint64_t largest;      /* the largest single buffer */
} kdcl_model_mem;
KDCL_API kdcl_status kdcl_model_memory(const kdcl_model *m, size_t batch, kdcl_model_mem *out);
/* KDCL_ERR_OOM, with the sizes and the device's limits (global memory, largest
 * buffer), when the model at `batch` does not fit the device. */
KDCL_API kdcl_status kdcl_model_check_memory(const kdcl_model *m, size_t batch);
KDCL_API void kdcl_model_destroy(kdcl_model *m);

/* He initialisation, normal with std sqrt(2 / fan_in) (fan_in = in_features
 * or C*KH*KW), biases 0, BatchNorm weight 1 / bias 0 / running mean 0 / var 1,
 * drawn layer by layer in order from one seeded generator: the weights of a
 * Linear-only model equal those of kdcl's earlier MLP for the same seed. */
KDCL_API kdcl_status kdcl_model_init(kdcl_model *m, uint64_t seed);

KDCL_API kdcl_ctx *kdcl_model_ctx(const kdcl_model *m);
KDCL_API const kdcl_model_spec *kdcl_model_spec_of(const kdcl_model *m);
/* Input shape; input elements per example (C*H*W); classes (logit width). */
KDCL_API void kdcl_model_input_shape(const kdcl_model *m, size_t *c, size_t *h, size_t *w);
KDCL_API size_t kdcl_model_in_dim(const kdcl_model *m);
KDCL_API size_t kdcl_model_classes(const kdcl_model *m);
KDCL_API size_t kdcl_model_max_batch(const kdcl_model *m);
KDCL_API size_t kdcl_model_batch(const kdcl_model *m);
/* Number of top-level layers, and layer i's kind and output elements per example. */
KDCL_API size_t kdcl_model_n_layers(const kdcl_model *m);
KDCL_API kdcl_layer_kind kdcl_model_layer_kind(const kdcl_model *m, size_t i);
KDCL_API size_t kdcl_model_layer_out_dim(const kdcl_model *m, size_t i);
/* Check that examples of shape [c, h, w] fit the model. A model that starts
 * with Flatten (an MLP) takes any shape with the same C*H*W and is rebound to
 * it (for translations of the right image size); others need the exact shape. */
KDCL_API kdcl_status kdcl_model_fit_input(kdcl_model *m, size_t c, size_t h, size_t w);
/* "784-1200-10" for a model made of Flatten/Linear/ReLU/Dropout only, else
 * the compact spec; written into buf. */
KDCL_API void kdcl_model_describe(const kdcl_model *m, char *buf, size_t size);
/* Trainable parameters (weights + biases + BatchNorm affine). */
KDCL_API size_t kdcl_model_n_params(const kdcl_model *m);
/* Multiply-adds of one example's forward pass. */
KDCL_API double kdcl_model_macs(const kdcl_model *m);

/* Rows of the next forward/backward (1..max_batch); reshapes the activations. */
KDCL_API kdcl_status kdcl_model_set_batch(kdcl_model *m, size_t batch);

/* The input batch (F32 [batch, C*H*W], NCHW per example): fill it, or use
 * kdcl_model_load_u8. */
KDCL_API kdcl_tensor *kdcl_model_input(kdcl_model *m);
/* Logits (F32 [batch, classes]) of the last forward, and their gradient,
 * which the loss fills (already divided by the batch size) before
 * kdcl_model_backward. */
KDCL_API kdcl_tensor *kdcl_model_logits(kdcl_model *m);
KDCL_API kdcl_tensor *kdcl_model_dlogits(kdcl_model *m);
/* Output of top-level layer i of the last forward (F32 [batch, out_dim]). */
KDCL_API const kdcl_tensor *kdcl_model_output(kdcl_model *m, size_t i);

/* The input transform x = (u8 / 255 - mean[c]) / std[c], one entry per
 * channel (default mean 0, std 1). Both finite, std > 0 and
 * (1 + |mean|) / std <= KDCL_INPUT_NORM_MAX, so that |x| stays below it. */
#define KDCL_INPUT_NORM_MAX 1e9
KDCL_API kdcl_status kdcl_model_set_input_norm(kdcl_model *m, const float *mean, const float *std);
KDCL_API void kdcl_model_input_norm(const kdcl_model *m, float *mean, float *std);

/* Fill the input batch from `count` u8 examples in HWC order (a dataset's
 * layout) with the model's input transform, translated by up to max_shift
 * pixels and (flip != 0) mirrored per example as drawn from (seed, step). */
KDCL_API kdcl_status kdcl_model_load_u8(kdcl_model *m, const kdcl_tensor *u8, size_t count, int max_shift,
                               int flip, uint64_t seed, uint64_t step);

/* Test-mode logits of n examples held on the host, in batches of up to
 * kdcl_model_max_batch: logits (n x classes floats, row-major) receives
 * them. The examples are c x h x w each (the model's input shape; an MLP
 * takes any with the same C*H*W, kdcl_model_fit_input), in `layout` (a
 * kdcl_layout of data.h: 0 HWC, 1 CHW):
 *   KDCL_U8   raw pixels (uint8), the model's input transform applied;
 *   KDCL_F32  pixels already transformed (float): used as they are.
 * Shapes that do not fit: KDCL_ERR_INVALID_ARG naming both. */
KDCL_API kdcl_status kdcl_model_predict(kdcl_model *m, const void *x, kdcl_elem type, int layout,
                                        size_t n, size_t c, size_t h, size_t w, float *logits);

/* Forward of the input batch to the logits. train != 0: dropout masks drawn
 * from (seed, step), BatchNorm on batch statistics (and its running
 * statistics updated); train == 0: no dropout, running statistics. */
KDCL_API kdcl_status kdcl_model_forward(kdcl_model *m, int train, uint64_t seed, uint64_t step);
/* Test-mode forward of `count` u8 examples (set_batch + load_u8 + forward). */
KDCL_API kdcl_status kdcl_model_forward_u8(kdcl_model *m, const kdcl_tensor *u8, size_t count);

/* Add alpha * g (F32, batch * out_dim(i) elements) to the gradient that
 * reaches the output of top-level layer i in the next kdcl_model_backward
 * (e.g. a hint loss on an intermediate layer). Pending additions are used
 * once and cleared by kdcl_model_backward. At most 8 at a time. */
KDCL_API kdcl_status kdcl_model_add_grad(kdcl_model *m, size_t i, const kdcl_tensor *g, float alpha);

/* Backward from the logits' gradient through every layer (with the
 * activations and masks of the last forward) into the gradient buffer. */
KDCL_API kdcl_status kdcl_model_backward(kdcl_model *m);

/* Per-layer device time: a profiler on the model's context
 * (kdcl_ctx_set_profiler, kdcl/profile.h) sees the top-level layers as
 * scopes "<name> <Type> fwd" / "<name> <Type> bwd". */

/* ---- parameters ---- */

/* The flat parameter and gradient buffers (F32; the tensors start at aligned
 * offsets, gaps are zero and stay zero). */
KDCL_API kdcl_tensor *kdcl_model_params(kdcl_model *m);
KDCL_API kdcl_tensor *kdcl_model_grads(kdcl_model *m);

/* One trainable tensor of the flat buffer. rows x cols is the matrix whose
 * rows max-norm constrains (Linear: out x in, Conv2d: OC x C*KH*KW); rows = 0
 * for tensors max-norm leaves alone (biases, BatchNorm). */
typedef struct kdcl_param_range {
    size_t offset, n;
    size_t rows, cols;
    size_t layer;         /* top-level layer index */
    char name[64];        /* the state_dict name, e.g. "3.weight" */
} kdcl_param_range;
/* The model's trainable tensors in state_dict order (the array stays valid
 * for the model's lifetime). */
KDCL_API const kdcl_param_range *kdcl_model_param_ranges(const kdcl_model *m, size_t *n);

/* Host copies of the trainable parameters, packed in kdcl_model_param_ranges
 * order (kdcl_model_n_params floats): for an MLP, W0, b0, W1, b1, ... as
 * before. */
KDCL_API kdcl_status kdcl_model_get_params(kdcl_model *m, float *host);
KDCL_API kdcl_status kdcl_model_set_params(kdcl_model *m, const float *host);

/* The output layer (the last Linear): its weight and bias ranges. */
KDCL_API kdcl_status kdcl_model_output_layer(const kdcl_model *m, kdcl_param_range *weight,
                                    kdcl_param_range *bias);
/* Add `offset` to the output layer's bias of each class in classes[0..n). */
KDCL_API kdcl_status kdcl_model_adjust_bias(kdcl_model *m, const size_t *classes, size_t n_classes,
                                   float offset);

/* The GEMMs of one training step (forward + backward) at batch B, as
 * (m, n, k, transposes) of the row-major products kdcl_gemm is called with;
 * count > 1 for products repeated per image. Returns how many there are
 * (writes at most cap). */
typedef struct kdcl_gemm_shape {
    size_t m, n, k;
    int ta, tb;
    size_t count;
    char what[80]; /* "1 Linear forward", ... */
} kdcl_gemm_shape;
KDCL_API size_t kdcl_model_gemm_shapes(const kdcl_model *m, size_t B, kdcl_gemm_shape *out, size_t cap);

/* ---- checkpoints ---- */

/* Save as safetensors (atomic): tensors named as the state_dict() of the
 * torch.nn.Sequential in "kdcl.model" (with BatchNorm running statistics and
 * num_batches_tracked), the input transform as "kdcl.input_mean" and
 * "kdcl.input_std", plus meta key/value pairs. NaN/Inf parameters are refused. */
KDCL_API kdcl_status kdcl_model_save(kdcl_model *m, const char *path, const char *const *meta_keys,
                            const char *const *meta_values, size_t n_meta);

/* Load a checkpoint: from its "kdcl.model" metadata, or an older MLP file
 * (layers.<i>.weight / .bias, "arch" metadata or shapes). Every tensor's
 * name and shape is checked against the architecture; an unknown layer type,
 * a missing or extra tensor, NaN/Inf values or BatchNorm statistics with NaN
 * are refused. The input shape is [C, H, W] from the checkpoint
 * ("kdcl.input_shape"), or [in, 1, 1]-compatible for old MLPs (they accept
 * any data with C*H*W = in). Before anything is allocated for the model, an
 * architecture of more than 2^20 parameters and statistics must find at
 * least as many F32 values in the file, and it may need at most
 * KDCL_CHECKPOINT_MAX_ACTS activation values per example (so a small file
 * cannot make kdcl allocate gigabytes). meta (may be NULL) receives the file
 * for its metadata (free with kdcl_st_free). */
#define KDCL_CHECKPOINT_MAX_ACTS ((size_t)1 << 28)
struct kdcl_st_file;
KDCL_API kdcl_status kdcl_model_load(kdcl_ctx *ctx, const char *path, size_t max_batch,
                            kdcl_model **out, struct kdcl_st_file *meta);
/* kdcl_model_load at the largest batch in [min_batch, max_batch] whose buffers
 * fit the device: max_batch, halved while the activations exceed the device's
 * largest allocation (or its memory); kdcl_model_max_batch says which. For
 * evaluation, where the batch is only a matter of speed. */
KDCL_API kdcl_status kdcl_model_load_fit(kdcl_ctx *ctx, const char *path, size_t max_batch,
                                size_t min_batch, kdcl_model **out, struct kdcl_st_file *meta);

/* A new model of the same architecture and input with the output layer
 * replaced by one of n_out classes (a specialist of a generalist): every
 * other parameter copied, the new output layer initialised from `seed`. */
KDCL_API kdcl_status kdcl_model_replace_output(kdcl_model *src, size_t n_out, size_t max_batch,
                                      uint64_t seed, kdcl_model **out);

#ifdef __cplusplus
}
#endif
#endif
