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
