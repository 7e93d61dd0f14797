/* Device-side timing from OpenCL profiling events (the context's queue is
 * created with CL_QUEUE_PROFILING_ENABLE).
 *
 * A profiler attached to a context (kdcl_ctx_set_profiler) is marked by the
 * library itself: every kernel launch of kdcl's ops, every kdcl_gemm and
 * convolution product, every buffer fill, copy and upload reports itself,
 * and the training step (kdcl_trainer_step, the step kdcl_train runs) and
 * the model's layers name the scope the work belongs to. How finely the
 * time is cut into sections is the profiler's detail:
 *
 *   KDCL_PROF_PHASES  one section per phase of a step: "data", "forward",
 *                     "loss", "backward", "optimizer";
 *   KDCL_PROF_LAYERS  the phases, with forward and backward cut per layer
 *                     ("3 Linear fwd", "3 Linear bwd") and the input
 *                     conversion apart ("input u8->f32");
 *   KDCL_PROF_OPS     one section per operation, each with its scope (the
 *                     layer or phase) and its op ("gemm", "softmax_xent",
 *                     the kernel's name).
 *
 * On the in-order queue, the time from one marker's completion to the next
 * is the device time of whatever was enqueued between them. A caller may
 * also mark sections of its own (kdcl_profiler_mark).
 *
 * With gate != 0, the queue is held behind a user event from begin() until
 * end(), so the device starts only once everything is enqueued and the
 * sections measure device time without the host's enqueue latency. Between
 * begin() and end() of a gated profile only non-blocking calls may be made
 * (no downloads, kdcl_ctx_finish, or anything that waits on the queue):
 * they would wait for ever. A marker right behind the gate completes at the
 * release while the first command runs later (0.1-0.4 ms on NVIDIA's
 * OpenCL), so a gated profile opens with a one-element fill of its own and
 * starts its first section at the fill's end; the start-up is reported apart
 * (kdcl_profiler_startup_s). Used by `kdcl bench` and `kdcl tune`. */
#ifndef KDCL_PROFILE_H
#define KDCL_PROFILE_H

#include <stddef.h>

#include "kdcl/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KDCL_PROF_NAME 64

typedef enum kdcl_prof_detail {
    KDCL_PROF_PHASES = 0,
    KDCL_PROF_LAYERS = 1,
    KDCL_PROF_OPS = 2
} kdcl_prof_detail;

typedef struct kdcl_profiler kdcl_profiler;

KDCL_API kdcl_status kdcl_profiler_create(kdcl_ctx *ctx, kdcl_profiler **out);
/* Releases everything (also a gate that end() was never called for, after
 * which the queue runs on); detaches it from its context. NULL is allowed. */
KDCL_API void kdcl_profiler_destroy(kdcl_profiler *p);

/* Start a profile (forgetting the previous one): enqueues the start marker
 * (with gate != 0: behind a new user event and the opening fill). */
KDCL_API kdcl_status kdcl_profiler_begin(kdcl_profiler *p, int gate, kdcl_prof_detail detail);

/* End the current section (everything enqueued since the previous marker)
 * and name it (truncated to KDCL_PROF_NAME - 1 characters). */
KDCL_API kdcl_status kdcl_profiler_mark(kdcl_profiler *p, const char *name);

/* Number of sections marked so far. */
KDCL_API size_t kdcl_profiler_sections(const kdcl_profiler *p);

/* Close the open section, release the gate, wait for the queue and write
 * each section's device time in seconds into secs[0 .. sections) (section
 * i: end of marker i+1 minus end of marker i); secs NULL: the profile is
 * only closed (the gate released). Names stay readable until the next begin. */
KDCL_API kdcl_status kdcl_profiler_end(kdcl_profiler *p, double *secs);

/* Section i (0-based): its name (the scope: a phase, a layer or the caller's
 * name), and the op that ended it at KDCL_PROF_OPS ("" otherwise); "" when
 * out of range. */
KDCL_API const char *kdcl_profiler_name(const kdcl_profiler *p, size_t i);
KDCL_API const char *kdcl_profiler_op(const kdcl_profiler *p, size_t i);

/* Gated, after end(): the device's start-up from the gate's release to the
 * end of the opening fill, in seconds (0 otherwise). */
KDCL_API double kdcl_profiler_startup_s(const kdcl_profiler *p);

/* Attach a profiler to its context (NULL detaches): the library's ops then
 * mark themselves into it while a profile is open (between begin and end).
 * One profiler per context at a time. */
KDCL_API kdcl_status kdcl_ctx_set_profiler(kdcl_ctx *ctx, kdcl_profiler *p);
KDCL_API kdcl_profiler *kdcl_ctx_profiler(const kdcl_ctx *ctx);

/* For code that extends kdcl with ops of its own: report an op just
 * enqueued (name: what it is, e.g. its kernel's name), and enter a scope
 * of the given level (a phase: KDCL_PROF_PHASES, a layer: KDCL_PROF_LAYERS).
 * No-ops without an open profile on the context. */
KDCL_API kdcl_status kdcl_prof_op(kdcl_ctx *ctx, const char *name);
KDCL_API kdcl_status kdcl_prof_scope(kdcl_ctx *ctx, kdcl_prof_detail level, const char *name);

#ifdef __cplusplus
}
#endif
#endif
