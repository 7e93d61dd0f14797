/* Resumable training: a run interrupted (a failing step, or SIGKILL of the
 * kdcl process mid-epoch) and resumed from its training state ends with the
 * tensors of an uninterrupted run, byte for byte; a state whose options or
 * data differ is refused naming what differs; specialists resume or skip. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kdcl/loss.h"
#include "kdcl/ops.h"
#include "kdcl/safetensors.h"
#include "kdcl/train.h"
#include "testutil.h"

static int region_cols(size_t p) { return (int)((p % 6) / 2) + 3 * (int)(p / 18); }

/* Cross-entropy (as kdcl_train's default) that fails at global step crash_at. */
typedef struct {
    uint64_t crash_at;
} crash_loss;

static kdcl_status crashing_xent(void *user, kdcl_model *m, const kdcl_batcher *b, size_t start,
                                 size_t count, uint64_t step, const kdcl_tensor *labels,
                                 kdcl_tensor *loss, kdcl_tensor *errors)
{
    (void)b;
    (void)start;
    const crash_loss *c = user;
    if (step == c->crash_at) return kdcl_set_error(KDCL_ERR_IO, "simulated crash");
    return kdcl_op_softmax_xent(kdcl_model_ctx(m), kdcl_model_logits(m), labels, loss,
                                kdcl_model_dlogits(m), 1.0f / (float)count, errors);
}

