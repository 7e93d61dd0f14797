/* kdcl export: a checkpoint as an ONNX file (kdcl_model_export_onnx). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "kdcl/onnx.h"
#include "kdcl/safetensors.h"

int cmd_export(int argc, char **argv)
{
    static const struct option opts[] = {
        {"onnx", required_argument, 0, 'o'},      {"model", required_argument, 0, 'm'},
        {"softmax-T", required_argument, 0, 'T'}, {"input", required_argument, 0, 'i'},
        {"device", required_argument, 0, 'd'},    {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *out = NULL, *model = NULL, *device = NULL;
    kdcl_onnx_opts o = {0};
    double T;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'm': model = optarg; break;
        case 'd': device = optarg; break;
        case 'T':
            if (kdcl_parse_double(optarg, &T) || !(T > 0) || !isfinite(T))
                return cli_usage_error("export", "--softmax-T needs a temperature > 0, got '%s'",
                                       optarg);
            o.softmax_T = T;
            break;
        case 'i':
            if (!strcmp(optarg, "float")) o.input = KDCL_ONNX_INPUT_F32;
            else if (!strcmp(optarg, "uint8")) o.input = KDCL_ONNX_INPUT_U8;
            else return cli_usage_error("export", "--input must be float or uint8, got '%s'", optarg);
            break;
        case 'h':
            printf("usage: kdcl export --onnx OUT.onnx --model MODEL.safetensors [--softmax-T T]\n"
                   "                   [--input float|uint8] [--device D]\n\n"
                   "Writes a checkpoint as an ONNX model (opset %d) for inference with any ONNX\n"
                   "runtime. Its input \"pixels\" is the raw images, float 0..255 (--input uint8:\n"
                   "uint8, cast in the graph), [N, C, H, W], or [N, C*H*W] for a model that starts\n"
                   "with Flatten (an MLP); N is dynamic. The checkpoint's input normalisation\n"
                   "(pixel / 255 - mean[c]) / std[c] is the first nodes. The output is \"logits\"\n"
                   "[N, K], or with --softmax-T T \"probabilities\" = softmax(logits / T).\n"
                   "Dropout is left out (inference), BatchNorm uses its running statistics. The\n"
                   "kdcl.model JSON, the version, the input transform and the checkpoint's\n"
                   "metadata go into the model's metadata_props. The file is written atomically:\n"
                   "on any error nothing is written.\n",
                   KDCL_ONNX_OPSET);
            return 0;
        default: return cli_usage_error("export", "unknown option or missing value: %s", argv[optind - 1]);
        }
    }
    if (optind < argc) return cli_usage_error("export", "unexpected argument '%s'", argv[optind]);
    if (!out) return cli_usage_error("export", "--onnx is required (the ONNX file to write)");
    if (!model) return cli_usage_error("export", "--model is required");
    if (!kdcl_onnx_available()) {
        fprintf(stderr, "kdcl export: this kdcl was built without ONNX support (install protobuf-c: "
                        "Debian libprotobuf-c-dev and protobuf-c-compiler, then reconfigure)\n");
        return CLI_EXIT_FAIL;
    }
    int rc;
    if ((rc = cli_check_output("export", "--onnx", out))) return rc;
    struct stat so, sm;
    if (stat(out, &so) == 0 && stat(model, &sm) == 0 && so.st_dev == sm.st_dev &&
        so.st_ino == sm.st_ino)
        return cli_usage_error("export", "--onnx '%s' is the checkpoint itself", out);
    kdcl_ctx *ctx = NULL;
    kdcl_model *m = NULL;
    kdcl_st_file meta = {0};
    const char **keys = NULL, **vals = NULL;
    kdcl_status s;
    if ((rc = cli_open_ctx("export", device, &ctx))) return rc;
    if ((s = kdcl_model_load(ctx, model, 1, &m, &meta))) {
        rc = cli_fail("export", s);
        goto done;
    }
    /* the checkpoint's own metadata (training settings, ...) after kdcl's keys */
    keys = calloc(meta.n_meta + 1, sizeof *keys);
    vals = calloc(meta.n_meta + 1, sizeof *vals);
    if (!keys || !vals) {
        rc = cli_fail("export", kdcl_set_error(KDCL_ERR_OOM, "out of host memory"));
        goto done;
    }
    for (size_t i = 0; i < meta.n_meta; i++) {
        if (!strcmp(meta.meta_keys[i], "format")) continue;
        keys[o.n_meta] = meta.meta_keys[i];
        vals[o.n_meta++] = meta.meta_values[i];
    }
    o.meta_keys = keys;
    o.meta_values = vals;
    if ((s = kdcl_model_export_onnx(m, out, &o))) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", kdcl_last_error());
        rc = cli_fail("export", kdcl_set_error(s, "%s: %s", model, msg));
        goto done;
    }
    size_t C, H, W;
    char in[96];
    kdcl_model_input_shape(m, &C, &H, &W);
    if (kdcl_model_layer_kind(m, 0) == KDCL_LAYER_FLATTEN)
        snprintf(in, sizeof in, "[N, %zu]", kdcl_model_in_dim(m));
    else
        snprintf(in, sizeof in, "[N, %zu, %zu, %zu]", C, H, W);
    printf("wrote %s: %zu layers, %zu parameters; input pixels %s %s, output %s [N, %zu]\n", out,
           kdcl_model_n_layers(m), kdcl_model_n_params(m),
           o.input == KDCL_ONNX_INPUT_U8 ? "uint8" : "float", in, o.softmax_T > 0 ? "probabilities" : "logits", kdcl_model_classes(m));
done:
    free(keys);
    free(vals);
    kdcl_st_free(&meta);
    kdcl_model_destroy(m);
    kdcl_ctx_destroy(ctx);
    return rc;
}
