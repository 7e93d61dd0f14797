/* Optimisers over the flat parameter buffer (kernels: cl/optim.cl) and
 * learning-rate schedules. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kdcl/conv.h"
#include "kdcl/ops.h"
#include "kdcl/optim.h"

struct kdcl_optim {
    kdcl_model *m;
    kdcl_optim_opts o;
    kdcl_tensor s1, s2; /* SGD: velocity; Adam: first and second moments */
    uint64_t t;         /* Adam steps taken */
};

void kdcl_optim_opts_default(kdcl_optim_opts *o)
{
    memset(o, 0, sizeof *o);
    o->kind = KDCL_OPT_SGD;
    o->beta1 = 0.9f;
    o->beta2 = 0.999f;
    o->eps = 1e-8f;
}

int kdcl_optim_parse(const char *name, kdcl_optim_opts *o)
{
    if (!strcmp(name, "sgd")) o->kind = KDCL_OPT_SGD, o->nesterov = 0;
    else if (!strcmp(name, "nesterov")) o->kind = KDCL_OPT_SGD, o->nesterov = 1;
    else if (!strcmp(name, "adam")) o->kind = KDCL_OPT_ADAM;
    else if (!strcmp(name, "adamw")) o->kind = KDCL_OPT_ADAMW;
    else return -1;
    return 0;
}

void kdcl_optim_destroy(kdcl_optim *opt)
{
    if (!opt) return;
    kdcl_ctx *ctx = kdcl_model_ctx(opt->m);
    kdcl_tensor_free(ctx, &opt->s1);
    kdcl_tensor_free(ctx, &opt->s2);
    free(opt);
}

kdcl_tensor *kdcl_optim_state(kdcl_optim *opt, int i)
{
    if (i == 0) return &opt->s1;
    return i == 1 && opt->s2.buf ? &opt->s2 : NULL;
}

uint64_t kdcl_optim_steps(const kdcl_optim *opt) { return opt->t; }

void kdcl_optim_set_steps(kdcl_optim *opt, uint64_t t) { opt->t = t; }

kdcl_status kdcl_optim_reset(kdcl_optim *opt)
{
    kdcl_ctx *ctx = kdcl_model_ctx(opt->m);
    kdcl_status s = kdcl_tensor_fill(ctx, &opt->s1, 0.0f);
    if (!s && opt->s2.buf) s = kdcl_tensor_fill(ctx, &opt->s2, 0.0f);
    opt->t = 0;
    return s;
}

kdcl_status kdcl_optim_create(kdcl_model *m, const kdcl_optim_opts *o, kdcl_optim **out)
{
    *out = NULL;
    if (!isfinite(o->weight_decay) || o->weight_decay < 0 || !isfinite(o->max_norm))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "optimiser: weight decay %g / max-norm %g must be finite, decay >= 0",
                              (double)o->weight_decay, (double)o->max_norm);
    if (o->kind != KDCL_OPT_SGD &&
        (!(o->beta1 >= 0 && o->beta1 < 1) || !(o->beta2 >= 0 && o->beta2 < 1) || !(o->eps > 0) ||
         !isfinite(o->eps)))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "Adam: beta1 %g and beta2 %g must be in [0, 1), eps %g > 0",
                              (double)o->beta1, (double)o->beta2, (double)o->eps);
    kdcl_optim *opt = calloc(1, sizeof *opt);
    if (!opt) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    opt->m = m;
    opt->o = *o;
    kdcl_ctx *ctx = kdcl_model_ctx(m);
    size_t n[1] = {kdcl_model_params(m)->numel};
    kdcl_status s = kdcl_tensor_alloc(ctx, &opt->s1, KDCL_F32, 1, n);
    if (!s && o->kind != KDCL_OPT_SGD) s = kdcl_tensor_alloc(ctx, &opt->s2, KDCL_F32, 1, n);
    if (!s) s = kdcl_optim_reset(opt);
    if (s) {
        kdcl_optim_destroy(opt);
        return s;
    }
    *out = opt;
    return KDCL_OK;
}

/* The update of elements [off, off + n). */
static kdcl_status update(kdcl_optim *opt, size_t off, size_t n, float lr, float momentum)
{
    kdcl_ctx *ctx = kdcl_model_ctx(opt->m);
    kdcl_tensor *w = kdcl_model_params(opt->m), *g = kdcl_model_grads(opt->m);
    const kdcl_optim_opts *o = &opt->o;
    if (o->kind == KDCL_OPT_SGD)
        return o->nesterov ? kdcl_op_sgd_nesterov(ctx, w, g, &opt->s1, off, n, lr, momentum,
                                                  o->weight_decay)
                           : kdcl_op_sgd(ctx, w, g, &opt->s1, off, n, lr, momentum,
                                         o->weight_decay);
    return kdcl_op_adam(ctx, w, g, &opt->s1, &opt->s2, off, n, lr, o->beta1, o->beta2, o->eps,
                        o->weight_decay, o->kind == KDCL_OPT_ADAMW, opt->t);
}

