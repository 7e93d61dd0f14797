/* The kdcl tool end to end on a tiny IDX dataset it writes itself: train,
 * eval --json, and bad input giving one clear line on stderr and the right
 * exit status (2: usage / no device, 1: failure), never a crash. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kdcl/data.h"
#include "kdcl/gemm.h"
#include "kdcl/runtime.h"
#include "kdcl/safetensors.h"
#include "testutil.h"

static char data_dir[4096];

static void setup(void)
{
    tu_exe();
    snprintf(data_dir, sizeof data_dir, "%s", tu_path("tiny"));
    mkdir(data_dir, 0755);
    tu_write_idx_split(data_dir, "train", 300, 1);
    tu_write_idx_split(data_dir, "t10k", 150, 2);
}

START_TEST(test_train_eval_roundtrip)
{
    char args[8192];
    const char *model = tu_path("tiny.safetensors");
    snprintf(args, sizeof args,
             "train --data %s --arch 64-32-3 --epochs 3 --batch 25 --lr 0.05 --dropout 0.1,0.2 "
             "--max-norm 3 --jitter 1 --val 50 --seed 3 --out %s",
             data_dir, model);
    tu_run_result r;
    tu_run(&r, args);
    ck_assert_msg(r.status == 0, "train failed (%d): %s", r.status, r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "test errors:"));
    ck_assert_ptr_nonnull(strstr(r.out, "val err"));
    snprintf(args, sizeof args, "eval --model %s --data %s --json", model, data_dir);
    tu_run(&r, args);
    ck_assert_msg(r.status == 0, "eval failed: %s", r.err);
    cJSON *j = cJSON_Parse(r.out);
    ck_assert_msg(j != NULL, "eval --json printed no JSON: %s", r.out);
    int errors = (int)cJSON_GetObjectItem(j, "errors")->valuedouble;
    ck_assert_int_eq((int)cJSON_GetObjectItem(j, "examples")->valuedouble, 150);
    ck_assert_msg(errors < 30, "%d of 150 test errors on an easy problem", errors);
    cJSON *conf = cJSON_GetObjectItem(j, "confusion");
    ck_assert_int_eq(cJSON_GetArraySize(conf), 3);
    int total = 0, off = 0;
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 3; k++) {
            int v = (int)cJSON_GetArrayItem(cJSON_GetArrayItem(conf, i), k)->valuedouble;
            total += v;
            if (i != k) off += v;
        }
    ck_assert_int_eq(total, 150);
    ck_assert_int_eq(off, errors);
    cJSON_Delete(j);
    /* the text report names the per-class errors */
    snprintf(args, sizeof args, "eval --model %s --data %s", model, data_dir);
    tu_run(&r, args);
    ck_assert_int_eq(r.status, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "confusion"));
}
END_TEST

START_TEST(test_bad_usage)
{
    char args[8192];
    snprintf(args, sizeof args, "train --data %s --arch 64-abc-3 --out %s", data_dir,
             tu_path("x.safetensors"));
    tu_expect_fail(args, 2, "architecture");
    snprintf(args, sizeof args, "train --data %s --batch 0 --out %s", data_dir,
             tu_path("x.safetensors"));
    tu_expect_fail(args, 2, "--batch");
    snprintf(args, sizeof args, "train --data %s --batch 1000 --out %s", data_dir,
             tu_path("x.safetensors"));
    tu_expect_fail(args, 2, "larger than");
    snprintf(args, sizeof args, "train --data %s --dropout 1.5 --out %s", data_dir,
             tu_path("x.safetensors"));
    tu_expect_fail(args, 2, "--dropout");
    snprintf(args, sizeof args, "train --data %s --arch 65-8-3 --epochs 1 --out %s", data_dir,
             tu_path("x.safetensors"));
    tu_expect_fail(args, 2, "65 inputs");
    tu_expect_fail("train --no-such-option", 2, "unknown option");
    tu_expect_fail("train --data /nonexistent/dir --out /tmp/x.safetensors", 1, "/nonexistent/dir");
    tu_expect_fail("frobnicate", 2, "unknown command");
    tu_expect_fail("eval", 2, "--model");
    struct stat st;
    ck_assert_int_ne(stat(tu_path("x.safetensors"), &st), 0); /* nothing written */
}
END_TEST

/* A CNN from a layer list with the CNN options, then eval of its checkpoint;
 * specs that are malformed or do not fit the 8x8 images: one line, exit 2,
 * nothing written. */
