/* Dataset lifetime, subsets, validation splits and split/format detection. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "data_internal.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void kdcl_dataset_free(kdcl_dataset *d)
{
    if (!d) return;
    free(d->images);
    free(d->labels);
    kdcl__free_names(d->class_names, d->n_classes);
    memset(d, 0, sizeof *d);
}

static kdcl_status copy_names(const kdcl_dataset *d, kdcl_dataset *out)
{
    out->class_names = NULL;
    if (!d->class_names || d->n_classes == 0) return KDCL_OK;
    out->class_names = calloc(d->n_classes, sizeof *out->class_names);
    if (!out->class_names)
        return kdcl_set_error(KDCL_ERR_OOM, "dataset: out of memory copying class names");
    for (size_t i = 0; i < d->n_classes; i++) {
        if (!d->class_names[i]) continue;
        out->class_names[i] = kdcl__strdup(d->class_names[i]);
        if (!out->class_names[i])
            return kdcl_set_error(KDCL_ERR_OOM, "dataset: out of memory copying class names");
    }
    return KDCL_OK;
}

kdcl_status kdcl_dataset_subset(const kdcl_dataset *d, const size_t *idx, size_t n,
                                kdcl_dataset *out)
{
    if (!out) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_dataset_subset: out is NULL");
    memset(out, 0, sizeof *out);
    if (!d) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_dataset_subset: dataset is NULL");
    if (n > 0 && !idx)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_dataset_subset: idx is NULL");
    if (d->n > 0 && (!d->images || !d->labels))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "kdcl_dataset_subset: dataset has %zu examples but no data", d->n);
    for (size_t i = 0; i < n; i++)
        if (idx[i] >= d->n)
            return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                  "kdcl_dataset_subset: index %zu (position %zu) out of range "
                                  "[0, %zu)",
                                  idx[i], i, d->n);
    size_t bytes;
    if (kdcl__mul_overflow(n, d->dim, &bytes) || n > SIZE_MAX / sizeof(int32_t))
        return kdcl_set_error(KDCL_ERR_OVERFLOW, "kdcl_dataset_subset: %zu x %zu overflows", n,
                              d->dim);
    out->n = n;
    out->h = d->h;
    out->w = d->w;
    out->c = d->c;
    out->dim = d->dim;
    out->n_classes = d->n_classes;
    kdcl_status s = copy_names(d, out);
    if (s != KDCL_OK) goto fail;
    if (n > 0) {
        out->images = bytes ? malloc(bytes) : NULL;
        out->labels = malloc(n * sizeof *out->labels);
        if ((bytes && !out->images) || !out->labels) {
            s = kdcl_set_error(KDCL_ERR_OOM, "kdcl_dataset_subset: cannot allocate %zu examples",
                               n);
            goto fail;
        }
        for (size_t i = 0; i < n; i++) {
            if (d->dim) memcpy(out->images + i * d->dim, d->images + idx[i] * d->dim, d->dim);
            out->labels[i] = d->labels[idx[i]];
        }
    }
    return KDCL_OK;
fail:
    kdcl_dataset_free(out);
    return s;
}

kdcl_status kdcl_dataset_copy(const kdcl_dataset *d, kdcl_dataset *out)
{
    if (!out) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_dataset_copy: out is NULL");
    memset(out, 0, sizeof *out);
    if (!d) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_dataset_copy: dataset is NULL");
    size_t *idx = NULL;
    if (d->n) {
        if (d->n > SIZE_MAX / sizeof *idx)
            return kdcl_set_error(KDCL_ERR_OVERFLOW, "kdcl_dataset_copy: size overflow");
        idx = malloc(d->n * sizeof *idx);
        if (!idx) return kdcl_set_error(KDCL_ERR_OOM, "kdcl_dataset_copy: out of memory");
        for (size_t i = 0; i < d->n; i++) idx[i] = i;
    }
    kdcl_status s = kdcl_dataset_subset(d, idx, d->n, out);
    free(idx);
    return s;
}

void kdcl_dataset_class_counts(const kdcl_dataset *d, size_t *counts)
{
    if (!d || !counts) return;
    for (size_t k = 0; k < d->n_classes; k++) counts[k] = 0;
    if (!d->labels) return;
    for (size_t i = 0; i < d->n; i++) {
        int32_t l = d->labels[i];
        if (l >= 0 && (size_t)l < d->n_classes) counts[l]++;
    }
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

kdcl_status kdcl_dataset_split_val(const kdcl_dataset *d, size_t n_val, uint64_t seed,
                                   kdcl_dataset *train, kdcl_dataset *val)
{
    if (!train || !val)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_dataset_split_val: NULL output");
    memset(train, 0, sizeof *train);
    memset(val, 0, sizeof *val);
    if (!d) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_dataset_split_val: dataset is NULL");
    if (n_val > d->n)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "kdcl_dataset_split_val: validation size %zu exceeds the %zu "
                              "examples of the dataset",
                              n_val, d->n);
    size_t *perm = NULL;
    if (d->n) {
        if (d->n > SIZE_MAX / sizeof *perm)
            return kdcl_set_error(KDCL_ERR_OVERFLOW, "kdcl_dataset_split_val: size overflow");
        perm = malloc(d->n * sizeof *perm);
        if (!perm) return kdcl_set_error(KDCL_ERR_OOM, "kdcl_dataset_split_val: out of memory");
        /* A dedicated epoch value keeps this permutation distinct from the
         * per-epoch training shuffles of the same seed. */
        kdcl_shuffle_indices(perm, d->n, seed, UINT64_C(0x56414C53504C4954)); /* "VALSPLIT" */
    }
    size_t n_train = d->n - n_val;
    if (n_train > 1) qsort(perm, n_train, sizeof *perm, cmp_size);
    if (n_val > 1) qsort(perm + n_train, n_val, sizeof *perm, cmp_size);
    kdcl_status s = kdcl_dataset_subset(d, perm, n_train, train);
    if (s == KDCL_OK) s = kdcl_dataset_subset(d, perm ? perm + n_train : NULL, n_val, val);
    free(perm);
    if (s != KDCL_OK) {
        kdcl_dataset_free(train);
        kdcl_dataset_free(val);
    }
    return s;
}

