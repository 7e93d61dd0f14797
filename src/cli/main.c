/* kdcl: the command-line tool. One file per subcommand. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "kdcl/dist.h"

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
    int mpi; /* runs as an mpirun job of several ranks */
} command;

static const command commands[] = {
    {"devices", cmd_devices, "list OpenCL platforms and devices", 0},
    {"train", cmd_train, "train a network (or --members M: an ensemble) and save checkpoints", 1},
    {"distill", cmd_distill, "train a student on the soft targets of a teacher or ensemble", 1},
    {"adjust-bias", cmd_adjust_bias, "shift the output bias of chosen classes (searched on held-out data)", 0},
    {"eval", cmd_eval, "test errors, per-class errors and confusion matrix of a checkpoint", 0},
    {"gemm", cmd_gemm, "run one GEMM on the device and check it against the CPU", 0},
    {"bench", cmd_bench, "benchmark GEMMs, kernels, training and inference (table, --json)", 0},
    {"specialists", cmd_specialists, "class clusters, specialists with a dustbin class, KL combination", 1},
    {"tune", cmd_tune, "tune CLBlast's GEMM kernels for a device (clblast-utils) and cache them", 0},
    {"export", cmd_export, "write a checkpoint as an ONNX model (--onnx OUT.onnx)", 0},
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
               "  KDCL_CACHE_DIR   program binary cache (default $XDG_CACHE_HOME/kdcl)\n"
               "  KDCL_DEVICES     devices of the ranks of an mpirun job, by node-local rank\n"
               "                   (comma-separated; as --devices)\n"
               "\nUnder mpirun (Open MPI%s), train, distill and specialists train run across\n"
               "the ranks: see their --help.\n",
            kdcl_dist_compiled() ? "" : "; this build has no MPI");
}

static int run(int argc, char **argv);

int main(int argc, char **argv)
{
    if (kdcl_dist_init(&argc, &argv)) {
        fprintf(stderr, "kdcl: %s\n", kdcl_last_error());
        return CLI_EXIT_FAIL;
    }
    cli_dist_args(argc, argv);
    int rc = cli_dist_end(run(argc, argv));
    kdcl_dist_finalize();
    return rc;
}

static int run(int argc, char **argv)
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
        if (!strcmp(c, commands[i].name)) {
            if (kdcl_dist_size() > 1 && !commands[i].mpi)
                return cli_usage_error(c, "runs in one process, but mpirun started %d ranks "
                                          "(train, distill and specialists train run across "
                                          "ranks)",
                                       kdcl_dist_size());
            return commands[i].fn(argc - 1, argv + 1);
        }
    fprintf(stderr, "kdcl: unknown command '%s' (kdcl --help lists the commands)\n", c);
    return CLI_EXIT_USAGE;
}
