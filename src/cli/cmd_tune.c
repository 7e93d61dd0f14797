/* kdcl tune: run CLBlast's own GEMM tuners (clblast_tuner_xgemm and
 * clblast_tuner_xgemm_direct from Debian's clblast-utils) for one device
 * and/or time kdcl's own candidate Xgemm sets at the GEMM shapes of a model's
 * training step (--search; the model: --arch / --input, default the teacher
 * 784-1200-1200-10; the shapes: kdcl_model_gemm_shapes at B = 128 and 1024),
 * keep the fastest at those shapes, choose where CLBlast switches from the direct
 * to the indirect GEMM kernel (XGEMM_MIN_INDIRECT_SIZE) by measuring the model's
 * GEMM shapes, and store the result where kdcl_gemm_apply_tuning() finds it
 * (kdcl_gemm_tuning_path(): $KDCL_CACHE_DIR/clblast/<device key>.json), so
 * every later kdcl context on this device + driver uses it.
 *
 * The file: {"device", "platform", "driver", "source": "kdcl tune", "date",
 *            "tuner": {...how it was found...},
 *            "kernels": {"Xgemm": {"GEMMK": 0, ...}, "XgemmDirect": {...},
 *                        "GemmRoutine": {"XGEMM_MIN_INDIRECT_SIZE": N}}}
 *
 * Notes on the tuners (CLBlast 1.5.3): each binary runs several variations
 * (Xgemm: a fixed set, a random subset of a larger set, and both again for
 * GEMMK = 1; XgemmDirect: fixed set, random subset) and writes
 * clblast_<family>_32.json into the current directory when a variation
 * completes. Their -fraction argument DIVIDES the number of configurations
 * (-fraction 100 explores 1 %), so kdcl passes 1/F. A tuner still running at
 * its deadline is stopped; the rows it printed so far (stdout is line-buffered
 * through stdbuf) are used for the unfinished variation.
 *
 * CLBlast keeps overridden parameters per device for the whole process, so
 * every timing runs in a child (`kdcl tune --child-measure`, reading its
 * tuning file from a scratch KDCL_CACHE_DIR): before, all-indirect,
 * all-direct with the tuned and with CLBlast's direct parameters, after. The
 * first GEMM with a new parameter set compiles CLBlast's kernels (on PoCL
 * 15-25 s per set on a loaded 2-core machine), so choosing costs a minute or
 * more on top of the tuners' time. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <fcntl.h>
#include <dirent.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "cli.h"
#include "kdcl/file.h"

#define MAX_PARAMS 16

/* ------------------------------------------------------------------ tuner results */

typedef struct {
    size_t n;
    char names[MAX_PARAMS][24];
    size_t values[MAX_PARAMS];
    double ms;
    int valid;
} config;

typedef struct {
    config best;
    size_t tested; /* configurations that ran and matched the reference */
    size_t sections_done, sections_partial;
} tuner_result;

static void consider(tuner_result *r, const config *c)
{
    r->tested++;
    if (!r->best.valid || c->ms < r->best.ms) {
        r->best = *c;
        r->best.valid = 1;
    }
}

/* Fold the results of one tuner variation into the total. */
static void merge(tuner_result *r, const tuner_result *part)
{
    r->tested += part->tested;
    if (part->best.valid && (!r->best.valid || part->best.ms < r->best.ms)) r->best = part->best;
}

/* Strip ANSI colour sequences in place. */
static void strip_ansi(char *s)
{
    char *w = s;
    for (char *p = s; *p;) {
        if (*p == '\x1b' && p[1] == '[') {
            p += 2;
            while (*p && !((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z'))) p++;
            if (*p) p++;
        } else {
            *w++ = *p++;
        }
    }
    *w = '\0';
}

/* The tuner's JSON: {"results": [{"kernel", "time", "parameters": {...}}]}. */
static int parse_tuner_json(const char *path, tuner_result *r)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf) return -1;
    buf[n] = '\0';
    cJSON *root = cJSON_Parse(buf);
    free(buf);
    cJSON *results = root ? cJSON_GetObjectItemCaseSensitive(root, "results") : NULL;
    if (!cJSON_IsArray(results)) {
        cJSON_Delete(root);
        return -1;
    }
    int count = 0;
    cJSON *e;
    cJSON_ArrayForEach(e, results)
    {
        cJSON *t = cJSON_GetObjectItemCaseSensitive(e, "time");
        cJSON *ps = cJSON_GetObjectItemCaseSensitive(e, "parameters");
        if (!cJSON_IsNumber(t) || !(t->valuedouble > 0) || !cJSON_IsObject(ps)) continue;
        config c = {0};
        c.ms = t->valuedouble;
        cJSON *p;
        int ok = 1;
        cJSON_ArrayForEach(p, ps)
        {
            if (!strcmp(p->string, "PRECISION")) continue;
            if (!cJSON_IsNumber(p) || p->valuedouble < 0 || c.n >= MAX_PARAMS) {
                ok = 0;
                break;
            }
            snprintf(c.names[c.n], sizeof c.names[0], "%s", p->string);
            c.values[c.n++] = (size_t)p->valuedouble;
        }
        if (ok && c.n) {
            consider(r, &c);
            count++;
        }
    }
    cJSON_Delete(root);
    return count;
}

/* Parse the tuner's stdout log: sections start with "* Parameters explored:",
 * rows are "| id | total | p1 p2 ... | local | global | compiles | time ms |
 * GFLOPS | results match |", a finished section names its JSON file in
 * "* Writing a total of N results to 'FILE'". Finished sections are read
 * from their JSON file, an unfinished one from its rows. */
static void parse_tuner_log(const char *dir, const char *log, tuner_result *r)
{
    FILE *f = fopen(log, "r");
    if (!f) return;
    char line[4096];
    char names[MAX_PARAMS][24];
    size_t n_names = 0;
    tuner_result section = {0};
    int in_section = 0;
    while (fgets(line, sizeof line, f)) {
        strip_ansi(line);
        if (!strncmp(line, "* Parameters explored:", 22)) {
            if (in_section && section.tested) { /* previous section never wrote its file */
                r->sections_partial++;
                merge(r, &section);
            }
            memset(&section, 0, sizeof section);
            in_section = 1;
            n_names = 0;
            char *save = NULL;
            for (char *tok = strtok_r(line + 22, " \t\n", &save); tok && n_names < MAX_PARAMS;
                 tok = strtok_r(NULL, " \t\n", &save))
                snprintf(names[n_names++], sizeof names[0], "%s", tok);
            continue;
        }
        if (in_section && !strncmp(line, "* Writing a total of", 20)) {
            char *q1 = strchr(line, '\''), *q2 = q1 ? strchr(q1 + 1, '\'') : NULL;
            tuner_result from_file = {0};
            if (q1 && q2) {
                *q2 = '\0';
                char path[4600];
                snprintf(path, sizeof path, "%s/%s", dir, q1 + 1);
                if (parse_tuner_json(path, &from_file) > 0) {
                    r->sections_done++;
                    merge(r, &from_file);
                    memset(&section, 0, sizeof section);
                    in_section = 0;
                    continue;
                }
            }
            /* unreadable file: fall back to the rows */
            if (section.tested) {
                r->sections_done++;
                merge(r, &section);
            }
            memset(&section, 0, sizeof section);
            in_section = 0;
            continue;
        }
        if (!in_section || line[0] != '|' || !strstr(line, "results match")) continue;
        /* split on '|' */
        char *field[12];
        size_t nf = 0;
        char *save = NULL;
        for (char *tok = strtok_r(line, "|", &save); tok && nf < 12; tok = strtok_r(NULL, "|", &save))
            field[nf++] = tok;
        /* id, total, params, local, global, compiles, time, gflops, status */
        if (nf < 9) continue;
        config row, *c = &row;
        memset(c, 0, sizeof *c);
        char *save2 = NULL;
        for (char *tok = strtok_r(field[2], " \t", &save2); tok && c->n < n_names;
             tok = strtok_r(NULL, " \t", &save2)) {
            if (!strcmp(names[c->n], "PRECISION")) continue;
            snprintf(c->names[c->n], sizeof c->names[0], "%s", names[c->n]);
            c->values[c->n++] = strtoul(tok, NULL, 10);
        }
        c->ms = strtod(field[6], NULL);
        if (c->n == n_names && c->ms > 0) consider(&section, c);
    }
    if (in_section && section.tested) {
        r->sections_partial++;
        merge(r, &section);
    }
    fclose(f);
}

/* ------------------------------------------------------------------ running a tuner */

static volatile sig_atomic_t interrupted = 0;
static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static int in_path(const char *name)
{
    const char *path = getenv("PATH");
    if (!path || !*path) path = "/usr/local/bin:/usr/bin:/bin";
    char buf[4096];
    while (*path) {
        size_t len = strcspn(path, ":");
        if (len && len < 3000) {
            snprintf(buf, sizeof buf, "%.*s/%s", (int)len, path, name);
            if (access(buf, X_OK) == 0) return 1;
        }
        path += len;
        if (*path == ':') path++;
    }
    return 0;
}

/* Count "results match" rows and the best GFLOP/s in the log so far. */
static void log_progress(const char *log, size_t *rows, double *best)
{
    *rows = 0;
    *best = 0;
    FILE *f = fopen(log, "r");
    if (!f) return;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        if (line[0] != '|' || !strstr(line, "results match")) continue;
        strip_ansi(line);
        (*rows)++;
        char *field[12];
        size_t nf = 0;
        char *save = NULL;
        for (char *tok = strtok_r(line, "|", &save); tok && nf < 12; tok = strtok_r(NULL, "|", &save))
            field[nf++] = tok;
        if (nf >= 9) {
            double g = strtod(field[7], NULL);
            if (g > *best) *best = g;
        }
    }
    fclose(f);
}

