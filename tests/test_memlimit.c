/* Small devices: KDCL_MAX_ALLOC caps the largest buffer (as an iGPU's
 * CL_DEVICE_MAX_MEM_ALLOC_SIZE does), and what kdcl keeps on the device
 * stays under it: the training data is streamed instead of resident, soft
 * targets are computed per batch instead of cached, GEMMs run without
 * packing, ensembles and evaluation models take smaller batches. Each
 * fallback gives the same results as the uncapped path. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gemm_internal.h"
#include "kdcl/kdcl.h"
#include "testutil.h"

#define CAP 32768 /* bytes: KDCL_MAX_ALLOC=32K */

/* A teacher (architecture ta, initialised with seed 5) trained on tr for
 * `epochs` (batch 32, seed `seed`) and saved as memcap-teacher<tag>, and a
 * student's initial weights (sa, seed 9) saved as memcap-student<tag> (0 for
 * an empty tag): square side x side single-channel inputs, `classes`
 * classes. tp, sp: the paths (4200 bytes each). Returns the student's
 * parameter count. */
static size_t save_teacher_student(const kdcl_dataset *tr, const char *ta, const char *sa,
                                   size_t classes, size_t side, int epochs, uint64_t seed,
                                   const char *tag, char *tp, char *sp)
{
    char name[64];
    snprintf(name, sizeof name, "memcap-teacher%s.safetensors", tag);
    snprintf(tp, 4200, "%s", tu_path(name));
    snprintf(name, sizeof name, "memcap-student%s.safetensors", *tag ? tag : "0");
    snprintf(sp, 4200, "%s", tu_path(name));
    kdcl_model *t = tu_model(ta, classes, 1, side, side, 64, 0, 0, 5);
    kdcl_train_opts o;
    kdcl_train_opts_default(&o);
    o.epochs = epochs;
    o.batch = 32;
    o.seed = seed;
    tu_ok(kdcl_train(t, tr, &o, NULL, NULL, NULL), "teacher");
    tu_ok(kdcl_model_save(t, tp, NULL, NULL, 0), "save teacher");
    kdcl_model_destroy(t);
    kdcl_model *s0 = tu_model(sa, classes, 1, side, side, 64, 0, 0, 9);
    tu_ok(kdcl_model_save(s0, sp, NULL, NULL, 0), "save student");
    const size_t np = kdcl_model_n_params(s0);
    kdcl_model_destroy(s0);
    return np;
}

/* A context on the suite's device with KDCL_MAX_ALLOC = value (restored after). */
static kdcl_status capped_ctx(const char *value, kdcl_ctx **out)
{
    const char *old = getenv("KDCL_MAX_ALLOC");
    char saved[64] = "";
    if (old) snprintf(saved, sizeof saved, "%s", old);
    setenv("KDCL_MAX_ALLOC", value, 1);
    kdcl_status s = kdcl_ctx_create(getenv("KDCL_DEVICE"), out);
    if (old)
        setenv("KDCL_MAX_ALLOC", saved, 1);
    else
        unsetenv("KDCL_MAX_ALLOC");
    return s;
}

