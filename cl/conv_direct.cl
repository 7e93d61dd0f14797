/* Direct convolutions (NCHW) for CPU devices, no columns and no GEMM: 3x3
 * with padding 1 and stride 1 or 2, and 5x5 with stride 1 (at the end of
 * this file). src/core/conv_direct.c launches these kernels; "Direct
 * convolutions" in src/core/gemm.c has the route and the measurements.
 *
 * A work-item holds 16 output positions of one image as a float16 (lanes)
 * for DB = 16 output channels (16 float16 accumulators, no local memory, no
 * barriers: CPU runtimes run a work-group as a loop and do not vectorise a
 * kernel's inner loops across work-items, so the vectors are explicit). The
 * lanes are either 16 consecutive columns of one output row (the "rows"
 * kernels, OW > 8; the last segment of a row may be partial) or two rows of
 * at most 8 columns (the "pairs" kernels, OW <= 8: columns 0..7 of rows oh0
 * and oh0 + 1). Lanes outside the image read 0 and are not stored. An input
 * row is loaded once per input channel and kernel row, and the three
 * vectors of kernel columns 0, 1, 2 are built from it by shuffles (stride
 * 2: its even and odd columns).
 *
 * Forward (conv3x3_*_fwd, stride S): y[b, o] = bias[o] + sum over c, kh, kw
 * in that order (one fma chain) of w(o, c, kh, kw) x[b, c, oh*S - 1 + kh,
 * ow*S - 1 + kw], the order of the K = C*9 sum of an im2col GEMM. The weight
 * of (o, c, t), t = kh*3 + kw, is read at w[o*wo + c*wc + t] (forward: wo =
 * C*9, wc = 9). The input gradient at stride 1 is the same computation on
 * dy with the kernel flipped (conv3x3_*_bwd: t -> 8 - t) and the roles of
 * the channels swapped (wo = 9, wc = C*9 of the forward): dx[b, c] = sum
 * over o, kh, kw of w[o, c, 2 - kh, 2 - kw] dy[b, o, h - 1 + kh, w - 1 +
 * kw]. At stride 2 (conv3x3s2_rows_dx) an input position (ih, iw) gathers
 * the dy entries whose windows hold it: kernel rows kh with ih + 1 - kh even
 * (kh = 1 for even ih, 0 and 2 for odd), likewise columns, which for 16
 * consecutive columns are dy's row interleaved with zeros (half the lanes
 * of each tap's product are 0).
 *
 * Weight gradient (conv3x3_*_dw): one work-item per kernel row kh, block
 * of DW_OB = 4 output channels, input channel and part of the batch (NB
 * images), 12 float16 accumulators (4 channels x 3 kernel columns) over the
 * part's positions: per output row one input row's three column vectors,
 * each used by 4 channels' dy. Each accumulator's lanes are summed at the
 * end (a fixed tree) and the part's [OC, C, 3, 3] written at dwp + part *
 * OC*C*9; the caller sums the parts in order. (Two output channels with all
 * 9 taps per work-item, building every input row three times, ran
 * 1.4-1.6x slower.) */
#define DB 16
#define DW_OB 4 /* output channels per work-item of the weight gradient */

/* The helpers of the hot loops are macros: as functions, the larger ones
 * were not inlined (PoCL 3.1 kept dc_row2 and the pair builders as calls)
 * and every call spilled the 16 vector accumulators, 2-3x slower; forcing
 * the inlining (always_inline) made oclgrind 21.10 lose the kernels (at
 * -O0). Only the rare tails (the buffer's last row) are functions. */

/* v shifted one lane up (lane 0 = l) and one lane down (lane 15 = r). */
#define DC_UP(v, l) \
    shuffle2((float16)(l), (v), (uint16)(0, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30))
#define DC_DOWN(v, r) \
    shuffle2((v), (float16)(r), (uint16)(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16))
#define DC_EVEN (uint16)(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30)
#define DC_ODD (uint16)(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31)
#define DC_LANES (int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)

/* Element by element, for the segments whose vector load would pass the
 * buffer's end: columns [s0, s0 + 16) of the row at element offset ro of x
 * (s0 may be negative), 0 outside [0, W). */
float16 dc_segx_tail(__global const float *x, long ro, int s0, int W)
{
    float t[16];
    for (int q = 0; q < 16; q++) t[q] = s0 + q >= 0 && s0 + q < W ? x[ro + s0 + q] : 0.0f;
    return vload16(0, t);
}

