#ifndef KDCL_RUNTIME_EMBEDDED_H
#define KDCL_RUNTIME_EMBEDDED_H
#include <stddef.h>
typedef struct kdcl_embedded_source {
    const char *name; /* file name without .cl */
    const char *text; /* NUL-terminated */
    size_t len;
} kdcl_embedded_source;
extern const kdcl_embedded_source kdcl_embedded_sources[];
#endif
