/* kdcl adjust-bias: add an offset to the output bias of chosen classes, given
 * or searched on held-out training examples (paper section 3: +3.5 for a
 * class missing from the transfer set, -7.6 for 7 and 8 when only they were). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kdcl/distill.h"
#include "kdcl/safetensors.h"
#include "kdcl/train.h"

static size_t class_errors(const float *logits, const int32_t *labels, size_t n, size_t k,
                           const size_t *cls, size_t nc, float off, size_t *total_in_classes)
{
    size_t e = 0, t = 0;
    for (size_t i = 0; i < n; i++) {
        int in = 0;
        for (size_t c = 0; c < nc; c++) in |= (size_t)labels[i] == cls[c];
        if (!in) continue;
        t++;
        e += kdcl_count_errors_with_offset(logits + i * k, labels + i, 1, k, cls, nc, off);
    }
    if (total_in_classes) *total_in_classes = t;
    return e;
}

int cmd_adjust_bias(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},  {"out", required_argument, 0, 'o'},
        {"classes", required_argument, 0, 'c'}, {"offset", required_argument, 0, 'x'},
        {"search", no_argument, 0, 's'},       {"val", required_argument, 0, 'v'},
        {"seed", required_argument, 0, 'S'},   {"range", required_argument, 0, 'r'},
        {"data", required_argument, 0, 'D'},   {"device", required_argument, 0, 'd'},
        {"help", no_argument, 0, 'h'},         CLI_SKIP_BAD_IMAGES_OPTION, {0, 0, 0, 0}};
    const char *model = NULL, *out = NULL, *data = NULL, *device = NULL;
    size_t cls[64], nc = 0, val = 5000;
    double offset = NAN, lo = -20, hi = 20, step = 0.1;
    uint64_t seed = 1;
    int search = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'o': out = optarg; break;
        case 'D': data = optarg; break;
        case 'd': device = optarg; break;
        case 's': search = 1; break;
        case CLI_OPT_SKIP_BAD_IMAGES: cli_skip_bad_images = 1; break;
        case 'c': {
            char buf[512], *save = NULL;
            snprintf(buf, sizeof buf, "%s", optarg);
            nc = 0;
            for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
                if (nc >= 64 || kdcl_parse_size(t, &cls[nc++]))
                    return cli_usage_error("adjust-bias", "--classes needs a list like 3 or 7,8, got '%s'", optarg);
            break;
        }
        case 'x':
            if (kdcl_parse_double(optarg, &offset) || fabs(offset) > 1e4)
                return cli_usage_error("adjust-bias",
                                       "--offset needs a number in [-10000, 10000], got '%s'",
                                       optarg);
            break;
        case 'v':
            if (kdcl_parse_size(optarg, &val) || val == 0)
                return cli_usage_error("adjust-bias", "--val needs a positive count, got '%s'", optarg);
            break;
        case 'S':
            if (kdcl_parse_u64(optarg, &seed))
                return cli_usage_error("adjust-bias", "--seed needs a non-negative integer, got '%s'", optarg);
            break;
        case 'r': {
            int k = cli_parse_list(optarg, 3, &lo, &hi, &step);
            if (k != 3 || !(lo < hi) || !(step > 0) || (hi - lo) / step > 1e6 || lo < -1e4 ||
                hi > 1e4)
                return cli_usage_error("adjust-bias",
                                       "--range needs LO,HI,STEP with -10000 <= LO < HI <= 10000 "
                                       "and at most 1e6 steps, got '%s'",
                                       optarg);
            break;
        }
        case 'h':
            printf("usage: kdcl adjust-bias --model IN --classes L (--offset X | --search) --out OUT\n"
                   "       [--val N] [--seed S] [--range LO,HI,STEP] [--data DIR] [--skip-bad-images]\n"
                   "       [--device D]\n\n"
                   "Adds an offset to the output bias of the listed classes. --search picks the\n"
                   "offset with the fewest errors on N training examples held out with seed S\n"
                   "(the same examples `kdcl distill --val N --seed S` held out; default 5000, 1)\n"
                   "over LO..HI in STEP (default -20,20,0.1). Prints test errors before/after.\n");
            return 0;
        default:
            return cli_usage_error("adjust-bias", "unknown option or missing value: %s", argv[optind - 1]);
        }
    }
    if (!model || !out) return cli_usage_error("adjust-bias", "--model and --out are required");
    if (!nc) return cli_usage_error("adjust-bias", "--classes is required");
    if (search == !isnan(offset))
        return cli_usage_error("adjust-bias", "give exactly one of --offset X and --search");
    int rc = cli_check_output("adjust-bias", "--out", out);
    if (rc) return rc;
    data = cli_data_dir(data);
    kdcl_dataset train = {0}, test = {0}, tr = {0}, va = {0};
    kdcl_ctx *ctx = NULL;
    kdcl_model *m = NULL;
    kdcl_st_file meta = {0};
    float *vl = NULL, *tl = NULL;
    kdcl_status s = KDCL_OK;
    if ((rc = cli_load_split("adjust-bias", data, "test", &test))) goto done;
    if (search && (rc = cli_load_split("adjust-bias", data, "train", &train))) goto done;
    if ((rc = cli_open_ctx("adjust-bias", device, &ctx))) goto done;
    if ((s = kdcl_model_load_fit(ctx, model, 1000, 1, &m, &meta))) goto done;
    /* the model must fit the data, as kdcl eval checks it, before any search */
    if ((s = kdcl_check_fit(m, &test, model)) || (search && (s = kdcl_check_fit(m, &train, model))))
        goto done;
    const size_t K = kdcl_model_classes(m);
    for (size_t i = 0; i < nc; i++)
        if (cls[i] >= K) {
            rc = cli_usage_error("adjust-bias", "class %zu outside the model's %zu classes", cls[i], K);
            goto done;
        }
    if (search) {
        if (val >= train.n) {
            rc = cli_usage_error("adjust-bias", "--val %zu exceeds the %zu training examples", val, train.n);
            goto done;
        }
        if ((s = kdcl_dataset_split_val(&train, val, seed, &tr, &va)) ||
            (s = kdcl_model_logits_all(m, &va, &vl)))
            goto done;
        size_t before = kdcl_count_errors_with_offset(vl, va.labels, va.n, K, cls, nc, 0.0f), after;
        offset = kdcl_search_bias_offset(vl, va.labels, va.n, K, cls, nc, (float)lo, (float)hi,
                                         (float)step, &after);
        printf("search on %zu held-out examples (seed %llu): offset %+.2f, errors %zu -> %zu\n",
               va.n, (unsigned long long)seed, offset, before, after);
    }
    if ((s = kdcl_model_logits_all(m, &test, &tl))) goto done;
    size_t nin, e0 = kdcl_count_errors_with_offset(tl, test.labels, test.n, K, cls, nc, 0.0f);
    size_t e1 = kdcl_count_errors_with_offset(tl, test.labels, test.n, K, cls, nc, (float)offset);
    size_t c0 = class_errors(tl, test.labels, test.n, K, cls, nc, 0.0f, &nin);
    size_t c1 = class_errors(tl, test.labels, test.n, K, cls, nc, (float)offset, NULL);
    printf("test errors: %zu -> %zu of %zu; on the adjusted classes: %zu -> %zu of %zu\n", e0, e1,
           test.n, c0, c1, nin);
    if ((s = kdcl_model_adjust_bias(m, cls, nc, (float)offset))) goto done;
    const char *keys[64], *vals[64];
    size_t n = 0;
    for (size_t i = 0; i < meta.n_meta && n < 58; i++) {
        if (!strcmp(meta.meta_keys[i], "bias_adjust") || !strcmp(meta.meta_keys[i], "test_errors"))
            continue;
        keys[n] = meta.meta_keys[i];
        vals[n++] = meta.meta_values[i];
    }
    char adj[256], te[32];
    size_t off = (size_t)snprintf(adj, sizeof adj, "classes ");
    for (size_t i = 0; i < nc && off < 200; i++)
        off += (size_t)snprintf(adj + off, sizeof adj - off, i ? ",%zu" : "%zu", cls[i]);
    snprintf(adj + off, sizeof adj - off, " offset %+.4g%s", offset, search ? " (searched)" : "");
    snprintf(te, sizeof te, "%zu", e1);
    keys[n] = "bias_adjust";
    vals[n++] = adj;
    keys[n] = "test_errors";
    vals[n++] = te;
    if ((s = kdcl_model_save(m, out, keys, vals, n))) goto done;
    printf("saved %s\n", out);
done:
    if (s) rc = cli_fail("adjust-bias", s);
    free(vl);
    free(tl);
    kdcl_st_free(&meta);
    kdcl_model_destroy(m);
    kdcl_ctx_destroy(ctx);
    kdcl_dataset_free(&train);
    kdcl_dataset_free(&test);
    kdcl_dataset_free(&tr);
    kdcl_dataset_free(&va);
    return rc;
}
