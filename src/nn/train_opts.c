/* Training options by name (the command line's flags and the Python
 * package set them through kdcl_train_opts_set), and on the heap. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdcl/parse.h"
#include "kdcl/train.h"

kdcl_train_opts *kdcl_train_opts_create(void)
{
    kdcl_train_opts *o = malloc(sizeof *o);
    if (o) kdcl_train_opts_default(o);
    return o;
}

void kdcl_train_opts_destroy(kdcl_train_opts *o) { free(o); }

void kdcl_train_opts_set_val(kdcl_train_opts *o, const kdcl_dataset *val) { o->val = val; }

void kdcl_train_opts_set_on_epoch(kdcl_train_opts *o,
                                  int (*on_epoch)(void *user, const struct kdcl_epoch_stats *st),
                                  void *user)
{
    o->on_epoch = on_epoch;
    o->on_epoch_user = user;
}

/* Strict numbers: the whole text, digits only for integers (no sign, no
 * spaces), finite doubles. */
int kdcl_parse_u64(const char *s, uint64_t *out)
{
    if (!s || !isdigit((unsigned char)*s)) return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

int kdcl_parse_size(const char *s, size_t *out)
{
    uint64_t v;
    if (kdcl_parse_u64(s, &v) || v > SIZE_MAX) return -1;
    *out = (size_t)v;
    return 0;
}

int kdcl_parse_double(const char *s, double *out)
{
    if (!s || !*s || isspace((unsigned char)*s)) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

/* Up to 3 comma-separated numbers; how many, or -1. */
int kdcl_parse_list(const char *s, int max, double *d)
{
    char buf[256];
    if (!s || max < 0 || max > 8 || strlen(s) >= sizeof buf) return -1;
    snprintf(buf, sizeof buf, "%s", s);
    int n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n >= max || kdcl_parse_double(tok, &d[n])) return -1;
        n++;
    }
    return n;
}

#define BAD(...) kdcl_set_error(KDCL_ERR_INVALID_ARG, __VA_ARGS__)

kdcl_status kdcl_train_opts_set(kdcl_train_opts *o, const char *name, const char *value)
{
    if (!o || !name) return BAD("training option: no options or no name");
    char key[32];
    size_t n = strlen(name);
    if (n == 0 || n >= sizeof key) return BAD("unknown training option '%.64s'", name);
    for (size_t i = 0; i <= n; i++) key[i] = name[i] == '_' ? '-' : name[i];
    const char *v = value ? value : "";
    double d, l[3];
    size_t z;
    uint64_t u;
    if (!strcmp(key, "epochs")) {
        if (kdcl_parse_size(v, &z) || z == 0 || z > 1000000)
            return BAD("epochs needs an integer in 1..1000000, got '%s'", v);
        o->epochs = z;
    } else if (!strcmp(key, "batch")) {
        if (kdcl_parse_size(v, &z) || z == 0)
            return BAD("batch needs a positive integer, got '%s'", v);
        o->batch = z;
    } else if (!strcmp(key, "lr")) {
        if (kdcl_parse_double(v, &d) || d <= 0)
            return BAD("lr needs a positive number, got '%s'", v);
        o->lr = (float)d;
    } else if (!strcmp(key, "lr-decay")) {
        if (kdcl_parse_double(v, &d) || d <= 0 || d > 1)
            return BAD("lr-decay needs a number in (0, 1], got '%s'", v);
        o->lr_decay = (float)d;
    } else if (!strcmp(key, "momentum")) {
        int k = kdcl_parse_list(v, 3, l);
        if (k < 1 || l[0] < 0 || l[0] >= 1 || (k >= 2 && (l[1] < 0 || l[1] >= 1)) ||
            (k == 3 && (l[2] < 0 || l[2] > 1000000 || l[2] != floor(l[2]))))
            return BAD("momentum needs A[,B[,EPOCHS]] with A, B in [0, 1) and EPOCHS in "
                       "0..1000000, got '%s'",
                       v);
        o->momentum0 = (float)l[0];
        o->momentum1 = k >= 2 ? (float)l[1] : (float)l[0];
        o->momentum_epochs = k == 3 ? (size_t)l[2] : (k == 2 ? o->momentum_epochs : 0);
    } else if (!strcmp(key, "weight-decay")) {
        if (kdcl_parse_double(v, &d) || d < 0 || d > 1)
            return BAD("weight-decay needs a number in [0, 1], got '%s'", v);
        o->weight_decay = (float)d;
    } else if (!strcmp(key, "max-norm")) {
        if (kdcl_parse_double(v, &d) || d <= 0)
            return BAD("max-norm needs a positive number, got '%s'", v);
        o->max_norm = (float)d;
    } else if (!strcmp(key, "jitter") || !strcmp(key, "crop")) {
        if (kdcl_parse_size(v, &z) || z > 16) return BAD("%s needs 0..16 pixels, got '%s'", key, v);
        o->jitter = (int)z;
    } else if (!strcmp(key, "flip")) {
        if (strcmp(v, "0") && strcmp(v, "1")) return BAD("flip needs 0 or 1, got '%s'", v);
        o->flip = v[0] == '1';
    } else if (!strcmp(key, "optimizer")) {
        kdcl_optim_opts oo;
        kdcl_optim_opts_default(&oo);
        if (kdcl_optim_parse(v, &oo))
            return BAD("optimizer must be sgd, nesterov, adam or adamw, got '%s'", v);
        o->optimizer = oo.kind;
        o->nesterov = oo.nesterov;
    } else if (!strcmp(key, "schedule")) {
        kdcl_schedule sc;
        memset(&sc, 0, sizeof sc);
        kdcl_status s = kdcl_schedule_parse(v, &sc);
        if (s) return s; /* its message names the schedule */
        o->schedule = sc.kind;
        if (sc.kind == KDCL_SCHED_STEP) {
            o->step_epochs = sc.step_epochs;
            o->step_gamma = sc.gamma;
        }
        if (sc.kind == KDCL_SCHED_COSINE) o->lr_min = sc.lr_min;
    } else if (!strcmp(key, "warmup")) {
        if (kdcl_parse_size(v, &z) || z > 100000)
            return BAD("warmup needs a number of epochs, got '%s'", v);
        o->warmup_epochs = z;
    } else if (!strcmp(key, "seed")) {
        if (kdcl_parse_u64(v, &u)) return BAD("seed needs a non-negative integer, got '%s'", v);
        o->seed = u;
    } else {
        return BAD("unknown training option '%s' (epochs, batch, lr, lr-decay, momentum, "
                   "weight-decay, max-norm, jitter, crop, flip, optimizer, schedule, warmup, "
                   "seed)",
                   name);
    }
    return KDCL_OK;
}
