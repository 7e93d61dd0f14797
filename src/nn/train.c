/* The training loop and test-mode evaluation. The host enqueues whole steps
 * and synchronises only every SYNC_STEPS steps (to bound the queue, update
 * the progress bar and check the per-step losses for NaN/Inf). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/batcher_internal.h"
#include "kdcl/loss.h"
#include "kdcl/ops.h"
#include "kdcl/profile.h"
#include "kdcl/train.h"
#include "nn/eval_internal.h"
#include "nn/model_internal.h"
#include "nn/train_state.h"
#include "runtime/ctx.h"
#include "kdcl/dist.h"

#define SYNC_STEPS 32

void kdcl_train_opts_default(kdcl_train_opts *o)
{
    memset(o, 0, sizeof *o);
    o->epochs = 10;
    o->batch = 128;
    o->lr = 0.05f;
    o->lr_decay = 1.0f;
    o->momentum0 = 0.5f;
    o->momentum1 = 0.9f;
    o->momentum_epochs = 5;
    o->seed = 1;
    o->tag = "train";
    o->schedule = KDCL_SCHED_EXP;
    o->step_gamma = 0.1f;
    o->optimizer = KDCL_OPT_SGD;
    o->beta1 = 0.9f;
    o->beta2 = 0.999f;
    o->adam_eps = 1e-8f;
}

kdcl_schedule kdcl_train_schedule(const kdcl_train_opts *o)
{
    kdcl_schedule s = {0};
    s.lr = o->lr;
    s.kind = o->schedule;
    s.decay = o->lr_decay;
    s.step_epochs = o->step_epochs;
    s.gamma = o->step_gamma;
    s.lr_min = o->lr_min;
    s.warmup_epochs = o->warmup_epochs;
    s.epochs = o->epochs;
    s.momentum0 = o->momentum0;
    s.momentum1 = o->momentum1;
    s.momentum_epochs = o->momentum_epochs;
    return s;
}

kdcl_optim_opts kdcl_train_optim_opts(const kdcl_train_opts *o)
{
    kdcl_optim_opts p;
    kdcl_optim_opts_default(&p);
    p.kind = o->optimizer;
    p.nesterov = o->nesterov;
    p.beta1 = o->beta1;
    p.beta2 = o->beta2;
    p.eps = o->adam_eps;
    p.weight_decay = o->weight_decay;
    p.max_norm = o->max_norm;
    return p;
}

kdcl_status kdcl_check_fit(kdcl_model *m, const kdcl_dataset *ds, const char *what)
{
    if (kdcl_model_fit_input(m, ds->c, ds->h, ds->w)) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", kdcl_last_error());
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: %s", what, msg);
    }
    if (ds->n_classes > kdcl_model_classes(m))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "%s: the model has %zu outputs but the data has %zu classes", what,
                              kdcl_model_classes(m), ds->n_classes);
    return KDCL_OK;
}

/* Default loss: cross-entropy with the hard labels. */
static kdcl_status xent_loss(void *user, kdcl_model *m, const kdcl_batcher *b, size_t start,
                             size_t count, uint64_t step, const kdcl_tensor *labels,
                             kdcl_tensor *loss, kdcl_tensor *errors)
{
    (void)user;
    (void)b;
    (void)start;
    (void)step;
    return kdcl_op_softmax_xent(kdcl_model_ctx(m), kdcl_model_logits(m), labels, loss,
                                kdcl_model_dlogits(m), 1.0f / (float)count, errors);
}

/* The options and data kdcl_train and kdcl_trainer_create accept. */
static kdcl_status check_opts(kdcl_model *m, const kdcl_dataset *ds, const kdcl_train_opts *o)
{
    kdcl_status s;
    if (o->batch == 0) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "batch size must be >= 1");
    if (o->sample && o->epoch_n == 0)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "a custom sampler needs epoch_n >= 1");
    const size_t N = o->sample ? o->epoch_n : ds->n; /* examples per epoch */
    if (o->batch > N)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "batch size %zu is larger than the %zu training examples", o->batch,
                              N);
    if (o->batch > kdcl_model_max_batch(m))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "batch size %zu above the model's maximum %zu",
                              o->batch, kdcl_model_max_batch(m));
    if (!(o->lr > 0) || !isfinite(o->lr))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "learning rate must be positive");
    if (!(o->lr_decay > 0) || !isfinite(o->lr_decay) || !(o->lr_min >= 0) ||
        (o->schedule == KDCL_SCHED_STEP && (o->step_epochs == 0 || !(o->step_gamma > 0))))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "learning-rate schedule: decay %g, step %zu epochs x %g, minimum %g",
                              (double)o->lr_decay, o->step_epochs, (double)o->step_gamma,
                              (double)o->lr_min);
    if (o->jitter < 0 || (o->jitter > 0 && (ds->h < 2 || ds->w < 2)))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "jitter needs image data and a shift >= 0");
    if ((s = kdcl_check_fit(m, ds, "train"))) return s;
    if (o->val && (s = kdcl_check_fit(m, o->val, "validation"))) return s;
    return KDCL_OK;
}

