/* kdcl bench: GEMM rates at the GEMM shapes of the benchmarked models'
 * training steps (kdcl_model_gemm_shapes; tuned and CLBlast-default
 * parameters), the per-layer device time of training steps, training and
 * inference throughput, memory and build statistics, as a table and JSON.
 *
 * Models (architecture specs, kdcl_model_spec_parse, 10 classes):
 *   teacher   "784-1200-1200-10", dropout 0.2 (input) / 0.5 (hidden), max-norm 3.5
 *   student   "784-800-800-10"
 *   lenet5    the "lenet5" preset on 1x28x28 inputs
 *   resnet20  the "resnet20" preset (CIFAR ResNet-20, projection shortcuts) on 3x32x32 inputs
 * all on synthetic u8 data of their input shape.
 *
 * JSON (--json FILE, and bench.json of --report DIR): the schema
 * "kdcl-bench-1", described in tools/kdcl-bench-1.md; --report DIR also
 * writes bench.csv, report.md and PNG plots (src/cli/bench_report.c).
 * Every statistic is the median / min / max over "reps" timed repetitions
 * after a warm-up; NaN is written as null. A workload that fails (e.g. a
 * layer type this build cannot run) is reported in its table, on stderr and
 * in "errors"; the others still run, and the exit status is then 1. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "kdcl/opencl.h"
#include "build_info.h" /* KDCL_GIT, KDCL_CLBLAST_VERSION */
#include "bench_report.h"
#include "bench_util.h"
#include "cli.h"
#include "kdcl/file.h"
#include "kdcl/distill.h"
#include "kdcl/profile.h"
#include "kdcl/specialists.h"

#define N_CLASSES 10
#define ENSEMBLE_MEMBERS 10

/* ------------------------------------------------------------------ models */

typedef struct {
    const char *model; /* short name: ids and tables */
    const char *arch;  /* architecture spec (kdcl_model_spec_parse) */
    float drop_in, drop_hidden, max_norm;
    size_t c, h, w;    /* input shape */
} model_cfg;

static const model_cfg TEACHER = {"teacher", "784-1200-1200-10", 0.2f, 0.5f, 3.5f, 1, 28, 28};
static const model_cfg STUDENT = {"student", "784-800-800-10", 0.0f, 0.0f, 0.0f, 1, 28, 28};
/* the small student whose steps are bound by launches, not arithmetic */
static const model_cfg SMALL = {"small", "784-100-10", 0.0f, 0.0f, 0.0f, 1, 28, 28};
static const model_cfg LENET5 = {"lenet5", "lenet5", 0.0f, 0.0f, 0.0f, 1, 28, 28};
static const model_cfg RESNET20 = {"resnet20", "resnet20", 0.0f, 0.0f, 0.0f, 3, 32, 32};

static int cfg_is_mlp(const model_cfg *cfg) { return isdigit((unsigned char)cfg->arch[0]); }

/* cfg's model for batches of up to max_batch rows (parameters zero); its
 * dropout layers only with with_dropout (training). */
static kdcl_status cfg_model(kdcl_ctx *ctx, const model_cfg *cfg, int with_dropout,
                             size_t max_batch, kdcl_model **out)
{
    kdcl_model_spec spec;
    memset(&spec, 0, sizeof spec);
    *out = NULL;
    kdcl_status s = kdcl_model_spec_parse(cfg->arch, N_CLASSES, &spec);
    if (!s && with_dropout && (cfg->drop_in > 0 || cfg->drop_hidden > 0))
        s = kdcl_model_spec_add_dropout(&spec, cfg->drop_in, cfg->drop_hidden);
    if (!s) s = kdcl_model_create(ctx, &spec, cfg->c, cfg->h, cfg->w, max_batch, out);
    kdcl_model_spec_free(&spec);
    return s;
}

/* "dropout 0.2/0.5, max-norm 3.5", "no dropout" or "3x32x32 input". */
static void cfg_regime(const model_cfg *cfg, char *buf, size_t size)
{
    if (cfg->drop_in > 0 || cfg->drop_hidden > 0)
        snprintf(buf, size, "dropout %.1f/%.1f%s", cfg->drop_in, cfg->drop_hidden,
                 cfg->max_norm > 0 ? ", max-norm 3.5" : "");
    else if (cfg_is_mlp(cfg))
        snprintf(buf, size, "no dropout");
    else
        snprintf(buf, size, "%zux%zux%zu input", cfg->c, cfg->h, cfg->w);
}

/* ------------------------------------------------------------------ options */

typedef struct {
    const char *json, *device;
    int all, quick, full, child, gemm_only;
    size_t reps;
    const char *exe;
    const char *report, *from; /* --report DIR, --from FILE */
    const char *data;          /* --data DIR: Fashion-MNIST for the time to a test error */
} bench_opts;

/* Time caps: a measurement stops after min_reps when it has used cap seconds. */
static size_t min_reps(const bench_opts *o) { return o->quick ? 1 : (o->reps < 3 ? o->reps : 3); }
static double gemm_cap(const bench_opts *o) { return o->quick ? 0.3 : 1.5; }
static double work_cap(const bench_opts *o) { return o->quick ? 0.5 : 4.0; }
static double rep_target(const bench_opts *o) { return o->quick ? 0.05 : 0.8; }

/* ------------------------------------------------------------------ stats */

typedef struct {
    double median, min, max;
    size_t reps;
} stat_t;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static stat_t stats_of(const double *v, size_t n)
{
    stat_t s = {NAN, NAN, NAN, n};
    if (!n) return s;
    double *c = malloc(n * sizeof *c);
    if (!c) return s;
    memcpy(c, v, n * sizeof *c);
    qsort(c, n, sizeof *c, cmp_double);
    s.min = c[0];
    s.max = c[n - 1];
    s.median = n % 2 ? c[n / 2] : 0.5 * (c[n / 2 - 1] + c[n / 2]);
    free(c);
    return s;
}

/* ------------------------------------------------------------------ results */

typedef struct {
    cJSON *dev;     /* device object */
    cJSON *results; /* its "results" array */
    cJSON *errors;
    int failed;
} report;

static cJSON *add_result(report *r, const char *id, const char *label, const char *kind,
                         const char *unit, int higher_better, stat_t st)
{
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "id", id);
    cJSON_AddStringToObject(e, "label", label);
    cJSON_AddStringToObject(e, "kind", kind);
    cJSON_AddStringToObject(e, "unit", unit);
    cJSON_AddStringToObject(e, "better", higher_better ? "higher" : "lower");
    cJSON_AddNumberToObject(e, "median", st.median);
    cJSON_AddNumberToObject(e, "min", st.min);
    cJSON_AddNumberToObject(e, "max", st.max);
    cJSON_AddNumberToObject(e, "reps", (double)st.reps);
    cJSON_AddItemToArray(r->results, e);
    return e;
}

/* The message of the last error (or the status name). */
static const char *last_error(kdcl_status s)
{
    const char *msg = kdcl_last_error();
    return msg && *msg ? msg : kdcl_status_name(s);
}

/* A workload failed: say so (stderr, and "errors" when there is a report),
 * keep going with the others. */
static void workload_failed(report *r, const char *what, kdcl_status s)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s: %s", what, last_error(s));
    fflush(stdout);
    fprintf(stderr, "kdcl bench: %s\n", buf);
    if (!r) return;
    cJSON_AddItemToArray(r->errors, cJSON_CreateString(buf));
    r->failed = 1;
}

static void fmt_stat(char *buf, size_t size, stat_t s, int decimals)
{
    if (isnan(s.median))
        snprintf(buf, size, "-");
    else if (s.reps > 1)
        snprintf(buf, size, "%.*f [%.*f-%.*f]", decimals, s.median, decimals, s.min, decimals,
                 s.max);
    else
        snprintf(buf, size, "%.*f", decimals, s.median);
}

/* ------------------------------------------------------------------ GEMM */

static const char *tr(kdcl_trans a, kdcl_trans b)
{
    return a ? (b ? "TT" : "TN") : (b ? "NT" : "NN");
}

typedef struct {
    char id[64];
    char model[16];
    char what[80];   /* kdcl_gemm_shape.what, or "square 1024^3" */
    size_t m, n, k, batch, calls;
    kdcl_trans ta, tb;
} shape_t;

#define MAX_SHAPES 96

/* Add a product (batch 0: a square reference shape) unless its id is there
 * already (the same product in another layer or model: it counts once, the
 * calls of the first model's layers add up). -1 when the table is full. */
static int add_shape(shape_t *s, size_t *n, const char *model, const char *what, size_t batch,
                     size_t calls, size_t m, size_t nn, size_t k, kdcl_trans ta, kdcl_trans tb)
{
    char id[64];
    if (batch)
        snprintf(id, sizeof id, "gemm.%zux%zux%zu.%s", m, nn, k, tr(ta, tb));
    else
        snprintf(id, sizeof id, "gemm.sq%zu", m);
    for (size_t i = 0; i < *n; i++)
        if (!strcmp(s[i].id, id)) {
            if (!strcmp(s[i].model, model)) s[i].calls += calls;
            return 0;
        }
    if (*n == MAX_SHAPES) return -1;
    shape_t *x = &s[(*n)++];
    memset(x, 0, sizeof *x);
    snprintf(x->id, sizeof x->id, "%s", id);
    snprintf(x->model, sizeof x->model, "%s", model);
    snprintf(x->what, sizeof x->what, "%s", what);
    x->m = m;
    x->n = nn;
    x->k = k;
    x->batch = batch;
    x->calls = calls;
    x->ta = ta;
    x->tb = tb;
    return 0;
}

/* The products of one training step of cfg's model at batch B, as
 * kdcl_model_gemm_shapes lists them. */
static kdcl_status add_model_shapes(kdcl_ctx *ctx, const model_cfg *cfg, size_t B, shape_t *s,
                                    size_t *n)
{
    kdcl_model *m = NULL;
    kdcl_gemm_shape g[256];
    /* as trained (the layer names match the step profile's); the shapes take
     * B, so a model of one row is enough */
    kdcl_status st = cfg_model(ctx, cfg, 1, 1, &m);
    if (st) return st;
    size_t ng = kdcl_model_gemm_shapes(m, B, g, sizeof g / sizeof g[0]);
    kdcl_model_destroy(m);
    if (ng > sizeof g / sizeof g[0])
        return kdcl_set_error(KDCL_ERR_INTERNAL, "%s: %zu GEMM shapes, more than %zu", cfg->model,
                              ng, sizeof g / sizeof g[0]);
    for (size_t i = 0; i < ng; i++)
        if (add_shape(s, n, cfg->model, g[i].what, B, g[i].count, g[i].m, g[i].n, g[i].k,
                      g[i].ta ? KDCL_TRANS : KDCL_NO_TRANS, g[i].tb ? KDCL_TRANS : KDCL_NO_TRANS))
            return kdcl_set_error(KDCL_ERR_INTERNAL, "more than %d distinct GEMM shapes",
                                  MAX_SHAPES);
    return KDCL_OK;
}

/* The GEMMs timed: the teacher's step at B = 128 (and 1024), without --quick
 * also LeNet-5's and ResNet-20's at B = 128 and 1024^3, 4096^3 when big. A
 * model whose shapes cannot be listed is reported (rep, or stderr when NULL)
 * and left out. */
static size_t build_shapes(kdcl_ctx *ctx, int quick, int big, shape_t *s, report *rep)
{
    size_t n = 0;
    static const size_t batches[2] = {128, 1024};
    for (size_t i = 0; i < (quick ? 1u : 2u); i++) {
        kdcl_status st = add_model_shapes(ctx, &TEACHER, batches[i], s, &n);
        if (st) workload_failed(rep, "GEMM shapes of the teacher", st);
    }
    if (!quick) {
        const model_cfg *cnn[2] = {&LENET5, &RESNET20};
        for (size_t i = 0; i < 2; i++) {
            kdcl_status st = add_model_shapes(ctx, cnn[i], 128, s, &n);
            if (st) {
                char what[64];
                snprintf(what, sizeof what, "GEMM shapes of %s", cnn[i]->model);
                workload_failed(rep, what, st);
            }
        }
        add_shape(s, &n, "", "square 1024^3", 0, 1, 1024, 1024, 1024, KDCL_NO_TRANS,
                  KDCL_NO_TRANS);
    }
    if (big)
        add_shape(s, &n, "", "square 4096^3", 0, 1, 4096, 4096, 4096, KDCL_NO_TRANS,
                  KDCL_NO_TRANS);
    return n;
}

