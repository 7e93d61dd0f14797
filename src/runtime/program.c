/* Kernel programs: embedded sources, build with full log on failure, and an
 * on-disk binary cache keyed by source, options, device and driver. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/ctx.h"
#include "runtime/embedded.h"

#define CACHE_MAGIC "KDCLBIN1"
#define DEFAULT_OPTIONS "-cl-std=CL1.2"

kdcl_status kdcl_cache_dir(char *buf, size_t size, int make)
{
    const char *env = getenv("KDCL_CACHE_DIR");
    int w;
    if (env && *env) {
        w = snprintf(buf, size, "%s", env);
    } else if ((env = getenv("XDG_CACHE_HOME")) && *env) {
        w = snprintf(buf, size, "%s/kdcl", env);
    } else if ((env = getenv("HOME")) && *env) {
        w = snprintf(buf, size, "%s/.cache/kdcl", env);
    } else {
        w = snprintf(buf, size, "/tmp/kdcl-cache-%ld", (long)getuid());
    }
    if (w < 0 || (size_t)w >= size) return kdcl_set_error(KDCL_ERR_IO, "cache path too long");
    if (make) {
        /* mkdir -p */
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s", buf);
        for (char *p = tmp + 1; *p; p++) {
            if (*p == '/') {
                *p = '\0';
                mkdir(tmp, 0755);
                *p = '/';
            }
        }
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return kdcl_set_error(KDCL_ERR_IO, "cannot create cache directory %s: %s", buf,
                                  strerror(errno));
    }
    return KDCL_OK;
}

uint64_t kdcl_program_cache_key(const kdcl_device_info *dev, const char *source, size_t len,
                                const char *options)
{
    uint64_t h = KDCL_HASH64_INIT;
    const char sep = '\0';
    h = kdcl_hash64(h, source, len);
    h = kdcl_hash64(h, &sep, 1);
    h = kdcl_hash64(h, options ? options : "", options ? strlen(options) : 0);
    h = kdcl_hash64(h, &sep, 1);
    h = kdcl_hash64(h, dev->name, strlen(dev->name));
    h = kdcl_hash64(h, &sep, 1);
    h = kdcl_hash64(h, dev->platform_name, strlen(dev->platform_name));
    h = kdcl_hash64(h, &sep, 1);
    h = kdcl_hash64(h, dev->driver_version, strlen(dev->driver_version));
    h = kdcl_hash64(h, &sep, 1);
    h = kdcl_hash64(h, dev->device_version, strlen(dev->device_version));
    return h;
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static int cache_path(uint64_t key, char *buf, size_t size, int make)
{
    char dir[4096];
    if (kdcl_cache_dir(dir, sizeof dir, make) != KDCL_OK) return -1;
    if (make) {
        char sub[4200];
        snprintf(sub, sizeof sub, "%s/programs", dir);
        mkdir(sub, 0755);
    }
    int w = snprintf(buf, size, "%s/programs/%016llx.bin", dir, (unsigned long long)key);
    return (w < 0 || (size_t)w >= size) ? -1 : 0;
}

/* Read a cache entry; returns malloc'ed binary or NULL (missing or invalid:
 * *corrupt set when a file existed but failed validation). */
static unsigned char *cache_load(uint64_t key, size_t *len, int *corrupt)
{
    char path[4400];
    *corrupt = 0;
    if (cache_path(key, path, sizeof path, 0)) return NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char hdr[32];
    unsigned char *bin = NULL;
    if (fread(hdr, 1, sizeof hdr, f) != sizeof hdr || memcmp(hdr, CACHE_MAGIC, 8) != 0 ||
        get_u64(hdr + 8) != key)
        goto bad;
    uint64_t n = get_u64(hdr + 16), h = get_u64(hdr + 24);
    if (n == 0 || n > (1ull << 30)) goto bad;
    bin = malloc((size_t)n);
    if (!bin || fread(bin, 1, (size_t)n, f) != n || fgetc(f) != EOF) goto bad;
    if (kdcl_hash64(KDCL_HASH64_INIT, bin, (size_t)n) != h) goto bad;
    fclose(f);
    *len = (size_t)n;
    return bin;
bad:
    free(bin);
    fclose(f);
    *corrupt = 1;
    return NULL;
}

/* Best effort: a failure to store only costs a rebuild next time. */
static void cache_store(uint64_t key, const unsigned char *bin, size_t len)
{
    char path[4400], tmp[4500];
    if (cache_path(key, path, sizeof path, 1)) return;
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return;
    unsigned char hdr[32];
    memcpy(hdr, CACHE_MAGIC, 8);
    put_u64(hdr + 8, key);
    put_u64(hdr + 16, len);
    put_u64(hdr + 24, kdcl_hash64(KDCL_HASH64_INIT, bin, len));
    int ok = fwrite(hdr, 1, sizeof hdr, f) == sizeof hdr && fwrite(bin, 1, len, f) == len;
    ok = (fflush(f) == 0) && ok;
    ok = (fsync(fileno(f)) == 0) && ok;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) remove(tmp);
}

