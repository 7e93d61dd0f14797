/* Host wrappers of the CNN ops of include/kdcl/conv.h other than convolution
 * and pooling: batch normalisation (cl/norm.cl), axpy, add and ReLU
 * (cl/elementwise.cl), Adam and Nesterov SGD (cl/optim.cl), and the CNN input
 * conversion (cl/augment.cl), plus the host copy of its flip decision.
 * Validation first (types, sizes against numel, overflow, finite
 * hyper-parameters), then kernel arguments and launch; nothing waits. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kdcl/conv.h"
#include "kdcl/ops.h"
#include "core/ops_util.h"
#include "runtime/ctx.h"

#define TRY(x)                        \
    do {                              \
        kdcl_status s_ = (x);         \
        if (s_ != KDCL_OK) return s_; \
    } while (0)

#define NARGS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- validation ---- */

/* t (of the given type) holds at least n elements. */
static kdcl_status need_numel(const char *op, const char *name, const kdcl_tensor *t,
                              kdcl_elem type, size_t n)
{
    TRY(kdcl_ops_check_tensor(op, name, t, type));
    if (t->numel < n) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s must hold at least %zu elements", name, n);
        return kdcl_ops_bad(op, msg, t);
    }
    return KDCL_OK;
}

/* [offset, offset + n) lies inside t's elements. */
static kdcl_status need_range(const char *op, const char *name, const kdcl_tensor *t,
                              size_t offset, size_t n)
{
    TRY(kdcl_ops_check_tensor(op, name, t, KDCL_F32));
    if (offset > t->numel || n > t->numel - offset) {
        char msg[160];
        snprintf(msg, sizeof msg, "elements [%zu, %zu + %zu) are outside %s", offset, offset, n,
                 name);
        return kdcl_ops_bad(op, msg, t);
    }
    return KDCL_OK;
}

/* A per-channel F32 tensor of exactly C elements. */
static kdcl_status need_channels(const char *op, const char *name, const kdcl_tensor *t,
                                 size_t C)
{
    TRY(kdcl_ops_check_tensor(op, name, t, KDCL_F32));
    if (t->numel != C) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s must have C = %zu elements (one per channel)", name, C);
        return kdcl_ops_bad(op, msg, t);
    }
    return KDCL_OK;
}

/* t holds `batch` examples of `per` elements: with rank >= 2 the trailing
 * dimensions multiply to `per` and batch <= shape[0]; with rank 1 it has at
 * least batch * per elements (the caller checked that product). */
static kdcl_status need_examples(const char *op, const char *name, const kdcl_tensor *t,
                                 kdcl_elem type, size_t batch, size_t per)
{
    TRY(kdcl_ops_check_tensor(op, name, t, type));
    int ok = t->ndim >= 2 ? t->numel / t->shape[0] == per && batch <= t->shape[0]
                          : batch * per <= t->numel;
    if (!ok) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s does not hold %zu examples of %zu elements", name, batch,
                 per);
        return kdcl_ops_bad(op, msg, t);
    }
    return KDCL_OK;
}

/* [B, C, S]: every size >= 1, B*C*S < 2^32 (the kernels index with 32 bits). */
static kdcl_status bn_dims(const char *op, size_t B, size_t C, size_t S, size_t *total)
{
    size_t t;
    if (B == 0 || C == 0 || S == 0)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: [B, C, S] = [%zu, %zu, %zu] has a zero",
                              op, B, C, S);
    if (__builtin_mul_overflow(B, C, &t) || __builtin_mul_overflow(t, S, &t) || t > UINT32_MAX)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "%s: [B, C, S] = [%zu, %zu, %zu] has 2^32 elements or more", op, B,
                              C, S);
    *total = t;
    return KDCL_OK;
}

static kdcl_status need_eps(const char *op, float eps)
{
    if (!(eps >= 0.0f) || !isfinite(eps))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: eps = %g must be finite and >= 0", op,
                              (double)eps);
    return KDCL_OK;
}

/* ---- batch normalisation (cl/norm.cl) ---- */

/* Elements a unit of the BatchNorm kernels covers at most (cl/norm.cl): a
 * work-item streams about this many floats per pass, enough to amortise its
 * per-unit set-up while leaving hundreds of units at CNN sizes. A multiple of
 * 16 (the kernels' vector width) so that runs along S keep whole vectors. */
