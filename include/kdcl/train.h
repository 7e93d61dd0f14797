/* Training and evaluation loops: batches assembled on the device, SGD with
 * schedules, metrics (JSONL), progress, NaN detection. */
#ifndef KDCL_TRAIN_H
#define KDCL_TRAIN_H


#include "kdcl/data.h"
#include "kdcl/model.h"
#include "kdcl/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Feeds batches of a host dataset to the device. When the dataset fits
 * (<= 1/4 of device memory and one allocation), it is uploaded once and
 * batches are gathered on the device from an uploaded permutation; otherwise
 * each batch is gathered on the host into one of two staging buffers and
 * uploaded asynchronously while the previous step runs. */
typedef struct kdcl_batcher kdcl_batcher;

KDCL_API kdcl_status kdcl_batcher_create(kdcl_ctx *ctx, const kdcl_dataset *ds, size_t max_batch,
                                         kdcl_batcher **out);
/* Order for an epoch: shuffled by (seed, epoch), or identity when shuffle == 0. */
KDCL_API kdcl_status kdcl_batcher_epoch(kdcl_batcher *b, int shuffle, uint64_t seed, uint64_t epoch);
/* Use an explicit order: n indices into the dataset (repeats allowed, any n
 * >= 1); batches then cover order[0..n). */
KDCL_API kdcl_status kdcl_batcher_set_order(kdcl_batcher *b, const size_t *order, size_t n);
/* Assemble rows order[start .. start+count) into the batch tensors below. */
KDCL_API kdcl_status kdcl_batcher_load(kdcl_batcher *b, size_t start, size_t count);
/* The last load's batch: images U8 [max_batch, dim] (rows 0..count used) and
 * labels I32 [max_batch]; valid until the next load. */
KDCL_API const kdcl_tensor *kdcl_batcher_images(const kdcl_batcher *b);
KDCL_API const kdcl_tensor *kdcl_batcher_labels(const kdcl_batcher *b);
/* 1 when the dataset lives on the device (loads never wait on the host). */
KDCL_API int kdcl_batcher_resident(const kdcl_batcher *b);
/* NULL is allowed. */
KDCL_API void kdcl_batcher_destroy(kdcl_batcher *b);

struct kdcl_epoch_stats;
struct kdcl_progress;

typedef struct kdcl_train_opts {
    size_t epochs;
    size_t batch;
    float lr;              /* initial learning rate */
    float lr_decay;        /* multiplied into the rate after every epoch (1 = constant) */
    kdcl_sched_kind schedule; /* EXP (lr_decay per epoch), STEP, COSINE */
    size_t step_epochs;    /* STEP: multiply by step_gamma every step_epochs epochs */
    float step_gamma;
    float lr_min;          /* COSINE: the final rate */
    size_t warmup_epochs;  /* linear warm-up over the first epochs (0: none) */
    kdcl_optim_kind optimizer; /* SGD (default), ADAM, ADAMW */
    int nesterov;          /* SGD with Nesterov momentum */
    float beta1, beta2, adam_eps;
    float momentum0;       /* momentum at epoch 0 ... */
    float momentum1;       /* ... ramped linearly to this by momentum_epochs */
    size_t momentum_epochs;
    float weight_decay;
    float max_norm;        /* <= 0: off */
    int jitter;            /* max translation in pixels (0: off); a random crop with zero
                              padding P is jitter P */
    int flip;              /* random horizontal flips (images with C > 1 channels or CHW input) */
    uint64_t seed;
    const kdcl_dataset *val;   /* evaluated after each epoch (may be NULL) */
    const char *metrics_path;  /* JSONL, one line per epoch (may be NULL) */
    const char *tag;           /* the run's name, handed to the callbacks */
    /* Custom sampling (sample NULL: every example once per epoch, shuffled):
     * each epoch has epoch_n examples, order[0..epoch_n) filled by
     * sample(sample_user, epoch, order, epoch_n) with indices into the
     * training set (repeats allowed). */
    kdcl_status (*sample)(void *user, uint64_t epoch, size_t *order, size_t n);
    void *sample_user;
    size_t epoch_n;
    /* The optimiser to use (its state carries over between calls); NULL:
     * kdcl_train makes one from the fields above for the call. */
    kdcl_optim *optim;
    /* Resumable training (state_path NULL: off). The training state is
     * written atomically to state_path after every epoch (the last included)
     * and, with state_every > 0, every state_every steps within an epoch:
     * parameters, BatchNorm statistics, optimiser state, progress, the
     * epoch's example order, the metrics so far and the options that must
     * not change (those above that shape the result, the model, a hash of
     * the data, plus the caller's state_keys/state_vals). With resume set,
     * training continues from state_path (which must exist) and ends with the
     * weights an uninterrupted run gives on the same device, bit for bit; a
     * state whose options differ is refused naming the option. The metrics
     * file is rewritten with the saved epochs first. The caller removes the
     * state when it has saved the model. */
    const char *state_path;
    size_t state_every;
    int resume;
    const char *const *state_keys;
    const char *const *state_vals;
    size_t n_state;
    /* Data-parallel SGD over the ranks of an mpirun job (ignored in one
     * process): every rank makes this call with the same options, data and
     * initial model. Each global batch of `batch` examples is split into
     * contiguous shares, one per rank; each rank computes the gradient of its
     * share, the gradients are summed over the ranks (one allreduce of the
     * flat gradient buffer per step) so that every rank makes the update of
     * the whole batch. Dropout masks and jitter are drawn per rank. BatchNorm
     * layers normalise with their rank's share of the batch (per-rank batch
     * statistics, as PyTorch's DistributedDataParallel without SyncBatchNorm);
     * after every epoch rank 0's running statistics are copied to every rank
     * (DDP's broadcast of buffers from rank 0). The epoch statistics are
     * those of the whole batch; only rank 0 writes the training state and
     * evaluates the validation set; every rank must pass metrics_path NULL
     * but rank 0. After every epoch the ranks' parameters are compared (a
     * hash): ranks on devices that round differently drift apart, and then
     * rank 0's parameters are copied to every rank (noted in rank 0's log,
     * with the largest relative difference). A loss that becomes NaN or Inf is
     * reported by the lowest rank that saw it, the others wait to be ended
     * (the caller ends the job: MPI_Abort). */
    int data_parallel;
    /* JSON members appended to every line of the metrics file (e.g.
     * "\"world_size\": 2"), or NULL. */
    const char *metrics_extra;
    /* Called after every epoch (NULL: not called) with that epoch's
     * statistics, once its metrics line and training state are written. A
     * non-zero return stops the training there: kdcl_train returns KDCL_OK
     * with `last` holding that epoch (a training state then says how far the
     * run got, and resuming it continues). Distillation (kdcl_distill) calls
     * it too. Data-parallel: called on every rank, rank 0's return decides. */
    int (*on_epoch)(void *user, const struct kdcl_epoch_stats *st);
    void *on_epoch_user;
    /* Called every few dozen steps (NULL: not called): where the epoch is,
     * for a progress display (the command line's bar). */
    void (*on_progress)(void *user, const struct kdcl_progress *p);
    void *on_progress_user;
} kdcl_train_opts;

