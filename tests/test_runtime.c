/* Runtime: device selection rules, program cache keying and behaviour,
 * build-failure reporting, kernel source override, tensors, no-platform message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kdcl/opencl.h"
#include "kdcl/kdcl.h"
#include "testutil.h"

static kdcl_device_info fake[7];

/* A machine with one of each: PoCL on the CPU, two GPUs under NVIDIA's CUDA
 * platform, Intel's GPU and CPU runtimes (the CPU one on an AMD CPU), a Radeon
 * under Rusticl and the same Radeon under AMD's ROCm. Names, platforms and
 * vendors as these implementations report them. */
static void make_fake(void)
{
    memset(fake, 0, sizeof fake);
    static const struct {
        const char *name, *plat, *pvendor, *vendor;
        unsigned p, d;
        cl_device_type type;
    } f[7] = {
        {"pthread-skylake-avx512-AMD EPYC 7B13", "Portable Computing Language", "The pocl project",
         "AuthenticAMD", 0, 0, CL_DEVICE_TYPE_CPU},
        {"NVIDIA H100 80GB HBM3", "NVIDIA CUDA", "NVIDIA Corporation", "NVIDIA Corporation", 1, 0,
         CL_DEVICE_TYPE_GPU},
        {"NVIDIA GeForce RTX 4090", "NVIDIA CUDA", "NVIDIA Corporation", "NVIDIA Corporation", 1, 1,
         CL_DEVICE_TYPE_GPU},
        {"Intel(R) UHD Graphics 770", "Intel(R) OpenCL Graphics", "Intel(R) Corporation",
         "Intel(R) Corporation", 2, 0, CL_DEVICE_TYPE_GPU},
        {"AMD EPYC 7B13 64-Core Processor", "Intel(R) OpenCL", "Intel(R) Corporation",
         "Intel(R) Corporation", 3, 0, CL_DEVICE_TYPE_CPU},
        {"AMD Radeon RX 7900 XTX (radeonsi, navi31, LLVM 15.0.7)", "rusticl", "Mesa/X.org", "AMD",
         4, 0, CL_DEVICE_TYPE_GPU},
        {"gfx1100", "AMD Accelerated Parallel Processing", "Advanced Micro Devices, Inc.",
         "Advanced Micro Devices, Inc.", 5, 0, CL_DEVICE_TYPE_GPU},
    };
    for (int i = 0; i < 7; i++) {
        snprintf(fake[i].name, sizeof fake[i].name, "%s", f[i].name);
        snprintf(fake[i].platform_name, sizeof fake[i].platform_name, "%s", f[i].plat);
        snprintf(fake[i].platform_vendor, sizeof fake[i].platform_vendor, "%s", f[i].pvendor);
        snprintf(fake[i].vendor, sizeof fake[i].vendor, "%s", f[i].vendor);
        fake[i].platform_index = f[i].p;
        fake[i].device_index = f[i].d;
        fake[i].type = f[i].type;
    }
}

/* kdcl_select_device(spec) over the first n fake devices: the index chosen,
 * or -1 (then the error must be KDCL_ERR_NO_DEVICE). */
static long pick(const char *spec, size_t n)
{
    size_t c = 99;
    kdcl_status s = kdcl_select_device(spec, fake, n, &c);
    if (s) {
        ck_assert_int_eq(s, KDCL_ERR_NO_DEVICE);
        return -1;
    }
    ck_assert_uint_lt(c, n);
    return (long)c;
}

START_TEST(test_select_rules)
{
    make_fake();
    ck_assert_int_eq(pick(NULL, 7), 1); /* first GPU */
    ck_assert_int_eq(pick("", 7), 1);
    ck_assert_int_eq(pick("", 1), 0); /* no GPU: first device */
    ck_assert_int_eq(pick("1:1", 7), 2);
    ck_assert_int_eq(pick("3:0", 7), 4);
    /* types: the first device of the type, whatever its platform */
    ck_assert_int_eq(pick("cpu", 7), 0);
    ck_assert_int_eq(pick("CPU", 7), 0);
    ck_assert_int_eq(pick("GPU", 7), 1);
    ck_assert_int_eq(pick("gpu", 1), -1);
    ck_assert_int_eq(pick("accelerator", 7), -1);
}
END_TEST

