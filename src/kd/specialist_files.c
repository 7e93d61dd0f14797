/* Specialist files: their names and metadata, one checkpoint saved and
 * loaded, the validated set of a directory, and the evaluation of a set with
 * its generalist (the tallies of `kdcl specialists eval`). */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdcl/safetensors.h"
#include "kdcl/specialists.h"
#include "kd/specialist_internal.h"
#include "runtime/ctx.h"

kdcl_status kdcl_specialist_path(const char *dir, size_t cluster, char *buf, size_t size)
{
    if (!dir || !buf || !size)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_specialist_path: NULL argument");
    int len = snprintf(buf, size, "%s/specialist_%zu.safetensors", dir, cluster);
    if (len < 0 || (size_t)len >= size)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "the path of specialist %zu in %s is too long",
                              cluster, dir);
    return KDCL_OK;
}

int kdcl_specialist_file_id(const char *name, size_t *cluster)
{
    char tail[32];
    size_t id;
    if (!name || sscanf(name, "specialist_%zu%31s", &id, tail) != 2 ||
        strcmp(tail, ".safetensors"))
        return 0;
    if (cluster) *cluster = id;
    return 1;
}

/* "3,5,7" into buf (stops while a class id still fits). */
void kdcl__format_classes(char *buf, size_t size, const int32_t *cls, size_t n)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && off + 16 < size; i++)
        off += (size_t)snprintf(buf + off, size - off, i ? ",%d" : "%d", (int)cls[i]);
}

/* Metadata pairs for kdcl_model_save. */
typedef struct {
    const char *keys[12], *vals[12];
    char v[12][4200];
    size_t n;
} meta_pairs;

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void meta_add(meta_pairs *p, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->v[p->n], sizeof p->v[p->n], fmt, ap);
    va_end(ap);
    p->keys[p->n] = key;
    p->vals[p->n] = p->v[p->n];
    p->n++;
}

kdcl_status kdcl_specialist_save(kdcl_model *spec, const char *path,
                                 const kdcl_specialist_meta *meta)
{
    if (!spec || !path || !meta || !meta->cls || meta->n == 0)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_specialist_save: NULL argument or no "
                                                    "classes");
    if (kdcl_model_classes(spec) != meta->n + 1)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "kdcl_specialist_save: the model has %zu outputs for %zu special "
                              "classes + dustbin",
                              kdcl_model_classes(spec), meta->n);
    for (size_t i = 0; i < meta->n; i++)
        if (meta->cls[i] < 0 || (i && meta->cls[i] <= meta->cls[i - 1]))
            return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                  "kdcl_specialist_save: the special classes must be ascending "
                                  "class ids");
    /* the list as text: up to 11 characters a class */
    const size_t cls_size = 12 * meta->n + 32;
    char *cls = malloc(cls_size);
    meta_pairs *p = calloc(1, sizeof *p);
    if (!cls || !p) {
        free(cls);
        free(p);
        return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    }
    kdcl__format_classes(cls, cls_size, meta->cls, meta->n);
    p->keys[0] = "specialist_classes";
    p->vals[0] = cls;
    p->n = 1;
    meta_add(p, "specialist_cluster", "%zu", meta->cluster);
    meta_add(p, "dustbin_offset", "%.9g", meta->dustbin_offset);
    meta_add(p, "generalist", "%s", meta->generalist ? meta->generalist : "");
    const kdcl_train_opts *o = meta->train;
    if (o) {
        meta_add(p, "optimizer", "%s",
                 o->optimizer == KDCL_OPT_SGD ? (o->nesterov ? "nesterov" : "sgd")
                                              : o->optimizer == KDCL_OPT_ADAM ? "adam" : "adamw");
        meta_add(p, "max_norm", "%g", (double)o->max_norm);
        meta_add(p, "epochs", "%zu", o->epochs);
        meta_add(p, "lr", "%g", (double)o->lr);
        meta_add(p, "jitter", "%d", o->jitter);
        meta_add(p, "seed", "%llu", (unsigned long long)o->seed);
    }
    if (meta->train_seconds >= 0) meta_add(p, "train_seconds", "%.1f", meta->train_seconds);
    if (meta->device) meta_add(p, "device", "%s", meta->device);
    kdcl_status s = kdcl_model_save(spec, path, p->keys, p->vals, p->n);
    free(cls);
    free(p);
    return s;
}

