/* Teacher ensembles, soft targets and the distillation loop. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/batcher_internal.h"
#include "kdcl/distill.h"
#include "kdcl/loss.h"
#include "kdcl/ops.h"
#include "kdcl/safetensors.h"
#include "nn/eval_internal.h"
#include "kdcl/profile.h"
#include "runtime/ctx.h"
#include "kdcl/dist.h"

/* A set of models (kdcl/distill.h); kdcl_distill_models keeps one on its
 * stack over the caller's models. */
struct kdcl_ensemble {
    kdcl_ctx *ctx;
    size_t n;
    kdcl_model *m[KDCL_MAX_MEMBERS]; /* each with its own input transform */
    kdcl_ens_mode mode;
    size_t dim, classes, max_batch;
    kdcl_tensor out; /* F32 [max_batch, classes]: the last batch's combined output */
};

static void ensemble_release(kdcl_ensemble *e)
{
    for (size_t i = 0; i < e->n; i++) kdcl_model_destroy(e->m[i]);
    if (e->ctx) kdcl_tensor_free(e->ctx, &e->out);
    memset(e, 0, sizeof *e);
}

static kdcl_status ensemble_init(kdcl_ctx *ctx, const char *const *paths, size_t n,
                                 size_t max_batch, kdcl_ens_mode mode, kdcl_ensemble *e)
{
    memset(e, 0, sizeof *e);
    if (n == 0) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "an ensemble needs at least one model");
    if (n > KDCL_MAX_MEMBERS)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "at most %d ensemble members", KDCL_MAX_MEMBERS);
    e->ctx = ctx;
    e->mode = mode;
    e->max_batch = max_batch;
    kdcl_status s;
    for (size_t i = 0; i < n; i++) {
        if ((s = kdcl_model_load(ctx, paths[i], max_batch, &e->m[i], NULL))) goto fail;
        e->n = i + 1;
        size_t dim = kdcl_model_in_dim(e->m[i]), k = kdcl_model_classes(e->m[i]);
        if (i == 0) {
            e->dim = dim;
            e->classes = k;
        } else if (dim != e->dim || k != e->classes) {
            s = kdcl_set_error(KDCL_ERR_INVALID_ARG,
                               "ensemble members disagree: %s has %zu inputs and %zu classes, %s "
                               "has %zu and %zu",
                               paths[0], e->dim, e->classes, paths[i], dim, k);
            goto fail;
        }
    }
    if ((s = kdcl_tensor_alloc2(ctx, &e->out, KDCL_F32, max_batch, e->classes))) goto fail;
    return KDCL_OK;
fail:
    ensemble_release(e);
    return s;
}

kdcl_status kdcl_ensemble_load_fit(kdcl_ctx *ctx, const char *const *paths, size_t n,
                                   size_t max_batch, size_t min_batch, kdcl_ens_mode mode,
                                   kdcl_ensemble **out)
{
    if (!out) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_ensemble_load: out is NULL");
    *out = NULL;
    if (min_batch == 0 || min_batch > max_batch)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "ensemble batch range %zu..%zu: need 1 <= min <= max", min_batch,
                              max_batch);
    kdcl_ensemble *e = calloc(1, sizeof *e);
    if (!e) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    for (size_t b = max_batch;; b = b / 2 > min_batch ? b / 2 : min_batch) {
        kdcl_status s = ensemble_init(ctx, paths, n, b, mode, e);
        if (!s) {
            *out = e;
            return KDCL_OK;
        }
        if (s != KDCL_ERR_OOM || b == min_batch) {
            free(e);
            return s;
        }
    }
}

kdcl_status kdcl_ensemble_load(kdcl_ctx *ctx, const char *const *paths, size_t n,
                               size_t max_batch, kdcl_ens_mode mode, kdcl_ensemble **out)
{
    return kdcl_ensemble_load_fit(ctx, paths, n, max_batch, max_batch, mode, out);
}

void kdcl_ensemble_free(kdcl_ensemble *e)
{
    if (!e) return;
    ensemble_release(e);
    free(e);
}

