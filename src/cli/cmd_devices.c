#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"

static void print_mem(const char *label, uint64_t b)
{
    if (b >= (1ull << 30))
        printf("    %-18s %.1f GiB\n", label, (double)b / (1ull << 30));
    else
        printf("    %-18s %.1f KiB\n", label, (double)b / 1024.0);
}

int cmd_devices(int argc, char **argv)
{
    static const struct option opts[] = {{"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (o == 'h') {
            printf("usage: kdcl devices\n\nLists every OpenCL platform and device; the one "
                   "marked * is what --device/KDCL_DEVICE selects now.\n");
            return 0;
        }
        return cli_usage_error("devices", "unknown option or missing value: %s", argv[optind - 1]);
    }
    kdcl_device_info *devs;
    size_t n, chosen = (size_t)-1;
    kdcl_status s = kdcl_list_devices(&devs, &n);
    if (s) return cli_fail("devices", s);
    const char *spec = getenv("KDCL_DEVICE");
    if (kdcl_select_device(spec, devs, n, &chosen)) chosen = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        const kdcl_device_info *d = &devs[i];
        printf("%c %u:%u  %s\n", i == chosen ? '*' : ' ', d->platform_index, d->device_index,
               d->name);
        printf("    %-18s %s (%s)\n", "platform", d->platform_name, d->platform_version);
        printf("    %-18s %s\n", "vendor", d->vendor);
        printf("    %-18s %s\n", "type", kdcl_device_type_name(d->type));
        printf("    %-18s %u\n", "compute units", d->compute_units);
        printf("    %-18s %u MHz\n", "clock", d->clock_mhz);
        print_mem("global memory", d->global_mem);
        print_mem("local memory", d->local_mem);
        print_mem("max allocation", d->max_alloc);
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
