/* Architecture specs: the text parser ("A-B-...-K", the compact layer list,
 * presets, @file.json), the kdcl.model JSON reader and writer, and shape
 * inference. Nothing here touches a device.
 *
 * Error messages name the layer (1-based, "layer 3", residual blocks' inner
 * layers as "layer 2 (Residual) body layer 1") or, for text, the bad token
 * and its 1-based character position. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "kdcl/model.h"
#include "kdcl/status.h"
#include "nn/spec_internal.h"

#define ELEM_LIMIT ((size_t)1 << 31) /* per-example sizes and weights stay below */
#define FILE_LIMIT ((long)16 << 20)  /* @file.json */

/* ---- small helpers ---- */

static void free_layers(kdcl_layer_spec *l, size_t n)
{
    if (!l) return;
    for (size_t i = 0; i < n; i++)
        if (l[i].kind == KDCL_LAYER_RESIDUAL) {
            free_layers(l[i].body, l[i].n_body);
            free_layers(l[i].shortcut, l[i].n_shortcut);
        }
    free(l);
}

static void free_layer_children(kdcl_layer_spec *l)
{
    if (l->kind == KDCL_LAYER_RESIDUAL) {
        free_layers(l->body, l->n_body);
        free_layers(l->shortcut, l->n_shortcut);
        l->body = l->shortcut = NULL;
        l->n_body = l->n_shortcut = 0;
    }
}

/* A growing layer array. */
typedef struct {
    kdcl_layer_spec *v;
    size_t n, cap;
} lvec;

/* Appends l (taking its children); on failure frees them. */
static kdcl_status lvec_push(lvec *a, kdcl_layer_spec *l)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 8;
        kdcl_layer_spec *v = realloc(a->v, cap * sizeof *v);
        if (!v) {
            free_layer_children(l);
            return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        }
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = *l;
    return KDCL_OK;
}

static void lvec_free(lvec *a)
{
    free_layers(a->v, a->n);
    a->v = NULL;
    a->n = a->cap = 0;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_' || c == '-';
}
/* A character of an argument value or option name. */
static int is_value_char(char c)
{
    return c != '\0' && !is_space(c) && c != ',' && c != ';' && c != '(' && c != ')' && c != '=';
}
static const char *skip_ws(const char *p)
{
    while (is_space(*p)) p++;
    return p;
}

/* A token for a message: at most 40 bytes, non-printable bytes as '?'. */
typedef struct {
    char s[48];
} tokbuf;
static const char *tok(tokbuf *b, const char *p, size_t n)
{
    size_t m = n > 40 ? 37 : n, k = 0;
    for (size_t i = 0; i < m; i++) {
        unsigned char c = (unsigned char)p[i];
        b->s[k++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (m < n) {
        memcpy(b->s + k, "...", 3);
        k += 3;
    }
    b->s[k] = '\0';
    return b->s;
}
/* What stands at p: "end of text" or "'c'". */
static const char *what_at(tokbuf *b, const char *p)
{
    if (!*p) return "end of text";
    unsigned char c = (unsigned char)*p;
    snprintf(b->s, sizeof b->s, "'%c'", (c >= 0x20 && c < 0x7f) ? (char)c : '?');
    return b->s;
}

static const char *kind_name(kdcl_layer_kind k, int flat_in)
{
    switch (k) {
    case KDCL_LAYER_LINEAR: return "Linear";
    case KDCL_LAYER_CONV2D: return "Conv2d";
    case KDCL_LAYER_MAXPOOL2D: return "MaxPool2d";
    case KDCL_LAYER_AVGPOOL2D: return "AvgPool2d";
    case KDCL_LAYER_GLOBAL_AVGPOOL: return "AdaptiveAvgPool2d";
    case KDCL_LAYER_RELU: return "ReLU";
    case KDCL_LAYER_DROPOUT: return "Dropout";
    case KDCL_LAYER_FLATTEN: return "Flatten";
    case KDCL_LAYER_BATCHNORM: return flat_in < 0 ? "BatchNorm" : flat_in ? "BatchNorm1d" : "BatchNorm2d";
    case KDCL_LAYER_RESIDUAL: return "Residual";
    case KDCL_LAYER_KINDS: break;
    }
    return "unknown kind";
}

/* "Conv2d 16@5x5", "Linear 120", "MaxPool2d 2x2", ... */
static void layer_desc(const kdcl_layer_spec *l, char *buf, size_t size)
{
    switch (l->kind) {
    case KDCL_LAYER_LINEAR: snprintf(buf, size, "Linear %zu", l->out); break;
    case KDCL_LAYER_CONV2D: snprintf(buf, size, "Conv2d %zu@%zux%zu", l->out, l->kh, l->kw); break;
    case KDCL_LAYER_MAXPOOL2D: snprintf(buf, size, "MaxPool2d %zux%zu", l->kh, l->kw); break;
    case KDCL_LAYER_AVGPOOL2D: snprintf(buf, size, "AvgPool2d %zux%zu", l->kh, l->kw); break;
    case KDCL_LAYER_DROPOUT: snprintf(buf, size, "Dropout %g", (double)l->p); break;
    default:
        if ((unsigned)l->kind < KDCL_LAYER_KINDS)
            snprintf(buf, size, "%s", kind_name(l->kind, -1));
        else
            snprintf(buf, size, "kind %d", (int)l->kind);
    }
}

static void shape_str(kdcl_shape3 s, char *buf, size_t size)
{
    if (s.flat)
        snprintf(buf, size, "[%zu]", s.c);
    else
        snprintf(buf, size, "[%zu, %zu, %zu]", s.c, s.h, s.w);
}

kdcl_layer_spec kdcl_layer_spec_default(kdcl_layer_kind kind)
{
    kdcl_layer_spec l;
    memset(&l, 0, sizeof l);
    l.kind = kind;
    l.bias = 1;
    l.eps = 1e-5f;
    l.momentum = 0.1f;
    if (kind == KDCL_LAYER_CONV2D) l.sh = l.sw = 1;
    return l;
}

/* ---- free, copy, MLPs ---- */

void kdcl_model_spec_free(kdcl_model_spec *s)
{
    if (!s) return;
    free_layers(s->layers, s->n);
    s->layers = NULL;
    s->n = 0;
    s->in_features = 0;
}

static kdcl_status copy_layers(const kdcl_layer_spec *src, size_t n, int depth, kdcl_layer_spec **out)
{
    *out = NULL;
    if (n == 0) return KDCL_OK;
    if (!src) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "architecture spec: %zu layers but no array", n);
    if (depth > KDCL_SPEC_MAX_DEPTH)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "architecture spec: residual blocks nested deeper than %d",
                              KDCL_SPEC_MAX_DEPTH);
    kdcl_layer_spec *d = calloc(n, sizeof *d);
    if (!d) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    for (size_t i = 0; i < n; i++) {
        d[i] = src[i];
        d[i].body = d[i].shortcut = NULL;
        if (src[i].kind != KDCL_LAYER_RESIDUAL) {
            d[i].n_body = d[i].n_shortcut = 0;
            continue;
        }
        kdcl_status s = copy_layers(src[i].body, src[i].n_body, depth + 1, &d[i].body);
        if (!s) s = copy_layers(src[i].shortcut, src[i].n_shortcut, depth + 1, &d[i].shortcut);
        if (s) {
            d[i].n_body = d[i].body ? src[i].n_body : 0;
            d[i].n_shortcut = d[i].shortcut ? src[i].n_shortcut : 0;
            free_layers(d, i + 1);
            return s;
        }
    }
    *out = d;
    return KDCL_OK;
}

kdcl_status kdcl_model_spec_copy(const kdcl_model_spec *s, kdcl_model_spec *out)
{
    if (!s || !out) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_model_spec_copy: NULL argument");
    kdcl_layer_spec *l;
    kdcl_status st = copy_layers(s->layers, s->n, 0, &l);
    if (st) return st;
    out->layers = l;
    out->n = s->n;
    out->in_features = s->in_features;
    return KDCL_OK;
}

static int rate_ok(float p) { return p >= 0.0f && p < 1.0f; }

kdcl_status kdcl_model_spec_mlp(const size_t *sizes, size_t n_sizes, float drop_in, float drop_hidden,
                                kdcl_model_spec *out)
{
    if (!out) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_model_spec_mlp: NULL output");
    memset(out, 0, sizeof *out);
    if (!sizes || n_sizes < 2)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "an MLP needs at least an input and an output size");
    if (n_sizes > KDCL_SPEC_MAX_SIZES)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "an MLP has more than %d layers",
                              KDCL_SPEC_MAX_SIZES - 1);
    for (size_t i = 0; i < n_sizes; i++)
        if (sizes[i] < 1 || sizes[i] > KDCL_SPEC_MAX_SIZE)
            return kdcl_set_error(KDCL_ERR_INVALID_ARG, "MLP size %zu (number %zu) out of range (1..%d)",
                                  sizes[i], i + 1, KDCL_SPEC_MAX_SIZE);
    if (!rate_ok(drop_in) || !rate_ok(drop_hidden))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "dropout rates %g, %g must be in [0, 1)",
                              (double)drop_in, (double)drop_hidden);
    size_t L = n_sizes - 1, cap = 2 + 3 * L;
    kdcl_layer_spec *v = calloc(cap, sizeof *v);
    if (!v) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    size_t n = 0;
    v[n++] = kdcl_layer_spec_default(KDCL_LAYER_FLATTEN);
    if (drop_in > 0) {
        v[n] = kdcl_layer_spec_default(KDCL_LAYER_DROPOUT);
        v[n++].p = drop_in;
    }
    for (size_t i = 0; i < L; i++) {
        v[n] = kdcl_layer_spec_default(KDCL_LAYER_LINEAR);
        v[n++].out = sizes[i + 1];
        if (i + 1 == L) break;
        v[n++] = kdcl_layer_spec_default(KDCL_LAYER_RELU);
        if (drop_hidden > 0) {
            v[n] = kdcl_layer_spec_default(KDCL_LAYER_DROPOUT);
            v[n++].p = drop_hidden;
        }
    }
    out->layers = v;
    out->n = n;
    out->in_features = sizes[0];
    return KDCL_OK;
}

static size_t count_layers(const kdcl_layer_spec *l, size_t n, int depth)
{
    size_t c = n;
    if (!l || depth > KDCL_SPEC_MAX_DEPTH) return c;
    for (size_t i = 0; i < n; i++)
        if (l[i].kind == KDCL_LAYER_RESIDUAL)
            c += count_layers(l[i].body, l[i].n_body, depth + 1) +
                 count_layers(l[i].shortcut, l[i].n_shortcut, depth + 1);
    return c;
}