static kdcl_status build_log_error(kdcl_ctx *ctx, cl_program prog, const char *name, cl_int e)
{
    size_t n = 0;
    char *log = NULL;
    if (clGetProgramBuildInfo(prog, ctx->dev.device, CL_PROGRAM_BUILD_LOG, 0, NULL, &n) ==
            CL_SUCCESS &&
        n > 0) {
        log = malloc(n + 1);
        if (log &&
            clGetProgramBuildInfo(prog, ctx->dev.device, CL_PROGRAM_BUILD_LOG, n, log, NULL) ==
                CL_SUCCESS)
            log[n] = '\0';
        else if (log)
            log[0] = '\0';
    }
    kdcl_status s = kdcl_set_error(KDCL_ERR_BUILD,
                                   "building kernel program '%s' for %s (%s, driver %s) failed: %s\n"
                                   "--- build log ---\n%s",
                                   name, ctx->dev.name, ctx->dev.platform_name,
                                   ctx->dev.driver_version, kdcl_cl_error_name(e),
                                   log && log[0] ? log : "(empty)");
    free(log);
    return s;
}

static int cache_disabled(void)
{
    const char *e = getenv("KDCL_NO_CACHE");
    return e && *e && strcmp(e, "0") != 0;
}

kdcl_status kdcl_program_build(kdcl_ctx *ctx, const char *name, const char *source, size_t len,
                               const char *options, cl_program *out)
{
    double t0 = kdcl_now_seconds();
    char opts[1024];
    snprintf(opts, sizeof opts, "%s%s%s", DEFAULT_OPTIONS, options && *options ? " " : "",
             options ? options : "");
    uint64_t key = kdcl_program_cache_key(&ctx->dev, source, len, opts);
    cl_int e;
    *out = NULL;

    if (!cache_disabled()) {
        size_t blen = 0;
        int corrupt = 0;
        unsigned char *bin = cache_load(key, &blen, &corrupt);
        if (bin) {
            const unsigned char *bp = bin;
            cl_int bstat = CL_SUCCESS;
            cl_program p =
                clCreateProgramWithBinary(ctx->cl, 1, &ctx->dev.device, &blen, &bp, &bstat, &e);
            free(bin);
            if (e == CL_SUCCESS && bstat == CL_SUCCESS &&
                clBuildProgram(p, 1, &ctx->dev.device, opts, NULL, NULL) == CL_SUCCESS) {
                ctx->stats.cache_hits++;
                ctx->stats.build_seconds += kdcl_now_seconds() - t0;
                *out = p;
                return KDCL_OK;
            }
            if (p) clReleaseProgram(p);
            corrupt = 1;
        }
        if (corrupt) ctx->stats.cache_rejects++;
    }

    cl_program p = clCreateProgramWithSource(ctx->cl, 1, &source, &len, &e);
    if (e != CL_SUCCESS) return kdcl_cl_fail(e, "clCreateProgramWithSource");
    e = clBuildProgram(p, 1, &ctx->dev.device, opts, NULL, NULL);
    if (e != CL_SUCCESS) {
        kdcl_status s = build_log_error(ctx, p, name, e);
        clReleaseProgram(p);
        return s;
    }
    ctx->stats.builds++;
    if (!cache_disabled()) {
        size_t blen = 0;
        if (clGetProgramInfo(p, CL_PROGRAM_BINARY_SIZES, sizeof blen, &blen, NULL) == CL_SUCCESS &&
            blen > 0) {
            unsigned char *bin = malloc(blen);
            if (bin && clGetProgramInfo(p, CL_PROGRAM_BINARIES, sizeof bin, &bin, NULL) ==
                           CL_SUCCESS)
                cache_store(key, bin, blen);
            free(bin);
        }
    }
    ctx->stats.build_seconds += kdcl_now_seconds() - t0;
    *out = p;
    return KDCL_OK;
}

