/* Input conversion and augmentation: u8 -> float normalisation and random
 * translation ("jitter"). The per-example shift comes from Philox4x32-10, a
 * copy of the one in elementwise.cl (programs cannot include each other); the
 * host copy is kdcl_philox4x32 / kdcl_jitter_shift in src/core/ops.c. */

#pragma OPENCL FP_CONTRACT OFF

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u
#define JITTER_STREAM 0x6a697474u /* KDCL_JITTER_STREAM */

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

/* dst[i] = src[i] * scale + shift with one rounding (fma). */
__kernel void u8_to_float(__global const uchar *src, __global float *dst, const ulong n,
                          const float scale, const float shift)
{
    const size_t i = get_global_id(0);
    if (i < n) dst[i] = fma((float)src[i], scale, shift);
}

/* One work-item per output element e of the [batch, h, rowlen = w*c] block
 * (total < 2^32). Example b is translated by (dx, dy) pixels; pixels shifted in
 * from outside read as 0 (so become `shift`). */
__kernel void jitter(__global const uchar *src, __global float *dst, const uint total,
                     const uint h, const uint rowlen, const uint c, const int max_shift,
                     const uint step_lo, const uint step_hi, const uint seed_lo,
                     const uint seed_hi, const float scale, const float shift)
{
    const uint e = get_global_id(0);
    if (e >= total) return;
    const uint row = e / rowlen, j = e - row * rowlen;
    const uint b = row / h, y = row - b * h;
    long dx = 0, dy = 0;
    if (max_shift > 0) {
        const uint span = (uint)max_shift * 2u + 1u;
        const uint4 r = philox4x32_10((uint4)(b, step_lo, step_hi, JITTER_STREAM),
                                      (uint2)(seed_lo, seed_hi));
        dx = (long)mul_hi(r.x, span) - max_shift;
        dy = (long)mul_hi(r.y, span) - max_shift;
    }
    const long sy = (long)y - dy, sj = (long)j - dx * (long)c;
    float v = 0.0f;
    if (sy >= 0 && sy < (long)h && sj >= 0 && sj < (long)rowlen)
        v = (float)src[((size_t)b * h + (size_t)sy) * rowlen + (size_t)sj];
    dst[e] = fma(v, scale, shift);
}
