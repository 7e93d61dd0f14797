/* Platform/device enumeration, device selection and the kdcl context. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/ctx.h"

#ifndef CL_PLATFORM_NOT_FOUND_KHR
#define CL_PLATFORM_NOT_FOUND_KHR -1001
#endif

double kdcl_now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

kdcl_status kdcl_cl_fail(int err, const char *what)
{
    kdcl_status s = KDCL_ERR_OPENCL;
    if (err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_HOST_MEMORY ||
        err == CL_INVALID_BUFFER_SIZE)
        s = KDCL_ERR_OOM;
    return kdcl_set_error(s, "%s failed: %s", what, kdcl_cl_error_name(err));
}

const char *kdcl_device_type_name(uint64_t t)
{
    if (t & CL_DEVICE_TYPE_GPU) return "GPU";
    if (t & CL_DEVICE_TYPE_CPU) return "CPU";
    if (t & CL_DEVICE_TYPE_ACCELERATOR) return "ACCELERATOR";
#ifdef CL_DEVICE_TYPE_CUSTOM
    if (t & CL_DEVICE_TYPE_CUSTOM) return "CUSTOM";
#endif
    return "OTHER";
}

static void dev_str(cl_device_id d, cl_device_info what, char *buf, size_t n)
{
    buf[0] = '\0';
    if (clGetDeviceInfo(d, what, n, buf, NULL) != CL_SUCCESS) snprintf(buf, n, "?");
    buf[n - 1] = '\0';
}

static void fill_device(kdcl_device_info *di, cl_device_id d)
{
    cl_uint u = 0;
    cl_ulong ul = 0;
    size_t sz = 0;
    di->device = d;
    dev_str(d, CL_DEVICE_NAME, di->name, sizeof di->name);
    dev_str(d, CL_DEVICE_VENDOR, di->vendor, sizeof di->vendor);
    dev_str(d, CL_DRIVER_VERSION, di->driver_version, sizeof di->driver_version);
    dev_str(d, CL_DEVICE_VERSION, di->device_version, sizeof di->device_version);
    dev_str(d, CL_DEVICE_OPENCL_C_VERSION, di->opencl_c_version, sizeof di->opencl_c_version);
    clGetDeviceInfo(d, CL_DEVICE_TYPE, sizeof di->type, &di->type, NULL);
    if (clGetDeviceInfo(d, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof u, &u, NULL) == CL_SUCCESS)
        di->compute_units = u;
    u = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_MAX_CLOCK_FREQUENCY, sizeof u, &u, NULL) == CL_SUCCESS)
        di->clock_mhz = u;
    if (clGetDeviceInfo(d, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof ul, &ul, NULL) == CL_SUCCESS)
        di->global_mem = ul;
    ul = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_LOCAL_MEM_SIZE, sizeof ul, &ul, NULL) == CL_SUCCESS)
        di->local_mem = ul;
    ul = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof ul, &ul, NULL) == CL_SUCCESS)
        di->max_alloc = ul;
    if (clGetDeviceInfo(d, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof sz, &sz, NULL) == CL_SUCCESS)
        di->max_work_group = sz;
    cl_device_fp_config fp = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_DOUBLE_FP_CONFIG, sizeof fp, &fp, NULL) == CL_SUCCESS)
        di->fp64 = fp != 0;
    size_t extlen = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, 0, NULL, &extlen) == CL_SUCCESS && extlen) {
        char *ext = malloc(extlen + 1);
        if (ext && clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, extlen, ext, NULL) == CL_SUCCESS) {
            ext[extlen] = '\0';
            di->fp16 = strstr(ext, "cl_khr_fp16") != NULL;
            if (!di->fp64) di->fp64 = strstr(ext, "cl_khr_fp64") != NULL;
        }
        free(ext);
    }
}

/* KDCL_MAX_ALLOC: bytes, with an optional K, M or G (powers of 1024). 0 and
 * *cap unchanged when unset or empty; -1 when malformed. */