/* Every tensor of two checkpoints byte for byte. */
static void same_tensors(const char *a, const char *b)
{
    kdcl_st_file x, y;
    tu_ok(kdcl_st_read(a, &x), a);
    tu_ok(kdcl_st_read(b, &y), b);
    ck_assert_uint_eq(x.n_tensors, y.n_tensors);
    for (size_t i = 0; i < x.n_tensors; i++) {
        const kdcl_st_tensor *t = kdcl_st_find(&y, x.tensors[i].name);
        ck_assert_msg(t != NULL, "%s: no tensor %s", b, x.tensors[i].name);
        ck_assert_uint_eq(t->nbytes, x.tensors[i].nbytes);
        ck_assert_msg(!memcmp(t->data, x.tensors[i].data, t->nbytes),
                      "tensor %s differs between %s and %s", t->name, a, b);
    }
    kdcl_st_free(&x);
    kdcl_st_free(&y);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Two metrics files agree on everything but the timings. */
static void same_metrics(const char *a, const char *b)
{
    char *x = slurp(a), *y = slurp(b);
    ck_assert_ptr_nonnull(x);
    ck_assert_ptr_nonnull(y);
    size_t lines = 0;
    char *sx = NULL, *sy = NULL;
    char *lx = strtok_r(x, "\n", &sx), *ly = strtok_r(y, "\n", &sy);
    for (; lx && ly; lx = strtok_r(NULL, "\n", &sx), ly = strtok_r(NULL, "\n", &sy), lines++) {
        char *tx = strstr(lx, ", \"seconds\""), *ty = strstr(ly, ", \"seconds\"");
        ck_assert(tx && ty);
        *tx = *ty = '\0';
        ck_assert_msg(!strcmp(lx, ly), "metrics differ: '%s' vs '%s'", lx, ly);
    }
    ck_assert_msg(!lx && !ly, "metrics files have different line counts");
    ck_assert_uint_gt(lines, 0);
    free(x);
    free(y);
}

typedef struct {
    const char *arch;
    float drop_in, drop_hidden;
    kdcl_optim_kind opt;
    int jitter, flip;
    size_t state_every;
    uint64_t crash_at;
} resume_case;

/* Train uninterrupted, then interrupted at crash_at and resumed; compare. */
static void check_resume(const resume_case *rc, const char *tag)
{
    kdcl_dataset ds;
    tu_make_6x6(&ds, 200, 7, 6, region_cols, 60, 120);
    char ref[4200], res[4200], st[4200], mref[4200], mres[4200];
    snprintf(ref, sizeof ref, "%s", tu_path("ref.safetensors"));
    snprintf(res, sizeof res, "%s", tu_path("res.safetensors"));
    snprintf(st, sizeof st, "%s", tu_path("res.state.safetensors"));
    snprintf(mref, sizeof mref, "%s", tu_path("ref.metrics.jsonl"));
    snprintf(mres, sizeof mres, "%s", tu_path("res.metrics.jsonl"));
    remove(st);
    kdcl_train_opts o;
    kdcl_train_opts_default(&o);
    o.epochs = 3;
    o.batch = 10;
    o.lr = rc->opt == KDCL_OPT_SGD ? 0.05f : 0.003f;
    o.optimizer = rc->opt;
    o.jitter = rc->jitter;
    o.flip = rc->flip;
    o.max_norm = 3.0f;
    o.weight_decay = 1e-4f;
    o.seed = 5;
    o.tag = tag;
    /* uninterrupted */
    kdcl_model *m = tu_model(rc->arch, 6, 1, 6, 6, 10, rc->drop_in, rc->drop_hidden, 11);
    o.metrics_path = mref;
    tu_ok(kdcl_train(m, &ds, &o, NULL, NULL, NULL), "uninterrupted run");
    tu_ok(kdcl_model_save(m, ref, NULL, NULL, 0), "save");
    kdcl_model_destroy(m);
    /* interrupted: the step crash_at fails after states were written */
    m = tu_model(rc->arch, 6, 1, 6, 6, 10, rc->drop_in, rc->drop_hidden, 11);
    o.metrics_path = mres;
    o.state_path = st;
    o.state_every = rc->state_every;
    crash_loss c = {rc->crash_at};
    kdcl_status s = kdcl_train(m, &ds, &o, crashing_xent, &c, NULL);
    ck_assert_int_eq(s, KDCL_ERR_IO);
    kdcl_model_destroy(m);
    kdcl_train_state_info si;
    tu_ok(kdcl_train_state_info_read(st, &si), "state info");
    ck_assert_uint_eq(si.epochs, 3);
    ck_assert_uint_eq(si.steps, 20);
    const size_t ce = (size_t)rc->crash_at / 20, ck = (size_t)rc->crash_at % 20;
    const size_t done = ce * 20 + (rc->state_every ? ck / rc->state_every * rc->state_every : 0);
    ck_assert_uint_eq(si.epoch * 20 + si.step, done);
    /* resumed in a new model (as a new process would) */
    m = tu_model(rc->arch, 6, 1, 6, 6, 10, rc->drop_in, rc->drop_hidden, 99);
    o.resume = 1;
    kdcl_epoch_stats last;
    tu_ok(kdcl_train(m, &ds, &o, NULL, NULL, &last), "resumed run");
    ck_assert_uint_eq(last.epoch, 3);
    tu_ok(kdcl_model_save(m, res, NULL, NULL, 0), "save");
    kdcl_model_destroy(m);
    same_tensors(ref, res);
    same_metrics(mref, mres);
    kdcl_dataset_free(&ds);
}

START_TEST(test_resume_mlp_sgd_dropout_mid_epoch)
{
    resume_case rc = {"36-16-6", 0.2f, 0.5f, KDCL_OPT_SGD, 1, 0, 3, 27};
    check_resume(&rc, "mlp");
}
END_TEST

START_TEST(test_resume_cnn_adam_batchnorm_epoch_boundary)
{
    resume_case rc = {"conv(4,3,p=1),bn,relu,maxpool(2),flatten,dropout(0.3),linear(K)", 0, 0,
                      KDCL_OPT_ADAM, 1, 1, 0, 45};
    check_resume(&rc, "cnn");
}
END_TEST

START_TEST(test_resume_residual_nesterov_mid_epoch)
{
    resume_case rc = {"conv(3,3,p=1),res(conv(3,3,p=1),bn,relu),gap,flatten,linear(K)", 0, 0,
                      KDCL_OPT_SGD, 0, 0, 7, 50};
    check_resume(&rc, "res");
}
END_TEST

/* A state is refused when an option or the data differ, naming them; a
 * damaged state is refused as such. */
START_TEST(test_resume_refuses_changes)
{
    kdcl_dataset ds, other;
    tu_make_6x6(&ds, 100, 7, 6, region_cols, 60, 120);
    tu_make_6x6(&other, 100, 8, 6, region_cols, 60, 120);
    char st[4200];
    snprintf(st, sizeof st, "%s", tu_path("ch.state.safetensors"));
    remove(st);
    kdcl_train_opts o;
    kdcl_train_opts_default(&o);
    o.epochs = 2;
    o.batch = 10;
    o.state_path = st;
    const char *keys[1] = {"teacher"}, *vals[1] = {"a"};
    o.state_keys = keys;
    o.state_vals = vals;
    o.n_state = 1;
    kdcl_model *m = tu_model("36-8-6", 6, 1, 6, 6, 10, 0, 0, 1);
    crash_loss c = {12};
    ck_assert_int_eq(kdcl_train(m, &ds, &o, crashing_xent, &c, NULL), KDCL_ERR_IO);
    o.resume = 1;
    kdcl_train_opts x = o;
    x.lr = 0.1f;
    ck_assert_int_eq(kdcl_train(m, &ds, &x, NULL, NULL, NULL), KDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "the run's lr was '0.05', now '0.1'"));
    x = o;
    x.seed = 2;
    ck_assert_int_eq(kdcl_train(m, &ds, &x, NULL, NULL, NULL), KDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "seed"));
    x = o;
    vals[0] = "b";
    ck_assert_int_eq(kdcl_train(m, &ds, &x, NULL, NULL, NULL), KDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "the run's teacher was 'a', now 'b'"));
    vals[0] = "a";
    x.n_state = 0;
    ck_assert_int_eq(kdcl_train(m, &ds, &x, NULL, NULL, NULL), KDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "the run had teacher"));
    x = o;
    ck_assert_int_eq(kdcl_train(m, &other, &x, NULL, NULL, NULL), KDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "the run's data was"));
    kdcl_model *m2 = tu_model("36-9-6", 6, 1, 6, 6, 10, 0, 0, 1);
    ck_assert_int_eq(kdcl_train(m2, &ds, &x, NULL, NULL, NULL), KDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "the run's arch was"));
    kdcl_model_destroy(m2);
    /* a damaged state: truncated, or with a NaN parameter */
    struct stat sb;
    ck_assert_int_eq(stat(st, &sb), 0);
    char *bytes = malloc((size_t)sb.st_size);
    FILE *f = fopen(st, "rb");
    ck_assert_uint_eq(fread(bytes, 1, (size_t)sb.st_size, f), (size_t)sb.st_size);
    fclose(f);
    const char *bad = tu_path("bad.state.safetensors");
    tu_write_file(bad, bytes, (size_t)sb.st_size - 5);
    x = o;
    x.state_path = bad;
    ck_assert_int_eq(kdcl_train(m, &ds, &x, NULL, NULL, NULL), KDCL_ERR_FORMAT);
    kdcl_train_state_info si;
    ck_assert_int_eq(kdcl_train_state_info_read(bad, &si), KDCL_ERR_FORMAT);
    kdcl_st_file sf;
    tu_ok(kdcl_st_read(st, &sf), "read state");
    const kdcl_st_tensor *p = kdcl_st_find(&sf, "params");
    ck_assert_ptr_nonnull(p);
    /* find the params bytes in the file and poison the first float */
    const float first = ((const float *)p->data)[0];
    char *hit = NULL;
    for (size_t i = 0; i + 4 <= (size_t)sb.st_size && !hit; i++)
        if (!memcmp(bytes + i, &first, 4)) hit = bytes + i;
    ck_assert_ptr_nonnull(hit);
    const float nan = 0.0f / 0.0f;
    memcpy(hit, &nan, 4);
    tu_write_file(bad, bytes, (size_t)sb.st_size);
    ck_assert_int_eq(kdcl_train_state_info_read(bad, &si), KDCL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "NaN"));
    kdcl_st_free(&sf);
    free(bytes);
    /* resume without a path, or from a missing file */
    x = o;
    x.state_path = NULL;
    ck_assert_int_eq(kdcl_train(m, &ds, &x, NULL, NULL, NULL), KDCL_ERR_INVALID_ARG);
    x.state_path = tu_path("missing.state.safetensors");
    ck_assert_int_eq(kdcl_train(m, &ds, &x, NULL, NULL, NULL), KDCL_ERR_IO);
    kdcl_model_destroy(m);
    kdcl_dataset_free(&ds);
    kdcl_dataset_free(&other);
}
END_TEST

