/* Atomic file writes (see atomic_file.h). */
#include "kdcl/file.h"
#include "kdcl/runtime.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void kdcl_atomic_abort(kdcl_atomic_file *f)
{
    if (f->fd >= 0) close(f->fd);
    if (f->tmp) unlink(f->tmp);
    free(f->tmp);
    f->tmp = NULL;
    f->fd = -1;
}

/* "<base>.tmp.<pid>": the pid, else 0. */
static long tmp_pid(const char *name, const char *base, size_t nb)
{
    if (strncmp(name, base, nb) || strncmp(name + nb, ".tmp.", 5)) return 0;
    const char *p = name + nb + 5;
    if (*p < '1' || *p > '9' || strlen(p) > 9) return 0;
    long pid = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9') return 0;
        pid = pid * 10 + (*p - '0');
    }
    return pid;
}

int kdcl_atomic_clean_stale(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    const size_t nd = slash ? (size_t)(slash - path) : 0, nb = strlen(base);
    if (!nb) return 0;
    char *dir = malloc(nd + 2);
    if (!dir) return 0;
    if (!slash)
        strcpy(dir, ".");
    else if (nd == 0)
        strcpy(dir, "/");
    else {
        memcpy(dir, path, nd);
        dir[nd] = '\0';
    }
    int removed = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        long pid = tmp_pid(e->d_name, base, nb);
        if (pid <= 0 || pid == (long)getpid()) continue;
        /* only when that process is gone: a live one may be writing it now */
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        size_t n = strlen(dir) + strlen(e->d_name) + 2;
        char *p = malloc(n);
        if (!p) break;
        snprintf(p, n, "%s/%s", dir, e->d_name);
        removed += unlink(p) == 0;
        free(p);
    }
    if (d) closedir(d);
    free(dir);
    return removed;
}

kdcl_status kdcl_atomic_open(kdcl_atomic_file *f, const char *path)
{
    f->path = path;
    f->fd = -1;
    kdcl_atomic_clean_stale(path);
    const size_t cap = strlen(path) + 48;
    if (!(f->tmp = malloc(cap))) return kdcl_set_error(KDCL_ERR_OOM, "%s: out of host memory", path);
    snprintf(f->tmp, cap, "%s.tmp.%ld", path, (long)getpid());
    f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (f->fd < 0) {
        kdcl_status s = kdcl_set_error(KDCL_ERR_IO, "%s: cannot create temporary file '%s': %s",
                                       path, f->tmp, strerror(errno));
        free(f->tmp);
        f->tmp = NULL;
        return s;
    }
    return KDCL_OK;
}

kdcl_status kdcl_atomic_write(kdcl_atomic_file *f, const void *data, size_t n, const char *what)
{
    const unsigned char *p = data;
    while (n > 0) {
        size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t w = write(f->fd, p, chunk);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            kdcl_status s = kdcl_set_error(KDCL_ERR_IO, "%s: writing %s to '%s' failed: %s",
                                           f->path, what, f->tmp,
                                           w < 0 ? strerror(errno) : "no progress");
            kdcl_atomic_abort(f);
            return s;
        }
        p += w;
        n -= (size_t)w;
    }
    return KDCL_OK;
}

/* fsync the directory holding path (a crash after the rename keeps it). */
static kdcl_status fsync_parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t n = !slash ? 1 : slash == path ? 1 : (size_t)(slash - path);
    char *dir = malloc(n + 1);
    if (!dir) return kdcl_set_error(KDCL_ERR_OOM, "%s: out of host memory", path);
    if (!slash)
        strcpy(dir, ".");
    else if (slash == path)
        strcpy(dir, "/");
    else {
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    kdcl_status s = KDCL_OK;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        s = kdcl_set_error(KDCL_ERR_IO, "%s: written, but cannot open directory '%s' to sync it: %s",
                           path, dir, strerror(errno));
    } else {
        int rc = fsync(fd), e = errno;
        close(fd);
        /* some file systems cannot fsync directories (EINVAL): nothing to do */
        if (rc != 0 && e != EINVAL && e != ENOTSUP)
            s = kdcl_set_error(KDCL_ERR_IO, "%s: written, but syncing directory '%s' failed: %s",
                               path, dir, strerror(e));
    }
    free(dir);
    return s;
}

kdcl_status kdcl_atomic_commit(kdcl_atomic_file *f)
{
    kdcl_status s = KDCL_OK;
    if (fsync(f->fd) != 0)
        s = kdcl_set_error(KDCL_ERR_IO, "%s: fsync of '%s' failed: %s", f->path, f->tmp,
                           strerror(errno));
    int rc = close(f->fd);
    f->fd = -1;
    if (!s && rc != 0)
        s = kdcl_set_error(KDCL_ERR_IO, "%s: closing '%s' failed: %s", f->path, f->tmp,
                           strerror(errno));
    if (!s && rename(f->tmp, f->path) != 0)
        s = kdcl_set_error(KDCL_ERR_IO, "%s: renaming '%s' over it failed: %s", f->path, f->tmp,
                           strerror(errno));
    if (s) {
        kdcl_atomic_abort(f);
        return s;
    }
    free(f->tmp);
    f->tmp = NULL;
    return fsync_parent_dir(f->path);
}

kdcl_status kdcl_write_file_atomic(const char *path, const void *data, size_t n)
{
    kdcl_atomic_file f;
    kdcl_status s = kdcl_atomic_open(&f, path);
    if (!s) s = kdcl_atomic_write(&f, data, n, "the data");
    if (!s) s = kdcl_atomic_commit(&f);
    return s;
}

kdcl_status kdcl_file_hash(const char *path, uint64_t *h)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return kdcl_set_error(KDCL_ERR_IO, "cannot open %s", path);
    unsigned char buf[1 << 16];
    size_t n;
    uint64_t v = KDCL_HASH64_INIT;
    while ((n = fread(buf, 1, sizeof buf, fp)) > 0) v = kdcl_hash64(v, buf, n);
    int err = ferror(fp);
    fclose(fp);
    if (err) return kdcl_set_error(KDCL_ERR_IO, "cannot read %s", path);
    *h = v;
    return KDCL_OK;
}
