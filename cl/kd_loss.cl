/* Distillation losses (Hinton et al. 2015, section 2; Caruana-style logit
 * matching) fused into one kernel per row, and ensemble soft-target
 * accumulation. Plain OpenCL C 1.2.
 *
 * Layout: student logits z and targets t are row-major [B, K]; labels I32 [B].
 *   *_wg    one work-group per row (global = B * lws, local = lws a power of
 *           two); each work-item walks k = lid, lid + lws, ..., the group
 *           reduces in local memory in a fixed tree (deterministic). K > 32.
 *   *_row1  one work-item per row (global >= B, extra items exit). K <= 32.
 *
 * Per row (T > 0, invT = fl(1/T)):
 *   KL mode:  q = softmax(z/T), p = softmax(t/T) (t logits) or p = t (probs)
 *             L  = cl * sum_k p_k (log p_k - log q_k) + alpha * CE(softmax(z), y)
 *             dz = g * (cg * (q_k - p_k) + alpha * (softmax(z)_k - [k == y]))
 *             with cl = (1 - alpha) T^2, cg = (1 - alpha) T (from the host).
 *   MSE mode: L  = cl * sum_k (z_k - t_k)^2 + alpha * CE, cl = (1 - alpha) / 2
 *             dz = g * (cg * (z_k - t_k) + alpha * (...)),   cg = 1 - alpha
 * The soft part is skipped entirely when alpha == 1 and the hard part when
 * alpha == 0 (flags), so alpha = 1 reproduces the cross-entropy kernel and
 * alpha = 0 never reads the labels.
 *
 * Stability: as in softmax.cl, every exponential is exp(x_k - m) with m the
 * row max of x = z * invT (m = max(z) * invT, bit-equal to max_k x_k since
 * rounding is monotone), so arguments are <= 0 and each sum is >= 1. log q and
 * (for logit targets) log p are (x_k - m) - log(s), never log(exp(..)), so
 * they stay finite when q underflows; a term with p_k == 0 contributes 0
 * (0 log 0 = 0). Student and teacher go through the same code, so p == q gives
 * bitwise-equal logs and KL exactly 0. FP_CONTRACT is off so x_k - m is exactly
 * 0 at the max on every device.
 */
#pragma OPENCL FP_CONTRACT OFF

/* Flags (keep in sync with src/core/ops_kd.c). */
#define KD_LOSS 1     /* write loss[b] */
#define KD_DZ 2       /* write dz[b, :] */
#define KD_ERR 4      /* errors[0] += argmax(z_b) != y_b */
#define KD_SOFT 8     /* alpha < 1: the distillation term */
#define KD_HARD 16    /* alpha > 0: the cross-entropy term (reads labels) */
#define KD_TLOGITS 32 /* targets are teacher logits */
#define KD_MSE 64     /* logit matching instead of KL */

/* ---- work-group reductions (every work-item of the group must call) ---- */

#include "wg_reduce.clh"

/* Group-wide (max value, first index of it) of the pairs (v, i), and at the
 * same time the max of w: sv, sw hold n floats, si n ints. */