static double flops(const shape_t *s) { return 2.0 * (double)s->m * (double)s->n * (double)s->k; }


/* GFLOP/s of each shape: three warm-up calls, then up to reps calls timed on the
 * device (markers around the call, queue gated) until min_reps and the cap. */
static kdcl_status measure_gemms(kdcl_ctx *ctx, const bench_opts *o, const shape_t *sh, size_t ns,
                                 stat_t *out, double *first_call)
{
    size_t need[3] = {1, 1, 1};
    for (size_t i = 0; i < ns; i++) bench_gemm_need(need, sh[i].m, sh[i].n, sh[i].k);
    bench_gemm_bufs g = {0};
    double *t = malloc((o->reps ? o->reps : 1) * sizeof *t);
    kdcl_status s = KDCL_OK;
    if (!t) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    if ((s = bench_gemm_bufs_alloc(ctx, need, &g))) goto done;
    *first_call = NAN;
    for (size_t i = 0; i < ns; i++) {
        const shape_t *x = &sh[i];
        double t0 = kdcl_wall_seconds();
        if ((s = bench_gemm_run(ctx, &g, x->ta, x->tb, x->m, x->n, x->k)) ||
            (s = kdcl_ctx_finish(ctx)))
            goto done;
        if (i == 0) *first_call = kdcl_wall_seconds() - t0;
        /* two more untimed calls: under PoCL the first calls after a buffer
         * (CLBlast's temporaries, kdcl's packing scratch) is created or grown
         * run up to 2x slower while its pages are first touched */
        for (int w = 0; w < 2; w++)
            if ((s = bench_gemm_run(ctx, &g, x->ta, x->tb, x->m, x->n, x->k)) ||
                (s = kdcl_ctx_finish(ctx)))
                goto done;
        double used = 0;
        size_t r = 0;
        while (r < o->reps) {
            double sec = 0;
            if ((s = bench_gemm_time(ctx, &g, x->ta, x->tb, x->m, x->n, x->k, &sec))) goto done;
            used += sec;
            t[r++] = sec > 0 ? flops(&sh[i]) / sec * 1e-9 : NAN;
            if (r >= min_reps(o) && used >= gemm_cap(o)) break;
        }
        out[i] = stats_of(t, r);
    }
done:
    free(t);
    bench_gemm_bufs_free(ctx, &g);
    return s;
}

/* CLBlast's own parameters: run the GEMM table in a child with
 * KDCL_NO_TUNING=1 (CLBlast keeps overridden parameters per device for the
 * whole process, so this cannot share our process), every product through
 * CLBlast (KDCL_GEMM_SMALL=0: not kdcl's kernels for narrow products). */
static int run_default_child(const bench_opts *o, const kdcl_device_info *d, const shape_t *sh,
                             size_t ns, stat_t *out, char *tuning, size_t tsize)
{
    char exe[4096], cmd[8192] = "KDCL_NO_TUNING=1 KDCL_GEMM_SMALL=0 ";
    bench_self_exe(exe, sizeof exe, o->exe);
    bench_shell_quote(cmd, sizeof cmd, exe);
    size_t len = strlen(cmd);
    snprintf(cmd + len, sizeof cmd - len, " bench --child-gemm --device %u:%u --reps %zu%s%s",
             d->platform_index, d->device_index, o->reps, o->quick ? " --quick" : "",
             o->full ? " --full" : "");
    for (size_t i = 0; i < ns; i++) out[i] = (stat_t){NAN, NAN, NAN, 0};
    fflush(stdout);
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    char line[512];
    int got = 0;
    while (fgets(line, sizeof line, f)) {
        char id[64];
        double med, mn, mx;
        size_t reps;
        if (!strncmp(line, "T ", 2)) {
            line[strcspn(line, "\n")] = '\0';
            snprintf(tuning, tsize, "%.*s", (int)(tsize - 1), line + 2);
        } else if (sscanf(line, "G %63s %lf %lf %lf %zu", id, &med, &mn, &mx, &reps) == 5) {
            for (size_t i = 0; i < ns; i++)
                if (!strcmp(sh[i].id, id)) {
                    out[i] = (stat_t){med, mn, mx, reps};
                    got++;
                }
        }
    }
    int rc = pclose(f);
    return (rc == 0 && got > 0) ? 0 : -1;
}

/* ------------------------------------------------------------------ data */

/* n random u8 images of c x h x w (HWC) with random labels in 0..9. */
static kdcl_status synthetic(size_t n, size_t c, size_t h, size_t w, uint64_t seed,
                             kdcl_dataset *ds)
{
    memset(ds, 0, sizeof *ds);
    ds->n = n;
    ds->h = h;
    ds->w = w;
    ds->c = c;
    ds->dim = c * h * w;
    ds->n_classes = N_CLASSES;
    ds->images = malloc(n * ds->dim);
    ds->labels = malloc(n * sizeof *ds->labels);
    if (!ds->images || !ds->labels) {
        kdcl_dataset_free(ds);
        return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    }
    kdcl_rng r;
    kdcl_rng_seed(&r, seed);
    for (size_t i = 0; i < n * ds->dim; i += 8) {
        uint64_t v = kdcl_rng_next(&r);
        for (size_t j = 0; j < 8 && i + j < n * ds->dim; j++) ds->images[i + j] = (uint8_t)(v >> (8 * j));
    }
    for (size_t i = 0; i < n; i++) ds->labels[i] = (int32_t)kdcl_rng_below(&r, N_CLASSES);
    return KDCL_OK;
}

/* The synthetic sets: 1x28x28 (MLPs, LeNet-5) and 3x32x32 (ResNet-20). */
typedef struct {
    kdcl_dataset grey, rgb;
} bench_data;

static kdcl_status bench_data_create(const bench_opts *o, bench_data *d)
{
    memset(d, 0, sizeof *d);
    kdcl_status s = synthetic(o->quick ? 2048 : 16384, 1, 28, 28, 20240601, &d->grey);
    if (!s) s = synthetic(o->quick ? 1024 : 8192, 3, 32, 32, 20240602, &d->rgb);
    return s;
}

static void bench_data_free(bench_data *d)
{
    kdcl_dataset_free(&d->grey);
    kdcl_dataset_free(&d->rgb);
}

/* The set whose images have cfg's input shape. */
static const kdcl_dataset *data_for(const bench_data *d, const model_cfg *cfg)
{
    return cfg->c == 3 ? &d->rgb : &d->grey;
}

/* The first n examples (shares the memory; never freed). */
static kdcl_dataset ds_view(const kdcl_dataset *d, size_t n)
{
    kdcl_dataset v = *d;
    v.n = n < d->n ? n : d->n;
    return v;
}

static size_t round_to(double x, size_t unit, size_t lo, size_t hi)
{
    size_t n = x > 0 && x < 1e12 ? (size_t)(x / (double)unit) * unit : lo;
    if (n < lo) n = lo;
    if (n > hi) n = hi / unit * unit;
    return n;
}

/* ------------------------------------------------------------------ step profile */

typedef enum { SEC_DATA, SEC_FORWARD, SEC_LOSS, SEC_BACKWARD, SEC_OPTIM, SEC_KINDS } sec_kind;
static const char *const sec_names[SEC_KINDS] = {"data", "forward", "loss", "backward",
                                                 "optimizer"};

/* The kind of a section: the model's per-layer sections end in " fwd" / " bwd". */
static sec_kind section_kind(const char *name)
{
    size_t n = strlen(name);
    if (n > 4 && !strcmp(name + n - 4, " fwd")) return SEC_FORWARD;
    if (n > 4 && !strcmp(name + n - 4, " bwd")) return SEC_BACKWARD;
    if (!strcmp(name, "forward")) return SEC_FORWARD;
    if (!strcmp(name, "backward")) return SEC_BACKWARD;
    if (!strcmp(name, "loss")) return SEC_LOSS;
    if (!strcmp(name, "optimizer")) return SEC_OPTIM;
    return SEC_DATA;
}

/* The layer type of a per-layer section "<i> <Type> fwd" ("" for the others). */
static void section_type(const char *name, char *type, size_t size)
{
    type[0] = '\0';
    sec_kind k = section_kind(name);
    if (k != SEC_FORWARD && k != SEC_BACKWARD) return;
    const char *sp = strchr(name, ' ');
    if (!sp || strlen(sp + 1) <= 4) return;
    size_t len = strlen(sp + 1) - 4;
    snprintf(type, size, "%.*s", (int)len, sp + 1);
}

/* Training steps are the library's own (kdcl_trainer_step, the step
 * kdcl_train runs); the profiler attached to the context cuts them into
 * sections: phases, layers or ops (kdcl/profile.h). */
typedef struct {
    kdcl_trainer *t;
    kdcl_profiler *p;
    float lr, momentum;
} step_env;

/* A gated profile holds the queue until kdcl_profiler_end: an op that waited
 * on the queue while the step is enqueued would wait for ever. Enqueueing a
 * step takes milliseconds, so a watchdog ends the process with a message
 * instead of hanging (KDCL_BENCH_NO_GATE=1 profiles without the gate). */
#define WATCHDOG_SECONDS 120

static void watchdog_fire(int sig)
{
    (void)sig;
    static const char msg[] =
        "\nkdcl bench: enqueueing one training step behind the profiler's gate has taken over "
        "120 s: an op of the step waits on the queue (run with KDCL_BENCH_NO_GATE=1 to "
        "profile without the gate)\n";
    if (write(2, msg, sizeof msg - 1) < 0) _exit(CLI_EXIT_FAIL);
    _exit(CLI_EXIT_FAIL);
}

static void watchdog(int on)
{
    static struct sigaction old;
    if (on) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = watchdog_fire;
        sigaction(SIGALRM, &sa, &old);
        alarm(WATCHDOG_SECONDS);
    } else {
        alarm(0);
        sigaction(SIGALRM, &old, NULL);
    }
}

/* One profiled step: begin (gated or not), the step, end; secs gets the
 * sections' device seconds (at most cap), *n_sec their number; names and
 * ops (may be NULL) their scopes and ops; host_ms the host time to enqueue
 * the step, startup_ms the gate's start-up. */
static kdcl_status profiled_step(const step_env *e, size_t step, int gate, kdcl_prof_detail detail,
                                 double *secs, size_t cap, size_t *n_sec,
                                 char (*names)[KDCL_PROF_NAME], char (*ops)[KDCL_PROF_NAME],
                                 double *host_ms, double *startup_ms)
{
    kdcl_status s = kdcl_profiler_begin(e->p, gate, detail);
    if (s) return s;
    if (gate) watchdog(1);
    double t0 = kdcl_wall_seconds();
    s = kdcl_trainer_step(e->t, step, e->lr, e->momentum);
    double t1 = kdcl_wall_seconds(); /* the gate holds the device back until end() */
    if (gate) watchdog(0);
    /* end() may close one more section than marked so far */
    if (!s && kdcl_profiler_sections(e->p) + 1 > cap)
        s = kdcl_set_error(KDCL_ERR_INTERNAL, "%zu sections to profile, room for %zu",
                           kdcl_profiler_sections(e->p) + 1, cap);
    if (s) {
        (void)kdcl_profiler_end(e->p, NULL); /* releases the gate */
        return s;
    }
    if ((s = kdcl_profiler_end(e->p, secs))) return s;
    size_t ns = kdcl_profiler_sections(e->p);
    if (!s) {
        *n_sec = ns;
        for (size_t j = 0; j < ns; j++) {
            if (names) snprintf(names[j], KDCL_PROF_NAME, "%s", kdcl_profiler_name(e->p, j));
            if (ops) snprintf(ops[j], KDCL_PROF_NAME, "%s", kdcl_profiler_op(e->p, j));
        }
        if (host_ms) *host_ms = (t1 - t0) * 1e3;
        if (startup_ms) *startup_ms = kdcl_profiler_startup_s(e->p) * 1e3;
    }
    return s;
}

