/* safetensors reader/writer tests. */
#include "testutil.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "kdcl/safetensors.h"

/* ---- helpers ------------------------------------------------------------ */

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(sz > 0 ? (size_t)sz : 1);
    if (b && sz > 0 && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *n = sz > 0 ? (size_t)sz : 0;
    return b;
}

/* Build a raw safetensors file: u64 len + header (unpadded) + data. */
static void write_raw(const char *path, const char *header, const void *data, size_t ndata)
{
    size_t hl = strlen(header);
    size_t total = 8 + hl + ndata;
    unsigned char *b = malloc(total);
    ck_assert_ptr_nonnull(b);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, header, hl);
    if (ndata) memcpy(b + 8 + hl, data, ndata);
    ck_assert_int_eq(tu_write_file(path, b, total), 0);
    free(b);
}

/* Expect kdcl_st_read to fail with `want`, a non-empty message containing `frag`. */
static void expect_read_error(const char *path, kdcl_status want, const char *frag)
{
    kdcl_st_file f;
    kdcl_clear_error();
    kdcl_status s = kdcl_st_read(path, &f);
    const char *msg = kdcl_last_error();
    ck_assert_msg(s == want, "%s: expected %s, got %s (%s)", path, kdcl_status_name(want), kdcl_status_name(s), msg);
    ck_assert_msg(msg[0] != '\0', "empty error message");
    ck_assert_msg(strstr(msg, frag) != NULL, "message '%s' lacks '%s'", msg, frag);
    ck_assert_uint_eq(f.n_tensors, 0);
    ck_assert_ptr_null(f.tensors);
    kdcl_st_free(&f);
}

static int count_tmp_files(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    size_t pl = strlen(prefix);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, prefix, pl) == 0 && strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

/* ---- tests --------------------------------------------------------------- */

START_TEST(test_roundtrip)
{
    const char *path = tu_path("rt.safetensors");
    float w[3 * 5], b[5], sc = 3.25f;
    tu_fill_uniform(w, 15, -2.f, 2.f, 1);
    tu_fill_uniform(b, 5, -1.f, 1.f, 2);
    int32_t ids[4] = {-7, 0, 12345678, 2147483647};
    uint8_t bytes[3] = {0, 128, 255};
    kdcl_st_tensor t[5] = {
        {.name = "layers.0.weight", .dtype = KDCL_DT_F32, .ndim = 2, .shape = {3, 5}, .data = w, .nbytes = sizeof w},
        {.name = "layers.0.bias", .dtype = KDCL_DT_F32, .ndim = 1, .shape = {5}, .data = b, .nbytes = sizeof b},
        {.name = "scale", .dtype = KDCL_DT_F32, .ndim = 0, .data = &sc, .nbytes = 4},
        {.name = "ids", .dtype = KDCL_DT_I32, .ndim = 1, .shape = {4}, .data = ids, .nbytes = sizeof ids},
        {.name = "empty", .dtype = KDCL_DT_U8, .ndim = 2, .shape = {0, 3}, .data = bytes, .nbytes = 0},
    };
    const char *keys[] = {"format", "arch", "note"};
    const char *vals[] = {"pt", "mlp 784-800-10", "ünïcode \"quoted\""};
    ck_assert_msg(kdcl_st_write(path, t, 5, keys, vals, 3) == KDCL_OK, "%s", kdcl_last_error());

    kdcl_st_file f;
    ck_assert_msg(kdcl_st_read(path, &f) == KDCL_OK, "%s", kdcl_last_error());
    ck_assert_uint_eq(f.n_tensors, 5);
    ck_assert_uint_eq(f.n_meta, 3);
    for (int i = 0; i < 5; i++) {
        const kdcl_st_tensor *r = kdcl_st_find(&f, t[i].name);
        ck_assert_ptr_nonnull(r);
        ck_assert_str_eq(f.tensors[i].name, t[i].name); /* file order kept */
        ck_assert_int_eq(r->dtype, t[i].dtype);
        ck_assert_uint_eq(r->ndim, t[i].ndim);
        for (size_t d = 0; d < t[i].ndim; d++) ck_assert_uint_eq(r->shape[d], t[i].shape[d]);
        ck_assert_uint_eq(r->nbytes, t[i].nbytes);
        ck_assert_ptr_nonnull(r->data);
        if (r->nbytes) ck_assert_int_eq(memcmp(r->data, t[i].data, r->nbytes), 0);
    }
    for (int i = 0; i < 3; i++) {
        ck_assert_ptr_nonnull(kdcl_st_meta(&f, keys[i]));
        ck_assert_str_eq(kdcl_st_meta(&f, keys[i]), vals[i]);
    }
    ck_assert_ptr_null(kdcl_st_meta(&f, "absent"));
    ck_assert_ptr_null(kdcl_st_find(&f, "absent"));

    const float *p = NULL;
    size_t ws[2] = {3, 5};
    ck_assert_msg(kdcl_st_get_f32(&f, "layers.0.weight", 2, ws, &p) == KDCL_OK, "%s", kdcl_last_error());
    ck_assert_ptr_nonnull(p);
    for (int i = 0; i < 15; i++) ck_assert(p[i] == w[i]);
    ck_assert(kdcl_st_get_f32(&f, "scale", 0, NULL, &p) == KDCL_OK);
    ck_assert(p[0] == 3.25f);
    kdcl_st_free(&f);
    ck_assert_uint_eq(f.n_tensors, 0);
    kdcl_st_free(&f); /* idempotent */

    /* no tensors, no metadata */
    ck_assert_msg(kdcl_st_write(path, NULL, 0, NULL, NULL, 0) == KDCL_OK, "%s", kdcl_last_error());
    ck_assert_msg(kdcl_st_read(path, &f) == KDCL_OK, "%s", kdcl_last_error());
    ck_assert_uint_eq(f.n_tensors, 0);
    ck_assert_uint_eq(f.n_meta, 0);
    kdcl_st_free(&f);
}
END_TEST

