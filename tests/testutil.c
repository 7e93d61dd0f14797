#include "testutil.h"
#include "kdcl/opencl.h" /* CL_DEVICE_TYPE_CPU */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

const char *tu_tmpdir(void)
{
    static char dir[4096];
    if (!dir[0]) {
        const char *base = getenv("KDCL_TEST_TMP");
        if (!base || !*base) base = "/tmp";
        mkdir(base, 0755);
        int w = snprintf(dir, sizeof dir - 64, "%s/kdcl-test-%ld", base, (long)getpid());
        ck_assert_msg(w > 0 && (size_t)w < sizeof dir - 64, "KDCL_TEST_TMP too long");
        mkdir(dir, 0755);
    }
    return dir;
}

const char *tu_path(const char *name)
{
    static char bufs[8][4096];
    static int k;
    char *b = bufs[k++ & 7];
    int w = snprintf(b, 4096, "%s/%s", tu_tmpdir(), name);
    ck_assert_msg(w > 0 && w < 4096, "test path too long: %s", name);
    return b;
}

int tu_write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = n ? fwrite(data, 1, n, f) : 0;
    int rc = fclose(f);
    return (w == n && rc == 0) ? 0 : -1;
}

void tu_fill_uniform(float *x, size_t n, float lo, float hi, uint64_t seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 0x1234567ull;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        double u = (double)(s >> 11) / 9007199254740992.0;
        x[i] = (float)(lo + (hi - lo) * u);
    }
}

kdcl_ctx *tu_ctx;

int tu_cpu_unless_env(const char *name)
{
    const char *env = getenv(name);
    return env && *env ? strcmp(env, "0") != 0
                       : (kdcl_ctx_device(tu_ctx)->type & CL_DEVICE_TYPE_CPU) != 0;
}

int tu_gemm_small_default(void) { return tu_cpu_unless_env("KDCL_GEMM_SMALL"); }

void tu_ctx_setup(void)
{
    kdcl_status s = kdcl_ctx_create(NULL, &tu_ctx);
    ck_assert_msg(s == KDCL_OK, "context: %s", kdcl_last_error());
}

void tu_ctx_teardown(void)
{
    kdcl_ctx_destroy(tu_ctx);
    tu_ctx = NULL;
}

kdcl_tensor tu_mat(size_t B, size_t K)
{
    kdcl_tensor t;
    kdcl_status s = kdcl_tensor_alloc2(tu_ctx, &t, KDCL_F32, B, K);
    ck_assert_msg(s == KDCL_OK, "alloc: %s", kdcl_last_error());
    return t;
}

kdcl_tensor tu_vec(kdcl_elem type, size_t n)
{
    kdcl_tensor t;
    kdcl_status s = kdcl_tensor_alloc(tu_ctx, &t, type, 1, &n);
    ck_assert_msg(s == KDCL_OK, "alloc: %s", kdcl_last_error());
    return t;
}

void tu_put(kdcl_tensor *t, const void *h)
{
    kdcl_status s = kdcl_tensor_upload(tu_ctx, t, 0, t->numel, h);
    ck_assert_msg(s == KDCL_OK, "upload: %s", kdcl_last_error());
}

void tu_get(const kdcl_tensor *t, void *h)
{
    kdcl_status s = kdcl_tensor_download(tu_ctx, t, 0, t->numel, h);
    ck_assert_msg(s == KDCL_OK, "download: %s", kdcl_last_error());
}

void tu_ok(kdcl_status s, const char *what)
{
    ck_assert_msg(s == KDCL_OK, "%s: %s", what, kdcl_last_error());
}

void tu_make_6x6(kdcl_dataset *d, size_t n, uint64_t seed, int n_classes,
                 int (*region)(size_t p), unsigned noise, unsigned boost)
{
    memset(d, 0, sizeof *d);
    d->n = n;
    d->h = d->w = 6;
    d->c = 1;
    d->dim = 36;
    d->n_classes = (size_t)n_classes;
    d->images = malloc(n * 36);
    d->labels = malloc(n * sizeof(int32_t));
    kdcl_rng r;
    kdcl_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) {
        int cls = (int)kdcl_rng_below(&r, (uint64_t)n_classes);
        d->labels[i] = cls;
        for (size_t p = 0; p < 36; p++)
            d->images[i * 36 + p] =
                (uint8_t)(kdcl_rng_below(&r, noise) + (region(p) == cls ? boost : 0));
    }
}

