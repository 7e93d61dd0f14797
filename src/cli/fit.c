#include "fit.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kdcl/file.h"
#include "kdcl/dist.h"

void cli_fit_help(void) { fputs(CLI_FIT_HELP_TEXT, stdout); }

void cli_fit_init(cli_fit *f, const char *cmd)
{
    memset(f, 0, sizeof *f);
    f->cmd = cmd;
    f->fraction = 1.0;
    kdcl_train_opts_default(&f->o);
}

void cli_fit_meta(cli_fit *f, const char *key, const char *fmt, ...)
{
    if (f->n_meta >= 16) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->meta_v[f->n_meta], sizeof f->meta_v[0], fmt, ap);
    va_end(ap);
    f->meta_k[f->n_meta++] = key;
}

void cli_fit_state(cli_fit *f, const char *key, const char *fmt, ...)
{
    if (f->n_state >= 16) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->state_v[f->n_state], sizeof f->state_v[0], fmt, ap);
    va_end(ap);
    f->state_k[f->n_state++] = key;
}

void cli_state_path(const char *model, char *buf, size_t size)
{
    static const char ext[] = ".safetensors";
    size_t n = strlen(model), e = sizeof ext - 1;
    if (n > e && !strcmp(model + n - e, ext))
        snprintf(buf, size, "%.*s.state%s", (int)(n - e), model, ext);
    else
        snprintf(buf, size, "%s.state%s", model, ext);
}

static int parse_classes(const char *s, size_t *out, size_t *n)
{
    char buf[512];
    if (strlen(s) >= sizeof buf) return -1;
    snprintf(buf, sizeof buf, "%s", s);
    *n = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        size_t v;
        if (*n >= 64 || kdcl_parse_size(t, &v) || v > 100000) return -1;
        out[(*n)++] = v;
    }
    return *n ? 0 : -1;
}

static int in_list(const size_t *l, size_t n, size_t v)
{
    for (size_t i = 0; i < n; i++)
        if (l[i] == v) return 1;
    return 0;
}

/* The transfer set: classes left out or kept, then a seeded fraction. */
static int transfer_set(const cli_fit *f, const kdcl_dataset *train, kdcl_dataset *out)
{
    const size_t nl = f->n_omit ? f->n_omit : f->n_only;
    const size_t *cl = f->n_omit ? f->omit : f->only;
    for (size_t i = 0; i < nl; i++)
        if (cl[i] >= train->n_classes)
            return cli_usage_error(f->cmd, "--%s lists class %zu, but the data has classes 0..%zu",
                                   f->n_omit ? "omit-classes" : "only-classes", cl[i],
                                   train->n_classes - 1);
    size_t *idx = malloc(train->n * sizeof *idx), n = 0;
    if (!idx) return cli_fail(f->cmd, kdcl_set_error(KDCL_ERR_OOM, "out of host memory"));
    for (size_t i = 0; i < train->n; i++) {
        size_t y = (size_t)train->labels[i];
        if (f->n_omit && in_list(f->omit, f->n_omit, y)) continue;
        if (f->n_only && !in_list(f->only, f->n_only, y)) continue;
        idx[n++] = i;
    }
    if (f->fraction < 1.0 && n > 0) {
        /* a seeded random subset of the remaining examples, kept in data order */
        size_t keep = (size_t)(f->fraction * (double)n + 0.5);
        size_t *perm = malloc(n * sizeof *perm);
        char *sel = calloc(n, 1);
        if (!perm || !sel) {
            free(idx);
            free(perm);
            free(sel);
            return cli_fail(f->cmd, kdcl_set_error(KDCL_ERR_OOM, "out of host memory"));
        }
        kdcl_shuffle_indices(perm, n, f->o.seed ^ 0xf4ac7104u, 0);
        for (size_t i = 0; i < keep; i++) sel[perm[i]] = 1;
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (sel[i]) idx[m++] = idx[i];
        n = m;
        free(sel);
        free(perm);
    }
    if (n == 0) {
        free(idx);
        return cli_usage_error(f->cmd, "the training set is empty after --omit-classes/"
                                       "--only-classes/--fraction");
    }
    kdcl_status s = kdcl_dataset_subset(train, idx, n, out);
    free(idx);
    if (s) return cli_fail(f->cmd, s);
    out->n_classes = train->n_classes; /* labels keep their meaning */
    return 0;
}

