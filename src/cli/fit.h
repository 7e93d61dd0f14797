/* What `kdcl train` and `kdcl distill` share: the training options, loading
 * the data (with a validation split), the model, the final test evaluation
 * and the checkpoint with its metadata. */
#ifndef KDCL_CLI_FIT_H
#define KDCL_CLI_FIT_H

#include <getopt.h>

#include "cli.h"
#include "kdcl/data.h"
#include "kdcl/train.h"

typedef struct cli_fit {
    const char *cmd;
    const char *data, *arch_s, *out, *metrics, *device;
    const char *devices; /* --devices: by node-local rank (mpirun) */
    size_t members;      /* --members M: an ensemble (train) */
    size_t val;
    int quiet;
    /* transfer-set control, applied to the training split after --val */
    size_t omit[64], only[64];
    size_t n_omit, n_only;
    double fraction;
    float drop_in, drop_hidden; /* --dropout for an "A-B-...-K" architecture */
    int normalize;              /* --normalize: per-channel mean/std of the training split */
    kdcl_train_opts o;
    /* extra checkpoint metadata added by the command (up to 16 pairs) */
    const char *meta_k[16];
    char meta_v[16][256];
    size_t n_meta;
    /* resumable training: --resume, --keep-state, --state-every; options a
     * resumed run must share besides the training options (up to 16 pairs) */
    int resume, keep_state;
    size_t state_every;
    const char *state_k[16];
    char state_v[16][256];
    size_t n_state;
    /* called before the context is destroyed (frees what on_ctx loaded) */
    void (*cleanup)(void *user);
} cli_fit;

/* getopt_long entries for the shared options; values are 1000 + index. */
#define CLI_FIT_OPTIONS                                                                       \
    {"data", required_argument, 0, 1000}, {"arch", required_argument, 0, 1001},               \
        {"epochs", required_argument, 0, 1002}, {"batch", required_argument, 0, 1003},        \
        {"lr", required_argument, 0, 1004}, {"lr-decay", required_argument, 0, 1005},         \
        {"momentum", required_argument, 0, 1006}, {"weight-decay", required_argument, 0, 1007}, \
        {"dropout", required_argument, 0, 1008}, {"max-norm", required_argument, 0, 1009},    \
        {"jitter", required_argument, 0, 1010}, {"val", required_argument, 0, 1011},          \
        {"seed", required_argument, 0, 1012}, {"out", required_argument, 0, 1013},            \
        {"metrics", required_argument, 0, 1014}, {"device", required_argument, 0, 1015},      \
        {"quiet", no_argument, 0, 1016}, {"omit-classes", required_argument, 0, 1017},       \
        {"only-classes", required_argument, 0, 1018}, {"fraction", required_argument, 0, 1019}, \
        {"optimizer", required_argument, 0, 1020}, {"schedule", required_argument, 0, 1021},  \
        {"warmup", required_argument, 0, 1022}, {"flip", no_argument, 0, 1023},                \
        {"normalize", no_argument, 0, 1024}, {"crop", required_argument, 0, 1025},           \
        {"resume", no_argument, 0, 1026}, {"keep-state", no_argument, 0, 1027},                \
        {"state-every", required_argument, 0, 1028}, {"devices", required_argument, 0, 1029}, \
        CLI_SKIP_BAD_IMAGES_OPTION

