/* Elementwise part of a hidden layer: fused bias + ReLU + dropout forward, its
 * backward, and the bias gradient (column sums); axpy and plain ReLU for CNNs
 * (host wrappers in src/core/ops_cnn.c). Dropout randomness is
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

/* Philox4x32-10 on four counters at once, one per lane: lane l of the result
 * words (w0..w3) is philox4x32_10((c0.l, c1.l, c2.l, c3.l), k). */
void philox4x32_10_x4(uint4 c0, uint4 c1, uint4 c2, uint4 c3, uint2 k, uint4 *w0, uint4 *w1,
                      uint4 *w2, uint4 *w3)
{
    for (int r = 0; r < 10; r++) {
        const uint4 hi0 = mul_hi((uint4)PHILOX_M0, c0), lo0 = (uint4)PHILOX_M0 * c0;
        const uint4 hi1 = mul_hi((uint4)PHILOX_M1, c2), lo1 = (uint4)PHILOX_M1 * c2;
        c0 = hi1 ^ c1 ^ (uint4)k.x;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ (uint4)k.y;
        c3 = lo0;
        k += (uint2)(PHILOX_W0, PHILOX_W1);
    }
    *w0 = c0;
    *w1 = c1;
    *w2 = c2;
    *w3 = c3;
}

/* y = dropout(relu(y + bias)) in place, 16 consecutive elements per work-item
 * (element i uses word i % 4 of Philox block i / 4; the work-item's four blocks
 * run in the lanes of uint4 vectors and its elements as float16, so CPU
 * compilers emit SIMD code without having to vectorize across work-items: on
 * PoCL this is 4.8x faster than one block per work-item, bit for bit the same).
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
    const ulong i0 = (ulong)g * 16;
    if (i0 >= n) return;
    uint16 r = (uint16)(0xffffffffu);
    if (thresh) {
        const uint b = (uint)g * 4; /* first block; n < 2^34 is checked on the host */
        uint4 w0, w1, w2, w3;
        philox4x32_10_x4((uint4)(b, b + 1, b + 2, b + 3), (uint4)step_lo, (uint4)step_hi,
                         (uint4)stream, (uint2)(seed_lo, seed_hi), &w0, &w1, &w2, &w3);
        r = (uint16)(w0.x, w1.x, w2.x, w3.x, w0.y, w1.y, w2.y, w3.y, w0.z, w1.z, w2.z, w3.z,
                     w0.w, w1.w, w2.w, w3.w);
    }
    const uint col0 = (uint)(i0 % ncols);
    if (n - i0 >= 16) {
        float16 x = vload16(g, y);
        if (flags & F_BIAS) {
            if (col0 + 16 <= ncols) {
                x += vload16(0, bias + col0);
            } else { /* the 16 elements wrap around a row end */
                float b[16];
                uint c = col0;
                for (int j = 0; j < 16; j++) {
                    b[j] = bias[c];
                    if (++c == ncols) c = 0;
                }
                x += vload16(0, b);
            }
        }
        if (flags & F_RELU) x = select(x, (float16)0.0f, x < 0.0f); /* NaN passes through */
        const int16 keep = (r >> 8) >= (uint16)thresh;
        if (thresh) {
            /* scale_keep(x) lane-wise, then dropped lanes to 0 */
            const float16 s = select(x * scale_hi, fma(x, (float16)scale_hi, x * scale_lo),
                                     isfinite(x));
            x = select((float16)0.0f, s, keep);
        }
        vstore16(x, g, y);
        if (flags & F_MASK) vstore16(convert_uchar16(keep & 1), g, mask);
    } else {
        const uint rr[16] = {r.s0, r.s1, r.s2, r.s3, r.s4, r.s5, r.s6, r.s7,
                             r.s8, r.s9, r.sa, r.sb, r.sc, r.sd, r.se, r.sf};
        uint col = col0;
        for (int j = 0; j < 16 && i0 + j < n; j++) {
            float x = y[i0 + j];
            if (flags & F_BIAS) x += bias[col];
            if (++col == ncols) col = 0;
            if (flags & F_RELU) x = x < 0.0f ? 0.0f : x;
            const uchar keep = (rr[j] >> 8) >= thresh;
            if (thresh) x = keep ? scale_keep(x, scale_hi, scale_lo) : 0.0f;
            y[i0 + j] = x;
            if (flags & F_MASK) mask[i0 + j] = keep;
        }
    }
}

/* dy *= (mask ? mask / (1 - p) : 1) * (relu ? [y_out > 0] : 1), 16 consecutive
 * elements per work-item (float16, so CPU compilers emit SIMD code: 4-5x
 * faster on PoCL than one element per work-item); dropped or inactive units
 * get exactly 0. scale_hi + scale_lo = 1 / (1 - p). */
__kernel void act_dropout_backward(__global float *dy, __global const float *y_out,
                                   __global const uchar *mask, const ulong n, const int flags,
                                   const float scale_hi, const float scale_lo)
{
    const size_t g = get_global_id(0);
    const ulong i0 = (ulong)g * 16;
    if (i0 >= n) return;
    if (n - i0 >= 16) {
        float16 d = vload16(g, dy);
        if (flags & F_MASK) {
            const int16 keep = convert_int16(vload16(g, mask)) != 0;
            const float16 s = select(d * scale_hi, fma(d, (float16)scale_hi, d * scale_lo),
                                     isfinite(d));
            d = select((float16)0.0f, s, keep);
        }
        if (flags & F_RELU) d = select((float16)0.0f, d, vload16(g, y_out) > 0.0f);
        vstore16(d, g, dy);
        return;
    }
    for (ulong i = i0; i < n; i++) {
        float d = dy[i];
        if (flags & F_MASK) d = mask[i] ? scale_keep(d, scale_hi, scale_lo) : 0.0f;
        if ((flags & F_RELU) && !(y_out[i] > 0.0f)) d = 0.0f;
        dy[i] = d;
    }
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

/* y[i] = y[i] + alpha * x[i] for i < n (two roundings; x may be y). */
__kernel void axpy(__global float *y, __global const float *x, const ulong n, const float alpha)
{
    const size_t i = get_global_id(0);
    if (i < n) y[i] = y[i] + alpha * x[i];
}

/* y[i] = a[i] + b[i] for i < n (one rounding; y may be a or b). */
__kernel void add(__global float *y, __global const float *a, __global const float *b,
                  const ulong n)
{
    const size_t i = get_global_id(0);
    if (i < n) y[i] = a[i] + b[i];
}

/* y[i] = max(y[i], 0) for i < n; NaN (and -0) pass through unchanged. */
__kernel void relu(__global float *y, const ulong n)
{
    const size_t i = get_global_id(0);
    if (i >= n) return;
    const float v = y[i];
    if (v < 0.0f) y[i] = 0.0f;
}
