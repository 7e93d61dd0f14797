/* kdcl specialists cluster|train|eval: the paper's section 5 on any OpenCL
 * device. cluster: covariance of the generalist's predictions + K-means into
 * a JSON clusters file; train: one specialist (|S| + 1 outputs, the last the
 * dustbin) per cluster, several at once on their own contexts (threads);
 * eval: generalist vs generalist + specialists, overall, on the covered
 * classes, by the number of active specialists covering the correct class
 * (the paper's Table 4) and per cluster. The work is the library's
 * (kdcl/specialists.h: the trainer, the specialist files and sets, their
 * evaluation); this file parses the options and prints. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fit.h"
#include "kdcl/dist.h"
#include "kdcl/file.h"
#include "kdcl/specialists.h"

#define MAX_NAMES 4096
#define MAX_DEVICES 16
#define MAX_JOBS 64 /* --jobs */

/* ---- shared ------------------------------------------------------------------ */

static int load_generalist(const char *cmd, kdcl_ctx *ctx, const char *path, size_t max_batch,
                           kdcl_model **g)
{
    kdcl_status s = kdcl_model_load(ctx, path, max_batch, g, NULL);
    return s ? cli_fail(cmd, s) : 0;
}

static int check_model_data(const char *cmd, kdcl_model *g, const kdcl_dataset *ds)
{
    kdcl_status s = kdcl_specialists_check_generalist(g, ds);
    return s ? cli_fail(cmd, s) : 0;
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
            if (kdcl_parse_size(optarg, &z) || z == 0 || z > 1000000)
                return cli_usage_error(cmd, "--%s needs an integer in 1..1000000, got '%s'",
                                       c == 'M' ? "clusters" : c == 'r' ? "restarts" : "overlap",
                                       optarg);
            *(c == 'M' ? &ko.M : c == 'r' ? &ko.restarts : &ko.overlap) = z;
            break;
        case 's':
            if (kdcl_parse_u64(optarg, &ko.seed))
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
    /* kdcl train's options, less --devices (described above for the workers)
     * and the paragraph on data-parallel SGD under mpirun (not what specialists do) */
    const char *text = CLI_FIT_HELP_TEXT;
    int skip = 0;
    while (*text) {
        const size_t len = strcspn(text, "\n");
        if (!strncmp(text, "  --", 4)) /* an option's first line */
            skip = !strncmp(text, "  --devices ", 12);
        else if (text[0] != ' ') /* a paragraph */
            skip = !strncmp(text, "under mpirun", 12);
        if (!skip) printf("%.*s\n", (int)len, text);
        text += len + (text[len] == '\n');
    }
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
            if (kdcl_parse_size(optarg, &z) || z == 0 || (c == 'j' && z > MAX_JOBS))
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
    if (f.devices) {
        size_t nd = 1;
        for (const char *c2 = f.devices; *c2; c2++) nd += *c2 == ',';
        if (nd > MAX_DEVICES)
            return cli_usage_error(cmd, "--devices lists more than %d devices", MAX_DEVICES);
    }
    kdcl_specialists_train_opts so;
    kdcl_specialists_train_opts_default(&so);
    so.train = f.o;
    so.min_size = min_size;
    so.jobs = jobs;
    so.resume = f.resume;
    so.keep_state = f.keep_state;
    so.state_every = f.state_every;
    so.clusters_name = clusters;
    kdcl_dataset train = {0}, tr = {0}, va = {0};
    kdcl_clusters cl = {0};
    kdcl_status s = KDCL_OK;
    kdcl_specialists_trainer *t = NULL;
    const int rank = kdcl_dist_rank();
    rc = 0;
    const char *data = cli_data_dir(f.data);
    if ((rc = cli_load_split(cmd, data, "train", &train))) goto done;
    const kdcl_dataset *fit = &train;
    so.train.val = NULL;
    if (f.val > 0) {
        if (f.val >= train.n) {
            rc = cli_usage_error(cmd, "--val %zu leaves no training examples (%zu in all)", f.val,
                                 train.n);
            goto done;
        }
        if ((s = kdcl_dataset_split_val(&train, f.val, so.train.seed, &tr, &va))) goto done;
        fit = &tr;
        so.train.val = &va;
    }
    if ((s = kdcl_clusters_load_json(clusters, 0, &cl)) ||
        (s = kdcl_clusters_check_data(clusters, &cl, &train)))
        goto done;
    /* the library keeps the bar to one worker in one process */
    cli_train_output(&so.train, f.quiet, 1);
    /* the plan: which clusters, what --out holds, unfinished specialists */
    if ((s = kdcl_specialists_trainer_create(model, &cl, fit, f.out, &so, &t))) {
        if (s == KDCL_ERR_INVALID_ARG) {
            rc = cli_usage_error(cmd, "%s", kdcl_last_error());
            s = KDCL_OK;
        }
        goto done;
    }
    const size_t n_jobs = kdcl_specialists_trainer_count(t);
    if (f.resume && rank == 0) {
        size_t n_skip = 0, n_resume = 0;
        for (size_t i = 0; i < n_jobs; i++) {
            n_skip += (size_t)kdcl_specialists_trainer_result(t, i)->skipped;
            n_resume += (size_t)kdcl_specialists_trainer_result(t, i)->resumed;
        }
        printf("kdcl %s: --resume: %zu specialists finished before, %zu to continue, %zu to "
               "train\n",
               cmd, n_skip, n_resume, n_jobs - n_skip - n_resume);
    }
    jobs = kdcl_specialists_trainer_workers(t);
    {
        char db[MAX_JOBS][256];
        const char *devs[MAX_JOBS];
        for (size_t i = 0; i < jobs; i++)
            devs[i] = cli_rank_device(f.devices, f.device,
                                      (size_t)kdcl_dist_local_rank() * jobs + i, db[i],
                                      sizeof db[i]);
        if ((s = kdcl_specialists_trainer_open(t, devs))) goto done;
    }
    {
        char what[256], devs[1024] = "";
        size_t off = 0;
        for (size_t i = 0; i < jobs && off < sizeof devs; i++)
            off += (size_t)snprintf(devs + off, sizeof devs - off, "%s%s", i ? ", " : "",
                                    kdcl_specialists_trainer_device(t, i));
        snprintf(what, sizeof what, "%zu specialists handed out one at a time, %zu worker%s "
                                    "per rank",
                 n_jobs, jobs, jobs > 1 ? "s" : "");
        if ((rc = cli_dist_ready(cmd, what, devs, kdcl_specialists_trainer_fingerprint(t))))
            goto done;
    }
    if (rank == 0) {
        printf("kdcl %s: %zu specialists from %s, %zu at a time%s, %zu training examples, "
               "%zu epochs each\n",
               cmd, n_jobs, clusters, jobs, kdcl_dist_size() > 1 ? " per rank" : "", fit->n,
               so.train.epochs);
        fflush(stdout);
    }
    double t0 = kdcl_wall_seconds();
    if ((s = kdcl_specialists_trainer_run(t))) goto done;
    const double wall = kdcl_wall_seconds() - t0;
    if (rank != 0) goto done; /* rank 0 has every result */
    double sum = 0;
    printf("\n| cluster | classes | special examples | last train err | dustbin offset | seconds "
           "| rank | worker |\n|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < n_jobs; i++) {
        const kdcl_specialist_result *r = kdcl_specialists_trainer_result(t, i);
        char cls[256];
        format_classes(cls, sizeof cls, r->cls, r->n);
        if (r->skipped) {
            printf("| %zu | %s | | finished before | | | | |\n", r->cluster, cls);
            continue;
        }
        if (r->status || !r->ran) {
            fprintf(stderr, "kdcl %s: specialist %zu (rank %d, worker %zu): %s\n", cmd,
                    r->cluster, r->rank, r->worker, r->ran ? r->error : "never ran");
            continue;
        }
        printf("| %zu | %s | %zu | %.2f%% | %.3f | %.1f | %d | %zu |\n", r->cluster, cls,
               r->special_examples, 100 * r->train_error, r->dustbin_offset, r->seconds, r->rank,
               r->worker);
        sum += r->seconds;
    }
    const size_t failed = kdcl_specialists_trainer_failed(t);
    printf("\n%zu specialists in %.1f s wall with %zu at a time on %d rank%s (sum of their own "
           "times %.1f s); saved in %s\n",
           n_jobs - failed, wall, jobs, kdcl_dist_size(), kdcl_dist_size() > 1 ? "s" : "", sum,
           f.out);
    if (failed && !rc) rc = CLI_EXIT_FAIL;
done:
    if (s) rc = cli_fail(cmd, s);
    kdcl_specialists_trainer_destroy(t);
    kdcl_clusters_free(&cl);
    kdcl_dataset_free(&train);
    kdcl_dataset_free(&tr);
    kdcl_dataset_free(&va);
    return rc;
}

