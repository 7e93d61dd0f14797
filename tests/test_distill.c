/* Distillation: ensembles (probability and logit averaging), soft targets
 * cached vs per batch, a student learning from a teacher, bias adjustment. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdcl/kdcl.h"
#include "kdcl/distill.h"
#include "testutil.h"

/* 6x6 images, 4 classes: which quadrant is bright, plus noise. */
static int quadrant(size_t p) { return (int)((p / 6) / 3 * 2 + (p % 6) / 3); }
static void make_quads(kdcl_dataset *d, size_t n, uint64_t seed)
{
    tu_make_6x6(d, n, seed, 4, quadrant, 140, 90);
}

static void train_model(const char *arch, const kdcl_dataset *tr, uint64_t seed, size_t epochs,
                        const char *path)
{
    kdcl_model *m = tu_model(arch, 4, 1, 6, 6, 64, 0, 0, seed);
    kdcl_train_opts o;
    kdcl_train_opts_default(&o);
    o.epochs = epochs;
    o.batch = 32;
    o.seed = seed;
    ck_assert_msg(kdcl_train(m, tr, &o, NULL, NULL, NULL) == KDCL_OK, "%s", kdcl_last_error());
    ck_assert_int_eq(kdcl_model_save(m, path, NULL, NULL, 0), KDCL_OK);
    kdcl_model_destroy(m);
}

START_TEST(test_ensemble_targets_match_reference)
{
    kdcl_dataset tr;
    make_quads(&tr, 256, 1);
    char p1[4096], p2[4096];
    snprintf(p1, sizeof p1, "%s", tu_path("t1.safetensors"));
    snprintf(p2, sizeof p2, "%s", tu_path("t2.safetensors"));
    train_model("36-24-4", &tr, 1, 1, p1);
    train_model("36-16-16-4", &tr, 2, 1, p2); /* members may differ in architecture */
    const char *paths[2] = {p1, p2};
    kdcl_ensemble *e = NULL;
    const float T = 3.0f;
    /* the members' logits, on the host */
    float *l1, *l2;
    kdcl_model *m1, *m2;
    ck_assert_int_eq(kdcl_model_load(tu_ctx, p1, 64, &m1, NULL), KDCL_OK);
    ck_assert_int_eq(kdcl_model_load(tu_ctx, p2, 64, &m2, NULL), KDCL_OK);
    ck_assert_int_eq(kdcl_model_logits_all(m1, &tr, &l1), KDCL_OK);
    ck_assert_int_eq(kdcl_model_logits_all(m2, &tr, &l2), KDCL_OK);
    for (int mode = 0; mode < 2; mode++) {
        ck_assert_int_eq(kdcl_ensemble_load(tu_ctx, paths, 2, 64, (kdcl_ens_mode)mode, &e),
                         KDCL_OK);
        kdcl_batcher *b = NULL;
        ck_assert_int_eq(kdcl_batcher_create(tu_ctx, &tr, 64, &b), KDCL_OK);
        ck_assert_int_eq(kdcl_batcher_load(b, 0, 64), KDCL_OK);
        ck_assert_int_eq(kdcl_ensemble_forward(e, kdcl_batcher_images(b), 64, 6, 6, 1, 0, 0, 0, 0, T, 0),
                         KDCL_OK);
        float out[64 * 4];
        ck_assert_int_eq(kdcl_tensor_download(tu_ctx, kdcl_ensemble_output(e), 0, 64 * 4, out), KDCL_OK);
        for (size_t r = 0; r < 64; r++) {
            double ref[4], s1 = 0, s2 = 0, sm = 0, mx1 = -1e30, mx2 = -1e30, mxm = -1e30;
            for (int k = 0; k < 4; k++) {
                mx1 = fmax(mx1, l1[r * 4 + k] / T);
                mx2 = fmax(mx2, l2[r * 4 + k] / T);
                mxm = fmax(mxm, (l1[r * 4 + k] + l2[r * 4 + k]) / (2 * T));
            }
            for (int k = 0; k < 4; k++) {
                s1 += exp(l1[r * 4 + k] / T - mx1);
                s2 += exp(l2[r * 4 + k] / T - mx2);
                sm += exp((l1[r * 4 + k] + l2[r * 4 + k]) / (2 * T) - mxm);
            }
            for (int k = 0; k < 4; k++)
                ref[k] = mode == 0 ? 0.5 * (exp(l1[r * 4 + k] / T - mx1) / s1 +
                                            exp(l2[r * 4 + k] / T - mx2) / s2)
                                   : exp((l1[r * 4 + k] + l2[r * 4 + k]) / (2 * T) - mxm) / sm;
            /* fp32 softmax of O(1) logits: a few ulps; 1e-5 leaves room for
             * the members' forward running in another batch composition */
            for (int k = 0; k < 4; k++)
                ck_assert_msg(fabs(out[r * 4 + k] - ref[k]) < 1e-5, "mode %d row %zu: %g vs %g",
                              mode, r, out[r * 4 + k], ref[k]);
        }
        kdcl_eval_result er;
        ck_assert_int_eq(kdcl_ensemble_evaluate(e, &tr, &er), KDCL_OK);
        ck_assert_uint_eq(er.n, 256);
        long tot = 0;
        for (int i = 0; i < 16; i++) tot += er.confusion[i];
        ck_assert_int_eq(tot, 256);
        kdcl_eval_result_free(&er);
        kdcl_batcher_destroy(b);
        kdcl_ensemble_free(e);
    }
    free(l1);
    free(l2);
    kdcl_model_destroy(m1);
    kdcl_model_destroy(m2);
    /* members that disagree on the number of classes */
    train_model("36-8-5", &tr, 3, 1, tu_path("t5.safetensors"));
    const char *bad[2] = {p1, tu_path("t5.safetensors")};
    ck_assert_int_eq(kdcl_ensemble_load(tu_ctx, bad, 2, 64, KDCL_ENS_PROB, &e),
                     KDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "disagree"));
    kdcl_dataset_free(&tr);
}
END_TEST

