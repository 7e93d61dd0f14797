/* Section timing with OpenCL markers (see kdcl/profile.h). */
#include <stdlib.h>
#include <string.h>

#include "kdcl/profile.h"
#include "runtime/ctx.h"

static kdcl_status enqueue_marker(kdcl_profiler *p, const char *name)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 64;
        cl_event *m = realloc(p->marks, cap * sizeof *m);
        if (!m) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        p->marks = m;
        char(*nm)[KDCL_PROF_NAME] = realloc(p->names, cap * sizeof *nm);
        if (!nm) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        p->names = nm;
        p->cap = cap;
    }
    cl_event ev = NULL;
    cl_int e;
    if (p->n == 0 && p->gate)
        e = clEnqueueMarkerWithWaitList(p->ctx->queue, 1, &p->gate, &ev);
    else
        e = clEnqueueMarkerWithWaitList(p->ctx->queue, 0, NULL, &ev);
    if (e != CL_SUCCESS) return kdcl_cl_fail(e, "clEnqueueMarkerWithWaitList (profiler)");
    p->marks[p->n] = ev;
    size_t len = name ? strlen(name) : 0;
    if (len >= KDCL_PROF_NAME) len = KDCL_PROF_NAME - 1;
    if (len) memcpy(p->names[p->n], name, len);
    p->names[p->n][len] = '\0';
    p->n++;
    return KDCL_OK;
}

kdcl_status kdcl_profiler_begin(kdcl_profiler *p, kdcl_ctx *ctx, int gate)
{
    memset(p, 0, sizeof *p);
    p->ctx = ctx;
    if (gate) {
        cl_int e;
        p->gate = clCreateUserEvent(ctx->cl, &e);
        if (e != CL_SUCCESS) {
            p->gate = NULL;
            return kdcl_cl_fail(e, "clCreateUserEvent (profiler)");
        }
    }
    kdcl_status s = enqueue_marker(p, "start");
    if (!s && gate) {
        /* the device's start-up after the release ends with this fill */
        cl_int e;
        const float zero = 0.0f;
        p->warm = clCreateBuffer(ctx->cl, CL_MEM_READ_WRITE, sizeof zero, NULL, &e);
        if (e != CL_SUCCESS) {
            p->warm = NULL;
            s = kdcl_cl_fail(e, "clCreateBuffer (profiler)");
        } else if ((e = clEnqueueFillBuffer(ctx->queue, p->warm, &zero, sizeof zero, 0,
                                            sizeof zero, 0, NULL, NULL)) != CL_SUCCESS) {
            s = kdcl_cl_fail(e, "clEnqueueFillBuffer (profiler)");
        } else if (!(s = enqueue_marker(p, "start"))) {
            p->first = 1;
        }
    }
    if (s) kdcl_profiler_free(p);
    return s;
}

kdcl_status kdcl_profiler_mark(kdcl_profiler *p, const char *name)
{
    if (!p->ctx || p->n == 0)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "profiler: mark before begin");
    return enqueue_marker(p, name);
}

size_t kdcl_profiler_sections(const kdcl_profiler *p)
{
    return p->n > p->first ? p->n - 1 - p->first : 0;
}

const char *kdcl_profiler_name(const kdcl_profiler *p, size_t i)
{
    return p->first + i + 1 < p->n ? p->names[p->first + i + 1] : "";
}

static void release_gate(kdcl_profiler *p)
{
    if (!p->gate) return;
    clSetUserEventStatus(p->gate, CL_COMPLETE);
    clReleaseEvent(p->gate);
    p->gate = NULL;
}

kdcl_status kdcl_event_seconds(cl_event e, cl_profiling_info from, cl_profiling_info to,
                               double *secs)
{
    cl_ulong a = 0, b = 0;
    KDCL_CL_CHECK(clGetEventProfilingInfo(e, from, sizeof a, &a, NULL),
                  "clGetEventProfilingInfo");
    KDCL_CL_CHECK(clGetEventProfilingInfo(e, to, sizeof b, &b, NULL), "clGetEventProfilingInfo");
    *secs = b >= a ? (double)(b - a) * 1e-9 : -(double)(a - b) * 1e-9;
    return KDCL_OK;
}

kdcl_status kdcl_profiler_end(kdcl_profiler *p, double *secs)
{
    if (!p->ctx || p->n == 0)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "profiler: end before begin");
    release_gate(p);
    KDCL_CL_CHECK(clFinish(p->ctx->queue), "clFinish (profiler)");
    cl_ulong prev = 0;
    for (size_t i = 0; i < p->n; i++) {
        cl_ulong t = 0;
        KDCL_CL_CHECK(clGetEventProfilingInfo(p->marks[i], CL_PROFILING_COMMAND_END, sizeof t, &t,
                                              NULL),
                      "clGetEventProfilingInfo (profiler marker)");
        /* clock glitches (a marker reported before its predecessor) count as 0 */
        double d = t >= prev ? (double)(t - prev) * 1e-9 : 0.0;
        if (i > p->first) secs[i - 1 - p->first] = d;
        else if (i > 0) p->startup_s = d;
        if (i == 0 || t > prev) prev = t;
    }
    return KDCL_OK;
}

void kdcl_profiler_free(kdcl_profiler *p)
{
    if (!p) return;
    release_gate(p);
    if (p->warm) clReleaseMemObject(p->warm);
    for (size_t i = 0; i < p->n; i++)
        if (p->marks[i]) clReleaseEvent(p->marks[i]);
    free(p->marks);
    free(p->names);
    memset(p, 0, sizeof *p);
}
