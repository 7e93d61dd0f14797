/* Check suite for the dataset module (IDX, CIFAR, image folders, splits, shuffling). */
#include "kdcl/data.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include <jpeglib.h>
#include <png.h>
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

/* Gzip IDX files are checked header-first: the stream is inflated into a
 * buffer of the size the header promises and may hold neither less nor more,
 * so a small file that inflates to far more than its header says is refused
 * without inflating it all. */
static struct rlimit idx_as_saved;
START_TEST(idx_gz_bomb)
{
    size_t is, ls;
    uint8_t *im = make_idx_images(10, 4, 4, &is), *lb = make_idx_labels(10, &ls);
    const char *ip = tu_path("bomb-images.gz"), *lp = tu_path("bomb-labels");
    ck_assert_int_eq(tu_write_file(lp, lb, ls), 0);
    /* 10 images of 4x4, then 256 MiB of zeros in the same stream */
    gzFile g = gzopen(ip, "wb1");
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(gzwrite(g, im, (unsigned)is), (int)is);
    uint8_t *zeros = calloc(1u << 20, 1);
    for (int i = 0; i < 256; i++) ck_assert_int_eq(gzwrite(g, zeros, 1u << 20), 1 << 20);
    ck_assert_int_eq(gzclose(g), Z_OK);
    free(zeros);
    struct stat st;
    ck_assert_int_eq(stat(ip, &st), 0);
    ck_assert_int_lt(st.st_size, 2 << 20); /* a small file */

    /* with the address space capped at what the process has plus 64 MiB, an
     * inflate-everything-first loader runs out of memory instead */
    kdcl_dataset d;
    ck_assert_int_eq(getrlimit(RLIMIT_AS, &idx_as_saved), 0);
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    ck_assert_int_eq(fscanf(f, "%lu", &pages), 1);
    fclose(f);
    struct rlimit r = idx_as_saved;
    r.rlim_cur = (rlim_t)pages * 4096u + ((rlim_t)64 << 20);
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &r), 0);
    clock_t t0 = clock();
    kdcl_status s = kdcl_dataset_load_idx(ip, lp, &d);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", kdcl_last_error());
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &idx_as_saved), 0);
    ck_assert_msg(s == KDCL_ERR_FORMAT, "%s: %s", kdcl_status_name(s), msg);
    ck_assert_msg(strstr(msg, "bomb-images.gz") && strstr(msg, "trailing") && strstr(msg, "176"),
                  "%s", msg);
    ck_assert_msg(secs < 1.0, "refusing took %.2f s", secs);
    assert_zeroed(&d);

    /* a header that promises far more than the stream holds: truncated, and
     * the buffer grows only with the data */
    uint8_t hdr[16 + 64];
    memset(hdr, 7, sizeof hdr);
    put_be32(hdr, 0x00000803u);
    put_be32(hdr + 4, 10);
    put_be32(hdr + 8, 0xFFFFFFu);
    put_be32(hdr + 12, 0xFFFFFFu);
    write_gz(ip, hdr, sizeof hdr);
    EXPECT_ERR(kdcl_dataset_load_idx(ip, lp, &d), KDCL_ERR_FORMAT, "holds 64 data bytes");
    /* the same raw: refused by its size on disk */
    ck_assert_int_eq(tu_write_file(ip, hdr, sizeof hdr), 0);
    EXPECT_ERR(kdcl_dataset_load_idx(ip, lp, &d), KDCL_ERR_FORMAT, "holds 64 data bytes");
    /* exact: fine; one byte more or less: refused, raw and gzip */
    uint8_t *big = malloc(is + 1);
    memcpy(big, im, is);
    big[is] = 0;
    for (int gz = 0; gz < 2; gz++) {
        for (int delta = -1; delta <= 1; delta++) {
            if (gz)
                write_gz(ip, big, (size_t)((long)is + delta));
            else
                ck_assert_int_eq(tu_write_file(ip, big, (size_t)((long)is + delta)), 0);
            if (delta == 0) {
                EXPECT_OK(kdcl_dataset_load_idx(ip, lp, &d));
                check_idx_values(&d, 10, 4, 4);
                kdcl_dataset_free(&d);
            } else {
                EXPECT_ERR(kdcl_dataset_load_idx(ip, lp, &d), KDCL_ERR_FORMAT,
                           delta < 0 ? "truncated" : "1 unexpected trailing bytes");
                assert_zeroed(&d);
            }
        }
    }
    free(big);
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

/* ---- image formats: PNG (libpng), JPEG (libjpeg-turbo), BMP (stb) ------- */

