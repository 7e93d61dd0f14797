/* kdcl distill: train a student on the soft targets of a teacher or an
 * ensemble (paper sections 2-3), with transfer-set control. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fit.h"
#include "kdcl/distill.h"

typedef struct {
    char *teacher_list;
    const char *paths[KDCL_MAX_MEMBERS];
    size_t n_teachers;
    kdcl_ens_mode ens;
    kdcl_distill_opts d;
    kdcl_ensemble *e;
    int loaded;
    cli_fit *f;
} distill_args;

static int on_ctx(void *user, kdcl_ctx *ctx, const kdcl_dataset *train)
{
    distill_args *a = user;
    size_t maxb = a->f->o.batch > 1000 ? a->f->o.batch : 1000;
    kdcl_status s = kdcl_ensemble_load_fit(ctx, a->paths, a->n_teachers, maxb, a->f->o.batch,
                                           a->ens, &a->e);
    if (s) return cli_fail("distill", s);
    a->loaded = 1;
    if (kdcl_ensemble_dim(a->e) != train->dim || kdcl_ensemble_classes(a->e) < train->n_classes)
        return cli_fail("distill", kdcl_set_error(KDCL_ERR_INVALID_ARG,
                                                  "the teachers take %zu inputs and have %zu "
                                                  "classes; the data has %zu inputs and %zu "
                                                  "classes",
                                                  kdcl_ensemble_dim(a->e), kdcl_ensemble_classes(a->e), train->dim,
                                                  train->n_classes));
    if (!a->f->quiet) {
        printf("kdcl distill: %zu teacher(s), %s averaging, T = %g, alpha = %g, loss %s\n",
               a->n_teachers, a->ens == KDCL_ENS_PROB ? "probability" : "logit",
               (double)a->d.T, (double)a->d.alpha, a->d.mode == KDCL_KD_KL ? "kl" : "logits");
    }
    return 0;
}

static void cleanup(void *user)
{
    distill_args *a = user;
    if (a->loaded) kdcl_ensemble_free(a->e);
    a->loaded = 0;
}

static kdcl_status distill_fn(void *user, kdcl_ctx *ctx, kdcl_model *m, const kdcl_dataset *fit,
                              const kdcl_train_opts *o, kdcl_epoch_stats *last)
{
    (void)ctx;
    distill_args *a = user;
    kdcl_targets used;
    kdcl_status s = kdcl_distill(m, a->e, fit, o, &a->d, last, &used);
    if (!s && !a->f->quiet)
        printf("soft targets: %s\n", used == KDCL_TARGETS_CACHED
                                         ? "cached once for the transfer set"
                                         : "computed per batch on the device");
    return s;
}

int cmd_distill(int argc, char **argv)
{
    static const struct option opts[] = {CLI_FIT_OPTIONS,
                                         {"teacher", required_argument, 0, 't'},
                                         {"T", required_argument, 0, 'T'},
                                         {"alpha", required_argument, 0, 'a'},
                                         {"loss", required_argument, 0, 'l'},
                                         {"ensemble", required_argument, 0, 'e'},
                                         {"targets", required_argument, 0, 'g'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    cli_fit f;
    cli_fit_init(&f, "distill");
    distill_args a;
    memset(&a, 0, sizeof a);
    a.f = &f;
    a.d.T = 20.0f;
    a.d.alpha = 0.1f;
    a.d.mode = KDCL_KD_KL;
    a.d.targets = KDCL_TARGETS_AUTO;
    a.ens = KDCL_ENS_PROB;
    int c, rc = 0;
    double d;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            printf(
                "usage: kdcl distill --teacher A.safetensors[,B...] --out STUDENT.safetensors "
                "[options]\n\n"
                "Trains a student on the soft targets of a teacher or an ensemble:\n"
                "  L = (1-alpha) T^2 KL(p_T || q_T) + alpha CE(q_1, y)   (--loss kl)\n"
                "  L = (1-alpha) 1/2 |z - v|^2 + alpha CE(q_1, y)        (--loss logits)\n"
                "The student is saved as a normal checkpoint, used at T = 1.\n\n"
                "  --teacher LIST      comma-separated checkpoints (same inputs and classes)\n"
                "  --T X               temperature (default 20)\n"
                "  --alpha X           weight of the hard-label term (default 0.1)\n"
                "  --loss kl|logits    (default kl)\n"
                "  --ensemble prob|logit  average the members' probabilities at T (default) or\n"
                "                      their logits (a geometric mean: a different model)\n"
                "  --targets auto|cached|batch  soft targets computed once for the transfer\n"
                "                      set, or per batch on the device (auto: cached unless\n"
                "                      --jitter, --crop or --flip is given)\n"
                "\n");
            cli_fit_help();
            return 0;
        case 't': {
            free(a.teacher_list);
            a.teacher_list = strdup(optarg);
            a.n_teachers = 0;
            char *save = NULL;
            for (char *t = strtok_r(a.teacher_list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                if (a.n_teachers >= KDCL_MAX_MEMBERS) {
                    rc = cli_usage_error("distill", "at most %d teachers", KDCL_MAX_MEMBERS);
                    goto out;
                }
                a.paths[a.n_teachers++] = t;
            }
            break;
        }
        case 'T':
            if (kdcl_parse_double(optarg, &d) || d <= 0 || d > 1000) {
                rc = cli_usage_error("distill", "--T needs a temperature in (0, 1000], got '%s'", optarg);
                goto out;
            }
            a.d.T = (float)d;
            break;
        case 'a':
            if (kdcl_parse_double(optarg, &d) || d < 0 || d > 1) {
                rc = cli_usage_error("distill", "--alpha needs a number in [0, 1], got '%s'", optarg);
                goto out;
            }
            a.d.alpha = (float)d;
            break;
        case 'l':
            if (!strcmp(optarg, "kl")) a.d.mode = KDCL_KD_KL;
            else if (!strcmp(optarg, "logits")) a.d.mode = KDCL_KD_LOGITS;
            else {
                rc = cli_usage_error("distill", "--loss must be kl or logits, got '%s'", optarg);
                goto out;
            }
            break;
        case 'e':
            if (!strcmp(optarg, "prob")) a.ens = KDCL_ENS_PROB;
            else if (!strcmp(optarg, "logit")) a.ens = KDCL_ENS_LOGIT;
            else {
                rc = cli_usage_error("distill", "--ensemble must be prob or logit, got '%s'", optarg);
                goto out;
            }
            break;
        case 'g':
            if (!strcmp(optarg, "auto")) a.d.targets = KDCL_TARGETS_AUTO;
            else if (!strcmp(optarg, "cached")) a.d.targets = KDCL_TARGETS_CACHED;
            else if (!strcmp(optarg, "batch")) a.d.targets = KDCL_TARGETS_BATCH;
            else {
                rc = cli_usage_error("distill", "--targets must be auto, cached or batch, got '%s'", optarg);
                goto out;
            }
            break;
        default:
            if ((rc = cli_fit_option(&f, c, optarg)) == 1)
                rc = cli_usage_error("distill", "unknown option or missing value: %s", argv[optind - 1]);
            if (rc) goto out;
        }
    }
    if (optind < argc) {
        rc = cli_usage_error("distill", "unexpected argument '%s'", argv[optind]);
        goto out;
    }
    if (!a.n_teachers) {
        rc = cli_usage_error("distill", "--teacher is required");
        goto out;
    }
    if (a.d.mode == KDCL_KD_LOGITS && a.ens == KDCL_ENS_PROB && a.n_teachers > 1 && !f.quiet)
        printf("note: logit matching averages the teachers' logits\n");
    cli_fit_meta(&f, "teachers", "%zu", a.n_teachers);
    cli_fit_meta(&f, "distill_T", "%g", (double)a.d.T);
    cli_fit_meta(&f, "distill_alpha", "%g", (double)a.d.alpha);
    cli_fit_meta(&f, "distill_loss", "%s", a.d.mode == KDCL_KD_KL ? "kl" : "logits");
    cli_fit_meta(&f, "ensemble", "%s", a.ens == KDCL_ENS_PROB ? "prob" : "logit");
    cli_fit_meta(&f, "distill_targets", "%s",
                 a.d.targets == KDCL_TARGETS_AUTO ? "auto"
                 : a.d.targets == KDCL_TARGETS_CACHED ? "cached" : "batch");
    uint64_t th = KDCL_HASH64_INIT;
    for (size_t i = 0; i < a.n_teachers; i++) {
        uint64_t h = 0;
        if (kdcl_file_hash(a.paths[i], &h)) h = 0; /* the teachers' loader reports it */
        th = kdcl_hash64(th, &h, sizeof h);
    }
    cli_fit_state(&f, "teacher-files", "%zu, hash %016llx", a.n_teachers, (unsigned long long)th);
    f.cleanup = cleanup;
    rc = cli_fit_run(&f, on_ctx, distill_fn, &a);
out:
    free(a.teacher_list);
    return rc;
}