START_TEST(test_select_aliases)
{
    make_fake();
    /* implementations, by their platform name or vendor */
    ck_assert_int_eq(pick("pocl", 7), 0);
    ck_assert_int_eq(pick("PoCL", 7), 0);
    ck_assert_int_eq(pick("rusticl", 7), 5);
    ck_assert_int_eq(pick("clover", 7), -1);
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "no OpenCL device matches 'clover'"));
    /* the vendor's own platform: two GPUs on one platform give the first */
    ck_assert_int_eq(pick("nvidia", 7), 1);
    ck_assert_int_eq(pick("NVIDIA:gpu", 7), 1);
    ck_assert_int_eq(pick("nvidia:cpu", 7), -1);
    /* AMD's platform, not the Radeon under Rusticl nor the AMD CPUs */
    ck_assert_int_eq(pick("amd", 7), 6);
    /* Intel's CPU runtime on an AMD CPU is "intel", never "amd" */
    ck_assert_int_eq(pick("intel:cpu", 7), 4);
    ck_assert_int_eq(pick("intel:gpu", 7), 3);
    ck_assert_int_eq(pick("intel:GPU", 7), 3);
    /* PoCL alone */
    ck_assert_int_eq(pick("pocl", 1), 0);
    ck_assert_int_eq(pick("intel", 1), -1); /* an AMD CPU under PoCL is no Intel device */
}
END_TEST

START_TEST(test_select_vendor_fallback)
{
    make_fake();
    /* Without AMD's platform (the first 6 devices): devices whose vendor is
     * AMD, PoCL's CPU ("AuthenticAMD") and the Radeon under Rusticl ("AMD"),
     * on two platforms: ambiguous, unless narrowed by type. */
    ck_assert_int_eq(pick("amd", 6), -1);
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "ambiguous"));
    ck_assert_int_eq(pick("amd:gpu", 6), 5);
    ck_assert_int_eq(pick("amd:cpu", 6), 0);
    /* PoCL on an Intel CPU is an Intel device when no Intel platform exists */
    kdcl_device_info d = fake[0];
    snprintf(d.vendor, sizeof d.vendor, "GenuineIntel");
    snprintf(d.name, sizeof d.name, "pthread-alderlake-12th Gen Core i7-1270P");
    size_t c = 99;
    ck_assert_int_eq(kdcl_select_device("intel", &d, 1, &c), KDCL_OK);
    ck_assert_uint_eq(c, 0);
    ck_assert_int_eq(kdcl_select_device("amd", &d, 1, &c), KDCL_ERR_NO_DEVICE);
    /* NVIDIA's GPU under PoCL's CUDA driver: vendor NVIDIA, platform PoCL */
    snprintf(d.vendor, sizeof d.vendor, "NVIDIA Corporation");
    snprintf(d.name, sizeof d.name, "NVIDIA A100-SXM4-40GB");
    d.type = CL_DEVICE_TYPE_GPU;
    ck_assert_int_eq(kdcl_select_device("nvidia", &d, 1, &c), KDCL_OK);
    ck_assert_int_eq(kdcl_select_device("pocl", &d, 1, &c), KDCL_OK);
}
END_TEST

