/* kdcl status codes and error messages.
 *
 * Every library function that can fail returns a kdcl_status (KDCL_OK == 0)
 * and records a human-readable message retrievable with kdcl_last_error()
 * (thread-local). The library never prints to stdout and never calls exit().
 */
#ifndef KDCL_STATUS_H
#define KDCL_STATUS_H

/* The version of the headers (kdcl_version(): that of the library loaded). */
#define KDCL_VERSION "0.1.0"

/* KDCL_API marks what libkdcl exports: the library is built with hidden
 * visibility, so the functions declared in include/kdcl are its whole
 * interface (the shared library exports nothing else). */
#ifndef KDCL_API
#if defined(_WIN32)
#define KDCL_API
#elif defined(__GNUC__) || defined(__clang__)
#define KDCL_API __attribute__((visibility("default")))
#else
#define KDCL_API
#endif
#endif

#ifdef __cplusplus
extern "C" {
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

/* The library's version ("0.1.0"): that of the libkdcl actually loaded,
 * which a caller can compare with the KDCL_VERSION it was compiled against. */
KDCL_API const char *kdcl_version(void);

/* Release memory the library allocated for a caller (strings and arrays that
 * the documentation of a function says are the caller's to free). NULL is
 * allowed. Use it rather than free() from bindings and from programs linked
 * against another C runtime. */
KDCL_API void kdcl_free(void *p);

/* Message of the last error set on this thread ("" if none). */
KDCL_API const char *kdcl_last_error(void);

/* Short name of a status ("KDCL_ERR_IO"). */
KDCL_API const char *kdcl_status_name(kdcl_status s);

/* Record an error message (printf-style) and return `s`. Used by the library
 * and by extensions; message is truncated to a few KiB (build logs included). */
KDCL_API kdcl_status kdcl_set_error(kdcl_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Clear the thread's error message. */
KDCL_API void kdcl_clear_error(void);

/* Name of an OpenCL error code ("CL_OUT_OF_RESOURCES"), or "CL_ERROR(<n>)". */
KDCL_API const char *kdcl_cl_error_name(int cl_err);

#ifdef __cplusplus
}
#endif
#endif