/* A PNG file of w x h with `color` (PNG_COLOR_TYPE_*), `depth` bits, rows of
 * packed samples as libpng takes them (16-bit big-endian), optional palette. */
static void write_png(const char *path, unsigned w, unsigned h, int color, int depth,
                      const uint8_t *px, size_t stride, const png_color *pal, int npal,
                      int interlace)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    ck_assert_ptr_nonnull(info);
    ck_assert_int_eq(setjmp(png_jmpbuf(png)), 0);
    png_init_io(png, f);
    png_set_IHDR(png, info, w, h, depth, color,
                 interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (pal) png_set_PLTE(png, info, pal, npal);
    png_write_info(png, info);
    png_bytep *rows = malloc(h * sizeof *rows);
    for (unsigned y = 0; y < h; y++) rows[y] = (png_bytep)(uintptr_t)(px + y * stride);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    ck_assert_int_eq(fclose(f), 0);
}

/* A JPEG in memory (malloc'd) of w x h x comps (1 grey, 3 RGB), 4:4:4. */
static uint8_t *make_jpeg(unsigned w, unsigned h, int comps, const uint8_t *px, int quality,
                          int progressive, size_t *size)
{
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr err;
    ci.err = jpeg_std_error(&err);
    jpeg_create_compress(&ci);
    unsigned char *out = NULL;
    unsigned long n = 0;
    jpeg_mem_dest(&ci, &out, &n);
    ci.image_width = w;
    ci.image_height = h;
    ci.input_components = comps;
    ci.in_color_space = comps == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, quality, TRUE);
    for (int c = 0; c < ci.num_components; c++)
        ci.comp_info[c].h_samp_factor = ci.comp_info[c].v_samp_factor = 1;
    if (progressive) jpeg_simple_progression(&ci);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < h) {
        JSAMPROW row = (JSAMPROW)(uintptr_t)(px + (size_t)ci.next_scanline * w * comps);
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    uint8_t *copy = malloc(n);
    memcpy(copy, out, n);
    free(out);
    *size = n;
    return copy;
}

/* An 8-bit paletted grey BMP (bottom-up), w x h. */
static void write_bmp8(const char *path, unsigned w, unsigned h, const uint8_t *g)
{
    unsigned stride = (w + 3) & ~3u, off = 14 + 40 + 1024, size = off + stride * h;
    uint8_t *b = calloc(size, 1);
    b[0] = 'B', b[1] = 'M';
    uint32_t v[] = {size, off, 40, w, h}; /* little-endian host assumed, as the loader's tests do */
    memcpy(b + 2, &v[0], 4);              /* file header: size, pixel offset */
    memcpy(b + 10, &v[1], 4);
    memcpy(b + 14, &v[2], 4); /* info header: its size, width, height */
    memcpy(b + 18, &v[3], 4);
    memcpy(b + 22, &v[4], 4);
    b[26] = 1;  /* planes */
    b[28] = 8;  /* bits */
    uint32_t ncol = 256;
    memcpy(b + 46, &ncol, 4);
    for (unsigned i = 0; i < 256; i++) b[54 + 4 * i] = b[55 + 4 * i] = b[56 + 4 * i] = (uint8_t)i;
    for (unsigned y = 0; y < h; y++)
        memcpy(b + off + (h - 1 - y) * stride, g + y * w, w);
    ck_assert_int_eq(tu_write_file(path, b, size), 0);
    free(b);
}

static uint8_t *slurp(const char *path, size_t *n) { return read_all(path, n); }

/* Decode a file through the public from-memory entry point at its own size. */
static kdcl_status decode_file(const char *path, size_t w, size_t h, size_t c, uint8_t *dst)
{
    size_t n;
    uint8_t *b = slurp(path, &n);
    kdcl_status s = kdcl_image_decode(b, n, path, w, h, c, dst);
    free(b);
    return s;
}

static uint8_t lum(const uint8_t *p) { return (uint8_t)((p[0] * 77u + p[1] * 150u + p[2] * 29u) >> 8); }

