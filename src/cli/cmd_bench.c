/* kdcl bench: GEMM rates at the MLP's shapes (tuned and CLBlast-default
 * parameters), per-op device time of one training step, training and
 * inference throughput, memory and build statistics, as a table and JSON.
 *
 * JSON (--json FILE), schema "kdcl-bench-1": one object
 *   {
 *     "schema": "kdcl-bench-1",
 *     "tool": "kdcl", "kdcl_version": "0.1.0",
 *     "date": "2025-01-01T12:00:00Z",            UTC, start of the run
 *     "host": {"hostname", "cpu_model", "cpus", "os", "loadavg_start", "loadavg_end"},
 *     "options": {"quick", "full", "reps"},
 *     "seconds": wall time of the whole run,
 *     "devices": [ one object per device measured:
 *       {
 *         "label": "<device> (<platform short>)",   column title for tools/bench_compare.py
 *         "device", "platform", "platform_version", "vendor", "driver",
 *         "opencl_version", "opencl_c_version", "type", "compute_units", "clock_mhz",
 *         "global_mem_bytes",
 *         "gemm_tuning": what kdcl_ctx_gemm_tuning() reported,
 *         "gemm_default_tuning": tuning string of the KDCL_NO_TUNING=1 child (null: not run),
 *         "results": [ flat list, one entry per measured workload:
 *           {"id", "label", "kind": "gemm"|"train"|"infer"|"step"|"combine",
 *            "unit": "GFLOP/s"|"samples/s"|"images/s"|"examples/s"|"ms",
 *            "better": "higher"|"lower",
 *            "median", "min", "max", "reps",
 *            gemm:  "m","n","k","trans" ("NT": A as stored, B transposed), "batch" (null for
 *                   the square ones), "variant": "tuned"|"clblast-defaults"
 *            train: "arch","batch","examples" (per timed epoch),"dropout","max_norm"
 *            infer: "arch","batch","examples","members"
 *            combine: "classes","clusters","batch","iters")
 *           ids: gemm.<shape>.b<B>[.default], gemm.sq1024[.default], gemm.sq4096[.default],
 *                train.{teacher,student}.b{128,1024}, infer.{teacher,ensemble10,student}.b1024
 *                (.b128 with --quick; "batch" is the batch really used: a slow device runs the
 *                ensemble on fewer images per repetition),
 *                step.teacher.b<B> (device ms of one training step, sum of the ops below),
 *                combine.k{10,100}.b<B> (examples/s of the specialists' KL combination:
 *                K classes in K/10 clusters of 10 (K = 10: 4 clusters), every row with an
 *                active specialist, default steps)
 *         ],
 *         "kernel_profile": [ {"model", "arch", "batch", "steps", "gated",
 *             "ops": [{"name", "kind": "gemm"|"kernel"|"data", "median_ms", "min_ms",
 *                      "max_ms", "share"}],
 *             "queue_start_ms": the device's start-up after the gate (not in the step),
 *             "sum_ms", "gemm_ms", "kernel_ms", "data_ms",
 *             "library_ms": {"data", "forward", "loss", "backward", "sgd", "total"},
 *             "host_enqueue_ms": host time to enqueue the library step} ],
 *         "distill": ids of the distillation results (student 784-800-800-10 on a
 *                    1200-1200 teacher's soft targets at T = 4, alpha 0.5, B = 128: per-batch
 *                    teacher forward, and cached targets including the teachers' pass)
 *         "memory": {"peak_bytes", "peak_after": {"gemm", "profile", "train", "infer"}},
 *         "build": {"context_seconds", "clblast_first_call_seconds", "builds",
 *                   "cache_hits", "cache_rejects", "build_seconds"},
 *         "seconds": wall time for this device,
 *         "errors": [messages of workloads that failed]
 *       } ]
 *   }
 * Every statistic is the median / min / max over "reps" timed repetitions
 * after a warm-up; NaN is written as null. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "cli/bench_util.h"
#include "cli/cli.h"
#include "kdcl/distill.h"
#include "kdcl/profile.h"
#include "kdcl/specialists.h"

#define TEACHER_ARCH "784-1200-1200-10"
#define STUDENT_ARCH "784-800-800-10"
#define ENSEMBLE_MEMBERS 10

/* ------------------------------------------------------------------ options */

