/* Shared pieces of the kdcl command-line tool. */
#ifndef KDCL_CLI_H
#define KDCL_CLI_H

#include "kdcl/parse.h"
#include "kdcl/kdcl.h"

/* Exit codes: 0 ok, 1 runtime failure, 2 usage error / no device. */
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2

/* Print "kdcl <cmd>: <message of the last error>" to stderr and return the exit code
 * that fits the status (2 for a missing device or bad usage, else 1). */
int cli_fail(const char *cmd, kdcl_status s);
/* Print a usage error and return CLI_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ---- jobs started by mpirun (src/runtime/dist.h) ----
 * Every rank runs the command. Errors before cli_dist_ready are kept; there
 * (or in cli_dist_end, called by main with the command's exit code) the ranks
 * agree, and the lowest rank that failed prints its line naming itself.
 * cli_dist_ready, called by every rank whose set-up succeeded, also prints on
 * rank 0 the table of ranks, hosts and devices (`what` describes the job).
 * After it, cli_fail and cli_usage_error print the line with the rank and end
 * the job on every rank (MPI_Abort). In one process these do nothing. */
int cli_dist_ready(const char *cmd, const char *what, const char *device, uint64_t fingerprint);
/* The command line every rank must share (main, for cli_dist_ready's check
 * that the ranks run the same command; fingerprint: a hash of the data). */
void cli_dist_args(int argc, char **argv);
int cli_dist_phase(void);
/* After cli_dist_ready: "host/device" of every rank, as JSON strings
 * separated by ", " or as plain text separated by "; ". */
void cli_dist_devices(char *buf, size_t size);
void cli_dist_devices_plain(char *buf, size_t size);
int cli_dist_end(int rc);
/* Placement: entry `index` mod n of the comma-separated device list
 * (--devices, else $KDCL_DEVICES), else `device` (--device; NULL:
 * $KDCL_DEVICE / default). index is the node-local rank (times the workers
 * per rank, plus the worker, for specialists). */
const char *cli_rank_device(const char *list, const char *device, size_t index, char *buf,
                            size_t size);

/* Open the context for --device (NULL: $KDCL_DEVICE / default); prints the error. */
int cli_open_ctx(const char *cmd, const char *device, kdcl_ctx **ctx);

/* Outputs are checked before any work starts, so that a run is not lost at its
 * end: the path is not empty, not a directory (nor another non-file), and its
 * directory exists and takes new files. Prints "kdcl <cmd>: <flag> '<path>':
 * <problem>" and returns CLI_EXIT_USAGE, else 0. */
int cli_check_output(const char *cmd, const char *flag, const char *path);
/* An output directory (created if missing): an existing directory that takes
 * new files, or a path whose parent does. */
int cli_check_output_dir(const char *cmd, const char *flag, const char *dir);

/* Numbers: the library's strict parsers (kdcl/parse.h: kdcl_parse_size, ...).
 * Comma-separated list of up to `max` numbers (d1..d3, unused may be NULL).
 * Returns how many were parsed, or -1 on garbage. */
int cli_parse_list(const char *s, int max, double *d1, double *d2, double *d3);

#define CLI_DEFAULT_DATA "/usr/share/datasets/fashion-mnist"
/* --data, else $KDCL_DATA, else CLI_DEFAULT_DATA. */
const char *cli_data_dir(const char *opt);
/* Load a split; prints the error and returns its exit code (0 on success). */
struct kdcl_dataset;
int cli_load_split(const char *cmd, const char *dir, const char *split, struct kdcl_dataset *ds);
/* --skip-bad-images: image files that cannot be decoded are skipped by
 * cli_load_split with a warning naming each, instead of stopping it. */
extern int cli_skip_bad_images;
#define CLI_OPT_SKIP_BAD_IMAGES 1099
#define CLI_SKIP_BAD_IMAGES_OPTION {"skip-bad-images", no_argument, 0, CLI_OPT_SKIP_BAD_IMAGES}
#define CLI_SKIP_BAD_IMAGES_HELP                                                               \
    "  --skip-bad-images   image folders: skip files that cannot be decoded (a warning\n"   \
    "                      names each) instead of stopping at the first\n"
double kdcl_wall_seconds(void);

/* The command line's training output through kdcl_train's callbacks: a line
 * per epoch on stdout (cli_on_epoch) and, on a terminal, a progress bar on
 * stderr (cli_on_progress); quiet: neither; progress 0: no bar. */
struct kdcl_train_opts;
struct kdcl_epoch_stats;
struct kdcl_progress;
int cli_on_epoch(void *user, const struct kdcl_epoch_stats *st);
void cli_on_progress(void *user, const struct kdcl_progress *p);
void cli_train_output(struct kdcl_train_opts *o, int quiet, int progress);

int cmd_devices(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_distill(int argc, char **argv);
int cmd_adjust_bias(int argc, char **argv);
int cmd_gemm(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_tune(int argc, char **argv);
int cmd_specialists(int argc, char **argv);
int cmd_export(int argc, char **argv);

#endif
