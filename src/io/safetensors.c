/* safetensors reader/writer. See include/kdcl/safetensors.h. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* fseeko, fileno, O_CLOEXEC, O_DIRECTORY */
#endif
#include "kdcl/safetensors.h"
#include "kdcl/file.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define META_KEY "__metadata__"
/* Integers above this are not represented exactly by cJSON's doubles. */
#define JSON_MAX_EXACT 9007199254740992.0 /* 2^53 */

/* ------------------------------------------------------------------------ */
/* dtypes                                                                   */

static const struct {
    const char *name;
    size_t size;
} g_dtypes[KDCL_DT_COUNT] = {
    [KDCL_DT_F32] = {"F32", 4},  [KDCL_DT_F64] = {"F64", 8},   [KDCL_DT_F16] = {"F16", 2},
    [KDCL_DT_BF16] = {"BF16", 2}, [KDCL_DT_I64] = {"I64", 8},  [KDCL_DT_I32] = {"I32", 4},
    [KDCL_DT_I16] = {"I16", 2},  [KDCL_DT_I8] = {"I8", 1},     [KDCL_DT_U64] = {"U64", 8},
    [KDCL_DT_U32] = {"U32", 4},  [KDCL_DT_U16] = {"U16", 2},   [KDCL_DT_U8] = {"U8", 1},
    [KDCL_DT_BOOL] = {"BOOL", 1},
};

static int dtype_valid(kdcl_dtype dt) { return (int)dt >= 0 && dt < KDCL_DT_COUNT; }

const char *kdcl_dtype_name(kdcl_dtype dt) { return dtype_valid(dt) ? g_dtypes[dt].name : "?"; }

size_t kdcl_dtype_size(kdcl_dtype dt) { return dtype_valid(dt) ? g_dtypes[dt].size : 0; }

int kdcl_dtype_from_name(const char *name, kdcl_dtype *out)
{
    if (!name) return -1;
    for (int i = 0; i < KDCL_DT_COUNT; i++) {
        if (strcmp(name, g_dtypes[i].name) == 0) {
            if (out) *out = (kdcl_dtype)i;
            return 0;
        }
    }
    return -1;
}

/* ------------------------------------------------------------------------ */
/* helpers                                                                  */

static int host_is_little_endian(void)
{
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__)
    return __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;
#else
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
#endif
}

/* Reverse the bytes of each `esz`-byte element in place (big-endian hosts). */
static void swap_elems(void *p, size_t nbytes, size_t esz)
{
    if (esz <= 1) return;
    unsigned char *b = p;
    for (size_t off = 0; off + esz <= nbytes; off += esz) {
        for (size_t i = 0, j = esz - 1; i < j; i++, j--) {
            unsigned char t = b[off + i];
            b[off + i] = b[off + j];
            b[off + j] = t;
        }
    }
}

static void put_u64_le(unsigned char *b, uint64_t v)
{
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64_le(const unsigned char *b)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | b[i];
    return v;
}

/* Strict UTF-8 validation (no overlongs, no surrogates, <= U+10FFFF).
 * Returns the byte offset of the first invalid sequence, or `n` if valid. */
static size_t utf8_invalid_at(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        unsigned lo = 0x80, hi = 0xBF;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else {
            return i;
        }
        if (n - i < len) return i;
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t k = 2; k < len; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) return i;
        i += len;
    }
    return n;
}

static int utf8_valid(const char *s) { return utf8_invalid_at((const unsigned char *)s, strlen(s)) == strlen(s); }

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sort a copy of `names` and return the index (in the sorted copy) of a
 * duplicate, via *dup; returns -1 on OOM, 0 otherwise (*dup = NULL if none). */
static int find_duplicate(const char *const *names, size_t n, const char **dup)
{
    *dup = NULL;
    if (n < 2) return 0;
    const char **s = malloc(n * sizeof *s);
    if (!s) return -1;
    memcpy(s, names, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_str_ptr);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(s[i - 1], s[i]) == 0) {
            *dup = s[i];
            break;
        }
    }
    free(s);
    return 0;
}

/* "[a, b, c]" into buf. */
static const char *fmt_shape(char *buf, size_t cap, size_t ndim, const size_t *shape)
{
    size_t pos = 0;
    int w = snprintf(buf, cap, "[");
    if (w > 0) pos += (size_t)w;
    for (size_t i = 0; i < ndim && pos < cap; i++) {
        w = snprintf(buf + pos, cap - pos, "%s%zu", i ? ", " : "", shape[i]);
        if (w > 0) pos += (size_t)w;
    }
    if (pos < cap) snprintf(buf + pos, cap - pos, "]");
    return buf;
}

