/* Test-mode logits of examples held on the host (kdcl_model_predict). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdcl/data.h"
#include "kdcl/model.h"
#include "nn/model_internal.h"

/* One example from `from_chw` order to the other, elements of `es` bytes. */
static void relayout(const unsigned char *src, unsigned char *dst, size_t c, size_t hw, size_t es,
                     int from_chw)
{
    for (size_t ch = 0; ch < c; ch++)
        for (size_t i = 0; i < hw; i++) {
            size_t a = ch * hw + i, b = i * c + ch; /* CHW index, HWC index */
            memcpy(dst + (from_chw ? b : a) * es, src + (from_chw ? a : b) * es, es);
        }
}

kdcl_status kdcl_model_predict(kdcl_model *m, const void *x, kdcl_elem type, int layout,
                               size_t n, size_t c, size_t h, size_t w, float *logits)
{
    if (!m || (!x && n) || (!logits && n))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "predict: no model, input or output");
    if (type != KDCL_U8 && type != KDCL_F32)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "predict: inputs must be uint8 or float32");
    if (layout != KDCL_LAYOUT_HWC && layout != KDCL_LAYOUT_CHW)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "predict: unknown layout %d", layout);
    size_t mc, mh, mw;
    kdcl_model_input_shape(m, &mc, &mh, &mw);
    if (kdcl_model_fit_input(m, c, h, w)) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", kdcl_last_error());
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "predict: examples of %zu x %zu x %zu (C x H x W) do not fit the "
                              "model's input %zu x %zu x %zu: %s",
                              c, h, w, mc, mh, mw, msg);
    }
    if (n == 0) return KDCL_OK;
    kdcl_ctx *ctx = kdcl_model_ctx(m);
    const size_t dim = c * h * w, K = kdcl_model_classes(m), B = kdcl_model_max_batch(m);
    const size_t es = kdcl_elem_size(type);
    /* the model's own order: u8 batches are HWC (kdcl_model_load_u8), float
     * input is NCHW (HWC for old MLP checkpoints) */
    const int want_chw = type == KDCL_F32 && !m->input_hwc;
    const int convert = c > 1 && (layout == KDCL_LAYOUT_CHW) != want_chw;
    kdcl_tensor u8 = {0};
    unsigned char *stage = NULL;
    kdcl_status s = KDCL_OK;
    if (convert && !(stage = malloc(B * dim * es))) {
        return kdcl_set_error(KDCL_ERR_OOM, "predict: out of host memory");
    }
    if (type == KDCL_U8 && (s = kdcl_tensor_alloc2(ctx, &u8, KDCL_U8, B, dim))) goto done;
    for (size_t start = 0; start < n; start += B) {
        const size_t count = n - start < B ? n - start : B;
        const unsigned char *src = (const unsigned char *)x + start * dim * es;
        if (convert) {
            for (size_t i = 0; i < count; i++)
                relayout(src + i * dim * es, stage + i * dim * es, c, h * w, es,
                         layout == KDCL_LAYOUT_CHW);
            src = stage;
        }
        if (type == KDCL_U8) {
            if ((s = kdcl_tensor_upload(ctx, &u8, 0, count * dim, src)) ||
                (s = kdcl_model_forward_u8(m, &u8, count)))
                goto done;
        } else if ((s = kdcl_model_set_batch(m, count)) ||
                   (s = kdcl_tensor_upload(ctx, kdcl_model_input(m), 0, count * dim, src)) ||
                   (s = kdcl_model_forward(m, 0, 0, 0))) {
            goto done;
        }
        if ((s = kdcl_tensor_download(ctx, kdcl_model_logits(m), 0, count * K,
                                      logits + start * K)))
            goto done;
    }
done:
    free(stage);
    kdcl_tensor_free(ctx, &u8);
    return s;
}
