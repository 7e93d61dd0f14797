/* Decoding one image file: PNG through libpng, JPEG through libjpeg-turbo,
 * BMP through stb_image (built with STBI_ONLY_BMP: none of its other decoders
 * is compiled in), then channel conversion and stb_image_resize. Every decoder
 * reads the header first; the size caps of kdcl/data.h are checked before
 * anything the size of the image is allocated. This file holds the library's
 * single stb implementation. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "data_internal.h"

#include <limits.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h> /* after jpeglib.h: its message list depends on jconfig.h */
#include <png.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wpedantic"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wtype-limits"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wcast-qual"
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_BMP
#define STBI_NO_STDIO
#define STBI_NO_LINEAR
#define STBI_NO_HDR
#define STBI_FAILURE_USERMSG
#define STBI_MAX_DIMENSIONS KDCL_IMAGE_MAX_SIDE
#include "stb_image.h"
#define STB_IMAGE_RESIZE_STATIC
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include "stb_image_resize.h"
#pragma GCC diagnostic pop

/* Progressive JPEGs with more scans than this are refused: each scan costs a
 * pass over the whole coefficient buffer (libjpeg-turbo's own fuzzers and
 * TJPARAM_SCANLIMIT guard the same way). Real files have about 10. */
#define JPEG_MAX_SCANS 100
/* libjpeg-turbo's working memory (a progressive image keeps all its DCT
 * coefficients: 2 bytes per sample, at most 2 x KDCL_IMAGE_MAX_BYTES). */
#define JPEG_MAX_MEMORY ((long)256 << 20)
/* libpng: the most bytes one ancillary chunk may take, and the most ancillary
 * chunks (text, sPLT, unknown) kept. */
#define PNG_MAX_CHUNK ((png_alloc_size_t)8 << 20)
#define PNG_MAX_CHUNKS 1000u

/* A decoded image in the file's own channels (1 grey, 2 grey+alpha, 3 RGB,
 * 4 RGBA), 8 bits a sample, h x w x c. */
typedef struct {
    uint8_t *px;
    size_t w, h, c;
} raw_image;

static const char *nm(const char *name) { return name ? name : "image"; }

/* The caps, checked from the header before any pixel is decoded. */
static kdcl_status check_size(const char *name, const char *fmt, uint64_t w, uint64_t h,
                              uint64_t c)
{
    if (w == 0 || h == 0)
        return kdcl_set_error(KDCL_ERR_FORMAT, "%s: %s image has an empty size %llux%llu",
                              nm(name), fmt, (unsigned long long)w, (unsigned long long)h);
    if (w > KDCL_IMAGE_MAX_SIDE || h > KDCL_IMAGE_MAX_SIDE)
        return kdcl_set_error(KDCL_ERR_FORMAT,
                              "%s: %s image of %llux%llu pixels exceeds the limit of %u pixels a "
                              "side",
                              nm(name), fmt, (unsigned long long)w, (unsigned long long)h,
                              KDCL_IMAGE_MAX_SIDE);
    /* w, h <= 2^14 and c <= 4: the product fits easily */
    if (w * h * c > KDCL_IMAGE_MAX_BYTES)
        return kdcl_set_error(KDCL_ERR_FORMAT,
                              "%s: %s image of %llux%llu pixels x %llu channels would decode to "
                              "%llu bytes, more than the limit of %zu",
                              nm(name), fmt, (unsigned long long)w, (unsigned long long)h,
                              (unsigned long long)c, (unsigned long long)(w * h * c),
                              (size_t)KDCL_IMAGE_MAX_BYTES);
    return KDCL_OK;
}

/* ---- PNG (libpng) ------------------------------------------------------- */

typedef struct {
    jmp_buf jb;
    char msg[192], warning[160]; /* the error; the first warning (context for it) */
    const uint8_t *data;
    size_t size, off;
} png_ctx;

static void png_on_error(png_structp png, png_const_charp msg)
{
    png_ctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg ? msg : "unknown error");
    longjmp(c->jb, 1);
}

/* Warnings are benign (e.g. a bad ancillary chunk: the pixels are fine) but
 * may explain a later error ("Invalid IHDR data"): keep the first. */
static void png_on_warning(png_structp png, png_const_charp msg)
{
    png_ctx *c = png_get_error_ptr(png);
    if (!c->warning[0]) snprintf(c->warning, sizeof c->warning, "%s", msg ? msg : "");
}

