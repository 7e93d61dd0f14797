#include <dirent.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static void print_mem(const char *label, uint64_t b, const char *note)
{
    if (b >= (1ull << 30))
        printf("    %-18s %.1f GiB%s\n", label, (double)b / (1ull << 30), note);
    else
        printf("    %-18s %.1f KiB%s\n", label, (double)b / 1024.0, note);
}

/* The .icd files of dir on stderr, each with the library it names. */
static void list_icds(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "    (%s cannot be read)\n", dir);
        return;
    }
    int any = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".icd") != 0) continue;
        char path[4096], lib[512] = "";
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "r");
        if (f) {
            if (!fgets(lib, sizeof lib, f)) lib[0] = '\0';
            fclose(f);
        }
        lib[strcspn(lib, "\r\n")] = '\0';
        fprintf(stderr, "    %s -> %s\n", e->d_name, *lib ? lib : "(empty)");
        any = 1;
    }
    closedir(d);
    if (!any) fprintf(stderr, "    (no .icd file there)\n");
}

/* After "no OpenCL platform": how OpenCL finds its drivers, what this process
 * saw, and what to install. */
static void explain_icd_loader(void)
{
    const char *vendors = getenv("OCL_ICD_VENDORS"), *files = getenv("OCL_ICD_FILENAMES");
    fprintf(stderr,
            "\nHow OpenCL finds drivers: libOpenCL.so is the ICD loader; it loads every\n"
            "implementation named by an .icd file (one line: the driver library) in\n"
            "/etc/OpenCL/vendors, or in the directory $OCL_ICD_VENDORS names instead\n"
            "(ocl-icd also takes a list of libraries in $OCL_ICD_FILENAMES). With none\n"
            "loaded, clGetPlatformIDs fails with -1001 (CL_PLATFORM_NOT_FOUND_KHR).\n");
    fprintf(stderr, "  OCL_ICD_VENDORS   %s\n", vendors && *vendors ? vendors : "(not set)");
    fprintf(stderr, "  OCL_ICD_FILENAMES %s\n", files && *files ? files : "(not set)");
    const char *dir = vendors && *vendors ? vendors : "/etc/OpenCL/vendors";
    struct stat st;
    if (stat(dir, &st) == 0 && S_ISREG(st.st_mode)) { /* ocl-icd: one .icd file */
        fprintf(stderr, "  ICD file %s\n", dir);
    } else {
        fprintf(stderr, "  ICD files in %s:\n", dir);
        list_icds(dir);
    }
    fprintf(stderr,
            "Drivers (Debian 12 packages) and the --device name that selects them:\n"
            "  any CPU              pocl-opencl-icd                           pocl\n"
            "  Intel's CPU runtime  PyPI intel-opencl-rt: tools/intel_ocl.sh  intel\n"
            "  Intel GPUs           intel-opencl-icd                          intel\n"
            "  AMD GPUs             mesa-opencl-icd (Mesa), or AMD's ROCm     amd, rusticl\n"
            "  NVIDIA GPUs          nvidia-opencl-icd (non-free)              nvidia\n"
            "  the loader           ocl-icd-libopencl1 (clinfo -l lists what it finds)\n");
}

int cmd_devices(int argc, char **argv)
{
    static const struct option opts[] = {
        {"help", no_argument, 0, 'h'}, {"device", required_argument, 0, 'd'}, {0, 0, 0, 0}};
    int o;
    optind = 1;
    opterr = 0;
    const char *spec = getenv("KDCL_DEVICE");
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (o == 'd') {
            spec = optarg;
            continue;
        }
        if (o == 'h') {
            printf("usage: kdcl devices [--device SPEC]\n\nLists every OpenCL platform and "
                   "device; the one marked * is what --device SPEC (default: KDCL_DEVICE)\n"
                   "selects, and a SPEC that selects none is reported on stderr.\n\n"
                   "--device (and KDCL_DEVICE) take:\n"
                   "  P:D                   platform P, device D as listed here\n"
                   "  cpu, gpu, accelerator the first device of that type\n"
                   "  pocl, rusticl, clover an implementation\n"
                   "  intel, nvidia, amd    the vendor's own platform; without one, devices "
                   "of that vendor\n"
                   "  NAME                  a device whose name (else platform or vendor) "
                   "contains NAME\n"
                   "  NAME:cpu, NAME:gpu    NAME among devices of that type\n"
                   "Several matches on one platform: the first GPU among them, else the first;\n"
                   "on several platforms: an error listing them. With no OpenCL platform at\n"
                   "all this command explains how the ICD loader finds drivers.\n");
            return 0;
        }
        return cli_usage_error("devices", "unknown option or missing value: %s", argv[optind - 1]);
    }
    if (optind < argc)
        return cli_usage_error("devices", "unexpected argument '%s'", argv[optind]);
    kdcl_device_info *devs;
    size_t n, chosen = (size_t)-1;
    kdcl_status s = kdcl_list_devices(&devs, &n);
    if (s) {
        int rc = cli_fail("devices", s);
        if (s == KDCL_ERR_NO_DEVICE) explain_icd_loader();
        return rc;
    }
    if (kdcl_select_device(spec, devs, n, &chosen)) {
        chosen = (size_t)-1;
        fprintf(stderr, "kdcl devices: note: %s\n", kdcl_last_error());
    }
    for (size_t i = 0; i < n; i++) {
        const kdcl_device_info *d = &devs[i];
        printf("%c %u:%u  %s\n", i == chosen ? '*' : ' ', d->platform_index, d->device_index,
               d->name);
        printf("    %-18s %s (%s)\n", "platform", d->platform_name, d->platform_version);
        printf("    %-18s %s\n", "platform vendor", d->platform_vendor);
        printf("    %-18s %s\n", "vendor", d->vendor);
        printf("    %-18s %s\n", "type", kdcl_device_type_name(d->type));
        printf("    %-18s %u\n", "compute units", d->compute_units);
        printf("    %-18s %u MHz\n", "clock", d->clock_mhz);
        print_mem("global memory", d->global_mem, "");
        print_mem("local memory", d->local_mem, "");
        print_mem("max allocation", d->max_alloc,
                  d->max_alloc_capped ? " (capped by KDCL_MAX_ALLOC)" : "");
        printf("    %-18s %zu\n", "max work-group", d->max_work_group);
        printf("    %-18s %s\n", "OpenCL C", d->opencl_c_version);
        printf("    %-18s %s\n", "device version", d->device_version);
        printf("    %-18s %s\n", "driver", d->driver_version);
        printf("    %-18s fp64 %s, fp16 %s\n", "precision", d->fp64 ? "yes" : "no",
               d->fp16 ? "yes" : "no");
    }
    free(devs);
    return 0;
}