/* ---- the kdcl tool: SIGKILL mid-epoch, --resume ---- */

static char data_dir[4096];

static void cli_setup(void)
{
    snprintf(data_dir, sizeof data_dir, "%s", tu_path("data"));
    mkdir(data_dir, 0755);
    tu_write_idx_split(data_dir, "train", 3000, 1);
    tu_write_idx_split(data_dir, "t10k", 100, 2);
}

/* Run kdcl with args (shell text): exit status; stdout into o, stderr into e. */
static int kdcl(const char *args, char *o, size_t n_o, char *e, size_t n_e)
{
    static tu_run_result r;
    tu_run(&r, args);
    snprintf(o, n_o, "%s", r.out);
    snprintf(e, n_e, "%s", r.err);
    return r.status;
}

static long long mtime_ns(const char *path)
{
    struct stat sb;
    if (stat(path, &sb)) return -1;
    return (long long)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec;
}

START_TEST(test_cli_sigkill_mid_epoch_then_resume)
{
    char ref[4200], out[4200], st[4200], args[16384], o[65536], e[8192];
    snprintf(ref, sizeof ref, "%s", tu_path("cli_ref.safetensors"));
    snprintf(out, sizeof out, "%s", tu_path("cli_res.safetensors"));
    snprintf(st, sizeof st, "%s", tu_path("cli_res.state.safetensors"));
    remove(out);
    remove(st);
    const char *common = "--arch 64-32-3 --epochs 3 --batch 5 --dropout 0.2,0.5 --jitter 1 "
                         "--max-norm 3 --quiet";
    snprintf(args, sizeof args, "train --data %s %s --out %s", data_dir, common, ref);
    ck_assert_msg(kdcl(args, o, sizeof o, e, sizeof e) == 0, "%s", e);
    /* the interrupted run: killed once its state shows progress within an epoch */
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        char dd[4300], cmdline[16384];
        snprintf(dd, sizeof dd, "%s", data_dir);
        snprintf(cmdline, sizeof cmdline, "exec %s train --data %s %s --state-every 1 --out %s",
                 tu_exe(), dd, common, out);
        execl("/bin/sh", "sh", "-c", cmdline, (char *)NULL);
        _exit(127);
    }
    int killed = 0;
    for (int i = 0; i < 6000 && !killed; i++) { /* up to 60 s */
        kdcl_train_state_info si;
        if (access(st, F_OK) == 0 && kdcl_train_state_info_read(st, &si) == KDCL_OK &&
            (si.epoch > 0 || si.step > 40)) {
            kill(pid, SIGKILL);
            killed = 1;
        }
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    int wst = 0;
    waitpid(pid, &wst, 0);
    ck_assert_msg(killed && WIFSIGNALED(wst) && WTERMSIG(wst) == SIGKILL,
                  "the run was not killed mid-way (it finished first?)");
    ck_assert_int_eq(access(out, F_OK), -1); /* no checkpoint from a killed run */
    kdcl_train_state_info si;
    tu_ok(kdcl_train_state_info_read(st, &si), "state after SIGKILL");
    ck_assert_uint_lt(si.epoch, 3);
    /* a new run over it is refused, the state untouched */
    long long t_state = mtime_ns(st);
    snprintf(args, sizeof args, "train --data %s %s --out %s", data_dir, common, out);
    ck_assert_int_eq(kdcl(args, o, sizeof o, e, sizeof e), 2);
    ck_assert_ptr_nonnull(strstr(e, "holds an unfinished run"));
    ck_assert_ptr_nonnull(strstr(e, "--resume"));
    ck_assert_int_eq((int)(strchr(e, '\n') - e + 1), (int)strlen(e)); /* one line */
    ck_assert(mtime_ns(st) == t_state);
    /* a changed option is refused naming it */
    snprintf(args, sizeof args, "train --data %s %s --lr 0.2 --resume --out %s", data_dir, common,
             out);
    ck_assert_int_eq(kdcl(args, o, sizeof o, e, sizeof e), 2);
    ck_assert_ptr_nonnull(strstr(e, "the run's lr was '0.05', now '0.2'"));
    ck_assert(mtime_ns(st) == t_state);
    /* resumed: the uninterrupted run's tensors and metrics */
    snprintf(args, sizeof args, "train --data %s %s --state-every 1 --resume --out %s", data_dir,
             common, out);
    ck_assert_msg(kdcl(args, o, sizeof o, e, sizeof e) == 0, "%s", e);
    same_tensors(ref, out);
    char mref[4300], mout[4300];
    snprintf(mref, sizeof mref, "%s.metrics.jsonl", ref);
    snprintf(mout, sizeof mout, "%s.metrics.jsonl", out);
    same_metrics(mref, mout);
    ck_assert_int_eq(access(st, F_OK), -1); /* removed once the model is saved */
    /* --resume of a completed run does nothing */
    long long t_out = mtime_ns(out);
    ck_assert_msg(kdcl(args, o, sizeof o, e, sizeof e) == 0, "%s", e);
    ck_assert(mtime_ns(out) == t_out);
    /* --keep-state keeps it; it resumes to the same model with no epoch left */
    snprintf(args, sizeof args, "train --data %s %s --keep-state --out %s", data_dir, common, out);
    ck_assert_msg(kdcl(args, o, sizeof o, e, sizeof e) == 0, "%s", e);
    tu_ok(kdcl_train_state_info_read(st, &si), "kept state");
    ck_assert_uint_eq(si.epoch, 3);
    snprintf(args, sizeof args, "train --data %s %s --resume --out %s", data_dir, common, out);
    ck_assert_msg(kdcl(args, o, sizeof o, e, sizeof e) == 0, "%s", e);
    same_tensors(ref, out);
}
END_TEST