/* Elements of a shape; returns 0 on success, -1 on overflow. */
static int shape_numel(size_t ndim, const size_t *shape, size_t *out)
{
    size_t n = 1;
    for (size_t i = 0; i < ndim; i++)
        if (__builtin_mul_overflow(n, shape[i], &n)) return -1;
    *out = n;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* writer                                                                   */

/* Write tensor bytes in little-endian order. */
static kdcl_status write_tensor_data(kdcl_atomic_file *f, const kdcl_st_tensor *t)
{
    char what[320];
    snprintf(what, sizeof what, "tensor '%s'", t->name);
    if (t->nbytes == 0) return KDCL_OK;
    size_t esz = kdcl_dtype_size(t->dtype);
    if (host_is_little_endian() || esz <= 1) return kdcl_atomic_write(f, t->data, t->nbytes, what);
    unsigned char buf[1 << 16]; /* multiple of every element size */
    const unsigned char *src = t->data;
    for (size_t off = 0; off < t->nbytes; off += sizeof buf) {
        size_t n = t->nbytes - off < sizeof buf ? t->nbytes - off : sizeof buf;
        memcpy(buf, src + off, n);
        swap_elems(buf, n, esz);
        kdcl_status s = kdcl_atomic_write(f, buf, n, what);
        if (s) return s;
    }
    return KDCL_OK;
}

static cJSON *json_size_array(size_t n, const size_t *v)
{
    cJSON *arr = cJSON_CreateArray();
    if (!arr) return NULL;
    for (size_t i = 0; i < n; i++) {
        char num[32];
        snprintf(num, sizeof num, "%zu", v[i]);
        /* raw text: exact integers, never "1e+15" */
        cJSON *it = cJSON_CreateRaw(num);
        if (!it || !cJSON_AddItemToArray(arr, it)) {
            cJSON_Delete(it);
            cJSON_Delete(arr);
            return NULL;
        }
    }
    return arr;
}

static kdcl_status validate_write(const char *path, const kdcl_st_tensor *tensors, size_t n_tensors,
                                  const char *const *meta_keys, const char *const *meta_values,
                                  size_t n_meta, size_t *data_total)
{
    if (!path || !*path) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_st_write: empty output path");
    if (n_tensors > 0 && !tensors)
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: %zu tensors requested but the tensor array is NULL", path,
                              n_tensors);
    if (n_meta > 0 && (!meta_keys || !meta_values))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: %zu metadata entries requested but keys/values are NULL",
                              path, n_meta);

    size_t total = 0;
    for (size_t i = 0; i < n_tensors; i++) {
        const kdcl_st_tensor *t = &tensors[i];
        if (!t->name || !*t->name)
            return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: tensor #%zu has an empty name", path, i);
        if (!utf8_valid(t->name))
            return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: tensor #%zu name is not valid UTF-8", path, i);
        if (strcmp(t->name, META_KEY) == 0)
            return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: tensor #%zu may not be named '%s'", path, i, META_KEY);
        if (!dtype_valid(t->dtype))
            return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: tensor '%s' has invalid dtype value %d", path, t->name,
                                  (int)t->dtype);
        if (t->ndim > KDCL_ST_MAX_DIMS)
            return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: tensor '%s' has %zu dims, at most %d supported", path,
                                  t->name, t->ndim, KDCL_ST_MAX_DIMS);
        size_t numel, nb;
        if (shape_numel(t->ndim, t->shape, &numel) != 0 ||
            __builtin_mul_overflow(numel, kdcl_dtype_size(t->dtype), &nb))
            return kdcl_set_error(KDCL_ERR_OVERFLOW, "%s: tensor '%s' byte size overflows", path, t->name);
        if (nb != t->nbytes) {
            char sb[256];
            return kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                  "%s: tensor '%s' has %zu bytes but shape %s of %s needs %zu bytes", path,
                                  t->name, t->nbytes, fmt_shape(sb, sizeof sb, t->ndim, t->shape),
                                  kdcl_dtype_name(t->dtype), nb);
        }
        if (nb > 0 && !t->data)
            return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: tensor '%s' has NULL data", path, t->name);
        if (__builtin_add_overflow(total, nb, &total))
            return kdcl_set_error(KDCL_ERR_OVERFLOW, "%s: total tensor data size overflows", path);
    }
    for (size_t i = 0; i < n_meta; i++) {
        if (!meta_keys[i] || !meta_values[i])
            return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: metadata entry #%zu has a NULL key or value", path, i);
        if (!utf8_valid(meta_keys[i]) || !utf8_valid(meta_values[i]))
            return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: metadata entry #%zu is not valid UTF-8", path, i);
    }

    const char *dup = NULL;
    const char **names = n_tensors ? malloc(n_tensors * sizeof *names) : NULL;
    if (n_tensors && !names) return kdcl_set_error(KDCL_ERR_OOM, "%s: out of memory", path);
    for (size_t i = 0; i < n_tensors; i++) names[i] = tensors[i].name;
    int rc = find_duplicate(names, n_tensors, &dup);
    free(names);
    if (rc != 0) return kdcl_set_error(KDCL_ERR_OOM, "%s: out of memory", path);
    if (dup) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: duplicate tensor name '%s'", path, dup);
    if (find_duplicate((const char *const *)meta_keys, n_meta, &dup) != 0)
        return kdcl_set_error(KDCL_ERR_OOM, "%s: out of memory", path);
    if (dup) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: duplicate metadata key '%s'", path, dup);

    *data_total = total;
    return KDCL_OK;
}