/* A step's work up to the optimiser, as kdcl_train and kdcl_trainer_step
 * enqueue it: rows order[start .. start+count) gathered, the input
 * converted (with jitter/flip drawn from `step`), forward, loss (its
 * per-example values summed into loss_acc[slot], errors added to err_acc),
 * backward. With a profile open on the context, the phases are its scopes. */
static kdcl_status enqueue_step(kdcl_model *m, kdcl_batcher *b, const kdcl_train_opts *o,
                                kdcl_loss_fn loss_fn, void *loss_user, size_t start, size_t count,
                                uint64_t step, kdcl_tensor *loss, kdcl_tensor *loss_acc,
                                size_t slot, kdcl_tensor *err_acc)
{
    kdcl_ctx *ctx = kdcl_model_ctx(m);
    size_t ls[1] = {count};
    kdcl_status s;
    if ((s = kdcl_prof_scope(ctx, KDCL_PROF_PHASES, "data")) ||
        (s = kdcl_batcher_load(b, start, count)) || (s = kdcl_tensor_reshape(loss, 1, ls)) ||
        (s = kdcl_prof_scope(ctx, KDCL_PROF_LAYERS, "input u8->f32")) ||
        (s = kdcl_model_load_u8(m, &b->batch_u8[b->cur], count, o->jitter, o->flip, o->seed,
                                step)) ||
        (s = kdcl_prof_scope(ctx, KDCL_PROF_PHASES, "forward")) ||
        (s = kdcl_model_forward(m, 1, o->seed, step)) ||
        (s = kdcl_prof_scope(ctx, KDCL_PROF_PHASES, "loss")) ||
        (s = loss_fn(loss_user, m, b, start, count, step, &b->batch_labels[b->cur], loss,
                     err_acc)) ||
        (s = kdcl_op_reduce_add(ctx, loss, count, loss_acc, slot)) ||
        (s = kdcl_prof_scope(ctx, KDCL_PROF_PHASES, "backward")))
        return s;
    return kdcl_model_backward(m);
}

/* Download per-step losses [from, to) of this epoch and check them. */
static kdcl_status check_losses(kdcl_ctx *ctx, const kdcl_tensor *acc, size_t from, size_t to,
                                size_t epoch, float *host, double *sum)
{
    if (to <= from) return KDCL_OK;
    kdcl_status s = kdcl_tensor_download(ctx, acc, from, to - from, host);
    if (s) return s;
    for (size_t i = from; i < to; i++) {
        if (!isfinite(host[i - from]))
            return kdcl_set_error(KDCL_ERR_NUMERIC,
                                  "training diverged: the loss became %s at epoch %zu, step %zu "
                                  "(lower the learning rate or add max-norm)",
                                  isnan(host[i - from]) ? "NaN" : "Inf", epoch, i + 1);
        *sum += host[i - from];
    }
    return KDCL_OK;
}

/* Data-parallel step: the gradient of this rank's `mine` of the batch's
 * `count` rows, averaged over its rows by the loss, becomes the average over
 * the whole batch once scaled by mine / count and summed over the ranks. */
static kdcl_status allreduce_grads(kdcl_model *m, float *host, size_t mine, size_t count)
{
    kdcl_ctx *ctx = kdcl_model_ctx(m);
    kdcl_tensor *g = kdcl_model_grads(m);
    /* the blocking read waits for this rank's device to finish the step's
     * forward and backward: the host's only wait on the device in a step */
    kdcl_status s = kdcl_tensor_download(ctx, g, 0, g->numel, host);
    if (s) return s;
    const float scale = (float)mine / (float)count;
    if (mine != count)
        for (size_t i = 0; i < g->numel; i++) host[i] *= scale;
    /* one MPI_Allreduce (sum) of the flat buffer: the same result on every rank */
    if ((s = kdcl_dist_allreduce_f32(host, g->numel))) return s;
    return kdcl_tensor_upload(ctx, g, 0, g->numel, host);
}