START_TEST(test_cli_specialists_resume_and_skip)
{
    char gen[4200], cl[4200], dir[4200], s0[4300], s0st[4300], args[32768], o[65536], e[8192];
    snprintf(gen, sizeof gen, "%s", tu_path("gen.safetensors"));
    snprintf(cl, sizeof cl, "%s", tu_path("clusters.json"));
    snprintf(dir, sizeof dir, "%s", tu_path("specs"));
    snprintf(args, sizeof args, "train --data %s --arch 64-8-3 --epochs 1 --batch 50 --quiet --out %s",
             data_dir, gen);
    ck_assert_msg(kdcl(args, o, sizeof o, e, sizeof e) == 0, "%s", e);
    snprintf(args, sizeof args, "specialists cluster --data %s --model %s --clusters 2 --out %s",
             data_dir, gen, cl);
    ck_assert_msg(kdcl(args, o, sizeof o, e, sizeof e) == 0, "%s", e);
    const char *sp = "--min-size 1 --epochs 1 --batch 50 --quiet";
    snprintf(args, sizeof args,
             "specialists train --data %s --model %s --clusters %s %s --keep-state --out %s",
             data_dir, gen, cl, sp, dir);
    ck_assert_msg(kdcl(args, o, sizeof o, e, sizeof e) == 0, "%s", e);
    snprintf(s0, sizeof s0, "%s/specialist_0.safetensors", dir);
    snprintf(s0st, sizeof s0st, "%s/specialist_0.state.safetensors", dir);
    ck_assert_int_eq(access(s0st, F_OK), 0);
    char copy[4300];
    snprintf(copy, sizeof copy, "%s/../spec0_copy.safetensors", dir);
    FILE *in = fopen(s0, "rb"), *outf = fopen(copy, "wb");
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, n, outf);
    fclose(in);
    fclose(outf);
    /* states left: a new run is refused */
    snprintf(args, sizeof args,
             "specialists train --data %s --model %s --clusters %s %s --out %s", data_dir, gen,
             cl, sp, dir);
    ck_assert_int_eq(kdcl(args, o, sizeof o, e, sizeof e), 2);
    ck_assert_ptr_nonnull(strstr(e, "holds an unfinished specialist"));
    /* --resume continues each (nothing left to train) and removes the states */
    snprintf(args, sizeof args,
             "specialists train --data %s --model %s --clusters %s %s --resume --out %s", data_dir,
             gen, cl, sp, dir);
    ck_assert_msg(kdcl(args, o, sizeof o, e, sizeof e) == 0, "%s", e);
    ck_assert_int_eq(access(s0st, F_OK), -1);
    same_tensors(copy, s0);
    /* --resume again: every specialist finished, none retrained */
    long long t0 = mtime_ns(s0);
    ck_assert_msg(kdcl(args, o, sizeof o, e, sizeof e) == 0, "%s", e);
    ck_assert(mtime_ns(s0) == t0);
    ck_assert_ptr_nonnull(strstr(o, "2 specialists finished before, 0 to continue, 0 to train"));
}
END_TEST


