/* Resumable training: the state of a run of kdcl_train in one safetensors
 * file, written atomically (temp file, fsync, rename) after every epoch and
 * every o->state_every steps.
 *
 * Tensors: "params", "stats" (the model's flat parameter and statistics
 * buffers, alignment gaps included), "optim.0" / "optim.1" (SGD velocity or
 * Adam's moments, same layout as "params"), "bn_batches" (I64: BatchNorm
 * num_batches_tracked counters), "order" (I64: the example order of epoch
 * kdcl.state.order_epoch). Metadata: "format", the progress
 * (kdcl.state.epoch/step/steps, the running loss sum and error count of the
 * epoch in progress, Adam's step count), "kdcl.state.metrics" (the JSONL
 * lines of the completed epochs), "kdcl.state.last" (the last epoch's
 * statistics), and "opt.<name>" for every option a resumed run must share.
 *
 * Nothing else is needed to continue bit for bit: the random streams of
 * shuffling, dropout and augmentation are counter-based, functions of (seed,
 * epoch) and (seed, global step); the learning rate and momentum are
 * functions of (epoch, step). */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdcl/runtime.h"
#include "kdcl/safetensors.h"
#include "nn/model_internal.h"
#include "nn/spec_internal.h"
#include "nn/train_state.h"

#define STATE_FORMAT "kdcl-train-state-1"

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static kdcl_status add_opt(kdcl_tstate *t, const char *key, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static kdcl_status add_opt_str(kdcl_tstate *t, const char *key, const char *val)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 32;
        char **k = realloc(t->keys, cap * sizeof *k);
        if (!k) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        t->keys = k;
        char **v = realloc(t->vals, cap * sizeof *v);
        if (!v) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        t->vals = v;
        t->cap = cap;
    }
    size_t kn = strlen(key) + 5;
    char *k = malloc(kn), *v = dup_str(val);
    if (!k || !v) {
        free(k);
        free(v);
        return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    }
    snprintf(k, kn, "opt.%s", key);
    t->keys[t->n] = k;
    t->vals[t->n++] = v;
    return KDCL_OK;
}

static kdcl_status add_opt(kdcl_tstate *t, const char *key, const char *fmt, ...)
{
    char v[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v, sizeof v, fmt, ap);
    va_end(ap);
    return add_opt_str(t, key, v);
}

/* The shortest decimal that reads back as the same float. */
static const char *ffmt(float x, char *buf, size_t n)
{
    for (int p = 6; p <= 9; p++) {
        snprintf(buf, n, "%.*g", p, (double)x);
        if (strtof(buf, NULL) == x) break;
    }
    return buf;
}

/* Examples, shape and a hash of images and labels: a resumed run must see
 * the same data. */
static kdcl_status add_data(kdcl_tstate *t, const char *key, const kdcl_dataset *ds)
{
    uint64_t h = KDCL_HASH64_INIT;
    h = kdcl_hash64(h, ds->images, ds->n * ds->dim);
    h = kdcl_hash64(h, ds->labels, ds->n * sizeof *ds->labels);
    return add_opt(t, key, "%zu examples of %zux%zux%zu, %zu classes, hash %016" PRIx64, ds->n,
                   ds->c, ds->h, ds->w, ds->n_classes, h);
}