START_TEST(image_formats_decode)
{
    enum { W = 16, H = 8 };
    uint8_t g[W * H], rgb[W * H * 3], rgba[W * H * 4], g16[W * H * 2], out[W * H * 3];
    /* 8x8 blocks of one colour each: exact through a quality-100 4:4:4 JPEG
     * up to rounding */
    for (size_t y = 0; y < H; y++)
        for (size_t x = 0; x < W; x++) {
            size_t i = y * W + x, blk = x / 8;
            g[i] = (uint8_t)(60 + 120 * blk);
            rgb[3 * i + 0] = (uint8_t)(blk ? 200 : 30);
            rgb[3 * i + 1] = (uint8_t)(blk ? 40 : 180);
            rgb[3 * i + 2] = (uint8_t)(blk ? 90 : 250);
            for (int c = 0; c < 3; c++) rgba[4 * i + c] = rgb[3 * i + c];
            rgba[4 * i + 3] = (uint8_t)(i * 2);
            g16[2 * i] = (uint8_t)(i + 7), g16[2 * i + 1] = (uint8_t)(255 - i);
        }
    /* exact per-pixel tests use a non-block pattern too */
    uint8_t pat[W * H * 3];
    for (size_t i = 0; i < sizeof pat; i++) pat[i] = (uint8_t)(i * 37 + 11);

    char dir[4096];
    snprintf(dir, sizeof dir, "%s", tu_path("fmts"));
    mkd(dir);
    /* PNG grey, RGB, RGBA, 16-bit grey, 4-bit palette, interlaced RGB */
    write_png(pj(dir, "g.png"), W, H, PNG_COLOR_TYPE_GRAY, 8, g, W, NULL, 0, 0);
    write_png(pj(dir, "rgb.png"), W, H, PNG_COLOR_TYPE_RGB, 8, pat, 3 * W, NULL, 0, 0);
    write_png(pj(dir, "rgba.png"), W, H, PNG_COLOR_TYPE_RGB_ALPHA, 8, rgba, 4 * W, NULL, 0, 0);
    write_png(pj(dir, "g16.png"), W, H, PNG_COLOR_TYPE_GRAY, 16, g16, 2 * W, NULL, 0, 0);
    write_png(pj(dir, "il.png"), W, H, PNG_COLOR_TYPE_RGB, 8, pat, 3 * W, NULL, 0, 1);
    png_color pal[3] = {{10, 20, 30}, {200, 100, 50}, {0, 255, 128}};
    uint8_t idx4[W / 2 * H];
    for (size_t i = 0; i < sizeof idx4; i++) idx4[i] = (uint8_t)(((i % 3) << 4) | ((i + 1) % 3));
    write_png(pj(dir, "pal.png"), W, H, PNG_COLOR_TYPE_PALETTE, 4, idx4, W / 2, pal, 3, 0);

    EXPECT_OK(decode_file(pj(dir, "g.png"), W, H, 1, out));
    ck_assert_int_eq(memcmp(out, g, W * H), 0);
    EXPECT_OK(decode_file(pj(dir, "g.png"), W, H, 3, out));
    for (size_t i = 0; i < W * H; i++)
        for (int c = 0; c < 3; c++) ck_assert_uint_eq(out[3 * i + c], g[i]);
    EXPECT_OK(decode_file(pj(dir, "rgb.png"), W, H, 3, out));
    ck_assert_int_eq(memcmp(out, pat, sizeof pat), 0);
    EXPECT_OK(decode_file(pj(dir, "rgb.png"), W, H, 1, out));
    for (size_t i = 0; i < W * H; i++) ck_assert_uint_eq(out[i], lum(pat + 3 * i));
    EXPECT_OK(decode_file(pj(dir, "il.png"), W, H, 3, out));
    ck_assert_int_eq(memcmp(out, pat, sizeof pat), 0);
    EXPECT_OK(decode_file(pj(dir, "rgba.png"), W, H, 3, out)); /* alpha dropped */
    ck_assert_int_eq(memcmp(out, rgb, sizeof rgb), 0);
    EXPECT_OK(decode_file(pj(dir, "g16.png"), W, H, 1, out)); /* the high byte */
    for (size_t i = 0; i < W * H; i++) ck_assert_uint_eq(out[i], g16[2 * i]);
    EXPECT_OK(decode_file(pj(dir, "pal.png"), W, H, 3, out));
    for (size_t i = 0; i < W * H; i++) {
        uint8_t b = idx4[i / 2], k = (uint8_t)(i % 2 ? b & 15 : b >> 4);
        ck_assert_uint_eq(out[3 * i + 0], pal[k].red);
        ck_assert_uint_eq(out[3 * i + 1], pal[k].green);
        ck_assert_uint_eq(out[3 * i + 2], pal[k].blue);
    }

    /* JPEG grey and RGB, baseline and progressive */
    for (int prog = 0; prog < 2; prog++) {
        size_t n;
        uint8_t *j = make_jpeg(W, H, 1, g, 100, prog, &n);
        EXPECT_OK(kdcl_image_decode(j, n, "g.jpg", W, H, 1, out));
        for (size_t i = 0; i < W * H; i++) ck_assert_int_le(abs((int)out[i] - g[i]), 1);
        free(j);
        j = make_jpeg(W, H, 3, rgb, 100, prog, &n);
        EXPECT_OK(kdcl_image_decode(j, n, "rgb.jpg", W, H, 3, out));
        for (size_t i = 0; i < 3 * W * H; i++) ck_assert_int_le(abs((int)out[i] - rgb[i]), 3);
        EXPECT_OK(kdcl_image_decode(j, n, "rgb.jpg", W, H, 1, out));
        for (size_t i = 0; i < W * H; i++) ck_assert_int_le(abs((int)out[i] - lum(rgb + 3 * i)), 3);
        /* written as a file under a misleading name: the content decides */
        ck_assert_int_eq(tu_write_file(pj(dir, prog ? "p.bmp" : "b.png"), j, n), 0);
        EXPECT_OK(decode_file(pj(dir, prog ? "p.bmp" : "b.png"), W, H, 3, out));
        free(j);
    }

    /* BMP: 24-bit RGB (stb_image_write) and 8-bit paletted grey */
    ck_assert(stbi_write_bmp(pj(dir, "rgb.bmp"), W, H, 3, pat));
    EXPECT_OK(decode_file(pj(dir, "rgb.bmp"), W, H, 3, out));
    ck_assert_int_eq(memcmp(out, pat, sizeof pat), 0);
    EXPECT_OK(decode_file(pj(dir, "rgb.bmp"), W, H, 1, out));
    for (size_t i = 0; i < W * H; i++) ck_assert_uint_eq(out[i], lum(pat + 3 * i));
    write_bmp8(pj(dir, "g8.bmp"), W, H, pat);
    EXPECT_OK(decode_file(pj(dir, "g8.bmp"), W, H, 1, out));
    ck_assert_int_eq(memcmp(out, pat, W * H), 0);

    /* resizing: a constant image stays constant */
    uint8_t cst[4 * 4];
    memset(cst, 77, sizeof cst);
    write_png(pj(dir, "c.png"), 4, 4, PNG_COLOR_TYPE_GRAY, 8, cst, 4, NULL, 0, 0);
    EXPECT_OK(decode_file(pj(dir, "c.png"), 9, 3, 3, out));
    for (size_t i = 0; i < 27; i++) ck_assert_int_le(abs((int)out[i] - 77), 1);

    /* bad arguments */
    EXPECT_ERR(kdcl_image_decode(cst, 16, "x", 4, 4, 2, out), KDCL_ERR_INVALID_ARG, "channels");
    EXPECT_ERR(kdcl_image_decode(cst, 16, "x", 0, 4, 3, out), KDCL_ERR_INVALID_ARG, "size");
}
END_TEST

