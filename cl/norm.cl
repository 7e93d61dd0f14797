/* Batch normalisation over x viewed as [B, C, S] (element (b, c, s) at
 * (b*C + c)*S + s; B*C*S < 2^32, checked on the host).
 *
 * Every pass runs over "units": a unit is one channel c, a run of images
 * [b0, b0 + BCH) and a run of positions [s0, s0 + SCH) (s0 = k*SCH), clipped
 * to B and S. For channel c the unit's elements lie in BCH contiguous
 * segments, which a work-item walks with float16 loads (and scalar loads for
 * the last len % 16), so PoCL's kernels stream memory with full-width vectors
 * instead of one element per work-item with an integer division per element
 * (the earlier one-work-item-per-element kernels took 10x longer). Unit u =
 * c*NJ + j, j = jb*NCH + k (jb: the run of images, k: the run of positions);
 * the host derives BCH, SCH, NCH, NJ from (B, C, S) alone.
 *
 * Reductions (no atomics, a fixed order for a given shape): a unit adds its
 * float16 lanes element by element in its segments' order, then folds the 16
 * lanes pairwise (hsum16) and adds the scalar tails in order; the per-unit
 * partials go to part[u], and one work-item per channel adds its NJ partials
 * in ascending j. The variance is the centred second pass over x,
 * sum (x - mean)^2 / n, not E[x^2] - mean^2. */
#pragma OPENCL FP_CONTRACT OFF

float hsum16(const float16 a)
{
    const float8 h = a.lo + a.hi;
    const float4 q = h.lo + h.hi;
    const float2 r = q.lo + q.hi;
    return r.x + r.y;
}

/* The unit's channel c, first image b0, image count nb, first position s0
 * and length len; 0 when u is past the last unit. */
#define UNIT_SETUP                                                                \
    const uint u = (uint)get_global_id(0);                                        \
    if (u >= C * NJ) return;                                                      \
    const uint c = u / NJ, j = u - c * NJ, jb = j / NCH, kk = j - jb * NCH;       \
    const uint b0 = jb * BCH, nb = min(BCH, B - b0), s0 = kk * SCH;               \
    const uint len = min(SCH, S - s0)

/* The segment of image b0 + i: its first element. */
#define SEG(i) (((b0 + (i)) * C + c) * S + s0)

/* part[u] = sum of the unit's x (mode 0) or of (x - mean[c])^2 (mode 1). */
__kernel void bn_part_stats(__global const float *x, __global const float *mean,
                            __global float *part, const uint B, const uint C, const uint S,
                            const uint BCH, const uint SCH, const uint NCH, const uint NJ,
                            const int centred)
{
    UNIT_SETUP;
    const float mu = centred ? mean[c] : 0.0f;
    float16 acc = (float16)(0.0f);
    float t = 0.0f;
    for (uint i = 0; i < nb; i++) {
        __global const float *p = x + SEG(i);
        uint e = 0;
        if (centred) {
            for (; e + 16 <= len; e += 16) {
                const float16 d = vload16(0, p + e) - mu;
                acc += d * d;
            }
            for (; e < len; e++) {
                const float d = p[e] - mu;
                t += d * d;
            }
        } else {
            for (; e + 16 <= len; e += 16) acc += vload16(0, p + e);
            for (; e < len; e++) t += p[e];
        }
    }
    part[u] = hsum16(acc) + t;
}

/* Channel c = global id: s = sum of part[c*NJ + j], j ascending. Mode 0:
 * mean[c] = s * inv_n. Mode 1 (the centred sums): var = s * inv_n, invstd =
 * rsqrt(var + eps) and, with update != 0, the running statistics as PyTorch
 * keeps them:
 *   rmean = (1 - momentum) * rmean + momentum * mean
 *   rvar  = (1 - momentum) * rvar  + momentum * (var * unbias),
 * unbias = n / (n - 1) (1 for n = 1) rounded to float on the host, as is
 * inv_n = 1 / n. */
__kernel void bn_finish_stats(__global const float *part, __global float *mean,
                              __global float *invstd, __global float *rmean,
                              __global float *rvar, const uint C, const uint NJ,
                              const float inv_n, const float eps, const float momentum,
                              const float unbias, const int update, const int centred)
{
    const uint c = (uint)get_global_id(0);
    if (c >= C) return;
    __global const float *p = part + (ulong)c * NJ;
    float s = 0.0f;
    for (uint j = 0; j < NJ; j++) s += p[j];
    if (!centred) {
        mean[c] = s * inv_n;
        return;
    }
    const float var = s * inv_n;
    invstd[c] = rsqrt(var + eps);
    if (update) {
        const float keep = 1.0f - momentum;
        rmean[c] = keep * rmean[c] + momentum * mean[c];
        rvar[c] = keep * rvar[c] + momentum * (var * unbias);
    }
}

