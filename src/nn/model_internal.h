/* Inside a kdcl_model: the layer seam. Each layer type is one file of
 * src/nn/ defining a kdcl_layer_ops table (create / forward / backward /
 * destroy); model.c strings them together, owns the flat parameter,
 * gradient and statistics buffers and hands every layer views of them. */
#ifndef KDCL_NN_MODEL_INTERNAL_H
#define KDCL_NN_MODEL_INTERNAL_H

#include "kdcl/model.h"
#include "nn/spec_internal.h"

#define KDCL_LAYER_MAX_PARAMS 2 /* trainable tensors per layer (weight, bias) */
#define KDCL_LAYER_MAX_STATS 2  /* statistics tensors per layer (running mean, var) */
#define KDCL_MAX_PENDING_GRADS 8
#define KDCL_MAX_MLP_SIZES 17 /* an "A-B-...-K" spec: up to 16 Linear layers */

typedef struct kdcl_layer kdcl_layer;

/* A tensor of the flat parameter (or statistics) buffer owned by a layer. */
typedef struct kdcl_ltensor {
    size_t offset, n;         /* in the flat buffer, aligned */
    size_t ndim, shape[4];    /* PyTorch shape */
    size_t rows, cols;        /* max-norm matrix (rows = 0: none) */
    const char *suffix;       /* "weight", "bias", "running_mean", ... */
    int fan_in_init;          /* 1: He normal init with this fan-in scale, 0: constant */
    size_t fan_in;
    float init_value;         /* constant init value */
    kdcl_tensor val, grad;    /* views (grad unset for statistics) */
} kdcl_ltensor;

typedef struct kdcl_layer_ops {
    /* Set l->out_t (and l->inplace when the output is the input buffer),
     * declare parameters (l->p, l->n_p) and statistics (l->st, l->n_st) and
     * the F32 workspace it needs at max_batch (l->ws_need); may allocate
     * private device buffers for max_batch rows. Called once. */
    kdcl_status (*create)(kdcl_layer *l, kdcl_model *m);
    /* y = f(x) for the current batch. */
    kdcl_status (*forward)(kdcl_layer *l, kdcl_model *m, int train, uint64_t seed,
                           uint64_t step);
    /* From l->dy: parameter gradients (overwritten) and, when need_dx, l->dx. */
    kdcl_status (*backward)(kdcl_layer *l, kdcl_model *m, int need_dx);
    /* Free private buffers (safe after a failed create). */
    void (*destroy)(kdcl_layer *l, kdcl_ctx *ctx);
} kdcl_layer_ops;

struct kdcl_layer {
    const kdcl_layer_ops *ops;
    const kdcl_layer_spec *spec; /* points into the model's spec copy */
    kdcl_shape3 in, out;
    size_t in_dim, out_dim;      /* elements per example */
    char name[48];               /* state_dict prefix: "3", "4.body.0", ... */
    size_t top;                  /* index of the top-level layer it belongs to */
    /* input and its gradient: the previous layer's output (or the model's input) */
    kdcl_tensor *x, *dx;
    /* output and its gradient: y_own / dy_own, or x / dx when inplace */
    kdcl_tensor *y, *dy;
    kdcl_tensor y_own, dy_own;
    int inplace;
    /* the layers fused into this one (a Linear / Conv2d followed by ReLU
     * and Dropout): they forward and backward as no-ops, and this layer
     * applies bias + ReLU + dropout in one kernel */
    int fuse_relu;
    kdcl_layer *fuse_drop;
    int fused_away;
    int fused_train;          /* the last forward applied the fused dropout */
    /* dropout stream: the number of Linear/Conv2d layers before it */
    uint32_t stream;
    kdcl_ltensor p[KDCL_LAYER_MAX_PARAMS];
    size_t n_p;
    kdcl_ltensor st[KDCL_LAYER_MAX_STATS];
    size_t n_st;
    size_t ws_need;
    int64_t batches_tracked; /* BatchNorm */
    void *priv;
};

/* A list of layers run in order (the model, a residual body or shortcut). */
typedef struct kdcl_layer_list {
    kdcl_layer *l;
    size_t n;
} kdcl_layer_list;

typedef struct kdcl_pending_grad {
    size_t layer;
    const kdcl_tensor *g;
    float alpha;
} kdcl_pending_grad;

