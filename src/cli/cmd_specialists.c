/* kdcl specialists cluster|train|eval: the paper's section 5 on any OpenCL
 * device. cluster: covariance of the generalist's predictions + K-means into
 * a JSON clusters file; train: one specialist (|S| + 1 outputs, the last the
 * dustbin) per cluster, several at once on their own contexts (threads);
 * eval: generalist vs generalist + specialists, overall, on the covered
 * classes, by the number of active specialists covering the correct class
 * (the paper's Table 4) and per cluster. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli/fit.h"
#include "kdcl/dist.h"
#include "kdcl/file.h"
#include "kdcl/specialists.h"

#define MAX_NAMES 4096
#define MAX_DEVICES 16

/* ---- shared ------------------------------------------------------------------ */

static int load_generalist(const char *cmd, kdcl_ctx *ctx, const char *path, size_t max_batch,
                           kdcl_model **g)
{
    kdcl_status s = kdcl_model_load(ctx, path, max_batch, g, NULL);
    return s ? cli_fail(cmd, s) : 0;
}

static int check_model_data(const char *cmd, kdcl_model *g, const kdcl_dataset *ds)
{
    const size_t K = kdcl_model_classes(g);
    if (kdcl_model_fit_input(g, ds->c, ds->h, ds->w) || ds->n_classes > K)
        return cli_fail(cmd, kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                            "the generalist takes %zu inputs and has %zu classes; "
                                            "the data has %zu inputs and %zu classes",
                                            kdcl_model_in_dim(g), K, ds->dim, ds->n_classes));
    return 0;
}

/* One name per line (K lines; blank lines at the end ignored). */
static int read_names(const char *cmd, const char *path, size_t K, char ***out)
{
    FILE *f = fopen(path, "r");
    if (!f) return cli_usage_error(cmd, "cannot read --class-names %s: %s", path, strerror(errno));
    char **names = calloc(K, sizeof *names), line[512];
    size_t n = 0;
    int rc = 0;
    while (names && fgets(line, sizeof line, f)) {
        size_t len = strcspn(line, "\r\n");
        line[len] = '\0';
        if (len == 0) continue;
        if (n == K) {
            rc = cli_usage_error(cmd, "--class-names %s has more than the %zu classes", path, K);
            break;
        }
        if (!(names[n++] = strdup(line))) break;
    }
    fclose(f);
    if (!names) return cli_fail(cmd, kdcl_set_error(KDCL_ERR_OOM, "out of host memory"));
    if (!rc && n != K)
        rc = cli_usage_error(cmd, "--class-names %s has %zu names for %zu classes", path, n, K);
    if (rc) {
        for (size_t i = 0; i < K; i++) free(names[i]);
        free(names);
        return rc;
    }
    *out = names;
    return 0;
}

static void free_names(char **names, size_t K)
{
    if (!names) return;
    for (size_t i = 0; i < K; i++) free(names[i]);
    free(names);
}

/* "3,5,7" into buf (stops while a class id still fits). */
static void format_classes(char *buf, size_t size, const int32_t *cls, size_t n)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && off + 16 < size; i++)
        off += (size_t)snprintf(buf + off, size - off, i ? ",%d" : "%d", (int)cls[i]);
}

/* Is name "specialist_<id>.safetensors" (what train writes)? 1 and *id if so. */
static int specialist_file_id(const char *name, size_t *id)
{
    char tail[32];
    return sscanf(name, "specialist_%zu%31s", id, tail) == 2 && !strcmp(tail, ".safetensors");
}

/* K class names: from --class-names, else the dataset's when it has K, else
 * none (*out stays NULL; ids are printed). */
static int class_names(const char *cmd, const char *path, const kdcl_dataset *ds, size_t K,
                       char ***out)
{
    if (path) return read_names(cmd, path, K, out);
    if (ds->class_names && ds->n_classes == K) {
        char **names = calloc(K, sizeof *names);
        for (size_t k = 0; names && k < K; k++) names[k] = strdup(ds->class_names[k]);
        *out = names;
    }
    return 0;
}

static const char *class_name(char **names, size_t k, char *buf, size_t size)
{
    if (names && names[k]) return names[k];
    snprintf(buf, size, "%zu", k);
    return buf;
}

/* ---- cluster ----------------------------------------------------------------- */

static int cluster_help(void)
{
    printf("usage: kdcl specialists cluster --model GENERALIST --clusters M --out CLUSTERS.json\n"
           "                                [options]\n\n"
           "Covariance of the generalist's predicted probabilities over the training split\n"
           "(a GEMM on the device), K-means on its columns (seeded, with restarts), and the\n"
           "generalist's confusion within each cluster.\n\n"
           "  --model FILE        the generalist checkpoint\n"
           "  --clusters M        number of clusters (1..classes)\n"
           "  --out FILE          clusters file (JSON) to write\n"
           "  --data DIR          dataset directory (default $KDCL_DATA or " CLI_DEFAULT_DATA ")\n"
           CLI_SKIP_BAD_IMAGES_HELP
           "  --restarts R        K-means runs, the lowest inertia wins (default 100 up to\n"
           "                      1000 classes, else 10)\n"
           "  --overlap r         put each class in its r nearest clusters (default 1)\n"
           "  --points P          correlation (default) or covariance: the columns K-means\n"
           "                      clusters. With few classes the covariance's diagonal (each\n"
           "                      class's own variance) dominates the distances, so the\n"
           "                      confidently predicted classes end up alone\n"
           "  --seed S            K-means seed (default 1)\n"
           "  --class-names FILE  one class name per line (default: the dataset's, if any)\n"
           "  --device D          OpenCL device: P:D, cpu, gpu or a name substring\n");
    return 0;
}

