/* Architecture spec strings (--arch): kdcl_model_spec_parse, then shape
 * inference on an input shape taken from the first bytes, then the kdcl.model
 * JSON written for it must read back (kdcl_spec_to_json ->
 * kdcl_model_spec_from_json -> kdcl_spec_check_json_shapes). */
#include <stdlib.h>

#include "fuzz_util.h"
#include "kdcl/model.h"
#include "nn/spec_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4) return 0;
    size_t n_classes = (size_t)data[0] + 1;
    kdcl_shape3 in = {(size_t)(data[1] & 3) + 1, (size_t)data[2] + 1, (size_t)data[3] + 1, 0};
    char *text = fz_cstr(data + 4, size - 4);
    if (text[0] == '@') { /* no files named by the fuzzer */
        free(text);
        return 0;
    }
    kdcl_model_spec s = {0};
    if (kdcl_model_spec_parse(text, n_classes, &s) == KDCL_OK) {
        if (s.in_features) in = (kdcl_shape3){1, 1, s.in_features, 0}; /* "A-B-...-K" */
        kdcl_shape3 *outs = calloc(s.n ? s.n : 1, sizeof *outs);
        if (!outs) abort();
        if (kdcl_spec_infer_model(&s, in, outs) == KDCL_OK) {
            char *json = kdcl_spec_to_json(&s, in);
            if (!json) __builtin_trap();
            kdcl_model_spec back = {0};
            if (kdcl_model_spec_from_json(json, &back) != KDCL_OK ||
                kdcl_spec_check_json_shapes(json, &back, in) != KDCL_OK)
                __builtin_trap(); /* what kdcl writes, it must read */
            kdcl_model_spec_free(&back);
            free(json);
        }
        free(outs);
        kdcl_model_spec_free(&s);
    }
    free(text);
    return 0;
}
