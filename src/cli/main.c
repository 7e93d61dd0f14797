/* kdcl: the command-line tool. One file per subcommand. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} command;

static const command commands[] = {
    {"devices", cmd_devices, "list OpenCL platforms and devices"},
    {"train", cmd_train, "train an MLP (dropout, jitter, max-norm) and save a checkpoint"},
    {"distill", cmd_distill, "train a student on the soft targets of a teacher or ensemble"},
    {"adjust-bias", cmd_adjust_bias, "shift the output bias of chosen classes (searched on held-out data)"},
    {"eval", cmd_eval, "test errors, per-class errors and confusion matrix of a checkpoint"},
    {"gemm", cmd_gemm, "run one GEMM on the device and check it against the CPU"},
    {"bench", cmd_bench, "benchmark GEMMs, kernels, training and inference (table, --json)"},
    {"specialists", cmd_specialists, "class clusters, specialists with a dustbin class, KL combination"},
    {"tune", cmd_tune, "tune CLBlast's GEMM kernels for a device (clblast-utils) and cache them"},
    {"export", cmd_export, "write a checkpoint as an ONNX model (--onnx OUT.onnx)"},
};

static void usage(FILE *f)
{
    fprintf(f, "kdcl %s: knowledge distillation on any OpenCL device\n\n"
               "usage: kdcl <command> [options]   (kdcl <command> --help for details)\n\n"
               "commands:\n",
            KDCL_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\nenvironment:\n"
               "  KDCL_DEVICE      device to use: P:D, cpu, gpu or a name substring "
               "(default: first GPU, else first device)\n"
               "  KDCL_KERNEL_DIR  load cl/*.cl from this directory instead of the built-in copies\n"
               "  KDCL_CACHE_DIR   program binary cache (default $XDG_CACHE_HOME/kdcl)\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *c = argv[1];
    if (!strcmp(c, "-h") || !strcmp(c, "--help") || !strcmp(c, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(c, "--version") || !strcmp(c, "version")) {
        printf("kdcl %s\n", KDCL_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(c, commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "kdcl: unknown command '%s' (kdcl --help lists the commands)\n", c);
    return CLI_EXIT_USAGE;
}