START_TEST(test_env_values)
{
    const kdcl_device_info *real = kdcl_ctx_device(tu_ctx);
    ck_assert_msg(real->max_alloc > 4 * CAP && !real->max_alloc_capped,
                  "the device's own limit (%llu) is too small for this suite",
                  (unsigned long long)real->max_alloc);
    static const struct {
        const char *v;
        uint64_t bytes;
    } good[] = {{"32K", 32768}, {"32k", 32768}, {"40000", 40000}, {"1M", 1u << 20},
                {"1g", 1ull << 30}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        kdcl_ctx *c = NULL;
        ck_assert_msg(capped_ctx(good[i].v, &c) == KDCL_OK, "%s: %s", good[i].v,
                      kdcl_last_error());
        const kdcl_device_info *d = kdcl_ctx_device(c);
        uint64_t want = good[i].bytes < real->max_alloc ? good[i].bytes : real->max_alloc;
        ck_assert_msg(d->max_alloc == want, "KDCL_MAX_ALLOC=%s gave %llu", good[i].v,
                      (unsigned long long)d->max_alloc);
        ck_assert_int_eq(d->max_alloc_capped, good[i].bytes < real->max_alloc);
        kdcl_ctx_destroy(c);
    }
    /* above the device's own limit: no cap */
    kdcl_ctx *c = NULL;
    ck_assert_int_eq(capped_ctx("17179869183G", &c), KDCL_OK);
    ck_assert_uint_eq(kdcl_ctx_device(c)->max_alloc, real->max_alloc);
    ck_assert_int_eq(kdcl_ctx_device(c)->max_alloc_capped, 0);
    kdcl_ctx_destroy(c);
    static const char *const bad[] = {"abc", "0", "0K", "12Q", "-5", "1KB", " 5", "5 ",
                                      "17179869184G", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        c = NULL;
        ck_assert_msg(capped_ctx(bad[i], &c) == KDCL_ERR_INVALID_ARG, "'%s' taken", bad[i]);
        ck_assert_ptr_null(c);
        ck_assert_msg(strstr(kdcl_last_error(), "KDCL_MAX_ALLOC="), "%s", kdcl_last_error());
    }
    /* the CLI: kdcl devices shows the cap; a bad value is one line and exit 2 */
    setenv("KDCL_MAX_ALLOC", "32K", 1);
    tu_run_result *r = malloc(sizeof *r);
    tu_run(r, "devices");
    ck_assert_msg(r->status == 0 && strstr(r->out, "32.0 KiB (capped by KDCL_MAX_ALLOC)"),
                  "kdcl devices under KDCL_MAX_ALLOC=32K: %s%s", r->out, r->err);
    free(r);
    setenv("KDCL_MAX_ALLOC", "32KiB", 1);
    tu_expect_fail("devices", 2, "KDCL_MAX_ALLOC=32KiB");
    unsetenv("KDCL_MAX_ALLOC");
}
END_TEST

START_TEST(test_tensor_cap)
{
    kdcl_ctx *c;
    tu_ok(capped_ctx("32K", &c), "capped context");
    kdcl_tensor t;
    tu_ok(kdcl_tensor_alloc2(c, &t, KDCL_F32, 64, 128), "a tensor of exactly the cap");
    kdcl_tensor_free(c, &t);
    ck_assert_int_eq(kdcl_tensor_alloc2(c, &t, KDCL_F32, 64, 129), KDCL_ERR_OOM);
    ck_assert_msg(strstr(kdcl_last_error(), "KDCL_MAX_ALLOC 32768 bytes"), "%s",
                  kdcl_last_error());
    kdcl_ctx_destroy(c);
}
END_TEST

/* C = A B (row-major, no transposes) on ctx against a double reference,
 * within gamma_k sum |a||b| per element. */
static void gemm_checked(kdcl_ctx *c, size_t m, size_t n, size_t k, uint64_t seed)
{
    float *a = malloc(m * k * 4), *b = malloc(k * n * 4), *y = malloc(m * n * 4);
    tu_fill_uniform(a, m * k, -1, 1, seed);
    tu_fill_uniform(b, k * n, -1, 1, seed + 1);
    kdcl_tensor ta, tb, tc;
    tu_ok(kdcl_tensor_alloc2(c, &ta, KDCL_F32, m, k), "A");
    tu_ok(kdcl_tensor_alloc2(c, &tb, KDCL_F32, k, n), "B");
    tu_ok(kdcl_tensor_alloc2(c, &tc, KDCL_F32, m, n), "C");
    tu_ok(kdcl_tensor_upload(c, &ta, 0, m * k, a), "upload A");
    tu_ok(kdcl_tensor_upload(c, &tb, 0, k * n, b), "upload B");
    tu_ok(kdcl_gemm(c, KDCL_NO_TRANS, KDCL_NO_TRANS, m, n, k, 1.0f, ta.buf, 0, k, tb.buf, 0, n,
                    0.0f, tc.buf, 0, n, NULL),
          "gemm");
    tu_ok(kdcl_tensor_download(c, &tc, 0, m * n, y), "download C");
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double ref = 0, mag = 0;
            for (size_t p = 0; p < k; p++) {
                ref += (double)a[i * k + p] * b[p * n + j];
                mag += fabs((double)a[i * k + p] * b[p * n + j]);
            }
            ck_assert_msg(fabs(y[i * n + j] - ref) <= tu_gamma_n(k) * mag + 1e-30,
                          "C[%zu,%zu] = %g, reference %g (m=%zu n=%zu k=%zu)", i, j,
                          (double)y[i * n + j], ref, m, n, k);
        }
    kdcl_tensor_free(c, &ta);
    kdcl_tensor_free(c, &tb);
    kdcl_tensor_free(c, &tc);
    free(a);
    free(b);
    free(y);
}

