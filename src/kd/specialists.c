/* Specialist models with a dustbin class: initialisation from the generalist,
 * relabelling, half-special epochs and the oversampling correction. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kdcl/specialists.h"

/* Validate a class list against K: non-empty, in range, no repeats, n < K (a
 * specialist needs at least one class in its dustbin). */
static kdcl_status check_classes(const int32_t *cls, size_t n, size_t K, const char *what)
{
    if (n == 0) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: the class list is empty", what);
    if (n >= K)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "%s: %zu special classes leave nothing for the dustbin (the data "
                              "has %zu classes)",
                              what, n, K);
    for (size_t i = 0; i < n; i++) {
        if (cls[i] < 0 || (size_t)cls[i] >= K)
            return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: class %d outside 0..%zu", what,
                                  (int)cls[i], K - 1);
        for (size_t j = 0; j < i; j++)
            if (cls[j] == cls[i])
                return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: class %d listed twice", what,
                                      (int)cls[i]);
    }
    return KDCL_OK;
}

kdcl_status kdcl_specialist_init(kdcl_model *g, const int32_t *cls, size_t n, kdcl_model *spec)
{
    const size_t K = kdcl_model_classes(g);
    kdcl_status s = check_classes(cls, n, K, "specialist init");
    if (s) return s;
    /* the same network up to the output layer, which has n + 1 outputs */
    size_t ng, ns;
    const kdcl_param_range *rg = kdcl_model_param_ranges(g, &ng), *rs = kdcl_model_param_ranges(spec, &ns);
    kdcl_param_range gw, gb, sw, sb;
    int same = ng == ns && kdcl_model_classes(spec) == n + 1 &&
               kdcl_model_in_dim(spec) == kdcl_model_in_dim(g) &&
               !kdcl_model_output_layer(g, &gw, &gb) && !kdcl_model_output_layer(spec, &sw, &sb) &&
               gw.cols == sw.cols;
    for (size_t i = 0; same && i < ng; i++)
        same = !strcmp(rg[i].name, rs[i].name) &&
               (rg[i].n == rs[i].n || !strcmp(rg[i].name, gw.name) || !strcmp(rg[i].name, gb.name));
    if (!same) {
        char a[256], b[256];
        kdcl_model_describe(g, a, sizeof a);
        kdcl_model_describe(spec, b, sizeof b);
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "specialist init: a specialist of %s over %zu classes must be the "
                              "generalist's architecture with %zu outputs (and an output bias), "
                              "not %s",
                              a, n, n + 1, b);
    }
    const size_t gp = kdcl_model_n_params(g), sp = kdcl_model_n_params(spec), in = gw.cols;
    float *h = malloc(gp * sizeof *h), *o = malloc(sp * sizeof *o);
    char *special = calloc(K, 1);
    double *acc = calloc(in, sizeof *acc), bacc = 0;
    if (!h || !o || !special || !acc) {
        s = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        goto done;
    }
    if ((s = kdcl_model_get_params(g, h))) goto done;
    /* packed order: every range in turn; copy all but the output layer */
    const float *W = NULL, *bias = NULL;
    float *sW = NULL, *sbp = NULL;
    {
        const float *hp = h;
        float *op = o;
        for (size_t i = 0; i < ng; i++) {
            if (!strcmp(rg[i].name, gw.name)) W = hp, sW = op;
            else if (!strcmp(rg[i].name, gb.name)) bias = hp, sbp = op;
            else memcpy(op, hp, rg[i].n * sizeof *op);
            hp += rg[i].n;
            op += rs[i].n;
        }
    }
    for (size_t i = 0; i < n; i++) {
        special[cls[i]] = 1;
        memcpy(sW + i * in, W + (size_t)cls[i] * in, in * sizeof *W);
        sbp[i] = bias[cls[i]];
    }
    /* dustbin: the mean of the other rows (in double), bias + log(count) */
    const size_t others = K - n;
    for (size_t k = 0; k < K; k++) {
        if (special[k]) continue;
        for (size_t j = 0; j < in; j++) acc[j] += W[k * in + j];
        bacc += bias[k];
    }
    for (size_t j = 0; j < in; j++) sW[n * in + j] = (float)(acc[j] / (double)others);
    sbp[n] = (float)(bacc / (double)others + log((double)others));
    s = kdcl_model_set_params(spec, o);
done:
    free(h);
    free(o);
    free(special);
    free(acc);
    return s;
}

void kdcl_specialist_relabel(const kdcl_dataset *ds, const int32_t *cls, size_t n, int32_t *out)
{
    for (size_t e = 0; e < ds->n; e++) {
        int32_t y = (int32_t)n;
        for (size_t i = 0; i < n; i++)
            if (ds->labels[e] == cls[i]) {
                y = (int32_t)i;
                break;
            }
        out[e] = y;
    }
}

double kdcl_specialist_dustbin_offset(size_t n_special, size_t n_total)
{
    if (n_special == 0 || n_special >= n_total) return 0.0;
    return log((double)(n_total - n_special) / (double)n_special);
}