static int max_alloc_env(uint64_t *cap)
{
    const char *env = getenv("KDCL_MAX_ALLOC");
    if (!env || !*env) return 0;
    if (!isdigit((unsigned char)env[0])) return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(env, &end, 10);
    if (errno) return -1;
    unsigned shift = 0;
    if (*end == 'K' || *end == 'k') shift = 10, end++;
    else if (*end == 'M' || *end == 'm') shift = 20, end++;
    else if (*end == 'G' || *end == 'g') shift = 30, end++;
    if (*end != '\0' || v == 0 || v > (UINT64_MAX >> shift)) return -1;
    *cap = (uint64_t)v << shift;
    return 0;
}

#define NO_PLATFORM_MSG                                                                   \
    "no OpenCL platform found (%s): install an OpenCL driver; for the CPU, "              \
    "`apt-get install pocl-opencl-icd` gives a portable fallback"

kdcl_status kdcl_list_devices(kdcl_device_info **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    cl_uint np = 0;
    cl_int e = clGetPlatformIDs(0, NULL, &np);
    if (e == CL_PLATFORM_NOT_FOUND_KHR || (e == CL_SUCCESS && np == 0))
        return kdcl_set_error(KDCL_ERR_NO_DEVICE, NO_PLATFORM_MSG, "no ICD registered");
    if (e != CL_SUCCESS)
        return kdcl_set_error(KDCL_ERR_NO_DEVICE, NO_PLATFORM_MSG, kdcl_cl_error_name(e));
    cl_platform_id *plats = calloc(np, sizeof *plats);
    if (!plats) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory listing platforms");
    e = clGetPlatformIDs(np, plats, NULL);
    if (e != CL_SUCCESS) {
        free(plats);
        return kdcl_set_error(KDCL_ERR_NO_DEVICE, NO_PLATFORM_MSG, kdcl_cl_error_name(e));
    }
    kdcl_device_info *devs = NULL;
    size_t count = 0;
    for (cl_uint p = 0; p < np; p++) {
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 0, NULL, &nd) != CL_SUCCESS || !nd)
            continue;
        cl_device_id *ids = calloc(nd, sizeof *ids);
        kdcl_device_info *grown = realloc(devs, (count + nd) * sizeof *devs);
        if (!ids || !grown) {
            free(ids);
            free(grown ? grown : devs);
            free(plats);
            return kdcl_set_error(KDCL_ERR_OOM, "out of host memory listing devices");
        }
        devs = grown;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, nd, ids, NULL) != CL_SUCCESS) {
            free(ids);
            continue;
        }
        char pname[256] = "", pvendor[256] = "", pver[128] = "";
        clGetPlatformInfo(plats[p], CL_PLATFORM_NAME, sizeof pname, pname, NULL);
        clGetPlatformInfo(plats[p], CL_PLATFORM_VENDOR, sizeof pvendor, pvendor, NULL);
        clGetPlatformInfo(plats[p], CL_PLATFORM_VERSION, sizeof pver, pver, NULL);
        pname[sizeof pname - 1] = pvendor[sizeof pvendor - 1] = pver[sizeof pver - 1] = '\0';
        for (cl_uint d = 0; d < nd; d++) {
            kdcl_device_info *di = &devs[count++];
            memset(di, 0, sizeof *di);
            di->platform_index = p;
            di->device_index = d;
            di->platform = plats[p];
            memcpy(di->platform_name, pname, sizeof pname);
            memcpy(di->platform_vendor, pvendor, sizeof pvendor);
            memcpy(di->platform_version, pver, sizeof pver);
            fill_device(di, ids[d]);
        }
        free(ids);
    }
    free(plats);
    if (count == 0) {
        free(devs);
        return kdcl_set_error(KDCL_ERR_NO_DEVICE, NO_PLATFORM_MSG, "platforms have no devices");
    }
    /* an artificial cap on the largest buffer (tests of small devices) */
    uint64_t cap = 0;
    if (max_alloc_env(&cap)) {
        free(devs);
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "KDCL_MAX_ALLOC=%s: expected a positive number of bytes, optionally "
                              "with K, M or G",
                              getenv("KDCL_MAX_ALLOC"));
    }
    for (size_t i = 0; cap && i < count; i++)
        if (!devs[i].max_alloc || devs[i].max_alloc > cap) {
            devs[i].max_alloc = cap;
            devs[i].max_alloc_capped = 1;
        }
    *out = devs;
    *n = count;
    return KDCL_OK;
}