START_TEST(test_student_learns_from_teacher)
{
    kdcl_dataset tr, te;
    make_quads(&tr, 800, 4);
    make_quads(&te, 400, 5);
    const char *tp = tu_path("teacher.safetensors");
    train_model("36-64-64-4", &tr, 7, 4, tp);
    kdcl_ensemble *e = NULL;
    ck_assert_int_eq(kdcl_ensemble_load(tu_ctx, &tp, 1, 64, KDCL_ENS_PROB, &e), KDCL_OK);
    kdcl_eval_result rt;
    ck_assert_int_eq(kdcl_ensemble_evaluate(e, &te, &rt), KDCL_OK);
    float p_cached[36 * 16 + 16 + 16 * 4 + 4], p_batch[sizeof p_cached / 4];
    for (int path = 0; path < 2; path++) {
        kdcl_model *s = tu_model("36-16-4", 4, 1, 6, 6, 64, 0, 0, 9);
        kdcl_train_opts o;
        kdcl_train_opts_default(&o);
        o.epochs = 4;
        o.batch = 32;
        kdcl_distill_opts d = {4.0f, 0.0f, KDCL_KD_KL,
                               path ? KDCL_TARGETS_BATCH : KDCL_TARGETS_CACHED};
        kdcl_targets used;
        ck_assert_msg(kdcl_distill(s, e, &tr, &o, &d, NULL, &used) == KDCL_OK, "%s",
                      kdcl_last_error());
        ck_assert_int_eq(used, path ? KDCL_TARGETS_BATCH : KDCL_TARGETS_CACHED);
        kdcl_eval_result r;
        ck_assert_int_eq(kdcl_evaluate(s, &te, 0, &r), KDCL_OK);
        /* alpha = 0: the student never sees a label, only the teacher */
        ck_assert_msg(r.errors <= rt.errors + 40 && r.errors < 80,
                      "student %zu errors, teacher %zu (of 400)", r.errors, rt.errors);
        kdcl_eval_result_free(&r);
        kdcl_model_get_params(s, path ? p_batch : p_cached);
        kdcl_model_destroy(s);
    }
    /* the same targets by either path: the same student up to rounding */
    double maxd = 0;
    for (size_t i = 0; i < sizeof p_cached / 4; i++)
        maxd = fmax(maxd, fabs(p_cached[i] - p_batch[i]));
    ck_assert_msg(maxd < 1e-3, "cached and per-batch targets trained different students (%g)", maxd);
    /* cached targets cannot follow jitter */
    kdcl_model *s = tu_model("36-16-4", 4, 1, 6, 6, 64, 0, 0, 9);
    kdcl_train_opts o;
    kdcl_train_opts_default(&o);
    o.jitter = 1;
    kdcl_distill_opts d = {4.0f, 0.5f, KDCL_KD_KL, KDCL_TARGETS_CACHED};
    ck_assert_int_eq(kdcl_distill(s, e, &tr, &o, &d, NULL, NULL), KDCL_ERR_INVALID_ARG);
    d.targets = KDCL_TARGETS_AUTO;
    d.T = 0.0f;
    ck_assert_int_eq(kdcl_distill(s, e, &tr, &o, &d, NULL, NULL), KDCL_ERR_INVALID_ARG);
    /* logit matching runs too */
    d.T = 1.0f;
    d.mode = KDCL_KD_LOGITS;
    o.epochs = 1;
    o.batch = 32;
    ck_assert_msg(kdcl_distill(s, e, &tr, &o, &d, NULL, NULL) == KDCL_OK, "%s", kdcl_last_error());
    kdcl_model_destroy(s);
    kdcl_eval_result_free(&rt);
    kdcl_ensemble_free(e);
    kdcl_dataset_free(&tr);
    kdcl_dataset_free(&te);
}
END_TEST