/* Run `expr` with the address space limited to what the process uses now plus
 * 256 MiB: a decoder that allocated for the size a header claims would fail
 * with an out-of-memory error instead of the expected message. */
static struct rlimit as_saved;
static void limit_as(void)
{
    ck_assert_int_eq(getrlimit(RLIMIT_AS, &as_saved), 0);
    FILE *f = fopen("/proc/self/statm", "r");
    ck_assert_ptr_nonnull(f);
    unsigned long pages = 0;
    ck_assert_int_eq(fscanf(f, "%lu", &pages), 1);
    fclose(f);
    struct rlimit r = as_saved;
    rlim_t want = (rlim_t)pages * 4096u + ((rlim_t)256 << 20);
    if (r.rlim_cur == RLIM_INFINITY || r.rlim_cur > want) r.rlim_cur = want;
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &r), 0);
}
static void unlimit_as(void) { ck_assert_int_eq(setrlimit(RLIMIT_AS, &as_saved), 0); }

static void png_chunk(uint8_t **p, const char *type, const uint8_t *d, uint32_t n)
{
    put_be32(*p, n);
    memcpy(*p + 4, type, 4);
    if (n) memcpy(*p + 8, d, n);
    uint32_t crc = (uint32_t)crc32(0, *p + 4, 4 + n);
    put_be32(*p + 8 + n, crc);
    *p += 12 + n;
}

/* A PNG that claims w x h (colour type ct, 8 bits) and holds `idat` bytes of
 * zlib data for it. */
static size_t png_claiming(uint8_t *buf, uint32_t w, uint32_t h, uint8_t ct, const uint8_t *idat,
                           uint32_t n_idat)
{
    uint8_t *p = buf, ihdr[13] = {0};
    memcpy(p, "\x89PNG\r\n\x1a\n", 8);
    p += 8;
    put_be32(ihdr, w);
    put_be32(ihdr + 4, h);
    ihdr[8] = 8;
    ihdr[9] = ct;
    png_chunk(&p, "IHDR", ihdr, 13);
    png_chunk(&p, "IDAT", idat, n_idat);
    png_chunk(&p, "IEND", NULL, 0);
    return (size_t)(p - buf);
}

