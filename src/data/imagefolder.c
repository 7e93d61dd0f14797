/* Image-folder loader (root/<class>/<image>); each file is decoded by
 * kdcl_image_decode (image.c). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "data_internal.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    char **v;
    size_t n, cap;
} strvec;

static void sv_free(strvec *s)
{
    kdcl__free_names(s->v, s->n);
    memset(s, 0, sizeof *s);
}

static int sv_push(strvec *s, const char *str)
{
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 16;
        if (nc > SIZE_MAX / sizeof(char *)) return -1;
        char **nv = realloc(s->v, nc * sizeof *nv);
        if (!nv) return -1;
        s->v = nv;
        s->cap = nc;
    }
    char *d = kdcl__strdup(str);
    if (!d) return -1;
    s->v[s->n++] = d;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Non-hidden entries of `path` that are directories (want_dirs) or regular
 * files (!want_dirs), sorted. *n_other counts the non-hidden entries of the
 * other kind. */
static kdcl_status list_dir(const char *path, int want_dirs, strvec *out, size_t *n_other)
{
    memset(out, 0, sizeof *out);
    if (n_other) *n_other = 0;
    DIR *d = opendir(path);
    if (!d)
        return kdcl_set_error(KDCL_ERR_IO, "%s: cannot open directory: %s", path,
                              strerror(errno));
    char full[KDCL_PATH_MAX];
    kdcl_status s = KDCL_OK;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (!e) {
            if (errno)
                s = kdcl_set_error(KDCL_ERR_IO, "%s: cannot read directory: %s", path,
                                   strerror(errno));
            break;
        }
        if (e->d_name[0] == '.') continue; /* hidden, ".", ".." */
        s = kdcl__join(full, sizeof full, path, e->d_name);
        if (s != KDCL_OK) break;
        struct stat st;
        if (stat(full, &st) != 0) continue; /* dangling symlink etc. */
        int is_dir = S_ISDIR(st.st_mode), is_reg = S_ISREG(st.st_mode);
        if (want_dirs ? is_dir : is_reg) {
            if (sv_push(out, e->d_name) != 0) {
                s = kdcl_set_error(KDCL_ERR_OOM, "%s: out of memory listing directory", path);
                break;
            }
        } else if ((want_dirs ? is_reg : is_dir) && n_other) {
            (*n_other)++;
        }
    }
    closedir(d);
    if (s != KDCL_OK) {
        sv_free(out);
        return s;
    }
    if (out->n > 1) qsort(out->v, out->n, sizeof *out->v, cmp_str);
    return KDCL_OK;
}

/* Read and decode one image file into dst (w x h x channels). */
static kdcl_status load_one(const char *path, size_t w, size_t h, size_t channels, uint8_t *dst)
{
    uint8_t *buf = NULL;
    size_t size = 0;
    kdcl_status s = kdcl__read_file_max(path, 0, KDCL_IMAGE_MAX_FILE, 0, &buf, &size, NULL);
    if (s != KDCL_OK) return s;
    s = kdcl_image_decode(buf, size, path, w, h, channels, dst);
    free(buf);
    return s;
}

kdcl_status kdcl_dataset_load_images(const char *root, size_t w, size_t h, size_t channels,
                                     kdcl_dataset *out)
{
    return kdcl_dataset_load_images_opts(root, w, h, channels, NULL, out);
}

