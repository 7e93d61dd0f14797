/* Internal helpers shared by the dataset loaders (not installed). */
#ifndef KDCL_DATA_INTERNAL_H
#define KDCL_DATA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "kdcl/data.h"

/* Longest path the loaders build (Linux PATH_MAX). */
#define KDCL_PATH_MAX 4096

static inline int kdcl__mul_overflow(size_t a, size_t b, size_t *out)
{
    return __builtin_mul_overflow(a, b, out);
}

static inline int kdcl__add_overflow(size_t a, size_t b, size_t *out)
{
    return __builtin_add_overflow(a, b, out);
}

/* Read a whole file into a malloc'd buffer. When allow_gzip is set and the
 * file starts with the gzip magic (1f 8b), it is decompressed (with CRC and
 * length checks; truncation and corruption are errors). *data may be NULL
 * when *size is 0. *was_gzip (optional) reports whether it was gzip. */
kdcl_status kdcl__read_file(const char *path, int allow_gzip, uint8_t **data, size_t *size,
                            int *was_gzip);

/* The same with limits: a raw file larger than max_raw bytes is refused
 * unread, a gzip stream that inflates past max_inflated bytes is refused as
 * soon as it does. */
kdcl_status kdcl__read_file_max(const char *path, int allow_gzip, size_t max_raw,
                                size_t max_inflated, uint8_t **data, size_t *size, int *was_gzip);

/* A file read piece by piece, raw or gzip (by the gzip magic, when allowed),
 * so that a header can be checked before the payload is read. */
typedef struct kdcl__stream {
    const char *path;
    void *f;            /* FILE * of a raw file */
    void *gz;           /* gzFile of a gzip file */
    int is_gzip;
    uint64_t file_size; /* raw files: the size on disk */
    uint64_t pos;       /* bytes delivered so far (decompressed) */
} kdcl__stream;

kdcl_status kdcl__stream_open(kdcl__stream *r, const char *path, int allow_gzip);
/* Read up to n bytes; *got < n only at the end of the data (a truncated or
 * corrupt gzip stream is an error, KDCL_ERR_FORMAT; its CRC and length are
 * checked when its end is read). */
kdcl_status kdcl__stream_read(kdcl__stream *r, void *buf, size_t n, size_t *got);
void kdcl__stream_close(kdcl__stream *r);

/* 1 if path exists and is a regular file (following symlinks), 0 otherwise. */
int kdcl__is_file(const char *path);
/* 1 if path exists and is a directory. */
int kdcl__is_dir(const char *path);

/* snprintf into buf of size n, returning KDCL_ERR_INVALID_ARG if truncated. */
kdcl_status kdcl__join(char *buf, size_t n, const char *a, const char *b);

/* strdup (POSIX strdup is fine too, but this keeps allocation in one place). */
char *kdcl__strdup(const char *s);

/* Read a text file of names, one a line (blank lines skipped, trailing
 * whitespace trimmed). Returns KDCL_OK with *names NULL if the file is absent
 * or does not hold exactly `expected` names (names are optional metadata). */
kdcl_status kdcl__read_names(const char *path, size_t expected, char ***names);

void kdcl__free_names(char **names, size_t n);

#endif