/* "3,5,7" -> strictly ascending class list of fewer than K classes. */
static kdcl_status parse_classes(const char *path, const char *s, size_t K, int32_t **out,
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
            (i + 1 < cnt && *end != ',') || (i && x <= v[i - 1])) {
            free(v);
            return kdcl_set_error(KDCL_ERR_FORMAT,
                                  "%s: malformed specialist_classes '%s' (ascending class ids "
                                  "0..%zu)",
                                  path, s, K - 1);
        }
        v[i] = (int32_t)x;
        c = end + 1;
    }
    if (cnt >= K) {
        free(v);
        return kdcl_set_error(KDCL_ERR_FORMAT,
                              "%s: specialist_classes lists all %zu classes: a specialist needs "
                              "other classes for its dustbin",
                              path, K);
    }
    *out = v;
    *n = cnt;
    return KDCL_OK;
}

/* One specialist file; with g_in (the generalist's inputs, > 0) the check of
 * its inputs and outputs names the generalist's. */
static kdcl_status load_one(kdcl_ctx *ctx, const char *path, size_t K, size_t g_in,
                            size_t max_batch, kdcl_specialist *out)
{
    memset(out, 0, sizeof *out);
    out->cluster = SIZE_MAX;
    out->dustbin_offset = NAN;
    kdcl_st_file meta;
    kdcl_status s = kdcl_model_load(ctx, path, max_batch, &out->model, &meta);
    if (s) return s;
    s = parse_classes(path, kdcl_st_meta(&meta, "specialist_classes"), K, &out->cls, &out->n);
    const char *cv = kdcl_st_meta(&meta, "specialist_cluster");
    if (!s && cv) {
        char *end;
        errno = 0;
        unsigned long long x = strtoull(cv, &end, 10);
        if (end == cv || *end || errno || *cv == '-' || x > SIZE_MAX)
            s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: malformed specialist_cluster '%s'", path, cv);
        else
            out->cluster = (size_t)x;
    }
    const char *ov = kdcl_st_meta(&meta, "dustbin_offset");
    if (!s && ov) {
        char *end;
        double d = strtod(ov, &end);
        if (end != ov && !*end) out->dustbin_offset = d;
    }
    kdcl_st_free(&meta);
    if (!s && g_in && (kdcl_model_in_dim(out->model) != g_in ||
                       kdcl_model_classes(out->model) != out->n + 1))
        s = kdcl_set_error(KDCL_ERR_FORMAT,
                           "%s: %zu inputs and %zu outputs do not fit %zu special classes "
                           "+ dustbin on the generalist's %zu inputs",
                           path, kdcl_model_in_dim(out->model), kdcl_model_classes(out->model),
                           out->n, g_in);
    if (!s && !g_in && kdcl_model_classes(out->model) != out->n + 1)
        s = kdcl_set_error(KDCL_ERR_FORMAT,
                           "%s: %zu outputs do not fit %zu special classes + dustbin", path,
                           kdcl_model_classes(out->model), out->n);
    if (s) kdcl_specialist_free(out);
    return s;
}

kdcl_status kdcl_specialist_load(kdcl_ctx *ctx, const char *path, size_t K, size_t max_batch,
                                 kdcl_specialist *out)
{
    if (!out) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_specialist_load: NULL output");
    memset(out, 0, sizeof *out);
    if (!ctx || !path || K < 2)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "kdcl_specialist_load: needs a context, a path and K >= 2");
    return load_one(ctx, path, K, 0, max_batch, out);
}

void kdcl_specialist_free(kdcl_specialist *s)
{
    if (!s) return;
    kdcl_model_destroy(s->model);
    free(s->cls);
    memset(s, 0, sizeof *s);
}

/* ---- a directory of specialists ---------------------------------------------- */

