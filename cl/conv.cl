/* Data movement of 2-D convolution around kdcl's GEMMs (src/core/gemm.c):
 * im2col, col2im, the NCHW <-> "wide" transposes, the bias and its gradient,
 * and the sum of per-image weight gradients. Every output element is
 * written by one work-item that reads its inputs in a fixed order (no
 * atomics), so results are the same run to run.
 *
 * Column matrices: entry (q, b, p) with q = (c*KH + i)*KW + j (the index of a
 * weight within a row of the [OC, C*KH*KW] weight matrix) and p = oy*OW + ox
 * is at q*sq + b*sb + p. Per image (CLBlast's im2col layout, one [K, OH*OW]
 * matrix per image): sq = OH*OW, sb = K*OH*OW. Wide (one [K, B*OH*OW]
 * matrix for the batch): sq = B*OH*OW, sb = OH*OW. The host keeps every
 * buffer below 2^31 elements. */
#pragma OPENCL FP_CONTRACT OFF

#include "wg_reduce.clh"

/* col(q, b, p) = x[b, c, oy*SH - PH + i, ox*SW - PW + j] (0 outside the
 * input). One work-item per (p, c, b); it writes its KH*KW entries. */
__kernel void conv_im2col(__global const float *x, __global float *col, const uint C,
                          const uint H, const uint W, const uint KH, const uint KW, const uint SH,
                          const uint SW, const uint PH, const uint PW, const uint OH,
                          const uint OW, const ulong col_off, const ulong sq, const ulong sb)
{
    const uint p = get_global_id(0), c = get_global_id(1), b = get_global_id(2);
    if (p >= OH * OW) return;
    col += col_off;
    const uint oy = p / OW, ox = p - oy * OW;
    const int y0 = (int)(oy * SH) - (int)PH, x0 = (int)(ox * SW) - (int)PW;
    __global const float *xp = x + ((ulong)b * C + c) * H * W;
    __global float *cp = col + b * sb + (ulong)c * KH * KW * sq + p;
    for (uint i = 0; i < KH; i++) {
        const int iy = y0 + (int)i;
        const bool in_y = iy >= 0 && iy < (int)H;
        for (uint j = 0; j < KW; j++) {
            const int ix = x0 + (int)j;
            *cp = (in_y && ix >= 0 && ix < (int)W) ? xp[iy * (int)W + ix] : 0.0f;
            cp += sq;
        }
    }
}

/* dx[b, c, iy, ix] = sum of col(q, b, p) over the (output position, kernel
 * tap) pairs that read x[b, c, iy, ix] in the forward, i.e. oy*SH - PH + i = iy
 * and ox*SW - PW + j = ix; oy ascending, then ox ascending. Overwrites dx.
 * One work-item per input element (global W, H, B*C). */
__kernel void conv_col2im(__global const float *col, __global float *dx, const uint C,
                          const uint H, const uint W, const uint KH, const uint KW, const uint SH,
                          const uint SW, const uint PH, const uint PW, const uint OH,
                          const uint OW, const ulong col_off, const ulong sq, const ulong sb)
{
    const uint ix = get_global_id(0), iy = get_global_id(1), bc = get_global_id(2);
    if (ix >= W || iy >= H) return;
    col += col_off;
    const uint b = bc / C, c = bc - b * C;
    const int ty = (int)(iy + PH), tx = (int)(ix + PW);
    /* windows oy with oy*SH <= ty <= oy*SH + KH - 1, inside [0, OH) */
    const int ylo = ty - (int)KH + 1, xlo = tx - (int)KW + 1;
    const int oy0 = ylo > 0 ? (ylo + (int)SH - 1) / (int)SH : 0;
    const int ox0 = xlo > 0 ? (xlo + (int)SW - 1) / (int)SW : 0;
    const int oy1 = min(ty / (int)SH, (int)OH - 1), ox1 = min(tx / (int)SW, (int)OW - 1);
    __global const float *cb = col + b * sb + (ulong)c * KH * KW * sq;
    float s = 0.0f;
    for (int oy = oy0; oy <= oy1; oy++) {
        const int i = ty - oy * (int)SH;
        for (int ox = ox0; ox <= ox1; ox++) {
            const int j = tx - ox * (int)SW;
            s += cb[(ulong)(i * (int)KW + j) * sq + (ulong)(oy * (int)OW + ox)];
        }
    }
    dx[((ulong)bc * H + iy) * W + ix] = s;
}

/* Between NCHW [B, OC, P] and wide [OC, B, P] (P = OH*OW), src and dst
 * starting at the given offsets; global (P, OC, B). to_wide: dst[o, b, p] =
 * src[b, o, p]. Else dst[b, o, p] = src[o, b, p] (+ bias[o] when has_bias). */
__kernel void conv_permute(__global const float *src, const ulong src_off, __global float *dst,
                           const ulong dst_off, __global const float *bias, const uint OC,
                           const uint B, const uint P, const int to_wide, const int has_bias)
{
    const uint p = get_global_id(0), o = get_global_id(1), b = get_global_id(2);
    if (p >= P) return;
    src += src_off;
    dst += dst_off;
    const ulong nchw = ((ulong)b * OC + o) * P + p, wide = ((ulong)o * B + b) * P + p;
    if (to_wide) {
        dst[wide] = src[nchw];
    } else {
        float v = src[wide];
        if (has_bias) v += bias[o];
        dst[nchw] = v;
    }
}

/* y[b, o, p] += bias[o] in place; global (P, OC, B). */
__kernel void conv_bias_add(__global float *y, __global const float *bias, const uint OC,
                            const uint P)
{
    const uint p = get_global_id(0), o = get_global_id(1), b = get_global_id(2);
    if (p >= P) return;
    y[((ulong)b * OC + o) * P + p] += bias[o];
}

/* db[o] = sum over b and p of dy[b, o, p]: one work-group per o; lane l sums
 * the elements n = b*P + p = l, l + lanes, ... in order, then the lanes are
 * added pairwise (wg_sum): a fixed order for a given group size. */
__kernel void conv_bias_grad(__global const float *dy, __global float *db, const uint B,
                             const uint OC, const uint P, __local float *sv)
{
    const uint o = get_group_id(0), l = get_local_id(0), lanes = get_local_size(0);
    const uint n = B * P;
    float s = 0.0f;
    for (uint e = l; e < n; e += lanes) {
        const uint b = e / P, p = e - b * P;
        s += dy[((ulong)b * OC + o) * P + p];
    }
    s = wg_sum(sv, s);
    if (l == 0) db[o] = s;
}

/* dw[i] = sum over b (ascending) of part[part_off + b*n + i]; one work-item per i. */
__kernel void conv_sum_batches(__global const float *part, const ulong part_off,
                               __global float *dw, const uint n, const uint B)
{
    part += part_off;
    const uint i = get_global_id(0);
    if (i >= n) return;
    float s = 0.0f;
    for (uint b = 0; b < B; b++) s += part[(ulong)b * n + i];
    dw[i] = s;
}