/* Header bytes (u64 length + JSON + space padding) in a malloc'd buffer. */
static kdcl_status build_header(const char *path, const kdcl_st_tensor *tensors, size_t n_tensors,
                                const char *const *meta_keys, const char *const *meta_values, size_t n_meta,
                                unsigned char **out, size_t *out_len)
{
    cJSON *root = cJSON_CreateObject();
    if (!root) goto oom;
    if (n_meta > 0) {
        cJSON *meta = cJSON_AddObjectToObject(root, META_KEY);
        if (!meta) goto oom;
        for (size_t i = 0; i < n_meta; i++)
            if (!cJSON_AddStringToObject(meta, meta_keys[i], meta_values[i])) goto oom;
    }
    size_t off = 0;
    for (size_t i = 0; i < n_tensors; i++) {
        const kdcl_st_tensor *t = &tensors[i];
        cJSON *e = cJSON_CreateObject();
        if (!e) goto oom;
        if (!cJSON_AddItemToObject(root, t->name, e)) {
            cJSON_Delete(e);
            goto oom;
        }
        size_t offs[2] = {off, off + t->nbytes};
        cJSON *shape = json_size_array(t->ndim, t->shape);
        if (!cJSON_AddStringToObject(e, "dtype", kdcl_dtype_name(t->dtype)) || !shape ||
            !cJSON_AddItemToObject(e, "shape", shape)) {
            cJSON_Delete(shape);
            goto oom;
        }
        cJSON *o = json_size_array(2, offs);
        if (!o || !cJSON_AddItemToObject(e, "data_offsets", o)) {
            cJSON_Delete(o);
            goto oom;
        }
        off += t->nbytes;
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    root = NULL;
    if (!json) goto oom;
    size_t jlen = strlen(json);
    size_t padded = (jlen + 7) & ~(size_t)7;
    if (padded > KDCL_ST_MAX_HEADER) {
        free(json);
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "%s: JSON header would be %zu bytes, limit is %u", path, padded,
                              KDCL_ST_MAX_HEADER);
    }
    unsigned char *buf = malloc(8 + padded);
    if (!buf) {
        free(json);
        goto oom;
    }
    put_u64_le(buf, (uint64_t)padded);
    memcpy(buf + 8, json, jlen);
    memset(buf + 8 + jlen, ' ', padded - jlen);
    free(json);
    *out = buf;
    *out_len = 8 + padded;
    return KDCL_OK;
oom:
    cJSON_Delete(root);
    return kdcl_set_error(KDCL_ERR_OOM, "%s: out of memory building the JSON header", path);
}