kdcl_status kdcl_tstate_init(kdcl_tstate *t, kdcl_model *m, const kdcl_dataset *ds,
                             const kdcl_train_opts *o, size_t N, size_t steps)
{
    memset(t, 0, sizeof *t);
    t->steps = steps;
    const char *opt = o->optimizer == KDCL_OPT_SGD ? (o->nesterov ? "nesterov" : "sgd")
                      : o->optimizer == KDCL_OPT_ADAM ? "adam" : "adamw";
    const char *sched = o->schedule == KDCL_SCHED_EXP    ? "exp"
                        : o->schedule == KDCL_SCHED_STEP ? "step"
                                                         : "cosine";
    kdcl_status s = KDCL_OK;
    /* the caller's options first: they name what the user typed */
    for (size_t i = 0; !s && i < o->n_state; i++) {
        if (!o->state_keys[i] || !o->state_vals[i] || !o->state_keys[i][0])
            s = kdcl_set_error(KDCL_ERR_INVALID_ARG, "training state: an empty option name");
        else
            s = add_opt_str(t, o->state_keys[i], o->state_vals[i]);
    }
    if (s) {
        kdcl_tstate_free(t);
        return s;
    }
    char *model = kdcl_spec_to_json(&m->spec, m->in);
    if (!model) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    char f[12][24];
    (void)((s = add_opt_str(t, "arch", model)) ||
        (s = add_opt(t, "normalize", "%s,%s,%s,%s / %s,%s,%s,%s", ffmt(m->mean[0], f[0], 24),
                     ffmt(m->mean[1], f[1], 24), ffmt(m->mean[2], f[2], 24),
                     ffmt(m->mean[3], f[3], 24), ffmt(m->std[0], f[4], 24),
                     ffmt(m->std[1], f[5], 24), ffmt(m->std[2], f[6], 24),
                     ffmt(m->std[3], f[7], 24))) ||
        (s = add_data(t, "data", ds)) ||
        (s = add_opt(t, "epochs", "%zu", o->epochs)) || (s = add_opt(t, "batch", "%zu", o->batch)) ||
        (s = add_opt(t, "examples-per-epoch", "%zu", N)) ||
        (s = add_opt(t, "lr", "%s", ffmt(o->lr, f[0], 24))) ||
        (s = add_opt(t, "schedule", "%s, decay %s, step %zu x %s, minimum %s", sched,
                     ffmt(o->lr_decay, f[1], 24), o->step_epochs, ffmt(o->step_gamma, f[2], 24),
                     ffmt(o->lr_min, f[3], 24))) ||
        (s = add_opt(t, "warmup", "%zu", o->warmup_epochs)) ||
        (s = add_opt(t, "optimizer", "%s, betas %s %s, eps %s", opt, ffmt(o->beta1, f[4], 24),
                     ffmt(o->beta2, f[5], 24), ffmt(o->adam_eps, f[6], 24))) ||
        (s = add_opt(t, "momentum", "%s,%s,%zu", ffmt(o->momentum0, f[7], 24),
                     ffmt(o->momentum1, f[8], 24), o->momentum_epochs)) ||
        (s = add_opt(t, "weight-decay", "%s", ffmt(o->weight_decay, f[9], 24))) ||
        (s = add_opt(t, "max-norm", "%s", ffmt(o->max_norm, f[10], 24))) ||
        (s = add_opt(t, "jitter", "%d", o->jitter)) || (s = add_opt(t, "flip", "%d", o->flip)) ||
        (s = add_opt(t, "seed", "%" PRIu64, o->seed)));
    free(model);
    if (!s && o->val) s = add_data(t, "val", o->val);
    if (s) kdcl_tstate_free(t);
    return s;
}

kdcl_status kdcl_tstate_add_metrics(kdcl_tstate *t, const char *line)
{
    size_t n = strlen(line);
    if (t->metrics_len + n + 1 > t->metrics_cap) {
        size_t cap = t->metrics_cap ? t->metrics_cap : 1024;
        while (cap < t->metrics_len + n + 1) cap *= 2;
        char *p = realloc(t->metrics, cap);
        if (!p) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        t->metrics = p;
        t->metrics_cap = cap;
    }
    memcpy(t->metrics + t->metrics_len, line, n + 1);
    t->metrics_len += n;
    return KDCL_OK;
}

void kdcl_tstate_free(kdcl_tstate *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->keys[i]);
        free(t->vals[i]);
    }
    free(t->keys);
    free(t->vals);
    free(t->metrics);
    memset(t, 0, sizeof *t);
}

static void fmt_last(const kdcl_epoch_stats *l, char *buf, size_t n)
{
    snprintf(buf, n, "%zu %.17g %.17g %.17g %.17g %zu %.17g %.17g %.17g %.17g", l->epoch,
             l->train_loss, l->train_error, l->val_loss, l->val_error, l->val_errors, l->lr,
             l->momentum, l->seconds, l->samples_per_s);
}

