/* Model checkpoints: safetensors whose tensors are the state_dict() of the
 * torch.nn.Sequential that the "kdcl.model" metadata describes, so PyTorch
 * can rebuild the network without kdcl (tools/torch_rebuild.py). Older MLP
 * checkpoints (layers.<i>.weight/bias, "arch") still load. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "kdcl/safetensors.h"
#include "nn/model_internal.h"

#define FORMAT_V2 "kdcl-model-2"

/* Every tensor of the state_dict, in order: (layer, ltensor, is_stat). */
typedef struct sd_entry {
    kdcl_layer *l;
    kdcl_ltensor *t; /* NULL: num_batches_tracked */
    int stat;
    char name[96];
} sd_entry;

typedef struct sd_list {
    sd_entry *e;
    size_t n, cap;
} sd_list;

static kdcl_status sd_push(sd_list *s, kdcl_layer *l, kdcl_ltensor *t, int stat,
                           const char *suffix)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 32;
        sd_entry *e = realloc(s->e, cap * sizeof *e);
        if (!e) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        s->e = e;
        s->cap = cap;
    }
    sd_entry *e = &s->e[s->n++];
    e->l = l;
    e->t = t;
    e->stat = stat;
    snprintf(e->name, sizeof e->name, "%s.%s", l->name, suffix);
    return KDCL_OK;
}

static kdcl_status sd_collect(kdcl_layer_list *list, sd_list *s)
{
    kdcl_status st;
    for (size_t i = 0; i < list->n; i++) {
        kdcl_layer *l = &list->l[i];
        for (size_t j = 0; j < l->n_p; j++)
            if ((st = sd_push(s, l, &l->p[j], 0, l->p[j].suffix))) return st;
        for (size_t j = 0; j < l->n_st; j++)
            if ((st = sd_push(s, l, &l->st[j], 1, l->st[j].suffix))) return st;
        if (l->spec->kind == KDCL_LAYER_BATCHNORM &&
            (st = sd_push(s, l, NULL, 1, "num_batches_tracked")))
            return st;
        if (l->spec->kind == KDCL_LAYER_RESIDUAL) {
            kdcl_layer_list *lists = l->priv;
            if ((st = sd_collect(&lists[0], s)) || (st = sd_collect(&lists[1], s))) return st;
        }
    }
    return KDCL_OK;
}

static char *json_floats(const float *v, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)v[i]));
    char *s = a ? cJSON_PrintUnformatted(a) : NULL;
    cJSON_Delete(a);
    return s;
}