static int cmd_cluster(int argc, char **argv)
{
    const char *cmd = "specialists cluster";
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"clusters", required_argument, 0, 'M'},
        {"out", required_argument, 0, 'o'},   {"data", required_argument, 0, 'd'},
        {"restarts", required_argument, 0, 'r'}, {"overlap", required_argument, 0, 'v'},
        {"seed", required_argument, 0, 's'},  {"class-names", required_argument, 0, 'n'},
        {"device", required_argument, 0, 'D'}, {"points", required_argument, 0, 'P'},
        {"help", no_argument, 0, 'h'},        CLI_SKIP_BAD_IMAGES_OPTION, {0, 0, 0, 0}};
    const char *model = NULL, *out = NULL, *data = NULL, *names_path = NULL, *device = NULL;
    kdcl_kmeans_opts ko;
    kdcl_kmeans_opts_default(&ko);
    ko.M = 0;
    ko.correlation = 1;
    ko.restarts = 0; /* default below, from K */
    int c;
    size_t z;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'h': return cluster_help();
        case 'm': model = optarg; break;
        case 'o': out = optarg; break;
        case 'd': data = optarg; break;
        case 'n': names_path = optarg; break;
        case 'D': device = optarg; break;
        case CLI_OPT_SKIP_BAD_IMAGES: cli_skip_bad_images = 1; break;
        case 'P':
            if (!strcmp(optarg, "correlation"))
                ko.correlation = 1;
            else if (!strcmp(optarg, "covariance"))
                ko.correlation = 0;
            else
                return cli_usage_error(cmd, "--points needs correlation or covariance, got '%s'",
                                       optarg);
            break;
        case 'M':
        case 'r':
        case 'v':
            if (cli_parse_size(optarg, &z) || z == 0 || z > 1000000)
                return cli_usage_error(cmd, "--%s needs an integer in 1..1000000, got '%s'",
                                       c == 'M' ? "clusters" : c == 'r' ? "restarts" : "overlap",
                                       optarg);
            *(c == 'M' ? &ko.M : c == 'r' ? &ko.restarts : &ko.overlap) = z;
            break;
        case 's':
            if (cli_parse_u64(optarg, &ko.seed))
                return cli_usage_error(cmd, "--seed needs a non-negative integer, got '%s'", optarg);
            break;
        default: return cli_usage_error(cmd, "unknown option or missing value: %s", argv[optind - 1]);
        }
    }
    if (optind < argc) return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!model || !out || !ko.M)
        return cli_usage_error(cmd, "--model, --clusters and --out are required");
    int rc = cli_check_output(cmd, "--out", out);
    if (rc) return rc;
    kdcl_dataset train = {0};
    kdcl_ctx *ctx = NULL;
    kdcl_model *g = NULL;
    kdcl_clusters cl = {0};
    double *cov = NULL, *mean = NULL;
    int32_t *conf = NULL;
    char **names = NULL;
    kdcl_status s = KDCL_OK;
    if ((rc = cli_load_split(cmd, cli_data_dir(data), "train", &train)) ||
        (rc = cli_open_ctx(cmd, device, &ctx)) ||
        (rc = load_generalist(cmd, ctx, model, 1024, &g)) ||
        (rc = check_model_data(cmd, g, &train)))
        goto done;
    const size_t K = kdcl_model_classes(g);
    if (!ko.restarts) ko.restarts = K <= 1000 ? 100 : 10;
    if (ko.M > K) {
        rc = cli_usage_error(cmd, "--clusters %zu is more than the %zu classes", ko.M, K);
        goto done;
    }
    if (ko.overlap > ko.M) {
        rc = cli_usage_error(cmd, "--overlap %zu is more than the %zu clusters", ko.overlap, ko.M);
        goto done;
    }
    if ((rc = class_names(cmd, names_path, &train, K, &names))) goto done;
    cov = malloc(K * K * sizeof *cov);
    mean = malloc(K * sizeof *mean);
    conf = malloc(K * K * sizeof *conf);
    if (!cov || !mean || !conf) {
        s = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        goto done;
    }
    double t0 = kdcl_wall_seconds();
    if ((s = kdcl_prob_covariance(g, &train, cov, mean, conf))) goto done;
    double t1 = kdcl_wall_seconds();
    double inertia = 0;
    if ((s = kdcl_cluster_classes(cov, K, &ko, &cl, &inertia))) goto done;
    double t2 = kdcl_wall_seconds();
    kdcl_cluster_info info = {model, (const char *const *)names, conf, cov, &ko, inertia};
    if ((s = kdcl_clusters_save_json(out, &cl, &info))) goto done;
    size_t errors = 0;
    for (size_t i = 0; i < K; i++)
        for (size_t j = 0; j < K; j++)
            if (i != j) errors += (size_t)conf[i * K + j];
    printf("kdcl %s: %zu classes, %zu training examples, generalist %s (%zu training errors)\n",
           cmd, K, train.n, model, errors);
    printf("covariance %.2f s on %s, K-means of the %s columns %.3f s (%zu restarts, inertia "
           "%.6g)\n",
           t1 - t0, kdcl_ctx_device(ctx)->name, ko.correlation ? "correlation" : "covariance",
           t2 - t1, ko.restarts, inertia);
    for (size_t m = 0; m < cl.M; m++) {
        size_t within = 0, total = 0;
        printf("cluster %zu:", m);
        for (size_t a = cl.off[m]; a < cl.off[m + 1]; a++) {
            char buf[32];
            printf(" %s%s", a > cl.off[m] ? "| " : "", class_name(names, (size_t)cl.cls[a], buf, sizeof buf));
            for (size_t j = 0; j < K; j++) {
                size_t i = (size_t)cl.cls[a];
                total += (size_t)conf[i * K + j];
                if (j == i) continue;
                for (size_t b2 = cl.off[m]; b2 < cl.off[m + 1]; b2++)
                    if ((size_t)cl.cls[b2] == j) within += (size_t)conf[i * K + j];
            }
        }
        printf("\n    %zu training examples, %zu confused within the cluster (%.1f%% of all "
               "generalist errors)\n",
               total, within, errors ? 100.0 * (double)within / (double)errors : 0.0);
    }
    printf("saved %s\n", out);
done:
    if (s) rc = cli_fail(cmd, s);
    free(cov);
    free(mean);
    free(conf);
    free_names(names, g ? kdcl_model_classes(g) : 0);
    kdcl_clusters_free(&cl);
    kdcl_model_destroy(g);
    kdcl_ctx_destroy(ctx);
    kdcl_dataset_free(&train);
    return rc;
}

/* ---- train ------------------------------------------------------------------- */

typedef struct {
    size_t cluster;                /* id in the clusters file */
    const int32_t *cls;
    size_t n;
    kdcl_status status;
    char error[1024];
    double seconds, offset;
    size_t special_examples;
    kdcl_epoch_stats last;
    size_t worker;
    int skipped;        /* --resume: finished by an earlier run */
    int resume;         /* --resume: continues from its training state */
    char state[4096];   /* its training state's path */
} spec_job;

