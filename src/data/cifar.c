/* CIFAR-10 / CIFAR-100 binary batch loader (CHW records -> HWC). */
#include "data_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CIFAR_SIDE 32
#define CIFAR_PIX (CIFAR_SIDE * CIFAR_SIDE)
#define CIFAR_IMG (3 * CIFAR_PIX)

/* Directory part of a path ("." if none) into buf. */
static void dir_of(const char *path, char *buf, size_t n)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(buf, n, ".");
        return;
    }
    size_t len = (size_t)(slash - path);
    if (len == 0) len = 1; /* "/file" */
    if (len >= n) {
        buf[0] = '\0';
        return;
    }
    memcpy(buf, path, len);
    buf[len] = '\0';
}

kdcl_status kdcl_dataset_load_cifar(const char *const *files, size_t n_files, int cifar100,
                                    int fine_labels, kdcl_dataset *out)
{
    if (!out) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_dataset_load_cifar: out is NULL");
    memset(out, 0, sizeof *out);
    if (!files || n_files == 0)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_dataset_load_cifar: no files given");
    for (size_t f = 0; f < n_files; f++)
        if (!files[f])
            return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                  "kdcl_dataset_load_cifar: file %zu is NULL", f);

    const size_t nlab = cifar100 ? 2 : 1;
    const size_t rec = nlab + CIFAR_IMG;
    const size_t lab_off = cifar100 ? (fine_labels ? 1 : 0) : 0;
    const size_t n_classes = cifar100 ? (fine_labels ? 100 : 20) : 10;
    const char *kind = cifar100 ? "CIFAR-100" : "CIFAR-10";

    uint8_t *images = NULL;
    int32_t *labels = NULL;
    size_t n = 0, cap = 0;
    kdcl_status s = KDCL_OK;

    for (size_t f = 0; f < n_files; f++) {
        uint8_t *buf = NULL;
        size_t size = 0;
        s = kdcl__read_file_max(files[f], 1, SIZE_MAX - 1, KDCL_GZIP_MAX, &buf, &size, NULL);
        if (s != KDCL_OK) goto fail;
        if (size == 0 || size % rec != 0) {
            size_t other = cifar100 ? 1 + CIFAR_IMG : 2 + CIFAR_IMG;
            s = kdcl_set_error(KDCL_ERR_FORMAT,
                               "%s: size %zu bytes is not a non-zero multiple of the %s record "
                               "size %zu%s",
                               files[f], size, kind, rec,
                               (size && size % other == 0)
                                   ? (cifar100 ? " (it fits CIFAR-10 records)"
                                               : " (it fits CIFAR-100 records)")
                                   : "");
            free(buf);
            goto fail;
        }
        size_t k = size / rec, nn, bytes;
        if (kdcl__add_overflow(n, k, &nn) || kdcl__mul_overflow(nn, CIFAR_IMG, &bytes) ||
            nn > SIZE_MAX / sizeof(int32_t)) {
            free(buf);
            s = kdcl_set_error(KDCL_ERR_OVERFLOW, "%s: total CIFAR size overflows", files[f]);
            goto fail;
        }
        if (nn > cap) {
            uint8_t *ni = realloc(images, bytes);
            if (!ni) {
                free(buf);
                s = kdcl_set_error(KDCL_ERR_OOM, "%s: cannot allocate %zu bytes of images",
                                   files[f], bytes);
                goto fail;
            }
            images = ni;
            int32_t *nl = realloc(labels, nn * sizeof *labels);
            if (!nl) {
                free(buf);
                s = kdcl_set_error(KDCL_ERR_OOM, "%s: cannot allocate %zu labels", files[f], nn);
                goto fail;
            }
            labels = nl;
            cap = nn;
        }
        for (size_t i = 0; i < k; i++) {
            const uint8_t *r = buf + i * rec;
            uint8_t l = r[lab_off];
            size_t lim = cifar100 ? (lab_off ? 100 : 20) : 10;
            if (l >= lim) {
                s = kdcl_set_error(KDCL_ERR_FORMAT,
                                   "%s: record %zu has %s label %u, outside [0, %zu)%s", files[f],
                                   i, cifar100 ? (lab_off ? "fine" : "coarse") : "CIFAR-10",
                                   (unsigned)l, lim,
                                   cifar100 ? "" : " (is this a CIFAR-100 file?)");
                free(buf);
                goto fail;
            }
            /* CIFAR-100 coarse label is always checked too, for file sanity. */
            if (cifar100 && r[0] >= 20) {
                s = kdcl_set_error(KDCL_ERR_FORMAT,
                                   "%s: record %zu has coarse label %u, outside [0, 20)",
                                   files[f], i, (unsigned)r[0]);
                free(buf);
                goto fail;
            }
            labels[n + i] = l;
            const uint8_t *px = r + nlab;
            uint8_t *dst = images + (n + i) * CIFAR_IMG;
            for (size_t p = 0; p < CIFAR_PIX; p++) {
                dst[3 * p + 0] = px[p];
                dst[3 * p + 1] = px[CIFAR_PIX + p];
                dst[3 * p + 2] = px[2 * CIFAR_PIX + p];
            }
        }
        n = nn;
        free(buf);
    }

    out->n = n;
    out->h = CIFAR_SIDE;
    out->w = CIFAR_SIDE;
    out->c = 3;
    out->dim = CIFAR_IMG;
    out->n_classes = n_classes;
    out->images = images;
    out->labels = labels;

    char dir[4096], meta[4096 + 64];
    dir_of(files[0], dir, sizeof dir);
    if (dir[0]) {
        const char *mname = cifar100 ? (fine_labels ? "fine_label_names.txt"
                                                    : "coarse_label_names.txt")
                                     : "batches.meta.txt";
        if (kdcl__join(meta, sizeof meta, dir, mname) == KDCL_OK) {
            s = kdcl__read_names(meta, n_classes, &out->class_names);
            if (s != KDCL_OK) {
                kdcl_dataset_free(out);
                return s;
            }
        }
    }
    return KDCL_OK;

fail:
    free(images);
    free(labels);
    memset(out, 0, sizeof *out);
    return s;
}