#define MAX_TYPES 16
#define MAX_OPS 48

static kdcl_status profile_step(kdcl_ctx *ctx, const bench_opts *o, const kdcl_dataset *full,
                                const model_cfg *cfg, size_t B, report *rep, cJSON *profiles)
{
    kdcl_model *m = NULL;
    kdcl_trainer *t = NULL;
    kdcl_profiler *prof = NULL;
    kdcl_status s;
    size_t steps = o->quick ? 1 : (o->reps < 3 ? 3 : o->reps);
    double *sec_t = NULL, *one = NULL, phase_t[SEC_KINDS * 16] = {0}, host_t[16] = {0},
           start_t[16] = {0};
    char (*names)[KDCL_PROF_NAME] = NULL, (*ops)[KDCL_PROF_NAME] = NULL;
    double op_ms[MAX_OPS] = {0};
    char op_names[MAX_OPS][KDCL_PROF_NAME];
    size_t n_ops = 0, op_steps = 0;
    size_t n_sec = 0, done = 0, coarse_done = 0, cap = 0;
    kdcl_dataset ds = ds_view(full, 4 * B);
    kdcl_train_opts to;
    kdcl_train_opts_default(&to);
    to.batch = B;
    to.lr = 0.01f;
    to.max_norm = cfg->max_norm;
    to.seed = 7;
    if (ds.n < B) {
        s = kdcl_set_error(KDCL_ERR_INVALID_ARG, "%zu examples for a batch of %zu", ds.n, B);
        goto done;
    }
    if ((s = cfg_model(ctx, cfg, 1, B, &m)) || (s = kdcl_model_init(m, 1)) ||
        (s = kdcl_trainer_create(m, &ds, &to, NULL, NULL, &t)) ||
        (s = kdcl_trainer_epoch(t, 1)) || (s = kdcl_profiler_create(ctx, &prof)))
        goto done;
    /* room for every op of a step: a few per layer */
    cap = 64 * kdcl_model_n_layers(m) + 64; /* every op of a step (residual blocks: dozens) */
    sec_t = calloc(cap * steps, sizeof *sec_t);
    one = calloc(cap, sizeof *one);
    names = calloc(cap, sizeof *names);
    ops = calloc(cap, sizeof *ops);
    if (!sec_t || !one || !names || !ops) {
        s = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        goto done;
    }
    step_env e = {t, prof, 0.01f, 0.9f};
    size_t nb = kdcl_trainer_steps(t);
    /* warm-up: one step without a profile (builds / loads every kernel) */
    if ((s = kdcl_trainer_step(t, 0, e.lr, e.momentum)) || (s = kdcl_ctx_finish(ctx))) goto done;
    if ((s = kdcl_ctx_set_profiler(ctx, prof))) goto done;
    /* a streaming batcher waits on uploads: no gate then */
    const char *ng = getenv("KDCL_BENCH_NO_GATE");
    int gate = kdcl_trainer_resident(t) && !(ng && *ng && strcmp(ng, "0"));
    double used = 0;
    for (size_t i = 0; i < steps; i++) {
        size_t ns = 0;
        if ((s = profiled_step(&e, (i + 1) % nb, gate, KDCL_PROF_LAYERS, one, cap, &ns,
                               i == 0 ? names : NULL, NULL, NULL, NULL)))
            goto done;
        if (i > 0 && ns != n_sec) {
            s = kdcl_set_error(KDCL_ERR_INTERNAL, "step %zu had %zu sections, the first %zu", i + 1,
                               ns, n_sec);
            goto done;
        }
        n_sec = ns;
        for (size_t j = 0; j < ns; j++) {
            sec_t[j * steps + i] = one[j] * 1e3;
            used += one[j];
        }
        done++;
        if (done >= min_reps(o) && used >= work_cap(o)) break;
    }
    /* the same step in five sections only (the phases, without per-layer
     * markers) and the host's time to enqueue the step */
    for (size_t i = 0; i < done && i < 16; i++) {
        size_t ns = 0;
        double five[SEC_KINDS + 1];
        char five_names[SEC_KINDS + 1][KDCL_PROF_NAME];
        if ((s = profiled_step(&e, (i + 1) % nb, gate, KDCL_PROF_PHASES, five, SEC_KINDS + 1, &ns,
                               five_names, NULL, &host_t[i], &start_t[i])))
            goto done;
        for (size_t j = 0; j < ns; j++)
            phase_t[section_kind(five_names[j]) * 16 + i] += five[j] * 1e3;
        coarse_done++;
    }
    /* and cut per op: where the device time goes, by op (median over steps
     * of each op's total) */
    {
        double *per = calloc(MAX_OPS * 16, sizeof *per);
        if (!per) {
            s = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
            goto done;
        }
        for (size_t i = 0; i < done && i < 16; i++) {
            size_t ns = 0;
            if ((s = profiled_step(&e, (i + 1) % nb, gate, KDCL_PROF_OPS, one, cap, &ns, NULL,
                                   ops, NULL, NULL))) {
                free(per);
                goto done;
            }
            for (size_t j = 0; j < ns; j++) {
                const char *op = ops[j][0] ? ops[j] : "(other)";
                size_t k = 0;
                while (k < n_ops && strcmp(op_names[k], op)) k++;
                if (k == n_ops && n_ops < MAX_OPS) snprintf(op_names[n_ops++], KDCL_PROF_NAME, "%s", op);
                if (k < n_ops) per[k * 16 + i] += one[j] * 1e3;
            }
            op_steps++;
        }
        for (size_t k = 0; k < n_ops; k++) op_ms[k] = stats_of(per + k * 16, op_steps).median;
        free(per);
    }
    (void)kdcl_ctx_set_profiler(ctx, NULL);
    /* report */
    cJSON *pj = cJSON_CreateObject(), *secs = cJSON_CreateArray();
    cJSON_AddStringToObject(pj, "model", cfg->model);
    cJSON_AddStringToObject(pj, "arch", cfg->arch);
    cJSON_AddNumberToObject(pj, "batch", (double)B);
    cJSON_AddNumberToObject(pj, "steps", (double)done);
    cJSON_AddBoolToObject(pj, "gated", gate);
    double sum = 0, by_kind[SEC_KINDS] = {0}, type_ms[MAX_TYPES] = {0};
    char types[MAX_TYPES][KDCL_PROF_NAME];
    size_t n_types = 0;
    stat_t *st = calloc(n_sec ? n_sec : 1, sizeof *st);
    if (!st) {
        cJSON_Delete(pj);
        cJSON_Delete(secs);
        s = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        goto done;
    }
    for (size_t j = 0; j < n_sec; j++) {
        st[j] = stats_of(sec_t + j * steps, done);
        sum += st[j].median;
        by_kind[section_kind(names[j])] += st[j].median;
        char type[KDCL_PROF_NAME];
        section_type(names[j], type, sizeof type);
        if (!type[0]) continue;
        size_t t = 0;
        while (t < n_types && strcmp(types[t], type)) t++;
        if (t == n_types && n_types < MAX_TYPES) snprintf(types[n_types++], sizeof types[0], "%s", type);
        if (t < n_types) type_ms[t] += st[j].median;
    }
    char regime[64];
    cfg_regime(cfg, regime, sizeof regime);
    printf("\nPer-layer device time of one %s training step (%s, %s, B=%zu), median of %zu "
           "steps%s\n",
           cfg->model, cfg->arch, regime, B, done, gate ? "" : " (queue not gated)");
    printf("  %-40s %10s %7s\n", "section", "ms", "share");
    for (size_t j = 0; j < n_sec; j++) {
        double share = sum > 0 ? st[j].median / sum : NAN;
        printf("  %-40s %10.3f %6.1f%%\n", names[j], st[j].median, 100 * share);
        cJSON *oj = cJSON_CreateObject();
        cJSON_AddStringToObject(oj, "name", names[j]);
        cJSON_AddStringToObject(oj, "kind", sec_names[section_kind(names[j])]);
        cJSON_AddNumberToObject(oj, "median_ms", st[j].median);
        cJSON_AddNumberToObject(oj, "min_ms", st[j].min);
        cJSON_AddNumberToObject(oj, "max_ms", st[j].max);
        cJSON_AddNumberToObject(oj, "share", share);
        cJSON_AddItemToArray(secs, oj);
    }
    free(st);
    cJSON_AddItemToObject(pj, "sections", secs);
    printf("  %-40s %10.3f   (", "step (sum of the sections)", sum);
    for (size_t k = 0; k < SEC_KINDS; k++)
        printf("%s%s %.1f%%", k ? ", " : "", sec_names[k], sum > 0 ? 100 * by_kind[k] / sum : NAN);
    printf(")\n");
    cJSON_AddNumberToObject(pj, "sum_ms", sum);
    for (size_t k = 0; k < SEC_KINDS; k++) {
        char key[32];
        snprintf(key, sizeof key, "%s_ms", sec_names[k]);
        cJSON_AddNumberToObject(pj, key, by_kind[k]);
    }
    cJSON *tj = cJSON_CreateObject();
    printf("  %-40s", "by layer type (forward + backward)");
    for (size_t t = 0; t < n_types; t++) {
        printf("%s %s %.1f%%", t ? "," : "", types[t], sum > 0 ? 100 * type_ms[t] / sum : NAN);
        cJSON_AddNumberToObject(tj, types[t], type_ms[t]);
    }
    printf("\n");
    cJSON_AddItemToObject(pj, "layer_types_ms", tj);
    {
        /* ops by time, largest first */
        size_t idx[MAX_OPS];
        double op_sum = 0;
        for (size_t k = 0; k < n_ops; k++) {
            idx[k] = k;
            op_sum += op_ms[k];
        }
        for (size_t a = 1; a < n_ops; a++)
            for (size_t b2 = a; b2 > 0 && op_ms[idx[b2]] > op_ms[idx[b2 - 1]]; b2--) {
                size_t tmp = idx[b2];
                idx[b2] = idx[b2 - 1];
                idx[b2 - 1] = tmp;
            }
        cJSON *oj = cJSON_CreateObject();
        printf("  %-40s", "by op (one section per op)");
        for (size_t a = 0; a < n_ops; a++) {
            size_t k = idx[a];
            if (a < 8)
                printf("%s %s %.1f%%", a ? "," : "", op_names[k],
                       op_sum > 0 ? 100 * op_ms[k] / op_sum : NAN);
            cJSON_AddNumberToObject(oj, op_names[k], op_ms[k]);
        }
        printf("%s\n", n_ops > 8 ? ", ..." : "");
        cJSON_AddItemToObject(pj, "ops_ms", oj);
        cJSON_AddNumberToObject(pj, "ops_sum_ms", op_sum);
    }
    cJSON *phj = cJSON_CreateObject();
    double phase_total = 0;
    printf("  %-40s", "same step, five sections only (ms)");
    for (size_t k = 0; k < SEC_KINDS; k++) {
        stat_t ps = stats_of(phase_t + k * 16, coarse_done);
        phase_total += ps.median;
        cJSON_AddNumberToObject(phj, sec_names[k], ps.median);
        printf(" %s %.2f", sec_names[k], ps.median);
    }
    printf(" = %.3f\n", phase_total);
    cJSON_AddNumberToObject(phj, "total", phase_total);
    cJSON_AddItemToObject(pj, "phases_ms", phj);
    /* host time to enqueue that step: when it approaches the device time, the
     * step is bound by launch overhead, not by the device */
    stat_t hs = stats_of(host_t, coarse_done);
    printf("  %-40s %10.3f   (device time of the step %.3f)\n",
           "host time to enqueue the step (ms)", hs.median, phase_total);
    cJSON_AddNumberToObject(pj, "host_enqueue_ms", hs.median);
    if (gate) {
        /* the profiler's own opening section: kept out of every figure above */
        stat_t qs = stats_of(start_t, coarse_done);
        printf("  %-40s %10.3f   (not part of the step)\n", "device start-up after the gate (ms)",
               qs.median);
        cJSON_AddNumberToObject(pj, "queue_start_ms", qs.median);
    }
    cJSON_AddItemToArray(profiles, pj);
    {
        char id[64], label[128];
        snprintf(id, sizeof id, "step.%s.b%zu", cfg->model, B);
        snprintf(label, sizeof label, "%s training step B=%zu (device ms)", cfg->model, B);
        stat_t one_st = {sum, sum, sum, done};
        cJSON *r = add_result(rep, id, label, "step", "ms", 0, one_st);
        cJSON_AddStringToObject(r, "arch", cfg->arch);
        cJSON_AddNumberToObject(r, "batch", (double)B);
    }
done:
    if (ctx && kdcl_ctx_profiler(ctx) == prof) (void)kdcl_ctx_set_profiler(ctx, NULL);
    free(sec_t);
    free(one);
    free(names);
    free(ops);
    kdcl_profiler_destroy(prof);
    kdcl_trainer_destroy(t);
    kdcl_model_destroy(m);
    return s;
}