typedef struct {
    const char *model, *out_dir;
    const kdcl_dataset *train, *val;
    kdcl_train_opts o;
    spec_job *jobs;
    size_t n_jobs;
    int quiet, keep_state;
    size_t state_every;
    char generalist_hash[64];
} spec_pool;

typedef struct {
    spec_pool *p;
    size_t id;
    kdcl_ctx *ctx; /* created by the main thread: platform discovery is not thread-safe */
    kdcl_model *g; /* the generalist on ctx */
} spec_worker;

static void job_path(const spec_pool *p, size_t cluster, char *buf, size_t size)
{
    snprintf(buf, size, "%s/specialist_%zu.safetensors", p->out_dir, cluster);
}

static kdcl_status train_one(spec_pool *p, kdcl_ctx *ctx, kdcl_model *g, spec_job *j,
                             size_t worker)
{
    (void)ctx;
    kdcl_model *sm = NULL;
    char tag[64], path[4096], cls[4096] = "", v[12][4200];
    kdcl_status s;
    size_t maxb = p->o.batch > 1000 ? p->o.batch : 1000;
    if ((s = kdcl_model_replace_output(g, j->n + 1, maxb, p->o.seed, &sm)) ||
        (s = kdcl_specialist_init(g, j->cls, j->n, sm)))
        goto done;
    kdcl_train_opts o = p->o;
    snprintf(tag, sizeof tag, "specialist %zu", j->cluster);
    o.tag = tag;
    o.val = p->val;
    o.metrics_path = NULL;
    /* resumable: the state keys name what a resumed specialist must share */
    char sv_cls[4096];
    format_classes(sv_cls, sizeof sv_cls, j->cls, j->n);
    const char *skeys[3] = {"command", "generalist", "specialist_classes"};
    const char *svals[3] = {"specialists train", p->generalist_hash, sv_cls};
    o.state_path = j->state;
    o.resume = j->resume;
    o.state_every = p->state_every;
    o.state_keys = skeys;
    o.state_vals = svals;
    o.n_state = 3;
    double t0 = kdcl_wall_seconds();
    if ((s = kdcl_specialist_train(sm, p->train, j->cls, j->n, &o, &j->last, &j->offset)))
        goto done;
    j->seconds = kdcl_wall_seconds() - t0;
    j->worker = worker;
    format_classes(cls, sizeof cls, j->cls, j->n);
    const char *keys[12] = {"specialist_classes", "specialist_cluster", "dustbin_offset",
                            "generalist",         "optimizer",          "max_norm",
                            "epochs",             "lr",                 "jitter",
                            "seed",               "train_seconds",      "device"};
    const char *vals[12];
    snprintf(v[1], sizeof v[1], "%zu", j->cluster);
    snprintf(v[2], sizeof v[2], "%.9g", j->offset);
    snprintf(v[3], sizeof v[3], "%s", p->model);
    snprintf(v[4], sizeof v[4], "%s",
             o.optimizer == KDCL_OPT_SGD ? (o.nesterov ? "nesterov" : "sgd")
                                         : o.optimizer == KDCL_OPT_ADAM ? "adam" : "adamw");
    snprintf(v[5], sizeof v[5], "%g", (double)o.max_norm);
    snprintf(v[6], sizeof v[6], "%zu", o.epochs);
    snprintf(v[7], sizeof v[7], "%g", (double)o.lr);
    snprintf(v[8], sizeof v[8], "%d", o.jitter);
    snprintf(v[9], sizeof v[9], "%llu", (unsigned long long)o.seed);
    snprintf(v[10], sizeof v[10], "%.1f", j->seconds);
    snprintf(v[11], sizeof v[11], "%s", kdcl_ctx_device(ctx)->name);
    vals[0] = cls;
    for (int i = 1; i < 12; i++) vals[i] = v[i];
    job_path(p, j->cluster, path, sizeof path);
    if (!(s = kdcl_model_save(sm, path, keys, vals, 12)) && !p->keep_state) remove(j->state);
done:
    kdcl_model_destroy(sm);
    return s;
}

/* What a job sends back to rank 0 (the table's row). */
typedef struct {
    int status, ran;
    char error[1024];
    double seconds, offset, train_error;
    size_t special_examples, worker;
    int rank;
} spec_result;

typedef struct {
    spec_pool *p;
    spec_worker *w;
    const size_t *order; /* hand-out position -> index in p->jobs */
} spec_sched;

/* Specialists are handed out largest first (an epoch is twice the special
 * examples, so the time grows with them): the last to finish is then a
 * small one, and the ranks end close together. */
static const spec_pool *sort_pool;
static int by_size_desc(const void *a, const void *b)
{
    const spec_job *x = &sort_pool->jobs[*(const size_t *)a], *y = &sort_pool->jobs[*(const size_t *)b];
    if (x->special_examples != y->special_examples)
        return x->special_examples > y->special_examples ? -1 : 1;
    return x->cluster < y->cluster ? -1 : x->cluster > y->cluster;
}

/* One specialist on this rank's worker `worker` (its context; the generalist
 * loaded there on its first job). */
static void spec_run(void *user, size_t job, size_t worker, void *result)
{
    spec_sched *sc = user;
    spec_pool *p = sc->p;
    spec_worker *w = &sc->w[worker];
    spec_job *j = &p->jobs[sc->order[job]];
    spec_result *r = result;
    r->rank = kdcl_dist_rank();
    r->worker = worker;
    if (j->skipped) return;
    r->ran = 1;
    kdcl_status s = KDCL_OK;
    if (!w->g) {
        s = kdcl_model_load(w->ctx, p->model, 1024, &w->g, NULL);
        if (!s) s = kdcl_model_fit_input(w->g, p->train->c, p->train->h, p->train->w);
        if (s) {
            kdcl_model_destroy(w->g);
            w->g = NULL;
        }
    }
    if (!s) s = train_one(p, w->ctx, w->g, j, worker);
    r->status = s;
    if (s) snprintf(r->error, sizeof r->error, "%s", kdcl_last_error());
    r->seconds = j->seconds;
    r->offset = j->offset;
    r->train_error = j->last.train_error;
    r->special_examples = j->special_examples;
}