kdcl_status kdcl_model_spec_add_dropout(kdcl_model_spec *s, float drop_in, float drop_hidden)
{
    if (!s) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_model_spec_add_dropout: NULL spec");
    if (!rate_ok(drop_in) || !rate_ok(drop_hidden))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "dropout rates %g, %g must be in [0, 1)",
                              (double)drop_in, (double)drop_hidden);
    /* A spec that has Dropout layers already: set their rates (drop_in for
     * those before the first Linear/Conv2d, drop_hidden for the others). */
    int has = 0;
    for (size_t i = 0; i < s->n; i++) has |= s->layers[i].kind == KDCL_LAYER_DROPOUT;
    if (has) {
        int seen_weights = 0;
        for (size_t i = 0; i < s->n; i++) {
            kdcl_layer_spec *l = &s->layers[i];
            if (l->kind == KDCL_LAYER_LINEAR || l->kind == KDCL_LAYER_CONV2D ||
                l->kind == KDCL_LAYER_RESIDUAL)
                seen_weights = 1;
            if (l->kind == KDCL_LAYER_DROPOUT) l->p = seen_weights ? drop_hidden : drop_in;
        }
        return KDCL_OK;
    }
    size_t add = drop_in > 0;
    if (drop_hidden > 0)
        for (size_t i = 1; i < s->n; i++)
            add += s->layers[i].kind == KDCL_LAYER_RELU && s->layers[i - 1].kind == KDCL_LAYER_LINEAR;
    if (add == 0) return KDCL_OK;
    if (count_layers(s->layers, s->n, 0) + add > KDCL_SPEC_MAX_LAYERS)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "architecture: more than %d layers with dropout",
                              KDCL_SPEC_MAX_LAYERS);
    kdcl_layer_spec *v = calloc(s->n + add, sizeof *v);
    if (!v) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    size_t n = 0, i = 0;
    kdcl_layer_spec d = kdcl_layer_spec_default(KDCL_LAYER_DROPOUT);
    /* input dropout after a leading Flatten, as kdcl_model_spec_mlp places it */
    if (s->n > 0 && s->layers[0].kind == KDCL_LAYER_FLATTEN) v[n++] = s->layers[i++];
    if (drop_in > 0) {
        d.p = drop_in;
        v[n++] = d;
    }
    for (; i < s->n; i++) {
        v[n++] = s->layers[i];
        if (drop_hidden > 0 && i > 0 && s->layers[i].kind == KDCL_LAYER_RELU &&
            s->layers[i - 1].kind == KDCL_LAYER_LINEAR) {
            d.p = drop_hidden;
            v[n++] = d;
        }
    }
    free(s->layers); /* the children moved to v */
    s->layers = v;
    s->n = n;
    return KDCL_OK;
}

/* ---- shape inference ---- */

static int mul_ok(size_t a, size_t b, size_t *r)
{
    if (a && b > (ELEM_LIMIT - 1) / a) return 0;
    *r = a * b;
    return 1;
}
static size_t shape_elems(kdcl_shape3 s, int *ok)
{
    size_t a, b;
    *ok = mul_ok(s.c, s.h, &a) && mul_ok(a, s.w, &b);
    return *ok ? b : 0;
}

static kdcl_status lerr(const char *prefix, size_t i, const kdcl_layer_spec *l, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static kdcl_status lerr(const char *prefix, size_t i, const kdcl_layer_spec *l, const char *fmt, ...)
{
    char msg[512], d[96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    layer_desc(l, d, sizeof d);
    return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%slayer %zu (%s): %s", prefix, i + 1, d, msg);
}

static void pad_str(size_t ph, size_t pw, char *buf, size_t size)
{
    if (ph == pw)
        snprintf(buf, size, "%zu", ph);
    else
        snprintf(buf, size, "%zux%zu", ph, pw);
}

/* Window layers: the output size of one dimension, or 0 when it does not fit. */
static size_t window_out(size_t x, size_t k, size_t s, size_t p)
{
    if (x + 2 * p < k) return 0;
    return (x + 2 * p - k) / s + 1;
}

static kdcl_status infer_list(const kdcl_layer_spec *L, size_t n, kdcl_shape3 in, kdcl_shape3 *outs,
                              const char *prefix, int depth, size_t *count);

static kdcl_status infer_one(const kdcl_layer_spec *l, size_t i, kdcl_shape3 in, kdcl_shape3 *o,
                             const char *prefix, int depth, size_t *count)
{
    char sh[64];
    size_t e;
    kdcl_status st;
    *o = in;
    shape_str(in, sh, sizeof sh);
    switch (l->kind) {
    case KDCL_LAYER_LINEAR:
        if (!in.flat)
            return lerr(prefix, i, l, "needs a flat input but gets %s (add flatten before it)", sh);
        if (l->out < 1 || l->out > KDCL_SPEC_MAX_SIZE)
            return lerr(prefix, i, l, "out_features %zu out of range (1..%d)", l->out, KDCL_SPEC_MAX_SIZE);
        if (l->bias != 0 && l->bias != 1) return lerr(prefix, i, l, "bias must be 0 or 1");
        if (!mul_ok(in.c, l->out, &e))
            return lerr(prefix, i, l, "a %zux%zu weight has 2^31 elements or more", l->out, in.c);
        *o = (kdcl_shape3){l->out, 1, 1, 1};
        break;
    case KDCL_LAYER_CONV2D:
    case KDCL_LAYER_MAXPOOL2D:
    case KDCL_LAYER_AVGPOOL2D: {
        int conv = l->kind == KDCL_LAYER_CONV2D;
        if (in.flat) return lerr(prefix, i, l, "needs a [C, H, W] input but gets the flat %s", sh);
        if (conv && (l->out < 1 || l->out > KDCL_SPEC_MAX_SIZE))
            return lerr(prefix, i, l, "out_channels %zu out of range (1..%d)", l->out, KDCL_SPEC_MAX_SIZE);
        if (l->kh < 1 || l->kh > KDCL_SPEC_MAX_KERNEL || l->kw < 1 || l->kw > KDCL_SPEC_MAX_KERNEL)
            return lerr(prefix, i, l, "kernel %zux%zu out of range (1..%d)", l->kh, l->kw,
                        KDCL_SPEC_MAX_KERNEL);
        size_t sh_ = l->sh, sw_ = l->sw;
        if (!conv && sh_ == 0 && sw_ == 0) sh_ = l->kh, sw_ = l->kw;
        if (sh_ < 1 || sh_ > KDCL_SPEC_MAX_STRIDE || sw_ < 1 || sw_ > KDCL_SPEC_MAX_STRIDE)
            return lerr(prefix, i, l, "stride %zux%zu out of range (1..%d%s)", l->sh, l->sw,
                        KDCL_SPEC_MAX_STRIDE, conv ? "" : ", or 0 for the kernel size");
        if (l->ph > KDCL_SPEC_MAX_PAD || l->pw > KDCL_SPEC_MAX_PAD)
            return lerr(prefix, i, l, "padding %zux%zu out of range (0..%d)", l->ph, l->pw,
                        KDCL_SPEC_MAX_PAD);
        if (conv && (l->ph >= l->kh || l->pw >= l->kw))
            return lerr(prefix, i, l, "padding %zux%zu must be smaller than the kernel", l->ph, l->pw);
        if (!conv && (l->ph > l->kh / 2 || l->pw > l->kw / 2))
            return lerr(prefix, i, l, "padding %zux%zu must be at most half the kernel", l->ph, l->pw);
        if (conv && l->bias != 0 && l->bias != 1) return lerr(prefix, i, l, "bias must be 0 or 1");
        size_t oh = window_out(in.h, l->kh, sh_, l->ph), ow = window_out(in.w, l->kw, sw_, l->pw);
        if (oh == 0 || ow == 0) {
            char p[48];
            pad_str(l->ph, l->pw, p, sizeof p);
            return lerr(prefix, i, l, "kernel %zux%zu does not fit a %zux%zu input with padding %s", l->kh,
                        l->kw, in.h, in.w, p);
        }
        if (conv) {
            size_t a, b;
            if (!mul_ok(in.c, l->kh, &a) || !mul_ok(a, l->kw, &a) || !mul_ok(a, l->out, &b))
                return lerr(prefix, i, l, "the weight has 2^31 elements or more");
        }
        *o = (kdcl_shape3){conv ? l->out : in.c, oh, ow, 0};
        break;
    }
    case KDCL_LAYER_GLOBAL_AVGPOOL:
        if (in.flat) return lerr(prefix, i, l, "needs a [C, H, W] input but gets the flat %s", sh);
        *o = (kdcl_shape3){in.c, 1, 1, 0};
        break;
    case KDCL_LAYER_RELU: break;
    case KDCL_LAYER_DROPOUT:
        if (!rate_ok(l->p)) return lerr(prefix, i, l, "rate %g must be in [0, 1)", (double)l->p);
        break;
    case KDCL_LAYER_FLATTEN: {
        int ok;
        size_t n = shape_elems(in, &ok);
        *o = (kdcl_shape3){n, 1, 1, 1};
        break;
    }
    case KDCL_LAYER_BATCHNORM:
        if (!(l->eps > 0.0f) || !isfinite(l->eps))
            return lerr(prefix, i, l, "eps %g must be > 0", (double)l->eps);
        if (!(l->momentum >= 0.0f && l->momentum <= 1.0f))
            return lerr(prefix, i, l, "momentum %g must be in [0, 1]", (double)l->momentum);
        break;
    case KDCL_LAYER_RESIDUAL: {
        if (depth + 1 > KDCL_SPEC_MAX_DEPTH)
            return lerr(prefix, i, l, "residual blocks nested deeper than %d", KDCL_SPEC_MAX_DEPTH);
        if (l->n_body == 0 || !l->body) return lerr(prefix, i, l, "the body is empty");
        if (l->n_shortcut > 0 && !l->shortcut) return lerr(prefix, i, l, "shortcut layers missing");
        size_t nmax = l->n_body > l->n_shortcut ? l->n_body : l->n_shortcut;
        if (nmax > KDCL_SPEC_MAX_LAYERS)
            return lerr(prefix, i, l, "more than %d layers", KDCL_SPEC_MAX_LAYERS);
        kdcl_shape3 *tmp = malloc(nmax * sizeof *tmp);
        if (!tmp) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        char pre[1024];
        snprintf(pre, sizeof pre, "%slayer %zu (Residual) body ", prefix, i + 1);
        st = infer_list(l->body, l->n_body, in, tmp, pre, depth + 1, count);
        kdcl_shape3 b = st ? in : tmp[l->n_body - 1], s = in;
        if (!st && l->n_shortcut) {
            snprintf(pre, sizeof pre, "%slayer %zu (Residual) shortcut ", prefix, i + 1);
            st = infer_list(l->shortcut, l->n_shortcut, in, tmp, pre, depth + 1, count);
            if (!st) s = tmp[l->n_shortcut - 1];
        }
        free(tmp);
        if (st) return st;
        if (b.c != s.c || b.h != s.h || b.w != s.w || b.flat != s.flat) {
            char bs[64], ss[64];
            shape_str(b, bs, sizeof bs);
            shape_str(s, ss, sizeof ss);
            return lerr(prefix, i, l, "the body gives %s but the %s gives %s", bs,
                        l->n_shortcut ? "shortcut" : "identity shortcut", ss);
        }
        *o = b;
        break;
    }
    default: return lerr(prefix, i, l, "unknown layer kind");
    }
    int ok;
    shape_elems(*o, &ok);
    if (!ok) {
        char os[64];
        shape_str(*o, os, sizeof os);
        return lerr(prefix, i, l, "output %s has 2^31 elements or more", os);
    }
    return KDCL_OK;
}

static kdcl_status infer_list(const kdcl_layer_spec *L, size_t n, kdcl_shape3 in, kdcl_shape3 *outs,
                              const char *prefix, int depth, size_t *count)
{
    *count += n;
    if (*count > KDCL_SPEC_MAX_LAYERS)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "architecture: more than %d layers (nested ones included)",
                              KDCL_SPEC_MAX_LAYERS);
    for (size_t i = 0; i < n; i++) {
        kdcl_status st = infer_one(&L[i], i, i ? outs[i - 1] : in, &outs[i], prefix, depth, count);
        if (st) return st;
    }
    return KDCL_OK;
}

static kdcl_status check_input(kdcl_shape3 in)
{
    int ok;
    shape_elems(in, &ok);
    if (in.c < 1 || in.h < 1 || in.w < 1 || !ok || (in.flat && (in.h != 1 || in.w != 1)))
        return kdcl_set_error(
            KDCL_ERR_INVALID_ARG,
            "input shape [%zu, %zu, %zu]%s: sizes must be >= 1 with fewer than 2^31 elements", in.c, in.h,
            in.w, in.flat ? " (flat)" : "");
    return KDCL_OK;
}

kdcl_status kdcl_spec_infer(const kdcl_layer_spec *layers, size_t n, kdcl_shape3 in, kdcl_shape3 *outs)
{
    if (n == 0)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "architecture: a model needs at least one layer");
    if (!layers || !outs) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_spec_infer: NULL argument");
    kdcl_status st = check_input(in);
    if (st) return st;
    size_t count = 0;
    if ((st = infer_list(layers, n, in, outs, "", 0, &count))) return st;
    if (!outs[n - 1].flat) {
        char sh[64];
        shape_str(outs[n - 1], sh, sizeof sh);
        return lerr("", n - 1, &layers[n - 1],
                    "the model ends in a %s output, not a flat one (end with flatten and a linear layer)",
                    sh);
    }
    return KDCL_OK;
}

