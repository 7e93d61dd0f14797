/* IDX (MNIST-style) loader: idx3-ubyte images + idx1-ubyte labels, raw or gzip. */
#include "data_internal.h"

#include <stdlib.h>
#include <string.h>

#define IDX_MAGIC_IMAGES 0x00000803u
#define IDX_MAGIC_LABELS 0x00000801u

static uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static const char *magic_hint(uint32_t magic, uint32_t expected)
{
    if (magic == IDX_MAGIC_LABELS && expected == IDX_MAGIC_IMAGES)
        return " (this looks like an IDX labels file; were the arguments swapped?)";
    if (magic == IDX_MAGIC_IMAGES && expected == IDX_MAGIC_LABELS)
        return " (this looks like an IDX images file; were the arguments swapped?)";
    if ((magic >> 16) != 0) return " (not an IDX file)";
    if (((magic >> 8) & 0xff) != 0x08) return " (IDX element type is not unsigned byte)";
    return "";
}

/* Check the header of an IDX file held in buf[0..size): magic, ndims dims
 * (non-zero), product without overflow, and that exactly the promised payload
 * follows. On success *count = dims[0], *per = product of the other dims. */
static kdcl_status check_idx(const char *path, const char *what, const uint8_t *buf, size_t size,
                             uint32_t expected_magic, unsigned ndims, size_t *dims,
                             size_t *payload)
{
    if (size < 4)
        return kdcl_set_error(KDCL_ERR_FORMAT,
                              "%s: truncated IDX %s file: %zu bytes, too short for the magic",
                              path, what, size);
    uint32_t magic = be32(buf);
    if (magic != expected_magic)
        return kdcl_set_error(KDCL_ERR_FORMAT, "%s: wrong magic 0x%08x (expected 0x%08x for IDX %s)%s",
                              path, magic, expected_magic, what,
                              magic_hint(magic, expected_magic));
    size_t hdr = 4 + 4 * (size_t)ndims;
    if (size < hdr)
        return kdcl_set_error(KDCL_ERR_FORMAT,
                              "%s: truncated IDX %s header: expected %zu header bytes, got %zu",
                              path, what, hdr, size);
    size_t total = 1;
    for (unsigned i = 0; i < ndims; i++) {
        uint32_t d = be32(buf + 4 + 4 * i);
        if (d == 0)
            return kdcl_set_error(KDCL_ERR_FORMAT, "%s: IDX %s dimension %u is zero", path, what,
                                  i);
        dims[i] = (size_t)d;
        if (kdcl__mul_overflow(total, dims[i], &total))
            return kdcl_set_error(KDCL_ERR_OVERFLOW,
                                  "%s: IDX %s dimensions overflow size_t (dimension %u = %u)",
                                  path, what, i, (unsigned)d);
    }
    size_t need;
    if (kdcl__add_overflow(total, hdr, &need))
        return kdcl_set_error(KDCL_ERR_OVERFLOW, "%s: IDX %s size overflows size_t", path, what);
    if (size < need)
        return kdcl_set_error(KDCL_ERR_FORMAT,
                              "%s: truncated IDX %s file: header promises %zu data bytes "
                              "(%zu bytes in all), file holds %zu data bytes",
                              path, what, total, need, size - hdr);
    if (size > need)
        return kdcl_set_error(KDCL_ERR_FORMAT,
                              "%s: IDX %s file has %zu unexpected trailing bytes after the %zu "
                              "promised by the header",
                              path, what, size - need, need);
    *payload = total;
    return KDCL_OK;
}

kdcl_status kdcl_dataset_load_idx(const char *images_path, const char *labels_path,
                                  kdcl_dataset *out)
{
    if (!out) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_dataset_load_idx: out is NULL");
    memset(out, 0, sizeof *out);
    if (!images_path || !labels_path)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_dataset_load_idx: NULL path");

    uint8_t *lbuf = NULL, *ibuf = NULL;
    size_t lsize = 0, isize = 0;
    size_t ldims[1] = {0}, idims[3] = {0, 0, 0}, lpay = 0, ipay = 0;

    /* Labels first: small, and a bad labels file fails fast. */
    kdcl_status s = kdcl__read_file(labels_path, 1, &lbuf, &lsize, NULL);
    if (s != KDCL_OK) return s;
    s = check_idx(labels_path, "labels", lbuf, lsize, IDX_MAGIC_LABELS, 1, ldims, &lpay);
    if (s != KDCL_OK) goto fail;

    s = kdcl__read_file(images_path, 1, &ibuf, &isize, NULL);
    if (s != KDCL_OK) goto fail;
    s = check_idx(images_path, "images", ibuf, isize, IDX_MAGIC_IMAGES, 3, idims, &ipay);
    if (s != KDCL_OK) goto fail;

    if (idims[0] != ldims[0]) {
        s = kdcl_set_error(KDCL_ERR_FORMAT, "%s holds %zu images but %s holds %zu labels",
                           images_path, idims[0], labels_path, ldims[0]);
        goto fail;
    }
    size_t n = idims[0];
    int32_t *labels = malloc(n * sizeof *labels); /* n <= 2^32-1, payload fits: no overflow */
    if (!labels) {
        s = kdcl_set_error(KDCL_ERR_OOM, "%s: cannot allocate %zu labels", labels_path, n);
        goto fail;
    }
    uint8_t maxl = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t l = lbuf[8 + i];
        labels[i] = l; /* unsigned byte: always < 256 */
        if (l > maxl) maxl = l;
    }
    free(lbuf);
    lbuf = NULL;

    /* Reuse the image buffer: drop the 16-byte header in place. */
    memmove(ibuf, ibuf + 16, ipay);
    uint8_t *shrunk = realloc(ibuf, ipay);
    if (shrunk) ibuf = shrunk;

    out->n = n;
    out->h = idims[1];
    out->w = idims[2];
    out->c = 1;
    out->dim = idims[1] * idims[2];
    out->n_classes = (size_t)maxl + 1;
    out->images = ibuf;
    out->labels = labels;
    out->class_names = NULL;
    return KDCL_OK;

fail:
    free(lbuf);
    free(ibuf);
    memset(out, 0, sizeof *out);
    return s;
}