static int train_help(void)
{
    printf("usage: kdcl specialists train --model GENERALIST --clusters CLUSTERS.json --out DIR\n"
           "                              [options]\n\n"
           "Trains one specialist per cluster: the generalist's architecture with |S| + 1\n"
           "outputs (the special classes, then the dustbin), initialised from the generalist\n"
           "(hidden layers and the special classes' output rows copied; the dustbin row the\n"
           "mean of the other rows, its bias their mean + log(their count)), trained on\n"
           "batches that are half special-class examples and half other examples labelled\n"
           "dustbin; the dustbin bias is then raised by log((N - N_special) / N_special).\n"
           "Writes DIR/specialist_<cluster>.safetensors. Specialists train in parallel,\n"
           "each worker on its own OpenCL context (and command queue).\n\n"
           "  --model FILE        the generalist checkpoint\n"
           "  --clusters FILE     clusters file from `kdcl specialists cluster`\n"
           "  --out DIR           output directory (created if missing)\n"
           "  --min-size N        skip clusters of fewer than N classes (default 2)\n"
           "  --jobs N            specialists trained at once (default 1; per rank under mpirun)\n"
           "  --devices LIST      comma-separated devices for the workers, round robin\n"
           "                      (under mpirun: worker i of node-local rank l takes entry\n"
           "                      l * N + i; default $KDCL_DEVICES, else --device / \n"
           "                      $KDCL_DEVICE for all)\n"
           "Under mpirun, the ranks' workers ask rank 0 for the next specialist as they\n"
           "finish one (the largest first); each writes its own file; rank 0 prints the\n"
           "table.\n"
           "training options (as kdcl train; --arch, --out, --metrics and the class/fraction\n"
           "options do not apply):\n");
    cli_fit_help();
    return 0;
}

