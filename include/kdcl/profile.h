/* Device-side timing from OpenCL profiling events (the context's queue is
 * created with CL_QUEUE_PROFILING_ENABLE).
 *
 * A profiler puts markers between the operations a caller enqueues; on the
 * in-order queue, the time from one marker's completion to the next is the
 * device time of whatever was enqueued between them (one of kdcl's kernels,
 * the several kernels of a CLBlast routine, copies). Nothing in the library
 * has to hand out events for this.
 *
 * With gate != 0, the queue is held behind a user event from begin() until
 * end(), so the device starts only once everything is enqueued and the
 * sections measure device time without the host's enqueue latency. Between
 * begin() and end() of a gated profiler only non-blocking calls may be made
 * (no downloads, kdcl_ctx_finish, or anything that waits on the queue):
 * they would wait for ever. A marker right behind the gate completes at the
 * release while the first command runs later (0.1-0.4 ms on NVIDIA's
 * OpenCL), so a gated profile opens with a one-element fill of its own and
 * starts its first section at the fill's end; the start-up is reported apart
 * (startup_s). Used by `kdcl bench` and `kdcl tune`. */
#ifndef KDCL_PROFILE_H
#define KDCL_PROFILE_H

#include "kdcl/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KDCL_PROF_NAME 64

typedef struct kdcl_profiler {
    kdcl_ctx *ctx;
    cl_event gate;                 /* user event holding the queue (NULL: not gated) */
    cl_mem warm;                   /* gated: the one-element buffer the opening fill writes */
    cl_event *marks;               /* marks[first]: start; marks[first + i]: end of section i */
    char (*names)[KDCL_PROF_NAME]; /* names[first + i]: name of section i (i >= 1) */
    size_t n, cap;                 /* markers enqueued */
    size_t first;                  /* 1 when gated (marks[0]: the gate's release), else 0 */
    double startup_s;              /* gated, after end(): gate release to the fill's end */
} kdcl_profiler;

/* Start a profile: zeroes *p and enqueues the start marker (with gate != 0:
 * behind a new user event and the opening fill). */
KDCL_API kdcl_status kdcl_profiler_begin(kdcl_profiler *p, kdcl_ctx *ctx, int gate);

/* End the current section (everything enqueued since the previous marker)
 * and name it (truncated to KDCL_PROF_NAME - 1 characters). */
KDCL_API kdcl_status kdcl_profiler_mark(kdcl_profiler *p, const char *name);

/* Number of sections marked so far. */
KDCL_API size_t kdcl_profiler_sections(const kdcl_profiler *p);

/* Release the gate, wait for the queue and write each section's device time
 * in seconds into secs[0 .. kdcl_profiler_sections()) (section i: end of
 * marker i+1 minus end of marker i). The markers stay readable until free. */
KDCL_API kdcl_status kdcl_profiler_end(kdcl_profiler *p, double *secs);

/* Name of section i (0-based), "" when out of range. */
KDCL_API const char *kdcl_profiler_name(const kdcl_profiler *p, size_t i);

/* Release everything (also releases a gate that end() was never called for,
 * after which the queue runs on). Safe on a zeroed profiler. */
KDCL_API void kdcl_profiler_free(kdcl_profiler *p);

/* Seconds between two profiling points of one event (e.g. CL_PROFILING_COMMAND_START
 * and CL_PROFILING_COMMAND_END); the event must have completed. */
KDCL_API kdcl_status kdcl_event_seconds(cl_event e, cl_profiling_info from, cl_profiling_info to,
                               double *secs);

#ifdef __cplusplus
}
#endif
#endif
