/* safetensors reading: kdcl_st_read (header length, JSON header, dtypes,
 * shapes, offsets, overlaps, metadata), then the lookups a loader makes. */
#include <string.h>

#include "fuzz_util.h"
#include "kdcl/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = fz_write(0, "in.safetensors", data, size);
    kdcl_st_file f;
    if (kdcl_st_read(p, &f) != KDCL_OK) return 0;
    for (size_t i = 0; i < f.n_tensors; i++) {
        const kdcl_st_tensor *t = &f.tensors[i];
        if (kdcl_st_find(&f, t->name) == NULL) __builtin_trap();
        const float *d;
        if (kdcl_st_get_f32(&f, t->name, t->ndim, t->shape, &d) == KDCL_OK && t->nbytes >= 4) {
            volatile float x = d[t->nbytes / 4 - 1]; /* the last element is readable */
            (void)x;
        }
    }
    for (size_t i = 0; i < f.n_meta; i++)
        if (kdcl_st_meta(&f, f.meta_keys[i]) == NULL) __builtin_trap();
    kdcl_st_free(&f);
    return 0;
}