float8 dc_half_tail(__global const float *row, uint W)
{
    float t[8];
    for (uint q = 0; q < 8u; q++) t[q] = q < W ? row[q] : 0.0f;
    return vload8(0, t);
}

/* v = columns [ow0, ow0 + 16) of a row of W values, 0 past W; the buffer
 * ends at `end`. A partial segment is one vector load with the lanes past W
 * set to 0 where the load stays within the buffer (all but the buffer's
 * last row; scalar loads made partial segments, e.g. rows of 14, 3-4x
 * slower). */
#define DC_SEG(v, row, ow0, W, end)                                                        \
    do {                                                                                   \
        if ((ow0) + 16u <= (W))                                                            \
            v = vload16(0, (row) + (ow0));                                                 \
        else if ((row) + (ow0) + 16u <= (end))                                             \
            v = select((float16)(0.0f), vload16(0, (row) + (ow0)),                         \
                       DC_LANES + (int)(ow0) < (int)(W));                                  \
        else                                                                               \
            v = dc_segx_tail((row), 0, (int)(ow0), (int)(W));                              \
    } while (0)

/* A row segment (m) and its neighbours: l = columns - 1, r = columns + 1 (0
 * outside the row). */
#define DC_ROW(row, ow0, W, end, l, m, r)                                                  \
    do {                                                                                   \
        DC_SEG(m, row, ow0, W, end);                                                       \
        const float left_ = (row)[(ow0) > 0u ? (ow0)-1u : 0u];                             \
        const float right_ = (row)[(ow0) + 16u < (W) ? (ow0) + 16u : (W)-1u];              \
        l = DC_UP(m, (ow0) > 0u ? left_ : 0.0f);                                           \
        r = DC_DOWN(m, (ow0) + 16u < (W) ? right_ : 0.0f);                                 \
    } while (0)

/* v = row ih of a plane of H rows of W <= 8 values, columns 0..7 (0 outside
 * the plane). */
#define DC_HALF(v, plane, ih, H, W, end)                                                   \
    do {                                                                                   \
        __global const float *row_ = (plane) + (size_t)(ih) * (W);                         \
        if ((ih) < 0 || (ih) >= (int)(H))                                                  \
            v = (float8)(0.0f);                                                            \
        else if ((W) == 8u)                                                                \
            v = vload8(0, row_);                                                           \
        else if (row_ + 8u <= (end))                                                       \
            v = select((float8)(0.0f), vload8(0, row_),                                    \
                       (int8)(0, 1, 2, 3, 4, 5, 6, 7) < (int)(W));                         \
        else                                                                               \
            v = dc_half_tail(row_, (W));                                                   \
    } while (0)

/* Rows ih (lanes 0..7) and ih + 1 (lanes 8..15) of a plane of rows of W <=
 * 8 values, and their neighbours within each row. */
#define DC_PAIR(plane, ih, H, W, end, l, m, r)                                             \
    do {                                                                                   \
        float8 a_, b_;                                                                     \
        DC_HALF(a_, plane, ih, H, W, end);                                                 \
        DC_HALF(b_, plane, (ih) + 1, H, W, end);                                           \
        m = (float16)(a_, b_);                                                             \
        l = shuffle2((float16)(0.0f), m,                                                   \
                     (uint16)(0, 16, 17, 18, 19, 20, 21, 22, 0, 24, 25, 26, 27, 28, 29, 30)); \
        r = shuffle2(m, (float16)(0.0f),                                                   \
                     (uint16)(1, 2, 3, 4, 5, 6, 7, 16, 9, 10, 11, 12, 13, 14, 15, 16));    \
    } while (0)

/* Stride 2: kernel columns 0, 1, 2 of output columns [ow0, ow0 + 16) over
 * a row of W values: x[2*ow - 1], x[2*ow], x[2*ow + 1] (0 outside). */
#define DC_ROW2(row, ow0, W, end, l, m, r)                                                 \
    do {                                                                                   \
        const uint i0_ = 2u * (ow0);                                                       \
        float16 a_, b_;                                                                    \
        DC_SEG(a_, row, i0_, W, end);                                                      \
        DC_SEG(b_, row, i0_ + 16u, W, end);                                                \
        const float left_ = (row)[i0_ > 0u ? i0_ - 1u : 0u];                               \
        m = shuffle2(a_, b_, DC_EVEN);                                                     \
        r = shuffle2(a_, b_, DC_ODD);                                                      \
        l = DC_UP(r, i0_ > 0u ? left_ : 0.0f);                                             \
    } while (0)

