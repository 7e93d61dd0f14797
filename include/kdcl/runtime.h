/* OpenCL runtime: platform/device enumeration and selection, the kdcl
 * context (context + in-order queue), and kernel programs built from the
 * embedded cl/ sources with an on-disk binary cache. */
#ifndef KDCL_RUNTIME_H
#define KDCL_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "kdcl/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* OpenCL's handles, declared without the OpenCL headers: struct _cl_mem * is
 * cl_mem, and so on. The public headers need nothing of OpenCL; the calls
 * that take or return OpenCL objects are in kdcl/opencl.h. */
struct _cl_platform_id;
struct _cl_device_id;
struct _cl_mem;
struct _cl_event;

typedef struct kdcl_device_info {
    unsigned platform_index, device_index;  /* "P:D" */
    struct _cl_platform_id *platform; /* cl_platform_id */
    struct _cl_device_id *device;     /* cl_device_id */
    char platform_name[256];
    char platform_vendor[256]; /* "The pocl project", "Intel(R) Corporation", ... */
    char platform_version[128];
    char name[256];
    char vendor[256];
    char driver_version[128];
    char device_version[128];
    char opencl_c_version[128];
    uint64_t type;       /* cl_device_type: CL_DEVICE_TYPE_* bits */
    unsigned compute_units;
    unsigned clock_mhz;
    uint64_t global_mem;
    uint64_t local_mem;
    uint64_t max_alloc;  /* CL_DEVICE_MAX_MEM_ALLOC_SIZE, or KDCL_MAX_ALLOC when that is lower */
    int max_alloc_capped; /* 1: max_alloc is KDCL_MAX_ALLOC's */
    size_t max_work_group;
    int fp64;
    int fp16;
} kdcl_device_info;

/* Every device of every platform. *out is malloc'ed (free with free()). No
 * platform at all -> KDCL_ERR_NO_DEVICE with a message naming pocl-opencl-icd.
 * KDCL_MAX_ALLOC (bytes, or with K / M / G) lowers every device's max_alloc to
 * that, as on a device with small buffers: whatever kdcl keeps on the device
 * stays under max_alloc per buffer, and falls back (streamed data, soft targets
 * per batch, GEMMs without packing) where a buffer would not fit. A malformed
 * value -> KDCL_ERR_INVALID_ARG. */
KDCL_API kdcl_status kdcl_list_devices(kdcl_device_info **out, size_t *n);

/* "GPU", "CPU", "ACCELERATOR", ... for a device type bitfield. */
KDCL_API const char *kdcl_device_type_name(uint64_t t);

/* Pick a device by spec (pure function, no OpenCL calls; case-insensitive):
 *   NULL or ""          first GPU, else the first device
 *   "P:D"               platform index P, device index D (as `kdcl devices` lists)
 *   "cpu" / "gpu" / "accelerator"   first device of that type
 *   "NAME:cpu", "NAME:gpu", "NAME:accelerator"   NAME (below) among devices of that type
 *   NAME                the devices of the first rule below that matches any:
 *     1. an implementation or vendor: "pocl" (PoCL), "rusticl", "clover" (Mesa),
 *        "intel", "nvidia", "amd" (the vendor's own platform: Intel's CPU or GPU
 *        runtime, NVIDIA's CUDA platform, AMD's ROCm / APP platform)
 *     2. for "intel", "nvidia", "amd" with no such platform: devices whose
 *        vendor is that (a Radeon under Rusticl, an AMD CPU under PoCL)
 *     3. a device whose name equals NAME
 *     4. devices whose name contains NAME
 *     5. devices whose platform name, platform vendor or vendor contains NAME
 *   One device: that one. Several on one platform: the first GPU among them,
 *   else the first. Several on different platforms: KDCL_ERR_NO_DEVICE listing
 *   the candidates (name one as P:D or NAME:cpu / NAME:gpu).
 * No match -> KDCL_ERR_NO_DEVICE listing the devices. */
KDCL_API kdcl_status kdcl_select_device(const char *spec, const kdcl_device_info *devs, size_t n,
                               size_t *chosen);

typedef struct kdcl_ctx kdcl_ctx;

/* Create a context on the device chosen by spec (NULL: $KDCL_DEVICE, else
 * the default rule above). The queue is in-order with profiling enabled. */
KDCL_API kdcl_status kdcl_ctx_create(const char *spec, kdcl_ctx **out);
KDCL_API void kdcl_ctx_destroy(kdcl_ctx *ctx);

KDCL_API const kdcl_device_info *kdcl_ctx_device(const kdcl_ctx *ctx);
KDCL_API kdcl_status kdcl_ctx_finish(kdcl_ctx *ctx);

/* Devices as JSON text, for bindings that do not mirror kdcl_device_info:
 * kdcl_devices_json lists every device (an array), kdcl_ctx_device_json
 * gives the context's (one object). Each object has "id" ("P:D"),
 * "platform", "platform_vendor", "platform_version", "name", "vendor",
 * "driver_version", "device_version", "opencl_c_version", "type" ("CPU",
 * "GPU", ...), "compute_units", "clock_mhz", "global_mem", "local_mem",
 * "max_alloc", "max_work_group", "fp64", "fp16". The text and its NUL go
 * into buf when they fit in `size` bytes; *needed (may be NULL) receives
 * the bytes they need, so a caller can ask again with a larger buffer.
 * kdcl_devices_json fails as kdcl_list_devices does. */
KDCL_API kdcl_status kdcl_devices_json(char *buf, size_t size, size_t *needed);
KDCL_API kdcl_status kdcl_ctx_device_json(const kdcl_ctx *ctx, char *buf, size_t size,
                                          size_t *needed);

/* Program-cache statistics of this context (for benchmarks). */
typedef struct kdcl_build_stats {
    unsigned builds;        /* programs compiled from source */
    unsigned cache_hits;    /* programs loaded from the binary cache */
    unsigned cache_rejects; /* corrupt/stale cache entries that were rebuilt */
    double build_seconds;   /* wall time spent in building/loading */
} kdcl_build_stats;
KDCL_API kdcl_build_stats kdcl_ctx_build_stats(const kdcl_ctx *ctx);

/* The source text of cl/<program>.cl as kdcl sees it (embedded or from
 * $KDCL_KERNEL_DIR). *out is malloc'ed, NUL-terminated. */
KDCL_API kdcl_status kdcl_kernel_source(const char *program, char **out, size_t *len);

/* Directory of the on-disk caches: $KDCL_CACHE_DIR, else $XDG_CACHE_HOME/kdcl,
 * else $HOME/.cache/kdcl. Writes into buf (created on demand when mkdir != 0). */
KDCL_API kdcl_status kdcl_cache_dir(char *buf, size_t size, int mkdir);

/* Cache key of a program: hash of source, options, device name, platform and
 * driver version. Exposed for tests. */
KDCL_API uint64_t kdcl_program_cache_key(const kdcl_device_info *dev, const char *source, size_t len,
                                const char *options);

/* 64-bit FNV-1a, incremental. */
KDCL_API uint64_t kdcl_hash64(uint64_t h, const void *data, size_t n);
#define KDCL_HASH64_INIT 0xcbf29ce484222325ull

#ifdef __cplusplus
}
#endif
#endif
