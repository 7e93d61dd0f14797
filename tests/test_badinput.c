/* A catalogue of bad input to the kdcl tool. Every case must end with a
 * non-zero exit status (not a signal), exactly one line on stderr that starts
 * with "kdcl" and names the problem or the file, and leave the files already
 * there alone: an older checkpoint and its metrics file, written with known
 * bytes and an old mtime, are passed as --out (or sit beside it) and compared
 * after every case. Cases about outputs also check that nothing ran first (no
 * line on stdout). Then the conditions that must not fail: a corrupt GEMM
 * tuning cache (ignored, then rewritten by kdcl tune), temporary files of
 * killed runs (removed by the next save), a run killed during training (the
 * older files survive), and the device-memory estimate behind the refusal of
 * batches that do not fit. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "kdcl/gemm.h"
#include "kdcl/model.h"
#include "kdcl/safetensors.h"
#include "testutil.h"

#define KEEP_MTIME 1000000000 /* 2001-09-09: any time no run here writes */

static char dir[4096];          /* the suite's temp directory */
static char data[4200];         /* tiny IDX data: 300 train / 150 test, 8x8, 3 classes */
static char good[4200];         /* a trained 64-8-3 checkpoint */
static char good_bn[4200];      /* a small CNN with BatchNorm (library-written) */
static char two[4200];          /* a 2-output model (trained on a 2-class copy of the data) */
static char keep[4200], keep_metrics[4200]; /* the older checkpoint and its metrics */
static const char keep_bytes[] = "an older checkpoint: these bytes must survive\n";
static const char keep_metrics_bytes[] = "{\"epoch\": 1, \"loss\": 0.25, \"note\": \"older run\"}\n";
static int n_cases;

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot read %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    ck_assert_ptr_nonnull(b);
    *n = fread(b, 1, (size_t)len, f);
    b[*n] = '\0';
    fclose(f);
    return b;
}

static void set_old_mtime(const char *path)
{
    struct timeval tv[2] = {{KEEP_MTIME, 0}, {KEEP_MTIME, 0}};
    ck_assert_int_eq(utimes(path, tv), 0);
}

static void keep_write(void)
{
    ck_assert_int_eq(tu_write_file(keep, keep_bytes, sizeof keep_bytes - 1), 0);
    ck_assert_int_eq(tu_write_file(keep_metrics, keep_metrics_bytes, sizeof keep_metrics_bytes - 1),
                     0);
    set_old_mtime(keep);
    set_old_mtime(keep_metrics);
}

/* The older files are as written, and nothing is left beside them. */
static void keep_check(const char *what)
{
    const char *paths[2] = {keep, keep_metrics};
    const char *want[2] = {keep_bytes, keep_metrics_bytes};
    for (int i = 0; i < 2; i++) {
        struct stat st;
        ck_assert_msg(stat(paths[i], &st) == 0, "%s: %s is gone", what, paths[i]);
        size_t n;
        char *b = slurp(paths[i], &n);
        ck_assert_msg(n == strlen(want[i]) && !memcmp(b, want[i], n), "%s: %s was changed", what,
                      paths[i]);
        free(b);
        ck_assert_msg(st.st_mtime == KEEP_MTIME, "%s: %s was touched (mtime %ld)", what, paths[i],
                      (long)st.st_mtime);
    }
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    while ((e = readdir(d)))
        ck_assert_msg(strncmp(e->d_name, "keep.st.", 8) || !strcmp(e->d_name, "keep.st.metrics.jsonl"),
                      "%s: %s left beside the older checkpoint", what, e->d_name);
    closedir(d);
}

enum { ANY = 0, FAST = 1 };

/* One case: `kdcl <args>` must fail with `status` (0: any failure), one line
 * "kdcl ...<needle>..." on stderr, the older files untouched; FAST: before any
 * work (nothing on stdout). */