START_TEST(test_select_names)
{
    make_fake();
    ck_assert_int_eq(pick("RTX", 7), 2);       /* device name */
    ck_assert_int_eq(pick("radeon", 7), 5);
    ck_assert_int_eq(pick("GFX1100", 7), 6);
    ck_assert_int_eq(pick("Mesa", 7), 5);      /* platform vendor */
    ck_assert_int_eq(pick("Graphics", 7), 3);  /* device name before platform name */
    ck_assert_int_eq(pick("portable", 7), 0);  /* platform name */
    ck_assert_int_eq(pick("cuda", 7), 1);      /* platform name, two GPUs: the first */
    /* a name on two platforms: ambiguous, the message lists both as P:D */
    ck_assert_int_eq(pick("EPYC", 7), -1);
    const char *msg = kdcl_last_error();
    ck_assert_ptr_nonnull(strstr(msg, "'EPYC' is ambiguous"));
    ck_assert_ptr_nonnull(strstr(msg, "0:0 pthread-skylake"));
    ck_assert_ptr_nonnull(strstr(msg, "3:0 AMD EPYC 7B13 64-Core"));
    ck_assert_ptr_null(strstr(msg, "H100"));   /* only the candidates */
    ck_assert_int_eq(pick("EPYC:cpu", 7), -1); /* both CPUs */
    ck_assert_int_eq(pick("EPYC:gpu", 7), -1);
    /* an exact name wins over names that contain it */
    kdcl_device_info two[2];
    memset(two, 0, sizeof two);
    snprintf(two[0].name, sizeof two[0].name, "Tesla T4 (nouveau)");
    snprintf(two[0].platform_name, sizeof two[0].platform_name, "rusticl");
    snprintf(two[1].name, sizeof two[1].name, "Tesla T4");
    snprintf(two[1].platform_name, sizeof two[1].platform_name, "NVIDIA CUDA");
    two[1].platform_index = 1;
    two[0].type = two[1].type = CL_DEVICE_TYPE_GPU;
    size_t c = 99;
    ck_assert_int_eq(kdcl_select_device("tesla t4", two, 2, &c), KDCL_OK);
    ck_assert_uint_eq(c, 1);
    ck_assert_int_eq(kdcl_select_device("tesla", two, 2, &c), KDCL_ERR_NO_DEVICE);
}
END_TEST

START_TEST(test_select_errors)
{
    make_fake();
    size_t c;
    ck_assert_int_eq(kdcl_select_device("7:0", fake, 7, &c), KDCL_ERR_NO_DEVICE);
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "'7:0'"));
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "NVIDIA H100")); /* lists devices */
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "pocl, intel, nvidia, amd")); /* and forms */
    ck_assert_int_eq(kdcl_select_device("geforce 5090", fake, 7, &c), KDCL_ERR_NO_DEVICE);
    /* malformed index pairs are names, which then match nothing */
    ck_assert_int_eq(kdcl_select_device("1:", fake, 7, &c), KDCL_ERR_NO_DEVICE);
    ck_assert_int_eq(kdcl_select_device("1:0x", fake, 7, &c), KDCL_ERR_NO_DEVICE);
    ck_assert_int_eq(kdcl_select_device(":gpu", fake, 7, &c), KDCL_ERR_NO_DEVICE);
    ck_assert_int_eq(kdcl_select_device("nvidia:", fake, 7, &c), KDCL_ERR_NO_DEVICE);
    ck_assert_int_eq(kdcl_select_device("nvidia:tpu", fake, 7, &c), KDCL_ERR_NO_DEVICE);
    ck_assert_int_eq(kdcl_select_device(NULL, fake, 0, &c), KDCL_ERR_NO_DEVICE);
    char longname[600];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    ck_assert_int_eq(kdcl_select_device(longname, fake, 7, &c), KDCL_ERR_NO_DEVICE);
}
END_TEST

