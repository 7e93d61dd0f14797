/* kdcl status codes and error messages.
 *
 * Every library function that can fail returns a kdcl_status (KDCL_OK == 0)
 * and records a human-readable message retrievable with kdcl_last_error()
 * (thread-local). The library never prints to stdout and never calls exit().
 */
#ifndef KDCL_STATUS_H
#define KDCL_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

/* Marks the library's public functions (exported from the shared library). */
#ifndef KDCL_API
#define KDCL_API __attribute__((visibility("default")))
#endif

typedef enum kdcl_status {
    KDCL_OK = 0,
    KDCL_ERR_INVALID_ARG = 1, /* bad argument, shape or option */
    KDCL_ERR_IO = 2,          /* file cannot be opened/read/written */
    KDCL_ERR_FORMAT = 3,      /* file contents malformed (magic, sizes, header) */
    KDCL_ERR_NO_DEVICE = 4,   /* no OpenCL platform/device, or no match */
    KDCL_ERR_OPENCL = 5,      /* an OpenCL call failed */
    KDCL_ERR_BUILD = 6,       /* kernel program build failed (log in message) */
    KDCL_ERR_OOM = 7,         /* out of host or device memory */
    KDCL_ERR_CLBLAST = 8,     /* CLBlast routine failed */
    KDCL_ERR_NUMERIC = 9,     /* NaN/Inf in loss or data */
    KDCL_ERR_OVERFLOW = 10,   /* size computation overflow */
    KDCL_ERR_INTERNAL = 11
} kdcl_status;

/* Message of the last error set on this thread ("" if none). */
const char *kdcl_last_error(void);

/* Short name of a status ("KDCL_ERR_IO"). */
const char *kdcl_status_name(kdcl_status s);

/* Record an error message (printf-style) and return `s`. Used by the library
 * and by extensions; message is truncated to a few KiB (build logs included). */
kdcl_status kdcl_set_error(kdcl_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Clear the thread's error message. */
void kdcl_clear_error(void);

/* Name of an OpenCL error code ("CL_OUT_OF_RESOURCES"), or "CL_ERROR(<n>)". */
const char *kdcl_cl_error_name(int cl_err);

#ifdef __cplusplus
}
#endif
#endif