/* Progress of a training state file (checked for consistency, not against a
 * run): epochs completed of `epochs`, steps of the next epoch completed of
 * `steps` per epoch. */
typedef struct kdcl_train_state_info {
    size_t epoch, epochs, step, steps;
} kdcl_train_state_info;
KDCL_API kdcl_status kdcl_train_state_info_read(const char *path, kdcl_train_state_info *info);

KDCL_API void kdcl_train_opts_default(kdcl_train_opts *o);

/* Options on the heap, for bindings that do not mirror the struct (Python's
 * ctypes): created with the defaults, NULL when out of memory. */
KDCL_API kdcl_train_opts *kdcl_train_opts_create(void);
KDCL_API void kdcl_train_opts_destroy(kdcl_train_opts *o);

/* Set one option by its name, as the command line's flag without the dashes
 * ("lr", "weight-decay"; '_' may stand for '-'), from its text; the kdcl
 * train / distill flags parse their values with this:
 *   epochs N (1..1000000)   batch N (>= 1)   lr X (> 0)   lr-decay X (0, 1]
 *   momentum A[,B[,EPOCHS]] (A, B in [0, 1); one value: constant)
 *   weight-decay X [0, 1]   max-norm X (> 0)   jitter N / crop N (0..16 pixels)
 *   flip 0|1   optimizer sgd|nesterov|adam|adamw   schedule (kdcl_schedule_parse:
 *   exp, step:EPOCHS[:GAMMA], cosine[:MIN])   warmup N   seed S
 * A bad name or value: KDCL_ERR_INVALID_ARG, the message starting with the
 * name ("lr needs a positive number, got 'x'"); the options are unchanged. */
KDCL_API kdcl_status kdcl_train_opts_set(kdcl_train_opts *o, const char *name, const char *value);
/* The validation set (evaluated after every epoch; NULL: none) and the
 * per-epoch callback (kdcl_train_opts.on_epoch). */
KDCL_API void kdcl_train_opts_set_val(kdcl_train_opts *o, const kdcl_dataset *val);
KDCL_API void kdcl_train_opts_set_on_epoch(kdcl_train_opts *o,
                                           int (*on_epoch)(void *user,
                                                           const struct kdcl_epoch_stats *st),
                                           void *user);

/* The schedule and optimiser settings of a set of options. */
KDCL_API kdcl_schedule kdcl_train_schedule(const kdcl_train_opts *o);
KDCL_API kdcl_optim_opts kdcl_train_optim_opts(const kdcl_train_opts *o);

/* Loss of a training step: fill kdcl_model_dlogits(m) with dL/dlogits (divided by the
 * batch size), write the per-example loss into loss (F32 [B]) and add this
 * batch's error count to errors (I32 [1]). The batch is b->batch_u8[b->cur],
 * rows order[start .. start+count) of the dataset; `step` is the global step
 * that seeded its jitter and dropout. The default is cross-entropy with the
 * labels; distillation installs its own. */