static size_t scratch_bytes(kdcl_ctx *c)
{
    size_t total = 0;
    kdcl_tensor *t;
    for (size_t i = 0; (t = kdcl__gemm_scratch(c, i)); i++)
        if (t->buf) {
            ck_assert_uint_le(t->capacity * 4, CAP);
            total += t->capacity * 4;
        }
    return total;
}

/* Packing on with 64-wide tiles for every size: 40^3 pads to 64^3 (16 KiB
 * per packed operand: packed), 65^3 to 128^3 (64 KiB: above the cap, so
 * unpacked, though its operands fit). */
START_TEST(test_gemm_scratch_cap)
{
    kdcl_gemm_pack_info on = {1, 64, 64, 64, 0, 1e9};
    for (int big = 0; big < 2; big++) {
        kdcl_ctx *c;
        tu_ok(capped_ctx("32K", &c), "capped context");
        tu_ok(kdcl_gemm_set_packing(c, &on), "packing");
        gemm_checked(c, big ? 65 : 40, big ? 65 : 40, big ? 65 : 40, 11 + big);
        size_t used = scratch_bytes(c);
        if (big)
            ck_assert_msg(used == 0, "a product whose packed operands exceed the cap was packed");
        else
            ck_assert_msg(used > 0, "a product whose packed operands fit was not packed");
        kdcl_ctx_destroy(c);
    }
}
END_TEST

static int quadrant(size_t p) { return (int)((p / 6) / 3 * 2 + (p % 6) / 3); }

/* Training data above the cap (1600 6x6 images: 56 KiB) is streamed; a
 * distillation there computes its soft targets per batch; the ensemble
 * and an evaluation model load at a batch whose activations fit. The
 * student trained under the cap equals the one trained without it up to
 * rounding: the teacher's targets differ only by the summation order of
 * GEMMs at other batch sizes (a few ulp), as in test_distill's comparison
 * of cached and per-batch targets (same bound). */
