/* Check suite for the dataset module (IDX, CIFAR, image folders, splits, shuffling). */
#include "kdcl/data.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zlib.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wpedantic"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wtype-limits"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include "stb_image_write.h"
#pragma GCC diagnostic pop

/* ---- helpers ----------------------------------------------------------- */

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* The expected error: status, a non-empty message that contains `needle`. */
#define EXPECT_ERR(expr, code, needle)                                                      \
    do {                                                                                     \
        kdcl_status st_ = (expr);                                                            \
        const char *m_ = kdcl_last_error();                                                  \
        ck_assert_msg(st_ == (code), "expected %s, got %s (%s)", kdcl_status_name(code),     \
                      kdcl_status_name(st_), m_);                                            \
        ck_assert_msg(m_ && strlen(m_) > 0, "empty error message");                         \
        ck_assert_msg(strstr(m_, (needle)) != NULL, "message '%s' lacks '%s'", m_, (needle)); \
    } while (0)

#define EXPECT_OK(expr)                                                                      \
    do {                                                                                     \
        kdcl_status st_ = (expr);                                                            \
        ck_assert_msg(st_ == KDCL_OK, "%s: %s", kdcl_status_name(st_), kdcl_last_error());  \
    } while (0)

static void assert_zeroed(const kdcl_dataset *d)
{
    ck_assert_uint_eq(d->n, 0);
    ck_assert_ptr_null(d->images);
    ck_assert_ptr_null(d->labels);
    ck_assert_ptr_null(d->class_names);
}

/* Build an IDX images buffer (n x rows x cols) with pixel value f(i,p). */
static uint8_t *make_idx_images(uint32_t n, uint32_t rows, uint32_t cols, size_t *size)
{
    size_t pay = (size_t)n * rows * cols;
    uint8_t *b = malloc(16 + pay);
    ck_assert_ptr_nonnull(b);
    put_be32(b, 0x00000803u);
    put_be32(b + 4, n);
    put_be32(b + 8, rows);
    put_be32(b + 12, cols);
    for (size_t i = 0; i < pay; i++) b[16 + i] = (uint8_t)((i * 7 + 3) & 0xff);
    *size = 16 + pay;
    return b;
}

static uint8_t *make_idx_labels(uint32_t n, size_t *size)
{
    uint8_t *b = malloc(8 + n);
    ck_assert_ptr_nonnull(b);
    put_be32(b, 0x00000801u);
    put_be32(b + 4, n);
    for (uint32_t i = 0; i < n; i++) b[8 + i] = (uint8_t)((i * 3) % 7);
    *size = 8 + n;
    return b;
}

static void write_gz(const char *path, const void *data, size_t n)
{
    gzFile g = gzopen(path, "wb9");
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(gzwrite(g, data, (unsigned)n), (int)n);
    ck_assert_int_eq(gzclose(g), Z_OK);
}