/* ---- eval -------------------------------------------------------------------- */

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

static void tally_row(FILE *f, const char *label, const kdcl_spec_tally *t)
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

static cJSON *tally_json(const kdcl_spec_tally *t)
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
            if (kdcl_parse_size(optarg, &z) || z == 0 || (c == 'i' && z > 1000000))
                return cli_usage_error(cmd, "--%s needs a positive integer%s, got '%s'",
                                       c == 't' ? "top-n" : "iters",
                                       c == 'i' ? " <= 1000000" : "", optarg);
            *(c == 't' ? &co.top_n : &co.iters) = z;
            break;
        case 'l':
            if (kdcl_parse_double(optarg, &d) || !(d > 0) || !isfinite(d))
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
    kdcl_model *g = NULL;
    kdcl_specialist_set set = {0};
    kdcl_specialist_eval ev = {0};
    char **names = NULL;
    size_t K = 0;
    kdcl_status s = KDCL_OK;
    int rc;
    if ((s = kdcl_specialist_set_list(sdir, &set))) {
        rc = s == KDCL_ERR_OOM ? cli_fail(cmd, s) : cli_usage_error(cmd, "%s", kdcl_last_error());
        s = KDCL_OK;
        goto done;
    }
    if ((rc = cli_load_split(cmd, cli_data_dir(data), split, &ds)) ||
        (rc = cli_open_ctx(cmd, device, &ctx)) ||
        (rc = load_generalist(cmd, ctx, model, 1024, &g)) ||
        (rc = check_model_data(cmd, g, &ds)))
        goto done;
    K = kdcl_model_classes(g);
    if ((rc = class_names(cmd, names_path, &ds, K, &names))) goto done;
    if ((s = kdcl_specialist_set_load_models(&set, g, 1024, NULL, 0)) ||
        (s = kdcl_specialist_set_evaluate(g, &set, &ds, &co, 1024, &ev)))
        goto done;
    const size_t M = set.M;
    const kdcl_clusters *cl = &set.clusters;
    printf("kdcl %s: generalist %s + %zu specialists on %zu %s examples (%s), top-n %zu, %zu "
           "steps of lr %g: %.2f s\n\n",
           cmd, model, M, ds.n, split, kdcl_ctx_device(ctx)->name, co.top_n, co.iters,
           (double)co.lr, ev.seconds);
    printf("| examples | n | generalist | + specialists | correct +- | relative |\n"
           "|---|---|---|---|---|---|\n");
    tally_row(stdout, "all", &ev.all);
    tally_row(stdout, "correct class covered by a specialist", &ev.covered);
    tally_row(stdout, "with an active specialist", &ev.with_active);
    printf("\nby the number of active specialists covering the correct class (Table 4):\n\n"
           "| active specialists covering | n | generalist | + specialists | correct +- | "
           "relative |\n|---|---|---|---|---|---|\n");
    for (size_t k = 0; k <= ev.max_cover; k++) {
        char label[32];
        snprintf(label, sizeof label, "%zu", k);
        tally_row(stdout, label, &ev.by_covering[k]);
    }
    printf("\nper specialist (test examples of its classes):\n\n"
           "| specialist | classes | n | generalist | + specialists | correct +- | relative |\n"
           "|---|---|---|---|---|---|---|\n");
    for (size_t m = 0; m < M; m++) {
        char cls[512] = "", buf[32], label[600];
        size_t off = 0;
        for (size_t a = cl->off[m]; a < cl->off[m + 1] && off < 400; a++)
            off += (size_t)snprintf(cls + off, sizeof cls - off, "%s%s", a > cl->off[m] ? ", " : "",
                                    class_name(names, (size_t)cl->cls[a], buf, sizeof buf));
        snprintf(label, sizeof label, "%zu | %s", set.cluster[m], cls);
        tally_row(stdout, label, &ev.per[m]);
    }
    printf("\ntest errors: generalist %zu, generalist + specialists %zu (%zu examples, %.2f active "
           "specialists per example)\n",
           ev.all.n - ev.all.gen_ok, ev.all.n - ev.all.comb_ok, ev.all.n,
           (double)ev.active_sum / (double)ev.all.n);
    if (json) {
        cJSON *root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "generalist", model);
        cJSON_AddStringToObject(root, "specialists", sdir);
        cJSON_AddStringToObject(root, "split", split);
        cJSON_AddStringToObject(root, "device", kdcl_ctx_device(ctx)->name);
        cJSON_AddNumberToObject(root, "top_n", (double)co.top_n);
        cJSON_AddNumberToObject(root, "iters", (double)co.iters);
        cJSON_AddNumberToObject(root, "lr", (double)co.lr);
        cJSON_AddNumberToObject(root, "seconds", ev.seconds);
        cJSON_AddItemToObject(root, "all", tally_json(&ev.all));
        cJSON_AddItemToObject(root, "covered", tally_json(&ev.covered));
        cJSON_AddItemToObject(root, "with_active", tally_json(&ev.with_active));
        cJSON *arr = cJSON_AddArrayToObject(root, "by_covering");
        for (size_t k = 0; k <= ev.max_cover; k++) {
            cJSON *o = tally_json(&ev.by_covering[k]);
            cJSON_AddNumberToObject(o, "covering", (double)k);
            cJSON_AddItemToArray(arr, o);
        }
        arr = cJSON_AddArrayToObject(root, "per_specialist");
        for (size_t m = 0; m < M; m++) {
            cJSON *o = tally_json(&ev.per[m]);
            cJSON_AddNumberToObject(o, "cluster", (double)set.cluster[m]);
            cJSON *cls = cJSON_AddArrayToObject(o, "classes");
            for (size_t a = cl->off[m]; a < cl->off[m + 1]; a++)
                cJSON_AddItemToArray(cls, cJSON_CreateNumber(cl->cls[a]));
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
    free_names(names, K);
    kdcl_specialist_eval_free(&ev);
    kdcl_specialist_set_free(&set);
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
