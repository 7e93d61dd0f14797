/* Architecture JSON (--arch @FILE.json and the checkpoints' kdcl.model):
 * kdcl_model_spec_from_json, kdcl_spec_check_json_shapes and shape inference
 * on an input shape from the first bytes; with bit 7 of the first byte the
 * text goes through a file and kdcl_model_spec_parse("@FILE"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "kdcl/model.h"
#include "nn/spec_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4) return 0;
    int via_file = data[0] >> 7;
    kdcl_shape3 in = {(size_t)(data[1] & 3) + 1, (size_t)data[2] + 1, (size_t)data[3] + 1, 0};
    kdcl_model_spec s = {0};
    kdcl_status st;
    char *text = fz_cstr(data + 4, size - 4);
    if (via_file) {
        const char *p = fz_write(0, "arch.json", data + 4, size - 4);
        char arg[600];
        snprintf(arg, sizeof arg, "@%s", p);
        st = kdcl_model_spec_parse(arg, (size_t)(data[0] & 127) + 1, &s);
    } else {
        st = kdcl_model_spec_from_json(text, &s);
        if (st == KDCL_OK) st = kdcl_spec_check_json_shapes(text, &s, in);
    }
    if (st == KDCL_OK) {
        if (s.in_features) in = (kdcl_shape3){1, 1, s.in_features, 0};
        kdcl_shape3 *outs = calloc(s.n ? s.n : 1, sizeof *outs);
        if (!outs) abort();
        kdcl_spec_infer_model(&s, in, outs);
        free(outs);
    }
    kdcl_model_spec_free(&s);
    free(text);
    return 0;
}