/* Run `tuner` in dir with its stdout/stderr in dir/<tuner>.log; stop it at
 * the deadline. Returns its exit status (128+signal when killed, -1 when it
 * could not be started); *stopped tells whether we stopped it. */
static int run_tuner(const char *dir, const char *tuner, const kdcl_device_info *d, size_t size,
                     double fraction, double seconds, char *log, size_t log_size, int *stopped)
{
    snprintf(log, log_size, "%s/%s.log", dir, tuner);
    char plat[16], dev[16], sz[16], frac[32];
    snprintf(plat, sizeof plat, "%u", d->platform_index);
    snprintf(dev, sizeof dev, "%u", d->device_index);
    snprintf(sz, sizeof sz, "%zu", size);
    snprintf(frac, sizeof frac, "%.6g", 1.0 / fraction);
    *stopped = 0;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || chdir(dir) != 0) _exit(127);
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0) {
            dup2(nul, 0);
            close(nul);
        }
        setpgid(0, 0);
        char *args[] = {"stdbuf", "-oL", (char *)tuner, "-platform", plat, "-device", dev,
                        "-precision", "32", "-m", sz, "-n", sz, "-k", sz, "-fraction", frac,
                        NULL};
        execvp("stdbuf", args);
        execvp(tuner, args + 2); /* no stdbuf: rows of a stopped run may be lost */
        _exit(127);
    }
    double t0 = kdcl_wall_seconds(), last = t0;
    int tty = isatty(1), status = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) return -1;
        double now = kdcl_wall_seconds();
        if (now - t0 >= seconds || interrupted) {
            kill(-pid, SIGTERM);
            kill(pid, SIGTERM);
            *stopped = 1;
            for (int i = 0; i < 50 && waitpid(pid, &status, WNOHANG) == 0; i++) usleep(100000);
            if (waitpid(pid, &status, WNOHANG) == 0) {
                kill(-pid, SIGKILL);
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
            }
            break;
        }
        if (now - last >= (tty ? 2.0 : 30.0)) {
            size_t rows;
            double best;
            log_progress(log, &rows, &best);
            printf("%s  %s: %zu configurations run, best %.1f GFLOP/s, %.0f of %.0f s%s",
                   tty ? "\r" : "", tuner, rows, best, now - t0, seconds, tty ? "   " : "\n");
            fflush(stdout);
            last = now;
        }
        usleep(200000);
    }
    if (tty) printf("\r%*s\r", 90, "");
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
}

/* The last non-empty line of a log (colours stripped), "" if none. */
static void last_line(const char *log, char *out, size_t size)
{
    *out = '\0';
    FILE *f = fopen(log, "r");
    if (!f) return;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        strip_ansi(line);
        line[strcspn(line, "\r\n")] = '\0';
        if (*line) snprintf(out, size, "%.*s", (int)(size - 1), line);
    }
    fclose(f);
}

/* ------------------------------------------------------------------ the shapes */

/* The model whose training-step GEMMs are timed (--arch, --input). */
typedef struct {
    const char *arch; /* architecture spec (kdcl_model_spec_parse, 10 classes) */
    size_t c, h, w;   /* input shape */
    int given;        /* --arch / --input given: passed on to the children */
} tune_model;

#define DEFAULT_ARCH "784-1200-1200-10"
#define N_CLASSES 10

typedef struct {
    size_t m, n, k, batch;
    size_t calls;      /* products of this shape in one training step */
    kdcl_trans ta, tb;
    char label[24];    /* "<layer> fwd|dW|dX" */
    size_t twin;       /* the same product at the first batch (second batch only; else itself) */
} tshape;

#define MAX_SHAPES 64 /* bits of a mask */

typedef struct {
    tshape s[MAX_SHAPES];
    size_t n;      /* all shapes: the first batch's, then the second's */
    size_t n0;     /* shapes of the first batch (B = 128) */
    uint64_t all;  /* mask of every shape */
} tshapes;

static const size_t tune_batches[2] = {128, 1024};

/* "2 Linear forward" -> "2 fwd", "4.body.0 Conv2d dW" -> "4.body.0 dW". */
static void short_label(const char *what, char *out, size_t size)
{
    const char *sp = strchr(what, ' '), *last = strrchr(what, ' ');
    if (!sp || !last) {
        snprintf(out, size, "%s", what);
        return;
    }
    const char *op = last + 1;
    if (!strcmp(op, "forward")) op = "fwd";
    snprintf(out, size, "%.*s %s", (int)(sp - what), what, op);
}

/* The products of a training step of the model at B = 128 and 1024
 * (kdcl_model_gemm_shapes), equal products of one batch merged (their calls
 * added). */
