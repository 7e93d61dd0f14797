/* Multi-layer perceptrons: architecture strings, the model (parameters in one
 * flat device buffer, activations preallocated for a maximum batch), forward,
 * backward, SGD with momentum / weight decay / max-norm, and safetensors
 * checkpoints with PyTorch nn.Linear names (layers.<i>.weight [out, in],
 * layers.<i>.bias [out]). */
#ifndef KDCL_NN_H
#define KDCL_NN_H

#include "kdcl/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KDCL_MAX_LAYERS 16

typedef struct kdcl_arch {
    size_t n_layers;                     /* number of Linear layers */
    size_t sizes[KDCL_MAX_LAYERS + 1];   /* sizes[0] inputs ... sizes[n_layers] classes */
} kdcl_arch;

/* Parse "784-1200-1200-10" (at least input and output; every size 1..1e6;
 * at most KDCL_MAX_LAYERS layers). Garbage -> KDCL_ERR_INVALID_ARG saying why. */
kdcl_status kdcl_arch_parse(const char *spec, kdcl_arch *out);
void kdcl_arch_format(const kdcl_arch *a, char *buf, size_t size);
/* Number of trainable parameters (weights + biases). */
size_t kdcl_arch_params(const kdcl_arch *a);

typedef struct kdcl_mlp {
    kdcl_ctx *ctx;
    kdcl_arch arch;
    size_t max_batch;
    size_t batch;                  /* rows of the current forward/backward */
    float drop_in, drop_hidden;    /* dropout rates used when training */
    /* flat parameter, gradient and velocity buffers; each layer's weight and
     * bias start at an offset aligned for sub-buffers */
    kdcl_tensor params, grads, vel;
    size_t w_off[KDCL_MAX_LAYERS], b_off[KDCL_MAX_LAYERS];
    kdcl_tensor W[KDCL_MAX_LAYERS], b[KDCL_MAX_LAYERS];   /* views of params */
    kdcl_tensor dW[KDCL_MAX_LAYERS], db[KDCL_MAX_LAYERS]; /* views of grads */
    /* act[0]: input batch (F32 [B, in]); act[l+1]: output of layer l; act[L]: logits.
     * dact[l]: gradient w.r.t. act[l] (dact[L] is filled by the loss). */
    kdcl_tensor act[KDCL_MAX_LAYERS + 1], dact[KDCL_MAX_LAYERS + 1];
    kdcl_tensor mask[KDCL_MAX_LAYERS + 1]; /* dropout masks (U8) of act[l] */
    int last_train;                        /* the last forward used dropout */
} kdcl_mlp;

/* Allocate a model for batches of up to max_batch rows; parameters zero. */
kdcl_status kdcl_mlp_create(kdcl_ctx *ctx, const kdcl_arch *arch, size_t max_batch,
                            kdcl_mlp **out);
void kdcl_mlp_destroy(kdcl_mlp *m);

/* He initialisation (normal, std sqrt(2/fan_in)), biases 0; seeded. */
kdcl_status kdcl_mlp_init(kdcl_mlp *m, uint64_t seed);

/* Set the rows of the next forward/backward (1..max_batch); reshapes act/dact. */
kdcl_status kdcl_mlp_set_batch(kdcl_mlp *m, size_t batch);

/* Forward of act[0] (already filled with `batch` rows) to act[L] (logits).
 * train != 0 applies dropout (input rate drop_in, hidden drop_hidden) with
 * masks drawn from (seed, step). */
kdcl_status kdcl_mlp_forward(kdcl_mlp *m, int train, uint64_t seed, uint64_t step);

/* Backward from dact[L] (dL/dlogits, already divided by the batch size) to
 * grads. Uses the activations and masks of the last forward. */
kdcl_status kdcl_mlp_backward(kdcl_mlp *m);

/* v = mom*v - lr*(g + wd*w); w += v over every parameter, then max-norm
 * (c > 0) on each hidden and output unit's incoming weights. Without max-norm
 * one launch covers all parameters; with it, each weight matrix gets one fused
 * update + max-norm launch (kdcl_op_sgd_max_norm) and each bias a plain one. */
kdcl_status kdcl_mlp_sgd(kdcl_mlp *m, float lr, float momentum, float weight_decay,
                         float max_norm);

/* Host copies of parameters: weights of layer l are [out, in] row-major. */
kdcl_status kdcl_mlp_get_params(kdcl_mlp *m, float *host_flat /* kdcl_arch_params floats */);
kdcl_status kdcl_mlp_set_params(kdcl_mlp *m, const float *host_flat);

/* Save as safetensors (atomic). meta: extra key/value pairs (architecture is
 * always stored as "arch"). */
kdcl_status kdcl_mlp_save(kdcl_mlp *m, const char *path, const char *const *meta_keys,
                          const char *const *meta_values, size_t n_meta);

/* Load a checkpoint: the architecture comes from its "arch" metadata, or is
 * inferred from the layers.<i>.weight shapes; every tensor's shape is checked.
 * meta (may be NULL) receives the file for its metadata (free with kdcl_st_free). */
struct kdcl_st_file;
kdcl_status kdcl_mlp_load(kdcl_ctx *ctx, const char *path, size_t max_batch, kdcl_mlp **out,
                          struct kdcl_st_file *meta);

#ifdef __cplusplus
}
#endif
#endif