kdcl_status kdcl_st_write(const char *path, const kdcl_st_tensor *tensors, size_t n_tensors,
                          const char *const *meta_keys, const char *const *meta_values, size_t n_meta)
{
    size_t data_total = 0;
    kdcl_status s = validate_write(path, tensors, n_tensors, meta_keys, meta_values, n_meta, &data_total);
    if (s != KDCL_OK) return s;

    unsigned char *hdr = NULL;
    size_t hdr_len = 0;
    s = build_header(path, tensors, n_tensors, meta_keys, meta_values, n_meta, &hdr, &hdr_len);
    if (s != KDCL_OK) return s;

    kdcl_atomic_file f;
    if ((s = kdcl_atomic_open(&f, path))) {
        free(hdr);
        return s;
    }
    s = kdcl_atomic_write(&f, hdr, hdr_len, "the header");
    for (size_t i = 0; !s && i < n_tensors; i++) s = write_tensor_data(&f, &tensors[i]);
    if (!s) s = kdcl_atomic_commit(&f);
    free(hdr);
    (void)data_total;
    return s;
}

/* ------------------------------------------------------------------------ */
/* reader                                                                   */

typedef struct {
    size_t begin, end, idx;
} span;

static int cmp_span(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* Non-negative integral JSON number -> size_t. Sets an error mentioning `what`. */
static kdcl_status json_size(const char *path, const char *tname, const char *what, const cJSON *it, size_t *out)
{
    if (!cJSON_IsNumber(it))
        return kdcl_set_error(KDCL_ERR_FORMAT, "%s: tensor '%s': %s is not a number", path, tname, what);
    double d = it->valuedouble;
    if (d < 0)
        return kdcl_set_error(KDCL_ERR_FORMAT, "%s: tensor '%s': %s is negative (%g)", path, tname, what, d);
    if (!(d < JSON_MAX_EXACT))
        return kdcl_set_error(KDCL_ERR_FORMAT, "%s: tensor '%s': %s is too large (%g)", path, tname, what, d);
    uint64_t u = (uint64_t)d;
    if ((double)u != d)
        return kdcl_set_error(KDCL_ERR_FORMAT, "%s: tensor '%s': %s is not an integer (%g)", path, tname, what, d);
    if (u > SIZE_MAX)
        return kdcl_set_error(KDCL_ERR_FORMAT, "%s: tensor '%s': %s does not fit in size_t", path, tname, what);
    *out = (size_t)u;
    return KDCL_OK;
}

static kdcl_status parse_metadata(const char *path, const cJSON *meta, kdcl_st_file *out)
{
    if (!cJSON_IsObject(meta))
        return kdcl_set_error(KDCL_ERR_FORMAT, "%s: '%s' is not a JSON object", path, META_KEY);
    size_t n = (size_t)cJSON_GetArraySize(meta);
    if (n == 0) return KDCL_OK;
    out->meta_keys = calloc(n, sizeof(char *));
    out->meta_values = calloc(n, sizeof(char *));
    if (!out->meta_keys || !out->meta_values) return kdcl_set_error(KDCL_ERR_OOM, "%s: out of memory", path);
    const cJSON *it;
    cJSON_ArrayForEach(it, meta)
    {
        if (!cJSON_IsString(it) || !it->valuestring)
            return kdcl_set_error(KDCL_ERR_FORMAT, "%s: metadata value of '%s' is not a string", path,
                                  it->string ? it->string : "?");
        char *k = xstrdup(it->string ? it->string : "");
        char *v = xstrdup(it->valuestring);
        if (!k || !v) {
            free(k);
            free(v);
            return kdcl_set_error(KDCL_ERR_OOM, "%s: out of memory", path);
        }
        out->meta_keys[out->n_meta] = k;
        out->meta_values[out->n_meta] = v;
        out->n_meta++;
    }
    const char *dup = NULL;
    if (find_duplicate((const char *const *)out->meta_keys, out->n_meta, &dup) != 0)
        return kdcl_set_error(KDCL_ERR_OOM, "%s: out of memory", path);
    if (dup) return kdcl_set_error(KDCL_ERR_FORMAT, "%s: duplicate metadata key '%s'", path, dup);
    return KDCL_OK;
}

static kdcl_status parse_tensor(const char *path, const cJSON *e, size_t data_size, kdcl_st_tensor *t, span *sp)
{
    const char *nm = t->name;
    if (!cJSON_IsObject(e)) return kdcl_set_error(KDCL_ERR_FORMAT, "%s: tensor '%s' entry is not a JSON object", path, nm);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!dt) return kdcl_set_error(KDCL_ERR_FORMAT, "%s: tensor '%s' has no \"dtype\"", path, nm);
    if (!sh) return kdcl_set_error(KDCL_ERR_FORMAT, "%s: tensor '%s' has no \"shape\"", path, nm);
    if (!of) return kdcl_set_error(KDCL_ERR_FORMAT, "%s: tensor '%s' has no \"data_offsets\"", path, nm);
    if (!cJSON_IsString(dt) || !dt->valuestring)
        return kdcl_set_error(KDCL_ERR_FORMAT, "%s: tensor '%s': \"dtype\" is not a string", path, nm);
    if (kdcl_dtype_from_name(dt->valuestring, &t->dtype) != 0)
        return kdcl_set_error(KDCL_ERR_FORMAT, "%s: tensor '%s' has unknown dtype '%s'", path, nm, dt->valuestring);
    if (!cJSON_IsArray(sh))
        return kdcl_set_error(KDCL_ERR_FORMAT, "%s: tensor '%s': \"shape\" is not an array", path, nm);
    int nd = cJSON_GetArraySize(sh);
    if (nd > KDCL_ST_MAX_DIMS)
        return kdcl_set_error(KDCL_ERR_FORMAT, "%s: tensor '%s' has %d dims, at most %d supported", path, nm, nd,
                              KDCL_ST_MAX_DIMS);
    t->ndim = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, sh)
    {
        char what[32];
        snprintf(what, sizeof what, "shape[%zu]", t->ndim);
        kdcl_status s = json_size(path, nm, what, it, &t->shape[t->ndim]);
        if (s != KDCL_OK) return s;
        t->ndim++;
    }
    if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2)
        return kdcl_set_error(KDCL_ERR_FORMAT, "%s: tensor '%s': \"data_offsets\" is not an array of 2 numbers", path,
                              nm);
    size_t begin, end;
    kdcl_status s = json_size(path, nm, "data_offsets[0]", cJSON_GetArrayItem(of, 0), &begin);
    if (s != KDCL_OK) return s;
    s = json_size(path, nm, "data_offsets[1]", cJSON_GetArrayItem(of, 1), &end);
    if (s != KDCL_OK) return s;
    if (begin > end)
        return kdcl_set_error(KDCL_ERR_FORMAT, "%s: tensor '%s' data offsets [%zu, %zu) have begin > end", path, nm,
                              begin, end);
    if (end > data_size)
        return kdcl_set_error(KDCL_ERR_FORMAT,
                              "%s: tensor '%s' data offsets [%zu, %zu) exceed the data section (%zu bytes)", path, nm,
                              begin, end, data_size);
    size_t numel, nb;
    if (shape_numel(t->ndim, t->shape, &numel) != 0 || __builtin_mul_overflow(numel, kdcl_dtype_size(t->dtype), &nb))
        return kdcl_set_error(KDCL_ERR_FORMAT, "%s: tensor '%s': shape size overflows", path, nm);
    if (nb != end - begin) {
        char sb[256];
        return kdcl_set_error(KDCL_ERR_FORMAT,
                              "%s: tensor '%s' shape %s of %s needs %zu bytes but data offsets [%zu, %zu) span %zu",
                              path, nm, fmt_shape(sb, sizeof sb, t->ndim, t->shape), kdcl_dtype_name(t->dtype), nb,
                              begin, end, end - begin);
    }
    t->nbytes = nb;
    sp->begin = begin;
    sp->end = end;
    return KDCL_OK;
}

