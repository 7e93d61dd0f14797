#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "kdcl/data.h"

int cli_fail(const char *cmd, kdcl_status s)
{
    const char *msg = kdcl_last_error();
    fprintf(stderr, "kdcl %s: %s\n", cmd, msg && *msg ? msg : kdcl_status_name(s));
    return (s == KDCL_ERR_NO_DEVICE || s == KDCL_ERR_INVALID_ARG) ? CLI_EXIT_USAGE : CLI_EXIT_FAIL;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "kdcl %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see: kdcl %s --help)\n", cmd);
    return CLI_EXIT_USAGE;
}

int cli_open_ctx(const char *cmd, const char *device, kdcl_ctx **ctx)
{
    kdcl_status s = kdcl_ctx_create(device, ctx);
    if (s) return cli_fail(cmd, s);
    return 0;
}

int cli_parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s || *s == '-') return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

int cli_parse_size(const char *s, size_t *out)
{
    uint64_t v;
    if (cli_parse_u64(s, &v) || v > SIZE_MAX) return -1;
    *out = (size_t)v;
    return 0;
}

int cli_parse_double(const char *s, double *out)
{
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

int cli_parse_list(const char *s, int max, double *d1, double *d2, double *d3)
{
    double *dst[3] = {d1, d2, d3};
    char buf[256];
    if (!s || strlen(s) >= sizeof buf) return -1;
    snprintf(buf, sizeof buf, "%s", s);
    int n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n >= max || !dst[n] || cli_parse_double(tok, dst[n])) return -1;
        n++;
    }
    return n;
}

const char *cli_data_dir(const char *opt)
{
    if (opt && *opt) return opt;
    const char *e = getenv("KDCL_DATA");
    return e && *e ? e : CLI_DEFAULT_DATA;
}

int cli_skip_bad_images;

/* One line on stderr: control characters (a newline in a file name) as '?'. */
static void print_line(const char *cmd, const char *what, const char *msg)
{
    fprintf(stderr, "kdcl %s: %s", cmd, what);
    for (const char *p = msg; *p; p++) fputc((unsigned char)*p < 0x20 ? '?' : *p, stderr);
    fputc('\n', stderr);
}

static void on_skip(void *user, const char *path, const char *reason)
{
    (void)path; /* the reason names it */
    print_line((const char *)user, "warning: skipped ", reason);
}

int cli_load_split(const char *cmd, const char *dir, const char *split, kdcl_dataset *ds)
{
    kdcl_image_opts io = {0};
    io.skip_bad = cli_skip_bad_images;
    io.on_skip = on_skip;
    io.user = (void *)(uintptr_t)cmd;
    kdcl_status s = kdcl_dataset_load_split_opts(dir, split, &io, ds);
    if (s) {
        print_line(cmd, "", kdcl_last_error());
        return CLI_EXIT_FAIL;
    }
    if (io.n_skipped)
        fprintf(stderr, "kdcl %s: %s/%s: skipped %zu image file%s that could not be decoded, "
                        "kept %zu\n",
                cmd, dir, split, io.n_skipped, io.n_skipped == 1 ? "" : "s", ds->n);
    return 0;
}

double kdcl_wall_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