kdcl_status kdcl_spec_infer_branch(const kdcl_layer_spec *layers, size_t n, kdcl_shape3 in,
                                   kdcl_shape3 *outs)
{
    if (!layers || !outs) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_spec_infer_branch: NULL argument");
    size_t count = 0;
    return infer_list(layers, n, in, outs, "", 1, &count);
}

kdcl_status kdcl_spec_infer_model(const kdcl_model_spec *s, kdcl_shape3 in, kdcl_shape3 *outs)
{
    if (!s) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_spec_infer_model: NULL spec");
    kdcl_status st = kdcl_spec_infer(s->layers, s->n, in, outs);
    if (st || !s->in_features) return st;
    for (size_t i = 0; i < s->n; i++) {
        if (s->layers[i].kind != KDCL_LAYER_LINEAR) continue;
        size_t got = i ? outs[i - 1].c : in.c;
        if (got != s->in_features)
            return lerr("", i, &s->layers[i],
                        "the architecture's input size %zu does not match the %zu features it gets "
                        "(input [%zu, %zu, %zu])",
                        s->in_features, got, in.c, in.h, in.w);
        break;
    }
    return KDCL_OK;
}

/* ---- what a spec will allocate ---- */

static size_t sat_add(size_t a, size_t b) { return a > SIZE_MAX - b ? SIZE_MAX : a + b; }
static size_t sat_mul(size_t a, size_t b) { return b && a > SIZE_MAX / b ? SIZE_MAX : a * b; }

static kdcl_status footprint_list(const kdcl_layer_spec *L, size_t n, kdcl_shape3 in, int depth,
                                  size_t *values, size_t *acts)
{
    kdcl_shape3 *outs = malloc((n ? n : 1) * sizeof *outs);
    if (!outs) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    kdcl_status st = depth ? kdcl_spec_infer_branch(L, n, in, outs) : kdcl_spec_infer(L, n, in, outs);
    for (size_t i = 0; !st && i < n; i++) {
        const kdcl_layer_spec *l = &L[i];
        kdcl_shape3 x = i ? outs[i - 1] : in, y = outs[i];
        int ok;
        *acts = sat_add(*acts, shape_elems(y, &ok));
        switch (l->kind) {
        case KDCL_LAYER_LINEAR:
            *values = sat_add(*values, sat_add(sat_mul(x.c, l->out), l->bias ? l->out : 0));
            break;
        case KDCL_LAYER_CONV2D:
            *values = sat_add(*values, sat_add(sat_mul(sat_mul(x.c, l->kh * l->kw), l->out),
                                               l->bias ? l->out : 0));
            break;
        case KDCL_LAYER_BATCHNORM: /* weight, bias, running mean and variance */
            *values = sat_add(*values, sat_mul(4, x.c));
            break;
        case KDCL_LAYER_RESIDUAL:
            st = footprint_list(l->body, l->n_body, x, depth + 1, values, acts);
            if (!st && l->n_shortcut)
                st = footprint_list(l->shortcut, l->n_shortcut, x, depth + 1, values, acts);
            break;
        default: break;
        }
    }
    free(outs);
    return st;
}

kdcl_status kdcl_spec_footprint(const kdcl_model_spec *s, kdcl_shape3 in, size_t *values,
                                size_t *acts)
{
    *values = 0;
    *acts = 0;
    if (!s) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_spec_footprint: NULL spec");
    int ok;
    *acts = shape_elems(in, &ok);
    return footprint_list(s->layers, s->n, in, 0, values, acts);
}

/* ---- the compact text grammar ---- */

typedef struct {
    const char *text;
    size_t n_classes;
    size_t n_layers; /* all layers so far, nested ones included */
} parser;

static size_t pos_of(const parser *ps, const char *p) { return (size_t)(p - ps->text) + 1; }

static kdcl_status perr(const char *text, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static kdcl_status perr(const char *text, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (strlen(text) > 160)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "architecture '%.150s...': %s", text, msg);
    return kdcl_set_error(KDCL_ERR_INVALID_ARG, "architecture '%s': %s", text, msg);
}

enum { L_CONV, L_MAXPOOL, L_AVGPOOL, L_GAP, L_LINEAR, L_RELU, L_DROPOUT, L_FLATTEN, L_BN, L_RES, L_N };
static const struct {
    const char *name;
    kdcl_layer_kind kind;
    int npos;            /* positional arguments; -1: none and no parentheses */
    const char *opts[3]; /* options */
    const char *usage;
} g_layers[L_N] = {
    [L_CONV] = {"conv", KDCL_LAYER_CONV2D, 2, {"s", "p", "bias"}, "conv(OUT,K[,s=S][,p=P][,bias=0])"},
    [L_MAXPOOL] = {"maxpool", KDCL_LAYER_MAXPOOL2D, 1, {"s", "p", NULL}, "maxpool(K[,s=S][,p=P])"},
    [L_AVGPOOL] = {"avgpool", KDCL_LAYER_AVGPOOL2D, 1, {"s", "p", NULL}, "avgpool(K[,s=S][,p=P])"},
    [L_GAP] = {"gap", KDCL_LAYER_GLOBAL_AVGPOOL, -1, {NULL, NULL, NULL}, "gap"},
    [L_LINEAR] = {"linear", KDCL_LAYER_LINEAR, 1, {"bias", NULL, NULL}, "linear(OUT[,bias=0])"},
    [L_RELU] = {"relu", KDCL_LAYER_RELU, -1, {NULL, NULL, NULL}, "relu"},
    [L_DROPOUT] = {"dropout", KDCL_LAYER_DROPOUT, 1, {NULL, NULL, NULL}, "dropout(P)"},
    [L_FLATTEN] = {"flatten", KDCL_LAYER_FLATTEN, -1, {NULL, NULL, NULL}, "flatten"},
    [L_BN] = {"bn", KDCL_LAYER_BATCHNORM, 0, {"eps", "m", NULL}, "bn[(eps=E,m=M)]"},
    [L_RES] = {"res", KDCL_LAYER_RESIDUAL, 0, {NULL, NULL, NULL}, "res(BODY[;SHORTCUT])"},
};
static const char *const g_presets[] = {"lenet5", "cnn-small", "resnet20", "cnn-medium"};
#define LAYER_NAMES "conv, maxpool, avgpool, gap, linear, relu, dropout, flatten, bn, res"
#define PRESET_NAMES "lenet5, cnn-small, cnn-medium, resnet20"

typedef struct {
    const char *key; /* NULL: positional */
    size_t klen;
    const char *val;
    size_t vlen;
} arg;

/* Unsigned decimal in [lo, hi]; 0 on success. */
static int parse_uint(const char *p, size_t n, size_t lo, size_t hi, size_t *out)
{
    if (n == 0) return -1;
    size_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(p[i])) return -1;
        if (v <= hi) v = v * 10 + (size_t)(p[i] - '0');
    }
    if (v < lo || v > hi) return -2;
    *out = v;
    return 0;
}

/* "A" or "AxB" each in [lo, hi]: what names the value in messages. */
static kdcl_status parse_pair(const parser *ps, const arg *a, const char *what, size_t lo, size_t hi,
                              size_t *x, size_t *y)
{
    tokbuf t;
    const char *v = a->val;
    size_t n = a->vlen, cut = n;
    for (size_t i = 0; i < n; i++)
        if (v[i] == 'x') {
            cut = i;
            break;
        }
    int r1 = parse_uint(v, cut, lo, hi, x), r2 = 0;
    if (cut < n)
        r2 = parse_uint(v + cut + 1, n - cut - 1, lo, hi, y);
    else
        *y = *x;
    if (r1 == -1 || r2 == -1)
        return perr(ps->text, "bad %s '%s' at position %zu (expected N or NxM)", what, tok(&t, v, n),
                    pos_of(ps, v));
    if (r1 || r2)
        return perr(ps->text, "%s '%s' at position %zu out of range (%zu..%zu)", what, tok(&t, v, n),
                    pos_of(ps, v), lo, hi);
    return KDCL_OK;
}

