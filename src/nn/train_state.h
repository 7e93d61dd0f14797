/* The training state of a resumable run (src/nn/train_state.c). */
#ifndef KDCL_NN_TRAIN_STATE_H
#define KDCL_NN_TRAIN_STATE_H

#include "kdcl/optim.h"
#include "kdcl/train.h"

typedef struct kdcl_tstate {
    /* the run's options that must not change: names and values */
    char **keys, **vals;
    size_t n, cap;
    /* progress */
    size_t epoch;       /* epochs completed */
    size_t step;        /* steps of epoch + 1 completed (0: at an epoch boundary) */
    size_t steps;       /* steps per epoch */
    double loss_sum;    /* the epoch in progress: sum of its step losses so far */
    int32_t errors;     /* ... and its training errors so far */
    char *metrics;      /* the JSONL lines of the completed epochs */
    size_t metrics_len, metrics_cap;
    kdcl_epoch_stats last; /* the last completed epoch's statistics (epoch 0: none) */
} kdcl_tstate;

/* Collect the options of a run of kdcl_train (o, the model, the data, the
 * caller's o->state_keys) that a resumed run must share. N: examples per
 * epoch, steps: steps per epoch. */
kdcl_status kdcl_tstate_init(kdcl_tstate *t, kdcl_model *m, const kdcl_dataset *ds,
                             const kdcl_train_opts *o, size_t N, size_t steps);
kdcl_status kdcl_tstate_add_metrics(kdcl_tstate *t, const char *line);
/* Write the state atomically: the model's parameters, statistics and BatchNorm
 * counters, the optimiser's state, the order of epoch order_epoch, progress
 * and metrics. */
kdcl_status kdcl_tstate_write(kdcl_tstate *t, const char *path, kdcl_model *m, kdcl_optim *opt,
                              const size_t *order, size_t n_order, size_t order_epoch);
/* Continue from the state in path: check it against t's options (naming the
 * first that differs), load the model and optimiser state and the progress
 * into t. *order (malloc'ed) receives the saved order of epoch *order_epoch
 * for the caller to compare with the one it computes. */
kdcl_status kdcl_tstate_resume(kdcl_tstate *t, const char *path, kdcl_model *m, kdcl_optim *opt,
                               size_t **order, size_t *n_order, size_t *order_epoch);
void kdcl_tstate_free(kdcl_tstate *t);

#endif
