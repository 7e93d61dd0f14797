/* Temp files for the harnesses whose parser reads from a path. */
#ifndef _XOPEN_SOURCE
#define _XOPEN_SOURCE 700
#endif
#include "fuzz_util.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(p);
    return 0;
}

static void rm_tree(const char *p) { nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

static void cleanup(void)
{
    if (dir[0]) rm_tree(dir);
}

const char *fz_dir(void)
{
    if (dir[0]) return dir;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    snprintf(dir, sizeof dir, "%s/kdcl-fuzz-XXXXXX", base);
    if (!mkdtemp(dir)) {
        perror("kdcl fuzz: mkdtemp");
        abort();
    }
    atexit(cleanup);
    return dir;
}

const char *fz_path(int slot, const char *name)
{
    static char paths[4][512];
    char *p = paths[slot & 3];
    snprintf(p, sizeof paths[0], "%s/%s", fz_dir(), name);
    return p;
}

const char *fz_write(int slot, const char *name, const void *data, size_t n)
{
    const char *p = fz_path(slot, name);
    FILE *f = fopen(p, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        perror(p);
        abort();
    }
    return p;
}

void fz_remove(const char *name) { rm_tree(fz_path(3, name)); }

char *fz_cstr(const uint8_t *data, size_t n)
{
    char *s = malloc(n + 1);
    if (!s) abort();
    if (n) memcpy(s, data, n);
    s[n] = '\0';
    return s;
}
