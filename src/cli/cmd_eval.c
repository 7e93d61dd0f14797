/* kdcl eval: test errors, accuracy, per-class errors and the confusion matrix
 * of a checkpoint (text or --json). */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "kdcl/file.h"
#include "kdcl/data.h"
#include "kdcl/distill.h"
#include "kdcl/safetensors.h"
#include "kdcl/train.h"

/* The test-mode logits of every example as a NumPy .npy file: float32
 * [n, K], little-endian, rows in the split's order. */
static kdcl_status write_logits_npy(kdcl_model *m, const kdcl_dataset *ds, const char *path)
{
    float *logits = NULL;
    kdcl_status s = kdcl_model_logits_all(m, ds, &logits);
    if (s) return s;
    const size_t K = kdcl_model_classes(m), n = ds->n;
    char hdr[128];
    int h = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu, %zu), }",
                     n, K);
    size_t hl = (size_t)h, total = 10 + hl + 1;
    size_t pad = (64 - total % 64) % 64, data = n * K * sizeof(float);
    unsigned char *buf = malloc(total + pad + data);
    if (!buf) {
        free(logits);
        return kdcl_set_error(KDCL_ERR_OOM, "--logits: out of host memory");
    }
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    const size_t len = hl + pad + 1;
    buf[8] = (unsigned char)(len & 0xff);
    buf[9] = (unsigned char)(len >> 8);
    memcpy(buf + 10, hdr, hl);
    memset(buf + 10 + hl, ' ', pad);
    buf[10 + hl + pad] = '\n';
    unsigned char *d = buf + total + pad;
    for (size_t i = 0; i < n * K; i++) { /* little-endian whatever the host */
        uint32_t u;
        memcpy(&u, &logits[i], 4);
        for (int b = 0; b < 4; b++) d[4 * i + (size_t)b] = (unsigned char)(u >> (8 * b));
    }
    s = kdcl_write_file_atomic(path, buf, total + pad + data);
    free(buf);
    free(logits);
    return s;
}