#define BN_UNIT 4096

/* The units of [B, C, S] (see cl/norm.cl), a function of (B, C, S) alone so
 * that the reduction order is the same run to run. */
typedef struct {
    cl_uint bch, sch, nch, nj; /* images and positions per unit, runs along S, units per channel */
    size_t units;
} bn_units;

static bn_units bn_plan(size_t B, size_t C, size_t S)
{
    bn_units u;
    if (S >= BN_UNIT) { /* one image per unit, S cut into runs */
        u.bch = 1;
        u.sch = BN_UNIT;
        u.nch = (cl_uint)((S + BN_UNIT - 1) / BN_UNIT);
    } else {
        size_t bch = BN_UNIT / S;
        u.bch = (cl_uint)(bch < B ? bch : B);
        u.sch = (cl_uint)S;
        u.nch = 1;
    }
    u.nj = (cl_uint)((B + u.bch - 1) / u.bch * u.nch);
    u.units = C * u.nj; /* <= B*C*S: every unit holds an element */
    return u;
}

/* ctx's scratch for n floats of per-unit partials (grown on demand; kernels
 * queued on the old buffer keep it until they finish). */
static void ops_scratch_destroy(kdcl_ctx *ctx, void *state)
{
    kdcl_tensor_free(ctx, state);
    free(state);
}

kdcl_tensor *kdcl__ops_scratch(kdcl_ctx *ctx) { return kdcl__ctx_ext(ctx, KDCL_EXT_OPS); }

static kdcl_status bn_scratch(kdcl_ctx *ctx, size_t n, cl_mem *out)
{
    kdcl_tensor *t = kdcl__ctx_ext(ctx, KDCL_EXT_OPS);
    if (!t) {
        if (!(t = calloc(1, sizeof *t)))
            return kdcl_set_error(KDCL_ERR_OOM, "out of host memory for BatchNorm scratch");
        kdcl__ctx_ext_set(ctx, KDCL_EXT_OPS, t, ops_scratch_destroy);
    }
    if (!t->buf || t->capacity < n) {
        kdcl_tensor_free(ctx, t);
        TRY(kdcl_tensor_alloc(ctx, t, KDCL_F32, 1, &n));
    }
    *out = t->buf;
    return KDCL_OK;
}

/* One work-item per unit (or channel), in groups of up to 8: enough groups
 * for PoCL to spread over its threads at the few hundred units of a CNN. */
static kdcl_status bn_launch(kdcl_ctx *ctx, const char *name, const karg *a, size_t na,
                             size_t n)
{
    cl_kernel k;
    size_t cap = 1;
    TRY(kdcl_kernel_get(ctx, "norm", name, &k));
    TRY(kdcl_ops_set_args(k, name, a, na));
    TRY(kdcl_ops_wg_cap(ctx, k, name, &cap));
    const size_t local = kdcl_ops_pow2_at_most(cap < 8 ? cap : 8, n);
    return kdcl_ops_launch(ctx, k, name, (n + local - 1) / local * local, local);
}