kdcl_status kdcl_dataset_load_images_opts(const char *root, size_t w, size_t h, size_t channels,
                                          kdcl_image_opts *opts, kdcl_dataset *out)
{
    if (opts) opts->n_skipped = 0;
    if (!out)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_dataset_load_images: out is NULL");
    memset(out, 0, sizeof *out);
    if (!root) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_dataset_load_images: NULL root");
    if (channels != 1 && channels != 3)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "%s: channels must be 1 (grey) or 3 (RGB), got %zu", root, channels);
    if (w == 0 || h == 0 || w > (1u << 16) || h > (1u << 16))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                              "%s: image size %zux%zu must be within 1..65536 per side", root, w,
                              h);
    size_t dim = w * h * channels; /* <= 2^34: fits a 64-bit size_t */
    if (dim / channels / h != w)
        return kdcl_set_error(KDCL_ERR_OVERFLOW, "%s: image size %zux%zux%zu overflows", root, w,
                              h, channels);
    if (!kdcl__is_dir(root))
        return kdcl_set_error(KDCL_ERR_IO, "%s: not a directory (expected <root>/<class>/<image>)",
                              root);

    strvec classes;
    size_t n_files_at_root = 0;
    kdcl_status s = list_dir(root, 1, &classes, &n_files_at_root);
    if (s != KDCL_OK) return s;
    if (classes.n == 0) {
        if (n_files_at_root == 0)
            s = kdcl_set_error(KDCL_ERR_FORMAT,
                               "%s: empty directory: expected class folders <root>/<class>/<image>",
                               root);
        else
            s = kdcl_set_error(KDCL_ERR_FORMAT,
                               "%s: no class folders (found %zu files but no sub-directories; "
                               "expected <root>/<class>/<image>)",
                               root, n_files_at_root);
        sv_free(&classes);
        return s;
    }
    if (classes.n > (size_t)INT32_MAX) {
        sv_free(&classes);
        return kdcl_set_error(KDCL_ERR_FORMAT, "%s: too many class folders", root);
    }

    strvec *files = calloc(classes.n, sizeof *files);
    if (!files) {
        sv_free(&classes);
        return kdcl_set_error(KDCL_ERR_OOM, "%s: out of memory", root);
    }
    char cdir[KDCL_PATH_MAX], fpath[KDCL_PATH_MAX];
    size_t total = 0;
    for (size_t c = 0; c < classes.n; c++) {
        s = kdcl__join(cdir, sizeof cdir, root, classes.v[c]);
        if (s != KDCL_OK) goto done;
        s = list_dir(cdir, 0, &files[c], NULL);
        if (s != KDCL_OK) goto done;
        if (files[c].n == 0) {
            s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: class folder '%s' contains no image files",
                               cdir, classes.v[c]);
            goto done;
        }
        total += files[c].n; /* bounded by memory: cannot overflow */
    }

    size_t bytes;
    if (kdcl__mul_overflow(total, dim, &bytes) || total > SIZE_MAX / sizeof(int32_t)) {
        s = kdcl_set_error(KDCL_ERR_OVERFLOW, "%s: %zu images of %zu bytes overflow size_t", root,
                           total, dim);
        goto done;
    }
    out->images = malloc(bytes);
    out->labels = malloc(total * sizeof *out->labels);
    out->class_names = calloc(classes.n, sizeof *out->class_names);
    if (!out->images || !out->labels || !out->class_names) {
        s = kdcl_set_error(KDCL_ERR_OOM, "%s: cannot allocate %zu images of %zux%zux%zu", root,
                           total, w, h, channels);
        goto done;
    }
    out->n_classes = classes.n;
    const int skip = opts && opts->skip_bad;
    size_t k = 0;
    for (size_t c = 0; c < classes.n; c++) {
        s = kdcl__join(cdir, sizeof cdir, root, classes.v[c]);
        if (s != KDCL_OK) goto done;
        for (size_t i = 0; i < files[c].n; i++) {
            s = kdcl__join(fpath, sizeof fpath, cdir, files[c].v[i]);
            if (s != KDCL_OK) goto done;
            s = load_one(fpath, w, h, channels, out->images + k * dim);
            if (s != KDCL_OK) {
                if (!skip || (s != KDCL_ERR_FORMAT && s != KDCL_ERR_IO)) goto done;
                opts->n_skipped++;
                if (opts->on_skip) opts->on_skip(opts->user, fpath, kdcl_last_error());
                s = KDCL_OK;
                continue;
            }
            out->labels[k++] = (int32_t)c;
        }
        /* Hand the name over to the dataset. */
        out->class_names[c] = classes.v[c];
        classes.v[c] = NULL;
    }
    if (k == 0) {
        s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: none of the %zu image files could be decoded",
                           root, total);
        goto done;
    }
    if (k < total) { /* give back what the skipped files would have taken */
        uint8_t *ni = realloc(out->images, k * dim);
        if (ni) out->images = ni;
        int32_t *nl = realloc(out->labels, k * sizeof *nl);
        if (nl) out->labels = nl;
    }
    out->n = k;
    out->h = h;
    out->w = w;
    out->c = channels;
    out->dim = dim;

done:
    for (size_t c = 0; c < classes.n; c++) sv_free(&files[c]);
    free(files);
    sv_free(&classes);
    if (s != KDCL_OK) kdcl_dataset_free(out);
    return s;
}
