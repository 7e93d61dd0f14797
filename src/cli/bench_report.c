/* kdcl bench --report DIR (see bench_report.h and tools/kdcl-bench-1.md):
 * bench.json, bench.csv, report.md and PNG bar charts drawn here (text with
 * stb_easy_font, files through libpng), so a report needs nothing beyond
 * kdcl's own dependencies. */
#include <errno.h>
#include <math.h>
#include <png.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wconversion"
#endif
#include <stb_easy_font.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#include "bench_report.h"
#include "kdcl/file.h"

/* ---- the document ---- */

static const char *str(const cJSON *o, const char *key)
{
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
    return s ? s : "";
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static int fail(const char *what, const char *path)
{
    fprintf(stderr, "kdcl bench: cannot write %s/%s: %s\n", path, what, strerror(errno));
    return 1;
}

/* ---- a growing text buffer ---- */

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->n;
        int w = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? room : 0, fmt, ap);
        va_end(ap);
        if (w < 0) {
            b->oom = 1;
            return;
        }
        if (b->p && (size_t)w < room) {
            b->n += (size_t)w;
            return;
        }
        size_t cap = (b->cap ? b->cap * 2 : 4096) + (size_t)w;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
}

static int sb_write(sbuf *b, const char *dir, const char *name)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (b->oom) {
        errno = ENOMEM;
        return fail(name, dir);
    }
    kdcl_status s = kdcl_write_file_atomic(path, b->p ? b->p : "", b->n);
    if (s) {
        fprintf(stderr, "kdcl bench: %s\n", kdcl_last_error());
        return 1;
    }
    printf("wrote %s\n", path);
    return 0;
}

/* A CSV field (RFC 4180: quoted when it holds a comma, quote or line break). */
static void csv_field(sbuf *b, const char *s, int last)
{
    if (strpbrk(s, ",\"\r\n")) {
        sb_printf(b, "\"");
        for (const char *p = s; *p; p++) sb_printf(b, *p == '"' ? "\"\"" : "%c", *p);
        sb_printf(b, "\"");
    } else {
        sb_printf(b, "%s", s);
    }
    sb_printf(b, last ? "\r\n" : ",");
}

static void csv_num(sbuf *b, double v, int last)
{
    char buf[64] = "";
    if (isfinite(v)) snprintf(buf, sizeof buf, "%.6g", v);
    csv_field(b, buf, last);
}

/* A Markdown table cell: no line breaks, pipes escaped. */
static void md_cell(sbuf *b, const char *s)
{
    sb_printf(b, " ");
    for (const char *p = s; *p; p++) {
        if (*p == '|')
            sb_printf(b, "\\|");
        else if (*p == '\n' || *p == '\r')
            sb_printf(b, " ");
        else
            sb_printf(b, "%c", *p);
    }
    sb_printf(b, " |");
}

/* ---- PNG bar charts ---- */

typedef struct {
    int w, h;
    uint8_t *px; /* RGB */
} canvas;

static void rect(canvas *c, int x0, int y0, int x1, int y1, const uint8_t *rgb)
{
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > c->w) x1 = c->w;
    if (y1 > c->h) y1 = c->h;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) memcpy(c->px + 3 * ((size_t)y * c->w + x), rgb, 3);
}

#define FONT_SCALE 2

static int text_width(const char *s) { return stb_easy_font_width((char *)s) * FONT_SCALE; }

/* Text with its top-left corner at (x, y), stb_easy_font's quads filled. */
static void text(canvas *c, int x, int y, const char *s, const uint8_t *rgb)
{
    static float vb[60000]; /* 16-byte vertices: 4 floats each */
    int quads = stb_easy_font_print(0, 0, (char *)s, NULL, vb, (int)sizeof vb);
    for (int q = 0; q < quads; q++) {
        const float *v = vb + q * 16;
        float x0 = v[0], y0 = v[1], x1 = v[0], y1 = v[1];
        for (int k = 1; k < 4; k++) {
            x0 = fminf(x0, v[4 * k]), x1 = fmaxf(x1, v[4 * k]);
            y0 = fminf(y0, v[4 * k + 1]), y1 = fmaxf(y1, v[4 * k + 1]);
        }
        rect(c, x + (int)lroundf(x0 * FONT_SCALE), y + (int)lroundf(y0 * FONT_SCALE),
             x + (int)lroundf(x1 * FONT_SCALE), y + (int)lroundf(y1 * FONT_SCALE), rgb);
    }
}

