/* kdcl under mpirun (two ranks on this machine, tiny data): data-parallel
 * SGD gives the single-process weights (train and distill), ensemble members
 * and specialists are each trained exactly once by whichever rank is free,
 * a rank that fails ends the job with one line naming it and no checkpoint,
 * and a data-parallel run killed mid-way resumes to the uninterrupted run's
 * weights. Skipped (exit 77) when kdcl was built without MPI or mpirun is
 * missing. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kdcl/safetensors.h"
#include "kdcl/specialists.h"
#include "kdcl/train.h"
#include "kdcl/dist.h"
#include "testutil.h"

static char data_dir[1024], data6[1024];

/* mpirun as root in a container, shared memory between the two ranks */
static const char *mpirun(void)
{
    static char buf[4600];
    const char *m = getenv("KDCL_MPIRUN");
    snprintf(buf, sizeof buf,
             "env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader "
             "OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1 "
             "POCL_MAX_CPU_CU_COUNT=1 %s --oversubscribe",
             m && *m ? m : "mpirun");
    return buf;
}

/* Run a shell command line; stdout and stderr kept. */
static void sh(tu_run_result *r, const char *cmd)
{
    static char full[70000];
    char errf[1024];
    snprintf(errf, sizeof errf, "%s", tu_path("mpi_stderr.txt"));
    int w = snprintf(full, sizeof full, "%s 2>%s", cmd, errf);
    ck_assert_msg(w > 0 && (size_t)w < sizeof full, "command too long");
    FILE *p = popen(full, "r");
    ck_assert_ptr_nonnull(p);
    size_t n = fread(r->out, 1, sizeof r->out - 1, p);
    r->out[n] = '\0';
    while (fgetc(p) != EOF) {
    }
    int st = pclose(p);
    r->signaled = WIFSIGNALED(st);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    FILE *e = fopen(errf, "r");
    n = e ? fread(r->err, 1, sizeof r->err - 1, e) : 0;
    r->err[n] = '\0';
    if (e) fclose(e);
    r->err_lines = 0;
    for (char *c = r->err; *c; c++) r->err_lines += *c == '\n';
}

/* `kdcl ARGS` in one process, or on np ranks */
static void kdcl_np(tu_run_result *r, int np, const char *args)
{
    static char cmd[65536];
    if (np <= 1)
        snprintf(cmd, sizeof cmd, "%s %s", tu_exe(), args);
    else
        snprintf(cmd, sizeof cmd, "%s -np %d %s %s", mpirun(), np, tu_exe(), args);
    sh(r, cmd);
}