kdcl_status kdcl_model_save(kdcl_model *m, const char *path, const char *const *meta_keys,
                            const char *const *meta_values, size_t n_meta)
{
    sd_list sd = {0};
    float *hp = NULL, *hs = NULL;
    kdcl_st_tensor *t = NULL;
    int64_t *nbt = NULL;
    char *model_json = NULL, *mean_json = NULL, *std_json = NULL;
    const char **keys = NULL, **vals = NULL;
    kdcl_status s = sd_collect(&m->top, &sd);
    if (s) goto done;
    hp = malloc(m->params.numel * sizeof *hp);
    hs = malloc(m->stats.numel * sizeof *hs);
    t = calloc(sd.n ? sd.n : 1, sizeof *t);
    nbt = calloc(sd.n ? sd.n : 1, sizeof *nbt);
    keys = calloc(n_meta + 8, sizeof *keys);
    vals = calloc(n_meta + 8, sizeof *vals);
    if (!hp || !hs || !t || !nbt || !keys || !vals) {
        s = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        goto done;
    }
    if ((s = kdcl_tensor_download(m->ctx, &m->params, 0, m->params.numel, hp)) ||
        (s = kdcl_tensor_download(m->ctx, &m->stats, 0, m->stats.numel, hs)))
        goto done;
    for (size_t i = 0; i < sd.n; i++) {
        sd_entry *e = &sd.e[i];
        if (!e->t) {
            nbt[i] = e->l->batches_tracked;
            t[i] = (kdcl_st_tensor){e->name, KDCL_DT_I64, 0, {0}, &nbt[i], sizeof nbt[i]};
            continue;
        }
        const float *d = (e->stat ? hs : hp) + e->t->offset;
        for (size_t k = 0; k < e->t->n; k++)
            if (!isfinite(d[k])) {
                s = kdcl_set_error(KDCL_ERR_NUMERIC, "refusing to save %s: %s contains NaN/Inf",
                                   path, e->name);
                goto done;
            }
        t[i] = (kdcl_st_tensor){e->name, KDCL_DT_F32, e->t->ndim, {0}, (void *)d,
                                e->t->n * sizeof(float)};
        for (size_t k = 0; k < e->t->ndim; k++) t[i].shape[k] = e->t->shape[k];
    }
    model_json = kdcl_spec_to_json(&m->spec, m->in);
    mean_json = json_floats(m->mean, m->in.c < 4 ? m->in.c : 4);
    std_json = json_floats(m->std, m->in.c < 4 ? m->in.c : 4);
    if (!model_json || !mean_json || !std_json) {
        s = model_json ? kdcl_set_error(KDCL_ERR_OOM, "out of host memory") : KDCL_ERR_INVALID_ARG;
        goto done;
    }
    char shape[96], arch[512];
    snprintf(shape, sizeof shape, "[%zu, %zu, %zu]", m->in.c, m->in.h, m->in.w);
    kdcl_model_describe(m, arch, sizeof arch);
    size_t nk = 0;
    keys[nk] = "format", vals[nk++] = FORMAT_V2;
    keys[nk] = "kdcl.model", vals[nk++] = model_json;
    keys[nk] = "kdcl.input_shape", vals[nk++] = shape;
    keys[nk] = "kdcl.input_mean", vals[nk++] = mean_json;
    keys[nk] = "kdcl.input_std", vals[nk++] = std_json;
    keys[nk] = "arch", vals[nk++] = arch;
    if (m->input_hwc) keys[nk] = "kdcl.input_layout", vals[nk++] = "HWC";
    for (size_t i = 0; i < n_meta; i++) {
        int dup = 0;
        for (size_t j = 0; j < nk; j++) dup |= !strcmp(keys[j], meta_keys[i]);
        if (dup || !strcmp(meta_keys[i], "input_scale") || !strcmp(meta_keys[i], "input_shift"))
            continue;
        keys[nk] = meta_keys[i], vals[nk++] = meta_values[i];
    }
    s = kdcl_st_write(path, t, sd.n, keys, vals, nk);
done:
    free(sd.e);
    free(hp);
    free(hs);
    free(t);
    free(nbt);
    free(keys);
    free(vals);
    cJSON_free(model_json);
    cJSON_free(mean_json);
    cJSON_free(std_json);
    return s;
}

/* ---- loading ---- */

static kdcl_status parse_floats(const char *path, const char *key, const char *json, size_t n,
                                float *out)
{
    cJSON *a = cJSON_Parse(json);
    kdcl_status s = KDCL_OK;
    if (!cJSON_IsArray(a) || (size_t)cJSON_GetArraySize(a) != n) {
        s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: '%s' must be a list of %zu numbers", path, key,
                           n);
    } else {
        size_t i = 0;
        const cJSON *v;
        cJSON_ArrayForEach(v, a)
        {
            if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) ||
                fabs(v->valuedouble) > FLT_MAX) {
                s = kdcl_set_error(KDCL_ERR_FORMAT,
                                   "%s: '%s' entry %zu is not a finite float%s", path, key, i,
                                   cJSON_IsNumber(v) && isfinite(v->valuedouble)
                                       ? " (it overflows)"
                                       : "");
                break;
            }
            out[i++] = (float)v->valuedouble;
        }
    }
    cJSON_Delete(a);
    return s;
}