kdcl_model *tu_model(const char *arch, size_t n_classes, size_t c, size_t h, size_t w,
                     size_t max_batch, float drop_in, float drop_hidden, uint64_t seed)
{
    kdcl_model_spec spec;
    tu_ok(kdcl_model_spec_parse(arch, n_classes, &spec), arch);
    if (drop_in > 0 || drop_hidden > 0)
        tu_ok(kdcl_model_spec_add_dropout(&spec, drop_in, drop_hidden), "add dropout");
    if (c == 0) {
        c = h = 1;
        w = spec.in_features;
    }
    kdcl_model *m = NULL;
    tu_ok(kdcl_model_create(tu_ctx, &spec, c, h, w, max_batch, &m), "model create");
    kdcl_model_spec_free(&spec);
    tu_ok(kdcl_model_init(m, seed), "model init");
    return m;
}

const char *tu_exe(void)
{
    const char *exe = getenv("KDCL_EXE");
    ck_assert_msg(exe && access(exe, X_OK) == 0, "KDCL_EXE not set to the kdcl binary");
    return exe;
}

void tu_run(tu_run_result *r, const char *args)
{
    static char cmd[20000];
    char errf[4200];
    snprintf(errf, sizeof errf, "%s", tu_path("stderr.txt"));
    int w = snprintf(cmd, sizeof cmd, "%s %s 2>%s", tu_exe(), args, errf);
    ck_assert_msg(w > 0 && (size_t)w < sizeof cmd, "command too long: %s", args);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t n = fread(r->out, 1, sizeof r->out - 1, p);
    r->out[n] = '\0';
    while (fgetc(p) != EOF) { /* drain what did not fit */
    }
    int st = pclose(p);
    /* the shell reports a command killed by signal S as 128 + S */
    r->signaled = WIFSIGNALED(st) || (WIFEXITED(st) && WEXITSTATUS(st) > 128);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    FILE *e = fopen(errf, "r");
    n = e ? fread(r->err, 1, sizeof r->err - 1, e) : 0;
    r->err[n] = '\0';
    if (e) fclose(e);
    r->err_lines = 0;
    for (char *c = r->err; *c; c++) r->err_lines += *c == '\n';
}

void tu_expect_fail(const char *args, int status, const char *needle)
{
    static tu_run_result r;
    tu_run(&r, args);
    ck_assert_msg(r.status == status, "'kdcl %s' exited %d, expected %d; stderr: %s", args,
                  r.status, status, r.err);
    ck_assert_msg(r.err_lines == 1, "'kdcl %s' printed %d stderr lines: %s", args, r.err_lines,
                  r.err);
    ck_assert_msg(strstr(r.err, needle) != NULL, "'kdcl %s': '%s' not in: %s", args, needle,
                  r.err);
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

void tu_write_idx_split(const char *dir, const char *prefix, size_t n, uint64_t seed)
{
    unsigned char *img = malloc(16 + n * 64), *lab = malloc(8 + n);
    ck_assert(img && lab);
    put_be32(img, 0x803);
    put_be32(img + 4, (uint32_t)n);
    put_be32(img + 8, 8);
    put_be32(img + 12, 8);
    put_be32(lab, 0x801);
    put_be32(lab + 4, (uint32_t)n);
    kdcl_rng r;
    kdcl_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) {
        int c = (int)kdcl_rng_below(&r, 3);
        lab[8 + i] = (unsigned char)c;
        for (int p = 0; p < 64; p++)
            img[16 + i * 64 + p] =
                (unsigned char)(kdcl_rng_below(&r, 100) + ((p % 8) / 3 == c ? 120 : 0));
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte.gz", dir, prefix);
    gzFile g = gzopen(path, "wb");
    ck_assert_ptr_nonnull(g);
    gzwrite(g, img, (unsigned)(16 + n * 64));
    gzclose(g);
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte", dir, prefix);
    ck_assert_int_eq(tu_write_file(path, lab, 8 + n), 0);
    free(img);
    free(lab);
}

int tu_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int nf = srunner_ntests_failed(sr);
    srunner_free(sr);
    return nf == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

double tu_gamma_n(size_t n)
{
    double a = (double)n * TU_U;
    return a / (1.0 - a);
}

tu_rowref tu_ref_row(const float *z, size_t K, double T, int scaled, double *lp, double *delta)
{
    const double U = TU_U;
    tu_rowref r;
    r.m = -INFINITY;
    for (size_t k = 0; k < K; k++) r.m = fmax(r.m, z[k] / T);
    double S = 0;
    for (size_t k = 0; k < K; k++) S += exp(z[k] / T - r.m);
    r.logS = log(S);
    double pd = 0;
    for (size_t k = 0; k < K; k++) {
        double x = z[k] / T;
        lp[k] = (x - r.m) - r.logS;
        delta[k] = (scaled ? 2 * U * (fabs(x) + fabs(r.m)) : 0) + U * fabs(x - r.m);
        pd += exp(lp[k]) * delta[k];
    }
    r.E = pd + 8 * U + tu_gamma_n(K);
    return r;
}