/* ---- format detection ------------------------------------------------- */

/* snprintf that reports whether the result fit (1) or was truncated (0). */
static int fmt_path(char *buf, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fmt_path(char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintf(buf, n, fmt, ap);
    va_end(ap);
    return r >= 0 && (size_t)r < n;
}

/* First existing IDX file dir/<prefix>-<kind>{-,.}<idx>-ubyte[.gz]; returns 1 if found. */
static int find_idx_file(const char *dir, const char *prefix, const char *kind, const char *idx,
                         char *out, size_t n)
{
    static const char *const spell[] = {"%s/%s-%s-%s-ubyte", "%s/%s-%s-%s-ubyte.gz",
                                        "%s/%s-%s.%s-ubyte", "%s/%s-%s.%s-ubyte.gz"};
    for (size_t i = 0; i < sizeof spell / sizeof spell[0]; i++) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        int ok = fmt_path(out, n, spell[i], dir, prefix, kind, idx);
#pragma GCC diagnostic pop
        if (ok && kdcl__is_file(out)) return 1;
    }
    return 0;
}

static kdcl_status load_cifar10_dir(const char *base, const char *split, kdcl_dataset *out,
                                    int *found)
{
    char paths[5][KDCL_PATH_MAX];
    const char *ptrs[5];
    *found = 0;
    if (strcmp(split, "train") == 0) {
        if (!fmt_path(paths[0], KDCL_PATH_MAX, "%s/data_batch_1.bin", base) ||
            !kdcl__is_file(paths[0]))
            return KDCL_OK;
        *found = 1;
        for (int i = 0; i < 5; i++) {
            if (!fmt_path(paths[i], KDCL_PATH_MAX, "%s/data_batch_%d.bin", base, i + 1) ||
                !kdcl__is_file(paths[i]))
                return kdcl_set_error(KDCL_ERR_IO,
                                      "%s: incomplete CIFAR-10 training set: %s is missing "
                                      "(expected data_batch_1.bin .. data_batch_5.bin)",
                                      base, paths[i]);
            ptrs[i] = paths[i];
        }
        return kdcl_dataset_load_cifar(ptrs, 5, 0, 0, out);
    }
    if (strcmp(split, "test") == 0) {
        if (!fmt_path(paths[0], KDCL_PATH_MAX, "%s/test_batch.bin", base) ||
            !kdcl__is_file(paths[0]))
            return KDCL_OK;
        *found = 1;
        ptrs[0] = paths[0];
        return kdcl_dataset_load_cifar(ptrs, 1, 0, 0, out);
    }
    return KDCL_OK;
}

kdcl_status kdcl_dataset_load_split(const char *dir, const char *split, kdcl_dataset *out)
{
    return kdcl_dataset_load_split_opts(dir, split, NULL, out);
}