/* Stride 2, output rows of at most 8 columns (W <= 16): lanes 0..7 from
 * input row ih, lanes 8..15 from input row ih + 2 (0 outside the plane). */
#define DC_PAIR2(plane, ih, H, W, end, l, m, r)                                            \
    do {                                                                                   \
        float16 a_ = (float16)(0.0f), b_ = (float16)(0.0f);                                \
        if ((ih) >= 0 && (ih) < (int)(H)) DC_SEG(a_, (plane) + (size_t)(ih) * (W), 0u, W, end); \
        if ((ih) + 2 >= 0 && (ih) + 2 < (int)(H))                                          \
            DC_SEG(b_, (plane) + (size_t)((ih) + 2) * (W), 0u, W, end);                    \
        m = shuffle2(a_, b_, DC_EVEN);                                                     \
        r = shuffle2(a_, b_, DC_ODD);                                                      \
        l = shuffle2((float16)(0.0f), r,                                                   \
                     (uint16)(0, 16, 17, 18, 19, 20, 21, 22, 0, 24, 25, 26, 27, 28, 29, 30)); \
    } while (0)

/* The first n <= 16 lanes of v (plus bias when has_bias) at dst. */
void dc_store(float16 v, __global float *dst, uint n, __global const float *bias, uint has_bias)
{
    if (has_bias) v += (float16)(*bias);
    if (n == 16u) {
        vstore16(v, 0, dst);
        return;
    }
    float t[16];
    vstore16(v, 0, t);
    for (uint q = 0; q < n; q++) dst[q] = t[q];
}

/* acc[o] += w(o0 + o, c, kh, *) . (l, m, r) for the DB channels from o0
 * (channels past OC read channel OC - 1's weights: computed, not stored).
 */
#define DC_TAPS(acc, w, o0, OC, wo, wc, c, kh, flip, l, m, r)                           \
    do {                                                                                \
        const uint t0_ = (flip) ? 8u - (kh) * 3u : (kh) * 3u;                          \
        const int d_ = (flip) ? -1 : 1;                                                 \
        _Pragma("unroll") for (uint o_ = 0; o_ < DB; o_++)                              \
        {                                                                               \
            const uint oo_ = (o0) + o_ < (OC) ? (o0) + o_ : (OC) - 1u;                  \
            __global const float *wp_ = (w) + oo_ * (wo) + (c) * (wc) + t0_;            \
            acc[o_] = fma((float16)(wp_[0]), (l), acc[o_]);                             \
            acc[o_] = fma((float16)(wp_[d_]), (m), acc[o_]);                            \
            acc[o_] = fma((float16)(wp_[2 * d_]), (r), acc[o_]);                        \
        }                                                                               \
    } while (0)

/* The loop over the input channels of dc_rows / dc_pairs, once per stride
 * (as in the weight gradient's DC_DW_ROWS). */
#define DC_FWD_ROWS(ROW, STRIDE)                                                    \
    for (uint c = 0; c < C; c++) {                                                  \
        __global const float *plane = xb + (size_t)c * H * W;                       \
        _Pragma("unroll") for (uint kh = 0; kh < 3u; kh++)                          \
        {                                                                           \
            const int ih = (int)(oh * (STRIDE)) - 1 + (int)kh;                      \
            if (ih < 0 || ih >= (int)H) continue;                                   \
            float16 l, m, r;                                                        \
            ROW(plane + (size_t)ih * W, ow0, W, xend, l, m, r);                  \
            DC_TAPS(acc, w, o0, OC, wo, wc, c, kh, flip, l, m, r);                  \
        }                                                                           \
    }

#define DC_FWD_PAIRS(PAIR, STRIDE)                                                  \
    for (uint c = 0; c < C; c++) {                                                  \
        __global const float *plane = xb + (size_t)c * H * W;                       \
        _Pragma("unroll") for (uint kh = 0; kh < 3u; kh++)                          \
        {                                                                           \
            float16 l, m, r;                                                        \
            PAIR(plane, (int)(oh0 * (STRIDE)) - 1 + (int)kh, H, W, xend, l, m, r); \
            DC_TAPS(acc, w, o0, OC, wo, wc, c, kh, flip, l, m, r);                  \
        }                                                                           \
    }