/* A training option through the library's parser (kdcl_train_opts_set): its
 * message names the option, shown as the flag. */
static int train_opt(cli_fit *f, const char *name, const char *arg)
{
    if (!kdcl_train_opts_set(&f->o, name, arg)) return 0;
    const char *msg = kdcl_last_error();
    return cli_usage_error(f->cmd, "%s%s", strncmp(msg, name, strlen(name)) ? "" : "--", msg);
}

int cli_fit_option(cli_fit *f, int c, const char *arg)
{
    const char *cmd = f->cmd;
    double d, d2;
    size_t z;
    switch (c) {
    case 1000: f->data = arg; return 0;
    case 1001: f->arch_s = arg; return 0;
    case 1013: f->out = arg; return 0;
    case 1014: f->metrics = arg; return 0;
    case 1015: f->device = arg; return 0;
    case 1016: f->quiet = 1; return 0;
    case CLI_OPT_SKIP_BAD_IMAGES: cli_skip_bad_images = 1; return 0;
    case 1002: return train_opt(f, "epochs", arg);
    case 1003: return train_opt(f, "batch", arg);
    case 1004: return train_opt(f, "lr", arg);
    case 1005: return train_opt(f, "lr-decay", arg);
    case 1006: return train_opt(f, "momentum", arg);
    case 1007: return train_opt(f, "weight-decay", arg);
    case 1008: {
        int k = cli_parse_list(arg, 2, &d, &d2, NULL);
        if (k < 1 || d < 0 || d >= 1 || (k == 2 && (d2 < 0 || d2 >= 1)))
            return cli_usage_error(cmd, "--dropout needs P or P,Q in [0, 1), got '%s'", arg);
        f->drop_in = k == 2 ? (float)d : 0.0f;
        f->drop_hidden = k == 2 ? (float)d2 : (float)d;
        return 0;
    }
    case 1009: return train_opt(f, "max-norm", arg);
    case 1010: return train_opt(f, "jitter", arg);
    case 1025: return train_opt(f, "crop", arg);
    case 1020: return train_opt(f, "optimizer", arg);
    case 1021: return train_opt(f, "schedule", arg);
    case 1022: return train_opt(f, "warmup", arg);
    case 1023: return train_opt(f, "flip", "1");
    case 1026: f->resume = 1; return 0;
    case 1027: f->keep_state = 1; return 0;
    case 1028:
        if (kdcl_parse_size(arg, &z) || z == 0)
            return cli_usage_error(cmd, "--state-every needs a positive number of steps, got '%s'",
                                   arg);
        f->state_every = z;
        return 0;
    case 1024: f->normalize = 1; return 0;
    case 1029: f->devices = arg; return 0;
    case 1030:
        if (kdcl_parse_size(arg, &z) || z == 0 || z > 10000)
            return cli_usage_error(cmd, "--members needs an integer in 1..10000, got '%s'", arg);
        f->members = z;
        return 0;
    case 1011:
        if (kdcl_parse_size(arg, &z))
            return cli_usage_error(cmd, "--val needs a count, got '%s'", arg);
        f->val = z;
        return 0;
    case 1017:
    case 1018:
        if (parse_classes(arg, c == 1017 ? f->omit : f->only, c == 1017 ? &f->n_omit : &f->n_only))
            return cli_usage_error(cmd, "--%s needs a list like 3 or 7,8, got '%s'",
                                   c == 1017 ? "omit-classes" : "only-classes", arg);
        return 0;
    case 1019:
        if (kdcl_parse_double(arg, &d) || d <= 0 || d > 1)
            return cli_usage_error(cmd, "--fraction needs a number in (0, 1], got '%s'", arg);
        f->fraction = d;
        return 0;
    case 1012: return train_opt(f, "seed", arg);
    }
    return 1;
}

/* Resumable training of one output: a run's state is never overwritten by
 * a new run. Sets *resume; *complete when --resume finds the model finished
 * (nothing to do). Returns an exit code (0: go on). */
