/* Section timing with OpenCL markers (see kdcl/profile.h). */
#include <stdlib.h>
#include <string.h>

#include "kdcl/profile.h"
#include "runtime/ctx.h"

typedef struct {
    cl_event ev;
    char name[KDCL_PROF_NAME]; /* the scope of the section this marker ends */
    char op[KDCL_PROF_NAME];   /* the op that ended it (KDCL_PROF_OPS) */
} marker;

struct kdcl_profiler {
    kdcl_ctx *ctx;
    cl_event gate;             /* user event holding the queue (NULL: not gated) */
    cl_mem warm;               /* gated: the one-element buffer the opening fill writes */
    marker *marks;             /* marks[first]: start; marks[first + i]: end of section i */
    size_t n, cap;             /* markers enqueued */
    size_t first;              /* 1 when gated (marks[0]: the gate's release), else 0 */
    double startup_s;          /* gated, after end(): gate release to the fill's end */
    int open;                  /* between begin and end */
    kdcl_prof_detail detail;
    int dirty;                 /* work enqueued since the last marker */
    char scope[KDCL_PROF_NAME];
};

static void copy_name(char *dst, const char *src)
{
    size_t len = src ? strlen(src) : 0;
    if (len >= KDCL_PROF_NAME) len = KDCL_PROF_NAME - 1;
    if (len) memcpy(dst, src, len);
    dst[len] = '\0';
}

static kdcl_status enqueue_marker(kdcl_profiler *p, const char *name, const char *op)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 64;
        marker *m = realloc(p->marks, cap * sizeof *m);
        if (!m) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        p->marks = m;
        p->cap = cap;
    }
    cl_event ev = NULL;
    cl_int e;
    if (p->n == 0 && p->gate)
        e = clEnqueueMarkerWithWaitList(p->ctx->queue, 1, &p->gate, &ev);
    else
        e = clEnqueueMarkerWithWaitList(p->ctx->queue, 0, NULL, &ev);
    if (e != CL_SUCCESS) return kdcl_cl_fail(e, "clEnqueueMarkerWithWaitList (profiler)");
    p->marks[p->n].ev = ev;
    copy_name(p->marks[p->n].name, name);
    copy_name(p->marks[p->n].op, op);
    p->n++;
    p->dirty = 0;
    return KDCL_OK;
}

static void release_gate(kdcl_profiler *p)
{
    if (!p->gate) return;
    clSetUserEventStatus(p->gate, CL_COMPLETE);
    clReleaseEvent(p->gate);
    p->gate = NULL;
}

/* Forget the profile: the gate released, the markers and the fill's buffer freed. */
static void reset(kdcl_profiler *p)
{
    release_gate(p);
    if (p->warm) clReleaseMemObject(p->warm);
    p->warm = NULL;
    for (size_t i = 0; i < p->n; i++)
        if (p->marks[i].ev) clReleaseEvent(p->marks[i].ev);
    p->n = p->first = 0;
    p->startup_s = 0;
    p->open = p->dirty = 0;
    p->scope[0] = '\0';
}

kdcl_status kdcl_profiler_create(kdcl_ctx *ctx, kdcl_profiler **out)
{
    *out = NULL;
    if (!ctx) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "profiler: no context");
    kdcl_profiler *p = calloc(1, sizeof *p);
    if (!p) return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    p->ctx = ctx;
    *out = p;
    return KDCL_OK;
}

void kdcl_profiler_destroy(kdcl_profiler *p)
{
    if (!p) return;
    if (p->ctx && p->ctx->prof == p) p->ctx->prof = NULL;
    reset(p);
    free(p->marks);
    free(p);
}

