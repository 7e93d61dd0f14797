/* Max and average pooling over NCHW planes (host side: src/core/ops_conv.c).
 * General geometry: forward one work-item per output element (global OW, OH,
 * B*C); backward one work-item per input element (global W, H, B*C) that
 * gathers from the output windows covering it in a fixed order, so no atomics
 * and the same result run to run. The host guarantees that every window holds
 * at least one input element (padding < kernel) and buffers below 2^31
 * elements.
 *
 * Tiled geometry (the *_tiled kernels): no padding and windows that do not
 * overlap, window (oy, ox) covering rows [oy*KH, oy*KH + KH) and columns
 * [ox*KW, ox*KW + KW) (stride == kernel, or a single window along that axis,
 * e.g. the global average pool); rows >= OH*KH and columns >= OW*KW belong to
 * no window. Every input element then has at most one window, so the
 * backward runs one work-item per output element (global OW, OH, B*C) that
 * writes its window's KH*KW input gradients with a direct index (the
 * work-items of the last row / column of windows also zero what no window
 * covers), with no per-element division or window search. Results are bit
 * for bit those of the general kernels. */
#pragma OPENCL FP_CONTRACT OFF

/* Windows covering input row t (= iy + PH): oy with oy*S <= t <= oy*S + K - 1, within [0, O). */
int first_window(const int t, const uint K, const uint S)
{
    const int lo = t - (int)K + 1;
    return lo > 0 ? (lo + (int)S - 1) / (int)S : 0;
}

/* y = max over the window's input elements (padding, -inf, never wins: the
 * first element of the clipped window starts the scan); argmax = y*W + x of
 * the first maximum in row-major order, a NaN counting as above everything
 * (the first NaN wins, and y is NaN). */
__kernel void maxpool_fwd(__global const float *x, __global float *y, __global int *argmax,
                          const uint H, const uint W, const uint KH, const uint KW, const uint SH,
                          const uint SW, const uint PH, const uint PW, const uint OH,
                          const uint OW)
{
    const uint ox = get_global_id(0), oy = get_global_id(1), bc = get_global_id(2);
    if (ox >= OW || oy >= OH) return;
    const int y0 = (int)(oy * SH) - (int)PH, x0 = (int)(ox * SW) - (int)PW;
    const int ys = max(y0, 0), ye = min(y0 + (int)KH, (int)H);
    const int xs = max(x0, 0), xe = min(x0 + (int)KW, (int)W);
    __global const float *xp = x + (ulong)bc * H * W;
    int am = ys * (int)W + xs;
    float m = xp[am];
    for (int iy = ys; iy < ye; iy++)
        for (int ix = xs; ix < xe; ix++) {
            const int k = iy * (int)W + ix;
            const float v = xp[k];
            if (v > m || (isnan(v) && !isnan(m))) {
                m = v;
                am = k;
            }
        }
    const ulong o = ((ulong)bc * OH + oy) * OW + ox;
    y[o] = m;
    argmax[o] = am;
}

/* dx[b, c, iy, ix] = sum of dy over the windows (oy, then ox ascending) whose
 * argmax is iy*W + ix. Overwrites dx. */
__kernel void maxpool_bwd(__global const float *dy, __global const int *argmax,
                          __global float *dx, const uint H, const uint W, const uint KH,
                          const uint KW, const uint SH, const uint SW, const uint PH,
                          const uint PW, const uint OH, const uint OW)
{
    const uint ix = get_global_id(0), iy = get_global_id(1), bc = get_global_id(2);
    if (ix >= W || iy >= H) return;
    const int ty = (int)(iy + PH), tx = (int)(ix + PW);
    const int oy0 = first_window(ty, KH, SH), oy1 = min(ty / (int)SH, (int)OH - 1);
    const int ox0 = first_window(tx, KW, SW), ox1 = min(tx / (int)SW, (int)OW - 1);
    const int self = (int)(iy * W + ix);
    const ulong base = (ulong)bc * OH * OW;
    float s = 0.0f;
    for (int oy = oy0; oy <= oy1; oy++)
        for (int ox = ox0; ox <= ox1; ox++) {
            const ulong o = base + (ulong)(oy * (int)OW + ox);
            if (argmax[o] == self) s += dy[o];
        }
    dx[((ulong)bc * H + iy) * W + ix] = s;
}