START_TEST(image_bad_files)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", tu_path("badfmts"));
    mkd(dir);
    uint8_t out[32 * 32 * 3];
    /* unsupported formats, named; the 16-bit PGM is 8 MB like the one that
     * crashed the stb build */
    {
        size_t n = 2048 * 2048 * 2;
        char *pgm = malloc(n + 32);
        int k = snprintf(pgm, 32, "P5\n2048 2048\n65535\n");
        memset(pgm + k, 0xAB, n);
        ck_assert_int_eq(tu_write_file(pj(dir, "big16.pgm"), pgm, n + (size_t)k), 0);
        free(pgm);
        EXPECT_ERR(decode_file(pj(dir, "big16.pgm"), 32, 32, 3, out), KDCL_ERR_FORMAT, "big16.pgm");
        EXPECT_ERR(decode_file(pj(dir, "big16.pgm"), 32, 32, 3, out), KDCL_ERR_FORMAT,
                   "unsupported image format (PNM");
    }
#define BYTES(lit) lit, sizeof(lit) - 1
    static const struct {
        const char *name, *what, *bytes;
        size_t n;
    } unsupported[] = {
        /* 18-byte TGA header claiming 65535x10000, truncated: no magic at all */
        {"bomb.tga", "unsupported image format", BYTES("\0\0\2\0\0\0\0\0\0\0\0\0\xff\xff\x10\x27\x18\0")},
        {"bomb.gif", "(GIF)", BYTES("GIF89a\xff\xff\xff\xff\xf7\0\0\0\0\0\xff\xff\xff,\0\0\0\0\xff\xff\xff\xff\0\2\2D\1\0;")},
        {"x.pic", "(PIC)", BYTES("\x53\x80\xf6\x34" "PICT\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0")},
        {"x.psd", "(PSD)", BYTES("8BPS\0\1\0\0\0\0\0\0\0\3\0\0\0\4\0\0\0\4\0\x08\0\3")},
        {"x.hdr", "(HDR)", BYTES("#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 4 +X 4\n")},
        {"x.ppm", "(PNM", BYTES("P6\n4 4\n255\n")},
        {"x.tif", "(TIFF)", BYTES("II*\0\x08\0\0\0")},
        {"text.png", "unsupported image format", BYTES("hello, world")},
    };
