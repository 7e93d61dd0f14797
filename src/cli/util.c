#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "kdcl/data.h"
#include "kdcl/dist.h"
#include "kdcl/parse.h"
#include "kdcl/train.h"

/* ---- errors in an mpirun job ----
 * Before the ranks have agreed that their set-up succeeded (cli_dist_ready),
 * an error is kept, not printed: the agreement (there, or in cli_dist_end for
 * a rank that stopped early) lets the lowest failing rank print its one line
 * and every rank exit. After it, a rank that fails prints its line naming
 * itself and ends the job on every rank (MPI_Abort). */
static int dist_phase;  /* the set-up agreement succeeded */
static int dist_agreed; /* an agreement took place (after it, no more) */
static char dist_msg[4096];
typedef struct place {
    int rank, local;
    char host[64];
    char device[176];
} place;
static place *dist_places; /* every rank's, after cli_dist_ready */

static void report(const char *line, int code)
{
    if (kdcl_dist_size() < 2) {
        fprintf(stderr, "%s\n", line);
        return;
    }
    if (!dist_phase) {
        if (!dist_msg[0]) snprintf(dist_msg, sizeof dist_msg, "%s", line);
        return;
    }
    fprintf(stderr, "%s [rank %d of %d on %s: ending the job]\n", line, kdcl_dist_rank(),
            kdcl_dist_size(), kdcl_dist_host());
    kdcl_dist_abort(code);
}

int cli_fail(const char *cmd, kdcl_status s)
{
    const char *msg = kdcl_last_error();
    char line[4096];
    snprintf(line, sizeof line, "kdcl %s: %s", cmd, msg && *msg ? msg : kdcl_status_name(s));
    int code = (s == KDCL_ERR_NO_DEVICE || s == KDCL_ERR_INVALID_ARG) ? CLI_EXIT_USAGE
                                                                      : CLI_EXIT_FAIL;
    report(line, code);
    return code;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    char msg[3000], line[4096];
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(line, sizeof line, "kdcl %s: %s (see: kdcl %s --help)", cmd, msg, cmd);
    report(line, CLI_EXIT_USAGE);
    return CLI_EXIT_USAGE;
}

/* the agreement; prints the kept line on the lowest failing rank */
static int dist_agree(int rc)
{
    int first;
    int worst = kdcl_dist_agree(rc, &first);
    dist_agreed = 1;
    if (first >= 0 && first == kdcl_dist_rank()) {
        fprintf(stderr, "%s [rank %d of %d on %s]\n", dist_msg[0] ? dist_msg : "kdcl: failed",
                kdcl_dist_rank(), kdcl_dist_size(), kdcl_dist_host());
    }
    return worst;
}

static uint64_t dist_args_hash = KDCL_HASH64_INIT;

void cli_dist_args(int argc, char **argv)
{
    uint64_t h = KDCL_HASH64_INIT;
    for (int i = 0; i < argc; i++) h = kdcl_hash64(h, argv[i], strlen(argv[i]) + 1);
    dist_args_hash = h;
}

int cli_dist_ready(const char *cmd, const char *what, const char *device, uint64_t fingerprint)
{
    if (kdcl_dist_size() < 2) return 0;
    int worst = dist_agree(0);
    if (worst) return worst; /* another rank failed and said why */
    /* the ranks must run the same command on the same data */
    uint64_t mine[2] = {dist_args_hash, fingerprint};
    uint64_t *fp = calloc((size_t)kdcl_dist_size() * 2, sizeof *fp);
    if (!fp) return cli_fail(cmd, kdcl_set_error(KDCL_ERR_OOM, "out of host memory"));
    kdcl_status st = kdcl_dist_allgather(mine, sizeof mine, fp);
    if (st) {
        free(fp);
        dist_phase = 1;
        return cli_fail(cmd, st);
    }
    for (int r = 1; r < kdcl_dist_size(); r++)
        if (fp[2 * r] != fp[0] || fp[2 * r + 1] != fp[1]) {
            if (kdcl_dist_rank() == 0)
                fprintf(stderr,
                        "kdcl %s: rank %d was started with %s than rank 0: every rank of an "
                        "mpirun job must run the same command on the same data\n",
                        cmd, r, fp[2 * r] != fp[0] ? "other arguments" : "other data");
            free(fp);
            return CLI_EXIT_USAGE;
        }
    free(fp);
    dist_phase = 1;
    /* the placement table */
    place me, *all = calloc((size_t)kdcl_dist_size(), sizeof *all);
    memset(&me, 0, sizeof me);
    me.rank = kdcl_dist_rank();
    me.local = kdcl_dist_local_rank();
    snprintf(me.host, sizeof me.host, "%s", kdcl_dist_host());
    snprintf(me.device, sizeof me.device, "%s", device ? device : "");
    if (!all) return cli_fail(cmd, kdcl_set_error(KDCL_ERR_OOM, "out of host memory"));
    kdcl_status s = kdcl_dist_allgather(&me, sizeof me, all);
    if (s) {
        free(all);
        return cli_fail(cmd, s);
    }
    dist_places = all;
    if (kdcl_dist_rank() == 0) {
        printf("kdcl %s: %d ranks, %s\n| rank | host | local rank | device |\n|---|---|---|---|\n",
               cmd, kdcl_dist_size(), what);
        for (int r = 0; r < kdcl_dist_size(); r++)
            printf("| %d | %s | %d | %s |\n", all[r].rank, all[r].host, all[r].local,
                   all[r].device);
        fflush(stdout);
    }
    return 0;
}

