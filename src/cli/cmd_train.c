/* kdcl train: train an MLP with dropout, jitter and max-norm on a dataset,
 * evaluate it on the test split and save a safetensors checkpoint. */
#include <stdio.h>

#include "fit.h"

static kdcl_status train_fn(void *user, kdcl_ctx *ctx, kdcl_model *m, const kdcl_dataset *fit,
                            const kdcl_train_opts *o, kdcl_epoch_stats *last)
{
    (void)user;
    (void)ctx;
    return kdcl_train(m, fit, o, NULL, NULL, last);
}

int cmd_train(int argc, char **argv)
{
    static const struct option opts[] = {CLI_FIT_OPTIONS,
                                         {"members", required_argument, 0, 1030},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    cli_fit f;
    cli_fit_init(&f, "train");
    int c, rc;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') {
            printf("usage: kdcl train --out MODEL.safetensors [options]\n\n"
                   "Trains a network (--arch) with SGD + momentum or Adam on the training split,\n"
                   "then reports the test error and writes the LAST epoch's weights to --out\n"
                   "(with --val, the held-out error is printed every epoch).\n\n"
                   "  --members M         an ensemble: M models with seeds S, S+1, ... (--seed S)\n"
                   "                      written to DIR/member_<i>.safetensors (--out DIR);\n"
                   "                      under mpirun the ranks take members one at a time as\n"
                   "                      they finish (rank 0 hands them out and prints the table)\n");
            cli_fit_help();
            return 0;
        }
        if ((rc = cli_fit_option(&f, c, optarg)) == 1)
            return cli_usage_error("train", "unknown option or missing value: %s", argv[optind - 1]);
        if (rc) return rc;
    }
    if (optind < argc) return cli_usage_error("train", "unexpected argument '%s'", argv[optind]);
    return cli_fit_run(&f, NULL, train_fn, NULL);
}
