/* Data movement of 2-D convolution around kdcl's GEMMs (src/core/gemm.c):
 * im2col, col2im, the NCHW <-> "wide" and per-image transposes, the bias and
 * its gradient, and the sum of per-image weight gradients. Every output
 * element is written by one work-item that reads its inputs in a fixed order
 * (no atomics), so results are the same run to run.
 *
 * Column matrices: entry (q, b, p) with q = (c*KH + i)*KW + j (the index of a
 * weight within a row of the [OC, C*KH*KW] weight matrix) and p = oy*OW + ox
 * is at q*sq + b*sb + p*sp. Per image (CLBlast's im2col layout, one [K, OH*OW]
 * matrix per image): sq = OH*OW, sb = K*OH*OW, sp = 1. Wide (one [K, B*OH*OW]
 * matrix for the batch): sq = B*OH*OW, sb = OH*OW, sp = 1. Per image
 * transposed (one [OH*OW, K] matrix per image, for the weight gradient):
 * sq = 1, sb = K*OH*OW, sp = K. The host keeps every buffer below 2^31
 * elements. */
#pragma OPENCL FP_CONTRACT OFF

#include "wg_reduce.clh"

/* The output columns ox in [*lo, *hi) whose tap j reads inside the row,
 * 0 <= ox*S - P + j < n (ox < O); *lo <= *hi. */
void tap_range(const uint n, const uint S, const uint P, const uint j, const uint O,
               uint *lo, uint *hi)
{
    const int first = (int)P - (int)j; /* ox*S >= first */
    const int last = (int)n - 1 + (int)P - (int)j; /* ox*S <= last */
    uint l = first > 0 ? ((uint)first + S - 1) / S : 0u;
    uint h = last >= 0 ? min((uint)last / S + 1u, O) : 0u;
    *lo = min(l, O);
    *hi = max(h, *lo);
}

/* col(q, b, p) = x[b, c, oy*SH - PH + i, ox*SW - PW + j] (0 outside the
 * input). One work-item per output row (oy, c, b) (global OH, C, B): for
 * each tap (i, j) it writes the row's OW entries of column row q as zeros,
 * a run of input values (contiguous when SW = 1), zeros; the bounds come
 * from one division per tap, not per element. */
__kernel void conv_im2col(__global const float *x, __global float *col, const uint C,
                          const uint H, const uint W, const uint KH, const uint KW, const uint SH,
                          const uint SW, const uint PH, const uint PW, const uint OH,
                          const uint OW, const ulong col_off, const ulong sq, const ulong sb,
                          const uint sp)
{
    const uint oy = get_global_id(0), c = get_global_id(1), b = get_global_id(2);
    if (oy >= OH) return;
    col += col_off;
    __global const float *xp = x + ((ulong)b * C + c) * H * W;
    __global float *cp = col + b * sb + (ulong)c * KH * KW * sq + (ulong)oy * OW * sp;
    for (uint i = 0; i < KH; i++) {
        const int iy = (int)(oy * SH + i) - (int)PH;
        const bool in_y = iy >= 0 && iy < (int)H;
        __global const float *xr = xp + (in_y ? iy : 0) * (int)W;
        for (uint j = 0; j < KW; j++, cp += sq) {
            uint lo = 0, hi = 0;
            if (in_y) tap_range(W, SW, PW, j, OW, &lo, &hi);
            uint ox = 0;
            if (sp == 1 && SW == 1) { /* contiguous on both sides */
                __global const float *src = xr + (lo - PW + j);
                for (; ox < lo; ox++) cp[ox] = 0.0f;
                for (; ox < hi; ox++) cp[ox] = src[ox - lo];
                for (; ox < OW; ox++) cp[ox] = 0.0f;
            } else {
                for (; ox < lo; ox++) cp[ox * sp] = 0.0f;
                for (; ox < hi; ox++) cp[ox * sp] = xr[ox * SW - PW + j];
                for (; ox < OW; ox++) cp[ox * sp] = 0.0f;
            }
        }
    }
}

/* The same columns for the layouts whose positions are contiguous (sp = 1:
 * per image and wide), one work-item per kernel tap t = i*KW + j, channel c
 * and image b (global KH*KW, C, B): it writes the OH*OW entries of column
 * row q = c*KH*KW + t for image b in order, one run of the input row per
 * output row, with the tap's bounds computed once. conv_im2col's work-item
 * writes OW entries into each of KH*KW rows instead, short runs when OW is
 * small (LeNet-5's second convolution: 10). */