#undef BYTES
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++) {
        const char *p = pj(dir, unsupported[i].name);
        ck_assert_int_eq(tu_write_file(p, unsupported[i].bytes, unsupported[i].n), 0);
        EXPECT_ERR(decode_file(p, 32, 32, 3, out), KDCL_ERR_FORMAT, unsupported[i].name);
        EXPECT_ERR(decode_file(p, 32, 32, 3, out), KDCL_ERR_FORMAT, unsupported[i].what);
        EXPECT_ERR(decode_file(p, 32, 32, 3, out), KDCL_ERR_FORMAT, "PNG, JPEG and BMP");
    }
    EXPECT_ERR(kdcl_image_decode("", 0, "empty.png", 4, 4, 3, out), KDCL_ERR_FORMAT, "empty");

    /* bombs: refused from the header, without allocating for the claimed size */
    uint8_t buf[4096], z[64];
    uLongf zn = sizeof z;
    uint8_t rowz[16] = {0};
    ck_assert_int_eq(compress(z, &zn, rowz, sizeof rowz), Z_OK);
    size_t n;
    limit_as();
    clock_t t0 = clock();
    n = png_claiming(buf, 100000, 100000, 2, z, (uint32_t)zn);
    kdcl_status s1 = kdcl_image_decode(buf, n, "huge.png", 32, 32, 3, out);
    char m1[512];
    snprintf(m1, sizeof m1, "%s", kdcl_last_error());
    n = png_claiming(buf, 5000, 5000, 2, z, (uint32_t)zn); /* 75 MB of RGB: over 64 MiB */
    kdcl_status s2 = kdcl_image_decode(buf, n, "wide.png", 32, 32, 3, out);
    char m2[512];
    snprintf(m2, sizeof m2, "%s", kdcl_last_error());
    /* a JPEG whose frame header claims 60000x60000 */
    uint8_t px[64];
    memset(px, 128, sizeof px);
    size_t jn;
    uint8_t *j = make_jpeg(8, 8, 1, px, 90, 0, &jn);
    for (size_t i = 0; i + 8 < jn; i++)
        if (j[i] == 0xFF && j[i + 1] == 0xC0) { /* SOF0: len(2) P(1) Y(2) X(2) */
            j[i + 5] = 0xEA, j[i + 6] = 0x60, j[i + 7] = 0xEA, j[i + 8] = 0x60;
            break;
        }
    kdcl_status s3 = kdcl_image_decode(j, jn, "huge.jpg", 32, 32, 3, out);
    char m3[512];
    snprintf(m3, sizeof m3, "%s", kdcl_last_error());
    /* a BMP header claiming 20000x20000 */
    uint8_t bmp[64] = {'B', 'M'};
    uint32_t v = 54;
    memcpy(bmp + 10, &v, 4);
    v = 40;
    memcpy(bmp + 14, &v, 4);
    v = 20000;
    memcpy(bmp + 18, &v, 4);
    memcpy(bmp + 22, &v, 4);
    bmp[26] = 1, bmp[28] = 24;
    kdcl_status s4 = kdcl_image_decode(bmp, sizeof bmp, "huge.bmp", 32, 32, 3, out);
    char m4[512];
    snprintf(m4, sizeof m4, "%s", kdcl_last_error());
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    unlimit_as();
    ck_assert_msg(s1 == KDCL_ERR_FORMAT && strstr(m1, "huge.png") && strstr(m1, "16384"), "%s", m1);
    ck_assert_msg(s2 == KDCL_ERR_FORMAT && strstr(m2, "wide.png") && strstr(m2, "limit"), "%s", m2);
    ck_assert_msg(s3 == KDCL_ERR_FORMAT && strstr(m3, "huge.jpg") && strstr(m3, "16384"), "%s", m3);
    ck_assert_msg(s4 == KDCL_ERR_FORMAT && strstr(m4, "huge.bmp") && strstr(m4, "16384"), "%s", m4);
    ck_assert_msg(secs < 1.0, "refusing the bombs took %.2f s", secs);
    free(j);

    /* truncated and corrupt files of the accepted formats */
    uint8_t img[16 * 16 * 3];
    for (size_t i = 0; i < sizeof img; i++) img[i] = (uint8_t)(i * 13);
    j = make_jpeg(16, 16, 3, img, 90, 0, &jn);
    for (size_t cut = 0; cut + 16 < jn; cut += 7)
        EXPECT_ERR(kdcl_image_decode(j, cut, "cut.jpg", 16, 16, 3, out), KDCL_ERR_FORMAT, "cut.jpg");
    /* cut inside the scan but closed with an EOI marker: libjpeg would fill
     * the rest of the image with grey; refused */
    {
        uint8_t *c = malloc(jn);
        size_t cut = jn * 3 / 4;
        memcpy(c, j, cut);
        c[cut] = 0xFF, c[cut + 1] = 0xD9;
        EXPECT_ERR(kdcl_image_decode(c, cut + 2, "eoi.jpg", 16, 16, 3, out), KDCL_ERR_FORMAT,
                   "premature end of data segment");
        free(c);
    }
    /* a 9-byte JPEG (a DQT segment cut short) */
    EXPECT_ERR(kdcl_image_decode("\xff\xd8\xff\xdb\x00\x43\x00\x01\x02", 9, "nine.jpg", 8, 8, 1, out),
               KDCL_ERR_FORMAT, "cannot decode JPEG");
    free(j);
    j = make_jpeg(16, 16, 3, img, 90, 1, &jn); /* progressive */
    for (size_t cut = 0; cut + 16 < jn; cut += 11)
        EXPECT_ERR(kdcl_image_decode(j, cut, "cutp.jpg", 16, 16, 3, out), KDCL_ERR_FORMAT, "cutp.jpg");
    free(j);
    write_png(pj(dir, "ok.png"), 16, 16, PNG_COLOR_TYPE_RGB, 8, img, 48, NULL, 0, 0);
    uint8_t *pb = slurp(pj(dir, "ok.png"), &n);
    for (size_t cut = 0; cut + 12 < n; cut += 5) /* everything but IEND is needed */
        EXPECT_ERR(kdcl_image_decode(pb, cut, "cut.png", 16, 16, 3, out), KDCL_ERR_FORMAT, "cut.png");
    pb[40] ^= 0x55; /* inside IDAT: the CRC catches it */
    EXPECT_ERR(kdcl_image_decode(pb, n, "crc.png", 16, 16, 3, out), KDCL_ERR_FORMAT, "crc.png");
    free(pb);
    ck_assert(stbi_write_bmp(pj(dir, "ok.bmp"), 16, 16, 3, img));
    pb = slurp(pj(dir, "ok.bmp"), &n);
    for (size_t cut = 2; cut + 1 < n; cut += 37)
        EXPECT_ERR(kdcl_image_decode(pb, cut, "cut.bmp", 16, 16, 3, out), KDCL_ERR_FORMAT, "cut.bmp");
    /* a BMP core header (12 bytes) cut short, and headers cut at each byte */
    EXPECT_ERR(kdcl_image_decode("BM\xba\0\0\0\x1a" "MV\08\0\xc8\0\x0c\0\0\0\0\x03>B\0\x01\0\x08",
                                 25, "core.bmp", 16, 16, 3, out),
               KDCL_ERR_FORMAT, "core.bmp");
    for (size_t cut = 2; cut < 60; cut++)
        EXPECT_ERR(kdcl_image_decode(pb, cut, "hdr.bmp", 16, 16, 3, out), KDCL_ERR_FORMAT, "hdr.bmp");
    /* a compression value that is negative as an int, which stb reads as
     * uncompressed rows */
    pb[30] = 0x34, pb[31] = 0x12, pb[32] = 0x00, pb[33] = 0x80;
    EXPECT_OK(kdcl_image_decode(pb, n, "odd.bmp", 16, 16, 3, out));
    EXPECT_ERR(kdcl_image_decode(pb, n - 100, "odd.bmp", 16, 16, 3, out), KDCL_ERR_FORMAT,
               "truncated BMP");
    free(pb);
}
END_TEST