static int cmd_spec_train(int argc, char **argv)
{
    const char *cmd = "specialists train";
    static const struct option opts[] = {
        CLI_FIT_OPTIONS,
        {"model", required_argument, 0, 'm'},
        {"clusters", required_argument, 0, 'c'},
        {"min-size", required_argument, 0, 'n'},
        {"jobs", required_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    cli_fit f;
    cli_fit_init(&f, cmd);
    const char *model = NULL, *clusters = NULL;
    size_t min_size = 2, jobs = 1, z;
    int c, rc;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'h': return train_help();
        case 'm': model = optarg; continue;
        case 'c': clusters = optarg; continue;
        case 'n':
        case 'j':
            if (cli_parse_size(optarg, &z) || z == 0 || (c == 'j' && z > 64))
                return cli_usage_error(cmd, "--%s needs a positive integer%s, got '%s'",
                                       c == 'n' ? "min-size" : "jobs", c == 'j' ? " <= 64" : "",
                                       optarg);
            *(c == 'n' ? &min_size : &jobs) = z;
            continue;
        }
        if (c == 1001 || c == 1014 || c == 1017 || c == 1018 || c == 1019 || c == 1024)
            return cli_usage_error(cmd, "%s does not apply to specialists", argv[optind - 1]);
        if (c == 1008)
            return cli_usage_error(cmd, "--dropout does not apply to specialists: they keep the "
                                        "generalist's architecture, Dropout layers included");
        if ((rc = cli_fit_option(&f, c, optarg)) == 1)
            return cli_usage_error(cmd, "unknown option or missing value: %s", argv[optind - 1]);
        if (rc) return rc;
    }
    if (optind < argc) return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!model || !clusters || !f.out)
        return cli_usage_error(cmd, "--model, --clusters and --out DIR are required");
    if ((rc = cli_check_output_dir(cmd, "--out", f.out))) return rc;
    spec_pool p;
    memset(&p, 0, sizeof p);
    p.model = model;
    p.out_dir = f.out;
    p.o = f.o;
    p.quiet = f.quiet;
    p.keep_state = f.keep_state;
    p.state_every = f.state_every;
    if (f.devices) {
        size_t nd = 1;
        for (const char *c2 = f.devices; *c2; c2++) nd += *c2 == ',';
        if (nd > MAX_DEVICES)
            return cli_usage_error(cmd, "--devices lists more than %d devices", MAX_DEVICES);
    }
    kdcl_dataset train = {0}, tr = {0}, va = {0};
    kdcl_clusters cl = {0};
    kdcl_status s = KDCL_OK;
    spec_worker *w = NULL;
    spec_result *results = NULL;
    size_t *order = NULL, *pos = NULL;
    const int rank = kdcl_dist_rank();
    rc = 0;
    const char *data = cli_data_dir(f.data);
    if ((rc = cli_load_split(cmd, data, "train", &train))) goto done;
    const kdcl_dataset *fit = &train;
    if (f.val > 0) {
        if (f.val >= train.n) {
            rc = cli_usage_error(cmd, "--val %zu leaves no training examples (%zu in all)", f.val,
                                 train.n);
            goto done;
        }
        if ((s = kdcl_dataset_split_val(&train, f.val, p.o.seed, &tr, &va))) goto done;
        fit = &tr;
        p.val = &va;
    }
    p.train = fit;
    if ((s = kdcl_clusters_load_json(clusters, 0, &cl))) goto done;
    if (cl.K < train.n_classes) {
        s = kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s covers %zu classes but the data has %zu",
                           clusters, cl.K, train.n_classes);
        goto done;
    }
    p.jobs = calloc(cl.M, sizeof *p.jobs);
    if (!p.jobs) {
        s = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        goto done;
    }
    for (size_t m = 0; m < cl.M; m++) {
        size_t n = cl.off[m + 1] - cl.off[m];
        if (n < min_size || n >= cl.K) continue;
        spec_job *j = &p.jobs[p.n_jobs++];
        j->cluster = m;
        j->cls = cl.cls + cl.off[m];
        j->n = n;
    }
    if (p.n_jobs == 0) {
        rc = cli_usage_error(cmd, "no cluster of %s has between --min-size %zu and %zu classes",
                             clusters, min_size, cl.K - 1);
        goto done;
    }
    { /* specialists of other clusters left in DIR would join this run's at eval */
        DIR *d = opendir(f.out);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            size_t id;
            if (!specialist_file_id(e->d_name, &id)) continue;
            int ours = 0;
            for (size_t i = 0; i < p.n_jobs; i++) ours |= p.jobs[i].cluster == id;
            if (!ours) {
                rc = cli_usage_error(cmd,
                                     "%s/%s is not one of this run's specialists (left from "
                                     "another clusters file?): use an empty --out directory",
                                     f.out, e->d_name);
                break;
            }
        }
        if (d) closedir(d);
        if (rc) goto done;
    }
    { /* resumable: an unfinished specialist is continued (--resume) or refused */
        uint64_t gh = 0;
        if (cli_file_hash(model, &gh)) {
            s = kdcl_set_error(KDCL_ERR_IO, "cannot read the generalist %s: %s", model,
                               strerror(errno));
            goto done;
        }
        snprintf(p.generalist_hash, sizeof p.generalist_hash, "hash %016llx",
                 (unsigned long long)gh);
        size_t n_skip = 0, n_resume = 0;
        for (size_t i = 0; i < p.n_jobs; i++) {
            spec_job *j = &p.jobs[i];
            char path[4096];
            job_path(&p, j->cluster, path, sizeof path);
            cli_state_path(path, j->state, sizeof j->state);
            if (access(j->state, F_OK) == 0) {
                kdcl_train_state_info si;
                if (kdcl_train_state_info_read(j->state, &si)) {
                    rc = cli_usage_error(cmd, "%s is not a usable training state (%s): remove it",
                                         j->state, kdcl_last_error());
                    goto done;
                }
                if (!f.resume) {
                    rc = cli_usage_error(cmd, "%s holds an unfinished specialist (%zu of %zu "
                                              "epochs done): add --resume to continue, or "
                                              "remove it to start again",
                                         j->state, si.epoch, si.epochs);
                    goto done;
                }
                j->resume = 1;
                n_resume++;
            } else if (f.resume && access(path, F_OK) == 0) {
                j->skipped = 1;
                n_skip++;
            }
        }
        if (f.resume && rank == 0)
            printf("kdcl %s: --resume: %zu specialists finished before, %zu to continue, %zu to "
                   "train\n",
                   cmd, n_skip, n_resume, p.n_jobs - n_skip - n_resume);
    }
    if (mkdir(f.out, 0777) && errno != EEXIST) {
        s = kdcl_set_error(KDCL_ERR_IO, "cannot create %s: %s", f.out, strerror(errno));
        goto done;
    }
    if (jobs > p.n_jobs) jobs = p.n_jobs;
    p.o.log = f.quiet ? NULL : stdout;
    p.o.progress = !f.quiet && jobs == 1 && kdcl_dist_size() < 2;
    w = calloc(jobs, sizeof *w);
    results = calloc(p.n_jobs, sizeof *results);
    if (!w || !results) {
        s = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        goto done_lock;
    }
    for (size_t i = 0; i < jobs; i++) {
        w[i].p = &p;
        w[i].id = i;
        char db[256];
        const char *dev = cli_rank_device(f.devices, f.device,
                                          (size_t)kdcl_dist_local_rank() * jobs + i, db, sizeof db);
        if ((rc = cli_open_ctx(cmd, dev, &w[i].ctx))) goto done_lock;
    }
    { /* the generalist must fit the clusters and the data before any worker starts */
        kdcl_model *g = NULL;
        if ((s = kdcl_model_load(w[0].ctx, model, 1, &g, NULL))) goto done_lock;
        const size_t gK = kdcl_model_classes(g), gin = kdcl_model_in_dim(g);
        kdcl_model_destroy(g);
        if (gK != cl.K || gin != fit->dim) {
            s = kdcl_set_error(KDCL_ERR_INVALID_ARG,
                               "%s is over %zu classes and the data has %zu inputs, but the "
                               "generalist %s has %zu inputs and %zu classes",
                               clusters, cl.K, fit->dim, model, gin, gK);
            goto done_lock;
        }
    }
    {
        char what[256], devs[1024] = "";
        size_t off = 0;
        for (size_t i = 0; i < jobs && off < sizeof devs; i++)
            off += (size_t)snprintf(devs + off, sizeof devs - off, "%s%s", i ? ", " : "",
                                    kdcl_ctx_device(w[i].ctx)->name);
        snprintf(what, sizeof what, "%zu specialists handed out one at a time, %zu worker%s "
                                    "per rank",
                 p.n_jobs, jobs, jobs > 1 ? "s" : "");
        uint64_t fp = kdcl_hash64(KDCL_HASH64_INIT, &fit->n, sizeof fit->n);
        fp = kdcl_hash64(fp, fit->labels, fit->n * sizeof *fit->labels);
        fp = kdcl_hash64(fp, fit->images, fit->n * fit->dim);
        fp = kdcl_hash64(fp, p.generalist_hash, strlen(p.generalist_hash));
        if ((rc = cli_dist_ready(cmd, what, devs, fp))) goto done_lock;
    }
    if (rank == 0) {
        printf("kdcl %s: %zu specialists from %s, %zu at a time%s, %zu training examples, "
               "%zu epochs each\n",
               cmd, p.n_jobs, clusters, jobs, kdcl_dist_size() > 1 ? " per rank" : "", fit->n,
               p.o.epochs);
        fflush(stdout);
    }
    double t0 = kdcl_wall_seconds();
    for (size_t i = 0; i < p.n_jobs; i++) { /* each specialist's special examples */
        spec_job *j = &p.jobs[i];
        for (size_t e = 0; e < fit->n; e++)
            for (size_t k = 0; k < j->n; k++)
                if (fit->labels[e] == j->cls[k]) j->special_examples++;
    }
    order = malloc(p.n_jobs * sizeof *order);
    pos = malloc(p.n_jobs * sizeof *pos);
    if (!order || !pos) {
        s = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        goto done_lock;
    }
    for (size_t i = 0; i < p.n_jobs; i++) order[i] = i;
    sort_pool = &p;
    qsort(order, p.n_jobs, sizeof *order, by_size_desc);
    for (size_t i = 0; i < p.n_jobs; i++) pos[order[i]] = i;
    spec_sched sc = {&p, w, order};
    if ((s = kdcl_dist_schedule(p.n_jobs, jobs, sizeof *results, results, spec_run, &sc)))
        goto done_lock;
    const double wall = kdcl_wall_seconds() - t0;
    if (rank != 0) goto done_lock; /* rank 0 has every result */
    double sum = 0;
    size_t failed = 0;
    printf("\n| cluster | classes | special examples | last train err | dustbin offset | seconds "
           "| rank | worker |\n|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < p.n_jobs; i++) {
        spec_job *j = &p.jobs[i];
        spec_result *r = &results[pos[i]];
        if (j->skipped) {
            char cls[256];
            format_classes(cls, sizeof cls, j->cls, j->n);
            printf("| %zu | %s | | finished before | | | | |\n", j->cluster, cls);
            continue;
        }
        if (r->status || !r->ran) {
            fprintf(stderr, "kdcl %s: specialist %zu (rank %d, worker %zu): %s\n", cmd,
                    j->cluster, r->rank, r->worker, r->ran ? r->error : "never ran");
            failed++;
            continue;
        }
        char cls[256];
        format_classes(cls, sizeof cls, j->cls, j->n);
        printf("| %zu | %s | %zu | %.2f%% | %.3f | %.1f | %d | %zu |\n", j->cluster, cls,
               r->special_examples, 100 * r->train_error, r->offset, r->seconds, r->rank,
               r->worker);
        sum += r->seconds;
    }
    printf("\n%zu specialists in %.1f s wall with %zu at a time on %d rank%s (sum of their own "
           "times %.1f s); saved in %s\n",
           p.n_jobs - failed, wall, jobs, kdcl_dist_size(), kdcl_dist_size() > 1 ? "s" : "",
           sum, f.out);
    if (failed && !rc) rc = CLI_EXIT_FAIL;
