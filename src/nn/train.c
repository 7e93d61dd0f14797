/* The training loop and test-mode evaluation. The host enqueues whole steps
 * and synchronises only every SYNC_STEPS steps (to bound the queue, update
 * the progress bar and check the per-step losses for NaN/Inf). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kdcl/loss.h"
#include "kdcl/ops.h"
#include "kdcl/train.h"
#include "nn/eval_internal.h"
#include "runtime/ctx.h"

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
    o->norm = KDCL_NORM_DEFAULT;
    o->tag = "train";
}

static kdcl_status check_fit(const kdcl_mlp *m, const kdcl_dataset *ds, const char *what)
{
    if (ds->dim != m->arch.sizes[0])
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "%s: the model takes %zu inputs but the examples have %zu "
                              "(%zux%zux%zu)",
                              what, m->arch.sizes[0], ds->dim, ds->h, ds->w, ds->c);
    if (ds->n_classes > m->arch.sizes[m->arch.n_layers])
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "%s: the model has %zu outputs but the data has %zu classes", what,
                              m->arch.sizes[m->arch.n_layers], ds->n_classes);
    return KDCL_OK;
}

/* Default loss: cross-entropy with the hard labels. */
static kdcl_status xent_loss(void *user, kdcl_mlp *m, const kdcl_batcher *b, size_t start,
                             size_t count, uint64_t step, const kdcl_tensor *labels,
                             kdcl_tensor *loss, kdcl_tensor *errors)
{
    (void)user;
    (void)b;
    (void)start;
    (void)step;
    const size_t L = m->arch.n_layers;
    return kdcl_op_softmax_xent(m->ctx, &m->act[L], labels, loss, &m->dact[L],
                                1.0f / (float)count, errors);
}

static void progress_bar(const char *tag, size_t epoch, size_t epochs, size_t done, size_t total,
                         double rate, double eta)
{
    int width = 30, fill = total ? (int)((double)width * (double)done / (double)total) : width;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\r%s epoch %zu/%zu [%s] %zu/%zu  %.0f samples/s  ETA %.0fs   ", tag, epoch,
            epochs, bar, done, total, rate, eta);
    fflush(stderr);
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