static int png_save(const char *path, const canvas *c)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return -1;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return -1;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)c->w, (png_uint_32)c->h, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < c->h; y++) png_write_row(png, c->px + 3 * (size_t)y * c->w);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return fclose(f) == 0 ? 0 : -1;
}

static const uint8_t palette[8][3] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},
                                      {214, 39, 40},  {148, 103, 189}, {140, 86, 75},
                                      {227, 119, 194}, {127, 127, 127}};
static const uint8_t black[3] = {0, 0, 0}, grey[3] = {210, 210, 210};

/* The results of one kind across devices: rows[r] an id, v[r * nd + d]
 * median / min / max (NaN: not measured on that device). */
typedef struct {
    const char *kind, *title, *file;
    char **ids, **labels;
    double *med, *lo, *hi;
    size_t nr, nd;
    const char *unit;
} series;

static void series_free(series *s)
{
    for (size_t r = 0; r < s->nr; r++) {
        free(s->ids[r]);
        free(s->labels[r]);
    }
    free(s->ids);
    free(s->labels);
    free(s->med);
    free(s->lo);
    free(s->hi);
}

/* Collect the results of `kind` (without the ".default" GEMM variants):
 * rows in order of first appearance over the devices. 0 ok, -1 no memory. */
static int series_collect(series *s, const cJSON *devices)
{
    s->nd = (size_t)cJSON_GetArraySize(devices);
    size_t cap = 0;
    const cJSON *dev;
    cJSON_ArrayForEach(dev, devices) cap += (size_t)cJSON_GetArraySize(
        cJSON_GetObjectItemCaseSensitive(dev, "results"));
    s->ids = calloc(cap + 1, sizeof *s->ids);
    s->labels = calloc(cap + 1, sizeof *s->labels);
    s->med = malloc((cap + 1) * (s->nd + 1) * sizeof(double));
    s->lo = malloc((cap + 1) * (s->nd + 1) * sizeof(double));
    s->hi = malloc((cap + 1) * (s->nd + 1) * sizeof(double));
    if (!s->ids || !s->labels || !s->med || !s->lo || !s->hi) return -1;
    for (size_t i = 0; i < (cap + 1) * (s->nd + 1); i++) s->med[i] = s->lo[i] = s->hi[i] = NAN;
    size_t d = 0;
    cJSON_ArrayForEach(dev, devices)
    {
        const cJSON *r;
        cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(dev, "results"))
        {
            const char *id = str(r, "id");
            size_t len = strlen(id);
            if (strcmp(str(r, "kind"), s->kind) != 0 ||
                (len > 8 && !strcmp(id + len - 8, ".default")))
                continue;
            size_t row = 0;
            while (row < s->nr && strcmp(s->ids[row], id) != 0) row++;
            if (row == s->nr) {
                if (!(s->ids[row] = strdup(id)) || !(s->labels[row] = strdup(str(r, "label"))))
                    return -1;
                s->nr++;
                s->unit = str(r, "unit");
            }
            s->med[row * s->nd + d] = num(r, "median");
            s->lo[row * s->nd + d] = num(r, "min");
            s->hi[row * s->nd + d] = num(r, "max");
        }
        d++;
    }
    return 0;
}

/* Horizontal grouped bars: one group per row, one bar per device (its
 * median, a line over min-max), the value at the bar's end, a legend. */