/* After an epoch of data-parallel training: rank 0's BatchNorm running
 * statistics to every rank, then the ranks compare their parameters (a hash
 * of their bits). Ranks on the same kind of device make bit-identical
 * updates (the same summed gradient into the same update kernel); devices
 * that round differently (a CPU and a GPU contract a * b + c differently)
 * drift apart by rounding: then rank 0's parameters are copied to every
 * rank and rank 0 notes the largest relative difference in `log`. */
static kdcl_status sync_ranks(kdcl_model *m, float *host, size_t epoch, double *resync,
                              int *resync_rank)
{
    kdcl_ctx *ctx = kdcl_model_ctx(m);
    kdcl_status s;
    if (m->stats.buf && m->stats.numel) {
        if ((s = kdcl_tensor_download(ctx, &m->stats, 0, m->stats.numel, host)) ||
            (s = kdcl_dist_bcast(host, m->stats.numel * sizeof(float), 0)) ||
            (s = kdcl_tensor_upload(ctx, &m->stats, 0, m->stats.numel, host)))
            return s;
    }
    kdcl_tensor *p = kdcl_model_params(m);
    if ((s = kdcl_tensor_download(ctx, p, 0, p->numel, host))) return s;
    const int W = kdcl_dist_size(), rank = kdcl_dist_rank();
    uint64_t h = kdcl_hash64(KDCL_HASH64_INIT, host, p->numel * sizeof(float));
    uint64_t *all = malloc((size_t)W * sizeof *all);
    double *diff = calloc((size_t)W, sizeof *diff);
    float *ref = malloc(p->numel * sizeof *ref + 1);
    if (!all || !diff || !ref) {
        s = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        goto out;
    }
    if ((s = kdcl_dist_allgather(&h, sizeof h, all))) goto out;
    int same = 1;
    for (int r = 1; r < W; r++) same &= all[r] == all[0];
    if (same) goto out;
    /* rank 0's parameters to every rank, and how far each rank was from them */
    memcpy(ref, host, p->numel * sizeof *ref);
    if ((s = kdcl_dist_bcast(ref, p->numel * sizeof *ref, 0))) goto out;
    double num = 0, den = 0;
    for (size_t i = 0; i < p->numel; i++) {
        const double d = (double)host[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    diff[rank] = den > 0 ? sqrt(num / den) : sqrt(num);
    if ((s = kdcl_dist_allreduce_f64(diff, (size_t)W))) goto out;
    if (!isfinite(diff[rank])) {
        s = kdcl_set_error(KDCL_ERR_NUMERIC, "data-parallel training: the parameters of rank %d "
                                             "are not finite after epoch %zu",
                           rank, epoch);
        goto out;
    }
    if ((s = kdcl_tensor_upload(ctx, p, 0, p->numel, ref))) goto out;
    if (rank == 0) {
        int worst = 1;
        for (int r = 2; r < W; r++)
            if (diff[r] > diff[worst]) worst = r;
        *resync = diff[worst];
        *resync_rank = worst;
    }
out:
    free(all);
    free(diff);
    free(ref);
    return s;
}

/* Data-parallel: agree on a failed loss check; the lowest rank that failed
 * returns its error, the others wait for it to end the job. */
static kdcl_status agree_losses(kdcl_status s, int dp)
{
    if (!dp) return s;
    int first;
    kdcl_dist_agree(s ? 1 : 0, &first);
    if (first >= 0 && first != kdcl_dist_rank()) kdcl_dist_wait_abort(1, 120);
    return s;
}

kdcl_status kdcl_train(kdcl_model *m, const kdcl_dataset *ds, const kdcl_train_opts *o,
                       kdcl_loss_fn loss_fn, void *loss_user, kdcl_epoch_stats *last)
{
    kdcl_ctx *ctx = kdcl_model_ctx(m);
    kdcl_status s;
    if ((s = check_opts(m, ds, o))) return s;
    const size_t N = o->sample ? o->epoch_n : ds->n; /* examples per epoch */
    kdcl_optim *opt = o->optim;
    if (!opt) {
        kdcl_optim_opts oo = kdcl_train_optim_opts(o);
        if ((s = kdcl_optim_create(m, &oo, &opt))) return s;
    }
    const kdcl_schedule sched = kdcl_train_schedule(o);
    if (!loss_fn) loss_fn = xent_loss;

    const size_t steps = (N + o->batch - 1) / o->batch;
    const int dp = o->data_parallel && kdcl_dist_size() > 1;
    const int rank = dp ? kdcl_dist_rank() : 0, W = dp ? kdcl_dist_size() : 1;
    const int writer = rank == 0; /* data-parallel: rank 0 writes the state */
    float *ghost = NULL;          /* host copy of the gradients (data-parallel) */
    kdcl_batcher b;
    kdcl_tensor loss = {0}, loss_acc = {0}, err_acc = {0};
    float *host = malloc(steps * sizeof *host);
    size_t *order = o->sample ? malloc(N * sizeof *order) : NULL;
    FILE *metrics = NULL;
    kdcl_tstate ts;
    size_t *saved_order = NULL, n_saved = 0, order_epoch = 0, *check = NULL;
    size_t first_epoch = 1, first_step = 0;
    memset(&b, 0, sizeof b);
    memset(&ts, 0, sizeof ts);
    if (dp) {
        size_t gn = kdcl_model_grads(m)->numel, sn = m->stats.numel, pn = kdcl_model_params(m)->numel;
        ghost = malloc((gn > sn ? (gn > pn ? gn : pn) : (sn > pn ? sn : pn)) * sizeof *ghost + 1);
    }
    if (!host || (o->sample && !order) || (dp && !ghost)) {
        s = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        goto done;
    }
    if ((s = kdcl__batcher_init(ctx, ds, o->batch, &b))) goto done;
    size_t n1[1] = {o->batch}, ns[1] = {steps}, one[1] = {1};
    if ((s = kdcl_tensor_alloc(ctx, &loss, KDCL_F32, 1, n1)) ||
        (s = kdcl_tensor_alloc(ctx, &loss_acc, KDCL_F32, 1, ns)) ||
        (s = kdcl_tensor_alloc(ctx, &err_acc, KDCL_I32, 1, one)))
        goto done;
    if (o->resume && !o->state_path) {
        s = kdcl_set_error(KDCL_ERR_INVALID_ARG, "resuming needs the training state's path");
        goto done;
    }
    if (o->state_path) {
        if ((s = kdcl_tstate_init(&ts, m, ds, o, N, steps))) goto done;
        if (o->resume) {
            if ((s = kdcl_tstate_resume(&ts, o->state_path, m, opt, &saved_order, &n_saved,
                                        &order_epoch)))
                goto done;
            /* the order saved for that epoch must be the one this run draws */
            if (order_epoch > 0) {
                if (!(check = malloc(N * sizeof *check))) {
                    s = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
                    goto done;
                }
                if (o->sample) {
                    if ((s = o->sample(o->sample_user, order_epoch, check, N))) goto done;
                } else {
                    kdcl_shuffle_indices(check, N, o->seed, order_epoch);
                }
                if (n_saved != N || memcmp(check, saved_order, N * sizeof *check)) {
                    s = kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                       "cannot resume from %s: the example order of epoch %zu "
                                       "differs from the run's (the data or the sampling changed)",
                                       o->state_path, order_epoch);
                    goto done;
                }
            }
            first_epoch = ts.epoch + 1;
            first_step = ts.step;
            if (dp && rank != 0) {
                /* the saved partial sums are the whole batch's: rank 0 carries them */
                ts.loss_sum = 0;
                ts.errors = 0;
            }
            if (last && ts.epoch > 0) *last = ts.last;
        }
    }
    if (o->metrics_path &&
        (!(metrics = fopen(o->metrics_path, "w")) ||
         (ts.metrics_len && fputs(ts.metrics, metrics) < 0) || fflush(metrics))) {
        s = kdcl_set_error(KDCL_ERR_IO, "cannot write metrics file %s", o->metrics_path);
        goto done;
    }
    for (size_t epoch = first_epoch; epoch <= o->epochs; epoch++) {
        const int resumed = epoch == first_epoch && first_step > 0;
        double t0 = kdcl_now_seconds();
        const float mom = (float)kdcl_schedule_momentum(&sched, epoch - 1);
        float lr = (float)kdcl_schedule_lr(&sched, epoch - 1, 0, steps);
        int32_t zero = resumed ? ts.errors : 0;
        if (o->sample) {
            if ((s = o->sample(o->sample_user, epoch, order, N)) ||
                (s = kdcl_batcher_set_order(&b, order, N)))
                goto done;
        } else if ((s = kdcl_batcher_epoch(&b, 1, o->seed, epoch))) {
            goto done;
        }
        if (
            (s = kdcl_tensor_fill(ctx, &loss_acc, 0.0f)) ||
            (s = kdcl_tensor_upload(ctx, &err_acc, 0, 1, &zero)))
            goto done;
        double loss_sum = resumed ? ts.loss_sum : 0;
        size_t checked = resumed ? first_step : 0;
        for (size_t step = checked; step < steps; step++) {
            size_t start = step * o->batch, count = N - start < o->batch ? N - start : o->batch;
            uint64_t gstep = (uint64_t)(epoch - 1) * steps + step;
            if (sched.kind != KDCL_SCHED_EXP || sched.warmup_epochs)
                lr = (float)kdcl_schedule_lr(&sched, epoch - 1, step, steps);
            /* data-parallel: this rank's share [lo, hi) of the global batch,
             * with dropout and jitter drawn from a step number of its own */
            size_t lo = 0, hi = count;
            uint64_t rstep = gstep;
            if (dp) {
                kdcl_dist_share(count, rank, W, &lo, &hi);
                rstep = gstep * (uint64_t)W + (uint64_t)rank;
            }
            const size_t mine = hi - lo;
            if (mine == 0) {
                /* fewer rows than ranks: this rank adds a zero gradient */
                if ((s = kdcl_tensor_fill(ctx, kdcl_model_grads(m), 0.0f))) goto done;
            } else if ((s = enqueue_step(m, &b, o, loss_fn, loss_user, start + lo, mine, rstep,
                                         &loss, &loss_acc, step, &err_acc))) {
                goto done;
            }
            if ((dp && (s = allreduce_grads(m, ghost, mine, count))) ||
                (s = kdcl_prof_scope(ctx, KDCL_PROF_PHASES, "optimizer")) ||
                (s = kdcl_optim_step(opt, lr, mom)))
                goto done;
            if ((step + 1) % SYNC_STEPS == 0 || step + 1 == steps) {
                s = check_losses(ctx, &loss_acc, checked, step + 1, epoch, host, &loss_sum);
                if ((s = agree_losses(s, dp))) goto done;
                checked = step + 1;
                if (o->on_progress) {
                    double el = kdcl_now_seconds() - t0;
                    double done_n = (double)(start + count);
                    double rate = done_n / (el > 0 ? el : 1e-9);
                    kdcl_progress pr = {o->tag,
                                        epoch,
                                        o->epochs,
                                        start + count,
                                        N,
                                        rate,
                                        ((double)(o->epochs - epoch) * (double)N + (double)N -
                                         done_n) / rate};
                    o->on_progress(o->on_progress_user, &pr);
                }
            }
            if (o->state_path && o->state_every && (step + 1) % o->state_every == 0 &&
                step + 1 < steps) {
                /* a state within the epoch: its losses so far checked and summed */
                int32_t errs = 0;
                s = check_losses(ctx, &loss_acc, checked, step + 1, epoch, host, &loss_sum);
                if ((s = agree_losses(s, dp)) ||
                    (s = kdcl_tensor_download(ctx, &err_acc, 0, 1, &errs)))
                    goto done;
                checked = step + 1;
                double sums[2] = {loss_sum, (double)errs}; /* the whole batch's */
                if (dp && (s = kdcl_dist_allreduce_f64(sums, 2))) goto done;
                ts.epoch = epoch - 1;
                ts.step = step + 1;
                ts.loss_sum = sums[0];
                ts.errors = (int32_t)sums[1];
                if (writer && (s = kdcl_tstate_write(&ts, o->state_path, m, opt, b.order,
                                                     b.n_order, epoch)))
                    goto done;
            }
        }
        int32_t errs = 0;
        double resync = 0;
        int resync_rank = 0;
        if ((s = kdcl_tensor_download(ctx, &err_acc, 0, 1, &errs))) goto done;
        if (dp) {
            double sums[2] = {loss_sum, (double)errs};
            if ((s = kdcl_dist_allreduce_f64(sums, 2)) || (s = sync_ranks(m, ghost, epoch, &resync, &resync_rank)))
                goto done;
            loss_sum = sums[0];
            errs = (int32_t)sums[1];
        }
        double secs = kdcl_now_seconds() - t0;
        /* a resumed epoch's rate counts the examples this run processed */
        const size_t done_n = resumed ? N - first_step * o->batch : N;
        kdcl_epoch_stats st = {epoch, loss_sum / (double)N, (double)errs / (double)N,
                               NAN, NAN, 0, lr, mom, secs, (double)done_n / secs,
                               o->epochs, o->tag, resync, resync_rank};
        if (o->val && writer) {
            kdcl_eval_result r;
            if ((s = kdcl_evaluate(m, o->val, 0, &r))) goto done;
            st.val_loss = r.loss;
            st.val_error = (double)r.errors / (double)r.n;
            st.val_errors = r.errors;
            kdcl_eval_result_free(&r);
        }
        char line[2048];
        int len = snprintf(line, sizeof line,
                           "{\"epoch\": %zu, \"loss\": %.6g, \"train_error\": %.6g, "
                           "\"lr\": %.6g, \"momentum\": %.4g, \"seconds\": %.3f, "
                           "\"samples_per_s\": %.1f",
                           epoch, st.train_loss, st.train_error, st.lr, st.momentum, st.seconds,
                           st.samples_per_s);
        if (o->val && writer && len > 0 && (size_t)len < sizeof line)
            len += snprintf(line + len, sizeof line - (size_t)len,
                            ", \"val_loss\": %.6g, \"val_error\": %.6g, \"val_errors\": %zu",
                            st.val_loss, st.val_error, st.val_errors);
        if (o->metrics_extra && len > 0 && (size_t)len < sizeof line)
            len += snprintf(line + len, sizeof line - (size_t)len, ", %s", o->metrics_extra);
        if (len > 0 && (size_t)len < sizeof line)
            snprintf(line + len, sizeof line - (size_t)len, "}\n");
        if (metrics && (fputs(line, metrics) < 0 || fflush(metrics))) {
            s = kdcl_set_error(KDCL_ERR_IO, "cannot write metrics file %s", o->metrics_path);
            goto done;
        }
        if (last) *last = st;
        if (o->state_path) {
            ts.epoch = epoch;
            ts.step = 0;
            ts.loss_sum = 0;
            ts.errors = 0;
            ts.last = st;
            if ((s = kdcl_tstate_add_metrics(&ts, line)) ||
                (writer &&
                 (s = kdcl_tstate_write(&ts, o->state_path, m, opt, b.order, b.n_order, epoch))))
                goto done;
        }
        {
            /* the caller may stop here; data-parallel: rank 0's word for every rank (a rank
             * without a callback, one that prints nothing, still takes part) */
            int32_t stop = o->on_epoch ? o->on_epoch(o->on_epoch_user, &st) != 0 : 0;
            if (dp && (s = kdcl_dist_bcast(&stop, sizeof stop, 0))) goto done;
            if (stop) break;
        }
    }
done:
    if (metrics) fclose(metrics);
    kdcl_tstate_free(&ts);
    free(saved_order);
    free(check);
    kdcl_tensor_free(ctx, &loss);
    kdcl_tensor_free(ctx, &loss_acc);
    kdcl_tensor_free(ctx, &err_acc);
    kdcl__batcher_release(&b);
    free(host);
    free(ghost);
    free(order);
    if (opt != o->optim) kdcl_optim_destroy(opt);
    return s;
}

void kdcl_eval_result_free(kdcl_eval_result *r)
{
    free(r->confusion);
    memset(r, 0, sizeof *r);
}

kdcl_status kdcl_eval_loop(kdcl_ctx *ctx, const kdcl_dataset *ds, size_t max_batch, size_t K,
                           int want_confusion, kdcl_eval_logits_fn logits_fn, void *user,
                           kdcl_eval_result *r)
{
    kdcl_batcher b;
    kdcl_tensor loss = {0}, loss_acc = {0}, err_acc = {0}, conf = {0};
    kdcl_status s = kdcl__batcher_init(ctx, ds, max_batch, &b);
    if (s) return s;
    const size_t B = b.max_batch, steps = (ds->n + B - 1) / B;
    size_t n1[1] = {B}, ns[1] = {steps}, one[1] = {1}, kk[1] = {K * K};
    int32_t zero = 0;
    float *host = malloc(steps * sizeof *host);
    if (!host) {
        s = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        goto done;
    }
    if ((s = kdcl_tensor_alloc(ctx, &loss, KDCL_F32, 1, n1)) ||
        (s = kdcl_tensor_alloc(ctx, &loss_acc, KDCL_F32, 1, ns)) ||
        (s = kdcl_tensor_alloc(ctx, &err_acc, KDCL_I32, 1, one)) ||
        (s = kdcl_tensor_fill(ctx, &loss_acc, 0.0f)) ||
        (s = kdcl_tensor_upload(ctx, &err_acc, 0, 1, &zero)))
        goto done;
    if (want_confusion) {
        if ((s = kdcl_tensor_alloc(ctx, &conf, KDCL_I32, 1, kk))) goto done;
        int32_t *z = calloc(K * K, sizeof *z);
        if (!z) {
            s = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
            goto done;
        }
        s = kdcl_tensor_upload(ctx, &conf, 0, K * K, z);
        free(z);
        if (s) goto done;
    }
    for (size_t step = 0; step < steps; step++) {
        size_t start = step * B, count = ds->n - start < B ? ds->n - start : B;
        size_t ls[1] = {count};
        kdcl_tensor *logits = NULL;
        if ((s = kdcl_batcher_load(&b, start, count)) ||
            (s = logits_fn(user, &b, count, &logits)) ||
            (s = kdcl_tensor_reshape(&loss, 1, ls)) ||
            (s = kdcl_op_softmax_xent(ctx, logits, &b.batch_labels[b.cur], &loss, NULL, 1.0f,
                                      &err_acc)) ||
            (s = kdcl_op_reduce_add(ctx, &loss, count, &loss_acc, step)) ||
            (want_confusion &&
             (s = kdcl_op_confusion(ctx, logits, &b.batch_labels[b.cur], &conf))))
            goto done;
    }
    int32_t errs = 0;
    if ((s = kdcl_tensor_download(ctx, &err_acc, 0, 1, &errs)) ||
        (s = kdcl_tensor_download(ctx, &loss_acc, 0, steps, host)))
        goto done;
    double sum = 0;
    for (size_t i = 0; i < steps; i++) sum += host[i];
    if (!isfinite(sum)) {
        /* finite weights can still overflow (huge values, an extreme input
         * transform): refuse rather than report a NaN loss */
        s = kdcl_set_error(KDCL_ERR_NUMERIC,
                           "evaluation: the loss over %zu examples is %s: the model's outputs "
                           "are not finite (weights or input normalisation out of range)",
                           ds->n, isnan(sum) ? "NaN" : "Inf");
        goto done;
    }
    r->n = ds->n;
    r->errors = (size_t)errs;
    r->loss = sum / (double)ds->n;
    r->n_classes = K;
    if (want_confusion) {
        r->confusion = malloc(K * K * sizeof *r->confusion);
        if (!r->confusion) {
            s = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
            goto done;
        }
        if ((s = kdcl_tensor_download(ctx, &conf, 0, K * K, r->confusion))) goto done;
    }
done:
    if (s) kdcl_eval_result_free(r);
    free(host);
    kdcl_tensor_free(ctx, &loss);
    kdcl_tensor_free(ctx, &loss_acc);
    kdcl_tensor_free(ctx, &err_acc);
    kdcl_tensor_free(ctx, &conf);
    kdcl__batcher_release(&b);
    return s;
}

static kdcl_status model_eval_logits(void *user, const kdcl_batcher *b, size_t count,
                                     kdcl_tensor **logits)
{
    kdcl_model *m = user;
    kdcl_status s = kdcl_model_forward_u8(m, &b->batch_u8[b->cur], count);
    if (s) return s;
    *logits = kdcl_model_logits(m);
    return KDCL_OK;
}

kdcl_status kdcl_evaluate(kdcl_model *m, const kdcl_dataset *ds, int want_confusion,
                          kdcl_eval_result *r)
{
    memset(r, 0, sizeof *r);
    kdcl_status s = kdcl_check_fit(m, ds, "evaluate");
    if (s) return s;
    return kdcl_eval_loop(kdcl_model_ctx(m), ds, kdcl_model_max_batch(m), kdcl_model_classes(m),
                          want_confusion, model_eval_logits, m, r);
}

/* ---- one step at a time ---- */

struct kdcl_trainer {
    kdcl_model *m;
    const kdcl_dataset *ds;
    kdcl_train_opts o;
    kdcl_loss_fn loss_fn;
    void *loss_user;
    kdcl_optim *opt;
    int own_opt;
    kdcl_batcher b;
    int have_b;
    kdcl_tensor loss, loss_acc, err_acc;
    size_t n, steps; /* examples and steps per epoch */
    size_t epoch;    /* set by kdcl_trainer_epoch (0: none yet) */
};

kdcl_status kdcl_trainer_create(kdcl_model *m, const kdcl_dataset *ds, const kdcl_train_opts *o,
                                kdcl_loss_fn loss_fn, void *loss_user, kdcl_trainer **out)
{
    if (!out) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_trainer_create: out is NULL");
    *out = NULL;
    if (!m || !ds || !o)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_trainer_create: model, data and "
                                                    "options are required");
    if (o->sample)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "kdcl_trainer_create: custom sampling is kdcl_train's");
    kdcl_status s = check_opts(m, ds, o);
    if (s) return s;
    kdcl_trainer *t = calloc(1, sizeof *t);
    if (!t) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    kdcl_ctx *ctx = kdcl_model_ctx(m);
    t->m = m;
    t->ds = ds;
    t->o = *o;
    t->loss_fn = loss_fn ? loss_fn : xent_loss;
    t->loss_user = loss_user;
    t->n = ds->n;
    t->steps = (t->n + o->batch - 1) / o->batch;
    t->opt = o->optim;
    size_t n1[1] = {o->batch}, ns[1] = {t->steps}, one[1] = {1};
    if (!t->opt) {
        kdcl_optim_opts oo = kdcl_train_optim_opts(o);
        if ((s = kdcl_optim_create(m, &oo, &t->opt))) goto fail;
        t->own_opt = 1;
    }
    if ((s = kdcl__batcher_init(ctx, ds, o->batch, &t->b))) goto fail;
    t->have_b = 1;
    if ((s = kdcl_tensor_alloc(ctx, &t->loss, KDCL_F32, 1, n1)) ||
        (s = kdcl_tensor_alloc(ctx, &t->loss_acc, KDCL_F32, 1, ns)) ||
        (s = kdcl_tensor_alloc(ctx, &t->err_acc, KDCL_I32, 1, one)))
        goto fail;
    *out = t;
    return KDCL_OK;