struct kdcl_model {
    kdcl_ctx *ctx;
    kdcl_model_spec spec;
    kdcl_shape3 in;
    size_t in_dim, classes;
    size_t max_batch, batch;
    kdcl_layer_list top;
    kdcl_tensor input, dinput;   /* dinput unused (never computed) */
    kdcl_tensor params, grads, stats;
    kdcl_tensor ws;              /* shared F32 workspace (conv columns) */
    size_t n_params;             /* trainable elements (without alignment gaps) */
    kdcl_param_range *ranges;
    size_t n_ranges;
    float mean[4], std[4];       /* input transform per channel */
    int input_hwc;               /* old MLP checkpoints: inputs in HWC order, one channel's norm */
    size_t first_param_top;      /* first top-level layer with parameters (n: none) */
    kdcl_pending_grad pending[KDCL_MAX_PENDING_GRADS];
    size_t n_pending;
    /* device memory (kdcl_model_memory): bytes the model allocated, of which
     * per example (rows of activations, masks, workspace) and the largest row */
    uint64_t mem_bytes, row_bytes, max_row_bytes, ws_row_bytes;
};

/* A [max_batch, per_example] tensor of the batch (counted per example for
 * kdcl_model_memory), reshaped to the current batch. */
kdcl_status kdcl_model_alloc_rows(kdcl_model *m, kdcl_tensor *t, kdcl_elem type,
                                  size_t per_example);

/* The BatchNorm layers' num_batches_tracked counters in creation order: read
 * into v (set = 0) or written from v (set = 1), at most cap; returns how many
 * BatchNorm layers there are. */
size_t kdcl_model_bn_counters(kdcl_model *m, int64_t *v, size_t cap, int set);

/* Layer types (one file each). */
extern const kdcl_layer_ops kdcl_linear_ops, kdcl_conv2d_ops, kdcl_maxpool_ops,
    kdcl_avgpool_ops, kdcl_gap_ops, kdcl_relu_ops, kdcl_dropout_ops, kdcl_flatten_ops,
    kdcl_batchnorm_ops, kdcl_residual_ops;

/* Build / run / free a list of layers (residual blocks use these for their
 * body and shortcut). x / dx: the list's input and its gradient. prefix:
 * state_dict prefix of the list ("" top level, "4.body."). */
kdcl_status kdcl_list_create(kdcl_model *m, kdcl_layer_list *list, const kdcl_layer_spec *specs,
                             size_t n, kdcl_shape3 in, kdcl_tensor *x, kdcl_tensor *dx,
                             const char *prefix, size_t top, int may_alias_input,
                             uint32_t *stream);
kdcl_status kdcl_list_forward(kdcl_model *m, kdcl_layer_list *list, int train, uint64_t seed,
                              uint64_t step);
kdcl_status kdcl_list_backward(kdcl_model *m, kdcl_layer_list *list, int need_dx);
void kdcl_list_destroy(kdcl_ctx *ctx, kdcl_layer_list *list);
/* Output (and its gradient) of a list: its last layer's, or the input when empty. */
kdcl_tensor *kdcl_list_out(kdcl_layer_list *list, kdcl_tensor *x);
kdcl_tensor *kdcl_list_dout(kdcl_layer_list *list, kdcl_tensor *dx);
int kdcl_list_has_params(const kdcl_layer_list *list);

/* An owned activation buffer of out_dim floats per example for max_batch rows. */
kdcl_status kdcl_layer_alloc_act(kdcl_model *m, kdcl_tensor *t, size_t per_example);
/* The layer's own output and output-gradient buffers (y_own, dy_own) of
 * out_dim floats per example. */
kdcl_status kdcl_layer_alloc_out(kdcl_model *m, kdcl_layer *l);
/* Declare a trainable tensor / a statistics tensor of the layer. */
void kdcl_layer_param(kdcl_layer *l, const char *suffix, size_t ndim, const size_t *shape,
                      size_t rows, size_t cols, size_t fan_in, float init_value);
void kdcl_layer_stat(kdcl_layer *l, const char *suffix, size_t n, float init_value);
/* Enqueue a copy of the first n floats of src into dst. */
kdcl_status kdcl_layer_copy(kdcl_model *m, const kdcl_tensor *src, kdcl_tensor *dst, size_t n);
/* The elementwise tail of a Linear / Conv2d (bias, fused ReLU and dropout)
 * and its backward (linear.c). */
kdcl_status kdcl_linear_tail(kdcl_layer *l, kdcl_model *m, const kdcl_tensor *bias, int train,
                             uint64_t seed, uint64_t step);
kdcl_status kdcl_linear_tail_backward(kdcl_layer *l, kdcl_model *m, int train);
/* PyTorch class name of a layer ("Conv2d", "BatchNorm2d", ...). */
const char *kdcl_layer_type_name(const kdcl_layer *l);
/* Reshape a [max_batch, d] activation to the current batch. */
kdcl_status kdcl_act_rows(kdcl_tensor *t, size_t batch);

#endif