START_TEST(test_cache_key)
{
    make_fake();
    const char *src = "__kernel void f(__global float *x) { x[0] = 1.0f; }";
    size_t n = strlen(src);
    uint64_t k0 = kdcl_program_cache_key(&fake[0], src, n, "-cl-std=CL1.2");
    ck_assert(k0 == kdcl_program_cache_key(&fake[0], src, n, "-cl-std=CL1.2"));
    ck_assert(k0 != kdcl_program_cache_key(&fake[0], src, n, "-cl-std=CL1.2 -DX=1"));
    ck_assert(k0 != kdcl_program_cache_key(&fake[0], src, n - 1, "-cl-std=CL1.2"));
    ck_assert(k0 != kdcl_program_cache_key(&fake[1], src, n, "-cl-std=CL1.2"));
    kdcl_device_info d = fake[0];
    snprintf(d.driver_version, sizeof d.driver_version, "6.0");
    ck_assert(k0 != kdcl_program_cache_key(&d, src, n, "-cl-std=CL1.2"));
    /* field boundaries matter: ("ab","") differs from ("a","b") */
    ck_assert(kdcl_program_cache_key(&fake[0], "ab", 2, "") !=
              kdcl_program_cache_key(&fake[0], "a", 1, "b"));
}
END_TEST

static kdcl_ctx *ctx;
static char cache_dir[4096];

static void ctx_setup(void)
{
    snprintf(cache_dir, sizeof cache_dir, "%s", tu_path("cache"));
    setenv("KDCL_CACHE_DIR", cache_dir, 1);
    kdcl_status s = kdcl_ctx_create(NULL, &ctx);
    ck_assert_msg(s == KDCL_OK, "context: %s", kdcl_last_error());
}
static void ctx_teardown(void)
{
    kdcl_ctx_destroy(ctx);
    ctx = NULL;
    unsetenv("KDCL_CACHE_DIR");
}

static void run_axpb(cl_program p, float a, float b)
{
    cl_int e;
    cl_kernel k = clCreateKernel(p, "axpb", &e);
    ck_assert_int_eq(e, CL_SUCCESS);
    float h[5] = {1, 2, 3, 4, 5};
    cl_mem m = clCreateBuffer(kdcl_ctx_cl(ctx), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                              sizeof h, h, &e);
    unsigned n = 5;
    clSetKernelArg(k, 0, sizeof m, &m);
    clSetKernelArg(k, 1, sizeof a, &a);
    clSetKernelArg(k, 2, sizeof b, &b);
    clSetKernelArg(k, 3, sizeof n, &n);
    size_t g = 5;
    ck_assert_int_eq(clEnqueueNDRangeKernel(kdcl_ctx_queue(ctx), k, 1, NULL, &g, NULL, 0, NULL,
                                            NULL),
                     CL_SUCCESS);
    float out[5];
    clEnqueueReadBuffer(kdcl_ctx_queue(ctx), m, CL_TRUE, 0, sizeof out, out, 0, NULL, NULL);
    for (int i = 0; i < 5; i++) ck_assert_float_eq(out[i], a * h[i] + b);
    clReleaseMemObject(m);
    clReleaseKernel(k);
}

static const char *AXPB =
    "__kernel void axpb(__global float *y, const float a, const float b, const unsigned n)\n"
    "{ size_t i = get_global_id(0); if (i < n) y[i] = a * y[i] + b; }\n";

static int count_cache_files(char *one, size_t size)
{
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "ls %s/programs/*.bin 2>/dev/null", cache_dir);
    FILE *f = popen(cmd, "r");
    int n = 0;
    char line[4400];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (one) snprintf(one, size, "%s", line);
        n++;
    }
    pclose(f);
    return n;
}