static int plan_resume(cli_fit *f, const char *out, const char *state, int quiet, int *resume,
                       int *complete)
{
    const char *cmd = f->cmd;
    *resume = 0;
    *complete = 0;
    if (access(state, F_OK) == 0) {
        kdcl_train_state_info si;
        if (kdcl_train_state_info_read(state, &si)) {
            return cli_usage_error(cmd, "%s is not a usable training state (%s): remove it to "
                                        "train %s again",
                                   state, kdcl_last_error(), out);
        }
        if (!f->resume)
            return cli_usage_error(cmd, "%s holds an unfinished run (%zu of %zu epochs done): "
                                        "add --resume to continue it, or remove it to start again",
                                   state, si.epoch, si.epochs);
        if (!quiet) {
            if (si.step)
                printf("kdcl %s: resuming from %s: epoch %zu of %zu, step %zu of %zu\n", cmd,
                       state, si.epoch + 1, si.epochs, si.step, si.steps);
            else
                printf("kdcl %s: resuming from %s: %zu of %zu epochs done\n", cmd, state,
                       si.epoch, si.epochs);
        }
        *resume = 1;
    } else if (f->resume) {
        if (access(out, F_OK) == 0) {
            if (!quiet)
                printf("kdcl %s: %s is complete (no training state %s): nothing to resume\n",
                       cmd, out, state);
            *complete = 1;
            return 0;
        }
        if (!quiet) printf("kdcl %s: no training state %s: a new run\n", cmd, state);
    }
    return 0;
}

/* What every model of a run shares: the data, the context, the spec. */
typedef struct fit_env {
    cli_fit *f;
    kdcl_ctx *ctx;
    const kdcl_model_spec *spec;
    const kdcl_dataset *train, *fit, *test;
    const char *data;
    cli_fit_fn fn;
    void *user;
    const char *const *skeys, *const *svals; /* the state keys less the seed's */
    size_t n_state;
    int dp;                   /* data-parallel over the ranks */
    const char *metrics_extra;
    const char *devices_list; /* the ranks' devices (metadata) */
} fit_env;

typedef struct fit_result {
    int status;               /* kdcl_status */
    char error[1024];
    size_t test_errors, test_n;
    double test_loss, seconds;
    int rank;
    size_t epochs_run;
    char device[128];
} fit_result;