void cli_dist_devices(char *buf, size_t size)
{
    size_t off = 0;
    buf[0] = '\0';
    for (int r = 0; dist_places && r < kdcl_dist_size() && off < size; r++) {
        char dev[256], *d = dev;
        snprintf(dev, sizeof dev, "%s", dist_places[r].device);
        for (; *d; d++)
            if (*d == '"' || *d == '\\' || (unsigned char)*d < 0x20) *d = ' ';
        off += (size_t)snprintf(buf + off, size - off, "%s\"%s/%s\"", r ? ", " : "",
                                dist_places[r].host, dev);
    }
}

void cli_dist_devices_plain(char *buf, size_t size)
{
    size_t off = 0;
    buf[0] = '\0';
    for (int r = 0; dist_places && r < kdcl_dist_size() && off < size; r++)
        off += (size_t)snprintf(buf + off, size - off, "%s%s/%s", r ? "; " : "",
                                dist_places[r].host, dist_places[r].device);
}

int cli_dist_phase(void) { return dist_phase; }

int cli_dist_end(int rc)
{
    if (kdcl_dist_size() < 2) return rc;
    if (!dist_agreed) {
        int worst = dist_agree(rc);
        if (!rc) rc = worst;
    }
    return rc;
}

const char *cli_rank_device(const char *list, const char *device, size_t index, char *buf,
                            size_t size)
{
    if (!list || !*list) list = getenv("KDCL_DEVICES");
    if (!list || !*list) return device;
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", list);
    size_t n = 0;
    char *save = NULL;
    for (char *t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save)) n++;
    if (n == 0) return device;
    size_t want = index % n, i = 0;
    snprintf(tmp, sizeof tmp, "%s", list);
    save = NULL;
    for (char *t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save), i++)
        if (i == want) {
            snprintf(buf, size, "%s", t);
            return buf;
        }
    return device;
}

int cli_open_ctx(const char *cmd, const char *device, kdcl_ctx **ctx)
{
    kdcl_status s = kdcl_ctx_create(device, ctx);
    if (s) return cli_fail(cmd, s);
    return 0;
}

int cli_parse_list(const char *s, int max, double *d1, double *d2, double *d3)
{
    double *dst[3] = {d1, d2, d3}, v[3];
    if (max > 3) max = 3;
    int n = kdcl_parse_list(s, max, v);
    for (int i = 0; i < n; i++) {
        if (!dst[i]) return -1;
        *dst[i] = v[i];
    }
    return n;
}

const char *cli_data_dir(const char *opt)
{
    if (opt && *opt) return opt;
    const char *e = getenv("KDCL_DATA");
    return e && *e ? e : CLI_DEFAULT_DATA;
}

int cli_skip_bad_images;

/* One line on stderr: control characters (a newline in a file name) as '?'. */
static void print_line(const char *cmd, const char *what, const char *msg)
{
    fprintf(stderr, "kdcl %s: %s", cmd, what);
    for (const char *p = msg; *p; p++) fputc((unsigned char)*p < 0x20 ? '?' : *p, stderr);
    fputc('\n', stderr);
}

static void on_skip(void *user, const char *path, const char *reason)
{
    (void)path; /* the reason names it */
    print_line((const char *)user, "warning: skipped ", reason);
}

int cli_load_split(const char *cmd, const char *dir, const char *split, kdcl_dataset *ds)
{
    kdcl_image_opts io = {0};
    io.skip_bad = cli_skip_bad_images;
    io.on_skip = on_skip;
    io.user = (void *)(uintptr_t)cmd;
    kdcl_status s = kdcl_dataset_load_split_opts(dir, split, &io, ds);
    if (s) {
        print_line(cmd, "", kdcl_last_error());
        return CLI_EXIT_FAIL;
    }
    if (io.n_skipped)
        fprintf(stderr, "kdcl %s: %s/%s: skipped %zu image file%s that could not be decoded, "
                        "kept %zu\n",
                cmd, dir, split, io.n_skipped, io.n_skipped == 1 ? "" : "s", ds->n);
    return 0;
}

