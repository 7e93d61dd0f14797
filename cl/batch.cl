/* Batch assembly on the device: gather the rows of a device-resident dataset
 * in the order given by a permutation. */

/* dst[r, :] = src[perm[start + r], :] for r < rows; one work-item per 16
 * bytes of a row (chunks = ceil(dim / 16) work-items per row). */
__kernel void gather_rows_u8(__global const uchar *src, __global const int *perm,
                             const uint start, const uint dim, const uint rows,
                             __global uchar *dst)
{
    const uint chunks = (dim + 15u) / 16u;
    const size_t i = get_global_id(0);
    if (i >= (size_t)rows * chunks) return;
    const uint r = (uint)(i / chunks), c0 = (uint)(i - (size_t)r * chunks) * 16u;
    __global const uchar *s = src + (size_t)perm[start + r] * dim + c0;
    __global uchar *d = dst + (size_t)r * dim + c0;
    if (c0 + 16u <= dim) {
        vstore16(vload16(0, s), 0, d);
        return;
    }
    for (uint j = 0; c0 + j < dim; j++) d[j] = s[j];
}

__kernel void gather_i32(__global const int *src, __global const int *perm, const uint start,
                         const uint rows, __global int *dst)
{
    size_t i = get_global_id(0);
    if (i < rows) dst[i] = src[perm[start + i]];
}

/* dst[r, :] = src[perm[start + r], :] for float rows of length dim
 * (cached soft targets gathered in the epoch's order). */
__kernel void gather_rows_f32(__global const float *src, __global const int *perm,
                              const uint start, const uint dim, const uint rows,
                              __global float *dst)
{
    size_t i = get_global_id(0);
    size_t total = (size_t)rows * dim;
    if (i >= total) return;
    size_t r = i / dim, c = i - r * dim;
    dst[i] = src[(size_t)perm[start + r] * dim + c];
}

/* x = log(max(x, tiny)) in place: averaged probabilities -> log-probabilities
 * (an ensemble's "logits" for argmax and cross-entropy). */
__kernel void log_inplace(__global float *x, const uint n)
{
    size_t i = get_global_id(0);
    if (i < n) x[i] = log(fmax(x[i], 1e-30f));
}