START_TEST(test_program_cache)
{
    cl_program p;
    kdcl_build_stats s0 = kdcl_ctx_build_stats(ctx);
    ck_assert_int_eq(kdcl_program_build(ctx, "axpb", AXPB, strlen(AXPB), "-DVARIANT=1", &p),
                     KDCL_OK);
    run_axpb(p, 2, 1);
    clReleaseProgram(p);
    kdcl_build_stats s1 = kdcl_ctx_build_stats(ctx);
    ck_assert_uint_eq(s1.builds, s0.builds + 1);
    char file[4400];
    int nfiles = count_cache_files(file, sizeof file);
    ck_assert_int_ge(nfiles, 1);
    /* same source + options: loaded from the cache */
    ck_assert_int_eq(kdcl_program_build(ctx, "axpb", AXPB, strlen(AXPB), "-DVARIANT=1", &p),
                     KDCL_OK);
    run_axpb(p, 3, -1);
    clReleaseProgram(p);
    kdcl_build_stats s2 = kdcl_ctx_build_stats(ctx);
    ck_assert_uint_eq(s2.cache_hits, s1.cache_hits + 1);
    ck_assert_uint_eq(s2.builds, s1.builds);
    /* a changed option rebuilds and adds an entry */
    ck_assert_int_eq(kdcl_program_build(ctx, "axpb", AXPB, strlen(AXPB), "-DVARIANT=2", &p),
                     KDCL_OK);
    clReleaseProgram(p);
    kdcl_build_stats s3 = kdcl_ctx_build_stats(ctx);
    ck_assert_uint_eq(s3.builds, s2.builds + 1);
    ck_assert_int_eq(count_cache_files(NULL, 0), nfiles + 1);
    /* a changed source rebuilds */
    char *src2 = malloc(strlen(AXPB) + 32);
    sprintf(src2, "%s/* changed */\n", AXPB);
    ck_assert_int_eq(kdcl_program_build(ctx, "axpb", src2, strlen(src2), "-DVARIANT=1", &p),
                     KDCL_OK);
    clReleaseProgram(p);
    free(src2);
    ck_assert_uint_eq(kdcl_ctx_build_stats(ctx).builds, s3.builds + 1);
}
END_TEST

START_TEST(test_corrupt_cache_entry_rebuilt)
{
    const char *opts = "-DCORRUPT_TEST=1";
    cl_program p;
    ck_assert_int_eq(kdcl_program_build(ctx, "axpb", AXPB, strlen(AXPB), opts, &p), KDCL_OK);
    clReleaseProgram(p);
    uint64_t key = kdcl_program_cache_key(kdcl_ctx_device(ctx), AXPB, strlen(AXPB),
                                          "-cl-std=CL1.2 -DCORRUPT_TEST=1");
    char path[4400];
    snprintf(path, sizeof path, "%s/programs/%016llx.bin", cache_dir, (unsigned long long)key);
    struct stat st;
    ck_assert_msg(stat(path, &st) == 0, "cache entry %s missing", path);
    /* flip bytes in the payload */
    FILE *f = fopen(path, "r+b");
    ck_assert_ptr_nonnull(f);
    fseek(f, 40, SEEK_SET);
    fputs("garbage garbage garbage", f);
    fclose(f);
    kdcl_build_stats s0 = kdcl_ctx_build_stats(ctx);
    ck_assert_int_eq(kdcl_program_build(ctx, "axpb", AXPB, strlen(AXPB), opts, &p), KDCL_OK);
    run_axpb(p, 1.5f, 0.5f);
    clReleaseProgram(p);
    kdcl_build_stats s1 = kdcl_ctx_build_stats(ctx);
    ck_assert_uint_eq(s1.cache_rejects, s0.cache_rejects + 1);
    ck_assert_uint_eq(s1.builds, s0.builds + 1);
    /* truncated entry */
    ck_assert_int_eq(truncate(path, 20), 0);
    ck_assert_int_eq(kdcl_program_build(ctx, "axpb", AXPB, strlen(AXPB), opts, &p), KDCL_OK);
    run_axpb(p, 1, 1);
    clReleaseProgram(p);
    ck_assert_uint_eq(kdcl_ctx_build_stats(ctx).cache_rejects, s1.cache_rejects + 1);
    /* and the rewritten entry is good again */
    ck_assert_int_eq(kdcl_program_build(ctx, "axpb", AXPB, strlen(AXPB), opts, &p), KDCL_OK);
    clReleaseProgram(p);
    ck_assert_uint_eq(kdcl_ctx_build_stats(ctx).cache_hits, s1.cache_hits + 1);
}
END_TEST