static void ok(const tu_run_result *r, const char *what)
{
    ck_assert_msg(r->status == 0, "%s exited %d:\n%s\n%s", what, r->status, r->out, r->err);
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

/* Lines of stderr written by kdcl (mpirun adds its own banner). */
static size_t kdcl_lines(const char *err)
{
    size_t n = 0;
    for (const char *p = err; *p;) {
        if (!strncmp(p, "kdcl ", 5)) n++;
        const char *e = strchr(p, '\n');
        if (!e) break;
        p = e + 1;
    }
    return n;
}

/* max over tensors of |a - b| / |a| (2-norms); every tensor present in both */
static double rel_diff(const char *a, const char *b)
{
    kdcl_st_file x, y;
    tu_ok(kdcl_st_read(a, &x), a);
    tu_ok(kdcl_st_read(b, &y), b);
    ck_assert_uint_eq(x.n_tensors, y.n_tensors);
    double worst = 0;
    for (size_t i = 0; i < x.n_tensors; i++) {
        const kdcl_st_tensor *t = kdcl_st_find(&y, x.tensors[i].name);
        ck_assert_msg(t != NULL, "%s: no tensor %s", b, x.tensors[i].name);
        ck_assert_uint_eq(t->nbytes, x.tensors[i].nbytes);
        if (t->dtype != KDCL_DT_F32) continue;
        const float *p = (const float *)x.tensors[i].data, *q = (const float *)t->data;
        double num = 0, den = 0;
        for (size_t k = 0; k < t->nbytes / 4; k++) {
            num += ((double)p[k] - q[k]) * ((double)p[k] - q[k]);
            den += (double)p[k] * p[k];
        }
        double d = den > 0 ? sqrt(num / den) : sqrt(num);
        if (d > worst) worst = d;
    }
    kdcl_st_free(&x);
    kdcl_st_free(&y);
    return worst;
}

static const char *meta(const char *path, const char *key, char *buf, size_t size)
{
    kdcl_st_file f;
    tu_ok(kdcl_st_read(path, &f), path);
    const char *v = kdcl_st_meta(&f, key);
    snprintf(buf, size, "%s", v ? v : "(none)");
    kdcl_st_free(&f);
    return buf;
}

/* Data-parallel on 2 ranks vs one process, the same global batch, no
 * dropout: after one epoch the tensors agree to float rounding. The bound:
 * each step's gradient is the same sum in another order (two halves of the
 * batch, scaled by 1/2 and added), a few units of roundoff of the sum
 * (u = 6e-8) per step; 12 steps of SGD with momentum do not amplify that
 * beyond ~1e-6 on this problem (measured: 1e-7); 1e-4 is the bound asked. */
static void dp_equivalence(const char *cmd, const char *arch, const char *extra)
{
    char a[1024], b[1024], args[16384], buf[256];
    tu_run_result *r = malloc(sizeof *r);
    snprintf(a, sizeof a, "%s", tu_path("dp_one.safetensors"));
    snprintf(b, sizeof b, "%s", tu_path("dp_two.safetensors"));
    remove(a);
    remove(b);
    snprintf(args, sizeof args, "%s --data %s --arch '%s' --epochs 1 --batch 50 %s --out %s", cmd,
             data_dir, arch, extra, a);
    kdcl_np(r, 1, args);
    ok(r, "one process");
    snprintf(args, sizeof args, "%s --data %s --arch '%s' --epochs 1 --batch 50 %s --out %s", cmd,
             data_dir, arch, extra, b);
    kdcl_np(r, 2, args);
    ok(r, "two ranks");
    ck_assert_msg(strstr(r->out, "2 ranks, data-parallel SGD, global batch 50 (25 per rank)"),
                  "%s", r->out);
    ck_assert_uint_eq(count(r->out, "test errors:"), 1); /* rank 0 speaks for the job */
    ck_assert_ptr_null(strstr(r->out, "parameters differed")); /* bit-identical updates */
    double d = rel_diff(a, b);
    printf("data-parallel %s %s: largest relative difference of a tensor %.3g\n", cmd, arch, d);
    ck_assert_msg(d <= 1e-4, "%s %s: relative difference %g", cmd, arch, d);
    char e1[64], e2[64];
    ck_assert_str_eq(meta(a, "test_errors", e1, sizeof e1), meta(b, "test_errors", e2, sizeof e2));
    ck_assert_str_eq(meta(b, "kdcl.world_size", buf, sizeof buf), "2");
    ck_assert_str_eq(meta(a, "kdcl.world_size", buf, sizeof buf), "1");
    char mf[1100];
    snprintf(mf, sizeof mf, "%s.metrics.jsonl", b);
    FILE *f = fopen(mf, "r");
    ck_assert_ptr_nonnull(f);
    char line[4096] = "";
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    fclose(f);
    ck_assert_msg(strstr(line, "\"world_size\": 2, \"devices\": [\""), "%s", line);
    free(r);
}

START_TEST(test_dp_train_mlp_equals_one_process)
{
    dp_equivalence("train", "64-32-3", "");
}
END_TEST

START_TEST(test_dp_train_cnn_equals_one_process)
{
    dp_equivalence("train", "conv(4,3,p=1),relu,maxpool(2),flatten,linear(K)", "--optimizer adam");
}
END_TEST

START_TEST(test_dp_distill_equals_one_process)
{
    /* a teacher, then a student distilled from it: the soft targets are
     * computed in two shares and gathered */
    char t[1024], args[16384];
    tu_run_result *r = malloc(sizeof *r);
    snprintf(t, sizeof t, "%s", tu_path("dp_teacher.safetensors"));
    snprintf(args, sizeof args, "train --data %s --arch 64-48-3 --epochs 2 --quiet --out %s",
             data_dir, t);
    kdcl_np(r, 1, args);
    ok(r, "teacher");
    char extra[1100];
    snprintf(extra, sizeof extra, "--teacher %s --T 4 --alpha 0.3", t);
    dp_equivalence("distill", "64-16-3", extra);
    free(r);
}
END_TEST

START_TEST(test_members_each_once)
{
    char dir[1024], args[16384], p[1100], ref[1200], buf[64];
    tu_run_result *r = malloc(sizeof *r);
    snprintf(dir, sizeof dir, "%s", tu_path("ens"));
    snprintf(args, sizeof args, "rm -rf %s", dir);
    ck_assert_int_eq(system(args), 0);
    snprintf(args, sizeof args,
             "train --data %s --arch 64-32-3 --epochs 2 --batch 20 --members 4 --seed 7 --out %s",
             data_dir, dir);
    kdcl_np(r, 2, args);
    ok(r, "ensemble on two ranks");
    for (int i = 0; i < 4; i++) {
        char needle[64];
        snprintf(needle, sizeof needle, "member %d epoch   2/2", i);
        ck_assert_msg(count(r->out, needle) == 1, "'%s' %zu times:\n%s", needle,
                      count(r->out, needle), r->out);
        snprintf(needle, sizeof needle, "\n| %d | %d | ", i, 7 + i);
        ck_assert_ptr_nonnull(strstr(r->out, "| member |"));
        ck_assert_msg(count(strstr(r->out, "| member |"), needle) == 1, "row of member %d:\n%s", i, r->out);
        snprintf(p, sizeof p, "%s/member_%d.safetensors", dir, i);
        char seed[16];
        snprintf(seed, sizeof seed, "%d", 7 + i);
        ck_assert_str_eq(meta(p, "seed", buf, sizeof buf), seed);
        snprintf(ref, sizeof ref, "%s.metrics.jsonl", p);
        ck_assert_int_eq(access(ref, F_OK), 0);
    }
    ck_assert_ptr_nonnull(strstr(r->out, "4 members in"));
    ck_assert_ptr_nonnull(strstr(r->out, "on 2 ranks"));
    /* a member is the model `kdcl train --seed S` makes, wherever it ran */
    for (int i = 0; i < 4; i += 3) {
        snprintf(ref, sizeof ref, "%s", tu_path("ens_ref.safetensors"));
        snprintf(args, sizeof args,
                 "train --data %s --arch 64-32-3 --epochs 2 --batch 20 --seed %d --quiet --out %s",
                 data_dir, 7 + i, ref);
        kdcl_np(r, 1, args);
        ok(r, "reference member");
        snprintf(p, sizeof p, "%s/member_%d.safetensors", dir, i);
        ck_assert_msg(rel_diff(ref, p) == 0, "member %d differs from a plain run", i);
    }
    /* without MPI: the members in sequence */
    snprintf(args, sizeof args,
             "train --data %s --arch 64-32-3 --epochs 1 --batch 20 --members 2 --quiet --out %s1",
             data_dir, dir);
    kdcl_np(r, 1, args);
    ok(r, "ensemble in one process");
    ck_assert_ptr_nonnull(strstr(r->out, "2 members in"));
    ck_assert_ptr_nonnull(strstr(r->out, "on 1 rank "));
    free(r);
}
END_TEST

START_TEST(test_specialists_each_once)
{
    char gen[1024], cl[1024], dir[1024], args[16384];
    tu_run_result *r = malloc(sizeof *r);
    snprintf(gen, sizeof gen, "%s", tu_path("gen6.safetensors"));
    snprintf(cl, sizeof cl, "%s", tu_path("clusters6.json"));
    snprintf(dir, sizeof dir, "%s", tu_path("spec6"));
    snprintf(args, sizeof args, "rm -rf %s", dir);
    ck_assert_int_eq(system(args), 0);
    snprintf(args, sizeof args, "train --data %s --arch 64-32-6 --epochs 2 --quiet --out %s",
             data6, gen);
    kdcl_np(r, 1, args);
    ok(r, "generalist");
    snprintf(args, sizeof args,
             "specialists cluster --data %s --model %s --clusters 4 --overlap 2 --out %s", data6,
             gen, cl);
    kdcl_np(r, 1, args);
    ok(r, "clusters");
    snprintf(args, sizeof args,
             "specialists train --data %s --model %s --clusters %s --epochs 1 --batch 20 --jobs 2 "
             "--out %s",
             data6, gen, cl, dir);
    kdcl_np(r, 2, args);
    ok(r, "specialists on two ranks, two workers each");
    ck_assert_ptr_nonnull(strstr(r->out, "2 at a time per rank"));
    /* the jobs: every cluster of 2..5 classes, each trained exactly once */
    kdcl_clusters c;
    tu_ok(kdcl_clusters_load_json(cl, 0, &c), cl);
    size_t jobs = 0;
    for (size_t m = 0; m < c.M; m++) {
        size_t n = c.off[m + 1] - c.off[m];
        char needle[64], p[1100];
        snprintf(needle, sizeof needle, "specialist %zu epoch   1/1", m);
        snprintf(p, sizeof p, "%s/specialist_%zu.safetensors", dir, m);
        if (n < 2 || n >= 6) {
            ck_assert_uint_eq(count(r->out, needle), 0);
            ck_assert_int_eq(access(p, F_OK), -1);
            continue;
        }
        jobs++;
        ck_assert_msg(count(r->out, needle) == 1, "'%s' %zu times:\n%s", needle,
                      count(r->out, needle), r->out);
        snprintf(needle, sizeof needle, "\n| %zu | ", m);
        const char *table = strstr(r->out, "| cluster |");
        ck_assert_ptr_nonnull(table);
        ck_assert_msg(count(table, needle) == 1, "row of cluster %zu:\n%s", m, r->out);
        ck_assert_int_eq(access(p, F_OK), 0);
    }
    kdcl_clusters_free(&c);
    ck_assert_uint_ge(jobs, 2);
    char line[128];
    snprintf(line, sizeof line, "%zu specialists in", jobs);
    ck_assert_msg(strstr(r->out, line), "%s", r->out);
    free(r);
}
END_TEST

START_TEST(test_failing_rank_at_setup)
{
    char out[1024], args[16384];
    tu_run_result *r = malloc(sizeof *r);
    snprintf(out, sizeof out, "%s", tu_path("fail_setup.safetensors"));
    remove(out);
    snprintf(args, sizeof args,
             "train --data %s --arch 64-32-3 --epochs 1 --devices cpu,no-such-device --out %s",
             data_dir, out);
    kdcl_np(r, 2, args);
    ck_assert_int_ne(r->status, 0);
    ck_assert_msg(kdcl_lines(r->err) == 1, "%s", r->err);
    ck_assert_ptr_nonnull(strstr(r->err, "no-such-device"));
    ck_assert_ptr_nonnull(strstr(r->err, "[rank 1 of 2 on "));
    ck_assert_int_eq(access(out, F_OK), -1);
    /* ranks started with other arguments are refused before any training */
    static char cmd[65536];
    snprintf(cmd, sizeof cmd,
             "%s -np 1 %s train --data %s --arch 64-32-3 --epochs 1 --out %s : -np 1 %s train "
             "--data %s --arch 64-32-3 --epochs 2 --out %s",
             mpirun(), tu_exe(), data_dir, out, tu_exe(), data_dir, out);
    sh(r, cmd);
    ck_assert_int_ne(r->status, 0);
    ck_assert_msg(kdcl_lines(r->err) == 1, "%s", r->err);
    ck_assert_ptr_nonnull(strstr(r->err, "rank 1 was started with other arguments than rank 0"));
    ck_assert_int_eq(access(out, F_OK), -1);
    /* a command that runs in one process */
    kdcl_np(r, 2, "eval --model nothing.safetensors");
    ck_assert_int_eq(r->status, 2);
    ck_assert_msg(kdcl_lines(r->err) == 1, "%s", r->err);
    ck_assert_ptr_nonnull(strstr(r->err, "runs in one process, but mpirun started 2 ranks"));
    free(r);
}
END_TEST

START_TEST(test_failing_rank_mid_run_aborts_the_job)
{
    /* rank 1 reads the kernels from a directory without the optimiser's: it
     * fails at its first update, after the set-up, while rank 0 waits in the
     * gradients' allreduce; MPI_Abort ends both */
    char out[1024], kdir[1024], args[16384];
    static char cmd[65536];
    tu_run_result *r = malloc(sizeof *r);
    snprintf(out, sizeof out, "%s", tu_path("fail_mid.safetensors"));
    snprintf(kdir, sizeof kdir, "%s", tu_path("kernels_no_optim"));
    remove(out);
    snprintf(args, sizeof args, "rm -rf %s && mkdir -p %s && cp %s/cl/*.cl %s/cl/*.clh %s && rm %s/optim.cl",
             kdir, kdir, getenv("KDCL_SOURCE_ROOT"), getenv("KDCL_SOURCE_ROOT"), kdir, kdir);
    ck_assert_int_eq(system(args), 0);
    snprintf(args, sizeof args, "train --data %s --arch 64-32-3 --epochs 2 --batch 20 --out %s",
             data_dir, out);
    snprintf(cmd, sizeof cmd, "%s -np 1 %s %s : -np 1 -x KDCL_KERNEL_DIR=%s %s %s", mpirun(),
             tu_exe(), args, kdir, tu_exe(), args);
    sh(r, cmd);
    ck_assert_int_ne(r->status, 0);
    ck_assert_msg(kdcl_lines(r->err) == 1, "%s", r->err);
    ck_assert_ptr_nonnull(strstr(r->err, "optim.cl"));
    ck_assert_ptr_nonnull(strstr(r->err, "[rank 1 of 2 on "));
    ck_assert_ptr_nonnull(strstr(r->err, "ending the job]"));
    ck_assert_int_eq(access(out, F_OK), -1); /* no checkpoint */
    /* the divergence of every rank at once is reported once, by rank 0 */
    snprintf(args, sizeof args,
             "train --data %s --arch 64-32-3 --epochs 2 --batch 20 --lr 1e30 --out %s", data_dir,
             out);
    kdcl_np(r, 2, args);
    ck_assert_int_ne(r->status, 0);
    ck_assert_msg(kdcl_lines(r->err) == 1, "%s", r->err);
    ck_assert_ptr_nonnull(strstr(r->err, "training diverged"));
    ck_assert_ptr_nonnull(strstr(r->err, "[rank 0 of 2 on "));
    ck_assert_int_eq(access(out, F_OK), -1);
    free(r);
}
END_TEST

START_TEST(test_ranks_rounding_differently_are_resynchronised)
{
    /* rank 1's update kernel rounds differently (as a GPU's fused multiply-add
     * against a CPU's): after each epoch rank 0's parameters are copied to
     * rank 1, with a note, and the job completes */
    char out[1024], kdir[1024], args[16384];
    static char cmd[65536];
    tu_run_result *r = malloc(sizeof *r);
    snprintf(out, sizeof out, "%s", tu_path("resync.safetensors"));
    snprintf(kdir, sizeof kdir, "%s", tu_path("kernels_other_rounding"));
    remove(out);
    snprintf(args, sizeof args,
             "rm -rf %s && mkdir -p %s && cp %s/cl/*.cl %s/cl/*.clh %s && "
             "sed -i 's/w\\[i\\] = wi + vi;/w[i] = wi + vi * 1.000001f;/' %s/optim.cl && "
             "grep -q 'vi [*] 1.000001f' %s/optim.cl",
             kdir, kdir, getenv("KDCL_SOURCE_ROOT"), getenv("KDCL_SOURCE_ROOT"), kdir, kdir, kdir);
    ck_assert_int_eq(system(args), 0);
    snprintf(args, sizeof args, "train --data %s --arch 64-32-3 --epochs 2 --batch 20 --out %s",
             data_dir, out);
    snprintf(cmd, sizeof cmd, "%s -np 1 %s %s : -np 1 -x KDCL_KERNEL_DIR=%s %s %s", mpirun(),
             tu_exe(), args, kdir, tu_exe(), args);
    sh(r, cmd);
    ok(r, "ranks rounding differently");
    ck_assert_msg(count(r->out, "note: after epoch ") == 2, "%s", r->out);
    ck_assert_ptr_nonnull(strstr(r->out, "the ranks' parameters differed (rank 1 from rank 0's by "));
    ck_assert_int_eq(access(out, F_OK), 0);
    free(r);
}
END_TEST

START_TEST(test_dp_killed_then_resumed)
{
    char ref[1024], out[1024], st[1024], args[16384];
    static char cmd[65536];
    tu_run_result *r = malloc(sizeof *r);
    snprintf(ref, sizeof ref, "%s", tu_path("dp_res_ref.safetensors"));
    snprintf(out, sizeof out, "%s", tu_path("dp_res.safetensors"));
    snprintf(st, sizeof st, "%s", tu_path("dp_res.state.safetensors"));
    remove(ref);
    remove(out);
    remove(st);
    /* long enough (1500 steps) to outlast mpirun's second or so of ending its ranks */
    const char *common = "--arch 64-32-3 --epochs 10 --batch 4 --quiet";
    snprintf(args, sizeof args, "train --data %s %s --out %s", data_dir, common, ref);
    kdcl_np(r, 2, args);
    ok(r, "uninterrupted");
    /* the interrupted job: mpirun ended (SIGTERM: it ends its ranks) once
     * the state shows progress */
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        snprintf(cmd, sizeof cmd, "exec %s -np 2 %s train --data %s %s --state-every 1 --out %s",
                 mpirun(), tu_exe(), data_dir, common, out);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    int killed = 0;
    for (int i = 0; i < 6000 && !killed; i++) { /* up to 60 s */
        kdcl_train_state_info si;
        if (access(st, F_OK) == 0 && kdcl_train_state_info_read(st, &si) == KDCL_OK &&
            (si.epoch > 0 || si.step > 20)) {
            kill(pid, SIGTERM);
            killed = 1;
        }
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    int wst = 0;
    waitpid(pid, &wst, 0);
    ck_assert_msg(killed, "the job finished before it could be stopped");
    ck_assert_int_eq(access(out, F_OK), -1);
    kdcl_train_state_info si;
    tu_ok(kdcl_train_state_info_read(st, &si), "state of the stopped job");
    ck_assert_uint_lt(si.epoch, 10);
    /* resumed on two ranks: rank 0 wrote the state, both read it */
    snprintf(args, sizeof args, "train --data %s %s --state-every 1 --resume --out %s", data_dir,
             common, out);
    kdcl_np(r, 2, args);
    ok(r, "resumed");
    ck_assert_msg(rel_diff(ref, out) == 0, "the resumed job's tensors differ from the "
                                           "uninterrupted job's");
    ck_assert_int_eq(access(st, F_OK), -1);
    free(r);
}
END_TEST

/* 8x8 images, 6 classes: which column pair is bright (3) times whether the
 * top or bottom half is brighter (2) */
static void write_idx6(const char *dir, const char *prefix, size_t n, uint64_t seed)
{
    size_t isz = 16 + n * 64, lsz = 8 + n;
    unsigned char *img = malloc(isz), *lab = malloc(lsz);
    ck_assert(img && lab);
    const unsigned char ih[16] = {0, 0, 8, 3, (unsigned char)(n >> 24), (unsigned char)(n >> 16),
                                  (unsigned char)(n >> 8), (unsigned char)n, 0, 0, 0, 8, 0, 0, 0, 8};
    const unsigned char lh[8] = {0, 0, 8, 1, (unsigned char)(n >> 24), (unsigned char)(n >> 16),
                                 (unsigned char)(n >> 8), (unsigned char)n};
    memcpy(img, ih, 16);
    memcpy(lab, lh, 8);
    uint64_t x = seed * 6364136223846793005ull + 1442695040888963407ull;
    for (size_t i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        int c = (int)((x >> 33) % 6);
        lab[8 + i] = (unsigned char)c;
        for (int p = 0; p < 64; p++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            int v = (int)((x >> 33) % 90);
            if ((p % 8) / 3 == c % 3) v += 100;
            if ((p / 32) == c / 3) v += 60;
            img[16 + i * 64 + (size_t)p] = (unsigned char)v;
        }
    }
    char p[1100];
    snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte", dir, prefix);
    ck_assert_int_eq(tu_write_file(p, img, isz), 0);
    snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte", dir, prefix);
    ck_assert_int_eq(tu_write_file(p, lab, lsz), 0);
    free(img);
    free(lab);
}

static void setup(void)
{
    snprintf(data_dir, sizeof data_dir, "%s", tu_path("mpi_data"));
    mkdir(data_dir, 0777);
    tu_write_idx_split(data_dir, "train", 600, 11);
    tu_write_idx_split(data_dir, "t10k", 200, 12);
    snprintf(data6, sizeof data6, "%s", tu_path("mpi_data6"));
    mkdir(data6, 0777);
    write_idx6(data6, "train", 900, 21);
    write_idx6(data6, "t10k", 300, 22);
}

int main(void)
{
    if (!kdcl_dist_compiled()) {
        printf("kdcl was built without MPI (meson -Dmpi): skipped\n");
        return 77;
    }
    const char *m = getenv("KDCL_MPIRUN");
    if (!m || !*m || access(m, X_OK) != 0) {
        printf("mpirun not found (KDCL_MPIRUN): skipped\n");
        return 77;
    }
    Suite *s = suite_create("mpi");
    TCase *tc = tcase_create("mpirun -np 2");
    tcase_set_timeout(tc, 600);
    tcase_add_unchecked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_dp_train_mlp_equals_one_process);
    tcase_add_test(tc, test_dp_train_cnn_equals_one_process);
    tcase_add_test(tc, test_dp_distill_equals_one_process);
    tcase_add_test(tc, test_members_each_once);
    tcase_add_test(tc, test_specialists_each_once);
    tcase_add_test(tc, test_failing_rank_at_setup);
    tcase_add_test(tc, test_failing_rank_mid_run_aborts_the_job);
    tcase_add_test(tc, test_ranks_rounding_differently_are_resynchronised);
    tcase_add_test(tc, test_dp_killed_then_resumed);
    suite_add_tcase(s, tc);
    return tu_run_suite(s) ? 1 : 0;
}
