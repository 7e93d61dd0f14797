/* Training every specialist of a clustering into a directory: the plan (which
 * clusters, what the directory already holds, resumable states), the workers
 * (one OpenCL context each, the generalist loaded at its first specialist) and
 * the specialists handed out largest first by kdcl_dist_schedule, over the
 * ranks of an mpirun job or the workers of one process. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kdcl/dist.h"
#include "kdcl/specialists.h"
#include "kd/specialist_internal.h"
#include "kdcl/file.h"
#include "runtime/ctx.h"

#define MAX_JOBS 64

typedef struct {
    kdcl_ctx *ctx; /* created by the thread that opens the trainer */
    kdcl_model *g; /* the generalist on ctx, loaded at the worker's first specialist */
} worker;

/* What a specialist's run sends back to rank 0 (plain bytes). */
typedef struct {
    int status, ran;
    char error[1024];
    double seconds, offset, train_error;
    size_t special_examples, worker;
    int rank;
} wire;

struct kdcl_specialists_trainer {
    char *generalist, *out_dir, *clusters_name;
    kdcl_clusters cl;
    const kdcl_dataset *train;
    kdcl_specialists_train_opts o;
    size_t n_jobs, workers;
    kdcl_specialist_result *res; /* n_jobs, by ascending cluster */
    char (*state)[4096];         /* n_jobs: each one's training state */
    size_t *order;               /* hand-out position -> job */
    char generalist_hash[64];
    uint64_t fingerprint;
    worker *w;
    int opened;
};

void kdcl_specialists_train_opts_default(kdcl_specialists_train_opts *o)
{
    memset(o, 0, sizeof *o);
    kdcl_train_opts_default(&o->train);
    o->min_size = 2;
    o->jobs = 1;
}

/* DIR/specialist_<m>.safetensors -> DIR/specialist_<m>.state.safetensors (as
 * the command line names the training state of M.safetensors). */
static kdcl_status state_path(const char *model, char *buf, size_t size)
{
    static const char ext[] = ".safetensors";
    size_t n = strlen(model), e = sizeof ext - 1;
    if (n > e && !strcmp(model + n - e, ext)) n -= e;
    int len = snprintf(buf, size, "%.*s.state%s", (int)n, model, ext);
    if (len < 0 || (size_t)len >= size)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "the training state's path for %s is too long",
                              model);
    return KDCL_OK;
}

static char *dup_str(const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

typedef struct {
    size_t special, cluster, job;
} size_key;

/* Largest first (an epoch is twice the special examples, so the time grows
 * with them): the last to finish is then a small one, and the ranks end close
 * together. Ties by cluster. */
static int by_size_desc(const void *a, const void *b)
{
    const size_key *x = a, *y = b;
    if (x->special != y->special) return x->special > y->special ? -1 : 1;
    return x->cluster < y->cluster ? -1 : x->cluster > y->cluster;
}

void kdcl_specialists_trainer_destroy(kdcl_specialists_trainer *t)
{
    if (!t) return;
    for (size_t i = 0; t->w && i < t->workers; i++) {
        kdcl_model_destroy(t->w[i].g);
        kdcl_ctx_destroy(t->w[i].ctx);
    }
    free(t->w);
    free(t->res);
    free(t->state);
    free(t->order);
    kdcl_clusters_free(&t->cl);
    free(t->generalist);
    free(t->out_dir);
    free(t->clusters_name);
    free(t);
}

static kdcl_status copy_clusters(const kdcl_clusters *c, kdcl_clusters *out)
{
    memset(out, 0, sizeof *out);
    out->off = malloc((c->M + 1) * sizeof *out->off);
    out->cls = malloc(c->off[c->M] * sizeof *out->cls);
    if (!out->off || !out->cls) {
        kdcl_clusters_free(out);
        return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    }
    memcpy(out->off, c->off, (c->M + 1) * sizeof *out->off);
    memcpy(out->cls, c->cls, c->off[c->M] * sizeof *out->cls);
    out->K = c->K;
    out->M = c->M;
    return KDCL_OK;
}

/* Specialists of other clusters left in the directory would join this run's
 * at evaluation. */
static kdcl_status check_foreign(const kdcl_specialists_trainer *t)
{
    DIR *d = opendir(t->out_dir);
    if (!d) return KDCL_OK; /* created later */
    kdcl_status s = KDCL_OK;
    struct dirent *e;
    while (!s && (e = readdir(d))) {
        size_t id;
        if (!kdcl_specialist_file_id(e->d_name, &id)) continue;
        int ours = 0;
        for (size_t i = 0; i < t->n_jobs; i++) ours |= t->res[i].cluster == id;
        if (!ours)
            s = kdcl_set_error(KDCL_ERR_INVALID_ARG,
                               "%s/%s is not one of this run's specialists (left from another "
                               "clusters file?): use an empty --out directory",
                               t->out_dir, e->d_name);
    }
    closedir(d);
    return s;
}

/* Resumable: an unfinished specialist is continued (resume) or refused; with
 * resume, a finished one is skipped. */
static kdcl_status plan_resume(kdcl_specialists_trainer *t)
{
    for (size_t i = 0; i < t->n_jobs; i++) {
        kdcl_specialist_result *j = &t->res[i];
        kdcl_status s = state_path(j->path, t->state[i], sizeof t->state[i]);
        if (s) return s;
        if (access(t->state[i], F_OK) == 0) {
            kdcl_train_state_info si;
            if (kdcl_train_state_info_read(t->state[i], &si)) {
                char why[2048];
                snprintf(why, sizeof why, "%s", kdcl_last_error());
                return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                      "%s is not a usable training state (%s): remove it",
                                      t->state[i], why);
            }
            if (!t->o.resume)
                return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                      "%s holds an unfinished specialist (%zu of %zu epochs "
                                      "done): add --resume to continue, or remove it to start "
                                      "again",
                                      t->state[i], si.epoch, si.epochs);
            j->resumed = 1;
        } else if (t->o.resume && access(j->path, F_OK) == 0) {
            j->skipped = 1;
        }
    }
    return KDCL_OK;
}