size_t kdcl_ensemble_size(const kdcl_ensemble *e) { return e ? e->n : 0; }
size_t kdcl_ensemble_dim(const kdcl_ensemble *e) { return e ? e->dim : 0; }
size_t kdcl_ensemble_classes(const kdcl_ensemble *e) { return e ? e->classes : 0; }
size_t kdcl_ensemble_max_batch(const kdcl_ensemble *e) { return e ? e->max_batch : 0; }
kdcl_model *kdcl_ensemble_member(const kdcl_ensemble *e, size_t i)
{
    return e && i < e->n ? e->m[i] : NULL;
}
const kdcl_tensor *kdcl_ensemble_output(const kdcl_ensemble *e) { return e ? &e->out : NULL; }

kdcl_status kdcl_ensemble_forward(kdcl_ensemble *e, const kdcl_tensor *batch_u8, size_t count,
                                  size_t h, size_t w, size_t c, int jitter, int flip,
                                  uint64_t seed, uint64_t step, float T, int as_logits)
{
    kdcl_status s;
    size_t sh[2] = {count, e->classes};
    if ((s = kdcl_tensor_reshape(&e->out, 2, sh))) return s;
    /* logits are averaged raw (T = 1) when the caller wants logits; the
     * logit-mode ensemble averages v/T and takes one softmax at the end */
    kdcl_ens_mode acc_mode = as_logits ? KDCL_ENS_LOGIT : e->mode;
    float acc_T = as_logits ? 1.0f : T;
    for (size_t i = 0; i < e->n; i++) {
        kdcl_model *m = e->m[i];
        if ((s = kdcl_model_fit_input(m, c, h, w)) ||
            (s = kdcl_model_load_u8(m, batch_u8, count, jitter, flip, seed, step)) ||
            (s = kdcl_model_forward(m, 0, 0, 0)) ||
            (s = kdcl_op_ensemble_accumulate(e->ctx, acc_mode, kdcl_model_logits(m), acc_T,
                                             1.0f / (float)e->n, i ? 1.0f : 0.0f, &e->out)))
            return s;
    }
    if (!as_logits && e->mode == KDCL_ENS_LOGIT)
        return kdcl_op_softmax(e->ctx, &e->out, &e->out, 1.0f, 0);
    return KDCL_OK;
}

static kdcl_status log_inplace(kdcl_ctx *ctx, kdcl_tensor *x)
{
    cl_kernel k;
    kdcl_status s = kdcl_kernel_get(ctx, "batch", "log_inplace", &k);
    if (s) return s;
    cl_uint n = (cl_uint)x->numel;
    clSetKernelArg(k, 0, sizeof(cl_mem), &x->buf);
    clSetKernelArg(k, 1, sizeof n, &n);
    size_t g = x->numel;
    KDCL_CL_CHECK(clEnqueueNDRangeKernel(ctx->queue, k, 1, NULL, &g, NULL, 0, NULL, NULL),
                  "clEnqueueNDRangeKernel(log_inplace)");
    {
        kdcl_status ps_ = kdcl_prof_op(ctx, "log_inplace");
        if (ps_) return ps_;
    }
    return KDCL_OK;
}

typedef struct {
    kdcl_ensemble *e;
    const kdcl_dataset *ds;
} ensemble_eval;

/* The log of the combined probabilities: argmax and cross-entropy as for logits. */
static kdcl_status ensemble_eval_logits(void *user, const kdcl_batcher *b, size_t count,
                                        kdcl_tensor **logits)
{
    ensemble_eval *ev = user;
    kdcl_ensemble *e = ev->e;
    const kdcl_dataset *ds = ev->ds;
    kdcl_status s;
    if ((s = kdcl_ensemble_forward(e, &b->batch_u8[b->cur], count, ds->h, ds->w, ds->c, 0, 0, 0,
                                   0, 1.0f, 0)) ||
        (s = log_inplace(e->ctx, &e->out)))
        return s;
    *logits = &e->out;
    return KDCL_OK;
}

kdcl_status kdcl_ensemble_evaluate(kdcl_ensemble *e, const kdcl_dataset *ds, kdcl_eval_result *r)
{
    memset(r, 0, sizeof *r);
    kdcl_ctx *ctx = e->ctx;
    if (ds->dim != e->dim)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "the ensemble takes %zu inputs but the examples have %zu", e->dim,
                              ds->dim);
    if (ds->n_classes > e->classes)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "the ensemble has %zu outputs but the data has %zu classes",
                              e->classes, ds->n_classes);
    ensemble_eval ev = {e, ds};
    return kdcl_eval_loop(ctx, ds, e->max_batch, e->classes, 1, ensemble_eval_logits, &ev, r);
}

