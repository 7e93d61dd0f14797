/* Datasets from the caller's arrays and on the heap (kdcl_dataset_create),
 * the entry points of bindings such as the Python package. */
#include <stdlib.h>
#include <string.h>

#include "data_internal.h"

kdcl_dataset *kdcl_dataset_create(void) { return calloc(1, sizeof(kdcl_dataset)); }

void kdcl_dataset_destroy(kdcl_dataset *d)
{
    if (!d) return;
    kdcl_dataset_free(d);
    free(d);
}

/* One example between layouts: src and dst of c*h*w bytes. */
static void convert(const uint8_t *src, uint8_t *dst, size_t c, size_t h, size_t w, int to_hwc)
{
    for (size_t ch = 0; ch < c; ch++)
        for (size_t i = 0; i < h * w; i++) {
            if (to_hwc) dst[i * c + ch] = src[ch * h * w + i];
            else dst[ch * h * w + i] = src[i * c + ch];
        }
}

kdcl_status kdcl_dataset_from_arrays(const uint8_t *images, const int32_t *labels, size_t n,
                                     size_t c, size_t h, size_t w, kdcl_layout layout,
                                     size_t n_classes, kdcl_dataset *out)
{
    if (!out) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "dataset from arrays: out is NULL");
    memset(out, 0, sizeof *out);
    if (!images || !labels)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "dataset from arrays: no %s array",
                              images ? "label" : "image");
    if (n == 0) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "dataset from arrays: no examples");
    if (c < 1 || c > 4 || h < 1 || w < 1)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "dataset from arrays: images of %zu x %zu x %zu (channels 1..4, "
                              "height and width >= 1)",
                              c, h, w);
    if (layout != KDCL_LAYOUT_HWC && layout != KDCL_LAYOUT_CHW)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "dataset from arrays: unknown layout %d",
                              (int)layout);
    size_t dim, bytes;
    if (kdcl__mul_overflow(h, w, &dim) || kdcl__mul_overflow(dim, c, &dim) ||
        kdcl__mul_overflow(n, dim, &bytes) || n > SIZE_MAX / sizeof(int32_t))
        return kdcl_set_error(KDCL_ERR_OVERFLOW,
                              "dataset from arrays: %zu examples of %zu x %zu x %zu overflow", n,
                              c, h, w);
    int32_t top = -1;
    for (size_t i = 0; i < n; i++) {
        if (labels[i] < 0 || (n_classes && (size_t)labels[i] >= n_classes))
            return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                  "dataset from arrays: label %ld of example %zu is outside "
                                  "[0, %zu)",
                                  (long)labels[i], i, n_classes ? n_classes : (size_t)INT32_MAX);
        if (labels[i] > top) top = labels[i];
    }
    out->images = malloc(bytes);
    out->labels = malloc(n * sizeof *out->labels);
    if (!out->images || !out->labels) {
        kdcl_dataset_free(out);
        return kdcl_set_error(KDCL_ERR_OOM, "dataset from arrays: cannot allocate %zu examples",
                              n);
    }
    if (layout == KDCL_LAYOUT_HWC || c == 1)
        memcpy(out->images, images, bytes);
    else
        for (size_t i = 0; i < n; i++)
            convert(images + i * dim, out->images + i * dim, c, h, w, 1);
    memcpy(out->labels, labels, n * sizeof *out->labels);
    out->n = n;
    out->c = c;
    out->h = h;
    out->w = w;
    out->dim = dim;
    out->n_classes = n_classes ? n_classes : (size_t)top + 1;
    return KDCL_OK;
}

void kdcl_dataset_shape(const kdcl_dataset *d, size_t *n, size_t *c, size_t *h, size_t *w,
                        size_t *n_classes)
{
    if (n) *n = d->n;
    if (c) *c = d->c;
    if (h) *h = d->h;
    if (w) *w = d->w;
    if (n_classes) *n_classes = d->n_classes;
}

void kdcl_dataset_to_arrays(const kdcl_dataset *d, kdcl_layout layout, uint8_t *images,
                            int32_t *labels)
{
    if (labels && d->n) memcpy(labels, d->labels, d->n * sizeof *labels);
    if (!images || !d->n) return;
    if (layout == KDCL_LAYOUT_HWC || d->c == 1)
        memcpy(images, d->images, d->n * d->dim);
    else
        for (size_t i = 0; i < d->n; i++)
            convert(d->images + i * d->dim, images + i * d->dim, d->c, d->h, d->w, 0);
}