static kdcl_status parse_shape(const char *path, const char *json, size_t *c, size_t *h,
                               size_t *w)
{
    cJSON *a = cJSON_Parse(json);
    kdcl_status s = KDCL_OK;
    size_t v[3] = {0, 0, 0};
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != 3) {
        s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: 'kdcl.input_shape' must be [C, H, W]", path);
    } else {
        for (int i = 0; i < 3; i++) {
            const cJSON *e = cJSON_GetArrayItem(a, i);
            if (!cJSON_IsNumber(e) || e->valuedouble < 1 || e->valuedouble > 65536 ||
                e->valuedouble != (double)(size_t)e->valuedouble) {
                s = kdcl_set_error(KDCL_ERR_FORMAT,
                                   "%s: 'kdcl.input_shape' entries must be integers 1..65536",
                                   path);
                break;
            }
            v[i] = (size_t)e->valuedouble;
        }
    }
    cJSON_Delete(a);
    *c = v[0], *h = v[1], *w = v[2];
    if (!s && *c > 4)
        s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: %zu input channels (kdcl handles 1..4)", path,
                           *c);
    return s;
}

/* The architecture of an older MLP checkpoint: "arch" metadata, or the
 * chain of layers.<i>.weight shapes. */
static kdcl_status legacy_spec(const kdcl_st_file *f, const char *path, kdcl_model_spec *spec)
{
    const char *as = kdcl_st_meta(f, "arch");
    if (as) {
        kdcl_status s = kdcl_model_spec_parse(as, 1, spec);
        if (s) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", kdcl_last_error());
            return kdcl_set_error(KDCL_ERR_FORMAT, "%s: bad 'arch' metadata: %s", path, msg);
        }
        if (!spec->in_features) {
            kdcl_model_spec_free(spec);
            return kdcl_set_error(KDCL_ERR_FORMAT, "%s: 'arch' metadata '%s' is not an MLP", path,
                                  as);
        }
        return KDCL_OK;
    }
    size_t sizes[KDCL_MAX_MLP_SIZES], n = 0;
    for (size_t l = 0; l + 1 < KDCL_MAX_MLP_SIZES; l++) {
        char name[48];
        snprintf(name, sizeof name, "layers.%zu.weight", l);
        const kdcl_st_tensor *t = kdcl_st_find(f, name);
        if (!t) break;
        if (t->ndim != 2 || (l > 0 && t->shape[1] != sizes[l]))
            return kdcl_set_error(KDCL_ERR_FORMAT, "%s: '%s' does not chain with the previous layer",
                                  path, name);
        sizes[l] = t->shape[1];
        sizes[l + 1] = t->shape[0];
        n = l + 2;
    }
    if (n == 0)
        return kdcl_set_error(KDCL_ERR_FORMAT,
                              "%s: no 'kdcl.model' or 'arch' metadata and no layers.0.weight tensor",
                              path);
    return kdcl_model_spec_mlp(sizes, n, 0.0f, 0.0f, spec);
}

static kdcl_status load_values(kdcl_model *m, const kdcl_st_file *f, const char *path, int legacy)
{
    sd_list sd = {0};
    float *hp = calloc(m->params.numel, sizeof *hp), *hs = calloc(m->stats.numel, sizeof *hs);
    kdcl_status s = KDCL_OK;
    if (!hp || !hs) {
        s = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        goto done;
    }
    if ((s = sd_collect(&m->top, &sd))) goto done;
    if (legacy) /* Linear layers only, weight then bias: layers.<i>.weight / .bias */
        for (size_t i = 0, lin = 0; i < sd.n; i++) {
            sd_entry *e = &sd.e[i];
            snprintf(e->name, sizeof e->name, "layers.%zu.%s", lin, e->t->suffix);
            if (!strcmp(e->t->suffix, "bias") || e->l->n_p == 1) lin++;
        }
    for (size_t i = 0; i < sd.n; i++) {
        sd_entry *e = &sd.e[i];
        const char *name = e->name;
        if (!e->t) {
            const kdcl_st_tensor *t = kdcl_st_find(f, name);
            if (!t) {
                s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: tensor '%s' is missing", path, name);
                goto done;
            }
            if (t->dtype != KDCL_DT_I64 || t->ndim > 1 || (t->ndim == 1 && t->shape[0] != 1) ||
                *(const int64_t *)t->data < 0) {
                s = kdcl_set_error(KDCL_ERR_FORMAT,
                                   "%s: '%s' must be a non-negative I64 scalar", path, name);
                goto done;
            }
            e->l->batches_tracked = *(const int64_t *)t->data;
            continue;
        }
        const float *d;
        if ((s = kdcl_st_get_f32(f, name, e->t->ndim, e->t->shape, &d))) goto done;
        for (size_t k = 0; k < e->t->n; k++)
            if (!isfinite(d[k]) || (!strcmp(e->t->suffix, "running_var") && d[k] < 0)) {
                s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: '%s' contains %s", path, name,
                                   isfinite(d[k]) ? "a negative variance" : "NaN/Inf");
                goto done;
            }
        memcpy((e->stat ? hs : hp) + e->t->offset, d, e->t->n * sizeof *d);
    }
    if (f->n_tensors != sd.n) {
        /* name the first tensor the architecture does not have */
        for (size_t i = 0; i < f->n_tensors; i++) {
            int known = 0;
            for (size_t j = 0; j < sd.n && !known; j++)
                known = !strcmp(sd.e[j].name, f->tensors[i].name);
            if (!known) {
                s = kdcl_set_error(KDCL_ERR_FORMAT,
                                   "%s: has '%s', which its architecture does not have", path,
                                   f->tensors[i].name);
                goto done;
            }
        }
    }
    if ((s = kdcl_tensor_upload(m->ctx, &m->params, 0, m->params.numel, hp)) ||
        (s = kdcl_tensor_upload(m->ctx, &m->stats, 0, m->stats.numel, hs)))
        goto done;