kdcl_status kdcl_profiler_begin(kdcl_profiler *p, int gate, kdcl_prof_detail detail)
{
    if (!p) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "profiler: NULL");
    if (detail < KDCL_PROF_PHASES || detail > KDCL_PROF_OPS)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "profiler: detail %d", (int)detail);
    reset(p);
    kdcl_ctx *ctx = p->ctx;
    p->detail = detail;
    if (gate) {
        cl_int e;
        p->gate = clCreateUserEvent(ctx->cl, &e);
        if (e != CL_SUCCESS) {
            p->gate = NULL;
            return kdcl_cl_fail(e, "clCreateUserEvent (profiler)");
        }
    }
    kdcl_status s = enqueue_marker(p, "start", "");
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
        } else if (!(s = enqueue_marker(p, "start", ""))) {
            p->first = 1;
        }
    }
    if (s) {
        reset(p);
        return s;
    }
    p->open = 1;
    return KDCL_OK;
}

kdcl_status kdcl_profiler_mark(kdcl_profiler *p, const char *name)
{
    if (!p || !p->open) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "profiler: mark before begin");
    return enqueue_marker(p, name, "");
}

size_t kdcl_profiler_sections(const kdcl_profiler *p)
{
    return p && p->n > p->first ? p->n - 1 - p->first : 0;
}

const char *kdcl_profiler_name(const kdcl_profiler *p, size_t i)
{
    return p && p->first + i + 1 < p->n ? p->marks[p->first + i + 1].name : "";
}

const char *kdcl_profiler_op(const kdcl_profiler *p, size_t i)
{
    return p && p->first + i + 1 < p->n ? p->marks[p->first + i + 1].op : "";
}

double kdcl_profiler_startup_s(const kdcl_profiler *p) { return p ? p->startup_s : 0; }

kdcl_status kdcl_profiler_end(kdcl_profiler *p, double *secs)
{
    if (!p || !p->open) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "profiler: end before begin");
    kdcl_status s = KDCL_OK;
    if (p->dirty) s = enqueue_marker(p, p->scope, "");
    p->open = 0;
    release_gate(p);
    if (s) return s;
    KDCL_CL_CHECK(clFinish(p->ctx->queue), "clFinish (profiler)");
    cl_ulong prev = 0;
    for (size_t i = 0; i < p->n; i++) {
        cl_ulong t = 0;
        KDCL_CL_CHECK(clGetEventProfilingInfo(p->marks[i].ev, CL_PROFILING_COMMAND_END, sizeof t,
                                              &t, NULL),
                      "clGetEventProfilingInfo (profiler marker)");
        /* clock glitches (a marker reported before its predecessor) count as 0 */
        double d = t >= prev ? (double)(t - prev) * 1e-9 : 0.0;
        if (i > p->first && secs) secs[i - 1 - p->first] = d;
        else if (i > 0) p->startup_s = d;
        if (i == 0 || t > prev) prev = t;
    }
    return KDCL_OK;
}

kdcl_status kdcl_ctx_set_profiler(kdcl_ctx *ctx, kdcl_profiler *p)
{
    if (!ctx) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "profiler: no context");
    if (p && p->ctx != ctx)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "profiler: made for another context");
    ctx->prof = p;
    return KDCL_OK;
}

kdcl_profiler *kdcl_ctx_profiler(const kdcl_ctx *ctx) { return ctx ? ctx->prof : NULL; }

kdcl_status kdcl_prof_op(kdcl_ctx *ctx, const char *name)
{
    kdcl_profiler *p = ctx ? ctx->prof : NULL;
    if (!p || !p->open) return KDCL_OK;
    if (p->detail < KDCL_PROF_OPS) {
        p->dirty = 1;
        return KDCL_OK;
    }
    return enqueue_marker(p, p->scope, name);
}

kdcl_status kdcl_prof_scope(kdcl_ctx *ctx, kdcl_prof_detail level, const char *name)
{
    kdcl_profiler *p = ctx ? ctx->prof : NULL;
    if (!p || !p->open || level > p->detail) return KDCL_OK;
    kdcl_status s = p->dirty ? enqueue_marker(p, p->scope, "") : KDCL_OK;
    copy_name(p->scope, name);
    return s;
}