START_TEST(test_raw_layout)
{
    const char *path = tu_path("layout.safetensors");
    float a[2] = {1.0f, -2.0f};
    float c[3] = {0.5f, 0.25f, 0.125f};
    kdcl_st_tensor t[2] = {
        {.name = "a", .dtype = KDCL_DT_F32, .ndim = 1, .shape = {2}, .data = a, .nbytes = 8},
        {.name = "c", .dtype = KDCL_DT_F32, .ndim = 2, .shape = {1, 3}, .data = c, .nbytes = 12},
    };
    const char *k[] = {"epoch"}, *v[] = {"3"};
    ck_assert_msg(kdcl_st_write(path, t, 2, k, v, 1) == KDCL_OK, "%s", kdcl_last_error());

    size_t n = 0;
    unsigned char *b = slurp(path, &n);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_ge(n, 8);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | b[i];
    ck_assert_uint_eq((8 + hl) % 8, 0);
    ck_assert_uint_eq(n, 8 + hl + 20);
    ck_assert_uint_eq(b[8], '{');

    cJSON *j = cJSON_ParseWithLength((const char *)b + 8, (size_t)hl);
    ck_assert_ptr_nonnull(j);
    cJSON *meta = cJSON_GetObjectItemCaseSensitive(j, "__metadata__");
    ck_assert(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(meta, "epoch")));
    cJSON *ec = cJSON_GetObjectItemCaseSensitive(j, "c");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(ec, "dtype")->valuestring, "F32");
    cJSON *off = cJSON_GetObjectItemCaseSensitive(ec, "data_offsets");
    ck_assert_int_eq(cJSON_GetArrayItem(off, 0)->valueint, 8);
    ck_assert_int_eq(cJSON_GetArrayItem(off, 1)->valueint, 20);
    cJSON *sh = cJSON_GetObjectItemCaseSensitive(ec, "shape");
    ck_assert_int_eq(cJSON_GetArraySize(sh), 2);
    ck_assert_int_eq(cJSON_GetArrayItem(sh, 1)->valueint, 3);
    cJSON_Delete(j);

    /* data is little-endian: 1.0f = 00 00 80 3f, -2.0f = 00 00 00 c0 */
    const unsigned char *d = b + 8 + hl;
    const unsigned char want[8] = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0};
    ck_assert_int_eq(memcmp(d, want, 8), 0);
    free(b);
}
END_TEST

