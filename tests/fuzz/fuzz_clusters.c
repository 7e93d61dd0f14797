/* Clusters files (kdcl specialists cluster --out): kdcl_clusters_load_json,
 * with the number of classes expected taken from the first byte (0: any). */
#include "fuzz_util.h"
#include "kdcl/specialists.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    size_t K = data[0] % 16;
    const char *p = fz_write(0, "clusters.json", data + 1, size - 1);
    kdcl_clusters c;
    if (kdcl_clusters_load_json(p, K, &c) == KDCL_OK) {
        if (kdcl_clusters_check("fuzz", &c) != KDCL_OK) __builtin_trap();
        kdcl_clusters_free(&c);
    }
    return 0;
}
