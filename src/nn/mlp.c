/* MLP forward/backward through CLBlast GEMMs and the fused elementwise kernels.
 *
 * Layout: activations are row-major [batch, features]; layer l's weight W_l
 * is [out, in] (PyTorch nn.Linear), so
 *   forward   act[l+1] = act[l] W_l^T           GEMM(N, T): B x out x in
 *   backward  dW_l     = dact[l+1]^T act[l]     GEMM(T, N): out x in x B
 *             dact[l]  = dact[l+1] W_l          GEMM(N, N): B x in x out
 * No transpose kernels are needed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdcl/data.h"
#include "kdcl/gemm.h"
#include "kdcl/nn.h"
#include "kdcl/ops.h"
#include "kdcl/safetensors.h"

kdcl_status kdcl_arch_parse(const char *spec, kdcl_arch *out)
{
    memset(out, 0, sizeof *out);
    if (!spec || !*spec)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "empty architecture (expected e.g. 784-1200-10)");
    const char *p = spec;
    size_t n = 0;
    for (;;) {
        if (*p < '0' || *p > '9')
            return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                  "architecture '%s': expected a layer size at '%s' "
                                  "(sizes separated by '-', e.g. 784-1200-1200-10)",
                                  spec, p);
        unsigned long long v = 0;
        while (*p >= '0' && *p <= '9') {
            v = v * 10 + (unsigned long long)(*p - '0');
            if (v > 1000000)
                return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                      "architecture '%s': layer size above 1000000", spec);
            p++;
        }
        if (v == 0)
            return kdcl_set_error(KDCL_ERR_INVALID_ARG, "architecture '%s': layer size 0", spec);
        if (n > KDCL_MAX_LAYERS)
            return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                  "architecture '%s': more than %d layers", spec, KDCL_MAX_LAYERS);
        out->sizes[n++] = (size_t)v;
        if (*p == '\0') break;
        if (*p != '-' && *p != 'x')
            return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                  "architecture '%s': unexpected '%c' (sizes separated by '-')",
                                  spec, *p);
        p++;
    }
    if (n < 2)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "architecture '%s' needs at least an input and an output size", spec);
    out->n_layers = n - 1;
    return KDCL_OK;
}

void kdcl_arch_format(const kdcl_arch *a, char *buf, size_t size)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i <= a->n_layers && off < size; i++) {
        int w = snprintf(buf + off, size - off, i ? "-%zu" : "%zu", a->sizes[i]);
        if (w < 0) break;
        off += (size_t)w;
    }
}

size_t kdcl_arch_params(const kdcl_arch *a)
{
    size_t n = 0;
    for (size_t l = 0; l < a->n_layers; l++) n += a->sizes[l + 1] * (a->sizes[l] + 1);
    return n;
}

void kdcl_mlp_destroy(kdcl_mlp *m)
{
    if (!m) return;
    kdcl_ctx *ctx = m->ctx;
    for (size_t l = 0; l < KDCL_MAX_LAYERS; l++) {
        kdcl_tensor_free(ctx, &m->W[l]);
        kdcl_tensor_free(ctx, &m->b[l]);
        kdcl_tensor_free(ctx, &m->dW[l]);
        kdcl_tensor_free(ctx, &m->db[l]);
    }
    for (size_t l = 0; l <= KDCL_MAX_LAYERS; l++) {
        kdcl_tensor_free(ctx, &m->act[l]);
        kdcl_tensor_free(ctx, &m->dact[l]);
        kdcl_tensor_free(ctx, &m->mask[l]);
    }
    kdcl_tensor_free(ctx, &m->params);
    kdcl_tensor_free(ctx, &m->grads);
    kdcl_tensor_free(ctx, &m->vel);
    free(m);
}

static size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

kdcl_status kdcl_mlp_create(kdcl_ctx *ctx, const kdcl_arch *arch, size_t max_batch,
                            kdcl_mlp **out)
{
    *out = NULL;
    if (arch->n_layers < 1 || arch->n_layers > KDCL_MAX_LAYERS)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "MLP needs 1..%d layers", KDCL_MAX_LAYERS);
    if (max_batch == 0) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "batch size must be >= 1");
    kdcl_mlp *m = calloc(1, sizeof *m);
    if (!m) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    m->ctx = ctx;
    m->arch = *arch;
    m->max_batch = m->batch = max_batch;
    const size_t L = arch->n_layers;
    size_t align = kdcl_align_elems(ctx, KDCL_F32), off = 0;
    for (size_t l = 0; l < L; l++) {
        m->w_off[l] = off;
        off = round_up(off + arch->sizes[l + 1] * arch->sizes[l], align);
        m->b_off[l] = off;
        off = round_up(off + arch->sizes[l + 1], align);
    }
    kdcl_status s;
    size_t flat[1] = {off};
    if ((s = kdcl_tensor_alloc(ctx, &m->params, KDCL_F32, 1, flat)) ||
        (s = kdcl_tensor_alloc(ctx, &m->grads, KDCL_F32, 1, flat)) ||
        (s = kdcl_tensor_alloc(ctx, &m->vel, KDCL_F32, 1, flat)) ||
        (s = kdcl_tensor_fill(ctx, &m->params, 0.0f)) ||
        (s = kdcl_tensor_fill(ctx, &m->grads, 0.0f)) || (s = kdcl_tensor_fill(ctx, &m->vel, 0.0f)))
        goto fail;
    for (size_t l = 0; l < L; l++) {
        size_t ws[2] = {arch->sizes[l + 1], arch->sizes[l]}, bs[1] = {arch->sizes[l + 1]};
        if ((s = kdcl_tensor_view(ctx, &m->params, m->w_off[l], 2, ws, &m->W[l])) ||
            (s = kdcl_tensor_view(ctx, &m->params, m->b_off[l], 1, bs, &m->b[l])) ||
            (s = kdcl_tensor_view(ctx, &m->grads, m->w_off[l], 2, ws, &m->dW[l])) ||
            (s = kdcl_tensor_view(ctx, &m->grads, m->b_off[l], 1, bs, &m->db[l])))
            goto fail;
    }
    for (size_t l = 0; l <= L; l++) {
        if ((s = kdcl_tensor_alloc2(ctx, &m->act[l], KDCL_F32, max_batch, arch->sizes[l])))
            goto fail;
        if (l > 0 && (s = kdcl_tensor_alloc2(ctx, &m->dact[l], KDCL_F32, max_batch,
                                             arch->sizes[l])))
            goto fail;
        if (l < L && (s = kdcl_tensor_alloc2(ctx, &m->mask[l], KDCL_U8, max_batch,
                                             arch->sizes[l])))
            goto fail;
    }
    *out = m;
    return KDCL_OK;
fail:
    kdcl_mlp_destroy(m);
    return s;
}

kdcl_status kdcl_mlp_set_batch(kdcl_mlp *m, size_t batch)
{
    if (batch == 0 || batch > m->max_batch)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "batch of %zu rows outside 1..%zu", batch,
                              m->max_batch);
    if (batch == m->batch) return KDCL_OK;
    kdcl_status s;
    for (size_t l = 0; l <= m->arch.n_layers; l++) {
        size_t sh[2] = {batch, m->arch.sizes[l]};
        if ((s = kdcl_tensor_reshape(&m->act[l], 2, sh))) return s;
        if (m->dact[l].buf && (s = kdcl_tensor_reshape(&m->dact[l], 2, sh))) return s;
        if (m->mask[l].buf && (s = kdcl_tensor_reshape(&m->mask[l], 2, sh))) return s;
    }
    m->batch = batch;
    return KDCL_OK;
}

kdcl_status kdcl_mlp_init(kdcl_mlp *m, uint64_t seed)
{
    size_t n = kdcl_arch_params(&m->arch);
    float *h = malloc(n * sizeof *h);
    if (!h) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    kdcl_rng r;
    kdcl_rng_seed(&r, seed ^ 0x5eed1417u);
    float *p = h;
    for (size_t l = 0; l < m->arch.n_layers; l++) {
        size_t in = m->arch.sizes[l], out = m->arch.sizes[l + 1];
        double std = sqrt(2.0 / (double)in);
        for (size_t i = 0; i < in * out; i++) {
            /* Box-Muller */
            double u1 = kdcl_rng_uniform(&r), u2 = kdcl_rng_uniform(&r);
            if (u1 < 1e-300) u1 = 1e-300;
            *p++ = (float)(std * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
        }
        for (size_t i = 0; i < out; i++) *p++ = 0.0f;
    }
    kdcl_status s = kdcl_mlp_set_params(m, h);
    free(h);
    if (!s) s = kdcl_tensor_fill(m->ctx, &m->vel, 0.0f);
    return s;
}