fail:
    kdcl_trainer_destroy(t);
    return s;
}

kdcl_status kdcl_trainer_epoch(kdcl_trainer *t, size_t epoch)
{
    if (!t) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_trainer_epoch: no trainer");
    if (epoch == 0) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "epochs count from 1");
    kdcl_ctx *ctx = kdcl_model_ctx(t->m);
    const int32_t zero = 0;
    kdcl_status s;
    if ((s = kdcl_batcher_epoch(&t->b, 1, t->o.seed, epoch)) ||
        (s = kdcl_tensor_fill(ctx, &t->loss_acc, 0.0f)) ||
        (s = kdcl_tensor_upload(ctx, &t->err_acc, 0, 1, &zero)))
        return s;
    t->epoch = epoch;
    return KDCL_OK;
}

size_t kdcl_trainer_steps(const kdcl_trainer *t) { return t ? t->steps : 0; }

int kdcl_trainer_resident(const kdcl_trainer *t) { return t && t->b.resident; }

kdcl_status kdcl_trainer_step(kdcl_trainer *t, size_t step, float lr, float momentum)
{
    if (!t) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_trainer_step: no trainer");
    if (t->epoch == 0)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_trainer_step before kdcl_trainer_epoch");
    if (step >= t->steps)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "step %zu of an epoch of %zu steps", step,
                              t->steps);
    if (!(lr > 0) || !isfinite(lr) || !isfinite(momentum))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "learning rate %g, momentum %g", (double)lr,
                              (double)momentum);
    const size_t B = t->o.batch, start = step * B;
    const size_t count = t->n - start < B ? t->n - start : B;
    const uint64_t gstep = (uint64_t)(t->epoch - 1) * t->steps + step;
    kdcl_status s = enqueue_step(t->m, &t->b, &t->o, t->loss_fn, t->loss_user, start, count, gstep,
                                 &t->loss, &t->loss_acc, step, &t->err_acc);
    if (!s) s = kdcl_prof_scope(kdcl_model_ctx(t->m), KDCL_PROF_PHASES, "optimizer");
    if (!s) s = kdcl_optim_step(t->opt, lr, momentum);
    return s;
}