kdcl_status kdcl_dataset_load_split_opts(const char *dir, const char *split,
                                         kdcl_image_opts *image_opts, kdcl_dataset *out)
{
    if (image_opts) image_opts->n_skipped = 0;
    if (!out)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_dataset_load_split: out is NULL");
    memset(out, 0, sizeof *out);
    if (!dir || !*dir || !split || !*split)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "kdcl_dataset_load_split: empty directory or split name");
    if (strchr(split, '/') || strcmp(split, "..") == 0 || strcmp(split, ".") == 0)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "kdcl_dataset_load_split: invalid split name '%s'", split);
    if (strlen(dir) > KDCL_PATH_MAX - 64)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: path too long", dir);
    if (!kdcl__is_dir(dir))
        return kdcl_set_error(KDCL_ERR_IO, "%s: not a directory (looking for the '%s' split)",
                              dir, split);

    int is_train = strcmp(split, "train") == 0, is_test = strcmp(split, "test") == 0;
    char a[KDCL_PATH_MAX], b[KDCL_PATH_MAX], sub[KDCL_PATH_MAX];
    const char *idx_prefix = is_train ? "train" : (is_test ? "t10k" : NULL);

    /* IDX (MNIST, Fashion-MNIST, KMNIST...) */
    if (idx_prefix) {
        int has_img = find_idx_file(dir, idx_prefix, "images", "idx3", a, sizeof a);
        int has_lab = find_idx_file(dir, idx_prefix, "labels", "idx1", b, sizeof b);
        if (has_img && has_lab) return kdcl_dataset_load_idx(a, b, out);
        if (has_img || has_lab)
            return kdcl_set_error(KDCL_ERR_IO,
                                  "%s: found IDX %s file %s but not its %s file "
                                  "(looked for %s-%s-ubyte[.gz])",
                                  dir, has_img ? "images" : "labels", has_img ? a : b,
                                  has_img ? "labels" : "images", idx_prefix,
                                  has_img ? "labels-idx1" : "images-idx3");
    }

    /* CIFAR-10 */
    if (idx_prefix) {
        int found = 0;
        kdcl_status s = load_cifar10_dir(dir, split, out, &found);
        if (found) return s;
        if (fmt_path(sub, sizeof sub, "%s/cifar-10-batches-bin", dir) && kdcl__is_dir(sub)) {
            s = load_cifar10_dir(sub, split, out, &found);
            if (found) return s;
        }
    }

    /* CIFAR-100 (fine labels) */
    if (idx_prefix) {
        const char *bases[2] = {dir, sub};
        int has_sub = fmt_path(sub, sizeof sub, "%s/cifar-100-binary", dir);
        for (int i = 0; i < 1 + has_sub; i++) {
            if (fmt_path(a, sizeof a, "%s/%s.bin", bases[i], split) && kdcl__is_file(a)) {
                const char *files[1] = {a};
                return kdcl_dataset_load_cifar(files, 1, 1, 1, out);
            }
        }
    }

    /* Image folder <dir>/<split>/<class>/<image> */
    if (fmt_path(sub, sizeof sub, "%s/%s", dir, split) && kdcl__is_dir(sub))
        return kdcl_dataset_load_images_opts(sub, 32, 32, 3, image_opts, out);

    if (idx_prefix)
        return kdcl_set_error(
            KDCL_ERR_IO,
            "%s: no '%s' dataset found; looked for IDX %s-images-idx3-ubyte[.gz] + "
            "%s-labels-idx1-ubyte[.gz], CIFAR-10 %s (also in cifar-10-batches-bin/), "
            "CIFAR-100 %s.bin (also in cifar-100-binary/), and an image folder %s/<class>/<image>",
            dir, split, idx_prefix, idx_prefix,
            is_train ? "data_batch_1..5.bin" : "test_batch.bin", split, split);
    return kdcl_set_error(KDCL_ERR_IO,
                          "%s: no '%s' dataset found; looked for an image folder "
                          "%s/<class>/<image> (IDX and CIFAR files exist only for the "
                          "'train' and 'test' splits)",
                          dir, split, split);
}

kdcl_status kdcl_dataset_channel_stats(const kdcl_dataset *d, float *mean, float *std)
{
    if (!d || d->n == 0 || d->c == 0 || d->c > 4 || d->dim != d->h * d->w * d->c)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "channel statistics need a non-empty image dataset of 1..4 channels");
    /* exact integer sums per channel (HWC layout), then mean and variance in double */
    uint64_t sum[4] = {0}, sq[4] = {0};
    const size_t total = d->n * d->h * d->w;
    for (size_t i = 0; i < total; i++)
        for (size_t c = 0; c < d->c; c++) {
            const uint64_t v = d->images[i * d->c + c];
            sum[c] += v;
            sq[c] += v * v;
        }
    for (size_t c = 0; c < d->c; c++) {
        const double m = (double)sum[c] / (double)total;
        double var = (double)sq[c] / (double)total - m * m;
        if (var < 0) var = 0;
        mean[c] = (float)(m / 255.0);
        std[c] = var > 0 ? (float)(sqrt(var) / 255.0) : 1.0f;
    }
    return KDCL_OK;
}