kdcl_status kdcl_st_read(const char *path, kdcl_st_file *out)
{
    if (!out) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_st_read: output is NULL");
    memset(out, 0, sizeof *out);
    if (!path || !*path) return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_st_read: empty path");

    kdcl_status s = KDCL_OK;
    char *hbuf = NULL;
    cJSON *root = NULL;
    span *spans = NULL;
    const char **names = NULL;

    FILE *fp = fopen(path, "rb");
    if (!fp) return kdcl_set_error(KDCL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(fp), &st) != 0) {
        s = kdcl_set_error(KDCL_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        s = kdcl_set_error(KDCL_ERR_IO, "%s: not a regular file", path);
        goto done;
    }
    uint64_t fsize = (uint64_t)st.st_size;
    if (fsize < 8) {
        s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: file is %llu bytes, too short for the 8-byte header length", path,
                           (unsigned long long)fsize);
        goto done;
    }
    unsigned char lenb[8];
    if (fread(lenb, 1, 8, fp) != 8) {
        s = kdcl_set_error(KDCL_ERR_IO, "%s: reading the header length failed", path);
        goto done;
    }
    uint64_t hlen = get_u64_le(lenb);
    if (hlen == 0) {
        s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: header length is 0", path);
        goto done;
    }
    if (hlen > KDCL_ST_MAX_HEADER) {
        s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: header length %llu exceeds the %u-byte limit", path,
                           (unsigned long long)hlen, KDCL_ST_MAX_HEADER);
        goto done;
    }
    if (hlen > fsize - 8) {
        s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: header length %llu extends beyond the end of the file (%llu bytes)",
                           path, (unsigned long long)hlen, (unsigned long long)fsize);
        goto done;
    }
    uint64_t dsize64 = fsize - 8 - hlen;
    if (dsize64 > SIZE_MAX) {
        s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: data section too large for this host", path);
        goto done;
    }
    size_t data_size = (size_t)dsize64;
    size_t hl = (size_t)hlen;

    hbuf = malloc(hl + 1);
    if (!hbuf) {
        s = kdcl_set_error(KDCL_ERR_OOM, "%s: out of memory for a %zu-byte header", path, hl);
        goto done;
    }
    if (fread(hbuf, 1, hl, fp) != hl) {
        s = kdcl_set_error(KDCL_ERR_IO, "%s: reading the %zu-byte header failed", path, hl);
        goto done;
    }
    hbuf[hl] = '\0';
    size_t bad = utf8_invalid_at((const unsigned char *)hbuf, hl);
    if (bad != hl) {
        s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: header is not valid UTF-8 (byte %zu)", path, bad);
        goto done;
    }
    const char *pend = NULL;
    root = cJSON_ParseWithLengthOpts(hbuf, hl, &pend, 0);
    if (!root) {
        size_t pos = (pend >= hbuf && pend <= hbuf + hl) ? (size_t)(pend - hbuf) : 0;
        s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: header is not valid JSON (near byte %zu)", path, pos);
        goto done;
    }
    for (const char *p = pend ? pend : hbuf + hl; p < hbuf + hl; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: unexpected data after the JSON header (byte %zu)", path,
                               (size_t)(p - hbuf));
            goto done;
        }
    }
    if (!cJSON_IsObject(root)) {
        s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: header is not a JSON object", path);
        goto done;
    }

    out->path = xstrdup(path);
    size_t n_entries = (size_t)cJSON_GetArraySize(root);
    if (!out->path) {
        s = kdcl_set_error(KDCL_ERR_OOM, "%s: out of memory", path);
        goto done;
    }
    if (n_entries > 0) {
        out->tensors = calloc(n_entries, sizeof *out->tensors);
        spans = calloc(n_entries, sizeof *spans);
        if (!out->tensors || !spans) {
            s = kdcl_set_error(KDCL_ERR_OOM, "%s: out of memory", path);
            goto done;
        }
    }
    int seen_meta = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, root)
    {
        const char *key = e->string ? e->string : "";
        if (strcmp(key, META_KEY) == 0) {
            if (seen_meta) {
                s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: duplicate '%s' entry", path, META_KEY);
                goto done;
            }
            seen_meta = 1;
            s = parse_metadata(path, e, out);
            if (s != KDCL_OK) goto done;
            continue;
        }
        kdcl_st_tensor *t = &out->tensors[out->n_tensors];
        t->name = xstrdup(key);
        if (!t->name) {
            s = kdcl_set_error(KDCL_ERR_OOM, "%s: out of memory", path);
            goto done;
        }
        out->n_tensors++; /* owned from here on, freed by kdcl_st_free */
        span *sp = &spans[out->n_tensors - 1];
        sp->idx = out->n_tensors - 1;
        s = parse_tensor(path, e, data_size, t, sp);
        if (s != KDCL_OK) goto done;
    }
    cJSON_Delete(root);
    root = NULL;
    free(hbuf);
    hbuf = NULL;

    /* duplicate names */
    if (out->n_tensors > 1) {
        names = malloc(out->n_tensors * sizeof *names);
        if (!names) {
            s = kdcl_set_error(KDCL_ERR_OOM, "%s: out of memory", path);
            goto done;
        }
        for (size_t i = 0; i < out->n_tensors; i++) names[i] = out->tensors[i].name;
        const char *dup = NULL;
        if (find_duplicate(names, out->n_tensors, &dup) != 0) {
            s = kdcl_set_error(KDCL_ERR_OOM, "%s: out of memory", path);
            goto done;
        }
        if (dup) {
            s = kdcl_set_error(KDCL_ERR_FORMAT, "%s: duplicate tensor name '%s'", path, dup);
            goto done;
        }
    }

    /* overlaps (gaps are allowed) */
    if (out->n_tensors > 0) qsort(spans, out->n_tensors, sizeof *spans, cmp_span);
    size_t max_end = 0, max_idx = 0;
    for (size_t i = 0; i < out->n_tensors; i++) {
        if (i > 0 && spans[i].begin < max_end) {
            const kdcl_st_tensor *a = &out->tensors[max_idx], *b = &out->tensors[spans[i].idx];
            s = kdcl_set_error(KDCL_ERR_FORMAT,
                               "%s: tensors '%s' and '%s' overlap in the data section (byte %zu < %zu)", path,
                               a->name, b->name, spans[i].begin, max_end);
            goto done;
        }
        if (spans[i].end >= max_end) {
            max_end = spans[i].end;
            max_idx = spans[i].idx;
        }
    }

    /* data, read in file order */
    int le = host_is_little_endian();
    for (size_t i = 0; i < out->n_tensors; i++) {
        kdcl_st_tensor *t = &out->tensors[spans[i].idx];
        t->data = malloc(t->nbytes ? t->nbytes : 1);
        if (!t->data) {
            s = kdcl_set_error(KDCL_ERR_OOM, "%s: out of memory for tensor '%s' (%zu bytes)", path, t->name,
                               t->nbytes);
            goto done;
        }
        if (t->nbytes == 0) continue;
        uint64_t pos = 8 + hlen + (uint64_t)spans[i].begin; /* <= fsize: fits off_t */
        if (fseeko(fp, (off_t)pos, SEEK_SET) != 0 || fread(t->data, 1, t->nbytes, fp) != t->nbytes) {
            s = kdcl_set_error(KDCL_ERR_IO, "%s: reading tensor '%s' (%zu bytes) failed", path, t->name, t->nbytes);
            goto done;
        }
        if (!le) swap_elems(t->data, t->nbytes, kdcl_dtype_size(t->dtype));
    }