kdcl_status kdcl_specialists_trainer_create(const char *generalist, const kdcl_clusters *c,
                                            const kdcl_dataset *train, const char *out_dir,
                                            const kdcl_specialists_train_opts *o,
                                            kdcl_specialists_trainer **out)
{
    if (!out) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_specialists_trainer_create: NULL output");
    *out = NULL;
    if (!generalist || !c || !train || !out_dir || !o)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "kdcl_specialists_trainer_create: NULL argument");
    kdcl_status s;
    if ((s = kdcl_clusters_check("the clusters", c))) return s;
    if (o->jobs < 1 || o->jobs > MAX_JOBS)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%zu workers per rank (need 1..%d)", o->jobs,
                              MAX_JOBS);
    const char *cname = o->clusters_name ? o->clusters_name : "the clusters";
    if ((s = kdcl_clusters_check_data(cname, c, train))) return s;
    kdcl_specialists_trainer *t = calloc(1, sizeof *t);
    if (!t) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    t->o = *o;
    t->train = train;
    t->generalist = dup_str(generalist);
    t->out_dir = dup_str(out_dir);
    t->clusters_name = dup_str(cname);
    t->res = calloc(c->M, sizeof *t->res);
    t->state = calloc(c->M, sizeof *t->state);
    t->order = calloc(c->M, sizeof *t->order);
    if (!t->generalist || !t->out_dir || !t->clusters_name || !t->res || !t->state || !t->order) {
        s = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        goto fail;
    }
    t->o.clusters_name = t->clusters_name;
    if ((s = copy_clusters(c, &t->cl))) goto fail;
    const kdcl_clusters *cl = &t->cl;
    for (size_t m = 0; m < cl->M; m++) {
        size_t n = cl->off[m + 1] - cl->off[m];
        if (n < o->min_size || n >= cl->K) continue;
        kdcl_specialist_result *j = &t->res[t->n_jobs++];
        j->cluster = m;
        j->cls = cl->cls + cl->off[m];
        j->n = n;
        if ((s = kdcl_specialist_path(out_dir, m, j->path, sizeof j->path))) goto fail;
    }
    if (t->n_jobs == 0) {
        s = kdcl_set_error(KDCL_ERR_INVALID_ARG,
                           "no cluster of %s has between --min-size %zu and %zu classes", cname,
                           o->min_size, cl->K - 1);
        goto fail;
    }
    if ((s = check_foreign(t)) || (s = plan_resume(t))) goto fail;
    uint64_t gh = 0;
    if (kdcl_file_hash(generalist, &gh)) {
        s = kdcl_set_error(KDCL_ERR_IO, "cannot read the generalist %s: %s", generalist,
                           strerror(errno));
        goto fail;
    }
    snprintf(t->generalist_hash, sizeof t->generalist_hash, "hash %016llx",
             (unsigned long long)gh);
    uint64_t fp = kdcl_hash64(KDCL_HASH64_INIT, &train->n, sizeof train->n);
    fp = kdcl_hash64(fp, train->labels, train->n * sizeof *train->labels);
    fp = kdcl_hash64(fp, train->images, train->n * train->dim);
    t->fingerprint = kdcl_hash64(fp, t->generalist_hash, strlen(t->generalist_hash));
    /* each specialist's special examples, and the hand-out order */
    size_key *keys = malloc(t->n_jobs * sizeof *keys);
    if (!keys) {
        s = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        goto fail;
    }
    for (size_t i = 0; i < t->n_jobs; i++) {
        kdcl_specialist_result *j = &t->res[i];
        for (size_t e = 0; e < train->n; e++)
            for (size_t k = 0; k < j->n; k++)
                if (train->labels[e] == j->cls[k]) j->special_examples++;
        keys[i] = (size_key){j->special_examples, j->cluster, i};
    }
    qsort(keys, t->n_jobs, sizeof *keys, by_size_desc);
    for (size_t i = 0; i < t->n_jobs; i++) t->order[i] = keys[i].job;
    free(keys);
    t->workers = o->jobs < t->n_jobs ? o->jobs : t->n_jobs;
    if (t->workers > 1 || kdcl_dist_size() > 1) t->o.train.on_progress = NULL;
    *out = t;
    return KDCL_OK;