typedef struct {
    size_t cluster;
    char *path;
} entry;

static int cmp_entry(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    return x->cluster < y->cluster ? -1 : x->cluster > y->cluster;
}

static void free_models(kdcl_specialist_set *set)
{
    for (size_t m = 0; set->models && m < set->M; m++) kdcl_model_destroy(set->models[m]);
    free(set->models);
    free(set->dustbin_offset);
    kdcl_clusters_free(&set->clusters);
    set->models = NULL;
    set->dustbin_offset = NULL;
    memset(&set->clusters, 0, sizeof set->clusters);
}

void kdcl_specialist_set_free(kdcl_specialist_set *set)
{
    if (!set) return;
    free_models(set);
    for (size_t m = 0; set->paths && m < set->M; m++) free(set->paths[m]);
    free(set->paths);
    free(set->cluster);
    memset(set, 0, sizeof *set);
}

kdcl_status kdcl_specialist_set_list(const char *dir, kdcl_specialist_set *out)
{
    if (!out) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_specialist_set_list: NULL output");
    memset(out, 0, sizeof *out);
    if (!dir) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_specialist_set_list: NULL dir");
    DIR *d = opendir(dir);
    if (!d)
        return kdcl_set_error(KDCL_ERR_IO, "cannot open the specialists directory %s: %s", dir,
                              strerror(errno));
    entry *v = NULL;
    size_t cnt = 0, cap = 0;
    kdcl_status s = KDCL_OK;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t id;
        if (!kdcl_specialist_file_id(e->d_name, &id)) continue;
        if (cnt == KDCL_MAX_CLUSTERS) {
            s = kdcl_set_error(KDCL_ERR_INVALID_ARG, "more than %d specialists in %s",
                               KDCL_MAX_CLUSTERS, dir);
            break;
        }
        if (cnt == cap) {
            cap = cap ? 2 * cap : 16;
            entry *nv = realloc(v, cap * sizeof *nv);
            if (!nv) {
                s = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
                break;
            }
            v = nv;
        }
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        if (!(v[cnt].path = malloc(len))) {
            s = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
            break;
        }
        snprintf(v[cnt].path, len, "%s/%s", dir, e->d_name);
        v[cnt++].cluster = id;
    }
    closedir(d);
    if (!s && cnt == 0)
        s = kdcl_set_error(KDCL_ERR_INVALID_ARG, "no specialist_<n>.safetensors in %s", dir);
    if (!s) {
        qsort(v, cnt, sizeof *v, cmp_entry);
        for (size_t i = 1; i < cnt && !s; i++)
            if (v[i].cluster == v[i - 1].cluster)
                s = kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                   "%s and %s are both the specialist of cluster %zu: keep one",
                                   v[i - 1].path, v[i].path, v[i].cluster);
    }
    if (!s) {
        out->cluster = malloc(cnt * sizeof *out->cluster);
        out->paths = malloc(cnt * sizeof *out->paths);
        if (!out->cluster || !out->paths) s = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    }
    if (s) {
        for (size_t i = 0; i < cnt; i++) free(v[i].path);
        free(v);
        free(out->cluster);
        free(out->paths);
        memset(out, 0, sizeof *out);
        return s;
    }
    for (size_t i = 0; i < cnt; i++) {
        out->cluster[i] = v[i].cluster;
        out->paths[i] = v[i].path;
    }
    out->M = cnt;
    free(v);
    return KDCL_OK;
}

kdcl_status kdcl_specialists_check_generalist(kdcl_model *g, const kdcl_dataset *ds)
{
    if (!g || !ds)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_specialists_check_generalist: NULL "
                                                    "argument");
    const size_t K = kdcl_model_classes(g);
    if (kdcl_model_fit_input(g, ds->c, ds->h, ds->w) || ds->n_classes > K)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "the generalist takes %zu inputs and has %zu classes; "
                              "the data has %zu inputs and %zu classes",
                              kdcl_model_in_dim(g), K, ds->dim, ds->n_classes);
    return KDCL_OK;
}