static uint8_t *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)sz + 1);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(fread(b, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return b;
}

/* ---- IDX --------------------------------------------------------------- */

static void check_idx_values(const kdcl_dataset *d, uint32_t n, uint32_t rows, uint32_t cols)
{
    ck_assert_uint_eq(d->n, n);
    ck_assert_uint_eq(d->h, rows);
    ck_assert_uint_eq(d->w, cols);
    ck_assert_uint_eq(d->c, 1);
    ck_assert_uint_eq(d->dim, (size_t)rows * cols);
    for (size_t i = 0; i < (size_t)n * rows * cols; i++)
        ck_assert_uint_eq(d->images[i], (uint8_t)((i * 7 + 3) & 0xff));
    uint32_t maxl = 0;
    for (uint32_t i = 0; i < n; i++) {
        ck_assert_int_eq(d->labels[i], (int32_t)((i * 3) % 7));
        if ((i * 3) % 7 > maxl) maxl = (i * 3) % 7;
    }
    ck_assert_uint_eq(d->n_classes, maxl + 1);
    ck_assert_ptr_null(d->class_names);
}

START_TEST(idx_raw_roundtrip)
{
    size_t is, ls;
    uint8_t *im = make_idx_images(9, 5, 4, &is), *lb = make_idx_labels(9, &ls);
    const char *ip = tu_path("raw-images-idx3-ubyte"), *lp = tu_path("raw-labels-idx1-ubyte");
    ck_assert_int_eq(tu_write_file(ip, im, is), 0);
    ck_assert_int_eq(tu_write_file(lp, lb, ls), 0);
    kdcl_dataset d;
    EXPECT_OK(kdcl_dataset_load_idx(ip, lp, &d));
    check_idx_values(&d, 9, 5, 4);
    kdcl_dataset_free(&d);
    assert_zeroed(&d);
    kdcl_dataset_free(&d); /* twice is fine */
    free(im);
    free(lb);
}
END_TEST

START_TEST(idx_gz_roundtrip)
{
    size_t is, ls;
    uint8_t *im = make_idx_images(17, 6, 3, &is), *lb = make_idx_labels(17, &ls);
    /* Names without .gz: detection must go by the magic, not the name. */
    const char *ip = tu_path("gz-images.bin"), *lp = tu_path("gz-labels.idx.gz");
    write_gz(ip, im, is);
    write_gz(lp, lb, ls);
    kdcl_dataset d;
    EXPECT_OK(kdcl_dataset_load_idx(ip, lp, &d));
    check_idx_values(&d, 17, 6, 3);
    kdcl_dataset_free(&d);
    /* mixed: raw labels + gz images */
    const char *lp2 = tu_path("gz-labels-raw");
    ck_assert_int_eq(tu_write_file(lp2, lb, ls), 0);
    EXPECT_OK(kdcl_dataset_load_idx(ip, lp2, &d));
    check_idx_values(&d, 17, 6, 3);
    kdcl_dataset_free(&d);
    free(im);
    free(lb);
}
END_TEST

START_TEST(idx_wrong_magic)
{
    size_t is, ls;
    uint8_t *im = make_idx_images(3, 2, 2, &is), *lb = make_idx_labels(3, &ls);
    const char *ip = tu_path("magic-images"), *lp = tu_path("magic-labels");
    ck_assert_int_eq(tu_write_file(lp, lb, ls), 0);
    put_be32(im, 0x12345678u);
    ck_assert_int_eq(tu_write_file(ip, im, is), 0);
    kdcl_dataset d;
    EXPECT_ERR(kdcl_dataset_load_idx(ip, lp, &d), KDCL_ERR_FORMAT, "magic-images");
    EXPECT_ERR(kdcl_dataset_load_idx(ip, lp, &d), KDCL_ERR_FORMAT, "0x12345678");
    assert_zeroed(&d);
    /* swapped arguments: the labels file is not an images file */
    EXPECT_ERR(kdcl_dataset_load_idx(lp, lp, &d), KDCL_ERR_FORMAT, "swapped");
    /* a tiny file: too short for the magic */
    const char *tp = tu_path("magic-tiny");
    ck_assert_int_eq(tu_write_file(tp, "\0\0", 2), 0);
    EXPECT_ERR(kdcl_dataset_load_idx(tp, lp, &d), KDCL_ERR_FORMAT, "magic-tiny");
    /* empty file */
    ck_assert_int_eq(tu_write_file(tp, "", 0), 0);
    EXPECT_ERR(kdcl_dataset_load_idx(ip, tp, &d), KDCL_ERR_FORMAT, "magic-tiny");
    assert_zeroed(&d);
    free(im);
    free(lb);
}
END_TEST

START_TEST(idx_truncated_raw)
{
    size_t is, ls;
    uint8_t *im = make_idx_images(10, 4, 4, &is), *lb = make_idx_labels(10, &ls);
    const char *ip = tu_path("trunc-images"), *lp = tu_path("trunc-labels");
    ck_assert_int_eq(tu_write_file(lp, lb, ls), 0);
    ck_assert_int_eq(tu_write_file(ip, im, is - 5), 0);
    kdcl_dataset d;
    EXPECT_ERR(kdcl_dataset_load_idx(ip, lp, &d), KDCL_ERR_FORMAT, "trunc-images");
    EXPECT_ERR(kdcl_dataset_load_idx(ip, lp, &d), KDCL_ERR_FORMAT, "truncated");
    EXPECT_ERR(kdcl_dataset_load_idx(ip, lp, &d), KDCL_ERR_FORMAT, "160"); /* expected bytes */
    EXPECT_ERR(kdcl_dataset_load_idx(ip, lp, &d), KDCL_ERR_FORMAT, "155"); /* got */
    /* header cut short */
    ck_assert_int_eq(tu_write_file(ip, im, 10), 0);
    EXPECT_ERR(kdcl_dataset_load_idx(ip, lp, &d), KDCL_ERR_FORMAT, "trunc-images");
    /* truncated labels */
    ck_assert_int_eq(tu_write_file(ip, im, is), 0);
    ck_assert_int_eq(tu_write_file(lp, lb, ls - 1), 0);
    EXPECT_ERR(kdcl_dataset_load_idx(ip, lp, &d), KDCL_ERR_FORMAT, "trunc-labels");
    /* trailing garbage */
    uint8_t *big = calloc(is + 3, 1);
    memcpy(big, im, is);
    ck_assert_int_eq(tu_write_file(lp, lb, ls), 0);
    ck_assert_int_eq(tu_write_file(ip, big, is + 3), 0);
    EXPECT_ERR(kdcl_dataset_load_idx(ip, lp, &d), KDCL_ERR_FORMAT, "trailing");
    assert_zeroed(&d);
    /* missing file */
    EXPECT_ERR(kdcl_dataset_load_idx(tu_path("no-such-file"), lp, &d), KDCL_ERR_IO,
               "no-such-file");
    /* a directory */
    EXPECT_ERR(kdcl_dataset_load_idx(tu_tmpdir(), lp, &d), KDCL_ERR_IO, tu_tmpdir());
    free(big);
    free(im);
    free(lb);
}
END_TEST

START_TEST(idx_truncated_gz)
{
    size_t is, ls, gs;
    uint8_t *im = make_idx_images(50, 8, 8, &is), *lb = make_idx_labels(50, &ls);
    const char *ip = tu_path("tgz-images.gz"), *lp = tu_path("tgz-labels");
    ck_assert_int_eq(tu_write_file(lp, lb, ls), 0);
    write_gz(ip, im, is);
    uint8_t *gz = read_all(ip, &gs);
    kdcl_dataset d;
    /* cut in half */
    ck_assert_int_eq(tu_write_file(ip, gz, gs / 2), 0);
    EXPECT_ERR(kdcl_dataset_load_idx(ip, lp, &d), KDCL_ERR_FORMAT, "tgz-images.gz");
    assert_zeroed(&d);
    /* only the 8-byte trailer missing: data complete, CRC/length absent */
    ck_assert_int_eq(tu_write_file(ip, gz, gs - 8), 0);
    EXPECT_ERR(kdcl_dataset_load_idx(ip, lp, &d), KDCL_ERR_FORMAT, "tgz-images.gz");
    /* only the gzip header */
    ck_assert_int_eq(tu_write_file(ip, gz, 10), 0);
    EXPECT_ERR(kdcl_dataset_load_idx(ip, lp, &d), KDCL_ERR_FORMAT, "tgz-images.gz");
    /* just the magic */
    ck_assert_int_eq(tu_write_file(ip, gz, 2), 0);
    EXPECT_ERR(kdcl_dataset_load_idx(ip, lp, &d), KDCL_ERR_FORMAT, "tgz-images.gz");
    assert_zeroed(&d);
    free(gz);
    free(im);
    free(lb);
}
END_TEST

START_TEST(idx_corrupt_gz)
{
    size_t is, ls, gs;
    uint8_t *im = make_idx_images(50, 8, 8, &is), *lb = make_idx_labels(50, &ls);
    const char *ip = tu_path("cgz-images"), *lp = tu_path("cgz-labels.gz");
    write_gz(lp, lb, ls);
    write_gz(ip, im, is);
    uint8_t *gz = read_all(ip, &gs);
    ck_assert_uint_gt(gs, 40);
    kdcl_dataset d;
    /* flip bytes in the deflate stream */
    uint8_t *bad = malloc(gs);
    memcpy(bad, gz, gs);
    for (size_t i = 12; i < gs - 12; i += 3) bad[i] ^= 0xA5;
    ck_assert_int_eq(tu_write_file(ip, bad, gs), 0);
    EXPECT_ERR(kdcl_dataset_load_idx(ip, lp, &d), KDCL_ERR_FORMAT, "cgz-images");
    assert_zeroed(&d);
    /* flip a single byte of the CRC: only the check value catches it */
    memcpy(bad, gz, gs);
    bad[gs - 6] ^= 0x01;
    ck_assert_int_eq(tu_write_file(ip, bad, gs), 0);
    EXPECT_ERR(kdcl_dataset_load_idx(ip, lp, &d), KDCL_ERR_FORMAT, "cgz-images");
    /* corrupt labels gz */
    ck_assert_int_eq(tu_write_file(ip, gz, gs), 0);
    size_t lgs;
    uint8_t *lgz = read_all(lp, &lgs);
    lgz[lgs / 2] ^= 0xFF;
    lgz[lgs / 2 + 1] ^= 0xFF;
    ck_assert_int_eq(tu_write_file(lp, lgz, lgs), 0);
    EXPECT_ERR(kdcl_dataset_load_idx(ip, lp, &d), KDCL_ERR_FORMAT, "cgz-labels.gz");
    assert_zeroed(&d);
    free(lgz);
    free(bad);
    free(gz);
    free(im);
    free(lb);
}
END_TEST

START_TEST(idx_count_mismatch)
{
    size_t is, ls;
    uint8_t *im = make_idx_images(6, 3, 3, &is), *lb = make_idx_labels(5, &ls);
    const char *ip = tu_path("mm-images"), *lp = tu_path("mm-labels");
    ck_assert_int_eq(tu_write_file(ip, im, is), 0);
    ck_assert_int_eq(tu_write_file(lp, lb, ls), 0);
    kdcl_dataset d;
    EXPECT_ERR(kdcl_dataset_load_idx(ip, lp, &d), KDCL_ERR_FORMAT, "mm-images");
    EXPECT_ERR(kdcl_dataset_load_idx(ip, lp, &d), KDCL_ERR_FORMAT, "mm-labels");
    EXPECT_ERR(kdcl_dataset_load_idx(ip, lp, &d), KDCL_ERR_FORMAT, "6 images");
    assert_zeroed(&d);
    free(im);
    free(lb);
}
END_TEST

START_TEST(idx_overflow_and_zero_dims)
{
    size_t ls;
    uint8_t *lb = make_idx_labels(2, &ls);
    const char *ip = tu_path("ovf-images"), *lp = tu_path("ovf-labels");
    ck_assert_int_eq(tu_write_file(lp, lb, ls), 0);
    uint8_t hdr[32] = {0};
    put_be32(hdr, 0x00000803u);
    put_be32(hdr + 4, 0xFFFFFFFFu);
    put_be32(hdr + 8, 0xFFFFFFFFu);
    put_be32(hdr + 12, 0xFFFFFFFFu);
    ck_assert_int_eq(tu_write_file(ip, hdr, sizeof hdr), 0);
    kdcl_dataset d;
    kdcl_status s = kdcl_dataset_load_idx(ip, lp, &d);
    ck_assert(s == KDCL_ERR_OVERFLOW || s == KDCL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "ovf-images"));
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "overflow"));
    assert_zeroed(&d);
    /* huge but representable count in a tiny file -> truncated, no giant allocation */
    put_be32(hdr + 4, 0xFFFFFFFFu);
    put_be32(hdr + 8, 28);
    put_be32(hdr + 12, 28);
    ck_assert_int_eq(tu_write_file(ip, hdr, sizeof hdr), 0);
    EXPECT_ERR(kdcl_dataset_load_idx(ip, lp, &d), KDCL_ERR_FORMAT, "truncated");
    /* zero dims */
    put_be32(hdr + 4, 2);
    put_be32(hdr + 8, 0);
    put_be32(hdr + 12, 4);
    ck_assert_int_eq(tu_write_file(ip, hdr, 16), 0);
    EXPECT_ERR(kdcl_dataset_load_idx(ip, lp, &d), KDCL_ERR_FORMAT, "zero");
    EXPECT_ERR(kdcl_dataset_load_idx(ip, lp, &d), KDCL_ERR_FORMAT, "ovf-images");
    /* zero examples in the labels file */
    uint8_t l0[8];
    put_be32(l0, 0x00000801u);
    put_be32(l0 + 4, 0);
    ck_assert_int_eq(tu_write_file(lp, l0, 8), 0);
    EXPECT_ERR(kdcl_dataset_load_idx(ip, lp, &d), KDCL_ERR_FORMAT, "ovf-labels");
    assert_zeroed(&d);
    free(lb);
}
END_TEST