int cmd_eval(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"data", required_argument, 0, 'D'},
        {"split", required_argument, 0, 'S'}, {"json", no_argument, 0, 'j'},
        {"device", required_argument, 0, 'd'}, {"help", no_argument, 0, 'h'},
        {"ensemble", required_argument, 0, 'e'}, {"logits", required_argument, 0, 'l'},
        CLI_SKIP_BAD_IMAGES_OPTION, {0, 0, 0, 0}};
    const char *model = NULL, *data = NULL, *split = "test", *device = NULL, *logits = NULL;
    int json = 0, c, rc;
    kdcl_ens_mode ens = KDCL_ENS_PROB;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'D': data = optarg; break;
        case 'S': split = optarg; break;
        case 'd': device = optarg; break;
        case 'j': json = 1; break;
        case 'l': logits = optarg; break;
        case CLI_OPT_SKIP_BAD_IMAGES: cli_skip_bad_images = 1; break;
        case 'e':
            if (!strcmp(optarg, "prob")) ens = KDCL_ENS_PROB;
            else if (!strcmp(optarg, "logit")) ens = KDCL_ENS_LOGIT;
            else return cli_usage_error("eval", "--ensemble must be prob or logit, got '%s'", optarg);
            break;
        case 'h':
            printf("usage: kdcl eval --model MODEL.safetensors[,MORE...] [--data DIR] "
                   "[--split test|train] [--ensemble prob|logit] [--json] [--device D]\n"
                   "       [--logits FILE.npy] [--skip-bad-images]\n\n"
                   "Evaluates a checkpoint in test mode (no dropout, T = 1): errors, accuracy,\n"
                   "mean cross-entropy, per-class errors and the confusion matrix\n"
                   "(rows: true class, columns: predicted). Several comma-separated models are\n"
                   "evaluated as an ensemble: the mean of their probabilities (default) or the\n"
                   "softmax of their mean logits (--ensemble logit, a geometric mean).\n"
                   "--data DIR: as for kdcl train (image folders: PNG, JPEG or BMP files);\n"
                   "--skip-bad-images skips image files that cannot be decoded, with a warning.\n"
                   "--logits FILE.npy also writes one model's test-mode logits of every example\n"
                   "(NumPy float32 [examples, classes], in the split's order).\n");
            return 0;
        default: return cli_usage_error("eval", "unknown option or missing value: %s", argv[optind - 1]);
        }
    }
    if (optind < argc) return cli_usage_error("eval", "unexpected argument '%s'", argv[optind]);
    if (!model) return cli_usage_error("eval", "--model is required");
    if (logits && strchr(model, ','))
        return cli_usage_error("eval", "--logits takes one model, not an ensemble");
    if (logits && (rc = cli_check_output("eval", "--logits", logits))) return rc;
    if (strcmp(split, "test") && strcmp(split, "train"))
        return cli_usage_error("eval", "--split must be test or train, got '%s'", split);
    data = cli_data_dir(data);
    kdcl_dataset ds = {0};
    kdcl_ctx *ctx = NULL;
    kdcl_model *m = NULL;
    kdcl_st_file meta = {0};
    kdcl_eval_result r = {0};
    kdcl_ensemble *e = NULL;
    int loaded = 0;
    kdcl_status s;
    if ((rc = cli_load_split("eval", data, split, &ds))) return rc;
    if ((rc = cli_open_ctx("eval", device, &ctx))) goto done;
    char arch[256];
    if (strchr(model, ',')) {
        char *list = strdup(model), *save = NULL;
        const char *paths[KDCL_MAX_MEMBERS];
        size_t n = 0;
        for (char *t = strtok_r(list, ",", &save); t && n < KDCL_MAX_MEMBERS; t = strtok_r(NULL, ",", &save))
            paths[n++] = t;
        s = kdcl_ensemble_load_fit(ctx, paths, n, 1000, 1, ens, &e);
        if (!s) {
            loaded = 1;
            s = kdcl_ensemble_evaluate(e, &ds, &r);
        }
        free(list);
        snprintf(arch, sizeof arch, "ensemble of %zu, %s averaging", n,
                 ens == KDCL_ENS_PROB ? "probability" : "logit");
    } else {
        s = kdcl_model_load_fit(ctx, model, 1000, 1, &m, &meta);
        if (!s) s = kdcl_check_fit(m, &ds, model);
        if (!s && (s = kdcl_evaluate(m, &ds, 1, &r))) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", kdcl_last_error());
            kdcl_set_error(s, "%s: %s", model, msg);
        }
        if (!s) kdcl_model_describe(m, arch, sizeof arch);
        if (!s && logits) s = write_logits_npy(m, &ds, logits);
    }
    if (s) {
        rc = cli_fail("eval", s);
        goto done;
    }
    const size_t K = r.n_classes, Kd = ds.n_classes < K ? ds.n_classes : K;
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", model);
        cJSON_AddStringToObject(o, "arch", arch);
        cJSON_AddStringToObject(o, "data", data);
        cJSON_AddStringToObject(o, "split", split);
        cJSON_AddStringToObject(o, "device", kdcl_ctx_device(ctx)->name);
        cJSON_AddNumberToObject(o, "examples", (double)r.n);
        cJSON_AddNumberToObject(o, "errors", (double)r.errors);
        cJSON_AddNumberToObject(o, "accuracy", 1.0 - (double)r.errors / (double)r.n);
        cJSON_AddNumberToObject(o, "loss", r.loss);
        cJSON *pc = cJSON_AddArrayToObject(o, "per_class_errors");
        cJSON *cm = cJSON_AddArrayToObject(o, "confusion");
        for (size_t i = 0; i < Kd; i++) {
            long tot = 0;
            cJSON *row = cJSON_CreateArray();
            for (size_t j = 0; j < K; j++) {
                tot += r.confusion[i * K + j];
                cJSON_AddItemToArray(row, cJSON_CreateNumber(r.confusion[i * K + j]));
            }
            cJSON_AddItemToArray(pc, cJSON_CreateNumber((double)(tot - r.confusion[i * K + i])));
            cJSON_AddItemToArray(cm, row);
        }
        char *txt = cJSON_Print(o);
        printf("%s\n", txt);
        free(txt);
        cJSON_Delete(o);
    } else {
        printf("model     %s (%s)\n", model, arch);
        printf("data      %s [%s], %zu examples\n", data, split, r.n);
        printf("device    %s\n", kdcl_ctx_device(ctx)->name);
        printf("errors    %zu (%.2f%%), accuracy %.2f%%, loss %.4f\n", r.errors,
               100.0 * (double)r.errors / (double)r.n,
               100.0 - 100.0 * (double)r.errors / (double)r.n, r.loss);
        printf("\nper class (errors / examples):\n");
        for (size_t i = 0; i < Kd; i++) {
            long tot = 0;
            for (size_t j = 0; j < K; j++) tot += r.confusion[i * K + j];
            const char *name = ds.class_names ? ds.class_names[i] : NULL;
            printf("  %3zu %-14s %5ld / %5ld\n", i, name ? name : "",
                   tot - r.confusion[i * K + i], tot);
        }
        printf("\nconfusion (rows: true, columns: predicted):\n     ");
        for (size_t j = 0; j < K; j++) printf("%6zu", j);
        printf("\n");
        for (size_t i = 0; i < Kd; i++) {
            printf("%4zu ", i);
            for (size_t j = 0; j < K; j++) printf("%6d", r.confusion[i * K + j]);
            printf("\n");
        }
    }
done:
    kdcl_eval_result_free(&r);
    kdcl_st_free(&meta);
    kdcl_model_destroy(m);
    if (loaded) kdcl_ensemble_free(e);
    kdcl_ctx_destroy(ctx);
    kdcl_dataset_free(&ds);
    return rc;
}