static kdcl_status parse_out(const parser *ps, const arg *a, const char *what, size_t *out)
{
    tokbuf t;
    if ((a->vlen == 1 && a->val[0] == 'K') || (a->vlen == 7 && !memcmp(a->val, "classes", 7))) {
        if (ps->n_classes < 1 || ps->n_classes > KDCL_SPEC_MAX_SIZE)
            return perr(ps->text, "'%s' at position %zu needs the number of classes (1..%d), got %zu",
                        tok(&t, a->val, a->vlen), pos_of(ps, a->val), KDCL_SPEC_MAX_SIZE, ps->n_classes);
        *out = ps->n_classes;
        return KDCL_OK;
    }
    int r = parse_uint(a->val, a->vlen, 1, KDCL_SPEC_MAX_SIZE, out);
    if (r == -1)
        return perr(ps->text, "bad %s '%s' at position %zu (expected a number, K or classes)", what,
                    tok(&t, a->val, a->vlen), pos_of(ps, a->val));
    if (r)
        return perr(ps->text, "%s '%s' at position %zu out of range (1..%d)", what,
                    tok(&t, a->val, a->vlen), pos_of(ps, a->val), KDCL_SPEC_MAX_SIZE);
    return KDCL_OK;
}

/* A decimal number: [+-]digits[.digits][e[+-]digits] (no hex, inf or nan). */
static kdcl_status parse_real(const parser *ps, const arg *a, const char *what, double *out)
{
    tokbuf t;
    const char *v = a->val;
    size_t n = a->vlen, i = 0, digits = 0;
    int ok = n > 0 && n < 64;
    if (ok) {
        if (v[i] == '+' || v[i] == '-') i++;
        while (i < n && is_digit(v[i])) i++, digits++;
        if (i < n && v[i] == '.') {
            i++;
            while (i < n && is_digit(v[i])) i++, digits++;
        }
        ok = digits > 0;
        if (ok && i < n && (v[i] == 'e' || v[i] == 'E')) {
            i++;
            if (i < n && (v[i] == '+' || v[i] == '-')) i++;
            size_t ed = 0;
            while (i < n && is_digit(v[i])) i++, ed++;
            ok = ed > 0;
        }
        ok = ok && i == n;
    }
    if (!ok)
        return perr(ps->text, "bad %s '%s' at position %zu (expected a decimal number)", what,
                    tok(&t, v, n), pos_of(ps, v));
    char buf[64];
    memcpy(buf, v, n);
    buf[n] = '\0';
    *out = strtod(buf, NULL);
    return KDCL_OK;
}

static kdcl_status parse_list(parser *ps, const char **pp, int depth, const char *open, int shortcut,
                              lvec *out);

/* The arguments of a layer after its '(' (at *pp); *pp ends after ')'. */
static kdcl_status parse_args(parser *ps, const char **pp, const char *name, size_t nlen, const char *open,
                              arg *args, size_t *na)
{
    tokbuf t, t2;
    const char *p = *pp;
    *na = 0;
    for (;;) {
        p = skip_ws(p);
        const char *v = p;
        while (is_value_char(*p)) p++;
        size_t vlen = (size_t)(p - v);
        const char *after = skip_ws(p);
        arg a = {NULL, 0, v, vlen};
        if (*after == '=') {
            if (vlen == 0)
                return perr(ps->text, "missing option name before '=' at position %zu", pos_of(ps, after));
            a.key = v;
            a.klen = vlen;
            p = skip_ws(after + 1);
            a.val = p;
            while (is_value_char(*p)) p++;
            a.vlen = (size_t)(p - a.val);
            if (a.vlen == 0)
                return perr(ps->text, "missing value for option '%s' at position %zu, got %s",
                            tok(&t, v, vlen), pos_of(ps, p), what_at(&t2, p));
            after = skip_ws(p);
        } else if (vlen == 0) {
            if (!*v)
                return perr(ps->text, "'(' at position %zu is never closed (%s)", pos_of(ps, open),
                            tok(&t2, name, nlen));
            return perr(ps->text, "expected an argument of '%s' at position %zu, got %s",
                        tok(&t2, name, nlen), pos_of(ps, v), what_at(&t, v));
        }
        if (*na == 8)
            return perr(ps->text, "too many arguments at position %zu", pos_of(ps, a.key ? a.key : a.val));
        args[(*na)++] = a;
        p = after;
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p == ')') {
            *pp = p + 1;
            return KDCL_OK;
        }
        if (!*p)
            return perr(ps->text, "'(' at position %zu is never closed (expected ')' at the end)",
                        pos_of(ps, open));
        return perr(ps->text, "unexpected %s at position %zu in the arguments of '%s'", what_at(&t, p),
                    pos_of(ps, p), tok(&t2, name, nlen));
    }
}

/* One layer at *pp (leading whitespace allowed). */
static kdcl_status parse_item(parser *ps, const char **pp, int depth, kdcl_layer_spec *out)
{
    tokbuf t, t2;
    const char *name = skip_ws(*pp), *p = name;
    while (is_name_char(*p)) p++;
    size_t nlen = (size_t)(p - name);
    if (nlen == 0)
        return perr(ps->text, "expected a layer at position %zu, got %s", pos_of(ps, name),
                    what_at(&t, name));
    int k = -1;
    for (int i = 0; i < L_N; i++)
        if (strlen(g_layers[i].name) == nlen && !memcmp(g_layers[i].name, name, nlen)) k = i;
    if (k < 0) {
        for (size_t i = 0; i < sizeof g_presets / sizeof g_presets[0]; i++)
            if (strlen(g_presets[i]) == nlen && !memcmp(g_presets[i], name, nlen))
                return perr(ps->text, "preset '%s' at position %zu cannot be combined with other layers",
                            g_presets[i], pos_of(ps, name));
        int upper = 0;
        for (size_t i = 0; i < nlen; i++) upper |= name[i] >= 'A' && name[i] <= 'Z';
        return perr(ps->text,
                    "unknown layer '%s' at position %zu (layers: " LAYER_NAMES "; presets: " PRESET_NAMES
                    "%s)",
                    tok(&t, name, nlen), pos_of(ps, name), upper ? "; names are lowercase" : "");
    }
    if (++ps->n_layers > KDCL_SPEC_MAX_LAYERS)
        return perr(ps->text, "more than %d layers (nested ones included) at position %zu",
                    KDCL_SPEC_MAX_LAYERS, pos_of(ps, name));
    *out = kdcl_layer_spec_default(g_layers[k].kind);
    const char *q = skip_ws(p);
    if (g_layers[k].npos < 0) { /* gap, relu, flatten */
        if (*q == '(')
            return perr(ps->text, "%s takes no arguments: '(' at position %zu", g_layers[k].name,
                        pos_of(ps, q));
        *pp = p;
        return KDCL_OK;
    }
    if (*q != '(') {
        if (k == L_BN) {
            *pp = p;
            return KDCL_OK;
        }
        return perr(ps->text, "%s at position %zu needs arguments: %s", g_layers[k].name, pos_of(ps, name),
                    g_layers[k].usage);
    }
    if (k == L_RES) {
        if (depth + 1 > KDCL_SPEC_MAX_DEPTH)
            return perr(ps->text, "residual blocks nested deeper than %d at position %zu",
                        KDCL_SPEC_MAX_DEPTH, pos_of(ps, name));
        lvec body = {0}, sc = {0};
        p = q + 1;
        kdcl_status st = parse_list(ps, &p, depth + 1, q, 0, &body);
        if (!st && *p == ';') {
            p++;
            st = parse_list(ps, &p, depth + 1, q, 1, &sc);
        }
        if (st) {
            lvec_free(&body);
            lvec_free(&sc);
            return st;
        }
        /* parse_list stops at ')' here */
        out->body = body.v;
        out->n_body = body.n;
        out->shortcut = sc.v;
        out->n_shortcut = sc.n;
        *pp = p + 1;
        return KDCL_OK;
    }
    arg a[8];
    size_t na;
    p = q + 1;
    kdcl_status st = parse_args(ps, &p, name, nlen, q, a, &na);
    if (st) return st;
    *pp = p;
    /* positional arguments first, then options */
    size_t npos = 0;
    int seen_opt = 0;
    const char *optv[3] = {NULL, NULL, NULL};
    const arg *opta[3] = {NULL, NULL, NULL};
    for (size_t i = 0; i < na; i++) {
        if (!a[i].key) {
            if (seen_opt)
                return perr(ps->text, "value '%s' at position %zu after options (%s)",
                            tok(&t, a[i].val, a[i].vlen), pos_of(ps, a[i].val), g_layers[k].usage);
            if (npos == (size_t)g_layers[k].npos)
                return perr(ps->text, "too many values for %s: '%s' at position %zu (%s)", g_layers[k].name,
                            tok(&t, a[i].val, a[i].vlen), pos_of(ps, a[i].val), g_layers[k].usage);
            npos++;
            continue;
        }
        seen_opt = 1;
        int o = -1;
        for (int j = 0; j < 3 && g_layers[k].opts[j]; j++)
            if (strlen(g_layers[k].opts[j]) == a[i].klen &&
                !memcmp(g_layers[k].opts[j], a[i].key, a[i].klen))
                o = j;
        if (o < 0) {
            char takes[64] = "";
            for (int j = 0; j < 3 && g_layers[k].opts[j]; j++) {
                size_t l = strlen(takes);
                snprintf(takes + l, sizeof takes - l, "%s%s=", j ? ", " : "", g_layers[k].opts[j]);
            }
            if (!takes[0])
                return perr(ps->text, "unknown option '%s' at position %zu (%s takes no options)",
                            tok(&t, a[i].key, a[i].klen), pos_of(ps, a[i].key), g_layers[k].name);
            return perr(ps->text, "unknown option '%s' at position %zu (%s takes %s)",
                        tok(&t, a[i].key, a[i].klen), pos_of(ps, a[i].key), g_layers[k].name, takes);
        }
        if (optv[o])
            return perr(ps->text, "option '%s' given twice, again at position %zu", g_layers[k].opts[o],
                        pos_of(ps, a[i].key));
        optv[o] = a[i].key;
        opta[o] = &a[i];
    }
    if (npos < (size_t)g_layers[k].npos)
        return perr(ps->text, "%s at position %zu needs %d value%s: %s", g_layers[k].name, pos_of(ps, name),
                    g_layers[k].npos, g_layers[k].npos > 1 ? "s" : "", g_layers[k].usage);
    kdcl_layer_spec *l = out;
    switch (k) {
    case L_CONV:
    case L_MAXPOOL:
    case L_AVGPOOL: {
        int conv = k == L_CONV;
        const arg *ka = &a[conv ? 1 : 0];
        if (conv && (st = parse_out(ps, &a[0], "output channels", &l->out))) return st;
        if ((st = parse_pair(ps, ka, "kernel size", 1, KDCL_SPEC_MAX_KERNEL, &l->kh, &l->kw))) return st;
        if (opta[0] && (st = parse_pair(ps, opta[0], "stride", 1, KDCL_SPEC_MAX_STRIDE, &l->sh, &l->sw)))
            return st;
        if (opta[1] && (st = parse_pair(ps, opta[1], "padding", 0, KDCL_SPEC_MAX_PAD, &l->ph, &l->pw)))
            return st;
        if (opta[1] && conv && (l->ph >= l->kh || l->pw >= l->kw))
            return perr(ps->text, "padding '%s' at position %zu must be smaller than the kernel %zux%zu",
                        tok(&t, opta[1]->val, opta[1]->vlen), pos_of(ps, opta[1]->val), l->kh, l->kw);
        if (opta[1] && !conv && (l->ph > l->kh / 2 || l->pw > l->kw / 2))
            return perr(ps->text, "padding '%s' at position %zu must be at most half the kernel %zux%zu",
                        tok(&t, opta[1]->val, opta[1]->vlen), pos_of(ps, opta[1]->val), l->kh, l->kw);
        if (conv && opta[2]) {
            const arg *b = opta[2];
            if (b->vlen != 1 || (b->val[0] != '0' && b->val[0] != '1'))
                return perr(ps->text, "bias '%s' at position %zu must be 0 or 1", tok(&t, b->val, b->vlen),
                            pos_of(ps, b->val));
            l->bias = b->val[0] - '0';
        }
        break;
    }
    case L_LINEAR:
        if ((st = parse_out(ps, &a[0], "output size", &l->out))) return st;
        if (opta[0]) {
            const arg *b = opta[0];
            if (b->vlen != 1 || (b->val[0] != '0' && b->val[0] != '1'))
                return perr(ps->text, "bias '%s' at position %zu must be 0 or 1", tok(&t, b->val, b->vlen),
                            pos_of(ps, b->val));
            l->bias = b->val[0] - '0';
        }
        break;
    case L_DROPOUT: {
        double p_;
        if ((st = parse_real(ps, &a[0], "dropout rate", &p_))) return st;
        if (!(p_ >= 0.0 && p_ < 1.0) || !rate_ok((float)p_))
            return perr(ps->text, "dropout rate '%s' at position %zu must be in [0, 1)",
                        tok(&t, a[0].val, a[0].vlen), pos_of(ps, a[0].val));
        l->p = (float)p_;
        break;
    }
    case L_BN: {
        double v;
        if (opta[0]) {
            if ((st = parse_real(ps, opta[0], "eps", &v))) return st;
            if (!(v > 0.0 && v <= 1.0) || !((float)v > 0.0f))
                return perr(ps->text, "eps '%s' at position %zu must be in (0, 1]",
                            tok(&t, opta[0]->val, opta[0]->vlen), pos_of(ps, opta[0]->val));
            l->eps = (float)v;
        }
        if (opta[1]) {
            if ((st = parse_real(ps, opta[1], "momentum", &v))) return st;
            if (!(v >= 0.0 && v <= 1.0))
                return perr(ps->text, "momentum '%s' at position %zu must be in [0, 1]",
                            tok(&t, opta[1]->val, opta[1]->vlen), pos_of(ps, opta[1]->val));
            l->momentum = (float)v;
        }
        break;
    }
    default: return perr(ps->text, "internal: layer '%s'", tok(&t2, name, nlen));
    }
    return KDCL_OK;
}