/* Rows form: global id = ((b * nob + ob) * OH + oh) * nseg + seg. */
void dc_rows(uint B, uint C, uint H, uint W, uint OH, uint OW, uint S, uint OC, ulong wo, ulong wc,
             uint flip, __global const float *restrict x, __global const float *restrict w,
             __global const float *restrict bias, uint has_bias, __global float *restrict y)
{
    const uint nseg = (OW + 15u) / 16u, nob = (OC + DB - 1u) / DB;
    const uint g = (uint)get_global_id(0);
    const uint seg = g % nseg, oh = (g / nseg) % OH, ob = (g / (nseg * OH)) % nob,
               b = g / (nseg * OH * nob);
    const uint ow0 = seg * 16u, o0 = ob * DB;
    float16 acc[DB];
#pragma unroll
    for (uint o = 0; o < DB; o++) acc[o] = (float16)(0.0f);
    __global const float *xb = x + (size_t)b * C * H * W, *xend = x + (size_t)B * C * H * W;
    if (S == 1u) {
        DC_FWD_ROWS(DC_ROW, 1u)
    } else {
        DC_FWD_ROWS(DC_ROW2, 2u)
    }
    const uint n = OW - ow0 < 16u ? OW - ow0 : 16u;
#pragma unroll
    for (uint o = 0; o < DB; o++) /* unrolled: acc stays in registers */
        if (o0 + o < OC)
            dc_store(acc[o], y + (((size_t)b * OC + o0 + o) * OH + oh) * OW + ow0, n,
                     bias + o0 + o, has_bias);
}

/* Pairs form (OW <= 8): global id = (b * nob + ob) * ceil(OH / 2) + pair. */
void dc_pairs(uint B, uint C, uint H, uint W, uint OH, uint OW, uint S, uint OC, ulong wo, ulong wc,
              uint flip, __global const float *restrict x, __global const float *restrict w,
              __global const float *restrict bias, uint has_bias, __global float *restrict y)
{
    const uint np = (OH + 1u) / 2u, nob = (OC + DB - 1u) / DB;
    const uint g = (uint)get_global_id(0);
    const uint pr = g % np, ob = (g / np) % nob, b = g / (np * nob);
    const uint oh0 = pr * 2u, o0 = ob * DB;
    float16 acc[DB];
#pragma unroll
    for (uint o = 0; o < DB; o++) acc[o] = (float16)(0.0f);
    __global const float *xb = x + (size_t)b * C * H * W, *xend = x + (size_t)B * C * H * W;
    if (S == 1u) {
        DC_FWD_PAIRS(DC_PAIR, 1u)
    } else {
        DC_FWD_PAIRS(DC_PAIR2, 2u)
    }
    const uint rows = OH - oh0 < 2u ? OH - oh0 : 2u;
#pragma unroll
    for (uint o = 0; o < DB; o++) { /* unrolled: acc stays in registers */
        if (o0 + o >= OC) continue;
        __global float *yp = y + (((size_t)b * OC + o0 + o) * OH + oh0) * OW;
        dc_store(acc[o], yp, OW, bias + o0 + o, has_bias);
        if (rows == 2u) /* row oh0 + 1 from lane 8 */
            dc_store(acc[o].s89abcdef01234567, yp + OW, OW, bias + o0 + o, has_bias);
    }
}

#define DC_CONV_ARGS                                                                        \
    const uint B, const uint C, const uint H, const uint W, const uint OH, const uint OW,    \
        const uint S,                                                                       \
        const uint OC, const ulong wo, const ulong wc, __global const float *restrict x,    \
        __global const float *restrict w, __global const float *restrict bias,              \
        const uint has_bias, __global float *restrict y

/* The forward at stride S (1 or 2); the input gradient at stride 1 (S = 1,
 * OH = H, OW = W). */
__kernel void conv3x3_rows_fwd(DC_CONV_ARGS)
{
    dc_rows(B, C, H, W, OH, OW, S, OC, wo, wc, 0u, x, w, bias, has_bias, y);
}