kdcl_status kdcl_op_batchnorm_forward_train(kdcl_ctx *ctx, size_t B, size_t C, size_t S,
                                            const kdcl_tensor *x, const kdcl_tensor *gamma,
                                            const kdcl_tensor *beta, kdcl_tensor *y,
                                            kdcl_tensor *mean, kdcl_tensor *invstd,
                                            kdcl_tensor *running_mean,
                                            kdcl_tensor *running_var, float momentum, float eps)
{
    static const char *op = "kdcl_op_batchnorm_forward_train";
    size_t total = 0;
    TRY(bn_dims(op, B, C, S, &total));
    TRY(need_examples(op, "x", x, KDCL_F32, B, C * S));
    TRY(need_examples(op, "y", y, KDCL_F32, B, C * S));
    TRY(need_channels(op, "gamma", gamma, C));
    TRY(need_channels(op, "beta", beta, C));
    TRY(need_channels(op, "mean", mean, C));
    TRY(need_channels(op, "invstd", invstd, C));
    if (!running_mean != !running_var)
        return kdcl_ops_bad(op, "running_mean and running_var must both be given or both NULL",
                            NULL);
    const int update = running_mean != NULL;
    if (update) {
        TRY(need_channels(op, "running_mean", running_mean, C));
        TRY(need_channels(op, "running_var", running_var, C));
    }
    if (!(momentum >= 0.0f && momentum <= 1.0f))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: momentum = %g is outside [0, 1]", op,
                              (double)momentum);
    TRY(need_eps(op, eps));

    const size_t n = B * S;
    const bn_units u = bn_plan(B, C, S);
    const cl_uint b32 = (cl_uint)B, c32 = (cl_uint)C, s32 = (cl_uint)S;
    const cl_float inv_n = (cl_float)(1.0 / (double)n);
    const cl_float unbias = n > 1 ? (cl_float)((double)n / (double)(n - 1)) : 1.0f;
    const cl_int upd = update, eval = 0;
    const cl_mem none = NULL;
    cl_mem part;
    TRY(bn_scratch(ctx, u.units, &part));
    for (cl_int centred = 0; centred < 2; centred++) {
        /* sum x, then the mean; sum (x - mean)^2, then invstd and the running statistics */
        const karg a[] = {KA(x->buf), KA(mean->buf), KA(part),  KA(b32),   KA(c32),   KA(s32),
                          KA(u.bch),  KA(u.sch),     KA(u.nch), KA(u.nj),  KA(centred)};
        TRY(bn_launch(ctx, "bn_part_stats", a, NARGS(a), u.units));
        const karg f[] = {KA(part),
                          KA(mean->buf),
                          KA(invstd->buf),
                          update ? KA(running_mean->buf) : KA(none),
                          update ? KA(running_var->buf) : KA(none),
                          KA(c32),
                          KA(u.nj),
                          KA(inv_n),
                          KA(eps),
                          KA(momentum),
                          KA(unbias),
                          KA(upd),
                          KA(centred)};
        TRY(bn_launch(ctx, "bn_finish_stats", f, NARGS(f), C));
    }
    const karg b[] = {KA(x->buf),    KA(y->buf),      KA(gamma->buf), KA(beta->buf),
                      KA(mean->buf), KA(invstd->buf), KA(b32),        KA(c32),
                      KA(s32),       KA(u.bch),       KA(u.sch),      KA(u.nch),
                      KA(u.nj),      KA(eps),         KA(eval)};
    return bn_launch(ctx, "bn_apply", b, NARGS(b), u.units);
}

kdcl_status kdcl_op_batchnorm_forward_eval(kdcl_ctx *ctx, size_t B, size_t C, size_t S,
                                           const kdcl_tensor *x, const kdcl_tensor *gamma,
                                           const kdcl_tensor *beta,
                                           const kdcl_tensor *running_mean,
                                           const kdcl_tensor *running_var, float eps,
                                           kdcl_tensor *y)
{
    static const char *op = "kdcl_op_batchnorm_forward_eval";
    size_t total = 0;
    TRY(bn_dims(op, B, C, S, &total));
    TRY(need_examples(op, "x", x, KDCL_F32, B, C * S));
    TRY(need_examples(op, "y", y, KDCL_F32, B, C * S));
    TRY(need_channels(op, "gamma", gamma, C));
    TRY(need_channels(op, "beta", beta, C));
    TRY(need_channels(op, "running_mean", running_mean, C));
    TRY(need_channels(op, "running_var", running_var, C));
    TRY(need_eps(op, eps));
    const bn_units u = bn_plan(B, C, S);
    const cl_uint b32 = (cl_uint)B, c32 = (cl_uint)C, s32 = (cl_uint)S;
    const cl_int eval = 1;
    const karg a[] = {KA(x->buf),           KA(y->buf),           KA(gamma->buf),
                      KA(beta->buf),        KA(running_mean->buf), KA(running_var->buf),
                      KA(b32),              KA(c32),              KA(s32),
                      KA(u.bch),            KA(u.sch),            KA(u.nch),
                      KA(u.nj),             KA(eps),              KA(eval)};
    return bn_launch(ctx, "bn_apply", a, NARGS(a), u.units);
}