/* ---- CIFAR ------------------------------------------------------------- */

static uint8_t cifar_px(size_t rec, size_t ch, size_t p)
{
    return (uint8_t)((rec * 31 + ch * 101 + p * 13) & 0xff);
}

/* n records; nlab = 1 (CIFAR-10) or 2 (CIFAR-100). Labels: coarse r%20, fine (r*7)%100 (or r%10). */
static uint8_t *make_cifar(size_t n, int nlab, size_t *size)
{
    size_t rec = (size_t)nlab + 3072;
    uint8_t *b = malloc(n * rec);
    ck_assert_ptr_nonnull(b);
    for (size_t r = 0; r < n; r++) {
        uint8_t *p = b + r * rec;
        if (nlab == 1) {
            p[0] = (uint8_t)(r % 10);
        } else {
            p[0] = (uint8_t)(r % 20);
            p[1] = (uint8_t)((r * 7) % 100);
        }
        for (size_t ch = 0; ch < 3; ch++)
            for (size_t q = 0; q < 1024; q++) p[nlab + ch * 1024 + q] = cifar_px(r, ch, q);
    }
    *size = n * rec;
    return b;
}

static void check_cifar_pixels(const kdcl_dataset *d, size_t first_rec, size_t start, size_t n)
{
    for (size_t i = 0; i < n; i++)
        for (size_t y = 0; y < 32; y++)
            for (size_t x = 0; x < 32; x++)
                for (size_t ch = 0; ch < 3; ch++)
                    ck_assert_uint_eq(d->images[(start + i) * 3072 + (y * 32 + x) * 3 + ch],
                                      cifar_px(first_rec + i, ch, y * 32 + x));
}