/* Layers separated by ',' from *pp. At depth 0 the list ends at the end of
 * the text; inside res( it ends at ';' (the body only) or ')', where *pp is
 * left. */
static kdcl_status parse_list(parser *ps, const char **pp, int depth, const char *open, int shortcut,
                              lvec *out)
{
    tokbuf t;
    const char *p = *pp;
    for (;;) {
        kdcl_layer_spec l;
        kdcl_status st = parse_item(ps, &p, depth, &l);
        if (st) return st;
        if ((st = lvec_push(out, &l))) return st;
        p = skip_ws(p);
        if (*p == ',') {
            p++;
            continue;
        }
        if (depth == 0) {
            if (!*p) break;
            return perr(ps->text, "unexpected %s at position %zu (layers are separated by ',')",
                        what_at(&t, p), pos_of(ps, p));
        }
        if (*p == ')' || (*p == ';' && !shortcut)) break;
        if (!*p) return perr(ps->text, "'(' of res at position %zu is never closed", pos_of(ps, open));
        if (*p == ';')
            return perr(ps->text, "unexpected second ';' at position %zu (res(BODY;SHORTCUT))",
                        pos_of(ps, p));
        return perr(ps->text, "unexpected %s at position %zu (layers are separated by ',')", what_at(&t, p),
                    pos_of(ps, p));
    }
    *pp = p;
    return KDCL_OK;
}

static kdcl_status parse_compact(const char *text, size_t n_classes, kdcl_model_spec *out)
{
    parser ps = {text, n_classes, 0};
    lvec v = {0};
    const char *p = text;
    kdcl_status st = parse_list(&ps, &p, 0, NULL, 0, &v);
    if (st) {
        lvec_free(&v);
        return st;
    }
    out->layers = v.v;
    out->n = v.n;
    out->in_features = 0;
    return KDCL_OK;
}

/* "784-1200-10" between b and e (text is the whole string, for messages). */
static kdcl_status parse_legacy(const char *text, const char *b, const char *e, kdcl_model_spec *out)
{
    size_t sizes[KDCL_SPEC_MAX_SIZES], n = 0;
    const char *p = b;
    for (;;) {
        if (p >= e || !is_digit(*p)) {
            tokbuf t;
            return perr(text,
                        "expected a layer size at position %zu, got %s (sizes separated by '-', e.g. "
                        "784-1200-1200-10)",
                        (size_t)(p - text) + 1, p >= e ? "end of text" : what_at(&t, p));
        }
        const char *st = p;
        size_t v = 0;
        while (p < e && is_digit(*p)) {
            if (v <= KDCL_SPEC_MAX_SIZE) v = v * 10 + (size_t)(*p - '0');
            p++;
        }
        if (v > KDCL_SPEC_MAX_SIZE) {
            tokbuf t;
            return perr(text, "layer size '%s' at position %zu above %d", tok(&t, st, (size_t)(p - st)),
                        (size_t)(st - text) + 1, KDCL_SPEC_MAX_SIZE);
        }
        if (v == 0) return perr(text, "layer size 0 at position %zu", (size_t)(st - text) + 1);
        if (n == KDCL_SPEC_MAX_SIZES)
            return perr(text, "more than %d layers (size at position %zu)", KDCL_SPEC_MAX_SIZES - 1,
                        (size_t)(st - text) + 1);
        sizes[n++] = v;
        if (p == e) break;
        if (*p != '-' && *p != 'x') {
            tokbuf t;
            return perr(text, "unexpected %s at position %zu (sizes separated by '-')", what_at(&t, p),
                        (size_t)(p - text) + 1);
        }
        p++;
    }
    if (n < 2) return perr(text, "needs at least an input and an output size");
    return kdcl_model_spec_mlp(sizes, n, 0.0f, 0.0f, out);
}

static kdcl_status parse_file(const char *path, kdcl_model_spec *out)
{
    if (!*path) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "architecture '@': no file name after '@'");
    FILE *f = fopen(path, "rb");
    if (!f)
        return kdcl_set_error(KDCL_ERR_IO, "architecture file '%s': cannot open it: %s", path,
                              strerror(errno));
    char *buf = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return kdcl_set_error(KDCL_ERR_IO, "architecture file '%s': cannot read it", path);
    }
    if (n > FILE_LIMIT) {
        fclose(f);
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "architecture file '%s': larger than %ld bytes", path,
                              FILE_LIMIT);
    }
    buf = malloc((size_t)n + 1);
    if (!buf) {
        fclose(f);
        return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    }
    size_t got = fread(buf, 1, (size_t)n, f);
    int err = ferror(f);
    fclose(f);
    if (err || got != (size_t)n) {
        free(buf);
        return kdcl_set_error(KDCL_ERR_IO, "architecture file '%s': cannot read it", path);
    }
    buf[n] = '\0';
    kdcl_status st = kdcl_model_spec_from_json(buf, out);
    free(buf);
    if (st) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", kdcl_last_error());
        kdcl_set_error(st, "architecture file '%s': %s", path, msg);
    }
    return st;
}

static kdcl_status parse_preset(int which, size_t n_classes, kdcl_model_spec *out)
{
    if (n_classes < 1 || n_classes > KDCL_SPEC_MAX_SIZE)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "architecture '%s': the preset needs the number of classes "
                              "(1..%d), got %zu",
                              g_presets[which], KDCL_SPEC_MAX_SIZE, n_classes);
    char buf[2048];
    size_t o = 0;
#define ADD(...) o += (size_t)snprintf(buf + o, sizeof buf - o, __VA_ARGS__)
    switch (which) {
    case 0: /* LeCun et al. 1998, with ReLU and max pooling */
        ADD("conv(6,5,p=2),relu,maxpool(2),conv(16,5),relu,maxpool(2),flatten,"
            "linear(120),relu,linear(84),relu,linear(K)");
        break;
    case 1: /* two 3x3 conv blocks with BatchNorm for 28x28 grey images */
        ADD("conv(32,3,p=1,bias=0),bn,relu,maxpool(2),conv(64,3,p=1,bias=0),bn,relu,maxpool(2),"
            "flatten,linear(128),relu,dropout(0.3),linear(K)");
        break;
    case 3: /* cnn-small with a second 64-channel conv and 256 hidden units: the Fashion-MNIST teacher */
        ADD("conv(32,3,p=1,bias=0),bn,relu,maxpool(2),conv(64,3,p=1,bias=0),bn,relu,"
            "conv(64,3,p=1,bias=0),bn,relu,maxpool(2),flatten,linear(256),relu,dropout(0.4),linear(K)");
        break;
    case 2: /* He et al. 2016, CIFAR ResNet-20 with projection shortcuts (option B) */
        ADD("conv(16,3,p=1,bias=0),bn,relu");
        for (int stage = 0; stage < 3; stage++) {
            int c = 16 << stage;
            for (int blk = 0; blk < 3; blk++) {
                int down = stage > 0 && blk == 0;
                ADD(",res(conv(%d,3,s=%d,p=1,bias=0),bn,relu,conv(%d,3,p=1,bias=0),bn", c, down ? 2 : 1, c);
                if (down) ADD(";conv(%d,1,s=2,bias=0),bn", c);
                ADD("),relu");
            }
        }
        ADD(",gap,flatten,linear(K)");
        break;
    }
#undef ADD
    if (o >= sizeof buf) return kdcl_set_error(KDCL_ERR_INTERNAL, "preset text too long");
    return parse_compact(buf, n_classes, out);
}

