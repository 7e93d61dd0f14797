/* Specialists: dustbin relabelling, half-special epochs, initialisation from
 * the generalist (checked parameter by parameter), the log-oversampling
 * correction, a specialist with one class plus dustbin learning its task,
 * predictions through the combination, and bad arguments. Then the files:
 * every specialist of a clustering trained into a directory by the library's
 * worker pool and loaded back, directories that must be refused (corrupt,
 * missing, foreign, duplicate, renamed files, other classes), and the set's
 * evaluation against `kdcl specialists eval` on the same files.
 *
 * Tolerances: parameter copies are exact (bitwise). The dustbin row is the
 * float rounding of a double mean, recomputed here the same way, so it is
 * exact too. The oversampling correction is checked with a learning rate of
 * 1e-20, so training moves the bias by < 1e-18 and the only error left is the
 * float addition b + offset: |error| <= u (|b| + |offset|) < 1e-6. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* ---- specialist files ------------------------------------------------------------ */

/* A tiny IDX dataset (8x8 images, 3 classes), a generalist trained on it and
 * saved, the clusters {0, 1}, {2}, {1, 2} and, trained from them by
 * kdcl_specialists_train_all with two workers, a directory of specialists
 * (made once for the tests below). */
static char data_dir[4096], gen_path[4096], spec_dir[4096];
static kdcl_clusters run_cl;
static kdcl_specialist_result run_res[3];

static void copy_file(const char *from, const char *to)
{
    FILE *f = fopen(from, "rb");
    ck_assert_msg(f != NULL, "cannot read %s", from);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    ck_assert(n < sizeof buf);
    fclose(f);
    ck_assert_int_eq(tu_write_file(to, buf, n), 0);
}

static void fresh_dir(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s", tu_path(name));
    mkdir(buf, 0755);
    ck_assert_msg(access(buf, W_OK) == 0, "cannot use %s", buf);
}

static void spec_file(char *buf, size_t size, const char *dir, size_t cluster)
{
    tu_ok(kdcl_specialist_path(dir, cluster, buf, size), "specialist path");
}

static void make_specialists(void)
{
    static int done;
    if (done) return;
    fresh_dir(data_dir, sizeof data_dir, "files_data");
    tu_write_idx_split(data_dir, "train", 300, 1);
    tu_write_idx_split(data_dir, "t10k", 150, 2);
    kdcl_dataset tr;
    tu_ok(kdcl_dataset_load_split(data_dir, "train", &tr), "train split");
    kdcl_model *g = tu_model("64-16-3", 3, 1, 8, 8, 64, 0, 0, 5);
    kdcl_train_opts o;
    kdcl_train_opts_default(&o);
    o.epochs = 2;
    o.batch = 25;
    tu_ok(kdcl_train(g, &tr, &o, NULL, NULL, NULL), "generalist");
    snprintf(gen_path, sizeof gen_path, "%s", tu_path("files_gen.safetensors"));
    tu_ok(kdcl_model_save(g, gen_path, NULL, NULL, 0), "save generalist");
    kdcl_model_destroy(g);

    const int32_t a[2] = {0, 1}, b[1] = {2}, c[2] = {1, 2};
    const int32_t *lists[3] = {a, b, c};
    const size_t sizes[3] = {2, 1, 2};
    tu_ok(kdcl_clusters_from_lists(3, 3, sizes, lists, &run_cl), "clusters");
    snprintf(spec_dir, sizeof spec_dir, "%s", tu_path("files_specs")); /* created by the run */
    kdcl_specialists_train_opts so;
    kdcl_specialists_train_opts_default(&so);
    so.train.epochs = 1;
    so.train.batch = 20;
    so.min_size = 1;
    so.jobs = 2;
    kdcl_specialists_trainer *t = NULL;
    tu_ok(kdcl_specialists_train_all(gen_path, &run_cl, &tr, spec_dir, &so, &t), "train all");
    ck_assert_uint_eq(kdcl_specialists_trainer_count(t), 3);
    ck_assert_uint_eq(kdcl_specialists_trainer_workers(t), 2);
    ck_assert_uint_eq(kdcl_specialists_trainer_failed(t), 0);
    for (size_t i = 0; i < 3; i++) {
        const kdcl_specialist_result *r = kdcl_specialists_trainer_result(t, i);
        run_res[i] = *r;
        char want[4200];
        spec_file(want, sizeof want, spec_dir, i);
        ck_assert_uint_eq(r->cluster, i);
        ck_assert_str_eq(r->path, want);
        ck_assert(r->ran && !r->status && !r->skipped && !r->resumed);
        ck_assert_uint_lt(r->worker, 2);
        ck_assert_uint_eq(r->n, sizes[i]);
        size_t special = 0;
        for (size_t e = 0; e < tr.n; e++)
            for (size_t k = 0; k < sizes[i]; k++) special += tr.labels[e] == lists[i][k];
        ck_assert_uint_eq(r->special_examples, special);
        ck_assert_double_eq_tol(r->dustbin_offset,
                                kdcl_specialist_dustbin_offset(special, tr.n), 1e-9);
        ck_assert_msg(access(want, F_OK) == 0, "%s not written", want);
        /* the training state is removed once the specialist is saved */
        char state[4300];
        snprintf(state, sizeof state, "%s/specialist_%zu.state.safetensors", spec_dir, i);
        ck_assert_int_ne(access(state, F_OK), 0);
    }
    kdcl_specialists_trainer_destroy(t);
    kdcl_dataset_free(&tr);
    done = 1;
}