kdcl_status kdcl_op_batchnorm_backward(kdcl_ctx *ctx, size_t B, size_t C, size_t S,
                                       const kdcl_tensor *x, const kdcl_tensor *dy,
                                       const kdcl_tensor *gamma, const kdcl_tensor *mean,
                                       const kdcl_tensor *invstd, kdcl_tensor *dx,
                                       kdcl_tensor *dgamma, kdcl_tensor *dbeta)
{
    static const char *op = "kdcl_op_batchnorm_backward";
    size_t total = 0;
    TRY(bn_dims(op, B, C, S, &total));
    TRY(need_examples(op, "x", x, KDCL_F32, B, C * S));
    TRY(need_examples(op, "dy", dy, KDCL_F32, B, C * S));
    if (dx) TRY(need_examples(op, "dx", dx, KDCL_F32, B, C * S));
    TRY(need_channels(op, "gamma", gamma, C));
    TRY(need_channels(op, "mean", mean, C));
    TRY(need_channels(op, "invstd", invstd, C));
    TRY(need_channels(op, "dgamma", dgamma, C));
    TRY(need_channels(op, "dbeta", dbeta, C));

    const size_t n = B * S;
    const bn_units u = bn_plan(B, C, S);
    const cl_uint b32 = (cl_uint)B, c32 = (cl_uint)C, s32 = (cl_uint)S;
    cl_mem part;
    TRY(bn_scratch(ctx, 2 * u.units, &part));
    const karg a[] = {KA(x->buf), KA(dy->buf), KA(mean->buf), KA(part),  KA(b32),  KA(c32),
                      KA(s32),    KA(u.bch),   KA(u.sch),     KA(u.nch), KA(u.nj)};
    TRY(bn_launch(ctx, "bn_part_backward", a, NARGS(a), u.units));
    const karg f[] = {KA(part), KA(invstd->buf), KA(dgamma->buf), KA(dbeta->buf), KA(c32),
                      KA(u.nj)};
    TRY(bn_launch(ctx, "bn_finish_backward", f, NARGS(f), C));
    if (!dx) return KDCL_OK;

    const cl_float inv_n = (cl_float)(1.0 / (double)n);
    const karg b[] = {KA(x->buf),      KA(dy->buf),     KA(gamma->buf), KA(mean->buf),
                      KA(invstd->buf), KA(dgamma->buf), KA(dbeta->buf), KA(dx->buf),
                      KA(b32),         KA(c32),         KA(s32),        KA(u.bch),
                      KA(u.sch),       KA(u.nch),       KA(u.nj),       KA(inv_n)};
    return bn_launch(ctx, "bn_backward_dx", b, NARGS(b), u.units);
}

/* ---- axpy, ReLU (cl/elementwise.cl) ---- */

kdcl_status kdcl_op_axpy(kdcl_ctx *ctx, kdcl_tensor *y, const kdcl_tensor *x, size_t n,
                         float alpha)
{
    static const char *op = "kdcl_op_axpy";
    TRY(need_numel(op, "y", y, KDCL_F32, n));
    TRY(need_numel(op, "x", x, KDCL_F32, n));
    TRY(kdcl_ops_check_finite(op, "alpha", alpha));
    if (n == 0) return KDCL_OK;
    cl_kernel k;
    const char *name = "axpy";
    TRY(kdcl_kernel_get(ctx, "elementwise", name, &k));
    const cl_ulong n64 = n;
    const karg a[] = {KA(y->buf), KA(x->buf), KA(n64), KA(alpha)};
    TRY(kdcl_ops_set_args(k, name, a, NARGS(a)));
    return kdcl_ops_launch_items(ctx, k, name, n);
}

kdcl_status kdcl_op_add(kdcl_ctx *ctx, kdcl_tensor *y, const kdcl_tensor *a,
                        const kdcl_tensor *b, size_t n)
{
    static const char *op = "kdcl_op_add";
    TRY(need_numel(op, "y", y, KDCL_F32, n));
    TRY(need_numel(op, "a", a, KDCL_F32, n));
    TRY(need_numel(op, "b", b, KDCL_F32, n));
    if (n == 0) return KDCL_OK;
    cl_kernel k;
    const char *name = "add";
    TRY(kdcl_kernel_get(ctx, "elementwise", name, &k));
    const cl_ulong n64 = n;
    const karg a_[] = {KA(y->buf), KA(a->buf), KA(b->buf), KA(n64)};
    TRY(kdcl_ops_set_args(k, name, a_, NARGS(a_)));
    return kdcl_ops_launch_items(ctx, k, name, n);
}

