/* Files written atomically (what every file kdcl writes goes through). Data goes to "<path>.tmp.<pid>" in the
 * same directory, which is fsync'ed, closed and renamed over <path> (then the
 * directory is fsync'ed), so a reader sees the old file or the whole new one,
 * never a half-written one. Any failure removes the temporary file. */
#ifndef KDCL_FILE_H
#define KDCL_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "kdcl/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kdcl_atomic_file {
    const char *path;
    char *tmp;
    int fd;
} kdcl_atomic_file;

/* Remove the "<path>.tmp.<pid>" files left by processes that no longer exist
 * (killed during a save); those of live processes stay. Returns how many were
 * removed. kdcl_atomic_open does this first. "No longer exists" is asked of
 * this machine's process table (kill(pid, 0) failing with ESRCH): a directory
 * shared with other machines could lose a file another machine is writing. */
KDCL_API int kdcl_atomic_clean_stale(const char *path);
/* Create the temporary file (KDCL_ERR_IO naming both paths on failure). */
KDCL_API kdcl_status kdcl_atomic_open(kdcl_atomic_file *f, const char *path);
/* Write n bytes; `what` names them in the error ("the header"). On failure
 * the file is aborted. */
KDCL_API kdcl_status kdcl_atomic_write(kdcl_atomic_file *f, const void *data, size_t n, const char *what);
/* fsync, close, rename over the path, fsync the directory. On failure the
 * temporary file is removed (the old file, if any, stays). */
KDCL_API kdcl_status kdcl_atomic_commit(kdcl_atomic_file *f);
/* Close and remove the temporary file; safe after a failed call. */
KDCL_API void kdcl_atomic_abort(kdcl_atomic_file *f);
/* The whole of text to path, atomically. */
KDCL_API kdcl_status kdcl_write_file_atomic(const char *path, const void *data, size_t n);

/* kdcl_hash64 of a file's bytes (a resumed run checks that it reads the same
 * teachers or generalist). KDCL_ERR_IO naming the file when it cannot be read. */
KDCL_API kdcl_status kdcl_file_hash(const char *path, uint64_t *h);

#ifdef __cplusplus
}
#endif
#endif