kdcl_status kdcl_mlp_get_params(kdcl_mlp *m, float *h)
{
    kdcl_status s;
    for (size_t l = 0; l < m->arch.n_layers; l++) {
        size_t in = m->arch.sizes[l], out = m->arch.sizes[l + 1];
        if ((s = kdcl_tensor_download(m->ctx, &m->params, m->w_off[l], in * out, h))) return s;
        h += in * out;
        if ((s = kdcl_tensor_download(m->ctx, &m->params, m->b_off[l], out, h))) return s;
        h += out;
    }
    return KDCL_OK;
}

kdcl_status kdcl_mlp_set_params(kdcl_mlp *m, const float *h)
{
    kdcl_status s;
    for (size_t l = 0; l < m->arch.n_layers; l++) {
        size_t in = m->arch.sizes[l], out = m->arch.sizes[l + 1];
        if ((s = kdcl_tensor_upload(m->ctx, &m->params, m->w_off[l], in * out, h))) return s;
        h += in * out;
        if ((s = kdcl_tensor_upload(m->ctx, &m->params, m->b_off[l], out, h))) return s;
        h += out;
    }
    return KDCL_OK;
}

kdcl_status kdcl_mlp_forward(kdcl_mlp *m, int train, uint64_t seed, uint64_t step)
{
    const size_t L = m->arch.n_layers, B = m->batch;
    kdcl_status s;
    if (train && m->drop_in > 0.0f &&
        (s = kdcl_op_bias_act_dropout(m->ctx, &m->act[0], NULL, 0, m->drop_in, seed, step, 0,
                                      &m->mask[0])))
        return s;
    for (size_t l = 0; l < L; l++) {
        size_t in = m->arch.sizes[l], out = m->arch.sizes[l + 1];
        if ((s = kdcl_gemm(m->ctx, KDCL_NO_TRANS, KDCL_TRANS, B, out, in, 1.0f, m->act[l].buf, 0,
                           in, m->W[l].buf, 0, in, 0.0f, m->act[l + 1].buf, 0, out, NULL)))
            return s;
        int hidden = l + 1 < L;
        float p = (train && hidden) ? m->drop_hidden : 0.0f;
        if ((s = kdcl_op_bias_act_dropout(m->ctx, &m->act[l + 1], &m->b[l], hidden, p, seed, step,
                                          (uint32_t)(l + 1), p > 0 ? &m->mask[l + 1] : NULL)))
            return s;
    }
    m->last_train = train;
    return KDCL_OK;
}