fail:
    kdcl_specialists_trainer_destroy(t);
    return s;
}

kdcl_status kdcl_specialists_trainer_open(kdcl_specialists_trainer *t, const char *const *devices)
{
    if (!t) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_specialists_trainer_open: NULL trainer");
    if (t->opened || t->w)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_specialists_trainer_open: called before");
    if (mkdir(t->out_dir, 0777) && errno != EEXIST)
        return kdcl_set_error(KDCL_ERR_IO, "cannot create %s: %s", t->out_dir, strerror(errno));
    if (!(t->w = calloc(t->workers, sizeof *t->w)))
        return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    kdcl_status s;
    for (size_t i = 0; i < t->workers; i++)
        if ((s = kdcl_ctx_create(devices ? devices[i] : NULL, &t->w[i].ctx))) return s;
    /* the generalist must fit the clusters and the data before any worker starts */
    kdcl_model *g = NULL;
    if ((s = kdcl_model_load(t->w[0].ctx, t->generalist, 1, &g, NULL))) return s;
    const size_t gK = kdcl_model_classes(g), gin = kdcl_model_in_dim(g);
    kdcl_model_destroy(g);
    if (gK != t->cl.K || gin != t->train->dim)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "%s is over %zu classes and the data has %zu inputs, but the "
                              "generalist %s has %zu inputs and %zu classes",
                              t->clusters_name, t->cl.K, t->train->dim, t->generalist, gin, gK);
    t->opened = 1;
    return KDCL_OK;
}

/* Train and save one specialist on worker w. */
static kdcl_status train_one(kdcl_specialists_trainer *t, worker *w, size_t job, double *seconds,
                             double *offset, kdcl_epoch_stats *last)
{
    const kdcl_specialist_result *j = &t->res[job];
    kdcl_model *sm = NULL;
    char tag[64], sv_cls[4096];
    kdcl_status s;
    const kdcl_train_opts *po = &t->o.train;
    size_t maxb = po->batch > 1000 ? po->batch : 1000;
    if ((s = kdcl_model_replace_output(w->g, j->n + 1, maxb, po->seed, &sm)) ||
        (s = kdcl_specialist_init(w->g, j->cls, j->n, sm)))
        goto done;
    kdcl_train_opts o = *po;
    snprintf(tag, sizeof tag, "specialist %zu", j->cluster);
    o.tag = tag;
    o.metrics_path = NULL;
    /* resumable: the state keys name what a resumed specialist must share */
    kdcl__format_classes(sv_cls, sizeof sv_cls, j->cls, j->n);
    const char *skeys[3] = {"command", "generalist", "specialist_classes"};
    const char *svals[3] = {"specialists train", t->generalist_hash, sv_cls};
    o.state_path = t->state[job];
    o.resume = j->resumed;
    o.state_every = t->o.state_every;
    o.state_keys = skeys;
    o.state_vals = svals;
    o.n_state = 3;
    double t0 = kdcl_now_seconds();
    if ((s = kdcl_specialist_train(sm, t->train, j->cls, j->n, &o, last, offset))) goto done;
    *seconds = kdcl_now_seconds() - t0;
    kdcl_specialist_meta meta = {j->cluster,   j->cls,   j->n, *offset, t->generalist,
                                 &o,           *seconds, kdcl_ctx_device(w->ctx)->name};
    if (!(s = kdcl_specialist_save(sm, j->path, &meta)) && !t->o.keep_state)
        remove(t->state[job]);
done:
    kdcl_model_destroy(sm);
    return s;
}

