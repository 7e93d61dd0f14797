/* Optimizer kernels: SGD with momentum + L2 weight decay, max-norm, Adam/AdamW
 * and Nesterov SGD (the last two: host wrappers in src/core/ops_cnn.c). */
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

/* Adam / AdamW (PyTorch's torch.optim.Adam and AdamW) over [offset, offset + n).
 * The step-dependent factors come from the host, computed in double and rounded
 * to float once: step_size = lr / (1 - beta1^t), isb2 = 1 / sqrt(1 - beta2^t),
 * omb1 = 1 - beta1, omb2 = 1 - beta2, decay = 1 - lr * wd. Then
 *   decoupled: w = w * decay;  else g = g + wd * w
 *   m = beta1 * m + omb1 * g;  v = beta2 * v + omb2 * (g * g)
 *   w = w - step_size * (m / (sqrt(v) * isb2 + eps))
 * which is PyTorch's  w - lr/bc1 * m / (sqrt(v) / sqrt(bc2) + eps). */
__kernel void adam(__global float *w, __global const float *g, __global float *m,
                   __global float *v, const ulong offset, const ulong n, const float beta1,
                   const float omb1, const float beta2, const float omb2, const float eps,
                   const float wd, const float decay, const int decoupled,
                   const float step_size, const float isb2)
{
    const size_t k = get_global_id(0);
    if (k >= n) return;
    const size_t i = offset + k;
    float wi = w[i], gi = g[i];
    if (decoupled)
        wi = wi * decay;
    else
        gi = gi + wd * wi;
    const float mi = beta1 * m[i] + omb1 * gi;
    const float vi = beta2 * v[i] + omb2 * (gi * gi);
    m[i] = mi;
    v[i] = vi;
    w[i] = wi - step_size * (mi / (sqrt(vi) * isb2 + eps));
}

/* SGD with Nesterov momentum in velocity form over [offset, offset + n):
 *   d = g + wd * w;  v = momentum * v - lr * d;  w = (w + momentum * v) - lr * d
 * (lr * d rounded once and used twice). */
__kernel void sgd_nesterov(__global float *w, __global const float *g, __global float *v,
                           const ulong offset, const ulong n, const float lr,
                           const float momentum, const float wd)
{
    const size_t k = get_global_id(0);
    if (k >= n) return;
    const size_t i = offset + k;
    const float wi = w[i];
    const float ld = lr * (g[i] + wd * wi);
    const float vi = momentum * v[i] - ld;
    v[i] = vi;
    w[i] = (wi + momentum * vi) - ld;
}