static int parse_last(const char *s, kdcl_epoch_stats *l)
{
    unsigned long long e = 0, ve = 0;
    int used = 0;
    if (sscanf(s, "%llu %lf %lf %lf %lf %llu %lf %lf %lf %lf%n", &e, &l->train_loss,
               &l->train_error, &l->val_loss, &l->val_error, &ve, &l->lr, &l->momentum,
               &l->seconds, &l->samples_per_s, &used) != 10 ||
        s[used] != '\0')
        return -1;
    l->epoch = (size_t)e;
    l->val_errors = (size_t)ve;
    return 0;
}

kdcl_status kdcl_tstate_write(kdcl_tstate *t, const char *path, kdcl_model *m, kdcl_optim *opt,
                              const size_t *order, size_t n_order, size_t order_epoch)
{
    kdcl_ctx *ctx = m->ctx;
    const size_t P = m->params.numel, S = m->stats.numel;
    const kdcl_tensor *o1 = kdcl_optim_state(opt, 1);
    size_t n_bn = kdcl_model_bn_counters(m, NULL, 0, 0);
    float *hp = malloc((P ? P : 1) * sizeof *hp), *hs = malloc((S ? S : 1) * sizeof *hs);
    float *h0 = malloc((P ? P : 1) * sizeof *h0), *h1 = o1 ? malloc((P ? P : 1) * sizeof *h1) : NULL;
    int64_t *bn = malloc((n_bn ? n_bn : 1) * sizeof *bn);
    int64_t *ord = malloc((n_order ? n_order : 1) * sizeof *ord);
    const char **keys = calloc(t->n + 16, sizeof *keys), **vals = calloc(t->n + 16, sizeof *vals);
    kdcl_status s = KDCL_OK;
    if (!hp || !hs || !h0 || (o1 && !h1) || !bn || !ord || !keys || !vals) {
        s = kdcl_set_error(KDCL_ERR_OOM, "out of host memory writing the training state");
        goto done;
    }
    if ((s = kdcl_tensor_download(ctx, &m->params, 0, P, hp)) ||
        (S && (s = kdcl_tensor_download(ctx, &m->stats, 0, S, hs))) ||
        (s = kdcl_tensor_download(ctx, kdcl_optim_state(opt, 0), 0, P, h0)) ||
        (o1 && (s = kdcl_tensor_download(ctx, o1, 0, P, h1))))
        goto done;
    kdcl_model_bn_counters(m, bn, n_bn, 0);
    for (size_t i = 0; i < n_order; i++) ord[i] = (int64_t)order[i];
    kdcl_st_tensor ts[6] = {
        {"params", KDCL_DT_F32, 1, {P}, hp, P * sizeof(float)},
        {"stats", KDCL_DT_F32, 1, {S}, hs, S * sizeof(float)},
        {"bn_batches", KDCL_DT_I64, 1, {n_bn}, bn, n_bn * sizeof(int64_t)},
        {"order", KDCL_DT_I64, 1, {n_order}, ord, n_order * sizeof(int64_t)},
        {"optim.0", KDCL_DT_F32, 1, {P}, h0, P * sizeof(float)},
        {"optim.1", KDCL_DT_F32, 1, {P}, h1, P * sizeof(float)},
    };
    char v_epoch[32], v_step[32], v_steps[32], v_loss[40], v_err[32], v_t[32], v_oe[32],
        v_last[512];
    snprintf(v_epoch, sizeof v_epoch, "%zu", t->epoch);
    snprintf(v_step, sizeof v_step, "%zu", t->step);
    snprintf(v_steps, sizeof v_steps, "%zu", t->steps);
    snprintf(v_loss, sizeof v_loss, "%.17g", t->loss_sum);
    snprintf(v_err, sizeof v_err, "%" PRId32, t->errors);
    snprintf(v_t, sizeof v_t, "%" PRIu64, kdcl_optim_steps(opt));
    snprintf(v_oe, sizeof v_oe, "%zu", order_epoch);
    fmt_last(&t->last, v_last, sizeof v_last);
    size_t nk = 0;
    keys[nk] = "format", vals[nk++] = STATE_FORMAT;
    keys[nk] = "kdcl.state.epoch", vals[nk++] = v_epoch;
    keys[nk] = "kdcl.state.step", vals[nk++] = v_step;
    keys[nk] = "kdcl.state.steps", vals[nk++] = v_steps;
    keys[nk] = "kdcl.state.loss_sum", vals[nk++] = v_loss;
    keys[nk] = "kdcl.state.errors", vals[nk++] = v_err;
    keys[nk] = "kdcl.state.adam_t", vals[nk++] = v_t;
    keys[nk] = "kdcl.state.order_epoch", vals[nk++] = v_oe;
    keys[nk] = "kdcl.state.last", vals[nk++] = v_last;
    keys[nk] = "kdcl.state.metrics", vals[nk++] = t->metrics ? t->metrics : "";
    for (size_t i = 0; i < t->n; i++) keys[nk] = t->keys[i], vals[nk++] = t->vals[i];
    s = kdcl_st_write(path, ts, o1 ? 6 : 5, keys, vals, nk);
done:
    free(hp);
    free(hs);
    free(h0);
    free(h1);
    free(bn);
    free(ord);
    free(keys);
    free(vals);
    return s;
}