/* Job `pos` of the hand-out order on this rank's worker `wi`. */
static void run_job(void *user, size_t pos, size_t wi, void *result)
{
    kdcl_specialists_trainer *t = user;
    worker *w = &t->w[wi];
    const size_t job = t->order[pos];
    const kdcl_specialist_result *j = &t->res[job];
    wire *r = result;
    r->rank = kdcl_dist_rank();
    r->worker = wi;
    if (j->skipped) return;
    r->ran = 1;
    kdcl_status s = KDCL_OK;
    if (!w->g) {
        s = kdcl_model_load(w->ctx, t->generalist, 1024, &w->g, NULL);
        if (!s) s = kdcl_model_fit_input(w->g, t->train->c, t->train->h, t->train->w);
        if (s) {
            kdcl_model_destroy(w->g);
            w->g = NULL;
        }
    }
    kdcl_epoch_stats last;
    memset(&last, 0, sizeof last);
    double seconds = 0, offset = 0;
    if (!s) s = train_one(t, w, job, &seconds, &offset, &last);
    r->status = s;
    if (s) snprintf(r->error, sizeof r->error, "%s", kdcl_last_error());
    r->seconds = seconds;
    r->offset = offset;
    r->train_error = last.train_error;
    r->special_examples = j->special_examples;
}

kdcl_status kdcl_specialists_trainer_run(kdcl_specialists_trainer *t)
{
    if (!t || !t->opened)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "kdcl_specialists_trainer_run: the trainer is not open");
    wire *results = calloc(t->n_jobs, sizeof *results);
    if (!results) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    kdcl_status s = kdcl_dist_schedule(t->n_jobs, t->workers, sizeof *results, results, run_job, t);
    if (!s)
        for (size_t pos = 0; pos < t->n_jobs; pos++) {
            const wire *r = &results[pos];
            kdcl_specialist_result *j = &t->res[t->order[pos]];
            j->ran = r->ran;
            j->status = (kdcl_status)r->status;
            snprintf(j->error, sizeof j->error, "%s", r->error);
            j->seconds = r->seconds;
            j->dustbin_offset = r->offset;
            j->train_error = r->train_error;
            j->rank = r->rank;
            j->worker = r->worker;
        }
    free(results);
    return s;
}

size_t kdcl_specialists_trainer_count(const kdcl_specialists_trainer *t)
{
    return t ? t->n_jobs : 0;
}

const kdcl_specialist_result *kdcl_specialists_trainer_result(const kdcl_specialists_trainer *t,
                                                              size_t i)
{
    return t && i < t->n_jobs ? &t->res[i] : NULL;
}

size_t kdcl_specialists_trainer_workers(const kdcl_specialists_trainer *t)
{
    return t ? t->workers : 0;
}

const char *kdcl_specialists_trainer_device(const kdcl_specialists_trainer *t, size_t i)
{
    if (!t || !t->w || i >= t->workers || !t->w[i].ctx) return NULL;
    return kdcl_ctx_device(t->w[i].ctx)->name;
}

uint64_t kdcl_specialists_trainer_fingerprint(const kdcl_specialists_trainer *t)
{
    return t ? t->fingerprint : 0;
}

size_t kdcl_specialists_trainer_failed(const kdcl_specialists_trainer *t)
{
    size_t n = 0;
    for (size_t i = 0; t && i < t->n_jobs; i++)
        n += !t->res[i].skipped && (t->res[i].status || !t->res[i].ran);
    return n;
}

kdcl_status kdcl_specialists_train_all(const char *generalist, const kdcl_clusters *c,
                                       const kdcl_dataset *train, const char *out_dir,
                                       const kdcl_specialists_train_opts *o,
                                       kdcl_specialists_trainer **out)
{
    if (out) *out = NULL;
    kdcl_specialists_trainer *t = NULL;
    kdcl_status s = kdcl_specialists_trainer_create(generalist, c, train, out_dir, o, &t);
    if (s) return s;
    if (!(s = kdcl_specialists_trainer_open(t, NULL)) && !(s = kdcl_specialists_trainer_run(t)))
        for (size_t i = 0; i < t->n_jobs && !s; i++) {
            const kdcl_specialist_result *j = &t->res[i];
            if (j->skipped) continue;
            if (j->status)
                s = kdcl_set_error(j->status, "specialist %zu: %s", j->cluster, j->error);
            else if (!j->ran && kdcl_dist_rank() == 0)
                s = kdcl_set_error(KDCL_ERR_INTERNAL, "specialist %zu: never ran", j->cluster);
        }
    if (out)
        *out = t;
    else
        kdcl_specialists_trainer_destroy(t);
    return s;
}