START_TEST(cifar10_convert)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", tu_path("c10"));
    mkdir(dir, 0755);
    char f1[4200], f2[4200], meta[4200];
    snprintf(f1, sizeof f1, "%s/a.bin", dir);
    snprintf(f2, sizeof f2, "%s/b.bin", dir);
    snprintf(meta, sizeof meta, "%s/batches.meta.txt", dir);
    size_t s1, s2;
    uint8_t *b1 = make_cifar(3, 1, &s1), *b2 = make_cifar(12, 1, &s2);
    ck_assert_int_eq(tu_write_file(f1, b1, s1), 0);
    ck_assert_int_eq(tu_write_file(f2, b2 + 3 * 3073, s2 - 3 * 3073), 0); /* records 3..11 */
    const char *names = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";
    ck_assert_int_eq(tu_write_file(meta, names, strlen(names)), 0);
    const char *files[2] = {f1, f2};
    kdcl_dataset d;
    EXPECT_OK(kdcl_dataset_load_cifar(files, 2, 0, 0, &d));
    ck_assert_uint_eq(d.n, 12);
    ck_assert_uint_eq(d.h, 32);
    ck_assert_uint_eq(d.w, 32);
    ck_assert_uint_eq(d.c, 3);
    ck_assert_uint_eq(d.dim, 3072);
    ck_assert_uint_eq(d.n_classes, 10);
    for (size_t i = 0; i < 12; i++) ck_assert_int_eq(d.labels[i], (int32_t)(i % 10));
    check_cifar_pixels(&d, 0, 0, 12);
    ck_assert_ptr_nonnull(d.class_names);
    ck_assert_str_eq(d.class_names[0], "airplane");
    ck_assert_str_eq(d.class_names[9], "truck");
    kdcl_dataset_free(&d);
    assert_zeroed(&d);
    free(b1);
    free(b2);
}
END_TEST

START_TEST(cifar_bad_files)
{
    size_t s;
    uint8_t *b = make_cifar(2, 1, &s);
    const char *f = tu_path("cbad.bin");
    const char *files[1] = {f};
    kdcl_dataset d;
    ck_assert_int_eq(tu_write_file(f, b, s - 100), 0);
    EXPECT_ERR(kdcl_dataset_load_cifar(files, 1, 0, 0, &d), KDCL_ERR_FORMAT, "cbad.bin");
    EXPECT_ERR(kdcl_dataset_load_cifar(files, 1, 0, 0, &d), KDCL_ERR_FORMAT, "3073");
    assert_zeroed(&d);
    /* empty file */
    ck_assert_int_eq(tu_write_file(f, b, 0), 0);
    EXPECT_ERR(kdcl_dataset_load_cifar(files, 1, 0, 0, &d), KDCL_ERR_FORMAT, "cbad.bin");
    /* CIFAR-10 label out of range */
    b[3073] = 10;
    ck_assert_int_eq(tu_write_file(f, b, s), 0);
    EXPECT_ERR(kdcl_dataset_load_cifar(files, 1, 0, 0, &d), KDCL_ERR_FORMAT, "cbad.bin");
    EXPECT_ERR(kdcl_dataset_load_cifar(files, 1, 0, 0, &d), KDCL_ERR_FORMAT, "label 10");
    /* CIFAR-100 records read as CIFAR-10: wrong record size */
    size_t s100;
    uint8_t *c = make_cifar(3, 2, &s100);
    ck_assert_int_eq(tu_write_file(f, c, s100), 0);
    EXPECT_ERR(kdcl_dataset_load_cifar(files, 1, 0, 0, &d), KDCL_ERR_FORMAT, "CIFAR-100");
    /* missing file; NULL / zero files */
    const char *missing[2] = {f, tu_path("cifar-missing.bin")};
    EXPECT_ERR(kdcl_dataset_load_cifar(missing, 2, 1, 1, &d), KDCL_ERR_IO, "cifar-missing.bin");
    EXPECT_ERR(kdcl_dataset_load_cifar(files, 0, 0, 0, &d), KDCL_ERR_INVALID_ARG, "no files");
    assert_zeroed(&d);
    free(b);
    free(c);
}
END_TEST

START_TEST(cifar100_fine_coarse)
{
    size_t s;
    uint8_t *b = make_cifar(25, 2, &s);
    const char *f = tu_path("c100.bin");
    ck_assert_int_eq(tu_write_file(f, b, s), 0);
    const char *files[1] = {f};
    kdcl_dataset fine, coarse;
    EXPECT_OK(kdcl_dataset_load_cifar(files, 1, 1, 1, &fine));
    EXPECT_OK(kdcl_dataset_load_cifar(files, 1, 1, 0, &coarse));
    ck_assert_uint_eq(fine.n, 25);
    ck_assert_uint_eq(coarse.n, 25);
    ck_assert_uint_eq(fine.n_classes, 100);
    ck_assert_uint_eq(coarse.n_classes, 20);
    for (size_t i = 0; i < 25; i++) {
        ck_assert_int_eq(fine.labels[i], (int32_t)((i * 7) % 100));
        ck_assert_int_eq(coarse.labels[i], (int32_t)(i % 20));
    }
    check_cifar_pixels(&fine, 0, 0, 25);
    ck_assert_mem_eq(fine.images, coarse.images, 25 * 3072);
    kdcl_dataset_free(&fine);
    kdcl_dataset_free(&coarse);
    /* fine label out of range */
    b[1] = 100;
    ck_assert_int_eq(tu_write_file(f, b, s), 0);
    EXPECT_ERR(kdcl_dataset_load_cifar(files, 1, 1, 1, &fine), KDCL_ERR_FORMAT, "c100.bin");
    free(b);
}
END_TEST

/* ---- image folders ----------------------------------------------------- */

static void mkd(const char *p) { ck_assert_msg(mkdir(p, 0755) == 0, "mkdir %s", p); }