typedef struct {
    char paths[8][4200];
    int n;
} skip_log;

static void on_skip(void *user, const char *path, const char *reason)
{
    skip_log *l = user;
    ck_assert_ptr_nonnull(strstr(reason, path)); /* the message names the file */
    if (l->n < 8) snprintf(l->paths[l->n], sizeof l->paths[0], "%s", path);
    l->n++;
}

/* root/a: bad.gif good1.png good2.bmp; root/b: only a 16-bit PGM; root/c: good.jpg */
static void make_skip_folder(const char *root_in)
{
    char root[4096]; /* root_in may be a pj() buffer, which later pj() calls reuse */
    snprintf(root, sizeof root, "%s", root_in);
    mkd(root);
    mkd(pj(root, "a"));
    mkd(pj(root, "b"));
    mkd(pj(root, "c"));
    uint8_t px[8 * 8 * 3];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 5);
    write_png(pj(pj(root, "a"), "good1.png"), 8, 8, PNG_COLOR_TYPE_RGB, 8, px, 24, NULL, 0, 0);
    ck_assert(stbi_write_bmp(pj(pj(root, "a"), "good2.bmp"), 8, 8, 3, px));
    ck_assert_int_eq(tu_write_file(pj(pj(root, "a"), "bad.gif"), "GIF89a\1\0\1\0\0\0\0;", 14), 0);
    ck_assert_int_eq(tu_write_file(pj(pj(root, "b"), "x.pgm"), "P5\n2 2\n65535\n\0\0\0\0\0\0\0\0", 21), 0);
    size_t jn;
    uint8_t *j = make_jpeg(8, 8, 3, px, 95, 0, &jn);
    ck_assert_int_eq(tu_write_file(pj(pj(root, "c"), "good.jpg"), j, jn), 0);
    free(j);
}

START_TEST(image_folder_skip_bad)
{
    char root[4096];
    snprintf(root, sizeof root, "%s", tu_path("skipimgs"));
    make_skip_folder(root);
    kdcl_dataset d;
    /* default: the first bad file (in load order) is the error */
    EXPECT_ERR(kdcl_dataset_load_images(root, 8, 8, 3, &d), KDCL_ERR_FORMAT, "a/bad.gif");
    assert_zeroed(&d);
    kdcl_image_opts o = {0};
    EXPECT_ERR(kdcl_dataset_load_images_opts(root, 8, 8, 3, &o, &d), KDCL_ERR_FORMAT, "a/bad.gif");
    /* skipping: counted, reported, the rest loaded */
    skip_log log = {0};
    o.skip_bad = 1;
    o.on_skip = on_skip;
    o.user = &log;
    EXPECT_OK(kdcl_dataset_load_images_opts(root, 8, 8, 3, &o, &d));
    ck_assert_uint_eq(o.n_skipped, 2);
    ck_assert_int_eq(log.n, 2);
    ck_assert_ptr_nonnull(strstr(log.paths[0], "a/bad.gif"));
    ck_assert_ptr_nonnull(strstr(log.paths[1], "b/x.pgm"));
    ck_assert_uint_eq(d.n, 3);
    ck_assert_uint_eq(d.n_classes, 3);
    ck_assert_str_eq(d.class_names[1], "b"); /* kept, with no examples */
    ck_assert_int_eq(d.labels[0], 0);
    ck_assert_int_eq(d.labels[1], 0);
    ck_assert_int_eq(d.labels[2], 2);
    for (size_t i = 0; i < 8 * 8 * 3; i++) {
        ck_assert_uint_eq(d.images[i], (uint8_t)(i * 5));          /* a/good1.png */
        ck_assert_uint_eq(d.images[192 + i], (uint8_t)(i * 5));    /* a/good2.bmp */
    }
    kdcl_dataset_free(&d);
    /* without a callback; through load_split */
    char top[4096];
    snprintf(top, sizeof top, "%s", tu_path("skipsplit"));
    mkd(top);
    make_skip_folder(pj(top, "train"));
    kdcl_image_opts o2 = {.skip_bad = 1};
    EXPECT_OK(kdcl_dataset_load_split_opts(top, "train", &o2, &d));
    ck_assert_uint_eq(o2.n_skipped, 2);
    ck_assert_uint_eq(d.n, 3);
    kdcl_dataset_free(&d);
    EXPECT_ERR(kdcl_dataset_load_split(top, "train", &d), KDCL_ERR_FORMAT, "bad.gif");
    /* nothing decodable at all */
    char allbad[4096];
    snprintf(allbad, sizeof allbad, "%s", tu_path("allbad"));
    mkd(allbad);
    mkd(pj(allbad, "k"));
    ck_assert_int_eq(tu_write_file(pj(pj(allbad, "k"), "a.png"), "nope", 4), 0);
    EXPECT_ERR(kdcl_dataset_load_images_opts(allbad, 8, 8, 3, &o2, &d), KDCL_ERR_FORMAT,
               "none of the 1 image files");
    ck_assert_uint_eq(o2.n_skipped, 1);
    assert_zeroed(&d);
}
END_TEST