/* ------------------------------------------------------------------ throughput */

/* One pass of a workload over the first n examples: its rate (examples/s).
 * seed varies per pass (training draws from it). */
typedef kdcl_status (*pass_fn)(void *arg, size_t n, uint64_t seed, double *rate);

/* Timed passes over n examples (seeds 2, 3, ...): up to min(reps, 64), ending
 * after min_reps once the workload cap is used up; the stats of their rates. */
static kdcl_status repeat_passes(const bench_opts *o, pass_fn pass, void *arg, size_t n,
                                 stat_t *out)
{
    double v[64], used = 0;
    size_t r = 0, reps = o->reps < 64 ? o->reps : 64;
    while (r < reps) {
        double t0 = kdcl_wall_seconds();
        kdcl_status s = pass(arg, n, 2 + r, &v[r]);
        if (s) return s;
        used += kdcl_wall_seconds() - t0;
        r++;
        if (r >= min_reps(o) && used >= work_cap(o)) break;
    }
    *out = stats_of(v, r);
    return KDCL_OK;
}

/* What a training, distillation or inference pass works on. */
typedef struct {
    kdcl_model *m;             /* the model trained or evaluated */
    kdcl_ensemble *e;          /* distillation: the teacher */
    kdcl_targets tg;           /* distillation: how its targets are computed */
    const model_cfg *cfg;      /* training: max-norm */
    const kdcl_dataset *full;
    size_t B;
} job;

/* One epoch's options: batch B, SGD at lr 0.01 with momentum 0.9. */
static void epoch_opts(kdcl_train_opts *to, size_t B, uint64_t seed)
{
    kdcl_train_opts_default(to);
    to->epochs = 1;
    to->batch = B;
    to->lr = 0.01f;
    to->momentum0 = to->momentum1 = 0.9f;
    to->momentum_epochs = 0;
    to->seed = seed;
    to->tag = "bench";
}

/* Create j->m (cfg's model, with its dropout layers when with_dropout,
 * initialised from init_seed), run a one-batch warm-up
 * pass and, when that took under 50 ms, an 8-batch pass whose rate sizes the
 * timed passes (the warm-up's own rate, with kernel loads and first-call
 * set-up in it, can be far too low: 128-example epochs on an H100), then time
 * passes over about rep_target seconds' worth of examples. */
static kdcl_status time_model(kdcl_ctx *ctx, const bench_opts *o, const model_cfg *cfg,
                              int with_dropout, uint64_t init_seed, pass_fn pass, job *j,
                              stat_t *out, size_t *n_used)
{
    double rate = 0;
    kdcl_status s;
    if (j->full->n < j->B)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%zu examples for a batch of %zu",
                              j->full->n, j->B);
    if ((s = cfg_model(ctx, cfg, with_dropout, j->B, &j->m)) ||
        (s = kdcl_model_init(j->m, init_seed)) ||
        (s = pass(j, j->B, 1, &rate))) /* warm-up: one step */
        return s;
    if (rate > 0 && (double)j->B / rate < 0.05 && /* the probe costs under 0.4 s */
        (s = pass(j, round_to(8.0 * (double)j->B, j->B, j->B, j->full->n), 1, &rate)))
        return s;
    size_t n = round_to(rate * rep_target(o), j->B, j->B, j->full->n);
    if ((s = repeat_passes(o, pass, j, n, out))) return s;
    *n_used = n;
    return KDCL_OK;
}

/* ------------------------------------------------------------------ training */

static kdcl_status train_epoch(void *arg, size_t n, uint64_t seed, double *rate)
{
    const job *j = arg;
    kdcl_dataset ds = ds_view(j->full, n);
    kdcl_train_opts to;
    epoch_opts(&to, j->B, seed);
    to.max_norm = j->cfg->max_norm; /* dropout: layers of the model */
    kdcl_epoch_stats st;
    kdcl_status s = kdcl_train(j->m, &ds, &to, NULL, NULL, &st);
    if (!s) *rate = st.samples_per_s;
    return s;
}

static kdcl_status bench_train(kdcl_ctx *ctx, const bench_opts *o, const kdcl_dataset *full,
                               const model_cfg *cfg, size_t B, stat_t *out, size_t *n_used,
                               double *macs)
{
    job j = {.cfg = cfg, .full = full, .B = B};
    kdcl_status s = time_model(ctx, o, cfg, 1, 3, train_epoch, &j, out, n_used);
    *macs = j.m ? kdcl_model_macs(j.m) : NAN;
    kdcl_model_destroy(j.m);
    return s;
}

/* ------------------------------------------------------------------ distillation */

/* One epoch of kdcl_distill: the student on a teacher's soft targets (T = 4,
 * alpha = 0.5), computed per batch on the device or cached for the set. */
static kdcl_status distill_epoch(void *arg, size_t n, uint64_t seed, double *rate)
{
    const job *j = arg;
    kdcl_dataset ds = ds_view(j->full, n);
    kdcl_train_opts to;
    epoch_opts(&to, j->B, seed);
    kdcl_distill_opts d = {4.0f, 0.5f, KDCL_KD_KL, j->tg};
    kdcl_epoch_stats st;
    double t0 = kdcl_wall_seconds();
    kdcl_status s = kdcl_distill(j->m, j->e, &ds, &to, &d, &st, NULL);
    /* cached: the teachers' pass over the set counts too */
    if (!s) *rate = j->tg == KDCL_TARGETS_CACHED ? (double)n / (kdcl_wall_seconds() - t0)
                                                 : st.samples_per_s;
    return s;
}

static kdcl_status bench_distill(kdcl_ctx *ctx, const bench_opts *o, const kdcl_dataset *full,
                                 const model_cfg *teacher, const model_cfg *student, size_t B,
                                 kdcl_targets tg, stat_t *out, size_t *n_used)
{
    kdcl_model *t = NULL;
    job j = {.tg = tg, .full = full, .B = B};
    char path[] = "/tmp/kdcl-bench-teacher-XXXXXX";
    int fd = mkstemp(path);
    kdcl_status s;
    if (fd < 0) return kdcl_set_error(KDCL_ERR_IO, "cannot create a temporary teacher file");
    close(fd);
    if ((s = cfg_model(ctx, teacher, 0, B, &t)) || (s = kdcl_model_init(t, 7)) ||
        (s = kdcl_model_save(t, path, NULL, NULL, 0)))
        goto done;
    const char *paths[1] = {path};
    if ((s = kdcl_ensemble_load(ctx, paths, 1, B, KDCL_ENS_PROB, &j.e))) goto done;
    s = time_model(ctx, o, student, 0, 3, distill_epoch, &j, out, n_used);
done:
    if (j.e) kdcl_ensemble_free(j.e);
    kdcl_model_destroy(t);
    kdcl_model_destroy(j.m);
    remove(path);
    return s;
}

/* ------------------------------------------------------------------ time to a test error */

/* The time-to-error workload: the MLP below, SGD with momentum, trained
 * epoch by epoch on Fashion-MNIST's training split until its test error is
 * at most TTE_TARGET; the time counts training only (evaluations apart). */
#define TTE_TARGET 0.18
#define TTE_ARCH "784-100-10"
#define TTE_BATCH 128
#define TTE_DEFAULT_DATA "/usr/share/datasets/fashion-mnist"

static kdcl_status bench_tte(kdcl_ctx *ctx, const kdcl_dataset *train, const kdcl_dataset *test,
                             size_t max_epochs, double *secs, size_t *epochs, double *err)
{
    static const model_cfg cfg = {"mlp100", TTE_ARCH, 0.0f, 0.0f, 0.0f, 1, 28, 28};
    kdcl_model *m = NULL;
    kdcl_optim *opt = NULL;
    *secs = NAN;
    *epochs = 0;
    *err = NAN;
    kdcl_train_opts to;
    kdcl_train_opts_default(&to);
    to.epochs = 1;
    to.batch = TTE_BATCH;
    to.lr = 0.1f;
    to.momentum0 = to.momentum1 = 0.9f;
    kdcl_optim_opts oo = kdcl_train_optim_opts(&to);
    kdcl_status s;
    if ((s = cfg_model(ctx, &cfg, 0, TTE_BATCH, &m)) || (s = kdcl_model_init(m, 1)) ||
        (s = kdcl_optim_create(m, &oo, &opt)))
        goto done;
    to.optim = opt;
    double total = 0;
    for (size_t e = 1; e <= max_epochs; e++) {
        to.seed = 1000 + e; /* a new order every epoch */
        double t0 = kdcl_wall_seconds();
        if ((s = kdcl_train(m, train, &to, NULL, NULL, NULL)) || (s = kdcl_ctx_finish(ctx)))
            goto done;
        total += kdcl_wall_seconds() - t0;
        kdcl_eval_result r;
        if ((s = kdcl_evaluate(m, test, 0, &r))) goto done;
        *err = (double)r.errors / (double)r.n;
        kdcl_eval_result_free(&r);
        *epochs = e;
        if (*err <= TTE_TARGET) {
            *secs = total;
            break;
        }
    }
done:
    kdcl_optim_destroy(opt);
    kdcl_model_destroy(m);
    return s;
}

/* ------------------------------------------------------------------ inference */

static kdcl_status eval_once(void *arg, size_t n, uint64_t seed, double *rate)
{
    (void)seed;
    const job *j = arg;
    kdcl_dataset ds = ds_view(j->full, n);
    kdcl_eval_result r;
    double t0 = kdcl_wall_seconds();
    kdcl_status s = kdcl_evaluate(j->m, &ds, 0, &r);
    double dt = kdcl_wall_seconds() - t0;
    if (s) return s;
    kdcl_eval_result_free(&r);
    *rate = (double)n / dt;
    return KDCL_OK;
}

static kdcl_status bench_infer(kdcl_ctx *ctx, const bench_opts *o, const kdcl_dataset *full,
                               const model_cfg *cfg, size_t B, stat_t *out, size_t *n_used)
{
    job j = {.full = full, .B = B};
    kdcl_status s = time_model(ctx, o, cfg, 0, 5, eval_once, &j, out, n_used);
    kdcl_model_destroy(j.m);
    return s;
}

/* Ensemble inference: every member's forward on each batch, softmax of each
 * into a row of P [M, stride], the average over members as one GEMM
 * (ones[1,M] * P / M), and the ensemble's argmax counted into a confusion
 * matrix (read once at the end). */
typedef struct {
    kdcl_ctx *ctx;
    const kdcl_dataset *full; /* the examples ensemble_run reads */
    kdcl_model *mem[ENSEMBLE_MEMBERS];
    size_t M, B, K, stride;
    kdcl_tensor P, views[ENSEMBLE_MEMBERS], ones, avg, conf;
} ensemble;