static const char *pj(const char *a, const char *b)
{
    static char bufs[8][4200];
    static int k;
    char *o = bufs[k++ & 7];
    size_t la = strlen(a), lb = strlen(b);
    ck_assert_uint_lt(la + lb + 2, sizeof bufs[0]);
    memmove(o, a, la); /* a may be an earlier pj() result */
    o[la] = '/';
    memcpy(o + la + 1, b, lb + 1);
    return o;
}

/* 4x4 images: grey ant/x.png = 10*i; RGB cat/a.bmp pattern; RGB cat/b.png constant. */
static uint8_t grey_px(size_t i) { return (uint8_t)(10 * i + 5); }
static uint8_t rgb_px(size_t i, size_t ch) { return (uint8_t)(i * 16 + ch * 70); }

START_TEST(image_folder)
{
    char root[4096];
    snprintf(root, sizeof root, "%s", tu_path("imgs"));
    mkd(root);
    mkd(pj(root, "cat"));
    mkd(pj(root, "ant"));
    mkd(pj(root, ".git"));
    ck_assert_int_eq(tu_write_file(pj(root, "README.txt"), "hi", 2), 0);
    ck_assert_int_eq(tu_write_file(pj(pj(root, "cat"), ".DS_Store"), "junk", 4), 0);
    ck_assert_int_eq(tu_write_file(pj(pj(root, ".git"), "x.png"), "junk", 4), 0);

    uint8_t g[16], rgb[48], cst[48];
    for (size_t i = 0; i < 16; i++) {
        g[i] = grey_px(i);
        for (size_t ch = 0; ch < 3; ch++) {
            rgb[3 * i + ch] = rgb_px(i, ch);
            cst[3 * i + ch] = (uint8_t)(ch == 0 ? 200 : ch == 1 ? 100 : 50);
        }
    }
    ck_assert(stbi_write_png(pj(pj(root, "ant"), "x.png"), 4, 4, 1, g, 4));
    ck_assert(stbi_write_png(pj(pj(root, "cat"), "b.png"), 4, 4, 3, cst, 12));
    ck_assert(stbi_write_bmp(pj(pj(root, "cat"), "a.bmp"), 4, 4, 3, rgb));
    /* more classes and files, created out of order, so that readdir order is
     * unlikely to be sorted already */
    static const char *const extra[] = {"fox", "dog", "bee", "emu"};
    for (int k = 0; k < 4; k++) {
        uint8_t v[4] = {(uint8_t)(k + 1), (uint8_t)(k + 1), (uint8_t)(k + 1), (uint8_t)(k + 1)};
        mkd(pj(root, extra[k]));
        ck_assert(stbi_write_png(pj(pj(root, extra[k]), "p.png"), 2, 2, 1, v, 2));
    }
    static const char *const catx[] = {"z.png", "c.png", "d.png", "0.png"};
    for (int k = 0; k < 4; k++) {
        uint8_t v[4];
        memset(v, 100 + k, sizeof v);
        ck_assert(stbi_write_png(pj(pj(root, "cat"), catx[k]), 2, 2, 1, v, 2));
    }

    kdcl_dataset d;
    EXPECT_OK(kdcl_dataset_load_images(root, 4, 4, 3, &d));
    /* order: ant/x.png, bee/p.png, cat/{0.png, a.bmp, b.png, c.png, d.png, z.png},
     * dog/p.png, emu/p.png, fox/p.png */
    ck_assert_uint_eq(d.n, 11);
    ck_assert_uint_eq(d.n_classes, 6);
    ck_assert_uint_eq(d.h, 4);
    ck_assert_uint_eq(d.w, 4);
    ck_assert_uint_eq(d.c, 3);
    ck_assert_uint_eq(d.dim, 48);
    ck_assert_ptr_nonnull(d.class_names);
    static const char *const sorted[] = {"ant", "bee", "cat", "dog", "emu", "fox"};
    for (int k = 0; k < 6; k++) ck_assert_str_eq(d.class_names[k], sorted[k]);
    static const int32_t lab[11] = {0, 1, 2, 2, 2, 2, 2, 2, 3, 4, 5};
    for (int i = 0; i < 11; i++) ck_assert_int_eq(d.labels[i], lab[i]);
    for (size_t i = 0; i < 16; i++)
        for (size_t ch = 0; ch < 3; ch++) {
            ck_assert_uint_eq(d.images[3 * i + ch], grey_px(i));            /* ant/x.png */
            ck_assert_uint_eq(d.images[3 * 48 + 3 * i + ch], rgb_px(i, ch)); /* cat/a.bmp */
            ck_assert_uint_eq(d.images[4 * 48 + 3 * i + ch], cst[3 * i + ch]); /* cat/b.png */
        }
    /* the constant 2x2 grey images, upscaled and replicated to RGB */
    static const int first[11] = {-1, 3, 103, -1, -1, 101, 102, 100, 2, 4, 1};
    for (int i = 0; i < 11; i++)
        if (first[i] >= 0)
            for (int q = 0; q < 48; q++)
                ck_assert_int_le(abs((int)d.images[i * 48 + q] - first[i]), 1);
    kdcl_dataset_free(&d);
    /* grey */
    EXPECT_OK(kdcl_dataset_load_images(root, 4, 4, 1, &d));
    ck_assert_uint_eq(d.c, 1);
    ck_assert_uint_eq(d.dim, 16);
    for (size_t i = 0; i < 16; i++) ck_assert_uint_eq(d.images[i], grey_px(i));
    kdcl_dataset_free(&d);

    /* resize to 8 wide x 2 high: constant image stays (nearly) constant */
    EXPECT_OK(kdcl_dataset_load_images(root, 8, 2, 3, &d));
    ck_assert_uint_eq(d.w, 8);
    ck_assert_uint_eq(d.h, 2);
    ck_assert_uint_eq(d.dim, 48);
    for (size_t i = 0; i < 16; i++)
        for (size_t ch = 0; ch < 3; ch++) {
            int v = d.images[4 * 48 + 3 * i + ch], e = cst[3 * i + ch];
            ck_assert_int_le(abs(v - e), 1);
        }
    kdcl_dataset_free(&d);

    /* bad arguments */
    EXPECT_ERR(kdcl_dataset_load_images(root, 4, 4, 2, &d), KDCL_ERR_INVALID_ARG, "channels");
    EXPECT_ERR(kdcl_dataset_load_images(root, 0, 4, 3, &d), KDCL_ERR_INVALID_ARG, "imgs");
    assert_zeroed(&d);
}
END_TEST

