/* The entry points for bindings and programs (the kdcl headers, through the shared
 * library): options by name, datasets from arrays, host-side prediction,
 * devices as JSON, distillation from held models, and kdcl_train's
 * callbacks (on_epoch stops early, on_progress reports the epoch). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "kdcl/kdcl.h"
#include "testutil.h"

static int third(size_t p) { return (int)(p % 6) / 2; }

START_TEST(test_opts_by_name)
{
    kdcl_train_opts *o = kdcl_train_opts_create();
    ck_assert_ptr_nonnull(o);
    tu_ok(kdcl_train_opts_set(o, "lr", "0.25"), "lr");
    tu_ok(kdcl_train_opts_set(o, "weight_decay", "0.001"), "weight_decay");
    tu_ok(kdcl_train_opts_set(o, "epochs", "7"), "epochs");
    tu_ok(kdcl_train_opts_set(o, "optimizer", "adam"), "optimizer");
    ck_assert_float_eq(o->lr, 0.25f);
    ck_assert_float_eq(o->weight_decay, 0.001f);
    ck_assert_uint_eq(o->epochs, 7);
    ck_assert_int_eq(o->optimizer, KDCL_OPT_ADAM);
    /* refused without a change, the message naming the option */
    ck_assert_int_eq(kdcl_train_opts_set(o, "lr", "-1"), KDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "lr"));
    ck_assert_float_eq(o->lr, 0.25f);
    ck_assert_int_eq(kdcl_train_opts_set(o, "epochs", "x"), KDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kdcl_train_opts_set(o, "no-such-option", "1"), KDCL_ERR_INVALID_ARG);
    ck_assert_uint_eq(o->epochs, 7);
    kdcl_train_opts_destroy(o);
    kdcl_train_opts_destroy(NULL);
}
END_TEST

START_TEST(test_dataset_arrays_round_trip)
{
    /* 5 examples of 2 x 3 x 4, CHW in, HWC inside, CHW out again */
    enum { N = 5, C = 2, H = 3, W = 4 };
    uint8_t img[N * C * H * W], back[N * C * H * W];
    int32_t lab[N] = {0, 2, 1, 2, 0}, lab2[N];
    for (size_t i = 0; i < sizeof img; i++) img[i] = (uint8_t)(i * 7 + 3);
    kdcl_dataset *d = kdcl_dataset_create();
    ck_assert_ptr_nonnull(d);
    tu_ok(kdcl_dataset_from_arrays(img, lab, N, C, H, W, KDCL_LAYOUT_CHW, 0, d), "from arrays");
    size_t n, c, h, w, k;
    kdcl_dataset_shape(d, &n, &c, &h, &w, &k);
    ck_assert_uint_eq(n, N);
    ck_assert_uint_eq(c, C);
    ck_assert_uint_eq(h, H);
    ck_assert_uint_eq(w, W);
    ck_assert_uint_eq(k, 3);
    /* HWC inside: pixel (y, x) channel ch of example i */
    ck_assert_uint_eq(d->images[((1 * H + 2) * W + 3) * C + 1],
                      img[((1 * C + 1) * H + 2) * W + 3]);
    kdcl_dataset_to_arrays(d, KDCL_LAYOUT_CHW, back, lab2);
    ck_assert_int_eq(memcmp(img, back, sizeof img), 0);
    ck_assert_int_eq(memcmp(lab, lab2, sizeof lab), 0);
    kdcl_dataset_destroy(d);
    /* refusals leave the dataset empty */
    d = kdcl_dataset_create();
    int32_t bad[N] = {0, 1, 5, 1, 0};
    ck_assert_int_eq(kdcl_dataset_from_arrays(img, bad, N, C, H, W, KDCL_LAYOUT_CHW, 3, d),
                     KDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kdcl_dataset_from_arrays(NULL, lab, N, C, H, W, KDCL_LAYOUT_CHW, 0, d),
                     KDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kdcl_dataset_from_arrays(img, lab, N, 5, H, W, KDCL_LAYOUT_CHW, 0, d),
                     KDCL_ERR_INVALID_ARG);
    ck_assert_uint_eq(d->n, 0);
    kdcl_dataset_destroy(d);
    kdcl_dataset_destroy(NULL);
}
END_TEST