START_TEST(test_build_failure_reports_log)
{
    const char *bad = "__kernel void broken(__global float *x) { x[0] = undefined_thing + ; }\n";
    cl_program p = NULL;
    kdcl_status s = kdcl_program_build(ctx, "broken.cl", bad, strlen(bad), NULL, &p);
    ck_assert_int_eq(s, KDCL_ERR_BUILD);
    ck_assert_ptr_null(p);
    const char *msg = kdcl_last_error();
    ck_assert_ptr_nonnull(strstr(msg, "broken.cl"));
    ck_assert_ptr_nonnull(strstr(msg, kdcl_ctx_device(ctx)->name));
    ck_assert_ptr_nonnull(strstr(msg, "build log"));
    ck_assert_ptr_nonnull(strstr(msg, "undefined_thing")); /* the compiler's own words */
}
END_TEST

START_TEST(test_embedded_kernel_and_override)
{
    cl_kernel k;
    ck_assert_int_eq(kdcl_kernel_get(ctx, "test_util", "axpb", &k), KDCL_OK);
    cl_kernel k2;
    ck_assert_int_eq(kdcl_kernel_get(ctx, "test_util", "axpb", &k2), KDCL_OK);
    ck_assert_ptr_eq(k, k2); /* created once per context */
    ck_assert_int_eq(kdcl_kernel_get(ctx, "no_such_program", "x", &k), KDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kdcl_kernel_get(ctx, "test_util", "no_such_kernel", &k), KDCL_ERR_OPENCL);
    /* KDCL_KERNEL_DIR: sources come from disk */
    char *src;
    size_t len;
    const char *dir = tu_path("kernels");
    mkdir(dir, 0755);
    char path[4200];
    snprintf(path, sizeof path, "%s/test_util.cl", dir);
    ck_assert_int_eq(tu_write_file(path, "// from disk\n", 13), 0);
    setenv("KDCL_KERNEL_DIR", dir, 1);
    ck_assert_int_eq(kdcl_kernel_source("test_util", &src, &len), KDCL_OK);
    ck_assert_str_eq(src, "// from disk\n");
    free(src);
    ck_assert_int_eq(kdcl_kernel_source("missing", &src, &len), KDCL_ERR_IO);
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "missing.cl"));
    /* #include "x.clh" lines are replaced by the header's text */
    char hpath[4200];
    snprintf(path, sizeof path, "%s/inc.cl", dir);
    snprintf(hpath, sizeof hpath, "%s/shared.clh", dir);
    ck_assert_int_eq(tu_write_file(hpath, "float twice(float x) { return 2 * x; }", 38), 0);
    const char *inc = "// top\n#include \"shared.clh\"\n// bottom\n";
    ck_assert_int_eq(tu_write_file(path, inc, strlen(inc)), 0);
    ck_assert_int_eq(kdcl_kernel_source("inc", &src, &len), KDCL_OK);
    ck_assert_str_eq(src, "// top\nfloat twice(float x) { return 2 * x; }\n// bottom\n");
    ck_assert_uint_eq(len, strlen(src));
    free(src);
    const char *bad = "#include \"missing.clh\"\n";
    ck_assert_int_eq(tu_write_file(path, bad, strlen(bad)), 0);
    ck_assert_int_eq(kdcl_kernel_source("inc", &src, &len), KDCL_ERR_IO);
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "missing.clh"));
    unsetenv("KDCL_KERNEL_DIR");
    /* the built-in programs come with their headers inlined */
    ck_assert_int_eq(kdcl_kernel_source("softmax", &src, &len), KDCL_OK);
    ck_assert_ptr_null(strstr(src, "\n#include \""));
    ck_assert_ptr_nonnull(strstr(src, "float wg_sum("));
    free(src);
    ck_assert_int_eq(kdcl_kernel_source("test_util", &src, &len), KDCL_OK);
    ck_assert_ptr_nonnull(strstr(src, "__kernel void axpb"));
    free(src);
}
END_TEST

