/* Specialists: dustbin relabelling, half-special epochs, initialisation from
 * the generalist (checked parameter by parameter), the log-oversampling
 * correction, a specialist with one class plus dustbin learning its task,
 * predictions through the combination, and bad arguments.
 *
 * Tolerances: parameter copies are exact (bitwise). The dustbin row is the
 * float rounding of a double mean, recomputed here the same way, so it is
 * exact too. The oversampling correction is checked with a learning rate of
 * 1e-20, so training moves the bias by < 1e-18 and the only error left is the
 * float addition b + offset: |error| <= u (|b| + |offset|) < 1e-6. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdcl/kdcl.h"
#include "kdcl/specialists.h"
#include "testutil.h"

/* 6x6 images, 4 classes: which quadrant is bright, plus noise. */
static int quadrant(size_t p) { return (int)((p / 6) / 3 * 2 + (p % 6) / 3); }

static kdcl_model *make_model(const char *arch, uint64_t seed)
{
    return tu_model(arch, 6, 1, 6, 6, 64, 0, 0, seed);
}

START_TEST(test_relabel_and_offset)
{
    kdcl_dataset d;
    memset(&d, 0, sizeof d);
    int32_t labels[8] = {0, 1, 2, 3, 4, 5, 2, 4}, out[8];
    d.n = 8;
    d.n_classes = 6;
    d.labels = labels;
    const int32_t cls[2] = {4, 2};
    kdcl_specialist_relabel(&d, cls, 2, out);
    const int32_t want[8] = {2, 2, 1, 2, 0, 2, 1, 0};
    for (int i = 0; i < 8; i++) ck_assert_int_eq(out[i], want[i]);
    /* odds raised from 1:9 to 1:1 -> log 9; from 1:1 to 1:1 -> 0 */
    ck_assert_double_eq_tol(kdcl_specialist_dustbin_offset(100, 1000), log(9.0), 1e-12);
    ck_assert_double_eq_tol(kdcl_specialist_dustbin_offset(500, 1000), 0.0, 1e-12);
    ck_assert(kdcl_specialist_dustbin_offset(600, 1000) < 0); /* specials were the majority */
}
END_TEST

START_TEST(test_epoch_order_half_special)
{
    /* 30 special (labels 0/1), 70 others (label 2 = dustbin) */
    enum { N = 100 };
    int32_t rel[N];
    for (int i = 0; i < N; i++) rel[i] = i % 10 < 3 ? i % 2 : 2;
    size_t order[2 * N], order2[2 * N], len = 0, len2 = 0;
    tu_ok(kdcl_specialist_epoch_order(rel, N, 2, 7, 1, order, &len), "epoch order");
    ck_assert_uint_eq(len, 60);
    int seen[N] = {0};
    for (size_t i = 0; i < len; i++) {
        ck_assert_uint_lt(order[i], N);
        if (i % 2 == 0)
            ck_assert_int_lt(rel[order[i]], 2); /* even slots special */
        else
            ck_assert_int_eq(rel[order[i]], 2); /* odd slots dustbin */
        seen[order[i]]++;
    }
    for (int i = 0; i < N; i++) {
        if (rel[i] < 2)
            ck_assert_int_eq(seen[i], 1); /* each special example once */
        else
            ck_assert_int_le(seen[i], 1); /* others without replacement */
    }
    /* deterministic in (seed, epoch), different for another epoch */
    tu_ok(kdcl_specialist_epoch_order(rel, N, 2, 7, 1, order2, &len2), "epoch order");
    ck_assert_int_eq(memcmp(order, order2, len * sizeof *order), 0);
    tu_ok(kdcl_specialist_epoch_order(rel, N, 2, 7, 2, order2, &len2), "epoch order");
    ck_assert_int_ne(memcmp(order, order2, len * sizeof *order), 0);

    /* more specials than others: others are reused evenly (counts differ by <= 1) */
    for (int i = 0; i < N; i++) rel[i] = i % 10 < 8 ? 0 : 1;
    tu_ok(kdcl_specialist_epoch_order(rel, N, 1, 3, 1, order, &len), "epoch order");
    ck_assert_uint_eq(len, 160);
    int cnt[N] = {0}, lo = 1 << 30, hi = 0;
    for (size_t i = 1; i < len; i += 2) cnt[order[i]]++;
    for (int i = 0; i < N; i++)
        if (rel[i] == 1) {
            lo = cnt[i] < lo ? cnt[i] : lo;
            hi = cnt[i] > hi ? cnt[i] : hi;
        }
    ck_assert_int_le(hi - lo, 1);
    ck_assert_int_eq(lo, 4); /* 80 draws over 20 others */

    /* nothing special, or nothing else: an error, not an empty epoch */
    for (int i = 0; i < N; i++) rel[i] = 1;
    ck_assert_int_eq(kdcl_specialist_epoch_order(rel, N, 1, 3, 1, order, &len),
                     KDCL_ERR_INVALID_ARG);
}
END_TEST