START_TEST(test_atomic_write)
{
    float a[2] = {1, 2};
    kdcl_st_tensor t[2] = {
        {.name = "x", .dtype = KDCL_DT_F32, .ndim = 1, .shape = {2}, .data = a, .nbytes = 8},
        {.name = "x", .dtype = KDCL_DT_F32, .ndim = 1, .shape = {2}, .data = a, .nbytes = 8},
    };
    /* missing directory */
    kdcl_clear_error();
    kdcl_status s = kdcl_st_write(tu_path("no-such-dir/x.safetensors"), t, 1, NULL, NULL, 0);
    ck_assert_int_eq(s, KDCL_ERR_IO);
    ck_assert_str_ne(kdcl_last_error(), "");

    /* good file, then an invalid request over it */
    const char *path = tu_path("atomic.safetensors");
    ck_assert_msg(kdcl_st_write(path, t, 1, NULL, NULL, 0) == KDCL_OK, "%s", kdcl_last_error());
    size_t n0 = 0, n1 = 0;
    unsigned char *before = slurp(path, &n0);
    ck_assert_ptr_nonnull(before);

    kdcl_clear_error();
    s = kdcl_st_write(path, t, 2, NULL, NULL, 0);
    ck_assert_int_eq(s, KDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "duplicate tensor name 'x'"));

    /* wrong nbytes, NULL data, duplicate metadata keys */
    kdcl_st_tensor bad = t[0];
    bad.nbytes = 4;
    ck_assert_int_eq(kdcl_st_write(path, &bad, 1, NULL, NULL, 0), KDCL_ERR_INVALID_ARG);
    bad = t[0];
    bad.data = NULL;
    ck_assert_int_eq(kdcl_st_write(path, &bad, 1, NULL, NULL, 0), KDCL_ERR_INVALID_ARG);
    bad = t[0];
    bad.name = "__metadata__";
    ck_assert_int_eq(kdcl_st_write(path, &bad, 1, NULL, NULL, 0), KDCL_ERR_INVALID_ARG);
    const char *k[] = {"a", "a"}, *v[] = {"1", "2"};
    ck_assert_int_eq(kdcl_st_write(path, t, 1, k, v, 2), KDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "duplicate metadata key"));

    unsigned char *after = slurp(path, &n1);
    ck_assert_ptr_nonnull(after);
    ck_assert_uint_eq(n0, n1);
    ck_assert_int_eq(memcmp(before, after, n0), 0);
    free(before);
    free(after);
    ck_assert_int_eq(count_tmp_files(tu_tmpdir(), "atomic.safetensors"), 0);

    /* a write failure after the temp file exists: target is a directory -> rename fails */
    const char *dpath = tu_path("is-a-dir.safetensors");
    mkdir(dpath, 0755);
    char inner[4096];
    snprintf(inner, sizeof inner, "%s/keep", dpath);
    ck_assert_int_eq(tu_write_file(inner, "k", 1), 0);
    s = kdcl_st_write(dpath, t, 1, NULL, NULL, 0);
    ck_assert_int_eq(s, KDCL_ERR_IO);
    ck_assert_int_eq(count_tmp_files(tu_tmpdir(), "is-a-dir.safetensors"), 0);
    unlink(inner);
    rmdir(dpath);
}
END_TEST