/* y = (sum of the window's input elements, row-major) / (KH*KW): padding
 * counts in the divisor (count_include_pad). */
__kernel void avgpool_fwd(__global const float *x, __global float *y, const uint H,
                          const uint W, const uint KH, const uint KW, const uint SH,
                          const uint SW, const uint PH, const uint PW, const uint OH,
                          const uint OW)
{
    const uint ox = get_global_id(0), oy = get_global_id(1), bc = get_global_id(2);
    if (ox >= OW || oy >= OH) return;
    const int y0 = (int)(oy * SH) - (int)PH, x0 = (int)(ox * SW) - (int)PW;
    const int ys = max(y0, 0), ye = min(y0 + (int)KH, (int)H);
    const int xs = max(x0, 0), xe = min(x0 + (int)KW, (int)W);
    __global const float *xp = x + (ulong)bc * H * W;
    float s = 0.0f;
    for (int iy = ys; iy < ye; iy++)
        for (int ix = xs; ix < xe; ix++) s += xp[iy * (int)W + ix];
    y[((ulong)bc * OH + oy) * OW + ox] = s / (float)(KH * KW);
}

/* dx[b, c, iy, ix] = (sum of dy over the windows covering it, oy then ox
 * ascending) / (KH*KW). Overwrites dx. */
__kernel void avgpool_bwd(__global const float *dy, __global float *dx, const uint H,
                          const uint W, const uint KH, const uint KW, const uint SH,
                          const uint SW, const uint PH, const uint PW, const uint OH,
                          const uint OW)
{
    const uint ix = get_global_id(0), iy = get_global_id(1), bc = get_global_id(2);
    if (ix >= W || iy >= H) return;
    const int ty = (int)(iy + PH), tx = (int)(ix + PW);
    const int oy0 = first_window(ty, KH, SH), oy1 = min(ty / (int)SH, (int)OH - 1);
    const int ox0 = first_window(tx, KW, SW), ox1 = min(tx / (int)SW, (int)OW - 1);
    const ulong base = (ulong)bc * OH * OW;
    float s = 0.0f;
    for (int oy = oy0; oy <= oy1; oy++)
        for (int ox = ox0; ox <= ox1; ox++) s += dy[base + (ulong)(oy * (int)OW + ox)];
    dx[((ulong)bc * H + iy) * W + ix] = s / (float)(KH * KW);
}

/* ---- tiled geometry (see the file comment) ---- */

/* maxpool_fwd on a tiled geometry (the window is inside the plane). */
__kernel void maxpool_fwd_tiled(__global const float *x, __global float *y,
                                __global int *argmax, const uint H, const uint W, const uint KH,
                                const uint KW, const uint OH, const uint OW)
{
    const uint ox = get_global_id(0), oy = get_global_id(1), bc = get_global_id(2);
    if (ox >= OW || oy >= OH) return;
    __global const float *xp = x + (ulong)bc * H * W;
    const int k0 = (int)(oy * KH * W + ox * KW);
    int am = k0;
    float m = xp[k0];
    if (KH == 2 && KW == 2) {
        const float b = xp[k0 + 1], c = xp[k0 + (int)W], d = xp[k0 + (int)W + 1];
        if (b > m || (isnan(b) && !isnan(m))) { m = b; am = k0 + 1; }
        if (c > m || (isnan(c) && !isnan(m))) { m = c; am = k0 + (int)W; }
        if (d > m || (isnan(d) && !isnan(m))) { m = d; am = k0 + (int)W + 1; }
        const ulong o = ((ulong)bc * OH + oy) * OW + ox;
        y[o] = m;
        argmax[o] = am;
        return;
    }
    for (uint i = 0; i < KH; i++)
        for (uint j = 0; j < KW; j++) {
            const int k = k0 + (int)(i * W + j);
            const float v = xp[k];
            if (v > m || (isnan(v) && !isnan(m))) {
                m = v;
                am = k;
            }
        }
    const ulong o = ((ulong)bc * OH + oy) * OW + ox;
    y[o] = m;
    argmax[o] = am;
}