START_TEST(test_init_from_generalist)
{
    kdcl_model *g = make_model("36-16-12-6", 3);
    kdcl_model *sp = make_model("36-16-12-3", 4);
    const int32_t cls[2] = {4, 1};
    tu_ok(kdcl_specialist_init(g, cls, 2, sp), "specialist init");
    const size_t gp = kdcl_model_n_params(g), sn = kdcl_model_n_params(sp);
    float *a = malloc(gp * sizeof *a), *b = malloc(sn * sizeof *b);
    tu_ok(kdcl_model_get_params(g, a), "params");
    tu_ok(kdcl_model_get_params(sp, b), "params");
    const size_t hidden = 36 * 16 + 16 + 16 * 12 + 12;
    ck_assert_int_eq(memcmp(a, b, hidden * sizeof *a), 0);
    const float *W = a + hidden, *bias = W + 12 * 6, *sW = b + hidden, *sb = sW + 12 * 3;
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(memcmp(sW + i * 12, W + cls[i] * 12, 12 * sizeof *W), 0);
        ck_assert(sb[i] == bias[cls[i]]);
    }
    const int others[4] = {0, 2, 3, 5};
    for (int j = 0; j < 12; j++) {
        double m = 0;
        for (int o = 0; o < 4; o++) m += W[others[o] * 12 + j];
        ck_assert(sW[2 * 12 + j] == (float)(m / 4));
    }
    double mb = 0;
    for (int o = 0; o < 4; o++) mb += bias[others[o]];
    ck_assert(sb[2] == (float)(mb / 4 + log(4.0)));
    /* wrong output count, empty list, class out of range, repeat, no dustbin left */
    ck_assert_int_eq(kdcl_specialist_init(g, cls, 1, sp), KDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kdcl_specialist_init(g, cls, 0, sp), KDCL_ERR_INVALID_ARG);
    const int32_t bad[2] = {1, 6}, rep[2] = {1, 1}, all[6] = {0, 1, 2, 3, 4, 5};
    ck_assert_int_eq(kdcl_specialist_init(g, bad, 2, sp), KDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kdcl_specialist_init(g, rep, 2, sp), KDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kdcl_specialist_init(g, all, 6, sp), KDCL_ERR_INVALID_ARG);
    ck_assert(strlen(kdcl_last_error()) > 0);
    free(a);
    free(b);
    kdcl_model_destroy(g);
    kdcl_model_destroy(sp);
}
END_TEST

START_TEST(test_dustbin_correction_applied)
{
    kdcl_dataset tr;
    tu_make_6x6(&tr, 200, 5, 4, quadrant, 140, 90);
    kdcl_model *g = make_model("36-8-4", 1), *sp = make_model("36-8-2", 2);
    const int32_t cls[1] = {2};
    tu_ok(kdcl_specialist_init(g, cls, 1, sp), "init");
    float before[36 * 8 + 8 + 8 * 2 + 2], after[sizeof before / sizeof before[0]];
    tu_ok(kdcl_model_get_params(sp, before), "params");
    kdcl_train_opts o;
    kdcl_train_opts_default(&o);
    o.epochs = 1;
    o.batch = 16;
    o.lr = 1e-20f;
    double off = -1;
    tu_ok(kdcl_specialist_train(sp, &tr, cls, 1, &o, NULL, &off), "specialist train");
    tu_ok(kdcl_model_get_params(sp, after), "params");
    size_t n2 = 0;
    for (size_t i = 0; i < tr.n; i++) n2 += tr.labels[i] == 2;
    ck_assert_double_eq_tol(off, log((double)(tr.n - n2) / (double)n2), 1e-12);
    const size_t db = sizeof before / sizeof before[0] - 1;
    ck_assert_double_eq_tol((double)after[db] - (double)before[db], off, 1e-6);
    ck_assert_double_eq_tol(after[db - 1], before[db - 1], 1e-6); /* the special class untouched */
    kdcl_model_destroy(g);
    kdcl_model_destroy(sp);
    kdcl_dataset_free(&tr);
}
END_TEST

/* A generalist trained on all 4 quadrant classes, a specialist for class 2
 * alone (+ dustbin), then the combination over the test set. */