static void ensemble_free(ensemble *e)
{
    for (size_t i = 0; i < e->M; i++) {
        kdcl_tensor_free(e->ctx, &e->views[i]);
        kdcl_model_destroy(e->mem[i]);
    }
    kdcl_tensor_free(e->ctx, &e->P);
    kdcl_tensor_free(e->ctx, &e->ones);
    kdcl_tensor_free(e->ctx, &e->avg);
    kdcl_tensor_free(e->ctx, &e->conf);
}

static kdcl_status ensemble_create(kdcl_ctx *ctx, const kdcl_dataset *full,
                                   const model_cfg *cfg, size_t M, size_t B, ensemble *e)
{
    memset(e, 0, sizeof *e);
    e->ctx = ctx;
    e->full = full;
    e->B = B;
    kdcl_status s;
    while (e->M < M) {
        kdcl_model *m = NULL;
        if ((s = cfg_model(ctx, cfg, 0, B, &m))) return s;
        e->mem[e->M++] = m;
        if ((s = kdcl_model_init(m, 100 + e->M - 1))) return s;
    }
    e->K = kdcl_model_classes(e->mem[0]);
    size_t al = kdcl_align_elems(ctx, KDCL_F32);
    e->stride = (B * e->K + al - 1) / al * al;
    size_t ps[2] = {M, e->stride}, os[2] = {1, M}, av[1] = {B * e->K}, cf[1] = {e->K * e->K};
    if ((s = kdcl_tensor_alloc(ctx, &e->P, KDCL_F32, 2, ps)) ||
        (s = kdcl_tensor_alloc(ctx, &e->ones, KDCL_F32, 2, os)) ||
        (s = kdcl_tensor_alloc(ctx, &e->avg, KDCL_F32, 1, av)) ||
        (s = kdcl_tensor_alloc(ctx, &e->conf, KDCL_I32, 1, cf)) ||
        (s = kdcl_tensor_fill(ctx, &e->ones, 1.0f / (float)M)) ||
        (s = kdcl_tensor_fill(ctx, &e->P, 0.0f)))
        return s;
    for (size_t i = 0; i < M; i++) {
        size_t vs[2] = {B, e->K};
        if ((s = kdcl_tensor_view(ctx, &e->P, i * e->stride, 2, vs, &e->views[i]))) return s;
    }
    return KDCL_OK;
}

static kdcl_status ensemble_run(void *arg, size_t n, uint64_t seed, double *rate)
{
    (void)seed;
    ensemble *e = arg;
    kdcl_ctx *ctx = e->ctx;
    kdcl_dataset ds = ds_view(e->full, n);
    size_t B = e->B < ds.n ? e->B : ds.n;
    kdcl_batcher *b = NULL;
    kdcl_status s = kdcl_batcher_create(ctx, &ds, B, &b);
    if (s) return s;
    int32_t *conf = calloc(e->K * e->K, sizeof *conf);
    if (!conf) {
        kdcl_batcher_destroy(b);
        return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    }
    if ((s = kdcl_tensor_upload(ctx, &e->conf, 0, e->K * e->K, conf))) goto done;
    double t0 = kdcl_wall_seconds();
    for (size_t start = 0; start < ds.n; start += B) {
        size_t count = ds.n - start < B ? ds.n - start : B;
        size_t vs[2] = {count, e->K};
        if ((s = kdcl_batcher_load(b, start, count))) goto done;
        for (size_t i = 0; i < e->M; i++) {
            kdcl_model *m = e->mem[i];
            if ((s = kdcl_model_forward_u8(m, kdcl_batcher_images(b), count)) ||
                (s = kdcl_tensor_reshape(&e->views[i], 2, vs)) ||
                (s = kdcl_op_softmax(ctx, kdcl_model_logits(m), &e->views[i], 1.0f, 0)))
                goto done;
        }
        /* avg[1, count*K] = (1/M) ones[1,M] * P[M, count*K] (ld = stride) */
        if ((s = kdcl_gemm(ctx, KDCL_NO_TRANS, KDCL_NO_TRANS, 1, count * e->K, e->M, 1.0f,
                           e->ones.buf, 0, e->M, e->P.buf, 0, e->stride, 0.0f, e->avg.buf, 0,
                           count * e->K, NULL)) ||
            (s = kdcl_tensor_reshape(&e->avg, 2, vs)) ||
            (s = kdcl_op_confusion(ctx, &e->avg, kdcl_batcher_labels(b), &e->conf)))
            goto done;
    }
    if ((s = kdcl_tensor_download(ctx, &e->conf, 0, e->K * e->K, conf))) goto done;
    *rate = (double)ds.n / (kdcl_wall_seconds() - t0);
done:
    free(conf);
    kdcl_batcher_destroy(b);
    return s;
}

static kdcl_status bench_ensemble(kdcl_ctx *ctx, const bench_opts *o, const kdcl_dataset *full,
                                  const model_cfg *cfg, size_t B, stat_t *out, size_t *n_used,
                                  size_t *batch_used)
{
    ensemble e;
    double rate = 0;
    kdcl_status s;
    size_t unit = B < 128 ? B : 128;
    if ((s = ensemble_create(ctx, full, cfg, ENSEMBLE_MEMBERS, B, &e)) ||
        (s = ensemble_run(&e, unit, 0, &rate)))
        goto done;
    /* a slow device gets fewer than B images (multiples of 128) per repetition */
    double want = rate * rep_target(o);
    size_t n = want >= (double)B ? round_to(want, B, B, full->n) : round_to(want, unit, unit, full->n);
    if ((s = repeat_passes(o, ensemble_run, &e, n, out))) goto done;
    *n_used = n;
    *batch_used = n < B ? n : B;
done:
    ensemble_free(&e);
    return s;
}

/* The specialists' KL combination on random logits: K classes, clusters of
 * (up to) 10 consecutive classes, B rows; its rate in rows/s over passes of
 * `rows` rows (each a kdcl_combine of B rows, then one clFinish). */
typedef struct {
    kdcl_ctx *ctx;
    kdcl_combiner *cb;
    kdcl_tensor z;
    kdcl_combine_opts co;
    size_t B;
} combine_job;

static kdcl_status combine_pass(void *arg, size_t rows, uint64_t seed, double *rate)
{
    (void)seed;
    combine_job *j = arg;
    double t0 = kdcl_wall_seconds();
    kdcl_status s;
    for (size_t done = 0; done < rows; done += j->B)
        if ((s = kdcl_combine(j->cb, &j->z, j->B, &j->co))) return s;
    if ((s = kdcl_ctx_finish(j->ctx))) return s;
    *rate = (double)rows / (kdcl_wall_seconds() - t0);
    return KDCL_OK;
}

static kdcl_status bench_combine(kdcl_ctx *ctx, const bench_opts *o, size_t K, size_t B,
                                 size_t *M_out, size_t *iters, stat_t *out, size_t *n_used)
{
    combine_job j;
    memset(&j, 0, sizeof j);
    j.ctx = ctx;
    j.B = B;
    kdcl_combine_opts_default(&j.co);
    const size_t M = K == 10 ? 4 : K / 10;
    size_t sizes[KDCL_MAX_CLUSTERS];
    int32_t *cls = malloc(K * sizeof *cls);
    const int32_t *lists[KDCL_MAX_CLUSTERS];
    float *h = malloc(B * K * sizeof *h);
    kdcl_clusters c = {0};
    kdcl_status s = KDCL_OK;
    if (!cls || !h) {
        s = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        goto done;
    }
    for (size_t k = 0; k < K; k++) cls[k] = (int32_t)k;
    for (size_t m = 0, at = 0; m < M; m++) { /* K = 10: 3, 3, 2, 2 */
        sizes[m] = K / M + (m < K % M);
        lists[m] = cls + at;
        at += sizes[m];
    }
    kdcl_rng r;
    kdcl_rng_seed(&r, 7);
    for (size_t i = 0; i < B * K; i++) h[i] = (float)(6.0 * kdcl_rng_uniform(&r) - 3.0);
    size_t zs[2] = {B, K};
    if ((s = kdcl_clusters_from_lists(K, M, sizes, lists, &c)) ||
        (s = kdcl_combiner_create(ctx, &c, B, &j.cb)) ||
        (s = kdcl_tensor_alloc(ctx, &j.z, KDCL_F32, 2, zs)) ||
        (s = kdcl_tensor_upload(ctx, &j.z, 0, B * K, h)))
        goto done;
    /* specialists' logits: random too (the combiner reads them as given) */
    for (size_t m = 0; m < M; m++) {
        kdcl_tensor t = {0};
        size_t ts[2] = {B, sizes[m] + 1};
        if ((s = kdcl_tensor_alloc(ctx, &t, KDCL_F32, 2, ts)) ||
            (s = kdcl_tensor_upload(ctx, &t, 0, B * (sizes[m] + 1), h)) ||
            (s = kdcl_combiner_put(j.cb, m, &t, B)) || (s = kdcl_ctx_finish(ctx))) {
            kdcl_tensor_free(ctx, &t);
            goto done;
        }
        kdcl_tensor_free(ctx, &t);
    }
    double rate = 0;
    if ((s = combine_pass(&j, B, 1, &rate))) goto done; /* warm-up (kernel build) */
    size_t n = round_to(rate * rep_target(o), B, B, 1000 * B);
    if ((s = repeat_passes(o, combine_pass, &j, n, out))) goto done;
    *n_used = n;
    *M_out = M;
    *iters = j.co.iters;
done:
    free(cls);
    free(h);
    kdcl_clusters_free(&c);
    kdcl_combiner_destroy(j.cb);
    kdcl_tensor_free(ctx, &j.z);
    return s;
}

/* ------------------------------------------------------------------ host info */

static void cpu_model(char *buf, size_t size)
{
    snprintf(buf, size, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "model name", 10) || !strncmp(line, "Hardware", 8) ||
            !strncmp(line, "cpu model", 9) || !strncmp(line, "Model", 5)) {
            char *c = strchr(line, ':');
            if (!c) continue;
            c++;
            while (*c == ' ' || *c == '\t') c++;
            c[strcspn(c, "\n")] = '\0';
            snprintf(buf, size, "%s", c);
            break;
        }
    }
    fclose(f);
}

static double loadavg(void)
{
    double l = NAN;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = NAN;
        fclose(f);
    }
    return l;
}

static cJSON *host_json(void)
{
    cJSON *h = cJSON_CreateObject();
    char name[256] = "unknown", cpu[256];
    gethostname(name, sizeof name - 1);
    name[sizeof name - 1] = '\0';
    cpu_model(cpu, sizeof cpu);
    cJSON_AddStringToObject(h, "hostname", name);
    cJSON_AddStringToObject(h, "cpu_model", cpu);
    cJSON_AddNumberToObject(h, "cpus", (double)sysconf(_SC_NPROCESSORS_ONLN));
    struct utsname u;
    char os[600] = "unknown";
    if (uname(&u) == 0) snprintf(os, sizeof os, "%s %s %s", u.sysname, u.release, u.machine);
    cJSON_AddStringToObject(h, "os", os);
    cJSON_AddNumberToObject(h, "loadavg_start", loadavg());
    return h;
}

/* "Portable Computing Language" -> "PoCL" etc. for labels. */
static const char *short_platform(const char *p)
{
    if (strstr(p, "Portable Computing Language")) return "PoCL";
    if (strstr(p, "NVIDIA")) return "NVIDIA";
    if (strstr(p, "AMD")) return "AMD";
    if (strstr(p, "Intel")) return "Intel";
    if (strstr(p, "rusticl")) return "rusticl";
    return p;
}

/* ------------------------------------------------------------------ one device */

static const char *human_bytes(uint64_t b, char *buf, size_t size)
{
    if (b >= (1ull << 30))
        snprintf(buf, size, "%.2f GiB", (double)b / (double)(1ull << 30));
    else
        snprintf(buf, size, "%.1f MiB", (double)b / (double)(1ull << 20));
    return buf;
}