/* ---- the distillation loss hook ---- */

typedef struct {
    kdcl_ensemble *e;
    const kdcl_distill_opts *d;
    const kdcl_train_opts *o;
    const kdcl_dataset *ds;
    int targets_are_logits;
    kdcl_tensor cache;   /* F32 [n, classes] (cached path) */
    kdcl_tensor targets; /* F32 [batch, classes] (cached path) */
    int cached;
} distill_state;

static kdcl_status distill_loss(void *user, kdcl_model *m, const kdcl_batcher *b, size_t start,
                                size_t count, uint64_t step, const kdcl_tensor *labels,
                                kdcl_tensor *loss, kdcl_tensor *errors)
{
    distill_state *st = user;
    kdcl_ctx *ctx = kdcl_model_ctx(m);
    const size_t K = st->e->classes;
    const kdcl_tensor *targets;
    kdcl_status s;
    if (st->cached) {
        size_t sh[2] = {count, K};
        if ((s = kdcl_tensor_reshape(&st->targets, 2, sh))) return s;
        cl_kernel k;
        if ((s = kdcl_kernel_get(ctx, "batch", "gather_rows_f32", &k))) return s;
        cl_uint s0 = (cl_uint)start, dim = (cl_uint)K, rows = (cl_uint)count;
        clSetKernelArg(k, 0, sizeof(cl_mem), &st->cache.buf);
        clSetKernelArg(k, 1, sizeof(cl_mem), &b->perm.buf);
        clSetKernelArg(k, 2, sizeof s0, &s0);
        clSetKernelArg(k, 3, sizeof dim, &dim);
        clSetKernelArg(k, 4, sizeof rows, &rows);
        clSetKernelArg(k, 5, sizeof(cl_mem), &st->targets.buf);
        size_t g = count * K;
        KDCL_CL_CHECK(clEnqueueNDRangeKernel(ctx->queue, k, 1, NULL, &g, NULL, 0, NULL, NULL),
                      "clEnqueueNDRangeKernel(gather_rows_f32)");
        {
            kdcl_status ps_ = kdcl_prof_op(ctx, "gather_rows_f32");
            if (ps_) return ps_;
        }
        targets = &st->targets;
    } else {
        const kdcl_dataset *ds = st->ds;
        if ((s = kdcl_ensemble_forward(st->e, &b->batch_u8[b->cur], count, ds->h, ds->w, ds->c,
                                       st->o->jitter, st->o->flip, st->o->seed, step, st->d->T,
                                       st->targets_are_logits)))
            return s;
        targets = &st->e->out;
    }
    return kdcl_op_kd_loss(ctx, st->d->mode, kdcl_model_logits(m), targets,
                           st->targets_are_logits, labels, st->d->T, st->d->alpha, loss,
                           kdcl_model_dlogits(m), 1.0f / (float)count, errors);
}