START_TEST(test_cnn_train_eval_and_bad_specs)
{
    char args[8192];
    const char *model = tu_path("cnn.safetensors");
    snprintf(args, sizeof args,
             "train --data %s --arch 'conv(4,3,p=1),bn,relu,maxpool(2),res(conv(4,3,p=1),bn),relu,"
             "flatten,dropout(0.1),linear(K)' --normalize --flip --crop 1 --optimizer adamw --lr "
             "0.01 --weight-decay 0.01 --schedule cosine --warmup 1 --epochs 3 --batch 25 --out %s",
             data_dir, model);
    tu_run_result r;
    tu_run(&r, args);
    ck_assert_msg(r.status == 0, "CNN train failed (%d): %s", r.status, r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "test errors:"));
    snprintf(args, sizeof args, "eval --model %s --data %s --json", model, data_dir);
    tu_run(&r, args);
    ck_assert_msg(r.status == 0, "eval failed: %s", r.err);
    cJSON *j = cJSON_Parse(r.out);
    ck_assert_ptr_nonnull(j);
    int errors = (int)cJSON_GetObjectItem(j, "errors")->valuedouble;
    ck_assert_msg(errors < 40, "%d of 150 test errors for the CNN on an easy problem", errors);
    cJSON_Delete(j);
    kdcl_st_file f;
    tu_ok(kdcl_st_read(model, &f), "read");
    ck_assert_ptr_nonnull(strstr(kdcl_st_meta(&f, "kdcl.model"), "\"Residual\""));
    ck_assert_str_eq(kdcl_st_meta(&f, "optimizer"), "adamw");
    kdcl_st_free(&f);
    /* distillation into an MLP from the CNN, with flips: per-batch targets */
    const char *student = tu_path("cnn-student.safetensors");
    snprintf(args, sizeof args,
             "distill --data %s --teacher %s --arch 64-16-3 --T 3 --flip --epochs 2 --batch 25 "
             "--out %s",
             data_dir, model, student);
    tu_run(&r, args);
    ck_assert_msg(r.status == 0, "distill from the CNN failed: %s", r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "per batch"));
    /* an ensemble of mixed architectures: the CNN and the MLP student */
    snprintf(args, sizeof args, "eval --model %s,%s --data %s --json", model, student, data_dir);
    tu_run(&r, args);
    ck_assert_msg(r.status == 0, "mixed ensemble eval failed: %s", r.err);
    j = cJSON_Parse(r.out);
    ck_assert_ptr_nonnull(j);
    ck_assert_msg((int)cJSON_GetObjectItem(j, "errors")->valuedouble < 40,
                  "the CNN + MLP ensemble makes %d errors of 150",
                  (int)cJSON_GetObjectItem(j, "errors")->valuedouble);
    cJSON_Delete(j);
    const char *x = tu_path("never.safetensors");
    static const char *bad[][2] = {
        {"conv(4,9),flatten,linear(K)", "does not fit"},
        {"conv(4,3),linear(K)", "flat"},
        {"conv(4,3),relu,flatten,linear(", "position"},
        {"conv(4,3),frob,flatten,linear(K)", "frob"},
        {"64-8-3,relu", "position"},
        {"@/no/such/model.json", "/no/such/model.json"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(args, sizeof args, "train --data %s --arch '%s' --epochs 1 --out %s", data_dir,
                 bad[i][0], x);
        tu_expect_fail(args, strncmp(bad[i][0], "@", 1) ? 2 : 1, bad[i][1]);
    }
    snprintf(args, sizeof args, "train --data %s --arch 'conv(4,3),flatten,linear(K)' --dropout "
             "0.5 --epochs 1 --out %s", data_dir, x);
    tu_expect_fail(args, 2, "dropout(P)");
    struct stat st;
    ck_assert_int_ne(stat(x, &st), 0);
}
END_TEST

