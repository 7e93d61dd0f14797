/* Devices as JSON text (kdcl_devices_json, kdcl_ctx_device_json). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdcl/runtime.h"

static cJSON *device_object(const kdcl_device_info *d)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    char id[48];
    snprintf(id, sizeof id, "%u:%u", d->platform_index, d->device_index);
    int ok = cJSON_AddStringToObject(o, "id", id) &&
             cJSON_AddStringToObject(o, "platform", d->platform_name) &&
             cJSON_AddStringToObject(o, "platform_vendor", d->platform_vendor) &&
             cJSON_AddStringToObject(o, "platform_version", d->platform_version) &&
             cJSON_AddStringToObject(o, "name", d->name) &&
             cJSON_AddStringToObject(o, "vendor", d->vendor) &&
             cJSON_AddStringToObject(o, "driver_version", d->driver_version) &&
             cJSON_AddStringToObject(o, "device_version", d->device_version) &&
             cJSON_AddStringToObject(o, "opencl_c_version", d->opencl_c_version) &&
             cJSON_AddStringToObject(o, "type", kdcl_device_type_name(d->type)) &&
             cJSON_AddNumberToObject(o, "compute_units", d->compute_units) &&
             cJSON_AddNumberToObject(o, "clock_mhz", d->clock_mhz) &&
             cJSON_AddNumberToObject(o, "global_mem", (double)d->global_mem) &&
             cJSON_AddNumberToObject(o, "local_mem", (double)d->local_mem) &&
             cJSON_AddNumberToObject(o, "max_alloc", (double)d->max_alloc) &&
             cJSON_AddNumberToObject(o, "max_work_group", (double)d->max_work_group) &&
             cJSON_AddBoolToObject(o, "fp64", d->fp64) &&
             cJSON_AddBoolToObject(o, "fp16", d->fp16);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* Print j into buf (consumes j). */
static kdcl_status emit(cJSON *j, char *buf, size_t size, size_t *needed)
{
    char *text = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (!text) return kdcl_set_error(KDCL_ERR_OOM, "devices as JSON: out of host memory");
    size_t n = strlen(text) + 1;
    if (needed) *needed = n;
    if (buf && size >= n) memcpy(buf, text, n);
    else if (buf && size) buf[0] = '\0';
    free(text);
    return KDCL_OK;
}

kdcl_status kdcl_devices_json(char *buf, size_t size, size_t *needed)
{
    kdcl_device_info *devs = NULL;
    size_t n = 0;
    kdcl_status s = kdcl_list_devices(&devs, &n);
    if (s) return s;
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++) {
        cJSON *o = device_object(&devs[i]);
        if (!o || !cJSON_AddItemToArray(a, o)) {
            cJSON_Delete(o);
            cJSON_Delete(a);
            a = NULL;
        }
    }
    free(devs);
    return emit(a, buf, size, needed);
}

kdcl_status kdcl_ctx_device_json(const kdcl_ctx *ctx, char *buf, size_t size, size_t *needed)
{
    if (!ctx) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "device as JSON: no context");
    return emit(device_object(kdcl_ctx_device(ctx)), buf, size, needed);
}