static int bench_device(const bench_opts *o, const char *spec, cJSON *devices)
{
    double t_dev = kdcl_wall_seconds();
    kdcl_ctx *ctx;
    double t0 = kdcl_wall_seconds();
    int rc = cli_open_ctx("bench", spec, &ctx);
    if (rc) return rc;
    double ctx_secs = kdcl_wall_seconds() - t0;
    const kdcl_device_info *d = kdcl_ctx_device(ctx);
    const char *tuning = kdcl_ctx_gemm_tuning(ctx);
    int is_cpu = (d->type & CL_DEVICE_TYPE_CPU) != 0;
    int big = !o->quick && (!is_cpu || o->full);
    shape_t sh[MAX_SHAPES];
    size_t ns = 0;
    stat_t tuned[MAX_SHAPES], def[MAX_SHAPES];
    double first_call = NAN;
    kdcl_status s;

    if (o->child) { /* machine-readable GEMM table for the parent */
        ns = build_shapes(ctx, o->quick, big, sh, NULL);
        s = measure_gemms(ctx, o, sh, ns, tuned, &first_call);
        if (!s) {
            printf("T %s\n", tuning);
            for (size_t i = 0; i < ns; i++)
                printf("G %s %.6g %.6g %.6g %zu\n", sh[i].id, tuned[i].median, tuned[i].min,
                       tuned[i].max, tuned[i].reps);
        }
        kdcl_ctx_destroy(ctx);
        return s ? cli_fail("bench", s) : 0;
    }

    report rep = {cJSON_CreateObject(), cJSON_CreateArray(), cJSON_CreateArray(), 0};
    cJSON *dj = rep.dev;
    char label[700];
    snprintf(label, sizeof label, "%s (%s %s)", d->name, short_platform(d->platform_name),
             d->driver_version);
    cJSON_AddStringToObject(dj, "label", label);
    cJSON_AddStringToObject(dj, "device", d->name);
    cJSON_AddStringToObject(dj, "platform", d->platform_name);
    cJSON_AddStringToObject(dj, "platform_version", d->platform_version);
    cJSON_AddStringToObject(dj, "vendor", d->vendor);
    cJSON_AddStringToObject(dj, "driver", d->driver_version);
    cJSON_AddStringToObject(dj, "opencl_version", d->device_version);
    cJSON_AddStringToObject(dj, "opencl_c_version", d->opencl_c_version);
    cJSON_AddStringToObject(dj, "type", kdcl_device_type_name(d->type));
    cJSON_AddNumberToObject(dj, "compute_units", d->compute_units);
    cJSON_AddNumberToObject(dj, "clock_mhz", d->clock_mhz);
    cJSON_AddNumberToObject(dj, "global_mem_bytes", (double)d->global_mem);
    cJSON_AddStringToObject(dj, "platform_vendor", d->platform_vendor);
    cJSON_AddNumberToObject(dj, "max_alloc_bytes", (double)d->max_alloc);
    cJSON_AddBoolToObject(dj, "max_alloc_capped", d->max_alloc_capped);
    cJSON_AddNumberToObject(dj, "local_mem_bytes", (double)d->local_mem);
    cJSON_AddBoolToObject(dj, "fp16", d->fp16);
    cJSON_AddBoolToObject(dj, "fp64", d->fp64);
    cJSON_AddStringToObject(dj, "clblast_version", KDCL_CLBLAST_VERSION);
    cJSON_AddStringToObject(dj, "gemm_params_source", kdcl_gemm_params_source(ctx));
    cJSON_AddStringToObject(dj, "gemm_tuning", tuning);
    const char *conv_algo = kdcl_conv_algo_name(kdcl_conv_algo_in_force(ctx)),
               *conv_set = kdcl_conv_algo_name(kdcl_conv_get_algo(ctx));
    const int conv_direct = kdcl_conv_direct_on(ctx);
    cJSON_AddStringToObject(dj, "conv_algo", conv_algo);
    cJSON_AddStringToObject(dj, "conv_algo_set", conv_set);
    cJSON_AddBoolToObject(dj, "conv_direct", conv_direct);
    cJSON_AddItemToArray(devices, dj);

    printf("\ndevice   %u:%u %s\n", d->platform_index, d->device_index, d->name);
    printf("         %s, %s, driver %s, %u compute units, %u MHz\n", d->platform_name,
           d->device_version, d->driver_version, d->compute_units, d->clock_mhz);
    printf("tuning   %s\n", tuning);
    printf("conv     %s (%s)%s\n", conv_algo,
           kdcl_conv_get_algo(ctx) == KDCL_CONV_AUTO ? "auto for this device type"
                                                     : "set by KDCL_CONV",
           conv_direct ? "; 3x3 and 5x5 on kdcl's direct kernels" : "");
    fflush(stdout);

    /* --- GEMM, tuned (this process) and CLBlast defaults (child) */
    uint64_t peak[4] = {0}; /* after GEMM, step profile, training, inference */
    ns = build_shapes(ctx, o->quick, big, sh, &rep);
    s = measure_gemms(ctx, o, sh, ns, tuned, &first_call);
    if (s) {
        workload_failed(&rep, "GEMM", s);
        for (size_t i = 0; i < ns; i++) tuned[i] = (stat_t){NAN, NAN, NAN, 0};
    }
    peak[0] = kdcl_ctx_mem_stats(ctx).peak_bytes;
    char def_tuning[256] = "";
    int have_def = 0;
    if (strcmp(tuning, "CLBlast defaults") != 0) {
        have_def = run_default_child(o, d, sh, ns, def, def_tuning, sizeof def_tuning) == 0;
        if (!have_def) {
            fprintf(stderr, "kdcl bench: the KDCL_NO_TUNING=1 child run failed; "
                            "no CLBlast-default column\n");
            cJSON_AddItemToArray(rep.errors,
                                 cJSON_CreateString("GEMM with CLBlast defaults: child failed"));
        }
    }
    cJSON_AddItemToObject(dj, "gemm_default_tuning",
                          have_def ? cJSON_CreateString(def_tuning) : cJSON_CreateNull());
    printf("\nGEMM fp32 row-major at the products of the models' training steps "
           "(kdcl_model_gemm_shapes), GFLOP/s median [min-max] (device time, %zu reps max)\n",
           o->reps);
    printf("  %-38s %-18s %-3s %5s %-22s %-22s %s\n", "model, layer, product", "m x n x k", "op",
           "calls", "tuned", have_def ? "CLBlast defaults" : "", have_def ? "speedup" : "");
    for (size_t i = 0; i < ns; i++) {
        char dims[40], a[48], b[48] = "", sp[16] = "", name[100];
        snprintf(dims, sizeof dims, "%zux%zux%zu", sh[i].m, sh[i].n, sh[i].k);
        snprintf(name, sizeof name, "%s%s%s", sh[i].model, sh[i].model[0] ? " " : "", sh[i].what);
        fmt_stat(a, sizeof a, tuned[i], 1);
        if (have_def) {
            fmt_stat(b, sizeof b, def[i], 1);
            if (def[i].median > 0 && !isnan(tuned[i].median))
                snprintf(sp, sizeof sp, "%.2fx", tuned[i].median / def[i].median);
        }
        printf("  %-38s %-18s %-3s %5zu %-22s %-22s %s\n", name, dims, tr(sh[i].ta, sh[i].tb),
               sh[i].calls, a, b, sp);
        for (int v = 0; v < (have_def ? 2 : 1); v++) {
            char id[80], lab[200];
            snprintf(id, sizeof id, "%s%s", sh[i].id, v ? ".default" : "");
            if (sh[i].batch)
                snprintf(lab, sizeof lab, "GEMM %s B=%zu (%s %s)%s", name, sh[i].batch, dims,
                         tr(sh[i].ta, sh[i].tb), v ? " CLBlast defaults" : "");
            else
                snprintf(lab, sizeof lab, "GEMM %s%s", name, v ? " CLBlast defaults" : "");
            if (isnan((v ? def : tuned)[i].median)) continue;
            cJSON *r = add_result(&rep, id, lab, "gemm", "GFLOP/s", 1, (v ? def : tuned)[i]);
            cJSON_AddNumberToObject(r, "m", (double)sh[i].m);
            cJSON_AddNumberToObject(r, "n", (double)sh[i].n);
            cJSON_AddNumberToObject(r, "k", (double)sh[i].k);
            cJSON_AddStringToObject(r, "trans", tr(sh[i].ta, sh[i].tb));
            if (sh[i].batch) {
                cJSON_AddNumberToObject(r, "batch", (double)sh[i].batch);
                cJSON_AddStringToObject(r, "model", sh[i].model);
                cJSON_AddStringToObject(r, "what", sh[i].what);
                cJSON_AddNumberToObject(r, "calls", (double)sh[i].calls);
            } else {
                cJSON_AddNullToObject(r, "batch");
            }
            cJSON_AddStringToObject(r, "variant", v ? "clblast-defaults" : "tuned");
        }
    }
    printf("  (calls: products of this shape in one training step of that model)\n");
    if (!big && !o->quick)
        printf("  (4096^3 skipped on a CPU device; --full runs it)\n");
    fflush(stdout);
    if (o->gemm_only) goto finish;

    /* --- synthetic data */
    bench_data data;
    if ((s = bench_data_create(o, &data))) {
        workload_failed(&rep, "synthetic data", s);
        bench_data_free(&data);
        goto finish;
    }

    /* --- per-layer profiles of training steps */
    cJSON *profiles = cJSON_CreateArray();
    cJSON_AddItemToObject(dj, "kernel_profile", profiles);
    {
        struct {
            const model_cfg *cfg;
            size_t B;
        } prof[5] = {{&TEACHER, 128}, {&TEACHER, 1024}, {&SMALL, 128}, {&LENET5, 128},
                     {&RESNET20, 128}};
        for (size_t i = 0; i < 5; i++) {
            /* the B = 1024 teacher: not with --quick, on CPUs only with --full */
            if (i == 1 && (o->quick || (is_cpu && !o->full))) continue;
            if ((s = profile_step(ctx, o, data_for(&data, prof[i].cfg), prof[i].cfg, prof[i].B,
                                  &rep, profiles))) {
                char what[96];
                snprintf(what, sizeof what, "step profile %s B=%zu", prof[i].cfg->model,
                         prof[i].B);
                printf("\nPer-layer device time of one %s training step (%s, B=%zu): FAILED: %s\n",
                       prof[i].cfg->model, prof[i].cfg->arch, prof[i].B, last_error(s));
                workload_failed(&rep, what, s);
            }
        }
    }
    peak[1] = kdcl_ctx_mem_stats(ctx).peak_bytes;
    fflush(stdout);

    /* --- training throughput */
    printf("\nTraining (kdcl_train, SGD momentum 0.9, synthetic u8 data of the input shape, 10 "
           "classes), samples/s median [min-max]\n");
    {
        struct {
            const model_cfg *cfg;
            size_t B;
        } runs[7] = {{&TEACHER, 128}, {&TEACHER, 1024}, {&STUDENT, 128}, {&STUDENT, 1024},
                     {&SMALL, 128},   {&LENET5, 128},   {&RESNET20, 128}};
        for (size_t i = 0; i < 7; i++) {
            const model_cfg *cfg = runs[i].cfg;
            size_t B = runs[i].B, n = 0;
            if (o->quick && B > 128) continue;
            stat_t st;
            double macs = NAN;
            char id[64], lab[160], v[64], reg[64];
            cfg_regime(cfg, reg, sizeof reg);
            if ((s = bench_train(ctx, o, data_for(&data, cfg), cfg, B, &st, &n, &macs))) {
                char what[96];
                snprintf(what, sizeof what, "training %s B=%zu", cfg->model, B);
                printf("  %-8s %-17s B=%-5zu %-28s FAILED: %s\n", cfg->model, cfg->arch, B, reg,
                       last_error(s));
                workload_failed(&rep, what, s);
                continue;
            }
            fmt_stat(v, sizeof v, st, 0);
            printf("  %-8s %-17s B=%-5zu %-28s %-24s (epochs of %zu)\n", cfg->model, cfg->arch, B,
                   reg, v, n);
            snprintf(id, sizeof id, "train.%s.b%zu", cfg->model, B);
            snprintf(lab, sizeof lab, "train %s %s B=%zu", cfg->model, cfg->arch, B);
            cJSON *r = add_result(&rep, id, lab, "train", "samples/s", 1, st);
            cJSON_AddStringToObject(r, "arch", cfg->arch);
            cJSON_AddNumberToObject(r, "batch", (double)B);
            cJSON_AddNumberToObject(r, "examples", (double)n);
            cJSON *dr = cJSON_CreateArray();
            cJSON_AddItemToArray(dr, cJSON_CreateNumber(cfg->drop_in));
            cJSON_AddItemToArray(dr, cJSON_CreateNumber(cfg->drop_hidden));
            cJSON_AddItemToObject(r, "dropout", dr);
            cJSON_AddNumberToObject(r, "max_norm", cfg->max_norm);
            cJSON *in = cJSON_CreateArray();
            cJSON_AddItemToArray(in, cJSON_CreateNumber((double)cfg->c));
            cJSON_AddItemToArray(in, cJSON_CreateNumber((double)cfg->h));
            cJSON_AddItemToArray(in, cJSON_CreateNumber((double)cfg->w));
            cJSON_AddItemToObject(r, "input", in);
            cJSON_AddNumberToObject(r, "macs", macs);
            fflush(stdout);
        }
    }
    /* distillation: the student on the teacher's soft targets */
    cJSON *dist = cJSON_CreateArray();
    cJSON_AddItemToObject(dj, "distill", dist);
    for (int tg = 0; tg < 2; tg++) {
        size_t B = 128, n = 0;
        stat_t st;
        char id[64], lab[200], v[64];
        kdcl_targets mode = tg ? KDCL_TARGETS_CACHED : KDCL_TARGETS_BATCH;
        if ((s = bench_distill(ctx, o, &data.grey, &TEACHER, &STUDENT, B, mode, &st, &n))) {
            printf("  %-8s %-17s B=%-5zu %-28s FAILED: %s\n", "distill", STUDENT.arch, B,
                   tg ? "cached soft targets" : "per-batch teacher forward", last_error(s));
            workload_failed(&rep, "distillation", s);
            continue;
        }
        fmt_stat(v, sizeof v, st, 0);
        printf("  %-8s %-17s B=%-5zu %-28s %-24s (epochs of %zu)\n", "distill", STUDENT.arch, B,
               tg ? "cached soft targets" : "per-batch teacher forward", v, n);
        snprintf(id, sizeof id, "distill.student.b%zu.%s", B, tg ? "cached" : "batch");
        snprintf(lab, sizeof lab, "distill %s B=%zu (%s targets)", STUDENT.arch, B,
                 tg ? "cached" : "per-batch");
        cJSON *r = add_result(&rep, id, lab, "train", "samples/s", 1, st);
        cJSON_AddStringToObject(r, "arch", STUDENT.arch);
        cJSON_AddNumberToObject(r, "batch", (double)B);
        cJSON_AddNumberToObject(r, "examples", (double)n);
        cJSON_AddStringToObject(r, "targets", tg ? "cached" : "per-batch");
        cJSON_AddItemToArray(dist, cJSON_CreateString(id));
        fflush(stdout);
    }
    peak[2] = kdcl_ctx_mem_stats(ctx).peak_bytes;

    /* --- inference throughput */
    size_t IB = o->quick ? 128 : 1024;
    printf("\nInference (test mode, no dropout), images/s median [min-max]\n");
    for (int w = 0; w < 3; w++) {
        const model_cfg *cfg = w == 2 ? &STUDENT : &TEACHER;
        const char *name = w == 0 ? "teacher" : w == 1 ? "ensemble10" : "student";
        size_t n = 0, batch = IB;
        stat_t st;
        char id[64], lab[160], v[64];
        if (w == 1)
            s = bench_ensemble(ctx, o, &data.grey, cfg, IB, &st, &n, &batch);
        else
            s = bench_infer(ctx, o, &data.grey, cfg, IB, &st, &n);
        if (s) {
            printf("  %-10s %-17s B=%-5zu FAILED: %s\n", name, cfg->arch, batch, last_error(s));
            workload_failed(&rep, "inference", s);
            continue;
        }
        fmt_stat(v, sizeof v, st, 0);
        printf("  %-10s %-17s B=%-5zu %-24s (%zu images per rep%s)\n", name, cfg->arch, batch, v,
               n, w == 1 ? ", 10 teachers, softmax average" : ", kdcl_evaluate");
        /* the id names the nominal batch (comparable across devices); a slow
         * device runs the ensemble on fewer images, i.e. a smaller batch */
        snprintf(id, sizeof id, "infer.%s.b%zu", name, IB);
        snprintf(lab, sizeof lab, "infer %s %s%s B=%zu", name, cfg->arch, w == 1 ? " x10" : "",
                 batch);
        cJSON *r = add_result(&rep, id, lab, "infer", "images/s", 1, st);
        cJSON_AddStringToObject(r, "arch", cfg->arch);
        cJSON_AddNumberToObject(r, "batch", (double)batch);
        cJSON_AddNumberToObject(r, "examples", (double)n);
        cJSON_AddNumberToObject(r, "members", w == 1 ? ENSEMBLE_MEMBERS : 1);
        fflush(stdout);
    }
    /* --- the specialists' KL combination kernel */
    printf("\nSpecialists' KL combination (gradient descent on the device), examples/s median "
           "[min-max]\n");
    for (size_t K = 10; K <= 100; K *= 10) {
        size_t n = 0, M = 0, iters = 0, B = IB;
        stat_t st;
        char id[64], lab[160], v[64];
        if ((s = bench_combine(ctx, o, K, B, &M, &iters, &st, &n))) {
            workload_failed(&rep, "combination", s);
            continue;
        }
        fmt_stat(v, sizeof v, st, 0);
        printf("  K=%-4zu %3zu clusters B=%-5zu %3zu steps       %-24s (%zu rows per rep)\n", K,
               M, B, iters, v, n);
        snprintf(id, sizeof id, "combine.k%zu.b%zu", K, B);
        snprintf(lab, sizeof lab, "combine K=%zu M=%zu B=%zu", K, M, B);
        cJSON *r = add_result(&rep, id, lab, "combine", "examples/s", 1, st);
        cJSON_AddNumberToObject(r, "classes", (double)K);
        cJSON_AddNumberToObject(r, "clusters", (double)M);
        cJSON_AddNumberToObject(r, "batch", (double)B);
        cJSON_AddNumberToObject(r, "iters", (double)iters);
        fflush(stdout);
    }
    peak[3] = kdcl_ctx_mem_stats(ctx).peak_bytes;
    bench_data_free(&data);

    /* --- time to a test error on Fashion-MNIST */
    {
        const char *dir = o->data ? o->data : TTE_DEFAULT_DATA;
        printf("\nTime to %.0f%% test error on Fashion-MNIST (%s, SGD lr 0.1 momentum 0.9, "
               "B=%d; training time, evaluations apart)\n",
               100 * TTE_TARGET, TTE_ARCH, TTE_BATCH);
        kdcl_dataset tr, te;
        memset(&tr, 0, sizeof tr);
        memset(&te, 0, sizeof te);
        int have = kdcl_dataset_load_split(dir, "train", &tr) == KDCL_OK &&
                   kdcl_dataset_load_split(dir, "test", &te) == KDCL_OK;
        if (!have) {
            printf("  skipped: no Fashion-MNIST in %s (%s)%s\n", dir, kdcl_last_error(),
                   o->data ? "" : "; --data DIR names it");
            if (o->data) workload_failed(&rep, "time to error: --data", KDCL_ERR_IO);
        } else {
            double secs, err;
            size_t ep;
            size_t max_ep = o->quick ? 5 : 10;
            if ((s = bench_tte(ctx, &tr, &te, max_ep, &secs, &ep, &err))) {
                workload_failed(&rep, "time to error", s);
            } else {
                if (isfinite(secs))
                    printf("  %-10s %.1f s (%zu epochs; test error %.2f%%)\n", TTE_ARCH, secs,
                           ep, 100 * err);
                else
                    printf("  %-10s not reached in %zu epochs (test error %.2f%%)\n", TTE_ARCH,
                           ep, 100 * err);
                char lab[160];
                snprintf(lab, sizeof lab, "time to %.0f%% test error, Fashion-MNIST %s B=%d",
                         100 * TTE_TARGET, TTE_ARCH, TTE_BATCH);
                stat_t st = {secs, secs, secs, 1};
                cJSON *r = add_result(&rep, "tte.fashion.mlp100", lab, "time", "s", 0, st);
                cJSON_AddStringToObject(r, "arch", TTE_ARCH);
                cJSON_AddNumberToObject(r, "batch", TTE_BATCH);
                cJSON_AddNumberToObject(r, "target_error", TTE_TARGET);
                cJSON_AddNumberToObject(r, "epochs", (double)ep);
                cJSON_AddNumberToObject(r, "test_error", err);
            }
        }
        kdcl_dataset_free(&tr);
        kdcl_dataset_free(&te);
        fflush(stdout);
    }

finish:;
    /* --- memory, builds */
    kdcl_mem_stats ms = kdcl_ctx_mem_stats(ctx);
    kdcl_build_stats bs = kdcl_ctx_build_stats(ctx);
    cJSON *mj = cJSON_CreateObject();
    cJSON_AddNumberToObject(mj, "peak_bytes", (double)ms.peak_bytes);
    cJSON *mem_after = cJSON_CreateObject();
    static const char *phase[4] = {"gemm", "profile", "train", "infer"};
    for (int i = 0; i < 4; i++) cJSON_AddNumberToObject(mem_after, phase[i], (double)peak[i]);
    cJSON_AddItemToObject(mj, "peak_after", mem_after);
    cJSON_AddItemToObject(dj, "memory", mj);
    cJSON *bj = cJSON_CreateObject();
    cJSON_AddNumberToObject(bj, "context_seconds", ctx_secs);
    cJSON_AddNumberToObject(bj, "clblast_first_call_seconds", first_call);
    cJSON_AddNumberToObject(bj, "builds", bs.builds);
    cJSON_AddNumberToObject(bj, "cache_hits", bs.cache_hits);
    cJSON_AddNumberToObject(bj, "cache_rejects", bs.cache_rejects);
    cJSON_AddNumberToObject(bj, "build_seconds", bs.build_seconds);
    cJSON_AddItemToObject(dj, "build", bj);
    char h[5][32];
    printf("\nMemory   peak device memory %s (after GEMM %s, step profile %s, training %s, "
           "inference %s)\n",
           human_bytes(ms.peak_bytes, h[0], sizeof h[0]), human_bytes(peak[0], h[1], sizeof h[1]),
           human_bytes(peak[1], h[2], sizeof h[2]), human_bytes(peak[2], h[3], sizeof h[3]),
           human_bytes(peak[3], h[4], sizeof h[4]));
    printf("Build    context %.2f s; kdcl programs: %u built, %u from cache, %u rejected, %.2f s; "
           "first CLBlast call %.2f s\n",
           ctx_secs, bs.builds, bs.cache_hits, bs.cache_rejects, bs.build_seconds, first_call);
    double secs = kdcl_wall_seconds() - t_dev;
    printf("Time     %.1f s for this device\n", secs);
    cJSON_AddNumberToObject(dj, "seconds", secs);
    cJSON_AddItemToObject(dj, "results", rep.results);
    cJSON_AddItemToObject(dj, "errors", rep.errors);
    kdcl_ctx_destroy(ctx);
    return rep.failed ? CLI_EXIT_FAIL : 0;
}