START_TEST(test_bad_checkpoints)
{
    char args[8192];
    const char *good = tu_path("good.safetensors");
    snprintf(args, sizeof args, "train --data %s --arch 64-8-3 --epochs 1 --batch 50 --quiet --out %s",
             data_dir, good);
    tu_run_result r;
    tu_run(&r, args);
    ck_assert_msg(r.status == 0, "%s", r.err);
    /* truncated copy */
    FILE *f = fopen(good, "rb");
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    tu_write_file(tu_path("trunc.safetensors"), buf, n / 2);
    snprintf(args, sizeof args, "eval --model %s --data %s", tu_path("trunc.safetensors"), data_dir);
    tu_expect_fail(args, 1, "trunc.safetensors");
    /* garbage header */
    tu_write_file(tu_path("junk.safetensors"), "\x10\0\0\0\0\0\0\0{not json at all", 24);
    snprintf(args, sizeof args, "eval --model %s --data %s", tu_path("junk.safetensors"), data_dir);
    tu_expect_fail(args, 1, "junk.safetensors");
    /* missing file */
    snprintf(args, sizeof args, "eval --model %s --data %s", tu_path("none.safetensors"), data_dir);
    tu_expect_fail(args, 1, "none.safetensors");
    /* an output directory that does not exist: refused before the training
     * (tests/test_badinput.c has the other outputs) */
    snprintf(args, sizeof args,
             "train --data %s --arch 64-8-3 --epochs 1 --batch 50 --quiet --out %s/no/such/m.st",
             data_dir, tu_tmpdir());
    tu_expect_fail(args, 2, "does not exist");
}
END_TEST

START_TEST(test_devices_lists_something)
{
    tu_run_result r;
    tu_run(&r, "devices");
    ck_assert_int_eq(r.status, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "0:0"));
    ck_assert_ptr_nonnull(strstr(r.out, "driver"));
    tu_expect_fail("gemm --m 0", 2, "--m");
}
END_TEST

/* kdcl specialists cluster -> train (2 workers) -> eval --json, then bad input. */
START_TEST(test_specialists_pipeline)
{
    char args[32768];
    char gen[4200], cl[4200], dir[4200]; /* tu_path's buffers rotate */
    snprintf(gen, sizeof gen, "%s", tu_path("gen.safetensors"));
    snprintf(cl, sizeof cl, "%s", tu_path("clusters.json"));
    snprintf(dir, sizeof dir, "%s", tu_path("specs"));
    tu_run_result r;
    snprintf(args, sizeof args,
             "train --data %s --arch 64-8-3 --epochs 2 --batch 25 --quiet --out %s", data_dir, gen);
    tu_run(&r, args);
    ck_assert_msg(r.status == 0, "%s", r.err);
    snprintf(args, sizeof args, "specialists cluster --data %s --model %s --clusters 2 --out %s",
             data_dir, gen, cl);
    tu_run(&r, args);
    ck_assert_msg(r.status == 0, "cluster: %s", r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "cluster 1:"));
    snprintf(args, sizeof args,
             "specialists train --data %s --model %s --clusters %s --min-size 1 --jobs 2 "
             "--epochs 1 --batch 20 --quiet --out %s",
             data_dir, gen, cl, dir);
    tu_run(&r, args);
    ck_assert_msg(r.status == 0, "train: %s", r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "2 specialists in"));
    const char *js = tu_path("spec_eval.json");
    snprintf(args, sizeof args,
             "specialists eval --data %s --model %s --specialists %s --json %s", data_dir, gen,
             dir, js);
    tu_run(&r, args);
    ck_assert_msg(r.status == 0, "eval: %s", r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "Table 4"));
    FILE *f = fopen(js, "r");
    ck_assert_ptr_nonnull(f);
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    cJSON *j = cJSON_Parse(buf);
    ck_assert_ptr_nonnull(j);
    ck_assert_int_eq((int)cJSON_GetObjectItem(cJSON_GetObjectItem(j, "all"), "examples")->valuedouble,
                     150);
    /* every example falls in exactly one covering-count bucket */
    cJSON *by = cJSON_GetObjectItem(j, "by_covering");
    int total = 0;
    for (int i = 0; i < cJSON_GetArraySize(by); i++)
        total += (int)cJSON_GetObjectItem(cJSON_GetArrayItem(by, i), "examples")->valuedouble;
    ck_assert_int_eq(total, 150);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "per_specialist")), 2);
    cJSON_Delete(j);

    /* bad input: one line, the right status, nothing crashes */
    snprintf(args, sizeof args, "specialists cluster --data %s --model %s --clusters 4 --out %s",
             data_dir, gen, tu_path("c4.json"));
    tu_expect_fail(args, 2, "more than the 3 classes");
    tu_expect_fail("specialists", 2, "usage");
    tu_expect_fail("specialists frobnicate", 2, "unknown subcommand");
    tu_write_file(tu_path("bad.json"), "{\"format\": \"kdcl-clusters\", \"clus", 31);
    snprintf(args, sizeof args,
             "specialists train --data %s --model %s --clusters %s --quiet --out %s", data_dir,
             gen, tu_path("bad.json"), dir);
    tu_expect_fail(args, 1, "bad.json");
    /* a second run into the same directory without the singleton cluster:
     * its old specialist would join the new ones at eval, so refuse */
    snprintf(args, sizeof args,
             "specialists train --data %s --model %s --clusters %s --min-size 2 --epochs 1 "
             "--quiet --out %s",
             data_dir, gen, cl, dir);
    tu_expect_fail(args, 2, "not one of this run's specialists");
    /* clusters over 5 classes for a 3-class generalist: one line, before any training */
    const char *k5 = "{\"format\": \"kdcl-clusters\", \"version\": 1, \"classes\": 5, "
                     "\"clusters\": [{\"id\": 0, \"classes\": [0, 1]}]}";
    tu_write_file(tu_path("k5.json"), k5, strlen(k5));
    snprintf(args, sizeof args,
             "specialists train --data %s --model %s --clusters %s --quiet --out %s", data_dir,
             gen, tu_path("k5.json"), tu_path("k5specs"));
    tu_expect_fail(args, 2, "over 5 classes");
    mkdir(tu_path("nospecs"), 0755);
    snprintf(args, sizeof args, "specialists eval --data %s --model %s --specialists %s",
             data_dir, gen, tu_path("nospecs"));
    tu_expect_fail(args, 2, "no specialist_");
    /* a specialist file that is not a checkpoint */
    mkdir(tu_path("junkspecs"), 0755);
    char junk[4200];
    snprintf(junk, sizeof junk, "%s/specialist_0.safetensors", tu_path("junkspecs"));
    tu_write_file(junk, "garbage", 7);
    snprintf(args, sizeof args, "specialists eval --data %s --model %s --specialists %s",
             data_dir, gen, tu_path("junkspecs"));
    tu_expect_fail(args, 1, "specialist_0.safetensors");
}
END_TEST