static int parse_size(const char *s, size_t *out)
{
    if (!s || *s < '0' || *s > '9') return -1;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > SIZE_MAX) return -1;
    *out = (size_t)v;
    return 0;
}

/* The 1-D tensor `name` of dtype dt, n elements (n_any: any length). */
static kdcl_status get_1d(const kdcl_st_file *f, const char *path, const char *name,
                          kdcl_dtype dt, size_t n, int n_any, const kdcl_st_tensor **out)
{
    const kdcl_st_tensor *t = kdcl_st_find(f, name);
    if (!t)
        return kdcl_set_error(KDCL_ERR_FORMAT, "%s: training state without tensor '%s'", path,
                              name);
    if (t->dtype != dt || t->ndim != 1 || (!n_any && t->shape[0] != n))
        return kdcl_set_error(KDCL_ERR_FORMAT,
                              "%s: training state tensor '%s' is not %s [%zu]", path, name,
                              kdcl_dtype_name(dt), n);
    *out = t;
    return KDCL_OK;
}

/* Check the file's metadata and tensors for consistency (not yet against a
 * run); fills progress, metrics and last. */
static kdcl_status parse_state(const kdcl_st_file *f, const char *path, kdcl_tstate *t,
                               uint64_t *adam_t, size_t *order_epoch)
{
    const char *fmt = kdcl_st_meta(f, "format");
    if (!fmt || strcmp(fmt, STATE_FORMAT))
        return kdcl_set_error(KDCL_ERR_FORMAT,
                              "%s: not a kdcl training state (format '%s', expected '%s')", path,
                              fmt ? fmt : "none", STATE_FORMAT);
    const char *e = kdcl_st_meta(f, "kdcl.state.epoch"), *st = kdcl_st_meta(f, "kdcl.state.step");
    const char *ss = kdcl_st_meta(f, "kdcl.state.steps"), *ls = kdcl_st_meta(f, "kdcl.state.loss_sum");
    const char *es = kdcl_st_meta(f, "kdcl.state.errors"), *at = kdcl_st_meta(f, "kdcl.state.adam_t");
    const char *oe = kdcl_st_meta(f, "kdcl.state.order_epoch");
    const char *la = kdcl_st_meta(f, "kdcl.state.last"), *me = kdcl_st_meta(f, "kdcl.state.metrics");
    const char *ep = kdcl_st_meta(f, "opt.epochs");
    size_t epochs = 0, errors = 0, t_sz = 0;
    char *end = NULL;
    if (parse_size(e, &t->epoch) || parse_size(st, &t->step) || parse_size(ss, &t->steps) ||
        parse_size(es, &errors) || parse_size(at, &t_sz) || parse_size(oe, order_epoch) ||
        parse_size(ep, &epochs) || !ls || !la || !me || t->steps == 0 || t->step >= t->steps ||
        t->epoch > epochs || (t->step > 0 && t->epoch >= epochs) || errors > INT32_MAX ||
        *order_epoch > epochs)
        return kdcl_set_error(KDCL_ERR_FORMAT,
                              "%s: training state with missing or inconsistent progress (epoch "
                              "'%s' of '%s', step '%s' of '%s')",
                              path, e ? e : "?", ep ? ep : "?", st ? st : "?", ss ? ss : "?");
    t->errors = (int32_t)errors;
    *adam_t = (uint64_t)t_sz;
    t->loss_sum = strtod(ls, &end);
    if (end == ls || *end || !isfinite(t->loss_sum))
        return kdcl_set_error(KDCL_ERR_FORMAT, "%s: training state loss sum '%s' is not finite",
                              path, ls);
    memset(&t->last, 0, sizeof t->last);
    if (parse_last(la, &t->last) || t->last.epoch != t->epoch)
        return kdcl_set_error(KDCL_ERR_FORMAT, "%s: training state with bad last-epoch statistics",
                              path);
    size_t lines = 0;
    for (const char *p = me; *p; p++) lines += *p == '\n';
    if (lines != t->epoch || (t->epoch && me[strlen(me) - 1] != '\n'))
        return kdcl_set_error(KDCL_ERR_FORMAT,
                              "%s: training state holds %zu metrics lines for %zu epochs", path,
                              lines, t->epoch);
    kdcl_status s = kdcl_tstate_add_metrics(t, me);
    if (s) return s;
    const kdcl_st_tensor *p, *x;
    if ((s = get_1d(f, path, "params", KDCL_DT_F32, 0, 1, &p)) ||
        (s = get_1d(f, path, "stats", KDCL_DT_F32, 0, 1, &x)) ||
        (s = get_1d(f, path, "bn_batches", KDCL_DT_I64, 0, 1, &x)) ||
        (s = get_1d(f, path, "order", KDCL_DT_I64, 0, 1, &x)) ||
        (s = get_1d(f, path, "optim.0", KDCL_DT_F32, p->shape[0], 0, &x)) ||
        (kdcl_st_find(f, "optim.1") &&
         (s = get_1d(f, path, "optim.1", KDCL_DT_F32, p->shape[0], 0, &x))))
        return s;
    static const char *const floats[] = {"params", "stats", "optim.0", "optim.1"};
    for (size_t i = 0; i < 4; i++) {
        if (!(x = kdcl_st_find(f, floats[i]))) continue;
        const float *v = x->data;
        for (size_t k = 0; k < x->shape[0]; k++)
            if (!isfinite(v[k]))
                return kdcl_set_error(KDCL_ERR_FORMAT,
                                      "%s: training state tensor '%s' holds NaN/Inf", path,
                                      floats[i]);
    }
    x = kdcl_st_find(f, "bn_batches");
    for (size_t k = 0; k < x->shape[0]; k++)
        if (((const int64_t *)x->data)[k] < 0)
            return kdcl_set_error(KDCL_ERR_FORMAT,
                                  "%s: training state with a negative BatchNorm counter", path);
    return KDCL_OK;
}

