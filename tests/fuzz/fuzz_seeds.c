/* fuzz_seeds DIR: writes small valid images of every variant kdcl reads into
 * DIR (seed corpora for fuzz_image and fuzz_imagefolder; tools/fuzz_corpus.py
 * prefixes the harnesses' mode byte): PNG grey, grey+alpha, RGB, RGBA,
 * palette (1/2/4/8 bits, with tRNS), 16-bit, interlaced; JPEG grey and RGB,
 * baseline and progressive, 4:4:4 and 4:2:0, CMYK; BMP 24 and 32 bits, 8-bit
 * palette. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include "stb_image_write.h"
#pragma GCC diagnostic pop

static const char *dir;
static uint8_t px[64 * 64 * 8];

static const char *out_path(const char *name)
{
    static char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}

static void png(const char *name, unsigned w, unsigned h, int color, int depth, int interlace,
                int trns)
{
    FILE *f = fopen(out_path(name), "wb");
    if (!f) abort();
    png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(p);
    if (!info || setjmp(png_jmpbuf(p))) abort();
    png_init_io(p, f);
    png_set_IHDR(p, info, w, h, depth, color, interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (color == PNG_COLOR_TYPE_PALETTE) {
        png_color pal[256];
        for (int i = 0; i < 256; i++)
            pal[i].red = (png_byte)i, pal[i].green = (png_byte)(255 - i), pal[i].blue = (png_byte)(i * 7);
        png_set_PLTE(p, info, pal, 1 << (depth < 8 ? depth : 8));
        if (trns) {
            png_byte a[2] = {0, 128};
            png_set_tRNS(p, info, a, 2, NULL);
        }
    } else if (trns && !(color & PNG_COLOR_MASK_ALPHA)) {
        png_color_16 t = {0, 1, 1, 1, 1};
        png_set_tRNS(p, info, NULL, 0, &t);
    }
    png_write_info(p, info);
    size_t ch = color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_PALETTE ? 1
                : color == PNG_COLOR_TYPE_GRAY_ALPHA                       ? 2
                : color == PNG_COLOR_TYPE_RGB                              ? 3
                                                                           : 4;
    size_t stride = (w * ch * (size_t)depth + 7) / 8;
    png_bytep rows[64];
    for (unsigned y = 0; y < h; y++) rows[y] = px + y * stride;
    png_write_image(p, rows);
    png_write_end(p, NULL);
    png_destroy_write_struct(&p, &info);
    fclose(f);
}

static void jpeg(const char *name, unsigned w, unsigned h, int comps, int progressive, int sub)
{
    FILE *f = fopen(out_path(name), "wb");
    if (!f) abort();
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr err;
    ci.err = jpeg_std_error(&err);
    jpeg_create_compress(&ci);
    jpeg_stdio_dest(&ci, f);
    ci.image_width = w;
    ci.image_height = h;
    ci.input_components = comps;
    ci.in_color_space = comps == 1 ? JCS_GRAYSCALE : comps == 3 ? JCS_RGB : JCS_CMYK;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, 75, TRUE);
    if (comps == 3 && !sub)
        for (int c = 0; c < 3; c++) ci.comp_info[c].h_samp_factor = ci.comp_info[c].v_samp_factor = 1;
    if (progressive) jpeg_simple_progression(&ci);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < h) {
        JSAMPROW row = px + (size_t)ci.next_scanline * w * (size_t)comps;
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    fclose(f);
}

static void bmp8(const char *name, unsigned w, unsigned h)
{
    unsigned stride = (w + 3) & ~3u, off = 14 + 40 + 1024, size = off + stride * h;
    uint8_t *b = calloc(size, 1);
    if (!b) abort();
    b[0] = 'B', b[1] = 'M';
    uint32_t v[5] = {size, off, 40, w, h};
    memcpy(b + 2, &v[0], 4);
    memcpy(b + 10, &v[1], 4);
    memcpy(b + 14, &v[2], 4);
    memcpy(b + 18, &v[3], 4);
    memcpy(b + 22, &v[4], 4);
    b[26] = 1, b[28] = 8;
    for (unsigned i = 0; i < 256; i++) b[54 + 4 * i] = b[55 + 4 * i] = b[56 + 4 * i] = (uint8_t)i;
    memcpy(b + off, px, (size_t)stride * h);
    FILE *f = fopen(out_path(name), "wb");
    if (!f || fwrite(b, 1, size, f) != size) abort();
    fclose(f);
    free(b);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_seeds DIR\n");
        return 2;
    }
    dir = argv[1];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 37 + (i >> 5));
    png("g8.png", 8, 8, PNG_COLOR_TYPE_GRAY, 8, 0, 0);
    png("g1.png", 9, 3, PNG_COLOR_TYPE_GRAY, 1, 0, 0);
    png("g16.png", 5, 4, PNG_COLOR_TYPE_GRAY, 16, 0, 0);
    png("g8trns.png", 4, 4, PNG_COLOR_TYPE_GRAY, 8, 0, 1);
    png("ga.png", 6, 5, PNG_COLOR_TYPE_GRAY_ALPHA, 8, 0, 0);
    png("rgb.png", 7, 6, PNG_COLOR_TYPE_RGB, 8, 0, 0);
    png("rgb16.png", 3, 3, PNG_COLOR_TYPE_RGB, 16, 0, 0);
    png("rgba.png", 8, 2, PNG_COLOR_TYPE_RGB_ALPHA, 8, 0, 0);
    png("rgbi.png", 12, 11, PNG_COLOR_TYPE_RGB, 8, 1, 0);
    png("p1.png", 10, 4, PNG_COLOR_TYPE_PALETTE, 1, 0, 0);
    png("p2.png", 5, 5, PNG_COLOR_TYPE_PALETTE, 2, 0, 1);
    png("p4.png", 6, 3, PNG_COLOR_TYPE_PALETTE, 4, 1, 0);
    png("p8.png", 4, 7, PNG_COLOR_TYPE_PALETTE, 8, 0, 1);
    jpeg("g.jpg", 8, 8, 1, 0, 0);
    jpeg("gp.jpg", 16, 9, 1, 1, 0);
    jpeg("rgb444.jpg", 8, 8, 3, 0, 0);
    jpeg("rgb420.jpg", 17, 13, 3, 0, 1);
    jpeg("rgbp.jpg", 16, 16, 3, 1, 1);
    jpeg("cmyk.jpg", 8, 8, 4, 0, 0);
    if (!stbi_write_bmp(out_path("rgb24.bmp"), 7, 5, 3, px)) abort();
    if (!stbi_write_bmp(out_path("rgba32.bmp"), 4, 4, 4, px)) abort();
    bmp8("g8.bmp", 6, 4);
    return 0;
}
