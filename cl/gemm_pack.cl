/* Operand packing for CLBlast's indirect GEMM kernel (src/core/gemm.c).
 * CLBlast runs its Xgemm kernel without copies only when every dimension is a
 * multiple of its tile sizes, the leading dimensions equal the (padded)
 * dimensions and the operands are oriented as the kernel wants; otherwise it
 * pads and transposes them with its own copy kernels, which under PoCL cost
 * about as much as the product itself at the MLP's shapes. These two kernels
 * do that work for kdcl: one pass each, 8x8 blocks per work-item, no local
 * memory and no barriers (PoCL runs a work-group as a plain loop). */

/* dst[r][c] (row-major, P x Q) = op(src)[r][c] for r < rows and c < cols, and
 * 0 in the padding. op(src)[r][c] is src[off + r*ld + c] (trans = 0) or
 * src[off + c*ld + r] (trans = 1). Global size: (ceil(Q/8), ceil(P/8)). */
__kernel void gemm_pack(__global const float *restrict src, const ulong off, const ulong ld,
                        const uint rows, const uint cols, const uint trans,
                        __global float *restrict dst, const uint P, const uint Q)
{
    const uint c0 = (uint)get_global_id(0) * 8u, r0 = (uint)get_global_id(1) * 8u;
    if (r0 >= P || c0 >= Q) return;
    src += off;
    if (r0 + 8u <= rows && c0 + 8u <= cols && r0 + 8u <= P && c0 + 8u <= Q) {
        if (trans) {
            /* eight rows of the source (columns of dst), transposed in registers */
            float8 x0 = vload8(0, src + (size_t)(c0 + 0u) * ld + r0);
            float8 x1 = vload8(0, src + (size_t)(c0 + 1u) * ld + r0);
            float8 x2 = vload8(0, src + (size_t)(c0 + 2u) * ld + r0);
            float8 x3 = vload8(0, src + (size_t)(c0 + 3u) * ld + r0);
            float8 x4 = vload8(0, src + (size_t)(c0 + 4u) * ld + r0);
            float8 x5 = vload8(0, src + (size_t)(c0 + 5u) * ld + r0);
            float8 x6 = vload8(0, src + (size_t)(c0 + 6u) * ld + r0);
            float8 x7 = vload8(0, src + (size_t)(c0 + 7u) * ld + r0);
            __global float *d = dst + (size_t)r0 * Q + c0;
            vstore8((float8)(x0.s0, x1.s0, x2.s0, x3.s0, x4.s0, x5.s0, x6.s0, x7.s0), 0, d);
            vstore8((float8)(x0.s1, x1.s1, x2.s1, x3.s1, x4.s1, x5.s1, x6.s1, x7.s1), 0, d + Q);
            vstore8((float8)(x0.s2, x1.s2, x2.s2, x3.s2, x4.s2, x5.s2, x6.s2, x7.s2), 0,
                    d + 2u * Q);
            vstore8((float8)(x0.s3, x1.s3, x2.s3, x3.s3, x4.s3, x5.s3, x6.s3, x7.s3), 0,
                    d + 3u * Q);
            vstore8((float8)(x0.s4, x1.s4, x2.s4, x3.s4, x4.s4, x5.s4, x6.s4, x7.s4), 0,
                    d + 4u * Q);
            vstore8((float8)(x0.s5, x1.s5, x2.s5, x3.s5, x4.s5, x5.s5, x6.s5, x7.s5), 0,
                    d + 5u * Q);
            vstore8((float8)(x0.s6, x1.s6, x2.s6, x3.s6, x4.s6, x5.s6, x6.s6, x7.s6), 0,
                    d + 6u * Q);
            vstore8((float8)(x0.s7, x1.s7, x2.s7, x3.s7, x4.s7, x5.s7, x6.s7, x7.s7), 0,
                    d + 7u * Q);
        } else {
            for (uint i = 0; i < 8u; i++)
                vstore8(vload8(0, src + (size_t)(r0 + i) * ld + c0), 0,
                        dst + (size_t)(r0 + i) * Q + c0);
        }
        return;
    }
    /* an edge block: element by element, zero outside the source */
    for (uint i = 0; i < 8u; i++) {
        const uint r = r0 + i;
        if (r >= P) break;
        for (uint j = 0; j < 8u; j++) {
            const uint c = c0 + j;
            if (c >= Q) break;
            float v = 0.0f;
            if (r < rows && c < cols)
                v = trans ? src[(size_t)c * ld + r] : src[(size_t)r * ld + c];
            dst[(size_t)r * Q + c] = v;
        }
    }
}

/* dst[off + r*ld + c] = src[r*src_ld + c] + beta * dst[...] for r < rows,
 * c < cols; with beta == 0 dst is not read (a NaN there does not survive, as
 * in BLAS). Global size: (ceil(cols/8), rows). */
__kernel void gemm_unpack(__global const float *restrict src, const uint src_ld, const uint rows,
                          const uint cols, __global float *restrict dst, const ulong off,
                          const ulong ld, const float beta)
{
    const uint c0 = (uint)get_global_id(0) * 8u, r = (uint)get_global_id(1);
    if (r >= rows || c0 >= cols) return;
    __global const float *s = src + (size_t)r * src_ld + c0;
    __global float *d = dst + off + (size_t)r * ld + c0;
    if (c0 + 8u <= cols) {
        float8 v = vload8(0, s);
        if (beta != 0.0f) v += beta * vload8(0, d);
        vstore8(v, 0, d);
        return;
    }
    for (uint j = 0; c0 + j < cols; j++) d[j] = beta != 0.0f ? s[j] + beta * d[j] : s[j];
}
