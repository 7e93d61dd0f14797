/* kdcl datasets: IDX (MNIST / Fashion-MNIST), CIFAR-10/100 binary batches and
 * image folders, loaded into host memory as uint8 HWC images + int32 labels;
 * subsets, validation splits and deterministic shuffling.
 *
 * All loaders validate their input completely (magic numbers, dimensions,
 * sizes with overflow checks, truncated or corrupt gzip streams) and report
 * problems through kdcl_status + kdcl_last_error(), naming the file and what
 * is wrong. On failure `out` is left zeroed.
 */
#ifndef KDCL_DATA_H
#define KDCL_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "kdcl/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kdcl_dataset {
    size_t n;           /* number of examples */
    size_t h, w, c;     /* image height, width, channels (1 grey, 3 RGB); IDX: rows, cols, 1 */
    size_t dim;         /* h*w*c: bytes per example, layout HWC row-major */
    size_t n_classes;   /* max label + 1, or the number of class folders / CIFAR classes */
    uint8_t *images;    /* n * dim bytes, owned (NULL when n == 0) */
    int32_t *labels;    /* n labels in [0, n_classes), owned (NULL when n == 0) */
    char **class_names; /* n_classes strings or NULL */
} kdcl_dataset;

/* IDX pair (images idx3-ubyte + labels idx1-ubyte), each raw or gzip
 * (detected by the gzip magic, not the name). n_classes = max label + 1. */
kdcl_status kdcl_dataset_load_idx(const char *images_path, const char *labels_path,
                                  kdcl_dataset *out);

/* CIFAR binary batches. CIFAR-10 records: <label><3072 bytes CHW>; CIFAR-100
 * records: <coarse><fine><3072 bytes CHW>. Converted to HWC 32x32x3. Each file
 * size must be a non-zero multiple of the record size. fine_labels selects the
 * CIFAR-100 fine label (100 classes) instead of the coarse one (20 classes).
 * Class names are read from batches.meta.txt (CIFAR-10) or
 * fine_label_names.txt / coarse_label_names.txt (CIFAR-100) next to files[0]
 * when present. */
kdcl_status kdcl_dataset_load_cifar(const char *const *files, size_t n_files, int cifar100,
                                    int fine_labels, kdcl_dataset *out);

/* Image folder root/<class>/<file>: classes sorted by name (strcmp) give
 * labels 0..; files sorted within a class; hidden entries (".*") skipped.
 * Every file is decoded with stb_image forced to `channels` (1 or 3) and
 * resized to w x h. */
kdcl_status kdcl_dataset_load_images(const char *root, size_t w, size_t h, size_t channels,
                                     kdcl_dataset *out);

/* Load a split ("train", "test"; image folders accept any split name) from a
 * directory, detecting the format:
 *   IDX:        <dir>/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
 *               (also the "train-images.idx3-ubyte" spelling)
 *   CIFAR-10:   <dir>[/cifar-10-batches-bin]/data_batch_1..5.bin | test_batch.bin
 *   CIFAR-100:  <dir>[/cifar-100-binary]/train.bin | test.bin (fine labels)
 *   images:     <dir>/<split>/<class>/<file> resized to 32x32 RGB
 * KDCL_ERR_IO with a message listing what was looked for if none matches. */
kdcl_status kdcl_dataset_load_split(const char *dir, const char *split, kdcl_dataset *out);

/* Free everything; safe on a zeroed struct or NULL; leaves it zeroed. */
void kdcl_dataset_free(kdcl_dataset *d);

/* New dataset with copies of the examples idx[0..n) (n may be 0). Class names
 * and n_classes are copied unchanged. */
kdcl_status kdcl_dataset_subset(const kdcl_dataset *d, const size_t *idx, size_t n,
                                kdcl_dataset *out);

/* Split off the last n_val examples of a seeded permutation as a validation
 * set; train gets the rest. Both keep the original relative order. */
kdcl_status kdcl_dataset_split_val(const kdcl_dataset *d, size_t n_val, uint64_t seed,
                                   kdcl_dataset *train, kdcl_dataset *val);

/* Deep copy. */
kdcl_status kdcl_dataset_copy(const kdcl_dataset *d, kdcl_dataset *out);

/* Per-channel mean and standard deviation (population) of the pixels / 255
 * over every example (d->c <= 4 channels; a constant channel gets std 1). */
kdcl_status kdcl_dataset_channel_stats(const kdcl_dataset *d, float *mean, float *std);

/* Number of examples of each class: counts[0..d->n_classes). */
void kdcl_dataset_class_counts(const kdcl_dataset *d, size_t *counts);

/* Deterministic RNG: xoshiro256** seeded with splitmix64. */
typedef struct kdcl_rng {
    uint64_t s[4];
} kdcl_rng;
void kdcl_rng_seed(kdcl_rng *r, uint64_t seed);
uint64_t kdcl_rng_next(kdcl_rng *r);
/* Uniform integer in [0, n) without modulo bias (0 when n == 0). */
uint64_t kdcl_rng_below(kdcl_rng *r, uint64_t n);
/* Uniform double in [0, 1) (53 bits). */
double kdcl_rng_uniform(kdcl_rng *r);
/* Fisher-Yates permutation of 0..n-1 determined by (seed, epoch). */
void kdcl_shuffle_indices(size_t *idx, size_t n, uint64_t seed, uint64_t epoch);

#ifdef __cplusplus
}
#endif
#endif
