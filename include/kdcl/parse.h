/* Strict numbers in text, as kdcl's option parsers take them
 * (kdcl_train_opts_set, the command line's flags): the whole text and
 * nothing else. Each returns 0, or -1 (out unchanged) when the text is not
 * such a number. */
#ifndef KDCL_PARSE_H
#define KDCL_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "kdcl/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Digits only: no sign, no spaces ("-1" would wrap around), no overflow. */
KDCL_API int kdcl_parse_u64(const char *s, uint64_t *out);
/* kdcl_parse_u64 that fits a size_t. */
KDCL_API int kdcl_parse_size(const char *s, size_t *out);
/* A finite double (no leading space; "nan", "inf" and overflow refused). */
KDCL_API int kdcl_parse_double(const char *s, double *out);
/* Up to max (<= 8) comma-separated finite doubles into out: how many, or -1. */
KDCL_API int kdcl_parse_list(const char *s, int max, double *out);

#ifdef __cplusplus
}
#endif
#endif