#if defined(__GNUC__)
__attribute__((format(printf, 5, 6)))
#endif
static void bad(const char *name, int status, int fast, const char *needle, const char *fmt, ...)
{
    char args[16384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    static tu_run_result r;
    tu_run(&r, args);
    ck_assert_msg(!r.signaled && r.status != 0 && r.status < 128,
                  "[%s] 'kdcl %s' exited %d (signal: %d); stderr: %s", name, args, r.status,
                  r.signaled, r.err);
    if (status)
        ck_assert_msg(r.status == status, "[%s] 'kdcl %s' exited %d, expected %d; stderr: %s",
                      name, args, r.status, status, r.err);
    ck_assert_msg(r.err_lines == 1 && !strncmp(r.err, "kdcl", 4),
                  "[%s] 'kdcl %s' printed %d stderr lines: %s", name, args, r.err_lines, r.err);
    ck_assert_msg(strstr(r.err, needle) != NULL, "[%s] '%s' not in: %s", name, needle, r.err);
    if (fast)
        ck_assert_msg(r.out[0] == '\0', "[%s] 'kdcl %s' did work before failing: %s", name, args,
                      r.out);
    ck_assert_msg(!strstr(r.out, " epoch "), "[%s] trained before failing: %s", name, r.out);
    keep_check(name);
    n_cases++;
    if (getenv("KDCL_TEST_VERBOSE")) printf("%3d %-60.60s exit %d: %s", n_cases, name, r.status, r.err);
}

static void ok_run(const char *what, const char *fmt, ...)
{
    char args[16384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    static tu_run_result r;
    tu_run(&r, args);
    ck_assert_msg(r.status == 0, "%s: 'kdcl %s' exited %d: %s", what, args, r.status, r.err);
}

/* ---- fixtures ---- */

/* A copy of the data directory with one file replaced by `bytes`. */
static const char *data_variant(const char *name, const char *file, const void *bytes, size_t n)
{
    static char d[8][4200];
    static int k;
    char *p = d[k++ & 7];
    snprintf(p, 4200, "%s/data_%s", dir, name);
    mkdir(p, 0755);
    static const char *files[] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte",
                                  "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte"};
    char src[8400], dst[8400];
    for (int i = 0; i < 4; i++) {
        snprintf(dst, sizeof dst, "%s/%s", p, files[i]);
        unlink(dst);
        if (!strcmp(files[i], file)) continue;
        snprintf(src, sizeof src, "%s/%s", data, files[i]);
        size_t len;
        char *b = slurp(src, &len);
        ck_assert_int_eq(tu_write_file(dst, b, len), 0);
        free(b);
    }
    if (bytes) {
        snprintf(dst, sizeof dst, "%s/%s", p, file);
        ck_assert_int_eq(tu_write_file(dst, bytes, n), 0);
    }
    return p;
}

/* An uncompressed IDX labels file: n labels, the given ones first, then 0. */
static const char *labels_variant(const char *name, const char *file, size_t n_header,
                                  size_t n_labels, int bad_label)
{
    unsigned char *b = calloc(8 + n_labels, 1);
    put_be32(b, 0x801);
    put_be32(b + 4, (uint32_t)n_header);
    for (size_t i = 0; i < n_labels; i++) b[8 + i] = (unsigned char)(i % 3);
    if (bad_label >= 0) b[8 + 5] = (unsigned char)bad_label;
    const char *p = data_variant(name, file, b, 8 + n_labels);
    free(b);
    return p;
}

static const char *images_variant(const char *name, const unsigned char *hdr, size_t nh,
                                  size_t n_data)
{
    unsigned char *b = calloc(nh + n_data + 1, 1);
    memcpy(b, hdr, nh);
    const char *p = data_variant(name, "train-images-idx3-ubyte.gz", NULL, 0);
    char path[8400];
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte", p);
    ck_assert_int_eq(tu_write_file(path, b, nh + n_data), 0);
    free(b);
    return p;
}

/* A checkpoint written by the library's safetensors writer from `src` with
 * changes: tensor `tname` gets `value` in its first element (op 'v') or in
 * all (op 'a'), loses
 * its last column (op 's'), is dropped (op 'd'); op 'x' adds a tensor;
 * metadata `key` is set to `val` (key NULL: none). */
static const char *ckpt_variant(const char *name, const char *src, const char *tname, char op,
                                float value, const char *key, const char *val)
{
    static char out[8][4200];
    static int k;
    char *path = out[k++ & 7];
    snprintf(path, 4200, "%s/%s.safetensors", dir, name);
    kdcl_st_file f;
    tu_ok(kdcl_st_read(src, &f), src);
    kdcl_st_tensor t[64];
    size_t n = 0;
    float *copy = NULL;
    float extra[4] = {0, 0, 0, 0};
    ck_assert(f.n_tensors < 63);
    for (size_t i = 0; i < f.n_tensors; i++) {
        t[n] = f.tensors[i];
        int hit = tname && !strcmp(f.tensors[i].name, tname);
        if (hit && op == 'd') continue;
        if (hit && (op == 'v' || op == 'a')) {
            copy = malloc(t[n].nbytes);
            memcpy(copy, t[n].data, t[n].nbytes);
            for (size_t e = 0; e < (op == 'a' ? t[n].nbytes / sizeof(float) : 1); e++)
                copy[e] = value;
            t[n].data = copy;
        }
        if (hit && op == 's') {
            ck_assert(t[n].ndim == 2 && t[n].shape[1] > 1);
            t[n].shape[1]--;
            t[n].nbytes = t[n].shape[0] * t[n].shape[1] * sizeof(float);
        }
        n++;
    }
    if (op == 'x') {
        t[n] = (kdcl_st_tensor){"extra.weight", KDCL_DT_F32, 1, {4}, extra, sizeof extra};
        n++;
    }
    const char *keys[64], *vals[64];
    size_t nk = 0;
    int set = 0;
    for (size_t i = 0; i < f.n_meta && nk < 63; i++) {
        keys[nk] = f.meta_keys[i];
        vals[nk] = f.meta_values[i];
        if (key && !strcmp(keys[nk], key)) {
            vals[nk] = val;
            set = 1;
        }
        nk++;
    }
    if (key && !set) keys[nk] = key, vals[nk++] = val;
    tu_ok(kdcl_st_write(path, t, n, keys, vals, nk), path);
    free(copy);
    kdcl_st_free(&f);
    return path;
}

static const char *tensor_with_suffix(const char *path, const char *suffix, char *buf, size_t size)
{
    kdcl_st_file f;
    tu_ok(kdcl_st_read(path, &f), path);
    buf[0] = '\0';
    for (size_t i = 0; i < f.n_tensors && !buf[0]; i++) {
        const char *nm = f.tensors[i].name;
        size_t a = strlen(nm), b = strlen(suffix);
        if (a >= b && !strcmp(nm + a - b, suffix)) snprintf(buf, size, "%s", nm);
    }
    kdcl_st_free(&f);
    ck_assert_msg(buf[0], "no tensor *%s in %s", suffix, path);
    return buf;
}

static void setup(void)
{
    tu_exe();
    snprintf(dir, sizeof dir, "%s", tu_tmpdir());
    snprintf(data, sizeof data, "%s/tiny", dir);
    mkdir(data, 0755);
    tu_write_idx_split(data, "train", 300, 1);
    tu_write_idx_split(data, "t10k", 150, 2);
    snprintf(good, sizeof good, "%s/good.safetensors", dir);
    snprintf(good_bn, sizeof good_bn, "%s/good_bn.safetensors", dir);
    snprintf(two, sizeof two, "%s/two.safetensors", dir);
    snprintf(keep, sizeof keep, "%s/keep.st", dir);
    snprintf(keep_metrics, sizeof keep_metrics, "%s/keep.st.metrics.jsonl", dir);
    ok_run("setup", "train --data %s --arch 64-8-3 --epochs 1 --batch 50 --quiet --out %s", data,
           good);
    /* a 2-class copy of the data for a 2-output model */
    const char *d2 = labels_variant("two", "train-labels-idx1-ubyte", 300, 300, -1);
    unsigned char lab[8 + 150];
    put_be32(lab, 0x801);
    put_be32(lab + 4, 150);
    for (int i = 0; i < 150; i++) lab[8 + i] = (unsigned char)(i % 2);
    char p[8400];
    snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte", d2);
    ck_assert_int_eq(tu_write_file(p, lab, sizeof lab), 0);
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte", d2);
    unsigned char lab2[8 + 300];
    put_be32(lab2, 0x801);
    put_be32(lab2 + 4, 300);
    for (int i = 0; i < 300; i++) lab2[8 + i] = (unsigned char)(i % 2);
    ck_assert_int_eq(tu_write_file(p, lab2, sizeof lab2), 0);
    ok_run("setup", "train --data %s --arch 64-8-2 --epochs 1 --batch 50 --quiet --out %s", d2,
           two);
    /* a CNN with BatchNorm, written by the library */
    tu_ctx_setup();
    kdcl_model *m = tu_model("conv(2,3),bn,relu,flatten,linear(K)", 3, 1, 8, 8, 16, 0, 0, 5);
    tu_ok(kdcl_model_save(m, good_bn, NULL, NULL, 0), "save the BatchNorm model");
    kdcl_model_destroy(m);
    keep_write();
}

static void teardown(void) { tu_ctx_teardown(); }

/* ---- the catalogue ---- */

START_TEST(test_bad_data_files)
{
    const char *O = keep;
    char hdr[64];
    /* truncated images (half the gzip stream) */
    size_t n;
    char src[4400];
    snprintf(src, sizeof src, "%s/train-images-idx3-ubyte.gz", data);
    char *gz = slurp(src, &n);
    const char *d = data_variant("trunc_gz", "train-images-idx3-ubyte.gz", gz, n / 2);
    free(gz);
    bad("truncated gzip images", 1, 1, "train-images-idx3-ubyte.gz",
        "train --data %s --epochs 1 --out %s", d, O);
    /* uncompressed images cut short */
    unsigned char h[16];
    put_be32(h, 0x803), put_be32(h + 4, 300), put_be32(h + 8, 8), put_be32(h + 12, 8);
    d = images_variant("trunc_raw", h, 16, 300 * 64 / 2);
    bad("truncated IDX images", 1, 1, "truncated", "train --data %s --epochs 1 --out %s", d, O);
    /* an empty labels file */
    d = data_variant("empty", "train-labels-idx1-ubyte", "", 0);
    bad("empty IDX labels", 1, 1, "train-labels-idx1-ubyte", "train --data %s --epochs 1 --out %s",
        d, O);
    /* a header cut short */
    d = images_variant("short_header", h, 7, 0);
    bad("short IDX header", 1, 1, "header", "train --data %s --epochs 1 --out %s", d, O);
    /* wrong magic */
    memcpy(hdr, h, 16);
    put_be32((unsigned char *)hdr, 0x0903);
    d = images_variant("magic", (unsigned char *)hdr, 16, 300 * 64);
    bad("wrong IDX magic", 1, 1, "magic", "train --data %s --epochs 1 --out %s", d, O);
    /* a header promising far more than the file holds */
    put_be32(h + 4, 0xffffffffu), put_be32(h + 8, 65535), put_be32(h + 12, 65535);
    d = images_variant("oversized", h, 16, 300 * 64);
    bad("oversized IDX header", 1, 1, "train-images-idx3-ubyte",
        "train --data %s --epochs 1 --out %s", d, O);
    /* 300 images, 299 labels */
    d = labels_variant("count", "train-labels-idx1-ubyte", 299, 299, -1);
    bad("image/label count mismatch", 1, 1, "299", "train --data %s --epochs 1 --out %s", d, O);
    /* a labels header promising more labels than the file holds */
    d = labels_variant("label_trunc", "train-labels-idx1-ubyte", 300, 200, -1);
    bad("truncated IDX labels", 1, 1, "train-labels-idx1-ubyte",
        "train --data %s --epochs 1 --out %s", d, O);
    /* a label outside the model's classes, in the training and in the test split */
    d = labels_variant("label_range", "train-labels-idx1-ubyte", 300, 300, 250);
    bad("training label out of range", 2, 1, "251 classes",
        "train --data %s --arch 64-8-3 --epochs 1 --out %s", d, O);
    d = labels_variant("test_label_range", "t10k-labels-idx1-ubyte", 150, 150, 7);
    bad("test label out of range", 2, 1, "test split",
        "train --data %s --arch 64-8-3 --epochs 1 --out %s", d, O);
    bad("eval: label out of range", 2, 0, "classes", "eval --model %s --data %s", good, d);
    /* the test split missing, the directory missing */
    d = data_variant("no_test", "t10k-labels-idx1-ubyte", NULL, 0);
    bad("missing test split", 1, 1, "test", "train --data %s --epochs 1 --out %s", d, O);
    bad("missing data directory", 1, 1, "/nonexistent/kdcl-data",
        "train --data /nonexistent/kdcl-data --epochs 1 --out %s", O);
}
END_TEST

START_TEST(test_bad_checkpoints)
{
    char w0[128], rv[128];
    tensor_with_suffix(good, "weight", w0, sizeof w0);
    tensor_with_suffix(good_bn, "running_var", rv, sizeof rv);
    const char *c;
    c = ckpt_variant("nan_weight", good, w0, 'v', NAN, NULL, NULL);
    bad("NaN weight", 1, 0, w0, "eval --model %s --data %s", c, data);
    c = ckpt_variant("inf_weight", good, w0, 'v', INFINITY, NULL, NULL);
    bad("Inf weight", 1, 0, w0, "eval --model %s --data %s", c, data);
    c = ckpt_variant("huge_weights", good, w0, 'a', 3e38f, NULL, NULL);
    bad("finite weights whose outputs overflow", 1, 0, "huge_weights", "eval --model %s --data %s",
        c, data);
    c = ckpt_variant("nan_running_var", good_bn, rv, 'v', NAN, NULL, NULL);
    bad("NaN BatchNorm variance", 1, 0, rv, "eval --model %s --data %s", c, data);
    c = ckpt_variant("neg_running_var", good_bn, rv, 'v', -1.0f, NULL, NULL);
    bad("negative BatchNorm variance", 1, 0, rv, "eval --model %s --data %s", c, data);
    c = ckpt_variant("nan_teacher", good, w0, 'v', NAN, NULL, NULL);
    bad("distill from a NaN teacher", 1, 0, w0,
        "distill --data %s --teacher %s --epochs 1 --out %s", data, c, keep);
    c = ckpt_variant("shape", good, w0, 's', 0, NULL, NULL);
    bad("weight shape disagrees with kdcl.model", 1, 0, w0, "eval --model %s --data %s", c, data);
    c = ckpt_variant("missing", good, w0, 'd', 0, NULL, NULL);
    bad("tensor missing", 1, 0, w0, "eval --model %s --data %s", c, data);
    c = ckpt_variant("extra", good, NULL, 'x', 0, NULL, NULL);
    bad("tensor the architecture lacks", 1, 0, "extra.weight", "eval --model %s --data %s", c,
        data);
    c = ckpt_variant("std_inf", good, NULL, 0, 0, "kdcl.input_std", "[1e999]");
    bad("input std inf", 1, 0, "kdcl.input_std", "eval --model %s --data %s", c, data);
    c = ckpt_variant("std_tiny", good, NULL, 0, 0, "kdcl.input_std", "[1e-40]");
    bad("input std that overflows the transform", 1, 0, "std", "eval --model %s --data %s", c,
        data);
    c = ckpt_variant("std_zero", good, NULL, 0, 0, "kdcl.input_std", "[0]");
    bad("input std 0", 1, 0, "std", "eval --model %s --data %s", c, data);
    c = ckpt_variant("mean_big", good, NULL, 0, 0, "kdcl.input_mean", "[1e300]");
    bad("input mean beyond float", 1, 0, "kdcl.input_mean", "eval --model %s --data %s", c, data);
    c = ckpt_variant("shape_meta", good, NULL, 0, 0, "kdcl.input_shape", "[1, 8, 9]");
    bad("input shape disagrees with the layers", 1, 0, "shape_meta.safetensors",
        "eval --model %s --data %s", c, data);
    c = ckpt_variant("model_json", good, NULL, 0, 0, "kdcl.model", "{\"layers\": [");
    bad("kdcl.model not JSON", 1, 0, "kdcl.model", "eval --model %s --data %s", c, data);
    size_t n;
    char *b = slurp(good, &n);
    char tr[4400];
    snprintf(tr, sizeof tr, "%s/truncated.safetensors", dir);
    tu_write_file(tr, b, n - 7);
    free(b);
    bad("truncated checkpoint", 1, 0, "truncated.safetensors", "eval --model %s --data %s", tr,
        data);
    snprintf(tr, sizeof tr, "%s/empty.safetensors", dir);
    tu_write_file(tr, "", 0);
    bad("empty checkpoint", 1, 0, "empty.safetensors", "eval --model %s --data %s", tr, data);
}
END_TEST

START_TEST(test_models_that_do_not_fit)
{
    bad("arch inputs", 2, 1, "65 inputs", "train --data %s --arch 65-8-3 --epochs 1 --out %s",
        data, keep);
    bad("arch outputs", 2, 1, "2 outputs", "train --data %s --arch 64-8-2 --epochs 1 --out %s",
        data, keep);
    bad("conv kernel larger than the image", 2, 1, "does not fit",
        "train --data %s --arch 'conv(4,9),flatten,linear(K)' --epochs 1 --out %s", data, keep);
    bad("eval: 2 outputs, 3 classes", 2, 0, "2 outputs", "eval --model %s --data %s", two, data);
    bad("adjust-bias --search: 2 outputs, 3 classes", 2, 0, "2 outputs",
        "adjust-bias --model %s --data %s --classes 1 --search --val 50 --out %s", two, data,
        keep);
    bad("adjust-bias --offset: 2 outputs, 3 classes", 2, 0, "2 outputs",
        "adjust-bias --model %s --data %s --classes 1 --offset 1 --out %s", two, data, keep);
    bad("distill: teacher with 2 classes", 2, 0, "2 classes",
        "distill --data %s --teacher %s --arch 64-8-3 --epochs 1 --out %s", data, two, keep);
    bad("specialists cluster: 2-output generalist", 2, 0, "2 classes",
        "specialists cluster --data %s --model %s --clusters 2 --out %s/c.json", data, two, dir);
    /* a batch whose activations exceed the device: refused before anything
     * that size is allocated (per example 2 x oc x 64 floats in the first
     * layer alone, 300 examples, twice the device's memory) */
    const kdcl_device_info *dev = kdcl_ctx_device(tu_ctx);
    unsigned long long oc = 2ull * dev->global_mem / (300ull * 64 * 4 * 2) + 1;
    /* kdcl's limit on channels; its largest buffer, 300 x 256 MB, then still
     * exceeds the largest buffer of today's devices (a quarter of their memory) */
    if (oc > 1000000) oc = 1000000;
    bad("batch beyond the device memory", 1, 0, "of device memory",
        "train --data %s --arch 'conv(%llu,1),relu,conv(1,1),flatten,linear(K)' --batch 300 "
        "--epochs 1 --out %s",
        data, oc, keep);
}
END_TEST

START_TEST(test_absurd_flags)
{
    /* DATA, GOOD, DIR, OUT: the data, a good checkpoint, the temp directory, the
     * older checkpoint; fast 0: refused right after the data is loaded */
    static const struct {
        const char *args, *needle;
        int fast;
    } cases[] = {
        {"train --data DATA --epochs -1 --out OUT", "--epochs", 1},
        {"train --data DATA --epochs ' -1' --out OUT", "--epochs", 1},
        {"train --data DATA --epochs 0 --out OUT", "--epochs", 1},
        {"train --data DATA --epochs 1e3 --out OUT", "--epochs", 1},
        {"train --data DATA --batch 0 --out OUT", "--batch", 1},
        {"train --data DATA --batch 100000 --out OUT", "larger than", 0},
        {"train --data DATA --lr nan --out OUT", "--lr", 1},
        {"train --data DATA --lr inf --out OUT", "--lr", 1},
        {"train --data DATA --lr -0.1 --out OUT", "--lr", 1},
        {"train --data DATA --lr 1e999 --out OUT", "--lr", 1},
        {"train --data DATA --lr-decay 0 --out OUT", "--lr-decay", 1},
        {"train --data DATA --momentum 1.5 --out OUT", "--momentum", 1},
        {"train --data DATA --momentum 0.5,0.9,1e300 --out OUT", "--momentum", 1},
        {"train --data DATA --weight-decay -1 --out OUT", "--weight-decay", 1},
        {"train --data DATA --weight-decay 5 --out OUT", "--weight-decay", 1},
        {"train --data DATA --omit-classes 7 --out OUT", "class 7", 0},
        {"train --data DATA --only-classes 1,5 --out OUT", "class 5", 0},
        {"train --data DATA --dropout 1 --out OUT", "--dropout", 1},
        {"train --data DATA --dropout nan --out OUT", "--dropout", 1},
        {"train --data DATA --max-norm 0 --out OUT", "--max-norm", 1},
        {"train --data DATA --jitter 17 --out OUT", "--jitter", 1},
        {"train --data DATA --fraction 0 --out OUT", "--fraction", 1},
        {"train --data DATA --val 300 --out OUT", "--val", 0},
        {"train --data DATA --warmup x --out OUT", "--warmup", 1},
        {"train --data DATA --seed -1 --out OUT", "--seed", 1},
        {"train --data DATA --schedule step:0 --out OUT", "step", 1},
        {"train --data DATA --optimizer sgdd --out OUT", "--optimizer", 1},
        {"distill --data DATA --teacher GOOD --T 0 --out OUT", "--T", 1},
        {"distill --data DATA --teacher GOOD --T nan --out OUT", "--T", 1},
        {"distill --data DATA --teacher GOOD --alpha 2 --out OUT", "--alpha", 1},
        {"distill --data DATA --teacher GOOD --alpha -0.5 --out OUT", "--alpha", 1},
        {"eval --data DATA --model GOOD --split frob", "--split", 1},
        {"adjust-bias --data DATA --model GOOD --classes 1 --search --range 1,0,0.1 --out OUT",
         "--range", 1},
        {"adjust-bias --data DATA --model GOOD --classes 1 --search --val 0 --out OUT", "--val", 1},
        {"adjust-bias --data DATA --model GOOD --classes 1 --offset nan --out OUT", "--offset", 1},
        {"adjust-bias --data DATA --model GOOD --classes 1 --offset 1e30 --out OUT", "--offset", 1},
        {"adjust-bias --data DATA --model GOOD --classes 9 --offset 1 --out OUT", "class 9", 0},
        {"gemm --m 0", "--m", 1},
        {"gemm --reps -3", "--reps", 1},
        {"bench --reps 0", "--reps", 1},
        {"specialists cluster --data DATA --model GOOD --clusters 0 --out DIR/c.json",
         "--clusters", 1},
        {"specialists eval --data DATA --model GOOD --specialists DIR --lr nan", "--lr", 1},
        {"specialists cluster --data DATA --model GOOD --clusters 2 --restarts 1000000000 --out "
         "DIR/c.json",
         "--restarts", 1},
        {"tune --fraction 2", "--fraction", 1},
        {"tune --max-seconds 1e30", "--max-seconds", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[16384] = "";
        size_t off = 0;
        for (const char *p = cases[i].args; *p && off < sizeof args - 4400;) {
            static const char *const keys[] = {"DATA", "GOOD", "DIR", "OUT"};
            const char *vals[] = {data, good, dir, keep};
            int hit = 0;
            for (int k = 0; k < 4 && !hit; k++)
                if (!strncmp(p, keys[k], strlen(keys[k]))) {
                    off += (size_t)snprintf(args + off, sizeof args - off, "%s", vals[k]);
                    p += strlen(keys[k]);
                    hit = 1;
                }
            if (!hit) args[off++] = *p++, args[off] = '\0';
        }
        bad(cases[i].args, 2, cases[i].fast, cases[i].needle, "%s", args);
    }
}
END_TEST

START_TEST(test_missing_device)
{
    bad("train --device nosuch", 2, 0, "nosuch",
        "train --data %s --device nosuch --epochs 1 --out %s", data, keep);
    bad("eval --device nosuch", 2, 0, "nosuch", "eval --data %s --model %s --device nosuch", data,
        good);
    bad("gemm --device 7:7", 2, 0, "7:7", "gemm --device 7:7");
}
END_TEST

START_TEST(test_bad_outputs)
{
    char file_dir[4400];
    snprintf(file_dir, sizeof file_dir, "%s/plain_file", dir);
    tu_write_file(file_dir, "x", 1);
    bad("--out is a directory", 2, 1, "directory", "train --data %s --epochs 1 --out %s", data, dir);
    bad("--out is empty", 2, 1, "--out", "train --data %s --epochs 1 --out ''", data);
    bad("--out in a missing directory", 2, 1, "does not exist",
        "train --data %s --epochs 1 --out %s/no/such/m.st", data, dir);
    bad("--out under a plain file", 2, 1, "not a directory",
        "train --data %s --epochs 1 --out %s/m.st", data, file_dir);
    bad("--out is a device", 2, 1, "not a regular file",
        "train --data %s --epochs 1 --out /dev/null", data);
    bad("--metrics is a directory", 2, 1, "--metrics",
        "train --data %s --epochs 1 --out %s --metrics %s", data, keep, dir);
    bad("--metrics is --out", 2, 1, "same file",
        "train --data %s --epochs 1 --out %s --metrics %s", data, keep, keep);
    bad("distill --out in a missing directory", 2, 1, "does not exist",
        "distill --data %s --teacher %s --epochs 1 --out %s/no/m.st", data, good, dir);
    bad("adjust-bias --out in a missing directory", 2, 1, "does not exist",
        "adjust-bias --data %s --model %s --classes 1 --offset 1 --out %s/no/m.st", data, good,
        dir);
    bad("bench --json in a missing directory", 2, 1, "does not exist",
        "bench --quick --json %s/no/such/bench.json", dir);
    bad("specialists cluster --out is a directory", 2, 1, "directory",
        "specialists cluster --data %s --model %s --clusters 2 --out %s", data, good, dir);
    bad("specialists train --out is a file", 2, 1, "not a directory",
        "specialists train --data %s --model %s --clusters %s --out %s", data, good, file_dir,
        file_dir);
    bad("specialists eval --json in a missing directory", 2, 1, "does not exist",
        "specialists eval --data %s --model %s --specialists %s --json %s/no/x.json", data, good,
        dir, dir);
    { /* kdcl tune's file, before any tuning */
        const char *old = getenv("KDCL_CACHE_DIR");
        char saved[4400] = "", cache[4500];
        if (old) snprintf(saved, sizeof saved, "%s", old);
        snprintf(cache, sizeof cache, "%s/cache", file_dir);
        setenv("KDCL_CACHE_DIR", cache, 1);
        bad("tune: cache directory under a plain file", 2, 0, "tuning file",
            "tune --search candidates");
        if (old)
            setenv("KDCL_CACHE_DIR", saved, 1);
        else
            unsetenv("KDCL_CACHE_DIR");
    }
    if (access("/proc/1", W_OK) != 0) { /* a directory that takes no files (root: may not exist) */
        bad("--out in a directory without write access", 2, 1, "cannot create",
            "train --data %s --epochs 1 --out /proc/1/m.st", data);
    }
}
END_TEST

/* A diverging run onto an existing --out: the old checkpoint and its
 * metrics survive byte for byte. */
START_TEST(test_diverging_run_keeps_old_files)
{
    bad("diverging loss", 1, 0, "diverged",
        "train --data %s --arch 64-8-3 --lr 1e30 --epochs 2 --batch 10 --out %s", data, keep);
    bad("diverging distillation", 1, 0, "diverged",
        "distill --data %s --teacher %s --arch 64-8-3 --lr 1e30 --epochs 2 --batch 10 --out %s",
        data, good, keep);
}
END_TEST

START_TEST(test_catalogue_size)
{
    ck_assert_msg(n_cases >= 40, "only %d bad-input cases ran", n_cases);
    printf("bad-input catalogue: %d cases\n", n_cases);
}
END_TEST

/* ---- what must not fail ---- */

/* A corrupt tuning cache is ignored (every command still runs, the tuning
 * string says so), and kdcl tune writes a good one in its place. */
START_TEST(test_corrupt_tuning_cache)
{
    char cache[4400], path[4500];
    snprintf(cache, sizeof cache, "%s/cache", dir);
    const char *old = getenv("KDCL_CACHE_DIR");
    char saved[4400] = "";
    if (old) snprintf(saved, sizeof saved, "%s", old);
    setenv("KDCL_CACHE_DIR", cache, 1);
    unsetenv("KDCL_NO_TUNING");
    ck_assert(kdcl_gemm_tuning_path(kdcl_ctx_device(tu_ctx), path, sizeof path) == KDCL_OK);
    mkdir(cache, 0755);
    char sub[4500];
    snprintf(sub, sizeof sub, "%s/clblast", cache);
    mkdir(sub, 0755);
    static const char *corrupt[] = {
        "{\"kernels\": {\"Xgemm\": {\"MWG\": 6", /* cut short by a crash */
        "",
        "{\"kernels\": {\"Xgemm\": {\"MWG\": -1}}}",
        "{\"kernels\": {\"Xgemm\": {\"MWG\": 64}}}", /* incomplete: CLBlast refuses it */
        "{\"kernels\": {\"Frobnicate\": {\"X\": 1}}}",
    };
    tu_run_result *r = malloc(sizeof *r);
    for (size_t i = 0; i < sizeof corrupt / sizeof corrupt[0]; i++) {
        tu_write_file(path, corrupt[i], strlen(corrupt[i]));
        kdcl_ctx *ctx = NULL;
        kdcl_status s = kdcl_ctx_create(NULL, &ctx);
        ck_assert_msg(s == KDCL_OK, "context with tuning file '%s': %s", corrupt[i],
                      kdcl_last_error());
        ck_assert_msg(strstr(kdcl_ctx_gemm_tuning(ctx), path) != NULL,
                      "the tuning string does not name the ignored file: %s",
                      kdcl_ctx_gemm_tuning(ctx));
        kdcl_ctx_destroy(ctx);
        tu_run(r, "gemm --m 16 --n 16 --k 16 --reps 1");
        ck_assert_msg(r->status == 0 && strstr(r->out, "rewrites it"),
                      "gemm with tuning file '%s' exited %d: %s%s", corrupt[i], r->status,
                      r->out, r->err);
    }
    char args[16384];
    snprintf(args, sizeof args, "train --data %s --arch 64-8-3 --epochs 1 --quiet --out %s/t.st",
             data, dir);
    tu_run(r, args);
    ck_assert_msg(r->status == 0, "train with a corrupt tuning cache: %s", r->err);
    /* the next tune rewrites it (--keep: whatever it measures) */
    snprintf(args, sizeof args, "tune --search candidates --arch 64-8-3 --input 1x8x8 --keep");
    tu_run(r, args);
    ck_assert_msg(r->status == 0, "tune over a corrupt cache exited %d: %s", r->status, r->err);
    size_t n;
    char *b = slurp(path, &n);
    cJSON *j = cJSON_Parse(b);
    ck_assert_msg(j && cJSON_IsObject(cJSON_GetObjectItem(j, "kernels")),
                  "kdcl tune left no valid file: %s", b);
    cJSON_Delete(j);
    free(b);
    kdcl_ctx *ctx = NULL;
    tu_ok(kdcl_ctx_create(NULL, &ctx), "context after tune");
    ck_assert_msg(strstr(kdcl_ctx_gemm_tuning(ctx), "kdcl tune (cache)") &&
                      !strstr(kdcl_ctx_gemm_tuning(ctx), "ignored"),
                  "after tune: %s", kdcl_ctx_gemm_tuning(ctx));
    kdcl_ctx_destroy(ctx);
    free(r);
    if (old)
        setenv("KDCL_CACHE_DIR", saved, 1);
    else
        unsetenv("KDCL_CACHE_DIR");
}
END_TEST

static pid_t dead_pid(void)
{
    pid_t p = fork();
    ck_assert_int_ge(p, 0);
    if (p == 0) _exit(0);
    int st;
    waitpid(p, &st, 0);
    return p;
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Temporary files of a save that was killed are removed by the next save of
 * that path; those of a live process stay. */
START_TEST(test_stale_tmp_files_cleaned)
{
    char out[4400], dead_ck[4500], dead_met[4600], live_ck[4500];
    snprintf(out, sizeof out, "%s/stale.st", dir);
    const pid_t dead = dead_pid();
    snprintf(dead_ck, sizeof dead_ck, "%s.tmp.%ld", out, (long)dead);
    snprintf(dead_met, sizeof dead_met, "%s.metrics.jsonl.tmp.%ld", out, (long)dead);
    snprintf(live_ck, sizeof live_ck, "%s.tmp.%ld", out, (long)getpid());
    tu_write_file(dead_ck, "half a checkpoint", 17);
    tu_write_file(dead_met, "{\"epoch\": 1", 11);
    tu_write_file(live_ck, "being written", 13);
    ok_run("train after a killed save",
           "train --data %s --arch 64-8-3 --epochs 1 --quiet --out %s", data, out);
    ck_assert_msg(!exists(dead_ck), "%s was not removed", dead_ck);
    ck_assert_msg(!exists(dead_met), "%s was not removed", dead_met);
    ck_assert_msg(exists(live_ck), "%s (a live process's) was removed", live_ck);
    unlink(live_ck);
    /* the checkpoint writer of the library itself */
    tu_write_file(dead_ck, "half a checkpoint", 17);
    char adj[4600];
    snprintf(adj, sizeof adj, "%s/stale.st", dir);
    ok_run("adjust-bias onto the same path",
           "adjust-bias --data %s --model %s --classes 1 --offset 0.5 --out %s", data, out, adj);
    ck_assert_msg(!exists(dead_ck), "%s was not removed by the library's writer", dead_ck);
}
END_TEST

/* A run killed during training leaves the older checkpoint and its metrics
 * as they were; its partial metrics go at the next run's start. */
START_TEST(test_killed_run_keeps_old_files)
{
    keep_write();
    char args[16384];
    snprintf(args, sizeof args,
             "exec %s train --data %s --arch 64-8-3 --epochs 100000 --batch 100 --quiet --out %s "
             ">/dev/null 2>&1",
             tu_exe(), data, keep);
    pid_t p = fork();
    ck_assert_int_ge(p, 0);
    if (p == 0) {
        execl("/bin/sh", "sh", "-c", args, (char *)NULL);
        _exit(127);
    }
    char tmp[4600], state[4400];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", keep_metrics, (long)p);
    snprintf(state, sizeof state, "%s.state.safetensors", keep);
    struct stat st;
    int seen = 0;
    for (int i = 0; i < 600 && !seen; i++) { /* up to 60 s for the first epoch's line and state */
        seen = stat(tmp, &st) == 0 && st.st_size > 0 && exists(state);
        if (!seen) usleep(100000);
    }
    kill(p, SIGKILL);
    int ws;
    waitpid(p, &ws, 0);
    ck_assert_msg(seen, "the run never wrote its metrics to %s", tmp);
    ck_assert_msg(exists(tmp), "%s vanished", tmp);
    /* the older files are untouched; the stale metrics go when the next run starts */
    struct stat a;
    ck_assert_int_eq(stat(keep, &a), 0);
    ck_assert_int_eq((long)a.st_mtime, KEEP_MTIME);
    /* the killed run's training state (for --resume; test_resume.c) holds
     * back a new run onto the same --out; without it, the next run removes
     * the stale metrics (keep_check looks) */
    ck_assert_msg(exists(state), "the killed run left no training state %s", state);
    ck_assert_int_eq(unlink(state), 0);
    bad("after a killed run: diverging", 1, 0, "diverged",
        "train --data %s --arch 64-8-3 --lr 1e30 --epochs 1 --batch 10 --out %s", data, keep);
}
END_TEST

/* kdcl_model_memory sizes the model's own buffers exactly, and
 * kdcl_model_create refuses a batch beyond the device with both limits named. */
START_TEST(test_memory_estimate)
{
    static const char *archs[] = {"64-16-3", "conv(4,3,p=1),bn,relu,maxpool(2),flatten,dropout(0.5),linear(K)",
                                  "conv(4,3,p=1),relu,res(conv(4,3,p=1),bn),gap,flatten,linear(K)"};
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++) {
        kdcl_model *one = tu_model(archs[i], 3, 1, 8, 8, 1, 0, 0, 1);
        kdcl_model_mem mm;
        tu_ok(kdcl_model_memory(one, 37, &mm), "memory");
        const uint64_t before = kdcl_ctx_mem_stats(tu_ctx).live_bytes;
        kdcl_model *big = tu_model(archs[i], 3, 1, 8, 8, 37, 0, 0, 1);
        const uint64_t used = kdcl_ctx_mem_stats(tu_ctx).live_bytes - before;
        const uint64_t opt = 2 * (uint64_t)kdcl_model_params(big)->capacity * sizeof(float);
        ck_assert_msg(mm.total == used + opt,
                      "%s: estimated %llu bytes at batch 37 (+%llu optimiser), the model holds "
                      "%llu",
                      archs[i], (unsigned long long)(mm.total - opt), (unsigned long long)opt,
                      (unsigned long long)used);
        kdcl_model_destroy(big);
        kdcl_model_destroy(one);
    }
    kdcl_model_spec spec;
    tu_ok(kdcl_model_spec_parse("64-4096-3", 3, &spec), "spec");
    const kdcl_device_info *d = kdcl_ctx_device(tu_ctx);
    const size_t B = (size_t)(d->global_mem / (4096 * 4)) + 1;
    kdcl_model *m = NULL;
    kdcl_status s = kdcl_model_create(tu_ctx, &spec, 1, 8, 8, B, &m);
    kdcl_model_spec_free(&spec);
    ck_assert_int_eq(s, KDCL_ERR_OOM);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(kdcl_last_error(), "of device memory") &&
                      strstr(kdcl_last_error(), "largest buffer") &&
                      strstr(kdcl_last_error(), d->name),
                  "%s", kdcl_last_error());
}
END_TEST

static Suite *badinput_suite(void)
{
    Suite *s = suite_create("badinput");
    TCase *tc = tcase_create("badinput");
    tcase_add_unchecked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_bad_data_files);
    tcase_add_test(tc, test_bad_checkpoints);
    tcase_add_test(tc, test_models_that_do_not_fit);
    tcase_add_test(tc, test_absurd_flags);
    tcase_add_test(tc, test_missing_device);
    tcase_add_test(tc, test_bad_outputs);
    tcase_add_test(tc, test_diverging_run_keeps_old_files);
    tcase_add_test(tc, test_catalogue_size);
    tcase_add_test(tc, test_stale_tmp_files_cleaned);
    tcase_add_test(tc, test_killed_run_keeps_old_files);
    tcase_add_test(tc, test_memory_estimate);
    tcase_add_test(tc, test_corrupt_tuning_cache);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(badinput_suite()); }
