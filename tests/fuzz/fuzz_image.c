/* One image file (PNG, JPEG, BMP; everything else refused): kdcl_image_decode,
 * from memory, to 28x28 grey and to 32x32 RGB; the first byte picks an
 * output size for a third decode (so the resizer sees many shapes). */
#include <stdlib.h>

#include "fuzz_util.h"
#include "kdcl/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t out[64 * 64 * 3];
    if (size < 1) return 0;
    size_t w = (size_t)(data[0] & 63) + 1, h = (size_t)((data[0] >> 2) & 63) + 1;
    data++, size--;
    if (kdcl_image_decode(data, size, "fuzz", 32, 32, 3, out) != KDCL_OK) return 0;
    kdcl_image_decode(data, size, "fuzz", 28, 28, 1, out);
    kdcl_image_decode(data, size, "fuzz", w, h, 3, out);
    return 0;
}