/* y = (x - mean[c]) * (gamma[c] * istd) + beta[c] over the unit; istd =
 * stat[c] (training: the invstd bn_finish_stats wrote) or, with eval != 0,
 * rsqrt(stat[c] + eps) (stat the running variance, mean the running mean).
 * y may be x. */
__kernel void bn_apply(__global const float *x, __global float *y, __global const float *gamma,
                       __global const float *beta, __global const float *mean,
                       __global const float *stat, const uint B, const uint C, const uint S,
                       const uint BCH, const uint SCH, const uint NCH, const uint NJ,
                       const float eps, const int eval)
{
    UNIT_SETUP;
    const float istd = eval ? rsqrt(stat[c] + eps) : stat[c];
    const float a = gamma[c] * istd, mu = mean[c], be = beta[c];
    for (uint i = 0; i < nb; i++) {
        const ulong o = SEG(i);
        __global const float *p = x + o;
        __global float *q = y + o;
        uint e = 0;
        for (; e + 16 <= len; e += 16) vstore16((vload16(0, p + e) - mu) * a + be, 0, q + e);
        for (; e < len; e++) q[e] = (p[e] - mu) * a + be;
    }
}

/* part[u] = sum of the unit's dy, part[C*NJ + u] = sum of dy * (x - mean[c]). */
__kernel void bn_part_backward(__global const float *x, __global const float *dy,
                               __global const float *mean, __global float *part, const uint B,
                               const uint C, const uint S, const uint BCH, const uint SCH,
                               const uint NCH, const uint NJ)
{
    UNIT_SETUP;
    const float mu = mean[c];
    float16 ad = (float16)(0.0f), ax = (float16)(0.0f);
    float td = 0.0f, tx = 0.0f;
    for (uint i = 0; i < nb; i++) {
        const ulong o = SEG(i);
        __global const float *p = x + o, *g = dy + o;
        uint e = 0;
        for (; e + 16 <= len; e += 16) {
            const float16 gv = vload16(0, g + e);
            ad += gv;
            ax += gv * (vload16(0, p + e) - mu);
        }
        for (; e < len; e++) {
            const float gs = g[e];
            td += gs;
            tx += gs * (p[e] - mu);
        }
    }
    part[u] = hsum16(ad) + td;
    part[C * NJ + u] = hsum16(ax) + tx;
}

/* Channel c = global id, sums over j ascending as in bn_finish_stats:
 *   dbeta = sum dy,   dgamma = invstd * sum dy * (x - mean)
 * (the latter is sum dy * xhat with xhat = (x - mean) * invstd, scaled once). */
__kernel void bn_finish_backward(__global const float *part, __global const float *invstd,
                                 __global float *dgamma, __global float *dbeta, const uint C,
                                 const uint NJ)
{
    const uint c = (uint)get_global_id(0);
    if (c >= C) return;
    __global const float *pd = part + (ulong)c * NJ, *px = part + (ulong)(C + c) * NJ;
    float sd = 0.0f, sx = 0.0f;
    for (uint j = 0; j < NJ; j++) {
        sd += pd[j];
        sx += px[j];
    }
    dbeta[c] = sd;
    dgamma[c] = sx * invstd[c];
}

/* dx = (gamma * invstd) * ((dy - dbeta * inv_n) - xhat * (dgamma * inv_n)),
 * xhat = (x - mean) * invstd, over the unit: the training-mode input
 * gradient gamma * invstd / n * (n dy - dbeta - xhat dgamma). dx may be dy. */
__kernel void bn_backward_dx(__global const float *x, __global const float *dy,
                             __global const float *gamma, __global const float *mean,
                             __global const float *invstd, __global const float *dgamma,
                             __global const float *dbeta, __global float *dx, const uint B,
                             const uint C, const uint S, const uint BCH, const uint SCH,
                             const uint NCH, const uint NJ, const float inv_n)
{
    UNIT_SETUP;
    const float istd = invstd[c], mu = mean[c];
    const float mb = dbeta[c] * inv_n, mg = dgamma[c] * inv_n, k = gamma[c] * istd;
    for (uint i = 0; i < nb; i++) {
        const ulong o = SEG(i);
        __global const float *p = x + o, *g = dy + o;
        __global float *q = dx + o;
        uint e = 0;
        for (; e + 16 <= len; e += 16) {
            const float16 xh = (vload16(0, p + e) - mu) * istd;
            vstore16(k * ((vload16(0, g + e) - mb) - xh * mg), 0, q + e);
        }
        for (; e < len; e++) {
            const float xh = (p[e] - mu) * istd;
            q[e] = k * ((g[e] - mb) - xh * mg);
        }
    }
}