kdcl_status kdcl_trainer_stats(kdcl_trainer *t, double *loss, double *error)
{
    if (!t || t->epoch == 0)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_trainer_stats: no epoch started");
    kdcl_ctx *ctx = kdcl_model_ctx(t->m);
    int32_t errs = 0;
    float *host = malloc(t->steps * sizeof *host);
    if (!host) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    kdcl_status s = kdcl_tensor_download(ctx, &t->err_acc, 0, 1, &errs);
    if (!s) s = kdcl_tensor_download(ctx, &t->loss_acc, 0, t->steps, host);
    double sum = 0;
    for (size_t i = 0; !s && i < t->steps; i++) sum += host[i];
    free(host);
    if (s) return s;
    if (loss) *loss = sum / (double)t->n;
    if (error) *error = (double)errs / (double)t->n;
    return KDCL_OK;
}

void kdcl_trainer_destroy(kdcl_trainer *t)
{
    if (!t) return;
    kdcl_ctx *ctx = kdcl_model_ctx(t->m);
    kdcl_tensor_free(ctx, &t->loss);
    kdcl_tensor_free(ctx, &t->loss_acc);
    kdcl_tensor_free(ctx, &t->err_acc);
    if (t->have_b) kdcl__batcher_release(&t->b);
    if (t->own_opt) kdcl_optim_destroy(t->opt);
    free(t);
}