static void png_read_mem(png_structp png, png_bytep out, size_t n)
{
    png_ctx *c = png_get_io_ptr(png);
    if (n > c->size - c->off) png_error(png, "file is truncated");
    memcpy(out, c->data + c->off, n);
    c->off += n;
}

/* Everything assigned after setjmp and read after longjmp is volatile. */
static kdcl_status decode_png(const char *name, const uint8_t *data, size_t size, raw_image *img)
{
    png_ctx c;
    memset(&c, 0, sizeof c);
    c.data = data;
    c.size = size;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &c, png_on_error,
                                             png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(png ? &png : NULL, NULL, NULL);
        return kdcl_set_error(KDCL_ERR_OOM, "%s: out of memory starting the PNG decoder",
                              nm(name));
    }
    uint8_t *volatile px = NULL;
    png_bytep *volatile rows = NULL;
    volatile kdcl_status pending = KDCL_OK; /* an error whose message is already set */
    if (setjmp(c.jb)) {
        free(px);
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        if (pending != KDCL_OK) return pending;
        return kdcl_set_error(KDCL_ERR_FORMAT, "%s: cannot decode PNG: %s%s%s%s", nm(name),
                              c.msg, c.warning[0] ? " (" : "", c.warning,
                              c.warning[0] ? ")" : "");
    }
    /* libpng's own limit on the sides (10^6) stays; ours is checked below */
    png_set_chunk_malloc_max(png, PNG_MAX_CHUNK);
    png_set_chunk_cache_max(png, PNG_MAX_CHUNKS);
    png_set_read_fn(png, &c, png_read_mem);
    png_read_info(png, info);

    png_uint_32 w = 0, h = 0;
    int depth = 0, color = 0, interlace = 0;
    png_get_IHDR(png, info, &w, &h, &depth, &color, &interlace, NULL, NULL);
    /* the channels after the transforms below */
    unsigned ch = (color & PNG_COLOR_MASK_COLOR) ? 3 : 1;
    if ((color & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS)) ch++;
    if ((pending = check_size(name, "PNG", w, h, ch)) != KDCL_OK) png_error(png, "too large");
    png_set_expand(png);   /* palette -> RGB, grey < 8 bits -> 8 bits, tRNS -> alpha */
    png_set_strip_16(png); /* 16 bits -> the high byte */
    png_set_packing(png);
    if (interlace != PNG_INTERLACE_NONE) png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t got_ch = png_get_channels(png, info), rb = png_get_rowbytes(png, info);
    if (got_ch != ch || png_get_bit_depth(png, info) != 8 || rb != (size_t)w * ch)
        png_error(png, "unexpected layout after conversion to 8 bits");

    px = malloc((size_t)w * h * ch);
    rows = malloc((size_t)h * sizeof *rows);
    if (!px || !rows) {
        pending = kdcl_set_error(KDCL_ERR_OOM, "%s: out of memory for a %ux%u PNG", nm(name),
                                 (unsigned)w, (unsigned)h);
        png_error(png, "out of memory");
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = px + (size_t)y * rb;
    png_read_image(png, rows);
    /* the trailing chunks (after the pixels) are not needed: not read */
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    img->px = px;
    img->w = w;
    img->h = h;
    img->c = ch;
    return KDCL_OK;
}

/* ---- JPEG (libjpeg-turbo) ----------------------------------------------- */

typedef struct {
    struct jpeg_error_mgr pub;
    struct jpeg_progress_mgr progress;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX + 64];
} jpeg_ctx;

static void jpeg_on_error(j_common_ptr ci)
{
    jpeg_ctx *c = (jpeg_ctx *)ci->err;
    char m[JMSG_LENGTH_MAX];
    ci->err->format_message(ci, m);
    snprintf(c->msg, sizeof c->msg, "%s", m);
    longjmp(c->jb, 1);
}

/* Warnings about the entropy-coded data (the file ends early, a marker cuts
 * a scan short, a bad Huffman or arithmetic code, a lost restart marker) mean
 * libjpeg would fill the rest of the image with grey or garbage: errors.
 * Other warnings (extraneous bytes between markers, an unknown JFIF version or
 * Adobe transform, a bad ICC profile) leave the pixels intact. Nothing is
 * printed. */