typedef kdcl_status (*kdcl_loss_fn)(void *user, kdcl_model *m, const kdcl_batcher *b,
                                    size_t start, size_t count, uint64_t step,
                                    const kdcl_tensor *labels, kdcl_tensor *loss,
                                    kdcl_tensor *errors);

/* (The Python package mirrors this struct: src/python/kdcl/_lib.py.) */
typedef struct kdcl_epoch_stats {
    size_t epoch;
    double train_loss, train_error; /* training-mode (dropout) running values */
    double val_loss, val_error;     /* NAN without a validation set */
    size_t val_errors;
    double lr, momentum, seconds, samples_per_s;
    size_t epochs;        /* of the run (kdcl_train_opts.epochs) */
    const char *tag;      /* kdcl_train_opts.tag */
    double resync_diff;   /* data-parallel, rank 0: > 0 when the ranks' parameters had drifted
                           * apart (largest relative difference from rank 0's, that of rank
                           * resync_rank) and rank 0's were copied to every rank after this
                           * epoch; else 0 */
    int resync_rank;
} kdcl_epoch_stats;

/* Progress within an epoch (kdcl_train_opts.on_progress), every few dozen
 * steps and at the epoch's end. */
typedef struct kdcl_progress {
    const char *tag;
    size_t epoch, epochs;  /* from 1 */
    size_t done, total;    /* examples of this epoch */
    double samples_per_s;  /* this epoch so far */
    double eta_s;          /* to the end of the run, at that rate */
} kdcl_progress;

/* Train m on ds. loss_fn NULL: cross-entropy. `last` (may be NULL) receives
 * the last epoch's statistics. Stops with KDCL_ERR_NUMERIC naming the epoch
 * and step if the loss becomes NaN/Inf. */
KDCL_API kdcl_status kdcl_train(kdcl_model *m, const kdcl_dataset *ds, const kdcl_train_opts *o,
                       kdcl_loss_fn loss_fn, void *loss_user, kdcl_epoch_stats *last);

/* One step at a time: the steps kdcl_train runs, for a caller that drives
 * or times them itself (kdcl bench profiles the library's own step this
 * way). A trainer owns a batcher over ds (resident or streaming as
 * kdcl_train's), the loss accumulators and, unless o->optim is given, an
 * optimiser made from the options; the model, the data and the options'
 * pointers must outlive it. Custom sampling (o->sample), validation,
 * metrics, logging and training states are kdcl_train's alone. */
typedef struct kdcl_trainer kdcl_trainer;
KDCL_API kdcl_status kdcl_trainer_create(kdcl_model *m, const kdcl_dataset *ds,
                                         const kdcl_train_opts *o, kdcl_loss_fn loss_fn,
                                         void *loss_user, kdcl_trainer **out);
/* Start epoch `epoch` (from 1): the example order shuffled by (o->seed,
 * epoch) as kdcl_train draws it; the epoch's loss and error sums reset. */
KDCL_API kdcl_status kdcl_trainer_epoch(kdcl_trainer *t, size_t epoch);
/* Steps per epoch: ceil(examples / batch). */
KDCL_API size_t kdcl_trainer_steps(const kdcl_trainer *t);
/* 1 when the data lives on the device (a step then never waits on the host:
 * it may be enqueued behind a gated profiler). */
KDCL_API int kdcl_trainer_resident(const kdcl_trainer *t);
/* Enqueue step `step` (0-based) of the current epoch with this learning rate
 * and momentum: exactly kdcl_train's step (jitter and dropout drawn from the
 * global step number). Returns without waiting for the device. With a
 * profile open on the context, its scopes are the phases "data", "forward",
 * "loss", "backward", "optimizer" (and the layers, at KDCL_PROF_LAYERS). */
KDCL_API kdcl_status kdcl_trainer_step(kdcl_trainer *t, size_t step, float lr, float momentum);
/* Mean loss and error rate over the epoch's examples so far, divided by the
 * epoch's size (waits for the device). */
KDCL_API kdcl_status kdcl_trainer_stats(kdcl_trainer *t, double *loss, double *error);
KDCL_API void kdcl_trainer_destroy(kdcl_trainer *t);

typedef struct kdcl_eval_result {
    size_t n, errors;
    double loss;        /* mean cross-entropy */
    size_t n_classes;
    int32_t *confusion; /* [n_classes * n_classes], row = true class (malloc'ed; may be NULL) */
} kdcl_eval_result;

/* The examples of ds fit m: its input shape, and at most as many classes as
 * the model has outputs (the check kdcl_evaluate, kdcl_train and the logits
 * helpers make); rebinds an MLP to the data's image shape. Errors
 * (KDCL_ERR_INVALID_ARG) start with `what`, e.g. the checkpoint's path. */
KDCL_API kdcl_status kdcl_check_fit(kdcl_model *m, const kdcl_dataset *ds, const char *what);

/* Test-mode (no dropout) evaluation; want_confusion allocates the matrix. */
KDCL_API kdcl_status kdcl_evaluate(kdcl_model *m, const kdcl_dataset *ds, int want_confusion,
                          kdcl_eval_result *r);
KDCL_API void kdcl_eval_result_free(kdcl_eval_result *r);

#ifdef __cplusplus
}
#endif
#endif