START_TEST(test_one_class_specialist_and_prediction)
{
    kdcl_dataset tr, te;
    tu_make_6x6(&tr, 1024, 11, 4, quadrant, 140, 60);
    tu_make_6x6(&te, 300, 12, 4, quadrant, 140, 60);
    kdcl_model *g = make_model("36-16-4", 1), *sp = make_model("36-16-2", 2);
    kdcl_train_opts o;
    kdcl_train_opts_default(&o);
    o.epochs = 3;
    o.batch = 32;
    tu_ok(kdcl_train(g, &tr, &o, NULL, NULL, NULL), "generalist");
    const int32_t cls[1] = {2};
    tu_ok(kdcl_specialist_init(g, cls, 1, sp), "init");
    o.epochs = 4;
    tu_ok(kdcl_specialist_train(sp, &tr, cls, 1, &o, NULL, NULL), "specialist");
    /* the specialist separates class 2 from the rest on test data */
    kdcl_dataset rel;
    tu_ok(kdcl_dataset_copy(&te, &rel), "copy");
    kdcl_specialist_relabel(&te, cls, 1, rel.labels);
    rel.n_classes = 2;
    kdcl_eval_result r;
    tu_ok(kdcl_evaluate(sp, &rel, 0, &r), "evaluate");
    ck_assert_msg(r.errors * 10 < r.n, "specialist errors %zu of %zu", r.errors, r.n);
    kdcl_eval_result_free(&r);

    /* predictions: gen_pred is the generalist's argmax; the specialist is
     * active exactly where that is class 2 (top-1) */
    kdcl_clusters c;
    const size_t sizes[1] = {1};
    const int32_t *lists[1] = {cls};
    tu_ok(kdcl_clusters_from_lists(4, 1, sizes, lists, &c), "clusters");
    kdcl_combine_opts co;
    kdcl_combine_opts_default(&co);
    int32_t *gp = malloc(te.n * sizeof *gp), *cp = malloc(te.n * sizeof *cp);
    uint8_t *act = malloc(te.n);
    kdcl_model *specs[1] = {sp};
    tu_ok(kdcl_specialists_predict(g, specs, &c, &te, &co, 50, gp, cp,
                                   act),
          "predict");
    float *logits = NULL;
    tu_ok(kdcl_model_logits_all(g, &te, &logits), "logits");
    size_t gen_err = 0, comb_err = 0;
    for (size_t i = 0; i < te.n; i++) {
        int best = 0;
        for (int k = 1; k < 4; k++)
            if (logits[i * 4 + k] > logits[i * 4 + best]) best = k;
        ck_assert_int_eq(gp[i], best);
        ck_assert_int_eq(act[i], best == 2);
        if (!act[i]) ck_assert_int_eq(cp[i], gp[i]); /* no specialist: the generalist's answer */
        ck_assert(cp[i] >= 0 && cp[i] < 4);
        gen_err += gp[i] != te.labels[i];
        comb_err += cp[i] != te.labels[i];
    }
    /* a specialist only reconsiders its own class: never far worse */
    ck_assert_uint_le(comb_err, gen_err + te.n / 50);
    free(logits);
    free(gp);
    free(cp);
    free(act);
    kdcl_clusters_free(&c);
    kdcl_dataset_free(&rel);
    kdcl_model_destroy(g);
    kdcl_model_destroy(sp);
    kdcl_dataset_free(&tr);
    kdcl_dataset_free(&te);
}
END_TEST

START_TEST(test_train_rejects_bad_input)
{
    kdcl_dataset tr;
    tu_make_6x6(&tr, 64, 5, 4, quadrant, 140, 90);
    kdcl_model *sp = make_model("36-8-3", 2);
    kdcl_train_opts o;
    kdcl_train_opts_default(&o);
    o.epochs = 1;
    o.batch = 8;
    const int32_t one[1] = {1}, two[2] = {1, 9};
    /* model outputs do not fit 1 class + dustbin; class 9 not in the data */
    ck_assert_int_eq(kdcl_specialist_train(sp, &tr, one, 1, &o, NULL, NULL), KDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kdcl_specialist_train(sp, &tr, two, 2, &o, NULL, NULL), KDCL_ERR_INVALID_ARG);
    /* every example special: no dustbin examples to train on */
    kdcl_model_destroy(sp);
    sp = make_model("36-8-2", 2);
    for (size_t i = 0; i < tr.n; i++) tr.labels[i] = 1;
    ck_assert_int_eq(kdcl_specialist_train(sp, &tr, one, 1, &o, NULL, NULL), KDCL_ERR_INVALID_ARG);
    ck_assert(strstr(kdcl_last_error(), "both must be present") != NULL);
    kdcl_model_destroy(sp);
    kdcl_dataset_free(&tr);
}
END_TEST

static Suite *specialists_suite(void)
{
    Suite *s = suite_create("specialists");
    TCase *p = tcase_create("pure");
    tcase_add_test(p, test_relabel_and_offset);
    tcase_add_test(p, test_epoch_order_half_special);
    suite_add_tcase(s, p);
    TCase *tc = tcase_create("device");
    tcase_add_unchecked_fixture(tc, tu_ctx_setup, tu_ctx_teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_init_from_generalist);
    tcase_add_test(tc, test_dustbin_correction_applied);
    tcase_add_test(tc, test_one_class_specialist_and_prediction);
    tcase_add_test(tc, test_train_rejects_bad_input);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(specialists_suite()); }