static kdcl_status model_shapes(kdcl_ctx *ctx, const tune_model *tm, tshapes *out)
{
    memset(out, 0, sizeof *out);
    kdcl_model_spec spec;
    memset(&spec, 0, sizeof spec);
    kdcl_model *m = NULL;
    kdcl_status s = kdcl_model_spec_parse(tm->arch, N_CLASSES, &spec);
    if (!s) s = kdcl_model_create(ctx, &spec, tm->c, tm->h, tm->w, 1, &m);
    kdcl_model_spec_free(&spec);
    if (s) return s;
    kdcl_gemm_shape g[256];
    for (size_t bi = 0; bi < 2 && !s; bi++) {
        const size_t B = tune_batches[bi], first = out->n;
        size_t ng = kdcl_model_gemm_shapes(m, B, g, sizeof g / sizeof g[0]);
        if (ng > sizeof g / sizeof g[0]) {
            s = kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: %zu GEMM shapes, more than %zu",
                               tm->arch, ng, sizeof g / sizeof g[0]);
            break;
        }
        for (size_t i = 0; i < ng; i++) {
            const kdcl_trans ta = g[i].ta ? KDCL_TRANS : KDCL_NO_TRANS,
                             tb = g[i].tb ? KDCL_TRANS : KDCL_NO_TRANS;
            size_t j = first;
            while (j < out->n && !(out->s[j].m == g[i].m && out->s[j].n == g[i].n &&
                                   out->s[j].k == g[i].k && out->s[j].ta == ta &&
                                   out->s[j].tb == tb))
                j++;
            if (j < out->n) {
                out->s[j].calls += g[i].count;
                continue;
            }
            if (out->n == MAX_SHAPES) {
                s = kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                   "%s: more than %d distinct GEMM shapes at B = 128 and 1024",
                                   tm->arch, MAX_SHAPES);
                break;
            }
            tshape *x = &out->s[out->n];
            *x = (tshape){g[i].m, g[i].n, g[i].k, B, g[i].count, ta, tb, "", out->n};
            short_label(g[i].what, x->label, sizeof x->label);
            if (bi == 1) /* the same layer's product at the first batch */
                for (size_t t = 0; t < out->n0; t++)
                    if (!strcmp(out->s[t].label, x->label)) {
                        x->twin = t;
                        break;
                    }
            out->n++;
        }
        if (bi == 0) out->n0 = out->n;
    }
    kdcl_model_destroy(m);
    if (!s && out->n == 0)
        s = kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: a training step without GEMMs", tm->arch);
    out->all = out->n == 64 ? ~(uint64_t)0 : ((uint64_t)1 << out->n) - 1;
    return s;
}

/* ------------------------------------------------------------------ measuring */

static double vol(const tshape *s) { return (double)s->m * (double)s->n * (double)s->k; }
/* weight of a shape in the total: time per 1024 samples */
static double weight(const tshape *s) { return 1024.0 / (double)s->batch * (double)s->calls; }
static int in_mask(uint64_t mask, size_t i) { return (int)((mask >> i) & 1u); }

typedef struct {
    kdcl_ctx *ctx;
    bench_gemm_bufs bufs;
} gemm_bufs;

static kdcl_status bufs_open(kdcl_ctx *ctx, const tshapes *sh, gemm_bufs *g)
{
    memset(g, 0, sizeof *g);
    g->ctx = ctx;
    size_t need[3] = {1, 1, 1};
    for (size_t i = 0; i < sh->n; i++) bench_gemm_need(need, sh->s[i].m, sh->s[i].n, sh->s[i].k);
    return bench_gemm_bufs_alloc(g->ctx, need, &g->bufs);
}

static void bufs_close(gemm_bufs *g)
{
    if (!g->ctx) return;
    bench_gemm_bufs_free(g->ctx, &g->bufs);
    g->ctx = NULL;
}

static kdcl_status gemm_once(gemm_bufs *g, const tshape *s)
{
    return bench_gemm_run(g->ctx, &g->bufs, s->ta, s->tb, s->m, s->n, s->k);
}

/* Median device seconds of `reps` calls (a warm-up call first when warm). */
static kdcl_status time_shape(gemm_bufs *g, const tshape *s, size_t reps, int warm, double *out)
{
    kdcl_status st;
    if (warm && ((st = gemm_once(g, s)) || (st = kdcl_ctx_finish(g->ctx)))) return st;
    double t[8];
    if (reps > 8) reps = 8;
    for (size_t r = 0; r < reps; r++)
        if ((st = bench_gemm_time(g->ctx, &g->bufs, s->ta, s->tb, s->m, s->n, s->k, &t[r])))
            return st;
    /* median */
    for (size_t i = 1; i < reps; i++)
        for (size_t j = i; j > 0 && t[j] < t[j - 1]; j--) {
            double x = t[j];
            t[j] = t[j - 1];
            t[j - 1] = x;
        }
    *out = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
    return KDCL_OK;
}

/* Check one product against a double-precision CPU reference: pseudo-random
 * A and B in [-1, 1], 256 sampled entries of C. A wrong parameter set (one that
 * breaks a constraint CLBlast does not check) shows up here instead of as a
 * fast, wrong GEMM. Error bound per entry: |fl(a.b) - a.b| <= gamma_k sum|a_i b_i|
 * for any summation order (Higham, eq. 3.5), gamma_k ~ k u; 2 k u is used. */
static kdcl_status verify_shape(gemm_bufs *g, const tshape *s)
{
    size_t na = s->m * s->k, nb = s->k * s->n, nc = s->m * s->n;
    float *a = malloc(na * sizeof *a), *b = malloc(nb * sizeof *b), *c = malloc(nc * sizeof *c);
    kdcl_status st = KDCL_OK;
    if (!a || !b || !c) {
        st = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        goto done;
    }
    kdcl_rng r;
    kdcl_rng_seed(&r, s->m * 31 + s->n * 17 + s->k);
    for (size_t i = 0; i < na; i++) a[i] = (float)(2.0 * kdcl_rng_uniform(&r) - 1.0);
    for (size_t i = 0; i < nb; i++) b[i] = (float)(2.0 * kdcl_rng_uniform(&r) - 1.0);
    if ((st = kdcl_tensor_upload(g->ctx, &g->bufs.a, 0, na, a)) ||
        (st = kdcl_tensor_upload(g->ctx, &g->bufs.b, 0, nb, b)) || (st = gemm_once(g, s)) ||
        (st = kdcl_tensor_download(g->ctx, &g->bufs.c, 0, nc, c)))
        goto done;
    size_t lda = s->ta ? s->m : s->k, ldb = s->tb ? s->k : s->n;
    const double u = FLT_EPSILON / 2.0; /* unit roundoff of fp32 */
    for (size_t t = 0; t < 256; t++) {
        size_t i = (t * 7919u + t / 16) % s->m, j = (t * 104729u + t) % s->n;
        double ref = 0, mag = 0;
        for (size_t l = 0; l < s->k; l++) {
            double av = s->ta ? a[l * lda + i] : a[i * lda + l];
            double bv = s->tb ? b[j * ldb + l] : b[l * ldb + j];
            ref += av * bv;
            mag += fabs(av * bv);
        }
        double err = fabs((double)c[i * s->n + j] - ref);
        double tol = 2.0 * (double)s->k * u * mag + 1e-30;
        if (!(err <= tol)) {
            st = kdcl_set_error(KDCL_ERR_NUMERIC,
                                "GEMM %zux%zux%zu %c%c: C[%zu,%zu] = %.9g, reference %.9g (bound "
                                "%.3g): these parameters compute a wrong product",
                                s->m, s->n, s->k, s->ta ? 'T' : 'N', s->tb ? 'T' : 'N', i, j,
                                (double)c[i * s->n + j], ref, tol);
            goto done;
        }
    }
done:
    free(a);
    free(b);
    free(c);
    return st;
}

/* Open a context on the device, list the model's shapes into *sh and time
 * those in mask (t[i] = NAN for the others); check: verify them against the
 * CPU reference too. */