/* One file of cl/: "name" is a program (name.cl) or a header ("x.clh"),
 * from $KDCL_KERNEL_DIR when set, else from the copies built into kdcl. */
static kdcl_status load_file(const char *name, char **out, size_t *len)
{
    *out = NULL;
    const int header = strchr(name, '.') != NULL;
    const char *dir = getenv("KDCL_KERNEL_DIR");
    if (dir && *dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s%s", dir, name, header ? "" : ".cl");
        FILE *f = fopen(path, "rb");
        if (!f)
            return kdcl_set_error(KDCL_ERR_IO, "KDCL_KERNEL_DIR: cannot open %s: %s", path,
                                  strerror(errno));
        char *buf = NULL;
        size_t n = 0, cap = 0;
        for (;;) {
            if (n + 4096 + 1 > cap) {
                cap = cap ? cap * 2 : 16384;
                char *g = realloc(buf, cap);
                if (!g) {
                    free(buf);
                    fclose(f);
                    return kdcl_set_error(KDCL_ERR_OOM, "out of memory reading %s", path);
                }
                buf = g;
            }
            size_t r = fread(buf + n, 1, 4096, f);
            n += r;
            if (r < 4096) break;
        }
        int err = ferror(f);
        fclose(f);
        if (err) {
            free(buf);
            return kdcl_set_error(KDCL_ERR_IO, "error reading %s", path);
        }
        buf[n] = '\0';
        *out = buf;
        *len = n;
        return KDCL_OK;
    }
    for (const kdcl_embedded_source *e = kdcl_embedded_sources; e->name; e++) {
        if (strcmp(e->name, name) == 0) {
            char *buf = malloc(e->len + 1);
            if (!buf) return kdcl_set_error(KDCL_ERR_OOM, "out of memory");
            memcpy(buf, e->text, e->len + 1);
            *out = buf;
            *len = e->len;
            return KDCL_OK;
        }
    }
    return kdcl_set_error(KDCL_ERR_INVALID_ARG, "no kernel %s named '%s' is built into kdcl",
                          header ? "header" : "program", name);
}

/* Programs share code through lines `#include "x.clh"` naming another file of
 * cl/; they are replaced by that file's text here (one level deep), so the
 * source handed to the OpenCL compiler needs no include path and the cache
 * key covers the headers too. */