kdcl_status kdcl_clusters_check_data(const char *who, const kdcl_clusters *c,
                                     const kdcl_dataset *ds)
{
    if (!c || !ds)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_clusters_check_data: NULL argument");
    if (c->K < ds->n_classes)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s covers %zu classes but the data has %zu",
                              who ? who : "the clusters", c->K, ds->n_classes);
    return KDCL_OK;
}

static int same_classes(const kdcl_clusters *c, size_t m, const int32_t *cls, size_t n)
{
    return c->off[m + 1] - c->off[m] == n && !memcmp(c->cls + c->off[m], cls, n * sizeof *cls);
}

kdcl_status kdcl_specialist_set_load_models(kdcl_specialist_set *set, kdcl_model *g,
                                            size_t max_batch, const kdcl_clusters *expect,
                                            size_t expect_min_size)
{
    if (!set || !g || !set->M || !set->paths || !set->cluster)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "kdcl_specialist_set_load_models: needs a listed set and a "
                              "generalist");
    free_models(set);
    const size_t K = kdcl_model_classes(g), M = set->M;
    kdcl_status s;
    if (expect && (s = kdcl_clusters_check("the expected clusters", expect))) return s;
    if (expect && expect->K != K)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "the expected clusters are over %zu classes, the generalist has %zu",
                              expect->K, K);
    int32_t **lists = calloc(M, sizeof *lists);
    size_t *sizes = calloc(M, sizeof *sizes);
    set->models = calloc(M, sizeof *set->models);
    set->dustbin_offset = calloc(M, sizeof *set->dustbin_offset);
    if (!lists || !sizes || !set->models || !set->dustbin_offset) {
        s = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        goto done;
    }
    for (size_t m = 0; m < M; m++) {
        kdcl_specialist sp;
        const char *path = set->paths[m];
        if ((s = load_one(kdcl_model_ctx(g), path, K, kdcl_model_in_dim(g), max_batch, &sp)))
            goto done;
        set->models[m] = sp.model;
        set->dustbin_offset[m] = sp.dustbin_offset;
        lists[m] = sp.cls;
        sizes[m] = sp.n;
        if (sp.cluster != SIZE_MAX && sp.cluster != set->cluster[m]) {
            s = kdcl_set_error(KDCL_ERR_FORMAT,
                               "%s records cluster %zu, not the %zu of its name (a file of "
                               "another run, renamed?)",
                               path, sp.cluster, set->cluster[m]);
            goto done;
        }
        if (expect && set->cluster[m] >= expect->M) {
            s = kdcl_set_error(KDCL_ERR_FORMAT,
                               "%s is the specialist of cluster %zu, but the clusters have %zu "
                               "(a file of another clustering?)",
                               path, set->cluster[m], expect->M);
            goto done;
        }
        if (expect && !same_classes(expect, set->cluster[m], sp.cls, sp.n)) {
            char have[256], want[256];
            const size_t c = set->cluster[m];
            kdcl__format_classes(have, sizeof have, sp.cls, sp.n);
            kdcl__format_classes(want, sizeof want, expect->cls + expect->off[c],
                           expect->off[c + 1] - expect->off[c]);
            s = kdcl_set_error(KDCL_ERR_FORMAT,
                               "%s has classes %s, but cluster %zu of the clusters has %s (a "
                               "file of another clustering?)",
                               path, have, c, want);
            goto done;
        }
    }
    if (expect)
        for (size_t c = 0; c < expect->M; c++) {
            const size_t n = expect->off[c + 1] - expect->off[c];
            if (n < expect_min_size || n >= K) continue;
            int found = 0;
            for (size_t m = 0; m < M && !found; m++) found = set->cluster[m] == c;
            if (!found) {
                const char *slash = strrchr(set->paths[0], '/');
                s = kdcl_set_error(KDCL_ERR_FORMAT,
                                   "specialist_%zu.safetensors (cluster %zu, %zu classes) is "
                                   "missing from %.*s",
                                   c, c, n, slash ? (int)(slash - set->paths[0]) : 1,
                                   slash ? set->paths[0] : ".");
                goto done;
            }
        }
    s = kdcl_clusters_from_lists(K, M, sizes, (const int32_t *const *)lists, &set->clusters);