__kernel void conv3x3_rows_bwd(DC_CONV_ARGS)
{
    dc_rows(B, C, H, W, OH, OW, S, OC, wo, wc, 1u, x, w, bias, has_bias, y);
}

__kernel void conv3x3_pairs_fwd(DC_CONV_ARGS)
{
    dc_pairs(B, C, H, W, OH, OW, S, OC, wo, wc, 0u, x, w, bias, has_bias, y);
}

__kernel void conv3x3_pairs_bwd(DC_CONV_ARGS)
{
    dc_pairs(B, C, H, W, OH, OW, S, OC, wo, wc, 1u, x, w, bias, has_bias, y);
}

/* The weight gradient's loops over a part's images for one kernel row kh,
 * once per stride (a stride chosen inside the loop cost 20-40% at stride
 * 1: the two row builders' registers): output rows oh whose input row oh*S
 * - 1 + kh lies in the plane. ROW / PAIR build the input row's three column
 * vectors; acc[o][kw] += dy(o0 + o) * column kw. */
#define DC_DW_ACC(d, o, l, m, r)                                                           \
    do {                                                                                   \
        acc[o][0] = fma((d), (l), acc[o][0]);                                              \
        acc[o][1] = fma((d), (m), acc[o][1]);                                              \
        acc[o][2] = fma((d), (r), acc[o][2]);                                              \
    } while (0)

