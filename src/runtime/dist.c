/* The processes of an mpirun job: see dist.h. Every MPI call of kdcl is in
 * this file; built without MPI, each function is its one-process case. */
#include "kdcl/dist.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kdcl/runtime.h"
#include "runtime/ctx.h"

#ifdef KDCL_HAVE_MPI
#include <mpi.h>
#endif

static int g_rank, g_size = 1, g_local;
#ifdef KDCL_HAVE_MPI
static int g_active;      /* MPI started by kdcl_dist_init */
static int g_serialized;  /* MPI_THREAD_SERIALIZED or better: any thread may call MPI */
#endif
static char g_host[256];

int kdcl_dist_compiled(void)
{
#ifdef KDCL_HAVE_MPI
    return 1;
#else
    return 0;
#endif
}

int kdcl_dist_rank(void) { return g_rank; }
int kdcl_dist_size(void) { return g_size; }
int kdcl_dist_local_rank(void) { return g_local; }

const char *kdcl_dist_host(void)
{
    if (!g_host[0] && gethostname(g_host, sizeof g_host - 1) != 0)
        snprintf(g_host, sizeof g_host, "?");
    return g_host;
}

void kdcl_dist_share(size_t n, int r, int size, size_t *lo, size_t *hi)
{
    const size_t p = size > 0 ? (size_t)size : 1, q = n / p, rem = n % p, rr = (size_t)r;
    *lo = rr * q + (rr < rem ? rr : rem);
    *hi = *lo + q + (rr < rem ? 1 : 0);
}

#ifdef KDCL_HAVE_MPI

static kdcl_status mpi_error(const char *what, int rc)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "error %d", rc);
    return kdcl_set_error(KDCL_ERR_INTERNAL, "%s failed on rank %d of %d: %s", what, g_rank,
                          g_size, msg);
}

static int launched_by_mpirun(void)
{
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

kdcl_status kdcl_dist_init(int *argc, char ***argv)
{
    if (g_active || !launched_by_mpirun()) return KDCL_OK;
    int provided = MPI_THREAD_SINGLE, rc;
    if ((rc = MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided)) != MPI_SUCCESS)
        return kdcl_set_error(KDCL_ERR_INTERNAL, "MPI_Init_thread failed (error %d)", rc);
    g_active = 1;
    g_serialized = provided >= MPI_THREAD_SERIALIZED;
    /* failures come back as codes: kdcl reports them and ends the job itself */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    const char *lr = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    char *end = NULL;
    long v = lr ? strtol(lr, &end, 10) : -1;
    if (lr && *lr && end && !*end && v >= 0 && v < INT_MAX) {
        g_local = (int)v;
    } else { /* another launcher: the ranks sharing this node's memory */
        MPI_Comm node;
        if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL,
                                &node) == MPI_SUCCESS) {
            MPI_Comm_rank(node, &g_local);
            MPI_Comm_free(&node);
        }
    }
    return KDCL_OK;
}

static int wait_polite(MPI_Request *req, MPI_Status *st);

void kdcl_dist_finalize(void)
{
    if (!g_active) return;
    fflush(stdout);
    fflush(stderr);
    /* the ranks that finish first (rank 0 still testing and saving) wait
     * without spinning; MPI_Finalize then has nothing left to wait for */
    MPI_Request req;
    if (g_size > 1 && MPI_Ibarrier(MPI_COMM_WORLD, &req) == MPI_SUCCESS)
        wait_polite(&req, MPI_STATUS_IGNORE);
    MPI_Finalize();
    g_active = 0;
}

/* MPI counts are int: larger buffers go in chunks */
#define CHUNK ((size_t)1 << 30)

