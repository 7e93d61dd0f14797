/* Row-major C = alpha * op(A) op(B) + beta * C for products with one narrow
 * dimension (at most SMALL_MAX = 16: a classifier's 10 classes), the three
 * forms a linear layer uses (src/nn/linear.c): the forward Y = X W^T (NT,
 * n narrow), the weight gradient dW = dY^T X (TN, m narrow) and the input
 * gradient dX = dY W (NN, k narrow). CLBlast runs these on its direct kernel
 * (or pads the narrow dimension to a 64-wide tile), a few GFLOP/s on CPUs;
 * here every work-item keeps the narrow dimension's results in registers,
 * float8 vectors along the contiguous dimension, no local memory and no
 * barriers (CPU runtimes run a work-group as a loop). src/core/gemm.c picks
 * these kernels (gemm_small_*).
 *
 * Arguments (all kernels): m, n, k, alpha, A, its offset and row stride, B,
 * its offset and row stride, beta, C, its offset and row stride. beta = 0
 * does not read C. Summation: for NT eight interleaved partial sums over k,
 * then a scalar tail; for TN and NN one sum in order of k. gemm_small_nt_parts
 * is NT over parts of k, for src/core/gemm.c's narrow convolutions. The
 * shared bodies (small_nt, small_tn) are plain functions: declared static,
 * oclgrind 21.10's -O2 build lost the kernel gemm_small_tn, whose body is
 * one call (CL_INVALID_KERNEL_NAME). */
#define SMALL_MAX 16

static inline float small_out(float acc, float alpha, float beta, __global const float *c)
{
    return beta == 0.0f ? alpha * acc : alpha * acc + beta * *c;
}

static inline float8 small_out8(float8 acc, float alpha, float beta, __global const float *c)
{
    return beta == 0.0f ? alpha * acc : alpha * acc + beta * vload8(0, c);
}

/* NT, n <= 16, over p in [p0, p1): out[j] = sum_p ar[p] B[j][p] for j < n
 * (eight interleaved partial sums from p0, then a scalar tail). */
void small_nt(const uint n, const uint p0, const uint p1, __global const float *restrict ar,
              __global const float *restrict bb, const ulong ldb, float out[SMALL_MAX])
{
    float8 acc[SMALL_MAX];
#pragma unroll
    for (uint j = 0; j < SMALL_MAX; j++) acc[j] = (float8)(0.0f);
    uint p = p0;
    for (; p + 8u <= p1; p += 8u) {
        const float8 x = vload8(0, ar + p);
#pragma unroll
        for (uint j = 0; j < SMALL_MAX; j++)
            if (j < n) acc[j] = fma(x, vload8(0, bb + (size_t)j * ldb + p), acc[j]);
    }
#pragma unroll
    for (uint j = 0; j < SMALL_MAX; j++) {
        if (j >= n) break;
        const float8 v = acc[j];
        float s = ((v.s0 + v.s1) + (v.s2 + v.s3)) + ((v.s4 + v.s5) + (v.s6 + v.s7));
        for (uint q = p; q < p1; q++) s = fma(ar[q], bb[(size_t)j * ldb + q], s);
        out[j] = s;
    }
}

/* NT, n <= 16: C[i][j] = sum_p A[i][p] B[j][p]. One row i per work-item
 * (global size >= m). */
__kernel void gemm_small_nt(const uint m, const uint n, const uint k, const float alpha,
                            __global const float *restrict a, const ulong a_off, const ulong lda,
                            __global const float *restrict b, const ulong b_off, const ulong ldb,
                            const float beta, __global float *restrict c, const ulong c_off,
                            const ulong ldc)
{
    const uint i = (uint)get_global_id(0);
    if (i >= m) return;
    float s[SMALL_MAX];
    small_nt(n, 0u, k, a + a_off + (size_t)i * lda, b + b_off, ldb, s);
    __global float *cr = c + c_off + (size_t)i * ldc;
    for (uint j = 0; j < n; j++) cr[j] = small_out(s[j], alpha, beta, cr + j);
}

/* The NT product split along k and stored transposed: part q (global id 1)
 * writes C^T's partial sums over p in [q*kc, min(k, (q+1)*kc)), Cq[j][i] =
 * sum_p A[i][p] B[j][p] at C + q*c_part + j*ldc + i; the caller adds the
 * parts in order of q. For a convolution's weight gradient (k = batch *
 * positions, m = the columns' rows, n = the output channels), whose m
 * work-items alone would not fill the device. Global size >= m x parts. */
__kernel void gemm_small_nt_parts(const uint m, const uint n, const uint k, const uint kc,
                                  __global const float *restrict a, const ulong a_off,
                                  const ulong lda, __global const float *restrict b,
                                  const ulong b_off, const ulong ldb, __global float *restrict c,
                                  const ulong c_off, const ulong ldc, const ulong c_part)
{
    const uint i = (uint)get_global_id(0), q = (uint)get_global_id(1);
    const uint p0 = q * kc;
    if (i >= m || p0 >= k) return;
    const uint p1 = k - p0 < kc ? k : p0 + kc;
    float s[SMALL_MAX];
    small_nt(n, p0, p1, a + a_off + (size_t)i * lda, b + b_off, ldb, s);
    __global float *cq = c + c_off + (size_t)q * c_part + i;
    for (uint j = 0; j < n; j++) cq[(size_t)j * ldc] = s[j];
}