kdcl_status kdcl_kernel_source(const char *program, char **out, size_t *len)
{
    char *src;
    size_t n;
    kdcl_status s = load_file(program, &src, &n);
    if (s) return s;
    const char *tag = "#include \"";
    if (!strstr(src, tag)) {
        *out = src;
        *len = n;
        return KDCL_OK;
    }
    char *res = NULL;
    size_t rn = 0;
    const char *p = src;
    while (*p) {
        const char *eol = strchr(p, '\n');
        size_t ll = eol ? (size_t)(eol - p) + 1 : strlen(p);
        char *piece = NULL;
        size_t pl = ll;
        const char *text = p;
        if (strncmp(p, tag, strlen(tag)) == 0) {
            const char *b = p + strlen(tag), *e = memchr(b, '"', ll - strlen(tag));
            char name[128];
            if (!e || (size_t)(e - b) >= sizeof name || memchr(b, '/', (size_t)(e - b))) {
                free(src);
                free(res);
                return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s.cl: malformed #include line",
                                      program);
            }
            memcpy(name, b, (size_t)(e - b));
            name[e - b] = '\0';
            if ((s = load_file(name, &piece, &pl))) {
                free(src);
                free(res);
                return s;
            }
            text = piece;
        }
        char *g = realloc(res, rn + pl + 2);
        if (!g) {
            free(piece);
            free(src);
            free(res);
            return kdcl_set_error(KDCL_ERR_OOM, "out of memory");
        }
        res = g;
        memcpy(res + rn, text, pl);
        rn += pl;
        if (piece && pl && res[rn - 1] != '\n') res[rn++] = '\n';
        free(piece);
        p += ll;
    }
    res[rn] = '\0';
    free(src);
    *out = res;
    *len = rn;
    return KDCL_OK;
}

kdcl_status kdcl_program_get(kdcl_ctx *ctx, const char *program, cl_program *out)
{
    for (size_t i = 0; i < ctx->n_programs; i++)
        if (strcmp(ctx->programs[i].program, program) == 0) {
            *out = ctx->programs[i].p;
            return KDCL_OK;
        }
    if (strlen(program) >= sizeof ctx->programs[0].program)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "program name too long: %s", program);
    char *src;
    size_t len;
    kdcl_status s = kdcl_kernel_source(program, &src, &len);
    if (s) return s;
    cl_program p;
    char name[128];
    snprintf(name, sizeof name, "%s.cl", program);
    s = kdcl_program_build(ctx, name, src, len, NULL, &p);
    free(src);
    if (s) return s;
    if (ctx->n_programs == ctx->cap_programs) {
        size_t cap = ctx->cap_programs ? 2 * ctx->cap_programs : 16;
        kdcl_program_entry *g = realloc(ctx->programs, cap * sizeof *g);
        if (!g) {
            clReleaseProgram(p);
            return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        }
        ctx->programs = g;
        ctx->cap_programs = cap;
    }
    kdcl_program_entry *pe = &ctx->programs[ctx->n_programs++];
    snprintf(pe->program, sizeof pe->program, "%s", program);
    pe->p = p;
    *out = p;
    return KDCL_OK;
}

kdcl_status kdcl_kernel_get(kdcl_ctx *ctx, const char *program, const char *kernel, cl_kernel *out)
{
    for (size_t i = 0; i < ctx->n_kernels; i++)
        if (strcmp(ctx->kernels[i].kernel, kernel) == 0 &&
            strcmp(ctx->kernels[i].program, program) == 0) {
            *out = ctx->kernels[i].k;
            return KDCL_OK;
        }
    if (strlen(kernel) >= sizeof ctx->kernels[0].kernel)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kernel name too long: %s", kernel);
    cl_program p;
    kdcl_status s = kdcl_program_get(ctx, program, &p);
    if (s) return s;
    cl_int e;
    cl_kernel k = clCreateKernel(p, kernel, &e);
    if (e != CL_SUCCESS)
        return kdcl_set_error(KDCL_ERR_OPENCL, "clCreateKernel(%s.cl: %s) failed: %s", program,
                              kernel, kdcl_cl_error_name(e));
    if (ctx->n_kernels == ctx->cap_kernels) {
        size_t cap = ctx->cap_kernels ? 2 * ctx->cap_kernels : 32;
        kdcl_kernel_entry *g = realloc(ctx->kernels, cap * sizeof *g);
        if (!g) {
            clReleaseKernel(k);
            return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        }
        ctx->kernels = g;
        ctx->cap_kernels = cap;
    }
    kdcl_kernel_entry *ke = &ctx->kernels[ctx->n_kernels++];
    snprintf(ke->program, sizeof ke->program, "%s", program);
    snprintf(ke->kernel, sizeof ke->kernel, "%s", kernel);
    ke->k = k;
    *out = k;
    return KDCL_OK;
}