kdcl_status kdcl_distill(kdcl_model *student, kdcl_ensemble *e, const kdcl_dataset *transfer,
                         const kdcl_train_opts *o, const kdcl_distill_opts *d,
                         kdcl_epoch_stats *last, kdcl_targets *used)
{
    kdcl_ctx *ctx = kdcl_model_ctx(student);
    if (kdcl_model_in_dim(student) != e->dim || kdcl_model_classes(student) != e->classes)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "the student (%zu inputs, %zu classes) does not match the teachers "
                              "(%zu inputs, %zu classes)",
                              kdcl_model_in_dim(student), kdcl_model_classes(student), e->dim,
                              e->classes);
    if (!(d->T > 0) || !isfinite(d->T))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "temperature must be positive, got %g",
                              (double)d->T);
    if (!(d->alpha >= 0 && d->alpha <= 1))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "alpha must be in [0, 1], got %g",
                              (double)d->alpha);
    if (o->batch > e->max_batch)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "batch %zu above the teachers' maximum batch %zu", o->batch,
                              e->max_batch);
    distill_state st = {e, d, o, transfer, 0, {0}, {0}, 0};
    st.targets_are_logits = d->mode == KDCL_KD_LOGITS || e->mode == KDCL_ENS_LOGIT;
    kdcl_targets mode = d->targets;
    if (mode == KDCL_TARGETS_AUTO)
        mode = o->jitter > 0 || o->flip ? KDCL_TARGETS_BATCH : KDCL_TARGETS_CACHED;
    if (mode == KDCL_TARGETS_AUTO && o->flip) mode = KDCL_TARGETS_BATCH;
    if (mode == KDCL_TARGETS_CACHED && (o->jitter > 0 || o->flip))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "cached soft targets cannot follow jittered inputs: use per-batch "
                              "targets with --jitter");
    kdcl_status s = KDCL_OK;
    if (mode == KDCL_TARGETS_CACHED) {
        /* teachers run once over the transfer set in dataset order; each step
         * gathers its rows through the batcher's device permutation */
        kdcl_batcher b;
        if ((s = kdcl__batcher_init(ctx, transfer, e->max_batch, &b))) return s;
        /* the cache is one [n, classes] buffer: where that exceeds the
         * device's largest buffer, the targets are computed per batch */
        const uint64_t cache_bytes = (uint64_t)transfer->n * e->classes * sizeof(float);
        if (!b.resident || cache_bytes > kdcl_ctx_device(ctx)->max_alloc) {
            mode = KDCL_TARGETS_BATCH; /* no device permutation to gather with, or no room */
        } else {
            size_t K = e->classes, B = b.max_batch;
            s = kdcl_tensor_alloc2(ctx, &st.cache, KDCL_F32, transfer->n, K);
            if (s == KDCL_ERR_OOM) {
                mode = KDCL_TARGETS_BATCH; /* the device is full: per batch instead */
                s = KDCL_OK;
                goto cached_done;
            }
            if (s || (s = kdcl_tensor_alloc2(ctx, &st.targets, KDCL_F32, o->batch, K)))
                goto cached_done;
            /* data-parallel: each rank computes its share of the rows, then
             * they are gathered so that every rank holds them all */
            const int dp = o->data_parallel && kdcl_dist_size() > 1;
            size_t lo = 0, hi = transfer->n;
            if (dp) kdcl_dist_share(transfer->n, kdcl_dist_rank(), kdcl_dist_size(), &lo, &hi);
            for (size_t start = lo; start < hi; start += B) {
                size_t count = hi - start < B ? hi - start : B;
                if ((s = kdcl_batcher_load(&b, start, count)) ||
                    (s = kdcl_ensemble_forward(e, &b.batch_u8[b.cur], count, transfer->h,
                                               transfer->w, transfer->c, 0, 0, 0, 0, d->T,
                                               st.targets_are_logits)))
                    goto cached_done;
                KDCL_CL_CHECK(clEnqueueCopyBuffer(ctx->queue, e->out.buf, st.cache.buf, 0,
                                                  start * K * sizeof(float),
                                                  count * K * sizeof(float), 0, NULL, NULL),
                              "clEnqueueCopyBuffer (soft targets)");
            }
            if (dp) {
                float *h = malloc(transfer->n * K * sizeof *h + 1);
                if (!h) {
                    s = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
                    goto cached_done;
                }
                if (hi > lo)
                    s = kdcl_tensor_download(ctx, &st.cache, lo * K, (hi - lo) * K, h + lo * K);
                if (!s) s = kdcl_dist_allgather_rows(h, transfer->n, K);
                if (!s) s = kdcl_tensor_upload(ctx, &st.cache, 0, transfer->n * K, h);
                free(h);
                if (s) goto cached_done;
            }
            st.cached = 1;
        }
    cached_done:
        kdcl__batcher_release(&b);
        if (s) goto done;
    }
    if (used) *used = mode;
    s = kdcl_train(student, transfer, o, distill_loss, &st, last);
done:
    kdcl_tensor_free(ctx, &st.cache);
    kdcl_tensor_free(ctx, &st.targets);
    return s;
}

