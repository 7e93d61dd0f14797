/* The per-op profiler on the context (kdcl/profile.h) and the step-at-a-time
 * trainer (kdcl_trainer_*) that `kdcl bench` profiles: the trainer's steps
 * are kdcl_train's (bit for bit), and the library marks its own phases,
 * layers and ops. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdcl/kdcl.h"
#include "kdcl/profile.h"
#include "testutil.h"

static int third(size_t p) { return (int)(p % 6) / 2; }

static void blobs(kdcl_dataset *d, size_t n, uint64_t seed)
{
    tu_make_6x6(d, n, seed, 3, third, 120, 100);
}

static void opts(kdcl_train_opts *o)
{
    kdcl_train_opts_default(o);
    o->epochs = 1;
    o->batch = 32;
    o->lr = 0.05f;
    o->max_norm = 3.0f;
    o->jitter = 1;
    o->seed = 11;
}

START_TEST(test_trainer_is_kdcl_train)
{
    /* 100 examples: steps of 32, 32, 32 and 4; dropout and jitter drawn per step */
    kdcl_dataset tr;
    blobs(&tr, 100, 1);
    kdcl_model *a = tu_model("36-16-3", 3, 1, 6, 6, 32, 0.1f, 0.3f, 5);
    kdcl_model *b = tu_model("36-16-3", 3, 1, 6, 6, 32, 0.1f, 0.3f, 5);
    kdcl_train_opts o;
    opts(&o);
    kdcl_epoch_stats st;
    tu_ok(kdcl_train(a, &tr, &o, NULL, NULL, &st), "kdcl_train");

    kdcl_trainer *t = NULL;
    tu_ok(kdcl_trainer_create(b, &tr, &o, NULL, NULL, &t), "kdcl_trainer_create");
    ck_assert_uint_eq(kdcl_trainer_steps(t), 4);
    ck_assert_int_eq(kdcl_trainer_resident(t), 1);
    tu_ok(kdcl_trainer_epoch(t, 1), "kdcl_trainer_epoch");
    kdcl_schedule sched = kdcl_train_schedule(&o);
    for (size_t i = 0; i < 4; i++)
        tu_ok(kdcl_trainer_step(t, i, (float)kdcl_schedule_lr(&sched, 0, i, 4),
                                (float)kdcl_schedule_momentum(&sched, 0)),
              "kdcl_trainer_step");
    double loss = 0, err = 0;
    tu_ok(kdcl_trainer_stats(t, &loss, &err), "kdcl_trainer_stats");
    ck_assert_msg(loss == st.train_loss && err == st.train_error,
                  "trainer loss %.9g error %.9g, kdcl_train %.9g %.9g", loss, err, st.train_loss,
                  st.train_error);
    size_t n = kdcl_model_n_params(a);
    float *pa = malloc(n * sizeof *pa), *pb = malloc(n * sizeof *pb);
    ck_assert_ptr_nonnull(pa);
    ck_assert_ptr_nonnull(pb);
    tu_ok(kdcl_model_get_params(a, pa), "params a");
    tu_ok(kdcl_model_get_params(b, pb), "params b");
    size_t differ = 0;
    for (size_t i = 0; i < n; i++) differ += memcmp(&pa[i], &pb[i], sizeof pa[i]) != 0;
    ck_assert_msg(differ == 0, "%zu of %zu parameters differ from kdcl_train's", differ, n);
    free(pa);
    free(pb);
    kdcl_trainer_destroy(t);
    kdcl_model_destroy(a);
    kdcl_model_destroy(b);
    kdcl_dataset_free(&tr);
}
END_TEST