kdcl_status kdcl_dist_allreduce_f32(float *buf, size_t n)
{
    if (g_size < 2) return KDCL_OK;
    for (size_t off = 0; off < n; off += CHUNK) {
        const size_t k = n - off < CHUNK ? n - off : CHUNK;
        int rc = MPI_Allreduce(MPI_IN_PLACE, buf + off, (int)k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_error("MPI_Allreduce", rc);
    }
    return KDCL_OK;
}

kdcl_status kdcl_dist_allreduce_f64(double *buf, size_t n)
{
    if (g_size < 2) return KDCL_OK;
    for (size_t off = 0; off < n; off += CHUNK) {
        const size_t k = n - off < CHUNK ? n - off : CHUNK;
        int rc = MPI_Allreduce(MPI_IN_PLACE, buf + off, (int)k, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_error("MPI_Allreduce", rc);
    }
    return KDCL_OK;
}

kdcl_status kdcl_dist_bcast(void *buf, size_t bytes, int root)
{
    if (g_size < 2) return KDCL_OK;
    for (size_t off = 0; off < bytes; off += CHUNK) {
        const size_t k = bytes - off < CHUNK ? bytes - off : CHUNK;
        int rc = MPI_Bcast((char *)buf + off, (int)k, MPI_BYTE, root, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_error("MPI_Bcast", rc);
    }
    return KDCL_OK;
}

kdcl_status kdcl_dist_allgather(const void *mine, size_t bytes, void *all)
{
    if (g_size < 2) {
        memmove(all, mine, bytes);
        return KDCL_OK;
    }
    if (bytes > INT_MAX)
        return kdcl_set_error(KDCL_ERR_OVERFLOW, "MPI_Allgather of %zu bytes per rank", bytes);
    int rc = MPI_Allgather(mine, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? KDCL_OK : mpi_error("MPI_Allgather", rc);
}

kdcl_status kdcl_dist_allgather_rows(float *buf, size_t rows, size_t width)
{
    if (g_size < 2) return KDCL_OK;
    if (rows > (size_t)INT_MAX / (width ? width : 1))
        return kdcl_set_error(KDCL_ERR_OVERFLOW, "MPI_Allgatherv of %zu rows of %zu floats", rows,
                              width);
    int *counts = malloc((size_t)g_size * sizeof *counts);
    int *displs = malloc((size_t)g_size * sizeof *displs);
    if (!counts || !displs) {
        free(counts);
        free(displs);
        return kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
    }
    for (int r = 0; r < g_size; r++) {
        size_t lo, hi;
        kdcl_dist_share(rows, r, g_size, &lo, &hi);
        counts[r] = (int)((hi - lo) * width);
        displs[r] = (int)(lo * width);
    }
    int rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, counts, displs, MPI_FLOAT,
                            MPI_COMM_WORLD);
    free(counts);
    free(displs);
    return rc == MPI_SUCCESS ? KDCL_OK : mpi_error("MPI_Allgatherv", rc);
}

int kdcl_dist_agree(int code, int *first)
{
    *first = code ? g_rank : -1;
    if (g_size < 2) return code;
    /* one reduction: the largest code, and minus the lowest failing rank */
    int v[2] = {code, code ? -g_rank : -INT_MAX};
    if (MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS) {
        fprintf(stderr, "kdcl: rank %d of %d: MPI_Allreduce failed: ending the job\n", g_rank,
                g_size);
        kdcl_dist_abort(code ? code : 1);
    }
    *first = v[1] == -INT_MAX ? -1 : -v[1];
    return v[0];
}

void kdcl_dist_wait_abort(int code, double seconds)
{
    if (g_size > 1) {
        MPI_Request req;
        int done = 0;
        if (MPI_Ibarrier(MPI_COMM_WORLD, &req) == MPI_SUCCESS) {
            const double t0 = kdcl_now_seconds();
            struct timespec ts = {0, 10 * 1000 * 1000};
            while (!done && kdcl_now_seconds() - t0 < seconds) {
                if (MPI_Test(&req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) break;
                if (!done) nanosleep(&ts, NULL);
            }
        }
    }
    kdcl_dist_abort(code);
}

_Noreturn void kdcl_dist_abort(int code)
{
    fflush(stdout);
    fflush(stderr);
    if (g_active) MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
    _exit(code ? code : 1);
}

/* ---- dynamic scheduling ---- */

enum { TAG_REQ = 7101, TAG_JOB = 7102 };

typedef struct sched {
    size_t n, threads, rb;
    char *results;
    kdcl_dist_job_fn fn;
    void *user;
    pthread_mutex_t lock; /* rank 0: next; other ranks: one request at a time */
    size_t next;
    size_t remote;        /* rank 0: workers of the other ranks still to be told "done" */
} sched;

typedef struct worker_arg {
    sched *s;
    size_t id;
} worker_arg;

static void fail_job_protocol(const char *what, int rc)
{
    kdcl_status st = mpi_error(what, rc);
    (void)st;
    fprintf(stderr, "kdcl: rank %d of %d: %s\n", g_rank, g_size, kdcl_last_error());
    kdcl_dist_abort(1);
}

/* Wait for a request without spinning: MPI's blocking calls poll the
 * network at full speed, and a rank waiting for jobs (rank 0's server thread,
 * a rank done with its jobs) would take a core from the ranks still training.
 * Jobs last seconds to days; a millisecond of latency is nothing. */
static int wait_polite(MPI_Request *req, MPI_Status *st)
{
    struct timespec ts = {0, 1000 * 1000};
    for (;;) {
        int done = 0, rc = MPI_Test(req, &done, st);
        if (rc != MPI_SUCCESS || done) return rc;
        nanosleep(&ts, NULL);
    }
}

static int recv_polite(void *buf, int n, int src, int tag, MPI_Status *st)
{
    MPI_Request req;
    int rc = MPI_Irecv(buf, n, MPI_BYTE, src, tag, MPI_COMM_WORLD, &req);
    return rc == MPI_SUCCESS ? wait_polite(&req, st) : rc;
}

/* rank 0: answer the other ranks' workers until each has been told "done" */
static void *serve(void *arg)
{
    sched *s = arg;
    const size_t msg = sizeof(int64_t) + s->rb;
    char *buf = malloc(msg);
    if (!buf) {
        fprintf(stderr, "kdcl: rank 0: out of host memory in the scheduler\n");
        kdcl_dist_abort(1);
    }
    while (s->remote > 0) {
        MPI_Status st;
        int rc = recv_polite(buf, (int)msg, MPI_ANY_SOURCE, TAG_REQ, &st);
        if (rc != MPI_SUCCESS) fail_job_protocol("MPI_Recv (job request)", rc);
        int64_t done, job = -1;
        memcpy(&done, buf, sizeof done);
        pthread_mutex_lock(&s->lock);
        if (done >= 0 && (size_t)done < s->n)
            memcpy(s->results + (size_t)done * s->rb, buf + sizeof done, s->rb);
        if (s->next < s->n) job = (int64_t)s->next++;
        pthread_mutex_unlock(&s->lock);
        rc = MPI_Send(&job, (int)sizeof job, MPI_BYTE, st.MPI_SOURCE, TAG_JOB, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) fail_job_protocol("MPI_Send (job)", rc);
        if (job < 0) s->remote--;
    }
    free(buf);
    return NULL;
}

/* rank 0 (or a single process): take jobs from the shared counter */
static void *local_worker(void *arg)
{
    worker_arg *w = arg;
    sched *s = w->s;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        size_t job = s->next < s->n ? s->next++ : s->n;
        pthread_mutex_unlock(&s->lock);
        if (job == s->n) break;
        char *res = malloc(s->rb ? s->rb : 1);
        if (!res) {
            fprintf(stderr, "kdcl: rank %d: out of host memory in the scheduler\n", g_rank);
            kdcl_dist_abort(1);
        }
        memset(res, 0, s->rb);
        s->fn(s->user, job, w->id, res);
        pthread_mutex_lock(&s->lock); /* the server thread copies results in too */
        memcpy(s->results + job * s->rb, res, s->rb);
        pthread_mutex_unlock(&s->lock);
        free(res);
    }
    return NULL;
}

/* other ranks: ask rank 0 for a job, returning the last one's result */
static void *remote_worker(void *arg)
{
    worker_arg *w = arg;
    sched *s = w->s;
    const size_t msg = sizeof(int64_t) + s->rb;
    char *buf = calloc(1, msg);
    if (!buf) {
        fprintf(stderr, "kdcl: rank %d: out of host memory in the scheduler\n", g_rank);
        kdcl_dist_abort(1);
    }
    int64_t prev = -1;
    for (;;) {
        int64_t job = -1;
        memcpy(buf, &prev, sizeof prev);
        pthread_mutex_lock(&s->lock);
        int rc = MPI_Send(buf, (int)msg, MPI_BYTE, 0, TAG_REQ, MPI_COMM_WORLD);
        if (rc == MPI_SUCCESS)
            rc = recv_polite(&job, (int)sizeof job, 0, TAG_JOB, MPI_STATUS_IGNORE);
        pthread_mutex_unlock(&s->lock);
        if (rc != MPI_SUCCESS) fail_job_protocol("the job exchange with rank 0", rc);
        if (job < 0 || (size_t)job >= s->n) break;
        memset(buf + sizeof prev, 0, s->rb);
        s->fn(s->user, (size_t)job, w->id, buf + sizeof prev);
        memcpy(s->results + (size_t)job * s->rb, buf + sizeof prev, s->rb);
        prev = job;
    }
    free(buf);
    return NULL;
}

kdcl_status kdcl_dist_schedule(size_t n, size_t threads, size_t result_bytes, void *results,
                               kdcl_dist_job_fn fn, void *user)
{
    if (threads == 0) threads = 1;
    if (result_bytes > (size_t)INT_MAX - sizeof(int64_t))
        return kdcl_set_error(KDCL_ERR_OVERFLOW, "job results of %zu bytes", result_bytes);
    sched s;
    memset(&s, 0, sizeof s);
    s.n = n;
    s.threads = threads;
    s.rb = result_bytes;
    s.results = results;
    s.fn = fn;
    s.user = user;
    pthread_mutex_init(&s.lock, NULL);
    /* without MPI_THREAD_SERIALIZED only the main thread may call MPI: one
     * worker per rank, and rank 0 serves without training */
    const int multi = g_size > 1;
    const int rank0_trains = !multi || g_serialized;
    if (multi && !g_serialized) threads = 1;
    s.remote = multi ? (size_t)(g_size - 1) * threads : 0;
    worker_arg *wa = calloc(threads, sizeof *wa);
    pthread_t *th = calloc(threads + 1, sizeof *th);
    kdcl_status st = KDCL_OK;
    if (!wa || !th) {
        st = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        goto out;
    }
    for (size_t i = 0; i < threads; i++) wa[i].s = &s, wa[i].id = i;
    void *(*body)(void *) = g_rank == 0 ? local_worker : remote_worker;
    if (g_rank == 0 && !rank0_trains) {
        serve(&s);
        goto barrier;
    }
    size_t started = 0;
    int server = 0;
    if (g_rank == 0 && multi) {
        if (pthread_create(&th[threads], NULL, serve, &s)) {
            serve(&s); /* no thread for it: rank 0 serves and trains nothing */
            goto barrier;
        }
        server = 1;
    }
    if (threads == 1) {
        body(&wa[0]);
    } else {
        for (size_t i = 0; i < threads; i++) {
            if (pthread_create(&th[i], NULL, body, &wa[i])) break;
            started++;
        }
        if (started == 0) {
            /* the other ranks' workers still need their "done" */
            if (g_rank != 0) remote_worker(&wa[0]);
            else local_worker(&wa[0]);
        }
        for (size_t i = 0; i < started; i++) pthread_join(th[i], NULL);
    }
    if (server) pthread_join(th[threads], NULL);
barrier:
    if (multi) { /* a rank out of jobs waits for the others without taking a core */
        MPI_Request req;
        int rc = MPI_Ibarrier(MPI_COMM_WORLD, &req);
        if (rc == MPI_SUCCESS) rc = wait_polite(&req, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) st = mpi_error("MPI_Ibarrier (end of the jobs)", rc);
    }
out:
    free(wa);
    free(th);
    pthread_mutex_destroy(&s.lock);
    return st;
}

#else /* one process */

kdcl_status kdcl_dist_init(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return KDCL_OK;
}
void kdcl_dist_finalize(void) {}
kdcl_status kdcl_dist_allreduce_f32(float *buf, size_t n)
{
    (void)buf;
    (void)n;
    return KDCL_OK;
}
kdcl_status kdcl_dist_allreduce_f64(double *buf, size_t n)
{
    (void)buf;
    (void)n;
    return KDCL_OK;
}
kdcl_status kdcl_dist_bcast(void *buf, size_t bytes, int root)
{
    (void)buf;
    (void)bytes;
    (void)root;
    return KDCL_OK;
}
kdcl_status kdcl_dist_allgather(const void *mine, size_t bytes, void *all)
{
    memmove(all, mine, bytes);
    return KDCL_OK;
}
kdcl_status kdcl_dist_allgather_rows(float *buf, size_t rows, size_t width)
{
    (void)buf;
    (void)rows;
    (void)width;
    return KDCL_OK;
}
int kdcl_dist_agree(int code, int *first)
{
    *first = code ? 0 : -1;
    return code;
}
void kdcl_dist_wait_abort(int code, double seconds)
{
    (void)seconds;
    kdcl_dist_abort(code);
}
_Noreturn void kdcl_dist_abort(int code)
{
    fflush(stdout);
    fflush(stderr);
    _exit(code ? code : 1);
}

typedef struct worker_arg {
    size_t *next, n, id, rb;
    pthread_mutex_t *lock;
    char *results;
    kdcl_dist_job_fn fn;
    void *user;
} worker_arg;

static void *local_worker(void *arg)
{
    worker_arg *w = arg;
    for (;;) {
        pthread_mutex_lock(w->lock);
        size_t job = *w->next < w->n ? (*w->next)++ : w->n;
        pthread_mutex_unlock(w->lock);
        if (job == w->n) break;
        memset(w->results + job * w->rb, 0, w->rb);
        w->fn(w->user, job, w->id, w->results + job * w->rb);
    }
    return NULL;
}

kdcl_status kdcl_dist_schedule(size_t n, size_t threads, size_t result_bytes, void *results,
                               kdcl_dist_job_fn fn, void *user)
{
    if (threads == 0) threads = 1;
    pthread_mutex_t lock;
    pthread_mutex_init(&lock, NULL);
    size_t next = 0;
    worker_arg *wa = calloc(threads, sizeof *wa);
    pthread_t *th = calloc(threads, sizeof *th);
    kdcl_status st = KDCL_OK;
    if (!wa || !th) {
        st = kdcl_set_error(KDCL_ERR_OOM, "out of host memory");
        goto out;
    }
    for (size_t i = 0; i < threads; i++)
        wa[i] = (worker_arg){&next, n, i, result_bytes, &lock, results, fn, user};
    if (threads == 1) {
        local_worker(&wa[0]);
    } else {
        size_t started = 0;
        for (size_t i = 0; i < threads; i++) {
            if (pthread_create(&th[i], NULL, local_worker, &wa[i])) break;
            started++;
        }
        if (started == 0) local_worker(&wa[0]);
        for (size_t i = 0; i < started; i++) pthread_join(th[i], NULL);
    }
out:
    free(wa);
    free(th);
    pthread_mutex_destroy(&lock);
    return st;
}

#endif