static int series_png(const series *s, const char *const *dev_labels, const char *path)
{
    const int bar = 16, gap = 14, plot_w = 640, pad = 16, line = 12 * FONT_SCALE / 2 + 10;
    int label_w = 0;
    for (size_t r = 0; r < s->nr; r++) {
        int w = text_width(s->labels[r][0] ? s->labels[r] : s->ids[r]);
        if (w > label_w) label_w = w;
    }
    if (label_w > 700) label_w = 700;
    int legend_w = 0;
    for (size_t d = 0; d < s->nd; d++) {
        int w = text_width(dev_labels[d]) + 30;
        if (w > legend_w) legend_w = w;
    }
    const int x0 = pad + label_w + 10, top = pad + 2 * line;
    const int group = (int)s->nd * bar + gap;
    canvas c;
    c.w = x0 + plot_w + 120;
    if (pad + legend_w > c.w) c.w = pad + legend_w + pad;
    c.h = top + (int)s->nr * group + 2 * line + (int)s->nd * line + pad;
    c.px = malloc((size_t)c.w * (size_t)c.h * 3);
    if (!c.px) return -1;
    memset(c.px, 255, (size_t)c.w * (size_t)c.h * 3);
    double vmax = 0;
    for (size_t i = 0; i < s->nr * s->nd; i++) {
        if (isfinite(s->hi[i]) && s->hi[i] > vmax) vmax = s->hi[i];
        if (isfinite(s->med[i]) && s->med[i] > vmax) vmax = s->med[i];
    }
    if (!(vmax > 0)) vmax = 1;
    /* a round axis end: 1, 2 or 5 times a power of ten, and 5 grid lines */
    double p10 = pow(10, floor(log10(vmax))), top_v = p10;
    while (top_v < vmax) top_v += top_v < 2 * p10 ? p10 : top_v < 5 * p10 ? 3 * p10 : 5 * p10;
    char buf[256];
    snprintf(buf, sizeof buf, "%s (%s; median, line: min-max)", s->title, s->unit);
    text(&c, pad, pad, buf, black);
    const int plot_h = (int)s->nr * group;
    for (int g = 0; g <= 5; g++) {
        int x = x0 + (int)lround(plot_w * g / 5.0);
        rect(&c, x, top - 4, x + 1, top + plot_h, grey);
        snprintf(buf, sizeof buf, "%.6g", top_v * g / 5.0);
        text(&c, x - text_width(buf) / 2, top + plot_h + 6, buf, black);
    }
    rect(&c, x0, top - 4, x0 + 1, top + plot_h, black);
    for (size_t r = 0; r < s->nr; r++) {
        int gy = top + (int)r * group;
        const char *lab = s->labels[r][0] ? s->labels[r] : s->ids[r];
        text(&c, x0 - 10 - text_width(lab), gy + ((int)s->nd * bar) / 2 - 6, lab, black);
        for (size_t d = 0; d < s->nd; d++) {
            int y = gy + (int)d * bar;
            double m = s->med[r * s->nd + d], lo = s->lo[r * s->nd + d],
                   hi = s->hi[r * s->nd + d];
            const uint8_t *col = palette[d % 8];
            if (!isfinite(m)) {
                text(&c, x0 + 6, y + 2, "n/a", black);
                continue;
            }
            int xe = x0 + (int)lround(plot_w * m / top_v);
            rect(&c, x0 + 1, y + 2, xe, y + bar - 2, col);
            if (isfinite(lo) && isfinite(hi) && hi > lo) {
                int xl = x0 + (int)lround(plot_w * lo / top_v),
                    xh = x0 + (int)lround(plot_w * hi / top_v);
                rect(&c, xl, y + bar / 2 - 1, xh + 1, y + bar / 2 + 1, black);
                rect(&c, xl, y + 4, xl + 1, y + bar - 4, black);
                rect(&c, xh, y + 4, xh + 1, y + bar - 4, black);
                if (xh > xe) xe = xh;
            }
            snprintf(buf, sizeof buf, m >= 1000 ? "%.0f" : "%.3g", m);
            text(&c, xe + 5, y + 1, buf, black);
        }
    }
    int ly = top + plot_h + 2 * line;
    for (size_t d = 0; d < s->nd; d++, ly += line) {
        rect(&c, pad, ly + 2, pad + 20, ly + 14, palette[d % 8]);
        text(&c, pad + 28, ly, dev_labels[d], black);
    }
    int rc = png_save(path, &c);
    free(c.px);
    return rc;
}

/* ---- the files ---- */

static const struct {
    const char *key, *label;
} meta_fields[] = {
    {"device", "device"},
    {"vendor", "vendor"},
    {"platform", "platform"},
    {"platform_vendor", "platform vendor"},
    {"platform_version", "platform version"},
    {"driver", "driver"},
    {"opencl_version", "OpenCL"},
    {"opencl_c_version", "OpenCL C"},
    {"type", "type"},
    {"compute_units", "compute units"},
    {"clock_mhz", "clock (MHz)"},
    {"global_mem_bytes", "global memory (bytes)"},
    {"max_alloc_bytes", "max allocation (bytes)"},
    {"local_mem_bytes", "local memory (bytes)"},
    {"fp16", "fp16"},
    {"fp64", "fp64"},
    {"clblast_version", "CLBlast"},
    {"gemm_params_source", "GEMM parameters from"},
    {"gemm_tuning", "GEMM tuning"},
    {"conv_algo", "convolution"},
    {"conv_direct", "direct 3x3 / 5x5 convolutions"},
};