static void jpeg_on_message(j_common_ptr ci, int level)
{
    if (level >= 0) return; /* trace messages */
    switch (ci->err->msg_code) {
    case JWRN_JPEG_EOF:
    case JWRN_HIT_MARKER:
    case JWRN_HUFF_BAD_CODE:
#if JPEG_LIB_VERSION >= 70 || defined(D_ARITH_CODING_SUPPORTED)
    case JWRN_ARITH_BAD_CODE:
#endif
    case JWRN_MUST_RESYNC:
    case JWRN_NOT_SEQUENTIAL:
    case JWRN_BOGUS_PROGRESSION: jpeg_on_error(ci); break;
    default: ci->err->num_warnings++;
    }
}

static void jpeg_on_progress(j_common_ptr ci)
{
    if (!ci->is_decompressor) return;
    j_decompress_ptr d = (j_decompress_ptr)ci;
    if (d->input_scan_number > JPEG_MAX_SCANS) {
        jpeg_ctx *c = (jpeg_ctx *)ci->err;
        snprintf(c->msg, sizeof c->msg, "progressive JPEG with more than %d scans",
                 JPEG_MAX_SCANS);
        longjmp(c->jb, 1);
    }
}

static kdcl_status decode_jpeg(const char *name, const uint8_t *data, size_t size, raw_image *img)
{
    if (size > ULONG_MAX)
        return kdcl_set_error(KDCL_ERR_FORMAT, "%s: JPEG file too large", nm(name));
    struct jpeg_decompress_struct ci;
    jpeg_ctx c;
    memset(&ci, 0, sizeof ci);
    memset(&c, 0, sizeof c);
    ci.err = jpeg_std_error(&c.pub);
    c.pub.error_exit = jpeg_on_error;
    c.pub.emit_message = jpeg_on_message;
    uint8_t *volatile px = NULL;
    volatile int created = 0;
    volatile kdcl_status pending = KDCL_OK; /* an error whose message is already set */
    if (setjmp(c.jb)) {
        free(px);
        if (created) jpeg_destroy_decompress(&ci);
        if (pending != KDCL_OK) return pending;
        return kdcl_set_error(KDCL_ERR_FORMAT, "%s: cannot decode JPEG: %s", nm(name), c.msg);
    }
    jpeg_create_decompress(&ci);
    created = 1;
    ci.mem->max_memory_to_use = JPEG_MAX_MEMORY;
    c.progress.progress_monitor = jpeg_on_progress;
    ci.progress = &c.progress;
    jpeg_mem_src(&ci, data, (unsigned long)size);
    jpeg_read_header(&ci, TRUE);

    int cmyk = 0;
    switch (ci.jpeg_color_space) {
    case JCS_GRAYSCALE: ci.out_color_space = JCS_GRAYSCALE; break;
    case JCS_YCbCr:
    case JCS_RGB: ci.out_color_space = JCS_RGB; break;
    case JCS_CMYK:
    case JCS_YCCK:
        ci.out_color_space = JCS_CMYK;
        cmyk = 1;
        break;
    default:
        snprintf(c.msg, sizeof c.msg, "unsupported colour space (%d components)",
                 ci.num_components);
        longjmp(c.jb, 1);
    }
    jpeg_calc_output_dimensions(&ci);
    size_t w = ci.output_width, h = ci.output_height, oc = (size_t)ci.output_components;
    if ((pending = check_size(name, "JPEG", w, h, oc)) != KDCL_OK) longjmp(c.jb, 1);
    if (oc != (cmyk ? 4u : ci.out_color_space == JCS_GRAYSCALE ? 1u : 3u)) {
        snprintf(c.msg, sizeof c.msg, "unexpected %zu output components", oc);
        longjmp(c.jb, 1);
    }
    px = malloc(w * h * oc);
    if (!px) {
        pending = kdcl_set_error(KDCL_ERR_OOM, "%s: out of memory for a %zux%zu JPEG", nm(name),
                                 w, h);
        longjmp(c.jb, 1);
    }
    jpeg_start_decompress(&ci);
    while (ci.output_scanline < ci.output_height) {
        JSAMPROW row = px + (size_t)ci.output_scanline * w * oc;
        if (jpeg_read_scanlines(&ci, &row, 1) != 1) {
            snprintf(c.msg, sizeof c.msg, "decoder stopped at row %u of %zu",
                     (unsigned)ci.output_scanline, h);
            longjmp(c.jb, 1);
        }
    }
    /* every row is decoded: what follows (up to the EOI marker) is not needed */
    jpeg_destroy_decompress(&ci);
    uint8_t *p = px;
    if (cmyk) {
        /* Adobe CMYK as libjpeg returns it (inverted): R = C K / 255, ... */
        for (size_t i = 0; i < w * h; i++) {
            unsigned k = p[4 * i + 3];
            for (int q = 0; q < 3; q++) p[3 * i + q] = (uint8_t)((p[4 * i + q] * k + 127) / 255);
        }
        oc = 3;
    }
    img->px = p;
    img->w = w;
    img->h = h;
    img->c = oc;
    return KDCL_OK;
}