/* ------------------------------------------------------------------ command */

static int write_json(const char *path, cJSON *root)
{
    char *text = cJSON_Print(root);
    if (!text) {
        fprintf(stderr, "kdcl bench: out of memory writing JSON\n");
        return CLI_EXIT_FAIL;
    }
    size_t n = strlen(text);
    char *buf = realloc(text, n + 2);
    if (!buf) {
        free(text);
        fprintf(stderr, "kdcl bench: out of memory writing JSON\n");
        return CLI_EXIT_FAIL;
    }
    buf[n++] = '\n';
    kdcl_status s = kdcl_write_file_atomic(path, buf, n);
    free(buf);
    return s ? cli_fail("bench", s) : 0;
}

/* "kdcl bench ARGS" as run, each argument shell-quoted where it needs it. */
static void command_line(int argc, char **argv, char *buf, size_t size)
{
    size_t off = (size_t)snprintf(buf, size, "kdcl");
    for (int i = 0; i < argc && off < size; i++) {
        const char *a = argv[i];
        int plain = *a != '\0';
        for (const char *p = a; *p; p++)
            plain &= isalnum((unsigned char)*p) || strchr("-_./:=,@+%", *p) != NULL;
        int w = plain ? snprintf(buf + off, size - off, " %s", a)
                      : snprintf(buf + off, size - off, " '%s'", a);
        if (w < 0) break;
        off += (size_t)w;
    }
}