/* kdcl tune's measuring child checks the products it times against a CPU
 * reference (--check): the parameters in use pass; a parameter set that breaks
 * a constraint CLBlast does not check (GEMMK = 1 with a 64x64 tile and VWM = 8
 * computes garbage on PoCL) must be refused, not timed. */
START_TEST(test_tune_checks_products)
{
    tu_expect_fail("tune --search everything", 2, "--search");
    tu_run_result r;
    tu_run(&r, "tune --child-measure --mask 1 --reps 1 --check");
    ck_assert_msg(r.status == 0, "tune --child-measure --check exited %d: %s", r.status, r.err);
    ck_assert_msg(strstr(r.out, "S 0 ") != NULL, "no timing line in: %s", r.out);

    kdcl_ctx *ctx;
    ck_assert_msg(kdcl_ctx_create(NULL, &ctx) == KDCL_OK, "%s", kdcl_last_error());
    kdcl_device_info d = *kdcl_ctx_device(ctx);
    kdcl_ctx_destroy(ctx);
    char dir[4200], path[4400];
    snprintf(dir, sizeof dir, "%s", tu_path("badtune"));
    const char *old = getenv("KDCL_CACHE_DIR");
    char saved[4200] = "";
    if (old) snprintf(saved, sizeof saved, "%s", old);
    setenv("KDCL_CACHE_DIR", dir, 1);
    ck_assert(kdcl_gemm_tuning_path(&d, path, sizeof path) == KDCL_OK);
    mkdir(dir, 0755);
    snprintf(dir + strlen(dir), sizeof dir - strlen(dir), "/clblast");
    mkdir(dir, 0755);
    static const char bad[] =
        "{\"source\": \"test\", \"kernels\": {\"Xgemm\": {\"GEMMK\": 1, \"KREG\": 4, "
        "\"KWG\": 1, \"KWI\": 1, \"MDIMA\": 8, \"MDIMC\": 8, \"MWG\": 64, \"NDIMB\": 8, "
        "\"NDIMC\": 8, \"NWG\": 64, \"SA\": 0, \"SB\": 0, \"STRM\": 0, \"STRN\": 0, "
        "\"VWM\": 8, \"VWN\": 8}, \"GemmRoutine\": {\"XGEMM_MIN_INDIRECT_SIZE\": 1}}}\n";
    tu_write_file(path, bad, sizeof bad - 1);
    tu_run(&r, "tune --child-measure --mask 1 --reps 1 --check");
    if (old)
        setenv("KDCL_CACHE_DIR", saved, 1);
    else
        unsetenv("KDCL_CACHE_DIR");
    ck_assert_msg(r.status == 1, "a wrong parameter set passed the check (exit %d): %s%s",
                  r.status, r.out, r.err);
    ck_assert_msg(strstr(r.err, "wrong product") || strstr(r.err, "CLBlast"),
                  "unexpected message: %s", r.err);
}
END_TEST