/* ---- BMP (stb_image, STBI_ONLY_BMP) ------------------------------------- */

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint32_t le16(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8); }

static kdcl_status decode_bmp(const char *name, const uint8_t *data, size_t size, raw_image *img)
{
    if (size > (size_t)INT_MAX)
        return kdcl_set_error(KDCL_ERR_FORMAT, "%s: BMP file too large", nm(name));
    int w = 0, h = 0, comp = 0;
    if (!stbi_info_from_memory(data, (int)size, &w, &h, &comp)) {
        const char *why = stbi_failure_reason();
        return kdcl_set_error(KDCL_ERR_FORMAT, "%s: cannot decode BMP: %s", nm(name),
                              why ? why : "bad header");
    }
    /* stb decodes to 3 or 4 channels whatever the header says: check for 4 */
    kdcl_status s = check_size(name, "BMP", w < 0 ? 0 : (uint64_t)w, h < 0 ? 0 : (uint64_t)h, 4);
    if (s != KDCL_OK) return s;
    /* stb reads zeros past the end of the data: refuse a file too short for
     * the pixel rows its header describes (stb refuses RLE, compression 1 and
     * 2, and 4.. as an int; it reads every other value, negative ones too, as
     * uncompressed rows) */
    /* (stb's info read zeros for a header cut short too) */
    if (size < 18)
        return kdcl_set_error(KDCL_ERR_FORMAT, "%s: truncated BMP header", nm(name));
    uint64_t off = le32(data + 10), hsz = le32(data + 14), bpp, compression = 0;
    if (size < (hsz == 12 ? 26u : 34u))
        return kdcl_set_error(KDCL_ERR_FORMAT, "%s: truncated BMP header", nm(name));
    if (hsz == 12) {
        bpp = le16(data + 24);
    } else {
        bpp = le16(data + 28);
        compression = le32(data + 30);
    }
    if (compression != 1 && compression != 2) {
        uint64_t stride = ((uint64_t)w * bpp + 31) / 32 * 4, need = off + stride * (uint64_t)h;
        if (need > size)
            return kdcl_set_error(KDCL_ERR_FORMAT,
                                  "%s: truncated BMP: its %dx%d pixels at %u bits end at byte "
                                  "%llu, the file has %zu",
                                  nm(name), w, h, (unsigned)bpp, (unsigned long long)need, size);
    }
    int iw = 0, ih = 0, n = 0;
    uint8_t *px = stbi_load_from_memory(data, (int)size, &iw, &ih, &n, 0);
    if (!px) {
        const char *why = stbi_failure_reason();
        return kdcl_set_error(KDCL_ERR_FORMAT, "%s: cannot decode BMP: %s", nm(name),
                              why ? why : "unknown error");
    }
    if (iw != w || ih != h || n < 1 || n > 4) {
        stbi_image_free(px);
        return kdcl_set_error(KDCL_ERR_FORMAT, "%s: BMP decoded to %dx%dx%d, header said %dx%d",
                              nm(name), iw, ih, n, w, h);
    }
    img->px = px; /* stb allocates with malloc (STBI_MALLOC unset): free() releases it */
    img->w = (size_t)iw;
    img->h = (size_t)ih;
    img->c = (size_t)n;
    return KDCL_OK;
}

/* ---- format detection --------------------------------------------------- */

typedef enum { FMT_UNKNOWN, FMT_PNG, FMT_JPEG, FMT_BMP } img_format;

static int starts(const uint8_t *d, size_t n, const char *magic, size_t m)
{
    return n >= m && memcmp(d, magic, m) == 0;
}

