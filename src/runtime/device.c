/* Platform/device enumeration, device selection and the kdcl context. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kdcl/gemm.h"
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

const char *kdcl_device_type_name(cl_device_type t)
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
        char pname[256] = "", pver[128] = "";
        clGetPlatformInfo(plats[p], CL_PLATFORM_NAME, sizeof pname, pname, NULL);
        clGetPlatformInfo(plats[p], CL_PLATFORM_VERSION, sizeof pver, pver, NULL);
        pname[sizeof pname - 1] = pver[sizeof pver - 1] = '\0';
        for (cl_uint d = 0; d < nd; d++) {
            kdcl_device_info *di = &devs[count++];
            memset(di, 0, sizeof *di);
            di->platform_index = p;
            di->device_index = d;
            di->platform = plats[p];
            memcpy(di->platform_name, pname, sizeof pname);
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

/* One line (the CLI prints it as its one line on stderr): the spec and the
 * devices there are. */
static kdcl_status no_match(const char *spec, const kdcl_device_info *devs, size_t n)
{
    char list[4096];
    size_t off = 0;
    list[0] = '\0';
    for (size_t i = 0; i < n && off < sizeof list - 1; i++) {
        int w = snprintf(list + off, sizeof list - off, "%s%u:%u %s (%s, %s)", i ? "; " : " ",
                         devs[i].platform_index, devs[i].device_index, devs[i].name,
                         devs[i].platform_name, kdcl_device_type_name(devs[i].type));
        if (w < 0) break;
        off += (size_t)w;
    }
    return kdcl_set_error(KDCL_ERR_NO_DEVICE,
                          "no OpenCL device matches '%s' (use P:D, cpu, gpu or a name substring); "
                          "available:%s",
                          spec, list);
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
    static const struct {
        const char *name;
        cl_device_type type;
    } types[] = {{"gpu", CL_DEVICE_TYPE_GPU},
                 {"cpu", CL_DEVICE_TYPE_CPU},
                 {"accelerator", CL_DEVICE_TYPE_ACCELERATOR}};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        if (strlen(spec) == strlen(types[t].name) && icontains(types[t].name, spec)) {
            for (size_t i = 0; i < n; i++)
                if (devs[i].type & types[t].type) {
                    *chosen = i;
                    return KDCL_OK;
                }
            return no_match(spec, devs, n);
        }
    }
    for (size_t i = 0; i < n; i++)
        if (icontains(devs[i].name, spec)) {
            *chosen = i;
            return KDCL_OK;
        }
    for (size_t i = 0; i < n; i++)
        if (icontains(devs[i].platform_name, spec) || icontains(devs[i].vendor, spec)) {
            *chosen = i;
            return KDCL_OK;
        }
    return no_match(spec, devs, n);
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
    kdcl_gemm_ctx_acquire(); /* released by kdcl_ctx_destroy, also on the failures below */
    ctx->counted = 1;
    const char *tuning;
    kdcl_status ts = kdcl_gemm_apply_tuning(ctx, &tuning);
    if (!ts) ts = kdcl_conv_algo_from_env(ctx);
    if (ts) {
        kdcl_ctx_destroy(ctx);
        return ts;
    }
    const kdcl_gemm_pack_info *pk = &ctx->gemm_pack;
    const char *note = ctx->gemm_tuning_note;
    if (pk->enabled)
        snprintf(ctx->gemm_tuning, sizeof ctx->gemm_tuning,
                 "%s; operands packed by kdcl (%zux%zux%zu tiles)%s%s", tuning, pk->mwg, pk->nwg,
                 pk->kwg, *note ? "; " : "", note);
    else
        snprintf(ctx->gemm_tuning, sizeof ctx->gemm_tuning, "%s%s%s", tuning, *note ? "; " : "",
                 note);
    *out = ctx;
    return KDCL_OK;
}

const char *kdcl_ctx_gemm_tuning(const kdcl_ctx *ctx) { return ctx->gemm_tuning; }

void kdcl_ctx_destroy(kdcl_ctx *ctx)
{
    if (!ctx) return;
    if (ctx->queue) clFinish(ctx->queue);
    for (size_t i = 0; i < KDCL_SCRATCH_SLOTS; i++) kdcl_tensor_free(ctx, &ctx->gemm_scratch[i]);
    kdcl_tensor_free(ctx, &ctx->op_scratch);
    for (size_t i = 0; i < ctx->n_kernels; i++) clReleaseKernel(ctx->kernels[i].k);
    for (size_t i = 0; i < ctx->n_programs; i++) clReleaseProgram(ctx->programs[i].p);
    free(ctx->kernels);
    free(ctx->programs);
    if (ctx->counted) kdcl_gemm_ctx_release(); /* the last context clears CLBlast's cache */
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