done_lock:
    for (size_t i = 0; w && i < jobs; i++) {
        kdcl_model_destroy(w[i].g);
        kdcl_ctx_destroy(w[i].ctx);
    }
done:
    if (s) rc = cli_fail(cmd, s);
    free(w);
    free(results);
    free(order);
    free(pos);
    free(p.jobs);
    kdcl_clusters_free(&cl);
    kdcl_dataset_free(&train);
    kdcl_dataset_free(&tr);
    kdcl_dataset_free(&va);
    return rc;
}

/* ---- eval -------------------------------------------------------------------- */

typedef struct {
    size_t cluster;
    char path[4096];
} spec_file;

static int cmp_spec(const void *a, const void *b)
{
    const spec_file *x = a, *y = b;
    return x->cluster < y->cluster ? -1 : x->cluster > y->cluster;
}

/* DIR/specialist_<n>.safetensors, sorted by n. */
static int list_specialists(const char *cmd, const char *dir, spec_file **out, size_t *n)
{
    DIR *d = opendir(dir);
    if (!d) return cli_usage_error(cmd, "cannot open --specialists %s: %s", dir, strerror(errno));
    spec_file *v = NULL;
    size_t cnt = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t id;
        if (!specialist_file_id(e->d_name, &id)) continue;
        if (cnt == cap) {
            cap = cap ? 2 * cap : 16;
            spec_file *nv = realloc(v, cap * sizeof *nv);
            if (!nv) {
                free(v);
                closedir(d);
                return cli_fail(cmd, kdcl_set_error(KDCL_ERR_OOM, "out of host memory"));
            }
            v = nv;
        }
        v[cnt].cluster = id;
        snprintf(v[cnt].path, sizeof v[cnt].path, "%s/%s", dir, e->d_name);
        cnt++;
    }
    closedir(d);
    if (cnt == 0) {
        free(v);
        return cli_usage_error(cmd, "no specialist_<n>.safetensors in %s", dir);
    }
    if (cnt > KDCL_MAX_CLUSTERS) {
        free(v);
        return cli_usage_error(cmd, "more than %d specialists in %s", KDCL_MAX_CLUSTERS, dir);
    }
    qsort(v, cnt, sizeof *v, cmp_spec);
    *out = v;
    *n = cnt;
    return 0;
}

/* "3,5,7" -> ascending class list (validated against K). */
static kdcl_status parse_spec_classes(const char *path, const char *s, size_t K, int32_t **out,
                                      size_t *n)
{
    if (!s)
        return kdcl_set_error(KDCL_ERR_FORMAT,
                              "%s has no specialist_classes metadata (not written by "
                              "kdcl specialists train)",
                              path);
    size_t cnt = 1;
    for (const char *c = s; *c; c++) cnt += *c == ',';
    int32_t *v = malloc(cnt * sizeof *v);
    if (!v) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    const char *c = s;
    for (size_t i = 0; i < cnt; i++) {
        char *end;
        errno = 0;
        long x = strtol(c, &end, 10);
        if (end == c || errno || x < 0 || (size_t)x >= K || (*end != ',' && *end != '\0') ||
            (i + 1 < cnt && *end != ',')) {
            free(v);
            return kdcl_set_error(KDCL_ERR_FORMAT,
                                  "%s: malformed specialist_classes '%s' (class ids 0..%zu)",
                                  path, s, K - 1);
        }
        v[i] = (int32_t)x;
        c = end + 1;
    }
    *out = v;
    *n = cnt;
    return KDCL_OK;
}

static int eval_help(void)
{
    kdcl_combine_opts co;
    kdcl_combine_opts_default(&co);
    printf("usage: kdcl specialists eval --model GENERALIST --specialists DIR [options]\n\n"
           "Test accuracy of the generalist alone and combined with its specialists: for\n"
           "each example the specialists whose classes meet the generalist's top-n are\n"
           "active, and q = softmax(w) minimising KL(p_g||q) + sum KL(p_m||q_m) is found by\n"
           "gradient descent on the device. Reports the accuracy overall, on the classes the\n"
           "specialists cover, by the number of active specialists covering the correct\n"
           "class (the paper's Table 4), and per specialist.\n\n"
           "  --model FILE        the generalist checkpoint\n"
           "  --specialists DIR   directory of specialist_<n>.safetensors\n"
           "  --data DIR          dataset directory (default $KDCL_DATA or " CLI_DEFAULT_DATA ")\n"
           CLI_SKIP_BAD_IMAGES_HELP
           "  --split S           split to evaluate (default test)\n"
           "  --top-n N           generalist's top-n classes select the specialists (default 1)\n"
           "  --iters N           gradient-descent steps (default %zu)\n"
           "  --lr X              step size (default %g)\n"
           "  --class-names FILE  one class name per line (for the per-specialist table)\n"
           "  --json FILE         write the results as JSON\n"
           "  --device D          OpenCL device: P:D, cpu, gpu or a name substring\n",
           co.iters, (double)co.lr);
    return 0;
}

typedef struct {
    size_t n, gen_ok, comb_ok;
} tally;

static void tally_add(tally *t, int g, int c)
{
    t->n++;
    t->gen_ok += (size_t)g;
    t->comb_ok += (size_t)c;
}

static void tally_row(FILE *f, const char *label, const tally *t)
{
    double ga = t->n ? 100.0 * (double)t->gen_ok / (double)t->n : 0;
    double ca = t->n ? 100.0 * (double)t->comb_ok / (double)t->n : 0;
    char rel[32] = "n/a"; /* relative to the generalist's correct answers */
    if (t->gen_ok)
        snprintf(rel, sizeof rel, "%+.1f%%",
                 100.0 * ((double)t->comb_ok - (double)t->gen_ok) / (double)t->gen_ok);
    fprintf(f, "| %s | %zu | %.2f%% | %.2f%% | %+zd | %s |\n", label, t->n, ga, ca,
            (ssize_t)t->comb_ok - (ssize_t)t->gen_ok, rel);
}

