/* Checkpoint / model loading: kdcl_model_load on an OpenCL context created
 * once (the default device, $KDCL_DEVICE to choose; PoCL on the CPU): the
 * safetensors file, the kdcl.model JSON and input metadata, the legacy MLP
 * form, the shapes and values of every tensor, up to the device upload.
 * Training-state files are not covered. */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_util.h"
#include "kdcl/model.h"
#include "kdcl/runtime.h"
#include "kdcl/safetensors.h"

static kdcl_ctx *ctx;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (kdcl_ctx_create(getenv("KDCL_DEVICE"), &ctx) != KDCL_OK) {
        fprintf(stderr, "fuzz_checkpoint: no OpenCL device: %s\n", kdcl_last_error());
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = fz_write(0, "model.safetensors", data, size);
    kdcl_model *m = NULL;
    kdcl_st_file meta;
    if (kdcl_model_load(ctx, p, 1, &m, &meta) == KDCL_OK) {
        kdcl_model_destroy(m);
        kdcl_st_free(&meta);
    }
    return 0;
}