/* TN, m <= 16, over rows p in [p0, p1) of A and B: C[i][j] = sum_p A[p][i]
 * B[p][j] for the eight columns j from j0 (fewer at the end: gathered into
 * a zero-padded vector, the same arithmetic), p ascending. */
void small_tn(const uint m, const uint n, const uint p0, const uint p1, const uint j0,
              const float alpha, __global const float *restrict a, const ulong lda,
              __global const float *restrict b, const ulong ldb, const float beta,
              __global float *restrict c, const ulong ldc)
{
    const uint nj = n - j0 < 8u ? n - j0 : 8u;
    float8 acc[SMALL_MAX];
#pragma unroll
    for (uint i = 0; i < SMALL_MAX; i++) acc[i] = (float8)(0.0f);
    if (nj == 8u) {
        for (uint p = p0; p < p1; p++) {
            const float8 x = vload8(0, b + (size_t)p * ldb + j0);
            __global const float *ap = a + (size_t)p * lda;
#pragma unroll
            for (uint i = 0; i < SMALL_MAX; i++)
                if (i < m) acc[i] = fma((float8)(ap[i]), x, acc[i]);
        }
    } else {
        float t[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
        for (uint p = p0; p < p1; p++) {
            __global const float *bp = b + (size_t)p * ldb + j0;
            for (uint q = 0; q < nj; q++) t[q] = bp[q];
            const float8 x = vload8(0, t);
            __global const float *ap = a + (size_t)p * lda;
#pragma unroll
            for (uint i = 0; i < SMALL_MAX; i++)
                if (i < m) acc[i] = fma((float8)(ap[i]), x, acc[i]);
        }
    }
#pragma unroll
    for (uint i = 0; i < SMALL_MAX; i++) {
        if (i >= m) break;
        __global float *cr = c + (size_t)i * ldc + j0;
        if (nj == 8u) {
            vstore8(small_out8(acc[i], alpha, beta, cr), 0, cr);
        } else {
            float r[8];
            vstore8(acc[i], 0, r);
            for (uint q = 0; q < nj; q++) cr[q] = small_out(r[q], alpha, beta, cr + q);
        }
    }
}

/* TN, m <= 16: C[i][j] = sum_p A[p][i] B[p][j]. Eight columns j per
 * work-item (global size >= ceil(n / 8)). */
__kernel void gemm_small_tn(const uint m, const uint n, const uint k, const float alpha,
                            __global const float *restrict a, const ulong a_off, const ulong lda,
                            __global const float *restrict b, const ulong b_off, const ulong ldb,
                            const float beta, __global float *restrict c, const ulong c_off,
                            const ulong ldc)
{
    const uint j0 = (uint)get_global_id(0) * 8u;
    if (j0 >= n) return;
    small_tn(m, n, 0u, k, j0, alpha, a + a_off, lda, b + b_off, ldb, beta, c + c_off, ldc);
}

/* NN, k <= 16: C[i][j] = sum_p A[i][p] B[p][j]. Eight columns j of four
 * rows i per work-item (global size >= ceil(n / 8) x ceil(m / 4)). */
__kernel void gemm_small_nn(const uint m, const uint n, const uint k, const float alpha,
                            __global const float *restrict a, const ulong a_off, const ulong lda,
                            __global const float *restrict b, const ulong b_off, const ulong ldb,
                            const float beta, __global float *restrict c, const ulong c_off,
                            const ulong ldc)
{
    const uint j0 = (uint)get_global_id(0) * 8u, i0 = (uint)get_global_id(1) * 4u;
    if (j0 >= n || i0 >= m) return;
    a += a_off;
    b += b_off;
    c += c_off;
    const uint rows = m - i0 < 4u ? m - i0 : 4u;
    if (j0 + 8u <= n) {
        float8 acc[4] = {(float8)(0.0f), (float8)(0.0f), (float8)(0.0f), (float8)(0.0f)};
        for (uint p = 0; p < k; p++) {
            const float8 x = vload8(0, b + (size_t)p * ldb + j0);
#pragma unroll
            for (uint r = 0; r < 4u; r++)
                if (r < rows) acc[r] = fma((float8)(a[(size_t)(i0 + r) * lda + p]), x, acc[r]);
        }
#pragma unroll
        for (uint r = 0; r < 4u; r++) {
            if (r >= rows) break;
            __global float *cr = c + (size_t)(i0 + r) * ldc + j0;
            vstore8(small_out8(acc[r], alpha, beta, cr), 0, cr);
        }
        return;
    }
    for (uint r = 0; r < rows; r++)
        for (uint j = j0; j < n; j++) {
            float s = 0.0f;
            for (uint p = 0; p < k; p++)
                s = fma(a[(size_t)(i0 + r) * lda + p], b[(size_t)p * ldb + j], s);
            __global float *cr = c + (size_t)(i0 + r) * ldc + j;
            *cr = small_out(s, alpha, beta, cr);
        }
}
