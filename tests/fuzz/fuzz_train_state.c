/* Training states (kdcl train --resume): kdcl_train_state_info_read on the
 * bytes (the safetensors file, the progress and metrics metadata, the tensors'
 * dtypes, shapes and values), then, when that accepts them, a resumed
 * kdcl_train of a fixed tiny run (a 36-8-4 MLP with Adam on 40 seeded 6x6
 * images, batch 10, 2 epochs) on an OpenCL context created once: the option
 * checks, the buffer sizes against the model, the upload and the example
 * order. With KDCL_FUZZ_SEED=DIR set, start-up writes two valid states of
 * that run into DIR, one within the first epoch and one at the end
 * (tools/fuzz_corpus.py makes the seeds that way). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "kdcl/loss.h"
#include "kdcl/model.h"
#include "kdcl/ops.h"
#include "kdcl/runtime.h"
#include "kdcl/train.h"

static kdcl_ctx *ctx;
static kdcl_dataset ds;
static uint8_t images[40 * 36];
static int32_t labels[40];

static kdcl_model *tiny_model(void)
{
    kdcl_model_spec spec;
    kdcl_model *m = NULL;
    if (kdcl_model_spec_parse("36-8-4", 4, &spec) != KDCL_OK) abort();
    if (kdcl_model_create(ctx, &spec, 1, 6, 6, 10, &m) != KDCL_OK ||
        kdcl_model_init(m, 3) != KDCL_OK)
        abort();
    kdcl_model_spec_free(&spec);
    return m;
}

static void tiny_opts(kdcl_train_opts *o, const char *state, int resume)
{
    kdcl_train_opts_default(o);
    o->epochs = 2;
    o->batch = 10;
    o->optimizer = KDCL_OPT_ADAM;
    o->lr = 0.01f;
    o->state_path = state;
    o->resume = resume;
}

static kdcl_status stop_at_5(void *user, kdcl_model *m, const kdcl_batcher *b, size_t start,
                            size_t count, uint64_t step, const kdcl_tensor *labels,
                            kdcl_tensor *loss, kdcl_tensor *errors)
{
    (void)user;
    (void)b;
    (void)start;
    if (step == 5) return kdcl_set_error(KDCL_ERR_IO, "stop");
    return kdcl_op_softmax_xent(kdcl_model_ctx(m), kdcl_model_logits(m), labels, loss,
                                kdcl_model_dlogits(m), 1.0f / (float)count, errors);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (kdcl_ctx_create(getenv("KDCL_DEVICE"), &ctx) != KDCL_OK) {
        fprintf(stderr, "fuzz_train_state: no OpenCL device: %s\n", kdcl_last_error());
        abort();
    }
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < sizeof images; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        images[i] = (uint8_t)x;
    }
    for (size_t i = 0; i < 40; i++) labels[i] = (int32_t)(i % 4);
    ds = (kdcl_dataset){.images = images, .labels = labels, .n = 40, .h = 6, .w = 6, .c = 1,
                        .dim = 36, .n_classes = 4};
    const char *seed = getenv("KDCL_FUZZ_SEED");
    if (seed) {
        char path[4096];
        for (int end = 0; end < 2; end++) {
            kdcl_model *m = tiny_model();
            kdcl_train_opts o;
            snprintf(path, sizeof path, "%s/%s.state.safetensors", seed, end ? "end" : "mid");
            tiny_opts(&o, path, 0);
            o.state_every = 3;
            /* mid: the run stops at step 5, after the state of step 3 */
            kdcl_status s = kdcl_train(m, &ds, &o, end ? NULL : stop_at_5, NULL, NULL);
            if (s != (end ? KDCL_OK : KDCL_ERR_IO)) {
                fprintf(stderr, "fuzz_train_state: seed: %s\n", kdcl_last_error());
                abort();
            }
            kdcl_model_destroy(m);
        }
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = fz_write(0, "run.state.safetensors", data, size);
    kdcl_train_state_info info;
    if (kdcl_train_state_info_read(p, &info) != KDCL_OK) return 0;
    kdcl_model *m = tiny_model();
    kdcl_train_opts o;
    tiny_opts(&o, p, 1);
    kdcl_epoch_stats last;
    kdcl_train(m, &ds, &o, NULL, NULL, &last);
    kdcl_model_destroy(m);
    return 0;
}
