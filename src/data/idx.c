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

/* Read one IDX file header-first: the magic and the ndims dimensions (each
 * non-zero, their product without overflow) are checked before the payload is
 * read; a raw file must then be exactly as long as the header says (checked
 * against its size on disk before anything is allocated) and a gzip stream is
 * inflated into a buffer that grows up to exactly the promised size and must
 * end there. On success *payload (malloc'd, dims product bytes) and dims. */
static kdcl_status read_idx(const char *path, const char *what, uint32_t expected_magic,
                            unsigned ndims, size_t *dims, uint8_t **payload, size_t *pay_size)
{
    *payload = NULL;
    *pay_size = 0;
    kdcl__stream r;
    kdcl_status s = kdcl__stream_open(&r, path, 1);
    if (s != KDCL_OK) return s;
    uint8_t hdr[16], *buf = NULL;
    const size_t hlen = 4 + 4 * (size_t)ndims;
    size_t got = 0;
    if ((s = kdcl__stream_read(&r, hdr, 4, &got)) != KDCL_OK) goto fail;
    if (got < 4) {
        s = kdcl_set_error(KDCL_ERR_FORMAT,
                           "%s: truncated IDX %s file: %zu bytes, too short for the magic", path,
                           what, got);
        goto fail;
    }
    uint32_t magic = be32(hdr);
    if (magic != expected_magic) {
        s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: wrong magic 0x%08x (expected 0x%08x for IDX %s)%s",
                           path, magic, expected_magic, what, magic_hint(magic, expected_magic));
        goto fail;
    }
    if ((s = kdcl__stream_read(&r, hdr + 4, hlen - 4, &got)) != KDCL_OK) goto fail;
    if (got < hlen - 4) {
        s = kdcl_set_error(KDCL_ERR_FORMAT,
                           "%s: truncated IDX %s header: expected %zu header bytes, got %zu",
                           path, what, hlen, 4 + got);
        goto fail;
    }
    size_t total = 1;
    for (unsigned i = 0; i < ndims; i++) {
        uint32_t d = be32(hdr + 4 + 4 * i);
        if (d == 0) {
            s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: IDX %s dimension %u is zero", path, what, i);
            goto fail;
        }
        dims[i] = (size_t)d;
        if (kdcl__mul_overflow(total, dims[i], &total)) {
            s = kdcl_set_error(KDCL_ERR_OVERFLOW,
                               "%s: IDX %s dimensions overflow size_t (dimension %u = %u)", path,
                               what, i, (unsigned)d);
            goto fail;
        }
    }
    size_t need;
    if (kdcl__add_overflow(total, hlen, &need)) {
        s = kdcl_set_error(KDCL_ERR_OVERFLOW, "%s: IDX %s size overflows size_t", path, what);
        goto fail;
    }
    if (!r.is_gzip) {
        if (r.file_size < need) {
            s = kdcl_set_error(KDCL_ERR_FORMAT,
                               "%s: truncated IDX %s file: header promises %zu data bytes "
                               "(%zu bytes in all), file holds %llu data bytes",
                               path, what, total, need,
                               (unsigned long long)(r.file_size - hlen));
            goto fail;
        }
        if (r.file_size > need) {
            s = kdcl_set_error(KDCL_ERR_FORMAT,
                               "%s: IDX %s file has %llu unexpected trailing bytes after the %zu "
                               "promised by the header",
                               path, what, (unsigned long long)(r.file_size - need), need);
            goto fail;
        }
    }
    /* Raw: one allocation of the (checked) file size. Gzip: grow as the data
     * arrives, so memory follows what the stream really holds. */
    size_t cap = r.is_gzip && total > ((size_t)1 << 20) ? (size_t)1 << 20 : total, n = 0;
    buf = malloc(cap);
    if (!buf) {
        s = kdcl_set_error(KDCL_ERR_OOM, "%s: cannot allocate %zu bytes for the IDX %s data",
                           path, cap, what);
        goto fail;
    }
    while (n < total) {
        if (n == cap) {
            size_t ncap = cap > total / 2 ? total : 2 * cap;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) {
                s = kdcl_set_error(KDCL_ERR_OOM,
                                   "%s: cannot allocate %zu bytes for the IDX %s data", path,
                                   ncap, what);
                goto fail;
            }
            buf = nb;
            cap = ncap;
        }
        if ((s = kdcl__stream_read(&r, buf + n, cap - n, &got)) != KDCL_OK) goto fail;
        n += got;
        if (got == 0) break;
    }
    if (n < total) {
        s = kdcl_set_error(KDCL_ERR_FORMAT,
                           "%s: truncated IDX %s file: header promises %zu data bytes "
                           "(%zu bytes in all), file holds %zu data bytes",
                           path, what, total, need, n);
        goto fail;
    }
    /* nothing may follow (for gzip this also reads the trailer: CRC, length) */
    uint8_t extra[256];
    size_t n_extra = 0;
    do {
        if ((s = kdcl__stream_read(&r, extra, sizeof extra, &got)) != KDCL_OK) goto fail;
        n_extra += got;
    } while (got == sizeof extra && n_extra < ((size_t)1 << 20));
    if (n_extra) {
        s = kdcl_set_error(KDCL_ERR_FORMAT,
                           "%s: IDX %s file has %s%zu unexpected trailing bytes after the %zu "
                           "promised by the header",
                           path, what, n_extra >= ((size_t)1 << 20) ? "at least " : "", n_extra,
                           need);
        goto fail;
    }
    kdcl__stream_close(&r);
    *payload = buf;
    *pay_size = total;
    return KDCL_OK;
fail:
    kdcl__stream_close(&r);
    free(buf);
    return s;
}

kdcl_status kdcl_dataset_load_idx(const char *images_path, const char *labels_path,
                                  kdcl_dataset *out)
{
    if (!out) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_dataset_load_idx: out is NULL");
    memset(out, 0, sizeof *out);
    if (!images_path || !labels_path)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_dataset_load_idx: NULL path");

    uint8_t *lbuf = NULL, *ibuf = NULL;
    size_t ldims[1] = {0}, idims[3] = {0, 0, 0}, lpay = 0, ipay = 0;

    /* Labels first: small, and a bad labels file fails fast. */
    kdcl_status s = read_idx(labels_path, "labels", IDX_MAGIC_LABELS, 1, ldims, &lbuf, &lpay);
    if (s != KDCL_OK) goto fail;
    s = read_idx(images_path, "images", IDX_MAGIC_IMAGES, 3, idims, &ibuf, &ipay);
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
        uint8_t l = lbuf[i];
        labels[i] = l; /* unsigned byte: always < 256 */
        if (l > maxl) maxl = l;
    }
    free(lbuf);
    lbuf = NULL;

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