/* The format by its magic bytes; *other names a recognised unsupported one. */
static img_format sniff(const uint8_t *d, size_t n, const char **other)
{
    *other = NULL;
    if (starts(d, n, "\x89PNG\r\n\x1a\n", 8)) return FMT_PNG;
    if (starts(d, n, "\xff\xd8\xff", 3)) return FMT_JPEG;
    if (starts(d, n, "BM", 2)) return FMT_BMP;
    if (starts(d, n, "GIF8", 4)) *other = "GIF";
    else if (starts(d, n, "8BPS", 4)) *other = "PSD";
    else if (starts(d, n, "#?RADIANCE", 10) || starts(d, n, "#?RGBE", 6)) *other = "HDR";
    else if (starts(d, n, "\x53\x80\xf6\x34", 4)) *other = "PIC";
    else if (starts(d, n, "II*\0", 4) || starts(d, n, "MM\0*", 4)) *other = "TIFF";
    else if (n >= 12 && starts(d, n, "RIFF", 4) && memcmp(d + 8, "WEBP", 4) == 0) *other = "WebP";
    else if (n >= 3 && d[0] == 'P' && d[1] >= '1' && d[1] <= '7' &&
             (d[2] == ' ' || d[2] == '\t' || d[2] == '\n' || d[2] == '\r'))
        *other = "PNM (PBM/PGM/PPM/PAM)";
    else if (starts(d, n, "qoif", 4)) *other = "QOI";
    return FMT_UNKNOWN;
}

/* ---- conversion and resizing ------------------------------------------- */

/* src (w x h x sc) -> dst (w x h x dc), dc 1 or 3; may not alias. */
static void convert_channels(const uint8_t *src, size_t sc, uint8_t *dst, size_t dc, size_t npx)
{
    for (size_t i = 0; i < npx; i++) {
        const uint8_t *s = src + i * sc;
        uint8_t *d = dst + i * dc;
        if (dc == 1) {
            d[0] = sc >= 3 ? (uint8_t)((s[0] * 77u + s[1] * 150u + s[2] * 29u) >> 8) : s[0];
        } else if (sc >= 3) {
            d[0] = s[0], d[1] = s[1], d[2] = s[2];
        } else {
            d[0] = d[1] = d[2] = s[0];
        }
    }
}

kdcl_status kdcl_image_decode(const void *data, size_t size, const char *name, size_t w, size_t h,
                              size_t channels, uint8_t *dst)
{
    if ((!data && size) || !dst)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_image_decode: NULL buffer");
    if (channels != 1 && channels != 3)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "kdcl_image_decode: channels must be 1 or 3, got %zu", channels);
    if (w == 0 || h == 0 || w > (1u << 16) || h > (1u << 16))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "kdcl_image_decode: size %zux%zu must be within 1..65536 a side", w,
                              h);
    if (size == 0)
        return kdcl_set_error(KDCL_ERR_FORMAT, "%s: cannot decode image: empty file", nm(name));
    if (size > KDCL_IMAGE_MAX_FILE)
        return kdcl_set_error(KDCL_ERR_FORMAT, "%s: image file of %zu bytes exceeds the limit of %zu",
                              nm(name), size, (size_t)KDCL_IMAGE_MAX_FILE);
    const uint8_t *d = data;
    const char *other;
    raw_image img = {0};
    kdcl_status s;
    switch (sniff(d, size, &other)) {
    case FMT_PNG: s = decode_png(name, d, size, &img); break;
    case FMT_JPEG: s = decode_jpeg(name, d, size, &img); break;
    case FMT_BMP: s = decode_bmp(name, d, size, &img); break;
    default:
        return kdcl_set_error(KDCL_ERR_FORMAT,
                              "%s: unsupported image format%s%s%s (kdcl reads PNG, JPEG and BMP)",
                              nm(name), other ? " (" : "", other ? other : "", other ? ")" : "");
    }
    if (s != KDCL_OK) return s;

    const size_t npx = img.w * img.h;
    if (img.w == w && img.h == h) {
        convert_channels(img.px, img.c, dst, channels, npx);
        free(img.px);
        return KDCL_OK;
    }
    uint8_t *conv = img.px;
    if (img.c != channels) {
        conv = malloc(npx * channels);
        if (!conv) {
            free(img.px);
            return kdcl_set_error(KDCL_ERR_OOM, "%s: out of memory converting a %zux%zu image",
                                  nm(name), img.w, img.h);
        }
        convert_channels(img.px, img.c, conv, channels, npx);
        free(img.px);
    }
    int ok = stbir_resize_uint8(conv, (int)img.w, (int)img.h, 0, dst, (int)w, (int)h, 0,
                                (int)channels);
    free(conv);
    if (!ok)
        return kdcl_set_error(KDCL_ERR_FORMAT, "%s: cannot resize %zux%zu image to %zux%zu",
                              nm(name), img.w, img.h, w, h);
    return KDCL_OK;
}