#define CLI_FIT_HELP_TEXT                                                                          \
    "  --data DIR          dataset directory (IDX/MNIST layout, CIFAR binary or image\n"          \
    "                      folders DIR/<split>/<class>/<image> of PNG, JPEG or BMP files,\n"   \
    "                      at most 16384 pixels a side and 64 MiB decoded; default\n"          \
    "                      $KDCL_DATA or " CLI_DEFAULT_DATA ")\n"                                \
    CLI_SKIP_BAD_IMAGES_HELP                                                                       \
    "  --arch SPEC         the network (default <inputs>-800-800-<classes>):\n"                    \
    "                      A-B-...-K   Linear layers with ReLU between (A = C*H*W inputs)\n"     \
    "                      a layer list, e.g. conv(32,5,p=2),relu,maxpool(2),flatten,linear(K)\n" \
    "                        conv(OUT,K[,s=S][,p=P][,bias=0])  K or KHxKW; s, p likewise\n"    \
    "                        maxpool(K[,s=S][,p=P])  avgpool(K[,s=S][,p=P])  gap\n"             \
    "                        linear(OUT[,bias=0])  relu  dropout(P)  flatten  bn[(eps=E,m=M)]\n" \
    "                        res(BODY[;SHORTCUT])  residual block (no SHORTCUT: identity)\n"   \
    "                        OUT may be K: the number of classes\n"                            \
    "                      a preset: lenet5, cnn-small, cnn-medium, resnet20\n"                             \
    "                      @FILE.json: a layer list in the checkpoints' kdcl.model format\n"    \
    "  --epochs N          (default 10)\n"                                                         \
    "  --batch B           (default 128)\n"                                                        \
    "  --lr X              initial learning rate (default 0.05)\n"                                 \
    "  --lr-decay X        learning rate multiplied by X after each epoch (default 1)\n"           \
    "  --schedule S        exp (--lr-decay per epoch, default), step:E[:G] (x G every E\n"        \
    "                      epochs, G default 0.1), cosine[:LRMIN] (to LRMIN at the end)\n"        \
    "  --warmup E          linear learning-rate warm-up over the first E epochs\n"                \
    "  --optimizer O       sgd (default), nesterov, adam, adamw (Adam: betas 0.9, 0.999)\n"       \
    "  --momentum A[,B[,E]]  momentum ramp from A to B over E epochs (default 0.5,0.9,5)\n"         \
    "  --weight-decay X    L2 weight decay (default 0)\n"                                          \
    "  --dropout P[,Q]     input dropout P, hidden dropout Q (default 0,0; one value: hidden)\n"   \
    "                      (A-B-...-K architectures; layer lists use dropout(P) layers)\n"        \
    "  --max-norm C        max-norm of each unit's incoming weights (default off)\n"               \
    "  --jitter N          random translations of up to N pixels (default 0)\n"                    \
    "  --crop P            random crops with zero padding P (CIFAR style; same as --jitter P)\n"  \
    "  --flip              random horizontal flips\n"                                            \
    "  --normalize         per-channel mean/std of the training images as the input transform\n" \
    "                      (default: pixel / 255)\n"                                            \
    "  --val N             hold out N training examples for validation (default 0)\n"              \
    "  --seed S            drives init, shuffling, dropout and jitter (default 1)\n"               \
    "  --metrics FILE      JSONL metrics, one line per epoch (default MODEL.metrics.jsonl)\n"      \
    "  --device D          OpenCL device: P:D, cpu, gpu or a name substring\n"                     \
    "  --devices LIST      devices by node-local rank under mpirun (comma-separated, as\n"      \
    "                      --device; default $KDCL_DEVICES, else --device for every rank)\n"  \
    "  --quiet             no per-epoch lines, no progress bar\n"                                  \
    "  --omit-classes L    leave these classes out of the training (transfer) set\n"               \
    "  --only-classes L    keep only these classes in the training (transfer) set\n"               \
    "  --fraction F        use a seeded fraction F of the training (transfer) set\n"                \
    "                      (--val examples are held out first, from the whole split)\n"        \
    "  --resume            continue the run whose training state MODEL.state.safetensors\n"    \
    "                      is (written after every epoch; the options must be the run's);\n"  \
    "                      without a state: a new run, or nothing to do if MODEL exists\n"   \
    "  --state-every N     also write the training state every N steps within an epoch\n"     \
    "  --keep-state        keep the training state when the run completes (default: removed)\n" \
    "under mpirun -np N (Open MPI): data-parallel SGD, --batch the global batch split\n"      \
    "  over the ranks, one allreduce of the gradients per step; rank 0 writes the files\n"

/* Print the shared options' help (CLI_FIT_HELP_TEXT) to stdout. */
void cli_fit_help(void);

void cli_fit_init(cli_fit *f, const char *cmd);
/* Handle one shared option: 0 handled, 1 not a shared option, else an exit code
 * (usage error already printed). */
int cli_fit_option(cli_fit *f, int c, const char *arg);
/* Add a metadata pair for the checkpoint. */
void cli_fit_meta(cli_fit *f, const char *key, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* An option a resumed run must share (besides the training options). */
void cli_fit_state(cli_fit *f, const char *key, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* The training state's path for a model path: M.safetensors -> M.state.safetensors. */
void cli_state_path(const char *model, char *buf, size_t size);

/* The training function a command plugs in: train m on `fit` (the training
 * split less the validation examples), o->val set when --val was given. */
typedef kdcl_status (*cli_fit_fn)(void *user, kdcl_ctx *ctx, kdcl_model *m, const kdcl_dataset *fit,
                                  const kdcl_train_opts *o, kdcl_epoch_stats *last);
/* Called with the context before training (e.g. to load teachers); may be NULL. */
typedef int (*cli_ctx_fn)(void *user, kdcl_ctx *ctx, const kdcl_dataset *train);

int cli_fit_run(cli_fit *f, cli_ctx_fn on_ctx, cli_fit_fn fn, void *user);

#endif
