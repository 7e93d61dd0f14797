/* Generalist + specialists over a dataset: forward passes, the KL combination
 * and the per-example predictions. */
#include <stdlib.h>
#include <string.h>

#include "nn/batcher_internal.h"
#include "kdcl/loss.h"
#include "kdcl/specialists.h"
#include "nn/eval_internal.h"

kdcl_status kdcl_specialists_predict(kdcl_model *g, kdcl_model *const *specs,
                                     const kdcl_clusters *c,
                                     const kdcl_dataset *ds, const kdcl_combine_opts *o,
                                     size_t max_batch, int32_t *gen_pred, int32_t *comb_pred,
                                     uint8_t *active)
{
    kdcl_ctx *ctx = kdcl_model_ctx(g);
    const size_t K = kdcl_model_classes(g), M = c->M;
    if (c->K != K)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "specialists: the clusters are over %zu classes, the generalist "
                              "has %zu outputs",
                              c->K, K);
    if (ds->n == 0) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "specialists: the dataset is empty");
    kdcl_status s = kdcl_check_fit(g, ds, "specialists: the generalist");
    if (s) return s;
    size_t B = max_batch < kdcl_model_max_batch(g) ? max_batch : kdcl_model_max_batch(g);
    for (size_t m = 0; m < M; m++) {
        const size_t want = c->off[m + 1] - c->off[m] + 1;
        if (kdcl_model_ctx(specs[m]) != ctx || kdcl_model_in_dim(specs[m]) != ds->dim ||
            kdcl_model_classes(specs[m]) != want)
            return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                  "specialists: specialist %zu must take the %zu inputs on the "
                                  "generalist's context and have %zu outputs (its %zu classes + "
                                  "dustbin); it has %zu inputs and %zu outputs",
                                  m, ds->dim, want, want - 1, kdcl_model_in_dim(specs[m]),
                                  kdcl_model_classes(specs[m]));
        if ((s = kdcl_model_fit_input(specs[m], ds->c, ds->h, ds->w))) return s;
        if (kdcl_model_max_batch(specs[m]) < B) B = kdcl_model_max_batch(specs[m]);
    }
    if (B == 0) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "specialists: batch size 0");
    kdcl_batcher b;
    kdcl_combiner *cb = NULL;
    kdcl_tensor gi = {0}, ci = {0};
    s = kdcl__batcher_init(ctx, ds, B, &b);
    if (s) return s;
    B = b.max_batch;
    size_t n1[1] = {B};
    if ((s = kdcl_combiner_create(ctx, c, B, &cb)) ||
        (s = kdcl_tensor_alloc(ctx, &gi, KDCL_I32, 1, n1)) ||
        (s = kdcl_tensor_alloc(ctx, &ci, KDCL_I32, 1, n1)))
        goto done;
    for (size_t start = 0; start < ds->n; start += B) {
        const size_t count = ds->n - start < B ? ds->n - start : B;
        size_t r1[1] = {count}, r2[2] = {count, K};
        if ((s = kdcl_batcher_load(&b, start, count))) goto done;
        const kdcl_tensor *u8 = &b.batch_u8[b.cur];
        if ((s = kdcl_model_forward_u8(g, u8, count))) goto done;
        for (size_t m = 0; m < M; m++) {
            kdcl_model *sm = specs[m];
            if ((s = kdcl_model_forward_u8(sm, u8, count)) ||
                (s = kdcl_combiner_put(cb, m, kdcl_model_logits(sm), count)))
                goto done;
        }
        kdcl_tensor out = *kdcl_combiner_output(cb);
        if ((s = kdcl_combine(cb, kdcl_model_logits(g), count, o)) ||
            (s = kdcl_tensor_reshape(&gi, 1, r1)) || (s = kdcl_tensor_reshape(&ci, 1, r1)) ||
            (s = kdcl_tensor_reshape(&out, 2, r2)) ||
            (s = kdcl_op_argmax(ctx, kdcl_model_logits(g), &gi)) || (s = kdcl_op_argmax(ctx, &out, &ci)) ||
            (s = kdcl_tensor_download(ctx, &gi, 0, count, gen_pred + start)) ||
            (s = kdcl_tensor_download(ctx, &ci, 0, count, comb_pred + start)) ||
            (active && (s = kdcl_tensor_download(ctx, kdcl_combiner_active(cb), 0, count * M,
                                                 active + start * M))))
            goto done;
    }
done:
    kdcl_tensor_free(ctx, &gi);
    kdcl_tensor_free(ctx, &ci);
    kdcl_combiner_destroy(cb);
    kdcl__batcher_release(&b);
    return s;
}
