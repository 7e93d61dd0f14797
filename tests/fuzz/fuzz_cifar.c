/* CIFAR-10 / CIFAR-100 binary batches: kdcl_dataset_load_cifar. The first
 * byte picks CIFAR-10, CIFAR-100 coarse or fine labels and whether the file
 * is written as it is or gzip-compressed; a class-names file next to it is
 * written from the input too (bit 2), so the names reader runs. */
#include <zlib.h>

#include "fuzz_util.h"
#include "kdcl/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int mode = data[0], c100 = mode & 1, fine = (mode >> 1) & 1, names = (mode >> 2) & 1,
        gz = (mode >> 3) & 1;
    data++, size--;
    size_t nn = 0;
    if (names && size) { /* the first byte: the names file's length */
        nn = data[0];
        data++, size--;
        if (nn > size) nn = size;
    }
    const char *meta = c100 ? (fine ? "fine_label_names.txt" : "coarse_label_names.txt")
                            : "batches.meta.txt";
    if (names)
        fz_write(2, meta, data, nn);
    else
        fz_remove(meta);
    data += nn, size -= nn;
    const char *p;
    if (gz) {
        p = fz_path(0, "batch.bin");
        gzFile g = gzopen(p, "wb1");
        if (!g || (size && gzwrite(g, data, (unsigned)size) != (int)size) || gzclose(g) != Z_OK)
            __builtin_trap();
    } else {
        p = fz_write(0, "batch.bin", data, size);
    }
    const char *files[1] = {p};
    kdcl_dataset d;
    if (kdcl_dataset_load_cifar(files, 1, c100, fine, &d) == KDCL_OK) kdcl_dataset_free(&d);
    return 0;
}