kdcl_status kdcl_train(kdcl_mlp *m, const kdcl_dataset *ds, const kdcl_train_opts *o,
                       kdcl_loss_fn loss_fn, void *loss_user, kdcl_epoch_stats *last)
{
    kdcl_ctx *ctx = m->ctx;
    kdcl_status s;
    if (o->batch == 0) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "batch size must be >= 1");
    if (o->sample && o->epoch_n == 0)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "a custom sampler needs epoch_n >= 1");
    const size_t N = o->sample ? o->epoch_n : ds->n; /* examples per epoch */
    if (o->batch > N)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "batch size %zu is larger than the %zu training examples", o->batch,
                              N);
    if (o->batch > m->max_batch)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "batch size %zu above the model's maximum %zu",
                              o->batch, m->max_batch);
    if (!(o->lr > 0) || !isfinite(o->lr))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "learning rate must be positive");
    if (o->drop_in < 0 || o->drop_in >= 1 || o->drop_hidden < 0 || o->drop_hidden >= 1)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "dropout rates must be in [0, 1)");
    if (o->jitter < 0 || (o->jitter > 0 && (ds->h < 2 || ds->w < 2)))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "jitter needs image data and a shift >= 0");
    if ((s = check_fit(m, ds, "train"))) return s;
    if (o->val && (s = check_fit(m, o->val, "validation"))) return s;
    if (!loss_fn) loss_fn = xent_loss;

    const size_t steps = (N + o->batch - 1) / o->batch;
    kdcl_batcher b;
    kdcl_tensor loss = {0}, loss_acc = {0}, err_acc = {0};
    float *host = malloc(steps * sizeof *host);
    size_t *order = o->sample ? malloc(N * sizeof *order) : NULL;
    FILE *metrics = NULL;
    if (!host || (o->sample && !order)) {
        free(host);
        free(order);
        return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    }
    if ((s = kdcl_batcher_create(ctx, ds, o->batch, &b))) {
        free(host);
        free(order);
        return s;
    }
    size_t n1[1] = {o->batch}, ns[1] = {steps}, one[1] = {1};
    if ((s = kdcl_tensor_alloc(ctx, &loss, KDCL_F32, 1, n1)) ||
        (s = kdcl_tensor_alloc(ctx, &loss_acc, KDCL_F32, 1, ns)) ||
        (s = kdcl_tensor_alloc(ctx, &err_acc, KDCL_I32, 1, one)))
        goto done;
    if (o->metrics_path && !(metrics = fopen(o->metrics_path, "w"))) {
        s = kdcl_set_error(KDCL_ERR_IO, "cannot write metrics file %s", o->metrics_path);
        goto done;
    }
    m->drop_in = o->drop_in;
    m->drop_hidden = o->drop_hidden;
    int tty = o->progress && isatty(2);
    float lr = o->lr;
    for (size_t epoch = 1; epoch <= o->epochs; epoch++) {
        double t0 = kdcl_now_seconds();
        float mom = o->momentum1;
        if (o->momentum_epochs > 0 && epoch - 1 < o->momentum_epochs)
            mom = o->momentum0 + (o->momentum1 - o->momentum0) * (float)(epoch - 1) /
                                     (float)o->momentum_epochs;
        int32_t zero = 0;
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
        double loss_sum = 0;
        size_t checked = 0;
        for (size_t step = 0; step < steps; step++) {
            size_t start = step * o->batch, count = N - start < o->batch ? N - start : o->batch;
            uint64_t gstep = (uint64_t)(epoch - 1) * steps + step;
            size_t ls[1] = {count};
            if ((s = kdcl_batcher_load(&b, start, count)) || (s = kdcl_mlp_set_batch(m, count)) ||
                (s = kdcl_tensor_reshape(&loss, 1, ls)) ||
                (s = kdcl_op_jitter(ctx, &b.batch_u8[b.cur], &m->act[0], count, ds->h, ds->w,
                                    ds->c, o->jitter, o->seed, gstep, o->norm.scale,
                                    o->norm.shift)) ||
                (s = kdcl_mlp_forward(m, 1, o->seed, gstep)) ||
                (s = loss_fn(loss_user, m, &b, start, count, gstep, &b.batch_labels[b.cur], &loss,
                             &err_acc)) ||
                (s = kdcl_op_reduce_add(ctx, &loss, count, &loss_acc, step)) ||
                (s = kdcl_mlp_backward(m)) ||
                (s = kdcl_mlp_sgd(m, lr, mom, o->weight_decay, o->max_norm)))
                goto done;
            if ((step + 1) % SYNC_STEPS == 0 || step + 1 == steps) {
                if ((s = check_losses(ctx, &loss_acc, checked, step + 1, epoch, host, &loss_sum)))
                    goto done;
                checked = step + 1;
                if (tty) {
                    double el = kdcl_now_seconds() - t0;
                    double done_n = (double)(start + count);
                    double rate = done_n / (el > 0 ? el : 1e-9);
                    double eta = ((double)(o->epochs - epoch) * (double)N +
                                  (double)N - done_n) / rate;
                    progress_bar(o->tag, epoch, o->epochs, start + count, N, rate, eta);
                }
            }
        }
        int32_t errs = 0;
        if ((s = kdcl_tensor_download(ctx, &err_acc, 0, 1, &errs))) goto done;
        double secs = kdcl_now_seconds() - t0;
        kdcl_epoch_stats st = {epoch, loss_sum / (double)N, (double)errs / (double)N,
                               NAN, NAN, 0, lr, mom, secs, (double)N / secs};
        if (o->val) {
            kdcl_eval_result r;
            if ((s = kdcl_evaluate(m, o->val, o->norm, 0, &r))) goto done;
            st.val_loss = r.loss;
            st.val_error = (double)r.errors / (double)r.n;
            st.val_errors = r.errors;
            kdcl_eval_result_free(&r);
        }
        if (tty) fprintf(stderr, "\r%*s\r", 100, "");
        if (o->log) {
            fprintf(o->log, "%s epoch %3zu/%zu  loss %.4f  train err %.2f%%", o->tag, epoch,
                    o->epochs, st.train_loss, 100 * st.train_error);
            if (o->val)
                fprintf(o->log, "  val loss %.4f  val err %.2f%% (%zu)", st.val_loss,
                        100 * st.val_error, st.val_errors);
            fprintf(o->log, "  lr %.4g  mom %.3f  %.1fs  %.0f samples/s\n", st.lr, st.momentum,
                    st.seconds, st.samples_per_s);
            fflush(o->log);
        }
        if (metrics) {
            fprintf(metrics,
                    "{\"epoch\": %zu, \"loss\": %.6g, \"train_error\": %.6g, \"lr\": %.6g, "
                    "\"momentum\": %.4g, \"seconds\": %.3f, \"samples_per_s\": %.1f",
                    epoch, st.train_loss, st.train_error, st.lr, st.momentum, st.seconds,
                    st.samples_per_s);
            if (o->val)
                fprintf(metrics, ", \"val_loss\": %.6g, \"val_error\": %.6g, \"val_errors\": %zu",
                        st.val_loss, st.val_error, st.val_errors);
            fprintf(metrics, "}\n");
            fflush(metrics);
        }
        if (last) *last = st;
        lr *= o->lr_decay;
    }
done:
    if (metrics) fclose(metrics);
    kdcl_tensor_free(ctx, &loss);
    kdcl_tensor_free(ctx, &loss_acc);
    kdcl_tensor_free(ctx, &err_acc);
    kdcl_batcher_destroy(&b);
    free(host);
    free(order);
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
    kdcl_status s = kdcl_batcher_create(ctx, ds, max_batch, &b);
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
    kdcl_batcher_destroy(&b);
    return s;
}

typedef struct {
    kdcl_mlp *m;
    kdcl_norm norm;
} mlp_eval;

kdcl_status kdcl_mlp_forward_u8(kdcl_mlp *m, const kdcl_tensor *u8, size_t count, kdcl_norm norm)
{
    kdcl_status s;
    if ((s = kdcl_mlp_set_batch(m, count)) ||
        (s = kdcl_op_u8_to_float(m->ctx, u8, &m->act[0], count * m->arch.sizes[0], norm.scale,
                                 norm.shift)))
        return s;
    return kdcl_mlp_forward(m, 0, 0, 0);
}

static kdcl_status mlp_eval_logits(void *user, const kdcl_batcher *b, size_t count,
                                   kdcl_tensor **logits)
{
    mlp_eval *me = user;
    kdcl_status s = kdcl_mlp_forward_u8(me->m, &b->batch_u8[b->cur], count, me->norm);
    if (s) return s;
    *logits = &me->m->act[me->m->arch.n_layers];
    return KDCL_OK;
}

kdcl_status kdcl_evaluate(kdcl_mlp *m, const kdcl_dataset *ds, kdcl_norm norm,
                          int want_confusion, kdcl_eval_result *r)
{
    memset(r, 0, sizeof *r);
    kdcl_status s = check_fit(m, ds, "evaluate");
    if (s) return s;
    mlp_eval me = {m, norm};
    return kdcl_eval_loop(m->ctx, ds, m->max_batch, m->arch.sizes[m->arch.n_layers],
                          want_confusion, mlp_eval_logits, &me, r);
}