/* Train, test and save one model (the run's, or an ensemble member). */
static kdcl_status fit_one(const fit_env *env, const char *out, const char *metrics,
                           const char *state, uint64_t seed, int resume, int quiet,
                           const char *tag, int writer, fit_result *res)
{
    cli_fit *f = env->f;
    const char *cmd = f->cmd;
    kdcl_ctx *ctx = env->ctx;
    const kdcl_dataset *fit = env->fit;
    kdcl_train_opts o = f->o;
    kdcl_model *m = NULL;
    kdcl_status s;
    char metrics_tmp[4200] = "";
    o.seed = seed;
    o.resume = resume;
    o.state_path = state;
    o.state_every = f->state_every;
    o.state_keys = env->skeys;
    o.state_vals = env->svals;
    o.n_state = env->n_state;
    o.data_parallel = env->dp;
    o.metrics_extra = env->metrics_extra;
    /* evaluation runs in batches of 1000 when they fit the device, else of --batch */
    s = kdcl_model_create(ctx, env->spec, env->train->c, env->train->h, env->train->w,
                          o.batch > 1000 ? o.batch : 1000, &m);
    if (s == KDCL_ERR_OOM && o.batch < 1000)
        s = kdcl_model_create(ctx, env->spec, env->train->c, env->train->h, env->train->w,
                              o.batch, &m);
    if (s || (s = kdcl_model_init(m, o.seed))) goto done;
    { /* both splits fit the model before the training, not at the test after it */
        char what[4200];
        snprintf(what, sizeof what, "%s (training split)", env->data);
        if ((s = kdcl_check_fit(m, fit, what))) goto done;
        snprintf(what, sizeof what, "%s (test split)", env->data);
        if ((s = kdcl_check_fit(m, env->test, what))) goto done;
    }
    if (f->normalize) {
        float mean[4], sd[4];
        if ((s = kdcl_dataset_channel_stats(fit, mean, sd)) ||
            (s = kdcl_model_set_input_norm(m, mean, sd)))
            goto done;
    }
    if (writer) {
        /* the metrics of this run go beside the file and replace it only once
         * the checkpoint is saved: a run that diverges or is killed leaves the
         * metrics of the checkpoint already there */
        kdcl_atomic_clean_stale(metrics);
        kdcl_atomic_clean_stale(out); /* those of runs killed while saving */
        kdcl_atomic_clean_stale(state);
        snprintf(metrics_tmp, sizeof metrics_tmp, "%s.tmp.%ld", metrics, (long)getpid());
        o.metrics_path = metrics_tmp;
    } else {
        o.metrics_path = NULL;
    }
    cli_train_output(&o, quiet, kdcl_dist_size() < 2);
    o.tag = tag;
    const kdcl_device_info *di = kdcl_ctx_device(ctx);
    snprintf(res->device, sizeof res->device, "%.120s", di->name);
    if (!quiet) {
        char desc[512];
        kdcl_model_describe(m, desc, sizeof desc);
        printf("kdcl %s: %s on %s (%s), %zu train / %zu val / %zu test examples, %zu params, "
               "%.2f MMAC/example\n",
               tag, desc, di->name, di->platform_name, fit->n, f->val, env->test->n,
               kdcl_model_n_params(m), kdcl_model_macs(m) / 1e6);
        fflush(stdout);
    }
    double t0 = kdcl_wall_seconds();
    kdcl_epoch_stats last;
    memset(&last, 0, sizeof last);
    if ((s = env->fn(env->user, ctx, m, fit, &o, &last))) goto done;
    double secs = kdcl_wall_seconds() - t0;
    res->seconds = secs;
    res->epochs_run = o.epochs;
    if (!writer) goto done; /* data-parallel: rank 0 tests and saves */
    kdcl_eval_result r;
    if ((s = kdcl_evaluate(m, env->test, 0, &r))) goto done;
    res->test_errors = r.errors;
    res->test_n = r.n;
    res->test_loss = r.loss;
    if (!quiet || !strcmp(tag, cmd)) /* a member's are in the table */
        printf("%s%stest errors: %zu / %zu (%.2f%%), test loss %.4f, training %.1f s\n",
               strcmp(tag, cmd) ? tag : "", strcmp(tag, cmd) ? ": " : "", r.errors, r.n,
               100.0 * (double)r.errors / (double)r.n, r.loss, secs);
    const char *keys[48];
    const char *vals[48];
    char v[32][256];
    size_t n = 0;
#define META(k, ...)                                       \
    do {                                                   \
        snprintf(v[n], sizeof v[0], __VA_ARGS__);          \
        keys[n] = k;                                       \
        vals[n] = v[n];                                    \
        n++;                                               \
    } while (0)
    META("dataset", "%s", env->data);
    META("arch_spec", "%s", f->arch_s);
    META("seed", "%llu", (unsigned long long)o.seed);
    META("epochs", "%zu", o.epochs);
    META("dropout", "%g,%g", (double)f->drop_in, (double)f->drop_hidden);
    META("optimizer", "%s",
         o.optimizer == KDCL_OPT_SGD ? (o.nesterov ? "nesterov" : "sgd")
                                     : o.optimizer == KDCL_OPT_ADAM ? "adam" : "adamw");
    META("max_norm", "%g", (double)o.max_norm);
    META("jitter", "%d", o.jitter);
    META("lr", "%g", (double)o.lr);
    META("batch", "%zu", o.batch);
    META("lr_decay", "%g", (double)o.lr_decay);
    META("momentum", "%g,%g,%zu", (double)o.momentum0, (double)o.momentum1, o.momentum_epochs);
    META("weight_decay", "%g", (double)o.weight_decay);
    META("schedule", "%s",
         o.schedule == KDCL_SCHED_EXP ? "exp" : o.schedule == KDCL_SCHED_STEP ? "step" : "cosine");
    META("schedule_args", "%zu,%g,%g", o.step_epochs, (double)o.step_gamma, (double)o.lr_min);
    META("warmup", "%zu", o.warmup_epochs);
    META("flip", "%d", o.flip);
    META("test_errors", "%zu", r.errors);
    META("test_examples", "%zu", r.n);
    META("val_errors", "%zu", f->val > 0 ? last.val_errors : 0);
    META("train_seconds", "%.1f", secs);
    META("device", "%s", di->name);
    META("checkpoint", "last epoch");
    /* the processes that trained it: data-parallel ranks, or one */
    META("kdcl.world_size", "%d", env->dp ? kdcl_dist_size() : 1);
    if (env->dp) META("kdcl.devices", "%.250s", env->devices_list);
#undef META
    for (size_t i = 0; i < f->n_meta; i++) {
        keys[n] = f->meta_k[i];
        vals[n++] = f->meta_v[i];
    }
    kdcl_eval_result_free(&r);
    if ((s = kdcl_model_save(m, out, keys, vals, n))) goto done;
    if (rename(metrics_tmp, metrics) != 0) {
        s = kdcl_set_error(KDCL_ERR_IO, "saved %s, but moving its metrics %s to %s failed: %s",
                           out, metrics_tmp, metrics, strerror(errno));
        goto done;
    }
    metrics_tmp[0] = '\0';
    if (!quiet) printf("saved %s (metrics: %s)\n", out, metrics);
    if (!f->keep_state && unlink(state) != 0 && !quiet)
        printf("note: could not remove the training state %s\n", state);
done:
    if (metrics_tmp[0]) unlink(metrics_tmp);
    kdcl_model_destroy(m);
    res->status = s;
    if (s) snprintf(res->error, sizeof res->error, "%s", kdcl_last_error());
    return s;
}