static void shuffle(size_t *x, size_t n, uint64_t seed, uint64_t epoch, uint64_t salt)
{
    kdcl_rng r;
    kdcl_rng_seed(&r, seed ^ (epoch * 0x9E3779B97F4A7C15ull) ^ (salt * 0xD1B54A32D192ED03ull));
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)kdcl_rng_below(&r, i);
        size_t t = x[i - 1];
        x[i - 1] = x[j];
        x[j] = t;
    }
}

kdcl_status kdcl_specialist_epoch_order(const int32_t *rel, size_t N, size_t n, uint64_t seed,
                                        uint64_t epoch, size_t *order, size_t *len)
{
    size_t ns = 0, no = 0;
    for (size_t e = 0; e < N; e++) ns += rel[e] >= 0 && (size_t)rel[e] < n;
    no = N - ns;
    if (ns == 0 || no == 0)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "specialist epoch: %zu special and %zu other examples; both must be "
                              "present",
                              ns, no);
    size_t *sp = malloc(ns * sizeof *sp), *ot = malloc(no * sizeof *ot);
    if (!sp || !ot) {
        free(sp);
        free(ot);
        return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    }
    ns = no = 0;
    for (size_t e = 0; e < N; e++) {
        if (rel[e] >= 0 && (size_t)rel[e] < n)
            sp[ns++] = e;
        else
            ot[no++] = e;
    }
    shuffle(sp, ns, seed, epoch, 1);
    size_t used = no, round = 0;
    for (size_t i = 0; i < ns; i++) {
        if (used == no) { /* others used up (or first use): a fresh shuffle */
            shuffle(ot, no, seed, epoch, 2 + round++);
            used = 0;
        }
        order[2 * i] = sp[i];
        order[2 * i + 1] = ot[used++];
    }
    *len = 2 * ns;
    free(sp);
    free(ot);
    return KDCL_OK;
}

typedef struct {
    const int32_t *rel;
    size_t N, n;
    uint64_t seed;
} half_sampler;

static kdcl_status half_sample(void *user, uint64_t epoch, size_t *order, size_t n)
{
    half_sampler *h = user;
    size_t len = 0;
    kdcl_status s = kdcl_specialist_epoch_order(h->rel, h->N, h->n, h->seed, epoch, order, &len);
    if (!s && len != n)
        s = kdcl_set_error(KDCL_ERR_INVALID_ARG, "specialist epoch of %zu examples, expected %zu",
                           len, n);
    return s;
}

kdcl_status kdcl_specialist_train(kdcl_model *spec, const kdcl_dataset *ds, const int32_t *cls,
                                  size_t n, const kdcl_train_opts *o, kdcl_epoch_stats *last,
                                  double *offset)
{
    kdcl_status s = check_classes(cls, n, ds->n_classes, "specialist training");
    if (s) return s;
    if (kdcl_model_classes(spec) != n + 1)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "specialist training: the model has %zu outputs, %zu special classes "
                              "need %zu (the last is the dustbin)",
                              kdcl_model_classes(spec), n, n + 1);
    if (o->val && o->val->n_classes != ds->n_classes)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "specialist training: the validation set has %zu classes, the "
                              "training set %zu",
                              o->val->n_classes, ds->n_classes);
    kdcl_dataset rel = *ds, vrel = {0};
    size_t n_special = 0;
    rel.labels = malloc((ds->n ? ds->n : 1) * sizeof *rel.labels);
    if (o->val) {
        vrel = *o->val;
        vrel.labels = malloc((vrel.n ? vrel.n : 1) * sizeof *vrel.labels);
    }
    if (!rel.labels || (o->val && !vrel.labels)) {
        s = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        goto done;
    }
    /* the relabelled views share the images; only the labels are ours */
    rel.n_classes = n + 1;
    rel.class_names = NULL;
    kdcl_specialist_relabel(ds, cls, n, rel.labels);
    for (size_t e = 0; e < ds->n; e++) n_special += (size_t)rel.labels[e] < n;
    if (n_special == 0 || n_special == ds->n) {
        s = kdcl_set_error(KDCL_ERR_INVALID_ARG,
                           "specialist training: the training set has %zu examples of the special "
                           "classes and %zu others; both must be present",
                           n_special, ds->n - n_special);
        goto done;
    }
    if (o->val) {
        vrel.n_classes = n + 1;
        vrel.class_names = NULL;
        kdcl_specialist_relabel(o->val, cls, n, vrel.labels);
    }
    half_sampler h = {rel.labels, ds->n, n, o->seed};
    kdcl_train_opts so = *o;
    so.sample = half_sample;
    so.sample_user = &h;
    so.epoch_n = 2 * n_special;
    so.val = o->val ? &vrel : NULL;
    if ((s = kdcl_train(spec, &rel, &so, NULL, NULL, last))) goto done;
    /* undo the sampling bias: raise the dustbin logit by the log of the factor
     * by which the special classes' odds were raised */
    const double off = kdcl_specialist_dustbin_offset(n_special, ds->n);
    const size_t dust = n;
    if ((s = kdcl_model_adjust_bias(spec, &dust, 1, (float)off))) goto done;
    if (offset) *offset = off;
done:
    free(rel.labels);
    free(vrel.labels);
    return s;
}