static int icontains(const char *hay, const char *needle)
{
    size_t nl = strlen(needle);
    if (nl == 0) return 1;
    for (const char *h = hay; *h; h++) {
        size_t i = 0;
        while (i < nl && h[i] &&
               tolower((unsigned char)h[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == nl) return 1;
    }
    return 0;
}

static int iequal(const char *a, const char *b)
{
    while (*a && *b && tolower((unsigned char)*a) == tolower((unsigned char)*b)) a++, b++;
    return *a == '\0' && *b == '\0';
}

static int parse_index_pair(const char *s, unsigned *p, unsigned *d)
{
    char *end;
    if (!isdigit((unsigned char)s[0])) return 0;
    unsigned long a = strtoul(s, &end, 10);
    if (*end != ':' || !isdigit((unsigned char)end[1])) return 0;
    unsigned long b = strtoul(end + 1, &end, 10);
    if (*end != '\0' || a > 0xffff || b > 0xffff) return 0;
    *p = (unsigned)a;
    *d = (unsigned)b;
    return 1;
}

/* "P:D name (platform, TYPE)" entries of the devices idx[0..n) (all when idx
 * is NULL), "; "-separated, into list. */
static void list_devices(char *list, size_t size, const kdcl_device_info *devs, const size_t *idx,
                         size_t n)
{
    size_t off = 0;
    list[0] = '\0';
    for (size_t j = 0; j < n && off < size - 1; j++) {
        const kdcl_device_info *d = &devs[idx ? idx[j] : j];
        int w = snprintf(list + off, size - off, "%s%u:%u %s (%s, %s)", j ? "; " : " ",
                         d->platform_index, d->device_index, d->name, d->platform_name,
                         kdcl_device_type_name(d->type));
        if (w < 0) break;
        off += (size_t)w;
    }
}

#define SPEC_FORMS "P:D, cpu, gpu, pocl, intel, nvidia, amd, rusticl, NAME:cpu, NAME:gpu or a name substring"

/* One line (the CLI prints it as its one line on stderr): the spec and the
 * devices there are. */
static kdcl_status no_match(const char *spec, const kdcl_device_info *devs, size_t n)
{
    char list[4096];
    list_devices(list, sizeof list, devs, NULL, n);
    return kdcl_set_error(KDCL_ERR_NO_DEVICE,
                          "no OpenCL device matches '%s' (use " SPEC_FORMS "); available:%s", spec,
                          list);
}

/* ---- names people use for implementations and vendors ----------------------
 * Rule 1 (kdcl/runtime.h) matches the platform's name or vendor: PoCL's are
 * "Portable Computing Language" / "The pocl project", Mesa's "rusticl" and
 * "Clover", Intel's CPU and GPU runtimes "Intel(R) OpenCL" and "Intel(R)
 * OpenCL Graphics" / "Intel(R) Corporation", NVIDIA's "NVIDIA CUDA", AMD's
 * "AMD Accelerated Parallel Processing" / "Advanced Micro Devices, Inc.".
 * Rule 2 matches the device vendor of other implementations' devices: NVIDIA
 * or AMD GPUs under Rusticl or PoCL, and CPUs under PoCL, which reports
 * "AuthenticAMD" or "GenuineIntel" (an AMD CPU is an AMD device). */
typedef struct device_alias {
    const char *name;
    const char *platform[3]; /* substrings of the platform name or platform vendor */
    const char *vendor[3];   /* substrings of the device vendor (rule 2), if any */
} device_alias;

static const device_alias aliases[] = {
    {"pocl", {"Portable Computing Language", "pocl", NULL}, {NULL}},
    {"rusticl", {"rusticl", NULL, NULL}, {NULL}},
    {"clover", {"Clover", NULL, NULL}, {NULL}},
    {"intel", {"Intel", NULL, NULL}, {"Intel", NULL, NULL}},
    {"nvidia", {"NVIDIA", NULL, NULL}, {"NVIDIA", NULL, NULL}},
    {"amd", {"Advanced Micro Devices", "AMD Accelerated Parallel Processing", NULL},
     {"Advanced Micro Devices", "AMD", NULL}},
};

static int any_contains(const char *hay, const char *const *needles, size_t n)
{
    for (size_t i = 0; i < n && needles[i]; i++)
        if (icontains(hay, needles[i])) return 1;
    return 0;
}

enum { RULE_ALIAS_PLATFORM, RULE_ALIAS_VENDOR, RULE_EXACT, RULE_NAME, RULE_PLATFORM, N_RULES };

static int rule_matches(int rule, const device_alias *al, const char *name,
                        const kdcl_device_info *d)
{
    switch (rule) {
    case RULE_ALIAS_PLATFORM:
        return al && (any_contains(d->platform_name, al->platform, 3) ||
                      any_contains(d->platform_vendor, al->platform, 3));
    case RULE_ALIAS_VENDOR:
        return al && any_contains(d->vendor, al->vendor, 3);
    case RULE_EXACT:
        return iequal(d->name, name);
    case RULE_NAME:
        return icontains(d->name, name);
    default:
        return icontains(d->platform_name, name) || icontains(d->platform_vendor, name) ||
               icontains(d->vendor, name);
    }
}

static const struct {
    const char *name;
    cl_device_type type;
} type_words[] = {{"gpu", CL_DEVICE_TYPE_GPU},
                  {"cpu", CL_DEVICE_TYPE_CPU},
                  {"accelerator", CL_DEVICE_TYPE_ACCELERATOR}};

static int type_word(const char *s, cl_device_type *t)
{
    for (size_t i = 0; i < sizeof type_words / sizeof type_words[0]; i++)
        if (iequal(s, type_words[i].name)) {
            *t = type_words[i].type;
            return 1;
        }
    return 0;
}

kdcl_status kdcl_select_device(const char *spec, const kdcl_device_info *devs, size_t n,
                               size_t *chosen)
{
    if (n == 0) return kdcl_set_error(KDCL_ERR_NO_DEVICE, "no OpenCL devices to choose from");
    if (!spec || !*spec) {
        for (size_t i = 0; i < n; i++)
            if (devs[i].type & CL_DEVICE_TYPE_GPU) {
                *chosen = i;
                return KDCL_OK;
            }
        *chosen = 0;
        return KDCL_OK;
    }
    unsigned p, d;
    if (parse_index_pair(spec, &p, &d)) {
        for (size_t i = 0; i < n; i++)
            if (devs[i].platform_index == p && devs[i].device_index == d) {
                *chosen = i;
                return KDCL_OK;
            }
        return no_match(spec, devs, n);
    }
    cl_device_type type = 0;
    if (type_word(spec, &type)) { /* the first device of that type */
        for (size_t i = 0; i < n; i++)
            if (devs[i].type & type) {
                *chosen = i;
                return KDCL_OK;
            }
        return no_match(spec, devs, n);
    }
    /* NAME or NAME:TYPE */
    char name[256];
    if (strlen(spec) >= sizeof name) return no_match(spec, devs, n);
    snprintf(name, sizeof name, "%s", spec);
    char *colon = strrchr(name, ':');
    if (colon && colon != name && type_word(colon + 1, &type)) *colon = '\0';
    const device_alias *al = NULL;
    for (size_t a = 0; a < sizeof aliases / sizeof aliases[0]; a++)
        if (iequal(name, aliases[a].name)) al = &aliases[a];
    size_t *idx = malloc(n * sizeof *idx);
    if (!idx) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory choosing a device");
    size_t m = 0;
    for (int rule = 0; rule < N_RULES && m == 0; rule++)
        for (size_t i = 0; i < n; i++)
            if ((!type || (devs[i].type & type)) && rule_matches(rule, al, name, &devs[i]))
                idx[m++] = i;
    if (m == 0) {
        free(idx);
        return no_match(spec, devs, n);
    }
    int one_platform = 1;
    for (size_t j = 1; j < m; j++)
        one_platform &= devs[idx[j]].platform_index == devs[idx[0]].platform_index;
    if (!one_platform) {
        char list[4096];
        list_devices(list, sizeof list, devs, idx, m);
        free(idx);
        return kdcl_set_error(KDCL_ERR_NO_DEVICE,
                              "'%s' is ambiguous: it matches devices of several platforms (name "
                              "one as P:D%s):%s",
                              spec, type ? "" : ", or add :cpu or :gpu", list);
    }
    *chosen = idx[0];
    for (size_t j = 0; j < m; j++)
        if (devs[idx[j]].type & CL_DEVICE_TYPE_GPU) {
            *chosen = idx[j];
            break;
        }
    free(idx);
    return KDCL_OK;
}

kdcl_status kdcl_ctx_create(const char *spec, kdcl_ctx **out)
{
    *out = NULL;
    if (!spec) spec = getenv("KDCL_DEVICE");
    kdcl_device_info *devs;
    size_t n, which;
    kdcl_status s = kdcl_list_devices(&devs, &n);
    if (s) return s;
    s = kdcl_select_device(spec, devs, n, &which);
    if (s) {
        free(devs);
        return s;
    }
    kdcl_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        free(devs);
        return kdcl_set_error(KDCL_ERR_OOM, "out of host memory creating context");
    }
    ctx->dev = devs[which];
    free(devs);
    cl_int e;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)ctx->dev.platform,
                                     0};
    ctx->cl = clCreateContext(props, 1, &ctx->dev.device, NULL, NULL, &e);
    if (e != CL_SUCCESS) {
        kdcl_status st = kdcl_set_error(KDCL_ERR_OPENCL, "clCreateContext on %s failed: %s",
                                        ctx->dev.name, kdcl_cl_error_name(e));
        free(ctx);
        return st;
    }
    ctx->queue = clCreateCommandQueue(ctx->cl, ctx->dev.device, CL_QUEUE_PROFILING_ENABLE, &e);
    if (e != CL_SUCCESS) {
        clReleaseContext(ctx->cl);
        kdcl_status st = kdcl_set_error(KDCL_ERR_OPENCL, "clCreateCommandQueue on %s failed: %s",
                                        ctx->dev.name, kdcl_cl_error_name(e));
        free(ctx);
        return st;
    }
    *out = ctx;
    return KDCL_OK;
}

