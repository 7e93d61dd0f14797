/* kdcl train: train an MLP with dropout, jitter and max-norm on a dataset,
 * evaluate it on the test split and save a safetensors checkpoint. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "kdcl/data.h"
#include "kdcl/train.h"

static void train_usage(void)
{
    printf(
        "usage: kdcl train --out MODEL.safetensors [options]\n\n"
        "Trains an MLP (ReLU hidden units) with SGD + momentum on the training split,\n"
        "then reports the test error and writes the LAST epoch's weights to --out\n"
        "(with --val, the held-out error is printed every epoch).\n\n"
        "  --data DIR          dataset directory (IDX/MNIST layout, CIFAR binary or image\n"
        "                      folders; default $KDCL_DATA or " CLI_DEFAULT_DATA ")\n"
        "  --arch A-B-...-K    layer sizes (default <inputs>-800-800-<classes>)\n"
        "  --epochs N          (default 10)\n"
        "  --batch B           (default 128)\n"
        "  --lr X              initial learning rate (default 0.05)\n"
        "  --lr-decay X        learning rate multiplied by X after each epoch (default 1)\n"
        "  --momentum A[,B[,E]]  momentum ramp from A to B over E epochs (default 0.5,0.9,5)\n"
        "  --weight-decay X    L2 weight decay (default 0)\n"
        "  --dropout P[,Q]     input dropout P, hidden dropout Q (default 0,0)\n"
        "  --max-norm C        max-norm of each unit's incoming weights (default off)\n"
        "  --jitter N          random translations of up to N pixels (default 0)\n"
        "  --val N             hold out N training examples for validation (default 0)\n"
        "  --seed S            drives init, shuffling, dropout and jitter (default 1)\n"
        "  --metrics FILE      JSONL metrics, one line per epoch (default MODEL.metrics.jsonl)\n"
        "  --device D          OpenCL device: P:D, cpu, gpu or a name substring\n"
        "  --quiet             no per-epoch lines, no progress bar\n");
}

int cmd_train(int argc, char **argv)
{
    static const struct option opts[] = {
        {"data", required_argument, 0, 'D'},     {"arch", required_argument, 0, 'a'},
        {"epochs", required_argument, 0, 'e'},   {"batch", required_argument, 0, 'b'},
        {"lr", required_argument, 0, 'l'},       {"lr-decay", required_argument, 0, 'L'},
        {"momentum", required_argument, 0, 'm'}, {"weight-decay", required_argument, 0, 'w'},
        {"dropout", required_argument, 0, 'p'},  {"max-norm", required_argument, 0, 'n'},
        {"jitter", required_argument, 0, 'j'},   {"val", required_argument, 0, 'v'},
        {"seed", required_argument, 0, 's'},     {"out", required_argument, 0, 'o'},
        {"metrics", required_argument, 0, 'M'},  {"device", required_argument, 0, 'd'},
        {"quiet", no_argument, 0, 'q'},          {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *data = NULL, *arch_s = NULL, *out = NULL, *metrics = NULL, *device = NULL;
    size_t val = 0;
    int quiet = 0;
    kdcl_train_opts o;
    kdcl_train_opts_default(&o);
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        double d, d2, d3;
        size_t z;
        uint64_t u;
        switch (c) {
        case 'D': data = optarg; break;
        case 'a': arch_s = optarg; break;
        case 'o': out = optarg; break;
        case 'M': metrics = optarg; break;
        case 'd': device = optarg; break;
        case 'q': quiet = 1; break;
        case 'e':
            if (cli_parse_size(optarg, &z) || z == 0)
                return cli_usage_error("train", "--epochs needs a positive integer, got '%s'", optarg);
            o.epochs = z;
            break;
        case 'b':
            if (cli_parse_size(optarg, &z) || z == 0)
                return cli_usage_error("train", "--batch needs a positive integer, got '%s'", optarg);
            o.batch = z;
            break;
        case 'l':
            if (cli_parse_double(optarg, &d) || d <= 0)
                return cli_usage_error("train", "--lr needs a positive number, got '%s'", optarg);
            o.lr = (float)d;
            break;
        case 'L':
            if (cli_parse_double(optarg, &d) || d <= 0 || d > 1)
                return cli_usage_error("train", "--lr-decay needs a number in (0, 1], got '%s'", optarg);
            o.lr_decay = (float)d;
            break;
        case 'w':
            if (cli_parse_double(optarg, &d) || d < 0)
                return cli_usage_error("train", "--weight-decay needs a number >= 0, got '%s'", optarg);
            o.weight_decay = (float)d;
            break;
        case 'n':
            if (cli_parse_double(optarg, &d) || d <= 0)
                return cli_usage_error("train", "--max-norm needs a positive number, got '%s'", optarg);
            o.max_norm = (float)d;
            break;
        case 'j':
            if (cli_parse_size(optarg, &z) || z > 16)
                return cli_usage_error("train", "--jitter needs 0..16 pixels, got '%s'", optarg);
            o.jitter = (int)z;
            break;
        case 'v':
            if (cli_parse_size(optarg, &z))
                return cli_usage_error("train", "--val needs a count, got '%s'", optarg);
            val = z;
            break;
        case 's':
            if (cli_parse_u64(optarg, &u))
                return cli_usage_error("train", "--seed needs a non-negative integer, got '%s'", optarg);
            o.seed = u;
            break;
        case 'p': {
            int k = cli_parse_list(optarg, 2, &d, &d2, NULL);
            if (k < 1 || d < 0 || d >= 1 || (k == 2 && (d2 < 0 || d2 >= 1)))
                return cli_usage_error("train", "--dropout needs P or P,Q in [0, 1), got '%s'", optarg);
            o.drop_in = k == 2 ? (float)d : 0.0f;
            o.drop_hidden = k == 2 ? (float)d2 : (float)d;
            if (k == 1) o.drop_in = 0.0f;
            break;
        }
        case 'm': {
            int k = cli_parse_list(optarg, 3, &d, &d2, &d3);
            if (k < 1 || d < 0 || d >= 1 || (k >= 2 && (d2 < 0 || d2 >= 1)) ||
                (k == 3 && (d3 < 0 || d3 != floor(d3))))
                return cli_usage_error("train", "--momentum needs A[,B[,EPOCHS]] with A, B in [0, 1), got '%s'", optarg);
            o.momentum0 = (float)d;
            o.momentum1 = k >= 2 ? (float)d2 : (float)d;
            o.momentum_epochs = k == 3 ? (size_t)d3 : (k == 2 ? o.momentum_epochs : 0);
            break;
        }
        case 'h': train_usage(); return 0;
        default: return cli_usage_error("train", "unknown option or missing value: %s", argv[optind - 1]);
        }
    }
    if (optind < argc) return cli_usage_error("train", "unexpected argument '%s'", argv[optind]);
    if (!out) return cli_usage_error("train", "--out MODEL.safetensors is required");

    kdcl_dataset train = {0}, test = {0}, tr = {0}, va = {0};
    kdcl_ctx *ctx = NULL;
    kdcl_mlp *m = NULL;
    kdcl_status s;
    int rc = 0;
    char metrics_buf[4096];
    data = cli_data_dir(data);
    if ((rc = cli_load_split("train", data, "train", &train)) ||
        (rc = cli_load_split("train", data, "test", &test)))
        goto done;
    const kdcl_dataset *fit = &train;
    if (val > 0) {
        if (val >= train.n) {
            rc = cli_usage_error("train", "--val %zu leaves no training examples (%zu in all)", val, train.n);
            goto done;
        }
        if ((s = kdcl_dataset_split_val(&train, val, o.seed, &tr, &va))) {
            rc = cli_fail("train", s);
            goto done;
        }
        fit = &tr;
        o.val = &va;
    }
    if (o.batch > fit->n) {
        rc = cli_usage_error("train", "--batch %zu is larger than the %zu training examples", o.batch, fit->n);
        goto done;
    }
    kdcl_arch arch;
    char defarch[128];
    if (!arch_s) {
        snprintf(defarch, sizeof defarch, "%zu-800-800-%zu", train.dim, train.n_classes);
        arch_s = defarch;
    }
    if ((s = kdcl_arch_parse(arch_s, &arch))) {
        rc = cli_fail("train", s);
        goto done;
    }
    if ((rc = cli_open_ctx("train", device, &ctx))) goto done;
    if ((s = kdcl_mlp_create(ctx, &arch, o.batch > 1000 ? o.batch : 1000, &m)) ||
        (s = kdcl_mlp_init(m, o.seed))) {
        rc = cli_fail("train", s);
        goto done;
    }
    if (!metrics) {
        snprintf(metrics_buf, sizeof metrics_buf, "%s.metrics.jsonl", out);
        metrics = metrics_buf;
    }
    o.metrics_path = metrics;
    o.log = quiet ? NULL : stdout;
    o.progress = !quiet;
    o.tag = "train";
    const kdcl_device_info *di = kdcl_ctx_device(ctx);
    if (!quiet)
        printf("kdcl train: %s on %s (%s), %zu train / %zu val / %zu test examples, %zu params\n",
               arch_s, di->name, di->platform_name, fit->n, val, test.n, kdcl_arch_params(&arch));
    double t0 = kdcl_wall_seconds();
    kdcl_epoch_stats last;
    if ((s = kdcl_train(m, fit, &o, NULL, NULL, &last))) {
        rc = cli_fail("train", s);
        goto done;
    }
    double train_secs = kdcl_wall_seconds() - t0;
    kdcl_eval_result r;
    if ((s = kdcl_evaluate(m, &test, o.norm, 0, &r))) {
        rc = cli_fail("train", s);
        goto done;
    }
    printf("test errors: %zu / %zu (%.2f%%), test loss %.4f, training %.1f s\n", r.errors, r.n,
           100.0 * (double)r.errors / (double)r.n, r.loss, train_secs);
    char k_data[4096], k_seed[32], k_epochs[32], k_err[32], k_n[32], k_scale[32], k_shift[32],
        k_drop[64], k_mn[32], k_jit[32], k_lr[32], k_val[32], k_secs[32];
    snprintf(k_data, sizeof k_data, "%s", data);
    snprintf(k_seed, sizeof k_seed, "%llu", (unsigned long long)o.seed);
    snprintf(k_epochs, sizeof k_epochs, "%zu", o.epochs);
    snprintf(k_err, sizeof k_err, "%zu", r.errors);
    snprintf(k_n, sizeof k_n, "%zu", r.n);
    snprintf(k_scale, sizeof k_scale, "%.9g", (double)o.norm.scale);
    snprintf(k_shift, sizeof k_shift, "%.9g", (double)o.norm.shift);
    snprintf(k_drop, sizeof k_drop, "%g,%g", (double)o.drop_in, (double)o.drop_hidden);
    snprintf(k_mn, sizeof k_mn, "%g", (double)o.max_norm);
    snprintf(k_jit, sizeof k_jit, "%d", o.jitter);
    snprintf(k_lr, sizeof k_lr, "%g", (double)o.lr);
    snprintf(k_val, sizeof k_val, "%zu", val > 0 ? last.val_errors : 0);
    snprintf(k_secs, sizeof k_secs, "%.1f", train_secs);
    const char *keys[] = {"dataset", "input_scale", "input_shift", "seed", "epochs", "dropout",
                          "max_norm", "jitter", "lr", "test_errors", "test_examples",
                          "val_errors", "train_seconds", "device", "checkpoint"};
    const char *vals[] = {k_data, k_scale, k_shift, k_seed, k_epochs, k_drop, k_mn, k_jit, k_lr,
                          k_err, k_n, k_val, k_secs, di->name, "last epoch"};
    kdcl_eval_result_free(&r);
    if ((s = kdcl_mlp_save(m, out, keys, vals, sizeof keys / sizeof keys[0]))) {
        rc = cli_fail("train", s);
        goto done;
    }
    if (!quiet) printf("saved %s (metrics: %s)\n", out, metrics);
done:
    kdcl_mlp_destroy(m);
    kdcl_ctx_destroy(ctx);
    kdcl_dataset_free(&train);
    kdcl_dataset_free(&test);
    kdcl_dataset_free(&tr);
    kdcl_dataset_free(&va);
    return rc;
}