/* --members M in one process: the members in sequence, member i the model
 * `kdcl train --seed S+i` makes (tensor for tensor), a table, --resume
 * skipping finished members; --metrics and a file as --out refused. */
START_TEST(test_members_in_one_process)
{
    char args[16384], dir[1024], p[1100], ref[1100];
    snprintf(dir, sizeof dir, "%s", tu_path("members"));
    snprintf(args, sizeof args, "rm -rf %s", dir);
    ck_assert_int_eq(system(args), 0);
    snprintf(args, sizeof args,
             "train --data %s --arch 64-16-3 --epochs 2 --batch 25 --members 3 --seed 5 --out %s",
             data_dir, dir);
    tu_run_result r;
    tu_run(&r, args);
    ck_assert_msg(r.status == 0, "members failed (%d): %s", r.status, r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "| member | seed | test errors |"));
    ck_assert_ptr_nonnull(strstr(r.out, "3 members in"));
    ck_assert_ptr_nonnull(strstr(r.out, "--teacher "));
    for (int i = 0; i < 3; i++) {
        char needle[64];
        snprintf(needle, sizeof needle, "\n| %d | %d | ", i, 5 + i);
        ck_assert_msg(strstr(r.out, needle) != NULL, "no row for member %d: %s", i, r.out);
        snprintf(p, sizeof p, "%s/member_%d.safetensors.metrics.jsonl", dir, i);
        ck_assert_int_eq(access(p, F_OK), 0);
    }
    snprintf(ref, sizeof ref, "%s", tu_path("member_ref.safetensors"));
    snprintf(args, sizeof args,
             "train --data %s --arch 64-16-3 --epochs 2 --batch 25 --seed 7 --quiet --out %s",
             data_dir, ref);
    tu_run(&r, args);
    ck_assert_msg(r.status == 0, "reference failed: %s", r.err);
    snprintf(p, sizeof p, "%s/member_2.safetensors", dir);
    kdcl_st_file a, b;
    tu_ok(kdcl_st_read(ref, &a), ref);
    tu_ok(kdcl_st_read(p, &b), p);
    ck_assert_uint_eq(a.n_tensors, b.n_tensors);
    for (size_t i = 0; i < a.n_tensors; i++) {
        const kdcl_st_tensor *t = kdcl_st_find(&b, a.tensors[i].name);
        ck_assert_ptr_nonnull(t);
        ck_assert_uint_eq(t->nbytes, a.tensors[i].nbytes);
        ck_assert_msg(!memcmp(t->data, a.tensors[i].data, t->nbytes), "member 2: %s differs",
                      t->name);
    }
    kdcl_st_free(&a);
    kdcl_st_free(&b);
    /* --resume: the finished members are not trained again */
    snprintf(args, sizeof args,
             "train --data %s --arch 64-16-3 --epochs 2 --batch 25 --members 3 --seed 5 "
             "--resume --out %s",
             data_dir, dir);
    tu_run(&r, args);
    ck_assert_msg(r.status == 0, "resume failed: %s", r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "3 of 3 members finished before"));
    ck_assert_ptr_null(strstr(r.out, "epoch   1/2"));
    snprintf(args, sizeof args,
             "train --data %s --members 2 --metrics %s/m.jsonl --out %s", data_dir, dir, dir);
    tu_expect_fail(args, 2, "--metrics does not apply to --members");
    snprintf(args, sizeof args, "train --data %s --members 2 --out %s/member_0.safetensors",
             data_dir, dir);
    tu_expect_fail(args, 2, "--out");
    snprintf(args, sizeof args, "train --data %s --members 0 --out %s", data_dir, dir);
    tu_expect_fail(args, 2, "--members needs an integer in 1..10000");
}
END_TEST

static Suite *cli_suite(void)
{
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("cli");
    tcase_add_unchecked_fixture(tc, setup, NULL);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_devices_lists_something);
    tcase_add_test(tc, test_bad_usage);
    tcase_add_test(tc, test_cnn_train_eval_and_bad_specs);
    tcase_add_test(tc, test_bad_checkpoints);
    tcase_add_test(tc, test_train_eval_roundtrip);
    tcase_add_test(tc, test_specialists_pipeline);
    tcase_add_test(tc, test_tune_checks_products);
    tcase_add_test(tc, test_members_in_one_process);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(cli_suite()); }
