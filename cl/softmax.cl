/* Row-wise softmax family: temperature softmax / log-softmax, cross-entropy
 * with integer labels (loss, gradient, error count), argmax, confusion counts,
 * and a single-work-group deterministic sum. Plain OpenCL C 1.2.
 *
 * Layout: z is row-major [B, K], one row per sample. Two variants per op:
 *   *_wg    one work-group per row (global = B * lws, local = lws, lws a power
 *           of two); each work-item walks the row in strides of lws, then the
 *           group reduces in local memory (a fixed tree: deterministic for a
 *           given lws). Used for K > 32.
 *   *_row1  one work-item per row (global >= B, extra items exit); cheap for
 *           small K (classification heads with 10 classes).
 *
 * Numerical stability: with x_k = z_k * invT (invT = 1/T > 0), every
 * exponential is exp(x_k - m) with m = max_k x_k, so its argument is <= 0 (no
 * overflow) and the largest term is exactly exp(0) = 1 (the sum is >= 1, its
 * log finite). m is computed as max(z) * invT, which equals max_k(z_k * invT)
 * bit for bit because rounding is monotone. log-softmax is (x_k - m) - log(s),
 * never log(exp(...)), so it stays finite when exp underflows. Contraction to
 * fma is switched off so that x_k - m is exactly 0 at the max on every device.
 */
#pragma OPENCL FP_CONTRACT OFF

/* Flags of the cross-entropy kernels: which outputs to write. */
#define XENT_LOSS 1
#define XENT_DZ 2
#define XENT_ERR 4

/* ---- work-group reductions (every work-item of the group must call) ---- */

#include "wg_reduce.clh"