static kdcl_status time_all(const char *spec, const tune_model *tm, size_t reps, uint64_t mask,
                            int check, tshapes *sh, double *t, char *tuning, size_t tsize)
{
    kdcl_ctx *ctx = NULL;
    gemm_bufs g;
    memset(&g, 0, sizeof g);
    kdcl_status s = kdcl_ctx_create(spec, &ctx);
    if (s) return s;
    if (!(s = model_shapes(ctx, tm, sh)) && !(s = bufs_open(ctx, sh, &g)) && tuning)
        snprintf(tuning, tsize, "%s", kdcl_ctx_gemm_tuning(ctx));
    /* every shape gets its own warm-up call: PoCL compiles a kernel again for
     * each new local size / grid class, and CLBlast's copy kernels differ by
     * transpose and padding */
    for (size_t i = 0; !s && i < sh->n; i++) {
        t[i] = NAN;
        if (!in_mask(mask, i)) continue;
        s = time_shape(&g, &sh->s[i], reps, 1, &t[i]);
    }
    for (size_t i = 0; !s && check && i < sh->n; i++)
        if (in_mask(mask, i)) s = verify_shape(&g, &sh->s[i]);
    bufs_close(&g);
    kdcl_ctx_destroy(ctx);
    return s;
}

/* ------------------------------------------------------------------ files */

/* rm -r of the scratch directory (plain files and directories only). */
static void rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char p[4600];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            struct stat st;
            if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
                rm_tree(p);
            else
                remove(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

static int mkdir_p(const char *dir)
{
    char tmp[4600];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(tmp, 0755);
            *p = '/';
        }
    return (mkdir(tmp, 0755) == 0 || errno == EEXIST) ? 0 : -1;
}

/* The whole text to path: temporary file, fsync, rename (a reader, kdcl_ctx_create
 * included, sees the old file or the new one; a crash leaves no half file). */
static int write_all(const char *path, const char *text)
{
    size_t n = strlen(text);
    int nl = n == 0 || text[n - 1] != '\n';
    char *buf = malloc(n + 2);
    if (!buf) return -1;
    memcpy(buf, text, n);
    if (nl) buf[n++] = '\n';
    kdcl_status s = kdcl_write_file_atomic(path, buf, n);
    free(buf);
    return s ? -1 : 0;
}

/* A config as the tuning file's writer takes it (names point into c). */
static kdcl_tuned_kernel as_tuned(const char *kernel, const config *c)
{
    kdcl_tuned_kernel k = {.kernel = kernel, .n = c->n <= KDCL_TUNING_MAX_PARAMS ? c->n : 0};
    for (size_t i = 0; i < k.n; i++) {
        k.names[i] = c->names[i];
        k.values[i] = c->values[i];
    }
    return k;
}

/* Write the tuning file for d at `path` (kdcl_gemm_tuning_write: directory
 * created, atomic rename). Prints nothing; kdcl_last_error() says why on -1. */
static int write_tuning(const char *path, const kdcl_device_info *d, const tuner_result *xg,
                        const tuner_result *xd, size_t min_indirect, cJSON *tuner_info)
{
    kdcl_tuned_kernel k[3];
    size_t nk = 0;
    k[nk++] = as_tuned("Xgemm", &xg->best);
    if (xd->best.valid) k[nk++] = as_tuned("XgemmDirect", &xd->best);
    kdcl_tuned_kernel gr = {.kernel = "GemmRoutine", .n = 1};
    gr.names[0] = "XGEMM_MIN_INDIRECT_SIZE";
    gr.values[0] = min_indirect;
    k[nk++] = gr;
    char *json = tuner_info ? cJSON_PrintUnformatted(tuner_info) : NULL;
    if (tuner_info && !json) {
        kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        return -1;
    }
    kdcl_status s = kdcl_gemm_tuning_write(path, d, "kdcl tune", k, nk, json);
    cJSON_free(json);
    return s ? -1 : 0;
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(1 << 20);
    size_t n = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    if (buf) buf[n] = '\0';
    return buf;
}


/* Set or unset an environment variable (value NULL: unset). */
static void set_env(const char *name, const char *value)
{
    if (value)
        setenv(name, value, 1);
    else
        unsetenv(name);
}

/* ------------------------------------------------------------------ measuring in children */

/* CLBlast keeps overridden parameters per device for the whole process, so
 * each parameter set is timed in a child process (`kdcl tune --child-measure`)
 * that applies it when it creates its context. */
typedef struct {
    char exe[4096];
    const char *spec;
    const tune_model *tm;
    size_t n_shapes; /* the child must list as many */
} child_env;

/* Time the shapes in `mask` in a child. cache_dir: the KDCL_CACHE_DIR it
 * reads its tuning file from (NULL: ours); notune_env: 1 to keep our
 * KDCL_NO_TUNING, 0 to clear it. t[i] = NAN for shapes not timed. */
static int measure_child(const child_env *ce, const char *cache_dir, int keep_notune, size_t reps,
                         uint64_t mask, int check, double *t, char *tuning, size_t tsize)
{
    char cmd[12000] = "";
    if (cache_dir) {
        strcat(cmd, "KDCL_CACHE_DIR=");
        bench_shell_quote(cmd, sizeof cmd, cache_dir);
        strcat(cmd, " ");
    }
    strcat(cmd, "KDCL_AUTOTUNE=0 "); /* no automatic search in a measuring child */
    if (!keep_notune) strcat(cmd, "KDCL_NO_TUNING= ");
    bench_shell_quote(cmd, sizeof cmd, ce->exe);
    size_t len = strlen(cmd);
    snprintf(cmd + len, sizeof cmd - len,
             " tune --child-measure --device %s --reps %zu --mask %" PRIu64 "%s", ce->spec, reps,
             mask, check ? " --check" : "");
    if (ce->tm->given) {
        len = strlen(cmd);
        snprintf(cmd + len, sizeof cmd - len, " --input %zux%zux%zu --arch ", ce->tm->c,
                 ce->tm->h, ce->tm->w);
        bench_shell_quote(cmd, sizeof cmd, ce->tm->arch);
    }
    for (size_t i = 0; i < ce->n_shapes; i++) t[i] = NAN;
    if (!mask) return 0;
    fflush(stdout);
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    char line[512];
    size_t got = 0, n = 0;
    int same = 1;
    while (fgets(line, sizeof line, f)) {
        size_t i;
        double sec;
        if (!strncmp(line, "T ", 2) && tuning) {
            line[strcspn(line, "\n")] = '\0';
            snprintf(tuning, tsize, "%.*s", (int)(tsize - 1), line + 2);
        } else if (sscanf(line, "N %zu", &n) == 1) {
            same = n == ce->n_shapes;
        } else if (same && sscanf(line, "S %zu %lf", &i, &sec) == 2 && i < ce->n_shapes) {
            t[i] = sec;
            got++;
        }
    }
    int rc = pclose(f);
    if (!same)
        fprintf(stderr, "kdcl tune: the measuring child listed %zu GEMM shapes, not %zu\n", n,
                ce->n_shapes);
    return (rc == 0 && same && got > 0) ? 0 : -1;
}

static int child_measure(const char *spec, const tune_model *tm, size_t reps, uint64_t mask,
                         int check)
{
    tshapes sh;
    double t[MAX_SHAPES];
    char tuning[256] = "";
    kdcl_status s = time_all(spec, tm, reps, mask, check, &sh, t, tuning, sizeof tuning);
    if (s) return cli_fail("tune", s);
    printf("T %s\n", tuning);
    printf("N %zu\n", sh.n);
    for (size_t i = 0; i < sh.n; i++)
        if (in_mask(mask, i)) printf("S %zu %.9g\n", i, t[i]);
    return 0;
}

/* ------------------------------------------------------------------ choosing the switch */

/* The switch size T: shapes with m*n*k < T^3 run the direct kernel. Among the
 * cuts of the shapes sorted by volume, the one with the least weighted time;
 * t_dir[i] may be INFINITY (not measured). */