kdcl_status kdcl_train_state_info_read(const char *path, kdcl_train_state_info *info)
{
    memset(info, 0, sizeof *info);
    kdcl_st_file f;
    kdcl_status s = kdcl_st_read(path, &f);
    if (s) return s;
    kdcl_tstate t;
    memset(&t, 0, sizeof t);
    uint64_t adam_t = 0;
    size_t oe = 0;
    if (!(s = parse_state(&f, path, &t, &adam_t, &oe))) {
        info->epoch = t.epoch;
        info->step = t.step;
        info->steps = t.steps;
        parse_size(kdcl_st_meta(&f, "opt.epochs"), &info->epochs);
    }
    kdcl_tstate_free(&t);
    kdcl_st_free(&f);
    return s;
}

/* Two values for a message: whole when short, else around where they first
 * differ. */
static void clip2(const char *a, const char *b, char *ca, char *cb, size_t n)
{
    size_t la = strlen(a), lb = strlen(b), i = 0;
    if (la < n / 2 && lb < n / 2) {
        snprintf(ca, n, "%s", a);
        snprintf(cb, n, "%s", b);
        return;
    }
    while (a[i] && a[i] == b[i]) i++;
    size_t from = i > 24 ? i - 24 : 0;
    snprintf(ca, n, "%s%.48s%s", from ? "..." : "", a + (from < la ? from : la),
             la > from + 48 ? "..." : "");
    snprintf(cb, n, "%s%.48s%s", from ? "..." : "", b + (from < lb ? from : lb),
             lb > from + 48 ? "..." : "");
}