/* --report DIR --from FILE: the report of an earlier run. */
static int report_from(const char *from, const char *dir)
{
    FILE *f = fopen(from, "rb");
    if (!f) {
        fprintf(stderr, "kdcl bench: cannot open %s: %s\n", from, strerror(errno));
        return CLI_EXIT_USAGE;
    }
    size_t cap = 1 << 16, n = 0;
    char *text = malloc(cap);
    for (;;) {
        if (!text) break;
        n += fread(text + n, 1, cap - n, f);
        if (n < cap || cap >= (64u << 20)) break;
        char *t = realloc(text, cap * 2);
        if (!t) {
            free(text);
            text = NULL;
            break;
        }
        text = t;
        cap *= 2;
    }
    fclose(f);
    if (!text) {
        fprintf(stderr, "kdcl bench: out of memory reading %s\n", from);
        return CLI_EXIT_FAIL;
    }
    cJSON *root = cJSON_ParseWithLength(text, n);
    free(text);
    const char *schema = root ? cJSON_GetStringValue(cJSON_GetObjectItem(root, "schema")) : NULL;
    if (!schema || strcmp(schema, "kdcl-bench-1") != 0) {
        fprintf(stderr, "kdcl bench: %s is not a kdcl-bench-1 JSON file\n", from);
        cJSON_Delete(root);
        return CLI_EXIT_USAGE;
    }
    int rc = bench_report_write(dir, root) ? CLI_EXIT_FAIL : 0;
    cJSON_Delete(root);
    return rc;
}

int cmd_bench(int argc, char **argv)
{
    static const struct option opts[] = {{"json", required_argument, 0, 'j'},
                                         {"device", required_argument, 0, 'd'},
                                         {"all-devices", no_argument, 0, 'a'},
                                         {"quick", no_argument, 0, 'q'},
                                         {"full", no_argument, 0, 'f'},
                                         {"reps", required_argument, 0, 'r'},
                                         {"child-gemm", no_argument, 0, 'c'},
                                         {"report", required_argument, 0, 'R'},
                                         {"from", required_argument, 0, 'F'},
                                         {"gemm-only", no_argument, 0, 'G'},
                                         {"data", required_argument, 0, 'D'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    bench_opts o = {NULL, NULL, 0, 0, 0, 0, 0, 5, argv[0], NULL, NULL, NULL};
    int reps_given = 0, o_c;
    optind = 1;
    opterr = 0;
    while ((o_c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o_c) {
        case 'j': o.json = optarg; break;
        case 'R': o.report = optarg; break;
        case 'F': o.from = optarg; break;
        case 'G': o.gemm_only = 1; break;
        case 'D': o.data = optarg; break;
        case 'd': o.device = optarg; break;
        case 'a': o.all = 1; break;
        case 'q': o.quick = 1; break;
        case 'f': o.full = 1; break;
        case 'c': o.child = 1; break;
        case 'r':
            if (kdcl_parse_size(optarg, &o.reps) || o.reps == 0 || o.reps > 64)
                return cli_usage_error("bench", "--reps needs an integer in 1..64, got '%s'",
                                       optarg);
            reps_given = 1;
            break;
        case 'h':
            printf(
                "usage: kdcl bench [--json FILE] [--report DIR] [--device D | --all-devices]\n"
                "                  [--quick] [--full] [--reps N]\n"
                "       kdcl bench --report DIR --from FILE\n\n"
                "Measures on the device (default: $KDCL_DEVICE, else the first GPU, else the\n"
                "first device), on synthetic data (1x28x28, and 3x32x32 for ResNet-20):\n"
                "  - GEMM GFLOP/s at every distinct product of the models' training steps\n"
                "    (kdcl_model_gemm_shapes): the teacher 784-1200-1200-10 at B = 128 and 1024,\n"
                "    LeNet-5 and ResNet-20 at B = 128 (the convolutions' products as their\n"
                "    route runs them; none for those on CPUs' direct convolution kernels),\n"
                "    plus 1024^3 (and 4096^3 except on CPU devices), with kdcl's GEMM tuning and\n"
                "    with CLBlast's defaults (a KDCL_NO_TUNING=1 child process);\n"
                "  - the device time of every layer's forward and backward in one training\n"
                "    step (OpenCL profiling events) of the teacher, LeNet-5 and ResNet-20, with\n"
                "    the batch gather, the loss and the optimiser around them;\n"
                "  - training samples/s of the teacher 784-1200-1200-10 (dropout 0.2/0.5,\n"
                "    max-norm 3.5) and the student 784-800-800-10 at B = 128 and 1024, and of\n"
                "    the lenet5 (1x28x28) and resnet20 (3x32x32) presets at B = 128;\n"
                "  - distillation samples/s of the student on the teacher's soft targets;\n"
                "  - inference images/s of the teacher, a 10-teacher ensemble and the student;\n"
                "  - the specialists' KL combination, peak device memory, kernel build / cache\n"
                "    statistics.\n"
                "A workload that fails is reported (FAILED in its table, on stderr, in the JSON\n"
                "\"errors\") and the others still run; the exit status is then 1.\n"
                "Each figure is the median [min-max] over up to N repetitions after a warm-up\n"
                "(fewer when a workload has used its time budget).\n\n"
                "options:\n"
                "  --json FILE     also write the results as JSON (schema kdcl-bench-1:\n"
                "                  tools/kdcl-bench-1.md; tools/bench_compare.py merges and\n"
                "                  compares them)\n"
                "  --report DIR    a vendor-comparison report in DIR (created if missing):\n"
                "                  bench.json, bench.csv, report.md (every device's metadata, a\n"
                "                  table per kind of result) and gemm.png, train.png, infer.png\n"
                "  --from FILE     with --report: the report of an earlier run's JSON, measuring\n"
                "                  nothing\n"
                "  --device D      P:D, cpu, gpu or a name substring\n"
                "  --all-devices   every OpenCL device in turn\n"
                "  --quick         smoke run: B = 128 only, the teacher's GEMMs only, one\n"
                "                  repetition (seconds to a few minutes)\n"
                "  --full          also the long workloads skipped on CPU devices (4096^3,\n"
                "                  the B = 1024 teacher step profile)\n"
                "  --reps N        repetitions per workload (default 5, quick 1)\n"
                "  --gemm-only     the GEMM tables only (with --quick: seconds per device)\n"
                "  --data DIR      Fashion-MNIST (IDX files) for the time to reach "
                "18%% test error\n"
                "                  with " TTE_ARCH " (default " TTE_DEFAULT_DATA
                ";\n"
                "                  skipped with a note when it is not there)\n\n"
                "environment: KDCL_BENCH_NO_GATE=1 profiles steps without holding the queue\n"
                "until the whole step is enqueued (the sections then include enqueue gaps);\n"
                "KDCL_CONV=kdcl|clblast|convgemm picks the convolution algorithm (default\n"
                "auto; the line \"conv\" and the JSON's \"conv_algo\" name the one in force)\n");
            return 0;
        default:
            return cli_usage_error("bench", "unknown option or missing value: %s",
                                   argv[optind - 1]);
        }
    }
    if (optind < argc) return cli_usage_error("bench", "unexpected argument '%s'", argv[optind]);
    if (o.all && o.device)
        return cli_usage_error("bench", "--device and --all-devices exclude each other");
    if (o.quick && !reps_given) o.reps = 1;
    if (o.child) return bench_device(&o, o.device, NULL);
    if (o.from && !o.report)
        return cli_usage_error("bench", "--from needs --report DIR (where the report goes)");
    if (o.json) {
        int rc = cli_check_output("bench", "--json", o.json);
        if (rc) return rc;
    }
    if (o.report) {
        int rc = cli_check_output_dir("bench", "--report", o.report);
        if (rc) return rc;
    }
    if (o.from) return report_from(o.from, o.report);

    double t0 = kdcl_wall_seconds();
    cJSON *root = cJSON_CreateObject();
    char date[64] = "";
    time_t now = time(NULL);
    struct tm tmv;
    if (gmtime_r(&now, &tmv)) strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tmv);
    cJSON_AddStringToObject(root, "schema", "kdcl-bench-1");
    cJSON_AddStringToObject(root, "tool", "kdcl");
    cJSON_AddStringToObject(root, "kdcl_version", KDCL_VERSION);
    cJSON_AddStringToObject(root, "date", date);
    cJSON_AddStringToObject(root, "git", KDCL_GIT);
    char cmdline[4096];
    command_line(argc, argv, cmdline, sizeof cmdline);
    cJSON_AddStringToObject(root, "command_line", cmdline);
    cJSON *host = host_json();
    cJSON_AddItemToObject(root, "host", host);
    cJSON *oj = cJSON_CreateObject();
    cJSON_AddBoolToObject(oj, "quick", o.quick);
    cJSON_AddBoolToObject(oj, "full", o.full);
    cJSON_AddNumberToObject(oj, "reps", (double)o.reps);
    cJSON_AddItemToObject(root, "options", oj);
    cJSON *devices = cJSON_CreateArray();
    cJSON_AddItemToObject(root, "devices", devices);
    printf("kdcl %s bench, %s, host %s (%s, %.0f CPUs, load %.2f)%s\n", KDCL_VERSION, date,
           cJSON_GetStringValue(cJSON_GetObjectItem(host, "hostname")),
           cJSON_GetStringValue(cJSON_GetObjectItem(host, "cpu_model")),
           cJSON_GetNumberValue(cJSON_GetObjectItem(host, "cpus")),
           cJSON_GetNumberValue(cJSON_GetObjectItem(host, "loadavg_start")),
           o.quick ? " [quick]" : "");

    int rc = 0;
    if (o.all) {
        kdcl_device_info *devs = NULL;
        size_t nd = 0;
        kdcl_status s = kdcl_list_devices(&devs, &nd);
        if (s) {
            cJSON_Delete(root);
            return cli_fail("bench", s);
        }
        for (size_t i = 0; i < nd; i++) {
            char spec[32];
            snprintf(spec, sizeof spec, "%u:%u", devs[i].platform_index, devs[i].device_index);
            int r = bench_device(&o, spec, devices);
            if (r && !rc) rc = r;
        }
        free(devs);
    } else {
        rc = bench_device(&o, o.device, devices);
    }
    cJSON_AddNumberToObject(host, "loadavg_end", loadavg());
    double secs = kdcl_wall_seconds() - t0;
    cJSON_AddNumberToObject(root, "seconds", secs);
    printf("\ntotal %.1f s\n", secs);
    if (o.json && cJSON_GetArraySize(devices) > 0) {
        int w = write_json(o.json, root);
        if (w && !rc) rc = w;
        if (!w) printf("wrote %s\n", o.json);
    }
    if (o.report && cJSON_GetArraySize(devices) > 0) {
        int w = bench_report_write(o.report, root);
        if (w && !rc) rc = CLI_EXIT_FAIL;
    }
    cJSON_Delete(root);
    return rc;
}
