/* Deterministic host RNG (xoshiro256** seeded by splitmix64) and shuffling. */
#include "kdcl/data.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void kdcl_rng_seed(kdcl_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
    /* splitmix64 never yields four zero words in a row, but be safe. */
    if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3])) r->s[0] = 1;
}

uint64_t kdcl_rng_next(kdcl_rng *r)
{
    uint64_t *s = r->s;
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t kdcl_rng_below(kdcl_rng *r, uint64_t n)
{
    if (n <= 1) return 0;
    /* Reject the lowest (2^64 mod n) values so every residue is equally likely. */
    const uint64_t threshold = (0 - n) % n;
    for (;;) {
        uint64_t x = kdcl_rng_next(r);
        if (x >= threshold) return x % n;
    }
}

double kdcl_rng_uniform(kdcl_rng *r)
{
    return (double)(kdcl_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

void kdcl_shuffle_indices(size_t *idx, size_t n, uint64_t seed, uint64_t epoch)
{
    if (!idx) return;
    uint64_t x = seed, y = epoch ^ 0x6A09E667F3BCC908ull;
    uint64_t a = splitmix64(&x), b = splitmix64(&y);
    kdcl_rng r;
    kdcl_rng_seed(&r, a ^ (b * 0xD1342543DE82EF95ull + 1));
    for (size_t i = 0; i < n; i++) idx[i] = i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)kdcl_rng_below(&r, (uint64_t)i);
        size_t t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}