START_TEST(test_tensors)
{
    kdcl_tensor t;
    kdcl_mem_stats m0 = kdcl_ctx_mem_stats(ctx);
    ck_assert_int_eq(kdcl_tensor_alloc2(ctx, &t, KDCL_F32, 3, 5), KDCL_OK);
    ck_assert_uint_eq(t.numel, 15);
    kdcl_mem_stats m1 = kdcl_ctx_mem_stats(ctx);
    ck_assert_uint_eq(m1.allocations, m0.allocations + 1);
    ck_assert_uint_eq(m1.live_bytes, m0.live_bytes + 60);
    float h[15], o[15];
    for (int i = 0; i < 15; i++) h[i] = (float)i * 0.5f;
    ck_assert_int_eq(kdcl_tensor_upload(ctx, &t, 0, 15, h), KDCL_OK);
    ck_assert_int_eq(kdcl_tensor_download(ctx, &t, 0, 15, o), KDCL_OK);
    ck_assert_mem_eq(h, o, sizeof h);
    ck_assert_int_eq(kdcl_tensor_download(ctx, &t, 10, 6, o), KDCL_ERR_INVALID_ARG);
    size_t sh[2] = {2, 5};
    ck_assert_int_eq(kdcl_tensor_reshape(&t, 2, sh), KDCL_OK);
    ck_assert_uint_eq(t.numel, 10);
    size_t big[2] = {4, 5};
    ck_assert_int_eq(kdcl_tensor_reshape(&t, 2, big), KDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kdcl_tensor_fill(ctx, &t, 2.5f), KDCL_OK);
    ck_assert_int_eq(kdcl_tensor_download(ctx, &t, 0, 15, o), KDCL_OK);
    for (int i = 0; i < 15; i++) ck_assert_float_eq(o[i], 2.5f);
    kdcl_tensor_free(ctx, &t);
    ck_assert_uint_eq(kdcl_ctx_mem_stats(ctx).live_bytes, m0.live_bytes);
    /* bad shapes */
    size_t zero[2] = {0, 3};
    ck_assert_int_eq(kdcl_tensor_alloc(ctx, &t, KDCL_F32, 2, zero), KDCL_ERR_INVALID_ARG);
    size_t huge[3] = {SIZE_MAX / 2, 3, 5};
    ck_assert_int_eq(kdcl_tensor_alloc(ctx, &t, KDCL_F32, 3, huge), KDCL_ERR_OVERFLOW);
    size_t toobig[1] = {SIZE_MAX / 8};
    ck_assert_int_eq(kdcl_tensor_alloc(ctx, &t, KDCL_F32, 1, toobig), KDCL_ERR_OOM);
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "exceeds"));
    ck_assert_int_eq(kdcl_tensor_alloc(ctx, &t, KDCL_F32, 5, sh), KDCL_ERR_INVALID_ARG);
    /* pool */
    kdcl_pool pool;
    kdcl_pool_init(&pool, ctx);
    kdcl_tensor *a, *b;
    ck_assert_int_eq(kdcl_pool_alloc2(&pool, &a, KDCL_F32, 4, 4), KDCL_OK);
    ck_assert_int_eq(kdcl_pool_alloc2(&pool, &b, KDCL_U8, 4, 4), KDCL_OK);
    ck_assert_uint_eq(kdcl_ctx_mem_stats(ctx).live_bytes, m0.live_bytes + 64 + 16);
    kdcl_pool_free(&pool);
    ck_assert_uint_eq(kdcl_ctx_mem_stats(ctx).live_bytes, m0.live_bytes);
}
END_TEST