__kernel void conv_im2col_taps(__global const float *x, __global float *col, const uint C,
                               const uint H, const uint W, const uint KH, const uint KW,
                               const uint SH, const uint SW, const uint PH, const uint PW,
                               const uint OH, const uint OW, const ulong col_off,
                               const ulong sq, const ulong sb)
{
    const uint t = get_global_id(0), c = get_global_id(1), b = get_global_id(2);
    if (t >= KH * KW) return;
    const uint i = t / KW, j = t - i * KW;
    uint lo, hi;
    tap_range(W, SW, PW, j, OW, &lo, &hi);
    __global const float *xp = x + ((ulong)b * C + c) * H * W;
    __global float *cp = col + col_off + ((ulong)c * KH * KW + t) * sq + b * sb;
    for (uint oy = 0; oy < OH; oy++, cp += OW) {
        const int iy = (int)(oy * SH + i) - (int)PH;
        if (iy < 0 || iy >= (int)H) {
            for (uint ox = 0; ox < OW; ox++) cp[ox] = 0.0f;
            continue;
        }
        __global const float *xr = xp + (uint)iy * W;
        uint ox = 0;
        for (; ox < lo; ox++) cp[ox] = 0.0f;
        if (SW == 1) {
            __global const float *src = xr + (lo - PW + j);
            for (; ox < hi; ox++) cp[ox] = src[ox - lo];
        } else {
            for (; ox < hi; ox++) cp[ox] = xr[ox * SW - PW + j];
        }
        for (; ox < OW; ox++) cp[ox] = 0.0f;
    }
}

/* dx[b, c, iy, ix] = sum of col(q, b, p) over the (output position, kernel
 * tap) pairs that read x[b, c, iy, ix] in the forward, i.e. oy*SH - PH + i = iy
 * and ox*SW - PW + j = ix: taps i ascending, then j ascending. Overwrites dx.
 * One work-item per input row (iy, c, b) (global H, C, B): it zeroes the row,
 * then adds each tap's run of column entries to it (contiguous when SW = 1;
 * the row stays in cache), with the run's bounds from one division per tap. */
__kernel void conv_col2im(__global const float *col, __global float *dx, const uint C,
                          const uint H, const uint W, const uint KH, const uint KW, const uint SH,
                          const uint SW, const uint PH, const uint PW, const uint OH,
                          const uint OW, const ulong col_off, const ulong sq, const ulong sb,
                          const uint sp)
{
    const uint iy = get_global_id(0), c = get_global_id(1), b = get_global_id(2);
    if (iy >= H) return;
    col += col_off;
    __global float *dr = dx + (((ulong)b * C + c) * H + iy) * W;
    for (uint ix = 0; ix < W; ix++) dr[ix] = 0.0f;
    __global const float *cb = col + b * sb + (ulong)c * KH * KW * sq;
    const uint ty = iy + PH;
    for (uint i = 0; i < KH; i++) {
        /* oy*SH + i = ty with 0 <= oy < OH */
        if (ty < i || (ty - i) % SH != 0) continue;
        const uint oy = (ty - i) / SH;
        if (oy >= OH) continue;
        for (uint j = 0; j < KW; j++) {
            __global const float *cr = cb + (ulong)(i * KW + j) * sq + (ulong)oy * OW * sp;
            uint lo, hi;
            tap_range(W, SW, PW, j, OW, &lo, &hi);
            if (SW == 1 && sp == 1) {
                __global float *d = dr + (lo - PW + j);
                for (uint ox = lo; ox < hi; ox++) d[ox - lo] += cr[ox];
            } else {
                for (uint ox = lo; ox < hi; ox++) dr[ox * SW - PW + j] += cr[ox * sp];
            }
        }
    }
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
 * the elements p = l, l + lanes, ... of image 0, then of image 1, ... in
 * order (contiguous across the lanes, no division per element), then the
 * lanes are added pairwise (wg_sum): a fixed order for a given group size. */
__kernel void conv_bias_grad(__global const float *dy, __global float *db, const uint B,
                             const uint OC, const uint P, __local float *sv)
{
    const uint o = get_group_id(0), l = get_local_id(0), lanes = get_local_size(0);
    float s = 0.0f;
    for (uint b = 0; b < B; b++) {
        __global const float *row = dy + ((ulong)b * OC + o) * P;
        for (uint p = l; p < P; p += lanes) s += row[p];
    }
    s = wg_sum(sv, s);
    if (l == 0) db[o] = s;
}

/* dw[i] = (accumulate ? dw[i] : 0) + part[part_off + b*n + i] for b = 0, 1,
 * ... B - 1 in order; one work-item per i. */
__kernel void conv_sum_batches(__global const float *part, const ulong part_off,
                               __global float *dw, const uint n, const uint B,
                               const int accumulate)
{
    part += part_off;
    const uint i = get_global_id(0);
    if (i >= n) return;
    float s = accumulate ? dw[i] : 0.0f;
    for (uint b = 0; b < B; b++) s += part[(ulong)b * n + i];
    dw[i] = s;
}

/* dst[dst_off + (b*P + p)*OC + o] = src[src_off + (b*OC + o)*P + p]: each
 * image's [OC, P] as [P, OC]; global (P, OC, B). */
__kernel void conv_transpose_images(__global const float *src, const ulong src_off,
                                    __global float *dst, const ulong dst_off, const uint OC,
                                    const uint P)
{
    const uint p = get_global_id(0), o = get_global_id(1), b = get_global_id(2);
    if (p >= P) return;
    dst[dst_off + ((ulong)b * P + p) * OC + o] = src[src_off + ((ulong)b * OC + o) * P + p];
}
