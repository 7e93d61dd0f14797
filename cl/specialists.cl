/* The KL combination of a generalist with its specialists (Hinton, Vinyals &
 * Dean 2015, section 5): one work-group per example, plain OpenCL C 1.2.
 *
 * Per row b, with the generalist's logits z (K), p_g = softmax(z):
 *  1. the top_n classes of z (largest logit first, ties -> lower index) and
 *     the active specialists A = {m : S_m meets them} (active[b, m] = 1/0);
 *  2. no active specialist: out = log p_g;
 *  3. otherwise gradient descent on w, q = softmax(w), from w = z, for
 *         F(w) = KL(p_g || q) + sum_{m in A} KL(p_m || q_m),
 *     q_m = (q_c for c in S_m, dustbin Qd_m = sum_{i notin S_m} q_i):
 *         g_j = (1 + |A|) q_j - T_j - sum_{m in A, j notin S_m} p_m,d q_j / Qd_m
 *         T_j = p_g,j + sum_{m in A, j in S_m} p_m,j    (constant over the steps)
 *         w  -= (lr / (1 + |A|)) g
 *     and out = log softmax(w).
 *  q_j / Qd_m is evaluated as exp(w_j - mx_m) / E_m with mx_m = max_{i notin S_m} w_i
 *  and E_m = sum_{i notin S_m} exp(w_i - mx_m) >= 1: never 0/0, even where
 *  every exp(w_i - max w) of the complement underflows. A specialist whose
 *  cluster holds all K classes has no dustbin class to match (q_m's dustbin is
 *  identically 0); its w-dependent term is -sum_{c} p_m,c log q_c, whose
 *  gradient (1 - p_m,d) q - p_m,S is what the kernel uses (its "q_j / Qd_m" is
 *  q_j), so the gradient still sums to 0 over j and w does not drift.
 *
 * Layout: z [>= rows, K]; spec holds specialist m's logits for row b at float
 * offset blk[m] + b * (|S_m| + 1) (|S_m| + 1 = cls_off[m + 1] - cls_off[m] + 1,
 * the last one the dustbin) and, from float offset tgt_off, a [rows, K]
 * scratch for T; out [rows, K] holds w during the iterations and log q at the
 * end; member is the U8 [M, K] membership bitmap, cls / cls_off the class
 * lists. Every work-item owns the classes j = lid, lid + n, ... of its row in
 * every loop over classes, so w needs no barrier between the update of one
 * step and the reductions of the next; T is written through the class lists
 * (by other work-items) and is fenced by global barriers.
 *
 * Reductions merge log-sum-exp pairs (max, sum exp(x - max)) in a fixed order
 * (deterministic for a given work-group size); every exponent argument is
 * <= 0. Contraction to fma is off so x - max is exactly 0 at the max. */
#pragma OPENCL FP_CONTRACT OFF

/* Merge (m2, s2) into (m, s): s exp(m) + s2 exp(m2) = s' exp(m'). An empty
 * set is (-inf, 0) and leaves the other side unchanged. */
void lse_merge(float *m, float *s, float m2, float s2)
{
    if (m2 > *m) {
        *s = *s * exp(*m - m2) + s2; /* exp(-inf) = 0 when *m is empty */
        *m = m2;
    } else if (m2 > -INFINITY) {
        *s += s2 * exp(m2 - *m);
    }
}

/* Add one element x to (m, s); -inf (and NaN) add nothing. */
void lse_add(float *m, float *s, float x)
{
    if (x > *m) {
        *s = *s * exp(*m - x) + 1.0f;
        *m = x;
    } else if (x > -INFINITY) {
        *s += exp(x - *m);
    }
}

/* Is (v, i) after (pv, pi) in the order "larger value first, then lower
 * index"? NaN is never after anything (it is never picked). Indices are
 * carried as floats (exact: K <= 2^24 is checked on the host). */
int after(float v, float i, float pv, float pi)
{
    return v < pv || (v == pv && i > pi);
}

#define RED_LSE 0   /* pairs (max, sum exp(x - max)); identity (-inf, 0) */
#define RED_FIRST 1 /* pairs (value, index), first in the order above; identity (-inf, +inf) */