START_TEST(test_predict_matches_evaluate)
{
    kdcl_dataset ds;
    tu_make_6x6(&ds, 50, 4, 3, third, 120, 100);
    kdcl_model *m = tu_model("36-12-3", 3, 1, 6, 6, 16, 0, 0, 9);
    /* host prediction of raw pixels in batches of 16 = the model's logits on the device */
    float *logits = malloc(ds.n * 3 * sizeof *logits), *ref = NULL;
    tu_ok(kdcl_model_predict(m, ds.images, KDCL_U8, KDCL_LAYOUT_HWC, ds.n, 1, 6, 6, logits),
          "predict u8");
    tu_ok(kdcl_model_logits_all(m, &ds, &ref), "logits_all");
    for (size_t i = 0; i < ds.n * 3; i++) ck_assert_float_eq(logits[i], ref[i]);
    /* the same pixels already transformed (x / 255 without a normalisation) */
    float *x = malloc(ds.n * 36 * sizeof *x), *lf = malloc(ds.n * 3 * sizeof *lf);
    for (size_t i = 0; i < ds.n * 36; i++) x[i] = (float)ds.images[i] / 255.0f;
    tu_ok(kdcl_model_predict(m, x, KDCL_F32, KDCL_LAYOUT_HWC, ds.n, 1, 6, 6, lf), "predict f32");
    double maxd = 0;
    for (size_t i = 0; i < ds.n * 3; i++) maxd = fmax(maxd, fabs((double)lf[i] - ref[i]));
    ck_assert_msg(maxd < 1e-5, "u8 and float inputs differ by %g", maxd);
    /* a shape that does not fit */
    ck_assert_int_eq(kdcl_model_predict(m, x, KDCL_F32, KDCL_LAYOUT_HWC, ds.n, 1, 5, 6, lf),
                     KDCL_ERR_INVALID_ARG);
    free(x);
    free(lf);
    free(logits);
    kdcl_free(ref);
    kdcl_model_destroy(m);
    kdcl_dataset_free(&ds);
}
END_TEST