kdcl_status kdcl_mlp_backward(kdcl_mlp *m)
{
    const size_t L = m->arch.n_layers, B = m->batch;
    kdcl_status s;
    for (size_t l = L; l-- > 0;) {
        size_t in = m->arch.sizes[l], out = m->arch.sizes[l + 1];
        if ((s = kdcl_gemm(m->ctx, KDCL_TRANS, KDCL_NO_TRANS, out, in, B, 1.0f, m->dact[l + 1].buf,
                           0, out, m->act[l].buf, 0, in, 0.0f, m->dW[l].buf, 0, in, NULL)))
            return s;
        if ((s = kdcl_op_bias_grad(m->ctx, &m->dact[l + 1], &m->db[l], 1.0f, 0.0f))) return s;
        if (l == 0) break;
        if ((s = kdcl_gemm(m->ctx, KDCL_NO_TRANS, KDCL_NO_TRANS, B, in, out, 1.0f,
                           m->dact[l + 1].buf, 0, out, m->W[l].buf, 0, in, 0.0f, m->dact[l].buf, 0,
                           in, NULL)))
            return s;
        float p = m->last_train ? m->drop_hidden : 0.0f;
        if ((s = kdcl_op_act_dropout_backward(m->ctx, &m->dact[l], &m->act[l], 1, p,
                                              p > 0 ? &m->mask[l] : NULL)))
            return s;
    }
    return KDCL_OK;
}