START_TEST(test_bias_offset_search)
{
    /* 3 classes; class 2 is under-scored by 2.0 in every row */
    const size_t n = 300, k = 3;
    float *l = malloc(n * k * sizeof *l);
    int32_t *y = malloc(n * sizeof *y);
    kdcl_rng r;
    kdcl_rng_seed(&r, 3);
    for (size_t i = 0; i < n; i++) {
        y[i] = (int32_t)(i % 3);
        for (size_t j = 0; j < k; j++)
            l[i * k + j] = (float)kdcl_rng_uniform(&r) + ((int32_t)j == y[i] ? 1.0f : 0.0f) -
                           (j == 2 ? 2.0f : 0.0f);
    }
    size_t cls[1] = {2};
    size_t e0 = kdcl_count_errors_with_offset(l, y, n, k, cls, 1, 0.0f);
    ck_assert_uint_ge(e0, 90); /* every class-2 row is wrong */
    size_t best;
    float off = kdcl_search_bias_offset(l, y, n, k, cls, 1, -5.0f, 5.0f, 0.1f, &best);
    ck_assert_msg(off > 1.5f && off < 3.5f, "offset %g", off);
    ck_assert_uint_lt(best, e0 / 3);
    ck_assert_uint_eq(best, kdcl_count_errors_with_offset(l, y, n, k, cls, 1, off));
    free(l);
    free(y);
}
END_TEST

START_TEST(test_adjust_bias_changes_only_chosen_classes)
{
    kdcl_model *m = tu_model("5-3-4", 4, 0, 0, 0, 4, 0, 0, 1);
    float p0[5 * 3 + 3 + 3 * 4 + 4], p1[sizeof p0 / 4];
    kdcl_model_get_params(m, p0);
    size_t cls[2] = {1, 3};
    ck_assert_int_eq(kdcl_model_adjust_bias(m, cls, 2, -7.5f), KDCL_OK);
    kdcl_model_get_params(m, p1);
    size_t nb = sizeof p0 / 4 - 4; /* output biases are the last four */
    for (size_t i = 0; i < sizeof p0 / 4; i++) {
        float want = p0[i] + ((i == nb + 1 || i == nb + 3) ? -7.5f : 0.0f);
        ck_assert_float_eq(p1[i], want);
    }
    size_t bad[1] = {4};
    ck_assert_int_eq(kdcl_model_adjust_bias(m, bad, 1, 1.0f), KDCL_ERR_INVALID_ARG);
    kdcl_model_destroy(m);
}
END_TEST

static Suite *distill_suite(void)
{
    Suite *s = suite_create("distill");
    TCase *p = tcase_create("pure");
    tcase_add_test(p, test_bias_offset_search);
    suite_add_tcase(s, p);
    TCase *tc = tcase_create("device");
    tcase_add_unchecked_fixture(tc, tu_ctx_setup, tu_ctx_teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_adjust_bias_changes_only_chosen_classes);
    tcase_add_test(tc, test_ensemble_targets_match_reference);
    tcase_add_test(tc, test_student_learns_from_teacher);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(distill_suite()); }
