/* IDX (MNIST) pair through the gzip reader: kdcl_dataset_load_idx. The first
 * byte picks the mode: bit 0 set, the rest of the input is the images file as
 * it is (gzip bytes mutated directly: headers, deflate blocks, CRC, trailer);
 * clear, the rest is an IDX images payload that the harness compresses (so
 * the header-first checks and the hard cap of the inflated size see
 * meaningful headers). The labels file is a fixed valid gzip IDX of 3
 * labels. */
#include <stdio.h>
#include <zlib.h>

#include "fuzz_util.h"
#include "kdcl/data.h"

static const char *labels_path;

static void write_gz(const char *path, const uint8_t *d, size_t n, int level)
{
    char mode[8] = "wb";
    mode[2] = (char)('0' + level);
    gzFile g = gzopen(path, mode);
    if (!g || (n && gzwrite(g, d, (unsigned)n) != (int)n) || gzclose(g) != Z_OK) __builtin_trap();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    static const uint8_t lab[11] = {0, 0, 8, 1, 0, 0, 0, 3, 0, 1, 2};
    static char path[512];
    const char *p = fz_path(0, "labels-idx1-ubyte.gz");
    snprintf(path, sizeof path, "%s", p);
    write_gz(path, lab, sizeof lab, 6);
    labels_path = path;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int raw = data[0] & 1, level = (data[0] >> 1) % 10;
    const char *ip;
    if (raw) {
        ip = fz_write(1, "images-idx3-ubyte.gz", data + 1, size - 1);
    } else {
        ip = fz_path(1, "images-idx3-ubyte.gz");
        write_gz(ip, data + 1, size - 1, level);
    }
    kdcl_dataset d;
    if (kdcl_dataset_load_idx(ip, labels_path, &d) == KDCL_OK) kdcl_dataset_free(&d);
    return 0;
}
