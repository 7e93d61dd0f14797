/* Optimisers over a model's flat parameter buffer, apart from the model:
 * SGD with momentum (kdcl's velocity form, optional Nesterov), Adam and
 * AdamW; L2 weight decay; max-norm of each Linear unit's / Conv2d filter's
 * incoming weights; learning-rate schedules (per-epoch decay, step, cosine,
 * linear warm-up) and the momentum ramp of Hinton et al. */
#ifndef KDCL_OPTIM_H
#define KDCL_OPTIM_H

#include "kdcl/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kdcl_optim_kind { KDCL_OPT_SGD = 0, KDCL_OPT_ADAM, KDCL_OPT_ADAMW } kdcl_optim_kind;

typedef struct kdcl_optim_opts {
    kdcl_optim_kind kind;
    int nesterov;           /* SGD only */
    float beta1, beta2, eps; /* Adam (defaults 0.9, 0.999, 1e-8) */
    float weight_decay;     /* SGD / Adam: L2 added to the gradient; AdamW: decoupled */
    float max_norm;         /* <= 0: off */
} kdcl_optim_opts;

KDCL_API void kdcl_optim_opts_default(kdcl_optim_opts *o);
/* "sgd", "nesterov", "adam", "adamw" -> kind (+ nesterov); -1 if unknown. */
KDCL_API int kdcl_optim_parse(const char *name, kdcl_optim_opts *o);

typedef struct kdcl_optim kdcl_optim;

/* State (velocity, or Adam's two moments) for m's parameter buffer, zero. */
KDCL_API kdcl_status kdcl_optim_create(kdcl_model *m, const kdcl_optim_opts *o, kdcl_optim **out);
KDCL_API void kdcl_optim_destroy(kdcl_optim *opt);
/* The state buffers (same layout as the parameters): i = 0 the SGD velocity
 * or Adam's first moment, i = 1 Adam's second moment (NULL for SGD). For
 * checkpoints that resume and for tests. */
KDCL_API kdcl_tensor *kdcl_optim_state(kdcl_optim *opt, int i);
/* Adam's step count (the bias corrections depend on it); resumed runs set it. */
KDCL_API uint64_t kdcl_optim_steps(const kdcl_optim *opt);
KDCL_API void kdcl_optim_set_steps(kdcl_optim *opt, uint64_t t);
/* Zero the state (and Adam's step count). */
KDCL_API kdcl_status kdcl_optim_reset(kdcl_optim *opt);

/* One update of every parameter from the model's gradients. SGD: lr and
 * momentum as given; Adam: lr (momentum ignored), the step count advances.
 * Without max-norm (and with SGD or Adam alike) one launch covers the whole
 * buffer; with max-norm each constrained matrix gets a fused update +
 * max-norm launch (SGD) or an update then a max-norm launch (Adam). */
KDCL_API kdcl_status kdcl_optim_step(kdcl_optim *opt, float lr, float momentum);

/* Learning-rate schedules, evaluated per step. */
typedef enum kdcl_sched_kind {
    KDCL_SCHED_EXP = 0, /* lr * decay^epoch (decay 1: constant) */
    KDCL_SCHED_STEP,    /* lr * gamma^floor(epoch / step_epochs) */
    KDCL_SCHED_COSINE   /* lr_min + (lr - lr_min) (1 + cos(pi t / T)) / 2 over the epochs after warm-up */
} kdcl_sched_kind;

typedef struct kdcl_schedule {
    float lr;
    kdcl_sched_kind kind;
    float decay;          /* EXP */
    size_t step_epochs;   /* STEP */
    float gamma;          /* STEP */
    float lr_min;         /* COSINE */
    size_t warmup_epochs; /* linear warm-up from lr / (warm-up steps) to lr, any kind */
    size_t epochs;        /* total (COSINE) */
    float momentum0, momentum1; /* momentum ramped linearly from momentum0 ... */
    size_t momentum_epochs;     /* ... to momentum1 over these epochs */
} kdcl_schedule;

/* The rate at step `step` (0-based) of epoch `epoch` (0-based) with
 * steps_per_epoch steps, and the momentum of an epoch. */
KDCL_API double kdcl_schedule_lr(const kdcl_schedule *s, size_t epoch, size_t step, size_t steps_per_epoch);
KDCL_API double kdcl_schedule_momentum(const kdcl_schedule *s, size_t epoch);
/* "exp", "step:E[:G]", "cosine[:LRMIN]" -> kind and its numbers. */
KDCL_API kdcl_status kdcl_schedule_parse(const char *text, kdcl_schedule *s);

#ifdef __cplusplus
}
#endif
#endif
