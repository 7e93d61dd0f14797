/* Optimizer kernels: SGD with momentum + L2 weight decay, and max-norm. */
#pragma OPENCL FP_CONTRACT OFF

/* v = momentum * v - lr * (g + wd * w); w = w + v over [offset, offset + n). */
__kernel void sgd(__global float *w, __global const float *g, __global float *v,
                  const ulong offset, const ulong n, const float lr, const float momentum,
                  const float wd)
{
    const size_t k = get_global_id(0);
    if (k >= n) return;
    const size_t i = offset + k;
    const float wi = w[i];
    const float vi = momentum * v[i] - lr * (g[i] + wd * wi);
    v[i] = vi;
    w[i] = wi + vi;
}

/* One work-group per row of the [rows, cols] matrix at w + offset; the local
 * size must be a power of two (part holds one float per work-item). Squares are
 * summed strided (coalesced), then tree-reduced; rows with norm > c are
 * scaled by c / norm. */
__kernel void max_norm(__global float *w, const ulong offset, const uint cols, const float c,
                       __local float *part)
{
    const uint lid = get_local_id(0), L = get_local_size(0);
    __global float *row = w + offset + (ulong)get_group_id(0) * cols;
    float s = 0.0f;
    for (uint j = lid; j < cols; j += L) {
        const float x = row[j];
        s += x * x;
    }
    part[lid] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint h = L / 2; h > 0; h >>= 1) {
        if (lid < h) part[lid] += part[lid + h];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float ss = part[0];
    if (ss > c * c) {
        const float f = c / sqrt(ss);
        for (uint j = lid; j < cols; j += L) row[j] *= f;
    }
}

/* sgd followed by max_norm in one pass: one work-group per row of the [rows, cols]
 * weight matrix at offset; part holds one float per work-item (any local size).
 * Work-item lid takes the runs of `span` consecutive columns starting at
 * (lid + p * L) * span, p = 0, 1, ... (L the local size): span 1 strides over the
 * columns (coalesced, for GPUs), span = ceil(cols / L) gives each work-item one
 * contiguous run (CPUs).
 * Each element gets the sgd update (same expression, so w and v are bit-identical to
 * sgd) and the squares of the new weights are summed; work-item 0 adds the partials
 * in order (two barriers in all: cheap where a barrier region is a loop over the
 * work-items), and rows with norm > c are scaled by c / norm as in max_norm. The
 * rescale re-reads the row, which the update has just brought into cache. */
__kernel void sgd_max_norm(__global float *w, __global const float *g, __global float *v,
                           const ulong offset, const uint cols, const uint span, const float lr,
                           const float momentum, const float wd, const float c,
                           __local float *part)
{
    const uint lid = get_local_id(0), step = get_local_size(0) * span;
    const ulong base = offset + (ulong)get_group_id(0) * cols;
    __global float *wr = w + base, *vr = v + base;
    __global const float *gr = g + base;
    float s = 0.0f;
    for (uint j0 = lid * span; j0 < cols; j0 += step) {
        const uint j1 = min(cols, j0 + span);
        for (uint j = j0; j < j1; j++) {
            const float wi = wr[j];
            const float vi = momentum * vr[j] - lr * (gr[j] + wd * wi);
            const float x = wi + vi;
            vr[j] = vi;
            wr[j] = x;
            s += x * x;
        }
    }
    part[lid] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (lid == 0) {
        float ss = 0.0f;
        for (uint i = 0; i < get_local_size(0); i++) ss += part[i];
        part[0] = ss > c * c ? c / sqrt(ss) : 1.0f; /* 1: leave the row as it is */
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    const float f = part[0];
    if (f == 1.0f) return;
    for (uint j0 = lid * span; j0 < cols; j0 += step) {
        const uint j1 = min(cols, j0 + span);
        for (uint j = j0; j < j1; j++) wr[j] *= f;
    }
}
