/* Input conversion and augmentation: u8 -> float normalisation, random
 * translation ("jitter"), and the CNN input (u8 HWC -> F32 NCHW with
 * per-channel normalisation, translation and horizontal flip). The per-example shift comes from Philox4x32-10, a
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

/* The Philox block of example b (kdcl_jitter_shift's): word 0 gives dx, word 1
 * dy, bit 31 of word 2 the flip (kdcl_augment_flip). */
uint4 jitter_block(const uint b, const uint step_lo, const uint step_hi, const uint seed_lo,
                   const uint seed_hi)
{
    return philox4x32_10((uint4)(b, step_lo, step_hi, JITTER_STREAM), (uint2)(seed_lo, seed_hi));
}

/* The shift (dx, dy), each uniform on [-m, m], of a block (max_shift = m > 0). */
void jitter_shift(const uint4 r, const int max_shift, long *dx, long *dy)
{
    const uint span = (uint)max_shift * 2u + 1u;
    *dx = (long)mul_hi(r.x, span) - max_shift;
    *dy = (long)mul_hi(r.y, span) - max_shift;
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
    if (max_shift > 0)
        jitter_shift(jitter_block(b, step_lo, step_hi, seed_lo, seed_hi), max_shift, &dx, &dy);
    const long sy = (long)y - dy, sj = (long)j - dx * (long)c;
    float v = 0.0f;
    if (sy >= 0 && sy < (long)h && sj >= 0 && sj < (long)rowlen)
        v = (float)src[((size_t)b * h + (size_t)sy) * rowlen + (size_t)sj];
    dst[e] = fma(v, scale, shift);
}

/* CNN input: one work-item per element e of dst [batch, C, h, w] (total < 2^32,
 * C = 1..4). Example b is translated by (dx, dy) from the same Philox block as
 * jitter and, with flip != 0 and bit 31 of word 2 set, mirrored first:
 *   dst[b, c, y, x] = fma(src[b, sy, sx, c], scale[c], shift[c]),
 *   sy = y - dy, sx = (mirrored ? w - 1 - x : x) - dx,
 * with a raw 0 for (sy, sx) outside the image (fma(0, scale, shift): bit for bit
 * what jitter stores there). scale and shift hold channel c in component c. */
__kernel void input_u8(__global const uchar *src, __global float *dst, const uint total,
                       const uint h, const uint w, const uint C, const int max_shift,
                       const int flip, const uint step_lo, const uint step_hi,
                       const uint seed_lo, const uint seed_hi, const float4 scale,
                       const float4 shift)
{
    const uint e = get_global_id(0);
    if (e >= total) return;
    const uint x = e % w, t = e / w;
    const uint y = t % h, bc = t / h;
    const uint c = bc % C, b = bc / C;
    long dx = 0, dy = 0;
    uint xs = x;
    if (max_shift > 0 || flip) {
        const uint4 r = jitter_block(b, step_lo, step_hi, seed_lo, seed_hi);
        if (max_shift > 0) jitter_shift(r, max_shift, &dx, &dy);
        if (flip && (r.z >> 31)) xs = w - 1u - x;
    }
    const float sc = c == 0 ? scale.x : c == 1 ? scale.y : c == 2 ? scale.z : scale.w;
    const float sh = c == 0 ? shift.x : c == 1 ? shift.y : c == 2 ? shift.z : shift.w;
    const long sy = (long)y - dy, sx = (long)xs - dx;
    float v = 0.0f;
    if (sy >= 0 && sy < (long)h && sx >= 0 && sx < (long)w)
        v = (float)src[(((size_t)b * h + (size_t)sy) * w + (size_t)sx) * C + c];
    dst[e] = fma(v, sc, sh);
}