START_TEST(test_streamed_distillation)
{
    kdcl_dataset tr, te;
    tu_make_6x6(&tr, 1600, 21, 4, quadrant, 140, 90);
    tu_make_6x6(&te, 400, 22, 4, quadrant, 140, 90);
    kdcl_ctx *c;
    tu_ok(capped_ctx("32K", &c), "capped context");
    kdcl_batcher *b = NULL;
    tu_ok(kdcl_batcher_create(c, &tr, 64, &b), "batcher (capped)");
    ck_assert_int_eq(kdcl_batcher_resident(b), 0);
    kdcl_batcher_destroy(b);
    tu_ok(kdcl_batcher_create(tu_ctx, &tr, 64, &b), "batcher");
    ck_assert_int_eq(kdcl_batcher_resident(b), 1);
    kdcl_batcher_destroy(b);

    /* a teacher and a student's initial weights, saved */
    char tp[4200], sp[4200];
    const size_t np = save_teacher_student(&tr, "36-32-4", "36-16-4", 4, 6, 3, 5, "", tp, sp);

    /* the ensemble: 1024 rows of activations do not fit; the largest batch
     * that does is taken (no lower than the training batch) */
    const char *paths[1] = {tp};
    kdcl_ensemble *e = NULL;
    ck_assert_int_eq(kdcl_ensemble_load(c, paths, 1, 1024, KDCL_ENS_PROB, &e), KDCL_ERR_OOM);
    tu_ok(kdcl_ensemble_load_fit(c, paths, 1, 1024, 32, KDCL_ENS_PROB, &e), "ensemble (capped)");
    ck_assert_msg(kdcl_ensemble_max_batch(e) >= 32 && kdcl_ensemble_max_batch(e) < 1024 && kdcl_ensemble_max_batch(e) * 36 * 4 <= CAP,
                  "ensemble batch %zu", kdcl_ensemble_max_batch(e));
    kdcl_ensemble *e0 = NULL;
    tu_ok(kdcl_ensemble_load_fit(tu_ctx, paths, 1, 1024, 32, KDCL_ENS_PROB, &e0), "ensemble");
    ck_assert_uint_eq(kdcl_ensemble_max_batch(e0), 1024);
    kdcl_ensemble *none = NULL;
    ck_assert_int_eq(kdcl_ensemble_load_fit(c, paths, 1, 16, 32, KDCL_ENS_PROB, &none),
                     KDCL_ERR_INVALID_ARG);

    float *p[2];
    kdcl_targets used[2];
    kdcl_ensemble *ens[2] = {e0, e};
    kdcl_ctx *ctxs[2] = {tu_ctx, c};
    for (int k = 0; k < 2; k++) {
        kdcl_model *s;
        tu_ok(kdcl_model_load(ctxs[k], sp, 64, &s, NULL), "load student");
        kdcl_train_opts so;
        kdcl_train_opts_default(&so);
        so.epochs = 2;
        so.batch = 32;
        so.seed = 3;
        kdcl_distill_opts d = {4.0f, 0.0f, KDCL_KD_KL, KDCL_TARGETS_AUTO};
        tu_ok(kdcl_distill(s, ens[k], &tr, &so, &d, NULL, &used[k]), "distill");
        p[k] = malloc(np * sizeof(float));
        tu_ok(kdcl_model_get_params(s, p[k]), "params");
        kdcl_model_destroy(s);
    }
    ck_assert_int_eq(used[0], KDCL_TARGETS_CACHED);
    ck_assert_int_eq(used[1], KDCL_TARGETS_BATCH);
    double maxd = 0;
    for (size_t i = 0; i < np; i++) maxd = fmax(maxd, fabs(p[0][i] - p[1][i]));
    ck_assert_msg(maxd < 1e-3, "students with and without the cap differ by %g", maxd);
    free(p[0]);
    free(p[1]);

    /* evaluation loads at a batch that fits and gives the same errors */
    kdcl_model *m;
    ck_assert_int_eq(kdcl_model_load(c, tp, 1000, &m, NULL), KDCL_ERR_OOM);
    tu_ok(kdcl_model_load_fit(c, tp, 1000, 1, &m, NULL), "model (capped)");
    ck_assert_msg(kdcl_model_max_batch(m) < 1000 && kdcl_model_max_batch(m) * 36 * 4 <= CAP,
                  "model batch %zu", kdcl_model_max_batch(m));
    kdcl_eval_result r1, r0;
    tu_ok(kdcl_evaluate(m, &te, 0, &r1), "evaluate (capped)");
    kdcl_model_destroy(m);
    tu_ok(kdcl_model_load_fit(tu_ctx, tp, 1000, 1, &m, NULL), "model");
    ck_assert_uint_eq(kdcl_model_max_batch(m), 1000);
    tu_ok(kdcl_evaluate(m, &te, 0, &r0), "evaluate");
    kdcl_model_destroy(m);
    ck_assert_uint_eq(r1.errors, r0.errors);
    kdcl_eval_result_free(&r0);
    kdcl_eval_result_free(&r1);

    kdcl_ensemble_free(e);
    kdcl_ensemble_free(e0);
    kdcl_ctx_destroy(c);
    kdcl_dataset_free(&tr);
    kdcl_dataset_free(&te);
}
END_TEST