/* Group-wide (max value, first index of it) of the pairs (v, i). */
void wg_argmax(__local float *sv, __local int *si, float v, int i, float *ov, int *oi)
{
    const uint lid = (uint)get_local_id(0), n = (uint)get_local_size(0);
    sv[lid] = v;
    si[lid] = i;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint s = n >> 1; s > 0; s >>= 1) {
        if (lid < s) {
            const float v2 = sv[lid + s];
            const int i2 = si[lid + s];
            if (v2 > sv[lid] || (v2 == sv[lid] && i2 < si[lid])) {
                sv[lid] = v2;
                si[lid] = i2;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    *ov = sv[0];
    *oi = si[0];
    barrier(CLK_LOCAL_MEM_FENCE);
}

/* This work-item's (max, first index) over k = lid, lid + n, ... < K. Starts
 * from its own first element (not -inf) so a row of -inf still yields an index;
 * items with no element contribute (-inf, INT_MAX), which never wins a tie. */
void strided_argmax(__global const float *zr, uint K, float *ov, int *oi)
{
    const uint lid = (uint)get_local_id(0), n = (uint)get_local_size(0);
    float v = -INFINITY;
    int i = INT_MAX;
    if (lid < K) {
        v = zr[lid];
        i = (int)lid;
    }
    for (uint k = lid + n; k < K; k += n) {
        const float t = zr[k];
        if (t > v) {
            v = t;
            i = (int)k;
        }
    }
    *ov = v;
    *oi = i;
}

/* Sequential (max, first index) of a whole row. */
void row_argmax(__global const float *zr, uint K, float *ov, int *oi)
{
    float v = zr[0];
    int i = 0;
    for (uint k = 1; k < K; k++) {
        const float t = zr[k];
        if (t > v) {
            v = t;
            i = (int)k;
        }
    }
    *ov = v;
    *oi = i;
}

/* ---- softmax / log-softmax at temperature T: out = softmax(z * invT) ---- */

__kernel void softmax_wg(__global const float *z, __global float *out, const uint K,
                         const float invT, const int log_out, __local float *sv)
{
    const size_t row = get_group_id(0);
    const uint lid = (uint)get_local_id(0), n = (uint)get_local_size(0);
    __global const float *zr = z + row * K;
    __global float *orow = out + row * K;

    float mz = -INFINITY;
    for (uint k = lid; k < K; k += n) mz = fmax(mz, zr[k]);
    const float m = wg_max(sv, mz) * invT;

    float s = 0.0f;
    for (uint k = lid; k < K; k += n) s += exp(zr[k] * invT - m);
    s = wg_sum(sv, s); /* >= 1: the max term is exp(0) */

    if (log_out) {
        const float ls = log(s);
        for (uint k = lid; k < K; k += n) orow[k] = (zr[k] * invT - m) - ls;
    } else {
        for (uint k = lid; k < K; k += n) orow[k] = fmin(exp(zr[k] * invT - m) / s, 1.0f);
    }
}

__kernel void softmax_row1(__global const float *z, __global float *out, const uint B,
                           const uint K, const float invT, const int log_out)
{
    const size_t row = get_global_id(0);
    if (row >= B) return;
    __global const float *zr = z + row * K;
    __global float *orow = out + row * K;

    float mz = zr[0];
    for (uint k = 1; k < K; k++) mz = fmax(mz, zr[k]);
    const float m = mz * invT;
    float s = 0.0f;
    for (uint k = 0; k < K; k++) s += exp(zr[k] * invT - m);
    if (log_out) {
        const float ls = log(s);
        for (uint k = 0; k < K; k++) orow[k] = (zr[k] * invT - m) - ls;
    } else {
        for (uint k = 0; k < K; k++) orow[k] = fmin(exp(zr[k] * invT - m) / s, 1.0f);
    }
}

/* ---- cross-entropy at T = 1 with integer labels ----
 * loss[b] = log(s) - (z[b,y] - m)            (= -log softmax(z_b)[y])
 * dz[b,k] = g * (exp(z[b,k] - m) / s - [k == y])
 * errors[0] += 1 when the first argmax of row b differs from y.
 * A label outside [0, K) gives loss NaN and a NaN dz row (never an
 * out-of-bounds read) and counts as an error. z[b,y] is read before the last
 * barrier, dz written after it: dz may be the same buffer as z. */

__kernel void xent_wg(__global const float *z, __global const int *labels,
                      __global float *loss, __global float *dz, __global int *errors,
                      const uint K, const float g, const int flags, __local float *sv,
                      __local int *si)
{
    const size_t row = get_group_id(0);
    const uint lid = (uint)get_local_id(0), n = (uint)get_local_size(0);
    __global const float *zr = z + row * K;

    float v;
    int arg;
    strided_argmax(zr, K, &v, &arg);
    float m;
    wg_argmax(sv, si, v, arg, &m, &arg);

    const int y = labels[row];
    const int valid = y >= 0 && (uint)y < K;
    const float zy = valid ? zr[y] : NAN;

    float s = 0.0f;
    for (uint k = lid; k < K; k += n) s += exp(zr[k] - m);
    s = wg_sum(sv, s);

    if (lid == 0) {
        if (flags & XENT_LOSS) loss[row] = valid ? log(s) - (zy - m) : NAN;
        if ((flags & XENT_ERR) && arg != y) atomic_inc(errors);
    }
    if (flags & XENT_DZ) {
        __global float *drow = dz + row * K;
        for (uint k = lid; k < K; k += n) {
            const float p = fmin(exp(zr[k] - m) / s, 1.0f);
            drow[k] = valid ? g * (p - ((int)k == y ? 1.0f : 0.0f)) : NAN;
        }
    }
}

__kernel void xent_row1(__global const float *z, __global const int *labels,
                        __global float *loss, __global float *dz, __global int *errors,
                        const uint B, const uint K, const float g, const int flags)
{
    const size_t row = get_global_id(0);
    if (row >= B) return;
    __global const float *zr = z + row * K;

    float m;
    int arg;
    row_argmax(zr, K, &m, &arg);
    const int y = labels[row];
    const int valid = y >= 0 && (uint)y < K;
    const float zy = valid ? zr[y] : NAN;
    float s = 0.0f;
    for (uint k = 0; k < K; k++) s += exp(zr[k] - m);

    if (flags & XENT_LOSS) loss[row] = valid ? log(s) - (zy - m) : NAN;
    if ((flags & XENT_ERR) && arg != y) atomic_inc(errors);
    if (flags & XENT_DZ) {
        __global float *drow = dz + row * K;
        for (uint k = 0; k < K; k++) {
            const float p = fmin(exp(zr[k] - m) / s, 1.0f);
            drow[k] = valid ? g * (p - ((int)k == y ? 1.0f : 0.0f)) : NAN;
        }
    }
}

/* ---- argmax (first maximum on ties) ---- */

__kernel void argmax_wg(__global const float *z, __global int *idx, const uint K,
                        __local float *sv, __local int *si)
{
    const size_t row = get_group_id(0);
    float v;
    int arg;
    strided_argmax(z + row * K, K, &v, &arg);
    wg_argmax(sv, si, v, arg, &v, &arg);
    if (get_local_id(0) == 0) idx[row] = arg;
}

__kernel void argmax_row1(__global const float *z, __global int *idx, const uint B, const uint K)
{
    const size_t row = get_global_id(0);
    if (row >= B) return;
    float v;
    int arg;
    row_argmax(z + row * K, K, &v, &arg);
    idx[row] = arg;
}

/* ---- confusion counts: conf[y * K + argmax] += 1; rows whose label is
 * outside [0, K) are not counted. ---- */

__kernel void confusion_wg(__global const float *z, __global const int *labels,
                           __global int *conf, const uint K, __local float *sv, __local int *si)
{
    const size_t row = get_group_id(0);
    float v;
    int arg;
    strided_argmax(z + row * K, K, &v, &arg);
    wg_argmax(sv, si, v, arg, &v, &arg);
    if (get_local_id(0) == 0) {
        const int y = labels[row];
        if (y >= 0 && (uint)y < K) atomic_inc(conf + (size_t)y * K + (uint)arg);
    }
}

__kernel void confusion_row1(__global const float *z, __global const int *labels,
                             __global int *conf, const uint B, const uint K)
{
    const size_t row = get_global_id(0);
    if (row >= B) return;
    float v;
    int arg;
    row_argmax(z + row * K, K, &v, &arg);
    const int y = labels[row];
    if (y >= 0 && (uint)y < K) atomic_inc(conf + (size_t)y * K + (uint)arg);
}

/* ---- acc[acc_index] += sum(x[0..n)) by one work-group: each item sums its
 * stride sequentially, then a fixed tree; the order depends only on n and the
 * group size, so the result is reproducible run to run. ---- */

__kernel void reduce_add(__global const float *x, const uint n, __global float *acc,
                         const uint acc_index, __local float *sv)
{
    const uint lid = (uint)get_local_id(0), ls = (uint)get_local_size(0);
    float s = 0.0f;
    for (uint i = lid; i < n; i += ls) s += x[i];
    s = wg_sum(sv, s);
    if (lid == 0) acc[acc_index] += s;
}