double kdcl_wall_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The directory part of path ("." for a bare name, "/" for "/x"). */
static void parent_of(const char *path, char *dir, size_t size)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, size, ".");
    else if (slash == path)
        snprintf(dir, size, "/");
    else
        snprintf(dir, size, "%.*s", (int)(slash - path), path);
}

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static int output_error(const char *cmd, const char *flag, const char *path, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "kdcl %s: %s '%s': ", cmd, flag, path);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return CLI_EXIT_USAGE;
}

/* The directory an output goes into exists, is a directory and takes new files. */
static int check_parent(const char *cmd, const char *flag, const char *path)
{
    char dir[4096];
    parent_of(path, dir, sizeof dir);
    struct stat st;
    if (stat(dir, &st) != 0)
        return output_error(cmd, flag, path, "its directory %s does not exist", dir);
    if (!S_ISDIR(st.st_mode))
        return output_error(cmd, flag, path, "%s is not a directory", dir);
    if (access(dir, W_OK | X_OK) != 0)
        return output_error(cmd, flag, path, "cannot create files in %s (%s)", dir,
                            strerror(errno));
    return 0;
}

int cli_check_output(const char *cmd, const char *flag, const char *path)
{
    if (!path || !*path) return output_error(cmd, flag, "", "needs a file name");
    if (strlen(path) > 3900) return output_error(cmd, flag, path, "path too long");
    if (path[strlen(path) - 1] == '/')
        return output_error(cmd, flag, path, "needs a file name, not a directory");
    struct stat st;
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return output_error(cmd, flag, path, "is a directory; give a file name");
        if (!S_ISREG(st.st_mode))
            return output_error(cmd, flag, path, "exists and is not a regular file");
    }
    return check_parent(cmd, flag, path);
}

int cli_check_output_dir(const char *cmd, const char *flag, const char *dir)
{
    if (!dir || !*dir) return output_error(cmd, flag, "", "needs a directory name");
    if (strlen(dir) > 3900) return output_error(cmd, flag, dir, "path too long");
    struct stat st;
    if (stat(dir, &st) != 0) {
        char trimmed[4096];
        snprintf(trimmed, sizeof trimmed, "%s", dir);
        for (size_t n = strlen(trimmed); n > 1 && trimmed[n - 1] == '/'; n--) trimmed[n - 1] = '\0';
        return check_parent(cmd, flag, trimmed);
    }
    if (!S_ISDIR(st.st_mode))
        return output_error(cmd, flag, dir, "exists and is not a directory");
    if (access(dir, W_OK | X_OK) != 0)
        return output_error(cmd, flag, dir, "cannot create files in it (%s)", strerror(errno));
    return 0;
}

/* ---- training output: kdcl_train's callbacks ---- */

static _Thread_local int g_bar_drawn;

void cli_on_progress(void *user, const kdcl_progress *p)
{
    (void)user;
    if (!isatty(2)) return;
    int width = 30;
    int fill = p->total ? (int)((double)width * (double)p->done / (double)p->total) : width;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\r%s epoch %zu/%zu [%s] %zu/%zu  %.0f samples/s  ETA %.0fs   ", p->tag,
            p->epoch, p->epochs, bar, p->done, p->total, p->samples_per_s, p->eta_s);
    fflush(stderr);
    g_bar_drawn = 1;
}

int cli_on_epoch(void *user, const kdcl_epoch_stats *st)
{
    (void)user;
    if (g_bar_drawn) {
        fprintf(stderr, "\r%*s\r", 100, "");
        g_bar_drawn = 0;
    }
    if (st->resync_diff > 0)
        printf("note: after epoch %zu the ranks' parameters differed (rank %d from rank 0's by "
               "%.3g, relative): rank 0's were copied to every rank (devices that round "
               "differently)\n",
               st->epoch, st->resync_rank, st->resync_diff);
    printf("%s epoch %3zu/%zu  loss %.4f  train err %.2f%%", st->tag ? st->tag : "train",
           st->epoch, st->epochs, st->train_loss, 100 * st->train_error);
    if (!isnan(st->val_error))
        printf("  val loss %.4f  val err %.2f%% (%zu)", st->val_loss, 100 * st->val_error,
               st->val_errors);
    printf("  lr %.4g  mom %.3f  %.1fs  %.0f samples/s\n", st->lr, st->momentum, st->seconds,
           st->samples_per_s);
    fflush(stdout);
    return 0;
}

void cli_train_output(kdcl_train_opts *o, int quiet, int progress)
{
    o->on_epoch = quiet ? NULL : cli_on_epoch;
    o->on_epoch_user = NULL;
    o->on_progress = quiet || !progress ? NULL : cli_on_progress;
    o->on_progress_user = NULL;
}