kdcl_status kdcl_distill_models(kdcl_model *student, kdcl_model *const *teachers,
                                size_t n_teachers, int mode, const kdcl_dataset *transfer,
                                const kdcl_train_opts *o, const kdcl_distill_opts *d,
                                kdcl_epoch_stats *last)
{
    if (!student || !transfer || !o || (n_teachers && !teachers))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "distill: no student, data or options");
    if (n_teachers == 0 || n_teachers > KDCL_MAX_MEMBERS)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "distill: 1..%d teachers, got %zu",
                              KDCL_MAX_MEMBERS, n_teachers);
    if (mode != KDCL_ENS_PROB && mode != KDCL_ENS_LOGIT)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "distill: unknown ensemble mode %d", mode);
    kdcl_ctx *ctx = kdcl_model_ctx(student);
    kdcl_ensemble e;
    memset(&e, 0, sizeof e);
    e.ctx = ctx;
    e.mode = (kdcl_ens_mode)mode;
    for (size_t i = 0; i < n_teachers; i++) {
        kdcl_model *t = teachers[i];
        if (!t || t == student || kdcl_model_ctx(t) != ctx)
            return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                  "distill: teacher %zu is %s", i,
                                  !t ? "missing" : t == student ? "the student"
                                                                : "on another context");
        size_t dim = kdcl_model_in_dim(t), k = kdcl_model_classes(t), mb = kdcl_model_max_batch(t);
        if (i == 0) {
            e.dim = dim;
            e.classes = k;
            e.max_batch = mb;
        } else if (dim != e.dim || k != e.classes) {
            return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                  "distill: teacher 0 has %zu inputs and %zu classes, teacher %zu "
                                  "%zu and %zu",
                                  e.dim, e.classes, i, dim, k);
        }
        if (mb < e.max_batch) e.max_batch = mb;
        e.m[i] = t;
    }
    e.n = n_teachers;
    kdcl_distill_opts dd = {20.0f, 0.1f, KDCL_KD_KL, KDCL_TARGETS_AUTO};
    kdcl_status s = kdcl_tensor_alloc2(ctx, &e.out, KDCL_F32, e.max_batch, e.classes);
    if (!s) s = kdcl_distill(student, &e, transfer, o, d ? d : &dd, last, NULL);
    kdcl_tensor_free(ctx, &e.out); /* the teachers stay the caller's */
    return s;
}

kdcl_status kdcl_model_logits_all(kdcl_model *m, const kdcl_dataset *ds, float **out)
{
    *out = NULL;
    kdcl_status s = kdcl_check_fit(m, ds, "logits");
    if (s) return s;
    const size_t K = kdcl_model_classes(m);
    kdcl_batcher b;
    s = kdcl__batcher_init(kdcl_model_ctx(m), ds, kdcl_model_max_batch(m), &b);
    if (s) return s;
    float *h = malloc(ds->n * K * sizeof *h);
    if (!h) {
        kdcl__batcher_release(&b);
        return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    }
    for (size_t start = 0; start < ds->n && !s; start += b.max_batch) {
        size_t count = ds->n - start < b.max_batch ? ds->n - start : b.max_batch;
        if ((s = kdcl_batcher_load(&b, start, count)) ||
            (s = kdcl_model_forward_u8(m, &b.batch_u8[b.cur], count)))
            break;
        s = kdcl_tensor_download(kdcl_model_ctx(m), kdcl_model_logits(m), 0, count * K,
                                 h + start * K);
    }
    kdcl__batcher_release(&b);
    if (s) {
        free(h);
        return s;
    }
    *out = h;
    return KDCL_OK;
}

size_t kdcl_count_errors_with_offset(const float *logits, const int32_t *labels, size_t n,
                                     size_t k, const size_t *classes, size_t n_classes,
                                     float offset)
{
    size_t errors = 0;
    for (size_t i = 0; i < n; i++) {
        const float *z = logits + i * k;
        size_t best = 0;
        float bv = -INFINITY;
        for (size_t j = 0; j < k; j++) {
            float v = z[j];
            for (size_t c = 0; c < n_classes; c++)
                if (classes[c] == j) v += offset;
            if (v > bv) {
                bv = v;
                best = j;
            }
        }
        errors += (int32_t)best != labels[i];
    }
    return errors;
}

float kdcl_search_bias_offset(const float *logits, const int32_t *labels, size_t n, size_t k,
                              const size_t *classes, size_t n_classes, float lo, float hi,
                              float step, size_t *best_errors)
{
    float best = 0.0f;
    size_t be = kdcl_count_errors_with_offset(logits, labels, n, k, classes, n_classes, 0.0f);
    size_t steps = (size_t)floor((double)(hi - lo) / (double)step + 0.5);
    for (size_t i = 0; i <= steps; i++) {
        float off = lo + (float)i * step;
        size_t e = kdcl_count_errors_with_offset(logits, labels, n, k, classes, n_classes, off);
        if (e < be || (e == be && fabsf(off) < fabsf(best))) {
            be = e;
            best = off;
        }
    }
    if (best_errors) *best_errors = be;
    return best;
}
