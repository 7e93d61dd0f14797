/* The processes of a job started by mpirun (src/runtime/dist.c),
 * the one module that calls MPI. Built without MPI (meson -Dmpi=disabled) or
 * run without mpirun, it is one process: rank 0 of 1, every collective a
 * no-op, the scheduler a loop.
 *
 * What the rest of kdcl uses it for:
 *   - data-parallel SGD (src/nn/train.c): one kdcl_dist_allreduce_f32 of the
 *     flat gradient buffer per step;
 *   - soft targets computed in shards and gathered (src/kd/distill.c);
 *   - ensembles and specialists as jobs handed out by rank 0
 *     (kdcl_dist_schedule);
 *   - the command line's agreement on set-up errors, the placement table and
 *     MPI_Abort on a failure (src/cli/util.c). */
#ifndef KDCL_DIST_H
#define KDCL_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "kdcl/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when kdcl was built with MPI. */
KDCL_API int kdcl_dist_compiled(void);
/* Start MPI when this process was launched by mpirun (Open MPI's
 * OMPI_COMM_WORLD_SIZE, or PMI/PMIx variables, in the environment); a process
 * started by hand stays alone without touching MPI. 0 on success. */
KDCL_API kdcl_status kdcl_dist_init(int *argc, char ***argv);
/* MPI_Finalize (after kdcl_dist_init started it). */
KDCL_API void kdcl_dist_finalize(void);
/* This process's rank, the number of ranks, the rank among those of its
 * node (OMPI_COMM_WORLD_LOCAL_RANK, else MPI's shared-memory split), the
 * host name. Alone: 0, 1, 0, gethostname(). */
KDCL_API int kdcl_dist_rank(void);
KDCL_API int kdcl_dist_size(void);
KDCL_API int kdcl_dist_local_rank(void);
KDCL_API const char *kdcl_dist_host(void);

/* Sum over the ranks, in place, the same result on every rank. */
KDCL_API kdcl_status kdcl_dist_allreduce_f32(float *buf, size_t n);
KDCL_API kdcl_status kdcl_dist_allreduce_f64(double *buf, size_t n);
/* Rank root's bytes to every rank. */
KDCL_API kdcl_status kdcl_dist_bcast(void *buf, size_t bytes, int root);
/* Every rank's `bytes` bytes, in rank order, into all (size * bytes). */
KDCL_API kdcl_status kdcl_dist_allgather(const void *mine, size_t bytes, void *all);
/* Rows of floats: rank r holds rows [lo_r, hi_r) of `rows` rows of `width`
 * floats (the split of kdcl_dist_share) at buf + lo_r * width; afterwards
 * every rank has all rows. */
KDCL_API kdcl_status kdcl_dist_allgather_rows(float *buf, size_t rows, size_t width);
/* The share of n items (rows of a batch, examples of a set) that rank r of
 * `size` takes: [*lo, *hi), contiguous, sizes differing by at most one. */
KDCL_API void kdcl_dist_share(size_t n, int r, int size, size_t *lo, size_t *hi);

/* Agreement on a failure: every rank passes its code (0: fine); returns the
 * largest code, and *first the lowest rank with a non-zero code (-1: none).
 * A collective: every rank must call it at the same point. */
KDCL_API int kdcl_dist_agree(int code, int *first);
/* Wait to be ended by another rank's MPI_Abort (after an agreement named
 * that rank to report); if that has not happened within `seconds`, abort
 * with code. */
KDCL_API void kdcl_dist_wait_abort(int code, double seconds);
/* MPI_Abort of every rank with this exit code; alone: exit(code). */
KDCL_API _Noreturn void kdcl_dist_abort(int code);

/* Jobs 0..n-1 handed out dynamically over `threads` workers on every rank:
 * a worker that finishes a job asks rank 0 for the next. fn(user, job,
 * worker, result) runs job `job` on worker `worker` (0..threads-1 of this
 * rank) and fills result (result_bytes bytes). On rank 0, results (n *
 * result_bytes) receives every job's result, each written by whichever rank
 * ran it; on the other ranks, their own. A job that fails reports it in its
 * result (fn's return value is ignored but for logging). Rank 0 serves the
 * other ranks from a thread of its own while its workers train. */
typedef void (*kdcl_dist_job_fn)(void *user, size_t job, size_t worker, void *result);
KDCL_API kdcl_status kdcl_dist_schedule(size_t n, size_t threads, size_t result_bytes, void *results,
                               kdcl_dist_job_fn fn, void *user);

#ifdef __cplusplus
}
#endif
#endif