void wg_argmax_max(__local float *sv, __local int *si, __local float *sw, float v, int i,
                   float w, float *ov, int *oi, float *ow)
{
    const uint lid = (uint)get_local_id(0), n = (uint)get_local_size(0);
    sv[lid] = v;
    si[lid] = i;
    sw[lid] = w;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint s = n >> 1; s > 0; s >>= 1) {
        if (lid < s) {
            const float v2 = sv[lid + s];
            const int i2 = si[lid + s];
            if (v2 > sv[lid] || (v2 == sv[lid] && i2 < si[lid])) {
                sv[lid] = v2;
                si[lid] = i2;
            }
            sw[lid] = fmax(sw[lid], sw[lid + s]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    *ov = sv[0];
    *oi = si[0];
    *ow = sw[0];
    barrier(CLK_LOCAL_MEM_FENCE);
}

/* Three group-wide sums at once (sv holds 3n floats), each in the fixed
 * pairwise order of wg_sum. */
void wg_sum3(__local float *sv, float a, float b, float c, float *oa, float *ob, float *oc)
{
    const uint lid = (uint)get_local_id(0), n = (uint)get_local_size(0);
    sv[lid] = a;
    sv[n + lid] = b;
    sv[2 * n + lid] = c;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint s = n >> 1; s > 0; s >>= 1) {
        if (lid < s) {
            sv[lid] += sv[lid + s];
            sv[n + lid] += sv[n + lid + s];
            sv[2 * n + lid] += sv[2 * n + lid + s];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    *oa = sv[0];
    *ob = sv[n];
    *oc = sv[2 * n];
    barrier(CLK_LOCAL_MEM_FENCE);
}

/* ---- fused distillation loss ---- */

/* Loss contribution of column k to the soft sum (see the header comment). */
float soft_term(float zk, float tk, float invT, float mq, float lsq, float mp, float sp,
                float lsp, int flags)
{
    if (flags & KD_MSE) {
        const float d = zk - tk;
        return d * d;
    }
    const float lq = (zk * invT - mq) - lsq;
    if (flags & KD_TLOGITS) {
        const float dp = tk * invT - mp;
        const float p = fmin(exp(dp) / sp, 1.0f);
        return p * ((dp - lsp) - lq);
    }
    /* 0 log 0 = 0; a denormal p (< FLT_MIN, contributing < 1e-33) is dropped too,
     * since devices that flush denormals would take log(0) = -inf */
    return fabs(tk) >= FLT_MIN ? tk * (log(tk) - lq) : 0.0f;
}

/* Gradient of the row's loss w.r.t. z_k before grad_scale. */
float grad_term(float zk, float tk, int k, int y, float invT, float mq, float sq, float mp,
                float sp, float mz, float s1, float cg, float alpha, int flags)
{
    float r = 0.0f;
    if (flags & KD_SOFT) {
        if (flags & KD_MSE) {
            r = cg * (zk - tk);
        } else {
            const float q = fmin(exp(zk * invT - mq) / sq, 1.0f);
            const float p = (flags & KD_TLOGITS) ? fmin(exp(tk * invT - mp) / sp, 1.0f) : tk;
            r = cg * (q - p);
        }
    }
    if (flags & KD_HARD) {
        const float s = fmin(exp(zk - mz) / s1, 1.0f);
        r += alpha * (s - (k == y ? 1.0f : 0.0f));
    }
    return r;
}

/* Args: z, t [B, K]; labels [B] (NULL unless KD_HARD or KD_ERR); loss [B],
 * dz [B, K] (may be z: every read of z precedes the global barrier before the
 * dz writes), errors [1] (each NULL unless flagged); cl, cg the soft
 * coefficients above; g = grad_scale. A label outside [0, K) gives a NaN loss
 * and dz row when KD_HARD is set (never an out-of-bounds read) and counts as
 * an error. Local scratch: sv 3 * lws floats, si lws ints.
 * Every barrier is reached unconditionally (unneeded reductions run on zeros):
 * barriers under flag-dependent branches are legal but make some compilers
 * (PoCL's work-group loop generation) replicate code exponentially. */
__kernel void kd_loss_wg(__global const float *z, __global const float *t,
                         __global const int *labels, __global float *loss, __global float *dz,
                         __global int *errors, const uint K, const float invT, const float cl,
                         const float cg, const float alpha, const float g, const int flags,
                         __local float *sv, __local int *si)
{
    const size_t row = get_group_id(0);
    const uint lid = (uint)get_local_id(0), n = (uint)get_local_size(0);
    __global const float *zr = z + row * K;
    __global const float *tr = t + row * K;
    const int kl = (flags & KD_SOFT) && !(flags & KD_MSE);
    const int tlog = kl && (flags & KD_TLOGITS);

    /* row max of z with its first index; row max of the teacher logits */
    float mz = -INFINITY, mt = -INFINITY;
    int arg = INT_MAX;
    for (uint k = lid; k < K; k += n) {
        const float v = zr[k];
        if (v > mz || arg == INT_MAX) {
            mz = v;
            arg = (int)k;
        }
        if (tlog) mt = fmax(mt, tr[k]);
    }
    wg_argmax_max(sv, si, sv + n, mz, arg, mt, &mz, &arg, &mt);

    int y = -1, valid = 0;
    if (flags & (KD_HARD | KD_ERR)) {
        y = labels[row];
        valid = y >= 0 && (uint)y < K;
    }
    const float zy = ((flags & KD_HARD) && valid) ? zr[y] : NAN;

    /* student at T, student at 1, teacher at T: sums of exp(x - max) >= 1 */
    const float mq = mz * invT, mp = tlog ? mt * invT : 0.0f;
    float aq = 0.0f, a1 = 0.0f, ap = 0.0f;
    for (uint k = lid; k < K; k += n) {
        if (kl) aq += exp(zr[k] * invT - mq);
        if (flags & KD_HARD) a1 += exp(zr[k] - mz);
        if (tlog) ap += exp(tr[k] * invT - mp);
    }
    float sq, s1, sp;
    wg_sum3(sv, aq, a1, ap, &sq, &s1, &sp);
    if (!kl) sq = 1.0f;
    if (!(flags & KD_HARD)) s1 = 1.0f;
    if (!tlog) sp = 1.0f;
    const float lsq = log(sq), lsp = log(sp);

    float a = 0.0f;
    if ((flags & KD_LOSS) && (flags & KD_SOFT))
        for (uint k = lid; k < K; k += n)
            a += soft_term(zr[k], tr[k], invT, mq, lsq, mp, sp, lsp, flags);
    a = wg_sum(sv, a);
    if (lid == 0) {
        if (flags & KD_LOSS) {
            float L = (flags & KD_SOFT) ? cl * a : 0.0f;
            if (flags & KD_HARD) L += alpha * (valid ? log(s1) - (zy - mz) : NAN);
            loss[row] = L;
        }
        if ((flags & KD_ERR) && arg != y) atomic_inc(errors);
    }
    barrier(CLK_GLOBAL_MEM_FENCE); /* all reads of z (zy!) before any dz write */
    if (flags & KD_DZ) {
        __global float *drow = dz + row * K;
        for (uint k = lid; k < K; k += n) {
            const float r = grad_term(zr[k], tr[k], (int)k, y, invT, mq, sq, mp, sp, mz, s1, cg,
                                      alpha, flags);
            drow[k] = ((flags & KD_HARD) && !valid) ? NAN : g * r;
        }
    }
}

__kernel void kd_loss_row1(__global const float *z, __global const float *t,
                           __global const int *labels, __global float *loss, __global float *dz,
                           __global int *errors, const uint B, const uint K, const float invT,
                           const float cl, const float cg, const float alpha, const float g,
                           const int flags)
{
    const size_t row = get_global_id(0);
    if (row >= B) return;
    __global const float *zr = z + row * K;
    __global const float *tr = t + row * K;
    const int kl = (flags & KD_SOFT) && !(flags & KD_MSE);

    float mz = zr[0];
    int arg = 0;
    for (uint k = 1; k < K; k++)
        if (zr[k] > mz) {
            mz = zr[k];
            arg = (int)k;
        }
    int y = -1, valid = 0;
    if (flags & (KD_HARD | KD_ERR)) {
        y = labels[row];
        valid = y >= 0 && (uint)y < K;
    }
    const float zy = ((flags & KD_HARD) && valid) ? zr[y] : NAN;

    const float mq = mz * invT;
    float sq = 1.0f, s1 = 1.0f, mp = 0.0f, sp = 1.0f;
    if (kl) {
        sq = 0.0f;
        for (uint k = 0; k < K; k++) sq += exp(zr[k] * invT - mq);
    }
    if (flags & KD_HARD) {
        s1 = 0.0f;
        for (uint k = 0; k < K; k++) s1 += exp(zr[k] - mz);
    }
    if (kl && (flags & KD_TLOGITS)) {
        float m = tr[0];
        for (uint k = 1; k < K; k++) m = fmax(m, tr[k]);
        mp = m * invT;
        sp = 0.0f;
        for (uint k = 0; k < K; k++) sp += exp(tr[k] * invT - mp);
    }
    const float lsq = log(sq), lsp = log(sp);

    if (flags & KD_LOSS) {
        float L = 0.0f;
        if (flags & KD_SOFT) {
            float a = 0.0f;
            for (uint k = 0; k < K; k++)
                a += soft_term(zr[k], tr[k], invT, mq, lsq, mp, sp, lsp, flags);
            L = cl * a;
        }
        if (flags & KD_HARD) L += alpha * (valid ? log(s1) - (zy - mz) : NAN);
        loss[row] = L;
    }
    if ((flags & KD_ERR) && arg != y) atomic_inc(errors);
    if (flags & KD_DZ) {
        __global float *drow = dz + row * K; /* may be zr: column k is read before written */
        for (uint k = 0; k < K; k++) {
            const float r = grad_term(zr[k], tr[k], (int)k, y, invT, mq, sq, mp, sp, mz, s1, cg,
                                      alpha, flags);
            drow[k] = ((flags & KD_HARD) && !valid) ? NAN : g * r;
        }
    }
}

/* ---- ensemble soft targets: acc = beta * acc + w * f(v) ----
 * f = softmax(v * invT) (probability averaging; same stable form as above) or
 * f = c * v with c = w / T folded in by the host (logit averaging). beta == 0
 * overwrites without reading acc (it may hold garbage, even NaN). */

__kernel void ens_prob_wg(__global const float *v, __global float *acc, const uint K,
                          const float invT, const float w, const float beta, __local float *sv)
{
    const size_t row = get_group_id(0);
    const uint lid = (uint)get_local_id(0), n = (uint)get_local_size(0);
    __global const float *vr = v + row * K;
    __global float *ar = acc + row * K;
    float m = -INFINITY;
    for (uint k = lid; k < K; k += n) m = fmax(m, vr[k]);
    m = wg_max(sv, m) * invT;
    float s = 0.0f;
    for (uint k = lid; k < K; k += n) s += exp(vr[k] * invT - m);
    s = wg_sum(sv, s);
    for (uint k = lid; k < K; k += n) {
        const float add = w * fmin(exp(vr[k] * invT - m) / s, 1.0f);
        ar[k] = beta != 0.0f ? beta * ar[k] + add : add;
    }
}

__kernel void ens_prob_row1(__global const float *v, __global float *acc, const uint B,
                            const uint K, const float invT, const float w, const float beta)
{
    const size_t row = get_global_id(0);
    if (row >= B) return;
    __global const float *vr = v + row * K;
    __global float *ar = acc + row * K;
    float m = vr[0];
    for (uint k = 1; k < K; k++) m = fmax(m, vr[k]);
    m *= invT;
    float s = 0.0f;
    for (uint k = 0; k < K; k++) s += exp(vr[k] * invT - m);
    for (uint k = 0; k < K; k++) {
        const float add = w * fmin(exp(vr[k] * invT - m) / s, 1.0f);
        ar[k] = beta != 0.0f ? beta * ar[k] + add : add;
    }
}

__kernel void ens_logit(__global const float *v, __global float *acc, const uint n,
                        const float c, const float beta)
{
    const size_t i = get_global_id(0);
    if (i >= n) return;
    const float add = c * v[i];
    acc[i] = beta != 0.0f ? beta * acc[i] + add : add;
}