kdcl_status kdcl_model_spec_parse(const char *text, size_t n_classes, kdcl_model_spec *out)
{
    if (!out) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_model_spec_parse: NULL output");
    memset(out, 0, sizeof *out);
    const char *b = text ? skip_ws(text) : "";
    const char *e = b + strlen(b);
    while (e > b && is_space(e[-1])) e--;
    if (b == e)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "empty architecture (expected e.g. 784-1200-10, a layer list such as "
                              "conv(32,5,p=2),relu,maxpool(2),flatten,linear(K), a preset (" PRESET_NAMES
                              ") or @file.json)");
    if (*b == '@') {
        size_t n = (size_t)(e - b) - 1;
        char *path = malloc(n + 1);
        if (!path) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        memcpy(path, b + 1, n);
        path[n] = '\0';
        kdcl_status st = parse_file(path, out);
        free(path);
        return st;
    }
    if (is_digit(*b)) return parse_legacy(text, b, e, out);
    for (int i = 0; i < (int)(sizeof g_presets / sizeof g_presets[0]); i++)
        if (strlen(g_presets[i]) == (size_t)(e - b) && !memcmp(g_presets[i], b, (size_t)(e - b)))
            return parse_preset(i, n_classes, out);
    return parse_compact(text, n_classes, out);
}

/* ---- kdcl.model JSON: reading ---- */

typedef struct {
    const char *prefix; /* "" or "layer 2 (Residual) body " */
    size_t idx;         /* 0-based */
    const char *type;
} jctx;

static kdcl_status jerr(const jctx *c, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static kdcl_status jerr(const jctx *c, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!c->type)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl.model: %slayer %zu: %s", c->prefix, c->idx + 1,
                              msg);
    return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl.model: %slayer %zu (%.64s): %s", c->prefix,
                          c->idx + 1, c->type, msg);
}

/* Every key of obj must be one of keys[] (NULL-terminated), at most once. */
static kdcl_status j_keys(const jctx *c, const cJSON *obj, const char *what, const char *const *keys)
{
    unsigned seen = 0;
    for (const cJSON *it = obj->child; it; it = it->next) {
        int k = -1;
        for (int i = 0; keys[i]; i++)
            if (it->string && !strcmp(it->string, keys[i])) k = i;
        if (k < 0) {
            char list[256] = "";
            for (int i = 0; keys[i]; i++) {
                size_t l = strlen(list);
                snprintf(list + l, sizeof list - l, "%s%s", i ? ", " : "", keys[i]);
            }
            return jerr(c, "unknown %s '%.64s' (%s)", what, it->string ? it->string : "",
                        list[0] ? list : "none");
        }
        if (seen & (1u << k)) return jerr(c, "%s '%s' given twice", what, keys[k]);
        seen |= 1u << k;
    }
    return KDCL_OK;
}

static int j_int_value(const cJSON *v, double lo, double hi, size_t *out)
{
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d)) return -1;
    if (d < lo || d > hi) return -2;
    *out = (size_t)d;
    return 0;
}

/* An integer argument in [lo, hi]; *present says whether it was given. */
static kdcl_status j_uint(const jctx *c, const cJSON *args, const char *key, size_t lo, size_t hi,
                          int required, size_t *out, int *present)
{
    const cJSON *v = args ? cJSON_GetObjectItemCaseSensitive(args, key) : NULL;
    if (present) *present = v != NULL;
    if (!v) return required ? jerr(c, "missing argument '%s'", key) : KDCL_OK;
    int r = j_int_value(v, (double)lo, (double)hi, out);
    if (r == -1) return jerr(c, "'%s' must be an integer", key);
    if (r) return jerr(c, "'%s' %g out of range (%zu..%zu)", key, v->valuedouble, lo, hi);
    return KDCL_OK;
}

/* An int or [a, b] argument. */
static kdcl_status j_pair(const jctx *c, const cJSON *args, const char *key, size_t lo, size_t hi,
                          int required, size_t *a, size_t *b, int *present)
{
    const cJSON *v = args ? cJSON_GetObjectItemCaseSensitive(args, key) : NULL;
    if (present) *present = v != NULL;
    if (!v) return required ? jerr(c, "missing argument '%s'", key) : KDCL_OK;
    int r1, r2;
    if (cJSON_IsArray(v)) {
        if (cJSON_GetArraySize(v) != 2)
            return jerr(c, "'%s' must be an integer or a list of 2 integers", key);
        r1 = j_int_value(v->child, (double)lo, (double)hi, a);
        r2 = j_int_value(v->child->next, (double)lo, (double)hi, b);
    } else {
        r1 = r2 = j_int_value(v, (double)lo, (double)hi, a);
        *b = *a;
    }
    if (r1 == -1 || r2 == -1) return jerr(c, "'%s' must be an integer or a list of 2 integers", key);
    if (r1 || r2) return jerr(c, "'%s' out of range (%zu..%zu)", key, lo, hi);
    return KDCL_OK;
}

static kdcl_status j_bool(const jctx *c, const cJSON *args, const char *key, int *out)
{
    const cJSON *v = args ? cJSON_GetObjectItemCaseSensitive(args, key) : NULL;
    if (!v) return KDCL_OK;
    if (!cJSON_IsBool(v)) return jerr(c, "'%s' must be true or false", key);
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return KDCL_OK;
}

/* An argument kdcl only supports at its PyTorch default: an integer (or pair) equal to want. */
static kdcl_status j_fixed_int(const jctx *c, const cJSON *args, const char *key, size_t want, int pair_ok)
{
    const cJSON *v = args ? cJSON_GetObjectItemCaseSensitive(args, key) : NULL;
    if (!v) return KDCL_OK;
    size_t a = 0, b = 0;
    int ok;
    if (pair_ok && cJSON_IsArray(v))
        ok = cJSON_GetArraySize(v) == 2 && !j_int_value(v->child, 0, 1e9, &a) &&
             !j_int_value(v->child->next, 0, 1e9, &b) && a == want && b == want;
    else
        ok = !j_int_value(v, 0, 1e9, &a) && a == want;
    if (!ok) return jerr(c, "only %s=%zu is supported", key, want);
    return KDCL_OK;
}
static kdcl_status j_fixed_bool(const jctx *c, const cJSON *args, const char *key, int want)
{
    const cJSON *v = args ? cJSON_GetObjectItemCaseSensitive(args, key) : NULL;
    if (!v) return KDCL_OK;
    if (!cJSON_IsBool(v) || (cJSON_IsTrue(v) ? 1 : 0) != want)
        return jerr(c, "only %s=%s is supported", key, want ? "true" : "false");
    return KDCL_OK;
}

static kdcl_status j_number(const jctx *c, const cJSON *args, const char *key, double *out)
{
    const cJSON *v = args ? cJSON_GetObjectItemCaseSensitive(args, key) : NULL;
    if (!v) return KDCL_OK;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return jerr(c, "'%s' must be a number", key);
    *out = v->valuedouble;
    return KDCL_OK;
}

static const char *const g_json_types[] = {
    "Linear",  "Conv2d",  "MaxPool2d",   "AvgPool2d",   "AdaptiveAvgPool2d", "ReLU",
    "Dropout", "Flatten", "BatchNorm1d", "BatchNorm2d", "Residual"};
static const kdcl_layer_kind g_json_kinds[] = {
    KDCL_LAYER_LINEAR,         KDCL_LAYER_CONV2D,    KDCL_LAYER_MAXPOOL2D, KDCL_LAYER_AVGPOOL2D,
    KDCL_LAYER_GLOBAL_AVGPOOL, KDCL_LAYER_RELU,      KDCL_LAYER_DROPOUT,   KDCL_LAYER_FLATTEN,
    KDCL_LAYER_BATCHNORM,      KDCL_LAYER_BATCHNORM, KDCL_LAYER_RESIDUAL};
#define N_JSON_TYPES (sizeof g_json_types / sizeof g_json_types[0])

static kdcl_status json_list(const cJSON *arr, const char *prefix, int depth, size_t *count, lvec *out,
                             size_t *first_in);