/* The CLI: a bad image is one line naming it and exit 1; --skip-bad-images
 * warns about each and trains on the rest. */
START_TEST(image_folder_cli)
{
    const char *exe = getenv("KDCL_EXE");
    ck_assert_msg(exe && *exe, "KDCL_EXE not set");
    char top[4096], cmd[16384], err[8192];
    snprintf(top, sizeof top, "%s", tu_path("clisplit"));
    mkd(top);
    make_skip_folder(pj(top, "train"));
    make_skip_folder(pj(top, "test"));
    const char *errf = tu_path("cli-stderr.txt"), *model = tu_path("cli-model.safetensors");
    for (int skip = 0; skip < 2; skip++) {
        snprintf(cmd, sizeof cmd,
                 "%s train --data %s --out %s --epochs 1 --batch 2 --arch 3072-8-3 --quiet%s "
                 ">/dev/null 2>%s",
                 exe, top, model, skip ? " --skip-bad-images" : "", errf);
        int st = system(cmd);
        ck_assert(WIFEXITED(st));
        FILE *e = fopen(errf, "r");
        ck_assert_ptr_nonnull(e);
        size_t n = fread(err, 1, sizeof err - 1, e);
        err[n] = '\0';
        fclose(e);
        int lines = 0;
        for (char *c = err; *c; c++) lines += *c == '\n';
        if (!skip) {
            ck_assert_msg(WEXITSTATUS(st) == 1, "exit %d: %s", WEXITSTATUS(st), err);
            ck_assert_msg(lines == 1, "%d lines: %s", lines, err);
            ck_assert_msg(strstr(err, "kdcl train: ") == err && strstr(err, "train/a/bad.gif"),
                          "%s", err);
        } else {
            ck_assert_msg(WEXITSTATUS(st) == 0, "exit %d: %s", WEXITSTATUS(st), err);
            ck_assert_msg(strstr(err, "warning: skipped") && strstr(err, "train/a/bad.gif") &&
                              strstr(err, "train/b/x.pgm") && strstr(err, "test/a/bad.gif"),
                          "%s", err);
            ck_assert_msg(strstr(err, "skipped 2 image files that could not be decoded, kept 3"),
                          "%s", err);
        }
    }
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
    tcase_add_test(tc, idx_gz_bomb);
    tcase_add_test(tc, cifar10_convert);
    tcase_add_test(tc, cifar_bad_files);
    tcase_add_test(tc, cifar100_fine_coarse);
    tcase_add_test(tc, image_folder);
    tcase_add_test(tc, image_folder_errors);
    tcase_add_test(tc, image_formats_decode);
    tcase_add_test(tc, image_bad_files);
    tcase_add_test(tc, image_folder_skip_bad);
    tcase_add_test(tc, image_folder_cli);
    tcase_add_test(tc, subset_and_split);
    tcase_add_test(tc, shuffle_determinism);
    tcase_add_test(tc, load_split_detect);
    tcase_add_test(tc, real_fashion_mnist);
    tcase_add_test(tc, real_mnist);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(data_suite()); }