void *kdcl__ctx_ext(const kdcl_ctx *ctx, int slot)
{
    return slot >= 0 && slot < KDCL_EXT_SLOTS ? ctx->ext[slot].state : NULL;
}

void kdcl__ctx_ext_set(kdcl_ctx *ctx, int slot, void *state, kdcl_ext_destroy_fn destroy)
{
    if (slot < 0 || slot >= KDCL_EXT_SLOTS) return;
    ctx->ext[slot].state = state;
    ctx->ext[slot].destroy = state ? destroy : NULL;
}

void kdcl_ctx_destroy(kdcl_ctx *ctx)
{
    if (!ctx) return;
    if (ctx->queue) clFinish(ctx->queue);
    for (int i = KDCL_EXT_SLOTS - 1; i >= 0; i--) {
        kdcl_ctx_ext e = ctx->ext[i];
        ctx->ext[i] = (kdcl_ctx_ext){0};
        if (e.state && e.destroy) e.destroy(ctx, e.state);
    }
    for (size_t i = 0; i < ctx->n_kernels; i++) clReleaseKernel(ctx->kernels[i].k);
    for (size_t i = 0; i < ctx->n_programs; i++) clReleaseProgram(ctx->programs[i].p);
    free(ctx->kernels);
    free(ctx->programs);
    if (ctx->queue) clReleaseCommandQueue(ctx->queue);
    if (ctx->cl) clReleaseContext(ctx->cl);
    free(ctx);
}

const kdcl_device_info *kdcl_ctx_device(const kdcl_ctx *ctx) { return &ctx->dev; }
cl_context kdcl_ctx_cl(const kdcl_ctx *ctx) { return ctx->cl; }
cl_command_queue kdcl_ctx_queue(const kdcl_ctx *ctx) { return ctx->queue; }
kdcl_build_stats kdcl_ctx_build_stats(const kdcl_ctx *ctx) { return ctx->stats; }

kdcl_status kdcl_ctx_finish(kdcl_ctx *ctx)
{
    KDCL_CL_CHECK(clFinish(ctx->queue), "clFinish");
    return KDCL_OK;
}
