/* Shared helpers for the Check suites. */
#ifndef KDCL_TESTUTIL_H
#define KDCL_TESTUTIL_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

/* A per-suite temp directory (created on first use, under $KDCL_TEST_TMP or /tmp). */
const char *tu_tmpdir(void);
/* Path join into a static rotating buffer: tu_path("x.bin") -> "<tmpdir>/x.bin". */
const char *tu_path(const char *name);
/* Write bytes to a file; returns 0 on success. */
int tu_write_file(const char *path, const void *data, size_t n);
/* Deterministic uniform floats in [lo, hi) (xorshift, seeded). */
void tu_fill_uniform(float *x, size_t n, float lo, float hi, uint64_t seed);
/* Run a suite with Check and return the number of failures (for main()). */
int tu_run_suite(Suite *s);

#endif