done:
    free(sd.e);
    free(hp);
    free(hs);
    return s;
}

/* Before allocating: one example's activations stay within
 * KDCL_CHECKPOINT_MAX_ACTS, and an architecture of more than 2^20 values
 * (small ones are cheap to build: load_values then names the first tensor
 * that does not fit) finds at least that many F32 values in the file. */
static kdcl_status check_footprint(const kdcl_st_file *f, const char *path,
                                   const kdcl_model_spec *spec, kdcl_shape3 in)
{
    size_t need = 0, acts = 0, have = 0;
    kdcl_status s = kdcl_spec_footprint(spec, in, &need, &acts);
    if (s) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", kdcl_last_error());
        return kdcl_set_error(KDCL_ERR_FORMAT, "%s: %s", path, msg);
    }
    for (size_t i = 0; i < f->n_tensors; i++)
        if (f->tensors[i].dtype == KDCL_DT_F32) have += f->tensors[i].nbytes / sizeof(float);
    if (acts > KDCL_CHECKPOINT_MAX_ACTS)
        return kdcl_set_error(KDCL_ERR_FORMAT,
                              "%s: its architecture needs %zu activation values per example for "
                              "the input [%zu, %zu, %zu], more than the %zu a checkpoint may "
                              "declare",
                              path, acts, in.c, in.h, in.w, (size_t)KDCL_CHECKPOINT_MAX_ACTS);
    if (need > have && need > ((size_t)1 << 20))
        return kdcl_set_error(KDCL_ERR_FORMAT,
                              "%s: its architecture has %zu parameters and statistics but the file "
                              "holds only %zu F32 values",
                              path, need, have);
    return KDCL_OK;
}