kdcl_status kdcl_op_relu(kdcl_ctx *ctx, kdcl_tensor *y, size_t n)
{
    static const char *op = "kdcl_op_relu";
    TRY(need_numel(op, "y", y, KDCL_F32, n));
    if (n == 0) return KDCL_OK;
    cl_kernel k;
    const char *name = "relu";
    TRY(kdcl_kernel_get(ctx, "elementwise", name, &k));
    const cl_ulong n64 = n;
    const karg a[] = {KA(y->buf), KA(n64)};
    TRY(kdcl_ops_set_args(k, name, a, NARGS(a)));
    return kdcl_ops_launch_items(ctx, k, name, n);
}

/* ---- Adam, Nesterov SGD (cl/optim.cl) ---- */

kdcl_status kdcl_op_adam(kdcl_ctx *ctx, kdcl_tensor *w, const kdcl_tensor *g, kdcl_tensor *m,
                         kdcl_tensor *v, size_t offset, size_t n, float lr, float beta1,
                         float beta2, float eps, float weight_decay, int decoupled, uint64_t t)
{
    static const char *op = "kdcl_op_adam";
    TRY(need_range(op, "w", w, offset, n));
    TRY(need_range(op, "g", g, offset, n));
    TRY(need_range(op, "m", m, offset, n));
    TRY(need_range(op, "v", v, offset, n));
    /* PyTorch's checks, plus finiteness */
    if (!(lr >= 0.0f) || !isfinite(lr))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: lr = %g must be finite and >= 0", op,
                              (double)lr);
    if (!(beta1 >= 0.0f && beta1 < 1.0f) || !(beta2 >= 0.0f && beta2 < 1.0f))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "%s: beta1 = %g and beta2 = %g must be in [0, 1)", op,
                              (double)beta1, (double)beta2);
    TRY(need_eps(op, eps));
    if (!(weight_decay >= 0.0f) || !isfinite(weight_decay))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "%s: weight_decay = %g must be finite and >= 0", op,
                              (double)weight_decay);
    if (t < 1)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: step t = 0 (the first step is t = 1)",
                              op);
    /* step factors in double, rounded once (PyTorch computes them as Python floats) */
    const double bc1 = 1.0 - pow((double)beta1, (double)t);
    const double bc2 = 1.0 - pow((double)beta2, (double)t);
    const double ss = (double)lr / bc1, dec = 1.0 - (double)lr * (double)weight_decay;
    const cl_float step_size = (cl_float)ss, isb2 = (cl_float)(1.0 / sqrt(bc2));
    const cl_float omb1 = (cl_float)(1.0 - (double)beta1), omb2 = (cl_float)(1.0 - (double)beta2);
    const cl_float decay = (cl_float)dec;
    if (!isfinite(step_size) || !isfinite(isb2) || !isfinite(decay))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "%s: lr = %g, beta1 = %g, beta2 = %g at step %llu give a step "
                              "size lr / (1 - beta1^t) = %g outside float",
                              op, (double)lr, (double)beta1, (double)beta2,
                              (unsigned long long)t, ss);
    if (n == 0) return KDCL_OK;
    cl_kernel k;
    const char *name = "adam";
    TRY(kdcl_kernel_get(ctx, "optim", name, &k));
    const cl_ulong off64 = offset, n64 = n;
    const cl_int dcp = decoupled ? 1 : 0;
    const karg a[] = {KA(w->buf), KA(g->buf),  KA(m->buf),   KA(v->buf),         KA(off64),
                      KA(n64),    KA(beta1),   KA(omb1),     KA(beta2),          KA(omb2),
                      KA(eps),    KA(weight_decay), KA(decay), KA(dcp), KA(step_size),
                      KA(isb2)};
    TRY(kdcl_ops_set_args(k, name, a, NARGS(a)));
    return kdcl_ops_launch_items(ctx, k, name, n);
}