void pair_merge(int mode, float *a, float *b, float a2, float b2)
{
    if (mode == RED_LSE) {
        lse_merge(a, b, a2, b2);
    } else if (a2 > *a || (a2 == *a && b2 < *b)) {
        *a = a2;
        *b = b2;
    }
}

/* Group-wide reduction of the work-items' pairs; every work-item gets the
 * result. Straight-line barriers only (no loop around them): P = min(n, 16)
 * work-items each merge n / P consecutive entries, then work-item 0 merges
 * the P partial results; the order is fixed, so the result is deterministic
 * for a given work-group size (n is a power of two). */
void wg_pair(int mode, __local float *sa, __local float *sb, float *a, float *b)
{
    const uint lid = (uint)get_local_id(0), n = (uint)get_local_size(0);
    sa[lid] = *a;
    sb[lid] = *b;
    barrier(CLK_LOCAL_MEM_FENCE);
    const uint P = n < 16u ? n : 16u, per = n / P;
    if (lid < P) {
        const uint o = lid * per;
        float x = sa[o], y = sb[o];
        for (uint i = 1; i < per; i++) pair_merge(mode, &x, &y, sa[o + i], sb[o + i]);
        sa[o] = x;
        sb[o] = y;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    if (lid == 0) {
        float x = sa[0], y = sb[0];
        for (uint i = 1; i < P; i++) pair_merge(mode, &x, &y, sa[i * per], sb[i * per]);
        sa[0] = x;
        sb[0] = y;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    *a = sa[0];
    *b = sb[0];
}

/* The kernel is one loop over phases, each "partial over the row's elements,
 * one group reduction, apply the result, barrier" (a single reduction site
 * and no early exits around barriers: PoCL compiles nested loops of barriers
 * very slowly). The phases, in order:
 *   PICK  x top_n   the next of the top classes; mark the clusters holding it
 *   ACT             work-item 0 lists the active clusters (act[0..na), na = act[M])
 *   ZLSE            log-sum-exp of z; T = p_g, w = z
 *   SPEC  x na      log-sum-exp of specialist a's logits; T += its special
 *                   probabilities, pd[a] = its dustbin probability
 *   STEP  x steps * (1 + na), steps = iters (0 when na = 0):
 *         WLSE      (first the pending update of the previous step) the
 *                   log-sum-exp of w: (mx, s)
 *         CLSE x na the log-sum-exp of w over the complement of S_a:
 *                   dmx[a], dco[a] = pd[a] / E_a (covering: dmx = +inf, dco = pd[a])
 *   FINAL           (the pending update) out = w - lse(w)
 * Local scratch: sa, sb: lws floats; act: M + 1 ints; pd, dmx, dco: M floats. */
__kernel void combine(__global const float *z, __global float *spec, const ulong tgt_off,
                      __global const uchar *member, __global const int *cls,
                      __global const int *cls_off, __global const int *blk,
                      __global float *out, __global uchar *active, const uint K, const uint M,
                      const uint top_n, const uint iters, const float lr, __local float *sa,
                      __local float *sb, __local int *act, __local float *pd,
                      __local float *dmx, __local float *dco)
{
    const size_t row = get_group_id(0);
    const uint lid = (uint)get_local_id(0), n = (uint)get_local_size(0);
    __global const float *zr = z + row * K;
    __global float *w = out + row * K;
    __global float *tgt = spec + tgt_off + row * K;
    __global uchar *arow = active + row * M;

    /* Work-item lid owns the clusters m = lid, lid + n, ... of the active
     * row and the classes k = lid, lid + n, ... of w and T. */
    for (uint m = lid; m < M; m += n) arow[m] = 0;

    const ulong ph_z = (ulong)top_n + 1; /* ZLSE */
    ulong total = ph_z + 1;              /* extended once na is known */
    int na = 0;
    uint steps = 0;
    float c1 = 1.0f, step = 0.0f;
    float pv = INFINITY, pi = -1.0f; /* the previous pick */
    float mx = 0.0f, s = 1.0f;       /* lse(w) of the current step */

    for (ulong ph = 0; ph < total; ph++) {
        const int pick = ph < top_n, zlse = ph == ph_z, final = ph + 1 == total && ph > ph_z;
        const int spc = ph > ph_z && ph <= ph_z + (ulong)na;
        const ulong rel = ph - ph_z - 1 - (ulong)na; /* within the steps (when stepping) */
        const int stepping = !pick && ph > ph_z + (ulong)na && !final;
        const int r = stepping ? (int)(rel % (ulong)(1 + na)) : 0; /* 0: WLSE, a + 1: CLSE a */
        const int a = spc ? (int)(ph - ph_z - 1) : r - 1;
        const int upd = (stepping && r == 0 && rel > 0) || (final && steps > 0);

        /* partial */
        const int mode = pick ? RED_FIRST : RED_LSE;
        float ra = -INFINITY, rb = pick ? INFINITY : 0.0f;
        if (pick) {
            for (uint k = lid; k < K; k += n) {
                const float x = zr[k], fk = (float)k;
                if (after(x, fk, pv, pi) && (x > ra || (x == ra && fk < rb))) {
                    ra = x;
                    rb = fk;
                }
            }
        } else if (zlse) {
            na = act[M];
            steps = na ? iters : 0u;
            c1 = (float)(1 + na);
            step = lr / c1;
            total = ph_z + 2 + (ulong)na + (ulong)steps * (ulong)(1 + na);
            for (uint k = lid; k < K; k += n) lse_add(&ra, &rb, zr[k]);
        } else if (spc) {
            const uint m = (uint)act[a];
            const uint ns = (uint)(cls_off[m + 1] - cls_off[m]);
            __global const float *l = spec + (size_t)blk[m] + row * (ns + 1);
            for (uint i = lid; i <= ns; i += n) lse_add(&ra, &rb, l[i]);
        } else if ((stepping && r == 0) || final) {
            for (uint k = lid; k < K; k += n) {
                float wk = w[k];
                if (upd) {
                    const float q = exp(wk - mx) / s;
                    float d = 0.0f;
                    for (int b = 0; b < na; b++) {
                        const float dm = dmx[b];
                        if (dm == INFINITY)
                            d += dco[b] * q;
                        else if (!member[(size_t)act[b] * K + k])
                            d += dco[b] * exp(wk - dm);
                    }
                    const float g = (c1 * q - tgt[k]) - d;
                    wk = wk - step * g;
                    w[k] = wk;
                }
                lse_add(&ra, &rb, wk);
            }
        } else if (stepping) {
            __global const uchar *mem = member + (size_t)act[a] * K;
            for (uint k = lid; k < K; k += n)
                if (!mem[k]) lse_add(&ra, &rb, w[k]);
        }

        wg_pair(mode, sa, sb, &ra, &rb);

        /* apply */
        if (pick) {
            if (rb != INFINITY) { /* +inf: fewer than top_n non-NaN logits */
                const uint c = (uint)rb;
                for (uint m = lid; m < M; m += n)
                    if (member[(size_t)m * K + c]) arow[m] = 1;
                pv = ra;
                pi = rb;
            }
        } else if (ph == top_n) {
            if (lid == 0) {
                int cnt = 0;
                for (uint m = 0; m < M; m++)
                    if (arow[m]) act[cnt++] = (int)m;
                act[M] = cnt;
            }
        } else if (zlse) {
            for (uint k = lid; k < K; k += n) {
                const float x = zr[k];
                if (na) tgt[k] = exp(x - ra) / rb;
                w[k] = x;
            }
        } else if (spc) {
            const uint m = (uint)act[a];
            const int off = cls_off[m];
            const uint ns = (uint)(cls_off[m + 1] - off);
            __global const float *l = spec + (size_t)blk[m] + row * (ns + 1);
            for (uint i = lid; i < ns; i += n) tgt[cls[off + (int)i]] += exp(l[i] - ra) / rb;
            if (lid == 0) pd[a] = exp(l[ns] - ra) / rb;
        } else if (final) {
            const float ls = log(rb);
            for (uint k = lid; k < K; k += n) w[k] = (w[k] - ra) - ls;
        } else if (r == 0) {
            mx = ra;
            s = rb;
        } else if (lid == 0) {
            /* rb >= 1 (its largest term is exp(0)), or 0: S_a holds every class. */
            const int cover = !(rb > 0.0f);
            dmx[a] = cover ? INFINITY : ra;
            dco[a] = cover ? pd[a] : pd[a] / rb;
        }
        barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);
    }
}