static size_t best_cut(const tshapes *sh, const double *t_ind, const double *t_dir,
                       double *cost_out)
{
    const size_t N = sh->n;
    size_t order[MAX_SHAPES];
    for (size_t i = 0; i < N; i++) order[i] = i;
    for (size_t i = 1; i < N; i++)
        for (size_t j = i; j > 0 && vol(&sh->s[order[j]]) < vol(&sh->s[order[j - 1]]); j--) {
            size_t x = order[j];
            order[j] = order[j - 1];
            order[j - 1] = x;
        }
    size_t best_t = 1;
    double best_cost = INFINITY;
    for (size_t c = 0; c <= N; c++) {
        size_t T = c ? (size_t)floor(cbrt(vol(&sh->s[order[c - 1]]))) + 1 : 1;
        double T3 = (double)T * (double)T * (double)T;
        if (c > 0 && !(T3 > vol(&sh->s[order[c - 1]]))) continue;
        if (c < N && T3 > vol(&sh->s[order[c]])) continue;
        double cost = 0;
        for (size_t j = 0; j < N; j++) {
            size_t i = order[j];
            double ti = j < c ? t_dir[i] : t_ind[i];
            cost += weight(&sh->s[i]) * (isnan(ti) ? INFINITY : ti);
        }
        if (cost < best_cost) {
            best_cost = cost;
            best_t = T;
        }
    }
    *cost_out = best_cost;
    return best_t;
}

/* Time the direct kernel (all shapes forced direct) with the parameters in
 * the scratch file: the B = 128 shapes, then each B = 1024 shape whose
 * B = 128 twin (the same layer's product) ran faster direct than indirect,
 * or that has none. */
static int time_direct(const child_env *ce, const tshapes *sh, const char *scratch,
                       const double *t_ind, double *t_dir)
{
    double t2[MAX_SHAPES];
    uint64_t first = sh->n0 == 64 ? ~(uint64_t)0 : ((uint64_t)1 << sh->n0) - 1;
    if (measure_child(ce, scratch, 0, 2, first, 0, t_dir, NULL, 0)) return -1;
    uint64_t mask = 0;
    for (size_t i = sh->n0; i < sh->n; i++) {
        size_t tw = sh->s[i].twin;
        if (tw == i || t_dir[tw] < t_ind[tw]) mask |= (uint64_t)1 << i;
    }
    if (mask && measure_child(ce, scratch, 0, 2, mask, 0, t2, NULL, 0)) return -1;
    for (size_t i = sh->n0; i < sh->n; i++) t_dir[i] = in_mask(mask, i) ? t2[i] : INFINITY;
    return 0;
}

/* ------------------------------------------------------------------ kdcl's own candidates */

/* Xgemm parameter sets timed at the model's shapes next to the tuner's best.
 * CLBlast's tuners rank configurations at one square size and explore random
 * subsets, which on CPUs under PoCL rarely contain the sets that suit them:
 * PoCL runs a work-group's work-items as a loop around each region between
 * barriers, so the tiles must sit in local memory (SA = SB = 1, the loop then
 * runs over L1-resident data) and the accumulators should be the CPU's widest
 * vectors (VWM = VWN = 8 for AVX); Intel's CPU runtime instead vectorises
 * across work-items and runs best without local memory. The GPU entries are common shapes of
 * CLBlast's own database. Every set satisfies CLBlast's Xgemm constraints
 * (KWG % KWI, MWG % (MDIMC VWM), NWG % (NDIMC VWN), MWG % (MDIMA VWM),
 * NWG % (NDIMB VWN), KWG % (MDIMC NDIMC / MDIMA), KWG % (MDIMC NDIMC / NDIMB)). */
#define N_XGEMM_PARAMS 16
static const char *const cand_names[N_XGEMM_PARAMS] = {
    "GEMMK", "KREG", "KWG", "KWI", "MDIMA", "MDIMC", "MWG", "NDIMB",
    "NDIMC", "NWG",  "SA",  "SB",  "STRM",  "STRN",  "VWM", "VWN"};
static const struct {
    const char *what;
    size_t v[N_XGEMM_PARAMS];
} cand_table[] = {
    {"CPU AVX: 64x64x64 local tiles, float8", {0, 1, 64, 2, 8, 8, 64, 8, 8, 64, 1, 1, 0, 0, 8, 8}},
    {"CPU AVX: 64x64x32 local tiles, float8", {0, 1, 32, 2, 8, 8, 64, 8, 8, 64, 1, 1, 0, 0, 8, 8}},
    {"CPU AVX: 32x64x64 local tiles, float8", {0, 1, 64, 2, 4, 4, 32, 8, 8, 64, 1, 1, 0, 0, 8, 8}},
    {"CPU SSE/NEON: 64x64x64 local tiles, float4",
     {0, 1, 64, 2, 8, 8, 64, 8, 8, 64, 1, 1, 0, 0, 4, 4}},
    /* for runtimes that vectorise across work-items (Intel's CPU runtime):
     * no local memory, 16 x 16 work-items, strided access (the shipped set
     * for it, found by the automatic tuning in src/core/gemm.c) */
    {"CPU, no local memory: 128x128x64, 16x16 items, strided",
     {0, 1, 64, 2, 16, 16, 128, 16, 16, 128, 0, 0, 1, 1, 4, 8}},
    {"CPU, no local memory: 128x128x32, 16x32 items", {0, 1, 32, 2, 16, 16, 128, 32, 32, 128, 0, 0, 0, 0, 2, 4}},
    {"GPU: 128x128x16 tiles, 256 work-items", {0, 1, 16, 2, 16, 16, 128, 16, 16, 128, 1, 1, 0, 0, 4, 4}},
    {"GPU: 64x64x32 tiles, 256 work-items", {0, 1, 32, 2, 16, 16, 64, 16, 16, 64, 1, 1, 0, 0, 2, 2}},
    /* clblast_tuner_xgemm's best of 829 configurations at 1024^3 on an H100
     * (NVIDIA OpenCL 3.0, driver 580.159.04): 23.9 TFLOP/s kernel time */
    {"GPU: 128x64x32, float4 x float8 (H100 tuner)",
     {0, 1, 32, 2, 32, 32, 128, 8, 8, 64, 1, 1, 1, 0, 4, 8}},
};
#define N_CANDIDATES (sizeof cand_table / sizeof cand_table[0])

/* The shapes the candidates are scored on: those whose every dimension is
 * at least 32 (the indirect kernel pads a product to its tiles, so narrow
 * ones, such as the 10-wide output layer's, are left to the direct kernel),
 * at both batches; every shape when none is that wide. */
static uint64_t cand_mask(const tshapes *sh)
{
    uint64_t mask = 0;
    for (size_t i = 0; i < sh->n; i++)
        if (sh->s[i].m >= 32 && sh->s[i].n >= 32 && sh->s[i].k >= 32) mask |= (uint64_t)1 << i;
    return mask ? mask : sh->all;
}

static double weighted_cost(const tshapes *sh, const double *t, uint64_t mask)
{
    double c = 0;
    for (size_t i = 0; i < sh->n; i++)
        if (in_mask(mask, i)) c += weight(&sh->s[i]) * (isnan(t[i]) ? INFINITY : t[i]);
    return c;
}

#define CAND_COLUMNS 8 /* B = 128 shapes shown per candidate */

/* Time each candidate (and the tuner's best, when there is one) with the
 * indirect kernel on every shape of cand_mask, results checked against a CPU
 * reference, and put the cheapest in *xg. Returns the number of sets that ran. */