START_TEST(test_trainer_bad_use)
{
    kdcl_dataset tr;
    blobs(&tr, 64, 2);
    kdcl_model *m = tu_model("36-8-3", 3, 1, 6, 6, 32, 0, 0, 1);
    kdcl_train_opts o;
    opts(&o);
    kdcl_trainer *t = NULL;
    o.batch = 65;
    ck_assert_int_eq(kdcl_trainer_create(m, &tr, &o, NULL, NULL, &t), KDCL_ERR_INVALID_ARG);
    ck_assert_ptr_null(t);
    o.batch = 32;
    o.lr = -1;
    ck_assert_int_eq(kdcl_trainer_create(m, &tr, &o, NULL, NULL, &t), KDCL_ERR_INVALID_ARG);
    o.lr = 0.1f;
    ck_assert_int_eq(kdcl_trainer_create(NULL, &tr, &o, NULL, NULL, &t), KDCL_ERR_INVALID_ARG);
    tu_ok(kdcl_trainer_create(m, &tr, &o, NULL, NULL, &t), "create");
    ck_assert_int_eq(kdcl_trainer_step(t, 0, 0.1f, 0.9f), KDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "before kdcl_trainer_epoch"));
    ck_assert_int_eq(kdcl_trainer_epoch(t, 0), KDCL_ERR_INVALID_ARG);
    tu_ok(kdcl_trainer_epoch(t, 1), "epoch");
    ck_assert_int_eq(kdcl_trainer_step(t, 2, 0.1f, 0.9f), KDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kdcl_trainer_step(t, 0, NAN, 0.9f), KDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kdcl_trainer_step(t, 0, 0.1f, INFINITY), KDCL_ERR_INVALID_ARG);
    tu_ok(kdcl_trainer_step(t, 1, 0.1f, 0.9f), "step");
    kdcl_trainer_destroy(t);
    kdcl_trainer_destroy(NULL);
    kdcl_model_destroy(m);
    kdcl_dataset_free(&tr);
}
END_TEST

/* One profiled step at the given detail; names/ops of its sections (up to 256). */
static size_t profile_one(kdcl_trainer *t, kdcl_profiler *p, int gate, kdcl_prof_detail d,
                          char names[][KDCL_PROF_NAME], char ops[][KDCL_PROF_NAME], double *secs)
{
    tu_ok(kdcl_profiler_begin(p, gate, d), "kdcl_profiler_begin");
    tu_ok(kdcl_trainer_step(t, 1, 0.05f, 0.9f), "kdcl_trainer_step");
    ck_assert_uint_lt(kdcl_profiler_sections(p), 255);
    tu_ok(kdcl_profiler_end(p, secs), "kdcl_profiler_end");
    size_t n = kdcl_profiler_sections(p);
    for (size_t i = 0; i < n; i++) {
        snprintf(names[i], KDCL_PROF_NAME, "%s", kdcl_profiler_name(p, i));
        snprintf(ops[i], KDCL_PROF_NAME, "%s", kdcl_profiler_op(p, i));
        ck_assert_msg(secs[i] >= 0 && isfinite(secs[i]), "section %zu (%s): %g s", i, names[i],
                      secs[i]);
    }
    return n;
}

static int has(char names[][KDCL_PROF_NAME], size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(names[i], what)) return 1;
    return 0;
}