typedef struct {
    const char *json, *device;
    int all, quick, full, child;
    size_t reps;
    const char *exe;
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

/* A workload failed: say so, keep going with the others. */
static void workload_failed(report *r, const char *what, kdcl_status s)
{
    const char *msg = kdcl_last_error();
    char buf[1024];
    snprintf(buf, sizeof buf, "%s: %s", what, msg && *msg ? msg : kdcl_status_name(s));
    fprintf(stderr, "kdcl bench: %s\n", buf);
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

typedef struct {
    char id[48];
    char name[24];
    char label[40];
    size_t m, n, k, batch;
    kdcl_trans ta, tb;
} shape_t;

#define MAX_SHAPES 24

static void add_shape(shape_t *s, size_t *n, const char *name, const char *label, size_t batch,
                      size_t m, size_t nn, size_t k, kdcl_trans ta, kdcl_trans tb)
{
    shape_t *x = &s[(*n)++];
    memset(x, 0, sizeof *x);
    snprintf(x->name, sizeof x->name, "%s", name);
    snprintf(x->label, sizeof x->label, "%s", label);
    if (batch)
        snprintf(x->id, sizeof x->id, "gemm.%s.b%zu", name, batch);
    else
        snprintf(x->id, sizeof x->id, "gemm.%s", name);
    x->m = m;
    x->n = nn;
    x->k = k;
    x->batch = batch;
    x->ta = ta;
    x->tb = tb;
}

/* The products of one teacher (784-1200-1200-10) training step, as kdcl_mlp
 * runs them (row-major, weights stored [out, in]). */
static size_t build_shapes(shape_t *s, int quick, int big)
{
    size_t n = 0;
    static const size_t batches[2] = {128, 1024};
    for (size_t i = 0; i < (quick ? 1u : 2u); i++) {
        size_t B = batches[i];
        const kdcl_trans N = KDCL_NO_TRANS, T = KDCL_TRANS;
        add_shape(s, &n, "fwd_in", "fwd X*W1^T", B, B, 1200, 784, N, T);
        add_shape(s, &n, "fwd_hid", "fwd H1*W2^T", B, B, 1200, 1200, N, T);
        add_shape(s, &n, "fwd_out", "fwd H2*W3^T", B, B, 10, 1200, N, T);
        add_shape(s, &n, "dw_in", "dW1 = dY1^T*X", B, 1200, 784, B, T, N);
        add_shape(s, &n, "dw_hid", "dW2 = dY2^T*H1", B, 1200, 1200, B, T, N);
        add_shape(s, &n, "dw_out", "dW3 = dY3^T*H2", B, 10, 1200, B, T, N);
        add_shape(s, &n, "dx_hid", "dH1 = dY2*W2", B, B, 1200, 1200, N, N);
        add_shape(s, &n, "dx_out", "dH2 = dY3*W3", B, B, 1200, 10, N, N);
    }
    if (!quick) add_shape(s, &n, "sq1024", "square 1024^3", 0, 1024, 1024, 1024, KDCL_NO_TRANS,
                          KDCL_NO_TRANS);
    if (big) add_shape(s, &n, "sq4096", "square 4096^3", 0, 4096, 4096, 4096, KDCL_NO_TRANS,
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
 * whole process, so this cannot share our process). */
static int run_default_child(const bench_opts *o, const kdcl_device_info *d, const shape_t *sh,
                             size_t ns, stat_t *out, char *tuning, size_t tsize)
{
    char exe[4096], cmd[8192] = "KDCL_NO_TUNING=1 ";
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

static kdcl_status synthetic(size_t n, kdcl_dataset *ds)
{
    memset(ds, 0, sizeof *ds);
    ds->n = n;
    ds->h = 28;
    ds->w = 28;
    ds->c = 1;
    ds->dim = 784;
    ds->n_classes = 10;
    ds->images = malloc(n * ds->dim);
    ds->labels = malloc(n * sizeof *ds->labels);
    if (!ds->images || !ds->labels) {
        kdcl_dataset_free(ds);
        return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    }
    kdcl_rng r;
    kdcl_rng_seed(&r, 20240601);
    for (size_t i = 0; i < n * ds->dim; i += 8) {
        uint64_t v = kdcl_rng_next(&r);
        for (size_t j = 0; j < 8 && i + j < n * ds->dim; j++) ds->images[i + j] = (uint8_t)(v >> (8 * j));
    }
    for (size_t i = 0; i < n; i++) ds->labels[i] = (int32_t)kdcl_rng_below(&r, 10);
    return KDCL_OK;
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

typedef struct {
    const char *model;
    kdcl_arch arch;
    float drop_in, drop_hidden, max_norm;
} model_cfg;

typedef enum { OP_DATA, OP_GEMM, OP_KERNEL } op_kind;

typedef struct {
    kdcl_profiler *p;
    op_kind kinds[128];
    size_t n;
} marker;

static kdcl_status mark(marker *mk, op_kind kind, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static kdcl_status mark(marker *mk, op_kind kind, const char *fmt, ...)
{
    if (!mk || !mk->p) return KDCL_OK;
    char name[KDCL_PROF_NAME];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    if (mk->n < sizeof mk->kinds / sizeof mk->kinds[0]) mk->kinds[mk->n] = kind;
    mk->n++;
    return kdcl_profiler_mark(mk->p, name);
}

typedef struct {
    kdcl_mlp *m;
    kdcl_batcher *b;
    const kdcl_dataset *ds;
    kdcl_tensor *loss, *loss_acc, *err;
    float lr, momentum, max_norm;
    uint64_t seed;
} step_env;

static const char *tr(kdcl_trans a, kdcl_trans b)
{
    return a ? (b ? "TT" : "TN") : (b ? "NT" : "NN");
}

/* One training step exactly as kdcl_train + kdcl_mlp_{forward,backward,sgd}
 * enqueue it, op by op, with a marker after each (mk NULL: no markers). */
static kdcl_status replica_step(const step_env *e, size_t start, size_t count, uint64_t gstep,
                                marker *mk)
{
    kdcl_mlp *m = e->m;
    kdcl_ctx *ctx = m->ctx;
    const size_t L = m->arch.n_layers;
    const kdcl_dataset *ds = e->ds;
    size_t ls[1] = {count};
    kdcl_status s;
    if ((s = kdcl_batcher_load(e->b, start, count)) || (s = mark(mk, OP_DATA, "gather batch")) ||
        (s = kdcl_mlp_set_batch(m, count)) || (s = kdcl_tensor_reshape(e->loss, 1, ls)) ||
        (s = kdcl_op_jitter(ctx, &e->b->batch_u8[e->b->cur], &m->act[0], count, ds->h, ds->w,
                            ds->c, 0, e->seed, gstep, 1.0f / 255.0f, 0.0f)) ||
        (s = mark(mk, OP_KERNEL, "u8->f32 (jitter 0)")))
        return s;
    const size_t B = m->batch;
    if (m->drop_in > 0.0f &&
        ((s = kdcl_op_bias_act_dropout(ctx, &m->act[0], NULL, 0, m->drop_in, e->seed, gstep, 0,
                                       &m->mask[0])) ||
         (s = mark(mk, OP_KERNEL, "dropout input"))))
        return s;
    for (size_t l = 0; l < L; l++) {
        size_t in = m->arch.sizes[l], out = m->arch.sizes[l + 1];
        if ((s = kdcl_gemm(ctx, KDCL_NO_TRANS, KDCL_TRANS, B, out, in, 1.0f, m->act[l].buf, 0, in,
                           m->W[l].buf, 0, in, 0.0f, m->act[l + 1].buf, 0, out, NULL)) ||
            (s = mark(mk, OP_GEMM, "L%zu fwd gemm %zux%zux%zu %s", l + 1, B, out, in,
                      tr(KDCL_NO_TRANS, KDCL_TRANS))))
            return s;
        int hidden = l + 1 < L;
        float p = hidden ? m->drop_hidden : 0.0f;
        if ((s = kdcl_op_bias_act_dropout(ctx, &m->act[l + 1], &m->b[l], hidden, p, e->seed,
                                          gstep, (uint32_t)(l + 1), p > 0 ? &m->mask[l + 1] : NULL)) ||
            (s = mark(mk, OP_KERNEL, "L%zu %s", l + 1,
                      hidden ? (p > 0 ? "bias+relu+dropout" : "bias+relu") : "bias")))
            return s;
    }
    m->last_train = 1;
    if ((s = kdcl_op_softmax_xent(ctx, &m->act[L], &e->b->batch_labels[e->b->cur], e->loss,
                                  &m->dact[L], 1.0f / (float)count, e->err)) ||
        (s = mark(mk, OP_KERNEL, "softmax+xent (loss, dlogits)")) ||
        (s = kdcl_op_reduce_add(ctx, e->loss, count, e->loss_acc, 0)) ||
        (s = mark(mk, OP_KERNEL, "reduce_add (loss sum)")))
        return s;
    for (size_t l = L; l-- > 0;) {
        size_t in = m->arch.sizes[l], out = m->arch.sizes[l + 1];
        if ((s = kdcl_gemm(ctx, KDCL_TRANS, KDCL_NO_TRANS, out, in, B, 1.0f, m->dact[l + 1].buf, 0,
                           out, m->act[l].buf, 0, in, 0.0f, m->dW[l].buf, 0, in, NULL)) ||
            (s = mark(mk, OP_GEMM, "L%zu dW gemm %zux%zux%zu %s", l + 1, out, in, B,
                      tr(KDCL_TRANS, KDCL_NO_TRANS))) ||
            (s = kdcl_op_bias_grad(ctx, &m->dact[l + 1], &m->db[l], 1.0f, 0.0f)) ||
            (s = mark(mk, OP_KERNEL, "L%zu bias grad", l + 1)))
            return s;
        if (l == 0) break;
        if ((s = kdcl_gemm(ctx, KDCL_NO_TRANS, KDCL_NO_TRANS, B, in, out, 1.0f, m->dact[l + 1].buf,
                           0, out, m->W[l].buf, 0, in, 0.0f, m->dact[l].buf, 0, in, NULL)) ||
            (s = mark(mk, OP_GEMM, "L%zu dX gemm %zux%zux%zu %s", l + 1, B, in, out,
                      tr(KDCL_NO_TRANS, KDCL_NO_TRANS))))
            return s;
        float p = m->drop_hidden;
        if ((s = kdcl_op_act_dropout_backward(ctx, &m->dact[l], &m->act[l], 1, p,
                                              p > 0 ? &m->mask[l] : NULL)) ||
            (s = mark(mk, OP_KERNEL, "L%zu relu/dropout backward", l)))
            return s;
    }
    /* as kdcl_mlp_sgd: with max-norm, the update of each weight matrix fused
     * with its max-norm plus the bias update; without, one launch for all */
    if (!(e->max_norm > 0.0f)) {
        if ((s = kdcl_op_sgd(ctx, &m->params, &m->grads, &m->vel, 0, m->params.numel, e->lr,
                             e->momentum, 0.0f)) ||
            (s = mark(mk, OP_KERNEL, "sgd+momentum (all params)")))
            return s;
        return KDCL_OK;
    }
    for (size_t l = 0; l < L; l++) {
        const size_t in = m->arch.sizes[l], out = m->arch.sizes[l + 1];
        if ((s = kdcl_op_sgd_max_norm(ctx, &m->params, &m->grads, &m->vel, m->w_off[l], out, in,
                                      e->lr, e->momentum, 0.0f, e->max_norm)) ||
            (s = mark(mk, OP_KERNEL, "L%zu W sgd+momentum+max-norm", l + 1)) ||
            (s = kdcl_op_sgd(ctx, &m->params, &m->grads, &m->vel, m->b_off[l], out, e->lr,
                             e->momentum, 0.0f)) ||
            (s = mark(mk, OP_KERNEL, "L%zu b sgd+momentum", l + 1)))
            return s;
    }
    return KDCL_OK;
}

/* The same step through the library's own calls, in five sections. */
static kdcl_status library_step(const step_env *e, size_t start, size_t count, uint64_t gstep,
                                kdcl_profiler *p)
{
    kdcl_mlp *m = e->m;
    kdcl_ctx *ctx = m->ctx;
    const kdcl_dataset *ds = e->ds;
    size_t ls[1] = {count};
    const size_t L = m->arch.n_layers;
    kdcl_status s;
    if ((s = kdcl_batcher_load(e->b, start, count)) || (s = kdcl_mlp_set_batch(m, count)) ||
        (s = kdcl_tensor_reshape(e->loss, 1, ls)) ||
        (s = kdcl_op_jitter(ctx, &e->b->batch_u8[e->b->cur], &m->act[0], count, ds->h, ds->w,
                            ds->c, 0, e->seed, gstep, 1.0f / 255.0f, 0.0f)) ||
        (s = kdcl_profiler_mark(p, "data")) || (s = kdcl_mlp_forward(m, 1, e->seed, gstep)) ||
        (s = kdcl_profiler_mark(p, "forward")) ||
        (s = kdcl_op_softmax_xent(ctx, &m->act[L], &e->b->batch_labels[e->b->cur], e->loss,
                                  &m->dact[L], 1.0f / (float)count, e->err)) ||
        (s = kdcl_op_reduce_add(ctx, e->loss, count, e->loss_acc, 0)) ||
        (s = kdcl_profiler_mark(p, "loss")) || (s = kdcl_mlp_backward(m)) ||
        (s = kdcl_profiler_mark(p, "backward")) ||
        (s = kdcl_mlp_sgd(m, e->lr, e->momentum, 0.0f, e->max_norm)) ||
        (s = kdcl_profiler_mark(p, "sgd")))
        return s;
    return KDCL_OK;
}

#define MAX_OPS 64

static kdcl_status profile_step(kdcl_ctx *ctx, const bench_opts *o, const kdcl_dataset *full,
                                const model_cfg *cfg, size_t B, report *rep, cJSON *profiles)
{
    kdcl_mlp *m = NULL;
    kdcl_batcher b;
    int have_b = 0;
    kdcl_tensor loss = {0}, loss_acc = {0}, err = {0};
    kdcl_status s;
    size_t steps = o->quick ? 1 : (o->reps < 3 ? 3 : o->reps);
    double *op_t = calloc(MAX_OPS * steps, sizeof *op_t), lib_t[5 * 16] = {0}, host_t[16] = {0},
           start_t[16] = {0};
    op_kind kinds[MAX_OPS] = {0};
    char names[MAX_OPS][KDCL_PROF_NAME];
    size_t n_ops = 0, done = 0, lib_done = 0;
    if (!op_t) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    kdcl_dataset ds = ds_view(full, 4 * B);
    size_t n1[1] = {B}, one[1] = {1};
    int32_t zero = 0;
    if ((s = kdcl_mlp_create(ctx, &cfg->arch, B, &m)) || (s = kdcl_mlp_init(m, 1)) ||
        (s = kdcl_batcher_create(ctx, &ds, B, &b)))
        goto done;
    have_b = 1;
    m->drop_in = cfg->drop_in;
    m->drop_hidden = cfg->drop_hidden;
    if ((s = kdcl_tensor_alloc(ctx, &loss, KDCL_F32, 1, n1)) ||
        (s = kdcl_tensor_alloc(ctx, &loss_acc, KDCL_F32, 1, one)) ||
        (s = kdcl_tensor_alloc(ctx, &err, KDCL_I32, 1, one)) ||
        (s = kdcl_tensor_fill(ctx, &loss_acc, 0.0f)) ||
        (s = kdcl_tensor_upload(ctx, &err, 0, 1, &zero)) ||
        (s = kdcl_batcher_epoch(&b, 1, 7, 1)))
        goto done;
    step_env e = {m, &b, &ds, &loss, &loss_acc, &err, 0.01f, 0.9f, cfg->max_norm, 7};
    size_t nb = ds.n / B;
    /* warm-up: one step each way (builds/loads every kernel) */
    if ((s = replica_step(&e, 0, B, 0, NULL)) || (s = kdcl_ctx_finish(ctx))) goto done;
    int gate = b.resident; /* a streaming batcher waits on uploads: no gate then */
    double used = 0;
    for (size_t i = 0; i < steps; i++) {
        kdcl_profiler p;
        marker mk = {&p, {0}, 0};
        if ((s = kdcl_profiler_begin(&p, ctx, gate))) goto done;
        s = replica_step(&e, (i % nb) * B, B, i + 1, &mk);
        size_t ns = kdcl_profiler_sections(&p);
        double sec[MAX_OPS * 2];
        if (!s && ns > MAX_OPS) s = kdcl_set_error(KDCL_ERR_INTERNAL, "too many ops to profile");
        if (!s) s = kdcl_profiler_end(&p, sec);
        if (!s) {
            n_ops = ns;
            for (size_t j = 0; j < ns; j++) {
                op_t[j * steps + i] = sec[j] * 1e3;
                used += sec[j];
                if (i == 0) {
                    snprintf(names[j], KDCL_PROF_NAME, "%s", kdcl_profiler_name(&p, j));
                    kinds[j] = j < sizeof mk.kinds / sizeof mk.kinds[0] ? mk.kinds[j] : OP_KERNEL;
                }
            }
            done++;
        }
        kdcl_profiler_free(&p);
        if (s) goto done;
        if (done >= min_reps(o) && used >= work_cap(o)) break;
    }
    for (size_t i = 0; i < done && i < 16; i++) {
        kdcl_profiler p;
        double sec[5];
        if ((s = kdcl_profiler_begin(&p, ctx, gate))) goto done;
        double t0 = kdcl_wall_seconds();
        s = library_step(&e, (i % nb) * B, B, 100 + i, &p);
        host_t[i] = (kdcl_wall_seconds() - t0) * 1e3; /* the gate holds the device back */
        if (!s) s = kdcl_profiler_end(&p, sec);
        start_t[i] = p.startup_s * 1e3;
        kdcl_profiler_free(&p);
        if (s) goto done;
        for (size_t j = 0; j < 5; j++) lib_t[j * 16 + i] = sec[j] * 1e3;
        lib_done++;
    }
    /* report */
    char arch[128];
    kdcl_arch_format(&cfg->arch, arch, sizeof arch);
    cJSON *pj = cJSON_CreateObject(), *ops = cJSON_CreateArray();
    cJSON_AddStringToObject(pj, "model", cfg->model);
    cJSON_AddStringToObject(pj, "arch", arch);
    cJSON_AddNumberToObject(pj, "batch", (double)B);
    cJSON_AddNumberToObject(pj, "steps", (double)done);
    cJSON_AddBoolToObject(pj, "gated", gate);
    double sum = 0, by_kind[3] = {0};
    stat_t st[MAX_OPS];
    for (size_t j = 0; j < n_ops; j++) {
        st[j] = stats_of(op_t + j * steps, done);
        sum += st[j].median;
        by_kind[kinds[j]] += st[j].median;
    }
    printf("\nPer-op device time of one %s training step (%s, B=%zu, dropout %.1f/%.1f%s), "
           "median of %zu steps%s\n",
           cfg->model, arch, B, cfg->drop_in, cfg->drop_hidden,
           cfg->max_norm > 0 ? ", max-norm" : "", done, gate ? "" : " (queue not gated)");
    printf("  %-40s %10s %7s\n", "op", "ms", "share");
    static const char *kind_names[3] = {"data", "gemm", "kernel"};
    for (size_t j = 0; j < n_ops; j++) {
        double share = sum > 0 ? st[j].median / sum : NAN;
        printf("  %-40s %10.3f %6.1f%%\n", names[j], st[j].median, 100 * share);
        cJSON *oj = cJSON_CreateObject();
        cJSON_AddStringToObject(oj, "name", names[j]);
        cJSON_AddStringToObject(oj, "kind", kind_names[kinds[j]]);
        cJSON_AddNumberToObject(oj, "median_ms", st[j].median);
        cJSON_AddNumberToObject(oj, "min_ms", st[j].min);
        cJSON_AddNumberToObject(oj, "max_ms", st[j].max);
        cJSON_AddNumberToObject(oj, "share", share);
        cJSON_AddItemToArray(ops, oj);
    }
    cJSON_AddItemToObject(pj, "ops", ops);
    printf("  %-40s %10.3f   (CLBlast GEMMs %.1f%%, kdcl kernels %.1f%%, batch gather %.1f%%)\n",
           "step (sum of the ops)", sum, 100 * by_kind[OP_GEMM] / sum,
           100 * by_kind[OP_KERNEL] / sum, 100 * by_kind[OP_DATA] / sum);
    cJSON_AddNumberToObject(pj, "sum_ms", sum);
    cJSON_AddNumberToObject(pj, "gemm_ms", by_kind[OP_GEMM]);
    cJSON_AddNumberToObject(pj, "kernel_ms", by_kind[OP_KERNEL]);
    cJSON_AddNumberToObject(pj, "data_ms", by_kind[OP_DATA]);
    static const char *lib_names[5] = {"data", "forward", "loss", "backward", "sgd"};
    cJSON *lj = cJSON_CreateObject();
    double lib_total = 0;
    printf("  %-40s", "same step via kdcl_mlp_* (ms)");
    for (size_t j = 0; j < 5; j++) {
        stat_t ls = stats_of(lib_t + j * 16, lib_done);
        lib_total += ls.median;
        cJSON_AddNumberToObject(lj, lib_names[j], ls.median);
        printf(" %s %.2f", lib_names[j], ls.median);
    }
    printf(" = %.3f\n", lib_total);
    cJSON_AddNumberToObject(lj, "total", lib_total);
    /* host time to enqueue that step: when it approaches the device time, the
     * step is bound by launch overhead, not by the device */
    stat_t hs = stats_of(host_t, lib_done);
    printf("  %-40s %10.3f   (device time of the step %.3f)\n", "host time to enqueue the step (ms)",
           hs.median, lib_total);
    cJSON_AddNumberToObject(pj, "host_enqueue_ms", hs.median);
    if (gate) {
        /* the profiler's own opening section: kept out of every figure above */
        stat_t qs = stats_of(start_t, lib_done);
        printf("  %-40s %10.3f   (not part of the step)\n", "device start-up after the gate (ms)",
               qs.median);
        cJSON_AddNumberToObject(pj, "queue_start_ms", qs.median);
    }
    cJSON_AddItemToObject(pj, "library_ms", lj);
    cJSON_AddItemToArray(profiles, pj);
    {
        char id[64], label[96];
        snprintf(id, sizeof id, "step.%s.b%zu", cfg->model, B);
        snprintf(label, sizeof label, "%s training step B=%zu (device ms)", cfg->model, B);
        stat_t one_st = {sum, sum, sum, done};
        cJSON *r = add_result(rep, id, label, "step", "ms", 0, one_st);
        cJSON_AddStringToObject(r, "arch", arch);
        cJSON_AddNumberToObject(r, "batch", (double)B);
    }
done:
    free(op_t);
    kdcl_tensor_free(ctx, &loss);
    kdcl_tensor_free(ctx, &loss_acc);
    kdcl_tensor_free(ctx, &err);
    if (have_b) kdcl_batcher_destroy(&b);
    kdcl_mlp_destroy(m);
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
    kdcl_mlp *m;               /* the model trained or evaluated */
    kdcl_ensemble *e;          /* distillation: the teacher */
    kdcl_targets tg;           /* distillation: how its targets are computed */
    const model_cfg *cfg;      /* training: dropout and max-norm */
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

/* Create j->m (arch, initialised from init_seed), run a one-batch warm-up
 * pass and, when that took under 50 ms, an 8-batch pass whose rate sizes the
 * timed passes (the warm-up's own rate, with kernel loads and first-call
 * set-up in it, can be far too low: 128-example epochs on an H100), then time
 * passes over about rep_target seconds' worth of examples. */
static kdcl_status time_model(kdcl_ctx *ctx, const bench_opts *o, const kdcl_arch *arch,
                              uint64_t init_seed, pass_fn pass, job *j, stat_t *out,
                              size_t *n_used)
{
    double rate = 0;
    kdcl_status s;
    if ((s = kdcl_mlp_create(ctx, arch, j->B, &j->m)) || (s = kdcl_mlp_init(j->m, init_seed)) ||
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
    to.max_norm = j->cfg->max_norm;
    to.drop_in = j->cfg->drop_in;
    to.drop_hidden = j->cfg->drop_hidden;
    kdcl_epoch_stats st;
    kdcl_status s = kdcl_train(j->m, &ds, &to, NULL, NULL, &st);
    if (!s) *rate = st.samples_per_s;
    return s;
}

static kdcl_status bench_train(kdcl_ctx *ctx, const bench_opts *o, const kdcl_dataset *full,
                               const model_cfg *cfg, size_t B, stat_t *out, size_t *n_used)
{
    job j = {.cfg = cfg, .full = full, .B = B};
    kdcl_status s = time_model(ctx, o, &cfg->arch, 3, train_epoch, &j, out, n_used);
    kdcl_mlp_destroy(j.m);
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
    kdcl_mlp *t = NULL;
    kdcl_ensemble e;
    job j = {.tg = tg, .full = full, .B = B};
    char path[] = "/tmp/kdcl-bench-teacher-XXXXXX";
    int fd = mkstemp(path);
    kdcl_status s;
    if (fd < 0) return kdcl_set_error(KDCL_ERR_IO, "cannot create a temporary teacher file");
    close(fd);
    if ((s = kdcl_mlp_create(ctx, &teacher->arch, B, &t)) || (s = kdcl_mlp_init(t, 7)) ||
        (s = kdcl_mlp_save(t, path, NULL, NULL, 0)))
        goto done;
    const char *paths[1] = {path};
    if ((s = kdcl_ensemble_load(ctx, paths, 1, B, KDCL_ENS_PROB, &e))) goto done;
    j.e = &e;
    s = time_model(ctx, o, &student->arch, 3, distill_epoch, &j, out, n_used);
done:
    if (j.e) kdcl_ensemble_free(j.e);
    kdcl_mlp_destroy(t);
    kdcl_mlp_destroy(j.m);
    remove(path);
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
    kdcl_status s = kdcl_evaluate(j->m, &ds, KDCL_NORM_DEFAULT, 0, &r);
    double dt = kdcl_wall_seconds() - t0;
    if (s) return s;
    kdcl_eval_result_free(&r);
    *rate = (double)n / dt;
    return KDCL_OK;
}

static kdcl_status bench_infer(kdcl_ctx *ctx, const bench_opts *o, const kdcl_dataset *full,
                               const kdcl_arch *arch, size_t B, stat_t *out, size_t *n_used)
{
    job j = {.full = full, .B = B};
    kdcl_status s = time_model(ctx, o, arch, 5, eval_once, &j, out, n_used);
    kdcl_mlp_destroy(j.m);
    return s;
}

/* Ensemble inference: every member's forward on each batch, softmax of each
 * into a row of P [M, stride], the average over members as one GEMM
 * (ones[1,M] * P / M), and the ensemble's argmax counted into a confusion
 * matrix (read once at the end). */
typedef struct {
    kdcl_ctx *ctx;
    const kdcl_dataset *full; /* the examples ensemble_run reads */
    kdcl_mlp *mem[ENSEMBLE_MEMBERS];
    size_t M, B, K, stride;
    kdcl_tensor P, views[ENSEMBLE_MEMBERS], ones, avg, conf;
} ensemble;

static void ensemble_free(ensemble *e)
{
    for (size_t i = 0; i < e->M; i++) {
        kdcl_tensor_free(e->ctx, &e->views[i]);
        kdcl_mlp_destroy(e->mem[i]);
    }
    kdcl_tensor_free(e->ctx, &e->P);
    kdcl_tensor_free(e->ctx, &e->ones);
    kdcl_tensor_free(e->ctx, &e->avg);
    kdcl_tensor_free(e->ctx, &e->conf);
}

static kdcl_status ensemble_create(kdcl_ctx *ctx, const kdcl_dataset *full,
                                   const kdcl_arch *arch, size_t M, size_t B, ensemble *e)
{
    memset(e, 0, sizeof *e);
    e->ctx = ctx;
    e->full = full;
    e->B = B;
    e->K = arch->sizes[arch->n_layers];
    size_t al = kdcl_align_elems(ctx, KDCL_F32);
    e->stride = (B * e->K + al - 1) / al * al;
    kdcl_status s;
    for (; e->M < M; e->M++)
        if ((s = kdcl_mlp_create(ctx, arch, B, &e->mem[e->M])) ||
            (s = kdcl_mlp_init(e->mem[e->M], 100 + e->M)))
            return s;
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
    kdcl_batcher b;
    kdcl_status s = kdcl_batcher_create(ctx, &ds, B, &b);
    if (s) return s;
    int32_t *conf = calloc(e->K * e->K, sizeof *conf);
    if (!conf) {
        kdcl_batcher_destroy(&b);
        return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    }
    if ((s = kdcl_tensor_upload(ctx, &e->conf, 0, e->K * e->K, conf))) goto done;
    double t0 = kdcl_wall_seconds();
    for (size_t start = 0; start < ds.n; start += B) {
        size_t count = ds.n - start < B ? ds.n - start : B;
        size_t vs[2] = {count, e->K};
        if ((s = kdcl_batcher_load(&b, start, count))) goto done;
        for (size_t i = 0; i < e->M; i++) {
            kdcl_mlp *m = e->mem[i];
            if ((s = kdcl_mlp_set_batch(m, count)) ||
                (s = kdcl_op_u8_to_float(ctx, &b.batch_u8[b.cur], &m->act[0], count * ds.dim,
                                         1.0f / 255.0f, 0.0f)) ||
                (s = kdcl_mlp_forward(m, 0, 0, 0)) ||
                (s = kdcl_tensor_reshape(&e->views[i], 2, vs)) ||
                (s = kdcl_op_softmax(ctx, &m->act[m->arch.n_layers], &e->views[i], 1.0f, 0)))
                goto done;
        }
        /* avg[1, count*K] = (1/M) ones[1,M] * P[M, count*K] (ld = stride) */
        if ((s = kdcl_gemm(ctx, KDCL_NO_TRANS, KDCL_NO_TRANS, 1, count * e->K, e->M, 1.0f,
                           e->ones.buf, 0, e->M, e->P.buf, 0, e->stride, 0.0f, e->avg.buf, 0,
                           count * e->K, NULL)) ||
            (s = kdcl_tensor_reshape(&e->avg, 2, vs)) ||
            (s = kdcl_op_confusion(ctx, &e->avg, &b.batch_labels[b.cur], &e->conf)))
            goto done;
    }
    if ((s = kdcl_tensor_download(ctx, &e->conf, 0, e->K * e->K, conf))) goto done;
    *rate = (double)ds.n / (kdcl_wall_seconds() - t0);
done:
    free(conf);
    kdcl_batcher_destroy(&b);
    return s;
}

static kdcl_status bench_ensemble(kdcl_ctx *ctx, const bench_opts *o, const kdcl_dataset *full,
                                  const kdcl_arch *arch, size_t B, stat_t *out, size_t *n_used,
                                  size_t *batch_used)
{
    ensemble e;
    double rate = 0;
    kdcl_status s;
    size_t unit = B < 128 ? B : 128;
    if ((s = ensemble_create(ctx, full, arch, ENSEMBLE_MEMBERS, B, &e)) ||
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
    kdcl_combiner cb;
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
        if ((s = kdcl_combine(&j->cb, &j->z, j->B, &j->co))) return s;
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
            (s = kdcl_combiner_put(&j.cb, m, &t, B)) || (s = kdcl_ctx_finish(ctx))) {
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
    kdcl_combiner_destroy(&j.cb);
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
    size_t ns = build_shapes(sh, o->quick, big);
    stat_t tuned[MAX_SHAPES], def[MAX_SHAPES];
    double first_call = NAN;
    kdcl_status s;

    if (o->child) { /* machine-readable GEMM table for the parent */
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
    cJSON_AddStringToObject(dj, "gemm_tuning", tuning);
    cJSON_AddItemToArray(devices, dj);

    printf("\ndevice   %u:%u %s\n", d->platform_index, d->device_index, d->name);
    printf("         %s, %s, driver %s, %u compute units, %u MHz\n", d->platform_name,
           d->device_version, d->driver_version, d->compute_units, d->clock_mhz);
    printf("tuning   %s\n", tuning);
    fflush(stdout);

    /* --- GEMM, tuned (this process) and CLBlast defaults (child) */
    uint64_t peak[4] = {0}; /* after GEMM, step profile, training, inference */
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
    printf("\nGEMM fp32 row-major, GFLOP/s median [min-max] (device time, %zu reps max)\n",
           o->reps);
    printf("  %-16s %-20s %-3s %-22s %-22s %s\n", "shape", "m x n x k", "op", "tuned",
           have_def ? "CLBlast defaults" : "", have_def ? "speedup" : "");
    for (size_t i = 0; i < ns; i++) {
        char dims[40], a[48], b[48] = "", sp[16] = "";
        snprintf(dims, sizeof dims, "%zux%zux%zu", sh[i].m, sh[i].n, sh[i].k);
        fmt_stat(a, sizeof a, tuned[i], 1);
        if (have_def) {
            fmt_stat(b, sizeof b, def[i], 1);
            if (def[i].median > 0 && !isnan(tuned[i].median))
                snprintf(sp, sizeof sp, "%.2fx", tuned[i].median / def[i].median);
        }
        printf("  %-16s %-20s %-3s %-22s %-22s %s\n", sh[i].label, dims, tr(sh[i].ta, sh[i].tb),
               a, b, sp);
        for (int v = 0; v < (have_def ? 2 : 1); v++) {
            char id[64], lab[96];
            snprintf(id, sizeof id, "%.47s%s", sh[i].id, v ? ".default" : "");
            if (sh[i].batch)
                snprintf(lab, sizeof lab, "GEMM %s B=%zu (%s %s)%s", sh[i].label, sh[i].batch,
                         dims, tr(sh[i].ta, sh[i].tb), v ? " CLBlast defaults" : "");
            else
                snprintf(lab, sizeof lab, "GEMM %s%s", sh[i].label, v ? " CLBlast defaults" : "");
            if (isnan((v ? def : tuned)[i].median)) continue;
            cJSON *r = add_result(&rep, id, lab, "gemm", "GFLOP/s", 1, (v ? def : tuned)[i]);
            cJSON_AddNumberToObject(r, "m", (double)sh[i].m);
            cJSON_AddNumberToObject(r, "n", (double)sh[i].n);
            cJSON_AddNumberToObject(r, "k", (double)sh[i].k);
            cJSON_AddStringToObject(r, "trans", tr(sh[i].ta, sh[i].tb));
            if (sh[i].batch)
                cJSON_AddNumberToObject(r, "batch", (double)sh[i].batch);
            else
                cJSON_AddNullToObject(r, "batch");
            cJSON_AddStringToObject(r, "variant", v ? "clblast-defaults" : "tuned");
        }
    }
    if (!big && !o->quick)
        printf("  (4096^3 skipped on a CPU device; --full runs it)\n");
    fflush(stdout);

    /* --- synthetic data, models */
    kdcl_dataset full;
    model_cfg teacher = {"teacher", {0}, 0.2f, 0.5f, 3.5f};
    model_cfg student = {"student", {0}, 0.0f, 0.0f, 0.0f};
    kdcl_arch_parse(TEACHER_ARCH, &teacher.arch);
    kdcl_arch_parse(STUDENT_ARCH, &student.arch);
    if ((s = synthetic(o->quick ? 2048 : 16384, &full))) {
        workload_failed(&rep, "synthetic data", s);
        goto finish;
    }

    /* --- per-op profile of a teacher step */
    cJSON *profiles = cJSON_CreateArray();
    cJSON_AddItemToObject(dj, "kernel_profile", profiles);
    size_t prof_batches[2] = {128, 1024};
    for (size_t i = 0; i < (is_cpu && !o->full ? 1u : 2u) && !(o->quick && i); i++)
        if ((s = profile_step(ctx, o, &full, &teacher, prof_batches[i], &rep, profiles)))
            workload_failed(&rep, "step profile", s);
    peak[1] = kdcl_ctx_mem_stats(ctx).peak_bytes;
    fflush(stdout);

    /* --- training throughput */
    printf("\nTraining (kdcl_train, synthetic 28x28 u8 data, 10 classes), samples/s median "
           "[min-max]\n");
    const model_cfg *models[2] = {&teacher, &student};
    size_t train_batches[2] = {128, 1024};
    for (size_t mi = 0; mi < 2; mi++)
        for (size_t bi = 0; bi < (o->quick ? 1u : 2u); bi++) {
            const model_cfg *cfg = models[mi];
            size_t B = train_batches[bi], n = 0;
            stat_t st;
            char arch[128], id[64], lab[160], v[64];
            kdcl_arch_format(&cfg->arch, arch, sizeof arch);
            if ((s = bench_train(ctx, o, &full, cfg, B, &st, &n))) {
                workload_failed(&rep, "training", s);
                continue;
            }
            fmt_stat(v, sizeof v, st, 0);
            char reg[64] = "no dropout";
            if (cfg->drop_in > 0 || cfg->drop_hidden > 0)
                snprintf(reg, sizeof reg, "dropout %.1f/%.1f%s", cfg->drop_in, cfg->drop_hidden,
                         cfg->max_norm > 0 ? ", max-norm 3.5" : "");
            printf("  %-8s %-17s B=%-5zu %-28s %-24s (epochs of %zu)\n", cfg->model, arch, B, reg,
                   v, n);
            snprintf(id, sizeof id, "train.%s.b%zu", cfg->model, B);
            snprintf(lab, sizeof lab, "train %s %s B=%zu", cfg->model, arch, B);
            cJSON *r = add_result(&rep, id, lab, "train", "samples/s", 1, st);
            cJSON_AddStringToObject(r, "arch", arch);
            cJSON_AddNumberToObject(r, "batch", (double)B);
            cJSON_AddNumberToObject(r, "examples", (double)n);
            cJSON *dr = cJSON_CreateArray();
            cJSON_AddItemToArray(dr, cJSON_CreateNumber(cfg->drop_in));
            cJSON_AddItemToArray(dr, cJSON_CreateNumber(cfg->drop_hidden));
            cJSON_AddItemToObject(r, "dropout", dr);
            cJSON_AddNumberToObject(r, "max_norm", cfg->max_norm);
            fflush(stdout);
        }
    /* distillation: the student on the teacher's soft targets */
    cJSON *dist = cJSON_CreateArray();
    cJSON_AddItemToObject(dj, "distill", dist);
    for (int tg = 0; tg < 2; tg++) {
        size_t B = 128, n = 0;
        stat_t st;
        char arch[128], id[64], lab[200], v[64];
        kdcl_targets mode = tg ? KDCL_TARGETS_CACHED : KDCL_TARGETS_BATCH;
        kdcl_arch_format(&student.arch, arch, sizeof arch);
        if ((s = bench_distill(ctx, o, &full, &teacher, &student, B, mode, &st, &n))) {
            workload_failed(&rep, "distillation", s);
            continue;
        }
        fmt_stat(v, sizeof v, st, 0);
        printf("  %-8s %-17s B=%-5zu %-28s %-24s (epochs of %zu)\n", "distill", arch, B,
               tg ? "cached soft targets" : "per-batch teacher forward", v, n);
        snprintf(id, sizeof id, "distill.student.b%zu.%s", B, tg ? "cached" : "batch");
        snprintf(lab, sizeof lab, "distill %s B=%zu (%s targets)", arch, B, tg ? "cached" : "per-batch");
        cJSON *r = add_result(&rep, id, lab, "train", "samples/s", 1, st);
        cJSON_AddStringToObject(r, "arch", arch);
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
        const model_cfg *cfg = w == 2 ? &student : &teacher;
        const char *name = w == 0 ? "teacher" : w == 1 ? "ensemble10" : "student";
        size_t n = 0, batch = IB;
        stat_t st;
        char arch[128], id[64], lab[160], v[64];
        kdcl_arch_format(&cfg->arch, arch, sizeof arch);
        if (w == 1)
            s = bench_ensemble(ctx, o, &full, &cfg->arch, IB, &st, &n, &batch);
        else
            s = bench_infer(ctx, o, &full, &cfg->arch, IB, &st, &n);
        if (s) {
            workload_failed(&rep, "inference", s);
            continue;
        }
        fmt_stat(v, sizeof v, st, 0);
        printf("  %-10s %-17s B=%-5zu %-24s (%zu images per rep%s)\n", name, arch, batch, v, n,
               w == 1 ? ", 10 teachers, softmax average" : ", kdcl_evaluate");
        /* the id names the nominal batch (comparable across devices); a slow
         * device runs the ensemble on fewer images, i.e. a smaller batch */
        snprintf(id, sizeof id, "infer.%s.b%zu", name, IB);
        snprintf(lab, sizeof lab, "infer %s %s%s B=%zu", name, arch, w == 1 ? " x10" : "", batch);
        cJSON *r = add_result(&rep, id, lab, "infer", "images/s", 1, st);
        cJSON_AddStringToObject(r, "arch", arch);
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
    kdcl_dataset_free(&full);

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
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    int ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (f && fclose(f) != 0) ok = 0;
    free(text);
    if (!ok || rename(tmp, path) != 0) {
        fprintf(stderr, "kdcl bench: cannot write %s\n", path);
        remove(tmp);
        return CLI_EXIT_FAIL;
    }
    return 0;
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
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    bench_opts o = {NULL, NULL, 0, 0, 0, 0, 5, argv[0]};
    int reps_given = 0, o_c;
    optind = 1;
    opterr = 0;
    while ((o_c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o_c) {
        case 'j': o.json = optarg; break;
        case 'd': o.device = optarg; break;
        case 'a': o.all = 1; break;
        case 'q': o.quick = 1; break;
        case 'f': o.full = 1; break;
        case 'c': o.child = 1; break;
        case 'r':
            if (cli_parse_size(optarg, &o.reps) || o.reps == 0 || o.reps > 64)
                return cli_usage_error("bench", "--reps needs an integer in 1..64, got '%s'",
                                       optarg);
            reps_given = 1;
            break;
        case 'h':
            printf(
                "usage: kdcl bench [--json FILE] [--device D | --all-devices] [--quick] [--full]\n"
                "                  [--reps N]\n\n"
                "Measures on the device (default: $KDCL_DEVICE, else the first GPU, else the\n"
                "first device), on synthetic data:\n"
                "  - GEMM GFLOP/s at the shapes of a 784-1200-1200-10 training step (forward\n"
                "    X*W^T, weight gradients dY^T*X, input gradients dY*W) for B = 128 and 1024,\n"
                "    plus 1024^3 (and 4096^3 except on CPU devices), with kdcl's GEMM tuning and\n"
                "    with CLBlast's defaults (a KDCL_NO_TUNING=1 child process);\n"
                "  - the device time of every op of one teacher training step (OpenCL\n"
                "    profiling events), and the step through the kdcl_mlp_* calls;\n"
                "  - training samples/s of the teacher 784-1200-1200-10 (dropout 0.2/0.5,\n"
                "    max-norm 3.5) and the student 784-800-800-10 at B = 128 and 1024;\n"
                "  - inference images/s of the teacher, a 10-teacher ensemble and the student;\n"
                "  - peak device memory, kernel build / cache statistics.\n"
                "Each figure is the median [min-max] over up to N repetitions after a warm-up\n"
                "(fewer when a workload has used its time budget).\n\n"
                "options:\n"
                "  --json FILE     also write the results as JSON (schema kdcl-bench-1; see the\n"
                "                  top of src/cli/cmd_bench.c; tools/bench_compare.py merges them)\n"
                "  --device D      P:D, cpu, gpu or a name substring\n"
                "  --all-devices   every OpenCL device in turn\n"
                "  --quick         smoke run: B = 128 only, one repetition (seconds)\n"
                "  --full          also the long workloads skipped on CPU devices (4096^3,\n"
                "                  the B = 1024 step profile)\n"
                "  --reps N        repetitions per workload (default 5, quick 1)\n");
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
    cJSON_Delete(root);
    return rc;
}