/* Each malformed file yields its own error. */
START_TEST(test_reader_rejects)
{
    const char *p = tu_path("bad.safetensors");
    unsigned char zeros[64] = {0};
    char *msgs[20];
    int nm = 0;
#define REJECT(want, frag)                                                                                          \
    do {                                                                                                             \
        expect_read_error(p, want, frag);                                                                            \
        msgs[nm] = strdup(kdcl_last_error());                                                                        \
        for (int q = 0; q < nm; q++) ck_assert_str_ne(msgs[q], msgs[nm]);                                            \
        nm++;                                                                                                        \
    } while (0)

    /* truncated (< 8 bytes) */
    ck_assert_int_eq(tu_write_file(p, "\x05\x00\x00", 3), 0);
    REJECT(KDCL_ERR_FORMAT, "too short");

    /* header length beyond the file */
    {
        unsigned char b[12] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' '};
        ck_assert_int_eq(tu_write_file(p, b, sizeof b), 0);
        REJECT(KDCL_ERR_FORMAT, "beyond the end");
    }
    /* header length 0 */
    ck_assert_int_eq(tu_write_file(p, zeros, 8), 0);
    REJECT(KDCL_ERR_FORMAT, "header length is 0");
    /* huge header length */
    {
        unsigned char b[8] = {0, 0, 0, 0, 0, 0, 0, 0x10};
        ck_assert_int_eq(tu_write_file(p, b, 8), 0);
        REJECT(KDCL_ERR_FORMAT, "limit");
    }
    /* invalid JSON */
    write_raw(p, "{\"a\": {\"dtype\": \"F32\",", NULL, 0);
    REJECT(KDCL_ERR_FORMAT, "not valid JSON");
    /* not an object */
    write_raw(p, "[1, 2]  ", NULL, 0);
    REJECT(KDCL_ERR_FORMAT, "not a JSON object");
    /* missing data_offsets */
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", zeros, 8);
    REJECT(KDCL_ERR_FORMAT, "no \"data_offsets\"");
    /* unknown dtype */
    write_raw(p, "{\"a\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", zeros, 8);
    REJECT(KDCL_ERR_FORMAT, "unknown dtype 'F33'");
    /* offsets out of range */
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", zeros, 8);
    REJECT(KDCL_ERR_FORMAT, "exceed the data section");
    /* end - begin != numel * 4 */
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", zeros, 16);
    REJECT(KDCL_ERR_FORMAT, "needs 12 bytes");
    /* overlapping tensors */
    write_raw(p,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
              zeros, 16);
    REJECT(KDCL_ERR_FORMAT, "overlap");
    /* non-string metadata */
    write_raw(p,
              "{\"__metadata__\":{\"epoch\":3},"
              "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
              zeros, 8);
    REJECT(KDCL_ERR_FORMAT, "metadata value of 'epoch' is not a string");
    /* negative dim / non-integer offset / begin > end / duplicates / wrong types */
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", zeros, 8);
    REJECT(KDCL_ERR_FORMAT, "negative");
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0.5,8]}}", zeros, 8);
    REJECT(KDCL_ERR_FORMAT, "not an integer");
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", zeros, 8);
    REJECT(KDCL_ERR_FORMAT, "begin > end");
    write_raw(p,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
              zeros, 16);
    REJECT(KDCL_ERR_FORMAT, "duplicate tensor name 'a'");
    for (int q = 0; q < nm; q++) free(msgs[q]);

    /* more shapes of bad input (not required to be distinct) */
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":\"2\",\"data_offsets\":[0,8]}}", zeros, 8);
    expect_read_error(p, KDCL_ERR_FORMAT, "\"shape\" is not an array");
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", zeros, 8);
    expect_read_error(p, KDCL_ERR_FORMAT, "array of 2");
    write_raw(p, "{\"a\":{\"dtype\":32,\"shape\":[2],\"data_offsets\":[0,8]}}", zeros, 8);
    expect_read_error(p, KDCL_ERR_FORMAT, "\"dtype\" is not a string");
    write_raw(p, "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", zeros, 8);
    expect_read_error(p, KDCL_ERR_FORMAT, "no \"dtype\"");
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", zeros, 8);
    expect_read_error(p, KDCL_ERR_FORMAT, "no \"shape\"");
    write_raw(p, "{\"a\":[1]}", zeros, 8);
    expect_read_error(p, KDCL_ERR_FORMAT, "not a JSON object");
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,8]}}",
              zeros, 8);
    expect_read_error(p, KDCL_ERR_FORMAT, "overflow");
    write_raw(p, "{\"__metadata__\":[\"x\"]}", NULL, 0);
    expect_read_error(p, KDCL_ERR_FORMAT, "__metadata__");
    write_raw(p, "{} x", NULL, 0);
    expect_read_error(p, KDCL_ERR_FORMAT, "after the JSON header");
    write_raw(p, "{\"\xff\":1}", NULL, 0);
    expect_read_error(p, KDCL_ERR_FORMAT, "UTF-8");
    expect_read_error(tu_path("does-not-exist.safetensors"), KDCL_ERR_IO, "cannot open");
    expect_read_error(tu_tmpdir(), KDCL_ERR_IO, "not a regular file");

    /* gaps are fine, trailing whitespace padding is fine, other dtypes load */
    write_raw(p,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
              "\"h\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[8,12]}}   ",
              zeros, 16);
    kdcl_st_file f;
    ck_assert_msg(kdcl_st_read(p, &f) == KDCL_OK, "%s", kdcl_last_error());
    ck_assert_int_eq(kdcl_st_find(&f, "h")->dtype, KDCL_DT_F16);
    const float *d = NULL;
    size_t s2[1] = {2};
    ck_assert_int_eq(kdcl_st_get_f32(&f, "h", 1, s2, &d), KDCL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "tensor 'h' has dtype F16, expected F32"));
    ck_assert_ptr_null(d);
    kdcl_st_free(&f);
#undef REJECT
}
END_TEST

