/* Max and average pooling over NCHW planes (host side: src/core/ops_conv.c).
 * Forward: one work-item per output element (global OW, OH, B*C); backward:
 * one work-item per input element (global W, H, B*C) that gathers from the
 * output windows covering it in a fixed order, so no atomics and the same
 * result run to run. The host guarantees that every window holds at least
 * one input element (padding < kernel) and buffers below 2^31 elements. */
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
