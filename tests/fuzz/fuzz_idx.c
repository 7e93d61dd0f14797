/* IDX (MNIST) pair, raw files: kdcl_dataset_load_idx. The input is split into
 * the labels file (its first 2 bytes give its length) and the images file. */
#include "fuzz_util.h"
#include "kdcl/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    size_t nl = (size_t)data[0] | ((size_t)data[1] << 8);
    data += 2, size -= 2;
    if (nl > size) nl = size;
    const char *lp = fz_write(0, "labels-idx1-ubyte", data, nl);
    const char *ip = fz_write(1, "images-idx3-ubyte", data + nl, size - nl);
    kdcl_dataset d;
    if (kdcl_dataset_load_idx(ip, lp, &d) == KDCL_OK) kdcl_dataset_free(&d);
    return 0;
}