START_TEST(test_get_f32_errors)
{
    const char *path = tu_path("arch.safetensors");
    size_t n = 12 * 7;
    float *w = calloc(n, sizeof *w);
    ck_assert_ptr_nonnull(w);
    kdcl_st_tensor t = {.name = "layers.0.weight", .dtype = KDCL_DT_F32, .ndim = 2, .shape = {12, 7}, .data = w,
                        .nbytes = n * sizeof *w};
    ck_assert_msg(kdcl_st_write(path, &t, 1, NULL, NULL, 0) == KDCL_OK, "%s", kdcl_last_error());
    free(w);
    kdcl_st_file f;
    ck_assert_msg(kdcl_st_read(path, &f) == KDCL_OK, "%s", kdcl_last_error());

    const float *d = NULL;
    size_t want[2] = {8, 7};
    ck_assert_int_eq(kdcl_st_get_f32(&f, "layers.0.weight", 2, want, &d), KDCL_ERR_FORMAT);
    ck_assert_msg(strstr(kdcl_last_error(), "'layers.0.weight' has shape [12, 7], architecture expects [8, 7]"),
                  "%s", kdcl_last_error());
    ck_assert_ptr_null(d);
    ck_assert_int_eq(kdcl_st_get_f32(&f, "layers.0.weight", 1, want, &d), KDCL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "architecture expects [8]"));

    ck_assert_int_eq(kdcl_st_get_f32(&f, "layers.1.weight", 2, want, &d), KDCL_ERR_FORMAT);
    ck_assert_msg(strstr(kdcl_last_error(), "has no tensor 'layers.1.weight'"), "%s", kdcl_last_error());
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "arch.safetensors"));

    want[0] = 12;
    ck_assert_int_eq(kdcl_st_get_f32(&f, "layers.0.weight", 2, want, &d), KDCL_OK);
    ck_assert_ptr_nonnull(d);
    kdcl_st_free(&f);
}
END_TEST

/* Optional: the file loads in the reference implementation. */
START_TEST(test_python_interop)
{
    if (system("python3 -c 'import safetensors.numpy, numpy' >/dev/null 2>&1") != 0) {
        fprintf(stderr, "note: python3 with safetensors+numpy not available; interop test skipped\n");
        return;
    }
    const char *path = tu_path("py.safetensors");
    float w[6] = {1.5f, -2.f, 3.25f, 0.f, 1e-3f, -7.f};
    float b[2] = {0.5f, -0.5f};
    int32_t c[3] = {1, -2, 3};
    kdcl_st_tensor t[3] = {
        {.name = "fc.weight", .dtype = KDCL_DT_F32, .ndim = 2, .shape = {2, 3}, .data = w, .nbytes = sizeof w},
        {.name = "fc.bias", .dtype = KDCL_DT_F32, .ndim = 1, .shape = {2}, .data = b, .nbytes = sizeof b},
        {.name = "count", .dtype = KDCL_DT_I32, .ndim = 1, .shape = {3}, .data = c, .nbytes = sizeof c},
    };
    const char *k[] = {"format"}, *v[] = {"pt"};
    ck_assert_msg(kdcl_st_write(path, t, 3, k, v, 1) == KDCL_OK, "%s", kdcl_last_error());
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "python3 -c \"import sys, numpy as np; from safetensors.numpy import load_file; "
             "from safetensors import safe_open; d = load_file(sys.argv[1]); "
             "ok = d['fc.weight'].dtype == np.float32 and d['fc.weight'].shape == (2, 3) "
             "and np.array_equal(d['fc.weight'], np.array([[1.5, -2, 3.25], [0, 1e-3, -7]], dtype=np.float32)) "
             "and np.array_equal(d['fc.bias'], np.array([0.5, -0.5], dtype=np.float32)) "
             "and np.array_equal(d['count'], np.array([1, -2, 3], dtype=np.int32)) "
             "and safe_open(sys.argv[1], 'np').metadata() == {'format': 'pt'}; "
             "sys.exit(0 if ok else 3)\" '%s'",
             path);
    int rc = system(cmd);
    ck_assert_msg(rc == 0, "python safetensors check failed (rc=%d)", rc);
}
END_TEST

static Suite *safetensors_suite(void)
{
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_roundtrip);
    tcase_add_test(tc, test_raw_layout);
    tcase_add_test(tc, test_atomic_write);
    tcase_add_test(tc, test_reader_rejects);
    tcase_add_test(tc, test_get_f32_errors);
    tcase_add_test(tc, test_python_interop);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(safetensors_suite()); }