START_TEST(test_profiler_marks_the_library)
{
    kdcl_dataset tr;
    blobs(&tr, 64, 3);
    kdcl_model *m = tu_model("36-16-3", 3, 1, 6, 6, 32, 0, 0.2f, 2);
    kdcl_train_opts o;
    opts(&o);
    kdcl_trainer *t = NULL;
    kdcl_profiler *p = NULL;
    tu_ok(kdcl_trainer_create(m, &tr, &o, NULL, NULL, &t), "create");
    tu_ok(kdcl_trainer_epoch(t, 1), "epoch");
    tu_ok(kdcl_profiler_create(tu_ctx, &p), "kdcl_profiler_create");
    tu_ok(kdcl_ctx_set_profiler(tu_ctx, p), "kdcl_ctx_set_profiler");
    ck_assert_ptr_eq(kdcl_ctx_profiler(tu_ctx), p);
    static char names[256][KDCL_PROF_NAME], ops[256][KDCL_PROF_NAME];
    double secs[256];
    for (int gate = 0; gate <= 1; gate++) {
        /* phases: exactly five sections, in order */
        size_t n = profile_one(t, p, gate, KDCL_PROF_PHASES, names, ops, secs);
        static const char *const phases[] = {"data", "forward", "loss", "backward", "optimizer"};
        ck_assert_uint_eq(n, 5);
        for (size_t i = 0; i < 5; i++) {
            ck_assert_str_eq(names[i], phases[i]);
            ck_assert_str_eq(ops[i], "");
        }
        /* layers: the input conversion and every top-level layer each way */
        size_t nl = profile_one(t, p, gate, KDCL_PROF_LAYERS, names, ops, secs);
        ck_assert_msg(nl > 5, "%zu sections at layer detail", nl);
        ck_assert_str_eq(names[0], "data");
        ck_assert_str_eq(names[nl - 1], "optimizer");
        ck_assert(has(names, nl, "input u8->f32"));
        ck_assert(has(names, nl, "loss"));
        size_t fwd = 0, bwd = 0;
        for (size_t i = 0; i < nl; i++) {
            size_t len = strlen(names[i]);
            fwd += len > 4 && !strcmp(names[i] + len - 4, " fwd");
            bwd += len > 4 && !strcmp(names[i] + len - 4, " bwd");
        }
        ck_assert_msg(fwd >= 2 && bwd >= 2, "%zu forward, %zu backward layer sections", fwd,
                      bwd);
        /* ops: every section is an op, within its layer or phase */
        size_t no = profile_one(t, p, gate, KDCL_PROF_OPS, names, ops, secs);
        ck_assert_msg(no > nl, "%zu op sections, %zu layer sections", no, nl);
        int gemm = 0;
        for (size_t i = 0; i < no; i++) {
            ck_assert_msg(ops[i][0], "section %zu (%s) without an op", i, names[i]);
            gemm |= !strncmp(ops[i], "gemm", 4);
        }
        ck_assert_msg(gemm, "no GEMM among the ops");
        ck_assert(has(ops, no, "sgd"));
        ck_assert(has(names, no, "optimizer"));
    }
    /* a caller's own marks still work without the library's scopes */
    tu_ok(kdcl_ctx_set_profiler(tu_ctx, NULL), "detach");
    tu_ok(kdcl_profiler_begin(p, 0, KDCL_PROF_OPS), "begin");
    tu_ok(kdcl_trainer_step(t, 0, 0.05f, 0.9f), "step");
    tu_ok(kdcl_profiler_mark(p, "mine"), "mark");
    tu_ok(kdcl_profiler_end(p, secs), "end");
    ck_assert_uint_eq(kdcl_profiler_sections(p), 1);
    ck_assert_str_eq(kdcl_profiler_name(p, 0), "mine");
    ck_assert_str_eq(kdcl_profiler_name(p, 1), "");
    /* destroying an attached profiler detaches it */
    tu_ok(kdcl_ctx_set_profiler(tu_ctx, p), "attach");
    kdcl_profiler_destroy(p);
    ck_assert_ptr_null(kdcl_ctx_profiler(tu_ctx));
    tu_ok(kdcl_trainer_step(t, 0, 0.05f, 0.9f), "step without a profiler");
    kdcl_trainer_destroy(t);
    kdcl_model_destroy(m);
    kdcl_dataset_free(&tr);
}
END_TEST

START_TEST(test_profiler_bad_use)
{
    kdcl_profiler *p = NULL;
    ck_assert_int_eq(kdcl_profiler_create(NULL, &p), KDCL_ERR_INVALID_ARG);
    tu_ok(kdcl_profiler_create(tu_ctx, &p), "create");
    ck_assert_int_eq(kdcl_profiler_mark(p, "x"), KDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kdcl_profiler_end(p, NULL), KDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kdcl_profiler_begin(p, 0, (kdcl_prof_detail)7), KDCL_ERR_INVALID_ARG);
    ck_assert_uint_eq(kdcl_profiler_sections(p), 0);
    ck_assert_str_eq(kdcl_profiler_name(p, 0), "");
    ck_assert_str_eq(kdcl_profiler_op(NULL, 0), "");
    /* a profiler belongs to the context it was made for */
    kdcl_ctx *other = NULL;
    tu_ok(kdcl_ctx_create(NULL, &other), "second context");
    ck_assert_int_eq(kdcl_ctx_set_profiler(other, p), KDCL_ERR_INVALID_ARG);
    kdcl_ctx_destroy(other);
    /* no-ops without an open profile */
    ck_assert_int_eq(kdcl_prof_op(tu_ctx, "x"), KDCL_OK);
    ck_assert_int_eq(kdcl_prof_scope(tu_ctx, KDCL_PROF_PHASES, "x"), KDCL_OK);
    /* a gated profile left open is released by destroy (the queue runs on) */
    tu_ok(kdcl_profiler_begin(p, 1, KDCL_PROF_PHASES), "begin gated");
    kdcl_profiler_destroy(p);
    tu_ok(kdcl_ctx_finish(tu_ctx), "the queue after destroying a gated profiler");
    kdcl_profiler_destroy(NULL);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("profile");
    TCase *tc = tcase_create("core");
    tcase_add_unchecked_fixture(tc, tu_ctx_setup, tu_ctx_teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_trainer_is_kdcl_train);
    tcase_add_test(tc, test_trainer_bad_use);
    tcase_add_test(tc, test_profiler_marks_the_library);
    tcase_add_test(tc, test_profiler_bad_use);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(suite()); }
