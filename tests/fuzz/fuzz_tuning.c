/* GEMM tuning files (kdcl tune, read when a context is created): the host-side
 * parser kdcl__tuning_parse that feeds CLBlastOverrideParameters. */
#include <string.h>

#include "core/gemm_internal.h"
#include "fuzz_util.h"

static kdcl_status check(void *user, const tuned_kernel *k)
{
    (void)user;
    if (!k->kernel || k->n == 0 || k->n > KDCL_TUNING_MAX_PARAMS) __builtin_trap();
    for (size_t i = 0; i < k->n; i++)
        if (!k->names[i] || strlen(k->names[i]) > (size_t)1 << 20 || k->values[i] > 2147483647u)
            __builtin_trap();
    return KDCL_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int applied = 0;
    kdcl__tuning_parse("fuzz.json", (const char *)data, size, check, NULL, &applied);
    return 0;
}
