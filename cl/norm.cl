/* Batch normalisation over x viewed as [B, C, S] (element (b, c, s) at
 * (b*C + c)*S + s; B*C*S < 2^32, checked on the host).
 *
 * The per-channel reductions run one work-group per channel (the local size a
 * power of two <= B*S): work-item l sums the channel's elements l, l + L,
 * l + 2L, ... (in the flattened (b, s) order) sequentially, then wg_sum adds
 * the partials in its fixed pairwise order. No atomics: the result depends
 * only on the data and the local size, which the host derives from the device
 * and B*S, so it is reproducible run to run. The variance is the centred
 * second pass sum (x - mean)^2 / n, not E[x^2] - mean^2.
 *
 * The elementwise parts (normalise, dx) run one work-item per element. */
#pragma OPENCL FP_CONTRACT OFF

#include "wg_reduce.clh"

/* The work-item's elements of channel c: *count of them, the first at flattened
 * position lid (b = lid / S, s = lid % S); the next is L further on, i.e.
 * b += L / S, s += L % S with a carry. */
#define CHANNEL_LOOP(body)                                                        \
    do {                                                                          \
        const uint db_ = L / S, ds_ = L - db_ * S;                                \
        uint b_ = lid / S, s_ = lid - b_ * S;                                     \
        const uint cnt_ = lid < n ? (n - lid - 1) / L + 1 : 0;                    \
        for (uint k_ = 0; k_ < cnt_; k_++) {                                      \
            const uint e = (b_ * C + c) * S + s_;                                 \
            body;                                                                 \
            b_ += db_;                                                            \
            s_ += ds_;                                                            \
            if (s_ >= S) {                                                        \
                s_ -= S;                                                          \
                b_++;                                                             \
            }                                                                     \
        }                                                                         \
    } while (0)

/* Training statistics of channel c = group id: mean = sum x * inv_n,
 * var = sum (x - mean)^2 * inv_n (biased), invstd = rsqrt(var + eps). With
 * update != 0 the running statistics follow PyTorch:
 *   rmean = (1 - momentum) * rmean + momentum * mean
 *   rvar  = (1 - momentum) * rvar  + momentum * (var * unbias),
 * unbias = n / (n - 1) (1 for n = 1) rounded to float on the host, as is
 * inv_n = 1 / n. sv: one float per work-item. */
__kernel void bn_stats(__global const float *x, __global float *mean, __global float *invstd,
                       __global float *rmean, __global float *rvar, const uint B, const uint C,
                       const uint S, const float inv_n, const float eps, const float momentum,
                       const float unbias, const int update, __local float *sv)
{
    const uint c = (uint)get_group_id(0), lid = (uint)get_local_id(0);
    const uint L = (uint)get_local_size(0), n = B * S;
    float s1 = 0.0f;
    CHANNEL_LOOP(s1 += x[e]);
    const float mu = wg_sum(sv, s1) * inv_n;
    float s2 = 0.0f;
    CHANNEL_LOOP({
        const float d = x[e] - mu;
        s2 += d * d;
    });
    const float var = wg_sum(sv, s2) * inv_n;
    if (lid == 0) {
        mean[c] = mu;
        invstd[c] = rsqrt(var + eps);
        if (update) {
            const float keep = 1.0f - momentum;
            rmean[c] = keep * rmean[c] + momentum * mu;
            rvar[c] = keep * rvar[c] + momentum * (var * unbias);
        }
    }
}

/* y = (x - mean[c]) * (gamma[c] * istd) + beta[c] per element (total of them),
 * c = (e / S) % C; istd = stat[c] (training: the invstd bn_stats wrote) or,
 * with eval != 0, rsqrt(stat[c] + eps) (stat the running variance, mean the
 * running mean). y may be x. */
__kernel void bn_apply(__global const float *x, __global float *y, __global const float *gamma,
                       __global const float *beta, __global const float *mean,
                       __global const float *stat, const uint total, const uint S, const uint C,
                       const float eps, const int eval)
{
    const uint e = (uint)get_global_id(0);
    if (e >= total) return;
    const uint c = (e / S) % C;
    const float istd = eval ? rsqrt(stat[c] + eps) : stat[c];
    const float a = gamma[c] * istd;
    y[e] = (x[e] - mean[c]) * a + beta[c];
}

/* Parameter gradients of channel c = group id:
 *   dbeta = sum dy,   dgamma = invstd * sum dy * (x - mean)
 * (the latter is sum dy * xhat with xhat = (x - mean) * invstd, scaled once).
 * sv: one float per work-item. */
__kernel void bn_backward_reduce(__global const float *x, __global const float *dy,
                                 __global const float *mean, __global const float *invstd,
                                 __global float *dgamma, __global float *dbeta, const uint B,
                                 const uint C, const uint S, __local float *sv)
{
    const uint c = (uint)get_group_id(0), lid = (uint)get_local_id(0);
    const uint L = (uint)get_local_size(0), n = B * S;
    const float mu = mean[c];
    float sd = 0.0f, sdx = 0.0f;
    CHANNEL_LOOP({
        const float g = dy[e];
        sd += g;
        sdx += g * (x[e] - mu);
    });
    const float tb = wg_sum(sv, sd);
    const float tg = wg_sum(sv, sdx);
    if (lid == 0) {
        dbeta[c] = tb;
        dgamma[c] = tg * invstd[c];
    }
}

/* dx = (gamma * invstd) * ((dy - dbeta * inv_n) - xhat * (dgamma * inv_n)),
 * xhat = (x - mean) * invstd: the training-mode input gradient
 * gamma * invstd / n * (n dy - dbeta - xhat dgamma). dx may be dy. */
__kernel void bn_backward_dx(__global const float *x, __global const float *dy,
                             __global const float *gamma, __global const float *mean,
                             __global const float *invstd, __global const float *dgamma,
                             __global const float *dbeta, __global float *dx, const uint total,
                             const uint S, const uint C, const float inv_n)
{
    const uint e = (uint)get_global_id(0);
    if (e >= total) return;
    const uint c = (e / S) % C;
    const float istd = invstd[c];
    const float xhat = (x[e] - mean[c]) * istd;
    const float mb = dbeta[c] * inv_n, mg = dgamma[c] * inv_n;
    dx[e] = (gamma[c] * istd) * ((dy[e] - mb) - xhat * mg);
}