kdcl_status kdcl_optim_step(kdcl_optim *opt, float lr, float momentum)
{
    if (!(lr >= 0) || !isfinite(lr) || !isfinite(momentum))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "optimiser step: lr %g, momentum %g",
                              (double)lr, (double)momentum);
    opt->t++;
    kdcl_model *m = opt->m;
    kdcl_ctx *ctx = kdcl_model_ctx(m);
    kdcl_tensor *w = kdcl_model_params(m);
    const kdcl_optim_opts *o = &opt->o;
    if (!(o->max_norm > 0.0f)) return update(opt, 0, w->numel, lr, momentum);
    size_t nr;
    const kdcl_param_range *r = kdcl_model_param_ranges(m, &nr);
    kdcl_status s;
    for (size_t i = 0; i < nr; i++) {
        if (r[i].rows && o->kind == KDCL_OPT_SGD && !o->nesterov)
            /* max-norm fused into the update of each weight matrix (one read instead of two) */
            s = kdcl_op_sgd_max_norm(ctx, w, kdcl_model_grads(m), &opt->s1, r[i].offset,
                                     r[i].rows, r[i].cols, lr, momentum, o->weight_decay,
                                     o->max_norm);
        else if ((s = update(opt, r[i].offset, r[i].n, lr, momentum)) == KDCL_OK && r[i].rows)
            s = kdcl_op_max_norm(ctx, w, r[i].offset, r[i].rows, r[i].cols, o->max_norm);
        if (s) return s;
    }
    return KDCL_OK;
}

/* ---- schedules ---- */

double kdcl_schedule_lr(const kdcl_schedule *s, size_t epoch, size_t step, size_t steps_per_epoch)
{
    double lr;
    switch (s->kind) {
    case KDCL_SCHED_STEP: {
        size_t k = s->step_epochs ? epoch / s->step_epochs : 0;
        lr = s->lr;
        for (size_t i = 0; i < k; i++) lr *= s->gamma;
        break;
    }
    case KDCL_SCHED_COSINE: {
        size_t span = s->epochs > s->warmup_epochs ? s->epochs - s->warmup_epochs : 1;
        double t = epoch >= s->warmup_epochs
                       ? ((double)(epoch - s->warmup_epochs) +
                          (double)step / (double)(steps_per_epoch ? steps_per_epoch : 1)) /
                             (double)span
                       : 0.0;
        if (t > 1) t = 1;
        lr = s->lr_min + ((double)s->lr - s->lr_min) * 0.5 * (1.0 + cos(3.141592653589793 * t));
        break;
    }
    default: {
        /* float products epoch by epoch, exactly as kdcl always decayed the rate */
        float f = s->lr;
        for (size_t i = 0; i < epoch; i++) f *= s->decay;
        lr = f;
    }
    }
    if (s->warmup_epochs && epoch < s->warmup_epochs) {
        double total = (double)s->warmup_epochs * (double)(steps_per_epoch ? steps_per_epoch : 1);
        double done = (double)epoch * (double)steps_per_epoch + (double)step + 1.0;
        lr *= done / total;
    }
    return lr;
}

double kdcl_schedule_momentum(const kdcl_schedule *s, size_t epoch)
{
    float mom = s->momentum1;
    if (s->momentum_epochs > 0 && epoch < s->momentum_epochs)
        mom = s->momentum0 +
              (s->momentum1 - s->momentum0) * (float)epoch / (float)s->momentum_epochs;
    return mom;
}

kdcl_status kdcl_schedule_parse(const char *text, kdcl_schedule *s)
{
    char *end;
    if (!strcmp(text, "exp")) {
        s->kind = KDCL_SCHED_EXP;
        return KDCL_OK;
    }
    if (!strncmp(text, "step:", 5)) {
        unsigned long e = strtoul(text + 5, &end, 10);
        double g = 0.1;
        if (*end == ':') g = strtod(end + 1, &end);
        if (*end || e == 0 || e > 100000 || !(g > 0) || !(g <= 1))
            return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                  "schedule '%s': expected step:EPOCHS[:GAMMA] with EPOCHS >= 1 "
                                  "and 0 < GAMMA <= 1",
                                  text);
        s->kind = KDCL_SCHED_STEP;
        s->step_epochs = e;
        s->gamma = (float)g;
        return KDCL_OK;
    }
    if (!strcmp(text, "cosine") || !strncmp(text, "cosine:", 7)) {
        double mn = 0;
        if (text[6] == ':') {
            mn = strtod(text + 7, &end);
            if (*end || !(mn >= 0) || !isfinite(mn))
                return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                      "schedule '%s': expected cosine[:LR_MIN] with LR_MIN >= 0",
                                      text);
        }
        s->kind = KDCL_SCHED_COSINE;
        s->lr_min = (float)mn;
        return KDCL_OK;
    }
    return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                          "unknown schedule '%s' (exp, step:EPOCHS[:GAMMA], cosine[:LR_MIN])", text);
}