done:
    if (fp) fclose(fp);
    free(names);
    free(spans);
    cJSON_Delete(root);
    free(hbuf);
    if (s != KDCL_OK) kdcl_st_free(out);
    return s;
}

const kdcl_st_tensor *kdcl_st_find(const kdcl_st_file *f, const char *name)
{
    if (!f || !name) return NULL;
    for (size_t i = 0; i < f->n_tensors; i++)
        if (f->tensors[i].name && strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *kdcl_st_meta(const kdcl_st_file *f, const char *key)
{
    if (!f || !key) return NULL;
    for (size_t i = 0; i < f->n_meta; i++)
        if (f->meta_keys[i] && strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

kdcl_status kdcl_st_get_f32(const kdcl_st_file *f, const char *name, size_t ndim, const size_t *shape,
                            const float **data)
{
    if (!f || !name || !data || (ndim > 0 && !shape))
        return kdcl_set_error(KDCL_ERR_INVALID_ARG, "kdcl_st_get_f32: NULL argument");
    *data = NULL;
    const char *src = f->path ? f->path : "(in memory)";
    const kdcl_st_tensor *t = kdcl_st_find(f, name);
    if (!t) return kdcl_set_error(KDCL_ERR_FORMAT, "checkpoint %s has no tensor '%s'", src, name);
    if (t->dtype != KDCL_DT_F32)
        return kdcl_set_error(KDCL_ERR_FORMAT, "checkpoint %s: tensor '%s' has dtype %s, expected F32", src, name,
                              kdcl_dtype_name(t->dtype));
    int same = t->ndim == ndim;
    for (size_t i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        char a[256], b[256];
        return kdcl_set_error(KDCL_ERR_FORMAT, "checkpoint %s: '%s' has shape %s, architecture expects %s", src, name,
                              fmt_shape(a, sizeof a, t->ndim, t->shape),
                              fmt_shape(b, sizeof b, ndim > KDCL_ST_MAX_DIMS ? KDCL_ST_MAX_DIMS : ndim, shape));
    }
    *data = t->data;
    return KDCL_OK;
}

void kdcl_st_free(kdcl_st_file *f)
{
    if (!f) return;
    for (size_t i = 0; i < f->n_tensors; i++) {
        free(f->tensors[i].name);
        free(f->tensors[i].data);
    }
    free(f->tensors);
    for (size_t i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    free(f->path);
    memset(f, 0, sizeof *f);
}
