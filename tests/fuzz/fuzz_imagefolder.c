/* An image folder: the input is written as a file into a class folder next to
 * a valid 2x2 PNG in another class, and the folder is loaded with
 * kdcl_dataset_load_images_opts (the first byte picks grey/RGB, the size and
 * whether bad files are skipped; with skipping the valid image must load). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zlib.h>

#include "fuzz_util.h"
#include "kdcl/data.h"

/* A valid 2x2 8-bit grey PNG, written with zlib. */
static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

static uint8_t *chunk(uint8_t *p, const char *type, const uint8_t *d, uint32_t n)
{
    put_be32(p, n);
    memcpy(p + 4, type, 4);
    if (n) memcpy(p + 8, d, n);
    put_be32(p + 8 + n, (uint32_t)crc32(0, p + 4, 4 + n));
    return p + 12 + n;
}

static size_t make_png(uint8_t *buf)
{
    static const uint8_t rows[6] = {0, 10, 200, 0, 90, 255}; /* filter byte + 2 pixels, twice */
    uint8_t ihdr[13] = {0, 0, 0, 2, 0, 0, 0, 2, 8, 0, 0, 0, 0}, z[64];
    uLongf zn = sizeof z;
    if (compress(z, &zn, rows, sizeof rows) != Z_OK) abort();
    uint8_t *p = buf;
    memcpy(p, "\x89PNG\r\n\x1a\n", 8);
    p = chunk(p + 8, "IHDR", ihdr, 13);
    p = chunk(p, "IDAT", z, (uint32_t)zn);
    p = chunk(p, "IEND", NULL, 0);
    return (size_t)(p - buf);
}

static char root[512];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(root, sizeof root, "%s", fz_path(0, "root"));
    if (mkdir(root, 0700) || mkdir(fz_path(0, "root/a"), 0700) ||
        mkdir(fz_path(0, "root/b"), 0700))
        abort();
    uint8_t png[128];
    size_t n = make_png(png);
    fz_write(0, "root/a/ok.png", png, n);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int mode = data[0];
    size_t ch = (mode & 1) ? 3 : 1, side = (size_t)((mode >> 1) & 31) + 1;
    kdcl_image_opts o = {0};
    o.skip_bad = (mode >> 6) & 1;
    fz_write(1, "root/b/input.img", data + 1, size - 1);
    kdcl_dataset d;
    kdcl_status s = kdcl_dataset_load_images_opts(root, side, side, ch, &o, &d);
    if (o.skip_bad && s != KDCL_OK) __builtin_trap(); /* ok.png always loads */
    if (s == KDCL_OK) {
        if (d.n != 2 - o.n_skipped || d.n_classes != 2) __builtin_trap();
        kdcl_dataset_free(&d);
    }
    return 0;
}