kdcl_status kdcl_model_load(kdcl_ctx *ctx, const char *path, size_t max_batch,
                            kdcl_model **out, kdcl_st_file *meta)
{
    *out = NULL;
    kdcl_st_file f;
    kdcl_status s = kdcl_st_read(path, &f);
    if (s) return s;
    kdcl_model_spec spec = {0};
    kdcl_model *m = NULL;
    const char *mj = kdcl_st_meta(&f, "kdcl.model");
    int legacy = mj == NULL;
    size_t c = 1, h = 1, w = 1;
    if (legacy) {
        if ((s = legacy_spec(&f, path, &spec))) goto done;
        w = spec.in_features;
    } else {
        const char *shape = kdcl_st_meta(&f, "kdcl.input_shape");
        if (!shape) {
            s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: 'kdcl.model' without 'kdcl.input_shape'",
                               path);
            goto done;
        }
        if ((s = parse_shape(path, shape, &c, &h, &w))) goto done;
        if ((s = kdcl_model_spec_from_json(mj, &spec)) ||
            (s = kdcl_spec_check_json_shapes(mj, &spec, (kdcl_shape3){c, h, w, 0}))) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", kdcl_last_error());
            s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: bad 'kdcl.model': %s", path, msg);
            goto done;
        }
    }
    if ((s = check_footprint(&f, path, &spec, (kdcl_shape3){c, h, w, 0}))) goto done;
    if ((s = kdcl_model_create(ctx, &spec, c, h, w, max_batch, &m))) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", kdcl_last_error());
        s = kdcl_set_error(s == KDCL_ERR_OOM ? s : KDCL_ERR_FORMAT, "%s: %s", path, msg);
        goto done;
    }
    m->input_hwc = legacy;
    const char *layout = kdcl_st_meta(&f, "kdcl.input_layout");
    if (layout) {
        if (strcmp(layout, "HWC") && strcmp(layout, "CHW")) {
            s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: 'kdcl.input_layout' must be HWC or CHW",
                               path);
            goto done;
        }
        m->input_hwc = !strcmp(layout, "HWC");
    }
    if (!legacy) {
        const char *mean = kdcl_st_meta(&f, "kdcl.input_mean"), *sd = kdcl_st_meta(&f, "kdcl.input_std");
        float mv[4] = {0, 0, 0, 0}, sv[4] = {1, 1, 1, 1};
        if ((mean && (s = parse_floats(path, "kdcl.input_mean", mean, c, mv))) ||
            (sd && (s = parse_floats(path, "kdcl.input_std", sd, c, sv))))
            goto done;
        if ((s = kdcl_model_set_input_norm(m, mv, sv))) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", kdcl_last_error());
            s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: %s", path, msg);
            goto done;
        }
    } else {
        /* kdcl's earlier checkpoints: x = u8 * input_scale + input_shift */
        const char *sc = kdcl_st_meta(&f, "input_scale"), *sh = kdcl_st_meta(&f, "input_shift");
        char *e1 = NULL, *e2 = NULL;
        double scale = sc ? strtod(sc, &e1) : 1.0 / 255.0, shift = sh ? strtod(sh, &e2) : 0.0;
        if ((sc && (e1 == sc || *e1)) || (sh && (e2 == sh || *e2)) || !(scale > 0) ||
            !isfinite(scale) || !isfinite(shift)) {
            s = kdcl_set_error(KDCL_ERR_FORMAT,
                               "%s: bad input_scale '%s' / input_shift '%s' (need numbers, "
                               "scale > 0)",
                               path, sc ? sc : "", sh ? sh : "");
            goto done;
        }
        double svd = 1.0 / (255.0 * scale), mvd = -shift / (255.0 * scale);
        if (fabs(svd - 1.0) < 1e-6) svd = 1.0; /* the default 1/255 written with 9 digits */
        float sv = (float)svd, mv = (float)mvd;
        float mvs[4] = {mv, mv, mv, mv}, svs[4] = {sv, sv, sv, sv};
        if ((s = kdcl_model_set_input_norm(m, mvs, svs))) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", kdcl_last_error());
            s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: input_scale %g / input_shift %g: %s", path,
                               scale, shift, msg);
            goto done;
        }
    }
    if ((s = load_values(m, &f, path, legacy))) goto done;
    *out = m;
    m = NULL;
done:
    kdcl_model_destroy(m);
    kdcl_model_spec_free(&spec);
    if (meta && !s)
        *meta = f;
    else
        kdcl_st_free(&f);
    return s;
}

kdcl_status kdcl_model_load_fit(kdcl_ctx *ctx, const char *path, size_t max_batch,
                                size_t min_batch, kdcl_model **out, kdcl_st_file *meta)
{
    *out = NULL;
    if (min_batch == 0 || min_batch > max_batch)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "%s: batch range %zu..%zu: need 1 <= min <= max", path, min_batch,
                              max_batch);
    for (size_t b = max_batch;; b = b / 2 > min_batch ? b / 2 : min_batch) {
        kdcl_status s = kdcl_model_load(ctx, path, b, out, meta);
        if (s != KDCL_ERR_OOM || b == min_batch) return s;
    }
}