static cJSON *tally_json(const tally *t)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "examples", (double)t->n);
    cJSON_AddNumberToObject(o, "generalist_correct", (double)t->gen_ok);
    cJSON_AddNumberToObject(o, "combined_correct", (double)t->comb_ok);
    return o;
}

static int cmd_spec_eval(int argc, char **argv)
{
    const char *cmd = "specialists eval";
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},  {"specialists", required_argument, 0, 'S'},
        {"data", required_argument, 0, 'd'},   {"split", required_argument, 0, 'p'},
        {"top-n", required_argument, 0, 't'},  {"iters", required_argument, 0, 'i'},
        {"lr", required_argument, 0, 'l'},     {"json", required_argument, 0, 'j'},
        {"class-names", required_argument, 0, 'n'}, {"device", required_argument, 0, 'D'},
        {"help", no_argument, 0, 'h'},         CLI_SKIP_BAD_IMAGES_OPTION, {0, 0, 0, 0}};
    const char *model = NULL, *sdir = NULL, *data = NULL, *split = "test", *json = NULL,
               *names_path = NULL, *device = NULL;
    kdcl_combine_opts co;
    kdcl_combine_opts_default(&co);
    int c;
    size_t z;
    double d;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            eval_help();
            return 0;
        case 'm': model = optarg; break;
        case 'S': sdir = optarg; break;
        case 'd': data = optarg; break;
        case 'p': split = optarg; break;
        case 'j': json = optarg; break;
        case CLI_OPT_SKIP_BAD_IMAGES: cli_skip_bad_images = 1; break;
        case 'n': names_path = optarg; break;
        case 'D': device = optarg; break;
        case 't':
        case 'i':
            if (cli_parse_size(optarg, &z) || z == 0 || (c == 'i' && z > 1000000))
                return cli_usage_error(cmd, "--%s needs a positive integer%s, got '%s'",
                                       c == 't' ? "top-n" : "iters",
                                       c == 'i' ? " <= 1000000" : "", optarg);
            *(c == 't' ? &co.top_n : &co.iters) = z;
            break;
        case 'l':
            if (cli_parse_double(optarg, &d) || !(d > 0) || !isfinite(d))
                return cli_usage_error(cmd, "--lr needs a positive number, got '%s'", optarg);
            co.lr = (float)d;
            break;
        default: return cli_usage_error(cmd, "unknown option or missing value: %s", argv[optind - 1]);
        }
    }
    if (optind < argc) return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!model || !sdir) return cli_usage_error(cmd, "--model and --specialists are required");
    if (json) {
        int rc = cli_check_output(cmd, "--json", json);
        if (rc) return rc;
    }
    kdcl_dataset ds = {0};
    kdcl_ctx *ctx = NULL;
    kdcl_model *g = NULL, *specs[KDCL_MAX_CLUSTERS] = {0};
    int32_t *lists[KDCL_MAX_CLUSTERS] = {0};
    size_t sizes[KDCL_MAX_CLUSTERS], M = 0;
    spec_file *files = NULL;
    kdcl_clusters cl = {0};
    int32_t *gp = NULL, *cp = NULL;
    uint8_t *act = NULL;
    char **names = NULL;
    size_t K = 0;
    kdcl_status s = KDCL_OK;
    int rc;
    if ((rc = list_specialists(cmd, sdir, &files, &M)) ||
        (rc = cli_load_split(cmd, cli_data_dir(data), split, &ds)) ||
        (rc = cli_open_ctx(cmd, device, &ctx)) ||
        (rc = load_generalist(cmd, ctx, model, 1024, &g)) ||
        (rc = check_model_data(cmd, g, &ds)))
        goto done;
    K = kdcl_model_classes(g);
    if ((rc = class_names(cmd, names_path, &ds, K, &names))) goto done;
    for (size_t m = 0; m < M; m++) {
        kdcl_st_file meta;
        if ((s = kdcl_model_load(ctx, files[m].path, 1024, &specs[m], &meta))) goto done;
        s = parse_spec_classes(files[m].path, kdcl_st_meta(&meta, "specialist_classes"), K,
                               &lists[m], &sizes[m]);
        kdcl_st_free(&meta);
        if (s) goto done;
        if (kdcl_model_in_dim(specs[m]) != kdcl_model_in_dim(g) ||
            kdcl_model_classes(specs[m]) != sizes[m] + 1) {
            s = kdcl_set_error(KDCL_ERR_FORMAT,
                               "%s: %zu inputs and %zu outputs do not fit %zu special classes "
                               "+ dustbin on the generalist's %zu inputs",
                               files[m].path, kdcl_model_in_dim(specs[m]),
                               kdcl_model_classes(specs[m]), sizes[m], kdcl_model_in_dim(g));
            goto done;
        }
    }
    if ((s = kdcl_clusters_from_lists(K, M, sizes, (const int32_t *const *)lists, &cl))) goto done;
    gp = malloc(ds.n * sizeof *gp);
    cp = malloc(ds.n * sizeof *cp);
    act = malloc(ds.n * M);
    if (!gp || !cp || !act) {
        s = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        goto done;
    }
    double t0 = kdcl_wall_seconds();
    if ((s = kdcl_specialists_predict(g, specs, &cl, &ds, &co, 1024, gp, cp, act)))
        goto done;
    const double secs = kdcl_wall_seconds() - t0;
    /* tallies: overall, covered classes, by covering count, per specialist */
    tally all = {0}, covered = {0}, byc[KDCL_MAX_CLUSTERS + 1], per[KDCL_MAX_CLUSTERS],
          with_active = {0};
    memset(byc, 0, sizeof byc);
    memset(per, 0, sizeof per);
    size_t max_cover = 0, n_active_sum = 0;
    for (size_t i = 0; i < ds.n; i++) {
        const int32_t y = ds.labels[i];
        const int g_ok = gp[i] == y, c_ok = cp[i] == y;
        size_t cover = 0, n_act = 0, in_any = 0;
        for (size_t m = 0; m < M; m++) {
            int has = 0;
            for (size_t a = cl.off[m]; a < cl.off[m + 1]; a++) has |= cl.cls[a] == y;
            n_act += act[i * M + m];
            if (has) {
                in_any = 1;
                cover += act[i * M + m];
                tally_add(&per[m], g_ok, c_ok);
            }
        }
        n_active_sum += n_act;
        tally_add(&all, g_ok, c_ok);
        if (in_any) tally_add(&covered, g_ok, c_ok);
        if (n_act) tally_add(&with_active, g_ok, c_ok);
        tally_add(&byc[cover], g_ok, c_ok);
        if (cover > max_cover) max_cover = cover;
    }
    printf("kdcl %s: generalist %s + %zu specialists on %zu %s examples (%s), top-n %zu, %zu "
           "steps of lr %g: %.2f s\n\n",
           cmd, model, M, ds.n, split, kdcl_ctx_device(ctx)->name, co.top_n, co.iters,
           (double)co.lr, secs);
    printf("| examples | n | generalist | + specialists | correct +- | relative |\n"
           "|---|---|---|---|---|---|\n");
    tally_row(stdout, "all", &all);
    tally_row(stdout, "correct class covered by a specialist", &covered);
    tally_row(stdout, "with an active specialist", &with_active);
    printf("\nby the number of active specialists covering the correct class (Table 4):\n\n"
           "| active specialists covering | n | generalist | + specialists | correct +- | "
           "relative |\n|---|---|---|---|---|---|\n");
    for (size_t k = 0; k <= max_cover; k++) {
        char label[32];
        snprintf(label, sizeof label, "%zu", k);
        tally_row(stdout, label, &byc[k]);
    }
    printf("\nper specialist (test examples of its classes):\n\n"
           "| specialist | classes | n | generalist | + specialists | correct +- | relative |\n"
           "|---|---|---|---|---|---|---|\n");
    for (size_t m = 0; m < M; m++) {
        char cls[512] = "", buf[32], label[600];
        size_t off = 0;
        for (size_t a = cl.off[m]; a < cl.off[m + 1] && off < 400; a++)
            off += (size_t)snprintf(cls + off, sizeof cls - off, "%s%s", a > cl.off[m] ? ", " : "",
                                    class_name(names, (size_t)cl.cls[a], buf, sizeof buf));
        snprintf(label, sizeof label, "%zu | %s", files[m].cluster, cls);
        tally_row(stdout, label, &per[m]);
    }
    printf("\ntest errors: generalist %zu, generalist + specialists %zu (%zu examples, %.2f active "
           "specialists per example)\n",
           all.n - all.gen_ok, all.n - all.comb_ok, all.n, (double)n_active_sum / (double)all.n);
    if (json) {
        cJSON *root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "generalist", model);
        cJSON_AddStringToObject(root, "specialists", sdir);
        cJSON_AddStringToObject(root, "split", split);
        cJSON_AddStringToObject(root, "device", kdcl_ctx_device(ctx)->name);
        cJSON_AddNumberToObject(root, "top_n", (double)co.top_n);
        cJSON_AddNumberToObject(root, "iters", (double)co.iters);
        cJSON_AddNumberToObject(root, "lr", (double)co.lr);
        cJSON_AddNumberToObject(root, "seconds", secs);
        cJSON_AddItemToObject(root, "all", tally_json(&all));
        cJSON_AddItemToObject(root, "covered", tally_json(&covered));
        cJSON_AddItemToObject(root, "with_active", tally_json(&with_active));
        cJSON *arr = cJSON_AddArrayToObject(root, "by_covering");
        for (size_t k = 0; k <= max_cover; k++) {
            cJSON *o = tally_json(&byc[k]);
            cJSON_AddNumberToObject(o, "covering", (double)k);
            cJSON_AddItemToArray(arr, o);
        }
        arr = cJSON_AddArrayToObject(root, "per_specialist");
        for (size_t m = 0; m < M; m++) {
            cJSON *o = tally_json(&per[m]);
            cJSON_AddNumberToObject(o, "cluster", (double)files[m].cluster);
            cJSON *cls = cJSON_AddArrayToObject(o, "classes");
            for (size_t a = cl.off[m]; a < cl.off[m + 1]; a++)
                cJSON_AddItemToArray(cls, cJSON_CreateNumber(cl.cls[a]));
            cJSON_AddItemToArray(arr, o);
        }
        char *text = cJSON_Print(root);
        cJSON_Delete(root);
        if (!text) {
            s = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
            goto done;
        }
        s = kdcl_write_file_atomic(json, text, strlen(text));
        free(text);
        if (s) goto done;
    }
