/* Whole-file reading (raw or gzip) and small path helpers for the loaders. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "data_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zlib.h>

int kdcl__is_file(const char *path)
{
    struct stat st;
    return path && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int kdcl__is_dir(const char *path)
{
    struct stat st;
    return path && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

kdcl_status kdcl__join(char *buf, size_t n, const char *a, const char *b)
{
    int k = snprintf(buf, n, "%s/%s", a, b);
    if (k < 0 || (size_t)k >= n)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "path too long: %s/%s", a, b);
    return KDCL_OK;
}

char *kdcl__strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

void kdcl__free_names(char **names, size_t n)
{
    if (!names) return;
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* Open path for reading; it must be a regular file (*st: its status). */
static kdcl_status open_regular(const char *path, FILE **out, struct stat *st)
{
    *out = NULL;
    if (!path) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "NULL file path");
    FILE *f = fopen(path, "rb");
    if (!f) return kdcl_set_error(KDCL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fileno(f), st) != 0) {
        int e = errno;
        fclose(f);
        return kdcl_set_error(KDCL_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st->st_mode)) {
        fclose(f);
        return kdcl_set_error(KDCL_ERR_IO, "%s: not a regular file", path);
    }
    *out = f;
    return KDCL_OK;
}

static kdcl_status read_raw(const char *path, FILE *f, const struct stat *st, size_t max,
                            uint8_t **data, size_t *size)
{
    if (st->st_size < 0 || (uintmax_t)st->st_size > (uintmax_t)SIZE_MAX)
        return kdcl_set_error(KDCL_ERR_OVERFLOW, "%s: file too large for this platform", path);
    size_t n = (size_t)st->st_size;
    if (n > max)
        return kdcl_set_error(KDCL_ERR_FORMAT, "%s: file of %zu bytes exceeds the limit of %zu",
                              path, n, max);
    uint8_t *buf = NULL;
    if (n) {
        buf = malloc(n);
        if (!buf)
            return kdcl_set_error(KDCL_ERR_OOM, "%s: cannot allocate %zu bytes to read the file",
                                  path, n);
        size_t got = fread(buf, 1, n, f);
        if (got != n) {
            int e = ferror(f) ? errno : 0;
            free(buf);
            if (e)
                return kdcl_set_error(KDCL_ERR_IO, "%s: read error after %zu of %zu bytes: %s",
                                      path, got, n, strerror(e));
            return kdcl_set_error(KDCL_ERR_IO,
                                  "%s: file shrank while reading (got %zu of %zu bytes)", path,
                                  got, n);
        }
    }
    *data = buf;
    *size = n;
    return KDCL_OK;
}