kdcl_status kdcl_mlp_sgd(kdcl_mlp *m, float lr, float momentum, float weight_decay,
                         float max_norm)
{
    if (!(max_norm > 0.0f))
        return kdcl_op_sgd(m->ctx, &m->params, &m->grads, &m->vel, 0, m->params.numel, lr,
                           momentum, weight_decay);
    /* Max-norm fused into the update of each weight matrix (one read of the weights
     * instead of two); the biases, which follow each matrix, get the plain update. */
    kdcl_status s;
    for (size_t l = 0; l < m->arch.n_layers; l++) {
        const size_t in = m->arch.sizes[l], out = m->arch.sizes[l + 1];
        if ((s = kdcl_op_sgd_max_norm(m->ctx, &m->params, &m->grads, &m->vel, m->w_off[l], out,
                                      in, lr, momentum, weight_decay, max_norm)) ||
            (s = kdcl_op_sgd(m->ctx, &m->params, &m->grads, &m->vel, m->b_off[l], out, lr,
                             momentum, weight_decay)))
            return s;
    }
    return KDCL_OK;
}

kdcl_status kdcl_mlp_save(kdcl_mlp *m, const char *path, const char *const *meta_keys,
                          const char *const *meta_values, size_t n_meta)
{
    const size_t L = m->arch.n_layers, n = kdcl_arch_params(&m->arch);
    float *h = malloc(n * sizeof *h);
    kdcl_st_tensor t[2 * KDCL_MAX_LAYERS];
    char names[2 * KDCL_MAX_LAYERS][48];
    const char *keys[64];
    const char *vals[64];
    char arch[256];
    if (!h) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    if (n_meta > 60) n_meta = 60;
    kdcl_status s = kdcl_mlp_get_params(m, h);
    if (s) goto done;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(h[i])) {
            s = kdcl_set_error(KDCL_ERR_NUMERIC,
                               "refusing to save %s: the parameters contain NaN/Inf", path);
            goto done;
        }
    float *p = h;
    for (size_t l = 0; l < L; l++) {
        size_t in = m->arch.sizes[l], out = m->arch.sizes[l + 1];
        snprintf(names[2 * l], sizeof names[0], "layers.%zu.weight", l);
        snprintf(names[2 * l + 1], sizeof names[0], "layers.%zu.bias", l);
        t[2 * l] = (kdcl_st_tensor){names[2 * l], KDCL_DT_F32, 2, {out, in}, p, out * in * 4};
        p += in * out;
        t[2 * l + 1] = (kdcl_st_tensor){names[2 * l + 1], KDCL_DT_F32, 1, {out}, p, out * 4};
        p += out;
    }
    kdcl_arch_format(&m->arch, arch, sizeof arch);
    size_t nk = 0;
    keys[nk] = "format";
    vals[nk++] = "kdcl-mlp-1";
    keys[nk] = "arch";
    vals[nk++] = arch;
    for (size_t i = 0; i < n_meta; i++) {
        if (!strcmp(meta_keys[i], "arch") || !strcmp(meta_keys[i], "format")) continue;
        keys[nk] = meta_keys[i];
        vals[nk++] = meta_values[i];
    }
    s = kdcl_st_write(path, t, 2 * L, keys, vals, nk);
