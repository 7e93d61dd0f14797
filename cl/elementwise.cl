/* Elementwise part of a hidden layer: fused bias + ReLU + dropout forward, its
 * backward, and the bias gradient (column sums). Dropout randomness is
 * Philox4x32-10, a pure function of (seed, step, stream, element index), so
 * masks do not depend on the work-group size or the device; the host copy in
 * src/core/ops.c (kdcl_philox4x32) must stay identical to the one here. */
#pragma OPENCL FP_CONTRACT OFF

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

/* Philox4x32-10 (Salmon et al., SC'11; Random123): counter c, key k. */
uint4 philox4x32_10(uint4 c, uint2 k)
{
    for (int r = 0; r < 10; r++) {
        const uint hi0 = mul_hi(PHILOX_M0, c.x), lo0 = PHILOX_M0 * c.x;
        const uint hi1 = mul_hi(PHILOX_M1, c.z), lo1 = PHILOX_M1 * c.z;
        c = (uint4)(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
        k += (uint2)(PHILOX_W0, PHILOX_W1);
    }
    return c;
}

#define F_BIAS 1
#define F_RELU 2
#define F_MASK 4

/* x / (1 - p) given S = 1 / (1 - p) as hi + lo (hi = float(S)): one rounding of
 * x * S up to ~2^-48 relative, i.e. within 0.5 ulp + tiny of exact. */
float scale_keep(const float x, const float hi, const float lo)
{
    return isfinite(x) ? fma(x, hi, x * lo) : x * hi;
}

/* y = dropout(relu(y + bias)) in place, 4 consecutive elements per work-item
 * (one Philox block: element i uses word i % 4 of block i / 4).
 * thresh == 0: no dropout (scale ignored). Keep iff (r >> 8) >= thresh; kept
 * values are scaled by scale_hi + scale_lo = 1 / (1 - p).
 * flags: F_BIAS (bias valid), F_RELU, F_MASK (write the keep mask). */
__kernel void bias_act_dropout(__global float *y, __global const float *bias,
                               __global uchar *mask, const ulong n, const uint ncols,
                               const int flags, const uint thresh, const float scale_hi,
                               const float scale_lo,
                               const uint step_lo, const uint step_hi, const uint stream,
                               const uint seed_lo, const uint seed_hi)
{
    const size_t g = get_global_id(0);
    const ulong i0 = (ulong)g * 4;
    if (i0 >= n) return;
    const int full = n - i0 >= 4;
    uint4 r = (uint4)(0xffffffffu);
    if (thresh) r = philox4x32_10((uint4)((uint)g, step_lo, step_hi, stream), (uint2)(seed_lo, seed_hi));
    const uint rr[4] = {r.x, r.y, r.z, r.w};
    float v[4];
    if (full) {
        const float4 t = vload4(g, y);
        v[0] = t.x; v[1] = t.y; v[2] = t.z; v[3] = t.w;
    } else {
        for (int j = 0; j < 4; j++) v[j] = i0 + j < n ? y[i0 + j] : 0.0f;
    }
    uint col = (uint)(i0 % ncols);
    uchar keep[4];
#pragma unroll
    for (int j = 0; j < 4; j++) {
        float x = v[j];
        if (flags & F_BIAS) x += bias[col];
        if (++col == ncols) col = 0;
        if (flags & F_RELU) x = x < 0.0f ? 0.0f : x; /* NaN passes through */
        keep[j] = (rr[j] >> 8) >= thresh;
        if (thresh) x = keep[j] ? scale_keep(x, scale_hi, scale_lo) : 0.0f;
        v[j] = x;
    }
    if (full) {
        vstore4((float4)(v[0], v[1], v[2], v[3]), g, y);
        if (flags & F_MASK) vstore4((uchar4)(keep[0], keep[1], keep[2], keep[3]), g, mask);
    } else {
        for (int j = 0; j < 4; j++)
            if (i0 + j < n) {
                y[i0 + j] = v[j];
                if (flags & F_MASK) mask[i0 + j] = keep[j];
            }
    }
}

/* dy *= (mask ? mask / (1 - p) : 1) * (relu ? [y_out > 0] : 1), one element per
 * work-item; dropped or inactive units get exactly 0. scale_hi + scale_lo = 1 / (1 - p). */
__kernel void act_dropout_backward(__global float *dy, __global const float *y_out,
                                   __global const uchar *mask, const ulong n, const int flags,
                                   const float scale_hi, const float scale_lo)
{
    const size_t i = get_global_id(0);
    if (i >= n) return;
    float d = dy[i];
    if (flags & F_MASK) d = mask[i] ? scale_keep(d, scale_hi, scale_lo) : 0.0f;
    if ((flags & F_RELU) && !(y_out[i] > 0.0f)) d = 0.0f;
    dy[i] = d;
}

/* db[col] = beta * db[col] + scale * sum_r dy[r, col]. Work-group: get_local_size(0)
 * consecutive columns (coalesced) x get_local_size(1) row lanes; lane l sums rows
 * l, l + lanes, ... in order, then lane 0 adds the lanes in order: a fixed,
 * launch-independent summation order for a given lane count. One group in dim 1. */
__kernel void bias_grad(__global const float *dy, __global float *db, const ulong rows,
                        const uint cols, const float scale, const float beta,
                        __local float *part)
{
    const uint lx = get_local_id(0), ly = get_local_id(1);
    const uint tx = get_local_size(0), ty = get_local_size(1);
    const size_t col = get_global_id(0);
    float s = 0.0f;
    if (col < cols)
        for (ulong r = ly; r < rows; r += ty) s += dy[r * cols + col];
    part[ly * tx + lx] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (ly == 0 && col < cols) {
        float t = 0.0f;
        for (uint k = 0; k < ty; k++) t += part[k * tx + lx];
        db[col] = beta == 0.0f ? scale * t : beta * db[col] + scale * t;
    }
}

/* Raw Philox blocks, for checking the device implementation against the host
 * one: in holds n records {ctr0..3, key0, key1}, out gets n records of 4 words. */
__kernel void philox_raw(__global const uint *in, __global uint *out, const uint n)
{
    const size_t i = get_global_id(0);
    if (i >= n) return;
    __global const uint *p = in + 6 * i;
    const uint4 r = philox4x32_10((uint4)(p[0], p[1], p[2], p[3]), (uint2)(p[4], p[5]));
    vstore4(r, i, out);
}