#define DC_DW_ROWS(ROW, STRIDE)                                                            \
    for (uint b = part * NB; b < b1; b++) {                                                \
        __global const float *plane = x + ((size_t)b * C + c) * H * W;                     \
        __global const float *dp = dy + ((size_t)b * OC + o0) * OH * OW;                   \
        for (uint oh = 0; oh < OH; oh++) {                                                 \
            const int ih = (int)(oh * (STRIDE)) - 1 + (int)kh;                             \
            if (ih < 0 || ih >= (int)H) continue;                                          \
            for (uint seg = 0; seg < nseg; seg++) {                                        \
                const uint ow0 = seg * 16u;                                                \
                float16 l, m, r;                                                           \
                ROW(plane + (size_t)ih * W, ow0, W, xend, l, m, r);                        \
                _Pragma("unroll") for (uint o = 0; o < DW_OB; o++)                         \
                {                                                                          \
                    float16 d;                                                             \
                    DC_SEG(d, dp + (size_t)od[o] * OH * OW + (size_t)oh * OW, ow0, OW, dyend); \
                    DC_DW_ACC(d, o, l, m, r);                                              \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
    }

#define DC_DW_PAIRS(PAIR, STRIDE)                                                          \
    for (uint b = part * NB; b < b1; b++) {                                                \
        __global const float *plane = x + ((size_t)b * C + c) * H * W;                     \
        __global const float *dp = dy + ((size_t)b * OC + o0) * OH * OW;                   \
        for (uint oh0 = 0; oh0 < OH; oh0 += 2u) {                                          \
            float16 l, m, r;                                                               \
            PAIR(plane, (int)(oh0 * (STRIDE)) - 1 + (int)kh, H, W, xend, l, m, r);         \
            _Pragma("unroll") for (uint o = 0; o < DW_OB; o++)                             \
            {                                                                              \
                __global const float *dq = dp + (size_t)od[o] * OH * OW;                   \
                float16 d;                                                                 \
                if (OW == 8u && oh0 + 1u < OH) {                                           \
                    d = vload16(0, dq + (size_t)oh0 * 8u);                                 \
                } else {                                                                   \
                    float8 h0, h1;                                                         \
                    DC_HALF(h0, dq, (int)oh0, OH, OW, dyend);                              \
                    DC_HALF(h1, dq, (int)oh0 + 1, OH, OW, dyend);                          \
                    d = (float16)(h0, h1);                                                 \
                }                                                                          \
                DC_DW_ACC(d, o, l, m, r);                                                  \
            }                                                                              \
        }                                                                                  \
    }

float dc_sum16(float16 v)
{
    const float8 a = v.lo + v.hi;
    const float4 b = a.lo + a.hi;
    const float2 c = b.lo + b.hi;
    return c.x + c.y;
}

/* The work-item's place for a K x K kernel (global id = ((part * C + c) *
 * nob + ob) * K + kh, nob = ceil(OC / DW_OB)), its accumulators acc[o][kw],
 * and their store: the lanes summed, the part's [OC, C, K, K] at dwp + part
 * * OC*C*K*K. Channels past OC read channel o0 (computed, not stored). */
#define DC_DW_BEGIN(K)                                                                     \
    const uint nob = (OC + DW_OB - 1u) / DW_OB, g = (uint)get_global_id(0);                \
    const uint kh = g % (K), o0 = (g / (K)) % nob * DW_OB, c = (g / ((K)*nob)) % C,        \
               part = g / ((K)*nob * C);                                                   \
    uint od[DW_OB];                                                                        \
    _Pragma("unroll") for (uint o = 0; o < DW_OB; o++) od[o] = o0 + o < OC ? o : 0u;       \
    float16 acc[DW_OB][K];                                                                 \
    _Pragma("unroll") for (uint o = 0; o < DW_OB; o++)                                     \
        _Pragma("unroll") for (uint kw = 0; kw < (K); kw++) acc[o][kw] = (float16)(0.0f);  \
    const uint b1 = part * NB + NB < B ? part * NB + NB : B;                               \
    __global const float *dyend = dy + (size_t)B * OC * OH * OW

#define DC_DW_END(K)                                                                       \
    do {                                                                                   \
        __global float *out =                                                              \
            dwp + ((size_t)part * OC * C + c) * (K) * (K) + kh * (K);                      \
        _Pragma("unroll") for (uint o = 0; o < DW_OB; o++) /* acc stays in registers */  \
        {                                                                                  \
            if (o0 + o >= OC) continue;                                                    \
            __global float *q = out + (size_t)(o0 + o) * C * (K) * (K);                    \
            _Pragma("unroll") for (uint kw = 0; kw < (K); kw++) q[kw] = dc_sum16(acc[o][kw]); \
        }                                                                                  \
    } while (0)

/* Images [part*NB, min(B, part*NB + NB)); dy is [B, OC, OH, OW], stride S. */
__kernel void conv3x3_rows_dw(const uint B, const uint C, const uint H, const uint W,
                              const uint OH, const uint OW, const uint S, const uint OC,
                              const uint NB, __global const float *restrict x,
                              __global const float *restrict dy, __global float *restrict dwp)
{
    DC_DW_BEGIN(3u);
    __global const float *xend = x + (size_t)B * C * H * W;
    const uint nseg = (OW + 15u) / 16u;
    if (S == 1u) {
        DC_DW_ROWS(DC_ROW, 1u)
    } else {
        DC_DW_ROWS(DC_ROW2, 2u)
    }
    DC_DW_END(3u);
}

/* The same with two output rows of at most 8 columns per vector (OW <= 8). */
__kernel void conv3x3_pairs_dw(const uint B, const uint C, const uint H, const uint W,
                               const uint OH, const uint OW, const uint S, const uint OC,
                               const uint NB, __global const float *restrict x,
                               __global const float *restrict dy, __global float *restrict dwp)
{
    DC_DW_BEGIN(3u);
    __global const float *xend = x + (size_t)B * C * H * W;
    if (S == 1u) {
        DC_DW_PAIRS(DC_PAIR, 1u)
    } else {
        DC_DW_PAIRS(DC_PAIR2, 2u)
    }
    DC_DW_END(3u);
}

/* Input gradient at stride 2: dx [B, C, H, W] from dy [B, OC, OH, OW] (OC
 * input channels of this computation, C output channels in blocks of DB),
 * rows of dx in segments of 16 columns; global id = ((b * ncb + cb) * H +
 * ih) * nseg + seg. The weight of (c, o, kh, kw) at w[o*C*9 + c*9 + kh*3 +
 * kw]. Sum order per element: o, then kh, kw ascending over the taps that
 * reach it (at most 4 of 9), zero products in between. */
__kernel void conv3x3s2_rows_dx(const uint B, const uint C, const uint H, const uint W, const uint OH,
                                const uint OW, const uint OC, __global const float *restrict dy,
                                __global const float *restrict w, __global float *restrict dx)
{
    const uint nseg = (W + 15u) / 16u, ncb = (C + DB - 1u) / DB;
    const uint g = (uint)get_global_id(0);
    const uint seg = g % nseg, ih = (g / nseg) % H, cb = (g / (nseg * H)) % ncb,
               b = g / (nseg * H * ncb);
    const uint iw0 = seg * 16u, c0 = cb * DB, j0 = iw0 / 2u;
    const ulong wo = 9u, wc = (ulong)C * 9u;
    __global const float *dyend = dy + (size_t)B * OC * OH * OW;
    const float16 z = (float16)(0.0f);
    float16 acc[DB];
#pragma unroll
    for (uint o = 0; o < DB; o++) acc[o] = z;
    /* the kernel rows that reach row ih: kh = 1 (even ih), kh = 0 and 2 (odd) */
    const uint odd = ih & 1u;
    for (uint o = 0; o < OC; o++) {
        __global const float *plane = dy + ((size_t)b * OC + o) * OH * OW;
#pragma unroll
        for (uint kh = 0; kh < 3u; kh++) {
            if ((kh & 1u) == odd) continue; /* ih + 1 - kh odd */
            const uint oh = (ih + 1u - kh) / 2u; /* ih + 1 >= kh here */
            if (oh >= OH) continue;
            /* dy columns j0 .. j0 + 8 (0 past OW) */
            float16 d;
            DC_SEG(d, plane + (size_t)oh * OW, j0, OW, dyend);
            const float16 l = shuffle2(d, z, (uint16)(16, 1, 16, 2, 16, 3, 16, 4, 16, 5, 16, 6, 16, 7, 16, 8));
            const float16 m = shuffle2(d, z, (uint16)(0, 16, 1, 16, 2, 16, 3, 16, 4, 16, 5, 16, 6, 16, 7, 16));
            const float16 r = shuffle2(d, z, (uint16)(16, 0, 16, 1, 16, 2, 16, 3, 16, 4, 16, 5, 16, 6, 16, 7));
            DC_TAPS(acc, w, c0, C, wo, wc, o, kh, 0u, l, m, r);
        }
    }
    const uint n = W - iw0 < 16u ? W - iw0 : 16u;
#pragma unroll
    for (uint o = 0; o < DB; o++) /* unrolled: acc stays in registers */
        if (c0 + o < C) dc_store(acc[o], dx + (((size_t)b * C + c0 + o) * H + ih) * W + iw0, n, w, 0u);
}

/* ---- 5x5, stride 1, any padding P < 5 (LeNet-5's convolutions) ----
 * The same layout as the 3x3 rows kernels (16 output columns of one row x
 * DB output channels per work-item; OW = W + 2P - 4): an input row's window
 * of 20 columns from ow0 - P is loaded as two vectors (columns outside the
 * row 0) and kernel column kw's vector is lanes kw .. kw + 15 of the pair.
 * The input gradient is the forward on dy with the kernel flipped (t -> 24
 * - t), the channels' roles swapped and padding 4 - P. */

#define DC_SEGX(v, x, ro, s0, W, n)                                                        \
    do {                                                                                   \
        if ((s0) >= 0 && (s0) + 16 <= (int)(W))                                            \
            v = vload16(0, (x) + (ro) + (s0));                                             \
        else if ((ro) + (s0) >= 0 && (ro) + (s0) + 16 <= (long)(n))                        \
            v = select((float16)(0.0f), vload16(0, (x) + (ro) + (s0)),                     \
                       DC_LANES + (s0) >= 0 && DC_LANES + (s0) < (int)(W));                \
        else                                                                               \
            v = dc_segx_tail((x), (ro), (s0), (int)(W));                                   \
    } while (0)

/* v[kw] for kw < 5: the row's columns ow0 - P + kw + lane. */
#define DC_ROW5(v, x, ro, ow0, P, W, n)                                                    \
    do {                                                                                   \
        float16 a_, b_;                                                                    \
        DC_SEGX(a_, x, ro, (int)(ow0) - (int)(P), W, n);                                   \
        DC_SEGX(b_, x, ro, (int)(ow0) - (int)(P) + 16, W, n);                              \
        _Pragma("unroll") for (uint kw_ = 0; kw_ < 5u; kw_++) v[kw_] =                     \
            shuffle2(a_, b_, DC_LANES_U + (uint16)(kw_));                                  \
    } while (0)
#define DC_LANES_U (uint16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)

void dc5_rows(uint B, uint C, uint H, uint W, uint OH, uint OW, uint P, uint OC, ulong wo,
              ulong wc, uint flip, __global const float *restrict x,
              __global const float *restrict w, __global const float *restrict bias,
              uint has_bias, __global float *restrict y)
{
    const uint nseg = (OW + 15u) / 16u, nob = (OC + DB - 1u) / DB;
    const uint g = (uint)get_global_id(0);
    const uint seg = g % nseg, oh = (g / nseg) % OH, ob = (g / (nseg * OH)) % nob,
               b = g / (nseg * OH * nob);
    const uint ow0 = seg * 16u, o0 = ob * DB;
    const long n = (long)B * C * H * W;
    float16 acc[DB];
#pragma unroll
    for (uint o = 0; o < DB; o++) acc[o] = (float16)(0.0f);
    for (uint c = 0; c < C; c++) {
        const long po = ((long)b * C + c) * H * W;
#pragma unroll
        for (uint kh = 0; kh < 5u; kh++) {
            const int ih = (int)oh - (int)P + (int)kh;
            if (ih < 0 || ih >= (int)H) continue;
            float16 v[5];
            DC_ROW5(v, x, po + (long)ih * W, ow0, P, W, n);
#pragma unroll
            for (uint o = 0; o < DB; o++) {
                const uint oo = o0 + o < OC ? o0 + o : OC - 1u;
                __global const float *wp = w + oo * wo + c * wc;
#pragma unroll
                for (uint kw = 0; kw < 5u; kw++) {
                    const uint t = kh * 5u + kw;
                    acc[o] = fma((float16)(wp[flip ? 24u - t : t]), v[kw], acc[o]);
                }
            }
        }
    }
    const uint nv = OW - ow0 < 16u ? OW - ow0 : 16u;
#pragma unroll
    for (uint o = 0; o < DB; o++) /* unrolled: acc stays in registers */
        if (o0 + o < OC)
            dc_store(acc[o], y + (((size_t)b * OC + o0 + o) * OH + oh) * OW + ow0, nv,
                     bias + o0 + o, has_bias);
}

#define DC5_ARGS                                                                            \
    const uint B, const uint C, const uint H, const uint W, const uint OH, const uint OW,    \
        const uint P, const uint OC, const ulong wo, const ulong wc,                        \
        __global const float *restrict x, __global const float *restrict w,                 \
        __global const float *restrict bias, const uint has_bias, __global float *restrict y

/* The forward (padding P); the input gradient (flipped, padding 4 - P). */
__kernel void conv5x5_rows_fwd(DC5_ARGS)
{
    dc5_rows(B, C, H, W, OH, OW, P, OC, wo, wc, 0u, x, w, bias, has_bias, y);
}

__kernel void conv5x5_rows_bwd(DC5_ARGS)
{
    dc5_rows(B, C, H, W, OH, OW, P, OC, wo, wc, 1u, x, w, bias, has_bias, y);
}

/* Weight gradient, 5x5: as the 3x3 one (DC_DW_BEGIN / DC_DW_END), one
 * work-item per kernel row kh, DW_OB output channels, input channel and
 * part of the batch, 20 accumulators. */
__kernel void conv5x5_rows_dw(const uint B, const uint C, const uint H, const uint W,
                              const uint OH, const uint OW, const uint P, const uint OC,
                              const uint NB, __global const float *restrict x,
                              __global const float *restrict dy, __global float *restrict dwp)
{
    DC_DW_BEGIN(5u);
    const uint nseg = (OW + 15u) / 16u;
    const long n = (long)B * C * H * W;
    for (uint b = part * NB; b < b1; b++) {
        const long po = ((long)b * C + c) * H * W;
        __global const float *dp = dy + ((size_t)b * OC + o0) * OH * OW;
        for (uint oh = 0; oh < OH; oh++) {
            const int ih = (int)oh - (int)P + (int)kh;
            if (ih < 0 || ih >= (int)H) continue;
            for (uint seg = 0; seg < nseg; seg++) {
                const uint ow0 = seg * 16u;
                float16 v[5];
                DC_ROW5(v, x, po + (long)ih * W, ow0, P, W, n);
#pragma unroll
                for (uint o = 0; o < DW_OB; o++) {
                    float16 d;
                    DC_SEG(d, dp + (size_t)od[o] * OH * OW + (size_t)oh * OW, ow0, OW, dyend);
#pragma unroll
                    for (uint kw = 0; kw < 5u; kw++) acc[o][kw] = fma(d, v[kw], acc[o][kw]);
                }
            }
        }
    }
    DC_DW_END(5u);
}