static size_t choose_xgemm(const child_env *ce, const kdcl_device_info *d, const char *scratch,
                           const char *scratch_file, const tshapes *sh, tuner_result *xg,
                           cJSON *info)
{
    tuner_result none, best;
    memset(&none, 0, sizeof none);
    memset(&best, 0, sizeof best);
    double best_cost = INFINITY;
    const char *best_what = NULL;
    size_t ran = 0, shown = 0;
    const uint64_t mask = cand_mask(sh);
    printf("timing Xgemm parameter sets at the model's shapes (indirect kernel, checked against "
           "a CPU reference)\n");
    printf("  %-44s", "parameter set");
    for (size_t i = 0; i < sh->n0 && shown < CAND_COLUMNS; i++)
        if (in_mask(mask, i)) {
            printf(" %12.12s", sh->s[i].label);
            shown++;
        }
    printf(" %12s\n", "ms/1024 smp");
    cJSON *arr = cJSON_CreateArray();
    for (size_t c = 0; c <= N_CANDIDATES; c++) {
        tuner_result cur;
        memset(&cur, 0, sizeof cur);
        const char *what;
        if (c == N_CANDIDATES) {
            if (!xg->best.valid) break;
            cur = *xg;
            what = "clblast_tuner_xgemm's best";
        } else {
            what = cand_table[c].what;
            cur.best.n = N_XGEMM_PARAMS;
            for (size_t j = 0; j < N_XGEMM_PARAMS; j++) {
                snprintf(cur.best.names[j], sizeof cur.best.names[j], "%s", cand_names[j]);
                cur.best.values[j] = cand_table[c].v[j];
            }
            cur.best.valid = 1;
        }
        printf("  %-44s", what);
        fflush(stdout);
        double t[MAX_SHAPES];
        if (write_tuning(scratch_file, d, &cur, &none, 1, NULL)) {
            printf(" not written: %s\n", kdcl_last_error());
            continue;
        }
        if (measure_child(ce, scratch, 0, 2, mask, 1, t, NULL, 0)) {
            printf(" failed (does not run on this device, or computes a wrong product)\n");
            continue;
        }
        ran++;
        shown = 0;
        for (size_t i = 0; i < sh->n0 && shown < CAND_COLUMNS; i++)
            if (in_mask(mask, i)) {
                printf(" %12.1f", 2 * vol(&sh->s[i]) * 1e-9 / t[i]);
                shown++;
            }
        double cost = weighted_cost(sh, t, mask);
        printf(" %12.1f\n", cost * 1e3 / 2);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "set", what);
        cJSON_AddNumberToObject(o, "ms_per_1024_samples", cost * 1e3 / 2);
        cJSON_AddItemToArray(arr, o);
        if (cost < best_cost) {
            best_cost = cost;
            best = cur;
            best_what = what;
        }
    }
    size_t n_first = 0;
    for (size_t i = 0; i < sh->n0; i++) n_first += (size_t)in_mask(mask, i);
    printf("  (GFLOP/s at B = 128%s; last column: GEMM ms per 1024 samples, mean of B = 128 "
           "and 1024)\n",
           n_first > CAND_COLUMNS ? ", the first shapes" : "");
    cJSON_AddItemToObject(info, "xgemm_sets", arr);
    if (best_what) {
        printf("  chosen: %s\n", best_what);
        cJSON_AddStringToObject(info, "xgemm_chosen", best_what);
        *xg = best;
    }
    return ran;
}

/* ------------------------------------------------------------------ command */

static void print_best(const char *kernel, const tuner_result *r, size_t size)
{
    if (!r->best.valid) {
        printf("  %-12s no result\n", kernel);
        return;
    }
    double gf = 2.0 * (double)size * (double)size * (double)size / (r->best.ms * 1e-3) * 1e-9;
    printf("  %-12s best of %zu configurations: %.2f ms at %zu^3 (%.1f GFLOP/s):", kernel,
           r->tested, r->best.ms, size, gf);
    for (size_t i = 0; i < r->best.n; i++) printf(" %s=%zu", r->best.names[i], r->best.values[i]);
    printf("\n");
}