START_TEST(test_no_platform_message)
{
    /* With no ICD registered the CLI must say so, name pocl-opencl-icd and exit 2. */
    const char *exe = getenv("KDCL_EXE");
    if (!exe || access(exe, X_OK) != 0) return; /* built without the CLI */
    const char *empty = tu_path("no-icds");
    mkdir(empty, 0755);
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "OCL_ICD_VENDORS=%s OCL_ICD_FILENAMES= %s devices 2>&1", empty, exe);
    FILE *f = popen(cmd, "r");
    char out[8192] = "";
    size_t n = fread(out, 1, sizeof out - 1, f);
    out[n] = '\0';
    int st = pclose(f);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 2, "exit status %d, output: %s", st, out);
    ck_assert_msg(strstr(out, "pocl-opencl-icd") != NULL, "output: %s", out);
    ck_assert_msg(strstr(out, "no OpenCL platform") != NULL, "output: %s", out);
    /* kdcl devices explains the loader and names a package per vendor */
    static const char *const want[] = {"/etc/OpenCL/vendors", "OCL_ICD_VENDORS", "-1001",
                                       "(no .icd file there)", "intel-opencl-icd",
                                       "intel-opencl-rt", "mesa-opencl-icd", "nvidia-opencl-icd",
                                       "ocl-icd-libopencl1"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        ck_assert_msg(strstr(out, want[i]) != NULL, "no '%s' in: %s", want[i], out);
    /* an .icd file whose library does not load: still no platform, and the
     * file is listed with the library it names */
    char icd[8300];
    snprintf(icd, sizeof icd, "%s/broken.icd", empty);
    static const char lib[] = "/nonexistent/libOpenCL-driver.so\n";
    ck_assert_int_eq(tu_write_file(icd, lib, sizeof lib - 1), 0);
    f = popen(cmd, "r");
    n = fread(out, 1, sizeof out - 1, f);
    out[n] = '\0';
    st = pclose(f);
    remove(icd);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 2, "exit status %d, output: %s", st, out);
    ck_assert_msg(strstr(out, "broken.icd -> /nonexistent/libOpenCL-driver.so"), "output: %s",
                  out);
}
END_TEST

START_TEST(test_error_names)
{
    ck_assert_str_eq(kdcl_cl_error_name(-5), "CL_OUT_OF_RESOURCES");
    ck_assert_str_eq(kdcl_cl_error_name(-11), "CL_BUILD_PROGRAM_FAILURE");
    ck_assert_str_eq(kdcl_cl_error_name(-12345), "CL_ERROR(-12345)");
    ck_assert_int_eq(kdcl_set_error(KDCL_ERR_IO, "x %d", 5), KDCL_ERR_IO);
    ck_assert_str_eq(kdcl_last_error(), "x 5");
    kdcl_clear_error();
    ck_assert_str_eq(kdcl_last_error(), "");
    ck_assert_str_eq(kdcl_status_name(KDCL_ERR_BUILD), "KDCL_ERR_BUILD");
}
END_TEST

static Suite *runtime_suite(void)
{
    Suite *s = suite_create("runtime");
    TCase *pure = tcase_create("pure");
    tcase_add_test(pure, test_select_rules);
    tcase_add_test(pure, test_select_aliases);
    tcase_add_test(pure, test_select_vendor_fallback);
    tcase_add_test(pure, test_select_names);
    tcase_add_test(pure, test_select_errors);
    tcase_add_test(pure, test_cache_key);
    tcase_add_test(pure, test_error_names);
    tcase_add_test(pure, test_no_platform_message);
    suite_add_tcase(s, pure);
    TCase *dev = tcase_create("device");
    tcase_add_unchecked_fixture(dev, ctx_setup, ctx_teardown);
    tcase_set_timeout(dev, 600);
    tcase_add_test(dev, test_program_cache);
    tcase_add_test(dev, test_corrupt_cache_entry_rebuilt);
    tcase_add_test(dev, test_build_failure_reports_log);
    tcase_add_test(dev, test_embedded_kernel_and_override);
    tcase_add_test(dev, test_tensors);
    suite_add_tcase(s, dev);
    return s;
}

int main(void) { return tu_run_suite(runtime_suite()); }