START_TEST(test_train_all_writes_and_loads)
{
    make_specialists();
    /* one file per cluster, loaded back with its metadata */
    kdcl_model *g = NULL;
    tu_ok(kdcl_model_load(tu_ctx, gen_path, 1024, &g, NULL), "generalist");
    kdcl_specialist_set set;
    tu_ok(kdcl_specialist_set_load(spec_dir, g, 64, &run_cl, 1, &set), "load set");
    ck_assert_uint_eq(set.M, 3);
    ck_assert_uint_eq(set.clusters.K, 3);
    ck_assert_uint_eq(set.clusters.M, 3);
    for (size_t m = 0; m < 3; m++) {
        ck_assert_uint_eq(set.cluster[m], m);
        ck_assert_uint_eq(set.clusters.off[m + 1] - set.clusters.off[m],
                          run_cl.off[m + 1] - run_cl.off[m]);
        ck_assert_int_eq(memcmp(set.clusters.cls + set.clusters.off[m], run_cl.cls + run_cl.off[m],
                                (run_cl.off[m + 1] - run_cl.off[m]) * sizeof *run_cl.cls),
                         0);
        ck_assert_uint_eq(kdcl_model_classes(set.models[m]), run_res[m].n + 1);
        ck_assert_double_eq_tol(set.dustbin_offset[m], run_res[m].dustbin_offset, 1e-8);
    }
    kdcl_specialist_set_free(&set);

    /* one checkpoint alone; save and load again keeps weights and metadata */
    kdcl_specialist sp;
    char path[4200], copy[4200];
    spec_file(path, sizeof path, spec_dir, 2);
    tu_ok(kdcl_specialist_load(tu_ctx, path, 3, 64, &sp), "load one");
    ck_assert_uint_eq(sp.cluster, 2);
    ck_assert_uint_eq(sp.n, 2);
    ck_assert(sp.cls[0] == 1 && sp.cls[1] == 2);
    snprintf(copy, sizeof copy, "%s", tu_path("resaved.safetensors"));
    kdcl_specialist_meta meta = {7, sp.cls, sp.n, sp.dustbin_offset, gen_path, NULL, -1, NULL};
    tu_ok(kdcl_specialist_save(sp.model, copy, &meta), "save one");
    kdcl_specialist back;
    tu_ok(kdcl_specialist_load(tu_ctx, copy, 3, 64, &back), "load again");
    ck_assert_uint_eq(back.cluster, 7);
    ck_assert(back.n == 2 && back.cls[0] == 1 && back.cls[1] == 2);
    ck_assert_double_eq_tol(back.dustbin_offset, sp.dustbin_offset, 1e-8);
    const size_t np = kdcl_model_n_params(sp.model);
    float *pa = malloc(np * sizeof *pa), *pb = malloc(np * sizeof *pb);
    tu_ok(kdcl_model_get_params(sp.model, pa), "params");
    tu_ok(kdcl_model_get_params(back.model, pb), "params");
    ck_assert_int_eq(memcmp(pa, pb, np * sizeof *pa), 0);
    free(pa);
    free(pb);
    /* the classes must fit the generalist's K */
    kdcl_specialist none;
    ck_assert_int_eq(kdcl_specialist_load(tu_ctx, path, 2, 64, &none), KDCL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "specialist_classes"));
    ck_assert_ptr_null(none.model);
    kdcl_specialist_free(&back);
    kdcl_specialist_free(&sp);

    /* the same run again with --resume semantics: every specialist finished */
    kdcl_dataset tr;
    tu_ok(kdcl_dataset_load_split(data_dir, "train", &tr), "train split");
    kdcl_specialists_train_opts so;
    kdcl_specialists_train_opts_default(&so);
    so.train.epochs = 1;
    so.min_size = 1;
    so.resume = 1;
    kdcl_specialists_trainer *t = NULL;
    tu_ok(kdcl_specialists_trainer_create(gen_path, &run_cl, &tr, spec_dir, &so, &t), "plan");
    for (size_t i = 0; i < 3; i++) ck_assert(kdcl_specialists_trainer_result(t, i)->skipped);
    kdcl_specialists_trainer_destroy(t);
    /* without the singleton cluster its file is left over from another run */
    so.resume = 0;
    so.min_size = 2;
    ck_assert_int_eq(kdcl_specialists_trainer_create(gen_path, &run_cl, &tr, spec_dir, &so, &t),
                     KDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "specialist_1.safetensors is not one of"));
    ck_assert_ptr_null(t);
    /* clusters over fewer classes than the data */
    const int32_t one[1] = {0};
    const int32_t *l1[1] = {one};
    const size_t s1[1] = {1};
    kdcl_clusters small;
    tu_ok(kdcl_clusters_from_lists(2, 1, s1, l1, &small), "clusters");
    so.clusters_name = "small.json";
    ck_assert_int_eq(kdcl_specialists_trainer_create(gen_path, &small, &tr, spec_dir, &so, &t),
                     KDCL_ERR_INVALID_ARG);
    ck_assert_str_eq(kdcl_last_error(), "small.json covers 2 classes but the data has 3");
    kdcl_clusters_free(&small);
    kdcl_dataset_free(&tr);
    kdcl_model_destroy(g);
}
END_TEST

