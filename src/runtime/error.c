#include "kdcl/status.h"

#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#define KDCL_ERRMSG_MAX 16384

static _Thread_local char g_errmsg[KDCL_ERRMSG_MAX];

const char *kdcl_version(void) { return KDCL_VERSION; }

void kdcl_free(void *p) { free(p); }

const char *kdcl_last_error(void) { return g_errmsg; }

void kdcl_clear_error(void) { g_errmsg[0] = '\0'; }

kdcl_status kdcl_set_error(kdcl_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_errmsg, sizeof g_errmsg, fmt, ap);
    va_end(ap);
    return s;
}

const char *kdcl_status_name(kdcl_status s)
{
    switch (s) {
    case KDCL_OK: return "KDCL_OK";
    case KDCL_ERR_INVALID_ARG: return "KDCL_ERR_INVALID_ARG";
    case KDCL_ERR_IO: return "KDCL_ERR_IO";
    case KDCL_ERR_FORMAT: return "KDCL_ERR_FORMAT";
    case KDCL_ERR_NO_DEVICE: return "KDCL_ERR_NO_DEVICE";
    case KDCL_ERR_OPENCL: return "KDCL_ERR_OPENCL";
    case KDCL_ERR_BUILD: return "KDCL_ERR_BUILD";
    case KDCL_ERR_OOM: return "KDCL_ERR_OOM";
    case KDCL_ERR_CLBLAST: return "KDCL_ERR_CLBLAST";
    case KDCL_ERR_NUMERIC: return "KDCL_ERR_NUMERIC";
    case KDCL_ERR_OVERFLOW: return "KDCL_ERR_OVERFLOW";
    case KDCL_ERR_INTERNAL: return "KDCL_ERR_INTERNAL";
    }
    return "KDCL_ERR_UNKNOWN";
}

const char *kdcl_cl_error_name(int e)
{
    switch (e) {
#define N(x, v) case v: return #x;
    N(CL_SUCCESS, 0)
    N(CL_DEVICE_NOT_FOUND, -1)
    N(CL_DEVICE_NOT_AVAILABLE, -2)
    N(CL_COMPILER_NOT_AVAILABLE, -3)
    N(CL_MEM_OBJECT_ALLOCATION_FAILURE, -4)
    N(CL_OUT_OF_RESOURCES, -5)
    N(CL_OUT_OF_HOST_MEMORY, -6)
    N(CL_PROFILING_INFO_NOT_AVAILABLE, -7)
    N(CL_MEM_COPY_OVERLAP, -8)
    N(CL_IMAGE_FORMAT_MISMATCH, -9)
    N(CL_IMAGE_FORMAT_NOT_SUPPORTED, -10)
    N(CL_BUILD_PROGRAM_FAILURE, -11)
    N(CL_MAP_FAILURE, -12)
    N(CL_MISALIGNED_SUB_BUFFER_OFFSET, -13)
    N(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST, -14)
    N(CL_COMPILE_PROGRAM_FAILURE, -15)
    N(CL_LINKER_NOT_AVAILABLE, -16)
    N(CL_LINK_PROGRAM_FAILURE, -17)
    N(CL_DEVICE_PARTITION_FAILED, -18)
    N(CL_KERNEL_ARG_INFO_NOT_AVAILABLE, -19)
    N(CL_INVALID_VALUE, -30)
    N(CL_INVALID_DEVICE_TYPE, -31)
    N(CL_INVALID_PLATFORM, -32)
    N(CL_INVALID_DEVICE, -33)
    N(CL_INVALID_CONTEXT, -34)
    N(CL_INVALID_QUEUE_PROPERTIES, -35)
    N(CL_INVALID_COMMAND_QUEUE, -36)
    N(CL_INVALID_HOST_PTR, -37)
    N(CL_INVALID_MEM_OBJECT, -38)
    N(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR, -39)
    N(CL_INVALID_IMAGE_SIZE, -40)
    N(CL_INVALID_SAMPLER, -41)
    N(CL_INVALID_BINARY, -42)
    N(CL_INVALID_BUILD_OPTIONS, -43)
    N(CL_INVALID_PROGRAM, -44)
    N(CL_INVALID_PROGRAM_EXECUTABLE, -45)
    N(CL_INVALID_KERNEL_NAME, -46)
    N(CL_INVALID_KERNEL_DEFINITION, -47)
    N(CL_INVALID_KERNEL, -48)
    N(CL_INVALID_ARG_INDEX, -49)
    N(CL_INVALID_ARG_VALUE, -50)
    N(CL_INVALID_ARG_SIZE, -51)
    N(CL_INVALID_KERNEL_ARGS, -52)
    N(CL_INVALID_WORK_DIMENSION, -53)
    N(CL_INVALID_WORK_GROUP_SIZE, -54)
    N(CL_INVALID_WORK_ITEM_SIZE, -55)
    N(CL_INVALID_GLOBAL_OFFSET, -56)
    N(CL_INVALID_EVENT_WAIT_LIST, -57)
    N(CL_INVALID_EVENT, -58)
    N(CL_INVALID_OPERATION, -59)
    N(CL_INVALID_GL_OBJECT, -60)
    N(CL_INVALID_BUFFER_SIZE, -61)
    N(CL_INVALID_MIP_LEVEL, -62)
    N(CL_INVALID_GLOBAL_WORK_SIZE, -63)
    N(CL_INVALID_PROPERTY, -64)
    N(CL_INVALID_IMAGE_DESCRIPTOR, -65)
    N(CL_INVALID_COMPILER_OPTIONS, -66)
    N(CL_INVALID_LINKER_OPTIONS, -67)
    N(CL_INVALID_DEVICE_PARTITION_COUNT, -68)
    N(CL_PLATFORM_NOT_FOUND_KHR, -1001)
#undef N
    default: {
        static _Thread_local char buf[32];
        snprintf(buf, sizeof buf, "CL_ERROR(%d)", e);
        return buf;
    }
    }
}