START_TEST(image_folder_errors)
{
    kdcl_dataset d;
    /* unreadable image */
    char root[4096];
    snprintf(root, sizeof root, "%s", tu_path("badimgs"));
    mkd(root);
    mkd(pj(root, "a"));
    uint8_t ok[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    ck_assert(stbi_write_png(pj(pj(root, "a"), "good.png"), 2, 2, 3, ok, 6));
    ck_assert_int_eq(tu_write_file(pj(pj(root, "a"), "zz-broken.png"), "\x89PNG garbage!!", 14), 0);
    EXPECT_ERR(kdcl_dataset_load_images(root, 4, 4, 3, &d), KDCL_ERR_FORMAT, "zz-broken.png");
    assert_zeroed(&d);
    /* empty image file */
    ck_assert_int_eq(tu_write_file(pj(pj(root, "a"), "zz-broken.png"), "", 0), 0);
    EXPECT_ERR(kdcl_dataset_load_images(root, 4, 4, 3, &d), KDCL_ERR_FORMAT, "zz-broken.png");

    /* empty root */
    char empty[4096];
    snprintf(empty, sizeof empty, "%s", tu_path("emptyroot"));
    mkd(empty);
    EXPECT_ERR(kdcl_dataset_load_images(empty, 4, 4, 3, &d), KDCL_ERR_FORMAT, "emptyroot");
    EXPECT_ERR(kdcl_dataset_load_images(empty, 4, 4, 3, &d), KDCL_ERR_FORMAT, "empty");

    /* root with files only: no class folders */
    char flat[4096];
    snprintf(flat, sizeof flat, "%s", tu_path("flatroot"));
    mkd(flat);
    ck_assert(stbi_write_png(pj(flat, "img.png"), 2, 2, 3, ok, 6));
    EXPECT_ERR(kdcl_dataset_load_images(flat, 4, 4, 3, &d), KDCL_ERR_FORMAT, "flatroot");
    EXPECT_ERR(kdcl_dataset_load_images(flat, 4, 4, 3, &d), KDCL_ERR_FORMAT, "class folder");

    /* a class folder with no images (only a hidden file) */
    mkd(pj(flat, "cls"));
    mkd(pj(flat, "empty_cls"));
    ck_assert(stbi_write_png(pj(pj(flat, "cls"), "img.png"), 2, 2, 3, ok, 6));
    ck_assert_int_eq(tu_write_file(pj(pj(flat, "empty_cls"), ".hidden"), "x", 1), 0);
    EXPECT_ERR(kdcl_dataset_load_images(flat, 4, 4, 3, &d), KDCL_ERR_FORMAT, "empty_cls");

    /* missing root */
    EXPECT_ERR(kdcl_dataset_load_images(tu_path("nope-root"), 4, 4, 3, &d), KDCL_ERR_IO,
               "nope-root");
    assert_zeroed(&d);
}
END_TEST

/* ---- subsets, splits, shuffling ---------------------------------------- */

static void make_small(kdcl_dataset *d, size_t n)
{
    memset(d, 0, sizeof *d);
    d->n = n;
    d->h = 1;
    d->w = 2;
    d->c = 1;
    d->dim = 2;
    d->n_classes = 3;
    d->images = malloc(n * 2);
    d->labels = malloc(n * sizeof *d->labels);
    d->class_names = calloc(3, sizeof(char *));
    ck_assert_ptr_nonnull(d->images);
    ck_assert_ptr_nonnull(d->labels);
    ck_assert_ptr_nonnull(d->class_names);
    for (size_t i = 0; i < n; i++) {
        d->images[2 * i] = (uint8_t)i;
        d->images[2 * i + 1] = (uint8_t)(i ^ 0x55);
        d->labels[i] = (int32_t)(i % 3);
    }
    const char *nm[3] = {"zero", "one", "two"};
    for (int k = 0; k < 3; k++) {
        d->class_names[k] = malloc(8);
        strcpy(d->class_names[k], nm[k]);
    }
}

START_TEST(subset_and_split)
{
    kdcl_dataset d, s, tr, va;
    make_small(&d, 100);
    size_t idx[4] = {7, 0, 99, 7};
    EXPECT_OK(kdcl_dataset_subset(&d, idx, 4, &s));
    ck_assert_uint_eq(s.n, 4);
    ck_assert_uint_eq(s.n_classes, 3);
    ck_assert_str_eq(s.class_names[2], "two");
    ck_assert_ptr_ne(s.class_names, d.class_names);
    for (size_t i = 0; i < 4; i++) {
        ck_assert_uint_eq(s.images[2 * i], (uint8_t)idx[i]);
        ck_assert_uint_eq(s.images[2 * i + 1], (uint8_t)(idx[i] ^ 0x55));
        ck_assert_int_eq(s.labels[i], (int32_t)(idx[i] % 3));
    }
    kdcl_dataset_free(&s);
    idx[2] = 100;
    EXPECT_ERR(kdcl_dataset_subset(&d, idx, 4, &s), KDCL_ERR_INVALID_ARG, "100");
    assert_zeroed(&s);
    EXPECT_OK(kdcl_dataset_subset(&d, idx, 0, &s)); /* empty subset */
    ck_assert_uint_eq(s.n, 0);
    kdcl_dataset_free(&s);

    EXPECT_OK(kdcl_dataset_split_val(&d, 30, 42, &tr, &va));
    ck_assert_uint_eq(tr.n, 70);
    ck_assert_uint_eq(va.n, 30);
    /* disjoint, covering, each in original order */
    int seen[100] = {0};
    for (size_t i = 0; i < tr.n; i++) {
        seen[tr.images[2 * i]]++;
        if (i) ck_assert_uint_lt(tr.images[2 * i - 2], tr.images[2 * i]);
        ck_assert_int_eq(tr.labels[i], tr.images[2 * i] % 3);
    }
    for (size_t i = 0; i < va.n; i++) {
        seen[va.images[2 * i]]++;
        if (i) ck_assert_uint_lt(va.images[2 * i - 2], va.images[2 * i]);
    }
    for (int i = 0; i < 100; i++) ck_assert_int_eq(seen[i], 1);
    /* the validation set is not simply the tail */
    ck_assert_uint_ne(va.images[0], 70);
    /* deterministic per seed; another seed gives another set */
    kdcl_dataset tr2, va2;
    EXPECT_OK(kdcl_dataset_split_val(&d, 30, 42, &tr2, &va2));
    ck_assert_mem_eq(va.images, va2.images, 60);
    kdcl_dataset_free(&tr2);
    kdcl_dataset_free(&va2);
    EXPECT_OK(kdcl_dataset_split_val(&d, 30, 43, &tr2, &va2));
    ck_assert(memcmp(va.images, va2.images, 60) != 0);
    kdcl_dataset_free(&tr2);
    kdcl_dataset_free(&va2);
    kdcl_dataset_free(&tr);
    kdcl_dataset_free(&va);

    EXPECT_OK(kdcl_dataset_split_val(&d, 0, 1, &tr, &va));
    ck_assert_uint_eq(tr.n, 100);
    ck_assert_uint_eq(va.n, 0);
    ck_assert_mem_eq(tr.images, d.images, 200);
    kdcl_dataset_free(&tr);
    kdcl_dataset_free(&va);
    EXPECT_ERR(kdcl_dataset_split_val(&d, 101, 1, &tr, &va), KDCL_ERR_INVALID_ARG, "101");

    /* copy + class counts */
    kdcl_dataset cp;
    EXPECT_OK(kdcl_dataset_copy(&d, &cp));
    ck_assert_mem_eq(cp.images, d.images, 200);
    size_t counts[3];
    kdcl_dataset_class_counts(&cp, counts);
    ck_assert_uint_eq(counts[0], 34);
    ck_assert_uint_eq(counts[1], 33);
    ck_assert_uint_eq(counts[2], 33);
    kdcl_dataset_free(&cp);
    kdcl_dataset_free(&d);
}
END_TEST

START_TEST(shuffle_determinism)
{
    enum { N = 1000 };
    size_t *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b), *c = malloc(N * sizeof *c);
    kdcl_shuffle_indices(a, N, 123, 5);
    kdcl_shuffle_indices(b, N, 123, 5);
    kdcl_shuffle_indices(c, N, 123, 6);
    ck_assert_mem_eq(a, b, N * sizeof *a);
    ck_assert(memcmp(a, c, N * sizeof *a) != 0);
    kdcl_shuffle_indices(c, N, 124, 5);
    ck_assert(memcmp(a, c, N * sizeof *a) != 0);
    /* a permutation, and actually shuffled */
    int seen[N] = {0};
    size_t fixed = 0;
    for (size_t i = 0; i < N; i++) {
        ck_assert_uint_lt(a[i], N);
        seen[a[i]]++;
        fixed += a[i] == i;
    }
    for (size_t i = 0; i < N; i++) ck_assert_int_eq(seen[i], 1);
    ck_assert_uint_lt(fixed, 20);
    kdcl_shuffle_indices(a, 0, 1, 1);
    kdcl_shuffle_indices(a, 1, 1, 1);
    ck_assert_uint_eq(a[0], 0);

    /* RNG: deterministic, below() in range and roughly uniform */
    kdcl_rng r1, r2;
    kdcl_rng_seed(&r1, 99);
    kdcl_rng_seed(&r2, 99);
    for (int i = 0; i < 100; i++) ck_assert_uint_eq(kdcl_rng_next(&r1), kdcl_rng_next(&r2));
    int hist[7] = {0};
    for (int i = 0; i < 70000; i++) {
        uint64_t v = kdcl_rng_below(&r1, 7);
        ck_assert_uint_lt(v, 7);
        hist[v]++;
    }
    for (int k = 0; k < 7; k++) {
        ck_assert_int_gt(hist[k], 9400);
        ck_assert_int_lt(hist[k], 10600);
    }
    ck_assert_uint_eq(kdcl_rng_below(&r1, 0), 0);
    ck_assert_uint_eq(kdcl_rng_below(&r1, 1), 0);
    for (int i = 0; i < 1000; i++) {
        double u = kdcl_rng_uniform(&r1);
        ck_assert(u >= 0.0 && u < 1.0);
    }
    free(a);
    free(b);
    free(c);
}
END_TEST