done:
    free(h);
    return s;
}

kdcl_status kdcl_mlp_load(kdcl_ctx *ctx, const char *path, size_t max_batch, kdcl_mlp **out,
                          kdcl_st_file *meta)
{
    *out = NULL;
    kdcl_st_file f;
    kdcl_status s = kdcl_st_read(path, &f);
    if (s) return s;
    kdcl_arch arch;
    const char *as = kdcl_st_meta(&f, "arch");
    if (as) {
        if ((s = kdcl_arch_parse(as, &arch))) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", kdcl_last_error());
            kdcl_st_free(&f);
            return kdcl_set_error(KDCL_ERR_FORMAT, "%s: bad 'arch' metadata: %s", path, msg);
        }
    } else {
        /* infer from layers.<i>.weight shapes */
        memset(&arch, 0, sizeof arch);
        for (size_t l = 0; l < KDCL_MAX_LAYERS; l++) {
            char name[48];
            snprintf(name, sizeof name, "layers.%zu.weight", l);
            const kdcl_st_tensor *t = kdcl_st_find(&f, name);
            if (!t) break;
            if (t->ndim != 2 || (l > 0 && t->shape[1] != arch.sizes[l])) {
                kdcl_st_free(&f);
                return kdcl_set_error(KDCL_ERR_FORMAT,
                                      "%s: '%s' does not chain with the previous layer", path,
                                      name);
            }
            arch.sizes[l] = t->shape[1];
            arch.sizes[l + 1] = t->shape[0];
            arch.n_layers = l + 1;
        }
        if (arch.n_layers == 0) {
            kdcl_st_free(&f);
            return kdcl_set_error(KDCL_ERR_FORMAT,
                                  "%s: no 'arch' metadata and no layers.0.weight tensor", path);
        }
    }
    size_t n = kdcl_arch_params(&arch);
    float *h = malloc(n * sizeof *h);
    kdcl_mlp *m = NULL;
    if (!h) {
        s = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        goto done;
    }
    float *p = h;
    for (size_t l = 0; l < arch.n_layers; l++) {
        size_t in = arch.sizes[l], outn = arch.sizes[l + 1];
        char name[48];
        const float *d;
        size_t ws[2] = {outn, in}, bs[1] = {outn};
        snprintf(name, sizeof name, "layers.%zu.weight", l);
        if ((s = kdcl_st_get_f32(&f, name, 2, ws, &d))) goto done;
        memcpy(p, d, in * outn * sizeof *p);
        p += in * outn;
        snprintf(name, sizeof name, "layers.%zu.bias", l);
        if ((s = kdcl_st_get_f32(&f, name, 1, bs, &d))) goto done;
        memcpy(p, d, outn * sizeof *p);
        p += outn;
    }
    {
        char name[48];
        snprintf(name, sizeof name, "layers.%zu.weight", arch.n_layers);
        if (kdcl_st_find(&f, name)) {
            s = kdcl_set_error(KDCL_ERR_FORMAT,
                               "%s: has '%s' beyond the %zu layers its architecture names", path,
                               name, arch.n_layers);
            goto done;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (!isfinite(h[i])) {
            s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: parameters contain NaN/Inf", path);
            goto done;
        }
    if ((s = kdcl_mlp_create(ctx, &arch, max_batch, &m))) goto done;
    if ((s = kdcl_mlp_set_params(m, h))) goto done;
    *out = m;
    m = NULL;
done:
    kdcl_mlp_destroy(m);
    free(h);
    if (meta && !s)
        *meta = f;
    else
        kdcl_st_free(&f);
    return s;
}