kdcl_status kdcl_tstate_resume(kdcl_tstate *t, const char *path, kdcl_model *m, kdcl_optim *opt,
                               size_t **order, size_t *n_order, size_t *order_epoch)
{
    *order = NULL;
    *n_order = 0;
    kdcl_st_file f;
    kdcl_status s = kdcl_st_read(path, &f);
    if (s) return s;
    /* every option of this run must be the run's, and no other */
    for (size_t i = 0; i < t->n; i++) {
        const char *v = kdcl_st_meta(&f, t->keys[i]);
        if (!v || strcmp(v, t->vals[i])) {
            char a[128], b[128];
            clip2(v ? v : "none", t->vals[i], a, b, sizeof a);
            s = kdcl_set_error(KDCL_ERR_INVALID_ARG,
                               "cannot resume from %s: the run's %s was '%s', now '%s' (resume "
                               "with the run's options, or remove the state to start again)",
                               path, t->keys[i] + 4, a, b);
            goto done;
        }
    }
    for (size_t i = 0; i < f.n_meta; i++) {
        if (strncmp(f.meta_keys[i], "opt.", 4)) continue;
        int found = 0;
        for (size_t j = 0; j < t->n && !found; j++) found = !strcmp(t->keys[j], f.meta_keys[i]);
        if (!found) {
            s = kdcl_set_error(KDCL_ERR_INVALID_ARG,
                               "cannot resume from %s: the run had %s, this one has not",
                               path, f.meta_keys[i] + 4);
            goto done;
        }
    }
    const size_t steps = t->steps;
    uint64_t adam_t = 0;
    if ((s = parse_state(&f, path, t, &adam_t, order_epoch))) goto done;
    if (t->steps != steps) {
        s = kdcl_set_error(KDCL_ERR_INVALID_ARG,
                           "cannot resume from %s: %zu steps per epoch, this run has %zu", path,
                           t->steps, steps);
        goto done;
    }
    const size_t P = m->params.numel, S = m->stats.numel;
    const size_t n_bn = kdcl_model_bn_counters(m, NULL, 0, 0);
    const kdcl_st_tensor *tp = kdcl_st_find(&f, "params"), *ts = kdcl_st_find(&f, "stats");
    const kdcl_st_tensor *tb = kdcl_st_find(&f, "bn_batches"), *to = kdcl_st_find(&f, "order");
    const kdcl_st_tensor *t0 = kdcl_st_find(&f, "optim.0"), *t1 = kdcl_st_find(&f, "optim.1");
    kdcl_tensor *o1 = kdcl_optim_state(opt, 1);
    if (tp->shape[0] != P || ts->shape[0] != S || tb->shape[0] != n_bn || !t1 != !o1) {
        s = kdcl_set_error(KDCL_ERR_FORMAT,
                           "%s: the training state's buffers (%zu parameters, %zu statistics, %zu "
                           "BatchNorm layers, %s) do not fit the model (%zu, %zu, %zu, %s)",
                           path, tp->shape[0], ts->shape[0], tb->shape[0],
                           t1 ? "Adam" : "SGD", P, S, n_bn, o1 ? "Adam" : "SGD");
        goto done;
    }
    const size_t n = to->shape[0];
    size_t *ord = malloc((n ? n : 1) * sizeof *ord);
    if (!ord) {
        s = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        int64_t v = ((const int64_t *)to->data)[i];
        ord[i] = v < 0 ? SIZE_MAX : (size_t)v;
    }
    kdcl_model_bn_counters(m, (int64_t *)tb->data, n_bn, 1);
    kdcl_optim_set_steps(opt, adam_t);
    if ((s = kdcl_tensor_upload(m->ctx, &m->params, 0, P, tp->data)) ||
        (S && (s = kdcl_tensor_upload(m->ctx, &m->stats, 0, S, ts->data))) ||
        (s = kdcl_tensor_upload(m->ctx, kdcl_optim_state(opt, 0), 0, P, t0->data)) ||
        (o1 && (s = kdcl_tensor_upload(m->ctx, o1, 0, P, t1->data)))) {
        free(ord);
        goto done;
    }
    *order = ord;
    *n_order = n;
done:
    kdcl_st_free(&f);
    return s;
}