/* Load a set from dir and require status `want` and needle in the error. */
static void expect_refused(kdcl_model *g, const char *dir, const kdcl_clusters *expect,
                           kdcl_status want, const char *needle)
{
    kdcl_specialist_set set;
    kdcl_status s = kdcl_specialist_set_load(dir, g, 64, expect, 1, &set);
    ck_assert_msg(s == want, "%s: status %s (%s), want %s", dir, kdcl_status_name(s),
                  kdcl_last_error(), kdcl_status_name(want));
    ck_assert_msg(strstr(kdcl_last_error(), needle) != NULL, "%s: '%s' lacks '%s'", dir,
                  kdcl_last_error(), needle);
    ck_assert_uint_eq(set.M, 0);
    ck_assert_ptr_null(set.models);
}

START_TEST(test_set_load_refuses_bad_directories)
{
    make_specialists();
    kdcl_model *g = NULL;
    tu_ok(kdcl_model_load(tu_ctx, gen_path, 1024, &g, NULL), "generalist");
    char dir[4200], a[4300], b[4300];
    char good[3][4200];
    for (size_t m = 0; m < 3; m++) spec_file(good[m], sizeof good[m], spec_dir, m);

    /* a directory that does not exist, and one without specialists */
    expect_refused(g, tu_path("no_such_dir"), NULL, KDCL_ERR_IO, "no_such_dir");
    fresh_dir(dir, sizeof dir, "bad_empty");
    tu_write_file(tu_path("bad_empty/notes.txt"), "x", 1);
    expect_refused(g, dir, NULL, KDCL_ERR_INVALID_ARG, "no specialist_<n>.safetensors");

    /* a corrupt file: the error names it */
    fresh_dir(dir, sizeof dir, "bad_corrupt");
    spec_file(a, sizeof a, dir, 0);
    copy_file(good[0], a);
    spec_file(b, sizeof b, dir, 1);
    tu_write_file(b, "garbage", 7);
    expect_refused(g, dir, NULL, KDCL_ERR_FORMAT, "specialist_1.safetensors");
    /* truncated */
    {
        FILE *f = fopen(good[1], "rb");
        static char buf[1 << 20];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        tu_write_file(b, buf, n / 2);
        kdcl_specialist_set set;
        ck_assert_int_ne(kdcl_specialist_set_load(dir, g, 64, NULL, 1, &set), KDCL_OK);
        ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "specialist_1.safetensors"));
    }

    /* a foreign file: a checkpoint that is not a specialist (the generalist) */
    fresh_dir(dir, sizeof dir, "bad_foreign");
    spec_file(a, sizeof a, dir, 0);
    copy_file(gen_path, a);
    expect_refused(g, dir, NULL, KDCL_ERR_FORMAT, "no specialist_classes metadata");

    /* two files of one cluster */
    fresh_dir(dir, sizeof dir, "bad_duplicate");
    spec_file(a, sizeof a, dir, 1);
    copy_file(good[1], a);
    snprintf(b, sizeof b, "%s/specialist_01.safetensors", dir);
    copy_file(good[1], b);
    expect_refused(g, dir, NULL, KDCL_ERR_INVALID_ARG, "both the specialist of cluster 1");

    /* a file renamed: its metadata records another cluster */
    fresh_dir(dir, sizeof dir, "bad_renamed");
    spec_file(a, sizeof a, dir, 2);
    copy_file(good[0], a);
    expect_refused(g, dir, NULL, KDCL_ERR_FORMAT, "records cluster 0, not the 2");

    /* against the clustering: other classes, a cluster it does not have, a file missing */
    const int32_t x[2] = {0, 2}, y[1] = {2}, z[2] = {1, 2};
    const int32_t *lists[3] = {x, y, z};
    const size_t sizes[3] = {2, 1, 2};
    kdcl_clusters other;
    tu_ok(kdcl_clusters_from_lists(3, 3, sizes, lists, &other), "clusters");
    expect_refused(g, spec_dir, &other, KDCL_ERR_FORMAT, "has classes 0,1, but cluster 0");
    kdcl_clusters two = run_cl;
    two.M = 2;
    expect_refused(g, spec_dir, &two, KDCL_ERR_FORMAT, "but the clusters have 2");
    fresh_dir(dir, sizeof dir, "bad_missing");
    spec_file(a, sizeof a, dir, 0);
    copy_file(good[0], a);
    spec_file(b, sizeof b, dir, 2);
    copy_file(good[2], b);
    expect_refused(g, dir, &run_cl, KDCL_ERR_FORMAT, "specialist_1.safetensors (cluster 1");
    /* the singleton cluster is not required with a minimum size of 2 */
    kdcl_specialist_set set;
    tu_ok(kdcl_specialist_set_load(dir, g, 64, &run_cl, 2, &set), "min size 2");
    ck_assert_uint_eq(set.M, 2);
    kdcl_specialist_set_free(&set);

    /* a specialist of other inputs (36 instead of 64) */
    fresh_dir(dir, sizeof dir, "bad_inputs");
    kdcl_model *small = make_model("36-8-2", 2);
    spec_file(a, sizeof a, dir, 1);
    const int32_t two_only[1] = {2};
    kdcl_specialist_meta meta = {1, two_only, 1, 0.5, NULL, NULL, -1, NULL};
    tu_ok(kdcl_specialist_save(small, a, &meta), "save");
    expect_refused(g, dir, NULL, KDCL_ERR_FORMAT, "36 inputs and 2 outputs");
    kdcl_model_destroy(small);
    kdcl_clusters_free(&other);
    kdcl_model_destroy(g);
}
END_TEST