done:
    for (size_t m = 0; lists && m < M; m++) free(lists[m]);
    free(lists);
    free(sizes);
    if (s) free_models(set);
    return s;
}

kdcl_status kdcl_specialist_set_load(const char *dir, kdcl_model *g, size_t max_batch,
                                     const kdcl_clusters *expect, size_t expect_min_size,
                                     kdcl_specialist_set *out)
{
    kdcl_status s = kdcl_specialist_set_list(dir, out);
    if (s) return s;
    if ((s = kdcl_specialist_set_load_models(out, g, max_batch, expect, expect_min_size)))
        kdcl_specialist_set_free(out);
    return s;
}

/* ---- evaluation ----------------------------------------------------------------- */

static void tally_add(kdcl_spec_tally *t, int g, int c)
{
    t->n++;
    t->gen_ok += (size_t)g;
    t->comb_ok += (size_t)c;
}

void kdcl_specialist_eval_free(kdcl_specialist_eval *r)
{
    if (!r) return;
    free(r->gen_pred);
    free(r->comb_pred);
    free(r->active);
    free(r->by_covering);
    free(r->per);
    memset(r, 0, sizeof *r);
}

kdcl_status kdcl_specialist_set_evaluate(kdcl_model *g, const kdcl_specialist_set *set,
                                         const kdcl_dataset *ds, const kdcl_combine_opts *o,
                                         size_t max_batch, kdcl_specialist_eval *out)
{
    if (!out) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_specialist_set_evaluate: NULL output");
    memset(out, 0, sizeof *out);
    if (!g || !set || !set->models || !ds || !o)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "kdcl_specialist_set_evaluate: needs a generalist, a loaded set "
                              "(kdcl_specialist_set_load), data and options");
    const size_t M = set->M, n = ds->n;
    const kdcl_clusters *cl = &set->clusters;
    kdcl_specialist_eval r;
    memset(&r, 0, sizeof r);
    r.n = n;
    r.M = M;
    r.gen_pred = malloc((n ? n : 1) * sizeof *r.gen_pred);
    r.comb_pred = malloc((n ? n : 1) * sizeof *r.comb_pred);
    r.active = malloc(n && M ? n * M : 1);
    r.by_covering = calloc(M + 1, sizeof *r.by_covering);
    r.per = calloc(M, sizeof *r.per);
    if (!r.gen_pred || !r.comb_pred || !r.active || !r.by_covering || !r.per) {
        kdcl_specialist_eval_free(&r);
        return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    }
    double t0 = kdcl_now_seconds();
    kdcl_status s = kdcl_specialists_predict(g, set->models, cl, ds, o, max_batch, r.gen_pred,
                                             r.comb_pred, r.active);
    if (s) {
        kdcl_specialist_eval_free(&r);
        return s;
    }
    r.seconds = kdcl_now_seconds() - t0;
    for (size_t i = 0; i < n; i++) {
        const int32_t y = ds->labels[i];
        const int g_ok = r.gen_pred[i] == y, c_ok = r.comb_pred[i] == y;
        size_t cover = 0, n_act = 0, in_any = 0;
        for (size_t m = 0; m < M; m++) {
            int has = 0;
            for (size_t a = cl->off[m]; a < cl->off[m + 1]; a++) has |= cl->cls[a] == y;
            n_act += r.active[i * M + m];
            if (has) {
                in_any = 1;
                cover += r.active[i * M + m];
                tally_add(&r.per[m], g_ok, c_ok);
            }
        }
        r.active_sum += n_act;
        tally_add(&r.all, g_ok, c_ok);
        if (in_any) tally_add(&r.covered, g_ok, c_ok);
        if (n_act) tally_add(&r.with_active, g_ok, c_ok);
        tally_add(&r.by_covering[cover], g_ok, c_ok);
        if (cover > r.max_cover) r.max_cover = cover;
    }
    *out = r;
    return KDCL_OK;
}