START_TEST(test_devices_json)
{
    size_t need = 0;
    /* asking with no room says how much is needed */
    tu_ok(kdcl_devices_json(NULL, 0, &need), "devices json size");
    ck_assert_uint_gt(need, 2);
    char *buf = malloc(need);
    tu_ok(kdcl_devices_json(buf, need, NULL), "devices json");
    cJSON *a = cJSON_Parse(buf);
    ck_assert_ptr_nonnull(a);
    ck_assert(cJSON_IsArray(a) && cJSON_GetArraySize(a) >= 1);
    kdcl_device_info *list = NULL;
    size_t n = 0;
    tu_ok(kdcl_list_devices(&list, &n), "list devices");
    ck_assert_uint_eq((size_t)cJSON_GetArraySize(a), n);
    cJSON *d0 = cJSON_GetArrayItem(a, 0);
    ck_assert_str_eq(cJSON_GetObjectItem(d0, "name")->valuestring, list[0].name);
    static const char *const keys[] = {"id", "platform", "name", "driver_version", "type",
                                       "compute_units", "global_mem", "max_alloc", "fp16"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        ck_assert_msg(cJSON_GetObjectItem(d0, keys[i]), "no \"%s\"", keys[i]);
    free(list);
    cJSON_Delete(a);
    free(buf);
    char one[4096];
    tu_ok(kdcl_ctx_device_json(tu_ctx, one, sizeof one, NULL), "context device json");
    cJSON *o = cJSON_Parse(one);
    ck_assert_ptr_nonnull(o);
    ck_assert_str_eq(cJSON_GetObjectItem(o, "name")->valuestring, kdcl_ctx_device(tu_ctx)->name);
    cJSON_Delete(o);
}
END_TEST

typedef struct {
    size_t epochs_seen, progress_calls, stop_after;
    size_t last_done, last_total;
    double last_loss;
} watch;

static int on_epoch(void *user, const kdcl_epoch_stats *st)
{
    watch *w = user;
    w->epochs_seen++;
    ck_assert_uint_eq(st->epoch, w->epochs_seen);
    ck_assert_uint_eq(st->epochs, 6);
    ck_assert_str_eq(st->tag, "api");
    ck_assert(isfinite(st->train_loss) && st->samples_per_s > 0);
    ck_assert(!isnan(st->val_error)); /* a validation set was given */
    w->last_loss = st->train_loss;
    return w->epochs_seen >= w->stop_after;
}

static void on_progress(void *user, const kdcl_progress *p)
{
    watch *w = user;
    w->progress_calls++;
    ck_assert_uint_le(p->done, p->total);
    ck_assert_str_eq(p->tag, "api");
    w->last_done = p->done;
    w->last_total = p->total;
}

START_TEST(test_callbacks_and_distill_models)
{
    kdcl_dataset tr, va;
    tu_make_6x6(&tr, 200, 5, 3, third, 120, 100);
    tu_make_6x6(&va, 60, 6, 3, third, 120, 100);
    kdcl_model *t = tu_model("36-24-3", 3, 1, 6, 6, 32, 0, 0, 1);
    kdcl_train_opts o;
    kdcl_train_opts_default(&o);
    o.epochs = 6;
    o.batch = 32;
    o.lr = 0.1f;
    o.tag = "api";
    o.val = &va;
    watch w = {0, 0, 3, 0, 0, 0};
    o.on_epoch = on_epoch;
    o.on_epoch_user = &w;
    o.on_progress = on_progress;
    o.on_progress_user = &w;
    kdcl_epoch_stats last;
    tu_ok(kdcl_train(t, &tr, &o, NULL, NULL, &last), "train");
    ck_assert_uint_eq(w.epochs_seen, 3); /* stopped by the callback after epoch 3 */
    ck_assert_uint_eq(last.epoch, 3);
    ck_assert(last.train_loss == w.last_loss);
    ck_assert_uint_ge(w.progress_calls, 3);
    ck_assert_uint_eq(w.last_done, w.last_total); /* every epoch reports its end */
    ck_assert_uint_eq(w.last_total, 200);

    /* distillation from a model the caller holds: the teacher is used, not freed */
    kdcl_model *s = tu_model("36-8-3", 3, 1, 6, 6, 32, 0, 0, 2);
    kdcl_model *teachers[1] = {t};
    w = (watch){0, 0, 6, 0, 0, 0};
    kdcl_distill_opts d = {4.0f, 0.1f, KDCL_KD_KL, KDCL_TARGETS_AUTO};
    tu_ok(kdcl_distill_models(s, teachers, 1, KDCL_ENS_PROB, &tr, &o, &d, &last),
          "distill from held models");
    ck_assert_uint_eq(w.epochs_seen, 6);
    kdcl_eval_result r;
    tu_ok(kdcl_evaluate(t, &va, 0, &r), "the teacher after distillation");
    kdcl_eval_result_free(&r);
    ck_assert_int_eq(kdcl_distill_models(s, teachers, 0, KDCL_ENS_PROB, &tr, &o, &d, NULL),
                     KDCL_ERR_INVALID_ARG);
    teachers[0] = s;
    ck_assert_int_eq(kdcl_distill_models(s, teachers, 1, KDCL_ENS_PROB, &tr, &o, &d, NULL),
                     KDCL_ERR_INVALID_ARG); /* the student is not its own teacher */
    kdcl_model_destroy(s);
    kdcl_model_destroy(t);
    kdcl_dataset_free(&tr);
    kdcl_dataset_free(&va);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("api");
    TCase *tc = tcase_create("core");
    tcase_add_unchecked_fixture(tc, tu_ctx_setup, tu_ctx_teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_opts_by_name);
    tcase_add_test(tc, test_dataset_arrays_round_trip);
    tcase_add_test(tc, test_predict_matches_evaluate);
    tcase_add_test(tc, test_devices_json);
    tcase_add_test(tc, test_callbacks_and_distill_models);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(suite()); }