kdcl_status kdcl_op_sgd_nesterov(kdcl_ctx *ctx, kdcl_tensor *w, const kdcl_tensor *g,
                                 kdcl_tensor *v, size_t offset, size_t n, float lr,
                                 float momentum, float weight_decay)
{
    static const char *op = "kdcl_op_sgd_nesterov";
    TRY(need_range(op, "w", w, offset, n));
    TRY(need_range(op, "g", g, offset, n));
    TRY(need_range(op, "v", v, offset, n));
    TRY(kdcl_ops_check_finite(op, "lr", lr));
    TRY(kdcl_ops_check_finite(op, "momentum", momentum));
    TRY(kdcl_ops_check_finite(op, "weight_decay", weight_decay));
    if (n == 0) return KDCL_OK;
    cl_kernel k;
    const char *name = "sgd_nesterov";
    TRY(kdcl_kernel_get(ctx, "optim", name, &k));
    const cl_ulong off64 = offset, n64 = n;
    const karg a[] = {KA(w->buf), KA(g->buf), KA(v->buf),      KA(off64),
                      KA(n64),    KA(lr),     KA(momentum),    KA(weight_decay)};
    TRY(kdcl_ops_set_args(k, name, a, NARGS(a)));
    return kdcl_ops_launch_items(ctx, k, name, n);
}

/* ---- CNN input (cl/augment.cl) ---- */

int kdcl_augment_flip(uint64_t seed, uint64_t step, size_t b)
{
    const uint32_t ctr[4] = {(uint32_t)b, (uint32_t)step, (uint32_t)(step >> 32),
                             KDCL_JITTER_STREAM};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t r[4];
    kdcl_philox4x32(ctr, key, r);
    return (int)(r[2] >> 31);
}

kdcl_status kdcl_op_input_u8(kdcl_ctx *ctx, const kdcl_tensor *src, kdcl_tensor *dst,
                             size_t batch, size_t h, size_t w, size_t c, int max_shift, int flip,
                             uint64_t seed, uint64_t step, const float *scale, const float *shift)
{
    static const char *op = "kdcl_op_input_u8";
    if (c < 1 || c > 4)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: C = %zu channels (1..4 supported)", op,
                              c);
    if (h == 0 || w == 0)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: image size %zux%zux%zu has a zero", op,
                              h, w, c);
    if (max_shift < 0)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: max_shift = %d is negative", op,
                              max_shift);
    size_t per, total;
    if (__builtin_mul_overflow(h, w, &per) || __builtin_mul_overflow(per, c, &per) ||
        __builtin_mul_overflow(per, batch, &total) || total > UINT32_MAX)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "%s: %zu examples of %zux%zux%zu reach 2^32 elements", op, batch,
                              h, w, c);
    TRY(need_examples(op, "src", src, KDCL_U8, batch, per));
    TRY(need_examples(op, "dst", dst, KDCL_F32, batch, per));
    if (!scale || !shift) return kdcl_ops_bad(op, "scale and shift must not be NULL", NULL);
    cl_float4 sc = {{0}}, sh = {{0}};
    for (size_t i = 0; i < c; i++) {
        if (!isfinite(scale[i]) || !isfinite(shift[i]))
            return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                  "%s: scale[%zu] = %g and shift[%zu] = %g must be finite", op, i,
                                  (double)scale[i], i, (double)shift[i]);
        sc.s[i] = scale[i];
        sh.s[i] = shift[i];
    }
    if (total == 0) return KDCL_OK;
    cl_kernel k;
    const char *name = "input_u8";
    TRY(kdcl_kernel_get(ctx, "augment", name, &k));
    const cl_uint tot = (cl_uint)total, hh = (cl_uint)h, ww = (cl_uint)w, cc = (cl_uint)c;
    const cl_int ms = max_shift, fl = flip ? 1 : 0;
    const cl_uint st_lo = (cl_uint)step, st_hi = (cl_uint)(step >> 32);
    const cl_uint sd_lo = (cl_uint)seed, sd_hi = (cl_uint)(seed >> 32);
    const karg a[] = {KA(src->buf), KA(dst->buf), KA(tot),   KA(hh),    KA(ww),
                      KA(cc),       KA(ms),       KA(fl),    KA(st_lo), KA(st_hi),
                      KA(sd_lo),    KA(sd_hi),    KA(sc),    KA(sh)};
    TRY(kdcl_ops_set_args(k, name, a, NARGS(a)));
    return kdcl_ops_launch_items(ctx, k, name, total);
}