/* ---- ensembles: --members M ---- */

typedef struct member_job {
    char out[4096], metrics[4200], state[4200];
    int resume, skip;
} member_job;

typedef struct members_ctx {
    const fit_env *env;
    member_job *jobs;
} members_ctx;

static void member_path(const char *dir, size_t i, char *buf, size_t size)
{
    snprintf(buf, size, "%s/member_%zu.safetensors", dir, i);
}

static void member_run(void *user, size_t job, size_t worker, void *result)
{
    (void)worker;
    members_ctx *mc = user;
    const fit_env *env = mc->env;
    member_job *j = &mc->jobs[job];
    fit_result *res = result;
    res->rank = kdcl_dist_rank();
    if (j->skip) return;
    char tag[64];
    snprintf(tag, sizeof tag, "member %zu", job);
    fit_one(env, j->out, j->metrics, j->state, env->f->o.seed + job, j->resume, env->f->quiet, tag,
            1, res);
}

int cli_fit_run(cli_fit *f, cli_ctx_fn on_ctx, cli_fit_fn fn, void *user)
{
    const char *cmd = f->cmd;
    kdcl_train_opts *o = &f->o;
    if (!f->out)
        return cli_usage_error(cmd, f->members ? "--out DIR is required"
                                               : "--out MODEL.safetensors is required");
    char metrics_buf[4096], defarch[128];
    const int W = kdcl_dist_size(), rank = kdcl_dist_rank();
    const int dp = W > 1 && !f->members; /* data-parallel over the ranks */
    if (dp && rank != 0) f->quiet = 1;    /* rank 0 speaks for the job */
    int rc = 0;
    if (f->members) {
        if (f->metrics)
            return cli_usage_error(cmd, "--metrics does not apply to --members: each member's "
                                        "metrics go beside it (DIR/member_I.safetensors"
                                        ".metrics.jsonl)");
        if ((rc = cli_check_output_dir(cmd, "--out", f->out))) return rc;
    } else {
        if (!f->metrics) {
            snprintf(metrics_buf, sizeof metrics_buf, "%s.metrics.jsonl", f->out);
            f->metrics = metrics_buf;
        }
        if ((rc = cli_check_output(cmd, "--out", f->out)) ||
            (rc = cli_check_output(cmd, "--metrics", f->metrics)))
            return rc;
        if (!strcmp(f->metrics, f->out))
            return cli_usage_error(cmd, "--metrics and --out name the same file '%s'", f->out);
    }
    if (f->n_omit && f->n_only)
        return cli_usage_error(cmd, "--omit-classes and --only-classes exclude each other");
    const int subset = f->n_omit || f->n_only || f->fraction < 1.0;
    if (subset) {
        char l[256] = "";
        size_t off = 0, nl = f->n_omit ? f->n_omit : f->n_only;
        const size_t *cl = f->n_omit ? f->omit : f->only;
        for (size_t i = 0; i < nl && off < 200; i++)
            off += (size_t)snprintf(l + off, sizeof l - off, i ? ",%zu" : "%zu", cl[i]);
        cli_fit_meta(f, "transfer_set", "%s%s fraction %g",
                     f->n_omit ? "omit " : f->n_only ? "only " : "all", l, f->fraction);
    }
    kdcl_dataset train = {0}, test = {0}, tr = {0}, va = {0}, transfer = {0};
    kdcl_ctx *ctx = NULL;
    kdcl_model_spec spec = {0};
    kdcl_status s = KDCL_OK;
    char state[4096];
    const char *skeys[40], *svals[40];
    char sv_cmd[32];
    member_job *jobs = NULL;
    fit_result *results = NULL;
    int resume = 0, complete = 0;
    if (f->members) {
        if (mkdir(f->out, 0777) && errno != EEXIST)
            return cli_fail(cmd, kdcl_set_error(KDCL_ERR_IO, "cannot create %s: %s", f->out,
                                                strerror(errno)));
        jobs = calloc(f->members, sizeof *jobs);
        results = calloc(f->members, sizeof *results);
        if (!jobs || !results) {
            free(jobs);
            free(results);
            return cli_fail(cmd, kdcl_set_error(KDCL_ERR_OOM, "out of host memory"));
        }
        size_t done_before = 0;
        for (size_t i = 0; i < f->members && !rc; i++) {
            member_job *j = &jobs[i];
            member_path(f->out, i, j->out, sizeof j->out);
            snprintf(j->metrics, sizeof j->metrics, "%s.metrics.jsonl", j->out);
            cli_state_path(j->out, j->state, sizeof j->state);
            rc = plan_resume(f, j->out, j->state, 1, &j->resume, &j->skip);
            done_before += (size_t)j->skip;
        }
        if (rc) goto done;
        if (f->resume && !f->quiet && rank == 0)
            printf("kdcl %s: --resume: %zu of %zu members finished before\n", cmd, done_before,
                   f->members);
    } else {
        cli_state_path(f->out, state, sizeof state);
        if ((rc = plan_resume(f, f->out, state, f->quiet, &resume, &complete)) || complete)
            return rc;
    }
    snprintf(sv_cmd, sizeof sv_cmd, "%s", cmd);
    size_t ns = 0;
    skeys[ns] = "command", svals[ns++] = sv_cmd;
    for (size_t i = 0; i < f->n_meta && ns < 40; i++) skeys[ns] = f->meta_k[i], svals[ns++] = f->meta_v[i];
    for (size_t i = 0; i < f->n_state && ns < 40; i++)
        skeys[ns] = f->state_k[i], svals[ns++] = f->state_v[i];
    const char *data = cli_data_dir(f->data);
    if ((rc = cli_load_split(cmd, data, "train", &train)) ||
        (rc = cli_load_split(cmd, data, "test", &test)))
        goto done;
    const kdcl_dataset *fit = &train;
    if (f->val > 0) {
        if (f->val >= train.n) {
            rc = cli_usage_error(cmd, "--val %zu leaves no training examples (%zu in all)",
                                 f->val, train.n);
            goto done;
        }
        if ((s = kdcl_dataset_split_val(&train, f->val, o->seed, &tr, &va))) goto done;
        fit = &tr;
        o->val = &va;
    }
    if (subset) {
        if ((rc = transfer_set(f, fit, &transfer))) goto done;
        fit = &transfer;
    }
    if (o->batch > fit->n) {
        rc = cli_usage_error(cmd, "--batch %zu is larger than the %zu training examples",
                             o->batch, fit->n);
        goto done;
    }
    if (!f->arch_s) {
        snprintf(defarch, sizeof defarch, "%zu-800-800-%zu", train.dim, train.n_classes);
        f->arch_s = defarch;
    }
    if ((s = kdcl_model_spec_parse(f->arch_s, train.n_classes, &spec))) goto done;
    if (f->drop_in > 0 || f->drop_hidden > 0) {
        if (!spec.in_features) {
            rc = cli_usage_error(cmd, "--dropout applies to A-B-...-K architectures; put "
                                      "dropout(P) layers into '%s'",
                                 f->arch_s);
            goto done;
        }
        if ((s = kdcl_model_spec_add_dropout(&spec, f->drop_in, f->drop_hidden))) goto done;
    }
    char devbuf[256];
    const char *device =
        cli_rank_device(f->devices, f->device, (size_t)kdcl_dist_local_rank(), devbuf, sizeof devbuf);
    if ((rc = cli_open_ctx(cmd, device, &ctx))) goto done;
    if (on_ctx && (rc = on_ctx(user, ctx, &train))) goto done;
    char what[256], devices_list[2048] = "", extra[2600] = "";
    if (f->members)
        snprintf(what, sizeof what, "an ensemble of %zu members, handed out one at a time",
                 f->members);
    else if (o->batch % (size_t)W == 0)
        snprintf(what, sizeof what, "data-parallel SGD, global batch %zu (%zu per rank)",
                 o->batch, o->batch / (size_t)W);
    else
        snprintf(what, sizeof what, "data-parallel SGD, global batch %zu (%zu to %zu per rank)",
                 o->batch, o->batch / (size_t)W, o->batch / (size_t)W + 1);
    uint64_t fp = kdcl_hash64(KDCL_HASH64_INIT, &fit->n, sizeof fit->n);
    fp = kdcl_hash64(fp, &fit->dim, sizeof fit->dim);
    fp = kdcl_hash64(fp, fit->labels, fit->n * sizeof *fit->labels);
    fp = kdcl_hash64(fp, fit->images, fit->n * fit->dim);
    if ((rc = cli_dist_ready(cmd, what, kdcl_ctx_device(ctx)->name, fp))) goto done;
    if (dp) {
        cli_dist_devices(devices_list, sizeof devices_list);
        snprintf(extra, sizeof extra, "\"world_size\": %d, \"devices\": [%s]", W, devices_list);
        cli_dist_devices_plain(devices_list, sizeof devices_list);
    }
    fit_env env = {f, ctx, &spec, &train, fit, &test, data, fn, user, skeys, svals, ns, dp,
                   dp ? extra : NULL, devices_list};
    if (!f->members) {
        fit_result res;
        memset(&res, 0, sizeof res);
        if ((s = fit_one(&env, f->out, f->metrics, state, o->seed, resume, f->quiet, cmd,
                         !dp || rank == 0, &res)))
            goto done;
        goto done;
    }
    { /* the members, handed out by rank 0 to whichever rank is free */
        members_ctx mc = {&env, jobs};
        double t0 = kdcl_wall_seconds();
        if ((s = kdcl_dist_schedule(f->members, 1, sizeof *results, results, member_run, &mc)))
            goto done;
        double wall = kdcl_wall_seconds() - t0;
        if (rank != 0) goto done;
        printf("\n| member | seed | test errors | test loss | seconds | rank | device |\n"
               "|---|---|---|---|---|---|---|\n");
        size_t failed = 0;
        double sum = 0;
        for (size_t i = 0; i < f->members; i++) {
            fit_result *r = &results[i];
            if (jobs[i].skip) {
                printf("| %zu | %llu | finished before | | | | |\n", i,
                       (unsigned long long)(o->seed + i));
                continue;
            }
            if (r->status) {
                fprintf(stderr, "kdcl %s: member %zu (rank %d): %s\n", cmd, i, r->rank, r->error);
                failed++;
                continue;
            }
            printf("| %zu | %llu | %zu / %zu | %.4f | %.1f | %d | %s |\n", i,
                   (unsigned long long)(o->seed + i), r->test_errors, r->test_n, r->test_loss,
                   r->seconds, r->rank, r->device);
            sum += r->seconds;
        }
        printf("\n%zu members in %.1f s wall on %d rank%s (sum of their own times %.1f s); "
               "saved in %s; distill from them with --teacher ",
               f->members - failed, wall, W, W > 1 ? "s" : "", sum, f->out);
        for (size_t i = 0; i < f->members; i++) printf(i ? ",%s" : "%s", jobs[i].out);
        printf("\n");
        if (failed) rc = CLI_EXIT_FAIL;
    }
done:
    if (s) rc = cli_fail(cmd, s);
    kdcl_model_spec_free(&spec);
    if (f->cleanup) f->cleanup(user);
    kdcl_ctx_destroy(ctx);
    kdcl_dataset_free(&train);
    kdcl_dataset_free(&test);
    kdcl_dataset_free(&tr);
    kdcl_dataset_free(&va);
    kdcl_dataset_free(&transfer);
    free(jobs);
    free(results);
    return rc;
}