/* Zero the input gradient that no window covers: for the last column of
 * windows, columns [OW*KW, W) of rows [r0, r1); for the last row of windows,
 * rows [OH*KH, H) of its columns (and of [OW*KW, W) in the corner). */
void tiled_zero_rest(__global float *dp, const uint ox, const uint oy, const uint H,
                     const uint W, const uint KH, const uint KW, const uint OH, const uint OW)
{
    const uint x0 = ox * KW, xe = ox == OW - 1 ? W : x0 + KW;
    if (ox == OW - 1)
        for (uint iy = oy * KH; iy < oy * KH + KH; iy++)
            for (uint ix = OW * KW; ix < W; ix++) dp[iy * W + ix] = 0.0f;
    if (oy == OH - 1)
        for (uint iy = OH * KH; iy < H; iy++)
            for (uint ix = x0; ix < xe; ix++) dp[iy * W + ix] = 0.0f;
}

/* maxpool_bwd on a tiled geometry: dx = dy of the window whose argmax it is
 * (0.0f + dy, as the general kernel's sum gives it), else 0. */
__kernel void maxpool_bwd_tiled(__global const float *dy, __global const int *argmax,
                                __global float *dx, const uint H, const uint W, const uint KH,
                                const uint KW, const uint OH, const uint OW)
{
    const uint ox = get_global_id(0), oy = get_global_id(1), bc = get_global_id(2);
    if (ox >= OW || oy >= OH) return;
    const ulong o = ((ulong)bc * OH + oy) * OW + ox;
    const int am = argmax[o];
    const float g = 0.0f + dy[o];
    __global float *dp = dx + (ulong)bc * H * W;
    const uint k0 = oy * KH * W + ox * KW;
    if (KH == 2 && KW == 2) {
        dp[k0] = (int)k0 == am ? g : 0.0f;
        dp[k0 + 1] = (int)k0 + 1 == am ? g : 0.0f;
        dp[k0 + W] = (int)(k0 + W) == am ? g : 0.0f;
        dp[k0 + W + 1] = (int)(k0 + W + 1) == am ? g : 0.0f;
    } else {
    for (uint i = 0; i < KH; i++)
        for (uint j = 0; j < KW; j++) {
            const uint k = k0 + i * W + j;
            dp[k] = (int)k == am ? g : 0.0f;
        }
    }
    if (ox == OW - 1 || oy == OH - 1) tiled_zero_rest(dp, ox, oy, H, W, KH, KW, OH, OW);
}

/* avgpool_fwd on a tiled geometry (no padding: the sum of the window, row-major,
 * / (KH*KW)). */
__kernel void avgpool_fwd_tiled(__global const float *x, __global float *y, const uint H,
                                const uint W, const uint KH, const uint KW, const uint OH,
                                const uint OW)
{
    const uint ox = get_global_id(0), oy = get_global_id(1), bc = get_global_id(2);
    if (ox >= OW || oy >= OH) return;
    __global const float *xp = x + (ulong)bc * H * W + oy * KH * W + ox * KW;
    float s = 0.0f;
    for (uint i = 0; i < KH; i++)
        for (uint j = 0; j < KW; j++) s += xp[i * W + j];
    y[((ulong)bc * OH + oy) * OW + ox] = s / (float)(KH * KW);
}

/* avgpool_bwd on a tiled geometry: dx = (0.0f + dy) / (KH*KW) over the
 * window, 0 where no window covers it. */
__kernel void avgpool_bwd_tiled(__global const float *dy, __global float *dx, const uint H,
                                const uint W, const uint KH, const uint KW, const uint OH,
                                const uint OW)
{
    const uint ox = get_global_id(0), oy = get_global_id(1), bc = get_global_id(2);
    if (ox >= OW || oy >= OH) return;
    const float g = (0.0f + dy[((ulong)bc * OH + oy) * OW + ox]) / (float)(KH * KW);
    __global float *dp = dx + (ulong)bc * H * W;
    const uint k0 = oy * KH * W + ox * KW;
    for (uint i = 0; i < KH; i++)
        for (uint j = 0; j < KW; j++) dp[k0 + i * W + j] = g;
    if (ox == OW - 1 || oy == OH - 1) tiled_zero_rest(dp, ox, oy, H, W, KH, KW, OH, OW);
}