/* distill: a kept state resumes to the same student; other teachers, or a
 * train state, are refused */
START_TEST(test_cli_distill_resume_checks_teachers)
{
    char t1[4200], t2[4200], st[4200], out[4200], ref[4200], args[32768], o[65536], e[8192];
    snprintf(t1, sizeof t1, "%s", tu_path("teacher1.safetensors"));
    snprintf(t2, sizeof t2, "%s", tu_path("teacher2.safetensors"));
    snprintf(out, sizeof out, "%s", tu_path("student.safetensors"));
    snprintf(ref, sizeof ref, "%s", tu_path("student_ref.safetensors"));
    snprintf(st, sizeof st, "%s", tu_path("student.state.safetensors"));
    remove(st);
    for (int i = 0; i < 2; i++) {
        snprintf(args, sizeof args,
                 "train --data %s --arch 64-16-3 --epochs 1 --batch 50 --seed %d --quiet --out %s",
                 data_dir, i + 1, i ? t2 : t1);
        ck_assert_msg(kdcl(args, o, sizeof o, e, sizeof e) == 0, "%s", e);
    }
    const char *sa = "--arch 64-8-3 --epochs 2 --batch 50 --T 3 --alpha 0.2 --quiet";
    snprintf(args, sizeof args, "distill --data %s --teacher %s %s --keep-state --out %s",
             data_dir, t1, sa, ref);
    ck_assert_msg(kdcl(args, o, sizeof o, e, sizeof e) == 0, "%s", e);
    char refst[4200];
    snprintf(refst, sizeof refst, "%s", tu_path("student_ref.state.safetensors"));
    ck_assert_int_eq(rename(refst, st), 0);
    snprintf(args, sizeof args, "distill --data %s --teacher %s %s --resume --out %s", data_dir,
             t2, sa, out);
    ck_assert_int_eq(kdcl(args, o, sizeof o, e, sizeof e), 2);
    ck_assert_msg(strstr(e, "the run's teacher-files was") != NULL, "%s", e);
    snprintf(args, sizeof args, "distill --data %s --teacher %s %s --T 4 --resume --out %s",
             data_dir, t1, sa, out);
    ck_assert_int_eq(kdcl(args, o, sizeof o, e, sizeof e), 2);
    ck_assert_msg(strstr(e, "the run's distill_T was '3', now '4'") != NULL, "%s", e);
    snprintf(args, sizeof args, "train --data %s --arch 64-8-3 --epochs 2 --batch 50 --quiet "
                                "--resume --out %s",
             data_dir, out);
    ck_assert_int_eq(kdcl(args, o, sizeof o, e, sizeof e), 2);
    ck_assert_msg(strstr(e, "the run's command was 'distill', now 'train'") != NULL, "%s", e);
    snprintf(args, sizeof args, "distill --data %s --teacher %s %s --resume --out %s", data_dir,
             t1, sa, out);
    ck_assert_msg(kdcl(args, o, sizeof o, e, sizeof e) == 0, "%s", e);
    same_tensors(ref, out);
    ck_assert_int_eq(access(st, F_OK), -1);
}
END_TEST

static Suite *resume_suite(void)
{
    Suite *s = suite_create("resume");
    TCase *tc = tcase_create("library");
    tcase_add_unchecked_fixture(tc, tu_ctx_setup, tu_ctx_teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_resume_mlp_sgd_dropout_mid_epoch);
    tcase_add_test(tc, test_resume_cnn_adam_batchnorm_epoch_boundary);
    tcase_add_test(tc, test_resume_residual_nesterov_mid_epoch);
    tcase_add_test(tc, test_resume_refuses_changes);
    suite_add_tcase(s, tc);
    TCase *cli = tcase_create("cli");
    tcase_add_unchecked_fixture(cli, cli_setup, NULL);
    tcase_set_timeout(cli, 600);
    tcase_add_test(cli, test_cli_sigkill_mid_epoch_then_resume);
    tcase_add_test(cli, test_cli_specialists_resume_and_skip);
    tcase_add_test(cli, test_cli_distill_resume_checks_teachers);
    suite_add_tcase(s, cli);
    return s;
}

int main(void) { return tu_run_suite(resume_suite()) ? EXIT_FAILURE : EXIT_SUCCESS; }