/* One entry of a kdcl.model list. first_in receives a Linear's in_features (0 if absent). */
static kdcl_status json_layer(const cJSON *it, jctx *c, int depth, size_t *count, kdcl_layer_spec *l,
                              size_t *in_features)
{
    *in_features = 0;
    if (!cJSON_IsObject(it)) return jerr(c, "not an object {\"type\": ..., \"args\": {...}}");
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(it, "type");
    if (!cJSON_IsString(ty) || !ty->valuestring) return jerr(c, "missing \"type\" string");
    c->type = ty->valuestring;
    size_t t = N_JSON_TYPES;
    for (size_t i = 0; i < N_JSON_TYPES; i++)
        if (!strcmp(ty->valuestring, g_json_types[i])) t = i;
    if (t == N_JSON_TYPES)
        return jerr(
            c, "unknown layer type (known: Linear, Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, ReLU, "
               "Dropout, Flatten, BatchNorm1d, BatchNorm2d, Residual)");
    if (++*count > KDCL_SPEC_MAX_LAYERS)
        return jerr(c, "more than %d layers (nested ones included)", KDCL_SPEC_MAX_LAYERS);
    kdcl_layer_kind kind = g_json_kinds[t];
    *l = kdcl_layer_spec_default(kind);
    kdcl_status st;
    if (kind == KDCL_LAYER_RESIDUAL) {
        static const char *const keys[] = {"type", "body", "shortcut", NULL};
        if ((st = j_keys(c, it, "key", keys))) return st;
        if (depth + 1 > KDCL_SPEC_MAX_DEPTH)
            return jerr(c, "residual blocks nested deeper than %d", KDCL_SPEC_MAX_DEPTH);
        const cJSON *body = cJSON_GetObjectItemCaseSensitive(it, "body");
        const cJSON *sc = cJSON_GetObjectItemCaseSensitive(it, "shortcut");
        if (!cJSON_IsArray(body) || cJSON_GetArraySize(body) == 0)
            return jerr(c, "\"body\" must be a non-empty list");
        if (sc && !cJSON_IsNull(sc) && !cJSON_IsArray(sc))
            return jerr(c, "\"shortcut\" must be a list or null");
        char pre[1024];
        lvec b = {0}, s = {0};
        size_t dummy;
        snprintf(pre, sizeof pre, "%slayer %zu (Residual) body ", c->prefix, c->idx + 1);
        st = json_list(body, pre, depth + 1, count, &b, &dummy);
        if (!st && cJSON_IsArray(sc)) {
            snprintf(pre, sizeof pre, "%slayer %zu (Residual) shortcut ", c->prefix, c->idx + 1);
            st = json_list(sc, pre, depth + 1, count, &s, &dummy);
        }
        if (st) {
            lvec_free(&b);
            lvec_free(&s);
            return st;
        }
        l->body = b.v;
        l->n_body = b.n;
        l->shortcut = s.v;
        l->n_shortcut = s.n;
        return KDCL_OK;
    }
    static const char *const top_keys[] = {"type", "args", NULL};
    if ((st = j_keys(c, it, "key", top_keys))) return st;
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(it, "args");
    if (args && !cJSON_IsObject(args)) return jerr(c, "\"args\" must be an object");
    int needs_args = kind == KDCL_LAYER_LINEAR || kind == KDCL_LAYER_CONV2D ||
                     kind == KDCL_LAYER_MAXPOOL2D || kind == KDCL_LAYER_AVGPOOL2D ||
                     kind == KDCL_LAYER_GLOBAL_AVGPOOL;
    if (!args && needs_args) return jerr(c, "missing \"args\"");
    const size_t MAXF = (size_t)KDCL_SPEC_MAX_SIZE;
    switch (kind) {
    case KDCL_LAYER_LINEAR: {
        static const char *const keys[] = {"in_features", "out_features", "bias", NULL};
        if ((st = j_keys(c, args, "argument", keys))) return st;
        if ((st = j_uint(c, args, "in_features", 1, ELEM_LIMIT - 1, 0, in_features, NULL))) return st;
        if ((st = j_uint(c, args, "out_features", 1, MAXF, 1, &l->out, NULL))) return st;
        if ((st = j_bool(c, args, "bias", &l->bias))) return st;
        break;
    }
    case KDCL_LAYER_CONV2D: {
        static const char *const keys[] = {
            "in_channels", "out_channels", "kernel_size", "stride",       "padding",
            "bias",        "dilation",     "groups",      "padding_mode", NULL};
        size_t dummy;
        if ((st = j_keys(c, args, "argument", keys))) return st;
        if ((st = j_uint(c, args, "in_channels", 1, ELEM_LIMIT - 1, 0, &dummy, NULL))) return st;
        if ((st = j_uint(c, args, "out_channels", 1, MAXF, 1, &l->out, NULL))) return st;
        if ((st = j_pair(c, args, "kernel_size", 1, KDCL_SPEC_MAX_KERNEL, 1, &l->kh, &l->kw, NULL)))
            return st;
        if ((st = j_pair(c, args, "stride", 1, KDCL_SPEC_MAX_STRIDE, 0, &l->sh, &l->sw, NULL))) return st;
        const cJSON *pv = cJSON_GetObjectItemCaseSensitive(args, "padding");
        if (cJSON_IsString(pv))
            return jerr(c, "'padding' must be an integer or a list of 2 integers (not a string)");
        if ((st = j_pair(c, args, "padding", 0, KDCL_SPEC_MAX_PAD, 0, &l->ph, &l->pw, NULL))) return st;
        if (l->ph >= l->kh || l->pw >= l->kw) return jerr(c, "padding must be smaller than the kernel");
        if ((st = j_bool(c, args, "bias", &l->bias))) return st;
        if ((st = j_fixed_int(c, args, "dilation", 1, 1)) || (st = j_fixed_int(c, args, "groups", 1, 0)))
            return st;
        const cJSON *pm = cJSON_GetObjectItemCaseSensitive(args, "padding_mode");
        if (pm && (!cJSON_IsString(pm) || strcmp(pm->valuestring, "zeros")))
            return jerr(c, "only padding_mode=\"zeros\" is supported");
        break;
    }
    case KDCL_LAYER_MAXPOOL2D:
    case KDCL_LAYER_AVGPOOL2D: {
        static const char *const mkeys[] = {"kernel_size",    "stride",    "padding", "dilation",
                                            "return_indices", "ceil_mode", NULL};
        static const char *const akeys[] = {"kernel_size",       "stride",           "padding", "ceil_mode",
                                            "count_include_pad", "divisor_override", NULL};
        int mx = kind == KDCL_LAYER_MAXPOOL2D;
        if ((st = j_keys(c, args, "argument", mx ? mkeys : akeys))) return st;
        if ((st = j_pair(c, args, "kernel_size", 1, KDCL_SPEC_MAX_KERNEL, 1, &l->kh, &l->kw, NULL)))
            return st;
        const cJSON *sv = cJSON_GetObjectItemCaseSensitive(args, "stride");
        if (sv && !cJSON_IsNull(sv) &&
            (st = j_pair(c, args, "stride", 1, KDCL_SPEC_MAX_STRIDE, 0, &l->sh, &l->sw, NULL)))
            return st;
        if ((st = j_pair(c, args, "padding", 0, KDCL_SPEC_MAX_PAD, 0, &l->ph, &l->pw, NULL))) return st;
        if (l->ph > l->kh / 2 || l->pw > l->kw / 2)
            return jerr(c, "padding must be at most half the kernel");
        if ((st = j_fixed_bool(c, args, "ceil_mode", 0))) return st;
        if (mx) {
            if ((st = j_fixed_int(c, args, "dilation", 1, 1)) ||
                (st = j_fixed_bool(c, args, "return_indices", 0)))
                return st;
        } else {
            if ((st = j_fixed_bool(c, args, "count_include_pad", 1))) return st;
            const cJSON *dv = cJSON_GetObjectItemCaseSensitive(args, "divisor_override");
            if (dv && !cJSON_IsNull(dv)) return jerr(c, "only divisor_override=null is supported");
        }
        break;
    }
    case KDCL_LAYER_GLOBAL_AVGPOOL: {
        static const char *const keys[] = {"output_size", NULL};
        if ((st = j_keys(c, args, "argument", keys))) return st;
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(args, "output_size");
        if (!v) return jerr(c, "missing argument 'output_size'");
        size_t a = 0, b = 0;
        int ok = cJSON_IsArray(v) ? cJSON_GetArraySize(v) == 2 && !j_int_value(v->child, 1, 1, &a) &&
                                        !j_int_value(v->child->next, 1, 1, &b)
                                  : !j_int_value(v, 1, 1, &a);
        if (!ok) return jerr(c, "only output_size 1 or [1, 1] is supported");
        break;
    }
    case KDCL_LAYER_RELU: {
        static const char *const keys[] = {"inplace", NULL};
        int dummy = 0;
        if (args && ((st = j_keys(c, args, "argument", keys)) || (st = j_bool(c, args, "inplace", &dummy))))
            return st;
        break;
    }
    case KDCL_LAYER_DROPOUT: {
        static const char *const keys[] = {"p", "inplace", NULL};
        int dummy = 0;
        double p = 0.5; /* PyTorch's default */
        if (args && ((st = j_keys(c, args, "argument", keys)) ||
                     (st = j_bool(c, args, "inplace", &dummy)) || (st = j_number(c, args, "p", &p))))
            return st;
        if (!(p >= 0.0 && p < 1.0) || !rate_ok((float)p)) return jerr(c, "p %g must be in [0, 1)", p);
        l->p = (float)p;
        break;
    }
    case KDCL_LAYER_FLATTEN: {
        static const char *const keys[] = {"start_dim", "end_dim", NULL};
        if (args) {
            if ((st = j_keys(c, args, "argument", keys)) || (st = j_fixed_int(c, args, "start_dim", 1, 0)))
                return st;
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(args, "end_dim");
            if (v && (!cJSON_IsNumber(v) || v->valuedouble != -1.0))
                return jerr(c, "only end_dim=-1 is supported");
        }
        break;
    }
    case KDCL_LAYER_BATCHNORM: {
        static const char *const keys[] = {"num_features",        "eps", "momentum", "affine",
                                           "track_running_stats", NULL};
        size_t dummy;
        double eps = l->eps, m = l->momentum;
        if (args) {
            if ((st = j_keys(c, args, "argument", keys))) return st;
            if ((st = j_uint(c, args, "num_features", 1, ELEM_LIMIT - 1, 0, &dummy, NULL))) return st;
            const cJSON *mv = cJSON_GetObjectItemCaseSensitive(args, "momentum");
            if (cJSON_IsNull(mv)) return jerr(c, "momentum=null (a cumulative average) is not supported");
            if ((st = j_number(c, args, "eps", &eps)) || (st = j_number(c, args, "momentum", &m)))
                return st;
            if ((st = j_fixed_bool(c, args, "affine", 1)) ||
                (st = j_fixed_bool(c, args, "track_running_stats", 1)))
                return st;
        }
        if (!(eps > 0.0 && eps <= 1.0) || !((float)eps > 0.0f))
            return jerr(c, "eps %g must be in (0, 1]", eps);
        if (!(m >= 0.0 && m <= 1.0)) return jerr(c, "momentum %g must be in [0, 1]", m);
        l->eps = (float)eps;
        l->momentum = (float)m;
        break;
    }
    default: return jerr(c, "internal: unhandled type");
    }
    return KDCL_OK;
}

static kdcl_status json_list(const cJSON *arr, const char *prefix, int depth, size_t *count, lvec *out,
                             size_t *first_in)
{
    *first_in = 0;
    int first = 1;
    size_t i = 0;
    for (const cJSON *it = arr->child; it; it = it->next, i++) {
        jctx c = {prefix, i, NULL};
        kdcl_layer_spec l;
        size_t inf;
        kdcl_status st = json_layer(it, &c, depth, count, &l, &inf);
        if (st) return st;
        if (l.kind == KDCL_LAYER_LINEAR && first) {
            first = 0;
            *first_in = inf;
        }
        if ((st = lvec_push(out, &l))) return st;
    }
    return KDCL_OK;
}

static kdcl_status parse_json_text(const char *json, cJSON **root)
{
    const char *end = NULL;
    *root = cJSON_ParseWithOpts(json, &end, 1);
    if (!*root) {
        size_t pos = end && end >= json ? (size_t)(end - json) + 1 : 0;
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl.model: not valid JSON (at character %zu)", pos);
    }
    if (!cJSON_IsArray(*root)) {
        cJSON_Delete(*root);
        *root = NULL;
        return kdcl_set_error(
            KDCL_ERR_INVALID_ARG,
            "kdcl.model: expected a list of layers [{\"type\": ..., \"args\": {...}}, ...]");
    }
    return KDCL_OK;
}