static double json_num(cJSON *o, const char *key)
{
    cJSON *v = cJSON_GetObjectItem(o, key);
    ck_assert_msg(v != NULL, "no %s in the JSON", key);
    return v->valuedouble;
}

static void same_tally(cJSON *o, const kdcl_spec_tally *t, const char *what)
{
    ck_assert_msg((size_t)json_num(o, "examples") == t->n, "%s: examples", what);
    ck_assert_msg((size_t)json_num(o, "generalist_correct") == t->gen_ok, "%s: generalist", what);
    ck_assert_msg((size_t)json_num(o, "combined_correct") == t->comb_ok, "%s: combined", what);
}

START_TEST(test_set_evaluate_matches_cli)
{
    make_specialists();
    char js[4200], args[32768];
    snprintf(js, sizeof js, "%s", tu_path("files_eval.json"));
    snprintf(args, sizeof args, "specialists eval --data %s --model %s --specialists %s --json %s",
             data_dir, gen_path, spec_dir, js);
    tu_run_result r;
    tu_run(&r, args);
    ck_assert_msg(r.status == 0, "kdcl %s: %s", args, r.err);

    kdcl_dataset te;
    tu_ok(kdcl_dataset_load_split(data_dir, "test", &te), "test split");
    kdcl_model *g = NULL;
    tu_ok(kdcl_model_load(tu_ctx, gen_path, 1024, &g, NULL), "generalist");
    tu_ok(kdcl_specialists_check_generalist(g, &te), "generalist fits");
    kdcl_specialist_set set;
    tu_ok(kdcl_specialist_set_load(spec_dir, g, 1024, NULL, 0, &set), "load set");
    kdcl_combine_opts co;
    kdcl_combine_opts_default(&co);
    kdcl_specialist_eval ev;
    tu_ok(kdcl_specialist_set_evaluate(g, &set, &te, &co, 1024, &ev), "evaluate");
    ck_assert_uint_eq(ev.n, te.n);
    ck_assert_uint_eq(ev.M, 3);

    FILE *f = fopen(js, "r");
    ck_assert_ptr_nonnull(f);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    cJSON *j = cJSON_Parse(buf);
    ck_assert_ptr_nonnull(j);
    same_tally(cJSON_GetObjectItem(j, "all"), &ev.all, "all");
    same_tally(cJSON_GetObjectItem(j, "covered"), &ev.covered, "covered");
    same_tally(cJSON_GetObjectItem(j, "with_active"), &ev.with_active, "with_active");
    cJSON *by = cJSON_GetObjectItem(j, "by_covering");
    ck_assert_int_eq(cJSON_GetArraySize(by), (int)ev.max_cover + 1);
    for (size_t k = 0; k <= ev.max_cover; k++)
        same_tally(cJSON_GetArrayItem(by, (int)k), &ev.by_covering[k], "by_covering");
    cJSON *per = cJSON_GetObjectItem(j, "per_specialist");
    ck_assert_int_eq(cJSON_GetArraySize(per), 3);
    for (size_t m = 0; m < 3; m++) {
        cJSON *o = cJSON_GetArrayItem(per, (int)m);
        ck_assert_uint_eq((size_t)json_num(o, "cluster"), set.cluster[m]);
        same_tally(o, &ev.per[m], "per specialist");
    }
    cJSON_Delete(j);
    /* the printed error counts are these tallies' */
    char line[256];
    snprintf(line, sizeof line, "test errors: generalist %zu, generalist + specialists %zu",
             ev.all.n - ev.all.gen_ok, ev.all.n - ev.all.comb_ok);
    ck_assert_msg(strstr(r.out, line) != NULL, "'%s' not in:\n%s", line, r.out);

    /* the predictions behind the tallies: the generalist's are its argmax, and
     * the combination's are kdcl_specialists_predict's on the set */
    int32_t *gp = malloc(te.n * sizeof *gp), *cp = malloc(te.n * sizeof *cp);
    tu_ok(kdcl_specialists_predict(g, set.models, &set.clusters, &te, &co, 1024, gp, cp, NULL),
          "predict");
    size_t gen_ok = 0, comb_ok = 0;
    for (size_t i = 0; i < te.n; i++) {
        ck_assert_int_eq(gp[i], ev.gen_pred[i]);
        ck_assert_int_eq(cp[i], ev.comb_pred[i]);
        gen_ok += gp[i] == te.labels[i];
        comb_ok += cp[i] == te.labels[i];
    }
    ck_assert_uint_eq(gen_ok, ev.all.gen_ok);
    ck_assert_uint_eq(comb_ok, ev.all.comb_ok);
    free(gp);
    free(cp);
    kdcl_specialist_eval_free(&ev);
    kdcl_specialist_set_free(&set);
    kdcl_model_destroy(g);
    kdcl_dataset_free(&te);
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
    TCase *files = tcase_create("files");
    tcase_add_unchecked_fixture(files, tu_ctx_setup, tu_ctx_teardown);
    tcase_set_timeout(files, 900);
    tcase_add_test(files, test_train_all_writes_and_loads);
    tcase_add_test(files, test_set_load_refuses_bad_directories);
    tcase_add_test(files, test_set_evaluate_matches_cli);
    suite_add_tcase(s, files);
    return s;
}

int main(void) { return tu_run_suite(specialists_suite()); }