static void meta_value(const cJSON *dev, const char *key, char *buf, size_t size)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(dev, key);
    if (cJSON_IsString(v))
        snprintf(buf, size, "%s", v->valuestring);
    else if (cJSON_IsBool(v))
        snprintf(buf, size, "%s", cJSON_IsTrue(v) ? "yes" : "no");
    else if (cJSON_IsNumber(v))
        snprintf(buf, size, "%.0f", v->valuedouble);
    else
        snprintf(buf, size, "?");
}

static void stat_text(char *buf, size_t size, double m, double lo, double hi)
{
    if (!isfinite(m))
        snprintf(buf, size, "n/a");
    else if (isfinite(lo) && isfinite(hi) && hi > lo)
        snprintf(buf, size, "%.4g [%.4g-%.4g]", m, lo, hi);
    else
        snprintf(buf, size, "%.4g", m);
}

int bench_report_write(const char *dir, const cJSON *root)
{
    if (strcmp(str(root, "schema"), "kdcl-bench-1") != 0) {
        fprintf(stderr, "kdcl bench: not a kdcl-bench-1 document\n");
        return 1;
    }
    const cJSON *devices = cJSON_GetObjectItemCaseSensitive(root, "devices");
    if (!cJSON_IsArray(devices) || cJSON_GetArraySize(devices) == 0) {
        fprintf(stderr, "kdcl bench: the document has no devices\n");
        return 1;
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "kdcl bench: cannot create %s: %s\n", dir, strerror(errno));
        return 1;
    }
    int rc = 0;
    /* bench.json */
    char *text_json = cJSON_Print(root);
    sbuf b = {0};
    sb_printf(&b, "%s\n", text_json ? text_json : "");
    if (!text_json) b.oom = 1;
    free(text_json);
    rc |= sb_write(&b, dir, "bench.json");
    free(b.p);

    /* bench.csv: one row per device and result */
    b = (sbuf){0};
    static const char *const cols[] = {"device", "platform", "driver", "label_device",
                                       "id", "label", "kind", "unit", "better", "median",
                                       "min", "max", "reps"};
    for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++)
        csv_field(&b, cols[i], i + 1 == sizeof cols / sizeof cols[0]);
    const cJSON *dev;
    size_t nd = (size_t)cJSON_GetArraySize(devices);
    const char **dev_labels = calloc(nd, sizeof *dev_labels);
    if (!dev_labels) b.oom = 1;
    size_t d = 0;
    cJSON_ArrayForEach(dev, devices)
    {
        if (dev_labels) dev_labels[d++] = str(dev, "label");
        const cJSON *r;
        cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(dev, "results"))
        {
            csv_field(&b, str(dev, "device"), 0);
            csv_field(&b, str(dev, "platform"), 0);
            csv_field(&b, str(dev, "driver"), 0);
            csv_field(&b, str(dev, "label"), 0);
            csv_field(&b, str(r, "id"), 0);
            csv_field(&b, str(r, "label"), 0);
            csv_field(&b, str(r, "kind"), 0);
            csv_field(&b, str(r, "unit"), 0);
            csv_field(&b, str(r, "better"), 0);
            csv_num(&b, num(r, "median"), 0);
            csv_num(&b, num(r, "min"), 0);
            csv_num(&b, num(r, "max"), 0);
            csv_num(&b, num(r, "reps"), 1);
        }
    }
    rc |= sb_write(&b, dir, "bench.csv");
    free(b.p);
    if (!dev_labels) return 1;

    /* report.md */
    b = (sbuf){0};
    const cJSON *host = cJSON_GetObjectItemCaseSensitive(root, "host");
    sb_printf(&b, "# kdcl bench report\n\n");
    sb_printf(&b, "- kdcl %s (%s), %s\n", str(root, "kdcl_version"), str(root, "git"),
              str(root, "date"));
    sb_printf(&b, "- command: `%s`\n", str(root, "command_line"));
    sb_printf(&b, "- host: %s, %s, %.0f CPUs, %s, load %.2f to %.2f\n", str(host, "hostname"),
              str(host, "cpu_model"), num(host, "cpus"), str(host, "os"),
              num(host, "loadavg_start"), num(host, "loadavg_end"));
    sb_printf(&b, "- %.0f s in all; each figure: median [min-max] over the repetitions after a "
                  "warm-up; build and first-call times are apart from them\n\n",
              num(root, "seconds"));
    sb_printf(&b, "## Devices\n\n|");
    md_cell(&b, "");
    for (size_t i = 0; i < nd; i++) md_cell(&b, dev_labels[i]);
    sb_printf(&b, "\n|---|");
    for (size_t i = 0; i < nd; i++) sb_printf(&b, "---|");
    sb_printf(&b, "\n");
    char buf[2048];
    for (size_t f = 0; f < sizeof meta_fields / sizeof meta_fields[0]; f++) {
        sb_printf(&b, "|");
        md_cell(&b, meta_fields[f].label);
        cJSON_ArrayForEach(dev, devices)
        {
            meta_value(dev, meta_fields[f].key, buf, sizeof buf);
            md_cell(&b, buf);
        }
        sb_printf(&b, "\n");
    }
    static const struct {
        const char *key, *label;
    } build_fields[] = {{"context_seconds", "context creation (s)"},
                        {"clblast_first_call_seconds", "first CLBlast call (s)"},
                        {"build_seconds", "program builds (s)"},
                        {"builds", "programs compiled"},
                        {"cache_hits", "programs from the cache"}};
    for (size_t f = 0; f < sizeof build_fields / sizeof build_fields[0]; f++) {
        sb_printf(&b, "|");
        md_cell(&b, build_fields[f].label);
        cJSON_ArrayForEach(dev, devices)
        {
            double v = num(cJSON_GetObjectItemCaseSensitive(dev, "build"), build_fields[f].key);
            if (isfinite(v))
                snprintf(buf, sizeof buf, "%.4g", v);
            else
                snprintf(buf, sizeof buf, "?");
            md_cell(&b, buf);
        }
        sb_printf(&b, "\n");
    }
    static const struct {
        const char *kind, *title, *file;
    } kinds[] = {{"gemm", "GEMM", "gemm.png"},
                 {"train", "Training", "train.png"},
                 {"infer", "Inference", "infer.png"},
                 {"time", "Time to a test error", "time.png"},
                 {"step", "Training step, device time", NULL},
                 {"combine", "Specialists' combination", NULL}};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        series s = {kinds[k].kind, kinds[k].title, kinds[k].file, NULL, NULL, NULL, NULL, NULL,
                    0, 0, ""};
        if (series_collect(&s, devices)) {
            series_free(&s);
            b.oom = 1;
            break;
        }
        if (s.nr == 0) {
            series_free(&s);
            continue;
        }
        sb_printf(&b, "\n## %s (%s)\n\n|", s.title, s.unit);
        md_cell(&b, "");
        for (size_t i = 0; i < nd; i++) md_cell(&b, dev_labels[i]);
        sb_printf(&b, "\n|---|");
        for (size_t i = 0; i < nd; i++) sb_printf(&b, "---|");
        sb_printf(&b, "\n");
        for (size_t r = 0; r < s.nr; r++) {
            sb_printf(&b, "|");
            snprintf(buf, sizeof buf, "%s%s%s%s", s.labels[r], *s.labels[r] ? " (" : "", s.ids[r],
                     *s.labels[r] ? ")" : "");
            md_cell(&b, buf);
            for (size_t i = 0; i < nd; i++) {
                stat_text(buf, sizeof buf, s.med[r * nd + i], s.lo[r * nd + i],
                          s.hi[r * nd + i]);
                md_cell(&b, buf);
            }
            sb_printf(&b, "\n");
        }
        if (s.file) {
            char path[4200];
            snprintf(path, sizeof path, "%s/%s", dir, s.file);
            if (series_png(&s, dev_labels, path)) {
                rc |= fail(s.file, dir);
            } else {
                printf("wrote %s\n", path);
                sb_printf(&b, "\n![%s](%s)\n", s.title, s.file);
            }
        }
        series_free(&s);
    }
    cJSON_ArrayForEach(dev, devices)
    {
        const cJSON *errs = cJSON_GetObjectItemCaseSensitive(dev, "errors");
        if (cJSON_GetArraySize(errs) == 0) continue;
        sb_printf(&b, "\n## Failures on %s\n\n", str(dev, "label"));
        const cJSON *e;
        cJSON_ArrayForEach(e, errs) sb_printf(&b, "- %s\n", cJSON_GetStringValue(e) ? e->valuestring : "?");
    }
    rc |= sb_write(&b, dir, "report.md");
    free(b.p);
    free(dev_labels);
    return rc;
}