int cmd_tune(int argc, char **argv)
{
    static const struct option opts[] = {{"device", required_argument, 0, 'd'},
                                         {"fraction", required_argument, 0, 'f'},
                                         {"max-seconds", required_argument, 0, 's'},
                                         {"size", required_argument, 0, 'z'},
                                         {"keep", no_argument, 0, 'k'},
                                         {"child-measure", no_argument, 0, 'c'},
                                         {"reps", required_argument, 0, 'r'},
                                         {"mask", required_argument, 0, 'm'},
                                         {"check", no_argument, 0, 'C'},
                                         {"search", required_argument, 0, 'S'},
                                         {"arch", required_argument, 0, 'A'},
                                         {"input", required_argument, 0, 'I'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *device = NULL;
    double fraction = 0.005, max_seconds = 180;
    size_t size = 512, reps = 3;
    uint64_t mask = ~(uint64_t)0;
    tune_model tm = {DEFAULT_ARCH, 1, 28, 28, 0};
    int keep = 0, child = 0, check = 0, input_given = 0, o;
    unsigned search = 3; /* 1: CLBlast's tuners, 2: kdcl's candidate sets */
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'd': device = optarg; break;
        case 'f':
            if (kdcl_parse_double(optarg, &fraction) || !(fraction > 0) || fraction > 1)
                return cli_usage_error("tune", "--fraction needs a number in (0, 1], got '%s'",
                                       optarg);
            break;
        case 's':
            if (kdcl_parse_double(optarg, &max_seconds) || !(max_seconds >= 10) ||
                max_seconds > 1e6)
                return cli_usage_error("tune", "--max-seconds needs a number in 10..1e6, got '%s'",
                                       optarg);
            break;
        case 'z':
            if (kdcl_parse_size(optarg, &size) || size < 128 || size > 4096 || size % 128)
                return cli_usage_error("tune",
                                       "--size needs a multiple of 128 in 128..4096, got '%s'",
                                       optarg);
            break;
        case 'k': keep = 1; break;
        case 'c': child = 1; break;
        case 'C': check = 1; break;
        case 'S':
            if (!strcmp(optarg, "tuners"))
                search = 1;
            else if (!strcmp(optarg, "candidates"))
                search = 2;
            else if (!strcmp(optarg, "both"))
                search = 3;
            else
                return cli_usage_error("tune", "--search takes tuners, candidates or both, got '%s'",
                                       optarg);
            break;
        case 'r':
            if (kdcl_parse_size(optarg, &reps) || reps == 0 || reps > 8)
                return cli_usage_error("tune", "--reps needs 1..8, got '%s'", optarg);
            break;
        case 'm':
            if (kdcl_parse_u64(optarg, &mask)) return cli_usage_error("tune", "bad --mask '%s'", optarg);
            break;
        case 'A':
            tm.arch = optarg;
            tm.given = 1;
            break;
        case 'I': {
            char *e1 = NULL, *e2 = NULL, *e3 = NULL;
            unsigned long c = strtoul(optarg, &e1, 10), h = 0, w = 0;
            if (e1 && *e1 == 'x') h = strtoul(e1 + 1, &e2, 10);
            if (e2 && *e2 == 'x') w = strtoul(e2 + 1, &e3, 10);
            if (!e3 || *e3 || c < 1 || c > 4 || h < 1 || w < 1 || h > 4096 || w > 4096 ||
                !isdigit((unsigned char)optarg[0]))
                return cli_usage_error("tune", "--input needs CxHxW (C in 1..4), got '%s'", optarg);
            tm.c = c;
            tm.h = h;
            tm.w = w;
            tm.given = input_given = 1;
            break;
        }
        case 'h':
            printf(
                "usage: kdcl tune [--device D] [--search tuners|candidates|both] [--fraction F]\n"
                "                 [--max-seconds S] [--size N] [--keep] [--arch SPEC]\n"
                "                 [--input CxHxW]\n\n"
                "Tunes CLBlast's single-precision GEMM kernels for one device with CLBlast's own\n"
                "tuners (clblast_tuner_xgemm, clblast_tuner_xgemm_direct; Debian package\n"
                "clblast-utils) and kdcl's own candidate parameter sets, times the Xgemm sets at\n"
                "the GEMM shapes of a model's training step at B = 128 and 1024\n"
                "(kdcl_model_gemm_shapes; results checked against a CPU reference), keeps the\n"
                "fastest there, chooses the size at which CLBlast\n"
                "switches from the direct to the indirect kernel (and whether the tuned direct\n"
                "kernel beats CLBlast's) by timing those GEMMs, and stores the result for\n"
                "this device and driver (kdcl uses it from then on, for every model;\n"
                "KDCL_NO_TUNING=1 ignores it). Prints the GEMM rates before and after.\n\n"
                "options:\n"
                "  --device D        P:D, cpu, gpu or a name substring (default: $KDCL_DEVICE,\n"
                "                    else the first GPU, else the first device)\n"
                "  --search S        tuners: CLBlast's tuners only; candidates: kdcl's candidate\n"
                "                    sets only (no clblast-utils needed, minutes); both (default)\n"
                "  --fraction F      share of each tuner's random search space to explore\n"
                "                    (default 0.005)\n"
                "  --max-seconds S   time for both tuners together (default 180); a tuner still\n"
                "                    running then is stopped and its results so far are used\n"
                "  --size N          m = n = k of the tuners' problem (default 512)\n"
                "  --keep            keep the new parameters even if they are slower at the\n"
                "                    model's shapes than the ones used before (default: put the\n"
                "                    previous state back)\n"
                "  --arch SPEC       the model whose GEMMs are timed (default " DEFAULT_ARCH "):\n"
                "                    A-B-...-K, a layer list, a preset (lenet5, cnn-small,\n"
                "                    cnn-medium, resnet20) or\n"
                "                    @FILE.json, as kdcl train --arch (10 classes)\n"
                "  --input CxHxW     its input shape (default 1x28x28; resnet20: 3x32x32)\n");
            return 0;
        default:
            return cli_usage_error("tune", "unknown option or missing value: %s",
                                   argv[optind - 1]);
        }
    }
    if (optind < argc) return cli_usage_error("tune", "unexpected argument '%s'", argv[optind]);
    if (!input_given && !strcmp(tm.arch, "resnet20")) tm.c = 3, tm.h = tm.w = 32;
    if (child) return child_measure(device, &tm, reps, mask, check);
    static const char *tuners[2] = {"clblast_tuner_xgemm", "clblast_tuner_xgemm_direct"};
    for (int i = 0; i < 2 && (search & 1); i++)
        if (!in_path(tuners[i])) {
            fprintf(stderr,
                    "kdcl tune: %s not found in PATH: install CLBlast's tuners with "
                    "'apt-get install clblast-utils' (or use --search candidates)\n",
                    tuners[i]);
            return CLI_EXIT_FAIL;
        }

    /* the device and where its file goes */
    kdcl_ctx *ctx;
    int rc = cli_open_ctx("tune", device, &ctx);
    if (rc) return rc;
    kdcl_device_info d = *kdcl_ctx_device(ctx);
    tshapes shapes, *sh = &shapes;
    kdcl_status s = model_shapes(ctx, &tm, sh);
    kdcl_ctx_destroy(ctx);
    if (s) return cli_fail("tune", s);
    child_env ce;
    ce.tm = &tm;
    ce.n_shapes = sh->n;
    char spec[32], path[4400];
    snprintf(spec, sizeof spec, "%u:%u", d.platform_index, d.device_index);
    ce.spec = spec;
    bench_self_exe(ce.exe, sizeof ce.exe, argv[0]);
    s = kdcl_gemm_tuning_path(&d, path, sizeof path);
    if (s) return cli_fail("tune", s);
    { /* the file can be written, before minutes of tuning */
        char cdir[4400];
        snprintf(cdir, sizeof cdir, "%s", path);
        char *slash = strrchr(cdir, '/');
        if (slash) *slash = '\0';
        if (slash) mkdir_p(cdir);
        if ((rc = cli_check_output("tune", "the tuning file", path))) return rc;
    }
    printf("device   %s %s (%s, driver %s)\n", spec, d.name, d.platform_name, d.driver_version);
    printf("file     %s\n", path);
    printf("model    %s on %zux%zux%zu inputs: %zu distinct GEMM shapes at B = 128 and 1024\n",
           tm.arch, tm.c, tm.h, tm.w, sh->n);

    double before[MAX_SHAPES], after[MAX_SHAPES], t_ind[MAX_SHAPES], t_dtun[MAX_SHAPES],
        t_ddef[MAX_SHAPES];
    char tuning_before[256] = "", tuning_after[256] = "";
    /* the tuners */
    char tmpl[] = "/tmp/kdcl-tune-XXXXXX";
    char *dir = mkdtemp(tmpl);
    if (!dir) {
        fprintf(stderr, "kdcl tune: cannot create a temporary directory: %s\n", strerror(errno));
        return CLI_EXIT_FAIL;
    }
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    tuner_result res[2];
    memset(res, 0, sizeof res);
    int status[2] = {0, 0}, stopped[2] = {0, 0};
    char logs[2][4200];
    double t_start = kdcl_wall_seconds();
    if (search & 1)
        printf("running CLBlast's tuners in %s (fraction %g, %zu^3, at most %.0f s)\n", dir,
               fraction, size, max_seconds);
    for (int i = 0; i < 2 && !interrupted && (search & 1); i++) {
        /* the indirect kernel gets 2/3 of the time, the direct one the rest */
        double budget = i == 0 ? max_seconds * 2.0 / 3.0
                               : max_seconds - (kdcl_wall_seconds() - t_start);
        if (budget < 5) budget = 5;
        double t1 = kdcl_wall_seconds();
        status[i] = run_tuner(dir, tuners[i], &d, size, fraction, budget, logs[i],
                              sizeof logs[i], &stopped[i]);
        if (status[i] == -1) {
            fprintf(stderr, "kdcl tune: cannot run %s\n", tuners[i]);
            continue;
        }
        parse_tuner_log(dir, logs[i], &res[i]);
        printf("  %s: %zu configurations in %.0f s%s, exit status %d\n", tuners[i],
               res[i].tested, kdcl_wall_seconds() - t1,
               stopped[i] ? " (stopped at its time limit)" : "", status[i]);
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (interrupted) {
        fprintf(stderr, "kdcl tune: interrupted; nothing written (tuner logs in %s)\n", dir);
        return CLI_EXIT_FAIL;
    }
    if (!res[0].best.valid && !(search & 2)) {
        char last[256];
        last_line(logs[0], last, sizeof last);
        fprintf(stderr,
                "kdcl tune: %s produced no usable result (exit status %d%s%s); nothing written "
                "(log: %s)\n",
                tuners[0], status[0], *last ? ", last output: " : "", last, logs[0]);
        return CLI_EXIT_FAIL;
    }
    double t0 = kdcl_wall_seconds();
    printf("timing the model's GEMMs with the current parameters... ");
    fflush(stdout);
    if (measure_child(&ce, NULL, 1, 3, sh->all, 0, before, tuning_before, sizeof tuning_before)) {
        fprintf(stderr, "\nkdcl tune: timing the GEMMs failed (see the messages above)\n");
        return CLI_EXIT_FAIL;
    }
    printf("%.0f s\n", kdcl_wall_seconds() - t0);

    if (search & 1) {
        print_best("Xgemm", &res[0], size);
        print_best("XgemmDirect", &res[1], size);
    }
    if (!res[1].best.valid && (search & 1))
        fprintf(stderr,
                "kdcl tune: warning: %s produced no result (exit status %d, log %s); the "
                "direct kernel keeps CLBlast's parameters\n",
                tuners[1], status[1], logs[1]);

    /* which direct-kernel parameters, and where to switch to the indirect
     * kernel: time the shapes all-indirect and all-direct (tuned and CLBlast's
     * direct parameters) with scratch tuning files, pick the cheapest */
    char scratch[4300], scratch_file[4400];
    snprintf(scratch, sizeof scratch, "%s/cache", dir);
    cJSON *info = cJSON_CreateObject();
    cJSON_AddStringToObject(info, "search", search == 3 ? "both" : search == 1 ? "tuners"
                                                                                 : "candidates");
    if (search & 1) {
        cJSON_AddNumberToObject(info, "size", (double)size);
        cJSON_AddNumberToObject(info, "fraction", fraction);
        cJSON_AddNumberToObject(info, "xgemm_configurations", (double)res[0].tested);
        if (res[0].best.valid) cJSON_AddNumberToObject(info, "xgemm_best_ms", res[0].best.ms);
        cJSON_AddNumberToObject(info, "xgemm_direct_configurations", (double)res[1].tested);
        if (res[1].best.valid)
            cJSON_AddNumberToObject(info, "xgemm_direct_best_ms", res[1].best.ms);
    }
    tuner_result none;
    memset(&none, 0, sizeof none);
    {
        char *old = getenv("KDCL_CACHE_DIR") ? strdup(getenv("KDCL_CACHE_DIR")) : NULL;
        setenv("KDCL_CACHE_DIR", scratch, 1); /* for kdcl_gemm_tuning_path only */
        s = kdcl_gemm_tuning_path(&d, scratch_file, sizeof scratch_file);
        set_env("KDCL_CACHE_DIR", old);
        free(old);
    }
    int fail = s != KDCL_OK;
    if (!fail && (search & 2)) {
        t0 = kdcl_wall_seconds();
        size_t ran = choose_xgemm(&ce, &d, scratch, scratch_file, sh, &res[0], info);
        printf("  %zu parameter sets timed in %.0f s\n", ran, kdcl_wall_seconds() - t0);
    }
    if (!fail && !res[0].best.valid) {
        fprintf(stderr, "kdcl tune: no Xgemm parameter set ran on this device; nothing written "
                        "(logs in %s)\n",
                dir);
        cJSON_Delete(info);
        return CLI_EXIT_FAIL;
    }
    printf("choosing the direct-kernel parameters and XGEMM_MIN_INDIRECT_SIZE... ");
    fflush(stdout);
    t0 = kdcl_wall_seconds();
    for (size_t i = 0; i < sh->n; i++) t_dtun[i] = t_ddef[i] = INFINITY;
    fail = fail || write_tuning(scratch_file, &d, &res[0], &res[1], 1, info) ||
           measure_child(&ce, scratch, 0, 2, sh->all, 0, t_ind, NULL, 0);
    if (!fail && res[1].best.valid)
        fail = write_tuning(scratch_file, &d, &res[0], &res[1], 100000, info) ||
               time_direct(&ce, sh, scratch, t_ind, t_dtun);
    if (!fail)
        fail = write_tuning(scratch_file, &d, &res[0], &none, 100000, info) ||
               time_direct(&ce, sh, scratch, t_ind, t_ddef);
    if (fail) {
        fprintf(stderr, "\nkdcl tune: timing candidate parameters failed; nothing written "
                        "(tuner logs in %s)\n",
                dir);
        cJSON_Delete(info);
        return CLI_EXIT_FAIL;
    }
    double cost_tun = INFINITY, cost_def;
    size_t T_tun = res[1].best.valid ? best_cut(sh, t_ind, t_dtun, &cost_tun) : 0;
    size_t T_def = best_cut(sh, t_ind, t_ddef, &cost_def);
    int use_tuned_direct = res[1].best.valid && cost_tun <= cost_def;
    size_t T = use_tuned_direct ? T_tun : T_def;
    printf("%.0f s\n", kdcl_wall_seconds() - t0);
    printf("  XgemmDirect: %s parameters; XGEMM_MIN_INDIRECT_SIZE = %zu (m*n*k < %zu^3 runs "
           "the direct kernel)\n",
           use_tuned_direct ? "the tuned" : "CLBlast's", T, T);
    cJSON_AddBoolToObject(info, "tuned_direct_used", use_tuned_direct);

    /* write the real file, then time the shapes as kdcl will run them */
    char *previous = read_all(path);
    if (previous && !kdcl_gemm_tuning_text_usable(previous, strlen(previous))) {
        printf("replacing the unusable tuning file %s\n", path);
        free(previous);
        previous = NULL;
    }
    if (write_tuning(path, &d, &res[0], use_tuned_direct ? &res[1] : &none, T, info)) {
        fprintf(stderr, "kdcl tune: cannot write %s: %s\n", path, kdcl_last_error());
        free(previous);
        cJSON_Delete(info);
        return CLI_EXIT_FAIL;
    }
    cJSON_Delete(info);
    if (measure_child(&ce, NULL, 0, 3, sh->all, 0, after, tuning_after, sizeof tuning_after)) {
        if (previous)
            write_all(path, previous);
        else
            remove(path);
        free(previous);
        fprintf(stderr, "kdcl tune: kdcl cannot run GEMMs with the new file; previous state "
                        "restored (tuner logs in %s)\n",
                dir);
        return CLI_EXIT_FAIL;
    }
    printf("\nGEMM GFLOP/s at the model's shapes (device time, median of 3)\n");
    printf("  %-5s %-16s %-16s %-3s %6s %10s %10s %8s\n", "B", "layer, product", "m x n x k",
           "op", "calls", "before", "after", "speedup");
    double tb = 0, ta = 0;
    for (size_t i = 0; i < sh->n; i++) {
        const tshape *x = &sh->s[i];
        char dims[40];
        snprintf(dims, sizeof dims, "%zux%zux%zu", x->m, x->n, x->k);
        double f = 2 * vol(x) * 1e-9;
        printf("  %-5zu %-16s %-16s %c%c  %6zu %10.2f %10.2f %7.2fx\n", x->batch, x->label, dims,
               x->ta ? 'T' : 'N', x->tb ? 'T' : 'N', x->calls, f / before[i], f / after[i],
               before[i] / after[i]);
        tb += weight(x) * before[i];
        ta += weight(x) * after[i];
    }
    printf("  before: %s; after: %s\n", tuning_before, tuning_after);
    printf("  GEMM time per 1024 training samples (mean of B = 128 and 1024): %.0f ms -> %.0f ms "
           "(%.2fx)\n",
           tb * 1e3 / 2, ta * 1e3 / 2, tb / ta);
    if (ta > tb * 1.03 && !keep) {
        if (previous)
            write_all(path, previous);
        else
            remove(path);
        printf("the new parameters are slower at these shapes than the previous ones: %s\n"
               "(--keep keeps them anyway; a larger --fraction / --max-seconds searches more)\n",
               previous ? "previous file restored"
                        : "file removed, kdcl keeps its shipped / CLBlast parameters");
    } else {
        printf("wrote %s (KDCL_NO_TUNING=1 ignores it; delete it to go back)\n", path);
    }
    free(previous);
    rm_tree(dir);
    return 0;
}