/* Resident data (1000 2x2 images: 4 KB) whose soft-target cache would not
 * fit (1000 x 10 classes x 4 bytes = 40 KB > 32 KiB): the targets are
 * computed per batch, and the student matches the cached run's (as above). */
START_TEST(test_soft_target_cache_cap)
{
    kdcl_dataset tr;
    memset(&tr, 0, sizeof tr);
    tr.n = 1000;
    tr.h = tr.w = 2;
    tr.c = 1;
    tr.dim = 4;
    tr.n_classes = 10;
    tr.images = malloc(tr.n * tr.dim);
    tr.labels = malloc(tr.n * sizeof(int32_t));
    for (size_t i = 0; i < tr.n; i++) {
        tr.labels[i] = (int32_t)(i * 7 % 10);
        for (size_t p = 0; p < 4; p++)
            tr.images[i * 4 + p] = (uint8_t)((tr.labels[i] * 37 + p * 61 + i % 13) & 255);
    }
    kdcl_ctx *c;
    tu_ok(capped_ctx("32K", &c), "capped context");
    kdcl_batcher *b = NULL;
    tu_ok(kdcl_batcher_create(c, &tr, 64, &b), "batcher (capped)");
    ck_assert_int_eq(kdcl_batcher_resident(b), 1);
    kdcl_batcher_destroy(b);
    char tp[4200], sp[4200];
    kdcl_train_opts o;
    kdcl_train_opts_default(&o);
    const size_t np = save_teacher_student(&tr, "4-32-10", "4-8-10", 10, 2, 2, o.seed, "10", tp,
                                           sp);
    const char *paths[1] = {tp};
    kdcl_ctx *ctxs[2] = {tu_ctx, c};
    float *p[2];
    kdcl_targets used[2];
    for (int k = 0; k < 2; k++) {
        kdcl_ensemble *e = NULL;
        tu_ok(kdcl_ensemble_load(ctxs[k], paths, 1, 64, KDCL_ENS_PROB, &e), "ensemble");
        kdcl_model *s;
        tu_ok(kdcl_model_load(ctxs[k], sp, 64, &s, NULL), "load student");
        kdcl_train_opts so;
        kdcl_train_opts_default(&so);
        so.epochs = 2;
        so.batch = 32;
        kdcl_distill_opts d = {2.0f, 0.0f, KDCL_KD_KL, KDCL_TARGETS_CACHED};
        tu_ok(kdcl_distill(s, e, &tr, &so, &d, NULL, &used[k]), "distill");
        p[k] = malloc(np * sizeof(float));
        tu_ok(kdcl_model_get_params(s, p[k]), "params");
        kdcl_model_destroy(s);
        kdcl_ensemble_free(e);
    }
    ck_assert_int_eq(used[0], KDCL_TARGETS_CACHED);
    ck_assert_int_eq(used[1], KDCL_TARGETS_BATCH);
    double maxd = 0;
    for (size_t i = 0; i < np; i++) maxd = fmax(maxd, fabs(p[0][i] - p[1][i]));
    ck_assert_msg(maxd < 1e-3, "students with and without the cap differ by %g", maxd);
    free(p[0]);
    free(p[1]);
    kdcl_ctx_destroy(c);
    kdcl_dataset_free(&tr);
}
END_TEST

static Suite *memlimit_suite(void)
{
    Suite *s = suite_create("memlimit");
    TCase *tc = tcase_create("cap");
    tcase_add_unchecked_fixture(tc, tu_ctx_setup, tu_ctx_teardown);
    tcase_set_timeout(tc, 900);
    tcase_add_test(tc, test_env_values);
    tcase_add_test(tc, test_tensor_cap);
    tcase_add_test(tc, test_gemm_scratch_cap);
    tcase_add_test(tc, test_streamed_distillation);
    tcase_add_test(tc, test_soft_target_cache_cap);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(memlimit_suite()); }