/* zlib's gzerror() prefixes the message with "<path>: "; drop it. */
static const char *gz_msg(const char *path, const char *msg)
{
    if (!msg || !*msg) return "unknown error";
    size_t n = strlen(path);
    if (strncmp(msg, path, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ') return msg + n + 2;
    return msg;
}

static kdcl_status read_gzip(const char *path, size_t max, uint8_t **data, size_t *size)
{
    gzFile gz = gzopen(path, "rb");
    if (!gz)
        return kdcl_set_error(KDCL_ERR_IO, "%s: cannot open gzip stream: %s", path,
                              errno ? strerror(errno) : "out of memory");
    gzbuffer(gz, 1u << 17);
    size_t cap = 1u << 20, n = 0;
    uint8_t *buf = malloc(cap);
    if (!buf) {
        gzclose(gz);
        return kdcl_set_error(KDCL_ERR_OOM, "%s: out of memory decompressing", path);
    }
    for (;;) {
        if (n > max) {
            free(buf);
            gzclose(gz);
            return kdcl_set_error(KDCL_ERR_FORMAT,
                                  "%s: gzip stream inflates to more than the limit of %zu bytes",
                                  path, max);
        }
        if (n == cap) {
            size_t ncap;
            if (kdcl__mul_overflow(cap, 2, &ncap)) {
                free(buf);
                gzclose(gz);
                return kdcl_set_error(KDCL_ERR_OVERFLOW, "%s: decompressed size overflows",
                                      path);
            }
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) {
                free(buf);
                gzclose(gz);
                return kdcl_set_error(KDCL_ERR_OOM,
                                      "%s: out of memory decompressing (%zu bytes so far)", path,
                                      n);
            }
            buf = nb;
            cap = ncap;
        }
        size_t want = cap - n;
        if (want > max - n + 1) want = max - n + 1; /* one byte past the limit tells */
        if (want > (size_t)INT_MAX / 2) want = (size_t)INT_MAX / 2;
        int got = gzread(gz, buf + n, (unsigned)want);
        if (got < 0) {
            int errnum = Z_OK;
            const char *msg = gzerror(gz, &errnum);
            kdcl_status s = kdcl_set_error(
                KDCL_ERR_FORMAT, "%s: corrupt gzip data after %zu decompressed bytes: %s", path,
                n, errnum == Z_ERRNO ? strerror(errno) : gz_msg(path, msg));
            if (errnum == Z_ERRNO) s = KDCL_ERR_IO;
            free(buf);
            gzclose(gz);
            return s;
        }
        if (got == 0) break;
        n += (size_t)got;
    }
    /* gzread returns 0 at end of input; a truncated stream leaves Z_BUF_ERROR. */
    int errnum = Z_OK;
    const char *msg = gzerror(gz, &errnum);
    if (errnum != Z_OK) {
        kdcl_status s = kdcl_set_error(
            KDCL_ERR_FORMAT,
            "%s: truncated or corrupt gzip file (%s after %zu decompressed bytes)", path,
            gz_msg(path, msg), n);
        free(buf);
        gzclose(gz);
        return s;
    }
    int rc = gzclose(gz);
    if (rc != Z_OK) {
        free(buf);
        return kdcl_set_error(KDCL_ERR_IO, "%s: error closing gzip stream (zlib code %d)", path,
                              rc);
    }
    if (n == 0) {
        free(buf);
        buf = NULL;
    } else if (n < cap) {
        uint8_t *nb = realloc(buf, n);
        if (nb) buf = nb;
    }
    *data = buf;
    *size = n;
    return KDCL_OK;
}

kdcl_status kdcl__read_file(const char *path, int allow_gzip, uint8_t **data, size_t *size,
                            int *was_gzip)
{
    return kdcl__read_file_max(path, allow_gzip, SIZE_MAX - 1, SIZE_MAX - 1, data, size,
                               was_gzip);
}

kdcl_status kdcl__read_file_max(const char *path, int allow_gzip, size_t max_raw,
                                size_t max_inflated, uint8_t **data, size_t *size, int *was_gzip)
{
    *data = NULL;
    *size = 0;
    if (was_gzip) *was_gzip = 0;
    FILE *f = NULL;
    struct stat st;
    kdcl_status os = open_regular(path, &f, &st);
    if (os) return os;
    unsigned char magic[2] = {0, 0};
    size_t m = fread(magic, 1, 2, f);
    int is_gz = allow_gzip && m == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    kdcl_status s;
    if (is_gz) {
        fclose(f);
        s = read_gzip(path, max_inflated < SIZE_MAX ? max_inflated : SIZE_MAX - 1, data, size);
    } else {
        rewind(f);
        s = read_raw(path, f, &st, max_raw, data, size);
        fclose(f);
    }
    if (s == KDCL_OK && was_gzip) *was_gzip = is_gz;
    return s;
}

kdcl_status kdcl__read_names(const char *path, size_t expected, char ***names)
{
    *names = NULL;
    if (!kdcl__is_file(path) || expected == 0) return KDCL_OK;
    uint8_t *buf = NULL;
    size_t n = 0;
    kdcl_status s = kdcl__read_file_max(path, 0, (size_t)1 << 20, 0, &buf, &n, NULL);
    if (s != KDCL_OK) return KDCL_OK; /* optional metadata: ignore */
    char **out = calloc(expected, sizeof *out);
    if (!out) {
        free(buf);
        return kdcl_set_error(KDCL_ERR_OOM, "%s: out of memory reading class names", path);
    }
    size_t k = 0, i = 0;
    int ok = 1;
    while (i < n && ok) {
        size_t j = i;
        while (j < n && buf[j] != '\n') j++;
        size_t e = j;
        while (e > i && (buf[e - 1] == '\r' || buf[e - 1] == ' ' || buf[e - 1] == '\t')) e--;
        if (e > i) {
            int printable = 1;
            for (size_t q = i; q < e; q++)
                if (buf[q] < 0x20 || buf[q] == 0x7f) printable = 0;
            if (!printable || k == expected) {
                ok = 0;
                break;
            }
            out[k] = malloc(e - i + 1);
            if (!out[k]) {
                free(buf);
                kdcl__free_names(out, expected);
                return kdcl_set_error(KDCL_ERR_OOM, "%s: out of memory reading class names",
                                      path);
            }
            memcpy(out[k], buf + i, e - i);
            out[k][e - i] = '\0';
            k++;
        }
        i = j + 1;
    }
    free(buf);
    if (!ok || k != expected) {
        kdcl__free_names(out, expected);
        return KDCL_OK;
    }
    *names = out;
    return KDCL_OK;
}

/* ---- header-first reading ------------------------------------------------ */

kdcl_status kdcl__stream_open(kdcl__stream *r, const char *path, int allow_gzip)
{
    memset(r, 0, sizeof *r);
    r->path = path;
    FILE *f = NULL;
    struct stat st;
    kdcl_status os = open_regular(path, &f, &st);
    if (os) return os;
    if (st.st_size < 0) {
        fclose(f);
        return kdcl_set_error(KDCL_ERR_IO, "%s: cannot tell its size", path);
    }
    unsigned char magic[2] = {0, 0};
    size_t m = fread(magic, 1, 2, f);
    if (allow_gzip && m == 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
        fclose(f);
        gzFile gz = gzopen(path, "rb");
        if (!gz)
            return kdcl_set_error(KDCL_ERR_IO, "%s: cannot open gzip stream: %s", path,
                                  errno ? strerror(errno) : "out of memory");
        gzbuffer(gz, 1u << 17);
        r->gz = gz;
        r->is_gzip = 1;
        return KDCL_OK;
    }
    rewind(f);
    r->f = f;
    r->file_size = (uint64_t)st.st_size;
    return KDCL_OK;
}

kdcl_status kdcl__stream_read(kdcl__stream *r, void *buf, size_t n, size_t *got)
{
    *got = 0;
    uint8_t *p = buf;
    while (*got < n) {
        size_t want = n - *got;
        if (r->is_gzip) {
            if (want > (size_t)INT_MAX / 2) want = (size_t)INT_MAX / 2;
            int k = gzread((gzFile)r->gz, p + *got, (unsigned)want);
            if (k < 0) {
                int errnum = Z_OK;
                const char *msg = gzerror((gzFile)r->gz, &errnum);
                if (errnum == Z_ERRNO)
                    return kdcl_set_error(KDCL_ERR_IO, "%s: read error: %s", r->path,
                                          strerror(errno));
                return kdcl_set_error(KDCL_ERR_FORMAT,
                                      "%s: corrupt gzip data after %llu decompressed bytes: %s",
                                      r->path, (unsigned long long)(r->pos + *got),
                                      gz_msg(r->path, msg));
            }
            if (k == 0) {
                /* the end of the stream, or a truncated one */
                int errnum = Z_OK;
                const char *msg = gzerror((gzFile)r->gz, &errnum);
                if (errnum != Z_OK)
                    return kdcl_set_error(
                        KDCL_ERR_FORMAT,
                        "%s: truncated or corrupt gzip file (%s after %llu decompressed bytes)",
                        r->path, gz_msg(r->path, msg), (unsigned long long)(r->pos + *got));
                break;
            }
            *got += (size_t)k;
        } else {
            size_t k = fread(p + *got, 1, want, (FILE *)r->f);
            if (k == 0) {
                if (ferror((FILE *)r->f))
                    return kdcl_set_error(KDCL_ERR_IO, "%s: read error: %s", r->path,
                                          strerror(errno));
                break;
            }
            *got += k;
        }
    }
    r->pos += *got;
    return KDCL_OK;
}

void kdcl__stream_close(kdcl__stream *r)
{
    if (r->gz) gzclose((gzFile)r->gz);
    if (r->f) fclose((FILE *)r->f);
    r->gz = NULL;
    r->f = NULL;
}