done:
    if (s) rc = cli_fail(cmd, s);
    free(gp);
    free(cp);
    free(act);
    free_names(names, K);
    for (size_t m = 0; m < M; m++) {
        kdcl_model_destroy(specs[m]);
        free(lists[m]);
    }
    free(files);
    kdcl_clusters_free(&cl);
    kdcl_model_destroy(g);
    kdcl_ctx_destroy(ctx);
    kdcl_dataset_free(&ds);
    return rc;
}

int cmd_specialists(int argc, char **argv)
{
    const char *sub = argc > 1 ? argv[1] : NULL;
    if (!sub)
        return cli_usage_error("specialists", "usage: kdcl specialists cluster|train|eval "
                                              "[options] (kdcl specialists --help)");
    if (!strcmp(sub, "-h") || !strcmp(sub, "--help")) {
        printf("usage: kdcl specialists cluster|train|eval [options]  (--help on each)\n\n"
                   "  cluster   class clusters from the covariance of a generalist's predictions\n"
                   "  train     one specialist (special classes + dustbin) per cluster, in parallel\n"
               "  eval      generalist vs generalist + specialists (KL combination)\n");
        return 0;
    }
    if (kdcl_dist_size() > 1 && strcmp(sub, "train") && strcmp(sub, "--help") && strcmp(sub, "-h"))
        return cli_usage_error("specialists", "'specialists %s' runs in one process, but mpirun "
                                              "started %d ranks (specialists train runs across "
                                              "ranks)",
                               sub, kdcl_dist_size());
    if (!strcmp(sub, "cluster")) return cmd_cluster(argc - 1, argv + 1);
    if (!strcmp(sub, "train")) return cmd_spec_train(argc - 1, argv + 1);
    if (!strcmp(sub, "eval")) return cmd_spec_eval(argc - 1, argv + 1);
    return cli_usage_error("specialists", "unknown subcommand '%s' (cluster, train or eval)", sub);
}