/* ---- load_split -------------------------------------------------------- */

START_TEST(load_split_detect)
{
    kdcl_dataset d;
    /* IDX: gz images + raw labels, only a train split */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", tu_path("split-idx"));
    mkd(dir);
    size_t is, ls;
    uint8_t *im = make_idx_images(11, 3, 2, &is), *lb = make_idx_labels(11, &ls);
    write_gz(pj(dir, "train-images-idx3-ubyte.gz"), im, is);
    ck_assert_int_eq(tu_write_file(pj(dir, "train-labels-idx1-ubyte"), lb, ls), 0);
    EXPECT_OK(kdcl_dataset_load_split(dir, "train", &d));
    check_idx_values(&d, 11, 3, 2);
    kdcl_dataset_free(&d);
    EXPECT_ERR(kdcl_dataset_load_split(dir, "test", &d), KDCL_ERR_IO, "t10k-images-idx3-ubyte");
    EXPECT_ERR(kdcl_dataset_load_split(dir, "test", &d), KDCL_ERR_IO, "split-idx");
    /* images without labels */
    write_gz(pj(dir, "t10k-images-idx3-ubyte.gz"), im, is);
    EXPECT_ERR(kdcl_dataset_load_split(dir, "test", &d), KDCL_ERR_IO, "labels");
    assert_zeroed(&d);

    /* CIFAR-10 in cifar-10-batches-bin/ */
    snprintf(dir, sizeof dir, "%s", tu_path("split-c10"));
    mkd(dir);
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/cifar-10-batches-bin", dir);
    mkd(sub);
    size_t cs;
    uint8_t *cb = make_cifar(10, 1, &cs);
    for (int i = 0; i < 5; i++) {
        char name[32];
        snprintf(name, sizeof name, "data_batch_%d.bin", i + 1);
        ck_assert_int_eq(tu_write_file(pj(sub, name), cb + 2 * i * 3073, 2 * 3073), 0);
    }
    ck_assert_int_eq(tu_write_file(pj(sub, "test_batch.bin"), cb, 3 * 3073), 0);
    EXPECT_OK(kdcl_dataset_load_split(dir, "train", &d));
    ck_assert_uint_eq(d.n, 10);
    ck_assert_uint_eq(d.n_classes, 10);
    check_cifar_pixels(&d, 0, 0, 10);
    kdcl_dataset_free(&d);
    EXPECT_OK(kdcl_dataset_load_split(dir, "test", &d));
    ck_assert_uint_eq(d.n, 3);
    kdcl_dataset_free(&d);
    ck_assert_int_eq(remove(pj(sub, "data_batch_4.bin")), 0);
    EXPECT_ERR(kdcl_dataset_load_split(dir, "train", &d), KDCL_ERR_IO, "data_batch_4.bin");

    /* CIFAR-100 */
    snprintf(dir, sizeof dir, "%s", tu_path("split-c100"));
    mkd(dir);
    size_t c1s;
    uint8_t *c1 = make_cifar(4, 2, &c1s);
    ck_assert_int_eq(tu_write_file(pj(dir, "train.bin"), c1, c1s), 0);
    EXPECT_OK(kdcl_dataset_load_split(dir, "train", &d));
    ck_assert_uint_eq(d.n, 4);
    ck_assert_uint_eq(d.n_classes, 100);
    ck_assert_int_eq(d.labels[3], 21);
    kdcl_dataset_free(&d);

    /* image folder <dir>/<split>/<class> */
    snprintf(dir, sizeof dir, "%s", tu_path("split-img"));
    mkd(dir);
    mkd(pj(dir, "val"));
    mkd(pj(pj(dir, "val"), "k"));
    uint8_t px[27];
    for (int i = 0; i < 27; i++) px[i] = (uint8_t)(i * 9);
    ck_assert(stbi_write_png(pj(pj(pj(dir, "val"), "k"), "p.png"), 3, 3, 3, px, 9));
    EXPECT_OK(kdcl_dataset_load_split(dir, "val", &d));
    ck_assert_uint_eq(d.n, 1);
    ck_assert_uint_eq(d.w, 32);
    ck_assert_uint_eq(d.h, 32);
    ck_assert_uint_eq(d.c, 3);
    ck_assert_str_eq(d.class_names[0], "k");
    kdcl_dataset_free(&d);

    /* nothing there */
    EXPECT_ERR(kdcl_dataset_load_split(dir, "train", &d), KDCL_ERR_IO, "data_batch_1..5.bin");
    EXPECT_ERR(kdcl_dataset_load_split(dir, "train", &d), KDCL_ERR_IO, "train-images-idx3-ubyte");
    EXPECT_ERR(kdcl_dataset_load_split(dir, "train", &d), KDCL_ERR_IO, "split-img");
    EXPECT_ERR(kdcl_dataset_load_split(tu_path("split-none"), "train", &d), KDCL_ERR_IO,
               "split-none");
    EXPECT_ERR(kdcl_dataset_load_split(dir, "../x", &d), KDCL_ERR_INVALID_ARG, "../x");
    assert_zeroed(&d);
    free(c1);
    free(cb);
    free(im);
    free(lb);
}
END_TEST