kdcl_status kdcl_model_spec_from_json(const char *json, kdcl_model_spec *out)
{
    if (!out) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_model_spec_from_json: NULL output");
    memset(out, 0, sizeof *out);
    if (!json) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl.model: no JSON");
    cJSON *root;
    kdcl_status st = parse_json_text(json, &root);
    if (st) return st;
    if (cJSON_GetArraySize(root) == 0) {
        cJSON_Delete(root);
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl.model: an empty list of layers");
    }
    lvec v = {0};
    size_t count = 0, first_in = 0;
    st = json_list(root, "", 0, &count, &v, &first_in);
    cJSON_Delete(root);
    if (st) {
        lvec_free(&v);
        return st;
    }
    out->layers = v.v;
    out->n = v.n;
    /* An MLP in the "A-B-...-K" form (Flatten first, then only Linear, ReLU
     * and Dropout) keeps its input size, as kdcl_model_spec_mlp sets it. */
    int mlp = v.n > 1 && v.v[0].kind == KDCL_LAYER_FLATTEN;
    for (size_t i = 1; mlp && i < v.n; i++)
        mlp = v.v[i].kind == KDCL_LAYER_LINEAR || v.v[i].kind == KDCL_LAYER_RELU ||
              v.v[i].kind == KDCL_LAYER_DROPOUT;
    if (mlp && first_in <= KDCL_SPEC_MAX_SIZE) out->in_features = first_in;
    return KDCL_OK;
}

/* ---- kdcl.model JSON: writing and checking input sizes ---- */

/* The shortest decimal that reads back as f (0.3f -> 0.3, not 0.30000001192092896). */
static double short_float(float f)
{
    char buf[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        if ((float)strtod(buf, NULL) == f) break;
    }
    return strtod(buf, NULL);
}

static cJSON *pair_json(size_t a, size_t b)
{
    cJSON *p = cJSON_CreateArray();
    if (!p) return NULL;
    cJSON *x = cJSON_CreateNumber((double)a), *y = cJSON_CreateNumber((double)b);
    if (!x || !y || !cJSON_AddItemToArray(p, x) || !cJSON_AddItemToArray(p, y)) {
        cJSON_Delete(p);
        return NULL;
    }
    return p;
}

static int add_num(cJSON *o, const char *k, double v) { return cJSON_AddNumberToObject(o, k, v) != NULL; }
static int add_item(cJSON *o, const char *k, cJSON *v)
{
    if (!v) return 0;
    if (!cJSON_AddItemToObject(o, k, v)) {
        cJSON_Delete(v);
        return 0;
    }
    return 1;
}

static cJSON *to_json_list(const kdcl_layer_spec *L, size_t n, kdcl_shape3 in, int depth);

/* The JSON of one layer with input shape `in`; NULL on failure (OOM). */
static cJSON *to_json_layer(const kdcl_layer_spec *l, kdcl_shape3 in, int depth)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    if (!cJSON_AddStringToObject(o, "type", kind_name(l->kind, in.flat))) goto fail;
    if (l->kind == KDCL_LAYER_RESIDUAL) {
        if (!add_item(o, "body", to_json_list(l->body, l->n_body, in, depth + 1))) goto fail;
        if (l->n_shortcut) {
            if (!add_item(o, "shortcut", to_json_list(l->shortcut, l->n_shortcut, in, depth + 1)))
                goto fail;
        } else if (!cJSON_AddNullToObject(o, "shortcut"))
            goto fail;
        return o;
    }
    cJSON *a = cJSON_AddObjectToObject(o, "args");
    if (!a) goto fail;
    int ok = 1;
    switch (l->kind) {
    case KDCL_LAYER_LINEAR:
        ok = add_num(a, "in_features", (double)in.c) && add_num(a, "out_features", (double)l->out) &&
             cJSON_AddBoolToObject(a, "bias", l->bias != 0);
        break;
    case KDCL_LAYER_CONV2D:
        ok = add_num(a, "in_channels", (double)in.c) && add_num(a, "out_channels", (double)l->out) &&
             add_item(a, "kernel_size", pair_json(l->kh, l->kw)) &&
             add_item(a, "stride", pair_json(l->sh, l->sw)) &&
             add_item(a, "padding", pair_json(l->ph, l->pw)) &&
             cJSON_AddBoolToObject(a, "bias", l->bias != 0);
        break;
    case KDCL_LAYER_MAXPOOL2D:
    case KDCL_LAYER_AVGPOOL2D:
        ok = add_item(a, "kernel_size", pair_json(l->kh, l->kw)) &&
             (l->sh == 0 && l->sw == 0 ? cJSON_AddNullToObject(a, "stride") != NULL
                                       : add_item(a, "stride", pair_json(l->sh, l->sw))) &&
             add_item(a, "padding", pair_json(l->ph, l->pw));
        if (ok && l->kind == KDCL_LAYER_AVGPOOL2D)
            ok = cJSON_AddTrueToObject(a, "count_include_pad") != NULL;
        break;
    case KDCL_LAYER_GLOBAL_AVGPOOL: ok = add_num(a, "output_size", 1); break;
    case KDCL_LAYER_DROPOUT: ok = add_num(a, "p", short_float(l->p)); break;
    case KDCL_LAYER_BATCHNORM:
        ok = add_num(a, "num_features", (double)in.c) && add_num(a, "eps", short_float(l->eps)) &&
             add_num(a, "momentum", short_float(l->momentum));
        break;
    default: break;
    }
    if (ok) return o;
fail:
    cJSON_Delete(o);
    return NULL;
}

static cJSON *to_json_list(const kdcl_layer_spec *L, size_t n, kdcl_shape3 in, int depth)
{
    kdcl_shape3 *outs = malloc((n ? n : 1) * sizeof *outs);
    cJSON *arr = cJSON_CreateArray();
    size_t count = 0;
    if (!outs || !arr || infer_list(L, n, in, outs, "", depth, &count)) goto fail;
    for (size_t i = 0; i < n; i++) {
        cJSON *x = to_json_layer(&L[i], i ? outs[i - 1] : in, depth);
        if (!x) goto fail;
        if (!cJSON_AddItemToArray(arr, x)) {
            cJSON_Delete(x);
            goto fail;
        }
    }
    free(outs);
    return arr;
fail:
    free(outs);
    cJSON_Delete(arr);
    return NULL;
}

char *kdcl_spec_to_json(const kdcl_model_spec *s, kdcl_shape3 in)
{
    if (!s || s->n == 0) {
        kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_spec_to_json: an empty spec");
        return NULL;
    }
    kdcl_shape3 *outs = malloc(s->n * sizeof *outs);
    if (!outs) {
        kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        return NULL;
    }
    kdcl_status st = kdcl_spec_infer_model(s, in, outs);
    free(outs);
    if (st) return NULL;
    cJSON *arr = to_json_list(s->layers, s->n, in, 0);
    char *txt = arr ? cJSON_PrintUnformatted(arr) : NULL;
    cJSON_Delete(arr);
    char *res = txt ? malloc(strlen(txt) + 1) : NULL;
    if (res) strcpy(res, txt);
    if (txt) cJSON_free(txt);
    if (!res) kdcl_set_error(KDCL_ERR_OOM, "out of host memory writing the kdcl.model JSON");
    return res;
}

static kdcl_status check_list(const cJSON *arr, const kdcl_layer_spec *L, size_t n, kdcl_shape3 in,
                              const char *prefix, int depth)
{
    size_t count = 0;
    if (!cJSON_IsArray(arr))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl.model: %sno list of layers", prefix);
    if ((size_t)cJSON_GetArraySize(arr) != n)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl.model: %s%d layers where the spec has %zu",
                              prefix, cJSON_GetArraySize(arr), n);
    kdcl_shape3 *outs = malloc((n ? n : 1) * sizeof *outs);
    if (!outs) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    kdcl_status st = infer_list(L, n, in, outs, prefix, depth, &count);
    const cJSON *it = arr->child;
    for (size_t i = 0; !st && i < n; i++, it = it->next) {
        const kdcl_layer_spec *l = &L[i];
        kdcl_shape3 x = i ? outs[i - 1] : in;
        const char *want = kind_name(l->kind, x.flat);
        const cJSON *ty = cJSON_IsObject(it) ? cJSON_GetObjectItemCaseSensitive(it, "type") : NULL;
        char d[96];
        layer_desc(l, d, sizeof d);
        if (!cJSON_IsString(ty) || strcmp(ty->valuestring, want)) {
            if (cJSON_IsString(ty) && l->kind == KDCL_LAYER_BATCHNORM &&
                !strncmp(ty->valuestring, "BatchNorm", 9))
                st = kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                    "kdcl.model: %slayer %zu (%.64s): its input is %s, so it must be %s",
                                    prefix, i + 1, ty->valuestring, x.flat ? "flat" : "[C, H, W]", want);
            else
                st = kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                    "kdcl.model: %slayer %zu: the JSON has %.64s where the spec has %s",
                                    prefix, i + 1, cJSON_IsString(ty) ? ty->valuestring : "no type", d);
            break;
        }
        if (l->kind == KDCL_LAYER_RESIDUAL) {
            char pre[1024];
            snprintf(pre, sizeof pre, "%slayer %zu (Residual) body ", prefix, i + 1);
            st = check_list(cJSON_GetObjectItemCaseSensitive(it, "body"), l->body, l->n_body, x, pre,
                            depth + 1);
            const cJSON *sc = cJSON_GetObjectItemCaseSensitive(it, "shortcut");
            snprintf(pre, sizeof pre, "%slayer %zu (Residual) shortcut ", prefix, i + 1);
            if (!st && cJSON_IsArray(sc))
                st = check_list(sc, l->shortcut, l->n_shortcut, x, pre, depth + 1);
            else if (!st && l->n_shortcut)
                st = kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl.model: %sno layers where the spec has %zu",
                                    pre, l->n_shortcut);
            continue;
        }
        const char *key = l->kind == KDCL_LAYER_LINEAR      ? "in_features"
                          : l->kind == KDCL_LAYER_CONV2D    ? "in_channels"
                          : l->kind == KDCL_LAYER_BATCHNORM ? "num_features"
                                                            : NULL;
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(it, "args");
        const cJSON *v = key && cJSON_IsObject(args) ? cJSON_GetObjectItemCaseSensitive(args, key) : NULL;
        if (v && (!cJSON_IsNumber(v) || v->valuedouble != (double)x.c))
            st = kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                "kdcl.model: %slayer %zu (%s): %s %g but its input has %zu %s", prefix,
                                i + 1, d, key, cJSON_IsNumber(v) ? v->valuedouble : -1.0, x.c,
                                l->kind == KDCL_LAYER_CONV2D ? "channels" : "features");
    }
    free(outs);
    return st;
}

kdcl_status kdcl_spec_check_json_shapes(const char *json, const kdcl_model_spec *s, kdcl_shape3 in)
{
    if (!json || !s)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_spec_check_json_shapes: NULL argument");
    kdcl_shape3 *outs = malloc((s->n ? s->n : 1) * sizeof *outs);
    if (!outs) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    kdcl_status st = kdcl_spec_infer_model(s, in, outs);
    free(outs);
    if (st) return st;
    cJSON *root;
    if ((st = parse_json_text(json, &root))) return st;
    st = check_list(root, s->layers, s->n, in, "", 0);
    cJSON_Delete(root);
    return st;
}