/* ---- real data (optional) ---------------------------------------------- */

static void check_real(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) != 0) {
        fprintf(stderr, "test_data: %s absent, skipping\n", dir);
        return;
    }
    kdcl_dataset tr, te;
    EXPECT_OK(kdcl_dataset_load_split(dir, "train", &tr));
    EXPECT_OK(kdcl_dataset_load_split(dir, "test", &te));
    ck_assert_uint_eq(tr.n, 60000);
    ck_assert_uint_eq(te.n, 10000);
    ck_assert_uint_eq(tr.h, 28);
    ck_assert_uint_eq(tr.w, 28);
    ck_assert_uint_eq(tr.c, 1);
    ck_assert_uint_eq(te.dim, 784);
    ck_assert_uint_eq(tr.n_classes, 10);
    ck_assert_uint_eq(te.n_classes, 10);
    size_t counts[10];
    kdcl_dataset_class_counts(&te, counts);
    for (int k = 0; k < 10; k++) ck_assert_uint_gt(counts[k], 800);
    kdcl_dataset_free(&tr);
    kdcl_dataset_free(&te);
}

START_TEST(real_fashion_mnist) { check_real("/usr/share/datasets/fashion-mnist"); }
END_TEST

/* MNIST is not packaged by Debian: point KDCL_MNIST_DIR at the canonical files
 * (datasets/README.md) to run this check; it is skipped otherwise. */
START_TEST(real_mnist)
{
    const char *dir = getenv("KDCL_MNIST_DIR");
    if (dir && *dir) check_real(dir);
}
END_TEST

static Suite *data_suite(void)
{
    Suite *s = suite_create("data");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, idx_raw_roundtrip);
    tcase_add_test(tc, idx_gz_roundtrip);
    tcase_add_test(tc, idx_wrong_magic);
    tcase_add_test(tc, idx_truncated_raw);
    tcase_add_test(tc, idx_truncated_gz);
    tcase_add_test(tc, idx_corrupt_gz);
    tcase_add_test(tc, idx_count_mismatch);
    tcase_add_test(tc, idx_overflow_and_zero_dims);
    tcase_add_test(tc, cifar10_convert);
    tcase_add_test(tc, cifar_bad_files);
    tcase_add_test(tc, cifar100_fine_coarse);
    tcase_add_test(tc, image_folder);
    tcase_add_test(tc, image_folder_errors);
    tcase_add_test(tc, subset_and_split);
    tcase_add_test(tc, shuffle_determinism);
    tcase_add_test(tc, load_split_detect);
    tcase_add_test(tc, real_fashion_mnist);
    tcase_add_test(tc, real_mnist);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(data_suite()); }
